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

    public init(paths: [String] = [], keys: [String: String] = [:], tools: [String: String] = [:], extra: [String: String] = [:]) {
        self.paths = paths
        self.keys = keys
        self.tools = tools
        self.extra = extra
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

    /// Report byte-oriented progress (a bar on a TTY; nothing in plain mode).
    public func progress(done: UInt64, total: UInt64) {
        progressSink?(stageName, done, total)
    }
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
