import Basics
import CLZ4
import CLzma
import CZlib
import CZstd
import Foundation

/// Branch/call/jump converters liblzma can put in front of LZMA2 to make machine code
/// compress better. Raw values follow SquashFS's xz option bit numbering.
public enum XZFilter: String, CaseIterable, Sendable, Hashable {
    case x86, powerpc, ia64, arm, armthumb, sparc, arm64

    /// Bit in the SquashFS xz compression-options `flags` word.
    public var squashfsFlagBit: Int {
        switch self {
        case .x86: 0
        case .powerpc: 1
        case .ia64: 2
        case .arm: 3
        case .armthumb: 4
        case .sparc: 5
        case .arm64: 6
        }
    }

    var lzmaID: lzma_vli {
        switch self {
        case .x86: 0x04
        case .powerpc: 0x05
        case .ia64: 0x06
        case .arm: 0x07
        case .armthumb: 0x08
        case .sparc: 0x09
        case .arm64: 0x0A
        }
    }
}

/// A compression algorithm with its settings. The output formats are the ones the Linux
/// kernel's SquashFS decompressors read: zlib stream (gzip), .xz container with CRC32
/// (xz), raw LZ4 block (lz4), zstd frame (zstd).
public enum Compression: Sendable, Hashable, CustomStringConvertible {
    /// zlib/DEFLATE, level 1...9.
    case gzip(level: Int)
    /// LZMA2 in an .xz container, preset 0...9. Each listed BCJ filter is tried in turn next
    /// to plain LZMA2 and the smallest result is kept. `dictSize` nil = the block size.
    /// `depth`, when given, replaces the preset's match-finder depth (0 in the presets:
    /// liblzma then picks 16 + nice_len / 2); nil = exactly the preset.
    case xz(preset: Int, bcj: [XZFilter], dictSize: Int?, depth: Int? = nil)
    /// LZ4 block; `hc` selects LZ4HC at `level` 1...12 (level is ignored without hc).
    case lz4(hc: Bool, level: Int)
    /// Zstandard, level 1...22. `targetLength`, when given, replaces the level's target
    /// length (how long a match must be before the optimal parser stops looking for a
    /// better one); nil = exactly the library's level.
    case zstd(level: Int, targetLength: Int? = nil)

    public enum Kind: String, Sendable, CaseIterable {
        case gzip, xz, lz4, zstd
    }

    public var kind: Kind {
        switch self {
        case .gzip: .gzip
        case .xz: .xz
        case .lz4: .lz4
        case .zstd: .zstd
        }
    }

    public struct InvalidSetting: UserError {
        public var message: String
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String { message }
    }

    /// Defaults: gzip 9 and lz4 fast as mksquashfs 4.5.1. xz and zstd search less hard than
    /// mksquashfs's xz preset 6 / zstd level 15, which on independent blocks of at most
    /// 1 MiB buys little: xz preset 5 (nice_len 32 instead of 64) with match-finder depth 8
    /// (the preset lets liblzma pick 32), and zstd level 14 with target length 16 (level 15
    /// is searchLog 6 / targetLength 256, level 14 is 4 / 32). On the rootfs corpus with
    /// 128 KiB blocks that is about 15 % (xz) and 18 % (zstd) less CPU than mksquashfs's
    /// levels for 0.6 % and 0.7 % larger data (docs/benchmarks.md).
    /// `withLevel(n)` always gives exactly the library's level n, so `withLevel(6)` /
    /// `withLevel(15)` reproduces mksquashfs.
    public static func defaults(_ kind: Kind) -> Compression {
        switch kind {
        case .gzip: .gzip(level: 9)
        case .xz: .xz(preset: 5, bcj: [], dictSize: nil, depth: 8)
        case .lz4: .lz4(hc: false, level: 12)
        case .zstd: .zstd(level: 14, targetLength: 16)
        }
    }

