// On-disk constants of EROFS (Linux fs/erofs/erofs_fs.h), restricted to what Linux 6.1
// mounts. Our own names; values are the format's.

enum EROFSFormat {
    static let blockSize = 4096
    static let blockBits = 12
    static let superblockOffset = 1024
    static let superblockSize = 128
    static let magic: UInt32 = 0xE0F5_E1E2

    // feature_compat
    static let compatSuperblockChecksum: UInt32 = 0x1
    static let compatMtime: UInt32 = 0x2
    // feature_incompat
    static let incompatZeroPadding: UInt32 = 0x1      // LZ4_0PADDING, Linux 5.3
    static let incompatBigPcluster: UInt32 = 0x2      // COMPR_CFGS / BIG_PCLUSTER, Linux 5.13
    static let incompatZTailPacking: UInt32 = 0x10    // Linux 5.17

    // i_format data layouts (bits 1..3)
    static let layoutFlatPlain: UInt16 = 0
    static let layoutCompressedFull: UInt16 = 1
    static let layoutFlatInline: UInt16 = 2
    static let layoutCompressedCompact: UInt16 = 3

    static let compactInodeSize = 32
    static let extendedInodeSize = 64
    static let slotSize = 32
    static let direntSize = 12

    // Compression algorithms (map header h_algorithmtype / superblock bitmap bits)
    static let algorithmLZ4: UInt8 = 0
    static let algorithmLZMA: UInt8 = 1
    static let maxLZMADictionary: UInt32 = 8 << 20

    // Map header h_advise bits
    static let adviseCompacted2B: UInt16 = 0x1
    static let adviseBigPcluster1: UInt16 = 0x2
    static let adviseBigPcluster2: UInt16 = 0x4
    static let adviseInlinePcluster: UInt16 = 0x8

    // lcluster index types
    static let lclusterPlain: UInt16 = 0
    static let lclusterHead1: UInt16 = 1
    static let lclusterNonHead: UInt16 = 2
    static let cblkcntFlag: UInt16 = 1 << 11

    // Directory entry file types
    static func fileType(_ k: EntryKindCode) -> UInt8 { k.rawValue }
}

/// EROFS dirent file type codes.
enum EntryKindCode: UInt8 {
    case regular = 1, directory = 2, charDevice = 3, blockDevice = 4, fifo = 5, socket = 6, symlink = 7
}

/// Little-endian byte building.
struct ByteWriter {
    var bytes: [UInt8]
    init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }
    var count: Int { bytes.count }
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v & 0xFF)); bytes.append(UInt8(v >> 8)) }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8((v >> (8 * UInt32(i))) & 0xFF)) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8((v >> (8 * UInt64(i))) & 0xFF)) } }
    mutating func append(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }
    mutating func zeros(_ n: Int) { if n > 0 { bytes.append(contentsOf: repeatElement(0, count: n)) } }
    mutating func pad(to alignment: Int) { zeros((alignment - bytes.count % alignment) % alignment) }
}

extension Array where Element == UInt8 {
    mutating func putU16(_ v: UInt16, at o: Int) { self[o] = UInt8(v & 0xFF); self[o + 1] = UInt8(v >> 8) }
    mutating func putU32(_ v: UInt32, at o: Int) { for i in 0..<4 { self[o + i] = UInt8((v >> (8 * UInt32(i))) & 0xFF) } }
}

/// CRC-32C (Castagnoli), raw form as the EROFS superblock checksum uses it: seeded with
/// ~0 and without the final inversion.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func raw(_ seed: UInt32, _ data: ArraySlice<UInt8>) -> UInt32 {
        var c = seed
        for b in data { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c
    }
}

@inline(__always) func roundUp(_ v: Int, _ a: Int) -> Int { (v + a - 1) / a * a }
@inline(__always) func divRoundUp(_ v: UInt64, _ a: UInt64) -> UInt64 { (v + a - 1) / a }
