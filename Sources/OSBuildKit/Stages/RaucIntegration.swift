import Basics
import Bootloader
import Boards
import Bundle
import FSTree

/// `/etc/rauc/system.conf` and `/etc/rauc/keyring.pem` for a board's rootfs, from the
/// board itself: compatible, bootloader backend, and one slot per partition that has a
/// `slot` (kernel*, system*/rootfs*, boot-*), addressed by partition label.
enum RaucIntegration {
    /// Where a `bootloader.kind = "custom"` board's own backend (`bootloader.backend`) goes.
    static let customBackendPath = "/usr/lib/osbuild/custom-backend"

    static func systemConf(for b: Board) throws -> RaucSystemConfig? {
        let bootloader: RaucSystemConfig.Bootloader
        switch b.string("bootloader.kind") ?? "none" {
        case "grub": bootloader = .grub(grubenv: "/mnt/boot/grub/grubenv")
        case "uboot": bootloader = .uboot
        case "tryboot": bootloader = .custom(backend: TrybootBackendScript.installPath)
        case "custom": bootloader = .custom(backend: customBackendPath)
        default: return nil
        }
        var slots: [RaucSystemConfig.Slot] = []
        let parts = try BoardPartitions(board: b)
        for p in parts.entries {
            guard let slot = p.slot else { continue }
            let index = slot == "A" ? 0 : 1
            let device = p.devicePath
            let name = p.name
            if name.hasPrefix("kernel") {
                slots.append(.init(slotClass: "kernel", index: index, device: device, type: "raw", bootname: slot))
            } else if name.hasPrefix("system") || name.hasPrefix("rootfs") {
                // The rootfs follows the slot's kernel (GRUB, U-Boot) or boot partition (tryboot).
                let parent = parts.slot(slot, ["kernel"]).map { _ in "kernel.\(index)" } ?? parts.slot(slot, ["boot"]).map { _ in "boot.\(index)" }
                slots.append(.init(slotClass: "rootfs", index: index, device: device, type: "raw",
                                   bootname: parent == nil ? slot : nil, parent: parent))
            } else if name.hasPrefix("boot") {
                slots.append(.init(slotClass: "boot", index: index, device: device, type: "vfat", bootname: slot))
            }
        }
        if slots.isEmpty { return nil }
        let conf = RaucSystemConfig(compatible: b.compatible, bootloader: bootloader, statusFile: "/data/rauc.status",
                                    bundleFormats: ["-plain"], keyringPath: "/etc/rauc/keyring.pem", slots: slots)
        try conf.validate()
        return conf
    }

    /// Adds system.conf and keyring.pem to `tree`. Development builds trust the generated
    /// development CA (and the board certificate if any); production only the board's.
    static func install(into tree: inout FSTree, board b: Board, keysDir: String, mtime: Timestamp) throws {
        guard let conf = try systemConf(for: b) else { return }
        let release = b.string("os.deployment") == "production"
        let signing = try BundleSigning.resolve(cert: b.string("bundle.cert").map(b.resolvePath), key: b.string("bundle.key").map(b.resolvePath),
                                                developmentKeysDirectory: keysDir, release: release)
        let keyring = try Keyring.assemble(releaseCertificates: b.string("bundle.cert").map { [b.resolvePath($0)] } ?? [],
                                           developmentCertificate: signing.developmentCA, release: release)
        let dir = Inode.directory(mtime: mtime)
        try tree.insert("/etc/rauc", dir, createParents: true, parentTemplate: dir)
        try tree.insert("/etc/rauc/system.conf", .file(.bytes(Array(try conf.render().utf8)), mtime: mtime))
        try tree.insert("/etc/rauc/keyring.pem", .file(.bytes(Array(keyring.utf8)), mtime: mtime))
        // RAUC's U-Boot backend reads and writes the slot variables with fw_printenv/fw_setenv.
        if b.string("bootloader.kind") == "uboot", let env = try UBootBoot.envPartition(board: b) {
            try tree.insert(UBootABScript.fwEnvConfigPath, .file(.bytes(Array(UBootABScript.fwEnvConfig(device: env.devicePath, size: UBootBoot.envSize).utf8)), mtime: mtime))
        }
        // What the booted system runs to make its slot permanent (overlay/sbin/init calls it).
        let markGood: String?
        switch b.string("bootloader.kind") {
        case "uboot": markGood = try UBootBoot.markGoodScript(board: b)
        case "tryboot": markGood = try TrybootBoot.markGoodScript(board: b)
        default: markGood = nil
        }
        if let script = markGood {
            try tree.insert(MarkGoodScript.installPath, .file(.bytes(Array(script.utf8)), permissions: 0o755, mtime: mtime), createParents: true, parentTemplate: dir)
        }
        // The custom backend system.conf names (RAUC's get/set-primary and -state).
        if b.string("bootloader.kind") == "tryboot" {
            try tree.insert(TrybootBackendScript.installPath, .file(.bytes(Array(try TrybootBoot.backendScript(board: b).utf8)), permissions: 0o755, mtime: mtime),
                            createParents: true, parentTemplate: dir)
        }
        // A custom board brings its own backend; the loader checked it is a regular file.
        if b.string("bootloader.kind") == "custom" {
            guard let backend = b.string("bootloader.backend") else {
                throw MessageError("\(b.file): bootloader.kind = \"custom\" needs bootloader.backend", exitCode: ExitStatus.usage)
            }
            let bytes = try FileSystem.readFile(b.resolvePath(backend))
            try tree.insert(customBackendPath, .file(.bytes(bytes), permissions: 0o755, mtime: mtime), createParents: true, parentTemplate: dir)
        }
    }
}

extension RaucIntegration {
    /// The keyring a device built from this board trusts (same rule as `install`), for
    /// verifying bundles offline. Never generates keys: without the board's certificate
    /// or the project's development CA there is nothing to trust.
    static func keyring(for b: Board, keysDir: String) throws -> String {
        let release = b.string("os.deployment") == "production"
        let releaseCerts = b.string("bundle.cert").map { [b.resolvePath($0)] } ?? []
        let devCA = DevelopmentKeys.Paths(directory: keysDir).caCert
        let hasDev = FileSystem.exists(devCA)
        if releaseCerts.isEmpty && (release || !hasDev) {
            throw MessageError("\(b.file): no keyring for board \(b.id): no bundle.cert" + (release ? " (production board)" : " and no development CA at \(devCA)") + "; pass --keyring PEM",
                               exitCode: ExitStatus.usage)
        }
        return try Keyring.assemble(releaseCertificates: releaseCerts, developmentCertificate: hasDev ? devCA : nil, release: release)
    }
}
