import Basics
import Boards
import FSTree
import StageRunner

public enum RootfsService {
    /// The board's assembled rootfs tree. The rootfs stage (and only what it depends on)
    /// is brought up to date first; when it is cached this costs a no-op check.
    public static func tree(board: Board, project: Project, outputDir: String?) throws -> FSTree {
        let runner = try Pipeline.runner(for: board, project: project, outputDir: outputDir)
        let summary = try runner.run(restrictedTo: "rootfs")
        if summary.failed {
            throw MessageError("the rootfs stage failed; see \(runner.buildDir.logPath("rootfs"))")
        }
        return try TreeStore.load(from: runner.buildDir.outputDir("rootfs") + "/tree")
    }
}
