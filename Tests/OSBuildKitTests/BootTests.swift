import Basics
import Boards
import Bootloader
import Foundation
@testable import OSBuildKit
import StageRunner
import Testing
import TestSupport

/// The serial-console parser on canned lines (no QEMU needed).
@Suite struct BootTraceTests {
    @Test func phasesAttemptsAndFailuresFromConsoleLines() {
        var t = BootTrace()
        #expect(t.phase == .firmware)
        let lines = [
            "\u{1B}[2J\u{1B}[01;01HBdsDxe: loading Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0)\r",
            "osbuild-grub: booting slot B (try 1 of 3, ORDER=B A)",
            "[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)",
            "osbuild-initramfs: started (kernel 6.1.0-56-amd64)",
            "osbuild-initramfs: FAILED: mount /dev/vda5 (PARTLABEL=system1) as erofs read-only",
            "BdsDxe: loading Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0)",
        ]
        for (i, l) in lines.enumerated() { t.feed(BootTrace.clean(l), at: Double(i)) }
        #expect(t.phase == .firmware)
        #expect(t.grubBoots == ["B"])
        #expect(t.failures == ["initramfs: mount /dev/vda5 (PARTLABEL=system1) as erofs read-only"])
        for l in ["osbuild-grub: booting slot A (try 1 of 3, ORDER=B A)", "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path",
                  "osbuild-initramfs: mounted /dev/vda3 on /newroot (erofs, ro)", "osbuild-rootfs: started"] {
            t.feed(l, at: 10)
        }
        #expect(t.phase == .rootfs)
        #expect(t.phaseDescription == "rootfs (started)")
        #expect(t.booted == nil)
        t.feed("osbuild-boot-ok slot=A version=1.0", at: 11)
        #expect(t.phase == .booted)
        #expect(t.booted?.slot == "A" && t.booted?.version == "1.0")
        #expect(t.grubBoots == ["B", "A"])
        #expect(t.reachedAt[.grub] == 10 && t.reachedAt[.booted] == 11)
    }

    @Test func firmwareShellMeansNoBootableDisk() {
        var t = BootTrace()
        t.feed("BdsDxe: failed to load Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0): Not Found")
        #expect(!t.firmwareShell)
        t.feed("BdsDxe: starting Boot0002 \"EFI Internal Shell\" from Fv(64074AFE-340A-4BE6-94BA-91B5B4D0F71E)")
        #expect(t.firmwareShell && t.phase == .firmware)
        #expect(t.phaseDescription.contains("no bootable EFI loader"))
    }

    @Test func cleanDropsEscapesAndControlCharacters() {
        #expect(BootTrace.clean("\u{1B}[0m\u{1B}[30m\u{1B}[47mWelcome to GRUB!\r") == "Welcome to GRUB!")
        #expect(BootTrace.clean("a\tb\u{7}c") == "a\tbc")
    }

    @Test func machinesPerArchitecture() throws {
        let firmware = try TempDir("fw")
        for f in ["/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd", "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"] {
            try firmware.write(String(f.dropFirst()), "fw")
        }
        let x86 = try BootTest.Machine.forArch("x86_64", accel: .tcg, firmwareRoot: firmware.path)
        #expect(x86.qemu == "qemu-system-x86_64" && x86.machine == "q35" && x86.firmwareVars.hasSuffix("/OVMF_VARS.fd"))
        let arm = try BootTest.Machine.forArch("aarch64", accel: .tcg, firmwareRoot: firmware.path)
        #expect(arm.qemu == "qemu-system-aarch64" && arm.machine == "virt" && arm.firmwareCode.hasSuffix("/AAVMF_CODE.fd"))
        let args = BootTest.qemuArguments(arm, options: .init(image: "/i.img", arch: "aarch64", logPath: "/l", workDir: "/w"),
                                          vars: "/w/v.fd", disk: "/w/d.qcow2", diskFormat: "qcow2")
        #expect(!args.contains("-no-reboot"), "failed boots must reboot into the bootloader")
        #expect(args.contains("file=/w/d.qcow2") == false && args.contains { $0.contains("file=/w/d.qcow2") })
        #expect(throws: MessageError.self) { try BootTest.Machine.forArch("riscv64", accel: .tcg, firmwareRoot: firmware.path) }
        let empty = try TempDir("nofw")
        let e = try #require(throws: MessageError.self) { try BootTest.Machine.forArch("x86_64", accel: .tcg, firmwareRoot: empty.path) }
        #expect(e.exitCode == ExitStatus.environment && e.message.contains("install ovmf"))
    }
}

