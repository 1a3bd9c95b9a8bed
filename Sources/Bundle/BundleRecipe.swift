import Basics
import Foundation

/// A bundle described by a board build (rather than a hand-made content dir): the build
/// stage fills this in from the board and its produced images.
public struct BundleRecipe: Sendable {
    public struct Image: Sendable {
        public var slotClass: String
        public var variant: String?
        /// Host path of the image produced by the build.
        public var source: String
        /// Name inside the bundle; defaults to the source's basename.
        public var filename: String?
        public var hooks: [String]
        public var adaptive: [String]
        public init(slotClass: String, variant: String? = nil, source: String, filename: String? = nil,
                    hooks: [String] = [], adaptive: [String] = []) {
            self.slotClass = slotClass
            self.variant = variant
            self.source = source
            self.filename = filename
            self.hooks = hooks
            self.adaptive = adaptive
        }
    }

    public var compatible: String
    public var version: String?
    public var description: String?
    public var build: String?
    public var format: BundleFormat
    /// Host path of the hook script (packed as `hook` unless it has a name of its own).
    public var hookScript: String?
    public var bundleHooks: [String]
    public var images: [Image]

    public init(compatible: String, version: String? = nil, description: String? = nil, build: String? = nil,
                format: BundleFormat = .verity, hookScript: String? = nil, bundleHooks: [String] = [], images: [Image]) {
        self.compatible = compatible
        self.version = version
        self.description = description
        self.build = build
        self.format = format
        self.hookScript = hookScript
        self.bundleHooks = bundleHooks
        self.images = images
    }

    /// The manifest this recipe produces (sha256/size are added by `BundleWriter`).
    public var manifest: Manifest {
        var m = Manifest(compatible: compatible, version: version, description: description, build: build, format: format)
        m.hookFilename = hookScript.map(FileSystem.basename)
        m.bundleHooks = bundleHooks
        m.images = images.map {
            ManifestImage(slotClass: $0.slotClass, variant: $0.variant, filename: $0.filename ?? FileSystem.basename($0.source),
                          hooks: $0.hooks, adaptive: $0.adaptive)
        }
        return m
    }

    /// Stages a fresh content dir in `stagingDirectory` (hard links; copies across file
    /// systems) and writes the bundle to `output` atomically.
    @discardableResult
    public func createBundle(stagingDirectory: String, output: String, options: BundleCreateOptions) throws -> BundleLayout {
        let m = manifest
        var names = Set<String>()
        var files: [(String, String)] = []
        for (img, entry) in zip(images, m.images) {
            guard let name = entry.filename else { continue }
            files.append((img.source, name))
        }
        if let hook = hookScript { files.append((hook, FileSystem.basename(hook))) }
        for (_, name) in files {
            guard !name.contains("/"), name != BundleWriter.manifestName, names.insert(name).inserted else {
                throw BundleError(.input, path: nil, "bundle file name '\(name)' is used twice, contains '/', or is reserved")
            }
        }
        try FileSystem.removeTree(stagingDirectory)
        try FileSystem.makeDirectories(stagingDirectory)
        for (source, name) in files {
            try linkOrCopy(source, stagingDirectory + "/" + name)
        }
        try FileSystem.writeAtomically(stagingDirectory + "/" + BundleWriter.manifestName, m.render(includeVerity: false))
        return try BundleWriter.create(contentDirectory: stagingDirectory, output: output, options: options)
    }

    func linkOrCopy(_ source: String, _ dest: String) throws {
        guard let st = try FileSystem.lstatIfExists(source), st.isRegular else {
            throw BundleError(.input, path: source, "bundle input is missing or not a regular file")
        }
        if link(source, dest) == 0 { return }
        guard errno == EXDEV || errno == EPERM else { throw SystemError("link \(source) ->", path: dest, errno: errno) }
        try AtomicOutputFile.write(dest, mode: mode_t(st.mode & 0o777)) { out in
            try BundleReader.streamFile(source) { try out.write($0) }
        }
    }
}

/// Which key signs a build: the board's own key/cert, or development keys (with a warning).
public enum BundleSigning {
    public struct Choice: Sendable {
        public var identity: SigningIdentity
        /// Non-nil when development keys are used: print it on every build.
        public var warning: String?
        public var generatedKeys: Bool
        /// Trust anchor of the identity (development CA) when development keys are used.
        public var developmentCA: String?
    }

    public static func resolve(cert: String?, key: String?, intermediates: [String] = [],
                               developmentKeysDirectory: String, release: Bool) throws -> Choice {
        switch (cert, key) {
        case let (c?, k?):
            let id = SigningIdentity(certPath: c, keyPath: k, intermediatePaths: intermediates)
            try DevelopmentKeys.checkSigningAllowed(id, release: release)
            let dev = try DevelopmentKeys.isDevelopment(certificate: c)
            return Choice(identity: id, warning: dev ? DevelopmentKeys.warning : nil, generatedKeys: false, developmentCA: nil)
        case (nil, nil):
            if release {
                throw BundleError(.key, path: nil, "release builds need the board's signing key and certificate; development keys are refused")
            }
            let (paths, generated) = try DevelopmentKeys.ensure(in: developmentKeysDirectory)
            var id = paths.identity
            id.intermediatePaths = intermediates
            return Choice(identity: id, warning: DevelopmentKeys.warning, generatedKeys: generated, developmentCA: paths.caCert)
        default:
            throw BundleError(.key, path: cert ?? key, "signing key and certificate must be given together")
        }
    }
}
