import ArgumentParser
import Basics
import DiskImage
import Foundation

/// `osbuild image`: build the images of a genimage configuration.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Build disk and filesystem images from a genimage configuration.",
        discussion: """
            Reads genimage's config syntax (include(), ${VAR} and ${VAR:-default}, size
            suffixes k/K/M/G/s/%) and builds hdimage (gpt, mbr, hybrid, none), vfat, ext2/3/4,
            squashfs and file images without root, reproducibly (SOURCE_DATE_EPOCH).
            Paths default to genimage's: root, tmp, input, images; GENIMAGE_<NAME> environment
            variables and the config's config {} section are honoured.
            """)

    @Option(help: "genimage configuration file") var config: String = "genimage.cfg"
    @Option(help: "root filesystem directory (mountpoint-based images)") var rootpath: String?
    @Option(help: "directory for intermediate files (must be empty or absent)") var tmppath: String?
    @Option(help: "directory with input files") var inputpath: String?
    @Option(help: "directory for the generated images") var outputpath: String?
    @Option(help: "colon-separated directories searched by include()") var includepath: String?
    @Option(help: "also write a SHA-256 bmap file next to each hdimage (IMAGE.bmap)") var bmap = false

    func run() throws {
        try runReportingErrors {
            let paths = GenimagePaths(rootpath: rootpath, tmppath: tmppath, inputpath: inputpath, outputpath: outputpath,
                                      includepath: includepath?.split(separator: ":").map(String.init) ?? [])
            let project = try GenimageProject(config: config, paths: paths)
            let outputs = try project.build(epoch: nil)
            for o in outputs {
                if bmap, project.images.first(where: { $0.output == o })?.type == "hdimage" {
                    try BmapWriter.write(image: o, to: o + ".bmap")
                }
                Console.shared.line("wrote \(o)")
            }
        }
    }
}

/// `osbuild inspect IMAGE`: partition table and filesystems of a disk image.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a disk image's partition table and the filesystems inside.")

    @Argument(help: "disk image file") var image: String
    @Flag(help: "print JSON") var json = false

    func run() throws {
        try runReportingErrors {
            let report = try DiskInspector.inspect(image)
            Console.shared.line(json ? report.json() : report.text())
        }
    }
}
