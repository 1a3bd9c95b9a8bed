#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Thin, throwing wrappers over the POSIX calls the project needs. One place, so every
/// module reports failures with the same `SystemError` (operation, path, errno).
public enum FileSystem {
    public struct Stat: Sendable, Hashable {
        public var mode: UInt32
        public var size: UInt64
        public var inode: UInt64
        public var device: UInt64
        public var nlink: UInt64
        public var uid: UInt32
        public var gid: UInt32
        public var rdev: UInt64
        public var mtimeSec: Int64
        public var mtimeNsec: Int64
        public var ctimeSec: Int64
        public var ctimeNsec: Int64

        public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
        public var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
        public var isSymlink: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFLNK) }
    }

    public static func lstat(_ path: String) throws -> Stat {
        var st = Glibc.stat()
        guard sysLstat(path, &st) == 0 else { throw SystemError("lstat", path: path, errno: errno) }
        return Stat(st)
    }

    public static func stat(_ path: String) throws -> Stat {
        var st = Glibc.stat()
        guard sysStat(path, &st) == 0 else { throw SystemError("stat", path: path, errno: errno) }
        return Stat(st)
    }

    /// nil when the path does not exist (any other failure throws).
    public static func lstatIfExists(_ path: String) throws -> Stat? {
        var st = Glibc.stat()
        if sysLstat(path, &st) == 0 { return Stat(st) }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw SystemError("lstat", path: path, errno: errno)
    }

    public static func exists(_ path: String) -> Bool {
        var st = Glibc.stat()
        return sysLstat(path, &st) == 0
    }

    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if path.isEmpty { return }
        if let st = try lstatIfExists(path) {
            if st.isDirectory { return }
            // A symlink to a directory is accepted as a directory.
            if st.isSymlink, (try? stat(path))?.isDirectory == true { return }
            throw SystemError("mkdir", path: path, errno: EEXIST)
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw SystemError("mkdir", path: path, errno: errno)
        }
    }

    /// Remove a file or a whole tree (does not follow symlinks). Missing path is fine.
    public static func removeTree(_ path: String) throws {
        guard let st = try lstatIfExists(path) else { return }
        if st.isDirectory {
            // Make sure we can descend even into read-only directories we created.
            chmod(path, 0o700)
            for name in try listDirectory(path) {
                try removeTree(path + "/" + name)
            }
            guard rmdir(path) == 0 else { throw SystemError("rmdir", path: path, errno: errno) }
        } else {
            guard unlink(path) == 0 else { throw SystemError("unlink", path: path, errno: errno) }
        }
    }

    /// Directory entries except "." and "..", unsorted. Names that are not valid UTF-8
    /// are rejected: every model in osbuild names entries by String.
    public static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw SystemError("opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let ent = readdir(dir) else {
                if errno != 0 { throw SystemError("readdir", path: path, errno: errno) }
                break
            }
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw -> String? in
                let bytes = raw.prefix(while: { $0 != 0 })
                return String(validating: bytes, as: UTF8.self)
            }
            guard let name else {
                throw MessageError("\(path): contains a file name that is not valid UTF-8; rename it", exitCode: ExitStatus.usage)
            }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        return names
    }

    public static func readSymlink(_ path: String) throws -> String {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { throw SystemError("readlink", path: path, errno: errno) }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    public static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path, errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    public static func readText(_ path: String) throws -> String {
        let bytes = try readFile(path)
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw MessageError("\(path): not valid UTF-8 text", exitCode: ExitStatus.usage)
        }
        return s
    }

    /// Write a whole file atomically (temp name in the same directory, fsync, rename).
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        try AtomicOutputFile.write(path, mode: mode) { out in try out.write(bytes) }
    }

    public static func writeAtomically(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
        try writeAtomically(path, Array(text.utf8), mode: mode)
    }

    public static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw SystemError("rename \(from) ->", path: to, errno: errno) }
    }

    public static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return normalize(path) }
        return normalize(FileManager.default.currentDirectoryPath + "/" + path)
    }

    /// Lexical normalisation: collapses "//", "." and "..", never touches the disk.
    public static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for p in path.split(separator: "/", omittingEmptySubsequences: true) {
            if p == "." { continue }
            if p == ".." {
                if let last = parts.last, last != ".." { parts.removeLast() } else if !absolute { parts.append(p) }
                continue
            }
            parts.append(p)
        }
        let joined = parts.joined(separator: "/")
        return absolute ? "/" + joined : (joined.isEmpty ? "." : joined)
    }

    public static func join(_ a: String, _ b: String) -> String {
        if b.hasPrefix("/") { return b }
        if a.isEmpty { return b }
        return a.hasSuffix("/") ? a + b : a + "/" + b
    }

    public static func basename(_ path: String) -> String {
        (path as NSString).lastPathComponent
    }

    public static func dirname(_ path: String) -> String {
        let d = (path as NSString).deletingLastPathComponent
        return d.isEmpty ? "." : d
    }
}

private func sysLstat(_ path: String, _ st: inout stat) -> Int32 { lstat(path, &st) }
private func sysStat(_ path: String, _ st: inout stat) -> Int32 { stat(path, &st) }

