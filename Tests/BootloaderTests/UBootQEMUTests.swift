import Basics
import Bootloader
import Foundation
import Testing
import TestSupport

/// The A/B boot script run by a real U-Boot: Debian's u-boot-qemu (qemu_arm64) under
/// qemu-system-aarch64 -M virt (TCG), on a GPT disk laid out like rpi4-64 (boot with
/// boot.scr, kernel0/system0/kernel1/system1, bootstate with our environment). The
/// "kernels" are not images, so every boot fails after the slot choice and U-Boot resets
/// (-no-reboot ends QEMU); after each run fw_printenv reads the bootstate partition.
@Suite(.serialized) struct UBootQEMUTests {
    static let uboot = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"
    static let envSize = 0x4000
    // start sector, size in sectors
    static let layout: [(name: String, start: Int, size: Int)] = [
        ("boot", 2048, 8192), ("kernel0", 10240, 8192), ("system0", 18432, 2048),
        ("kernel1", 20480, 8192), ("system1", 28672, 2048), ("bootstate", 30720, 2048),
    ]

    struct Tools { var qemu, sfdisk, mkfs, mcopy, printenv, setenv: String }

    static func tools() -> Tools? {
        guard let q = TestEnv.oracle("qemu-system-aarch64", package: "qemu-system-arm"), let sf = TestEnv.oracle("sfdisk", package: "fdisk"),
              let mk = TestEnv.oracle("mkfs.vfat", package: "dosfstools"), let mc = TestEnv.oracle("mcopy", package: "mtools"),
              let pe = TestEnv.oracle("fw_printenv", package: "libubootenv-tool"), let se = TestEnv.oracle("fw_setenv", package: "libubootenv-tool") else { return nil }
        guard FileSystem.exists(uboot) else {
            let msg = "\(uboot) (Debian package u-boot-qemu) is not installed"
            if TestEnv.isCI { Issue.record(Comment(rawValue: msg)) } else { print("SKIP: " + msg) }
            return nil
        }
        return Tools(qemu: q, sfdisk: sf, mkfs: mk, mcopy: mc, printenv: pe, setenv: se)
    }

    static func makeDisk(_ dir: TempDir, script: UBootABScript, t: Tools) throws -> String {
        let disk = dir.sub("disk.img")
        try FileSystem.writeAtomically(disk, [])
        _ = try Subprocess.run(["truncate", "-s", "32M", disk])
        let table = "label: gpt\n" + layout.map { "start=\($0.start), size=\($0.size), name=\($0.name)" }.joined(separator: "\n") + "\n"
        try FileSystem.writeAtomically(dir.sub("table"), table)
        _ = try Subprocess.run(["sh", "-c", "\(t.sfdisk) -q '\(disk)' < '\(dir.sub("table"))'"])
        let scr = try UBootLegacyImage.script(try script.render(), arch: .arm64, time: 0).render()
        try FileSystem.writeAtomically(dir.sub("boot.scr"), scr)
        try FileSystem.writeAtomically(dir.sub("vmlinuz"), "not a kernel\n")
        try FileSystem.writeAtomically(dir.sub("initramfs.img"), "x\n")
        for (name, files) in [("boot", ["boot.scr"]), ("kernel0", ["vmlinuz", "initramfs.img"]), ("kernel1", ["vmlinuz", "initramfs.img"])] {
            let p = try #require(layout.first { $0.name == name })
            let fat = dir.sub(name + ".fat")
            _ = try Subprocess.run([t.mkfs, "-C", fat, String(p.size / 2)])
            _ = try Subprocess.run([t.mcopy, "-i", fat] + files.map { dir.sub($0) } + ["::/"])
            try place(fat, in: disk, sector: p.start)
        }
        try FileSystem.writeAtomically(dir.sub("env"), try script.initialEnvironment().render(size: envSize))
        try place(dir.sub("env"), in: disk, sector: 30720)
        try FileSystem.writeAtomically(dir.sub("fw_env.config"), UBootABScript.fwEnvConfig(device: dir.sub("bootstate"), size: envSize))
        return disk
    }

    static func place(_ file: String, in disk: String, sector: Int) throws {
        _ = try Subprocess.run(["dd", "if=" + file, "of=" + disk, "bs=512", "seek=\(sector)", "conv=notrunc", "status=none"])
    }

    /// One power-on: returns the osbuild lines U-Boot printed.
    static func boot(_ disk: String, t: Tools, log: String) throws -> [String] {
        let r = try Subprocess.run(["timeout", "120", t.qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "512", "-nographic", "-no-reboot",
                                    "-bios", uboot, "-drive", "if=none,file=\(disk),format=raw,id=d0", "-device", "virtio-blk-device,drive=d0"],
                                   check: false)
        try FileSystem.writeAtomically(log, r.stdout)
        return r.stdoutText.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { $0.hasPrefix("osbuild:") }
    }

