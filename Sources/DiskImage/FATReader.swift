import Basics
#if canImport(Glibc)
import Glibc
#endif

/// A FAT12/16/32 volume inside an image file (at a byte offset, e.g. a partition),
/// read in place: look up a file by path (long or 8.3 names, case-insensitive), read it,
/// or rewrite its bytes. That is all an offline slot switch needs (grubenv is a fixed
/// 1024-byte file; a retargeted cmdline.txt may change length). Nothing here allocates
/// or frees clusters: a rewrite keeps the file's cluster chain, so the FATs, FSInfo and
/// every other file stay as they are; only a length change touches the file's
/// directory entry (its size field).
/// Format facts: Microsoft's FAT specification (BPB, FAT type by cluster count, FAT
/// entry packing, directory and LFN entries).
public struct FATVolume {
    public struct Failure: UserError {
        public var message: String
        public var exitCode: Int32 { ExitStatus.failure }
        public var description: String { message }
    }

    /// One file: its size and where its bytes lie in the image (absolute byte ranges,
    /// in file order, covering exactly `size` bytes).
    public struct FileExtent: Sendable, Equatable {
        public var path: String
        public var size: UInt64
        public var ranges: [Range<UInt64>]
        /// Bytes in the file's clusters: the most `replace` can write without allocating.
        public var allocated: UInt64 { UInt64(clusters.count) * clusterBytes }
        var clusters: [UInt64] = []
        var clusterBytes: UInt64 = 0
        /// Absolute byte offset of the file's 32-byte (short name) directory entry.
        var entryOffset: UInt64 = 0
    }

    let fd: Int32
    let imagePath: String
    /// Byte offset of the volume in the image and its length.
    public let offset: UInt64
    public let length: UInt64
    public let bits: Int
    let bytesPerSector: UInt64
    let sectorsPerCluster: UInt64
    let fatOffset: UInt64  // relative to the volume
    let rootDirOffset: UInt64  // FAT12/16 fixed root directory
    let rootDirBytes: UInt64
    let rootCluster: UInt64  // FAT32
    let dataOffset: UInt64
    let clusterCount: UInt64
    var clusterBytes: UInt64 { bytesPerSector * sectorsPerCluster }

