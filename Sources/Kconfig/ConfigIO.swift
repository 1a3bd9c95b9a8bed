import Basics

/// Where a configuration value came from.
public struct ConfigOrigin: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }
    public var description: String { "\(file):\(line)" }
}

/// One symbol assignment line of a .config / defconfig / fragment.
public struct ConfigAssignment: Sendable, Hashable {
    public var name: String
    /// "n" for `# CONFIG_X is not set`; otherwise the text after `=` (strings keep quotes).
    public var value: String
    /// the whole line as written
    public var line: String
    public var origin: ConfigOrigin
    public var isNotSet: Bool { line.hasPrefix("#") }
}

/// Text-level reading of config files (no Kconfig tree needed).
public enum ConfigText {
    /// Splits a config file into its symbol assignment lines, the way the kernel's reader
    /// and merge_config.sh recognise them. Other lines are ignored.
    public static func assignments(_ text: String, file: String, prefix: String = "CONFIG_") -> [ConfigAssignment] {
        var out: [ConfigAssignment] = []
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var l = Substring(raw)
            if l.hasSuffix("\r") { l = l.dropLast() }
            if let a = parse(l, prefix: prefix) {
                out.append(ConfigAssignment(name: a.0, value: a.1, line: String(l), origin: ConfigOrigin(file: file, line: lineNo)))
            }
        }
        return out
    }

    static func parse(_ l: Substring, prefix: String) -> (String, String)? {
        if l.hasPrefix("# " + prefix) {
            let rest = l.dropFirst(2 + prefix.count)
            guard let sp = rest.firstIndex(of: " ") else { return nil }
            guard rest[sp...].dropFirst().hasPrefix("is not set") else { return nil }
            return (String(rest[..<sp]), "n")
        }
        if l.hasPrefix(prefix) {
            let rest = l.dropFirst(prefix.count)
            guard let eq = rest.firstIndex(of: "=") else { return nil }
            return (String(rest[..<eq]), String(rest[rest.index(after: eq)...]))
        }
        return nil
    }

    /// The value a string assignment denotes (quotes removed, backslash escapes resolved);
    /// nil when the quoting is broken.
    public static func unquote(_ v: String) -> String? {
        guard v.hasPrefix("\"") else { return nil }
        var out = ""
        var it = v.dropFirst().makeIterator()
        while let c = it.next() {
            if c == "\"" { return out }
            if c == "\\" {
                guard let n = it.next() else { return nil }
                out.append(n)
            } else {
                out.append(c)
            }
        }
        return nil
    }

    public static func quote(_ s: String) -> String {
        var out = "\""
        for c in s {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out + "\""
    }
}

