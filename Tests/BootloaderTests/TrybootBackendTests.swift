import Basics
import Bootloader
import Foundation
import Testing
import TestSupport

/// The generated RAUC custom backend for tryboot, run by Debian's busybox-static against a
/// directory standing in for the mounted boot-control partition (as MarkGoodTrybootTests),
/// and by RAUC itself (`rauc status` with bootloader=custom): RAUC parses its answers.
@Suite struct TrybootBackendTests {
    static let slots: [(name: String, bootPartition: Int)] = [("A", 2), ("B", 3)]

    static func text(_ d: Int, _ t: Int) throws -> String { try Autoboot(bootPartition: d, trybootPartition: t).render() }

    /// Fresh ctl/autoboot.txt (D, T), tmp/, and the script; returns the script path.
    static func setup(_ dir: TempDir, _ d: Int, _ t: Int) throws -> String {
        for x in ["ctl", "tmp", "dt"] { try? FileSystem.removeTree(dir.sub(x)) }
        try FileSystem.makeDirectories(dir.sub("ctl"))
        try FileSystem.makeDirectories(dir.sub("tmp"))
        try FileSystem.writeAtomically(dir.sub("ctl/autoboot.txt"), try text(d, t))
        return try dir.write("tryboot-backend", try TrybootBackendScript.render(slots: slots, controlPartition: "PARTUUID=5a1b2c3d-01",
                                                                                partitionFinder: "find_root() { return 1; }"), mode: 0o755)
    }

    static func env(_ dir: TempDir, busybox: String) -> [String: String] {
        ["OSBUILD_BOOTCTL_DIR": dir.sub("ctl"), "OSBUILD_BUSYBOX": busybox, "TMPDIR": dir.sub("tmp"),
         "OSBUILD_DEVICE_TREE": dir.sub("dt"), "OSBUILD_CMDLINE": dir.sub("cmdline")]
    }

    static func run(_ args: [String], _ dir: TempDir, busybox: String) throws -> (status: Int32, out: String, err: String) {
        let r = try Subprocess.run([busybox, "sh", dir.sub("tryboot-backend")] + args, environment: env(dir, busybox: busybox), check: false)
        #expect(try FileSystem.listDirectory(dir.sub("tmp")).isEmpty, "temporary files left behind")
        #expect(try FileSystem.listDirectory(dir.sub("ctl")) == ["autoboot.txt"])
        return (r.status, r.stdoutText, r.stderrText)
    }

    @Test func everyCommandOnEveryState() throws {
        guard let bb = TestEnv.oracle("busybox", package: "busybox-static") else { return }
        let dir = try TempDir("tryboot-backend")
        // (autoboot D/T before, args, stdout, autoboot D/T after, stderr substring)
        let cases: [(Int, Int, [String], String, Int, Int, String)] = [
            (2, 3, ["get-primary"], "A\n", 2, 3, ""),
            (3, 2, ["get-primary"], "B\n", 3, 2, ""),
            (3, 3, ["get-primary"], "B\n", 3, 3, ""),
            (2, 3, ["get-state", "A"], "good\n", 2, 3, ""),
            (2, 3, ["get-state", "B"], "good\n", 2, 3, ""),
            (2, 2, ["get-state", "B"], "bad\n", 2, 2, ""),
            (2, 2, ["get-state", "A"], "good\n", 2, 2, ""),
            (3, 3, ["get-state", "A"], "bad\n", 3, 3, ""),
            // RAUC's install into B from A: set-state B bad, write, set-primary B.
            (2, 3, ["set-state", "B", "bad"], "", 2, 2, "set-state B bad: autoboot.txt now boots partition 2 by default, tryboot 2 (was 2, 3)"),
            (2, 2, ["set-primary", "B"], "", 2, 3, "set-primary B: autoboot.txt now boots partition 2 by default, tryboot 3 (was 2, 2)"),
            // Install into the default slot while the tried one runs uncommitted.
            (2, 3, ["set-state", "A", "bad"], "", 3, 3, "now boots partition 3 by default, tryboot 3 (was 2, 3)"),
            (3, 3, ["set-primary", "A"], "", 3, 2, "now boots partition 3 by default, tryboot 2"),
            (3, 2, ["set-state", "A", "bad"], "", 3, 3, "(was 3, 2)"),
            (2, 2, ["set-state", "B", "bad"], "", 2, 2, "nothing to change"),
            (2, 3, ["set-primary", "B"], "", 2, 3, "nothing to change"),
            (2, 3, ["set-primary", "A"], "", 2, 3, "nothing to change"),
            (2, 2, ["set-primary", "A"], "", 2, 2, "nothing to change"),
            (2, 2, ["set-state", "B", "good"], "", 2, 3, "set-state B good: autoboot.txt now boots partition 2 by default, tryboot 3"),
            (3, 2, ["set-state", "B", "good"], "", 3, 2, "nothing to change"),
        ]
        for (d, t, args, out, nd, nt, msg) in cases {
            _ = try Self.setup(dir, d, t)
            let r = try Self.run(args, dir, busybox: bb)
            #expect(r.status == 0 && r.out == out && (msg.isEmpty ? r.err.isEmpty : r.err.contains(msg)), "(\(d),\(t)) \(args): status \(r.status) out '\(r.out)' err '\(r.err)'")
            #expect(try FileSystem.readText(dir.sub("ctl/autoboot.txt")) == (try Self.text(nd, nt)), "(\(d),\(t)) \(args)")
        }
    }

