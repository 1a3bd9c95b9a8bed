#include <sys/xattr.h>
#include <sys/sysmacros.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <fcntl.h>
#include <termios.h>
