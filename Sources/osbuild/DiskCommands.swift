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
    @Option(help: "write the expanded config (includes and ${VAR} resolved) to FILE, or - for stdout") var configdump: String?
    @Flag(help: "also write a bmap file (SHA-256 per range) next to each hdimage: IMAGE.bmap") var bmap = false
    @Flag(help: "also write IMAGE.xz for each hdimage (multi-threaded liblzma)") var xz = false
    @Flag(help: "also write IMAGE.zip for each hdimage") var zip = false
    @Option(name: .customLong("convert"), help: "also convert each hdimage with qemu-img: qcow2, vmdk, vdi or vhdx (repeatable)")
    var conversions: [String] = []

    func run() throws {
        try runReportingErrors {
            let paths = GenimagePaths(rootpath: rootpath, tmppath: tmppath, inputpath: inputpath, outputpath: outputpath,
                                      includepath: includepath?.split(separator: ":").map(String.init) ?? [])
            let project = try GenimageProject(config: config, paths: paths)
            if let d = configdump {
                if d == "-" { Console.shared.line(project.root.dump()) } else { try FileSystem.writeAtomically(d, project.root.dump()) }
            }
            let formats = try conversions.map { c -> ImageConversion.VirtualFormat in
                guard let f = ImageConversion.VirtualFormat(rawValue: c) else {
                    throw MessageError("--convert \(c): unknown format (use qcow2, vmdk, vdi or vhdx)", exitCode: ExitStatus.usage)
                }
                return f
            }
            let epoch = try BuildClock.sourceDateEpoch() ?? 0
            try project.build(epoch: nil)
            for img in project.images where !img.implicit {
                var written = [img.output]
                if img.type == "hdimage" {
                    if bmap { try BmapWriter.write(image: img.output, to: img.output + ".bmap"); written.append(img.output + ".bmap") }
                    if xz { try ImageConversion.xz(img.output, to: img.output + ".xz"); written.append(img.output + ".xz") }
                    if zip { try ImageConversion.zip(img.output, to: img.output + ".zip", mtime: epoch); written.append(img.output + ".zip") }
                    for f in formats {
                        let out = img.output + "." + f.rawValue
                        try ImageConversion.virtualDisk(img.output, to: out, format: f)
                        written.append(out)
                    }
                }
                let temporary = (try? GenimageValues.bool(img.section, "temporary")) ?? false
                if !temporary { for w in written { Console.shared.line("wrote \(w)") } }
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
            Console.shared.line(json ? report.json() : String(report.text().dropLast()))
        }
    }
}
