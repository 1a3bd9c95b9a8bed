import Basics

/// A layout with every offset, size, GUID and type decided; produced only by
/// `DiskLayout.resolve()`, which validates everything first.
public struct ResolvedLayout: Sendable {
    public struct Entry: Sendable {
        /// Index into `DiskLayout.partitions`.
        public var index: Int
        public var name: String
        public var offset: UInt64
        public var size: UInt64
        public var gptType: String?
        public var mbrType: UInt8?
        public var uuid: String?
        public var gptAttributes: UInt64
        public var bootable: Bool
        /// MBR: a logical partition inside the extended one (its EBR sits `ebrGap` bytes before).
        public var logical: Bool
        public var hybridMBRType: UInt8?
        public var range: Range<UInt64> { offset..<(offset + size) }
    }

    public var size: UInt64
    public var table: DiskLayout.TableType
    public var diskGUID: String?
    public var mbrSignature: UInt32
    public var entries: [Entry]
    /// GPT usable area in sectors (inclusive), as written into the header.
    public var firstUsableLBA: UInt64
    public var lastUsableLBA: UInt64
    public var gptEntriesOffset: UInt64
    public var gptNoBackup: Bool
    /// MBR: the 0-based primary slot of the extended partition, if any; logical
    /// partitions follow it. `ebrGap` is the space each EBR takes before its partition.
    public var extendedSlot: Int?
    public var ebrGap: UInt64
}

extension DiskLayout {
    static let sector: UInt64 = 512
    static let gptArrayBytes: UInt64 = 128 * 128
    static let gptBackupBytes: UInt64 = 128 * 128 + 512

