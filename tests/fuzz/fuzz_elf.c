/* fuzz_elf.c — fuzz the ELF build-id reader (rtcr_elf_build_id), which a restore runs on the
 * target binary named by an image and a config.
 *
 * rtcr_elf_build_id() takes a path, so each input is written to a memfd and read back through
 * /proc/self/fd/N. It is read with a roomy buffer, then again with a buffer of exactly the id's
 * size and one byte less, each a separate heap allocation so ASan sees any write past it.
 *
 * Contract checked (abort() on violation):
 *   the result is a length <= the buffer size, or one of -EBADMSG (not a readable ELF64),
 *   -ENOENT (no build-id note), -ENOSPC (buffer too small), -ENOMEM;
 *   nothing is written past the returned length;
 *   the same file gives the same id with a buffer of exactly that size, and -ENOSPC with one
 *   byte less.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rtcr/ecu.h>

#define FUZZ_ID_MAX 256 /* the roomy buffer */
#define FUZZ_FILL   0x5a

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int write_all(int fd, const uint8_t *data, size_t size)
{
    while (size) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Read the id with a buffer of bufsz bytes; checks the bytes past the result stay untouched.
 * Copies the id to out (FUZZ_ID_MAX bytes) when out is not NULL. */
static int read_id(const char *path, size_t bufsz, uint8_t *out)
{
    uint8_t *buf = malloc(bufsz ? bufsz : 1);
    int r;

    if (!buf)
        return -ENOMEM;
    memset(buf, FUZZ_FILL, bufsz ? bufsz : 1);
    r = rtcr_elf_build_id(path, buf, bufsz);
    if (r > (int)bufsz)
        abort();
    if (r != -EBADMSG && r != -ENOENT && r != -ENOSPC && r != -ENOMEM && r < 0)
        abort();
    for (size_t i = r > 0 ? (size_t)r : 0; i < bufsz; i++)
        if (buf[i] != FUZZ_FILL)
            abort();
    if (r > 0 && out)
        memcpy(out, buf, (size_t)r);
    free(buf);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t id[FUZZ_ID_MAX], again[FUZZ_ID_MAX];
    char path[64];
    int fd, r;

    fd = memfd_create("fuzz-elf", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write_all(fd, data, size) < 0) {
        close(fd);
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

    r = read_id(path, sizeof(id), id);
    if (r == -ENOSPC) {
        /* an id longer than FUZZ_ID_MAX: a bigger buffer must not change the verdict's kind */
        if (read_id(path, 4 * FUZZ_ID_MAX, NULL) == -EBADMSG)
            abort();
    } else if (r > 0) {
        if (read_id(path, (size_t)r, again) != r || memcmp(id, again, (size_t)r) != 0)
            abort();
        if (read_id(path, (size_t)r - 1, NULL) != -ENOSPC)
            abort();
    } else if (r == 0) {
        /* an empty id: fits any buffer, even an empty one */
        if (read_id(path, 0, NULL) != 0)
            abort();
    }
    close(fd);
    return 0;
}
