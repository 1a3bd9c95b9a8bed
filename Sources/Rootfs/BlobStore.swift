import Basics
import Dispatch
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
        let writer = try AsyncFileWriter(path: tmp)
        var ok = false
        defer { if !ok { unlink(tmp) } }
        let hash = SHA256()
        var total: UInt64 = 0
        if !prefix.isEmpty {
            hash.update(prefix)
            try writer.submit(prefix)
            total += UInt64(prefix.count)
        }
        let bufSize = 1 << 20
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bufSize, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = try read(buf)
            if n == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buf[0..<n])
            hash.update(chunk)
            // Decompression (this thread) overlaps with the write on the writer's queue.
            try writer.submit(Array(chunk))
            total += UInt64(n)
        }
        try writer.finish()
        let final = directory + "/" + hash.hexDigest()
        if let st = try FileSystem.lstatIfExists(final), st.isRegular, st.size == total {
            return .hostFile(path: final, size: total)
        }
        try FileSystem.rename(tmp, final)
        ok = true
        return .hostFile(path: final, size: total)
    }
}

/// Writes chunks to a new file on a background queue so the producer (decompression and
/// hashing) runs on one core while the kernel copies data on the other. At most four chunks
/// are in flight, so memory stays bounded.
final class AsyncFileWriter: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let queue = DispatchQueue(label: "osbuild.blob-writer")
    private let slots = DispatchSemaphore(value: 4)
    private var failure: SystemError?  // touched only on `queue`
    private var closed = false

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("create", path: path, errno: errno) }
    }

    deinit { if !closed { close(fd) } }

    func submit(_ bytes: [UInt8]) throws {
        slots.wait()
        queue.async { [self] in
            defer { slots.signal() }
            guard failure == nil else { return }
            bytes.withUnsafeBytes { b in
                guard let base = b.baseAddress else { return }
                var off = 0
                while off < b.count {
                    let n = write(fd, base + off, b.count - off)
                    if n < 0 {
                        if errno == EINTR { continue }
                        failure = SystemError("write", path: path, errno: errno)
                        return
                    }
                    off += n
                }
            }
        }
    }

    /// Wait for all writes, close, and report the first failure.
    func finish() throws {
        let err = queue.sync { failure }
        closed = true
        let closeFailed = close(fd) != 0
        if let err { throw err }
        if closeFailed { throw SystemError("close", path: path, errno: errno) }
    }
}
