import Basics
import CLzma
import CZstd
import Codecs
import Foundation
import Testing
import TestSupport

@Suite struct BlockCodecsTests {
    static let all: [Compression] = [
        .gzip(level: 1), .gzip(level: 9),
        .xz(preset: 0, bcj: [], dictSize: nil), .xz(preset: 6, bcj: [.x86, .arm64, .armthumb, .powerpc, .sparc, .ia64, .arm], dictSize: 65536),
        .lz4(hc: false, level: 1), .lz4(hc: true, level: 12),
        .zstd(level: 1), .zstd(level: 19),
    ]

    static func sample(_ n: Int) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while out.count < n {
            out += Array("record \(i) value \(i * 37 % 101) ok\n".utf8)
            i += 1
        }
        return Array(out.prefix(n))
    }

    static func random(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    @Test(arguments: all)
    func roundTrip(_ c: Compression) throws {
        let comp = try BlockCompressor(c, maxBlockSize: 131072)
        for n in [2, 100, 4096, 131072] {
            let data = Self.sample(n)
            // Reuse the same compressor for several blocks: state must reset between calls.
            for _ in 0..<2 {
                guard let packed = try comp.compress(data) else {
                    #expect(n < 200, "\(c) did not compress \(n) bytes of text")
                    continue
                }
                #expect(packed.count < data.count)
                #expect(try BlockDecompressor.decompress(c.kind, packed, capacity: n) == data)
            }
        }
    }

    @Test(arguments: all)
    func incompressibleDataIsReportedNotExpanded(_ c: Compression) throws {
        let comp = try BlockCompressor(c, maxBlockSize: 65536)
        #expect(try comp.compress(Self.random(65536)) == nil)
        #expect(try comp.compress([7]) == nil)
    }

    /// The real command-line decoders accept the block formats (xz container, zstd frame).
    @Test func externalDecodersAcceptOutput() throws {
        let data = Self.sample(100_000)
        let tmp = try TempDir("codecs")
        for (c, tool) in [(Compression.xz(preset: 6, bcj: [.x86], dictSize: nil), ["xz", "-dc"]), (.zstd(level: 15), ["zstd", "-dcq"])] {
            guard TestEnv.oracle(tool[0], package: tool[0] == "xz" ? "xz-utils" : "zstd") != nil else { continue }
            let packed = try #require(try BlockCompressor(c, maxBlockSize: 131072).compress(data))
            let f = tmp.sub("blk")
            try FileSystem.writeAtomically(f, packed)
            let r = try Subprocess.run(tool + [f])
            #expect(r.stdout == data, "\(tool[0]) output differs")
        }
        // zlib stream: python's zlib is the reference decoder.
        if TestEnv.oracle("python3", package: "python3") != nil {
            let packed = try #require(try BlockCompressor(.gzip(level: 9), maxBlockSize: 131072).compress(data))
            let f = tmp.sub("z")
            try FileSystem.writeAtomically(f, packed)
            let r = try Subprocess.run(["python3", "-c", "import sys,zlib; sys.stdout.buffer.write(zlib.decompress(open(sys.argv[1],'rb').read()))", f])
            #expect(r.stdout == data)
        }
    }

    @Test func bcjHelpsMachineCode() throws {
        // x86 code compresses better with the x86 filter; the encoder keeps the smaller result.
        let exe = try FileSystem.readFile("/proc/self/exe").prefix(131072)
        let plain = try #require(try BlockCompressor(.xz(preset: 6, bcj: [], dictSize: nil), maxBlockSize: 131072).compress(Array(exe)))
        let withBCJ = try #require(try BlockCompressor(.xz(preset: 6, bcj: [.x86], dictSize: nil), maxBlockSize: 131072).compress(Array(exe)))
        #expect(withBCJ.count <= plain.count)
        #expect(try BlockDecompressor.decompress(.xz, withBCJ, capacity: exe.count) == Array(exe))
    }

    @Test func parsingAndValidation() throws {
        #expect(try Compression.parse("xz") == .xz(preset: 5, bcj: [], dictSize: nil, depth: 8))
        #expect(try Compression.parse("zstd") == .zstd(level: 14, targetLength: 16))
        // An explicit level is the library's level, with no tuning left over.
        #expect(try Compression.parse("zstd", level: 14) == .zstd(level: 14, targetLength: nil))
        #expect(try Compression.parse("xz", level: 6) == .xz(preset: 6, bcj: [], dictSize: nil))
        #expect(try Compression.parse("zstd", level: 3) == .zstd(level: 3))
        #expect(throws: (any Error).self) { try Compression.zstd(level: 14, targetLength: 0).validate() }
        #expect(try Compression.parse("lz4hc", level: 9) == .lz4(hc: true, level: 9))
        #expect(throws: (any Error).self) { try Compression.parse("brotli") }
        #expect(throws: (any Error).self) { try Compression.xz(preset: 10, bcj: [], dictSize: nil).validate() }
        #expect(throws: (any Error).self) { try Compression.xz(preset: 6, bcj: [.x86, .x86], dictSize: nil).validate() }
    }

    /// Blocks as the libraries produce them for the claimed settings: the defaults are xz
    /// preset 5 with depth 8 (dictionary = block size) and zstd level 14 with target length 16; an
    /// explicit level N is the plain library level N (xz 6 / zstd 15 = mksquashfs).
    @Test func defaultsAndExplicitLevelsAreTheClaimedLibrarySettings() throws {
        // Machine code and text: data on which the settings give different outputs.
        let exe = try FileSystem.readFile("/proc/self/exe")
        let block = Array(exe.prefix(65536)) + Self.sample(65536)
        let bs = 131072

        func zstdRef(_ level: Int, targetLength: Int?) throws -> [UInt8] {
            let c = try #require(ZSTD_createCCtx())
            defer { ZSTD_freeCCtx(c) }
            ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, Int32(level))
            if let targetLength { ZSTD_CCtx_setParameter(c, ZSTD_c_targetLength, Int32(targetLength)) }
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(block.count))
            let n = out.withUnsafeMutableBytes { o in block.withUnsafeBytes { ZSTD_compress2(c, o.baseAddress, o.count, $0.baseAddress, $0.count) } }
            #expect(ZSTD_isError(n) == 0)
            return Array(out.prefix(n))
        }
        // The same .xz container as BlockCompressor writes (stream encoder: no sizes in
        // the block header), so equal bytes mean equal LZMA2 settings.
        func xzRef(_ preset: UInt32, depth: UInt32? = nil) -> [UInt8] {
            var o = lzma_options_lzma()
            #expect(lzma_lzma_preset(&o, preset) == 0)
            o.dict_size = UInt32(bs)
            if let depth { o.depth = depth }
            var out = [UInt8](repeating: 0, count: block.count * 2)
            var strm = lzma_stream()
            defer { lzma_end(&strm) }
            var produced = 0
            withUnsafeMutablePointer(to: &o) { op in
                var filters = [lzma_filter(id: 0x21, options: UnsafeMutableRawPointer(op)), lzma_filter(id: .max, options: nil)]
                #expect(lzma_stream_encoder(&strm, &filters, LZMA_CHECK_CRC32) == LZMA_OK)
                out.withUnsafeMutableBufferPointer { ob in
                    block.withUnsafeBufferPointer { ib in
                        strm.next_in = ib.baseAddress
                        strm.avail_in = ib.count
                        strm.next_out = ob.baseAddress
                        strm.avail_out = ob.count
                        #expect(lzma_code(&strm, LZMA_FINISH) == LZMA_STREAM_END)
                        produced = ob.count - strm.avail_out
                    }
                }
            }
            return Array(out.prefix(produced))
        }
        func ours(_ c: Compression) throws -> [UInt8] {
            try #require(try BlockCompressor(c, maxBlockSize: bs).compress(block))
        }

        // Compared as Bools: a failure message with two 100 KB arrays helps nobody.
        let zDefault = try ours(try Compression.parse("zstd"))
        let z15 = try ours(try Compression.parse("zstd", level: 15))
        let z14 = try ours(try Compression.parse("zstd", level: 14))
        let zDefaultIsTuned14 = zDefault == (try zstdRef(14, targetLength: 16))
        let z15IsLevel15 = z15 == (try zstdRef(15, targetLength: nil))
        let z14IsLevel14 = z14 == (try zstdRef(14, targetLength: nil))
        #expect(zDefaultIsTuned14 && z15IsLevel15 && z14IsLevel14)
        #expect(z14.count != zDefault.count, "the default's target length must change the output on this block")
        #expect(try BlockDecompressor.decompress(.zstd, zDefault, capacity: block.count) == block)

        let xDefault = try ours(try Compression.parse("xz"))
        let x6 = try ours(try Compression.parse("xz", level: 6))
        let xDefaultIsPreset5 = xDefault == xzRef(5, depth: 8)
        let x6IsPreset6 = x6 == xzRef(6)
        #expect(xDefaultIsPreset5 && x6IsPreset6)
        #expect(xDefault.count != x6.count)
        #expect(try BlockDecompressor.decompress(.xz, xDefault, capacity: block.count) == block)
    }
}
