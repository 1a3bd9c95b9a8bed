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
/// A directory's digest is cached in a snapshot (state/snapshots/) listing every entry
/// below it with its stat data. When every entry, directories included, still has the
/// same stat data, the directory is unchanged: adding, removing or renaming an entry
/// changes its parent directory's mtime, and writing a file changes its own. That
/// validation is one `lstat` per entry, with no readdir, sorting or hashing.
public struct InputHasher: Sendable {
    let cache: StatCache
    let snapshotDir: String?

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
        let snapPath = snapshotDir.map { $0 + "/" + SHA256.hex(path) }
        if let snapPath, let digest = DirectorySnapshot.currentDigest(snapPath, root: path, rootStat: st) {
            return digest
        }
        let h = SHA256()
        var buf: [UInt8] = []
        buf.reserveCapacity(1 << 16)
        var snap = DirectorySnapshot(root: path, rootStat: .init(st))
        try walk(path, rel: "", into: h, buffer: &buf, snapshot: &snap)
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
    private func walk(_ dir: String, rel: String, into h: SHA256, buffer: inout [UInt8], snapshot: inout DirectorySnapshot) throws {
        var names = try FileSystem.listDirectory(dir)
        names.sort(by: ByteOrder.less)
        for name in names {
            let p = dir + "/" + name
            let r = rel.isEmpty ? name : rel + "/" + name
            let st = try FileSystem.lstat(p)
            snapshot.entries.append(.init(rel: r, stat: .init(st)))
            buffer.append(utf8: r)
            buffer.append(0)
            buffer.appendDecimal(st.mode)
            buffer.append(0)
            if st.isDirectory {
                buffer.append(0x0A)
                try walk(p, rel: r, into: h, buffer: &buffer, snapshot: &snapshot)
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

private struct SharedPointers: @unchecked Sendable {
    let recs: UnsafeBufferPointer<(Int, StatKey)>
    let raw: UnsafeRawPointer
    let ok: UnsafeMutableBufferPointer<Bool>
}

/// The stat data that identifies an unchanged entry.
struct StatKey: Equatable {
    var mode: UInt32
    var size: UInt64
    var mtimeNs: Int64
    var ctimeNs: Int64
    var inode: UInt64

    init(_ st: FileSystem.Stat) {
        mode = st.mode
        size = st.size
        mtimeNs = st.mtimeSec * 1_000_000_000 + st.mtimeNsec
        ctimeNs = st.ctimeSec * 1_000_000_000 + st.ctimeNsec
        inode = st.inode
    }

    init(mode: UInt32, size: UInt64, mtimeNs: Int64, ctimeNs: Int64, inode: UInt64) {
        self.mode = mode
        self.size = size
        self.mtimeNs = mtimeNs
        self.ctimeNs = ctimeNs
        self.inode = inode
    }
}

struct DirectorySnapshot {
    struct Entry {
        var rel: String
        var stat: StatKey
    }

    var root: String
    var rootStat: StatKey
    var entries: [Entry] = []
    var digest = ""

    init(root: String, rootStat: StatKey) {
        self.root = root
        self.rootStat = rootStat
    }

    /// The saved digest when every entry still has its recorded stat data, else nil.
    /// Works on the file's bytes directly (relative paths become C strings in place, no
    /// Swift Strings) and `fstatat`s against the root's fd, split over all cores: this is
    /// the whole cost of a no-op build's input check.
    static func currentDigest(_ snapPath: String, root: String, rootStat: FileSystem.Stat) -> String? {
        guard var bytes = try? FileSystem.readFile(snapPath) else { return nil }
        return bytes.withUnsafeMutableBufferPointer { b -> String? in
            var i = 0
            let n = b.count
            func line() -> String? {
                let s = i
                while i < n, b[i] != 0x0A { i += 1 }
                guard i < n else { return nil }
                defer { i += 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: b[s..<i]), as: UTF8.self)
            }
            func number() -> UInt64? {
                var v: UInt64 = 0
                let s = i
                while i < n, b[i] >= 0x30, b[i] <= 0x39 { v = v &* 10 &+ UInt64(b[i] - 0x30); i += 1 }
                guard i > s, i < n, b[i] == 0x09 else { return nil }
                i += 1
                return v
            }
            func key() -> StatKey? {
                guard let mode = number(), let size = number(), let m = number(), let c = number(), let ino = number() else { return nil }
                return StatKey(mode: UInt32(truncatingIfNeeded: mode), size: size, mtimeNs: Int64(bitPattern: m), ctimeNs: Int64(bitPattern: c), inode: ino)
            }
            guard let digest = line(), let savedRoot = line(), savedRoot == root, let rk = key(), line() == ".", rk == StatKey(rootStat) else { return nil }
            // Records: (offset of the NUL-terminated relative path, expected stat).
            var records: [(Int, StatKey)] = []
            while i < n {
                guard let k = key() else { return nil }
                let s = i
                while i < n, b[i] != 0x0A { i += 1 }
                guard i < n else { return nil }
                b[i] = 0
                i += 1
                records.append((s, k))
            }
            let dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard dirfd >= 0, let base = b.baseAddress else { return nil }
            defer { close(dirfd) }
            let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, records.count / 2048 + 1))
            let chunk = (records.count + workers - 1) / workers
            let ok = UnsafeMutableBufferPointer<Bool>.allocate(capacity: workers)
            defer { ok.deallocate() }
            ok.initialize(repeating: true)
            records.withUnsafeBufferPointer { recsPtr in
                // Read-only inputs; each worker writes only its own `ok` slot.
                let shared = SharedPointers(recs: recsPtr, raw: UnsafeRawPointer(base), ok: ok)
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    let recs = shared.recs, raw = shared.raw, ok = shared.ok
                    var st = stat()
                    let lo = w * chunk, hi = min(recs.count, lo + chunk)
                    var idx = lo
                    while idx < hi {
                        let (off, k) = recs[idx]
                        let p = raw.advanced(by: off).assumingMemoryBound(to: CChar.self)
                        guard fstatat(dirfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0,
                              StatKey(FileSystem.Stat(st)) == k else { ok[w] = false; return }
                        idx += 1
                    }
                }
            }
            return ok.allSatisfy { $0 } ? digest : nil
        }
    }

    /// Not saved when any entry changed within the last 2 s: a second write in the same
    /// timestamp tick would otherwise go unnoticed.
    func save(_ path: String) throws {
        let racy = Int64(Date().timeIntervalSince1970 * 1e9) - 2_000_000_000
        if rootStat.mtimeNs >= racy || rootStat.ctimeNs >= racy { return }
        var out: [UInt8] = []
        out.reserveCapacity(entries.count * 80 + 200)
        out.append(utf8: digest); out.append(0x0A)
        out.append(utf8: root); out.append(0x0A)
        func add(_ k: StatKey, _ rel: String) {
            out.appendDecimal(k.mode); out.append(0x09)
            out.appendDecimal(k.size); out.append(0x09)
            out.appendDecimal(k.mtimeNs); out.append(0x09)
            out.appendDecimal(k.ctimeNs); out.append(0x09)
            out.appendDecimal(k.inode); out.append(0x09)
            out.append(utf8: rel); out.append(0x0A)
        }
        add(rootStat, ".")
        for e in entries {
            if e.stat.mtimeNs >= racy || e.stat.ctimeNs >= racy { return }
            add(e.stat, e.rel)
        }
        try FileSystem.makeDirectories(FileSystem.dirname(path))
        try FileSystem.writeAtomically(path, out)
    }

}
