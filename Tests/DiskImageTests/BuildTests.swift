import Basics
import DiskImage
import FSTree
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct BuildTests {
    /// sgdisk -v must report no problems.
    func sgdiskClean(_ image: String) throws {
        guard TestEnv.oracle("sgdisk", package: "gdisk") != nil else { return }
        let r = try sh(["sgdisk", "-v", image], check: false)
        #expect(r.status == 0)
        #expect(r.stdoutText.contains("No problems found"), "sgdisk -v: \(r.stdoutText)")
    }

    func fsckVFAT(_ image: String, _ e: ResolvedLayout.Entry, _ tmp: TempDir) throws {
        guard TestEnv.oracle("fsck.vfat", package: "dosfstools") != nil else { return }
        let part = tmp.sub("\(e.name).vfat")
        try extract(image, offset: e.offset, size: e.size, to: part)
        let r = try sh(["fsck.vfat", "-n", part], check: false)
        #expect(r.status == 0, "fsck.vfat -n \(e.name): \(r.stdoutText) \(r.stderrText)")
    }

    func fsckExt(_ image: String, _ e: ResolvedLayout.Entry, _ tmp: TempDir) throws {
        guard TestEnv.oracle("e2fsck", package: "e2fsprogs") != nil else { return }
        let part = tmp.sub("\(e.name).ext4")
        try extract(image, offset: e.offset, size: e.size, to: part)
        let r = try sh(["e2fsck", "-fn", part], check: false)
        #expect(r.status == 0, "e2fsck -fn \(e.name): \(r.stdoutText) \(r.stderrText)")
    }

    @Test func haosGPTLayout() throws {
        guard TestEnv.oracle("sfdisk", package: "fdisk") != nil else { return }
        let tmp = try TempDir("haos")
        let boot = try sampleTree(tmp, name: "boot")
        let rootfs = try sampleTree(tmp, name: "rootfs")
        try sh(["ln", "-s", "config.txt", rootfs + "/link"])
        let layout = ExampleLayouts.haos(bootFiles: boot, rootfs: rootfs)
        let img = tmp.sub("haos.img")
        let result = try DiskImageBuilder.build(layout, to: img, options: .init(epoch: 1_700_000_000))

        let t = try SfdiskTable.read(img)
        #expect(t.label == "gpt")
        #expect(t.id == "8D8C9F4A-51B6-4E4A-9C1A-0B5A1F1E2D3C")
        let parts = try #require(t.partitions)
        #expect(parts.map(\.name) == ["hassos-boot", "hassos-kernel0", "hassos-system0", "hassos-kernel1", "hassos-system1",
                                       "hassos-bootstate", "hassos-overlay", "hassos-data"])
        #expect(parts[0].type == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
        #expect(parts[0].uuid == "B3DD0952-733C-4C88-8CBA-CAB9B8B4377F")
        #expect(parts[2].type == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")
        #expect(parts.map(\.start) == result.layout.entries.map { $0.offset / 512 })
        #expect(parts.map(\.size) == result.layout.entries.map { $0.size / 512 })
        #expect(parts[0].start == 2048)
        try sgdiskClean(img)
        try fsckVFAT(img, result.layout.entries[0], tmp)
        for i in [2, 6, 7] { try fsckExt(img, result.layout.entries[i], tmp) }

        // blkid sees the filesystems where the layout put them.
        let e = result.layout.entries[2]
        let part = tmp.sub("sys0.ext4")
        try extract(img, offset: e.offset, size: e.size, to: part)
        let b = try sh(["blkid", "-o", "export", part]).stdoutText
        #expect(b.contains("UUID=3c1ef1b0-5e3d-4a5f-9e7c-000000000001"))
        #expect(b.contains("LABEL=system0"))
        let cat = try sh(["debugfs", "-R", "cat /overlays/README", part]).stdoutText
        #expect(cat == "overlays live here\n")
        // mke2fs copied host ctimes; the debugfs pass must have replaced them with the epoch.
        let st = try sh(["debugfs", "-R", "stat /cmdline.txt", part]).stdoutText
        #expect(st.contains("ctime: 0x6553f100:00000000"), "\(st)")
        #expect(st.contains("crtime: 0x6553f100:00000000"), "\(st)")
        let link = try sh(["debugfs", "-R", "stat /link", part]).stdoutText
        #expect(link.contains("Fast link dest: \"config.txt\""))

        // Reproducible: a second build is byte-identical.
        let img2 = tmp.sub("haos2.img")
        try DiskImageBuilder.build(layout, to: img2, options: .init(epoch: 1_700_000_000))
        #expect(try fileSHA(img) == fileSHA(img2))
        // Sparse: empty partitions are holes.
        let du = try sh(["du", "-k", img]).stdoutText.split(separator: "\t").first.flatMap { UInt64($0) } ?? 0
        #expect(du * 1024 < result.layout.size / 2, "image uses \(du) KiB of \(result.layout.size / 1024) KiB")
    }

    @Test func raspberryPiMBR() throws {
        guard TestEnv.oracle("sfdisk", package: "fdisk") != nil else { return }
        let tmp = try TempDir("rpi")
        let boot = try sampleTree(tmp, name: "boot")
        let img = tmp.sub("rpi.img")
        let result = try DiskImageBuilder.build(ExampleLayouts.raspberryPi(bootFiles: boot), to: img, options: .init(epoch: 1_700_000_000))
        let t = try SfdiskTable.read(img)
        #expect(t.label == "dos")
        #expect(t.id == "0x54525049")
        let parts = try #require(t.partitions)
        #expect(parts.map(\.type) == ["c", "c", "c", "83"])
        #expect(parts.map { $0.bootable ?? false } == [false, true, false, false])
        #expect(parts.map(\.start) == [8192, 16384, 98304, 180224])
        // Raw blobs: boot code kept next to the table, SPL at sector 64.
        let bytes = try FileSystem.readFile(img)
        #expect(bytes[0..<440].allSatisfy { $0 == 0xEB })
        #expect(bytes[510] == 0x55 && bytes[511] == 0xAA)
        #expect(bytes[32768..<(32768 + 30000)].allSatisfy { $0 == 0x5A })
        for i in 0..<3 { try fsckVFAT(img, result.layout.entries[i], tmp) }
        try fsckExt(img, result.layout.entries[3], tmp)
        // mtools reads back the files with their names and contents.
        if TestEnv.oracle("mcopy", package: "mtools") != nil {
            let e = result.layout.entries[1]
            let part = tmp.sub("bootA.vfat")
            try extract(img, offset: e.offset, size: e.size, to: part)
            let out = tmp.sub("readback")
            try FileSystem.makeDirectories(out)
            try sh(["mcopy", "-s", "-n", "-i", part, "::/overlays", "::/EFI", "::/cmdline.txt", "::/config.txt", "::/empty", out], env: ["MTOOLS_SKIP_CHECK": "1"])
            let diff = try sh(["diff", "-r", boot, out], check: false)
            #expect(diff.status == 0, "vfat read-back differs: \(diff.stdoutText)")
            let label = try sh(["mlabel", "-s", "-i", part, "::"], env: ["MTOOLS_SKIP_CHECK": "1"]).stdoutText
            #expect(label.contains("BOOT_A"))
        }
    }

    @Test func mbrExtendedLogical() throws {
        guard TestEnv.oracle("sfdisk", package: "fdisk") != nil else { return }
        let tmp = try TempDir("ext")
        let parts = (1...6).map { Partition(name: "p\($0)", size: .bytes(2 * MiB), type: $0 == 6 ? .swap : .linux) }
        let layout = DiskLayout(table: .mbr, alignment: MiB, extendedPartition: .automatic, partitions: parts)
        let img = tmp.sub("ext.img")
        let r = try DiskImageBuilder.build(layout, to: img)
        let t = try SfdiskTable.read(img)
        let ps = try #require(t.partitions)
        #expect(ps.map(\.type) == ["83", "83", "83", "f", "83", "83", "82"])
        let logical = r.layout.entries.filter(\.logical)
        #expect(logical.map(\.name) == ["p4", "p5", "p6"])
        #expect(Array(ps.suffix(3).map(\.start)) == logical.map { $0.offset / 512 })
        #expect(ps[3].start == logical[0].offset / 512 - 2048)
        #expect(ps[3].start + ps[3].size == (logical[2].offset + logical[2].size) / 512)
    }

    @Test func hybridTable() throws {
        guard TestEnv.oracle("sfdisk", package: "fdisk") != nil else { return }
        let tmp = try TempDir("hybrid")
        let boot = try sampleTree(tmp, name: "boot")
        let img = tmp.sub("hybrid.img")
        let r = try DiskImageBuilder.build(ExampleLayouts.hybrid(bootFiles: boot), to: img, options: .init(epoch: 1_700_000_000))
        let gpt = try SfdiskTable.read(img)
        #expect(gpt.label == "gpt")
        let gp = try #require(gpt.partitions)
        #expect(gp[1].attrs == "GUID:60")
        #expect(gp[0].attrs == "LegacyBIOSBootable")
        // The MBR entries: boot mirrored (active, FAT32 LBA), then the 0xEE guard.
        let mbr = try FileSystem.readFile(img).prefix(512)
        #expect(mbr[446] == 0x80 && mbr[446 + 4] == 0x0C)
        let start = UInt32(mbr[454]) | UInt32(mbr[455]) << 8 | UInt32(mbr[456]) << 16 | UInt32(mbr[457]) << 24
        #expect(UInt64(start) == r.layout.entries[0].offset / 512)
        #expect(mbr[462 + 4] == 0xEE)
        #expect(Array(mbr[440..<444]) == [0x78, 0x56, 0x34, 0x12])
        try sgdiskClean(img)
        let p = try sh(["sgdisk", "-p", img], check: false).stdoutText + (try sh(["gdisk", "-l", img], check: false).stdoutText)
        #expect(p.contains("hybrid"), "gdisk: \(p)")
        try fsckVFAT(img, r.layout.entries[0], tmp)
    }

    @Test func failedBuildLeavesNoOutput() throws {
        let tmp = try TempDir("fail")
        let layout = DiskLayout(table: .gpt, partitions: [
            Partition(name: "bad", size: .bytes(4 * MiB),
                      content: .filesystem(FilesystemSpec(kind: .vfat, label: "WAY-TOO-LONG-LABEL"))),
        ])
        let img = tmp.sub("x.img")
        #expect(throws: FilesystemError.self) { try DiskImageBuilder.build(layout, to: img) }
        #expect(try FileSystem.listDirectory(tmp.path).isEmpty)
    }
}