/// Real boots under TCG (what CI has): the default board to the marker, and GRUB's
/// fallback from a broken slot B to slot A.
@Suite(.serialized) struct QemuBootTests {
    /// The host tools a boot test of `arch` needs: QEMU and its UEFI firmware (OVMF for
    /// x86_64, AAVMF for aarch64), qemu-img, and the oracles that read the image back.
    static func tools(arch: String = "x86_64") -> Bool {
        // Each lookup records a failure under CI=true when the tool is missing.
        let q = arch == "aarch64" ? TestEnv.oracle("qemu-system-aarch64", package: "qemu-system-arm")
                                  : TestEnv.oracle("qemu-system-x86_64", package: "qemu-system-x86")
        let i = TestEnv.oracle("qemu-img", package: "qemu-utils")
        let m = TestEnv.oracle("mcopy", package: "mtools")
        let g = TestEnv.oracle("grub-editenv", package: "grub-common")
        let s = TestEnv.oracle("sfdisk", package: "fdisk")
        let f = TestEnv.oracle("fsck.vfat", package: "dosfstools")
        let (dir, package) = arch == "aarch64" ? ("/usr/share/AAVMF", "qemu-efi-aarch64") : ("/usr/share/OVMF", "ovmf")
        let firmware = FileSystem.exists(dir)
        if !firmware {
            if TestEnv.isCI { Issue.record("\(dir) missing: CI must install \(package)") } else { print("SKIP: \(package) is not installed") }
        }
        return q != nil && i != nil && m != nil && g != nil && s != nil && f != nil && firmware
    }

