import Basics

/// A TOML value with the location it was written at, so every later check (type,
/// unknown key, range) can point at the exact file and line.
public indirect enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)
    case array([Located<TOMLValue>])
    case table(TOMLTable)

    public var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .bool: "a boolean"
        case .array: "an array"
        case .table: "a table"
        }
    }
}

public struct Located<T: Sendable & Equatable>: Sendable, Equatable {
    public var value: T
    public var location: SourceLocation
    public init(_ value: T, _ location: SourceLocation) {
        self.value = value
        self.location = location
    }
}

/// Keys in insertion order (board files are shown back to users in their own order).
public struct TOMLTable: Sendable, Equatable {
    public private(set) var keys: [String] = []
    public private(set) var entries: [String: Located<TOMLValue>] = [:]
    /// Where the table was opened (header line) — for "missing key" messages.
    public var location: SourceLocation
    /// Tables defined by a [header] cannot be redefined; implicit ones (from dotted keys) can.
    var explicitlyDefined = false

    public init(location: SourceLocation) { self.location = location }

    public subscript(key: String) -> Located<TOMLValue>? { entries[key] }

    mutating func set(_ key: String, _ value: Located<TOMLValue>) {
        if entries[key] == nil { keys.append(key) }
        entries[key] = value
    }

    public var isEmpty: Bool { keys.isEmpty }
}

public struct TOMLError: UserError {
    public var location: SourceLocation
    public var message: String
    public var exitCode: Int32 { ExitStatus.usage }
    public var description: String { "\(location): \(message)" }
}

/// A TOML 1.0 parser (the subset board files need: tables, arrays of tables, dotted
/// keys, basic/literal/multi-line strings, integers incl. hex/octal/binary and `_`,
/// floats, booleans, arrays, inline tables). Dates are rejected with a clear message.
public struct TOMLParser {
    private let bytes: [UInt8]
    private let file: String
    private var pos = 0
    private var line = 1
    private var lineStart = 0

    public static func parse(_ text: String, file: String) throws -> TOMLTable {
        var p = TOMLParser(bytes: Array(text.utf8), file: file)
        return try p.document()
    }

    private init(bytes: [UInt8], file: String) {
        self.bytes = bytes
        self.file = file
    }

    private var here: SourceLocation { SourceLocation(file: file, line: line, column: pos - lineStart + 1) }
    private var hereLine: SourceLocation { SourceLocation(file: file, line: line) }

    private func fail(_ msg: String) -> TOMLError { TOMLError(location: here, message: msg) }

    private var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private mutating func advance() {
        if bytes[pos] == UInt8(ascii: "\n") {
            line += 1
            lineStart = pos + 1
        }
        pos += 1
    }

    private mutating func skipSpaces() {
        while let c = peek, c == 0x20 || c == 0x09 { pos += 1 }
    }

    private mutating func skipComment() {
        if peek == UInt8(ascii: "#") {
            while let c = peek, c != UInt8(ascii: "\n") { pos += 1 }
        }
    }

    /// Skip whitespace, newlines and comments (inside arrays).
    private mutating func skipBlank() {
        while let c = peek {
            if c == 0x20 || c == 0x09 || c == 0x0D { pos += 1 } else if c == 0x0A { advance() } else if c == UInt8(ascii: "#") { skipComment() } else { break }
        }
    }

    private mutating func endOfLine() throws {
        skipSpaces()
        skipComment()
        if peek == 0x0D { pos += 1 }
        guard let c = peek else { return }
        guard c == 0x0A else { throw fail("expected end of line, found '\(String(UnicodeScalar(c)))'") }
        advance()
    }

