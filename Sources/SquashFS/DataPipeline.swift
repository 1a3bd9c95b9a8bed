import Basics
import Codecs
import Foundation

/// Parallel block compression with in-order output.
///
/// The caller (reader) fills numbered slots; worker threads compress them; the caller
/// writes finished slots strictly in submission order. A slot is reused only after its
/// block was written, so memory is `slots * 2 * blockSize` (at most about 64 MiB) whatever the image size, and
/// the bytes on disk do not depend on thread timing.
final class DataPipeline: @unchecked Sendable {
    enum Target {
        case fileBlock(file: Int, index: Int)
        case fragment(index: Int)
    }

    enum Outcome {
        case pending, sparse, compressed(Int), raw
    }

    private struct Slot {
        var input: UnsafeMutableRawBufferPointer
        var output: UnsafeMutableRawBufferPointer
        var length = 0
        var target = Target.fragment(index: 0)
        var checkSparse = false
        var outcome = Outcome.pending
    }

    private let cond = NSCondition()
    private var slots: [Slot]
    /// `slots.count`, readable without the lock: touching the `slots` array itself outside
    /// the lock races with workers mutating an element (copy-on-write uniqueness check).
    private let slotCount: Int
    private var queue: [Int] = []  // seqs waiting for a worker (FIFO)
    private var queueHead = 0
    private var nextSeq = 0
    private var nextToWrite = 0
    private var stopping = false
    private var workerError: (any Error)?
    private var workers: [Thread] = []
    private var running = 0

    private let output: ImageOutput
    let blockSize: Int
    /// Called (on the caller's thread) as each block lands on disk: target, position of
    /// its first byte, size word.
    private let onWritten: (Target, UInt64, UInt32) -> Void

    init(
        compression: Compression, blockSize: Int, threads: Int, output: ImageOutput,
        onWritten: @escaping (Target, UInt64, UInt32) -> Void
    ) throws {
        self.blockSize = blockSize
        self.output = output
        self.onWritten = onWritten
        // Deep enough that one slow block (deflate level 9 on some inputs takes many times
        // longer than its neighbours) does not leave the other workers idle behind the
        // in-order writer; capped at about 64 MiB of buffers.
        let count = max(threads * 2 + 2, min(threads * 16, (64 << 20) / (2 * blockSize)))
        slotCount = count
        slots = (0..<count).map { _ in
            Slot(input: .allocate(byteCount: blockSize, alignment: 64), output: .allocate(byteCount: blockSize, alignment: 64))
        }
        // Create the compressors here so configuration errors surface before any thread runs.
        let compressors = try (0..<threads).map { _ in try BlockCompressor(compression, maxBlockSize: blockSize) }
        running = threads
        for c in compressors {
            let box = CompressorBox(c)
            let t = Thread { [self] in self.workerLoop(box.compressor) }
            t.stackSize = 1 << 20
            workers.append(t)
        }
        for t in workers { t.start() }
    }

    deinit {
        for s in slots {
            s.input.deallocate()
            s.output.deallocate()
        }
    }

    /// Stop workers without writing anything further (error path) or after `finish`.
    func shutdown() {
        cond.lock()
        stopping = true
        cond.broadcast()
        while running > 0 { cond.wait() }
        cond.unlock()
        // The thread closures hold `self`; drop them so the buffers are freed.
        workers.removeAll()
    }

    /// Fill the next slot with `fill(buffer) -> length` and queue it.
    func submit(_ target: Target, checkSparse: Bool, fill: (UnsafeMutableRawBufferPointer) throws -> Int) throws {
        let seq = nextSeq
        let idx = seq % slotCount
        // Wait for the slot's previous block to be written.
        while seq - slotCount >= nextToWrite {
            try writeReady(block: true)
        }
        cond.lock()
        let input = slots[idx].input
        cond.unlock()
        let length = try fill(input)
        cond.lock()
        slots[idx].length = length
        slots[idx].target = target
        slots[idx].checkSparse = checkSparse
        slots[idx].outcome = .pending
        queue.append(seq)
        nextSeq += 1
        cond.signal()
        cond.unlock()
        try writeReady(block: false)
    }

    /// Write all remaining blocks and stop the workers.
    func finish() throws {
        while nextToWrite < nextSeq { try writeReady(block: true) }
        shutdown()
    }

    /// Write finished blocks in order. With `block`, wait until at least one is written.
    private func writeReady(block: Bool) throws {
        var wrote = false
        while nextToWrite < nextSeq {
            let idx = nextToWrite % slotCount
            cond.lock()
            while true {
                if let e = workerError {
                    cond.unlock()
                    throw e
                }
                if case .pending = slots[idx].outcome {
                    if block && !wrote { cond.wait(); continue }
                    cond.unlock()
                    return
                }
                break
            }
            let slot = slots[idx]
            cond.unlock()
            let pos = output.position
            let word: UInt32
            switch slot.outcome {
            case .sparse:
                word = 0
            case .compressed(let n):
                try output.write(UnsafeRawBufferPointer(rebasing: slot.output[0..<n]))
                word = UInt32(n)
            case .raw, .pending:
                try output.write(UnsafeRawBufferPointer(rebasing: slot.input[0..<slot.length]))
                word = UInt32(slot.length) | Format.uncompressedBlock
            }
            onWritten(slot.target, pos, word)
            nextToWrite += 1
            wrote = true
        }
    }

    private func workerLoop(_ compressor: BlockCompressor) {
        cond.lock()
        while true {
            while queueHead == queue.count && !stopping { cond.wait() }
            if stopping { break }
            let seq = queue[queueHead]
            queueHead += 1
            if queueHead > 1024 {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            let idx = seq % slots.count
            let slot = slots[idx]
            cond.unlock()
            let src = UnsafeRawBufferPointer(rebasing: slot.input[0..<slot.length])
            var outcome = Outcome.raw
            var failure: (any Error)?
            if slot.checkSparse && isAllZero(src) {
                outcome = .sparse
            } else {
                do {
                    if let n = try compressor.compress(src, into: slot.output) { outcome = .compressed(n) }
                } catch {
                    failure = error
                }
            }
            cond.lock()
            slots[idx].outcome = outcome
            if let failure, workerError == nil { workerError = failure }
            cond.broadcast()
        }
        running -= 1
        cond.broadcast()
        cond.unlock()
    }
}

/// Hands a thread-confined compressor to the thread that will own it.
private final class CompressorBox: @unchecked Sendable {
    let compressor: BlockCompressor
    init(_ c: BlockCompressor) { compressor = c }
}

private let zeroPage = [UInt8](repeating: 0, count: 4096)

/// memcmp against a zero page (vectorised in glibc), 4 KiB at a time.
func isAllZero(_ b: UnsafeRawBufferPointer) -> Bool {
    guard let base = b.baseAddress else { return true }
    return zeroPage.withUnsafeBytes { zp in
        guard let z = zp.baseAddress else { return false }
        var off = 0
        while off < b.count {
            let n = min(4096, b.count - off)
            if memcmp(base + off, z, n) != 0 { return false }
            off += n
        }
        return true
    }
}
