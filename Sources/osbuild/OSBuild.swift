import ArgumentParser
import Basics
import Foundation
import OSBuildKit

/// The root command. Only argument parsing and printing live in this target; all work
/// is done by library services (OSBuildKit and the modules below it).
@main
struct OSBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "osbuild",
        abstract: "Build embedded Linux OS images from declarative board files.",
        discussion: """
            EXIT CODES
              0  success
              1  build, verification or check failed (a stage failed, a mismatch under --strict,
                 a bundle or image that does not verify)
              2  usage or input error (bad arguments, board file or config errors; the message
                 names the file, line and key)
              3  environment problem (a required tool or library is missing)
              4  update-locks --dry-run: newer Debian packages are available
              130 interrupted
            """,
        version: OSBuildVersion.string,
        subcommands: commandRegistry
    )

    /// ArgumentParser exits 64 (EX_USAGE) on bad arguments; osbuild documents 2 for every
    /// usage error, so remap that one code and keep the parser's message.
    static func main() {
        MakePrefetch.start(CommandLine.arguments)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code.rawValue == 64 {
                let message = fullMessage(for: error)
                if !message.isEmpty { Console.shared.error(message) }
                Foundation.exit(ExitStatus.usage)
            }
            exit(withError: error)
        }
    }
}
