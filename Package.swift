// swift-tools-version: 6.0
// Layering (low to high): C shims -> Basics -> FSTree/Codecs/Boards/StageRunner/Kconfig
// -> Rootfs/SquashFS/EROFS/DiskImage -> Bundle -> OSBuildKit -> osbuild (thin executable).
// Low modules never import high ones.
import PackageDescription

func systemLibrary(_ name: String, _ pkg: String, _ apt: String) -> Target {
    .systemLibrary(name: name, pkgConfig: pkg, providers: [.apt([apt])])
}

let package = Package(
    name: "osbuild",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "osbuild", targets: ["osbuild"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        systemLibrary("CArchive", "libarchive", "libarchive-dev"),
        systemLibrary("CBlkid", "blkid", "libblkid-dev"),
        systemLibrary("CFdisk", "fdisk", "libfdisk-dev"),
        systemLibrary("CLzma", "liblzma", "liblzma-dev"),
        systemLibrary("COpenSSL", "openssl", "libssl-dev"),
        systemLibrary("CZlib", "zlib", "zlib1g-dev"),
        systemLibrary("CZstd", "libzstd", "libzstd-dev"),
        systemLibrary("CLZ4", "liblz4", "liblz4-dev"),
        // Linux headers Glibc's module map leaves out (xattr, flock, sysmacros).
        .systemLibrary(name: "CLinux"),

        .target(name: "Basics", dependencies: ["COpenSSL", "CLinux"]),
        .target(name: "FSTree", dependencies: ["Basics", "CLinux"]),
        .target(name: "Codecs", dependencies: ["Basics", "CZlib", "CLzma", "CZstd", "CLZ4"]),
        .target(name: "StageRunner", dependencies: ["Basics"]),
        .target(name: "Boards", dependencies: ["Basics"]),
        .target(name: "Kconfig", dependencies: ["Basics"]),
        .target(name: "Rootfs", dependencies: ["Basics", "FSTree", "Codecs", "CArchive"]),
        .target(name: "SquashFS", dependencies: ["Basics", "FSTree", "Codecs"]),
        .target(name: "EROFS", dependencies: ["Basics", "FSTree", "Codecs"]),
        .target(name: "DiskImage", dependencies: ["Basics", "FSTree", "Codecs", "CFdisk", "CBlkid", "CArchive", "CZlib"]),
        .target(name: "Bundle", dependencies: ["Basics", "FSTree", "Codecs", "SquashFS", "COpenSSL"]),
        // Bootloader file formats: GRUB config/environment, U-Boot script and environment,
        // Raspberry Pi config/tryboot files. Pure formats; the stages live in OSBuildKit.
        .target(name: "Bootloader", dependencies: ["Basics", "Codecs", "CZlib"]),
        .target(
            name: "OSBuildKit",
            dependencies: [
                "Basics", "FSTree", "Codecs", "StageRunner", "Boards", "Kconfig",
                "Rootfs", "SquashFS", "EROFS", "DiskImage", "Bundle", "Bootloader",
            ]
        ),
        .executableTarget(
            name: "osbuild",
            // Every module the commands use is listed directly (not only through
            // OSBuildKit) so an incremental build recompiles the CLI when they change.
            dependencies: [
                "OSBuildKit", "Basics", "FSTree", "Codecs", "StageRunner", "Boards", "Kconfig",
                "Rootfs", "SquashFS", "EROFS", "DiskImage", "Bundle", "Bootloader",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .target(name: "TestSupport", dependencies: ["Basics", "FSTree"], path: "Tests/TestSupport"),
        .testTarget(name: "BasicsTests", dependencies: ["Basics", "TestSupport"]),
        .testTarget(name: "FSTreeTests", dependencies: ["FSTree", "TestSupport"]),
        .testTarget(name: "CodecsTests", dependencies: ["Codecs", "TestSupport"]),
        .testTarget(name: "StageRunnerTests", dependencies: ["StageRunner", "TestSupport"]),
        .testTarget(name: "BoardsTests", dependencies: ["Boards", "TestSupport"]),
        .testTarget(name: "KconfigTests", dependencies: ["Kconfig", "TestSupport"]),
        .testTarget(name: "RootfsTests", dependencies: ["Rootfs", "TestSupport"]),
        .testTarget(name: "SquashFSTests", dependencies: ["SquashFS", "TestSupport"]),
        .testTarget(name: "EROFSTests", dependencies: ["EROFS", "TestSupport"]),
        .testTarget(name: "DiskImageTests", dependencies: ["DiskImage", "TestSupport"]),
        .testTarget(name: "BundleTests", dependencies: ["Bundle", "TestSupport"]),
        .testTarget(name: "BootloaderTests", dependencies: ["Bootloader", "TestSupport"]),
        .testTarget(name: "OSBuildKitTests", dependencies: ["OSBuildKit", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
