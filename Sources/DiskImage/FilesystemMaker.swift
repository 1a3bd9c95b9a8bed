import Basics
import FSTree
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A filesystem could not be created or populated; names the partition and the reason.
public struct FilesystemError: UserError {
    public var partition: String
    public var message: String
    public var exitCode: Int32
    public init(partition: String, message: String, exitCode: Int32 = ExitStatus.failure) {
        self.partition = partition
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { "partition '\(partition)': \(message)" }
}

/// Creates vfat and ext2/3/4 filesystem images of a given size, populated from an
/// FSTree, a host directory or a `src:dst` list, reproducibly (fixed ids, one clock).
///
/// vfat: mkfs.fat (`--invariant`, fixed volume id) + mtools with SOURCE_DATE_EPOCH, entries
/// copied directory by directory in byte order so the directory layout never depends on
/// host readdir order. ext*: `mke2fs -d` from a staged copy of the tree, then one debugfs
/// pass that sets owner, mode and all four timestamps of every inode (mke2fs 1.47.0 copies
/// host ctimes, which would make the image differ between builds).
public enum FilesystemMaker {
    public static func make(_ spec: FilesystemSpec, size: UInt64, at path: String, epoch: Int64, work: String, partition: String) throws {
        var tree = try loadTree(spec.source, ownership: spec.ownership, partition: partition)
        tree.clampMtimes(to: epoch)
        try FileSystem.makeDirectories(work)
        switch spec.kind {
        case .vfat: try makeVFAT(spec, tree: tree, size: size, at: path, epoch: epoch, work: work, partition: partition)
        case .ext2, .ext3, .ext4:
            // A host directory is read in place by mke2fs (no staging copy); the debugfs
            // pass then corrects whatever differs from the tree.
            var direct: String? = nil
            if case .directory(let d) = spec.source { direct = d }
            try makeExt(spec, tree: tree, sourceDirectory: direct, size: size, at: path, epoch: epoch, work: work, partition: partition)
        }
    }

    /// Like `make`, but the result appears at `path` only on success (temp name + rename).
    public static func build(_ spec: FilesystemSpec, size: UInt64, to path: String, epoch: Int64, work: String, partition: String) throws {
        let out = try AtomicOutputFile(path)
        do {
            try make(spec, size: size, at: out.tempPath, epoch: epoch, work: work, partition: partition)
            trace("made \(partition)")
            try out.commit()
            trace("committed \(partition)")
        } catch {
            out.abandon()
            throw error
        }
    }

    static func trace(_ s: String) {
        if ProcessInfo.processInfo.environment["OSBUILD_DISK_TRACE"] != nil {
            FileHandle.standardError.write(Data("TRACE \(Date().timeIntervalSince1970) \(s)\n".utf8))
        }
    }

    /// The one tree a filesystem is populated from.
    public static func loadTree(_ source: FilesystemSpec.Source, ownership: FSTree.HostImportOptions.Ownership = .root, partition: String) throws -> FSTree {
        switch source {
        case .empty: return FSTree()
        case .tree(let t): return t
        case .directory(let d): return try FSTree.fromHostDirectory(d, options: .init(ownership: ownership))
        case .files(let list):
            // Directories the list implies get the newest possible time, which the
            // SOURCE_DATE_EPOCH clamp then turns into the build time (like mmd would).
            let implied = Inode.directory(mtime: Timestamp(seconds: Int64(Int32.max)))
            var t = FSTree(root: implied)
            for (src, dst) in list {
                guard let st = try FileSystem.lstatIfExists(src) else {
                    throw FilesystemError(partition: partition, message: "file \(src) (for \(dst)) does not exist", exitCode: ExitStatus.usage)
                }
                if st.isDirectory {
                    try t.importHostDirectory(src, at: dst)
                } else {
                    let st2 = try FileSystem.stat(src)
                    let inode = Inode.file(st2.size == 0 ? .empty : .hostFile(path: src, size: st2.size),
                                           permissions: UInt16(st2.mode & 0o7777),
                                           mtime: Timestamp(seconds: st2.mtimeSec, nanoseconds: UInt32(st2.mtimeNsec)))
                    if let old = t.lookup(dst), old != FSTree.rootID { try t.remove(dst) }
                    try t.insert(dst, inode, createParents: true, parentTemplate: implied)
                }
            }
            return t
        }
    }

