import Basics
import Foundation

/// The stat data that identifies an unchanged entry.
struct StatKey: Equatable {
    var mode: UInt32
    var size: UInt64
    var mtimeNs: Int64
    var ctimeNs: Int64
    var inode: UInt64

    static let encodedSize = 36

    init(_ st: FileSystem.Stat) {
        mode = st.mode
        size = st.size
        mtimeNs = st.mtimeSec * 1_000_000_000 + st.mtimeNsec
        ctimeNs = st.ctimeSec * 1_000_000_000 + st.ctimeNsec
        inode = st.inode
    }

    init(_ st: stat) {
        mode = UInt32(st.st_mode)
        size = UInt64(st.st_size)
        mtimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        ctimeNs = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
        inode = UInt64(st.st_ino)
    }

    /// Read from a snapshot file (little-endian, unaligned).
    init(at p: UnsafeRawPointer) {
        mode = UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))
        size = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt64.self))
        mtimeNs = Int64(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: Int64.self))
        ctimeNs = Int64(littleEndian: p.loadUnaligned(fromByteOffset: 20, as: Int64.self))
        inode = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 28, as: UInt64.self))
    }

    func encode(into out: inout [UInt8]) {
        out.appendLE(mode)
        out.appendLE(size)
        out.appendLE(UInt64(bitPattern: mtimeNs))
        out.appendLE(UInt64(bitPattern: ctimeNs))
        out.appendLE(inode)
    }

    func isRacy(_ limit: Int64) -> Bool { mtimeNs >= limit || ctimeNs >= limit }
}

extension [UInt8] {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}

/// A directory input's digest plus the stat data of everything below it, grouped by
/// directory. The digest stays valid while every directory and every entry keeps its
/// stat data: adding, removing or renaming an entry changes its directory's mtime and
/// ctime, and writing or chmod-ing a file changes its own (ctime cannot be set back).
///
/// Validation opens each directory once and `fstatat`s its entries by name (a one-
/// component lookup instead of a walk from the root per file), with directories
/// handed out to all cores. No readdir, sort or hash.
///
/// File format (little-endian): "OSBSNAP2", u32 digest length + digest, u32 root length +
/// root, u32 group count, then per directory: u32 path length + path relative to the
/// root ("." for the root) + NUL, its stat key, u32 entry count, and per non-directory
/// entry: stat key, u32 name length + name + NUL. (Stat key: mode u32, size u64,
/// mtime ns i64, ctime ns i64, inode u64.)
struct DirectorySnapshot {
    struct Group {
        var rel: String
        var stat: StatKey
        var entries: [(name: String, stat: StatKey)] = []
    }

    static let magic: [UInt8] = Array("OSBSNAP2".utf8)

    var root: String
    var groups: [Group] = []
    var digest = ""

    init(root: String) { self.root = root }

    /// Not saved when any entry changed within the last 2 s: a second write in the same
    /// timestamp tick would otherwise go unnoticed.
    func save(_ path: String) throws {
        let racy = Int64(Date().timeIntervalSince1970 * 1e9) - 2_000_000_000
        var out: [UInt8] = DirectorySnapshot.magic
        out.reserveCapacity(groups.reduce(0) { $0 + 64 + $1.rel.utf8.count + $1.entries.count * 64 })
        func bytes(_ s: String, nul: Bool) {
            out.appendLE(UInt32(s.utf8.count))
            out.append(contentsOf: s.utf8)
            if nul { out.append(0) }
        }
        bytes(digest, nul: false)
        bytes(root, nul: false)
        out.appendLE(UInt32(groups.count))
        for g in groups {
            if g.stat.isRacy(racy) { return }
            bytes(g.rel.isEmpty ? "." : g.rel, nul: true)
            g.stat.encode(into: &out)
            out.appendLE(UInt32(g.entries.count))
            for e in g.entries {
                if e.stat.isRacy(racy) { return }
                e.stat.encode(into: &out)
                bytes(e.name, nul: true)
            }
        }
        try FileSystem.makeDirectories(FileSystem.dirname(path))
        try FileSystem.writeAtomically(path, out)
    }

    /// Snapshot file name for a directory input (the suffix names the format, so an
    /// older osbuild never reads this one and the other way round).
    static func fileName(for root: String) -> String { SHA256.hex(root) + ".v2" }

