import Basics
import Glibc
import Boards
import Testing
import TestSupport

/// A throwaway project with board files.
struct BoardProject {
    let tmp: TempDir
    init(_ files: [String: String]) throws {
        tmp = try TempDir("boards")
        for (name, text) in files { try tmp.write("boards/\(name).toml", text) }
    }
    var loader: BoardLoader { BoardLoader(projectRoot: tmp.path) }

    /// The error lines of loading `id` (empty if it loads).
    func errors(_ id: String) -> [String] {
        do {
            _ = try loader.load(id)
            return []
        } catch let e as ErrorList {
            return e.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }
}

let minimal = """
    name = "Test"
    arch = "x86_64"
    [os]
    version = "1.0"
    """

@Suite struct BoardFileTests {
    @Test func inheritanceChainAndAppendLists() throws {
        let p = try BoardProject([
            "common": """
                abstract = true
                name = "common"
                [os]
                id = "myos"
                version = "2.3"
                [kernel]
                fragments = ["boards/fragments/base.config"]
                """,
            "raspberrypi": """
                inherit = "common"
                abstract = true
                name = "pi family"
                arch = "aarch64"
                [kernel]
                fragments = ["boards/fragments/pi.config"]
                defconfig = "defconfig"
                """,
            "rpi4-64": """
                inherit = "raspberrypi"
                name = "Pi 4"
                [kernel]
                fragments = ["boards/fragments/pi4.config"]
                [rootfs]
                fs = "squashfs"
                """,
        ])
        let b = try p.loader.load("rpi4-64")
        #expect(b.chain == ["rpi4-64", "raspberrypi", "common"])
        #expect(b.arch == "aarch64")
        #expect(b.osID == "myos")
        #expect(b.list("kernel.fragments") == ["boards/fragments/base.config", "boards/fragments/pi.config", "boards/fragments/pi4.config"])
        #expect(b.string("rootfs.fs") == "squashfs")
        #expect(b.string("rootfs.compression") == "lz4hc")  // default
        #expect(!b.isAbstract)
        #expect(b.artifactName("img") == "myos_rpi4-64-2.3.img")
        #expect(b.compatible == "myos-rpi4-64")
        #expect(b.values["arch"]?.origin?.file == "boards/raspberrypi.toml")
        #expect(b.values["arch"]?.origin?.line == 4)
        let all = try p.loader.loadAll()
        #expect(all.map(\.id) == ["rpi4-64"])
    }

    @Test func unknownKeyWithSuggestion() throws {
        let p = try BoardProject(["b": minimal + "\n[rootfs]\ncompresion = \"xz\"\n"])
        #expect(p.errors("b") == ["boards/b.toml:6 (rootfs.compresion): unknown key 'rootfs.compresion'; did you mean 'rootfs.compression'?"])
    }

    @Test func unknownTopLevelAndRecordKeys() throws {
        let p = try BoardProject(["b": "arhc = 1\n" + minimal + "\n[[disk.partition]]\nname = \"a\"\nsize = \"1M\"\nsiez = 3\n"])
        let e = p.errors("b")
        #expect(e.count == 2)
        #expect(e.contains("boards/b.toml:1 (arhc): unknown key 'arhc'; did you mean 'arch'?"))
        #expect(e.contains("boards/b.toml:9 (disk.partition[0].siez): unknown key 'disk.partition[0].siez'; did you mean 'disk.partition[0].size'?"))
    }