extension KconfigTree {
    /// conf_read_simple: loads user values. Returns the origin of each symbol's value.
    @discardableResult
    func readUserValues(_ assignments: [ConfigAssignment], warnings: inout [String]) -> [SymID: ConfigOrigin] {
        var origins: [SymID: ConfigOrigin] = [:]
        unknownSymbolsRead = false
        for s in syms where s.id > 2 {
            s.flags.remove([.defUser, .valid])
            if s.isChoice { s.flags.insert(.defUser) }
            s.userTri = .no
            s.userVal = nil
            s.userChoice = -1
        }
        for a in assignments {
            guard let s = findForConfig(a.name) else {
                // the kernel marks the configuration changed when it names unknown symbols
                unknownSymbolsRead = true
                continue
            }
            if s.hasUserValue && !s.isChoice {
                warnings.append("\(a.origin): override: reassigning to symbol \(a.name)")
            }
            if a.isNotSet {
                if s.type == .bool || s.type == .tristate {
                    s.userTri = .no
                    s.flags.insert(.defUser)
                    origins[s.id] = a.origin
                }
            } else {
                let v = a.value
                switch s.type {
                case .tristate where v.hasPrefix("m"):
                    s.userTri = .mod
                    s.flags.insert(.defUser)
                case .tristate, .bool:
                    if v.hasPrefix("y") {
                        s.userTri = .yes
                    } else if v.hasPrefix("n") {
                        s.userTri = .no
                    } else {
                        warnings.append("\(a.origin): symbol value '\(v)' invalid for \(a.name)")
                        continue
                    }
                    s.flags.insert(.defUser)
                case .string:
                    guard v.hasPrefix("\"") else { break }
                    guard let u = ConfigText.unquote(v) else {
                        warnings.append("\(a.origin): invalid string found")
                        continue
                    }
                    s.userVal = u
                    s.flags.insert(.defUser)
                case .int, .hex:
                    guard stringValid(s, v) else {
                        warnings.append("\(a.origin): symbol value '\(v)' invalid for \(a.name)")
                        continue
                    }
                    s.userVal = v
                    s.flags.insert(.defUser)
                case .unknown:
                    break
                }
                origins[s.id] = a.origin
            }
            if s.isChoiceValue {
                let cs = sym(s.choice)
                switch s.userTri {
                case .no: break
                case .mod:
                    if cs.userTri == .yes {
                        warnings.append("\(a.origin): \(a.name) creates inconsistent choice state")
                        cs.flags.remove(.defUser)
                    }
                case .yes:
                    if cs.userTri != .no { warnings.append("\(a.origin): override: \(a.name) changes choice state") }
                    cs.userChoice = s.id
                }
                cs.userTri = Tristate.or(cs.userTri, s.userTri)
            }
        }
        return origins
    }

    func findForConfig(_ name: String) -> Symbol? {
        if name.utf8.count == 1, name == "y" || name == "m" || name == "n" { return nil }
        if let id = nonConst[name] { return syms[Int(id)] }
        if let id = namedChoices[name] { return syms[Int(id)] }
        return nil
    }

    /// conf_read after the raw load: computes everything and drops user values that the
    /// kernel drops (out-of-range numbers; invisible symbols when nothing changed).
    /// Returns whether the configuration counts as changed.
    func postRead(warnings: Int) -> Bool {
        calc(sym(modulesSym))
        var unsaved = 0
        for s in syms where s.id > 2 {
            calc(s)
            if s.isChoice || s.flags.contains(.noWrite) { continue }
            if s.hasUserValue && s.flags.contains(.write) {
                switch s.type {
                case .bool, .tristate:
                    if s.userTri == s.curTri { continue }
                default:
                    if s.curVal == s.userVal { continue }
                }
            } else if !s.hasUserValue && !s.flags.contains(.write) {
                continue
            }
            unsaved += 1
        }
        for s in syms where s.id > 2 {
            guard s.hasUserValue && !s.isChoiceValue else { continue }
            if s.visible == .no && unsaved == 0 { s.flags.remove(.defUser) }
            switch s.type {
            case .string, .int, .hex:
                if withinRange(s, s.userVal ?? "") { break }
                s.flags.remove([.valid, .defUser])
                unsaved += 1
            default: break
            }
        }
        return warnings > 0 || unsaved > 0 || unknownSymbolsRead
    }

    func menuVisible(_ m: MenuNode) -> Bool {
        guard let p = m.prompt else { return false }
        if let v = m.visibility, eval(v) == .no { return false }
        if m.sym >= 0 {
            let s = sym(m.sym)
            calc(s)
            if p.visibleTri != .no { return true }
            if s.curTri == .no { return false }
            var c = m.list
            while let cc = c {
                if menuVisible(cc) { return true }
                c = cc.next
            }
            return false
        }
        p.visibleTri = eval(p.visible)
        return p.visibleTri != .no
    }

