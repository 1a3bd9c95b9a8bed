import Basics
import DiskImage
import Foundation
import Testing
import TestSupport

/// The same config through Debian's genimage (16) and through osbuild: identical
/// `sfdisk --dump`, identical raw partition bytes, vfat/ext4 contents equal as trees.
@Suite(.serialized) struct GenimageCompatTests {
    static let epoch = "1704067200"

    /// Inputs shared by both runs: a rootfs tree with a /boot mountpoint, input files.
    func makeInputs(_ tmp: TempDir) throws {
        try tmp.write("root/etc/hostname", "compat\n")
        try tmp.write("root/usr/bin/tool", "#!/bin/sh\necho tool\n", mode: 0o755)
        try tmp.write("root/usr/share/doc/a-long-file-name-for-testing.txt", String(repeating: "doc ", count: 5000))
        try sh(["ln", "-s", "../usr/bin/tool", tmp.sub("root/etc/tool-link")])
        try tmp.write("root/boot/kernel.img", String(repeating: "K", count: 70000))
        try tmp.write("root/boot/dtbs/board.dtb", "dtb")
        try tmp.write("input/cmdline.txt", "root=PARTUUID=0b0b0b0b-0000-4000-8000-000000000002 rootwait\n")
        try tmp.write("input/config.txt", "kernel=Image\n")
        try tmp.write("input/README", "overlays\n")
        try tmp.write("input/spl.bin", String(repeating: "\u{5A}", count: 20000))
        try tmp.write("input/kernel.bin", String(repeating: "k", count: 3_000_000))
        try sh(["find", tmp.sub("root"), tmp.sub("input"), "-exec", "touch", "-h", "-d", "@\(Self.epoch)", "{}", "+"])
    }

    /// name, type, mode, size, mtime, link target and content hash of every entry.
    func listing(_ dir: String, mtimes: Bool = true) throws -> String {
        let fmt = mtimes ? "%P %y %m %s %T@ %l\\n" : "%P %y %m %s %l\\n"
        let r = try sh(["find", dir, "-mindepth", "1", "-printf", fmt])
        let sums = try sh(["sh", "-c", "cd '\(dir)' && find . -type f -print0 | sort -z | xargs -0r sha256sum"]).stdoutText
        // Extraction tools do not restore symlink times: compare those without mtime.
        let lines = r.stdoutText.split(separator: "\n").map { line -> String in
            var f = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            if mtimes, f.count > 4, f[1] == "l" { f[4] = "-" }
            return f.joined(separator: " ")
        }
        return lines.sorted().joined(separator: "\n") + "\n" + sums
    }

    func dump(_ image: String) throws -> String {
        try sh(["sfdisk", "--dump", image]).stdoutText.replacingOccurrences(of: image, with: "IMG")
    }

    func runBoth(_ cfg: String, _ tmp: TempDir) throws -> (genimage: String, osbuild: String) {
        let cfgPath = try tmp.write("genimage.cfg", cfg)
        let env = ["SOURCE_DATE_EPOCH": Self.epoch, "E2FSPROGS_FAKE_TIME": Self.epoch, "PATH": "/usr/sbin:/sbin:/usr/bin:/bin"]
        try sh(["genimage", "--rootpath", tmp.sub("root"), "--tmppath", tmp.sub("gtmp"), "--inputpath", tmp.sub("input"),
                "--outputpath", tmp.sub("gout"), "--config", cfgPath], env: env)
        let project = try GenimageProject(config: cfgPath, paths: GenimagePaths(
            rootpath: tmp.sub("root"), tmppath: tmp.sub("otmp"), inputpath: tmp.sub("input"), outputpath: tmp.sub("oout")),
            environment: ProcessInfo.processInfo.environment.merging(env) { _, b in b })
        try project.build(epoch: Int64(Self.epoch))
        return (tmp.sub("gout"), tmp.sub("oout"))
    }

    func partitionBytes(_ image: String, _ start: UInt64, _ size: UInt64, _ out: String) throws -> String {
        try extract(image, offset: start * 512, size: size * 512, to: out)
        return out
    }

