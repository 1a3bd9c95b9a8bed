import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport

@Suite struct InitramfsTests {
    func sampleTree(_ t: TempDir) throws -> FSTree {
        var tree = FSTree(root: .directory(permissions: 0o755, mtime: Timestamp(seconds: 1_700_000_000)))
        let m = Timestamp(seconds: 1_690_000_000, nanoseconds: 42)
        try tree.insert("/bin", .directory(mtime: m))
        let big = t.sub("big.bin")
        try sh("head -c 1500000 /dev/urandom > \(q(big))")
        let bb = try tree.insert("/bin/busybox", .file(.hostFile(path: big, size: 1_500_000), permissions: 0o4755, mtime: m))
        try tree.link("/bin/ls", to: bb)
        try tree.link("/bin/cat", to: bb)
        try tree.insert("/bin/sh", .symlink("busybox", mtime: m))
        try tree.insert("/init", .file(.bytes(Array("#!/bin/sh\nexec /bin/sh\n".utf8)), permissions: 0o755, mtime: m))
        try tree.insert("/dev", .directory(mtime: m))
        try tree.insert("/dev/console", Inode(kind: .charDevice, permissions: 0o600, mtime: m, rdev: DeviceNumber(major: 5, minor: 1)))
        try tree.insert("/dev/huge", Inode(kind: .blockDevice, permissions: 0o660, gid: 6, mtime: m, rdev: DeviceNumber(major: 259, minor: 70000)))
        try tree.insert("/run/initctl", Inode(kind: .fifo, permissions: 0o600, mtime: m), createParents: true, parentTemplate: .directory(mtime: m))
        try tree.insert("/home/u/odd", .file(.bytes([1, 2, 3]), permissions: 0o640, uid: 1000, gid: 1001, mtime: m), createParents: true, parentTemplate: .directory(permissions: 0o700, uid: 1000, gid: 1000, mtime: m))
        try tree.insert("/empty", .file(.empty, mtime: m))
        try tree.insert("/tmp", .directory(permissions: 0o1777, mtime: m))
        return tree
    }

    static let decompress: [InitramfsCompression: String] = [.none: "cat", .gzip: "gzip -dc", .xz: "xz -dc", .zstd: "zstd -dc", .lz4: "lz4 -dc"]

