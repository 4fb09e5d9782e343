/* test_dirty.c — dirty-page tracking against real target processes.
 *
 * Each test forks a child ("target") that maps a memfd at a fixed address, optionally creates
 * a userfaultfd with the component library's rtcr_dirty_target_send_uffd() and sends it over a
 * SOCK_SEQPACKET socketpair (SCM_RIGHTS), then writes bytes at offsets the parent commands.
 * The parent (the "agent") maps the same memfd, tracks the child's range and, after every
 * round of writes, asserts that a collect reports exactly the units written: every reported
 * run unit-aligned, maximal (adjacent units merged), with the right agent view pointer, and
 * nothing else. The same scenarios run in UFFD_WP and HASH mode; uffd tests skip (cmocka
 * skip()) when the kernel lacks async write-protect.
 */
#include <rtcr/dirty.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define TARGET_ADDR ((uintptr_t)0x3e0000000000ull) /* above ASan's shadow, free in tests */
#define MAX_OFFS    4096                           /* offsets per write command */

enum { CMD_WRITE = 1, CMD_QUIT = 2 };

struct cmd {
    uint32_t op;            /* CMD_* */
    uint32_t n;             /* offsets used */
    uint64_t off[MAX_OFFS]; /* byte offsets into the mapping to increment */
};

/* the target process and the agent's side of it */
struct child {
    pid_t pid;     /* the target, 0 once reaped */
    int sock;      /* parent end of the socketpair */
    int memfd;     /* the dataspace */
    uint8_t *view; /* the agent's mapping of it */
    size_t len;    /* bytes */
    int uffd;      /* received userfaultfd, or -1 */
};

/* ---- the target ---------------------------------------------------------------------------- */

static void child_main(int sock, int memfd, size_t len, bool want_uffd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int32_t status = 0;
    uint8_t *p = mmap((void *)TARGET_ADDR, len, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_FIXED_NOREPLACE, memfd, 0);
    if (p == MAP_FAILED || (uintptr_t)p != TARGET_ADDR)
        status = -EADDRINUSE;
    close(memfd);
    if (send(sock, &status, sizeof(status), 0) != sizeof(status) || status < 0)
        _exit(1);
    if (want_uffd && rtcr_dirty_target_send_uffd(sock) < 0) {
        char e = 'E';
        (void)send(sock, &e, 1, 0);
    }
    struct cmd *c = malloc(sizeof(*c));
    if (!c)
        _exit(1);
    for (;;) {
        ssize_t n = recv(sock, c, sizeof(*c), 0);
        if (n <= 0 || c->op == CMD_QUIT)
            break;
        for (uint32_t i = 0; i < c->n; i++)
            p[c->off[i]]++;
        char ack = 'k';
        if (send(sock, &ack, 1, 0) != 1)
            break;
    }
    _exit(0);
}

/* Start a target with len bytes at TARGET_ADDR. With want_uffd, returns false (and leaves *c
 * cleaned up) if the target could not create a userfaultfd. */
static bool child_start(struct child *c, size_t len, bool want_uffd)
{
    int sv[2];
    memset(c, 0, sizeof(*c));
    c->uffd = -1;
    c->len = len;
    c->memfd = memfd_create("test-dirty", MFD_CLOEXEC);
    assert_true(c->memfd >= 0);
    assert_int_equal(ftruncate(c->memfd, (off_t)len), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        close(sv[0]);
        child_main(sv[1], c->memfd, len, want_uffd);
    }
    close(sv[1]);
    c->sock = sv[0];
    c->view = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0);
    assert_true(c->view != MAP_FAILED);
    int32_t status = -1;
    assert_int_equal(recv(c->sock, &status, sizeof(status), 0), sizeof(status));
    assert_int_equal(status, 0);
    if (want_uffd && rtcr_dirty_recv_uffd(c->sock, &c->uffd) < 0)
        return false;
    return true;
}

static void child_stop(struct child *c)
{
    if (c->pid > 0) {
        struct cmd q = {.op = CMD_QUIT};
        (void)send(c->sock, &q, offsetof(struct cmd, off), MSG_NOSIGNAL);
        int st;
        assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
        c->pid = 0;
    }
    if (c->view && c->view != MAP_FAILED)
        munmap(c->view, c->len);
    c->view = NULL;
    if (c->uffd >= 0)
        close(c->uffd);
    c->uffd = -1;
    if (c->sock >= 0)
        close(c->sock);
    c->sock = -1;
    if (c->memfd >= 0)
        close(c->memfd);
    c->memfd = -1;
}

static void child_kill(struct child *c)
{
    kill(c->pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
    c->pid = 0;
}

/* the target increments the byte at each offset; returns when it is done */
static void child_write(struct child *c, const uint64_t *off, size_t n)
{
    struct cmd *cmd = malloc(sizeof(*cmd));
    assert_non_null(cmd);
    assert_true(n <= MAX_OFFS);
    cmd->op = CMD_WRITE;
    cmd->n = (uint32_t)n;
    memcpy(cmd->off, off, n * sizeof(*off));
    size_t sz = offsetof(struct cmd, off) + n * sizeof(*off);
    assert_int_equal(send(c->sock, cmd, sz, 0), (ssize_t)sz);
    free(cmd);
    char ack = 0;
    assert_int_equal(recv(c->sock, &ack, 1, 0), 1);
    assert_int_equal(ack, 'k');
}

static void child_write_pages(struct child *c, const size_t *pages, size_t n)
{
    uint64_t *off = calloc(n ? n : 1, sizeof(*off));
    assert_non_null(off);
    for (size_t i = 0; i < n; i++)
        off[i] = pages[i] * (uint64_t)getpagesize() + 17; /* inside the page */
    child_write(c, off, n);
    free(off);
}

/* ---- recording and checking collects ------------------------------------------------------- */

struct got {
    uintptr_t addr; /* reported target address */
    void *view;     /* reported agent view */
    size_t len;     /* reported length */
};

struct rec {
    struct got *v; /* reports in callback order */
    size_t n;      /* reports */
    size_t cap;    /* allocated */
    int fail_with; /* if < 0: the callback returns this */
};

static int rec_fn(void *ctx, uintptr_t addr, void *view, size_t len)
{
    struct rec *r = ctx;
    if (r->fail_with < 0)
        return r->fail_with;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->v = realloc(r->v, r->cap * sizeof(*r->v));
        assert_non_null(r->v);
    }
    r->v[r->n++] = (struct got){addr, view, len};
    return 0;
}

