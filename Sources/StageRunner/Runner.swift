import Basics
import CLinux
import Foundation

public struct RunOptions: Sendable {
    public var force = false
    /// Rerun this stage and everything downstream of it.
    public var from: String?
    /// Run only this stage (even if cached); its dependencies must have been built.
    public var only: String?
    public var dryRun = false
    public var jobs = ProcessInfo.processInfo.activeProcessorCount
    /// Run only this stage and its dependencies.
    public var restrictTo: String?
    public init() {}
}

public enum StageState: Sendable, Equatable {
    case cached
    case stale(reasons: [String])
    case notImplemented(reason: String)
    /// Cannot run: a dependency is not implemented or failed.
    case blocked(reason: String)
}

public struct PlanEntry: Sendable {
    public var name: String
    public var summary: String
    public var dependencies: [String]
    public var state: StageState
    public var record: StageRecord?
}

public enum StageOutcome: Sendable, Equatable {
    case ran(seconds: Double)
    case cached
    case failed(message: String)
    case notRun(reason: String)
    case notImplemented(reason: String)
    case wouldRun(reasons: [String])
}

public struct StageResult: Sendable {
    public var name: String
    public var outcome: StageOutcome
    public var logPath: String
}

public struct RunSummary: Sendable {
    public var results: [StageResult]
    public var seconds: Double
    public var failed: Bool { results.contains { if case .failed = $0.outcome { true } else { false } } }
    public var notImplemented: [StageResult] {
        results.filter { if case .notImplemented = $0.outcome { true } else { false } }
    }
}

public struct StageGraphError: UserError {
    public var message: String
    public var exitCode: Int32 { ExitStatus.usage }
    public var description: String { message }
}

/// Runs a stage graph incrementally: fingerprints inputs, skips up-to-date stages,
/// commits outputs atomically, runs independent stages in parallel.
public final class StageRunner: @unchecked Sendable {
    public let stages: [Stage]
    public let buildDir: BuildDirectory
    public let downloadCache: String
    /// Called for each finished stage (from worker threads) — the CLI prints a line.
    public var onResult: (@Sendable (StageResult) -> Void)?
    public var onProgress: (@Sendable (String, UInt64, UInt64) -> Void)?

    private let byName: [String: Stage]
    private let order: [String]

    public init(stages: [Stage], buildDir: BuildDirectory, downloadCache: String) throws {
        self.stages = stages
        self.buildDir = buildDir
        self.downloadCache = downloadCache
        var map: [String: Stage] = [:]
        for s in stages {
            guard map[s.name] == nil else { throw StageGraphError(message: "stage '\(s.name)' is defined twice") }
            map[s.name] = s
        }
        for s in stages {
            for d in s.dependencies where map[d] == nil {
                throw StageGraphError(message: "stage '\(s.name)' depends on unknown stage '\(d)'")
            }
        }
        byName = map
        order = try StageRunner.topologicalOrder(stages, map)
    }

    static func topologicalOrder(_ stages: [Stage], _ map: [String: Stage]) throws -> [String] {
        var out: [String] = []
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        func visit(_ n: String, _ path: [String]) throws {
            if state[n] == 2 { return }
            if state[n] == 1 { throw StageGraphError(message: "stage dependency cycle: " + (path + [n]).joined(separator: " -> ")) }
            state[n] = 1
            for d in map[n]?.dependencies ?? [] { try visit(d, path + [n]) }
            state[n] = 2
            out.append(n)
        }
        for s in stages { try visit(s.name, []) }
        return out
    }

    /// Stage names in dependency order.
    public var stageOrder: [String] { order }

    public func upstream(of stage: String) -> Set<String> {
        var result: Set<String> = [stage]
        for n in order.reversed() where result.contains(n) {
            for d in byName[n]?.dependencies ?? [] { result.insert(d) }
        }
        return result
    }

    public func downstream(of stage: String) -> Set<String> {
        var result: Set<String> = [stage]
        for n in order where byName[n]?.dependencies.contains(where: result.contains) == true {
            result.insert(n)
        }
        return result
    }

