import Basics
import Foundation

/// A parsed libconfuse-style config (genimage's syntax): sections with optional titles,
/// scalar and list options, every value remembering where it came from.
public struct ConfSection: Sendable {
    public var name: String
    public var title: String?
    public var location: SourceLocation
    public var options: [String: ConfOption] = [:]
    public var sections: [ConfSection] = []

    public init(name: String, title: String?, location: SourceLocation) {
        self.name = name
        self.title = title
        self.location = location
    }

    public func scalar(_ key: String) -> String? {
        guard let o = options[key] else { return nil }
        switch o.value {
        case .scalar(let s): return s
        case .list(let l): return l.last
        }
    }

    public func list(_ key: String) -> [String] {
        guard let o = options[key] else { return [] }
        switch o.value {
        case .scalar(let s): return [s]
        case .list(let l): return l
        }
    }

    public func sections(named n: String) -> [ConfSection] { sections.filter { $0.name == n } }
}

public struct ConfOption: Sendable {
    public enum Value: Sendable { case scalar(String), list([String]) }
    public var value: Value
    public var location: SourceLocation
}

/// Syntax or schema error with file and line: "genimage.cfg:12: no such option 'bogus'".
public struct ConfigError: UserError {
    public var location: SourceLocation
    public var message: String
    public var exitCode: Int32 { ExitStatus.usage }
    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }
    public var description: String {
        var where_ = location.file
        if let l = location.line { where_ += ":\(l)" }
        return "\(where_): \(message)"
    }
}

/// Which options and sub-sections a section may contain. `nil` schema = anything goes
/// (sections of image types osbuild does not implement are parsed but not checked).
public struct ConfSchema: Sendable {
    public var options: Set<String>
    public var lists: Set<String>
    /// Sub-section name -> (titled?, schema).
    public var sections: [String: (titled: Bool, schema: ConfSchema?)]
    /// Functions allowed here (include).
    public var functions: Set<String>

    public init(options: Set<String> = [], lists: Set<String> = [], sections: [String: (titled: Bool, schema: ConfSchema?)] = [:], functions: Set<String> = []) {
        self.options = options
        self.lists = lists
        self.sections = sections
        self.functions = functions
    }
}

/// Lexer + parser for libconfuse 3.3 syntax as genimage uses it: `#`, `//`, `/* */`
/// comments; unquoted, "double" (with ${VAR} / ${VAR:-default} and C escapes) and
/// 'single' quoted strings; `name = value`, `name = {a, b}`, `name += {c}`,
/// `name [title] { ... }` and `include("file")` (searched in the include path, then the
/// current directory, at most 10 deep).
public struct ConfuseParser {
    public var environment: [String: String]
    public var includePath: [String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, includePath: [String] = []) {
        self.environment = environment
        self.includePath = includePath
    }

    enum Tok: Equatable {
        case word(String)       // unquoted or quoted string
        case lbrace, rbrace, lparen, rparen, equals, plusEquals, comma
        case eof
    }

    struct Token { var tok: Tok; var line: Int }

    public func parse(file: String, schema: ConfSchema) throws -> ConfSection {
        let text = try FileSystem.readText(file)
        var root = ConfSection(name: "", title: nil, location: SourceLocation(file: file, line: 1))
        try parseInto(&root, text: text, file: file, schema: schema, depth: 0)
        return root
    }

    public func parse(text: String, file: String, schema: ConfSchema) throws -> ConfSection {
        var root = ConfSection(name: "", title: nil, location: SourceLocation(file: file, line: 1))
        try parseInto(&root, text: text, file: file, schema: schema, depth: 0)
        return root
    }

    private func parseInto(_ root: inout ConfSection, text: String, file: String, schema: ConfSchema, depth: Int) throws {
        let toks = try lex(text, file: file)
        var i = 0
        try parseBody(&root, toks, &i, file: file, schema: schema, depth: depth, top: true)
        if toks[i].tok != .eof { throw ConfigError(SourceLocation(file: file, line: toks[i].line), "unexpected '}'") }
    }

