import Basics
@testable import Bundle
import Foundation
import Testing
import TestSupport

/// A content dir + signing keys in a temp dir, shaped like a HAOS-style update.
final class Fixture {
    let tmp: TempDir
    let content: String
    let keys: Keys

    struct Keys {
        var cert: String
        var key: String
        var keyring: String  // trust anchor (CA)
        var intermediate: String?
    }

    init(format: BundleFormat, keyType: Certificates.KeyType = .ecP256, extraManifest: String = "", rootfsSize: Int = 700_000) throws {
        tmp = try TempDir("bundle")
        content = tmp.sub("content")
        try FileSystem.makeDirectories(content)
        keys = try Fixture.makeKeys(in: tmp, keyType: keyType)
        // Deterministic, poorly compressible data so the payload spans many 4 KiB blocks.
        var rng = SplitMix(seed: 42)
        try FileSystem.writeAtomically(content + "/rootfs.img", (0..<rootfsSize).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        try FileSystem.writeAtomically(content + "/kernel.img", (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try FileSystem.writeAtomically(content + "/hook.sh", "#!/bin/sh\nexit 0\n", mode: 0o755)
        let bundle = format == .plain ? "" : "[bundle]\nformat=\(format.rawValue)\n\n"
        try FileSystem.writeAtomically(content + "/manifest.raucm", """
            [update]
            compatible=osbuild-test-board
            version=1.2.3
            description=Test bundle
            build=20240101

            \(bundle)[hooks]
            filename=hook.sh
            hooks=install-check;

            [image.rootfs]
            filename=rootfs.img
            hooks=post-install;

            [image.kernel]
            filename=kernel.img
            \(extraManifest)
            """)
    }

    static func makeKeys(in tmp: TempDir, keyType: Certificates.KeyType, name: String = "test",
                         notAfter: Int64? = nil, leafEKU: String? = "codeSigning,emailProtection") throws -> Keys {
        let now = Int64(Date().timeIntervalSince1970)
        let ca = try Certificates.issue(
            .init(commonName: "\(name) CA", organization: "Test Org", notBefore: now - 3600, notAfter: now + 86400 * 365,
                  isCA: true, keyUsage: "critical,keyCertSign,cRLSign"), keyType: keyType)
        let leaf = try Certificates.issue(
            .init(commonName: "\(name) signer", organization: "Test Org", notBefore: now - 7200, notAfter: notAfter ?? now + 86400 * 365,
                  isCA: false, keyUsage: "critical,digitalSignature", extendedKeyUsage: leafEKU), keyType: keyType, issuer: ca)
        let dir = tmp.sub("keys-\(name)")
        try FileSystem.makeDirectories(dir)
        try FileSystem.writeAtomically(dir + "/ca.pem", ca.certPEM)
        try FileSystem.writeAtomically(dir + "/cert.pem", leaf.certPEM)
        try FileSystem.writeAtomically(dir + "/key.pem", leaf.keyPEM, mode: 0o600)
        return Keys(cert: dir + "/cert.pem", key: dir + "/key.pem", keyring: dir + "/ca.pem")
    }

    var identity: SigningIdentity { SigningIdentity(certPath: keys.cert, keyPath: keys.key, passphrase: nil) }

    func create(_ name: String = "out.raucb", epoch: Int64? = nil, salt: [UInt8]? = nil) throws -> (String, BundleLayout) {
        let out = tmp.sub(name)
        let layout = try BundleWriter.create(contentDirectory: content, output: out,
                                             options: BundleCreateOptions(identity: identity, epoch: epoch, veritySalt: salt))
        return (out, layout)
    }

    func verifyOptions(keyring: String? = nil) -> BundleVerifyOptions {
        BundleVerifyOptions(policy: KeyringPolicy(keyringPath: keyring ?? keys.keyring))
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The real rauc 1.8 (+ veritysetup) as oracle, run the way ../shared/notes/rauc-oracle.sh
/// does: `rauc info` (signature, manifest, plain payload digest) AND `rauc extract`
/// (verity hash tree), on a private 0644 copy.
enum Rauc {
    struct Outcome {
        var accepted: Bool
        var info: String
        var log: String
        var extractDir: String?
    }

    static var available: Bool {
        TestEnv.oracle("rauc", package: "rauc") != nil && TestEnv.oracle("unsquashfs", package: "squashfs-tools") != nil
    }

    static func check(_ bundle: String, keyring: String, conf: String? = nil, in tmp: TempDir) throws -> Outcome {
        let copy = tmp.sub("oracle-\(UInt32.random(in: 0...UInt32.max)).raucb")
        try FileSystem.writeAtomically(copy, FileSystem.readFile(bundle), mode: 0o644)
        var common = ["rauc", "--keyring=\(keyring)"]
        if let conf { common.append("--conf=\(conf)") }
        let info = try Subprocess.run(common + ["info", copy], check: false)
        if info.status != 0 {
            return Outcome(accepted: false, info: info.stdoutText, log: info.stderrText + info.stdoutText)
        }
        let dir = tmp.sub("extract-\(UInt32.random(in: 0...UInt32.max))")
        let ex = try Subprocess.run(common + ["extract", copy, dir], check: false)
        return Outcome(accepted: ex.status == 0, info: info.stdoutText, log: info.stderrText + ex.stderrText + ex.stdoutText,
                       extractDir: ex.status == 0 ? dir : nil)
    }
}

extension BundleError {
    static func check(_ e: any Error) -> BundleError.Check? { (e as? BundleError)?.check }
}