    private func validate(_ options: RunOptions) throws {
        for n in [options.from, options.only].compactMap({ $0 }) where byName[n] == nil {
            var msg = "unknown stage '\(n)'; stages: " + order.joined(separator: ", ")
            if let near = Suggest.nearest(n, in: order) {
                msg = "unknown stage '\(n)'; did you mean '\(near)'? Stages: " + order.joined(separator: ", ")
            }
            throw StageGraphError(message: msg)
        }
    }

    // MARK: fingerprints

    func components(of stage: Stage, depDigests: [String: String], hasher: InputHasher) throws -> [String: String] {
        var c: [String: String] = [:]
        for p in stage.inputs.paths { c["path:" + p] = try hasher.digest(p) }
        for (k, v) in stage.inputs.keys { c["key:" + k] = SHA256.hex(v) }
        for (k, v) in stage.inputs.tools { c["tool:" + k] = v }
        for (k, v) in stage.inputs.extra { c["extra:" + k] = SHA256.hex(v) }
        for (d, digest) in depDigests { c["dep:" + d] = digest }
        return c
    }

    static func fingerprint(_ c: [String: String]) -> String {
        let h = SHA256()
        for k in c.keys.sorted() {
            h.updateField(k)
            h.updateField(c[k] ?? "")
        }
        return h.hexDigest()
    }

    static func describeChanges(old: [String: String], new: [String: String]) -> [String] {
        var reasons: [String] = []
        for k in new.keys.sorted() {
            guard let o = old[k] else { reasons.append("new input \(describe(k))"); continue }
            if o != new[k] {
                if k.hasPrefix("tool:") {
                    reasons.append("tool \(k.dropFirst(5)) changed (\(o) -> \(new[k] ?? ""))")
                } else {
                    reasons.append("\(describe(k)) changed")
                }
            }
        }
        for k in old.keys.sorted() where new[k] == nil { reasons.append("input \(describe(k)) removed") }
        return reasons
    }

    static func describe(_ key: String) -> String {
        if key.hasPrefix("path:") { return "input \(key.dropFirst(5))" }
        if key.hasPrefix("key:") { return "board key \(key.dropFirst(4))" }
        if key.hasPrefix("tool:") { return "tool \(key.dropFirst(5))" }
        if key.hasPrefix("dep:") { return "output of upstream stage \(key.dropFirst(4))" }
        if key.hasPrefix("extra:") { return "setting \(key.dropFirst(6))" }
        return key
    }

    /// Why the values a stage resolved in its last run (see `StageContext.resolved`) no
    /// longer hold; empty when they all do. Cheap: each check reads local state only.
    func resolvedChanges(_ stage: Stage, record: StageRecord) -> [String] {
        let checks = stage.inputs.resolvedChecks
        guard let recorded = record.resolved else {
            if checks.isEmpty { return [] }
            return ["the done record predates resolved-input tracking (" + checks.keys.sorted().map { $0 + ":" }.joined(separator: ", ")
                    + " inputs); rebuilding once to record what the stage uses"]
        }
        var reasons: [String] = []
        for key in recorded.keys.sorted(by: ByteOrder.less) {
            let value = recorded[key] ?? ""
            guard let colon = key.firstIndex(of: ":"), let check = checks[String(key[..<colon])] else {
                reasons.append("resolved input \(key) has no check in this stage any more")
                continue
            }
            do {
                let now = try check.current(String(key[key.index(after: colon)...]), downloadCache)
                if now != value { reasons.append(check.explain(key, value, now, downloadCache)) }
            } catch {
                reasons.append("resolved input \(key) could not be checked: \((error as? any UserError)?.description ?? String(describing: error))")
            }
        }
        return reasons
    }

    // MARK: plan

