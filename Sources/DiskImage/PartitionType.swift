import Basics
import Foundation

/// A partition type: a symbolic name (mapped per table), a GPT type GUID or an MBR id.
public enum PartitionType: Sendable, Hashable, CustomStringConvertible {
    case named(String)
    case guid(String)
    case mbr(UInt8)

    public static let linux = PartitionType.named("linux")
    public static let esp = PartitionType.named("esp")
    public static let fat32 = PartitionType.named("fat32")
    public static let swap = PartitionType.named("swap")

    public var description: String {
        switch self {
        case .named(let n): n
        case .guid(let g): g
        case .mbr(let b): "0x" + String(b, radix: 16)
        }
    }

    /// Parses "linux", "esp", "root-x86-64", a GUID, "0x83" / "83" (MBR id), or a
    /// genimage one-letter shortcut (L S H U R V F).
    public static func parse(_ text: String) -> PartitionType? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if GUID.parse(t) != nil { return .guid(t.uppercased()) }
        if let g = genimageLetters[t] { return .guid(g) }
        let lower = t.lowercased()
        if gptNames[lower] != nil || mbrNames[lower] != nil { return .named(lower) }
        if lower.hasPrefix("0x"), let v = UInt8(lower.dropFirst(2), radix: 16) { return .mbr(v) }
        if t.count <= 2, let v = UInt8(t, radix: 16) { return .mbr(v) }
        return nil
    }

    /// The GPT type GUID (upper case), or nil if this type has no GPT meaning.
    public var gptGUID: String? {
        switch self {
        case .guid(let g): g.uppercased()
        case .named(let n): PartitionType.gptNames[n.lowercased()]
        case .mbr: nil
        }
    }

    /// The MBR type byte, or nil if this type has no MBR meaning.
    public var mbrID: UInt8? {
        switch self {
        case .mbr(let b): b
        case .named(let n): PartitionType.mbrNames[n.lowercased()]
        case .guid(let g): PartitionType.mbrForGUID[g.uppercased()]
        }
    }

    /// Type GUIDs by name: util-linux's names and the Discoverable Partitions names.
    public static let gptNames: [String: String] = [
        "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "uefi": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "fat32": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        "msdata": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
        "home": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
        "srv": "3B8F8425-20E0-4F3B-907F-1A25A76F98E8",
        "raid": "A19D880F-05FC-4D3B-A006-743F0F84911E",
        "lvm": "E6D6D379-F507-44C2-A23C-238F2A3DF928",
        "bios-boot": "21686148-6449-6E6F-744E-656564454649",
        "xbootldr": "BC13C2FF-59E6-4262-A352-B275FD6F7172",
        "root-x86": "44479540-F297-41B2-9AF7-D131D5F0458A",
        "root-x86-64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "root-arm": "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3",
        "root-arm64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        "root-riscv64": "72EC70A6-CF74-40E6-BD49-4BDA08E8F224",
        "usr-x86-64": "8484680C-9521-48C6-9C11-B0720656F69E",
        "usr-arm64": "B0E01050-EE5F-4390-949A-9101B17104E9",
        "root-x86-64-verity": "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
        "root-arm64-verity": "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
        "usr-x86-64-verity": "77FF5F63-E7B6-4633-ACF4-1565B864C0E6",
        "usr-arm64-verity": "6E11A4E7-FBCA-4DED-B9E9-E1A512BB664E",
    ]

    /// genimage's one-letter GPT shortcuts (all versions).
    public static let genimageLetters: [String: String] = [
        "L": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        "S": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
        "H": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
        "U": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "R": "A19D880F-05FC-4D3B-A006-743F0F84911E",
        "V": "E6D6D379-F507-44C2-A23C-238F2A3DF928",
        "F": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
    ]

    public static let mbrNames: [String: UInt8] = [
        "linux": 0x83, "swap": 0x82, "fat12": 0x01, "fat16": 0x0E, "fat32": 0x0C,
        "esp": 0xEF, "uefi": 0xEF, "lvm": 0x8E, "raid": 0xFD, "extended": 0x0F,
    ]

    private static let mbrForGUID: [String: UInt8] = [
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4": 0x83,
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": 0xEF,
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": 0x0C,
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": 0x82,
    ]
}

/// GUID text <-> the mixed-endian 16-byte on-disk form used by GPT.
public enum GUID {
    /// Canonical upper-case form, or nil if `text` is not 8-4-4-4-12 hex.
    public static func parse(_ text: String) -> String? {
        let u = Array(text.utf8)
        guard u.count == 36 else { return nil }
        for (i, c) in u.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                if c != UInt8(ascii: "-") { return nil }
            } else if !((48...57).contains(c) || (65...70).contains(c) || (97...102).contains(c)) {
                return nil
            }
        }
        return text.uppercased()
    }

    /// A name-based GUID (version 5 style over SHA-256) so unspecified GUIDs are stable
    /// across builds: same layout, same GUIDs.
    public static func derived(_ parts: String...) -> String {
        let h = SHA256()
        for p in parts { h.updateField(p) }
        var b = Array(h.finalize().prefix(16))
        b[6] = (b[6] & 0x0F) | 0x50
        b[8] = (b[8] & 0x3F) | 0x80
        let hex = Hex.encode(b).uppercased()
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }
}
