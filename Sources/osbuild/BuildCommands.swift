import ArgumentParser
import Basics
import Boards
import Foundation
import OSBuildKit
import StageRunner

struct BoardOptions: ParsableArguments {
    @Argument(help: "Board id (a file boards/<id>.toml).")
    var board: String

    @Option(name: [.customShort("O"), .customLong("output")], help: "Build directory (default: build/BOARD), like Buildroot's O=.")
    var output: String?

    func load() throws -> (Project, Board) {
        let project = try Project.discover()
        return (project, try project.loader.load(board))
    }

    /// The board and the stage runner for its build directory.
    func runner() throws -> (Board, StageRunner) {
        let (project, board) = try load()
        return (board, try Pipeline.runner(for: board, project: project, outputDir: output))
    }
}

/// For `osbuild make BOARD [-O DIR]`: start checking the build directory's input
/// snapshots before ArgumentParser and the board files run, so that work overlaps the
/// check (see SnapshotPrefetch). A guess from the raw arguments: a wrong one costs only
/// a wasted check, never a wrong result.
enum MakePrefetch {
    static func start(_ args: [String]) {
        guard args.count >= 3, args[1] == "make" else { return }
        var board: String?
        var output: String?
        var i = 2
        while i < args.count {
            let a = args[i]
            if a == "-O" || a == "--output" {
                output = i + 1 < args.count ? args[i + 1] : nil
                i += 2
            } else if a == "--from" || a == "--only" || a == "-j" {
                i += 2
            } else {
                if a.hasPrefix("--output=") { output = String(a.dropFirst(9)) }
                else if !a.hasPrefix("-") && board == nil { board = a }
                i += 1
            }
        }
        guard let board, let project = try? Project.discover() else { return }
        SnapshotPrefetch.start(buildDir: project.buildDirectory(board: board, override: output))
    }
}

struct Make: ParsableCommand {
    // Explicit names spare ArgumentParser a reflection-based String(describing:) of
    // every command type on each run (measurable in a no-op `make`).
    static let configuration = CommandConfiguration(
        commandName: "make",
        abstract: "Build a board's stages, rerunning only what changed.",
        discussion: "Exit status: 0 built (placeholders for unimplemented stages are reported in red), 1 a stage failed or --verify-only found modified outputs, 2 bad board or arguments.")

    @OptionGroup var target: BoardOptions
    @Option(help: "Rerun this stage and everything downstream of it.") var from: String?
    @Option(help: "Run only this stage (even if cached); its dependencies must already be built.") var only: String?
    @Flag(help: "Rerun every stage.") var force = false
    @Flag(help: "Show what would run and why, without running anything.") var dryRun = false
    @Flag(help: "Re-hash every recorded output and report the ones modified since they were built.") var verifyOnly = false
    @Option(name: .customShort("j"), help: "Stages run in parallel (default: number of cores).") var jobs: Int?
    @Flag(help: "Print the summary as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            let (board, runner) = try target.runner()
            if verifyOnly {
                try verify(runner)
                return
            }
            var opts = RunOptions()
            opts.force = force
            opts.from = from
            opts.only = only
            opts.dryRun = dryRun
            if let jobs { opts.jobs = jobs }
            let console = Console.shared
            if !json {
                runner.onResult = { r in console.line(StageLine.render(r, console: console)) }
                runner.onProgress = { name, done, total in console.progress(name, done: done, total: total) }
                console.line("osbuild make \(board.id) -> \(runner.buildDir.root)")
            }
            let summary = try runner.run(opts)
            if json {
                print(try JSONText.encode(StageLine.json(summary, board: board, buildDir: runner.buildDir.root)))
            } else {
                StageLine.printSummary(summary, console: console)
            }
            if summary.failed { throw ExitCode(ExitStatus.failure) }
        }
    }

    func verify(_ runner: StageRunner) throws {
        var bad = 0
        for (stage, problems) in runner.verifyOutputs() {
            if problems.isEmpty {
                Console.shared.line("  ok        \(stage)")
            } else {
                bad += problems.count
                for p in problems { Console.shared.line(Console.shared.paint("  MODIFIED  \(stage): \(p)", .red)) }
            }
        }
        if bad > 0 {
            Console.shared.line("\(bad) output(s) modified since they were recorded; `osbuild make` will rebuild them")
            throw ExitCode(ExitStatus.failure)
        }
    }
}

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Show the stage graph: cached, stale (and why), or not implemented.")
    @OptionGroup var target: BoardOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            let (board, runner) = try target.runner()
            let plan = try runner.plan()
            if json {
                let arr: [[String: Any]] = plan.map { e in
                    var d: [String: Any] = ["stage": e.name, "summary": e.summary, "dependencies": e.dependencies]
                    switch e.state {
                    case .cached: d["state"] = "cached"
                    case .stale(let r): d["state"] = "stale"; d["reasons"] = r
                    case .notImplemented(let r): d["state"] = "not-implemented"; d["reasons"] = [r]
                    case .blocked(let r): d["state"] = "blocked"; d["reasons"] = [r]
                    }
                    return d
                }
                print(try JSONText.encode(["board": board.id, "stages": arr]))
                return
            }
            let c = Console.shared
            c.line("plan for \(board.id) (\(runner.buildDir.root))")
            for e in plan {
                let deps = e.dependencies.isEmpty ? "" : "  <- " + e.dependencies.joined(separator: ", ")
                switch e.state {
                case .cached: c.line("  " + c.paint("cached         ", .green) + e.name + deps)
                case .stale(let r):
                    c.line("  " + c.paint("stale          ", .yellow) + e.name + deps)
                    for reason in r { c.line("                   - \(reason)") }
                case .notImplemented(let r): c.line("  " + c.paint("not implemented", .red) + " \(e.name)\(deps)  (\(r))")
                case .blocked(let r): c.line("  " + c.paint("blocked        ", .red) + e.name + deps + "  (\(r))")
                }
            }
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show each stage's last successful build: when, how long, output size.")
    @OptionGroup var target: BoardOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            let (board, runner) = try target.runner()
            var rows: [[String: Any]] = []
            for name in runner.stageOrder {
                let rec = runner.buildDir.readRecord(name)
                var row: [String: Any] = ["stage": name, "built": rec != nil]
                if let rec {
                    row["seconds"] = rec.seconds
                    row["finished_at"] = rec.finishedAt
                    row["output_bytes"] = rec.outputs.reduce(UInt64(0)) { $0 + $1.size }
                    row["output_digest"] = rec.outputDigest
                }
                rows.append(row)
            }
            if json {
                print(try JSONText.encode(["board": board.id, "build_dir": runner.buildDir.root, "stages": rows]))
                return
            }
            let fmt = DateFormatter()
            fmt.dateFormat = "yyyy-MM-dd HH:mm:ss"
            for name in runner.stageOrder {
                if let rec = runner.buildDir.readRecord(name) {
                    let size = ByteCount.format(rec.outputs.reduce(UInt64(0)) { $0 + $1.size })
                    let when = fmt.string(from: Date(timeIntervalSince1970: rec.finishedAt))
                    Console.shared.line("  \(name.padding(toLength: 14, withPad: " ", startingAt: 0)) built \(when)  \(String(format: "%7.2f s", rec.seconds))  \(size)")
                } else {
                    Console.shared.line("  \(name.padding(toLength: 14, withPad: " ", startingAt: 0)) not built")
                }
            }
        }
    }
}

