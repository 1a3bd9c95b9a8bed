import Basics
import FSTree
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Paths of a genimage run. Precedence (low to high): defaults, GENIMAGE_<NAME>
/// environment, the config's `config {}` section, explicit values (command line).
public struct GenimagePaths: Sendable {
    public var rootpath: String?
    public var tmppath: String?
    public var inputpath: String?
    public var outputpath: String?
    public var includepath: [String]
    public init(rootpath: String? = nil, tmppath: String? = nil, inputpath: String? = nil, outputpath: String? = nil, includepath: [String] = []) {
        self.rootpath = rootpath
        self.tmppath = tmppath
        self.inputpath = inputpath
        self.outputpath = outputpath
        self.includepath = includepath
    }
}

/// The squashfs backend used for `squashfs` images: the one function to switch when the
/// native writer is merged (today: mksquashfs with genimage's arguments).
public enum GenimageSquashfs {
    public static func make(sourceDirectory: String, output: String, compression: String, blockSize: UInt64, extraArgs: [String]) throws {
        var args = ["mksquashfs", sourceDirectory, output, "-b", String(blockSize), "-noappend"]
        if compression == "none" { args += ["-noI", "-noD", "-noF", "-noX"] } else { args += ["-comp", compression] }
        args += extraArgs
        guard Subprocess.which("mksquashfs") != nil else {
            throw MessageError("required tool 'mksquashfs' not found in PATH (install Debian package squashfs-tools)", exitCode: ExitStatus.environment)
        }
        _ = try Subprocess.run(args)
    }
}

/// A genimage configuration, parsed and checked, ready to build.
public struct GenimageProject: Sendable {
    public struct Image: Sendable {
        public var title: String
        public var type: String
        public var section: ConfSection
        public var typeSection: ConfSection
        public var output: String
        public var implicit: Bool
        public var location: SourceLocation { section.location }
    }

    public let configPath: String
    public let root: ConfSection
    public let paths: (rootpath: String, tmppath: String, inputpath: String, outputpath: String)
    public private(set) var images: [Image] = []
    let environment: [String: String]

    public init(config: String, paths override: GenimagePaths = .init(), environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        configPath = config
        self.environment = environment
        guard FileSystem.exists(config) else {
            throw ConfigError(SourceLocation(file: config), "config file not found")
        }
        var include = override.includepath
        if include.isEmpty, let e = environment["GENIMAGE_INCLUDEPATH"] { include = e.split(separator: ":").map(String.init) }
        let parser = ConfuseParser(environment: environment, includePath: include)
        root = try parser.parse(file: config, schema: GenimageSchema.root)
        let cfg = root.sections(named: "config").last
        func pick(_ name: String, _ cli: String?, _ def: String) -> String {
            FileSystem.absolute(cli ?? cfg?.scalar(name) ?? environment["GENIMAGE_\(name.uppercased())"] ?? def)
        }
        paths = (pick("rootpath", override.rootpath, "root"), pick("tmppath", override.tmppath, "tmp"),
                 pick("inputpath", override.inputpath, "input"), pick("outputpath", override.outputpath, "images"))

        for s in root.sections(named: "image") {
            guard let title = s.title else { continue }
            let typed = s.sections.filter { GenimageSchema.imageTypes.contains($0.name) }
            if typed.count > 1 { throw ConfigError(s.location, "image '\(title)': multiple image types given (\(typed.map(\.name).joined(separator: ", ")))") }
            guard let t = typed.first else { throw ConfigError(s.location, "image '\(title)': no image type given") }
            let temporary = try GenimageValues.bool(s, "temporary") ?? false
            let out = title.hasPrefix("/") ? title : (temporary ? paths.tmppath : paths.outputpath) + "/" + title
            images.append(Image(title: title, type: t.name, section: s, typeSection: t, output: out, implicit: false))
        }
        // Partition images that name no image are implicit `file` images from inputpath.
        var known = Set(images.map(\.title))
        for img in images {
            for p in img.section.sections(named: "partition") {
                guard let name = p.scalar("image"), !known.contains(name) else { continue }
                known.insert(name)
                let path = name.hasPrefix("/") ? name : paths.inputpath + "/" + name
                var sec = ConfSection(name: "image", title: name, location: p.location)
                let fileSec = ConfSection(name: "file", title: nil, location: p.location)
                sec.sections = [fileSec]
                images.append(Image(title: name, type: "file", section: sec, typeSection: fileSec, output: path, implicit: true))
            }
        }
    }

