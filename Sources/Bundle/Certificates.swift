import Basics
import COpenSSL
import Foundation

/// Key and X.509 certificate generation through OpenSSL (no openssl CLI needed).
public enum Certificates {
    public enum KeyType: Sendable, Equatable {
        case rsa(bits: Int32)
        case ecP256
    }

    public struct Request: Sendable {
        public var commonName: String
        public var organization: String?
        public var organizationalUnit: String?
        public var notBefore: Int64
        public var notAfter: Int64
        public var isCA: Bool
        /// OpenSSL extension syntax, e.g. "critical,digitalSignature"; nil = no extension.
        public var keyUsage: String?
        public var extendedKeyUsage: String?

        public init(commonName: String, organization: String? = nil, organizationalUnit: String? = nil,
                    notBefore: Int64, notAfter: Int64, isCA: Bool,
                    keyUsage: String? = nil, extendedKeyUsage: String? = nil) {
            self.commonName = commonName
            self.organization = organization
            self.organizationalUnit = organizationalUnit
            self.notBefore = notBefore
            self.notAfter = notAfter
            self.isCA = isCA
            self.keyUsage = keyUsage
            self.extendedKeyUsage = extendedKeyUsage
        }
    }

    /// PEM text of a key and a certificate.
    public struct Issued: Sendable {
        public var keyPEM: String
        public var certPEM: String
    }

    final class Key {
        let pkey: OpaquePointer
        init(_ p: OpaquePointer) { pkey = p }
        deinit { EVP_PKEY_free(pkey) }
    }

    final class Cert {
        let x: OpaquePointer
        init(_ p: OpaquePointer) { x = p }
        deinit { X509_free(x) }
    }

    static func fail(_ what: String) -> BundleError {
        BundleError(.key, path: nil, "\(what): \(takeOpenSSLErrors())")
    }

    static func generateKey(_ type: KeyType) throws -> Key {
        let name = if case .rsa = type { "RSA" } else { "EC" }
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, name, nil) else { throw fail("key generation setup") }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_keygen_init(ctx) == 1 else { throw fail("key generation setup") }
        switch type {
        case let .rsa(bits):
            guard EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits) == 1 else { throw fail("RSA key size \(bits)") }
        case .ecP256:
            guard EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1 else { throw fail("EC curve P-256") }
        }
        var pkey: OpaquePointer?
        guard EVP_PKEY_generate(ctx, &pkey) == 1, let pkey else { throw fail("key generation") }
        return Key(pkey)
    }

    /// Issues a certificate for a fresh key; self-signed when `issuer` is nil.
    public static func issue(_ req: Request, keyType: KeyType, issuer: Issued? = nil) throws -> Issued {
        let key = try generateKey(keyType)
        guard let x = X509_new() else { throw fail("X509_new") }
        let cert = Cert(x)
        X509_set_version(x, 2)
        var serial = UInt64.random(in: 1...UInt64(Int64.max))
        serial |= 1 << 62  // fixed length, positive
        ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial)
        guard ASN1_TIME_set(X509_getm_notBefore(x), time_t(req.notBefore)) != nil,
              ASN1_TIME_set(X509_getm_notAfter(x), time_t(req.notAfter)) != nil else { throw fail("certificate validity") }
        X509_set_pubkey(x, key.pkey)
        let name = X509_get_subject_name(x)
        for (field, value) in [("O", req.organization), ("OU", req.organizationalUnit), ("CN", req.commonName)] {
            guard let value else { continue }
            guard X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, value, -1, -1, 0) == 1 else { throw fail("subject \(field)") }
        }
        var issuerCert: Cert?
        var issuerKey: Key?
        if let issuer {
            issuerCert = try parseCert(issuer.certPEM)
            issuerKey = try parseKey(issuer.keyPEM)
        }
        X509_set_issuer_name(x, X509_get_subject_name(issuerCert?.x ?? x))
        var ctx = X509V3_CTX()
        X509V3_set_ctx(&ctx, issuerCert?.x ?? x, x, nil, nil, 0)
        var exts: [(Int32, String)] = [
            (NID_basic_constraints, req.isCA ? "critical,CA:TRUE" : "critical,CA:FALSE"),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ]
        if let ku = req.keyUsage { exts.append((NID_key_usage, ku)) }
        if let eku = req.extendedKeyUsage { exts.append((NID_ext_key_usage, eku)) }
        for (nid, value) in exts {
            guard let ext = X509V3_EXT_conf_nid(nil, &ctx, nid, value) else { throw fail("extension \(value)") }
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(x, ext, -1) == 1 else { throw fail("extension \(value)") }
        }
        guard X509_sign(x, issuerKey?.pkey ?? key.pkey, EVP_sha256()) > 0 else { throw fail("certificate signing") }
        return Issued(keyPEM: try pem { PEM_write_bio_PrivateKey($0, key.pkey, nil, nil, 0, nil, nil) },
                      certPEM: try pem { PEM_write_bio_X509($0, cert.x) })
    }

    static func pem(_ write: (OpaquePointer) -> Int32) throws -> String {
        let bio = try OwnedBIO.memory()
        guard write(bio.bio) == 1 else { throw fail("PEM encoding") }
        return String(decoding: bio.readAll(), as: UTF8.self)
    }

    static func parseCert(_ pem: String) throws -> Cert {
        let bio = try OwnedBIO.memory()
        _ = pem.withCString { BIO_write(bio.bio, $0, Int32(strlen($0))) }
        guard let x = PEM_read_bio_X509(bio.bio, nil, nil, nil) else { throw fail("parse certificate") }
        return Cert(x)
    }

    static func parseKey(_ pem: String) throws -> Key {
        let bio = try OwnedBIO.memory()
        _ = pem.withCString { BIO_write(bio.bio, $0, Int32(strlen($0))) }
        guard let k = PEM_read_bio_PrivateKey(bio.bio, nil, nil, nil) else { throw fail("parse private key") }
        return Key(k)
    }

    /// Subject line (rauc/OpenSSL one-line form) of the first certificate in a PEM file.
    public static func subject(ofCertificateFile path: String) throws -> String {
        let certs = try PEM.certificates(path)
        defer { certs.forEach { X509_free($0) } }
        return describeName(X509_get_subject_name(certs[0]))
    }
}

