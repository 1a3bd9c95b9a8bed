import Basics
import Bundle
import Foundation
import OSBuildKit
import Testing
import TestSupport

/// `osbuild bundle install` on a real qemu-x86-64 image (built once for the suite in a
/// throwaway copy of the project), judged by other tools: grub-editenv on the grubenv
/// mcopy extracts, fsck.vfat on the ESP, sfdisk/sgdisk on the table, and `rauc extract`
/// for what the partitions must hold.
final class InstallFixture: @unchecked Sendable {
    let dir: TempDir
    let project: String
    let image: String  // pristine image, never modified
    let bundleV1: String
    let bundleV2: String
    let keyring: String
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
        dir = try TempDir("install")
        project = dir.sub("project")
        try FileSystem.makeDirectories(project)
        try sh(["cp", "-a", TestEnv.repoRoot + "/boards", TestEnv.repoRoot + "/overlay", project])
        let dl = FileSystem.exists(TestEnv.repoRoot + "/dl") ? TestEnv.repoRoot + "/dl" : project + "/dl"
        try sh([CLI.binary, "make", "qemu-x86-64", "-O", project + "/build"], env: ["OSBUILD_PROJECT": project, "OSBUILD_DL_CACHE": dl, "NO_COLOR": "1"])
        let stages = project + "/build/stages"
        image = stages + "/disk/osbuild_qemu-x86-64-1.0.img"
        bundleV1 = stages + "/bundle/osbuild_qemu-x86-64-1.0.raucb"
        keyring = project + "/keys/dev-ca.cert.pem"
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
        try InstallFixture.create(content, bundleV2, keys: project + "/keys")
        raucV1 = dir.sub("rauc-v1")
        raucV2 = dir.sub("rauc-v2")
        try sh(["rauc", "extract", "--keyring", keyring, bundleV1, raucV1])
        try sh(["rauc", "extract", "--keyring", keyring, bundleV2, raucV2])
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
        try Subprocess.run([CLI.binary, "bundle", "install", bundle, "--image", image] + extra,
                           environment: ["OSBUILD_PROJECT": project, "NO_COLOR": "1"], check: false)
    }
}

@discardableResult
private func sh(_ args: [String], env: [String: String] = [:]) throws -> Subprocess.Result {
    try Subprocess.run(args, environment: env)
}

private struct Part: Decodable {
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
        let stages = f.project + "/build/stages"

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
        // Unsupported bootloader kinds say so (board variant with U-Boot).
        let variant = f.project + "/boards/qemu-uboot.toml"
        try FileSystem.writeAtomically(variant, "inherit = \"qemu-x86-64\"\n[bootloader]\nkind = \"uboot\"\n")
        defer { unlink(variant) }
        let u = try f.install(f.bundleV2, image: img, ["--board", "qemu-uboot", "--compatible", "osbuild-qemu-x86-64"])
        #expect(u.status == 1 && u.stderrText.contains("bootloader.kind = \"uboot\" is not supported by offline install yet"), "\(u.stderrText)")
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