    // MARK: staging

    /// Writes the tree's directories, files and symlinks under `dir` (files hard-linked
    /// to their host source when its mtime is already right, else copied and given the
    /// tree's permissions, mtime and `atime`). Returns the entries that cannot be staged
    /// without privileges (devices, fifos, sockets).
    static func stage(_ tree: FSTree, into dir: String, symlinks: Bool, atime: Int64 = 0, devices: Bool = false) throws -> [(path: String, inode: Inode)] {
        var special: [(String, Inode)] = []
        var linked: [InodeID: String] = [:]
        try FileSystem.makeDirectories(dir)
        try tree.walk { path, id, inode in
            let host = path == "/" ? dir : dir + path
            switch inode.kind {
            case .directory:
                if path != "/" { guard mkdir(host, 0o755) == 0 else { throw SystemError("mkdir", path: host, errno: errno) } }
            case .regular:
                if let first = linked[id] {
                    guard link(first, host) == 0 else { throw SystemError("link", path: host, errno: errno) }
                    return
                }
                // Touching a hard link would change the user's input file: only copies get
                // our permissions and times.
                if try !stageFile(inode.content, to: host, mtime: inode.mtime) {
                    chmod(host, mode_t(inode.permissions | 0o400))
                    setTimes(host, atime: atime, mtime: inode.mtime)
                }
                linked[id] = host
            case .symlink:
                guard symlinks else { throw MessageError("\(path): symbolic links cannot be stored in this filesystem", exitCode: ExitStatus.usage) }
                guard symlink(inode.symlinkTarget, host) == 0 else { throw SystemError("symlink", path: host, errno: errno) }
                setTimes(host, atime: atime, mtime: inode.mtime)
            default:
                if devices {
                    // Only root can create device nodes on the host.
                    // glibc's dev_t layout (makedev is a macro Swift does not import).
                    let ma = UInt64(inode.rdev.major), mi = UInt64(inode.rdev.minor)
                    let dev = dev_t((mi & 0xFF) | ((ma & 0xFFF) << 8) | ((mi & ~UInt64(0xFF)) << 12) | ((ma & ~UInt64(0xFFF)) << 32))
                    guard mknod(host, mode_t(inode.mode), dev) == 0 else {
                        throw MessageError("\(path): cannot create \(inode.kind) in staging (needs root): \(String(cString: strerror(errno)))")
                    }
                } else {
                    special.append((path, inode))
                }
            }
        }
        // Directory times last (creating children changes them).
        tree.walk { path, _, inode in
            if inode.kind == .directory { setTimes(path == "/" ? dir : dir + path, atime: atime, mtime: inode.mtime) }
        }
        return special
    }

    struct StagedStat { var uid: UInt32; var gid: UInt32; var mode: UInt32; var mtimeSec: Int64; var atimeSec: Int64 }

    static func stagedStat(_ path: String) throws -> StagedStat {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw SystemError("lstat", path: path, errno: errno) }
        return StagedStat(uid: st.st_uid, gid: st.st_gid, mode: UInt32(st.st_mode), mtimeSec: Int64(st.st_mtim.tv_sec), atimeSec: Int64(st.st_atim.tv_sec))
    }

    private static func setTimes(_ path: String, atime: Int64, mtime: Timestamp) {
        var ts = [timespec(tv_sec: Int(atime), tv_nsec: 0), timespec(tv_sec: Int(mtime.seconds), tv_nsec: Int(mtime.nanoseconds))]
        utimensat(AT_FDCWD, path, &ts, AT_SYMLINK_NOFOLLOW)
    }

