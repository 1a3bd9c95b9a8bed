import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where human-readable output goes. On a TTY it may redraw a progress line; elsewhere
/// (CI, pipes) it prints plain lines only. Thread-safe: stages report from many threads.
public final class Console: @unchecked Sendable {
    public static let shared = Console()

    public let isTTY: Bool
    public let useColor: Bool
    private let lock = NSLock()
    private var progressVisible = false

    public init(isTTY: Bool? = nil) {
        let tty = isTTY ?? (isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb")
        self.isTTY = tty
        self.useColor = tty && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    }

    public enum Color: String { case red = "31", green = "32", yellow = "33", blue = "34", dim = "2", bold = "1" }

    public func paint(_ s: String, _ c: Color) -> String {
        useColor ? "\u{1B}[\(c.rawValue)m\(s)\u{1B}[0m" : s
    }

    public func line(_ s: String) {
        lock.lock(); defer { lock.unlock() }
        clearProgressLocked()
        FileHandle.standardOutput.write(Data((s + "\n").utf8))
    }

    public func error(_ s: String) {
        lock.lock(); defer { lock.unlock() }
        clearProgressLocked()
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    /// A transient progress line: redrawn in place on a TTY, suppressed otherwise
    /// (plain-line consumers get the per-stage lines instead).
    public func progress(_ label: String, done: UInt64, total: UInt64) {
        guard isTTY else { return }
        lock.lock(); defer { lock.unlock() }
        let width = 30
        let frac = total == 0 ? 1.0 : min(1.0, Double(done) / Double(total))
        let filled = Int(frac * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let text = "\r\u{1B}[K\(label) [\(bar)] \(Int(frac * 100))% \(ByteCount.format(done))/\(ByteCount.format(total))"
        FileHandle.standardOutput.write(Data(text.utf8))
        progressVisible = true
    }

    public func clearProgress() {
        lock.lock(); defer { lock.unlock() }
        clearProgressLocked()
    }

    private func clearProgressLocked() {
        if progressVisible {
            FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
            progressVisible = false
        }
    }
}

public enum ByteCount {
    public static func format(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }

    /// Parses sizes like "512", "4k", "64K", "10M", "1G", "2GiB", "1.5M" (binary units).
    public static func parse(_ text: String) -> UInt64? {
        let s = text.trimmingCharacters(in: .whitespaces)
        var num = ""
        var unit = ""
        for c in s {
            if unit.isEmpty && (c.isNumber || c == ".") { num.append(c) } else { unit.append(c) }
        }
        guard let v = Double(num) else { return nil }
        let mult: Double
        switch unit.lowercased().trimmingCharacters(in: .whitespaces) {
        case "", "b": mult = 1
        case "k", "kb", "kib": mult = 1024
        case "m", "mb", "mib": mult = 1024 * 1024
        case "g", "gb", "gib": mult = 1024 * 1024 * 1024
        case "t", "tb", "tib": mult = 1024.0 * 1024 * 1024 * 1024
        case "s", "sector", "sectors": mult = 512
        default: return nil
        }
        let r = v * mult
        guard r >= 0, r < 1.8e19, r == r.rounded() else { return nil }
        return UInt64(r)
    }
}

/// SOURCE_DATE_EPOCH, the one clock every reproducible artifact uses.
public enum BuildClock {
    public struct InvalidEpoch: UserError {
        public var value: String
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String { "SOURCE_DATE_EPOCH=\(value) is not a non-negative integer number of seconds" }
    }

    /// The epoch from the environment, or nil when unset.
    public static func sourceDateEpoch(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> Int64? {
        guard let v = env["SOURCE_DATE_EPOCH"], !v.isEmpty else { return nil }
        guard let n = Int64(v), n >= 0 else { throw InvalidEpoch(value: v) }
        return n
    }
}
