/* rtcr_elf.c — the GNU build id of an ELF file.
 *
 * A restore may only continue a target with the very binary its image was taken from: code
 * addresses stored in its heap (handlers, the object pool) must point at the same code. The
 * linker's NT_GNU_BUILD_ID note identifies the binary; it is read from the section headers
 * (64-bit little-endian ELF, as the targets are built here), with every offset bounds-checked
 * because the file is input.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rtcr/ecu.h>

#define ELF_MAX_SIZE (256u << 20)

static int read_at(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EBADMSG;
        done += (size_t)n;
    }
    return 0;
}

int rtcr_elf_build_id(const char *path, uint8_t *buf, size_t bufsz)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    Elf64_Ehdr eh;
    int r = fstat(fd, &st) < 0 ? -errno : 0;
    if (r == 0 && (st.st_size < (off_t)sizeof(eh) || st.st_size > ELF_MAX_SIZE))
        r = -EBADMSG;
    if (r == 0)
        r = read_at(fd, &eh, sizeof(eh), 0);
    if (r == 0 && (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
                   eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum > 4096 ||
                   eh.e_shoff > (uint64_t)st.st_size ||
                   (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) > (uint64_t)st.st_size - eh.e_shoff))
        r = -EBADMSG;
    for (unsigned i = 0; r == 0 && i < eh.e_shnum; i++) {
        Elf64_Shdr sh;
        r = read_at(fd, &sh, sizeof(sh), (off_t)(eh.e_shoff + i * sizeof(sh)));
        if (r < 0 || sh.sh_type != SHT_NOTE)
            continue;
        if (sh.sh_offset > (uint64_t)st.st_size ||
            sh.sh_size > (uint64_t)st.st_size - sh.sh_offset || sh.sh_size > 65536)
            continue;
        uint8_t *notes = malloc(sh.sh_size ? sh.sh_size : 1);
        if (!notes) {
            r = -ENOMEM;
            break;
        }
        r = read_at(fd, notes, sh.sh_size, (off_t)sh.sh_offset);
        for (size_t p = 0; r == 0 && p + sizeof(Elf64_Nhdr) <= sh.sh_size;) {
            Elf64_Nhdr nh;
            memcpy(&nh, notes + p, sizeof(nh));
            size_t namesz = (nh.n_namesz + 3) & ~3u, descsz = (nh.n_descsz + 3) & ~3u;
            size_t body = p + sizeof(nh);
            if (namesz > sh.sh_size || descsz > sh.sh_size || body + namesz + descsz > sh.sh_size)
                break;
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                memcmp(notes + body, "GNU", 4) == 0) {
                if (nh.n_descsz > bufsz) {
                    r = -ENOSPC;
                } else {
                    memcpy(buf, notes + body + namesz, nh.n_descsz);
                    r = (int)nh.n_descsz;
                }
                free(notes);
                close(fd);
                return r;
            }
            p = body + namesz + descsz;
        }
        free(notes);
        if (r < 0)
            break;
    }
    close(fd);
    return r < 0 ? r : -ENOENT;
}
