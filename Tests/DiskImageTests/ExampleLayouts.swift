import DiskImage
import FSTree

/// Example layouts the board files mirror (sizes scaled down for tests).
enum ExampleLayouts {
    /// Home Assistant OS style GPT: boot vfat, kernel A/B, system A/B, bootstate,
    /// overlay ext4, data ext4, every GUID fixed.
    static func haos(bootFiles: String, rootfs: String, scale: UInt64 = MiB) -> DiskLayout {
        DiskLayout(
            table: .gpt, alignment: MiB, diskGUID: "8D8C9F4A-51B6-4E4A-9C1A-0B5A1F1E2D3C",
            partitions: [
                Partition(name: "hassos-boot", size: .bytes(32 * scale), type: .esp, uuid: "B3DD0952-733C-4C88-8CBA-CAB9B8B4377F",
                          content: .filesystem(FilesystemSpec(kind: .vfat, source: .directory(bootFiles), label: "hassos-boot", uuid: "0B007001"))),
                Partition(name: "hassos-kernel0", size: .bytes(8 * scale), uuid: "26700FC6-B0BC-4CCF-9837-EA1A4CBA3E65"),
                Partition(name: "hassos-system0", size: .bytes(16 * scale), type: .named("root-x86-64"), uuid: "8D3D53E3-6D49-4C38-8349-AFF6859E82FD",
                          content: .filesystem(FilesystemSpec(kind: .ext4, source: .directory(rootfs), label: "system0",
                                                              uuid: "3C1EF1B0-5E3D-4A5F-9E7C-000000000001"))),
                Partition(name: "hassos-kernel1", size: .bytes(8 * scale), uuid: "FC02A4F0-5350-406F-93A2-56CBED636B5F"),
                Partition(name: "hassos-system1", size: .bytes(16 * scale), type: .named("root-x86-64"), uuid: "A3EC664E-32CE-4665-95EA-7AE90CE9AA20"),
                Partition(name: "hassos-bootstate", size: .bytes(1 * scale), uuid: "33236519-7F32-4DFF-8002-3390B62C309D"),
                Partition(name: "hassos-overlay", size: .bytes(16 * scale), uuid: "F1326040-5236-40EB-B683-AAA100A9AFCF",
                          content: .filesystem(FilesystemSpec(kind: .ext4, label: "hassos-overlay", uuid: "3C1EF1B0-5E3D-4A5F-9E7C-000000000002"))),
                Partition(name: "hassos-data", size: .bytes(24 * scale), uuid: "A52A4597-FA3A-4851-AEFD-2FBE9F849079",
                          content: .filesystem(FilesystemSpec(kind: .ext4, label: "hassos-data", uuid: "3C1EF1B0-5E3D-4A5F-9E7C-000000000003"))),
            ])
    }

    /// Raspberry Pi style MBR (KubeSolo-like): boot-control, boot A/B (FAT32), data ext4.
    static func raspberryPi(bootFiles: String) -> DiskLayout {
        DiskLayout(
            table: .mbr, alignment: 4 * MiB, mbrSignature: 0x5452_5049,
            partitions: [
                Partition(name: "bootctl", size: .bytes(4 * MiB), type: .fat32,
                          content: .filesystem(FilesystemSpec(kind: .vfat, label: "BOOTCTL", uuid: "0B00C7A1", fatSize: .fat12))),
                Partition(name: "bootA", size: .bytes(40 * MiB), type: .fat32, bootable: true,
                          content: .filesystem(FilesystemSpec(kind: .vfat, source: .directory(bootFiles), label: "BOOT_A", uuid: "0B00A001", fatSize: .fat32))),
                Partition(name: "bootB", size: .bytes(40 * MiB), type: .fat32,
                          content: .filesystem(FilesystemSpec(kind: .vfat, source: .directory(bootFiles), label: "BOOT_B", uuid: "0B00B001", fatSize: .fat32))),
                Partition(name: "data", size: .bytes(16 * MiB), type: .linux,
                          content: .filesystem(FilesystemSpec(kind: .ext4, label: "data", uuid: "3C1EF1B0-5E3D-4A5F-9E7C-0000000000DA"))),
            ],
            // SPL-like blob in the gap after the MBR, boot code in bytes 0..<440.
            rawWrites: [
                RawWrite(name: "bootcode", offset: 0, source: .bytes([UInt8](repeating: 0xEB, count: 440))),
                RawWrite(name: "spl", offset: 64 * 512, source: .bytes([UInt8](repeating: 0x5A, count: 30000))),
            ])
    }

    /// Hybrid: GPT with the boot partition mirrored into the MBR (for ROMs that read MBR).
    static func hybrid(bootFiles: String) -> DiskLayout {
        DiskLayout(
            table: .hybrid, alignment: MiB, diskGUID: "6A1C0D5E-9B0F-4F7A-8E2D-1C3B5A7D9E0F", mbrSignature: 0x1234_5678,
            partitions: [
                Partition(name: "boot", size: .bytes(16 * MiB), type: .fat32, hybridMBRType: .mbr(0x0C),
                          uuid: "0B0B0B0B-0000-4000-8000-00000000000B", bootable: true,
                          content: .filesystem(FilesystemSpec(kind: .vfat, source: .directory(bootFiles), label: "BOOT", uuid: "0B00B00B"))),
                Partition(name: "rootfs", size: .bytes(16 * MiB), type: .named("root-arm64"), uuid: "0B0B0B0B-0000-4000-8000-00000000000C", readOnly: true),
            ])
    }
}
