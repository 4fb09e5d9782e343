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
 * re-arming, or hashing) into a run list, on one or two threads; phase 2 calls the callback per
 * run, on the caller's thread. Any failure sets
 * every range's `full` flag, so the next successful collect reports everything: a failed epoch
 * never loses a write.
 *
 * Two threads (docs/dirty-tracking.md, "Two threads in the freeze"): a collect over at least
 * par_scan_pages pages cuts the ranges into 16 MiB slices (unit aligned, never across ranges);
 * the caller and the tracker's helper thread claim them in ascending order from one atomic
 * counter, each appending runs tagged with their slice to its own list, so each list is in
 * slice order and every slice is in exactly one list. Merging the two by slice and joining runs
 * that meet at a slice boundary gives exactly the serial run list. A copy (copy_begin/_finish)
 * is cut into 128 KiB pieces claimed the same way; pieces are disjoint, so the bytes land as a
 * serial memcpy would put them. The helper is created once (first use), sleeps on a condition
 * variable between freezes and is joined at destroy. A job the helper has not started when the
 * caller runs out of work is taken back (claim word), so the caller never waits for a helper the
 * scheduler has not run yet; waits and the helper's short linger after a scan spin (bounded,
 * with CPU pause hints, see spin_step) before they sleep.
 *
 * Invariants: ranges are sorted by address and never overlap; every range's addr and len are
 * page aligned; units are counted from each range's start.
 */
#include <rtcr/dirty.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
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

#include "time_internal.h"

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
    size_t slice; /* the slice whose scan found it (orders the runs of a parallel scan) */
};

/* a list of runs */
struct run_list {
    struct dirty_run *v; /* runs in ascending (range, unit) order */
    size_t n;            /* used */
    size_t cap;          /* allocated */
};

/* A piece of the scan: units [u0, u1) of one range. A serial collect has one slice per range;
 * a parallel one cuts ranges into slices of PAR_SLICE_BYTES that the two threads claim in
 * ascending order. */
struct slice {
    size_t range; /* index into ranges */
    size_t u0;    /* first unit */
    size_t u1;    /* one past the last unit */
};

/* What one thread of a collect found. */
struct part {
    struct run_list runs;    /* runs of the slices this thread claimed, in slice order */
    struct page_region *vec; /* PAGEMAP_SCAN output, RTCR_DIRTY_SCAN_VEC entries */
    uint64_t scan_calls;     /* ioctls issued */
    int err;                 /* first error (0: none) */
    size_t err_slice;        /* slice of err */
};

/* a cut in a copy job: byte off of segment seg */
struct cut {
    size_t seg; /* segment index (n: the end) */
    size_t off; /* byte offset in it */
};

enum job_kind { JOB_NONE, JOB_SCAN, JOB_COPY, JOB_QUIT };

/* The helper thread: persistent per tracker, created on the first collect or copy that is large
 * enough to split, joined by rtcr_dirty_destroy(). Jobs are handed over with a sequence number;
 * the helper spins briefly after a scan (the copy of the same freeze follows within
 * microseconds) and otherwise sleeps on a condition variable. A job is claimed by whoever gets
 * it first (claim: seq << 2 | CLAIM_*): the helper takes it to run it, the poster takes it back
 * when it has done all the work itself before the helper started (the scheduler may wake the
 * helper on the poster's own CPU), so the poster never waits for a helper that has not begun. */
enum { CLAIM_POSTED = 1, CLAIM_RUNNING = 2, CLAIM_CANCELLED = 3 };
struct helper {
    pthread_t thread;    /* the thread, valid while started */
    bool started;        /* thread running */
    bool failed;         /* pthread_create failed once: stay serial */
    pthread_mutex_t mu;  /* protects the fields below (posted/done also read atomically) */
    pthread_cond_t wake; /* signalled when a job is posted and the helper sleeps */
    pthread_cond_t idle; /* signalled when a job is done and the poster sleeps */
    uint64_t posted;     /* jobs posted */
    uint64_t done;       /* jobs finished */
    enum job_kind kind;  /* kind of the newest job */
    uint64_t claim;      /* seq << 2 | CLAIM_* of the newest job (atomic) */
    bool sleeping;       /* the helper waits on wake */
    bool waiting;        /* the poster waits on idle */
    bool linger;         /* a copy may follow the scan: spin for it (atomic; cleared by
                            rtcr_dirty_copy_begin) */
};