struct Clean: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clean", abstract: "Remove a board's build directory, or one stage's outputs and record.")
    @OptionGroup var target: BoardOptions
    @Option(help: "Only this stage.") var stage: String?

    func run() throws {
        try runReportingErrors {
            let (_, runner) = try target.runner()
            try runner.clean(stage: stage)
            Console.shared.line("cleaned \(stage.map { "stage \($0) of " } ?? "")\(runner.buildDir.root)")
        }
    }
}

/// One line per stage as it finishes, and the final summary.
enum StageLine {
    // Plain Swift padding and number formatting: these lines print on every no-op
    // build, where Foundation's NSString/varargs formatting is a measurable cost.
    static func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }

    /// `x` with two decimals.
    static func seconds(_ x: Double) -> String {
        let hundredths = Int((x * 100).rounded())
        let frac = hundredths % 100
        return "\(hundredths / 100)." + (frac < 10 ? "0" : "") + "\(frac)"
    }

    static func render(_ r: StageResult, console c: Console) -> String {
        switch r.outcome {
        case .ran(let s): return "  " + c.paint(pad("ran", 16), .green) + pad(r.name, 14) + String(format: "%8.2f s", s)
        case .cached: return "  " + c.paint(pad("cached", 16), .dim) + r.name
        case .failed(let m): return "  " + c.paint(pad("FAILED", 16), .red) + r.name + ": " + m + "\n" + pad("", 18) + "log: " + r.logPath
        case .notRun(let why): return "  " + c.paint(pad("not run", 16), .yellow) + r.name + ": " + why
        case .notImplemented(let why): return "  " + c.paint(pad("not implemented", 16) + r.name + " (" + why + ")", .red)
        case .wouldRun(let reasons): return "  " + c.paint(pad("would run", 16), .yellow) + r.name + ": " + reasons.joined(separator: "; ")
        }
    }

    static func printSummary(_ s: RunSummary, console c: Console) {
        var ran = 0, cached = 0, failed = 0, notImpl = 0, notRun = 0
        var total = 0.0
        for r in s.results {
            switch r.outcome {
            case .ran(let t): ran += 1; total += t
            case .cached: cached += 1
            case .failed: failed += 1
            case .notImplemented: notImpl += 1
            case .notRun, .wouldRun: notRun += 1
            }
        }
        if ran == 0 && failed == 0 && notRun == 0 {
            c.line("up to date: nothing to rebuild (\(cached) cached) in " + seconds(s.seconds) + " s")
        } else {
            c.line("summary: \(ran) ran, \(cached) cached, \(failed) failed, \(notRun) not run in " + String(format: "%.2f s", s.seconds))
            for r in s.results { if case .ran(let t) = r.outcome { c.line("  " + pad(r.name, 14) + String(format: "%8.2f s", t)) } }
        }
        if notImpl > 0 {
            c.line(c.paint("\(notImpl) stage(s) not implemented yet: " + s.notImplemented.map(\.name).joined(separator: ", "), .red))
        }
    }

    static func json(_ s: RunSummary, board: Board, buildDir: String) -> [String: Any] {
        let stages: [[String: Any]] = s.results.map { r in
            var d: [String: Any] = ["stage": r.name, "log": r.logPath]
            switch r.outcome {
            case .ran(let t): d["outcome"] = "ran"; d["seconds"] = t
            case .cached: d["outcome"] = "cached"
            case .failed(let m): d["outcome"] = "failed"; d["message"] = m
            case .notRun(let m): d["outcome"] = "not-run"; d["message"] = m
            case .notImplemented(let m): d["outcome"] = "not-implemented"; d["message"] = m
            case .wouldRun(let m): d["outcome"] = "would-run"; d["reasons"] = m
            }
            return d
        }
        return ["board": board.id, "build_dir": buildDir, "seconds": s.seconds, "failed": s.failed, "stages": stages]
    }
}

enum JSONText {
    static func encode(_ obj: Any) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}
