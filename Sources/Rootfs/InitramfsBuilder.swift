import Basics
import FSTree

/// Everything that goes into an initramfs, as plain values (mapped from the board's
/// initramfs section by the caller).
public struct InitramfsSpec: Sendable, Hashable {
    /// Base inputs, as for a rootfs (e.g. `apt:busybox-static`, a directory with /init).
    public var base: [RootfsSpec.BaseInput]
    public var overlays: [String]
    public var deviceTables: [String]
    /// Paths (globs allowed) copied from the assembled rootfs, with their subtrees.
    public var fromRootfs: [String]
    /// Kernel modules by name or alias; resolved with their dependency closure.
    public var modules: [String]
    /// Kernel version (the name under lib/modules); nil: the only one present.
    public var kernelVersion: String?
    /// Firmware files relative to /lib/firmware; the list is authoritative.
    public var firmware: [String]
    public var compression: InitramfsCompression
    public var level: Int?
    public var unsafeMembers: UnsafeMemberPolicy
    public var sourceDateEpoch: Int64?
    public var aptLockFile: String?
    /// Generate `/init` (see `InitramfsInit`) and `/dev/console`; nil: the base inputs
    /// bring their own init.
    public var generatedInit: InitramfsInit.Options?

    public init(base: [RootfsSpec.BaseInput] = [], overlays: [String] = [], deviceTables: [String] = [], fromRootfs: [String] = [],
                modules: [String] = [], kernelVersion: String? = nil, firmware: [String] = [], compression: InitramfsCompression = .gzip,
                level: Int? = nil, unsafeMembers: UnsafeMemberPolicy = .error, sourceDateEpoch: Int64? = nil, aptLockFile: String? = nil,
                generatedInit: InitramfsInit.Options? = nil) {
        self.base = base
        self.overlays = overlays
        self.deviceTables = deviceTables
        self.fromRootfs = fromRootfs
        self.modules = modules
        self.kernelVersion = kernelVersion
        self.firmware = firmware
        self.compression = compression
        self.level = level
        self.unsafeMembers = unsafeMembers
        self.sourceDateEpoch = sourceDateEpoch
        self.aptLockFile = aptLockFile
        self.generatedInit = generatedInit
    }
}

public enum InitramfsBuilder {
    /// Assemble the initramfs tree: base inputs and overlays, device tables, paths from the
    /// rootfs, resolved kernel modules (from `kernelTree`, e.g. the kernel stage's
    /// modules_install output, or else the rootfs) and firmware.
    public static func assemble(_ spec: InitramfsSpec, rootfs: FSTree?, kernelTree: FSTree?, downloadCache: String,
                                blobDirectory: String? = nil, log: @escaping RootfsLog = { _ in }) throws -> FSTree {
        let base = RootfsSpec(base: spec.base, overlays: spec.overlays, deviceTables: spec.deviceTables, writeTimestamp: false,
                              buildIDPath: nil, unsafeMembers: spec.unsafeMembers, sourceDateEpoch: spec.sourceDateEpoch,
                              aptLockFile: spec.aptLockFile)
        var tree = try RootfsAssembler.assemble(base, downloadCache: downloadCache, blobDirectory: blobDirectory, log: log)
        let mtime = tree.root.mtime
        if !spec.fromRootfs.isEmpty {
            guard let rootfs else { throw RootfsError("initramfs takes paths from the rootfs (\(spec.fromRootfs.joined(separator: ", "))) but no rootfs was built") }
            for pattern in spec.fromRootfs {
                let hits = RootfsAssembler.matches(pattern, in: rootfs)
                if hits.isEmpty { throw RootfsError("initramfs path \(pattern) matches nothing in the rootfs") }
                for p in hits { try TreeCopy.copy(p, from: rootfs, into: &tree) }
            }
        }
        var loadOrder: [String] = []
        var kernelVersion = spec.kernelVersion ?? ""
        if !spec.modules.isEmpty {
            guard let source = kernelTree ?? rootfs else { throw RootfsError("initramfs lists kernel modules but there is no kernel or rootfs tree to take them from") }
            let km = try KernelModules(tree: source, version: spec.kernelVersion)
            let r = try km.resolve(spec.modules)
            try km.install(r, from: source, into: &tree, mtime: mtime)
            loadOrder = r.modules
            kernelVersion = km.version
            log("initramfs: \(r.modules.count) module files for \(spec.modules.count) names (\(r.builtin.count) built in), kernel \(km.version)")
        }
        if !spec.firmware.isEmpty {
            guard let source = rootfs ?? kernelTree else { throw RootfsError("initramfs lists firmware but there is no rootfs to take it from") }
            try FirmwareInstaller.install(spec.firmware, from: source, into: &tree, mtime: mtime)
        }
        if let options = spec.generatedInit {
            guard let bb = tree.lookup(InitramfsInit.busybox), tree[bb].kind == .regular else {
                throw RootfsError("the generated initramfs /init runs \(InitramfsInit.busybox), which the initramfs does not have (add busybox-static to the rootfs or initramfs base)")
            }
            let script = try InitramfsInit.script(modules: loadOrder, kernelVersion: kernelVersion, options: options)
            if tree.lookup("/init") != nil { try tree.remove("/init") }
            try tree.insert("/init", .file(.bytes(Array(script.utf8)), permissions: 0o755, mtime: mtime))
            if tree.lookup("/dev") == nil { try tree.insert("/dev", .directory(mtime: mtime)) }
            if tree.lookup("/dev/console") == nil {
                try tree.insert("/dev/console", Inode(kind: .charDevice, permissions: 0o600, mtime: mtime, rdev: DeviceNumber(major: 5, minor: 1)))
            }
        }
        if let epoch = spec.sourceDateEpoch { tree.clampMtimes(to: epoch) }
        return tree
    }

