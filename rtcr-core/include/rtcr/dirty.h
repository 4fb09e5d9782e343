/* rtcr/dirty.h — incremental memory tracking: which pages of a target did it write since the
 * last checkpoint epoch.
 *
 * A target's memory lives in memfd-backed dataspaces, mapped MAP_SHARED both in the target (at
 * fixed addresses) and in the agent. Once per epoch, while the target is paused, the agent asks
 * the tracker which tracking units (granularity bytes, a power-of-two multiple of the page size,
 * counted from the start of each range) the TARGET wrote, copies them from its own mapping, and
 * the tracker re-arms itself for the next epoch in the same step.
 *
 * Modes (see docs/dirty-tracking.md):
 *   RTCR_DIRTY_UFFD_WP  userfaultfd write-protect in async mode plus the PAGEMAP_SCAN ioctl on
 *                       /proc/PID/pagemap (Linux >= 6.7). The kernel marks a page written on its
 *                       first write after protection (no fault reaches user space); one
 *                       PAGEMAP_SCAN per range reports the written pages and write-protects them
 *                       again atomically. Cost scales with the number of page-table entries
 *                       walked and the pages written, not with memory content. Needs a
 *                       userfaultfd created BY THE TARGET (a uffd is bound to the mm of its
 *                       creator): the target calls rtcr_dirty_target_send_uffd() (librtcr-comp),
 *                       the agent receives it with rtcr_dirty_recv_uffd() and does everything
 *                       else (UFFDIO_API, UFFDIO_REGISTER, UFFDIO_WRITEPROTECT) through that fd.
 *   RTCR_DIRTY_HASH     portable fallback without kernel support or target cooperation: an
 *                       XXH3-64 per unit of the agent's own mapping; a collect re-hashes every
 *                       unit and reports those whose content changed. Cost is a full read of the
 *                       memory per epoch. It sees content changes by anyone (also the agent's own
 *                       writes), and misses a write that stores the value already there (which
 *                       does not matter: the content is the same).
 *   RTCR_DIRTY_FULL     everything is dirty every epoch (reference and last resort).
 *
 * Epochs: the first collect after rtcr_dirty_add_range() reports the whole range; every later
 * collect reports the units written since the previous successful collect. If a collect fails
 * (target died, range unmapped behind the tracker's back, callback error), every range is
 * reported whole by the next successful collect, so a failure never loses a write.
 *
 * Two threads in the freeze: a collect over at least par_scan_pages tracked pages cuts the
 * ranges into 16 MiB slices that the caller and a helper thread scan together (claimed in
 * ascending order, merged by slice afterwards), and rtcr_dirty_copy_begin()/_finish() copy the
 * dirty runs out in 128 KiB pieces on both threads while the caller may do other work in
 * between. The helper is created once per tracker, when first needed, and joined by
 * rtcr_dirty_destroy(); if it cannot be created everything runs serially. Results are the same
 * as serial: the same runs in the same order, the same bytes at the same destinations. Below
 * the thresholds (RTCR_DIRTY_PAR_*, measured in docs/dirty-tracking.md) the serial path runs.
 *
 * Thread safety: a tracker is used by one thread at a time (its helper is internal). All
 * functions return >= 0 on success and -errno on failure; outputs (ret_*) are written only on
 * success.
 */
#ifndef RTCR_DIRTY_H
#define RTCR_DIRTY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum rtcr_dirty_mode {
    RTCR_DIRTY_UFFD_WP, /* userfaultfd async write-protect + PAGEMAP_SCAN */
    RTCR_DIRTY_HASH,    /* per-unit XXH3 of the agent's mapping, compared on collect */
    RTCR_DIRTY_FULL,    /* every unit is dirty every epoch */
    RTCR_DIRTY_MODE_MAX
} rtcr_dirty_mode_t;

/* PAGEMAP_SCAN output vector length (page regions per ioctl); collect loops when it fills */
#define RTCR_DIRTY_SCAN_VEC 512
/* largest tracking unit accepted by rtcr_dirty_new() */
#define RTCR_DIRTY_MAX_GRANULARITY (1u << 30)
/* most ranges one tracker holds (a hard limit: ranges come from a target's attachments) */
#define RTCR_DIRTY_MAX_RANGES 4096
/* size of a reason buffer that always holds rtcr_dirty_probe()'s text */
#define RTCR_DIRTY_REASON_SIZE 160
/* default: a collect scans with two threads from this many tracked pages (128 MiB of 4 KiB) */
#define RTCR_DIRTY_PAR_SCAN_PAGES 32768u
/* default: rtcr_dirty_copy_begin() copies with two threads from this many bytes */
#define RTCR_DIRTY_PAR_COPY_BYTES (256u << 10)

typedef struct rtcr_dirty rtcr_dirty_t;

