import Basics
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
}

public enum BootStateBackends {
    /// `kind` is the board's bootloader.kind, or nil to detect it from the image.
    static func open(kind: String?, image: OpenImage, tries: Int?) throws -> any BootStateBackend {
        switch kind {
        case "grub"?:
            return try GrubEnvBootState(image: image, tries: tries)
        case nil:
            if let g = try? GrubEnvBootState(image: image, tries: tries) { return g }
            throw InstallError(.bootloader, "\(image.path): no bootloader environment found (looked for /grub/grubenv in the FAT boot partition); pass --board to name the bootloader")
        case let k?:
            throw InstallError(.bootloader, "\(image.path): bootloader.kind = \"\(k)\" is not supported by offline install yet (supported: grub); the image is unchanged")
        }
    }
}
