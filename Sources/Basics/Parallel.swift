import Dispatch
import Foundation

/// Independent jobs on all cores. Each of up to one thread per core takes the next job
/// when it finishes one (Dispatch's concurrentPerform hands out fixed shares, which can
/// leave one core idle behind a long job). The error of the lowest failing job index is
/// rethrown, so a failure reads the same on every run.
public enum Parallel {
    public static func run(_ count: Int, workers: Int? = nil, _ body: @escaping @Sendable (Int) throws -> Void) throws {
        guard count > 0 else { return }
        let n = min(count, max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount))
        if n == 1 {
            for i in 0..<count { try body(i) }
            return
        }
        let errors = ErrorCollector()
        let next = JobCounter()
        let group = DispatchGroup()
        for _ in 0..<n {
            group.enter()
            Thread.detachNewThread {
                // Check before taking a job: every job below a failing one still runs.
                while !errors.hasError, let i = next.take(below: count) {
                    do { try body(i) } catch { errors.add(i, error) }
                }
                group.leave()
            }
        }
        group.wait()
        if let e = errors.first { throw e }
    }

    /// `run` collecting one result per job, in job order.
    public static func map<T: Sendable>(_ count: Int, workers: Int? = nil, _ body: @escaping @Sendable (Int) throws -> T) throws -> [T] {
        let slots = ResultSlots<T>(count: count)
        try run(count, workers: workers) { i in slots.set(i, try body(i)) }
        return try slots.values()
    }
}

/// Errors from concurrent jobs; `first` is the one with the lowest job index.
public final class ErrorCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [(Int, any Error)] = []
    public init() {}
    public func add(_ i: Int, _ e: any Error) { lock.withLock { errors.append((i, e)) } }
    public var hasError: Bool { lock.withLock { !errors.isEmpty } }
    public var first: (any Error)? { lock.withLock { errors.min { $0.0 < $1.0 }?.1 } }
}

final class JobCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take(below n: Int) -> Int? {
        lock.withLock {
            guard value < n else { return nil }
            value += 1
            return value - 1
        }
    }
}

final class ResultSlots<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T?]
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: T) { lock.withLock { items[i] = v } }
    func values() throws -> [T] {
        try lock.withLock {
            try items.enumerated().map { i, v in
                guard let v else { throw MessageError("internal error: parallel job \(i) produced no result") }
                return v
            }
        }
    }
}

/// A raw pointer handed to parallel jobs that each touch a disjoint range of its memory.
public struct SharedRawPointer: @unchecked Sendable {
    public let raw: UnsafeMutableRawPointer?
    public init(_ p: UnsafeMutableRawPointer?) { raw = p }
}
