import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Makes a file's data durable (`fdatasync`) on a background thread whenever asked, while
/// its producer keeps writing. Each call also makes the storage below flush its cache,
/// which on a virtual disk means the host writes what the guest wrote; done once at the
/// end, that costs ~0.1 s for a 150-250 MB image. Done every few tens of MiB on this
/// thread, the producer's final `fsync` is left with only the last piece.
///
/// Requests made while a sync runs coalesce into one more sync. A failure is kept (the
/// kernel reports a write-back error once per open file, so it must not be lost here) and
/// returned by `finish`, which the owner calls before closing the descriptor.
final class BackgroundSync: @unchecked Sendable {
    private let cond = NSCondition()
    private let fd: Int32
    private var requested = false
    private var stopping = false
    private var running = true
    private var failure: Int32 = 0

    init(fd: Int32) {
        self.fd = fd
        let t = Thread { [self] in loop() }
        t.stackSize = 256 << 10
        t.start()
    }

    /// Asks for one more `fdatasync` after the one running (if any).
    func request() {
        cond.lock()
        requested = true
        cond.signal()
        cond.unlock()
    }

    /// Stops the thread (a sync in progress completes first) and returns the errno of the
    /// first failed sync, or 0.
    func finish() -> Int32 {
        cond.lock()
        stopping = true
        cond.broadcast()
        while running { cond.wait() }
        let f = failure
        cond.unlock()
        return f
    }

    private func loop() {
        cond.lock()
        while true {
            while !requested && !stopping { cond.wait() }
            if stopping { break }
            requested = false
            cond.unlock()
            var r = fdatasync(fd)
            while r != 0 && errno == EINTR { r = fdatasync(fd) }
            let e = r == 0 ? 0 : errno
            cond.lock()
            // EINVAL: the file does not support syncing (a pipe, /dev/null); commit ignores it too.
            if e != 0 && e != EINVAL && failure == 0 { failure = e }
        }
        running = false
        cond.broadcast()
        cond.unlock()
    }
}
