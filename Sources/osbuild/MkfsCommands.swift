import ArgumentParser
import Basics
import Codecs
import FSTree
import Rootfs
import SquashFS

/// `osbuild mkfs <type>`: build a filesystem image from a directory or an archive.
struct Mkfs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mkfs",
        abstract: "Build a filesystem image (squashfs, erofs) from a directory or an archive.",
        subcommands: [Squashfs.self, Erofs.self]
    )

    struct Squashfs: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "squashfs",
            abstract: "Build a SquashFS 4.0 image from a directory or an archive.",
            discussion: """
            SRC is a directory or an archive (tar, tar.gz, tar.xz, tar.zst, tar.bz2, cpio, .deb). \
            Owners, modes, times, devices and xattrs are taken from SRC; with --all-root every \
            entry is owned by 0:0. SOURCE_DATE_EPOCH, when set, clamps newer mtimes and is the \
            superblock time; otherwise the superblock time is the newest mtime in SRC, so the \
            same input always gives the same bytes. OUT is written under a temporary name and \
            renamed when complete, so a failed or killed run never leaves a file there; add --sync \
            to also survive a power cut right after (board builds always sync their images).
            """
        )

        @Argument(help: "Source directory or archive.")
        var src: String

        @Argument(help: "Output image path (written to a temporary name, renamed when complete).")
        var out: String

        @Option(name: .customLong("comp"), help: "Compressor: gzip, xz, lz4, lz4hc, zstd.")
        var comp: String = "gzip"

        @Option(help: """
            Compression level, exactly the library's level (gzip 1-9, xz preset 0-9, lz4hc 1-12, zstd 1-22). \
            Defaults: gzip 9, lz4hc 12, xz preset 5 with match-finder depth 8, zstd level 14 with target length 16 (about 15 % and 18 % less \
            CPU than mksquashfs's xz 6 / zstd 15 for 0.6 % / 0.7 % larger data); --level 6 (xz) or \
            --level 15 (zstd) reproduces mksquashfs.
            """)
        var level: Int?

        @Option(name: .customLong("block-size"), help: "Data block size, power of two 4K..1M (e.g. 128K, 1M).")
        var blockSize: String = "128K"

        @Flag(name: .customLong("all-root"), help: "Make every entry owned by root (0:0).")
        var allRoot = false

        @Flag(name: .customLong("no-fragments"), help: "Do not pack small files into fragment blocks.")
        var noFragments = false

        @Flag(name: .customLong("no-tail-packing"), help: "Keep the last partial block of large files as a short block (mksquashfs default).")
        var noTailPacking = false

        @Flag(name: .customLong("no-dedup"), help: "Do not detect duplicate files.")
        var noDedup = false

        @Flag(name: .customLong("no-sparse"), help: "Store all-zero blocks instead of holes.")
        var noSparse = false

        @Flag(name: .customLong("no-exports"), help: "Do not write the NFS export table.")
        var noExports = false

        @Option(name: .customLong("xz-bcj"), help: "xz: comma-separated BCJ filters to try (x86, arm, armthumb, arm64, powerpc, ia64, sparc).")
        var xzBCJ: String?

        @Option(name: .customLong("xz-dict-size"), help: "xz: dictionary size (2^n or 3*2^n, at most the block size).")
        var xzDictSize: String?

        @Option(help: "Compression threads (default: one per CPU).")
        var threads: Int = 0

        @Flag(help: "Flush the image to disk (fsync) before renaming it into place; by default, as with mksquashfs, the page cache writes it back later.")
        var sync = false

        @Flag(name: .shortAndLong, help: "Print the time of each phase (source import, data, metadata, commit).")
        var verbose = false

        func run() throws {
            try runReportingErrors {
                guard let bsize = ByteCount.parse(blockSize), bsize <= 1 << 30 else {
                    throw MessageError("--block-size '\(blockSize)' is not a size (e.g. 128K)", exitCode: ExitStatus.usage)
                }
                var compression = try Compression.parse(comp, level: level)
                if xzBCJ != nil || xzDictSize != nil {
                    guard case .xz(let preset, _, _, let depth) = compression else {
                        throw MessageError("--xz-bcj and --xz-dict-size need --comp xz (got '\(comp)')", exitCode: ExitStatus.usage)
                    }
                    var filters: [XZFilter] = []
                    for name in (xzBCJ ?? "").split(separator: ",") {
                        guard let f = XZFilter(rawValue: String(name)) else {
                            throw MessageError("unknown xz BCJ filter '\(name)' (choose from \(XZFilter.allCases.map(\.rawValue).joined(separator: ", ")))", exitCode: ExitStatus.usage)
                        }
                        filters.append(f)
                    }
                    var dict: Int?
                    if let xzDictSize {
                        guard let d = ByteCount.parse(xzDictSize) else {
                            throw MessageError("--xz-dict-size '\(xzDictSize)' is not a size", exitCode: ExitStatus.usage)
                        }
                        dict = Int(d)
                    }
                    compression = .xz(preset: preset, bcj: filters, dictSize: dict, depth: depth)
                }
                let epoch = try BuildClock.sourceDateEpoch()
                let options = SquashFSOptions(
                    compression: compression, blockSize: Int(bsize),
                    fragments: !noFragments, tailPacking: !noTailPacking, deduplicate: !noDedup,
                    sparse: !noSparse, exportTable: !noExports,
                    mkfsTime: epoch.map { UInt32(clamping: $0) }, threads: threads)
                try options.validate()
                let importStart = PhaseTimes.now()
                let source = try ImageSource(src, allRoot: allRoot, scratchParent: FileSystem.dirname(out))
                let importSeconds = PhaseTimes.now() - importStart
                var tree = source.tree
                if let epoch { tree.clampMtimes(to: epoch) }
                let console = Console.shared
                var shown = -1
                let stats = try SquashFSWriter(options).write(tree: tree, to: out, durability: sync ? .synced : .renameOnly) { done, total in
                    // Redraw only when the percentage changes (the callback runs per file).
                    let pct = total == 0 ? 100 : Int(done * 100 / total)
                    if pct != shown {
                        shown = pct
                        console.progress("squashfs", done: done, total: total)
                    }
                }
                console.clearProgress()
                withExtendedLifetime(source) {}
                for d in stats.droppedXAttrs.prefix(10) {
                    console.error("warning: xattr not representable in SquashFS, left out: \(d)")
                }
                if stats.droppedXAttrs.count > 10 {
                    console.error("warning: \(stats.droppedXAttrs.count - 10) more xattrs left out")
                }
                console.line("\(out): \(stats)")
                if verbose {
                    var phases = PhaseTimes()
                    phases.add("import", importSeconds)
                    phases.append(stats.phases)
                    console.line("phases: \(phases)")
                }
            }
        }
    }
}
