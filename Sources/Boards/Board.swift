import Basics

/// A problem in a board file, located at file:line and key.
public struct BoardError: UserError {
    public var location: SourceLocation
    public var message: String
    public var exitCode: Int32 { ExitStatus.usage }
    public var description: String { "\(location): \(message)" }
}

/// A setting's value after inheritance, with where it was set (nil: the default).
public struct ResolvedSetting: Sendable, Equatable {
    public var value: BoardValue
    public var origin: SourceLocation?
}

/// A fully resolved board: every setting type-checked, inheritance applied.
public struct Board: Sendable {
    public var id: String
    public var file: String
    /// This board first, then its parents up to the root.
    public var chain: [String]
    public var values: [String: ResolvedSetting]
    /// The project root the board's relative paths are resolved against.
    public var projectRoot: String

    public func value(_ key: String) -> BoardValue? { values[key]?.value }
    public func string(_ key: String) -> String? { value(key)?.string }
    public func list(_ key: String) -> [String] { value(key)?.list ?? [] }
    public func bool(_ key: String) -> Bool { value(key)?.bool ?? false }
    public func integer(_ key: String) -> Int64? { value(key)?.integer }
    public func records(_ key: String) -> [[String: BoardValue]] { value(key)?.records ?? [] }
    public func map(_ key: String) -> [String: String] { value(key)?.map ?? [:] }

    public var isAbstract: Bool { bool("abstract") }
    public var name: String { string("name") ?? id }
    public var arch: String { string("arch") ?? "" }
    public var osID: String { string("os.id") ?? "osbuild" }
    public var version: String { string("os.version") ?? "0.0" }

    /// `<os-id>_<board>-<version>.<ext>`, the one naming rule for artifacts.
    public func artifactName(_ ext: String) -> String { "\(osID)_\(id)-\(version).\(ext)" }

    /// RAUC compatible string: explicit setting or `<os-id>-<board>`.
    public var compatible: String { string("bundle.compatible") ?? "\(osID)-\(id)" }

    /// Absolute path for a path-typed value.
    public func resolvePath(_ p: String) -> String { Self.resolve(p, projectRoot: projectRoot) }

    static func resolve(_ p: String, projectRoot: String) -> String {
        p.hasPrefix("/") ? p : FileSystem.normalize(projectRoot + "/" + p)
    }

    /// Variables for ${VAR} templates: board, arch, os.* and rootfs.variables.
    public var templateVariables: [String: String] {
        var v: [String: String] = ["board": id, "arch": arch, "compatible": compatible]
        for (k, r) in values where k.hasPrefix("os.") {
            if let s = r.value.string { v[k] = s }
        }
        for (k, s) in map("rootfs.variables") { v[k] = s }
        return v
    }
}

/// Finds, parses, validates and resolves board files under `<projectRoot>/boards`.
public struct BoardLoader: Sendable {
    public var projectRoot: String
    public var boardsDir: String { projectRoot + "/boards" }

    public init(projectRoot: String) {
        self.projectRoot = FileSystem.absolute(projectRoot)
    }

    public func boardIDs() throws -> [String] {
        guard FileSystem.exists(boardsDir) else { return [] }
        return try FileSystem.listDirectory(boardsDir)
            .filter { $0.hasSuffix(".toml") }
            .map { String($0.dropLast(5)) }
            .sorted()
    }

    /// All boards, resolved. Errors of every board are collected and reported together.
    public func loadAll(includeAbstract: Bool = false) throws -> [Board] {
        var boards: [Board] = []
        var errors: [any UserError] = []
        for id in try boardIDs() {
            do {
                let b = try load(id)
                if includeAbstract || !b.isAbstract { boards.append(b) }
            } catch let e as ErrorList {
                errors.append(contentsOf: e.errors)
            } catch let e as any UserError {
                errors.append(e)
            }
        }
        if !errors.isEmpty { throw ErrorList(errors) }
        return boards
    }

