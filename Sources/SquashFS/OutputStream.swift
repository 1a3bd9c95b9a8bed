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
        } else {
            if used + bytes.count > buffer.count { try flush() }
            UnsafeMutableRawBufferPointer(rebasing: buffer[used...]).copyMemory(from: bytes)
            used += bytes.count
        }
        position += UInt64(bytes.count)
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    func flush() throws {
        if used > 0 {
            try file.write(UnsafeRawBufferPointer(rebasing: buffer[0..<used]))
            used = 0
        }
    }
}
