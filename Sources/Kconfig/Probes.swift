#if canImport(Glibc)
import Glibc
#endif
import Basics
import Foundation

/// Runs `$(shell,...)` commands with /bin/sh the way the kernel's tool does (stdout, at
/// most 4095 bytes, trailing newlines dropped, inner newlines turned into spaces) and
/// caches the results per toolchain: the cache file is named after the identity of the
/// compiler and linker (resolved path, size, mtime, inode) and the environment the
/// probes see, so a different or updated toolchain never reuses stale answers.
public final class ProbeRunner: @unchecked Sendable {
    public private(set) var executed = 0
    public private(set) var cacheHits = 0
    private var cache: [String: [UInt8]] = [:]
    private var dirty = false
    private let cacheFile: String?
    private let envp: [String]
    private var workDir: String?

    /// `environment` is the complete environment the probes run with.
    public init(environment: [String: String], cacheDirectory: String?) {
        envp = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        if let dir = cacheDirectory {
            var id = "osbuild-kconfig-probes-v1\n"
            for tool in ["CC", "LD"] {
                let cmd = environment[tool] ?? ""
                let exe = cmd.split(separator: " ").first.map(String.init) ?? ""
                id += "\(tool)=\(cmd)\n"
                if let path = ProbeRunner.resolve(exe, path: environment["PATH"]), let st = try? FileSystem.stat(path) {
                    let real = (try? FileSystem.readSymlink(path)) ?? path
                    id += "\(path) -> \(real) \(st.size) \(st.mtimeSec).\(st.mtimeNsec) \(st.inode)\n"
                }
            }
            // Only variables that can change a probe's answer; the rest of the environment
            // (hyperfine even randomises its size) must not invalidate the cache.
            for k in ProbeRunner.keyVariables { id += "\(k)=\(environment[k] ?? "<unset>")\n" }
            cacheFile = dir + "/" + String(SHA256.hex(id).prefix(32)) + ".probes"
        } else {
            cacheFile = nil
        }
        if let cacheFile, let bytes = try? FileSystem.readFile(cacheFile) { load(bytes) }
    }

    deinit {
        if let workDir { try? FileSystem.removeTree(workDir) }
    }

    static let debug = ProcessInfo.processInfo.environment["OSBUILD_KCONFIG_DEBUG"] != nil

    static let keyVariables = [
        "PATH", "ARCH", "SRCARCH", "srctree", "CC", "LD", "CROSS_COMPILE", "CLANG_FLAGS", "LLVM", "LLVM_IAS",
        "KERNELVERSION", "HOSTCC", "HOSTCXX", "RUSTC", "BINDGEN", "PAHOLE", "NM", "OBJCOPY", "OBJDUMP", "AR",
        "READELF", "STRIP", "CPP", "USERCFLAGS", "USERLDFLAGS", "KCFLAGS", "CONFIG_SHELL", "PERL", "PYTHON3",
        "HOSTPKG_CONFIG", "LC_ALL", "LANG",
    ]

