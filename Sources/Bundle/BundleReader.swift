import Basics
import Dispatch
import Foundation

/// Result of `bundle info`: everything that was verified, for printing or JSON.
public struct VerifiedBundle: Sendable {
    public var path: String
    public var format: BundleFormat
    public var fileSize: UInt64
    public var payloadSize: UInt64
    public var signatureSize: UInt64
    public var manifest: Manifest
    /// The exact manifest bytes that were authenticated (signed eContent for verity,
    /// the SquashFS copy for plain).
    public var manifestText: String
    public var chain: [CertificateInfo]
    public var signingTime: String?
    /// Checks that passed, in order (e.g. "signature", "verity hash tree").
    public var checks: [String]
}

public struct BundleVerifyOptions: Sendable {
    public var policy: KeyringPolicy
    /// Also stream every image out of the payload and compare sha256 and size (rauc 1.8
    /// never does this).
    public var checkImages: Bool
    public var reader: any PayloadImageReader
    public init(policy: KeyringPolicy, checkImages: Bool = true, reader: any PayloadImageReader = defaultPayloadReader) {
        self.policy = policy
        self.checkImages = checkImages
        self.reader = reader
    }
}

public enum BundleReader {
    static let trailerSize: UInt64 = 8

    struct Container {
        var fileSize: UInt64
        var signatureSize: UInt64
        var payloadSize: UInt64
        var cms: [UInt8]
    }