static void rec_reset(struct rec *r)
{
    r->n = 0;
    r->fail_with = 0;
}

static void rec_free(struct rec *r)
{
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* expected dirty units of one tracked range */
struct expect {
    uintptr_t base;      /* range start in the target */
    size_t len;          /* range length */
    uint8_t *view;       /* agent view of the range start */
    const size_t *units; /* dirty units, any order */
    size_t n;            /* how many */
};

/* Assert that the recorded reports are exactly the expected units of the given ranges: every
 * report lies in one range, starts at a unit boundary, ends at one (or the range end), points
 * at the matching agent view, is not adjacent to the previous report of the same range
 * (merged), comes in ascending order, and the union equals the expected set. */
static void check(const struct rec *r, size_t gran, const struct expect *e, size_t ne)
{
    size_t matched = 0;
    for (size_t k = 0; k < ne; k++) {
        size_t nunits = (e[k].len + gran - 1) / gran;
        uint8_t *want = calloc(nunits, 1), *have = calloc(nunits, 1);
        assert_non_null(want);
        assert_non_null(have);
        for (size_t i = 0; i < e[k].n; i++) {
            assert_true(e[k].units[i] < nunits);
            want[e[k].units[i]] = 1;
        }
        uintptr_t prev_end = 0;
        for (size_t i = 0; i < r->n; i++) {
            const struct got *g = &r->v[i];
            if (g->addr < e[k].base || g->addr >= e[k].base + e[k].len)
                continue;
            matched++;
            size_t off = g->addr - e[k].base;
            assert_true(g->len > 0);
            assert_true(off + g->len <= e[k].len);
            assert_int_equal(off % gran, 0);
            assert_true(g->len % gran == 0 || off + g->len == e[k].len);
            assert_ptr_equal(g->view, e[k].view ? e[k].view + off : NULL);
            if (prev_end)
                assert_true(g->addr > prev_end); /* ascending, and merged when adjacent */
            prev_end = g->addr + g->len;
            for (size_t u = off / gran; u < (off + g->len + gran - 1) / gran; u++) {
                assert_int_equal(have[u], 0);
                have[u] = 1;
            }
        }
        for (size_t u = 0; u < nunits; u++) {
            if (want[u] != have[u])
                fail_msg("range %#lx unit %zu: expected %s, reported %s", (unsigned long)e[k].base,
                         u, want[u] ? "dirty" : "clean", have[u] ? "dirty" : "clean");
        }
        free(want);
        free(have);
    }
    assert_int_equal(matched, r->n); /* nothing outside the tracked ranges */
}

static void collect_check(rtcr_dirty_t *t, struct rec *r, size_t gran, const struct expect *e,
                          size_t ne, rtcr_dirty_stats_t *ret_st)
{
    rtcr_dirty_stats_t st;
    rec_reset(r);
    assert_int_equal(rtcr_dirty_collect(t, rec_fn, r, &st), 0);
    check(r, gran, e, ne);
    assert_int_equal(st.ranges_reported, r->n);
    if (ret_st)
        *ret_st = st;
}

/* the whole range as expected units */
static size_t *all_units(size_t len, size_t gran, size_t *ret_n)
{
    size_t n = (len + gran - 1) / gran;
    size_t *u = calloc(n, sizeof(*u));
    assert_non_null(u);
    for (size_t i = 0; i < n; i++)
        u[i] = i;
    *ret_n = n;
    return u;
}

/* Start a child and a tracker in the given mode; skips the test if uffd-wp is unavailable. */
static rtcr_dirty_t *setup(rtcr_dirty_mode_t mode, struct child *c, size_t len, size_t gran)
{
    bool uffd = mode == RTCR_DIRTY_UFFD_WP;
    if (!child_start(c, len, uffd)) {
        child_stop(c);
        skip(); /* the kernel cannot create a userfaultfd: uffd tests do not apply */
    }
    rtcr_dirty_t *t = NULL;
    int r = rtcr_dirty_new(mode, c->pid, uffd ? c->uffd : -1, gran, &t);
    if (r == -EOPNOTSUPP) {
        child_stop(c);
        print_message("uffd-wp unsupported by this kernel: skipping\n");
        skip();
    }
    assert_int_equal(r, 0);
    assert_non_null(t);
    return t;
}

/* ---- scenarios (run in UFFD_WP and HASH mode) ---------------------------------------------- */

static void scenario_basic(rtcr_dirty_mode_t mode)
{
    const size_t pg = (size_t)getpagesize(), npages = 64, len = npages * pg;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_stats_t st;
    /* pages 0 and 1 are populated before tracking starts, the rest never touched */
    rtcr_dirty_t *t = setup(mode, &c, len, pg);
    child_write_pages(&c, (size_t[]){0, 1}, 2);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), 0);
    assert_int_equal(rtcr_dirty_range_count(t), 1);

    size_t nall;
    size_t *all = all_units(len, pg, &nall);
    child_write_pages(&c, (size_t[]){7}, 1); /* before the first collect: inside epoch 1 */
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, all, nall}, 1, &st);
    assert_int_equal(st.units_dirty, npages);
    assert_int_equal(st.bytes_dirty, len);
    assert_int_equal(st.pages_scanned, npages);
    assert_int_equal(r.n, 1); /* one merged run */

    /* a round without writes */
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, NULL, 0}, 1, &st);
    assert_int_equal(st.units_dirty, 0);
    assert_int_equal(r.n, 0);

    /* never-touched pages (5, 40) and a populated one (0) */
    child_write_pages(&c, (size_t[]){5, 40, 0}, 3);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, (size_t[]){0, 5, 40}, 3}, 1,
                  &st);
    assert_int_equal(st.units_dirty, 3);
    assert_int_equal(r.n, 3);

    /* the same page again, and the last page */
    child_write_pages(&c, (size_t[]){63, 5}, 2);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, (size_t[]){5, 63}, 2}, 1,
                  NULL);

    /* adjacent pages merge into one run; several writes to one page count once */
    child_write_pages(&c, (size_t[]){12, 10, 11, 11, 1}, 5);
    collect_check(t, &r, pg,
                  &(struct expect){TARGET_ADDR, len, c.view, (size_t[]){1, 10, 11, 12}, 4}, 1, &st);
    assert_int_equal(r.n, 2);
    assert_int_equal(st.units_dirty, 4);

    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, NULL, 0}, 1, NULL);
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    assert_null(t);
    rtcr_dirty_destroy(&t); /* idempotent */
    child_stop(&c);
}

