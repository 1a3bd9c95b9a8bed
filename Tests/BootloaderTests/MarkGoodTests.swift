import Basics
import Bootloader
import Codecs
import Foundation
import Testing
import TestSupport

/// The generated mark-good scripts, run by the same busybox-static the rootfs carries
/// (Debian's, 1.35), on files standing in for the partitions; the real tools judge the
/// result: fw_printenv/fw_setenv (libubootenv-tool) for the U-Boot environment,
/// fsck.vfat and mtools for autoboot.txt. Partition lookup is the image's business
/// (find_root from the initramfs); here the paths are given directly.
@Suite struct MarkGoodUBootTests {
    static let size = 0x4000
    static let ab = UBootABScript(slots: [.init(name: "A", kernelPartition: 2, rootLabel: "system0"), .init(name: "B", kernelPartition: 4, rootLabel: "system1")],
                                  tries: 3, envPartition: 6, envSize: size, kernelGzip: false, cmdline: "")
    static let noFinder = "find_root() { return 1; }"

    struct Tools { var busybox, printenv, setenv: String }
    static func tools() -> Tools? {
        guard let bb = TestEnv.oracle("busybox", package: "busybox-static"), let pe = TestEnv.oracle("fw_printenv", package: "libubootenv-tool"),
              let se = TestEnv.oracle("fw_setenv", package: "libubootenv-tool") else { return nil }
        return Tools(busybox: bb, printenv: pe, setenv: se)
    }

    /// Runs the generated script for `slot` with fw_env.config `conf`; returns (status, output).
    static func markGood(_ slot: String, conf: String, dir: TempDir, t: Tools, script: String? = nil) throws -> (Int32, String) {
        let path = try dir.write("mark-good", try script ?? MarkGoodScript.uboot(ab, partitionFinder: noFinder), mode: 0o755)
        try FileSystem.makeDirectories(dir.sub("tmp"))
        let r = try Subprocess.run([t.busybox, "sh", path, slot], environment: ["OSBUILD_FW_ENV_CONFIG": conf, "OSBUILD_BUSYBOX": t.busybox, "TMPDIR": dir.sub("tmp")], check: false)
        #expect(try FileSystem.listDirectory(dir.sub("tmp")).isEmpty, "temporary files left behind")
        return (r.status, r.stdoutText + r.stderrText)
    }

