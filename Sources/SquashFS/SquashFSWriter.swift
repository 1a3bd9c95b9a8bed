import Basics
import Codecs
import FSTree

/// Writes a SquashFS 4.0 image from an `FSTree`. Everything stored (owners, modes,
/// times, devices, xattrs, hard links) comes from the tree, never from the host.
///
/// Layout: superblock, compressor options, data and fragment blocks (streamed in file
/// order while worker threads compress), then inode table, directory table, fragment
/// table, export table, id table, xattr table; padded to 4 KiB.
public struct SquashFSWriter: Sendable {
    public var options: SquashFSOptions

    public init(_ options: SquashFSOptions = .init()) {
        self.options = options
    }

    /// Progress callback: bytes of file data processed, total bytes.
    public typealias Progress = (_ done: UInt64, _ total: UInt64) -> Void

    /// Builds the image at `path` (atomically: a temp name renamed on success; flushed to
    /// disk first unless `durability` says otherwise).
    @discardableResult
    public func write(tree: FSTree, to path: String, durability: Durability = .synced, progress: Progress? = nil) throws -> SquashFSStats {
        try options.validate()
        var phases = PhaseTimes()
        var job = try phases.measure("plan") { try ImageJob(tree: tree, options: options) }
        let file = try AtomicOutputFile(path, durability: durability)
        do {
            var stats = try job.run(file: file, progress: progress)
            phases.append(stats.phases)
            try phases.measure("commit") { try file.commit() }
            stats.phases = phases
            return stats
        } catch {
            file.abandon()
            throw error
        }
    }
}

/// Per-image state: dense inode numbering, ids, xattrs and the data layout.
private struct ImageJob {
    let tree: FSTree
    let options: SquashFSOptions
    let bs: Int
    /// Reachable inodes, dense index -> tree id (walk order, root first).
    let order: [InodeID]
    let dense: [Int]
    var inodes: [Inode]
    var nlink: [UInt32]
    var parentOf: [Int]
    var nameOf: [String]
    /// Sorted children of each directory, by tree id.
    let children: [Int: [(name: String, id: InodeID)]]
    var ids: [UInt32] = []
    var idIndex: [UInt32: UInt16] = [:]
    var xattrIndex: [UInt32]
    var xattrSets: [[XAttr]] = []
    var stats = SquashFSStats()

    init(tree: FSTree, options: SquashFSOptions) throws {
        self.tree = tree
        self.options = options
        bs = options.blockSize
        // One traversal (children in byte order) gives the dense numbering in first-visit
        // order, link counts, and each inode's first name and parent for messages.
        var order: [InodeID] = [FSTree.rootID]
        var dense = [Int](repeating: -1, count: tree.inodeCapacity)
        dense[FSTree.rootID.raw] = 0
        var nlink: [UInt32] = [2]
        var parentOf: [Int] = [-1]
        var nameOf: [String] = [""]
        var kids: [Int: [(name: String, id: InodeID)]] = [:]
        var badName: (parent: Int, name: String)?
        func visit(_ dir: InodeID, _ dirDense: Int) {
            let k = tree.children(of: dir)
            kids[dir.raw] = k
            for (name, id) in k {
                if badName == nil && name.utf8.count > 255 { badName = (dirDense, name) }
                var d = dense[id.raw]
                let isDir = tree[id].kind == .directory
                if d < 0 {
                    d = order.count
                    dense[id.raw] = d
                    order.append(id)
                    nlink.append(isDir ? 2 : 0)
                    parentOf.append(dirDense)
                    nameOf.append(name)
                }
                if isDir {
                    nlink[dirDense] += 1
                    visit(id, d)
                } else {
                    nlink[d] += 1
                }
            }
        }
        visit(FSTree.rootID, 0)
        self.order = order
        self.dense = dense
        self.nlink = nlink
        self.parentOf = parentOf
        self.nameOf = nameOf
        self.children = kids
        inodes = order.map { tree[$0] }
        xattrIndex = [UInt32](repeating: Format.noXAttr, count: order.count)
        if let badName {
            throw SquashFSError("\(path(badName.parent))/\(badName.name): file name is longer than 255 bytes", exitCode: ExitStatus.usage)
        }
        try collectIDs()
        collectXAttrs()
    }

