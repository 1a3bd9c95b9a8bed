import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport

/// The big integration test: Debian's real kernel package, fetched once into the download
/// cache (OSBUILD_DL_CACHE, default /var/cache/osbuild/dl), read with our .deb reader,
/// resolved with our module resolver, compared with kmod's modprobe.
@Suite(.serialized) struct KernelModulesTests {
    static var cacheDir: String {
        ProcessInfo.processInfo.environment["OSBUILD_DL_CACHE"] ?? "/var/cache/osbuild/dl"
    }

    @Test func debianKernelClosureMatchesModprobe() throws {
        guard TestEnv.oracle("modprobe", package: "kmod") != nil, TestEnv.oracle("depmod", package: "kmod") != nil,
              TestEnv.oracle("apt-get", package: "apt") != nil else { return }
        // linux-image-amd64 is a metapackage; the modules are in the versioned package it depends on.
        let depends = try sh("apt-cache depends linux-image-amd64")
        guard let pkg = depends.split(separator: "\n").compactMap({ line -> String? in
            let f = line.split(separator: " ")
            return f.count == 2 && f[0] == "Depends:" && f[1].hasPrefix("linux-image-") ? String(f[1]) : nil
        }).first else {
            Issue.record("apt-cache knows no linux-image-amd64 dependency (apt-get update?)")
            return
        }
        let deb = try AptFetcher(cacheDirectory: Self.cacheDir).fetch(pkg)

        let t = try TempDir("kmod")
        var pkgTree = FSTree()
        let clock = ContinuousClock()
        let started = clock.now
        let summary = try ArchiveImporter.importArchive(deb, into: &pkgTree, blobs: BlobStore(directory: t.sub("blobs")))
        print("import \(FileSystem.basename(deb)): \(summary.members) members in \(clock.now - started)")
        guard let modulesRoot = pkgTree.lookup("/lib/modules"), let version = pkgTree.children(of: modulesRoot).first?.name else {
            Issue.record("\(deb) has no /lib/modules/VERSION"); return
        }
        // The package ships no modules.dep (its postinst runs depmod): generate the index with
        // kmod's depmod on an exported copy, as a kernel build's modules_install would.
        let root = t.sub("root")
        try TreeExporter.export(pkgTree, subtree: "/lib/modules", to: root + "/lib/modules", linkHostFiles: true)
        try sh("depmod -b \(q(root)) \(q(version))")
        var modTree = FSTree()
        try modTree.importHostDirectory(root + "/lib/modules", at: "/lib/modules")

        let km = try KernelModules(tree: modTree)
        #expect(km.version == version)
        let names = ["virtio_blk", "squashfs", "erofs", "ext4", "xhci_pci", "hid_generic"]
        let res = try km.resolve(names)

        let oracle = try sh("modprobe -a --show-depends -d \(q(root)) -S \(q(version)) \(names.joined(separator: " "))")
        var oracleModules = Set<String>(), oracleBuiltin = Set<String>()
        let prefix = root + "/lib/modules/\(version)/"
        for line in oracle.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.first == "insmod", f.count >= 2 {
                var p = String(f[1])
                if p.hasPrefix(prefix) { p.removeFirst(prefix.count) }
                if p.hasPrefix("/lib/modules/\(version)/") { p.removeFirst("/lib/modules/\(version)/".count) }
                oracleModules.insert(p)
            } else if f.first == "builtin", f.count == 2 {
                oracleBuiltin.insert(String(f[1]))
            }
        }
        #expect(oracleModules.count > 6, "\(oracle)")
        #expect(Set(res.modules) == oracleModules, "ours-only: \(Set(res.modules).subtracting(oracleModules)) modprobe-only: \(oracleModules.subtracting(res.modules))")
        #expect(Set(res.builtin) == oracleBuiltin)
        // Load order: every module after all of its dependencies.
        for (i, m) in res.modules.enumerated() {
            for d in km.deps[m] ?? [] { #expect((res.modules.firstIndex(of: d) ?? Int.max) < i, "\(d) before \(m)") }
        }

        // Dash spelling and aliases resolve too; unknown names are all reported together.
        #expect(try Set(km.resolve(["virtio-blk", "hid-generic"]).modules) == Set(km.resolve(["virtio_blk", "hid_generic"]).modules))
        #expect(try km.resolve(["fs-ext4"]).modules.contains { $0.hasSuffix("/ext4.ko") || $0.contains("/ext4.ko.") })
        #expect { try km.resolve(["ext4", "no_such_mod", "also-missing"]) } throws: {
            ($0 as? KernelModules.Unresolved)?.names == ["no_such_mod", "also-missing"]
        }

        // Install the subset; kmod's depmod over exactly those files must produce the same
        // modules.dep we wrote, and modprobe on the subset must agree again.
        var initrd = FSTree()
        try km.install(res, from: modTree, into: &initrd, mtime: Timestamp(seconds: 1_700_000_000))
        let ours = try String(decoding: contentBytes(initrd, km.directory + "/modules.dep"), as: UTF8.self)
        let sub = t.sub("subset")
        try TreeExporter.export(initrd, to: sub, linkHostFiles: true)
        try sh("depmod -b \(q(sub)) \(q(version))")
        let theirs = try String(decoding: FileSystem.readFile(sub + "/lib/modules/\(version)/modules.dep"), as: UTF8.self)
        #expect(Set(ours.split(separator: "\n")) == Set(theirs.split(separator: "\n")))
        let again = try sh("modprobe -a --show-depends -d \(q(sub)) -S \(q(version)) \(names.joined(separator: " "))")
        let againModules = Set(again.split(separator: "\n").filter { $0.hasPrefix("insmod ") }.map { line -> String in
            let p = String(line.split(separator: " ")[1])
            return String(p.dropFirst((sub + "/lib/modules/\(version)/").count))
        })
        #expect(againModules == oracleModules)

        // And into an initramfs that cpio lists.
        let img = t.sub("initrd.img")
        try InitramfsWriter.write(initrd, to: img, options: .init(compression: .zstd, level: 3))
        let listed = try sh("zstd -dc \(q(img)) | cpio -it --quiet")
        for m in res.modules { #expect(listed.contains("lib/modules/\(version)/\(m)")) }
    }
}

@Suite struct FirmwareTests {
    @Test func explicitListWithSymlinksAndMissing() throws {
        var src = FSTree()
        try src.insert("/lib/firmware/vendor/a.bin", .file(.bytes([1, 2])), createParents: true)
        try src.insert("/lib/firmware/vendor/b.bin.xz", .file(.bytes([3])), createParents: true)
        try src.insert("/lib/firmware/alias.bin", .symlink("vendor/a.bin"), createParents: true)
        try src.insert("/lib/firmware/loop", .symlink("loop"), createParents: true)
        var dst = FSTree()
        try FirmwareInstaller.install(["vendor/a.bin", "vendor/b.bin", "alias.bin"], from: src, into: &dst, mtime: .zero)
        #expect(try contentBytes(dst, "/lib/firmware/alias.bin") == [1, 2])
        #expect(try contentBytes(dst, "/lib/firmware/vendor/b.bin.xz") == [3])
        do {
            try FirmwareInstaller.install(["vendor/a.bin", "nope.bin", "loop", "../etc/passwd"], from: src, into: &dst, mtime: .zero)
            Issue.record("missing firmware accepted")
        } catch let e as FirmwareInstaller.Missing {
            #expect(e.names == ["nope.bin", "loop", "../etc/passwd"])
            #expect(e.description.split(separator: "\n").count == 3)
        }
    }
}
