import Basics
import FSTree
import Foundation
@testable import Rootfs
import Testing
import TestSupport

/// Builds a source tree with every entry type real rootfs tarballs carry. Needs root
/// (mknod, chown, trusted.* xattrs); the importer itself never needs it.
func makeFixtureTree(_ src: String) throws {
    try sh("""
        set -e
        cd \(q(src))
        mkdir -p bin dev etc home/user tmp usr/lib/deep/er
        printf su > bin/su; chmod 4755 bin/su
        head -c 300000 /dev/urandom > bin/busybox; chmod 755 bin/busybox
        ln bin/busybox bin/ls
        ln -s busybox bin/sh
        ln -s /usr/lib/deep usr/deep
        mknod dev/null c 1 3; mknod dev/sda b 8 0; mknod dev/big c 260 300000; mkfifo dev/initctl
        chmod 666 dev/null
        printf 'root:*:1::::::\\n' > etc/shadow; chown 0:42 etc/shadow; chmod 640 etc/shadow
        chmod 2755 etc; chmod 1777 tmp
        printf data > home/user/file; chown -R 1000:1001 home/user; chmod 700 home/user
        setfattr -n user.note -v hello home/user/file
        setfattr -n trusted.overlay.opaque -v y usr/lib/deep
        printf x > usr/lib/deep/er/f; chmod 2711 usr/lib/deep/er/f; chown 65534:65533 usr/lib/deep/er/f
        find . -depth -exec touch -h -d @1700000000.123456789 {} +
        touch -h -d @1600000000.5 bin/sh
        touch -d @1500000000 bin/busybox
        """)
}

@Suite struct ArchiveImportTests {
    @Test func tarVariantsMatchTarListing() throws {
        guard TestEnv.isRoot else { print("SKIP: fixture needs root for mknod/chown"); return }
        guard TestEnv.oracle("tar", package: "tar") != nil, TestEnv.oracle("setfattr", package: "attr") != nil else { return }
        let t = try TempDir("rootfs-tar")
        try FileSystem.makeDirectories(t.sub("src"))
        try makeFixtureTree(t.sub("src"))
        let base = t.sub("rootfs.tar")
        try sh("tar --xattrs --xattrs-include='*' --format=pax -cf \(q(base)) -C \(q(t.sub("src"))) .")
        try sh("gzip -n -k -c \(q(base)) > \(q(base)).gz && xz -k -c \(q(base)) > \(q(base)).xz && zstd -q -c \(q(base)) > \(q(base)).zst")
        let blobs = try BlobStore(directory: t.sub("blobs"))
        for variant in [base, base + ".gz", base + ".xz", base + ".zst"] {
            var tree = FSTree()
            let summary = try ArchiveImporter.importArchive(variant, into: &tree, blobs: blobs)
            #expect(summary.members >= 20, "\(variant): \(summary)")
            let seen = try expectTreeMatchesTar(tree, variant)
            #expect(seen.hardlinks == 1 && seen.devices == 3 && seen.xattrs == 2, "\(seen)")
            // Content is carried exactly, small members inline, big ones spilled to the store.
            let busybox = try FileSystem.readFile(t.sub("src/bin/busybox"))
            #expect(try contentBytes(tree, "/bin/busybox") == busybox)
            #expect(try contentBytes(tree, "/bin/su") == Array("su".utf8))
            guard case .fileRange(let pack, let offset, 300000) = tree[tree.lookup("/bin/busybox")!].content else {
                Issue.record("big member not spilled"); continue
            }
            #expect(pack == blobs.packPath && pack.hasPrefix(blobs.directory + "/") && offset % 4096 == 0)
            guard case .bytes = tree[tree.lookup("/bin/su")!].content else { Issue.record("small member not inline"); continue }
            #expect(tree[tree.lookup("/usr/lib/deep")!].xattrs == [XAttr(name: "trusted.overlay.opaque", value: Array("y".utf8))])
            #expect(tree[tree.lookup("/dev/big")!].rdev == DeviceNumber(major: 260, minor: 300000))
        }
        // Four imports through one store: one pack file, four copies of the 300000-byte member.
        #expect(try FileSystem.listDirectory(blobs.directory) == [FileSystem.basename(blobs.packPath ?? "-")])
        #expect(try FileSystem.stat(blobs.packPath ?? "-").size == 3 * 303104 + 300000)
    }

