import Basics
import Bootloader
import Foundation
import Testing
import TestSupport

private func read(_ p: String) throws -> [UInt8] { try FileSystem.readFile(p) }
private func write(_ p: String, _ b: [UInt8]) throws { try FileSystem.writeAtomically(p, b) }

/// U-Boot script images against u-boot-tools' mkimage/dumpimage.
@Suite struct UBootImageTests {
    static let script = "echo osbuild\nsetenv a 1\nif test -n \"${a}\"; then echo yes; fi\n"

    @Test func byteEqualToMkimage() throws {
        guard let mkimage = TestEnv.oracle("mkimage", package: "u-boot-tools") else { return }
        let dir = try TempDir()
        let cmd = try dir.write("boot.cmd", Self.script)
        for epoch: UInt32 in [0, 1_700_000_000] {
            _ = try Subprocess.run([mkimage, "-A", "arm64", "-T", "script", "-C", "none", "-d", cmd, dir.sub("ref.scr")],
                                   environment: ["SOURCE_DATE_EPOCH": String(epoch)])
            let ours = try UBootLegacyImage.script(Self.script, arch: .arm64, time: epoch).render()
            #expect(ours == (try read(dir.sub("ref.scr"))), "epoch \(epoch)")
        }
        // A name too.
        _ = try Subprocess.run([mkimage, "-A", "arm", "-T", "script", "-C", "none", "-n", "osbuild boot", "-d", cmd, dir.sub("ref2.scr")],
                               environment: ["SOURCE_DATE_EPOCH": "42"])
        #expect(try UBootLegacyImage.script(Self.script, arch: .arm, time: 42, name: "osbuild boot").render() == (try read(dir.sub("ref2.scr"))))
    }

    @Test func mkimageListsAndDumpimageExtracts() throws {
        guard let mkimage = TestEnv.oracle("mkimage", package: "u-boot-tools"),
              let dumpimage = TestEnv.oracle("dumpimage", package: "u-boot-tools") else { return }
        let dir = try TempDir()
        try write(dir.sub("boot.scr"), try UBootLegacyImage.script(Self.script, arch: .arm64, time: 1_600_000_000).render())
        let list = try Subprocess.run([mkimage, "-l", dir.sub("boot.scr")]).stdoutText
        #expect(list.contains("AArch64 Linux Script (uncompressed)"))
        #expect(list.contains("Data Size:    \(Self.script.utf8.count + 8) Bytes"))
        _ = try Subprocess.run([dumpimage, "-T", "script", "-p", "0", "-o", dir.sub("out.cmd"), dir.sub("boot.scr")])
        // dumpimage hands back the whole payload: the size list (one size, then 0) and the script.
        let n = UInt32(Self.script.utf8.count)
        let sizes: [UInt8] = [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), 0, 0, 0, 0]
        #expect(try read(dir.sub("out.cmd")) == sizes + Array(Self.script.utf8))
    }

    @Test func parsesMkimageOutputAndRejectsCorruption() throws {
        guard let mkimage = TestEnv.oracle("mkimage", package: "u-boot-tools") else { return }
        let dir = try TempDir()
        let cmd = try dir.write("boot.cmd", Self.script)
        _ = try Subprocess.run([mkimage, "-A", "arm64", "-T", "script", "-C", "none", "-d", cmd, dir.sub("ref.scr")])
        var bytes = try read(dir.sub("ref.scr"))
        let img = try UBootLegacyImage.parse(bytes)
        #expect(try img.scriptText() == Self.script)
        #expect(img.arch == UBootLegacyImage.Arch.arm64.rawValue)
        bytes[bytes.count - 2] ^= 0x20
        #expect { try UBootLegacyImage.parse(bytes) } throws: { "\($0)".contains("data CRC32") }
        bytes[10] ^= 1
        #expect { try UBootLegacyImage.parse(bytes) } throws: { "\($0)".contains("header CRC32") }
        #expect { try UBootLegacyImage.parse([UInt8](repeating: 0, count: 80)) } throws: { "\($0)".contains("magic") }
    }
}

