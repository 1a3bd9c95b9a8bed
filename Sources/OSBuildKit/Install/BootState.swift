import Basics
import Boards
import DiskImage

/// The bootloader's A/B state inside a disk image, as RAUC's bootloader backends see it
/// on a device: which slot boots, mark a slot bad, make a slot primary. One type per
/// bootloader (`GrubEnvBootState`; U-Boot env and Pi tryboot are one file each when
/// their formats exist in the Bootloader module). Changes are written in place; the
/// installer fsyncs the image after each call.
public protocol BootStateBackend {
    /// For messages: what and where, e.g. "grubenv /grub/grubenv in partition boot".
    var description: String { get }
    /// The slot the bootloader would boot now (RAUC's booted/primary slot offline).
    func bootSlot() throws -> String
    /// Whether `slot` is currently marked bootable.
    func isMarkedGood(_ slot: String) throws -> Bool
    /// rauc's set-state bad: keep the bootloader away from a slot being overwritten.
    func markBad(_ slot: String) throws
    /// rauc's set-primary + good: boot `slot` first, with a fresh try counter.
    func makePrimary(_ slot: String) throws
}

/// The image as the backends and the installer see it: an open descriptor and its table.
public struct OpenImage {
    public let path: String
    public let fd: Int32
    public let size: UInt64
    public let partitions: [DiskReport.PartitionInfo]

    public func partition(named name: String) -> DiskReport.PartitionInfo? {
        partitions.first { $0.name == name }
    }

    /// By number on MBR boards, else by GPT name.
    public func partition(for slot: SlotMap.Slot) -> DiskReport.PartitionInfo? {
        if let n = slot.number { return partitions.first { $0.number == n } }
        return partition(named: slot.partition)
    }
}

public enum BootStateBackends {
    /// `kind` is the board's bootloader.kind, or nil to detect it from the image.
    static func open(kind: String?, image: OpenImage, tries: Int?, board: Board?, slots: SlotMap) throws -> any BootStateBackend {
        switch kind {
        case "grub"?:
            return try GrubEnvBootState(image: image, tries: tries)
        case "uboot"?:
            return try UBootEnvBootState(image: image, board: board, tries: tries)
        case "tryboot"?:
            return try TrybootBootState(image: image, slots: slots)
        case nil:
            if let g = try? GrubEnvBootState(image: image, tries: tries) { return g }
            if let u = try? UBootEnvBootState(image: image, board: nil, tries: tries) { return u }
            if let t = try? TrybootBootState(image: image, slots: slots) { return t }
            throw InstallError(.bootloader, "\(image.path): no bootloader state found (looked for /grub/grubenv on a FAT boot partition, a U-Boot environment on partition 'bootstate', /autoboot.txt); pass --board to name the bootloader")
        case let k?:
            throw InstallError(.bootloader, "\(image.path): bootloader.kind = \"\(k)\" is not supported by offline install (supported: grub, uboot, tryboot); the image is unchanged")
        }
    }
}