extension FileSystem.Stat {
    public init(_ st: stat) {
        mode = UInt32(st.st_mode)
        size = UInt64(st.st_size)
        inode = UInt64(st.st_ino)
        device = UInt64(st.st_dev)
        nlink = UInt64(st.st_nlink)
        uid = st.st_uid
        gid = st.st_gid
        rdev = UInt64(st.st_rdev)
        mtimeSec = Int64(st.st_mtim.tv_sec)
        mtimeNsec = Int64(st.st_mtim.tv_nsec)
        ctimeSec = Int64(st.st_ctim.tv_sec)
        ctimeNsec = Int64(st.st_ctim.tv_nsec)
    }
}

/// What `AtomicOutputFile.commit` guarantees beyond the atomic rename.
public enum Durability: Sendable {
    /// Data flushed to stable storage (`fsync`) before the rename, with background syncs
    /// while writing: after a power cut the final name holds the whole file or is absent.
    /// Stage outputs use this: their done record must never outlive their data.
    case synced
    /// Renamed without flushing, like mkfs.erofs, mksquashfs or cp: a killed or failed
    /// run still never leaves a file under the final name, but a power cut shortly after
    /// may (the page cache had not reached the disk yet).
    case renameOnly
}

/// An output file written under a temporary name and renamed into place only when the
/// producer finishes without throwing. An interrupted build never leaves a file at the
/// final path that looks finished; the temp name starts with ".osbuild-tmp-".
public final class AtomicOutputFile {
    public let finalPath: String
    public let tempPath: String
    public let fd: Int32
    public let durability: Durability
    private var done = false
    /// Bytes written since write-back was last started (see `noteWritten`).
    private var unflushed = 0
    /// Bytes written since the last background sync was requested.
    private var unsynced = 0
    /// Started once the file is big enough to be worth it (see `noteWritten`).
    private var syncer: BackgroundSync?

    public init(_ path: String, mode: mode_t = 0o644, durability: Durability = .synced) throws {
        finalPath = path
        self.durability = durability
        let dir = FileSystem.dirname(path)
        let base = FileSystem.basename(path)
        tempPath = dir + "/.osbuild-tmp-" + base + "-" + String(getpid()) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let f = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard f >= 0 else { throw SystemError("create", path: tempPath, errno: errno) }
        fd = f
    }

    deinit {
        if !done { abandon() }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        guard let base = buffer.baseAddress else { return }
        var off = 0
        while off < buffer.count {
            let n = Glibc.write(fd, base + off, buffer.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path: finalPath, errno: errno)
            }
            off += n
        }
        noteWritten(buffer.count)
    }

    /// Every 16 MiB, start write-back of the dirty pages without waiting for it, so the
    /// disk works while the producer computes (otherwise a 250 MB image spends ~0.3 s in
    /// the final fsync, or the writer stalls in dirty-page throttling). Every 32 MiB, ask
    /// a background thread to make what is written durable (`BackgroundSync`), so the
    /// `fsync` in `commit` has only the last piece to flush. Producers that write to `fd`
    /// themselves (worker threads with pwrite or copy_file_range) report their bytes
    /// here, from one thread.
    public func noteWritten(_ n: Int) {
        guard durability == .synced else { return }
        unflushed += n
        unsynced += n
        if unflushed >= 16 << 20 {
            unflushed = 0
            startWriteBack(fd)
        }
        if unsynced >= 32 << 20 {
            unsynced = 0
            if syncer == nil { syncer = BackgroundSync(fd: fd) }
            syncer?.request()
        }
    }

    /// Stops the background sync thread (before `fd` is closed); its first failure, or 0.
    private func stopSyncer() -> Int32 {
        defer { syncer = nil }
        return syncer?.finish() ?? 0
    }

    public func pwrite(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard let base = buffer.baseAddress else { return }
        var off = 0
        while off < buffer.count {
            let n = Glibc.pwrite(fd, base + off, buffer.count - off, off_t(offset) + off_t(off))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path: finalPath, errno: errno)
            }
            off += n
        }
        noteWritten(buffer.count)
    }

    public func commit() throws {
        guard !done else { return }
        done = true
        let background = stopSyncer()
        var e: Int32 = 0
        if durability == .synced && fsync(fd) != 0 && errno != EINVAL { e = errno }
        // A write-back error seen by the background sync is reported once, to it.
        if e == 0 { e = background }
        if e != 0 {
            close(fd)
            unlink(tempPath)
            throw SystemError("fsync", path: tempPath, errno: e)
        }
        // Without fsync, close is where network filesystems report a failed write.
        if close(fd) != 0 && errno != EINTR {
            let e = errno
            unlink(tempPath)
            throw SystemError("close", path: tempPath, errno: e)
        }
        guard Glibc.rename(tempPath, finalPath) == 0 else {
            let e = errno
            unlink(tempPath)
            throw SystemError("rename to", path: finalPath, errno: e)
        }
    }

    public func abandon() {
        guard !done else { return }
        done = true
        _ = stopSyncer()
        close(fd)
        unlink(tempPath)
    }

    /// Run `body` with a fresh temp file; commit on success, remove on any error.
    @discardableResult
    public static func write<T>(_ path: String, mode: mode_t = 0o644, _ body: (AtomicOutputFile) throws -> T) throws -> T {
        let out = try AtomicOutputFile(path, mode: mode)
        do {
            let r = try body(out)
            try out.commit()
            return r
        } catch {
            out.abandon()
            throw error
        }
    }
}
