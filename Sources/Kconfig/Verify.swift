import Basics

/// `verify-kconfig`: checks that every value requested by fragments is in a .config
/// (HAOS check-dotconfig semantics: `# CONFIG_X is not set` and absent both mean n).
public enum KconfigVerify {
    public struct Mismatch: Sendable, Hashable {
        public var symbol: String
        public var requested: ConfigAssignment
        /// value in the .config ("n" when not set or absent), nil when the tree lacks the symbol
        public var actual: String?
        /// nil without a kernel tree (plain text comparison)
        public var reason: String?
    }

    /// The last request per symbol over all fragments, in first-seen order.
    public static func requests(fragments: [String]) throws -> [ConfigAssignment] {
        var byName: [String: ConfigAssignment] = [:]
        var order: [String] = []
        for f in fragments {
            let text: String
            do { text = try FileSystem.readText(f) } catch { throw KconfigError.io(path: f, message: "cannot read fragment: \(error)") }
            for a in ConfigText.assignments(text, file: f) {
                if byName[a.name] == nil { order.append(a.name) }
                byName[a.name] = a
            }
        }
        return order.compactMap { byName[$0] }
    }

    static func normalized(_ v: String) -> String {
        if let u = ConfigText.unquote(v) { return u }
        return v
    }

    /// Compares `config` (a .config file) with the fragments' requests. With `tree`, the
    /// .config is loaded into it and every mismatch gets a reason.
    public static func run(config: String, fragments: [String], tree: KconfigTree?) throws -> [Mismatch] {
        let text: String
        do { text = try FileSystem.readText(config) } catch { throw KconfigError.io(path: config, message: "cannot read config: \(error)") }
        let have = ConfigText.assignments(text, file: config)
        var actual: [String: String] = [:]
        for a in have { actual[a.name] = a.value }
        let reqs = try requests(fragments: fragments)
        if let tree { tree.resolve(have) }
        var out: [Mismatch] = []
        for r in reqs {
            let got = actual[r.name] ?? "n"
            let textSame = normalized(got) == normalized(r.value) || (isOff(got) && isOff(r.value))
            if let tree {
                guard tree.type(of: r.name) != nil else {
                    out.append(Mismatch(symbol: r.name, requested: r, actual: nil, reason: "not found: no symbol \(r.name) in this Kconfig tree"))
                    continue
                }
                if textSame { continue }
                let reason = tree.explain(r.name, requested: r.value)
                    ?? "the .config says \(got), but the kernel would resolve it to \(r.value): the .config is stale (run olddefconfig)"
                out.append(Mismatch(symbol: r.name, requested: r, actual: got, reason: reason))
            } else if !textSame {
                out.append(Mismatch(symbol: r.name, requested: r, actual: actual[r.name] == nil && !isOff(r.value) ? nil : got, reason: nil))
            }
        }
        return out
    }

    static func isOff(_ v: String) -> Bool { v == "n" }
}
