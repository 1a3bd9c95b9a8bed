import Basics
import FSTree
#if canImport(Glibc)
import Glibc
#endif

/// Writes (part of) an FSTree to a host directory as the current user: directories,
/// regular files, symlinks and hard links with permissions and mtimes. Ownership and
/// device nodes are NOT applied (no chown, no mknod); devices, fifos and sockets are
/// skipped and counted. For tools that need files on disk (depmod, modprobe -d, staging
/// for mke2fs -d).
public enum TreeExporter {
    public struct Report: Sendable, Hashable {
        public var files = 0
        public var skippedSpecial = 0
    }

    /// Export the subtree at `subtree` into `destination` (created; must not exist or be empty).
    /// With `linkHostFiles`, host-file contents are hard-linked instead of copied when possible
    /// (fast, but the exported file then shares its inode with the source file); ranges of a
    /// pack are copied by the kernel (copy_file_range).
    @discardableResult
    public static func export(_ tree: FSTree, subtree: String = "/", to destination: String, linkHostFiles: Bool = false) throws -> Report {
        guard let top = tree.lookup(subtree), tree[top].kind == .directory else {
            throw RootfsError("\(subtree): not a directory in the tree")
        }
        try FileSystem.makeDirectories(destination)
        var report = Report()
        var written: [InodeID: String] = [:]
        var dirs: [(String, Inode)] = []
        func visit(_ dir: InodeID, _ hostDir: String) throws {
            for (name, id) in tree.children(of: dir) {
                let hp = hostDir + "/" + name
                let n = tree[id]
                switch n.kind {
                case .directory:
                    if mkdir(hp, 0o700) != 0 && errno != EEXIST { throw SystemError("mkdir", path: hp, errno: errno) }
                    try visit(id, hp)
                    dirs.append((hp, n))
                case .symlink:
                    if symlink(n.symlinkTarget, hp) != 0 { throw SystemError("symlink", path: hp, errno: errno) }
                    try setTime(hp, n.mtime)
                case .regular:
                    if let first = written[id] {
                        if link(first, hp) != 0 { throw SystemError("link \(first) ->", path: hp, errno: errno) }
                        continue
                    }
                    try writeFile(n, to: hp, link: linkHostFiles)
                    written[id] = hp
                    report.files += 1
                default:
                    report.skippedSpecial += 1
                }
            }
        }
        try visit(top, destination)
        // Directory modes and times last, so read-only directories can still be filled.
        for (hp, n) in dirs {
            if chmod(hp, mode_t(n.permissions)) != 0 { throw SystemError("chmod", path: hp, errno: errno) }
            try setTime(hp, n.mtime)
        }
        return report
    }

    private static func writeFile(_ n: Inode, to hp: String, link linkOK: Bool) throws {
        if linkOK, case .hostFile(let src, _) = n.content, link(src, hp) == 0 { return }
        let fd = open(hp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("create", path: hp, errno: errno) }
        defer { close(fd) }
        if case .fileRange(let src, let offset, let length) = n.content {
            // A range of a pack (blob store, stage output): the kernel copies it.
            let sfd = open(src, O_RDONLY | O_CLOEXEC)
            guard sfd >= 0 else { throw SystemError("open", path: src, errno: errno) }
            defer { close(sfd) }
            let done = try FileCopy.copy(from: sfd, at: offset, to: fd, at: 0, count: length, srcPath: src, dstPath: hp)
            if done < length { throw ContentReader.ChangedWhileReading(path: src, expected: length) }
            if fchmod(fd, mode_t(n.permissions)) != 0 { throw SystemError("chmod", path: hp, errno: errno) }
            try setTime(hp, n.mtime)
            return
        }
        let r = try ContentReader(n.content)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let got = try r.read(into: buf)
            if got == 0 { break }
            guard let base = buf.baseAddress else { break }
            var off = 0
            while off < got {
                let w = write(fd, base + off, got - off)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write", path: hp, errno: errno)
                }
                off += w
            }
        }
        if fchmod(fd, mode_t(n.permissions)) != 0 { throw SystemError("chmod", path: hp, errno: errno) }
        try setTime(hp, n.mtime)
    }

    private static func setTime(_ hp: String, _ t: Timestamp) throws {
        var ts = [timespec(tv_sec: Int(t.seconds), tv_nsec: Int(t.nanoseconds)), timespec(tv_sec: Int(t.seconds), tv_nsec: Int(t.nanoseconds))]
        if utimensat(AT_FDCWD, hp, &ts, AT_SYMLINK_NOFOLLOW) != 0 { throw SystemError("utimensat", path: hp, errno: errno) }
    }
}
