import Basics

/// The value types a board setting can have.
public indirect enum SettingType: Sendable, Equatable {
    case string
    case integer
    case bool
    /// A byte size: an integer or a string with a unit ("64M", "2GiB", "512s").
    case size
    /// A path; relative paths are resolved against the project root (the directory holding `boards/`).
    case path
    case choice([String])
    case stringList
    case pathList
    /// A free-form string → string table (e.g. template variables).
    case stringMap
    /// An array of tables (`[[disk.partition]]`), each validated against `fields`.
    case records(fields: [Setting])

    public var label: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .bool: "boolean"
        case .size: "size"
        case .path: "path"
        case .choice(let c): "one of " + c.joined(separator: "|")
        case .stringList: "list of strings"
        case .pathList: "list of paths"
        case .stringMap: "table of strings"
        case .records: "array of tables"
        }
    }
}

/// How a child board combines a setting with its parent's value.
public enum MergePolicy: Sendable, Equatable {
    case replace
    /// Lists: the parent's items first, then the child's.
    case append
}

/// One entry of the settings table. This single table drives board-file parsing and
/// validation, `osbuild board show`, its JSON, and docs/boards.md — they cannot drift.
public struct Setting: Sendable, Equatable {
    public var key: String
    public var type: SettingType
    public var defaultValue: BoardValue?
    public var required: Bool
    public var merge: MergePolicy
    public var doc: String

    public init(_ key: String, _ type: SettingType, default defaultValue: BoardValue? = nil, required: Bool = false, merge: MergePolicy = .replace, _ doc: String) {
        self.key = key
        self.type = type
        self.defaultValue = defaultValue
        self.required = required
        self.merge = merge
        self.doc = doc
    }
}

/// A resolved, type-checked setting value.
public indirect enum BoardValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case list([String])
    case map([String: String])
    case records([[String: BoardValue]])

    /// Deterministic text for fingerprints: tables in sorted key order (a Swift dictionary's
    /// own description order changes from one process to the next).
    public var canonical: String {
        switch self {
        case .string(let s): return BoardPresenter.quote(s)
        case .integer(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case .list(let l): return "[" + l.map(BoardPresenter.quote).joined(separator: ",") + "]"
        case .map(let m): return "{" + m.keys.sorted(by: ByteOrder.less).map { BoardPresenter.quote($0) + "=" + BoardPresenter.quote(m[$0] ?? "") }.joined(separator: ",") + "}"
        case .records(let r):
            return "[" + r.map { rec in
                "{" + rec.keys.sorted(by: ByteOrder.less).map { BoardPresenter.quote($0) + "=" + (rec[$0]?.canonical ?? "") }.joined(separator: ",") + "}"
            }.joined(separator: ",") + "]"
        }
    }

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var integer: Int64? { if case .integer(let i) = self { i } else { nil } }
    public var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var list: [String]? { if case .list(let l) = self { l } else { nil } }
    public var map: [String: String]? { if case .map(let m) = self { m } else { nil } }
    public var records: [[String: BoardValue]]? { if case .records(let r) = self { r } else { nil } }
}

public enum BoardSettings {
    static let arches = ["x86_64", "aarch64", "arm", "riscv64"]
    static let compressions = ["none", "gzip", "xz", "lz4", "lz4hc", "zstd", "lzma"]

    /// Fields of one `[[disk.partition]]` table.
    public static let partitionFields: [Setting] = [
        Setting("name", .string, required: true, "Partition name (GPT name / genimage partition name); must be unique."),
        Setting("size", .size, "Size of the partition; omitted means the size of its content (or the rest of the disk for the last one)."),
        Setting("offset", .size, "Fixed byte offset; omitted means placed after the previous partition, aligned."),
        Setting("align", .size, "Alignment of this partition's start (default: disk.alignment)."),
        Setting("type", .string, default: .string("linux"), "Type: a GPT GUID, an MBR id (0x83), or a name: linux, esp, fat32, swap, root-x86-64, root-arm64, ..."),
        Setting("uuid", .string, "Fixed partition UUID (GPT) for reproducible images and stable /dev/disk/by-partuuid."),
        Setting("content", .string, default: .string("empty"), "What goes in: 'empty', 'file:PATH', 'stage:NAME' (an artifact), 'fs' (a filesystem made from `files`)."),
        Setting("fs", .choice(["vfat", "ext4", "erofs", "squashfs", "none"]), default: .string("none"), "Filesystem to create when content = 'fs'."),
        Setting("label", .string, "Filesystem label."),
        Setting("files", .stringList, "Files for a created filesystem, 'src:dst' (src relative to the project root or stage:NAME/...)."),
        Setting("bootable", .bool, default: .bool(false), "MBR boot flag / GPT legacy BIOS bootable attribute."),
        Setting("read-only", .bool, default: .bool(false), "GPT read-only attribute."),
        Setting("hidden", .bool, default: .bool(false), "GPT hidden attribute."),
        Setting("hybrid", .bool, default: .bool(false), "With table = 'hybrid': also list this partition in the MBR."),
        Setting("slot", .string, "A/B slot this partition belongs to ('A' or 'B'), used by RAUC and the bootloader."),
    ]