    @Test func wrongTypesAndMissingRequiredAllAtOnce() throws {
        let p = try BoardProject(["b": """
            name = 5
            [os]
            deployment = "prod"
            [disk]
            size = "12 parsecs"
            [[disk.partition]]
            size = "1M"
            bootable = "yes"
            [rootfs]
            base = ["apt:x", 3]
            """])
        let e = p.errors("b")
        #expect(e.contains("boards/b.toml:1 (name): 'name' must be a string, found an integer"))
        #expect(e.contains("boards/b.toml:3 (os.deployment): 'os.deployment' = \"prod\" is not one of: development, production; did you mean 'production'?"))
        #expect(e.contains("boards/b.toml:5 (disk.size): 'disk.size' = \"12 parsecs\" is not a size (use bytes or a unit: 512s, 64k, 16M, 2G)"))
        #expect(e.contains("boards/b.toml:8 (disk.partition[0].bootable): 'disk.partition[0].bootable' must be a boolean (true or false), found a string"))
        #expect(e.contains("boards/b.toml:6 (disk.partition[0]): disk.partition[0] is missing required key 'name': Partition name (GPT name / genimage partition name); must be unique."))
        #expect(e.contains("boards/b.toml:10 (rootfs.base[1]): 'rootfs.base' item 1 must be a string, found an integer"))
        #expect(e.contains { $0.hasPrefix("boards/b.toml (arch): missing required key 'arch'") })
        #expect(e.contains { $0.hasPrefix("boards/b.toml (os.version): missing required key 'os.version'") })
        #expect(e.count == 8)
    }

    @Test func missingRequiredNamesTheChain() throws {
        let p = try BoardProject(["base": "abstract = true\nname = \"base\"\n", "child": "inherit = \"base\"\nname = \"c\"\narch = \"arm\"\n"])
        #expect(p.errors("child") == ["boards/child.toml (os.version): missing required key 'os.version' (not set in child or base): major.minor with an optional suffix (-rc1, .dev0) or balena-style +revN."])
    }

    @Test func inheritanceErrors() throws {
        let p = try BoardProject([
            "a": "inherit = \"b\"\n" + minimal,
            "b": "inherit = \"a\"\n" + minimal,
            "c": "inherit = \"commn\"\n" + minimal,
            "common": minimal,
        ])
        #expect(p.errors("a") == ["boards/b.toml:1 (inherit): inheritance cycle: a -> b -> a"])
        #expect(p.errors("c") == ["boards/c.toml:1 (inherit): inherits from unknown board 'commn'; did you mean 'common'?"])
        #expect(p.errors("nope").first?.hasPrefix("unknown board 'nope' (no boards/nope.toml)") == true)
    }

    @Test func tomlSyntaxErrorsNameLineAndToken() throws {
        let p = try BoardProject([
            "s1": "name = \"x\"\narch = x86_64\n",
            "s2": "name = \"x\"\nname = \"y\"\n",
            "s3": "name = \"unterminated\n",
            "s4": "[os\nversion = \"1.0\"\n",
        ])
        #expect(p.errors("s1") == ["boards/s1.toml:2:8: invalid value 'x86_64' (strings must be quoted)"])
        #expect(p.errors("s2") == ["boards/s2.toml:2: key 'name' is defined twice (first at line 1)"])
        #expect(p.errors("s3") == ["boards/s3.toml:1:21: unterminated string"])
        #expect(p.errors("s4") == ["boards/s4.toml:1:4: expected ']' to close table header"])
    }

