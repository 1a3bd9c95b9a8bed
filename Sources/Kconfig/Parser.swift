#if canImport(Glibc)
import Glibc
#endif
import Basics

/// A parsed Kconfig tree (all files of one architecture) plus its evaluation state.
public final class KconfigTree {
    var syms: [Symbol] = []
    var nonConst: [String: SymID] = [:]
    var consts: [String: SymID] = [:]
    var namedChoices: [String: SymID] = [:]
    let root: MenuNode
    var menus: [MenuNode] = []
    public internal(set) var files: [String] = []
    var modulesSym: SymID = 0
    var modulesVal: Tristate = .no
    public internal(set) var messages: [String] = []
    public let sourceTree: String
    /// Probe commands run and answered from the cache while loading.
    public internal(set) var probeStats: (executed: Int, cached: Int) = (0, 0)
    var lastOrigins: [SymID: ConfigOrigin] = [:]
    var unknownSymbolsRead = false

    static let no: SymID = 0, mod: SymID = 1, yes: SymID = 2

    init(sourceTree: String) {
        self.sourceTree = sourceTree
        root = MenuNode(file: 0, line: 0)
        menus.append(root)
        for (i, (n, t)) in [("n", Tristate.no), ("m", .mod), ("y", .yes)].enumerated() {
            let s = Symbol(id: SymID(i), name: n)
            s.flags = [.const_, .valid]
            s.curTri = t
            s.curVal = n
            syms.append(s)
        }
    }

    /// Symbol lookup as the kernel does it: "y", "m", "n" are the constants; quoted
    /// strings are constants in their own namespace.
    func lookup(_ name: String, const isConst: Bool) -> SymID {
        if name.utf8.count == 1 {
            switch name {
            case "y": return KconfigTree.yes
            case "m": return KconfigTree.mod
            case "n": return KconfigTree.no
            default: break
            }
        }
        if isConst {
            if let s = consts[name] { return s }
        } else if let s = nonConst[name] {
            return s
        }
        let id = SymID(syms.count)
        let s = Symbol(id: id, name: name)
        if isConst {
            s.flags.insert(.const_)
            consts[name] = id
        } else {
            nonConst[name] = id
        }
        syms.append(s)
        return id
    }

    func newChoice(name: String?) -> SymID {
        if let name, let s = namedChoices[name] { return s }
        let id = SymID(syms.count)
        let s = Symbol(id: id, name: name ?? "<choice>")
        s.flags = [.choice, .noWrite]
        syms.append(s)
        if let name { namedChoices[name] = id }
        return id
    }

    /// A symbol defined in the tree (has a type), by name without `CONFIG_`.
    func find(_ name: String) -> Symbol? {
        if name.utf8.count == 1, ["y", "m", "n"].contains(name) { return syms[Int(lookup(name, const: false))] }
        guard let id = nonConst[name] else { return nil }
        return syms[Int(id)]
    }

    public var symbolCount: Int { syms.count { $0.type != .unknown && !$0.isChoice } }
    public var choiceCount: Int { syms.count { $0.isChoice } }
    public var mainMenuTitle: String { root.prompt?.text ?? "Main menu" }
}

/// Parses Kconfig files into a `KconfigTree` (the C tool's parser.y + menu.c semantics).
final class Parser {
    let tree: KconfigTree
    let lx: Lexer
    var currentMenu: MenuNode
    var currentEntry: MenuNode
    var stmtLine = 0
    var stmtFile: Int32 = 0

    init(tree: KconfigTree, pp: Preprocessor) {
        self.tree = tree
        lx = Lexer(pp: pp)
        currentMenu = tree.root
        currentEntry = tree.root
    }

    func parse(file: String) throws {
        try openSource(file, relativeToCurrent: false, optional: false, fromLine: 0)
        try statements(until: nil, inChoice: false)
    }