static void scenario_granularity(rtcr_dirty_mode_t mode)
{
    const size_t pg = (size_t)getpagesize(), gran = 4 * pg;
    const size_t len = 66 * pg; /* 17 units, the last one 2 pages long */
    struct child c;
    struct rec r = {0};
    rtcr_dirty_stats_t st;
    rtcr_dirty_t *t = setup(mode, &c, len, gran);
    assert_int_equal(rtcr_dirty_granularity(t), gran);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), 0);
    size_t nall;
    size_t *all = all_units(len, gran, &nall);
    assert_int_equal(nall, 17);
    collect_check(t, &r, gran, &(struct expect){TARGET_ADDR, len, c.view, all, nall}, 1, &st);
    assert_int_equal(st.bytes_dirty, len);

    /* the last byte of unit 3 and the first byte of unit 5: units 3 and 5, not 4 */
    child_write(&c, (uint64_t[]){4 * gran - 1, 5 * gran}, 2);
    collect_check(t, &r, gran, &(struct expect){TARGET_ADDR, len, c.view, (size_t[]){3, 5}, 2}, 1,
                  &st);
    assert_int_equal(st.units_dirty, 2);
    assert_int_equal(st.bytes_dirty, 2 * gran);

    /* the last byte of unit 6 and the first of unit 7: one run of two units */
    child_write(&c, (uint64_t[]){7 * gran - 1, 7 * gran}, 2);
    collect_check(t, &r, gran, &(struct expect){TARGET_ADDR, len, c.view, (size_t[]){6, 7}, 2}, 1,
                  NULL);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].len, 2 * gran);

    /* a page in the middle of unit 9, and the short last unit */
    child_write(&c, (uint64_t[]){9 * gran + 2 * pg + 100, len - 1}, 2);
    collect_check(t, &r, gran, &(struct expect){TARGET_ADDR, len, c.view, (size_t[]){9, 16}, 2}, 1,
                  &st);
    assert_int_equal(r.v[1].len, 2 * pg); /* clipped at the range end */
    assert_int_equal(st.bytes_dirty, gran + 2 * pg);

    collect_check(t, &r, gran, &(struct expect){TARGET_ADDR, len, c.view, NULL, 0}, 1, NULL);
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* more scattered dirty pages than one PAGEMAP_SCAN output vector holds */
static void scenario_scattered(rtcr_dirty_mode_t mode)
{
    const size_t pg = (size_t)getpagesize();
    const size_t ndirty = 2 * RTCR_DIRTY_SCAN_VEC + 37, npages = 2 * ndirty + 3, len = npages * pg;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_stats_t st;
    rtcr_dirty_t *t = setup(mode, &c, len, pg);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), 0);
    size_t nall;
    size_t *all = all_units(len, pg, &nall);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, all, nall}, 1, NULL);

    size_t *pages = calloc(ndirty, sizeof(*pages));
    assert_non_null(pages);
    for (size_t i = 0; i < ndirty; i++)
        pages[i] = 1 + 2 * i; /* every other page: no two merge */
    child_write_pages(&c, pages, ndirty);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, pages, ndirty}, 1, &st);
    assert_int_equal(r.n, ndirty);
    assert_int_equal(st.units_dirty, ndirty);
    if (mode == RTCR_DIRTY_UFFD_WP)
        assert_true(st.scan_calls >= 3); /* the vector filled at least twice */

    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, NULL, 0}, 1, NULL);
    free(pages);
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* two ranges; remove one: its writes are no longer reported, the other's still are */
static void scenario_remove(rtcr_dirty_mode_t mode)
{
    const size_t pg = (size_t)getpagesize(), half = 16 * pg, len = 2 * half;
    const uintptr_t a = TARGET_ADDR, b = TARGET_ADDR + half;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_t *t = setup(mode, &c, len, pg);
    /* add b first: ranges are kept sorted whatever the order */
    assert_int_equal(rtcr_dirty_add_range(t, b, half, c.view + half), 0);
    assert_int_equal(rtcr_dirty_add_range(t, a, half, c.view), 0);
    assert_int_equal(rtcr_dirty_range_count(t), 2);
    size_t nall;
    size_t *all = all_units(half, pg, &nall);
    struct expect e[2] = {{a, half, c.view, all, nall}, {b, half, c.view + half, all, nall}};
    collect_check(t, &r, pg, e, 2, NULL);
    assert_int_equal(r.n, 2); /* not merged across ranges */

    child_write_pages(&c, (size_t[]){3, 16 + 4}, 2);
    e[0] = (struct expect){a, half, c.view, (size_t[]){3}, 1};
    e[1] = (struct expect){b, half, c.view + half, (size_t[]){4}, 1};
    collect_check(t, &r, pg, e, 2, NULL);

    assert_int_equal(rtcr_dirty_remove_range(t, a + pg), -ENOENT);
    assert_int_equal(rtcr_dirty_remove_range(t, a), 0);
    assert_int_equal(rtcr_dirty_remove_range(t, a), -ENOENT);
    assert_int_equal(rtcr_dirty_range_count(t), 1);
    child_write_pages(&c, (size_t[]){2, 3, 16 + 9}, 3);
    collect_check(t, &r, pg, &(struct expect){b, half, c.view + half, (size_t[]){9}, 1}, 1, NULL);

    /* added again: its first collect is whole again */
    assert_int_equal(rtcr_dirty_add_range(t, a, half, c.view), 0);
    e[0] = (struct expect){a, half, c.view, all, nall};
    e[1] = (struct expect){b, half, c.view + half, NULL, 0};
    collect_check(t, &r, pg, e, 2, NULL);
    child_write_pages(&c, (size_t[]){15, 16}, 2);
    e[0] = (struct expect){a, half, c.view, (size_t[]){15}, 1};
    e[1] = (struct expect){b, half, c.view + half, (size_t[]){0}, 1};
    collect_check(t, &r, pg, e, 2, NULL);
    assert_int_equal(r.n, 2);

    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* a failing callback fails the collect; the next collect reports everything */
static void scenario_callback_error(rtcr_dirty_mode_t mode)
{
    const size_t pg = (size_t)getpagesize(), len = 8 * pg;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_t *t = setup(mode, &c, len, pg);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), 0);
    size_t nall;
    size_t *all = all_units(len, pg, &nall);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, all, nall}, 1, NULL);
    child_write_pages(&c, (size_t[]){2}, 1);
    rec_reset(&r);
    r.fail_with = -EIO;
    assert_int_equal(rtcr_dirty_collect(t, rec_fn, &r, NULL), -EIO);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, all, nall}, 1, NULL);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, NULL, 0}, 1, NULL);
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

