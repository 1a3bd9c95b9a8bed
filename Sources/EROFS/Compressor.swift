import Basics
import Codecs
import FSTree

/// One thread's fixed-output-size compressor (LZ4, LZ4HC or MicroLZMA).
final class ExtentCompressor {
    private let lz4: LZ4DestSizeCompressor?
    private let lzma: MicroLZMAEncoder?
    private var scratch: [UInt8]

    init(_ c: EROFSOptions.Compression, pclusterSize: Int, lzmaDictionary: UInt32) throws {
        switch c {
        case .none, .lz4: lz4 = LZ4DestSizeCompressor(hcLevel: nil); lzma = nil
        case .lz4hc(let l): lz4 = LZ4DestSizeCompressor(hcLevel: l); lzma = nil
        case .lzma(let l): lz4 = nil; lzma = try MicroLZMAEncoder(level: l, dictionarySize: lzmaDictionary)
        }
        scratch = [UInt8](repeating: 0, count: pclusterSize + 64)
    }

    deinit { input.deallocate() }

    /// This worker's input buffer, reused from job to job: a fresh array per job would
    /// fault in (and zero) new pages for every piece read.
    private var input = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// Reads all of `source` into the reusable buffer; valid until the next call.
    func read(_ source: ContentSource) throws -> UnsafeRawBufferPointer {
        let reader = try ContentReader(source)
        let n = Int(reader.remaining)
        if input.count < n {
            input.deallocate()
            input = .allocate(byteCount: max(n, 64 << 10), alignment: 4096)
        }
        var got = 0
        while got < n {
            let k = try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: input[got..<n]))
            if k == 0 { break }
            got += k
        }
        // A read with nothing left checks the end (a whole host file must not have grown).
        _ = try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: input[got..<got]))
        return UnsafeRawBufferPointer(rebasing: input[0..<got])
    }

    /// Compresses a prefix of `input` into at most `target` bytes; returns the consumed
    /// input length and the compressed bytes.
    func compress(_ input: UnsafeRawBufferPointer, target: Int) throws -> (consumed: Int, data: ArraySlice<UInt8>) {
        let (c, w) = try scratch.withUnsafeMutableBytes { out -> (Int, Int) in
            if let lz4 { return try lz4.compress(input, into: out, target: target) }
            if let lzma { return try lzma.compress(input, into: out, target: target) }
            return (0, 0)
        }
        return (c, scratch[0..<w])
    }
}

/// One extent of a compressed file: `length` bytes of the file from `start`, stored in
/// `blocks` physical blocks (raw in one block when `plain`).
struct Extent: Sendable {
    var start: UInt64
    var length: Int
    var plain: Bool
    var blocks: Int
    /// ztailpacking: the compressed bytes live in the metadata after the index.
    var inline = false
}

