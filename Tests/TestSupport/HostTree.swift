import Basics
import FSTree

/// Host-tree comparison for round-trip tests: scans a directory (type, permission bits,
/// owner, mtime, size + SHA-256, symlink target, rdev, xattrs, hard-link groups) and lists
/// the differences between a source tree and what a reader (unsquashfs, a kernel mount)
/// gave back.
public enum HostTree {
    public static func walkPaths(_ root: String) throws -> [String] {
        var out = [root]
        var stack = [root]
        while let d = stack.popLast() {
            for name in try FileSystem.listDirectory(d).sorted() {
                let p = d + "/" + name
                out.append(p)
                if try FileSystem.lstat(p).isDirectory { stack.append(p) }
            }
        }
        return out
    }

    public struct Record: Equatable, CustomStringConvertible {
        public var type: UInt32
        public var mode: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var mtime: Int64
        public var size: UInt64
        public var digest: String
        public var target: String
        public var rdev: UInt64
        public var xattrs: [String: [UInt8]]
        public var description: String {
            "type=\(String(type, radix: 8)) mode=\(String(mode, radix: 8)) \(uid):\(gid) mtime=\(mtime) size=\(size) sha=\(digest.prefix(12)) target=\(target) rdev=\(rdev) xattrs=\(xattrs.keys.sorted())"
        }
    }

    /// path (relative) -> record, plus hard-link groups (sets of paths sharing an inode).
    public static func scan(_ root: String) throws -> (records: [String: Record], links: Set<[String]>) {
        var recs: [String: Record] = [:]
        var byInode: [UInt64: [String]] = [:]
        for p in try walkPaths(root) {
            let rel = p == root ? "/" : String(p.dropFirst(root.count))
            let st = try FileSystem.lstat(p)
            let type = st.mode & 0o170000
            var digest = ""
            if type == 0o100000 { digest = try SHA256.hexOfFile(at: p) }
            var xa: [String: [UInt8]] = [:]
            for x in try FSTree.readHostXAttrs(p) { xa[x.name] = x.value }
            recs[rel] = Record(
                type: type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtimeSec,
                size: type == 0o100000 || type == 0o120000 ? st.size : 0, digest: digest,
                target: type == 0o120000 ? try FileSystem.readSymlink(p) : "",
                rdev: type == 0o020000 || type == 0o060000 ? st.rdev : 0, xattrs: xa)
            if type != 0o040000 { byInode[st.inode, default: []].append(rel) }
        }
        let links = Set(byInode.values.filter { $0.count > 1 }.map { $0.sorted() })
        return (recs, links)
    }

    /// Differences between a source tree and its read-back (empty = identical).
    public static func compare(_ src: String, _ back: String, allRoot: Bool = false, checkRoot: Bool = true, xattrs: Bool = true) throws -> [String] {
        let (a, la) = try scan(src)
        let (b, lb) = try scan(back)
        var diffs: [String] = []
        for (p, ra) in a.sorted(by: { $0.key < $1.key }) {
            guard var rb = b[p] else { diffs.append("missing \(p)"); continue }
            var ra = ra
            if allRoot { ra.uid = 0; ra.gid = 0 }
            if p == "/" && !checkRoot { continue }
            if ra.type == 0o120000 { ra.mode = 0; rb.mode = 0 }  // symlink permissions are not meaningful
            if !xattrs { ra.xattrs = [:]; rb.xattrs = [:] }
            if ra != rb { diffs.append("\(p):\n  source \(ra)\n  image  \(rb)") }
        }
        for p in b.keys where a[p] == nil { diffs.append("extra \(p)") }
        if la != lb { diffs.append("hard-link groups differ: source \(la.sorted { $0[0] < $1[0] }) image \(lb.sorted { $0[0] < $1[0] })") }
        return diffs
    }
}