/* Numbers about one collect. */
typedef struct rtcr_dirty_stats {
    uint64_t pages_scanned;   /* pages examined (all tracked ranges, in pages) */
    uint64_t units_dirty;     /* tracking units reported dirty */
    uint64_t bytes_dirty;     /* bytes reported (units clipped at range ends) */
    uint64_t ranges_reported; /* callback invocations (merged runs of adjacent units) */
    uint64_t scan_calls;      /* PAGEMAP_SCAN ioctls issued (uffd mode; 0 otherwise) */
    uint64_t scan_usec;       /* monotonic time finding dirty units and re-arming */
    uint64_t total_usec;      /* monotonic time of the whole collect, callbacks included */
    uint64_t scan_threads;    /* threads that found the dirty units: 1 serial, 2 parallel */
} rtcr_dirty_stats_t;

/* One segment of a copy: len bytes from src to dst (must not overlap). */
typedef struct rtcr_dirty_copy {
    void *dst;       /* destination */
    const void *src; /* source */
    size_t len;      /* bytes */
} rtcr_dirty_copy_t;

/* Called once per run of adjacent dirty units, in ascending address order per range.
 * target_addr: start of the run in the target's address space; agent_view: the same bytes in
 * the agent's mapping (NULL if the range was added without one); len: bytes (a multiple of the
 * granularity, except a run that ends at the end of a range). Return >= 0 to go on, -errno to
 * stop the collect (which then fails with that error). */
typedef int (*rtcr_dirty_fn)(void *ctx, uintptr_t target_addr, void *agent_view, size_t len);

/* ---- agent side (librtcr) ------------------------------------------------------------- */

/* Name of a mode ("uffd-wp", "hash", "full"); "?" for a value out of range. */
const char *rtcr_dirty_mode_name(rtcr_dirty_mode_t mode);

/* Parse a mode name as printed by rtcr_dirty_mode_name(). -EINVAL for anything else. */
int rtcr_dirty_mode_parse(const char *name, rtcr_dirty_mode_t *ret_mode);

/* Which mode the running kernel supports best: RTCR_DIRTY_UFFD_WP when an end-to-end trial in
 * the calling process works (create a uffd, UFFDIO_API with WP_ASYNC, register a memfd mapping,
 * write one page, PAGEMAP_SCAN reports exactly that page, also a never-touched one), otherwise
 * RTCR_DIRTY_HASH. reason (may be NULL) receives "" or why uffd-wp is unavailable, truncated to
 * reason_size (RTCR_DIRTY_REASON_SIZE always suffices). Never fails; costs about a millisecond. */
rtcr_dirty_mode_t rtcr_dirty_probe(char *reason, size_t reason_size);

/* Create a tracker for the target process pid.
 *   mode        RTCR_DIRTY_UFFD_WP, RTCR_DIRTY_HASH or RTCR_DIRTY_FULL.
 *   pid         the target. Required (> 0) for UFFD_WP: /proc/pid/pagemap is opened now (needs
 *               ptrace-read access to the target). For HASH and FULL it may be 0; if > 0 it
 *               must name a live process.
 *   uffd        UFFD_WP: a userfaultfd created by the target process (rtcr_dirty_recv_uffd()),
 *               on which nobody has called UFFDIO_API yet. Borrowed: the tracker keeps its own
 *               duplicate, the caller still owns and closes uffd. HASH and FULL: must be -1.
 *   granularity tracking unit in bytes: a power of two, >= the page size, <=
 *               RTCR_DIRTY_MAX_GRANULARITY.
 * On success *ret (caller owns; rtcr_dirty_destroy()) is set.
 * Errors: -EINVAL bad mode, granularity or argument combination; -EBADF uffd is not an open
 * userfaultfd; -ESRCH pid is not a live process; -EOPNOTSUPP the kernel lacks async
 * write-protect (UFFD_FEATURE_WP_ASYNC, Linux >= 6.7) or UFFDIO_API was already done on the fd;
 * -EACCES/-EPERM no access to /proc/pid/pagemap; -ENOMEM. */
int rtcr_dirty_new(rtcr_dirty_mode_t mode, pid_t pid, int uffd, size_t granularity,
                   rtcr_dirty_t **ret);

/* Destroy a tracker (NULL-safe, idempotent, NULLs *p). In uffd mode every range is
 * unregistered in the target first (best effort: a dead target is fine). */
void rtcr_dirty_destroy(rtcr_dirty_t **p);

rtcr_dirty_mode_t rtcr_dirty_mode(const rtcr_dirty_t *t);
size_t rtcr_dirty_granularity(const rtcr_dirty_t *t);
/* number of ranges tracked */
size_t rtcr_dirty_range_count(const rtcr_dirty_t *t);

/* Start tracking [target_addr, target_addr + len) of the target. agent_view is the agent's
 * mapping of the same memory (borrowed until the range is removed or the tracker destroyed;
 * required in HASH mode, may be NULL otherwise). Both target_addr and len must be page
 * aligned, len > 0; len need not be a multiple of the granularity (the last unit is short).
 * UFFD_WP: registers the range for async write-protect and protects it, including pages never
 * faulted in; the target's mapping must exist (memfd/shmem or anonymous). The first collect
 * reports the whole range.
 * Errors: -EINVAL bad alignment/length or NULL agent_view in HASH mode, or (UFFD_WP) the range
 * is not fully mapped in the target or cannot be tracked there; -EEXIST overlaps a tracked
 * range; -ENOSPC RTCR_DIRTY_MAX_RANGES reached; -ESRCH the target is gone; -EXDEV (UFFD_WP)
 * the uffd does not belong to pid's address space; -ENOMEM. Nothing changes on failure. */
