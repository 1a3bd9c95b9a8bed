import Basics
import Boards
import Foundation
import Rootfs

/// `osbuild update-locks BOARD`: take apt's current candidates for the Debian packages a
/// board's stages fetch, explicitly. Each changed pin is then a changed resolved input of
/// its stage (AptPins), so `plan` names it and `make` reruns that stage.
public enum LockUpdate {
    /// `--dry-run` found pins that would change (distinct from errors, for nightly CI).
    public static let updatesAvailableExitCode: Int32 = 4

    /// One package a stage fetches, as the stage fetches it.
    public struct Item: Sendable, Hashable {
        /// Stage that fetches it ("kernel", "bootloader", "rootfs").
        public var stage: String
        /// Board key it comes from (for messages): "kernel.package", "rootfs.base", ...
        public var origin: String
        public var lockPath: String
        public var cacheDirectory: String
        /// The exact lock key the stage uses (arch-qualified as the stage does).
        public var key: String
        /// The metapackage `key` was resolved from (kernel.package = linux-image-amd64).
        public var metapackage: String?
    }

    public enum Status: String, Codable, Sendable { case unchanged, updated, new, replaced }

    /// What happens (or would happen) to one pin.
    public struct Change: Codable, Sendable, Hashable {
        public var stage: String
        public var lock: String
        public var key: String
        /// The pinned file (nil: not pinned); for `replaced`, the old versioned key's file.
        public var old: String?
        public var new: String
        public var status: Status
        /// `replaced`: the obsolete versioned key the metapackage moved away from.
        public var replacedKey: String?

        enum CodingKeys: String, CodingKey { case stage, lock, key, old, new, status, replacedKey = "replaces" }