    @Test func debPackageDataMember() throws {
        guard TestEnv.oracle("dpkg-deb", package: "dpkg") != nil else { return }
        let t = try TempDir("rootfs-deb")
        try sh("""
            set -e
            cd \(q(t.path))
            mkdir -p pkg/DEBIAN pkg/usr/bin pkg/usr/share/doc/hello pkg/etc
            printf 'Package: hello\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: t <t@example.org>\\nDescription: test\\n' > pkg/DEBIAN/control
            printf '#!/bin/sh\\necho hi\\n' > pkg/usr/bin/hello; chmod 755 pkg/usr/bin/hello
            head -c 200000 /dev/urandom > pkg/usr/share/doc/hello/blob
            ln -s ../usr/bin/hello pkg/etc/hello-link
            dpkg-deb --root-owner-group -Zxz --build pkg hello-xz.deb >/dev/null
            dpkg-deb --root-owner-group -Zgzip --build pkg hello-gz.deb >/dev/null
            """)
        let blobs = try BlobStore(directory: t.sub("blobs"))
        for deb in ["hello-xz.deb", "hello-gz.deb"] {
            var tree = FSTree()
            let s = try ArchiveImporter.importArchive(t.sub(deb), into: &tree, blobs: blobs)
            #expect(s.format.hasPrefix("ar"), "\(s.format)")
            try sh("dpkg-deb --fsys-tarfile \(q(t.sub(deb))) > \(q(t.sub(deb + ".tar")))")
            try expectTreeMatchesTar(tree, t.sub(deb + ".tar"))
            #expect(try contentBytes(tree, "/usr/share/doc/hello/blob") == FileSystem.readFile(t.sub("pkg/usr/share/doc/hello/blob")))
            #expect(tree.lookup("/DEBIAN") == nil)
        }
    }

    /// Writes a tar with crafted members through Python's tarfile (independent of libarchive).
    func craft(_ path: String, _ members: String) throws {
        let script = """
            import io, sys, tarfile
            def f(t, name, data=b'x'):
                i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
            def l(t, name, target, kind=tarfile.SYMTYPE):
                i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; t.addfile(i)
            def d(t, name):
                i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
            with tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT) as t:
            \(members.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            """
        let py = path + ".py"
        try FileSystem.writeAtomically(py, script)
        try sh("python3 \(q(py)) \(q(path))")
    }

