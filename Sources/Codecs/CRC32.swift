import CZlib
import Foundation

/// CRC-32 (IEEE 802.3, zlib's `crc32`): U-Boot image headers and environments, gzip.
public enum CRC32 {
    /// The CRC of `bytes`, continuing from `seed` (0 for a fresh checksum).
    public static func checksum<C: ContiguousBytes>(_ bytes: C, seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { raw -> UInt32 in
            var crc = UInt(seed)
            var rest = raw[...]
            // zlib's length is a uInt: feed very large buffers in 1 GiB pieces.
            while !rest.isEmpty {
                let n = min(rest.count, 1 << 30)
                let piece = UnsafeRawBufferPointer(rebasing: rest.prefix(n))
                crc = crc32(crc, piece.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(n))
                rest = rest.dropFirst(n)
            }
            return UInt32(truncatingIfNeeded: crc)
        }
    }
}
