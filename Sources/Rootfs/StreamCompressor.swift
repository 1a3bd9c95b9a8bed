import Basics
import CLZ4
import CLzma
import CZlib
import CZstd

/// Whole-stream compressors for initramfs images, in the framings the kernel's boot-time
/// decompressors accept: gzip (no name, mtime 0), xz with CRC32 (the kernel's xz decoder
/// has no CRC64), zstd frames, and LZ4 *legacy* frames (the only LZ4 framing
/// `decompress_unlz4` reads). Output goes to `sink` in order.
public enum InitramfsCompression: String, Sendable, Hashable, CaseIterable {
    case none, gzip, xz, zstd, lz4

    /// Default levels: what distributions use for initramfs (good ratio, bounded time).
    public var defaultLevel: Int {
        switch self {
        case .none: 0
        case .gzip: 9
        case .xz: 6
        case .zstd: 15
        case .lz4: 9
        }
    }

    /// `threads` only changes speed: xz and zstd output is the same for any thread count
    /// (xz always uses fixed-size blocks; zstd always runs its multi-threaded mode).
    func makeCompressor(level: Int?, threads: Int, sink: @escaping ([UInt8]) throws -> Void) throws -> any StreamCompressor {
        let lvl = level ?? defaultLevel
        switch self {
        case .none: return PassThrough(sink: sink)
        case .gzip: return try GzipCompressor(level: lvl, sink: sink)
        case .xz: return try XzCompressor(preset: lvl, threads: threads, sink: sink)
        case .zstd: return try ZstdCompressor(level: lvl, workers: threads, sink: sink)
        case .lz4: return LZ4LegacyCompressor(level: lvl, sink: sink)
        }
    }
}

protocol StreamCompressor: AnyObject {
    func write(_ data: UnsafeRawBufferPointer) throws
    func finish() throws
}

struct CompressionError: UserError {
    var message: String
    var description: String { "initramfs compression: " + message }
}

final class PassThrough: StreamCompressor {
    let sink: ([UInt8]) throws -> Void
    init(sink: @escaping ([UInt8]) throws -> Void) { self.sink = sink }
    func write(_ data: UnsafeRawBufferPointer) throws { try sink(Array(data)) }
    func finish() throws {}
}

final class GzipCompressor: StreamCompressor {
    private var strm = z_stream()
    private let sink: ([UInt8]) throws -> Void
    private var out = [UInt8](repeating: 0, count: 1 << 18)

    init(level: Int, sink: @escaping ([UInt8]) throws -> Void) throws {
        self.sink = sink
        guard (1...9).contains(level) else { throw CompressionError(message: "gzip level \(level) is not 1..9") }
        // windowBits 15+16: gzip wrapper with a zeroed header (no name, mtime 0) -> reproducible.
        let r = deflateInit2_(&strm, Int32(level), Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard r == Z_OK else { throw CompressionError(message: "deflateInit2 failed (\(r))") }
    }

    deinit { deflateEnd(&strm) }

    private func run(_ flush: Int32) throws {
        repeat {
            let produced: Int = try out.withUnsafeMutableBytes { o in
                strm.next_out = o.baseAddress?.assumingMemoryBound(to: Bytef.self)
                strm.avail_out = uInt(o.count)
                let r = deflate(&strm, flush)
                guard r == Z_OK || r == Z_STREAM_END || r == Z_BUF_ERROR else { throw CompressionError(message: "deflate failed (\(r))") }
                return o.count - Int(strm.avail_out)
            }
            if produced > 0 { try sink(Array(out[0..<produced])) }
            if flush == Z_FINISH && strm.avail_out != 0 { break }
        } while strm.avail_in > 0 || strm.avail_out == 0
    }

    func write(_ data: UnsafeRawBufferPointer) throws {
        guard let base = data.baseAddress, data.count > 0 else { return }
        strm.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
        strm.avail_in = uInt(data.count)
        try run(Z_NO_FLUSH)
    }

    func finish() throws {
        strm.next_in = nil
        strm.avail_in = 0
        try run(Z_FINISH)
    }
}

final class XzCompressor: StreamCompressor {
    private var strm = lzma_stream()
    private let sink: ([UInt8]) throws -> Void
    private var out = [UInt8](repeating: 0, count: 1 << 18)

    init(preset: Int, threads: Int, sink: @escaping ([UInt8]) throws -> Void) throws {
        self.sink = sink
        guard (0...9).contains(preset) else { throw CompressionError(message: "xz preset \(preset) is not 0..9") }
        var mt = lzma_mt()
        mt.threads = UInt32(max(1, threads))
        mt.block_size = 0  // liblzma default for the preset (3 x dictionary): independent of threads
        mt.preset = UInt32(preset)
        mt.check = LZMA_CHECK_CRC32
        let r = lzma_stream_encoder_mt(&strm, &mt)
        guard r == LZMA_OK else { throw CompressionError(message: "lzma_stream_encoder_mt failed (\(r.rawValue))") }
    }

