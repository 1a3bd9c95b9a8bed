import Basics
import CFdisk
#if canImport(Glibc)
import Glibc
#endif

/// libfdisk failed while writing a table; names the step and the partition.
public struct PartitionTableError: UserError {
    public var step: String
    public var path: String
    public var code: Int32
    public var description: String {
        "writing the partition table of \(path): \(step) failed" + (code < 0 ? " (\(String(cString: strerror(-code))))" : "")
    }
}

/// Writes a resolved table into an existing (sized) image file through libfdisk: GPT with
/// protective MBR and backup header, MBR with extended/logical partitions. libfdisk has no
/// hybrid-MBR API, so for hybrid tables the MBR sector is written here afterwards.
enum PartitionTableWriter {
    static func write(_ r: ResolvedLayout, to path: String) throws {
        guard r.table != .none else { return }
        if (r.table == .gpt || r.table == .hybrid) && r.gptEntriesOffset != 1024 {
            throw MessageError("GPT entry array at byte \(r.gptEntriesOffset): only the standard location 1024 is supported yet (libfdisk 2.38 cannot move it)", exitCode: ExitStatus.usage)
        }
        if r.gptNoBackup {
            throw MessageError("a GPT without backup header is not supported yet", exitCode: ExitStatus.usage)
        }
        guard let cxt = fdisk_new_context() else { throw PartitionTableError(step: "fdisk_new_context", path: path, code: -ENOMEM) }
        defer { fdisk_unref_context(cxt) }
        func check(_ rc: Int32, _ step: @autoclosure () -> String) throws {
            if rc < 0 { throw PartitionTableError(step: step(), path: path, code: rc) }
        }
        fdisk_disable_dialogs(cxt, 1)
        // Offsets are final already: no 1 MiB grain rounding by libfdisk.
        try check(fdisk_save_user_grain(cxt, 512), "set grain")
        try check(fdisk_assign_device(cxt, path, 0), "open")
        var assigned = true
        defer { if assigned { fdisk_deassign_device(cxt, 1) } }

        let sectors = UInt64(512)
        let isGPT = r.table != .mbr
        if isGPT {
            guard let script = fdisk_new_script(cxt) else { throw PartitionTableError(step: "fdisk_new_script", path: path, code: -ENOMEM) }
            defer { fdisk_unref_script(script) }
            try check(fdisk_script_set_header(script, "first-lba", String(r.firstUsableLBA)), "first-lba")
            try check(fdisk_script_set_header(script, "last-lba", String(r.lastUsableLBA)), "last-lba")
            try check(fdisk_set_script(cxt, script), "set script")
            try check(fdisk_create_disklabel(cxt, "gpt"), "create GPT label")
            fdisk_set_script(cxt, nil)
            if let g = r.diskGUID { try check(fdisk_set_disklabel_id_from_string(cxt, g), "set disk GUID \(g)") }
        } else {
            // EBRs of logical partitions sit one alignment unit before each partition.
            fdisk_set_first_lba(cxt, r.ebrGap / sectors)
            try check(fdisk_create_disklabel(cxt, "dos"), "create MBR label")
            fdisk_set_first_lba(cxt, r.ebrGap / sectors)
            try check(fdisk_set_disklabel_id_from_string(cxt, "0x" + String(r.mbrSignature, radix: 16)), "set disk signature")
        }
        guard let label = fdisk_get_label(cxt, nil) else { throw PartitionTableError(step: "no label", path: path, code: -EINVAL) }

        func add(partno: Int, start: UInt64, size: UInt64, type: OpaquePointer?, name: String?, uuid: String?, what: String) throws -> Int {
            guard let pa = fdisk_new_partition() else { throw PartitionTableError(step: "fdisk_new_partition", path: path, code: -ENOMEM) }
            defer { fdisk_unref_partition(pa) }
            fdisk_partition_set_partno(pa, partno)
            fdisk_partition_set_start(pa, start / sectors)
            fdisk_partition_set_size(pa, size / sectors)
            fdisk_partition_size_explicit(pa, 1)
            if let type { fdisk_partition_set_type(pa, type) }
            if let name { try check(fdisk_partition_set_name(pa, name), "name of \(what)") }
            if let uuid { try check(fdisk_partition_set_uuid(pa, uuid), "uuid of \(what)") }
            var no: Int = 0
            try check(fdisk_add_partition(cxt, pa, &no), "adding \(what) at sector \(start / sectors) (\(size / sectors) sectors)")
            return no
        }
        func parttype(_ e: ResolvedLayout.Entry) -> OpaquePointer? {
            if isGPT, let g = e.gptType { return fdisk_label_get_parttype_from_string(label, g) }
            if let m = e.mbrType { return fdisk_label_get_parttype_from_code(label, UInt32(m)) }
            return nil
        }

        if isGPT {
            for (i, e) in r.entries.enumerated() {
                let t = parttype(e)
                defer { if let t { fdisk_unref_parttype(t) } }
                let no = try add(partno: i, start: e.offset, size: e.size, type: t, name: e.name, uuid: e.uuid, what: "partition '\(e.name)'")
                if e.gptAttributes != 0 { try check(fdisk_gpt_set_partition_attrs(cxt, no, e.gptAttributes), "attributes of '\(e.name)'") }
            }
        } else {
            // Primary slots in order; the extended partition takes its slot, logicals follow as 5, 6, ...
            let logical = r.entries.filter(\.logical)
            var slot = 0
            var extendedDone = false
            for e in r.entries {
                if e.logical {
                    if !extendedDone, let first = logical.first, let last = logical.last {
                        let start = first.offset - r.ebrGap
                        let t = fdisk_label_get_parttype_from_code(label, 0x0F)
                        defer { if let t { fdisk_unref_parttype(t) } }
                        _ = try add(partno: slot, start: start, size: last.offset + last.size - start, type: t, name: nil, uuid: nil, what: "the extended partition")
                        slot += 1
                        extendedDone = true
                    }
                    continue
                }
                let t = parttype(e)
                defer { if let t { fdisk_unref_parttype(t) } }
                let no = try add(partno: slot, start: e.offset, size: e.size, type: t, name: nil, uuid: nil, what: "partition '\(e.name)'")
                if e.bootable { try check(fdisk_toggle_partition_flag(cxt, no, UInt(DOS_FLAG_ACTIVE)), "bootable flag of '\(e.name)'") }
                slot += 1
            }
            for (k, e) in logical.enumerated() {
                let t = parttype(e)
                defer { if let t { fdisk_unref_parttype(t) } }
                let no = try add(partno: 4 + k, start: e.offset, size: e.size, type: t, name: nil, uuid: nil, what: "logical partition '\(e.name)'")
                if e.bootable { try check(fdisk_toggle_partition_flag(cxt, no, UInt(DOS_FLAG_ACTIVE)), "bootable flag of '\(e.name)'") }
            }
        }
        try check(fdisk_write_disklabel(cxt), "write")
        assigned = false
        try check(fdisk_deassign_device(cxt, 1), "close")

        if r.table == .hybrid { try writeHybridMBR(r, path: path) }
    }

