import Basics
import FSTree
import Foundation

/// Writes an EROFS image from an `FSTree`. Layout: block 0 holds the superblock (and the
/// compression configurations); file data follows from block 1, streamed in tree order
/// while worker threads compress; then the metadata area (shared xattrs, then inodes with
/// their inline tails / compression indexes); then the blocks of large directories and
/// symlinks. The superblock is written last.
public struct EROFSWriter: Sendable {
    public var options: EROFSOptions

    public init(_ options: EROFSOptions = .init()) { self.options = options }

    /// Builds the image at `path` (atomically: a temp name renamed on success; flushed to
    /// disk first unless `durability` says otherwise).
    /// `progress` receives (input bytes done, input bytes total).
    @discardableResult
    public func write(tree: FSTree, to path: String, durability: Durability = .synced,
                      progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> EROFSStats {
        try validate()
        let out = try AtomicOutputFile(path, durability: durability)
        do {
            var b = try ImageBuilder(tree: tree, options: options, out: out, outputPath: path, progress: progress)
            var stats = try b.build()
            try stats.phases.measure("commit") { try out.commit() }
            return stats
        } catch {
            out.abandon()
            throw error
        }
    }

    func validate() throws {
        let p = options.pclusterSize
        guard p >= 4096, p <= 1 << 20, p % 4096 == 0 else { throw EROFSError(path: "", reason: .badClusterSize(p)) }
        guard options.label.utf8.count <= 16 else { throw EROFSError(path: "", reason: .labelTooLong(bytes: options.label.utf8.count)) }
        if let u = options.uuid, u.count != 16 { throw EROFSError(path: "", reason: .badUUID) }
        switch options.compression {
        case .lz4hc(let l): guard (1...12).contains(l) else { throw EROFSError(path: "", reason: .badLevel(l, range: 1...12)) }
        case .lzma(let l): guard (0...9).contains(l) else { throw EROFSError(path: "", reason: .badLevel(l, range: 0...9)) }
        default: break
        }
    }
}

/// One inode as laid out in the image.
private struct Node {
    var id: InodeID
    var inode: Inode
    var path: String
    var nlink: UInt32
    var parent: Int = 0
    var extended = false
    var xattrBody: [UInt8] = []
    var layout: UInt16 = EROFSFormat.layoutFlatPlain
    var size: UInt64 = 0
    var iu: UInt32 = 0
    var tail: [UInt8] = []
    var index: [UInt8] = []
    var nid: UInt64 = 0
    var children: [(name: [UInt8], node: Int)] = []
    /// Directory blocks (built once nids are known) / symlink target bytes.
    var lateBlocks = 0

    var inodeSize: Int { extended ? EROFSFormat.extendedInodeSize : EROFSFormat.compactInodeSize }
    /// Bytes available for an inline tail after inode + xattrs in one block.
    var inlineBudget: Int { EROFSFormat.blockSize - inodeSize - xattrBody.count }
}

/// Input of one worker job: a piece of one regular file.
private struct Job: Sendable {
    var node: Int
    var source: ContentSource
    var fileSize: UInt64
    var start: UInt64
    var length: Int
    var first: Bool
    var last: Bool
    var inlineBudget: Int
    /// Inode header + xattr bytes (where a compression index would start, before alignment).
    var inodeBase: Int
    var ztailpacking: Bool
    var fullIndex: Bool
}

/// A piece (at most `segmentSize` bytes) of an uncompressed file and its place in the image.
private struct FlatPiece: Sendable {
    var node: Int
    var source: ContentSource
    /// Offset of the piece in the file, and its length.
    var start: UInt64
    var length: UInt64
    /// Byte offset in the image where the piece's first byte goes.
    var imageOffset: UInt64
    var last: Bool
    /// The file's tail goes inline after its inode instead of into a padded block.
    var inlineTail: Bool
}

/// What a worker did with a run of `FlatPiece`s.
private struct FlatResult: Sendable {
    var tails: [(Int, [UInt8])] = []
    var input: UInt64 = 0
    var written: UInt64 = 0
}

private enum JobOutput: Sendable {
    /// The raw bytes of the piece (uncompressed layout).
    case raw([UInt8])
    /// Extents and their physical clusters.
    case compressed([Extent], [UInt8], tail: [UInt8])
}

private struct ImageBuilder {
    let tree: FSTree
    let options: EROFSOptions
    let out: AtomicOutputFile
    let outputPath: String
    let progress: (@Sendable (UInt64, UInt64) -> Void)?
    var nodes: [Node] = []
    var buildTime: Timestamp = .zero
    var sharedTable: [UInt8] = []
    var sharedCount = 0
    var block: UInt64 = 1
    var totalInput: UInt64 = 0
    var doneInput: UInt64 = 0
    var compressedFiles = 0
    var ztailFiles = 0

    static let segmentSize = 8 << 20

    init(tree: FSTree, options: EROFSOptions, out: AtomicOutputFile, outputPath: String, progress: (@Sendable (UInt64, UInt64) -> Void)?) throws {
        self.tree = tree
        self.options = options
        self.out = out
        self.outputPath = outputPath
        self.progress = progress
    }

