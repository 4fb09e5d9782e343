/* rtcr_dirty.c — incremental memory tracking (agent side). See rtcr/dirty.h for the contract
 * and docs/dirty-tracking.md for the mechanism and measurements.
 *
 * UFFD_WP mode, as the kernel's pagemap documentation describes it (Linux >= 6.7): a
 * userfaultfd with UFFD_FEATURE_WP_ASYNC resolves write-protect faults itself, clearing the
 * page table entry's uffd-wp bit instead of queueing a message; PAGEMAP_SCAN with
 * PM_SCAN_WP_MATCHING and category PAGE_IS_WRITTEN returns the pages whose bit is clear and
 * sets it again under the page-table lock, so "report" and "re-arm" are one atomic step per
 * entry. On shmem (memfd) the protection survives for entries never faulted in (pte markers),
 * so the first write to a hole is seen too. The uffd must be created in the target (it binds
 * the creator's mm); every ioctl on it works from the agent, which holds a duplicate.
 *
 * A PAGEMAP_SCAN on an address space that is being torn down walks no VMAs and succeeds with
 * nothing found, indistinguishable from "nothing written". So every collect checks afterwards
 * that the mm is still alive: a pread of one pagemap entry returns 0 bytes once the mm has no
 * users, and an mm never comes back to life, so "alive after the scan" means "alive during it".
 *
 * Collect works in two phases: phase 1 finds all dirty units of all ranges (scanning and
 * re-arming, or hashing) into a run list; phase 2 calls the callback per run. Any failure sets
 * every range's `full` flag, so the next successful collect reports everything: a failed epoch
 * never loses a write.
 *
 * Invariants: ranges are sorted by address and never overlap; every range's addr and len are
 * page aligned; units are counted from each range's start.
 */
#include <rtcr/dirty.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- kernel interface missing from older headers (values from the Linux 6.7 uapi) ---------- */

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1ull << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1ull << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1ull << 15)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#ifndef PAGEMAP_SCAN
struct page_region {
    uint64_t start;      /* first byte of the region */
    uint64_t end;        /* one past its last byte */
    uint64_t categories; /* PAGE_IS_* of the region (masked by return_mask) */
};

struct pm_scan_arg {
    uint64_t size;                /* sizeof(struct pm_scan_arg) */
    uint64_t flags;               /* PM_SCAN_* */
    uint64_t start;               /* first address to walk, page aligned */
    uint64_t end;                 /* end of the walk */
    uint64_t walk_end;            /* out: where the walk stopped (== end when complete) */
    uint64_t vec;                 /* struct page_region[vec_len] */
    uint64_t vec_len;             /* entries in vec */
    uint64_t max_pages;           /* stop after this many pages (0: no limit) */
    uint64_t category_inverted;   /* categories that match when clear */
    uint64_t category_mask;       /* all of these must match */
    uint64_t category_anyof_mask; /* at least one of these must match (0: ignored) */
    uint64_t return_mask;         /* categories reported in page_region.categories */
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED (1 << 0)
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WRITTEN (1 << 1)
#endif
#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0)
#endif
#ifndef PM_SCAN_CHECK_WPASYNC
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

/* features the agent asks for on the target's uffd */
#define UFFD_WANT_FEATURES                                                                         \
    (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_UNPOPULATED)

/* ---- types --------------------------------------------------------------------------------- */

struct dirty_range {
    uintptr_t addr;   /* start in the target's address space, page aligned */
    size_t len;       /* bytes, page aligned, > 0 */
    uint8_t *view;    /* agent's mapping of the same bytes, borrowed; may be NULL (not HASH) */
    size_t n_units;   /* ceil(len / granularity) */
    bool full;        /* the next collect reports the whole range */
    uint64_t *hashes; /* HASH mode: XXH3 per unit as of the last collect; NULL otherwise */
};

/* a run of dirty units [u0, u1) of one range, found in phase 1 of a collect */
struct dirty_run {
    size_t range; /* index into ranges */
    size_t u0;    /* first unit */
    size_t u1;    /* one past the last unit */
};

struct rtcr_dirty {
    rtcr_dirty_mode_t mode;     /* tracking mode */
    pid_t pid;                  /* the target (0: unknown, HASH/FULL only) */
    int uffd;                   /* our duplicate of the target's userfaultfd, or -1 */
    int pagemap_fd;             /* /proc/pid/pagemap, or -1 */
    size_t page_size;           /* system page size */
    size_t gran;                /* tracking unit in bytes */
    unsigned gran_shift;        /* log2(gran) */
    struct dirty_range *ranges; /* sorted by addr, n_ranges used */
    size_t n_ranges;            /* ranges tracked */
    size_t cap_ranges;          /* allocated entries in ranges */
    struct dirty_run *runs;     /* phase-1 output of the collect in progress */
    size_t n_runs;              /* runs used */
    size_t cap_runs;            /* allocated entries in runs */
    struct page_region *vec;    /* PAGEMAP_SCAN output, RTCR_DIRTY_SCAN_VEC entries */
};

/* ---- small helpers ------------------------------------------------------------------------- */

static uint64_t now_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static bool is_pow2(size_t x)
{
    return x && !(x & (x - 1));
}

static void mark_all_full(rtcr_dirty_t *t)
{
    for (size_t i = 0; i < t->n_ranges; i++)
        t->ranges[i].full = true;
}

static int open_pagemap(pid_t pid, int *ret_fd)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    *ret_fd = fd;
    return 0;
}