    func image(_ title: String) -> Image? { images.first { $0.title == title } }

    /// Builds every image, children before parents; independent images in parallel.
    /// Returns the output paths of the non-implicit images.
    @discardableResult
    public func build(epoch: Int64?) throws -> [String] {
        let clock = try epoch ?? BuildClock.sourceDateEpoch(environment) ?? 0
        if let names = try? FileSystem.listDirectory(paths.tmppath), !names.isEmpty {
            throw MessageError("tmppath '\(paths.tmppath)' exists and is not empty", exitCode: ExitStatus.usage)
        }
        try FileSystem.makeDirectories(paths.tmppath)
        try FileSystem.makeDirectories(paths.outputpath)

        // Depth of each image in the dependency graph (cycles are errors).
        var depth: [String: Int] = [:]
        func visit(_ t: String, _ stack: [String]) throws -> Int {
            if let d = depth[t] { return d }
            if stack.contains(t) { throw MessageError("image '\(t)': recursive dependency detected (\((stack + [t]).joined(separator: " -> ")))", exitCode: ExitStatus.usage) }
            guard let img = image(t) else { return 0 }
            var d = 0
            for c in children(img) where image(c) != nil { d = max(d, try visit(c, stack + [t]) + 1) }
            depth[t] = d
            return d
        }
        for img in images { _ = try visit(img.title, []) }
        let levels = (depth.values.max() ?? 0)
        let planner = self
        for level in 0...max(levels, 0) {
            let batch = images.filter { depth[$0.title] == level }
            // Longest jobs first (hdimages, then filesystems) so both cores stay busy.
            let ordered = batch.sorted { weight($0) > weight($1) }
            try Parallel.run(ordered.count) { i in try planner.generate(ordered[i], epoch: clock) }
        }
        return images.filter { !$0.implicit }.map(\.output)
    }

    private func weight(_ img: Image) -> Int {
        switch img.type {
        case "hdimage": 3
        case "ext2", "ext3", "ext4", "squashfs": 2
        case "vfat": 1
        default: 0
        }
    }

    func children(_ img: Image) -> [String] {
        var out: [String] = img.section.sections(named: "partition").compactMap { $0.scalar("image") }
        for f in img.typeSection.sections(named: "file") { if let i = f.scalar("image") { out.append(i) } }
        for f in img.typeSection.list("files") where image(f) != nil { out.append(f) }
        return out
    }

    /// Path of a referenced image or input file.
    func resolveInput(_ name: String) -> String {
        if let i = image(name) { return i.output }
        return name.hasPrefix("/") ? name : paths.inputpath + "/" + name
    }

    // MARK: generation

    func generate(_ img: Image, epoch: Int64) throws {
        let t0 = Date()
        defer { if environment["OSBUILD_DISK_TRACE"] != nil { FileHandle.standardError.write(Data("TRACE \(img.title) \(t0.timeIntervalSince1970) +\(Date().timeIntervalSince(t0))\n".utf8)) } }
        if let pre = img.section.scalar("exec-pre") { try runHook(pre, img) }
        switch img.type {
        case "file":
            guard FileSystem.exists(img.output) else {
                throw MessageError("file(\(img.title)): stat(\(img.output)) failed: no such file", exitCode: ExitStatus.usage)
            }
        case "hdimage":
            let layout = try hdimageLayout(img)
            try DiskImageBuilder.build(layout, to: img.output, options: .init(workDirectory: paths.tmppath, epoch: epoch))
        case "vfat", "ext2", "ext3", "ext4":
            try buildFilesystem(img, epoch: epoch)
        case "squashfs":
            try buildSquashfs(img)
        case "rauc":
            throw ConfigError(img.location, "image '\(img.title)': rauc bundles are not supported by 'osbuild image' yet (they need the bundle module)")
        default:
            throw ConfigError(img.location, "image '\(img.title)': image type '\(img.type)' is not supported by osbuild")
        }
        if let post = img.section.scalar("exec-post") { try runHook(post, img) }
    }

