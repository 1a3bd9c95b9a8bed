import Basics
import Boards
import FSTree
import StageRunner

/// Assembles the root filesystem tree (base inputs, overlay/, board overlays) and stores
/// it as an FSTree (tree.manifest + blobs) for the image and initramfs stages.
enum RootfsStage {
    static let kind = StageKind(
        name: "rootfs", summary: "assemble the root filesystem tree",
        applies: { _ in true },
        make: { ctx in
            let board = ctx.board
            let overlays = [ctx.project.commonOverlay] + board.list("rootfs.overlays").map(board.resolvePath)
            let dirBases = board.list("rootfs.base").compactMap { b -> String? in
                b.hasPrefix("dir:") ? board.resolvePath(String(b.dropFirst(4))) : nil
            }
            let inputs = StageInputs(
                paths: dirBases + overlays,
                keys: ctx.keys(["rootfs.*", "os.*", "arch"]),
                extra: ["SOURCE_DATE_EPOCH": String(ctx.epoch)])
            return Stage(name: "rootfs", summary: "assemble the root filesystem tree", inputs: inputs) { sctx in
                var tree = FSTree()
                for base in board.list("rootfs.base") {
                    guard base.hasPrefix("dir:") else {
                        throw MessageError("rootfs.base '\(base)': only dir: inputs are supported so far (tar/deb/apt inputs come with the Rootfs module)")
                    }
                    let dir = board.resolvePath(String(base.dropFirst(4)))
                    sctx.log.line("base \(dir)")
                    try tree.importHostDirectory(dir, options: .init(ownership: .root))
                }
                for o in overlays where FileSystem.exists(o) {
                    sctx.log.line("overlay \(o)")
                    try tree.importHostDirectory(o, options: .init(ownership: .root))
                }
                if ctx.epoch > 0 { tree.clampMtimes(to: ctx.epoch) }
                let bytes = try TreeStore.save(tree, to: sctx.outputDir + "/tree")
                let t = tree.totals()
                sctx.log.line("tree: \(t.entries) entries, \(t.inodes) inodes, \(t.bytes) bytes of content (\(bytes) stored)")
            }
        })
}
