import Basics
import Foundation
import Kconfig
import Testing
import TestSupport

/// osbuild's merged .config against the kernel's own tools (make <defconfig>,
/// scripts/kconfig/merge_config.sh -m, make olddefconfig), same compiler (host gcc).
@Suite(.serialized)
struct OracleTests {
    struct Case: Sendable, CustomStringConvertible {
        var arch: String
        var defconfig: String
        var board: String
        var cross = ""
        var description: String { "\(arch) \(defconfig)" + (cross.isEmpty ? "" : " CROSS_COMPILE=\(cross)") }
    }

    static let cases = [
        Case(arch: "x86_64", defconfig: "x86_64_defconfig", board: "qemu-x86-64.config"),
        Case(arch: "arm64", defconfig: "defconfig", board: "qemu-arm64.config"),
        Case(arch: "arm64", defconfig: "defconfig", board: "qemu-arm64.config", cross: "aarch64-linux-gnu-"),
    ]

    /// Runs the kernel's flow in `out`; returns (base .config, merged .config).
    static func kernelOracle(ksrc: String, arch: String, defconfig: String, fragments: [String], out: String, cross: String = "") throws -> (String, String) {
        guard TestEnv.oracle("make", package: "make") != nil, TestEnv.oracle("flex", package: "flex") != nil,
            TestEnv.oracle("bison", package: "bison") != nil, TestEnv.oracle("gcc", package: "gcc") != nil
        else { throw MessageError("oracle tools missing") }
        let make = ["make", "-C", ksrc, "-s", "ARCH=\(arch)", "O=\(out)", "CROSS_COMPILE=\(cross)"]
        _ = try Subprocess.run(make + [defconfig], environment: ["ARCH": arch])
        let base = try FileSystem.readText(out + "/.config")
        _ = try Subprocess.run(
            [ksrc + "/scripts/kconfig/merge_config.sh", "-m", "-O", out, out + "/.config"] + fragments,
            environment: ["ARCH": arch, "CROSS_COMPILE": cross], directory: out)
        _ = try Subprocess.run(make + ["olddefconfig"], environment: ["ARCH": arch])
        return (base, try FileSystem.readText(out + "/.config"))
    }

    @Test(arguments: cases)
    func identicalToKernel(_ c: Case) throws {
        guard let ksrc = KTest.kernelSource() else { return }
        if !c.cross.isEmpty, TestEnv.oracle(c.cross + "gcc", package: "gcc-aarch64-linux-gnu") == nil { return }
        let tmp = try TempDir("kconfig-oracle")
        let frags = [KTest.fragments() + "/container.config", KTest.fragments() + "/" + c.board]
        let kernel: (String, String)
        do {
            kernel = try Self.kernelOracle(ksrc: ksrc, arch: c.arch, defconfig: c.defconfig, fragments: frags, out: tmp.sub("o"), cross: c.cross)
        } catch let e as MessageError where e.message == "oracle tools missing" { return }
        // A private probe cache: the first load runs the probes, the second reuses them.
        let cache = tmp.sub("cache")
        let opts = KconfigOptions(kernelSource: ksrc, arch: c.arch, crossCompile: c.cross, probeCacheDirectory: cache)
        let tree = try KconfigTree.load(opts)
        #expect(tree.probeStats.executed > 50)
        let (base, r0) = try KconfigMerge.run(tree: tree, options: opts, defconfig: .target(c.defconfig), fragments: [])
        #expect(KTest.differences(base, kernel.0) == [])
        #expect(base == kernel.0, "base .config text (order, comments) differs")
        #expect(r0.dropped.isEmpty)

        let tree2 = try KconfigTree.load(opts)
        #expect(tree2.probeStats.executed == 0)
        // (the cold load also ran a few commands built from placeholder answers)
        #expect(tree2.probeStats.cached > 50 && tree2.probeStats.cached <= tree.probeStats.executed)
        let (merged, report) = try KconfigMerge.run(tree: tree2, options: opts, defconfig: .target(c.defconfig), fragments: frags)
        #expect(KTest.differences(merged, kernel.1) == [])
        #expect(merged == kernel.1, "merged .config text (order, comments) differs")
        #expect(!report.overrides.isEmpty)
        // make savedefconfig on the kernel's result vs ours
        _ = try Subprocess.run(
            ["make", "-C", ksrc, "-s", "ARCH=\(c.arch)", "O=\(tmp.sub("o"))", "CROSS_COMPILE=\(c.cross)", "savedefconfig"],
            environment: ["ARCH": c.arch])
        let kernelMin = try FileSystem.readText(tmp.sub("o/defconfig"))
        let (ourMin, _) = tree2.savedefconfig(ConfigText.assignments(merged, file: "merged"))
        #expect(ourMin == kernelMin, "savedefconfig differs: \(KTest.differences(ourMin, kernelMin).prefix(10))")
        // and resolving the minimal file again gives the same .config
        let (again, _) = tree2.resolve(ConfigText.assignments(ourMin, file: "min"), asDefconfig: true)
        #expect(KTest.differences(again, merged) == [])
        // Every dropped request really is absent or different in the kernel's result.
        let k = KTest.symbols(kernel.1)
        for d in report.dropped {
            let got = k[d.symbol] ?? "n"
            #expect(got != d.requested.value, "CONFIG_\(d.symbol) reported dropped but the kernel has \(got)")
            #expect(!d.reason.isEmpty)
        }
        // ...and every fragment request the kernel did not honour is reported.
        let reqs = try KconfigVerify.requests(fragments: frags)
        for r in reqs {
            let got = k[r.name] ?? "n"
            let same = got == r.value
            #expect(same || report.dropped.contains { $0.symbol == r.name }, "CONFIG_\(r.name) dropped by the kernel but not reported")
        }
    }

