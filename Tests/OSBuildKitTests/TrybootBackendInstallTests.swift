import Basics
import Bootloader
import Boards
import FSTree
@testable import OSBuildKit
import Testing
import TestSupport

/// rpi5-64's rootfs carries the RAUC custom backend its system.conf names, executable, and
/// that script (run by Debian's busybox-static) reads the autoboot.txt the board's
/// bootloader stage writes: slot A primary, both slots good.
@Suite struct TrybootBackendInstallTests {
    @Test func rpi5RootfsCarriesTheBackendSystemConfNames() throws {
        guard let bb = TestEnv.oracle("busybox", package: "busybox-static") else { return }
        let tmp = try TempDir("tryboot-backend-rootfs")
        let board = try Project(root: TestEnv.repoRoot).loader.load("rpi5-64")
        var tree = FSTree()
        try RaucIntegration.install(into: &tree, board: board, keysDir: tmp.sub("keys"), mtime: tree.root.mtime)
        let conf = try ContentReader(tree[try #require(tree.lookup("/etc/rauc/system.conf"))].content).readAll()
        #expect(String(decoding: conf, as: UTF8.self).contains("bootloader=custom\n") &&
                String(decoding: conf, as: UTF8.self).contains("bootloader-custom-backend=\(TrybootBackendScript.installPath)\n"))
        let node = tree[try #require(tree.lookup(TrybootBackendScript.installPath), "no \(TrybootBackendScript.installPath) in rpi5-64's rootfs")]
        #expect(node.permissions == 0o755)
        let script = try ContentReader(node.content).readAll()
        #expect(String(decoding: script, as: UTF8.self) == (try TrybootBoot.backendScript(board: board)))
        // Against the autoboot.txt rpi5-64's bootloader stage writes (boot-a #2, boot-b #3).
        let path = tmp.sub("tryboot-backend")
        try FileSystem.writeAtomically(path, script)
        try tmp.write("ctl/autoboot.txt", try Autoboot(bootPartition: 2, trybootPartition: 3).render())
        try FileSystem.makeDirectories(tmp.sub("tmp"))
        let env = ["OSBUILD_BOOTCTL_DIR": tmp.sub("ctl"), "OSBUILD_BUSYBOX": bb, "TMPDIR": tmp.sub("tmp")]
        let primary = try Subprocess.run([bb, "sh", path, "get-primary"], environment: env, check: false)
        #expect(primary.status == 0 && primary.stdoutText == "A\n", "\(primary.stderrText)")
        let state = try Subprocess.run([bb, "sh", path, "get-state", "B"], environment: env, check: false)
        #expect(state.status == 0 && state.stdoutText == "good\n", "\(state.stderrText)")
        // Other boards get no tryboot backend.
        var other = FSTree()
        try RaucIntegration.install(into: &other, board: try Project(root: TestEnv.repoRoot).loader.load("rpi4-64"), keysDir: tmp.sub("keys"), mtime: other.root.mtime)
        #expect(other.lookup(TrybootBackendScript.installPath) == nil)
    }
}
