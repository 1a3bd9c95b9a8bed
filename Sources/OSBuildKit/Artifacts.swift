import Basics
import Boards
import Foundation
import StageRunner
#if canImport(Glibc)
import Glibc
#endif

/// The files a build hands to users (disk image and its conversions, the update bundle),
/// with their apparent and allocated sizes (images are sparse).
public struct Artifact: Sendable, Equatable {
    public var kind: String
    public var path: String
    public var size: UInt64
    public var allocated: UInt64

    /// What the board's disk and bundle stages produced, in a stable order; missing files
    /// (a stage not built yet) are left out.
    public static func list(board: Board, buildDir: BuildDirectory) -> [Artifact] {
        var out: [Artifact] = []
        func add(_ kind: String, _ path: String) {
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return }
            out.append(Artifact(kind: kind, path: path, size: UInt64(st.st_size), allocated: UInt64(st.st_blocks) * 512))
        }
        let disk = buildDir.outputDir("disk")
        for (kind, ext) in [("image", "img"), ("bmap", "bmap"), ("image (xz)", "img.xz"), ("image (gz)", "img.gz"), ("image (zst)", "img.zst"),
                            ("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vdi", "vdi"), ("vhdx", "vhdx")] {
            add(kind, disk + "/" + board.artifactName(ext))
        }
        let bundleDir = buildDir.outputDir("bundle")
        for name in ((try? FileSystem.listDirectory(bundleDir)) ?? []).sorted() where name.hasSuffix(".raucb") {
            add("bundle", bundleDir + "/" + name)
        }
        return out
    }
}

/// Remembers the last successful boot test of a built image (by the disk stage's output
/// digest), so `make demo` does not boot an unchanged image again.
public struct BootTestStamp: Codable, Sendable, Equatable {
    public var imageDigest: String
    public var accel: String
    public var slot: String
    public var version: String
    public var seconds: Double
    public var bootedAt: Double

    public init(imageDigest: String, accel: String, slot: String, version: String, seconds: Double, bootedAt: Double) {
        (self.imageDigest, self.accel, self.slot, self.version, self.seconds, self.bootedAt) = (imageDigest, accel, slot, version, seconds, bootedAt)
    }

    public static func path(_ buildDir: BuildDirectory) -> String { buildDir.stateDir + "/boot-test.json" }

    public static func read(_ buildDir: BuildDirectory) -> BootTestStamp? {
        guard let bytes = try? FileSystem.readFile(path(buildDir)) else { return nil }
        return try? JSONDecoder().decode(BootTestStamp.self, from: Data(bytes))
    }

    public func write(_ buildDir: BuildDirectory) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try FileSystem.writeAtomically(Self.path(buildDir), [UInt8](try enc.encode(self)))
    }
}
