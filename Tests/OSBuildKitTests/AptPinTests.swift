import Basics
import Foundation
import FSTree
@testable import OSBuildKit
import Rootfs
import StageRunner
import Testing
import TestSupport

/// Apt pins as resolved inputs: a stage that fetched a package is stale when the pin it
/// used changes or disappears. Fake packages (dpkg-deb) pinned by hand: no apt-get.
struct FakeDebs {
    let t: TempDir
    let v1: String, v2: String
    var dl: String { t.sub("dl") }

    init() throws {
        let t = try TempDir("aptpin")
        self.t = t
        func build(_ version: String) throws -> String {
            try t.write("src-\(version)/DEBIAN/control", """
                Package: fake-pkg
                Version: \(version)
                Architecture: all
                Maintainer: osbuild tests <tests@example.invalid>
                Description: package for the apt pin tests

                """)
            try t.write("src-\(version)/usr/share/fake-pkg/version", version + "\n")
            let out = t.sub("fake-pkg_\(version)_all.deb")
            _ = try Subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", t.sub("src-\(version)"), out])
            return out
        }
        v1 = try build("1.0")
        v2 = try build("2.0")
    }

    /// Put `deb` into `cacheDir` and pin it (alone) in `lock`; returns the resolved value.
    @discardableResult
    func pin(_ deb: String, cacheDir: String, lock: String, sha256: String? = nil) throws -> String {
        try FileSystem.makeDirectories(cacheDir)
        let file = FileSystem.basename(deb)
        _ = try Subprocess.run(["cp", deb, cacheDir + "/" + file])
        let sum = try sha256 ?? SHA256.hexOfFile(at: deb)
        try FileSystem.makeDirectories(FileSystem.dirname(lock))
        try FileSystem.writeAtomically(lock, "{\"packages\": {\"fake-pkg\": {\"file\": \"\(file)\", \"sha256\": \"\(sum)\"}}}\n")
        return AptFetcher.LockEntry(file: file, sha256: sum).resolvedValue
    }

    static func state(_ plan: [PlanEntry], _ stage: String) -> StageState? { plan.first { $0.name == stage }?.state }
}

@Suite struct AptPinTests {
    /// A stage shaped like the kernel/GRUB/U-Boot stages: AptPins.fetcher + AptPins.checks.
    func runner(_ f: FakeDebs) throws -> StageRunner {
        let fetch = Stage(name: "kernel", summary: "fetch fake-pkg", inputs: StageInputs(keys: ["kernel.package": "fake-pkg"], resolvedChecks: AptPins.checks())) { sctx in
            let deb = try AptPins.fetcher(sctx).fetch("fake-pkg")
            try FileSystem.writeAtomically(sctx.outputDir + "/package.deb", try FileSystem.readFile(deb))
        }
        let use = Stage(name: "image", summary: "downstream", dependencies: ["kernel"]) { sctx in
            try FileSystem.writeAtomically(sctx.outputDir + "/copy.deb", try FileSystem.readFile(try sctx.input("kernel") + "/package.deb"))
        }
        return try StageRunner(stages: [fetch, use], buildDir: BuildDirectory(f.t.sub("build")), downloadCache: f.dl)
    }

