import Basics
import Foundation

/// defconfig + fragments -> .config, the way `merge_config.sh -m` followed by
/// `make olddefconfig` does it, with a report of overrides and of requested values that
/// did not survive (and why).
public enum KconfigMerge {
    public struct Override: Sendable, Hashable {
        public var symbol: String
        public var previous: ConfigAssignment
        public var new: ConfigAssignment
    }

    public struct Dropped: Sendable, Hashable {
        public var symbol: String
        public var requested: ConfigAssignment
        /// the final .config line ("" when the symbol is not written)
        public var actualLine: String
        public var reason: String
    }

    public struct Report: Sendable {
        public var overrides: [Override] = []
        public var dropped: [Dropped] = []
        public var warnings: [String] = []
        public var probesRun = 0
        public var probesCached = 0
        public var baseName = ""
    }

    /// The base configuration: a defconfig target name known to the tree (`defconfig`,
    /// `x86_64_defconfig`, ...) or a file.
    public enum Base: Sendable {
        case none
        case target(String)
        case file(String)

        /// A path when it names an existing file, else a target name.
        public static func parse(_ s: String?) -> Base {
            guard let s, !s.isEmpty else { return .none }
            if s.contains("/") || FileSystem.exists(s) { return .file(s) }
            return .target(s)
        }
    }

    public static func run(
        kernelSource: String, arch: String, defconfig: Base, fragments: [String],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        crossCompile: String? = nil, probeCacheDirectory: String? = KconfigOptions.defaultCacheDirectory()
    ) throws -> (config: String, report: Report) {
        let opts = KconfigOptions(
            kernelSource: kernelSource, arch: arch, crossCompile: crossCompile, probeCacheDirectory: probeCacheDirectory,
            environment: environment)
        let tree = try KconfigTree.load(opts)
        return try run(tree: tree, options: opts, defconfig: defconfig, fragments: fragments)
    }

    public static func run(tree: KconfigTree, options: KconfigOptions, defconfig: Base, fragments: [String]) throws -> (config: String, report: Report) {
        var report = Report()
        report.probesRun = tree.probeStats.executed
        report.probesCached = tree.probeStats.cached
        // Read every fragment first so a missing one fails before any work.
        var frags: [(path: String, assignments: [ConfigAssignment])] = []
        for f in fragments {
            let text: String
            do { text = try FileSystem.readText(f) } catch { throw KconfigError.io(path: f, message: "cannot read fragment: \(error)") }
            frags.append((f, ConfigText.assignments(text, file: f)))
        }

        // 1. the base .config (make <defconfig> / cp FILE .config && make olddefconfig)
        let baseAssignments: [ConfigAssignment]
        var asDefconfig = false
        switch defconfig {
        case .none:
            baseAssignments = []
            report.baseName = "(all defaults)"
        case .file(let p):
            let text: String
            do { text = try FileSystem.readText(p) } catch { throw KconfigError.io(path: p, message: "cannot read defconfig: \(error)") }
            baseAssignments = ConfigText.assignments(text, file: p)
            report.baseName = p
        case .target(let name):
            var n = name
            if n == "defconfig" {
                // KBUILD_DEFCONFIG: x86 uses $(ARCH)_defconfig, the others "defconfig"
                n = options.srcarch == "x86" ? (options.arch == "x86" ? "x86_64" : options.arch) + "_defconfig" : "defconfig"
            }
            let path = tree.sourceTree + "/arch/\(options.srcarch)/configs/\(n)"
            guard FileSystem.exists(path) else {
                throw KconfigError.usage("no defconfig '\(name)' for \(options.arch) (looked for arch/\(options.srcarch)/configs/\(n))")
            }
            baseAssignments = ConfigText.assignments(try FileSystem.readText(path), file: "arch/\(options.srcarch)/configs/\(n)")
            asDefconfig = true
            report.baseName = "arch/\(options.srcarch)/configs/\(n)"
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (baseText, w1) = tree.resolve(baseAssignments, asDefconfig: asDefconfig)
        if ProbeRunner.debug { FileHandleDebug.write("kconfig: resolve+write \((DispatchTime.now().uptimeNanoseconds - t0) / 1_000_000) ms\n") }
        report.warnings += w1
        if frags.isEmpty { return (baseText, report) }

        // Origins of the base lines: the defconfig line that asked for it, else the
        // generated base .config.
        var baseOrigin: [String: ConfigOrigin] = [:]
        for a in baseAssignments { baseOrigin[a.name] = a.origin }
        var merged: [ConfigAssignment] = ConfigText.assignments(baseText, file: "base .config").map { a in
            var a = a
            if let o = baseOrigin[a.name] { a.origin = o }
            return a
        }

        // 2. merge_config.sh: a fragment's symbol replaces every earlier line for it; the
        //    fragment is appended.
        for (_, assignments) in frags {
            var index: [String: [Int]] = [:]
            for (i, a) in merged.enumerated() { index[a.name, default: []].append(i) }
            var remove = Set<Int>()
            for a in assignments {
                guard let idxs = index[a.name] else { continue }
                let live = idxs.filter { !remove.contains($0) }
                guard let last = live.last else { continue }
                if merged[last].line != a.line {
                    report.overrides.append(Override(symbol: a.name, previous: merged[last], new: a))
                }
                remove.formUnion(live)
            }
            merged = merged.enumerated().filter { !remove.contains($0.offset) }.map(\.element) + assignments
        }

        // 3. make olddefconfig
        let (text, w2) = tree.resolve(merged)
        report.warnings += w2

        // 4. requested values that did not survive (last request per symbol)
        var requested: [String: ConfigAssignment] = [:]
        var order: [String] = []
        for (_, assignments) in frags {
            for a in assignments {
                if requested[a.name] == nil { order.append(a.name) }
                requested[a.name] = a
            }
        }
        for name in order {
            guard let r = requested[name] else { continue }
            if let reason = tree.explain(name, requested: r.value) {
                report.dropped.append(Dropped(symbol: name, requested: r, actualLine: tree.configLine(name), reason: reason))
            }
        }
        return (text, report)
    }
}
