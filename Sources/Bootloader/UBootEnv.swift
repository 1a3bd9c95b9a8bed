import Basics
import Codecs

/// A U-Boot environment image, as U-Boot's `saveenv`/`env import -c`, `fw_printenv`/
/// `fw_setenv` and `mkenvimage` read and write it: a little-endian CRC32 of the data area,
/// for the redundant variant one flags byte (the copy with the higher counter is the
/// active one), then `name=value` strings each closed by NUL, an empty string (a second
/// NUL) after the last, and padding up to the environment size.
public struct UBootEnvironment: Sendable, Equatable {
    public struct Variable: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) { (self.name, self.value) = (name, value) }
    }

    /// In order: rendering keeps it (mkenvimage does too); U-Boot's own export sorts.
    public var variables: [Variable]
    /// The redundant layout (CONFIG_SYS_REDUNDAND_ENVIRONMENT): a flags byte after the CRC.
    public var redundant: Bool
    /// Redundant copies only: U-Boot counts this up on every save; the higher one wins.
    public var flags: UInt8

    public init(_ variables: [Variable], redundant: Bool = false, flags: UInt8 = 1) {
        (self.variables, self.redundant, self.flags) = (variables, redundant, flags)
    }

    public init(_ pairs: [(String, String)], redundant: Bool = false, flags: UInt8 = 1) {
        self.init(pairs.map { Variable($0.0, $0.1) }, redundant: redundant, flags: flags)
    }

    public subscript(name: String) -> String? {
        get { variables.first { $0.name == name }?.value }
        set {
            if let i = variables.firstIndex(where: { $0.name == name }) {
                if let v = newValue { variables[i].value = v } else { variables.remove(at: i) }
            } else if let v = newValue {
                variables.append(Variable(name, v))
            }
        }
    }

    /// The little-endian CRC32 that starts every copy; the redundant layout's flags byte follows it.
    public static let crcSize = 4
    public static func headerSize(redundant: Bool) -> Int { redundant ? crcSize + 1 : crcSize }
    var headerSize: Int { Self.headerSize(redundant: redundant) }

    /// The image of exactly `size` bytes (U-Boot's CONFIG_ENV_SIZE), padded with `padding`
    /// (0xff like mkenvimage, the erased-flash value).
    public func render(size: Int, padding: UInt8 = 0xFF) throws -> [UInt8] {
        var body: [UInt8] = []
        for v in variables {
            guard !v.name.isEmpty, !v.name.utf8.contains(UInt8(ascii: "=")), !v.name.utf8.contains(0), !v.value.utf8.contains(0) else {
                throw MessageError("U-Boot environment: invalid variable '\(v.name)' (names must be non-empty without '=', no NUL in names or values)")
            }
            body += Array(v.name.utf8) + [UInt8(ascii: "=")] + Array(v.value.utf8) + [0]
        }
        if body.isEmpty { body.append(0) }
        body.append(0)
        let dataSize = size - headerSize
        guard body.count <= dataSize else {
            throw MessageError("U-Boot environment: \(body.count) bytes of variables do not fit the \(size)-byte environment (\(dataSize) bytes of data)")
        }
        body += [UInt8](repeating: padding, count: dataSize - body.count)
        let crc = CRC32.checksum(body)
        var out = [UInt8(truncatingIfNeeded: crc), UInt8(truncatingIfNeeded: crc >> 8), UInt8(truncatingIfNeeded: crc >> 16), UInt8(crc >> 24)]
        if redundant { out.append(flags) }
        return out + body
    }

    /// Parses one environment copy of `bytes.count` bytes; the CRC must match.
    public static func parse(_ bytes: [UInt8], redundant: Bool = false) throws -> UBootEnvironment {
        let header = headerSize(redundant: redundant)
        guard bytes.count > header + 1 else { throw MessageError("U-Boot environment of \(bytes.count) bytes is too small") }
        let stored = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
        let data = bytes[header...]
        let actual = CRC32.checksum(Array(data))
        guard stored == actual else {
            throw MessageError("U-Boot environment CRC32 is 0x\(hex(stored)) but its \(data.count) data bytes hash to 0x\(hex(actual)) (wrong size, redundant flag, or corrupt)")
        }
        var vars: [Variable] = []
        var i = data.startIndex
        while i < data.endIndex, data[i] != 0 {
            guard let end = data[i...].firstIndex(of: 0) else { throw MessageError("U-Boot environment: variable at byte \(i) is not NUL-terminated") }
            let entry = data[i..<end]
            guard let eq = entry.firstIndex(of: UInt8(ascii: "=")) else {
                throw MessageError("U-Boot environment: entry at byte \(i) has no '=': \(String(decoding: entry, as: UTF8.self))")
            }
            vars.append(Variable(String(decoding: entry[..<eq], as: UTF8.self), String(decoding: entry[(eq + 1)...], as: UTF8.self)))
            i = end + 1
        }
        return UBootEnvironment(vars, redundant: redundant, flags: redundant ? bytes[crcSize] : 1)
    }

    /// Of two redundant copies, the one U-Boot uses: both valid -> the newer flags counter
    /// (wrapping 255 -> 0), else the valid one.
    public static func parseRedundant(_ first: [UInt8], _ second: [UInt8]) throws -> (env: UBootEnvironment, index: Int) {
        let a = try? parse(first, redundant: true), b = try? parse(second, redundant: true)
        switch (a, b) {
        case let (a?, b?):
            if a.flags == 255 && b.flags == 0 { return (b, 1) }
            if b.flags == 255 && a.flags == 0 { return (a, 0) }
            return b.flags > a.flags ? (b, 1) : (a, 0)
        case let (a?, nil): return (a, 0)
        case let (nil, b?): return (b, 1)
        default: throw MessageError("neither redundant U-Boot environment copy (\(first.count) and \(second.count) bytes) has a valid CRC32")
        }
    }
}