    @Test func stageLockEditRerunsTheStageNamingThePackage() throws {
        guard TestEnv.oracle("dpkg-deb", package: "dpkg") != nil else { return }
        let f = try FakeDebs()
        let cache = AptPins.stageCacheDirectory(downloadCache: f.dl)
        let lock = AptPins.stageLockPath(downloadCache: f.dl)
        let pin1 = try f.pin(f.v1, cacheDir: cache, lock: lock)
        let first = try runner(f).run()
        #expect(first.results.allSatisfy { ran($0.outcome) }, "\(first.results)")
        #expect(BuildDirectory(f.t.sub("build")).readRecord("kernel")?.resolved == ["apt:fake-pkg": pin1])
        // No spurious rerun: the second build does nothing, and plan agrees.
        #expect(try runner(f).run().results.allSatisfy { $0.outcome == .cached })
        #expect(try runner(f).plan().allSatisfy { $0.state == .cached })

        // The lock now pins another file (e.g. replaced by a newer checkout).
        let pin2 = try f.pin(f.v2, cacheDir: cache, lock: lock)
        let plan = try runner(f).plan()
        #expect(FakeDebs.state(plan, "kernel") == .stale(reasons: ["apt:fake-pkg pin changed: fake-pkg_1.0_all.deb -> fake-pkg_2.0_all.deb (in \(lock))"]))
        #expect(FakeDebs.state(plan, "image") == .stale(reasons: ["upstream stage kernel will be rebuilt"]))
        let second = try runner(f).run()
        #expect(second.results.allSatisfy { ran($0.outcome) }, "\(second.results)")
        #expect(try SHA256.hexOfFile(at: f.t.sub("build/stages/image/copy.deb")) == SHA256.hexOfFile(at: f.v2))
        #expect(BuildDirectory(f.t.sub("build")).readRecord("kernel")?.resolved == ["apt:fake-pkg": pin2])
        #expect(try runner(f).run().results.allSatisfy { $0.outcome == .cached })

        // Same file name, other checksum: the reason shows both sums.
        let sha2 = try SHA256.hexOfFile(at: f.v2)
        try f.pin(f.v2, cacheDir: cache, lock: lock, sha256: String(repeating: "0", count: 64))
        #expect(FakeDebs.state(try runner(f).plan(), "kernel")
                == .stale(reasons: ["apt:fake-pkg pin changed: fake-pkg_2.0_all.deb sha256 \(sha2) -> \(String(repeating: "0", count: 64)) (in \(lock))"]))

        // The entry removed (to take a newer package) or the lock deleted.
        try FileSystem.writeAtomically(lock, "{\"packages\": {}}\n")
        let gone = "apt:fake-pkg no longer pinned in \(lock) (the stage used fake-pkg_2.0_all.deb); it will fetch and pin the package again"
        #expect(FakeDebs.state(try runner(f).plan(), "kernel") == .stale(reasons: [gone]))
        try FileSystem.removeTree(lock)
        #expect(FakeDebs.state(try runner(f).plan(), "kernel") == .stale(reasons: [gone]))