    static func resolve(_ exe: String, path: String?) -> String? {
        if exe.isEmpty { return nil }
        if exe.contains("/") { return access(exe, X_OK) == 0 ? exe : nil }
        for dir in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(exe)"
            if access(p, X_OK) == 0 { return p }
        }
        return nil
    }

    /// In recording mode commands are only collected (answer: "y"), to be run
    /// concurrently by `runPending()` before the real parse.
    var recording = false
    private var pending: [String] = []
    private var pendingSet = Set<String>()
    var isCacheEmpty: Bool { cache.isEmpty }

    func run(_ command: String) throws -> [UInt8] {
        if let hit = cache[command] {
            if !recording { cacheHits += 1 }
            return hit
        }
        if recording {
            if pendingSet.insert(command).inserted { pending.append(command) }
            // a placeholder that keeps every use syntactically valid (def_int, depends on)
            return [UInt8(ascii: "y")]
        }
        if ProbeRunner.debug { FileHandleDebug.write("kconfig probe (sequential): \(command)\n") }
        let out = try execute(command)
        cache[command] = out
        dirty = true
        return out
    }

    /// Runs the recorded commands on all cores and caches their answers.
    @discardableResult
    func runPending() -> Int {
        let cmds = pending
        pending = []
        pendingSet = []
        guard !cmds.isEmpty else { return 0 }
        if workDir == nil {
            var template = Array((NSTemporaryDirectory() + "osbuild-kconfig-XXXXXX").utf8CString)
            guard let p = mkdtemp(&template) else { return 0 }
            workDir = String(cString: p)
        }
        let results = ResultSlots(count: cmds.count)
        let workers = max(2, ProcessInfo.processInfo.activeProcessorCount)
        let next = ResultSlots.Counter()
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let i = next.take()
                if i >= cmds.count { break }
                results.set(i, try? self.spawn(cmds[i]))
            }
        }
        for (i, c) in cmds.enumerated() {
            if let r = results.get(i) {
                cache[c] = r
                executed += 1
                dirty = true
            }
        }
        return cmds.count
    }

    /// Writes new results to the cache file (atomically); a failure to write is not fatal.
    public func save() {
        guard dirty, let cacheFile else { return }
        var bytes: [UInt8] = []
        for (k, v) in cache.sorted(by: { $0.key < $1.key }) {
            bytes += Array("\(k.utf8.count):".utf8) + Array(k.utf8) + Array("\(v.count):".utf8) + v + [0x0a]
        }
        try? FileSystem.makeDirectories(FileSystem.dirname(cacheFile))
        if (try? FileSystem.writeAtomically(cacheFile, bytes)) != nil { dirty = false }
    }

    private func load(_ b: [UInt8]) {
        var i = 0
        func field() -> [UInt8]? {
            var n = 0
            while i < b.count, b[i] != UInt8(ascii: ":") {
                guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
                n = n * 10 + Int(b[i] - 0x30)
                i += 1
            }
            i += 1
            guard i + n <= b.count else { return nil }
            defer { i += n }
            return Array(b[i..<i + n])
        }
        while i < b.count {
            guard let k = field(), let v = field(), i < b.count, b[i] == 0x0a else { cache = [:]; return }
            i += 1
            cache[String(decoding: k, as: UTF8.self)] = v
        }
    }

    private func execute(_ command: String) throws -> [UInt8] {
        executed += 1
        if workDir == nil {
            var template = Array((NSTemporaryDirectory() + "osbuild-kconfig-XXXXXX").utf8CString)
            guard let p = mkdtemp(&template) else { throw SystemError("mkdtemp", path: NSTemporaryDirectory(), errno: errno) }
            workDir = String(cString: p)
        }
        return try spawn(command)
    }

    /// Runs one command; touches no mutable state (safe from several threads).
    private func spawn(_ command: String) throws -> [UInt8] {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SystemError("pipe", path: "/bin/sh", errno: errno) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        // Probes write scratch files into the current directory (cc-option's .tmp_$$):
        // run them in a private directory. The command is passed as $0 and eval'ed.
        let argv: [UnsafeMutablePointer<CChar>?] = [
            strdup("/bin/sh"), strdup("-c"), strdup("cd \"$1\" || exit 1; eval \"$0\""), strdup(command),
            strdup(workDir ?? "/tmp"), nil,
        ]
        let env: [UnsafeMutablePointer<CChar>?] = envp.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in env { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, env)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw SystemError("posix_spawn", path: "/bin/sh", errno: rc)
        }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, 4096) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if out.count < 4095 { out += buf[0..<min(n, 4095 - out.count)] }
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        while let last = out.last, last == 0x0a { out.removeLast() }
        for i in out.indices where out[i] == 0x0a { out[i] = 0x20 }
        return out
    }
}

/// Thread-safe result slots for the concurrent probe runs.
private final class ResultSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [[UInt8]?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: [UInt8]?) {
        lock.lock()
        slots[i] = v
        lock.unlock()
    }
    func get(_ i: Int) -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        return slots[i]
    }
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func take() -> Int {
            lock.lock()
            defer { lock.unlock() }
            n += 1
            return n - 1
        }
    }
}

enum FileHandleDebug {
    static func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}
