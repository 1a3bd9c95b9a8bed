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

    private var loaded = false

    public init(path: String) {
        self.path = path
        loadedAt = Int64(Date().timeIntervalSince1970 * 1e9)
    }

    /// Loaded on first use: a no-op build whose input snapshots all hold never needs it.
    private func ensureLoadedLocked() {
        if !loaded {
            loaded = true
            load()
        }
    }

    private func load() {
        guard let bytes = try? FileSystem.readFile(path) else { return }
        // Format: one entry per line: size \t mtime_ns \t ctime_ns \t inode \t sha256 \t path
        bytes.withUnsafeBufferPointer { b in
            var i = 0
            let n = b.count
            func number() -> Int64? {
                var v: Int64 = 0
                var neg = false
                if i < n && b[i] == 0x2D { neg = true; i += 1 }
                let start = i
                while i < n, b[i] >= 0x30, b[i] <= 0x39 { v = v &* 10 &+ Int64(b[i] - 0x30); i += 1 }
                guard i > start, i < n, b[i] == 0x09 else { return nil }
                i += 1
                return neg ? -v : v
            }
            func field() -> String? {
                let start = i
                while i < n, b[i] != 0x09, b[i] != 0x0A { i += 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            }
            while i < n {
                let lineStart = i
                if let size = number(), let m = number(), let c = number(), let ino = number(), let sha = field(), i < n, b[i] == 0x09 {
                    i += 1
                    if let p = field() {
                        entries[p] = Entry(size: UInt64(size), mtimeNs: m, ctimeNs: c, inode: UInt64(bitPattern: ino), sha256: sha)
                    }
                }
                while i < n && b[i] != 0x0A { i += 1 }
                i += 1
                if i <= lineStart { break }
            }
        }
    }

    /// The file's SHA-256, from the cache when its stat data is unchanged.
    public func hash(path p: String, stat st: FileSystem.Stat) throws -> String {
        let m = st.mtimeSec * 1_000_000_000 + st.mtimeNsec
        let c = st.ctimeSec * 1_000_000_000 + st.ctimeNsec
        lock.lock()
        ensureLoadedLocked()
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
        ensureLoadedLocked()
        let racyLimit = Int64(Date().timeIntervalSince1970 * 1e9) - 2_000_000_000
        var out: [UInt8] = []
        out.reserveCapacity(entries.count * 140)
        for (p, e) in entries where e.mtimeNs < racyLimit && e.ctimeNs < racyLimit {
            out.appendDecimal(e.size); out.append(0x09)
            out.appendDecimal(e.mtimeNs); out.append(0x09)
            out.appendDecimal(e.ctimeNs); out.append(0x09)
            out.appendDecimal(Int64(bitPattern: e.inode)); out.append(0x09)
            out.append(utf8: e.sha256); out.append(0x09)
            out.append(utf8: p); out.append(0x0A)
        }
        try FileSystem.makeDirectories(FileSystem.dirname(path))
        try FileSystem.writeAtomically(path, out)
        dirty = false
    }
}

/// Hashes declared input paths into one digest each.
///
/// A directory's digest is cached in a snapshot (state/snapshots/, see DirectorySnapshot)
/// holding the stat data of everything below it; while that all holds, the digest does.
public struct InputHasher: Sendable {
    let cache: StatCache
    let snapshotDir: String?
    /// Snapshot files consulted by this hasher (the runner prunes the others).
    let used = LockedSet()

    public init(cache: StatCache, snapshotDir: String? = nil) {
        self.cache = cache
        self.snapshotDir = snapshotDir
    }

    /// Digest of a file or directory tree: names, types, permission bits, symlink targets
    /// and contents. A missing path hashes to a distinct marker (so appearing/disappearing
    /// inputs invalidate too).
    public func digest(_ path: String) throws -> String {
        guard let st = try FileSystem.lstatIfExists(path) else { return "missing" }
        if !st.isDirectory { return try entryDigest(path, st) }
        let snapPath = snapshotDir.map { $0 + "/" + DirectorySnapshot.fileName(for: path) }
        if let snapshotDir, let snapPath {
            used.insert(snapPath)
            if let digest = SnapshotPrefetch.digest(snapshotDir: snapshotDir, snapshot: snapPath, root: path, rootStat: st)
                ?? DirectorySnapshot.currentDigest(snapPath, root: path, rootStat: st) {
                return digest
            }
        }
        let h = SHA256()
        var buf: [UInt8] = []
        buf.reserveCapacity(1 << 16)
        var snap = DirectorySnapshot(root: path)
        try walk(path, rel: "", stat: st, into: h, buffer: &buf, snapshot: &snap)
        h.update(buf)
        snap.digest = h.hexDigest()
        if let snapPath { try? snap.save(snapPath) }
        return snap.digest
    }

    private func entryDigest(_ path: String, _ st: FileSystem.Stat) throws -> String {
        if st.isRegular { return try cache.hash(path: path, stat: st) }
        if st.isSymlink { return "link:" + (try FileSystem.readSymlink(path)) }
        return "special:\(st.mode):\(st.rdev)"
    }

    /// Serialises (relative path, mode, digest) of every entry in byte order into
    /// `buffer`, feeding the hash in 64 KiB chunks (one EVP call per chunk, not per field).
    private func walk(_ dir: String, rel: String, stat dirStat: FileSystem.Stat, into h: SHA256, buffer: inout [UInt8], snapshot: inout DirectorySnapshot) throws {
        var names = try FileSystem.listDirectory(dir)
        names.sort(by: ByteOrder.less)
        let group = snapshot.groups.count
        snapshot.groups.append(.init(rel: rel, stat: StatKey(dirStat)))
        for name in names {
            let p = dir + "/" + name
            let r = rel.isEmpty ? name : rel + "/" + name
            let st = try FileSystem.lstat(p)
            if !st.isDirectory { snapshot.groups[group].entries.append((name, StatKey(st))) }
            buffer.append(utf8: r)
            buffer.append(0)
            buffer.appendDecimal(st.mode)
            buffer.append(0)
            if st.isDirectory {
                buffer.append(0x0A)
                try walk(p, rel: r, stat: st, into: h, buffer: &buffer, snapshot: &snapshot)
            } else {
                buffer.append(utf8: try entryDigest(p, st))
                buffer.append(0x0A)
            }
            if buffer.count >= 1 << 16 {
                h.update(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
    }
}

final class LockedSet: @unchecked Sendable {
    private let lock = NSLock()
    private var items: Set<String> = []
    func insert(_ s: String) { lock.lock(); items.insert(s); lock.unlock() }
    var all: Set<String> { lock.lock(); defer { lock.unlock() }; return items }
}
