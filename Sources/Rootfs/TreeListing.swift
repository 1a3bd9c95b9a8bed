import Basics
import FSTree

/// `ls -lnR`-style text of an FSTree, for `osbuild rootfs BOARD --list`: one block per
/// directory ("PATH:" then one line per entry), numeric owners, sizes or "major, minor"
/// for devices, UTC mtimes, symlink targets. Byte-ordered, so two listings diff cleanly.
public enum TreeListing {
    public struct Options: Sendable {
        /// Print each entry's xattr names (and value sizes) under it.
        public var showXAttrs: Bool
        /// Print mtimes with nanoseconds.
        public var fullTime: Bool
        public init(showXAttrs: Bool = false, fullTime: Bool = false) {
            self.showXAttrs = showXAttrs
            self.fullTime = fullTime
        }
    }

    public static func render(_ tree: FSTree, options: Options = .init()) -> String {
        let links = tree.linkCounts()
        var out = ""
        var first = true
        func block(_ dir: InodeID, _ path: String) {
            if !first { out += "\n" }
            first = false
            out += path + ":\n"
            let kids = tree.children(of: dir)
            var rows: [[String]] = []
            var names: [String] = []
            for (name, id) in kids {
                let n = tree[id]
                let sizeField: String
                switch n.kind {
                case .charDevice, .blockDevice: sizeField = "\(n.rdev.major), \(n.rdev.minor)"
                default: sizeField = String(n.size)
                }
                rows.append([modeString(n), String(links[id] ?? 1), String(n.uid), String(n.gid), sizeField, timeString(n.mtime, fullTime: options.fullTime)])
                names.append(n.kind == .symlink ? name + " -> " + n.symlinkTarget : name)
            }
            let widths = (0..<6).map { c in rows.map { $0[c].count }.max() ?? 0 }
            for (i, r) in rows.enumerated() {
                var line = r[0]
                for c in 1..<6 {
                    let pad = String(repeating: " ", count: widths[c] - r[c].count)
                    line += c == 5 ? " " + r[c] : " " + pad + r[c]
                }
                out += line + " " + names[i] + "\n"
                if options.showXAttrs {
                    for x in tree[kids[i].id].xattrs { out += "    xattr \(x.name) (\(x.value.count) bytes)\n" }
                }
            }
            for (name, id) in kids where tree[id].kind == .directory {
                block(id, path == "/" ? "/" + name : path + "/" + name)
            }
        }
        block(FSTree.rootID, "/")
        return out
    }

    /// `ls -l` mode text, e.g. "-rwsr-xr-x", "drwxrwxrwt", "crw-rw-rw-".
    public static func modeString(_ n: Inode) -> String {
        let p = n.permissions
        var s = String(n.kind.letter)
        func triple(_ shift: UInt16, special: Bool, specialChar: Character) {
            s.append(p & (0o4 << shift) != 0 ? "r" : "-")
            s.append(p & (0o2 << shift) != 0 ? "w" : "-")
            let x = p & (0o1 << shift) != 0
            if special {
                s.append(x ? specialChar : Character(specialChar.uppercased()))
            } else {
                s.append(x ? "x" : "-")
            }
        }
        triple(6, special: p & 0o4000 != 0, specialChar: "s")
        triple(3, special: p & 0o2000 != 0, specialChar: "s")
        triple(0, special: p & 0o1000 != 0, specialChar: "t")
        return s
    }

    /// "YYYY-MM-DD HH:MM:SS" in UTC (with ".nnnnnnnnn" when `fullTime`).
    public static func timeString(_ t: Timestamp, fullTime: Bool = false) -> String {
        let secs = t.seconds
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let rem = secs - days * 86400
        let (y, m, d) = civil(days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        var s = "\(y)-\(two(m))-\(two(d)) \(two(rem / 3600)):\(two(rem / 60 % 60)):\(two(rem % 60))"
        if fullTime {
            let ns = String(t.nanoseconds)
            s += "." + String(repeating: "0", count: 9 - ns.count) + ns
        }
        return s
    }

    /// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func civil(_ z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