    /// Returns true when the file was hard-linked (its times must not be touched).
    private static func stageFile(_ content: ContentSource, to host: String, mtime: Timestamp) throws -> Bool {
        switch content {
        case .hostFile(let src, _):
            if let st = try? FileSystem.stat(src), st.mtimeSec == mtime.seconds, st.mtimeNsec == Int64(mtime.nanoseconds), link(src, host) == 0 { return true }
            try copyRange(src, offset: 0, length: content.size, to: host)
        case .fileRange(let src, let off, let len):
            try copyRange(src, offset: off, length: len, to: host)
        case .empty, .bytes:
            let r = try ContentReader(content)
            try FileSystem.writeAtomically(host, try r.readAll())
        }
        return false
    }

    private static func copyRange(_ src: String, offset: UInt64, length: UInt64, to dst: String) throws {
        let i = open(src, O_RDONLY | O_CLOEXEC)
        guard i >= 0 else { throw SystemError("open", path: src, errno: errno) }
        defer { close(i) }
        let o = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard o >= 0 else { throw SystemError("create", path: dst, errno: errno) }
        defer { close(o) }
        let bufSize = 1 << 20
        let base = UnsafeMutableRawPointer.allocate(byteCount: bufSize, alignment: 16)
        defer { base.deallocate() }
        var pos = offset
        let end = offset + length
        while pos < end {
            let n = pread(i, base, Int(min(UInt64(bufSize), end - pos)), off_t(pos))
            if n < 0 { if errno == EINTR { continue }; throw SystemError("read", path: src, errno: errno) }
            if n == 0 { throw MessageError("\(src): file shrank while being copied") }
            var done = 0
            while done < n {
                let k = write(o, base + done, n - done)
                if k < 0 { if errno == EINTR { continue }; throw SystemError("write", path: dst, errno: errno) }
                done += k
            }
            pos += UInt64(n)
        }
    }