/// Cuts `buffer` (the file bytes from `segmentStart`) into extents whose compressed form
/// fills at most `pclusterSize` bytes, appending the physical clusters (zero padded at the
/// front, as LZ4_0PADDING requires) to `out`.
func compressSegment(
    _ buffer: UnsafeRawBufferPointer, segmentStart: UInt64, fileSize: UInt64, pclusterSize: Int,
    maxExtentInput: Int, compressor: ExtentCompressor, out: inout [UInt8],
    tailBudget: Int = 0, inlineTail: inout [UInt8]
) throws -> [Extent] {
    let bs = EROFSFormat.blockSize
    var extents: [Extent] = []
    var pos = 0
    let n = buffer.count
    while pos < n {
        let abs = segmentStart + UInt64(pos)
        let lcn = abs / UInt64(bs)
        let cap = min(n - pos, maxExtentInput)
        let input = UnsafeRawBufferPointer(rebasing: buffer[pos..<(pos + cap)])
        var (consumed, data) = try compressor.compress(input, target: pclusterSize)
        var blocks = (data.count + bs - 1) / bs
        if blocks > 1 {
            // A pcluster of more than one block needs a NONHEAD lcluster right after its
            // head to carry the block count; otherwise it must be a single block.
            let end = abs + UInt64(consumed)
            let next = (lcn + 1) * UInt64(bs)
            let hasNonHead = next < end && (end == fileSize || end >= next + UInt64(bs))
            if !hasNonHead {
                (consumed, data) = try compressor.compress(input, target: bs)
                blocks = 1
            }
        }
        let rest = n - pos
        let isFinal = segmentStart + UInt64(n) == fileSize && consumed == rest
        // The kernel bounds a PLAIN extent by the end of the lcluster being read, so a raw
        // final piece must not run into a NONHEAD lcluster: keep such a piece compressed
        // when it fits one block, or split it at the lcluster boundary.
        let crossesAtEOF = Int(abs % UInt64(bs)) + min(bs, rest) > bs && rest <= bs
        // Only worth a second try when the last block's share is likely to fit inline.
        let lastUsed = data.count - (blocks - 1) * bs
        if isFinal && tailBudget > 0 && blocks > 1 && lastUsed + lastUsed / 8 + 16 <= tailBudget {
            // The last extent needs several blocks: one block fewer plus an inline tail is
            // smaller when the rest compresses into the tail budget.
            let fewer = (blocks - 1) * bs
            let (c1, d1) = try compressor.compress(input, target: fewer)
            let b1 = (d1.count + bs - 1) / bs
            let e1 = abs + UInt64(c1)
            let next = (lcn + 1) * UInt64(bs)
            let nonHead1 = next < e1 && e1 >= next + UInt64(bs)
            if c1 > fewer, c1 < rest, b1 == 1 || nonHead1 {
                let restInput = UnsafeRawBufferPointer(rebasing: buffer[(pos + c1)..<(pos + rest)])
                let (c2, d2) = try compressor.compress(restInput, target: min(bs - 1, tailBudget))
                if c2 == rest - c1 && !d2.isEmpty {
                    out.append(contentsOf: repeatElement(0, count: b1 * bs - d1.count))
                    out.append(contentsOf: d1)
                    extents.append(Extent(start: abs, length: c1, plain: false, blocks: b1))
                    inlineTail = Array(d2)
                    extents.append(Extent(start: e1, length: c2, plain: false, blocks: 0, inline: true))
                    pos += c1 + c2
                    continue
                }
            }
        }
        if isFinal && data.count < bs && data.count <= tailBudget && !data.isEmpty {
            // ztailpacking: the last extent's compressed bytes go inline into the metadata.
            inlineTail = Array(data)
            extents.append(Extent(start: abs, length: consumed, plain: false, blocks: 0, inline: true))
            pos += consumed
        } else if isFinal && crossesAtEOF && blocks == 1 {
            out.append(contentsOf: repeatElement(0, count: bs - data.count))
            out.append(contentsOf: data)
            extents.append(Extent(start: abs, length: consumed, plain: false, blocks: 1))
            pos += consumed
        } else if consumed == 0 || (consumed + bs - 1) / bs <= blocks {
            // Compression saves no block: store up to one block raw (PLAIN lcluster).
            var len = min(bs, rest)
            if segmentStart + UInt64(n) == fileSize && len == rest && Int(abs % UInt64(bs)) + len > bs {
                len = bs - Int(abs % UInt64(bs))
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[pos..<(pos + len)]))
            out.append(contentsOf: repeatElement(0, count: bs - len))
            extents.append(Extent(start: abs, length: len, plain: true, blocks: 1))
            pos += len
        } else {
            out.append(contentsOf: repeatElement(0, count: blocks * bs - data.count))
            out.append(contentsOf: data)
            extents.append(Extent(start: abs, length: consumed, plain: false, blocks: blocks))
            pos += consumed
        }
    }
    return extents
}

/// The full (8 bytes per lcluster) index of a compressed file, preceded by the map header
/// and its 8 reserved bytes. `firstBlock` is the block of the first pcluster; pclusters
/// follow each other in extent order.
func fullIndex(extents: [Extent], fileSize: UInt64, firstBlock: UInt32, algorithm: UInt8, bigPcluster: Bool, inlineSize: Int) -> [UInt8] {
    let bs = UInt64(EROFSFormat.blockSize)
    let count = Int(divRoundUp(fileSize, bs))
    var w = ByteWriter(capacity: 16 + 8 * count)
    // Map header: fragment offset / idata size (0), advise, algorithm, cluster bits (0 = 4 KiB).
    w.u16(0)
    w.u16(UInt16(inlineSize))
    w.u16((bigPcluster ? EROFSFormat.adviseBigPcluster1 : 0) | (inlineSize > 0 ? EROFSFormat.adviseInlinePcluster : 0))
    w.u8(algorithm)
    w.u8(0)
    w.zeros(8)
    var idx = [UInt8](repeating: 0, count: 8 * count)
    var blk = firstBlock
    for (k, e) in extents.enumerated() {
        let head = Int(e.start / bs)
        let nextHead = k + 1 < extents.count ? Int(extents[k + 1].start / bs) : count
        let o = 8 * head
        idx.putU16(e.plain ? EROFSFormat.lclusterPlain : EROFSFormat.lclusterHead1, at: o)
        idx.putU16(UInt16(e.start % bs), at: o + 2)
        idx.putU32(blk, at: o + 4)
        if head + 1 < nextHead {
            for l in (head + 1)..<nextHead {
                let p = 8 * l
                idx.putU16(EROFSFormat.lclusterNonHead, at: p)
                var d0 = UInt16(l - head)
                if l == head + 1 && bigPcluster && !e.plain && !e.inline { d0 = EROFSFormat.cblkcntFlag | UInt16(e.blocks) }
                idx.putU16(d0, at: p + 4)
                idx.putU16(UInt16(nextHead - l), at: p + 6)
            }
        }
        blk += UInt32(e.blocks)
    }
    w.append(idx)
    return w.bytes
}

