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

/// The native reader against images made by the real mksquashfs (the independent
/// writer): extracting them must reproduce the source tree exactly (xattrs aside: the
/// reader does not read them).
@Suite(.serialized) struct SquashFSReaderTests {
    static let source: Result<TempDir, any Error> = Result {
        let tmp = try TempDir("sqread-src")
        try Fixture.makeTree(at: tmp.sub("src"), big: true)
        return tmp
    }

    @Test(arguments: ["gzip", "xz", "lz4", "zstd"])
    func extractsMksquashfsImages(comp: String) throws {
        guard let mksquashfs = TestEnv.oracle("mksquashfs", package: "squashfs-tools") else { return }
        let src = try Self.source.get().sub("src")
        let tmp = try TempDir("sqread-\(comp)")
        let img = tmp.sub("img.sqfs")
        // Small blocks make more blocks, fragments and sparse blocks per file.
        _ = try Subprocess.run([mksquashfs, src, img, "-noappend", "-no-progress", "-quiet", "-comp", comp, "-b", "16384", "-no-xattrs"])
        let image = try SquashFSImage(path: img)
        #expect(image.compression.rawValue == comp)
        #expect(image.blockSize == 16384)
        try image.extractAll(to: tmp.sub("out"))
        let diffs = try HostTree.compare(src, tmp.sub("out"), xattrs: false)
        #expect(diffs.isEmpty, "\(comp): \(diffs.prefix(10).joined(separator: "\n"))")
    }

    /// Uncompressed tables and data (`-noI -noD -noF -noId`) take the stored paths.
    @Test func extractsUncompressedImage() throws {
        guard let mksquashfs = TestEnv.oracle("mksquashfs", package: "squashfs-tools") else { return }
        let tmp = try TempDir("sqread-raw")
        try Fixture.makeTree(at: tmp.sub("src"), big: false)
        _ = try Subprocess.run([mksquashfs, tmp.sub("src"), tmp.sub("img"), "-noappend", "-no-progress", "-quiet", "-noI", "-noD", "-noF", "-noId", "-no-xattrs"])
        try SquashFSImage(path: tmp.sub("img")).extractAll(to: tmp.sub("out"))
        let diffs = try HostTree.compare(tmp.sub("src"), tmp.sub("out"), xattrs: false)
        #expect(diffs.isEmpty, "\(diffs.prefix(10).joined(separator: "\n"))")
    }

    @Test func lookupAndStream() throws {
        guard let mksquashfs = TestEnv.oracle("mksquashfs", package: "squashfs-tools") else { return }
        let src = try Self.source.get().sub("src")
        let tmp = try TempDir("sqread-stream")
        _ = try Subprocess.run([mksquashfs, src, tmp.sub("img"), "-noappend", "-no-progress", "-quiet", "-comp", "zstd"])
        let image = try SquashFSImage(path: tmp.sub("img"))
        for rel in ["ten-mib", "holes", "dups/b", "tiny/t5", "special/hl2", "empty", String(repeating: "n", count: 255)] {
            let e = try image.lookup(rel)
            var got: [UInt8] = []
            try image.stream(e) { got.append(contentsOf: $0) }
            #expect(got == Array(try FileSystem.readFile(src + "/" + rel)), "\(rel)")
        }
        let link = try image.lookup("/special/link")
        #expect(link.kind == .symlink && link.symlinkTarget == Array("../one-byte".utf8))
        let dev = try image.lookup("special/block")
        #expect(dev.kind == .blockDevice && dev.rdev == DeviceNumber(major: 259, minor: 300_000))
        let many = try image.list(try image.lookup("many"))
        #expect(many.count == 10_000)
        #expect(throws: SquashFSError.self) { try image.lookup("dups/nope") }
        #expect(throws: SquashFSError.self) { try image.lookup("one-byte/below") }
        #expect(throws: SquashFSError.self) { try image.stream(try image.lookup("deep")) { _ in } }
    }

    /// An entry name with '/' or '..' (crafted by patching an uncompressed directory
    /// table) must be refused, never followed out of the extraction directory.
    @Test(arguments: [Array("../".utf8), Array("x/y".utf8)])
    func refusesUnsafeNames(replacement: [UInt8]) throws {
        guard let mksquashfs = TestEnv.oracle("mksquashfs", package: "squashfs-tools") else { return }
        let tmp = try TempDir("sqread-evil")
        let name = String(repeating: "Q", count: replacement.count)
        try tmp.write("src/\(name)", "payload")
        _ = try Subprocess.run([mksquashfs, tmp.sub("src"), tmp.sub("img"), "-noappend", "-no-progress", "-quiet", "-noI", "-noD", "-noF", "-noId", "-no-xattrs"])
        var bytes = Array(try FileSystem.readFile(tmp.sub("img")))
        let needle = Array(name.utf8)
        let at = try #require((0...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) })
        bytes.replaceSubrange(at..<(at + needle.count), with: replacement)
        try FileSystem.writeAtomically(tmp.sub("evil"), bytes)
        let image = try SquashFSImage(path: tmp.sub("evil"))
        #expect(throws: SquashFSError.self) { try image.extractAll(to: tmp.sub("out")) }
        #expect(!FileSystem.exists(tmp.path + "/payload") && !FileSystem.exists(tmp.sub("y")))
    }

    /// Damaged images give errors, not crashes: truncation and random byte flips in the
    /// tables of a compressed image.
    @Test func damagedImagesFailCleanly() throws {
        guard let mksquashfs = TestEnv.oracle("mksquashfs", package: "squashfs-tools") else { return }
        let tmp = try TempDir("sqread-damage")
        try Fixture.makeTree(at: tmp.sub("src"), big: false)
        _ = try Subprocess.run([mksquashfs, tmp.sub("src"), tmp.sub("img"), "-noappend", "-no-progress", "-quiet", "-comp", "gzip", "-no-xattrs"])
        let good = Array(try FileSystem.readFile(tmp.sub("img")))
        try FileSystem.writeAtomically(tmp.sub("short"), Array(good.prefix(good.count / 2)))
        #expect(throws: SquashFSError.self) { try SquashFSImage(path: tmp.sub("short")) }
        try FileSystem.writeAtomically(tmp.sub("nomagic"), [0x68, 0x73, 0x71, 0x74] + good.dropFirst(4))
        #expect(throws: SquashFSError.self) { try SquashFSImage(path: tmp.sub("nomagic")) }
        // Flip bytes after the data (the tables), where every later read depends on them.
        let inodeTable = Int(good.loadLE(UInt64.self, at: 64))
        var rng = SystemRandomNumberGenerator()
        var failures = 0
        for round in 0..<40 {
            var bad = good
            for _ in 0..<4 { bad[Int.random(in: inodeTable..<bad.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng) }
            let path = tmp.sub("bad\(round)")
            try FileSystem.writeAtomically(path, bad)
            do {
                try SquashFSImage(path: path).extractAll(to: tmp.sub("out\(round)"))
            } catch is SquashFSError {
                failures += 1
            } catch is SystemError {
                failures += 1  // e.g. a damaged listing naming one entry twice (EEXIST)
            }
        }
        #expect(failures > 0)
    }
}