static void test_uffd_basic(void **state)
{
    (void)state;
    scenario_basic(RTCR_DIRTY_UFFD_WP);
}
static void test_uffd_granularity(void **state)
{
    (void)state;
    scenario_granularity(RTCR_DIRTY_UFFD_WP);
}
static void test_uffd_scattered(void **state)
{
    (void)state;
    scenario_scattered(RTCR_DIRTY_UFFD_WP);
}
static void test_uffd_remove(void **state)
{
    (void)state;
    scenario_remove(RTCR_DIRTY_UFFD_WP);
}
static void test_uffd_callback_error(void **state)
{
    (void)state;
    scenario_callback_error(RTCR_DIRTY_UFFD_WP);
}
static void test_hash_basic(void **state)
{
    (void)state;
    scenario_basic(RTCR_DIRTY_HASH);
}
static void test_hash_granularity(void **state)
{
    (void)state;
    scenario_granularity(RTCR_DIRTY_HASH);
}
static void test_hash_scattered(void **state)
{
    (void)state;
    scenario_scattered(RTCR_DIRTY_HASH);
}
static void test_hash_remove(void **state)
{
    (void)state;
    scenario_remove(RTCR_DIRTY_HASH);
}
static void test_hash_callback_error(void **state)
{
    (void)state;
    scenario_callback_error(RTCR_DIRTY_HASH);
}

/* ---- mode-specific tests ------------------------------------------------------------------- */

static void test_full_mode(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize(), len = 10 * pg, gran = 4 * pg;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_stats_t st;
    rtcr_dirty_t *t = setup(RTCR_DIRTY_FULL, &c, len, gran);
    assert_int_equal(rtcr_dirty_mode(t), RTCR_DIRTY_FULL);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, NULL), 0);
    size_t nall;
    size_t *all = all_units(len, gran, &nall);
    for (int round = 0; round < 3; round++) {
        if (round == 1)
            child_write_pages(&c, (size_t[]){1}, 1);
        collect_check(t, &r, gran, &(struct expect){TARGET_ADDR, len, NULL, all, nall}, 1, &st);
        assert_int_equal(st.bytes_dirty, len);
        assert_int_equal(st.units_dirty, 3);
    }
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* hash mode compares content: a write that stores the same bytes is not a change, and the
 * agent's own writes count too */
static void test_hash_content_semantics(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize(), len = 8 * pg;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_t *t = setup(RTCR_DIRTY_HASH, &c, len, pg);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), 0);
    size_t nall;
    size_t *all = all_units(len, pg, &nall);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, all, nall}, 1, NULL);
    /* 256 increments of one byte bring it back to its old value */
    uint64_t off[256];
    for (int i = 0; i < 256; i++)
        off[i] = 3 * pg + 9;
    child_write(&c, off, 256);
    c.view[6 * pg] ^= 0x5a;
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, (size_t[]){6}, 1}, 1, NULL);
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* uffd mode tracks the target's writes only: the agent writing through its own mapping
 * (as a restore does) is not reported */
static void test_uffd_agent_writes_not_reported(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize(), len = 8 * pg;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_t *t = setup(RTCR_DIRTY_UFFD_WP, &c, len, pg);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), 0);
    size_t nall;
    size_t *all = all_units(len, pg, &nall);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, all, nall}, 1, NULL);
    c.view[2 * pg] = 1;
    c.view[4 * pg] = 1; /* a page the target never touched */
    child_write_pages(&c, (size_t[]){4}, 1);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, (size_t[]){4}, 1}, 1, NULL);
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* the target dies: collect fails with -ESRCH (never "nothing dirty"), add_range too */
static void test_uffd_target_died(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize(), len = 8 * pg;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_t *t = setup(RTCR_DIRTY_UFFD_WP, &c, len, pg);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, 4 * pg, c.view), 0);
    size_t nall;
    size_t *all = all_units(4 * pg, pg, &nall);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, 4 * pg, c.view, all, nall}, 1, NULL);
    child_write_pages(&c, (size_t[]){1}, 1);
    child_kill(&c);
    rec_reset(&r);
    assert_int_equal(rtcr_dirty_collect(t, rec_fn, &r, NULL), -ESRCH);
    assert_int_equal(r.n, 0); /* the callback never ran */
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR + 4 * pg, 4 * pg, NULL), -ESRCH);
    assert_int_equal(rtcr_dirty_range_count(t), 1);
    assert_int_equal(rtcr_dirty_remove_range(t, TARGET_ADDR), 0); /* best effort: fine */
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* a uffd can be initialised once: a second tracker on it is refused */
static void test_uffd_api_once(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize();
    struct child c;
    rtcr_dirty_t *t = setup(RTCR_DIRTY_UFFD_WP, &c, 4 * pg, pg), *t2 = NULL;
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, c.pid, c.uffd, pg, &t2), -EOPNOTSUPP);
    assert_null(t2);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* a uffd of another process (here: the agent's own) registers in the wrong address space */
static void test_uffd_foreign_uffd(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize(), len = 4 * pg;
    struct child c;
    if (!child_start(&c, len, true)) {
        child_stop(&c);
        skip();
    }
    int mine = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* user mode only */);
    if (mine < 0) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        assert_true(dev >= 0);
        mine = ioctl(dev, _IO(0xAA, 0x00), O_CLOEXEC | O_NONBLOCK | 1);
        close(dev);
    }
    assert_true(mine >= 0);
    /* the agent maps the same memory at the same address in its own address space */
    void *same = mmap((void *)TARGET_ADDR, len, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_FIXED_NOREPLACE, c.memfd, 0);
    assert_ptr_equal(same, (void *)TARGET_ADDR);
    rtcr_dirty_t *t = NULL;
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, c.pid, mine, pg, &t), 0);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), -EXDEV);
    assert_int_equal(rtcr_dirty_range_count(t), 0);
    rtcr_dirty_destroy(&t);
    munmap(same, len);
    close(mine);
    child_stop(&c);
}

