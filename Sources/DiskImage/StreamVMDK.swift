import Basics
import CZlib
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A streamOptimized VMDK (VMware Virtual Disk Format 5.0, the disk format OVF packages
/// use): a sparse extent header, the text descriptor, then only the grains that hold data,
/// each deflated (zlib) behind a grain marker, then grain tables, the grain directory, a
/// footer copy of the header and the end-of-stream marker. Written natively rather than by
/// qemu-img because qemu-img puts a random CID in the descriptor (not reproducible).
/// Holes and all-zero grains of the raw image are left out; grains are compressed on all
/// cores in bounded batches and written in order.
public enum StreamVMDK {
    static let sector = 512
    static let grainSectors = 128  // 64 KiB grains, what VMware and qemu write
    static let gtEntries = 512
    static let descriptorSectors = 20
    /// Sectors before the first grain: header + descriptor, rounded to a grain.
    static let overheadSectors = 128
    static let flags: UInt32 = 1 | (1 << 16) | (1 << 17)  // newline check, compressed grains, markers
    static let gdAtEnd = UInt64.max
    enum Marker: UInt32 { case endOfStream = 0, grainTable = 1, grainDirectory = 2, footer = 3 }

    public struct Result: Sendable {
        public var capacityBytes: UInt64
        public var fileBytes: UInt64
        public var grainsWritten: Int
    }

    /// Convert the raw image `input` into `output`. `cid` is the descriptor's content id;
    /// a fixed value keeps the output reproducible.
    @discardableResult
    public static func write(_ input: String, to output: String, cid: UInt32, adapter: String = "lsilogic") throws -> Result {
        let inFD = open(input, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else { throw SystemError("open", path: input, errno: errno) }
        defer { close(inFD) }
        var st = stat()
        guard fstat(inFD, &st) == 0 else { throw SystemError("stat", path: input, errno: errno) }
        let size = UInt64(st.st_size)
        guard size > 0, size % UInt64(sector) == 0 else {
            throw MessageError("\(input): a VMDK needs a disk image whose size is a non-zero multiple of 512 bytes (it is \(size) bytes)")
        }
        let capacity = size / UInt64(sector)
        let grainBytes = grainSectors * sector
        let grainCount = Int((size + UInt64(grainBytes) - 1) / UInt64(grainBytes))
        let gdEntries = (grainCount + gtEntries - 1) / gtEntries
        var gte = [UInt32](repeating: 0, count: gdEntries * gtEntries)

        // On any error `out` is abandoned by its deinit: no half file at `output`.
        let out = try AtomicOutputFile(output)
        var pos = UInt64(0)
        func emit(_ bytes: [UInt8]) throws {
            try out.write(bytes)
            pos += UInt64(bytes.count)
        }
        try emit(header(capacity: capacity, gdOffset: gdAtEnd))
        var desc = Array(descriptor(capacity: capacity, cid: cid, adapter: adapter, file: FileSystem.basename(output)).utf8)
        guard desc.count <= descriptorSectors * sector else {
            throw MessageError("\(output): VMDK descriptor of \(desc.count) bytes exceeds \(descriptorSectors * sector)")
        }
        desc += [UInt8](repeating: 0, count: (overheadSectors - 1) * sector - desc.count)
        try emit(desc)

        // Grains in batches: find the ones with data, deflate them in parallel, write in order.
        let batch = 64
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * grainBytes, alignment: 4096)
        defer { buffer.deallocate() }
        let bound = Int(compressBound(uLong(grainBytes)))
        var grainsWritten = 0
        var next = 0
        while next < grainCount {
            // Skip holes without reading them.
            let d = lseek(inFD, off_t(next) * off_t(grainBytes), 3 /* SEEK_DATA */)
            if d < 0 {
                if errno == ENXIO { break }
                if errno != EINVAL { throw SystemError("seek", path: input, errno: errno) }
            } else {
                next = max(next, Int(UInt64(d) / UInt64(grainBytes)))
            }
            if next >= grainCount { break }
            var members: [Int] = []
            while members.count < batch && next < grainCount {
                let slot = members.count
                let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[(slot * grainBytes)..<((slot + 1) * grainBytes)])
                let want = Int(min(UInt64(grainBytes), size - UInt64(next) * UInt64(grainBytes)))
                try PositionalIO.read(inFD, into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<want]), at: UInt64(next) * UInt64(grainBytes), path: input)
                if want < grainBytes, let base = dst.baseAddress { memset(base + want, 0, grainBytes - want) }
                if !SparseCopy.isZero(UnsafeRawBufferPointer(dst)) { members.append(next) }
                next += 1
            }
            if members.isEmpty { continue }
            let input = SharedRawPointer(buffer.baseAddress)
            let grains = members
            let compressed = try Parallel.map(members.count) { i -> [UInt8] in
                guard let base = input.raw else { return [] }
                var outBytes = [UInt8](repeating: 0, count: bound)
                var destLen = uLong(bound)
                let rc = outBytes.withUnsafeMutableBufferPointer { o in
                    compress2(o.baseAddress, &destLen, (base + i * grainBytes).assumingMemoryBound(to: Bytef.self), uLong(grainBytes), 6)
                }
                guard rc == Z_OK else { throw MessageError("\(output): zlib compress2 failed (\(rc)) on grain \(grains[i])") }
                outBytes.removeLast(bound - Int(destLen))
                return outBytes
            }
            for (i, grain) in members.enumerated() {
                gte[grain] = UInt32(pos / UInt64(sector))
                var marker = [UInt8](repeating: 0, count: 12)
                putLE(&marker, 0, UInt64(grain * grainSectors))
                putLE(&marker, 8, UInt32(compressed[i].count))
                try emit(marker + compressed[i])
                try emit(padding(pos))
                grainsWritten += 1
            }
        }

        // Grain tables (only those with grains), then the directory pointing at them.
        var gd = [UInt32](repeating: 0, count: gdEntries)
        for t in 0..<gdEntries {
            let entries = gte[(t * gtEntries)..<((t + 1) * gtEntries)]
            guard entries.contains(where: { $0 != 0 }) else { continue }
            try emit(metadataMarker(sectors: UInt64(gtEntries * 4 / sector), type: .grainTable))
            gd[t] = UInt32(pos / UInt64(sector))
            try emit(leBytes(Array(entries)))
        }
        let gdBytes = leBytes(gd)
        let gdSectors = (gdBytes.count + sector - 1) / sector
        try emit(metadataMarker(sectors: UInt64(gdSectors), type: .grainDirectory))
        let gdOffset = pos / UInt64(sector)
        try emit(gdBytes + [UInt8](repeating: 0, count: gdSectors * sector - gdBytes.count))
        try emit(metadataMarker(sectors: 1, type: .footer))
        try emit(header(capacity: capacity, gdOffset: gdOffset))
        try emit(metadataMarker(sectors: 0, type: .endOfStream))
        try out.commit()
        return Result(capacityBytes: size, fileBytes: pos, grainsWritten: grainsWritten)
    }

    static func header(capacity: UInt64, gdOffset: UInt64) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: sector)
        h.replaceSubrange(0..<4, with: Array("KDMV".utf8))
        putLE(&h, 4, UInt32(3))  // version 3: streamOptimized
        putLE(&h, 8, flags)
        putLE(&h, 12, capacity)
        putLE(&h, 20, UInt64(grainSectors))
        putLE(&h, 28, UInt64(1))  // descriptor offset (sectors)
        putLE(&h, 36, UInt64(descriptorSectors))
        putLE(&h, 44, UInt32(gtEntries))
        putLE(&h, 48, UInt64(0))  // no redundant grain directory
        putLE(&h, 56, gdOffset)
        putLE(&h, 64, UInt64(overheadSectors))
        h[72] = 0  // clean shutdown
        h[73] = 0x0A; h[74] = 0x20; h[75] = 0x0D; h[76] = 0x0A  // newline-corruption check bytes
        putLE(&h, 77, UInt16(1))  // deflate
        return h
    }

    static func descriptor(capacity: UInt64, cid: UInt32, adapter: String, file: String) -> String {
        // BIOS-style geometry VMware records for IDE/SCSI disks (255 heads, 63 sectors).
        let cylinders = min(65535, capacity / (255 * 63))
        return """
            # Disk DescriptorFile
            version=1
            CID=\(String(format: "%08x", cid))
            parentCID=ffffffff
            createType="streamOptimized"

            # Extent description
            RW \(capacity) SPARSE "\(file)"

            # The Disk Data Base
            #DDB

            ddb.virtualHWVersion = "4"
            ddb.geometry.cylinders = "\(cylinders)"
            ddb.geometry.heads = "255"
            ddb.geometry.sectors = "63"
            ddb.adapterType = "\(adapter)"

            """
    }

    static func metadataMarker(sectors: UInt64, type: Marker) -> [UInt8] {
        var m = [UInt8](repeating: 0, count: sector)
        putLE(&m, 0, sectors)
        putLE(&m, 8, UInt32(0))
        putLE(&m, 12, type.rawValue)
        return m
    }

    static func padding(_ pos: UInt64) -> [UInt8] {
        let r = Int(pos % UInt64(sector))
        return r == 0 ? [] : [UInt8](repeating: 0, count: sector - r)
    }

    static func leBytes(_ values: [UInt32]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * 4)
        for (i, v) in values.enumerated() { putLE(&out, i * 4, v) }
        return out
    }

    static func putLE<T: FixedWidthInteger>(_ buf: inout [UInt8], _ offset: Int, _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, b) in raw.enumerated() { buf[offset + i] = b }
        }
    }
}
