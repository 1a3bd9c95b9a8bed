import Basics

/// What to do with an archive member that would land outside the tree (`..`, an
/// absolute path, a path through a symlink, a hard link to such a path).
public enum UnsafeMemberPolicy: String, Sendable, Hashable, CaseIterable {
    /// Stop with an error naming the archive and the member (default).
    case error
    /// Print a warning naming the archive and member, skip the member, continue.
    case warnSkip = "warn-skip"
}

/// A member of an archive that is refused because it could escape the tree.
public struct UnsafeArchiveMember: UserError {
    public enum Reason: Sendable, Hashable {
        case absolutePath
        case dotDot
        case throughSymlink(String)
        case hardlinkTarget(String)
    }
    public var archive: String
    public var member: String
    public var reason: Reason
    public var exitCode: Int32 { ExitStatus.usage }
    public var description: String {
        let why: String
        switch reason {
        case .absolutePath: why = "absolute path"
        case .dotDot: why = "path contains '..'"
        case .throughSymlink(let link): why = "path goes through the symlink \(link) in the tree"
        case .hardlinkTarget(let t): why = "hard link target \(t) is outside the tree, missing, or goes through a symlink"
        }
        return "\(archive): member '\(member)' refused: \(why) (set the unsafe-member policy to warn-skip to skip such members)"
    }
}

/// An archive that cannot be read or holds something the tree cannot represent.
public struct ArchiveError: UserError {
    public var archive: String
    public var member: String?
    public var message: String
    public init(archive: String, member: String? = nil, _ message: String) {
        self.archive = archive
        self.member = member
        self.message = message
    }
    public var description: String {
        if let member { return "\(archive): member '\(member)': \(message)" }
        return "\(archive): \(message)"
    }
}

/// An error in a rootfs input other than an archive (spec fields, makedevs tables, overrides).
public struct RootfsError: UserError {
    public var location: SourceLocation?
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, at location: SourceLocation? = nil, exitCode: Int32 = ExitStatus.usage) {
        self.message = message
        self.location = location
        self.exitCode = exitCode
    }
    public var description: String {
        if let location { return "\(location): \(message)" }
        return message
    }
}

/// Receives warnings and progress notes from rootfs assembly.
public typealias RootfsLog = (_ message: String) -> Void
