import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Streaming SHA-256 through OpenSSL (uses SHA-NI/AVX where the CPU has them).
public final class SHA256 {
    private let ctx: OpaquePointer

    public init() {
        // EVP_MD_CTX_new only fails on allocation failure; treat as fatal like any OOM.
        guard let c = EVP_MD_CTX_new() else { fatalError("out of memory allocating EVP_MD_CTX") }
        ctx = c
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ buffer: UnsafeRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        EVP_DigestUpdate(ctx, base, buffer.count)
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public func update(_ string: String) {
        var s = string
        s.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    /// Length-prefixed update so that field boundaries are unambiguous in fingerprints.
    public func updateField(_ string: String) {
        var n = UInt64(string.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { update($0) }
        update(string)
    }

    public func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        _ = out.withUnsafeMutableBytes { EVP_DigestFinal_ex(ctx, $0.baseAddress?.assumingMemoryBound(to: UInt8.self), &len) }
        return out
    }

    public func hexDigest() -> String { Hex.encode(finalize()) }

    public static func hex(_ bytes: [UInt8]) -> String {
        let h = SHA256()
        h.update(bytes)
        return h.hexDigest()
    }

    public static func hex(_ string: String) -> String {
        let h = SHA256()
        h.update(string)
        return h.hexDigest()
    }

    /// Hash a file's content, streaming in 1 MiB chunks.
    public static func hexOfFile(at path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        let h = SHA256()
        let bufSize = 1 << 20
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bufSize, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = read(fd, buf.baseAddress, bufSize)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path, errno: errno)
            }
            if n == 0 { break }
            h.update(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
        return h.hexDigest()
    }
}

public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        func v(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = v(u[i]), let lo = v(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
