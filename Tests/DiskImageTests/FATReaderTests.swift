import Basics
import DiskImage
import Foundation
import Testing
import TestSupport

/// FATVolume reads what mkfs.vfat + mtools wrote (FAT12/16/32, long names, nested
/// directories, a fragmented file), and its in-place rewrites (same length, and longer
/// or shorter within the file's clusters) are read back by mtools and pass fsck.vfat -n.
@Suite struct FATReaderTests {
    static let offset: UInt64 = 1 << 20  // the volume sits 1 MiB into the "image"

    /// Pattern bytes that differ per file and position.
    static func content(_ seed: Int, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) ^ ($0 >> 9) &+ seed) }
    }

    @Test(arguments: [(12, 8), (16, 40), (32, 300)])
    func readsAndRewritesWhatMtoolsWrote(bits: Int, mib: Int) throws {
        guard TestEnv.oracle("mkfs.vfat", package: "dosfstools") != nil, TestEnv.oracle("mcopy", package: "mtools") != nil,
              TestEnv.oracle("fsck.vfat", package: "dosfstools") != nil else { return }
        let tmp = try TempDir("fatreader")
        let vol = tmp.sub("vol.img")
        try sh(["truncate", "-s", "\(mib)M", vol])
        try sh(["mkfs.vfat", "-F", String(bits), "-n", "TESTVOL", vol])
        let i = "\(vol)"
        try sh(["mmd", "-i", i, "::/grub", "::/EFI", "::/EFI/BOOT", "::/A Long Directory Name"])
        // Fragment: a, b, delete a, then c (bigger than a) takes a's clusters and more.
        let a = tmp.sub("a"), b = tmp.sub("b"), c = tmp.sub("c"), env = tmp.sub("grubenv")
        try Data(Self.content(1, 20_000)).write(to: URL(fileURLWithPath: a))
        try Data(Self.content(2, 9_000)).write(to: URL(fileURLWithPath: b))
        try Data(Self.content(3, 70_000)).write(to: URL(fileURLWithPath: c))
        try Data(Self.content(4, 1024)).write(to: URL(fileURLWithPath: env))
        try sh(["mcopy", "-i", i, a, "::/EFI/BOOT/a.bin"])
        try sh(["mcopy", "-i", i, b, "::/EFI/BOOT/b.bin"])
        try sh(["mdel", "-i", i, "::/EFI/BOOT/a.bin"])
        if bits == 32 {
            // mtools allocates after FSInfo's next-free hint; forget it so the freed clusters are reused.
            let vfd = open(vol, O_RDWR)
            defer { close(vfd) }
            let bs = try PositionalIO.read(vfd, count: 512, at: 0, path: vol)
            let fsinfo = UInt64(bs[48]) | UInt64(bs[49]) << 8
            try PositionalIO.write(vfd, [0xFF, 0xFF, 0xFF, 0xFF], at: fsinfo * 512 + 492, path: vol)
        }
        try sh(["mcopy", "-i", i, c, "::/A Long Directory Name/fragmented file with a long name.dat"])
        try sh(["mcopy", "-i", i, env, "::/grub/grubenv"])
        try sh(["mcopy", "-i", i, b, "::/SHORT.TXT"])
        // Put the volume at an offset inside a bigger file, like a partition.
        let image = tmp.sub("disk.img")
        try sh(["truncate", "-s", "\(UInt64(mib) << 20 + Self.offset * 2)", image])
        try sh(["dd", "if=\(vol)", "of=\(image)", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"])

        let fd = open(image, O_RDWR)
        defer { close(fd) }
        let v = try FATVolume(fd: fd, imagePath: image, offset: Self.offset, length: UInt64(mib) << 20)
        #expect(v.bits == bits)
        let frag = try v.locate("/a long directory name/FRAGMENTED FILE WITH A LONG NAME.dat")
        #expect(frag.size == 70_000)
        #expect(frag.ranges.count >= 2, "the test file should be fragmented")
        #expect(try v.read(frag) == Self.content(3, 70_000))
        #expect(try v.read(try v.locate("/EFI/BOOT/b.bin")) == Self.content(2, 9_000))
        #expect(try v.read(try v.locate("/short.txt")) == Self.content(2, 9_000))
        #expect(throws: FATVolume.Failure.self) { try v.locate("/EFI/BOOT/a.bin") }
        #expect(throws: FATVolume.Failure.self) { try v.locate("/EFI") }

        // Rewrite two files in place; mtools reads the new bytes, fsck finds nothing wrong.
        let g = try v.locate("/grub/grubenv")
        try v.overwrite(g, with: Self.content(9, 1024))
        try v.overwrite(frag, with: Self.content(8, 70_000))
        #expect(throws: FATVolume.Failure.self) { try v.overwrite(g, with: [1, 2, 3]) }
        // Length changes within the file's clusters: grow to fill the last one, shrink by
        // a byte; one byte more than the clusters hold is refused and changes nothing.
        let short = try v.locate("/SHORT.TXT")
        #expect(short.allocated >= short.size && short.allocated - short.size < 16384)
        let grown = try v.replace(short, with: Self.content(5, Int(short.allocated)))
        #expect(try v.read(try v.locate("/short.txt")) == Self.content(5, Int(short.allocated)) && grown.size == short.allocated)
        let e = try #require(throws: FATVolume.Failure.self) { try v.replace(grown, with: Self.content(6, Int(short.allocated) + 1)) }
        #expect(e.message.contains("'/SHORT.TXT' would change from \(short.allocated) to \(short.allocated + 1) bytes"), "\(e.message)")
        #expect(try v.read(try v.locate("/short.txt")) == Self.content(5, Int(short.allocated)))
        try v.replace(grown, with: Self.content(7, 8_999))
        let fragShort = try v.replace(frag, with: Self.content(8, 70_000 - 100))
        #expect(fragShort.size == 69_900)
        try sh(["dd", "if=\(image)", "of=\(vol)", "bs=1M", "skip=1", "count=\(mib)", "status=none"])
        let back = tmp.sub("back")
        try sh(["mcopy", "-n", "-i", i, "::/grub/grubenv", back])
        #expect(try FileSystem.readFile(back) == Self.content(9, 1024))
        try sh(["mcopy", "-n", "-i", i, "::/A Long Directory Name/fragmented file with a long name.dat", back])
        #expect(try FileSystem.readFile(back) == Self.content(8, 69_900))
        try sh(["mcopy", "-n", "-i", i, "::/SHORT.TXT", back])
        #expect(try FileSystem.readFile(back) == Self.content(7, 8_999))
        let fsck = try sh(["fsck.vfat", "-n", vol], check: false)
        #expect(fsck.status == 0, "\(fsck.stdoutText)")
    }

    @Test func notAFATVolumeIsAClearError() throws {
        let tmp = try TempDir("fatreader")
        let p = try tmp.write("zeros", String(repeating: "\0", count: 8192))
        let fd = open(p, O_RDONLY)
        defer { close(fd) }
        #expect(throws: FATVolume.Failure.self) { try FATVolume(fd: fd, imagePath: p, offset: 0, length: 8192) }
    }
}
