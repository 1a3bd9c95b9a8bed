#if canImport(Glibc)
import Glibc
#endif

/// Copies byte ranges between open files at explicit offsets. Uses `copy_file_range`
/// (the kernel moves the pages; nothing passes through user space, and filesystems that
/// can share extents do so) and falls back to `pread`/`pwrite` through a buffer when the
/// kernel refuses: source and destination on different filesystems (EXDEV), kernels
/// before 4.5 (ENOSYS), filesystems without support (EOPNOTSUPP, EINVAL), or special files
/// that report 0 bytes copied although they have data (procfs, sysfs).
public enum FileCopy {
    /// Which mechanism `copy` may use; `.buffered` forces the fallback (tests, comparisons).
    public enum Mode: Sendable {
        case kernel
        case buffered
    }

    /// Copies up to `count` bytes from `src` at `srcOffset` to `dst` at `dstOffset`.
    /// Returns the bytes copied: fewer than `count` only when the source ends first (the
    /// caller decides whether a short source is an error). Never changes the file offsets.
    @discardableResult
    public static func copy(from src: Int32, at srcOffset: UInt64, to dst: Int32, at dstOffset: UInt64, count: UInt64,
                            mode: Mode = .kernel, srcPath: String, dstPath: String) throws -> UInt64 {
        var done: UInt64 = 0
        if mode == .kernel {
            while done < count {
                var inOff = Int64(srcOffset + done)
                var outOff = Int64(dstOffset + done)
                // At most 1 GiB per call: the kernel caps a single call below 2 GiB anyway.
                let want = Int(min(count - done, 1 << 30))
                let n = osbuildCopyFileRange(src, &inOff, dst, &outOff, want, 0)
                if n > 0 { done += UInt64(n); continue }
                if n < 0 && errno == EINTR { continue }
                // n == 0 (end of file, or a file that hides its size) or any error: the
                // buffered path copies what is really there, or reports the failing read
                // or write with the right path (ENOSPC on the output, EIO on the input).
                break
            }
        }
        if done < count {
            done += try bufferedCopy(from: src, at: srcOffset + done, to: dst, at: dstOffset + done, count: count - done,
                                     srcPath: srcPath, dstPath: dstPath)
        }
        return done
    }

    static func bufferedCopy(from src: Int32, at srcOffset: UInt64, to dst: Int32, at dstOffset: UInt64, count: UInt64,
                             srcPath: String, dstPath: String) throws -> UInt64 {
        let size = Int(min(count, 1 << 20))
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { buf.deallocate() }
        guard let base = buf.baseAddress else { return 0 }
        var done: UInt64 = 0
        while done < count {
            let want = Int(min(UInt64(size), count - done))
            let n = pread(src, base, want, off_t(srcOffset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: srcPath, errno: errno)
            }
            if n == 0 { break }
            try PositionalIO.write(dst, UnsafeRawBufferPointer(start: base, count: n), at: dstOffset + done, path: dstPath)
            done += UInt64(n)
        }
        return done
    }
}

// glibc declares copy_file_range only under _GNU_SOURCE, which the Glibc module map does not set.
@_silgen_name("copy_file_range")
private func osbuildCopyFileRange(_ fdIn: Int32, _ offIn: UnsafeMutablePointer<Int64>?, _ fdOut: Int32,
                                  _ offOut: UnsafeMutablePointer<Int64>?, _ len: Int, _ flags: UInt32) -> Int