    private func runHook(_ cmd: String, _ img: Image) throws {
        var env = ["OUTPUTPATH": paths.outputpath, "INPUTPATH": paths.inputpath, "ROOTPATH": paths.rootpath, "TMPPATH": paths.tmppath,
                   "IMAGE": img.title, "IMAGEOUTFILE": img.output, "IMAGENAME": img.section.scalar("name") ?? ""]
        if let s = img.section.scalar("size") { env["IMAGESIZE"] = s }
        env["IMAGEMOUNTPOINT"] = img.section.scalar("mountpoint") ?? ""
        _ = try Subprocess.run(["sh", "-c", cmd], environment: env)
    }

    /// The files of an image's mountpoint (or srcpath), with other images' mountpoints
    /// below it left as empty directories (genimage's collect_mountpoints). A directory
    /// that needs no such pruning is used in place (no copy, like a genimage srcpath).
    func contentSource(_ img: Image) throws -> FilesystemSpec.Source {
        if try GenimageValues.bool(img.section, "empty") == true { return .empty }
        if let src = img.section.scalar("srcpath") {
            if img.section.scalar("mountpoint") != nil { throw ConfigError(img.location, "image '\(img.title)': srcpath and mountpoint cannot be combined") }
            return .directory(FileSystem.absolute(src))
        }
        let mp = FileSystem.normalize("/" + (img.section.scalar("mountpoint") ?? "/"))
        let dir = mp == "/" ? paths.rootpath : paths.rootpath + mp
        guard FileSystem.exists(dir) else { throw ConfigError(img.location, "image '\(img.title)': \(dir) does not exist (rootpath + mountpoint)") }
        let others = Set(images.compactMap { $0.section.scalar("mountpoint").map { FileSystem.normalize("/" + $0) } }).filter { $0 != "/" && $0 != mp }
        let nested = others.compactMap { o -> String? in
            if mp == "/" { return o }
            return o.hasPrefix(mp + "/") ? String(o.dropFirst(mp.count)) : nil
        }.sorted()
        if nested.isEmpty { return .directory(dir) }
        var tree = try FSTree.fromHostDirectory(dir, options: .init(ownership: .host))
        for rel in nested {
            if let id = tree.lookup(rel) {
                for c in tree.children(of: id) { try tree.remove(rel + "/" + c.name) }
            }
        }
        return .tree(tree)
    }

    func requiredSize(_ img: Image, content: () throws -> UInt64) throws -> UInt64 {
        guard let s = img.section.scalar("size") else {
            throw ConfigError(img.location, "image '\(img.title)': no size given (\(img.type) images need 'size')")
        }
        let loc = img.section.options["size"]?.location ?? img.location
        let (v, pct) = try GenimageValues.size(s, allowPercent: true, at: loc, key: "size")
        if pct { return (try content() * v / 100 + 4095) / 4096 * 4096 }
        return v
    }

