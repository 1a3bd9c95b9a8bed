import Basics
import FSTree

/// Everything that goes into a root filesystem, in plain values. The board layer maps its
/// keys onto these fields (see docs/rootfs.md); this module knows nothing about boards.
public struct RootfsSpec: Sendable, Hashable {
    /// One base input. Applied in order; later inputs replace earlier entries with the
    /// same path, and directories merge.
    public enum BaseInput: Sendable, Hashable, CustomStringConvertible {
        /// A host directory, copied as entries (symlinks stay links).
        case directory(String)
        /// tar, tar.gz, tar.xz, tar.zst, tar.bz2, cpio or a Debian `.deb` file; the format is
        /// detected from the content, not the name.
        case archive(String)
        /// A Debian package fetched by `apt-get download` ("busybox-static",
        /// "busybox-static=1:1.35.0-4+b3", "libc6:arm64"), pinned in the apt lock file.
        case apt(String)

        /// Parses the board-file spelling: "apt:NAME", a directory path, or an archive path.
        /// Directories are told apart from archives by looking at the path.
        public static func parse(_ text: String) -> BaseInput {
            if text.hasPrefix("apt:") { return .apt(String(text.dropFirst(4))) }
            if let st = try? FileSystem.stat(text), st.isDirectory { return .directory(text) }
            return .archive(text)
        }

        public var description: String {
            switch self {
            case .directory(let p): "dir:" + p
            case .archive(let p): "archive:" + p
            case .apt(let n): "apt:" + n
            }
        }
    }

    /// Ownership given to entries copied from host directories (base dirs and overlays).
    public enum HostOwnership: String, Sendable, Hashable {
        /// Everything 0:0 (default; a developer's checkout is not owned by root).
        case root
        /// Keep the host uid/gid.
        case host
    }

    /// Mode/owner change for one existing path (`[[rootfs.override]]` style).
    public struct PathOverride: Sendable, Hashable {
        public var path: String
        public var mode: UInt16?
        public var uid: UInt32?
        public var gid: UInt32?
        /// Apply to everything below a directory too.
        public var recursive: Bool
        public var origin: SourceLocation?
        public init(path: String, mode: UInt16? = nil, uid: UInt32? = nil, gid: UInt32? = nil, recursive: Bool = false, origin: SourceLocation? = nil) {
            self.path = path
            self.mode = mode
            self.uid = uid
            self.gid = gid
            self.recursive = recursive
            self.origin = origin
        }
    }

    /// Declarative post-build step, run in order after overlays, generated files, device
    /// tables and overrides.
    public enum PostBuildAction: Sendable, Hashable {
        /// Remove a path or every path matching a glob (`*`, `?`, `[...]`; `*` does not
        /// cross `/`). Matching nothing is fine.
        case remove(String)
        /// Create a directory (and missing parents) with this mode/owner.
        case mkdir(path: String, mode: UInt16, uid: UInt32, gid: UInt32)
        /// Create or replace a symlink.
        case symlink(path: String, target: String)
        /// Write a file from a template, expanding `${VAR}` from `RootfsSpec.variables`.
        case writeFile(path: String, template: Template, mode: UInt16, uid: UInt32, gid: UInt32)
    }

    public enum Template: Sendable, Hashable {
        case inline(String)
        /// A host file holding the template text.
        case file(String)
    }

    /// Fields of `/usr/lib/os-release` (`/etc/os-release` becomes a link to it). Unset
    /// fields are left out.
    public struct OSRelease: Sendable, Hashable {
        public var name: String
        public var version: String?
        public var id: String
        public var versionID: String?
        public var prettyName: String?
        public var cpeName: String?
        public var variant: String?
        public var variantID: String?
        public var buildID: String?
        /// Extra KEY=value lines (HOME_URL, ...), written after the standard ones, sorted.
        public var extra: [String: String]
        public init(name: String, id: String, version: String? = nil, versionID: String? = nil, prettyName: String? = nil,
                    cpeName: String? = nil, variant: String? = nil, variantID: String? = nil, buildID: String? = nil,
                    extra: [String: String] = [:]) {
            self.name = name
            self.id = id
            self.version = version
            self.versionID = versionID
            self.prettyName = prettyName
            self.cpeName = cpeName
            self.variant = variant
            self.variantID = variantID
            self.buildID = buildID
            self.extra = extra
        }
    }

    /// Fields of `/etc/machine-info`.
    public struct MachineInfo: Sendable, Hashable {
        public var chassis: String?
        public var deployment: String?
        public init(chassis: String? = nil, deployment: String? = nil) {
            self.chassis = chassis
            self.deployment = deployment
        }
    }

    public var base: [BaseInput]
    /// Host directories copied over the base in order (common `overlay/` first, then the board's).
    public var overlays: [String]
    /// Buildroot makedevs tables, applied in order.
    public var deviceTables: [String]
    public var overrides: [PathOverride]
    public var actions: [PostBuildAction]
    /// Board variables for `${VAR}` in templates.
    public var variables: [String: String]
    public var osRelease: OSRelease?
    public var machineInfo: MachineInfo?
    /// Write `/etc/timestamp` (UTC build time as YYYYMMDDhhmmss).
    public var writeTimestamp: Bool
    /// Where the build-id stamp goes; nil writes none.
    public var buildIDPath: String?
    public var unsafeMembers: UnsafeMemberPolicy
    public var hostOwnership: HostOwnership
    /// Read xattrs of host-directory entries (base dirs, overlays). Off by default: a
    /// checkout carries none by design, and host labels (security.selinux) would make the
    /// image depend on the build machine.
    public var hostXAttrs: Bool
    /// SOURCE_DATE_EPOCH. Generated files get this mtime and every mtime is clamped to it.
    /// nil: generated files get the current time and nothing is clamped.
    public var sourceDateEpoch: Int64?
    /// Lock file pinning `apt:` inputs (name -> file + sha256). nil: `<download cache>/apt-lock.json`.
    public var aptLockFile: String?

    public init(
        base: [BaseInput] = [], overlays: [String] = [], deviceTables: [String] = [], overrides: [PathOverride] = [],
        actions: [PostBuildAction] = [], variables: [String: String] = [:], osRelease: OSRelease? = nil,
        machineInfo: MachineInfo? = nil, writeTimestamp: Bool = true, buildIDPath: String? = "/etc/osbuild-build-id",
        unsafeMembers: UnsafeMemberPolicy = .error, hostOwnership: HostOwnership = .root, hostXAttrs: Bool = false,
        sourceDateEpoch: Int64? = nil, aptLockFile: String? = nil
    ) {
        self.hostXAttrs = hostXAttrs
        self.base = base
        self.overlays = overlays
        self.deviceTables = deviceTables
        self.overrides = overrides
        self.actions = actions
        self.variables = variables
        self.osRelease = osRelease
        self.machineInfo = machineInfo
        self.writeTimestamp = writeTimestamp
        self.buildIDPath = buildIDPath
        self.unsafeMembers = unsafeMembers
        self.hostOwnership = hostOwnership
        self.sourceDateEpoch = sourceDateEpoch
        self.aptLockFile = aptLockFile
    }
}
