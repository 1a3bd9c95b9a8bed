import Basics
import Boards
import Bundle
import Dispatch
import DiskImage
import Foundation

/// What `osbuild bundle install` needs besides the bundle and the image. With a board,
/// compatible, keyring, slots and bootloader come from it (as on the device built from
/// that board); `keyring` / `compatible` override.
public struct InstallOptions: Sendable {
    public var board: Board?
    /// The project's keys/ directory (development CA), used with `board`.
    public var keysDirectory: String?
    public var keyring: String?
    public var compatible: String?
    public var checkPurpose: String?
    public var checkTime: Bool
    public var reader: any PayloadImageReader

    public init(board: Board? = nil, keysDirectory: String? = nil, keyring: String? = nil, compatible: String? = nil,
                checkPurpose: String? = nil, checkTime: Bool = true, reader: any PayloadImageReader = defaultPayloadReader) {
        self.board = board
        self.keysDirectory = keysDirectory
        self.keyring = keyring
        self.compatible = compatible
        self.checkPurpose = checkPurpose
        self.checkTime = checkTime
        self.reader = reader
    }
}

public struct InstallReport: Sendable {
    public struct Written: Sendable {
        public var slotClass: String
        public var partition: String
        public var partitionSize: UInt64
        public var imageSize: UInt64
        /// Bytes actually written; the rest of the image were zero blocks left as holes.
        public var dataBytes: UInt64
        public var sha256: String
    }
    public var bundle: String
    public var compatible: String
    public var version: String?
    public var bootloader: String
    public var bootedSlot: String
    public var targetSlot: String
    public var slotSource: String
    public var images: [Written]
    /// What the bundle's hooks did, applied natively (OfflineHooks).
    public var hooks: [String]
    public var checks: [String]
}

