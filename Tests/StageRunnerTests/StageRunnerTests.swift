import Basics
import Foundation
import StageRunner
import Testing
import TestSupport

/// Counts stage executions across threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    private(set) var intervals: [String: (Date, Date)] = [:]
    func hit(_ s: String) { lock.lock(); counts[s, default: 0] += 1; lock.unlock() }
    func count(_ s: String) -> Int { lock.lock(); defer { lock.unlock() }; return counts[s] ?? 0 }
    func interval(_ s: String, _ a: Date, _ b: Date) { lock.lock(); intervals[s] = (a, b); lock.unlock() }
}

/// A small graph: source (reads an input file) -> middle (copies, uppercases) -> sink.
struct Fixture {
    let tmp: TempDir
    let input: String
    let counter = Counter()
    var key = "v1"
    var tool = "1.0"
    var failMiddle = false

    init() throws {
        tmp = try TempDir("stages")
        input = try tmp.write("inputs/data.txt", "hello\n")
        try tmp.write("inputs/dir/a", "a")
        try tmp.write("inputs/dir/sub/b", "b")
    }

    var buildDir: BuildDirectory { BuildDirectory(tmp.sub("build")) }

    func runner() throws -> StageRunner {
        let counter = self.counter
        let input = self.input
        let dir = tmp.sub("inputs/dir")
        let failMiddle = self.failMiddle
        let source = Stage(name: "source", summary: "read input",
                           inputs: StageInputs(paths: [input, dir], keys: ["board.key": key], tools: ["tool": tool])) { ctx in
            counter.hit("source")
            let text = try FileSystem.readText(input)
            try FileSystem.writeAtomically(ctx.outputDir + "/data.txt", text)
        }
        let middle = Stage(name: "middle", summary: "transform", dependencies: ["source"]) { ctx in
            counter.hit("middle")
            let text = try FileSystem.readText(try ctx.input("source") + "/data.txt")
            try FileSystem.writeAtomically(ctx.outputDir + "/partial.txt", "half")
            if failMiddle { throw MessageError("middle failed on purpose") }
            try FileSystem.writeAtomically(ctx.outputDir + "/upper.txt", text.uppercased())
        }
        let sink = Stage(name: "sink", summary: "final", dependencies: ["middle"]) { ctx in
            counter.hit("sink")
            let text = try FileSystem.readText(try ctx.input("middle") + "/upper.txt")
            try FileSystem.writeAtomically(ctx.outputDir + "/final.txt", "[" + text + "]")
        }
        return try StageRunner(stages: [source, middle, sink], buildDir: buildDir, downloadCache: tmp.sub("dl"))
    }

    func outcomes(_ s: RunSummary) -> [String: StageOutcome] {
        Dictionary(uniqueKeysWithValues: s.results.map { ($0.name, $0.outcome) })
    }
}

func ran(_ o: StageOutcome?) -> Bool { if case .ran? = o { true } else { false } }

@Suite struct StageRunnerTests {
    @Test func skipsWhenUnchanged() throws {
        let f = try Fixture()
        let first = try f.runner().run()
        #expect(first.results.allSatisfy { ran($0.outcome) })
        let second = try f.runner().run()
        #expect(second.results.allSatisfy { $0.outcome == .cached })
        #expect(f.counter.count("source") == 1 && f.counter.count("sink") == 1)
        #expect(try FileSystem.readText(f.buildDir.outputDir("sink") + "/final.txt") == "[HELLO\n]")
        let plan = try f.runner().plan()
        #expect(plan.allSatisfy { $0.state == .cached })
    }

    @Test func changedInputFileRerunsAndExplains() throws {
        let f = try Fixture()
        _ = try f.runner().run()
        try FileSystem.writeAtomically(f.input, "world\n")
        let plan = try f.runner().plan()
        guard case .stale(let reasons) = plan[0].state else { Issue.record("source not stale"); return }
        #expect(reasons.contains { $0.contains("input \(f.input) changed") })
        let s = try f.runner().run()
        #expect(f.outcomes(s).values.allSatisfy(ran))
        #expect(try FileSystem.readText(f.buildDir.outputDir("sink") + "/final.txt") == "[WORLD\n]")
    }