    func buildFilesystem(_ img: Image, epoch: Int64) throws {
        let t = img.typeSection
        var spec = FilesystemSpec(kind: FilesystemSpec.Kind(rawValue: img.type) ?? .ext4)
        spec.label = t.scalar("label")
        var extra = GenimageValues.splitArgs(t.scalar("extraargs") ?? "")
        if img.type == "vfat" {
            var files: [(source: String, destination: String)] = []
            for f in t.list("files") { files.append((resolveInput(f), "/" + FileSystem.basename(f))) }
            for f in t.sections(named: "file") {
                guard let title = f.title, let src = f.scalar("image") else { throw ConfigError(f.location, "file section needs a title and 'image'") }
                files.append((resolveInput(src), "/" + title))
            }
            if !files.isEmpty { spec.source = .files(files) } else { spec.source = try contentSource(img) }
            if let k = extra.firstIndex(of: "-i"), k + 1 < extra.count {
                spec.uuid = extra[k + 1].lowercased().replacingOccurrences(of: "0x", with: "")
                extra.removeSubrange(k...(k + 1))
            }
            if let k = extra.firstIndex(of: "-F"), k + 1 < extra.count, let n = Int(extra[k + 1]) {
                spec.fatSize = FilesystemSpec.FATSize(rawValue: n)
                extra.removeSubrange(k...(k + 1))
            }
        } else {
            spec.source = try contentSource(img)
            spec.features = t.scalar("features")
            if let ts = t.scalar("fs-timestamp") { spec.timestamp = GenimageValues.timestamp(ts) }
            if let k = extra.firstIndex(of: "-U"), k + 1 < extra.count {
                spec.uuid = extra[k + 1]
                extra.removeSubrange(k...(k + 1))
            }
            if let conf = t.scalar("mke2fs-conf"), !FileSystem.exists(conf) {
                throw ConfigError(t.options["mke2fs-conf"]?.location ?? t.location, "mke2fs-conf file \(conf) does not exist")
            }
            if let u = t.scalar("usage-type") { extra = ["-T", u] + extra }
            if try GenimageValues.bool(t, "use-mke2fs") != true {
                // genimage < 18 defaults to genext2fs here; osbuild always uses mke2fs.
                Console.shared.error("warning: \(img.location.file): image '\(img.title)': use-mke2fs is not set to true; genimage 16/17 would use genext2fs, osbuild uses mke2fs (the default since genimage 18)")
            }
        }
        spec.extraArgs = extra
        // genimage copies the rootpath with cp -a, so files keep their host owners.
        spec.ownership = .host
        let size = try requiredSize(img) { try FilesystemMaker.loadTree(spec.source, ownership: .host, partition: img.title).totals().bytes }
        try FileSystem.makeDirectories(FileSystem.dirname(img.output))
        let work = try DiskImageBuilder.makeTempDirectory(in: paths.tmppath, label: img.title.replacingOccurrences(of: "/", with: "_"))
        defer { try? FileSystem.removeTree(work) }
        try FilesystemMaker.build(spec, size: size, to: img.output, epoch: spec.timestamp ?? epoch, work: work, partition: img.title)
    }

    func buildSquashfs(_ img: Image) throws {
        let t = img.typeSection
        let source = try contentSource(img)
        let work = try DiskImageBuilder.makeTempDirectory(in: paths.tmppath, label: "squashfs")
        defer { try? FileSystem.removeTree(work) }
        var dir = work + "/root"
        switch source {
        case .directory(let d): dir = d
        case .tree(let tree): _ = try FilesystemMaker.stage(tree, into: dir, symlinks: true, devices: true)
        default: try FileSystem.makeDirectories(dir)
        }
        let bs = try t.scalar("block-size").map { try GenimageValues.size($0, allowPercent: false, at: t.options["block-size"]?.location ?? t.location, key: "block-size").0 } ?? 4096
        try AtomicOutputFile.write(img.output) { out in
            try GenimageSquashfs.make(sourceDirectory: dir, output: out.tempPath, compression: t.scalar("compression") ?? "gzip",
                                      blockSize: bs, extraArgs: GenimageValues.splitArgs(t.scalar("extraargs") ?? ""))
        }
        if let s = img.section.scalar("size") {
            let (limit, _) = try GenimageValues.size(s, allowPercent: false, at: img.location, key: "size")
            let got = try FileSystem.stat(img.output).size
            if got > limit { throw ConfigError(img.location, "image '\(img.title)': squashfs is \(got) bytes, larger than size \(limit)") }
        }
    }

    // MARK: hdimage

