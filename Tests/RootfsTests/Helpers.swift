import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport

@discardableResult
func sh(_ cmd: String, env: [String: String]? = nil) throws -> String {
    try Subprocess.run(["sh", "-c", cmd], environment: env).stdoutText
}

func q(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

/// One member as GNU tar lists it with `-tvv --numeric-owner --full-time --xattrs`.
struct TarRecord {
    var mode: String
    var uid: UInt32
    var gid: UInt32
    var sizeOrDev: String
    var seconds: Int64
    var nanoseconds: UInt32
    var path: String
    var symlink: String?
    var hardlink: String?
    var xattrs: [String: Int] = [:]
}

/// Parses GNU tar's verbose listing (the oracle for "the tree holds the archive's metadata").
func tarListing(_ archive: String, tarArgs: String = "") throws -> [TarRecord] {
    let text = try sh("TZ=UTC tar --xattrs --xattrs-include='*' -tvv --numeric-owner --full-time \(tarArgs) -f \(q(archive))")
    var out: [TarRecord] = []
    let fmt = DateFormatter()
    fmt.dateFormat = "yyyy-MM-dd HH:mm:ss"
    fmt.timeZone = TimeZone(identifier: "UTC")
    fmt.locale = Locale(identifier: "en_US_POSIX")
    for line in text.split(separator: "\n") {
        if line.hasPrefix("  x: ") {
            let parts = line.dropFirst(5).split(separator: " ", maxSplits: 1)
            out[out.count - 1].xattrs[String(parts[1])] = Int(parts[0])
            continue
        }
        let f = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        let owner = f[1].split(separator: "/")
        let time = f[4].split(separator: ".")
        let date = fmt.date(from: "\(f[3]) \(time[0])")!
        var rest = String(f[5].drop(while: { $0 == " " }))
        var rec = TarRecord(
            mode: String(f[0].prefix(10)), uid: UInt32(owner[0])!, gid: UInt32(owner[1])!, sizeOrDev: String(f[2]),
            seconds: Int64(date.timeIntervalSince1970), nanoseconds: time.count > 1 ? UInt32(time[1].padding(toLength: 9, withPad: "0", startingAt: 0))! : 0, path: rest)
        if let r = rest.range(of: " -> ") {
            rec.symlink = String(rest[r.upperBound...]); rest = String(rest[..<r.lowerBound])
        } else if let r = rest.range(of: " link to ") {
            rec.hardlink = String(rest[r.upperBound...]); rest = String(rest[..<r.lowerBound])
        }
        rec.path = rest
        out.append(rec)
    }
    return out
}

func treePath(_ member: String) -> String {
    let c = member.split(separator: "/").filter { $0 != "." }
    return "/" + c.joined(separator: "/")
}

/// Checks every member of `archive` against `tree`: type+permissions, owner, size or device
/// numbers, mtime to the nanosecond, symlink target, hard-link identity, xattr names/sizes.
@discardableResult
func expectTreeMatchesTar(_ tree: FSTree, _ archive: String, tarArgs: String = "", sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> (hardlinks: Int, devices: Int, xattrs: Int) {
    let recs = try tarListing(archive, tarArgs: tarArgs)
    #expect(recs.count > 3, sourceLocation: sourceLocation)
    var hardlinks = 0, devices = 0, xattrs = 0
    for r in recs {
        let p = treePath(r.path)
        guard let id = tree.lookup(p) else {
            Issue.record("\(p) missing from tree", sourceLocation: sourceLocation)
            continue
        }
        if let target = r.hardlink {
            hardlinks += 1
            #expect(tree.lookup(treePath(target)) == id, "\(p) should be a hard link to \(target)", sourceLocation: sourceLocation)
            continue
        }
        let n = tree[id]
        #expect(TreeListing.modeString(n) == r.mode, "\(p) mode", sourceLocation: sourceLocation)
        #expect(n.uid == r.uid && n.gid == r.gid, "\(p) owner", sourceLocation: sourceLocation)
        #expect(n.mtime == Timestamp(seconds: r.seconds, nanoseconds: r.nanoseconds), "\(p) mtime \(n.mtime) vs \(r.seconds).\(r.nanoseconds)", sourceLocation: sourceLocation)
        switch n.kind {
        case .charDevice, .blockDevice:
            devices += 1
            #expect("\(n.rdev.major),\(n.rdev.minor)" == r.sizeOrDev, "\(p) device", sourceLocation: sourceLocation)
        case .regular:
            #expect(String(n.size) == r.sizeOrDev, "\(p) size", sourceLocation: sourceLocation)
        case .symlink:
            #expect(n.symlinkTarget == r.symlink, "\(p) symlink", sourceLocation: sourceLocation)
        default: break
        }
        let xs = Dictionary(uniqueKeysWithValues: n.xattrs.map { ($0.name, $0.value.count) })
        xattrs += xs.count
        #expect(xs == r.xattrs, "\(p) xattrs", sourceLocation: sourceLocation)
    }
    return (hardlinks, devices, xattrs)
}

func contentBytes(_ tree: FSTree, _ path: String) throws -> [UInt8] {
    guard let id = tree.lookup(path) else { throw MessageError("\(path) missing") }
    return try ContentReader(tree[id].content).readAll()
}
