import Basics
import Codecs
import FSTree
import Foundation
import SquashFS

/// What goes into the bundle's SquashFS: every entry of `contentDirectory` (RAUC packs
/// the whole content dir) except names in `replacements`, which are written with the
/// given bytes instead (the normalized `manifest.raucm`). All entries root-owned.
public struct PayloadContent: Sendable {
    public var contentDirectory: String
    public var replacements: [String: [UInt8]]
    public init(contentDirectory: String, replacements: [String: [UInt8]]) {
        self.contentDirectory = contentDirectory
        self.replacements = replacements
    }
}

public struct PayloadOptions: Sendable {
    /// SOURCE_DATE_EPOCH: pins every timestamp in the image.
    public var epoch: Int64?
    /// Extra mksquashfs arguments (rauc's --mksquashfs-args), e.g. ["-comp", "xz"].
    public var extraArguments: [String]
    public init(epoch: Int64? = nil, extraArguments: [String] = []) {
        self.epoch = epoch
        self.extraArguments = extraArguments
    }
}

/// The ONE seam between bundles and the SquashFS writer. It writes a SquashFS image
/// padded to 4 KiB to `outputPath` (an existing, empty file that it truncates).
/// To switch to the native writer (module SquashFS), change `defaultPayloadWriter`.
public protocol PayloadImageWriter: Sendable {
    func write(_ content: PayloadContent, to outputPath: String, options: PayloadOptions) throws
}

/// The ONE seam for reading files back out of the payload image.
public protocol PayloadImageReader: Sendable {
    /// Streams the regular file `name` (at the image root) to `sink`; throws if absent.
    func stream(image: String, file name: String, sink: (UnsafeRawBufferPointer) throws -> Void) throws
    /// Extracts the whole image into `directory` (must not exist yet).
    func extractAll(image: String, to directory: String) throws
}

public let defaultPayloadWriter: any PayloadImageWriter = NativeSquashFSPayloadWriter()
public let defaultPayloadReader: any PayloadImageReader = NativeSquashFSPayloadReader()

/// The payload written by osbuild's own SquashFS writer, with rauc's settings: root-owned
/// entries, no xattrs, root mode 0755, gzip and 128 KiB blocks unless `-comp X` (at
/// osbuild's default settings for X) / `-b N` are passed (the only mksquashfs arguments it understands), every time pinned to
/// SOURCE_DATE_EPOCH when set.
public struct NativeSquashFSPayloadWriter: PayloadImageWriter {
    public init() {}

    public func write(_ content: PayloadContent, to outputPath: String, options: PayloadOptions) throws {
        var tree = try FSTree.fromHostDirectory(content.contentDirectory, options: .init(ownership: .root, readXAttrs: false))
        for (name, bytes) in content.replacements.sorted(by: { ByteOrder.less($0.key, $1.key) }) {
            _ = try tree.remove("/" + name)
            try tree.insert("/" + name, .file(bytes.isEmpty ? .empty : .bytes(bytes), permissions: 0o644))
        }
        var root = tree.root
        root.permissions = 0o755
        tree.root = root
        if let epoch = options.epoch {
            tree.updateAll { $0.mtime = Timestamp(seconds: epoch) }
        }
        var compression = Compression.gzip(level: 9)
        var blockSize = 128 * 1024
        var args = options.extraArguments[...]
        while let a = args.popFirst() {
            switch a {
            case "-comp":
                guard let v = args.popFirst() else { throw MessageError("mksquashfs argument -comp needs a value") }
                switch v {
                case "gzip": compression = .gzip(level: 9)
                case "xz": compression = Compression.defaults(.xz)
                case "lz4": compression = .lz4(hc: false, level: 0)
                case "zstd": compression = Compression.defaults(.zstd)
                default: throw MessageError("payload compressor '\(v)' is not supported (gzip, xz, lz4, zstd)", exitCode: ExitStatus.usage)
                }
            case "-b":
                guard let v = args.popFirst(), let n = ByteCount.parse(v) else { throw MessageError("mksquashfs argument -b needs a size") }
                blockSize = Int(n)
            default:
                throw MessageError("mksquashfs argument '\(a)' is not supported by the native payload writer (supported: -comp, -b)", exitCode: ExitStatus.usage)
            }
        }
        let mkfsTime = options.epoch.map { UInt32(clamping: $0) }
        // The bundle writer holds `outputPath` open and appends to it afterwards, so the
        // image must land in that same inode: write it beside, then copy it in place.
        let temp = FileSystem.dirname(outputPath) + "/.osbuild-tmp-payload-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sqfs"
        defer { unlink(temp) }
        _ = try SquashFSWriter(SquashFSOptions(compression: compression, blockSize: blockSize, mkfsTime: mkfsTime))
            .write(tree: tree, to: temp)
        try copyInPlace(from: temp, to: outputPath)
    }

    private func copyInPlace(from src: String, to dst: String) throws {
        let inFD = open(src, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else { throw SystemError("open", path: src, errno: errno) }
        defer { close(inFD) }
        let outFD = open(dst, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard outFD >= 0 else { throw SystemError("open", path: dst, errno: errno) }
        defer { close(outFD) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buf.withUnsafeMutableBytes { read(inFD, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw SystemError("read", path: src, errno: errno) }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { b in b.baseAddress.map { Glibc.write(outFD, $0 + off, n - off) } ?? -1 }
                if w < 0 { if errno == EINTR { continue }; throw SystemError("write", path: dst, errno: errno) }
                off += w
            }
        }
    }
}

/// The payload read by osbuild's own SquashFS reader, straight from the bundle file (the
/// signature after the SquashFS is beyond its `bytes_used`): no squashfs-tools needed to
/// inspect, extract or install a bundle. Files stream one block at a time.
public struct NativeSquashFSPayloadReader: PayloadImageReader {
    public init() {}

    public func stream(image: String, file name: String, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let fs = try SquashFSImage(path: image)
        let entry: SquashFSImage.Entry
        do { entry = try fs.lookup(name) } catch let e as SquashFSError {
            throw BundleError(.payload, path: image, "cannot read '\(name)' from the payload SquashFS: \(e.message)")
        }
        guard entry.kind == .file else {
            throw BundleError(.payload, path: image, "'\(name)' in the payload SquashFS is not a regular file")
        }
        try fs.stream(entry, sink: sink)
    }

    public func extractAll(image: String, to directory: String) throws {
        try SquashFSImage(path: image).extractAll(to: directory)
    }
}
