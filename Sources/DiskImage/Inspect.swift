import Basics
import CBlkid
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `osbuild inspect` reports about a disk image, read through libblkid: the
/// partition table and, per partition, the filesystem found inside.
public struct DiskReport: Codable, Sendable {
    public struct PartitionInfo: Codable, Sendable {
        public var number: Int
        public var name: String?
        public var type: String
        public var uuid: String?
        public var start: UInt64
        public var size: UInt64
        public var flags: UInt64
        public var flagNames: [String]
        public var filesystem: String?
        public var filesystemUUID: String?
        public var filesystemLabel: String?
    }
    public var image: String
    public var size: UInt64
    public var table: String?
    public var diskID: String?
    public var partitions: [PartitionInfo]
    /// A filesystem directly on the image (no table).
    public var filesystem: String?

    public func json() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let d = try? enc.encode(self) else { return "{}" }
        return String(decoding: d, as: UTF8.self)
    }

    public func text() -> String {
        var s = "\(image): \(size) bytes (\(ByteCount.format(size)))"
        s += ", table \(table ?? "none")" + (diskID.map { ", id \($0)" } ?? "") + "\n"
        if let filesystem { s += "filesystem: \(filesystem)\n" }
        for p in partitions {
            s += "  #\(p.number)"
            if let n = p.name, !n.isEmpty { s += " \(n)" }
            s += "  start \(p.start) (sector \(p.start / 512))  size \(p.size) (\(ByteCount.format(p.size)))  type \(p.type)"
            if let u = p.uuid { s += "  uuid \(u)" }
            if !p.flagNames.isEmpty { s += "  flags \(p.flagNames.joined(separator: ","))" }
            if let f = p.filesystem {
                s += "\n      \(f)" + (p.filesystemLabel.map { " label=\($0)" } ?? "") + (p.filesystemUUID.map { " uuid=\($0)" } ?? "")
            }
            s += "\n"
        }
        return s
    }
}

public enum DiskInspector {
    public static func inspect(_ path: String) throws -> DiskReport {
        let st = try FileSystem.stat(path)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path, errno: errno) }
        defer { close(fd) }
        guard let pr = blkid_new_probe() else { throw MessageError("libblkid: cannot create a probe") }
        defer { blkid_free_probe(pr) }
        guard blkid_probe_set_device(pr, fd, 0, 0) == 0 else { throw MessageError("\(path): libblkid cannot read the image") }
        blkid_probe_enable_partitions(pr, 1)
        blkid_probe_set_partitions_flags(pr, Int32(BLKID_PARTS_ENTRY_DETAILS))
        blkid_probe_enable_superblocks(pr, 1)
        blkid_probe_set_superblocks_flags(pr, Int32(BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID | BLKID_SUBLKS_LABEL))
        _ = blkid_do_safeprobe(pr)
        var report = DiskReport(image: path, size: st.size, table: nil, diskID: nil, partitions: [], filesystem: nil)
        if let fs = lookup(pr, "TYPE") { report.filesystem = fs }
        guard let list = blkid_probe_get_partitions(pr) else { return report }
        if let tab = blkid_partlist_get_table(list) {
            report.table = blkid_parttable_get_type(tab).map { String(cString: $0) }
            report.diskID = blkid_parttable_get_id(tab).map { String(cString: $0) }
        }
        let isGPT = report.table == "gpt"
        for i in 0..<blkid_partlist_numof_partitions(list) {
            guard let p = blkid_partlist_get_partition(list, i) else { continue }
            let start = UInt64(blkid_partition_get_start(p)) * 512
            let size = UInt64(blkid_partition_get_size(p)) * 512
            let flags = UInt64(blkid_partition_get_flags(p))
            let type = isGPT ? (blkid_partition_get_type_string(p).map { String(cString: $0) } ?? "")
                : "0x" + String(blkid_partition_get_type(p), radix: 16)
            var names: [String] = []
            if isGPT {
                if flags & 1 != 0 { names.append("required") }
                if flags & 4 != 0 { names.append("legacy-bios-bootable") }
                if flags & (1 << 60) != 0 { names.append("read-only") }
                if flags & (1 << 62) != 0 { names.append("hidden") }
                if flags & (1 << 63) != 0 { names.append("no-automount") }
            } else if flags & 0x80 != 0 {
                names.append("bootable")
            }
            var info = DiskReport.PartitionInfo(
                number: Int(blkid_partition_get_partno(p)), name: blkid_partition_get_name(p).map { String(cString: $0) },
                type: type, uuid: blkid_partition_get_uuid(p).map { String(cString: $0) }, start: start, size: size,
                flags: flags, flagNames: names)
            let extended = !isGPT && [0x05, 0x0F, 0x85].contains(blkid_partition_get_type(p))
            if !extended, start + size <= st.size { probeFilesystem(fd, start, size, into: &info) }
            report.partitions.append(info)
        }
        return report
    }

    private static func probeFilesystem(_ fd: Int32, _ start: UInt64, _ size: UInt64, into info: inout DiskReport.PartitionInfo) {
        guard let pr = blkid_new_probe() else { return }
        defer { blkid_free_probe(pr) }
        guard blkid_probe_set_device(pr, fd, blkid_loff_t(start), blkid_loff_t(size)) == 0 else { return }
        blkid_probe_enable_superblocks(pr, 1)
        blkid_probe_set_superblocks_flags(pr, Int32(BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID | BLKID_SUBLKS_LABEL))
        blkid_probe_enable_partitions(pr, 0)
        guard blkid_do_safeprobe(pr) == 0 else { return }
        info.filesystem = lookup(pr, "TYPE")
        info.filesystemUUID = lookup(pr, "UUID")
        info.filesystemLabel = lookup(pr, "LABEL")
    }

    private static func lookup(_ pr: blkid_probe, _ name: String) -> String? {
        var data: UnsafePointer<CChar>? = nil
        var len: Int = 0
        guard blkid_probe_lookup_value(pr, name, &data, &len) == 0, let data else { return nil }
        return String(cString: data)
    }
}
