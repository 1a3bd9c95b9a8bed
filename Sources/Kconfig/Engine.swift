import Basics
import Foundation

/// How to load a kernel's Kconfig tree: source directory, architecture, toolchain.
public struct KconfigOptions: Sendable {
    public var kernelSource: String
    public var arch: String
    /// CROSS_COMPILE prefix; CC/LD default to `<prefix>gcc` / `<prefix>ld` like the kernel
    /// Makefile (pass `cc`/`ld` for what would be `make CC=... LD=...`).
    public var crossCompile: String
    public var cc: String?
    public var ld: String?
    /// Directory for the probe cache; nil disables caching.
    public var probeCacheDirectory: String?
    /// Base environment (PATH etc.); the kernel variables are added on top.
    public var environment: [String: String]
    /// Run the toolchain probes concurrently when the cache is cold.
    public var parallelProbes = true

    public init(
        kernelSource: String, arch: String, crossCompile: String? = nil, cc: String? = nil, ld: String? = nil,
        probeCacheDirectory: String? = KconfigOptions.defaultCacheDirectory(),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.kernelSource = kernelSource
        self.arch = arch
        self.crossCompile = crossCompile ?? environment["CROSS_COMPILE"] ?? ""
        // Like the kernel Makefile, which assigns CC/LD itself: an ambient $CC is ignored.
        self.cc = cc
        self.ld = ld
        self.probeCacheDirectory = probeCacheDirectory
        self.environment = environment
    }

    /// `$OSBUILD_KCONFIG_CACHE`, else `$XDG_CACHE_HOME/osbuild/kconfig-probes`, else `~/.cache/...`.
    public static func defaultCacheDirectory(_ env: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let d = env["OSBUILD_KCONFIG_CACHE"] { return d.isEmpty ? nil : d }
        if let x = env["XDG_CACHE_HOME"], !x.isEmpty { return x + "/osbuild/kconfig-probes" }
        if let h = env["HOME"], !h.isEmpty { return h + "/.cache/osbuild/kconfig-probes" }
        return nil
    }

    /// The kernel Makefile's ARCH -> SRCARCH mapping.
    public var srcarch: String {
        switch arch {
        case "i386", "x86_64": "x86"
        case "sparc32", "sparc64": "sparc"
        case "parisc64": "parisc"
        case "sh64": "sh"
        default: arch
        }
    }
}

extension KconfigTree {
    /// Parses the whole tree of `options.kernelSource` for `options.arch`, running the
    /// toolchain probes (cached), and resolves dependencies. No configuration is loaded.
    public static func load(_ options: KconfigOptions) throws -> KconfigTree {
        let src = FileSystem.absolute(options.kernelSource)
        guard FileSystem.exists(src + "/Kconfig") else {
            throw KconfigError.usage("\(src): not a kernel source tree (no Kconfig file at its top)")
        }
        guard FileSystem.exists(src + "/arch/\(options.srcarch)/Kconfig") else {
            throw KconfigError.usage("\(src): no arch/\(options.srcarch)/Kconfig: unknown architecture '\(options.arch)'")
        }
        var env = options.environment
        let xc = options.crossCompile
        let cc = options.cc ?? xc + "gcc"
        let ld = options.ld ?? xc + "ld"
        let kv = try kernelVersion(src)
        let kernelEnv: [String: String] = [
            "ARCH": options.arch, "SRCARCH": options.srcarch, "srctree": src, "CC": cc, "LD": ld,
            "CROSS_COMPILE": xc, "KERNELVERSION": kv, "HOSTCC": "gcc", "HOSTCXX": "g++", "RUSTC": "rustc",
            "BINDGEN": "bindgen", "PAHOLE": "pahole", "NM": xc + "nm", "OBJCOPY": xc + "objcopy",
            "OBJDUMP": xc + "objdump", "AR": xc + "ar", "READELF": xc + "readelf", "STRIP": xc + "strip",
            "CPP": cc + " -E", "LC_COLLATE": "C", "LC_NUMERIC": "C", "CONFIG_SHELL": "sh", "PERL": "perl",
            "PYTHON3": "python3", "HOSTPKG_CONFIG": "pkg-config",
        ]
        env.merge(kernelEnv) { _, n in n }
        let probes = ProbeRunner(environment: env, cacheDirectory: options.probeCacheDirectory)
        let cold = probes.isCacheEmpty
        // The kernel Makefile always exports this itself.
        env["CC_VERSION_TEXT"] = String(decoding: try probes.run("\(cc) --version 2>/dev/null | head -n 1"), as: UTF8.self)
        if cold && options.parallelProbes {
            // Cold cache: a cheap scan (macros only, no tree) collects the probe commands,
            // answering them with a placeholder; they run on all cores; a second scan picks
            // up commands built from another probe's answer. The real parse then finds
            // (almost) everything cached; the rest runs in sequence as usual.
            for _ in 0..<2 {
                probes.recording = true
                let scanner = Parser(tree: KconfigTree(sourceTree: src), pp: Preprocessor(environment: env, probes: probes))
                try? scanner.scanOnly(file: "Kconfig")
                probes.recording = false
                if probes.runPending() == 0 { break }
            }
        }
        let tree = try parse(sourceTree: src, environment: env, probes: probes)
        probes.save()
        tree.probeStats = (probes.executed, probes.cacheHits)
        return tree
    }

