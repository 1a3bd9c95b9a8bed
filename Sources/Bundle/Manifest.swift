import Basics

/// Bundle container formats RAUC 1.8 knows. `crypt` is parsed (so `info` can name it)
/// but osbuild does not create or decrypt it.
public enum BundleFormat: String, Sendable, Codable {
    case plain, verity, crypt
}

/// dm-verity parameters carried in the signed manifest of a verity bundle.
public struct VerityParameters: Sendable, Equatable {
    public var rootHash: [UInt8]  // 32 bytes
    public var salt: [UInt8]  // 32 bytes
    public var hashTreeSize: UInt64  // bytes, multiple of 4096
    public init(rootHash: [UInt8], salt: [UInt8], hashTreeSize: UInt64) {
        self.rootHash = rootHash
        self.salt = salt
        self.hashTreeSize = hashTreeSize
    }
}

/// One `[image.<slotclass>[.<variant>]]` group.
public struct ManifestImage: Sendable, Equatable {
    public var slotClass: String
    public var variant: String?
    public var filename: String?
    public var sha256: String?
    public var size: UInt64?
    public var hooks: [String]
    public var adaptive: [String]

    public init(slotClass: String, variant: String? = nil, filename: String?, sha256: String? = nil,
                size: UInt64? = nil, hooks: [String] = [], adaptive: [String] = []) {
        self.slotClass = slotClass
        self.variant = variant
        self.filename = filename
        self.sha256 = sha256
        self.size = size
        self.hooks = hooks
        self.adaptive = adaptive
    }

    public var groupName: String { "image." + slotClass + (variant.map { "." + $0 } ?? "") }
}

/// `manifest.raucm`: what RAUC 1.8 accepts, with its rules (unknown keys and groups are
/// errors, `[meta.*]` is kept but ignored by RAUC).
public struct Manifest: Sendable, Equatable {
    public var compatible: String
    public var version: String?
    public var description: String?
    public var build: String?
    public var format: BundleFormat
    public var verity: VerityParameters?
    public var cryptKey: String?
    public var handlerFilename: String?
    public var handlerArgs: String?
    public var hookFilename: String?
    public var bundleHooks: [String]
    public var images: [ManifestImage]
    /// `[meta.<label>]` groups, in file order, values unescaped.
    public var meta: [(label: String, entries: [(key: String, value: String)])]

    public init(compatible: String, version: String? = nil, description: String? = nil, build: String? = nil,
                format: BundleFormat = .plain, images: [ManifestImage] = []) {
        self.compatible = compatible
        self.version = version
        self.description = description
        self.build = build
        self.format = format
        self.verity = nil
        self.cryptKey = nil
        self.handlerFilename = nil
        self.handlerArgs = nil
        self.hookFilename = nil
        self.bundleHooks = []
        self.images = images
        self.meta = []
    }

    public static func == (a: Manifest, b: Manifest) -> Bool {
        a.compatible == b.compatible && a.version == b.version && a.description == b.description
            && a.build == b.build && a.format == b.format && a.verity == b.verity && a.cryptKey == b.cryptKey
            && a.handlerFilename == b.handlerFilename && a.handlerArgs == b.handlerArgs
            && a.hookFilename == b.hookFilename && a.bundleHooks == b.bundleHooks && a.images == b.images
            && a.meta.map(\.label) == b.meta.map(\.label)
            && a.meta.map { $0.entries.map { $0.key + "=" + $0.value } } == b.meta.map { $0.entries.map { $0.key + "=" + $0.value } }
    }

    // MARK: parsing

    public static func parse(_ text: String, path: String) throws -> Manifest {
        try parse(KeyFile.parse(text, path: path))
    }

