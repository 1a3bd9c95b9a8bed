import Basics
import EROFS
import Foundation
import FSTree
import Testing
import TestSupport

/// Oracles: fsck.erofs (erofs-utils) checks every image, and the kernel reads it back via
/// a read-only loop mount (as root); the mounted tree is compared entry by entry with the
/// source tree (type, mode, owner, mtime, size, content hash, symlink, rdev, xattrs,
/// hard-link groups).
@Suite(.serialized) struct EROFSTests {
    static let compressions: [(String, EROFSOptions.Compression, Int)] = [
        ("none", .none, 4096), ("lz4", .lz4, 4096), ("lz4hc", .lz4hc(level: 9), 4096),
        ("lz4hc-64k", .lz4hc(level: 12), 65536), ("lz4hc-64k-noztail", .lz4hc(level: 9), 65536),
        ("lz4-full-index", .lz4, 4096), ("lz4hc-128k-full-index", .lz4hc(level: 9), 131072), ("lzma", .lzma(level: 6), 4096), ("lzma-64k", .lzma(level: 6), 65536),
    ]

    /// Edge-case host tree (needs root for devices, owners and trusted.* xattrs).
    static func makeEdgeTree(_ dir: String) throws {
        func sh(_ s: String) throws { _ = try Subprocess.run(["sh", "-ec", s], directory: dir) }
        try sh("""
            : > empty; printf x > one; head -c 4096 /dev/urandom > block; head -c 4097 /dev/urandom > blockplus1
            seq 1 1500000 > ten-mib-text; head -c 1048576 /dev/zero > zeros
            truncate -s 3M holes; printf abc | dd of=holes bs=1 seek=1048576 conv=notrunc 2>/dev/null
            head -c 200000 /dev/urandom > random; cat random ten-mib-text > mixed
            cp one dup1; cp one dup2; cp random dup-random
            mkdir -p tiny; for i in $(seq 1 300); do printf "file $i" > tiny/f$i; done
            mkdir big; cd big; seq -f "entry-%05g" 1 10000 | xargs touch; cd ..
            p=deep; for i in $(seq 1 40); do p=$p/d$i; done; mkdir -p $p; echo bottom > $p/leaf
            touch "$(printf 'n%.0s' $(seq 1 255))"; touch "grüße-日本語-ü"; touch -- '!first' -dash '#hash'
            ln -s one link; ln -s "$(printf 't%.0s' $(seq 1 2000))" longlink; ln -s /nonexistent/target dangling
            mknod cdev c 1 3; mknod bdev b 8 1; mknod bigdev c 300 70000; mkfifo fifo
            python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('sock')"
            ln one hard1; mkdir hl; ln one hl/hard2; ln random hl/hard-random
            setfattr -n user.comment -v hello one; setfattr -n trusted.t -v 1 block
            setfattr -n security.selinux -v system_u:object_r:bin_t:s0 block
            for f in tiny/f1 tiny/f2 tiny/f3; do setfattr -n user.shared -v same-value $f; done
            : > aclfile; setfattr -n system.posix_acl_access -v 0x0200000001000600ffffffff02000400e803000004000400ffffffff10000400ffffffff20000400ffffffff aclfile
            mkdir acldir; setfattr -n system.posix_acl_default -v 0x0200000001000700ffffffff04000500ffffffff20000500ffffffff acldir
            setfattr -n user.dir -v d tiny; setfattr -n trusted.lnk -v l -h link
            setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\\0' v)" random
            chown 1000:1000 one; chown 70000:80000 block; chmod 4755 blockplus1; chmod 2755 random; chmod 1777 tiny
            touch -h -d @1700000000.123456789 one link; touch -d @0 zeros; touch -d '2100-01-01' ten-mib-text
            """)
    }

    static func digest(_ s: ContentSource) throws -> String {
        let r = try ContentReader(s)
        let h = SHA256()
        while true {
            let b = try r.read(upTo: 1 << 20)
            if b.isEmpty { break }
            h.update(b)
        }
        return h.hexDigest()
    }

