import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport

@Suite struct AssemblerTests {
    /// A base tarball, a base dir, two overlays, a device table, overrides, actions and
    /// generated files, checked entry by entry.
    func fixture(_ t: TempDir) throws -> RootfsSpec {
        try sh("""
            set -e
            cd \(q(t.path))
            mkdir -p basetar/bin basetar/etc/init.d basetar/usr/share/doc/x basetar/dev
            printf busybox > basetar/bin/busybox; chmod 4755 basetar/bin/busybox
            ln -s busybox basetar/bin/sh
            printf 'debian' > basetar/etc/os-release
            printf rc > basetar/etc/init.d/rcS; printf s > basetar/etc/init.d/S01x
            printf doc > basetar/usr/share/doc/x/README
            tar --owner=0 --group=0 --numeric-owner -C basetar -czf base.tar.gz .
            mkdir -p basedir/etc && printf 'hostname-base' > basedir/etc/hostname
            mkdir -p common/etc board/etc board/usr/bin
            printf 'common' > common/etc/motd
            printf 'board' > board/etc/motd
            ln -s /etc/passwd board/usr/bin/escape-link
            printf '#!/bin/sh\\n' > board/usr/bin/tool; chmod 755 board/usr/bin/tool
            cat > devices.txt <<'X'
            # name type mode uid gid major minor start inc count
            /dev/console c 600 0 0 5 1 - - -
            /dev/ttyS c 660 0 5 4 64 0 1 4
            /dev/mmcblk0p b 660 0 6 179 1 1 1 3
            /dev/initctl p 600 0 0 - - - - -
            /var/log d 2750 0 4 - - - - -
            /bin/busybox f 4711 0 0 - - - - -
            /usr/share r 700 1 1 - - - - -
            X
            printf 'Welcome to ${BOARD} ${VERSION}, cost $$5\\n' > motd.tmpl
            setfattr -n user.host-label -v x board/usr/bin/tool
            """)
        return RootfsSpec(
            base: [.archive(t.sub("base.tar.gz")), .directory(t.sub("basedir"))],
            overlays: [t.sub("common"), t.sub("board")],
            deviceTables: [t.sub("devices.txt")],
            overrides: [.init(path: "/usr/bin/tool", mode: 0o750, gid: 10)],
            actions: [
                .remove("/etc/init.d/S*"),
                .remove("/usr/share/doc"),
                .mkdir(path: "/data/state", mode: 0o700, uid: 0, gid: 0),
                .symlink(path: "/etc/mtab", target: "../proc/self/mounts"),
                .writeFile(path: "/etc/motd", template: .file(t.sub("motd.tmpl")), mode: 0o644, uid: 0, gid: 0),
            ],
            variables: ["BOARD": "rpi4", "VERSION": "12.1"],
            osRelease: .init(name: "Home OS", id: "homeos", version: "12.1 (dev)", versionID: "12.1", prettyName: "Home OS 12.1",
                             cpeName: "cpe:2.3:o:home:os:12.1", variant: "Dev", variantID: "dev", buildID: "b42"),
            machineInfo: .init(chassis: "embedded", deployment: "production"),
            sourceDateEpoch: 1_700_000_000
        )
    }

