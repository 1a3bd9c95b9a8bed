import Basics
import Boards
import Bundle
import StageRunner

/// The signed RAUC update bundle with the slot images (kernel and rootfs), verity or
/// plain per `bundle.format`. Without `bundle.key`/`bundle.cert` a development key pair
/// is generated once into `<project>/keys/` (outside the build dir, git-ignored) and every
/// build that uses it warns; production boards (`os.deployment`) refuse development keys.
enum BundleStage {
    static let kind = StageKind(
        name: "bundle", summary: "signed RAUC update bundle",
        applies: { !$0.records("disk.partition").isEmpty && hasKernel($0) },
        make: { ctx in
            let b = ctx.board
            let cert = b.string("bundle.cert").map(b.resolvePath)
            let key = b.string("bundle.key").map(b.resolvePath)
            let release = b.string("os.deployment") == "production"
            let keysDir = ctx.project.root + "/keys"
            let epoch = ctx.epoch
            let format = BundleFormat(rawValue: b.string("bundle.format") ?? "verity") ?? .verity
            let inputs = StageInputs(paths: [cert, key].compactMap { $0 } + b.list("bundle.intermediate").map(b.resolvePath),
                                     keys: ctx.keys(["bundle.*", "os.*"]), extra: ["SOURCE_DATE_EPOCH": String(epoch)])
            // Tryboot boards update the boot partition (kernel, initramfs, DTBs) instead of a
            // kernel partition; a hook retargets cmdline.txt to the slot written.
            let tryboot = b.string("bootloader.kind") == "tryboot"
            return Stage(name: "bundle", summary: "RAUC bundle \(b.artifactName("raucb"))",
                         dependencies: [tryboot ? "bootloader" : "kernel-image", "rootfs-image"], inputs: inputs) { sctx in
                let signing = try BundleSigning.resolve(cert: cert, key: key, intermediates: b.list("bundle.intermediate").map(b.resolvePath),
                                                        developmentKeysDirectory: keysDir, release: release)
                if let w = signing.warning {
                    sctx.log.line("warning: \(w)")
                    Console.shared.error(Console.shared.paint("warning: ", .yellow) + "bundle \(b.id): \(w)")
                }
                let first: BundleRecipe.Image = tryboot
                    ? .init(slotClass: "boot", source: try sctx.input("bootloader") + "/boot.img", filename: "boot.vfat", hooks: ["post-install"])
                    : .init(slotClass: "kernel", source: try sctx.input("kernel-image") + "/kernel.img", filename: "kernel.img")
                let recipe = BundleRecipe(
                    compatible: b.compatible, version: b.version, description: b.name, build: epoch > 0 ? String(epoch) : nil, format: format,
                    hookScript: tryboot ? try sctx.input("bootloader") + "/rauc-hook.sh" : nil,
                    images: [first, .init(slotClass: "rootfs", source: try sctx.input("rootfs-image") + "/rootfs.img", filename: "rootfs.img")])
                let layout = try recipe.createBundle(stagingDirectory: sctx.scratchDir + "/content", output: sctx.outputDir + "/" + b.artifactName("raucb"),
                                                     options: BundleCreateOptions(identity: signing.identity, epoch: epoch > 0 ? epoch : nil))
                sctx.log.line("bundle: \(layout)")
                if let ca = signing.developmentCA {
                    try FileSystem.writeAtomically(sctx.outputDir + "/keyring.pem", try FileSystem.readFile(ca))
                }
            }
        })
}
