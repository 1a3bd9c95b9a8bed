import Basics
import Boards
import Bundle
@testable import OSBuildKit
import Testing
import TestSupport

@Suite struct PipelineTests {
    @Test func everyShippedBoardResolvesToAStageGraph() throws {
        let project = Project(root: TestEnv.repoRoot)
        let boards = try project.loader.loadAll()
        #expect(Set(boards.map(\.id)).isSuperset(of: ["qemu-x86-64", "generic-x86-64", "generic-aarch64", "rpi4-64", "rpi5-64"]))
        for b in boards {
            let stages = try Pipeline.stages(for: b, project: project, buildDir: project.buildDirectory(board: b.id, override: "/tmp/unused"))
            #expect(stages.contains { $0.name == "rootfs" }, "board \(b.id)")
            // osbuild's own code makes every output: a different binary must rerun them.
            for s in stages {
                #expect(s.inputs.tools["osbuild"] == Pipeline.implementationIdentity, "board \(b.id) stage \(s.name)")
            }
        }
        #expect(Pipeline.implementationIdentity.contains(String(ExecutableIdentity.buildID.prefix(16))))
    }
}

@Suite struct DocsTests {
    /// The README documents what the install script installs: every package of every
    /// scripts/apt-packages.d/*.txt must be named there.
    @Test func readmeListsEveryInstalledPackage() throws {
        let root = TestEnv.repoRoot
        let readme = try FileSystem.readText(root + "/README.md")
        let dir = root + "/scripts/apt-packages.d"
        var missing: [String] = []
        for f in try FileSystem.listDirectory(dir) where f.hasSuffix(".txt") {
            for line in try FileSystem.readText(dir + "/" + f).split(separator: "\n") {
                let pkg = line.split(separator: "#", omittingEmptySubsequences: false).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                if !pkg.isEmpty && !readme.contains(pkg) { missing.append("\(pkg) (\(f))") }
            }
        }
        #expect(missing.isEmpty, "README.md does not mention: \(missing.joined(separator: ", "))")
    }
}

@Suite struct RaucSystemConfTests {
    /// Every shipped board's system.conf goes through rauc's own parser: `rauc --conf=F
    /// --keyring=K info BUNDLE` loads F first and fails on any error in it.
    @Test func shippedBoardsSystemConfAcceptedByRauc() throws {
        guard let rauc = TestEnv.oracle("rauc", package: "rauc") else { return }
        let tmp = try TempDir("sysconf")
        let project = Project(root: TestEnv.repoRoot)
        // A small signed bundle to give `rauc info` something to read.
        let signing = try BundleSigning.resolve(cert: nil, key: nil, developmentKeysDirectory: tmp.sub("keys"), release: false)
        try tmp.write("content/rootfs.img", String(repeating: "x", count: 8192))
        try tmp.write("content/manifest.raucm", "[update]\ncompatible=probe\nversion=1\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n")
        let bundle = tmp.sub("probe.raucb")
        try BundleWriter.create(contentDirectory: tmp.sub("content"), output: bundle, options: .init(identity: signing.identity))
        let keyring = try #require(signing.developmentCA)
        var checked = 0
        for board in try project.loader.loadAll() {
            guard let conf = try RaucIntegration.systemConf(for: board) else { continue }
            let text = try conf.render()
            #expect(text.contains("compatible=\(board.compatible)\n"))
            let path = try tmp.write("\(board.id).conf", text)
            let r = try Subprocess.run([rauc, "--conf=\(path)", "--keyring=\(keyring)", "info", bundle], check: false)
            #expect(r.status == 0, "board \(board.id): rauc rejected its system.conf:\n\(r.stderrText)\n\(text)")
            checked += 1
        }
        #expect(checked >= 4)
    }
}
