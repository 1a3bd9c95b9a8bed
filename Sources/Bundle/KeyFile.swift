import Basics

/// The INI dialect RAUC reads (GLib GKeyFile): `[group]`, `key=value`, `#` comments,
/// `;`-separated lists, backslash escapes in values. Only the subset manifests and
/// system.conf use.
public struct KeyFile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: String  // raw (still escaped) text after '='
        public var line: Int
    }
    public struct Group: Sendable, Equatable {
        public var name: String
        public var entries: [Entry]
        public var line: Int
    }

    public var groups: [Group] = []
    public var path: String

    public init(path: String = "<memory>") { self.path = path }

    public struct ParseError: UserError {
        public var location: SourceLocation
        public var message: String
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String { "\(location): \(message)" }
    }

    public static func parse(_ text: String, path: String) throws -> KeyFile {
        var kf = KeyFile(path: path)
        var lineNo = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if trimmed.hasPrefix("[") {
                let t = trimmed.trimmingTrailingSpace()
                guard t.hasSuffix("]"), t.count > 2 else {
                    throw ParseError(location: SourceLocation(file: path, line: lineNo), message: "malformed group header '\(t)'; expected [name]")
                }
                let name = String(t.dropFirst().dropLast())
                if let idx = kf.groups.firstIndex(where: { $0.name == name }) {
                    // GKeyFile merges repeated groups; keep that so real-world files still load.
                    kf.groups.append(kf.groups.remove(at: idx))
                } else {
                    kf.groups.append(Group(name: name, entries: [], line: lineNo))
                }
                continue
            }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw ParseError(location: SourceLocation(file: path, line: lineNo), message: "line is neither a [group], a key=value pair nor a # comment: '\(trimmed)'")
            }
            guard !kf.groups.isEmpty else {
                throw ParseError(location: SourceLocation(file: path, line: lineNo), message: "key=value before the first [group]")
            }
            let key = String(trimmed[..<eq].trimmingTrailingSpace())
            guard !key.isEmpty else {
                throw ParseError(location: SourceLocation(file: path, line: lineNo), message: "empty key name")
            }
            let value = String(trimmed[trimmed.index(after: eq)...].drop(while: { $0 == " " || $0 == "\t" }))
            let gi = kf.groups.count - 1
            if let ei = kf.groups[gi].entries.firstIndex(where: { $0.key == key }) {
                kf.groups[gi].entries[ei] = Entry(key: key, value: value, line: lineNo)  // last wins, as in GKeyFile
            } else {
                kf.groups[gi].entries.append(Entry(key: key, value: value, line: lineNo))
            }
        }
        return kf
    }

    public func group(_ name: String) -> Group? { groups.first { $0.name == name } }

    public func rawValue(_ group: String, _ key: String) -> Entry? {
        self.group(group)?.entries.first { $0.key == key }
    }

    public func location(_ group: String, _ key: String? = nil) -> SourceLocation {
        let line = key.flatMap { rawValue(group, $0)?.line } ?? self.group(group)?.line
        return SourceLocation(file: path, line: line, key: key.map { "[\(group)] \($0)" } ?? "[\(group)]")
    }

    public func string(_ group: String, _ key: String) throws -> String? {
        guard let e = rawValue(group, key) else { return nil }
        return try KeyFile.unescape(e.value, list: false, at: location(group, key)).first
    }

    public func list(_ group: String, _ key: String) throws -> [String]? {
        guard let e = rawValue(group, key) else { return nil }
        return try KeyFile.unescape(e.value, list: true, at: location(group, key))
    }

    public func uint64(_ group: String, _ key: String) throws -> UInt64? {
        guard let s = try string(group, key) else { return nil }
        guard let v = UInt64(s.trimmingTrailingSpace()) else {
            throw ParseError(location: location(group, key), message: "value '\(s)' is not a non-negative integer")
        }
        return v
    }

    static func unescape(_ raw: String, list: Bool, at loc: SourceLocation) throws -> [String] {
        var items: [String] = []
        var cur = ""
        var it = raw.makeIterator()
        while let c = it.next() {
            if c == "\\" {
                guard let n = it.next() else {
                    throw ParseError(location: loc, message: "value ends with a lone backslash")
                }
                switch n {
                case "s": cur.append(" ")
                case "n": cur.append("\n")
                case "t": cur.append("\t")
                case "r": cur.append("\r")
                case "\\": cur.append("\\")
                case ";" where list: cur.append(";")
                case ",": cur.append(",")
                default:
                    throw ParseError(location: loc, message: "invalid escape sequence '\\\(n)'")
                }
            } else if list && c == ";" {
                items.append(cur)
                cur = ""
            } else {
                cur.append(c)
            }
        }
        if !list || !cur.isEmpty { items.append(cur) }
        return items
    }

    /// Escape a string value the way g_key_file_set_string does.
    public static func escape(_ s: String, list: Bool = false) -> String {
        var out = ""
        for (i, c) in s.enumerated() {
            switch c {
            case " " where i == 0: out += "\\s"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\\": out += "\\\\"
            case ";" where list: out += "\\;"
            default: out.append(c)
            }
        }
        return out
    }

    public static func escapeList(_ items: [String]) -> String {
        items.map { escape($0, list: true) + ";" }.joined()
    }
}

/// Writes groups in the given order with one blank line between them, ending in one "\n".
public struct KeyFileWriter {
    private var groups: [(String, [(String, String)])] = []
    public init() {}
    public mutating func group(_ name: String, _ entries: [(String, String?)]) {
        let present = entries.compactMap { k, v in v.map { (k, $0) } }
        groups.append((name, present))
    }
    public var text: String {
        groups.map { name, entries in
            "[\(name)]\n" + entries.map { "\($0.0)=\($0.1)\n" }.joined()
        }.joined(separator: "\n")
    }
}

extension Substring {
    func trimmingTrailingSpace() -> Substring {
        var s = self
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}

extension String {
    func trimmingTrailingSpace() -> String { String(Substring(self).trimmingTrailingSpace()) }
}
