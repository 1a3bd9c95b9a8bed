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
        let sums = try Parallel.map(ranges.count) { i in
            let start = ranges[i].lowerBound * blockSize
            return try FileReading.sha256Hex(image, offset: start, length: min(size, (ranges[i].upperBound + 1) * blockSize) - start)
        }
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
}
