import CLinux
import Foundation

/// Identity of the running program's code, so caches can tell when the code that made
/// an output changed (a new osbuild binary may write different bytes from the same
/// inputs). It is the ELF build ID of the main executable: the linker hashes the whole
/// output into it, so it changes with any code change and stays the same for the same
/// build. Read from the mapped note segment (CLinux shim, via the aux vector), so it costs no file I/O.
public enum ExecutableIdentity {
    public static let buildID: String = readBuildID() ?? fallbackIdentity()

    private static func readBuildID() -> String? {
        var bytes = [UInt8](repeating: 0, count: 64)
        let n = bytes.withUnsafeMutableBufferPointer { osb_main_build_id($0.baseAddress, Int32($0.count)) }
        return n > 0 ? Hex.encode(bytes.prefix(Int(n))) : nil
    }

    /// Without a build ID, the executable's size and modification time stand in: a
    /// rebuilt binary then also invalidates caches.
    private static func fallbackIdentity() -> String {
        var st = stat()
        guard stat("/proc/self/exe", &st) == 0 else { return "unknown" }
        return "size\(st.st_size)-mtime\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }
}
