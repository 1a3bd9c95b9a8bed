import Basics
import FSTree
#if canImport(Glibc)
import Glibc
#endif

/// Kernel-module selection for an initramfs: names as users write them (`virtio-blk`,
/// `virtio_blk`, an alias like `fs-ext4`) are resolved against the kernel's own
/// `modules.dep`, `modules.alias`, `modules.softdep` and `modules.builtin` (as written by
/// depmod), the dependency closure (hard deps and softdeps) is taken, and the `.ko*` files
/// plus consistent index files for the subset are copied. Nothing is executed.
public struct KernelModules: Sendable {
    public struct Unresolved: UserError {
        public var names: [String]
        public var modulesDir: String
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String {
            "\(names.count) kernel module name(s) match no module, alias or built-in in \(modulesDir): \(names.joined(separator: ", "))"
        }
    }

    public struct Resolution: Sendable, Hashable {
        /// Module files (relative to the modules dir) in load order: dependencies first.
        public var modules: [String]
        /// Requested names (and softdeps) that are built into the kernel: no file needed.
        public var builtin: [String]
    }

    /// Directory in the tree, e.g. "/lib/modules/6.1.0-13-amd64".
    public let directory: String
    public let version: String
    /// Module name (normalized) -> relative path.
    public private(set) var byName: [String: String] = [:]
    /// Relative path -> relative paths of its dependencies (as depmod listed them).
    public private(set) var deps: [String: [String]] = [:]
    /// modules.dep order (depmod writes it in modules.order order).
    public private(set) var depOrder: [String] = []
    /// Normalized alias pattern -> module names, in file order.
    public private(set) var aliases: [(pattern: String, module: String)] = []
    public private(set) var builtinAliases: [(pattern: String, module: String)] = []
    public private(set) var builtin: Set<String> = []
    public private(set) var softdeps: [String: (pre: [String], post: [String])] = [:]
    /// Raw text of index files, for copying subsets.
    private var aliasLines: [(module: String, line: String)] = []
    private var softdepLines: [(module: String, line: String)] = []
    private var builtinText: [UInt8] = []

    /// `_` and `-` are the same in module names (libkmod's rule); inside `[...]` of a
    /// pattern they are left alone.
    public static func normalize(_ name: String) -> String {
        var out = ""
        var inBracket = false
        for c in name {
            if c == "[" { inBracket = true } else if c == "]" { inBracket = false }
            out.append(c == "-" && !inBracket ? "_" : c)
        }
        return out
    }

    /// "kernel/fs/ext4/ext4.ko.xz" -> "ext4".
    public static func moduleName(ofPath p: String) -> String {
        var base = FileSystem.basename(p)
        if let r = base.range(of: ".ko") { base = String(base[..<r.lowerBound]) }
        return normalize(base)
    }

    /// Find `lib/modules/VERSION` (or `usr/lib/modules/VERSION`) in `tree` and load its index files.
    public init(tree: FSTree, version: String? = nil) throws {
        var candidates: [(dir: String, version: String)] = []
        for base in ["/lib/modules", "/usr/lib/modules"] {
            guard let id = tree.lookup(base), tree[id].kind == .directory else { continue }
            for (name, _) in tree.children(of: id) where version == nil || name == version {
                if tree.lookup(base + "/" + name + "/modules.dep") != nil || version != nil {
                    candidates.append((base + "/" + name, name))
                }
            }
        }
        guard let pick = candidates.first else {
            throw RootfsError("no kernel modules directory \(version.map { "for version \($0) " } ?? "")with modules.dep under /lib/modules or /usr/lib/modules; run depmod for the kernel (make modules_install does)")
        }
        if candidates.count > 1 && version == nil {
            throw RootfsError("several kernel versions have modules (\(candidates.map(\.version).joined(separator: ", "))); name the kernel version")
        }
        directory = pick.dir
        self.version = pick.version
        try load(tree)
    }

    private static func readText(_ tree: FSTree, _ path: String, required: Bool) throws -> String? {
        guard let id = tree.lookup(path) else {
            if required { throw RootfsError("\(path) is missing; run depmod for this kernel") }
            return nil
        }
        guard tree[id].kind == .regular else { throw RootfsError("\(path) is a \(tree[id].kind), expected a file") }
        return String(decoding: try ContentReader(tree[id].content).readAll(), as: UTF8.self)
    }

