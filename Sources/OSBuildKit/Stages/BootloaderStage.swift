import Basics
import Bootloader
import Boards
import FSTree
import Rootfs
import StageRunner

/// Bootloader files. GRUB EFI (x86_64, aarch64): BOOTX64.EFI / BOOTAA64.EFI made with
/// grub-mkimage from Debian's grub-efi-*-bin modules (fetched like any apt input), a
/// grub.cfg that picks slot A or B from grubenv, and the initial grubenv (written natively).
/// U-Boot (Raspberry Pi) and Pi firmware tryboot: RaspberryPiBoot.swift.
enum BootloaderStage {
    static let kind = StageKind(
        name: "bootloader", summary: "bootloader files and A/B environment",
        applies: { $0.string("bootloader.kind") != "none" },
        make: { ctx in
            let b = ctx.board
            switch b.string("bootloader.kind") {
            case "grub": break
            case "uboot": return try UBootBoot.stage(ctx)
            case "tryboot": return try TrybootBoot.stage(ctx)
            default:
                return .placeholder(name: "bootloader", summary: "bootloader", reason: "\(b.string("bootloader.kind") ?? "") bootloader")
            }
            let target = try GrubTarget(arch: b.arch)
            let slots = try SlotLayout(board: b)
            let tries = Int(b.integer("bootloader.tries") ?? 3)
            let inputs = StageInputs(keys: ctx.keys(["bootloader.*", "arch", "kernel.cmdline", "disk.partition", "os.*"]),
                                     tools: ["grub-mkimage": ctx.toolVersion("grub-mkimage")])
            return Stage(name: "bootloader", summary: "GRUB EFI (\(target.format))", inputs: inputs) { sctx in
                let fetcher = AptFetcher(cacheDirectory: sctx.downloadCache + "/apt", log: { sctx.log.line($0) })
                let deb = try fetcher.fetch(target.package)
                var tree = FSTree()
                let blobs = try BlobStore(directory: sctx.scratchDir + "/blobs")
                _ = try ArchiveImporter.importArchive(deb, into: &tree, blobs: blobs)
                let modDir = sctx.scratchDir + "/grub-modules"
                _ = try TreeExporter.export(tree, subtree: "/usr/lib/grub/" + target.format, to: modDir)
                let efiDir = sctx.outputDir + "/EFI/BOOT"
                try FileSystem.makeDirectories(efiDir)
                try FileSystem.makeDirectories(sctx.outputDir + "/grub")
                let cmd = ["grub-mkimage", "-d", modDir, "-O", target.format, "-o", efiDir + "/" + target.efiName,
                           "-p", "/grub", "--disable-shim-lock"] + GrubConfig.modules
                let r = try Subprocess.run(cmd, environment: ["SOURCE_DATE_EPOCH": String(ctx.epoch)])
                sctx.log.record(r, command: cmd)
                try FileSystem.writeAtomically(sctx.outputDir + "/grub/grub.cfg",
                                               GrubConfig.render(slots: slots.grub, tries: tries, cmdline: b.string("kernel.cmdline") ?? ""))
                try FileSystem.writeAtomically(sctx.outputDir + "/grub/grubenv", try GrubEnv.block(GrubConfig.initialEnv(tries: tries)))
            }
        })
}

struct GrubTarget {
    var format: String
    var efiName: String
    var package: String

    init(arch: String) throws {
        switch arch {
        case "x86_64": (format, efiName, package) = ("x86_64-efi", "BOOTX64.EFI", "grub-efi-amd64-bin")
        case "aarch64": (format, efiName, package) = ("arm64-efi", "BOOTAA64.EFI", "grub-efi-arm64-bin:arm64")
        default: throw MessageError("bootloader.kind = \"grub\" supports x86_64 and aarch64, not \(arch)", exitCode: ExitStatus.usage)
        }
    }
}

/// Which GPT partition numbers hold each slot's kernel and rootfs (from the board layout).
struct SlotLayout: Equatable {
    var kernelA: Int, kernelB: Int, rootA: String, rootB: String

    init(board b: Board) throws {
        var kernel: [String: Int] = [:]
        var root: [String: String] = [:]
        for (i, p) in b.records("disk.partition").enumerated() {
            guard let slot = p["slot"]?.string, let name = p["name"]?.string else { continue }
            if name.hasPrefix("kernel") { kernel[slot] = i + 1 } else if name.hasPrefix("system") || name.hasPrefix("rootfs") { root[slot] = name }
        }
        guard let ka = kernel["A"], let kb = kernel["B"], let ra = root["A"], let rb = root["B"] else {
            throw MessageError("\(b.file): GRUB A/B boot needs partitions kernel* and system* (or rootfs*) with slot = \"A\" and \"B\"", exitCode: ExitStatus.usage)
        }
        (kernelA, kernelB, rootA, rootB) = (ka, kb, ra, rb)
    }

    var grub: GrubSlots { GrubSlots(kernelA: kernelA, kernelB: kernelB, rootA: rootA, rootB: rootB) }
}