static void test_errors(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize(), len = 16 * pg;
    rtcr_dirty_t *t = NULL;
    struct child c;
    if (!child_start(&c, len, true)) {
        child_stop(&c);
        skip();
    }

    /* granularity: zero, not a power of two, below a page, above the limit */
    const size_t bad_gran[] = {0, 3 * pg, pg / 2, 3000, (size_t)RTCR_DIRTY_MAX_GRANULARITY * 2};
    for (size_t i = 0; i < sizeof(bad_gran) / sizeof(bad_gran[0]); i++) {
        assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_HASH, c.pid, -1, bad_gran[i], &t), -EINVAL);
        assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, c.pid, c.uffd, bad_gran[i], &t),
                         -EINVAL);
    }
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_MODE_MAX, c.pid, -1, pg, &t), -EINVAL);
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_HASH, c.pid, c.uffd, pg, &t), -EINVAL);
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, c.pid, -1, pg, &t), -EINVAL);
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, 0, c.uffd, pg, &t), -EINVAL);
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, c.pid, c.sock, pg, &t), -EBADF);
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, c.pid, 1000, pg, &t), -EBADF);
    assert_null(t);

    /* a dead pid */
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, dead, c.uffd, pg, &t), -ESRCH);
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_HASH, dead, -1, pg, &t), -ESRCH);
    assert_null(t);

    /* ranges: alignment, length, overlap, unmapped memory in the target */
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, c.pid, c.uffd, 2 * pg, &t), 0);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR + 1, len - pg, c.view), -EINVAL);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len - 1, c.view), -EINVAL);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, 0, c.view), -EINVAL);
    assert_int_equal(rtcr_dirty_add_range(t, UINTPTR_MAX - pg + 1, 2 * pg, NULL), -EINVAL);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len + pg, c.view), -EINVAL);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR - 4 * pg, 4 * pg, NULL), -EINVAL);
    assert_int_equal(rtcr_dirty_range_count(t), 0);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR + 4 * pg, 4 * pg, c.view + 4 * pg), 0);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR + 7 * pg, 2 * pg, NULL), -EEXIST);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, 5 * pg, NULL), -EEXIST);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, 4 * pg, NULL), 0); /* adjacent: ok */
    assert_int_equal(rtcr_dirty_range_count(t), 2);
    assert_int_equal(rtcr_dirty_collect(t, NULL, NULL, NULL), -EINVAL);
    rtcr_dirty_destroy(&t);

    /* hash mode needs the agent's view */
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_HASH, c.pid, -1, pg, &t), 0);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, NULL), -EINVAL);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

static void test_names(void **state)
{
    (void)state;
    for (unsigned m = 0; m < RTCR_DIRTY_MODE_MAX; m++) {
        rtcr_dirty_mode_t back = RTCR_DIRTY_MODE_MAX;
        assert_int_equal(rtcr_dirty_mode_parse(rtcr_dirty_mode_name(m), &back), 0);
        assert_int_equal(back, m);
    }
    assert_string_equal(rtcr_dirty_mode_name(RTCR_DIRTY_UFFD_WP), "uffd-wp");
    assert_string_equal(rtcr_dirty_mode_name(RTCR_DIRTY_MODE_MAX), "?");
    rtcr_dirty_mode_t m = RTCR_DIRTY_HASH;
    assert_int_equal(rtcr_dirty_mode_parse("soft-dirty", &m), -EINVAL);
    assert_int_equal(rtcr_dirty_mode_parse(NULL, &m), -EINVAL);
    assert_int_equal(m, RTCR_DIRTY_HASH);
}

/* the probe agrees with what really works against a target */
static void test_probe(void **state)
{
    (void)state;
    char reason[RTCR_DIRTY_REASON_SIZE];
    memset(reason, 'x', sizeof(reason));
    rtcr_dirty_mode_t mode = rtcr_dirty_probe(reason, sizeof(reason));
    assert_true(memchr(reason, '\0', sizeof(reason)) != NULL);

    const size_t pg = (size_t)getpagesize();
    struct child c;
    bool works = false;
    if (child_start(&c, 4 * pg, true)) {
        rtcr_dirty_t *t = NULL;
        if (rtcr_dirty_new(RTCR_DIRTY_UFFD_WP, c.pid, c.uffd, pg, &t) == 0)
            works = rtcr_dirty_add_range(t, TARGET_ADDR, 4 * pg, NULL) == 0;
        rtcr_dirty_destroy(&t);
    }
    child_stop(&c);
    print_message("probe: %s%s%s\n", rtcr_dirty_mode_name(mode), reason[0] ? ": " : "", reason);
    if (works) {
        assert_int_equal(mode, RTCR_DIRTY_UFFD_WP);
        assert_string_equal(reason, "");
    } else {
        assert_int_equal(mode, RTCR_DIRTY_HASH);
        assert_true(reason[0] != '\0');
    }
    /* a short buffer is truncated, never overrun; NULL is accepted */
    char tiny[4] = {'x', 'x', 'x', 'x'};
    (void)rtcr_dirty_probe(tiny, 2);
    assert_int_equal(tiny[2], 'x');
    assert_true(tiny[0] == '\0' || tiny[1] == '\0');
    (void)rtcr_dirty_probe(NULL, 0);
}