    /// Differences between two trees (empty when equal).
    static func compare(_ a: FSTree, _ b: FSTree, root: Bool = true) throws -> [String] {
        var diffs: [String] = []
        var aEntries: [String: InodeID] = [:]
        var bEntries: [String: InodeID] = [:]
        a.walk { p, id, _ in aEntries[p] = id }
        b.walk { p, id, _ in bEntries[p] = id }
        if Set(aEntries.keys) != Set(bEntries.keys) {
            diffs.append("entry sets differ: only in source \(Set(aEntries.keys).subtracting(bEntries.keys).sorted().prefix(5)), only in image \(Set(bEntries.keys).subtracting(aEntries.keys).sorted().prefix(5))")
            return diffs
        }
        var groupA: [InodeID: [String]] = [:]
        var groupB: [InodeID: [String]] = [:]
        for (p, ia) in aEntries.sorted(by: { $0.key < $1.key }) {
            guard let ib = bEntries[p] else { continue }
            let x = a[ia], y = b[ib]
            groupA[ia, default: []].append(p)
            groupB[ib, default: []].append(p)
            if p == "/" && !root { continue }
            if x.kind != y.kind { diffs.append("\(p): kind \(x.kind) vs \(y.kind)"); continue }
            if x.permissions != y.permissions { diffs.append("\(p): mode \(String(x.permissions, radix: 8)) vs \(String(y.permissions, radix: 8))") }
            if x.uid != y.uid || x.gid != y.gid { diffs.append("\(p): owner \(x.uid):\(x.gid) vs \(y.uid):\(y.gid)") }
            if x.mtime != y.mtime { diffs.append("\(p): mtime \(x.mtime) vs \(y.mtime)") }
            if x.xattrs != y.xattrs { diffs.append("\(p): xattrs \(x.xattrs.map(\.name)) vs \(y.xattrs.map(\.name))") }
            switch x.kind {
            case .regular:
                if x.size != y.size { diffs.append("\(p): size \(x.size) vs \(y.size)") } else if try digest(x.content) != digest(y.content) { diffs.append("\(p): content differs") }
            case .symlink: if x.symlinkTarget != y.symlinkTarget { diffs.append("\(p): symlink target differs") }
            case .charDevice, .blockDevice: if x.rdev != y.rdev { diffs.append("\(p): rdev \(x.rdev) vs \(y.rdev)") }
            default: break
            }
        }
        let ga = Set(groupA.values.filter { $0.count > 1 }.map { $0.sorted() })
        let gb = Set(groupB.values.filter { $0.count > 1 && !$0.contains("/") }.map { $0.sorted() })
        if ga != gb { diffs.append("hard-link groups differ: \(ga.sorted { $0[0] < $1[0] }) vs \(gb.sorted { $0[0] < $1[0] })") }
        return diffs
    }

    /// Mounts `image` read-only through the kernel and returns the tree read back.
    static func withKernelMount<T>(_ image: String, _ body: (String) throws -> T) throws -> T {
        let mnt = try TempDir("erofs-mnt")
        _ = try Subprocess.run(["mount", "-t", "erofs", "-o", "loop,ro", image, mnt.path])
        defer { _ = try? Subprocess.run(["umount", mnt.path]) }
        return try body(mnt.path)
    }

    static var canMount: Bool {
        if !TestEnv.isRoot { print("SKIP: kernel mount needs root"); return false }
        return true
    }

