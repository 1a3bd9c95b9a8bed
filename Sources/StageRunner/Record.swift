import Basics
import Foundation

/// The "done" record of a stage, written only after its outputs were committed.
/// Its absence means the stage must run.
public struct StageRecord: Codable, Sendable, Equatable {
    public struct Output: Codable, Sendable, Equatable {
        public var path: String
        public var size: UInt64
        public var sha256: String
        public var mtimeNs: Int64
        public var inode: UInt64
        public var kind: String  // "file", "dir", "link"
    }

    public var stage: String
    public var fingerprint: String
    /// The individual fingerprint parts ("path:...", "key:...", "tool:...", "dep:...", "extra:..."),
    /// kept so `plan` can say *why* a stage is stale.
    public var components: [String: String]
    /// Values the stage resolved while running (`StageContext.resolved`), re-checked by
    /// its `resolvedChecks` before each build. nil in records written before osbuild
    /// tracked them: such a record is stale once for a stage that declares checks.
    public var resolved: [String: String]?
    public var outputs: [Output]
    /// Hash over all outputs' paths and contents: what downstream stages fingerprint.
    public var outputDigest: String
    public var seconds: Double
    public var finishedAt: Double
}

/// Layout of a build directory (build/BOARD or -O DIR):
///   stages/NAME/   committed outputs        state/NAME.json   done records
///   logs/NAME.log  per-stage logs           state/statcache   input hash cache
///   tmp/           in-flight stage outputs (swept at start)
public struct BuildDirectory: Sendable {
    public let root: String
    public init(_ root: String) { self.root = FileSystem.absolute(root) }

    public var stagesDir: String { root + "/stages" }
    public var stateDir: String { root + "/state" }
    public var logsDir: String { root + "/logs" }
    public var tmpDir: String { root + "/tmp" }
    public var statCachePath: String { stateDir + "/statcache" }
    public var snapshotsDir: String { stateDir + "/snapshots" }
    public func outputDir(_ stage: String) -> String { stagesDir + "/" + stage }
    public func recordPath(_ stage: String) -> String { stateDir + "/" + stage + ".json" }
    public func logPath(_ stage: String) -> String { logsDir + "/" + stage + ".log" }

    public func readRecord(_ stage: String) -> StageRecord? {
        guard let bytes = try? FileSystem.readFile(recordPath(stage)) else { return nil }
        return try? JSONDecoder().decode(StageRecord.self, from: Data(bytes))
    }

    func writeRecord(_ r: StageRecord) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        try FileSystem.writeAtomically(recordPath(r.stage), [UInt8](try enc.encode(r)))
    }

    func removeRecord(_ stage: String) throws {
        if unlink(recordPath(stage)) != 0 && errno != ENOENT {
            throw SystemError("unlink", path: recordPath(stage), errno: errno)
        }
    }
}

enum OutputScanner {
    /// Hash every entry under a stage's output dir (sorted), producing the record's
    /// output list and the digest downstream stages depend on.
    static func scan(_ dir: String) throws -> (outputs: [StageRecord.Output], digest: String) {
        var outputs: [StageRecord.Output] = []
        let h = SHA256()
        func walk(_ d: String, _ rel: String) throws {
            for name in try FileSystem.listDirectory(d).sorted(by: ByteOrder.less) {
                let p = d + "/" + name
                let r = rel.isEmpty ? name : rel + "/" + name
                let st = try FileSystem.lstat(p)
                let o: StageRecord.Output
                if st.isDirectory {
                    o = .init(path: r, size: 0, sha256: "", mtimeNs: 0, inode: 0, kind: "dir")
                } else if st.isSymlink {
                    o = .init(path: r, size: st.size, sha256: SHA256.hex(try FileSystem.readSymlink(p)), mtimeNs: 0, inode: 0, kind: "link")
                } else {
                    o = .init(path: r, size: st.size, sha256: try SHA256.hexOfFile(at: p),
                              mtimeNs: st.mtimeSec * 1_000_000_000 + st.mtimeNsec, inode: st.inode, kind: "file")
                }
                outputs.append(o)
                h.updateField(o.kind)
                h.updateField(r)
                h.updateField(String(st.mode & 0o7777, radix: 8))
                h.updateField(o.sha256)
                if st.isDirectory { try walk(p, r) }
            }
        }
        try walk(dir, "")
        return (outputs, h.hexDigest())
    }

    /// Cheap integrity check used on every build: each recorded file still has the
    /// recorded size, mtime and inode. Returns the first problem, or nil.
    static func quickCheck(_ dir: String, _ outputs: [StageRecord.Output]) -> String? {
        for o in outputs {
            let p = dir + "/" + o.path
            guard let st = try? FileSystem.lstatIfExists(p) else { return "output \(o.path) is missing" }
            switch o.kind {
            case "dir": if !st.isDirectory { return "output \(o.path) is no longer a directory" }
            case "link": if !st.isSymlink { return "output \(o.path) is no longer a symlink" }
            default:
                if st.size != o.size || st.mtimeSec * 1_000_000_000 + st.mtimeNsec != o.mtimeNs || st.inode != o.inode {
                    return "output \(o.path) was modified after it was built"
                }
            }
        }
        return nil
    }

    /// Full re-hash (`make --verify-only`): every output whose content differs.
    static func verify(_ dir: String, _ outputs: [StageRecord.Output]) -> [String] {
        var bad: [String] = []
        for o in outputs {
            let p = dir + "/" + o.path
            guard let st = try? FileSystem.lstatIfExists(p) else { bad.append("\(o.path): missing"); continue }
            switch o.kind {
            case "dir": if !st.isDirectory { bad.append("\(o.path): no longer a directory") }
            case "link":
                if (try? FileSystem.readSymlink(p)).map(SHA256.hex) != o.sha256 { bad.append("\(o.path): symlink changed") }
            default:
                guard let h = try? SHA256.hexOfFile(at: p) else { bad.append("\(o.path): unreadable"); continue }
                if h != o.sha256 { bad.append("\(o.path): content changed (size \(o.size) -> \(st.size))") }
            }
        }
        return bad
    }
}
