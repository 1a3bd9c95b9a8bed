import Basics
import COpenSSL
import Dispatch
import Foundation

public struct BundleCreateOptions: Sendable {
    public var identity: SigningIdentity
    /// SOURCE_DATE_EPOCH: pins SquashFS times, the CMS signingTime and (unless `veritySalt`
    /// is given) derives the verity salt from the content, so equal inputs give equal bytes.
    public var epoch: Int64?
    /// Fixed 32-byte verity salt; nil = random (or content-derived when `epoch` is set).
    public var veritySalt: [UInt8]?
    public var payload: PayloadOptions
    public var payloadWriter: any PayloadImageWriter

    public init(identity: SigningIdentity, epoch: Int64? = nil, veritySalt: [UInt8]? = nil,
                mksquashfsArguments: [String] = [], payloadWriter: any PayloadImageWriter = defaultPayloadWriter) {
        self.identity = identity
        self.epoch = epoch
        self.veritySalt = veritySalt
        self.payload = PayloadOptions(epoch: epoch, extraArguments: mksquashfsArguments)
        self.payloadWriter = payloadWriter
    }
}

/// What was written, for messages and tests.
public struct BundleLayout: Sendable, Equatable {
    public var format: BundleFormat
    public var squashfsSize: UInt64
    public var hashTreeSize: UInt64
    public var signatureSize: UInt64
    public var fileSize: UInt64
    public var manifest: Manifest
}

public enum BundleWriter {
    public static let manifestName = "manifest.raucm"

    /// `rauc bundle` equivalent: CONTENT_DIR holds manifest.raucm and the files it names;
    /// the format comes from its [bundle] section. Writes OUTPUT atomically.
    @discardableResult
    public static func create(contentDirectory: String, output: String, options: BundleCreateOptions) throws -> BundleLayout {
        let content = FileSystem.absolute(contentDirectory)
        let out = FileSystem.absolute(output)
        guard (try? FileSystem.stat(content))?.isDirectory == true else {
            throw BundleError(.input, path: content, "content directory does not exist or is not a directory")
        }
        if out.hasPrefix(content + "/") {
            throw BundleError(.input, path: out, "bundle output must be outside the content directory \(content) (it would pack itself)")
        }
        if let salt = options.veritySalt, salt.count != 32 {
            throw BundleError(.input, path: nil, "verity salt must be 32 bytes (64 hex digits), got \(salt.count) bytes")
        }
        let manifestPath = content + "/" + manifestName
        guard FileSystem.exists(manifestPath) else {
            throw BundleError(.input, path: manifestPath, "missing manifest.raucm in the content directory")
        }
        var manifest = try Manifest.parse(FileSystem.readText(manifestPath), path: manifestPath)
        switch manifest.format {
        case .plain, .verity: break
        case .crypt:
            throw BundleError(.input, path: manifestPath, "[bundle] format=crypt is not supported by osbuild (use plain or verity)")
        }
        if manifest.verity != nil || manifest.cryptKey != nil {
            throw BundleError(.input, path: manifestPath, "[bundle] must not contain verity-hash/verity-salt/verity-size or crypt-key; they are computed when the bundle is created")
        }
        if let hook = manifest.hookFilename, !FileSystem.exists(content + "/" + hook) {
            throw BundleError(.input, path: manifestPath, "hook file '\(hook)' named in [hooks] filename does not exist in \(content)")
        }
        var extraFiles: [String: [UInt8]] = [:]
        try computeImageDigests(&manifest, contentDirectory: content, manifestPath: manifestPath, indexFiles: &extraFiles)
        extraFiles[manifestName] = Array(manifest.render(includeVerity: false).utf8)

        return try AtomicOutputFile.write(out, mode: 0o644) { file in
            try options.payloadWriter.write(PayloadContent(contentDirectory: content, replacements: extraFiles),
                                            to: file.tempPath, options: options.payload)
            var squashfsSize = try FileSystem.stat(file.tempPath).size
            if manifest.format == .verity && squashfsSize == 4096 {
                // rauc's verity code needs more than one data block; zeros after the
                // SquashFS are ignored by readers, so pad tiny payloads to two blocks.
                guard ftruncate(file.fd, 8192) == 0 else { throw SystemError("truncate", path: file.tempPath, errno: errno) }
                squashfsSize = 8192
            }
            var treeSize: UInt64 = 0
            let cms: [UInt8]
            switch manifest.format {
            case .plain:
                cms = try CMS.sign(contentFile: file.tempPath, detached: true, identity: options.identity, signingTime: options.epoch)
            default:
                guard squashfsSize % 4096 == 0, squashfsSize > 4096 else {
                    throw BundleError(.input, path: out, "payload SquashFS is \(squashfsSize) bytes; verity bundles need a multiple of 4096 larger than 4096 (do not pass -nopad)")
                }
                let salt = options.veritySalt ?? derivedSalt(manifest: extraFiles[manifestName] ?? [], epoch: options.epoch)
                let (tree, root) = try VerityHashTree.build(path: file.tempPath, dataSize: squashfsSize, salt: salt)
                try tree.withUnsafeBytes { try file.pwrite($0, at: squashfsSize) }
                treeSize = UInt64(tree.count)
                manifest.verity = VerityParameters(rootHash: root, salt: salt, hashTreeSize: treeSize)
                cms = try CMS.sign(contentBytes: Array(manifest.render(includeVerity: true).utf8), detached: false,
                                   identity: options.identity, signingTime: options.epoch)
            }
            try appendSignature(cms, to: file, at: squashfsSize + treeSize)
            return BundleLayout(format: manifest.format, squashfsSize: squashfsSize, hashTreeSize: treeSize,
                                signatureSize: UInt64(cms.count), fileSize: squashfsSize + treeSize + UInt64(cms.count) + 8,
                                manifest: manifest)
        }
    }