    /// Parses a compressor name ("gzip", "xz", "lz4", "lz4hc", "zstd"), with an optional level.
    public static func parse(_ name: String, level: Int? = nil) throws -> Compression {
        var c: Compression
        switch name.lowercased() {
        case "gzip", "zlib", "deflate": c = defaults(.gzip)
        case "xz": c = defaults(.xz)
        case "lz4": c = defaults(.lz4)
        case "lz4hc": c = .lz4(hc: true, level: 12)
        case "zstd": c = defaults(.zstd)
        default:
            throw InvalidSetting(message: "unknown compressor '\(name)' (choose gzip, xz, lz4, lz4hc or zstd)")
        }
        if let level { c = c.withLevel(level) }
        try c.validate()
        return c
    }

    /// The same setting with these BCJ filters (xz only; other compressors unchanged).
    public func withXZFilters(_ bcj: [XZFilter]) -> Compression {
        guard case .xz(let preset, _, let dict, let depth) = self else { return self }
        return .xz(preset: preset, bcj: bcj, dictSize: dict, depth: depth)
    }

    public func withLevel(_ level: Int) -> Compression {
        switch self {
        case .gzip: .gzip(level: level)
        case .xz(_, let bcj, let d, _): .xz(preset: level, bcj: bcj, dictSize: d, depth: nil)
        case .lz4(let hc, _): .lz4(hc: hc, level: level)
        case .zstd: .zstd(level: level, targetLength: nil)
        }
    }

    public func validate() throws {
        func check(_ v: Int, _ r: ClosedRange<Int>, _ what: String) throws {
            guard r.contains(v) else {
                throw InvalidSetting(message: "\(what) level \(v) is out of range \(r.lowerBound)...\(r.upperBound)")
            }
        }
        switch self {
        case .gzip(let l): try check(l, 1...9, "gzip")
        case .xz(let p, let bcj, let d, let depth):
            try check(p, 0...9, "xz preset")
            if let depth, !(1...1000).contains(depth) { throw InvalidSetting(message: "xz match-finder depth \(depth) is out of range 1...1000") }
            if Set(bcj).count != bcj.count { throw InvalidSetting(message: "xz BCJ filter listed twice: \(bcj.map(\.rawValue))") }
            if let d, d < 4096 { throw InvalidSetting(message: "xz dictionary size \(d) is below 4096 bytes") }
        case .lz4(let hc, let l): if hc { try check(l, 1...12, "lz4hc") }
        case .zstd(let l, let t):
            try check(l, 1...Int(ZSTD_maxCLevel()), "zstd")
            if let t, !(1...131072).contains(t) { throw InvalidSetting(message: "zstd target length \(t) is out of range 1...131072") }
        }
    }

    public var description: String {
        switch self {
        case .gzip(let l): "gzip (level \(l))"
        case .xz(let p, let bcj, let d, let depth):
            "xz (preset \(p)" + (depth.map { ", depth \($0)" } ?? "") + (bcj.isEmpty ? "" : ", bcj " + bcj.map(\.rawValue).joined(separator: ",")) + (d.map { ", dict \($0)" } ?? "") + ")"
        case .lz4(let hc, let l): hc ? "lz4hc (level \(l))" : "lz4"
        case .zstd(let l, let t): "zstd (level \(l)" + (t.map { ", target length \($0)" } ?? "") + ")"
        }
    }
}

/// Compresses independent blocks. Not thread-safe: create one per thread (each holds its
/// library state and scratch buffers, reused across calls so the hot path allocates nothing).
public final class BlockCompressor {
    public struct Failure: UserError {
        public var message: String
        public var description: String { message }
    }

    public let compression: Compression
    public let maxBlockSize: Int
    private var zstream: UnsafeMutablePointer<z_stream>?
    private var lzmaOptions: UnsafeMutablePointer<lzma_options_lzma>?
    private var xzScratch: UnsafeMutableRawBufferPointer?
    /// One encoder per filter chain (plain LZMA2 first, then each BCJ variant), kept
    /// across blocks so liblzma reuses its match-finder memory instead of mapping and
    /// faulting in fresh pages for every block.
    private var xzStreams: [UnsafeMutablePointer<lzma_stream>] = []
    private var zstdCtx: OpaquePointer?
    private var lz4State: UnsafeMutableRawPointer?
    /// Scratch state for the incompressibility probe of the slow codecs.
    private var probeState: UnsafeMutableRawPointer?
    private var probeOut: UnsafeMutableRawPointer?

