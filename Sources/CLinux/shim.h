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
#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>
/* Copies the ELF build ID (NT_GNU_BUILD_ID note) of the main program into out and
   returns its length, or 0 if there is none. The program headers come from the aux
   vector; the load bias is AT_PHDR minus PT_PHDR's address (0 for a non-PIE binary). */
static inline int osb_main_build_id(unsigned char *out, int cap) {
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    unsigned long phnum = getauxval(AT_PHNUM);
    if (!ph || !phnum) return 0;
    uintptr_t bias = 0;
    for (unsigned long i = 0; i < phnum; i++)
        if (ph[i].p_type == PT_PHDR) bias = (uintptr_t)ph - ph[i].p_vaddr;
    for (unsigned long i = 0; i < phnum; i++) {
        if (ph[i].p_type != PT_NOTE) continue;
        const unsigned char *p = (const unsigned char *)(bias + ph[i].p_vaddr);
        size_t off = 0, end = ph[i].p_memsz;
        while (off + sizeof(ElfW(Nhdr)) <= end) {
            ElfW(Nhdr) n;
            memcpy(&n, p + off, sizeof n);
            size_t name = off + sizeof n, desc = name + ((n.n_namesz + 3) & ~3u);
            size_t next = desc + ((n.n_descsz + 3) & ~3u);
            if (next > end) break;
            if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 && memcmp(p + name, "GNU", 4) == 0
                && n.n_descsz > 0 && (int)n.n_descsz <= cap) {
                memcpy(out, p + desc, n.n_descsz);
                return (int)n.n_descsz;
            }
            off = next;
        }
    }
    return 0;
}