/* 0 if the mm behind pagemap_fd still has users, -ESRCH once it is torn down (see the design
 * comment); addr is any address, mapped or not. */
static int mm_alive(int pagemap_fd, uintptr_t addr, size_t page_size)
{
    uint64_t entry;
    ssize_t n = pread(pagemap_fd, &entry, sizeof(entry), (off_t)(addr / page_size * 8));
    if (n == (ssize_t)sizeof(entry))
        return 0;
    if (n < 0 && errno != ESRCH)
        return -errno;
    return -ESRCH;
}

/* Errors of ioctls on the target's uffd: the kernel answers ENOMEM or ESRCH once the target's
 * mm has no users; tell that apart from a real ENOMEM by asking pagemap. */
static int uffd_errno(const rtcr_dirty_t *t, int err, uintptr_t addr)
{
    if ((err == ENOMEM || err == ESRCH) && mm_alive(t->pagemap_fd, addr, t->page_size) < 0)
        return -ESRCH;
    return -err;
}

/* ---- probe --------------------------------------------------------------------------------- */

static int create_uffd(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd >= 0)
        return fd;
    int err = errno;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0)
        return -err;
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0)
        err = errno;
    close(dev);
    return fd >= 0 ? fd : -err;
}

/* the trial of rtcr_dirty_probe(); returns 0 or -errno with why[] set */
static int probe_trial(char *why, size_t why_size)
{
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    const size_t len = 4 * pg;
    int uffd = -1, memfd = -1, pm = -1, r = 0;
    uint8_t *p = MAP_FAILED;

    uffd = create_uffd();
    if (uffd < 0) {
        r = uffd;
        snprintf(why, why_size, "cannot create a userfaultfd: %s", strerror(-r));
        goto out;
    }
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_WANT_FEATURES};
    if (ioctl(uffd, UFFDIO_API, &api) < 0) {
        r = -errno;
        snprintf(why, why_size,
                 "userfaultfd lacks async write-protect on shmem (UFFD_FEATURE_WP_ASYNC, "
                 "Linux >= 6.7): %s",
                 strerror(-r));
        goto out;
    }
    memfd = memfd_create("rtcr-dirty-probe", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, (off_t)len) < 0) {
        r = -errno;
        snprintf(why, why_size, "memfd: %s", strerror(-r));
        goto out;
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (p == MAP_FAILED) {
        r = -errno;
        snprintf(why, why_size, "mmap: %s", strerror(-r));
        goto out;
    }
    p[0] = 1; /* page 0 populated before protection, pages 1..3 never touched */
    struct uffdio_register reg = {.range = {(uintptr_t)p, len}, .mode = UFFDIO_REGISTER_MODE_WP};
    struct uffdio_writeprotect wp = {.range = {(uintptr_t)p, len},
                                     .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 || ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
        r = -errno;
        snprintf(why, why_size, "userfaultfd write-protect on memfd: %s", strerror(-r));
        goto out;
    }
    r = open_pagemap(getpid(), &pm);
    if (r < 0) {
        snprintf(why, why_size, "/proc/self/pagemap: %s", strerror(-r));
        goto out;
    }
    p[2 * pg] = 1; /* a write to a never-touched page */
    struct page_region vec[4];
    memset(vec, 0, sizeof(vec));
    struct pm_scan_arg arg = {
        .size = sizeof(arg),
        .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        .start = (uintptr_t)p,
        .end = (uintptr_t)p + len,
        .vec = (uintptr_t)vec,
        .vec_len = 4,
        .category_mask = PAGE_IS_WRITTEN,
        .return_mask = PAGE_IS_WRITTEN,
    };
    long n = ioctl(pm, PAGEMAP_SCAN, &arg);
    if (n < 0) {
        r = -errno;
        snprintf(why, why_size, "PAGEMAP_SCAN ioctl (Linux >= 6.7) failed: %s", strerror(-r));
        goto out;
    }
    if (n != 1 || vec[0].start != (uintptr_t)p + 2 * pg || vec[0].end != vec[0].start + pg) {
        r = -EPROTO;
        snprintf(why, why_size, "PAGEMAP_SCAN reported %ld regions instead of the written page", n);
        goto out;
    }
    p[0] = 2; /* a populated page, after re-arming */
    arg.walk_end = 0;
    n = ioctl(pm, PAGEMAP_SCAN, &arg);
    if (n != 1 || vec[0].start != (uintptr_t)p || vec[0].end != (uintptr_t)p + pg) {
        r = -EPROTO;
        snprintf(why, why_size, "PAGEMAP_SCAN did not re-arm write-protection");
        goto out;
    }
out:
    if (p != MAP_FAILED)
        munmap(p, len);
    close_fd(&pm);
    close_fd(&memfd);
    close_fd(&uffd);
    return r;
}