/* fd passing: a message without an fd is an error, a closed peer is -EPIPE */
static void test_recv_uffd_errors(void **state)
{
    (void)state;
    int sv[2], fd = -1;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(send(sv[1], "x", 1, 0), 1);
    assert_int_equal(rtcr_dirty_recv_uffd(sv[0], &fd), -EBADMSG);
    close(sv[1]);
    assert_int_equal(rtcr_dirty_recv_uffd(sv[0], &fd), -EPIPE);
    assert_int_equal(fd, -1);
    close(sv[0]);
}

/* ---- the two-thread paths (helper thread): same result as serial ---------------------------- */

#define MIB ((size_t)1 << 20)

/* Assert that two recordings, of two targets with the same writes, report the same runs: same
 * target addresses and lengths in the same order, and agent views at the same offsets. */
static void same_reports(const struct rec *a, const uint8_t *va, const struct rec *b,
                         const uint8_t *vb)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->v[i].addr, b->v[i].addr);
        assert_int_equal(a->v[i].len, b->v[i].len);
        assert_int_equal((const uint8_t *)a->v[i].view - va, (const uint8_t *)b->v[i].view - vb);
    }
}

/* ranges of the 40 MiB targets of the parallel tests: a small one, one of 32 MiB (two 16 MiB
 * slices meeting at TARGET_ADDR + 20 MiB), and a 4 MiB one at the end */
static const struct {
    size_t off, len;
} par_ranges[] = {{0, 4 * MIB}, {4 * MIB, 32 * MIB}, {36 * MIB, 4 * MIB}};

/* Pages written in round k: the edges of every range and slice, pages either side of the slice
 * boundary at 20 MiB (one run across it), and scattered pages. */
static size_t par_pages(unsigned k, size_t *v, size_t max)
{
    const size_t pg = (size_t)getpagesize(), mib = MIB / pg;
    size_t n = 0;
    size_t fixed[] = {0,        4 * mib - 1,  4 * mib,      20 * mib - 2, 20 * mib - 1,
                      20 * mib, 20 * mib + 1, 36 * mib - 1, 36 * mib,     40 * mib - 1};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) && n < max; i++)
        if ((i + k) % 3) /* a different subset each round */
            v[n++] = fixed[i];
    for (size_t i = 0; i < 600 && n < max; i++)
        v[n++] = (i * 7919u + k * 104729u) % (40 * mib);
    return n;
}

/* Two targets with identical writes, one tracked serially, one with both threads (thresholds
 * 0): every collect reports the same runs; ranges added and removed between collects. */
static void scenario_parallel(rtcr_dirty_mode_t mode, size_t gran, unsigned flags)
{
    const size_t len = 40 * MIB;
    struct child ca, cb;
    struct rec ra = {0}, rb = {0};
    rtcr_dirty_stats_t sa, sb;
    rtcr_dirty_t *ta = setup(mode, &ca, len, gran);
    rtcr_dirty_t *tb = setup(mode, &cb, len, gran);
    assert_int_equal(rtcr_dirty_set_parallel(ta, SIZE_MAX, SIZE_MAX, 0), 0);
    assert_int_equal(rtcr_dirty_set_parallel(tb, 0, 0, flags), 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(rtcr_dirty_add_range(ta, TARGET_ADDR + par_ranges[i].off,
                                              par_ranges[i].len, ca.view + par_ranges[i].off),
                         0);
        assert_int_equal(rtcr_dirty_add_range(tb, TARGET_ADDR + par_ranges[i].off,
                                              par_ranges[i].len, cb.view + par_ranges[i].off),
                         0);
    }
    size_t *pages = calloc(MAX_OFFS, sizeof(*pages));
    assert_non_null(pages);
    for (unsigned k = 0; k < 6; k++) {
        if (k == 3) { /* the 4 MiB range at the end becomes two, the first range goes */
            for (int w = 0; w < 2; w++) {
                rtcr_dirty_t *t = w ? tb : ta;
                uint8_t *view = w ? cb.view : ca.view;
                assert_int_equal(rtcr_dirty_remove_range(t, TARGET_ADDR + 36 * MIB), 0);
                assert_int_equal(rtcr_dirty_remove_range(t, TARGET_ADDR), 0);
                assert_int_equal(
                    rtcr_dirty_add_range(t, TARGET_ADDR + 36 * MIB, MIB, view + 36 * MIB), 0);
                assert_int_equal(
                    rtcr_dirty_add_range(t, TARGET_ADDR + 37 * MIB, 3 * MIB, view + 37 * MIB), 0);
            }
        }
        if (k > 0) {
            size_t n = par_pages(k, pages, MAX_OFFS);
            child_write_pages(&ca, pages, n);
            child_write_pages(&cb, pages, n);
        }
        rec_reset(&ra);
        rec_reset(&rb);
        assert_int_equal(rtcr_dirty_collect(ta, rec_fn, &ra, &sa), 0);
        assert_int_equal(rtcr_dirty_collect(tb, rec_fn, &rb, &sb), 0);
        assert_true(ra.n > 0);
        same_reports(&ra, ca.view, &rb, cb.view);
        assert_int_equal(sa.scan_threads, 1);
        assert_int_equal(sb.scan_threads, 2);
        assert_int_equal(sa.bytes_dirty, sb.bytes_dirty);
        assert_int_equal(sa.units_dirty, sb.units_dirty);
        assert_int_equal(sa.pages_scanned, sb.pages_scanned);
    }
    /* the run across the slice boundary at 20 MiB is one run, as the serial scan reports it */
    if (gran == (size_t)getpagesize() && mode == RTCR_DIRTY_UFFD_WP) {
        size_t mib = MIB / gran;
        size_t edge[] = {20 * mib - 1, 20 * mib};
        child_write_pages(&cb, edge, 2);
        rec_reset(&rb);
        assert_int_equal(rtcr_dirty_collect(tb, rec_fn, &rb, NULL), 0);
        assert_int_equal(rb.n, 1);
        assert_int_equal(rb.v[0].addr, TARGET_ADDR + 20 * MIB - gran);
        assert_int_equal(rb.v[0].len, 2 * gran);
    }
    free(pages);
    rec_free(&ra);
    rec_free(&rb);
    rtcr_dirty_destroy(&ta);
    rtcr_dirty_destroy(&tb);
    assert_null(tb);
    child_stop(&ca);
    child_stop(&cb);
}