    /// First path of an inode (for messages).
    func path(_ d: Int) -> String {
        var parts: [String] = []
        var cur = d
        while cur > 0 {
            parts.append(nameOf[cur])
            cur = parentOf[cur]
        }
        return "/" + parts.reversed().joined(separator: "/")
    }

    private mutating func idx(_ id: UInt32) throws -> UInt16 {
        if let i = idIndex[id] { return i }
        guard ids.count < 65535 else {
            throw SquashFSError("more than 65535 distinct uid/gid values; SquashFS cannot store them")
        }
        let i = UInt16(ids.count)
        ids.append(id)
        idIndex[id] = i
        return i
    }

    private mutating func collectIDs() throws {
        for i in inodes {
            _ = try idx(i.uid)
            _ = try idx(i.gid)
        }
        stats.ids = ids.count
    }

    private mutating func collectXAttrs() {
        var setIndex: [[XAttr]: UInt32] = [:]
        for d in inodes.indices where !inodes[d].xattrs.isEmpty {
            var kept: [XAttr] = []
            for x in inodes[d].xattrs {
                if XAttrPrefix(name: x.name) != nil {
                    kept.append(x)
                } else {
                    stats.droppedXAttrs.append("\(path(d)): \(x.name)")
                }
            }
            guard !kept.isEmpty else { continue }
            if let i = setIndex[kept] {
                xattrIndex[d] = i
            } else {
                let i = UInt32(xattrSets.count)
                xattrSets.append(kept)
                setIndex[kept] = i
                xattrIndex[d] = i
            }
        }
        stats.xattrSets = xattrSets.count
    }

    mutating func run(file: AtomicOutputFile, progress: SquashFSWriter.Progress?) throws -> SquashFSStats {
        let out = ImageOutput(file)
        try out.write([UInt8](repeating: 0, count: 96))
        let compOpts = compressorOptions()
        if let compOpts {
            var b: [UInt8] = []
            b.le16(UInt16(compOpts.count) | Format.uncompressedMetadata)
            b += compOpts
            try out.write(b)
        }
        let dataStart = PhaseTimes.now()
        let layout = try writeData(out, progress: progress)
        stats.phases.add("data", PhaseTimes.now() - dataStart)
        let metaStart = PhaseTimes.now()
        let meta = try BlockCompressor(options.compression, maxBlockSize: bs)

        // Inode and directory tables.
        let tables = try writeMetadata(layout: layout, compressor: meta)
        let inodeTableStart = out.position
        try out.write(tables.inodeTable)
        let directoryTableStart = out.position
        try out.write(tables.directoryTable)

        var fragmentTableStart = Format.invalid
        if !layout.fragments.isEmpty {
            var entries: [UInt8] = []
            entries.reserveCapacity(layout.fragments.count * 16)
            for f in layout.fragments {
                entries.le64(f.start)
                entries.le32(f.size)
                entries.le32(0)
            }
            fragmentTableStart = try writeLookupTable(entries, out, meta)
        }
        var exportTableStart = Format.invalid
        if options.exportTable {
            var entries: [UInt8] = []
            entries.reserveCapacity(tables.exportRefs.count * 8)
            for r in tables.exportRefs { entries.le64(r) }
            exportTableStart = try writeLookupTable(entries, out, meta)
        }
        var idEntries: [UInt8] = []
        for id in ids { idEntries.le32(id) }
        let idTableStart = try writeLookupTable(idEntries, out, meta)
        let xattrTableStart = try writeXAttrTable(out, meta)
        let bytesUsed = out.position
        // Pad to 4 KiB like mksquashfs: loop devices and block-based readers like that.
        let pad = Int((4096 - bytesUsed % 4096) % 4096)
        if pad > 0 { try out.write([UInt8](repeating: 0, count: pad)) }
        try out.flush()

        // Superblock.
        var sb: [UInt8] = []
        sb.le32(Format.magic)
        sb.le32(UInt32(inodes.count))
        sb.le32(mkfsTime())
        sb.le32(UInt32(bs))
        sb.le32(UInt32(layout.fragments.count))
        sb.le16(Format.compressorID(options.compression.kind))
        sb.le16(UInt16(bs.trailingZeroBitCount))
        var flags: UInt16 = 0
        if !options.fragments { flags |= Format.flagNoFragments }
        if options.fragments && options.tailPacking { flags |= Format.flagAlwaysFragments }
        if options.deduplicate { flags |= Format.flagDuplicates }
        if options.exportTable { flags |= Format.flagExportable }
        if compOpts != nil { flags |= Format.flagCompressorOptions }
        sb.le16(flags)
        sb.le16(UInt16(ids.count))
        sb.le16(4)
        sb.le16(0)
        sb.le64(tables.rootRef)
        sb.le64(bytesUsed)
        sb.le64(idTableStart)
        sb.le64(xattrTableStart)
        sb.le64(inodeTableStart)
        sb.le64(directoryTableStart)
        sb.le64(fragmentTableStart)
        sb.le64(exportTableStart)
        try sb.withUnsafeBytes { try file.pwrite($0, at: 0) }

        stats.phases.add("metadata", PhaseTimes.now() - metaStart)
        stats.imageBytes = bytesUsed + UInt64(pad)
        stats.inodes = inodes.count
        stats.directories = inodes.filter { $0.kind == .directory }.count
        stats.fragmentBlocks = layout.fragments.count
        return stats
    }

