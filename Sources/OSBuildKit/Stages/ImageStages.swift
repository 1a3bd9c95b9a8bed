import Basics
import Boards
import Codecs
import EROFS
import FSTree
import Rootfs
import SquashFS
import StageRunner

/// The root filesystem image, written natively as EROFS or SquashFS (`rootfs.fs`).
enum RootfsImageStage {
    static let kind = StageKind(
        name: "rootfs-image", summary: "root filesystem image (EROFS or SquashFS)",
        applies: { _ in true },
        make: { ctx in
            let b = ctx.board
            let fs = b.string("rootfs.fs") ?? "erofs"
            let comp = b.string("rootfs.compression") ?? "lz4hc"
            let level = b.integer("rootfs.compression-level").map(Int.init)
            let epoch = ctx.epoch
            // Validate the combination when the graph is built, not half-way through make.
            _ = try options(fs: fs, comp: comp, level: level, epoch: epoch, arch: b.arch, board: b)
            let inputs = StageInputs(keys: ctx.keys(["rootfs.fs", "rootfs.compression", "rootfs.compression-level", "arch"]),
                                     extra: ["SOURCE_DATE_EPOCH": String(epoch)])
            return Stage(name: "rootfs-image", summary: "\(fs) image of the rootfs (\(comp))", dependencies: ["rootfs"], inputs: inputs) { sctx in
                let tree = try TreeStore.load(from: try sctx.input("rootfs") + "/tree")
                let out = sctx.outputDir + "/rootfs.img"
                let progress: @Sendable (UInt64, UInt64) -> Void = { d, t in sctx.progress(done: d, total: t) }
                switch try options(fs: fs, comp: comp, level: level, epoch: epoch, arch: b.arch, board: b) {
                case .erofs(let o):
                    let stats = try EROFSWriter(o).write(tree: tree, to: out, progress: progress)
                    sctx.log.line("erofs: \(stats)")
                case .squashfs(let o):
                    let stats = try SquashFSWriter(o).write(tree: tree, to: out, progress: progress)
                    sctx.log.line("squashfs: \(stats)")
                }
            }
        })

    enum Writer {
        case erofs(EROFSOptions)
        case squashfs(SquashFSOptions)
    }

    static func options(fs: String, comp: String, level: Int?, epoch: Int64, arch: String, board: Board) throws -> Writer {
        func bad(_ why: String) -> MessageError {
            MessageError("\(board.file): rootfs.compression = \"\(comp)\" \(why)", exitCode: ExitStatus.usage)
        }
        if fs == "erofs" {
            let c: EROFSOptions.Compression
            switch comp {
            case "none": c = .none
            case "lz4": c = .lz4
            case "lz4hc": c = .lz4hc(level: level ?? 12)
            case "lzma": c = .lzma(level: level ?? 6)
            default: throw bad("is not available for EROFS (none, lz4, lz4hc, lzma)")
            }
            return .erofs(EROFSOptions(compression: c, buildTime: epoch > 0 ? Timestamp(seconds: epoch) : nil))
        }
        let c: Compression
        switch comp {
        case "gzip": c = .gzip(level: level ?? 9)
        case "xz":
            // osbuild's tuned default (or exactly the library preset given), plus the BCJ filter for the board's code.
            let bcj: [XZFilter] = arch == "x86_64" ? [.x86] : arch == "aarch64" ? [.arm64] : []
            c = (level.map(Compression.defaults(.xz).withLevel) ?? Compression.defaults(.xz)).withXZFilters(bcj)
        case "lz4": c = .lz4(hc: false, level: 0)
        case "lz4hc": c = .lz4(hc: true, level: level ?? 9)
        case "zstd": c = level.map(Compression.defaults(.zstd).withLevel) ?? Compression.defaults(.zstd)
        default: throw bad("is not available for SquashFS (gzip, xz, lz4, lz4hc, zstd)")
        }
        return .squashfs(SquashFSOptions(compression: c, mkfsTime: epoch > 0 ? UInt32(clamping: epoch) : nil))
    }
}

/// The initramfs: busybox and the resolved kernel modules (initramfs.modules with their
/// dependency closure), from the kernel stage's package tree.
enum InitramfsStage {
    static let kind = StageKind(
        name: "initramfs", summary: "initramfs with resolved kernel modules",
        applies: { !$0.list("initramfs.modules").isEmpty && hasKernel($0) },
        make: { ctx in
            let b = ctx.board
            let compression = b.string("initramfs.compression") ?? "zstd"
            guard let comp = InitramfsCompression(rawValue: compression) else {
                throw MessageError("\(b.file): initramfs.compression = \"\(compression)\" is not supported", exitCode: ExitStatus.usage)
            }
            let epoch = ctx.epoch
            let initOptions = InitramfsInit.Options(rootFSType: b.string("rootfs.fs") ?? "erofs")
            // The init template is code, not a file: its rendering stands in for it in the fingerprint.
            let initTemplate = SHA256.hex(try InitramfsInit.script(modules: ["m.ko"], kernelVersion: "v", options: initOptions))
            let inputs = StageInputs(keys: ctx.keys(["initramfs.*", "rootfs.fs"]),
                                     extra: ["SOURCE_DATE_EPOCH": String(epoch), "init-template": initTemplate])
            return Stage(name: "initramfs", summary: "initramfs (\(compression))", dependencies: ["kernel", "rootfs"], inputs: inputs) { sctx in
                let kernelTree = try TreeStore.load(from: try sctx.input("kernel") + "/tree")
                let rootfs = try TreeStore.load(from: try sctx.input("rootfs") + "/tree")
                let version = try FileSystem.readText(try sctx.input("kernel") + "/version").trimmingCharacters(in: .whitespacesAndNewlines)
                // busybox and its applet links come from the rootfs when it has them.
                let fromRootfs = ["/bin/busybox", "/usr/bin/busybox"].filter { rootfs.lookup($0) != nil }
                let spec = InitramfsSpec(fromRootfs: fromRootfs, modules: b.list("initramfs.modules"), kernelVersion: version,
                                         firmware: b.list("initramfs.firmware"), compression: comp,
                                         sourceDateEpoch: epoch > 0 ? epoch : nil, generatedInit: initOptions)
                let report = try InitramfsBuilder.build(spec, rootfs: rootfs, kernelTree: kernelTree, downloadCache: sctx.downloadCache,
                                                        output: sctx.outputDir + "/initramfs.img", blobDirectory: sctx.scratchDir + "/blobs",
                                                        log: { sctx.log.line($0) })
                sctx.log.line("initramfs: \(report)")
            }
        })
}