/* claimed: whoever is free takes the next slice (what runs in production; which boundaries
 * fall between the threads depends on timing); dealt: every slice boundary is one */
static void test_uffd_parallel_equals_serial(void **state)
{
    (void)state;
    scenario_parallel(RTCR_DIRTY_UFFD_WP, (size_t)getpagesize(), 0);
}

static void test_uffd_parallel_dealt_equals_serial(void **state)
{
    (void)state;
    scenario_parallel(RTCR_DIRTY_UFFD_WP, (size_t)getpagesize(), RTCR_DIRTY_PAR_DEAL);
}

static void test_uffd_parallel_dealt_equals_serial_64k(void **state)
{
    (void)state;
    scenario_parallel(RTCR_DIRTY_UFFD_WP, 64 * 1024, RTCR_DIRTY_PAR_DEAL);
}

static void test_hash_parallel_equals_serial(void **state)
{
    (void)state;
    scenario_parallel(RTCR_DIRTY_HASH, (size_t)getpagesize(), 0);
}

static void test_hash_parallel_dealt_equals_serial(void **state)
{
    (void)state;
    scenario_parallel(RTCR_DIRTY_HASH, (size_t)getpagesize(), RTCR_DIRTY_PAR_DEAL);
}

/* A scan that fails in the middle of a parallel collect (a range unregistered behind the
 * tracker's back, in the last slice) fails the collect without calling the callback, and the
 * next successful collect reports every range whole. */
static void test_uffd_parallel_scan_error(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize(), len = 40 * MIB;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_t *t = setup(RTCR_DIRTY_UFFD_WP, &c, len, pg);
    assert_int_equal(rtcr_dirty_set_parallel(t, 0, 0, RTCR_DIRTY_PAR_DEAL), 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR + par_ranges[i].off, par_ranges[i].len,
                                              c.view + par_ranges[i].off),
                         0);
    rec_reset(&r);
    assert_int_equal(rtcr_dirty_collect(t, rec_fn, &r, NULL), 0);
    size_t *pages = calloc(MAX_OFFS, sizeof(*pages));
    assert_non_null(pages);
    child_write_pages(&c, pages, par_pages(1, pages, MAX_OFFS));

    /* unregister the last range through the target's uffd (the tracker holds a duplicate) */
    struct uffdio_range ur = {.start = TARGET_ADDR + 36 * MIB, .len = 4 * MIB};
    assert_int_equal(ioctl(c.uffd, UFFDIO_UNREGISTER, &ur), 0);
    rec_reset(&r);
    assert_int_equal(rtcr_dirty_collect(t, rec_fn, &r, NULL), -EPERM);
    assert_int_equal(r.n, 0); /* a scan error: the callback never ran */

    /* re-arm the broken range: now every range is reported whole, not only that one */
    assert_int_equal(rtcr_dirty_remove_range(t, TARGET_ADDR + 36 * MIB), 0);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR + 36 * MIB, 4 * MIB, c.view + 36 * MIB),
                     0);
    struct expect e[3];
    size_t *all[3];
    for (size_t i = 0; i < 3; i++) {
        size_t n;
        all[i] = all_units(par_ranges[i].len, pg, &n);
        e[i] = (struct expect){TARGET_ADDR + par_ranges[i].off, par_ranges[i].len,
                               c.view + par_ranges[i].off, all[i], n};
    }
    collect_check(t, &r, pg, e, 3, NULL);
    for (size_t i = 0; i < 3; i++)
        e[i].n = 0;
    collect_check(t, &r, pg, e, 3, NULL); /* and then nothing */
    for (size_t i = 0; i < 3; i++)
        free(all[i]);
    free(pages);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* A callback error after a parallel scan makes the next collect report everything. */
static void test_uffd_parallel_callback_error(void **state)
{
    (void)state;
    const size_t pg = (size_t)getpagesize(), len = 40 * MIB;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_t *t = setup(RTCR_DIRTY_UFFD_WP, &c, len, pg);
    assert_int_equal(rtcr_dirty_set_parallel(t, 0, 0, RTCR_DIRTY_PAR_DEAL), 0);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), 0);
    size_t nall;
    size_t *all = all_units(len, pg, &nall);
    struct expect whole = {TARGET_ADDR, len, c.view, all, nall};
    collect_check(t, &r, pg, &whole, 1, NULL);
    child_write_pages(&c, (size_t[]){3, 5000}, 2);
    rec_reset(&r);
    r.fail_with = -EIO;
    assert_int_equal(rtcr_dirty_collect(t, rec_fn, &r, NULL), -EIO);
    collect_check(t, &r, pg, &whole, 1, NULL);
    collect_check(t, &r, pg, &(struct expect){TARGET_ADDR, len, c.view, NULL, 0}, 1, NULL);
    free(all);
    rec_free(&r);
    rtcr_dirty_destroy(&t);
    child_stop(&c);
}

/* rtcr_dirty_copy_begin/_finish: the same bytes at the same places on both paths, including
 * segments that cross piece boundaries and empty ones; misuse is refused. */
