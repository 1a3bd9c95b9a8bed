import Basics
import Foundation
import Kconfig
import Testing
import TestSupport

/// Small generated Kconfig trees: verify reasons, parse errors, macros, and the kernel's
/// compiled `conf` as the oracle for tricky semantics.
struct SyntheticTests {
    static let verifyTree = """
        mainmenu "Test $(ARCHNAME) config"
        config MODULES
        \tbool "modules"
        \tmodules
        \tdefault y
        config NET
        \tbool "net"
        config WIFI
        \ttristate "wifi"
        \tdepends on NET && !BROKEN
        config BROKEN
        \tbool
        config CRYPTO
        \ttristate "crypto"
        config TLS
        \tbool "tls"
        \tselect CRYPTO
        \tdefault y
        config NR
        \tint "number"
        \trange 1 64
        \tdefault 8
        config BASE
        \thex "base"
        \trange 0x1000 0xffff
        \tdefault 0x2000
        config NAME
        \tstring "name"
        \tdefault "abc"
        config HIDDEN_STR
        \tstring
        \tdefault "fixed"

        """

    func setup(_ tmp: TempDir, fragment: String) throws -> (KconfigTree, String, String) {
        let top = try KTest.tree(tmp, ["Kconfig": Self.verifyTree])
        let tree = try KconfigTree.parse(file: top, environment: ["ARCHNAME": "toy"])
        let frag = try tmp.write("frag.config", fragment)
        let (text, _) = tree.resolve(ConfigText.assignments(fragment, file: frag))
        let cfg = try tmp.write(".config", text)
        return (tree, frag, cfg)
    }

    @Test func verifyReasons() throws {
        let tmp = try TempDir("kconfig-verify")
        let fragment = """
            CONFIG_MISSING=y
            CONFIG_WIFI=y
            # CONFIG_CRYPTO is not set
            CONFIG_NR=100
            CONFIG_BASE=0x10
            CONFIG_HIDDEN_STR="other"
            CONFIG_NAME="mine"
            CONFIG_NET=n

            """
        let (tree, frag, cfg) = try setup(tmp, fragment: fragment)
        #expect(tree.mainMenuTitle == "Test toy config")
        let ms = try KconfigVerify.run(config: cfg, fragments: [frag], tree: tree)
        let by = Dictionary(uniqueKeysWithValues: ms.map { ($0.symbol, $0) })
        #expect(Set(by.keys) == ["MISSING", "WIFI", "CRYPTO", "NR", "BASE", "HIDDEN_STR"])
        #expect(by["MISSING"]?.reason?.hasPrefix("not found") == true)
        #expect(by["MISSING"]?.requested.origin == ConfigOrigin(file: frag, line: 1))
        #expect(by["WIFI"]?.reason == "unmet dependency: depends on NET[=n] && !BROKEN[=n]")
        #expect(by["CRYPTO"]?.actual == "y")
        #expect(by["CRYPTO"]?.reason?.contains("selected by TLS[=y]") == true, "\(by["CRYPTO"]?.reason ?? "")")
        #expect(by["NR"]?.actual == "8")
        #expect(by["NR"]?.reason == "100 is outside the range 1..64")
        #expect(by["BASE"]?.reason == "0x10 is outside the range 0x1000..0xffff")
        #expect(by["BASE"]?.actual == "0x2000")
        #expect(by["HIDDEN_STR"]?.actual == "\"fixed\"")
        #expect(by["HIDDEN_STR"]?.reason?.contains("no prompt") == true)
        // the honoured string and the n request are not reported
        #expect(by["NAME"] == nil && by["NET"] == nil)

        // without a tree: textual comparison only, no reasons
        let plain = try KconfigVerify.run(config: cfg, fragments: [frag], tree: nil)
        #expect(plain.allSatisfy { $0.reason == nil })
        #expect(Set(plain.map(\.symbol)) == ["MISSING", "WIFI", "CRYPTO", "NR", "BASE", "HIDDEN_STR"])
    }