    /// Reads every file and expands every macro without building the tree: the cheap
    /// pass that collects toolchain probes (sources, assignments and help texts are the
    /// only statements that change how the rest is read).
    func scanOnly(file: String) throws {
        try openSource(file, relativeToCurrent: false, optional: false, fromLine: 0)
        var atStart = true
        while true {
            let t = try next()
            switch t.kind {
            case .eof: return
            case .eol:
                atStart = true
                continue
            case .kSource, .kRsource, .kOsource, .kOrsource:
                let q = try next()
                guard q.kind == .quoted else { continue }
                try expectEOL("source")
                try openSource(
                    String(decoding: q.text, as: UTF8.self), relativeToCurrent: t.kind == .kRsource || t.kind == .kOrsource,
                    optional: t.kind == .kOsource || t.kind == .kOrsource, fromLine: t.line)
                atStart = true
                continue
            case .kHelp where atStart:
                try expectEOL("help")
                lx.skipHelp()
                atStart = true
                continue
            case .word where atStart:
                let op = try lx.peek()
                let flavor: Preprocessor.Flavor
                switch op.kind {
                case .equal: flavor = .recursive
                case .colonEqual: flavor = .simple
                case .plusEqual: flavor = .append
                default:
                    atStart = false
                    continue
                }
                _ = try next()
                let v = lx.assignValue()
                try lx.pp.assign(name: t.text, value: v, flavor: flavor)
            default:
                break
            }
            atStart = false
        }
    }

    // MARK: files

    private func openSource(_ name: String, relativeToCurrent: Bool, optional: Bool, fromLine: Int) throws {
        var paths: [(display: String, full: String)] = []
        let display = relativeToCurrent && !name.hasPrefix("/") && !lx.fileDir.isEmpty ? lx.fileDir + "/" + name : name
        let full = display.hasPrefix("/") ? display : tree.sourceTree + "/" + display
        if display.contains(where: { $0 == "*" || $0 == "?" || $0 == "[" }) {
            var g = glob_t()
            defer { globfree(&g) }
            if glob(full, 0, nil, &g) == 0 {
                for i in 0..<Int(g.gl_pathc) {
                    guard let p = g.gl_pathv[i] else { continue }
                    let f = String(cString: p)
                    let rel = f.hasPrefix(tree.sourceTree + "/") ? String(f.dropFirst(tree.sourceTree.count + 1)) : f
                    paths.append((rel, f))
                }
            }
            if paths.isEmpty && !optional {
                throw lx.error("'\(name)' matches no files")
            }
        } else {
            if !FileSystem.exists(full) {
                if optional { return }
                throw lx.error("can't open file \"\(display)\"", line: fromLine)
            }
            paths.append((display, full))
        }
        var loaded: [(name: String, bytes: [UInt8], index: Int32)] = []
        for (d, f) in paths {
            if lx.includeChain.contains(d) {
                throw lx.error("recursive inclusion of \"\(d)\" (included from \(lx.includeChain.joined(separator: " -> ")))", line: fromLine)
            }
            let bytes: [UInt8]
            do { bytes = try FileSystem.readFile(f) } catch { throw lx.error("can't open file \"\(d)\": \(error)", line: fromLine) }
            loaded.append((d, bytes, Int32(tree.files.count)))
            tree.files.append(d)
        }
        // Push in reverse so the first match is read first.
        for (d, bytes, idx) in loaded.reversed() {
            let dir = FileSystem.dirname(d)
            lx.push(bytes: bytes, name: d, dir: dir == "." ? "" : dir, index: idx)
        }
    }

    // MARK: tokens

    private func next() throws -> Token { try lx.next() }

    private func expectEOL(_ what: String) throws {
        let t = try next()
        guard t.kind == .eol || t.kind == .eof else {
            throw lx.error("unexpected \(t.describe) after \(what)", line: t.line)
        }
    }

    private func unexpected(_ t: Token, _ what: String) -> KconfigError {
        lx.error("syntax error: unexpected \(t.describe) \(what)", line: t.line)
    }

    private func word(_ t: Token, _ what: String) throws -> String {
        guard t.kind == .word else { throw unexpected(t, "(expected \(what))") }
        return String(decoding: t.text, as: UTF8.self)
    }

    // MARK: menu structure (menu.c)

    private func addEntry(sym: SymID) -> MenuNode {
        let m = MenuNode(file: lx.fileIndex, line: Int32(stmtLine))
        m.sym = sym
        m.parent = currentMenu
        if let t = currentMenu.tail { t.next = m } else { currentMenu.list = m }
        currentMenu.tail = m
        currentEntry = m
        tree.menus.append(m)
        if sym >= 0 {
            tree.syms[Int(sym)].menus.append(m)
            tree.syms[Int(sym)].flags.insert(.defined)
        }
        return m
    }