    /// CMS then its length as u64 big-endian: the trailer rauc reads from the end.
    static func appendSignature(_ cms: [UInt8], to file: AtomicOutputFile, at offset: UInt64) throws {
        var trailer = [UInt8](repeating: 0, count: 8)
        var n = UInt64(cms.count)
        for i in (0..<8).reversed() { trailer[i] = UInt8(n & 0xFF); n >>= 8 }
        try (cms + trailer).withUnsafeBytes { try file.pwrite($0, at: offset) }
        // The payload writer may have left the file longer than the squashfs (never for
        // mksquashfs, but keep the layout exact for any writer).
        if ftruncate(file.fd, off_t(offset) + off_t(cms.count) + 8) != 0 {
            throw SystemError("truncate", path: file.tempPath, errno: errno)
        }
    }

    /// Reproducible builds: salt = SHA-256 over a domain tag, the normalized internal
    /// manifest (which carries every image's sha256) and the epoch.
    static func derivedSalt(manifest: [UInt8], epoch: Int64?) -> [UInt8] {
        guard let epoch else {
            var salt = [UInt8](repeating: 0, count: 32)
            if RAND_bytes(&salt, 32) != 1 {
                // RAND_bytes only fails when the OS has no entropy source at all.
                for i in 0..<32 { salt[i] = UInt8.random(in: 0...255) }
            }
            return salt
        }
        let h = SHA256()
        h.updateField("osbuild rauc verity salt v1")
        h.update(manifest)
        h.updateField(String(epoch))
        return h.finalize()
    }

    /// sha256 + size of every image (in parallel), written into the manifest as rauc does;
    /// `adaptive=block-hash-index` images also get their `<file>.block-hash-index`.
    static func computeImageDigests(_ manifest: inout Manifest, contentDirectory: String, manifestPath: String,
                                    indexFiles: inout [String: [UInt8]]) throws {
        struct Result: Sendable { var sha: String; var size: UInt64; var index: [UInt8]? }
        let images = manifest.images
        for img in images {
            for a in img.adaptive where a != "block-hash-index" {
                throw BundleError(.input, path: manifestPath, "[\(img.groupName)] adaptive: unknown method '\(a)' (RAUC 1.8 knows block-hash-index)")
            }
            guard let name = img.filename else { continue }
            let p = contentDirectory + "/" + name
            guard let st = try FileSystem.lstatIfExists(p), st.isRegular else {
                throw BundleError(.input, path: manifestPath, "image file '\(name)' for slot class '\(img.slotClass)' does not exist (or is not a regular file) in \(contentDirectory)")
            }
            if img.adaptive.contains("block-hash-index") {
                guard st.size % 4096 == 0 else {
                    throw BundleError(.input, path: p, "adaptive=block-hash-index needs an image size that is a multiple of 4096 bytes, got \(st.size)")
                }
                guard !name.contains("/") else {
                    throw BundleError(.input, path: manifestPath, "adaptive image '\(name)' must be at the top of the content directory")
                }
            }
        }
        let results = try Parallel.map(images.count) { i -> Result? in
            guard let name = images[i].filename else { return nil }
            let r = try hashFile(contentDirectory + "/" + name, blockIndex: images[i].adaptive.contains("block-hash-index"))
            return Result(sha: r.sha, size: r.size, index: r.index)
        }
        for i in images.indices {
            guard let name = images[i].filename, let v = results[i] else { continue }
            manifest.images[i].sha256 = v.sha
            manifest.images[i].size = v.size
            if let idx = v.index { indexFiles[name + ".block-hash-index"] = idx }
        }
    }

    static func hashFile(_ path: String, blockIndex: Bool) throws -> (sha: String, size: UInt64, index: [UInt8]?) {
        let h = SHA256()
        var size: UInt64 = 0
        var index: [UInt8]? = blockIndex ? [] : nil
        // Chunks are whole 1 MiB reads except the last, and indexed images are a multiple
        // of 4096 bytes, so 4 KiB blocks never straddle chunks.
        try FileReading.forEachChunk(path) { chunk, _ in
            h.update(chunk)
            if index != nil {
                var off = 0
                while off < chunk.count {
                    let bh = SHA256()
                    bh.update(UnsafeRawBufferPointer(rebasing: chunk[off..<min(off + 4096, chunk.count)]))
                    index?.append(contentsOf: bh.finalize())
                    off += 4096
                }
            }
            size += UInt64(chunk.count)
        }
        return (h.hexDigest(), size, index)
    }
}
