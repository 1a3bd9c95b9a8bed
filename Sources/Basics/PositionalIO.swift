#if canImport(Glibc)
import Glibc
#endif

/// Whole-buffer pread/pwrite on a file descriptor (retrying short transfers and EINTR),
/// for code that edits files in place at known offsets (disk images, FAT volumes).
public enum PositionalIO {
    public static func read(_ fd: Int32, into buf: UnsafeMutableRawBufferPointer, at offset: UInt64, path: String) throws {
        guard let base = buf.baseAddress else { return }
        var done = 0
        while done < buf.count {
            let n = pread(fd, base + done, buf.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path, errno: errno)
            }
            if n == 0 { throw MessageError("\(path): file ends at byte \(offset + UInt64(done)), expected \(buf.count - done) more bytes (truncated?)") }
            done += n
        }
    }

    public static func read(_ fd: Int32, count: Int, at offset: UInt64, path: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try read(fd, into: $0, at: offset, path: path) }
        return out
    }

    public static func write(_ fd: Int32, _ buf: UnsafeRawBufferPointer, at offset: UInt64, path: String) throws {
        guard let base = buf.baseAddress else { return }
        var done = 0
        while done < buf.count {
            let n = pwrite(fd, base + done, buf.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path: path, errno: errno)
            }
            done += n
        }
    }

    public static func write(_ fd: Int32, _ bytes: [UInt8], at offset: UInt64, path: String) throws {
        try bytes.withUnsafeBytes { try write(fd, $0, at: offset, path: path) }
    }

    public static func sync(_ fd: Int32, path: String) throws {
        while fsync(fd) != 0 {
            if errno == EINTR { continue }
            throw SystemError("fsync", path: path, errno: errno)
        }
    }

    /// Deallocates `length` bytes at `offset` (they read back as zeros) without changing
    /// the file size, so zero runs in an image stay holes. False if the filesystem
    /// cannot punch holes; the caller then writes zeros.
    public static func punchHole(_ fd: Int32, at offset: UInt64, length: UInt64) -> Bool {
        // FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
        osbuildFallocate(fd, 0x01 | 0x02, Int64(offset), Int64(length)) == 0
    }
}

// glibc declares fallocate only under _GNU_SOURCE, which the Glibc module map does not set.
@_silgen_name("fallocate64")
private func osbuildFallocate(_ fd: Int32, _ mode: Int32, _ offset: Int64, _ length: Int64) -> Int32
