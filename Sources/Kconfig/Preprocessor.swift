#if canImport(Glibc)
import Glibc
#endif
import Basics

/// Kconfig's macro language: `$(VAR)`, `$(fn,arg,...)`, user functions with `$(1)`..,
/// the built-ins (shell, info, warning-if, error-if, filename, lineno) and the
/// environment as the last fallback. Works on raw bytes.
final class Preprocessor {
    enum Flavor { case simple, recursive, append }
    private struct Variable {
        var value: [UInt8]
        var recursive: Bool
        var expanding = 0
    }
    private var variables: [[UInt8]: Variable] = [:]
    let environment: [String: String]
    let probes: ProbeRunner
    /// Set by the parser before each expansion, for `$(filename)`/`$(lineno)` and errors.
    var fileName = ""
    var line = 0
    var messages: [String] = []

    init(environment: [String: String], probes: ProbeRunner) {
        self.environment = environment
        self.probes = probes
    }

    func error(_ msg: String) -> KconfigError {
        KconfigError.parse(file: fileName, line: line, message: msg)
    }

    func assign(name: [UInt8], value: [UInt8], flavor: Flavor) throws {
        if var v = variables[name] {
            if flavor == .append {
                let add = v.recursive ? value : try expand(value[...], args: [])
                v.value += [0x20] + add
            } else {
                v.recursive = flavor == .recursive
                v.value = flavor == .simple ? try expand(value[...], args: []) : value
            }
            variables[name] = v
        } else {
            let recursive = flavor != .simple
            variables[name] = Variable(value: recursive ? value : try expand(value[...], args: []), recursive: recursive)
        }
    }

    /// Expands every `$(...)` in `s`.
    func expand(_ s: ArraySlice<UInt8>, args: [[UInt8]]) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == UInt8(ascii: "$") {
                i += 1
                out += try expandDollar(s, &i, args: args)
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    /// Expands one token: word characters and `$(...)` references, stopping at the first
    /// other character. `i` is left at that character.
    func expandToken(_ s: ArraySlice<UInt8>, _ i: inout Int) throws -> [UInt8] {
        var out: [UInt8] = []
        while i < s.endIndex {
            let c = s[i]
            if c == UInt8(ascii: "$") {
                i += 1
                out += try expandDollar(s, &i, args: [])
            } else if isWordChar(c) {
                out.append(c)
                i += 1
            } else {
                break
            }
        }
        return out
    }

    /// `i` is just after `$`. A `$` not followed by `(` is kept literally.
    func expandDollar(_ s: ArraySlice<UInt8>, _ i: inout Int, args: [[UInt8]]) throws -> [UInt8] {
        guard i < s.endIndex, s[i] == UInt8(ascii: "(") else { return [UInt8(ascii: "$")] }
        let start = i + 1
        var q = start
        var nest = 0
        while q < s.endIndex {
            if s[q] == UInt8(ascii: "(") {
                nest += 1
            } else if s[q] == UInt8(ascii: ")") {
                if nest == 0 { break }
                nest -= 1
            }
            q += 1
        }
        guard q < s.endIndex else {
            throw error("unterminated reference to '\(String(decoding: s[start...], as: UTF8.self))': missing ')'")
        }
        i = q + 1
        return try evalClause(s[start..<q], args: args)
    }

    private func evalClause(_ s: ArraySlice<UInt8>, args: [[UInt8]]) throws -> [UInt8] {
        // $(1), $(2)...: positional arguments of a user function
        if !s.isEmpty, s.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(String(decoding: s, as: UTF8.self)),
            n > 0, n <= args.count
        {
            return args[n - 1]
        }
        var parts: [ArraySlice<UInt8>] = []
        var nest = 0
        var prev = s.startIndex
        var p = s.startIndex
        while p < s.endIndex {
            let c = s[p]
            if nest == 0 && c == UInt8(ascii: ",") {
                parts.append(s[prev..<p])
                prev = p + 1
            } else if c == UInt8(ascii: "(") {
                nest += 1
            } else if c == UInt8(ascii: ")") {
                nest -= 1
            }
            p += 1
        }
        parts.append(s[prev..<s.endIndex])
        if parts.count > 16 { throw error("too many function arguments") }
        let name = try expand(parts[0], args: args)
        var fargs: [[UInt8]] = []
        for a in parts.dropFirst() { fargs.append(try expand(a, args: args)) }

        if var v = variables[name] {
            if fargs.isEmpty && v.expanding > 0 {
                throw error("Recursive variable '\(String(decoding: name, as: UTF8.self))' references itself (eventually)")
            }
            if v.expanding > 1000 { throw error("Too deep recursive expansion") }
            if !v.recursive { return v.value }
            v.expanding += 1
            variables[name] = v
            defer { variables[name]?.expanding -= 1 }
            return try expand(v.value[...], args: fargs)
        }
        if let r = try builtin(String(decoding: name, as: UTF8.self), fargs) { return r }
        if fargs.isEmpty, !name.isEmpty, let e = environment[String(decoding: name, as: UTF8.self)] {
            return Array(e.utf8)
        }
        return []
    }

    private func builtin(_ name: String, _ a: [[UInt8]]) throws -> [UInt8]? {
        func arity(_ lo: Int, _ hi: Int) throws {
            if a.count < lo { throw error("too few function arguments passed to '\(name)'") }
            if a.count > hi { throw error("too many function arguments passed to '\(name)'") }
        }
        switch name {
        case "error-if":
            try arity(2, 2)
            if a[0] == [UInt8(ascii: "y")] && !probes.recording { throw error(String(decoding: a[1], as: UTF8.self)) }
            return []
        case "warning-if":
            try arity(2, 2)
            if a[0] == [UInt8(ascii: "y")] && !probes.recording { messages.append("\(fileName):\(line): \(String(decoding: a[1], as: UTF8.self))") }
            return []
        case "info":
            try arity(1, 1)
            if !probes.recording { messages.append(String(decoding: a[0], as: UTF8.self)) }
            return []
        case "filename":
            try arity(0, 0)
            return Array(fileName.utf8)
        case "lineno":
            try arity(0, 0)
            return Array(String(line).utf8)
        case "shell":
            try arity(1, 1)
            return try probes.run(String(decoding: a[0], as: UTF8.self))
        default:
            return nil
        }
    }
}

@inline(__always) func isWordChar(_ c: UInt8) -> Bool {
    (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == 0x5f || c == 0x2d
}
