import Basics

/// Every bundle failure names the check that failed and the file involved, so a user
/// (or a test) can tell "signature" from "verity hash tree" from "image checksum".
public struct BundleError: UserError, Equatable {
    public enum Check: String, Sendable {
        case trailer = "size trailer"
        case signature = "signature"
        case verity = "verity hash tree"
        case payload = "payload"
        case image = "image checksum"
        case manifest = "manifest"
        case input = "input"
        case key = "signing key"
    }

    public var check: Check
    public var path: String?
    public var message: String

    public init(_ check: Check, path: String?, _ message: String) {
        self.check = check
        self.path = path
        self.message = message
    }

    public var exitCode: Int32 {
        switch check {
        case .input, .key: return ExitStatus.usage
        default: return ExitStatus.failure
        }
    }

    public var description: String {
        let prefix = path.map { "\($0): " } ?? ""
        switch check {
        case .input, .key: return prefix + message
        default: return prefix + "\(check.rawValue) check failed: " + message
        }
    }

    static func verity(_ message: String, path: String? = nil) -> BundleError {
        BundleError(.verity, path: path, message)
    }

    static func truncated(path: String, offset: UInt64) -> BundleError {
        BundleError(.payload, path: path, "file ends early at byte \(offset) (truncated or changed while reading?)")
    }
}
