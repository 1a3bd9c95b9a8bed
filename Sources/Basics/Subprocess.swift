import Foundation

/// Runs external tools (compilers, apt-get, mke2fs). Output is captured; a non-zero exit
/// becomes a `ToolError` that names the command and shows the end of its stderr.
public enum Subprocess {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: [UInt8]
        public var stderr: [UInt8]
        public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    public struct ToolError: UserError {
        public var command: [String]
        public var status: Int32
        public var stderrTail: String
        public var description: String {
            "command failed (exit \(status)): \(command.joined(separator: " "))" + (stderrTail.isEmpty ? "" : "\n" + stderrTail)
        }
    }

    public struct ToolMissing: UserError {
        public var tool: String
        public var hint: String
        public var exitCode: Int32 { ExitStatus.environment }
        public var description: String { "required tool '\(tool)' not found in PATH" + (hint.isEmpty ? "" : " (\(hint))") }
    }

    /// Absolute path of an executable found in PATH, or nil.
    public static func which(_ tool: String) -> String? {
        if tool.contains("/") { return access(tool, X_OK) == 0 ? tool : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let p = "\(dir)/\(tool)"
            if access(p, X_OK) == 0 { return p }
        }
        for dir in ["/usr/sbin", "/sbin"] where access("\(dir)/\(tool)", X_OK) == 0 {
            return "\(dir)/\(tool)"
        }
        return nil
    }

    public static func run(
        _ args: [String], environment: [String: String]? = nil, directory: String? = nil,
        input: [UInt8]? = nil, check: Bool = true
    ) throws -> Result {
        guard let tool = args.first else { throw MessageError("empty command") }
        guard let exe = which(tool) else { throw ToolMissing(tool: tool, hint: "") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = Array(args.dropFirst())
        if let environment {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let outPipe = Pipe(), errPipe = Pipe()
        p.standardOutput = outPipe
        p.standardError = errPipe
        let inPipe = Pipe()
        p.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try p.run()
        if let input {
            inPipe.fileHandleForWriting.write(Data(input))
            try? inPipe.fileHandleForWriting.close()
        }
        // Read both pipes concurrently so a chatty tool cannot deadlock on a full pipe.
        let errBox = DataBox()
        let t = Thread { errBox.data = errPipe.fileHandleForReading.readDataToEndOfFile() }
        t.start()
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        errBox.wait()
        let result = Result(status: p.terminationStatus, stdout: [UInt8](out), stderr: [UInt8](errBox.data))
        if check && result.status != 0 {
            let tail = result.stderrText.split(separator: "\n").suffix(15).joined(separator: "\n")
            throw ToolError(command: args, status: result.status, stderrTail: tail)
        }
        return result
    }
}

private final class DataBox: @unchecked Sendable {
    private let lock = NSCondition()
    private var _data = Data()
    private var set = false
    var data: Data {
        get { lock.lock(); defer { lock.unlock() }; return _data }
        set { lock.lock(); _data = newValue; set = true; lock.broadcast(); lock.unlock() }
    }
    func wait() {
        lock.lock()
        while !set { lock.wait() }
        lock.unlock()
    }
}
