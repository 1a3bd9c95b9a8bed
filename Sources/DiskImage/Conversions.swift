import Basics
import CLzma
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Converting a finished disk image for distribution: `.img.xz` (liblzma, multi-threaded),
/// `.zip` (libarchive), and virtual-disk formats through qemu-img. Every output is
/// written to a temp name and renamed on success.
public enum ImageConversion {
    public enum VirtualFormat: String, Sendable, CaseIterable { case qcow2, vmdk, vdi, vhdx }

    struct LzmaError: UserError {
        var path: String
        var code: lzma_ret
        var description: String { "\(path): xz compression failed (liblzma error \(code.rawValue))" }
    }

    /// xz with the multi-threaded encoder (one thread per core, CRC64 check).
    public static func xz(_ input: String, to output: String, preset: UInt32 = 6, threads: UInt32? = nil) throws {
        let inFD = open(input, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else { throw SystemError("open", path: input, errno: errno) }
        defer { close(inFD) }
        try AtomicOutputFile.write(output) { out in
            var strm = lzma_stream()
            var mt = lzma_mt()
            mt.threads = threads ?? max(1, lzma_cputhreads())
            mt.preset = preset
            mt.check = LZMA_CHECK_CRC64
            let rc = lzma_stream_encoder_mt(&strm, &mt)
            guard rc == LZMA_OK else { throw LzmaError(path: output, code: rc) }
            defer { lzma_end(&strm) }
            let size = 1 << 20
            let inBuf = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
            let outBuf = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
            defer { inBuf.deallocate(); outBuf.deallocate() }
            var action = LZMA_RUN
            strm.next_out = outBuf
            strm.avail_out = size
            while true {
                if strm.avail_in == 0 && action == LZMA_RUN {
                    let n = read(inFD, inBuf, size)
                    if n < 0 { if errno == EINTR { continue }; throw SystemError("read", path: input, errno: errno) }
                    strm.next_in = UnsafePointer(inBuf)
                    strm.avail_in = n
                    if n == 0 { action = LZMA_FINISH }
                }
                let r = lzma_code(&strm, action)
                if strm.avail_out == 0 || r == LZMA_STREAM_END {
                    try out.write(UnsafeRawBufferPointer(start: outBuf, count: size - strm.avail_out))
                    strm.next_out = outBuf
                    strm.avail_out = size
                }
                if r == LZMA_STREAM_END { break }
                guard r == LZMA_OK else { throw LzmaError(path: output, code: r) }
            }
        }
    }

    /// A zip holding the image as one deflated member named after the image file.
    public static func zip(_ input: String, to output: String, mtime: Int64 = 0) throws {
        try AtomicOutputFile.write(output) { out in
            try Tar.write(fd: out.fd, path: output, mtime: mtime, format: .zipDeflate) { zip in
                try zip.add(name: FileSystem.basename(input), file: input)
            }
        }
    }

    /// qcow2/vmdk/vdi/vhdx through qemu-img (qemu-utils), which keeps holes unallocated.
    public static func virtualDisk(_ input: String, to output: String, format: VirtualFormat) throws {
        guard Subprocess.which("qemu-img") != nil else {
            throw MessageError("converting to \(format.rawValue) needs qemu-img (install Debian package qemu-utils)", exitCode: ExitStatus.environment)
        }
        try AtomicOutputFile.write(output) { out in
            _ = try Subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", format.rawValue, input, out.tempPath])
        }
    }
}