    public func hdimageLayout(_ img: Image) throws -> DiskLayout {
        let h = img.typeSection
        func loc(_ s: ConfSection, _ k: String) -> SourceLocation {
            var l = s.options[k]?.location ?? s.location
            l.key = k
            return l
        }
        var table: DiskLayout.TableType
        if let t = h.scalar("partition-table-type") {
            switch t.lowercased() {
            case "mbr", "dos": table = .mbr
            case "gpt": table = .gpt
            case "hybrid": table = .hybrid
            case "none": table = .none
            default: throw ConfigError(loc(h, "partition-table-type"), "invalid partition-table-type '\(t)' (use mbr, gpt, hybrid or none)")
            }
        } else if let g = try GenimageValues.bool(h, "gpt") {
            table = g ? .gpt : .mbr
        } else if let p = try GenimageValues.bool(h, "partition-table") {
            table = p ? .mbr : .none
        } else {
            table = .mbr
        }
        var layout = DiskLayout(table: table, alignment: table == .none ? 1 : 512)
        if let a = h.scalar("align") {
            layout.alignment = try GenimageValues.size(a, allowPercent: false, at: loc(h, "align"), key: "align").0
        }
        if let s = img.section.scalar("size") {
            layout.size = try GenimageValues.size(s, allowPercent: false, at: loc(img.section, "size"), key: "size").0
        }
        if let d = h.scalar("disk-signature") {
            guard table == .mbr || table == .hybrid else { throw ConfigError(loc(h, "disk-signature"), "disk-signature is only valid for mbr and hybrid tables") }
            if d == "random" {
                layout.mbrSignature = UInt32(GUID.derived("mbr-signature", img.title).prefix(8), radix: 16) ?? 0
            } else {
                guard let v = GenimageValues.integer(d), v >= 0, v <= Int64(UInt32.max) else {
                    throw ConfigError(loc(h, "disk-signature"), "invalid disk-signature '\(d)' (a 32-bit number or 'random')")
                }
                layout.mbrSignature = UInt32(v)
            }
        }
        if let u = h.scalar("disk-uuid") {
            guard table == .gpt || table == .hybrid else { throw ConfigError(loc(h, "disk-uuid"), "disk-uuid is only valid for gpt and hybrid tables") }
            layout.diskGUID = u
        }
        if let g = h.scalar("gpt-location") {
            layout.gptEntriesOffset = try GenimageValues.size(g, allowPercent: false, at: loc(h, "gpt-location"), key: "gpt-location").0
        }
        layout.gptNoBackup = try GenimageValues.bool(h, "gpt-no-backup") ?? false
        if let e = h.scalar("extended-partition") {
            guard let n = GenimageValues.integer(e) else { throw ConfigError(loc(h, "extended-partition"), "invalid number '\(e)'") }
            layout.extendedPartition = n == 0 ? .automatic : .slot(Int(n))
        } else {
            layout.extendedPartition = .automatic
        }

        for p in img.section.sections(named: "partition") {
            guard let name = p.title else { continue }
            let inTable = try GenimageValues.bool(p, "in-partition-table") ?? true
            var offset: UInt64? = nil
            if let o = p.scalar("offset") {
                let v = try GenimageValues.size(o, allowPercent: false, at: loc(p, "offset"), key: "offset").0
                offset = v == 0 ? nil : v
            }
            let child = p.scalar("image")
            let childPath = child.map(resolveInput)
            if !inTable {
                guard let childPath else { throw ConfigError(p.location, "partition '\(name)': in-partition-table = false needs an image") }
                var holes: [Range<UInt64>] = []
                if let c = child, let ci = image(c), ci.type == "file" {
                    for hs in ci.typeSection.list("holes") + p.list("holes") {
                        holes.append(try GenimageValues.hole(hs, at: loc(p, "holes")))
                    }
                } else {
                    for hs in p.list("holes") { holes.append(try GenimageValues.hole(hs, at: loc(p, "holes"))) }
                }
                layout.rawWrites.append(RawWrite(name: name, offset: offset ?? 0, source: .file(childPath), holes: holes))
                continue
            }
            var part = Partition(name: name, offset: offset, size: .content)
            if let s = p.scalar("size") {
                part.size = .bytes(try GenimageValues.size(s, allowPercent: false, at: loc(p, "size"), key: "size").0)
            } else if try GenimageValues.bool(p, "autoresize") == true {
                part.size = .fill
            } else if childPath == nil {
                throw ConfigError(p.location, "partition '\(name)': no size and no image given")
            }
            if let a = p.scalar("align") {
                part.alignment = try GenimageValues.size(a, allowPercent: false, at: loc(p, "align"), key: "align").0
            }
            if let c = childPath {
                let skip = try p.scalar("imageoffset").map { try GenimageValues.size($0, allowPercent: false, at: loc(p, "imageoffset"), key: "imageoffset").0 } ?? 0
                part.content = .file(path: c, skip: skip)
            }
            let mbrType: UInt8? = try p.scalar("partition-type").map { s in
                guard let v = GenimageValues.integer(s), (0...255).contains(v) else {
                    throw ConfigError(loc(p, "partition-type"), "invalid partition-type '\(s)' (an MBR type byte such as 0x83)")
                }
                return UInt8(v)
            }
            switch table {
            case .mbr:
                part.type = .mbr(mbrType ?? 0x83)
            case .gpt, .hybrid:
                let s = p.scalar("partition-type-uuid") ?? "L"
                guard let t = PartitionType.parse(s), t.gptGUID != nil else {
                    throw ConfigError(loc(p, "partition-type-uuid"), "partition '\(name)': unknown GPT type '\(s)' (a GUID, a letter L S H U R V F, or a name like esp, linux, root-x86-64)")
                }
                part.type = t
                if table == .hybrid, let m = mbrType { part.hybridMBRType = .mbr(m) }
            case .none:
                break
            }
            part.uuid = p.scalar("partition-uuid")
            part.bootable = try GenimageValues.bool(p, "bootable") ?? false
            part.readOnly = try GenimageValues.bool(p, "read-only") ?? false
            part.hidden = try GenimageValues.bool(p, "hidden") ?? false
            part.noAutomount = try GenimageValues.bool(p, "no-automount") ?? false
            part.forcedPrimary = try GenimageValues.bool(p, "forced-primary") ?? false
            layout.partitions.append(part)
        }
        if table == .mbr && layout.partitions.count <= 4 { layout.extendedPartition = .none }
        if table == .none {
            // No table: every partition is a plain write at its offset.
            layout.alignment = 512
        }
        // genimage 16 puts the GPT's first usable LBA at the first partition.
        if table == .gpt || table == .hybrid, !layout.partitions.isEmpty {
            let r = try layout.resolve()
            layout.gptFirstUsableLBA = (r.entries.map(\.offset).min() ?? 0) / 512
        }
        return layout
    }
}