    var compressing: Bool { options.compression != .none }
    var bigPcluster: Bool { compressing && options.pclusterSize > EROFSFormat.blockSize }
    var algorithm: UInt8 {
        if case .lzma = options.compression { return EROFSFormat.algorithmLZMA }
        return EROFSFormat.algorithmLZ4
    }
    var useConfigs: Bool { bigPcluster || algorithm == EROFSFormat.algorithmLZMA }
    /// Compact index deltas are 11-bit, so an extent must span fewer than 2048 lclusters.
    var maxExtentInput: Int { min(max(1 << 20, 16 * options.pclusterSize), 4 << 20) }
    var lzmaDictionary: UInt32 {
        // Larger than the input of most extents, small enough for cheap encoder resets.
        UInt32(min(Int(EROFSFormat.maxLZMADictionary), max(64 << 10, 4 * options.pclusterSize)))
    }

    mutating func build() throws -> EROFSStats {
        var phases = PhaseTimes()
        try phases.measure("plan") {
            try collect()
            try planXAttrs()
            chooseInodeForms()
            try planSmallData()
        }
        var early: Meta?
        try phases.measure("data") { early = try writeFileData() }
        try phases.measure("metadata") {
            let meta = try early ?? layoutMetadata()
            try writeMetadata(meta)
        }
        var s = stats()
        s.phases = phases
        return s
    }

    // MARK: Collect

    mutating func collect() throws {
        // One depth-first walk in byte order: nodes in first-visit order (root first),
        // each inode's first path, children, parents and link counts (directories:
        // 2 + subdirectories; others: number of names).
        var indexOf = [Int](repeating: -1, count: tree.inodeCapacity)
        indexOf[FSTree.rootID.raw] = 0
        nodes.append(Node(id: FSTree.rootID, inode: tree.root, path: "/", nlink: 2))
        func visit(_ d: Int, _ prefix: String) {
            for (name, cid) in tree.children(of: nodes[d].id) {
                let p = prefix + "/" + name
                var c = indexOf[cid.raw]
                if c < 0 {
                    c = nodes.count
                    indexOf[cid.raw] = c
                    nodes.append(Node(id: cid, inode: tree[cid], path: p, nlink: 0))
                }
                nodes[d].children.append((Array(name.utf8), c))
                if nodes[c].inode.kind == .directory {
                    nodes[c].parent = d
                    nodes[c].nlink = 2
                    nodes[d].nlink += 1
                    visit(c, p)
                } else {
                    nodes[c].nlink += 1
                }
            }
        }
        visit(0, "")
        for n in nodes where n.inode.kind == .regular { totalInput += n.inode.content.size }
        // Build time: explicit, else the most common mtime (ties: the earliest).
        if let t = options.buildTime {
            buildTime = t
        } else {
            var freq: [Timestamp: Int] = [:]
            for n in nodes { freq[n.inode.mtime, default: 0] += 1 }
            buildTime = freq.max { a, b in a.value != b.value ? a.value < b.value : a.key > b.key }?.key ?? .zero
        }
    }

    // MARK: Xattrs

    /// (name index, suffix) of an xattr name.
    static func xattrKey(_ name: String) -> (UInt8, [UInt8])? {
        if name == "system.posix_acl_access" { return (2, []) }
        if name == "system.posix_acl_default" { return (3, []) }
        for (prefix, idx) in [("user.", UInt8(1)), ("trusted.", 4), ("security.", 6)] where name.hasPrefix(prefix) {
            let suffix = Array(name.utf8.dropFirst(prefix.utf8.count))
            return suffix.isEmpty ? nil : (idx, suffix)
        }
        return nil
    }

    static func xattrEntry(_ key: (UInt8, [UInt8]), _ value: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: 4 + key.1.count + value.count + 3)
        w.u8(UInt8(key.1.count))
        w.u8(key.0)
        w.u16(UInt16(value.count))
        w.append(key.1)
        w.append(value)
        w.pad(to: 4)
        return w.bytes
    }

    mutating func planXAttrs() throws {
        struct Pair: Hashable { var name: String; var value: [UInt8] }
        var uses: [Pair: Int] = [:]
        for n in nodes {
            for x in n.inode.xattrs {
                guard let key = ImageBuilder.xattrKey(x.name) else {
                    throw EROFSError(path: n.path, reason: .unsupportedXAttr(name: x.name))
                }
                guard key.1.count <= 255, x.value.count <= 65535 else {
                    throw EROFSError(path: n.path, reason: .xattrTooLarge(name: x.name, bytes: x.value.count))
                }
                uses[Pair(name: x.name, value: x.value), default: 0] += 1
            }
        }
        // Pairs used by several inodes go to the shared table once; sorted for determinism.
        let shared = uses.filter { $0.value > 1 }.keys.sorted {
            $0.name != $1.name ? FSTree.byteOrderLess($0.name, $1.name) : $0.value.lexicographicallyPrecedes($1.value)
        }
        var sharedID: [Pair: UInt32] = [:]
        var table = ByteWriter()
        for p in shared {
            guard let key = ImageBuilder.xattrKey(p.name) else { continue }
            sharedID[p] = UInt32(table.count / 4)
            table.append(ImageBuilder.xattrEntry(key, p.value))
        }
        sharedTable = table.bytes
        sharedCount = shared.count
        guard sharedTable.count < (1 << 21) - 4096 else {
            throw EROFSError(path: outputPath, reason: .metadataTooLarge(bytes: sharedTable.count))
        }
        for i in nodes.indices where !nodes[i].inode.xattrs.isEmpty {
            var ids: [UInt32] = []
            var inline = ByteWriter()
            for x in nodes[i].inode.xattrs {
                let p = Pair(name: x.name, value: x.value)
                if let id = sharedID[p] {
                    ids.append(id)
                } else if let key = ImageBuilder.xattrKey(x.name) {
                    inline.append(ImageBuilder.xattrEntry(key, x.value))
                }
            }
            var w = ByteWriter(capacity: 12 + 4 * ids.count + inline.count)
            w.u32(0)               // h_reserved (name filter in newer kernels; 0 = unused)
            w.u8(UInt8(ids.count))
            w.zeros(7)
            for id in ids { w.u32(id) }
            w.append(inline.bytes)
            nodes[i].xattrBody = w.bytes
        }
    }