    private func parseBody(_ sec: inout ConfSection, _ t: [Token], _ i: inout Int, file: String, schema: ConfSchema?, depth: Int, top: Bool) throws {
        func loc(_ k: Int) -> SourceLocation { SourceLocation(file: file, line: t[k].line) }
        while true {
            let tk = t[i]
            if tk.tok == .eof || tk.tok == .rbrace { return }
            guard case .word(let name) = tk.tok else {
                throw ConfigError(loc(i), "syntax error: expected an option or section name")
            }
            i += 1
            switch t[i].tok {
            case .equals, .plusEquals:
                let append = t[i].tok == .plusEquals
                i += 1
                if let schema, !schema.options.contains(name) && !schema.lists.contains(name) {
                    throw ConfigError(loc(i - 2), "no such option '\(name)'")
                }
                var value: ConfOption.Value
                if t[i].tok == .lbrace {
                    i += 1
                    var items: [String] = []
                    while t[i].tok != .rbrace {
                        guard case .word(let v) = t[i].tok else { throw ConfigError(loc(i), "syntax error in list '\(name)'") }
                        items.append(v)
                        i += 1
                        if t[i].tok == .comma { i += 1 } else if t[i].tok != .rbrace {
                            throw ConfigError(loc(i), "syntax error in list '\(name)': expected ',' or '}'")
                        }
                    }
                    i += 1
                    value = .list(items)
                } else if case .word(let v) = t[i].tok {
                    i += 1
                    value = (schema?.lists.contains(name) ?? false) ? .list([v]) : .scalar(v)
                } else {
                    throw ConfigError(loc(i), "syntax error: option '\(name)' has no value")
                }
                if append, case .list(let new) = value, let old = sec.options[name], case .list(let prev) = old.value {
                    value = .list(prev + new)
                }
                sec.options[name] = ConfOption(value: value, location: loc(i - 1))
            case .lparen:
                let fnLine = i - 1
                i += 1
                var args: [String] = []
                while t[i].tok != .rparen {
                    guard case .word(let a) = t[i].tok else { throw ConfigError(loc(i), "syntax error in \(name)()") }
                    args.append(a)
                    i += 1
                    if t[i].tok == .comma { i += 1 }
                }
                i += 1
                guard name == "include", schema?.functions.contains(name) ?? true else {
                    throw ConfigError(loc(fnLine), "no such function '\(name)'")
                }
                guard args.count == 1 else { throw ConfigError(loc(fnLine), "include() takes exactly one argument") }
                guard depth < 10 else { throw ConfigError(loc(fnLine), "includes nested more than 10 deep") }
                let path = try resolveInclude(args[0], at: loc(fnLine))
                let text = try FileSystem.readText(path)
                let toks = try lex(text, file: path)
                var k = 0
                try parseBody(&sec, toks, &k, file: path, schema: schema, depth: depth + 1, top: top)
                if toks[k].tok != .eof { throw ConfigError(SourceLocation(file: path, line: toks[k].line), "unexpected '}'") }
            case .lbrace, .word:
                var title: String? = nil
                if case .word(let ti) = t[i].tok {
                    title = ti
                    i += 1
                    guard t[i].tok == .lbrace else { throw ConfigError(loc(i), "syntax error after '\(name) \(ti)': expected '{'") }
                }
                let startLoc = loc(i - (title == nil ? 1 : 2))
                i += 1
                var sub: ConfSchema? = nil
                if let schema {
                    guard let s = schema.sections[name] else { throw ConfigError(startLoc, "no such option '\(name)'") }
                    if s.titled && title == nil { throw ConfigError(startLoc, "section '\(name)' needs a title") }
                    if !s.titled && title != nil { throw ConfigError(startLoc, "section '\(name)' takes no title") }
                    sub = s.schema
                }
                var child = ConfSection(name: name, title: title, location: startLoc)
                try parseBody(&child, t, &i, file: file, schema: sub, depth: depth, top: false)
                guard t[i].tok == .rbrace else { throw ConfigError(loc(i), "missing '}' for section '\(name)' opened at line \(startLoc.line ?? 0)") }
                i += 1
                // A repeated titled section replaces the earlier one (libconfuse behaviour).
                if let title, let k = sec.sections.firstIndex(where: { $0.name == name && $0.title == title }) {
                    sec.sections[k] = child
                } else if title == nil, let k = sec.sections.firstIndex(where: { $0.name == name && $0.title == nil }) {
                    sec.sections[k] = child
                } else {
                    sec.sections.append(child)
                }
            default:
                throw ConfigError(loc(i), "syntax error after '\(name)'")
            }
        }
    }