    private func mkfsTime() -> UInt32 {
        if let t = options.mkfsTime { return t }
        return inodes.map { clampTime($0.mtime.seconds) }.max() ?? 0
    }

    /// SquashFS compressor options; nil when the kernel defaults apply (as mksquashfs does).
    private func compressorOptions() -> [UInt8]? {
        var b: [UInt8] = []
        switch options.compression {
        case .gzip(let level):
            if level == 9 { return nil }
            b.le32(UInt32(level))
            b.le16(15)
            b.le16(0)
        case .xz(_, let bcj, let dict, _):
            let d = dict ?? bs
            if d == bs && bcj.isEmpty { return nil }
            b.le32(UInt32(d))
            b.le32(bcj.reduce(UInt32(0)) { $0 | 1 << UInt32($1.squashfsFlagBit) })
        case .lz4(let hc, _):
            b.le32(1)  // LZ4_LEGACY block format
            b.le32(hc ? 1 : 0)
        case .zstd(let level, _):
            // No options block means level 15 to readers (squashfs-tools' default), so
            // osbuild's default level 14 is recorded. The field has no room for other
            // parameters (decoders do not need them).
            if level == 15 { return nil }
            b.le32(UInt32(level))
        }
        return b
    }

    // MARK: Data

    final class Layout {
        var start: [UInt64]
        var sizes: [[UInt32]]
        var fragIndex: [UInt32]
        var fragOffset: [UInt32]
        var sparseBytes: [UInt64]
        var fragments: [(start: UInt64, size: UInt32)] = []
        var dataBlocks = 0
        var sparseBlocks = 0
        var rawBlocks = 0
        init(count: Int) {
            start = [UInt64](repeating: 0, count: count)
            sizes = [[UInt32]](repeating: [], count: count)
            fragIndex = [UInt32](repeating: Format.noFragment, count: count)
            fragOffset = [UInt32](repeating: 0, count: count)
            sparseBytes = [UInt64](repeating: 0, count: count)
        }
    }

    private struct DedupKey: Hashable {
        var size: UInt64
        var digest: [UInt8]
    }

