import Basics
import DiskImage
import Foundation
import Testing
import TestSupport

/// The streamOptimized VMDK and the OVA are read back by qemu-img (check, compare, info),
/// tar, sha256sum and xmllint: none of them share code with the writer.
@Suite(.serialized) struct OVATests {
    /// A sparse image with data at the start, in the middle (not grain aligned) and at the very end.
    func sampleImage(_ tmp: TempDir, size: UInt64 = 96 << 20) throws -> String {
        let img = tmp.sub("disk.img")
        try sh(["truncate", "-s", String(size), img])
        try sh(["dd", "if=/dev/urandom", "of=\(img)", "bs=4096", "count=300", "conv=notrunc", "status=none"])
        try sh(["sh", "-c", "yes osbuild | head -c 200000 | dd of='\(img)' bs=1 seek=\(size / 2 + 777) conv=notrunc status=none"])
        try sh(["dd", "if=/dev/urandom", "of=\(img)", "bs=512", "count=1", "seek=\(size / 512 - 1)", "conv=notrunc", "status=none"])
        return img
    }

    @Test func streamOptimizedVMDKIsReadByQemuImg() throws {
        guard TestEnv.oracle("qemu-img", package: "qemu-utils") != nil else { return }
        let tmp = try TempDir("vmdk")
        let img = try sampleImage(tmp)
        let vmdk = tmp.sub("disk.vmdk")
        let r = try StreamVMDK.write(img, to: vmdk, cid: 0x1234abcd)
        #expect(r.capacityBytes == 96 << 20)
        // 300 random 4 KiB blocks = 19 grains, 200 kB of text spans 4 grains, plus the last grain.
        #expect(r.grainsWritten == 19 + 4 + 1, "grains: \(r.grainsWritten)")
        let info = try sh(["qemu-img", "info", "--output=json", vmdk]).stdoutText
        #expect(info.contains("\"create-type\": \"streamOptimized\""), "\(info)")
        #expect(info.contains("\"virtual-size\": \(96 << 20)"))
        let check = try sh(["qemu-img", "check", "-f", "vmdk", vmdk], check: false)
        #expect(check.status == 0, "qemu-img check: \(check.stdoutText)\(check.stderrText)")
        let cmp = try sh(["qemu-img", "compare", "-f", "raw", "-F", "vmdk", img, vmdk], check: false)
        #expect(cmp.status == 0, "qemu-img compare: \(cmp.stdoutText)\(cmp.stderrText)")
        // Reproducible: the same input gives the same bytes.
        try FileSystem.makeDirectories(tmp.sub("again"))
        try StreamVMDK.write(img, to: tmp.sub("again/disk.vmdk"), cid: 0x1234abcd)
        #expect(try FileReading.sha256Hex(vmdk) == FileReading.sha256Hex(tmp.sub("again/disk.vmdk")))
        // A differing byte inside a stored grain is reported by the oracle (the test can fail).
        try sh(["sh", "-c", "printf X | dd of='\(img)' bs=1 seek=5 conv=notrunc status=none"])
        #expect(try sh(["qemu-img", "compare", "-f", "raw", "-F", "vmdk", img, vmdk], check: false).status != 0)
    }

    @Test func ovaHasDescriptorDiskAndManifestInOrder() throws {
        guard TestEnv.oracle("qemu-img", package: "qemu-utils") != nil else { return }
        let tmp = try TempDir("ova")
        let img = try sampleImage(tmp, size: 32 << 20)
        let ova = tmp.sub("appliance.ova")
        try OVA.write(image: img, to: ova, scratch: tmp.sub("scratch"),
                      options: .init(name: "osbuild_test-1.0", cpus: 2, memoryMiB: 512, efi: true, mtime: 1_700_000_000))
        let list = try sh(["tar", "-tvf", ova]).stdoutText.split(separator: "\n")
        #expect(list.map { String($0.split(separator: " ").last ?? "") } == ["osbuild_test-1.0.ovf", "osbuild_test-1.0.vmdk", "osbuild_test-1.0.mf"])
        #expect(list.allSatisfy { $0.contains("root/root") && $0.contains("2023-11-14") }, "\(list)")
        let x = tmp.sub("x")
        try FileSystem.makeDirectories(x)
        try sh(["tar", "-xf", ova, "-C", x])
        // The manifest's digests match the members (sha256sum reads the BSD-style lines).
        let mf = try FileSystem.readText(x + "/osbuild_test-1.0.mf")
        #expect(mf.hasPrefix("SHA256(osbuild_test-1.0.ovf)= "))
        let check = try sh(["sh", "-c", "cd '\(x)' && sha256sum -c osbuild_test-1.0.mf"], check: false)
        #expect(check.status == 0, "\(check.stdoutText)\(check.stderrText)")
        let ovf = try FileSystem.readText(x + "/osbuild_test-1.0.ovf")
        let vmdkSize = try FileSystem.stat(x + "/osbuild_test-1.0.vmdk").size
        #expect(ovf.contains("ovf:size=\"\(vmdkSize)\""))
        #expect(ovf.contains("ovf:capacity=\"\(32 << 20)\""))
        #expect(ovf.contains("<rasd:VirtualQuantity>512</rasd:VirtualQuantity>"))
        #expect(ovf.contains("vmw:value=\"efi\""))
        if TestEnv.oracle("xmllint", package: "libxml2-utils") != nil {
            let lint = try sh(["xmllint", "--noout", x + "/osbuild_test-1.0.ovf"], check: false)
            #expect(lint.status == 0, "xmllint: \(lint.stderrText)")
        }
        let cmp = try sh(["qemu-img", "compare", "-f", "raw", "-F", "vmdk", img, x + "/osbuild_test-1.0.vmdk"], check: false)
        #expect(cmp.status == 0, "\(cmp.stdoutText)\(cmp.stderrText)")
        // Byte-identical on a rebuild.
        try FileSystem.makeDirectories(tmp.sub("again"))
        try OVA.write(image: img, to: tmp.sub("again/appliance.ova"), scratch: tmp.sub("scratch2"),
                      options: .init(name: "osbuild_test-1.0", cpus: 2, memoryMiB: 512, efi: true, mtime: 1_700_000_000))
        #expect(try FileReading.sha256Hex(ova) == FileReading.sha256Hex(tmp.sub("again/appliance.ova")))
    }

    @Test func imageSizeNotMultipleOfSectorIsRefused() throws {
        let tmp = try TempDir("vmdkbad")
        let img = tmp.sub("odd.img")
        try sh(["truncate", "-s", "1000", img])
        #expect(throws: (any Error).self) { try StreamVMDK.write(img, to: tmp.sub("odd.vmdk"), cid: 1) }
        #expect(!FileSystem.exists(tmp.sub("odd.vmdk")))
    }
}
