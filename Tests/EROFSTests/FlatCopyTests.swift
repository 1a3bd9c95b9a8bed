import Basics
import EROFS
import Foundation
import FSTree
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The uncompressed writer copies file data straight into the image (copy_file_range where
/// the kernel allows it). Every kind of content source must give the same bytes, whichever
/// copy mechanism runs; the kernel mount is the oracle for the contents.
@Suite(.serialized) struct FlatCopyTests {
    /// Sizes around the block (4096) and piece (8 MiB) boundaries, tails that go inline and
    /// tails that do not (4064 bytes is the most a compact inode without xattrs can inline).
    static let sizes = [1, 4095, 4096, 4097, 8191, 4064, 4065, 3 * 4096 + 4000, 8 << 20, (8 << 20) + 4095]

    static func bytes(_ n: Int, seed: Int) -> [UInt8] {
        var x = UInt32(truncatingIfNeeded: seed &* 2_654_435_761 | 1)
        return (0..<n).map { _ in
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            return UInt8(truncatingIfNeeded: x)
        }
    }

    /// The same files, as host files in `dir`, as ranges of one container file (how
    /// archive members are kept), and in memory.
    static func trees(_ dir: String) throws -> [(String, FSTree)] {
        try FileSystem.makeDirectories(dir + "/files")
        var host = FSTree(), ranges = FSTree(), memory = FSTree()
        var container: [UInt8] = [9, 9, 9]   // members start at odd offsets, as in a tar
        var members: [(String, UInt64, UInt64, [UInt8])] = []
        for (k, n) in sizes.enumerated() {
            let data = bytes(n, seed: k + 1)
            let name = "f\(k)"
            let p = dir + "/files/" + name
            try FileSystem.writeAtomically(p, data)
            members.append((name, UInt64(container.count), UInt64(n), data))
            container += data + [7]
            try host.insert("/" + name, .file(.hostFile(path: p, size: UInt64(n)), mtime: Timestamp(seconds: 1000)))
            try memory.insert("/" + name, .file(.bytes(data), mtime: Timestamp(seconds: 1000)))
        }
        // A symlink too long to inline puts a block after the metadata: fsck.erofs 1.5
        // reads past an inode that ends exactly at the end of the image and reports
        // corruption there (the kernel does not; see docs/erofs.md).
        let target = String(repeating: "t", count: 4080)
        try host.insert("/zlink", .symlink(target, mtime: Timestamp(seconds: 1000)))
        try memory.insert("/zlink", .symlink(target, mtime: Timestamp(seconds: 1000)))
        let cpath = dir + "/container"
        try FileSystem.writeAtomically(cpath, container)
        for (name, off, len, _) in members {
            try ranges.insert("/" + name, .file(.fileRange(path: cpath, offset: off, length: len), mtime: Timestamp(seconds: 1000)))
        }
        try ranges.insert("/zlink", .symlink(target, mtime: Timestamp(seconds: 1000)))
        return [("host", host), ("ranges", ranges), ("memory", memory)]
    }

    @Test func everySourceAndMechanismGivesTheSameImage() throws {
        let tmp = try TempDir("erofs-flatcopy")
        var dirs = [("disk", tmp.sub("src"))]
        // A source on another filesystem makes copy_file_range refuse (EXDEV).
        let shm = "/dev/shm/osbuild-flatcopy-\(getpid())"
        if let a = try? FileSystem.stat("/dev/shm"), a.isDirectory, a.device != (try FileSystem.stat(tmp.path)).device {
            dirs.append(("tmpfs", shm))
        } else {
            print("SKIP (part): /dev/shm missing or on the same filesystem: no cross-filesystem source")
        }
        defer { try? FileSystem.removeTree(shm) }
        var reference: String?
        var checkedByKernel = false
        for (where_, dir) in dirs {
            for (kind, tree) in try FlatCopyTests.trees(dir) {
                for mode in [FileCopy.Mode.kernel, .buffered] {
                    for threads in (where_ == "disk" && kind == "host" && mode == .kernel ? [2, 1] : [2]) {
                        let img = tmp.sub("img-\(where_)-\(kind)-\(mode)-\(threads).erofs")
                        var opts = EROFSOptions(compression: .none, buildTime: Timestamp(seconds: 1000), threads: threads)
                        opts.fileCopy = mode
                        try EROFSWriter(opts).write(tree: tree, to: img)
                        let h = try SHA256.hexOfFile(at: img)
                        if let reference {
                            #expect(h == reference, "\(where_) \(kind) \(mode) threads=\(threads)")
                        } else {
                            reference = h
                        }
                        if !checkedByKernel && TestEnv.isRoot {
                            checkedByKernel = true
                            if let fsck = TestEnv.oracle("fsck.erofs", package: "erofs-utils") {
                                let r = try Subprocess.run([fsck, img], check: false)
                                #expect(r.status == 0, "fsck.erofs: \(r.stderrText)")
                            }
                            let diffs = try EROFSTests.withKernelMount(img) { mnt in
                                try EROFSTests.compare(tree, try FSTree.fromHostDirectory(mnt, options: .init(ownership: .host)), root: false)
                            }
                            #expect(diffs.isEmpty, "\(diffs.prefix(10).joined(separator: "\n"))")
                        }
                    }
                }
            }
        }
        if !TestEnv.isRoot { print("SKIP (part): kernel mount needs root") }
    }

    /// A host file that shrank or grew after the tree was built is an error naming it,
    /// for small files and for files copied in several pieces; no image is left behind.
    @Test(arguments: [FileCopy.Mode.kernel, .buffered])
    func changedFilesAreErrors(mode: FileCopy.Mode) throws {
        let tmp = try TempDir("erofs-flatchanged")
        let out = tmp.sub("out.erofs")
        for (recorded, actual) in [(5000, 4000), (5000, 6000), (4096, 4097), ((8 << 20) + 10, (8 << 20) + 5), ((8 << 20) + 10, (8 << 20) + 20), (9000, 100)] {
            let p = tmp.sub("changing")
            try FileSystem.writeAtomically(p, FlatCopyTests.bytes(actual, seed: 5))
            var tree = FSTree()
            try tree.insert("/x", .file(.hostFile(path: p, size: UInt64(recorded))))
            var opts = EROFSOptions(compression: .none)
            opts.fileCopy = mode
            do {
                try EROFSWriter(opts).write(tree: tree, to: out)
                Issue.record("\(recorded) -> \(actual) bytes: no error")
            } catch {
                #expect("\(error)".contains(p) && "\(error)".contains("changed size"), "\(recorded) -> \(actual) bytes: \(error)")
            }
            #expect(!FileSystem.exists(out))
        }
        // The compressing path reads into a reused buffer: the same checks apply.
        for (recorded, actual) in [(5000, 4000), (5000, 6000), ((8 << 20) + 10, (8 << 20) + 5)] where mode == .kernel {
            let p = tmp.sub("changing")
            try FileSystem.writeAtomically(p, FlatCopyTests.bytes(actual, seed: 5))
            var tree = FSTree()
            try tree.insert("/x", .file(.hostFile(path: p, size: UInt64(recorded))))
            do {
                try EROFSWriter(.init(compression: .lz4, pclusterSize: 4096)).write(tree: tree, to: out)
                Issue.record("lz4 \(recorded) -> \(actual) bytes: no error")
            } catch {
                #expect("\(error)".contains(p) && "\(error)".contains("changed size"), "lz4 \(recorded) -> \(actual) bytes: \(error)")
            }
            #expect(!FileSystem.exists(out))
        }
        // A range that runs past the end of its container file.
        let c = tmp.sub("container")
        try FileSystem.writeAtomically(c, FlatCopyTests.bytes(10_000, seed: 6))
        var tree = FSTree()
        try tree.insert("/m", .file(.fileRange(path: c, offset: 6000, length: 8000)))
        #expect { try EROFSWriter(.init(compression: .none)).write(tree: tree, to: out) } throws: { e in "\(e)".contains(c) }
        #expect(!FileSystem.exists(out))
    }
}

/// fsck.erofs 1.5 reads a 12-byte xattr header after every inode, even one without
/// xattrs; an image whose last inode ends within 12 bytes of its end gets a zero block
/// appended so the real checker accepts it. Root + k block-sized files: the files' 32-byte
/// inodes (no inline tail) fill the metadata blocks; with k = 151 the last inode ends
/// exactly at the image's end (without the pad block fsck.erofs fails that one).
@Suite struct EROFSTailRecordTests {
    @Test func lastInodeAtTheImageEndPassesFsck() throws {
        guard let fsck = TestEnv.oracle("fsck.erofs", package: "erofs-utils") else { return }
        let tmp = try TempDir("erofs-tailrec")
        for k in 140...160 {
            var tree = FSTree()
            for i in 0..<k {
                try tree.insert("/f\(1000 + i)", .file(.bytes(FlatCopyTests.bytes(4096, seed: i)), mtime: Timestamp(seconds: 1000)))
            }
            let img = tmp.sub("t\(k).erofs")
            try EROFSWriter(EROFSOptions(compression: .none, buildTime: Timestamp(seconds: 1000))).write(tree: tree, to: img)
            let r = try Subprocess.run([fsck, img], check: false)
            #expect(r.status == 0, "\(k) files: fsck.erofs: \(r.stdoutText)\(r.stderrText)")
        }
    }
}