    public static let rawFields: [Setting] = [
        Setting("file", .string, required: true, "Blob to write: a path or stage:NAME/FILE."),
        Setting("offset", .size, required: true, "Byte offset on the disk (e.g. '32k' or 64s for sector 64)."),
        Setting("size", .size, "Space reserved for the blob (the table must leave it free); default: the blob's size."),
    ]

    public static let overrideFields: [Setting] = [
        Setting("path", .string, required: true, "Path in the rootfs."),
        Setting("mode", .string, "Octal permission bits, e.g. '0755' or '4755'."),
        Setting("uid", .integer, "Owner uid."),
        Setting("gid", .integer, "Owner gid."),
    ]

    public static let fileFields: [Setting] = [
        Setting("path", .string, required: true, "Path in the rootfs."),
        Setting("template", .string, "Text with ${VAR} board variables (os.id, os.version, board, ...)."),
        Setting("source", .path, "Host file to copy (instead of template)."),
        Setting("mode", .string, default: .string("0644"), "Octal permission bits."),
    ]

    /// The whole table, in the order `board show` prints it.
    public static let all: [Setting] = [
        Setting("inherit", .string, "Parent board id (boards/<id>.toml); settings not given here come from it."),
        Setting("abstract", .bool, default: .bool(false), "An abstract board only serves as a parent: it is not listed as buildable."),
        Setting("name", .string, required: true, "Human-readable board name."),
        Setting("description", .string, default: .string(""), "One-line description."),
        Setting("arch", .choice(arches), required: true, "CPU architecture of the target."),

        Setting("os.id", .string, default: .string("osbuild"), "Lower-case OS id: os-release ID, artifact names <os-id>_<board>-<version>.<ext>."),
        Setting("os.name", .string, default: .string("osbuild OS"), "os-release NAME."),
        Setting("os.version", .string, required: true, "major.minor with an optional suffix (-rc1, .dev0) or balena-style +revN."),
        Setting("os.variant", .string, default: .string(""), "os-release VARIANT."),
        Setting("os.variant-id", .string, default: .string(""), "os-release VARIANT_ID."),
        Setting("os.deployment", .choice(["development", "production"]), default: .string("development"), "machine-info DEPLOYMENT; production refuses development signing keys."),
        Setting("os.chassis", .string, default: .string("embedded"), "machine-info CHASSIS."),
        Setting("os.home-url", .string, default: .string(""), "os-release HOME_URL."),
        Setting("os.cpe-vendor", .string, default: .string("osbuild"), "Vendor part of os-release CPE_NAME."),

        Setting("kernel.package", .string, "Prebuilt kernel: a Debian package fetched with apt-get download (e.g. linux-image-amd64)."),
        Setting("kernel.source", .path, "Kernel source tree to configure and build."),
        Setting("kernel.defconfig", .string, "Base defconfig: a name under arch/<arch>/configs or a file path."),
        Setting("kernel.fragments", .pathList, merge: .append, "Config fragments merged over the defconfig, in order (parents' first)."),
        Setting("kernel.cross-compile", .string, default: .string(""), "CROSS_COMPILE prefix for the kernel build and Kconfig probes."),
        Setting("kernel.image", .string, "Kernel image name (bzImage, Image)."),
        Setting("kernel.cmdline", .string, default: .string(""), "Extra kernel command line."),

        Setting("rootfs.base", .stringList, merge: .append, "Base inputs in order: dir:PATH, tar:PATH, deb:PATH, apt:PACKAGE."),
        Setting("rootfs.overlays", .pathList, merge: .append, "Overlay directories applied after the project's overlay/."),
        Setting("rootfs.device-tables", .pathList, merge: .append, "Buildroot makedevs tables (name type mode uid gid major minor start inc count)."),
        Setting("rootfs.fs", .choice(["erofs", "squashfs"]), default: .string("erofs"), "Root filesystem image type."),
        Setting("rootfs.compression", .choice(compressions), default: .string("lz4hc"), "Compression of the root filesystem image."),
        Setting("rootfs.compression-level", .integer, "Compressor level (default: the compressor's own)."),
        Setting("rootfs.remove", .stringList, merge: .append, "Paths or globs removed after assembly (e.g. /etc/init.d)."),
        Setting("rootfs.mkdir", .stringList, merge: .append, "Directories created after assembly."),
        Setting("rootfs.symlinks", .stringMap, "Symlinks created after assembly: path = target."),
        Setting("rootfs.file", .records(fields: fileFields), merge: .append, "Files written after assembly ([[rootfs.file]])."),
        Setting("rootfs.override", .records(fields: overrideFields), merge: .append, "Per-path ownership/mode overrides ([[rootfs.override]])."),
        Setting("rootfs.unsafe-members", .choice(["error", "warn-skip"]), default: .string("error"), "Archive members escaping the tree: fail, or warn and skip."),
        Setting("rootfs.variables", .stringMap, "Extra ${VAR} template variables."),

        Setting("initramfs.modules", .stringList, merge: .append, "Kernel modules for the initramfs (dependencies are added)."),
        Setting("initramfs.firmware", .stringList, merge: .append, "Firmware files for the initramfs (authoritative list)."),
        Setting("initramfs.compression", .choice(["gzip", "xz", "zstd", "lz4", "none"]), default: .string("zstd"), "Initramfs compression."),

        Setting("bootloader.kind", .choice(["grub", "uboot", "tryboot", "custom", "none"]), default: .string("none"), "Boot mechanism and A/B switching backend."),
        Setting("bootloader.backend", .path, "Custom boards only (required with kind = 'custom', refused otherwise): RAUC custom bootloader backend, an executable implementing get-primary/set-primary/get-state/set-state/get-current; installed as /usr/lib/osbuild/custom-backend (0755) and named in /etc/rauc/system.conf."),
        Setting("bootloader.tries", .integer, default: .integer(3), "Boot attempts of a new slot before falling back."),
        Setting("bootloader.firmware-dir", .path, "Raspberry Pi: directory with the firmware blobs (start4.elf, fixup4.dat, ...); default: $OSBUILD_RPI_FIRMWARE."),
        Setting("bootloader.firmware", .stringList, "Raspberry Pi: firmware files copied from firmware-dir into the boot partition (all required)."),
        Setting("bootloader.dtbs", .stringList, "Device trees copied into the boot partition: globs under the kernel's dtbs directory (e.g. broadcom/bcm2711-*.dtb)."),
        Setting("bootloader.config", .stringMap, "Raspberry Pi: extra config.txt settings (key = value), after the generated ones."),

        Setting("disk.table", .choice(["gpt", "mbr", "hybrid"]), default: .string("gpt"), "Partition table type."),
        Setting("disk.size", .size, "Disk image size; default: computed from the partitions."),
        Setting("disk.alignment", .size, default: .string("1M"), "Default partition alignment."),
        Setting("disk.id", .string, "Disk GUID (GPT) or 32-bit MBR signature (0x...)."),
        Setting("disk.partition", .records(fields: partitionFields), "Partitions in table order ([[disk.partition]])."),
        Setting("disk.raw", .records(fields: rawFields), "Raw blobs at fixed offsets outside partitions ([[disk.raw]])."),
        Setting("disk.formats", .stringList, default: .list(["img", "bmap"]), "Outputs: img, bmap, img.xz, zip, qcow2, vmdk, vdi, vhdx, ova."),
        Setting("disk.vm-cpus", .integer, default: .integer(2), "Virtual CPUs declared in the .ova appliance."),
        Setting("disk.vm-memory", .size, default: .string("1G"), "Memory declared in the .ova appliance."),

        Setting("bundle.compatible", .string, "RAUC compatible string; default <os-id>-<board>."),
        Setting("bundle.format", .choice(["plain", "verity"]), default: .string("verity"), "RAUC bundle format."),
        Setting("bundle.key", .path, "Signing key (PEM or PKCS#11 URI); default: generated development key."),
        Setting("bundle.cert", .path, "Signing certificate; default: generated development certificate."),
        Setting("bundle.intermediate", .pathList, "Intermediate certificates added to the signature."),
    ]

    public static func setting(_ key: String) -> Setting? { index[key] }

    static let index: [String: Setting] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })

    /// Section names (prefixes) that hold settings: "os", "kernel", ...
    static let sections: Set<String> = Set(all.compactMap { s in
        s.key.contains(".") ? String(s.key.split(separator: ".")[0]) : nil
    })
}