    public static func parse(_ kf: KeyFile) throws -> Manifest {
        func err(_ group: String, _ key: String?, _ msg: String) -> KeyFile.ParseError {
            KeyFile.ParseError(location: kf.location(group, key), message: msg)
        }
        func onlyKeys(_ group: String, _ allowed: Set<String>) throws {
            guard let g = kf.group(group) else { return }
            for e in g.entries where !allowed.contains(e.key) {
                throw err(group, e.key, "invalid key '\(e.key)' in group '[\(group)]' (RAUC rejects unknown keys; allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
        }
        func hex32(_ group: String, _ key: String) throws -> [UInt8]? {
            guard let s = try kf.string(group, key) else { return nil }
            guard s.utf8.count == 64, let b = Hex.decode(s) else {
                throw err(group, key, "'\(s)' is not 64 hex digits (32 bytes)")
            }
            return b
        }

        guard let compatible = try kf.string("update", "compatible") else {
            throw err("update", nil, "missing required key 'compatible' in group [update]")
        }
        var m = Manifest(compatible: compatible)
        try onlyKeys("update", ["compatible", "version", "description", "build"])
        m.version = try kf.string("update", "version")
        m.description = try kf.string("update", "description")
        m.build = try kf.string("update", "build")

        try onlyKeys("bundle", ["format", "verity-hash", "verity-salt", "verity-size", "crypt-key"])
        let fmt = try kf.string("bundle", "format") ?? "plain"
        guard let format = BundleFormat(rawValue: fmt) else {
            throw err("bundle", "format", "invalid format value '\(fmt)' in group '[bundle]' (use plain or verity)")
        }
        m.format = format
        if format == .plain {
            try onlyKeys("bundle", ["format"])
        } else {
            if format == .verity { try onlyKeys("bundle", ["format", "verity-hash", "verity-salt", "verity-size"]) }
            let hash = try hex32("bundle", "verity-hash")
            let salt = try hex32("bundle", "verity-salt")
            let size = try kf.uint64("bundle", "verity-size")
            if hash != nil || salt != nil || size != nil {
                guard let hash else { throw err("bundle", nil, "missing hash for \(fmt) bundle (verity-hash)") }
                guard let salt else { throw err("bundle", nil, "missing salt for \(fmt) bundle (verity-salt)") }
                guard let size, size > 0 else { throw err("bundle", "verity-size", "missing size for \(fmt) bundle (verity-size)") }
                guard size % 4096 == 0 else { throw err("bundle", "verity-size", "unaligned size for \(fmt) bundle: \(size) is not a multiple of 4096") }
                m.verity = VerityParameters(rootHash: hash, salt: salt, hashTreeSize: size)
            }
            m.cryptKey = try kf.string("bundle", "crypt-key")
        }

        try onlyKeys("handler", ["filename", "args"])
        m.handlerFilename = try kf.string("handler", "filename")
        m.handlerArgs = try kf.string("handler", "args")

        try onlyKeys("hooks", ["filename", "hooks"])
        m.hookFilename = try kf.string("hooks", "filename")
        m.bundleHooks = try kf.list("hooks", "hooks") ?? []
        for h in m.bundleHooks where h != "install-check" {
            throw err("hooks", "hooks", "bundle hook '\(h)' not supported (only install-check)")
        }

        for g in kf.groups {
            switch g.name {
            case "update", "bundle", "handler", "hooks": continue
            default: break
            }
            if g.name.hasPrefix("meta.") {
                var entries: [(String, String)] = []
                for e in g.entries { entries.append((e.key, try kf.string(g.name, e.key) ?? "")) }
                m.meta.append((String(g.name.dropFirst(5)), entries))
                continue
            }
            guard g.name.hasPrefix("image.") else {
                throw err(g.name, nil, "invalid group '[\(g.name)]' (RAUC accepts [update], [bundle], [hooks], [handler], [image.*], [meta.*])")
            }
            // Same split as RAUC: at most three dot-separated parts.
            let parts = g.name.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 2, !parts[1].isEmpty else {
                throw err(g.name, nil, "image group needs a slot class: [image.<slotclass>]")
            }
            try onlyKeys(g.name, ["filename", "sha256", "size", "hooks", "adaptive"])
            var img = ManifestImage(slotClass: parts[1], variant: parts.count == 3 ? parts[2] : nil, filename: try kf.string(g.name, "filename"))
            img.sha256 = try kf.string(g.name, "sha256")
            if let s = img.sha256, s.utf8.count != 64 || Hex.decode(s) == nil {
                throw err(g.name, "sha256", "'\(s)' is not a SHA-256 hex digest")
            }
            img.size = try kf.uint64(g.name, "size")
            img.hooks = try kf.list(g.name, "hooks") ?? []
            for h in img.hooks where !["pre-install", "install", "post-install"].contains(h) {
                throw err(g.name, "hooks", "slot hook '\(h)' not supported (pre-install, install, post-install)")
            }
            img.adaptive = try kf.list(g.name, "adaptive") ?? []
            if img.filename == nil && !img.hooks.contains("install") {
                throw err(g.name, nil, "missing key 'filename' (only images with an 'install' hook may omit it)")
            }
            m.images.append(img)
        }
        let usesHooks = !m.bundleHooks.isEmpty || m.images.contains { !$0.hooks.isEmpty }
        if usesHooks && m.hookFilename == nil {
            throw err("hooks", nil, "hooks used, but no hook 'filename' defined in [hooks] section")
        }
        return m
    }

    // MARK: rendering

    /// Text in RAUC's normalized order (what `rauc bundle` writes).
    /// `signed` = include the verity keys (external manifest) or not (the squashfs copy).
    public func render(includeVerity: Bool) -> String {
        var w = KeyFileWriter()
        w.group("update", [
            ("compatible", KeyFile.escape(compatible)),
            ("version", version.map { KeyFile.escape($0) }),
            ("description", description.map { KeyFile.escape($0) }),
            ("build", build.map { KeyFile.escape($0) }),
        ])
        if format != .plain {
            let v = includeVerity ? verity : nil
            w.group("bundle", [
                ("crypt-key", includeVerity ? cryptKey : nil),
                ("format", format.rawValue),
                ("verity-hash", v.map { Hex.encode($0.rootHash) }),
                ("verity-salt", v.map { Hex.encode($0.salt) }),
                ("verity-size", v.map { String($0.hashTreeSize) }),
            ])
        }
        if handlerFilename != nil || handlerArgs != nil {
            w.group("handler", [("filename", handlerFilename.map { KeyFile.escape($0) }), ("args", handlerArgs.map { KeyFile.escape($0) })])
        }
        if hookFilename != nil || !bundleHooks.isEmpty {
            w.group("hooks", [
                ("filename", hookFilename.map { KeyFile.escape($0) }),
                ("hooks", bundleHooks.isEmpty ? nil : KeyFile.escapeList(bundleHooks)),
            ])
        }
        for img in images {
            w.group(img.groupName, [
                ("sha256", img.sha256),
                ("size", img.size.map { String($0) }),
                ("filename", img.filename.map { KeyFile.escape($0) }),
                ("hooks", img.hooks.isEmpty ? nil : KeyFile.escapeList(img.hooks)),
                ("adaptive", img.adaptive.isEmpty ? nil : KeyFile.escapeList(img.adaptive)),
            ])
        }
        for (label, entries) in meta {
            w.group("meta." + label, entries.map { ($0.key, KeyFile.escape($0.value)) })
        }
        return w.text
    }
}
