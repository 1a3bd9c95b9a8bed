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