    /// conf_write: the .config text, in menu order with menu comments, exactly as the
    /// kernel's tool writes it.
    func configText(changed: Bool) -> String {
        var out = "#\n# Automatically generated file; DO NOT EDIT.\n# \(mainMenuTitle)\n#\n"
        if !changed { clearAllValid() }
        var needNewline = false
        var written = [Bool](repeating: false, count: syms.count)
        var menu = root.list
        while let m = menu {
            if m.sym < 0 {
                if menuVisible(m), let p = m.prompt {
                    out += "\n#\n# \(p.text)\n#\n"
                    needNewline = false
                }
            } else {
                let s = sym(m.sym)
                if !s.isChoice && !written[Int(s.id)] {
                    calc(s)
                    if s.flags.contains(.write) {
                        if needNewline {
                            out += "\n"
                            needNewline = false
                        }
                        written[Int(s.id)] = true
                        out += symbolLine(s)
                    }
                }
            }
            if let c = m.list {
                menu = c
                continue
            }
            var cur: MenuNode? = m
            menu = nil
            while let c = cur {
                if c.sym < 0, c !== root, let p = c.prompt, p.kind == .menu, menuVisible(c) {
                    out += "# end of \(p.text)\n"
                    needNewline = true
                }
                if let n = c.next {
                    menu = n
                    break
                }
                cur = c.parent
            }
        }
        return out
    }

    func symbolLine(_ s: Symbol) -> String {
        let v = stringValue(s)
        switch s.type {
        case .unknown: return ""
        case .bool, .tristate:
            if v == "n" { return "# CONFIG_\(s.name) is not set\n" }
            return "CONFIG_\(s.name)=\(v)\n"
        case .string: return "CONFIG_\(s.name)=\(ConfigText.quote(v))\n"
        default: return "CONFIG_\(s.name)=\(v)\n"
        }
    }
}

extension KconfigTree {
    /// sym_get_string_default: the value the symbol would have without a user value.
    func stringDefault(_ s: Symbol) -> String {
        calcVisibility(s)
        calc(sym(modulesSym))
        var val = Tristate.no
        var str = ""
        if let p = defaultProp(s) {
            switch s.type {
            case .bool, .tristate:
                val = Tristate.and(eval(p.expr), p.visibleTri)
            default:
                if case .symbol(let d)? = p.expr {
                    calc(sym(d))
                    str = sym(d).curVal
                }
            }
        }
        val = Tristate.or(val, s.revDepTri)
        if val == .mod && !s.isChoiceValue && sym(modulesSym).curTri == .no { val = .yes }
        if s.type == .bool && val == .mod { val = .yes }
        if val < s.impliedTri { val = s.impliedTri }
        switch s.type {
        case .bool, .tristate: return val.letter
        case .int, .hex, .string: return str
        case .unknown: return ""
        }
    }

    /// conf_write_defconfig: the minimal configuration (`make savedefconfig`) for the
    /// values currently loaded.
    func defconfigText() -> String {
        clearAllValid()
        var out = ""
        var done = [Bool](repeating: false, count: syms.count)
        var menu = root.list
        while let m = menu {
            if m.sym >= 0, !sym(m.sym).isChoice, !done[Int(m.sym)] {
                let s = sym(m.sym)
                calc(s)
                if s.flags.contains(.write) {
                    done[Int(s.id)] = true
                    var skip = !(s.visible > s.revDepTri) || stringValue(s) == stringDefault(s)
                    if !skip && s.isChoiceValue {
                        let cs = sym(s.choice)
                        if !cs.flags.contains(.optional) && choiceDefault(cs) == s.id && s.type == .bool && s.curTri == .yes {
                            skip = true
                        }
                    }
                    if !skip { out += symbolLine(s) }
                }
            }
            if let c = m.list {
                menu = c
            } else if let n = m.next {
                menu = n
            } else {
                var p = m.parent
                menu = nil
                while let pp = p {
                    if let n = pp.next {
                        menu = n
                        break
                    }
                    p = pp.parent
                }
            }
        }
        return out
    }

    /// Loads a configuration (as `make savedefconfig` does: olddefconfig rules) and
    /// returns the minimal defconfig for it.
    public func savedefconfig(_ assignments: [ConfigAssignment]) -> (defconfig: String, warnings: [String]) {
        var warnings: [String] = []
        lastOrigins = readUserValues(assignments, warnings: &warnings)
        _ = postRead(warnings: warnings.count)
        return (defconfigText(), warnings)
    }
}