    @Test func parseErrorsNameFileLineAndToken() throws {
        let tmp = try TempDir("kconfig-parse")
        try tmp.write("sub/Kconfig", "config A\n\tbool \"a\"\n\tdepends on (B\n")
        let top = try KTest.tree(tmp, ["Kconfig": "config B\n\tbool \"b\"\nsource \"sub/Kconfig\"\n"])
        do {
            _ = try KconfigTree.parse(file: top)
            Issue.record("no error")
        } catch let e as KconfigError {
            #expect(e.description.hasPrefix("sub/Kconfig:3: "), "\(e)")
            #expect(e.description.contains("end of line"), "\(e)")
            #expect(e.exitCode == 2)
        }
        let bad = try tmp.write("bad/Kconfig", "config X\n\tbool \"x\"\n\tfrobnicate 3\n")
        #expect(throws: KconfigError.self) { try KconfigTree.parse(file: bad) }
        do {
            _ = try KconfigTree.parse(file: bad)
        } catch {
            #expect("\(error)".contains("Kconfig:3") && "\(error)".contains("frobnicate"), "\(error)")
        }
        // the kernel refuses dependency loops; so do we
        let loop = try tmp.write("loop/Kconfig", "config P\n\tbool \"p\"\n\tdepends on Q\nconfig Q\n\tbool \"q\"\n\tdefault P\n")
        do {
            _ = try KconfigTree.parse(file: loop)
            Issue.record("no error for a dependency loop")
        } catch {
            #expect("\(error)".contains("recursive dependency") && "\(error)".contains("P -> Q -> P"), "\(error)")
        }
        let missing = try tmp.write("m/Kconfig", "source \"nope/Kconfig\"\n")
        do {
            _ = try KconfigTree.parse(file: missing)
            Issue.record("no error")
        } catch {
            #expect("\(error)".contains("Kconfig:1") && "\(error)".contains("nope/Kconfig"), "\(error)")
        }
    }

    @Test func macros() throws {
        let tmp = try TempDir("kconfig-macro")
        let top = try KTest.tree(tmp, [
            "Kconfig": """
                greeting := hello
                greet = $(greeting), $(1)!
                ok = $(shell,if $(1); then echo y; else echo n; fi)
                list = a
                list += b
                $(info,$(filename):$(lineno))
                config T
                \tdef_bool $(ok,true)
                config F
                \tdef_bool $(ok,false)
                config S
                \tstring
                \tdefault "$(greet,world) [$(list)] $(shell,printf 'x\\ny\\n\\n')"
                config E
                \tstring
                \tdefault "$(NOT_SET_ANYWHERE)-$(MYENV)"

                """
        ])
        let tree = try KconfigTree.parse(file: top, environment: ["MYENV": "env"])
        tree.resolve([])
        #expect(tree.value(of: "T") == "y")
        #expect(tree.value(of: "F") == "n")
        #expect(tree.value(of: "S") == "hello, world! [a b] x y")
        #expect(tree.value(of: "E") == "-env")
        #expect(tree.messages.contains("Kconfig:6"))
    }

    @Test func sourceVariants() throws {
        let tmp = try TempDir("kconfig-source")
        try tmp.write("d/sub/a.kconfig", "config FROM_A\n\tdef_bool y\n")
        try tmp.write("d/sub/b.kconfig", "config FROM_B\n\tdef_bool FROM_A\n")
        try tmp.write("d/Kconfig", "rsource \"sub/*.kconfig\"\norsource \"nothing/*.kconfig\"\n")
        let top = try KTest.tree(tmp, ["Kconfig": "source \"d/Kconfig\"\nosource \"missing/Kconfig\"\n"])
        let tree = try KconfigTree.parse(file: top)
        tree.resolve([])
        #expect(tree.value(of: "FROM_A") == "y")
        #expect(tree.value(of: "FROM_B") == "y")
        #expect(tree.files == ["Kconfig", "d/Kconfig", "d/sub/a.kconfig", "d/sub/b.kconfig"])
        // deterministic output
        #expect(tree.resolve([]).config == tree.resolve([]).config)
    }

