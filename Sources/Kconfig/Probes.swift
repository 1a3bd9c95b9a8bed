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
            for e in envp { id += e + "\n" }
            cacheFile = dir + "/" + String(SHA256.hex(id).prefix(32)) + ".probes"
        } else {
            cacheFile = nil
        }
        if let cacheFile, let bytes = try? FileSystem.readFile(cacheFile) { load(bytes) }
    }

    deinit {
        if let workDir { try? FileSystem.removeTree(workDir) }
    }

    static func resolve(_ exe: String, path: String?) -> String? {
        if exe.isEmpty { return nil }
        if exe.contains("/") { return access(exe, X_OK) == 0 ? exe : nil }
        for dir in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(exe)"
            if access(p, X_OK) == 0 { return p }
        }
        return nil
    }

    func run(_ command: String) throws -> [UInt8] {
        if let hit = cache[command] {
            cacheHits += 1
            return hit
        }
        let out = try execute(command)
        cache[command] = out
        dirty = true
        return out
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