    /// `maxBlockSize` bounds the input of `compress`; for xz without an explicit dictionary
    /// size it is also the dictionary size.
    public init(_ compression: Compression, maxBlockSize: Int) throws {
        try compression.validate()
        self.compression = compression
        self.maxBlockSize = maxBlockSize
        switch compression {
        case .gzip(let level):
            let z = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            z.initialize(to: z_stream())
            let r = deflateInit2_(z, Int32(level), Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            guard r == Z_OK else {
                z.deallocate()
                throw Failure(message: "zlib deflateInit2 failed (\(r))")
            }
            zstream = z
        case .xz(let preset, let bcj, let dict, let depth):
            let o = UnsafeMutablePointer<lzma_options_lzma>.allocate(capacity: 1)
            o.initialize(to: lzma_options_lzma())
            if lzma_lzma_preset(o, UInt32(preset)) != 0 {
                o.deallocate()
                throw Failure(message: "liblzma does not know preset \(preset)")
            }
            o.pointee.dict_size = UInt32(max(4096, dict ?? maxBlockSize))
            if let depth { o.pointee.depth = UInt32(depth) }
            lzmaOptions = o
            if !bcj.isEmpty {
                xzScratch = .allocate(byteCount: maxBlockSize + 65536, alignment: 16)
            }
            for _ in 0...bcj.count {
                let st = UnsafeMutablePointer<lzma_stream>.allocate(capacity: 1)
                // LZMA_STREAM_INIT is all zeroes.
                UnsafeMutableRawPointer(st).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<lzma_stream>.size)
                xzStreams.append(st)
            }
        case .lz4(let hc, _):
            let size = hc ? Int(LZ4_sizeofStateHC()) : Int(LZ4_sizeofState())
            lz4State = .allocate(byteCount: size, alignment: 16)
        case .zstd(let level, let targetLength):
            guard let c = ZSTD_createCCtx() else { throw Failure(message: "ZSTD_createCCtx failed") }
            zstdCtx = c
            if let targetLength {
                // Sticky parameters for ZSTD_compress2; the level is applied first so the
                // override wins.
                for (p, v) in [(ZSTD_c_compressionLevel, level), (ZSTD_c_targetLength, targetLength)] {
                    let r = ZSTD_CCtx_setParameter(c, p, Int32(v))
                    if ZSTD_isError(r) != 0 {
                        throw Failure(message: "zstd parameter \(p.rawValue) = \(v) rejected: \(String(cString: ZSTD_getErrorName(r)))")
                    }
                }
            }
        }
        if usesProbe {
            probeState = .allocate(byteCount: Int(LZ4_sizeofState()), alignment: 16)
            probeOut = .allocate(byteCount: Int(LZ4_compressBound(Int32(maxBlockSize))), alignment: 16)
        }
    }

    /// xz and high zstd levels spend as long on an incompressible block (already compressed
    /// data: .gz, .xz, images) as on any other. A cheap probe recognises such blocks.
    private var usesProbe: Bool {
        switch compression {
        case .xz: true
        case .zstd(let level, _): level >= 10
        default: false
        }
    }

    /// True when `src` is certainly not worth compressing: its byte histogram is flat
    /// (order-0 entropy above 7.99 bits per byte, as for random data) and LZ4 finds no
    /// repeats worth 1 %. Data with either structure goes to the real compressor.
    private func probablyIncompressible(_ src: UnsafeRawBufferPointer) -> Bool {
        guard src.count >= 4096, let sp = src.baseAddress, let state = probeState, let out = probeOut else { return false }
        var counts = [UInt32](repeating: 0, count: 256)
        counts.withUnsafeMutableBufferPointer { c in
            let bytes = sp.assumingMemoryBound(to: UInt8.self)
            for i in 0..<src.count { c[Int(bytes[i])] &+= 1 }
        }
        let n = Double(src.count)
        var entropy = 0.0
        for c in counts where c > 0 {
            let p = Double(c) / n
            entropy -= p * log2(p)
        }
        if entropy < 7.99 { return false }
        let limit = src.count - src.count / 100
        let r = LZ4_compress_fast_extState(state, sp.assumingMemoryBound(to: CChar.self), out.assumingMemoryBound(to: CChar.self), Int32(src.count), Int32(limit), 1)
        return r == 0
    }