/* the copy in progress (rtcr_dirty_copy_begin .. _finish) */
struct copy_job {
    const rtcr_dirty_copy_t *v; /* segments, borrowed from the caller */
    size_t n;                   /* segments */
    struct cut *cuts;           /* piece k is [cuts[k], cuts[k+1]) */
    size_t cap_cuts;            /* allocated cuts */
    size_t n_pieces;            /* pieces */
    size_t next;                /* next piece to claim (atomic) */
    bool active;                /* begun and not finished */
    bool parallel;              /* the helper works on it */
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
    struct slice *slices;       /* the slices of the collect in progress */
    size_t n_slices;            /* slices used */
    size_t cap_slices;          /* allocated slices */
    size_t next_slice;          /* next slice to claim (atomic) */
    bool scan_abort;            /* a thread failed: claim no more slices (atomic) */
    struct part parts[2];       /* [0] the caller's, [1] the helper's */
    struct run_list merged;     /* parts merged after a parallel scan */
    const struct run_list *out; /* phase-1 output: parts[0].runs or merged */
    size_t par_scan_pages;      /* scan with two threads from this many tracked pages */
    size_t par_copy_bytes;      /* copy with two threads from this many bytes */
    bool par_deal;              /* RTCR_DIRTY_PAR_DEAL: work is dealt alternately, not claimed */
    bool parallel_now;          /* the collect in progress scans on both threads */
    struct helper h;            /* the helper thread */
    struct copy_job copy;       /* the copy in progress */
};

/* ---- small helpers ------------------------------------------------------------------------- */

