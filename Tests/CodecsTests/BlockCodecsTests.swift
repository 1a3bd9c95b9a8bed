import Basics
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
        #expect(try Compression.parse("xz") == .xz(preset: 6, bcj: [], dictSize: nil))
        #expect(try Compression.parse("zstd", level: 3) == .zstd(level: 3))
        #expect(try Compression.parse("lz4hc", level: 9) == .lz4(hc: true, level: 9))
        #expect(throws: (any Error).self) { try Compression.parse("brotli") }
        #expect(throws: (any Error).self) { try Compression.xz(preset: 10, bcj: [], dictSize: nil).validate() }
        #expect(throws: (any Error).self) { try Compression.xz(preset: 6, bcj: [.x86, .x86], dictSize: nil).validate() }
    }
}
