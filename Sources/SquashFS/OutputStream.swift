import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Buffered sequential writer over an `AtomicOutputFile` that knows its position.
final class ImageOutput {
    let file: AtomicOutputFile
    private let buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    private(set) var position: UInt64 = 0
    private var flushedEnd: UInt64 = 0
    private var writeBackStart: UInt64 = 0

    init(_ file: AtomicOutputFile, bufferSize: Int = 1 << 20) {
        self.file = file
        buffer = .allocate(byteCount: bufferSize, alignment: 16)
    }

    deinit { buffer.deallocate() }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        if bytes.count >= buffer.count {
            try flush()
            try file.write(bytes)
            flushedEnd += UInt64(bytes.count)
            startWriteBack()
        } else {
            if used + bytes.count > buffer.count { try flush() }
            UnsafeMutableRawBufferPointer(rebasing: buffer[used...]).copyMemory(from: bytes)
            used += bytes.count
        }
        position += UInt64(bytes.count)
    }

    /// Kick off asynchronous write-back of every finished 16 MiB so the fsync that commits
    /// the atomic output has little left to do (POSIX_FADV_DONTNEED starts write-back of
    /// dirty pages without waiting for it, then drops clean ones: we never read them back).
    private func startWriteBack() {
        guard flushedEnd - writeBackStart >= 16 << 20 else { return }
        _ = posix_fadvise(file.fd, off_t(writeBackStart), off_t(flushedEnd - writeBackStart), POSIX_FADV_DONTNEED)
        writeBackStart = flushedEnd
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    func flush() throws {
        if used > 0 {
            try file.write(UnsafeRawBufferPointer(rebasing: buffer[0..<used]))
            flushedEnd += UInt64(used)
            used = 0
        }
        startWriteBack()
    }
}