/// Compacted index (layout 3): map header, then lcluster entries bit-packed as 4-byte
/// amortised packs (2 entries in 8 bytes) up to a 32-byte boundary, 2-byte packs (16 entries
/// in 32 bytes) in the middle and 4-byte packs for the rest; each pack ends in a u32 base
/// block address from which the kernel derives every head's pcluster address by counting
/// the pclusters before it in the pack. `inodeBase` = inode header + xattr bytes.
enum CompactIndex {
    /// (4B initial, 2B, 4B tail) entry counts, each already padded to whole packs.
    static func regions(inodeBase: Int, count: Int) -> (Int, Int, Int) {
        let ebase = roundUp(inodeBase, 8) + 8
        var initial = (32 - ebase % 32) / 4
        if initial == 8 { initial = 0 }
        if count <= initial { return (roundUp(count, 2), 0, 0) }
        let twoB = (count - initial) / 16 * 16
        return (initial, twoB, roundUp(count - initial - twoB, 2))
    }

    /// Bytes after the inode header + xattrs (alignment, map header, packs).
    static func recordBytes(inodeBase: Int, fileSize: UInt64) -> Int {
        let count = Int(divRoundUp(fileSize, UInt64(EROFSFormat.blockSize)))
        let (a, b, c) = regions(inodeBase: inodeBase, count: count)
        return roundUp(inodeBase, 8) + 8 + 4 * a + 2 * b + 4 * c
    }

    static func build(extents: [Extent], fileSize: UInt64, firstBlock: UInt32, algorithm: UInt8,
                      bigPcluster: Bool, inlineSize: Int, inodeBase: Int) -> [UInt8] {
        let bs = UInt64(EROFSFormat.blockSize)
        let count = Int(divRoundUp(fileSize, bs))
        // Per lcluster: type, 12-bit value for a non-last slot, value for a last slot.
        var type = [UInt16](repeating: 0, count: count)
        var lo = [UInt16](repeating: 0, count: count)
        var loLast = [UInt16](repeating: 0, count: count)
        // Per extent: head slot, accounting slot, pcluster address.
        var heads: [(head: Int, account: Int, pblk: UInt32)] = []
        var blk = firstBlock
        for (k, e) in extents.enumerated() {
            let head = Int(e.start / bs)
            let nextHead = k + 1 < extents.count ? Int(extents[k + 1].start / bs) : count
            type[head] = e.plain ? EROFSFormat.lclusterPlain : EROFSFormat.lclusterHead1
            lo[head] = UInt16(e.start % bs)
            loLast[head] = lo[head]
            let cblk = bigPcluster && !e.plain && !e.inline && head + 1 < nextHead
            heads.append((head, cblk ? head + 1 : head, blk))
            if head + 1 < nextHead {
                for l in (head + 1)..<nextHead {
                    type[l] = EROFSFormat.lclusterNonHead
                    if cblk && l == head + 1 {
                        lo[l] = EROFSFormat.cblkcntFlag | UInt16(e.blocks)
                        loLast[l] = lo[l]
                    } else {
                        lo[l] = UInt16(l - head)
                        loLast[l] = UInt16(nextHead - l)
                    }
                }
            }
            blk &+= UInt32(e.blocks)
        }
        var w = ByteWriter()
        w.u16(0)
        w.u16(UInt16(inlineSize))
        var advise = EROFSFormat.adviseCompacted2B
        if bigPcluster { advise |= EROFSFormat.adviseBigPcluster1 | EROFSFormat.adviseBigPcluster2 }
        if inlineSize > 0 { advise |= EROFSFormat.adviseInlinePcluster }
        w.u16(advise)
        w.u8(algorithm)
        w.u8(0)
        let (a, b, c) = regions(inodeBase: inodeBase, count: count)
        var first = 0
        var hk = 0   // first extent whose head or accounting slot may lie in the current pack
        func pack(_ vcnt: Int, _ bytes: Int) {
            let bits = (bytes - 4) * 8 / vcnt
            var out = [UInt8](repeating: 0, count: bytes)
            for s in 0..<vcnt {
                let l = first + s
                guard l < count else { break }
                let v = UInt32((s == vcnt - 1 ? loLast[l] : lo[l]) & 0xFFF) | UInt32(type[l]) << 12
                let bitPos = bits * s
                let word = v << UInt32(bitPos % 8)
                for j in 0..<4 where bitPos / 8 + j < bytes - 4 {
                    out[bitPos / 8 + j] |= UInt8((word >> (8 * UInt32(j))) & 0xFF)
                }
            }
            // Base address: pcluster of the first extent touching this pack.
            while hk < heads.count && heads[hk].account < first { hk += 1 }
            var base: UInt32 = 0
            if hk < heads.count && min(heads[hk].head, heads[hk].account) < first + vcnt
                && (heads[hk].head >= first || heads[hk].account >= first) {
                base = heads[hk].pblk
                // Without big pclusters the kernel counts the first head itself.
                if !bigPcluster {
                    var h = hk
                    while h < heads.count && heads[h].head < first { h += 1 }
                    base = (h < heads.count ? heads[h].pblk : 0) &- 1
                }
            }
            out.putU32(base, at: bytes - 4)
            w.append(out)
            first += vcnt
        }
        for _ in 0..<(a / 2) { pack(2, 8) }
        for _ in 0..<(b / 16) { pack(16, 32) }
        for _ in 0..<(c / 2) { pack(2, 8) }
        return w.bytes
    }
}