    @Test func errorsLeaveAutobootUntouched() throws {
        guard let bb = TestEnv.oracle("busybox", package: "busybox-static") else { return }
        let dir = try TempDir("tryboot-backend-errors")
        let cases: [([String], String)] = [
            ([], "usage: tryboot-backend get-primary"),
            (["get-primary", "A"], "usage:"),
            (["set-state", "B"], "usage:"),
            (["reboot"], "usage:"),
            (["get-state", "C"], "unknown slot 'C' (this image has slots A B)"),
            (["set-primary", "a"], "unknown slot 'a'"),
            (["set-state", "B", "ok"], "set-state: the state must be good or bad, got 'ok'"),
        ]
        for (args, msg) in cases {
            _ = try Self.setup(dir, 2, 3)
            let r = try Self.run(args, dir, busybox: bb)
            #expect(r.status == 1 && r.out.isEmpty && r.err.contains("osbuild-tryboot-backend: FAILED: " + msg), "\(args): \(r.status) '\(r.out)' '\(r.err)'")
            #expect(try FileSystem.readText(dir.sub("ctl/autoboot.txt")) == (try Self.text(2, 3)))
        }
        // Marking the only good slot bad.
        _ = try Self.setup(dir, 2, 2)
        var r = try Self.run(["set-state", "A", "bad"], dir, busybox: bb)
        #expect(r.status == 1 && r.err.contains("slot A is the only good slot (autoboot.txt boots partition 2, tryboot 2; slot B is bad)"), "\(r.err)")
        #expect(try FileSystem.readText(dir.sub("ctl/autoboot.txt")) == (try Self.text(2, 2)))
        // Anything but the exact texts: another partition, an edited line, Windows line ends, no file.
        let odd = [try Self.text(2, 4), try Self.text(2, 3).replacingOccurrences(of: "tryboot_a_b=1", with: "tryboot_a_b=0"),
                   try Self.text(2, 3).replacingOccurrences(of: "\n", with: "\r\n"), "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"]
        for bad in odd {
            for args in [["get-primary"], ["get-state", "A"], ["set-primary", "B"], ["set-state", "B", "bad"]] {
                _ = try Self.setup(dir, 2, 3)
                try FileSystem.writeAtomically(dir.sub("ctl/autoboot.txt"), bad)
                r = try Self.run(args, dir, busybox: bb)
                #expect(r.status == 1 && r.out.isEmpty && r.err.contains("is not one of the texts osbuild writes for this image (boot_partition and tryboot each one of A=#2 B=#3): not touching it"),
                        "\(args): \(r.err)")
                #expect(try FileSystem.readText(dir.sub("ctl/autoboot.txt")) == bad)
            }
        }
        _ = try Self.setup(dir, 2, 3)
        try FileSystem.removeTree(dir.sub("ctl/autoboot.txt"))
        let s = try Subprocess.run([bb, "sh", dir.sub("tryboot-backend"), "get-primary"], environment: Self.env(dir, busybox: bb), check: false)
        #expect(s.status == 1 && s.stderrText.contains("has no autoboot.txt"), "\(s.stderrText)")
    }

    @Test func getCurrentFromTheFirmwareOrTheCmdline() throws {
        guard let bb = TestEnv.oracle("busybox", package: "busybox-static") else { return }
        let dir = try TempDir("tryboot-backend-current")
        _ = try Self.setup(dir, 2, 3)
        try FileSystem.writeAtomically(dir.sub("cmdline"), "console=ttyAMA0 root=PARTUUID=5a1b2c3d-05 rauc.slot=A ro\n")
        var r = try Self.run(["get-current"], dir, busybox: bb)
        #expect(r.status == 0 && r.out == "A\n", "\(r)")
        // The firmware's /chosen/bootloader/partition (32-bit big-endian) wins.
        try FileSystem.makeDirectories(dir.sub("dt/chosen/bootloader"))
        try FileSystem.writeAtomically(dir.sub("dt/chosen/bootloader/partition"), [0, 0, 0, 3])
        r = try Self.run(["get-current"], dir, busybox: bb)
        #expect(r.status == 0 && r.out == "B\n", "\(r)")
        try FileSystem.writeAtomically(dir.sub("dt/chosen/bootloader/partition"), [0, 0, 0, 5])
        r = try Self.run(["get-current"], dir, busybox: bb)
        #expect(r.status == 1 && r.out.isEmpty && r.err.contains("the firmware booted partition 5, which is no slot's boot partition (A=#2 B=#3)"), "\(r)")
        try FileSystem.removeTree(dir.sub("dt"))
        try FileSystem.writeAtomically(dir.sub("cmdline"), "console=ttyAMA0 ro\n")
        r = try Self.run(["get-current"], dir, busybox: bb)
        #expect(r.status == 1 && r.err.contains("cannot tell the booted slot"), "\(r)")
    }

    /// RAUC 1.8 itself runs the backend: `rauc status` shows the primary and each slot's
    /// boot status from get-primary/get-state, and `rauc status mark-*` drives set-*.
    /// Debian's rauc talks to `rauc service` over D-Bus (a private session bus here) and
    /// takes the booted slot only from /proc/cmdline (bind-mounted in a mount namespace).
    @Test func raucDrivesTheBackend() throws {
        let dir = try TempDir("tryboot-backend-rauc")
        guard let bb = TestEnv.oracle("busybox", package: "busybox-static"), let service = RaucService(directory: dir.path) else { return }
        let script = try Self.setup(dir, 2, 3)
        // The shebang is the rootfs's /bin/busybox; run through this host's busybox-static.
        let wrapper = try dir.write("backend", "#!/bin/sh\nexec \(bb) sh \(script) \"$@\"\n", mode: 0o755)
        for s in ["boot-a", "boot-b"] { try FileSystem.writeAtomically(dir.sub(s), [UInt8](repeating: 0, count: 4096)) }
        let conf = try dir.write("system.conf", """
            [system]
            compatible=osbuild-tryboot-test
            bootloader=custom
            statusfile=\(dir.sub("rauc.status"))

            [handlers]
            bootloader-custom-backend=\(wrapper)

            [slot.boot.0]
            device=\(dir.sub("boot-a"))
            type=vfat
            bootname=A

            [slot.boot.1]
            device=\(dir.sub("boot-b"))
            type=vfat
            bootname=B

            """)
        try dir.write("cmdline", "console=ttyAMA0 rauc.slot=A ro\n")
        try dir.write("committed.txt", try Self.text(3, 2))
        try dir.write("odd.txt", "[all]\nboot_partition=2\n")
        // Each rauc step's result, with autoboot.txt as it was afterwards.
        let actions: [RaucService.Action] = [
            .rauc(["status", "--detailed", "--output-format=json"]), .rauc(["status", "mark-bad", "other"]), .rauc(["status", "--output-format=json"]),
            .rauc(["status", "mark-active", "other"]), .rauc(["status", "--output-format=json"]), .shell("cp committed.txt ctl/autoboot.txt"),
            .rauc(["status", "--output-format=json"]), .shell("cp odd.txt ctl/autoboot.txt"), .rauc(["status", "mark-bad", "other"])]
        let (steps, serviceLog) = try service.run(conf: conf, actions: actions, environment: Self.env(dir, busybox: bb), afterEach: { _ in "cat ctl/autoboot.txt" })
        func step(_ n: Int) throws -> (rc: String, out: String, err: String, autoboot: String) {
            let s = try #require(steps[n])
            return (s.rc, s.out, s.err, s.after ?? "")
        }
        func json(_ n: Int) throws -> [String: Any] {
            #expect(steps[n]?.rc == "0\n", "step \(n): \(steps[n]?.err ?? "")")
            return RaucService.json(steps[n])
        }
        let bootStatus = RaucService.bootStatus
        var j = try json(0)
        #expect(j["booted"] as? String == "A" && j["boot_primary"] as? String == "boot.0", "\(j)")
        #expect(bootStatus(j) == ["boot.0": "good", "boot.1": "good"], "\(j)")
        // What `rauc install` does to slot B: mark it bad, then active.
        var s = try step(1)
        let t22 = try Self.text(2, 2)
        #expect(s.rc == "0\n" && s.out.contains("marked slot boot.1 as bad") && s.autoboot == t22, "\(s)")
        j = try json(2)
        #expect(j["boot_primary"] as? String == "boot.0" && bootStatus(j) == ["boot.0": "good", "boot.1": "bad"], "\(j)")
        s = try step(3)
        let t23 = try Self.text(2, 3)
        #expect(s.rc == "0\n" && s.out.contains("activated slot boot.1") && s.autoboot == t23, "\(s)")
        j = try json(4)
        #expect(j["boot_primary"] as? String == "boot.0" && bootStatus(j) == ["boot.0": "good", "boot.1": "good"], "\(j)")
        // After mark-good committed B (as the rootfs's mark-good does), B is primary.
        j = try json(6)
        #expect(j["boot_primary"] as? String == "boot.1", "\(j)")
        // RAUC reports the backend's refusal; the file stays as it was.
        s = try step(8)
        #expect(s.rc != "0\n" && s.err.contains("Failed marking slot boot.1 as bad") && s.autoboot == "[all]\nboot_partition=2\n", "\(s)")
        #expect(serviceLog.contains("not one of the texts osbuild writes"))
    }
}