    @Test func assemblesEverything() throws {
        let t = try TempDir("rootfs-asm")
        let spec = try fixture(t)
        let tree = try RootfsAssembler.assemble(spec, downloadCache: t.sub("dl"))
        func node(_ p: String) throws -> Inode {
            guard let id = tree.lookup(p) else { throw MessageError("\(p) missing") }
            return tree[id]
        }
        func text(_ p: String) throws -> String { String(decoding: try contentBytes(tree, p), as: UTF8.self) }
        #expect(try text("/etc/hostname") == "hostname-base")
        #expect(try text("/etc/motd") == "Welcome to rpi4 12.1, cost $5\n")
        #expect(try node("/usr/bin/escape-link").symlinkTarget == "/etc/passwd")
        #expect(try node("/usr/bin/tool").permissions == 0o750 && node("/usr/bin/tool").gid == 10)
        #expect(try node("/usr/bin/tool").xattrs.isEmpty, "host xattrs are not read by default")
        #expect(try node("/bin/busybox").permissions == 0o4711)
        #expect(try node("/dev/console").kind == .charDevice && node("/dev/console").rdev == DeviceNumber(major: 5, minor: 1))
        for i in 0..<4 { #expect(try node("/dev/ttyS\(i)").rdev == DeviceNumber(major: 4, minor: UInt32(64 + i)) && node("/dev/ttyS\(i)").gid == 5) }
        #expect(tree.lookup("/dev/ttyS4") == nil)
        for i in 1...3 { #expect(try node("/dev/mmcblk0p\(i)").rdev == DeviceNumber(major: 179, minor: UInt32(i))) }
        #expect(try node("/dev/initctl").kind == .fifo)
        #expect(try node("/var/log").permissions == 0o2750 && node("/var/log").gid == 4)
        #expect(try node("/usr/share").uid == 1)
        #expect(tree.lookup("/usr/share/doc") == nil)
        #expect(tree.lookup("/etc/init.d/S01x") == nil && tree.lookup("/etc/init.d/rcS") != nil)
        #expect(try node("/data/state").permissions == 0o700)
        #expect(try node("/etc/mtab").symlinkTarget == "../proc/self/mounts")
        #expect(try node("/etc/os-release").symlinkTarget == "../usr/lib/os-release")
        #expect(try text("/usr/lib/os-release") == """
            NAME="Home OS"
            VERSION="12.1 (dev)"
            ID="homeos"
            VERSION_ID="12.1"
            PRETTY_NAME="Home OS 12.1"
            CPE_NAME="cpe:2.3:o:home:os:12.1"
            VARIANT="Dev"
            VARIANT_ID="dev"
            BUILD_ID="b42"

            """)
        #expect(try text("/etc/machine-info") == "CHASSIS=\"embedded\"\nDEPLOYMENT=\"production\"\n")
        #expect(try text("/etc/timestamp") == "20231114221320\n")
        let stamp = try text("/etc/osbuild-build-id")
        #expect(stamp.count == 65)
        // Every mtime is clamped to SOURCE_DATE_EPOCH.
        tree.walk { p, _, n in #expect(n.mtime <= Timestamp(seconds: 1_700_000_000), "\(p)") }

        // The os-release file parses as shell, as systemd/busybox consumers expect.
        let parsed = try sh(". /dev/stdin <<'X'\n\(try text("/usr/lib/os-release"))X\necho \"$VERSION|$PRETTY_NAME\"")
        #expect(parsed == "12.1 (dev)|Home OS 12.1\n")

        // Rebuild: same stamp. Change one overlay byte: different stamp.
        let again = try RootfsAssembler.assemble(spec, downloadCache: t.sub("dl"))
        #expect(try String(decoding: contentBytes(again, "/etc/osbuild-build-id"), as: UTF8.self) == stamp)
        #expect(try TreeDigest.compute(again) == TreeDigest.compute(tree))
        var withX = spec
        withX.hostXAttrs = true
        let xtree = try RootfsAssembler.assemble(withX, downloadCache: t.sub("dl"))
        #expect(xtree[xtree.lookup("/usr/bin/tool")!].xattrs.map(\.name) == ["user.host-label"])
        try FileSystem.writeAtomically(t.sub("board/usr/bin/tool"), "#!/bin/sh\n#\n", mode: 0o755)
        let changed = try RootfsAssembler.assemble(spec, downloadCache: t.sub("dl"))
        #expect(try String(decoding: contentBytes(changed, "/etc/osbuild-build-id"), as: UTF8.self) != stamp)
        var otherVars = spec
        otherVars.variables["EXTRA"] = "1"
        let changedVars = try RootfsAssembler.assemble(otherVars, downloadCache: t.sub("dl"))
        #expect(try String(decoding: contentBytes(changedVars, "/etc/osbuild-build-id"), as: UTF8.self) != String(decoding: contentBytes(changed, "/etc/osbuild-build-id"), as: UTF8.self))
    }

    @Test func deviceTableErrorsNameFileAndLine() throws {
        let text = """
            /dev/ok c 600 0 0 5 1 - - -
            # comment

            /dev/bad x 600 0 0 - - - - -
            /dev/short c 600 0 0
            /dev/mode c 999 0 0 1 1 - - -
            dev/rel d 755 0 0 - - - - -
            /dev/nomajor c 600 0 0 - - - - -
            """
        do {
            _ = try DeviceTable.parse(text, file: "board/devices.txt")
            Issue.record("bad table accepted")
        } catch let e as ErrorList {
            let lines = e.description.split(separator: "\n")
            #expect(lines.count == 5)
            #expect(lines[0].hasPrefix("board/devices.txt:4: type 'x'"))
            #expect(lines[1].hasPrefix("board/devices.txt:5: expected 10 fields"))
            #expect(lines[2].hasPrefix("board/devices.txt:6: mode '999'"))
            #expect(lines[3].hasPrefix("board/devices.txt:7: name 'dev/rel'"))
            #expect(lines[4].hasPrefix("board/devices.txt:8: major '-'"))
        }
        var tree = FSTree()
        let missing = try DeviceTable.parse("/etc/shadow f 600 0 0 - - - - -\n", file: "t.txt")
        #expect { try missing.apply(to: &tree, mtime: .zero) } throws: { "\($0)".hasPrefix("t.txt:1: /etc/shadow does not exist") }
    }

    @Test func templateAndOverrideErrors() throws {
        #expect { try Template.expand("a\n${NOPE}", variables: ["A": "1"], origin: "motd.tmpl") } throws: {
            "\($0)" == "motd.tmpl:2: unknown variable ${NOPE} (known: A)"
        }
        let t = try TempDir("rootfs-err")
        var spec = RootfsSpec(overrides: [.init(path: "/etc/missing", mode: 0o600, origin: SourceLocation(file: "board.toml", line: 12, key: "rootfs.override"))])
        spec.writeTimestamp = false
        #expect { try RootfsAssembler.assemble(spec, downloadCache: t.sub("dl")) } throws: {
            "\($0)" == "board.toml:12 (rootfs.override): override for /etc/missing: no such entry in the rootfs"
        }
        spec = RootfsSpec(overlays: [t.sub("nope")])
        #expect { try RootfsAssembler.assemble(spec, downloadCache: t.sub("dl")) } throws: { "\($0)".contains("overlay \(t.sub("nope")) does not exist") }
        spec = RootfsSpec(osRelease: .init(name: "X", id: "Bad Id"))
        #expect { try RootfsAssembler.assemble(spec, downloadCache: t.sub("dl")) } throws: { "\($0)".contains("ID=\"Bad Id\"") }
        spec = RootfsSpec(machineInfo: .init(chassis: "a\nb"))
        #expect { try RootfsAssembler.assemble(spec, downloadCache: t.sub("dl")) } throws: { "\($0)".contains("machine-info CHASSIS=\"a\\nb\": control characters") }
    }

    @Test func globRemoval() throws {
        var tree = FSTree()
        for p in ["/etc/init.d/S01a", "/etc/init.d/S02b", "/etc/init.d/rcS", "/usr/lib/x.a", "/usr/lib/sub/y.a"] {
            try tree.insert(p, .file(.empty), createParents: true)
        }
        #expect(RootfsAssembler.matches("/etc/init.d/S*", in: tree) == ["/etc/init.d/S01a", "/etc/init.d/S02b"])
        #expect(RootfsAssembler.matches("usr/lib/*.a", in: tree) == ["/usr/lib/x.a"])
        #expect(RootfsAssembler.matches("/usr/lib/*/*.a", in: tree) == ["/usr/lib/sub/y.a"])
        #expect(RootfsAssembler.matches("/nothing", in: tree).isEmpty)
    }
}