    @Test(arguments: InitramfsCompression.allCases)
    func cpioToolsReadIt(_ compression: InitramfsCompression) throws {
        guard TestEnv.oracle("cpio", package: "cpio") != nil, TestEnv.oracle("lsinitramfs", package: "initramfs-tools-core") != nil else { return }
        let t = try TempDir("initramfs")
        let tree = try sampleTree(t)
        let img = t.sub("initrd.img")
        let report = try InitramfsWriter.write(tree, to: img, options: .init(compression: compression))
        #expect(report.entries == 17)

        // Reproducible: a second build is byte-identical.
        try InitramfsWriter.write(tree, to: img + ".2", options: .init(compression: compression))
        #expect(try FileSystem.readFile(img) == FileSystem.readFile(img + ".2"))

        // Framings the kernel's boot-time decompressors accept.
        let head = try Array(FileSystem.readFile(img).prefix(4))
        if compression == .xz { #expect(try sh("xz --robot -lv \(q(img))").contains("CRC32")) }
        if compression == .lz4 { #expect(head == [0x02, 0x21, 0x4C, 0x18], "LZ4 legacy magic") }
        if compression == .gzip { #expect(head == [0x1F, 0x8B, 0x08, 0x00]) }

        // cpio -itv: every entry with the right type/mode, links, owner, size or device.
        let cmd = Self.decompress[compression]!
        let listing = try sh("\(cmd) < \(q(img)) | cpio -itv --numeric-uid-gid --quiet")
        var names: [String] = []
        for line in listing.split(separator: "\n") {
            var f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            let isDev = f[0].first == "c" || f[0].first == "b"
            if isDev { f[4] = f[4] + " " + f[5]; f.remove(at: 5) }  // "5, 1"
            let name = f[8]
            names.append(name)
            let path = name == "." ? "/" : "/" + name
            guard let id = tree.lookup(path) else { Issue.record("cpio lists \(name) not in tree"); continue }
            let n = tree[id]
            #expect(f[0] == TreeListing.modeString(n), "\(name)")
            #expect(f[1] == String(tree.linkCounts()[id] ?? 0), "\(name) nlink")
            #expect(f[2] == String(n.uid) && f[3] == String(n.gid), "\(name) owner")
            if isDev { #expect(f[4] == "\(n.rdev.major), \(n.rdev.minor)", "\(name) rdev") }
            if n.kind == .symlink { #expect(f.count == 11 && f[10] == n.symlinkTarget) }
        }
        var treeNames: [String] = []
        tree.walk { p, _, _ in treeNames.append(p == "/" ? "." : String(p.dropFirst())) }
        #expect(names == treeNames)

        // lsinitramfs (initramfs-tools) detects the compression and lists the same names.
        // (For an uncompressed image lsinitramfs lists it, then exits 2 looking for a
        // following compressed part - the same happens with GNU cpio's own output.)
        let lsRun = try Subprocess.run(["lsinitramfs", img], check: compression != .none)
        let ls = lsRun.stdoutText.split(separator: "\n").map(String.init)
        #expect(ls.sorted() == treeNames.sorted())

        // Extract as root with cpio itself: contents, hard links, mtimes, owners, devices.
        guard TestEnv.isRoot else { return }
        let out = t.sub("x")
        try FileSystem.makeDirectories(out)
        try sh("cd \(q(out)) && \(cmd) < \(q(img)) | cpio -idmu --quiet --no-absolute-filenames")
        #expect(try FileSystem.readFile(out + "/bin/busybox") == FileSystem.readFile(t.sub("big.bin")))
        let a = try FileSystem.lstat(out + "/bin/busybox"), b = try FileSystem.lstat(out + "/bin/cat"), c = try FileSystem.lstat(out + "/bin/ls")
        #expect(a.inode == b.inode && b.inode == c.inode && a.nlink == 3)
        #expect(a.mode & 0o7777 == 0o4755 && a.mtimeSec == 1_690_000_000)
        let h = try FileSystem.lstat(out + "/dev/huge")
        #expect(DeviceNumber(glibc: h.rdev) == DeviceNumber(major: 259, minor: 70000) && h.gid == 6)
        let odd = try FileSystem.lstat(out + "/home/u/odd")
        #expect(odd.uid == 1000 && odd.gid == 1001 && odd.size == 3)
        #expect(try FileSystem.readSymlink(out + "/bin/sh") == "busybox")
    }

    @Test func compressionLevelsAreChecked() throws {
        let t = try TempDir("initramfs-lvl")
        #expect(throws: (any Error).self) { try InitramfsWriter.write(FSTree(), to: t.sub("x"), options: .init(compression: .gzip, level: 12)) }
        #expect(!FileSystem.exists(t.sub("x")))
        #expect(try FileSystem.listDirectory(t.path).isEmpty)
    }
}

@Suite struct CpioRoundTripTests {
    /// Our newc output read back by libarchive (a cpio base input) gives the same tree,
    /// including a hard-linked file whose data travels with its last name.
    @Test func initramfsReadsBackAsTheSameTree() throws {
        let t = try TempDir("cpio-rt")
        let tree = try InitramfsTests().sampleTree(t)
        let img = t.sub("i.cpio.gz")
        try InitramfsWriter.write(tree, to: img, options: .init(compression: .gzip))
        var back = FSTree()
        let s = try ArchiveImporter.importArchive(img, into: &back, blobs: BlobStore(directory: t.sub("b")))
        #expect(s.format.contains("cpio"))
        // newc stores seconds only; compare at that precision.
        var expected = tree
        expected.updateAll { $0.mtime = Timestamp(seconds: $0.mtime.seconds) }
        #expect(TreeListing.render(back, options: .init(fullTime: true)) == TreeListing.render(expected, options: .init(fullTime: true)))
        #expect(back.lookup("/bin/ls") == back.lookup("/bin/busybox"))
        #expect(try contentBytes(back, "/bin/cat") == FileSystem.readFile(t.sub("big.bin")))
    }
}

@Suite struct CompressionThreadsTests {
    /// Thread count changes speed only: xz (several blocks) and zstd (several jobs) give the
    /// same bytes with 1 and 2 threads, and xz/zstd decode them to the same cpio.
    @Test(arguments: [InitramfsCompression.xz, .zstd])
    func outputIndependentOfThreads(_ c: InitramfsCompression) throws {
        let t = try TempDir("threads")
        // 40 MiB of compressible but non-trivial data: spans several xz blocks / zstd jobs.
        try sh("seq 1 6000000 > \(q(t.sub("data")))")
        let size = try FileSystem.lstat(t.sub("data")).size
        var tree = FSTree()
        try tree.insert("/data", .file(.hostFile(path: t.sub("data"), size: size)))
        try InitramfsWriter.write(tree, to: t.sub("one"), options: .init(compression: c, level: c == .xz ? 0 : 3, threads: 1))
        try InitramfsWriter.write(tree, to: t.sub("two"), options: .init(compression: c, level: c == .xz ? 0 : 3, threads: 2))
        #expect(try FileSystem.readFile(t.sub("one")) == FileSystem.readFile(t.sub("two")))
        let tool = c == .xz ? "xz -dc" : "zstd -dc"
        #expect(try sh("\(tool) \(q(t.sub("two"))) | cpio -i --quiet --to-stdout data | cmp - \(q(t.sub("data"))) && echo same") == "same\n")
        if c == .xz { #expect(try sh("xz --robot -lv \(q(t.sub("two"))) | grep -c '^block'") != "1\n") }
    }
}