    /// Tricky semantics checked against the kernel's compiled `conf --olddefconfig`.
    @Test func matchesKernelConf() throws {
        guard let ksrc = KTest.kernelSource() else { return }
        guard TestEnv.oracle("make", package: "make") != nil, TestEnv.oracle("flex", package: "flex") != nil,
            TestEnv.oracle("bison", package: "bison") != nil
        else { return }
        let tmp = try TempDir("kconfig-conf")
        _ = try Subprocess.run(["make", "-C", ksrc, "-s", "O=\(tmp.sub("o"))", "ARCH=x86_64", "allnoconfig"])
        let conf = tmp.sub("o/scripts/kconfig/conf")
        let top = try KTest.tree(tmp, [
            "Kconfig": """
                mainmenu "Semantics"
                config MODULES
                \tbool "mods"
                \tmodules
                \tdefault y
                config SHOW
                \tbool "show"
                menu "Drivers"
                \tvisible if SHOW
                config A
                \ttristate "a"
                \tdefault m
                config B
                \tbool "b"
                \tdepends on A
                \tselect C if A = m
                config C
                \ttristate "c"
                config B2
                \tbool "b2"
                \tdepends on A != n
                \tselect C2 if A = m
                \timply C3 if !(A = n)
                config C2
                \ttristate "c2"
                config C3
                \ttristate "c3"
                config D
                \ttristate "d"
                \timply E
                \tdefault A
                config E
                \ttristate "e"
                \tdepends on F
                config F
                \ttristate "f"
                \tdefault m
                endmenu
                choice
                \tprompt "mode"
                \tdefault M2
                config M1
                \tbool "m1"
                config M2
                \tbool "m2"
                \tdepends on A
                config M3
                \tbool "m3"
                endchoice
                choice
                \tprompt "optional tristate"
                \ttristate
                \toptional
                config T1
                \ttristate "t1"
                config T2
                \ttristate "t2"
                endchoice
                if A
                config UNDER_A
                \tint "under a"
                \trange 2 10 if B
                \trange 20 30
                \tdefault 5
                endif
                comment "hex below"
                \tdepends on B
                config H
                \thex "h"
                \tdefault 0x10
                config STR
                \tstring "s"
                \tdefault "q\\"uote\\\\"
                config LATE
                \tbool
                \tdefault y if M3 || UNDER_A > 4

                """
        ])
        let inputs = [
            "",
            "CONFIG_A=y\nCONFIG_B=y\nCONFIG_M3=y\nCONFIG_UNDER_A=7\nCONFIG_T2=m\nCONFIG_STR=\"x\\\\y\"\n",
            "CONFIG_A=m\nCONFIG_B=y\nCONFIG_D=y\nCONFIG_F=y\nCONFIG_UNDER_A=25\nCONFIG_H=0x1F\n# CONFIG_MODULES is not set\n",
            "CONFIG_A=m\nCONFIG_B=y\nCONFIG_D=m\nCONFIG_M2=y\nCONFIG_T1=y\nCONFIG_SHOW=y\nCONFIG_UNDER_A=1\n",
            "CONFIG_A=m\nCONFIG_B2=y\n",
        ]
        // Round trips: a consistent .config (nothing unsaved), and one naming an unknown symbol.
        var all = inputs
        for (i, input) in inputs.enumerated() {
            let cfg = try tmp.write("rt\(i).config", input)
            _ = try Subprocess.run(
                [conf, "-s", "--olddefconfig", "Kconfig"], environment: ["KCONFIG_CONFIG": cfg, "srctree": tmp.path],
                directory: tmp.path)
            let out = try FileSystem.readText(cfg)
            all.append(out)
            all.append(out + "CONFIG_NOT_IN_TREE=y\n# CONFIG_SHOW is not set\n")
        }
        for (i, input) in all.enumerated() {
            let cfg = try tmp.write("c\(i).config", input)
            _ = try Subprocess.run(
                [conf, "-s", "--olddefconfig", "Kconfig"], environment: ["KCONFIG_CONFIG": cfg, "srctree": tmp.path],
                directory: tmp.path)
            let kernel = try FileSystem.readText(cfg)
            let tree = try KconfigTree.parse(file: top)
            let (ours, _) = tree.resolve(ConfigText.assignments(input, file: "c\(i)"))
            #expect(KTest.differences(ours, kernel) == [], "input \(i)")
            #expect(ours == kernel, "input \(i): text differs")
        }
    }
}