    /// Partition name -> (byte offset, byte size), read by sfdisk (the oracle, not our reader).
    static func partitions(_ image: String) throws -> [String: (offset: UInt64, size: UInt64)] {
        let r = try Subprocess.run(["sfdisk", "--json", image])
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any]
        let table = obj?["partitiontable"] as? [String: Any]
        let sector = UInt64(table?["sectorsize"] as? Int ?? 512)
        var out: [String: (UInt64, UInt64)] = [:]
        for p in table?["partitions"] as? [[String: Any]] ?? [] {
            guard let name = p["name"] as? String, let start = p["start"] as? Int, let size = p["size"] as? Int else { continue }
            out[name] = (UInt64(start) * sector, UInt64(size) * sector)
        }
        return out
    }

    /// grub/grubenv of the ESP in a raw image, read with mtools and listed by grub-editenv.
    static func grubenv(_ image: String, tmp: TempDir) throws -> [String: String] {
        let esp = try #require(try partitions(image)["boot"])
        let out = tmp.sub("grubenv.read")
        try? FileManager.default.removeItem(atPath: out)
        _ = try Subprocess.run(["mcopy", "-n", "-i", "\(image)@@\(esp.offset)", "::/grub/grubenv", out])
        let listed = try Subprocess.run(["grub-editenv", out, "list"]).stdoutText
        var vars: [String: String] = [:]
        for line in listed.split(separator: "\n") {
            if let eq = line.firstIndex(of: "=") { vars[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        // Our parser must agree with grub-editenv, and the block must still be 1024 bytes.
        let ours = try GrubEnv.parse(try FileSystem.readFile(out))
        #expect(Dictionary(ours, uniquingKeysWith: { $1 }) == vars)
        return vars
    }

    static func fsckESP(_ image: String, tmp: TempDir) throws {
        let esp = try #require(try partitions(image)["boot"])
        let part = tmp.sub("esp.vfat")
        _ = try Subprocess.run(["dd", "if=\(image)", "of=\(part)", "bs=1M", "skip=\(esp.offset)", "count=\(esp.size)",
                                "iflag=skip_bytes,count_bytes", "status=none"])
        let r = try Subprocess.run(["fsck.vfat", "-n", part], check: false)
        #expect(r.status == 0, "fsck.vfat -n on the ESP after boot:\n\(r.stdoutText)\(r.stderrText)")
    }

    @Test func defaultBoardBootsToTheMarkerInSlotA() throws {
        guard Self.tools() else { return }
        let build = try BoardBuild.get("qemu-x86-64")
        let (board, image) = (build.board, build.image)
        let tmp = try TempDir("boot-a")
        var o = BootTest.Options(image: image, arch: board.arch, logPath: tmp.sub("serial.log"), workDir: tmp.sub("work"))
        o.expectSlot = "A"
        o.expectVersion = board.version
        o.timeout = 300
        let r = try BootTest.run(o)
        print("boot test (TCG): slot \(r.slot) version \(r.version) marker after \(String(format: "%.1f", r.seconds)) s; phases \(r.trace.reachedAt.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value))" })")
        #expect(r.slot == "A" && r.version == board.version)
        #expect(r.trace.grubBoots == ["A"])
        #expect(r.trace.failures.isEmpty)
        #expect(r.poweredOff, "the rootfs init powers off after the marker")
        let log = try FileSystem.readText(r.logPath)
        for step in ["osbuild-initramfs: loaded", "osbuild-initramfs: mounted /dev/vda3", "osbuild-rootfs: slot A marked good"] {
            #expect(log.contains(step), "serial log lacks \(step)")
        }
        // The image itself is untouched (overlay); the overlay holds the init's grubenv write.
        let raw = tmp.sub("after.img")
        _ = try Subprocess.run(["qemu-img", "convert", "-O", "raw", r.disk, raw])
        let env = try Self.grubenv(raw, tmp: tmp)
        #expect(env["A_TRY"] == "0", "GRUB counted the try (A_TRY=1), the init must reset it: \(env)")
        #expect(env["ORDER"] == "A B" && env["A_OK"] == "1" && env["B_OK"] == "0" && env["B_TRY"] == "0")
        try Self.fsckESP(raw, tmp: tmp)
        let pristine = try Self.grubenv(image, tmp: tmp)
        #expect(pristine["A_TRY"] == "0")
    }

    /// Both GRUB boards: qemu-x86-64 (OVMF) and generic-aarch64 (AAVMF, qemu-system-aarch64 -M virt).
    @Test(arguments: ["qemu-x86-64", "generic-aarch64"])
    func brokenSlotBFallsBackToAAfterItsTries(_ boardID: String) throws {
        guard Self.tools(arch: boardID == "generic-aarch64" ? "aarch64" : "x86_64") else { return }
        let build = try BoardBuild.get(boardID)
        let (board, image) = (build.board, build.image)
        let tries = Int(board.integer("bootloader.tries") ?? 3)
        let tmp = try TempDir("boot-fallback")
        let img = tmp.sub("fallback.img")
        _ = try Subprocess.run(["cp", "--sparse=always", image, img])
        let parts = try Self.partitions(img)
        let k0 = try #require(parts["kernel0"]), k1 = try #require(parts["kernel1"]), s1 = try #require(parts["system1"])
        // Slot B gets slot A's kernel (so GRUB and the kernel start) but a zeroed rootfs.
        let fh = try #require(FileHandle(forUpdatingAtPath: img))
        try fh.seek(toOffset: k0.offset)
        let kernel = try #require(try fh.read(upToCount: Int(k0.size)))
        try fh.seek(toOffset: k1.offset)
        try fh.write(contentsOf: kernel)
        try fh.seek(toOffset: s1.offset)
        try fh.write(contentsOf: Data(count: Int(min(s1.size, 4 << 20))))
        try fh.close()
        // ORDER="B A", B_OK=1, B_TRY=0, written with our GrubEnv into the ESP with mtools.
        _ = try Self.grubenv(img, tmp: tmp)
        var env = try GrubEnv.parse(try FileSystem.readFile(tmp.sub("grubenv.read")))
        func set(_ k: String, _ v: String) { if let i = env.firstIndex(where: { $0.0 == k }) { env[i].1 = v } else { env.append((k, v)) } }
        set("ORDER", "B A"); set("B_OK", "1"); set("B_TRY", "0")
        let envFile = tmp.sub("grubenv.new")
        try FileSystem.writeAtomically(envFile, try GrubEnv.block(env))
        let esp = try #require(parts["boot"])
        _ = try Subprocess.run(["mcopy", "-o", "-n", "-i", "\(img)@@\(esp.offset)", envFile, "::/grub/grubenv"])
        #expect(try Self.grubenv(img, tmp: tmp)["ORDER"] == "B A")

        var o = BootTest.Options(image: img, arch: board.arch, logPath: tmp.sub("serial.log"), workDir: tmp.sub("work"))
        o.inPlace = true
        o.expectSlot = "A"
        o.timeout = 600
        let r = try BootTest.run(o)
        print("fallback boot test \(boardID) (TCG): \(r.trace.grubBoots.joined(separator: " ")) -> slot \(r.slot) after \(String(format: "%.1f", r.seconds)) s")
        #expect(r.trace.grubBoots == Array(repeating: "B", count: tries) + ["A"])
        #expect(r.trace.failures.count == tries)
        #expect(r.trace.failures.allSatisfy { $0.contains("PARTLABEL=system1") }, "\(r.trace.failures)")
        let log = try FileSystem.readText(r.logPath)
        for n in 1...tries { #expect(log.contains("osbuild-grub: booting slot B (try \(n) of \(tries), ORDER=B A)")) }
        #expect(log.contains("osbuild-grub: booting slot A (try 1 of \(tries), ORDER=B A)"))
        let after = try Self.grubenv(img, tmp: tmp)
        #expect(after["B_TRY"] == String(tries) && after["A_TRY"] == "0" && after["ORDER"] == "B A", "\(after)")
        try Self.fsckESP(img, tmp: tmp)
    }

    // The A/B update through `bundle install` is BundleInstallBootTests (A → B 2.0 → A).

    /// The initramfs finds an MBR root by PARTUUID (disk signature + partition number, as
    /// the Pi boards' cmdline.txt names it): the built kernel + initramfs boot directly
    /// (-kernel/-initrd) from a DOS-labelled disk whose partition 2 holds the rootfs image.
    @Test func initramfsFindsAnMBRRootByPartUUID() throws {
        guard Self.tools() else { return }
        let build = try BoardBuild.get("qemu-x86-64")
        let (board, image) = (build.board, build.image)
        let stages = FileSystem.dirname(FileSystem.dirname(image))
        let tmp = try TempDir("boot-mbr")
        let disk = tmp.sub("mbr.img")
        _ = try Subprocess.run(["truncate", "-s", "64M", disk])
        _ = try Subprocess.run(["sfdisk", "-q", disk], input: Array("label: dos\nlabel-id: 0x1a2b3c4d\n,4M\n,40M\n".utf8))
        let part2 = try #require(try Self.partitionsByNumber(disk)[2])
        _ = try Subprocess.run(["dd", "if=\(stages)/rootfs-image/rootfs.img", "of=\(disk)", "bs=1M", "seek=\(part2 / 1_048_576)",
                                "conv=notrunc", "status=none"])
        let log = tmp.sub("serial.log")
        let r = try Subprocess.run(["timeout", "180", "qemu-system-x86_64", "-nodefaults", "-display", "none", "-monitor", "none", "-M", "q35",
                                    "-m", "512", "-no-reboot", "-kernel", stages + "/kernel/vmlinuz", "-initrd", stages + "/initramfs/initramfs.img",
                                    "-append", "console=ttyS0 root=PARTUUID=1A2B3C4D-02 rauc.slot=A panic=5",
                                    "-drive", "if=none,id=d,format=raw,file=\(disk)", "-device", "virtio-blk-pci,drive=d",
                                    "-serial", "file:\(log)"], check: false)
        let text = try FileSystem.readText(log)
        #expect(r.status == 0, "QEMU did not power off: \(r.status)")
        #expect(text.contains("osbuild-initramfs: root PARTUUID=1A2B3C4D-02 is /dev/vda2"), "\(text.suffix(2000))")
        #expect(text.contains("osbuild-rootfs: no partition named boot with grub/grubenv: slot A not marked good"))
        #expect(text.contains("osbuild-boot-ok slot=A version=\(board.version)"))
    }

    /// Partition number -> byte offset (sfdisk --json; MBR partitions have no names).
    static func partitionsByNumber(_ image: String) throws -> [Int: UInt64] {
        let r = try Subprocess.run(["sfdisk", "--json", image])
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any]
        let table = obj?["partitiontable"] as? [String: Any]
        var out: [Int: UInt64] = [:]
        for (i, p) in (table?["partitions"] as? [[String: Any]] ?? []).enumerated() {
            if let start = p["start"] as? Int { out[i + 1] = UInt64(start) * 512 }
        }
        return out
    }

    /// The failure paths: a timeout names the phase reached and keeps the log (exit 1);
    /// the marker with another slot than expected is exit 4.
    @Test func timeoutAndUnexpectedSlotAreReported() throws {
        guard Self.tools() else { return }
        let build = try BoardBuild.get("qemu-x86-64")
        let (board, image) = (build.board, build.image)
        let tmp = try TempDir("boot-fail")
        var o = BootTest.Options(image: image, arch: board.arch, logPath: tmp.sub("serial.log"), workDir: tmp.sub("work"))
        o.timeout = 2.5
        let timeout = try #require(throws: BootTest.Failure.self) { try BootTest.run(o) }
        #expect(timeout.exitCode == 1)
        #expect(timeout.trace.phase < .booted)
        #expect(timeout.description.contains("timeout") && timeout.description.contains("last boot phase reached: "))
        #expect(timeout.description.contains("serial log: \(tmp.sub("serial.log"))") && FileSystem.exists(tmp.sub("serial.log")))
        o.timeout = 300
        o.expectSlot = "B"
        let wrong = try #require(throws: BootTest.Failure.self) { try BootTest.run(o) }
        #expect(wrong.exitCode == 4)
        #expect(wrong.reason == "booted slot A, expected slot B")
        #expect(wrong.trace.phase == .booted)
    }
}

@Suite struct BootTestCLITests {
    @Test func helpDocumentsExitCodesAndArgumentsAreChecked() throws {
        let help = try CLI.run(["test", "boot", "--help"], project: TestEnv.repoRoot)
        for s in ["Exit status: 0 booted", "4 marker reached with another slot", "--expect-slot", "--accel", "--timeout"] {
            #expect(help.stdoutText.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "  ", with: " ").contains(s), "help lacks \(s)")
        }
        let bad = try CLI.run(["test", "boot", "qemu-x86-64", "--expect-slot", "C"], project: TestEnv.repoRoot, check: false)
        #expect(bad.status == 2 && bad.stderrText.contains("--expect-slot must be A or B"))
        let missing = try CLI.run(["test", "boot", "qemu-x86-64", "--image", "/nonexistent/x.img", "-O", "/tmp/osbuild-unused-boot"],
                                  project: TestEnv.repoRoot, check: false)
        #expect(missing.status == 3 && missing.stderrText.contains("/nonexistent/x.img"), "\(missing.stderrText)")
        let tmp = try CLI.project()
        let none = try CLI.run(["artifacts", "t"], project: tmp.path, check: false)
        #expect(none.status == 1 && none.stderrText.contains("no disk image built yet"))
    }
}