    private func resolveInclude(_ name: String, at loc: SourceLocation) throws -> String {
        if name.hasPrefix("/") {
            guard FileSystem.exists(name) else { throw ConfigError(loc, "include file \(name) not found") }
            return name
        }
        for dir in includePath + ["."] {
            let p = FileSystem.join(dir, name)
            if FileSystem.exists(p) { return p }
        }
        throw ConfigError(loc, "include file \(name) not found (searched: \((includePath + ["."]).joined(separator: ", ")))")
    }

    // MARK: lexer

    func lex(_ text: String, file: String) throws -> [Token] {
        let c = Array(text.unicodeScalars)
        var out: [Token] = []
        var i = 0
        var line = 1
        func err(_ m: String) -> ConfigError { ConfigError(SourceLocation(file: file, line: line), m) }
        let special: Set<Character> = ["#", "\"", "'", "=", "{", "}", "(", ")", "+", ",", "*"]
        while i < c.count {
            let ch = Character(c[i])
            if ch == "\n" { line += 1; i += 1; continue }
            if ch.isWhitespace { i += 1; continue }
            if ch == "#" || (ch == "/" && i + 1 < c.count && c[i + 1] == "/") {
                while i < c.count && c[i] != "\n" { i += 1 }
                continue
            }
            if ch == "/" && i + 1 < c.count && c[i + 1] == "*" {
                i += 2
                while i + 1 < c.count && !(c[i] == "*" && c[i + 1] == "/") { if c[i] == "\n" { line += 1 }; i += 1 }
                guard i + 1 < c.count else { throw err("unterminated comment") }
                i += 2
                continue
            }
            switch ch {
            case "{": out.append(Token(tok: .lbrace, line: line)); i += 1; continue
            case "}": out.append(Token(tok: .rbrace, line: line)); i += 1; continue
            case "(": out.append(Token(tok: .lparen, line: line)); i += 1; continue
            case ")": out.append(Token(tok: .rparen, line: line)); i += 1; continue
            case "=": out.append(Token(tok: .equals, line: line)); i += 1; continue
            case ",": out.append(Token(tok: .comma, line: line)); i += 1; continue
            case "+":
                guard i + 1 < c.count, c[i + 1] == "=" else { throw err("unexpected '+'") }
                out.append(Token(tok: .plusEquals, line: line)); i += 2; continue
            default: break
            }
            let startLine = line
            if ch == "\"" {
                i += 1
                var s = ""
                while true {
                    guard i < c.count else { throw ConfigError(SourceLocation(file: file, line: startLine), "unterminated string") }
                    let d = c[i]
                    if d == "\"" { i += 1; break }
                    if d == "\n" { line += 1 }
                    if d == "\\" {
                        guard i + 1 < c.count else { throw err("unterminated string") }
                        let e = c[i + 1]
                        i += 2
                        switch e {
                        case "\n": line += 1
                        case "n": s += "\n"
                        case "t": s += "\t"
                        case "r": s += "\r"
                        case "b": s += "\u{08}"
                        case "f": s += "\u{0C}"
                        case "a": s += "\u{07}"
                        case "e": s += "\u{1B}"
                        case "v": s += "\u{0B}"
                        case "x":
                            var h = ""
                            while h.count < 2, i < c.count, c[i].properties.isASCIIHexDigit { h.unicodeScalars.append(c[i]); i += 1 }
                            guard let v = UInt8(h, radix: 16) else { throw err("bad \\x escape") }
                            s.unicodeScalars.append(Unicode.Scalar(v))
                        case "0"..."7":
                            var o = String(e)
                            while o.count < 3, i < c.count, ("0"..."7").contains(c[i]) { o.unicodeScalars.append(c[i]); i += 1 }
                            guard let v = UInt16(o, radix: 8), v <= 0xFF else { throw err("bad octal escape \\\(o)") }
                            s.unicodeScalars.append(Unicode.Scalar(UInt8(v)))
                        case "8", "9": throw err("invalid escape \\\(e)")
                        default: s.unicodeScalars.append(e)
                        }
                        continue
                    }
                    if d == "$" && i + 1 < c.count && c[i + 1] == "{" {
                        var j = i + 2
                        var body = ""
                        while j < c.count && c[j] != "}" { body.unicodeScalars.append(c[j]); j += 1 }
                        guard j < c.count else { throw err("unterminated ${") }
                        s += expand(body)
                        i = j + 1
                        continue
                    }
                    s.unicodeScalars.append(d)
                    i += 1
                }
                out.append(Token(tok: .word(s), line: startLine))
                continue
            }
            if ch == "'" {
                i += 1
                var s = ""
                while true {
                    guard i < c.count else { throw ConfigError(SourceLocation(file: file, line: startLine), "unterminated string") }
                    let d = c[i]
                    if d == "'" { i += 1; break }
                    if d == "\n" { line += 1 }
                    if d == "\\" && i + 1 < c.count && (c[i + 1] == "\\" || c[i + 1] == "'") {
                        s.unicodeScalars.append(c[i + 1]); i += 2; continue
                    }
                    s.unicodeScalars.append(d)
                    i += 1
                }
                out.append(Token(tok: .word(s), line: startLine))
                continue
            }
            if ch == "$" && i + 1 < c.count && c[i + 1] == "{" {
                var j = i + 2
                var body = ""
                while j < c.count && c[j] != "}" && c[j] != "\n" { body.unicodeScalars.append(c[j]); j += 1 }
                guard j < c.count, c[j] == "}" else { throw err("unterminated ${") }
                out.append(Token(tok: .word(expand(body)), line: line))
                i = j + 1
                continue
            }
            var s = ""
            while i < c.count {
                let d = Character(c[i])
                if d.isWhitespace || special.contains(d) { break }
                if d == "/" && i + 1 < c.count && (c[i + 1] == "/" || c[i + 1] == "*") { break }
                s.append(d)
                i += 1
            }
            guard !s.isEmpty else { throw err("unexpected character '\(ch)'") }
            out.append(Token(tok: .word(s), line: line))
        }
        out.append(Token(tok: .eof, line: line))
        return out
    }