    /// What `make` would do, without running anything.
    public func plan(_ options: RunOptions = RunOptions()) throws -> [PlanEntry] {
        try validate(options)
        let cache = StatCache(path: buildDir.statCachePath)
        let hasher = InputHasher(cache: cache, snapshotDir: buildDir.snapshotsDir)
        let forced = forcedSet(options)
        var states: [String: StageState] = [:]
        var entries: [PlanEntry] = []
        let records = RecordCache(buildDir)
        for name in order {
            guard let stage = byName[name] else { continue }
            let record = records.get(name)
            let state = try evaluate(stage, record: record, forced: forced.contains(name), depStates: states, hasher: hasher, records: records)
            states[name] = state
            entries.append(PlanEntry(name: name, summary: stage.summary, dependencies: stage.dependencies, state: state, record: record))
        }
        try? cache.save()
        return entries
    }

    private func forcedSet(_ options: RunOptions) -> Set<String> {
        if options.force { return Set(order) }
        if let f = options.from { return downstream(of: f) }
        if let o = options.only { return [o] }
        return []
    }

    /// Decide whether a stage is up to date, given its dependencies' states.
    private func evaluate(_ stage: Stage, record: StageRecord?, forced: Bool, depStates: [String: StageState], hasher: InputHasher, records: RecordCache) throws -> StageState {
        if !stage.implemented { return .notImplemented(reason: stage.notImplementedReason) }
        var upstreamReasons: [String] = []
        for d in stage.dependencies {
            switch depStates[d] {
            case .notImplemented?, .blocked?: return .blocked(reason: "needs '\(d)', which is not implemented yet")
            case .stale?: upstreamReasons.append("upstream stage \(d) will be rebuilt")
            default: break
            }
        }
        if forced { return .stale(reasons: ["forced"]) }
        guard let record else {
            let hadOutputs = FileSystem.exists(buildDir.outputDir(stage.name))
            return .stale(reasons: [hadOutputs ? "no done record (the last run failed or was interrupted)" : "never built"])
        }
        if !upstreamReasons.isEmpty { return .stale(reasons: upstreamReasons) }
        var digests: [String: String] = [:]
        for d in stage.dependencies { digests[d] = records.get(d)?.outputDigest ?? "none" }
        let comps = try components(of: stage, depDigests: digests, hasher: hasher)
        if StageRunner.fingerprint(comps) != record.fingerprint {
            let r = StageRunner.describeChanges(old: record.components, new: comps)
            return .stale(reasons: r.isEmpty ? ["fingerprint changed"] : r)
        }
        let resolved = resolvedChanges(stage, record: record)
        if !resolved.isEmpty { return .stale(reasons: resolved) }
        if let problem = OutputScanner.quickCheck(buildDir.outputDir(stage.name), record.outputs) {
            return .stale(reasons: [problem])
        }
        return .cached
    }

    // MARK: run

    /// Build `stage` and whatever it depends on (nothing downstream).
    public func run(restrictedTo stage: String) throws -> RunSummary {
        var opts = RunOptions()
        opts.restrictTo = stage
        return try run(opts)
    }

