import Basics
@testable import Bundle
import Foundation
import Testing
import TestSupport

@Suite struct ManifestTests {
    @Test func parsesAndRendersInRaucOrder() throws {
        let text = """
            # comment
            [image.rootfs]
            filename=rootfs.img
            hooks=post-install;

            [update]
            compatible=board\\sx
            version=1.0

            [hooks]
            filename=hook.sh
            hooks=install-check;
            """
        let m = try Manifest.parse(text, path: "m.raucm")
        #expect(m.compatible == "board x")
        #expect(m.images.first?.hooks == ["post-install"])
        #expect(m.render(includeVerity: false) == """
            [update]
            compatible=board x
            version=1.0

            [hooks]
            filename=hook.sh
            hooks=install-check;

            [image.rootfs]
            filename=rootfs.img
            hooks=post-install;

            """)
        #expect(try Manifest.parse(m.render(includeVerity: false), path: "again") == m)
    }

    @Test func rejectsWhatRaucRejects() throws {
        func error(_ text: String) -> String {
            do { _ = try Manifest.parse(text, path: "m.raucm"); return "" } catch { return "\(error)" }
        }
        #expect(error("[update]\nversion=1\n").contains("missing required key 'compatible'"))
        #expect(error("[update]\ncompatible=x\nfoo=1\n").contains("m.raucm:3 ([update] foo): invalid key 'foo'"))
        #expect(error("[update]\ncompatible=x\n[custom]\na=b\n").contains("invalid group '[custom]'"))
        #expect(error("[update]\ncompatible=x\n[bundle]\nformat=zip\n").contains("invalid format value 'zip'"))
        #expect(error("[update]\ncompatible=x\n[image.rootfs]\nhooks=post-install;\nfilename=a\n").contains("no hook 'filename'"))
        #expect(error("[update]\ncompatible=x\n[bundle]\nformat=verity\nverity-hash=\(String(repeating: "a", count: 64))\nverity-salt=\(String(repeating: "b", count: 64))\nverity-size=4000\n").contains("unaligned size"))
        // [meta.*] is accepted (RAUC ignores it).
        #expect(error("[update]\ncompatible=x\n[meta.version]\nanything=goes\n") == "")
    }
}

@Suite struct VerityTreeTests {
    /// Byte-compare our tree with `veritysetup format --no-superblock` for 1-, 2- and
    /// 3-level trees.
    @Test(arguments: [2, 62, 129, 16_500])
    func matchesVeritysetup(blocks: Int) throws {
        guard let vs = TestEnv.oracle("veritysetup", package: "cryptsetup-bin") else { return }
        let tmp = try TempDir("verity")
        var rng = SplitMix(seed: UInt64(blocks))
        let data = (0..<(blocks * 4096)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let dataPath = try tmp.write("data", "")
        try FileSystem.writeAtomically(dataPath, data)
        let salt = (0..<32).map { UInt8($0 * 7 & 0xFF) }
        let (tree, root) = try VerityHashTree.build(path: dataPath, dataSize: UInt64(data.count), salt: salt)
        #expect(UInt64(tree.count) == VerityHashTree.treeSize(dataSize: UInt64(data.count)))
        let hashPath = tmp.sub("hash")
        let r = try Subprocess.run([vs, "format", dataPath, hashPath, "--no-superblock", "--format=1", "--hash=sha256",
                                    "--data-block-size=4096", "--hash-block-size=4096", "--salt=\(Hex.encode(salt))"])
        let rootLine = r.stdoutText.split(separator: "\n").first { $0.hasPrefix("Root hash:") }
        #expect(rootLine?.split(separator: "\t").last.map(String.init)?.trimmingCharacters(in: .whitespaces) == Hex.encode(root))
        #expect(try FileSystem.readFile(hashPath) == tree)
    }
}

@Suite(.serialized) struct BundleOracleTests {
    @Test(arguments: [BundleFormat.plain, .verity])
    func raucAcceptsOurBundle(format: BundleFormat) throws {
        guard Rauc.available else { return }
        let f = try Fixture(format: format)
        let (out, layout) = try f.create()
        #expect(layout.format == format)
        let o = try Rauc.check(out, keyring: f.keys.keyring, in: f.tmp)
        #expect(o.accepted, "rauc rejected: \(o.log)")
        #expect(o.info.contains("Compatible: \t'osbuild-test-board'"))
        #expect(o.info.contains("Version:    \t'1.2.3'"))
        #expect(o.info.contains("Bundle Format: \t\(format.rawValue)"))
        // rauc extract reproduces every image byte-identically.
        if let dir = o.extractDir {
            for name in ["rootfs.img", "kernel.img", "hook.sh"] {
                #expect(try FileSystem.readFile(dir + "/" + name) == FileSystem.readFile(f.content + "/" + name), "\(name)")
            }
        }
        // Our own verifier agrees and ran every check.
        let v = try BundleReader.verify(out, options: f.verifyOptions())
        #expect(v.manifest.compatible == "osbuild-test-board")
        #expect(v.manifest.images.map(\.size) == [700_000, 50_000])
        #expect(v.checks.contains("image checksums"))
        #expect(v.checks.contains(format == .plain ? "payload digest" : "verity hash tree"))
        #expect(v.chain.first?.subject.contains("test signer") == true)

        if format == .verity, let vs = TestEnv.oracle("veritysetup", package: "cryptsetup-bin"), let params = v.manifest.verity {
            let data = layout.squashfsSize
            let r = try Subprocess.run([vs, "verify", out, out, Hex.encode(params.rootHash), "--no-superblock", "--format=1",
                                        "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
                                        "--data-blocks=\(data / 4096)", "--hash-offset=\(data)", "--salt=\(Hex.encode(params.salt))"], check: false)
            #expect(r.status == 0, "veritysetup verify: \(r.stderrText)")
        }
    }

    /// Bundles made by the real `rauc bundle` pass `osbuild bundle info`.
    @Test(arguments: [BundleFormat.plain, .verity])
    func weAcceptRaucBundles(format: BundleFormat) throws {
        guard Rauc.available else { return }
        let f = try Fixture(format: format, keyType: .rsa(bits: 2048))
        let out = f.tmp.sub("rauc.raucb")
        let r = try Subprocess.run(["rauc", "bundle", "--cert=\(f.keys.cert)", "--key=\(f.keys.key)", f.content, out], check: false)
        try #require(r.status == 0, "rauc bundle failed: \(r.stderrText)")
        let v = try BundleReader.verify(out, options: f.verifyOptions())
        #expect(v.format == format)
        #expect(v.manifest.version == "1.2.3")
        #expect(v.checks.contains("image checksums"))
    }

    /// Same content + SOURCE_DATE_EPOCH (+ RSA, whose signatures are deterministic) =>
    /// byte-identical bundles; rauc accepts the result.
    @Test(arguments: [BundleFormat.plain, .verity])
    func reproducible(format: BundleFormat) throws {
        let f = try Fixture(format: format, keyType: .rsa(bits: 2048))
        let (a, _) = try f.create("a.raucb", epoch: 1_700_000_000)
        // Touch the inputs: mtimes must not leak into the bundle.
        _ = utimes(f.content + "/rootfs.img", nil)
        let (b, _) = try f.create("b.raucb", epoch: 1_700_000_000)
        #expect(try FileSystem.readFile(a) == FileSystem.readFile(b))
        let (c, _) = try f.create("c.raucb", epoch: 1_700_000_001)
        #expect(try FileSystem.readFile(a) != FileSystem.readFile(c))
        if Rauc.available {
            let o = try Rauc.check(a, keyring: f.keys.keyring, in: f.tmp)
            #expect(o.accepted, "rauc rejected: \(o.log)")
        }
    }

    @Test func tamperedBundlesAreRejectedByBothTools() throws {
        guard Rauc.available else { return }
        for format in [BundleFormat.plain, .verity] {
            let f = try Fixture(format: format)
            let (good, layout) = try f.create()
            let bytes = try FileSystem.readFile(good)
            let payloadEnd = Int(layout.squashfsSize + layout.hashTreeSize)
            var cases: [(String, [UInt8], BundleError.Check)] = []
            func flipped(_ at: Int) -> [UInt8] { var b = bytes; b[at] ^= 0x40; return b }
            // A data block in the middle of the SquashFS (the image data).
            cases.append(("payload byte", flipped(Int(layout.squashfsSize) / 2), format == .plain ? .payload : .verity))
            if format == .verity {
                cases.append(("hash tree byte", flipped(Int(layout.squashfsSize) + 8), .verity))
            }
            // The last bytes of the CMS are the signature value.
            cases.append(("signature byte", flipped(Int(bytes.count) - 8 - 5), .signature))
            cases.append(("size trailer byte", flipped(bytes.count - 3), .trailer))
            cases.append(("size trailer zero", Array(bytes.dropLast(8)) + [UInt8](repeating: 0, count: 8), .trailer))
            cases.append(("truncated", Array(bytes.dropLast(1)), .trailer))
            _ = payloadEnd
            for (name, data, check) in cases {
                let p = f.tmp.sub("bad-\(name.replacingOccurrences(of: " ", with: "-")).raucb")
                try FileSystem.writeAtomically(p, data)
                do {
                    _ = try BundleReader.verify(p, options: f.verifyOptions())
                    Issue.record("\(format) \(name): osbuild accepted a tampered bundle")
                } catch {
                    #expect(BundleError.check(error) == check, "\(format) \(name): \(error)")
                    #expect("\(error)".contains("\(check.rawValue) check failed"), "\(error)")
                }
                let o = try Rauc.check(p, keyring: f.keys.keyring, in: f.tmp)
                #expect(!o.accepted, "\(format) \(name): rauc accepted it")
            }
        }
    }

    @Test func wrongKeyringAndExpiredCertificate() throws {
        guard Rauc.available else { return }
        let f = try Fixture(format: .verity)
        let (good, _) = try f.create()
        let other = try Fixture.makeKeys(in: f.tmp, keyType: .ecP256, name: "other")
        do {
            _ = try BundleReader.verify(good, options: f.verifyOptions(keyring: other.keyring))
            Issue.record("accepted with the wrong keyring")
        } catch {
            #expect(BundleError.check(error) == .signature)
            #expect("\(error)".contains("unable to get local issuer certificate"), "\(error)")
        }
        #expect(try !Rauc.check(good, keyring: other.keyring, in: f.tmp).accepted)

        let now = Int64(Date().timeIntervalSince1970)
        let expired = try Fixture.makeKeys(in: f.tmp, keyType: .ecP256, name: "expired", notAfter: now - 3600)
        let p = f.tmp.sub("expired.raucb")
        try BundleWriter.create(contentDirectory: f.content, output: p, options: BundleCreateOptions(
            identity: SigningIdentity(certPath: expired.cert, keyPath: expired.key, passphrase: nil)))
        do {
            _ = try BundleReader.verify(p, options: f.verifyOptions(keyring: expired.keyring))
            Issue.record("accepted an expired signer")
        } catch {
            #expect("\(error)".contains("certificate has expired"), "\(error)")
        }
        let o = try Rauc.check(p, keyring: expired.keyring, in: f.tmp)
        #expect(!o.accepted)
        #expect(o.log.contains("certificate has expired"), "\(o.log)")
        // Like `rauc info --no-check-time`.
        var opts = f.verifyOptions(keyring: expired.keyring)
        opts.policy.checkTime = false
        #expect(try BundleReader.verify(p, options: opts).format == .verity)
    }

    /// rauc 1.8 never re-checks image sha256; osbuild does.
    @Test func wrongImageChecksumInSignedManifest() throws {
        guard Rauc.available else { return }
        let f = try Fixture(format: .verity)
        let (good, layout) = try f.create()
        let v = try BundleReader.verify(good, options: f.verifyOptions())
        let bad = v.manifestText.replacingOccurrences(of: v.manifest.images[1].sha256 ?? "?", with: String(repeating: "0", count: 64))
        let cms = try CMS.sign(contentBytes: Array(bad.utf8), detached: false, identity: f.identity, signingTime: nil)
        let payload = try FileSystem.readFile(good).prefix(Int(layout.squashfsSize + layout.hashTreeSize))
        var n = UInt64(cms.count)
        var trailer = [UInt8](repeating: 0, count: 8)
        for i in (0..<8).reversed() { trailer[i] = UInt8(n & 0xFF); n >>= 8 }
        let p = f.tmp.sub("badsha.raucb")
        try FileSystem.writeAtomically(p, Array(payload) + cms + trailer)
        #expect(try Rauc.check(p, keyring: f.keys.keyring, in: f.tmp).accepted, "rauc 1.8 is expected to accept this")
        do {
            _ = try BundleReader.verify(p, options: f.verifyOptions())
            Issue.record("osbuild accepted a wrong image sha256")
        } catch {
            #expect(BundleError.check(error) == .image, "\(error)")
            #expect("\(error)".contains("[image.kernel] 'kernel.img' has sha256"), "\(error)")
        }
    }

    @Test(arguments: [BundleFormat.plain, .verity])
    func resignAndExtract(format: BundleFormat) throws {
        let f = try Fixture(format: format)
        let (good, layout) = try f.create()
        let newKeys = try Fixture.makeKeys(in: f.tmp, keyType: .ecP256, name: "new")
        let out = f.tmp.sub("resigned.raucb")
        try BundleReader.resign(good, output: out, options: f.verifyOptions(),
                                identity: SigningIdentity(certPath: newKeys.cert, keyPath: newKeys.key, passphrase: nil), epoch: nil)
        let v = try BundleReader.verify(out, options: f.verifyOptions(keyring: newKeys.keyring))
        #expect(v.chain.first?.subject.contains("new signer") == true)
        #expect(throws: BundleError.self) { try BundleReader.verify(out, options: f.verifyOptions()) }
        // Payload untouched.
        let n = Int(layout.squashfsSize + layout.hashTreeSize)
        #expect(try FileSystem.readFile(out).prefix(n) == FileSystem.readFile(good).prefix(n))
        if Rauc.available {
            #expect(try Rauc.check(out, keyring: newKeys.keyring, in: f.tmp).accepted)
            // `rauc resign` also checks the internal (SquashFS) manifest of our bundle.
            let r = try Subprocess.run(["rauc", "resign", "--keyring=\(newKeys.keyring)", "--cert=\(f.keys.cert)",
                                        "--key=\(f.keys.key)", "--signing-keyring=\(f.keys.keyring)", out, f.tmp.sub("rauc-resigned.raucb")], check: false)
            #expect(r.status == 0, "rauc resign: \(r.stderrText)")
            _ = try BundleReader.verify(f.tmp.sub("rauc-resigned.raucb"), options: f.verifyOptions())
        }
        let dir = f.tmp.sub("x")
        try BundleReader.extract(out, to: dir, options: f.verifyOptions(keyring: newKeys.keyring))
        for name in ["rootfs.img", "kernel.img", "hook.sh", "manifest.raucm"] {
            #expect(FileSystem.exists(dir + "/" + name), "\(name)")
        }
        #expect(try FileSystem.readFile(dir + "/rootfs.img") == FileSystem.readFile(f.content + "/rootfs.img"))
    }

    @Test func inputErrorsLeaveNoOutput() throws {
        let f = try Fixture(format: .verity, extraManifest: "\n[image.data]\nfilename=missing.img\n")
        let out = f.tmp.sub("o.raucb")
        #expect { try f.create("o.raucb") } throws: { "\($0)".contains("image file 'missing.img' for slot class 'data' does not exist") }
        #expect(!FileSystem.exists(out))
        #expect(try FileSystem.listDirectory(f.tmp.path).allSatisfy { !$0.hasPrefix(".osbuild-tmp") })
        let g = try Fixture(format: .plain)
        #expect { try BundleWriter.create(contentDirectory: g.content, output: g.content + "/x.raucb", options: .init(identity: g.identity)) }
            throws: { "\($0)".contains("outside the content directory") }
    }
}

@Suite(.serialized) struct KeysAndConfigTests {
    @Test func developmentKeysWorkWithRaucAndReleaseRefusesThem() throws {
        let tmp = try TempDir("devkeys")
        let (paths, generated) = try DevelopmentKeys.ensure(in: tmp.sub("keys"), keyType: .rsa(bits: 2048))
        #expect(generated)
        #expect(try DevelopmentKeys.ensure(in: tmp.sub("keys")).generated == false)
        #expect(try FileSystem.stat(paths.key).mode & 0o777 == 0o600)
        #expect(try DevelopmentKeys.isDevelopment(certificate: paths.cert))
        #expect(throws: BundleError.self) { try DevelopmentKeys.checkSigningAllowed(paths.identity, release: true) }
        try DevelopmentKeys.checkSigningAllowed(paths.identity, release: false)

        let f = try Fixture(format: .verity)
        let out = tmp.sub("dev.raucb")
        try BundleWriter.create(contentDirectory: f.content, output: out, options: .init(identity: paths.identity))
        let keyring = tmp.sub("keyring.pem")
        try FileSystem.writeAtomically(keyring, Keyring.assemble(releaseCertificates: [f.keys.keyring], developmentCertificate: paths.caCert, release: false))
        _ = try BundleReader.verify(out, options: BundleVerifyOptions(policy: KeyringPolicy(keyringPath: keyring, checkPurpose: "codesign")))
        let releaseRing = tmp.sub("release.pem")
        try FileSystem.writeAtomically(releaseRing, Keyring.assemble(releaseCertificates: [f.keys.keyring], developmentCertificate: paths.caCert, release: true))
        #expect(throws: BundleError.self) { try BundleReader.verify(out, options: BundleVerifyOptions(policy: KeyringPolicy(keyringPath: releaseRing))) }
        guard Rauc.available else { return }
        #expect(try Rauc.check(out, keyring: keyring, in: tmp).accepted)
        #expect(try !Rauc.check(out, keyring: releaseRing, in: tmp).accepted)
        // rauc's check-purpose=codesign accepts the development signer too.
        let conf = try tmp.write("codesign.conf", "[system]\ncompatible=osbuild-test-board\nbootloader=noop\n\n[keyring]\ncheck-purpose=codesign\n")
        #expect(try Rauc.check(out, keyring: keyring, conf: conf, in: tmp).accepted)
    }

    @Test func codeSigningOnlyCertificateFollowsRaucPurposeRules() throws {
        let f = try Fixture(format: .plain)
        let cs = try Fixture.makeKeys(in: f.tmp, keyType: .ecP256, name: "cs", leafEKU: "codeSigning")
        let out = f.tmp.sub("cs.raucb")
        try BundleWriter.create(contentDirectory: f.content, output: out, options: .init(
            identity: SigningIdentity(certPath: cs.cert, keyPath: cs.key, passphrase: nil)))
        #expect { try BundleReader.verify(out, options: f.verifyOptions(keyring: cs.keyring)) }
            throws: { "\($0)".contains("unsuitable certificate purpose") }
        _ = try BundleReader.verify(out, options: BundleVerifyOptions(policy: KeyringPolicy(keyringPath: cs.keyring, checkPurpose: "codesign")))
        guard Rauc.available else { return }
        #expect(try !Rauc.check(out, keyring: cs.keyring, in: f.tmp).accepted)
        let conf = try f.tmp.write("codesign.conf", "[system]\ncompatible=osbuild-test-board\nbootloader=noop\n\n[keyring]\ncheck-purpose=codesign\n")
        #expect(try Rauc.check(out, keyring: cs.keyring, conf: conf, in: f.tmp).accepted)
    }

    /// rauc parses --conf on context setup; `rauc --conf=F --keyring=K info B` fails with
    /// "Failed to load system config" on any error in F, so acceptance here = parser OK.
    @Test(arguments: [
        RaucSystemConfig.Bootloader.grub(grubenv: "/boot/EFI/BOOT/grubenv"), .uboot, .custom(backend: "/usr/lib/osbuild/tryboot-backend"),
    ])
    func systemConfIsAcceptedByRauc(bootloader: RaucSystemConfig.Bootloader) throws {
        let conf = RaucSystemConfig(
            compatible: "osbuild-test-board", bootloader: bootloader, statusFile: "/data/rauc.status",
            bundleFormats: ["-plain"], keyringPath: "/etc/rauc/keyring.pem",
            slots: RaucSystemConfig.abSlots(partitionLabel: { "osb-\($0)" + ($1.isEmpty ? "" : "-\($1)") }))
        let text = try conf.render()
        #expect(text.contains("[slot.rootfs.1]\ndevice=/dev/disk/by-partlabel/osb-rootfs-b\ntype=raw\nparent=kernel.1\n"))
        #expect(text.contains("[slot.kernel.0]\ndevice=/dev/disk/by-partlabel/osb-kernel-a\ntype=raw\nbootname=A\n"))
        guard Rauc.available else { return }
        let f = try Fixture(format: .verity)
        let (out, _) = try f.create()
        let path = try f.tmp.write("system.conf", text)
        let o = try Rauc.check(out, keyring: f.keys.keyring, conf: path, in: f.tmp)
        #expect(o.accepted, "\(o.log)\n\(text)")
        // And a broken one is rejected (the check can fail).
        let broken = try f.tmp.write("broken.conf", text.replacingOccurrences(of: "bootloader=", with: "bootloader=nonsense-"))
        #expect(try !Rauc.check(out, keyring: f.keys.keyring, conf: broken, in: f.tmp).accepted)
    }

    @Test func systemConfValidation() throws {
        let slots = [RaucSystemConfig.Slot(slotClass: "rootfs", index: 0, device: "/dev/x", type: "raw", parent: "kernel.0")]
        #expect { try RaucSystemConfig(compatible: "b", bootloader: .uboot, slots: slots).render() }
            throws: { "\($0)".contains("parent 'kernel.0' is not a defined slot") }
    }
}

@Suite(.serialized) struct AdaptiveTests {
    /// Our `<image>.block-hash-index` equals the one real `rauc bundle` writes.
    @Test func blockHashIndexMatchesRauc() throws {
        guard Rauc.available else { return }
        let f = try Fixture(format: .verity, rootfsSize: 4096 * 300)
        let manifest = try FileSystem.readText(f.content + "/manifest.raucm")
            .replacingOccurrences(of: "filename=rootfs.img\n", with: "filename=rootfs.img\nadaptive=block-hash-index;\n")
        try FileSystem.writeAtomically(f.content + "/manifest.raucm", manifest)
        let (ours, _) = try f.create()
        let mine = f.tmp.sub("mine")
        try BundleReader.extract(ours, to: mine, options: f.verifyOptions())
        // rauc rewrites the content dir; give it a copy.
        let raucContent = f.tmp.sub("rauc-content")
        _ = try Subprocess.run(["cp", "-a", f.content, raucContent])
        let theirs = f.tmp.sub("rauc.raucb")
        _ = try Subprocess.run(["rauc", "bundle", "--cert=\(f.keys.cert)", "--key=\(f.keys.key)", raucContent, theirs])
        let index = try FileSystem.readFile(mine + "/rootfs.img.block-hash-index")
        #expect(index.count == 300 * 32)
        #expect(index == (try FileSystem.readFile(raucContent + "/rootfs.img.block-hash-index")))
        let o = try Rauc.check(ours, keyring: f.keys.keyring, in: f.tmp)
        #expect(o.accepted, "\(o.log)")
        #expect(o.info.contains("Adaptive:  block-hash-index"), "\(o.info)")
    }
}

@Suite(.serialized) struct ChainAndFailureTests {
    /// root CA -> intermediate CA -> signer; the keyring holds only the root; the
    /// intermediate travels in the CMS (`--intermediate`).
    @Test func intermediateChain() throws {
        let f = try Fixture(format: .plain)
        let now = Int64(Date().timeIntervalSince1970)
        let root = try Certificates.issue(.init(commonName: "Root", notBefore: now - 60, notAfter: now + 86400, isCA: true,
                                                keyUsage: "critical,keyCertSign,cRLSign"), keyType: .ecP256)
        let inter = try Certificates.issue(.init(commonName: "Intermediate", notBefore: now - 60, notAfter: now + 86400, isCA: true,
                                                 keyUsage: "critical,keyCertSign,cRLSign"), keyType: .ecP256, issuer: root)
        let leaf = try Certificates.issue(.init(commonName: "Leaf", notBefore: now - 60, notAfter: now + 86400, isCA: false,
                                                keyUsage: "critical,digitalSignature", extendedKeyUsage: "codeSigning,emailProtection"),
                                          keyType: .ecP256, issuer: inter)
        let rootPath = try f.tmp.write("root.pem", root.certPEM)
        let interPath = try f.tmp.write("inter.pem", inter.certPEM)
        let leafPath = try f.tmp.write("leaf.pem", leaf.certPEM)
        let keyPath = try f.tmp.write("leaf.key", leaf.keyPEM)
        let out = f.tmp.sub("chain.raucb")
        let withChain = SigningIdentity(certPath: leafPath, keyPath: keyPath, intermediatePaths: [interPath], passphrase: nil)
        try BundleWriter.create(contentDirectory: f.content, output: out, options: .init(identity: withChain))
        let v = try BundleReader.verify(out, options: f.verifyOptions(keyring: rootPath))
        #expect(v.chain.map { $0.subject } == ["CN = Leaf", "CN = Intermediate", "CN = Root"])
        if Rauc.available { #expect(try Rauc.check(out, keyring: rootPath, in: f.tmp).accepted) }

        // Without the intermediate the chain cannot be built, by either tool.
        let bare = f.tmp.sub("bare.raucb")
        try BundleWriter.create(contentDirectory: f.content, output: bare, options: .init(
            identity: SigningIdentity(certPath: leafPath, keyPath: keyPath, passphrase: nil)))
        #expect { try BundleReader.verify(bare, options: f.verifyOptions(keyring: rootPath)) }
            throws: { "\($0)".contains("unable to get local issuer certificate") }
        if Rauc.available { #expect(try !Rauc.check(bare, keyring: rootPath, in: f.tmp).accepted) }
    }

    @Test func signingErrorsAreClearAndAtomic() throws {
        let f = try Fixture(format: .verity)
        let other = try Fixture.makeKeys(in: f.tmp, keyType: .ecP256, name: "other")
        let out = f.tmp.sub("o.raucb")
        #expect {
            try BundleWriter.create(contentDirectory: f.content, output: out, options: .init(
                identity: SigningIdentity(certPath: f.keys.cert, keyPath: other.key, passphrase: nil)))
        } throws: { "\($0)".contains("private key does not belong to certificate") }
        #expect { try BundleWriter.create(contentDirectory: f.content, output: out,
                                          options: .init(identity: f.identity, mksquashfsArguments: ["-comp", "bogus"])) }
            throws: { "\($0)" == "payload compressor 'bogus' is not supported (gzip, xz, lz4, zstd)" }
        #expect { try BundleWriter.create(contentDirectory: f.content, output: out,
                                          options: .init(identity: f.identity, veritySalt: [1, 2, 3])) }
            throws: { "\($0)".contains("32 bytes") }
        #expect(!FileSystem.exists(out))
        #expect(try FileSystem.listDirectory(f.tmp.path).allSatisfy { !$0.hasPrefix(".osbuild-tmp") })
        // A previous good bundle at the path survives a failed rebuild.
        let (good, _) = try f.create("o.raucb")
        let before = try FileSystem.readFile(good)
        #expect(throws: (any Error).self) {
            try BundleWriter.create(contentDirectory: f.content, output: out,
                                    options: .init(identity: f.identity, mksquashfsArguments: ["-comp", "bogus"]))
        }
        #expect(try FileSystem.readFile(out) == before)
    }

    /// Fixed salt: the manifest carries it and the tree is built with it.
    @Test func fixedSalt() throws {
        let f = try Fixture(format: .verity)
        let salt = [UInt8](repeating: 0xAB, count: 32)
        let (out, _) = try f.create(salt: salt)
        let v = try BundleReader.verify(out, options: f.verifyOptions())
        #expect(v.manifest.verity?.salt == salt)
        #expect(v.manifestText.contains("verity-salt=" + String(repeating: "ab", count: 32)))
    }
}

@Suite(.serialized) struct RecipeTests {
    @Test func boardRecipeWithDevelopmentKeys() throws {
        let tmp = try TempDir("recipe")
        // Compresses to a single 4 KiB block: exercises the tiny-payload padding.
        let img = try tmp.write("build/rootfs.squashfs", String(repeating: "rootfs data ", count: 20_000))
        let kernel = try tmp.write("build/Image", String(repeating: "kernel ", count: 9_000))
        let hook = try tmp.write("build/hook", "#!/bin/sh\nexit 0\n", mode: 0o755)
        let choice = try BundleSigning.resolve(cert: nil, key: nil, developmentKeysDirectory: tmp.sub("keys"), release: false)
        #expect(choice.warning == DevelopmentKeys.warning)
        #expect(choice.generatedKeys)
        #expect(throws: BundleError.self) {
            try BundleSigning.resolve(cert: nil, key: nil, developmentKeysDirectory: tmp.sub("keys"), release: true)
        }
        #expect(throws: BundleError.self) {
            try BundleSigning.resolve(cert: choice.identity.certPath, key: choice.identity.keyPath,
                                      developmentKeysDirectory: tmp.sub("keys"), release: true)
        }
        let recipe = BundleRecipe(compatible: "board-x", version: "2026.11", format: .verity, hookScript: hook,
                                  bundleHooks: ["install-check"], images: [
                                      .init(slotClass: "rootfs", source: img, hooks: ["post-install"]),
                                      .init(slotClass: "kernel", source: kernel, filename: "kernel.img"),
                                  ])
        let out = tmp.sub("board-x.raucb")
        try recipe.createBundle(stagingDirectory: tmp.sub("stage"), output: out, options: .init(identity: choice.identity))
        let ca = try #require(choice.developmentCA)
        let v = try BundleReader.verify(out, options: BundleVerifyOptions(policy: KeyringPolicy(keyringPath: ca)))
        #expect(v.manifest.images.map(\.filename) == ["rootfs.squashfs", "kernel.img"])
        #expect(v.manifest.hookFilename == "hook")
        if Rauc.available {
            let o = try Rauc.check(out, keyring: ca, in: tmp)
            #expect(o.accepted, "\(o.log)")
            #expect(o.info.contains("'board-x'"))
        }
    }
}
