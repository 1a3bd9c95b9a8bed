import Basics
import FSTree
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Builds the FSTree a `RootfsSpec` describes. Nothing is extracted on the host: archive
/// members become tree entries (big contents in the blob store), ownership and device
/// nodes are metadata only, so no root privileges are needed.
///
/// Order: base inputs → overlays → generated files (os-release, machine-info,
/// /etc/timestamp) → device tables → overrides → post-build actions → mtime clamp to
/// SOURCE_DATE_EPOCH → build-id stamp.
public enum RootfsAssembler {
    /// - Parameters:
    ///   - downloadCache: shared download cache (apt packages, default lock file).
    ///   - blobDirectory: scratch store for big archive members (default `<downloadCache>/rootfs-blobs`).
    ///   - aptUsed: told the lock key and pin of each `apt:` input used (see `AptFetcher.onUse`).
    public static func assemble(_ spec: RootfsSpec, downloadCache: String, blobDirectory: String? = nil,
                                log: @escaping RootfsLog = { _ in },
                                aptUsed: @escaping (_ spec: String, _ pin: AptFetcher.LockEntry) -> Void = { _, _ in }) throws -> FSTree {
        let genTime = Timestamp(seconds: spec.sourceDateEpoch ?? Int64(time(nil)))
        let blobs = try BlobStore(directory: blobDirectory ?? downloadCache + "/rootfs-blobs")
        var tree = FSTree(root: .directory(mtime: genTime))
        let hostOptions = FSTree.HostImportOptions(ownership: spec.hostOwnership == .root ? .root : .host, readXAttrs: spec.hostXAttrs)

        let apt = AptFetcher(cacheDirectory: downloadCache, lockPath: spec.aptLockFile, log: log, onUse: aptUsed)
        for input in spec.base {
            switch input {
            case .directory(let dir):
                try requireDirectory(dir, what: "base directory")
                try tree.importHostDirectory(dir, at: "/", options: hostOptions)
            case .archive(let path):
                guard FileSystem.exists(path) else { throw RootfsError("base archive \(path) does not exist") }
                let s = try ArchiveImporter.importArchive(path, into: &tree, blobs: blobs, options: .init(policy: spec.unsafeMembers, log: log))
                log("\(path): \(s.members) members (\(s.format))")
            case .apt(let name):
                let deb = try apt.fetch(name)
                let s = try ArchiveImporter.importArchive(deb, into: &tree, blobs: blobs, options: .init(policy: spec.unsafeMembers, log: log))
                log("apt:\(name): \(s.members) members from \(FileSystem.basename(deb))")
            }
        }
        for dir in spec.overlays {
            try requireDirectory(dir, what: "overlay")
            try tree.importHostDirectory(dir, at: "/", options: hostOptions)
        }

        try GeneratedFiles.write(spec, into: &tree, time: genTime)

        for table in spec.deviceTables {
            try DeviceTable.load(table).apply(to: &tree, mtime: genTime)
        }
        for o in spec.overrides { try applyOverride(o, to: &tree) }
        for a in spec.actions { try apply(a, spec: spec, to: &tree, mtime: genTime) }

        if let epoch = spec.sourceDateEpoch { tree.clampMtimes(to: epoch) }

        if let stamp = spec.buildIDPath {
            let id = try buildID(spec: spec, tree: tree)
            try tree.insert(stamp, .file(.bytes(Array((id + "\n").utf8)), mtime: genTime), createParents: true, parentTemplate: .directory(mtime: genTime))
        }
        return tree
    }

    /// The build-id stamp: SHA-256 over the assembled tree (`TreeDigest`, which covers every
    /// input that reaches the tree: base contents, overlays, tables, overrides, actions,
    /// generated files) plus the board variables and SOURCE_DATE_EPOCH.
    public static func buildID(spec: RootfsSpec, tree: FSTree) throws -> String {
        let digest = try TreeDigest.compute(tree)
        let h = SHA256()
        h.updateField("osbuild-rootfs-build-id-v1")
        h.updateField(digest)
        for k in spec.variables.keys.sorted(by: FSTree.byteOrderLess) {
            h.updateField(k)
            h.updateField(spec.variables[k] ?? "")
        }
        h.updateField(spec.sourceDateEpoch.map(String.init) ?? "-")
        return h.hexDigest()
    }

    static func requireDirectory(_ dir: String, what: String) throws {
        guard let st = try FileSystem.lstatIfExists(dir) else { throw RootfsError("\(what) \(dir) does not exist") }
        guard st.isDirectory else { throw RootfsError("\(what) \(dir) is not a directory") }
    }

