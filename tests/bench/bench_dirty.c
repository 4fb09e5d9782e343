/* bench_dirty.c — the memory part of a checkpoint's pause: collect the pages a target wrote
 * since the last epoch and copy them into a staging buffer.
 *
 * A child process ("target") maps a memfd at a fixed address, touches every page once
 * (memory in use), creates a userfaultfd and sends it to the parent. Per round the parent
 * commands the child to write DIRTY bytes at random distinct pages (one byte per page), waits
 * until it is done (the target is now idle, as if paused), and times rtcr_dirty_collect() with a
 * callback that memcpy()s every dirty run into the staging buffer: that is the pause.
 *
 * Memory sizes 16 MiB, 64 MiB, 256 MiB, 1 GiB (skipped if memory is short) x dirty sizes
 * 4 KiB, 64 KiB, 1 MiB, 16 MiB; ROUNDS rounds each; p50/p99 (nearest rank). memcpy bandwidth
 * is measured in the same run; the goal per row is
 *     pause <= 2 x (dirty bytes / memcpy bandwidth) + 200 us
 * and p99 <= 1 ms for 64 MiB with 1 MiB dirty. HASH and FULL mode are measured at 64 MiB for
 * comparison. Output: a table, then `BENCH name=value unit` lines. Runtime well under 60 s.
 *
 *   bench_dirty [rounds]
 */
#include <rtcr/dirty.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TARGET_ADDR    ((uintptr_t)0x3e0000000000ull)
#define DEFAULT_ROUNDS 100
#define GOAL_SLACK_NS  200000.0 /* the + 200 us of the goal */
#define KIB            ((size_t)1 << 10)
#define MIB            ((size_t)1 << 20)

static const size_t mem_sizes[] = {16 * MIB, 64 * MIB, 256 * MIB, 1024 * MIB};
static const size_t dirty_sizes[] = {4 * KIB, 64 * KIB, 1 * MIB, 16 * MIB};

struct cmd {
    uint64_t seed;   /* random seed of this round's pages */
    uint64_t npages; /* pages to write; 0: quit */
};

struct target {
    pid_t pid;     /* child */
    int sock;      /* parent end of the socketpair */
    int memfd;     /* the dataspace */
    uint8_t *view; /* agent's mapping */
    size_t len;    /* bytes */
    int uffd;      /* received userfaultfd or -1 */
};

struct staging {
    uint8_t *buf; /* copy destination */
    size_t cap;   /* bytes */
    size_t used;  /* bytes copied this round */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_dirty: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

/* ---- the target ---------------------------------------------------------------------------- */

static int send_fd(int sock, int fd)
{
    char byte = 'U';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof(u));
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(fd));
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -errno;
}

static void child_main(int sock, int memfd, size_t len, bool want_uffd)
{
    const size_t pg = (size_t)getpagesize(), npages = len / pg;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    uint8_t *p = mmap((void *)TARGET_ADDR, len, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_FIXED_NOREPLACE, memfd, 0);
    if (p == MAP_FAILED)
        _exit(2);
    for (size_t i = 0; i < npages; i++)
        p[i * pg] = 1;
    uint32_t *perm = malloc(npages * sizeof(*perm));
    if (!perm)
        _exit(2);
    for (size_t i = 0; i < npages; i++)
        perm[i] = (uint32_t)i;
    if (want_uffd) {
        int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* user mode only */);
        if (fd < 0 || send_fd(sock, fd) < 0) {
            char e = 'E';
            (void)send(sock, &e, 1, 0);
        }
        if (fd >= 0)
            close(fd);
    } else {
        char ok = 'k';
        (void)send(sock, &ok, 1, 0);
    }
    struct cmd c;
    while (recv(sock, &c, sizeof(c), 0) == (ssize_t)sizeof(c) && c.npages) {
        uint64_t s = c.seed | 1;
        size_t k = c.npages < npages ? c.npages : npages;
        for (size_t i = 0; i < k; i++) { /* partial Fisher-Yates: k distinct pages */
            size_t j = i + rng_next(&s) % (npages - i);
            uint32_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
            p[(size_t)perm[i] * pg + (rng_next(&s) % pg)]++;
        }
        char ack = 'k';
        if (send(sock, &ack, 1, 0) != 1)
            break;
    }
    _exit(0);
}

