import Basics
import Boards
import FSTree
import Foundation
import Rootfs
import SquashFS
import StageRunner

/// The kernel: for `kernel.package`, the Debian package (a metapackage is resolved to
/// the versioned image package it depends on) fetched with `apt-get download` into the
/// shared cache. Outputs: `vmlinuz`, `version`, `kernel.img` (a SquashFS holding the
/// image, HAOS-style, for the kernel slot partitions) and `tree/` (the package's files,
/// modules included, as an FSTree for the initramfs stage).
enum KernelStage {
    static let kind = StageKind(
        name: "kernel", summary: "kernel image and modules (prebuilt package or source build)",
        applies: { _ in true },
        make: { ctx in
            let board = ctx.board
            guard let package = board.string("kernel.package") else {
                return .placeholder(name: "kernel", summary: "kernel image and modules", dependencies: ["kernel-config"],
                                    reason: "building the kernel from kernel.source (issue 6, item 5); set kernel.package for a prebuilt kernel")
            }
            let inputs = StageInputs(keys: ctx.keys(["kernel.package", "arch"]), extra: ["SOURCE_DATE_EPOCH": String(ctx.epoch)])
            return Stage(name: "kernel", summary: "prebuilt kernel from \(package)", inputs: inputs) { sctx in
                let debArch = try DebianArch.of(board.arch)
                let real = try DebianArch.resolveMetapackage(package, arch: debArch, log: sctx.log)
                let fetcher = AptFetcher(cacheDirectory: sctx.downloadCache + "/apt", log: { sctx.log.line($0) })
                let deb = try fetcher.fetch(debArch == DebianArch.host ? real : "\(real):\(debArch)")
                sctx.log.line("kernel package \(real): \(deb)")
                var tree = FSTree()
                let blobs = try BlobStore(directory: sctx.scratchDir + "/blobs")
                _ = try ArchiveImporter.importArchive(deb, into: &tree, blobs: blobs, options: .init(log: { sctx.log.line($0) }))
                let boot = tree.lookup("/boot").map { tree.children(of: $0) } ?? []
                guard let image = boot.first(where: { $0.name.hasPrefix("vmlinuz-") || $0.name.hasPrefix("vmlinux-") }) else {
                    throw MessageError("kernel package \(real) (\(deb)) has no /boot/vmlinuz-*")
                }
                let version = String(image.name.drop(while: { $0 != "-" }).dropFirst())
                guard tree.lookup("/lib/modules/" + version) != nil || tree.lookup("/usr/lib/modules/" + version) != nil else {
                    throw MessageError("kernel package \(real) has /boot/\(image.name) but no lib/modules/\(version)")
                }
                let vmlinuz = try ContentReader(tree[image.id].content).readAll()
                try FileSystem.writeAtomically(sctx.outputDir + "/vmlinuz", vmlinuz)
                try FileSystem.writeAtomically(sctx.outputDir + "/version", version + "\n")
                // kernel.img: the image alone in a SquashFS, written for the kernel slots.
                var slot = FSTree(root: .directory(mtime: Timestamp(seconds: ctx.epoch)))
                try slot.insert("/vmlinuz", .file(.bytes(vmlinuz), mtime: Timestamp(seconds: ctx.epoch)))
                _ = try SquashFSWriter(SquashFSOptions(compression: .defaults(.zstd), mkfsTime: UInt32(clamping: ctx.epoch)))
                    .write(tree: slot, to: sctx.outputDir + "/kernel.img")
                if ctx.epoch > 0 { tree.clampMtimes(to: ctx.epoch) }
                try TreeStore.save(tree, to: sctx.outputDir + "/tree")
                sctx.log.line("kernel \(version): \(vmlinuz.count) bytes")
            }
        })
}

/// Debian architecture names and apt helpers for prebuilt inputs.
enum DebianArch {
    static var host: String {
        (try? Subprocess.run(["dpkg", "--print-architecture"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? "amd64"
    }

    static func of(_ arch: String) throws -> String {
        switch arch {
        case "x86_64": "amd64"
        case "aarch64": "arm64"
        case "arm": "armhf"
        case "riscv64": "riscv64"
        default: throw MessageError("no Debian architecture for arch '\(arch)'", exitCode: ExitStatus.usage)
        }
    }

    /// `linux-image-amd64` is a metapackage: the files are in the versioned package it
    /// depends on (linux-image-6.1.0-NN-amd64). Other packages are returned unchanged.
    static func resolveMetapackage(_ package: String, arch: String, log: StageLog) throws -> String {
        let query = arch == host ? package : "\(package):\(arch)"
        let r = try Subprocess.run(["apt-cache", "depends", query], check: false)
        guard r.status == 0 else {
            throw MessageError("apt-cache does not know \(query): \(r.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)) (for a foreign arch: dpkg --add-architecture \(arch) && apt-get update)", exitCode: ExitStatus.environment)
        }
        for line in r.stdoutText.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count == 2, f[0] == "Depends:", f[1].hasPrefix("linux-image-"), !f[1].hasPrefix("<") {
                let dep = String(f[1]).split(separator: ":").first.map(String.init) ?? String(f[1])
                log.line("\(package) -> \(dep)")
                return dep
            }
        }
        return package
    }
}