@Suite struct Ext4TreeTests {
    @Test func devicesFifosOwnersAndClampedTimesFromATree() throws {
        guard TestEnv.oracle("e2fsck", package: "e2fsprogs") != nil else { return }
        let tmp = try TempDir("ext4tree")
        var tree = FSTree()
        try tree.insert("/dev", .directory(mtime: Timestamp(seconds: 1_600_000_000)))
        try tree.insert("/dev/null", Inode(kind: .charDevice, permissions: 0o666, mtime: Timestamp(seconds: 1_600_000_000), rdev: DeviceNumber(major: 1, minor: 3)))
        try tree.insert("/dev/sda", Inode(kind: .blockDevice, permissions: 0o660, gid: 6, mtime: Timestamp(seconds: 1_600_000_000), rdev: DeviceNumber(major: 8, minor: 0)))
        try tree.insert("/run/initctl", Inode(kind: .fifo, permissions: 0o600, mtime: Timestamp(seconds: 1_600_000_000)), createParents: true)
        try tree.insert("/home/user/future.txt", .file(.bytes(Array("from the future\n".utf8)), permissions: 0o4750, uid: 1000, gid: 1000,
                                                          mtime: Timestamp(seconds: 2_000_000_000, nanoseconds: 5)), createParents: true)
        let spec = FilesystemSpec(kind: .ext4, source: .tree(tree), label: "t", uuid: "3C1EF1B0-5E3D-4A5F-9E7C-0000000000EE")
        let a = tmp.sub("a.ext4"), b = tmp.sub("b.ext4")
        try FilesystemMaker.make(spec, size: 8 * MiB, at: a, epoch: 1_700_000_000, work: tmp.sub("wa"), partition: "t")
        try FilesystemMaker.make(spec, size: 8 * MiB, at: b, epoch: 1_700_000_000, work: tmp.sub("wb"), partition: "t")
        #expect(try fileSHA(a) == fileSHA(b))
        let fsck = try sh(["e2fsck", "-fn", a], check: false)
        #expect(fsck.status == 0, "\(fsck.stdoutText)")
        let null = try sh(["debugfs", "-R", "stat /dev/null", a]).stdoutText
        #expect(null.contains("Type: character special") && null.contains("Mode:  0666"))
        #expect(null.contains("Device major/minor number: 01:03"))
        let sda = try sh(["debugfs", "-R", "stat /dev/sda", a]).stdoutText
        #expect(sda.contains("Type: block special") && sda.contains("Group:     6"))
        #expect(try sh(["debugfs", "-R", "stat /run/initctl", a]).stdoutText.contains("Type: FIFO"))
        let f = try sh(["debugfs", "-R", "stat /home/user/future.txt", a]).stdoutText
        #expect(f.contains("Mode:  04750") && f.contains("User:  1000") && f.contains("Group:  1000"))
        // mtime clamped to the epoch; every time field of every inode is the epoch or older.
        #expect(f.contains("mtime: 0x6553f100:00000000"), "\(f)")
        let dev = try sh(["debugfs", "-R", "stat /dev", a]).stdoutText
        #expect(dev.contains("mtime: 0x5f5e1000:00000000"), "\(dev)")
        #expect(dev.contains("ctime: 0x6553f100:00000000") && dev.contains("atime: 0x6553f100:00000000"))
    }
}