    // MARK: Inode forms

    mutating func chooseInodeForms() {
        for i in nodes.indices {
            let n = nodes[i].inode
            let size: UInt64
            switch n.kind {
            case .regular: size = n.content.size
            case .symlink: size = UInt64(n.symlinkTarget.utf8.count)
            default: size = 0
            }
            nodes[i].size = size
            nodes[i].extended = n.mtime != buildTime || n.uid > 0xFFFF || n.gid > 0xFFFF
                || nodes[i].nlink > 0xFFFF || size > UInt64(UInt32.max)
        }
    }

    // MARK: Directories and symlinks (sizes now, bytes once nids are known)

    /// Directory entries grouped per 4 KiB block.
    func direntBlocks(_ i: Int) -> [[(name: [UInt8], node: Int)]] {
        var all = nodes[i].children
        all.append((Array(".".utf8), i))
        all.append((Array("..".utf8), nodes[i].parent))
        all.sort { $0.name.lexicographicallyPrecedes($1.name) }
        var blocks: [[(name: [UInt8], node: Int)]] = [[]]
        var used = 0
        for e in all {
            let need = EROFSFormat.direntSize + e.name.count
            if used + need > EROFSFormat.blockSize {
                blocks.append([])
                used = 0
            }
            blocks[blocks.count - 1].append(e)
            used += need
        }
        return blocks
    }

    mutating func planSmallData() throws {
        let bs = EROFSFormat.blockSize
        for i in nodes.indices {
            switch nodes[i].inode.kind {
            case .directory:
                let blocks = direntBlocks(i)
                let lastUsed = blocks.last.map { $0.reduce(0) { $0 + EROFSFormat.direntSize + $1.name.count } } ?? 0
                let size = UInt64((blocks.count - 1) * bs + lastUsed)
                nodes[i].size = size
                if size > UInt64(UInt32.max) { nodes[i].extended = true }
                let tail = Int(size % UInt64(bs))
                if options.inlineData && tail > 0 && tail <= nodes[i].inlineBudget {
                    nodes[i].layout = EROFSFormat.layoutFlatInline
                    nodes[i].lateBlocks = blocks.count - 1
                    nodes[i].tail = [UInt8](repeating: 0, count: tail)   // filled later
                } else {
                    nodes[i].layout = EROFSFormat.layoutFlatPlain
                    nodes[i].lateBlocks = blocks.count
                }
            case .symlink:
                let t = Array(nodes[i].inode.symlinkTarget.utf8)
                if t.isEmpty { throw EROFSError(path: nodes[i].path, reason: .emptySymlink) }
                if t.count >= bs { throw EROFSError(path: nodes[i].path, reason: .symlinkTooLong(bytes: t.count)) }
                if options.inlineData && t.count <= nodes[i].inlineBudget {
                    nodes[i].layout = EROFSFormat.layoutFlatInline
                    nodes[i].tail = t
                } else {
                    nodes[i].layout = EROFSFormat.layoutFlatPlain
                    nodes[i].lateBlocks = 1
                }
            case .charDevice, .blockDevice:
                nodes[i].iu = nodes[i].inode.rdev.linuxEncoded
            default: break
            }
        }
    }

    // MARK: File data