static void scenario_copy(unsigned flags)
{
    const size_t total = 3 * MIB + 12345;
    uint8_t *src = malloc(total), *d1 = calloc(1, total + 64), *d2 = calloc(1, total + 64);
    assert_non_null(src);
    assert_non_null(d1);
    assert_non_null(d2);
    for (size_t i = 0; i < total; i++)
        src[i] = (uint8_t)(i * 131u + (i >> 12));
    /* segments of varied sizes copied to mirrored places (every byte once, disjoint) */
    rtcr_dirty_copy_t s1[64], s2[64];
    size_t n = 0, at = 0, lens[] = {0, 1, 4096, 200000, 7, 1 << 20, 65536, 131072, 99999};
    while (at < total && n < 63) {
        size_t l = lens[n % (sizeof(lens) / sizeof(lens[0]))];
        if (l > total - at)
            l = total - at;
        size_t dst = total - at - l;
        s1[n] = (rtcr_dirty_copy_t){d1 + dst, src + at, l};
        s2[n] = (rtcr_dirty_copy_t){d2 + dst, src + at, l};
        at += l;
        n++;
    }
    s1[n] = (rtcr_dirty_copy_t){d1, src + at, total - at};
    s2[n] = (rtcr_dirty_copy_t){d2, src + at, total - at};
    n++;
    rtcr_dirty_t *ts = NULL, *tp = NULL;
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_FULL, 0, -1, 4096, &ts), 0);
    assert_int_equal(rtcr_dirty_new(RTCR_DIRTY_FULL, 0, -1, 4096, &tp), 0);
    assert_int_equal(rtcr_dirty_set_parallel(ts, SIZE_MAX, SIZE_MAX, 0), 0);
    assert_int_equal(rtcr_dirty_set_parallel(tp, 0, 0, flags), 0);
    for (int round = 0; round < 3; round++) { /* the helper is reused */
        memset(d1, 0xee, total + 64);
        memset(d2, 0xee, total + 64);
        assert_int_equal(rtcr_dirty_copy_begin(ts, s1, n), 0);
        rtcr_dirty_copy_finish(ts);
        assert_int_equal(rtcr_dirty_copy_begin(tp, s2, n), 0);
        assert_int_equal(rtcr_dirty_copy_begin(tp, s2, n), -EINVAL); /* one at a time */
        assert_int_equal(rtcr_dirty_set_parallel(tp, 0, 0, 0), -EINVAL);
        assert_int_equal(rtcr_dirty_collect(tp, rec_fn, &(struct rec){0}, NULL), -EINVAL);
        rtcr_dirty_copy_finish(tp);
        assert_memory_equal(d1, d2, total + 64);
        for (size_t i = 0; i < n; i++)
            assert_memory_equal(s2[i].dst, s2[i].src, s2[i].len);
    }
    assert_int_equal(rtcr_dirty_copy_begin(tp, NULL, 0), 0); /* nothing to copy is fine */
    rtcr_dirty_copy_finish(tp);
    assert_int_equal(rtcr_dirty_copy_begin(NULL, s1, n), -EINVAL);
    assert_int_equal(rtcr_dirty_copy_begin(tp, NULL, 1), -EINVAL);
    assert_int_equal(rtcr_dirty_set_parallel(NULL, 0, 0, 0), -EINVAL);
    assert_int_equal(rtcr_dirty_set_parallel(ts, 0, 0, 1u << 7), -EINVAL); /* unknown flag */
    /* destroy with a copy begun and not finished: it is finished first, the helper joined */
    memset(d2, 0xee, total + 64);
    assert_int_equal(rtcr_dirty_copy_begin(tp, s2, n), 0);
    rtcr_dirty_destroy(&tp);
    assert_null(tp);
    assert_memory_equal(d1, d2, total + 64);
    rtcr_dirty_destroy(&ts);
    free(src);
    free(d1);
    free(d2);
}

static void test_copy(void **state)
{
    (void)state;
    scenario_copy(0);
}

static void test_copy_dealt(void **state)
{
    (void)state;
    scenario_copy(RTCR_DIRTY_PAR_DEAL);
}

/* Destroy right after a parallel collect (the helper idle, possibly still spinning) and on a
 * tracker whose helper never started; both are clean (ASan/valgrind check the join). */
static void test_uffd_parallel_destroy_idle(void **state)
{
    (void)state;
    const size_t len = 40 * MIB;
    struct child c;
    struct rec r = {0};
    rtcr_dirty_t *t = setup(RTCR_DIRTY_UFFD_WP, &c, len, (size_t)getpagesize());
    assert_int_equal(rtcr_dirty_set_parallel(t, 0, 0, RTCR_DIRTY_PAR_DEAL), 0);
    assert_int_equal(rtcr_dirty_add_range(t, TARGET_ADDR, len, c.view), 0);
    rtcr_dirty_stats_t st;
    assert_int_equal(rtcr_dirty_collect(t, rec_fn, &r, &st), 0);
    assert_int_equal(st.scan_threads, 2);
    rtcr_dirty_destroy(&t);
    assert_null(t);
    rtcr_dirty_destroy(&t); /* idempotent */
    rec_free(&r);
    child_stop(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_recv_uffd_errors),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_uffd_basic),
        cmocka_unit_test(test_uffd_granularity),
        cmocka_unit_test(test_uffd_scattered),
        cmocka_unit_test(test_uffd_remove),
        cmocka_unit_test(test_uffd_callback_error),
        cmocka_unit_test(test_uffd_agent_writes_not_reported),
        cmocka_unit_test(test_uffd_target_died),
        cmocka_unit_test(test_uffd_api_once),
        cmocka_unit_test(test_uffd_foreign_uffd),
        cmocka_unit_test(test_hash_basic),
        cmocka_unit_test(test_hash_granularity),
        cmocka_unit_test(test_hash_scattered),
        cmocka_unit_test(test_hash_remove),
        cmocka_unit_test(test_hash_callback_error),
        cmocka_unit_test(test_hash_content_semantics),
        cmocka_unit_test(test_full_mode),
        cmocka_unit_test(test_uffd_parallel_equals_serial),
        cmocka_unit_test(test_uffd_parallel_dealt_equals_serial),
        cmocka_unit_test(test_uffd_parallel_dealt_equals_serial_64k),
        cmocka_unit_test(test_hash_parallel_equals_serial),
        cmocka_unit_test(test_hash_parallel_dealt_equals_serial),
        cmocka_unit_test(test_uffd_parallel_scan_error),
        cmocka_unit_test(test_uffd_parallel_callback_error),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_copy_dealt),
        cmocka_unit_test(test_uffd_parallel_destroy_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