    public func run(_ options: RunOptions = RunOptions()) throws -> RunSummary {
        try validate(options)
        let start = Date()
        for d in [buildDir.root, buildDir.stagesDir, buildDir.stateDir, buildDir.logsDir, buildDir.tmpDir, downloadCache] {
            try FileSystem.makeDirectories(d)
        }
        let lockFD = try lockBuildDir()
        defer { close(lockFD) }
        try sweepLeftovers()

        if options.dryRun {
            let plan = try self.plan(options)
            let results = plan.map { e -> StageResult in
                let outcome: StageOutcome
                switch e.state {
                case .cached: outcome = .cached
                case .stale(let r): outcome = .wouldRun(reasons: r)
                case .notImplemented(let r): outcome = .notImplemented(reason: r)
                case .blocked(let r): outcome = .notRun(reason: r)
                }
                return StageResult(name: e.name, outcome: outcome, logPath: buildDir.logPath(e.name))
            }
            return RunSummary(results: results, seconds: Date().timeIntervalSince(start))
        }

        if let only = options.only, let stage = byName[only] {
            for d in stage.dependencies where buildDir.readRecord(d) == nil {
                throw StageGraphError(message: "--only \(only): dependency '\(d)' has not been built; run `osbuild make` (or --from \(d)) first")
            }
        }

        let cache = StatCache(path: buildDir.statCachePath)
        let hasher = InputHasher(cache: cache, snapshotDir: buildDir.snapshotsDir)
        let forced = forcedSet(options)
        var selected: Set<String> = options.only.map { [$0] } ?? Set(order)
        if let target = options.restrictTo { selected = upstream(of: target) }
        let scheduler = Scheduler(order: order.filter(selected.contains), stages: byName, jobs: max(1, options.jobs))
        let records = RecordCache(buildDir)
        scheduler.execute { name, finishedStates in
            let result = self.runOne(name, forced: forced.contains(name), depStates: finishedStates, hasher: hasher, records: records)
            self.onResult?(result.result)
            return result
        }
        try? cache.save()
        let results = order.compactMap { scheduler.results[$0] }
        if options.only == nil, options.restrictTo == nil, results.count == order.count,
           results.allSatisfy({ if case .ran = $0.outcome { true } else { $0.outcome == .cached } }) {
            pruneSnapshots(keeping: hasher.used.all)
        }
        return RunSummary(results: results, seconds: Date().timeIntervalSince(start))
    }

    struct OneResult: Sendable {
        var result: StageResult
        var state: StageState  // as seen by dependents: .cached when up to date after this run
    }

    private func runOne(_ name: String, forced: Bool, depStates: [String: StageState], hasher: InputHasher, records: RecordCache) -> OneResult {
        let log = buildDir.logPath(name)
        guard let stage = byName[name] else {
            return OneResult(result: StageResult(name: name, outcome: .failed(message: "unknown stage"), logPath: log), state: .blocked(reason: "unknown"))
        }
        if !stage.implemented {
            return OneResult(result: StageResult(name: name, outcome: .notImplemented(reason: stage.notImplementedReason), logPath: log),
                             state: .notImplemented(reason: stage.notImplementedReason))
        }
        for d in stage.dependencies {
            switch depStates[d] {
            case .notImplemented?:
                let r = "needs '\(d)', which is not implemented yet"
                return OneResult(result: StageResult(name: name, outcome: .notRun(reason: r), logPath: log), state: .blocked(reason: r))
            case .blocked?:
                let r = "dependency '\(d)' did not complete"
                return OneResult(result: StageResult(name: name, outcome: .notRun(reason: r), logPath: log), state: .blocked(reason: r))
            default: break
            }
        }
        do {
            var digests: [String: String] = [:]
            for d in stage.dependencies {
                guard let r = records.get(d) else { throw MessageError("dependency '\(d)' has no done record") }
                digests[d] = r.outputDigest
            }
            let comps = try components(of: stage, depDigests: digests, hasher: hasher)
            let fp = StageRunner.fingerprint(comps)
            if !forced, let rec = records.get(name), rec.fingerprint == fp, resolvedChanges(stage, record: rec).isEmpty,
               OutputScanner.quickCheck(buildDir.outputDir(name), rec.outputs) == nil {
                return OneResult(result: StageResult(name: name, outcome: .cached, logPath: log), state: .cached)
            }
            let seconds = try execute(stage, components: comps, fingerprint: fp, records: records)
            return OneResult(result: StageResult(name: name, outcome: .ran(seconds: seconds), logPath: log), state: .cached)
        } catch {
            let msg = (error as? any UserError)?.description ?? String(describing: error)
            return OneResult(result: StageResult(name: name, outcome: .failed(message: msg), logPath: log), state: .blocked(reason: msg))
        }
    }

