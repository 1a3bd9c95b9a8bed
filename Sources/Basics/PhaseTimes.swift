#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock time per named phase of a job (tree import, data, metadata, commit ...),
/// for `--verbose` logs and benchmarks. Phases keep the order they were first measured in.
public struct PhaseTimes: Sendable, CustomStringConvertible {
    public private(set) var phases: [(name: String, seconds: Double)] = []

    public init() {}

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Run `body` and add its wall time to phase `name`.
    public mutating func measure<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        let start = PhaseTimes.now()
        defer { add(name, PhaseTimes.now() - start) }
        return try body()
    }

    public mutating func add(_ name: String, _ seconds: Double) {
        if let i = phases.firstIndex(where: { $0.name == name }) {
            phases[i].seconds += seconds
        } else {
            phases.append((name, seconds))
        }
    }

    public mutating func append(_ other: PhaseTimes) {
        for p in other.phases { add(p.name, p.seconds) }
    }

    public var description: String {
        phases.map { p in
            let ms = (p.seconds * 1000).rounded()
            return "\(p.name) \(ms >= 10_000 ? "\(Double(Int(ms / 10)) / 100) s" : "\(Int(ms)) ms")"
        }.joined(separator: ", ")
    }
}
