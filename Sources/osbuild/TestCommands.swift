import ArgumentParser
import Basics
import Foundation
import OSBuildKit
import StageRunner

struct TestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test", abstract: "Test built images.", subcommands: [BootTestCommand.self])
}

struct BootTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot a board's disk image in QEMU (UEFI) and wait for the osbuild-boot-ok marker.",
        discussion: """
            Builds the board first (a no-op when up to date) unless --image or --no-build is \
            given, then boots the image on a copy-on-write overlay (the image is not changed \
            unless --in-place) with a private copy of the firmware variables. x86_64 boards run \
            qemu-system-x86_64 -M q35 with OVMF (package ovmf), aarch64 boards \
            qemu-system-aarch64 -M virt with AAVMF (qemu-efi-aarch64). The guest may reboot \
            (failed boots fall back to the other slot); the test ends at the marker \
            `osbuild-boot-ok slot=<A|B> version=<V>` or at the timeout, and then names the last \
            boot phase reached (firmware, GRUB, kernel, initramfs step, rootfs step).

            Exit status: 0 booted to the marker (with the expected slot/version if given), \
            1 no marker (timeout or QEMU exited; the serial log path is printed) or the build \
            failed, 2 bad board or arguments, 3 QEMU, firmware, /dev/kvm or the image missing, \
            4 marker reached with another slot or version than expected.
            """)

    @OptionGroup var target: BoardOptions
    @Option(help: "Boot this disk image instead of the board's built image (nothing is built).") var image: String?
    @Option(help: "Seconds to wait for the marker.") var timeout: Double = 600
    @Option(help: "Require the booted slot (A or B).") var expectSlot: String?
    @Option(help: "Require the booted version (VERSION_ID).") var expectVersion: String?
    @Option(help: "QEMU accelerator: tcg (default, works everywhere) or kvm.") var accel: BootTest.Accel = .tcg
    @Option(help: "Serial console log (default: BUILD_DIR/logs/boot-test.serial.log).") var log: String?
    @Flag(help: "Boot the image file itself (its grubenv and slots change) instead of an overlay.") var inPlace = false
    @Flag(help: "Do not build the board first; boot what is there.") var noBuild = false
    @Flag(help: "Print only boot phases, not the whole console.") var quiet = false
    @Flag(help: "Skip the boot when this built image (same disk output digest) already passed with the same accelerator.")
    var skipIfPassed = false

    func validate() throws {
        if let s = expectSlot, s != "A" && s != "B" { throw ValidationError("--expect-slot must be A or B, not \(s)") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        try runReportingErrors {
            let (board, runner) = try target.runner()
            let c = Console.shared
            var img = image.map(FileSystem.absolute)
            if img == nil {
                if !noBuild {
                    c.line("osbuild make \(board.id) -> \(runner.buildDir.root)")
                    runner.onResult = { r in c.line(StageLine.render(r, console: c)) }
                    let summary = try runner.run(RunOptions())
                    if summary.failed { throw MessageError("building \(board.id) failed; see the stage logs above") }
                }
                img = runner.buildDir.outputDir("disk") + "/" + board.artifactName("img")
            }
            guard let img else { return }
            // The disk record's digest identifies the built image (make verified it is intact).
            let digest = image == nil ? runner.buildDir.readRecord("disk")?.outputDigest : nil
            if skipIfPassed, let digest, let st = BootTestStamp.read(runner.buildDir), st.imageDigest == digest, st.accel == accel.rawValue,
               expectSlot.map({ $0 == st.slot }) ?? true, expectVersion.map({ $0 == st.version }) ?? true {
                let when = Date(timeIntervalSince1970: st.bootedAt)
                c.line("boot test \(board.id): up to date (this image booted to slot \(st.slot), version \(st.version) in \(String(format: "%.1f", st.seconds)) s under \(st.accel) at \(when))")
                return
            }
            var o = BootTest.Options(image: img, arch: board.arch,
                                     logPath: log.map(FileSystem.absolute) ?? runner.buildDir.root + "/logs/boot-test.serial.log",
                                     workDir: runner.buildDir.root + "/boot-test")
            o.timeout = timeout
            o.expectSlot = expectSlot
            o.expectVersion = expectVersion
            o.accel = accel
            o.inPlace = inPlace
            c.line("boot test \(board.id): \(img) (\(board.arch), \(accel.rawValue)\(inPlace ? ", in place" : ", overlay")), timeout \(Int(timeout)) s")
            let quiet = self.quiet
            let result = try BootTest.run(o, onLine: { line in
                if !quiet { c.line("  | " + line) }
            }, onPhase: { phase, t in
                if quiet { c.line(String(format: "  %6.1f s  %@", t, phase.description)) }
            })
            let phases = BootTrace.Phase.allOrdered.compactMap { p in result.trace.reachedAt[p].map { String(format: "%@ %.1f s", p.description, $0) } }
            c.line(c.paint("boot ok", .green) + ": slot \(result.slot), version \(result.version), marker after \(String(format: "%.1f", result.seconds)) s"
                   + (result.trace.grubBoots.count > 1 ? " (GRUB boots: \(result.trace.grubBoots.joined(separator: " ")))" : ""))
            c.line("  phases: " + phases.joined(separator: ", ") + (result.poweredOff ? "; powered off" : "; stopped (no power-off)"))
            c.line("  serial log: \(result.logPath)")
            if let digest {
                try BootTestStamp(imageDigest: digest, accel: accel.rawValue, slot: result.slot, version: result.version,
                                  seconds: result.seconds, bootedAt: Date().timeIntervalSince1970).write(runner.buildDir)
            }
        }
    }
}

extension BootTest.Accel: ExpressibleByArgument {}

struct ArtifactsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "artifacts", abstract: "List a board's built artifacts (image, .bmap, compressed image, bundle) with their sizes.",
        discussion: "Exit status: 0 listed, 1 the disk image is not built yet, 2 bad board or arguments.")
    @OptionGroup var target: BoardOptions

    func run() throws {
        try runReportingErrors {
            let (board, runner) = try target.runner()
            let list = Artifact.list(board: board, buildDir: runner.buildDir)
            let c = Console.shared
            c.line("artifacts of \(board.id) (\(runner.buildDir.root)):")
            for a in list {
                let sparse = a.allocated < a.size ? " (\(ByteCount.format(a.allocated)) allocated)" : ""
                c.line("  \(StageLine.pad(a.kind, 11)) \(StageLine.pad(ByteCount.format(a.size), 10))\(sparse)  \(a.path)")
            }
            if !list.contains(where: { $0.kind == "image" }) {
                throw MessageError("\(board.id): no disk image built yet; run `osbuild make \(board.id)`")
            }
        }
    }
}