static bool target_start(struct target *t, size_t len, bool want_uffd)
{
    int sv[2];
    memset(t, 0, sizeof(*t));
    t->len = len;
    t->uffd = -1;
    t->memfd = memfd_create("bench-dirty", MFD_CLOEXEC);
    if (t->memfd < 0 || ftruncate(t->memfd, (off_t)len) < 0)
        die("memfd", errno);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", errno);
    t->pid = fork();
    if (t->pid < 0)
        die("fork", errno);
    if (t->pid == 0) {
        close(sv[0]);
        child_main(sv[1], t->memfd, len, want_uffd);
    }
    close(sv[1]);
    t->sock = sv[0];
    int r = 0;
    if (want_uffd) {
        r = rtcr_dirty_recv_uffd(t->sock, &t->uffd);
    } else {
        char ok;
        r = recv(t->sock, &ok, 1, 0) == 1 ? 0 : -EPIPE;
    }
    /* the agent's view, mapped after the target populated it: the steady state after the
     * first full checkpoint, when the agent's page tables are filled in */
    t->view = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, t->memfd, 0);
    if (t->view == MAP_FAILED)
        die("mmap", errno);
    return r == 0;
}

static void target_stop(struct target *t)
{
    struct cmd q = {0, 0};
    (void)send(t->sock, &q, sizeof(q), MSG_NOSIGNAL);
    waitpid(t->pid, NULL, 0);
    munmap(t->view, t->len);
    if (t->uffd >= 0)
        close(t->uffd);
    close(t->sock);
    close(t->memfd);
}

static void target_write(struct target *t, uint64_t seed, size_t npages)
{
    struct cmd c = {seed, npages};
    char ack;
    if (send(t->sock, &c, sizeof(c), 0) != (ssize_t)sizeof(c) || recv(t->sock, &ack, 1, 0) != 1)
        die("target command", EPIPE);
}

/* ---- measuring ----------------------------------------------------------------------------- */

static int copy_fn(void *ctx, uintptr_t target_addr, void *view, size_t len)
{
    struct staging *s = ctx;
    (void)target_addr;
    if (len > s->cap - s->used)
        return -ENOSPC;
    memcpy(s->buf + s->used, view, len);
    s->used += len;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile of sorted v[n] */
static uint64_t pct(const uint64_t *v, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    return v[rank - 1 < n ? rank - 1 : n - 1];
}

static double memcpy_bandwidth(void)
{
    const size_t len = 64 * MIB;
    uint8_t *a = malloc(len), *b = malloc(len);
    if (!a || !b)
        die("malloc", ENOMEM);
    memset(a, 1, len);
    memset(b, 2, len);
    double best = 0;
    for (int i = 0; i < 7; i++) {
        uint64_t t0 = now_ns();
        memcpy(b, a, len);
        uint64_t dt = now_ns() - t0;
        double bw = (double)len / ((double)dt / 1e9);
        if (bw > best)
            best = bw;
        a[i] = b[len - 1 - i]; /* keep the copies observable */
    }
    free(a);
    free(b);
    return best;
}

static size_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[128];
    size_t kib = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %zu kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib * KIB;
}

static void size_name(size_t n, char *buf, size_t sz)
{
    if (n >= MIB && n % MIB == 0)
        snprintf(buf, sz, "%zuMiB", n / MIB);
    else
        snprintf(buf, sz, "%zuKiB", n / KIB);
}

struct row {
    uint64_t p50, p99; /* pause, ns */
    uint64_t scan_p50; /* finding dirty units and re-arming, ns */
    uint64_t copy_p50; /* the rest of the pause: copying into staging, ns */
    size_t wrong;      /* rounds whose dirty bytes differed from what was written */
};