    private static func createSized(_ path: String, _ size: UInt64) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("create", path: path, errno: errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw SystemError("truncate", path: path, errno: errno) }
    }

    // MARK: vfat

    static func makeVFAT(_ spec: FilesystemSpec, tree: FSTree, size: UInt64, at path: String, epoch: Int64, work: String, partition: String) throws {
        if spec.extraArgs.isEmpty {
            try makeVFATNative(spec, tree: tree, size: size, at: path, epoch: epoch, partition: partition)
            return
        }
        let stageDir = work + "/root"
        let special = try stage(tree, into: stageDir, symlinks: false)
        if let s = special.first {
            throw FilesystemError(partition: partition, message: "\(s.path): a \(s.inode.kind) cannot be stored in vfat", exitCode: ExitStatus.usage)
        }
        try createSized(path, size)
        // FAT dates start in 1980.
        let env = ["SOURCE_DATE_EPOCH": String(max(epoch, 315_532_800)), "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC", "LC_ALL": "C"]
        var args = ["mkfs.fat", "--invariant"]
        if let f = spec.fatSize { args += ["-F", String(f.rawValue)] }
        let volid = spec.uuid.map { $0.replacingOccurrences(of: "-", with: "") }
            ?? String(GUID.derived("vfat", partition).prefix(8))
        guard volid.count == 8, UInt32(volid, radix: 16) != nil else {
            throw FilesystemError(partition: partition, message: "vfat volume id '\(spec.uuid ?? "")' must be 8 hex digits (e.g. 0B007001 or 0B00-7001)", exitCode: ExitStatus.usage)
        }
        args += ["-i", volid]
        if let l = spec.label {
            guard l.utf8.count <= 11 else {
                throw FilesystemError(partition: partition, message: "vfat label '\(l)' is longer than 11 bytes", exitCode: ExitStatus.usage)
            }
            args += ["-n", l]
        }
        args += spec.extraArgs
        args.append(path)
        try run(args, env: env, partition: partition, hint: "dosfstools")

        // Directories first (pre-order, byte order), then each directory's files in one mcopy.
        var dirs: [String] = []
        var filesByDir: [(String, [String])] = []
        tree.walk { p, _, inode in
            if inode.kind == .directory {
                if p != "/" { dirs.append(p) }
                let files = tree.children(of: tree.lookup(p) ?? FSTree.rootID)
                    .filter { tree[$0.id].kind == .regular }.map { (p == "/" ? "" : p) + "/" + $0.name }
                if !files.isEmpty { filesByDir.append((p, files)) }
            }
        }
        if !dirs.isEmpty {
            try run(["mmd", "-i", path] + dirs.map { "::" + $0 }, env: env, partition: partition, hint: "mtools")
        }
        for (d, files) in filesByDir {
            try run(["mcopy", "-i", path, "-m", "-o"] + files.map { stageDir + $0 } + ["::" + (d == "/" ? "/" : d + "/")],
                    env: env, partition: partition, hint: "mtools")
        }
    }

    /// The native writer (default); mkfs.fat + mtools remain for configs that pass extra
    /// mkfs.fat arguments the native writer does not model.
    static func makeVFATNative(_ spec: FilesystemSpec, tree: FSTree, size: UInt64, at path: String, epoch: Int64, partition: String) throws {
        let volid = spec.uuid.map { $0.replacingOccurrences(of: "-", with: "") } ?? String(GUID.derived("vfat", partition).prefix(8))
        guard volid.count == 8, let vid = UInt32(volid, radix: 16) else {
            throw FilesystemError(partition: partition, message: "vfat volume id '\(spec.uuid ?? "")' must be 8 hex digits (e.g. 0B007001 or 0B00-7001)", exitCode: ExitStatus.usage)
        }
        if let l = spec.label, l.utf8.count > 11 {
            throw FilesystemError(partition: partition, message: "vfat label '\(l)' is longer than 11 bytes", exitCode: ExitStatus.usage)
        }
        do {
            try FATWriter.write(tree, size: size, to: path, fatSize: spec.fatSize, label: spec.label, volumeID: vid, epoch: max(epoch, 315_532_800))
        } catch let e as FATWriter.Failure {
            throw FilesystemError(partition: partition, message: e.message, exitCode: e.exitCode)
        }
    }

    // MARK: ext2/3/4

    static func makeExt(_ spec: FilesystemSpec, tree: FSTree, sourceDirectory: String?, size: UInt64, at path: String, epoch: Int64, work: String, partition: String) throws {
        let stageDir = sourceDirectory ?? work + "/root"
        trace("ext start \(partition)")
        let special = sourceDirectory != nil ? [] : try stage(tree, into: stageDir, symlinks: true, atime: epoch)
        trace("staged \(partition)")
        try createSized(path, size)
        let uuid = try spec.uuid.map { u -> String in
            guard let g = GUID.parse(u) else { throw DiskLayoutError.invalidGUID(what: "partition '\(partition)' filesystem uuid", value: u) }
            return g.lowercased()
        } ?? GUID.derived("ext", partition).lowercased()
        let env = ["E2FSPROGS_FAKE_TIME": String(epoch), "SOURCE_DATE_EPOCH": String(epoch), "TZ": "UTC", "LC_ALL": "C"]
        // mke2fs keeps only the last -E: merge user extended options into ours.
        var extended = ["root_owner=0:0", "lazy_itable_init=0", "lazy_journal_init=0"]
        var extra: [String] = []
        var k = 0
        while k < spec.extraArgs.count {
            if spec.extraArgs[k] == "-E", k + 1 < spec.extraArgs.count {
                extended += spec.extraArgs[k + 1].split(separator: ",").map(String.init)
                k += 2
                continue
            }
            extra.append(spec.extraArgs[k])
            k += 1
        }
        if !extended.contains(where: { $0.hasPrefix("hash_seed=") }) {
            extended.append("hash_seed=" + GUID.derived("ext-hash", uuid).lowercased())
        }
        var args = ["mke2fs", "-q", "-F", "-t", spec.kind.rawValue, "-I", "256", "-E", extended.joined(separator: ","), "-U", uuid]
        if size < (UInt64(4) << 30) { args += ["-O", "^large_file"] }
        if size < (UInt64(2) << 40) { args += ["-O", "^huge_file"] }
        if let l = spec.label {
            guard l.utf8.count <= 16 else {
                throw FilesystemError(partition: partition, message: "ext label '\(l)' is longer than 16 bytes", exitCode: ExitStatus.usage)
            }
            args += ["-L", l]
        }
        if let f = spec.features { args += ["-O", f] }
        args += extra
        args += ["-d", stageDir, path, String(size / 1024) + "k"]
        try run(args, env: env, partition: partition, hint: "e2fsprogs")
        trace("mke2fs done \(partition)")

        // Fix ownership, modes and timestamps of every inode in one debugfs run.
        var script = ""
        func q(_ p: String) throws -> String {
            if p.contains("\"") || p.contains("\n") {
                throw FilesystemError(partition: partition, message: "\(p): names with '\"' or newlines are not supported in ext filesystems yet", exitCode: ExitStatus.usage)
            }
            return "\"" + p + "\""
        }
        for s in special {
            let parent = FileSystem.dirname(s.path)
            let name = FileSystem.basename(s.path)
            script += "cd \(try q(parent))\n"
            switch s.inode.kind {
            case .charDevice: script += "mknod \(try q(name)) c \(s.inode.rdev.major) \(s.inode.rdev.minor)\n"
            case .blockDevice: script += "mknod \(try q(name)) b \(s.inode.rdev.major) \(s.inode.rdev.minor)\n"
            case .fifo: script += "mknod \(try q(name)) p\n"
            default:
                throw FilesystemError(partition: partition, message: "\(s.path): a \(s.inode.kind) cannot be stored", exitCode: ExitStatus.usage)
            }
            script += "cd /\n"
        }
        // debugfs fixes only owner/mode/mtime where the staged files could not carry them
        // (each command costs a path lookup), plus device nodes; atime/ctime/crtime of every
        // inode are then normalised natively in one pass over the inode tables.
        var seen = Set<InodeID>()
        let specialPaths = Set(special.map(\.path))
        let specialParents = Set(special.map { FileSystem.dirname($0.path) })
        try tree.walk { p, id, inode in
            guard seen.insert(id).inserted else { return }
            let f = try q(p)
            let staged = specialPaths.contains(p) ? nil : try stagedStat(p == "/" ? stageDir : stageDir + p)
            if staged?.uid != inode.uid { script += "sif \(f) uid \(inode.uid)\n" }
            if staged?.gid != inode.gid { script += "sif \(f) gid \(inode.gid)\n" }
            if staged.map({ $0.mode & 0o7777 }) != UInt32(inode.permissions) || staged == nil {
                script += "sif \(f) mode 0\(String(inode.mode, radix: 8))\n"
            }
            // mknod changes its directory's mtime; the native pass clamps mtimes to epoch.
            if staged.map({ min($0.mtimeSec, epoch) }) != inode.mtime.seconds || specialParents.contains(p) {
                script += "sif \(f) mtime @\(inode.mtime.seconds)\n"
            }
        }
        if !script.isEmpty {
            let scriptPath = work + "/debugfs.cmd"
            try FileSystem.writeAtomically(scriptPath, script)
            let r = try run(["debugfs", "-w", "-f", scriptPath, path], env: env, partition: partition, hint: "e2fsprogs")
            // debugfs exits 0 even when a command fails; its stderr names the failure.
            let errs = r.stderrText.split(separator: "\n").filter { !$0.hasPrefix("debugfs ") }
            if let e = errs.first {
                throw FilesystemError(partition: partition, message: "debugfs could not set inode fields: \(e)")
            }
        }
        try Ext4Times.normalise(path, epoch: epoch)
        trace("times fixed \(partition)")
    }

    @discardableResult
    static func run(_ args: [String], env: [String: String], partition: String, hint: String) throws -> Subprocess.Result {
        guard let tool = args.first, Subprocess.which(tool) != nil else {
            throw FilesystemError(partition: partition, message: "required tool '\(args.first ?? "")' not found in PATH (install Debian package \(hint))", exitCode: ExitStatus.environment)
        }
        do {
            return try Subprocess.run(args, environment: env)
        } catch let e as Subprocess.ToolError {
            throw FilesystemError(partition: partition, message: e.description)
        }
    }
}
