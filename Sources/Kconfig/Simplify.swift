/// The kernel's dependency simplification (expr_transform, expr_eliminate_dups) on a
/// mutable tree. The rewrites keep values, except that they decide what the later
/// `X != n` -> `X` rewrite for bool owners (expr_trans_bool) sees — which changes the
/// value of selects from bool symbols. So the finaliser runs this only for those
/// expressions that contain such comparisons, node identity and all.
final class SNode {
    enum Kind { case symbol, not, and, or, compare }
    var kind: Kind
    var op: CompareOp = .equal
    var a: SSlot?
    var b: SSlot?
    var s1: SymID = -1
    var s2: SymID = -1

    init(kind: Kind) { self.kind = kind }
    static func sym(_ s: SymID) -> SNode {
        let n = SNode(kind: .symbol)
        n.s1 = s
        return n
    }
    static func two(_ k: Kind, _ x: SNode, _ y: SNode) -> SNode {
        let n = SNode(kind: k)
        n.a = SSlot(x)
        n.b = SSlot(y)
        return n
    }
    static func cmp(_ op: CompareOp, _ l: SymID, _ r: SymID) -> SNode {
        let n = SNode(kind: .compare)
        n.op = op
        n.s1 = l
        n.s2 = r
        return n
    }
    func assign(from o: SNode) {
        kind = o.kind
        op = o.op
        a = o.a
        b = o.b
        s1 = o.s1
        s2 = o.s2
    }
    func copy() -> SNode {
        let n = SNode(kind: kind)
        n.op = op
        n.s1 = s1
        n.s2 = s2
        if let a { n.a = SSlot(a.n.copy()) }
        if let b { n.b = SSlot(b.n.copy()) }
        return n
    }
    var left: SNode { a?.n ?? SNode.sym(KconfigTree.yes) }
    var right: SNode { b?.n ?? SNode.sym(KconfigTree.yes) }

    convenience init(_ e: Expr) {
        switch e {
        case .symbol(let s):
            self.init(kind: .symbol)
            s1 = s
        case .not(let x):
            self.init(kind: .not)
            a = SSlot(SNode(x))
        case .and(let x, let y):
            self.init(kind: .and)
            a = SSlot(SNode(x))
            b = SSlot(SNode(y))
        case .or(let x, let y):
            self.init(kind: .or)
            a = SSlot(SNode(x))
            b = SSlot(SNode(y))
        case .compare(let o, let l, let r):
            self.init(kind: .compare)
            op = o
            s1 = l
            s2 = r
        }
    }

    var expr: Expr {
        switch kind {
        case .symbol: return .symbol(s1)
        case .not: return .not(left.expr)
        case .and: return .and(left.expr, right.expr)
        case .or: return .or(left.expr, right.expr)
        case .compare: return .compare(op, s1, s2)
        }
    }
}

final class SSlot {
    var n: SNode
    init(_ n: SNode) { self.n = n }
}

final class Simplifier {
    let tree: KconfigTree
    var transCount = 0
    init(tree: KconfigTree) { self.tree = tree }

    private func type(_ s: SymID) -> SymbolType { tree.syms[Int(s)].type }
    private func isConst(_ s: SymID) -> Bool { tree.syms[Int(s)].flags.contains(.const_) }
    private let no = KconfigTree.no, mod = KconfigTree.mod, yes = KconfigTree.yes

    func transform(_ e: SNode?) -> SNode? {
        guard let e else { return nil }
        switch e.kind {
        case .compare, .symbol: break
        default:
            if let a = e.a, let t = transform(a.n) { a.n = t }
            if let b = e.b, let t = transform(b.n) { b.n = t }
        }
        switch e.kind {
        case .compare where e.op == .equal:
            guard type(e.s1) == .bool else { break }
            if e.s2 == no {
                let s = e.s1
                e.kind = .not
                e.a = SSlot(.sym(s))
            } else if e.s2 == mod {
                e.kind = .symbol
                e.s1 = no
            } else if e.s2 == yes {
                e.kind = .symbol
            }
        case .compare where e.op == .unequal:
            guard type(e.s1) == .bool else { break }
            if e.s2 == no {
                e.kind = .symbol
            } else if e.s2 == mod {
                e.kind = .symbol
                e.s1 = yes
            } else if e.s2 == yes {
                let s = e.s1
                e.kind = .not
                e.a = SSlot(.sym(s))
            }
        case .not:
            let c = e.left
            switch c.kind {
            case .not:
                return transform(c.left)
            case .compare:
                switch c.op {
                case .equal: c.op = .unequal
                case .unequal: c.op = .equal
                case .lessEqual: c.op = .greater
                case .greaterEqual: c.op = .less
                case .less: c.op = .greaterEqual
                case .greater: c.op = .lessEqual
                }
                return c
            case .or, .and:
                // !(a || b) -> !a && !b ; !(a && b) -> !a || !b
                let tmp = c
                e.kind = c.kind == .or ? .and : .or
                let nb = SNode(kind: .not)
                nb.a = tmp.b
                e.b = SSlot(nb)
                tmp.kind = .not
                tmp.b = nil
                return transform(e)
            case .symbol:
                if c.s1 == yes {
                    c.s1 = no
                    return c
                }
                if c.s1 == mod { return c }
                if c.s1 == no {
                    c.s1 = yes
                    return c
                }
            }
        default: break
        }
        return e
    }

