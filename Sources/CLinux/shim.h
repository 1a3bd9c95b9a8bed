#include <sys/xattr.h>
#include <sys/sysmacros.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <fcntl.h>
#include <termios.h>
#include <sys/syscall.h>
#include <unistd.h>
/* Start write-back of a file's dirty pages without waiting (sync_file_range with
   SYNC_FILE_RANGE_WRITE); the libc wrapper needs _GNU_SOURCE, which Swift's Glibc
   module does not set. */
static inline int osb_start_writeback(int fd) {
    return (int)syscall(SYS_sync_file_range, fd, (long long)0, (long long)0, 2u);
}
