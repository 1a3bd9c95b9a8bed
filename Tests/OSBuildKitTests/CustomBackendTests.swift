import Basics
import Boards
import Bundle
import FSTree
import Foundation
@testable import OSBuildKit
import Testing
import TestSupport

/// A `bootloader.kind = "custom"` board: its own RAUC backend (`bootloader.backend`) lands
/// in the rootfs at the path system.conf names, RAUC itself runs it, and editing it reruns
/// the rootfs stage.
@Suite(.serialized) struct CustomBackendTests {
    /// A project with board `cust` (GPT, rootfs slots A/B) whose backend logs each call to
    /// `<dir>/backend.log` and keeps the primary slot in `<dir>/primary`, bad slots as
    /// `<dir>/bad.<slot>` (set-primary makes a slot good again: RAUC's mark-active on a
    /// custom backend calls only set-primary).
    static func project(stateDir: String) throws -> TempDir {
        let tmp = try TempDir("custom-backend")
        try tmp.write("overlay/etc/motd", "hi\n")
        try tmp.write("boards/cust.toml", """
            name = "Custom board"
            arch = "aarch64"
            [os]
            version = "1.0"
            [bootloader]
            kind = "custom"
            backend = "boards/cust/backend"
            [[disk.partition]]
            name = "system-a"
            size = "8M"
            slot = "A"
            [[disk.partition]]
            name = "system-b"
            size = "8M"
            slot = "B"
            [[disk.partition]]
            name = "data"
            size = "8M"

            """)
        try tmp.write("boards/cust/backend", backendScript(stateDir: stateDir), mode: 0o644)
        return tmp
    }

    static func backendScript(stateDir d: String) -> String {
        """
        #!/bin/sh
        # Test backend for RAUC's custom bootloader interface.
        echo "$*" >> \(d)/backend.log
        case "$1" in
        get-primary) cat \(d)/primary ;;
        set-primary) echo "$2" > \(d)/primary; rm -f \(d)/bad.$2 ;;
        get-state) if [ -e \(d)/bad.$2 ]; then echo bad; else echo good; fi ;;
        set-state) if [ "$3" = bad ]; then : > \(d)/bad.$2; else rm -f \(d)/bad.$2; fi ;;
        get-current) echo A ;;
        *) echo "unknown command $1" >&2; exit 1 ;;
        esac

        """
    }