    @Test(arguments: [
        ("dotdot", "../../osbuild-escape", "f(t, './etc/ok')\nf(t, '../../osbuild-escape')"),
        ("absolute", "/etc/osbuild-escape", "f(t, './etc/ok')\nf(t, '/etc/osbuild-escape')"),
        ("symlink", "a/escape", "f(t, './etc/ok')\nl(t, 'a', 'OUTSIDE')\nf(t, 'a/escape')"),
        ("symlink-dir-swap", "./a/escape", "f(t, './etc/ok')\nd(t, './a')\nl(t, './a', 'OUTSIDE')\nf(t, './a/escape')"),
        ("hardlink-out", "h", "f(t, './etc/ok')\nl(t, 'h', '../../etc/passwd', tarfile.LNKTYPE)"),
        ("hardlink-abs", "h", "f(t, './etc/ok')\nl(t, 'h', '/etc/passwd', tarfile.LNKTYPE)"),
        ("hardlink-via-symlink", "h", "f(t, './etc/ok')\nl(t, 'a', 'OUTSIDE')\nl(t, 'h', 'a/x', tarfile.LNKTYPE)"),
    ])
    func maliciousMembersRefused(_ name: String, _ member: String, _ members: String) throws {
        let t = try TempDir("rootfs-evil")
        let outside = t.sub("outside")
        try FileSystem.makeDirectories(outside)
        let work = t.sub("work/deeper")
        try FileSystem.makeDirectories(work)
        let archive = t.sub("\(name).tar")
        try craft(archive, members.replacingOccurrences(of: "OUTSIDE", with: outside))
        let blobs = try BlobStore(directory: work + "/blobs", inlineLimit: 0)

        var tree = FSTree()
        do {
            try ArchiveImporter.importArchive(archive, into: &tree, blobs: blobs)
            Issue.record("\(name): crafted archive accepted")
        } catch let e as UnsafeArchiveMember {
            #expect(e.member == member)
            #expect(e.description.contains(archive) && e.description.contains(member))
        }

        var warnings: [String] = []
        var skipTree = FSTree()
        let s = try ArchiveImporter.importArchive(archive, into: &skipTree, blobs: blobs, options: .init(policy: .warnSkip, log: { warnings.append($0) }))
        #expect(s.skipped == 1)
        #expect(warnings.count == 1 && warnings[0].contains(member))
        #expect(skipTree.lookup("/etc/ok") != nil)
        #expect(skipTree.lookup("/a/escape") == nil && skipTree.lookup("/h") == nil)

        // Nothing landed outside: the decoy dir is empty, no escape files, and the blob
        // store holds only its pack (member names never become host paths).
        #expect(try FileSystem.listDirectory(outside).isEmpty)
        #expect(!FileSystem.exists("/etc/osbuild-escape"))
        #expect(!FileSystem.exists(t.sub("work/osbuild-escape")) && !FileSystem.exists(t.sub("osbuild-escape")))
        #expect(try FileSystem.listDirectory(blobs.directory) == [FileSystem.basename(blobs.packPath ?? "-")])
    }

