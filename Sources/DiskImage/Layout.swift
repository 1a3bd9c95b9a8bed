import Basics
import FSTree

/// The plain description of a disk image: table, partitions, raw blobs. Board files and
/// genimage configs are both mapped onto this; `DiskLayout.resolve()` validates it and
/// computes every offset, and `DiskImageBuilder.build` writes it. All numbers are bytes.
public struct DiskLayout: Sendable {
    public enum TableType: String, Sendable, CaseIterable {
        case gpt, mbr, hybrid, none
    }

    /// How an MBR table with more than four partitions is arranged.
    public enum ExtendedPartition: Sendable, Hashable {
        /// No extended partition: more than four MBR partitions is an error.
        case none
        /// genimage's rule: if there are more than four, slot 4 becomes the extended one.
        case automatic
        /// The extended partition takes this 1-based primary slot (1...4).
        case slot(Int)
    }

    /// Total image size; nil = computed from the partitions (GPT images end on 4 KiB).
    public var size: UInt64?
    public var table: TableType
    /// Default alignment of in-table partitions (offset and size); a multiple of 512.
    public var alignment: UInt64
    /// GPT disk GUID (gpt, hybrid). nil = derived from the layout (never random: reproducible).
    public var diskGUID: String?
    /// MBR disk signature at byte 440 (mbr, hybrid).
    public var mbrSignature: UInt32
    /// Byte offset of the GPT entry array (header stays at LBA 1).
    public var gptEntriesOffset: UInt64
    /// First usable LBA written into the GPT header. nil = automatic: just after the entry
    /// array, or after raw blobs placed before the first partition.
    public var gptFirstUsableLBA: UInt64?
    /// Leave out the backup GPT (header + array at the end).
    public var gptNoBackup: Bool
    public var extendedPartition: ExtendedPartition
    public var partitions: [Partition]
    /// Data at fixed offsets that is not in the partition table (SPL, U-Boot, MBR boot code).
    public var rawWrites: [RawWrite]

    public init(
        size: UInt64? = nil, table: TableType = .gpt, alignment: UInt64 = 1 << 20,
        diskGUID: String? = nil, mbrSignature: UInt32 = 0, gptEntriesOffset: UInt64 = 1024,
        gptFirstUsableLBA: UInt64? = nil, gptNoBackup: Bool = false,
        extendedPartition: ExtendedPartition = .none,
        partitions: [Partition] = [], rawWrites: [RawWrite] = []
    ) {
        self.size = size
        self.table = table
        self.alignment = alignment
        self.diskGUID = diskGUID
        self.mbrSignature = mbrSignature
        self.gptEntriesOffset = gptEntriesOffset
        self.gptFirstUsableLBA = gptFirstUsableLBA
        self.gptNoBackup = gptNoBackup
        self.extendedPartition = extendedPartition
        self.partitions = partitions
        self.rawWrites = rawWrites
    }
}

/// One partition-table entry.
public struct Partition: Sendable {
    public enum Size: Sendable, Hashable {
        /// Exactly this many bytes.
        case bytes(UInt64)
        /// The content's size rounded up to the alignment (file content only).
        case content
        /// Everything up to the end of the disk (or to the GPT backup); needs a disk size.
        case fill
    }

    public var name: String
    /// Byte offset; nil = right after the previous partition, aligned.
    public var offset: UInt64?
    public var size: Size
    /// nil = the disk's alignment.
    public var alignment: UInt64?
    public var type: PartitionType
    /// For hybrid tables: the MBR type of the copy in the MBR (nil = not in the MBR).
    public var hybridMBRType: PartitionType?
    /// GPT unique partition GUID; nil = derived from disk GUID + name (reproducible).
    public var uuid: String?
    /// MBR active flag (0x80) on MBR tables; on GPT the legacy-BIOS-bootable bit (2), as genimage does.
    public var bootable: Bool
    public var legacyBIOSBootable: Bool
    public var readOnly: Bool
    public var hidden: Bool
    public var noAutomount: Bool
    /// Extra GPT attribute bits (OR-ed in), e.g. bit 0 "required".
    public var gptAttributeBits: UInt64
    /// MBR only: stays primary even after the extended partition (genimage `forced-primary`).
    public var forcedPrimary: Bool
    public var content: PartitionContent

