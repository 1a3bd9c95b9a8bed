import Basics
import CArchive
import FSTree
#if canImport(Glibc)
import Glibc
#endif

/// Reads tar (plain, .gz, .xz, .zst, .bz2, .lz4), cpio and Debian `.deb` archives into an
/// `FSTree` through libarchive. Ownership, permissions (incl. setuid), mtimes with
/// nanoseconds, xattrs (pax `SCHILY.xattr.*`/`LIBARCHIVE.xattr.*`), device numbers,
/// symlinks and hard links become tree metadata; nothing is created, chowned or mknod'ed
/// on the host. Member bytes go to memory or to the `BlobStore`.
public enum ArchiveImporter {
    public struct Options {
        public var destination: String
        public var policy: UnsafeMemberPolicy
        public var log: RootfsLog
        /// Follow symlinks that were in the tree before this archive (resolved inside the
        /// tree), so a package's ./bin/x lands in usr/bin on a merged-usr base, as with dpkg.
        /// Symlinks created by the archive itself are never followed.
        public var followTreeSymlinks: Bool
        public init(destination: String = "/", policy: UnsafeMemberPolicy = .error, followTreeSymlinks: Bool = true, log: @escaping RootfsLog = { _ in }) {
            self.destination = destination
            self.policy = policy
            self.followTreeSymlinks = followTreeSymlinks
            self.log = log
        }
    }

    /// Counts of what one import did (for logs and tests).
    public struct Summary: Sendable, Hashable {
        public var members = 0
        public var skipped = 0
        public var format = ""
    }

    /// Import `path` into `tree`. A `.deb` (ar archive) contributes its `data.tar.*` member.
    @discardableResult
    public static func importArchive(_ path: String, into tree: inout FSTree, blobs: BlobStore, options: Options = .init()) throws -> Summary {
        let outer: LibArchiveReader
        if let decompressor = DecompressThread.start(path) {
            // A compressed file: the plain stream comes from a second thread.
            outer = try LibArchiveReader(label: path, filters: false)
            try outer.openDecompressed(decompressor)
        } else {
            outer = try LibArchiveReader(label: path)
            try outer.openFile(path)
        }
        var summary = Summary()
        var ingester = Ingester(archive: path, options: options, blobs: blobs)
        var first = true
        var sawData = false
        while let entry = try outer.next() {
            if first {
                first = false
                summary.format = outer.formatName
            }
            if outer.isAr {
                let name = entry.rawPath ?? ""
                guard name.hasPrefix("data.tar") else { continue }
                if sawData { throw ArchiveError(archive: path, member: name, "second data member in a .deb") }
                sawData = true
                let label = path + "!" + name
                let inner = try LibArchiveReader(label: label)
                try inner.openNested(in: outer)
                ingester.archive = label
                while let e = try inner.next() {
                    try ingester.ingest(e, reader: inner, tree: &tree)
                }
                summary.format += "+" + inner.formatName
                ingester.archive = path
            } else {
                try ingester.ingest(entry, reader: outer, tree: &tree)
            }
        }
        if outer.isAr && !sawData {
            throw ArchiveError(archive: path, "an ar archive without a data.tar.* member (not a .deb package)")
        }
        // Spilled contents are written in the background: readable from here on.
        try blobs.sync()
        summary.members = ingester.members
        summary.skipped = ingester.skipped
        return summary
    }
}

/// One header as read by libarchive, with the fields the tree needs.
struct ArchiveEntryView {
    let entry: OpaquePointer

    var rawPath: String? { Self.string(archive_entry_pathname_utf8(entry)) ?? Self.string(archive_entry_pathname(entry)) }
    var hardlink: String? { Self.string(archive_entry_hardlink_utf8(entry)) ?? Self.string(archive_entry_hardlink(entry)) }
    var symlink: String? { Self.string(archive_entry_symlink_utf8(entry)) ?? Self.string(archive_entry_symlink(entry)) }

    static func string(_ p: UnsafePointer<CChar>?) -> String? {
        guard let p else { return nil }
        return String(validatingCString: p)
    }
}

/// Owns one `struct archive *` for reading.
final class LibArchiveReader {
    let label: String
    let handle: OpaquePointer
    private var nestedSource: NestedSource?
    private var decompressor: DecompressThread?