    @Test func changedFileInInputDirectoryReruns() throws {
        let f = try Fixture()
        _ = try f.runner().run()
        try f.tmp.write("inputs/dir/sub/b", "changed")
        #expect(ran(f.outcomes(try f.runner().run())["source"]))
        try f.tmp.write("inputs/dir/new", "x")
        #expect(ran(f.outcomes(try f.runner().run())["source"]))
    }

    @Test func changedBoardKeyAndToolVersionRerun() throws {
        var f = try Fixture()
        _ = try f.runner().run()
        f.key = "v2"
        let plan = try f.runner().plan()
        guard case .stale(let r) = plan[0].state else { Issue.record("not stale"); return }
        #expect(r == ["board key board.key changed"])
        #expect(ran(f.outcomes(try f.runner().run())["source"]))
        f.tool = "2.0"
        guard case .stale(let r2) = try f.runner().plan()[0].state else { Issue.record("not stale"); return }
        #expect(r2 == ["tool tool changed (1.0 -> 2.0)"])
        #expect(ran(f.outcomes(try f.runner().run())["source"]))
    }

    @Test func downstreamInvalidationWithEarlyCutoff() throws {
        var f = try Fixture()
        _ = try f.runner().run()
        // Key change reruns source, but its output is identical: downstream stays cached.
        f.key = "v2"
        let o = f.outcomes(try f.runner().run())
        #expect(ran(o["source"]))
        #expect(o["middle"] == .cached && o["sink"] == .cached)
        // Content change propagates all the way down.
        try FileSystem.writeAtomically(f.input, "x\n")
        let plan = try f.runner().plan()
        guard case .stale(let r) = plan[1].state else { Issue.record("middle not stale"); return }
        #expect(r == ["upstream stage source will be rebuilt"])
        let o2 = f.outcomes(try f.runner().run())
        #expect(ran(o2["middle"]) && ran(o2["sink"]))
    }

