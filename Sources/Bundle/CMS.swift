import Basics
import COpenSSL
import Foundation

/// Drains OpenSSL's thread-local error queue into one line (the `data` text, e.g.
/// "Verify error: certificate has expired", when OpenSSL attached one).
func takeOpenSSLErrors() -> String {
    var parts: [String] = []
    while true {
        var data: UnsafePointer<CChar>?
        var flags: Int32 = 0
        let e = ERR_get_error_all(nil, nil, nil, &data, &flags)
        if e == 0 { break }
        if flags & ERR_TXT_STRING != 0, let data, data.pointee != 0 {
            parts.append(String(cString: data))
        } else if let r = ERR_reason_error_string(e) {
            parts.append(String(cString: r))
        } else {
            parts.append("OpenSSL error 0x" + String(e, radix: 16))
        }
    }
    return parts.isEmpty ? "unknown OpenSSL error" : parts.joined(separator: "; ")
}

/// An owned OpenSSL BIO.
final class OwnedBIO {
    let bio: OpaquePointer
    init(_ b: OpaquePointer?, what: String) throws {
        guard let b else { throw BundleError(.input, path: nil, "OpenSSL: cannot open \(what): \(takeOpenSSLErrors())") }
        bio = b
    }
    static func memory() throws -> OwnedBIO { try OwnedBIO(BIO_new(BIO_s_mem()), what: "memory buffer") }
    static func file(_ path: String) throws -> OwnedBIO {
        guard FileSystem.exists(path) else { throw SystemError("open", path: path, errno: ENOENT) }
        return try OwnedBIO(BIO_new_file(path, "rb"), what: path)
    }
    deinit { BIO_free_all(bio) }

    func readAll() -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32($0.count)) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<Int(n)])
        }
        return out
    }
}

/// Certificate facts shown by `bundle info` (the same lines `rauc info` prints).
public struct CertificateInfo: Sendable, Equatable, Codable {
    public var subject: String
    public var issuer: String
    public var notBefore: String
    public var notAfter: String
    public var spkiSHA256: String
}

func describeName(_ name: OpaquePointer?) -> String {
    guard let name, let bio = try? OwnedBIO.memory() else { return "?" }
    // XN_FLAG_ONELINE ("O = Org, CN = Name"), the format rauc prints.
    // The macro is not importable; its value spelled out from x509.h/asn1.h.
    let oneline = UInt(ASN1_STRFLGS_ESC_2253 | ASN1_STRFLGS_ESC_CTRL | ASN1_STRFLGS_ESC_MSB | ASN1_STRFLGS_UTF8_CONVERT
        | ASN1_STRFLGS_DUMP_UNKNOWN | ASN1_STRFLGS_DUMP_DER | ASN1_STRFLGS_ESC_QUOTE) | UInt(2 << 16) | UInt(1 << 23)
    X509_NAME_print_ex(bio.bio, name, 0, oneline)
    return String(decoding: bio.readAll(), as: UTF8.self)
}

func describeTime(_ t: UnsafePointer<ASN1_TIME>?) -> String {
    guard let t, let bio = try? OwnedBIO.memory() else { return "?" }
    ASN1_TIME_print(bio.bio, t)
    return String(decoding: bio.readAll(), as: UTF8.self)
}

