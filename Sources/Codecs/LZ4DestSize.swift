import Basics
import CLZ4

/// "Fixed-size output" LZ4: compress as much of the input as fits into a given number of
/// output bytes (LZ4_compress_destSize / LZ4_compress_HC_destSize). EROFS cuts files into
/// extents this way so that every physical cluster is exactly full.
///
/// One instance per thread: it owns the HC state it reuses between calls.
public final class LZ4DestSizeCompressor {
    /// nil = LZ4 fast mode; 1...12 = LZ4HC level.
    public let hcLevel: Int32?
    private let hcState: UnsafeMutableRawPointer?

    public struct Failure: UserError {
        public var inputBytes: Int
        public var target: Int
        public var description: String { "LZ4 destSize compression failed (input \(inputBytes) bytes, target \(target) bytes)" }
    }

    public init(hcLevel: Int?) {
        if let l = hcLevel {
            let lvl = Int32(min(max(l, 1), Int(LZ4HC_CLEVEL_MAX)))
            self.hcLevel = lvl
            hcState = UnsafeMutableRawPointer.allocate(byteCount: Int(LZ4_sizeofStateHC()), alignment: 16)
        } else {
            self.hcLevel = nil
            hcState = nil
        }
    }

    deinit { hcState?.deallocate() }

    /// Compresses a prefix of `input` into `output` (at most `target` bytes are written).
    /// Returns (consumed input bytes, written output bytes).
    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, target: Int) throws -> (consumed: Int, written: Int) {
        precondition(output.count >= target)
        guard let src = input.baseAddress, let dst = output.baseAddress, input.count > 0 else { return (0, 0) }
        var srcSize = Int32(min(input.count, Int(LZ4_MAX_INPUT_SIZE)))
        let written: Int32
        if let hcState, let lvl = hcLevel {
            written = LZ4_compress_HC_destSize(hcState, src.assumingMemoryBound(to: CChar.self),
                                               dst.assumingMemoryBound(to: CChar.self), &srcSize, Int32(target), lvl)
        } else {
            written = LZ4_compress_destSize(src.assumingMemoryBound(to: CChar.self),
                                            dst.assumingMemoryBound(to: CChar.self), &srcSize, Int32(target))
        }
        guard written > 0 else { throw Failure(inputBytes: input.count, target: target) }
        return (Int(srcSize), Int(written))
    }
}
