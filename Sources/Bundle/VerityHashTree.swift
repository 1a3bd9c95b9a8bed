import Basics
import COpenSSL
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// dm-verity hash tree as RAUC lays it out in verity bundles: format 1, no superblock,
/// SHA-256, 4 KiB data and hash blocks, digest = SHA-256(salt || block), levels stored
/// top level first, level 0 (data block digests) last. Equivalent to
/// `veritysetup format --no-superblock --format=1 --hash=sha256` with the hash area
/// directly behind the data.
public enum VerityHashTree {
    public static let blockSize = 4096
    static let digestSize = 32
    static let digestsPerBlock = blockSize / digestSize

    /// Hash blocks per level, level 0 first.
    public static func levelBlockCounts(dataBlocks: Int) -> [Int] {
        var counts: [Int] = []
        var n = dataBlocks
        repeat {
            n = (n + digestsPerBlock - 1) / digestsPerBlock
            counts.append(n)
        } while n > 1
        return counts
    }

    public static func treeSize(dataSize: UInt64) -> UInt64 {
        UInt64(levelBlockCounts(dataBlocks: Int(dataSize / UInt64(blockSize))).reduce(0, +) * blockSize)
    }

    /// Byte offset of each level inside the tree (level 0 first in the array).
    static func levelOffsets(_ counts: [Int]) -> [Int] {
        var offsets = [Int](repeating: 0, count: counts.count)
        var off = 0
        for level in stride(from: counts.count - 1, through: 0, by: -1) {
            offsets[level] = off
            off += counts[level] * blockSize
        }
        return offsets
    }