    /// Returns the metadata layout when it was already made while the data was copied.
    mutating func writeFileData() throws -> Meta? {
        if !compressing { return try writeFlatData() }
        var jobs: [Job] = []
        let seg = UInt64(ImageBuilder.segmentSize)
        for (i, n) in nodes.enumerated() where n.inode.kind == .regular && n.size > 0 {
            let budget = options.inlineData ? n.inlineBudget : 0
            var s: UInt64 = 0
            while s < n.size {
                let len = min(seg, n.size - s)
                jobs.append(Job(node: i, source: n.inode.content, fileSize: n.size, start: s, length: Int(len),
                                first: s == 0, last: s + len == n.size, inlineBudget: budget,
                                inodeBase: n.inodeSize + n.xattrBody.count, ztailpacking: options.ztailpacking,
                                fullIndex: options.fullIndexes))
                s += len
            }
        }
        let opts = options
        let pcluster = options.pclusterSize
        let maxInput = maxExtentInput
        let dict = lzmaDictionary
        let compressing = self.compressing
        let jobList = jobs
        var fileStart: UInt64 = 0
        var extents: [Extent] = []
        try OrderedPipeline<ExtentCompressor?, JobOutput>.run(
            // Up to 48 MiB of input in flight (input, output and the worker's copy stay
            // well under 200 MiB of RSS) but many small files behind one big segment.
            count: jobList.count, threads: max(1, options.threads), window: 1024,
            budget: 48 << 20, cost: { jobList[$0].length },
            makeState: { compressing ? try ExtentCompressor(opts.compression, pclusterSize: pcluster, lzmaDictionary: dict) : nil },
            work: { state, k in try ImageBuilder.runJob(jobList[k], compressor: state, pclusterSize: pcluster, maxExtentInput: maxInput) },
            consume: { k, output in
                let job = jobList[k]
                if job.first { fileStart = block; extents = [] }
                switch output {
                case .raw(let bytes):
                    try placeRaw(job: job, bytes: bytes)
                case .compressed(let ex, let data, let tail):
                    try writeBlocks(data[...])
                    extents += ex
                    if job.last { try finishCompressed(job: job, fileStart: fileStart, extents: extents, inlineTail: tail) }
                }
                doneInput += UInt64(job.length)
                progress?(doneInput, totalInput)
            })
        return nil
    }

    // MARK: Uncompressed file data

    /// Without compression every file's place is known before any byte is read: its full
    /// blocks follow the previous file's, then its tail goes inline (returned to the
    /// consumer) or into one zero-padded block. So workers copy straight into the image
    /// at those offsets, with copy_file_range where the kernel allows it (no user-space
    /// copy of the data), and the consumer only collects inline tails in order. All
    /// record sizes are known too, so the consumer thread lays out the metadata while the
    /// workers copy, and patches the inline tails into it as they arrive.
    mutating func writeFlatData() throws -> Meta? {
        let bs = UInt64(EROFSFormat.blockSize)
        let seg = UInt64(ImageBuilder.segmentSize)
        var pieces: [FlatPiece] = []
        for (i, n) in nodes.enumerated() where n.inode.kind == .regular && n.size > 0 {
            let tail = n.size % bs
            let inline = tail > 0 && options.inlineData && Int(tail) <= n.inlineBudget
            nodes[i].layout = inline ? EROFSFormat.layoutFlatInline : EROFSFormat.layoutFlatPlain
            nodes[i].iu = UInt32(truncatingIfNeeded: block)
            if inline { nodes[i].tail = [UInt8](repeating: 0, count: Int(tail)) }   // bytes patched in later
            var s: UInt64 = 0
            while s < n.size {
                let len = min(seg, n.size - s)
                pieces.append(FlatPiece(node: i, source: n.inode.content, start: s, length: len,
                                        imageOffset: (block << 12) + s, last: s + len == n.size, inlineTail: inline))
                s += len
            }
            block += n.size / bs + (tail > 0 && !inline ? 1 : 0)
        }
        // Jobs of consecutive pieces, up to 4 MiB or 256 pieces: few hand-offs for small
        // files, and both workers busy.
        var jobs: [Range<Int>] = []
        var first = 0
        var bytes: UInt64 = 0
        for (k, p) in pieces.enumerated() {
            bytes += p.length
            if bytes >= 4 << 20 || k + 1 - first >= 256 || k + 1 == pieces.count {
                jobs.append(first..<(k + 1))
                first = k + 1
                bytes = 0
            }
        }
        let pieceList = pieces
        let jobList = jobs
        let fd = out.fd
        let outPath = outputPath
        let mode = options.fileCopy
        var laid: Meta?
        var metaBytes: [UInt8] = []
        try OrderedPipeline<Void, FlatResult>.run(
            count: jobList.count, threads: max(1, options.threads), window: 64,
            makeState: { () },
            work: { _, k in try ImageBuilder.copyFlat(pieceList[jobList[k]], out: fd, outPath: outPath, mode: mode) },
            consume: { _, r in
                if laid == nil {
                    // The workers are copying by now: lay out the metadata meanwhile.
                    var m = try layoutMetadata()
                    swap(&metaBytes, &m.bytes)
                    laid = m
                }
                for (node, tail) in r.tails {
                    nodes[node].tail = tail
                    let o = Int(nodes[node].nid) * EROFSFormat.slotSize + nodes[node].inodeSize + nodes[node].xattrBody.count
                    metaBytes.replaceSubrange(o..<(o + tail.count), with: tail)
                }
                out.noteWritten(Int(r.written))
                doneInput += r.input
                progress?(doneInput, totalInput)
            })
        guard var m = laid else { return nil }
        swap(&metaBytes, &m.bytes)
        return m
    }

