/// Explanations of why a symbol did not take a requested value: the failed dependency
/// with the current value of every symbol in it, the select or choice that forced it,
/// the range it fell outside of.
extension KconfigTree {
    /// An expression in Kconfig syntax with each symbol's current value: `NET[=y] && !PCI[=n]`.
    func render(_ e: Expr?, parentPrec: Int = 0) -> String {
        guard let e else { return "y" }
        func operand(_ id: SymID) -> String {
            let s = sym(id)
            if id <= 2 { return s.name }
            if s.flags.contains(.const_) { return "\"\(s.name)\"" }
            if s.type == .unknown { return s.name }
            calc(s)
            let v = stringValue(s)
            return s.type == .string ? "\(s.name)[=\"\(v)\"]" : "\(s.name)[=\(v)]"
        }
        switch e {
        case .symbol(let id): return operand(id)
        case .not(let a): return "!" + render(a, parentPrec: 3)
        case .and(let a, let b):
            let s = render(a, parentPrec: 2) + " && " + render(b, parentPrec: 2)
            return parentPrec > 2 ? "(\(s))" : s
        case .or(let a, let b):
            let s = render(a, parentPrec: 1) + " || " + render(b, parentPrec: 1)
            return parentPrec > 1 ? "(\(s))" : s
        case .compare(let op, let l, let r):
            return operand(l) + " \(op.text) " + operand(r)
        }
    }

    /// The OR-terms of a reverse dependency that are currently active.
    private func activeTerms(_ e: Expr?) -> [Expr] {
        guard let e else { return [] }
        if case .or(let a, let b) = e { return activeTerms(a) + activeTerms(b) }
        return eval(e) != .no ? [e] : []
    }

    private func describeSelect(_ term: Expr, verb: String) -> String {
        // terms are `SELECTOR && condition`
        if case .and(.symbol(let by), let cond) = term {
            return "\(verb) by \(render(.symbol(by)))" + " (condition \(render(cond)))"
        }
        if case .symbol(let by) = term { return "\(verb) by \(render(.symbol(by)))" }
        return "\(verb) by \(render(term))"
    }

    func choicePrompt(_ cs: Symbol) -> String {
        for p in cs.props where p.kind == .prompt { return "choice \"\(p.text)\"" }
        return "choice"
    }

    /// Why `name` is not `requested` (a .config value: y/m/n, "quoted", number).
    /// nil when it actually has that value.
    public func explain(_ name: String, requested: String) -> String? {
        guard let s = findForConfig(name), s.type != .unknown, !s.isChoice else {
            return "not found: no symbol \(name) in this Kconfig tree"
        }
        calc(s)
        let actual = stringValue(s)
        switch s.type {
        case .bool, .tristate:
            let want: Tristate = requested.hasPrefix("y") ? .yes : requested.hasPrefix("m") ? .mod : .no
            let have = s.curTri
            if want == have { return nil }
            if want == .mod && s.type == .bool { return "\(name) is a bool: m is not possible (it is \(actual))" }
            if want == .mod && modulesVal == .no {
                return "m needs loadable modules, but \(sym(modulesSym).name) is n; \(name) is \(actual)"
            }
            if want > have {
                if s.isChoiceValue {
                    let cs = sym(s.choice)
                    if cs.curTri == .no || s.visible == .no {
                        return "\(choicePrompt(cs)) is not visible: depends on \(render(s.props.first { $0.kind == .prompt }?.visible))"
                    }
                    if cs.curChoice >= 0 && cs.curChoice != s.id {
                        return "\(choicePrompt(cs)) selected \(sym(cs.curChoice).name) instead"
                    }
                }
                if s.dirDepTri < want {
                    return "unmet dependency: depends on \(render(s.dirDep))"
                }
                let prompts = s.props.filter { $0.kind == .prompt }
                if prompts.isEmpty {
                    return "\(name) has no prompt: only its defaults or a select can set it (defaults give \(actual))"
                }
                if s.visible < want {
                    let conds = prompts.map { render($0.visible) }.joined(separator: " || ")
                    return "the prompt is not visible: \(conds)"
                }
                if s.hasUserValue && s.visible != .no { return "the configuration itself sets \(name)=\(actual)" }
                return "\(name) resolved to \(actual)"
            }
            // want < have: something forces it up
            let sel = activeTerms(s.revDep)
            if s.revDepTri > want, !sel.isEmpty {
                return sel.map { describeSelect($0, verb: "selected") }.joined(separator: "; ")
            }
            if s.isChoiceValue {
                let cs = sym(s.choice)
                if cs.curChoice == s.id {
                    return "\(choicePrompt(cs)) must have one value and chose \(name)" + (cs.flags.contains(.optional) ? "" : " (the choice is not optional)")
                }
            }
            if s.visible == .no {
                let imp = activeTerms(s.implied)
                if s.impliedTri > want, !imp.isEmpty {
                    return imp.map { describeSelect($0, verb: "implied") }.joined(separator: "; ") + ", and \(name) has no visible prompt"
                }
                return "\(name) has no visible prompt, so its default (\(actual)) applies"
            }
            if s.hasUserValue { return "the configuration itself sets \(name)=\(actual)" }
            return "\(name) resolved to \(actual)"
        case .int, .hex, .string:
            let want = s.type == .string ? (ConfigText.unquote(requested) ?? requested) : requested
            if want == actual { return nil }
            if s.type != .string {
                if !stringValid(s, want) { return "'\(requested)' is not a valid \(s.type.name) value" }
                if let p = rangeProp(s) {
                    let base: Int32 = s.type == .int ? 10 : 16
                    let v = strtoll0(want, base: base)
                    let lo = rangeVal(p.target, base: base), hi = rangeVal(p.rangeHigh, base: base)
                    if v < lo || v > hi {
                        return "\(requested) is outside the range \(sym(p.target).curVal)..\(sym(p.rangeHigh).curVal)"
                            + (p.visible.map { " (range applies if \(render($0)))" } ?? "")
                    }
                }
            }
            if s.dirDepTri == .no { return "unmet dependency: depends on \(render(s.dirDep))" }
            let prompts = s.props.filter { $0.kind == .prompt }
            if prompts.isEmpty { return "\(name) has no prompt: its default (\(s.type == .string ? "\"\(actual)\"" : actual)) applies" }
            if s.visible == .no {
                return "the prompt is not visible: \(prompts.map { render($0.visible) }.joined(separator: " || "))"
            }
            let shown = s.type == .string ? "\"\(actual)\"" : actual
            if s.hasUserValue { return "the configuration itself sets \(name)=\(shown)" }
            return "\(name) resolved to \(shown)"
        case .unknown:
            return "not found: no symbol \(name) in this Kconfig tree"
        }
    }

    /// The .config line the symbol would have ("" when it is not written).
    public func configLine(_ name: String) -> String {
        guard let s = findForConfig(name), s.type != .unknown, !s.isChoice else { return "" }
        calc(s)
        guard s.flags.contains(.write) else { return "" }
        let l = symbolLine(s)
        return l.hasSuffix("\n") ? String(l.dropLast()) : l
    }
}
