import CLinux

/// Start write-back of `fd`'s dirty pages without waiting (Linux sync_file_range with
/// SYNC_FILE_RANGE_WRITE). Kept in its own file: importing CLinux next to Glibc makes
/// constants like S_IFMT ambiguous.
func startWriteBack(_ fd: Int32) {
    _ = osb_start_writeback(fd)
}
