#if canImport(Glibc)
import Glibc
#endif

/// Value computation with the kernel's rules (symbol.c): lazily, memoised per symbol,
/// in the same order of sub-computations so side effects (visibility caches, the choice
/// user-value reset) match.
extension KconfigTree {
    func sym(_ id: SymID) -> Symbol { syms[Int(id)] }

    func effectiveType(_ s: Symbol) -> SymbolType {
        if s.type == .tristate {
            if s.isChoiceValue && s.visible == .yes { return .bool }
            if modulesVal == .no { return .bool }
        }
        return s.type
    }

    func stringValue(_ s: Symbol) -> String {
        switch s.type {
        case .bool, .tristate:
            switch s.curTri {
            case .no: return "n"
            case .mod:
                calc(sym(modulesSym))
                return sym(modulesSym).curTri == .no ? "n" : "m"
            case .yes: return "y"
            }
        default:
            return s.curVal
        }
    }

    func eval(_ e: Expr?) -> Tristate {
        guard let e else { return .yes }
        switch e {
        case .symbol(let id):
            let s = sym(id)
            calc(s)
            return s.curTri
        case .and(let a, let b):
            let x = eval(a)
            let y = eval(b)
            return Tristate.and(x, y)
        case .or(let a, let b):
            let x = eval(a)
            let y = eval(b)
            return Tristate.or(x, y)
        case .not(let a):
            return eval(a).not
        case .compare(let op, let l, let r):
            let ls = sym(l), rs = sym(r)
            calc(ls)
            calc(rs)
            let s1 = stringValue(ls), s2 = stringValue(rs)
            var res: Int
            if ls.type != .string || rs.type != .string, let a = parseValue(s1, ls.type), let b = parseValue(s2, rs.type) {
                if a.unsigned || b.unsigned {
                    let x = UInt64(bitPattern: a.v), y = UInt64(bitPattern: b.v)
                    res = x == y ? 0 : (x < y ? -1 : 1)
                } else {
                    res = a.v == b.v ? 0 : (a.v < b.v ? -1 : 1)
                }
            } else {
                let c = strcmp(s1, s2)
                res = c == 0 ? 0 : (c < 0 ? -1 : 1)
            }
            let t: Bool
            switch op {
            case .equal: t = res == 0
            case .unequal: t = res != 0
            case .less: t = res < 0
            case .lessEqual: t = res <= 0
            case .greater: t = res > 0
            case .greaterEqual: t = res >= 0
            }
            return t ? .yes : .no
        }
    }

    /// expr_parse_string: numbers by the symbol's type; nil means "compare as strings".
    private func parseValue(_ s: String, _ type: SymbolType) -> (v: Int64, unsigned: Bool)? {
        switch type {
        case .bool, .tristate:
            return (s == "n" ? 0 : s == "m" ? 1 : s == "y" ? 2 : -1, false)
        case .int: return strtoNum(s, base: 10).map { ($0, false) }
        case .hex: return strtoNum(s, base: 16, unsigned: true).map { ($0, true) }
        default: return strtoNum(s, base: 0).map { ($0, false) }
        }
    }

    /// strtoll/strtoull with the C tool's acceptance test (whole string, ends in a hex digit).
    func strtoNum(_ s: String, base: Int32, unsigned: Bool = false) -> Int64? {
        guard let last = s.utf8.last, isxdigit(Int32(last)) != 0 else { return nil }
        return s.withCString { p -> Int64? in
            var end: UnsafeMutablePointer<CChar>? = nil
            errno = 0
            let v: Int64 = unsigned ? Int64(bitPattern: strtoull(p, &end, base)) : strtoll(p, &end, base)
            guard errno == 0, let end, end.pointee == 0, end != UnsafeMutablePointer(mutating: p) else { return nil }
            return v
        }
    }

    /// Plain strtoll (prefix parse, 0 on garbage) as used for ranges.
    func strtoll0(_ s: String, base: Int32) -> Int64 {
        s.withCString { strtoll($0, nil, base) }
    }

    func defaultProp(_ s: Symbol) -> Property? {
        for p in s.props where p.kind == .defaultValue {
            p.visibleTri = eval(p.visible)
            if p.visibleTri != .no { return p }
        }
        return nil
    }

    func rangeProp(_ s: Symbol) -> Property? {
        for p in s.props where p.kind == .range {
            p.visibleTri = eval(p.visible)
            if p.visibleTri != .no { return p }
        }
        return nil
    }

    func rangeVal(_ id: SymID, base: Int32) -> Int64 {
        let s = sym(id)
        calc(s)
        let b: Int32 = s.type == .int ? 10 : s.type == .hex ? 16 : base
        return strtoll0(s.curVal, base: b)
    }

    func calcVisibility(_ s: Symbol) {
        var tri = Tristate.no
        let choiceSym: Symbol? = s.isChoiceValue ? sym(s.choice) : nil
        for p in s.props where p.kind == .prompt {
            var v = eval(p.visible)
            if let cs = choiceSym, s.type == .tristate, v == .mod, cs.curTri == .yes { v = .no }
            p.visibleTri = v
            tri = Tristate.or(tri, v)
        }
        if tri == .mod && (s.type != .tristate || modulesVal == .no) { tri = .yes }
        s.visible = tri
        if s.isChoiceValue { return }
        tri = s.dirDep == nil ? .yes : eval(s.dirDep)
        if tri == .mod && effectiveType(s) == .bool { tri = .yes }
        s.dirDepTri = tri
        tri = s.revDep == nil ? .no : eval(s.revDep)
        if tri == .mod && effectiveType(s) == .bool { tri = .yes }
        s.revDepTri = tri
        tri = s.implied == nil ? .no : eval(s.implied)
        if tri == .mod && effectiveType(s) == .bool { tri = .yes }
        s.impliedTri = tri
    }