    /// ${VAR} or ${VAR:-default}; an unset variable without default expands to "".
    private func expand(_ body: String) -> String {
        if let r = body.range(of: ":-") {
            let name = String(body[..<r.lowerBound])
            let v = environment[name] ?? ""
            return v.isEmpty ? String(body[r.upperBound...]) : v
        }
        return environment[body] ?? ""
    }
}

extension ConfSection {
    /// The config in libconfuse syntax after include() and ${VAR} expansion (genimage's
    /// --configdump view, without genimage's defaults filled in). Keys sorted.
    public func dump(indent: String = "") -> String {
        func quote(_ v: String) -> String {
            var s = "\""
            for ch in v.unicodeScalars {
                switch ch {
                case "\"": s += "\\\""
                case "\\": s += "\\\\"
                case "\n": s += "\\n"
                case "\t": s += "\\t"
                case "$": s += "\\$"
                default: s.unicodeScalars.append(ch)
                }
            }
            return s + "\""
        }
        var out = ""
        for k in options.keys.sorted() {
            guard let o = options[k] else { continue }
            switch o.value {
            case .scalar(let v): out += "\(indent)\(k) = \(quote(v))\n"
            case .list(let l): out += "\(indent)\(k) = {" + l.map(quote).joined(separator: ", ") + "}\n"
            }
        }
        for s in sections {
            out += indent + s.name + (s.title.map { " " + quote($0) } ?? "") + " {\n"
            out += s.dump(indent: indent + "\t")
            out += indent + "}\n"
        }
        return out
    }
}
