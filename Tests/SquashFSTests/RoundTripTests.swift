import Basics
import Codecs
import FSTree
import Foundation
import SquashFS
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Round trips through the real squashfs-tools (`unsquashfs`) and the kernel.
@Suite(.serialized) struct RoundTripTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var options: SquashFSOptions
        var big: Bool
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "gzip-128K", options: .init(compression: .defaults(.gzip)), big: true),
        Case(name: "xz-128K-bcj", options: .init(compression: .xz(preset: 6, bcj: [.x86, .arm], dictSize: nil)), big: true),
        Case(name: "lz4-128K", options: .init(compression: .defaults(.lz4)), big: true),
        Case(name: "lz4hc-1M", options: .init(compression: .lz4(hc: true, level: 9), blockSize: 1 << 20), big: true),
        Case(name: "zstd-4K", options: .init(compression: .zstd(level: 3), blockSize: 4096), big: true),
        Case(name: "zstd-64K-no-fragments", options: .init(compression: .zstd(level: 1), blockSize: 65536, fragments: false), big: false),
        Case(name: "gzip-8K-no-tails-no-dedup-no-sparse-no-exports",
             options: .init(compression: .gzip(level: 1), blockSize: 8192, tailPacking: false, deduplicate: false, sparse: false, exportTable: false),
             big: false),
        Case(name: "xz-32K-dict-16K", options: .init(compression: .xz(preset: 1, bcj: [], dictSize: 16384), blockSize: 32768), big: false),
        Case(name: "gzip-single-thread", options: .init(compression: .gzip(level: 6), threads: 1), big: false),
    ]

    @Test(arguments: cases)
    func unsquashfsReproducesEveryEntry(_ c: Case) throws {
        guard TestEnv.oracle("unsquashfs", package: "squashfs-tools") != nil else { return }
        guard TestEnv.isRoot else {
            print("SKIP: round trip needs root (unsquashfs must chown, mknod and set trusted.* xattrs)")
            return
        }
        let tmp = try TempDir("sqfs-rt")
        let src = tmp.sub("src")
        try Fixture.makeTree(at: src, big: c.big)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        let image = tmp.sub("image.sqfs")
        let stats = try SquashFSWriter(c.options).write(tree: tree, to: image)
        #expect(stats.droppedXAttrs.isEmpty)
        #expect(stats.imageBytes % 4096 == 0)
        let size = try FileSystem.stat(image).size
        #expect(size == stats.imageBytes)

        try Fixture.unsquashfs(image, into: tmp.sub("out"))
        let diffs = try Fixture.compare(src, tmp.sub("out"))
        #expect(diffs.isEmpty, "\(c.name): \(diffs.count) differences:\n\(diffs.prefix(20).joined(separator: "\n"))")

        // unsquashfs -stat names the compressor and block size we asked for.
        let info = try Subprocess.run(["unsquashfs", "-stat", image]).stdoutText
        #expect(info.contains("Compression \(c.options.compression.kind.rawValue)"), "\(info)")
        #expect(info.contains("Block size \(c.options.blockSize)"), "\(info)")
        #expect(info.contains("Number of inodes \(stats.inodes)"), "\(info)")
        if c.options.deduplicate {
            #expect(stats.duplicateFiles >= 2)
        }
        if c.options.sparse {
            #expect(stats.sparseBlocks > 0)
        }
    }

    @Test func kernelMountReadsEveryEntry() throws {
        guard TestEnv.isRoot else {
            print("SKIP: loop mount needs root")
            return
        }
        let tmp = try TempDir("sqfs-mount")
        let src = tmp.sub("src")
        try Fixture.makeTree(at: src, big: true)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        for (name, opts) in [
            ("xz", SquashFSOptions(compression: .xz(preset: 6, bcj: [.x86], dictSize: nil))),
            ("zstd-4K", SquashFSOptions(compression: .zstd(level: 3), blockSize: 4096)),
        ] {
            let image = tmp.sub("\(name).sqfs")
            try SquashFSWriter(opts).write(tree: tree, to: image)
            let mnt = tmp.sub("mnt-\(name)")
            try FileSystem.makeDirectories(mnt)
            let r = try Subprocess.run(["mount", "-t", "squashfs", "-o", "loop,ro", image, mnt], check: false)
            if r.status != 0 {
                if TestEnv.isCI { Issue.record("mount -t squashfs failed: \(r.stderrText)") } else { print("SKIP: mount failed: \(r.stderrText)") }
                return
            }
            defer { _ = try? Subprocess.run(["umount", mnt], check: false) }
            // Looking up each name in the 10,000-entry directory goes through the kernel's
            // directory index.
            let diffs = try Fixture.compare(src, mnt)
            #expect(diffs.isEmpty, "\(name) via kernel mount: \(diffs.prefix(20).joined(separator: "\n"))")
        }
    }

    @Test func sameInputGivesIdenticalBytesWhateverTheThreadCount() throws {
        let tmp = try TempDir("sqfs-repro")
        let src = tmp.sub("src")
        try Fixture.makeTree(at: src, big: false)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        var digests: [String] = []
        for threads in [1, 2, 3, 2] {
            let image = tmp.sub("img-\(threads)-\(digests.count).sqfs")
            try SquashFSWriter(.init(compression: .zstd(level: 3), blockSize: 4096, threads: threads)).write(tree: tree, to: image)
            digests.append(try SHA256.hexOfFile(at: image))
        }
        #expect(Set(digests).count == 1, "\(digests)")
        // A tree imported again from the same directory gives the same image too.
        let again = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        let image = tmp.sub("again.sqfs")
        try SquashFSWriter(.init(compression: .zstd(level: 3), blockSize: 4096)).write(tree: again, to: image)
        #expect(try SHA256.hexOfFile(at: image) == digests[0])
    }

    @Test func ownershipTimesAndXAttrsComeFromTheTreeNotTheHost() throws {
        guard TestEnv.oracle("unsquashfs", package: "squashfs-tools") != nil, TestEnv.isRoot else { return }
        let tmp = try TempDir("sqfs-tree")
        let src = tmp.sub("src")
        try Fixture.makeTree(at: src, big: false)
        var tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        // --all-root and SOURCE_DATE_EPOCH semantics, applied to the tree.
        tree.makeAllRoot()
        let epoch: Int64 = 1_600_050_000
        tree.clampMtimes(to: epoch)
        // Entries that exist only in the tree.
        try tree.insert("/gen/dev-null", Inode(kind: .charDevice, permissions: 0o666, uid: 0, gid: 5, mtime: .init(seconds: 10), rdev: .init(major: 1, minor: 3)), createParents: true)
        var f = Inode.file(.bytes(Array("generated\n".utf8)), permissions: 0o600, uid: 4242, gid: 4343, mtime: .init(seconds: 12345))
        f.setXAttr("security.selinux", Array("system_u:object_r:etc_t:s0\0".utf8))
        f.setXAttr("system.posix_acl_access", [2, 0, 0, 0])
        try tree.insert("/gen/file", f)
        let image = tmp.sub("image.sqfs")
        let stats = try SquashFSWriter(.init(compression: .gzip(level: 9), mkfsTime: UInt32(epoch))).write(tree: tree, to: image)
        #expect(stats.droppedXAttrs == ["/gen/file: system.posix_acl_access"])

        let out = tmp.sub("out")
        try Fixture.unsquashfs(image, into: out)
        // Everything from the host is root-owned, no mtime is newer than the epoch.
        let (recs, _) = try Fixture.scan(out)
        for (p, r) in recs where !p.hasPrefix("/gen") {
            #expect(r.uid == 0 && r.gid == 0, "\(p) owned by \(r.uid):\(r.gid)")
            #expect(r.mtime <= epoch, "\(p) mtime \(r.mtime)")
        }
        let dev = try FileSystem.lstat(out + "/gen/dev-null")
        #expect(dev.mode == 0o020666 && dev.gid == 5 && DeviceNumber(glibc: dev.rdev) == DeviceNumber(major: 1, minor: 3))
        let gen = try FileSystem.lstat(out + "/gen/file")
        #expect(gen.uid == 4242 && gen.gid == 4343 && gen.mtimeSec == 12345 && gen.mode & 0o7777 == 0o600)
        #expect(try FileSystem.readFile(out + "/gen/file") == Array("generated\n".utf8))
        let xa = try FSTree.readHostXAttrs(out + "/gen/file")
        #expect(xa.map(\.name) == ["security.selinux"])

        // Superblock: mkfs time at offset 8.
        let head = try FileSystem.readFile(image).prefix(12)
        let t = UInt32(head[8]) | UInt32(head[9]) << 8 | UInt32(head[10]) << 16 | UInt32(head[11]) << 24
        #expect(t == UInt32(epoch))
    }

    @Test func emptyRootAndTreeFromMemoryOnly() throws {
        guard TestEnv.oracle("unsquashfs", package: "squashfs-tools") != nil, TestEnv.isRoot else { return }
        let tmp = try TempDir("sqfs-empty")
        let tree = FSTree(root: .directory(permissions: 0o700, uid: 3, gid: 4, mtime: .init(seconds: 99)))
        let image = tmp.sub("e.sqfs")
        let stats = try SquashFSWriter(.init(compression: .defaults(.xz))).write(tree: tree, to: image)
        #expect(stats.inodes == 1)
        try Fixture.unsquashfs(image, into: tmp.sub("out"))
        let st = try FileSystem.lstat(tmp.sub("out"))
        #expect(st.mode & 0o7777 == 0o700 && st.uid == 3 && st.gid == 4 && st.mtimeSec == 99)
    }
}

