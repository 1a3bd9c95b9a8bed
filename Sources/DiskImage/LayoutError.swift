import Basics

/// A byte range printed the same way in every message: start..<end (size).
func describe(_ r: Range<UInt64>) -> String {
    "bytes \(r.lowerBound)..<\(r.upperBound) (\(r.upperBound - r.lowerBound) bytes)"
}

/// Everything that can be wrong with a `DiskLayout`. Messages name the partitions or
/// blobs involved and the byte numbers, and say what to change.
public enum DiskLayoutError: UserError, Equatable {
    case overlap(first: String, firstRange: Range<UInt64>, second: String, secondRange: Range<UInt64>)
    case contentTooLarge(partition: String, content: String, contentSize: UInt64, partitionSize: UInt64)
    case misaligned(partition: String, field: String, value: UInt64, alignment: UInt64)
    case badAlignment(what: String, value: UInt64)
    case tooManyPrimaries(count: Int, names: [String])
    case diskTooSmall(item: String, end: UInt64, diskSize: UInt64)
    case zeroSize(partition: String)
    case noSize(partition: String)
    case fillNotLast(partition: String, next: String)
    case fillWithoutDiskSize(partition: String)
    case beforeFirstUsable(partition: String, offset: UInt64, firstUsable: UInt64)
    case invalidGUID(what: String, value: String)
    case typeNotForTable(partition: String, type: String, table: String)
    case nameTooLong(partition: String, units: Int)
    case duplicateName(String)
    case tooManyGPTEntries(count: Int)
    case beyondMBRLimit(partition: String, endSector: UInt64)
    case hybridCount(count: Int)
    case extendedSlot(slot: Int, count: Int)
    case contentMissing(item: String, path: String)

    public var exitCode: Int32 { ExitStatus.usage }

    public var description: String {
        switch self {
        case let .overlap(a, ar, b, br):
            let o = max(ar.lowerBound, br.lowerBound)..<min(ar.upperBound, br.upperBound)
            return "\(a) (\(describe(ar))) overlaps \(b) (\(describe(br))) in \(describe(o)); move one of them or declare a hole"
        case let .contentTooLarge(p, c, cs, ps):
            return "partition '\(p)': content \(c) is \(cs) bytes but the partition is only \(ps) bytes (\(cs - ps) bytes too many); enlarge the partition"
        case let .misaligned(p, f, v, a):
            return "partition '\(p)': \(f) \(v) is not a multiple of its alignment \(a) (nearest aligned values \(v / a * a) and \((v / a + 1) * a))"
        case let .badAlignment(w, v):
            return "\(w) \(v) must be a non-zero multiple of 512 bytes"
        case let .tooManyPrimaries(n, names):
            return "MBR holds at most 4 primary partitions but \(n) are primary (\(names.map { "'\($0)'" }.joined(separator: ", "))); use an extended partition (extendedPartition = .automatic or .slot(n)) or a GPT/hybrid table"
        case let .diskTooSmall(item, end, size):
            return "\(item) ends at byte \(end) but the disk is only \(size) bytes (\(end - size) bytes short); enlarge the disk or leave its size unset to compute it"
        case let .zeroSize(p):
            return "partition '\(p)': size is 0"
        case let .noSize(p):
            return "partition '\(p)': no size given and its content has no size of its own; set a size"
        case let .fillNotLast(p, n):
            return "partition '\(p)': only the last partition can fill the rest of the disk, but '\(n)' follows it"
        case let .fillWithoutDiskSize(p):
            return "partition '\(p)': filling the rest of the disk needs an explicit disk size"
        case let .beforeFirstUsable(p, off, first):
            return "partition '\(p)': starts at byte \(off), before the first usable byte \(first) of the GPT (the table and raw blobs before it end there)"
        case let .invalidGUID(w, v):
            return "\(w): '\(v)' is not a GUID (expected 8-4-4-4-12 hex digits)"
        case let .typeNotForTable(p, t, table):
            return "partition '\(p)': type '\(t)' has no meaning in a \(table) table; give a \(table == "gpt" ? "type GUID" : "MBR type id like 0x83")"
        case let .nameTooLong(p, n):
            return "partition '\(p)': GPT names hold at most 36 UTF-16 units, this one has \(n)"
        case let .duplicateName(n):
            return "partition name '\(n)' is used twice"
        case let .tooManyGPTEntries(n):
            return "GPT holds at most 128 partitions, \(n) given"
        case let .beyondMBRLimit(p, end):
            return "partition '\(p)': ends at sector \(end), beyond the MBR limit of 2^32-1 sectors (2 TiB); use GPT"
        case let .hybridCount(n):
            return "a hybrid table needs 1 to 3 partitions with an MBR type (hybridMBRType), \(n) given"
        case let .extendedSlot(s, n):
            return "extended partition slot \(s) is invalid for \(n) partitions (use 1...4, and only when there are more than 4 partitions)"
        case let .contentMissing(p, path):
            return "\(p): content file \(path) does not exist"
        }
    }
}
