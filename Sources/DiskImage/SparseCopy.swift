import Basics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Copies byte ranges into an image file so that unwritten ranges stay holes: the
/// source's holes are skipped (SEEK_DATA/seekHole) and 4 KiB blocks of zeros inside data
/// are not written either. The target was sized with ftruncate, so skipped = zeros.
enum SparseCopy {
    static let block = 4096
    static let chunk = 1 << 20
    // Linux lseek whence values (not exported by the Glibc module).
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    /// Copy `length` bytes of `source` starting at `sourceOffset` to `target` at `targetOffset`,
    /// leaving out `skip` ranges (relative to the copied data). Returns bytes written.
    @discardableResult
    static func copy(source: String, sourceOffset: UInt64 = 0, length: UInt64? = nil, to fd: Int32, targetPath: String,
                     at targetOffset: UInt64, skip: [Range<UInt64>] = []) throws -> UInt64 {
        let sfd = open(source, O_RDONLY | O_CLOEXEC)
        guard sfd >= 0 else { throw SystemError("open", path: source, errno: errno) }
        defer { close(sfd) }
        var st = stat()
        guard fstat(sfd, &st) == 0 else { throw SystemError("stat", path: source, errno: errno) }
        let fileSize = UInt64(st.st_size)
        let end = min(fileSize, sourceOffset + (length ?? fileSize))
        let base = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { base.deallocate() }
        let buf = UnsafeMutableRawBufferPointer(start: base, count: chunk)
        var written: UInt64 = 0
        var pos = sourceOffset
        while pos < end {
            // Next data extent (files without SEEK_DATA support are all data).
            let d = lseek(sfd, off_t(pos), seekData)
            if d < 0 {
                if errno == ENXIO { break }
                if errno != EINVAL { throw SystemError("seek", path: source, errno: errno) }
            }
            let dataStart = d < 0 ? pos : UInt64(d)
            if dataStart >= end { break }
            let h = lseek(sfd, off_t(dataStart), seekHole)
            let dataEnd = min(end, h < 0 ? end : UInt64(h))
            var p = dataStart
            while p < dataEnd {
                let n = Int(min(UInt64(chunk), dataEnd - p))
                var got = 0
                while got < n {
                    let k = pread(sfd, base + got, n - got, off_t(p) + off_t(got))
                    if k < 0 { if errno == EINTR { continue }; throw SystemError("read", path: source, errno: errno) }
                    if k == 0 { throw MessageError("\(source): file shrank while being copied") }
                    got += k
                }
                written += try writeNonZero(UnsafeRawBufferPointer(rebasing: buf[0..<n]), fd: fd, targetPath: targetPath,
                                            at: targetOffset + (p - sourceOffset), relative: p - sourceOffset, skip: skip)
                p += UInt64(n)
            }
            pos = dataEnd
        }
        return written
    }

    /// Write the non-zero 4 KiB blocks of `data` (block boundaries relative to the buffer).
    static func writeNonZero(_ data: UnsafeRawBufferPointer, fd: Int32, targetPath: String, at offset: UInt64,
                             relative: UInt64 = 0, skip: [Range<UInt64>] = []) throws -> UInt64 {
        var written: UInt64 = 0
        var i = 0
        var runStart = -1
        func flush(_ upTo: Int) throws {
            guard runStart >= 0 else { return }
            try writeRange(data, runStart..<upTo, fd: fd, targetPath: targetPath, at: offset, relative: relative, skip: skip)
            written += UInt64(upTo - runStart)
            runStart = -1
        }
        while i < data.count {
            let n = min(block, data.count - i)
            let zero = isZero(UnsafeRawBufferPointer(rebasing: data[i..<(i + n)]))
            if zero { try flush(i) } else if runStart < 0 { runStart = i }
            i += n
        }
        try flush(data.count)
        return written
    }

    private static func writeRange(_ data: UnsafeRawBufferPointer, _ r: Range<Int>, fd: Int32, targetPath: String,
                                   at offset: UInt64, relative: UInt64, skip: [Range<UInt64>]) throws {
        // Cut out the ranges that must not be written (holes of raw blobs).
        var pieces: [Range<Int>] = [r]
        for s in skip {
            let lo = Int(clamping: Int64(clamping: s.lowerBound) - Int64(relative))
            let hi = Int(clamping: Int64(clamping: s.upperBound) - Int64(relative))
            pieces = pieces.flatMap { p -> [Range<Int>] in
                let a = max(p.lowerBound, lo), b = min(p.upperBound, hi)
                guard a < b else { return [p] }
                return [p.lowerBound..<a, b..<p.upperBound].filter { !$0.isEmpty }
            }
        }
        guard let base = data.baseAddress else { return }
        for p in pieces {
            var done = 0
            while done < p.count {
                let k = pwrite(fd, base + p.lowerBound + done, p.count - done, off_t(offset) + off_t(p.lowerBound + done))
                if k < 0 { if errno == EINTR { continue }; throw SystemError("write", path: targetPath, errno: errno) }
                done += k
            }
        }
    }

    static func isZero(_ b: UnsafeRawBufferPointer) -> Bool {
        let words = b.count / 8
        guard let raw = b.baseAddress else { return true }
        var k = 0
        while k < words {
            if raw.loadUnaligned(fromByteOffset: k * 8, as: UInt64.self) != 0 { return false }
            k += 1
        }
        for j in (words * 8)..<b.count where b[j] != 0 { return false }
        return true
    }
}
