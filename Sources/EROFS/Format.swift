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

@inline(__always) func roundUp(_ v: Int, _ a: Int) -> Int { (v + a - 1) / a * a }
@inline(__always) func divRoundUp(_ v: UInt64, _ a: UInt64) -> UInt64 { (v + a - 1) / a }
