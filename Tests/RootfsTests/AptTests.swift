import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport

@Suite struct AptTests {
    @Test func aptInputIsPinnedAndVerified() throws {
        guard TestEnv.oracle("apt-get", package: "apt") != nil else { return }
        let t = try TempDir("apt")
        let cache = t.sub("dl")
        var logs: [String] = []
        let spec = RootfsSpec(base: [.apt("busybox-static")], writeTimestamp: false, buildIDPath: nil)
        let tree = try RootfsAssembler.assemble(spec, downloadCache: cache, log: { logs.append($0) })
        let fetcher = AptFetcher(cacheDirectory: cache)
        let lock = try fetcher.loadLock()
        guard let entry = lock.packages["busybox-static"] else { Issue.record("not pinned: \(logs)"); return }
        let deb = cache + "/" + entry.file
        #expect(try SHA256.hexOfFile(at: deb) == entry.sha256)
        #expect(entry.file.hasPrefix("busybox-static_") && entry.file.hasSuffix(".deb"))

        // The tree is the package's data member, exactly as dpkg-deb/tar see it.
        try sh("dpkg-deb --fsys-tarfile \(q(deb)) > \(q(t.sub("data.tar")))")
        try expectTreeMatchesTar(tree, t.sub("data.tar"))
        #expect(tree.lookup("/bin/busybox") != nil)

        // A rebuild uses the cached file (no new download: same inode).
        let before = try FileSystem.lstat(deb)
        _ = try fetcher.fetch("busybox-static")
        #expect(try FileSystem.lstat(deb).inode == before.inode)

        // A changed file is an error naming the package, file and lock.
        var bytes = try FileSystem.readFile(deb)
        bytes[bytes.count - 1] ^= 0xFF
        try FileSystem.writeAtomically(deb, bytes)
        #expect { try fetcher.fetch("busybox-static") } throws: { e in
            let s = "\(e)"
            return e is AptFetcher.Mismatch && s.contains("apt:busybox-static") && s.contains(entry.sha256) && s.contains("apt-lock.json")
        }
        // Deleted: fetched again at the pinned version, and it verifies.
        try FileSystem.removeTree(deb)
        #expect(try fetcher.fetch("busybox-static") == deb)
        #expect(try SHA256.hexOfFile(at: deb) == entry.sha256)

        // Unknown package: apt-get's failure is reported.
        #expect(throws: (any Error).self) { try fetcher.fetch("osbuild-no-such-package-xyz") }
    }

    /// What build stages record for a pin and how a change is described (no apt-get).
    @Test func pinsAsResolvedInputValues() throws {
        let t = try TempDir("aptpin")
        let lock = t.sub("apt-lock.json")
        #expect(try AptFetcher.currentPin(spec: "busybox-static", lockPath: lock) == nil)
        let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64)
        let old = "busybox-static_1%3a1.35.0-4+b3_amd64.deb"
        try t.write("apt-lock.json", "{\"packages\": {\"busybox-static\": {\"file\": \"\(old)\", \"sha256\": \"\(a)\"}}}")
        let v = try #require(try AptFetcher.currentPin(spec: "busybox-static", lockPath: lock))
        #expect(v == old + " sha256:" + a)
        #expect(v == AptFetcher.LockEntry(file: old, sha256: a).resolvedValue)
        #expect(try AptFetcher.currentPin(spec: "busybox-static:arm64", lockPath: lock) == nil)
        let newer = AptFetcher.LockEntry(file: "busybox-static_1%3a1.36.1-9_amd64.deb", sha256: b).resolvedValue
        #expect(AptFetcher.describePinChange(key: "apt:busybox-static", recorded: v, now: newer, lockPath: lock)
                == "apt:busybox-static pin changed: \(old) -> busybox-static_1%3a1.36.1-9_amd64.deb (in \(lock))")
        #expect(AptFetcher.describePinChange(key: "apt:busybox-static", recorded: v, now: AptFetcher.LockEntry(file: old, sha256: b).resolvedValue, lockPath: lock)
                == "apt:busybox-static pin changed: \(old) sha256 \(a) -> \(b) (in \(lock))")
        #expect(AptFetcher.describePinChange(key: "apt:busybox-static", recorded: v, now: nil, lockPath: lock)
                == "apt:busybox-static no longer pinned in \(lock) (the stage used \(old)); it will fetch and pin the package again")
        try t.write("apt-lock.json", "[")
        #expect { try AptFetcher.currentPin(spec: "busybox-static", lockPath: lock) } throws: { "\($0)".contains("\(lock): not a valid apt lock file") }
    }
}
