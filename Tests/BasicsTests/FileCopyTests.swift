import Basics
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileCopyTests {
    static func pattern(_ n: Int, seed: UInt8) -> [UInt8] {
        (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ $0 >> 9) }
    }

    /// Copies [3000, 3000 + 70000) of `srcPath` to offset 8192 of a fresh file with `mode`
    /// and checks the bytes (the hole before 8192 reads as zeros).
    static func checkCopy(srcPath: String, dstPath: String, mode: FileCopy.Mode) throws {
        let data = pattern(100_000, seed: 7)
        try FileSystem.writeAtomically(srcPath, data)
        let src = open(srcPath, O_RDONLY)
        let dst = open(dstPath, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        defer { close(src); close(dst) }
        let n = try FileCopy.copy(from: src, at: 3000, to: dst, at: 8192, count: 70_000, mode: mode, srcPath: srcPath, dstPath: dstPath)
        #expect(n == 70_000)
        let back = try FileSystem.readFile(dstPath)
        #expect(back.count == 8192 + 70_000)
        #expect(back.prefix(8192).allSatisfy { $0 == 0 })
        #expect(Array(back[8192...]) == Array(data[3000..<73_000]))
        // The source ends first: the copy is short, never padded.
        let m = try FileCopy.copy(from: src, at: 90_000, to: dst, at: 0, count: 50_000, mode: mode, srcPath: srcPath, dstPath: dstPath)
        #expect(m == 10_000)
    }

    @Test(arguments: [FileCopy.Mode.kernel, .buffered])
    func sameFilesystem(mode: FileCopy.Mode) throws {
        let tmp = try TempDir("filecopy")
        try FileCopyTests.checkCopy(srcPath: tmp.sub("src"), dstPath: tmp.sub("dst"), mode: mode)
    }

    /// tmpfs -> the temp directory's filesystem: copy_file_range refuses (EXDEV) when the
    /// two are different filesystems, and the buffered path must take over.
    @Test func acrossFilesystems() throws {
        let tmp = try TempDir("filecopy-xdev")
        let shm = "/dev/shm"
        guard let a = try? FileSystem.stat(shm), a.isDirectory, let b = try? FileSystem.stat(tmp.path), a.device != b.device else {
            print("SKIP: /dev/shm missing or on the same filesystem as \(tmp.path): no cross-filesystem copy to test")
            return
        }
        let src = shm + "/osbuild-filecopy-\(getpid())"
        defer { unlink(src) }
        try FileCopyTests.checkCopy(srcPath: src, dstPath: tmp.sub("dst"), mode: .kernel)
    }

    /// A pipe cannot be read at an offset: the error names the source, nothing is invented.
    @Test func pipeSourceIsAnError() throws {
        let tmp = try TempDir("filecopy-pipe")
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        _ = [UInt8](repeating: 65, count: 100).withUnsafeBytes { write(fds[1], $0.baseAddress, 100) }
        let dst = open(tmp.sub("dst"), O_RDWR | O_CREAT, 0o644)
        defer { close(dst) }
        #expect { try FileCopy.copy(from: fds[0], at: 0, to: dst, at: 0, count: 100, srcPath: "the-pipe", dstPath: tmp.sub("dst")) } throws: { e in
            "\(e)".contains("the-pipe")
        }
    }

    /// Past 32 MiB a background thread syncs; commit still produces the exact bytes and
    /// abandon still removes the temp file (the thread is stopped before close).
    @Test func atomicOutputWithBackgroundSync() throws {
        let tmp = try TempDir("atomic-bgsync")
        let chunk = FileCopyTests.pattern(1 << 20, seed: 3)
        let out = tmp.sub("big")
        let h = SHA256()
        try AtomicOutputFile.write(out) { f in
            for k in 0..<40 {
                var c = chunk
                c[0] = UInt8(k)
                h.update(c)
                try f.write(c)
            }
        }
        #expect(try SHA256.hexOfFile(at: out) == h.hexDigest())
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try AtomicOutputFile.write(tmp.sub("abandoned")) { f in
                for _ in 0..<40 { try f.write(chunk) }
                throw Stop()
            }
        }
        #expect(try FileSystem.listDirectory(tmp.path) == ["big"])
    }
}
