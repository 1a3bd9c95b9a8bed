import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Normalises the timestamps in an ext2/3/4 image's inode tables in one pass: atime,
/// ctime and crtime become `epoch`, mtime is clamped to `epoch`, nanosecond fields are
/// zeroed, and inode checksums (metadata_csum) are recomputed. mke2fs 1.47.0 copies host
/// atimes/ctimes into the image; this makes them reproducible without one debugfs command
/// per inode. Layout facts: the ext4 disk layout documentation (superblock at 1024, group
/// descriptors after it, inode fields at fixed offsets, crc32c inode checksums).
enum Ext4Times {
    struct Failure: UserError {
        var path: String
        var message: String
        var description: String { "\(path): cannot normalise ext4 timestamps: \(message)" }
    }

    static func normalise(_ path: String, epoch: Int64) throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        func readBytes(_ off: UInt64, _ n: Int) throws -> [UInt8] {
            var b = [UInt8](repeating: 0, count: n)
            var got = 0
            while got < n {
                let k = b.withUnsafeMutableBytes { raw -> Int in
                    guard let base = raw.baseAddress else { return 0 }
                    return pread(fd, base + got, n - got, off_t(off) + off_t(got))
                }
                if k < 0 { if errno == EINTR { continue }; throw SystemError("read", path: path, errno: errno) }
                if k == 0 { throw Failure(path: path, message: "short read at \(off)") }
                got += k
            }
            return b
        }
        let sb = try readBytes(1024, 1024)
        func u16(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(b[o]) | UInt32(b[o + 1]) << 8 }
        func u32(_ b: [UInt8], _ o: Int) -> UInt32 { u16(b, o) | u16(b, o + 2) << 16 }
        guard u16(sb, 0x38) == 0xEF53 else { throw Failure(path: path, message: "no ext2/3/4 superblock") }
        let blockSize = UInt64(1024) << UInt64(u32(sb, 0x18))
        let firstDataBlock = UInt64(u32(sb, 0x14))
        let blocksPerGroup = UInt64(u32(sb, 0x20))
        let inodesPerGroup = Int(u32(sb, 0x28))
        let inodeSize = u32(sb, 0x4C) == 0 ? 128 : Int(u16(sb, 0x58))
        let incompat = u32(sb, 0x60), roCompat = u32(sb, 0x64)
        let is64 = incompat & 0x80 != 0
        let descSize = is64 ? max(32, Int(u16(sb, 0xFE))) : 32
        var blocks = UInt64(u32(sb, 0x04))
        if is64 { blocks |= UInt64(u32(sb, 0x150)) << 32 }
        let groups = Int((blocks - firstDataBlock + blocksPerGroup - 1) / blocksPerGroup)
        let metadataCsum = roCompat & 0x400 != 0
        var seed: UInt32 = 0
        if metadataCsum {
            seed = incompat & 0x2000 != 0 ? u32(sb, 0x270) : CRC32C.update(0xFFFF_FFFF, sb[0x68..<0x78])
        }
        let gdt = try readBytes((firstDataBlock + 1) * blockSize, groups * descSize)
        let e = UInt32(truncatingIfNeeded: epoch)
        for g in 0..<groups {
            let d = g * descSize
            let flags = u16(gdt, d + 0x12)
            if flags & 0x1 != 0 { continue }  // INODE_UNINIT: table never initialised, no inodes in use
            var table = UInt64(u32(gdt, d + 0x08))
            var unused = Int(u16(gdt, d + 0x1C))
            if is64 && descSize >= 64 {
                table |= UInt64(u32(gdt, d + 0x28)) << 32
                unused |= Int(u16(gdt, d + 0x32)) << 16
            }
            let used = max(0, inodesPerGroup - (roCompat & (0x10 | 0x400) != 0 ? unused : 0))
            if used == 0 { continue }
            var buf = try readBytes(table * blockSize, used * inodeSize)
            var changed = false
            for i in 0..<used {
                let o = i * inodeSize
                if u16(buf, o) == 0 && u16(buf, o + 0x1A) == 0 { continue }  // free inode
                func put32(_ off: Int, _ v: UInt32) {
                    buf[o + off] = UInt8(v & 0xFF); buf[o + off + 1] = UInt8((v >> 8) & 0xFF)
                    buf[o + off + 2] = UInt8((v >> 16) & 0xFF); buf[o + off + 3] = UInt8(v >> 24)
                }
                put32(0x08, e)  // atime
                put32(0x0C, e)  // ctime
                if Int64(Int32(bitPattern: u32(buf, o + 0x10))) > epoch { put32(0x10, e) }  // mtime clamp
                let extra = inodeSize > 128 ? Int(u16(buf, o + 0x80)) : 0
                // ctime_extra, mtime_extra, atime_extra, crtime, crtime_extra (offsets 0x84...0x94)
                for (off, v) in [(0x84, UInt32(0)), (0x88, 0), (0x8C, 0), (0x90, e), (0x94, 0)] where extra >= off - 0x80 + 4 {
                    put32(off, v)
                }
                if metadataCsum {
                    let hasHi = inodeSize > 128 && extra >= 4
                    buf[o + 0x7C] = 0; buf[o + 0x7D] = 0
                    if hasHi { buf[o + 0x82] = 0; buf[o + 0x83] = 0 }
                    var num = UInt32(g * inodesPerGroup + i + 1).littleEndian
                    var c = withUnsafeBytes(of: &num) { CRC32C.update(seed, $0) }
                    c = CRC32C.update(c, buf[(o + 0x64)..<(o + 0x68)])  // generation
                    c = CRC32C.update(c, buf[o..<(o + inodeSize)])
                    buf[o + 0x7C] = UInt8(c & 0xFF); buf[o + 0x7D] = UInt8((c >> 8) & 0xFF)
                    if hasHi { buf[o + 0x82] = UInt8((c >> 16) & 0xFF); buf[o + 0x83] = UInt8(c >> 24) }
                }
                changed = true
            }
            if changed {
                let n = buf.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(table * blockSize)) }
                guard n == buf.count else { throw SystemError("write", path: path, errno: errno) }
            }
        }
    }
}
