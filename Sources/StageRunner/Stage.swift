import Basics
import Foundation

/// What a stage's result depends on. The fingerprint is a hash over all of it plus the
/// output digests of the stages it depends on.
public struct StageInputs: Sendable {
    /// Host files or directories, hashed by content (directories recursively: names,
    /// types, modes, symlink targets and file contents).
    public var paths: [String]
    /// Board keys the stage reads, with their values rendered as text.
    public var keys: [String: String]
    /// Versions of external tools the stage runs (e.g. "mke2fs": "1.47.0").
    public var tools: [String: String]
    /// Anything else that changes the output (implementation version, env values).
    public var extra: [String: String]
    /// Plan-time checks for values the stage resolves while it runs (`StageContext.resolved`),
    /// by key kind: a resolved key "KIND:NAME" is checked by `resolvedChecks[KIND]`.
    public var resolvedChecks: [String: ResolvedInputCheck]

    public init(paths: [String] = [], keys: [String: String] = [:], tools: [String: String] = [:], extra: [String: String] = [:],
                resolvedChecks: [String: ResolvedInputCheck] = [:]) {
        self.paths = paths
        self.keys = keys
        self.tools = tools
        self.extra = extra
        self.resolvedChecks = resolvedChecks
    }
}

/// How a stage's resolved inputs are re-checked before each build. A resolved input is
/// something the stage only learns while running (the exact package file a name resolved
/// to, a pinned download): its value is stored in the done record, and on every plan or
/// make `current` maps the recorded name back to its value now. A different value, or
/// none, makes the stage stale. `current` runs on every no-op build: it must be cheap and
/// offline (read a lock file, never ask a network service).
public struct ResolvedInputCheck: Sendable {
    /// The value `name` (the key without "KIND:") has now, or nil when it no longer
    /// resolves. `downloadCache` is the one the runner hands to stages.
    public var current: @Sendable (_ name: String, _ downloadCache: String) throws -> String?
    /// The stale reason for a changed (`now` non-nil) or vanished (`now` nil) value.
    public var explain: @Sendable (_ key: String, _ recorded: String, _ now: String?, _ downloadCache: String) -> String

    public init(current: @escaping @Sendable (_ name: String, _ downloadCache: String) throws -> String?,
                explain: @escaping @Sendable (_ key: String, _ recorded: String, _ now: String?, _ downloadCache: String) -> String
                    = ResolvedInputCheck.defaultExplanation) {
        self.current = current
        self.explain = explain
    }

    public static let defaultExplanation: @Sendable (String, String, String?, String) -> String = { key, recorded, now, _ in
        now.map { "resolved input \(key) changed: \(recorded) -> \($0)" } ?? "resolved input \(key) (\(recorded)) no longer resolves"
    }
}

/// One node of the stage graph.
public struct Stage: Sendable {
    public typealias Body = @Sendable (StageContext) throws -> Void

    public var name: String
    public var summary: String
    public var dependencies: [String]
    public var inputs: StageInputs
    /// Placeholder stages (owned by a later issue) are listed but never run.
    public var implemented: Bool
    /// Why it is not implemented (shown by `plan` and `make`).
    public var notImplementedReason: String
    public var body: Body

    public init(name: String, summary: String, dependencies: [String] = [], inputs: StageInputs = .init(), body: @escaping Body) {
        self.name = name
        self.summary = summary
        self.dependencies = dependencies
        self.inputs = inputs
        self.implemented = true
        self.notImplementedReason = ""
        self.body = body
    }

    public static func placeholder(name: String, summary: String, dependencies: [String] = [], reason: String) -> Stage {
        var s = Stage(name: name, summary: summary, dependencies: dependencies) { _ in
            throw MessageError("stage \(name) is not implemented: \(reason)")
        }
        s.implemented = false
        s.notImplementedReason = reason
        return s
    }
}

/// Handed to a running stage: where to write, what upstream produced, where to log.
public final class StageContext: Sendable {
    public let stageName: String
    /// A fresh temporary directory: everything the stage produces goes here. It is
    /// renamed into place only if the stage returns without throwing.
    public let outputDir: String
    /// Committed output directories of the stages this one depends on.
    public let upstream: [String: String]
    /// Scratch space removed after the stage (not part of the outputs).
    public let scratchDir: String
    /// Download/input cache shared across boards.
    public let downloadCache: String
    public let jobs: Int
    public let log: StageLog
    private let progressSink: (@Sendable (String, UInt64, UInt64) -> Void)?
    private let resolvedValues = ResolvedValues()

    init(stageName: String, outputDir: String, upstream: [String: String], scratchDir: String, downloadCache: String, jobs: Int, log: StageLog, progress: (@Sendable (String, UInt64, UInt64) -> Void)?) {
        self.stageName = stageName
        self.outputDir = outputDir
        self.upstream = upstream
        self.scratchDir = scratchDir
        self.downloadCache = downloadCache
        self.jobs = jobs
        self.log = log
        self.progressSink = progress
    }

    /// Committed output directory of an upstream stage (must be a declared dependency).
    public func input(_ stage: String) throws -> String {
        guard let d = upstream[stage] else {
            throw MessageError("stage \(stageName) reads the output of '\(stage)' but does not declare it as a dependency")
        }
        return d
    }

    /// Record a value the stage resolved while running (e.g. "apt:NAME" -> the pinned
    /// file and its sha256). It is stored in the done record, and the stage's
    /// `StageInputs.resolvedChecks[KIND]` re-checks it before every later build.
    public func resolved(_ key: String, _ value: String) {
        resolvedValues.set(key, value)
    }

    var resolvedInputs: [String: String] { resolvedValues.all }

    /// Report byte-oriented progress (a bar on a TTY; nothing in plain mode).
    public func progress(done: UInt64, total: UInt64) {
        progressSink?(stageName, done, total)
    }
}

/// Resolved inputs reported by a stage body (possibly from several threads).
final class ResolvedValues: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String: String] = [:]
    func set(_ k: String, _ v: String) { lock.lock(); values[k] = v; lock.unlock() }
    var all: [String: String] { lock.lock(); defer { lock.unlock() }; return values }
}

/// A stage's log file (build/BOARD/logs/STAGE.log), truncated at the start of each run.
public final class StageLog: @unchecked Sendable {
    public let path: String
    private let handle: FileHandle?
    private let lock = NSLock()

    init(path: String) {
        self.path = path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        handle = FileHandle(forWritingAtPath: path)
    }

    deinit { try? handle?.close() }

    public func line(_ s: String) {
        lock.lock(); defer { lock.unlock() }
        handle?.write(Data((s + "\n").utf8))
    }

    /// Append a tool's captured output.
    public func record(_ result: Subprocess.Result, command: [String]) {
        line("$ " + command.joined(separator: " "))
        if !result.stdout.isEmpty { line(result.stdoutText) }
        if !result.stderr.isEmpty { line(result.stderrText) }
        line("(exit \(result.status))")
    }
}
