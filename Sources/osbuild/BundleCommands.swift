import ArgumentParser
import Basics
import Bundle
import Foundation

/// `osbuild bundle create|info|extract|resign`: RAUC-compatible update bundles.
struct BundleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Create and verify RAUC-compatible signed update bundles (.raucb).",
        subcommands: [BundleCreate.self, BundleInfo.self, BundleExtract.self, BundleResign.self, BundleInstall.self]
    )
}

struct KeyringOptions: ParsableArguments {
    @Option(help: "PEM file (or directory) with the trusted certificates.")
    var keyring: String

    @Option(help: "Certificate purpose to enforce: codesign, smimesign or any (default: OpenSSL's S/MIME signing, as rauc).")
    var checkPurpose: String?

    @Flag(help: "Do not check certificate validity periods (like rauc info --no-check-time).")
    var noCheckTime = false

    func options(checkImages: Bool = true) -> BundleVerifyOptions {
        BundleVerifyOptions(policy: KeyringPolicy(keyringPath: keyring, checkPurpose: checkPurpose, checkTime: !noCheckTime),
                            checkImages: checkImages)
    }
}

struct BundleCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Build a bundle from CONTENT_DIR (manifest.raucm + the files it names), like `rauc bundle`.",
        discussion: """
            The format (plain or verity) comes from the manifest's [bundle] section. sha256 and size of
            every image are computed; the whole content directory is packed into the SquashFS payload.
            With SOURCE_DATE_EPOCH set the output is byte-identical for identical inputs (RSA keys).
            Without --cert/--key, development keys are created in (or reused from) --dev-keys.
            """
    )

    @Option(help: "Signing certificate (PEM).") var cert: String?
    @Option(help: "Signing private key (PEM; encrypted keys read RAUC_KEY_PASSPHRASE).") var key: String?
    @Option(help: "Intermediate certificate(s) to embed (PEM, repeatable).") var intermediate: [String] = []
    @Option(help: "Directory for development keys, used when --cert/--key are not given.") var devKeys: String?
    @Flag(help: "Release build: refuse development keys.") var release = false
    @Option(help: "Fixed 64-hex-digit dm-verity salt (default: random, or derived from content with SOURCE_DATE_EPOCH).")
    var veritySalt: String?
    @Option(help: "Extra mksquashfs arguments, space separated (e.g. \"-comp xz -b 64K\").") var mksquashfsArgs: String?
    @Argument(help: "Content directory with manifest.raucm.") var contentDir: String
    @Argument(help: "Output bundle path.") var output: String

    func run() throws {
        try runReportingErrors {
            var identity: SigningIdentity
            var usesDevKeys = false
            switch (cert, key) {
            case let (c?, k?):
                identity = SigningIdentity(certPath: c, keyPath: k, intermediatePaths: intermediate)
            case (nil, nil):
                guard let dir = devKeys else {
                    throw MessageError("give --cert and --key, or --dev-keys DIR to use development keys", exitCode: ExitStatus.usage)
                }
                let (paths, generated) = try DevelopmentKeys.ensure(in: dir)
                if generated { Console.shared.line("generated development keys in \(paths.directory)") }
                identity = paths.identity
                identity.intermediatePaths = intermediate
                usesDevKeys = true
            default:
                throw MessageError("--cert and --key must be given together", exitCode: ExitStatus.usage)
            }
            try DevelopmentKeys.checkSigningAllowed(identity, release: release)
            let isDev = try DevelopmentKeys.isDevelopment(certificate: identity.certPath)
            if usesDevKeys || isDev {
                Console.shared.error(Console.shared.paint(DevelopmentKeys.warning, .yellow))
            }
            var salt: [UInt8]?
            if let s = veritySalt {
                guard s.utf8.count == 64, let b = Hex.decode(s) else {
                    throw MessageError("--verity-salt must be 64 hex digits, got '\(s)'", exitCode: ExitStatus.usage)
                }
                salt = b
            }
            let layout = try BundleWriter.create(
                contentDirectory: contentDir, output: output,
                options: BundleCreateOptions(identity: identity, epoch: try BuildClock.sourceDateEpoch(), veritySalt: salt,
                                             mksquashfsArguments: mksquashfsArgs.map { $0.split(separator: " ").map(String.init) } ?? []))
            Console.shared.line("created \(layout.format.rawValue) bundle \(output): \(layout.fileSize) bytes (squashfs \(layout.squashfsSize), hash tree \(layout.hashTreeSize), signature \(layout.signatureSize))")
        }
    }
}