    /// Salted SHA-256 of every 4 KiB block in [0, dataSize) of `fd`, read in parallel
    /// chunks (bounded memory: one chunk buffer per worker).
    static func dataDigests(fd: Int32, path: String, dataSize: UInt64, salt: [UInt8]) throws -> [UInt8] {
        let blocks = Int(dataSize / UInt64(blockSize))
        var out = [UInt8](repeating: 0, count: blocks * digestSize)
        let chunkBlocks = 256  // 1 MiB reads
        let chunks = (blocks + chunkBlocks - 1) / chunkBlocks
        let failure = ErrorCollector()
        out.withUnsafeMutableBytes { outBuf in
            let outBase = SharedRawPointer(outBuf.baseAddress)
            DispatchQueue.concurrentPerform(iterations: chunks) { ci in
                if failure.hasError { return }
                let first = ci * chunkBlocks
                let count = min(chunkBlocks, blocks - first)
                let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: count * blockSize, alignment: 64)
                defer { buf.deallocate() }
                do {
                    try preadFully(fd, buf, offset: UInt64(first) * UInt64(blockSize), path: path)
                    guard let outRaw = outBase.raw else { return }
                    var hasher = SaltedHasher(salt: salt)
                    for b in 0..<count {
                        let block = UnsafeRawBufferPointer(rebasing: buf[(b * blockSize)..<((b + 1) * blockSize)])
                        hasher.digest(block, into: outRaw + (first + b) * digestSize)
                    }
                } catch {
                    failure.add(ci, error)
                }
            }
        }
        if let e = failure.first { throw e }
        return out
    }

    /// Builds the full tree (on-disk order) and root hash from level-0 digests.
    static func assemble(level0: [UInt8], dataBlocks: Int, salt: [UInt8]) -> (tree: [UInt8], root: [UInt8]) {
        let counts = levelBlockCounts(dataBlocks: dataBlocks)
        let offsets = levelOffsets(counts)
        var tree = [UInt8](repeating: 0, count: counts.reduce(0, +) * blockSize)
        tree.replaceSubrange(offsets[0]..<(offsets[0] + level0.count), with: level0)
        var hasher = SaltedHasher(salt: salt)
        var root = [UInt8](repeating: 0, count: digestSize)
        tree.withUnsafeMutableBytes { t in
            guard let base = t.baseAddress else { return }
            for level in 0..<counts.count {
                for b in 0..<counts[level] {
                    let block = UnsafeRawBufferPointer(start: base + offsets[level] + b * blockSize, count: blockSize)
                    if level + 1 < counts.count {
                        hasher.digest(block, into: base + offsets[level + 1] + b * digestSize)
                    } else {
                        root.withUnsafeMutableBytes { r in
                            if let rb = r.baseAddress { hasher.digest(block, into: rb) }
                        }
                    }
                }
            }
        }
        return (tree, root)
    }

    /// Tree + root hash for the first `dataSize` bytes of the file at `path`.
    public static func build(path: String, dataSize: UInt64, salt: [UInt8]) throws -> (tree: [UInt8], root: [UInt8]) {
        precondition(dataSize % UInt64(blockSize) == 0)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        let level0 = try dataDigests(fd: fd, path: path, dataSize: dataSize, salt: salt)
        return assemble(level0: level0, dataBlocks: Int(dataSize / UInt64(blockSize)), salt: salt)
    }

    public enum Mismatch: Sendable, Equatable, CustomStringConvertible {
        case rootHash
        case hashBlock(level: Int, index: Int, bundleOffset: UInt64)
        case dataBlock(index: Int, bundleOffset: UInt64)
        case spareNotZero(bundleOffset: UInt64)
        public var description: String {
            switch self {
            case .rootHash:
                return "top hash block does not match the signed root hash (verity-hash)"
            case let .hashBlock(level, index, off):
                return "hash tree block \(index) of level \(level) (bundle offset \(off)) does not match its parent level"
            case let .dataBlock(index, off):
                return "payload data block \(index) (bundle offset \(off)) does not match the hash tree"
            case let .spareNotZero(off):
                return "hash tree padding is not zero at bundle offset \(off)"
            }
        }
    }

    /// Verifies data [0, dataSize) against the tree stored at [dataSize, dataSize + V) and
    /// `root`, top-down like the kernel, so the first failure names the bad block.
    public static func verify(path: String, dataSize: UInt64, params: VerityParameters) throws -> Mismatch? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        let dataBlocks = Int(dataSize / UInt64(blockSize))
        let counts = levelBlockCounts(dataBlocks: dataBlocks)
        let offsets = levelOffsets(counts)
        let expected = counts.reduce(0, +) * blockSize
        guard UInt64(expected) == params.hashTreeSize else {
            throw BundleError.verity("verity-size \(params.hashTreeSize) in the signed manifest does not fit \(dataBlocks) data blocks (expected \(expected))")
        }
        var stored = [UInt8](repeating: 0, count: expected)
        try stored.withUnsafeMutableBytes { try preadFully(fd, $0, offset: dataSize, path: path) }
        var hasher = SaltedHasher(salt: params.salt)
        var digest = [UInt8](repeating: 0, count: digestSize)
        func hash(_ off: Int) -> [UInt8] {
            stored.withUnsafeBytes { s in
                digest.withUnsafeMutableBytes { d in
                    if let sb = s.baseAddress, let db = d.baseAddress {
                        hasher.digest(UnsafeRawBufferPointer(start: sb + off, count: blockSize), into: db)
                    }
                }
            }
            return digest
        }
        let top = counts.count - 1
        if hash(offsets[top]) != params.rootHash { return .rootHash }
        for level in stride(from: top, through: 0, by: -1) {
            let entries = level == 0 ? dataBlocks : counts[level - 1]
            // Spare area after the last digest of this level must be zero.
            let used = offsets[level] + entries * digestSize
            let end = offsets[level] + counts[level] * blockSize
            if let nz = stored[used..<end].firstIndex(where: { $0 != 0 }) {
                return .spareNotZero(bundleOffset: dataSize + UInt64(nz))
            }
            if level > 0 {
                for b in 0..<counts[level - 1] {
                    let want = stored[(offsets[level] + b * digestSize)..<(offsets[level] + (b + 1) * digestSize)]
                    if hash(offsets[level - 1] + b * blockSize)[...] != want {
                        return .hashBlock(level: level - 1, index: b, bundleOffset: dataSize + UInt64(offsets[level - 1] + b * blockSize))
                    }
                }
            }
        }
        let level0 = try dataDigests(fd: fd, path: path, dataSize: dataSize, salt: params.salt)
        let storedLevel0 = stored[offsets[0]..<(offsets[0] + dataBlocks * digestSize)]
        if !level0.elementsEqual(storedLevel0) {
            var i = 0
            while i < dataBlocks {
                if level0[(i * digestSize)..<((i + 1) * digestSize)] != stored[(offsets[0] + i * digestSize)..<(offsets[0] + (i + 1) * digestSize)] { break }
                i += 1
            }
            return .dataBlock(index: i, bundleOffset: UInt64(i) * UInt64(blockSize))
        }
        return nil
    }
}

/// SHA-256 with the salt absorbed once and the state cloned per block.
struct SaltedHasher: ~Copyable {
    private let base: OpaquePointer
    private let work: OpaquePointer

    init(salt: [UInt8]) {
        guard let b = EVP_MD_CTX_new(), let w = EVP_MD_CTX_new() else { fatalError("out of memory allocating EVP_MD_CTX") }
        base = b
        work = w
        EVP_DigestInit_ex(base, EVP_sha256(), nil)
        salt.withUnsafeBytes { _ = EVP_DigestUpdate(base, $0.baseAddress, $0.count) }
    }

    deinit {
        EVP_MD_CTX_free(base)
        EVP_MD_CTX_free(work)
    }

    mutating func digest(_ block: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        EVP_MD_CTX_copy_ex(work, base)
        EVP_DigestUpdate(work, block.baseAddress, block.count)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(work, out.assumingMemoryBound(to: UInt8.self), &len)
    }
}

func preadFully(_ fd: Int32, _ buf: UnsafeMutableRawBufferPointer, offset: UInt64, path: String) throws {
    do {
        try FileReading.preadFully(fd, buf, offset: offset, path: path)
    } catch let e as ShortFileError {
        throw BundleError.truncated(path: e.path, offset: e.offset)
    }
}