    @Test func fromRerunsStageAndDownstreamOnly() throws {
        let f = try Fixture()
        _ = try f.runner().run()
        var opts = RunOptions()
        opts.from = "middle"
        let o = f.outcomes(try f.runner().run(opts))
        #expect(o["source"] == .cached && ran(o["middle"]) && ran(o["sink"]))
        var only = RunOptions()
        only.only = "middle"
        let o2 = f.outcomes(try f.runner().run(only))
        #expect(o2.count == 1 && ran(o2["middle"]))
        var bad = RunOptions()
        bad.from = "midle"
        #expect(throws: StageGraphError.self) { try f.runner().run(bad) }
        do { _ = try f.runner().run(bad) } catch { #expect("\(error)".contains("did you mean 'middle'")) }
    }

    @Test func forceAndDryRun() throws {
        let f = try Fixture()
        var dry = RunOptions()
        dry.dryRun = true
        let d = try f.runner().run(dry)
        #expect(d.results.allSatisfy { if case .wouldRun = $0.outcome { true } else { false } })
        #expect(f.counter.count("source") == 0)
        _ = try f.runner().run()
        var force = RunOptions()
        force.force = true
        #expect(try f.runner().run(force).results.allSatisfy { ran($0.outcome) })
        #expect(f.counter.count("source") == 2)
    }

    @Test func throwingStageLeavesNoRecordAndNoPartialOutput() throws {
        var f = try Fixture()
        f.failMiddle = true
        let s = try f.runner().run()
        let o = f.outcomes(s)
        guard case .failed(let msg)? = o["middle"] else { Issue.record("middle did not fail"); return }
        #expect(msg.contains("middle failed on purpose"))
        #expect(o["sink"] == .notRun(reason: "dependency 'middle' did not complete"))
        #expect(f.buildDir.readRecord("middle") == nil)
        #expect(!FileSystem.exists(f.buildDir.outputDir("middle")))
        #expect(try FileSystem.listDirectory(f.buildDir.tmpDir).isEmpty)
        #expect(s.failed)
        // A good build, then a failing rebuild: the previous good state stays.
        f.failMiddle = false
        _ = try f.runner().run()
        let good = f.buildDir.readRecord("middle")
        f.failMiddle = true
        var force = RunOptions()
        force.from = "middle"
        _ = try f.runner().run(force)
        #expect(f.buildDir.readRecord("middle") == good)
        #expect(try FileSystem.readText(f.buildDir.outputDir("middle") + "/upper.txt") == "HELLO\n")
    }

    @Test func modifiedOutputIsDetected() throws {
        let f = try Fixture()
        _ = try f.runner().run()
        let out = f.buildDir.outputDir("middle") + "/upper.txt"
        try FileSystem.writeAtomically(out, "tampered")
        let bad = try f.runner().verifyOutputs().first { $0.stage == "middle" }
        #expect(bad?.problems.first?.contains("upper.txt: content changed") == true)
        guard case .stale(let r) = try f.runner().plan()[1].state else { Issue.record("not stale"); return }
        #expect(r == ["output upper.txt was modified after it was built"])
        let o = f.outcomes(try f.runner().run())
        #expect(ran(o["middle"]))
        #expect(try FileSystem.readText(out) == "HELLO\n")
        #expect(try f.runner().verifyOutputs().allSatisfy { $0.problems.isEmpty })
    }

    @Test func independentStagesRunInParallel() throws {
        let tmp = try TempDir("par")
        let counter = Counter()
        func sleeper(_ n: String) -> Stage {
            Stage(name: n, summary: n, inputs: StageInputs(extra: ["n": n])) { ctx in
                let a = Date()
                Thread.sleep(forTimeInterval: 0.6)
                try FileSystem.writeAtomically(ctx.outputDir + "/x", n)
                counter.interval(n, a, Date())
            }
        }
        let join = Stage(name: "join", summary: "join", dependencies: ["a", "b"]) { ctx in
            let a = try FileSystem.readText(try ctx.input("a") + "/x")
            let b = try FileSystem.readText(try ctx.input("b") + "/x")
            try FileSystem.writeAtomically(ctx.outputDir + "/x", a + b)
        }
        let runner = try StageRunner(stages: [sleeper("a"), sleeper("b"), join], buildDir: BuildDirectory(tmp.sub("b")), downloadCache: tmp.sub("dl"))
        var opts = RunOptions()
        opts.jobs = 2
        let s = try runner.run(opts)
        #expect(!s.failed)
        guard let ia = counter.intervals["a"], let ib = counter.intervals["b"] else { Issue.record("missing"); return }
        #expect(ia.0 < ib.1 && ib.0 < ia.1, "a and b should overlap in time")
        #expect(try FileSystem.readText(tmp.sub("b/stages/join/x")) == "ab")
        // With -j 1 they are serialised.
        let r1 = try StageRunner(stages: [sleeper("a"), sleeper("b"), join], buildDir: BuildDirectory(tmp.sub("c")), downloadCache: tmp.sub("dl"))
        opts.jobs = 1
        _ = try r1.run(opts)
        guard let ja = counter.intervals["a"], let jb = counter.intervals["b"] else { return }
        #expect(ja.1 <= jb.0 || jb.1 <= ja.0)
    }

    @Test func graphErrors() throws {
        let a = Stage(name: "a", summary: "", dependencies: ["b"]) { _ in }
        let b = Stage(name: "b", summary: "", dependencies: ["a"]) { _ in }
        #expect { try StageRunner(stages: [a, b], buildDir: BuildDirectory("/tmp/x"), downloadCache: "/tmp/y") } throws: {
            "\($0)".contains("cycle")
        }
        let c = Stage(name: "c", summary: "", dependencies: ["zz"]) { _ in }
        #expect { try StageRunner(stages: [c], buildDir: BuildDirectory("/tmp/x"), downloadCache: "/tmp/y") } throws: {
            "\($0)" == "stage 'c' depends on unknown stage 'zz'"
        }
    }

    @Test func placeholderStagesAreReportedNotRun() throws {
        let tmp = try TempDir("ph")
        let real = Stage(name: "real", summary: "") { ctx in try FileSystem.writeAtomically(ctx.outputDir + "/x", "1") }
        let ph = Stage.placeholder(name: "later", summary: "", dependencies: ["real"], reason: "issue 99")
        let after = Stage(name: "after", summary: "", dependencies: ["later"]) { _ in }
        let r = try StageRunner(stages: [real, ph, after], buildDir: BuildDirectory(tmp.sub("b")), downloadCache: tmp.sub("dl"))
        let s = try r.run()
        let o = Dictionary(uniqueKeysWithValues: s.results.map { ($0.name, $0.outcome) })
        #expect(ran(o["real"]))
        #expect(o["later"] == .notImplemented(reason: "issue 99"))
        #expect(o["after"] == .notRun(reason: "needs 'later', which is not implemented yet"))
        #expect(!s.failed)
        let plan = try r.plan()
        #expect(plan[1].state == .notImplemented(reason: "issue 99"))
    }

    /// Directory snapshots are only trusted for entries older than 2 s, so this test
    /// waits that long once, then checks that every kind of change is still seen.
    @Test func directorySnapshotsSeeEveryChange() throws {
        let f = try Fixture()
        _ = try f.runner().run()
        Thread.sleep(forTimeInterval: 2.2)
        #expect(ran(f.outcomes(try f.runner().run(RunOptions.forced))["source"]))  // saves the snapshot
        let snaps = try FileSystem.listDirectory(f.buildDir.snapshotsDir)
        #expect(snaps.count == 1)
        #expect(try f.runner().run().results.allSatisfy { $0.outcome == .cached })
        let changes: [(String, () throws -> Void)] = [
            ("edit", { try f.tmp.write("inputs/dir/sub/b", "B") }),
            ("add", { try f.tmp.write("inputs/dir/sub/c", "c") }),
            ("remove", { _ = unlink(f.tmp.sub("inputs/dir/a")) }),
            ("rename", { _ = rename(f.tmp.sub("inputs/dir/sub/c"), f.tmp.sub("inputs/dir/sub/d")) }),
            ("chmod", { _ = chmod(f.tmp.sub("inputs/dir/sub/b"), 0o600) }),
        ]
        for (i, (what, change)) in changes.enumerated() {
            if i == 1 {
                // Age the tree again so "add" is checked against a valid snapshot too
                // (it is seen through the parent directory's mtime).
                Thread.sleep(forTimeInterval: 2.2)
                _ = try f.runner().run(RunOptions.forced)
                #expect(try f.runner().run().results.allSatisfy { $0.outcome == .cached })
            }
            try change()
            #expect(ran(f.outcomes(try f.runner().run())["source"]), "\(what) was not noticed")
        }
    }
}

