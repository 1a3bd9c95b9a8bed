import Basics
import Bootloader
import Bundle
import Foundation
import OSBuildKit
import Testing
import TestSupport

/// `osbuild bundle install` on a real qemu-x86-64 image (the shared BoardBuild), judged
/// by other tools: grub-editenv on the grubenv mcopy extracts, fsck.vfat on the ESP,
/// sfdisk/sgdisk on the table, and `rauc extract` for what the partitions must hold.
final class InstallFixture: @unchecked Sendable {
    let build: BoardBuild
    let dir: TempDir
    var project: String { build.project }
    var image: String { build.image }  // pristine image, never modified
    var bundleV1: String { build.bundle }
    var keyring: String { build.keyring }
    let bundleV2: String
    let raucV1: String  // rauc extract of v1
    let raucV2: String

    static let shared: Result<InstallFixture, any Error> = Result { try InstallFixture() }

    static func get() throws -> InstallFixture {
        for tool in [("rauc", "rauc"), ("mcopy", "mtools"), ("grub-editenv", "grub-common"), ("fsck.vfat", "dosfstools"),
                     ("sfdisk", "fdisk"), ("sgdisk", "gdisk"), ("unsquashfs", "squashfs-tools")] {
            guard TestEnv.oracle(tool.0, package: tool.1) != nil else { throw SkipFixture(reason: "\(tool.0) missing") }
        }
        return try shared.get()
    }

    struct SkipFixture: Error { var reason: String }

    init() throws {
        build = try BoardBuild.get("qemu-x86-64")
        dir = try TempDir("install")
        let stages = build.stages
        // v2: same kernel, a rootfs image that differs (pattern + a zero tail that must become holes).
        let content = dir.sub("v2")
        try FileSystem.makeDirectories(content)
        try sh(["cp", stages + "/kernel-image/kernel.img", content + "/kernel.img"])
        var rootfs = try FileSystem.readFile(stages + "/rootfs-image/rootfs.img")
        rootfs += (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) } + [UInt8](repeating: 0, count: 3 << 20)
        try FileSystem.writeAtomically(content + "/rootfs.img", rootfs)
        try FileSystem.writeAtomically(content + "/manifest.raucm", """
            [update]
            compatible=osbuild-qemu-x86-64
            version=2.0

            [bundle]
            format=verity

            [image.kernel]
            filename=kernel.img

            [image.rootfs]
            filename=rootfs.img

            """)
        bundleV2 = dir.sub("v2.raucb")
        try InstallFixture.create(content, bundleV2, keys: build.project + "/keys")
        raucV1 = dir.sub("rauc-v1")
        raucV2 = dir.sub("rauc-v2")
        try sh(["rauc", "extract", "--keyring", build.keyring, build.bundle, raucV1])
        try sh(["rauc", "extract", "--keyring", build.keyring, bundleV2, raucV2])
    }

    static func create(_ content: String, _ out: String, keys: String) throws {
        try sh([CLI.binary, "bundle", "create", "--dev-keys", keys, content, out], env: ["NO_COLOR": "1"])
    }

    /// A sparse private copy of the pristine image.
    func copyImage(_ name: String) throws -> String {
        let p = dir.sub(name)
        try sh(["cp", "--sparse=always", image, p])
        return p
    }

    func install(_ bundle: String, image: String, _ extra: [String] = ["--board", "qemu-x86-64"]) throws -> Subprocess.Result {
        try build.install(bundle, image: image, extra)
    }
}

@discardableResult
private func sh(_ args: [String], env: [String: String] = [:]) throws -> Subprocess.Result {
    try Subprocess.run(args, environment: env)
}

struct Part: Decodable {
    var start: UInt64
    var size: UInt64
    var name: String?
}

private func table(_ image: String) throws -> (json: String, parts: [String: Part]) {
    struct Root: Decodable { struct T: Decodable { var partitions: [Part] }; var partitiontable: T }
    let r = try sh(["sfdisk", "--json", image])
    let t = try JSONDecoder().decode(Root.self, from: Data(r.stdout))
    var m: [String: Part] = [:]
    for p in t.partitiontable.partitions { if let n = p.name { m[n] = p } }
    return (r.stdoutText, m)
}

/// grub-editenv's view of the grubenv inside the image's ESP (extracted with mtools).
private func grubenv(_ image: String, scratch: String) throws -> [String: String] {
    let esp = try #require(try table(image).parts["boot"])
    let out = scratch + "/grubenv-\(UInt32.random(in: 0...UInt32.max))"
    defer { unlink(out) }
    try sh(["mcopy", "-n", "-i", "\(image)@@\(esp.start * 512)", "::/grub/grubenv", out])
    var vars: [String: String] = [:]
    for line in try sh(["grub-editenv", out, "list"]).stdoutText.split(separator: "\n") {
        let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
        if kv.count == 2 { vars[kv[0]] = kv[1] }
    }
    return vars
}

/// `cmp` of the first bytes of a partition against a file.
private func partitionHolds(_ image: String, _ part: Part, _ file: String) throws -> Bool {
    let size = try FileSystem.stat(file).size
    return try Subprocess.run(["cmp", "-n", String(size), file, image, "-i", "0:\(part.start * 512)"], check: false).status == 0
}

private func partitionSHA(_ image: String, _ part: Part) throws -> String {
    let fd = open(image, O_RDONLY)
    defer { close(fd) }
    let h = SHA256()
    var off = part.start * 512
    let end = off + part.size * 512
    while off < end {
        let n = Int(min(UInt64(1 << 20), end - off))
        h.update(try PositionalIO.read(fd, count: n, at: off, path: image))
        off += UInt64(n)
    }
    return h.hexDigest()
}