    private func beginMenu() { currentMenu = currentEntry }
    private func endMenu() {
        if let p = currentMenu.parent { currentMenu = p }
    }

    private func addProp(_ kind: PropKind, expr: Expr?, dep: Expr?) -> Property {
        let p = Property(kind: kind, menu: currentEntry, file: lx.fileIndex, line: Int32(stmtLine))
        p.expr = expr
        p.visible = dep
        if currentEntry.sym >= 0 { tree.syms[Int(currentEntry.sym)].props.append(p) }
        return p
    }

    private func addPrompt(_ kind: PropKind, _ text: [UInt8], _ dep: Expr?) {
        let p = addProp(kind, expr: nil, dep: dep)
        var t = text[...]
        while let f = t.first, f == 0x20 || f == 0x09 || f == 0x0a { t = t.dropFirst() }
        p.text = String(decoding: t, as: UTF8.self)
        if kind == .prompt {
            var m = currentEntry.parent
            while let mm = m {
                if let v = mm.visibility { p.visible = Expr.both(p.visible, v) }
                m = mm.parent
            }
        }
        currentEntry.prompt = p
    }

    private func setType(_ t: SymbolType) {
        guard currentEntry.sym >= 0 else { return }
        let s = tree.syms[Int(currentEntry.sym)]
        if s.type == t { return }
        if s.type == .unknown {
            s.type = t
            return
        }
        tree.messages.append("\(lx.fileName):\(stmtLine):warning: ignoring type redefinition of '\(s.name)' from '\(s.type.name)' to '\(t.name)'")
    }

    // MARK: statements

    private func statements(until end: TokKind?, inChoice: Bool) throws {
        while true {
            let t = try next()
            stmtLine = t.line
            switch t.kind {
            case .eol: continue
            case .eof:
                if let end {
                    throw lx.error("unexpected end of file: missing '\(Lexer.spelling[end] ?? "")'", line: t.line)
                }
                return
            case .kEndmenu, .kEndchoice, .kEndif:
                guard t.kind == end else {
                    throw lx.error("unexpected '\(Lexer.spelling[t.kind] ?? "")'" + (end.map { " (open block expects '\(Lexer.spelling[$0] ?? "")')" } ?? " outside any block"), line: t.line)
                }
                try expectEOL(Lexer.spelling[t.kind] ?? "")
                return
            case .kConfig, .kMenuconfig:
                try configEntry(menuconfig: t.kind == .kMenuconfig)
            case .kComment:
                let s = try next()
                guard s.kind == .quoted else { throw unexpected(s, "after 'comment' (expected a quoted text)") }
                try expectEOL("comment")
                _ = addEntry(sym: -1)
                addPrompt(.comment, s.text, nil)
                while try lx.peek().kind == .kDepends { _ = try next(); try depends() }
            case .kIf:
                let e = try expr()
                try expectEOL("if")
                _ = addEntry(sym: -1)
                currentEntry.dep = Expr.both(currentEntry.dep, e)
                beginMenu()
                try statements(until: .kEndif, inChoice: inChoice)
                endMenu()
            case .kChoice where !inChoice:
                try choiceEntry()
            case .kMenu where !inChoice:
                let s = try next()
                guard s.kind == .quoted else { throw unexpected(s, "after 'menu' (expected a quoted title)") }
                try expectEOL("menu")
                _ = addEntry(sym: -1)
                addPrompt(.menu, s.text, nil)
                while true {
                    let k = try lx.peek().kind
                    if k == .kDepends {
                        _ = try next()
                        try depends()
                    } else if k == .kVisible {
                        _ = try next()
                        var v: Expr? = nil
                        if try lx.peek().kind == .kIf {
                            _ = try next()
                            v = try expr()
                        }
                        try expectEOL("visible")
                        currentEntry.visibility = Expr.both(currentEntry.visibility, v)
                    } else if k == .eol {
                        _ = try next()
                    } else {
                        break
                    }
                }
                beginMenu()
                try statements(until: .kEndmenu, inChoice: false)
                endMenu()
            case .kSource, .kRsource, .kOsource, .kOrsource:
                let s = try next()
                guard s.kind == .quoted else { throw unexpected(s, "after 'source' (expected a quoted path)") }
                try expectEOL("source")
                try openSource(
                    String(decoding: s.text, as: UTF8.self), relativeToCurrent: t.kind == .kRsource || t.kind == .kOrsource,
                    optional: t.kind == .kOsource || t.kind == .kOrsource, fromLine: t.line)
            case .kMainmenu where !inChoice:
                let s = try next()
                guard s.kind == .quoted else { throw unexpected(s, "after 'mainmenu' (expected a quoted title)") }
                try expectEOL("mainmenu")
                let saved = currentEntry
                currentEntry = tree.root
                addPrompt(.menu, s.text, nil)
                currentEntry = saved
            case .word where !inChoice:
                let op = try next()
                let flavor: Preprocessor.Flavor
                switch op.kind {
                case .equal: flavor = .recursive
                case .colonEqual: flavor = .simple
                case .plusEqual: flavor = .append
                default:
                    throw lx.error("unknown statement \"\(String(decoding: t.text, as: UTF8.self))\"", line: t.line)
                }
                let v = lx.assignValue()
                lx.pp.fileName = lx.fileName
                lx.pp.line = t.line
                try lx.pp.assign(name: t.text, value: v, flavor: flavor)
                try expectEOL("assignment")
            default:
                throw lx.error("invalid statement: unexpected \(t.describe)", line: t.line)
            }
        }
    }

