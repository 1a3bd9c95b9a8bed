import Basics
import DiskImage
import FSTree
import Foundation
import Testing
import TestSupport

let MiB: UInt64 = 1 << 20

/// Runs a tool and returns stdout (fails with its stderr).
@discardableResult
func sh(_ args: [String], env: [String: String] = [:], check: Bool = true) throws -> Subprocess.Result {
    try Subprocess.run(args, environment: env, check: check)
}

/// `sfdisk --json` of an image, decoded.
struct SfdiskTable: Decodable {
    struct Root: Decodable { var partitiontable: SfdiskTable }
    struct Part: Decodable {
        var node: String
        var start: UInt64
        var size: UInt64
        var type: String
        var uuid: String?
        var name: String?
        var attrs: String?
        var bootable: Bool?
    }
    var label: String
    var id: String
    var firstlba: UInt64?
    var lastlba: UInt64?
    var partitions: [Part]?

    static func read(_ image: String) throws -> SfdiskTable {
        let r = try sh(["sfdisk", "--json", image])
        return try JSONDecoder().decode(Root.self, from: Data(r.stdout)).partitiontable
    }
}

/// Copies `size` bytes at `offset` of `image` into a new file (for fsck of one partition).
func extract(_ image: String, offset: UInt64, size: UInt64, to out: String) throws {
    try sh(["dd", "if=\(image)", "of=\(out)", "bs=512", "skip=\(offset / 512)", "count=\(size / 512)", "conv=sparse", "status=none"])
}

/// A small generated tree: nested dirs, a long name, an empty file, a 200 KiB file.
func sampleTree(_ tmp: TempDir, name: String = "src") throws -> String {
    let root = tmp.sub(name)
    try tmp.write("\(name)/cmdline.txt", "console=ttyS0 root=PARTUUID=11111111-2222-4333-8444-555555555555\n")
    try tmp.write("\(name)/config.txt", "arm_64bit=1\nkernel=Image\n")
    try tmp.write("\(name)/overlays/README", "overlays live here\n")
    try tmp.write("\(name)/overlays/a-rather-long-overlay-file-name.dtbo", String(repeating: "d", count: 3000))
    try tmp.write("\(name)/empty", "")
    try tmp.write("\(name)/EFI/BOOT/bootx64.efi", String(repeating: "MZ-efi-", count: 30000))
    try sh(["find", root, "-exec", "touch", "-h", "-d", "@1700000000", "{}", "+"])
    return root
}

func fileSHA(_ path: String) throws -> String { try SHA256.hexOfFile(at: path) }