    static func applyOverride(_ o: RootfsSpec.PathOverride, to tree: inout FSTree) throws {
        guard let id = tree.lookup(o.path) else {
            throw RootfsError("override for \(o.path): no such entry in the rootfs", at: o.origin)
        }
        func set(_ id: InodeID) {
            var n = tree[id]
            if let m = o.mode, n.kind != .symlink { n.permissions = m }
            if let u = o.uid { n.uid = u }
            if let g = o.gid { n.gid = g }
            tree[id] = n
        }
        set(id)
        if o.recursive {
            func below(_ dir: InodeID) {
                for (_, c) in tree.children(of: dir) {
                    set(c)
                    if tree[c].kind == .directory { below(c) }
                }
            }
            if tree[id].kind == .directory { below(id) }
        }
    }

    static func apply(_ action: RootfsSpec.PostBuildAction, spec: RootfsSpec, to tree: inout FSTree, mtime: Timestamp) throws {
        switch action {
        case .remove(let pattern):
            for p in matches(pattern, in: tree) { try tree.remove(p) }
        case .mkdir(let path, let mode, let uid, let gid):
            if let id = tree.lookup(path), tree[id].kind != .directory {
                throw RootfsError("mkdir \(path): exists and is a \(tree[id].kind)")
            }
            try tree.insert(path, .directory(permissions: mode, uid: uid, gid: gid, mtime: mtime), createParents: true, parentTemplate: .directory(mtime: mtime))
        case .symlink(let path, let target):
            if let id = tree.lookup(path), tree[id].kind == .directory {
                throw RootfsError("symlink \(path) -> \(target): \(path) is a directory in the rootfs; remove it first")
            }
            try tree.insert(path, .symlink(target, mtime: mtime), createParents: true, parentTemplate: .directory(mtime: mtime))
        case .writeFile(let path, let template, let mode, let uid, let gid):
            let (text, origin): (String, String)
            switch template {
            case .inline(let t): (text, origin) = (t, "template for \(path)")
            case .file(let f): (text, origin) = (try FileSystem.readText(f), f)
            }
            let expanded = try Template.expand(text, variables: spec.variables, origin: origin)
            if let id = tree.lookup(path), tree[id].kind == .directory {
                throw RootfsError("write \(path): is a directory in the rootfs")
            }
            try tree.insert(path, .file(expanded.isEmpty ? .empty : .bytes(Array(expanded.utf8)), permissions: mode, uid: uid, gid: gid, mtime: mtime),
                            createParents: true, parentTemplate: .directory(mtime: mtime))
        }
    }

    /// Tree paths matching a glob (fnmatch with FNM_PATHNAME, so `*` stays within a
    /// component); a pattern without wildcards is the path itself if present.
    public static func matches(_ pattern: String, in tree: FSTree) -> [String] {
        let pat = FileSystem.normalize(pattern.hasPrefix("/") ? pattern : "/" + pattern)
        if !pat.contains(where: { "*?[".contains($0) }) {
            return tree.lookup(pat) != nil && pat != "/" ? [pat] : []
        }
        var out: [String] = []
        tree.walk { path, _, _ in
            if path != "/" && fnmatch(pat, path, FNM_PATHNAME | FNM_PERIOD) == 0 { out.append(path) }
        }
        return out
    }
}

/// `${VAR}` expansion for board templates. `$$` is a literal `$`; an unknown variable is an
/// error naming it and the template.
public enum Template {
    public static func expand(_ text: String, variables: [String: String], origin: String) throws -> String {
        var out = ""
        var i = text.startIndex
        var line = 1
        while i < text.endIndex {
            let c = text[i]
            if c == "\n" { line += 1 }
            if c == "$" {
                let n = text.index(after: i)
                if n < text.endIndex && text[n] == "$" {
                    out.append("$")
                    i = text.index(after: n)
                    continue
                }
                if n < text.endIndex && text[n] == "{" {
                    guard let close = text[n...].firstIndex(of: "}") else {
                        throw RootfsError("unterminated ${ in template", at: SourceLocation(file: origin, line: line))
                    }
                    let name = String(text[text.index(after: n)..<close])
                    guard let v = variables[name] else {
                        let known = variables.keys.sorted().joined(separator: ", ")
                        throw RootfsError("unknown variable ${\(name)} (known: \(known.isEmpty ? "none" : known))", at: SourceLocation(file: origin, line: line))
                    }
                    out += v
                    i = text.index(after: close)
                    continue
                }
            }
            out.append(c)
            i = text.index(after: i)
        }
        return out
    }
}