    /// Parses `Kconfig` at the top of `sourceTree` with the given macro environment.
    static func parse(sourceTree: String, environment: [String: String], probes: ProbeRunner, top: String = "Kconfig") throws -> KconfigTree {
        let tree = KconfigTree(sourceTree: sourceTree)
        let pp = Preprocessor(environment: environment, probes: probes)
        let parser = Parser(tree: tree, pp: pp)
        let t0 = DispatchTime.now().uptimeNanoseconds
        try parser.parse(file: top)
        let t1 = DispatchTime.now().uptimeNanoseconds
        defer {
            if ProbeRunner.debug {
                let t2 = DispatchTime.now().uptimeNanoseconds
                FileHandleDebug.write("kconfig: parse \((t1 - t0) / 1_000_000) ms, finalize \((t2 - t1) / 1_000_000) ms\n")
            }
        }
        tree.messages += pp.messages
        if tree.modulesSym == 0 { tree.modulesSym = KconfigTree.no }
        if tree.root.prompt == nil {
            let p = Property(kind: .menu, menu: tree.root, file: 0, line: 0)
            p.text = "Main menu"
            tree.root.prompt = p
        }
        tree.finalize()
        try tree.checkRecursiveDependencies()
        return tree
    }

    /// Parses a standalone Kconfig file (tests, small trees); `$(shell,...)` still works.
    public static func parse(file: String, environment: [String: String] = [:]) throws -> KconfigTree {
        let dir = FileSystem.dirname(FileSystem.absolute(file))
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, n in n }
        let probes = ProbeRunner(environment: env, cacheDirectory: nil)
        return try parse(sourceTree: dir, environment: env, probes: probes, top: FileSystem.basename(file))
    }

    /// VERSION.PATCHLEVEL.SUBLEVEL+EXTRAVERSION from the top Makefile.
    public static func kernelVersion(_ src: String) throws -> String {
        let text = try FileSystem.readText(src + "/Makefile")
        var v: [String: String] = [:]
        for line in text.split(separator: "\n").prefix(20) {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            v[parts[0].trimmingCharacters(in: .whitespaces)] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        guard let a = v["VERSION"], let b = v["PATCHLEVEL"] else {
            throw KconfigError.io(path: src + "/Makefile", message: "no VERSION/PATCHLEVEL lines: not a kernel Makefile")
        }
        var s = "\(a).\(b)"
        if let c = v["SUBLEVEL"], !c.isEmpty { s += ".\(c)" }
        return s + (v["EXTRAVERSION"] ?? "")
    }

    /// Loads a configuration and resolves it the way `make olddefconfig` does
    /// (`asDefconfig`: the way `make <name>_defconfig` does). Returns the .config text.
    @discardableResult
    public func resolve(_ assignments: [ConfigAssignment], asDefconfig: Bool = false) -> (config: String, warnings: [String]) {
        var warnings: [String] = []
        lastOrigins = readUserValues(assignments, warnings: &warnings)
        var changed = postRead(warnings: warnings.count)
        if asDefconfig {
            clearAllValid()
            changed = true
        }
        return (configText(changed: changed), warnings)
    }

    /// The current value of a symbol as it would appear after `CONFIG_X=` ("n" for off,
    /// strings unquoted); nil when the tree has no such symbol.
    public func value(of name: String) -> String? {
        guard let s = findForConfig(name), s.type != .unknown, !s.isChoice else { return nil }
        calc(s)
        return stringValue(s)
    }

    /// Whether the symbol would be written to .config at all.
    public func isWritten(_ name: String) -> Bool {
        guard let s = findForConfig(name), s.type != .unknown else { return false }
        calc(s)
        return s.flags.contains(.write)
    }

    public func type(of name: String) -> SymbolType? {
        guard let s = findForConfig(name), s.type != .unknown else { return nil }
        return s.type
    }
}
