import Basics
import Boards
import DiskImage
import Foundation
import StageRunner

/// The flashable disk image from `[[disk.partition]]` / `[[disk.raw]]`, plus the formats
/// in `disk.formats` (bmap, img.xz, zip, qcow2, ...). Its dependencies are exactly the
/// stages its partitions reference as `stage:NAME/...`.
enum DiskStage {
    static let kind = StageKind(
        name: "disk", summary: "partitioned disk image (+ .bmap and conversions)",
        applies: { !$0.records("disk.partition").isEmpty },
        make: { ctx in
            let b = ctx.board
            let deps = referencedStages(b)
            var paths: [String] = []
            forEachSource(b) { src in
                if !src.hasPrefix("stage:") { paths.append(b.resolvePath(src)) }
            }
            let inputs = StageInputs(paths: paths, keys: ctx.keys(["disk.*", "os.id", "os.version", "bootloader.kind"]),
                                     tools: ["mke2fs": ctx.toolVersion("mke2fs"), "mkfs.fat": ctx.toolVersion("mkfs.fat")],
                                     extra: ["SOURCE_DATE_EPOCH": String(ctx.epoch)])
            let epoch = ctx.epoch
            return Stage(name: "disk", summary: "disk image \(b.artifactName("img"))", dependencies: deps, inputs: inputs) { sctx in
                let layout = try layout(for: b, upstream: { try sctx.input($0) })
                let img = sctx.outputDir + "/" + b.artifactName("img")
                let r = try DiskImageBuilder.build(layout, to: img, options: .init(workDirectory: sctx.scratchDir, epoch: epoch))
                sctx.log.line("disk: \(r.bytesWritten) bytes written")
                for f in b.list("disk.formats") where f != "img" {
                    let out = sctx.outputDir + "/" + b.artifactName(f)
                    switch f {
                    case "bmap": try BmapWriter.write(image: img, to: out)
                    case "img.xz": try ImageConversion.xz(img, to: out)
                    case "zip": try ImageConversion.zip(img, to: out, mtime: epoch)
                    case "ova":
                        let o = OVA.Options(name: String(b.artifactName("img").dropLast(4)),
                                            cpus: Int(b.integer("disk.vm-cpus") ?? 2),
                                            memoryMiB: Int((b.integer("disk.vm-memory") ?? 1 << 30) >> 20),
                                            efi: b.string("bootloader.kind") == "grub", arch: b.arch, mtime: epoch)
                        try OVA.write(image: img, to: out, scratch: sctx.scratchDir + "/ova", options: o)
                    default:
                        guard let v = ImageConversion.VirtualFormat(rawValue: f) else {
                            throw MessageError("\(b.file): disk.formats has unknown format '\(f)' (img, bmap, img.xz, zip, qcow2, vmdk, vdi, vhdx, ova)", exitCode: ExitStatus.usage)
                        }
                        try ImageConversion.virtualDisk(img, to: out, format: v)
                    }
                    sctx.log.line("wrote \(out)")
                }
            }
        })

    /// Every source named by the layout (partition content, fs files, raw blobs).
    static func forEachSource(_ b: Board, _ body: (String) -> Void) {
        for p in b.records("disk.partition") {
            if let c = p["content"]?.string {
                if c.hasPrefix("file:") { body(String(c.dropFirst(5))) } else if c.hasPrefix("stage:") { body(c) }
            }
            for f in p["files"]?.list ?? [] { body(splitMapping(f).source) }
        }
        for r in b.records("disk.raw") { if let f = r["file"]?.string { body(f) } }
    }

    static func referencedStages(_ b: Board) -> [String] {
        var out: [String] = []
        forEachSource(b) { src in
            guard src.hasPrefix("stage:") else { return }
            let name = String(src.dropFirst(6).prefix(while: { $0 != "/" && $0 != ":" }))
            if !out.contains(name) { out.append(name) }
        }
        return out
    }

    /// "src:dst" (dst defaults to the source's file name). `stage:NAME/...` sources keep their colon.
    static func splitMapping(_ text: String) -> (source: String, destination: String) {
        let body = text.hasPrefix("stage:") ? String(text.dropFirst(6)) : text
        if let i = body.lastIndex(of: ":") {
            let src = String(body[..<i])
            return ((text.hasPrefix("stage:") ? "stage:" : "") + src, String(body[body.index(after: i)...]))
        }
        return (text, "/" + FileSystem.basename(body))
    }