    @Test func versionFormats() {
        for ok in ["1.0", "12.1", "12.1-rc1", "2.115.3+rev2", "16.0.dev20260101", "6.1"] { #expect(OSVersion.isValid(ok), "\(ok)") }
        for bad in ["1", "v1.0", "1.0+2", "1.0-", "a.b", "1.0 beta"] { #expect(!OSVersion.isValid(bad), "\(bad)") }
        let p = try? BoardProject(["b": minimal.replacingOccurrences(of: "\"1.0\"", with: "\"1\"")])
        #expect(p?.errors("b") == ["boards/b.toml:4 (os.version): os.version '1' is not major.minor with an optional suffix (e.g. 12.1, 12.1-rc1, 2.115.3+rev2)"])
    }

    @Test func duplicatePartitionNames() throws {
        let p = try BoardProject(["b": minimal + "\n[[disk.partition]]\nname = \"a\"\n[[disk.partition]]\nname = \"a\"\n"])
        #expect(p.errors("b") == ["boards/b.toml:7 (disk.partition[1].name): partition name 'a' is used twice (also disk.partition[0])"])
    }
}

@Suite struct TOMLTests {
    @Test func values() throws {
        let t = try TOMLParser.parse("""
            a = "x\\ty\\u00e9"   # comment
            b = 'C:\\raw'
            c = 0x1F
            d = 1_000
            e = -3.5
            f = [1, 2,
                 3,]  # trailing comma
            g = { x = 1, y.z = "q" }
            h = \"\"\"
            line1
            line2\"\"\"
            [t.u]
            v = true
            [[arr]]
            k = 1
            [[arr]]
            k = 2
            """, file: "t.toml")
        #expect(t["a"]?.value == .string("x\ty\u{e9}"))
        #expect(t["b"]?.value == .string("C:\\raw"))
        #expect(t["c"]?.value == .integer(31))
        #expect(t["d"]?.value == .integer(1000))
        #expect(t["e"]?.value == .float(-3.5))
        guard case .array(let f)? = t["f"]?.value else { Issue.record("f"); return }
        #expect(f.map(\.value) == [.integer(1), .integer(2), .integer(3)])
        guard case .table(let g)? = t["g"]?.value, case .table(let y)? = g["y"]?.value else { Issue.record("g"); return }
        #expect(y["z"]?.value == .string("q"))
        #expect(t["h"]?.value == .string("line1\nline2"))
        guard case .table(let tt)? = t["t"]?.value, case .table(let u)? = tt["u"]?.value else { Issue.record("t.u"); return }
        #expect(u["v"]?.value == .bool(true))
        #expect(u["v"]?.location.line == 13)
        guard case .array(let arr)? = t["arr"]?.value else { Issue.record("arr"); return }
        #expect(arr.count == 2)
    }

    @Test func rejectsDatesAndBadNumbers() {
        #expect(throws: TOMLError.self) { try TOMLParser.parse("d = 1979-05-27\n", file: "x") }
        #expect(throws: TOMLError.self) { try TOMLParser.parse("n = 012\n", file: "x") }
        #expect(throws: TOMLError.self) { try TOMLParser.parse("n = 1__0\n", file: "x") }
        #expect(throws: TOMLError.self) { try TOMLParser.parse("[a]\n[a]\n", file: "x") }
    }
}

@Suite struct ShippedBoardsTests {
    @Test func shippedBoardsLoadAndFollowNamingRules() throws {
        let loader = BoardLoader(projectRoot: TestEnv.repoRoot)
        let boards = try loader.loadAll()
        let ids = boards.map(\.id)
        for required in ["qemu-x86-64", "generic-x86-64", "generic-aarch64", "rpi4-64", "rpi5-64"] {
            #expect(ids.contains(required))
        }
        let rpi4 = try loader.load("rpi4-64")
        #expect(rpi4.chain == ["rpi4-64", "raspberrypi", "common"])
        #expect(rpi4.compatible == "osbuild-rpi4-64")
        #expect(rpi4.artifactName("raucb") == "osbuild_rpi4-64-1.0.raucb")
    }

    @Test func docsBoardsMarkdownIsCurrent() throws {
        let path = TestEnv.repoRoot + "/docs/boards.md"
        let current = try FileSystem.readText(path)
        #expect(current == BoardPresenter.markdownReference(), "docs/boards.md is stale: run `osbuild board keys --markdown > docs/boards.md`")
    }
}

@Suite struct CanonicalValueTests {
    /// Fingerprints hash board values as text: tables must render in a fixed order.
    @Test func tablesRenderInSortedKeyOrder() {
        let a = BoardValue.records([["name": .string("boot"), "size": .integer(5), "bootable": .bool(true)]])
        #expect(a.canonical == "[{\"bootable\"=true,\"name\"=\"boot\",\"size\"=5}]")
        let m = BoardValue.map(["z": "1", "a": "2", "m": "3"])
        #expect(m.canonical == "{\"a\"=\"2\",\"m\"=\"3\",\"z\"=\"1\"}")
    }
}

/// `bootloader.kind = "custom"` and `bootloader.backend` go together; the backend must be
/// a regular file. Every error names the board file, line and key.
@Suite struct CustomBootloaderValidationTests {
    static func board(_ bootloader: String) -> String {
        "name = \"C\"\narch = \"aarch64\"\n[os]\nversion = \"1.0\"\n[bootloader]\n" + bootloader
    }

    @Test func customNeedsABackendAndLoadsWithOne() throws {
        let p = try BoardProject(["c": Self.board("kind = \"custom\"\n"),
                                  "ok": Self.board("kind = \"custom\"\nbackend = \"boards/backend.sh\"\n")])
        try p.tmp.write("boards/backend.sh", "#!/bin/sh\n", mode: 0o755)
        #expect(p.errors("c") == ["boards/c.toml (bootloader.backend): bootloader.kind = \"custom\" needs 'bootloader.backend': the RAUC custom backend executable "
                                  + "(get-primary, set-primary, get-state, set-state) that osbuild installs as /usr/lib/osbuild/custom-backend and names in /etc/rauc/system.conf"])
        let ok = try p.loader.load("ok")
        #expect(ok.resolvePath(try #require(ok.string("bootloader.backend"))) == p.loader.projectRoot + "/boards/backend.sh")
    }

