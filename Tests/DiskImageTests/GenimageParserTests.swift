import Basics
import DiskImage
import Foundation
import Testing
import TestSupport

@Suite struct GenimageParserTests {
    func parse(_ text: String, env: [String: String] = [:], include: [String] = []) throws -> ConfSection {
        try ConfuseParser(environment: env, includePath: include).parse(text: text, file: "test.cfg", schema: GenimageSchema.root)
    }

    func error(_ text: String, env: [String: String] = [:]) -> String {
        do { _ = try parse(text, env: env); return "no error" } catch { return "\(error)" }
    }

    @Test func commentsQuotesAndEnvironment() throws {
        let cfg = try parse("""
            # hash comment
            // slash comment
            /* block
               comment */
            image "disk.img" {
                hdimage { disk-uuid = "${DISK:-4a1b2c3d-1111-4222-8333-444455556666}" }
                exec-post = 'echo ${IMAGEOUTFILE} \\'x\\''
                name = ${NAME}
                partition a { image = "tab\\there\\x41\\101" size = 1M }
            }
            """, env: ["NAME": "from-env"])
        let img = try #require(cfg.sections(named: "image").first)
        #expect(img.title == "disk.img")
        #expect(img.sections(named: "hdimage").first?.scalar("disk-uuid") == "4a1b2c3d-1111-4222-8333-444455556666")
        #expect(img.scalar("exec-post") == "echo ${IMAGEOUTFILE} 'x'")
        #expect(img.scalar("name") == "from-env")
        #expect(img.sections(named: "partition").first?.scalar("image") == "tab\there" + "AA")
        let withEnv = try parse("image x { hdimage { disk-uuid = \"${DISK:-default}\" } }", env: ["DISK": "set"])
        #expect(withEnv.sections.first?.sections.first?.scalar("disk-uuid") == "set")
    }

    @Test func listsAndAppend() throws {
        let cfg = try parse("""
            image boot.vfat { vfat { files = { "a", "b" }
                files += { "c" } } size = 4M }
            """)
        #expect(cfg.sections.first?.sections.first?.list("files") == ["a", "b", "c"])
    }

    @Test func unknownOptionNamesFileAndLine() {
        #expect(error("image x {\n  hdimage {}\n  bogus = 1\n}") == "test.cfg:3: no such option 'bogus'")
        #expect(error("image x {\n  partition p {\n    sise = 1M\n  }\n  hdimage {}\n}") == "test.cfg:3: no such option 'sise'")
        #expect(error("image x {\n  hdimage {\n") == "test.cfg:3: missing '}' for section 'hdimage' opened at line 2")
        #expect(error("image x { name = \"open\n") == "test.cfg:1: unterminated string")
    }

    @Test func includeSearchesIncludePath() throws {
        let tmp = try TempDir("inc")
        try tmp.write("parts/common.cfg", "partition boot { image = \"boot.vfat\" size = 8M }\n")
        let cfg = try parse("image disk.img {\n hdimage {}\n include(\"common.cfg\")\n}", include: [tmp.sub("parts")])
        #expect(cfg.sections.first?.sections(named: "partition").first?.title == "boot")
        #expect(error("include(\"nope.cfg\")").hasPrefix("test.cfg:1: include file nope.cfg not found"))
    }

