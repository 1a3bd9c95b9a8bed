import Basics
import FSTree
import Foundation
@testable import Rootfs
import Testing
import TestSupport

@Suite struct InitramfsInitTests {
    let modules = ["kernel/drivers/virtio/virtio.ko", "kernel/drivers/block/virtio_blk.ko", "kernel/fs/erofs/erofs.ko"]

    /// The shell that runs it parses it: busybox sh if present (what the initramfs runs), else sh.
    @Test func generatedInitIsValidShellAndListsModulesInLoadOrder() throws {
        let text = try InitramfsInit.script(modules: modules, kernelVersion: "6.1.0-56-amd64", options: .init(rootFSType: "squashfs"))
        #expect(text.hasPrefix("#!/bin/busybox sh\n"))
        let tmp = try TempDir("init")
        let path = try tmp.write("init", text, mode: 0o755)
        let shell = Subprocess.which("busybox") ?? "sh"
        let r = try Subprocess.run(shell == "sh" ? ["sh", "-n", path] : [shell, "sh", "-n", path], check: false)
        #expect(r.status == 0, "\(shell) -n rejects the init script: \(r.stderrText)")
        // Dependencies before dependants, exactly as resolved.
        let positions = modules.compactMap { text.range(of: "\n" + $0 + "\n")?.lowerBound }
        #expect(positions.count == modules.count && positions == positions.sorted())
        #expect(text.contains("fstype=squashfs"))
        #expect(text.contains("KVER=6.1.0-56-amd64"))
        #expect(text.contains("reboot -f"))
        // Deterministic: same inputs, same bytes.
        #expect(text == (try InitramfsInit.script(modules: modules, kernelVersion: "6.1.0-56-amd64", options: .init(rootFSType: "squashfs"))))
    }

    @Test func rejectsNamesThatWouldBreakTheScript() {
        #expect(throws: RootfsError.self) { try InitramfsInit.script(modules: ["a b.ko"], kernelVersion: "v", options: .init()) }
        #expect(throws: RootfsError.self) { try InitramfsInit.script(modules: ["m.ko"], kernelVersion: "$(reboot)", options: .init()) }
        #expect(throws: RootfsError.self) { try InitramfsInit.script(modules: [], kernelVersion: "", options: .init(rootFSType: "")) }
    }

    /// The rootfs init in overlay/ parses too (it is what prints the boot marker).
    @Test func overlayInitIsValidShell() throws {
        let path = TestEnv.repoRoot + "/overlay/sbin/init"
        let st = try #require(try? FileSystem.readText(path))
        #expect(st.hasPrefix("#!/bin/busybox sh\n"))
        #expect(st.contains("osbuild-boot-ok slot=$slot version=$VERSION_ID"))
        let r = try Subprocess.run(["sh", "-n", path], check: false)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(access(path, X_OK) == 0, "overlay/sbin/init must be executable (git keeps the mode)")
    }
}
