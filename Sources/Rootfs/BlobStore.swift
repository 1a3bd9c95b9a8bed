import Basics
import Dispatch
import FSTree
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Holds archive members too big to keep in memory. Spilled members are appended to one
/// pack file per store, `<directory>/pack-<pid>-<random>`, each starting at a 4 KiB
/// boundary (so copy_file_range can share extents where the filesystem can), and come back
/// as `.fileRange` sources into it. One file rather than one per member: creating
/// thousands of scratch files cost more than decompressing them (ext4 inode allocation).
///
/// Nothing is hashed or deduplicated here: nothing needs it. The image writers and
/// `TreeStore` find identical contents themselves, and the build id hashes contents on all
/// cores.
///
/// Member bytes are written on a background queue while the caller decompresses the next
/// chunk. A returned source is readable once `sync()` has returned (`ArchiveImporter`
/// syncs before it returns). The directory is scratch owned by the caller, who removes it
/// when the trees that refer to it are done; packs of processes that no longer exist are
/// removed when a store opens the directory, so a long-lived directory does not grow.
public final class BlobStore {
    public let directory: String
    /// Members up to this size stay in memory as `.bytes`.
    public let inlineLimit: Int
    /// Once this many bytes are held inline, further members are spilled regardless of size.
    public let inlineBudget: Int
    private var inlineUsed = 0
    private var pack: PackWriter?
    /// Where the next spilled member starts (before alignment).
    private var end: UInt64 = 0

    static let alignment: UInt64 = 4096

    public init(directory: String, inlineLimit: Int = 64 * 1024, inlineBudget: Int = 64 << 20) throws {
        self.directory = directory
        self.inlineLimit = inlineLimit
        self.inlineBudget = inlineBudget
        try FileSystem.makeDirectories(directory)
        Self.removeStalePacks(in: directory)
    }

    /// The pack file spilled members live in (nil until the first spill).
    public var packPath: String? { pack?.path }