/// Development signing keys: a self-signed CA plus a signing certificate it issued,
/// with the extensions both rauc's default (S/MIME signing) purpose and
/// `check-purpose=codesign` accept.
public enum DevelopmentKeys {
    /// Marks every development certificate; `release` builds refuse signers carrying it.
    public static let marker = "osbuild development key - NOT FOR PRODUCTION"

    public struct Paths: Sendable, Equatable {
        public var directory: String
        public var caCert: String { directory + "/dev-ca.cert.pem" }
        public var caKey: String { directory + "/dev-ca.key.pem" }
        public var cert: String { directory + "/dev.cert.pem" }
        public var key: String { directory + "/dev.key.pem" }
        /// Trust anchor to install as (part of) /etc/rauc/keyring.pem.
        public var keyring: String { caCert }
        public init(directory: String) { self.directory = directory }
        public var identity: SigningIdentity { SigningIdentity(certPath: cert, keyPath: key, passphrase: nil) }
    }

    public static let warning = """
        warning: this bundle is signed with osbuild DEVELOPMENT keys (see the keys directory). \
        Devices trusting them accept updates from anyone holding these files; use your own key \
        and certificate for production (release builds refuse development keys).
        """

    /// Creates the key set in `directory` unless it already exists; returns the paths and
    /// whether new keys were generated. `directory` should live outside the build dir so
    /// rebuilds keep the same trust anchor.
    public static func ensure(in directory: String, keyType: Certificates.KeyType = .rsa(bits: 4096),
                              now: Int64 = Int64(Date().timeIntervalSince1970)) throws -> (paths: Paths, generated: Bool) {
        let paths = Paths(directory: FileSystem.absolute(directory))
        let files = [paths.caCert, paths.caKey, paths.cert, paths.key]
        let present = files.filter { FileSystem.exists($0) }
        if present.count == files.count { return (paths, false) }
        if !present.isEmpty {
            throw BundleError(.key, path: paths.directory, "incomplete development key set (have \(present.map(FileSystem.basename).joined(separator: ", "))); remove the directory or restore the missing files")
        }
        try FileSystem.makeDirectories(paths.directory, mode: 0o700)
        let tenYears: Int64 = 10 * 366 * 86400
        let ca = try Certificates.issue(
            Certificates.Request(commonName: "osbuild development CA", organization: "osbuild", organizationalUnit: marker,
                                 notBefore: now - 86400, notAfter: now + tenYears, isCA: true,
                                 keyUsage: "critical,keyCertSign,cRLSign"),
            keyType: keyType)
        let leaf = try Certificates.issue(
            Certificates.Request(commonName: "osbuild development signing", organization: "osbuild", organizationalUnit: marker,
                                 notBefore: now - 86400, notAfter: now + tenYears, isCA: false,
                                 keyUsage: "critical,digitalSignature", extendedKeyUsage: "codeSigning,emailProtection"),
            keyType: keyType, issuer: ca)
        try FileSystem.writeAtomically(paths.caKey, ca.keyPEM, mode: 0o600)
        try FileSystem.writeAtomically(paths.key, leaf.keyPEM, mode: 0o600)
        try FileSystem.writeAtomically(paths.caCert, ca.certPEM)
        try FileSystem.writeAtomically(paths.cert, leaf.certPEM)
        return (paths, true)
    }

    /// True if the certificate (or its issuer) carries the development marker.
    public static func isDevelopment(certificate path: String) throws -> Bool {
        let certs = try PEM.certificates(path)
        defer { certs.forEach { X509_free($0) } }
        return certs.contains { x in
            describeName(X509_get_subject_name(x)).contains(marker) || describeName(X509_get_issuer_name(x)).contains(marker)
        }
    }

    /// Release builds must not be signed with development keys.
    public static func checkSigningAllowed(_ identity: SigningIdentity, release: Bool) throws {
        guard release else { return }
        if try isDevelopment(certificate: identity.certPath) {
            throw BundleError(.key, path: identity.certPath, "release builds refuse osbuild development keys; configure the board's signing key and certificate")
        }
    }
}

/// /etc/rauc/keyring.pem: the trust anchors (PEM certificates) concatenated.
public enum Keyring {
    /// Development builds: development + release certificates; production: release only.
    public static func assemble(releaseCertificates: [String], developmentCertificate: String?, release: Bool) throws -> String {
        var sources = releaseCertificates
        if !release, let dev = developmentCertificate { sources.append(dev) }
        guard !sources.isEmpty else {
            throw BundleError(.key, path: nil, release ? "release build needs at least one release certificate for the keyring" : "no certificate for the keyring")
        }
        var out = ""
        for p in sources {
            let certs = try PEM.certificates(p)
            defer { certs.forEach { X509_free($0) } }
            for x in certs {
                out += "# " + describeName(X509_get_subject_name(x)) + "\n"
                out += try Certificates.pem { PEM_write_bio_X509($0, x) }
            }
        }
        return out
    }
}