static struct row measure(rtcr_dirty_t *tr, struct target *t, struct staging *st, size_t dirty,
                          int rounds, uint64_t seed)
{
    const size_t pg = (size_t)getpagesize();
    uint64_t *pause = calloc((size_t)rounds, sizeof(*pause));
    uint64_t *scan = calloc((size_t)rounds, sizeof(*scan));
    uint64_t *copy = calloc((size_t)rounds, sizeof(*copy));
    struct row row = {0};
    if (!pause || !scan || !copy)
        die("calloc", ENOMEM);
    for (int i = -1; i < rounds; i++) { /* round -1 warms caches up and is not counted */
        target_write(t, seed + (uint64_t)(i + 1) * 7919u, dirty / pg);
        rtcr_dirty_stats_t s;
        st->used = 0;
        uint64_t t0 = now_ns();
        int r = rtcr_dirty_collect(tr, copy_fn, st, &s);
        uint64_t dt = now_ns() - t0;
        if (r < 0)
            die("collect", r);
        bool exact = rtcr_dirty_mode(tr) == RTCR_DIRTY_FULL ? s.bytes_dirty == t->len
                                                            : s.bytes_dirty == dirty;
        if (!exact)
            row.wrong++;
        if (i < 0)
            continue;
        pause[i] = dt;
        scan[i] = s.scan_usec * 1000u;
        copy[i] = dt > scan[i] ? dt - scan[i] : 0;
    }
    qsort(pause, (size_t)rounds, sizeof(*pause), cmp_u64);
    qsort(scan, (size_t)rounds, sizeof(*scan), cmp_u64);
    qsort(copy, (size_t)rounds, sizeof(*copy), cmp_u64);
    row.p50 = pct(pause, (size_t)rounds, 0.50);
    row.p99 = pct(pause, (size_t)rounds, 0.99);
    row.scan_p50 = pct(scan, (size_t)rounds, 0.50);
    row.copy_p50 = pct(copy, (size_t)rounds, 0.50);
    free(copy);
    free(pause);
    free(scan);
    return row;
}

static int count_fn(void *ctx, uintptr_t target_addr, void *view, size_t len)
{
    (void)target_addr;
    (void)view;
    *(size_t *)ctx += len;
    return 0;
}

/* Start a target of mem bytes and a tracker on it; arm it and take the full first epoch
 * (counted, not copied). Prints the arm and first-collect times. */
static rtcr_dirty_t *start_tracking(rtcr_dirty_mode_t mode, struct target *t, size_t mem)
{
    const size_t pg = (size_t)getpagesize();
    char mname[24];
    size_name(mem, mname, sizeof(mname));
    bool uffd = mode == RTCR_DIRTY_UFFD_WP;
    if (!target_start(t, mem, uffd))
        die("the target could not create a userfaultfd", EOPNOTSUPP);
    rtcr_dirty_t *tr = NULL;
    int r = rtcr_dirty_new(mode, t->pid, uffd ? t->uffd : -1, pg, &tr);
    if (r < 0)
        die("rtcr_dirty_new", r);
    uint64_t t0 = now_ns();
    r = rtcr_dirty_add_range(tr, TARGET_ADDR, mem, t->view);
    uint64_t arm = now_ns() - t0;
    if (r < 0)
        die("rtcr_dirty_add_range", r);
    size_t counted = 0;
    t0 = now_ns();
    r = rtcr_dirty_collect(tr, count_fn, &counted, NULL);
    uint64_t first = now_ns() - t0;
    if (r < 0 || counted != mem)
        die("first collect", r < 0 ? r : EPROTO);
    printf("BENCH dirty_%s_%s_arm=%.1f us\n", rtcr_dirty_mode_name(mode), mname, (double)arm / 1e3);
    printf("BENCH dirty_%s_%s_first_collect_nocopy=%.1f us\n", rtcr_dirty_mode_name(mode), mname,
           (double)first / 1e3);
    return tr;
}

