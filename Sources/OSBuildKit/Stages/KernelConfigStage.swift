import Basics
import Boards
import Kconfig
import StageRunner

/// `.config` for a board that builds its kernel from `kernel.source`: the defconfig plus
/// `kernel.fragments`, resolved exactly as `merge_config.sh -m` + `make olddefconfig`.
/// Every requested value that did not survive is listed with its reason in the log and
/// in `dropped.txt`. (Compiling the kernel itself is later work, issue 6 item 5.)
enum KernelConfigStage {
    static let kind = StageKind(
        name: "kernel-config", summary: "merge defconfig + fragments into .config (olddefconfig)",
        applies: { $0.string("kernel.source") != nil },
        make: { ctx in
            let b = ctx.board
            let src = b.resolvePath(b.string("kernel.source") ?? "")
            let fragments = b.list("kernel.fragments").map(b.resolvePath)
            let arch = b.arch == "aarch64" ? "arm64" : b.arch
            let cross = b.string("kernel.cross-compile").flatMap { $0.isEmpty ? nil : $0 }
            // The Kconfig files (not the whole source tree) decide the result.
            let inputs = StageInputs(paths: fragments + [src + "/Makefile"], keys: ctx.keys(["kernel.*", "arch"]),
                                     tools: ["cc": ctx.toolVersion((cross ?? "") + "gcc")])
            return Stage(name: "kernel-config", summary: "kernel .config for \(arch)", inputs: inputs) { sctx in
                let (config, report) = try KconfigMerge.run(kernelSource: src, arch: arch, defconfig: .parse(b.string("kernel.defconfig")),
                                                            fragments: fragments, crossCompile: cross)
                try FileSystem.writeAtomically(sctx.outputDir + "/.config", config)
                var dropped = ""
                for o in report.overrides { sctx.log.line("override \(o.symbol): \(o.previous) -> \(o.new)") }
                for d in report.dropped { dropped += "\(d.symbol): requested \(d.requested), got \(d.actualLine): \(d.reason)\n" }
                try FileSystem.writeAtomically(sctx.outputDir + "/dropped.txt", dropped)
                if !dropped.isEmpty { sctx.log.line("values that did not survive:\n" + dropped) }
            }
        })
}