    func vfatTree(_ part: String, _ dir: String) throws -> String {
        try FileSystem.makeDirectories(dir)
        try sh(["mcopy", "-s", "-n", "-m", "-i", part, "::/", dir + "/"], env: ["MTOOLS_SKIP_CHECK": "1"], check: false)
        let r = try sh(["fsck.vfat", "-n", part], check: false)
        #expect(r.status == 0, "fsck.vfat: \(r.stdoutText)")
        return try listing(dir, mtimes: true)
    }

    func extTree(_ part: String, _ dir: String) throws -> String {
        try FileSystem.makeDirectories(dir)
        try sh(["debugfs", "-R", "rdump / \(dir)", part])
        let r = try sh(["e2fsck", "-fn", part], check: false)
        #expect(r.status == 0, "e2fsck: \(r.stdoutText)")
        // rdump restores modes and mtimes; ownership is the runner's in both.
        return try listing(dir, mtimes: true)
    }

    var haveTools: Bool {
        TestEnv.oracle("genimage", package: "genimage") != nil && TestEnv.oracle("sfdisk", package: "fdisk") != nil
            && TestEnv.oracle("mcopy", package: "mtools") != nil && TestEnv.oracle("mkfs.vfat", package: "dosfstools") != nil
    }

    @Test func gptWithBlobVfatExt4() throws {
        guard haveTools else { return }
        let tmp = try TempDir("compat-gpt")
        try makeInputs(tmp)
        let (g, o) = try runBoth("""
            image boot.vfat {
                vfat {
                    label = "BOOT"
                    extraargs = "-i 0x0B007001"
                    files = { "cmdline.txt", "config.txt" }
                    file overlays/README { image = "README" }
                }
                size = 16M
                temporary = true
            }
            image boot-mp.vfat {
                vfat { label = "KERNELS" }
                mountpoint = "/boot"
                size = 8M
            }
            image rootfs.ext4 {
                ext4 {
                    use-mke2fs = true
                    label = "rootfs"
                    extraargs = "-U 6b2a7f3e-0d2c-4b77-9a39-2d0c5f7c1a10"
                }
                size = 24M
                mountpoint = "/"
            }
            image disk.img {
                hdimage {
                    partition-table-type = "gpt"
                    align = 1M
                    disk-uuid = "4a1b2c3d-1111-4222-8333-444455556666"
                }
                partition spl { in-partition-table = false offset = 32K image = "spl.bin" }
                partition boot {
                    partition-type-uuid = "F"
                    partition-uuid = "0b0b0b0b-0000-4000-8000-000000000001"
                    bootable = true
                    image = "boot.vfat"
                    offset = 4M
                }
                partition kernel { partition-type-uuid = "L" partition-uuid = "0b0b0b0b-0000-4000-8000-000000000005" image = "kernel.bin" }
                partition kernels { partition-type-uuid = "U" partition-uuid = "0b0b0b0b-0000-4000-8000-000000000006" image = "boot-mp.vfat" }
                partition rootfs {
                    partition-type-uuid = "${ROOT_TYPE:-4f68bce3-e8cd-4db1-96e7-fbcaf984b709}"
                    partition-uuid = "0b0b0b0b-0000-4000-8000-000000000002"
                    image = "rootfs.ext4"
                    read-only = true
                }
                partition data { partition-type-uuid = "L" partition-uuid = "0b0b0b0b-0000-4000-8000-000000000003" size = 8M }
            }
            """, tmp)
        let gd = try dump(g + "/disk.img"), od = try dump(o + "/disk.img")
        #expect(gd == od)
        #expect(try FileSystem.stat(g + "/disk.img").size == FileSystem.stat(o + "/disk.img").size)
        let t = try SfdiskTable.read(o + "/disk.img")
        let p = try #require(t.partitions)
        // Raw blob and raw kernel partition: identical bytes.
        let gb = try FileSystem.readFile(g + "/disk.img"), ob = try FileSystem.readFile(o + "/disk.img")
        #expect(gb[32768..<52768] == ob[32768..<52768])
        let k = (Int(p[1].start) * 512)..<(Int(p[1].start + p[1].size) * 512)
        #expect(gb[k] == ob[k])
        // vfat (files list + mountpoint) and ext4 (mountpoint "/" minus /boot): equal trees.
        for (i, kind) in [(0, "vfat"), (2, "vfat"), (3, "ext")] {
            let gp = try partitionBytes(g + "/disk.img", p[i].start, p[i].size, tmp.sub("g\(i).part"))
            let op = try partitionBytes(o + "/disk.img", p[i].start, p[i].size, tmp.sub("o\(i).part"))
            let gt = kind == "vfat" ? try vfatTree(gp, tmp.sub("gt\(i)")) : try extTree(gp, tmp.sub("gt\(i)"))
            let ot = kind == "vfat" ? try vfatTree(op, tmp.sub("ot\(i)")) : try extTree(op, tmp.sub("ot\(i)"))
            #expect(gt == ot, "partition \(i) trees differ")
            #expect(!ot.isEmpty)
        }
        // Our output is sparse: far fewer bytes on disk than genimage's.
        let du = { (f: String) throws -> UInt64 in UInt64(try sh(["du", "-k", f]).stdoutText.split(separator: "\t")[0]) ?? 0 }
        #expect(try du(o + "/disk.img") <= du(g + "/disk.img"))
    }