@Suite struct VFATTests {
    /// Many similar long names (short-name collisions), deep dirs, empty and cluster-sized
    /// files, for each FAT size; fsck.vfat clean and mtools reads back the same tree.
    @Test(arguments: [FilesystemSpec.FATSize.fat12, .fat16, .fat32])
    func nativeWriterAgainstDosfsckAndMtools(_ fat: FilesystemSpec.FATSize) throws {
        guard TestEnv.oracle("fsck.vfat", package: "dosfstools") != nil, TestEnv.oracle("mcopy", package: "mtools") != nil else { return }
        let tmp = try TempDir("vfat\(fat.rawValue)")
        let src = tmp.sub("src")
        let count = fat == .fat12 ? 40 : 300
        for i in 0..<count { try tmp.write("src/many/a-rather-long-file-name-\(i).txt", "file \(i)\n") }
        try tmp.write("src/d1/d2/d3/d4/d5/deep.bin", String(repeating: "x", count: 2048))
        try tmp.write("src/EXACT.TXT", "short name\n")
        try tmp.write("src/lower.txt", "lower\n")
        try tmp.write("src/.hidden", "dot\n")
        try tmp.write("src/two.dots.tar.gz", "gz\n")
        try tmp.write("src/ünïcödé name.txt", "utf\n")
        try tmp.write("src/empty", "")
        try sh(["find", src, "-exec", "touch", "-h", "-d", "@1700000000", "{}", "+"])
        let size: UInt64 = fat == .fat32 ? 40 * MiB : fat == .fat16 ? 8 * MiB : 1 * MiB
        let spec = FilesystemSpec(kind: .vfat, source: .directory(src), label: "TEST", uuid: "1234ABCD", fatSize: fat)
        let img = tmp.sub("fs.img"), img2 = tmp.sub("fs2.img")
        try FilesystemMaker.make(spec, size: size, at: img, epoch: 1_700_000_000, work: tmp.sub("w"), partition: "t")
        try FilesystemMaker.make(spec, size: size, at: img2, epoch: 1_700_000_000, work: tmp.sub("w2"), partition: "t")
        #expect(try fileSHA(img) == fileSHA(img2))
        let fsck = try sh(["fsck.vfat", "-n", "-v", img], check: false)
        #expect(fsck.status == 0, "\(fsck.stdoutText)")
        #expect(fsck.stdoutText.contains("\(fat.rawValue) bit entries"), "\(fsck.stdoutText)")
        let out = tmp.sub("out")
        try FileSystem.makeDirectories(out)
        try sh(["mcopy", "-s", "-n", "-m", "-i", img, "::/", out + "/"], env: ["MTOOLS_SKIP_CHECK": "1"])
        let diff = try sh(["diff", "-r", src, out], check: false)
        #expect(diff.status == 0, "\(diff.stdoutText)")
        let blk = try sh(["blkid", "-p", "-o", "export", img]).stdoutText
        #expect(blk.contains("UUID=1234-ABCD") && blk.contains("LABEL=TEST") && blk.contains("TYPE=vfat"))
    }

