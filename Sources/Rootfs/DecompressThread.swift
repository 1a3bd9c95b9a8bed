import Basics
import CArchive
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Decompresses an archive file (gzip, xz, zstd, bzip2, lz4, ... as libarchive's filters
/// read them) on a thread of its own, handing 1 MiB blocks of the plain stream to the
/// libarchive reader that parses the tar/cpio on the calling thread. A compressed stream
/// is one sequential job, so this is how importing it uses a second core: decompression
/// there, member parsing, tree building and spilling here. Four blocks bound the memory.
final class DecompressThread {
    let path: String
    /// libarchive's name of the outermost filter ("zstd", "xz", ...).
    let filterName: String
    private let state: State

    static let blockSize = 1 << 20
    static let depth = 4

    /// Starts decompressing `path` if it is compressed; nil if it is not (or if libarchive
    /// cannot even open it: the direct path then reports that with its usual message).
    static func start(_ path: String) -> DecompressThread? {
        guard let a = archive_read_new() else { return nil }
        archive_read_support_filter_all(a)
        archive_read_support_format_raw(a)
        var e: OpaquePointer?
        guard archive_read_open_filename(a, path, 1 << 16) == ARCHIVE_OK,
              archive_read_next_header(a, &e) == ARCHIVE_OK,
              archive_filter_count(a) > 1
        else {
            archive_read_free(a)
            return nil
        }
        let name = archive_filter_name(a, 0).map { String(cString: $0) } ?? "?"
        return DecompressThread(path: path, state: State(reader: a), filterName: name)
    }

    private init(path: String, state: State, filterName: String) {
        self.path = path
        self.state = state
        self.filterName = filterName
        // The thread holds only the shared state, so dropping this handle stops it.
        let t = Thread { state.produce() }
        t.name = "osbuild-decompress"
        t.start()
    }

    /// Stops the thread (it may be waiting for a free block) and waits for it to exit.
    deinit { state.cancel() }

    /// The next block of the plain stream for libarchive's read callback: it stays valid
    /// until the next call (libarchive's contract). 0 at the end, -1 on a failure.
    func next(_ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int { state.next(out) }

    /// The decompressor's error, once the stream has failed.
    var failureText: String? { state.failureText }

    private final class State: @unchecked Sendable {
        private let reader: OpaquePointer
        private let cond = NSCondition()
        private let exited = DispatchSemaphore(value: 0)
        private let blocks: [UnsafeMutableRawPointer]
        // All below under `cond`.
        private var free: [UnsafeMutableRawPointer]
        private var ready: [(UnsafeMutableRawPointer, Int)] = []
        private var current: UnsafeMutableRawPointer?
        private var finished = false
        private var cancelled = false
        private var failure: String?

        init(reader: OpaquePointer) {
            self.reader = reader
            blocks = (0..<DecompressThread.depth).map { _ in
                UnsafeMutableRawPointer.allocate(byteCount: DecompressThread.blockSize, alignment: 4096)
            }
            free = blocks
        }

        deinit {
            archive_read_free(reader)
            for b in blocks { b.deallocate() }
        }

        func cancel() {
            cond.lock()
            cancelled = true
            cond.broadcast()
            cond.unlock()
            exited.wait()
        }

        func produce() {
            defer { exited.signal() }
            let size = DecompressThread.blockSize
            while true {
                cond.lock()
                while free.isEmpty && !cancelled { cond.wait() }
                if cancelled {
                    cond.unlock()
                    return
                }
                let block = free.removeLast()
                cond.unlock()

                var filled = 0
                var error: String?
                while filled < size {
                    let n = archive_read_data(reader, block + filled, size - filled)
                    if n < 0 {
                        error = archive_error_string(reader).map { String(cString: $0) } ?? "decompression failed"
                        break
                    }
                    if n == 0 { break }
                    filled += n
                }

                cond.lock()
                if filled > 0 && error == nil { ready.append((block, filled)) } else { free.append(block) }
                let done = error != nil || filled < size
                if done {
                    failure = error
                    finished = true
                }
                cond.broadcast()
                cond.unlock()
                if done { return }
            }
        }

        func next(_ out: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
            cond.lock()
            defer { cond.unlock() }
            if let c = current {
                free.append(c)
                current = nil
                cond.broadcast()
            }
            while ready.isEmpty && !finished { cond.wait() }
            if ready.isEmpty {
                out.pointee = nil
                return failure == nil ? 0 : -1
            }
            let (block, n) = ready.removeFirst()
            current = block
            out.pointee = UnsafeRawPointer(block)
            return n
        }

        var failureText: String? {
            cond.lock()
            defer { cond.unlock() }
            return failure
        }
    }
}