    static func printenv(_ conf: String, t: Tools) throws -> [String: String] {
        var out: [String: String] = [:]
        for line in try Subprocess.run([t.printenv, "-c", conf]).stdoutText.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            out[kv[0]] = kv.count == 2 ? kv[1] : ""
        }
        return out
    }

    /// A 64 KiB "partition" of noise with the environment at `offset`.
    static func disk(_ env: [UInt8], at offset: Int, dir: TempDir) throws -> String {
        var bytes = (0..<0x10000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        bytes.replaceSubrange(offset..<(offset + env.count), with: env)
        try FileSystem.writeAtomically(dir.sub("disk"), bytes)
        return dir.sub("disk")
    }

    @Test func singleCopyRefillsTheBootedSlotAndRewritesOneBlock() throws {
        guard let t = Self.tools() else { return }
        let dir = try TempDir("markgood-single")
        // As U-Boot leaves it after one attempt of slot B (boot.cmd exports these three).
        var env = Self.ab.initialEnvironment()
        env["BOOT_ORDER"] = "B A"
        env["BOOT_B_LEFT"] = "2"
        let before = try Self.disk(try env.render(size: Self.size), at: 0x8000, dir: dir)
        let original = try FileSystem.readFile(before)
        let conf = try dir.write("fw_env.config", "\(before) 0x8000 0x4000\n")
        let (status, out) = try Self.markGood("B", conf: conf, dir: dir, t: t)
        #expect(status == 0, "\(out)")
        #expect(out.contains("osbuild-mark-good: slot B marked good (BOOT_B_LEFT=3, was 2"))
        #expect(try Self.printenv(conf, t: t) == ["BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"])
        let after = try FileSystem.readFile(before)
        let changed = (0..<after.count).filter { after[$0] != original[$0] }
        #expect(!changed.isEmpty && changed.allSatisfy { (0x8000..<0x8200).contains($0) }, "only the first block of the environment: \(changed)")
        // Byte-equal to our own writer with the same variables.
        env["BOOT_B_LEFT"] = "3"
        #expect(Array(after[0x8000..<0xC000]) == (try env.render(size: Self.size)))
        // Again: nothing left to do, nothing written.
        let (s2, o2) = try Self.markGood("B", conf: conf, dir: dir, t: t)
        #expect(s2 == 0 && o2.contains("already good"), "\(o2)")
        #expect(try FileSystem.readFile(before) == after)
    }

    @Test func valueLengthChangesAndFwSetenvLayout() throws {
        guard let t = Self.tools() else { return }
        let dir = try TempDir("markgood-len")
        // fw_setenv's own layout (sorted, its padding), values of other lengths, extra variables.
        try FileSystem.writeAtomically(dir.sub("env"), try UBootEnvironment([("x", "1")]).render(size: Self.size, padding: 0))
        // libubootenv reads the size as hex even without 0x.
        let conf = try dir.write("fw_env.config", "\(dir.sub("env")) 0 4000\n")
        for (k, v) in [("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "10"), ("BOOT_B_LEFT", "0"), ("bootcmd", "run distro_bootcmd; echo a=b")] {
            _ = try Subprocess.run([t.setenv, "-c", conf, k, v])
        }
        var (status, out) = try Self.markGood("A", conf: conf, dir: dir, t: t)
        #expect(status == 0, "\(out)")
        #expect(try Self.printenv(conf, t: t) == ["BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0", "bootcmd": "run distro_bootcmd; echo a=b", "x": "1"])
        _ = try Subprocess.run([t.setenv, "-c", conf, "BOOT_B_LEFT", ""])
        _ = try Subprocess.run([t.setenv, "-c", conf, "BOOT_B_LEFT", "1"])
        (status, out) = try Self.markGood("B", conf: conf, dir: dir, t: t)
        #expect(status == 0, "\(out)")
        #expect(try Self.printenv(conf, t: t)["BOOT_B_LEFT"] == "3")
        #expect(try UBootEnvironment.parse(try FileSystem.readFile(dir.sub("env")))["bootcmd"] == "run distro_bootcmd; echo a=b")
    }

    @Test func redundantWritesTheInactiveCopyWithTheNextFlags() throws {
        guard let t = Self.tools() else { return }
        let dir = try TempDir("markgood-redund")
        var active = Self.ab.initialEnvironment()
        active["BOOT_A_LEFT"] = "1"
        for (fa, fb, newFlags) in [(5, 4, 6), (255, 254, 0), (0, 255, 1)] as [(UInt8, UInt8, UInt8)] {
            active.redundant = true
            active.flags = fa
            var older = Self.ab.initialEnvironment()
            older.redundant = true
            older.flags = fb
            older["BOOT_A_LEFT"] = "2"
            let a = try active.render(size: Self.size), b = try older.render(size: Self.size)
            // Active copy second on disk for the (0, 255) case: the wrap makes 0 newer than 255.
            let (first, second) = fa == 0 ? (b, a) : (a, b)
            try FileSystem.writeAtomically(dir.sub("env"), first + second)
            let conf = try dir.write("fw_env.config", "\(dir.sub("env")) 0x0 0x4000\n\(dir.sub("env")) 0x4000 0x4000\n")
            #expect(try Self.printenv(conf, t: t)["BOOT_A_LEFT"] == "1", "fw_printenv sees the active copy first (flags \(fa)/\(fb))")
            let (status, out) = try Self.markGood("A", conf: conf, dir: dir, t: t)
            #expect(status == 0, "\(out)")
            let bytes = try FileSystem.readFile(dir.sub("env"))
            let activeAt = fa == 0 ? 1 : 0
            let keptBytes = activeAt == 0 ? Array(bytes[0..<Self.size]) : Array(bytes[Self.size...])
            #expect(keptBytes == a, "the active copy is untouched (power-cut safety)")
            let (env, index) = try UBootEnvironment.parseRedundant(Array(bytes[0..<Self.size]), Array(bytes[Self.size...]))
            #expect(index == 1 - activeAt && env.flags == newFlags && env["BOOT_A_LEFT"] == "3", "flags \(fa)/\(fb): copy \(index) flags \(env.flags)")
            #expect(try Self.printenv(conf, t: t) == ["BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"])
            // fw_setenv continues from our copy (writes the other one with the next counter).
            _ = try Subprocess.run([t.setenv, "-c", conf, "BOOT_B_LEFT", "2"])
            let again = try FileSystem.readFile(dir.sub("env"))
            let (e2, i2) = try UBootEnvironment.parseRedundant(Array(again[0..<Self.size]), Array(again[Self.size...]))
            #expect(i2 == activeAt && e2.flags == newFlags &+ 1 && e2["BOOT_A_LEFT"] == "3" && e2["BOOT_B_LEFT"] == "2")
        }
        // A corrupt copy: the valid one is the active one whatever its counter.
        var good = Self.ab.initialEnvironment()
        good.redundant = true
        good.flags = 1
        good["BOOT_B_LEFT"] = "0"
        var bad = try good.render(size: Self.size)
        bad[4] = 9
        bad[40] ^= 0x55
        try FileSystem.writeAtomically(dir.sub("env"), bad + (try good.render(size: Self.size)))
        let conf = try dir.write("fw_env.config", "\(dir.sub("env")) 0 0x4000\n\(dir.sub("env")) 0x4000 0x4000\n")
        let (status, out) = try Self.markGood("B", conf: conf, dir: dir, t: t)
        #expect(status == 0, "\(out)")
        let bytes = try FileSystem.readFile(dir.sub("env"))
        let (env, index) = try UBootEnvironment.parseRedundant(Array(bytes[0..<Self.size]), Array(bytes[Self.size...]))
        #expect(index == 0 && env.flags == 2 && env["BOOT_B_LEFT"] == "3")
    }

    @Test func unexpectedStateFailsAndWritesNothing() throws {
        guard let t = Self.tools() else { return }
        let dir = try TempDir("markgood-bad")
        let good = try Self.ab.initialEnvironment().render(size: Self.size)
        func attempt(_ slot: String, _ image: [UInt8], conf confText: String? = nil, _ expected: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
            try FileSystem.writeAtomically(dir.sub("env"), image)
            let conf = try dir.write("fw_env.config", confText ?? "\(dir.sub("env")) 0 0x4000\n")
            let (status, out) = try Self.markGood(slot, conf: conf, dir: dir, t: t)
            #expect(status == 1, "\(out)", sourceLocation: sourceLocation)
            #expect(out.contains("osbuild-mark-good: FAILED: ") && out.contains(expected), "\(out)", sourceLocation: sourceLocation)
            #expect(try FileSystem.readFile(dir.sub("env")) == image, "left untouched", sourceLocation: sourceLocation)
        }
        var corrupt = good
        corrupt[30] ^= 1
        try attempt("A", corrupt, "stored CRC32")
        try attempt("C", good, "unknown slot 'C' (this image has slots A B)")
        try attempt("A", try UBootEnvironment([("BOOT_ORDER", "B"), ("BOOT_A_LEFT", "1")]).render(size: Self.size), "slot A is not in BOOT_ORDER='B'")
        try attempt("B", try UBootEnvironment([("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "1")]).render(size: Self.size), "no BOOT_B_LEFT in the U-Boot environment")
        try attempt("A", try UBootEnvironment([("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "x1")]).render(size: Self.size), "BOOT_A_LEFT='x1' is not a number")
        try attempt("A", try UBootEnvironment([("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "1"), ("BOOT_A_LEFT", "2")]).render(size: Self.size), "BOOT_A_LEFT is set 2 times")
        // A single-copy config on a redundant image: the CRC does not match at that header size.
        var r = Self.ab.initialEnvironment()
        r.redundant = true
        try attempt("A", try r.render(size: Self.size), "stored CRC32")
        try attempt("A", corrupt + corrupt, conf: "\(dir.sub("env")) 0 0x4000\n\(dir.sub("env")) 0x4000 0x4000\n", "neither environment copy has a valid CRC32")
        try attempt("A", good, conf: "\(dir.sub("env")) zero 0x4000\n", "the offset must be a non-negative number")
        try attempt("A", good, conf: "\(dir.sub("nonexistent")) 0 0x4000\n", "not found")
        // No list terminator anywhere in the data area.
        var full = [UInt8](repeating: UInt8(ascii: "a"), count: Self.size)
        let crc = CRC32.checksum(Array(full[4...]))
        full[0...3] = [UInt8(crc & 0xff), UInt8(crc >> 8 & 0xff), UInt8(crc >> 16 & 0xff), UInt8(crc >> 24)]
        try attempt("A", full, "has no end")
    }
}

/// The tryboot script's decisions against a fake device-tree directory and a directory
/// standing in for the mounted boot-control partition (this host's kernel may lack vfat;
/// the FAT itself is judged by fsck.vfat and mtype after a real kernel ran the script:
/// ShippedBoardBuildTests.trybootCommitFromLinux).
@Suite struct MarkGoodTrybootTests {
    static let slots: [(name: String, bootPartition: Int)] = [("A", 2), ("B", 3)]

    static func busybox() -> String? { TestEnv.oracle("busybox", package: "busybox-static") }

    /// autoboot.txt with `boot`/`tryboot` partitions, and chosen/bootloader/{tryboot,partition}
    /// (nil: property absent) as 32-bit big-endian values.
    static func setup(_ dir: TempDir, boot: Int, tryboot: Int, flag: UInt32?, partition: UInt32?) throws {
        for d in ["dt", "ctl", "tmp"] { try? FileSystem.removeTree(dir.sub(d)) }
        try FileSystem.makeDirectories(dir.sub("ctl"))
        try FileSystem.makeDirectories(dir.sub("tmp"))
        try FileSystem.writeAtomically(dir.sub("ctl/autoboot.txt"), try Autoboot(bootPartition: boot, trybootPartition: tryboot).render())
        let dt = dir.sub("dt/chosen/bootloader")
        try FileSystem.makeDirectories(dt)
        let be = { (v: UInt32) in [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        if let flag { try FileSystem.writeAtomically(dt + "/tryboot", be(flag)) }
        if let partition { try FileSystem.writeAtomically(dt + "/partition", be(partition)) }
    }

    static func run(_ slot: String, _ dir: TempDir, busybox: String) throws -> (Int32, String) {
        let script = try dir.write("mark-good", try MarkGoodScript.tryboot(slots: slots, controlPartition: "PARTUUID=5a1b2c3d-01", partitionFinder: "find_root() { return 1; }"))
        let r = try Subprocess.run([busybox, "sh", script, slot], environment: [
            "OSBUILD_DEVICE_TREE": dir.sub("dt"), "OSBUILD_BOOTCTL_DIR": dir.sub("ctl"), "OSBUILD_BUSYBOX": busybox, "TMPDIR": dir.sub("tmp"),
        ], check: false)
        #expect(try FileSystem.listDirectory(dir.sub("tmp")).isEmpty, "temporary files left behind")
        #expect(try FileSystem.listDirectory(dir.sub("ctl")) == ["autoboot.txt"])
        return (r.status, r.stdoutText + r.stderrText)
    }

    @Test func trybootIntoTheOtherSlotCommitsIt() throws {
        guard let bb = Self.busybox() else { return }
        let dir = try TempDir("markgood-tryboot")
        try Self.setup(dir, boot: 2, tryboot: 3, flag: 1, partition: 3)
        let (status, out) = try Self.run("B", dir, busybox: bb)
        #expect(status == 0, "\(out)")
        #expect(out.contains("slot B committed: autoboot.txt boots partition 3 by default (tryboot: 2)"))
        let text = try FileSystem.readText(dir.sub("ctl/autoboot.txt"))
        #expect(text == (try Autoboot(bootPartition: 3, trybootPartition: 2).render()))
        #expect(try Autoboot.parse(text) == Autoboot(bootPartition: 3, trybootPartition: 2))
        // And back: a tryboot of A from B-default commits A.
        try Self.setup(dir, boot: 3, tryboot: 2, flag: 1, partition: 2)
        let (s2, o2) = try Self.run("A", dir, busybox: bb)
        #expect(s2 == 0, "\(o2)")
        #expect(try FileSystem.readText(dir.sub("ctl/autoboot.txt")) == (try Autoboot(bootPartition: 2, trybootPartition: 3).render()))
    }

    @Test func normalBootsAndOddStatesLeaveAutobootAlone() throws {
        guard let bb = Self.busybox() else { return }
        let dir = try TempDir("markgood-tryboot-noop")
        // (slot, flag, partition, autoboot boot/tryboot, exit status, message)
        let cases: [(String, UInt32?, UInt32?, Int, Int, Int32, String)] = [
            ("A", 0, 2, 2, 3, 0, "normal boot (tryboot flag 0)"),
            ("B", 0, 2, 2, 3, 0, "normal boot (tryboot flag 0)"),
            ("A", nil, nil, 2, 3, 0, "not started by the Raspberry Pi firmware"),
            ("A", 1, 2, 2, 3, 0, "already the default"),
            ("A", 1, 2, 2, 2, 0, "already the default"),
            ("B", 1, 3, 3, 3, 0, "already the default"),
            ("B", 1, 3, 2, 2, 1, "is not what osbuild wrote for this image"),
            ("B", 1, 2, 2, 3, 1, "the firmware booted partition 2, but slot B boots from partition 3"),
            ("B", 1, nil, 2, 3, 1, "partition is missing"),
            ("C", 1, 3, 2, 3, 1, "unknown slot 'C'"),
            ("B", 1, 3, 2, 4, 1, "is not what osbuild wrote for this image"),
        ]
        for (slot, flag, part, boot, tryboot, want, msg) in cases {
            try Self.setup(dir, boot: boot, tryboot: tryboot, flag: flag, partition: part)
            let before = try FileSystem.readFile(dir.sub("ctl/autoboot.txt"))
            let (status, out) = try Self.run(slot, dir, busybox: bb)
            #expect(status == want && out.contains(msg), "\(slot) flag \(String(describing: flag)) part \(String(describing: part)): \(out)")
            #expect(try FileSystem.readFile(dir.sub("ctl/autoboot.txt")) == before)
        }
        // A short flag property is not a 32-bit value.
        try Self.setup(dir, boot: 2, tryboot: 3, flag: nil, partition: 3)
        try FileSystem.writeAtomically(dir.sub("dt/chosen/bootloader/tryboot"), [1])
        let (status, out) = try Self.run("B", dir, busybox: bb)
        #expect(status == 1 && out.contains("tryboot is not a 32-bit value"), "\(out)")
    }
}
