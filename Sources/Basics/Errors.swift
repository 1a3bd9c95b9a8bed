/// Where a piece of bad input came from: a file, optionally a line and a key.
/// Every user-facing error carries one so the message can point at the input.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    public var key: String?

    public init(file: String, line: Int? = nil, column: Int? = nil, key: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        if let column { s += ":\(column)" }
        if let key { s += " (\(key))" }
        return s
    }
}

/// An error a user can act on. `exitCode` follows the table in `osbuild --help`:
/// 1 build/verification failure, 2 usage or input error, 3 missing tool or environment problem.
public protocol UserError: Error, CustomStringConvertible, Sendable {
    var exitCode: Int32 { get }
}

extension UserError {
    public var exitCode: Int32 { 1 }
}

/// Exit codes shared by every command (documented in `osbuild --help`).
public enum ExitStatus {
    public static let success: Int32 = 0
    public static let failure: Int32 = 1
    public static let usage: Int32 = 2
    public static let environment: Int32 = 3
    public static let interrupted: Int32 = 130
}

/// A generic error with a message, for conditions that need no structured cases.
public struct MessageError: UserError {
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = ExitStatus.failure) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}

/// Several errors reported together (e.g. every problem in a board file at once).
public struct ErrorList: UserError {
    public var errors: [any UserError]
    public init(_ errors: [any UserError]) { self.errors = errors }
    public var exitCode: Int32 { errors.map(\.exitCode).max() ?? ExitStatus.failure }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// A system call failed; carries the path and errno text.
public struct SystemError: UserError {
    public var operation: String
    public var path: String
    public var errno: Int32
    public init(_ operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }
    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(errno)))"
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
