import Basics
import CLinux
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
    public mutating func importHostDirectory(_ path: String, at destination: String = "/", options: HostImportOptions = .init()) throws {
        let st = try FileSystem.lstat(path)
        guard st.isDirectory else { throw MessageError("\(path): not a directory", exitCode: ExitStatus.usage) }
        var seen: [HostKey: InodeID] = [:]
        let destID = try insert(destination, try FSTree.inode(from: st, path: path, options: options), createParents: true)
        _ = destID
        try importChildren(hostDir: path, treeDir: destination == "/" ? "" : FSTree.normalizedTreePath(destination), options: options, seen: &seen)
    }

    private struct HostKey: Hashable { var dev: UInt64; var ino: UInt64 }

    private mutating func importChildren(hostDir: String, treeDir: String, options: HostImportOptions, seen: inout [HostKey: InodeID]) throws {
        let names = try FileSystem.listDirectory(hostDir).sorted(by: FSTree.byteOrderLess)
        for name in names {
            let hp = hostDir + "/" + name
            let tp = treeDir + "/" + name
            let st = try FileSystem.lstat(hp)
            if !st.isDirectory && st.nlink > 1, let existing = seen[HostKey(dev: st.device, ino: st.inode)] {
                _ = try? remove(tp)
                try link(tp, to: existing)
                continue
            }
            let inode = try FSTree.inode(from: st, path: hp, options: options)
            if let old = lookup(tp), self[old].kind != .directory || inode.kind != .directory {
                try remove(tp)
            }
            let id = try insert(tp, inode)
            if !st.isDirectory && st.nlink > 1 { seen[HostKey(dev: st.device, ino: st.inode)] = id }
            if st.isDirectory {
                try importChildren(hostDir: hp, treeDir: tp, options: options, seen: &seen)
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