    @Test func rootfsCarriesTheBoardsBackendAndRaucRunsIt() throws {
        let state = try TempDir("custom-backend-state")
        guard let service = RaucService(directory: state.path) else { return }
        let rauc = service.rauc
        let proj = try Self.project(stateDir: state.path)
        let board = try Project(root: proj.path).loader.load("cust")
        var tree = FSTree()
        let mtime = Timestamp(seconds: 1_700_000_000, nanoseconds: 0)
        try RaucIntegration.install(into: &tree, board: board, keysDir: proj.sub("keys"), mtime: mtime)
        let conf = String(decoding: try ContentReader(tree[try #require(tree.lookup("/etc/rauc/system.conf"))].content).readAll(), as: UTF8.self)
        #expect(conf.contains("bootloader=custom\n") && conf.contains("[handlers]\nbootloader-custom-backend=/usr/lib/osbuild/custom-backend\n"), "\(conf)")
        let node = tree[try #require(tree.lookup(RaucIntegration.customBackendPath), "no \(RaucIntegration.customBackendPath) in the custom board's rootfs")]
        #expect(node.permissions == 0o755 && node.mtime == mtime)
        let bytes = try ContentReader(node.content).readAll()
        #expect(bytes == (try FileSystem.readFile(proj.sub("boards/cust/backend"))))
        // No generated backend or mark-good: the board brings its own boot mechanism.
        #expect(tree.lookup("/usr/lib/osbuild/tryboot-backend") == nil && tree.lookup("/usr/lib/osbuild/mark-good") == nil)

        // rauc's own parser accepts the system.conf exactly as generated.
        let signing = try BundleSigning.resolve(cert: nil, key: nil, developmentKeysDirectory: proj.sub("keys"), release: false)
        try state.write("content/rootfs.img", String(repeating: "x", count: 8192))
        try state.write("content/manifest.raucm", "[update]\ncompatible=probe\nversion=1\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n")
        try BundleWriter.create(contentDirectory: state.sub("content"), output: state.sub("probe.raucb"), options: .init(identity: signing.identity))
        let verbatim = try state.write("verbatim.conf", conf)
        let info = try Subprocess.run([rauc, "--conf=\(verbatim)", "--keyring=\(try #require(signing.developmentCA))", "info", state.sub("probe.raucb")], check: false)
        #expect(info.status == 0, "rauc rejected the custom board's system.conf:\n\(info.stderrText)\n\(conf)")

        // RAUC drives the tree's backend. Only the target paths missing on this host move:
        // the backend (the tree's bytes), the slot devices and the status file.
        let backend = try state.write("custom-backend", String(decoding: bytes, as: UTF8.self), mode: 0o755)
        var relocated = conf.replacingOccurrences(of: "=" + RaucIntegration.customBackendPath + "\n", with: "=" + backend + "\n")
            .replacingOccurrences(of: "statusfile=/data/rauc.status\n", with: "statusfile=\(state.sub("rauc.status"))\n")
        for slot in ["system-a", "system-b"] {
            try FileSystem.writeAtomically(state.sub(slot), [UInt8](repeating: 0, count: 4096))
            relocated = relocated.replacingOccurrences(of: "device=/dev/disk/by-partlabel/\(slot)\n", with: "device=\(state.sub(slot))\n")
        }
        #expect(!relocated.contains("/dev/disk") && !relocated.contains("/data/"), "\(relocated)")
        let relocatedConf = try state.write("system.conf", relocated)
        try state.write("primary", "A\n")
        try state.write("cmdline", "console=ttyAMA0 rauc.slot=A ro\n")
        let actions: [RaucService.Action] = [.rauc(["status", "--detailed", "--output-format=json"]), .rauc(["status", "mark-bad", "other"]),
                                             .rauc(["status", "--output-format=json"]), .rauc(["status", "mark-active", "other"]), .rauc(["status", "--output-format=json"])]
        let (steps, log) = try service.run(conf: relocatedConf, actions: actions)
        func step(_ n: Int) throws -> RaucService.Step { try #require(steps[n]) }
        func json(_ n: Int) throws -> [String: Any] {
            #expect(steps[n]?.rc == "0\n", "step \(n): \(steps[n]?.err ?? "") \(log)")
            return RaucService.json(steps[n])
        }
        let bootStatus = RaucService.bootStatus
        var j = try json(0)
        #expect(j["compatible"] as? String == "osbuild-cust" && j["booted"] as? String == "A" && j["boot_primary"] as? String == "rootfs.0", "\(j)")
        #expect(bootStatus(j) == ["rootfs.0": "good", "rootfs.1": "good"], "\(j)")
        var s = try step(1)
        #expect(s.rc == "0\n" && s.out.contains("marked slot rootfs.1 as bad"), "\(s)")
        j = try json(2)
        #expect(bootStatus(j) == ["rootfs.0": "good", "rootfs.1": "bad"], "\(j)")
        s = try step(3)
        #expect(s.rc == "0\n" && s.out.contains("activated slot rootfs.1"), "\(s)")
        j = try json(4)
        #expect(j["boot_primary"] as? String == "rootfs.1" && bootStatus(j) == ["rootfs.0": "good", "rootfs.1": "good"], "\(j)")
        // The calls RAUC made, as the backend logged them.
        let calls = Set(try FileSystem.readText(state.sub("backend.log")).split(separator: "\n").map(String.init))
        #expect(calls.isSuperset(of: ["get-primary", "get-state A", "get-state B", "set-state B bad", "set-primary B"]), "\(calls)")
    }

    /// The backend's bytes are a rootfs stage input: `plan` says the file changed, and the
    /// rebuilt tree carries the new bytes.
    @Test func editingTheBackendRerunsTheRootfsStage() throws {
        let proj = try Self.project(stateDir: "/run/test-backend")
        try CLI.run(["make", "cust", "--only", "rootfs"], project: proj.path)
        let manifest = try FileSystem.readText(proj.sub("build/cust/stages/rootfs/tree/tree.manifest"))
        #expect(manifest.contains(RaucIntegration.customBackendPath + "\t755\t0\t0"), "\(manifest)")
        func rootfsState() throws -> (state: String, reasons: [String]) {
            let r = try CLI.run(["plan", "cust", "--json"], project: proj.path)
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any])
            let stage = try #require((obj["stages"] as? [[String: Any]])?.first { $0["stage"] as? String == "rootfs" })
            return (stage["state"] as? String ?? "", stage["reasons"] as? [String] ?? [])
        }
        #expect(try rootfsState().state == "cached")
        try proj.write("boards/cust/backend", Self.backendScript(stateDir: "/run/other-dir"))
        let after = try rootfsState()
        let path = try Project(root: proj.path).loader.load("cust").resolvePath("boards/cust/backend")
        #expect(after.state == "stale" && after.reasons == ["input \(path) changed"], "\(after)")
        let second = try CLI.run(["make", "cust", "--only", "rootfs", "--json"], project: proj.path)
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(second.stdout)) as? [String: Any])
        #expect((summary["stages"] as? [[String: Any]])?.first { $0["stage"] as? String == "rootfs" }?["outcome"] as? String == "ran", "\(summary)")
        #expect(try rootfsState().state == "cached")
        let tree = try TreeStore.load(from: proj.sub("build/cust/stages/rootfs/tree"))
        let node = tree[try #require(tree.lookup(RaucIntegration.customBackendPath))]
        #expect(String(decoding: try ContentReader(node.content).readAll(), as: UTF8.self).contains("/run/other-dir/backend.log"))
    }

    /// A custom board has no bootloader stage: nothing for `plan` to call unimplemented.
    @Test func planHasNoBootloaderPlaceholder() throws {
        let proj = try Self.project(stateDir: "/run/test-backend")
        let r = try CLI.run(["plan", "cust", "--json"], project: proj.path)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any])
        let stages = try #require(obj["stages"] as? [[String: Any]])
        #expect(!stages.contains { $0["stage"] as? String == "bootloader" }, "\(stages)")
        #expect(!stages.contains { $0["state"] as? String == "not-implemented" && ($0["reasons"] as? [String])?.first?.contains("bootloader") == true }, "\(stages)")
    }
}
