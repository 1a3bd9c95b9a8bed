import ArgumentParser
import Basics
import Foundation
import Kconfig

struct MergeKconfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge-kconfig",
        abstract: "Merge a defconfig and fragments into a .config (merge_config.sh -m + make olddefconfig).")

    @Option(help: "Kernel source tree.") var kernelSrc: String
    @Option(help: "Kernel ARCH (x86_64, arm64, ...).") var arch: String
    @Option(help: "Base: a defconfig name of the tree (defconfig, x86_64_defconfig) or a file.") var defconfig: String?
    @Option(help: "CROSS_COMPILE prefix (default: $CROSS_COMPILE); the probes run its compiler.") var crossCompile: String?
    @Option(name: .shortAndLong, help: "Output .config.") var output: String
    @Option(help: "Also write the minimal defconfig of the result (make savedefconfig).") var savedefconfig: String?
    @Flag(help: "Exit 1 when a requested value did not survive.") var strict = false
    @Flag(help: "Do not read or write the probe cache.") var noCache = false
    @Argument(help: "Config fragments, merged in order (later ones win).") var fragments: [String] = []

    func run() throws {
        try runReportingErrors {
            let opts = KconfigOptions(
                kernelSource: kernelSrc, arch: arch, crossCompile: crossCompile,
                probeCacheDirectory: noCache ? nil : KconfigOptions.defaultCacheDirectory())
            let tree = try KconfigTree.load(opts)
            let (text, report) = try KconfigMerge.run(tree: tree, options: opts, defconfig: .parse(defconfig), fragments: fragments)
            try FileSystem.writeAtomically(output, text)
            if let savedefconfig {
                let (minimal, _) = tree.savedefconfig(ConfigText.assignments(text, file: output))
                try FileSystem.writeAtomically(savedefconfig, minimal)
            }
            let c = Console.shared
            for o in report.overrides {
                c.line("override CONFIG_\(o.symbol): \(o.previous.origin) -> \(o.new.origin): \(o.previous.line) -> \(o.new.line)")
            }
            for d in report.dropped {
                let got = d.actualLine.isEmpty ? "(not in .config)" : d.actualLine
                c.line(c.paint("not applied ", .yellow) + "\(d.requested.line) (\(d.requested.origin)): got \(got): \(d.reason)")
            }
            let n = text.split(separator: "\n").count { $0.hasPrefix("CONFIG_") || ($0.hasPrefix("# CONFIG_") && $0.hasSuffix(" is not set")) }
            c.line("wrote \(output): \(n) symbols from \(report.baseName) + \(fragments.count) fragment(s); "
                + "\(report.overrides.count) override(s), \(report.dropped.count) requested value(s) not applied; "
                + "probes: \(report.probesRun) run, \(report.probesCached) cached")
            if strict && !report.dropped.isEmpty { throw ExitCode(1) }
        }
    }
}

struct VerifyKconfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-kconfig",
        abstract: "Check that a .config has every value the fragments request, and say why not.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case human, github, json }

    @Option(help: "Kernel source tree (enables reasons); without it the check is textual.") var kernelSrc: String?
    @Option(help: "Kernel ARCH (needed with --kernel-src).") var arch: String?
    @Option(help: "CROSS_COMPILE prefix (default: $CROSS_COMPILE).") var crossCompile: String?
    @Option(help: "The .config to check.") var config: String
    @Flag(help: "Exit 1 when any requested value is missing.") var strict = false
    @Option(help: "Output format: human, github (workflow annotations) or json.") var format: Format = .human
    @Argument(help: "Config fragments with the requested values.") var fragments: [String] = []

    func run() throws {
        try runReportingErrors {
            if kernelSrc != nil && arch == nil { throw KconfigError.usage("--kernel-src needs --arch") }
            if fragments.isEmpty { throw KconfigError.usage("give at least one fragment to verify against") }
            var tree: KconfigTree? = nil
            if let kernelSrc, let arch {
                tree = try KconfigTree.load(KconfigOptions(kernelSource: kernelSrc, arch: arch, crossCompile: crossCompile))
            }
            let mism = try KconfigVerify.run(config: config, fragments: fragments, tree: tree)
            print(Self.render(mism, format: format, strict: strict, config: config), terminator: "")
            if strict && !mism.isEmpty { throw ExitCode(1) }
        }
    }

    static func render(_ ms: [KconfigVerify.Mismatch], format: Format, strict: Bool, config: String) -> String {
        var out = ""
        func got(_ m: KconfigVerify.Mismatch) -> String { m.actual ?? "(not in .config)" }
        switch format {
        case .human:
            let c = Console.shared
            for m in ms {
                out += c.paint("CONFIG_\(m.symbol)", .bold) + " (\(m.requested.origin)): requested \(m.requested.value), got \(got(m))"
                out += (m.reason.map { ": " + $0 } ?? "") + "\n"
            }
            out += ms.isEmpty ? "\(config): every requested value is present\n" : "\(ms.count) requested value(s) not in \(config)\n"
        case .github:
            let level = strict ? "error" : "warning"
            for m in ms {
                let msg = "CONFIG_\(m.symbol): requested \(m.requested.value), got \(got(m))" + (m.reason.map { ": " + $0 } ?? "")
                out += "::\(level) file=\(m.requested.origin.file),line=\(m.requested.origin.line)::\(escape(msg))\n"
            }
        case .json:
            let items: [[String: Any]] = ms.map { m in
                var d: [String: Any] = [
                    "symbol": "CONFIG_" + m.symbol, "requested": m.requested.value, "file": m.requested.origin.file,
                    "line": m.requested.origin.line,
                ]
                d["actual"] = m.actual ?? NSNull()
                d["reason"] = m.reason ?? NSNull()
                return d
            }
            let data = (try? JSONSerialization.data(withJSONObject: items, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data("[]".utf8)
            out = String(decoding: data, as: UTF8.self) + "\n"
        }
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "\r", with: "%0D").replacingOccurrences(of: "\n", with: "%0A")
    }
}
