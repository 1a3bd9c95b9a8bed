import Basics
import Foundation
import Testing
import TestSupport

/// End-to-end tests of the real `osbuild` binary on a throwaway project.
enum CLI {
    static var binary: String {
        // The test bundle and the executable are built into the same directory.
        let exe = (try? FileSystem.readSymlink("/proc/self/exe")) ?? CommandLine.arguments[0]
        return FileSystem.dirname(exe) + "/osbuild"
    }

    @discardableResult
    static func run(_ args: [String], project: String, check: Bool = true) throws -> Subprocess.Result {
        try Subprocess.run([binary] + args, environment: ["OSBUILD_PROJECT": project, "NO_COLOR": "1"], check: check)
    }

    static func project(base: String = "") throws -> TempDir {
        let tmp = try TempDir("cli")
        try tmp.write("overlay/etc/motd", "hi\n")
        try tmp.write("boards/t.toml", """
            name = "Test board"
            arch = "x86_64"
            [os]
            id = "testos"
            version = "3.1"
            [rootfs]
            base = [\(base)]
            """)
        return tmp
    }
}

@Suite(.serialized) struct CLITests {
    @Test func boardsJSONIsACIMatrix() throws {
        let r = try CLI.run(["boards", "--json"], project: TestEnv.repoRoot)
        let arr = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [[String: Any]])
        let ids = arr.compactMap { $0["id"] as? String }
        #expect(ids.contains("qemu-x86-64") && ids.contains("rpi5-64") && !ids.contains("common"))
        let q = try #require(arr.first { $0["id"] as? String == "qemu-x86-64" })
        #expect(q["image"] as? String == "osbuild_qemu-x86-64-1.0.img")
        #expect(q["compatible"] as? String == "osbuild-qemu-x86-64")
    }

    @Test func helpDocumentsExitCodes() throws {
        let r = try CLI.run(["--help"], project: TestEnv.repoRoot)
        #expect(r.stdoutText.contains("EXIT CODES"))
        #expect(r.stdoutText.contains("2  usage or input error"))
    }

    @Test func usageErrorsExitTwo() throws {
        let r = try CLI.run(["make"], project: TestEnv.repoRoot, check: false)
        #expect(r.status == 2)
        #expect(r.stderrText.contains("Missing expected argument '<board>'"))
        let u = try CLI.run(["plan", "qemu-x86-64", "--bogus"], project: TestEnv.repoRoot, check: false)
        #expect(u.status == 2)
    }

    @Test func badBoardExitsTwoWithLocation() throws {
        let tmp = try CLI.project()
        try tmp.write("boards/bad.toml", "name = \"x\"\narch = \"x86_64\"\n[os]\nversion = \"1.0\"\n[rootfs]\nfs = \"ext3\"\n")
        let r = try CLI.run(["plan", "bad"], project: tmp.path, check: false)
        #expect(r.status == 2)
        #expect(r.stderrText.contains("boards/bad.toml:6 (rootfs.fs): 'rootfs.fs' = \"ext3\" is not one of: erofs, squashfs"))
    }

    @Test func makeThenNoopThenChange() throws {
        let tmp = try CLI.project()
        let first = try CLI.run(["make", "t"], project: tmp.path)
        #expect(first.stdoutText.contains("ran"))
        #expect(FileSystem.exists(tmp.sub("build/t/stages/rootfs/tree/tree.manifest")))
        let second = try CLI.run(["make", "t"], project: tmp.path)
        #expect(second.stdoutText.contains("up to date: nothing to rebuild"))
        try tmp.write("overlay/etc/motd", "changed\n")
        let plan = try CLI.run(["plan", "t"], project: tmp.path)
        #expect(plan.stdoutText.contains("input \(tmp.path)/overlay changed"))
        let third = try CLI.run(["make", "t", "--json"], project: tmp.path)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(third.stdout)) as? [String: Any])
        let stages = try #require(obj["stages"] as? [[String: Any]])
        #expect(stages.first { $0["stage"] as? String == "rootfs" }?["outcome"] as? String == "ran")
        // --verify-only notices a tampered output; exit 1.
        try FileSystem.writeAtomically(tmp.sub("build/t/stages/rootfs/tree/tree.manifest"), "x")
        let v = try CLI.run(["make", "--verify-only", "t"], project: tmp.path, check: false)
        #expect(v.status == 1)
        #expect(v.stdoutText.contains("MODIFIED  rootfs: tree/tree.manifest: content changed"))
        // -O DIR builds elsewhere; clean removes it.
        try CLI.run(["make", "t", "-O", tmp.sub("o")], project: tmp.path)
        #expect(FileSystem.exists(tmp.sub("o/state/rootfs.json")))
        try CLI.run(["clean", "t", "-O", tmp.sub("o")], project: tmp.path)
        #expect(!FileSystem.exists(tmp.sub("o")))
    }

    /// A run killed with SIGKILL in the middle of a stage leaves no done record and no
    /// committed output; the next run cleans up and produces correct outputs.
    @Test func killedRunRecovers() throws {
        let tmp = try CLI.project(base: "\"dir:base\"")
        let big = tmp.sub("base/big.bin")
        try FileSystem.makeDirectories(tmp.sub("base"))
        let fd = open(big, O_CREAT | O_WRONLY, 0o644)
        #expect(ftruncate(fd, 768 << 20) == 0)  // sparse: cheap to create, slow to copy
        close(fd)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["make", "t"]
        p.environment = ProcessInfo.processInfo.environment.merging(["OSBUILD_PROJECT": tmp.path]) { _, n in n }
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        // Wait until the rootfs stage is writing its blob, then kill -9.
        let deadline = Date().addingTimeInterval(60)
        var caught = false
        while Date() < deadline && p.isRunning {
            let tmpDir = tmp.sub("build/t/tmp")
            if let outs = try? FileSystem.listDirectory(tmpDir), let out = outs.first(where: { $0.hasPrefix("rootfs.out.") }),
               let files = try? FileSystem.listDirectory(tmpDir + "/" + out + "/tree"), files.contains(where: { $0.hasPrefix(".osbuild-tmp-tree.pack") }) {
                kill(p.processIdentifier, SIGKILL)
                caught = true
                break
            }
            usleep(2000)
        }
        p.waitUntilExit()
        #expect(caught, "the stage finished before it could be killed")
        #expect(p.terminationReason == .uncaughtSignal || !caught)
        #expect(!FileSystem.exists(tmp.sub("build/t/state/rootfs.json")))
        #expect(!FileSystem.exists(tmp.sub("build/t/stages/rootfs")))
        let plan = try CLI.run(["plan", "t"], project: tmp.path)
        #expect(plan.stdoutText.contains("stale") && plan.stdoutText.contains("rootfs"))
        try CLI.run(["make", "t"], project: tmp.path)
        #expect(try FileSystem.listDirectory(tmp.sub("build/t/tmp")).isEmpty)
        let manifest = try FileSystem.readText(tmp.sub("build/t/stages/rootfs/tree/tree.manifest"))
        #expect(manifest.contains("/big.bin\t644\t0\t0"))
        #expect(manifest.contains("\t\(768 << 20)\t"))
        #expect(try FileSystem.listDirectory(tmp.sub("build/t/stages/rootfs/tree")).sorted() == ["tree.manifest", "tree.pack"])
        #expect(try FileSystem.stat(tmp.sub("build/t/stages/rootfs/tree/tree.pack")).size > 768 << 20)  // big.bin + small files
        let again = try CLI.run(["make", "t"], project: tmp.path)
        #expect(again.stdoutText.contains("up to date"))
    }
}