/* one table row plus its BENCH lines; returns whether the goal was met */
static bool report(rtcr_dirty_mode_t mode, size_t mem, size_t dirty, int rounds,
                   const struct row *row, double bw)
{
    char mname[24], dname[24], key[96];
    size_name(mem, mname, sizeof(mname));
    size_name(dirty, dname, sizeof(dname));
    size_t copied = mode == RTCR_DIRTY_FULL ? mem : dirty;
    double goal = 2.0 * (double)copied / bw * 1e9 + GOAL_SLACK_NS;
    double ratio = (double)row->p99 / goal;
    printf("%-8s %-8s %-8s %6d %9.1f %9.1f %9.1f %9.1f %9.1f %9.2f %6s\n",
           rtcr_dirty_mode_name(mode), mname, dname, rounds, (double)row->p50 / 1e3,
           (double)row->p99 / 1e3, (double)row->scan_p50 / 1e3, (double)row->copy_p50 / 1e3,
           goal / 1e3, ratio, row->wrong ? "NO" : "yes");
    snprintf(key, sizeof(key), "dirty_%s_%s_%s", rtcr_dirty_mode_name(mode), mname, dname);
    printf("BENCH %s_pause_p50=%.1f us\n", key, (double)row->p50 / 1e3);
    printf("BENCH %s_pause_p99=%.1f us\n", key, (double)row->p99 / 1e3);
    printf("BENCH %s_p99_goal_ratio=%.3f ratio\n", key, ratio);
    return ratio <= 1.0 && !row->wrong;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    if (rounds < 1 || rounds > 100000) {
        fprintf(stderr, "usage: bench_dirty [rounds]\n");
        return 2;
    }
    uint64_t t_start = now_ns();
    char reason[RTCR_DIRTY_REASON_SIZE];
    rtcr_dirty_mode_t best = rtcr_dirty_probe(reason, sizeof(reason));
    printf("dirty tracking: probe says %s%s%s\n", rtcr_dirty_mode_name(best), reason[0] ? ": " : "",
           reason);

    double bw = memcpy_bandwidth();
    printf("memcpy bandwidth: %.2f GB/s (best of 7 x 64 MiB)\n", bw / 1e9);
    printf("goal per row: p99 pause <= 2 x (copied bytes / memcpy bandwidth) + 200 us\n");
    printf("BENCH dirty_memcpy_bandwidth=%.2f GB/s\n", bw / 1e9);

    struct staging st = {.cap = 64 * MIB};
    st.buf = mmap(NULL, st.cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                  -1, 0);
    if (st.buf == MAP_FAILED)
        die("staging", errno);

    int rows = 0, met = 0;
    struct row key_row = {0};
    printf("\n%-8s %-8s %-8s %6s %9s %9s %9s %9s %9s %9s %6s\n", "mode", "memory", "dirty",
           "rounds", "p50_us", "p99_us", "scan_p50", "copy_p50", "goal_us", "p99/goal", "exact");
    for (size_t mi = 0; best == RTCR_DIRTY_UFFD_WP && mi < sizeof(mem_sizes) / sizeof(*mem_sizes);
         mi++) {
        size_t mem = mem_sizes[mi];
        if (mem_available() < 2 * mem + 256 * MIB) {
            char mname[24];
            size_name(mem, mname, sizeof(mname));
            printf("%-8s %-8s skipped: not enough free memory\n", "uffd-wp", mname);
            continue;
        }
        struct target t;
        rtcr_dirty_t *tr = start_tracking(RTCR_DIRTY_UFFD_WP, &t, mem);
        for (size_t di = 0; di < sizeof(dirty_sizes) / sizeof(*dirty_sizes); di++) {
            size_t dirty = dirty_sizes[di];
            if (dirty > mem)
                continue;
            struct row row = measure(tr, &t, &st, dirty, rounds, 0x1234 + mi * 100 + di);
            rows++;
            met += report(RTCR_DIRTY_UFFD_WP, mem, dirty, rounds, &row, bw);
            if (mem == 64 * MIB && dirty == 1 * MIB)
                key_row = row;
        }
        rtcr_dirty_destroy(&tr);
        target_stop(&t);
    }
    if (best != RTCR_DIRTY_UFFD_WP)
        printf("uffd-wp rows skipped: %s\n", reason);

    /* the fallbacks, for comparison (their goal is not expected to hold) */
    int few = rounds < 30 ? rounds : 30;
    for (rtcr_dirty_mode_t m = RTCR_DIRTY_HASH; m <= RTCR_DIRTY_FULL; m++) {
        struct target t;
        rtcr_dirty_t *tr = start_tracking(m, &t, 64 * MIB);
        struct row row = measure(tr, &t, &st, 1 * MIB, few, 0x777);
        (void)report(m, 64 * MIB, 1 * MIB, few, &row, bw);
        rtcr_dirty_destroy(&tr);
        target_stop(&t);
    }

    printf("\n");
    if (best == RTCR_DIRTY_UFFD_WP) {
        bool key_ok = key_row.p99 <= 1000000u;
        printf("uffd-wp rows meeting the goal: %d of %d\n", met, rows);
        printf("64 MiB with 1 MiB dirty: p99 %.1f us %s 1 ms\n", (double)key_row.p99 / 1e3,
               key_ok ? "<=" : ">");
        printf("BENCH dirty_uffd_goal_rows_met=%d of_%d\n", met, rows);
        printf("BENCH dirty_uffd_64MiB_1MiB_p99_le_1ms=%d bool\n", key_ok);
    }
    printf("total runtime: %.1f s\n", (double)(now_ns() - t_start) / 1e9);
    munmap(st.buf, st.cap);
    return 0;
}
