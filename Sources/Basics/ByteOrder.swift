#if canImport(Glibc)
import Glibc
#endif

/// Byte-order comparison of UTF-8 strings (memcmp), the order every on-disk format and
/// every fingerprint uses. Swift's `String <` compares Unicode canonically, which is
/// neither byte order nor fast.
public enum ByteOrder {
    @inlinable
    public static func less(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { pa in
            b.withUTF8 { pb in
                let n = min(pa.count, pb.count)
                if n > 0, let x = pa.baseAddress, let y = pb.baseAddress {
                    let c = memcmp(x, y, n)
                    if c != 0 { return c < 0 }
                }
                return pa.count < pb.count
            }
        }
    }
}

/// Appends decimal numbers and raw bytes to a byte buffer without String churn.
extension Array where Element == UInt8 {
    @inlinable
    public mutating func appendDecimal<T: BinaryInteger>(_ value: T) {
        if value < 0 { append(0x2D) }
        var v = value.magnitude
        let start = count
        repeat {
            append(UInt8(truncatingIfNeeded: v % 10) + 0x30)
            v /= 10
        } while v > 0
        self[start...].reverse()
    }

    @inlinable
    public mutating func append(utf8 s: String) {
        var s = s
        s.withUTF8 { append(contentsOf: $0) }
    }
}