    /// Copies `pieces` into the image file `out` (thread-safe: positional writes only).
    private static func copyFlat(_ pieces: ArraySlice<FlatPiece>, out: Int32, outPath: String, mode: FileCopy.Mode) throws -> FlatResult {
        let bs = EROFSFormat.blockSize
        var r = FlatResult()
        for p in pieces {
            let full = p.last ? p.length / UInt64(bs) * UInt64(bs) : p.length
            let tailLen = Int(p.length - full)
            var tail: [UInt8] = []
            switch p.source {
            case .empty:
                continue
            case .bytes(let b):
                try b.withUnsafeBytes { raw in
                    let lo = Int(p.start)
                    try PositionalIO.write(out, UnsafeRawBufferPointer(rebasing: raw[lo..<(lo + Int(full))]), at: p.imageOffset, path: outPath)
                    tail = Array(raw[(lo + Int(full))..<(lo + Int(p.length))])
                }
            case .hostFile(let path, let size):
                tail = try copyHostFile(path: path, base: 0, fileLength: size, whole: true, piece: p, full: full,
                                        tailLen: tailLen, out: out, outPath: outPath, mode: mode)
            case .fileRange(let path, let offset, let length):
                tail = try copyHostFile(path: path, base: offset, fileLength: length, whole: false, piece: p, full: full,
                                        tailLen: tailLen, out: out, outPath: outPath, mode: mode)
            }
            r.input += p.length
            r.written += full
            if tailLen > 0 {
                if p.inlineTail {
                    r.tails.append((p.node, tail))
                } else {
                    tail += [UInt8](repeating: 0, count: bs - tailLen)
                    try PositionalIO.write(out, tail, at: p.imageOffset + full, path: outPath)
                    r.written += UInt64(bs)
                }
            }
        }
        return r
    }

