import Basics
import Foundation
@testable import OSBuildKit
import Testing
import TestSupport

/// The native cmdline.txt edit of osbuild's tryboot hook against the hook script itself,
/// run by sh (as RAUC would) on awkward inputs: the script is the oracle.
@Suite struct OfflineHookTests {
    @Test func nativeRetargetMatchesTheScript() throws {
        let board = try Project(root: TestEnv.repoRoot).loader.load("rpi5-64")
        let slots = try TrybootBoot.slots(board: board)
        let tmp = try TempDir("hook")
        let script = try tmp.write("rauc-hook.sh", TrybootBoot.hook(slots), mode: 0o755)
        let inputs = [
            "root=PARTUUID=5a1b2c3d-05 rauc.slot=A ro console=serial0,115200 quiet\n",
            "root=PARTUUID=5a1b2c3d-05 rauc.slot=A ro",  // no final newline
            "  console=tty1   root=/dev/mmcblk0p5  rootwait rauc.slot=A\n\n\n",  // spaces, root= mid-line, trailing blank lines
            "nfsroot=10.0.0.1:/x ro root=/dev/sda2 rauc.slot=B\n",  // the first "root=" is inside nfsroot=: sed's rule, kept
            "ro quiet\nsecond line root=x\n",  // two lines: each is edited
            "",
            "rauc.slot=A\n",
        ]
        for (n, input) in inputs.enumerated() {
            for slot in slots {
                let mnt = tmp.sub("mnt-\(n)-\(slot.name)")
                try FileSystem.makeDirectories(mnt)
                try FileSystem.writeAtomically(mnt + "/cmdline.txt", input)
                _ = try Subprocess.run(["sh", script, "slot-post-install"],
                                       environment: ["RAUC_SLOT_CLASS": "boot", "RAUC_SLOT_BOOTNAME": slot.name, "RAUC_SLOT_MOUNT_POINT": mnt])
                let byScript = try FileSystem.readFile(mnt + "/cmdline.txt")
                let native = TrybootBoot.retargetCmdline(Array(input.utf8), root: TrybootBoot.hookRoot(slot), bootname: slot.name)
                #expect(native == byScript, "input \(input.debugDescription) slot \(slot.name): native \(String(decoding: native, as: UTF8.self).debugDescription), script \(String(decoding: byScript, as: UTF8.self).debugDescription)")
            }
        }
        // And the one the board ships: slot A's cmdline.txt becomes slot B's.
        let a = Array("root=PARTUUID=5a1b2c3d-05 rauc.slot=A ro console=ttyAMA0\n".utf8)
        #expect(String(decoding: TrybootBoot.retargetCmdline(a, root: TrybootBoot.hookRoot(slots[1]), bootname: "B"), as: UTF8.self)
                == "root=PARTUUID=5a1b2c3d-06 rauc.slot=B ro console=ttyAMA0\n")
    }
}
