import Basics
import Foundation
import Kconfig
import Testing
import TestSupport

enum KTest {
    /// The unpacked kernel tree (scripts/fetch-kernel-source.sh), or nil with a SKIP
    /// (a failure under CI=true).
    static func kernelSource(sourceLocation: Testing.SourceLocation = #_sourceLocation) -> String? {
        let dir = ProcessInfo.processInfo.environment["OSBUILD_KSRC"] ?? "/var/cache/osbuild/linux-6.1"
        if FileSystem.exists(dir + "/Kconfig") && FileSystem.exists(dir + "/scripts/kconfig/merge_config.sh") { return dir }
        let msg = "kernel source not found at \(dir) (run scripts/fetch-kernel-source.sh or set OSBUILD_KSRC)"
        if TestEnv.isCI {
            Issue.record(Comment(rawValue: msg), sourceLocation: sourceLocation)
        } else {
            print("SKIP: \(msg)")
        }
        return nil
    }

    static func fragments() -> String { TestEnv.repoRoot + "/boards/fragments" }

    /// Symbol -> value ("n" for `is not set`), the way compare-config does it.
    static func symbols(_ text: String) -> [String: String] {
        var d: [String: String] = [:]
        for a in ConfigText.assignments(text, file: "-") { d[a.name] = a.value }
        return d
    }

    static func differences(_ a: String, _ b: String) -> [String] {
        let x = symbols(a), y = symbols(b)
        var out: [String] = []
        for k in Set(x.keys).union(y.keys).sorted() where x[k] != y[k] {
            out.append("CONFIG_\(k): ours=\(x[k] ?? "<absent>") kernel=\(y[k] ?? "<absent>")")
        }
        return out
    }

    /// A small Kconfig tree in a temp dir; returns the path of its top file.
    static func tree(_ dir: TempDir, _ files: [String: String]) throws -> String {
        for (name, text) in files { try dir.write(name, text) }
        return dir.sub("Kconfig")
    }
}
