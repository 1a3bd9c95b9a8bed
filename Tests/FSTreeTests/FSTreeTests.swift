import Basics
import CLinux
import Foundation
import FSTree
import Testing
import TestSupport

@Suite struct FSTreeModelTests {
    @Test func byteOrderIterationAndLinkCounts() throws {
        var t = FSTree()
        try t.insert("/b", .file(.bytes([1])))
        try t.insert("/B", .file(.bytes([2])))
        try t.insert("/a/é", .file(.empty), createParents: true)
        try t.insert("/a/z", .directory())
        try t.insert("/a/e", .directory())
        let f = try t.insert("/a/f", .file(.bytes([3])))
        try t.link("/hl", to: f)
        var paths: [String] = []
        t.walk { p, _, _ in paths.append(p) }
        // Byte order: "B" (0x42) < "a" < "b" < "hl"; inside /a: e, f, z, é (0xC3).
        #expect(paths == ["/", "/B", "/a", "/a/e", "/a/f", "/a/z", "/a/é", "/b", "/hl"])
        let n = t.linkCounts()
        #expect(n[f] == 2)
        #expect(n[FSTree.rootID] == 3)  // . + .. + /a
        #expect(n[t.lookup("/a")!] == 4)  // e and z
        #expect(t.reachableInodes().count == 8)  // hard link counted once
    }

    @Test func overlaySemanticsAndErrors() throws {
        var t = FSTree()
        try t.insert("/etc/x", .file(.bytes([1])), createParents: true)
        try t.insert("/etc", .directory(permissions: 0o700))  // dir over dir keeps children
        #expect(t.lookup("/etc/x") != nil)
        #expect(t[t.lookup("/etc")!].permissions == 0o700)
        #expect(throws: FSTree.Error.self) { try t.insert("/etc/x/y", .file(.empty)) }
        #expect(throws: FSTree.Error.self) { try t.insert("/" + String(repeating: "n", count: 256), .file(.empty)) }
        try t.insert("/" + String(repeating: "n", count: 255), .file(.empty))
        #expect(throws: FSTree.Error.self) { try t.link("/l", to: t.lookup("/etc")!) }
        #expect(try t.remove("/etc"))
        #expect(t.lookup("/etc/x") == nil)
    }

    @Test func insertChildByHandleHasInsertSemantics() throws {
        var t = FSTree()
        let etc = try t.insertChild("etc", of: FSTree.rootID, .directory(permissions: 0o755))
        let f = try t.insertChild("f", of: etc, .file(.bytes([1])))
        // Directory over directory: new metadata, children kept, same id.
        #expect(try t.insertChild("etc", of: FSTree.rootID, .directory(permissions: 0o700)) == etc)
        #expect(t[etc].permissions == 0o700 && t.child("f", of: etc) == f)
        // Anything else replaces the entry.
        let g = try t.insertChild("f", of: etc, .symlink("x"))
        #expect(g != f && t.lookup("/etc/f") == g)
        try t.linkChild("h", of: etc, to: g)
        #expect(t.linkCounts()[g] == 2)
        #expect(throws: FSTree.Error.self) { try t.insertChild("a/b", of: etc, .file(.empty)) }
        #expect(throws: FSTree.Error.self) { try t.insertChild(String(repeating: "n", count: 256), of: etc, .file(.empty)) }
        #expect(throws: FSTree.Error.self) { try t.insertChild("x", of: g, .file(.empty)) }
        #expect(throws: FSTree.Error.self) { try t.linkChild("d", of: FSTree.rootID, to: etc) }
    }

    @Test func parallelHostImportIsDeterministic() throws {
        // Many directories with hard links across them: which name is met first must not
        // depend on thread timing, so two imports give the same tree and the same walk.
        let tmp = try TempDir("import-par")
        for d in 0..<40 {
            for f in 0..<20 { try tmp.write("r/d\(d)/sub/f\(f)", "\(d)-\(f)") }
            if d > 0 { link(tmp.sub("r/d0/sub/f0"), tmp.sub("r/d\(d)/sub/link")) }
        }
        func listing(_ t: FSTree) -> [String] {
            var out: [String] = []
            t.walk { p, id, n in out.append("\(p) \(id) \(n.kind) \(n.content)") }
            return out
        }
        let a = try FSTree.fromHostDirectory(tmp.sub("r"))
        let b = try FSTree.fromHostDirectory(tmp.sub("r"))
        #expect(listing(a) == listing(b))
        let f0 = try #require(a.lookup("/d0/sub/f0"))
        #expect(a.lookup("/d39/sub/link") == f0 && a.linkCounts()[f0] == 40)
        #expect(listing(a).count == 1 + 40 * 2 + 40 * 20 + 39)
    }

    @Test func deviceNumberEncoding() {
        let d = DeviceNumber(major: 259, minor: 300)
        #expect(DeviceNumber(linuxEncoded: d.linuxEncoded) == d)
        #expect(DeviceNumber(major: 8, minor: 1).linuxEncoded == 0x801)
        #expect(DeviceNumber(glibc: UInt64(gnu_dev_makedev(259, 300))) == d)
    }
}