@Suite(.serialized) struct BundleInstallTests {
    @Test func installSwitchesToInactiveSlotAndBack() throws {
        let f: InstallFixture
        do { f = try InstallFixture.get() } catch let s as InstallFixture.SkipFixture { print("SKIP: \(s.reason)"); return }
        let img = try f.copyImage("switch.img")
        let size0 = try FileSystem.stat(img).size
        let (json0, parts) = try table(img)
        #expect(try grubenv(img, scratch: f.dir.path) == ["ORDER": "A B", "A_OK": "1", "B_OK": "0", "A_TRY": "0", "B_TRY": "0"])
        let kernel0 = try #require(parts["kernel0"]), system0 = try #require(parts["system0"])
        let kernel1 = try #require(parts["kernel1"]), system1 = try #require(parts["system1"])
        let aBefore = [try partitionSHA(img, kernel0), try partitionSHA(img, system0)]

        // rauc itself accepts the bundle we are about to install.
        #expect(try Subprocess.run(["rauc", "info", "--keyring", f.keyring, f.bundleV2], check: false).status == 0)

        // A boots -> install v2 into B.
        let r = try f.install(f.bundleV2, image: img)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("slot B is now primary (was booting A)"))
        #expect(try grubenv(img, scratch: f.dir.path) == ["ORDER": "B A", "A_OK": "1", "B_OK": "1", "A_TRY": "0", "B_TRY": "0"])
        #expect(try partitionHolds(img, kernel1, f.raucV2 + "/kernel.img"))
        #expect(try partitionHolds(img, system1, f.raucV2 + "/rootfs.img"))
        #expect([try partitionSHA(img, kernel0), try partitionSHA(img, system0)] == aBefore)
        #expect(try FileSystem.stat(img).size == size0)
        #expect(try table(img).json == json0)
        let sg = try sh(["sgdisk", "-v", img]).stdoutText
        #expect(sg.contains("No problems found"))
        let esp = try #require(parts["boot"])
        let espFile = f.dir.sub("esp.img")
        try sh(["dd", "if=\(img)", "of=\(espFile)", "bs=512", "skip=\(esp.start)", "count=\(esp.size)", "status=none"])
        let fsck = try Subprocess.run(["fsck.vfat", "-n", espFile], check: false)
        #expect(fsck.status == 0, "\(fsck.stdoutText)")
        // Sparse: the 3 MiB zero tail of rootfs.img was punched, not written.
        #expect(r.stdoutText.contains("rootfs -> partition system1"))
        let written = try #require(r.stdoutText.split(separator: "\n").first { $0.contains("rootfs -> partition system1") })
        let rootfsSize = try FileSystem.stat(f.raucV2 + "/rootfs.img").size
        #expect(written.contains("\(rootfsSize) of \(system1.size * 512) bytes"))
        #expect(!written.contains("(\(rootfsSize) written"))