    /// Validates the layout and computes offsets, sizes and GUIDs. Throws the first
    /// `DiskLayoutError` found (it names the partitions and byte numbers involved).
    /// The image file always spans the whole size; unwritten ranges are holes.
    public func resolve() throws -> ResolvedLayout {
        let sector = DiskLayout.sector
        let hasTable = table != .none
        let hasGPT = table == .gpt || table == .hybrid
        let hasMBR = table == .mbr

        if hasTable && (alignment == 0 || alignment % sector != 0) {
            throw DiskLayoutError.badAlignment(what: "disk alignment", value: alignment)
        }
        if hasGPT && (gptEntriesOffset < 1024 || gptEntriesOffset % sector != 0) {
            throw DiskLayoutError.badAlignment(what: "GPT entry array offset (must be >= 1024)", value: gptEntriesOffset)
        }
        var seenNames = Set<String>()
        for p in partitions where !seenNames.insert(p.name).inserted {
            throw DiskLayoutError.duplicateName(p.name)
        }
        if hasGPT && partitions.count > 128 { throw DiskLayoutError.tooManyGPTEntries(count: partitions.count) }

        let diskGUID: String? = try hasGPT ? (diskGUID.map { g in
            guard let v = GUID.parse(g) else { throw DiskLayoutError.invalidGUID(what: "disk GUID", value: g) }
            return v
        } ?? GUID.derived("osbuild-disk", partitions.map(\.name).joined(separator: "/"))) : nil

        // MBR: which partitions are logical.
        var extendedSlot: Int? = nil
        if hasMBR {
            let n = partitions.count
            switch extendedPartition {
            case .none: extendedSlot = nil
            case .automatic: extendedSlot = n > 4 ? 3 : nil
            case .slot(let s):
                guard (1...4).contains(s), n > s - 1 else { throw DiskLayoutError.extendedSlot(slot: s, count: n) }
                extendedSlot = s - 1
            }
        }
        func isLogical(_ i: Int) -> Bool {
            guard let e = extendedSlot else { return false }
            return i >= e && !partitions[i].forcedPrimary
        }
        if hasMBR {
            let primaries = partitions.indices.filter { !isLogical($0) }
            let slots = primaries.count + (extendedSlot == nil ? 0 : 1)
            if slots > 4 {
                throw DiskLayoutError.tooManyPrimaries(count: slots, names: primaries.map { partitions[$0].name } + (extendedSlot == nil ? [] : ["<extended>"]))
            }
        }

        // Place partitions in order.
        var cursor: UInt64 = hasGPT ? gptEntriesOffset + DiskLayout.gptArrayBytes : (hasTable ? sector : 0)
        var entries: [ResolvedLayout.Entry] = []
        var fillIndex: Int? = nil
        var contentSizes: [Int: (String, UInt64)] = [:]
        for (i, p) in partitions.enumerated() {
            let align = p.alignment ?? (hasTable ? alignment : 1)
            if hasTable && (align == 0 || align % sector != 0) {
                throw DiskLayoutError.badAlignment(what: "partition '\(p.name)' alignment", value: align)
            }
            if let f = fillIndex { throw DiskLayoutError.fillNotLast(partition: partitions[f].name, next: p.name) }
            let content = try contentSize(p)
            if let content { contentSizes[i] = content }
            let logical = isLogical(i)
            var off: UInt64
            if let o = p.offset {
                off = o
            } else {
                off = cursor
                if logical { off += alignment }  // room for this partition's EBR
                off = (off + align - 1) / align * align
            }
            if off % align != 0 {
                throw DiskLayoutError.misaligned(partition: p.name, field: "offset", value: off, alignment: align)
            }
            var size: UInt64
            switch p.size {
            case .bytes(let s): size = s
            case .content:
                guard let c = content, c.1 > 0 else { throw DiskLayoutError.noSize(partition: p.name) }
                size = (c.1 + align - 1) / align * align
            case .fill:
                fillIndex = i
                size = 0
            }
            if p.size != .fill {
                if size == 0 { throw DiskLayoutError.zeroSize(partition: p.name) }
                if hasTable && size % sector != 0 {
                    throw DiskLayoutError.misaligned(partition: p.name, field: "size", value: size, alignment: sector)
                }
            }
            var gptType: String? = nil
            var mbrType: UInt8? = nil
            var hybridType: UInt8? = nil
            if hasGPT {
                guard let g = p.type.gptGUID else {
                    throw DiskLayoutError.typeNotForTable(partition: p.name, type: p.type.description, table: "gpt")
                }
                guard GUID.parse(g) != nil else { throw DiskLayoutError.invalidGUID(what: "partition '\(p.name)' type", value: g) }
                gptType = g
                if let h = p.hybridMBRType {
                    guard let m = h.mbrID else {
                        throw DiskLayoutError.typeNotForTable(partition: p.name, type: h.description, table: "mbr")
                    }
                    hybridType = m
                }
                let units = p.name.utf16.count
                if units > 36 { throw DiskLayoutError.nameTooLong(partition: p.name, units: units) }
            }
            if hasMBR {
                guard let m = p.type.mbrID else {
                    throw DiskLayoutError.typeNotForTable(partition: p.name, type: p.type.description, table: "mbr")
                }
                mbrType = m
            }
            var uuid: String? = nil
            if hasGPT, let dg = diskGUID {
                if let u = p.uuid {
                    guard let v = GUID.parse(u) else { throw DiskLayoutError.invalidGUID(what: "partition '\(p.name)' uuid", value: u) }
                    uuid = v
                } else {
                    uuid = GUID.derived(dg, "partition", p.name)
                }
            }
            var attrs = p.gptAttributeBits
            if p.bootable || p.legacyBIOSBootable { attrs |= 1 << 2 }
            if p.readOnly { attrs |= 1 << 60 }
            if p.hidden { attrs |= 1 << 62 }
            if p.noAutomount { attrs |= 1 << 63 }
            entries.append(.init(
                index: i, name: p.name, offset: off, size: size, gptType: gptType, mbrType: mbrType,
                uuid: uuid, gptAttributes: attrs, bootable: p.bootable, logical: logical, hybridMBRType: hybridType))
            cursor = off + size
        }

        // Raw blobs.
        var rawSizes: [UInt64] = []
        for r in rawWrites {
            switch r.source {
            case .bytes(let b): rawSizes.append(UInt64(b.count))
            case .file(let path):
                guard FileSystem.exists(path) else { throw DiskLayoutError.contentMissing(item: "raw blob '\(r.name)'", path: path) }
                rawSizes.append(try FileSystem.stat(path).size)
            }
        }

        // Disk size.
        let backup: UInt64 = hasGPT && !gptNoBackup ? DiskLayout.gptBackupBytes : 0
        var required = entries.map { $0.offset + $0.size }.max() ?? 0
        for (r, s) in zip(rawWrites, rawSizes) { required = max(required, r.offset + s) }
        if hasGPT { required = max(required, gptEntriesOffset + DiskLayout.gptArrayBytes) }
        let diskSize: UInt64
        if let s = size {
            diskSize = s
        } else {
            if fillIndex != nil, let f = fillIndex { throw DiskLayoutError.fillWithoutDiskSize(partition: partitions[f].name) }
            let withBackup = required + backup
            diskSize = hasGPT ? (withBackup + 4095) / 4096 * 4096 : (withBackup + sector - 1) / sector * sector
        }
        if hasTable && diskSize % sector != 0 {
            throw DiskLayoutError.misaligned(partition: "<disk>", field: "size", value: diskSize, alignment: sector)
        }
        if let f = fillIndex, let ei = entries.firstIndex(where: { $0.index == f }) {
            let align = partitions[f].alignment ?? alignment
            let end = diskSize >= backup ? diskSize - backup : 0
            let off = entries[ei].offset
            let sz = end > off ? (end - off) / align * align : 0
            if sz == 0 { throw DiskLayoutError.diskTooSmall(item: "partition '\(partitions[f].name)'", end: off + align + backup, diskSize: diskSize) }
            entries[ei].size = sz
        }
        // Everything must fit (the GPT backup is part of the disk's end).
        for e in entries where e.offset + e.size + backup > diskSize {
            throw DiskLayoutError.diskTooSmall(item: "partition '\(e.name)'" + (backup > 0 ? " (plus the \(backup)-byte backup GPT)" : ""),
                                               end: e.offset + e.size + backup, diskSize: diskSize)
        }
        for (r, s) in zip(rawWrites, rawSizes) where r.offset + s > diskSize {
            throw DiskLayoutError.diskTooSmall(item: "raw blob '\(r.name)'", end: r.offset + s, diskSize: diskSize)
        }

        // Content must fit its partition.
        for e in entries {
            if let (what, cs) = contentSizes[e.index], cs > e.size {
                throw DiskLayoutError.contentTooLarge(partition: e.name, content: what, contentSize: cs, partitionSize: e.size)
            }
        }

        // Overlaps: partitions, EBRs, table structures and raw blobs (minus their holes).
        struct Region { var name: String; var range: Range<UInt64>; var holes: [Range<UInt64>] }
        var regions: [Region] = []
        if hasTable { regions.append(Region(name: "the MBR partition table", range: 440..<512, holes: [])) }
        if hasGPT {
            regions.append(Region(name: "the GPT header", range: 512..<1024, holes: []))
            regions.append(Region(name: "the GPT entry array", range: gptEntriesOffset..<(gptEntriesOffset + DiskLayout.gptArrayBytes), holes: []))
            if backup > 0 { regions.append(Region(name: "the backup GPT", range: (diskSize - backup)..<diskSize, holes: [])) }
        }
        for e in entries {
            regions.append(Region(name: "partition '\(e.name)'", range: e.range, holes: []))
            if e.logical {
                let ebr = e.offset >= alignment ? e.offset - alignment : 0
                regions.append(Region(name: "the EBR of partition '\(e.name)'", range: ebr..<(ebr + sector), holes: []))
            }
        }
        for (r, s) in zip(rawWrites, rawSizes) where s > 0 {
            regions.append(Region(name: "raw blob '\(r.name)'", range: r.offset..<(r.offset + s),
                                  holes: r.holes.map { (r.offset + $0.lowerBound)..<(r.offset + $0.upperBound) }))
        }
        for i in regions.indices {
            for j in regions.indices where j > i {
                let a = regions[i], b = regions[j]
                let lo = max(a.range.lowerBound, b.range.lowerBound), hi = min(a.range.upperBound, b.range.upperBound)
                guard lo < hi else { continue }
                let covered = (a.holes + b.holes).contains { $0.lowerBound <= lo && $0.upperBound >= hi }
                if !covered {
                    throw DiskLayoutError.overlap(first: a.name, firstRange: a.range, second: b.name, secondRange: b.range)
                }
            }
        }

        // GPT usable area.
        var firstUsable: UInt64 = 0, lastUsable: UInt64 = 0
        if hasGPT {
            let arrayEnd = (gptEntriesOffset + DiskLayout.gptArrayBytes) / sector
            let firstPart = entries.map(\.offset).min() ?? diskSize
            if let f = gptFirstUsableLBA {
                firstUsable = f
            } else {
                // After the array and after raw blobs that sit before the first partition,
                // so partitioning tools never allocate over a bootloader.
                var end = gptEntriesOffset + DiskLayout.gptArrayBytes
                for (r, s) in zip(rawWrites, rawSizes) where r.offset + s <= firstPart { end = max(end, r.offset + s) }
                firstUsable = max(arrayEnd, (end + sector - 1) / sector)
            }
            lastUsable = (diskSize - (gptNoBackup ? 0 : backup)) / sector - 1
            if gptNoBackup { lastUsable = diskSize / sector - 1 }
            for e in entries where e.offset / sector < firstUsable {
                throw DiskLayoutError.beforeFirstUsable(partition: e.name, offset: e.offset, firstUsable: firstUsable * sector)
            }
        }
        if hasMBR || table == .hybrid {
            for e in entries where (hasMBR || e.hybridMBRType != nil) && (e.offset + e.size) / sector > UInt64(UInt32.max) {
                throw DiskLayoutError.beyondMBRLimit(partition: e.name, endSector: (e.offset + e.size) / sector)
            }
        }
        if table == .hybrid {
            let n = entries.filter { $0.hybridMBRType != nil }.count
            if n < 1 || n > 3 { throw DiskLayoutError.hybridCount(count: n) }
        }

        return ResolvedLayout(
            size: diskSize, table: table, diskGUID: diskGUID, mbrSignature: mbrSignature, entries: entries,
            firstUsableLBA: firstUsable, lastUsableLBA: lastUsable, gptEntriesOffset: gptEntriesOffset,
            gptNoBackup: gptNoBackup, extendedSlot: extendedSlot, ebrGap: alignment)
    }

    /// (description, bytes) of a partition's content when it has an intrinsic size.
    private func contentSize(_ p: Partition) throws -> (String, UInt64)? {
        switch p.content {
        case .empty: return nil
        case .file(let path, let skip):
            guard FileSystem.exists(path) else { throw DiskLayoutError.contentMissing(item: "partition '\(p.name)'", path: path) }
            let s = try FileSystem.stat(path).size
            return (path, s > skip ? s - skip : 0)
        case .filesystem(let fs):
            return fs.size.map { ("\(fs.kind.rawValue) filesystem", $0) }
        }
    }
}
