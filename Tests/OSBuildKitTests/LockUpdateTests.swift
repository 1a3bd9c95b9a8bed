import Basics
import Boards
import Foundation
@testable import OSBuildKit
import Rootfs
import Testing
import TestSupport

@Suite struct LockUpdateDecisionTests {
    typealias Entry = AptFetcher.LockEntry

    func item(_ key: String, meta: String? = nil, stage: String = "kernel") -> LockUpdate.Item {
        LockUpdate.Item(stage: stage, origin: "kernel.package", lockPath: "/l/apt-lock.json", cacheDirectory: "/l", key: key, metapackage: meta)
    }

    @Test func unchangedUpdatedNew() {
        let lock = AptFetcher.LockFile(packages: ["busybox-static": Entry(file: "busybox-static_1%3a1.30.1-6_amd64.deb", sha256: "aa")])
        let same = LockUpdate.decide(item("busybox-static", stage: "rootfs"), lock: lock, candidate: "busybox-static_1%3a1.30.1-6_amd64.deb")
        #expect(same.status == .unchanged && same.old == same.new)
        let up = LockUpdate.decide(item("busybox-static", stage: "rootfs"), lock: lock, candidate: "busybox-static_1%3a1.35.0-4_amd64.deb")
        #expect(up.status == .updated && up.old == "busybox-static_1%3a1.30.1-6_amd64.deb" && up.new == "busybox-static_1%3a1.35.0-4_amd64.deb")
        #expect(up.replacedKey == nil)
        let new = LockUpdate.decide(item("grub-efi-amd64-bin"), lock: lock, candidate: "grub-efi-amd64-bin_2.06-13_amd64.deb")
        #expect(new.status == .new && new.old == nil)
    }

    @Test func metapackageMovedToANewABIReplacesTheOldKey() {
        let lock = AptFetcher.LockFile(packages: [
            "linux-image-6.1.0-20-amd64": Entry(file: "linux-image-6.1.0-20-amd64_6.1.85-1_amd64.deb", sha256: "aa"),
            // Other flavours and arches in the same shared lock are not the metapackage's.
            "linux-image-6.1.0-20-cloud-amd64": Entry(file: "x.deb", sha256: "bb"),
            "linux-image-6.1.0-20-arm64:arm64": Entry(file: "y.deb", sha256: "cc"),
        ])
        let c = LockUpdate.decide(item("linux-image-6.1.0-28-amd64", meta: "linux-image-amd64"), lock: lock,
                                  candidate: "linux-image-6.1.0-28-amd64_6.1.119-1_amd64.deb")
        #expect(c.status == .replaced)
        #expect(c.replacedKey == "linux-image-6.1.0-20-amd64")
        #expect(c.old == "linux-image-6.1.0-20-amd64_6.1.85-1_amd64.deb")
        // Same ABI, newer upload: an ordinary update of the versioned key.
        let same = AptFetcher.LockFile(packages: ["linux-image-6.1.0-28-amd64": Entry(file: "linux-image-6.1.0-28-amd64_6.1.119-1_amd64.deb", sha256: "aa")])
        let u = LockUpdate.decide(item("linux-image-6.1.0-28-amd64", meta: "linux-image-amd64"), lock: same,
                                  candidate: "linux-image-6.1.0-28-amd64_6.1.123-1_amd64.deb")
        #expect(u.status == .updated && u.replacedKey == nil)
        // A foreign-arch kernel: only the qualified keys of that flavour count.
        let arm = LockUpdate.decide(item("linux-image-6.1.0-28-arm64:arm64", meta: "linux-image-arm64"), lock: lock, candidate: "z.deb")
        #expect(arm.status == .replaced && arm.replacedKey == "linux-image-6.1.0-20-arm64:arm64")
        // Nothing pinned for the flavour yet: new.
        let rt = LockUpdate.decide(item("linux-image-6.1.0-28-rt-amd64", meta: "linux-image-rt-amd64"), lock: lock, candidate: "r.deb")
        #expect(rt.status == .new && rt.replacedKey == nil)
    }