/// Sizes beyond 32 bits need the extended file inode (64-bit size and start).
@Suite struct LargeFileTests {
    @Test func fileLargerThan4GiBWithHoles() throws {
        guard TestEnv.oracle("unsquashfs", package: "squashfs-tools") != nil else { return }
        let tmp = try TempDir("sqfs-large")
        let src = tmp.sub("src")
        try FileSystem.makeDirectories(src)
        let big = src + "/big"
        let size: UInt64 = (5 << 30) + 12345
        let fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        ftruncate(fd, off_t(size))
        let marker = Array("data beyond four gibibytes".utf8)
        _ = marker.withUnsafeBytes { pwrite(fd, $0.baseAddress, marker.count, off_t(size) - off_t(marker.count)) }
        _ = marker.withUnsafeBytes { pwrite(fd, $0.baseAddress, marker.count, off_t(1) << 32) }
        close(fd)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        let image = tmp.sub("large.sqfs")
        let stats = try SquashFSWriter(.init(compression: .lz4(hc: false, level: 1), blockSize: 1 << 20)).write(tree: tree, to: image)
        #expect(stats.sparseBlocks >= 5000)
        #expect(try FileSystem.stat(image).size < 1 << 20)
        try Fixture.unsquashfs(image, into: tmp.sub("out"))
        let out = tmp.sub("out/big")
        #expect(try FileSystem.stat(out).size == size)
        let rfd = open(out, O_RDONLY)
        defer { close(rfd) }
        var tail = [UInt8](repeating: 0, count: marker.count)
        _ = tail.withUnsafeMutableBytes { pread(rfd, $0.baseAddress, marker.count, off_t(size) - off_t(marker.count)) }
        #expect(tail == marker)
        let midCount = marker.count + 8
        var mid = [UInt8](repeating: 0, count: midCount)
        _ = mid.withUnsafeMutableBytes { pread(rfd, $0.baseAddress, midCount, (off_t(1) << 32) - 8) }
        #expect(mid == [UInt8](repeating: 0, count: 8) + marker)
    }
}
