import Basics
import DiskImage
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct OutputTests {
    /// A HAOS-style image built once per test (small, with vfat + ext4 + empty partitions).
    func haosImage(_ tmp: TempDir) throws -> (String, ResolvedLayout) {
        let boot = try sampleTree(tmp, name: "boot")
        let rootfs = try sampleTree(tmp, name: "rootfs")
        let img = tmp.sub("haos.img")
        let r = try DiskImageBuilder.build(ExampleLayouts.haos(bootFiles: boot, rootfs: rootfs), to: img, options: .init(epoch: 1_700_000_000))
        return (img, r.layout)
    }

    @Test func bmapCopyGivesIdenticalImage() throws {
        guard TestEnv.oracle("bmaptool", package: "bmap-tools") != nil else { return }
        let tmp = try TempDir("bmap")
        let (img, _) = try haosImage(tmp)
        try BmapWriter.write(image: img, to: img + ".bmap")
        let copy = tmp.sub("copy.img")
        let r = try sh(["bmaptool", "copy", "--bmap", img + ".bmap", img, copy], check: false)
        #expect(r.status == 0, "bmaptool copy: \(r.stderrText)")
        #expect(try fileSHA(copy) == fileSHA(img))
        // bmaptool itself accepts our file checksum and range checksums (it verifies both while copying);
        // a corrupted range must be detected.
        var bmap = try FileSystem.readText(img + ".bmap")
        if let r = bmap.range(of: "chksum=\"") {
            let i = r.upperBound
            let c = bmap[i] == "0" ? "1" : "0"
            bmap.replaceSubrange(i...i, with: c)
        }
        try FileSystem.writeAtomically(tmp.sub("bad.bmap"), bmap)
        let bad = try sh(["bmaptool", "copy", "--bmap", tmp.sub("bad.bmap"), img, tmp.sub("copy2.img")], check: false)
        #expect(bad.status != 0)
    }

    @Test func fourGiBImageWithHundredMiBOfDataStaysSparse() throws {
        let tmp = try TempDir("sparse")
        let blob = tmp.sub("data.bin")
        try sh(["dd", "if=/dev/urandom", "of=\(blob)", "bs=1M", "count=100", "status=none"])
        let layout = DiskLayout(size: 4 << 30, table: .gpt, partitions: [
            Partition(name: "rootfs", size: .bytes(1 << 30), content: .file(path: blob)),
            Partition(name: "data", size: .fill, content: .filesystem(FilesystemSpec(kind: .ext4, label: "data", uuid: "3C1EF1B0-5E3D-4A5F-9E7C-00000000D474"))),
        ])
        let img = tmp.sub("big.img")
        let r = try DiskImageBuilder.build(layout, to: img, options: .init(epoch: 0))
        #expect(try FileSystem.stat(img).size == 4 << 30)
        let kib = UInt64(try sh(["du", "-k", img]).stdoutText.split(separator: "\t")[0]) ?? 0
        #expect(kib >= 100 * 1024 && kib < 110 * 1024, "du = \(kib) KiB")
        #expect(r.bytesWritten < 110 << 20)
        let bmap = try BmapWriter.render(image: img)
        #expect(bmap.contains("<BlocksCount> 1048576 </BlocksCount>"))
        if TestEnv.oracle("sgdisk", package: "gdisk") != nil {
            #expect(try sh(["sgdisk", "-v", img]).stdoutText.contains("No problems found"))
        }
    }

    @Test func xzZipAndQcow2RoundTrip() throws {
        let tmp = try TempDir("convert")
        let (img, _) = try haosImage(tmp)
        let sum = try fileSHA(img)
        if TestEnv.oracle("xz", package: "xz-utils") != nil {
            try ImageConversion.xz(img, to: img + ".xz", preset: 1)
            try sh(["xz", "-t", img + ".xz"])
            let out = tmp.sub("unxz.img")
            try sh(["sh", "-c", "xz -dc '\(img).xz' > '\(out)'"])
            #expect(try fileSHA(out) == sum)
        }
        try ImageConversion.zip(img, to: tmp.sub("haos.zip"), mtime: 1_700_000_000)
        let unz = try sh(["python3", "-c", "import zipfile,sys,hashlib; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(z.namelist()[0], hashlib.sha256(z.read('haos.img')).hexdigest())", tmp.sub("haos.zip")])
        #expect(unz.stdoutText == "haos.img \(sum)\n")
        if TestEnv.oracle("qemu-img", package: "qemu-utils") != nil {
            for f in ImageConversion.VirtualFormat.allCases {
                let out = tmp.sub("haos.\(f.rawValue)")
                try ImageConversion.virtualDisk(img, to: out, format: f)
                let c = try sh(["qemu-img", "compare", "-f", "raw", "-F", f.rawValue, img, out], check: false)
                #expect(c.status == 0, "\(f): \(c.stdoutText)")
            }
        }
    }

    @Test func inspectAgreesWithSfdiskAndBlkid() throws {
        guard TestEnv.oracle("sfdisk", package: "fdisk") != nil, TestEnv.oracle("blkid", package: "util-linux") != nil else { return }
        let tmp = try TempDir("inspect")
        let (img, _) = try haosImage(tmp)
        let report = try DiskInspector.inspect(img)
        let t = try SfdiskTable.read(img)
        #expect(report.table == "gpt")
        #expect(report.diskID?.uppercased() == t.id)
        let parts = try #require(t.partitions)
        #expect(report.partitions.count == parts.count)
        for (a, b) in zip(report.partitions, parts) {
            #expect(a.start == b.start * 512 && a.size == b.size * 512)
            #expect(a.type.uppercased() == b.type)
            #expect(a.uuid?.uppercased() == b.uuid)
            #expect(a.name == b.name)
            let probe = try sh(["blkid", "-p", "-o", "export", "-O", String(a.start), "-S", String(a.size), img], check: false).stdoutText
            let type = probe.split(separator: "\n").first { $0.hasPrefix("TYPE=") }.map { String($0.dropFirst(5)) }
            #expect(a.filesystem == type, "partition \(a.number)")
        }
        #expect(report.partitions.map(\.filesystem) == ["vfat", nil, "ext4", nil, nil, nil, "ext4", "ext4"])
        #expect(report.partitions[0].filesystemLabel == "hassos-boot")
        #expect(report.partitions[0].flagNames.isEmpty)
        // JSON round trip.
        let decoded = try JSONDecoder().decode(DiskReport.self, from: Data(report.json().utf8))
        #expect(decoded.partitions.map(\.uuid) == report.partitions.map(\.uuid))
        // MBR image: types and bootable flag.
        let boot = try sampleTree(tmp, name: "rpiboot")
        let rpi = tmp.sub("rpi.img")
        try DiskImageBuilder.build(ExampleLayouts.raspberryPi(bootFiles: boot), to: rpi, options: .init(epoch: 1_700_000_000))
        let m = try DiskInspector.inspect(rpi)
        #expect(m.table == "dos" && m.diskID == "54525049")
        #expect(m.partitions.map(\.type) == ["0xc", "0xc", "0xc", "0x83"])
        #expect(m.partitions.map(\.flagNames) == [[], ["bootable"], [], []])
        #expect(m.partitions.map(\.filesystem) == ["vfat", "vfat", "vfat", "ext4"])
    }
}
