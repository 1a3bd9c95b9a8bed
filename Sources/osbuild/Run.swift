import ArgumentParser
import Basics

/// Runs a library call and maps user-facing errors to the documented exit codes,
/// printing the message (which names the bad input) to stderr.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as any UserError {
        Console.shared.error(Console.shared.paint("error: ", .red) + e.description)
        throw ExitCode(e.exitCode)
    }
}