        // The image now boots B (as GRUB would): v1 goes to A, ORDER back to A B.
        let r2 = try f.install(f.bundleV1, image: img)
        #expect(r2.status == 0, "\(r2.stderrText)")
        #expect(r2.stdoutText.contains("slot A is now primary (was booting B)"))
        #expect(try grubenv(img, scratch: f.dir.path) == ["ORDER": "A B", "A_OK": "1", "B_OK": "1", "A_TRY": "0", "B_TRY": "0"])
        #expect(try partitionHolds(img, kernel0, f.raucV1 + "/kernel.img"))
        #expect(try partitionHolds(img, system0, f.raucV1 + "/rootfs.img"))
        #expect(try partitionHolds(img, system1, f.raucV2 + "/rootfs.img"))
    }

    /// Without --board: slots from GPT names, try limit from the image's grub.cfg.
    @Test func installWithoutBoard() throws {
        let f: InstallFixture
        do { f = try InstallFixture.get() } catch let s as InstallFixture.SkipFixture { print("SKIP: \(s.reason)"); return }
        let img = try f.copyImage("noboard.img")
        let r = try f.install(f.bundleV2, image: img, ["--keyring", f.keyring, "--compatible", "osbuild-qemu-x86-64"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("slots from GPT partition names"))
        #expect(try grubenv(img, scratch: f.dir.path)["ORDER"] == "B A")
        let parts = try table(img).parts
        #expect(try partitionHolds(img, try #require(parts["system1"]), f.raucV2 + "/rootfs.img"))
        // A slot that used up its tries no longer counts as booted: B_TRY=3 (limit 3) with
        // ORDER=B A means GRUB boots A, so the next install goes to B again.
        let esp = try #require(parts["boot"])
        let envFile = f.dir.sub("env-tries")
        try sh(["mcopy", "-n", "-i", "\(img)@@\(esp.start * 512)", "::/grub/grubenv", envFile])
        try sh(["grub-editenv", envFile, "set", "B_TRY=3"])
        try sh(["mcopy", "-o", "-i", "\(img)@@\(esp.start * 512)", envFile, "::/grub/grubenv"])
        let r2 = try f.install(f.bundleV1, image: img, ["--keyring", f.keyring, "--compatible", "osbuild-qemu-x86-64"])
        #expect(r2.status == 0, "\(r2.stderrText)")
        #expect(r2.stdoutText.contains("slot B is now primary (was booting A)"))
        #expect(try grubenv(img, scratch: f.dir.path) == ["ORDER": "B A", "A_OK": "1", "B_OK": "1", "A_TRY": "0", "B_TRY": "0"])
    }

    /// Every refusal: exit 1 or 2, a message naming the problem, the image byte-identical.
    @Test func refusalsLeaveTheImageUntouched() throws {
        let f: InstallFixture
        do { f = try InstallFixture.get() } catch let s as InstallFixture.SkipFixture { print("SKIP: \(s.reason)"); return }
        let img = try f.copyImage("refuse.img")
        let before = try SHA256.hexOfFile(at: img)
        let stages = f.build.stages

        // Bundles that must be refused.
        func bundle(_ name: String, manifest: String, files: [String: String]) throws -> String {
            let c = f.dir.sub("c-" + name)
            try FileSystem.makeDirectories(c)
            for (dst, src) in files { try sh(["cp", "--sparse=always", src, c + "/" + dst]) }
            try FileSystem.writeAtomically(c + "/manifest.raucm", manifest)
            let out = f.dir.sub(name + ".raucb")
            try InstallFixture.create(c, out, keys: f.project + "/keys")
            return out
        }
        let big = f.dir.sub("big-kernel.img")
        try sh(["truncate", "-s", "25M", big])
        let tooBig = try bundle("toobig", manifest: "[update]\ncompatible=osbuild-qemu-x86-64\n[bundle]\nformat=verity\n[image.kernel]\nfilename=kernel.img\n",
                                files: ["kernel.img": big])
        let appfs = try bundle("appfs", manifest: "[update]\ncompatible=osbuild-qemu-x86-64\n[bundle]\nformat=verity\n[image.rootfs]\nfilename=rootfs.img\n[image.appfs]\nfilename=app.img\n",
                               files: ["rootfs.img": stages + "/rootfs-image/rootfs.img", "app.img": stages + "/rootfs-image/rootfs.img"])
        let plain = try bundle("plain", manifest: "[update]\ncompatible=osbuild-qemu-x86-64\n[image.rootfs]\nfilename=rootfs.img\n",
                               files: ["rootfs.img": stages + "/rootfs-image/rootfs.img"])
        let tampered = f.dir.sub("tampered.raucb")
        try sh(["cp", f.bundleV2, tampered])
        let tfd = open(tampered, O_RDWR)
        var b = try PositionalIO.read(tfd, count: 1, at: 200_000, path: tampered)
        b[0] ^= 0x40
        try PositionalIO.write(tfd, b, at: 200_000, path: tampered)
        close(tfd)
        try sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=someone else", "-days", "30",
                "-keyout", f.dir.sub("other.key"), "-out", f.dir.sub("other.pem")])

        let cases: [(String, String, [String], String)] = [
            ("wrong compatible", f.bundleV2, ["--board", "qemu-x86-64", "--compatible", "osbuild-rpi5-64"],
             "install refused (compatible): \(f.bundleV2): bundle compatible 'osbuild-qemu-x86-64' does not match the system's 'osbuild-rpi5-64'"),
            ("bad signature", f.bundleV2, ["--board", "qemu-x86-64", "--keyring", f.dir.sub("other.pem")], "signature check failed"),
            ("tampered payload", tampered, ["--board", "qemu-x86-64"], "verity hash tree check failed"),
            ("too big", tooBig, ["--board", "qemu-x86-64"],
             "image 'kernel.img' [image.kernel] is 26214400 bytes, larger than partition kernel1 of \(img) (25165824 bytes)"),
            ("missing slot class", appfs, ["--board", "qemu-x86-64"], "no target slot for [image.appfs]: slot class 'appfs' has no slot B"),
            ("plain refused by system.conf", plain, ["--board", "qemu-x86-64"], "the device refuses plain bundles"),
            ("no keyring", f.bundleV2, ["--compatible", "osbuild-qemu-x86-64"], "--keyring PEM"),
        ]
        for (what, bundle, args, message) in cases {
            let r = try f.install(bundle, image: img, args)
            #expect(r.status == 1 || r.status == 2, "\(what): exit \(r.status)")
            #expect(r.stderrText.contains(message), "\(what): \(r.stderrText)")
            #expect(try SHA256.hexOfFile(at: img) == before, "\(what): image changed")
        }
        // A U-Boot board whose bootstate holds no valid environment, and a kind without a backend.
        let variant = f.project + "/boards/qemu-uboot.toml"
        try FileSystem.writeAtomically(variant, "inherit = \"qemu-x86-64\"\n[bootloader]\nkind = \"uboot\"\n")
        defer { unlink(variant) }
        let u = try f.install(f.bundleV2, image: img, ["--board", "qemu-uboot", "--compatible", "osbuild-qemu-x86-64"])
        #expect(u.status == 1 && u.stderrText.contains("U-Boot environment in partition bootstate: U-Boot environment CRC32"), "\(u.stderrText)")
        let custom = f.project + "/boards/qemu-custom.toml"
        let backend = f.project + "/boards/qemu-custom-backend"
        try FileSystem.writeAtomically(backend, "#!/bin/sh\nexit 1\n", mode: 0o755)
        try FileSystem.writeAtomically(custom, "inherit = \"qemu-x86-64\"\n[bootloader]\nkind = \"custom\"\nbackend = \"boards/qemu-custom-backend\"\n")
        defer { unlink(custom); unlink(backend) }
        let c = try f.install(f.bundleV2, image: img, ["--board", "qemu-custom", "--compatible", "osbuild-qemu-x86-64"])
        #expect(c.status != 0 && c.stderrText.contains("is not supported by offline install"), "\(c.stderrText)")
        #expect(try SHA256.hexOfFile(at: img) == before)
    }

    /// Same image + same bundle => byte-identical result (and the same allocation).
    @Test func installIsReproducible() throws {
        let f: InstallFixture
        do { f = try InstallFixture.get() } catch let s as InstallFixture.SkipFixture { print("SKIP: \(s.reason)"); return }
        let a = try f.copyImage("repro-a.img"), b = try f.copyImage("repro-b.img")
        for img in [a, b] {
            let r = try f.install(f.bundleV2, image: img)
            #expect(r.status == 0, "\(r.stderrText)")
        }
        #expect(try SHA256.hexOfFile(at: a) == SHA256.hexOfFile(at: b))
        #expect(try sh(["du", "-k", a]).stdoutText.split(separator: "\t").first == sh(["du", "-k", b]).stdoutText.split(separator: "\t").first)
    }

    /// Two installs on one image would both pick the same target: the image is locked.
    @Test func lockedImageIsRefused() throws {
        let f: InstallFixture
        do { f = try InstallFixture.get() } catch let s as InstallFixture.SkipFixture { print("SKIP: \(s.reason)"); return }
        let img = try f.copyImage("locked.img")
        let before = try SHA256.hexOfFile(at: img)
        let fd = open(img, O_RDONLY)
        defer { close(fd) }
        #expect(flock(fd, LOCK_EX) == 0)
        let r = try f.install(f.bundleV2, image: img)
        #expect(r.status == 1 && r.stderrText.contains("locked by another process"), "\(r.stderrText)")
        #expect(try SHA256.hexOfFile(at: img) == before)
    }

    /// A payload that does not match the manifest is caught while copying: the slot is
    /// never switched. When the target was marked good, it is marked bad first (RAUC's
    /// order), so the bootloader keeps booting the other slot.
    @Test func corruptImageMidwayNeverSwitches() throws {
        let f: InstallFixture
        do { f = try InstallFixture.get() } catch let s as InstallFixture.SkipFixture { print("SKIP: \(s.reason)"); return }
        let img = try f.copyImage("midway.img")
        let envBefore = try grubenv(img, scratch: f.dir.path)
        let opts = InstallOptions(keyring: f.keyring, compatible: "osbuild-qemu-x86-64", reader: CorruptingReader(file: "rootfs.img"))
        #expect(throws: InstallError.self) { try BundleInstaller.install(bundle: f.bundleV2, image: img, options: opts) }
        #expect(try grubenv(img, scratch: f.dir.path) == envBefore)

        // B good and primary; corrupt install into A: A marked bad, B still boots.
        _ = try BundleInstaller.install(bundle: f.bundleV2, image: img, options: InstallOptions(keyring: f.keyring, compatible: "osbuild-qemu-x86-64"))
        do {
            _ = try BundleInstaller.install(bundle: f.bundleV1, image: img, options: opts)
            Issue.record("corrupt payload was installed")
        } catch let e as InstallError {
            #expect(e.check == .write)
            #expect(e.description.contains("'rootfs.img' has sha256"))
            #expect(e.description.contains("slot A stays inactive"))
        }
        #expect(try grubenv(img, scratch: f.dir.path) == ["ORDER": "B A", "A_OK": "0", "B_OK": "1", "A_TRY": "0", "B_TRY": "0"])
    }
}

