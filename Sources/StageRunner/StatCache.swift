import Basics
import Foundation

/// Content hashes of host files keyed by path, trusted while (size, mtime, ctime, inode)
/// are unchanged — the same trick git's index uses, so a no-op rebuild only `lstat`s.
///
/// "Racy" entries (modified within the last 2 s when recorded) are not trusted on the
/// next run: a write in the same timestamp tick could otherwise go unnoticed.
public final class StatCache: @unchecked Sendable {
    struct Entry {
        var size: UInt64
        var mtimeNs: Int64
        var ctimeNs: Int64
        var inode: UInt64
        var sha256: String
    }

    private let path: String
    private var entries: [String: Entry] = [:]
    private var dirty = false
    private let lock = NSLock()
    private let loadedAt: Int64

    public init(path: String) {
        self.path = path
        loadedAt = Int64(Date().timeIntervalSince1970 * 1e9)
        load()
    }

    private func load() {
        guard let bytes = try? FileSystem.readFile(path) else { return }
        // Format: one entry per line: size \t mtime_ns \t ctime_ns \t inode \t sha256 \t path
        var start = 0
        let n = bytes.count
        while start < n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            let fields = bytes[start..<end].split(separator: 0x09, maxSplits: 5, omittingEmptySubsequences: false)
            if fields.count == 6,
               let size = UInt64(String(decoding: fields[0], as: UTF8.self)),
               let m = Int64(String(decoding: fields[1], as: UTF8.self)),
               let c = Int64(String(decoding: fields[2], as: UTF8.self)),
               let ino = UInt64(String(decoding: fields[3], as: UTF8.self)) {
                entries[String(decoding: fields[5], as: UTF8.self)] = Entry(
                    size: size, mtimeNs: m, ctimeNs: c, inode: ino, sha256: String(decoding: fields[4], as: UTF8.self))
            }
            start = end + 1
        }
    }

    /// The file's SHA-256, from the cache when its stat data is unchanged.
    public func hash(path p: String, stat st: FileSystem.Stat) throws -> String {
        let m = st.mtimeSec * 1_000_000_000 + st.mtimeNsec
        let c = st.ctimeSec * 1_000_000_000 + st.ctimeNsec
        lock.lock()
        if let e = entries[p], e.size == st.size, e.mtimeNs == m, e.ctimeNs == c, e.inode == st.inode {
            lock.unlock()
            return e.sha256
        }
        lock.unlock()
        let h = try SHA256.hexOfFile(at: p)
        lock.lock()
        entries[p] = Entry(size: st.size, mtimeNs: m, ctimeNs: c, inode: st.inode, sha256: h)
        dirty = true
        lock.unlock()
        return h
    }

    public func save() throws {
        lock.lock(); defer { lock.unlock() }
        guard dirty else { return }
        let racyLimit = Int64(Date().timeIntervalSince1970 * 1e9) - 2_000_000_000
        var out = ""
        out.reserveCapacity(entries.count * 120)
        for (p, e) in entries where e.mtimeNs < racyLimit && e.ctimeNs < racyLimit {
            out += "\(e.size)\t\(e.mtimeNs)\t\(e.ctimeNs)\t\(e.inode)\t\(e.sha256)\t\(p)\n"
        }
        try FileSystem.makeDirectories(FileSystem.dirname(path))
        try FileSystem.writeAtomically(path, out)
        dirty = false
    }
}

/// Hashes declared input paths into one digest each.
public struct InputHasher: Sendable {
    let cache: StatCache

    public init(cache: StatCache) { self.cache = cache }

    /// Digest of a file or directory tree: names, types, permission bits, symlink targets
    /// and contents. A missing path hashes to a distinct marker (so appearing/disappearing
    /// inputs invalidate too).
    public func digest(_ path: String) throws -> String {
        guard let st = try FileSystem.lstatIfExists(path) else { return "missing" }
        if !st.isDirectory { return try entryDigest(path, st) }
        let h = SHA256()
        try walk(path, rel: "", into: h)
        return h.hexDigest()
    }

    private func entryDigest(_ path: String, _ st: FileSystem.Stat) throws -> String {
        if st.isRegular { return try cache.hash(path: path, stat: st) }
        if st.isSymlink { return "link:" + (try FileSystem.readSymlink(path)) }
        return "special:\(st.mode):\(st.rdev)"
    }

    private func walk(_ dir: String, rel: String, into h: SHA256) throws {
        for name in try FileSystem.listDirectory(dir).sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            let p = dir + "/" + name
            let r = rel.isEmpty ? name : rel + "/" + name
            let st = try FileSystem.lstat(p)
            h.updateField(r)
            h.updateField(String(st.mode, radix: 8))
            if st.isDirectory {
                h.updateField("dir")
                try walk(p, rel: r, into: h)
            } else {
                h.updateField(try entryDigest(p, st))
            }
        }
    }
}