        // Every field always present (null when absent): a stable schema for CI.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(stage, forKey: .stage)
            try c.encode(lock, forKey: .lock)
            try c.encode(key, forKey: .key)
            try c.encode(old, forKey: .old)
            try c.encode(new, forKey: .new)
            try c.encode(status, forKey: .status)
            try c.encode(replacedKey, forKey: .replacedKey)
        }
    }

    // MARK: collecting

    /// Every apt package the board's stages fetch, in stage order, with the lock each pin
    /// lives in. `resolveKernel` (default: apt-cache, as the kernel stage) maps kernel.package to the versioned package (apt-cache).
    public static func items(board b: Board, project: Project,
                             resolveKernel: ((String, String) throws -> String)? = nil) throws -> [Item] {
        var out: [Item] = []
        let stageCache = AptPins.stageCacheDirectory(downloadCache: project.downloadCache)
        let stageLock = AptPins.stageLockPath(downloadCache: project.downloadCache)
        if let package = b.string("kernel.package") {
            let debArch = try DebianArch.of(b.arch)
            let real: String
            do {
                real = try resolveKernel?(package, debArch) ?? DebianArch.resolveMetapackage(package, arch: debArch, log: { _ in })
            } catch let e as any UserError {
                throw MessageError("\(b.file): kernel.package = \"\(package)\": \(e.description)", exitCode: e.exitCode)
            }
            let key = debArch == DebianArch.host ? real : "\(real):\(debArch)"
            out.append(Item(stage: "kernel", origin: "kernel.package", lockPath: stageLock, cacheDirectory: stageCache,
                            key: key, metapackage: real == package ? nil : package))
        }
        switch b.string("bootloader.kind") {
        case "grub":
            out.append(Item(stage: "bootloader", origin: "bootloader.kind", lockPath: stageLock, cacheDirectory: stageCache,
                            key: try GrubTarget(arch: b.arch).package))
        case "uboot":
            out.append(Item(stage: "bootloader", origin: "bootloader.kind", lockPath: stageLock, cacheDirectory: stageCache,
                            key: try UBootBoot.package(board: b)))
        default: break
        }
        for text in b.list("rootfs.base") {
            guard let key = try RootfsStage.aptKey(text, arch: b.arch) else { continue }
            out.append(Item(stage: "rootfs", origin: "rootfs.base", lockPath: project.root + "/boards/apt-lock.json",
                            cacheDirectory: project.downloadCache, key: key))
        }
        return out
    }

    // MARK: deciding (pure: apt's answer is passed in)

    /// Versioned kernel image keys a metapackage may have resolved to before:
    /// linux-image-amd64 -> linux-image-6.1.0-28-amd64 (also "6.12.9+bpo", "6.12.12").
    static func isVersionedKey(_ key: String, of metapackage: String, arch qualifier: String?) -> Bool {
        let prefix = "linux-image-"
        guard metapackage.hasPrefix(prefix) else { return false }
        let flavour = String(metapackage.dropFirst(prefix.count))
        var name = Substring(key)
        if let q = qualifier {
            guard name.hasSuffix(":" + q) else { return false }
            name = name.dropLast(q.count + 1)
        } else if name.contains(":") {
            return false
        }
        guard name.hasPrefix(prefix), name.hasSuffix("-" + flavour) else { return false }
        let middle = name.dropFirst(prefix.count).dropLast(flavour.count + 1)
        // "6.1.0-28", "6.12.12", "6.12.9+bpo": digits and dots, then an optional ABI number
        // and "+bpo"; anything else ("6.1.0-28-cloud" for flavour amd64) is another flavour.
        var rest = middle
        if rest.hasSuffix("+bpo") { rest = rest.dropLast(4) }
        let parts = rest.split(separator: "-", omittingEmptySubsequences: false)
        guard let first = parts.first, first.first?.isNumber == true, first.allSatisfy({ $0.isNumber || $0 == "." }), parts.count <= 2 else { return false }
        return parts.count == 1 || (!parts[1].isEmpty && parts[1].allSatisfy(\.isNumber))
    }

    /// The change for `item` given its lock's current content and apt's candidate file.
    public static func decide(_ item: Item, lock: AptFetcher.LockFile, candidate: String) -> Change {
        var c = Change(stage: item.stage, lock: item.lockPath, key: item.key, old: nil, new: candidate, status: .new)
        if let pin = lock.packages[item.key] {
            c.old = pin.file
            c.status = pin.file == candidate ? .unchanged : .updated
            return c
        }
        if let meta = item.metapackage {
            let q = item.key.split(separator: ":").dropFirst().first.map(String.init)
            // Deterministic pick when (unusually) several are pinned: the last in byte order.
            if let oldKey = lock.packages.keys.filter({ isVersionedKey($0, of: meta, arch: q) }).sorted(by: ByteOrder.less).last {
                c.status = .replaced
                c.replacedKey = oldKey
                c.old = lock.packages[oldKey]?.file
            }
        }
        return c
    }

    // MARK: running

    /// Compares every package with apt's candidate; unless `dryRun`, pins the changed ones
    /// through AptFetcher (atomic lock rewrite under the lock's flock) and drops a kernel
    /// key the metapackage moved away from.
    public static func run(board b: Board, project: Project, dryRun: Bool, log: @escaping RootfsLog = { _ in }) throws -> [Change] {
        let items = try items(board: b, project: project)
        var changes: [Change] = []
        var seen = Set<String>()
        for item in items where seen.insert(item.lockPath + "\u{0}" + item.key).inserted {
            let candidate: String
            do {
                candidate = try AptFetcher.candidateFile(item.key)
            } catch let e as any UserError {
                throw MessageError("\(b.file): \(item.origin) (stage \(item.stage)): \(e.description)", exitCode: e.exitCode)
            }
            let lock = try AptFetcher(cacheDirectory: item.cacheDirectory, lockPath: item.lockPath).loadLock()
            var c = decide(item, lock: lock, candidate: candidate)
            if !dryRun && c.status != .unchanged {
                let fetcher = AptFetcher(cacheDirectory: item.cacheDirectory, lockPath: item.lockPath, log: log)
                let pin = try fetcher.repin(item.key, removing: c.replacedKey.map { [$0] } ?? [])
                c.new = pin.file
            }
            changes.append(c)
        }
        return changes
    }

    /// Text lines: one per changed package, unchanged ones summarised.
    public static func render(_ changes: [Change], dryRun: Bool) -> [String] {
        var lines: [String] = []
        let width = max(10, (changes.map(\.stage.count).max() ?? 0) + 2)
        func version(_ f: String?) -> String { f.flatMap { AptFetcher.version(fromFileName: $0) } ?? (f ?? "-") }
        for c in changes where c.status != .unchanged {
            let pad = c.stage.padding(toLength: width, withPad: " ", startingAt: 0)
            switch c.status {
            case .updated: lines.append("\(pad)\(c.key)  \(version(c.old)) -> \(version(c.new))")
            case .new: lines.append("\(pad)\(c.key)  (not pinned) -> \(version(c.new))")
            case .replaced: lines.append("\(pad)\(c.replacedKey ?? "?") \(version(c.old)) -> \(c.key) \(version(c.new))")
            case .unchanged: break
            }
        }
        let unchanged = changes.filter { $0.status == .unchanged }
        if !unchanged.isEmpty {
            lines.append("\(unchanged.count) unchanged: " + unchanged.map(\.key).joined(separator: ", "))
        }
        let n = changes.count - unchanged.count
        lines.append(n == 0 ? "all pins are apt's current candidates"
                     : dryRun ? "\(n) pin(s) would change (dry run: lock files untouched)" : "\(n) pin(s) updated; `osbuild plan` shows the stages to rerun")
        return lines
    }
}
