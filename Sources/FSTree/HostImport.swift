import Basics
import CLinux
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension FSTree {
    public struct HostImportOptions: Sendable {
        /// Ownership of imported entries: taken from the host, or forced to 0:0.
        public enum Ownership: Sendable { case host, root }
        public var ownership: Ownership
        /// Read extended attributes (user., trusted., security., system.).
        public var readXAttrs: Bool
        public init(ownership: Ownership = .root, readXAttrs: Bool = true) {
            self.ownership = ownership
            self.readXAttrs = readXAttrs
        }
    }

    /// Build a tree from a host directory. Symlinks are stored as links, never followed.
    public static func fromHostDirectory(_ path: String, options: HostImportOptions = .init()) throws -> FSTree {
        var tree = FSTree()
        try tree.importHostDirectory(path, at: "/", options: options)
        return tree
    }

    /// Copy a host directory's entries into this tree under `destination` (overlay
    /// semantics: later entries replace earlier ones, directories merge). Hard links
    /// inside the host directory stay hard links.
    ///
    /// The host side (readdir, lstat, xattrs, readlink: nearly all the time) runs on all
    /// cores, one directory level at a time; the tree is then filled level by level on
    /// this thread by parent handle, so no path is split or looked up per entry. The
    /// result does not depend on thread timing.
    public mutating func importHostDirectory(_ path: String, at destination: String = "/", options: HostImportOptions = .init()) throws {
        let st = try FileSystem.lstat(path)
        guard st.isDirectory else { throw MessageError("\(path): not a directory", exitCode: ExitStatus.usage) }
        var seen: [HostKey: InodeID] = [:]
        let destID = try insert(destination, try FSTree.inode(from: st, path: path, options: options), createParents: true)
        var level: [(host: String, id: InodeID)] = [(path, destID)]
        let workers = max(1, min(8, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        while !level.isEmpty {
            let scans = try FSTree.scanDirectories(level.map(\.host), options: options, workers: workers)
            var next: [(host: String, id: InodeID)] = []
            for (d, scan) in scans.enumerated() {
                let parent = level[d].id
                for e in scan {
                    do {
                        if let key = e.linkKey, let existing = seen[key] {
                            try linkChild(e.name, of: parent, to: existing)
                            continue
                        }
                        let id = try insertChild(e.name, of: parent, e.inode)
                        if let key = e.linkKey { seen[key] = id }
                        if e.inode.kind == .directory { next.append((level[d].host + "/" + e.name, id)) }
                    } catch let error as FSTree.Error {
                        // Name the host path, not just the entry name.
                        throw FSTree.Error(path: level[d].host + "/" + e.name, reason: error.reason)
                    }
                }
            }
            level = next
        }
    }

    private struct HostKey: Hashable { var dev: UInt64; var ino: UInt64 }

    private struct ScannedEntry {
        var name: String
        var inode: Inode
        /// Set for non-directories with more than one link.
        var linkKey: HostKey?
    }

    /// Read the entries of each directory (sorted by byte order) on `workers` threads.
    /// The first error in directory order is thrown, so failures are deterministic too.
    private static func scanDirectories(_ dirs: [String], options: HostImportOptions, workers: Int) throws -> [[ScannedEntry]] {
        let job = DirectoryScan(dirs: dirs, options: options)
        if dirs.count == 1 || workers == 1 {
            for i in dirs.indices { job.scan(i) }
        } else {
            // Hand out directories one at a time: sizes vary a lot (/usr/bin vs /etc/x).
            DispatchQueue.concurrentPerform(iterations: min(workers, dirs.count)) { _ in
                while case let i = job.counter.next(), i < dirs.count { job.scan(i) }
            }
        }
        return try job.results.map { r in
            switch r {
            case .success(let v): return v
            case .failure(let e): throw e
            case nil: return []
            }
        }
    }

    /// Shared by the scanning threads: each writes only `results[i]` for the indices it
    /// took from `counter`, and the caller reads them after `concurrentPerform` returns.
    private final class DirectoryScan: @unchecked Sendable {
        let dirs: [String]
        let options: HostImportOptions
        let counter = AtomicCounter()
        let results: UnsafeMutableBufferPointer<Result<[ScannedEntry], any Swift.Error>?>

        init(dirs: [String], options: HostImportOptions) {
            self.dirs = dirs
            self.options = options
            results = .allocate(capacity: dirs.count)
            results.initialize(repeating: nil)
        }

        deinit {
            results.deinitialize()
            results.deallocate()
        }

        func scan(_ i: Int) {
            results[i] = Result {
                let dir = dirs[i]
                var names = try FileSystem.listDirectory(dir)
                names.sort(by: FSTree.byteOrderLess)
                var out: [ScannedEntry] = []
                out.reserveCapacity(names.count)
                for name in names {
                    let hp = dir + "/" + name
                    let st = try FileSystem.lstat(hp)
                    let key = !st.isDirectory && st.nlink > 1 ? HostKey(dev: st.device, ino: st.inode) : nil
                    out.append(ScannedEntry(name: name, inode: try FSTree.inode(from: st, path: hp, options: options), linkKey: key))
                }
                return out
            }
        }
    }

    static func normalizedTreePath(_ p: String) -> String {
        let c = (try? components(p)) ?? []
        return c.isEmpty ? "" : "/" + c.joined(separator: "/")
    }

    /// One inode from a host `lstat` result.
    public static func inode(from st: FileSystem.Stat, path: String, options: HostImportOptions) throws -> Inode {
        guard let kind = EntryKind(modeTypeBits: st.mode) else {
            throw MessageError("\(path): unsupported file type (mode \(String(st.mode, radix: 8)))")
        }
        var inode = Inode(
            kind: kind, permissions: UInt16(st.mode & 0o7777),
            uid: options.ownership == .root ? 0 : st.uid,
            gid: options.ownership == .root ? 0 : st.gid,
            mtime: Timestamp(seconds: st.mtimeSec, nanoseconds: UInt32(st.mtimeNsec)))
        switch kind {
        case .regular:
            if access(path, R_OK) != 0 { throw SystemError("cannot read", path: path, errno: errno) }
            inode.content = st.size == 0 ? .empty : .hostFile(path: path, size: st.size)
        case .symlink:
            inode.symlinkTarget = try FileSystem.readSymlink(path)
        case .charDevice, .blockDevice:
            inode.rdev = DeviceNumber(glibc: st.rdev)
        default: break
        }
        if options.readXAttrs {
            for x in try readHostXAttrs(path) { inode.setXAttr(x.name, x.value) }
        }
        return inode
    }

    /// All xattrs of a host path (not following symlinks). Filesystems without xattr
    /// support yield none.
    public static func readHostXAttrs(_ path: String) throws -> [XAttr] {
        let n = llistxattr(path, nil, 0)
        if n < 0 {
            if errno == ENOTSUP || errno == ENOSYS { return [] }
            throw SystemError("llistxattr", path: path, errno: errno)
        }
        if n == 0 { return [] }
        var names = [CChar](repeating: 0, count: n)
        let m = llistxattr(path, &names, n)
        guard m >= 0 else { throw SystemError("llistxattr", path: path, errno: errno) }
        var result: [XAttr] = []
        var start = 0
        for i in 0..<m where names[i] == 0 {
            let name = String(decoding: names[start..<i].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            start = i + 1
            let vn = lgetxattr(path, name, nil, 0)
            guard vn >= 0 else {
                if errno == ENODATA { continue }
                throw SystemError("lgetxattr \(name)", path: path, errno: errno)
            }
            var value = [UInt8](repeating: 0, count: vn)
            let got = vn == 0 ? 0 : lgetxattr(path, name, &value, vn)
            guard got >= 0 else { throw SystemError("lgetxattr \(name)", path: path, errno: errno) }
            result.append(XAttr(name: name, value: Array(value[0..<got])))
        }
        return result
    }
}

/// Hands out 0, 1, 2, ... to concurrent workers.
private final class AtomicCounter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.add(1, ordering: .relaxed).oldValue }
}