/// The per-directory snapshot check on a deeper tree: every change below must be seen,
/// however deep, and the prefetch started ahead of the run must agree with it.
@Suite struct DirectorySnapshotTests {
    /// inputs/tree/{a,b}/{x,y}/f{0,1,2}, aged past the 2 s racy window, snapshot saved.
    func agedFixture() throws -> (TempDir, StageRunner, Counter) {
        let tmp = try TempDir("snap")
        for d in ["a", "b"] { for s in ["x", "y"] { for i in 0..<3 { try tmp.write("tree/\(d)/\(s)/f\(i)", "\(d)\(s)\(i)\n") } } }
        try tmp.write("tree/top", "top")
        let counter = Counter()
        let tree = tmp.sub("tree")
        let stage = Stage(name: "s", summary: "", inputs: StageInputs(paths: [tree])) { ctx in
            counter.hit("s")
            try FileSystem.writeAtomically(ctx.outputDir + "/x", "1")
        }
        let runner = try StageRunner(stages: [stage], buildDir: BuildDirectory(tmp.sub("build")), downloadCache: tmp.sub("dl"))
        Thread.sleep(forTimeInterval: 2.2)
        _ = try runner.run()
        #expect(try FileSystem.listDirectory(runner.buildDir.snapshotsDir).count == 1)
        #expect(try runner.run().results.map(\.outcome) == [.cached])
        return (tmp, runner, counter)
    }

    static let changes = [
        "in-place edit", "same size, mtime restored", "deep add", "deep remove", "directory renamed",
        "directories swapped", "directory replaced by symlink", "chmod deep", "empty directory added",
    ]

