import Basics
import Boards
import Bundle

/// Which partition holds which RAUC slot: slot class (kernel, rootfs, ...), the boot
/// slot it belongs to (A/B; a rootfs follows its parent kernel) and the GPT partition
/// name (system.conf addresses slots as /dev/disk/by-partlabel/<name>).
public struct SlotMap: Sendable, Equatable {
    public struct Slot: Sendable, Equatable {
        public var slotClass: String
        public var bootname: String
        /// GPT partition name (the board's partition name on MBR, for messages).
        public var partition: String
        /// Set on MBR boards (no names): the partition number, as system.conf's
        /// /dev/disk/by-partuuid/<signature>-<nn> addresses it.
        public var number: Int?
    }
    public var slots: [Slot]
    /// Where the map came from, for messages.
    public var source: String

    public var bootnames: [String] { Array(Set(slots.map(\.bootname))).sorted() }

    public func slot(class c: String, bootname: String) -> Slot? {
        slots.first { $0.slotClass == c && $0.bootname == bootname }
    }

    /// From the board, through the same system.conf model the rootfs ships
    /// (`RaucIntegration.systemConf`), so the offline install and RAUC on the device
    /// agree on every slot.
    public static func fromBoard(_ b: Board) throws -> SlotMap {
        guard let conf = try RaucIntegration.systemConf(for: b) else {
            throw InstallError(.slots, "\(b.file): board \(b.id) has no A/B slots (no partition with slot = \"A\"/\"B\" named kernel*, system*, rootfs* or boot*, or bootloader.kind = \"none\")")
        }
        let parts = try BoardPartitions(board: b)
        var out: [Slot] = []
        for s in conf.slots {
            var cur = s
            var seen = 0
            while cur.bootname == nil, let parent = cur.parent, seen < 8 {
                let parts = parent.split(separator: ".")
                guard parts.count == 2, let i = Int(parts[1]), let p = conf.slots.first(where: { $0.slotClass == parts[0] && $0.index == i }) else { break }
                cur = p
                seen += 1
            }
            guard let bootname = cur.bootname, let e = parts.entries.first(where: { $0.devicePath == s.device }) else { continue }
            out.append(Slot(slotClass: s.slotClass, bootname: bootname, partition: e.name, number: parts.table == "mbr" ? e.number : nil))
        }
        return SlotMap(slots: out, source: "board \(b.id) (\(b.file))")
    }

    /// From GPT partition names alone, with the naming rule osbuild boards follow:
    /// kernel<N>, system<N> or rootfs<N> where N is 0/a (slot A) or 1/b (slot B),
    /// optionally after '_' or '-'.
    public static func fromPartitionNames(_ names: [String], image: String) -> SlotMap {
        var out: [Slot] = []
        for name in names {
            let lower = name.lowercased()
            let classes: [(String, String)] = [("kernel", "kernel"), ("system", "rootfs"), ("rootfs", "rootfs")]
            guard let (prefix, slotClass) = classes.first(where: { lower.hasPrefix($0.0) }) else { continue }
            var rest = Substring(lower.dropFirst(prefix.count))
            if rest.first == "_" || rest.first == "-" { rest = rest.dropFirst() }
            let bootname: String
            switch rest {
            case "0", "a": bootname = "A"
            case "1", "b": bootname = "B"
            default: continue
            }
            out.append(Slot(slotClass: slotClass, bootname: bootname, partition: name))
        }
        return SlotMap(slots: out, source: "GPT partition names of \(image)")
    }
}

/// Why an offline install refused or failed; `check` says which step.
public struct InstallError: UserError {
    public enum Check: String, Sendable {
        case usage = "usage"
        case image = "disk image"
        case slots = "slots"
        case hooks = "hooks"
        case compatible = "compatible"
        case format = "bundle format"
        case size = "partition size"
        case bootloader = "bootloader"
        case write = "image write"
    }
    public var check: Check
    public var message: String
    public init(_ check: Check, _ message: String) {
        self.check = check
        self.message = message
    }
    public var exitCode: Int32 {
        switch check {
        case .usage: return ExitStatus.usage
        default: return ExitStatus.failure
        }
    }
    public var description: String {
        check == .write ? "install failed (\(check.rawValue)): " + message : "install refused (\(check.rawValue)): " + message
    }
}
