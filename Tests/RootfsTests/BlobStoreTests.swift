import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The spill path of `BlobStore`: members go to one pack file as 4 KiB-aligned ranges,
/// whatever sizes the reader hands out, and come back byte for byte.
@Suite struct BlobStoreTests {
    /// Deterministic bytes (xorshift), different per seed.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [UInt8](repeating: 0, count: count)
        // Eight bytes per step: debug builds are slow per element.
        out.withUnsafeMutableBytes { raw in
            var i = 0
            while i < count {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                var v = x
                for _ in 0..<min(8, count - i) {
                    raw[i] = UInt8(truncatingIfNeeded: v)
                    v >>= 8
                    i += 1
                }
            }
        }
        return out
    }

    /// A reader that hands out `data` in pieces of at most `piece` bytes, optionally
    /// failing once `failAfter` bytes are out.
    final class Feeder {
        let data: [UInt8]
        let piece: Int
        let failAfter: Int?
        var pos = 0
        init(_ data: [UInt8], piece: Int, failAfter: Int? = nil) {
            self.data = data
            self.piece = piece
            self.failAfter = failAfter
        }
        func read(_ buf: UnsafeMutableRawBufferPointer) throws -> Int {
            if let f = failAfter, pos >= f { throw MessageError("feeder: simulated read error at byte \(pos)") }
            let n = min(buf.count, piece, data.count - pos)
            if n > 0 {
                data.withUnsafeBytes { src in
                    UnsafeMutableRawBufferPointer(rebasing: buf[0..<n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[pos..<(pos + n)]))
                }
            }
            pos += n
            return n
        }
    }

    @Test func spilledMembersComeBackExactly() throws {
        let t = try TempDir("blobstore")
        let store = try BlobStore(directory: t.sub("blobs"), inlineLimit: 1000, inlineBudget: 5000)
        #expect(store.packPath == nil)
        var expected: [(ContentSource, [UInt8], String)] = []
        func add(_ what: String, _ data: [UInt8], announced: Int64, piece: Int) throws {
            let f = Feeder(data, piece: piece)
            expected.append((try store.store(expectedSize: announced, read: f.read), data, what))
        }
        // Small members stay inline until the 5000-byte budget is used up (five of 900)...
        for i in 0..<5 { try add("small \(i)", Self.bytes(900, seed: UInt64(i)), announced: 900, piece: 4096) }
        // ...then spill although they are small.
        for i in 5..<10 { try add("small \(i)", Self.bytes(900, seed: UInt64(i)), announced: 900, piece: 4096) }
        // Bigger than the limit; across several 1 MiB write buffers, fed in odd pieces.
        try add("big", Self.bytes(2_600_001, seed: 99), announced: 2_600_001, piece: 7777)
        try add("one block", Self.bytes(4096, seed: 98), announced: 4096, piece: 4096)
        // Longer than announced: starts inline, ends up in the pack.
        try add("longer", Self.bytes(200_000, seed: 97), announced: 10, piece: 3)
        // Announced as empty but is not; unknown size.
        try add("announced empty", Self.bytes(5, seed: 96), announced: 0, piece: 1)
        try add("unknown size", Self.bytes(70_000, seed: 95), announced: -1, piece: 65536)
        try add("unknown empty", [], announced: -1, piece: 1)
        // The same content twice is stored twice (nothing here hashes).
        try add("duplicate", Self.bytes(2_600_001, seed: 99), announced: 2_600_001, piece: 1 << 20)

        // A member whose read fails midway: the error comes through, and the next member
        // reuses its space without disturbing what came before.
        let failing = Feeder(Self.bytes(1_500_000, seed: 94), piece: 100_000, failAfter: 1_200_000)
        #expect(throws: MessageError.self) { try store.store(expectedSize: 1_500_000, read: failing.read) }
        try add("after failure", Self.bytes(300_000, seed: 93), announced: 300_000, piece: 65536)
        try store.sync()

        guard let pack = store.packPath else { Issue.record("nothing spilled"); return }
        var ranges: [(UInt64, UInt64)] = []
        for (source, data, what) in expected {
            #expect(try ContentReader(source).readAll() == data, "\(what)")
            switch source {
            case .bytes: #expect(what.hasPrefix("small") && Int(what.dropFirst(6)) ?? 99 < 5, "\(what) inline")
            case .empty: #expect(data.isEmpty, "\(what)")
            case .fileRange(let p, let offset, let length):
                #expect(p == pack && offset % 4096 == 0 && length == UInt64(data.count), "\(what): \(source)")
                ranges.append((offset, length))
            case .hostFile: Issue.record("\(what): one file per member again: \(source)")
            }
        }
        #expect(ranges.count == 12)
        // In order, back to back at 4 KiB steps, never overlapping; the failed member left
        // no gap ("after failure" follows "duplicate").
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(b.0 == (a.0 + a.1 + 4095) / 4096 * 4096, "\(a) then \(b)") }
        #expect(try FileSystem.listDirectory(t.sub("blobs")) == [FileSystem.basename(pack)])
    }

    /// A store dropped while its writes are still queued: the last write releases the
    /// writer on the queue's thread (this crashed once, when the writer's deinit waited
    /// for its own queue). The writes still all land.
    @Test func droppingAStoreWithWritesInFlight() throws {
        let t = try TempDir("blobstore-drop")
        var sources: [ContentSource] = []
        for i in 0..<60 {
            let store = try BlobStore(directory: t.sub("b\(i)"), inlineLimit: 0)
            sources.append(try store.store(bytes: Self.bytes(1_500_000, seed: UInt64(i))))
        }
        // No sync handle is left: wait until the packs have their full size, then compare.
        for (i, source) in sources.enumerated() {
            guard case .fileRange(let pack, 0, 1_500_000) = source else { Issue.record("\(source)"); continue }
            var tries = 0
            while try FileSystem.stat(pack).size < 1_500_000 && tries < 500 {
                usleep(10_000)
                tries += 1
            }
            #expect(try ContentReader(source).readAll() == Self.bytes(1_500_000, seed: UInt64(i)))
        }
    }

    @Test func writeErrorsNameThePack() throws {
        // /dev/full is not possible for a pack (created fresh), so fill a tiny tmpfs instead.
        guard TestEnv.isRoot else { print("SKIP: mounting a small tmpfs needs root"); return }
        let t = try TempDir("blobstore-full")
        let mnt = t.sub("mnt")
        try FileSystem.makeDirectories(mnt)
        _ = try Subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt])
        defer {
            _ = try? Subprocess.run(["umount", mnt])
            withExtendedLifetime(t) {}
        }
        let store = try BlobStore(directory: mnt + "/blobs", inlineLimit: 0)
        let f = Feeder(Self.bytes(3 << 20, seed: 1), piece: 1 << 20)
        do {
            _ = try store.store(expectedSize: 3 << 20, read: f.read)
            try store.sync()
            Issue.record("3 MiB fit into a 1 MiB tmpfs")
        } catch let e as SystemError {
            #expect(e.description.contains(mnt + "/blobs/pack-") && e.description.contains("No space left"), "\(e)")
        }
    }

    @Test func stalePacksOfGoneProcessesAreRemoved() throws {
        let t = try TempDir("blobstore-stale")
        let dir = t.sub("blobs")
        try FileSystem.makeDirectories(dir)
        // A process that has exited: its pid names a stale pack.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        let dead = p.processIdentifier
        let live = getpid()
        for name in ["pack-\(dead)-1a", "pack-\(live)-2b", "pack-1-3c", "notes", "pack-x-4d"] {
            try FileSystem.writeAtomically(dir + "/" + name, "x")
        }
        _ = try BlobStore(directory: dir)
        #expect(try FileSystem.listDirectory(dir).sorted() == ["notes", "pack-1-3c", "pack-\(live)-2b", "pack-x-4d"])
    }

    /// Through the importer with a small inline budget: many members above the limit and
    /// many small ones spilled after the budget, exported and compared with the source.
    @Test func archiveImportWithSpilledMembersMatchesSource() throws {
        guard TestEnv.oracle("tar", package: "tar") != nil else { return }
        let t = try TempDir("blobstore-import")
        let src = t.sub("src")
        try FileSystem.makeDirectories(src + "/small")
        try FileSystem.makeDirectories(src + "/big")
        for i in 0..<300 {
            try FileSystem.writeAtomically(src + "/small/f\(i)", Self.bytes(1 + i * 37 % 3000, seed: UInt64(i)))
        }
        for (i, size) in [65536, 65537, 65535, 131072, 1 << 20, (1 << 20) + 1, 3_000_003, 4096, 70_000].enumerated() {
            try FileSystem.writeAtomically(src + "/big/b\(i)", Self.bytes(size, seed: UInt64(1000 + i)))
        }
        try FileSystem.writeAtomically(src + "/big/dup", Self.bytes(3_000_003, seed: 1006))
        try FileSystem.writeAtomically(src + "/big/zeros", [UInt8](repeating: 0, count: 500_000))
        _ = try sh("find \(q(src)) -exec touch -h -d @1700000000 {} + && tar --format=pax -C \(q(src)) -cf \(q(t.sub("a.tar"))) .")

        let store = try BlobStore(directory: t.sub("blobs"), inlineBudget: 100_000)
        var tree = FSTree()
        let s = try ArchiveImporter.importArchive(t.sub("a.tar"), into: &tree, blobs: store)
        #expect(s.members == 314)
        var spilled = 0
        for id in tree.reachableInodes() where tree[id].kind == .regular {
            if case .fileRange = tree[id].content { spilled += 1 }
        }
        #expect(spilled > 200, "\(spilled) members spilled")
        try TreeExporter.export(tree, to: t.sub("back"))
        let diffs = try HostTree.compare(src, t.sub("back"), checkRoot: false, xattrs: false)
        #expect(diffs.isEmpty, "\(diffs.prefix(8).joined(separator: "\n"))")
    }
}