    @Test func inheritedCustomKindIsNamedInTheError() throws {
        let p = try BoardProject(["base": "abstract = true\nname = \"B\"\n[bootloader]\nkind = \"custom\"\n",
                                  "child": "inherit = \"base\"\nname = \"C\"\narch = \"aarch64\"\n[os]\nversion = \"1.0\"\n"])
        // The abstract parent is only a parent: no backend needed there.
        #expect(p.errors("base").isEmpty)
        let errs = p.errors("child")
        #expect(errs.count == 1 && errs[0].hasPrefix("boards/child.toml (bootloader.backend): bootloader.kind = \"custom\" needs 'bootloader.backend' (kind inherited from boards/base.toml:4): "), "\(errs)")
    }

    @Test func backendWithAnotherKindIsRefused() throws {
        let p = try BoardProject(["u": Self.board("kind = \"uboot\"\nbackend = \"boards/backend.sh\"\n"),
                                  "n": Self.board("backend = \"boards/backend.sh\"\n"),
                                  "bad": Self.board("kind = \"custum\"\nbackend = \"boards/backend.sh\"\n")])
        try p.tmp.write("boards/backend.sh", "#!/bin/sh\n", mode: 0o755)
        #expect(p.errors("u") == ["boards/u.toml:7 (bootloader.backend): 'bootloader.backend' applies only to bootloader.kind = \"custom\", and this board's kind is \"uboot\": remove it or set kind = \"custom\""])
        #expect(p.errors("n") == ["boards/n.toml:6 (bootloader.backend): 'bootloader.backend' applies only to bootloader.kind = \"custom\", and this board's kind is \"none\": remove it or set kind = \"custom\""])
        // A misspelt kind is reported once, not again as "backend with kind none".
        let bad = p.errors("bad")
        #expect(bad.count == 1 && bad[0].hasPrefix("boards/bad.toml:6 (bootloader.kind): 'bootloader.kind' = \"custum\" is not one of"), "\(bad)")
    }

    @Test func backendMustBeARegularFile() throws {
        let p = try BoardProject(["m": Self.board("kind = \"custom\"\nbackend = \"boards/missing.sh\"\n"),
                                  "d": Self.board("kind = \"custom\"\nbackend = \"boards\"\n"),
                                  "l": Self.board("kind = \"custom\"\nbackend = \"boards/link.sh\"\n")])
        try p.tmp.write("boards/backend.sh", "#!/bin/sh\n", mode: 0o755)
        #expect(symlink("backend.sh", p.tmp.sub("boards/link.sh")) == 0)
        let root = p.loader.projectRoot
        #expect(p.errors("m") == ["boards/m.toml:7 (bootloader.backend): bootloader.backend \(root)/boards/missing.sh does not exist"])
        #expect(p.errors("d") == ["boards/d.toml:7 (bootloader.backend): bootloader.backend \(root)/boards is a directory, not a regular file"])
        #expect(p.errors("l") == ["boards/l.toml:7 (bootloader.backend): bootloader.backend \(root)/boards/link.sh is a symbolic link; "
                                  + "name the file itself (its content is what the rootfs stage installs and fingerprints)"])
    }
}
