import Basics
import Codecs
import Foundation

/// Settings of one SquashFS image. Defaults follow mksquashfs 4.5.1 except that file tails
/// are packed into fragments (smaller images; every kernel with SquashFS 4.0 reads them).
public struct SquashFSOptions: Sendable {
    public var compression: Compression
    /// Data block size: a power of two from 4 KiB to 1 MiB.
    public var blockSize: Int
    /// Pack files smaller than a block into shared fragment blocks.
    public var fragments: Bool
    /// Also pack the last partial block of larger files into fragments (needs `fragments`).
    public var tailPacking: Bool
    /// Store identical files once (both inodes point at the same blocks / fragment).
    public var deduplicate: Bool
    /// Store all-zero blocks as holes (size word 0).
    public var sparse: Bool
    /// Write the NFS export table (inode number -> inode).
    public var exportTable: Bool
    /// Superblock creation time. nil = the newest mtime in the tree (deterministic).
    public var mkfsTime: UInt32?
    /// Compression threads (0 = one per online CPU).
    public var threads: Int

    public init(
        compression: Compression = .defaults(.gzip), blockSize: Int = 128 * 1024,
        fragments: Bool = true, tailPacking: Bool = true, deduplicate: Bool = true,
        sparse: Bool = true, exportTable: Bool = true, mkfsTime: UInt32? = nil, threads: Int = 0
    ) {
        self.compression = compression
        self.blockSize = blockSize
        self.fragments = fragments
        self.tailPacking = tailPacking
        self.deduplicate = deduplicate
        self.sparse = sparse
        self.exportTable = exportTable
        self.mkfsTime = mkfsTime
        self.threads = threads
    }

    public struct InvalidOption: UserError {
        public var message: String
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String { message }
    }

    public func validate() throws {
        guard blockSize >= 4096, blockSize <= 1 << 20, blockSize & (blockSize - 1) == 0 else {
            throw InvalidOption(message: "SquashFS block size \(blockSize) is not a power of two between 4096 (4K) and 1048576 (1M)")
        }
        try compression.validate()
        if case .xz(_, _, let dict?, _) = compression {
            // The kernel and squashfs-tools accept 2^n or 3*2^n, at most the block size.
            let isPow2 = dict & (dict - 1) == 0
            let isThreePow2 = dict % 3 == 0 && (dict / 3) & (dict / 3 - 1) == 0
            guard dict >= 8192, dict <= blockSize, isPow2 || isThreePow2 else {
                throw InvalidOption(message: "xz dictionary size \(dict) must be 2^n or 3*2^n between 8192 and the block size \(blockSize)")
            }
        }
        guard threads >= 0 else { throw InvalidOption(message: "thread count \(threads) is negative") }
    }

    var effectiveThreads: Int {
        threads > 0 ? threads : max(1, ProcessInfo.processInfo.activeProcessorCount)
    }
}

/// What was written.
public struct SquashFSStats: Sendable, CustomStringConvertible {
    public var imageBytes: UInt64 = 0
    public var inodes = 0
    public var regularFiles = 0
    public var directories = 0
    public var inputBytes: UInt64 = 0
    public var dataBlocks = 0
    public var sparseBlocks = 0
    /// Data and fragment blocks stored raw because compression did not shrink them.
    public var uncompressedBlocks = 0
    public var fragmentBlocks = 0
    public var duplicateFiles = 0
    public var ids = 0
    public var xattrSets = 0
    /// Xattrs SquashFS cannot store (namespaces other than user./trusted./security.),
    /// as "path: name". They are left out of the image.
    public var droppedXAttrs: [String] = []
    /// Wall time per phase (plan, data, metadata, commit) for `--verbose`.
    public var phases = PhaseTimes()

    public var description: String {
        "\(inodes) inodes (\(regularFiles) files, \(directories) directories), "
            + "\(ByteCount.format(inputBytes)) of file data -> \(ByteCount.format(imageBytes)) image; "
            + "\(dataBlocks) blocks, \(fragmentBlocks) fragment blocks (\(uncompressedBlocks) of all stored raw), \(sparseBlocks) sparse blocks, "
            + "\(duplicateFiles) duplicate files"
    }
}

public struct SquashFSError: UserError {
    public var message: String
    public var exitCode: Int32
    init(_ message: String, exitCode: Int32 = ExitStatus.failure) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}