func certificateInfo(_ x: OpaquePointer) -> CertificateInfo {
    var spki = ""
    if let key = X509_get_X509_PUBKEY(x) {
        var der: UnsafeMutablePointer<UInt8>?
        let n = i2d_X509_PUBKEY(key, &der)
        if n > 0, let der {
            spki = SHA256.hex(Array(UnsafeBufferPointer(start: der, count: Int(n))))
            CRYPTO_free(der, #fileID, #line)
        }
    }
    return CertificateInfo(
        subject: describeName(X509_get_subject_name(x)),
        issuer: describeName(X509_get_issuer_name(x)),
        notBefore: describeTime(X509_get0_notBefore(x)),
        notAfter: describeTime(X509_get0_notAfter(x)),
        spkiSHA256: spki)
}

/// Key + certificate (+ intermediates) used to sign a bundle.
public struct SigningIdentity: Sendable {
    public var certPath: String
    public var keyPath: String
    public var intermediatePaths: [String]
    /// For encrypted PEM keys; defaults to $RAUC_KEY_PASSPHRASE like rauc.
    public var passphrase: String?

    public init(certPath: String, keyPath: String, intermediatePaths: [String] = [], passphrase: String? = ProcessInfo.processInfo.environment["RAUC_KEY_PASSPHRASE"]) {
        self.certPath = certPath
        self.keyPath = keyPath
        self.intermediatePaths = intermediatePaths
        self.passphrase = passphrase
    }
}

final class X509Stack {
    let stack: OpaquePointer
    init() throws {
        guard let s = OPENSSL_sk_new_null() else { throw BundleError(.input, path: nil, "out of memory") }
        stack = s
    }
    deinit {
        for i in 0..<count { X509_free(OpaquePointer(OPENSSL_sk_value(stack, Int32(i)))) }
        OPENSSL_sk_free(stack)
    }
    var count: Int { Int(OPENSSL_sk_num(stack)) }
    func push(_ x: OpaquePointer) { OPENSSL_sk_push(stack, UnsafeRawPointer(x)) }
}

enum PEM {
    static func certificates(_ path: String) throws -> [OpaquePointer] {
        let bio = try OwnedBIO.file(path)
        var certs: [OpaquePointer] = []
        while let x = PEM_read_bio_X509(bio.bio, nil, nil, nil) { certs.append(x) }
        ERR_clear_error()  // the final read reports "no start line"
        guard !certs.isEmpty else {
            throw BundleError(.key, path: path, "no PEM certificate found (expected '-----BEGIN CERTIFICATE-----')")
        }
        return certs
    }

    static func privateKey(_ path: String, passphrase: String?) throws -> OpaquePointer {
        let bio = try OwnedBIO.file(path)
        let key: OpaquePointer? = if let passphrase {
            passphrase.withCString { PEM_read_bio_PrivateKey(bio.bio, nil, nil, UnsafeMutableRawPointer(mutating: $0)) }
        } else {
            PEM_read_bio_PrivateKey(bio.bio, nil, nil, nil)
        }
        guard let key else {
            throw BundleError(.key, path: path, "cannot read PEM private key: \(takeOpenSSLErrors()) (encrypted keys need RAUC_KEY_PASSPHRASE)")
        }
        return key
    }
}

enum CMS {
    static let maxSize = 65536

    /// Signs `content` (a whole file for detached plain signatures, or bytes embedded as
    /// eContent for verity) the way rauc does: SHA-256, binary, no smimeCapabilities.
    /// With `signingTime` the signingTime attribute is pinned (reproducible builds);
    /// otherwise OpenSSL stamps the current time.
    static func sign(contentFile: String? = nil, contentBytes: [UInt8]? = nil, detached: Bool,
                     identity: SigningIdentity, signingTime: Int64?) throws -> [UInt8] {
        let certs = try PEM.certificates(identity.certPath)
        defer { certs.forEach { X509_free($0) } }
        let key = try PEM.privateKey(identity.keyPath, passphrase: identity.passphrase)
        defer { EVP_PKEY_free(key) }
        guard X509_check_private_key(certs[0], key) == 1 else {
            ERR_clear_error()
            throw BundleError(.key, path: identity.keyPath, "private key does not belong to certificate \(identity.certPath)")
        }
        let chain = try X509Stack()
        for p in identity.intermediatePaths {
            for x in try PEM.certificates(p) { chain.push(x) }
        }
        var flags = UInt32(CMS_BINARY | CMS_NOSMIMECAP | CMS_PARTIAL)
        if detached { flags |= UInt32(CMS_DETACHED) }
        guard let cms = CMS_sign(certs[0], key, chain.count > 0 ? chain.stack : nil, nil, flags) else {
            throw BundleError(.key, path: identity.certPath, "CMS signing setup failed: \(takeOpenSSLErrors())")
        }
        defer { CMS_ContentInfo_free(cms) }
        if let signingTime {
            guard let infos = CMS_get0_SignerInfos(cms), OPENSSL_sk_num(infos) == 1,
                  let si = OPENSSL_sk_value(infos, 0), let t = ASN1_TIME_set(nil, time_t(signingTime)) else {
                throw BundleError(.key, path: identity.certPath, "cannot set CMS signing time: \(takeOpenSSLErrors())")
            }
            defer { ASN1_TIME_free(t) }
            // ASN1_TIME_set picks UTCTime for 1950-2049 as RFC 5652 requires.
            guard CMS_signed_add1_attr_by_NID(OpaquePointer(si), NID_pkcs9_signingTime, ASN1_STRING_type(t), UnsafeRawPointer(t), -1) == 1 else {
                throw BundleError(.key, path: identity.certPath, "cannot set CMS signing time: \(takeOpenSSLErrors())")
            }
        }
        let data: OwnedBIO
        if let contentFile {
            data = try OwnedBIO.file(contentFile)
        } else {
            let bytes = contentBytes ?? []
            data = try OwnedBIO.memory()
            _ = bytes.withUnsafeBytes { BIO_write(data.bio, $0.baseAddress, Int32($0.count)) }
        }
        guard CMS_final(cms, data.bio, nil, flags) == 1 else {
            throw BundleError(.key, path: identity.certPath, "CMS signing failed: \(takeOpenSSLErrors())")
        }
        let out = try OwnedBIO.memory()
        guard i2d_CMS_bio(out.bio, cms) == 1 else {
            throw BundleError(.key, path: identity.certPath, "CMS encoding failed: \(takeOpenSSLErrors())")
        }
        let der = out.readAll()
        guard der.count <= maxSize else {
            throw BundleError(.key, path: identity.certPath, "signature is \(der.count) bytes; RAUC accepts at most 65536 (fewer or smaller intermediate certificates?)")
        }
        return der
    }
}

/// How the keyring is applied; mirrors rauc's `[keyring]` options.
public struct KeyringPolicy: Sendable {
    public var keyringPath: String
    /// nil = OpenSSL's CMS default (S/MIME signing), as rauc without `check-purpose`;
    /// "codesign" = rauc's own code-signing purpose; any OpenSSL short name ("any", "smimesign").
    public var checkPurpose: String?
    public var checkTime: Bool
    public var allowPartialChain: Bool

    public init(keyringPath: String, checkPurpose: String? = nil, checkTime: Bool = true, allowPartialChain: Bool = false) {
        self.keyringPath = keyringPath
        self.checkPurpose = checkPurpose
        self.checkTime = checkTime
        self.allowPartialChain = allowPartialChain
    }
}

/// Result of a successful CMS verification.
struct VerifiedCMS {
    var detached: Bool
    /// eContent (the signed manifest) for inline signatures.
    var content: [UInt8]?
    /// messageDigest signed attribute (SHA-256 of the content) for detached signatures.
    var messageDigest: [UInt8]?
    var chain: [CertificateInfo]
    var signingTime: String?
}

/// rauc's "codesign" purpose rules, registered once with OpenSSL.
private let codesignPurposeID: Int32 = {
    let sname = "codesign"
    let existing = X509_PURPOSE_get_by_sname(sname)
    if existing >= 0, let p = X509_PURPOSE_get0(existing) { return X509_PURPOSE_get_id(p) }
    let id = X509_PURPOSE_get_count() + 1 + Int32(X509_PURPOSE_MAX)
    let check: @convention(c) (UnsafePointer<x509_purpose_st>?, OpaquePointer?, Int32) -> Int32 = { _, x, ca in
        guard let x else { return 0 }
        let flags = X509_get_extension_flags(x)
        let ku = X509_get_key_usage(x)
        let xku = X509_get_extended_key_usage(x)
        if ca != 0 {
            if flags & UInt32(EXFLAG_XKUSAGE) != 0 && xku & UInt32(XKU_CODE_SIGN) == 0 { return 0 }
            return X509_check_ca(x)
        }
        if flags & UInt32(EXFLAG_KUSAGE) != 0 && ku & UInt32(KU_DIGITAL_SIGNATURE) == 0 { return 0 }
        if flags & UInt32(EXFLAG_XKUSAGE) == 0 || xku & UInt32(XKU_CODE_SIGN) == 0 { return 0 }
        return 1
    }
    let name = strdup("Code signing"), sn = strdup(sname)
    defer { free(name); free(sn) }
    guard X509_PURPOSE_add(id, Int32(X509_TRUST_OBJECT_SIGN), 0, check, name, sn, nil) == 1 else { return -1 }
    return id
}()

extension CMS {
    static func makeStore(_ policy: KeyringPolicy) throws -> OpaquePointer {
        guard let store = X509_STORE_new() else { throw BundleError(.signature, path: nil, "out of memory") }
        var ok = false
        defer { if !ok { X509_STORE_free(store) } }
        let st = try FileSystem.stat(policy.keyringPath)
        let loaded = st.isDirectory ? X509_STORE_load_path(store, policy.keyringPath) : X509_STORE_load_file(store, policy.keyringPath)
        guard loaded == 1 else {
            throw BundleError(.input, path: policy.keyringPath, "cannot load keyring: \(takeOpenSSLErrors())")
        }
        var flags: UInt = 0
        if !policy.checkTime { flags |= UInt(X509_V_FLAG_NO_CHECK_TIME) }
        if policy.allowPartialChain { flags |= UInt(X509_V_FLAG_PARTIAL_CHAIN) }
        if flags != 0 { X509_STORE_set_flags(store, flags) }
        if let purpose = policy.checkPurpose {
            let id: Int32
            if purpose == "codesign" {
                id = codesignPurposeID
            } else {
                let idx = X509_PURPOSE_get_by_sname(purpose)
                guard idx >= 0, let p = X509_PURPOSE_get0(idx) else {
                    throw BundleError(.input, path: nil, "unknown certificate purpose '\(purpose)' (use codesign, smimesign or any)")
                }
                id = X509_PURPOSE_get_id(p)
            }
            guard id >= 0, X509_STORE_set_purpose(store, id) == 1 else {
                throw BundleError(.input, path: nil, "cannot configure certificate purpose '\(purpose)': \(takeOpenSSLErrors())")
            }
        }
        ok = true
        return store
    }

    /// Verifies signature and certificate chain. For detached signatures the content
    /// digest is NOT checked here: the caller streams the payload and compares it with
    /// `messageDigest` (so multi-GiB payloads are never held in memory).
    static func verify(der: [UInt8], policy: KeyringPolicy, bundlePath: String) throws -> VerifiedCMS {
        ERR_clear_error()
        let input = try OwnedBIO.memory()
        _ = der.withUnsafeBytes { BIO_write(input.bio, $0.baseAddress, Int32($0.count)) }
        guard let cms = d2i_CMS_bio(input.bio, nil) else {
            ERR_clear_error()
            throw BundleError(.signature, path: bundlePath, "signature data is not a valid CMS structure")
        }
        defer { CMS_ContentInfo_free(cms) }
        guard OBJ_obj2nid(CMS_get0_type(cms)) == NID_pkcs7_signed else {
            throw BundleError(.signature, path: bundlePath, "CMS is not signedData (encrypted 'crypt' bundles are not supported)")
        }
        let store = try makeStore(policy)
        defer { X509_STORE_free(store) }
        let detached = CMS_is_detached(cms) == 1
        let out = try OwnedBIO.memory()
        let ok: Int32
        if detached {
            // A read-only empty buffer: reads give EOF (a writable empty mem BIO reports
            // "retry", which CMS_verify treats as a failure).
            let empty = try OwnedBIO(BIO_new_mem_buf("", 0), what: "memory buffer")
            ok = CMS_verify(cms, nil, store, empty.bio, nil, UInt32(CMS_DETACHED | CMS_BINARY | CMS_NO_CONTENT_VERIFY))
        } else {
            ok = CMS_verify(cms, nil, store, nil, out.bio, UInt32(CMS_BINARY))
        }
        guard ok == 1 else {
            throw BundleError(.signature, path: bundlePath, "signature verification failed: \(takeOpenSSLErrors())")
        }
        var result = VerifiedCMS(detached: detached, content: detached ? nil : out.readAll(), messageDigest: nil, chain: [], signingTime: nil)
        guard let infos = CMS_get0_SignerInfos(cms), OPENSSL_sk_num(infos) >= 1 else {
            throw BundleError(.signature, path: bundlePath, "CMS has no signer")
        }
        if detached {
            var digest: [UInt8]?
            for i in 0..<OPENSSL_sk_num(infos) {
                guard let si = OPENSSL_sk_value(infos, i).map(OpaquePointer.init) else { continue }
                var alg: UnsafeMutablePointer<X509_ALGOR>?
                CMS_SignerInfo_get0_algs(si, nil, nil, &alg, nil)
                var obj: OpaquePointer?
                X509_ALGOR_get0(&obj, nil, nil, alg)
                guard OBJ_obj2nid(obj) == NID_sha256 else {
                    throw BundleError(.signature, path: bundlePath, "signer \(i) uses digest \(String(cString: OBJ_nid2sn(OBJ_obj2nid(obj)))); only sha256 is supported")
                }
                guard let md = CMS_signed_get0_data_by_OBJ(si, OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING) else {
                    throw BundleError(.signature, path: bundlePath, "detached signature has no messageDigest attribute")
                }
                let s = UnsafePointer(md.assumingMemoryBound(to: ASN1_STRING.self))
                let bytes = Array(UnsafeBufferPointer(start: ASN1_STRING_get0_data(s), count: Int(ASN1_STRING_length(s))))
                if let d = digest, d != bytes {
                    throw BundleError(.signature, path: bundlePath, "signers disagree on the payload digest")
                }
                digest = bytes
            }
            result.messageDigest = digest
        }
        if let si = OPENSSL_sk_value(infos, 0).map(OpaquePointer.init) {
            let idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1)
            if idx >= 0, let attr = CMS_signed_get_attr(si, idx), let type = X509_ATTRIBUTE_get0_type(attr, 0) {
                result.signingTime = describeTime(UnsafePointer(type.pointee.value.utctime))
            }
        }
        result.chain = try chain(cms: cms, store: store, bundlePath: bundlePath)
        return result
    }

    /// The verified chain of the first signer (leaf first), as rauc prints it.
    static func chain(cms: OpaquePointer, store: OpaquePointer, bundlePath: String) throws -> [CertificateInfo] {
        guard let signers = CMS_get0_signers(cms) else { return [] }
        defer { OPENSSL_sk_free(signers) }
        guard OPENSSL_sk_num(signers) > 0, let leaf = OPENSSL_sk_value(signers, 0).map(OpaquePointer.init) else { return [] }
        let certs = CMS_get1_certs(cms)
        defer {
            if let certs {
                for i in 0..<OPENSSL_sk_num(certs) { X509_free(OpaquePointer(OPENSSL_sk_value(certs, i))) }
                OPENSSL_sk_free(certs)
            }
        }
        guard let ctx = X509_STORE_CTX_new() else { return [] }
        defer { X509_STORE_CTX_free(ctx) }
        guard X509_STORE_CTX_init(ctx, store, leaf, certs) == 1, X509_verify_cert(ctx) == 1,
              let chain = X509_STORE_CTX_get1_chain(ctx) else {
            let err = String(cString: X509_verify_cert_error_string(Int(X509_STORE_CTX_get_error(ctx))))
            throw BundleError(.signature, path: bundlePath, "certificate chain check failed: \(err)")
        }
        defer {
            for i in 0..<OPENSSL_sk_num(chain) { X509_free(OpaquePointer(OPENSSL_sk_value(chain, i))) }
            OPENSSL_sk_free(chain)
        }
        var infos: [CertificateInfo] = []
        for i in 0..<OPENSSL_sk_num(chain) {
            if let x = OPENSSL_sk_value(chain, i) { infos.append(certificateInfo(OpaquePointer(x))) }
        }
        return infos
    }
}
