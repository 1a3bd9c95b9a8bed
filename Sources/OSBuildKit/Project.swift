import Basics
import Boards
import Foundation
import StageRunner

/// The project a command works on: the directory holding `boards/` (found from the
/// current directory upwards, or OSBUILD_PROJECT), its build and download directories.
public struct Project: Sendable {
    public let root: String
    public let loader: BoardLoader

    public struct NotFound: UserError {
        public var start: String
        public var exitCode: Int32 { ExitStatus.usage }
        public var description: String {
            "no osbuild project found at or above \(start) (looking for a boards/ directory); run inside the project or set OSBUILD_PROJECT"
        }
    }

    public init(root: String) {
        self.root = FileSystem.absolute(root)
        loader = BoardLoader(projectRoot: self.root)
    }

    public static func discover(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Project {
        if let p = environment["OSBUILD_PROJECT"], !p.isEmpty { return Project(root: p) }
        var dir = FileManager.default.currentDirectoryPath
        let start = dir
        while true {
            if FileSystem.exists(dir + "/boards") && FileSystem.exists(dir + "/overlay") { return Project(root: dir) }
            if dir == "/" || dir.isEmpty { throw NotFound(start: start) }
            dir = FileSystem.dirname(dir)
        }
    }

    /// build/BOARD unless -O DIR was given (like Buildroot's O=).
    public func buildDirectory(board: String, override: String?) -> BuildDirectory {
        BuildDirectory(override ?? (root + "/build/" + board))
    }

    /// Downloads and other inputs shared by all boards (OSBUILD_DL_CACHE overrides).
    public var downloadCache: String {
        if let d = ProcessInfo.processInfo.environment["OSBUILD_DL_CACHE"], !d.isEmpty { return FileSystem.absolute(d) }
        return root + "/dl"
    }

    /// The project-wide overlay applied to every board before the board's own overlays.
    public var commonOverlay: String { root + "/overlay" }
}