/// RAUC's install, offline on a disk image file: verify the bundle (signature, payload,
/// compatible), pick the slot group the bootloader does not boot now, write each image
/// into its partition (streamed, sha256 checked while copying), then make that slot
/// primary. Every refusal happens before the first byte is written. The bootloader
/// environment changes only (a) to mark the target bad before writing when it was
/// marked good (RAUC does the same, so a half-written slot is never a fallback) and (b)
/// after all images are written, verified and fsync'd. The image never changes size.
public enum BundleInstaller {
    public static func install(bundle bundlePath: String, image imagePath: String, options: InstallOptions) throws -> InstallReport {
        let image = FileSystem.absolute(imagePath)
        let bundle = FileSystem.absolute(bundlePath)

        // 1. Trust and identity: keyring + compatible (board, or explicit).
        let board = options.board
        guard let expected = options.compatible ?? board?.compatible else {
            throw InstallError(.usage, "give --board BOARD or --compatible STRING (the device's RAUC compatible)")
        }
        var tempKeyring: String?
        defer { if let t = tempKeyring { unlink(t) } }
        let keyringPath: String
        if let k = options.keyring {
            keyringPath = k
        } else if let board {
            let pem = try RaucIntegration.keyring(for: board, keysDir: options.keysDirectory ?? FileSystem.dirname(FileSystem.dirname(board.file)) + "/keys")
            let t = NSTemporaryDirectory() + "/osbuild-keyring-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).pem"
            try FileSystem.writeAtomically(t, pem, mode: 0o600)
            tempKeyring = t
            keyringPath = t
        } else {
            throw InstallError(.usage, "give --board BOARD or --keyring PEM (the certificates the device trusts)")
        }
        let conf = try board.flatMap { try RaucIntegration.systemConf(for: $0) }
        let policy = KeyringPolicy(keyringPath: keyringPath, checkPurpose: options.checkPurpose ?? conf?.checkPurpose, checkTime: options.checkTime)

        // 2. The bundle: signature, payload digest or verity tree, manifest rules.
        let verified = try BundleReader.verify(bundle, options: BundleVerifyOptions(policy: policy, checkImages: false, reader: options.reader))
        let m = verified.manifest
        guard m.compatible == expected else {
            throw InstallError(.compatible, "\(bundle): bundle compatible '\(m.compatible)' does not match the system's '\(expected)'; the image is unchanged")
        }
        if let conf, conf.bundleFormats.contains("-" + verified.format.rawValue) {
            throw InstallError(.format, "\(bundle): the device refuses \(verified.format.rawValue) bundles (system.conf bundle-formats=\(conf.bundleFormats.joined(separator: " "))); the image is unchanged")
        }

        // 3. The image: partition table, slots, bootloader state.
        let st = try FileSystem.stat(image)
        guard st.isRegular else { throw InstallError(.image, "\(image): not a regular file (offline install writes disk image files)") }
        let report = try DiskInspector.inspect(image)
        guard report.table == "gpt" || (report.table == "dos" && board?.string("disk.table") == "mbr") else {
            throw InstallError(.image, "\(image): partition table is \(report.table ?? "missing"); offline install finds slots by GPT partition name (MBR images need --board)")
        }
        let fd = open(image, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: image, errno: errno) }
        defer { close(fd) }
        // One install at a time per image (a second one would pick the same target slot).
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw InstallError(.image, "\(image): locked by another process (another install running?)")
        }
        let opened = OpenImage(path: image, fd: fd, size: st.size, partitions: report.partitions)
        let slots = try board.map { try SlotMap.fromBoard($0) } ?? SlotMap.fromPartitionNames(report.partitions.compactMap(\.name), image: image)
        guard slots.bootnames.count == 2 else {
            throw InstallError(.slots, "\(slots.source): need two slot groups (A and B), found \(slots.bootnames.isEmpty ? "none" : slots.bootnames.joined(separator: ", "))")
        }
        let tries = board.map { Int($0.integer("bootloader.tries") ?? 3) }
        let backend = try BootStateBackends.open(kind: board?.string("bootloader.kind"), image: opened, tries: tries, board: board, slots: slots)
        let booted = try backend.bootSlot()
        guard slots.bootnames.contains(booted), let target = slots.bootnames.first(where: { $0 != booted }) else {
            throw InstallError(.slots, "\(backend.description) boots slot \(booted), which is not one of the slots \(slots.bootnames.joined(separator: ", ")) of \(slots.source)")
        }

        // 4. Plan every image before writing any: target partition exists, fits, in the file;
        // hooks are osbuild's own (applied natively after writing) or refused.
        let hooks = try OfflineHooks.plan(manifest: m, bundle: bundle, board: board, reader: options.reader)
        struct Job {
            var image: ManifestImage
            var filename: String
            var size: UInt64
            var sha256: String
            var partition: DiskReport.PartitionInfo
            var partitionName: String
        }
        var jobs: [Job] = []
        for img in m.images where img.variant == nil || !m.images.contains(where: { $0.slotClass == img.slotClass && $0.variant == nil }) {
            if img.variant != nil {
                throw InstallError(.slots, "\(bundle): [\(img.groupName)] is for variant '\(img.variant ?? "")'; offline install has no system variant (add a default [image.\(img.slotClass)])")
            }
            guard let filename = img.filename, let size = img.size, let sha = img.sha256 else {
                throw InstallError(.slots, "\(bundle): [\(img.groupName)] has no filename/size/sha256 to install")
            }
            guard let slot = slots.slot(class: img.slotClass, bootname: target) else {
                let classes = Array(Set(slots.slots.map(\.slotClass))).sorted().joined(separator: ", ")
                throw InstallError(.slots, "\(bundle): no target slot for [\(img.groupName)]: slot class '\(img.slotClass)' has no slot \(target) in \(slots.source) (classes: \(classes))")
            }
            guard let p = opened.partition(for: slot) else {
                throw InstallError(.slots, "\(image): slot \(img.slotClass) \(target) is partition '\(slot.partition)'\(slot.number.map { " (#\($0))" } ?? ""), which the partition table does not have")
            }
            guard size <= p.size else {
                throw InstallError(.size, "\(bundle): image '\(filename)' [\(img.groupName)] is \(size) bytes, larger than partition \(slot.partition) of \(image) (\(p.size) bytes)")
            }
            guard p.start + p.size <= opened.size else {
                throw InstallError(.image, "\(image): partition \(slot.partition) ends at byte \(p.start + p.size), beyond the image's \(opened.size) bytes")
            }
            jobs.append(Job(image: img, filename: filename, size: size, sha256: sha.lowercased(), partition: p, partitionName: slot.partition))
        }
        guard !jobs.isEmpty else { throw InstallError(.slots, "\(bundle): the manifest has no images") }
        if Set(jobs.map(\.partitionName)).count != jobs.count {
            throw InstallError(.slots, "\(bundle): two images target the same partition")
        }

        // 5. Keep the bootloader off the slot while it is overwritten (only if it was good).
        if try backend.isMarkedGood(target) {
            try backend.markBad(target)
            try PositionalIO.sync(fd, path: image)
        }

        // 6. Stream every image into its partition (in parallel; one pipe and 1 MiB each).
        let plan = jobs
        let results = Results<InstallReport.Written>(count: plan.count)
        DispatchQueue.concurrentPerform(iterations: plan.count) { i in
            let j = plan[i]
            do {
                let w = PartitionWriter(fd: fd, imagePath: image, start: j.partition.start, capacity: j.partition.size, label: j.partitionName)
                let (written, data, digest) = try w.copy { sink in try options.reader.stream(image: bundle, file: j.filename, sink: sink) }
                guard written == j.size else {
                    throw InstallError(.write, "\(bundle): '\(j.filename)' is \(written) bytes in the payload, the manifest says \(j.size); partition \(j.partitionName) holds a partial image, slot \(target) stays inactive")
                }
                guard digest == j.sha256 else {
                    throw InstallError(.write, "\(bundle): '\(j.filename)' has sha256 \(digest) in the payload, the manifest says \(j.sha256) (tampered payload?); slot \(target) stays inactive")
                }
                results.set(i, .success(.init(slotClass: j.image.slotClass, partition: j.partitionName, partitionSize: j.partition.size,
                                              imageSize: written, dataBytes: data, sha256: digest)))
            } catch {
                results.set(i, .failure(error))
            }
        }
        var written: [InstallReport.Written] = []
        for i in jobs.indices { written.append(try results.get(i)) }
        // RAUC runs post-install hooks after each image; nothing reads the slot before the switch.
        var hookLines: [String] = []
        for j in jobs {
            if let line = try hooks.apply(slotClass: j.image.slotClass, bootname: target, partition: j.partition, partitionName: j.partitionName, image: opened) {
                hookLines.append(line)
            }
        }
        try PositionalIO.sync(fd, path: image)

        // 7. Switch: only now does the bootloader see the new slot.
        try backend.makePrimary(target)
        try PositionalIO.sync(fd, path: image)
        guard try backend.bootSlot() == target else {
            throw InstallError(.bootloader, "\(backend.description): slot \(target) was made primary but does not read back as the boot slot")
        }
        return InstallReport(bundle: bundle, compatible: m.compatible, version: m.version, bootloader: backend.description,
                             bootedSlot: booted, targetSlot: target, slotSource: slots.source, images: written, hooks: hookLines,
                             checks: verified.checks + ["compatible", "image sizes", "image checksums"])
    }
}

