import ArgumentParser
import Basics
import EROFS
import FSTree
import Rootfs

/// `osbuild mkfs erofs SRC OUT`: a read-only EROFS image from a directory or an archive.
struct Erofs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "erofs",
        abstract: "Write an EROFS image (Linux 6.1 compatible) from a directory or an archive.",
        discussion: """
            SRC is a directory or an archive (tar, tar.gz, tar.xz, tar.zst, tar.bz2, cpio, .deb).
            Defaults: --comp lz4hc --level 9 --cluster-size 64k. Build time and the timestamp of
            compact inodes come from SOURCE_DATE_EPOCH when set (later mtimes are clamped to it).
            Without --uuid the UUID is derived from the image metadata, so equal inputs give
            byte-identical images. OUT is written under a temporary name and renamed when
            complete, so a failed or killed run never leaves a file there; add --sync to also
            survive a power cut right after (board builds always sync their images).
            """)

    @Argument(help: "Source directory or archive.") var source: String
    @Argument(help: "Output image file.") var output: String
    @Option(help: "Compression: none, lz4, lz4hc or lzma.") var comp: String = "lz4hc"
    @Option(help: "Compression level (lz4hc 1-12, default 9; lzma 0-9, default 6).") var level: Int?
    @Option(name: .customLong("cluster-size"), help: "Maximum physical cluster size (4k..1M, multiple of 4k).") var clusterSize: String = "64k"
    @Option(help: "Filesystem UUID (default: derived from the metadata).") var uuid: String?
    @Option(help: "Volume label (at most 16 bytes).") var label: String = ""
    @Flag(name: .customLong("all-root"), help: "Make every entry owned by 0:0.") var allRoot = false
    @Flag(name: .customLong("no-inline"), help: "Never store data tails inline after inodes.") var noInline = false
    @Flag(name: .customLong("no-ztailpacking"), help: "Do not inline the compressed tail of files (needed before Linux 5.17).") var noZtail = false
    @Flag(help: "Flush the image to disk (fsync) before renaming it into place; by default, as with mkfs.erofs, the page cache writes it back later.") var sync = false
    @Option(help: .hidden) var threads: Int?
    @Flag(name: .shortAndLong, help: "Print the time of each phase (source import, plan, data, metadata, commit).") var verbose = false

    func run() throws {
        try runReportingErrors {
            var opts = EROFSOptions()
            switch comp {
            case "none": opts.compression = .none
            case "lz4": opts.compression = .lz4
            case "lz4hc": opts.compression = .lz4hc(level: level ?? 9)
            case "lzma": opts.compression = .lzma(level: level ?? 6)
            default: throw MessageError("--comp \(comp): expected none, lz4, lz4hc or lzma", exitCode: ExitStatus.usage)
            }
            guard let cs = ByteCount.parse(clusterSize) else {
                throw MessageError("--cluster-size \(clusterSize): not a size", exitCode: ExitStatus.usage)
            }
            opts.pclusterSize = Int(cs)
            if let uuid {
                guard let u = EROFSOptions.parseUUID(uuid) else {
                    throw MessageError("--uuid \(uuid): expected 32 hex digits (dashes optional)", exitCode: ExitStatus.usage)
                }
                opts.uuid = u
            }
            opts.label = label
            opts.inlineData = !noInline
            opts.ztailpacking = !noZtail
            if let threads { opts.threads = max(1, threads) }
            let importStart = PhaseTimes.now()
            let src = try ImageSource(source, allRoot: allRoot, scratchParent: FileSystem.dirname(output))
            let importSeconds = PhaseTimes.now() - importStart
            var tree = src.tree
            if let epoch = try BuildClock.sourceDateEpoch() {
                tree.clampMtimes(to: epoch)
                opts.buildTime = Timestamp(seconds: epoch)
            }
            let console = Console.shared
            let stats = try EROFSWriter(opts).write(tree: tree, to: output, durability: sync ? .synced : .renameOnly) { done, total in
                console.progress("erofs", done: done, total: total)
            }
            console.clearProgress()
            withExtendedLifetime(src) {}
            console.line("\(output): \(ByteCount.format(stats.imageBytes)) (\(stats.blocks) blocks), \(stats.inodes) inodes "
                + "(\(stats.compactInodes) compact), \(stats.compressedFiles)/\(stats.regularFiles) files compressed (\(opts.compression))")
            if verbose {
                var phases = PhaseTimes()
                phases.add("import", importSeconds)
                phases.append(stats.phases)
                console.line("phases: \(phases)")
            }
        }
    }
}