    /// `filters: false` for a stream that is already decompressed.
    init(label: String, filters: Bool = true) throws {
        self.label = label
        guard let a = archive_read_new() else { throw ArchiveError(archive: label, "libarchive: out of memory") }
        handle = a
        if filters { archive_read_support_filter_all(a) }
        archive_read_support_format_tar(a)
        archive_read_support_format_gnutar(a)
        archive_read_support_format_cpio(a)
        archive_read_support_format_ar(a)
    }

    // The handle goes first; the decompressor (a property) is stopped after it.
    deinit { archive_read_free(handle) }

    func openFile(_ path: String) throws {
        if archive_read_open_filename(handle, path, 1 << 16) != ARCHIVE_OK {
            throw ArchiveError(archive: label, errorText)
        }
    }

    /// Read the current data of `outer` as an archive of its own (the data.tar.* of a .deb),
    /// streaming: nothing is written to disk.
    func openNested(in outer: LibArchiveReader) throws {
        let src = NestedSource(outer: outer.handle)
        nestedSource = src
        let r = archive_read_open(
            handle, Unmanaged.passUnretained(src).toOpaque(), nil,
            { _, client, out -> la_ssize_t in
                guard let client, let out else { return -1 }
                let s = Unmanaged<NestedSource>.fromOpaque(client).takeUnretainedValue()
                let n = archive_read_data(s.outer, s.buffer, s.size)
                out.pointee = UnsafeRawPointer(s.buffer)
                return n
            }, nil)
        if r != ARCHIVE_OK { throw ArchiveError(archive: label, errorText) }
    }

    /// Read the plain stream `d` decompresses on its thread.
    func openDecompressed(_ d: DecompressThread) throws {
        decompressor = d
        let r = archive_read_open(
            handle, Unmanaged.passUnretained(d).toOpaque(), nil,
            { _, client, out -> la_ssize_t in
                guard let client, let out else { return -1 }
                return Unmanaged<DecompressThread>.fromOpaque(client).takeUnretainedValue().next(out)
            }, nil)
        if r != ARCHIVE_OK { throw ArchiveError(archive: label, errorText) }
    }

    var errorText: String {
        // A failed decompression is the cause; libarchive only saw the stream end.
        if let d = decompressor, let f = d.failureText { return f }
        if let p = archive_error_string(handle) { return String(cString: p) }
        return "unreadable archive"
    }

    var isAr: Bool { (archive_format(handle) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_AR }

    var formatName: String {
        var s = archive_format_name(handle).map { String(cString: $0) } ?? "?"
        let filters = archive_filter_count(handle)
        if let d = decompressor {
            s += "/" + d.filterName
        } else if filters > 1, let f = archive_filter_name(handle, 0) {
            s += "/" + String(cString: f)
        }
        return s
    }

    func next() throws -> ArchiveEntryView? {
        var e: OpaquePointer?
        let r = archive_read_next_header(handle, &e)
        if r == ARCHIVE_EOF { return nil }
        if r < ARCHIVE_WARN { throw ArchiveError(archive: label, errorText) }
        guard let e else { throw ArchiveError(archive: label, "libarchive returned no header") }
        return ArchiveEntryView(entry: e)
    }

    /// Read data of the current member.
    func read(into buf: UnsafeMutableRawBufferPointer, member: String) throws -> Int {
        let n = archive_read_data(handle, buf.baseAddress, buf.count)
        if n < 0 { throw ArchiveError(archive: label, member: member, errorText) }
        return n
    }
}

final class NestedSource {
    let outer: OpaquePointer
    let size = 1 << 16
    let buffer: UnsafeMutableRawPointer
    init(outer: OpaquePointer) {
        self.outer = outer
        buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)
    }
    deinit { buffer.deallocate() }
}

/// Applies archive members to a tree with the safety rules.
struct Ingester {
    var archive: String
    let options: ArchiveImporter.Options
    let blobs: BlobStore
    var members = 0
    var skipped = 0
    private let destComps: [String]

    init(archive: String, options: ArchiveImporter.Options, blobs: BlobStore) {
        self.archive = archive
        self.options = options
        self.blobs = blobs
        destComps = (try? FSTree.components(options.destination)) ?? []
    }

    enum Resolved {
        case ok([String])
        case unsafe(UnsafeArchiveMember.Reason)
    }

