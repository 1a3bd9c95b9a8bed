import Basics
import Codecs
import FSTree
import Foundation
import SquashFS
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Bad input: a clear message naming the path or value, and nothing left at the output.
@Suite struct ErrorTests {
    func expectFailure(_ tree: FSTree, _ options: SquashFSOptions = .init(), mentions: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let tmp = try TempDir("sqfs-err")
        let out = tmp.sub("out.sqfs")
        do {
            try SquashFSWriter(options).write(tree: tree, to: out)
            Issue.record("expected an error mentioning \(mentions)", sourceLocation: sourceLocation)
        } catch let e as any UserError {
            #expect(e.description.contains(mentions), "message: \(e.description)", sourceLocation: sourceLocation)
        }
        #expect(!FileSystem.exists(out), sourceLocation: sourceLocation)
        let left = try FileSystem.listDirectory(tmp.path)
        #expect(left.isEmpty, "temp files left: \(left)", sourceLocation: sourceLocation)
    }

    @Test func blockSizeMustBeAPowerOfTwoInRange() throws {
        var tree = FSTree()
        try tree.insert("/f", .file(.bytes([1, 2, 3])))
        for bad in [3000, 65537, 2048, 2 << 20] {
            try expectFailure(tree, .init(blockSize: bad), mentions: "\(bad)")
        }
    }

    @Test func unknownCompressorIsNamed() {
        do {
            _ = try Compression.parse("lzo")
            Issue.record("lzo accepted")
        } catch {
            #expect("\(error)".contains("'lzo'"))
        }
        #expect(throws: (any Error).self) { try Compression.parse("zstd", level: 23) }
        #expect(throws: (any Error).self) { try Compression.parse("gzip", level: 0) }
    }

    @Test func badXZDictionaryIsNamed() throws {
        var tree = FSTree()
        try tree.insert("/f", .file(.bytes([1])))
        try expectFailure(tree, .init(compression: .xz(preset: 6, bcj: [], dictSize: 40000)), mentions: "40000")
        try expectFailure(tree, .init(compression: .xz(preset: 6, bcj: [], dictSize: 1 << 20)), mentions: "\(1 << 20)")
    }

    @Test func unreadableOrVanishedFileIsNamed() throws {
        let tmp = try TempDir("sqfs-gone")
        let path = tmp.sub("gone")
        try Fixture.write(path, Fixture.text(200_000, seed: 1))
        var tree = FSTree()
        try tree.insert("/a/big", .file(.bytes(Fixture.noise(500_000, seed: 3))), createParents: true)
        try tree.insert("/gone", .file(.hostFile(path: path, size: 200_000)))
        unlink(path)
        try expectFailure(tree, mentions: path)
    }

    @Test func fileThatShrinksWhileReadIsNamed() throws {
        let tmp = try TempDir("sqfs-shrink")
        for (orig, now) in [(1_000_000, 300_000), (5000, 10), (300_000, 0)] {
            let path = tmp.sub("shrinks-\(orig)")
            try Fixture.write(path, Fixture.noise(orig, seed: 1))
            var tree = try FSTree.fromHostDirectory(tmp.path, options: .init(ownership: .host))
            try tree.insert("/other", .file(.bytes(Fixture.text(100, seed: 2))))
            truncate(path, off_t(now))
            try expectFailure(tree, mentions: path)
            unlink(path)
        }
    }

    @Test func fileThatGrowsWhileReadIsNamed() throws {
        let tmp = try TempDir("sqfs-grow")
        let path = tmp.sub("grows")
        try Fixture.write(path, Fixture.noise(10_000, seed: 1))
        let tree = try FSTree.fromHostDirectory(tmp.path, options: .init(ownership: .host))
        try Fixture.write(path, Fixture.noise(20_000, seed: 1))
        try expectFailure(tree, mentions: path)
    }

    @Test func namesLongerThan255BytesAreRejectedWithThePath() throws {
        var tree = FSTree()
        let name = String(repeating: "a", count: 256)
        do {
            try tree.insert("/dir/" + name, .file(.empty), createParents: true)
            Issue.record("256-byte name accepted")
        } catch let e as any UserError {
            #expect(e.description.contains(name))
        }
    }
}
