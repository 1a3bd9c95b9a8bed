import Basics
import FSTree
import Foundation

/// Writes an FSTree as a `newc` (070701) cpio archive, the format the kernel unpacks into
/// its rootfs at boot, optionally compressed. Deterministic: entries in byte order
/// (parents before children), inode numbers from walk order, mtimes from the tree, no host
/// data; two runs over the same tree give identical bytes.
///
/// Hard links share one inode number; the data travels with the *last* name (GNU cpio's
/// convention, also accepted by the kernel). xattrs cannot be represented in newc and are
/// reported as dropped.
public enum InitramfsWriter {
    public struct Options: Sendable {
        public var compression: InitramfsCompression
        public var level: Int?
        /// Compression threads (xz, zstd); nil: all cores. The output does not depend on it.
        public var threads: Int?
        public init(compression: InitramfsCompression = .gzip, level: Int? = nil, threads: Int? = nil) {
            self.compression = compression
            self.level = level
            self.threads = threads
        }
    }

    public struct Report: Sendable, Hashable {
        public var entries = 0
        public var cpioBytes: UInt64 = 0
        public var compressedBytes: UInt64 = 0
        /// Paths whose xattrs were dropped (newc has no field for them).
        public var droppedXAttrs: [String] = []
    }

    /// Write the image to `path` atomically (temp name, renamed when complete).
    @discardableResult
    public static func write(_ tree: FSTree, to path: String, options: Options = .init()) throws -> Report {
        try AtomicOutputFile.write(path) { out in
            var compressed: UInt64 = 0
            let comp = try options.compression.makeCompressor(level: options.level, threads: options.threads ?? ProcessInfo.processInfo.activeProcessorCount) { bytes in
                compressed += UInt64(bytes.count)
                try out.write(bytes)
            }
            var report = try writeCpio(tree) { chunk in try comp.write(chunk) }
            try comp.finish()
            report.compressedBytes = compressed
            return report
        }
    }

    /// The uncompressed newc stream in memory (small trees, tests).
    public static func cpioBytes(_ tree: FSTree) throws -> [UInt8] {
        var out: [UInt8] = []
        _ = try writeCpio(tree) { out.append(contentsOf: $0) }
        return out
    }

    static func writeCpio(_ tree: FSTree, _ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Report {
        var report = Report()
        let links = tree.linkCounts()
        var ino: [InodeID: UInt32] = [:]
        for (i, id) in tree.reachableInodes().enumerated() { ino[id] = UInt32(i + 1) }
        // Which name of a hard-linked inode is last in walk order: it carries the data.
        var lastName: [InodeID: String] = [:]
        tree.walk { path, id, n in
            if n.kind != .directory && (links[id] ?? 1) > 1 { lastName[id] = path }
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 16)
        var total: UInt64 = 0
        func flush(force: Bool) throws {
            if buffer.count >= 1 << 16 || (force && !buffer.isEmpty) {
                try buffer.withUnsafeBytes { try emit($0) }
                total += UInt64(buffer.count)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        func pad4() { while (total + UInt64(buffer.count)) % 4 != 0 { buffer.append(0) } }
        func header(name: String, ino: UInt32, mode: UInt32, uid: UInt32, gid: UInt32, nlink: UInt32, mtime: UInt32, size: UInt32, rdev: DeviceNumber) {
            let nameBytes = Array(name.utf8)
            var h = "070701"
            for v in [ino, mode, uid, gid, nlink, mtime, size, 0, 0, rdev.major, rdev.minor, UInt32(nameBytes.count + 1), 0] {
                let s = String(v, radix: 16, uppercase: true)
                h += String(repeating: "0", count: 8 - s.count) + s
            }
            buffer.append(contentsOf: h.utf8)
            buffer.append(contentsOf: nameBytes)
            buffer.append(0)
            pad4()
        }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }

        try tree.walk { path, id, n in
            let name = path == "/" ? "." : String(path.dropFirst())
            if !n.xattrs.isEmpty { report.droppedXAttrs.append(path) }
            let mtime = UInt32(clamping: max(0, n.mtime.seconds))
            let carriesData: Bool
            switch n.kind {
            case .regular: carriesData = (lastName[id] ?? path) == path
            case .symlink: carriesData = true
            default: carriesData = false
            }
            let size = carriesData ? n.size : 0
            guard size <= UInt64(UInt32.max) else {
                throw MessageError("\(path): \(size) bytes is more than a newc cpio entry can hold (4 GiB - 1)")
            }
            header(name: name, ino: ino[id] ?? 0, mode: n.mode, uid: n.uid, gid: n.gid, nlink: links[id] ?? 1,
                   mtime: mtime, size: UInt32(size), rdev: (n.kind == .charDevice || n.kind == .blockDevice) ? n.rdev : DeviceNumber(major: 0, minor: 0))
            report.entries += 1
            if n.kind == .symlink {
                buffer.append(contentsOf: n.symlinkTarget.utf8)
            } else if size > 0 {
                try flush(force: true)
                let r = try ContentReader(n.content)
                var left = size
                while left > 0 {
                    let got = try r.read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<Int(min(UInt64(chunk.count), left))]))
                    if got == 0 { throw MessageError("\(path): content ended \(left) bytes early (file changed while being read?)") }
                    try emit(UnsafeRawBufferPointer(rebasing: chunk[0..<got]))
                    total += UInt64(got)
                    left -= UInt64(got)
                }
            }
            pad4()
            try flush(force: false)
        }
        header(name: "TRAILER!!!", ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, size: 0, rdev: DeviceNumber(major: 0, minor: 0))
        // Pad to 512 bytes like cpio(1) so the image concatenates cleanly with others.
        while (total + UInt64(buffer.count)) % 512 != 0 { buffer.append(0) }
        try flush(force: true)
        report.cpioBytes = total
        return report
    }
}