    /// Stores a member whose bytes arrive through `read` (returns 0 at end). `expectedSize`
    /// is only a hint for choosing inline vs spilled.
    public func store(expectedSize: Int64, read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> ContentSource {
        if expectedSize == 0 {
            // Still drain: some formats report 0 for sizes they do not know.
            var probe = [UInt8](repeating: 0, count: 1)
            let n = try probe.withUnsafeMutableBytes { try read($0) }
            if n == 0 { return .empty }
            return try spill(prefix: Array(probe[0..<n]), read: read)
        }
        if expectedSize > 0 && expectedSize <= inlineLimit && inlineUsed + Int(expectedSize) <= inlineBudget {
            var out = [UInt8](repeating: 0, count: Int(expectedSize))
            var got = 0
            while got < out.count {
                let n = try out.withUnsafeMutableBytes { try read(UnsafeMutableRawBufferPointer(rebasing: $0[got...])) }
                if n == 0 { break }
                got += n
            }
            if got < out.count { out.removeLast(out.count - got) }
            // A member longer than announced: keep going on disk.
            var extra = [UInt8](repeating: 0, count: 1)
            let more = try extra.withUnsafeMutableBytes { try read($0) }
            if more > 0 { return try spill(prefix: out + extra[0..<more], read: read) }
            inlineUsed += out.count
            return out.isEmpty ? .empty : .bytes(out)
        }
        return try spill(prefix: [], read: read)
    }

    public func store(bytes: [UInt8]) throws -> ContentSource {
        var offset = 0
        return try store(expectedSize: Int64(bytes.count)) { buf in
            let n = min(buf.count, bytes.count - offset)
            if n > 0 {
                bytes.withUnsafeBytes { src in
                    UnsafeMutableRawBufferPointer(rebasing: buf[0..<n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[offset..<(offset + n)]))
                }
            }
            offset += n
            return n
        }
    }

    /// Waits until every spilled byte is in the pack; reports the first write error
    /// (e.g. ENOSPC, naming the pack).
    public func sync() throws {
        try pack?.sync()
    }

    private func openPack() throws -> PackWriter {
        if let pack { return pack }
        let p = try PackWriter(path: directory + "/pack-" + String(getpid()) + "-" + String(UInt64.random(in: 0...UInt64.max), radix: 16))
        pack = p
        return p
    }

    private func spill(prefix: [UInt8], read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> ContentSource {
        let pack = try openPack()
        let start = (end + Self.alignment - 1) / Self.alignment * Self.alignment
        var prefixUsed = 0
        func next(_ buf: UnsafeMutableRawBufferPointer) throws -> Int {
            if prefixUsed < prefix.count {
                let n = min(buf.count, prefix.count - prefixUsed)
                prefix.withUnsafeBytes { src in
                    UnsafeMutableRawBufferPointer(rebasing: buf[0..<n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[prefixUsed..<(prefixUsed + n)]))
                }
                prefixUsed += n
                return n
            }
            return try read(buf)
        }
        // Fill whole buffers straight from the decompressor and hand them to the writer
        // queue: one copy in user space, and decompression overlaps with the writes.
        var offset = start
        var atEnd = false
        while !atEnd {
            let buf = pack.takeBuffer()
            var filled = 0
            do {
                while filled < buf.count {
                    let n = try next(UnsafeMutableRawBufferPointer(rebasing: buf[filled...]))
                    if n == 0 { atEnd = true; break }
                    filled += n
                }
            } catch {
                pack.giveBack(buf)
                throw error
            }
            if filled == 0 {
                pack.giveBack(buf)
                break
            }
            try pack.submit(buf, count: filled, at: offset)
            offset += UInt64(filled)
        }
        // A failed member leaves `end` alone: the next one overwrites its bytes (the
        // queue writes in order).
        end = offset
        let length = offset - start
        return length == 0 ? .empty : .fileRange(path: pack.path, offset: start, length: length)
    }

    /// Removes `pack-<pid>-*` files whose process is gone (an earlier build in a directory
    /// that is reused). Packs of live processes, this one included, are left alone.
    static func removeStalePacks(in directory: String) {
        for name in (try? FileSystem.listDirectory(directory)) ?? [] where name.hasPrefix("pack-") {
            let parts = name.split(separator: "-")
            guard parts.count == 3, let pid = Int32(parts[1]), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(directory + "/" + name) }
        }
    }
}

/// Writes buffers at given offsets of one file on a background queue, so the producer
/// (decompression) runs on one core while the kernel copies data on the other. A fixed
/// pool of buffers bounds memory and blocks the producer when the writer falls behind.
final class PackWriter: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let queue = DispatchQueue(label: "osbuild.blob-pack")
    private let lock = NSLock()
    private let available: DispatchSemaphore
    private var free: [UnsafeMutableRawBufferPointer]  // under `lock`
    private let buffers: [UnsafeMutableRawBufferPointer]
    private var failure: (any Error)?  // under `lock`

    static let bufferSize = 1 << 20
    static let depth = 4

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("create", path: path, errno: errno) }
        buffers = (0..<Self.depth).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 4096) }
        free = buffers
        available = DispatchSemaphore(value: Self.depth)
    }

    // Every queued write holds `self`, so this runs after the last one (possibly on the
    // queue itself: it must not wait for the queue).
    deinit {
        close(fd)
        for b in buffers { b.deallocate() }
    }

    /// A free buffer; waits while all are queued for writing.
    func takeBuffer() -> UnsafeMutableRawBufferPointer {
        available.wait()
        return lock.withLock { free.removeLast() }
    }

    func giveBack(_ buf: UnsafeMutableRawBufferPointer) {
        lock.withLock { free.append(buf) }
        available.signal()
    }

    /// Queues `count` bytes of `buf` for writing at `offset`; the buffer returns to the
    /// pool once written. Throws an earlier write's error.
    func submit(_ buf: UnsafeMutableRawBufferPointer, count: Int, at offset: UInt64) throws {
        if let e = lock.withLock({ failure }) {
            giveBack(buf)
            throw e
        }
        let chunk = Chunk(buf: buf)
        queue.async { [self] in
            defer { giveBack(chunk.buf) }
            guard lock.withLock({ failure == nil }) else { return }
            do {
                try PositionalIO.write(fd, UnsafeRawBufferPointer(rebasing: chunk.buf[0..<count]), at: offset, path: path)
            } catch {
                lock.withLock { failure = error }
            }
        }
    }

    /// A pool buffer in flight to the writer queue; only one side touches it at a time.
    private struct Chunk: @unchecked Sendable { let buf: UnsafeMutableRawBufferPointer }

    /// Waits for every queued write and reports the first failure.
    func sync() throws {
        queue.sync {}
        if let e = lock.withLock({ failure }) { throw e }
    }
}
