import Basics
import Boards
import FSTree
import Rootfs
import StageRunner

/// Assembles the root filesystem (base inputs, overlay/, board overlays, device tables,
/// overrides, post-build actions, generated os-release/machine-info/timestamp/build-id)
/// and stores it as an FSTree (tree.manifest + tree.pack) for the image stages.
enum RootfsStage {
    static let kind = StageKind(
        name: "rootfs", summary: "assemble the root filesystem tree",
        applies: { _ in true },
        make: { ctx in
            let spec = try spec(for: ctx)
            var paths = spec.overlays + spec.deviceTables
            for b in spec.base {
                switch b {
                case .directory(let p), .archive(let p): paths.append(p)
                default: break
                }
            }
            for case .writeFile(_, .file(let p), _, _, _) in spec.actions { paths.append(p) }
            paths += [ctx.board.string("bundle.cert")].compactMap { $0.map(ctx.board.resolvePath) }
            var keys = ctx.keys(["rootfs.*", "os.*", "arch", "bootloader.kind", "bootloader.tries", "disk.partition", "disk.table", "disk.id", "bundle.*"])
            // A custom board's RAUC backend is copied into the tree (RaucIntegration); only
            // boards that set it carry the key, so other boards' fingerprints stay as they were.
            if let backend = ctx.board.string("bootloader.backend") {
                paths.append(ctx.board.resolvePath(backend))
                keys["bootloader.backend"] = ctx.board.values["bootloader.backend"]?.value.canonical
            }
            let inputs = StageInputs(paths: paths, keys: keys, extra: ["SOURCE_DATE_EPOCH": String(ctx.epoch)],
                                     resolvedChecks: AptPins.checks(lockPath: spec.aptLockFile))
            let keysDir = ctx.project.root + "/keys"
            let board = ctx.board
            return Stage(name: "rootfs", summary: "assemble the root filesystem tree", inputs: inputs) { sctx in
                var tree = try RootfsAssembler.assemble(spec, downloadCache: sctx.downloadCache, blobDirectory: sctx.scratchDir + "/blobs",
                                                        log: { sctx.log.line($0) }, aptUsed: AptPins.recorder(sctx))
                try RaucIntegration.install(into: &tree, board: board, keysDir: keysDir, mtime: tree.root.mtime)
                try TreeStore.save(tree, to: sctx.outputDir + "/tree")
                try FileSystem.writeAtomically(sctx.outputDir + "/rootfs.list", TreeListing.render(tree))
                let t = tree.totals()
                sctx.log.line("rootfs: \(t.entries) entries, \(t.inodes) inodes, \(t.bytes) bytes of file content")
            }
        })

    /// Board keys → RootfsSpec (see docs/rootfs.md for the fields).
    static func spec(for ctx: PipelineContext) throws -> RootfsSpec {
        let b = ctx.board
        var actions: [RootfsSpec.PostBuildAction] = []
        for p in b.list("rootfs.remove") { actions.append(.remove(p)) }
        for p in b.list("rootfs.mkdir") { actions.append(.mkdir(path: p, mode: 0o755, uid: 0, gid: 0)) }
        for (path, target) in b.map("rootfs.symlinks").sorted(by: { ByteOrder.less($0.key, $1.key) }) {
            actions.append(.symlink(path: path, target: target))
        }
        for (i, f) in b.records("rootfs.file").enumerated() {
            guard let path = f["path"]?.string else { continue }
            let mode = try octal(f["mode"]?.string ?? "0644", key: "rootfs.file[\(i)].mode", board: b)
            if let t = f["template"]?.string {
                actions.append(.writeFile(path: path, template: .inline(t), mode: mode, uid: 0, gid: 0))
            } else if let src = f["source"]?.string {
                actions.append(.writeFile(path: path, template: .file(b.resolvePath(src)), mode: mode, uid: 0, gid: 0))
            } else {
                throw MessageError("\(b.file): rootfs.file[\(i)] (\(path)) needs 'template' or 'source'", exitCode: ExitStatus.usage)
            }
        }
        var overrides: [RootfsSpec.PathOverride] = []
        for (i, o) in b.records("rootfs.override").enumerated() {
            guard let path = o["path"]?.string else { continue }
            overrides.append(RootfsSpec.PathOverride(
                path: path, mode: try o["mode"]?.string.map { try octal($0, key: "rootfs.override[\(i)].mode", board: b) },
                uid: o["uid"]?.integer.map { UInt32(clamping: $0) }, gid: o["gid"]?.integer.map { UInt32(clamping: $0) },
                origin: SourceLocation(file: b.file, key: "rootfs.override[\(i)]")))
        }
        let version = b.version
        let osID = b.osID
        let name = b.string("os.name") ?? osID
        let variant = b.string("os.variant").flatMap { $0.isEmpty ? nil : $0 }
        let release = RootfsSpec.OSRelease(
            name: name, id: osID, version: version, versionID: version, prettyName: "\(name) \(version)",
            cpeName: "cpe:2.3:o:\(b.string("os.cpe-vendor") ?? osID):\(osID):\(version):*:*:*:*:*:*:*",
            variant: variant, variantID: b.string("os.variant-id").flatMap { $0.isEmpty ? nil : $0 })
        let base = try b.list("rootfs.base").map { text -> RootfsSpec.BaseInput in
            if text.hasPrefix("dir:") { return .directory(b.resolvePath(String(text.dropFirst(4)))) }
            if text.hasPrefix("tar:") || text.hasPrefix("deb:") { return .archive(b.resolvePath(String(text.dropFirst(4)))) }
            if let key = try aptKey(text, arch: b.arch) { return .apt(key) }
            return RootfsSpec.BaseInput.parse(b.resolvePath(text))
        }
        return RootfsSpec(
            base: base,
            overlays: [ctx.project.commonOverlay] + b.list("rootfs.overlays").map(b.resolvePath),
            deviceTables: b.list("rootfs.device-tables").map(b.resolvePath),
            overrides: overrides, actions: actions, variables: b.templateVariables,
            osRelease: release,
            machineInfo: .init(chassis: b.string("os.chassis"), deployment: b.string("os.deployment")),
            unsafeMembers: b.string("rootfs.unsafe-members") == "warn-skip" ? .warnSkip : .error,
            sourceDateEpoch: ctx.epoch > 0 ? ctx.epoch : nil,
            aptLockFile: ctx.project.root + "/boards/apt-lock.json")
    }

    /// The lock key of a `rootfs.base` "apt:NAME" entry (nil for other inputs): the
    /// board's architecture (busybox-static:arm64 on an amd64 host). Shared with update-locks.
    static func aptKey(_ text: String, arch: String) throws -> String? {
        guard text.hasPrefix("apt:") else { return nil }
        return try DebianArch.qualify(String(text.dropFirst(4)), arch: arch)
    }

    static func octal(_ s: String, key: String, board: Board) throws -> UInt16 {
        guard let v = UInt16(s, radix: 8), v <= 0o7777 else {
            throw MessageError("\(board.file): \(key) = \"\(s)\" is not an octal mode like 0755", exitCode: ExitStatus.usage)
        }
        return v
    }
}
