import Basics
import Boards
import Bundle
import DiskImage
import Foundation

/// RAUC hooks, offline. On a device RAUC runs the bundle's hook script; an offline
/// install runs nothing from the bundle. The one hook it knows is osbuild's own tryboot
/// hook (TrybootBoot.hook): recognised when the target board is a tryboot board, the
/// hook is a `post-install` hook of [image.boot] and the packed script is byte-identical
/// to the one osbuild generates for that board's slots (so its effect is known exactly);
/// its effect, retargeting cmdline.txt in the boot slot just written, is then applied
/// natively. Every other hook (another script, another slot hook, a bundle
/// `install-check` hook) is refused before the image is touched.
struct OfflineHooks {
    /// Slot classes whose images get osbuild's tryboot post-install edit.
    private(set) var retargeted: Set<String> = []
    private var slots: [TrybootBoot.SlotPartitions] = []
    private var hookFile = ""

    static let cmdline = "/cmdline.txt"
    /// osbuild's hook is a few hundred bytes; a bigger file is not it (and is not read whole).
    static let maxHookBytes = 64 << 10

    static func plan(manifest m: Manifest, bundle: String, board: Board?, reader: any PayloadImageReader) throws -> OfflineHooks {
        var plan = OfflineHooks()
        let file = m.hookFilename ?? "(none)"
        if !m.bundleHooks.isEmpty {
            throw InstallError(.hooks, "\(bundle): [hooks] hooks=\(m.bundleHooks.joined(separator: ";")) runs hook file '\(file)' before installing; offline install runs no bundle hooks; the image is unchanged")
        }
        let hooked = m.images.filter { !$0.hooks.isEmpty }
        guard !hooked.isEmpty else { return plan }
        func refuse(_ img: ManifestImage, _ why: String) -> InstallError {
            InstallError(.hooks, "\(bundle): [\(img.groupName)] uses hooks=\(img.hooks.joined(separator: ";")) from hook file '\(file)'; \(why); offline install runs no hook scripts; the image is unchanged")
        }
        guard let board, board.string("bootloader.kind") == "tryboot" else {
            throw refuse(hooked[0], "the only hook it applies is osbuild's tryboot cmdline.txt hook, for a board with bootloader.kind = \"tryboot\" given with --board")
        }
        let slots = try TrybootBoot.slots(board: board)
        let expected = Array(TrybootBoot.hook(slots).utf8)
        var packed: [UInt8]?
        for img in hooked {
            guard img.slotClass == "boot", img.hooks == ["post-install"] else {
                throw refuse(img, "osbuild's tryboot hook is only a post-install hook of [image.boot]")
            }
            if packed == nil {
                guard let name = m.hookFilename else { throw refuse(img, "the manifest names no hook file") }
                packed = try readHook(bundle: bundle, file: name, reader: reader)
            }
            guard packed == expected else {
                let got = packed ?? []
                throw refuse(img, "that script (\(got.count) bytes, sha256 \(SHA256.hex(got))) is not the hook osbuild generates for board \(board.id) "
                             + "(\(expected.count) bytes, sha256 \(SHA256.hex(expected)))")
            }
            plan.retargeted.insert(img.slotClass)
        }
        plan.slots = slots
        plan.hookFile = file
        return plan
    }

    private static func readHook(bundle: String, file: String, reader: any PayloadImageReader) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var tooBig = false
        try reader.stream(image: bundle, file: file) { buf in
            guard !tooBig else { return }
            if bytes.count + buf.count > maxHookBytes { tooBig = true; return }
            bytes += buf
        }
        // Not osbuild's hook either way; keep what was read so the message shows a size.
        return tooBig ? Array(bytes.prefix(maxHookBytes)) + [0] : bytes
    }

    /// After `slotClass`'s image was written into `partition` (slot `bootname`): what
    /// osbuild's hook would do there. Returns a line for the report, or nil when no hook
    /// applies to that image.
    func apply(slotClass: String, bootname: String, partition: DiskReport.PartitionInfo, partitionName: String, image: OpenImage) throws -> String? {
        guard retargeted.contains(slotClass) else { return nil }
        guard let slot = slots.first(where: { $0.name == bootname }) else {
            throw InstallError(.write, "\(image.path): osbuild's tryboot hook knows slots \(slots.map(\.name).joined(separator: ", ")), not \(bootname); slot \(bootname) stays inactive")
        }
        do {
            let volume = try FATVolume(fd: image.fd, imagePath: image.path, offset: partition.start, length: partition.size)
            let file = try volume.locate(Self.cmdline)
            let old = try volume.read(file)
            let new = TrybootBoot.retargetCmdline(old, root: TrybootBoot.hookRoot(slot), bootname: bootname)
            try volume.replace(file, with: new)
            let text = String(decoding: new, as: UTF8.self).trimmingCharacters(in: .newlines)
            return "post-install hook '\(hookFile)' (osbuild's tryboot hook, applied natively): \(Self.cmdline) in partition \(partitionName) is now \"\(text)\""
        } catch let e as FATVolume.Failure {
            throw InstallError(.write, "\(e.message) (osbuild's tryboot post-install hook for partition \(partitionName)); slot \(bootname) stays inactive")
        }
    }
}