    private func depends() throws {
        let on = try next()
        guard on.kind == .kOn else { throw unexpected(on, "after 'depends' (expected 'on')") }
        let e = try expr()
        try expectEOL("depends on")
        currentEntry.dep = Expr.both(currentEntry.dep, e)
    }

    private func ifExpr() throws -> Expr? {
        if try lx.peek().kind == .kIf {
            _ = try next()
            return try expr()
        }
        return nil
    }

    private func typeOf(_ k: TokKind) -> SymbolType? {
        switch k {
        case .kBool: .bool
        case .kTristate: .tristate
        case .kInt: .int
        case .kHex: .hex
        case .kString: .string
        default: nil
        }
    }

    private func configEntry(menuconfig: Bool) throws {
        let nameTok = try next()
        let name = try word(nameTok, "a symbol name after 'config'")
        try expectEOL("config \(name)")
        let sym = tree.lookup(name, const: false)
        tree.syms[Int(sym)].flags.insert(.optional)
        _ = addEntry(sym: sym)
        try configOptions(choice: false)
        if menuconfig {
            if let p = currentEntry.prompt, p.kind == .prompt {
                currentEntry.prompt = p
            }
        }
    }

    /// Options of a config or choice entry, up to the first line that is not one.
    private func configOptions(choice: Bool) throws {
        while true {
            let t = try lx.peek()
            stmtLine = t.line
            switch t.kind {
            case .eol:
                _ = try next()
            case .kBool, .kTristate, .kInt, .kHex, .kString:
                _ = try next()
                guard let ty = typeOf(t.kind) else { return }
                if choice && ty != .bool && ty != .tristate { throw unexpected(t, "in choice (only bool or tristate)") }
                setType(ty)
                if try lx.peek().kind == .quoted {
                    let s = try next()
                    addPrompt(.prompt, s.text, try ifExpr())
                }
                try expectEOL(Lexer.spelling[t.kind] ?? "type")
            case .kPrompt:
                _ = try next()
                let s = try next()
                guard s.kind == .quoted else { throw unexpected(s, "after 'prompt' (expected a quoted text)") }
                addPrompt(.prompt, s.text, try ifExpr())
                try expectEOL("prompt")
            case .kDefault, .kDefBool, .kDefTristate:
                _ = try next()
                if choice {
                    guard t.kind == .kDefault else { throw unexpected(t, "in choice") }
                    let s = tree.lookup(try word(try next(), "a symbol after 'default'"), const: false)
                    let p = addProp(.defaultValue, expr: .symbol(s), dep: try ifExpr())
                    p.target = s
                    try expectEOL("default")
                } else {
                    let e = try expr()
                    _ = addProp(.defaultValue, expr: e, dep: try ifExpr())
                    if t.kind == .kDefBool { setType(.bool) }
                    if t.kind == .kDefTristate { setType(.tristate) }
                    try expectEOL(Lexer.spelling[t.kind] ?? "default")
                }
            case .kSelect, .kImply:
                guard !choice else { throw unexpected(t, "in choice") }
                _ = try next()
                let s = tree.lookup(try word(try next(), "a symbol name after '\(Lexer.spelling[t.kind] ?? "")'"), const: false)
                let p = addProp(t.kind == .kSelect ? .select : .imply, expr: nil, dep: try ifExpr())
                p.target = s
                try expectEOL(Lexer.spelling[t.kind] ?? "")
            case .kRange:
                guard !choice else { throw unexpected(t, "in choice") }
                _ = try next()
                let lo = try symbolOperand()
                let hi = try symbolOperand()
                let p = addProp(.range, expr: nil, dep: try ifExpr())
                p.target = lo
                p.rangeHigh = hi
                try expectEOL("range")
            case .kModules:
                _ = try next()
                try expectEOL("modules")
                if tree.modulesSym != 0 {
                    throw lx.error("symbol '\(tree.syms[Int(currentEntry.sym)].name)' redefines option 'modules' already defined by symbol '\(tree.syms[Int(tree.modulesSym)].name)'", line: t.line)
                }
                tree.modulesSym = currentEntry.sym
            case .kOption:
                // `option modules` (before Linux 5.13) and other legacy options
                _ = try next()
                let o = try next()
                if o.kind == .kModules {
                    tree.modulesSym = currentEntry.sym
                }
                while true {
                    let k = try lx.peek().kind
                    if k == .eol || k == .eof { break }
                    _ = try next()
                }
                try expectEOL("option")
            case .kTransitional:
                _ = try next()
                try expectEOL("transitional")
            case .kOptional where choice:
                _ = try next()
                try expectEOL("optional")
                tree.syms[Int(currentEntry.sym)].flags.insert(.optional)
            case .kDepends:
                _ = try next()
                try depends()
            case .kHelp:
                _ = try next()
                try expectEOL("help")
                lx.skipHelp()
            default:
                return
            }
        }
    }

