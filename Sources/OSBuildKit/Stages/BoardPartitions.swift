import Basics
import Boards

/// How the target addresses the board's `[[disk.partition]]` entries once the image is
/// written: partition numbers (GPT entries in order; MBR with more than four partitions
/// gets an extended partition in slot 4, so entries from the fourth on are logical 5, 6,
/// ...), and the stable /dev/disk path Linux offers (PARTLABEL on GPT/hybrid, PARTUUID
/// `<signature>-<nn>` on MBR, which has no names).
struct BoardPartitions {
    struct Entry {
        var index: Int
        var number: Int
        var name: String
        var slot: String?
        /// e.g. "PARTLABEL=system0" or "PARTUUID=5a1b2c3d-05"
        var rootSpec: String
        var devicePath: String
    }

    let entries: [Entry]
    let table: String

    init(board b: Board) throws {
        table = b.string("disk.table") ?? "gpt"
        let recs = b.records("disk.partition")
        var signature: UInt32 = 0
        if table == "mbr" {
            guard let id = b.string("disk.id"), id.hasPrefix("0x"), let v = UInt32(id.dropFirst(2), radix: 16) else {
                throw MessageError("\(b.file): disk.table = \"mbr\" needs disk.id = \"0x........\" (the disk signature Linux shows in PARTUUID)", exitCode: ExitStatus.usage)
            }
            signature = v
        }
        var out: [Entry] = []
        for (i, p) in recs.enumerated() {
            let name = p["name"]?.string ?? "part\(i)"
            let number = table == "mbr" && recs.count > 4 && i >= 3 ? i + 2 : i + 1
            let spec: String
            let dev: String
            if table == "mbr" {
                let sig = String(signature, radix: 16)
                let uuid = String(repeating: "0", count: 8 - sig.count) + sig + "-" + (number < 16 ? "0" : "") + String(number, radix: 16)
                (spec, dev) = ("PARTUUID=" + uuid, "/dev/disk/by-partuuid/" + uuid)
            } else {
                (spec, dev) = ("PARTLABEL=" + name, "/dev/disk/by-partlabel/" + name)
            }
            out.append(Entry(index: i, number: number, name: name, slot: p["slot"]?.string, rootSpec: spec, devicePath: dev))
        }
        entries = out
    }

    func named(_ name: String) -> Entry? { entries.first { $0.name == name } }

    /// The partition of `slot` whose name starts with one of `prefixes`.
    func slot(_ slot: String, _ prefixes: [String]) -> Entry? {
        entries.first { e in e.slot == slot && prefixes.contains { e.name.hasPrefix($0) } }
    }
}
