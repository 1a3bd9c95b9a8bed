import Basics
import FSTree
import Foundation
import Rootfs
import Testing
import TestSupport

/// The importer needs no privileges: the fixture tarball (device nodes, setuid, other
/// owners, xattrs) is built as root, then this test binary is re-run as `nobody` through
/// setpriv to import it, and the tree it sees must equal the one root sees.
@Suite struct NonRootTests {
    static let archiveVar = "OSBUILD_TEST_NONROOT_ARCHIVE"
    static let outVar = "OSBUILD_TEST_NONROOT_OUT"

    @Test func unprivilegedImportKeepsAllMetadata() throws {
        guard TestEnv.isRoot else { print("SKIP: needs root to build the fixture and switch to nobody"); return }
        guard let setpriv = TestEnv.oracle("setpriv", package: "util-linux") else { return }
        let exe = ProcessInfo.processInfo.arguments[0]
        guard exe.hasSuffix(".xctest") || exe.hasSuffix("PackageTests") else {
            print("SKIP: cannot re-run the test binary (\(exe))"); return
        }
        let t = try TempDir("nonroot")
        try FileSystem.makeDirectories(t.sub("src"))
        try makeFixtureTree(t.sub("src"))
        let archive = t.sub("rootfs.tar.xz")
        try sh("tar --xattrs --xattrs-include='*' --format=pax -cJf \(q(archive)) -C \(q(t.sub("src"))) .")
        try FileSystem.makeDirectories(t.sub("out"))
        try sh("chmod 755 \(q(t.path)) && chmod 644 \(q(archive)) && chmod 777 \(q(t.sub("out")))")

        let run = try Subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "env", "\(Self.archiveVar)=\(archive)", "\(Self.outVar)=\(t.sub("out"))",
             exe, "--testing-library", "swift-testing", "--filter", "childImportAsNobody"],
            directory: t.sub("out"), check: false)
        #expect(run.status == 0, "child failed:\n\(run.stdoutText)\n\(run.stderrText)")
        let childListing = try FileSystem.readText(t.sub("out/listing.txt"))

        var tree = FSTree()
        try ArchiveImporter.importArchive(archive, into: &tree, blobs: BlobStore(directory: t.sub("rootblobs")))
        let rootListing = TreeListing.render(tree, options: .init(showXAttrs: true, fullTime: true))
        #expect(childListing == rootListing)
        #expect(childListing.contains("-rwsr-xr-x") && childListing.contains("brw-r--r--"))
        #expect(childListing.contains(" 260, 300000 ") && childListing.contains("xattr trusted.overlay.opaque"))
        // The only files the child created are its blobs, owned by nobody.
        for f in try FileSystem.listDirectory(t.sub("out/blobs")) {
            #expect(try FileSystem.lstat(t.sub("out/blobs/" + f)).uid == 65534)
        }
    }

    /// Runs only when re-executed by the test above (as nobody); a no-op otherwise.
    @Test func childImportAsNobody() throws {
        let env = ProcessInfo.processInfo.environment
        guard let archive = env[Self.archiveVar], let out = env[Self.outVar] else { return }
        #expect(getuid() == 65534 && geteuid() == 65534)
        var tree = FSTree()
        try ArchiveImporter.importArchive(archive, into: &tree, blobs: BlobStore(directory: out + "/blobs"))
        try FileSystem.writeAtomically(out + "/listing.txt", TreeListing.render(tree, options: .init(showXAttrs: true, fullTime: true)))
    }
}