    private func choiceEntry() throws {
        var name: String? = nil
        if try lx.peek().kind == .word { name = String(decoding: try next().text, as: UTF8.self) }
        try expectEOL("choice")
        let sym = tree.newChoice(name: name)
        _ = addEntry(sym: sym)
        try configOptions(choice: true)
        beginMenu()
        try statements(until: .kEndchoice, inChoice: true)
        endMenu()
    }

    // MARK: expressions

    private func symbolOperand() throws -> SymID {
        let t = try next()
        switch t.kind {
        case .word: return tree.lookup(String(decoding: t.text, as: UTF8.self), const: false)
        case .quoted: return tree.lookup(String(decoding: t.text, as: UTF8.self), const: true)
        default: throw unexpected(t, "in expression (expected a symbol or a quoted value)")
        }
    }

    private func expr() throws -> Expr {
        var e = try andExpr()
        while try lx.peek().kind == .or {
            _ = try next()
            e = .or(e, try andExpr())
        }
        return e
    }

    private func andExpr() throws -> Expr {
        var e = try notExpr()
        while try lx.peek().kind == .and {
            _ = try next()
            e = .and(e, try notExpr())
        }
        return e
    }

    private func notExpr() throws -> Expr {
        let t = try lx.peek()
        if t.kind == .not {
            _ = try next()
            return .not(try notExpr())
        }
        if t.kind == .open {
            _ = try next()
            let e = try expr()
            let c = try next()
            guard c.kind == .close else { throw unexpected(c, "in expression (expected ')')") }
            return e
        }
        let a = try symbolOperand()
        let op: CompareOp
        switch try lx.peek().kind {
        case .equal: op = .equal
        case .unequal: op = .unequal
        case .less: op = .less
        case .lessEqual: op = .lessEqual
        case .greater: op = .greater
        case .greaterEqual: op = .greaterEqual
        default: return .symbol(a)
        }
        _ = try next()
        return .compare(op, a, try symbolOperand())
    }
}