    /// Copies `full` bytes of a piece of a host file into the image and returns its tail
    /// bytes (last piece only). A file that shrank, or (whole files) grew, since the tree
    /// was built is an error naming it, as with `ContentReader`.
    private static func copyHostFile(path: String, base: UInt64, fileLength: UInt64, whole: Bool, piece p: FlatPiece,
                                     full: UInt64, tailLen: Int, out: Int32, outPath: String, mode: FileCopy.Mode) throws -> [UInt8] {
        let src = open(path, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(src) }
        if full > 0 {
            let n = try FileCopy.copy(from: src, at: base + p.start, to: out, at: p.imageOffset, count: full,
                                      mode: mode, srcPath: path, dstPath: outPath)
            if n < full { throw ContentReader.ChangedWhileReading(path: path, expected: fileLength) }
        }
        guard p.last else { return [] }
        // The tail, and for whole files one byte more: getting it means the file grew.
        // A regular file returns less than asked only at its end, so once the tail is
        // complete a short read needs no second call to see the end.
        let want = tailLen + (whole ? 1 : 0)
        guard want > 0 else { return [] }
        var buf = [UInt8](repeating: 0, count: want)
        let got = try buf.withUnsafeMutableBytes { b -> Int in
            var got = 0
            while got < want {
                guard let a = b.baseAddress else { break }
                let n = pread(src, a + got, want - got, off_t(base + p.start + full) + off_t(got))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("read", path: path, errno: errno)
                }
                if n == 0 { break }
                got += n
                if got >= tailLen { break }
            }
            return got
        }
        if got != tailLen { throw ContentReader.ChangedWhileReading(path: path, expected: fileLength) }
        buf.removeLast(want - tailLen)
        return buf
    }

    private static func runJob(_ job: Job, compressor: ExtentCompressor?, pclusterSize: Int, maxExtentInput: Int) throws -> JobOutput {
        let source: ContentSource
        switch job.source {
        case .hostFile(let p, _) where !(job.first && job.last):
            source = .fileRange(path: p, offset: job.start, length: UInt64(job.length))
        case .fileRange(let p, let o, _):
            source = .fileRange(path: p, offset: o + job.start, length: UInt64(job.length))
        case .bytes(let b) where !(job.first && job.last):
            source = .bytes(Array(b[Int(job.start)..<(Int(job.start) + job.length)]))
        default:
            source = job.source
        }
        guard let compressor else { return .raw(try ContentReader(source).readAll()) }
        let bytes = try compressor.read(source)
        // Output never exceeds the input's blocks plus one (plain extents are whole blocks).
        var data: [UInt8] = []
        data.reserveCapacity(roundUp(job.length, EROFSFormat.blockSize) + EROFSFormat.blockSize)
        var tail: [UInt8] = []
        let indexEnd = ImageBuilder.compressedRecordSize(base: job.inodeBase, fileSize: job.fileSize, inline: 0, full: job.fullIndex)
        let budget = job.ztailpacking && job.last ? EROFSFormat.blockSize - indexEnd % EROFSFormat.blockSize : 0
        let ex = try compressSegment(bytes, segmentStart: job.start, fileSize: job.fileSize, pclusterSize: pclusterSize,
                                     maxExtentInput: maxExtentInput, compressor: compressor, out: &data,
                                     tailBudget: budget, inlineTail: &tail)
        if job.first && job.last {
            // A whole file: keep it compressed only if that takes less space.
            let blocks = ex.reduce(0) { $0 + $1.blocks }
            if !ImageBuilder.compressionPays(job: job, blocks: blocks, inline: tail.count) { return .raw(Array(bytes)) }
        }
        return .compressed(ex, data, tail: tail)
    }

    /// Record bytes after the inode start for a compressed file (index + inline tail).
    static func compressedRecordSize(base: Int, fileSize: UInt64, inline: Int, full: Bool) -> Int {
        if full { return roundUp(base, 8) + 16 + 8 * Int(divRoundUp(fileSize, UInt64(EROFSFormat.blockSize))) + inline }
        return CompactIndex.recordBytes(inodeBase: base, fileSize: fileSize) + inline
    }

    /// Whether the compressed form (blocks + index + inline tail) is smaller than the raw
    /// form (whole blocks + inline or block-padded tail).
    static func compressionPays(job: Job, blocks: Int, inline: Int) -> Bool {
        let bs = EROFSFormat.blockSize
        let tail = Int(job.fileSize % UInt64(bs))
        let raw = Int(job.fileSize / UInt64(bs)) * bs + (tail == 0 ? 0 : (tail <= job.inlineBudget ? tail : bs)) + job.inodeBase
        let packed = blocks * bs + compressedRecordSize(base: job.inodeBase, fileSize: job.fileSize, inline: inline, full: job.fullIndex)
        return packed < raw
    }

    mutating func writeBlocks(_ data: ArraySlice<UInt8>) throws {
        guard !data.isEmpty else { return }
        try data.withUnsafeBytes { try out.pwrite($0, at: block << 12) }
        block += UInt64(data.count / EROFSFormat.blockSize)
    }

    /// Raw bytes of a piece of an uncompressed file (pieces are block multiples except the last).
    mutating func placeRaw(job: Job, bytes: [UInt8]) throws {
        let bs = EROFSFormat.blockSize
        let i = job.node
        if job.first {
            nodes[i].layout = EROFSFormat.layoutFlatPlain
            nodes[i].iu = UInt32(truncatingIfNeeded: block)
        }
        let full = job.last ? bytes.count / bs * bs : bytes.count
        if full > 0 { try writeBlocks(bytes[0..<full]) }
        if job.last && full < bytes.count {
            let tail = Array(bytes[full...])
            if tail.count <= job.inlineBudget {
                nodes[i].layout = EROFSFormat.layoutFlatInline
                nodes[i].tail = tail
            } else {
                try writeBlocks((tail + [UInt8](repeating: 0, count: bs - tail.count))[...])
            }
        }
    }

    mutating func finishCompressed(job: Job, fileStart: UInt64, extents: [Extent], inlineTail: [UInt8]) throws {
        let blocks = extents.reduce(0) { $0 + $1.blocks }
        if !ImageBuilder.compressionPays(job: job, blocks: blocks, inline: inlineTail.count) {
            // Not worth it: rewrite the whole file raw over the same blocks.
            block = fileStart
            let reader = try ContentReader(job.source)
            var off: UInt64 = 0
            let seg = ImageBuilder.segmentSize
            while off < job.fileSize {
                let piece = try reader.read(upTo: seg)
                let last = off + UInt64(piece.count) >= job.fileSize
                try placeRaw(job: Job(node: job.node, source: job.source, fileSize: job.fileSize, start: off, length: piece.count,
                                      first: off == 0, last: last, inlineBudget: job.inlineBudget,
                                      inodeBase: job.inodeBase, ztailpacking: false, fullIndex: job.fullIndex), bytes: piece)
                off += UInt64(piece.count)
                if piece.isEmpty { break }
            }
            return
        }
        compressedFiles += 1
        let i = job.node
        nodes[i].iu = UInt32(blocks)
        let first = UInt32(truncatingIfNeeded: fileStart)
        if job.fullIndex {
            nodes[i].layout = EROFSFormat.layoutCompressedFull
            nodes[i].index = fullIndex(extents: extents, fileSize: job.fileSize, firstBlock: first,
                                       algorithm: algorithm, bigPcluster: bigPcluster, inlineSize: inlineTail.count)
        } else {
            nodes[i].layout = EROFSFormat.layoutCompressedCompact
            nodes[i].index = CompactIndex.build(extents: extents, fileSize: job.fileSize, firstBlock: first, algorithm: algorithm,
                                                bigPcluster: bigPcluster, inlineSize: inlineTail.count, inodeBase: job.inodeBase)
        }
        nodes[i].tail = inlineTail
        if !inlineTail.isEmpty { ztailFiles += 1 }
    }

    // MARK: Metadata

    struct Meta {
        var metaBlock: UInt64
        var bytes: [UInt8]
        var lateStart: UInt64
        var lateBlocks: Int
        /// One zero block after everything: erofs-utils 1.5's fsck reads a 12-byte xattr
        /// header right after every inode (even one without xattrs) and reports an image
        /// whose last inode ends less than 12 bytes before the end as corrupt (the kernel
        /// does not read there).
        var padBlock = false
    }

    /// Bytes of an inode record after the inode header + xattrs.
    func recordSize(_ n: Node) -> Int {
        let base = n.inodeSize + n.xattrBody.count
        if !n.index.isEmpty { return roundUp(base, 8) + n.index.count + n.tail.count }
        return base + n.tail.count
    }

    mutating func layoutMetadata() throws -> Meta {
        let bs = EROFSFormat.blockSize
        let slot = EROFSFormat.slotSize
        let metaBlock = block
        // Best-fit packing: a record that fits in a block never straddles one (the kernel
        // needs an inline tail in the same block as its inode), and the gaps this leaves
        // are filled by later, smaller records. free[u] = blocks with u free slots.
        let slotsPerBlock = bs / slot
        var free = [[Int]](repeating: [], count: slotsPerBlock + 1)
        var used = roundUp(sharedTable.count, slot)   // bytes of whole area handed out
        if used % bs != 0 { free[(bs - used % bs) / slot].append(used / bs) }
        used = roundUp(used, bs)
        for i in nodes.indices {
            let rec = roundUp(recordSize(nodes[i]), slot)
            let units = rec / slot
            if rec <= bs {
                var placed = false
                for f in units...slotsPerBlock where !free[f].isEmpty {
                    guard let b = free[f].popLast() else { continue }
                    let off = b * bs + (bs - f * slot)
                    nodes[i].nid = UInt64(off / slot)
                    if f > units { free[f - units].append(b) }
                    placed = true
                    break
                }
                if placed { continue }
            }
            // A new block (or run of blocks for records larger than one block).
            nodes[i].nid = UInt64(used / slot)
            let end = used + rec
            used = roundUp(end, bs)
            if end % bs != 0 { free[(used - end) / slot].append(end / bs) }
        }
        let off = used
        let metaBlocks = (off + bs - 1) / bs
        var late = metaBlock + UInt64(metaBlocks)
        let lateStart = late
        for i in nodes.indices where nodes[i].lateBlocks > 0 {
            nodes[i].iu = UInt32(truncatingIfNeeded: late)
            late += UInt64(nodes[i].lateBlocks)
        }
        guard late <= UInt64(UInt32.max) else { throw EROFSError(path: outputPath, reason: .imageTooLarge(blocks: late)) }
        var bytes = [UInt8](repeating: 0, count: metaBlocks * bs)
        bytes.replaceSubrange(0..<sharedTable.count, with: sharedTable)
        for i in nodes.indices {
            if nodes[i].inode.kind == .directory && nodes[i].layout == EROFSFormat.layoutFlatInline {
                nodes[i].tail = Array(directoryBlocks(i).suffix(nodes[i].tail.count))
            }
            let rec = serialize(i, ino: UInt32(truncatingIfNeeded: i + 1))
            let o = Int(nodes[i].nid) * EROFSFormat.slotSize
            bytes.replaceSubrange(o..<(o + rec.count), with: rec)
        }
        var meta = Meta(metaBlock: metaBlock, bytes: bytes, lateStart: lateStart, lateBlocks: Int(late - lateStart))
        if late == lateStart {
            let lastHeaderEnd = nodes.map { Int($0.nid) * EROFSFormat.slotSize + $0.inodeSize }.max() ?? 0
            meta.padBlock = metaBlocks * bs - lastHeaderEnd < 12
        }
        return meta
    }

    /// All directory blocks of node `i` (the last one truncated to the directory size).
    func directoryBlocks(_ i: Int) -> [UInt8] {
        let bs = EROFSFormat.blockSize
        var outBytes: [UInt8] = []
        let blocks = direntBlocks(i)
        for (bi, entries) in blocks.enumerated() {
            var w = ByteWriter(capacity: bs)
            var nameOff = EROFSFormat.direntSize * entries.count
            for e in entries {
                let c = nodes[e.node]
                w.u64(c.nid)
                w.u16(UInt16(nameOff))
                w.u8(ImageBuilder.fileType(c.inode.kind))
                w.u8(0)
                nameOff += e.name.count
            }
            for e in entries { w.append(e.name) }
            if bi < blocks.count - 1 { w.zeros(bs - w.count) }
            outBytes += w.bytes
        }
        return outBytes
    }

    static func fileType(_ k: EntryKind) -> UInt8 {
        switch k {
        case .regular: EntryKindCode.regular.rawValue
        case .directory: EntryKindCode.directory.rawValue
        case .charDevice: EntryKindCode.charDevice.rawValue
        case .blockDevice: EntryKindCode.blockDevice.rawValue
        case .fifo: EntryKindCode.fifo.rawValue
        case .socket: EntryKindCode.socket.rawValue
        case .symlink: EntryKindCode.symlink.rawValue
        }
    }

    func serialize(_ i: Int, ino: UInt32) -> [UInt8] {
        let n = nodes[i]
        var w = ByteWriter(capacity: recordSize(n))
        let xcount: UInt16 = n.xattrBody.isEmpty ? 0 : UInt16(1 + (n.xattrBody.count - 12) / 4)
        let format = (n.layout << 1) | (n.extended ? 1 : 0)
        let mode = UInt16(truncatingIfNeeded: n.inode.mode)
        if n.extended {
            w.u16(format); w.u16(xcount); w.u16(mode); w.u16(0)
            w.u64(n.size); w.u32(n.iu); w.u32(ino)
            w.u32(n.inode.uid); w.u32(n.inode.gid)
            w.u64(UInt64(bitPattern: n.inode.mtime.seconds)); w.u32(n.inode.mtime.nanoseconds)
            w.u32(n.nlink)
            w.zeros(16)
        } else {
            w.u16(format); w.u16(xcount); w.u16(mode); w.u16(UInt16(n.nlink))
            w.u32(UInt32(n.size)); w.u32(0); w.u32(n.iu); w.u32(ino)
            w.u16(UInt16(n.inode.uid)); w.u16(UInt16(n.inode.gid)); w.u32(0)
        }
        w.append(n.xattrBody)
        if !n.index.isEmpty {
            w.pad(to: 8)
            w.append(n.index)
            w.append(n.tail)
        } else {
            w.append(n.tail)
        }
        return w.bytes
    }

    mutating func writeMetadata(_ meta: Meta) throws {
        let bs = EROFSFormat.blockSize
        try meta.bytes.withUnsafeBytes { try out.pwrite($0, at: meta.metaBlock << 12) }
        // Late blocks: directories and symlinks that are not (fully) inline.
        var late = meta.lateStart
        for i in nodes.indices where nodes[i].lateBlocks > 0 {
            var data: [UInt8]
            if nodes[i].inode.kind == .directory {
                data = Array(directoryBlocks(i).prefix(nodes[i].lateBlocks * bs))
            } else {
                data = Array(nodes[i].inode.symlinkTarget.utf8)
            }
            data += [UInt8](repeating: 0, count: nodes[i].lateBlocks * bs - data.count)
            try data.withUnsafeBytes { try out.pwrite($0, at: late << 12) }
            late += UInt64(nodes[i].lateBlocks)
        }
        let totalBlocks = late + (meta.padBlock ? 1 : 0)
        block = totalBlocks
        // Superblock block: zeros, superblock at 1024, compression configs after it.
        var sb = [UInt8](repeating: 0, count: bs)
        var w = ByteWriter(capacity: 128)
        w.u32(EROFSFormat.magic)
        w.u32(0) // checksum, filled below
        w.u32(EROFSFormat.compatSuperblockChecksum | EROFSFormat.compatMtime)
        w.u8(UInt8(EROFSFormat.blockBits))
        w.u8(0) // sb_extslots
        w.u16(UInt16(nodes[0].nid))
        w.u64(UInt64(nodes.count))
        w.u64(UInt64(bitPattern: buildTime.seconds))
        w.u32(buildTime.nanoseconds)
        w.u32(UInt32(truncatingIfNeeded: totalBlocks))
        w.u32(UInt32(truncatingIfNeeded: meta.metaBlock)) // meta_blkaddr
        w.u32(UInt32(truncatingIfNeeded: meta.metaBlock)) // xattr_blkaddr: shared table opens the metadata area
        w.append(options.uuid ?? derivedUUID(meta.bytes))
        var label = Array(options.label.utf8)
        label += [UInt8](repeating: 0, count: 16 - label.count)
        w.append(label)
        var incompat: UInt32 = 0
        var u1: UInt16 = 0
        if compressedFiles > 0 {
            incompat |= EROFSFormat.incompatZeroPadding
            if ztailFiles > 0 { incompat |= EROFSFormat.incompatZTailPacking }
            if useConfigs {
                incompat |= EROFSFormat.incompatBigPcluster
                u1 = 1 << UInt16(algorithm)
            }
        }
        w.u32(incompat)
        w.u16(u1)
        w.zeros(128 - w.count)
        sb.replaceSubrange(EROFSFormat.superblockOffset..<(EROFSFormat.superblockOffset + 128), with: w.bytes)
        if compressedFiles > 0 && useConfigs {
            var c = ByteWriter()
            c.u16(14)
            if algorithm == EROFSFormat.algorithmLZMA {
                c.u32(lzmaDictionary); c.u16(0); c.zeros(8)
            } else {
                c.u16(0); c.u16(UInt16(options.pclusterSize / bs)); c.zeros(10)
            }
            let o = EROFSFormat.superblockOffset + 128
            sb.replaceSubrange(o..<(o + c.count), with: c.bytes)
        }
        let crc = CRC32C.update(~0, sb[EROFSFormat.superblockOffset..<bs])
        sb.putU32(crc, at: EROFSFormat.superblockOffset + 4)
        try sb.withUnsafeBytes { try out.pwrite($0, at: 0) }
        if ftruncate(out.fd, off_t(totalBlocks << 12)) != 0 {
            throw SystemError("truncate", path: outputPath, errno: errno)
        }
    }

    /// A UUID (version 4 layout) from the hash of the metadata: same tree, same UUID.
    func derivedUUID(_ meta: [UInt8]) -> [UInt8] {
        let h = SHA256()
        h.update(meta)
        var u = Array(h.finalize().prefix(16))
        u[6] = (u[6] & 0x0F) | 0x40
        u[8] = (u[8] & 0x3F) | 0x80
        return u
    }

    func stats() -> EROFSStats {
        let regular = nodes.filter { $0.inode.kind == .regular }.count
        let ext = nodes.filter(\.extended).count
        return EROFSStats(
            imageBytes: block << 12, blocks: UInt32(truncatingIfNeeded: block), inodes: nodes.count,
            compactInodes: nodes.count - ext, extendedInodes: ext, regularFiles: regular,
            compressedFiles: compressedFiles, inputBytes: totalInput, sharedXAttrs: sharedCount)
    }
}
