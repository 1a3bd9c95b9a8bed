import Basics
import Boards
import OSBuildKit
import Testing
import TestSupport

@Suite struct PipelineTests {
    @Test func everyShippedBoardResolvesToAStageGraph() throws {
        let project = Project(root: TestEnv.repoRoot)
        let boards = try project.loader.loadAll()
        #expect(Set(boards.map(\.id)).isSuperset(of: ["qemu-x86-64", "generic-x86-64", "generic-aarch64", "rpi4-64", "rpi5-64"]))
        for b in boards {
            let stages = try Pipeline.stages(for: b, project: project, buildDir: project.buildDirectory(board: b.id, override: "/tmp/unused"))
            #expect(stages.contains { $0.name == "rootfs" }, "board \(b.id)")
        }
    }
}

@Suite struct DocsTests {
    /// The README documents what the install script installs: every package of every
    /// scripts/apt-packages.d/*.txt must be named there.
    @Test func readmeListsEveryInstalledPackage() throws {
        let root = TestEnv.repoRoot
        let readme = try FileSystem.readText(root + "/README.md")
        let dir = root + "/scripts/apt-packages.d"
        var missing: [String] = []
        for f in try FileSystem.listDirectory(dir) where f.hasSuffix(".txt") {
            for line in try FileSystem.readText(dir + "/" + f).split(separator: "\n") {
                let pkg = line.split(separator: "#", omittingEmptySubsequences: false).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                if !pkg.isEmpty && !readme.contains(pkg) { missing.append("\(pkg) (\(f))") }
            }
        }
        #expect(missing.isEmpty, "README.md does not mention: \(missing.joined(separator: ", "))")
    }
}
