import Basics
import Foundation
import StageRunner
import Testing
import TestSupport

/// A value outside the build that a stage resolves while it runs (like the file an apt
/// pin names), changeable between builds; `reads` counts plan-time checks.
final class Pins: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String: String]
    private(set) var reads = 0
    var failWith: String?
    init(_ v: [String: String]) { values = v }
    subscript(k: String) -> String? {
        get { lock.lock(); defer { lock.unlock() }; return values[k] }
        set { lock.lock(); values[k] = newValue; lock.unlock() }
    }
    func read(_ k: String) throws -> String? {
        lock.lock(); defer { lock.unlock() }
        reads += 1
        if let failWith { throw MessageError(failWith) }
        return values[k]
    }
}

/// fetch (resolves "pin:pkg" from `pins` and writes it out) -> use (copies it).
struct ResolvedFixture {
    let tmp: TempDir
    let pins = Pins(["pkg": "pkg_1.0.deb"])
    let counter = Counter()

    init() throws { tmp = try TempDir("resolved") }

    var buildDir: BuildDirectory { BuildDirectory(tmp.sub("build")) }

    func runner() throws -> StageRunner {
        let pins = pins, counter = counter
        let check = ResolvedInputCheck(current: { name, _ in try pins.read(name) })
        let fetch = Stage(name: "fetch", summary: "resolve and fetch", inputs: StageInputs(keys: ["package": "pkg"], resolvedChecks: ["pin": check])) { ctx in
            counter.hit("fetch")
            guard let file = pins["pkg"] else { throw MessageError("pkg is not pinned") }
            ctx.resolved("pin:pkg", file)
            try FileSystem.writeAtomically(ctx.outputDir + "/file", file)
        }
        let use = Stage(name: "use", summary: "downstream", dependencies: ["fetch"]) { ctx in
            counter.hit("use")
            try FileSystem.writeAtomically(ctx.outputDir + "/copy", try FileSystem.readFile(try ctx.input("fetch") + "/file"))
        }
        return try StageRunner(stages: [fetch, use], buildDir: buildDir, downloadCache: tmp.sub("dl"))
    }

    func outcomes(_ s: RunSummary) -> [String: StageOutcome] {
        Dictionary(uniqueKeysWithValues: s.results.map { ($0.name, $0.outcome) })
    }

    func fetchState() throws -> StageState { try runner().plan()[0].state }
}

@Suite struct ResolvedInputTests {
    @Test func recordedAndFreshOnSecondRun() throws {
        let f = try ResolvedFixture()
        #expect(f.outcomes(try f.runner().run()).values.allSatisfy(ran))
        #expect(f.buildDir.readRecord("fetch")?.resolved == ["pin:pkg": "pkg_1.0.deb"])
        #expect(f.buildDir.readRecord("use")?.resolved == [:])
        let readsBefore = f.pins.reads
        #expect(f.outcomes(try f.runner().run()).values.allSatisfy { $0 == .cached })
        #expect(try f.runner().plan().allSatisfy { $0.state == .cached })
        #expect(f.counter.count("fetch") == 1 && f.counter.count("use") == 1)
        // The check ran (once for make, once for plan): the cached verdict was not a guess.
        #expect(f.pins.reads == readsBefore + 2)
        #expect(try FileSystem.readText(f.buildDir.logPath("fetch")).contains("resolved pin:pkg = pkg_1.0.deb"))
    }

    @Test func changedValueMakesStaleWithExactReasonAndReruns() throws {
        let f = try ResolvedFixture()
        _ = try f.runner().run()
        f.pins["pkg"] = "pkg_2.0.deb"
        #expect(try f.fetchState() == .stale(reasons: ["resolved input pin:pkg changed: pkg_1.0.deb -> pkg_2.0.deb"]))
        // Dependents follow through the output digest, as for any other input.
        #expect(try f.runner().plan()[1].state == .stale(reasons: ["upstream stage fetch will be rebuilt"]))
        let o = f.outcomes(try f.runner().run())
        #expect(ran(o["fetch"]) && ran(o["use"]))
        #expect(try FileSystem.readText(f.buildDir.outputDir("use") + "/copy") == "pkg_2.0.deb")
        #expect(f.buildDir.readRecord("fetch")?.resolved == ["pin:pkg": "pkg_2.0.deb"])
        #expect(f.outcomes(try f.runner().run()).values.allSatisfy { $0 == .cached })
    }

    @Test func vanishedValueAndFailingCheckMakeStale() throws {
        let f = try ResolvedFixture()
        _ = try f.runner().run()
        f.pins["pkg"] = nil
        #expect(try f.fetchState() == .stale(reasons: ["resolved input pin:pkg (pkg_1.0.deb) no longer resolves"]))
        f.pins["pkg"] = "pkg_1.0.deb"
        #expect(try f.fetchState() == .cached)
        f.pins.failWith = "lock file is corrupt"
        #expect(try f.fetchState() == .stale(reasons: ["resolved input pin:pkg could not be checked: lock file is corrupt"]))
        // make agrees with plan: the stage runs (and here its body sees the real value).
        f.pins.failWith = nil
        #expect(try f.fetchState() == .cached)
    }

    @Test func oldRecordWithoutResolvedInputsIsStaleOnce() throws {
        let f = try ResolvedFixture()
        _ = try f.runner().run()
        // A record as osbuild wrote it before resolved inputs existed: no "resolved" field.
        for stage in ["fetch", "use"] {
            let path = f.buildDir.recordPath(stage)
            var json = try #require(try JSONSerialization.jsonObject(with: Data(try FileSystem.readFile(path))) as? [String: Any])
            json["resolved"] = nil
            try FileSystem.writeAtomically(path, [UInt8](try JSONSerialization.data(withJSONObject: json)))
            #expect(f.buildDir.readRecord(stage)?.resolved == nil)
        }
        let plan = try f.runner().plan()
        #expect(plan[0].state == .stale(reasons: ["the done record predates resolved-input tracking (pin: inputs); rebuilding once to record what the stage uses"]))
        // A stage that declares no resolved checks does not care.
        let o = f.outcomes(try f.runner().run())
        #expect(ran(o["fetch"]))
        #expect(o["use"] == .cached)  // same output: early cutoff
        #expect(f.buildDir.readRecord("fetch")?.resolved == ["pin:pkg": "pkg_1.0.deb"])
        #expect(f.outcomes(try f.runner().run()).values.allSatisfy { $0 == .cached })
    }

    @Test func recordedKeyWithoutACheckIsStale() throws {
        let f = try ResolvedFixture()
        _ = try f.runner().run()
        let path = f.buildDir.recordPath("fetch")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(try FileSystem.readFile(path))) as? [String: Any])
        json["resolved"] = ["pin:pkg": "pkg_1.0.deb", "url:x": "y"]
        try FileSystem.writeAtomically(path, [UInt8](try JSONSerialization.data(withJSONObject: json)))
        #expect(try f.fetchState() == .stale(reasons: ["resolved input url:x has no check in this stage any more"]))
    }
}
