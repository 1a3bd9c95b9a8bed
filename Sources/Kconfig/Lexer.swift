import Basics

/// Errors of the Kconfig engine; each names the file and line (and token) it is about.
public enum KconfigError: UserError {
    case parse(file: String, line: Int, message: String)
    case io(path: String, message: String)
    case usage(String)

    public var exitCode: Int32 {
        switch self {
        case .parse, .usage: ExitStatus.usage
        case .io: ExitStatus.usage
        }
    }
    public var description: String {
        switch self {
        case .parse(let f, let l, let m): "\(f):\(l): \(m)"
        case .io(let p, let m): "\(p): \(m)"
        case .usage(let m): m
        }
    }
}

enum TokKind: UInt8 {
    case eol, eof, word, quoted
    // keywords
    case kBool, kChoice, kComment, kConfig, kDefBool, kDefTristate, kDefault, kDepends, kEndchoice
    case kEndif, kEndmenu, kHelp, kHex, kIf, kImply, kInt, kMainmenu, kMenu, kMenuconfig, kModules
    case kOn, kOptional, kPrompt, kRange, kSelect, kSource, kString, kTristate, kVisible
    case kRsource, kOsource, kOrsource, kOption, kTransitional
    // operators
    case or, and, equal, unequal, less, lessEqual, greater, greaterEqual, not, open, close
    case colonEqual, plusEqual
}

struct Token {
    var kind: TokKind
    var text: [UInt8] = []
    var line: Int = 0
    var describe: String {
        switch kind {
        case .eol: "end of line"
        case .eof: "end of file"
        case .word: "'\(String(decoding: text, as: UTF8.self))'"
        case .quoted: "\"\(String(decoding: text, as: UTF8.self))\""
        default: "'\(Lexer.spelling[kind] ?? "?")'"
        }
    }
}

/// Byte-level tokenizer over a stack of files (a `source`d file is read to its end, then
/// the including file continues), expanding macros in words and strings as it goes.
final class Lexer {
    struct FileBuf {
        var bytes: [UInt8]
        var pos: Int
        var line: Int
        var name: String
        var dir: String
        var index: Int32
    }
    private var stack: [FileBuf] = []
    let pp: Preprocessor
    private var peeked: Token?
    private var prevKind: TokKind = .eol
    private var prevPrevKind: TokKind = .eol
    private var wantAssignValue = false

    static let keywords: [String: TokKind] = [
        "bool": .kBool, "choice": .kChoice, "comment": .kComment, "config": .kConfig, "def_bool": .kDefBool,
        "def_tristate": .kDefTristate, "default": .kDefault, "depends": .kDepends, "endchoice": .kEndchoice,
        "endif": .kEndif, "endmenu": .kEndmenu, "help": .kHelp, "hex": .kHex, "if": .kIf, "imply": .kImply,
        "int": .kInt, "mainmenu": .kMainmenu, "menu": .kMenu, "menuconfig": .kMenuconfig, "modules": .kModules,
        "on": .kOn, "optional": .kOptional, "prompt": .kPrompt, "range": .kRange, "select": .kSelect,
        "source": .kSource, "string": .kString, "tristate": .kTristate, "visible": .kVisible,
        // accepted as in later kernels / kconfiglib
        "rsource": .kRsource, "osource": .kOsource, "orsource": .kOrsource, "option": .kOption,
        "transitional": .kTransitional,
    ]
    static let spelling: [TokKind: String] = {
        var m: [TokKind: String] = [:]
        for (k, v) in keywords { m[v] = k }
        let ops: [TokKind: String] = [
            .or: "||", .and: "&&", .equal: "=", .unequal: "!=", .less: "<", .lessEqual: "<=", .greater: ">",
            .greaterEqual: ">=", .not: "!", .open: "(", .close: ")", .colonEqual: ":=", .plusEqual: "+=",
        ]
        m.merge(ops) { a, _ in a }
        return m
    }()

    init(pp: Preprocessor) { self.pp = pp }

    var fileName: String { stack.last?.name ?? "" }
    var fileDir: String { stack.last?.dir ?? "" }
    var fileIndex: Int32 { stack.last?.index ?? 0 }
    var line: Int { stack.last?.line ?? 0 }
    var includeChain: [String] { stack.map(\.name) }

    func push(bytes: [UInt8], name: String, dir: String, index: Int32) {
        stack.append(FileBuf(bytes: bytes, pos: 0, line: 1, name: name, dir: dir, index: index))
    }