    private mutating func load(_ tree: FSTree) throws {
        let depText = try Self.readText(tree, directory + "/modules.dep", required: true) ?? ""
        for (i, line) in depText.split(separator: "\n").enumerated() {
            guard let colon = line.firstIndex(of: ":") else {
                throw RootfsError("malformed line (no ':')", at: SourceLocation(file: directory + "/modules.dep", line: i + 1))
            }
            let path = String(line[..<colon])
            let ds = line[line.index(after: colon)...].split(separator: " ").map(String.init)
            deps[path] = ds
            depOrder.append(path)
            byName[Self.moduleName(ofPath: path)] = path
        }
        if let text = try Self.readText(tree, directory + "/modules.alias", required: false) {
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard f.count == 3, f[0] == "alias" else { continue }
                aliases.append((Self.normalize(String(f[1])), Self.normalize(String(f[2]))))
                aliasLines.append((Self.normalize(String(f[2])), String(line)))
            }
        }
        if let text = try Self.readText(tree, directory + "/modules.builtin.alias", required: false) {
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard f.count == 3, f[0] == "alias" else { continue }
                builtinAliases.append((Self.normalize(String(f[1])), Self.normalize(String(f[2]))))
            }
        }
        if let text = try Self.readText(tree, directory + "/modules.builtin", required: false) {
            builtinText = Array(text.utf8)
            for line in text.split(separator: "\n") { builtin.insert(Self.moduleName(ofPath: String(line))) }
        }
        if let text = try Self.readText(tree, directory + "/modules.softdep", required: false) {
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ").map(String.init)
                guard f.count >= 2, f[0] == "softdep" else { continue }
                var pre: [String] = [], post: [String] = []
                var mode = ""
                for w in f.dropFirst(2) {
                    if w == "pre:" || w == "post:" { mode = w; continue }
                    if mode == "pre:" { pre.append(w) } else if mode == "post:" { post.append(w) }
                }
                let m = Self.normalize(f[1])
                let old = softdeps[m] ?? ([], [])
                softdeps[m] = (old.pre + pre, old.post + post)
                softdepLines.append((m, String(line)))
            }
        }
    }

    enum Lookup { case modules([String]), builtin(String), none }

    /// libkmod's lookup order: exact module name, then modules.alias (fnmatch), then
    /// built-in modules and their aliases.
    func lookup(_ raw: String) -> Lookup {
        let n = Self.normalize(raw)
        if byName[n] != nil { return .modules([n]) }
        var hits: [String] = []
        for a in aliases where fnmatch(a.pattern, n, 0) == 0 && !hits.contains(a.module) && byName[a.module] != nil {
            hits.append(a.module)
        }
        if !hits.isEmpty { return .modules(hits) }
        if builtin.contains(n) { return .builtin(n) }
        for a in builtinAliases where fnmatch(a.pattern, n, 0) == 0 { return .builtin(a.module) }
        return .none
    }

    /// Resolve `names` to the closure of module files. Every unmatched name is reported at once.
    public func resolve(_ names: [String]) throws -> Resolution {
        var missing: [String] = []
        var order: [String] = []
        var seen = Set<String>()
        var builtinHits: [String] = []
        var visiting = Set<String>()

        func addModule(_ name: String) {
            guard let path = byName[name], !seen.contains(path), !visiting.contains(name) else { return }
            visiting.insert(name)
            defer { visiting.remove(name) }
            let soft = softdeps[name] ?? ([], [])
            for s in soft.pre { addName(s, soft: true) }
            for d in deps[path] ?? [] { addModule(Self.moduleName(ofPath: d)) }
            if seen.insert(path).inserted { order.append(path) }
            for s in soft.post { addName(s, soft: true) }
        }
        func addName(_ raw: String, soft: Bool) {
            switch lookup(raw) {
            case .modules(let ms): for m in ms { addModule(m) }
            case .builtin(let b): if !builtinHits.contains(b) { builtinHits.append(b) }
            case .none: if !soft { missing.append(raw) }  // softdeps on absent modules are ignored, as modprobe does
            }
        }
        for n in names { addName(n, soft: false) }
        if !missing.isEmpty { throw Unresolved(names: missing, modulesDir: directory) }
        return Resolution(modules: order, builtin: builtinHits)
    }

    /// Copy the resolved module files from `source` into `target` under the same directory,
    /// with modules.dep / modules.alias / modules.softdep / modules.order for the subset and
    /// modules.builtin copied whole (so modprobe in the initramfs knows built-ins).
    public func install(_ r: Resolution, from source: FSTree, into target: inout FSTree, mtime: Timestamp) throws {
        let dirTemplate = Inode.directory(mtime: mtime)
        let chosen = Set(r.modules)
        for rel in r.modules {
            let p = directory + "/" + rel
            guard let id = source.lookup(p), source[id].kind == .regular else {
                throw RootfsError("\(p) is listed in modules.dep but missing from the kernel's modules")
            }
            try target.insert(p, source[id], createParents: true, parentTemplate: dirTemplate)
        }
        var depText = ""
        for rel in depOrder where chosen.contains(rel) {
            let ds = deps[rel] ?? []
            for d in ds where !chosen.contains(d) {
                throw RootfsError("internal: dependency \(d) of \(rel) not in the closure")
            }
            depText += rel + ":" + ds.map { " " + $0 }.joined() + "\n"
        }
        let names = Set(r.modules.map(Self.moduleName(ofPath:)))
        func put(_ file: String, _ text: String) throws {
            try target.insert(directory + "/" + file, .file(text.isEmpty ? .empty : .bytes(Array(text.utf8)), mtime: mtime), createParents: true, parentTemplate: dirTemplate)
        }
        try put("modules.dep", depText)
        try put("modules.order", depOrder.filter { chosen.contains($0) }.map { $0 + "\n" }.joined())
        try put("modules.alias", aliasLines.filter { names.contains($0.module) }.map { $0.line + "\n" }.joined())
        try put("modules.softdep", softdepLines.filter { names.contains($0.module) }.map { $0.line + "\n" }.joined())
        if !builtinText.isEmpty { try put("modules.builtin", String(decoding: builtinText, as: UTF8.self)) }
        // Built-in module info, so depmod/modprobe in the target also know built-in aliases.
        for extra in ["modules.builtin.modinfo", "modules.builtin.alias"] {
            if let id = source.lookup(directory + "/" + extra), source[id].kind == .regular {
                var n = source[id]
                n.mtime = mtime
                try target.insert(directory + "/" + extra, n, createParents: true, parentTemplate: dirTemplate)
            }
        }
    }
}