    public func load(_ id: String) throws -> Board {
        let file = boardsDir + "/" + id + ".toml"
        guard FileSystem.exists(file) else {
            let known = (try? boardIDs()) ?? []
            var msg = "unknown board '\(id)' (no \(displayPath(file)))"
            if let s = Suggest.nearest(id, in: known) { msg += "; did you mean '\(s)'?" }
            if !known.isEmpty { msg += "\nknown boards: " + known.joined(separator: ", ") }
            throw MessageError(msg, exitCode: ExitStatus.usage)
        }
        // Parse the chain: this board, its parent, ... (stop at cycles).
        var chain: [(id: String, file: String, table: TOMLTable)] = []
        var errors: [any UserError] = []
        var current: String? = id
        var seen: [String] = []
        var referencedFrom: SourceLocation?
        while let cid = current {
            if seen.contains(cid) {
                errors.append(BoardError(location: referencedFrom ?? SourceLocation(file: file), message: "inheritance cycle: " + (seen + [cid]).joined(separator: " -> ")))
                break
            }
            seen.append(cid)
            let f = boardsDir + "/" + cid + ".toml"
            guard FileSystem.exists(f) else {
                var msg = "inherits from unknown board '\(cid)'"
                if let s = Suggest.nearest(cid, in: (try? boardIDs()) ?? []) { msg += "; did you mean '\(s)'?" }
                errors.append(BoardError(location: referencedFrom ?? SourceLocation(file: f), message: msg))
                break
            }
            let table: TOMLTable
            do {
                table = try TOMLParser.parse(try FileSystem.readText(f), file: displayPath(f))
            } catch let e as any UserError {
                // A file that does not parse: report only that, the rest would be noise.
                throw ErrorList(errors + [e])
            }
            chain.append((cid, f, table))
            if let inh = table["inherit"] {
                guard case .string(let parent) = inh.value else {
                    errors.append(BoardError(location: inh.location.with(key: "inherit"), message: "'inherit' must be a string (a board id), found \(inh.value.typeName)"))
                    break
                }
                referencedFrom = inh.location.with(key: "inherit")
                current = parent
            } else {
                current = nil
            }
        }
        // Validate each file on its own (all errors at once), then merge root-most first.
        var layers: [[String: ResolvedSetting]] = []
        var present: Set<String> = []  // keys written somewhere, even if invalid
        for entry in chain {
            var validator = BoardValidator()
            validator.validate(entry.table)
            errors.append(contentsOf: validator.errors)
            layers.append(validator.values)
            present.formUnion(validator.present)
        }
        var merged: [String: ResolvedSetting] = [:]
        for layer in layers.reversed() {
            for (key, r) in layer {
                let setting = BoardSettings.setting(key)
                if setting?.merge == .append, let old = merged[key] {
                    merged[key] = ResolvedSetting(value: BoardSettings.append(old.value, r.value), origin: r.origin)
                } else {
                    merged[key] = r
                }
            }
        }
        // `inherit` and `abstract` are per file, not inherited.
        merged["inherit"] = layers.first?["inherit"]
        merged["abstract"] = layers.first?["abstract"]
        for s in BoardSettings.all where merged[s.key] == nil {
            if let d = s.defaultValue { merged[s.key] = ResolvedSetting(value: d, origin: nil) }
        }
        let isAbstract = merged["abstract"]?.value.bool ?? false
        if !isAbstract {
            for s in BoardSettings.all where s.required && merged[s.key] == nil && !present.contains(s.key) {
                let via = chain.count > 1 ? " (not set in \(chain.map(\.id).joined(separator: " or ")))" : ""
                errors.append(BoardError(location: SourceLocation(file: displayPath(file), key: s.key), message: "missing required key '\(s.key)'\(via): \(s.doc)"))
            }
            if let v = merged["os.version"], let s = v.value.string, !OSVersion.isValid(s) {
                errors.append(BoardError(location: v.origin ?? SourceLocation(file: displayPath(file)), message: "os.version '\(s)' is not major.minor with an optional suffix (e.g. 12.1, 12.1-rc1, 2.115.3+rev2)"))
            }
            // An invalid kind was reported already; its default stand-in would only add noise.
            if !errors.contains(where: { ($0 as? BoardError)?.location.key == "bootloader.kind" }) {
                errors.append(contentsOf: BoardValidator.checkBootloader(merged, boardFile: displayPath(file), projectRoot: projectRoot))
            }
        }
        if !errors.isEmpty { throw ErrorList(errors) }
        return Board(id: id, file: file, chain: chain.map(\.id), values: merged, projectRoot: projectRoot)
    }

    func displayPath(_ f: String) -> String {
        f.hasPrefix(projectRoot + "/") ? String(f.dropFirst(projectRoot.count + 1)) : f
    }
}

extension SourceLocation {
    func with(key: String) -> SourceLocation {
        var l = self
        l.key = key
        return l
    }
}

public enum OSVersion {
    /// major.minor[.patch] with an optional -suffix / .devN and an optional +revN.
    public static func isValid(_ s: String) -> Bool {
        var rest = Substring(s)
        func number() -> Bool {
            let d = rest.prefix(while: \.isNumber)
            guard !d.isEmpty else { return false }
            rest = rest.dropFirst(d.count)
            return true
        }
        guard number(), rest.first == "." else { return false }
        rest = rest.dropFirst()
        guard number() else { return false }
        if rest.first == ".", rest.dropFirst().first?.isNumber == true {
            rest = rest.dropFirst()
            _ = number()
        }
        if let plus = rest.firstIndex(of: "+") {
            let rev = rest[rest.index(after: plus)...]
            guard rev.hasPrefix("rev"), !rev.dropFirst(3).isEmpty, rev.dropFirst(3).allSatisfy(\.isNumber) else { return false }
            rest = rest[..<plus]
        }
        if rest.isEmpty { return true }
        guard rest.first == "-" || rest.first == "." || rest.first == "~" else { return false }
        return rest.dropFirst().allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" } && rest.count > 1
    }
}