    /// Assemble and write the compressed image to `output` (atomically).
    @discardableResult
    public static func build(_ spec: InitramfsSpec, rootfs: FSTree?, kernelTree: FSTree?, downloadCache: String, output: String,
                             blobDirectory: String? = nil, log: @escaping RootfsLog = { _ in }) throws -> InitramfsWriter.Report {
        let tree = try assemble(spec, rootfs: rootfs, kernelTree: kernelTree, downloadCache: downloadCache, blobDirectory: blobDirectory, log: log)
        let report = try InitramfsWriter.write(tree, to: output, options: .init(compression: spec.compression, level: spec.level))
        if !report.droppedXAttrs.isEmpty {
            log("initramfs: newc cpio cannot carry xattrs; dropped them on \(report.droppedXAttrs.count) entries (first: \(report.droppedXAttrs[0]))")
        }
        return report
    }
}

/// Copies a subtree between FSTrees (entries, metadata, content references, hard links
/// within the subtree); missing parents are created with the source's metadata.
public enum TreeCopy {
    public static func copy(_ path: String, from source: FSTree, into target: inout FSTree) throws {
        guard let top = source.lookup(path) else { throw RootfsError("\(path): no such entry in the source tree") }
        let comps = try FSTree.components(path)
        // Parents with their own metadata, so /usr/lib keeps the rootfs owner/mode.
        var prefix = ""
        for c in comps.dropLast() {
            prefix += "/" + c
            if target.lookup(prefix) == nil, let id = source.lookup(prefix) {
                try target.insert(prefix, source[id])
            }
        }
        var mapped: [InodeID: String] = [:]
        func put(_ p: String, _ id: InodeID) throws {
            let n = source[id]
            if n.kind != .directory, let first = mapped[id], let tid = target.lookup(first) {
                try target.link(p, to: tid)
                return
            }
            if let old = target.lookup(p), target[old].kind == .directory, n.kind != .directory { try target.remove(p) }
            try target.insert(p, n, createParents: true)
            mapped[id] = p
            if n.kind == .directory {
                for (name, child) in source.children(of: id) { try put(p == "/" ? "/" + name : p + "/" + name, child) }
            }
        }
        try put(comps.isEmpty ? "/" : "/" + comps.joined(separator: "/"), top)
    }
}