struct BundleInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Verify a bundle (trailer, signature + chain, payload / verity tree, every image's sha256 and size) and print its manifest."
    )

    @OptionGroup var keyringOptions: KeyringOptions
    @Flag(help: "Print JSON.") var json = false
    @Argument(help: "Bundle file.") var bundle: String

    func run() throws {
        try runReportingErrors {
            let v = try BundleReader.verify(bundle, options: keyringOptions.options())
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let data = try enc.encode(BundleInfoJSON(v))
                Console.shared.line(String(decoding: data, as: UTF8.self))
            } else {
                Console.shared.line(describe(v))
            }
        }
    }

    func describe(_ v: VerifiedBundle) -> String {
        let m = v.manifest
        func q(_ s: String?) -> String { "'\(s ?? "(null)")'" }
        var lines = [
            "Compatible:  \t\(q(m.compatible))",
            "Version:     \t\(q(m.version))",
            "Description: \t\(q(m.description))",
            "Build:       \t\(q(m.build))",
            "Hooks:       \t'\(m.bundleHooks.joined(separator: " "))'",
            "Bundle Format:\t\(v.format.rawValue)",
        ]
        if let vp = m.verity {
            lines += ["  Verity Salt:\t'\(Hex.encode(vp.salt))'", "  Verity Hash:\t'\(Hex.encode(vp.rootHash))'", "  Verity Size:\t\(vp.hashTreeSize)"]
        }
        lines += ["", "\(m.images.count) Image\(m.images.count == 1 ? "" : "s"):"]
        for img in m.images {
            lines.append("  [\(img.slotClass)\(img.variant.map { "." + $0 } ?? "")]")
            lines.append("\tFilename:  \(img.filename ?? "(none)")")
            lines.append("\tChecksum:  \(img.sha256 ?? "(none)")")
            lines.append("\tSize:      \(img.size.map(String.init) ?? "(none)")")
            if !img.hooks.isEmpty { lines.append("\tHooks:     \(img.hooks.joined(separator: " "))") }
            if !img.adaptive.isEmpty { lines.append("\tAdaptive:  \(img.adaptive.joined(separator: " "))") }
        }
        lines += ["", "Certificate Chain:"]
        for (i, c) in v.chain.enumerated() {
            lines += [" \(i) Subject: \(c.subject)", "   Issuer: \(c.issuer)", "   SPKI sha256: \(c.spkiSHA256)",
                      "   Not Before: \(c.notBefore)", "   Not After:  \(c.notAfter)"]
        }
        lines += ["", "Verified: " + v.checks.joined(separator: ", ")]
        return lines.joined(separator: "\n")
    }
}

struct BundleInfoJSON: Encodable {
    struct Image: Encodable {
        var slotclass: String
        var variant: String?
        var filename: String?
        var checksum: String?
        var size: UInt64?
        var hooks: [String]
        var adaptive: [String]
    }
    struct Verity: Encodable {
        var hash: String
        var salt: String
        var size: UInt64
    }
    var path: String
    var format: String
    var compatible: String
    var version: String?
    var description: String?
    var build: String?
    var hooks: [String]
    var images: [Image]
    var verity: Verity?
    var signingTime: String?
    var certificateChain: [CertificateInfo]
    var verified: [String]
    var sizes: [String: UInt64]

    init(_ v: VerifiedBundle) {
        let m = v.manifest
        path = v.path
        format = v.format.rawValue
        compatible = m.compatible
        version = m.version
        description = m.description
        build = m.build
        hooks = m.bundleHooks
        images = m.images.map { Image(slotclass: $0.slotClass, variant: $0.variant, filename: $0.filename, checksum: $0.sha256,
                                      size: $0.size, hooks: $0.hooks, adaptive: $0.adaptive) }
        verity = m.verity.map { Verity(hash: Hex.encode($0.rootHash), salt: Hex.encode($0.salt), size: $0.hashTreeSize) }
        signingTime = v.signingTime
        certificateChain = v.chain
        verified = v.checks
        sizes = ["file": v.fileSize, "payload": v.payloadSize, "signature": v.signatureSize]
    }
}

struct BundleExtract: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Verify a bundle, then unpack its payload into a new directory (images re-checked there)."
    )
    @OptionGroup var keyringOptions: KeyringOptions
    @Argument(help: "Bundle file.") var bundle: String
    @Argument(help: "Output directory (must not exist).") var directory: String

    func run() throws {
        try runReportingErrors {
            let v = try BundleReader.extract(bundle, to: directory, options: keyringOptions.options(checkImages: false))
            Console.shared.line("extracted \(v.format.rawValue) bundle '\(v.manifest.compatible)' \(v.manifest.version ?? "") to \(directory)")
        }
    }
}

struct BundleResign: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resign",
        abstract: "Verify a bundle with --keyring, then replace its signature (payload unchanged).",
        discussion: "For verity bundles the salt, hash tree and root hash are kept; only the CMS changes."
    )
    @OptionGroup var keyringOptions: KeyringOptions
    @Option(help: "New signing certificate (PEM).") var cert: String
    @Option(help: "New signing private key (PEM).") var key: String
    @Option(help: "Intermediate certificate(s) to embed (PEM, repeatable).") var intermediate: [String] = []
    @Flag(help: "Release: refuse development keys.") var release = false
    @Argument(help: "Input bundle.") var input: String
    @Argument(help: "Output bundle.") var output: String

    func run() throws {
        try runReportingErrors {
            let identity = SigningIdentity(certPath: cert, keyPath: key, intermediatePaths: intermediate)
            try DevelopmentKeys.checkSigningAllowed(identity, release: release)
            try BundleReader.resign(input, output: output, options: keyringOptions.options(), identity: identity,
                                    epoch: try BuildClock.sourceDateEpoch())
            Console.shared.line("re-signed \(input) -> \(output) with \(try Certificates.subject(ofCertificateFile: cert))")
        }
    }
}
