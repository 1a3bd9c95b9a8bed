import Boards
import StageRunner

// Stages whose implementation belongs to a later issue. They appear in `plan` as
// "not implemented" and `make` reports them in red; nothing counts them as done.

enum KernelConfigStage {
    static let kind = StageKind(
        name: "kernel-config", summary: "merge defconfig + fragments into .config (olddefconfig)",
        applies: { $0.string("kernel.source") != nil },
        make: { _ in .placeholder(name: "kernel-config", summary: "merge defconfig + fragments into .config", reason: "Kconfig engine (issue 6)") })
}




enum BootloaderStage {
    static let kind = StageKind(
        name: "bootloader", summary: "bootloader files and A/B environment",
        applies: { $0.string("bootloader.kind") != "none" },
        make: { _ in .placeholder(name: "bootloader", summary: "bootloader", dependencies: ["kernel"], reason: "bootloader stages (issue 9)") })
}

enum DiskStage {
    static let kind = StageKind(
        name: "disk", summary: "partitioned disk image (+ .bmap and conversions)",
        applies: { !$0.records("disk.partition").isEmpty },
        make: { _ in .placeholder(name: "disk", summary: "disk image", dependencies: ["rootfs-image", "bootloader", "initramfs"], reason: "disk images (issue 7)") })
}

enum BundleStage {
    static let kind = StageKind(
        name: "bundle", summary: "signed RAUC update bundle",
        applies: { _ in true },
        make: { _ in .placeholder(name: "bundle", summary: "RAUC bundle", dependencies: ["rootfs-image", "bootloader"], reason: "RAUC bundles (issue 8)") })
}
