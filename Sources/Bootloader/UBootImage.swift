import Basics
import Codecs

/// U-Boot's legacy image format ("uImage"): a 64-byte big-endian header followed by the
/// payload. osbuild writes script images (boot.scr from boot.cmd), which U-Boot's
/// `source` command runs. Header: magic 0x27051956, header CRC32 (computed with its own
/// field zeroed), time, data size, load, entry, data CRC32, os, arch, type, compression,
/// 32-byte NUL-padded name. A script payload is a multi-file payload with one file: the
/// list of big-endian sizes closed by a 0 word, then the script bytes.
public struct UBootLegacyImage: Equatable, Sendable {
    public static let magic: UInt32 = 0x2705_1956
    public static let headerSize = 64

    public enum Arch: UInt8, Sendable { case arm = 2, x86 = 3, arm64 = 22, riscv = 26, x86_64 = 24 }
    public enum ImageType: UInt8, Sendable { case kernel = 2, ramdisk = 3, multi = 4, script = 6 }

    public var name: String
    public var time: UInt32
    public var load: UInt32
    public var entry: UInt32
    public var os: UInt8
    public var arch: UInt8
    public var type: UInt8
    public var compression: UInt8
    public var data: [UInt8]

    public init(name: String = "", time: UInt32, load: UInt32 = 0, entry: UInt32 = 0, os: UInt8 = 5, arch: Arch, type: ImageType,
                compression: UInt8 = 0, data: [UInt8]) {
        (self.name, self.time, self.load, self.entry, self.os) = (name, time, load, entry, os)
        (self.arch, self.type, self.compression, self.data) = (arch.rawValue, type.rawValue, compression, data)
    }

    /// A script image (what `mkimage -T script -C none -d boot.cmd` writes).
    public static func script(_ text: String, arch: Arch, time: UInt32, name: String = "") throws -> UBootLegacyImage {
        let body = Array(text.utf8)
        guard body.count < Int(UInt32.max) - 8 else { throw MessageError("boot script of \(body.count) bytes is too large for a U-Boot image") }
        return UBootLegacyImage(name: name, time: time, arch: arch, type: .script, data: be32(UInt32(body.count)) + be32(0) + body)
    }

    /// The script text of a script image (the first file of its payload).
    public func scriptText() throws -> String {
        guard type == ImageType.script.rawValue else { throw MessageError("U-Boot image '\(name)' has type \(type), not script (6)") }
        guard data.count >= 8 else { throw MessageError("U-Boot script image payload of \(data.count) bytes has no size list") }
        let size = Int(Self.readBE32(data, 0))
        var offset = 4
        while offset + 4 <= data.count, Self.readBE32(data, offset) != 0 { offset += 4 }
        offset += 4
        guard offset + size <= data.count else {
            throw MessageError("U-Boot script image: script size \(size) exceeds the payload (\(data.count - offset) bytes after the size list)")
        }
        return String(decoding: data[offset..<(offset + size)], as: UTF8.self)
    }

    public func render() throws -> [UInt8] {
        let nameBytes = Array(name.utf8)
        guard nameBytes.count <= 32 else { throw MessageError("U-Boot image name '\(name)' is \(nameBytes.count) bytes; at most 32 fit the header") }
        guard data.count <= Int(UInt32.max) else { throw MessageError("U-Boot image payload of \(data.count) bytes exceeds 4 GiB") }
        var h = [UInt8]()
        h.reserveCapacity(Self.headerSize)
        h += Self.be32(Self.magic) + Self.be32(0) + Self.be32(time) + Self.be32(UInt32(data.count)) + Self.be32(load) + Self.be32(entry)
        h += Self.be32(CRC32.checksum(data))
        h += [os, arch, type, compression]
        h += nameBytes + [UInt8](repeating: 0, count: 32 - nameBytes.count)
        let hcrc = Self.be32(CRC32.checksum(h))
        h.replaceSubrange(4..<8, with: hcrc)
        return h + data
    }

    /// Parses and verifies an image (magic, both CRCs, size).
    public static func parse(_ bytes: [UInt8]) throws -> UBootLegacyImage {
        guard bytes.count >= headerSize else { throw MessageError("U-Boot image of \(bytes.count) bytes is shorter than its 64-byte header") }
        guard readBE32(bytes, 0) == magic else {
            throw MessageError("not a U-Boot legacy image: magic is 0x\(String(readBE32(bytes, 0), radix: 16)), expected 0x27051956")
        }
        var header = Array(bytes[0..<headerSize])
        let hcrc = readBE32(header, 4)
        header.replaceSubrange(4..<8, with: [0, 0, 0, 0])
        let actualH = CRC32.checksum(header)
        guard actualH == hcrc else { throw MessageError("U-Boot image header CRC32 is 0x\(hex(hcrc)) but the header hashes to 0x\(hex(actualH))") }
        let size = Int(readBE32(bytes, 12))
        guard headerSize + size <= bytes.count else {
            throw MessageError("U-Boot image header says \(size) data bytes, the file has \(bytes.count - headerSize)")
        }
        let data = Array(bytes[headerSize..<(headerSize + size)])
        let dcrc = readBE32(bytes, 24)
        let actualD = CRC32.checksum(data)
        guard actualD == dcrc else { throw MessageError("U-Boot image data CRC32 is 0x\(hex(dcrc)) but the \(size) data bytes hash to 0x\(hex(actualD))") }
        let nameField = bytes[32..<64]
        let name = String(decoding: nameField.prefix(while: { $0 != 0 }), as: UTF8.self)
        var img = UBootLegacyImage(name: name, time: readBE32(bytes, 8), load: readBE32(bytes, 16), entry: readBE32(bytes, 20),
                                   os: bytes[28], arch: .arm64, type: .script, compression: bytes[31], data: data)
        img.arch = bytes[29]
        img.type = bytes[30]
        return img
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
    static func readBE32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 8 - s.count)) + s
}
