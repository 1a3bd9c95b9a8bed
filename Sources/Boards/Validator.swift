import Basics

/// Checks one parsed board file against the settings table: unknown keys (with the
/// nearest valid key), wrong types, bad values. Collects every error instead of
/// stopping at the first.
struct BoardValidator {
    var errors: [BoardError] = []
    var values: [String: ResolvedSetting] = [:]
    var present: Set<String> = []

    mutating func validate(_ table: TOMLTable) {
        walk(table, prefix: "")
    }

    private mutating func walk(_ table: TOMLTable, prefix: String) {
        for key in table.keys {
            guard let entry = table[key] else { continue }
            let full = prefix.isEmpty ? key : prefix + "." + key
            if let setting = BoardSettings.setting(full) {
                present.insert(full)
                if let v = convert(entry, setting: setting, key: full) {
                    values[full] = ResolvedSetting(value: v, origin: entry.location.with(key: full))
                }
            } else if case .table(let t) = entry.value, prefix.isEmpty, BoardSettings.sections.contains(key) {
                walk(t, prefix: full)
            } else {
                unknown(full, at: entry.location, candidates: BoardSettings.all.map(\.key))
            }
        }
    }

    private mutating func unknown(_ key: String, at loc: SourceLocation, candidates: [String]) {
        var msg = "unknown key '\(key)'"
        if let s = Suggest.nearest(key, in: candidates) { msg += "; did you mean '\(s)'?" }
        errors.append(BoardError(location: loc.with(key: key), message: msg))
    }

    private mutating func typeError(_ key: String, _ entry: Located<TOMLValue>, expected: String) {
        errors.append(BoardError(location: entry.location.with(key: key), message: "'\(key)' must be \(expected), found \(entry.value.typeName)"))
    }

    private mutating func convert(_ entry: Located<TOMLValue>, setting: Setting, key: String) -> BoardValue? {
        switch setting.type {
        case .string, .path:
            guard case .string(let s) = entry.value else { typeError(key, entry, expected: "a string"); return nil }
            return .string(s)
        case .integer:
            guard case .integer(let i) = entry.value else { typeError(key, entry, expected: "an integer"); return nil }
            return .integer(i)
        case .bool:
            guard case .bool(let b) = entry.value else { typeError(key, entry, expected: "a boolean (true or false)"); return nil }
            return .bool(b)
        case .size:
            switch entry.value {
            case .integer(let i) where i >= 0: return .integer(i)
            case .string(let s):
                guard let n = ByteCount.parse(s) else {
                    errors.append(BoardError(location: entry.location.with(key: key), message: "'\(key)' = \"\(s)\" is not a size (use bytes or a unit: 512s, 64k, 16M, 2G)"))
                    return nil
                }
                return .integer(Int64(n))
            default:
                typeError(key, entry, expected: "a size (integer bytes or a string like \"64M\")")
                return nil
            }
        case .choice(let options):
            guard case .string(let s) = entry.value else { typeError(key, entry, expected: "a string"); return nil }
            guard options.contains(s) else {
                var msg = "'\(key)' = \"\(s)\" is not one of: \(options.joined(separator: ", "))"
                if let near = Suggest.nearest(s, in: options) { msg += "; did you mean '\(near)'?" }
                errors.append(BoardError(location: entry.location.with(key: key), message: msg))
                return nil
            }
            return .string(s)
        case .stringList, .pathList:
            guard case .array(let items) = entry.value else { typeError(key, entry, expected: "an array of strings"); return nil }
            var out: [String] = []
            var ok = true
            for (i, item) in items.enumerated() {
                guard case .string(let s) = item.value else {
                    errors.append(BoardError(location: item.location.with(key: "\(key)[\(i)]"), message: "'\(key)' item \(i) must be a string, found \(item.value.typeName)"))
                    ok = false
                    continue
                }
                out.append(s)
            }
            return ok ? .list(out) : nil
        case .stringMap:
            guard case .table(let t) = entry.value else { typeError(key, entry, expected: "a table of strings"); return nil }
            var out: [String: String] = [:]
            var ok = true
            for k in t.keys {
                guard let item = t[k] else { continue }
                guard case .string(let s) = item.value else {
                    errors.append(BoardError(location: item.location.with(key: "\(key).\(k)"), message: "'\(key).\(k)' must be a string, found \(item.value.typeName)"))
                    ok = false
                    continue
                }
                out[k] = s
            }
            return ok ? .map(out) : nil
        case .records(let fields):
            guard case .array(let items) = entry.value else { typeError(key, entry, expected: "an array of tables ([[\(key)]])"); return nil }
            var out: [[String: BoardValue]] = []
            let before = errors.count
            for (i, item) in items.enumerated() {
                guard case .table(let t) = item.value else {
                    errors.append(BoardError(location: item.location.with(key: "\(key)[\(i)]"), message: "'\(key)' item \(i) must be a table, found \(item.value.typeName)"))
                    continue
                }
                out.append(record(t, fields: fields, key: key, index: i))
            }
            if key == "disk.partition" { checkUniqueNames(out, items, key: key) }
            return errors.count == before ? .records(out) : nil
        }
    }