    /// A package over a merged-usr base: its ./bin/x lands in /usr/bin via the base's
    /// /bin -> usr/bin link (as dpkg does), the link survives the package's ./bin/ entry, and
    /// even a hostile base link cannot lead outside the tree.
    @Test func followsBaseSymlinksInsideTheTree() throws {
        let t = try TempDir("rootfs-usrmerge")
        var tree = FSTree()
        try tree.insert("/usr/bin", .directory(), createParents: true)
        try tree.insert("/usr/lib", .directory(), createParents: true)
        try tree.insert("/bin", .symlink("usr/bin"))
        try tree.insert("/lib", .symlink("/usr/lib"))
        try tree.insert("/evil", .symlink("../../../../tmp"))
        try craft(t.sub("pkg.tar"), """
            d(t, './bin')
            f(t, './bin/busybox', b'bb')
            l(t, './bin/sh', 'busybox')
            l(t, './lib/hard', './bin/busybox', tarfile.LNKTYPE)
            f(t, './evil/x')
            """)
        try ArchiveImporter.importArchive(t.sub("pkg.tar"), into: &tree, blobs: BlobStore(directory: t.sub("b")))
        #expect(tree[tree.lookup("/bin")!].kind == .symlink)
        #expect(try contentBytes(tree, "/usr/bin/busybox") == Array("bb".utf8))
        #expect(tree[tree.lookup("/usr/bin/sh")!].symlinkTarget == "busybox")
        #expect(tree.lookup("/usr/lib/hard") == tree.lookup("/usr/bin/busybox"))
        #expect(tree.lookup("/tmp/x") != nil)  // "../../../../tmp" resolved at the tree root

        // With following disabled, writing through the base link is refused.
        try craft(t.sub("pkg2.tar"), "f(t, './bin/busybox', b'bb')")
        var strict = FSTree()
        try strict.insert("/usr/bin", .directory(), createParents: true)
        try strict.insert("/bin", .symlink("usr/bin"))
        #expect {
            try ArchiveImporter.importArchive(t.sub("pkg2.tar"), into: &strict, blobs: BlobStore(directory: t.sub("b")), options: .init(followTreeSymlinks: false))
        } throws: { ($0 as? UnsafeArchiveMember)?.member == "./bin/busybox" }
    }

    /// Compressed archives are decompressed on a second thread: the format names stay as
    /// libarchive's, a corrupt or cut stream is an error naming the file, and a member
    /// refused early stops the thread although it still has data to give (the test would
    /// hang, and hit its time limit, if it did not).
    @Test(.timeLimit(.minutes(2))) func compressedStreamsOnTheDecompressThread() throws {
        guard TestEnv.oracle("zstd", package: "zstd") != nil, TestEnv.oracle("xz", package: "xz-utils") != nil else { return }
        let t = try TempDir("rootfs-decomp")
        try craft(t.sub("ok.tar"), """
            import os
            f(t, './a', os.urandom(1500000))
            f(t, './b', b'text ' * 500000)
            """)
        try craft(t.sub("evil.tar"), """
            import os
            f(t, '/etc/osbuild-escape')
            f(t, './big', b'y' * 12000000)
            """)
        _ = try sh("cd \(q(t.path)) && for f in ok evil; do zstd -q $f.tar -o $f.tar.zst; xz -k $f.tar; gzip -n -k $f.tar; done")
        #expect(DecompressThread.start(t.sub("ok.tar")) == nil)
        for (ext, filter) in [("zst", "zstd"), ("xz", "xz"), ("gz", "gzip")] {
            let path = t.sub("ok.tar." + ext)
            var tree = FSTree()
            let s = try ArchiveImporter.importArchive(path, into: &tree, blobs: BlobStore(directory: t.sub("b-" + ext)))
            #expect(s.format.hasSuffix("/" + filter) && s.members == 2, "\(s)")
            #expect(try contentBytes(tree, "/b") == Array(String(repeating: "text ", count: 500000).utf8))
            #expect(try contentBytes(tree, "/a").count == 1500000)

            var evil = FSTree()
            #expect {
                try ArchiveImporter.importArchive(t.sub("evil.tar." + ext), into: &evil, blobs: BlobStore(directory: t.sub("e-" + ext)))
            } throws: { ($0 as? UnsafeArchiveMember)?.member == "/etc/osbuild-escape" }

            // Corrupt the middle of the stream (zstd and xz check their data), and cut it in half.
            let bytes = try FileSystem.readFile(path)
            var bad = bytes
            for i in (bytes.count / 2)..<(bytes.count / 2 + 64) { bad[i] ^= 0x5A }
            try FileSystem.writeAtomically(t.sub("bad.tar." + ext), bad)
            try FileSystem.writeAtomically(t.sub("cut.tar." + ext), Array(bytes.prefix(bytes.count / 2)))
            for broken in (ext == "gz" ? [] : ["bad.tar." + ext]) + ["cut.tar." + ext] {
                var tr = FSTree()
                #expect {
                    try ArchiveImporter.importArchive(t.sub(broken), into: &tr, blobs: BlobStore(directory: t.sub("x-" + ext)))
                } throws: { ($0 as? ArchiveError)?.description.contains(t.sub(broken)) == true }
            }
        }
    }

    @Test func truncatedArchiveIsAnErrorNamingIt() throws {
        let t = try TempDir("rootfs-trunc")
        try craft(t.sub("ok.tar"), "f(t, 'big', b'y' * 100000)")
        let bytes = try FileSystem.readFile(t.sub("ok.tar"))
        try FileSystem.writeAtomically(t.sub("cut.tar"), Array(bytes.prefix(30000)))
        var tree = FSTree()
        #expect {
            try ArchiveImporter.importArchive(t.sub("cut.tar"), into: &tree, blobs: try BlobStore(directory: t.sub("b")))
        } throws: { ($0 as? ArchiveError)?.description.contains("cut.tar") == true }
    }
}
