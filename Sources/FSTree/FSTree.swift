import Basics

/// Entry types of a Linux filesystem tree.
public enum EntryKind: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case regular, directory, symlink, charDevice, blockDevice, fifo, socket

    /// The S_IFMT bits of this kind.
    public var modeTypeBits: UInt32 {
        switch self {
        case .regular: 0o100000
        case .directory: 0o040000
        case .symlink: 0o120000
        case .charDevice: 0o020000
        case .blockDevice: 0o060000
        case .fifo: 0o010000
        case .socket: 0o140000
        }
    }

    public init?(modeTypeBits mode: UInt32) {
        switch mode & 0o170000 {
        case 0o100000: self = .regular
        case 0o040000: self = .directory
        case 0o120000: self = .symlink
        case 0o020000: self = .charDevice
        case 0o060000: self = .blockDevice
        case 0o010000: self = .fifo
        case 0o140000: self = .socket
        default: return nil
        }
    }

    /// The `ls -l` type letter.
    public var letter: Character {
        switch self {
        case .regular: "-"
        case .directory: "d"
        case .symlink: "l"
        case .charDevice: "c"
        case .blockDevice: "b"
        case .fifo: "p"
        case .socket: "s"
        }
    }

    public var description: String {
        switch self {
        case .regular: "regular file"
        case .directory: "directory"
        case .symlink: "symlink"
        case .charDevice: "character device"
        case .blockDevice: "block device"
        case .fifo: "fifo"
        case .socket: "socket"
        }
    }
}

/// Seconds + nanoseconds since the epoch.
public struct Timestamp: Sendable, Hashable, Comparable {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static let zero = Timestamp(seconds: 0)

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// Device number as major/minor, with the Linux "new" (huge) encoding used by SquashFS,
/// EROFS, cpio and the kernel's `new_encode_dev`.
public struct DeviceNumber: Sendable, Hashable, CustomStringConvertible {
    public var major: UInt32
    public var minor: UInt32

    public init(major: UInt32, minor: UInt32) {
        self.major = major
        self.minor = minor
    }

    /// Kernel `new_encode_dev`: minor low 8 bits | major << 8 | (minor & ~0xff) << 12.
    public var linuxEncoded: UInt32 {
        (minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & ~UInt32(0xFF)) << 12)
    }

    public init(linuxEncoded d: UInt32) {
        major = (d & 0xFFF00) >> 8
        minor = (d & 0xFF) | ((d >> 12) & 0xFFF00)
    }

    /// glibc's 64-bit dev_t layout (st_rdev).
    public init(glibc d: UInt64) {
        major = UInt32(((d >> 8) & 0xFFF) | ((d >> 32) & ~UInt64(0xFFF)))
        minor = UInt32((d & 0xFF) | ((d >> 12) & ~UInt64(0xFF)))
    }

    /// The same layout back (what mknod takes as dev_t).
    public var glibc: UInt64 {
        let ma = UInt64(major), mi = UInt64(minor)
        return (mi & 0xFF) | ((ma & 0xFFF) << 8) | ((mi & ~UInt64(0xFF)) << 12) | ((ma & ~UInt64(0xFFF)) << 32)
    }

    public var description: String { "\(major),\(minor)" }
}

/// One extended attribute. Names carry their namespace prefix ("user.", "trusted.",
/// "security.", "system.").
public struct XAttr: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]
    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// Where a regular file's bytes come from. Nothing is read until a writer asks.
public enum ContentSource: Sendable, Hashable {
    /// Zero-length content.
    case empty
    /// Bytes held in memory (generated files, small archive members).
    case bytes([UInt8])
    /// A whole host file; `size` is what was seen when the tree was built, and readers
    /// fail if the file has changed size since (a file that shrinks while being read).
    case hostFile(path: String, size: UInt64)
    /// A range of a host file (e.g. a member inside an uncompressed archive or a cache blob).
    case fileRange(path: String, offset: UInt64, length: UInt64)

    public var size: UInt64 {
        switch self {
        case .empty: 0
        case .bytes(let b): UInt64(b.count)
        case .hostFile(_, let size): size
        case .fileRange(_, _, let length): length
        }
    }
}

/// Index of an inode in an `FSTree`. Hard links are several directory entries that
/// name the same `InodeID`.
public struct InodeID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var raw: Int
    public init(_ raw: Int) { self.raw = raw }
    public static func < (a: InodeID, b: InodeID) -> Bool { a.raw < b.raw }
    public var description: String { "#\(raw)" }
}

