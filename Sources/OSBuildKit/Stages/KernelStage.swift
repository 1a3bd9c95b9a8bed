import Basics
import Boards
import DiskImage
import FSTree
import Foundation
import Rootfs
import SquashFS
import StageRunner

/// The kernel: for `kernel.package`, the Debian package (a metapackage is resolved to
/// the versioned image package it depends on) fetched with `apt-get download` into the
/// shared cache. Outputs: `vmlinuz`, `version` and `tree/` (the package's files, modules
/// and a depmod index included, as an FSTree for the initramfs stage).
enum KernelStage {
    static let kind = StageKind(
        name: "kernel", summary: "kernel image and modules (prebuilt package or source build)",
        applies: hasKernel,
        make: { ctx in
            let board = ctx.board
            guard let package = board.string("kernel.package") else {
                return .placeholder(name: "kernel", summary: "kernel image and modules", dependencies: ["kernel-config"],
                                    reason: "building the kernel from kernel.source (issue 6, item 5); set kernel.package for a prebuilt kernel")
            }
            let inputs = StageInputs(keys: ctx.keys(["kernel.package", "arch"]), tools: ["depmod": ctx.toolVersion("depmod")],
                                     extra: ["SOURCE_DATE_EPOCH": String(ctx.epoch)], resolvedChecks: AptPins.checks())
            return Stage(name: "kernel", summary: "prebuilt kernel from \(package)", inputs: inputs) { sctx in
                let debArch = try DebianArch.of(board.arch)
                let (real, key) = try DebianArch.kernelPackage(package, arch: debArch, log: { sctx.log.line($0) })
                let deb = try AptPins.fetcher(sctx).fetch(key)
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
                try generateModuleIndex(&tree, version: version, scratch: sctx.scratchDir, log: sctx.log)
                let vmlinuz = try ContentReader(tree[image.id].content).readAll()
                try FileSystem.writeAtomically(sctx.outputDir + "/vmlinuz", vmlinuz)
                try FileSystem.writeAtomically(sctx.outputDir + "/version", version + "\n")
                if ctx.epoch > 0 { tree.clampMtimes(to: ctx.epoch) }
                try TreeStore.save(tree, to: sctx.outputDir + "/tree")
                sctx.log.line("kernel \(version): \(vmlinuz.count) bytes")
            }
        })
}

/// Boards without kernel.package or kernel.source build only filesystem images.
let hasKernel: @Sendable (Board) -> Bool = { $0.string("kernel.package") != nil || $0.string("kernel.source") != nil }

/// Debian's kernel packages ship no modules.dep (their postinst runs depmod): export the
/// modules, run kmod's depmod on the copy (no root needed), and take its index files back
/// into the tree, as a kernel build's modules_install would leave them.
func generateModuleIndex(_ tree: inout FSTree, version: String, scratch: String, log: StageLog) throws {
    let modPath = tree.lookup("/lib/modules/" + version) != nil ? "/lib/modules/" + version : "/usr/lib/modules/" + version
    if tree.lookup(modPath + "/modules.dep") != nil { return }
    let root = scratch + "/depmod"
    _ = try TreeExporter.export(tree, subtree: modPath, to: root + "/lib/modules/" + version, linkHostFiles: true)
    let r = try Subprocess.run(["depmod", "-b", root, version])
    log.record(r, command: ["depmod", "-b", root, version])
    let mtime = tree[tree.lookup(modPath) ?? FSTree.rootID].mtime
    for name in try FileSystem.listDirectory(root + "/lib/modules/" + version).sorted(by: ByteOrder.less) where name.hasPrefix("modules.") {
        guard tree.lookup(modPath + "/" + name) == nil else { continue }
        let bytes = try FileSystem.readFile(root + "/lib/modules/" + version + "/" + name)
        try tree.insert(modPath + "/" + name, .file(bytes.isEmpty ? .empty : .bytes(bytes), mtime: mtime))
    }
}


