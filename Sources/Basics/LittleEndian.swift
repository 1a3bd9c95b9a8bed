/// Little-endian encoding of on-disk records (SquashFS, EROFS, ext4 ...) and the CRC-32C
/// their checksums use: one implementation for every image writer.
extension Array where Element == UInt8 {
    /// Append `v` in little-endian byte order.
    @inlinable @inline(__always)
    public mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }

    @inlinable @inline(__always) public mutating func le16(_ v: UInt16) { appendLE(v) }
    @inlinable @inline(__always) public mutating func le32(_ v: UInt32) { appendLE(v) }
    @inlinable @inline(__always) public mutating func le64(_ v: UInt64) { appendLE(v) }

    /// Overwrite `MemoryLayout<T>.size` bytes at `offset` with `v` in little-endian order.
    @inlinable
    public mutating func storeLE<T: FixedWidthInteger>(_ v: T, at offset: Int) {
        Swift.withUnsafeBytes(of: v.littleEndian) { src in
            for i in 0..<src.count { self[offset + i] = src[i] }
        }
    }

    @inlinable public mutating func putU16(_ v: UInt16, at offset: Int) { storeLE(v, at: offset) }
    @inlinable public mutating func putU32(_ v: UInt32, at offset: Int) { storeLE(v, at: offset) }

    /// Read a little-endian integer at `offset`.
    @inlinable
    public func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(truncatingIfNeeded: self[offset + i]) << (8 * i) }
        return v
    }
}

/// Builds a little-endian record field by field.
public struct ByteWriter {
    public var bytes: [UInt8]
    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }
    public var count: Int { bytes.count }
    @inlinable public mutating func u8(_ v: UInt8) { bytes.append(v) }
    @inlinable public mutating func u16(_ v: UInt16) { bytes.appendLE(v) }
    @inlinable public mutating func u32(_ v: UInt32) { bytes.appendLE(v) }
    @inlinable public mutating func u64(_ v: UInt64) { bytes.appendLE(v) }
    public mutating func append(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }
    public mutating func zeros(_ n: Int) { if n > 0 { bytes.append(contentsOf: repeatElement(0, count: n)) } }
    public mutating func pad(to alignment: Int) { zeros((alignment - bytes.count % alignment) % alignment) }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) in its raw form: no inversion
/// on the way in or out, so callers chain updates and choose their own seed (EROFS's
/// superblock and ext4's metadata checksums both seed with ~0 and keep the raw value).
public enum CRC32C {
    public static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func update(_ crc: UInt32, _ bytes: some Sequence<UInt8>) -> UInt32 {
        table.withUnsafeBufferPointer { t in
            var c = crc
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
            return c
        }
    }

    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        table.withUnsafeBufferPointer { t in
            var c = crc
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
            return c
        }
    }
}