    @Test func sizesFollowGenimage() throws {
        let l = SourceLocation(file: "t.cfg", line: 1)
        func s(_ t: String) throws -> UInt64 { try GenimageValues.size(t, allowPercent: false, at: l, key: "size").0 }
        #expect(try s("512") == 512)
        #expect(try s("4k") == 4096)
        #expect(try s("4K") == 4096)
        #expect(try s("16M") == 16 << 20)
        #expect(try s("2G") == 2 << 30)
        #expect(try s("8s") == 4096)
        #expect(try s("0x100000") == 1 << 20)
        #expect(try s("010M") == 8 << 20)  // leading 0 = octal, as strtoull base 0
        #expect(try s("1MB") == 1 << 20)   // text after a valid suffix is ignored
        let pct = try GenimageValues.size("200%", allowPercent: true, at: l, key: "size")
        #expect(pct.0 == 200 && pct.percent)
        #expect(throws: ConfigError.self) { try s("1m") }
        do { _ = try s("1.5M") } catch { #expect("\(error)" == "t.cfg:1: Invalid size suffix '.5M' in '1.5M'") }
        #expect(try GenimageValues.hole("(440;1M)", at: l) == 440..<(1 << 20))
        #expect(GenimageValues.integer("0x83") == 131 && GenimageValues.integer("0203") == 131 && GenimageValues.integer("131") == 131)
        #expect(GenimageValues.timestamp("20240101") == 1_704_067_200)
    }

    @Test func newerUpstreamOptionsAreAccepted() throws {
        let tmp = try TempDir("newer")
        let blob = try tmp.write("input/spl.bin", String(repeating: "S", count: 3000))
        _ = blob
        try tmp.write("input/rootfs.img", String(repeating: "R", count: 5000))
        try tmp.write("g.cfg", """
            image disk.img {
                size = 64M
                hdimage { partition-table-type = "gpt" align = 1M fill = true disk-uuid = "11111111-2222-4333-8444-555555555555" }
                partition spl { in-partition-table = false offset = 32K image = "spl.bin" }
                partition esp { partition-type-uuid = "esp" size = 8M }
                partition root { partition-type-uuid = "root-x86-64" image = "rootfs.img" imageoffset = 1024 sparse = false fill = true size = 8M }
                partition data { partition-type-uuid = "linux" autoresize = true }
            }
            """)
        let project = try GenimageProject(config: tmp.sub("g.cfg"), paths: GenimagePaths(
            rootpath: tmp.sub("root"), tmppath: tmp.sub("tmp"), inputpath: tmp.sub("input"), outputpath: tmp.sub("out")))
        let img = try #require(project.images.first { $0.title == "disk.img" })
        let layout = try project.hdimageLayout(img)
        let r = try layout.resolve()
        #expect(r.entries.map(\.gptType) == ["C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"])
        #expect(r.entries[2].offset + r.entries[2].size == 64 * MiB - MiB)  // autoresize stops before the backup GPT, aligned down
        try project.build(epoch: 0)
        let bytes = try FileSystem.readFile(tmp.sub("out/disk.img"))
        #expect(bytes.count == 64 << 20)
        // imageoffset: the partition starts with byte 1024 of the input.
        #expect(bytes[Int(r.entries[1].offset)..<Int(r.entries[1].offset) + 3976].allSatisfy { $0 == UInt8(ascii: "R") })
        #expect(bytes[Int(r.entries[1].offset) + 3976] == 0)
        #expect(bytes[32768..<(32768 + 3000)].allSatisfy { $0 == UInt8(ascii: "S") })
    }

    @Test func unsupportedTypesSaySo() throws {
        let tmp = try TempDir("rauc")
        try tmp.write("g.cfg", "image u.raucb {\n rauc { manifest = \"x\" cert = \"c\" key = \"k\" }\n}\n")
        let project = try GenimageProject(config: tmp.sub("g.cfg"), paths: GenimagePaths(tmppath: tmp.sub("tmp"), outputpath: tmp.sub("out")))
        do {
            try project.build(epoch: 0)
            Issue.record("rauc unexpectedly built")
        } catch {
            #expect("\(error)" == "\(tmp.sub("g.cfg")):1: image 'u.raucb': rauc bundles are not supported by 'osbuild image' yet (they need the bundle module)")
        }
    }
}

@Suite struct ConfigDumpTests {
    /// The dump re-parses to the same config (includes and variables already expanded).
    @Test func dumpRoundTrips() throws {
        let tmp = try TempDir("dump")
        try tmp.write("inc/parts.cfg", "partition p { image = \"${IMG:-a.img}\" size = 1M }\n")
        let text = "image \"d.img\" {\n hdimage { partition-table-type = gpt }\n include(\"parts.cfg\")\n exec-post = 'echo \"$X\" \\\\n'\n}\n"
        let parser = ConfuseParser(environment: ["IMG": "b.img"], includePath: [tmp.sub("inc")])
        let a = try parser.parse(text: text, file: "t.cfg", schema: GenimageSchema.root)
        let dumped = a.dump()
        #expect(dumped.contains("image = \"b.img\""))
        let b = try ConfuseParser(environment: [:]).parse(text: dumped, file: "dump.cfg", schema: GenimageSchema.root)
        #expect(b.dump() == dumped)
        #expect(b.sections.first?.scalar("exec-post") == a.sections.first?.scalar("exec-post"))
    }
}