/// Debian architecture names and apt helpers for prebuilt inputs.
enum DebianArch {
    /// The host's Debian architecture: the one this osbuild binary was built for. Asking
    /// dpkg instead cost a process on every run, a no-op `make` included (board setup
    /// qualifies apt inputs), about half of that no-op's time.
    static let host: String = {
        #if arch(x86_64)
        return "amd64"
        #elseif arch(arm64)
        return "arm64"
        #elseif arch(riscv64)
        return "riscv64"
        #else
        return (try? Subprocess.run(["dpkg", "--print-architecture"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? "amd64"
        #endif
    }()

    static func of(_ arch: String) throws -> String {
        switch arch {
        case "x86_64": "amd64"
        case "aarch64": "arm64"
        case "arm": "armhf"
        case "riscv64": "riscv64"
        default: throw MessageError("no Debian architecture for arch '\(arch)'", exitCode: ExitStatus.usage)
        }
    }

    /// "NAME" -> "NAME:ARCH" when the target's Debian architecture differs from the host's
    /// (apt-get download needs it, and the lock file then pins the right file). Names that
    /// already carry an architecture or a version pin stay as they are.
    static func qualify(_ package: String, arch: String) throws -> String {
        let debArch = try of(arch)
        if debArch == host || package.contains(":") || package.contains("=") { return package }
        return package + ":" + debArch
    }

    /// The kernel stage's package for `kernel.package` on Debian arch `arch`: the versioned
    /// package (metapackage resolved) and its lock key (arch-qualified for a foreign arch).
    /// `update-locks` uses it too, so it pins exactly what the stage fetches.
    static func kernelPackage(_ package: String, arch: String, log: (String) -> Void) throws -> (package: String, key: String) {
        let real = try resolveMetapackage(package, arch: arch, log: log)
        return (real, arch == host ? real : "\(real):\(arch)")
    }

    /// `linux-image-amd64` is a metapackage: the files are in the versioned package it
    /// depends on (linux-image-6.1.0-NN-amd64). Other packages are returned unchanged.
    static func resolveMetapackage(_ package: String, arch: String, log: (String) -> Void) throws -> String {
        let query = arch == host ? package : "\(package):\(arch)"
        let r = try Subprocess.run(["apt-cache", "depends", query], check: false)
        guard r.status == 0 else {
            throw MessageError("apt-cache does not know \(query): \(r.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)) (for a foreign arch: dpkg --add-architecture \(arch) && apt-get update)", exitCode: ExitStatus.environment)
        }
        for line in r.stdoutText.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count == 2, f[0] == "Depends:", f[1].hasPrefix("linux-image-"), !f[1].hasPrefix("<") {
                let dep = String(f[1]).split(separator: ":").first.map(String.init) ?? String(f[1])
                log("\(package) -> \(dep)")
                return dep
            }
        }
        return package
    }
}

/// What a kernel slot partition holds (HAOS-style kernel.img): a SquashFS with `vmlinuz`
/// and, when the board has one, `initramfs.img` — updated together, so a slot's kernel
/// and its modules always match.
enum KernelImageStage {
    static let kind = StageKind(
        name: "kernel-image", summary: "kernel slot image (SquashFS: vmlinuz + initramfs)",
        applies: hasKernel,
        make: { ctx in
            let epoch = ctx.epoch
            // U-Boot boards: vfat, as big as the first kernel* partition.
            let vfatSize: UInt64? = ctx.board.string("bootloader.kind") == "uboot"
                ? ctx.board.records("disk.partition").first { ($0["name"]?.string ?? "").hasPrefix("kernel") }?["size"]?.integer.map { UInt64($0) } ?? (64 << 20)
                : nil
            return Stage(name: "kernel-image", summary: vfatSize == nil ? "kernel slot image" : "kernel slot image (vfat)", dependencies: ["kernel", "initramfs"],
                         inputs: StageInputs(keys: ["vfat-size": vfatSize.map { String($0) } ?? "-"], extra: ["SOURCE_DATE_EPOCH": String(epoch)])) { sctx in
                let t = Timestamp(seconds: epoch)
                var slot = FSTree(root: .directory(mtime: t))
                let vmlinuz = try sctx.input("kernel") + "/vmlinuz"
                try slot.insert("/vmlinuz", .file(.hostFile(path: vmlinuz, size: try FileSystem.stat(vmlinuz).size), mtime: t))
                if let initramfs = sctx.upstream["initramfs"].map({ $0 + "/initramfs.img" }) {
                    try slot.insert("/initramfs.img", .file(.hostFile(path: initramfs, size: try FileSystem.stat(initramfs).size), mtime: t))
                }
                if let size = vfatSize {
                    // U-Boot reads FAT but (Debian's build) not SquashFS: a vfat image the
                    // size of the kernel partition, fixed volume id.
                    let spec = FilesystemSpec(kind: .vfat, source: .tree(slot), label: "KERNEL", uuid: "0B00C0DE")
                    try FilesystemMaker.build(spec, size: size, to: sctx.outputDir + "/kernel.img", epoch: epoch,
                                              work: sctx.scratchDir + "/vfat", partition: "kernel slot image")
                    return
                }
                // The payload is already compressed: store it (gzip level 1 keeps it small and fast).
                _ = try SquashFSWriter(SquashFSOptions(compression: .gzip(level: 1), mkfsTime: UInt32(clamping: epoch)))
                    .write(tree: slot, to: sctx.outputDir + "/kernel.img")
            }
        })
}
