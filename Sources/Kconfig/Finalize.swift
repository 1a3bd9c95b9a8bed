/// Dependency propagation after parsing (the C tool's menu_finalize): parent menu/if/choice
/// conditions flow into each entry and property, selects and implies become reverse
/// dependencies of their targets, choices learn their values and types.
extension KconfigTree {
    func finalize() {
        finalize(root)
    }

    /// `m` in a dependency means "m && MODULES".
    private func rewriteM(_ e: Expr?) -> Expr? {
        guard let e else { return nil }
        switch e {
        case .not(let a): return .not(rewriteM(a) ?? a)
        case .and(let a, let b): return .and(rewriteM(a) ?? a, rewriteM(b) ?? b)
        case .or(let a, let b): return .or(rewriteM(a) ?? a, rewriteM(b) ?? b)
        case .symbol(let s) where s == KconfigTree.mod: return .and(e, .symbol(modulesSym))
        default: return e
        }
    }

    /// For non-tristate owners the C tool rewrites `FOO != n` to `FOO` (FOO tristate).
    private func transBool(_ e: Expr?) -> Expr? {
        guard let e else { return nil }
        switch e {
        case .not(let a): return .not(transBool(a) ?? a)
        case .and(let a, let b): return .and(transBool(a) ?? a, transBool(b) ?? b)
        case .or(let a, let b): return .or(transBool(a) ?? a, transBool(b) ?? b)
        case .compare(.unequal, let l, let r) where r == KconfigTree.no && syms[Int(l)].type == .tristate:
            return .symbol(l)
        default: return e
        }
    }

    private func hasTristateCompare(_ e: Expr?) -> Bool {
        guard let e else { return false }
        switch e {
        case .symbol: return false
        case .not(let a): return hasTristateCompare(a)
        case .and(let a, let b), .or(let a, let b): return hasTristateCompare(a) || hasTristateCompare(b)
        case .compare(_, let l, _): return syms[Int(l)].type == .tristate
        }
    }

    /// The property condition exactly as the kernel builds it: every level's dependency
    /// transformed and de-duplicated before the next level is added.
    private func exactDep(menu: MenuNode, parent: MenuNode, visible: Expr?) -> Expr? {
        let simp = Simplifier(tree: self)
        var memo: [ObjectIdentifier: SNode?] = [:]
        func menuDep(_ m: MenuNode, _ p: MenuNode?) -> SNode? {
            if let hit = memo[ObjectIdentifier(m)] { return hit?.copy() }
            var parentDep: SNode? = nil
            if let p {
                if p.sym >= 0, syms[Int(p.sym)].isChoice {
                    parentDep = .sym(p.sym)
                } else if p !== root {
                    parentDep = menuDep(p, p.parent)
                }
            }
            let own = simp.transform(rewriteM(m === root ? nil : m.rawDep).map { SNode($0) })
            let r = simp.eliminateDups(both(parentDep, own))
            memo[ObjectIdentifier(m)] = r
            return r?.copy()
        }
        let base = menuDep(menu, parent)
        let d = simp.transform(rewriteM(visible).map { SNode($0) })
        return simp.eliminateDups(both(base, d))?.expr
    }

    private func both(_ a: SNode?, _ b: SNode?) -> SNode? {
        guard let a else { return b }
        guard let b else { return a }
        return .two(.and, a, b)
    }

    private func dependsOn(_ dep: Expr?, _ s: SymID) -> Bool {
        guard let dep else { return false }
        switch dep {
        case .and(let a, let b): return dependsOn(a, s) || dependsOn(b, s)
        case .symbol(let x): return x == s
        case .compare(.equal, let l, let r): return l == s && (r == KconfigTree.yes || r == KconfigTree.mod)
        case .compare(.unequal, let l, let r): return l == s && r == KconfigTree.no
        default: return false
        }
    }

