import Basics
import Foundation
import Testing
import TestSupport

/// Every shipped board (qemu-x86-64 is covered by the boot tests) builds with the real
/// `osbuild make` into a temp -O directory, and its disk image passes the reference tools:
/// sfdisk --json, sgdisk -v (GPT/hybrid), fsck.vfat -n / e2fsck -fn on each extracted
/// partition, `osbuild inspect` agreeing with sfdisk, and the boot files the firmware or
/// bootloader needs (config.txt, u-boot.bin, DTBs, boot.scr read by mkimage -l, the U-Boot
/// environment read by fw_printenv, autoboot.txt/cmdline.txt for tryboot, BOOT*.EFI).
/// All builds share one download cache (OSBUILD_DL_CACHE, or the project's dl/).
@Suite(.serialized) struct ShippedBoardBuildTests {
    struct Tools {
        var sfdisk, sgdisk, fsckVfat, e2fsck, mcopy, mkimage, fwPrintenv: String
    }

    static func tools() -> Tools? {
        guard let sfdisk = TestEnv.oracle("sfdisk", package: "fdisk"), let sgdisk = TestEnv.oracle("sgdisk", package: "gdisk"),
              let fsck = TestEnv.oracle("fsck.vfat", package: "dosfstools"), let e2 = TestEnv.oracle("e2fsck", package: "e2fsprogs"),
              let mcopy = TestEnv.oracle("mcopy", package: "mtools"), let mkimage = TestEnv.oracle("mkimage", package: "u-boot-tools"),
              let fw = TestEnv.oracle("fw_printenv", package: "libubootenv-tool") else { return nil }
        return Tools(sfdisk: sfdisk, sgdisk: sgdisk, fsckVfat: fsck, e2fsck: e2, mcopy: mcopy, mkimage: mkimage, fwPrintenv: fw)
    }

    static var downloadCache: String { BoardBuild.downloadCache }

    @discardableResult
    static func osbuild(_ args: [String], env: [String: String] = [:], check: Bool = true) throws -> Subprocess.Result {
        var e = ["OSBUILD_PROJECT": TestEnv.repoRoot, "NO_COLOR": "1", "OSBUILD_DL_CACHE": downloadCache, "SOURCE_DATE_EPOCH": "1700000000"]
        e.merge(env) { $1 }
        return try Subprocess.run([CLI.binary] + args, environment: e, check: check)
    }