    private mutating func writeData(_ out: ImageOutput, progress: SquashFSWriter.Progress?) throws -> Layout {
        let layout = Layout(count: inodes.count)
        let bs = self.bs
        let fileSizes = inodes.map { $0.kind == .regular ? $0.content.size : 0 }
        let pipeline = try DataPipeline(
            compression: options.compression, blockSize: bs, threads: options.effectiveThreads, output: out
        ) { target, pos, word in
            switch target {
            case .fileBlock(let f, let b):
                if b == 0 { layout.start[f] = pos }
                layout.sizes[f][b] = word
                if word == 0 {
                    let full = fileSizes[f] / UInt64(bs)
                    layout.sparseBytes[f] += UInt64(b) < full ? UInt64(bs) : fileSizes[f] % UInt64(bs)
                    layout.sparseBlocks += 1
                } else {
                    layout.dataBlocks += 1
                    if word & Format.uncompressedBlock != 0 { layout.rawBlocks += 1 }
                }
            case .fragment(let i):
                layout.fragments[i] = (pos, word)
                if word & Format.uncompressedBlock != 0 { layout.rawBlocks += 1 }
            }
        }
        defer { pipeline.shutdown() }

        var sizeCount: [UInt64: Int] = [:]
        var total: UInt64 = 0
        for i in inodes where i.kind == .regular {
            total += i.content.size
            if options.deduplicate && i.content.size > 0 { sizeCount[i.content.size, default: 0] += 1 }
        }
        stats.inputBytes = total
        var seenContent: [DedupKey: Int] = [:]
        var dupOf: [Int: Int] = [:]

        let fragBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bs, alignment: 64)
        defer { fragBuffer.deallocate() }
        var fragUsed = 0
        func flushFragment() throws {
            guard fragUsed > 0 else { return }
            let n = fragUsed
            layout.fragments.append((0, 0))
            try pipeline.submit(.fragment(index: layout.fragments.count - 1), checkSparse: false) { buf in
                buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: fragBuffer[0..<n]))
                return n
            }
            fragUsed = 0
        }

        var done: UInt64 = 0
        func process(_ d: Int) throws {
            let content = inodes[d].content
            let size = content.size
            if size == 0 { return }
            var key: DedupKey?
            if options.deduplicate, sizeCount[size, default: 0] > 1 {
                let k = DedupKey(size: size, digest: try digest(content))
                if let first = seenContent[k] {
                    dupOf[d] = first
                    stats.duplicateFiles += 1
                    done += size
                    progress?(done, total)
                    return
                }
                key = k
            }
            let reader = try ContentReader(content)
            let fullBlocks = Int(size / UInt64(bs))
            let tail = Int(size % UInt64(bs))
            let tailToFragment = options.fragments && tail > 0 && (fullBlocks == 0 || options.tailPacking)
            let blockCount = fullBlocks + (tail > 0 && !tailToFragment ? 1 : 0)
            layout.sizes[d] = [UInt32](repeating: 0, count: blockCount)
            for b in 0..<blockCount {
                let len = b < fullBlocks ? bs : tail
                try pipeline.submit(.fileBlock(file: d, index: b), checkSparse: options.sparse) { buf in
                    try readExactly(reader, UnsafeMutableRawBufferPointer(rebasing: buf[0..<len]))
                    return len
                }
            }
            if tailToFragment {
                if fragUsed + tail > bs { try flushFragment() }
                try readExactly(reader, UnsafeMutableRawBufferPointer(rebasing: fragBuffer[fragUsed..<(fragUsed + tail)]))
                layout.fragIndex[d] = UInt32(layout.fragments.count)
                layout.fragOffset[d] = UInt32(fragUsed)
                fragUsed += tail
            }
            // Detects a file that grew since the tree was built.
            _ = try reader.read(into: UnsafeMutableRawBufferPointer(start: nil, count: 0))
            if let key { seenContent[key] = d }
            done += size
            progress?(done, total)
        }

        // Files of at least one block (and everything without fragments) in tree order;
        // then the small files, grouped by extension and name so that similar content
        // shares fragment blocks and compresses better. Both orders are deterministic.
        var small: [(ext: String, base: String, d: Int)] = []
        for d in inodes.indices where inodes[d].kind == .regular {
            stats.regularFiles += 1
            let size = inodes[d].content.size
            if options.fragments && size > 0 && size < UInt64(bs) {
                let name = nameOf[d]
                let ext = name.lastIndex(of: ".").map { String(name[name.index(after: $0)...]) } ?? ""
                small.append((ext, name, d))
            } else {
                try process(d)
            }
        }
        small.sort { a, b in
            if a.ext != b.ext { return FSTree.byteOrderLess(a.ext, b.ext) }
            if a.base != b.base { return FSTree.byteOrderLess(a.base, b.base) }
            return a.d < b.d
        }
        for f in small { try process(f.d) }
        try flushFragment()
        try pipeline.finish()
        for (d, first) in dupOf {
            layout.start[d] = layout.start[first]
            layout.sizes[d] = layout.sizes[first]
            layout.fragIndex[d] = layout.fragIndex[first]
            layout.fragOffset[d] = layout.fragOffset[first]
            layout.sparseBytes[d] = layout.sparseBytes[first]
        }
        stats.dataBlocks = layout.dataBlocks
        stats.sparseBlocks = layout.sparseBlocks
        stats.uncompressedBlocks = layout.rawBlocks
        return layout
    }

    private func digest(_ content: ContentSource) throws -> [UInt8] {
        let reader = try ContentReader(content)
        let h = SHA256()
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buf.deallocate() }
        while true {
            let n = try reader.read(into: buf)
            if n == 0 { break }
            h.update(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
        return h.finalize()
    }

    // MARK: Metadata

    struct Tables {
        var inodeTable: [UInt8]
        var directoryTable: [UInt8]
        var rootRef: UInt64
        var exportRefs: [UInt64]
    }

    private func writeMetadata(layout: Layout, compressor: BlockCompressor) throws -> Tables {
        let n = inodes.count
        // Pass 1: inode numbers in the order pass 2 writes inodes (children before their
        // directory), so a directory can name its parent's number before the parent exists.
        var number = [UInt32](repeating: 0, count: n)
        var counter: UInt32 = 0
        func kids(_ id: InodeID) -> [(name: String, id: InodeID)] { children[id.raw] ?? [] }
        func assignNumbers(_ dirID: InodeID) {
            let k = kids(dirID)
            for c in k where inodes[dense[c.id.raw]].kind == .directory { assignNumbers(c.id) }
            for c in k {
                let d = dense[c.id.raw]
                if inodes[d].kind != .directory && number[d] == 0 {
                    counter += 1
                    number[d] = counter
                }
            }
            counter += 1
            number[dense[dirID.raw]] = counter
        }
        assignNumbers(FSTree.rootID)

        let inodeTable = MetadataWriter(compressor: compressor)
        let dirTable = MetadataWriter(compressor: compressor)
        var refs = [UInt64](repeating: .max, count: n)
        var exportRefs = [UInt64](repeating: 0, count: n)

        func put(_ d: Int, _ bytes: [UInt8]) throws {
            refs[d] = inodeTable.reference
            exportRefs[Int(number[d]) - 1] = refs[d]
            try inodeTable.append(bytes)
        }

        func writeDir(_ dirID: InodeID, parent: UInt32) throws {
            let k = kids(dirID)
            let me = dense[dirID.raw]
            for c in k where inodes[dense[c.id.raw]].kind == .directory {
                try writeDir(c.id, parent: number[me])
            }
            for c in k {
                let d = dense[c.id.raw]
                if inodes[d].kind != .directory && refs[d] == .max {
                    try put(d, try encodeInode(d, number: number[d], layout: layout))
                }
            }
            // Listing.
            let listingStart = dirTable.position
            let streamStart = dirTable.streamPosition
            var index: [UInt8] = []
            var indexCount = 0
            var lastIndexedBlock = streamStart / Format.metadataSize
            var i = 0
            while i < k.count {
                let headerPos = dirTable.streamPosition
                let first = dense[k[i].id.raw]
                let hdrBlock = refs[first] >> 16
                let base = number[first]
                // A run ends at 256 entries, when the inodes move to another metadata block,
                // when the number delta leaves s16, or when the listing enters a new
                // metadata block (so the directory index can point at a header there).
                var j = i
                var pos = headerPos + 12
                while j < k.count && j - i < 256 {
                    let d = dense[k[j].id.raw]
                    if refs[d] >> 16 != hdrBlock { break }
                    let delta = Int(number[d]) - Int(base)
                    if delta < -32768 || delta > 32767 { break }
                    if j > i && pos / Format.metadataSize != headerPos / Format.metadataSize { break }
                    pos += 8 + k[j].name.utf8.count
                    j += 1
                }
                if headerPos / Format.metadataSize != lastIndexedBlock {
                    lastIndexedBlock = headerPos / Format.metadataSize
                    let name = Array(k[i].name.utf8)
                    index.le32(UInt32(headerPos - streamStart))
                    index.le32(dirTable.position.block)
                    index.le32(UInt32(name.count - 1))
                    index += name
                    indexCount += 1
                }
                var run: [UInt8] = []
                run.le32(UInt32(j - i - 1))
                run.le32(UInt32(hdrBlock))
                run.le32(base)
                for e in k[i..<j] {
                    let d = dense[e.id.raw]
                    let name = Array(e.name.utf8)
                    run.le16(UInt16(refs[d] & 0xFFFF))
                    run.le16(UInt16(bitPattern: Int16(Int(number[d]) - Int(base))))
                    run.le16(basicType(inodes[d].kind))
                    run.le16(UInt16(name.count - 1))
                    run += name
                }
                try dirTable.append(run)
                i = j
            }
            let listingSize = dirTable.streamPosition - streamStart
            let fileSize = listingSize + 3
            let xattr = xattrIndex[me]
            var b = header(me, type: 1, number: number[me])
            if indexCount > 0 || xattr != Format.noXAttr || fileSize > 0xFFFF {
                b = header(me, type: 8, number: number[me])
                b.le32(nlink[me])
                b.le32(UInt32(fileSize))
                b.le32(listingStart.block)
                b.le32(parent)
                b.le16(UInt16(indexCount))
                b.le16(listingStart.offset)
                b.le32(xattr)
                b += index
            } else {
                b.le32(listingStart.block)
                b.le32(nlink[me])
                b.le16(UInt16(fileSize))
                b.le16(listingStart.offset)
                b.le32(parent)
            }
            try put(me, b)
        }
        try writeDir(FSTree.rootID, parent: UInt32(n + 1))
        return Tables(
            inodeTable: try inodeTable.finish(), directoryTable: try dirTable.finish(),
            rootRef: refs[0], exportRefs: exportRefs)
    }

    private func header(_ d: Int, type: UInt16, number: UInt32) -> [UInt8] {
        let i = inodes[d]
        var b: [UInt8] = []
        b.reserveCapacity(64)
        b.le16(type)
        b.le16(i.permissions & 0o7777)
        b.le16(idIndex[i.uid] ?? 0)
        b.le16(idIndex[i.gid] ?? 0)
        b.le32(clampTime(i.mtime.seconds))
        b.le32(number)
        return b
    }

    private func basicType(_ k: EntryKind) -> UInt16 {
        switch k {
        case .directory: 1
        case .regular: 2
        case .symlink: 3
        case .blockDevice: 4
        case .charDevice: 5
        case .fifo: 6
        case .socket: 7
        }
    }

    private func encodeInode(_ d: Int, number: UInt32, layout: Layout) throws -> [UInt8] {
        let i = inodes[d]
        let xattr = xattrIndex[d]
        let extended = xattr != Format.noXAttr
        let basic = basicType(i.kind)
        switch i.kind {
        case .regular:
            let size = i.content.size
            let start = layout.start[d]
            let sparse = layout.sparseBytes[d]
            let ext = extended || nlink[d] > 1 || size >= 1 << 32 || start >= 1 << 32 || sparse > 0
            var b = header(d, type: ext ? 9 : 2, number: number)
            if ext {
                b.le64(start)
                b.le64(size)
                b.le64(sparse)
                b.le32(nlink[d])
                b.le32(layout.fragIndex[d])
                b.le32(layout.fragOffset[d])
                b.le32(xattr)
            } else {
                b.le32(UInt32(start))
                b.le32(layout.fragIndex[d])
                b.le32(layout.fragOffset[d])
                b.le32(UInt32(size))
            }
            for w in layout.sizes[d] { b.le32(w) }
            return b
        case .symlink:
            let target = Array(i.symlinkTarget.utf8)
            guard !target.isEmpty, target.count <= 4095 else {
                throw SquashFSError("\(path(d)): symlink target length \(target.count) is not 1...4095 bytes")
            }
            var b = header(d, type: extended ? basic + 7 : basic, number: number)
            b.le32(nlink[d])
            b.le32(UInt32(target.count))
            b += target
            if extended { b.le32(xattr) }
            return b
        case .blockDevice, .charDevice:
            var b = header(d, type: extended ? basic + 7 : basic, number: number)
            b.le32(nlink[d])
            b.le32(i.rdev.linuxEncoded)
            if extended { b.le32(xattr) }
            return b
        case .fifo, .socket:
            var b = header(d, type: extended ? basic + 7 : basic, number: number)
            b.le32(nlink[d])
            if extended { b.le32(xattr) }
            return b
        case .directory:
            throw SquashFSError("internal: directory encoded as a leaf inode")
        }
    }

    // MARK: Tables

    /// Lookup table: entries in metadata blocks, then the u64 positions of those blocks.
    /// Returns the position of that position array (what the superblock points at).
    private func writeLookupTable(_ entries: [UInt8], _ out: ImageOutput, _ c: BlockCompressor) throws -> UInt64 {
        let positions = try writeMetadataBlocks(entries, out, c)
        let start = out.position
        var idx: [UInt8] = []
        for p in positions { idx.le64(p) }
        try out.write(idx)
        return start
    }

    /// Fixed-size table entries cut into 8 KiB metadata blocks (each compressed unless that
    /// does not shrink it); returns each block's position.
    private func writeMetadataBlocks(_ entries: [UInt8], _ out: ImageOutput, _ c: BlockCompressor) throws -> [UInt64] {
        var positions: [UInt64] = []
        var scratch = [UInt8](repeating: 0, count: Format.metadataSize)
        var i = 0
        while i < entries.count {
            let chunk = Array(entries[i..<min(entries.count, i + Format.metadataSize)])
            positions.append(out.position)
            let n = try chunk.withUnsafeBytes { s in try scratch.withUnsafeMutableBytes { try c.compress(s, into: $0) } }
            var b: [UInt8] = []
            if let n {
                b.le16(UInt16(n))
                b += scratch[0..<n]
            } else {
                b.le16(UInt16(chunk.count) | Format.uncompressedMetadata)
                b += chunk
            }
            try out.write(b)
            i += Format.metadataSize
        }
        return positions
    }

    private func writeXAttrTable(_ out: ImageOutput, _ c: BlockCompressor) throws -> UInt64 {
        guard !xattrSets.isEmpty else { return Format.invalid }
        let kv = MetadataWriter(compressor: c)
        var idEntries: [UInt8] = []
        for set in xattrSets {
            let ref = kv.reference
            var total: UInt32 = 0
            var b: [UInt8] = []
            for x in set {
                guard let p = XAttrPrefix(name: x.name) else { continue }
                let short = Array(x.name.utf8.dropFirst(p.prefix.utf8.count))
                b.le16(p.rawValue)
                b.le16(UInt16(short.count))
                b += short
                b.le32(UInt32(x.value.count))
                b += x.value
                total += UInt32(x.name.utf8.count + 1 + x.value.count)
            }
            try kv.append(b)
            idEntries.le64(ref)
            idEntries.le32(UInt32(set.count))
            idEntries.le32(total)
        }
        let kvStart = out.position
        try out.write(try kv.finish())
        // The id table's block positions follow a 16-byte header.
        let positions = try writeMetadataBlocks(idEntries, out, c)
        let start = out.position
        var h: [UInt8] = []
        h.le64(kvStart)
        h.le32(UInt32(xattrSets.count))
        h.le32(0)
        for p in positions { h.le64(p) }
        try out.write(h)
        return start
    }
}

/// The xattr namespaces SquashFS can store.
enum XAttrPrefix: UInt16 {
    case user = 0, trusted = 1, security = 2

    init?(name: String) {
        if name.hasPrefix("user.") { self = .user }
        else if name.hasPrefix("trusted.") { self = .trusted }
        else if name.hasPrefix("security.") { self = .security }
        else { return nil }
    }

    var prefix: String {
        switch self {
        case .user: "user."
        case .trusted: "trusted."
        case .security: "security."
        }
    }
}

func clampTime(_ s: Int64) -> UInt32 {
    UInt32(clamping: max(0, s))
}

/// Fill `buf` completely from `reader`; a file that ends early is an error naming it.
func readExactly(_ reader: ContentReader, _ buf: UnsafeMutableRawBufferPointer) throws {
    var got = 0
    while got < buf.count {
        let n = try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buf[got...]))
        if n == 0 { throw SquashFSError("file content ended \(buf.count - got) bytes early") }
        got += n
    }
}