    @Test func mkfsFatFallbackForExtraArguments() throws {
        guard TestEnv.oracle("mkfs.vfat", package: "dosfstools") != nil else { return }
        let tmp = try TempDir("vfatx")
        let src = try sampleTree(tmp)
        let spec = FilesystemSpec(kind: .vfat, source: .directory(src), label: "X", uuid: "0000BEEF", extraArgs: ["-s", "8"])
        let img = tmp.sub("x.img")
        try FilesystemMaker.make(spec, size: 16 * MiB, at: img, epoch: 1_700_000_000, work: tmp.sub("w"), partition: "x")
        #expect(try sh(["fsck.vfat", "-n", img], check: false).status == 0)
        let v = try sh(["fsck.vfat", "-n", "-v", img], check: false).stdoutText
        #expect(v.contains("4096 bytes per cluster"), "\(v)")
    }

    @Test func filesDoNotFit() throws {
        let tmp = try TempDir("vfatfull")
        try tmp.write("src/big", String(repeating: "b", count: 2_000_000))
        let spec = FilesystemSpec(kind: .vfat, source: .directory(tmp.sub("src")), fatSize: .fat12)
        #expect(throws: FilesystemError.self) {
            try FilesystemMaker.make(spec, size: 1 * MiB, at: tmp.sub("f.img"), epoch: 0, work: tmp.sub("w"), partition: "boot")
        }
    }
}