/// U-Boot backend: the qemu-x86-64 layout with bootloader.kind = "uboot" (a board
/// variant) and RAUC's U-Boot variables on the bootstate partition; fw_printenv (libubootenv,
/// what RAUC calls on the device) reads the result.
@Suite(.serialized) struct BundleInstallUBootTests {
    @Test func installSwitchesBootOrderInUBootEnvironment() throws {
        guard TestEnv.oracle("fw_printenv", package: "libubootenv-tool") != nil else { return }
        let f: InstallFixture
        do { f = try InstallFixture.get() } catch let s as InstallFixture.SkipFixture { print("SKIP: \(s.reason)"); return }
        let img = try f.copyImage("uboot.img")
        let parts = try table(img).parts
        let bootstate = try #require(parts["bootstate"])
        let env = UBootEnvironment([("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "3"), ("BOOT_B_LEFT", "3"), ("bootdelay", "0")])
        let fd = open(img, O_RDWR)
        try PositionalIO.write(fd, try env.render(size: 0x4000), at: bootstate.start * 512, path: img)
        close(fd)
        let conf = try f.dir.write("fw_env.config", "\(img) 0x\(String(bootstate.start * 512, radix: 16)) 0x4000\n")
        func printenv() throws -> [String: String] {
            var out: [String: String] = [:]
            for line in try sh(["fw_printenv", "-c", conf]).stdoutText.split(separator: "\n") {
                let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2 { out[kv[0]] = kv[1] }
            }
            return out
        }
        #expect(try printenv()["BOOT_ORDER"] == "A B")
        let variant = f.project + "/boards/qemu-uboot-env.toml"
        try FileSystem.writeAtomically(variant, "inherit = \"qemu-x86-64\"\n[bootloader]\nkind = \"uboot\"\n")
        defer { unlink(variant) }
        let args = ["--board", "qemu-uboot-env", "--compatible", "osbuild-qemu-x86-64"]
        let r = try f.install(f.bundleV2, image: img, args)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("U-Boot environment in partition bootstate: slot B is now primary (was booting A)"))
        #expect(try printenv() == ["BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "bootdelay": "0"])
        #expect(try partitionHolds(img, try #require(parts["system1"]), f.raucV2 + "/rootfs.img"))
        // B used up its attempts (as the boot script counts): U-Boot boots A, so the next
        // install targets B again; B was not good, so nothing is marked bad first.
        try sh(["fw_setenv", "-c", conf, "BOOT_B_LEFT", "0"])
        let r2 = try f.install(f.bundleV1, image: img, args)
        #expect(r2.status == 0, "\(r2.stderrText)")
        #expect(r2.stdoutText.contains("slot B is now primary (was booting A)"))
        #expect(try printenv() == ["BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "bootdelay": "0"])
        // A good target is taken out of BOOT_ORDER before writing; a corrupt payload leaves it there.
        let opts = InstallOptions(board: try Project(root: f.project).loader.load("qemu-uboot-env"), keysDirectory: f.project + "/keys",
                                  compatible: "osbuild-qemu-x86-64", reader: CorruptingReader(file: "rootfs.img"))
        #expect(throws: InstallError.self) { try BundleInstaller.install(bundle: f.bundleV2, image: img, options: opts) }
        #expect(try printenv() == ["BOOT_ORDER": "B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3", "bootdelay": "0"])
    }
}

/// Tryboot backend on an MBR image with rpi5-64's layout (boot-control, boot-a/b, then
/// logical system-a/b): slots by partition number, autoboot.txt rewritten in place and
/// read back with mtools; fsck.vfat and sfdisk judge the result.
@Suite(.serialized) struct BundleInstallTrybootTests {
    @Test func installSwitchesAutobootPartition() throws {
        guard TestEnv.oracle("mkfs.vfat", package: "dosfstools") != nil else { return }
        let f: InstallFixture
        do { f = try InstallFixture.get() } catch let s as InstallFixture.SkipFixture { print("SKIP: \(s.reason)"); return }
        let tmp = try TempDir("tryboot")
        let img = tmp.sub("rpi5.img")
        try sh(["truncate", "-s", "820M", img])
        _ = try Subprocess.run(["sfdisk", "-q", img], input: Array("""
            label: dos
            label-id: 0x5a1b2c3d
            size=16M, type=c, bootable
            size=128M, type=c
            size=128M, type=c
            type=5
            size=256M, type=83
            size=256M, type=83
            size=16M, type=83

            """.utf8))
        let parts = try sh(["sfdisk", "--json", img]).stdoutText
        struct Root: Decodable { struct T: Decodable { struct P: Decodable { var start: UInt64; var size: UInt64 }; var partitions: [P] }; var partitiontable: T }
        let p = try JSONDecoder().decode(Root.self, from: Data(parts.utf8)).partitiontable.partitions
        // boot-control: FAT with autoboot.txt selecting boot-a (#2), tryboot boot-b (#3).
        let control = tmp.sub("control.vfat")
        try sh(["truncate", "-s", "16M", control])
        try sh(["mkfs.vfat", "-n", "CONTROL", control])
        let auto = try tmp.write("autoboot.txt", try Autoboot(bootPartition: 2, trybootPartition: 3).render())
        try sh(["mcopy", "-i", control, auto, "::/autoboot.txt"])
        try sh(["dd", "if=\(control)", "of=\(img)", "bs=512", "seek=\(p[0].start)", "conv=notrunc,sparse", "status=none"])
        // The update: a boot filesystem image and the rootfs.
        let content = tmp.sub("content")
        try FileSystem.makeDirectories(content)
        try sh(["truncate", "-s", "8M", content + "/boot.vfat"])
        try sh(["mkfs.vfat", "-n", "BOOT", content + "/boot.vfat"])
        try sh(["cp", f.raucV2 + "/rootfs.img", content + "/rootfs.img"])
        try FileSystem.writeAtomically(content + "/manifest.raucm", "[update]\ncompatible=osbuild-rpi5-64\nversion=2.0\n[bundle]\nformat=verity\n[image.boot]\nfilename=boot.vfat\n[image.rootfs]\nfilename=rootfs.img\n")
        let bundle = tmp.sub("rpi5.raucb")
        try InstallFixture.create(content, bundle, keys: f.project + "/keys")

        let r = try f.install(bundle, image: img, ["--board", "rpi5-64"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("/autoboot.txt in partition #1: slot B is now primary (was booting A)"), "\(r.stdoutText)")
        #expect(try sh(["sfdisk", "--json", img]).stdoutText == parts)
        let back = tmp.sub("autoboot.back")
        try sh(["mcopy", "-n", "-i", "\(img)@@\(p[0].start * 512)", "::/autoboot.txt", back])
        let a = try Autoboot.parse(try FileSystem.readText(back))
        #expect(a == Autoboot(bootPartition: 3, trybootPartition: 2))
        #expect(try FileSystem.readText(back).contains("boot_partition=3"))
        try sh(["dd", "if=\(img)", "of=\(control)", "bs=512", "skip=\(p[0].start)", "count=\(p[0].size)", "status=none"])
        #expect(try Subprocess.run(["fsck.vfat", "-n", control], check: false).status == 0)
        // boot-b is #3, system-b the second logical partition (#6, the 6th sfdisk entry).
        #expect(try partitionHolds(img, Part(start: p[2].start, size: p[2].size), content + "/boot.vfat"))
        #expect(try partitionHolds(img, Part(start: p[5].start, size: p[5].size), f.raucV2 + "/rootfs.img"))
        // And back: A again.
        let r2 = try f.install(bundle, image: img, ["--board", "rpi5-64"])
        #expect(r2.stdoutText.contains("slot A is now primary (was booting B)"), "\(r2.stderrText)")
    }
}

/// rpi5-64's own bundle, offline: its boot.vfat carries slot A's cmdline.txt and a RAUC
/// post-install hook that retargets it; `bundle install` recognises osbuild's hook and
/// applies it natively. Judged by mtools and fsck.vfat on the partitions, sfdisk, the
/// bundle as `rauc extract` sees it, and the real hook script run by sh under the
/// environment RAUC gives it.
@Suite(.serialized) struct BundleInstallRpi5Tests {
    static func tools() -> Bool {
        let all = [("rauc", "rauc"), ("mtype", "mtools"), ("mcopy", "mtools"), ("fsck.vfat", "dosfstools"), ("mkfs.vfat", "dosfstools"), ("sfdisk", "fdisk")]
        return all.map { TestEnv.oracle($0.0, package: $0.1) }.allSatisfy { $0 != nil }
    }

    /// Partition number -> extent, from sfdisk --json (MBR: logical partitions are 5, 6, ...).
    static func numbered(_ image: String) throws -> [Int: Part] {
        struct Root: Decodable {
            struct T: Decodable { struct P: Decodable { var node: String; var start: UInt64; var size: UInt64 }; var partitions: [P] }
            var partitiontable: T
        }
        let t = try JSONDecoder().decode(Root.self, from: Data(try sh(["sfdisk", "--json", image]).stdout))
        var out: [Int: Part] = [:]
        for p in t.partitiontable.partitions {
            if let n = Int(String(p.node.reversed().prefix { $0.isNumber }.reversed())) { out[n] = Part(start: p.start, size: p.size) }
        }
        return out
    }

    static func extract(_ image: String, _ p: Part, to file: String) throws {
        try sh(["dd", "if=\(image)", "of=\(file)", "bs=512", "skip=\(p.start)", "count=\(p.size)", "conv=sparse", "status=none"])
    }

    /// What the hook script itself makes of `cmdline` for slot `bootname`, run by sh with
    /// the variables RAUC sets for a slot-post-install hook (the slot "mounted" on a temp dir).
    static func runHook(_ script: String, cmdline: [UInt8], bootname: String, device: String, scratch: TempDir) throws -> [UInt8] {
        let mnt = scratch.sub("mnt-\(bootname)-\(UInt32.random(in: 0...UInt32.max))")
        try FileSystem.makeDirectories(mnt)
        try FileSystem.writeAtomically(mnt + "/cmdline.txt", cmdline)
        let index = bootname == "A" ? 0 : 1
        try sh(["sh", script, "slot-post-install"], env: [
            "RAUC_SLOT_NAME": "boot.\(index)", "RAUC_SLOT_STATE": "inactive", "RAUC_SLOT_CLASS": "boot", "RAUC_SLOT_TYPE": "vfat",
            "RAUC_SLOT_DEVICE": device, "RAUC_SLOT_BOOTNAME": bootname, "RAUC_SLOT_PARENT": "", "RAUC_SLOT_MOUNT_POINT": mnt,
            "RAUC_IMAGE_NAME": "boot.vfat", "RAUC_IMAGE_CLASS": "boot", "RAUC_MOUNT_PREFIX": scratch.path,
        ])
        return try FileSystem.readFile(mnt + "/cmdline.txt")
    }

    @Test func ownBundleInstallsOfflineWithItsHook() throws {
        guard Self.tools() else { return }
        let f = try BoardBuild.get("rpi5-64")
        let bundle2 = try f.versionTwo()
        let tmp = try TempDir("rpi5-install")
        let img = try f.copyImage("rpi5-install.img")
        defer { unlink(img) }
        let table0 = try sh(["sfdisk", "--json", img]).stdoutText
        let p = try Self.numbered(img)
        let control = try #require(p[1]), bootA = try #require(p[2]), bootB = try #require(p[3])
        let systemA = try #require(p[5]), systemB = try #require(p[6])
        let untouched = [try partitionSHA(img, bootA), try partitionSHA(img, systemA)]
        let auto0 = try sh(["mtype", "-i", "\(img)@@\(control.start * 512)", "::/autoboot.txt"]).stdoutText
        #expect(auto0.contains("boot_partition=2\n[tryboot]\nboot_partition=3\n"), "\(auto0)")

        // The bundle as RAUC sees it: boot.vfat with a post-install hook, rauc-hook.sh.
        let x = tmp.sub("v2")
        try sh(["rauc", "extract", "--keyring", f.keyring, bundle2, x])
        let manifest = try FileSystem.readText(x + "/manifest.raucm")
        #expect(manifest.contains("filename=rauc-hook.sh") && manifest.contains("hooks=post-install"), "\(manifest)")
        let shipped = tmp.sub("shipped-cmdline.txt")
        try sh(["mcopy", "-n", "-i", x + "/boot.vfat", "::/cmdline.txt", shipped])
        let cmdlineA = try FileSystem.readFile(shipped)
        #expect(String(decoding: cmdlineA, as: UTF8.self).hasPrefix("root=PARTUUID=5a1b2c3d-05 rauc.slot=A "))

        let r = try f.install(bundle2, image: img)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("/autoboot.txt in partition #1: slot B is now primary (was booting A)"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("post-install hook 'rauc-hook.sh' (osbuild's tryboot hook, applied natively): /cmdline.txt in partition boot-b"), "\(r.stdoutText)")

        // Partition table as it was; autoboot.txt as the tryboot backend leaves it.
        #expect(try sh(["sfdisk", "--json", img]).stdoutText == table0)
        let auto1 = try sh(["mtype", "-i", "\(img)@@\(control.start * 512)", "::/autoboot.txt"]).stdoutText
        #expect(auto1 == auto0.replacingOccurrences(of: "boot_partition=2\n[tryboot]\nboot_partition=3\n", with: "boot_partition=3\n[tryboot]\nboot_partition=2\n"), "\(auto1)")

        // boot-b: a clean FAT whose cmdline.txt is what the real hook script makes of slot A's.
        let b = tmp.sub("boot-b.vfat")
        try Self.extract(img, bootB, to: b)
        let fsck = try Subprocess.run(["fsck.vfat", "-n", b], check: false)
        #expect(fsck.status == 0, "fsck.vfat -n boot-b:\n\(fsck.stdoutText)")
        let native = try sh(["mtype", "-i", b, "::/cmdline.txt"]).stdout
        let byScript = try Self.runHook(x + "/rauc-hook.sh", cmdline: cmdlineA, bootname: "B", device: "/dev/mmcblk0p3", scratch: tmp)
        #expect(native == byScript, "native: \(String(decoding: native, as: UTF8.self)) script: \(String(decoding: byScript, as: UTF8.self))")
        #expect(native == (try FileSystem.readFile(f.stages + "/bootloader/boot-b/cmdline.txt")), "boot-b's cmdline.txt differs from the one the build made for slot B")
        #expect(String(decoding: native, as: UTF8.self).hasPrefix("root=PARTUUID=5a1b2c3d-06 rauc.slot=B "))
        // Nothing else in boot-b differs from the bundle's boot.vfat: same length, so only
        // the bytes where the two cmdlines differ (no directory entry change).
        #expect(native.count == cmdlineA.count)
        let changed = zip(native, cmdlineA).filter { $0 != $1 }.count
        let cmp = try Subprocess.run(["cmp", "-l", x + "/boot.vfat", b], check: false)
        #expect(cmp.stdoutText.split(separator: "\n").count == changed, "cmp -l boot.vfat boot-b:\n\(cmp.stdoutText.prefix(2000))")
        // Slot B's rootfs is the bundle's; slot A is untouched.
        #expect(try partitionHolds(img, systemB, x + "/rootfs.img"))
        #expect([try partitionSHA(img, bootA), try partitionSHA(img, systemA)] == untouched)
        // Reproducible: the same install on another copy gives the same bytes.
        let again = try f.copyImage("rpi5-install-again.img")
        defer { unlink(again) }
        #expect(try f.install(bundle2, image: again).status == 0)
        #expect(try Subprocess.run(["cmp", img, again], check: false).status == 0, "two installs of the same bundle differ")

        // Slot B boots from its cmdline.txt: the 2.0 rootfs (QEMU virt stands in for the Pi).
        if let aarch64 = try? BoardBuild.get("generic-aarch64"),
           let boot = try ShippedBoardBuildTests.bootPiRootfs(image: img, cmdline: String(decoding: native, as: UTF8.self), aarch64Out: aarch64.buildDir, work: tmp.path) {
            #expect(boot.log.contains("root PARTUUID=5a1b2c3d-06 is /dev/vda6") && boot.log.contains("osbuild-boot-ok slot=B version=2.0"),
                    "rpi5-64 slot B did not boot (cmdline \(boot.cmdline)):\n\(boot.log.suffix(3000))")
        }

        // Back to A with the 1.0 bundle: boot-a holds slot A's cmdline.txt again.
        let r2 = try f.install(f.bundle, image: img)
        #expect(r2.status == 0, "\(r2.stderrText)")
        #expect(r2.stdoutText.contains("slot A is now primary (was booting B)") && r2.stdoutText.contains("in partition boot-a is now"), "\(r2.stdoutText)")
        let a = tmp.sub("boot-a.vfat")
        try Self.extract(img, bootA, to: a)
        #expect(try Subprocess.run(["fsck.vfat", "-n", a], check: false).status == 0)
        #expect(try sh(["mtype", "-i", a, "::/cmdline.txt"]).stdout == (try FileSystem.readFile(f.stages + "/bootloader/boot-a/cmdline.txt")))
        #expect(try partitionHolds(img, systemB, x + "/rootfs.img"))
    }

    /// Hooks that are not osbuild's own for this board are refused, naming the bundle, the
    /// image section and the hook file; the image stays byte-identical. osbuild's hook that
    /// cannot do its work (no cmdline.txt) fails the install before the slot switch.
    @Test func otherHooksAreRefused() throws {
        guard Self.tools() else { return }
        let f = try BoardBuild.get("rpi5-64")
        let tmp = try TempDir("rpi5-refuse")
        let img = try f.copyImage("rpi5-refuse.img")
        defer { unlink(img) }
        let before = try SHA256.hexOfFile(at: img)
        let x = tmp.sub("v1")
        try sh(["rauc", "extract", "--keyring", f.keyring, f.bundle, x])
        let head = "[update]\ncompatible=osbuild-rpi5-64\nversion=3.0\n[bundle]\nformat=verity\n"
        func bundle(_ name: String, manifest: String, hook: String? = nil) throws -> String {
            let c = tmp.sub("c-" + name)
            try FileSystem.makeDirectories(c)
            for file in ["boot.vfat", "rootfs.img", "rauc-hook.sh"] { try sh(["cp", "--sparse=always", x + "/" + file, c + "/" + file]) }
            if let hook { try FileSystem.writeAtomically(c + "/rauc-hook.sh", hook, mode: 0o755) }
            try FileSystem.writeAtomically(c + "/manifest.raucm", manifest)
            let out = tmp.sub(name + ".raucb")
            try InstallFixture.create(c, out, keys: f.project + "/keys")
            return out
        }
        let ours = try FileSystem.readText(x + "/rauc-hook.sh")
        let images = "[image.boot]\nfilename=boot.vfat\nhooks=post-install\n[image.rootfs]\nfilename=rootfs.img\n"
        let cases: [(String, String, [String], String)] = [
            ("edited hook", try bundle("edited", manifest: head + "[hooks]\nfilename=rauc-hook.sh\n" + images, hook: ours + "touch /tmp/x\n"),
             ["--board", "rpi5-64"], "[image.boot] uses hooks=post-install from hook file 'rauc-hook.sh'; that script ("),
            ("rootfs hook", try bundle("rootfs-hook", manifest: head + "[hooks]\nfilename=rauc-hook.sh\n[image.boot]\nfilename=boot.vfat\nhooks=post-install\n[image.rootfs]\nfilename=rootfs.img\nhooks=post-install\n"),
             ["--board", "rpi5-64"], "[image.rootfs] uses hooks=post-install from hook file 'rauc-hook.sh'; osbuild's tryboot hook is only a post-install hook of [image.boot]"),
            ("pre-install", try bundle("pre-install", manifest: head + "[hooks]\nfilename=rauc-hook.sh\n[image.boot]\nfilename=boot.vfat\nhooks=pre-install;post-install\n[image.rootfs]\nfilename=rootfs.img\n"),
             ["--board", "rpi5-64"], "[image.boot] uses hooks=pre-install;post-install from hook file 'rauc-hook.sh'"),
            ("install-check", try bundle("install-check", manifest: head + "[hooks]\nfilename=rauc-hook.sh\nhooks=install-check\n" + images),
             ["--board", "rpi5-64"], "[hooks] hooks=install-check runs hook file 'rauc-hook.sh' before installing; offline install runs no bundle hooks"),
        ]
        // osbuild's hook for another layout (a board variant with another disk id): not this board's.
        let variant = f.project + "/boards/rpi5-other-disk.toml"
        try FileSystem.writeAtomically(variant, "inherit = \"rpi5-64\"\n[disk]\nid = \"0x11223344\"\n")
        defer { unlink(variant) }
        for (what, b, args, message) in cases + [("another board's layout", f.bundle, ["--board", "rpi5-other-disk", "--compatible", "osbuild-rpi5-64"],
                                                  "is not the hook osbuild generates for board rpi5-other-disk")] {
            let r = try f.install(b, image: img, args)
            #expect(r.status == 1, "\(what): exit \(r.status)")
            #expect(r.stderrText.contains(message) && r.stderrText.contains(b), "\(what): \(r.stderrText)")
            #expect(r.stderrText.contains("the image is unchanged"), "\(what): \(r.stderrText)")
            #expect(try SHA256.hexOfFile(at: img) == before, "\(what): image changed")
        }

        // osbuild's hook on a boot image without cmdline.txt: the hook fails after writing
        // (as the script's sed would), so the switch never happens: autoboot.txt still boots A.
        let c = tmp.sub("c-no-cmdline")
        try FileSystem.makeDirectories(c)
        try sh(["truncate", "-s", "8M", c + "/boot.vfat"])
        try sh(["mkfs.vfat", "-n", "BOOT", c + "/boot.vfat"])
        try sh(["cp", "--sparse=always", x + "/rootfs.img", c + "/rootfs.img"])
        try FileSystem.writeAtomically(c + "/rauc-hook.sh", ours, mode: 0o755)
        try FileSystem.writeAtomically(c + "/manifest.raucm", head + "[hooks]\nfilename=rauc-hook.sh\n" + images)
        let noCmdline = tmp.sub("no-cmdline.raucb")
        try InstallFixture.create(c, noCmdline, keys: f.project + "/keys")
        let control = try #require(try Self.numbered(img)[1])
        let auto0 = try sh(["mtype", "-i", "\(img)@@\(control.start * 512)", "::/autoboot.txt"]).stdoutText
        let r = try f.install(noCmdline, image: img)
        #expect(r.status == 1 && r.stderrText.contains("install failed (image write)") && r.stderrText.contains("no '/cmdline.txt'")
                && r.stderrText.contains("partition boot-b); slot B stays inactive"), "\(r.stderrText)")
        #expect(try sh(["mtype", "-i", "\(img)@@\(control.start * 512)", "::/autoboot.txt"]).stdoutText == auto0)
    }
}

/// The update path end to end, on what CI has (QEMU TCG), for both GRUB boards
/// (qemu-x86-64 with OVMF, generic-aarch64 with AAVMF on qemu-system-aarch64 -M virt):
/// the 1.0 image boots slot A; `bundle install` of the 2.0 bundle (the board rebuilt from a
/// project copy with the version bumped) makes it boot slot B with version 2.0;
/// installing 1.0 again returns to slot A.
@Suite(.serialized) struct BundleInstallBootTests {
    @Test(arguments: ["qemu-x86-64", "generic-aarch64"])
    func installedUpdateBootsFromSlotB(_ boardID: String) throws {
        guard QemuBootTests.tools(arch: boardID == "generic-aarch64" ? "aarch64" : "x86_64"),
              TestEnv.oracle("grub-editenv", package: "grub-common") != nil else { return }
        let start = Date()
        let f = try BoardBuild.get(boardID)
        let bundle2 = try f.versionTwo()
        let tmp = try TempDir("install-boot")
        let img = try f.copyImage("install-boot.img")
        defer { unlink(img) }
        var boots: [String] = []
        func boot(_ slot: String, _ version: String) throws {
            var o = BootTest.Options(image: img, arch: f.board.arch, logPath: tmp.sub("serial-\(slot)-\(version).log"), workDir: tmp.sub("work-\(slot)-\(version)"))
            o.inPlace = true  // the init marks the slot good in this very image
            o.expectSlot = slot
            o.expectVersion = version
            o.timeout = 600
            let r = try BootTest.run(o)
            boots.append("\(r.slot) \(r.version) \(String(format: "%.1f", r.seconds)) s")
            #expect(r.slot == slot && r.version == version)
            #expect(r.trace.failures.isEmpty, "\(r.trace.failures)")
            #expect(r.trace.grubBoots == [slot])
        }
        try boot("A", "1.0")
        let i1 = try f.install(bundle2, image: img)
        #expect(i1.status == 0, "\(i1.stderrText)")
        #expect(i1.stdoutText.contains("slot B is now primary (was booting A)"))
        try boot("B", "2.0")
        let env = try grubenv(img, scratch: tmp.path)
        #expect(env["ORDER"] == "B A" && env["B_OK"] == "1" && env["B_TRY"] == "0", "after booting B: \(env)")
        let i2 = try f.install(f.bundle, image: img)
        #expect(i2.status == 0, "\(i2.stderrText)")
        #expect(i2.stdoutText.contains("slot A is now primary (was booting B)"))
        try boot("A", "1.0")
        print("install boot test \(boardID) (TCG): boots \(boots.joined(separator: ", ")); \(String(format: "%.1f", Date().timeIntervalSince(start))) s in all (shared builds included)")
    }
}

/// The real payload reader, with one byte of one file flipped in the stream.
struct CorruptingReader: PayloadImageReader {
    var file: String
    func stream(image: String, file name: String, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var first = true
        try defaultPayloadReader.stream(image: image, file: name) { buf in
            guard name == file, first else { return try sink(buf) }
            first = false
            var copy = [UInt8](buf)
            copy[copy.count / 2] ^= 1
            try copy.withUnsafeBytes { try sink($0) }
        }
    }
    func extractAll(image: String, to directory: String) throws {
        try defaultPayloadReader.extractAll(image: image, to: directory)
    }
}
