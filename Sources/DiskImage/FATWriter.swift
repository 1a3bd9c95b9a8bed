import Basics
import FSTree
#if canImport(Glibc)
import Glibc
#endif

/// Native FAT12/16/32 writer: formats `size` bytes at `path` and fills them from an FSTree
/// (directories and regular files), with long names (VFAT LFN entries), a volume label and
/// a fixed volume id. Files and directories get contiguous clusters in tree walk order
/// (byte order of names), so output depends only on the tree. Format facts: Microsoft's
/// FAT specification (BPB fields, FAT sizing, LFN entries and checksums, FSInfo).
enum FATWriter {
    struct Failure: UserError {
        var message: String
        var exitCode: Int32 { ExitStatus.usage }
        var description: String { message }
    }

    struct Geometry {
        var bits: Int            // 12, 16, 32
        var sectorsPerCluster: UInt64
        var reserved: UInt64
        var fatSectors: UInt64
        var rootEntries: UInt64  // 0 on FAT32
        var totalSectors: UInt64
        var clusters: UInt64
        var rootDirSectors: UInt64 { (rootEntries * 32 + 511) / 512 }
        var firstDataSector: UInt64 { reserved + 2 * fatSectors + rootDirSectors }
        var clusterBytes: UInt64 { sectorsPerCluster * 512 }
        func clusterOffset(_ c: UInt64) -> UInt64 { (firstDataSector + (c - 2) * sectorsPerCluster) * 512 }
    }

    static func geometry(size: UInt64, forced: FilesystemSpec.FATSize?) throws -> Geometry {
        let total = size / 512
        func fit(_ bits: Int, _ spc: UInt64) -> Geometry? {
            let reserved: UInt64 = bits == 32 ? 32 : 1
            let rootEntries: UInt64 = bits == 32 ? 0 : 512
            var g = Geometry(bits: bits, sectorsPerCluster: spc, reserved: reserved, fatSectors: 1, rootEntries: rootEntries, totalSectors: total, clusters: 0)
            for _ in 0..<64 {
                guard total > g.firstDataSector else { return nil }
                g.clusters = (total - g.firstDataSector) / spc
                let need = ((g.clusters + 2) * UInt64(bits) + 7) / 8
                let sectors = (need + 511) / 512
                if sectors <= g.fatSectors { break }
                g.fatSectors = sectors
            }
            let ok: Bool
            switch bits {
            case 12: ok = g.clusters >= 1 && g.clusters <= 4084
            case 16: ok = g.clusters >= 4085 && g.clusters <= 65524
            default: ok = g.clusters >= 65525 && g.clusters <= 0x0FFF_FFF5
            }
            return ok ? g : nil
        }
        func pick(_ bits: Int, preferred: UInt64) -> Geometry? {
            // Preferred cluster size first (Microsoft's table), then any that fits.
            let all: [UInt64] = [1, 2, 4, 8, 16, 32, 64, 128]
            for spc in [preferred] + all { if let g = fit(bits, spc) { return g } }
            return nil
        }
        let mib = size >> 20
        let pref16: UInt64 = mib <= 16 ? 2 : mib <= 128 ? 4 : mib <= 256 ? 8 : mib <= 512 ? 16 : mib <= 1024 ? 32 : 64
        let pref32: UInt64 = mib < 260 ? 1 : mib <= 8192 ? 8 : mib <= 16384 ? 16 : mib <= 32768 ? 32 : 64
        switch forced {
        case .fat12?: if let g = pick(12, preferred: 1) { return g }
        case .fat16?: if let g = pick(16, preferred: pref16) { return g }
        case .fat32?: if let g = pick(32, preferred: pref32) { return g }
        case nil:
            if size >= 512 << 20, let g = pick(32, preferred: pref32) { return g }
            if let g = pick(16, preferred: pref16) ?? pick(12, preferred: 1) ?? pick(32, preferred: pref32) { return g }
        }
        throw Failure(message: "a \(forced.map { "FAT\($0.rawValue)" } ?? "FAT") filesystem cannot be made in \(size) bytes (cluster count out of range for every cluster size)")
    }

    // MARK: names

