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






enum BundleStage {
    static let kind = StageKind(
        name: "bundle", summary: "signed RAUC update bundle",
        applies: { _ in true },
        make: { _ in .placeholder(name: "bundle", summary: "RAUC bundle", dependencies: ["rootfs-image", "bootloader"], reason: "RAUC bundles (issue 8)") })
}
