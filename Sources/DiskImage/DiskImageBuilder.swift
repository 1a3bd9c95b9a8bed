import Basics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Builds a disk image file from a `DiskLayout`: validates, creates the filesystems,
/// writes the partition table (libfdisk), copies contents sparsely and writes raw blobs.
/// The output appears at `path` only when everything succeeded (AtomicOutputFile).
public enum DiskImageBuilder {
    public struct Options: Sendable {
        /// Directory for intermediate filesystem images; nil = next to the output.
        public var workDirectory: String?
        /// Timestamp for created filesystems when their spec has none (nil = SOURCE_DATE_EPOCH or 0).
        public var epoch: Int64?
        public init(workDirectory: String? = nil, epoch: Int64? = nil) {
            self.workDirectory = workDirectory
            self.epoch = epoch
        }
    }

    public struct Result: Sendable {
        public var layout: ResolvedLayout
        /// Bytes actually written (data, not holes).
        public var bytesWritten: UInt64
    }

    @discardableResult
    public static func build(_ layout: DiskLayout, to path: String, options: Options = .init()) throws -> Result {
        let resolved = try layout.resolve()
        let epoch = try options.epoch ?? BuildClock.sourceDateEpoch() ?? 0
        let workParent = options.workDirectory ?? FileSystem.dirname(FileSystem.absolute(path))
        try FileSystem.makeDirectories(workParent)
        let work = try makeTempDirectory(in: workParent, label: FileSystem.basename(path))
        defer { try? FileSystem.removeTree(work) }

        // Filesystems first (independent: built in parallel on both cores).
        var fsJobs: [(entry: Int, spec: FilesystemSpec, size: UInt64, file: String)] = []
        for (k, e) in resolved.entries.enumerated() {
            if case .filesystem(let spec) = layout.partitions[e.index].content {
                fsJobs.append((k, spec, spec.size ?? e.size, work + "/fs-\(k).img"))
            }
        }
        let jobs = fsJobs
        try Parallel.run(jobs.count) { i in
            let j = jobs[i]
            try FilesystemMaker.make(j.spec, size: j.size, at: j.file, epoch: j.spec.timestamp ?? epoch,
                                     work: work + "/stage-\(j.entry)", partition: resolved.entries[j.entry].name)
        }

        return try AtomicOutputFile.write(path) { out in
            guard ftruncate(out.fd, off_t(resolved.size)) == 0 else { throw SystemError("truncate", path: out.tempPath, errno: errno) }
            try PartitionTableWriter.write(resolved, to: out.tempPath)
            var written: UInt64 = 0
            for (k, e) in resolved.entries.enumerated() {
                switch layout.partitions[e.index].content {
                case .empty: break
                case .file(let src, let skip):
                    written += try SparseCopy.copy(source: src, sourceOffset: skip, length: e.size, to: out.fd, targetPath: path, at: e.offset)
                case .filesystem:
                    guard let j = fsJobs.first(where: { $0.entry == k }) else { continue }
                    written += try SparseCopy.copy(source: j.file, to: out.fd, targetPath: path, at: e.offset)
                }
            }
            // Raw blobs last: libfdisk rewrites the MBR sector, blobs may carry boot code in bytes 0..<440.
            for r in layout.rawWrites {
                switch r.source {
                case .file(let src):
                    written += try SparseCopy.copy(source: src, to: out.fd, targetPath: path, at: r.offset, skip: r.holes)
                case .bytes(let b):
                    written += try b.withUnsafeBytes {
                        try SparseCopy.writeNonZero($0, fd: out.fd, targetPath: path, at: r.offset, skip: r.holes)
                    }
                }
            }
            return Result(layout: resolved, bytesWritten: written)
        }
    }

    static func makeTempDirectory(in dir: String, label: String) throws -> String {
        var template = Array((dir + "/.osbuild-tmp-\(label)-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw SystemError("mkdtemp", path: dir, errno: errno) }
        return String(cString: p)
    }
}
