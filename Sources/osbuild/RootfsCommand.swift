import ArgumentParser
import Basics
import FSTree
import OSBuildKit
import Rootfs

struct RootfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rootfs", abstract: "Inspect a board's assembled root filesystem.")

    @OptionGroup var target: BoardOptions
    @Flag(help: "Print the tree with owners and modes, like `ls -lnR` (builds the rootfs stage if needed).") var list = false
    @Flag(help: "With --list: show extended attribute names.") var xattrs = false

    func run() throws {
        try runReportingErrors {
            let (project, board) = try target.load()
            guard list else { throw MessageError("nothing to do: pass --list", exitCode: ExitStatus.usage) }
            let tree = try RootfsService.tree(board: board, project: project, outputDir: target.output)
            print(TreeListing.render(tree, options: .init(showXAttrs: xattrs)), terminator: "")
        }
    }
}