/// Firmware from an explicit list (authoritative: nothing is added implicitly). Each name is
/// relative to /lib/firmware; a compressed variant (`.xz`, `.zst`) is accepted when the
/// plain file is absent. Symlinks in the source are followed within the source tree and
/// the result is stored as a regular file.
public enum FirmwareInstaller {
    public struct Missing: UserError {
        public var names: [String]
        public var searched: [String]
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String {
            names.map { "firmware \($0): not found in \(searched.joined(separator: ", "))" }.joined(separator: "\n")
        }
    }

    public static func install(_ names: [String], from source: FSTree, into target: inout FSTree, mtime: Timestamp,
                               firmwareDirs: [String] = ["/lib/firmware", "/usr/lib/firmware"]) throws {
        var missing: [String] = []
        for name in names {
            guard let rel = try? FSTree.components(name), !rel.isEmpty, !name.contains("..") else {
                missing.append(name); continue
            }
            var found = false
            search: for dir in firmwareDirs {
                for suffix in ["", ".xz", ".zst"] {
                    let p = dir + "/" + rel.joined(separator: "/") + suffix
                    if let node = resolve(p, in: source), node.kind == .regular {
                        var n = node
                        n.mtime = min(n.mtime, mtime)
                        try target.insert("/lib/firmware/" + rel.joined(separator: "/") + suffix, n, createParents: true, parentTemplate: .directory(mtime: mtime))
                        found = true
                        break search
                    }
                }
            }
            if !found { missing.append(name) }
        }
        if !missing.isEmpty { throw Missing(names: missing, searched: firmwareDirs) }
    }

    /// Follow symlinks inside the tree (at most 40 hops, like the kernel).
    static func resolve(_ path: String, in tree: FSTree) -> Inode? {
        var comps = (try? FSTree.components(path)) ?? []
        var hops = 0
        var i = 0
        var cur = FSTree.rootID
        var done: [String] = []
        while i < comps.count {
            guard let next = tree.child(comps[i], of: cur) else { return nil }
            let n = tree[next]
            if n.kind == .symlink {
                hops += 1
                if hops > 40 { return nil }
                let t = n.symlinkTarget
                let base = t.hasPrefix("/") ? [] : done
                let joined = FileSystem.normalize("/" + (base + [t]).joined(separator: "/"))
                comps = ((try? FSTree.components(joined)) ?? []) + comps[(i + 1)...]
                i = 0; cur = FSTree.rootID; done = []
                continue
            }
            if i == comps.count - 1 { return n }
            guard n.kind == .directory else { return nil }
            done.append(comps[i])
            cur = next
            i += 1
        }
        return nil
    }
}
