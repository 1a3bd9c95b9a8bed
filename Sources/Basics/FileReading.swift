import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file that ended before the bytes a reader needed (it shrank, or is truncated).
public struct ShortFileError: UserError {
    public var path: String
    public var offset: UInt64
    public var description: String { "\(path): file ends at byte \(offset) but more data was expected (truncated, or shrank while being read)" }
}

public enum FileReading {
    /// Fill `buf` from `fd` at `offset`, retrying short reads; throws ShortFileError at EOF.
    public static func preadFully(_ fd: Int32, _ buf: UnsafeMutableRawBufferPointer, offset: UInt64, path: String) throws {
        guard let base = buf.baseAddress else { return }
        var done = 0
        while done < buf.count {
            let n = pread(fd, base + done, buf.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path, errno: errno)
            }
            if n == 0 { throw ShortFileError(path: path, offset: offset + UInt64(done)) }
            done += n
        }
    }

    /// Reads `[offset, offset + length)` of a file (default: to its end) in full chunks of
    /// `chunkSize` bytes (only the last may be shorter), with one reusable buffer. The body
    /// gets each chunk and its offset in the file.
    public static func forEachChunk(_ path: String, offset: UInt64 = 0, length: UInt64? = nil, chunkSize: Int = 1 << 20,
                                    _ body: (UnsafeRawBufferPointer, UInt64) throws -> Void) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        let end = try offset + (length ?? (FileSystem.stat(path).size - min(offset, FileSystem.stat(path).size)))
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buf.deallocate() }
        var off = offset
        while off < end {
            let want = Int(min(UInt64(chunkSize), end - off))
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buf[0..<want])
            try preadFully(fd, chunk, offset: off, path: path)
            try body(UnsafeRawBufferPointer(chunk), off)
            off += UInt64(want)
        }
    }

    /// SHA-256 (hex) of `[offset, offset + length)` of a file (default: all of it).
    public static func sha256Hex(_ path: String, offset: UInt64 = 0, length: UInt64? = nil) throws -> String {
        let h = SHA256()
        try forEachChunk(path, offset: offset, length: length) { chunk, _ in h.update(chunk) }
        return h.hexDigest()
    }
}
