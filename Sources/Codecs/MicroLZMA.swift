import Basics
import CLzma

/// MicroLZMA (liblzma's header-less LZMA1 variant for fixed-size output, used by EROFS):
/// encodes as much input as fits into `target` output bytes. The first byte is the
/// inverted properties byte, so a stream never starts with 0x00 (EROFS finds the start
/// of zero-padded data that way).
///
/// One instance per thread: the lzma_stream is re-initialised per call, which lets
/// liblzma reuse its allocations.
public final class MicroLZMAEncoder {
    public let preset: UInt32
    public let dictionarySize: UInt32
    private var stream = lzma_stream()
    private var options = lzma_options_lzma()

    public struct Failure: UserError {
        public var code: UInt32
        public var description: String { "MicroLZMA encoder failed (liblzma error \(code))" }
    }

    /// `level` 0...9 like xz; `dictionarySize` is capped by the caller (EROFS allows 8 MiB).
    public init(level: Int, dictionarySize: UInt32) throws {
        preset = UInt32(min(max(level, 0), 9))
        self.dictionarySize = dictionarySize
        if lzma_lzma_preset(&options, preset) != 0 {
            throw Failure(code: UInt32(LZMA_OPTIONS_ERROR.rawValue))
        }
        options.dict_size = dictionarySize
    }

    deinit { lzma_end(&stream) }

    /// Returns (consumed input bytes, written output bytes).
    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, target: Int) throws -> (consumed: Int, written: Int) {
        precondition(output.count >= target && target >= 6)
        guard let src = input.baseAddress, let dst = output.baseAddress, input.count > 0 else { return (0, 0) }
        var r = lzma_microlzma_encoder(&stream, &options)
        guard r == LZMA_OK else { throw Failure(code: UInt32(r.rawValue)) }
        stream.next_in = src.assumingMemoryBound(to: UInt8.self)
        stream.avail_in = input.count
        stream.next_out = dst.assumingMemoryBound(to: UInt8.self)
        stream.avail_out = target
        r = lzma_code(&stream, LZMA_FINISH)
        guard r == LZMA_STREAM_END else { throw Failure(code: UInt32(r.rawValue)) }
        return (Int(stream.total_in), Int(stream.total_out))
    }
}