    @Test func versionedKeyShapes() {
        #expect(LockUpdate.isVersionedKey("linux-image-6.1.0-20-amd64", of: "linux-image-amd64", arch: nil))
        #expect(LockUpdate.isVersionedKey("linux-image-6.12.12-amd64", of: "linux-image-amd64", arch: nil))
        #expect(LockUpdate.isVersionedKey("linux-image-6.12.9+bpo-amd64", of: "linux-image-amd64", arch: nil))
        #expect(!LockUpdate.isVersionedKey("linux-image-6.1.0-20-cloud-amd64", of: "linux-image-amd64", arch: nil))
        #expect(!LockUpdate.isVersionedKey("linux-image-amd64", of: "linux-image-amd64", arch: nil))
        #expect(!LockUpdate.isVersionedKey("linux-image-6.1.0-20-amd64:amd64", of: "linux-image-amd64", arch: nil))
        #expect(LockUpdate.isVersionedKey("linux-image-6.1.0-20-arm64:arm64", of: "linux-image-arm64", arch: "arm64"))
        #expect(!LockUpdate.isVersionedKey("linux-image-6.1.0-20-arm64", of: "linux-image-arm64", arch: "arm64"))
    }

    /// The keys are the ones the stages use: arch-qualified for a foreign board, the
    /// metapackage resolved (injected answer, no apt), each in its own lock file.
    @Test func itemsOfABoard() throws {
        let t = try TempDir("lockitems")
        try t.write("boards/p.toml", """
            name = "Pi"
            arch = "aarch64"
            [os]
            id = "testos"
            version = "1.0"
            [kernel]
            package = "linux-image-arm64"
            [bootloader]
            kind = "uboot"
            [rootfs]
            base = ["apt:busybox-static", "dir:x"]
            """)
        let project = Project(root: t.path)
        let b = try project.loader.load("p")
        let items = try LockUpdate.items(board: b, project: project, resolveKernel: { p, a in
            #expect(p == "linux-image-arm64" && a == "arm64")
            return "linux-image-6.1.0-28-arm64"
        })
        let foreign = DebianArch.host != "arm64"
        #expect(items.map(\.stage) == ["kernel", "bootloader", "rootfs"])
        let expected: [String] = foreign
            ? ["linux-image-6.1.0-28-arm64:arm64", "u-boot-rpi:arm64", "busybox-static:arm64"]
            : ["linux-image-6.1.0-28-arm64", "u-boot-rpi", "busybox-static"]
        #expect(items.map(\.key) == expected)
        #expect(items[0].metapackage == "linux-image-arm64")
        #expect(items[0].lockPath == AptPins.stageLockPath(downloadCache: project.downloadCache))
        #expect(items[2].lockPath == t.path + "/boards/apt-lock.json")
        // An apt failure names the board file and key.
        do {
            _ = try LockUpdate.items(board: b, project: project, resolveKernel: { _, _ in throw MessageError("apt-cache does not know it", exitCode: 3) })
            Issue.record("no error")
        } catch let e as MessageError {
            #expect(e.description.contains("p.toml: kernel.package = \"linux-image-arm64\": apt-cache does not know it"), "\(e)")
            #expect(e.exitCode == 3)
        }
    }
}