    /// The saved digest when every directory and entry still has its recorded stat
    /// data, else nil (also for a missing or malformed snapshot: the caller re-walks).
    static func currentDigest(_ snapPath: String, root: String, rootStat: FileSystem.Stat) -> String? {
        validate(snapPath) { savedRoot in savedRoot == root ? StatKey(rootStat) : nil }?.digest
    }

    /// Checks a snapshot; `rootStat` is given the saved root path and returns the root's
    /// current stat key (nil: do not trust this snapshot).
    static func validate(_ snapPath: String, rootStat: (String) -> StatKey?) -> (root: String, rootStat: StatKey, digest: String)? {
        guard let bytes = readWhole(snapPath) else { return nil }
        return bytes.withUnsafeBytes { raw -> (root: String, rootStat: StatKey, digest: String)? in
            guard let base = raw.baseAddress else { return nil }
            var r = Reader(base: base, count: raw.count)
            guard r.take(magic.count).map({ $0.elementsEqual(magic) }) == true,
                  let digest = r.string(), let root = r.string(), let rootKey = rootStat(root),
                  let groupCount = r.u32() else { return nil }
            // Index the groups (offset of the NUL-terminated path, stat, entry count,
            // offset of the first entry) so workers can take whole directories.
            var groups: [(path: Int, stat: StatKey, count: Int, entries: Int)] = []
            groups.reserveCapacity(Int(groupCount))
            for _ in 0..<groupCount {
                // Names are handed to the kernel as C strings in place: each must end in
                // its NUL, whatever a damaged file says.
                guard let len = r.u32(), let pathOff = r.skip(Int(len) + 1), raw[pathOff + Int(len)] == 0,
                      let st = r.statKey(), let n = r.u32() else { return nil }
                let first = r.offset
                for _ in 0..<n {
                    guard r.skip(StatKey.encodedSize) != nil, let nl = r.u32(), let nameOff = r.skip(Int(nl) + 1),
                          raw[nameOff + Int(nl)] == 0 else { return nil }
                }
                groups.append((pathOff, st, Int(n), first))
            }
            // The first group is the root itself ("."), checked against the caller's lstat.
            guard r.offset == raw.count, let g0 = groups.first, g0.stat == rootKey,
                  raw[g0.path] == 0x2E, raw[g0.path + 1] == 0 else { return nil }
            let rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard rootfd >= 0 else { return nil }
            defer { close(rootfd) }
            let work = SnapshotWork(groups.count)
            let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, groups.count,
                                     groups.reduce(0) { $0 + $1.count } / 1024 + 1))
            let shared = SharedPointer(base)
            groups.withUnsafeBufferPointer { gs in
                let gs = SharedBuffer(gs)
                DispatchQueue.concurrentPerform(iterations: workers) { _ in
                    let base = shared.pointer
                    var st = stat()
                    while let gi = work.next() {
                        let g = gs.buffer[gi]
                        let path = (base + g.path).assumingMemoryBound(to: CChar.self)
                        let dfd = gi == 0 ? rootfd : openat(rootfd, path, oPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                        guard dfd >= 0 else { work.fail(); return }
                        defer { if gi != 0 { close(dfd) } }
                        guard gi == 0 || (fstat(dfd, &st) == 0 && StatKey(st) == g.stat) else { work.fail(); return }
                        var off = g.entries
                        for _ in 0..<g.count {
                            let key = StatKey(at: base + off)
                            let nameLen = Int(UInt32(littleEndian: (base + off + StatKey.encodedSize).loadUnaligned(as: UInt32.self)))
                            let name = (base + off + StatKey.encodedSize + 4).assumingMemoryBound(to: CChar.self)
                            guard fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, StatKey(st) == key else { work.fail(); return }
                            off += StatKey.encodedSize + 4 + nameLen + 1
                        }
                    }
                }
            }
            return work.failed ? nil : (root, rootKey, digest)
        }
    }

    /// The whole file in one read (snapshots are a few hundred KiB for 10,000 files).
    private static func readWhole(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return nil }
        let size = Int(st.st_size)
        var ok = true
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buf, count in
            var done = 0
            while done < size {
                let n = read(fd, buf.baseAddress.map { $0 + done }, size - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { ok = false; break }
                done += n
            }
            count = done
        }
        return ok ? bytes : nil
    }
}

/// O_PATH (open for fstat/`*at` use only, no read permission needed); Glibc's Swift
/// module does not export it. 010000000 on x86-64 and AArch64 alike.
private let oPath: Int32 = 0o10000000

