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