/// Per-index results from concurrent workers.
final class Results<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Result<T, any Error>?]
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<T, any Error>) { lock.lock(); items[i] = r; lock.unlock() }
    func get(_ i: Int) throws -> T {
        lock.lock()
        let r = items[i]
        lock.unlock()
        guard let r else { throw MessageError("internal: worker \(i) produced no result") }
        return try r.get()
    }
}

/// Streams bytes into [start, start+capacity) of the image: 4 KiB blocks of zeros are
/// punched as holes (they read back as zeros and keep the image sparse), others written;
/// SHA-256 over everything. Memory: one 1 MiB staging buffer.
struct PartitionWriter {
    let fd: Int32
    let imagePath: String
    let start: UInt64
    let capacity: UInt64
    let label: String
    static let block = 4096
    static let bufferSize = 1 << 20

    func copy(_ produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> (bytes: UInt64, data: UInt64, sha256: String) {
        let h = SHA256()
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: Self.block)
        defer { buf.deallocate() }
        var fill = 0
        var pos: UInt64 = 0  // bytes flushed so far (relative to start)
        var data: UInt64 = 0
        var hole: Range<UInt64>?  // pending run of zero blocks (relative)

        func flushHole() throws {
            guard let r = hole else { return }
            hole = nil
            if !PositionalIO.punchHole(fd, at: start + r.lowerBound, length: UInt64(r.count)) {
                let zeros = [UInt8](repeating: 0, count: Self.bufferSize)
                var o = r.lowerBound
                while o < r.upperBound {
                    let n = Int(min(UInt64(zeros.count), r.upperBound - o))
                    try zeros.withUnsafeBytes { try PositionalIO.write(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: start + o, path: imagePath) }
                    o += UInt64(n)
                }
            }
        }
        func flush() throws {
            var o = 0
            while o < fill {
                let n = min(Self.block, fill - o)
                let chunk = UnsafeRawBufferPointer(rebasing: buf[o..<(o + n)])
                let at = pos + UInt64(o)
                if chunk.allSatisfy({ $0 == 0 }) {
                    if let r = hole, r.upperBound == at { hole = r.lowerBound..<(at + UInt64(n)) } else { try flushHole(); hole = at..<(at + UInt64(n)) }
                } else {
                    try flushHole()
                    // Extend over following non-zero blocks to write in large pieces.
                    var e = o + n
                    while e < fill {
                        let m = min(Self.block, fill - e)
                        if UnsafeRawBufferPointer(rebasing: buf[e..<(e + m)]).allSatisfy({ $0 == 0 }) { break }
                        e += m
                    }
                    try PositionalIO.write(fd, UnsafeRawBufferPointer(rebasing: buf[o..<e]), at: start + at, path: imagePath)
                    data += UInt64(e - o)
                    o = e
                    continue
                }
                o += n
            }
            pos += UInt64(fill)
            fill = 0
        }

        try produce { chunk in
            h.update(chunk)
            var c = 0
            while c < chunk.count {
                guard pos + UInt64(fill) < capacity else {
                    throw InstallError(.write, "\(imagePath): image data exceeds partition \(label) (\(capacity) bytes); slot stays inactive")
                }
                let n = min(chunk.count - c, Self.bufferSize - fill, Int(min(UInt64(Int.max), capacity - pos - UInt64(fill))))
                UnsafeMutableRawBufferPointer(rebasing: buf[fill..<(fill + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: chunk[c..<(c + n)]))
                fill += n
                c += n
                if fill == Self.bufferSize { try flush() }
            }
        }
        try flush()
        try flushHole()
        return (pos, data, h.hexDigest())
    }
}
