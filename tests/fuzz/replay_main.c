/* replay_main.c — a main() for every fuzzer when built without libFuzzer.
 *
 * Runs LLVMFuzzerTestOneInput once per input: every regular file named on the command line,
 * every regular file inside a directory named there (one level, e.g. a corpus directory), and
 * with no arguments a small built-in set of generic seeds (empty, short, magic-only, random
 * bytes). Each input is passed in an exactly sized heap buffer, so ASan flags any read beyond
 * it. Exits 0 when every input ran (a harness signals a bug by crashing or aborting), 2 when
 * an input cannot be read. Calls LLVMFuzzerInitialize first if the fuzzer defines it, as
 * libFuzzer does.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define REPLAY_MAX_INPUT (64u << 20) /* larger inputs are refused */

static int run_buffer(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);

    if (!copy) {
        fprintf(stderr, "replay: out of memory\n");
        return -ENOMEM;
    }
    if (size)
        memcpy(copy, data, size);
    LLVMFuzzerTestOneInput(copy, size);
    free(copy);
    return 0;
}

static int run_file(int dfd, const char *name, const char *shown)
{
    struct stat st;
    uint8_t *buf;
    size_t got = 0;
    int fd, r = 0;

    fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > REPLAY_MAX_INPUT) {
        fprintf(stderr, "replay: cannot use %s: %s\n", shown,
                fd < 0 ? strerror(errno) : "not a regular file of at most 64 MiB");
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return r;
}

static int run_path(const char *path, unsigned *count)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    int r = 0;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        r = run_file(AT_FDCWD, path, path);
        *count += r == 0;
        return r;
    }
    d = opendir(path);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    while ((de = readdir(d))) {
        struct stat fst;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &fst, 0) < 0 ||
            !S_ISREG(fst.st_mode))
            continue;
        if (run_file(dirfd(d), de->d_name, de->d_name) < 0)
            r = -EINVAL;
        else
            (*count)++;
    }
    closedir(d);
    return r;
}

int main(int argc, char **argv)
{
    static const char *const seeds[] = {"",
                                        "R",
                                        "RTCRIMG1",
                                        "RTCRIMG1\x01\x00\x20\x00",
                                        "{\"type\":\"hello\"}",
                                        "\x00\x01\x02\x03\xff\xfe"};
    unsigned count = 0;
    int failed = 0;

    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2) {
        uint8_t rnd[512];
        uint32_t x = 2463534242u;
        for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
            failed |= run_buffer((const uint8_t *)seeds[i], strlen(seeds[i])) < 0;
            count++;
        }
        for (size_t i = 0; i < sizeof(rnd); i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            rnd[i] = (uint8_t)x;
        }
        for (size_t n = 1; n <= sizeof(rnd); n *= 2, count++)
            failed |= run_buffer(rnd, n) < 0;
    }
    for (int i = 1; i < argc; i++)
        failed |= run_path(argv[i], &count) < 0;
    printf("%s: replayed %u input(s)%s\n", argv[0], count, failed ? ", some unreadable" : "");
    return failed ? 2 : 0;
}