/// genimage's value syntax: sizes, booleans, integers, holes, timestamps.
public enum GenimageValues {
    /// strtoull base 0 (0x hex, leading 0 octal) + one suffix k/K M G s (and % where
    /// allowed); characters after a valid suffix are ignored, like genimage.
    public static func size(_ text: String, allowPercent: Bool, at loc: SourceLocation, key: String) throws -> (UInt64, percent: Bool) {
        let u = Array(text.trimmingCharacters(in: .whitespaces).utf8)
        var i = 0
        var radix: UInt64 = 10
        if u.count >= 2, u[0] == 0x30, u[1] == 0x78 || u[1] == 0x58 { radix = 16; i = 2 } else if u.first == 0x30 { radix = 8 }
        var v: UInt64 = 0
        var digits = 0
        while i < u.count {
            let c = u[i]
            let d: UInt64
            switch c {
            case 0x30...0x39: d = UInt64(c - 0x30)
            case 0x61...0x66 where radix == 16: d = UInt64(c - 0x61 + 10)
            case 0x41...0x46 where radix == 16: d = UInt64(c - 0x41 + 10)
            default: d = 99
            }
            if d >= radix { break }
            let (m, o1) = v.multipliedReportingOverflow(by: radix)
            let (s, o2) = m.addingReportingOverflow(d)
            if o1 || o2 { throw ConfigError(loc, "\(key): number too large in '\(text)'") }
            v = s
            digits += 1
            i += 1
        }
        guard i < u.count else { return (v, false) }
        let mult: UInt64
        switch u[i] {
        case UInt8(ascii: "k"), UInt8(ascii: "K"): mult = 1024
        case UInt8(ascii: "M"): mult = 1 << 20
        case UInt8(ascii: "G"): mult = 1 << 30
        case UInt8(ascii: "s"): mult = 512
        case UInt8(ascii: "%") where allowPercent: return (v, true)
        default:
            throw ConfigError(loc, "Invalid size suffix '\(String(decoding: u[i...], as: UTF8.self))' in '\(text)'")
        }
        let (r, o) = v.multipliedReportingOverflow(by: mult)
        if o { throw ConfigError(loc, "\(key): size too large in '\(text)'") }
        return (r, false)
    }