/// Metadata and content of one inode.
public struct Inode: Sendable, Hashable {
    public var kind: EntryKind
    /// Permission bits including setuid/setgid/sticky (0o7777); no type bits.
    public var permissions: UInt16
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Timestamp
    /// Sorted by name (byte order) so every writer sees the same order.
    public private(set) var xattrs: [XAttr]
    /// Device number for char/block devices; zero otherwise.
    public var rdev: DeviceNumber
    /// Target for symlinks; empty otherwise.
    public var symlinkTarget: String
    /// Content for regular files; `.empty` otherwise.
    public var content: ContentSource

    public init(
        kind: EntryKind, permissions: UInt16, uid: UInt32 = 0, gid: UInt32 = 0,
        mtime: Timestamp = .zero, xattrs: [XAttr] = [], rdev: DeviceNumber = .init(major: 0, minor: 0),
        symlinkTarget: String = "", content: ContentSource = .empty
    ) {
        self.kind = kind
        self.permissions = permissions & 0o7777
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.xattrs = []
        self.rdev = rdev
        self.symlinkTarget = symlinkTarget
        self.content = content
        for x in xattrs { setXAttr(x.name, x.value) }
    }

    public static func directory(permissions: UInt16 = 0o755, uid: UInt32 = 0, gid: UInt32 = 0, mtime: Timestamp = .zero) -> Inode {
        Inode(kind: .directory, permissions: permissions, uid: uid, gid: gid, mtime: mtime)
    }

    public static func file(_ content: ContentSource, permissions: UInt16 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0, mtime: Timestamp = .zero) -> Inode {
        Inode(kind: .regular, permissions: permissions, uid: uid, gid: gid, mtime: mtime, content: content)
    }

    public static func symlink(_ target: String, uid: UInt32 = 0, gid: UInt32 = 0, mtime: Timestamp = .zero) -> Inode {
        Inode(kind: .symlink, permissions: 0o777, uid: uid, gid: gid, mtime: mtime, symlinkTarget: target)
    }

    /// Full st_mode: type bits | permission bits.
    public var mode: UInt32 { kind.modeTypeBits | UInt32(permissions) }

    /// Size as `stat` reports it: content length for files, target length for symlinks.
    public var size: UInt64 {
        switch kind {
        case .regular: content.size
        case .symlink: UInt64(symlinkTarget.utf8.count)
        default: 0
        }
    }

    public mutating func setXAttr(_ name: String, _ value: [UInt8]) {
        let x = XAttr(name: name, value: value)
        if let i = xattrs.firstIndex(where: { $0.name == name }) {
            xattrs[i] = x
        } else {
            let i = xattrs.firstIndex(where: { FSTree.byteOrderLess(name, $0.name) }) ?? xattrs.endIndex
            xattrs.insert(x, at: i)
        }
    }

    public mutating func removeXAttr(_ name: String) {
        xattrs.removeAll { $0.name == name }
    }

    public mutating func removeAllXAttrs() { xattrs.removeAll() }
}

/// The one in-memory model of a filesystem tree. Every image writer (SquashFS, EROFS,
/// cpio, vfat, ext4 staging) reads it; nothing downstream reads host ownership.
///
/// Directory entries map names to inode ids; several names may share an id (hard links).
/// Iteration is deterministic: children sorted by the byte order of their UTF-8 names.
public struct FSTree: Sendable {
    public struct Error: UserError {
        public enum Reason: Sendable {
            case notFound, notADirectory, exists, invalidName, isRoot, linkToDirectory
        }
        public var path: String
        public var reason: Reason
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String {
            switch reason {
            case .notFound: "\(path): no such entry in the tree"
            case .notADirectory: "\(path): a parent is not a directory in the tree"
            case .exists: "\(path): already exists in the tree"
            case .invalidName: "\(path): invalid name (empty, '.', '..', contains '/' or NUL, or longer than 255 bytes)"
            case .isRoot: "\(path): the root directory cannot be replaced or removed"
            case .linkToDirectory: "\(path): a hard link cannot point to a directory"
            }
        }
    }

    private var inodes: [Inode]
    /// Children of each inode by name, indexed like `inodes`: a map for directories,
    /// nil for everything else.
    private var children: [[String: InodeID]?]
    public static let rootID = InodeID(0)

    public init(root: Inode = .directory()) {
        var r = root
        r.kind = .directory
        inodes = [r]
        children = [[:]]
    }

    // MARK: Inode access

    public subscript(id: InodeID) -> Inode {
        get { inodes[id.raw] }
        set {
            precondition(newValue.kind == .directory || id != FSTree.rootID, "root must stay a directory")
            let wasDir = inodes[id.raw].kind == .directory
            inodes[id.raw] = newValue
            if newValue.kind == .directory && !wasDir { children[id.raw] = [:] }
            if newValue.kind != .directory && wasDir { children[id.raw] = nil }
        }
    }

