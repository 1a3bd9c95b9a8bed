import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Sequential reader over a `ContentSource`. Checks that host files still have the size
/// recorded in the tree: a file that shrank or grew since the tree was built is an error
/// naming the path, never silently truncated or padded output.
public final class ContentReader {
    public struct ChangedWhileReading: UserError {
        public var path: String
        public var expected: UInt64
        public init(path: String, expected: UInt64) {
            self.path = path
            self.expected = expected
        }
        public var description: String { "\(path): file changed size while being read (expected \(expected) bytes)" }
    }

    private let source: ContentSource
    private var fd: Int32 = -1
    private var position: UInt64 = 0
    private let base: UInt64
    public let length: UInt64
    private let path: String

    public init(_ source: ContentSource) throws {
        self.source = source
        switch source {
        case .empty, .bytes:
            base = 0
            length = source.size
            path = ""
        case .hostFile(let p, let size):
            path = p
            base = 0
            length = size
            fd = open(p, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("open", path: p, errno: errno) }
        case .fileRange(let p, let offset, let len):
            path = p
            base = offset
            length = len
            fd = open(p, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("open", path: p, errno: errno) }
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    public var remaining: UInt64 { length - position }

    /// Fill `buffer` with up to `buffer.count` bytes; returns the count (0 at end).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let want = Int(min(UInt64(buffer.count), remaining))
        guard let dst = buffer.baseAddress, want > 0 else {
            try checkAtEnd()
            return 0
        }
        switch source {
        case .empty: return 0
        case .bytes(let b):
            b.withUnsafeBytes { src in
                if let from = src.baseAddress { dst.copyMemory(from: from + Int(position), byteCount: want) }
            }
        case .hostFile, .fileRange:
            var got = 0
            while got < want {
                let n = pread(fd, dst + got, want - got, off_t(base + position) + off_t(got))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("read", path: path, errno: errno)
                }
                if n == 0 { throw ChangedWhileReading(path: path, expected: length) }
                got += n
            }
        }
        position += UInt64(want)
        return want
    }

    /// Read exactly `count` bytes (or the rest, if fewer remain).
    public func read(upTo count: Int) throws -> [UInt8] {
        let n = Int(min(UInt64(count), remaining))
        // Uninitialised storage: zero-filling first would touch every byte twice.
        return try [UInt8](unsafeUninitializedCapacity: n) { buf, initialized in
            let raw = UnsafeMutableRawBufferPointer(buf)
            var got = 0
            while got < n {
                let k = try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[got...]))
                if k == 0 { break }
                got += k
            }
            initialized = got
        }
    }

    public func readAll() throws -> [UInt8] {
        let r = try read(upTo: Int(remaining))
        try checkAtEnd()
        return r
    }

    /// For whole host files: the file must not have grown either.
    private func checkAtEnd() throws {
        guard case .hostFile = source, fd >= 0 else { return }
        var st = stat()
        if fstat(fd, &st) == 0 && UInt64(st.st_size) != length {
            throw ChangedWhileReading(path: path, expected: length)
        }
    }
}