        // A lock that cannot be read: stale, saying why (the build itself then fails clearly).
        try FileSystem.writeAtomically(lock, "{not json")
        guard case .stale(let r)? = FakeDebs.state(try runner(f).plan(), "kernel") else { Issue.record("not stale"); return }
        #expect(r.count == 1 && r[0].hasPrefix("resolved input apt:fake-pkg could not be checked: \(lock): not a valid apt lock file"))
    }

    /// The rootfs stage pins its apt: inputs in the project's boards/apt-lock.json.
    @Test func rootfsStageFollowsTheProjectLock() throws {
        guard TestEnv.oracle("dpkg-deb", package: "dpkg") != nil else { return }
        let f = try FakeDebs()
        let project = try CLI.project(base: "\"apt:fake-pkg\"")
        let lock = project.sub("boards/apt-lock.json")
        try f.pin(f.v1, cacheDir: f.dl, lock: lock)
        let p = Project(root: project.path)
        let bd = BuildDirectory(project.sub("build"))
        func runner() throws -> StageRunner {
            try StageRunner(stages: try Pipeline.stages(for: try p.loader.load("t"), project: p, buildDir: bd), buildDir: bd, downloadCache: f.dl)
        }
        func packageVersion() throws -> String {
            let tree = try TreeStore.load(from: bd.outputDir("rootfs") + "/tree")
            let id = try #require(tree.lookup("/usr/share/fake-pkg/version"))
            return String(decoding: try ContentReader(tree[id].content).readAll(), as: UTF8.self)
        }
        let first = try runner().run(restrictedTo: "rootfs")
        #expect(first.results.allSatisfy { ran($0.outcome) }, "\(first.results)")
        #expect(try packageVersion() == "1.0\n")
        #expect(try runner().run(restrictedTo: "rootfs").results.allSatisfy { $0.outcome == .cached })

        try f.pin(f.v2, cacheDir: f.dl, lock: lock)
        #expect(FakeDebs.state(try runner().plan(), "rootfs")
                == .stale(reasons: ["apt:fake-pkg pin changed: fake-pkg_1.0_all.deb -> fake-pkg_2.0_all.deb (in \(lock))"]))
        #expect(try runner().run(restrictedTo: "rootfs").results.allSatisfy { ran($0.outcome) })
        #expect(try packageVersion() == "2.0\n")
        #expect(bd.readRecord("rootfs")?.resolved?["apt:fake-pkg"]?.hasPrefix("fake-pkg_2.0_all.deb sha256:") == true)
    }

    /// The shipped qemu-x86-64 build (shared, not rebuilt): `osbuild plan --json` with a
    /// download cache whose lock pins another kernel file reports the kernel stale, naming
    /// the package and both files; the same lock unchanged reports it cached. The shared
    /// cache is never edited (other tests fetch from it): the plan reads a copy.
    @Test func shippedBoardPlanSeesKernelPinChange() throws {
        let b = try BoardBuild.get("qemu-x86-64")
        let record = try #require(BuildDirectory(b.buildDir).readRecord("kernel"))
        let resolved = try #require(record.resolved)
        let (key, value) = try #require(resolved.first { $0.key.hasPrefix("apt:linux-image-") })
        let spec = String(key.dropFirst(4))
        let oldFile = String(value.prefix { $0 != " " })

        let copy = try TempDir("aptpin-dl")
        let lock = AptPins.stageLockPath(downloadCache: copy.path)
        try FileSystem.makeDirectories(FileSystem.dirname(lock))
        let original = try FileSystem.readFile(AptPins.stageLockPath(downloadCache: BoardBuild.downloadCache))
        try FileSystem.writeAtomically(lock, original)
        func plan() throws -> [String: [String: Any]] {
            var env = BoardBuild.environment(b.project)
            env["OSBUILD_DL_CACHE"] = copy.path
            let r = try Subprocess.run([CLI.binary, "plan", "qemu-x86-64", "-O", b.buildDir, "--json"], environment: env)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any])
            let stages = try #require(json["stages"] as? [[String: Any]])
            return Dictionary(uniqueKeysWithValues: stages.compactMap { s in (s["stage"] as? String).map { ($0, s) } })
        }
        let same = try plan()
        for s in ["kernel", "bootloader", "rootfs", "initramfs", "disk"] {
            #expect(same[s]?["state"] as? String == "cached", "\(s): \(same[s] ?? [:])")
        }

        var edited = try #require(try JSONSerialization.jsonObject(with: Data(original)) as? [String: Any])
        var packages = try #require(edited["packages"] as? [String: Any])
        let newFile = oldFile.replacingOccurrences(of: "_amd64.deb", with: "+osbuildtest1_amd64.deb")
        packages[spec] = ["file": newFile, "sha256": String(repeating: "a", count: 64)]
        edited["packages"] = packages
        try FileSystem.writeAtomically(lock, [UInt8](try JSONSerialization.data(withJSONObject: edited)))
        let changed = try plan()
        #expect(changed["kernel"]?["state"] as? String == "stale")
        #expect(changed["kernel"]?["reasons"] as? [String] == ["\(key) pin changed: \(oldFile) -> \(newFile) (in \(lock))"])
        #expect(changed["bootloader"]?["state"] as? String == "cached")
        #expect((changed["initramfs"]?["reasons"] as? [String])?.contains("upstream stage kernel will be rebuilt") == true)
    }
}

private func ran(_ o: StageOutcome) -> Bool { if case .ran = o { true } else { false } }
