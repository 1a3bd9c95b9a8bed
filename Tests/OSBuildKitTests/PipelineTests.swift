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
