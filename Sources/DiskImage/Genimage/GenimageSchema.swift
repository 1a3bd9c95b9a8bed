/// genimage's option tables (v16 plus the newer upstream options through v19), used to
/// reject unknown keys the way genimage does ("no such option").
public enum GenimageSchema {
    static let partition = ConfSchema(options: [
        "offset", "size", "align", "image", "partition-type", "partition-type-uuid", "partition-uuid",
        "bootable", "read-only", "hidden", "no-automount", "in-partition-table", "autoresize",
        "fill", "sparse", "forced-primary", "imageoffset",
    ], lists: ["holes"])

    static let hdimage = ConfSchema(options: [
        "partition-table-type", "align", "disk-signature", "disk-uuid", "gpt-location", "gpt-no-backup",
        "extended-partition", "fill", "partition-table", "gpt",
    ])

    static let vfatFile = ConfSchema(options: ["image"])
    static let vfat = ConfSchema(options: ["label", "extraargs"], lists: ["files"],
                                 sections: ["file": (true, vfatFile)])
    static let ext = ConfSchema(options: [
        "use-mke2fs", "mke2fs-conf", "extraargs", "features", "label", "fs-timestamp", "root-owner", "usage-type",
    ])
    static let squashfs = ConfSchema(options: ["compression", "block-size", "extraargs"])
    static let file = ConfSchema(options: ["name", "copy"], lists: ["holes"])
    static let raucFile = ConfSchema(options: ["image", "offset"])
    static let rauc = ConfSchema(options: ["manifest", "cert", "key", "keyring", "extraargs"], lists: ["files", "intermediate"],
                                 sections: ["file": (true, raucFile)])

    /// Types osbuild builds, and the others genimage knows (parsed, rejected at build time).
    static let implemented: [String: ConfSchema] = [
        "hdimage": hdimage, "vfat": vfat, "ext2": ext, "ext3": ext, "ext4": ext, "squashfs": squashfs,
        "file": file, "rauc": rauc,
    ]
    static let otherTypes = [
        "android-sparse", "cpio", "cramfs", "custom", "erofs", "f2fs", "fip", "fit", "flash", "iso", "jffs2",
        "qemu", "tar", "ubi", "ubifs", "mdraid", "btrfs", "verity", "verity-sig",
    ]
    public static var imageTypes: [String] { Array(implemented.keys) + otherTypes }

    static var image: ConfSchema {
        var sections: [String: (titled: Bool, schema: ConfSchema?)] = ["partition": (true, partition)]
        for (k, v) in implemented { sections[k] = (false, v) }
        for k in otherTypes { sections[k] = (false, nil) }
        return ConfSchema(options: ["name", "size", "mountpoint", "srcpath", "empty", "temporary", "exec-pre", "exec-post", "flashtype"],
                          sections: sections, functions: ["include"])
    }

    static let toolOptions: Set<String> = [
        "cpio", "dd", "debugfs", "e2fsck", "genext2fs", "genisoimage", "mcopy", "mdel", "mkcramfs", "mkdosfs",
        "mke2fs", "mkfs.btrfs", "mkfs.erofs", "mkfs.f2fs", "mkfs.jffs2", "mkfs.ubifs", "mkimage", "mksquashfs",
        "mmd", "qemu-img", "rauc", "sload.f2fs", "tar", "tune2fs", "ubinize", "fiptool", "veritysetup", "openssl",
        "mdadm", "mkfs.vfat",
    ]

    static var config: ConfSchema {
        ConfSchema(options: toolOptions.union(["rootpath", "tmppath", "inputpath", "outputpath", "includepath", "configdump", "loglevel", "config"]),
                   sections: ["gpt-shortcuts": (false, nil)])
    }

    public static var root: ConfSchema {
        ConfSchema(sections: [
            "image": (true, image),
            "flash": (true, ConfSchema(options: ["pebsize", "lebsize", "numpebs", "minimum-io-unit-size", "vid-header-offset", "sub-page-size"])),
            "config": (false, config),
        ], functions: ["include"])
    }
}
