import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Persists an FSTree as a stage output: `tree.manifest` (one line per entry, metadata
/// only) plus `tree.pack` holding each distinct file content once, back to back. A later
/// stage loads it with contents as ranges of the pack, so the tree crosses stage
/// boundaries without losing ownership, modes, devices, xattrs or hard links — and a
/// stage output of two files stays cheap to check on a no-op build, however many
/// files the tree has.
public enum TreeStore {
    public struct FormatError: UserError {
        public var file: String
        public var line: Int
        public var message: String
        public var description: String { "\(file):\(line): \(message)" }
    }

    static let header = "osbuild-tree 2"

    /// Write `tree` into directory `dir` (created). Returns the number of pack bytes.
    @discardableResult
    public static func save(_ tree: FSTree, to dir: String) throws -> UInt64 {
        try FileSystem.makeDirectories(dir)
        var lines: [String] = [header]
        var firstPath: [InodeID: String] = [:]
        let pack = try AtomicOutputFile(dir + "/tree.pack")
        let packer = Packer(out: pack)
        do {
            try tree.walk { path, id, inode in
                if inode.kind != .directory, let first = firstPath[id] {
                    lines.append("h\t\(escape(path))\t\(escape(first))")
                    return
                }
                firstPath[id] = path
                var fields = [
                    String(inode.kind.letter), escape(path), String(inode.permissions, radix: 8),
                    String(inode.uid), String(inode.gid), String(inode.mtime.seconds), String(inode.mtime.nanoseconds),
                ]
                switch inode.kind {
                case .regular:
                    let off = try packer.add(inode.content)
                    fields += [String(off), String(inode.content.size)]
                case .symlink: fields += [escape(inode.symlinkTarget), "-"]
                case .charDevice, .blockDevice: fields += ["\(inode.rdev.major):\(inode.rdev.minor)", "-"]
                default: fields += ["-", "-"]
                }
                let x = inode.xattrs.map { escape($0.name) + "=" + Hex.encode($0.value) }.joined(separator: ",")
                fields.append(x.isEmpty ? "-" : x)
                lines.append(fields.joined(separator: "\t"))
            }
            try pack.commit()
        } catch {
            pack.abandon()
            throw error
        }
        try FileSystem.writeAtomically(dir + "/tree.manifest", lines.joined(separator: "\n") + "\n")
        return packer.size
    }

    /// Appends contents to the pack, storing identical contents once.
    private final class Packer {
        let out: AtomicOutputFile
        var size: UInt64 = 0
        var seen: [String: UInt64] = [:]
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)

        init(out: AtomicOutputFile) { self.out = out }
        deinit { buf.deallocate() }

        func add(_ content: ContentSource) throws -> UInt64 {
            if content.size == 0 { return 0 }
            let reader = try ContentReader(content)
            let h = SHA256()
            let start = size
            while true {
                let n = try reader.read(into: buf)
                if n == 0 { break }
                let chunk = UnsafeRawBufferPointer(rebasing: buf[0..<n])
                h.update(chunk)
                try out.pwrite(chunk, at: size)
                size += UInt64(n)
            }
            let key = h.hexDigest()
            if let existing = seen[key] {
                // Duplicate: drop what was just appended.
                size = start
                guard ftruncate(out.fd, off_t(start)) == 0 else { throw SystemError("truncate", path: out.tempPath, errno: errno) }
                return existing
            }
            seen[key] = start
            return start
        }
    }

    /// Load a tree saved by `save`; file contents are ranges of `dir/tree.pack`.
    public static func load(from dir: String) throws -> FSTree {
        let file = dir + "/tree.manifest"
        let text = try FileSystem.readText(file)
        var tree = FSTree()
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            lineNo += 1
            if lineNo == 1 {
                guard raw == header else { throw FormatError(file: file, line: 1, message: "not an osbuild tree manifest") }
                continue
            }
            let f = raw.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            func bad(_ m: String) -> FormatError { FormatError(file: file, line: lineNo, message: m) }
            if f.first == "h" {
                guard f.count == 3, let target = tree.lookup(unescape(f[2])) else { throw bad("bad hard link entry") }
                try tree.link(unescape(f[1]), to: target)
                continue
            }
            guard f.count == 10, let letter = f[0].first,
                  let kind = EntryKind.allCases.first(where: { $0.letter == letter }),
                  let perm = UInt16(f[2], radix: 8), let uid = UInt32(f[3]), let gid = UInt32(f[4]),
                  let sec = Int64(f[5]), let nsec = UInt32(f[6]) else { throw bad("malformed entry") }
            var inode = Inode(kind: kind, permissions: perm, uid: uid, gid: gid, mtime: Timestamp(seconds: sec, nanoseconds: nsec))
            switch kind {
            case .regular:
                if f[7] != "-" {
                    guard let off = UInt64(f[7]), let size = UInt64(f[8]) else { throw bad("bad file offset/size") }
                    inode.content = size == 0 ? .empty : .fileRange(path: dir + "/tree.pack", offset: off, length: size)
                }
            case .symlink: inode.symlinkTarget = unescape(f[7])
            case .charDevice, .blockDevice:
                let mm = f[7].split(separator: ":")
                guard mm.count == 2, let ma = UInt32(mm[0]), let mi = UInt32(mm[1]) else { throw bad("bad device number") }
                inode.rdev = DeviceNumber(major: ma, minor: mi)
            default: break
            }
            if f[9] != "-" {
                for pair in f[9].split(separator: ",") {
                    guard let eq = pair.lastIndex(of: "="), let v = Hex.decode(String(pair[pair.index(after: eq)...])) else { throw bad("bad xattr") }
                    inode.setXAttr(unescape(String(pair[..<eq])), v)
                }
            }
            try tree.insert(unescape(f[1]), inode)
        }
        return tree
    }

    /// Percent-escape bytes that would break the line format (tab, newlines, %, ',', '=').
    static func escape(_ s: String) -> String {
        var bytes: [UInt8] = []
        for u in s.utf8 {
            switch u {
            case 0x09, 0x0A, 0x0D, 0x25, 0x2C, 0x3D:
                bytes.append(0x25)
                bytes.append(contentsOf: Array(String(format2: u).utf8))
            default: bytes.append(u)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func unescape(_ s: String) -> String {
        guard s.utf8.contains(0x25) else { return s }
        var out: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == 0x25, i + 2 < u.count, let v = UInt8(String(decoding: u[i + 1...i + 2], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(u[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension String {
    init(format2 byte: UInt8) {
        let d = Array("0123456789ABCDEF".utf8)
        self = String(decoding: [d[Int(byte >> 4)], d[Int(byte & 0xF)]], as: UTF8.self)
    }
}
