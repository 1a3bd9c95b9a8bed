import Basics
import Codecs
import FSTree
import Foundation
import SquashFS
import Testing
import TestSupport

/// The xz and zstd defaults differ from mksquashfs's levels; an explicit level is the
/// library's level. Incompressible blocks are stored raw. All checked through unsquashfs.
@Suite(.serialized) struct DefaultsTests {
    /// 300 KiB of random bytes (2 full blocks + a tail), compressible text, a few small files.
    static func makeSource(_ root: String) throws {
        try FileSystem.makeDirectories(root)
        try Fixture.write(root + "/random.bin", Fixture.noise(300 * 1024, seed: 77))
        try Fixture.write(root + "/text.txt", Fixture.text(200 * 1024, seed: 5))
        for i in 0..<5 {
            try Fixture.write(root + "/small-\(i).conf", Fixture.text(700 + i * 13, seed: i))
        }
    }

    static func stat(_ image: String) throws -> String {
        try Subprocess.run(["unsquashfs", "-stat", image]).stdoutText
    }

    @Test(arguments: [Compression.Kind.xz, .zstd])
    func randomBlocksAreStoredRawAndRoundTrip(_ kind: Compression.Kind) throws {
        guard TestEnv.oracle("unsquashfs", package: "squashfs-tools") != nil else { return }
        let tmp = try TempDir("sqfs-defaults")
        let src = tmp.sub("src")
        try Self.makeSource(src)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        let image = tmp.sub("img.sqfs")
        let stats = try SquashFSWriter(.init(compression: .defaults(kind))).write(tree: tree, to: image)
        // The two full random blocks are raw; the text blocks are compressed.
        #expect(stats.dataBlocks == 2 + 1)
        #expect(stats.uncompressedBlocks == 2, "\(stats)")
        #expect(stats.imageBytes > 300 * 1024 && stats.imageBytes < 400 * 1024, "\(stats)")
        try Fixture.unsquashfs(image, into: tmp.sub("out"))
        let diffs = try Fixture.compare(src, tmp.sub("out"))
        #expect(diffs.isEmpty, "\(diffs.prefix(10).joined(separator: "\n"))")
    }

    /// What `unsquashfs -stat` reports is what was asked for: the default zstd level 14 is
    /// recorded in the compressor options; an explicit `--level 15` (mksquashfs's default)
    /// writes no options, exactly as mksquashfs does.
    @Test func zstdLevelRecordedInTheImage() throws {
        guard TestEnv.oracle("unsquashfs", package: "squashfs-tools") != nil else { return }
        let tmp = try TempDir("sqfs-zstd-level")
        let src = tmp.sub("src")
        try Self.makeSource(src)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        let def = tmp.sub("default.sqfs")
        let l15 = tmp.sub("l15.sqfs")
        let l14 = tmp.sub("l14.sqfs")
        try SquashFSWriter(.init(compression: try Compression.parse("zstd"))).write(tree: tree, to: def)
        try SquashFSWriter(.init(compression: try Compression.parse("zstd", level: 15))).write(tree: tree, to: l15)
        try SquashFSWriter(.init(compression: try Compression.parse("zstd", level: 14))).write(tree: tree, to: l14)
        let sd = try Self.stat(def)
        #expect(sd.contains("Compression zstd") && sd.contains("compression-level 14"), "\(sd)")
        let s15 = try Self.stat(l15)
        #expect(s15.contains("Compression zstd") && !s15.contains("compression-level"), "\(s15)")
        #expect(try Self.stat(l14).contains("compression-level 14"))
        // The default is not plain level 14 (its target length differs), and both round trip.
        #expect(try SHA256.hexOfFile(at: def) != SHA256.hexOfFile(at: l14))
        for (i, img) in [def, l15, l14].enumerated() {
            let out = tmp.sub("out-\(i)")
            try Fixture.unsquashfs(img, into: out)
            #expect(try Fixture.compare(src, out).isEmpty, "\(img)")
        }
    }

    /// mksquashfs's settings are one `--level` away: an explicit xz preset 6 / zstd 15 image
    /// has the same compressor options block (none) as mksquashfs writes for its defaults.
    @Test func explicitLevelsMatchMksquashfsOptions() throws {
        guard TestEnv.oracle("unsquashfs", package: "squashfs-tools") != nil,
              TestEnv.oracle("mksquashfs", package: "squashfs-tools") != nil else { return }
        let tmp = try TempDir("sqfs-mks-opts")
        let src = tmp.sub("src")
        try Self.makeSource(src)
        let tree = try FSTree.fromHostDirectory(src, options: .init(ownership: .host))
        for (name, level) in [("xz", 6), ("zstd", 15)] {
            let ours = tmp.sub("osb-\(name).sqfs")
            let theirs = tmp.sub("mks-\(name).sqfs")
            try SquashFSWriter(.init(compression: try Compression.parse(name, level: level))).write(tree: tree, to: ours)
            _ = try Subprocess.run(["mksquashfs", src, theirs, "-noappend", "-comp", name, "-quiet", "-no-progress"])
            let a = try Self.stat(ours).split(separator: "\n").filter { $0.hasPrefix("Compression") || $0.hasPrefix("\t") }
            let b = try Self.stat(theirs).split(separator: "\n").filter { $0.hasPrefix("Compression") || $0.hasPrefix("\t") }
            #expect(a == b, "\(name): \(a) vs mksquashfs \(b)")
        }
    }
}
