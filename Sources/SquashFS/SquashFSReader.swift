import Basics
import Codecs
import FSTree
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads SquashFS 4.0 images (any writer's: mksquashfs, ours) without squashfs-tools:
/// look up paths, list directories, stream files, extract a tree. Used to read RAUC
/// bundle payloads. Metadata is decoded on demand (decoded blocks are cached, so memory
/// is bounded by the image's metadata, not its data); file data is streamed block by
/// block. Every offset and length read from the image is bounds-checked: a damaged or
/// hostile image gives an error naming the image and what is wrong, never a crash or a
/// write outside the extraction directory. Extended attributes are not read.
public final class SquashFSImage {
    public enum Kind: Sendable, Equatable {
        case directory, file, symlink, blockDevice, characterDevice, fifo, socket
    }

    public struct Entry: Sendable {
        public var kind: Kind
        public var permissions: UInt16
        public var uid: UInt32
        public var gid: UInt32
        public var mtime: UInt32
        public var inodeNumber: UInt32
        public var linkCount: UInt32
        /// Regular files: bytes; directories: the listing size as stored.
        public var size: UInt64
        public var symlinkTarget: [UInt8]
        public var rdev: DeviceNumber
        fileprivate var blocksStart: UInt64 = 0
        fileprivate var blockSizes: [UInt32] = []
        fileprivate var fragment: UInt32 = Format.noFragment
        fileprivate var fragmentOffset: UInt32 = 0
        fileprivate var dirBlock: UInt32 = 0
        fileprivate var dirOffset: UInt16 = 0
    }

    public let path: String
    public let blockSize: Int
    public let compression: Compression.Kind
    public let inodeCount: UInt32
    public let modificationTime: UInt32
    /// Bytes the filesystem occupies (bundles append a signature after it).
    public let bytesUsed: UInt64

    private let fd: Int32
    private let flags: UInt16
    private let rootRef: UInt64
    private let inodeTable: UInt64
    private let directoryTable: UInt64
    private let fragmentTable: UInt64
    private let fragmentCount: UInt32
    private var ids: [UInt32] = []
    private var fragments: [(start: UInt64, size: UInt32)] = []
    /// Decoded metadata blocks by absolute position: (bytes, position of the next block).
    private var metaCache: [UInt64: (bytes: [UInt8], next: UInt64)] = [:]

    public init(path: String) throws {
        self.path = path
        let f = open(path, O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { throw SystemError("open", path: path, errno: errno) }
        var ok = false
        defer { if !ok { close(f) } }
        let sb = try PositionalIO.read(f, count: 96, at: 0, path: path)
        guard sb.loadLE(UInt32.self, at: 0) == Format.magic else {
            throw SquashFSError("\(path): not a SquashFS image (no 'hsqs' magic at offset 0)")
        }
        let major = sb.loadLE(UInt16.self, at: 28), minor = sb.loadLE(UInt16.self, at: 30)
        guard major == 4, minor == 0 else { throw SquashFSError("\(path): SquashFS version \(major).\(minor); only 4.0 is supported") }
        inodeCount = sb.loadLE(UInt32.self, at: 4)
        modificationTime = sb.loadLE(UInt32.self, at: 8)
        let bs = sb.loadLE(UInt32.self, at: 12)
        let blockLog = sb.loadLE(UInt16.self, at: 22)
        guard bs >= 4096, bs <= 1 << 20, bs.nonzeroBitCount == 1, 1 << blockLog == bs else {
            throw SquashFSError("\(path): bad block size \(bs) (log \(blockLog)) in the superblock")
        }
        blockSize = Int(bs)
        fragmentCount = sb.loadLE(UInt32.self, at: 16)
        let comp = sb.loadLE(UInt16.self, at: 20)
        guard let kind = Compression.Kind.allCases.first(where: { Format.compressorID($0) == comp }) else {
            let names: [UInt16: String] = [2: "lzma", 3: "lzo"]
            throw SquashFSError("\(path): compressor \(names[comp] ?? "id \(comp)") is not supported (gzip, xz, lz4, zstd)")
        }
        compression = kind
        flags = sb.loadLE(UInt16.self, at: 24)
        let idCount = Int(sb.loadLE(UInt16.self, at: 26))
        rootRef = sb.loadLE(UInt64.self, at: 32)
        bytesUsed = sb.loadLE(UInt64.self, at: 40)
        let idTable = sb.loadLE(UInt64.self, at: 48)
        inodeTable = sb.loadLE(UInt64.self, at: 64)
        directoryTable = sb.loadLE(UInt64.self, at: 72)
        fragmentTable = sb.loadLE(UInt64.self, at: 80)
        var st = stat()
        guard fstat(f, &st) == 0 else { throw SystemError("stat", path: path, errno: errno) }
        guard bytesUsed <= UInt64(st.st_size), inodeTable < bytesUsed, directoryTable < bytesUsed, inodeTable < directoryTable else {
            throw SquashFSError("\(path): superblock says \(bytesUsed) bytes used (tables at \(inodeTable), \(directoryTable)) but the file has \(st.st_size) bytes: truncated or damaged")
        }
        fd = f
        ok = true
        ids = try readLookupTable(at: idTable, count: idCount, entrySize: 4, what: "id table").map { $0.loadLE(UInt32.self, at: 0) }
        if fragmentCount > 0 {
            fragments = try readLookupTable(at: fragmentTable, count: Int(fragmentCount), entrySize: 16, what: "fragment table")
                .map { ($0.loadLE(UInt64.self, at: 0), $0.loadLE(UInt32.self, at: 8)) }
        }
    }

    deinit { close(fd) }

    // MARK: public API

    public func root() throws -> Entry { try inode(rootRef) }

    /// The entry at `path` ("/" or "a/b/c"; symlinks are not followed).
    public func lookup(_ path: String) throws -> Entry {
        var e = try root()
        for comp in path.split(separator: "/") where comp != "." {
            guard e.kind == .directory else { throw SquashFSError("\(self.path): '\(path)': a component before '\(comp)' is not a directory") }
            guard let next = try children(of: e).first(where: { $0.name == Array(comp.utf8) }) else {
                throw SquashFSError("\(self.path): '\(path)' does not exist in the image")
            }
            e = try inode(next.ref)
        }
        return e
    }

    /// The entries of a directory in stored (sorted) order.
    public func list(_ dir: Entry) throws -> [(name: String, entry: Entry)] {
        try children(of: dir).map { (String(decoding: $0.name, as: UTF8.self), try inode($0.ref)) }
    }

    /// Streams a regular file's contents to `sink` in pieces of at most one block, in
    /// order. Blocks are decoded in batches on all cores (memory: two batches of blocks).
    public func stream(_ e: Entry, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard e.kind == .file else { throw SquashFSError("\(path): inode \(e.inodeNumber) is not a regular file") }
        // Where each block starts and how many bytes it must decode to.
        var jobs: [(pos: UInt64, raw: UInt32, want: Int)] = []
        jobs.reserveCapacity(e.blockSizes.count)
        var remaining = e.size
        var pos = e.blocksStart
        for raw in e.blockSizes {
            let want = Int(min(UInt64(blockSize), remaining))
            jobs.append((pos, raw, want))
            pos += UInt64(raw & ~Format.uncompressedBlock)
            remaining -= UInt64(want)
        }
        let (rfd, rpath, bsz, kind, used, inode) = (self.fd, self.path, self.blockSize, self.compression, self.bytesUsed, e.inodeNumber)
        let batch = 32
        let allJobs = jobs
        @Sendable func decode(_ first: Int) throws -> [[UInt8]] {
            let jobs = allJobs
            let n = min(batch, jobs.count - first)
            let slice = Array(jobs[first..<(first + n)])
            return try Parallel.map(n, workers: n < 4 ? 1 : nil) { j -> [UInt8] in
                let job = slice[j]
                let size = Int(job.raw & ~Format.uncompressedBlock)
                if size == 0 { return [UInt8](repeating: 0, count: job.want) }  // sparse block
                var out = [UInt8](repeating: 0, count: bsz)
                let got = try SquashFSImage.readBlock(fd: rfd, path: rpath, at: job.pos, size: size, uncompressed: job.raw & Format.uncompressedBlock != 0,
                                                      compression: kind, blockSize: bsz, bytesUsed: used, into: &out, inode: inode)
                guard got == job.want else {
                    throw SquashFSError("\(rpath): inode \(inode): a data block decodes to \(got) bytes, expected \(job.want)")
                }
                out.removeSubrange(got...)
                return out
            }
        }
        // The next batch decodes in the background while the sink consumes this one.
        var first = 0
        var current = jobs.isEmpty ? [] : try decode(0)
        while first < jobs.count {
            let nextFirst = first + min(batch, jobs.count - first)
            let ahead = nextFirst < jobs.count ? BatchSlot() : nil
            if let ahead {
                Thread.detachNewThread { ahead.set(Result { try decode(nextFirst) }) }
            }
            var sinkError: (any Error)?
            do {
                for d in current { try d.withUnsafeBytes { try sink($0) } }
            } catch { sinkError = error }
            let next = ahead?.wait()  // always joined, so no decode outlives this call
            if let sinkError { throw sinkError }
            current = try next?.get() ?? []
            first = nextFirst
        }
        if remaining > 0 {
            var out = [UInt8](repeating: 0, count: blockSize)
            guard e.fragment != Format.noFragment, Int(e.fragment) < fragments.count else {
                throw SquashFSError("\(path): inode \(e.inodeNumber): \(remaining) bytes of the file have no block or fragment")
            }
            let f = fragments[Int(e.fragment)]
            let size = Int(f.size & ~Format.uncompressedBlock)
            let n = try SquashFSImage.readBlock(fd: fd, path: path, at: f.start, size: size, uncompressed: f.size & Format.uncompressedBlock != 0,
                                                compression: compression, blockSize: blockSize, bytesUsed: bytesUsed, into: &out, inode: inode)
            let off = Int(e.fragmentOffset)
            guard off + Int(remaining) <= n else {
                throw SquashFSError("\(path): inode \(e.inodeNumber): fragment \(e.fragment) has \(n) bytes, the file's tail needs \(off)+\(remaining)")
            }
            try out.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[off..<(off + Int(remaining))])) }
        }
    }

    /// Extracts the whole tree into `directory`, which must not exist. Modes and mtimes
    /// are applied; ownership only when running as root; hard links are recreated.
    /// Devices need root (mknod). Nothing is ever written outside `directory`: names are
    /// single components, files are created with O_EXCL|O_NOFOLLOW inside directories
    /// this call created.
    public func extractAll(to directory: String) throws {
        guard mkdir(directory, 0o700) == 0 else { throw SystemError("mkdir", path: directory, errno: errno) }
        var linked: [UInt32: String] = [:]
        var dirs: [(String, Entry)] = []
        let asRoot = geteuid() == 0
        func walk(_ dir: Entry, _ host: String, depth: Int) throws {
            guard depth < 512 else { throw SquashFSError("\(path): directories nested deeper than 512 levels (a loop?)") }
            for child in try children(of: dir) {
                let e = try inode(child.ref)
                let dst = host + "/" + String(decoding: child.name, as: UTF8.self)
                if e.kind != .directory, e.linkCount > 1, let first = linked[e.inodeNumber] {
                    guard link(first, dst) == 0 else { throw SystemError("link", path: dst, errno: errno) }
                    continue
                }
                switch e.kind {
                case .directory:
                    guard mkdir(dst, 0o700) == 0 else { throw SystemError("mkdir", path: dst, errno: errno) }
                    try walk(e, dst, depth: depth + 1)
                    dirs.append((dst, e))
                    continue
                case .file:
                    let out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                    guard out >= 0 else { throw SystemError("create", path: dst, errno: errno) }
                    defer { close(out) }
                    var offset: UInt64 = 0
                    try stream(e) { buf in
                        try PositionalIO.write(out, buf, at: offset, path: dst)
                        offset += UInt64(buf.count)
                    }
                case .symlink:
                    let target = String(decoding: e.symlinkTarget, as: UTF8.self)
                    guard symlink(target, dst) == 0 else { throw SystemError("symlink", path: dst, errno: errno) }
                case .blockDevice, .characterDevice, .fifo, .socket:
                    let type: mode_t = switch e.kind {
                    case .blockDevice: S_IFBLK
                    case .characterDevice: S_IFCHR
                    case .socket: S_IFSOCK
                    default: S_IFIFO
                    }
                    let dev = dev_t(e.rdev.glibc)
                    guard mknod(dst, type | 0o600, dev) == 0 else {
                        throw SystemError("mknod", path: dst, errno: errno)
                    }
                }
                try applyMetadata(dst, e, asRoot: asRoot)
                if e.linkCount > 1 { linked[e.inodeNumber] = dst }
            }
        }
        let r = try root()
        try walk(r, directory, depth: 0)
        // Directories last (deepest first), so their modes and mtimes stick.
        for (d, e) in dirs { try applyMetadata(d, e, asRoot: asRoot) }
        try applyMetadata(directory, r, asRoot: asRoot)
    }

    private func applyMetadata(_ dst: String, _ e: Entry, asRoot: Bool) throws {
        if asRoot, lchown(dst, e.uid, e.gid) != 0 { throw SystemError("chown", path: dst, errno: errno) }
        if e.kind != .symlink, chmod(dst, mode_t(e.permissions & 0o7777)) != 0 {
            throw SystemError("chmod", path: dst, errno: errno)
        }
        var times = [timespec(tv_sec: Int(e.mtime), tv_nsec: 0), timespec(tv_sec: Int(e.mtime), tv_nsec: 0)]
        guard utimensat(AT_FDCWD, dst, &times, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw SystemError("utimensat", path: dst, errno: errno)
        }
    }

    // MARK: blocks and metadata

    /// Reads and decodes one data or fragment block into `out` (at least a block long).
    /// Static, so batches can run on several threads without touching the metadata cache.
    private static func readBlock(fd: Int32, path: String, at pos: UInt64, size: Int, uncompressed: Bool, compression: Compression.Kind,
                                  blockSize: Int, bytesUsed: UInt64, into out: inout [UInt8], inode: UInt32) throws -> Int {
        guard size <= blockSize, pos + UInt64(size) <= bytesUsed else {
            throw SquashFSError("\(path): inode \(inode): data block at \(pos) of \(size) bytes lies outside the image (\(bytesUsed) bytes, block size \(blockSize))")
        }
        if uncompressed {
            try out.withUnsafeMutableBytes { try PositionalIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size]), at: pos, path: path) }
            return size
        }
        let raw = try PositionalIO.read(fd, count: size, at: pos, path: path)
        do {
            return try raw.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try BlockDecompressor.decompress(compression, s, into: $0) } }
        } catch {
            throw SquashFSError("\(path): inode \(inode): data block at \(pos) does not decode: \(error)")
        }
    }

    /// One metadata block at absolute `pos`: its decoded bytes and where the next starts.
    private func metadataBlock(at pos: UInt64) throws -> (bytes: [UInt8], next: UInt64) {
        if let hit = metaCache[pos] { return hit }
        guard pos + 2 <= bytesUsed else { throw SquashFSError("\(path): metadata block at \(pos) lies outside the image (\(bytesUsed) bytes)") }
        let header = try PositionalIO.read(fd, count: 2, at: pos, path: path).loadLE(UInt16.self, at: 0)
        let size = Int(header & 0x7FFF)
        guard size > 0, size <= Format.metadataSize, pos + 2 + UInt64(size) <= bytesUsed else {
            throw SquashFSError("\(path): metadata block at \(pos) has a bad length \(size)")
        }
        let raw = try PositionalIO.read(fd, count: size, at: pos + 2, path: path)
        let bytes: [UInt8]
        if header & Format.uncompressedMetadata != 0 {
            bytes = raw
        } else {
            do { bytes = try BlockDecompressor.decompress(compression, raw, capacity: Format.metadataSize) } catch {
                throw SquashFSError("\(path): metadata block at \(pos) does not decode: \(error)")
            }
        }
        let r = (bytes, pos + 2 + UInt64(size))
        metaCache[pos] = r
        return r
    }

    /// A reader over a metadata stream (absolute block position + offset inside the
    /// decoded block) that moves on to the following blocks as needed.
    private struct Cursor {
        let image: SquashFSImage
        var block: UInt64
        var offset: Int
        mutating func take(_ n: Int) throws -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(n)
            while out.count < n {
                let (bytes, next) = try image.metadataBlock(at: block)
                guard offset <= bytes.count else {
                    throw SquashFSError("\(image.path): metadata offset \(offset) beyond the \(bytes.count)-byte block at \(block)")
                }
                if offset == bytes.count {
                    guard next < image.bytesUsed else { throw SquashFSError("\(image.path): metadata runs past the end of the image at \(next)") }
                    block = next
                    offset = 0
                    continue
                }
                let k = min(n - out.count, bytes.count - offset)
                out.append(contentsOf: bytes[offset..<(offset + k)])
                offset += k
            }
            return out
        }
        mutating func u16() throws -> UInt16 { try take(2).loadLE(UInt16.self, at: 0) }
        mutating func u32() throws -> UInt32 { try take(4).loadLE(UInt32.self, at: 0) }
        mutating func u64() throws -> UInt64 { try take(8).loadLE(UInt64.self, at: 0) }
    }

    private func readLookupTable(at start: UInt64, count: Int, entrySize: Int, what: String) throws -> [[UInt8]] {
        guard count > 0 else { return [] }
        let perBlock = Format.metadataSize / entrySize
        let blocks = (count + perBlock - 1) / perBlock
        guard start + UInt64(blocks * 8) <= bytesUsed else { throw SquashFSError("\(path): \(what) index at \(start) lies outside the image") }
        let index = try PositionalIO.read(fd, count: blocks * 8, at: start, path: path)
        var out: [[UInt8]] = []
        out.reserveCapacity(count)
        for b in 0..<blocks {
            let n = min(perBlock, count - b * perBlock)
            var c = Cursor(image: self, block: index.loadLE(UInt64.self, at: b * 8), offset: 0)
            let bytes = try c.take(n * entrySize)
            for i in 0..<n { out.append(Array(bytes[(i * entrySize)..<((i + 1) * entrySize)])) }
        }
        return out
    }

    private func id(_ index: UInt16, _ inode: UInt32) throws -> UInt32 {
        guard Int(index) < ids.count else { throw SquashFSError("\(path): inode \(inode) uses id index \(index) but the id table has \(ids.count) entries") }
        return ids[Int(index)]
    }

    /// Decodes the inode at a 48-bit reference (block start << 16 | offset).
    private func inode(_ ref: UInt64) throws -> Entry {
        var c = Cursor(image: self, block: inodeTable + (ref >> 16), offset: Int(ref & 0xFFFF))
        let type = try c.u16(), perm = try c.u16(), uidIdx = try c.u16(), gidIdx = try c.u16()
        let mtime = try c.u32(), number = try c.u32()
        var e = Entry(kind: .file, permissions: perm, uid: 0, gid: 0, mtime: mtime, inodeNumber: number, linkCount: 1, size: 0, symlinkTarget: [], rdev: DeviceNumber(major: 0, minor: 0))
        e.uid = try id(uidIdx, number)
        e.gid = try id(gidIdx, number)
        switch type {
        case 1:
            e.kind = .directory
            e.dirBlock = try c.u32(); e.linkCount = try c.u32(); e.size = UInt64(try c.u16()); e.dirOffset = try c.u16()
        case 8:
            e.kind = .directory
            e.linkCount = try c.u32(); e.size = UInt64(try c.u32()); e.dirBlock = try c.u32()
            _ = try c.u32()  // parent inode
            _ = try c.u16()  // index count: lookups here scan the listing
            e.dirOffset = try c.u16()
        case 2, 9:
            if type == 2 {
                e.blocksStart = UInt64(try c.u32()); e.fragment = try c.u32(); e.fragmentOffset = try c.u32(); e.size = UInt64(try c.u32())
            } else {
                e.blocksStart = try c.u64(); e.size = try c.u64()
                _ = try c.u64()  // sparse bytes
                e.linkCount = try c.u32(); e.fragment = try c.u32(); e.fragmentOffset = try c.u32()
                _ = try c.u32()  // xattr index
            }
            let full = e.size / UInt64(blockSize)
            let count = e.fragment == Format.noFragment ? (e.size + UInt64(blockSize) - 1) / UInt64(blockSize) : full
            guard count <= (bytesUsed / 2) + 1 else { throw SquashFSError("\(path): inode \(number) claims \(e.size) bytes, more blocks than the image can hold") }
            let table = try c.take(Int(count) * 4)
            e.blockSizes = (0..<Int(count)).map { table.loadLE(UInt32.self, at: $0 * 4) }
        case 3, 10:
            e.kind = .symlink
            e.linkCount = try c.u32()
            let n = try c.u32()
            guard n <= 65536 else { throw SquashFSError("\(path): inode \(number): symlink target of \(n) bytes") }
            e.symlinkTarget = try c.take(Int(n))
            e.size = UInt64(n)
        case 4, 5, 11, 12:
            e.kind = type == 4 || type == 11 ? .blockDevice : .characterDevice
            e.linkCount = try c.u32(); e.rdev = DeviceNumber(linuxEncoded: try c.u32())
        case 6, 7, 13, 14:
            e.kind = type == 6 || type == 13 ? .fifo : .socket
            e.linkCount = try c.u32()
        default:
            throw SquashFSError("\(path): inode \(number) has unknown type \(type)")
        }
        return e
    }

    /// A directory's entries: names and inode references.
    private func children(of dir: Entry) throws -> [(name: [UInt8], ref: UInt64)] {
        guard dir.kind == .directory else { return [] }
        // The stored size counts 3 bytes more than the listing (the "." and ".." SquashFS omits).
        guard dir.size > 3 else { return [] }
        var left = Int(dir.size) - 3
        var c = Cursor(image: self, block: directoryTable + UInt64(dir.dirBlock), offset: Int(dir.dirOffset))
        var out: [(name: [UInt8], ref: UInt64)] = []
        while left > 0 {
            guard left >= 12 else { throw SquashFSError("\(path): directory inode \(dir.inodeNumber): listing ends inside a header") }
            let count = Int(try c.u32()) + 1, start = try c.u32()
            _ = try c.u32()  // base inode number
            left -= 12
            guard count <= 256 else { throw SquashFSError("\(path): directory inode \(dir.inodeNumber): header with \(count) entries (at most 256)") }
            for _ in 0..<count {
                guard left >= 8 else { throw SquashFSError("\(path): directory inode \(dir.inodeNumber): listing ends inside an entry") }
                let offset = try c.u16()
                _ = try c.u16()  // inode number delta
                _ = try c.u16()  // type (the inode has it)
                let nameLen = Int(try c.u16()) + 1
                left -= 8 + nameLen
                guard left >= 0 else { throw SquashFSError("\(path): directory inode \(dir.inodeNumber): a name runs past the listing") }
                let name = try c.take(nameLen)
                guard !name.contains(0x2F), !name.contains(0), name != [0x2E], name != [0x2E, 0x2E] else {
                    throw SquashFSError("\(path): directory inode \(dir.inodeNumber) has an unsafe entry name '\(String(decoding: name, as: UTF8.self))'")
                }
                out.append((name, UInt64(start) << 16 | UInt64(offset)))
            }
        }
        return out
    }
}

/// One batch handed from the background decoder to the consumer.
private final class BatchSlot: @unchecked Sendable {
    private let cond = NSCondition()
    private var value: Result<[[UInt8]], any Error>?
    func set(_ v: Result<[[UInt8]], any Error>) { cond.lock(); value = v; cond.broadcast(); cond.unlock() }
    func wait() -> Result<[[UInt8]], any Error> {
        cond.lock()
        defer { cond.unlock() }
        while value == nil { cond.wait() }
        return value ?? .success([])
    }
}
