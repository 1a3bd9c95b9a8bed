import Basics
import FSTree

/// The files osbuild writes into every rootfs: os-release, machine-info, /etc/timestamp.
public enum GeneratedFiles {
    /// os-release/machine-info value quoting: double quotes, with `\`, `"`, `$` and `` ` ``
    /// escaped (the shell-compatible subset the os-release spec allows).
    public static func quote(_ v: String) -> String {
        var s = "\""
        for c in v {
            if c == "\\" || c == "\"" || c == "$" || c == "`" { s.append("\\") }
            s.append(c)
        }
        return s + "\""
    }

    public static func osRelease(_ r: RootfsSpec.OSRelease) -> String {
        var lines: [(String, String?)] = [
            ("NAME", r.name), ("VERSION", r.version), ("ID", r.id), ("VERSION_ID", r.versionID),
            ("PRETTY_NAME", r.prettyName), ("CPE_NAME", r.cpeName), ("VARIANT", r.variant),
            ("VARIANT_ID", r.variantID), ("BUILD_ID", r.buildID),
        ]
        for k in r.extra.keys.sorted() { lines.append((k, r.extra[k])) }
        return lines.compactMap { k, v in v.map { "\(k)=\(quote($0))\n" } }.joined()
    }

    public static func machineInfo(_ m: RootfsSpec.MachineInfo) -> String {
        [("CHASSIS", m.chassis), ("DEPLOYMENT", m.deployment)].compactMap { k, v in v.map { "\(k)=\(quote($0))\n" } }.joined()
    }

    /// Build time as written to /etc/timestamp: UTC `YYYYMMDDhhmmss` (what busybox/sysvinit
    /// clock-restore scripts read).
    public static func timestamp(_ t: Timestamp) -> String {
        TreeListing.timeString(t).filter { $0.isNumber } + "\n"
    }

    static func validate(_ r: RootfsSpec.OSRelease) throws {
        // os-release(5): ID and VARIANT_ID are lower-case [a-z0-9._-]; VERSION_ID adds no spaces.
        func idLike(_ v: String?, _ key: String) throws {
            guard let v else { return }
            let ok = !v.isEmpty && v.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0) }
            if !ok { throw RootfsError("os-release \(key)=\"\(v)\": only lower-case letters, digits, '.', '_' and '-' are allowed") }
        }
        try idLike(r.id, "ID")
        try idLike(r.variantID, "VARIANT_ID")
        if let v = r.versionID, v.contains(" ") || v.isEmpty { throw RootfsError("os-release VERSION_ID=\"\(v)\" must be non-empty without spaces") }
    }

    /// One value per line: control characters would break the KEY="value" format.
    static func checkLineValues(_ pairs: [(String, String?)], file: String) throws {
        for (k, v) in pairs {
            if let v, v.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                throw RootfsError("\(file) \(k)=\(v.debugDescription): control characters (newline, tab, ...) are not allowed")
            }
        }
    }

    public static func write(_ spec: RootfsSpec, into tree: inout FSTree, time: Timestamp) throws {
        let dir = Inode.directory(mtime: time)
        if let r = spec.osRelease {
            try validate(r)
            try checkLineValues([("NAME", r.name), ("VERSION", r.version), ("ID", r.id), ("VERSION_ID", r.versionID), ("PRETTY_NAME", r.prettyName),
                                 ("CPE_NAME", r.cpeName), ("VARIANT", r.variant), ("VARIANT_ID", r.variantID), ("BUILD_ID", r.buildID)]
                                + r.extra.map { ($0.key, $0.value) }, file: "os-release")
            try tree.insert("/usr/lib/os-release", .file(.bytes(Array(osRelease(r).utf8)), mtime: time), createParents: true, parentTemplate: dir)
            if let id = tree.lookup("/etc/os-release"), tree[id].kind == .directory {
                throw RootfsError("/etc/os-release is a directory in the rootfs")
            }
            try tree.insert("/etc/os-release", .symlink("../usr/lib/os-release", mtime: time), createParents: true, parentTemplate: dir)
        }
        if let m = spec.machineInfo {
            try checkLineValues([("CHASSIS", m.chassis), ("DEPLOYMENT", m.deployment)], file: "machine-info")
            try tree.insert("/etc/machine-info", .file(.bytes(Array(machineInfo(m).utf8)), mtime: time), createParents: true, parentTemplate: dir)
        }
        if spec.writeTimestamp {
            try tree.insert("/etc/timestamp", .file(.bytes(Array(timestamp(time).utf8)), mtime: time), createParents: true, parentTemplate: dir)
        }
    }
}
