import Basics
import Foundation
import Testing

/// Shared helpers for tests: temp dirs, oracle-tool lookup with the CI rule
/// (under CI=true a missing reference tool is a failure, not a skip).
public enum TestEnv {
    public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
    public static var isRoot: Bool { getuid() == 0 }

    /// Path of a reference tool, or nil (with a printed reason) when it is absent outside CI.
    /// Under CI=true an absent tool records a test failure.
    public static func oracle(_ tool: String, package: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> String? {
        if let p = Subprocess.which(tool) { return p }
        let msg = "reference tool '\(tool)' (Debian package \(package)) is not installed"
        if isCI {
            Issue.record(Comment(rawValue: msg + "; CI must install it (scripts/install-deps.sh)"), sourceLocation: sourceLocation)
        } else {
            print("SKIP: \(msg); run scripts/install-deps.sh")
        }
        return nil
    }

    /// The repository root (where Package.swift is), found from this source file.
    public static var repoRoot: String {
        var dir = FileSystem.dirname(#filePath)
        while dir != "/" {
            if FileSystem.exists(dir + "/Package.swift") { return dir }
            dir = FileSystem.dirname(dir)
        }
        return FileManager.default.currentDirectoryPath
    }
}

/// A temporary directory removed when the value is released, or at process exit for
/// the ones shared fixtures hold in statics (which are never released): board builds
/// and install fixtures are gigabytes, and repeated test runs used to fill the disk.
public final class TempDir: @unchecked Sendable {
    public let path: String
    public init(_ label: String = "test") throws {
        var template = Array((NSTemporaryDirectory() + "osbuild-\(label)-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw SystemError("mkdtemp", path: NSTemporaryDirectory(), errno: errno) }
        path = String(cString: p)
        LiveTempDirs.shared.add(path)
    }
    deinit {
        try? FileSystem.removeTree(path)
        LiveTempDirs.shared.remove(path)
    }

    public func sub(_ name: String) -> String { path + "/" + name }

    @discardableResult
    public func write(_ rel: String, _ text: String, mode: mode_t = 0o644) throws -> String {
        let p = sub(rel)
        try FileSystem.makeDirectories(FileSystem.dirname(p))
        try FileSystem.writeAtomically(p, text, mode: mode)
        return p
    }
}

/// Paths of TempDirs still alive; removed by an atexit handler.
final class LiveTempDirs: @unchecked Sendable {
    static let shared: LiveTempDirs = {
        let r = LiveTempDirs()
        atexit { LiveTempDirs.shared.removeAll() }
        return r
    }()
    private let lock = NSLock()
    private var paths: Set<String> = []
    func add(_ p: String) { lock.withLock { _ = paths.insert(p) } }
    func remove(_ p: String) { lock.withLock { _ = paths.remove(p) } }
    func removeAll() {
        let all = lock.withLock { paths }
        for p in all { try? FileSystem.removeTree(p) }
    }
}