    static func state(_ dir: TempDir, disk: String, t: Tools) throws -> [String: String] {
        _ = try Subprocess.run(["dd", "if=" + disk, "of=" + dir.sub("bootstate"), "bs=512", "skip=30720", "count=32", "status=none"])
        var out: [String: String] = [:]
        for line in try Subprocess.run([t.printenv, "-c", dir.sub("fw_env.config")]).stdoutText.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2 { out[kv[0]] = kv[1] }
        }
        return out
    }

    static func script() -> UBootABScript {
        var s = UBootABScript(slots: [.init(name: "A", kernelPartition: 2, rootLabel: "system0"), .init(name: "B", kernelPartition: 4, rootLabel: "system1")],
                              tries: 2, envPartition: 6, envSize: envSize, kernelGzip: false, cmdline: "console=ttyAMA0")
        // qemu virt: RAM from 0x40000000.
        (s.kernelAddress, s.ramdiskAddress, s.envAddress, s.compressedAddress) = (0x4400_0000, 0x4C00_0000, 0x4300_0000, 0x5000_0000)
        return s
    }

    @Test func realUBootCountsDownFallsBackAndRefills() throws {
        guard let t = Self.tools() else { return }
        let dir = try TempDir("uboot-qemu")
        let disk = try Self.makeDisk(dir, script: Self.script(), t: t)
        var seen: [String] = []
        for i in 1...5 {
            let lines = try Self.boot(disk, t: t, log: dir.sub("serial\(i).log"))
            let st = try Self.state(dir, disk: disk, t: t)
            seen.append((lines.first ?? "(no osbuild line)") + " | A=\(st["BOOT_A_LEFT"] ?? "-") B=\(st["BOOT_B_LEFT"] ?? "-")")
        }
        #expect(seen == [
            "osbuild: slot A, 1 attempts left | A=1 B=2",
            "osbuild: slot A, 0 attempts left | A=0 B=2",
            "osbuild: slot B, 1 attempts left | A=0 B=1",
            "osbuild: slot B, 0 attempts left | A=0 B=0",
            "osbuild: no slot has attempts left (BOOT_ORDER=A B); refilling and resetting | A=2 B=2",
        ], "serial logs in \(dir.path)")
    }

    @Test func fwSetenvFromLinuxSwitchesTheSlot() throws {
        guard let t = Self.tools() else { return }
        let dir = try TempDir("uboot-qemu-switch")
        let disk = try Self.makeDisk(dir, script: Self.script(), t: t)
        // What RAUC does after installing into B: BOOT_ORDER="B A", BOOT_B_LEFT=tries.
        _ = try Self.state(dir, disk: disk, t: t)
        _ = try Subprocess.run([t.setenv, "-c", dir.sub("fw_env.config"), "BOOT_ORDER", "B A"])
        try Self.place(dir.sub("bootstate"), in: disk, sector: 30720)
        let lines = try Self.boot(disk, t: t, log: dir.sub("serial.log"))
        #expect(lines.first == "osbuild: slot B, 1 attempts left")
        let st = try Self.state(dir, disk: disk, t: t)
        #expect(st["BOOT_ORDER"] == "B A" && st["BOOT_A_LEFT"] == "2" && st["BOOT_B_LEFT"] == "1")
        // The kernel command line U-Boot built for slot B.
        let log = try FileSystem.readText(dir.sub("serial.log"))
        #expect(log.contains("osbuild: booting slot B failed"))
    }

    /// Linux runs our mark-good (the rootfs's script, with Debian's busybox-static, on the
    /// bootstate partition inside the disk image) after every boot: U-Boot keeps choosing
    /// slot A with its counter refilled, where without it the third boot falls back to B.
    @Test func markGoodFromLinuxKeepsTheBootedSlot() throws {
        guard let t = Self.tools(), let bb = TestEnv.oracle("busybox", package: "busybox-static") else { return }
        let dir = try TempDir("uboot-qemu-markgood")
        let ab = Self.script()
        let disk = try Self.makeDisk(dir, script: ab, t: t)
        let script = try dir.write("mark-good", try MarkGoodScript.uboot(ab, partitionFinder: "find_root() { return 1; }"))
        let conf = try dir.write("fw_env.linux", "\(disk) 0x\(String(30720 * 512, radix: 16)) 0x\(String(Self.envSize, radix: 16))\n")
        var seen: [String] = []
        for i in 1...4 {
            let lines = try Self.boot(disk, t: t, log: dir.sub("serial\(i).log"))
            let before = try Self.state(dir, disk: disk, t: t)
            let r = try Subprocess.run([bb, "sh", script, "A"], environment: ["OSBUILD_FW_ENV_CONFIG": conf, "OSBUILD_BUSYBOX": bb], check: false)
            #expect(r.status == 0, "\(r.stdoutText)")
            let after = try Self.state(dir, disk: disk, t: t)
            seen.append((lines.first ?? "(no osbuild line)") + " | A=\(before["BOOT_A_LEFT"] ?? "-") -> \(after["BOOT_A_LEFT"] ?? "-") B=\(after["BOOT_B_LEFT"] ?? "-")")
        }
        #expect(seen == Array(repeating: "osbuild: slot A, 1 attempts left | A=1 -> 2 B=2", count: 4), "serial logs in \(dir.path)")
    }
}
