import ArgumentParser
import Basics
import Foundation
import OSBuildKit

struct UpdateLocks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update-locks",
        abstract: "Take apt's current candidates for the Debian packages a board's stages fetch, and pin them.",
        discussion: """
        Covers kernel.package (a metapackage such as linux-image-amd64 is resolved to its \
        versioned package, as the kernel stage does; when it moved to a new kernel ABI the old \
        versioned pin is replaced), the GRUB or U-Boot package, and rootfs.base apt: inputs. \
        Stage packages are pinned in <download cache>/apt/apt-lock.json, rootfs inputs in \
        boards/apt-lock.json. Candidates come from the host's apt lists (run apt-get update \
        first for fresh ones); changed packages are downloaded from the configured mirror. \
        A changed pin makes `plan` report the stage stale and `make` rerun it.
        Exit status: 0 done or nothing to update, 2 bad board or arguments, 3 apt failed \
        (unknown package, no apt lists), 4 with --dry-run: updates are available (lock files untouched).
        """)

    @Argument(help: "Board id (a file boards/<id>.toml).") var board: String
    @Flag(help: "Only report what would change; exit 4 when something would.") var dryRun = false
    @Flag(help: "Print a JSON array: [{stage, lock, key, old, new, status (unchanged|updated|new|replaced), replaces}].") var json = false

    func run() throws {
        var changed = false
        try runReportingErrors {
            let project = try Project.discover()
            let b = try project.loader.load(board)
            let console = Console.shared
            let changes = try LockUpdate.run(board: b, project: project, dryRun: dryRun, log: { line in if !json { console.line(line) } })
            changed = changes.contains { $0.status != .unchanged }
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(changes), as: UTF8.self))
            } else {
                for line in LockUpdate.render(changes, dryRun: dryRun) { console.line(line) }
            }
        }
        if dryRun && changed { throw ExitCode(LockUpdate.updatesAvailableExitCode) }
    }
}