    private func isSym(_ e: SNode, _ s: SymID) -> Bool { e.kind == .symbol && e.s1 == s }
    private func isCmp(_ e: SNode, _ op: CompareOp, _ r: SymID) -> Bool { e.kind == .compare && e.op == op && e.s2 == r }
    private func isCmp(_ e: SNode, _ op: CompareOp) -> Bool { e.kind == .compare && e.op == op }
    private func leafOK(_ e: SNode) -> Bool {
        e.kind == .symbol || e.kind == .not || isCmp(e, .equal) || isCmp(e, .unequal)
    }

    /// The leaf symbols of join candidates, or nil when they are not joinable.
    private func joinSyms(_ e1: SNode, _ e2: SNode) -> SymID? {
        guard leafOK(e1), leafOK(e2) else { return nil }
        let sym1: SymID
        if e1.kind == .not {
            let t = e1.left
            guard t.kind == .symbol || isCmp(t, .equal) || isCmp(t, .unequal) else { return nil }
            sym1 = t.s1
        } else {
            sym1 = e1.s1
        }
        let sym2: SymID
        if e2.kind == .not {
            guard e2.left.kind == .symbol else { return nil }
            sym2 = e2.left.s1
        } else {
            sym2 = e2.s1
        }
        guard sym1 == sym2, type(sym1) == .bool || type(sym1) == .tristate else { return nil }
        return sym1
    }

    func joinOr(_ e1: SNode, _ e2: SNode) -> SNode? {
        if eq(e1, e2) { return e1.copy() }
        guard let s = joinSyms(e1, e2) else { return nil }
        if type(s) == .tristate, isCmp(e1, .equal), isCmp(e2, .equal) {
            let r = Set([e1.s2, e2.s2])
            if r == [yes, mod] { return .cmp(.unequal, s, no) }
            if r == [yes, no] { return .cmp(.unequal, s, mod) }
            if r == [mod, no] { return .cmp(.unequal, s, yes) }
        }
        if type(s) == .bool {
            if (e1.kind == .not && e1.left.kind == .symbol && e2.kind == .symbol)
                || (e2.kind == .not && e2.left.kind == .symbol && e1.kind == .symbol)
            {
                return .sym(yes)
            }
        }
        return nil
    }

    func joinAnd(_ e1: SNode, _ e2: SNode) -> SNode? {
        if eq(e1, e2) { return e1.copy() }
        guard let s = joinSyms(e1, e2) else { return nil }
        func pair(_ k1: SNode.Kind, _ c2: CompareOp, _ r: SymID) -> Bool {
            (e1.kind == k1 && k1 == .symbol && isCmp(e2, c2, r)) || (e2.kind == k1 && k1 == .symbol && isCmp(e1, c2, r))
        }
        if pair(.symbol, .equal, yes) { return .cmp(.equal, s, yes) }
        if pair(.symbol, .unequal, no) { return .sym(s) }
        if pair(.symbol, .unequal, mod) { return .cmp(.equal, s, yes) }
        if type(s) == .tristate {
            if isCmp(e1, .equal) && isCmp(e2, .unequal) {
                let s2 = e1.s2
                if isConst(e2.s2) && isConst(s2) { return s2 != e2.s2 ? .cmp(.equal, s, s2) : .sym(no) }
            }
            if isCmp(e1, .unequal) && isCmp(e2, .equal) {
                let s2 = e2.s2
                if isConst(e1.s2) && isConst(s2) { return s2 != e1.s2 ? .cmp(.equal, s, s2) : .sym(no) }
            }
            if isCmp(e1, .unequal) && isCmp(e2, .unequal) {
                let r = Set([e1.s2, e2.s2])
                if r == [yes, no] { return .cmp(.equal, s, mod) }
                if r == [yes, mod] { return .cmp(.equal, s, no) }
                if r == [mod, no] { return .cmp(.equal, s, yes) }
            }
            if pair(.symbol, .equal, mod) || pair(.symbol, .unequal, yes) { return nil }
        }
        return nil
    }

