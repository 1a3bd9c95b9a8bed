import Basics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Fetches Debian packages by name with `apt-get download` into the shared download
/// cache and pins each one in a lock file (input name -> file name + sha256), so a
/// rebuild uses the same file and a changed file is an error rather than a silent drift.
public struct AptFetcher {
    public struct LockEntry: Codable, Sendable, Hashable {
        public var file: String
        public var sha256: String

        public init(file: String, sha256: String) {
            self.file = file
            self.sha256 = sha256
        }

        /// "FILE sha256:HEX": what a stage records for the pin it used.
        public var resolvedValue: String { file + " sha256:" + sha256 }

        init?(resolvedValue v: String) {
            guard let r = v.range(of: " sha256:", options: .backwards) else { return nil }
            self.init(file: String(v[..<r.lowerBound]), sha256: String(v[r.upperBound...]))
        }
    }

    public struct LockFile: Codable, Sendable, Hashable {
        public var packages: [String: LockEntry] = [:]
        public init(packages: [String: LockEntry] = [:]) { self.packages = packages }
    }

    public struct Mismatch: UserError {
        public var package: String
        public var path: String
        public var expected: String
        public var actual: String
        public var lockFile: String
        public var description: String {
            "apt:\(package): \(path) has sha256 \(actual) but \(lockFile) pins \(expected); delete the file to refetch it, or remove the entry from the lock file to accept a new package"
        }
    }

    public let cacheDirectory: String
    public let lockPath: String
    public var log: RootfsLog
    /// Told the lock key and pin of every package `fetch` returns: a build stage records
    /// them as resolved inputs ("apt:KEY" -> `resolvedValue`), so a changed pin reruns it.
    public var onUse: (_ spec: String, _ pin: LockEntry) -> Void

    public init(cacheDirectory: String, lockPath: String? = nil, log: @escaping RootfsLog = { _ in },
                onUse: @escaping (_ spec: String, _ pin: LockEntry) -> Void = { _, _ in }) {
        self.cacheDirectory = cacheDirectory
        self.lockPath = lockPath ?? Self.defaultLockPath(cacheDirectory: cacheDirectory)
        self.log = log
        self.onUse = onUse
    }

    public static func defaultLockPath(cacheDirectory: String) -> String { cacheDirectory + "/apt-lock.json" }

    public func loadLock() throws -> LockFile { try Self.loadLock(lockPath) }

    static func loadLock(_ lockPath: String) throws -> LockFile {
        guard FileSystem.exists(lockPath) else { return LockFile() }
        do {
            return try JSONDecoder().decode(LockFile.self, from: Data(try FileSystem.readFile(lockPath)))
        } catch let e as any UserError {
            throw e
        } catch {
            throw RootfsError("\(lockPath): not a valid apt lock file (\(error)); fix or delete it")
        }
    }

    // MARK: pins as resolved inputs

    /// Resolved-input key kind of apt pins: a stage records "apt:<lock key>".
    public static let resolvedKind = "apt"

    /// The pin of `spec` in the lock file now, as a resolved-input value ("FILE sha256:HEX"),
    /// or nil when the lock has no entry for it. Reads only the lock file (no apt, no
    /// network): this runs on every plan and no-op build.
    public static func currentPin(spec: String, lockPath: String) throws -> String? {
        try loadLock(lockPath).packages[spec]?.resolvedValue
    }

    /// Stale reason for a pin that changed (`now`) or vanished (`now` nil) since a stage used it.
    public static func describePinChange(key: String, recorded: String, now: String?, lockPath: String) -> String {
        let old = LockEntry(resolvedValue: recorded)
        guard let now else {
            return "\(key) no longer pinned in \(lockPath) (the stage used \(old?.file ?? recorded)); it will fetch and pin the package again"
        }
        guard let o = old, let n = LockEntry(resolvedValue: now) else { return "\(key) pin changed: \(recorded) -> \(now)" }
        if o.file != n.file { return "\(key) pin changed: \(o.file) -> \(n.file) (in \(lockPath))" }
        return "\(key) pin changed: \(o.file) sha256 \(o.sha256) -> \(n.sha256) (in \(lockPath))"
    }