    private func finalize(_ parent: MenuNode) {
        let sym: Symbol? = parent.sym >= 0 ? syms[Int(parent.sym)] : nil
        if parent.list != nil {
            let parentDep: Expr?
            if let sym, sym.isChoice {
                if sym.type == .unknown {
                    var m = parent.list
                    while let mm = m {
                        if mm.sym >= 0, syms[Int(mm.sym)].type != .unknown {
                            sym.type = syms[Int(mm.sym)].type
                            break
                        }
                        m = mm.next
                    }
                }
                var m = parent.list
                while let mm = m {
                    if mm.sym >= 0, syms[Int(mm.sym)].type == .unknown { syms[Int(mm.sym)].type = sym.type }
                    m = mm.next
                }
                parentDep = .symbol(sym.id)
            } else {
                parentDep = parent.dep
            }
            var m = parent.list
            while let menu = m {
                let basedep = Expr.both(parentDep, rewriteM(menu.dep))
                menu.rawDep = menu.dep
                menu.dep = basedep
                let owner: Symbol? = menu.sym >= 0 ? syms[Int(menu.sym)] : nil
                let props: [Property] = owner?.props ?? (menu.prompt.map { [$0] } ?? [])
                for prop in props where prop.menu === menu {
                    var dep = Expr.both(basedep, rewriteM(prop.visible))
                    if let owner, owner.type != .tristate {
                        if prop.kind == .select || prop.kind == .imply, hasTristateCompare(dep) {
                            dep = exactDep(menu: menu, parent: parent, visible: prop.visible)
                        }
                        dep = transBool(dep)
                    }
                    prop.visible = dep
                    if let owner, prop.kind == .select || prop.kind == .imply {
                        let t = syms[Int(prop.target)]
                        let term = Expr.both(.symbol(owner.id), dep)
                        if prop.kind == .select { t.revDep = Expr.either(t.revDep, term) } else { t.implied = Expr.either(t.implied, term) }
                    }
                }
                m = menu.next
            }
            m = parent.list
            while let menu = m {
                finalize(menu)
                m = menu.next
            }
        } else if let sym {
            // Automatic submenus: entries right after a symbol that depend on it become its
            // children. Only the "absolute dependency" case is modelled; it decides choice
            // membership (a choice entry nested under another one is not a choice value).
            let parentInChoice = parent.parent.map { $0.sym >= 0 && syms[Int($0.sym)].isChoice } ?? false
            if parentInChoice {
                var last: MenuNode? = nil
                var m = parent.next
                while let menu = m {
                    let dep = menu.prompt?.visible ?? menu.dep
                    if !dependsOn(dep, sym.id) { break }
                    finalize(menu)
                    menu.parent = parent
                    last = menu
                    m = menu.next
                }
                if let last {
                    parent.list = parent.next
                    parent.next = last.next
                    last.next = nil
                }
            }
            sym.dirDep = Expr.either(sym.dirDep, parent.dep)
        }
        var m = parent.list
        while let menu = m {
            if let sym, sym.isChoice, menu.sym >= 0, !syms[Int(menu.sym)].isChoiceValue {
                let v = syms[Int(menu.sym)]
                v.flags.insert(.choiceValue)
                v.choice = sym.id
                if sym.type == .tristate && v.type != .tristate {
                    let base = Expr.compare(.equal, sym.id, KconfigTree.yes)
                    menu.dep = Expr.both(base, menu.dep)
                    for prop in v.props where prop.menu === menu {
                        prop.visible = Expr.both(base, prop.visible)
                    }
                }
                sym.choiceValues.append(v.id)
            }
            // Flatten `if` blocks and submenus of prompt-less entries.
            if let first = menu.list, menu.prompt == nil {
                var last = first
                while true {
                    last.parent = parent
                    guard let n = last.next else { break }
                    last = n
                }
                last.next = menu.next
                menu.next = first
                menu.list = nil
            }
            m = menu.next
        }
        if let sym, !sym.flags.contains(.optional), let p = parent.prompt {
            sym.revDep = Expr.either(sym.revDep, Expr.both(p.visible, .symbol(KconfigTree.mod)))
        }
    }

    // MARK: recursive dependencies (sym_check_deps): the kernel refuses such trees

    func checkRecursiveDependencies() throws {
        var path: [SymID] = []
        for s in syms where s.id > 2 && s.type != .unknown {
            if let loop = checkDeps(s, &path) {
                let chain = (path.drop { $0 != loop.id } + [loop.id]).map { syms[Int($0)].name }
                let where_ = s.menus.first.map { (files.indices.contains(Int($0.file)) ? files[Int($0.file)] : "?", Int($0.line)) }
                let names = chain.count > 1 ? chain.joined(separator: " -> ") : loop.name
                throw KconfigError.parse(
                    file: loop.menus.first.map { files.indices.contains(Int($0.file)) ? files[Int($0.file)] : "?" } ?? where_?.0 ?? "?",
                    line: Int(loop.menus.first?.line ?? 0),
                    message: "recursive dependency detected: \(names) (a symbol's dependencies, defaults, selects or prompts refer back to it)")
            }
        }
    }

    private func checkDeps(_ s: Symbol, _ path: inout [SymID]) -> Symbol? {
        if s.flags.contains(.check) { return s }
        if s.flags.contains(.checked) { return nil }
        if s.isChoiceValue { return checkDeps(syms[Int(s.choice)], &path) }
        if s.isChoice { return checkChoiceDeps(s, &path) }
        s.flags.insert([.check, .checked])
        path.append(s.id)
        let r = checkSymDeps(s, &path)
        if r == nil { path.removeLast() }
        s.flags.remove(.check)
        return r
    }

    private func checkExprDeps(_ e: Expr?, _ path: inout [SymID]) -> Symbol? {
        guard let e else { return nil }
        switch e {
        case .or(let a, let b), .and(let a, let b):
            return checkExprDeps(a, &path) ?? checkExprDeps(b, &path)
        case .not(let a): return checkExprDeps(a, &path)
        case .compare(_, let l, let r):
            return checkDeps(syms[Int(l)], &path) ?? checkDeps(syms[Int(r)], &path)
        case .symbol(let x): return checkDeps(syms[Int(x)], &path)
        }
    }

    private func checkSymDeps(_ s: Symbol, _ path: inout [SymID]) -> Symbol? {
        if let r = checkExprDeps(s.dirDep, &path) ?? checkExprDeps(s.revDep, &path) ?? checkExprDeps(s.implied, &path) { return r }
        for p in s.props where p.kind != .select && p.kind != .imply {
            if let r = checkExprDeps(p.visible, &path) { return r }
            if p.kind != .defaultValue || s.isChoice { continue }
            if let r = checkExprDeps(p.expr, &path) { return r }
        }
        return nil
    }

    private func checkChoiceDeps(_ c: Symbol, _ path: inout [SymID]) -> Symbol? {
        for v in c.choiceValues { syms[Int(v)].flags.insert([.check, .checked]) }
        c.flags.insert([.check, .checked])
        path.append(c.id)
        var r = checkSymDeps(c, &path)
        c.flags.remove(.check)
        if r == nil {
            for v in c.choiceValues {
                path.append(v)
                r = checkSymDeps(syms[Int(v)], &path)
                if r != nil { break }
                path.removeLast()
            }
        }
        if r == nil { path.removeLast() }
        for v in c.choiceValues { syms[Int(v)].flags.remove(.check) }
        if let x = r, x.isChoiceValue, x.choice == c.id { r = c }
        return r
    }
}