int rtcr_dirty_add_range(rtcr_dirty_t *t, uintptr_t target_addr, size_t len, void *agent_view);

/* Stop tracking the range that starts at target_addr (as passed to add_range). UFFD_WP:
 * unregisters it in the target, best effort (a dead target or a vanished mapping is not an
 * error). Errors: -ENOENT no range starts there. */
int rtcr_dirty_remove_range(rtcr_dirty_t *t, uintptr_t target_addr);

/* Report every unit written since the previous successful collect (whole ranges on their
 * first collect) through fn, merged into runs of adjacent units, and re-arm tracking in the
 * same step. Call it while the target is paused: writes that race with a collect are reported
 * by this one or the next, never lost, but the copy would not be a consistent snapshot.
 * All dirty units are determined first; fn is called only if that succeeded, so on a scan error
 * fn was never called. ret_stats may be NULL.
 * Errors: -ESRCH the target exited (its address space is gone); -EPERM (UFFD_WP) part of a
 * range is no longer registered (the target unmapped or remapped it: remove and re-add it);
 * -ENOMEM; any error fn returned. After a failure the next collect reports every range whole. */
int rtcr_dirty_collect(rtcr_dirty_t *t, rtcr_dirty_fn fn, void *ctx, rtcr_dirty_stats_t *ret_stats);

/* Start copying n segments (v[i].src -> v[i].dst). If their total is at least the tracker's
 * copy threshold, the helper thread starts on them at once, in 128 KiB pieces; otherwise
 * nothing happens until rtcr_dirty_copy_finish(), which copies them serially. The caller may do
 * unrelated work in between (reading the sources is fine, writing them or reading the
 * destinations is not) and must call rtcr_dirty_copy_finish() before the next collect, copy or
 * destroy (destroy finishes a forgotten copy itself). v, the sources and the destinations are
 * borrowed until then. Errors: -EINVAL NULL t, NULL v with n > 0, or a copy already begun.
 * Never fails otherwise: without a helper the copy runs serially. */
int rtcr_dirty_copy_begin(rtcr_dirty_t *t, const rtcr_dirty_copy_t *v, size_t n);

/* Copy what rtcr_dirty_copy_begin() started, together with the helper, and return when every
 * byte is at its destination. Must follow a successful rtcr_dirty_copy_begin(). */
void rtcr_dirty_copy_finish(rtcr_dirty_t *t);

/* flag of rtcr_dirty_set_parallel(): deal slices and pieces alternately to the caller (even)
 * and the helper (odd) and always wait for the helper, instead of letting whoever is free claim
 * the next one. Slower (the caller waits for a helper that starts late); for tests and
 * diagnosis, where every boundary between the two threads' work must be exercised. */
#define RTCR_DIRTY_PAR_DEAL (1u << 0)

/* Thresholds of the two-thread paths: a collect scans with two threads when the ranges hold at
 * least scan_min_pages pages (and more than one slice); a copy uses two threads from
 * copy_min_bytes. 0 means always (where there is more than one piece of work), SIZE_MAX never.
 * flags: 0 or RTCR_DIRTY_PAR_DEAL. Defaults RTCR_DIRTY_PAR_SCAN_PAGES,
 * RTCR_DIRTY_PAR_COPY_BYTES, 0. Errors: -EINVAL NULL t, unknown flags or a copy in progress. */
int rtcr_dirty_set_parallel(rtcr_dirty_t *t, size_t scan_min_pages, size_t copy_min_bytes,
                            unsigned flags);

/* Receive a file descriptor sent with SCM_RIGHTS (as by rtcr_dirty_target_send_uffd()) on the
 * unix socket sock; the received fd is O_CLOEXEC and owned by the caller. Blocks as the socket
 * does. Errors: -EBADMSG no fd in the message (or more than one: all are closed); -EPIPE peer
 * closed; -errno of recvmsg. */
int rtcr_dirty_recv_uffd(int sock, int *ret_fd);

/* ---- target side (librtcr-comp, libc only) -------------------------------------------- */

/* Create a userfaultfd for the calling process (O_CLOEXEC | O_NONBLOCK, user-mode faults only):
 * userfaultfd(2), falling back to /dev/userfaultfd. Returns the fd or -errno (-ENOSYS no
 * userfaultfd support, -EPERM/-EACCES not allowed). Do NOT call UFFDIO_API on it: the agent
 * does that. */
int rtcr_dirty_target_create_uffd(void);

/* What the target's base library calls once, before the agent starts tracking: create the
 * process's userfaultfd, send it over the unix socket sock (SCM_RIGHTS, one byte of payload)
 * to the agent and close the target's own copy. Returns 0 or -errno. */
int rtcr_dirty_target_send_uffd(int sock);

#endif