    @Test(arguments: compressions.map(\.0))
    func edgeTreeKernelRoundTrip(name: String) throws {
        guard let fsck = TestEnv.oracle("fsck.erofs", package: "erofs-utils"), EROFSTests.canMount else { return }
        guard let (_, comp, cluster) = EROFSTests.compressions.first(where: { $0.0 == name }) else { return }
        let tmp = try TempDir("erofs-edge")
        let src = tmp.sub("src")
        try FileSystem.makeDirectories(src)
        try EROFSTests.makeEdgeTree(src)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        let img = tmp.sub("img.erofs")
        var opts = EROFSOptions(compression: comp, pclusterSize: cluster, label: "edge", ztailpacking: !name.hasSuffix("noztail"))
        opts.fullIndexes = name.hasSuffix("full-index")
        let stats = try EROFSWriter(opts).write(tree: tree, to: img)
        #expect(stats.compactInodes > 0 && stats.extendedInodes > 0)
        if comp != .none { #expect(stats.compressedFiles > 0) }
        let r = try Subprocess.run([fsck, img], check: false)
        #expect(r.status == 0, "fsck.erofs: \(r.stderrText)")
        // Contents are read lazily, so compare while the image is still mounted.
        let diffs = try EROFSTests.withKernelMount(img) {
            try EROFSTests.compare(tree, try FSTree.fromHostDirectory($0, options: .init(ownership: .host)))
        }
        #expect(diffs.isEmpty, "\(diffs.prefix(20).joined(separator: "\n"))")
        // dump.erofs reads our superblock fields back.
        if let dump = TestEnv.oracle("dump.erofs", package: "erofs-utils") {
            let s = try Subprocess.run([dump, "-s", img]).stdoutText
            #expect(s.contains("Filesystem blocks:") && s.contains(" \(stats.blocks)\n"))
        }
        if let blkid = TestEnv.oracle("blkid", package: "util-linux") {
            let label = try Subprocess.run([blkid, "-o", "value", "-s", "LABEL", img]).stdoutText
            #expect(label.trimmingCharacters(in: .whitespacesAndNewlines) == "edge")
        }
    }

    /// fsck.erofs --extract decodes every file (lz4/lz4hc/none; it has no LZMA).
    @Test func fsckExtractMatchesContent() throws {
        guard let fsck = TestEnv.oracle("fsck.erofs", package: "erofs-utils") else { return }
        let tmp = try TempDir("erofs-extract")
        let src = tmp.sub("src")
        try FileSystem.makeDirectories(src)
        _ = try Subprocess.run(["sh", "-ec", "seq 1 300000 > a; head -c 70000 /dev/urandom > b; printf x > c; mkdir d; seq 1 999 > d/e; ln -s a l"], directory: src)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        for comp in [EROFSOptions.Compression.none, .lz4, .lz4hc(level: 12)] {
            for cluster in [4096, 131072] {
                let img = tmp.sub("i.erofs")
                try EROFSWriter(.init(compression: comp, pclusterSize: cluster)).write(tree: tree, to: img)
                let out = tmp.sub("x")
                try? FileSystem.removeTree(out)
                let r = try Subprocess.run([fsck, "--extract=\(out)", img], check: false)
                #expect(r.status == 0, "\(comp) \(cluster): \(r.stderrText)")
                let back = try FSTree.fromHostDirectory(out, options: .init(ownership: .host))
                #expect(try EROFSTests.compare(tree, back, root: false).isEmpty, "\(comp) \(cluster)")
            }
        }
    }

    @Test func reproducibleBytes() throws {
        let tmp = try TempDir("erofs-repro")
        let src = tmp.sub("src")
        try FileSystem.makeDirectories(src)
        _ = try Subprocess.run(["sh", "-ec", "seq 1 200000 > a; mkdir d; seq 1 99 > d/b; ln -s a l; ln a h"], directory: src)
        for comp in [EROFSOptions.Compression.none, .lz4hc(level: 9), .lzma(level: 6)] {
            var hashes: [String] = []
            for k in 0..<2 {
                let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .root))
                let img = tmp.sub("r\(k).erofs")
                try EROFSWriter(.init(compression: comp, buildTime: Timestamp(seconds: 1_700_000_000), threads: k + 1)).write(tree: tree, to: img)
                hashes.append(try SHA256.hexOfFile(at: img))
            }
            #expect(hashes[0] == hashes[1], "\(comp)")
        }
    }

    @Test func sourceDateEpochMakesCompactInodes() throws {
        var tree = FSTree(root: .directory(mtime: Timestamp(seconds: 5)))
        try tree.insert("/a", .file(.bytes(Array("hi".utf8)), mtime: Timestamp(seconds: 2_000_000_000)))
        try tree.insert("/b", .file(.bytes(Array("yo".utf8)), mtime: Timestamp(seconds: 3)))
        tree.clampMtimes(to: 1_000)
        let tmp = try TempDir("erofs-sde")
        let stats = try EROFSWriter(.init(compression: .none, buildTime: Timestamp(seconds: 1_000))).write(tree: tree, to: tmp.sub("i"))
        #expect(stats.compactInodes == 1 && stats.extendedInodes == 2)
    }

    @Test func badInputLeavesNoOutput() throws {
        let tmp = try TempDir("erofs-bad")
        var tree = FSTree()
        try tree.insert("/f", .file(.bytes([1])))
        var i = tree[try #require(tree.lookup("/f"))]
        i.setXAttr("system.weird", [1])
        try tree.insert("/g", i)
        let out = tmp.sub("bad.erofs")
        #expect { try EROFSWriter(.init(compression: .none)).write(tree: tree, to: out) } throws: { e in
            "\(e)".contains("/g") && "\(e)".contains("system.weird")
        }
        // A file that vanished between scan and write.
        var t2 = FSTree()
        try t2.insert("/gone", .file(.hostFile(path: tmp.sub("missing"), size: 10)))
        #expect(throws: (any Error).self) { try EROFSWriter(.init(compression: .lz4)).write(tree: t2, to: out) }
        #expect(throws: EROFSError.self) { try EROFSWriter(.init(pclusterSize: 5000)).write(tree: tree, to: out) }
        #expect(throws: EROFSError.self) { try EROFSWriter(.init(label: String(repeating: "x", count: 17))).write(tree: tree, to: out) }
        #expect(try FileSystem.listDirectory(tmp.path).isEmpty)
    }
}