    /// Writes in place (same inode, directory untouched), like an editor that does not
    /// replace the file.
    static func overwrite(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY)
        _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    }

    static func apply(_ change: String, _ t: TempDir) throws {
        switch change {
        case "in-place edit": overwrite(t.sub("tree/b/y/f2"), "changed\n")
        case "same size, mtime restored":
            let p = t.sub("tree/a/x/f1")
            var st = stat()
            _ = lstat(p, &st)
            overwrite(p, "AX1\n")
            var times = [st.st_atim, st.st_mtim]
            _ = utimensat(AT_FDCWD, p, &times, AT_SYMLINK_NOFOLLOW)
            var after = stat()
            _ = lstat(p, &after)
            #expect(after.st_size == st.st_size && after.st_mtim.tv_nsec == st.st_mtim.tv_nsec && after.st_ino == st.st_ino)
        case "deep add": try t.write("tree/a/y/new", "n")
        case "deep remove": _ = unlink(t.sub("tree/b/x/f0"))
        case "directory renamed": _ = rename(t.sub("tree/a/x"), t.sub("tree/a/z"))
        case "directories swapped":
            _ = rename(t.sub("tree/a"), t.sub("tree/tmp"))
            _ = rename(t.sub("tree/b"), t.sub("tree/a"))
            _ = rename(t.sub("tree/tmp"), t.sub("tree/b"))
        case "directory replaced by symlink":
            _ = rename(t.sub("tree/b/y"), t.sub("y-moved"))
            _ = symlink(t.sub("y-moved"), t.sub("tree/b/y"))
        case "chmod deep": _ = chmod(t.sub("tree/a/y/f0"), 0o600)
        case "empty directory added": _ = mkdir(t.sub("tree/b/x/empty"), 0o755)
        default: Issue.record("unknown change \(change)")
        }
    }

    /// Each case ages its own tree (2.2 s); the cases run in parallel.
    @Test(arguments: changes, [false, true])
    func everyKindOfChangeIsSeen(_ change: String, prefetch: Bool) throws {
        let (tmp, runner, counter) = try agedFixture()
        try DirectorySnapshotTests.apply(change, tmp)
        if prefetch { SnapshotPrefetch.start(buildDir: runner.buildDir) }
        #expect(try runner.run().results.map(\.outcome) != [.cached], "\(change) was not noticed (prefetch: \(prefetch))")
        #expect(counter.count("s") == 2)
    }

    @Test func prefetchedCheckIsUsedAndSnapshotsArePruned() throws {
        let (tmp, runner, counter) = try agedFixture()
        // A stale snapshot (an input no stage declares any more) is pruned by a full run.
        let stale = runner.buildDir.snapshotsDir + "/stale.v2"
        try FileSystem.writeAtomically(stale, "x")
        SnapshotPrefetch.start(buildDir: runner.buildDir)
        #expect(try runner.run().results.map(\.outcome) == [.cached])
        #expect(!FileSystem.exists(stale))
        #expect(counter.count("s") == 1)
        // A result is used once: a change after the prefetched run is still seen.
        try tmp.write("tree/top", "TOP")
        #expect(try runner.run().results.map(\.outcome) != [.cached])
    }

    /// Truncated, or a name's NUL overwritten (names are passed to the kernel in place).
    @Test(arguments: ["truncated", "unterminated name"])
    func corruptSnapshotFallsBackToAWalk(_ damage: String) throws {
        let (tmp, runner, counter) = try agedFixture()
        let snaps = try FileSystem.listDirectory(runner.buildDir.snapshotsDir)
        for name in snaps {
            let p = runner.buildDir.snapshotsDir + "/" + name
            var bytes = try FileSystem.readFile(p)
            if damage == "truncated" { bytes.removeLast(5) } else { bytes[bytes.count - 1] = 0x41 }
            try FileSystem.writeAtomically(p, bytes)
        }
        #expect(try runner.run().results.map(\.outcome) == [.cached])  // re-walked, same digest
        try tmp.write("tree/a/x/f0", "other\n")
        #expect(try runner.run().results.map(\.outcome) != [.cached])
        #expect(counter.count("s") == 2)
    }
}

extension RunOptions {
    static var forced: RunOptions {
        var o = RunOptions()
        o.force = true
        return o
    }
}