    @Test func mbrWithExtendedPartition() throws {
        guard haveTools else { return }
        let tmp = try TempDir("compat-mbr")
        try makeInputs(tmp)
        let (g, o) = try runBoth("""
            image boot.vfat {
                vfat { label = "BOOT" extraargs = "-i 0x12345678" files = { "cmdline.txt", "config.txt" } }
                size = 8M
            }
            image sdcard.img {
                hdimage { disk-signature = 0x5452504a align = 1M }
                partition boot { partition-type = 0xC bootable = true image = "boot.vfat" }
                partition kernel { partition-type = 0x83 image = "kernel.bin" }
                partition p3 { partition-type = 0x83 size = 2M }
                partition p4 { partition-type = 0x83 size = 2M }
                partition p5 { partition-type = 0x82 size = 2M }
                partition p6 { partition-type = 0x83 size = 3M }
            }
            """, tmp)
        #expect(try dump(g + "/sdcard.img") == dump(o + "/sdcard.img"))
        let t = try SfdiskTable.read(o + "/sdcard.img")
        #expect(t.partitions?.count == 7)
        #expect(t.id == "0x5452504a")
        let p = try #require(t.partitions)
        let gp = try partitionBytes(g + "/sdcard.img", p[0].start, p[0].size, tmp.sub("g.part"))
        let op = try partitionBytes(o + "/sdcard.img", p[0].start, p[0].size, tmp.sub("o.part"))
        #expect(try vfatTree(gp, tmp.sub("gt")) == vfatTree(op, tmp.sub("ot")))
    }

    @Test func hybridTable() throws {
        guard haveTools else { return }
        let tmp = try TempDir("compat-hybrid")
        try makeInputs(tmp)
        let (g, o) = try runBoth("""
            image disk.img {
                hdimage { partition-table-type = "hybrid" align = 1M disk-uuid = "6a1c0d5e-9b0f-4f7a-8e2d-1c3b5a7d9e0f" disk-signature = 0x1234 }
                partition kernel { partition-type = 0xC partition-type-uuid = "F" partition-uuid = "0b0b0b0b-0000-4000-8000-00000000000a" image = "kernel.bin" bootable = true }
                partition data { partition-type-uuid = "L" partition-uuid = "0b0b0b0b-0000-4000-8000-00000000000b" size = 4M }
            }
            """, tmp)
        #expect(try dump(g + "/disk.img") == dump(o + "/disk.img"))
        // The MBR partition entries (bytes 446..<510) and disk signature agree too.
        let gm = try FileSystem.readFile(g + "/disk.img").prefix(512), om = try FileSystem.readFile(o + "/disk.img").prefix(512)
        #expect(Array(gm[440..<444]) == Array(om[440..<444]))
        for slot in 0..<4 {
            let a = 446 + slot * 16
            // status, type, start, size (CHS fields are informational).
            #expect(gm[a] == om[a] && gm[a + 4] == om[a + 4] && Array(gm[(a + 8)..<(a + 16)]) == Array(om[(a + 8)..<(a + 16)]), "MBR slot \(slot)")
        }
    }
}
