import Basics

/// RAUC's GRUB A/B semantics on the environment variables (what grub.cfg evaluates at
/// boot, and what `rauc` changes on an update), as pure functions so an offline
/// installer and tests agree with the boot script by construction.
public enum GrubSlotState {
    public static func value(_ vars: [(String, String)], _ key: String) -> String? {
        vars.last { $0.0 == key }?.1
    }

    /// Slots in boot preference order (ORDER, or "A B" when unset, as grub.cfg does).
    public static func order(_ vars: [(String, String)]) -> [String] {
        let o = (value(vars, "ORDER") ?? "").split(separator: " ").map(String.init)
        return o.isEmpty ? ["A", "B"] : o
    }

    /// The slot GRUB boots next: first in ORDER with X_OK=1 and X_TRY below `tries`.
    public static func bootSlot(_ vars: [(String, String)], tries: Int) -> String? {
        for s in order(vars) where value(vars, s + "_OK") == "1" {
            if let t = Int(value(vars, s + "_TRY") ?? "0"), t >= 0, t < tries { return s }
        }
        return nil
    }

    /// Sets (or appends) variables, keeping the others and their order.
    public static func setting(_ vars: [(String, String)], _ changes: [(String, String)]) -> [(String, String)] {
        var out = vars
        for (k, v) in changes {
            if let i = out.firstIndex(where: { $0.0 == k }) {
                out[i].1 = v
                out.removeAll { $0.0 == k && $0.1 != v }
            } else {
                out.append((k, v))
            }
        }
        return out
    }

    /// rauc's set-primary for GRUB: `slot` first in ORDER (others keep their order),
    /// marked good, try counter reset.
    public static func makePrimary(_ vars: [(String, String)], slot: String) -> [(String, String)] {
        let newOrder = [slot] + order(vars).filter { $0 != slot }
        return setting(vars, [("ORDER", newOrder.joined(separator: " ")), (slot + "_OK", "1"), (slot + "_TRY", "0")])
    }

    /// rauc's "mark bad" before writing a slot: not bootable until the update completes.
    public static func markBad(_ vars: [(String, String)], slot: String) -> [(String, String)] {
        setting(vars, [(slot + "_OK", "0")])
    }
}

extension GrubConfig {
    /// The try limit a grub.cfg rendered by `render` enforces (its last counting state
    /// + 1), or nil for a config osbuild did not write.
    public static func tries(inConfig text: String) -> Int? {
        var maxNext: Int?
        for line in text.split(separator: "\n") {
            let l = line.trimmingCharacters(in: " ")
            guard l.hasPrefix("if [ \"$try\" = \""), let r = l.firstRange(of: "set next=\"") else { continue }
            let digits = l[r.upperBound...].prefix { $0.isNumber }
            if let n = Int(digits) { maxNext = max(maxNext ?? 0, n) }
        }
        return maxNext
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: Character) -> Substring {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return s
    }
}