    deinit {
        if let z = zstream { deflateEnd(z); z.deallocate() }
        lzmaOptions?.deallocate()
        for st in xzStreams {
            lzma_end(st)
            st.deallocate()
        }
        xzScratch?.deallocate()
        if let c = zstdCtx { ZSTD_freeCCtx(c) }
        lz4State?.deallocate()
        probeState?.deallocate()
        probeOut?.deallocate()
    }

    /// Compress `src` into `dst`. Returns the compressed length, or nil when the result
    /// would not be smaller than the input (the caller then stores the block raw).
    /// `dst` needs at least `src.count` bytes.
    public func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard let sp = src.baseAddress, src.count > 1, let dp = dst.baseAddress else { return nil }
        // Output must be strictly smaller than the input to be worth storing compressed.
        let limit = min(dst.count, src.count - 1)
        if usesProbe && probablyIncompressible(src) { return nil }
        switch compression {
        case .gzip:
            guard let z = zstream else { return nil }
            deflateReset(z)
            z.pointee.next_in = UnsafeMutablePointer(mutating: sp.assumingMemoryBound(to: Bytef.self))
            z.pointee.avail_in = uInt(src.count)
            z.pointee.next_out = dp.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(limit)
            let r = deflate(z, Z_FINISH)
            if r == Z_STREAM_END { return Int(z.pointee.total_out) }
            if r == Z_OK || r == Z_BUF_ERROR { return nil }
            throw Failure(message: "zlib deflate failed (\(r))")
        case .xz(_, let bcj, _, _):
            guard let opts = lzmaOptions else { return nil }
            var best = try xzEncode(filter: nil, stream: xzStreams[0], opts: opts, sp, src.count, dp, limit)
            for (k, f) in bcj.enumerated() {
                guard let scratch = xzScratch, let sbase = scratch.baseAddress else { break }
                let cap = min(limit, scratch.count, best.map { $0 - 1 } ?? limit)
                if cap <= 0 { break }
                if let n = try xzEncode(filter: f, stream: xzStreams[k + 1], opts: opts, sp, src.count, sbase, cap) {
                    dp.copyMemory(from: sbase, byteCount: n)
                    best = n
                }
            }
            return best
        case .lz4(let hc, let level):
            let n: Int32
            if hc {
                n = LZ4_compress_HC_extStateHC(lz4State, sp.assumingMemoryBound(to: CChar.self), dp.assumingMemoryBound(to: CChar.self), Int32(src.count), Int32(limit), Int32(level))
            } else {
                n = LZ4_compress_fast_extState(lz4State, sp.assumingMemoryBound(to: CChar.self), dp.assumingMemoryBound(to: CChar.self), Int32(src.count), Int32(limit), 1)
            }
            return n > 0 ? Int(n) : nil
        case .zstd(let level, let targetLength):
            // A plain level goes through ZSTD_compressCCtx, the call squashfs-tools makes.
            let n = targetLength == nil
                ? ZSTD_compressCCtx(zstdCtx, dp, limit, sp, src.count, Int32(level))
                : ZSTD_compress2(zstdCtx, dp, limit, sp, src.count)
            if ZSTD_isError(n) != 0 {
                // zstd returns -(error code); 70 = ZSTD_error_dstSize_tooSmall (stable ABI value,
                // zstd_errors.h is not in the module map).
                if 0 &- n == 70 { return nil }
                throw Failure(message: "zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))")
            }
            return n
        }
    }

    private func xzEncode(
        filter: XZFilter?, stream: UnsafeMutablePointer<lzma_stream>, opts: UnsafeMutablePointer<lzma_options_lzma>,
        _ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutableRawPointer, _ cap: Int
    ) throws -> Int? {
        var chain: [lzma_filter] = []
        if let filter { chain.append(lzma_filter(id: filter.lzmaID, options: nil)) }
        chain.append(lzma_filter(id: lzmaFilterLZMA2, options: UnsafeMutableRawPointer(opts)))
        chain.append(lzma_filter(id: lzmaVLIUnknown, options: nil))
        let initResult = chain.withUnsafeMutableBufferPointer { f in
            lzma_stream_encoder(stream, f.baseAddress, LZMA_CHECK_CRC32)
        }
        guard initResult == LZMA_OK else {
            throw Failure(message: "liblzma encoder setup failed (code \(initResult.rawValue))" + (filter.map { " with BCJ filter \($0.rawValue)" } ?? ""))
        }
        stream.pointee.next_in = src.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_in = n
        stream.pointee.next_out = dst.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = cap
        while true {
            let r = lzma_code(stream, LZMA_FINISH)
            if r == LZMA_STREAM_END { return cap - stream.pointee.avail_out }
            if r == LZMA_OK {
                if stream.pointee.avail_out == 0 { return nil }
                continue
            }
            if r == LZMA_BUF_ERROR { return nil }
            throw Failure(message: "liblzma encoder failed (code \(r.rawValue))" + (filter.map { " with BCJ filter \($0.rawValue)" } ?? ""))
        }
    }
}

