import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport

@Suite struct InitramfsBuilderTests {
    func kernelTree() throws -> FSTree {
        var k = FSTree()
        let d = "/lib/modules/6.0.0-test"
        func f(_ p: String, _ text: String) throws { try k.insert(d + "/" + p, .file(.bytes(Array(text.utf8))), createParents: true) }
        try f("kernel/fs/a/a.ko", "A")
        try f("kernel/lib/b.ko.xz", "B")
        try f("kernel/lib/c-dash.ko", "C")
        try f("kernel/lib/unused.ko", "U")
        try f("modules.dep", "kernel/fs/a/a.ko: kernel/lib/b.ko.xz\nkernel/lib/b.ko.xz:\nkernel/lib/c-dash.ko:\nkernel/lib/unused.ko:\n")
        try f("modules.alias", "alias fs-a a\nalias pci:v00001234d*sv*sd*bc*sc*i* unused\n")
        try f("modules.softdep", "softdep a pre: c_dash post: absent_mod\n")
        try f("modules.builtin", "kernel/fs/builtin-mod.ko\n")
        return k
    }

    @Test func resolverUnitCases() throws {
        let km = try KernelModules(tree: kernelTree())
        let r = try km.resolve(["fs-a", "builtin_mod"])
        #expect(r.modules == ["kernel/lib/c-dash.ko", "kernel/lib/b.ko.xz", "kernel/fs/a/a.ko"])
        #expect(r.builtin == ["builtin_mod"])
        #expect(try km.resolve(["pci:v00001234d00005678sv0sd0bc01sc02i03"]).modules == ["kernel/lib/unused.ko"])
        #expect(try km.resolve(["c_dash", "c-dash"]).modules == ["kernel/lib/c-dash.ko"])
        #expect { try km.resolve(["a", "x", "y_z"]) } throws: { "\($0)".hasSuffix(": x, y_z") }
    }

    @Test func buildsFromBaseRootfsModulesAndFirmware() throws {
        guard TestEnv.oracle("cpio", package: "cpio") != nil else { return }
        let t = try TempDir("initramfs-build")
        try t.write("base/init", "#!/bin/sh\n", mode: 0o755)
        var rootfs = FSTree()
        try rootfs.insert("/usr/lib/libx.so.1", .file(.bytes([7]), permissions: 0o755, uid: 3), createParents: true, parentTemplate: .directory(permissions: 0o751))
        try rootfs.link("/usr/lib/libx.so", to: rootfs.lookup("/usr/lib/libx.so.1")!)
        try rootfs.insert("/lib/firmware/fw.bin", .file(.bytes([9])), createParents: true)
        let spec = InitramfsSpec(base: [.directory(t.sub("base"))], fromRootfs: ["/usr/lib/libx*"], modules: ["fs-a"],
                                 firmware: ["fw.bin"], compression: .xz, sourceDateEpoch: 1_700_000_000)
        let img = t.sub("initrd.xz")
        _ = try InitramfsBuilder.build(spec, rootfs: rootfs, kernelTree: kernelTree(), downloadCache: t.sub("dl"), output: img)
        let list = try sh("xz -dc \(q(img)) | cpio -itv --quiet --numeric-uid-gid")
        for p in ["init", "usr/lib/libx.so.1", "usr/lib/libx.so", "lib/firmware/fw.bin", "lib/modules/6.0.0-test/kernel/fs/a/a.ko",
                  "lib/modules/6.0.0-test/kernel/lib/c-dash.ko", "lib/modules/6.0.0-test/modules.dep"] {
            #expect(list.contains(" " + p + "\n"), "\(p) missing:\n\(list)")
        }
        #expect(!list.contains("unused.ko"))
        // Parents copied from the rootfs keep its metadata (0751 here).
        #expect(list.split(separator: "\n").contains { $0.hasPrefix("drwxr-x--x") && $0.hasSuffix(" usr/lib") }, "\(list)")
        let again = t.sub("again.xz")
        _ = try InitramfsBuilder.build(spec, rootfs: rootfs, kernelTree: kernelTree(), downloadCache: t.sub("dl"), output: again)
        #expect(try FileSystem.readFile(img) == FileSystem.readFile(again))
        var bad = spec
        bad.firmware = ["fw.bin", "missing.bin"]
        #expect { try InitramfsBuilder.build(bad, rootfs: rootfs, kernelTree: kernelTree(), downloadCache: t.sub("dl"), output: t.sub("bad")) } throws: {
            "\($0)".contains("firmware missing.bin: not found")
        }
        #expect(!FileSystem.exists(t.sub("bad")))
    }

    /// The generated /init lists the resolved modules in load order; cpio (the oracle) sees
    /// /init executable and /dev/console as character device 5,1.
    @Test func generatedInitAndConsoleNode() throws {
        guard TestEnv.oracle("cpio", package: "cpio") != nil else { return }
        let t = try TempDir("initramfs-init")
        var rootfs = FSTree()
        try rootfs.insert("/bin/busybox", .file(.bytes([1, 2, 3]), permissions: 0o755), createParents: true)
        let spec = InitramfsSpec(fromRootfs: ["/bin/busybox"], modules: ["fs-a"], compression: .xz, sourceDateEpoch: 1_700_000_000,
                                 generatedInit: .init(rootFSType: "erofs"))
        let img = t.sub("initrd.xz")
        _ = try InitramfsBuilder.build(spec, rootfs: rootfs, kernelTree: kernelTree(), downloadCache: t.sub("dl"), output: img)
        let list = try sh("xz -dc \(q(img)) | cpio -itv --quiet --numeric-uid-gid")
        let lines = list.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("-rwxr-xr-x") && $0.hasSuffix(" init") }, "\(list)")
        #expect(lines.contains { $0.hasPrefix("crw-------") && $0.contains(" 5,") && $0.hasSuffix(" dev/console") }, "\(list)")
        let script = try sh("cd \(q(t.path)) && xz -dc \(q(img)) | cpio -i --quiet --to-stdout init")
        #expect(script == (try InitramfsInit.script(modules: ["kernel/lib/c-dash.ko", "kernel/lib/b.ko.xz", "kernel/fs/a/a.ko"],
                                                    kernelVersion: "6.0.0-test", options: .init(rootFSType: "erofs"))))
        // No busybox, no generated init: a clear error instead of an unbootable initramfs.
        var noBusybox = spec
        noBusybox.fromRootfs = []
        #expect { try InitramfsBuilder.build(noBusybox, rootfs: rootfs, kernelTree: kernelTree(), downloadCache: t.sub("dl"), output: t.sub("bad")) } throws: {
            "\($0)".contains("/bin/busybox")
        }
    }
}