    /// Random configurations with every third line dropped (so olddefconfig has to repair
    /// dependencies, choices and ranges everywhere) resolve exactly as the kernel does.
    @Test func randomConfigsResolveLikeKernel() throws {
        guard let ksrc = KTest.kernelSource() else { return }
        guard TestEnv.oracle("make", package: "make") != nil, TestEnv.oracle("flex", package: "flex") != nil,
            TestEnv.oracle("bison", package: "bison") != nil
        else { return }
        let tmp = try TempDir("kconfig-rand")
        let out = tmp.sub("o")
        let make = ["make", "-C", ksrc, "-s", "ARCH=x86_64", "O=\(out)"]
        let opts = KconfigOptions(kernelSource: ksrc, arch: "x86_64", crossCompile: "", probeCacheDirectory: tmp.sub("cache"))
        let tree = try KconfigTree.load(opts)
        for seed in ["3", "7"] {
            _ = try Subprocess.run(make + ["randconfig"], environment: ["KCONFIG_SEED": seed])
            let full = try FileSystem.readText(out + "/.config").split(separator: "\n", omittingEmptySubsequences: false)
            let damaged = full.enumerated().filter { $0.offset % 3 != 2 }.map(\.element).joined(separator: "\n")
            try FileSystem.writeAtomically(out + "/.config", damaged)
            _ = try Subprocess.run(make + ["olddefconfig"])
            let kernel = try FileSystem.readText(out + "/.config")
            let (ours, _) = tree.resolve(ConfigText.assignments(damaged, file: "rand\(seed)"))
            #expect(KTest.differences(ours, kernel) == [], "seed \(seed)")
            #expect(ours == kernel, "seed \(seed): text differs")
        }
    }

    /// verify-kconfig on a real merged .config names the unmet dependency and the unknown symbol.
    @Test func realTreeVerifyExplainsUnmetDependency() throws {
        guard let ksrc = KTest.kernelSource() else { return }
        let tmp = try TempDir("kconfig-verify-real")
        let opts = KconfigOptions(kernelSource: ksrc, arch: "x86_64", crossCompile: "", probeCacheDirectory: tmp.sub("cache"))
        let tree = try KconfigTree.load(opts)
        let frag = try tmp.write("f.config", "CONFIG_CGROUP_BPF=y\nCONFIG_NO_SUCH_SYMBOL_XYZ=y\nCONFIG_CGROUPS=y\n")
        let (text, _) = try KconfigMerge.run(tree: tree, options: opts, defconfig: .target("x86_64_defconfig"), fragments: [frag])
        let cfg = try tmp.write(".config", text)
        let ms = try KconfigVerify.run(config: cfg, fragments: [frag], tree: tree)
        #expect(ms.map(\.symbol) == ["CGROUP_BPF", "NO_SUCH_SYMBOL_XYZ"])
        let bpf = try #require(ms.first)
        #expect(bpf.reason?.contains("BPF_SYSCALL[=n]") == true, "\(bpf.reason ?? "")")
        #expect(bpf.requested.origin.line == 1)
        #expect(ms.last?.reason?.hasPrefix("not found") == true)
    }
}
