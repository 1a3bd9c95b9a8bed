import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport

@Suite struct ListingTests {
    /// Parses `ls -lnR`-shaped text into "dir/name" -> [mode, nlink, uid, gid, size, date, time, name...].
    func parse(_ text: String, dirPrefix: String) -> [String: [String]] {
        var out: [String: [String]] = [:]
        var dir = ""
        for line in text.split(separator: "\n") {
            if line.hasSuffix(":") && !line.hasPrefix("-") && !line.contains(" ") {
                dir = String(line.dropLast())
                if dir.hasPrefix(dirPrefix) { dir = "/" + dir.dropFirst(dirPrefix.count) }
                dir = FileSystem.normalize(dir)
                continue
            }
            if line.hasPrefix("total ") { continue }
            var f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if f[0].first == "c" || f[0].first == "b" { f[4] += " " + f[5]; f.remove(at: 5) }
            if f[0].first == "d" { f[4] = "-" }  // directory sizes are filesystem-specific
            out[dir + "/" + f[7]] = f
        }
        return out
    }

    @Test func listingAgreesWithLsOnExtractedTree() throws {
        guard TestEnv.isRoot else { print("SKIP: needs root to extract devices and owners"); return }
        let t = try TempDir("listing")
        try FileSystem.makeDirectories(t.sub("src"))
        try makeFixtureTree(t.sub("src"))
        try sh("tar --xattrs --format=pax -cf \(q(t.sub("a.tar"))) -C \(q(t.sub("src"))) .")
        var tree = FSTree()
        try ArchiveImporter.importArchive(t.sub("a.tar"), into: &tree, blobs: BlobStore(directory: t.sub("blobs")))
        let ours = TreeListing.render(tree)
        // The oracle: GNU tar extracts as root, coreutils ls lists.
        try FileSystem.makeDirectories(t.sub("x"))
        try sh("tar --numeric-owner -xpf \(q(t.sub("a.tar"))) -C \(q(t.sub("x")))")
        let theirs = try sh("cd \(q(t.sub("x"))) && TZ=UTC ls -lnR --time-style='+%Y-%m-%d %H:%M:%S' .")
        let a = parse(ours, dirPrefix: "/"), b = parse(theirs, dirPrefix: ".")
        #expect(a.count == b.count && a.count > 20)
        for (k, v) in b { #expect(a[k] == v, "\(k): ours \(a[k] ?? []) ls \(v)") }
        #expect(ours.hasPrefix("/:\n"))
        #expect(ours.contains("/bin:\n") && ours.contains(" sh -> busybox\n"))
    }
}