    func saveLock(_ lock: LockFile) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(lock)
        try FileSystem.makeDirectories(FileSystem.dirname(lockPath))
        try FileSystem.writeAtomically(lockPath, [UInt8](data) + [0x0A])
    }

    /// The path of the `.deb` for `spec` ("name", "name=version", "name:arch"), fetching
    /// it if the cache lacks it. The sha256 is checked against the lock on every call.
    public func fetch(_ spec: String) throws -> String {
        guard !spec.isEmpty, !spec.contains("/"), !spec.contains(" ") else {
            throw RootfsError("apt:\(spec): not a package name")
        }
        return try withLockGuard { try fetchLocked(spec) }
    }

    /// Serialises builds (and `update-locks`) sharing the cache: the lock file is
    /// read-modify-written.
    private func withLockGuard<T>(_ body: () throws -> T) throws -> T {
        try FileSystem.makeDirectories(cacheDirectory)
        let guardPath = cacheDirectory + "/.apt-lock.flock"
        let gfd = open(guardPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard gfd >= 0 else { throw SystemError("open", path: guardPath, errno: errno) }
        defer { close(gfd) }
        while flock(gfd, LOCK_EX) != 0 {
            if errno != EINTR { throw SystemError("flock", path: guardPath, errno: errno) }
        }
        return try body()
    }

    private func fetchLocked(_ spec: String) throws -> String {
        var lock = try loadLock()
        if let entry = lock.packages[spec] {
            let path = cacheDirectory + "/" + entry.file
            if !FileSystem.exists(path) {
                // Refetch exactly the pinned version (the file name carries it).
                let version = Self.version(fromFileName: entry.file)
                let name = spec.split(separator: "=").first.map(String.init) ?? spec
                let fetched = try download(version.map { name + "=" + $0 } ?? spec)
                if fetched != entry.file {
                    try? FileSystem.removeTree(cacheDirectory + "/" + fetched)
                    throw RootfsError("apt:\(spec): apt-get now downloads \(fetched), but \(lockPath) pins \(entry.file)")
                }
            }
            let sum = try SHA256.hexOfFile(at: path)
            guard sum == entry.sha256 else {
                throw Mismatch(package: spec, path: path, expected: entry.sha256, actual: sum, lockFile: lockPath)
            }
            onUse(spec, entry)
            return path
        }
        let file = try download(spec)
        let path = cacheDirectory + "/" + file
        let sum = try SHA256.hexOfFile(at: path)
        let entry = LockEntry(file: file, sha256: sum)
        lock.packages[spec] = entry
        try saveLock(lock)
        log("apt:\(spec): pinned \(file) sha256 \(sum) in \(lockPath)")
        onUse(spec, entry)
        return path
    }

    /// Takes apt's current candidate for `spec` (downloads it, hashes it) and pins it,
    /// replacing any pin of `spec` and removing the `obsolete` keys, in one atomic
    /// rewrite of the lock under the same guard as `fetch`. Returns the new pin.
    public func repin(_ spec: String, removing obsolete: [String] = []) throws -> LockEntry {
        guard !spec.isEmpty, !spec.contains("/"), !spec.contains(" ") else {
            throw RootfsError("apt:\(spec): not a package name")
        }
        return try withLockGuard {
            var lock = try loadLock()
            let file = try download(spec)
            let sum = try SHA256.hexOfFile(at: cacheDirectory + "/" + file)
            let entry = LockEntry(file: file, sha256: sum)
            let old = lock.packages[spec]
            lock.packages[spec] = entry
            for k in obsolete where k != spec { lock.packages[k] = nil }
            try saveLock(lock)
            log("apt:\(spec): pinned \(file) sha256 \(sum) in \(lockPath)" + (old.map { " (was \($0.file))" } ?? ""))
            return entry
        }
    }

    /// The file `apt-get download SPEC` would fetch now (from the host's apt lists; no
    /// download): the second field of `apt-get download --print-uris`.
    public static func candidateFile(_ spec: String) throws -> String {
        let r = try Subprocess.run(["apt-get", "download", "--print-uris", "-q", spec], check: false)
        guard r.status == 0 else {
            let err = r.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
            throw RootfsError("apt:\(spec): apt-get download --print-uris failed (exit \(r.status)): \(err.isEmpty ? r.stdoutText : err)", exitCode: ExitStatus.environment)
        }
        let lines = r.stdoutText.split(separator: "\n").filter { $0.hasPrefix("'") }
        guard lines.count == 1, let f = lines.first?.split(separator: " "), f.count >= 2 else {
            throw RootfsError("apt:\(spec): apt-get download --print-uris named \(lines.count) files, expected 1: \(r.stdoutText)")
        }
        return String(f[1])
    }

    /// Runs `apt-get download` in a private temp directory inside the cache and moves the
    /// result into the cache; returns the file name.
    private func download(_ what: String) throws -> String {
        let tmp = cacheDirectory + "/.apt-tmp-" + String(getpid()) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        try FileSystem.makeDirectories(tmp)
        defer { try? FileSystem.removeTree(tmp) }
        // Downloads into a root-owned dir are done by root; the _apt sandbox warning is harmless.
        _ = try Subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", what], directory: tmp)
        let files = try FileSystem.listDirectory(tmp).filter { $0.hasSuffix(".deb") || $0.hasSuffix(".udeb") }
        guard files.count == 1, let file = files.first else {
            throw RootfsError("apt:\(what): apt-get download produced \(files.count) .deb files, expected 1")
        }
        try FileSystem.rename(tmp + "/" + file, cacheDirectory + "/" + file)
        return file
    }

    /// "busybox-static_1%3a1.35.0-4+b3_amd64.deb" -> "1:1.35.0-4+b3".
    public static func version(fromFileName f: String) -> String? {
        let parts = f.split(separator: "_")
        guard parts.count == 3 else { return nil }
        return String(parts[1]).removingPercentEncoding
    }
}