rtcr_dirty_mode_t rtcr_dirty_probe(char *reason, size_t reason_size)
{
    char why[RTCR_DIRTY_REASON_SIZE] = "";
    rtcr_dirty_mode_t mode =
        probe_trial(why, sizeof(why)) < 0 ? RTCR_DIRTY_HASH : RTCR_DIRTY_UFFD_WP;
    if (reason && reason_size)
        snprintf(reason, reason_size, "%s", mode == RTCR_DIRTY_UFFD_WP ? "" : why);
    return mode;
}

/* ---- names --------------------------------------------------------------------------------- */

static const char *const mode_names[RTCR_DIRTY_MODE_MAX] = {
    [RTCR_DIRTY_UFFD_WP] = "uffd-wp",
    [RTCR_DIRTY_HASH] = "hash",
    [RTCR_DIRTY_FULL] = "full",
};

const char *rtcr_dirty_mode_name(rtcr_dirty_mode_t mode)
{
    return (unsigned)mode < RTCR_DIRTY_MODE_MAX ? mode_names[mode] : "?";
}

int rtcr_dirty_mode_parse(const char *name, rtcr_dirty_mode_t *ret_mode)
{
    if (!name)
        return -EINVAL;
    for (unsigned i = 0; i < RTCR_DIRTY_MODE_MAX; i++) {
        if (strcmp(name, mode_names[i]) == 0) {
            *ret_mode = (rtcr_dirty_mode_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static int check_is_uffd(int fd)
{
    char link[64], target[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return -EBADF;
    target[n] = '\0';
    return strcmp(target, "anon_inode:[userfaultfd]") == 0 ? 0 : -EBADF;
}

int rtcr_dirty_new(rtcr_dirty_mode_t mode, pid_t pid, int uffd, size_t granularity,
                   rtcr_dirty_t **ret)
{
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    int r;

    if (!ret || (unsigned)mode >= RTCR_DIRTY_MODE_MAX)
        return -EINVAL;
    if (!is_pow2(granularity) || granularity < pg || granularity > RTCR_DIRTY_MAX_GRANULARITY)
        return -EINVAL;
    if (pid < 0)
        return -EINVAL;
    if (mode == RTCR_DIRTY_UFFD_WP) {
        if (pid == 0 || uffd < 0)
            return -EINVAL;
        r = check_is_uffd(uffd);
        if (r < 0)
            return r;
    } else {
        if (uffd != -1)
            return -EINVAL;
        if (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH)
            return -ESRCH;
    }

    rtcr_dirty_t *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->mode = mode;
    t->pid = pid;
    t->uffd = -1;
    t->pagemap_fd = -1;
    t->page_size = pg;
    t->gran = granularity;
    t->gran_shift = (unsigned)__builtin_ctzll(granularity);

    if (mode == RTCR_DIRTY_UFFD_WP) {
        r = open_pagemap(pid, &t->pagemap_fd);
        if (r < 0)
            goto fail;
        /* a zombie's pagemap opens, but its mm is gone */
        r = mm_alive(t->pagemap_fd, 0, pg);
        if (r < 0)
            goto fail;
        t->vec = calloc(RTCR_DIRTY_SCAN_VEC, sizeof(*t->vec));
        if (!t->vec) {
            r = -ENOMEM;
            goto fail;
        }
        t->uffd = fcntl(uffd, F_DUPFD_CLOEXEC, 3);
        if (t->uffd < 0) {
            r = -errno;
            goto fail;
        }
        struct uffdio_api api = {.api = UFFD_API, .features = UFFD_WANT_FEATURES};
        if (ioctl(t->uffd, UFFDIO_API, &api) < 0) {
            r = errno == EINVAL ? -EOPNOTSUPP : -errno;
            goto fail;
        }
    }
    *ret = t;
    return 0;
fail:
    rtcr_dirty_destroy(&t);
    return r;
}

static void range_release(rtcr_dirty_t *t, struct dirty_range *rg)
{
    if (t->mode == RTCR_DIRTY_UFFD_WP && t->uffd >= 0) {
        struct uffdio_range ur = {.start = rg->addr, .len = rg->len};
        (void)ioctl(t->uffd, UFFDIO_UNREGISTER, &ur); /* best effort, see the header */
    }
    free(rg->hashes);
    rg->hashes = NULL;
}

void rtcr_dirty_destroy(rtcr_dirty_t **p)
{
    if (!p || !*p)
        return;
    rtcr_dirty_t *t = *p;
    for (size_t i = 0; i < t->n_ranges; i++)
        range_release(t, &t->ranges[i]);
    close_fd(&t->uffd);
    close_fd(&t->pagemap_fd);
    free(t->ranges);
    free(t->runs);
    free(t->vec);
    free(t);
    *p = NULL;
}

rtcr_dirty_mode_t rtcr_dirty_mode(const rtcr_dirty_t *t)
{
    assert(t);
    return t->mode;
}

size_t rtcr_dirty_granularity(const rtcr_dirty_t *t)
{
    assert(t);
    return t->gran;
}

size_t rtcr_dirty_range_count(const rtcr_dirty_t *t)
{
    assert(t);
    return t->n_ranges;
}

/* ---- ranges -------------------------------------------------------------------------------- */

/* index of the first range whose addr >= addr */
static size_t range_lower_bound(const rtcr_dirty_t *t, uintptr_t addr)
{
    size_t lo = 0, hi = t->n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ranges[mid].addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Register [addr, addr+len) for async write-protect in the target and protect it. Checks
 * afterwards with PAGEMAP_SCAN that the target's VMAs there really are registered: if the uffd
 * belongs to another process, the registration landed in the wrong address space. */
static int uffd_arm(rtcr_dirty_t *t, uintptr_t addr, size_t len)
{
    struct uffdio_register reg = {.range = {addr, len}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0)
        return uffd_errno(t, errno, addr);

    int r = 0;
    struct uffdio_writeprotect wp = {.range = {addr, len}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
        r = uffd_errno(t, errno, addr);
        goto undo;
    }
    /* UFFDIO_REGISTER tolerates gaps in the range, so check what was really armed: every page
     * of the range must be WP-async capable (one merged region covering it all); CHECK_WPASYNC
     * fails with EPERM at a VMA that is not registered with this uffd's mode at all, which is
     * what happens when the uffd belongs to another address space */
    struct page_region got[2];
    memset(got, 0, sizeof(got));
    struct pm_scan_arg arg = {
        .size = sizeof(arg),
        .flags = PM_SCAN_CHECK_WPASYNC,
        .start = addr,
        .end = addr + len,
        .vec = (uintptr_t)got,
        .vec_len = 2,
        .category_mask = PAGE_IS_WPALLOWED,
        .return_mask = PAGE_IS_WPALLOWED,
    };
    long n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &arg);
    if (n < 0) {
        r = errno == EPERM ? -EXDEV : -errno;
        goto undo;
    }
    if (n != 1 || got[0].start != addr || got[0].end != addr + len) {
        r = -EINVAL; /* a gap: the range is not fully mapped in the target */
        goto undo;
    }
    r = mm_alive(t->pagemap_fd, addr, t->page_size);
    if (r < 0)
        goto undo;
    return 0;
undo:;
    struct uffdio_range ur = {.start = addr, .len = len};
    (void)ioctl(t->uffd, UFFDIO_UNREGISTER, &ur);
    return r;
}

int rtcr_dirty_add_range(rtcr_dirty_t *t, uintptr_t target_addr, size_t len, void *agent_view)
{
    int r;

    if (!t || len == 0 || target_addr % t->page_size || len % t->page_size)
        return -EINVAL;
    if (target_addr + len < target_addr)
        return -EINVAL;
    if (t->mode == RTCR_DIRTY_HASH && !agent_view)
        return -EINVAL;
    size_t pos = range_lower_bound(t, target_addr);
    if (pos < t->n_ranges && t->ranges[pos].addr < target_addr + len)
        return -EEXIST;
    if (pos > 0 && t->ranges[pos - 1].addr + t->ranges[pos - 1].len > target_addr)
        return -EEXIST;
    if (t->n_ranges >= RTCR_DIRTY_MAX_RANGES)
        return -ENOSPC;

    /* allocate everything first, arm last: arming is the one step with an effect outside */
    if (t->n_ranges == t->cap_ranges) {
        size_t cap = t->cap_ranges ? 2 * t->cap_ranges : 8;
        struct dirty_range *nr = realloc(t->ranges, cap * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        t->ranges = nr;
        t->cap_ranges = cap;
    }
    struct dirty_range rg = {
        .addr = target_addr,
        .len = len,
        .view = agent_view,
        .n_units = (len + t->gran - 1) >> t->gran_shift,
        .full = true,
    };
    if (t->mode == RTCR_DIRTY_HASH) {
        /* the baseline is taken by the first collect, which reports the range whole */
        rg.hashes = calloc(rg.n_units, sizeof(*rg.hashes));
        if (!rg.hashes)
            return -ENOMEM;
    }
    if (t->mode == RTCR_DIRTY_UFFD_WP) {
        r = uffd_arm(t, target_addr, len);
        if (r < 0) {
            free(rg.hashes);
            return r;
        }
    }
    memmove(&t->ranges[pos + 1], &t->ranges[pos], (t->n_ranges - pos) * sizeof(rg));
    t->ranges[pos] = rg;
    t->n_ranges++;
    return 0;
}

int rtcr_dirty_remove_range(rtcr_dirty_t *t, uintptr_t target_addr)
{
    if (!t)
        return -EINVAL;
    size_t pos = range_lower_bound(t, target_addr);
    if (pos >= t->n_ranges || t->ranges[pos].addr != target_addr)
        return -ENOENT;
    range_release(t, &t->ranges[pos]);
    memmove(&t->ranges[pos], &t->ranges[pos + 1], (t->n_ranges - pos - 1) * sizeof(t->ranges[0]));
    t->n_ranges--;
    return 0;
}

/* ---- collect, phase 1: find dirty runs ----------------------------------------------------- */

/* Append units [u0, u1) of range ri to the run list, merging with the last run when adjacent
 * or overlapping (scan regions arrive in ascending order per range). */
static int run_add(rtcr_dirty_t *t, size_t ri, size_t u0, size_t u1)
{
    if (t->n_runs) {
        struct dirty_run *last = &t->runs[t->n_runs - 1];
        if (last->range == ri && u0 <= last->u1) {
            if (u1 > last->u1)
                last->u1 = u1;
            return 0;
        }
    }
    if (t->n_runs == t->cap_runs) {
        size_t cap = t->cap_runs ? 2 * t->cap_runs : 64;
        struct dirty_run *nr = realloc(t->runs, cap * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        t->runs = nr;
        t->cap_runs = cap;
    }
    t->runs[t->n_runs++] = (struct dirty_run){.range = ri, .u0 = u0, .u1 = u1};
    return 0;
}

/* UFFD_WP: walk range ri with PAGEMAP_SCAN, re-protecting written pages; record them as runs
 * unless record is false (a range reported whole anyway). Loops while the vector fills. */
static int scan_uffd(rtcr_dirty_t *t, size_t ri, bool record, rtcr_dirty_stats_t *st)
{
    const struct dirty_range *rg = &t->ranges[ri];
    struct pm_scan_arg arg = {
        .size = sizeof(arg),
        .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        .start = rg->addr,
        .end = rg->addr + rg->len,
        .vec = (uintptr_t)t->vec,
        .vec_len = RTCR_DIRTY_SCAN_VEC,
        .category_mask = PAGE_IS_WRITTEN,
        .return_mask = PAGE_IS_WRITTEN,
    };
    for (;;) {
        arg.walk_end = 0;
        long n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &arg);
        st->scan_calls++;
        if (n < 0)
            return -errno;
        if (n > RTCR_DIRTY_SCAN_VEC || arg.walk_end <= arg.start || arg.walk_end > arg.end)
            return -EPROTO;
        for (long i = 0; i < n && record; i++) {
            const struct page_region *v = &t->vec[i];
            if (v->start < rg->addr || v->end > rg->addr + rg->len || v->start >= v->end)
                return -EPROTO;
            size_t u0 = (size_t)(v->start - rg->addr) >> t->gran_shift;
            size_t u1 = (size_t)(v->end - rg->addr + t->gran - 1) >> t->gran_shift;
            int r = run_add(t, ri, u0, u1);
            if (r < 0)
                return r;
        }
        if (arg.walk_end >= arg.end)
            return 0;
        arg.start = arg.walk_end;
    }
}

/* HASH: re-hash every unit of range ri, record changed ones, keep the new hashes */
static int scan_hash(rtcr_dirty_t *t, size_t ri, bool record)
{
    struct dirty_range *rg = &t->ranges[ri];
    for (size_t u = 0; u < rg->n_units; u++) {
        size_t off = u << t->gran_shift;
        size_t n = rg->len - off < t->gran ? rg->len - off : t->gran;
        uint64_t h = XXH3_64bits(rg->view + off, n);
        if (h != rg->hashes[u] && record) {
            int r = run_add(t, ri, u, u + 1);
            if (r < 0)
                return r;
        }
        rg->hashes[u] = h;
    }
    return 0;
}

static int find_dirty(rtcr_dirty_t *t, rtcr_dirty_stats_t *st)
{
    int r = 0;
    t->n_runs = 0;
    for (size_t i = 0; i < t->n_ranges; i++) {
        struct dirty_range *rg = &t->ranges[i];
        bool whole = rg->full || t->mode == RTCR_DIRTY_FULL;
        st->pages_scanned += rg->len / t->page_size;
        if (t->mode == RTCR_DIRTY_UFFD_WP)
            r = scan_uffd(t, i, !whole, st);
        else if (t->mode == RTCR_DIRTY_HASH)
            r = scan_hash(t, i, !whole);
        if (r >= 0 && whole)
            r = run_add(t, i, 0, rg->n_units);
        if (r < 0)
            return r;
    }
    if (t->mode == RTCR_DIRTY_UFFD_WP) {
        uintptr_t probe = t->n_ranges ? t->ranges[0].addr : 0;
        r = mm_alive(t->pagemap_fd, probe, t->page_size);
    }
    return r;
}

/* ---- collect ------------------------------------------------------------------------------- */

int rtcr_dirty_collect(rtcr_dirty_t *t, rtcr_dirty_fn fn, void *ctx, rtcr_dirty_stats_t *ret_stats)
{
    if (!t || !fn)
        return -EINVAL;

    rtcr_dirty_stats_t st = {0};
    uint64_t t0 = now_usec();
    int r = find_dirty(t, &st);
    if (r < 0)
        goto fail;
    for (size_t i = 0; i < t->n_ranges; i++)
        t->ranges[i].full = false;
    st.scan_usec = now_usec() - t0;

    for (size_t i = 0; i < t->n_runs; i++) {
        const struct dirty_run *run = &t->runs[i];
        const struct dirty_range *rg = &t->ranges[run->range];
        size_t off = run->u0 << t->gran_shift;
        size_t end = run->u1 << t->gran_shift;
        if (end > rg->len)
            end = rg->len;
        r = fn(ctx, rg->addr + off, rg->view ? rg->view + off : NULL, end - off);
        if (r < 0)
            goto fail;
        st.units_dirty += run->u1 - run->u0;
        st.bytes_dirty += end - off;
        st.ranges_reported++;
    }
    t->n_runs = 0;
    st.total_usec = now_usec() - t0;
    if (ret_stats)
        *ret_stats = st;
    return 0;
fail:
    t->n_runs = 0;
    mark_all_full(t);
    return r;
}

/* ---- fd passing ---------------------------------------------------------------------------- */

int rtcr_dirty_recv_uffd(int sock, int *ret_fd)
{
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr align;                  /* alignment of the control buffer */
        char buf[CMSG_SPACE(4 * sizeof(int))]; /* room for a few fds, to close extras */
    } u;
    memset(&u, 0, sizeof(u));
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = u.buf,
        .msg_controllen = sizeof(u.buf),
    };
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;

    int fds[4], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && nfds < 4; i++)
            memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (nfds == 1 && !(msg.msg_flags & MSG_CTRUNC)) {
        *ret_fd = fds[0];
        return 0;
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    return n == 0 && nfds == 0 ? -EPIPE : -EBADMSG;
}
