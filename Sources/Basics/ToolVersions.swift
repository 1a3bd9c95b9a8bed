import Foundation

/// `tool --version` (first line; `-V` for e2fsprogs), cached by the tool binary's identity (path, size, mtime,
/// inode), so a no-op build does not spawn one process per tool just to fingerprint it.
/// The cache file lives next to the downloads (`<cache>/tool-versions`).
public final class ToolVersions: @unchecked Sendable {
    private let path: String
    private let lock = NSLock()
    private var entries: [String: String]?
    private var dirty = false

    public init(cacheFile: String) { path = cacheFile }

    /// Tools that do not take `--version` (e2fsprogs prints its version for `-V`, on
    /// stderr; `mke2fs --version` only says "invalid option").
    static let versionFlag: [String: String] = ["mke2fs": "-V", "mkfs.ext4": "-V", "e2fsck": "-V", "tune2fs": "-V"]

    public func version(of tool: String) -> String {
        guard let exe = Subprocess.which(tool), let st = try? FileSystem.stat(exe) else { return "missing" }
        let flag = ToolVersions.versionFlag[FileSystem.basename(tool)] ?? "--version"
        let key = "\(exe)\u{1}\(flag)\u{1}\(st.size)\u{1}\(st.mtimeSec).\(st.mtimeNsec)\u{1}\(st.inode)"
        lock.lock()
        if entries == nil { entries = load() }
        if let v = entries?[key] { lock.unlock(); return v }
        lock.unlock()
        let v: String
        if let r = try? Subprocess.run([exe, flag], check: false) {
            let text = r.stdoutText.isEmpty ? r.stderrText : r.stdoutText
            v = text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        } else {
            v = "unknown"
        }
        lock.lock()
        entries?[key] = v
        dirty = true
        lock.unlock()
        return v
    }

    /// Persist new entries (best effort: a lost cache only costs a re-probe).
    public func save() {
        lock.lock(); defer { lock.unlock() }
        guard dirty, let entries else { return }
        let text = entries.keys.sorted().map { $0 + "\u{2}" + (entries[$0] ?? "") }.joined(separator: "\n") + "\n"
        try? FileSystem.makeDirectories(FileSystem.dirname(path))
        try? FileSystem.writeAtomically(path, text)
        dirty = false
    }

    private func load() -> [String: String] {
        guard let text = try? FileSystem.readText(path) else { return [:] }
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "\u{2}", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2 { out[String(parts[0])] = String(parts[1]) }
        }
        return out
    }
}