// Function-like macros in lzma.h that Swift cannot import.
private let lzmaFilterLZMA2: lzma_vli = 0x21
private let lzmaVLIUnknown: lzma_vli = .max

/// Decompression of single blocks, for read-back checks and tests.
public enum BlockDecompressor {
    public struct Failure: UserError {
        public var message: String
        public var description: String { message }
    }

    /// Decompress `src` (one block in the format `kind` produces) into `dst`; returns the
    /// decompressed length. Fails when the data is corrupt or `dst` is too small.
    public static func decompress(_ kind: Compression.Kind, _ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let sp = src.baseAddress, let dp = dst.baseAddress else { return 0 }
        switch kind {
        case .gzip:
            var destLen = uLongf(dst.count)
            let r = uncompress(dp.assumingMemoryBound(to: Bytef.self), &destLen, sp.assumingMemoryBound(to: Bytef.self), uLong(src.count))
            guard r == Z_OK else { throw Failure(message: "zlib inflate failed (\(r))") }
            return Int(destLen)
        case .xz:
            var memlimit: UInt64 = .max
            var inPos = 0
            var outPos = 0
            let r = lzma_stream_buffer_decode(&memlimit, 0, nil, sp.assumingMemoryBound(to: UInt8.self), &inPos, src.count, dp.assumingMemoryBound(to: UInt8.self), &outPos, dst.count)
            guard r == LZMA_OK else { throw Failure(message: "xz decode failed (code \(r.rawValue))") }
            return outPos
        case .lz4:
            let n = LZ4_decompress_safe(sp.assumingMemoryBound(to: CChar.self), dp.assumingMemoryBound(to: CChar.self), Int32(src.count), Int32(dst.count))
            guard n >= 0 else { throw Failure(message: "lz4 decode failed (\(n))") }
            return Int(n)
        case .zstd:
            let n = ZSTD_decompress(dp, dst.count, sp, src.count)
            guard ZSTD_isError(n) == 0 else { throw Failure(message: "zstd decode failed: \(String(cString: ZSTD_getErrorName(n)))") }
            return n
        }
    }

    /// Convenience for tests: decompress to a fresh array of at most `capacity` bytes.
    public static func decompress(_ kind: Compression.Kind, _ src: [UInt8], capacity: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: capacity)
        let n = try src.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try decompress(kind, s, into: $0) } }
        out.removeSubrange(n...)
        return out
    }
}

extension BlockCompressor {
    /// Convenience for tests and small payloads: nil when not smaller than the input.
    public func compress(_ bytes: [UInt8]) throws -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: max(bytes.count, 1))
        let n = try bytes.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try compress(s, into: $0) } }
        guard let n else { return nil }
        out.removeSubrange(n...)
        return out
    }
}