    func error(_ msg: String, line: Int? = nil) -> KconfigError {
        .parse(file: fileName, line: line ?? self.line, message: msg)
    }

    func peek() throws -> Token {
        if let p = peeked { return p }
        let t = try lex()
        peeked = t
        return t
    }

    func next() throws -> Token {
        if let p = peeked {
            peeked = nil
            return p
        }
        return try lex()
    }

    private func lex() throws -> Token {
        let t = try lex1()
        if prevPrevKind == .eol && prevKind == .word && (t.kind == .equal || t.kind == .colonEqual || t.kind == .plusEqual) {
            wantAssignValue = true
        }
        prevPrevKind = prevKind
        prevKind = t.kind
        return t
    }

    /// The raw rest of the line after an assignment operator (leading blanks skipped).
    func assignValue() -> [UInt8] {
        precondition(peeked == nil)
        wantAssignValue = false
        guard !stack.isEmpty else { return [] }
        let b = stack[stack.count - 1].bytes
        var p = stack[stack.count - 1].pos
        while p < b.count, b[p] == 0x20 || b[p] == 0x09 { p += 1 }
        let start = p
        while p < b.count, b[p] != 0x0a { p += 1 }
        stack[stack.count - 1].pos = p
        return Array(b[start..<p])
    }

    private func lex1() throws -> Token {
        while true {
            guard !stack.isEmpty else { return Token(kind: .eof, line: 0) }
            let idx = stack.count - 1
            let pos = stack[idx].pos
            let bytesCount = stack[idx].bytes.count
            if pos >= bytesCount {
                // End of a sourced file: the C tool emits an end of line and resumes the parent.
                let l = stack[idx].line
                stack.removeLast()
                if stack.isEmpty { return Token(kind: .eof, line: l) }
                return Token(kind: .eol, line: l)
            }
            let bytes = stack[idx].bytes
            let r: Token? = try bytes.withUnsafeBufferPointer { b in
                try scan(b, idx)
            }
            if let r { return r }
        }
    }

    /// Scans one token from file `idx`; nil when only whitespace/comment was consumed.
    private func scan(_ b: UnsafeBufferPointer<UInt8>, _ idx: Int) throws -> Token? {
        var p = stack[idx].pos
        let n = b.count
        let c = b[p]
        let line = stack[idx].line
        @inline(__always) func tok(_ k: TokKind, _ len: Int) -> Token {
            stack[idx].pos = p + len
            return Token(kind: k, line: line)
        }
        switch c {
        case 0x20, 0x09, 0x0d:
            p += 1
            while p < n, b[p] == 0x20 || b[p] == 0x09 { p += 1 }
            stack[idx].pos = p
            return nil
        case 0x0a:
            stack[idx].pos = p + 1
            stack[idx].line += 1
            return Token(kind: .eol, line: line)
        case UInt8(ascii: "#"):
            while p < n, b[p] != 0x0a { p += 1 }
            stack[idx].pos = p
            return nil
        case UInt8(ascii: "\\"):
            if p + 1 < n, b[p + 1] == 0x0a {
                stack[idx].pos = p + 2
                stack[idx].line += 1
                return nil
            }
            stack[idx].pos = p + 1
            return nil  // ignored character, as the C lexer does
        case UInt8(ascii: "|"):
            if p + 1 < n, b[p + 1] == UInt8(ascii: "|") { return tok(.or, 2) }
            stack[idx].pos = p + 1
            return nil
        case UInt8(ascii: "&"):
            if p + 1 < n, b[p + 1] == UInt8(ascii: "&") { return tok(.and, 2) }
            stack[idx].pos = p + 1
            return nil
        case UInt8(ascii: "="): return tok(.equal, 1)
        case UInt8(ascii: "!"):
            if p + 1 < n, b[p + 1] == UInt8(ascii: "=") { return tok(.unequal, 2) }
            return tok(.not, 1)
        case UInt8(ascii: "<"):
            if p + 1 < n, b[p + 1] == UInt8(ascii: "=") { return tok(.lessEqual, 2) }
            return tok(.less, 1)
        case UInt8(ascii: ">"):
            if p + 1 < n, b[p + 1] == UInt8(ascii: "=") { return tok(.greaterEqual, 2) }
            return tok(.greater, 1)
        case UInt8(ascii: "("): return tok(.open, 1)
        case UInt8(ascii: ")"): return tok(.close, 1)
        case UInt8(ascii: ":"):
            if p + 1 < n, b[p + 1] == UInt8(ascii: "=") { return tok(.colonEqual, 2) }
            stack[idx].pos = p + 1
            return nil
        case UInt8(ascii: "+"):
            if p + 1 < n, b[p + 1] == UInt8(ascii: "=") { return tok(.plusEqual, 2) }
            stack[idx].pos = p + 1
            return nil
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            return try scanString(b, idx, quote: c)
        default:
            break
        }
        if isWordChar(c) || c == UInt8(ascii: "$") {
            var q = p
            var hasDollar = false
            while q < n, isWordChar(b[q]) || b[q] == UInt8(ascii: "$") {
                if b[q] == UInt8(ascii: "$") { hasDollar = true }
                q += 1
            }
            if !hasDollar {
                let word = Array(b[p..<q])
                stack[idx].pos = q
                if let k = Lexer.keywordKind(word) { return Token(kind: k, line: line) }
                return Token(kind: .word, text: word, line: line)
            }
            // Expand macros: the token may continue through $(...) up to the end of the line.
            var e = p
            while e < n, b[e] != 0x0a { e += 1 }
            let lineSlice = Array(b[p..<e])
            var i = 0
            pp.fileName = stack[idx].name
            pp.line = line
            let out = try pp.expandToken(lineSlice[...], &i)
            stack[idx].pos = p + i
            if out.isEmpty { return nil }
            return Token(kind: .word, text: out, line: line)
        }
        // any other character is ignored (with a warning in the C tool)
        stack[idx].pos = p + 1
        return nil
    }

