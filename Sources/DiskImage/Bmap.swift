import Basics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes bmaptool's block map (format 2.0, SHA-256 per range) for a sparse image: the
/// mapped ranges are the file's data extents (SEEK_DATA/SEEK_HOLE) in 4 KiB blocks, so
/// `bmaptool copy` writes only what the image holds.
public enum BmapWriter {
    public static let blockSize: UInt64 = 4096

    /// Mapped block ranges (inclusive first...last block numbers) of a file.
    public static func mappedRanges(_ path: String) throws -> (size: UInt64, ranges: [ClosedRange<UInt64>]) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("stat", path: path, errno: errno) }
        let size = UInt64(st.st_size)
        var ranges: [ClosedRange<UInt64>] = []
        var pos: UInt64 = 0
        while pos < size {
            let d = lseek(fd, off_t(pos), SparseCopy.seekData)
            if d < 0 {
                if errno == ENXIO { break }
                throw SystemError("seek", path: path, errno: errno)
            }
            let h = lseek(fd, off_t(d), SparseCopy.seekHole)
            let end = h < 0 ? size : min(size, UInt64(h))
            let first = UInt64(d) / blockSize, last = (end - 1) / blockSize
            if let prev = ranges.last, prev.upperBound + 1 >= first {
                ranges[ranges.count - 1] = prev.lowerBound...max(prev.upperBound, last)
            } else {
                ranges.append(first...last)
            }
            pos = end
        }
        return (size, ranges)
    }

    public static func write(image: String, to bmapPath: String) throws {
        try FileSystem.writeAtomically(bmapPath, try render(image: image))
    }

    public static func render(image: String) throws -> String {
        let (size, ranges) = try mappedRanges(image)
        let blocks = (size + blockSize - 1) / blockSize
        let mapped = ranges.reduce(UInt64(0)) { $0 + ($1.upperBound - $1.lowerBound + 1) }
        // Hash ranges on all cores; each range is read independently.
        let sums = UnsafeSendableArray(count: ranges.count)
        let errors = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: ranges.count) { i in
            do { sums[i] = try hashRange(image, ranges[i], size: size) } catch { errors.add(i, error) }
        }
        if let e = errors.first { throw e }
        var body = ""
        for (i, r) in ranges.enumerated() {
            let text = r.lowerBound == r.upperBound ? "\(r.lowerBound)" : "\(r.lowerBound)-\(r.upperBound)"
            body += "        <Range chksum=\"\(sums[i])\"> \(text) </Range>\n"
        }
        let zero = String(repeating: "0", count: 64)
        func doc(_ sum: String) -> String {
            """
            <?xml version="1.0" ?>
            <!-- Block map written by osbuild: only the listed 4 KiB blocks hold data;
                 everything else reads as zeros and need not be written. -->
            <bmap version="2.0">
                <ImageSize> \(size) </ImageSize>
                <BlockSize> \(blockSize) </BlockSize>
                <BlocksCount> \(blocks) </BlocksCount>
                <MappedBlocksCount> \(mapped) </MappedBlocksCount>
                <ChecksumType> sha256 </ChecksumType>
                <!-- SHA-256 of this file with this value set to 64 "0" characters -->
                <BmapFileChecksum> \(sum) </BmapFileChecksum>
                <BlockMap>
            \(body)    </BlockMap>
            </bmap>

            """
        }
        return doc(SHA256.hex(doc(zero)))
    }

    private static func hashRange(_ path: String, _ r: ClosedRange<UInt64>, size: UInt64) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        var h = SHA256()
        let start = r.lowerBound * blockSize
        let end = min(size, (r.upperBound + 1) * blockSize)
        let bufSize = 1 << 20
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bufSize, alignment: 4096)
        defer { buf.deallocate() }
        var pos = start
        while pos < end {
            let n = pread(fd, buf.baseAddress, Int(min(UInt64(bufSize), end - pos)), off_t(pos))
            if n < 0 { if errno == EINTR { continue }; throw SystemError("read", path: path, errno: errno) }
            if n == 0 { throw MessageError("\(path): file shrank while hashing") }
            h.update(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
            pos += UInt64(n)
        }
        return h.hexDigest()
    }
}

/// Fixed-size array of strings written from concurrent jobs, each index by one job only.
final class UnsafeSendableArray: @unchecked Sendable {
    private var items: [String]
    private let lock = NSLock()
    init(count: Int) { items = Array(repeating: "", count: count) }
    subscript(i: Int) -> String {
        get { lock.lock(); defer { lock.unlock() }; return items[i] }
        set { lock.lock(); items[i] = newValue; lock.unlock() }
    }
}
