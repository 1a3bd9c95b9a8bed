import Basics
import Boards
import FSTree
import Rootfs
import StageRunner

/// Bootloader files. GRUB EFI (x86_64, aarch64): BOOTX64.EFI / BOOTAA64.EFI made with
/// grub-mkimage from Debian's grub-efi-*-bin modules (fetched like any apt input), a
/// grub.cfg that picks slot A or B from grubenv, and the initial grubenv (written natively).
/// U-Boot and Raspberry Pi tryboot are later work (issue 9).
enum BootloaderStage {
    static let kind = StageKind(
        name: "bootloader", summary: "bootloader files and A/B environment",
        applies: { $0.string("bootloader.kind") != "none" },
        make: { ctx in
            let b = ctx.board
            guard b.string("bootloader.kind") == "grub" else {
                return .placeholder(name: "bootloader", summary: "bootloader", reason: "\(b.string("bootloader.kind") ?? "") bootloader (issue 9)")
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
                                               GrubConfig.render(slots: slots, tries: tries, cmdline: b.string("kernel.cmdline") ?? ""))
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
}

/// grub.cfg with RAUC's GRUB backend variables: ORDER (slot preference), X_OK (slot
/// usable), X_TRY (attempts so far). Each boot of a slot counts one try; after `tries`
/// failed attempts the slot is skipped and the next in ORDER boots. Userspace marks a good
/// boot by resetting X_TRY=0 (`rauc status mark-good`).
enum GrubConfig {
    static let modules = ["part_gpt", "part_msdos", "fat", "ext2", "squash4", "normal", "linux", "boot", "configfile",
                          "loadenv", "echo", "test", "search", "search_label", "search_fs_uuid", "efi_gop", "all_video",
                          "gzio", "xzio", "zstd", "serial", "terminal", "sleep", "reboot", "halt"]

    static func initialEnv(tries: Int) -> [(String, String)] {
        [("ORDER", "A B"), ("A_OK", "1"), ("B_OK", "0"), ("A_TRY", "0"), ("B_TRY", "0")]
    }

    static func render(slots: SlotLayout, tries: Int, cmdline: String) -> String {
        var s = """
            # Generated by osbuild. A/B slot selection (RAUC GRUB backend variables).
            serial --unit=0 --speed=115200
            terminal_input console serial
            terminal_output console serial
            set timeout=0
            set default=0
            load_env ORDER A_OK B_OK A_TRY B_TRY
            if [ -z "$ORDER" ]; then set ORDER="A B"; fi
            set slot=""
            for s in $ORDER; do
              if [ -n "$slot" ]; then continue; fi
              if [ "$s" = "A" ]; then set ok="$A_OK"; set try="$A_TRY"; else set ok="$B_OK"; set try="$B_TRY"; fi
              if [ "$ok" != "1" ]; then continue; fi

            """
        // No arithmetic in GRUB script: count tries by string states 0..tries-1.
        s += "  set next=\"\"\n"
        for n in 0..<tries { s += "  if [ \"$try\" = \"\(n)\" ]; then set next=\"\(n + 1)\"; fi\n" }
        s += """
              if [ -z "$next" ]; then continue; fi
              set slot="$s"
              if [ "$s" = "A" ]; then set A_TRY="$next"; else set B_TRY="$next"; fi
              save_env A_TRY B_TRY
            done
            if [ -z "$slot" ]; then echo "osbuild: no bootable slot (ORDER=$ORDER)"; sleep 5; reboot; fi
            if [ "$slot" = "A" ]; then set kpart=\(slots.kernelA); set root_label=\(slots.rootA); else set kpart=\(slots.kernelB); set root_label=\(slots.rootB); fi
            menuentry "osbuild slot $slot" {
              linux (hd0,gpt$kpart)/vmlinuz root=PARTLABEL=$root_label rauc.slot=$slot ro \(cmdline)
              initrd (hd0,gpt$kpart)/initramfs.img
            }

            """
        return s
    }
}

/// GRUB's environment block: "# GRUB Environment Block\n", KEY=value lines, padded with
/// '#' to exactly 1024 bytes (what grub-editenv writes and load_env/save_env expect).
public enum GrubEnv {
    public static let size = 1024
    static let header = "# GRUB Environment Block\n"

    public static func block(_ vars: [(String, String)]) throws -> [UInt8] {
        var out = Array(header.utf8)
        for (k, v) in vars {
            guard !k.isEmpty, !k.contains("="), !k.contains("\n"), !v.contains("\n") else {
                throw MessageError("grubenv: invalid variable \(k)=\(v)")
            }
            out += Array("\(k)=\(v)\n".utf8)
        }
        guard out.count <= size else { throw MessageError("grubenv: \(out.count) bytes of variables exceed the 1024-byte block") }
        return out + [UInt8](repeating: UInt8(ascii: "#"), count: size - out.count)
    }

    public static func parse(_ bytes: [UInt8]) throws -> [(String, String)] {
        guard bytes.count == size, bytes.starts(with: Array(header.utf8)) else {
            throw MessageError("not a GRUB environment block (must be 1024 bytes starting with '\(header.dropLast())')")
        }
        var vars: [(String, String)] = []
        for line in String(decoding: bytes.dropFirst(header.utf8.count), as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("#") { break }
            guard let eq = line.firstIndex(of: "=") else { continue }
            vars.append((String(line[..<eq]), String(line[line.index(after: eq)...])))
        }
        return vars
    }
}
