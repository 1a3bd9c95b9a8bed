import CLZ4
import CLzma
import Codecs
import Testing

/// Fixed-output-size codecs round-trip through the libraries' own decoders.
@Suite struct EROFSCodecsTests {
    static func sample(_ n: Int) -> [UInt8] {
        var x: UInt32 = 12345
        return (0..<n).map { i in
            x = x &* 1_103_515_245 &+ 12345
            return i % 16 == 0 ? UInt8(truncatingIfNeeded: x >> 16) : UInt8(i / 7 % 26 + 97)
        }
    }

    @Test(arguments: [nil, 9, 12] as [Int?])
    func lz4DestSizeFillsTargetAndDecodes(level: Int?) throws {
        let input = EROFSCodecsTests.sample(200_000)
        let c = LZ4DestSizeCompressor(hcLevel: level)
        var out = [UInt8](repeating: 0, count: 4096)
        let (consumed, written) = try input.withUnsafeBytes { i in
            try out.withUnsafeMutableBytes { try c.compress(i, into: $0, target: 4096) }
        }
        #expect(written <= 4096 && written > 4000)
        #expect(consumed > 4096 && consumed < input.count)
        var back = [UInt8](repeating: 0, count: consumed)
        let n = out.withUnsafeBytes { o in
            back.withUnsafeMutableBytes { b in
                LZ4_decompress_safe(o.baseAddress?.assumingMemoryBound(to: CChar.self), b.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(written), Int32(consumed))
            }
        }
        #expect(Int(n) == consumed)
        #expect(back == Array(input[0..<consumed]))
    }

    @Test func microLZMAFillsTargetAndDecodes() throws {
        let input = EROFSCodecsTests.sample(300_000)
        let e = try MicroLZMAEncoder(level: 6, dictionarySize: 1 << 18)
        var out = [UInt8](repeating: 0, count: 8192)
        let (consumed, written) = try input.withUnsafeBytes { i in
            try out.withUnsafeMutableBytes { try e.compress(i, into: $0, target: 8192) }
        }
        #expect(written <= 8192 && written > 8000 && out[0] != 0)
        #expect(consumed > 8192 && consumed < input.count)
        var strm = lzma_stream()
        #expect(lzma_microlzma_decoder(&strm, UInt64(written), UInt64(consumed), 1, 1 << 18) == LZMA_OK)
        defer { lzma_end(&strm) }
        var back = [UInt8](repeating: 0, count: consumed)
        let r = out.withUnsafeBytes { o in
            back.withUnsafeMutableBytes { b in
                strm.next_in = o.baseAddress?.assumingMemoryBound(to: UInt8.self)
                strm.avail_in = written
                strm.next_out = b.baseAddress?.assumingMemoryBound(to: UInt8.self)
                strm.avail_out = consumed
                return lzma_code(&strm, LZMA_FINISH)
            }
        }
        #expect(r == LZMA_STREAM_END)
        #expect(back == Array(input[0..<consumed]))
    }
}