    /// Hybrid MBR: up to three GPT partitions mirrored as MBR entries, then an 0xEE entry
    /// covering the GPT header and array (the layout genimage writes).
    static func writeHybridMBR(_ r: ResolvedLayout, path: String) throws {
        var mbr = [UInt8](repeating: 0, count: 512)
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        guard pread(fd, &mbr, 512, 0) == 512 else { throw SystemError("read MBR", path: path, errno: errno) }
        withUnsafeBytes(of: r.mbrSignature.littleEndian) { for i in 0..<4 { mbr[440 + i] = $0[i] } }
        mbr[444] = 0; mbr[445] = 0
        for i in 446..<510 { mbr[i] = 0 }
        var slot = 0
        for e in r.entries {
            guard let t = e.hybridMBRType else { continue }
            MBREntry.encode(into: &mbr, slot: slot, bootable: e.bootable, type: t, startLBA: e.offset / 512, sectors: e.size / 512)
            slot += 1
        }
        let gptEnd = r.gptEntriesOffset / 512 + 32 - 1
        MBREntry.encode(into: &mbr, slot: slot, bootable: false, type: 0xEE, startLBA: 1, sectors: gptEnd)
        mbr[510] = 0x55; mbr[511] = 0xAA
        guard pwrite(fd, mbr, 512, 0) == 512 else { throw SystemError("write MBR", path: path, errno: errno) }
    }
}

/// One 16-byte MBR partition entry (CHS fields in the usual 255-head/63-sector geometry,
/// saturated at 1023/254/63 beyond 8 GiB).
enum MBREntry {
    static func chs(_ lba: UInt64) -> (UInt8, UInt8, UInt8) {
        let spt: UInt64 = 63, heads: UInt64 = 255
        var c = lba / (spt * heads)
        var h = (lba / spt) % heads
        var s = lba % spt + 1
        if c > 1023 { c = 1023; h = 254; s = 63 }
        return (UInt8(h), UInt8(s | ((c >> 2) & 0xC0)), UInt8(c & 0xFF))
    }

    static func encode(into mbr: inout [UInt8], slot: Int, bootable: Bool, type: UInt8, startLBA: UInt64, sectors: UInt64) {
        let o = 446 + slot * 16
        mbr[o] = bootable ? 0x80 : 0
        let (h1, s1, c1) = chs(startLBA)
        mbr[o + 1] = h1; mbr[o + 2] = s1; mbr[o + 3] = c1
        mbr[o + 4] = type
        let (h2, s2, c2) = chs(startLBA + sectors - 1)
        mbr[o + 5] = h2; mbr[o + 6] = s2; mbr[o + 7] = c2
        let st = UInt32(truncatingIfNeeded: startLBA), n = UInt32(truncatingIfNeeded: sectors)
        for i in 0..<4 {
            mbr[o + 8 + i] = UInt8(truncatingIfNeeded: st >> (8 * UInt32(i)))
            mbr[o + 12 + i] = UInt8(truncatingIfNeeded: n >> (8 * UInt32(i)))
        }
    }
}