/// The real thing on a small project: apt's candidate for busybox-static from the host's
/// lists (the mirror the kernel-stage tests use too), a fake older pin in boards/apt-lock.json.
@Suite(.serialized) struct LockUpdateCLITests {
    @Test func dryRunReportsThenUpdateRepinsAndPlanNamesThePackage() throws {
        guard TestEnv.oracle("dpkg-deb", package: "dpkg") != nil, TestEnv.oracle("sha256sum", package: "coreutils") != nil else { return }
        let uris = try Subprocess.run(["apt-get", "download", "--print-uris", "busybox-static"], check: false)
        guard uris.status == 0, let line = uris.stdoutText.split(separator: "\n").first(where: { $0.hasPrefix("'") }) else {
            Issue.record("apt-get download --print-uris busybox-static failed: \(uris.stderrText)")
            return
        }
        let realFile = String(line.split(separator: " ")[1])
        let t = try CLI.project(base: "\"apt:busybox-static\"")
        let dl = t.sub("dl")
        // An "older" busybox-static: a fake package under an old file name, pinned with its
        // true sha so the rootfs stage builds from it and records that pin.
        let oldFile = "busybox-static_1%3a1.30.1-6_amd64.deb"
        try t.write("fake/DEBIAN/control", """
            Package: busybox-static
            Version: 1:1.30.1-6
            Architecture: all
            Maintainer: osbuild tests <tests@example.invalid>
            Description: stand-in for an older busybox-static

            """)
        try t.write("fake/bin/busybox", "not really\n")
        try FileSystem.makeDirectories(dl)
        _ = try Subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", t.sub("fake"), dl + "/" + oldFile])
        let oldSum = try SHA256.hexOfFile(at: dl + "/" + oldFile)
        let lockPath = t.sub("boards/apt-lock.json")
        let oldLock = "{\"packages\": {\"busybox-static\": {\"file\": \"\(oldFile)\", \"sha256\": \"\(oldSum)\"}}}\n"
        try FileSystem.writeAtomically(lockPath, oldLock)

        let env = ["OSBUILD_PROJECT": t.path, "NO_COLOR": "1", "OSBUILD_DL_CACHE": dl]
        func osbuild(_ args: [String]) throws -> Subprocess.Result {
            try Subprocess.run([CLI.binary] + args, environment: env, check: false)
        }
        let built = try osbuild(["make", "t", "--only", "rootfs"])
        #expect(built.status == 0, "\(built.stderrText)")

        let dry = try osbuild(["update-locks", "t", "--dry-run", "--json"])
        #expect(dry.status == LockUpdate.updatesAvailableExitCode, "\(dry.stderrText)")
        let arr = try #require(try JSONSerialization.jsonObject(with: Data(dry.stdout)) as? [[String: Any]])
        #expect(arr.count == 1)
        let c = try #require(arr.first)
        #expect(c["stage"] as? String == "rootfs" && c["key"] as? String == "busybox-static" && c["lock"] as? String == lockPath)
        #expect(c["status"] as? String == "updated" && c["old"] as? String == oldFile && c["new"] as? String == realFile)
        #expect(c["replaces"] is NSNull)
        #expect(try String(decoding: FileSystem.readFile(lockPath), as: UTF8.self) == oldLock, "dry run touched the lock")

        let upd = try osbuild(["update-locks", "t"])
        #expect(upd.status == 0, "\(upd.stderrText)")
        #expect(upd.stdoutText.contains("rootfs") && upd.stdoutText.contains("busybox-static  1:1.30.1-6 -> "), "\(upd.stdoutText)")
        let lock = try JSONDecoder().decode(AptFetcher.LockFile.self, from: Data(try FileSystem.readFile(lockPath)))
        let pin = try #require(lock.packages["busybox-static"])
        #expect(pin.file == realFile && lock.packages.count == 1)
        let sum = try Subprocess.run(["sha256sum", dl + "/" + realFile]).stdoutText.split(separator: " ").first.map(String.init)
        #expect(pin.sha256 == sum)

        // Nothing left to update, and the rootfs built from the old pin is stale, naming it.
        let again = try osbuild(["update-locks", "t", "--dry-run", "--json"])
        #expect(again.status == 0, "\(again.stderrText)")
        #expect(again.stdoutText.contains("\"unchanged\""))
        let plan = try osbuild(["plan", "t", "--json"])
        let p = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout)) as? [String: Any])
        let stages = try #require(p["stages"] as? [[String: Any]])
        let rootfs = try #require(stages.first { $0["stage"] as? String == "rootfs" })
        #expect(rootfs["state"] as? String == "stale")
        let reasons = (rootfs["reasons"] as? [String]) ?? []
        #expect(reasons.contains { $0.contains("apt:busybox-static") && $0.contains(realFile) }, "\(reasons)")

        // An unknown package: apt's error, the board file and key, exit 3.
        let unknown = try CLI.project(base: "\"apt:no-such-package-osbuild\"")
        let bad = try Subprocess.run([CLI.binary, "update-locks", "t", "--dry-run"],
                                     environment: ["OSBUILD_PROJECT": unknown.path, "NO_COLOR": "1", "OSBUILD_DL_CACHE": dl], check: false)
        #expect(bad.status == ExitStatus.environment)
        #expect(bad.stderrText.contains("t.toml: rootfs.base") && bad.stderrText.contains("no-such-package-osbuild"), "\(bad.stderrText)")
    }
}
