import Basics
import DiskImage
import Testing
import TestSupport


/// Resolves and returns the error message (fails the test if resolution succeeds).
private func message(_ layout: DiskLayout, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> String {
    do {
        _ = try layout.resolve()
        Issue.record("layout unexpectedly valid", sourceLocation: sourceLocation)
        return ""
    } catch {
        return "\(error)"
    }
}

@Suite struct LayoutValidationTests {
    @Test func overlappingPartitions() {
        let l = DiskLayout(table: .gpt, partitions: [
            Partition(name: "a", offset: 1 * MiB, size: .bytes(4 * MiB)),
            Partition(name: "b", offset: 4 * MiB, size: .bytes(4 * MiB)),
        ])
        #expect(message(l) == "partition 'a' (bytes 1048576..<5242880 (4194304 bytes)) overlaps partition 'b' (bytes 4194304..<8388608 (4194304 bytes)) in bytes 4194304..<5242880 (1048576 bytes); move one of them or declare a hole")
    }

    @Test func contentLargerThanPartition() throws {
        let tmp = try TempDir("layout")
        let f = try tmp.write("big.img", String(repeating: "x", count: 3000))
        let l = DiskLayout(table: .mbr, alignment: 512, partitions: [
            Partition(name: "boot", size: .bytes(2048), type: .fat32, content: .file(path: f)),
        ])
        #expect(message(l) == "partition 'boot': content \(f) is 3000 bytes but the partition is only 2048 bytes (952 bytes too many); enlarge the partition")
    }

    @Test func misalignedOffset() {
        let l = DiskLayout(table: .gpt, partitions: [Partition(name: "root", offset: 3 * MiB + 512, size: .bytes(MiB))])
        #expect(message(l) == "partition 'root': offset 3146240 is not a multiple of its alignment 1048576 (nearest aligned values 3145728 and 4194304)")
    }

    @Test func misalignedSize() {
        let l = DiskLayout(table: .gpt, partitions: [Partition(name: "root", size: .bytes(1000))])
        #expect(message(l) == "partition 'root': size 1000 is not a multiple of its alignment 512 (nearest aligned values 512 and 1024)")
    }

    @Test func fivePrimariesWithoutExtended() {
        let parts = (1...5).map { Partition(name: "p\($0)", size: .bytes(MiB)) }
        let l = DiskLayout(table: .mbr, partitions: parts)
        #expect(message(l) == "MBR holds at most 4 primary partitions but 5 are primary ('p1', 'p2', 'p3', 'p4', 'p5'); use an extended partition (extendedPartition = .automatic or .slot(n)) or a GPT/hybrid table")
        // With an extended partition the same layout is valid: p4 and p5 become logical.
        var ok = l
        ok.extendedPartition = .automatic
        let r = try? ok.resolve()
        #expect(r?.entries.map(\.logical) == [false, false, false, true, true])
        #expect(r?.extendedSlot == 3)
    }

    @Test func forcedPrimaryCountsAsPrimary() {
        var parts = (1...6).map { Partition(name: "p\($0)", size: .bytes(MiB)) }
        parts[4].forcedPrimary = true
        parts[5].forcedPrimary = true
        let l = DiskLayout(table: .mbr, extendedPartition: .slot(2), partitions: parts)
        // 1 primary + extended + 2 forced = 4 slots: valid.
        #expect((try? l.resolve()) != nil)
        parts[3].forcedPrimary = true
        let bad = DiskLayout(table: .mbr, extendedPartition: .slot(2), partitions: parts)
        #expect(message(bad) == "MBR holds at most 4 primary partitions but 5 are primary ('p1', 'p4', 'p5', 'p6', '<extended>'); use an extended partition (extendedPartition = .automatic or .slot(n)) or a GPT/hybrid table")
    }

    @Test func diskTooSmall() {
        let l = DiskLayout(size: 8 * MiB, table: .gpt, partitions: [Partition(name: "data", offset: MiB, size: .bytes(7 * MiB))])
        #expect(message(l) == "partition 'data' (plus the 16896-byte backup GPT) ends at byte 8405504 but the disk is only 8388608 bytes (16896 bytes short); enlarge the disk or leave its size unset to compute it")
    }

    @Test func gptArrayOverlapsRawBlob() {
        let l = DiskLayout(table: .gpt, partitions: [Partition(name: "root", size: .bytes(MiB))],
                           rawWrites: [RawWrite(name: "spl", offset: 8192, source: .bytes([UInt8](repeating: 1, count: 4096)))])
        #expect(message(l) == "the GPT entry array (bytes 1024..<17408 (16384 bytes)) overlaps raw blob 'spl' (bytes 8192..<12288 (4096 bytes)) in bytes 8192..<12288 (4096 bytes); move one of them or declare a hole")
    }

    @Test func holeAllowsTableOverlap() throws {
        // A Rockchip-style blob at 0 whose hole covers MBR + GPT: allowed.
        let l = DiskLayout(table: .gpt, partitions: [Partition(name: "root", size: .bytes(MiB))],
                           rawWrites: [RawWrite(name: "loader", offset: 0, source: .bytes([UInt8](repeating: 1, count: 20000)), holes: [440..<17408])])
        let r = try l.resolve()
        #expect(r.entries[0].offset == MiB)
        // The blob ends before the first partition, so the GPT's usable area starts after it.
        #expect(r.firstUsableLBA == 40)
    }

    @Test func partitionOverlapsRawBlob() {
        let l = DiskLayout(table: .mbr, partitions: [Partition(name: "boot", offset: MiB, size: .bytes(MiB))],
                           rawWrites: [RawWrite(name: "uboot", offset: 1_000_000, source: .bytes([UInt8](repeating: 1, count: 100_000)))])
        #expect(message(l) == "partition 'boot' (bytes 1048576..<2097152 (1048576 bytes)) overlaps raw blob 'uboot' (bytes 1000000..<1100000 (100000 bytes)) in bytes 1048576..<1100000 (51424 bytes); move one of them or declare a hole")
    }

    @Test func partitionBeforeFirstUsableLBA() {
        let l = DiskLayout(table: .gpt, gptFirstUsableLBA: 4096, partitions: [Partition(name: "root", offset: MiB, size: .bytes(MiB))])
        #expect(message(l) == "partition 'root': starts at byte 1048576, before the first usable byte 2097152 of the GPT (the table and raw blobs before it end there)")
    }

    @Test func typeWithoutGPTMeaning() {
        let l = DiskLayout(table: .gpt, partitions: [Partition(name: "x", size: .bytes(MiB), type: .mbr(0x83))])
        #expect(message(l) == "partition 'x': type '0x83' has no meaning in a gpt table; give a type GUID")
    }

    @Test func badGUIDs() {
        let l = DiskLayout(table: .gpt, diskGUID: "nope", partitions: [Partition(name: "x", size: .bytes(MiB))])
        #expect(message(l) == "disk GUID: 'nope' is not a GUID (expected 8-4-4-4-12 hex digits)")
        let p = DiskLayout(table: .gpt, partitions: [Partition(name: "x", size: .bytes(MiB), uuid: "1234")])
        #expect(message(p) == "partition 'x' uuid: '1234' is not a GUID (expected 8-4-4-4-12 hex digits)")
    }

    @Test func hybridNeedsMBRPartitions() {
        let l = DiskLayout(table: .hybrid, partitions: [Partition(name: "x", size: .bytes(MiB))])
        #expect(message(l) == "a hybrid table needs 1 to 3 partitions with an MBR type (hybridMBRType), 0 given")
    }

    @Test func fillMustBeLast() {
        let l = DiskLayout(size: 64 * MiB, table: .gpt, partitions: [
            Partition(name: "data", size: .fill), Partition(name: "after", size: .bytes(MiB)),
        ])
        #expect(message(l) == "partition 'data': only the last partition can fill the rest of the disk, but 'after' follows it")
        let noSize = DiskLayout(table: .gpt, partitions: [Partition(name: "data", size: .fill)])
        #expect(message(noSize) == "partition 'data': filling the rest of the disk needs an explicit disk size")
    }

    @Test func nameTooLongAndDuplicates() {
        let long = String(repeating: "n", count: 37)
        #expect(message(DiskLayout(table: .gpt, partitions: [Partition(name: long, size: .bytes(MiB))]))
            == "partition '\(long)': GPT names hold at most 36 UTF-16 units, this one has 37")
        #expect(message(DiskLayout(table: .gpt, partitions: [Partition(name: "a", size: .bytes(MiB)), Partition(name: "a", size: .bytes(MiB))]))
            == "partition name 'a' is used twice")
    }

    @Test func zeroAndMissingSizes() {
        #expect(message(DiskLayout(partitions: [Partition(name: "z", size: .bytes(0))])) == "partition 'z': size is 0")
        #expect(message(DiskLayout(partitions: [Partition(name: "c", size: .content)]))
            == "partition 'c': no size given and its content has no size of its own; set a size")
    }

    @Test func beyondMBRLimit() {
        let l = DiskLayout(size: 3 << 40, table: .mbr, partitions: [Partition(name: "huge", size: .bytes(2 << 40))])
        #expect(message(l) == "partition 'huge': ends at sector 4294969344, beyond the MBR limit of 2^32-1 sectors (2 TiB); use GPT")
    }

    @Test func missingContentFile() {
        let l = DiskLayout(partitions: [Partition(name: "k", size: .bytes(MiB), content: .file(path: "/nonexistent/kernel.img"))])
        #expect(message(l) == "partition 'k': content file /nonexistent/kernel.img does not exist")
    }

    @Test func computedLayoutMatchesGenimageRules() throws {
        // The genimage anchor example (shared notes A.7): 122920 sectors, last-lba 122886.
        let l = DiskLayout(table: .gpt, diskGUID: "4a1b2c3d-1111-4222-8333-444455556666", gptFirstUsableLBA: 8192, partitions: [
            Partition(name: "boot", offset: 4 * MiB, size: .bytes(16 * MiB), type: .guid("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"), bootable: true),
            Partition(name: "rootfs", size: .bytes(32 * MiB), type: .named("root-x86-64")),
            Partition(name: "data", size: .bytes(8 * MiB)),
        ], rawWrites: [RawWrite(name: "bootloader", offset: 32768, source: .bytes([UInt8](repeating: 0xAA, count: 20000)))])
        let r = try l.resolve()
        #expect(r.size == 122920 * 512)
        #expect(r.lastUsableLBA == 122886)
        #expect(r.entries.map { $0.offset / 512 } == [8192, 40960, 106496])
        #expect(r.entries[0].gptAttributes == 4)
        #expect(r.entries[1].gptType == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")
        // Unspecified GUIDs are derived, so two resolutions agree.
        #expect(try l.resolve().entries.map(\.uuid) == r.entries.map(\.uuid))
    }
}