    public init(
        name: String, offset: UInt64? = nil, size: Size, alignment: UInt64? = nil,
        type: PartitionType = .linux, hybridMBRType: PartitionType? = nil, uuid: String? = nil,
        bootable: Bool = false, legacyBIOSBootable: Bool = false, readOnly: Bool = false,
        hidden: Bool = false, noAutomount: Bool = false, gptAttributeBits: UInt64 = 0,
        forcedPrimary: Bool = false, content: PartitionContent = .empty
    ) {
        self.name = name
        self.offset = offset
        self.size = size
        self.alignment = alignment
        self.type = type
        self.hybridMBRType = hybridMBRType
        self.uuid = uuid
        self.bootable = bootable
        self.legacyBIOSBootable = legacyBIOSBootable
        self.readOnly = readOnly
        self.hidden = hidden
        self.noAutomount = noAutomount
        self.gptAttributeBits = gptAttributeBits
        self.forcedPrimary = forcedPrimary
        self.content = content
    }
}

/// What goes into a partition.
public enum PartitionContent: Sendable {
    /// Nothing is written: the range stays a hole (reads as zeros).
    case empty
    /// A file's bytes (an artifact of a stage, a prebuilt image); `skip` bytes of the
    /// file are skipped first (genimage `imageoffset`). Zero runs and holes stay holes.
    case file(path: String, skip: UInt64 = 0)
    /// A filesystem created at build time with the partition's size.
    case filesystem(FilesystemSpec)
}

/// A blob written at a fixed byte offset, outside the partition table.
public struct RawWrite: Sendable {
    public enum Source: Sendable {
        case file(String)
        case bytes([UInt8])
    }
    public var name: String
    public var offset: UInt64
    public var source: Source
    /// Byte ranges inside the blob (relative to its start) that tables or partitions may
    /// overlap; the blob's bytes there are not written.
    public var holes: [Range<UInt64>]

    public init(name: String, offset: UInt64, source: Source, holes: [Range<UInt64>] = []) {
        self.name = name
        self.offset = offset
        self.source = source
        self.holes = holes
    }
}

/// A filesystem to create inside a partition.
public struct FilesystemSpec: Sendable {
    public enum Kind: String, Sendable, CaseIterable { case vfat, ext2, ext3, ext4 }
    public enum FATSize: Int, Sendable { case fat12 = 12, fat16 = 16, fat32 = 32 }

    /// Where the files come from.
    public enum Source: Sendable {
        case empty
        case tree(FSTree)
        case directory(String)
        /// (host source path, destination path in the filesystem) pairs, like `src:dst`
        /// lists; a source directory is copied recursively.
        case files([(source: String, destination: String)])
    }

    public var kind: Kind
    public var source: Source
    public var label: String?
    /// ext: filesystem UUID; vfat: volume id as 8 hex digits (e.g. "0B007001").
    public var uuid: String?
    /// vfat: FAT12/16/32; nil = chosen from the size.
    public var fatSize: FATSize?
    /// ext: `-O` feature list (e.g. "^metadata_csum,64bit").
    public var features: String?
    /// Extra arguments passed to the creating tool (mke2fs).
    public var extraArgs: [String]
    /// nil = the partition size.
    public var size: UInt64?
    /// Timestamps written into the filesystem; nil = SOURCE_DATE_EPOCH or 0.
    public var timestamp: Int64?
    /// Owner of entries read from a `.directory` source: 0:0 (default) or the host's.
    public var ownership: FSTree.HostImportOptions.Ownership = .root

    public init(
        kind: Kind, source: Source = .empty, label: String? = nil, uuid: String? = nil,
        fatSize: FATSize? = nil, features: String? = nil, extraArgs: [String] = [],
        size: UInt64? = nil, timestamp: Int64? = nil
    ) {
        self.kind = kind
        self.source = source
        self.label = label
        self.uuid = uuid
        self.fatSize = fatSize
        self.features = features
        self.extraArgs = extraArgs
        self.size = size
        self.timestamp = timestamp
    }
}
