import Basics
import Bootloader
import DiskImage

/// Raspberry Pi 5 tryboot (rpi5-64): autoboot.txt on the FAT boot-control partition names
/// the boot partition of the active slot (`boot_partition` in [all]) and the one a
/// `reboot "0 tryboot"` tries once ([tryboot]). Booted = the slot whose `boot` partition
/// is boot_partition; primary = rewrite both numbers (in place: the file keeps its size,
/// which holds while partition numbers have the same number of digits). The firmware
/// has no per-slot good/bad flag, so marking bad is a no-op: the target is not
/// boot_partition while it is written.
struct TrybootBootState: BootStateBackend {
    static let file = "/autoboot.txt"
    let image: OpenImage
    let volume: FATVolume
    let extent: FATVolume.FileExtent
    let label: String
    /// bootname -> partition number of its `boot` slot.
    let bootPartitions: [String: Int]

    init(image: OpenImage, slots: SlotMap) throws {
        self.image = image
        var numbers: [String: Int] = [:]
        for s in slots.slots where s.slotClass == "boot" {
            if let p = image.partition(for: s) { numbers[s.bootname] = p.number }
        }
        guard numbers.count == 2 else {
            throw InstallError(.bootloader, "\(image.path): tryboot needs a boot partition per slot (class 'boot' with slot A and B) in \(slots.source)")
        }
        bootPartitions = numbers
        var found: (FATVolume, FATVolume.FileExtent, String)?
        for p in image.partitions where p.start + p.size <= image.size && found == nil {
            guard let v = try? FATVolume(fd: image.fd, imagePath: image.path, offset: p.start, length: p.size),
                  let f = try? v.locate(Self.file) else { continue }
            found = (v, f, p.name ?? "#\(p.number)")
        }
        guard let (v, f, l) = found else { throw InstallError(.bootloader, "\(image.path): no FAT partition holds \(Self.file)") }
        (volume, extent, label) = (v, f, l)
        _ = try load()
    }

    var description: String { "\(Self.file) in partition \(label)" }

    func load() throws -> Autoboot {
        do {
            return try Autoboot.parse(String(decoding: try volume.read(extent), as: UTF8.self))
        } catch let e as MessageError {
            throw InstallError(.bootloader, "\(image.path): \(description): \(e.message)")
        }
    }

    func bootSlot() throws -> String {
        let a = try load()
        guard let s = bootPartitions.first(where: { $0.value == a.bootPartition })?.key else {
            throw InstallError(.bootloader, "\(image.path): \(description) boots partition \(a.bootPartition), which is no slot's boot partition (\(bootPartitions.sorted { $0.key < $1.key }.map { "\($0.key)=#\($0.value)" }.joined(separator: ", ")))")
        }
        return s
    }

    func isMarkedGood(_ slot: String) throws -> Bool { false }
    func markBad(_ slot: String) throws {}

    func makePrimary(_ slot: String) throws {
        guard let target = bootPartitions[slot], let other = bootPartitions.first(where: { $0.key != slot })?.value else {
            throw InstallError(.bootloader, "\(image.path): slot \(slot) has no boot partition")
        }
        let text = Array(try Autoboot(bootPartition: target, trybootPartition: other).render().utf8)
        guard UInt64(text.count) == extent.size else {
            throw InstallError(.bootloader, "\(image.path): new \(Self.file) is \(text.count) bytes, the file in partition \(label) is \(extent.size); cannot rewrite it in place")
        }
        try volume.overwrite(extent, with: text)
    }
}
