import Basics
import Boards
import Foundation
import OSBuildKit
import StageRunner
import Testing
import TestSupport

/// One build of a shipped board per test process, shared by every test that needs it
/// (boot tests, bundle install tests, the shipped-board oracles): `osbuild make BOARD` in
/// a throwaway copy of the project (boards/ and overlay/; the development keys are
/// generated into its keys/, and tests may add board variants to its boards/).
/// `versionTwo()` builds, on first use, the update a device would get next: the same
/// board with os.version 2.0, signed with the same keys.
final class BoardBuild: @unchecked Sendable {
    let boardID: String
    let dir: TempDir
    let project: String
    let buildDir: String
    let board: Board
    let image: String  // the pristine 1.0 image: copy it (copyImage) before changing it
    let bundle: String  // the 1.0 bundle
    var stages: String { buildDir + "/stages" }
    var keyring: String { project + "/keys/dev-ca.cert.pem" }

    /// Every build shares one download cache: OSBUILD_DL_CACHE, else the checkout's dl/.
    static var downloadCache: String {
        let env = ProcessInfo.processInfo.environment["OSBUILD_DL_CACHE"] ?? ""
        return env.isEmpty ? TestEnv.repoRoot + "/dl" : env
    }

    /// The build of `id`, made by the first caller; later callers (any thread) wait for it
    /// and get the same build, or the same error.
    static func get(_ id: String) throws -> BoardBuild {
        let once = registry.once(id)
        once.lock.lock()
        defer { once.lock.unlock() }
        if let r = once.result { return try r.get() }
        let r = Swift.Result { try BoardBuild(id) }
        once.result = r
        return try r.get()
    }

    private final class Once: @unchecked Sendable {
        let lock = NSLock()
        var result: Swift.Result<BoardBuild, any Error>?
    }

    private final class Registry: @unchecked Sendable {
        let lock = NSLock()
        var builds: [String: Once] = [:]
        func once(_ id: String) -> Once {
            lock.lock()
            defer { lock.unlock() }
            if let o = builds[id] { return o }
            let o = Once()
            builds[id] = o
            return o
        }
    }

    private static let registry = Registry()

    private init(_ id: String) throws {
        boardID = id
        dir = try TempDir("build-" + id)
        project = dir.sub("project")
        buildDir = dir.sub("build")
        try FileSystem.makeDirectories(dir.sub("project"))
        _ = try Subprocess.run(["cp", "-a", TestEnv.repoRoot + "/boards", TestEnv.repoRoot + "/overlay", dir.sub("project")])
        let start = Date()
        _ = try Subprocess.run([CLI.binary, "make", id, "-O", dir.sub("build")], environment: Self.environment(dir.sub("project")))
        print("board build \(id): osbuild make in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        let loaded = try Project(root: dir.sub("project")).loader.load(id)
        board = loaded
        image = dir.sub("build/stages/disk/") + loaded.artifactName("img")
        bundle = dir.sub("build/stages/bundle/") + loaded.artifactName("raucb")
    }

    static func environment(_ project: String) -> [String: String] {
        ["OSBUILD_PROJECT": project, "OSBUILD_DL_CACHE": downloadCache, "NO_COLOR": "1"]
    }

    /// A sparse private copy of the pristine image, in this build's temp directory.
    func copyImage(_ name: String) throws -> String {
        let p = dir.sub(name)
        _ = try Subprocess.run(["cp", "--sparse=always", image, p])
        return p
    }

    /// `osbuild bundle install BUNDLE --image IMAGE` (with --board of this build unless
    /// `args` says otherwise), run against this build's project.
    func install(_ bundle: String, image: String, _ args: [String]? = nil) throws -> Subprocess.Result {
        try Subprocess.run([CLI.binary, "bundle", "install", bundle, "--image", image] + (args ?? ["--board", boardID]),
                           environment: ["OSBUILD_PROJECT": project, "NO_COLOR": "1"], check: false)
    }

    private let v2Lock = NSLock()
    private var v2: Swift.Result<String, any Error>?

    /// The 2.0 bundle: a project copy with os.version bumped in boards/common.toml and the
    /// same keys, built only as far as the bundle needs (no disk image).
    func versionTwo() throws -> String {
        v2Lock.lock()
        defer { v2Lock.unlock() }
        if let v2 { return try v2.get() }
        let r = Swift.Result { () throws -> String in
            let p2 = dir.sub("project-2.0")
            try FileSystem.makeDirectories(p2)
            _ = try Subprocess.run(["cp", "-a", project + "/boards", project + "/overlay", project + "/keys", p2])
            let common = p2 + "/boards/common.toml"
            let text = try FileSystem.readText(common)
            guard text.contains("version = \"1.0\"") else { throw MessageError("\(common): no version = \"1.0\" to bump") }
            try FileSystem.writeAtomically(common, text.replacingOccurrences(of: "version = \"1.0\"", with: "version = \"2.0\""))
            let project2 = Project(root: p2)
            let board2 = try project2.loader.load(boardID)
            let bd = BuildDirectory(dir.sub("build-2.0"))
            let runner = try StageRunner(stages: try Pipeline.stages(for: board2, project: project2, buildDir: bd), buildDir: bd,
                                         downloadCache: Self.downloadCache)
            let start = Date()
            let summary = try runner.run(restrictedTo: "bundle")
            print("board build \(boardID) 2.0: bundle in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
            if summary.failed { throw MessageError("building the \(boardID) 2.0 bundle failed: \(summary.results.map { "\($0.name): \($0.outcome)" })") }
            return bd.outputDir("bundle") + "/" + board2.artifactName("raucb")
        }
        v2 = r
        return try r.get()
    }
}