    static func layout(for b: Board, upstream: (String) throws -> String) throws -> DiskLayout {
        func resolve(_ src: String) throws -> String {
            guard src.hasPrefix("stage:") else { return b.resolvePath(src) }
            let rest = src.dropFirst(6)
            let name = String(rest.prefix(while: { $0 != "/" }))
            let sub = rest.dropFirst(name.count)
            return try upstream(name) + sub
        }
        func bad(_ i: Int, _ msg: String) -> MessageError {
            MessageError("\(b.file): disk.partition[\(i)]: \(msg)", exitCode: ExitStatus.usage)
        }
        let table = DiskLayout.TableType(rawValue: b.string("disk.table") ?? "gpt") ?? .gpt
        var diskGUID: String?
        var signature: UInt32 = 0
        if let id = b.string("disk.id") {
            if id.hasPrefix("0x") {
                guard let v = UInt32(id.dropFirst(2), radix: 16) else { throw MessageError("\(b.file): disk.id '\(id)' is not a 32-bit hex MBR signature", exitCode: ExitStatus.usage) }
                signature = v
            } else {
                diskGUID = id
            }
        }
        let recs = b.records("disk.partition")
        var parts: [Partition] = []
        for (i, p) in recs.enumerated() {
            let name = p["name"]?.string ?? "part\(i)"
            let typeText = p["type"]?.string ?? "linux"
            guard let type = PartitionType.parse(typeText) else { throw bad(i, "type '\(typeText)' is not a GUID, an MBR id or a known name") }
            var content = PartitionContent.empty
            let c = p["content"]?.string ?? "empty"
            if c == "empty" {
                content = .empty
            } else if c.hasPrefix("file:") || c.hasPrefix("stage:") {
                content = .file(path: try resolve(c.hasPrefix("file:") ? String(c.dropFirst(5)) : c))
            } else if c == "fs" {
                let fsName = p["fs"]?.string ?? "none"
                guard let kind = FilesystemSpec.Kind(rawValue: fsName) else { throw bad(i, "content = \"fs\" needs fs = \"vfat\" or \"ext4\" (got \"\(fsName)\")") }
                let files = try (p["files"]?.list ?? []).map { m -> (source: String, destination: String) in
                    let (s, d) = splitMapping(m)
                    return (try resolve(s), d)
                }
                content = .filesystem(FilesystemSpec(kind: kind, source: files.isEmpty ? .empty : .files(files), label: p["label"]?.string))
            } else {
                throw bad(i, "content '\(c)' is not empty, file:PATH, stage:NAME/PATH or fs")
            }
            let size: Partition.Size
            if let s = p["size"]?.integer {
                size = .bytes(UInt64(s))
            } else if i == recs.count - 1, b.integer("disk.size") != nil, case .empty = content {
                size = .fill
            } else if i == recs.count - 1, b.integer("disk.size") != nil, case .filesystem = content {
                size = .fill
            } else {
                size = .content
            }
            let hybrid = table == .hybrid && (p["hybrid"]?.bool ?? false)
            parts.append(Partition(
                name: name, offset: p["offset"]?.integer.map { UInt64($0) }, size: size, alignment: p["align"]?.integer.map { UInt64($0) },
                type: type, hybridMBRType: hybrid ? type : nil, uuid: p["uuid"]?.string,
                bootable: p["bootable"]?.bool ?? false, readOnly: p["read-only"]?.bool ?? false, hidden: p["hidden"]?.bool ?? false,
                content: content))
        }
        var raws: [RawWrite] = []
        for (i, r) in b.records("disk.raw").enumerated() {
            guard let f = r["file"]?.string, let off = r["offset"]?.integer else { continue }
            raws.append(RawWrite(name: "raw\(i)", offset: UInt64(off), source: .file(try resolve(f))))
        }
        // MBR with more than four partitions: slot 4 is the extended partition (as
        // genimage does; BoardPartitions numbers the logical ones 5, 6, ... accordingly).
        return DiskLayout(size: b.integer("disk.size").map { UInt64($0) }, table: table,
                          alignment: UInt64(b.integer("disk.alignment") ?? 1 << 20), diskGUID: diskGUID, mbrSignature: signature,
                          extendedPartition: table == .mbr ? .automatic : .none, partitions: parts, rawWrites: raws)
    }
}