    private mutating func document() throws -> TOMLTable {
        var root = TOMLTable(location: SourceLocation(file: file, line: 1))
        var current: [String] = []  // path of the current [table]
        var currentIsArrayElement = false
        while true {
            skipBlank()
            guard let c = peek else { break }
            if c == UInt8(ascii: "[") {
                let loc = hereLine
                pos += 1
                let isArray = peek == UInt8(ascii: "[")
                if isArray { pos += 1 }
                skipSpaces()
                let path = try keyPath()
                skipSpaces()
                guard peek == UInt8(ascii: "]") else { throw fail("expected ']' to close table header") }
                pos += 1
                if isArray {
                    guard peek == UInt8(ascii: "]") else { throw fail("expected ']]' to close array-of-tables header") }
                    pos += 1
                }
                try endOfLine()
                if isArray {
                    try appendArrayTable(&root, path.map(\.value), loc)
                } else {
                    try defineTable(&root, path.map(\.value), loc)
                }
                current = path.map(\.value)
                currentIsArrayElement = isArray
                _ = currentIsArrayElement
                continue
            }
            let loc = hereLine
            let path = try keyPath()
            skipSpaces()
            guard peek == UInt8(ascii: "=") else { throw fail("expected '=' after key '\(path.map(\.value).joined(separator: "."))'") }
            pos += 1
            skipSpaces()
            let value = try parseValue()
            try endOfLine()
            try assign(&root, current, path, Located(value, loc))
        }
        return root
    }

    // MARK: keys

    private mutating func keyPath() throws -> [Located<String>] {
        var parts: [Located<String>] = []
        while true {
            skipSpaces()
            let loc = here
            parts.append(Located(try simpleKey(), loc))
            skipSpaces()
            if peek == UInt8(ascii: ".") { pos += 1; continue }
            return parts
        }
    }

    private mutating func simpleKey() throws -> String {
        guard let c = peek else { throw fail("expected a key, found end of file") }
        if c == UInt8(ascii: "\"") { return try basicString() }
        if c == UInt8(ascii: "'") { return try literalString() }
        let start = pos
        while let c = peek, isBareKeyChar(c) { pos += 1 }
        guard pos > start else { throw fail("expected a key, found '\(String(UnicodeScalar(c)))'") }
        return String(decoding: bytes[start..<pos], as: UTF8.self)
    }

    private func isBareKeyChar(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F
    }

    // MARK: values

    private mutating func parseValue() throws -> TOMLValue {
        guard let c = peek else { throw fail("expected a value, found end of file") }
        switch c {
        case UInt8(ascii: "\""):
            if hasPrefix("\"\"\"") { return .string(try multilineBasicString()) }
            return .string(try basicString())
        case UInt8(ascii: "'"):
            if hasPrefix("'''") { return .string(try multilineLiteralString()) }
            return .string(try literalString())
        case UInt8(ascii: "["):
            return try array()
        case UInt8(ascii: "{"):
            return try inlineTable()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if hasPrefix("true") { pos += 4; return .bool(true) }
            if hasPrefix("false") { pos += 5; return .bool(false) }
            throw fail("invalid value (strings must be quoted)")
        default:
            return try number()
        }
    }

    private func hasPrefix(_ s: String) -> Bool {
        let u = Array(s.utf8)
        return pos + u.count <= bytes.count && Array(bytes[pos..<pos + u.count]) == u
    }