    /// `fd` must stay open (read-only is enough unless `overwrite` is used).
    public init(fd: Int32, imagePath: String, offset: UInt64, length: UInt64) throws {
        self.fd = fd
        self.imagePath = imagePath
        self.offset = offset
        self.length = length
        let where_ = "\(imagePath) at byte \(offset)"
        guard length >= 512 else { throw Failure(message: "\(where_): \(length) bytes is too small for a FAT filesystem") }
        let bs = try PositionalIO.read(fd, count: 512, at: offset, path: imagePath)
        func u16(_ o: Int) -> UInt64 { UInt64(bs[o]) | UInt64(bs[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt64 { u16(o) | u16(o + 2) << 16 }
        guard bs[510] == 0x55, bs[511] == 0xAA else {
            throw Failure(message: "\(where_): no FAT boot sector (signature 55 AA missing at byte 510)")
        }
        let bps = u16(11), spc = UInt64(bs[13]), reserved = u16(14), fats = UInt64(bs[16]), rootEntries = u16(17)
        let total = u16(19) != 0 ? u16(19) : u32(32)
        let fatSize = u16(22) != 0 ? u16(22) : u32(36)
        guard [512, 1024, 2048, 4096].contains(bps), spc > 0, spc & (spc - 1) == 0, reserved > 0, fats > 0, fatSize > 0, total > 0 else {
            throw Failure(message: "\(where_): not a FAT filesystem (bytes/sector \(bps), sectors/cluster \(spc), reserved \(reserved), FATs \(fats), FAT size \(fatSize))")
        }
        let rootSectors = (rootEntries * 32 + bps - 1) / bps
        let firstData = reserved + fats * fatSize + rootSectors
        guard total > firstData, total * bps <= length else {
            throw Failure(message: "\(where_): FAT geometry (\(total) sectors of \(bps) bytes) does not fit the \(length)-byte partition")
        }
        let clusters = (total - firstData) / spc
        bits = clusters < 4085 ? 12 : clusters < 65525 ? 16 : 32
        bytesPerSector = bps
        sectorsPerCluster = spc
        fatOffset = reserved * bps
        rootDirOffset = (reserved + fats * fatSize) * bps
        rootDirBytes = rootEntries * 32
        rootCluster = bits == 32 ? u32(44) & 0x0FFF_FFFF : 0
        dataOffset = firstData * bps
        clusterCount = clusters
        // The FAT must hold an entry for every cluster.
        guard fatSize * bps * 8 >= (clusters + 2) * UInt64(bits) else {
            throw Failure(message: "\(where_): FAT of \(fatSize) sectors is too small for \(clusters) clusters")
        }
    }

    // MARK: FAT chains

    func next(_ cluster: UInt64) throws -> UInt64? {
        switch bits {
        case 12:
            let o = fatOffset + cluster + cluster / 2
            let b = try PositionalIO.read(fd, count: 2, at: offset + o, path: imagePath)
            let v = UInt64(b[0]) | UInt64(b[1]) << 8
            let e = cluster & 1 == 1 ? v >> 4 : v & 0xFFF
            return e >= 0xFF8 ? nil : e
        case 16:
            let b = try PositionalIO.read(fd, count: 2, at: offset + fatOffset + cluster * 2, path: imagePath)
            let e = UInt64(b[0]) | UInt64(b[1]) << 8
            return e >= 0xFFF8 ? nil : e
        default:
            let b = try PositionalIO.read(fd, count: 4, at: offset + fatOffset + cluster * 4, path: imagePath)
            let e = (UInt64(b[0]) | UInt64(b[1]) << 8 | UInt64(b[2]) << 16 | UInt64(b[3]) << 24) & 0x0FFF_FFFF
            return e >= 0x0FFF_FFF8 ? nil : e
        }
    }

    /// The clusters of a chain, checked: every entry in range, no loop, no free/bad mark.
    func chain(from first: UInt64, what: String) throws -> [UInt64] {
        var out: [UInt64] = []
        var c = first
        while true {
            guard c >= 2, c < clusterCount + 2 else {
                throw Failure(message: "\(imagePath): FAT volume at byte \(offset): \(what) has cluster \(c) in its chain, outside 2..\(clusterCount + 1) (corrupt FAT?)")
            }
            out.append(c)
            guard UInt64(out.count) <= clusterCount else {
                throw Failure(message: "\(imagePath): FAT volume at byte \(offset): \(what) has a cluster chain loop")
            }
            guard let n = try next(c) else { return out }
            c = n
        }
    }

    func clusterRange(_ c: UInt64) -> Range<UInt64> {
        let start = offset + dataOffset + (c - 2) * clusterBytes
        return start..<(start + clusterBytes)
    }

    // MARK: directories

    struct Entry {
        var name: String  // long name if present, else the 8.3 name
        var shortName: String
        var isDirectory: Bool
        var firstCluster: UInt64
        var size: UInt64
        var offset: UInt64  // absolute byte offset of the short entry
    }

    func readDirectory(cluster: UInt64?, what: String) throws -> [Entry] {
        var bytes: [UInt8] = []
        var clusters: [UInt64] = []
        if let cluster {
            clusters = try chain(from: cluster, what: what)
            for c in clusters {
                let r = clusterRange(c)
                bytes += try PositionalIO.read(fd, count: Int(r.count), at: r.lowerBound, path: imagePath)
            }
        } else {
            bytes = try PositionalIO.read(fd, count: Int(rootDirBytes), at: offset + rootDirOffset, path: imagePath)
        }
        // Where entry byte `i` of the directory lies in the image.
        func absolute(_ i: Int) -> UInt64 {
            guard !clusters.isEmpty else { return offset + rootDirOffset + UInt64(i) }
            let n = UInt64(i) / clusterBytes
            return clusterRange(clusters[Int(n)]).lowerBound + UInt64(i) % clusterBytes
        }
        var entries: [Entry] = []
        var lfn: [Int: [UInt16]] = [:]
        var lfnChecksum: UInt8?
        var i = 0
        while i + 32 <= bytes.count {
            let e = bytes[i..<(i + 32)]
            defer { i += 32 }
            let b0 = e[i]
            if b0 == 0 { break }
            if b0 == 0xE5 { lfn = [:]; continue }
            let attr = e[i + 11]
            if attr & 0x3F == 0x0F {
                let seq = Int(b0 & 0x1F)
                var units: [UInt16] = []
                for o in [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30] {
                    units.append(UInt16(e[i + o]) | UInt16(e[i + o + 1]) << 8)
                }
                if b0 & 0x40 != 0 { lfn = [:] }
                lfn[seq] = units
                lfnChecksum = e[i + 13]
                continue
            }
            if attr & 0x08 != 0 { lfn = [:]; continue }  // volume label
            let raw = Array(e[i..<(i + 11)])
            var base = String(decoding: raw[0..<8], as: UTF8.self).trimmingTrailingSpaces()
            if raw[0] == 0x05 { base = "\u{E5}" + base.dropFirst() }
            let ext = String(decoding: raw[8..<11], as: UTF8.self).trimmingTrailingSpaces()
            let short = ext.isEmpty ? base : base + "." + ext
            var name = short
            if !lfn.isEmpty, let sum = lfnChecksum, sum == FATVolume.checksum(raw) {
                var units: [UInt16] = []
                for s in lfn.keys.sorted() { units += lfn[s] ?? [] }
                if let end = units.firstIndex(where: { $0 == 0 || $0 == 0xFFFF }) { units.removeSubrange(end...) }
                name = String(decoding: units, as: UTF16.self)
            }
            lfn = [:]
            let hi = UInt64(e[i + 20]) | UInt64(e[i + 21]) << 8
            let lo = UInt64(e[i + 26]) | UInt64(e[i + 27]) << 8
            let size = UInt64(e[i + 28]) | UInt64(e[i + 29]) << 8 | UInt64(e[i + 30]) << 16 | UInt64(e[i + 31]) << 24
            entries.append(Entry(name: name, shortName: short, isDirectory: attr & 0x10 != 0,
                                 firstCluster: bits == 32 ? hi << 16 | lo : lo, size: size, offset: absolute(i)))
        }
        return entries
    }

    static func checksum(_ short: [UInt8]) -> UInt8 {
        var sum: UInt8 = 0
        for b in short { sum = (sum & 1 == 1 ? 0x80 : 0) &+ (sum >> 1) &+ b }
        return sum
    }

    /// Finds a regular file by absolute path ("/grub/grubenv").
    public func locate(_ path: String) throws -> FileExtent {
        let parts = path.split(separator: "/").map(String.init)
        guard !parts.isEmpty else { throw Failure(message: "\(imagePath): '\(path)' is not a file path") }
        var dirCluster: UInt64? = bits == 32 ? rootCluster : nil
        var walked = ""
        for (n, part) in parts.enumerated() {
            let entries = try readDirectory(cluster: dirCluster, what: walked.isEmpty ? "root directory" : walked)
            walked += "/" + part
            guard let e = entries.first(where: { $0.name.lowercased() == part.lowercased() || $0.shortName.lowercased() == part.lowercased() }) else {
                throw Failure(message: "\(imagePath): FAT volume at byte \(offset) has no '\(walked)'")
            }
            let last = n == parts.count - 1
            if last {
                guard !e.isDirectory else { throw Failure(message: "\(imagePath): '\(walked)' in the FAT volume is a directory, not a file") }
                if e.size == 0 {
                    return FileExtent(path: walked, size: 0, ranges: [], clusterBytes: clusterBytes, entryOffset: e.offset)
                }
                let clusters = try chain(from: e.firstCluster, what: walked)
                guard UInt64(clusters.count) * clusterBytes >= e.size else {
                    throw Failure(message: "\(imagePath): '\(walked)' is \(e.size) bytes but its cluster chain holds only \(UInt64(clusters.count) * clusterBytes)")
                }
                return FileExtent(path: walked, size: e.size, ranges: ranges(clusters, size: e.size),
                                  clusters: clusters, clusterBytes: clusterBytes, entryOffset: e.offset)
            }
            guard e.isDirectory else { throw Failure(message: "\(imagePath): '\(walked)' in the FAT volume is a file, not a directory") }
            dirCluster = e.firstCluster == 0 ? (bits == 32 ? rootCluster : nil) : e.firstCluster
        }
        throw Failure(message: "\(imagePath): '\(path)' not found")
    }

    /// The image byte ranges holding the first `size` bytes of a chain, adjacent clusters merged.
    func ranges(_ clusters: [UInt64], size: UInt64) -> [Range<UInt64>] {
        var ranges: [Range<UInt64>] = []
        var left = size
        for c in clusters where left > 0 {
            let r = clusterRange(c)
            let take = min(left, clusterBytes)
            if let lastRange = ranges.last, lastRange.upperBound == r.lowerBound {
                ranges[ranges.count - 1] = lastRange.lowerBound..<(r.lowerBound + take)
            } else {
                ranges.append(r.lowerBound..<(r.lowerBound + take))
            }
            left -= take
        }
        return ranges
    }

    public func read(_ file: FileExtent) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Int(file.size))
        for r in file.ranges { out += try PositionalIO.read(fd, count: Int(r.count), at: r.lowerBound, path: imagePath) }
        return out
    }

    /// Rewrites the file's bytes in place; `bytes` must be exactly the file's size
    /// (the directory entry, FAT and allocation stay as they are). The caller fsyncs.
    public func overwrite(_ file: FileExtent, with bytes: [UInt8]) throws {
        guard UInt64(bytes.count) == file.size else {
            throw Failure(message: "\(imagePath): '\(file.path)' is \(file.size) bytes in the FAT volume; refusing to write \(bytes.count) bytes in place")
        }
        try replace(file, with: bytes)
    }

    /// Replaces the file's contents with `bytes`, which may differ in length as long as
    /// they need exactly the clusters the file has (no allocation, no freeing: the FATs
    /// and FSInfo stay valid as they are). When the file shrinks, the bytes it gave up are
    /// zeroed; the directory entry's size field is updated, its times are kept
    /// (reproducible).
    /// Returns the file's new extent. The caller fsyncs.
    @discardableResult
    public func replace(_ file: FileExtent, with bytes: [UInt8]) throws -> FileExtent {
        let n = UInt64(bytes.count)
        let needed = file.clusterBytes == 0 ? 0 : (n + file.clusterBytes - 1) / file.clusterBytes
        guard needed == UInt64(file.clusters.count), file.clusterBytes == clusterBytes else {
            throw Failure(message: "\(imagePath): FAT volume at byte \(offset): '\(file.path)' would change from \(file.size) to \(n) bytes, "
                + "which needs \(needed) cluster(s) of \(clusterBytes) bytes; the file has \(file.clusters.count), and a rewrite in place does not allocate or free clusters")
        }
        guard n <= UInt64(UInt32.max) else { throw Failure(message: "\(imagePath): '\(file.path)': \(n) bytes is too large for a FAT file") }
        let span = max(n, file.size)
        let padded = bytes + [UInt8](repeating: 0, count: Int(span - n))
        var pos = 0
        for r in ranges(file.clusters, size: span) {
            try PositionalIO.write(fd, Array(padded[pos..<(pos + Int(r.count))]), at: r.lowerBound, path: imagePath)
            pos += Int(r.count)
        }
        if n != file.size {
            let size = UInt32(n)
            try PositionalIO.write(fd, [UInt8(size & 0xFF), UInt8(size >> 8 & 0xFF), UInt8(size >> 16 & 0xFF), UInt8(size >> 24)],
                                   at: file.entryOffset + 28, path: imagePath)
        }
        var out = file
        out.size = n
        out.ranges = ranges(file.clusters, size: n)
        return out
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