    /// Splits the file into payload | CMS | u64 BE size, with rauc's checks and limits.
    static func readContainer(_ path: String) throws -> Container {
        let st = try FileSystem.stat(path)
        guard st.isRegular else { throw BundleError(.input, path: path, "not a regular file") }
        guard st.size >= trailerSize else {
            throw BundleError(.trailer, path: path, "file is \(st.size) bytes, shorter than the 8-byte size trailer")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        var t = [UInt8](repeating: 0, count: 8)
        try t.withUnsafeMutableBytes { try preadFully(fd, $0, offset: st.size - trailerSize, path: path) }
        let sigSize = t.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard sigSize > 0 else { throw BundleError(.trailer, path: path, "signature size in the trailer is 0") }
        guard sigSize <= st.size - trailerSize else {
            throw BundleError(.trailer, path: path, "signature size (\(sigSize)) exceeds bundle size (\(st.size)); truncated or corrupted trailer")
        }
        guard sigSize <= UInt64(CMS.maxSize) else {
            throw BundleError(.trailer, path: path, "signature size (\(sigSize)) exceeds 64KiB (RAUC's limit)")
        }
        var cms = [UInt8](repeating: 0, count: Int(sigSize))
        let payload = st.size - trailerSize - sigSize
        try cms.withUnsafeMutableBytes { try preadFully(fd, $0, offset: payload, path: path) }
        return Container(fileSize: st.size, signatureSize: sigSize, payloadSize: payload, cms: cms)
    }

    /// `osbuild bundle info`: trailer, signature + chain, payload (plain: digest of the
    /// whole payload; verity: every hash-tree level and data block), manifest rules and,
    /// beyond rauc, each image's sha256 and size.
    public static func verify(_ bundlePath: String, options: BundleVerifyOptions) throws -> VerifiedBundle {
        let path = FileSystem.absolute(bundlePath)
        let c = try readContainer(path)
        var checks = ["size trailer"]
        let sig = try CMS.verify(der: c.cms, policy: options.policy, bundlePath: path)
        checks.append("signature")
        let manifest: Manifest
        let manifestText: String
        if sig.detached {
            guard let want = sig.messageDigest else {
                throw BundleError(.signature, path: path, "detached signature without a message digest")
            }
            let got = try sha256(of: path, length: c.payloadSize)
            guard got == want else {
                throw BundleError(.payload, path: path, "SHA-256 of the payload (\(c.payloadSize) bytes) is \(Hex.encode(got)), but the signature covers \(Hex.encode(want)); the payload was modified after signing")
            }
            checks.append("payload digest")
            var bytes: [UInt8] = []
            try options.reader.stream(image: path, file: BundleWriter.manifestName) { bytes.append(contentsOf: $0) }
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw BundleError(.manifest, path: path, "manifest.raucm in the payload is not UTF-8 text")
            }
            manifestText = text
            manifest = try parseManifest(text, bundlePath: path, what: "manifest.raucm in the payload")
            guard manifest.format == .plain else {
                throw BundleError(.manifest, path: path, "detached (plain) signature but the manifest says format=\(manifest.format.rawValue)")
            }
        } else {
            guard let content = sig.content, let text = String(validating: content, as: UTF8.self) else {
                throw BundleError(.manifest, path: path, "signed manifest is missing or not UTF-8 text")
            }
            manifestText = text
            manifest = try parseManifest(text, bundlePath: path, what: "signed manifest")
            switch manifest.format {
            case .plain:
                throw BundleError(.manifest, path: path, "bundle format 'plain' is not allowed for an inline-signed manifest")
            case .crypt:
                throw BundleError(.manifest, path: path, "crypt bundles (encrypted payload) are not supported by osbuild")
            case .verity: break
            }
            guard let v = manifest.verity else {
                throw BundleError(.manifest, path: path, "signed verity manifest lacks verity-hash/verity-salt/verity-size")
            }
            guard v.hashTreeSize < c.payloadSize else {
                throw BundleError(.verity, path: path, "verity-size \(v.hashTreeSize) is not smaller than the payload (\(c.payloadSize) bytes)")
            }
            let dataSize = c.payloadSize - v.hashTreeSize
            guard dataSize % 4096 == 0 else {
                throw BundleError(.verity, path: path, "payload data size \(dataSize) (payload \(c.payloadSize) - verity-size \(v.hashTreeSize)) is not a multiple of 4096")
            }
            if let bad = try VerityHashTree.verify(path: path, dataSize: dataSize, params: v) {
                throw BundleError(.verity, path: path, bad.description)
            }
            checks.append("verity hash tree")
        }
        try checkManifestRules(manifest, bundlePath: path)
        if options.checkImages {
            try checkImagesInPayload(manifest, bundlePath: path, reader: options.reader)
            checks.append("image checksums")
        }
        return VerifiedBundle(path: path, format: manifest.format, fileSize: c.fileSize, payloadSize: c.payloadSize,
                              signatureSize: c.signatureSize, manifest: manifest, manifestText: manifestText,
                              chain: sig.chain, signingTime: sig.signingTime, checks: checks)
    }

    static func parseManifest(_ text: String, bundlePath: String, what: String) throws -> Manifest {
        do {
            return try Manifest.parse(text, path: bundlePath + " (" + what + ")")
        } catch let e as KeyFile.ParseError {
            throw BundleError(.manifest, path: nil, e.description)
        }
    }

    /// rauc's check_manifest_internal rules for images.
    static func checkManifestRules(_ m: Manifest, bundlePath: String) throws {
        for img in m.images {
            guard let name = img.filename else { continue }
            guard img.sha256 != nil else { throw BundleError(.manifest, path: bundlePath, "[\(img.groupName)] missing sha256 for image \(name)") }
            guard img.size != nil || img.hooks.contains("install") else {
                throw BundleError(.manifest, path: bundlePath, "[\(img.groupName)] missing size for image \(name)")
            }
        }
    }

    static func checkImagesInPayload(_ m: Manifest, bundlePath: String, reader: any PayloadImageReader) throws {
        let images = m.images.filter { $0.filename != nil }
        try Parallel.run(images.count) { i in
            try checkOneImage(images[i], bundlePath: bundlePath) { name, sink in
                try reader.stream(image: bundlePath, file: name, sink: sink)
            }
        }
    }