    /// Lexical checks: absolute paths and `..` are refused; `./x` and `x/` are fine.
    static func lexical(_ raw: String) -> Resolved {
        if raw.hasPrefix("/") { return .unsafe(.absolutePath) }
        var comps: [String] = []
        for c in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { return .unsafe(.dotDot) }
            comps.append(String(c))
        }
        return .ok(comps)
    }

    private func refuse(_ member: String, _ reason: UnsafeArchiveMember.Reason) throws {
        let err = UnsafeArchiveMember(archive: archive, member: member, reason: reason)
        switch options.policy {
        case .error: throw err
        case .warnSkip: options.log("warning: " + err.description.replacingOccurrences(of: " refused:", with: " skipped:"))
        }
    }

    /// Walk `comps` (all but the last) from the root: existing symlinks are refused,
    /// missing directories are created when `create` is set.
    /// Returns the parent id, or the symlink path met on the way.
    enum ParentLookup {
        /// The directory reached and its real (symlink-free) path in the tree.
        case directory(InodeID, String)
        case missing
        case symlink(String)
    }

    /// Symlinks this archive created: paths through them are refused (the classic
    /// "symlink, then write through it" attack).
    private var ownSymlinks = Set<InodeID>()

    /// Walk `comps` from the root. Symlinks that were in the tree before this archive
    /// (a merged-usr base: /bin -> usr/bin) are followed *inside the tree*: absolute targets
    /// start at the tree root and `..` stops there, so nothing can leave the tree. Symlinks
    /// from this archive are refused. Missing directories are created when `create` is set.
    private func walk(_ input: [String], in tree: inout FSTree, member: String, create: Bool) throws -> ParentLookup {
        var comps = input
        var i = 0
        var cur = FSTree.rootID
        var path: [String] = []
        var hops = 0
        while i < comps.count {
            let c = comps[i]
            if let next = tree.child(c, of: cur) {
                let node = tree[next]
                if node.kind == .symlink {
                    hops += 1
                    let shown = "/" + (path + [c]).joined(separator: "/")
                    if ownSymlinks.contains(next) || !options.followTreeSymlinks || hops > 40 { return .symlink(shown) }
                    let base = node.symlinkTarget.hasPrefix("/") ? "" : "/" + path.joined(separator: "/")
                    let resolved = FileSystem.normalize("/" + base + "/" + node.symlinkTarget)
                    comps = resolved.split(separator: "/").map(String.init) + comps[(i + 1)...]
                    i = 0
                    cur = FSTree.rootID
                    path = []
                    continue
                }
                guard node.kind == .directory else {
                    throw ArchiveError(archive: archive, member: member, "parent /\((path + [c]).joined(separator: "/")) is a \(node.kind) in the tree, not a directory")
                }
                cur = next
            } else if create {
                cur = try tree.insert("/" + (path + [c]).joined(separator: "/"), .directory())
            } else {
                return .missing
            }
            path.append(c)
            i += 1
        }
        return .directory(cur, path.isEmpty ? "" : "/" + path.joined(separator: "/"))
    }

    mutating func ingest(_ e: ArchiveEntryView, reader: LibArchiveReader, tree: inout FSTree) throws {
        guard let raw = e.rawPath else {
            throw ArchiveError(archive: archive, "a member name is not valid UTF-8 (osbuild names entries by UTF-8 strings)")
        }
        members += 1
        let memberComps: [String]
        switch Self.lexical(raw) {
        case .ok(let c): memberComps = c
        case .unsafe(let why):
            try refuse(raw, why)
            skipped += 1
            return
        }
        for c in memberComps where !FSTree.isValidName(c) {
            throw ArchiveError(archive: archive, member: raw, "invalid name component '\(c)'")
        }
        let comps = destComps + memberComps
        let isDir = EntryKind(modeTypeBits: archive_entry_filetype(e.entry)) == .directory && e.hardlink == nil
        guard let name = comps.last else {
            // "./": metadata of the destination directory itself.
            guard isDir else { return }
            switch try walk(destComps, in: &tree, member: raw, create: true) {
            case .directory(_, let real):
                try tree.insert(real.isEmpty ? "/" : real, try inode(e, kind: .directory, reader: reader, member: raw))
            case .symlink(let link):
                try refuse(raw, .throughSymlink(link)); skipped += 1
            case .missing: break
            }
            return
        }
        let parentResult = try walk(Array(comps.dropLast()), in: &tree, member: raw, create: true)
        let parentID: InodeID, parentPath: String
        switch parentResult {
        case .directory(let id, let real): (parentID, parentPath) = (id, real)
        case .symlink(let link):
            try refuse(raw, .throughSymlink(link)); skipped += 1; return
        case .missing:
            skipped += 1; return
        }
        let path = parentPath + "/" + name

        if let target = e.hardlink {
            guard case .ok(let tcomps) = Self.lexical(target) else {
                try refuse(raw, .hardlinkTarget(target)); skipped += 1; return
            }
            let full = destComps + tcomps
            guard let tname = full.last,
                  case .directory(let tparent, _) = try walk(Array(full.dropLast()), in: &tree, member: raw, create: false),
                  let tid = tree.child(tname, of: tparent), tree[tid].kind != .directory
            else {
                try refuse(raw, .hardlinkTarget(target)); skipped += 1; return
            }
            if tid != tree.child(name, of: parentID) { try tree.link(path, to: tid) }
            // cpio (newc) puts a hard-linked file's data on its last name, which libarchive
            // reports as a hard link carrying data: that data is the shared inode's content.
            if archive_entry_size_is_set(e.entry) != 0, archive_entry_size(e.entry) > 0, tree[tid].kind == .regular {
                var n = tree[tid]
                n.content = try blobs.store(expectedSize: archive_entry_size(e.entry)) { buf in try reader.read(into: buf, member: raw) }
                tree[tid] = n
            }
            return
        }

        // A directory member over a symlink that was already in the tree and leads to a
        // directory (merged-usr /bin -> usr/bin) keeps the link, as dpkg does.
        if isDir, let existing = tree.child(name, of: parentID), tree[existing].kind == .symlink,
           !ownSymlinks.contains(existing), options.followTreeSymlinks,
           case .directory = try walk(Array(comps), in: &tree, member: raw, create: false) {
            return
        }

        let mode = archive_entry_filetype(e.entry)
        guard let kind = EntryKind(modeTypeBits: UInt32(mode)) else {
            throw ArchiveError(archive: archive, member: raw, "unsupported entry type (mode \(String(mode, radix: 8)))")
        }
        let node = try inode(e, kind: kind, reader: reader, member: raw)
        if let existing = tree.child(name, of: parentID), tree[existing].kind == .directory, kind != .directory {
            try tree.remove(path)
        }
        let id = try tree.insert(path, node)
        if kind == .symlink { ownSymlinks.insert(id) }
    }

    private func inode(_ e: ArchiveEntryView, kind: EntryKind, reader: LibArchiveReader, member: String) throws -> Inode {
        let uid = archive_entry_uid(e.entry), gid = archive_entry_gid(e.entry)
        guard let u = UInt32(exactly: uid), let g = UInt32(exactly: gid) else {
            throw ArchiveError(archive: archive, member: member, "owner \(uid):\(gid) does not fit 32 bits")
        }
        var mtime = Timestamp.zero
        if archive_entry_mtime_is_set(e.entry) != 0 {
            let ns = archive_entry_mtime_nsec(e.entry)
            mtime = Timestamp(seconds: Int64(archive_entry_mtime(e.entry)), nanoseconds: UInt32(clamping: max(0, min(ns, 999_999_999))))
        }
        var node = Inode(kind: kind, permissions: UInt16(archive_entry_perm(e.entry) & 0o7777), uid: u, gid: g, mtime: mtime)
        if archive_entry_xattr_reset(e.entry) > 0 {
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while archive_entry_xattr_next(e.entry, &name, &value, &size) == ARCHIVE_OK {
                guard let name, let xname = String(validatingCString: name) else { continue }
                let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                node.setXAttr(xname, bytes)
            }
        }
        switch kind {
        case .regular:
            let size = archive_entry_size_is_set(e.entry) != 0 ? archive_entry_size(e.entry) : -1
            node.content = try blobs.store(expectedSize: size) { buf in try reader.read(into: buf, member: member) }
        case .symlink:
            guard let t = e.symlink else {
                throw ArchiveError(archive: archive, member: member, "symlink target missing or not valid UTF-8")
            }
            node.symlinkTarget = t
        case .charDevice, .blockDevice:
            node.rdev = DeviceNumber(major: UInt32(truncatingIfNeeded: archive_entry_rdevmajor(e.entry)),
                                     minor: UInt32(truncatingIfNeeded: archive_entry_rdevminor(e.entry)))
        default:
            break
        }
        return node
    }
}