@Suite struct HostImportTests {
    @Test func importsEveryEntryTypeWithoutFollowingLinks() throws {
        let tmp = try TempDir("import")
        let root = tmp.sub("root")
        try tmp.write("root/dir/file", "content")
        try FileSystem.writeAtomically(root + "/exec", "#!/bin/sh\n", mode: 0o4755)
        chmod(root + "/exec", 0o4755)
        symlink("/etc/passwd", root + "/abs-link")
        symlink("dir", root + "/dir-link")
        link(root + "/dir/file", root + "/hardlink")
        mkfifo(root + "/fifo", 0o640)
        if TestEnv.isRoot {
            mknod(root + "/null", S_IFCHR | 0o666, gnu_dev_makedev(1, 3))
            mknod(root + "/sda", S_IFBLK | 0o660, gnu_dev_makedev(8, 0))
            lchown(root + "/dir/file", 1000, 1001)
        }
        let hasXattr = setxattr(root + "/dir/file", "user.test", "v1", 2, 0) == 0
        var t = try FSTree.fromHostDirectory(root, options: .init(ownership: .host))
        let file = try #require(t.lookup("/dir/file"))
        #expect(t[file].content.size == 7)
        #expect(t.lookup("/hardlink") == file)
        #expect(t.linkCounts()[file] == 2)
        #expect(t[try #require(t.lookup("/abs-link"))].symlinkTarget == "/etc/passwd")
        #expect(t[try #require(t.lookup("/dir-link"))].kind == .symlink)
        #expect(t[try #require(t.lookup("/exec"))].permissions == 0o4755)
        #expect(t[try #require(t.lookup("/fifo"))].kind == .fifo)
        if hasXattr { #expect(t[file].xattrs == [XAttr(name: "user.test", value: Array("v1".utf8))]) }
        if TestEnv.isRoot {
            #expect(t[try #require(t.lookup("/null"))].rdev == DeviceNumber(major: 1, minor: 3))
            #expect(t[try #require(t.lookup("/sda"))].kind == .blockDevice)
            #expect(t[file].uid == 1000 && t[file].gid == 1001)
        }
        t.makeAllRoot()
        #expect(t[file].uid == 0 && t[file].gid == 0)
        let asRoot = try FSTree.fromHostDirectory(root)  // default ownership: root
        #expect(asRoot[try #require(asRoot.lookup("/dir/file"))].uid == 0)
    }

    @Test func contentReaderDetectsShrinkingFile() throws {
        let tmp = try TempDir("shrink")
        let p = try tmp.write("f", String(repeating: "x", count: 100_000))
        let t = try FSTree.fromHostDirectory(tmp.path)
        let id = try #require(t.lookup("/f"))
        try FileSystem.writeAtomically(p, "short")
        let r = try ContentReader(t[id].content)
        #expect(throws: ContentReader.ChangedWhileReading.self) { _ = try r.readAll() }
        do { _ = try ContentReader(t[id].content).readAll() } catch { #expect("\(error)" == "\(p): file changed size while being read (expected 100000 bytes)") }
    }

    @Test func treeStoreRoundTripKeepsEverything() throws {
        let tmp = try TempDir("store")
        var t = FSTree(root: .directory(permissions: 0o755, mtime: Timestamp(seconds: 5)))
        var f = Inode.file(.bytes(Array("hello".utf8)), permissions: 0o4711, uid: 7, gid: 8, mtime: Timestamp(seconds: 1_700_000_000, nanoseconds: 42))
        f.setXAttr("security.capability", [1, 2, 3])
        f.setXAttr("user.comma,eq=", Array("v".utf8))
        let id = try t.insert("/bin/tab\tname", f, createParents: true)
        try t.link("/bin/hard", to: id)
        try t.insert("/dev/null", Inode(kind: .charDevice, permissions: 0o666, rdev: DeviceNumber(major: 1, minor: 3)), createParents: true)
        try t.insert("/link", .symlink("bin/tab\tname"))
        try t.insert("/empty", .file(.empty))
        try t.insert("/dup", .file(.bytes(Array("hello".utf8))))
        try TreeStore.save(t, to: tmp.sub("out"))
        #expect(try FileSystem.stat(tmp.sub("out/tree.pack")).size == 5)  // "hello" stored once
        let back = try TreeStore.load(from: tmp.sub("out"))
        var a: [String] = [], b: [String] = []
        func describe(_ tree: FSTree, into out: inout [String]) throws {
            let counts = tree.linkCounts()
            try tree.walk { p, id, i in
                let content = i.kind == .regular ? try ContentReader(i.content).readAll() : []
                out.append("\(p) \(i.mode) \(i.uid):\(i.gid) \(i.mtime) \(i.rdev) \(i.symlinkTarget) \(i.xattrs) \(content) n=\(counts[id] ?? 0)")
            }
        }
        try describe(t, into: &a)
        try describe(back, into: &b)
        #expect(a == b)
    }
}