    func calc(_ s: Symbol) {
        if s.flags.contains(.valid) { return }
        s.flags.insert(.valid)
        var newTri = Tristate.no
        var newVal: String
        switch s.type {
        case .int, .hex, .string: newVal = ""
        case .bool, .tristate: newVal = "n"
        case .unknown:
            s.curVal = s.name
            s.curTri = .no
            return
        }
        s.flags.remove(.write)
        calcVisibility(s)
        if s.visible != .no { s.flags.insert(.write) }
        s.curTri = newTri
        s.curVal = newVal
        s.curChoice = -1

        switch effectiveType(s) {
        case .bool, .tristate:
            if s.isChoiceValue && s.visible == .yes {
                newTri = sym(s.choice).curChoice == s.id ? .yes : .no
            } else {
                if s.visible != .no && s.hasUserValue {
                    newTri = Tristate.and(s.userTri, s.visible)
                } else {
                    if s.revDepTri != .no { s.flags.insert(.write) }
                    if !s.isChoice {
                        if let p = defaultProp(s) {
                            newTri = Tristate.and(eval(p.expr), p.visibleTri)
                            if newTri != .no { s.flags.insert(.write) }
                        }
                        if s.impliedTri != .no {
                            s.flags.insert(.write)
                            newTri = Tristate.or(newTri, s.impliedTri)
                            newTri = Tristate.and(newTri, s.dirDepTri)
                        }
                    }
                }
                newTri = Tristate.or(newTri, s.revDepTri)
            }
            if newTri == .mod && effectiveType(s) == .bool { newTri = .yes }
        case .string, .hex, .int:
            if s.visible != .no && s.hasUserValue, let u = s.userVal {
                newVal = u
            } else if let p = defaultProp(s), case .symbol(let d)? = p.expr {
                s.flags.insert(.write)
                let ds = sym(d)
                calc(ds)
                newVal = ds.curVal
            }
        case .unknown:
            break
        }
        s.curTri = newTri
        s.curVal = newVal
        if s.isChoice && newTri == .yes {
            s.curChoice = calcChoice(s)
        }
        validateRange(s)
        if s.id == modulesSym { modulesVal = s.curTri }
        if s.isChoice {
            for v in s.choiceValues {
                let cv = sym(v)
                if s.flags.contains(.write) && cv.visible != .no { cv.flags.insert(.write) }
            }
        }
        if s.flags.contains(.noWrite) { s.flags.remove(.write) }
    }

    private func calcChoice(_ cs: Symbol) -> SymID {
        var flags = cs.flags
        for v in cs.choiceValues {
            let s = sym(v)
            calcVisibility(s)
            if s.visible != .no { flags.formIntersection(s.flags) }
        }
        if !flags.contains(.defUser) { cs.flags.remove(.defUser) }
        if cs.userChoice >= 0, sym(cs.userChoice).visible != .no { return cs.userChoice }
        let d = choiceDefault(cs)
        if d < 0 { cs.curTri = .no }
        return d
    }

    func choiceDefault(_ cs: Symbol) -> SymID {
        for p in cs.props where p.kind == .defaultValue {
            p.visibleTri = eval(p.visible)
            if p.visibleTri == .no { continue }
            if case .symbol(let d)? = p.expr, sym(d).visible != .no { return d }
        }
        for v in cs.choiceValues where sym(v).visible != .no { return v }
        return -1
    }

    private func validateRange(_ s: Symbol) {
        let base: Int32
        switch s.type {
        case .int: base = 10
        case .hex: base = 16
        default: return
        }
        guard let p = rangeProp(s) else { return }
        let val = strtoll0(s.curVal, base: base)
        var bound = p.target
        if val >= rangeVal(bound, base: base) {
            bound = p.rangeHigh
            if val <= rangeVal(bound, base: base) { return }
        }
        s.curVal = sym(bound).curVal
    }

    func clearAllValid() {
        for s in syms where !s.flags.contains(.const_) || s.id > 2 {
            if s.id > 2 { s.flags.remove(.valid) }
        }
    }

    // MARK: string validity (sym_string_valid / within_range)

    func stringValid(_ s: Symbol, _ str: String) -> Bool {
        let b = Array(str.utf8)
        switch s.type {
        case .string: return true
        case .int:
            var i = 0
            if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
            guard i < b.count, isdigit(Int32(b[i])) != 0 else { return false }
            if b[i] == UInt8(ascii: "0") && i + 1 < b.count { return false }
            return b[i...].allSatisfy { isdigit(Int32($0)) != 0 }
        case .hex:
            var i = 0
            if b.count >= 2, b[0] == UInt8(ascii: "0"), b[1] == UInt8(ascii: "x") || b[1] == UInt8(ascii: "X") { i = 2 }
            guard i < b.count else { return false }
            return b[i...].allSatisfy { isxdigit(Int32($0)) != 0 }
        case .bool, .tristate:
            guard let f = b.first else { return false }
            return "yYmMnN".utf8.contains(f)
        case .unknown: return false
        }
    }

    func withinRange(_ s: Symbol, _ str: String) -> Bool {
        switch s.type {
        case .string: return true
        case .int, .hex:
            guard stringValid(s, str) else { return false }
            guard let p = rangeProp(s) else { return true }
            let base: Int32 = s.type == .int ? 10 : 16
            let v = strtoll0(str, base: base)
            return v >= rangeVal(p.target, base: base) && v <= rangeVal(p.rangeHigh, base: base)
        default: return true
        }
    }
}
