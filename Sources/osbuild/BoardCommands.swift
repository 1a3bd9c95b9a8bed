import ArgumentParser
import Basics
import Boards
import OSBuildKit

struct Boards: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "boards", abstract: "List buildable boards (the JSON is a CI matrix).")
    @Flag(help: "Print a JSON array, one object per board (id, name, arch, version, image, ...).") var json = false
    @Flag(help: "Include abstract parent boards.") var all = false

    func run() throws {
        try runReportingErrors {
            let project = try Project.discover()
            let boards = try project.loader.loadAll(includeAbstract: all)
            if json {
                print(try JSONText.encode(boards.map(BoardPresenter.matrixEntry)))
                return
            }
            for b in boards {
                let chain = b.chain.count > 1 ? "  (inherits " + b.chain.dropFirst().joined(separator: " <- ") + ")" : ""
                Console.shared.line("\(StageLine.pad(b.id, 18)) \(StageLine.pad(b.arch, 8)) \(b.name)\(chain)")
            }
        }
    }
}

struct BoardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "board", abstract: "Inspect board definitions.",
        subcommands: [Show.self, Keys.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Print the fully resolved board (after inheritance), with where each value came from.")
        @Argument(help: "Board id.") var board: String
        @Flag(help: "Print as JSON.") var json = false

        func run() throws {
            try runReportingErrors {
                let project = try Project.discover()
                let b = try project.loader.load(board)
                print(json ? try JSONText.encode(BoardPresenter.json(b)) : BoardPresenter.show(b), terminator: json ? "\n" : "")
            }
        }
    }

    struct Keys: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "keys", abstract: "Print the reference of every board setting (docs/boards.md is generated from it).")
        @Flag(help: "Markdown (as in docs/boards.md).") var markdown = false

        func run() throws {
            if markdown {
                print(BoardPresenter.markdownReference(), terminator: "")
            } else {
                for s in BoardSettings.all {
                    print("\(StageLine.pad(s.key, 26)) \(StageLine.pad(s.type.label, 18)) \(s.doc)")
                }
            }
        }
    }
}
