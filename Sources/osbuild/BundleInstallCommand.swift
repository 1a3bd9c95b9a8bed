import ArgumentParser
import Basics
import Boards
import Bundle
import Foundation
import OSBuildKit

/// `osbuild bundle install BUNDLE --image IMG`: RAUC's install, offline on an image file.
struct BundleInstall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Install a bundle into the inactive A/B slot of a disk image file and make that slot primary.",
        discussion: """
            Like `rauc install` on the device: checks signature, payload and compatible, writes each image into \
            the slot the bootloader does not boot now (sha256 checked while copying), then sets that slot first \
            in the bootloader environment with a fresh try counter. With --board, compatible, keyring (bundle.cert \
            or the project's keys/dev-ca.cert.pem), slots and bootloader come from the board; without it, slots \
            come from GPT partition names (kernel0/system0 = A, kernel1/system1 = B) and --keyring and \
            --compatible are required. Hooks: osbuild's own tryboot cmdline.txt hook is applied natively \
            (with --board); any other hook is refused. Any refusal leaves the image unchanged. See docs/bundle.md.
            """
    )

    @Option(help: "Disk image file to update in place.") var image: String
    @Option(help: "Board id (boards/<id>.toml in the project): compatible, keyring, slots, bootloader.") var board: String?
    @Option(help: "PEM keyring (overrides the board's).") var keyring: String?
    @Option(help: "RAUC compatible of the system (overrides the board's).") var compatible: String?
    @Option(help: "Certificate purpose to enforce: codesign, smimesign or any.") var checkPurpose: String?
    @Flag(help: "Do not check certificate validity periods.") var noCheckTime = false
    @Argument(help: "Bundle file (.raucb).") var bundle: String

    func run() throws {
        try runReportingErrors {
            var opts = InstallOptions(keyring: keyring, compatible: compatible, checkPurpose: checkPurpose, checkTime: !noCheckTime)
            if let board {
                let project = try Project.discover()
                opts.board = try project.loader.load(board)
                opts.keysDirectory = project.root + "/keys"
            }
            let start = Date()
            let r = try BundleInstaller.install(bundle: bundle, image: image, options: opts)
            let secs = Date().timeIntervalSince(start)
            Console.shared.line("verified \(r.bundle): \(r.checks.joined(separator: ", "))")
            Console.shared.line("compatible '\(r.compatible)', version \(r.version ?? "(none)"); slots from \(r.slotSource)")
            for w in r.images {
                Console.shared.line("  \(w.slotClass) -> partition \(w.partition): \(w.imageSize) of \(w.partitionSize) bytes (\(w.dataBytes) written, rest holes), sha256 \(w.sha256)")
            }
            for h in r.hooks { Console.shared.line("  " + h) }
            Console.shared.line("\(r.bootloader): slot \(r.targetSlot) is now primary (was booting \(r.bootedSlot)); \(String(format: "%.2f", secs)) s")
        }
    }
}