    /// The Pi 4 firmware blobs from Debian's raspi-firmware (non-free-firmware; see
    /// scripts/test-setup.d/20-arm64-apt.sh), unpacked into `dir`.
    static func raspiFirmware(into dir: String) throws -> String? {
        let debs = downloadCache + "/test-firmware"
        try FileSystem.makeDirectories(debs)
        var deb = try FileSystem.listDirectory(debs).first { $0.hasPrefix("raspi-firmware_") && $0.hasSuffix(".deb") }
        if deb == nil {
            let r = try Subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "raspi-firmware"], directory: debs, check: false)
            deb = try FileSystem.listDirectory(debs).first { $0.hasPrefix("raspi-firmware_") && $0.hasSuffix(".deb") }
            if deb == nil {
                let msg = "raspi-firmware is not downloadable (\(r.stderrText.trimmingCharacters(in: .whitespacesAndNewlines))); run scripts/test-setup.d/20-arm64-apt.sh"
                if TestEnv.isCI { Issue.record(Comment(rawValue: msg)) } else { print("SKIP: " + msg) }
                return nil
            }
        }
        _ = try Subprocess.run(["dpkg-deb", "-x", debs + "/" + (deb ?? ""), dir])
        return dir + "/usr/lib/raspi-firmware"
    }

    struct Part { var number: Int; var start: UInt64; var size: UInt64; var name: String?; var file: String; var fs: String? }

    /// sfdisk --json + sgdisk -v + inspect; extracts every partition and runs the fs checkers.
    static func checkDisk(_ image: String, board: String, tools t: Tools, work: String, expectGPT: Bool) throws -> [String: Part] {
        let sf = try Subprocess.run([t.sfdisk, "--json", image])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(sf.stdout)) as? [String: Any])
        let table = try #require(json["partitiontable"] as? [String: Any])
        #expect((table["label"] as? String) == (expectGPT ? "gpt" : "dos"), "\(board)")
        let parts = try #require(table["partitions"] as? [[String: Any]])
        if expectGPT {
            let v = try Subprocess.run([t.sgdisk, "-v", image], check: false)
            #expect(v.status == 0 && v.stdoutText.contains("No problems found"), "\(board): sgdisk -v:\n\(v.stdoutText)")
        }
        let inspect = try osbuild(["inspect", "--json", image])
        let ij = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout)) as? [String: Any])
        let ip = try #require(ij["partitions"] as? [[String: Any]])
        var out: [String: Part] = [:]
        for p in parts {
            let node = try #require(p["node"] as? String)
            let number = Int(node.reversed().prefix { $0.isNumber }.reversed().map(String.init).joined()) ?? 0
            let start = UInt64(try #require(p["start"] as? Int)) * 512, size = UInt64(try #require(p["size"] as? Int)) * 512
            let mine = ip.first { ($0["number"] as? Int) == number }
            #expect((mine?["start"] as? Int).map(UInt64.init) == start, "\(board) partition \(number): inspect and sfdisk disagree on the start")
            #expect((mine?["size"] as? Int).map(UInt64.init) == size, "\(board) partition \(number): inspect and sfdisk disagree on the size")
            let fs = mine?["filesystem"] as? String
            let file = work + "/p\(number)"
            let name = (p["name"] as? String) ?? "p\(number)"
            out[name] = Part(number: number, start: start, size: size, name: p["name"] as? String, file: file, fs: fs)
            guard fs == "vfat" || fs == "ext4" || name == "bootstate" else { continue }
            // Sparse copy: the data partitions are mostly holes.
            _ = try Subprocess.run(["dd", "if=" + image, "of=" + file, "bs=1M", "skip=\(start)", "count=\(size)",
                                    "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none"])
            if fs == "vfat" {
                let r = try Subprocess.run([t.fsckVfat, "-n", file], check: false)
                #expect(r.status == 0, "\(board) partition \(number): fsck.vfat -n:\n\(r.stdoutText)\(r.stderrText)")
            } else if fs == "ext4" {
                let r = try Subprocess.run([t.e2fsck, "-fn", file], check: false)
                #expect(r.status == 0, "\(board) partition \(number): e2fsck -fn:\n\(r.stdoutText)\(r.stderrText)")
            }
        }
        return out
    }

    static func fatFile(_ part: Part, _ path: String, tools t: Tools, work: String) throws -> [UInt8]? {
        let dst = work + "/extract-\(part.number)-" + path.replacingOccurrences(of: "/", with: "_")
        let r = try Subprocess.run([t.mcopy, "-n", "-i", part.file, "::" + path, dst], check: false)
        return r.status == 0 ? try FileSystem.readFile(dst) : nil
    }

    /// generic-aarch64 also boots (AAVMF, TCG) to the marker; rpi5-64 is built and its
    /// rootfs booted with generic-aarch64's kernel and initramfs (same Debian kernel, virtio
    /// modules) from the root= of its own cmdline.txt (an MBR PARTUUID, logical partition).
    @Test func genericBoardsBuildAndPassDiskOracles() throws {
        guard let t = Self.tools() else { return }
        // generic-aarch64 is the shared build the boot and install tests use too.
        let aarch64 = try BoardBuild.get("generic-aarch64")
        for (board, arch) in [("generic-aarch64", "AA64"), ("generic-x86-64", "X64")] {
            let tmp = try TempDir(board)
            let image: String
            if board == "generic-aarch64" {
                image = aarch64.image
            } else {
                let start = Date()
                try ShippedBoardBuildTests.osbuild(["make", board, "-O", tmp.sub("out")])
                print("\(board): built in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
                image = tmp.sub("out/stages/disk/osbuild_\(board)-1.0.img")
            }
            let parts = try Self.checkDisk(image, board: board, tools: t, work: tmp.path, expectGPT: true)
            let boot = try #require(parts["boot"], "\(board): no boot partition")
            let efi = try Self.fatFile(boot, "/EFI/BOOT/BOOT\(arch).EFI", tools: t, work: tmp.path)
            #expect(efi.map { $0.starts(with: [0x4D, 0x5A]) } == true, "\(board): /EFI/BOOT/BOOT\(arch).EFI missing or not a PE image")
            #expect(try Self.fatFile(boot, "/grub/grub.cfg", tools: t, work: tmp.path) != nil)
        }
        let start = Date()
        let r = try ShippedBoardBuildTests.osbuild(["test", "boot", "generic-aarch64", "-O", aarch64.buildDir, "--no-build", "--accel", "tcg",
                                                    "--expect-slot", "A", "--timeout", "300"], env: ["OSBUILD_PROJECT": aarch64.project], check: false)
        #expect(r.status == 0, "generic-aarch64 did not boot to the marker:\n\(r.stdoutText)\(r.stderrText)")
        print("generic-aarch64: booted in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        try rpi5BuildsTrybootLayout(t, aarch64Out: aarch64.buildDir)
    }

    @Test func rpi4BuildsWithUBootAndFirmware() throws {
        guard let t = Self.tools() else { return }
        let tmp = try TempDir("rpi4")
        guard let fw = try Self.raspiFirmware(into: tmp.sub("fw")) else { return }
        let out = tmp.sub("out")
        let start = Date()
        try ShippedBoardBuildTests.osbuild(["make", "rpi4-64", "-O", out], env: ["OSBUILD_RPI_FIRMWARE": fw])
        print("rpi4-64: built in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        let image = out + "/stages/disk/osbuild_rpi4-64-1.0.img"
        let first = try SHA256.hexOfFile(at: image)
        let parts = try Self.checkDisk(image, board: "rpi4-64", tools: t, work: tmp.path, expectGPT: true)
        // The Pi ROM reads the hybrid MBR: entry 1 is the FAT boot partition, bootable.
        let mbr = try FileSystem.readFile(image).prefix(512)
        #expect(mbr[446] == 0x80 && mbr[450] == 0x0C, "rpi4-64: MBR entry 1 is not a bootable FAT32 (LBA) partition")
        let boot = try #require(parts["boot"])
        let config = try #require(try Self.fatFile(boot, "/config.txt", tools: t, work: tmp.path))
        let text = String(decoding: config, as: UTF8.self)
        #expect(text.contains("arm_64bit=1\n") && text.contains("kernel=u-boot.bin\n"))
        for f in ["/u-boot.bin", "/bcm2711-rpi-4-b.dtb", "/start4.elf", "/fixup4.dat"] {
            #expect(try Self.fatFile(boot, f, tools: t, work: tmp.path) != nil, "rpi4-64: boot partition lacks \(f)")
        }
        let scr = try #require(try Self.fatFile(boot, "/boot.scr", tools: t, work: tmp.path))
        try FileSystem.writeAtomically(tmp.sub("boot.scr"), scr)
        let list = try Subprocess.run([t.mkimage, "-l", tmp.sub("boot.scr")]).stdoutText
        #expect(list.contains("AArch64 Linux Script"), "mkimage -l boot.scr:\n\(list)")
        // Slot A's kernel partition is FAT for U-Boot, with kernel and initramfs.
        let k0 = try #require(parts["kernel0"])
        #expect(k0.fs == "vfat")
        #expect(try Self.fatFile(k0, "/vmlinuz", tools: t, work: tmp.path) != nil && (try Self.fatFile(k0, "/initramfs.img", tools: t, work: tmp.path)) != nil)
        // The boot state: fw_printenv (what RAUC's U-Boot backend runs) reads the partition.
        let bs = try #require(parts["bootstate"])
        let conf = try tmp.write("fw_env.config", "\(bs.file) 0x0 0x4000\n")
        let env = try Subprocess.run([t.fwPrintenv, "-c", conf]).stdoutText
        #expect(env.contains("BOOT_ORDER=A B\n") && env.contains("BOOT_A_LEFT=3\n") && env.contains("BOOT_B_LEFT=3\n"), "\(env)")

        // The rootfs carries /etc/fw_env.config for that partition: fsck.erofs extracts the
        // slot A rootfs, and its config (device path swapped for the extracted partition)
        // drives fw_printenv.
        if let fsckErofs = TestEnv.oracle("fsck.erofs", package: "erofs-utils"), let sys = parts["system0"] {
            _ = try Subprocess.run(["dd", "if=" + image, "of=" + tmp.sub("system0"), "bs=1M", "skip=\(sys.start)", "count=\(sys.size)",
                                    "iflag=skip_bytes,count_bytes", "status=none"])
            _ = try Subprocess.run([fsckErofs, "--extract=" + tmp.sub("rootfs"), tmp.sub("system0")])
            let fwConf = try FileSystem.readText(tmp.sub("rootfs/etc/fw_env.config"))
            #expect(fwConf.contains("/dev/disk/by-partlabel/bootstate 0x0 0x4000\n"), "\(fwConf)")
            let local = try tmp.write("fw_env.local", fwConf.replacingOccurrences(of: "/dev/disk/by-partlabel/bootstate", with: bs.file))
            #expect(try Subprocess.run([t.fwPrintenv, "-c", local, "BOOT_ORDER"]).stdoutText == "BOOT_ORDER=A B\n")
            #expect(try FileSystem.readText(tmp.sub("rootfs/etc/rauc/system.conf")).contains("bootloader=uboot\n"))
        }

        try markGoodFromLinux(image: image, bootstate: bs, tools: t, tmp: tmp)

        // Reproducible: the bootloader stage rebuilt from scratch gives the same image.
        try ShippedBoardBuildTests.osbuild(["clean", "rpi4-64", "-O", out, "--stage", "bootloader"])
        try ShippedBoardBuildTests.osbuild(["make", "rpi4-64", "-O", out], env: ["OSBUILD_RPI_FIRMWARE": fw])
        #expect(try SHA256.hexOfFile(at: image) == first, "rpi4-64: rebuilding the bootloader stage changed the image")

        // Missing firmware: a usage error naming the directory and each missing file.
        try FileSystem.makeDirectories(tmp.sub("empty-fw"))
        let r = try ShippedBoardBuildTests.osbuild(["make", "rpi4-64", "-O", out], env: ["OSBUILD_RPI_FIRMWARE": tmp.sub("empty-fw")], check: false)
        #expect(r.status != 0)
        let msg = r.stdoutText + r.stderrText + ((try? FileSystem.readText(out + "/logs/bootloader.log")) ?? "")
        #expect(msg.contains(tmp.sub("empty-fw")) && msg.contains("lacks start4.elf, fixup4.dat"), "missing-firmware error:\n\(msg)")
        // No firmware directory at all: the error says how to give one.
        let u = try ShippedBoardBuildTests.osbuild(["make", "rpi4-64", "-O", out], env: ["OSBUILD_RPI_FIRMWARE": ""], check: false)
        let umsg = u.stdoutText + u.stderrText + ((try? FileSystem.readText(out + "/logs/bootloader.log")) ?? "")
        #expect(u.status != 0 && umsg.contains("needs the Raspberry Pi firmware files start4.elf, fixup4.dat; set bootloader.firmware-dir or OSBUILD_RPI_FIRMWARE"),
                "no-firmware error:\n\(umsg)")
    }

    func rpi5BuildsTrybootLayout(_ t: Tools, aarch64Out: String) throws {
        let tmp = try TempDir("rpi5")
        // The shared build (BundleInstallRpi5Tests installs its bundle into this image).
        let rpi5 = try BoardBuild.get("rpi5-64")
        let parts = try Self.checkDisk(rpi5.image, board: "rpi5-64", tools: t, work: tmp.path, expectGPT: false)
        let ctl = try #require(parts["p1"])
        let auto = String(decoding: try #require(try Self.fatFile(ctl, "/autoboot.txt", tools: t, work: tmp.path)), as: UTF8.self)
        #expect(auto.contains("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"), "\(auto)")
        for (p, slot, root) in [("p2", "A", "5a1b2c3d-05"), ("p3", "B", "5a1b2c3d-06")] {
            let part = try #require(parts[p])
            let cmdline = String(decoding: try #require(try Self.fatFile(part, "/cmdline.txt", tools: t, work: tmp.path)), as: UTF8.self)
            #expect(cmdline.hasPrefix("root=PARTUUID=\(root) rauc.slot=\(slot) ro "), "\(cmdline)")
            let config = String(decoding: try #require(try Self.fatFile(part, "/config.txt", tools: t, work: tmp.path)), as: UTF8.self)
            #expect(config.contains("arm_64bit=1\n") && config.contains("kernel=vmlinuz\n") && config.contains("initramfs initramfs.img followkernel\n"), "\(config)")
            #expect(try Self.fatFile(part, "/vmlinuz", tools: t, work: tmp.path) != nil)
        }
        // The rootfs partitions are logical 5 and 6; data is 7 (ext4, checked above).
        #expect(parts["p5"]?.fs == "erofs" && parts["p6"]?.fs == nil && parts["p7"]?.fs == "ext4")

        // Slot A's rootfs boots from its cmdline.txt's root= (QEMU virt stands in for the Pi).
        let p2 = try #require(parts["p2"])
        let ka = String(decoding: try #require(try Self.fatFile(p2, "/cmdline.txt", tools: t, work: tmp.path)), as: UTF8.self)
        if let boot = try Self.bootPiRootfs(image: rpi5.image, cmdline: ka, aarch64Out: aarch64Out, work: tmp.path) {
            #expect(boot.log.contains("root PARTUUID=5a1b2c3d-05 is /dev/vda5") && boot.log.contains("osbuild-boot-ok slot=A version=1.0"),
                    "rpi5-64 rootfs did not boot (cmdline \(boot.cmdline)):\n\(boot.log.suffix(3000))")
            // No Pi firmware in QEMU: no /chosen/bootloader/tryboot, so nothing to commit.
            #expect(boot.log.contains("osbuild-mark-good: no /proc/device-tree/chosen/bootloader/tryboot: not started by the Raspberry Pi firmware"), "\(boot.log.suffix(2000))")
            // A scratch copy: the shared image is also the install tests' starting point.
            let scratch = tmp.sub("boot.img")
            _ = try Subprocess.run(["cp", "--sparse=always", rpi5.image, scratch])
            if let qemu = TestEnv.oracle("qemu-system-aarch64", package: "qemu-system-arm") {
                try trybootCommitFromLinux(qemu: qemu, image: scratch, buildDir: rpi5.buildDir, control: try #require(parts["p1"]), cmdline: boot.cmdline,
                                           aarch64Out: aarch64Out, tmp: tmp)
            }
        }

        // The bundle updates the boot class; its hook turns slot A's cmdline.txt into slot B's.
        let out = rpi5.buildDir
        let mnt = tmp.sub("slot-mount")
        try FileSystem.makeDirectories(mnt)
        try FileSystem.writeAtomically(mnt + "/cmdline.txt", try FileSystem.readFile(out + "/stages/bootloader/boot-a/cmdline.txt"))
        _ = try Subprocess.run(["sh", out + "/stages/bootloader/rauc-hook.sh", "slot-post-install"],
                               environment: ["RAUC_SLOT_CLASS": "boot", "RAUC_SLOT_BOOTNAME": "B", "RAUC_SLOT_MOUNT_POINT": mnt])
        #expect(try FileSystem.readText(mnt + "/cmdline.txt") == (try FileSystem.readText(out + "/stages/bootloader/boot-b/cmdline.txt")))
        if let rauc = TestEnv.oracle("rauc", package: "rauc") {
            let info = try Subprocess.run([rauc, "info", "--keyring=" + out + "/stages/bundle/keyring.pem", out + "/stages/bundle/osbuild_rpi5-64-1.0.raucb"], check: false)
            #expect(info.status == 0, "rauc info:\n\(info.stderrText)")
            #expect(info.stdoutText.contains("boot.vfat") && info.stdoutText.contains("rootfs.img") && info.stdoutText.contains("post-install"), "\(info.stdoutText)")
        }
    }

    /// Boots a Pi image's rootfs as its firmware would hand over to the kernel, with QEMU
    /// virt (TCG) standing in for the Pi: generic-aarch64's kernel and initramfs (the same
    /// Debian kernel, plus virtio modules) get the slot's cmdline.txt (console= swapped for
    /// the virt UART), on a scratch copy of the image. Nil when qemu-system-aarch64 is missing.
    static func bootPiRootfs(image: String, cmdline text: String, aarch64Out: String, work: String) throws -> (log: String, cmdline: String)? {
        guard let qemu = TestEnv.oracle("qemu-system-aarch64", package: "qemu-system-arm") else { return nil }
        let cmdline = text.split(separator: " ").filter { !$0.hasPrefix("console=") }.joined(separator: " ").trimmingCharacters(in: .whitespacesAndNewlines)
            + " console=ttyAMA0 panic=-1"
        let disk = work + "/pi-boot-\(UInt32.random(in: 0...UInt32.max)).img"
        defer { unlink(disk) }
        _ = try Subprocess.run(["cp", "--sparse=always", image, disk])
        let boot = try Subprocess.run(["timeout", "300", qemu, "-M", "virt", "-accel", "tcg", "-cpu", "cortex-a57", "-m", "1024", "-nographic", "-no-reboot",
                                       "-kernel", aarch64Out + "/stages/kernel/vmlinuz", "-initrd", aarch64Out + "/stages/initramfs/initramfs.img",
                                       "-append", cmdline, "-drive", "if=none,file=\(disk),format=raw,id=d0", "-device", "virtio-blk-pci,drive=d0"],
                                      check: false)
        return (boot.stdoutText, cmdline)
    }

    /// The tryboot branch under a real kernel: QEMU virt's own device tree plus the
    /// firmware's /chosen/bootloader properties (tryboot = 1, partition = 2), autoboot.txt
    /// set to "B default, A tried" as `reboot "0 tryboot"` would leave it; the rootfs's
    /// mark-good finds the boot-control partition by PARTUUID, commits slot A, and
    /// fsck.vfat + mtools read the result.
    func trybootCommitFromLinux(qemu: String, image: String, buildDir: String, control: Part, cmdline: String, aarch64Out: String, tmp: TempDir) throws {
        guard let fdtput = TestEnv.oracle("fdtput", package: "device-tree-compiler"), let mtype = TestEnv.oracle("mtype", package: "mtools"),
              let fsck = TestEnv.oracle("fsck.vfat", package: "dosfstools") else { return }
        let fat = "\(image)@@\(control.start)"
        let tried = tmp.sub("autoboot.tried")
        // The exact text osbuild writes with B as the default (a hand-written one is refused).
        let bText = try FileSystem.readText(buildDir + "/stages/bootloader/autoboot.txt")
            .replacingOccurrences(of: "boot_partition=2\n[tryboot]\nboot_partition=3", with: "boot_partition=3\n[tryboot]\nboot_partition=2")
        try FileSystem.writeAtomically(tried, bText)
        _ = try Subprocess.run(["mcopy", "-o", "-i", fat, tried, "::/autoboot.txt"])
        let dtb = tmp.sub("virt.dtb")
        let vm = ["-M", "virt", "-cpu", "cortex-a57", "-m", "1024", "-nographic", "-no-reboot"]
        _ = try Subprocess.run(["timeout", "60", qemu] + vm.map { $0 == "virt" ? "virt,dumpdtb=\(dtb)" : $0 }, check: false)
        _ = try Subprocess.run([fdtput, "-c", dtb, "/chosen/bootloader"])
        _ = try Subprocess.run([fdtput, "-t", "u", dtb, "/chosen/bootloader", "tryboot", "1"])
        _ = try Subprocess.run([fdtput, "-t", "u", dtb, "/chosen/bootloader", "partition", "2"])
        let boot = try Subprocess.run(["timeout", "300", qemu] + vm + ["-dtb", dtb,
                                       "-kernel", aarch64Out + "/stages/kernel/vmlinuz", "-initrd", aarch64Out + "/stages/initramfs/initramfs.img",
                                       "-append", cmdline, "-drive", "if=none,file=\(image),format=raw,id=d0", "-device", "virtio-blk-pci,drive=d0"], check: false)
        let log = boot.stdoutText
        #expect(log.contains("osbuild-mark-good: slot A committed: autoboot.txt boots partition 2 by default (tryboot: 3)") && log.contains("osbuild-boot-ok slot=A"),
                "tryboot commit:\n\(log.suffix(3000))")
        let after = try Subprocess.run([mtype, "-i", fat, "::/autoboot.txt"]).stdoutText
        #expect(after == (try FileSystem.readText(buildDir + "/stages/bootloader/autoboot.txt")), "\(after)")
        _ = try Subprocess.run(["dd", "if=" + image, "of=" + tmp.sub("p1.after"), "bs=1M", "skip=\(control.start)", "count=\(control.size)",
                                "iflag=skip_bytes,count_bytes", "status=none"])
        let r = try Subprocess.run([fsck, "-n", tmp.sub("p1.after")], check: false)
        #expect(r.status == 0, "fsck.vfat -n boot-control after the commit:\n\(r.stdoutText)")
    }

    /// rpi4-64's rootfs under a real kernel marks slot A good: U-Boot has taken one attempt
    /// (BOOT_A_LEFT=2, set with fw_setenv), the slot A rootfs boots under QEMU virt with
    /// generic-aarch64's kernel and initramfs (same Debian kernel, virtio modules) from
    /// root=PARTLABEL=system0, its mark-good finds /dev/disk/by-partlabel/bootstate through
    /// sysfs and refills the counter; fw_printenv reads the partition afterwards.
    func markGoodFromLinux(image: String, bootstate bs: Part, tools t: Tools, tmp: TempDir) throws {
        guard let qemu = TestEnv.oracle("qemu-system-aarch64", package: "qemu-system-arm"),
              let setenv = TestEnv.oracle("fw_setenv", package: "libubootenv-tool") else { return }
        let astages = try BoardBuild.get("generic-aarch64").buildDir + "/stages"
        let disk = tmp.sub("linux.img")
        _ = try Subprocess.run(["cp", "--sparse=always", image, disk])
        let conf = try tmp.write("fw_env.part", "\(bs.file) 0x0 0x4000\n")
        _ = try Subprocess.run([setenv, "-c", conf, "BOOT_A_LEFT", "2"])
        _ = try Subprocess.run(["dd", "if=" + bs.file, "of=" + disk, "bs=1M", "seek=\(bs.start)", "oflag=seek_bytes", "conv=notrunc", "status=none"])
        let boot = try Subprocess.run(["timeout", "300", qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "1024", "-nographic", "-no-reboot",
                                       "-kernel", astages + "/kernel/vmlinuz", "-initrd", astages + "/initramfs/initramfs.img",
                                       "-append", "root=PARTLABEL=system0 rauc.slot=A ro console=ttyAMA0 panic=-1",
                                       "-drive", "if=none,file=\(disk),format=raw,id=d0", "-device", "virtio-blk-pci,drive=d0"], check: false)
        let log = boot.stdoutText
        #expect(log.contains("osbuild-mark-good: slot A marked good (BOOT_A_LEFT=3, was 2") && log.contains("osbuild-boot-ok slot=A"),
                "rpi4-64 mark-good under Linux:\n\(log.suffix(3000))")
        _ = try Subprocess.run(["dd", "if=" + disk, "of=" + bs.file, "bs=1M", "skip=\(bs.start)", "count=\(bs.size)", "iflag=skip_bytes,count_bytes", "status=none"])
        let env = try Subprocess.run([t.fwPrintenv, "-c", conf]).stdoutText
        #expect(env.contains("BOOT_ORDER=A B\n") && env.contains("BOOT_A_LEFT=3\n") && env.contains("BOOT_B_LEFT=3\n"), "\(env)")
    }
}
