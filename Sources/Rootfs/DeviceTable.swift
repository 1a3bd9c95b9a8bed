import Basics
import FSTree

/// Buildroot's makedevs permission/device table:
/// `name type mode uid gid major minor start inc count`, one entry per line, `-` for
/// unused fields, `#` comments. Types: `f` (existing file: set mode/owner), `d` (directory,
/// created with parents), `c`/`b` (device), `p` (fifo), `r` (like `d`, applied to everything
/// below too). With a count, `name` gets the suffix `start..start+count-1` and the minor
/// grows by `inc` per entry (`/dev/ttyS c 666 0 0 4 64 0 1 4` → ttyS0..3, minors 64..67).
public struct DeviceTable: Sendable, Hashable {
    public struct Entry: Sendable, Hashable {
        public enum Kind: Character, Sendable, Hashable {
            case file = "f", directory = "d", charDevice = "c", blockDevice = "b", fifo = "p", recursive = "r"
        }
        public var name: String
        public var kind: Kind
        public var mode: UInt16
        public var uid: UInt32
        public var gid: UInt32
        public var major: UInt32
        public var minor: UInt32
        public var start: UInt32
        public var increment: UInt32
        public var count: UInt32
        public var location: SourceLocation
    }

    public var entries: [Entry]

    public static func load(_ path: String) throws -> DeviceTable {
        try parse(try FileSystem.readText(path), file: path)
    }

    public static func parse(_ text: String, file: String) throws -> DeviceTable {
        var entries: [Entry] = []
        var errors: [any UserError] = []
        for (i, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let loc = SourceLocation(file: file, line: i + 1)
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if f.isEmpty { continue }
            do {
                entries.append(try entry(f, loc))
            } catch let e as RootfsError {
                errors.append(e)
            }
        }
        if errors.count == 1, let e = errors.first { throw e }
        if !errors.isEmpty { throw ErrorList(errors) }
        return DeviceTable(entries: entries)
    }

    private static func entry(_ f: [String], _ loc: SourceLocation) throws -> Entry {
        guard f.count == 10 else {
            throw RootfsError("expected 10 fields (name type mode uid gid major minor start inc count), found \(f.count)", at: loc)
        }
        guard f[0].hasPrefix("/") else { throw RootfsError("name '\(f[0])' must be an absolute path in the rootfs", at: loc) }
        guard f[1].count == 1, let c = f[1].first, let kind = Entry.Kind(rawValue: c) else {
            throw RootfsError("type '\(f[1])' is not one of f d c b p r", at: loc)
        }
        guard let mode = UInt16(f[2], radix: 8), mode <= 0o7777 else {
            throw RootfsError("mode '\(f[2])' is not an octal permission (0..7777)", at: loc)
        }
        func num(_ s: String, _ what: String, dash: UInt32?) throws -> UInt32 {
            if s == "-", let dash { return dash }
            guard let v = UInt32(s) else { throw RootfsError("\(what) '\(s)' is not a number\(dash == nil ? "" : " or '-'")", at: loc) }
            return v
        }
        let uid = try num(f[3], "uid", dash: nil), gid = try num(f[4], "gid", dash: nil)
        let isDev = kind == .charDevice || kind == .blockDevice
        let major = try num(f[5], "major", dash: isDev ? nil : 0)
        let minor = try num(f[6], "minor", dash: isDev ? nil : 0)
        let start = try num(f[7], "start", dash: 0), inc = try num(f[8], "inc", dash: 0), count = try num(f[9], "count", dash: 0)
        if count > 0 && !isDev && kind != .fifo {
            throw RootfsError("a count is only allowed for c, b and p entries", at: loc)
        }
        return Entry(name: f[0], kind: kind, mode: mode, uid: uid, gid: gid, major: major, minor: minor,
                     start: start, increment: inc, count: count, location: loc)
    }

    /// Apply all entries. Devices and fifos are created (or replace what is there), `d`
    /// creates directories, `f`/`r` require the path to exist.
    public func apply(to tree: inout FSTree, mtime: Timestamp) throws {
        for e in entries {
            switch e.kind {
            case .file, .recursive:
                guard let id = tree.lookup(e.name) else {
                    throw RootfsError("\(e.name) does not exist in the rootfs (type \(e.kind.rawValue) changes an existing entry)", at: e.location)
                }
                if e.kind == .file && tree[id].kind == .directory {
                    throw RootfsError("\(e.name) is a directory; use type d or r", at: e.location)
                }
                set(&tree, id, e)
                if e.kind == .recursive { applyBelow(&tree, id, e) }
            case .directory:
                if let id = tree.lookup(e.name), tree[id].kind != .directory {
                    throw RootfsError("\(e.name) exists and is a \(tree[id].kind), not a directory", at: e.location)
                }
                let id = try wrap(e) { try tree.insert(e.name, tree.lookup(e.name).map { tree[$0] } ?? .directory(mtime: mtime), createParents: true, parentTemplate: .directory(mtime: mtime)) }
                set(&tree, id, e)
            case .charDevice, .blockDevice, .fifo:
                let names: [(String, UInt32)] = e.count == 0
                    ? [(e.name, e.minor)]
                    : (0..<e.count).map { i in (e.name + String(e.start + i), e.minor + i * e.increment) }
                let kind: EntryKind = e.kind == .charDevice ? .charDevice : e.kind == .blockDevice ? .blockDevice : .fifo
                for (name, minor) in names {
                    var n = Inode(kind: kind, permissions: e.mode, uid: e.uid, gid: e.gid, mtime: mtime)
                    if kind != .fifo { n.rdev = DeviceNumber(major: e.major, minor: minor) }
                    if let old = tree.lookup(name), tree[old].kind == .directory {
                        throw RootfsError("\(name) is a directory in the rootfs; cannot replace it with a device", at: e.location)
                    }
                    try wrap(e) { try tree.insert(name, n, createParents: true, parentTemplate: .directory(mtime: mtime)) }
                }
            }
        }
    }

    @discardableResult
    private func wrap<T>(_ e: Entry, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let err as FSTree.Error {
            throw RootfsError(err.description, at: e.location)
        }
    }

    private func set(_ tree: inout FSTree, _ id: InodeID, _ e: Entry) {
        var n = tree[id]
        n.permissions = e.mode
        n.uid = e.uid
        n.gid = e.gid
        tree[id] = n
    }

    private func applyBelow(_ tree: inout FSTree, _ dir: InodeID, _ e: Entry) {
        for (_, id) in tree.children(of: dir) {
            // Buildroot's recursive mode leaves symlinks alone (their mode is meaningless).
            if tree[id].kind != .symlink { set(&tree, id, e) }
            if tree[id].kind == .directory { applyBelow(&tree, id, e) }
        }
    }
}