static uint64_t now_usec(void)
{
    return clock_usec(CLOCK_MONOTONIC);
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
    t->par_scan_pages = RTCR_DIRTY_PAR_SCAN_PAGES;
    t->par_copy_bytes = RTCR_DIRTY_PAR_COPY_BYTES;
    pthread_mutex_init(&t->h.mu, NULL);
    pthread_cond_init(&t->h.wake, NULL);
    pthread_cond_init(&t->h.idle, NULL);

    if (mode == RTCR_DIRTY_UFFD_WP) {
        r = open_pagemap(pid, &t->pagemap_fd);
        if (r < 0)
            goto fail;
        /* a zombie's pagemap opens, but its mm is gone */
        r = mm_alive(t->pagemap_fd, 0, pg);
        if (r < 0)
            goto fail;
        for (int i = 0; i < 2; i++) {
            t->parts[i].vec = calloc(RTCR_DIRTY_SCAN_VEC, sizeof(*t->parts[i].vec));
            if (!t->parts[i].vec) {
                r = -ENOMEM;
                goto fail;
            }
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

static void helper_stop(rtcr_dirty_t *t);

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
    if (t->copy.active)
        rtcr_dirty_copy_finish(t);
    helper_stop(t);
    close_fd(&t->uffd);
    close_fd(&t->pagemap_fd);
    free(t->ranges);
    free(t->slices);
    for (int i = 0; i < 2; i++) {
        free(t->parts[i].runs.v);
        free(t->parts[i].vec);
    }
    free(t->merged.v);
    free(t->copy.cuts);
    pthread_cond_destroy(&t->h.idle);
    pthread_cond_destroy(&t->h.wake);
    pthread_mutex_destroy(&t->h.mu);
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

/* ---- the helper thread --------------------------------------------------------------------- */

/* how long the helper spins for the next job after a scan (the copy of the same freeze follows
 * right after the callbacks), and how long a poster spins for a job to finish before sleeping */
#define HELPER_SPIN_USEC 150u
#define POSTER_SPIN_USEC 200u
/* bytes per slice of a parallel scan (a multiple of every page size; at least one unit) */
#define PAR_SLICE_BYTES ((size_t)16 << 20)
/* bytes per piece of a parallel copy */
#define PAR_PIECE_BYTES ((size_t)128 << 10)

/* One step of a bounded spin: a few CPU pause hints; the spinning thread keeps its CPU. It
 * used to sched_yield, so that a helper the scheduler put on the spinner's CPU could run; but
 * a yield hands the CPU to any other runnable thread of lower weight (the background
 * compaction, SCHED_IDLE), which then keeps it until the next scheduler tick: freezes of
 * 1-4 ms where 0.3 ms were expected (measured, bench_ckpt with compaction running). The spins
 * are bounded (HELPER_SPIN_USEC, POSTER_SPIN_USEC) and end in a condition variable, so a
 * helper sharing the spinner's CPU costs at most one bound, never a tick. */
static void spin_step(void)
{
    for (int i = 0; i < 32; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#else
        __asm__ __volatile__("" ::: "memory");
#endif
    }
}

static void scan_slices(rtcr_dirty_t *t, struct part *pt, unsigned who);
static void copy_pieces(rtcr_dirty_t *t, unsigned who);

static void *helper_main(void *p)
{
    rtcr_dirty_t *t = p;
    struct helper *h = &t->h;
    uint64_t seen = 0;
    bool spin = false;
    for (;;) {
        if (spin) {
            uint64_t until = now_usec() + HELPER_SPIN_USEC;
            while (__atomic_load_n(&h->posted, __ATOMIC_ACQUIRE) == seen &&
                   __atomic_load_n(&h->linger, __ATOMIC_ACQUIRE) && now_usec() < until)
                spin_step();
        }
        pthread_mutex_lock(&h->mu);
        while (h->posted == seen) {
            h->sleeping = true;
            pthread_cond_wait(&h->wake, &h->mu);
            h->sleeping = false;
        }
        seen = h->posted;
        enum job_kind kind = h->kind;
        pthread_mutex_unlock(&h->mu);
        if (kind == JOB_QUIT)
            return NULL;
        uint64_t want = seen << 2 | CLAIM_POSTED;
        bool ran = __atomic_compare_exchange_n(&h->claim, &want, seen << 2 | CLAIM_RUNNING, false,
                                               __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
        if (ran && kind == JOB_SCAN)
            scan_slices(t, &t->parts[1], 1);
        else if (ran && kind == JOB_COPY)
            copy_pieces(t, 1);
        /* spin for the copy only after a scan that ran beside the poster: a helper that got no
         * CPU in time shares the poster's and must not spin there */
        spin = ran && kind == JOB_SCAN;
        pthread_mutex_lock(&h->mu);
        __atomic_store_n(&h->done, seen, __ATOMIC_RELEASE);
        if (h->waiting)
            pthread_cond_signal(&h->idle);
        pthread_mutex_unlock(&h->mu);
    }
}

/* Start the helper unless it runs already; false if it cannot (then the caller stays serial). */
static bool helper_ready(rtcr_dirty_t *t)
{
    struct helper *h = &t->h;
    if (h->started)
        return true;
    if (h->failed)
        return false;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the helper takes no signals */
    int r = pthread_create(&h->thread, NULL, helper_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        h->failed = true;
        return false;
    }
    pthread_setname_np(h->thread, "rtcr-dirty");
    h->started = true;
    return true;
}

static void helper_post(rtcr_dirty_t *t, enum job_kind kind)
{
    struct helper *h = &t->h;
    pthread_mutex_lock(&h->mu);
    h->kind = kind;
    __atomic_store_n(&h->claim, (h->posted + 1) << 2 | CLAIM_POSTED, __ATOMIC_RELEASE);
    __atomic_store_n(&h->posted, h->posted + 1, __ATOMIC_RELEASE);
    if (h->sleeping)
        pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->mu);
}

/* Called when the poster has run out of work: take the job back if the helper has not started
 * it, otherwise wait until the helper finished it. */
static void helper_wait(rtcr_dirty_t *t)
{
    struct helper *h = &t->h;
    uint64_t want = h->posted; /* only the posting thread writes posted */
    uint64_t posted = want << 2 | CLAIM_POSTED;
    if (!t->par_deal && __atomic_compare_exchange_n(&h->claim, &posted, want << 2 | CLAIM_CANCELLED,
                                                    false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return; /* never started: nothing of it will run */
    uint64_t until = now_usec() + POSTER_SPIN_USEC;
    while (__atomic_load_n(&h->done, __ATOMIC_ACQUIRE) != want && now_usec() < until)
        spin_step();
    pthread_mutex_lock(&h->mu);
    while (h->done != want) {
        h->waiting = true;
        pthread_cond_wait(&h->idle, &h->mu);
        h->waiting = false;
    }
    pthread_mutex_unlock(&h->mu);
}

static void helper_stop(rtcr_dirty_t *t)
{
    if (!t->h.started)
        return;
    helper_post(t, JOB_QUIT);
    pthread_join(t->h.thread, NULL);
    t->h.started = false;
}

int rtcr_dirty_set_parallel(rtcr_dirty_t *t, size_t scan_min_pages, size_t copy_min_bytes,
                            unsigned flags)
{
    if (!t || t->copy.active || (flags & ~RTCR_DIRTY_PAR_DEAL))
        return -EINVAL;
    t->par_scan_pages = scan_min_pages;
    t->par_copy_bytes = copy_min_bytes;
    t->par_deal = (flags & RTCR_DIRTY_PAR_DEAL) != 0;
    return 0;
}

/* ---- collect, phase 1: find dirty runs ----------------------------------------------------- */

/* Append units [u0, u1) of range ri, found in slice si, to a run list, merging with the last run
 * when adjacent or overlapping (regions arrive in ascending order per range). */
static int run_add(struct run_list *l, size_t ri, size_t u0, size_t u1, size_t si)
{
    if (l->n) {
        struct dirty_run *last = &l->v[l->n - 1];
        if (last->range == ri && u0 <= last->u1) {
            if (u1 > last->u1)
                last->u1 = u1;
            return 0;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct dirty_run *nr = realloc(l->v, cap * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        l->v = nr;
        l->cap = cap;
    }
    l->v[l->n++] = (struct dirty_run){.range = ri, .u0 = u0, .u1 = u1, .slice = si};
    return 0;
}

/* UFFD_WP: walk slice si with PAGEMAP_SCAN, re-protecting written pages; record them as runs
 * unless record is false (a range reported whole anyway). Loops while the vector fills. */
static int scan_uffd(rtcr_dirty_t *t, size_t si, bool record, struct part *pt)
{
    const struct slice *sl = &t->slices[si];
    const struct dirty_range *rg = &t->ranges[sl->range];
    uintptr_t start = rg->addr + (sl->u0 << t->gran_shift);
    uintptr_t end = rg->addr + (sl->u1 << t->gran_shift);
    if (end > rg->addr + rg->len)
        end = rg->addr + rg->len;
    struct pm_scan_arg arg = {
        .size = sizeof(arg),
        .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        .start = start,
        .end = end,
        .vec = (uintptr_t)pt->vec,
        .vec_len = RTCR_DIRTY_SCAN_VEC,
        .category_mask = PAGE_IS_WRITTEN,
        .return_mask = PAGE_IS_WRITTEN,
    };
    for (;;) {
        arg.walk_end = 0;
        long n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &arg);
        pt->scan_calls++;
        if (n < 0)
            return -errno;
        if (n > RTCR_DIRTY_SCAN_VEC || arg.walk_end <= arg.start || arg.walk_end > arg.end)
            return -EPROTO;
        for (long i = 0; i < n && record; i++) {
            const struct page_region *v = &pt->vec[i];
            if (v->start < start || v->end > end || v->start >= v->end)
                return -EPROTO;
            size_t u0 = (size_t)(v->start - rg->addr) >> t->gran_shift;
            size_t u1 = (size_t)(v->end - rg->addr + t->gran - 1) >> t->gran_shift;
            int r = run_add(&pt->runs, sl->range, u0, u1, si);
            if (r < 0)
                return r;
        }
        if (arg.walk_end >= arg.end)
            return 0;
        arg.start = arg.walk_end;
    }
}

/* HASH: re-hash every unit of slice si, record changed ones, keep the new hashes */
static int scan_hash(rtcr_dirty_t *t, size_t si, bool record, struct part *pt)
{
    const struct slice *sl = &t->slices[si];
    struct dirty_range *rg = &t->ranges[sl->range];
    for (size_t u = sl->u0; u < sl->u1; u++) {
        size_t off = u << t->gran_shift;
        size_t n = rg->len - off < t->gran ? rg->len - off : t->gran;
        uint64_t h = XXH3_64bits(rg->view + off, n);
        if (h != rg->hashes[u] && record) {
            int r = run_add(&pt->runs, sl->range, u, u + 1, si);
            if (r < 0)
                return r;
        }
        rg->hashes[u] = h;
    }
    return 0;
}

static int scan_slice(rtcr_dirty_t *t, size_t si, struct part *pt)
{
    const struct slice *sl = &t->slices[si];
    bool whole = t->ranges[sl->range].full || t->mode == RTCR_DIRTY_FULL;
    int r = 0;
    if (t->mode == RTCR_DIRTY_UFFD_WP)
        r = scan_uffd(t, si, !whole, pt);
    else if (t->mode == RTCR_DIRTY_HASH)
        r = scan_hash(t, si, !whole, pt);
    if (r >= 0 && whole)
        r = run_add(&pt->runs, sl->range, sl->u0, sl->u1, si);
    return r;
}

/* Claim slices in ascending order until none is left (or another thread failed); record what
 * they hold in pt. Runs on the caller and, in a parallel collect, on the helper. */
static void scan_slices(rtcr_dirty_t *t, struct part *pt, unsigned who)
{
    for (size_t dealt = who;; dealt += 2) {
        if (__atomic_load_n(&t->scan_abort, __ATOMIC_ACQUIRE))
            return;
        size_t si = t->par_deal && t->parallel_now
                        ? dealt
                        : __atomic_fetch_add(&t->next_slice, 1, __ATOMIC_RELAXED);
        if (si >= t->n_slices)
            return;
        int r = scan_slice(t, si, pt);
        if (r < 0) {
            pt->err = r;
            pt->err_slice = si;
            __atomic_store_n(&t->scan_abort, true, __ATOMIC_RELEASE);
            return;
        }
    }
}

static int slice_add(rtcr_dirty_t *t, size_t ri, size_t u0, size_t u1)
{
    if (t->n_slices == t->cap_slices) {
        size_t cap = t->cap_slices ? 2 * t->cap_slices : 64;
        struct slice *ns = realloc(t->slices, cap * sizeof(*ns));
        if (!ns)
            return -ENOMEM;
        t->slices = ns;
        t->cap_slices = cap;
    }
    t->slices[t->n_slices++] = (struct slice){.range = ri, .u0 = u0, .u1 = u1};
    return 0;
}

/* Cut the ranges into slices: one per range (serial), or PAR_SLICE_BYTES each (parallel). */
static int make_slices(rtcr_dirty_t *t, bool parallel)
{
    size_t per = parallel && PAR_SLICE_BYTES > t->gran ? PAR_SLICE_BYTES >> t->gran_shift : 0;
    t->n_slices = 0;
    for (size_t i = 0; i < t->n_ranges; i++) {
        size_t n = t->ranges[i].n_units, step = per ? per : n;
        for (size_t u = 0; u < n; u += step) {
            int r = slice_add(t, i, u, u + step < n ? u + step : n);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* Merge the two parts' run lists by slice (each is in ascending slice order, and every slice
 * was scanned by exactly one of them) into t->merged, joining runs that meet at a slice
 * boundary: the result equals what one thread scanning everything would have found. */
static int merge_parts(rtcr_dirty_t *t)
{
    const struct run_list *a = &t->parts[0].runs, *b = &t->parts[1].runs;
    size_t i = 0, j = 0;
    t->merged.n = 0;
    while (i < a->n || j < b->n) {
        const struct dirty_run *x;
        if (j >= b->n || (i < a->n && a->v[i].slice < b->v[j].slice))
            x = &a->v[i++];
        else
            x = &b->v[j++];
        int r = run_add(&t->merged, x->range, x->u0, x->u1, x->slice);
        if (r < 0)
            return r;
    }
    return 0;
}

static int find_dirty(rtcr_dirty_t *t, rtcr_dirty_stats_t *st)
{
    size_t pages = 0;
    for (size_t i = 0; i < t->n_ranges; i++)
        pages += t->ranges[i].len / t->page_size;
    st->pages_scanned = pages;
    bool parallel =
        t->mode != RTCR_DIRTY_FULL && t->n_ranges && pages >= t->par_scan_pages && helper_ready(t);
    int r = make_slices(t, parallel);
    if (r < 0)
        return r;
    if (t->n_slices < 2)
        parallel = false;
    for (int i = 0; i < 2; i++) {
        t->parts[i].runs.n = 0;
        t->parts[i].scan_calls = 0;
        t->parts[i].err = 0;
    }
    t->next_slice = 0;
    t->scan_abort = false;
    t->parallel_now = parallel;
    if (parallel) {
        __atomic_store_n(&t->h.linger, true, __ATOMIC_RELEASE);
        helper_post(t, JOB_SCAN);
    }
    scan_slices(t, &t->parts[0], 0);
    if (parallel)
        helper_wait(t);
    st->scan_calls = t->parts[0].scan_calls + t->parts[1].scan_calls;
    st->scan_threads = parallel ? 2 : 1;

    /* the error of the lowest slice, as a serial scan would have met first */
    const struct part *p0 = &t->parts[0], *p1 = &t->parts[1];
    if (p0->err && (!p1->err || p0->err_slice < p1->err_slice))
        return p0->err;
    if (p1->err)
        return p1->err;
    if (parallel) {
        r = merge_parts(t);
        if (r < 0)
            return r;
        t->out = &t->merged;
    } else {
        t->out = &t->parts[0].runs;
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
    if (!t || !fn || t->copy.active)
        return -EINVAL;

    rtcr_dirty_stats_t st = {0};
    uint64_t t0 = now_usec();
    t->out = NULL;
    int r = find_dirty(t, &st);
    if (r < 0)
        goto fail;
    for (size_t i = 0; i < t->n_ranges; i++)
        t->ranges[i].full = false;
    st.scan_usec = now_usec() - t0;

    for (size_t i = 0; i < t->out->n; i++) {
        const struct dirty_run *run = &t->out->v[i];
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
    st.total_usec = now_usec() - t0;
    if (ret_stats)
        *ret_stats = st;
    return 0;
fail:
    mark_all_full(t);
    return r;
}

/* ---- copy ---------------------------------------------------------------------------------- */

/* copy the bytes from cut a to cut b */
static void copy_span(const rtcr_dirty_copy_t *v, size_t n, struct cut a, struct cut b)
{
    for (size_t i = a.seg; i <= b.seg && i < n; i++) {
        size_t from = i == a.seg ? a.off : 0;
        size_t to = i == b.seg ? b.off : v[i].len;
        if (to > from)
            memcpy((uint8_t *)v[i].dst + from, (const uint8_t *)v[i].src + from, to - from);
    }
}

/* claim pieces of the copy in progress until none is left */
static void copy_pieces(rtcr_dirty_t *t, unsigned who)
{
    struct copy_job *c = &t->copy;
    for (size_t dealt = who;; dealt += 2) {
        size_t k = t->par_deal ? dealt : __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED);
        if (k >= c->n_pieces)
            return;
        copy_span(c->v, c->n, c->cuts[k], c->cuts[k + 1]);
    }
}

/* Cut the segments into pieces of PAR_PIECE_BYTES (the last one shorter). */
static int make_cuts(struct copy_job *c, size_t total)
{
    size_t need = total / PAR_PIECE_BYTES + 2;
    if (need > c->cap_cuts) {
        struct cut *nc = realloc(c->cuts, need * sizeof(*nc));
        if (!nc)
            return -ENOMEM;
        c->cuts = nc;
        c->cap_cuts = need;
    }
    size_t k = 0, acc = 0;
    c->cuts[0] = (struct cut){0, 0};
    for (size_t i = 0; i < c->n; i++) {
        size_t off = 0;
        while (off < c->v[i].len) {
            size_t take = c->v[i].len - off;
            if (take > PAR_PIECE_BYTES - acc)
                take = PAR_PIECE_BYTES - acc;
            off += take;
            acc += take;
            if (acc == PAR_PIECE_BYTES) {
                c->cuts[++k] = (struct cut){i, off};
                acc = 0;
            }
        }
    }
    if (acc)
        c->cuts[++k] = (struct cut){c->n, 0};
    c->n_pieces = k;
    return 0;
}

int rtcr_dirty_copy_begin(rtcr_dirty_t *t, const rtcr_dirty_copy_t *v, size_t n)
{
    if (!t || (n && !v) || t->copy.active)
        return -EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].len;
    struct copy_job *c = &t->copy;
    c->v = v;
    c->n = n;
    c->next = 0;
    c->active = true;
    __atomic_store_n(&t->h.linger, false, __ATOMIC_RELEASE); /* no more spinning for a job */
    c->parallel = total >= t->par_copy_bytes && total > PAR_PIECE_BYTES &&
                  make_cuts(c, total) == 0 && helper_ready(t);
    if (c->parallel)
        helper_post(t, JOB_COPY);
    return 0;
}

void rtcr_dirty_copy_finish(rtcr_dirty_t *t)
{
    assert(t && t->copy.active);
    struct copy_job *c = &t->copy;
    if (c->parallel) {
        copy_pieces(t, 0);
        helper_wait(t);
    } else {
        for (size_t i = 0; i < c->n; i++)
            memcpy(c->v[i].dst, c->v[i].src, c->v[i].len);
    }
    c->active = false;
    c->v = NULL;
    c->n = 0;
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
