import Basics
import FSTree
#if canImport(Glibc)
import Glibc
#endif

/// Content-addressed store for archive members too big to keep in memory. A blob is a
/// plain file named by the SHA-256 of its bytes, so identical members are stored once
/// and a tree built twice from the same input names the same files. The directory is
/// scratch space: deleting it between builds is always safe.
public final class BlobStore {
    public let directory: String
    /// Members up to this size stay in memory as `.bytes`.
    public let inlineLimit: Int
    /// Once this many bytes are held inline, further members are spilled regardless of size.
    public let inlineBudget: Int
    private var inlineUsed = 0

    public init(directory: String, inlineLimit: Int = 64 * 1024, inlineBudget: Int = 64 << 20) throws {
        self.directory = directory
        self.inlineLimit = inlineLimit
        self.inlineBudget = inlineBudget
        try FileSystem.makeDirectories(directory)
    }

    /// Stores a member whose bytes arrive through `read` (returns 0 at end). `expectedSize`
    /// is only a hint for choosing inline vs spilled.
    public func store(expectedSize: Int64, read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> ContentSource {
        if expectedSize == 0 {
            // Still drain: some formats report 0 for sizes they do not know.
            var probe = [UInt8](repeating: 0, count: 1)
            let n = try probe.withUnsafeMutableBytes { try read($0) }
            if n == 0 { return .empty }
            return try spill(prefix: Array(probe[0..<n]), read: read)
        }
        if expectedSize > 0 && expectedSize <= inlineLimit && inlineUsed + Int(expectedSize) <= inlineBudget {
            var out = [UInt8](repeating: 0, count: Int(expectedSize))
            var got = 0
            while got < out.count {
                let n = try out.withUnsafeMutableBytes { try read(UnsafeMutableRawBufferPointer(rebasing: $0[got...])) }
                if n == 0 { break }
                got += n
            }
            if got < out.count { out.removeLast(out.count - got) }
            // A member longer than announced: keep going on disk.
            var extra = [UInt8](repeating: 0, count: 1)
            let more = try extra.withUnsafeMutableBytes { try read($0) }
            if more > 0 { return try spill(prefix: out + extra[0..<more], read: read) }
            inlineUsed += out.count
            return out.isEmpty ? .empty : .bytes(out)
        }
        return try spill(prefix: [], read: read)
    }

    public func store(bytes: [UInt8]) throws -> ContentSource {
        var offset = 0
        return try store(expectedSize: Int64(bytes.count)) { buf in
            let n = min(buf.count, bytes.count - offset)
            if n > 0 {
                bytes.withUnsafeBytes { src in
                    UnsafeMutableRawBufferPointer(rebasing: buf[0..<n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[offset..<(offset + n)]))
                }
            }
            offset += n
            return n
        }
    }

    private func spill(prefix: [UInt8], read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> ContentSource {
        let tmp = directory + "/.tmp-" + String(getpid()) + "-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("create", path: tmp, errno: errno) }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(tmp) }
        }
        var hash = SHA256()
        var total: UInt64 = 0
        func put(_ buf: UnsafeRawBufferPointer, _ hash: inout SHA256) throws {
            hash.update(buf)
            guard let base = buf.baseAddress else { return }
            var off = 0
            while off < buf.count {
                let n = write(fd, base + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write", path: tmp, errno: errno)
                }
                off += n
            }
            total += UInt64(buf.count)
        }
        if !prefix.isEmpty { try prefix.withUnsafeBytes { try put($0, &hash) } }
        let bufSize = 1 << 20
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bufSize, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = try read(buf)
            if n == 0 { break }
            try put(UnsafeRawBufferPointer(rebasing: buf[0..<n]), &hash)
        }
        let final = directory + "/" + hash.hexDigest()
        if let st = try FileSystem.lstatIfExists(final), st.isRegular, st.size == total {
            return .hostFile(path: final, size: total)
        }
        try FileSystem.rename(tmp, final)
        ok = true
        return .hostFile(path: final, size: total)
    }
}