    private mutating func record(_ t: TOMLTable, fields: [Setting], key: String, index: Int) -> [String: BoardValue] {
        var out: [String: BoardValue] = [:]
        let label = "\(key)[\(index)]"
        for k in t.keys {
            guard let entry = t[k] else { continue }
            guard let field = fields.first(where: { $0.key == k }) else {
                unknown("\(label).\(k)", at: entry.location, candidates: fields.map { "\(label).\($0.key)" })
                continue
            }
            if let v = convert(entry, setting: field, key: "\(label).\(k)") { out[k] = v }
        }
        for f in fields {
            if out[f.key] == nil {
                if let d = f.defaultValue { out[f.key] = d } else if f.required && t[f.key] == nil {
                    errors.append(BoardError(location: t.location.with(key: label), message: "\(label) is missing required key '\(f.key)': \(f.doc)"))
                }
            }
        }
        return out
    }

    private mutating func checkUniqueNames(_ recs: [[String: BoardValue]], _ items: [Located<TOMLValue>], key: String) {
        var seen: [String: Int] = [:]
        for (i, r) in recs.enumerated() {
            guard let n = r["name"]?.string else { continue }
            if let first = seen[n] {
                errors.append(BoardError(location: items[i].location.with(key: "\(key)[\(i)].name"), message: "partition name '\(n)' is used twice (also \(key)[\(first)])"))
            } else {
                seen[n] = i
            }
        }
    }
}

extension BoardSettings {
    static func append(_ a: BoardValue, _ b: BoardValue) -> BoardValue {
        switch (a, b) {
        case (.list(let x), .list(let y)): .list(x + y)
        case (.records(let x), .records(let y)): .records(x + y)
        default: b
        }
    }
}

extension BoardValidator {
    /// Checks across keys of a merged (inherited) board: `bootloader.kind = "custom"` names
    /// the backend RAUC runs, and nothing else takes one. A backend that would be silently
    /// ignored is refused rather than warned about: the board loader has no warning channel
    /// and the user believes it takes effect. The file must be a regular file (not a symlink:
    /// the rootfs stage fingerprints and installs the path's own content).
    static func checkBootloader(_ merged: [String: ResolvedSetting], boardFile: String, projectRoot: String) -> [BoardError] {
        let kind = merged["bootloader.kind"]
        let kindName = kind?.value.string ?? "none"
        let backend = merged["bootloader.backend"]
        guard let backend, let path = backend.value.string else {
            guard kindName == "custom" else { return [] }
            var via = ""
            if let o = kind?.origin, o.file != boardFile { via = " (kind inherited from \(o.file)" + (o.line.map { ":\($0)" } ?? "") + ")" }
            return [BoardError(location: SourceLocation(file: boardFile, key: "bootloader.backend"),
                               message: "bootloader.kind = \"custom\" needs 'bootloader.backend'\(via): the RAUC custom backend executable "
                                   + "(get-primary, set-primary, get-state, set-state) that osbuild installs as /usr/lib/osbuild/custom-backend and names in /etc/rauc/system.conf")]
        }
        let at = backend.origin ?? SourceLocation(file: boardFile, key: "bootloader.backend")
        guard kindName == "custom" else {
            return [BoardError(location: at, message: "'bootloader.backend' applies only to bootloader.kind = \"custom\", and this board's kind is \"\(kindName)\": remove it or set kind = \"custom\"")]
        }
        let resolved = Board.resolve(path, projectRoot: projectRoot)
        let problem: String?
        do {
            if let st = try FileSystem.lstatIfExists(resolved) {
                if st.isRegular { problem = nil } else if st.isSymlink {
                    problem = "is a symbolic link; name the file itself (its content is what the rootfs stage installs and fingerprints)"
                } else if st.isDirectory { problem = "is a directory, not a regular file" } else { problem = "is not a regular file" }
            } else {
                problem = "does not exist"
            }
        } catch {
            problem = "cannot be read: \(error)"
        }
        guard let problem else { return [] }
        return [BoardError(location: at, message: "bootloader.backend \(resolved) \(problem)")]
    }
}