    static let shortChars: Set<UInt8> = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()-@^_`{}~".utf8))

    /// The 11-byte short name and whether the long name needs LFN entries.
    static func shortName(_ name: String, taken: inout Set<[UInt8]>) -> (name: [UInt8], needsLFN: Bool) {
        let u = Array(name.utf8)
        let dot = u.lastIndex(of: UInt8(ascii: "."))
        let base = dot.map { Array(u[..<$0]) } ?? u
        let ext = dot.map { Array(u[($0 + 1)...]) } ?? []
        func clean(_ s: [UInt8]) -> ([UInt8], Bool) {
            var out: [UInt8] = []
            var lossy = false
            for c in s {
                if c == UInt8(ascii: " ") || c == UInt8(ascii: ".") { lossy = true; continue }
                let up = (97...122).contains(c) ? c - 32 : c
                if up != c { lossy = true }
                if shortChars.contains(up) { out.append(up) } else { out.append(UInt8(ascii: "_")); lossy = true }
            }
            return (out, lossy)
        }
        let (b, lb) = clean(base), (e, le) = clean(ext)
        let exact = !lb && !le && !b.isEmpty && b.count <= 8 && e.count <= 3 && (dot == nil || !ext.isEmpty) && u.first != UInt8(ascii: ".")
        func pad(_ s: [UInt8], _ n: Int) -> [UInt8] { Array((s + [UInt8](repeating: 0x20, count: n)).prefix(n)) }
        if exact {
            let n = pad(b, 8) + pad(e, 3)
            if taken.insert(n).inserted { return (n, false) }
        }
        let e3 = pad(Array(e.prefix(3)), 3)
        var k = 1
        while true {
            let tail = Array("~\(k)".utf8)
            let n = pad(Array(b.prefix(8 - tail.count)) + tail, 8) + e3
            if taken.insert(n).inserted { return (n, true) }
            k += 1
        }
    }

    static func lfnChecksum(_ n: [UInt8]) -> UInt8 {
        var sum: UInt8 = 0
        for c in n { sum = ((sum & 1) << 7) &+ (sum >> 1) &+ c }
        return sum
    }

    static func lfnEntries(_ name: String, checksum: UInt8) -> [[UInt8]] {
        var units = Array(name.utf16)
        let count = (units.count + 12) / 13
        if units.count % 13 != 0 { units.append(0) }
        while units.count % 13 != 0 { units.append(0xFFFF) }
        var entries: [[UInt8]] = []
        for i in 0..<count {
            var e = [UInt8](repeating: 0, count: 32)
            e[0] = UInt8(i + 1) | (i == count - 1 ? 0x40 : 0)
            e[11] = 0x0F
            e[13] = checksum
            let chunk = units[(i * 13)..<(i * 13 + 13)]
            let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
            for (k, u) in chunk.enumerated() {
                e[offsets[k]] = UInt8(u & 0xFF)
                e[offsets[k] + 1] = UInt8(u >> 8)
            }
            entries.append(e)
        }
        return entries.reversed()
    }

    static func dosTime(_ t: Int64) -> (date: UInt16, time: UInt16) {
        let secs = max(t, 315_532_800)  // FAT dates start in 1980
        let days = secs / 86400, rem = secs % 86400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = z / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        let year = min(max(y - 1980, 0), 127)
        let date = UInt16(year << 9 | m << 5 | d)
        let time = UInt16((rem / 3600) << 11 | ((rem % 3600) / 60) << 5 | (rem % 60) / 2)
        return (date, time)
    }

    static func entry(_ short: [UInt8], attr: UInt8, cluster: UInt64, size: UInt32, mtime: Int64) -> [UInt8] {
        var e = [UInt8](repeating: 0, count: 32)
        for i in 0..<11 { e[i] = short[i] }
        e[11] = attr
        let (d, t) = dosTime(mtime)
        func put16(_ o: Int, _ v: UInt16) { e[o] = UInt8(v & 0xFF); e[o + 1] = UInt8(v >> 8) }
        put16(14, t); put16(16, d); put16(18, d)   // creation time/date, access date
        put16(20, UInt16((cluster >> 16) & 0xFFFF))
        put16(22, t); put16(24, d)
        put16(26, UInt16(cluster & 0xFFFF))
        e[28] = UInt8(size & 0xFF); e[29] = UInt8((size >> 8) & 0xFF); e[30] = UInt8((size >> 16) & 0xFF); e[31] = UInt8(size >> 24)
        return e
    }

    // MARK: writing

    static func write(_ tree: FSTree, size: UInt64, to path: String, fatSize: FilesystemSpec.FATSize?, label: String?, volumeID: UInt32, epoch: Int64) throws {
        let g = try geometry(size: size, forced: fatSize)
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("create", path: path, errno: errno) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw SystemError("truncate", path: path, errno: errno) }
        func pwriteAll(_ b: [UInt8], _ off: UInt64) throws {
            let n = b.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(off)) }
            guard n == b.count else { throw SystemError("write", path: path, errno: errno) }
        }

        // Plan: entries of every directory, clusters of every dir and file (walk order).
        struct Dir { var id: InodeID; var entries: [[UInt8]]; var cluster: UInt64; var parentCluster: UInt64; var bytes: UInt64 }
        var fat = [UInt32](repeating: 0, count: Int(g.clusters + 2))
        var next: UInt64 = 2
        func allocate(_ bytes: UInt64, minimum: UInt64 = 0) throws -> UInt64 {
            let n = max((bytes + g.clusterBytes - 1) / g.clusterBytes, minimum)
            if n == 0 { return 0 }
            guard next + n <= g.clusters + 2 else {
                throw Failure(message: "the files do not fit: \(size) bytes of FAT\(g.bits) hold \(g.clusters) clusters of \(g.clusterBytes) bytes")
            }
            let first = next
            for c in first..<(first + n) { fat[Int(c)] = c == first + n - 1 ? 0x0FFF_FFFF : UInt32(c + 1) }
            next += n
            return first
        }
        let dirIDs = { () -> [InodeID] in
            var ids: [InodeID] = []
            tree.walk { _, id, inode in if inode.kind == .directory { ids.append(id) } }
            return ids
        }()
        // Short names and directory sizes first: each directory needs its entry count.
        var entryCount: [InodeID: UInt64] = [:]
        var shortNames: [InodeID: [(name: [UInt8], needsLFN: Bool)]] = [:]
        for d in dirIDs {
            var n: UInt64 = d == FSTree.rootID ? (label == nil ? 0 : 1) : 2
            var taken = Set<[UInt8]>()
            var names: [(name: [UInt8], needsLFN: Bool)] = []
            for c in tree.children(of: d) {
                let inode = tree[c.id]
                guard inode.kind == .directory || inode.kind == .regular else {
                    throw Failure(message: "\(c.name): a \(inode.kind) cannot be stored in vfat")
                }
                let sn = shortName(c.name, taken: &taken)
                names.append(sn)
                n += 1 + (sn.needsLFN ? UInt64((c.name.utf16.count + 12) / 13) : 0)
            }
            shortNames[d] = names
            entryCount[d] = n
        }
        if g.bits != 32, let rootN = entryCount[FSTree.rootID], rootN > g.rootEntries {
            throw Failure(message: "the root directory has \(rootN) entries (long names count several), FAT\(g.bits) allows \(g.rootEntries); use FAT32 or a subdirectory")
        }
        var clusterOf: [InodeID: UInt64] = [:]
        if g.bits == 32 { clusterOf[FSTree.rootID] = try allocate((entryCount[FSTree.rootID] ?? 0) * 32, minimum: 1) }
        var fileOrder: [(InodeID, UInt64)] = []
        try tree.walk { p, id, inode in
            if p == "/" || clusterOf[id] != nil { return }
            if inode.kind == .directory {
                clusterOf[id] = try allocate((entryCount[id] ?? 2) * 32, minimum: 1)
            } else if inode.kind == .regular {
                guard inode.content.size < (1 << 32) else { throw Failure(message: "\(p): \(inode.content.size) bytes is too large for FAT (4 GiB - 1 maximum)") }
                let c = try allocate(inode.content.size)
                clusterOf[id] = c
                if c != 0 { fileOrder.append((id, c)) }
            }
        }

        // Directory contents.
        var parentOf: [InodeID: InodeID] = [:]
        for d in dirIDs { for c in tree.children(of: d) where tree[c.id].kind == .directory { parentOf[c.id] = d } }
        for d in dirIDs {
            var buf: [UInt8] = []
            let own = clusterOf[d] ?? 0
            let mt = min(tree[d].mtime.seconds, epoch)
            if d == FSTree.rootID {
                if let l = label {
                    let lb = Array(l.utf8.prefix(11)) + [UInt8](repeating: 0x20, count: max(0, 11 - l.utf8.count))
                    buf += entry(lb, attr: 0x08, cluster: 0, size: 0, mtime: epoch)
                }
            } else {
                let parent = parentOf[d].map { $0 == FSTree.rootID ? 0 : (clusterOf[$0] ?? 0) } ?? 0
                buf += entry(Array(".          ".utf8), attr: 0x10, cluster: own, size: 0, mtime: mt)
                buf += entry(Array("..         ".utf8), attr: 0x10, cluster: parent, size: 0, mtime: mt)
            }
            let names = shortNames[d] ?? []
            for (k, c) in tree.children(of: d).enumerated() {
                let inode = tree[c.id]
                let (short, lfn) = names[k]
                if lfn { for e in lfnEntries(c.name, checksum: lfnChecksum(short)) { buf += e } }
                let isDir = inode.kind == .directory
                buf += entry(short, attr: isDir ? 0x10 : 0x20, cluster: clusterOf[c.id] ?? 0,
                             size: isDir ? 0 : UInt32(inode.content.size), mtime: min(inode.mtime.seconds, epoch))
            }
            let off = d == FSTree.rootID && g.bits != 32 ? (g.reserved + 2 * g.fatSectors) * 512 : g.clusterOffset(own)
            if !buf.isEmpty { try pwriteAll(buf, off) }
        }

        // File data, streamed cluster-contiguously.
        let chunk = 1 << 20
        let base = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { base.deallocate() }
        for (id, c) in fileOrder {
            let r = try ContentReader(tree[id].content)
            var off = g.clusterOffset(c)
            while true {
                let n = try r.read(into: UnsafeMutableRawBufferPointer(start: base, count: chunk))
                if n == 0 { break }
                _ = try SparseCopy.writeNonZero(UnsafeRawBufferPointer(start: base, count: n), fd: fd, targetPath: path, at: off)
                off += UInt64(n)
            }
        }

        // FATs.
        let eoc: UInt32 = g.bits == 12 ? 0xFFF : g.bits == 16 ? 0xFFFF : 0x0FFF_FFFF
        fat[0] = (g.bits == 12 ? 0xF00 : g.bits == 16 ? 0xFF00 : 0x0FFF_FF00) | 0xF8
        fat[1] = eoc
        var fatBytes = [UInt8](repeating: 0, count: Int(g.fatSectors * 512))
        for (i, v0) in fat.enumerated() {
            let v = v0 == 0x0FFF_FFFF ? eoc : v0
            switch g.bits {
            case 12:
                let o = i * 3 / 2
                if i & 1 == 0 {
                    fatBytes[o] = UInt8(v & 0xFF); fatBytes[o + 1] = (fatBytes[o + 1] & 0xF0) | UInt8((v >> 8) & 0x0F)
                } else {
                    fatBytes[o] = (fatBytes[o] & 0x0F) | UInt8((v << 4) & 0xF0); fatBytes[o + 1] = UInt8((v >> 4) & 0xFF)
                }
            case 16:
                fatBytes[i * 2] = UInt8(v & 0xFF); fatBytes[i * 2 + 1] = UInt8(v >> 8)
            default:
                for k in 0..<4 { fatBytes[i * 4 + k] = UInt8((v >> (8 * UInt32(k))) & 0xFF) }
            }
        }
        try pwriteAll(fatBytes, g.reserved * 512)
        try pwriteAll(fatBytes, (g.reserved + g.fatSectors) * 512)

        // Boot sector (+ FSInfo and backups on FAT32).
        var bs = [UInt8](repeating: 0, count: 512)
        func p16(_ o: Int, _ v: UInt64) { bs[o] = UInt8(v & 0xFF); bs[o + 1] = UInt8((v >> 8) & 0xFF) }
        func p32(_ o: Int, _ v: UInt64) { p16(o, v & 0xFFFF); p16(o + 2, v >> 16) }
        bs[0] = 0xEB; bs[1] = g.bits == 32 ? 0x58 : 0x3C; bs[2] = 0x90
        for (i, c) in Array("mkfs.fat".utf8).enumerated() { bs[3 + i] = c }
        p16(11, 512); bs[13] = UInt8(g.sectorsPerCluster); p16(14, g.reserved); bs[16] = 2
        p16(17, g.rootEntries)
        if g.totalSectors < 65536 && g.bits != 32 { p16(19, g.totalSectors) } else { p32(32, g.totalSectors) }
        bs[21] = 0xF8
        if g.bits != 32 { p16(22, g.fatSectors) }
        p16(24, 32); p16(26, 64)
        let labelBytes = Array(((label ?? "NO NAME") + "           ").utf8.prefix(11))
        let ext = g.bits == 32 ? 64 : 36
        if g.bits == 32 {
            p32(36, g.fatSectors); p32(44, 2); p16(48, 1); p16(50, 6)
        }
        bs[ext] = 0x80; bs[ext + 2] = 0x29
        p32(ext + 3, UInt64(volumeID))
        for i in 0..<11 { bs[ext + 7 + i] = labelBytes[i] }
        for (i, c) in Array((g.bits == 32 ? "FAT32   " : g.bits == 16 ? "FAT16   " : "FAT12   ").utf8).enumerated() { bs[ext + 18 + i] = c }
        bs[510] = 0x55; bs[511] = 0xAA
        try pwriteAll(bs, 0)
        if g.bits == 32 {
            var fsi = [UInt8](repeating: 0, count: 512)
            func f32(_ o: Int, _ v: UInt32) { for k in 0..<4 { fsi[o + k] = UInt8((v >> (8 * UInt32(k))) & 0xFF) } }
            f32(0, 0x4161_5252); f32(484, 0x6141_7272)
            f32(488, UInt32(g.clusters + 2 - next)); f32(492, UInt32(next))
            f32(508, 0xAA55_0000)
            try pwriteAll(fsi, 512)
            try pwriteAll(bs, 6 * 512)
            try pwriteAll(fsi, 7 * 512)
        }
    }
}
