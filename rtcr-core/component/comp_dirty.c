/* comp_dirty.c — the target's part of dirty-page tracking (librtcr-comp, libc only).
 *
 * A userfaultfd is bound to the address space (mm) of the process that creates it, so the
 * target creates it and hands it to the agent, which does everything else through it
 * (UFFDIO_API, UFFDIO_REGISTER, UFFDIO_WRITEPROTECT; see rtcr_dirty.c). The target never reads
 * the fd: in async write-protect mode the kernel resolves the faults itself, so the target's
 * threads never block on it. The target closes its own copy after sending, so that the
 * agent's duplicate is the only one and tracking ends when the agent lets go.
 *
 * user-mode-only faults: allowed even with vm.unprivileged_userfaultfd = 0; /dev/userfaultfd
 * (Linux >= 6.1) is the fallback where the syscall is filtered or unknown (valgrind).
 *
 * Compiled without PIE into static targets and also linked into PIE test programs: keep it
 * free of absolute data references (no string literals, no globals).
 */
#include <rtcr/dirty.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

int rtcr_dirty_target_create_uffd(void)
{
    const int flags = O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY;
    int fd = (int)syscall(SYS_userfaultfd, flags);
    if (fd >= 0)
        return fd;
    int err = errno;
    /* on the stack, built from immediates: no relocation against .rodata */
    char dev[] = {'/', 'd', 'e', 'v', '/', 'u', 's', 'e', 'r',
                  'f', 'a', 'u', 'l', 't', 'f', 'd', '\0'};
    int ctl = open(dev, O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -err;
    fd = ioctl(ctl, USERFAULTFD_IOC_NEW, flags);
    if (fd < 0)
        err = errno;
    close(ctl);
    return fd >= 0 ? fd : -err;
}

int rtcr_dirty_target_send_uffd(int sock)
{
    int fd = rtcr_dirty_target_create_uffd();
    if (fd < 0)
        return fd;

    char byte = 'U';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr align;              /* alignment of the control buffer */
        char buf[CMSG_SPACE(sizeof(int))]; /* one SCM_RIGHTS fd */
    } u;
    memset(&u, 0, sizeof(u));
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = u.buf,
        .msg_controllen = sizeof(u.buf),
    };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(fd));

    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    int r = n == 1 ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return r;
}