/// Bounds-checked cursor over a snapshot's bytes.
private struct Reader {
    let base: UnsafeRawPointer
    let count: Int
    var offset = 0

    mutating func skip(_ n: Int) -> Int? {
        guard n >= 0, count - offset >= n else { return nil }
        defer { offset += n }
        return offset
    }

    mutating func take(_ n: Int) -> UnsafeRawBufferPointer? {
        skip(n).map { UnsafeRawBufferPointer(start: base + $0, count: n) }
    }

    mutating func u32() -> UInt32? {
        skip(4).map { UInt32(littleEndian: (base + $0).loadUnaligned(as: UInt32.self)) }
    }

    mutating func statKey() -> StatKey? {
        skip(StatKey.encodedSize).map { StatKey(at: base + $0) }
    }

    mutating func string() -> String? {
        guard let n = u32(), let b = take(Int(n)) else { return nil }
        return String(decoding: b, as: UTF8.self)
    }
}

/// Hands out directory indexes to the validation workers; any mismatch stops them all.
private final class SnapshotWork: @unchecked Sendable {
    private let lock = NSLock()
    private var nextIndex = 0
    private var stop = false
    private let total: Int

    init(_ total: Int) { self.total = total }

    func next() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard !stop, nextIndex < total else { return nil }
        defer { nextIndex += 1 }
        return nextIndex
    }

    func fail() { lock.lock(); stop = true; lock.unlock() }
    var failed: Bool { lock.lock(); defer { lock.unlock() }; return stop }
}

/// Read-only views handed to `concurrentPerform` workers.
private struct SharedPointer: @unchecked Sendable {
    let pointer: UnsafeRawPointer
    init(_ p: UnsafeRawPointer) { pointer = p }
}

private struct SharedBuffer<T>: @unchecked Sendable {
    let buffer: UnsafeBufferPointer<T>
    init(_ b: UnsafeBufferPointer<T>) { buffer = b }
}

/// Validation of a build directory's snapshots, started when the process starts (while
/// arguments and board files are still being parsed) so a no-op build's input check
/// overlaps that work instead of following it. A result is used once, and only when
/// the hasher asks for the same snapshot and root and the root's lstat still matches;
/// anything else falls back to the normal check, so a wrong guess only wastes work.
public final class SnapshotPrefetch: @unchecked Sendable {
    private static let lock = NSLock()
    /// By snapshots directory (one build directory per process in the CLI; tests run several).
    nonisolated(unsafe) private static var current: [String: SnapshotPrefetch] = [:]

    private let dir: String
    private let cond = NSCondition()
    private var listed = false
    private var pending: Set<String> = []
    private var results: [String: (root: String, rootStat: StatKey, digest: String)] = [:]

    private init(dir: String) { self.dir = dir }

    /// Starts checking every snapshot in `buildDir` on a background thread.
    public static func start(buildDir: BuildDirectory) {
        let p = SnapshotPrefetch(dir: buildDir.snapshotsDir)
        lock.lock()
        current[p.dir] = p
        lock.unlock()
        let t = Thread { p.run() }
        t.start()
    }

    private func run() {
        let names = ((try? FileSystem.listDirectory(dir)) ?? []).filter { $0.hasSuffix(".v2") }
        cond.lock()
        pending = Set(names.map { dir + "/" + $0 })
        listed = true
        cond.broadcast()
        cond.unlock()
        for name in names {
            let path = dir + "/" + name
            let r = DirectorySnapshot.validate(path) { root in
                (try? FileSystem.lstatIfExists(root)).flatMap { $0 }.map(StatKey.init)
            }
            cond.lock()
            pending.remove(path)
            if let r { results[path] = r }
            cond.broadcast()
            cond.unlock()
        }
    }

    /// The prefetched digest of `root` (waiting for its check if it is still running).
    static func digest(snapshotDir: String, snapshot path: String, root: String, rootStat: FileSystem.Stat) -> String? {
        lock.lock()
        let p = current[snapshotDir]
        lock.unlock()
        guard let p else { return nil }
        p.cond.lock()
        defer { p.cond.unlock() }
        while !p.listed || p.pending.contains(path) { p.cond.wait() }
        guard let r = p.results.removeValue(forKey: path), r.root == root, r.rootStat == StatKey(rootStat) else { return nil }
        return r.digest
    }
}