    /// Run the stage body into a temp dir and commit it. The sequence guarantees that
    /// at every instant either the old record + outputs, or no record, are on disk:
    /// remove record -> swap output dirs -> write new record.
    private func execute(_ stage: Stage, components: [String: String], fingerprint: String, records: RecordCache) throws -> Double {
        let t0 = Date()
        let token = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let tmpOut = buildDir.tmpDir + "/" + stage.name + ".out." + token
        let scratch = buildDir.tmpDir + "/" + stage.name + ".scratch." + token
        try FileSystem.makeDirectories(tmpOut)
        try FileSystem.makeDirectories(scratch)
        defer { try? FileSystem.removeTree(scratch) }
        let log = StageLog(path: buildDir.logPath(stage.name))
        log.line("stage \(stage.name): \(stage.summary)")
        for k in components.keys.sorted() { log.line("  input \(k) = \(components[k] ?? "")") }
        var upstream: [String: String] = [:]
        for d in stage.dependencies { upstream[d] = buildDir.outputDir(d) }
        let ctx = StageContext(stageName: stage.name, outputDir: tmpOut, upstream: upstream, scratchDir: scratch,
                               downloadCache: downloadCache, jobs: ProcessInfo.processInfo.activeProcessorCount, log: log, progress: onProgress)
        do {
            try stage.body(ctx)
        } catch {
            log.line("FAILED: \((error as? any UserError)?.description ?? String(describing: error))")
            try? FileSystem.removeTree(tmpOut)
            throw error
        }
        let scan = try OutputScanner.scan(tmpOut)
        let final = buildDir.outputDir(stage.name)
        let old = buildDir.tmpDir + "/" + stage.name + ".old." + token
        try buildDir.removeRecord(stage.name)
        records.set(stage.name, nil)
        if FileSystem.exists(final) { try FileSystem.rename(final, old) }
        try FileSystem.rename(tmpOut, final)
        // Inode numbers survive the directory rename; record them as they are now.
        let committed = scan.outputs.map { o -> StageRecord.Output in
            var o = o
            if o.kind == "file", let st = try? FileSystem.lstat(final + "/" + o.path) {
                o.mtimeNs = st.mtimeSec * 1_000_000_000 + st.mtimeNsec
                o.inode = st.inode
            }
            return o
        }
        let seconds = Date().timeIntervalSince(t0)
        let resolved = ctx.resolvedInputs
        for k in resolved.keys.sorted(by: ByteOrder.less) { log.line("  resolved \(k) = \(resolved[k] ?? "")") }
        let record = StageRecord(stage: stage.name, fingerprint: fingerprint, components: components, resolved: resolved, outputs: committed,
                                 outputDigest: scan.digest, seconds: seconds, finishedAt: Date().timeIntervalSince1970)
        try buildDir.writeRecord(record)
        records.set(stage.name, record)
        try? FileSystem.removeTree(old)
        log.line("done in \(String(format: "%.2f", seconds)) s")
        return seconds
    }

    private func lockBuildDir() throws -> Int32 {
        let path = buildDir.root + "/.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            throw MessageError("another osbuild process is building in \(buildDir.root); wait for it or use -O DIR", exitCode: ExitStatus.environment)
        }
        return fd
    }

    /// Snapshots of inputs no stage declares any more would only cost time: the next
    /// run's prefetch validates every snapshot it finds. Pruned after a complete run.
    private func pruneSnapshots(keeping used: Set<String>) {
        for name in (try? FileSystem.listDirectory(buildDir.snapshotsDir)) ?? [] {
            let p = buildDir.snapshotsDir + "/" + name
            if !used.contains(p) { unlink(p) }
        }
    }

    /// Remove temp outputs of runs that were killed (we hold the build-dir lock, so
    /// nothing in tmp/ belongs to a live run).
    private func sweepLeftovers() throws {
        for name in (try? FileSystem.listDirectory(buildDir.tmpDir)) ?? [] {
            try FileSystem.removeTree(buildDir.tmpDir + "/" + name)
        }
    }

    // MARK: verify / clean

    /// Re-hash every recorded output; returns stage -> problems (empty when all intact).
    public func verifyOutputs() -> [(stage: String, problems: [String])] {
        order.compactMap { name in
            guard let r = buildDir.readRecord(name) else { return nil }
            return (name, OutputScanner.verify(buildDir.outputDir(name), r.outputs))
        }
    }

    public func clean(stage: String?) throws {
        if let stage {
            try validate(RunOptions.only(stage))
            try buildDir.removeRecord(stage)
            try FileSystem.removeTree(buildDir.outputDir(stage))
            try? FileSystem.removeTree(buildDir.logPath(stage))
        } else {
            try FileSystem.removeTree(buildDir.root)
        }
    }
}