    public static func bool(_ s: ConfSection, _ key: String) throws -> Bool? {
        guard let v = s.scalar(key) else { return nil }
        switch v.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            var l = s.options[key]?.location ?? s.location
            l.key = key
            throw ConfigError(l, "'\(v)' is not a boolean for option '\(key)' (use true/false, yes/no, on/off)")
        }
    }

    /// strtol base 0.
    public static func integer(_ s: String) -> Int64? {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        if t.hasPrefix("0x") { return Int64(t.dropFirst(2), radix: 16) }
        if t.hasPrefix("0") && t.count > 1 { return Int64(t.dropFirst(), radix: 8) }
        return Int64(t)
    }

    /// "(start;end)" with size syntax on both bounds.
    public static func hole(_ s: String, at loc: SourceLocation) throws -> Range<UInt64> {
        let t = s.trimmingCharacters(in: .whitespaces)
        guard t.hasPrefix("("), t.hasSuffix(")"), let semi = t.firstIndex(of: ";") else {
            throw ConfigError(loc, "invalid hole '\(s)' (expected \"(start;end)\")")
        }
        let a = String(t[t.index(after: t.startIndex)..<semi]), b = String(t[t.index(after: semi)..<t.index(before: t.endIndex)])
        let lo = try size(a, allowPercent: false, at: loc, key: "holes").0
        let hi = try size(b, allowPercent: false, at: loc, key: "holes").0
        guard lo < hi else { throw ConfigError(loc, "invalid hole '\(s)': start must be before end") }
        return lo..<hi
    }

    /// Whitespace-separated arguments with '…' and "…" quoting (extraargs).
    public static func splitArgs(_ s: String) -> [String] {
        var out: [String] = []
        var cur = ""
        var quote: Character? = nil
        var has = false
        for ch in s {
            if let q = quote {
                if ch == q { quote = nil } else { cur.append(ch) }
            } else if ch == "'" || ch == "\"" {
                quote = ch; has = true
            } else if ch.isWhitespace {
                if has || !cur.isEmpty { out.append(cur); cur = ""; has = false }
            } else {
                cur.append(ch)
            }
        }
        if has || !cur.isEmpty { out.append(cur) }
        return out
    }

    /// genimage/debugfs time: YYYYMMDD[HHMM[SS]] in UTC, or @seconds.
    public static func timestamp(_ s: String) -> Int64? {
        if s.hasPrefix("@") { return Int64(s.dropFirst()) }
        let d = Array(s)
        guard d.count >= 8, d.allSatisfy(\.isNumber) else { return nil }
        func n(_ a: Int, _ b: Int) -> Int { Int(String(d[a..<min(b, d.count)])) ?? 0 }
        var c = DateComponents()
        c.year = n(0, 4); c.month = n(4, 6); c.day = n(6, 8)
        c.hour = d.count >= 10 ? n(8, 10) : 0
        c.minute = d.count >= 12 ? n(10, 12) : 0
        c.second = d.count >= 14 ? n(12, 14) : 0
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC") ?? cal.timeZone
        return cal.date(from: c).map { Int64($0.timeIntervalSince1970) }
    }
}