    static func checkOneImage(_ img: ManifestImage, bundlePath: String,
                              open: (String, (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        guard let name = img.filename else { return }
        let h = SHA256()
        var size: UInt64 = 0
        do {
            try open(name) { buf in
                h.update(buf)
                size += UInt64(buf.count)
            }
        } catch let e as BundleError where e.check == .payload {
            throw BundleError(.image, path: bundlePath, "[\(img.groupName)] image file '\(name)' is missing from the payload (\(e.message))")
        }
        let got = h.hexDigest()
        if let want = img.size, want != size {
            throw BundleError(.image, path: bundlePath, "[\(img.groupName)] '\(name)' is \(size) bytes in the payload, manifest says size=\(want)")
        }
        if let want = img.sha256, want.lowercased() != got {
            throw BundleError(.image, path: bundlePath, "[\(img.groupName)] '\(name)' has sha256 \(got) in the payload, manifest says \(want)")
        }
    }

    static func sha256(of path: String, length: UInt64) throws -> [UInt8] {
        let h = SHA256()
        try FileReading.forEachChunk(path, length: length) { chunk, _ in h.update(chunk) }
        return h.finalize()
    }

    /// `osbuild bundle extract`: full verification, then unpack the payload into a new
    /// directory and check every image file there against the manifest.
    @discardableResult
    public static func extract(_ bundlePath: String, to directory: String, options: BundleVerifyOptions) throws -> VerifiedBundle {
        let dir = FileSystem.absolute(directory)
        if FileSystem.exists(dir) {
            throw BundleError(.input, path: dir, "output directory already exists; choose a new path")
        }
        var opts = options
        opts.checkImages = false
        var verified = try verify(bundlePath, options: opts)
        // Unpack next to the target, then rename: no half-extracted directory at `dir`.
        let tmp = FileSystem.dirname(dir) + "/.osbuild-tmp-extract-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try options.reader.extractAll(image: verified.path, to: tmp)
            for img in verified.manifest.images {
                try checkOneImage(img, bundlePath: verified.path) { name, sink in
                    let p = tmp + "/" + name
                    guard FileSystem.exists(p) else { throw BundleError(.payload, path: p, "not found") }
                    try streamFile(p, sink)
                }
            }
            try FileSystem.rename(tmp, dir)
        } catch {
            try? FileSystem.removeTree(tmp)
            throw error
        }
        verified.checks.append("image checksums")
        return verified
    }

    static func streamFile(_ path: String, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try FileReading.forEachChunk(path) { chunk, _ in try sink(chunk) }
    }

    /// `osbuild bundle resign`: verify with the old keyring, then replace only the
    /// signature (the payload and, for verity, salt/tree/root hash stay byte-identical).
    @discardableResult
    public static func resign(_ bundlePath: String, output: String, options: BundleVerifyOptions,
                              identity: SigningIdentity, epoch: Int64?) throws -> VerifiedBundle {
        let verified = try verify(bundlePath, options: options)
        let out = FileSystem.absolute(output)
        try AtomicOutputFile.write(out, mode: 0o644) { file in
            try copyPrefix(from: verified.path, length: verified.payloadSize, to: file)
            let cms: [UInt8]
            if verified.format == .plain {
                cms = try CMS.sign(contentFile: file.tempPath, detached: true, identity: identity, signingTime: epoch)
            } else {
                cms = try CMS.sign(contentBytes: Array(verified.manifestText.utf8), detached: false, identity: identity, signingTime: epoch)
            }
            try BundleWriter.appendSignature(cms, to: file, at: verified.payloadSize)
        }
        return verified
    }

    static func copyPrefix(from path: String, length: UInt64, to file: AtomicOutputFile) throws {
        try FileReading.forEachChunk(path, length: length, chunkSize: 4 << 20) { chunk, offset in
            try file.pwrite(chunk, at: offset)
        }
    }
}