extension RunOptions {
    static func only(_ s: String) -> RunOptions {
        var o = RunOptions()
        o.only = s
        return o
    }
}


/// Done records as read during one run or plan: each is decoded once, though dependents
/// read their upstream records too. Kept current as stages commit.
final class RecordCache: @unchecked Sendable {
    private let lock = NSLock()
    private var records: [String: StageRecord?] = [:]
    private let dir: BuildDirectory

    init(_ dir: BuildDirectory) { self.dir = dir }

    func get(_ name: String) -> StageRecord? {
        lock.lock()
        if let r = records[name] { lock.unlock(); return r }
        lock.unlock()
        let r = dir.readRecord(name)
        lock.lock()
        defer { lock.unlock() }
        if let newer = records[name] { return newer }  // committed meanwhile
        records[name] = .some(r)
        return r
    }

    func set(_ name: String, _ r: StageRecord?) {
        lock.lock()
        records[name] = .some(r)
        lock.unlock()
    }
}

/// Runs stages as soon as their dependencies have finished, at most `jobs` at a time,
/// on a pool of `jobs` threads (the caller's included). A worker that finishes a stage
/// takes the next ready one itself, so a chain of cached stages costs no thread
/// hand-offs (each one is a scheduler wake-up, milliseconds on a loaded machine).
final class Scheduler: @unchecked Sendable {
    private let order: [String]
    private let stages: [String: Stage]
    private let jobs: Int
    private let cond = NSCondition()
    private(set) var results: [String: StageResult] = [:]
    private var states: [String: StageState] = [:]
    private var pending: [String] = []
    private var running = 0
    private var liveWorkers = 0

    init(order: [String], stages: [String: Stage], jobs: Int) {
        self.order = order
        self.stages = stages
        self.jobs = jobs
    }

    func execute(_ work: @escaping @Sendable (String, [String: StageState]) -> StageRunner.OneResult) {
        cond.lock()
        pending = order
        let extra = max(0, min(jobs, order.count) - 1)
        liveWorkers = extra
        cond.unlock()
        let inRun = Set(order)
        for _ in 0..<extra {
            let t = Thread { [self] in
                workLoop(inRun, work)
                cond.lock()
                liveWorkers -= 1
                cond.broadcast()
                cond.unlock()
            }
            t.stackSize = 8 << 20
            t.start()
        }
        workLoop(inRun, work)
        cond.lock()
        while liveWorkers > 0 { cond.wait() }
        cond.unlock()
    }

    private func workLoop(_ inRun: Set<String>, _ work: @Sendable (String, [String: StageState]) -> StageRunner.OneResult) {
        cond.lock()
        defer { cond.unlock() }
        while !pending.isEmpty {
            // Dependencies outside this run (with --only) count as satisfied.
            let ready = pending.firstIndex { name in
                (stages[name]?.dependencies ?? []).allSatisfy { !inRun.contains($0) || states[$0] != nil }
            }
            guard let i = ready else {
                // Nothing running means nothing can become ready (an acyclic, validated
                // graph always drains `pending` before this point).
                if running == 0 { break }
                cond.wait()
                continue
            }
            let name = pending.remove(at: i)
            running += 1
            let snapshot = states
            cond.unlock()
            let r = work(name, snapshot)
            cond.lock()
            results[name] = r.result
            states[name] = r.state
            running -= 1
            cond.broadcast()
        }
        cond.broadcast()
    }
}
