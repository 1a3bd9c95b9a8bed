import Basics
import Codecs

enum Format {
    static let magic: UInt32 = 0x7371_7368
    static let metadataSize = 8192
    static let invalid: UInt64 = .max
    static let noFragment: UInt32 = 0xFFFF_FFFF
    static let noXAttr: UInt32 = 0xFFFF_FFFF
    static let uncompressedBlock: UInt32 = 1 << 24
    static let uncompressedMetadata: UInt16 = 0x8000

    // Superblock flags.
    static let flagNoFragments: UInt16 = 0x0010
    static let flagAlwaysFragments: UInt16 = 0x0020
    static let flagDuplicates: UInt16 = 0x0040
    static let flagExportable: UInt16 = 0x0080
    static let flagCompressorOptions: UInt16 = 0x0400

    static func compressorID(_ k: Compression.Kind) -> UInt16 {
        switch k {
        case .gzip: 1
        case .xz: 4
        case .lz4: 5
        case .zstd: 6
        }
    }
}

/// A metadata stream (inode table, directory table, lookup tables): records appended
/// back to back, cut into 8 KiB pieces that are compressed one by one, each behind a
/// u16 length header. Keeps the compressed stream in memory: metadata is small
/// (tens of bytes per entry) compared with file data.
final class MetadataWriter {
    private let compressor: BlockCompressor
    private(set) var output: [UInt8] = []
    private var pending: [UInt8] = []
    private var scratch: [UInt8]
    /// Uncompressed bytes appended so far.
    private(set) var streamPosition = 0

    init(compressor: BlockCompressor) {
        self.compressor = compressor
        pending.reserveCapacity(Format.metadataSize)
        scratch = [UInt8](repeating: 0, count: Format.metadataSize)
    }

    /// Where the next appended byte will be: (start of its metadata block relative to the
    /// table start, offset inside the uncompressed block).
    var position: (block: UInt32, offset: UInt16) {
        (UInt32(output.count), UInt16(pending.count))
    }

    /// 48-bit inode/xattr reference: block start << 16 | offset.
    var reference: UInt64 {
        UInt64(output.count) << 16 | UInt64(pending.count)
    }

    func append(_ bytes: [UInt8]) throws {
        var i = 0
        while i < bytes.count {
            let n = min(bytes.count - i, Format.metadataSize - pending.count)
            pending.append(contentsOf: bytes[i..<(i + n)])
            i += n
            streamPosition += n
            if pending.count == Format.metadataSize { try flushBlock() }
        }
    }

    private func flushBlock() throws {
        guard !pending.isEmpty else { return }
        let n = try pending.withUnsafeBytes { src in
            try scratch.withUnsafeMutableBytes { try compressor.compress(src, into: $0) }
        }
        if let n {
            output.le16(UInt16(n))
            output.append(contentsOf: scratch[0..<n])
        } else {
            output.le16(UInt16(pending.count) | Format.uncompressedMetadata)
            output.append(contentsOf: pending)
        }
        pending.removeAll(keepingCapacity: true)
    }

    /// Flush the last partial block; returns the compressed stream.
    func finish() throws -> [UInt8] {
        try flushBlock()
        return output
    }
}