    public var root: Inode {
        get { inodes[0] }
        set { self[FSTree.rootID] = newValue }
    }

    /// Number of inodes allocated (including ones no longer reachable after removals;
    /// use `reachableInodes()` for writers).
    public var inodeCapacity: Int { inodes.count }

    // MARK: Names

    /// Byte-order comparison of UTF-8 names (Swift's String `<` is not byte order).
    @inlinable
    public static func byteOrderLess(_ a: String, _ b: String) -> Bool { ByteOrder.less(a, b) }

    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && name.utf8.count <= 255
            && !name.utf8.contains(0x2F) && !name.utf8.contains(0)
    }

    /// Splits "/a/b/c" or "a/b/c" into components; "." components are dropped and ".."
    /// is rejected (tree paths are always resolved relative to the tree root).
    public static func components(_ path: String) throws -> [String] {
        var out: [String] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            let s = String(c)
            guard isValidName(s) else { throw Error(path: path, reason: .invalidName) }
            out.append(s)
        }
        return out
    }

    // MARK: Lookup

    /// The entry at `path`, without following any symlink.
    public func lookup(_ path: String) -> InodeID? {
        guard let comps = try? FSTree.components(path) else { return nil }
        var cur = FSTree.rootID
        for c in comps {
            guard let dir = children[cur.raw], let next = dir[c] else { return nil }
            cur = next
        }
        return cur
    }

    /// Children of a directory, sorted by byte order of names.
    public func children(of dir: InodeID) -> [(name: String, id: InodeID)] {
        guard let map = children[dir.raw] else { return [] }
        return map.sorted { FSTree.byteOrderLess($0.key, $1.key) }.map { (name: $0.key, id: $0.value) }
    }

    public func childCount(of dir: InodeID) -> Int { children[dir.raw]?.count ?? 0 }

    public func child(_ name: String, of dir: InodeID) -> InodeID? { children[dir.raw]?[name] }

    /// Insert `inode` as `name` in directory `parent`, without parsing a path (the fast
    /// path for importers that walk a tree top-down). Same replace rules as `insert`:
    /// a directory over a directory takes the new metadata and keeps the children;
    /// anything else replaces the old entry.
    @discardableResult
    public mutating func insertChild(_ name: String, of parent: InodeID, _ inode: Inode) throws -> InodeID {
        guard children[parent.raw] != nil else { throw Error(path: name, reason: .notADirectory) }
        guard FSTree.isValidName(name) else { throw Error(path: name, reason: .invalidName) }
        if let existing = children[parent.raw]?[name], inodes[existing.raw].kind == .directory, inode.kind == .directory {
            inodes[existing.raw] = inode
            return existing
        }
        let id = InodeID(inodes.count)
        inodes.append(inode)
        children.append(inode.kind == .directory ? [:] : nil)
        children[parent.raw]?[name] = id
        return id
    }

    /// Hard link `name` in directory `parent` to the non-directory `target` (replacing
    /// whatever had that name).
    public mutating func linkChild(_ name: String, of parent: InodeID, to target: InodeID) throws {
        guard inodes[target.raw].kind != .directory else { throw Error(path: name, reason: .linkToDirectory) }
        guard children[parent.raw] != nil else { throw Error(path: name, reason: .notADirectory) }
        guard FSTree.isValidName(name) else { throw Error(path: name, reason: .invalidName) }
        children[parent.raw]?[name] = target
    }

    // MARK: Mutation

    /// Insert (or replace) the entry at `path`. Missing parent directories are created
    /// with `parentTemplate` when `createParents` is set. Replacing a directory with a
    /// directory keeps its children and takes the new metadata (overlay semantics);
    /// replacing anything else drops the old entry.
    @discardableResult
    public mutating func insert(
        _ path: String, _ inode: Inode, createParents: Bool = false,
        parentTemplate: Inode = .directory()
    ) throws -> InodeID {
        let comps = try FSTree.components(path)
        guard let name = comps.last else {
            // The root itself: metadata update only.
            guard inode.kind == .directory else { throw Error(path: path, reason: .isRoot) }
            self[FSTree.rootID] = inode
            return FSTree.rootID
        }
        let parent = try resolveParent(comps.dropLast(), path: path, create: createParents, template: parentTemplate)
        return try insertChild(name, of: parent, inode)
    }

    /// Create a hard link at `path` to the existing non-directory entry `target`.
    public mutating func link(_ path: String, to target: InodeID, createParents: Bool = false) throws {
        guard inodes[target.raw].kind != .directory else { throw Error(path: path, reason: .linkToDirectory) }
        let comps = try FSTree.components(path)
        guard let name = comps.last else { throw Error(path: path, reason: .isRoot) }
        let parent = try resolveParent(comps.dropLast(), path: path, create: createParents, template: .directory())
        try linkChild(name, of: parent, to: target)
    }

    /// Remove the entry at `path` (recursively for directories). Returns false if absent.
    @discardableResult
    public mutating func remove(_ path: String) throws -> Bool {
        let comps = try FSTree.components(path)
        guard let name = comps.last else { throw Error(path: path, reason: .isRoot) }
        guard let parent = lookup("/" + comps.dropLast().joined(separator: "/")),
              children[parent.raw]?[name] != nil else { return false }
        children[parent.raw]?[name] = nil
        return true
    }

    private mutating func resolveParent(_ comps: ArraySlice<String>, path: String, create: Bool, template: Inode) throws -> InodeID {
        var cur = FSTree.rootID
        for c in comps {
            guard children[cur.raw] != nil else { throw Error(path: path, reason: .notADirectory) }
            if let next = children[cur.raw]?[c] {
                guard inodes[next.raw].kind == .directory else { throw Error(path: path, reason: .notADirectory) }
                cur = next
            } else if create {
                var t = template
                t.kind = .directory
                let id = InodeID(inodes.count)
                inodes.append(t)
                children.append([:])
                children[cur.raw]?[c] = id
                cur = id
            } else {
                throw Error(path: path, reason: .notFound)
            }
        }
        return cur
    }

    // MARK: Traversal

    /// Depth-first pre-order walk in byte order. `path` is absolute ("/" for the root).
    /// Hard-linked inodes are visited once per name.
    public func walk(_ body: (_ path: String, _ id: InodeID, _ inode: Inode) throws -> Void) rethrows {
        try body("/", FSTree.rootID, inodes[0])
        try walkChildren(of: FSTree.rootID, prefix: "", body)
    }

    private func walkChildren(of dir: InodeID, prefix: String, _ body: (String, InodeID, Inode) throws -> Void) rethrows {
        for (name, id) in children(of: dir) {
            let p = prefix + "/" + name
            try body(p, id, inodes[id.raw])
            if inodes[id.raw].kind == .directory { try walkChildren(of: id, prefix: p, body) }
        }
    }

    /// Link counts as `stat` would report them: for directories 2 + subdirectories, for
    /// others the number of names referring to the inode.
    public func linkCounts() -> [InodeID: UInt32] {
        var counts: [InodeID: UInt32] = [:]
        counts[FSTree.rootID] = 2
        func visit(_ dir: InodeID) {
            for (_, id) in children[dir.raw] ?? [:] {
                if inodes[id.raw].kind == .directory {
                    counts[id, default: 0] = 2
                    counts[dir, default: 2] += 1
                    visit(id)
                } else {
                    counts[id, default: 0] += 1
                }
            }
        }
        visit(FSTree.rootID)
        return counts
    }

    /// Reachable inodes in first-visit walk order (root first). Writers number inodes from this.
    public func reachableInodes() -> [InodeID] {
        var seen = Set<InodeID>()
        var order: [InodeID] = []
        walk { _, id, _ in if seen.insert(id).inserted { order.append(id) } }
        return order
    }

    /// Apply `transform` to every reachable inode once.
    public mutating func updateAll(_ transform: (inout Inode) throws -> Void) rethrows {
        for id in reachableInodes() {
            var i = inodes[id.raw]
            try transform(&i)
            inodes[id.raw] = i
        }
    }

    /// `-all-root`: every entry owned by 0:0.
    public mutating func makeAllRoot() {
        updateAll { $0.uid = 0; $0.gid = 0 }
    }

    /// SOURCE_DATE_EPOCH semantics: no timestamp later than `epoch`.
    public mutating func clampMtimes(to epoch: Int64) {
        let limit = Timestamp(seconds: epoch)
        updateAll { if $0.mtime > limit { $0.mtime = limit } }
    }

    /// Statistics for progress reporting.
    public func totals() -> (entries: Int, inodes: Int, bytes: UInt64) {
        var entries = 0
        var bytes: UInt64 = 0
        var seen = Set<InodeID>()
        walk { _, id, inode in
            entries += 1
            if seen.insert(id).inserted { bytes += inode.kind == .regular ? inode.content.size : 0 }
        }
        return (entries, seen.count, bytes)
    }
}