/// U-Boot environment images against mkenvimage (u-boot-tools) and fw_printenv/fw_setenv
/// (libubootenv-tool).
@Suite struct UBootEnvTests {
    static let vars = [("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "3"), ("BOOT_B_LEFT", "3"), ("bootcmd", "run distro_bootcmd; echo x=y")]
    static let size = 0x4000

    @Test(arguments: [false, true]) func byteEqualToMkenvimage(redundant: Bool) throws {
        guard let mkenvimage = TestEnv.oracle("mkenvimage", package: "u-boot-tools") else { return }
        let dir = try TempDir()
        let txt = try dir.write("env.txt", Self.vars.map { "\($0.0)=\($0.1)\n" }.joined())
        _ = try Subprocess.run([mkenvimage] + (redundant ? ["-r"] : []) + ["-s", String(Self.size), "-o", dir.sub("ref.env"), txt])
        let ours = try UBootEnvironment(Self.vars, redundant: redundant).render(size: Self.size)
        #expect(ours == (try read(dir.sub("ref.env"))))
        let back = try UBootEnvironment.parse(ours, redundant: redundant)
        #expect(back.variables == Self.vars.map { UBootEnvironment.Variable($0.0, $0.1) })
    }

    @Test func fwPrintenvReadsOursAndWeReadFwSetenv() throws {
        guard let printenv = TestEnv.oracle("fw_printenv", package: "libubootenv-tool"),
              let setenv = TestEnv.oracle("fw_setenv", package: "libubootenv-tool") else { return }
        let dir = try TempDir()
        try write(dir.sub("env.img"), try UBootEnvironment(Self.vars).render(size: Self.size, padding: 0))
        let conf = try dir.write("fw_env.config", UBootABScript.fwEnvConfig(device: dir.sub("env.img"), size: Self.size))
        let out = try Subprocess.run([printenv, "-c", conf]).stdoutText
        #expect(Set(out.split(separator: "\n").map(String.init)) == Set(Self.vars.map { "\($0.0)=\($0.1)" }))
        _ = try Subprocess.run([setenv, "-c", conf, "BOOT_ORDER", "B A"])
        _ = try Subprocess.run([setenv, "-c", conf, "BOOT_B_LEFT", "2"])
        let env = try UBootEnvironment.parse(try read(dir.sub("env.img")))
        #expect(env["BOOT_ORDER"] == "B A")
        #expect(env["BOOT_B_LEFT"] == "2")
        #expect(env["bootcmd"] == Self.vars[3].1)
    }

    @Test func redundantCopiesFollowFwSetenv() throws {
        guard let printenv = TestEnv.oracle("fw_printenv", package: "libubootenv-tool"),
              let setenv = TestEnv.oracle("fw_setenv", package: "libubootenv-tool") else { return }
        let dir = try TempDir()
        // Two copies at 0 and `size` in one file, like a bootstate partition with ENV_OFFSET_REDUND.
        let first = try UBootEnvironment(Self.vars, redundant: true, flags: 1).render(size: Self.size)
        var second = UBootEnvironment(Self.vars, redundant: true, flags: 0)
        second["BOOT_A_LEFT"] = "0"
        try write(dir.sub("env.img"), first + (try second.render(size: Self.size)))
        let conf = try dir.write("fw_env.config", "\(dir.sub("env.img")) 0x0 0x4000\n\(dir.sub("env.img")) 0x4000 0x4000\n")
        // Copy 0 has the higher counter: it is the active one for fw_printenv and for us.
        #expect(try Subprocess.run([printenv, "-c", conf, "BOOT_A_LEFT"]).stdoutText == "BOOT_A_LEFT=3\n")
        _ = try Subprocess.run([setenv, "-c", conf, "BOOT_A_LEFT", "1"])
        let bytes = try read(dir.sub("env.img"))
        let (env, index) = try UBootEnvironment.parseRedundant(Array(bytes[0..<Self.size]), Array(bytes[Self.size...]))
        #expect(index == 1)
        #expect(env["BOOT_A_LEFT"] == "1")
        #expect(env.flags == 2)
    }

    @Test func errorsNameTheProblem() throws {
        var img = try UBootEnvironment(Self.vars).render(size: 256)
        img[20] ^= 1
        #expect { try UBootEnvironment.parse(img) } throws: { "\($0)".contains("CRC32") }
        #expect { try UBootEnvironment([("x", String(repeating: "v", count: 300))]).render(size: 256) } throws: {
            "\($0)".contains("do not fit the 256-byte environment")
        }
        #expect { try UBootEnvironment([("a=b", "c")]).render(size: 256) } throws: { "\($0)".contains("a=b") }
    }
}

@Suite struct RaspberryPiTests {
    @Test func autobootRoundTrip() throws {
        let text = try Autoboot(bootPartition: 2, trybootPartition: 3).render()
        #expect(text.contains("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"))
        #expect(try Autoboot.parse(text) == Autoboot(bootPartition: 2, trybootPartition: 3))
        #expect(try Autoboot.parse("[all]\ntryboot_a_b=1\nboot_partition=3\n\n# c\n[tryboot]\nboot_partition=2\n") == Autoboot(bootPartition: 3, trybootPartition: 2))
        #expect { try Autoboot.parse("[all]\nboot_partition=2\n") } throws: { "\($0)".contains("[tryboot]") }
    }

    @Test func configAndCmdline() throws {
        let c = RaspberryPiConfig([.init(filter: nil, [("arm_64bit", "1"), ("kernel", "u-boot.bin")]), .init(filter: "pi4", [("enable_uart", "1")])])
        let text = try c.render()
        #expect(text == "# Generated by osbuild\narm_64bit=1\nkernel=u-boot.bin\n[pi4]\nenable_uart=1\n")
        #expect(try RaspberryPiConfig.parse(text) == c)
        #expect(try RaspberryPiCmdline.render(["root=PARTUUID=5a1b2c3d-05", "", "ro", "console=serial0,115200"]) == "root=PARTUUID=5a1b2c3d-05 ro console=serial0,115200\n")
        #expect { try RaspberryPiConfig([.init(filter: nil, [("a\nb", "1")])]).render() } throws: { _ in true }
    }

    @Test func abScriptIsAValidScriptImage() throws {
        let s = UBootABScript(slots: [.init(name: "A", kernelPartition: 2, rootLabel: "system0"), .init(name: "B", kernelPartition: 4, rootLabel: "system1")],
                              tries: 3, envPartition: 6, envSize: 0x4000, kernelGzip: true, cmdline: "console=ttyAMA0")
        let text = try s.render()
        #expect(text.contains("env import -c ${bs_addr} 0x4000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT"))
        #expect(text.contains("setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1"))
        #expect(text.contains("unzip "))
        #expect(s.initialEnvironment().variables == [.init("BOOT_ORDER", "A B"), .init("BOOT_A_LEFT", "3"), .init("BOOT_B_LEFT", "3")])
        let img = try UBootLegacyImage.parse(try UBootLegacyImage.script(text, arch: .arm64, time: 0).render())
        #expect(try img.scriptText() == text)
        var bad = s
        bad.tries = 12
        #expect { try bad.render() } throws: { "\($0)".contains("tries = 12") }
    }
}