    deinit { lzma_end(&strm) }

    private func run(_ action: lzma_action) throws {
        while true {
            var ret = LZMA_OK
            let produced: Int = out.withUnsafeMutableBytes { o in
                strm.next_out = o.baseAddress?.assumingMemoryBound(to: UInt8.self)
                strm.avail_out = o.count
                ret = lzma_code(&strm, action)
                return o.count - strm.avail_out
            }
            if produced > 0 { try sink(Array(out[0..<produced])) }
            if ret == LZMA_STREAM_END { return }
            guard ret == LZMA_OK else { throw CompressionError(message: "lzma_code failed (\(ret.rawValue))") }
            if action == LZMA_RUN && strm.avail_in == 0 { return }
        }
    }

    func write(_ data: UnsafeRawBufferPointer) throws {
        guard let base = data.baseAddress, data.count > 0 else { return }
        strm.next_in = base.assumingMemoryBound(to: UInt8.self)
        strm.avail_in = data.count
        try run(LZMA_RUN)
    }

    func finish() throws {
        strm.next_in = nil
        strm.avail_in = 0
        try run(LZMA_FINISH)
    }
}

final class ZstdCompressor: StreamCompressor {
    private let cctx: OpaquePointer
    private let sink: ([UInt8]) throws -> Void
    private var out = [UInt8](repeating: 0, count: Int(ZSTD_CStreamOutSize()))

    init(level: Int, workers: Int, sink: @escaping ([UInt8]) throws -> Void) throws {
        self.sink = sink
        guard (1...22).contains(level) else { throw CompressionError(message: "zstd level \(level) is not 1..22") }
        guard let c = ZSTD_createCCtx() else { throw CompressionError(message: "out of memory") }
        cctx = c
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        // Multi-threaded mode (>= 1 worker) gives the same frame for any worker count.
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, Int32(max(1, workers)))
    }

    deinit { ZSTD_freeCCtx(cctx) }

    private func run(_ data: UnsafeRawBufferPointer, _ mode: ZSTD_EndDirective) throws {
        var input = ZSTD_inBuffer(src: data.baseAddress, size: data.count, pos: 0)
        while true {
            var remaining = 0
            let produced: Int = try out.withUnsafeMutableBytes { o in
                var output = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                remaining = ZSTD_compressStream2(cctx, &output, &input, mode)
                if ZSTD_isError(remaining) != 0 {
                    throw CompressionError(message: String(cString: ZSTD_getErrorName(remaining)))
                }
                return output.pos
            }
            if produced > 0 { try sink(Array(out[0..<produced])) }
            if mode == ZSTD_e_end ? remaining == 0 : input.pos == input.size { return }
        }
    }

    func write(_ data: UnsafeRawBufferPointer) throws {
        if data.count > 0 { try run(data, ZSTD_e_continue) }
    }

    func finish() throws { try run(UnsafeRawBufferPointer(start: nil, count: 0), ZSTD_e_end) }
}

/// LZ4 legacy frames: magic 0x184C2102, then blocks of up to 8 MiB input, each as a
/// little-endian compressed length and the LZ4 block.
final class LZ4LegacyCompressor: StreamCompressor {
    static let chunk = 8 << 20
    private let level: Int32
    private let sink: ([UInt8]) throws -> Void
    private var pending: [UInt8] = []
    private var started = false

    init(level: Int, sink: @escaping ([UInt8]) throws -> Void) {
        self.level = Int32(level)
        self.sink = sink
        pending.reserveCapacity(Self.chunk)
    }

    private func emit(_ block: ArraySlice<UInt8>) throws {
        if !started {
            try sink([0x02, 0x21, 0x4C, 0x18])
            started = true
        }
        if block.isEmpty { return }
        let cap = Int(LZ4_compressBound(Int32(block.count)))
        var out = [UInt8](repeating: 0, count: cap + 4)
        let n = block.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst -> Int32 in
                guard let d = dst.baseAddress else { return 0 }
                return LZ4_compress_HC(src.baseAddress?.assumingMemoryBound(to: CChar.self), (d + 4).assumingMemoryBound(to: CChar.self),
                                       Int32(block.count), Int32(cap), level)
            }
        }
        guard n > 0 else { throw CompressionError(message: "LZ4_compress_HC failed") }
        let len = UInt32(n)
        out[0] = UInt8(len & 0xFF); out[1] = UInt8(len >> 8 & 0xFF); out[2] = UInt8(len >> 16 & 0xFF); out[3] = UInt8(len >> 24)
        try sink(Array(out[0..<(4 + Int(n))]))
    }

    func write(_ data: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < data.count {
            let take = min(Self.chunk - pending.count, data.count - off)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[off..<(off + take)]))
            off += take
            if pending.count == Self.chunk {
                try emit(pending[...])
                pending.removeAll(keepingCapacity: true)
            }
        }
    }

    func finish() throws {
        try emit(pending[...])
        pending.removeAll()
    }
}
