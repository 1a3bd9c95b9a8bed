import Basics
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `osbuild mkfs squashfs|erofs ARCHIVE OUT`: a tree packed with GNU tar (pax headers for
/// xattrs, long names, owners, devices, hard links) or cpio (sockets) must come back from
/// the real readers (unsquashfs as root, a kernel loop mount) identical to the directory it
/// was packed from.
@Suite(.serialized) struct MkfsArchiveTests {
    /// Every entry type tar can carry, with owners, setuid bits, xattrs in three
    /// namespaces, a 3-name hard-link group, a 255-byte name, a UTF-8 name, a path far
    /// beyond ustar's 100/155-byte limits and a file bigger than one data block.
    static func makeSource(_ root: String, socket: Bool) throws {
        func sh(_ s: String) throws { _ = try Subprocess.run(["sh", "-ec", s], directory: root) }
        let long = String(repeating: "L", count: 251) + ".txt"
        let deep = (0..<12).map { "level-\($0)-directory-name" }.joined(separator: "/")
        try sh("""
            mkdir -p etc bin dev "\(deep)" empty
            : > empty-file
            printf x > one-byte
            head -c 300000 /dev/urandom > bin/big
            seq 1 20000 > etc/text
            printf 'deep\\n' > "\(deep)/leaf"
            printf 'long\\n' > "\(long)"
            printf 'utf8\\n' > "grüße-日本語"
            printf 'shared\\n' > etc/hl-a && ln etc/hl-a etc/hl-b && ln etc/hl-a bin/hl-c
            ln -s ../etc/text bin/link
            ln -s "\(String(repeating: "t", count: 200))" dangling
            mknod dev/null c 1 3 && mknod dev/loop7 b 7 7 && mknod dev/huge c 300 70000
            mkfifo dev/fifo
            chmod 4755 bin/big && chmod 2710 etc && chmod 1777 empty
            chown 1234:5678 etc/text && chown -h 42:43 bin/link && chown 0:100000 dev/fifo
            """)
        try sh("""
            setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 bin/big
            setfattr -n user.comment -v "hello xattr" etc/text
            setfattr -n trusted.overlay -v 0x000102ff etc/text
            setfattr -n user.dir -v d etc
            """)
        if socket {
            let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let p = root + "/sock"
            withUnsafeMutableBytes(of: &addr.sun_path) { buf in
                for (i, b) in p.utf8.enumerated() where i < buf.count - 1 { buf[i] = b }
            }
            let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            close(fd)
            #expect(r == 0, "bind \(p)")
        }
        // Varied whole-second times, children first so directory times stay set.
        var n = 0
        for p in try HostTree.walkPaths(root).reversed() {
            var ts = [timespec(tv_sec: 1_650_000_000 + n * 7919 % 100_000, tv_nsec: 0), timespec(tv_sec: 1_650_000_000 + n * 7919 % 100_000, tv_nsec: 0)]
            utimensat(AT_FDCWD, p, &ts, AT_SYMLINK_NOFOLLOW)
            n += 1
        }
    }

    static func tools(_ names: [(String, String)]) -> Bool {
        guard TestEnv.isRoot else { print("SKIP: devices, owners and trusted.* xattrs need root"); return false }
        return names.allSatisfy { TestEnv.oracle($0.0, package: $0.1) != nil }
    }

    static func mkfs(_ args: [String]) throws {
        _ = try Subprocess.run([CLI.binary, "mkfs"] + args, environment: ["SOURCE_DATE_EPOCH": "1700000000", "NO_COLOR": "1"])
    }

    static func unsquashfsDiffs(source: String, image: String, tmp: TempDir) throws -> [String] {
        let out = tmp.sub("back-" + FileSystem.basename(image))
        _ = try Subprocess.run(["unsquashfs", "-no-progress", "-d", out, image])
        return try HostTree.compare(source, out)
    }

    static func kernelMountDiffs(source: String, image: String, tmp: TempDir) throws -> [String] {
        let mnt = tmp.sub("mnt-" + FileSystem.basename(image))
        try FileSystem.makeDirectories(mnt)
        _ = try Subprocess.run(["mount", "-t", "erofs", "-o", "loop,ro", image, mnt])
        defer { _ = try? Subprocess.run(["umount", mnt]) }
        return try HostTree.compare(source, mnt)
    }

    @Test func tarGzAndTarZstRoundTripThroughUnsquashfsAndKernel() throws {
        guard Self.tools([("unsquashfs", "squashfs-tools"), ("setfattr", "attr"), ("tar", "tar"), ("zstd", "zstd"), ("gzip", "gzip")]) else { return }
        let tmp = try TempDir("mkfs-archive")
        let src = tmp.sub("src")
        try FileSystem.makeDirectories(src)
        try Self.makeSource(src, socket: false)
        let tar = ["tar", "--format=pax", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", src]
        _ = try Subprocess.run(tar + ["-czf", tmp.sub("root.tar.gz"), "."])
        _ = try Subprocess.run(tar + ["--zstd", "-cf", tmp.sub("root.tar.zst"), "."])

        for (archive, comp) in [("root.tar.gz", "xz"), ("root.tar.zst", "zstd")] {
            let image = tmp.sub(archive + ".sqfs")
            try Self.mkfs(["squashfs", tmp.sub(archive), image, "--comp", comp, "--block-size", "64K"])
            let diffs = try Self.unsquashfsDiffs(source: src, image: image, tmp: tmp)
            #expect(diffs.isEmpty, "\(archive) -> squashfs: \(diffs.prefix(8).joined(separator: "\n"))")
            // Same archive, same bytes.
            let again = tmp.sub(archive + ".2.sqfs")
            try Self.mkfs(["squashfs", tmp.sub(archive), again, "--comp", comp, "--block-size", "64K"])
            #expect(try FileSystem.readFile(image) == FileSystem.readFile(again), "\(archive): two builds differ")
        }
        // No scratch directories left next to the output.
        #expect(try FileSystem.listDirectory(tmp.path).filter { $0.hasPrefix(".osbuild") }.isEmpty)

        if TestEnv.oracle("fsck.erofs", package: "erofs-utils") != nil {
            for (archive, comp) in [("root.tar.zst", "lz4hc"), ("root.tar.gz", "lzma")] {
                let image = tmp.sub(archive + "." + comp + ".erofs")
                try Self.mkfs(["erofs", tmp.sub(archive), image, "--comp", comp])
                if comp != "lzma" { _ = try Subprocess.run(["fsck.erofs", image]) }  // erofs-utils 1.5 has no LZMA
                let diffs = try Self.kernelMountDiffs(source: src, image: image, tmp: tmp)
                #expect(diffs.isEmpty, "\(archive) -> erofs \(comp): \(diffs.prefix(8).joined(separator: "\n"))")
            }
        }
    }

    @Test func cpioWithSocketsRoundTrips() throws {
        guard Self.tools([("unsquashfs", "squashfs-tools"), ("setfattr", "attr"), ("cpio", "cpio"), ("xz", "xz-utils")]) else { return }
        let tmp = try TempDir("mkfs-cpio")
        let src = tmp.sub("src")
        try FileSystem.makeDirectories(src)
        try Self.makeSource(src, socket: true)
        // newc carries no xattrs: compare against a copy of the source without them.
        _ = try Subprocess.run(["sh", "-ec", "cd '\(src)' && find . | LC_ALL=C sort | cpio --quiet -o -H newc | xz > ../root.cpio.xz"])
        _ = try Subprocess.run(["sh", "-ec", "cd '\(src)' && setfattr -h -x user.comment etc/text && setfattr -h -x trusted.overlay etc/text && setfattr -h -x user.dir etc && setfattr -x security.capability bin/big"])
        let image = tmp.sub("cpio.sqfs")
        try Self.mkfs(["squashfs", tmp.sub("root.cpio.xz"), image, "--comp", "gzip"])
        let diffs = try Self.unsquashfsDiffs(source: src, image: image, tmp: tmp)
        #expect(diffs.isEmpty, "cpio -> squashfs: \(diffs.prefix(8).joined(separator: "\n"))")
        if TestEnv.oracle("fsck.erofs", package: "erofs-utils") != nil {
            let e = tmp.sub("cpio.erofs")
            try Self.mkfs(["erofs", tmp.sub("root.cpio.xz"), e, "--comp", "lz4"])
            let d = try Self.kernelMountDiffs(source: src, image: e, tmp: tmp)
            #expect(d.isEmpty, "cpio -> erofs: \(d.prefix(8).joined(separator: "\n"))")
        }
    }

    /// Members above the 64 KiB inline limit go to one scratch pack next to OUT: many of
    /// them (block-size boundaries, multi-MiB, duplicates, a hard-linked big file) must
    /// give the same image bytes as the directory they were packed from, read back right
    /// (unsquashfs, kernel mount, fsck.erofs), and leave no scratch behind.
    @Test func spilledMembersGiveTheDirectoryImage() throws {
        guard Self.tools([("unsquashfs", "squashfs-tools"), ("tar", "tar"), ("zstd", "zstd"), ("fsck.erofs", "erofs-utils")]) else { return }
        let tmp = try TempDir("mkfs-spill")
        let src = tmp.sub("src")
        try FileSystem.makeDirectories(src)
        _ = try Subprocess.run(["sh", "-ec", """
            mkdir -p big small
            i=0
            for n in 65535 65536 65537 131071 131072 200000 1048575 1048576 1048577 3000001; do
                head -c $n /dev/urandom > big/r$i; i=$((i+1))
            done
            seq 1 400000 > big/text
            cp big/r9 big/dup-of-r9; cp big/text big/dup-of-text
            ln big/r7 big/hardlink-r7
            head -c 300000 /dev/zero > big/zeros
            for j in $(seq 1 200); do head -c $((j * 53)) /dev/urandom > small/s$j; done
            chmod 4755 big/r1 && chown 1000:1000 big/r2
            find . -exec touch -h -d @1690000000 {} +
            """], directory: src)
        _ = try Subprocess.run(["sh", "-ec", "tar --format=pax --numeric-owner -C '\(src)' -cf - . | zstd -q -o '\(tmp.sub("src.tar.zst"))'"])

        let strace = TestEnv.oracle("strace", package: "strace")
        for (fs, comp) in [("squashfs", "gzip"), ("erofs", "none"), ("erofs", "lz4")] {
            let fromTar = tmp.sub("tar-\(fs)-\(comp).img"), fromDir = tmp.sub("dir-\(fs)-\(comp).img")
            let args = [fs, tmp.sub("src.tar.zst"), fromTar, "--comp", comp]
            if let strace {
                // Every file the import creates next to OUT: one pack, not one per member.
                let trace = tmp.sub("trace")
                _ = try Subprocess.run([strace, "-f", "-qq", "-e", "trace=open,openat,creat", "-o", trace, CLI.binary, "mkfs"] + args,
                                       environment: ["SOURCE_DATE_EPOCH": "1700000000", "NO_COLOR": "1"])
                let created = try FileSystem.readText(trace).split(separator: "\n").filter { $0.contains("O_CREAT") && $0.contains("/.osbuild-src-") }
                #expect(created.count == 1 && created.allSatisfy { $0.contains("/pack-") }, "\(fs) \(comp): \(created)")
            } else {
                try Self.mkfs(args)
            }
            try Self.mkfs([fs, src, fromDir, "--comp", comp])
            #expect(try FileSystem.readFile(fromTar) == FileSystem.readFile(fromDir), "\(fs) \(comp): archive and directory images differ")
            let diffs = fs == "squashfs"
                ? try Self.unsquashfsDiffs(source: src, image: fromTar, tmp: tmp)
                : try Self.kernelMountDiffs(source: src, image: fromTar, tmp: tmp)
            #expect(diffs.isEmpty, "\(fs) \(comp): \(diffs.prefix(8).joined(separator: "\n"))")
            if fs == "erofs" { _ = try Subprocess.run(["fsck.erofs", fromTar]) }
        }
        #expect(try FileSystem.listDirectory(tmp.path).filter { $0.hasPrefix(".osbuild") }.isEmpty)
    }

    /// `osbuild mkfs` leaves the image to the page cache like mkfs.erofs and mksquashfs
    /// (still written under a temp name and renamed); `--sync` flushes it before the
    /// rename. strace shows which of the two ran.
    @Test func mkfsSyncsOnlyWhenAsked() throws {
        guard let strace = TestEnv.oracle("strace", package: "strace") else { return }
        let tmp = try TempDir("mkfs-sync")
        // Big enough (48 MiB) that the synced path asks for background syncs too (whether
        // one runs before the final fsync depends on scheduling, so only the fsync is checked).
        try FileSystem.makeDirectories(tmp.sub("src"))
        _ = try Subprocess.run(["sh", "-ec", "head -c 50331648 /dev/urandom > big; seq 1 1000 > small"], directory: tmp.sub("src"))
        for fs in ["erofs", "squashfs"] {
            for sync in [false, true] {
                let out = tmp.sub("\(fs)-\(sync).img")
                // Fast codecs keep the debug build quick; the filter keeps strace cheap.
                let args = [strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o", tmp.sub("trace"),
                            CLI.binary, "mkfs", fs, tmp.sub("src"), out, "--comp", fs == "erofs" ? "none" : "lz4"] + (sync ? ["--sync"] : [])
                _ = try Subprocess.run(args, environment: ["NO_COLOR": "1"])
                let calls = try FileSystem.readText(tmp.sub("trace")).split(separator: "\n")
                let syncs = calls.filter { $0.contains("fsync(") || $0.contains("fdatasync(") }
                let renames = calls.filter { $0.contains("rename") && $0.contains(".osbuild-tmp-") }
                #expect(renames.count == 1, "\(fs) sync=\(sync): \(calls)")
                if sync {
                    let fsyncAt = calls.firstIndex { $0.contains("fsync(") }
                    let renameAt = calls.firstIndex { $0.contains("rename") && $0.contains(".osbuild-tmp-") }
                    #expect(fsyncAt != nil && renameAt != nil && fsyncAt! < renameAt!, "\(fs) --sync: no fsync before the rename: \(calls)")
                } else {
                    #expect(syncs.isEmpty, "\(fs): synced without --sync: \(syncs)")
                }
                #expect(FileSystem.exists(out))
            }
        }
        // Same bytes either way: durability is not part of the image.
        for fs in ["erofs", "squashfs"] {
            #expect(try FileSystem.readFile(tmp.sub("\(fs)-false.img")) == FileSystem.readFile(tmp.sub("\(fs)-true.img")))
        }
        _ = try Subprocess.run(["fsck.erofs", tmp.sub("erofs-false.img")])
    }

    @Test func badSourceIsAClearErrorAndLeavesNoOutput() throws {
        let tmp = try TempDir("mkfs-bad")
        try tmp.write("not-an-archive.tar", "this is plain text, not a tar archive\n")
        for (fs, src) in [("squashfs", "not-an-archive.tar"), ("erofs", "not-an-archive.tar"), ("squashfs", "missing.tar.gz")] {
            let out = tmp.sub("out.img")
            let r = try Subprocess.run([CLI.binary, "mkfs", fs, tmp.sub(src), out], check: false)
            #expect(r.status != 0)
            #expect(r.stderrText.contains(src), "\(fs) \(src): \(r.stderrText)")
            #expect(!FileSystem.exists(out))
            #expect(try FileSystem.listDirectory(tmp.path).filter { $0.hasPrefix(".osbuild") }.isEmpty)
        }
    }
}