    func eq(_ e1: SNode?, _ e2: SNode?) -> Bool {
        guard let e1, let e2 else {
            return isYes(e1) && isYes(e2)
        }
        guard e1.kind == e2.kind else { return false }
        switch e1.kind {
        case .compare: return e1.op == e2.op && e1.s1 == e2.s1 && e1.s2 == e2.s2
        case .symbol: return e1.s1 == e2.s1
        case .not: return eq(e1.a?.n, e2.a?.n)
        case .and, .or:
            let c1 = SSlot(e1.copy()), c2 = SSlot(e2.copy())
            let old = transCount
            eliminateEq(c1, c2)
            let res = c1.n.kind == .symbol && c2.n.kind == .symbol && c1.n.s1 == c2.n.s1
            transCount = old
            return res
        }
    }

    private func isYes(_ e: SNode?) -> Bool {
        guard let e else { return true }
        return e.kind == .symbol && e.s1 == yes
    }

    private func eliminateEqRec(_ type: SNode.Kind, _ p1: SSlot, _ p2: SSlot) {
        if p1.n.kind == type {
            eliminateEqRec(type, p1.n.a ?? SSlot(.sym(yes)), p2)
            eliminateEqRec(type, p1.n.b ?? SSlot(.sym(yes)), p2)
            return
        }
        if p2.n.kind == type {
            eliminateEqRec(type, p1, p2.n.a ?? SSlot(.sym(yes)))
            eliminateEqRec(type, p1, p2.n.b ?? SSlot(.sym(yes)))
            return
        }
        let e1 = p1.n, e2 = p2.n
        if e1.kind == .symbol && e2.kind == .symbol && e1.s1 == e2.s1 && (e1.s1 == yes || e1.s1 == no) { return }
        if !eq(e1, e2) { return }
        transCount += 1
        switch type {
        case .or:
            p1.n = .sym(no)
            p2.n = .sym(no)
        case .and:
            p1.n = .sym(yes)
            p2.n = .sym(yes)
        default: break
        }
    }

    func eliminateEq(_ p1: SSlot, _ p2: SSlot) {
        if p1.n.kind == .or || p1.n.kind == .and { eliminateEqRec(p1.n.kind, p1, p2) }
        if p1.n.kind != p2.n.kind, p2.n.kind == .or || p2.n.kind == .and { eliminateEqRec(p2.n.kind, p1, p2) }
        p1.n = eliminateYN(p1.n)
        p2.n = eliminateYN(p2.n)
    }

    func eliminateYN(_ e: SNode) -> SNode {
        guard e.kind == .and || e.kind == .or, let a = e.a, let b = e.b else { return e }
        a.n = eliminateYN(a.n)
        b.n = eliminateYN(b.n)
        let absorbing = e.kind == .and ? no : yes
        let neutral = e.kind == .and ? yes : no
        if a.n.kind == .symbol {
            if a.n.s1 == absorbing {
                e.kind = .symbol
                e.s1 = absorbing
                e.a = nil
                e.b = nil
                return e
            } else if a.n.s1 == neutral {
                e.assign(from: b.n)
                return e
            }
        }
        if b.n.kind == .symbol {
            if b.n.s1 == absorbing {
                e.kind = .symbol
                e.s1 = absorbing
                e.a = nil
                e.b = nil
                return e
            } else if b.n.s1 == neutral {
                e.assign(from: a.n)
                return e
            }
        }
        return e
    }

    private func eliminateDups1(_ type: SNode.Kind, _ p1: SSlot, _ p2: SSlot) {
        if p1.n.kind == type, let a = p1.n.a, let b = p1.n.b {
            eliminateDups1(type, a, p2)
            eliminateDups1(type, b, p2)
            return
        }
        if p2.n.kind == type, let a = p2.n.a, let b = p2.n.b {
            eliminateDups1(type, p1, a)
            eliminateDups1(type, p1, b)
            return
        }
        if p1.n === p2.n { return }
        if p1.n.kind == .or || p1.n.kind == .and { eliminateDups1(p1.n.kind, p1, p1) }
        switch type {
        case .or:
            if let t = joinOr(p1.n, p2.n) {
                p1.n = .sym(no)
                p2.n = t
                transCount += 1
            }
        case .and:
            if let t = joinAnd(p1.n, p2.n) {
                p1.n = .sym(yes)
                p2.n = t
                transCount += 1
            }
        default: break
        }
    }

    func eliminateDups(_ e: SNode?) -> SNode? {
        guard var e else { return nil }
        let old = transCount
        while true {
            transCount = 0
            if e.kind == .or || e.kind == .and {
                let slot = SSlot(e)
                eliminateDups1(e.kind, slot, slot)
                e = slot.n
            }
            if transCount == 0 { break }
            e = eliminateYN(e)
        }
        transCount = old
        return e
    }
}
