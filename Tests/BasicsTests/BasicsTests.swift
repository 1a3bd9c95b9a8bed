import Basics
import Foundation
import Testing
import TestSupport

@Suite struct BasicsTests {
    @Test func sha256KnownVectors() {
        // FIPS 180-2 test vectors.
        #expect(SHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func sizeParsing() {
        #expect(ByteCount.parse("4k") == 4096)
        #expect(ByteCount.parse("10M") == 10 * 1024 * 1024)
        #expect(ByteCount.parse("1.5G") == 1_610_612_736)
        #expect(ByteCount.parse("12x") == nil)
    }

    @Test func atomicOutputLeavesNothingOnError() throws {
        let tmp = try TempDir("atomic")
        let out = tmp.sub("image.img")
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try AtomicOutputFile.write(out) { f in
                try f.write([1, 2, 3])
                throw Boom()
            }
        }
        #expect(!FileSystem.exists(out))
        #expect(try FileSystem.listDirectory(tmp.path).isEmpty)
        try AtomicOutputFile.write(out) { try $0.write([1, 2, 3]) }
        #expect(try FileSystem.readFile(out) == [1, 2, 3])
    }

    @Test func normalize() {
        #expect(FileSystem.normalize("/a/./b/../c//d") == "/a/c/d")
        #expect(FileSystem.normalize("/../x") == "/x")
        #expect(FileSystem.normalize("a/../../b") == "../b")
    }
}

@Suite struct ExecutableIdentityTests {
    /// The build ID we read from memory must be the one binutils reads from the file.
    @Test func buildIDMatchesReadelf() throws {
        guard let readelf = TestEnv.oracle("readelf", package: "binutils") else { return }
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let out = try Subprocess.run([readelf, "-n", exe]).stdoutText
        let line = out.split(separator: "\n").first { $0.contains("Build ID:") }
        let expected = try #require(line).split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(ExecutableIdentity.buildID == expected)
        #expect(ExecutableIdentity.buildID.count >= 16)
    }
}

@Suite struct ToolVersionsTests {
    /// The recorded version is what the tool itself reports: e2fsprogs answers `-V`
    /// (not `--version`), other tools `--version`. A probe that records the tool's
    /// usage error would never change when the tool is upgraded.
    @Test func probesRealVersions() throws {
        guard TestEnv.oracle("mke2fs", package: "e2fsprogs") != nil,
              TestEnv.oracle("mkfs.fat", package: "dosfstools") != nil else { return }
        let tmp = try TempDir("toolversions")
        let tools = ToolVersions(cacheFile: tmp.sub("cache"))
        let mke2fs = tools.version(of: "mke2fs")
        #expect(mke2fs.range(of: #"^mke2fs \d+\.\d+"#, options: .regularExpression) != nil, "\(mke2fs)")
        let fat = tools.version(of: "mkfs.fat")
        #expect(fat.range(of: #"^mkfs\.fat \d+\.\d+"#, options: .regularExpression) != nil, "\(fat)")
        #expect(tools.version(of: "no-such-tool-osbuild") == "missing")
        // Cached across instances by the binary's identity.
        tools.save()
        #expect(ToolVersions(cacheFile: tmp.sub("cache")).version(of: "mke2fs") == mke2fs)
    }
}
