import Basics
import FSTree
#if canImport(Glibc)
import Glibc
#endif

/// The SRC of `osbuild mkfs squashfs|erofs`: a host directory, or an archive that
/// libarchive reads (tar, tar.gz/.xz/.zst/.bz2/.lz4, cpio, .deb). Archive members become
/// tree entries through `ArchiveImporter` (ownership, modes, devices, pax xattrs and hard
/// links from the archive headers, nothing created on the host); member bytes larger than
/// the inline limit are spilled to a scratch `BlobStore` that lives as long as this value,
/// because the image writers read contents lazily through `ContentReader`.
public final class ImageSource {
    public struct NotASource: UserError {
        public var path: String
        public var what: String
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String { "source '\(path)': \(what) (expected a directory or an archive: tar, tar.gz, tar.xz, tar.zst, cpio, ...)" }
    }

    public enum Kind: Sendable, Equatable { case directory, archive(format: String) }

    public let tree: FSTree
    public let kind: Kind
    private let scratch: String?

    /// Load `path`. `allRoot` makes every entry 0:0; otherwise owners come from the host
    /// (directory) or from the archive headers. `scratchParent` is where spilled archive
    /// members go (default: next to the output, so they land on the output's filesystem).
    public init(_ path: String, allRoot: Bool, scratchParent: String) throws {
        guard FileSystem.exists(path) else { throw NotASource(path: path, what: "no such file or directory") }
        let st = try FileSystem.stat(path)
        if st.isDirectory {
            tree = try FSTree.fromHostDirectory(path, options: .init(ownership: allRoot ? .root : .host))
            kind = .directory
            scratch = nil
            return
        }
        guard st.isRegular else { throw NotASource(path: path, what: "neither a directory nor a regular file") }
        var template = Array((scratchParent + "/.osbuild-src-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw SystemError("mkdtemp", path: scratchParent, errno: errno) }
        let dir = String(cString: p)
        do {
            var t = FSTree()
            // A fresh tree has no symlinks of its own to follow; members through the
            // archive's own symlinks and absolute or `..` names are refused.
            let summary = try ArchiveImporter.importArchive(
                path, into: &t, blobs: try BlobStore(directory: dir),
                options: .init(destination: "/", policy: .error, followTreeSymlinks: false))
            if allRoot { t.makeAllRoot() }
            tree = t
            kind = .archive(format: summary.format)
            scratch = dir
        } catch {
            try? FileSystem.removeTree(dir)
            throw error
        }
    }

    deinit {
        if let scratch { try? FileSystem.removeTree(scratch) }
    }
}
