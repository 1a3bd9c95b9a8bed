import Basics
import Bootloader
import Foundation
import Testing
import TestSupport

/// grubenv blocks are checked by GRUB's own reader, grub-editenv.
@Suite struct GrubEnvTests {
    @Test func grubEditenvReadsOurBlock() throws {
        let vars = [("ORDER", "A B"), ("A_OK", "1"), ("B_OK", "0"), ("A_TRY", "0"), ("B_TRY", "0")]
        let block = try GrubEnv.block(vars)
        #expect(block.count == 1024)
        guard let editenv = TestEnv.oracle("grub-editenv", package: "grub-common") else { return }
        let dir = try TempDir()
        let path = dir.path + "/grubenv"
        try Data(block).write(to: URL(fileURLWithPath: path))
        let out = try Subprocess.run([editenv, path, "list"]).stdoutText
        #expect(out.split(separator: "\n").map(String.init) == vars.map { "\($0.0)=\($0.1)" })
        // And GRUB's writer produces what we parse.
        _ = try Subprocess.run([editenv, path, "set", "A_TRY=2"])
        let parsed = try GrubEnv.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        #expect(parsed.first { $0.0 == "A_TRY" }?.1 == "2")
    }

    @Test func oversizedEnvironmentIsRejected() {
        #expect(throws: (any Error).self) { try GrubEnv.block([("X", String(repeating: "v", count: 1100))]) }
    }
}

/// The A/B decisions on grubenv variables, and their writes checked by grub-editenv.
@Suite struct GrubSlotStateTests {
    @Test func bootSlotFollowsOrderOkAndTries() {
        let base = GrubConfig.initialEnv(tries: 3)
        #expect(GrubSlotState.bootSlot(base, tries: 3) == "A")
        let b = GrubSlotState.makePrimary(base, slot: "B")
        #expect(GrubSlotState.bootSlot(b, tries: 3) == "B")
        // B used up its tries -> A; both used up -> none.
        let bUsed = GrubSlotState.setting(b, [("B_TRY", "3")])
        #expect(GrubSlotState.bootSlot(bUsed, tries: 3) == "A")
        #expect(GrubSlotState.bootSlot(GrubSlotState.setting(bUsed, [("A_TRY", "3")]), tries: 3) == nil)
        #expect(GrubSlotState.bootSlot(GrubSlotState.markBad(b, slot: "B"), tries: 3) == "A")
        // Unset ORDER means "A B", as grub.cfg does.
        #expect(GrubSlotState.order([("A_OK", "1")]) == ["A", "B"])
    }

    @Test func makePrimaryMatchesGrubEditenv() throws {
        guard let editenv = TestEnv.oracle("grub-editenv", package: "grub-common") else { return }
        let dir = try TempDir()
        let path = dir.path + "/grubenv"
        let start = GrubSlotState.setting(GrubConfig.initialEnv(tries: 3), [("A_TRY", "1"), ("EXTRA", "kept")])
        try Data(try GrubEnv.block(start)).write(to: URL(fileURLWithPath: path))
        _ = try Subprocess.run([editenv, path, "set", "ORDER=B A", "B_OK=1", "B_TRY=0"])
        let theirs = Set(try Subprocess.run([editenv, path, "list"]).stdoutText.split(separator: "\n").map(String.init))
        let ours = Set(GrubSlotState.makePrimary(start, slot: "B").map { "\($0.0)=\($0.1)" })
        #expect(ours == theirs)
    }

    @Test(arguments: 1...5) func triesReadBackFromRenderedConfig(tries: Int) {
        let cfg = GrubConfig.render(slots: GrubSlots(kernelA: 2, kernelB: 4, rootA: "system0", rootB: "system1"), tries: tries, cmdline: "")
        #expect(GrubConfig.tries(inConfig: cfg) == tries)
        #expect(GrubConfig.tries(inConfig: "set timeout=0\n") == nil)
    }
}
