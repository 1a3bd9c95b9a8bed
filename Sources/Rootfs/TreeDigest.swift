import Basics
import Dispatch
import Foundation
import FSTree

/// A SHA-256 over everything a writer would put into an image from an FSTree: every path
/// with its type, permissions, owner, mtime, device number, symlink target, xattrs,
/// hard-link identity and content hash. Two trees with equal digests produce the same
/// images; the build-id stamp is derived from it.
public enum TreeDigest {
    /// `knownHash` may supply a content hash without reading it (a caller that already
    /// knows it).
    public static func compute(_ tree: FSTree, knownHash: (ContentSource) -> String? = { _ in nil }) throws -> String {
        let order = tree.reachableInodes()
        var index: [InodeID: Int] = [:]
        for (i, id) in order.enumerated() { index[id] = i }
        // Hash file contents on all cores; one slot per regular inode.
        let regular = order.filter { tree[$0].kind == .regular }
        let sources = regular.map { tree[$0].content }
        let hashes = try parallelHashes(sources, knownHash: knownHash)
        var contentHash: [InodeID: String] = [:]
        for (i, id) in regular.enumerated() { contentHash[id] = hashes[i] }

        let h = SHA256()
        h.updateField("osbuild-tree-digest-v1")
        try tree.walk { path, id, n in
            h.updateField(path)
            h.updateField("\(index[id] ?? -1) \(n.mode) \(n.uid) \(n.gid) \(n.mtime.seconds).\(n.mtime.nanoseconds) \(n.rdev.major),\(n.rdev.minor)")
            h.updateField(n.symlinkTarget)
            for x in n.xattrs {
                h.updateField(x.name)
                h.updateField(Hex.encode(x.value))
            }
            if n.kind == .regular {
                guard let c = contentHash[id] else { throw MessageError("internal: no content hash for \(path)") }
                h.updateField(c)
            }
        }
        return h.hexDigest()
    }

    /// SHA-256 of each source, computed on all cores.
    public static func parallelHashes(_ sources: [ContentSource], knownHash: (ContentSource) -> String?) throws -> [String] {
        final class Box: @unchecked Sendable {
            var results: [String?]
            var firstError: (any Error)?
            let lock = NSLock()
            init(_ n: Int) { results = Array(repeating: nil, count: n) }
        }
        let box = Box(sources.count)
        var pending: [Int] = []
        for (i, s) in sources.enumerated() {
            if let k = knownHash(s) { box.results[i] = k } else { pending.append(i) }
        }
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, pending.count))
        let srcs = sources
        let todo = pending
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var j = w
            while j < todo.count {
                let i = todo[j]
                do {
                    let hex = try hashContent(srcs[i])
                    box.lock.withLock { box.results[i] = hex }
                } catch {
                    box.lock.withLock { if box.firstError == nil { box.firstError = error } }
                }
                j += workers
            }
        }
        if let e = box.firstError { throw e }
        return box.results.map { $0 ?? "" }
    }

    public static func hashContent(_ s: ContentSource) throws -> String {
        switch s {
        case .empty: return SHA256.hex([UInt8]())
        case .bytes(let b): return SHA256.hex(b)
        default:
            let r = try ContentReader(s)
            let h = SHA256()
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { buf.deallocate() }
            while true {
                let n = try r.read(into: buf)
                if n == 0 { break }
                h.update(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
            }
            return h.hexDigest()
        }
    }
}