    static func keywordKind(_ w: [UInt8]) -> TokKind? {
        guard w.count >= 2 && w.count <= 12, let f = w.first, f >= 0x61 && f <= 0x76 else { return nil }
        return keywords[String(decoding: w, as: UTF8.self)]
    }

    private func scanString(_ b: UnsafeBufferPointer<UInt8>, _ idx: Int, quote: UInt8) throws -> Token? {
        var p = stack[idx].pos + 1
        let n = b.count
        let line = stack[idx].line
        var out: [UInt8] = []
        while p < n {
            let c = b[p]
            if c == quote {
                stack[idx].pos = p + 1
                return Token(kind: .quoted, text: out, line: line)
            }
            switch c {
            case 0x0a:
                // multi-line strings are not supported: the string ends here
                stack[idx].pos = p
                return Token(kind: .quoted, text: out, line: line)
            case UInt8(ascii: "\\"):
                if p + 1 < n, b[p + 1] != 0x0a {
                    out.append(b[p + 1])
                    p += 2
                } else {
                    p += 1
                }
            case UInt8(ascii: "$"):
                var e = p + 1
                while e < n, b[e] != 0x0a { e += 1 }
                let rest = Array(b[(p + 1)..<e])
                var i = 0
                pp.fileName = stack[idx].name
                pp.line = line
                out += try pp.expandDollar(rest[...], &i, args: [])
                p = p + 1 + i
            default:
                out.append(c)
                p += 1
            }
        }
        stack[idx].pos = p
        return Token(kind: .quoted, text: out, line: line)
    }

    /// Consumes a help text block (called right after `help` and its end of line).
    func skipHelp() {
        precondition(peeked == nil)
        guard !stack.isEmpty else { return }
        let idx = stack.count - 1
        let b = stack[idx].bytes
        var p = stack[idx].pos
        var firstIndent = 0
        while p < b.count {
            var q = p
            var indent = 0
            while q < b.count, b[q] == 0x20 || b[q] == 0x09 {
                indent = b[q] == 0x09 ? (indent & ~7) + 8 : indent + 1
                q += 1
            }
            if q >= b.count { p = q; break }
            if b[q] == 0x0a {
                // blank line: part of the help text
                p = q + 1
                stack[idx].line += 1
                continue
            }
            if indent == 0 || (firstIndent > 0 && indent < firstIndent) { break }
            if firstIndent == 0 { firstIndent = indent }
            while q < b.count, b[q] != 0x0a { q += 1 }
            if q < b.count {
                q += 1
                stack[idx].line += 1
            }
            p = q
        }
        stack[idx].pos = p
        prevKind = .eol
        prevPrevKind = .eol
    }
}