    private mutating func number() throws -> TOMLValue {
        let start = pos
        let startLoc = here
        while let c = peek, !(c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == UInt8(ascii: ",") || c == UInt8(ascii: "]") || c == UInt8(ascii: "}") || c == UInt8(ascii: "#")) {
            pos += 1
        }
        let raw = String(decoding: bytes[start..<pos], as: UTF8.self)
        guard !raw.isEmpty else { throw fail("expected a value") }
        var s = raw
        if s.contains("__") || s.hasPrefix("_") || s.hasSuffix("_") {
            throw TOMLError(location: startLoc, message: "invalid number '\(raw)'")
        }
        s = s.replacingOccurrences(of: "_", with: "")
        var sign: Int64 = 1
        if s.hasPrefix("+") { s.removeFirst() } else if s.hasPrefix("-") { sign = -1; s.removeFirst() }
        let radix: Int? = s.hasPrefix("0x") ? 16 : s.hasPrefix("0o") ? 8 : s.hasPrefix("0b") ? 2 : nil
        if let radix {
            if let v = Int64(s.dropFirst(2), radix: radix) { return .integer(sign * v) }
        } else if let v = Int64(s) {
            if s.count > 1 && s.hasPrefix("0") { throw TOMLError(location: startLoc, message: "invalid number '\(raw)' (leading zeros are not allowed)") }
            return .integer(sign * v)
        } else if let d = Double(s), s.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) || s == "inf" || s == "nan" {
            return .float(Double(sign) * d)
        }
        if raw.contains("-") && raw.count >= 8 && raw.first?.isNumber == true {
            throw TOMLError(location: startLoc, message: "dates are not supported in board files; quote the value: \"\(raw)\"")
        }
        throw TOMLError(location: startLoc, message: "invalid value '\(raw)' (strings must be quoted)")
    }

    private mutating func array() throws -> TOMLValue {
        pos += 1  // [
        var items: [Located<TOMLValue>] = []
        while true {
            skipBlank()
            guard let c = peek else { throw fail("unterminated array") }
            if c == UInt8(ascii: "]") { pos += 1; break }
            let loc = hereLine
            items.append(Located(try parseValue(), loc))
            skipBlank()
            if peek == UInt8(ascii: ",") { pos += 1; continue }
            skipBlank()
            guard peek == UInt8(ascii: "]") else { throw fail("expected ',' or ']' in array") }
        }
        return .array(items)
    }

    private mutating func inlineTable() throws -> TOMLValue {
        var table = TOMLTable(location: hereLine)
        table.explicitlyDefined = true
        pos += 1  // {
        skipSpaces()
        if peek == UInt8(ascii: "}") { pos += 1; return .table(table) }
        while true {
            skipSpaces()
            let loc = hereLine
            let path = try keyPath()
            skipSpaces()
            guard peek == UInt8(ascii: "=") else { throw fail("expected '=' in inline table") }
            pos += 1
            skipSpaces()
            let v = try parseValue()
            try assignInto(&table, path, Located(v, loc))
            skipSpaces()
            if peek == UInt8(ascii: ",") { pos += 1; continue }
            guard peek == UInt8(ascii: "}") else { throw fail("expected ',' or '}' in inline table") }
            pos += 1
            return .table(table)
        }
    }

    // MARK: strings

    private mutating func basicString() throws -> String {
        pos += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek, c != 0x0A else { throw fail("unterminated string") }
            pos += 1
            if c == UInt8(ascii: "\"") { break }
            if c == UInt8(ascii: "\\") { try escape(into: &out) } else { out.append(c) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func escape(into out: inout [UInt8]) throws {
        guard let e = peek else { throw fail("unterminated escape") }
        pos += 1
        switch e {
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let n = e == UInt8(ascii: "u") ? 4 : 8
            guard pos + n <= bytes.count, let v = UInt32(String(decoding: bytes[pos..<pos + n], as: UTF8.self), radix: 16),
                  let scalar = Unicode.Scalar(v) else { throw fail("invalid unicode escape") }
            pos += n
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            throw fail("invalid escape '\\\(String(UnicodeScalar(e)))'")
        }
    }

    private mutating func literalString() throws -> String {
        pos += 1
        let start = pos
        while true {
            guard let c = peek, c != 0x0A else { throw fail("unterminated string") }
            if c == UInt8(ascii: "'") { break }
            pos += 1
        }
        let s = String(decoding: bytes[start..<pos], as: UTF8.self)
        pos += 1
        return s
    }

    private mutating func multilineBasicString() throws -> String {
        pos += 3
        if peek == 0x0A { advance() }
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw fail("unterminated multi-line string") }
            if hasPrefix("\"\"\"") { pos += 3; break }
            if c == UInt8(ascii: "\\") {
                pos += 1
                // Line-ending backslash trims the newline and following whitespace.
                var q = pos
                while q < bytes.count, bytes[q] == 0x20 || bytes[q] == 0x09 { q += 1 }
                if q < bytes.count, bytes[q] == 0x0A {
                    pos = q
                    while let d = peek, d == 0x20 || d == 0x09 || d == 0x0A || d == 0x0D { advance() }
                    continue
                }
                try escape(into: &out)
                continue
            }
            out.append(c)
            advance()
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func multilineLiteralString() throws -> String {
        pos += 3
        if peek == 0x0A { advance() }
        let start = pos
        while !hasPrefix("'''") {
            guard peek != nil else { throw fail("unterminated multi-line string") }
            advance()
        }
        let s = String(decoding: bytes[start..<pos], as: UTF8.self)
        pos += 3
        return s
    }

    // MARK: table structure

    private func duplicate(_ key: String, _ loc: SourceLocation, previous: SourceLocation) -> TOMLError {
        TOMLError(location: loc, message: "key '\(key)' is defined twice (first at line \(previous.line ?? 0))")
    }

    /// Walk `path` from `table`, creating implicit tables, and call `body` on the last one.
    private func withTable(_ table: inout TOMLTable, _ path: ArraySlice<String>, _ loc: SourceLocation, _ body: (inout TOMLTable) throws -> Void) throws {
        guard let first = path.first else { try body(&table); return }
        let rest = path.dropFirst()
        if let existing = table[first] {
            switch existing.value {
            case .table(var t):
                try withTable(&t, rest, loc, body)
                table.set(first, Located(.table(t), existing.location))
            case .array(var items):
                // Path through an array of tables addresses its last element.
                guard let last = items.last, case .table(var t) = last.value else {
                    throw TOMLError(location: loc, message: "'\(first)' is not a table (defined at line \(existing.location.line ?? 0))")
                }
                try withTable(&t, rest, loc, body)
                items[items.count - 1] = Located(.table(t), last.location)
                table.set(first, Located(.array(items), existing.location))
            default:
                throw TOMLError(location: loc, message: "'\(first)' is not a table (defined at line \(existing.location.line ?? 0))")
            }
        } else {
            var t = TOMLTable(location: loc)
            try withTable(&t, rest, loc, body)
            table.set(first, Located(.table(t), loc))
        }
    }

    private func defineTable(_ root: inout TOMLTable, _ path: [String], _ loc: SourceLocation) throws {
        guard let last = path.last else { return }
        try withTable(&root, path.dropLast(), loc) { parent in
            if let existing = parent[last] {
                guard case .table(var t) = existing.value, !t.explicitlyDefined else {
                    throw self.duplicate(path.joined(separator: "."), loc, previous: existing.location)
                }
                t.explicitlyDefined = true
                t.location = loc
                parent.set(last, Located(.table(t), loc))
            } else {
                var t = TOMLTable(location: loc)
                t.explicitlyDefined = true
                parent.set(last, Located(.table(t), loc))
            }
        }
    }

    private func appendArrayTable(_ root: inout TOMLTable, _ path: [String], _ loc: SourceLocation) throws {
        guard let last = path.last else { return }
        try withTable(&root, path.dropLast(), loc) { parent in
            var t = TOMLTable(location: loc)
            t.explicitlyDefined = true
            if let existing = parent[last] {
                guard case .array(var items) = existing.value else {
                    throw self.duplicate(path.joined(separator: "."), loc, previous: existing.location)
                }
                items.append(Located(.table(t), loc))
                parent.set(last, Located(.array(items), existing.location))
            } else {
                parent.set(last, Located(.array([Located(.table(t), loc)]), loc))
            }
        }
    }

    private func assign(_ root: inout TOMLTable, _ current: [String], _ key: [Located<String>], _ value: Located<TOMLValue>) throws {
        try withTable(&root, current[...], value.location) { t in
            try self.assignInto(&t, key, value)
        }
    }

    private func assignInto(_ table: inout TOMLTable, _ key: [Located<String>], _ value: Located<TOMLValue>) throws {
        guard let last = key.last else { return }
        try withTable(&table, key.dropLast().map(\.value)[...], value.location) { t in
            if let existing = t[last.value] {
                throw self.duplicate(key.map(\.value).joined(separator: "."), value.location, previous: existing.location)
            }
            t.set(last.value, value)
        }
    }
}
