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

/// Builds qemu-x86-64 once (into a temp -O dir) for the boot tests below.
final class BuiltQemuImage: @unchecked Sendable {
    static let shared = BuiltQemuImage()
    private let lock = NSLock()
    private var result: Swift.Result<(board: Board, image: String), any Error>?
    private var dir: TempDir?

    func get() throws -> (board: Board, image: String) {
        lock.lock()
        defer { lock.unlock() }
        if let result { return try result.get() }
        let r = Swift.Result { () throws -> (board: Board, image: String) in
            let tmp = try TempDir("boot-build")
            dir = tmp
            let project = Project(root: TestEnv.repoRoot)
            let board = try project.loader.load("qemu-x86-64")
            let bd = project.buildDirectory(board: board.id, override: tmp.sub("out"))
            let dl = ProcessInfo.processInfo.environment["OSBUILD_DL_CACHE"] ?? "/var/cache/osbuild/dl"
            let runner = try StageRunner(stages: try Pipeline.stages(for: board, project: project, buildDir: bd), buildDir: bd, downloadCache: dl)
            let start = Date()
            let summary = try runner.run(RunOptions())
            print("boot tests: built qemu-x86-64 in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
            if summary.failed { throw MessageError("building qemu-x86-64 failed: \(summary.results.map { "\($0.name): \($0.outcome)" })") }
            return (board, bd.outputDir("disk") + "/" + board.artifactName("img"))
        }
        result = r
        return try r.get()
    }
}

/// Real boots under TCG (what CI has): the default board to the marker, and GRUB's
/// fallback from a broken slot B to slot A.
@Suite(.serialized) struct QemuBootTests {
    static func tools() -> Bool {
        // Each lookup records a failure under CI=true when the tool is missing.
        let q = TestEnv.oracle("qemu-system-x86_64", package: "qemu-system-x86")
        let i = TestEnv.oracle("qemu-img", package: "qemu-utils")
        let m = TestEnv.oracle("mcopy", package: "mtools")
        let g = TestEnv.oracle("grub-editenv", package: "grub-common")
        let s = TestEnv.oracle("sfdisk", package: "fdisk")
        let f = TestEnv.oracle("fsck.vfat", package: "dosfstools")
        let ovmf = FileSystem.exists("/usr/share/OVMF")
        if !ovmf {
            if TestEnv.isCI { Issue.record("/usr/share/OVMF missing: CI must install ovmf") } else { print("SKIP: ovmf is not installed") }
        }
        return q != nil && i != nil && m != nil && g != nil && s != nil && f != nil && ovmf
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
        let (board, image) = try BuiltQemuImage.shared.get()
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

    @Test func brokenSlotBFallsBackToAAfterItsTries() throws {
        guard Self.tools() else { return }
        let (board, image) = try BuiltQemuImage.shared.get()
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
        print("fallback boot test (TCG): \(r.trace.grubBoots.joined(separator: " ")) -> slot \(r.slot) after \(String(format: "%.1f", r.seconds)) s")
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
}
