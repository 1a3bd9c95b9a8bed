import Basics
import FSTree
import Foundation

/// What to build. Defaults are osbuild's: LZ4HC level 9 in 64 KiB physical clusters with ztailpacking.
public struct EROFSOptions: Sendable {
    public enum Compression: Sendable, Hashable, CustomStringConvertible {
        case none
        case lz4
        case lz4hc(level: Int)
        case lzma(level: Int)

        public var description: String {
            switch self {
            case .none: "none"
            case .lz4: "lz4"
            case .lz4hc(let l): "lz4hc,\(l)"
            case .lzma(let l): "lzma,\(l)"
            }
        }
    }

    public var compression: Compression
    /// Maximum physical cluster size in bytes: a multiple of 4096 up to 1 MiB. More than
    /// 4096 uses big pclusters (Linux 5.13+).
    public var pclusterSize: Int
    /// 16 bytes; nil derives a UUID from the image's metadata (reproducible).
    public var uuid: [UInt8]?
    /// Volume name, at most 16 bytes.
    public var label: String
    /// Superblock build time, also the timestamp of every compact inode. nil picks the most
    /// common mtime of the tree (so most inodes can be compact). Pass SOURCE_DATE_EPOCH here.
    public var buildTime: Timestamp?
    /// Store file/directory/symlink tails inline after the inode (FLAT_INLINE).
    public var inlineData: Bool
    /// Compressed files: store the last extent's compressed bytes inline after the index
    /// when it is smaller than a block (ztailpacking, Linux 5.17+).
    public var ztailpacking: Bool
    /// Use full 8-byte lcluster indexes (COMPRESSED_FULL) instead of compacted ones.
    public var fullIndexes: Bool = false
    /// Worker threads for compression (default: online CPUs).
    public var threads: Int
    /// How uncompressed file data is copied into the image: `.kernel` uses
    /// copy_file_range (falling back by itself where the kernel refuses); `.buffered`
    /// always reads and writes through user space (tests compare the two).
    public var fileCopy: FileCopy.Mode = .kernel

    public init(
        compression: Compression = .lz4hc(level: 9), pclusterSize: Int = 65536, uuid: [UInt8]? = nil,
        label: String = "", buildTime: Timestamp? = nil, inlineData: Bool = true, ztailpacking: Bool = true,
        threads: Int = ProcessInfo.processInfo.activeProcessorCount
    ) {
        self.compression = compression
        self.pclusterSize = pclusterSize
        self.uuid = uuid
        self.label = label
        self.buildTime = buildTime
        self.inlineData = inlineData
        self.ztailpacking = ztailpacking
        self.threads = threads
    }

    /// Parses "01234567-89ab-cdef-0123-456789abcdef".
    public static func parseUUID(_ s: String) -> [UInt8]? {
        let hex = s.replacingOccurrences(of: "-", with: "")
        guard hex.count == 32, let b = Hex.decode(hex) else { return nil }
        return b
    }
}

/// Numbers about a written image.
public struct EROFSStats: Sendable {
    public var imageBytes: UInt64
    public var blocks: UInt32
    public var inodes: Int
    public var compactInodes: Int
    public var extendedInodes: Int
    public var regularFiles: Int
    public var compressedFiles: Int
    public var inputBytes: UInt64
    public var sharedXAttrs: Int
    /// Wall time per phase (plan, data, metadata, commit) for `--verbose`.
    public var phases = PhaseTimes()
}

/// Errors a user can act on; each names the path and the numbers involved.
public struct EROFSError: UserError {
    public enum Reason: Sendable {
        case unsupportedXAttr(name: String)
        case xattrTooLarge(name: String, bytes: Int)
        case emptySymlink
        case symlinkTooLong(bytes: Int)
        case labelTooLong(bytes: Int)
        case badUUID
        case badClusterSize(Int)
        case badLevel(Int, range: ClosedRange<Int>)
        case imageTooLarge(blocks: UInt64)
        case metadataTooLarge(bytes: Int)
    }
    public var path: String
    public var reason: Reason

    public var exitCode: Int32 {
        switch reason {
        case .labelTooLong, .badUUID, .badClusterSize, .badLevel: ExitStatus.usage
        default: ExitStatus.failure
        }
    }

    public var description: String {
        switch reason {
        case .unsupportedXAttr(let n):
            "\(path): extended attribute '\(n)' cannot be stored in EROFS (only user., trusted., security. and system.posix_acl_access/default)"
        case .xattrTooLarge(let n, let b):
            "\(path): extended attribute '\(n)' is too large for EROFS (\(b) bytes; name suffix max 255, value max 65535)"
        case .emptySymlink: "\(path): symlink has an empty target"
        case .symlinkTooLong(let b): "\(path): symlink target is \(b) bytes; the maximum is 4095"
        case .labelTooLong(let b): "volume label is \(b) bytes; EROFS allows at most 16"
        case .badUUID: "UUID must be 16 bytes (32 hex digits, dashes optional)"
        case .badClusterSize(let s): "cluster size \(s) must be a multiple of 4096 between 4096 and 1048576"
        case .badLevel(let l, let r): "compression level \(l) is out of range \(r.lowerBound)...\(r.upperBound)"
        case .imageTooLarge(let b): "\(path): image would need \(b) blocks; EROFS addresses at most 2^32 blocks of 4 KiB"
        case .metadataTooLarge(let b): "\(path): shared xattr table is \(b) bytes; the root inode must stay within the first 2 MiB of metadata"
        }
    }
}
