import Basics
import CLinux
import FSTree
import Foundation
import SquashFS
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Builds generated host trees for round-trip tests and compares two trees entry by entry.
enum Fixture {
    /// Deterministic pseudo-random bytes (xorshift64*), fast enough for megabytes.
    static func noise(_ count: Int, seed: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var x = seed | 1
        out.withUnsafeMutableBytes { buf in
            var i = 0
            while i + 8 <= count {
                x ^= x >> 12; x ^= x << 25; x ^= x >> 27
                buf.storeBytes(of: (x &* 0x2545_F491_4F6C_DD1D), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < count { buf[i] = UInt8(truncatingIfNeeded: x >> (i % 8)); i += 1 }
        }
        return out
    }

    /// Text-like compressible bytes.
    static func text(_ count: Int, seed: Int) -> [UInt8] {
        var s = ""
        var i = seed
        while s.utf8.count < count {
            s += "line \(i) of the generated file; value=\(i &* 2654435761 % 1000)\n"
            i += 1
        }
        return Array(s.utf8.prefix(count))
    }

    static func write(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw SystemError("create", path: path, errno: errno) }
        defer { close(fd) }
        try bytes.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = Glibc.write(fd, b.baseAddress! + off, b.count - off)
                guard n > 0 else { throw SystemError("write", path: path, errno: errno) }
                off += n
            }
        }
        fchmod(fd, mode)
    }

    /// glibc's dev_t layout (the makedev macro is not imported into Swift).
    static func glibcDev(_ major: UInt64, _ minor: UInt64) -> dev_t {
        dev_t(((major & 0xFFFF_F000) << 32) | ((major & 0xFFF) << 8) | ((minor & 0xFFFF_FF00) << 12) | (minor & 0xFF))
    }

    static func mkdirs(_ path: String) throws { try FileSystem.makeDirectories(path) }

    static func setXAttr(_ path: String, _ name: String, _ value: [UInt8]) throws {
        let r = value.withUnsafeBytes { lsetxattr(path, name, $0.baseAddress, value.count, 0) }
        guard r == 0 else { throw SystemError("lsetxattr \(name)", path: path, errno: errno) }
    }

    static func setTime(_ path: String, _ seconds: Int) {
        var ts = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        utimensat(AT_FDCWD, path, &ts, AT_SYMLINK_NOFOLLOW)
    }

    /// Every case from the SquashFS acceptance list. `big` adds the 10,000-entry directory
    /// and the 10 MiB file (kept out of the quick variants).
    static func makeTree(at root: String, big: Bool = true) throws {
        try mkdirs(root)
        let bs = [4096, 131072, 1 << 20]
        try write(root + "/empty", [])
        try write(root + "/one-byte", [0x41])
        for b in bs {
            try write(root + "/block-\(b)", noise(b, seed: UInt64(b)))
            try write(root + "/block-\(b)-plus1", text(b + 1, seed: b))
        }
        if big { try write(root + "/ten-mib", text(10 << 20, seed: 7)) }
        try write(root + "/zeros", [UInt8](repeating: 0, count: 3 << 20))
        // Holes: 4 MiB apparent size, data only in the middle and at the end.
        let holes = root + "/holes"
        let fd = open(holes, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        ftruncate(fd, 4 << 20)
        let mid = noise(5000, seed: 99)
        _ = mid.withUnsafeBytes { pwrite(fd, $0.baseAddress, mid.count, 2 << 20) }
        _ = mid.withUnsafeBytes { pwrite(fd, $0.baseAddress, 100, (4 << 20) - 100) }
        close(fd)
        // Names.
        try write(root + "/" + String(repeating: "n", count: 255), text(300, seed: 1))
        try write(root + "/grüße-😀-日本語-ü", text(10, seed: 2))
        try mkdirs(root + "/ünïcødé dir")
        try write(root + "/ünïcødé dir/\u{00e9}t\u{00e9}", [1, 2, 3])
        // Deep nesting.
        var deep = root + "/deep"
        for i in 0..<40 { deep += "/d\(i)" }
        try mkdirs(deep)
        try write(deep + "/leaf", text(20, seed: 40))
        // Duplicates (large and small) and many tiny files sharing fragments.
        let dupBig = noise(300_000, seed: 5)
        try mkdirs(root + "/dups")
        try write(root + "/dups/a", dupBig)
        try write(root + "/dups/b", dupBig)
        try write(root + "/dups/c", text(777, seed: 3))
        try write(root + "/dups/d", text(777, seed: 3))
        try write(root + "/dups/e", text(777, seed: 4))
        try mkdirs(root + "/tiny")
        for i in 0..<300 { try write(root + "/tiny/t\(i)", text(i % 97 + 1, seed: i)) }
        if big {
            try mkdirs(root + "/many")
            for i in 0..<10_000 { try write(root + "/many/entry-\(i)", i % 10 == 0 ? [] : Array("\(i)\n".utf8)) }
        }
        // Every entry type, odd owners and modes, xattrs, hard links.
        try mkdirs(root + "/special")
        let sp = root + "/special"
        symlink("../one-byte", sp + "/link")
        symlink(String(repeating: "x/", count: 200) + "target", sp + "/long-link")
        mkfifo(sp + "/fifo", 0o640)
        mknod(sp + "/socket", S_IFSOCK | 0o755, 0)
        mknod(sp + "/char", S_IFCHR | 0o620, glibcDev(4, 64))
        mknod(sp + "/block", S_IFBLK | 0o660, glibcDev(259, 300_000))
        try write(sp + "/setuid", text(50, seed: 8), mode: 0o4755)
        chmod(sp + "/setuid", 0o4755)
        try write(sp + "/setgid", text(50, seed: 9))
        chmod(sp + "/setgid", 0o2711)
        try mkdirs(sp + "/sticky")
        chmod(sp + "/sticky", 0o1777)
        try write(sp + "/owned", text(60, seed: 10))
        lchown(sp + "/owned", 12345, 54321)
        lchown(sp + "/link", 7, 8)
        lchown(sp + "/fifo", 65534, 100)
        try write(sp + "/hl1", text(5000, seed: 11))
        link(sp + "/hl1", sp + "/hl2")
        link(sp + "/hl1", root + "/tiny/hl3")
        try setXAttr(sp + "/hl1", "user.comment", Array("shared by three names".utf8))
        try setXAttr(sp + "/owned", "user.a", [])
        try setXAttr(sp + "/owned", "trusted.t", Array("trusted value".utf8))
        try setXAttr(sp + "/owned", "security.capability", [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        try setXAttr(sp + "/sticky", "user.dir", noise(3000, seed: 12))
        try setXAttr(sp + "/link", "trusted.on-link", [9])
        try setXAttr(sp + "/fifo", "trusted.f", [1])
        try setXAttr(sp + "/char", "trusted.c", [2])
        try setXAttr(root + "/dups/a", "user.same", [3])
        try setXAttr(root + "/dups/c", "user.same", [3])
        try mkdirs(root + "/emptydir")
        // Varied times (whole seconds; SquashFS stores no nanoseconds).
        var n = 0
        for p in try walkPaths(root).reversed() {
            setTime(p, 1_600_000_000 + n * 7919 % 100_000)
            n += 1
        }
    }

    static func walkPaths(_ root: String) throws -> [String] { try HostTree.walkPaths(root) }
    static func scan(_ root: String) throws -> (records: [String: HostTree.Record], links: Set<[String]>) { try HostTree.scan(root) }
    static func compare(_ src: String, _ back: String, allRoot: Bool = false, checkRoot: Bool = true) throws -> [String] {
        try HostTree.compare(src, back, allRoot: allRoot, checkRoot: checkRoot)
    }

    static func unsquashfs(_ image: String, into dir: String) throws {
        _ = try Subprocess.run(["unsquashfs", "-no-progress", "-d", dir, image])
    }
}
