/* rtcr/utcb.h — the fast IPC channel between a target process and the agent.
 *
 * A target (protection domain) is a separate Linux process; every kernel operation it makes
 * (l4_ipc_call, l4_ipc_reply_and_wait, l4_irq_receive, ...) is performed by the agent's
 * emulated kernel (rtcr/kernel.h). The transport is shared memory, shaped like Fiasco.OC's
 * UTCB: the agent creates one memfd "UTCB area" per target, holding a header and one UTCB
 * per target thread (up to RTCR_THREAD_MAX), and maps it into both processes. For each target
 * thread the agent runs a "mirror" thread that waits on that thread's UTCB, performs the
 * requested operation in the kernel on the thread's behalf and writes the result back.
 *
 * Protocol (one UTCB, one target thread, one mirror):
 *   target: fill op/dest/timeout/rcv window/msg; req_seq += 1 (release); if the agent sleeps,
 *           FUTEX_WAKE(req_seq); wait until rep_seq == the new req_seq: spin up to spin_nsec
 *           (pause instruction), then announce target_sleeping and FUTEX_WAIT(rep_seq).
 *   mirror: wait until req_seq != the last sequence it took: spin, then announce
 *           agent_sleeping and sleep in futex_waitv on {req_seq, the agent-private abort word};
 *           copy the request out exactly once into private memory, validate the copy only (the
 *           target is untrusted and may scribble on the UTCB at any time); run the operation;
 *           write result, label and message; rep_seq = the taken sequence (release); if the
 *           target sleeps, FUTEX_WAKE(rep_seq).
 * Spinning pays only while the peer runs on another CPU: two spinners sharing one CPU (a
 * loaded machine, wake-affine scheduling) would each burn their whole budget before the other
 * can run. So each side records the CPU it last ran on (target_cpu, agent_cpu) and spins only
 * when the peer's last CPU differs from its own; otherwise it goes to sleep at once.
 * Sequence numbers (not flags) make a late or repeated wake harmless: each side compares a
 * word with the exact value it expects, so there is no ABA. The futexes are shared
 * (no FUTEX_PRIVATE_FLAG) because two processes map the memory. The *_sleeping words are the
 * Dekker-style "is anybody asleep" hints that let the fast path skip the wake syscall; both
 * sides publish with sequentially consistent operations before reading the other's hint.
 *
 * Trust: the agent never reads anything from the area twice and never trusts the area header
 * (it keeps the geometry in private memory); garbage in any request field yields an error
 * result (validated in rtcr_utcb_serve_next) instead of a crash or a hang. The memfd is sealed
 * against shrinking, so a target cannot make the agent's mapping raise SIGBUS. A target that
 * corrupts its own UTCB can hang or confuse only itself.
 *
 * Quiesce: a checkpoint wants every target thread blocked in a wait at the agent. The mirror
 * object (agent-private) keeps a state word telling what its target thread is doing from the
 * agent's point of view (RTCR_UTCB_MIRROR_*), readable and awaitable by other agent threads.
 * An abort word (agent-private, typically one per target, shared by all its mirrors) makes
 * every mirror leave rtcr_utcb_serve_next with -ECANCELED without taking a request; requests
 * posted meanwhile stay in the UTCB and are taken after the word is cleared. A wait that the
 * agent interrupts (rtcr_thread_cancel_wait) can be handed back with rtcr_utcb_release() so that
 * it is restarted later rather than answered: every wait is restartable.
 *
 * Header-only for the target side (static inline, libc only: usable from static non-PIE target
 * binaries linking librtcr-comp.a); the agent side lives in rtcr-core/src/rtcr_utcb.c.
 */
#ifndef RTCR_UTCB_H
#define RTCR_UTCB_H

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <rtcr/kernel.h>

/* ---- layout -------------------------------------------------------------------------------- */

#define RTCR_UTCB_MAGIC         0x42435455u /* "UTCB" in little-endian byte order */
#define RTCR_UTCB_VERSION       1u          /* bump on any layout or protocol change */
#define RTCR_UTCB_CACHELINE     64          /* alignment of the header and of every UTCB */
#define RTCR_UTCB_SIZE          640         /* sizeof(rtcr_utcb_t): 2 header lines + message */
#define RTCR_UTCB_AREA_HDR_SIZE 64          /* sizeof(rtcr_utcb_area_hdr_t) */
#define RTCR_UTCB_AREA_OFFSET   64          /* byte offset of UTCB 0 in the area */
#define RTCR_UTCB_SPIN_NSEC     5000u       /* default spin before sleeping, either side */
#define RTCR_UTCB_SPIN_MAX_NSEC 100000u     /* the target clamps spin_nsec to this */

/* The operations a target thread can ask for. Values are ABI: append only, before _MAX. */
enum rtcr_utcb_op {
    RTCR_UTCB_OP_NONE = 0,    /* invalid (a zeroed UTCB): rejected with -ENOSYS */
    RTCR_UTCB_OP_CALL,        /* rtcr_ipc_call through slot `dest`; reply in msg */
    RTCR_UTCB_OP_REPLY_WAIT,  /* rtcr_ipc_reply_and_wait: msg is the reply, then the request */
    RTCR_UTCB_OP_WAIT,        /* rtcr_ipc_reply_and_wait without a reply */
    RTCR_UTCB_OP_IRQ_RECEIVE, /* rtcr_irq_receive on the IRQ at slot `dest` */
    RTCR_UTCB_OP_IRQ_TRIGGER, /* rtcr_irq_trigger on the IRQ at slot `dest` */
    RTCR_UTCB_OP_IRQ_UNMASK,  /* rtcr_irq_unmask on the IRQ at slot `dest` */
    RTCR_UTCB_OP_MAX
};

/* Which fields an operation reads (the rest are ignored and zero in the snapshot):
 *   CALL         dest, timeout_usec, rcv window, msg   -> result, msg (the reply)
 *   REPLY_WAIT   timeout_usec, rcv window, msg (reply) -> result, label, msg (the request)
 *   WAIT         timeout_usec, rcv window              -> result, label, msg (the request)
 *   IRQ_RECEIVE  dest, timeout_usec                    -> result, label
 *   IRQ_TRIGGER  dest                                  -> result
 *   IRQ_UNMASK   dest                                  -> result
 * A receive window with rcv_count 0 leaves the thread's window unchanged. */

/* One thread's UTCB in the shared area. Offsets are ABI (checked below). Line 0 is written by
 * the target, line 1 by the agent (so each side's spinning reads a line the other writes only
 * once per request), lines 2..9 hold the message, written by whoever owns the turn. */
typedef struct rtcr_utcb {
    /* line 0 (offset 0): the request, written by the target */
    uint32_t req_seq;         /*   0 futex: sequence of the latest posted request */
    uint32_t op;              /*   4 enum rtcr_utcb_op */
    uint32_t dest;            /*   8 kcap slot the operation names (gate or IRQ) */
    uint32_t rcv_base;        /*  12 receive window: first slot */
    uint32_t rcv_count;       /*  16 receive window: number of slots, 0 = unchanged */
    uint32_t target_sleeping; /*  20 non-zero while the target is (about to be) in FUTEX_WAIT */
    uint64_t timeout_usec;    /*  24 operation timeout, 0 = forever */
    uint32_t target_cpu;      /*  32 CPU the target posted from, + 1 (0 = unknown) */
    uint8_t req_reserved[28]; /*  36 zero */
    /* line 1 (offset 64): the reply, written by the agent */
    uint32_t rep_seq;         /*  64 futex: sequence of the latest answered request */
    int32_t result;           /*  68 >= 0 success, -errno failure */
    uint64_t label;           /*  72 delivered label (badge | rights, or IRQ attach label) */
    uint32_t agent_sleeping;  /*  80 non-zero while the mirror is (about to be) asleep */
    uint32_t spin_nsec;       /*  84 how long the target spins before sleeping (advisory) */
    uint32_t agent_cpu;       /*  88 CPU the mirror answered from, + 1 (0 = unknown) */
    uint8_t rep_reserved[36]; /*  92 zero */
    /* lines 2..9 (offset 128): the message */
    rtcr_msg_t msg; /* 128 tag (8 bytes) + 63 message registers (504 bytes) */
} __attribute__((aligned(RTCR_UTCB_CACHELINE))) rtcr_utcb_t;

_Static_assert(sizeof(rtcr_msgtag_t) == 8, "message tag is 8 bytes");
_Static_assert(sizeof(rtcr_msg_t) == 512, "message is 8 cache lines");
_Static_assert(sizeof(rtcr_utcb_t) == RTCR_UTCB_SIZE, "UTCB size is ABI");
_Static_assert(offsetof(rtcr_utcb_t, req_seq) == 0, "UTCB layout");
_Static_assert(offsetof(rtcr_utcb_t, target_sleeping) == 20, "UTCB layout");
_Static_assert(offsetof(rtcr_utcb_t, timeout_usec) == 24, "UTCB layout");
_Static_assert(offsetof(rtcr_utcb_t, target_cpu) == 32, "UTCB layout");
_Static_assert(offsetof(rtcr_utcb_t, agent_cpu) == 88, "UTCB layout");
_Static_assert(offsetof(rtcr_utcb_t, rep_seq) == 64, "UTCB layout");
_Static_assert(offsetof(rtcr_utcb_t, label) == 72, "UTCB layout");
_Static_assert(offsetof(rtcr_utcb_t, spin_nsec) == 84, "UTCB layout");
_Static_assert(offsetof(rtcr_utcb_t, msg) == 128, "UTCB layout");

/* The header at offset 0 of an area. Written once by the agent at creation; the target checks
 * it when attaching; the agent never reads it back. */
typedef struct rtcr_utcb_area_hdr {
    uint32_t magic;       /* RTCR_UTCB_MAGIC */
    uint32_t version;     /* RTCR_UTCB_VERSION */
    uint32_t utcb_size;   /* RTCR_UTCB_SIZE */
    uint32_t utcb_count;  /* number of UTCBs, 1..RTCR_THREAD_MAX */
    uint32_t utcb_offset; /* RTCR_UTCB_AREA_OFFSET */
    uint32_t area_size;   /* total bytes, a multiple of the page size */
    uint8_t reserved[40]; /* zero */
} __attribute__((aligned(RTCR_UTCB_CACHELINE))) rtcr_utcb_area_hdr_t;

_Static_assert(sizeof(rtcr_utcb_area_hdr_t) == RTCR_UTCB_AREA_HDR_SIZE, "area header is ABI");
_Static_assert(RTCR_UTCB_AREA_OFFSET % RTCR_UTCB_CACHELINE == 0, "UTCBs are line aligned");

/* Bytes needed for an area of `count` UTCBs, before rounding to pages. */
#define RTCR_UTCB_AREA_BYTES(count) (RTCR_UTCB_AREA_OFFSET + (size_t)(count)*RTCR_UTCB_SIZE)

/* ---- primitives shared by both sides -------------------------------------------------------- */

static inline void rtcr_utcb_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#else
    __asm__ volatile("" ::: "memory");
#endif
}

static inline uint64_t rtcr_utcb_now_nsec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* FUTEX_WAIT on a shared (cross-process) word; returns 0 or -errno (EAGAIN, EINTR, ...). */
static inline int rtcr_utcb_futex_wait(uint32_t *word, uint32_t expected)
{
    long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, NULL, NULL, 0);
    return r < 0 ? -errno : 0;
}

/* FUTEX_WAKE on a shared word: wake up to `n` waiters; returns the number woken or -errno. */
static inline int rtcr_utcb_futex_wake(uint32_t *word, int n)
{
    long r = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

/* Whether spinning for a peer that last ran on `peer_cpu1` (CPU + 1, 0 = unknown) can pay off
 * for a caller running on `my_cpu` (sched_getcpu(), < 0 = unknown). */
static inline bool rtcr_utcb_peer_elsewhere(uint32_t peer_cpu1, int my_cpu)
{
    return peer_cpu1 == 0 || my_cpu < 0 || peer_cpu1 != (uint32_t)my_cpu + 1;
}

/* True for the operations in which the target thread blocks in a kernel wait (the states a
 * checkpoint quiesces to). */
static inline bool rtcr_utcb_op_is_wait(uint32_t op)
{
    return op == RTCR_UTCB_OP_REPLY_WAIT || op == RTCR_UTCB_OP_WAIT ||
           op == RTCR_UTCB_OP_IRQ_RECEIVE;
}

/* ---- target side ---------------------------------------------------------------------------- */

/* Check an area mapping of `size` bytes at `base` as the target sees it: magic, version,
 * geometry. Returns the number of UTCBs (>= 1) or -EPROTO (not an area or another version),
 * -EINVAL (geometry inconsistent with `size`). */
static inline int rtcr_utcb_area_check(const void *base, size_t size)
{
    const rtcr_utcb_area_hdr_t *h = (const rtcr_utcb_area_hdr_t *)base;

    if (!base || size < RTCR_UTCB_AREA_HDR_SIZE)
        return -EINVAL;
    if (h->magic != RTCR_UTCB_MAGIC || h->version != RTCR_UTCB_VERSION)
        return -EPROTO;
    if (h->utcb_size != RTCR_UTCB_SIZE || h->utcb_offset != RTCR_UTCB_AREA_OFFSET ||
        h->utcb_count == 0 || h->utcb_count > RTCR_THREAD_MAX ||
        RTCR_UTCB_AREA_BYTES(h->utcb_count) > size || h->area_size > size)
        return -EINVAL;
    return (int)h->utcb_count;
}

/* UTCB `index` of a checked area, or NULL if out of range. */
static inline rtcr_utcb_t *rtcr_utcb_area_at(void *base, unsigned index)
{
    const rtcr_utcb_area_hdr_t *h = (const rtcr_utcb_area_hdr_t *)base;

    if (!base || index >= h->utcb_count || index >= RTCR_THREAD_MAX)
        return NULL;
    return (rtcr_utcb_t *)((char *)base + RTCR_UTCB_AREA_OFFSET + (size_t)index * RTCR_UTCB_SIZE);
}

/* Target side: map the area passed as `fd` (shared, read-write) and check it. On success
 * *ret_base and *ret_size describe the mapping (release with munmap) and the UTCB count is
 * returned. Errors: -errno of fstat/mmap, those of rtcr_utcb_area_check(). The fd stays the
 * caller's. */
static inline int rtcr_utcb_area_attach(int fd, void **ret_base, size_t *ret_size)
{
    struct stat st;
    void *base;
    int r;

    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_size < (off_t)RTCR_UTCB_AREA_BYTES(1) || st.st_size > (off_t)(64u << 20))
        return -EINVAL;
    base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return -errno;
    r = rtcr_utcb_area_check(base, (size_t)st.st_size);
    if (r < 0) {
        munmap(base, (size_t)st.st_size);
        return r;
    }
    *ret_base = base;
    *ret_size = (size_t)st.st_size;
    return r;
}

/* Target side: perform the operation described in *u (op, dest, timeout_usec, rcv window,
 * msg, filled by the caller) at the agent and wait for its answer. Returns u->result: >= 0 on
 * success, -errno from the agent (validation: -ENOSYS unknown op, -EMSGSIZE message counts,
 * -ERANGE slot or window; then the kernel's errors). On return msg and label hold the
 * operation's outputs (see the table above). Never fails locally; it blocks until the agent
 * answers (it does not return if the agent never does). One caller per UTCB at a time. */
static inline int rtcr_utcb_invoke(rtcr_utcb_t *u)
{
    uint32_t seq = __atomic_load_n(&u->req_seq, __ATOMIC_RELAXED) + 1;
    uint32_t spin, cur;
    uint64_t deadline = 0;
    unsigned i;

    int cpu = sched_getcpu();

    __atomic_store_n(&u->target_cpu, (uint32_t)(cpu + 1), __ATOMIC_RELAXED);
    /* publish; the seq_cst store orders it before the read of the agent's sleeping hint */
    __atomic_store_n(&u->req_seq, seq, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&u->agent_sleeping, __ATOMIC_SEQ_CST))
        rtcr_utcb_futex_wake(&u->req_seq, INT_MAX);

    spin = __atomic_load_n(&u->spin_nsec, __ATOMIC_RELAXED);
    if (spin > RTCR_UTCB_SPIN_MAX_NSEC)
        spin = RTCR_UTCB_SPIN_MAX_NSEC;
    if (!rtcr_utcb_peer_elsewhere(__atomic_load_n(&u->agent_cpu, __ATOMIC_RELAXED), cpu))
        spin = 0;
    for (i = 0; spin; i++) {
        if (__atomic_load_n(&u->rep_seq, __ATOMIC_ACQUIRE) == seq)
            return __atomic_load_n(&u->result, __ATOMIC_RELAXED);
        rtcr_utcb_cpu_relax();
        if ((i & 15) == 0) {
            uint64_t now = rtcr_utcb_now_nsec();
            if (!deadline)
                deadline = now + spin;
            else if (now >= deadline)
                break;
        }
    }
    for (;;) {
        __atomic_store_n(&u->target_sleeping, 1, __ATOMIC_SEQ_CST);
        cur = __atomic_load_n(&u->rep_seq, __ATOMIC_SEQ_CST);
        if (cur == seq)
            break;
        rtcr_utcb_futex_wait(&u->rep_seq, cur);
    }
    __atomic_store_n(&u->target_sleeping, 0, __ATOMIC_RELAXED);
    return __atomic_load_n(&u->result, __ATOMIC_RELAXED);
}

/* ---- agent side (rtcr-core/src/rtcr_utcb.c) -------------------------------------------------- */

/* An area: the memfd and the agent's mapping of it. Caller of _new owns. */
typedef struct rtcr_utcb_area rtcr_utcb_area_t;

/* Create an area of `count` (1..RTCR_THREAD_MAX) UTCBs in a new memfd named `name` (for
 * /proc/PID/maps; may be NULL), sealed against resizing, mapped shared, header written, every
 * UTCB zeroed with spin_nsec = RTCR_UTCB_SPIN_NSEC. Errors: -EINVAL bad count, -errno of
 * memfd_create/ftruncate/fcntl/mmap, -ENOMEM. */
int rtcr_utcb_area_new(const char *name, unsigned count, rtcr_utcb_area_t **ret_area);
/* Unmap, close and free; NULL-safe, idempotent, NULLs *p. Mirrors of it must be destroyed first. */
void rtcr_utcb_area_destroy(rtcr_utcb_area_t **p);
/* The memfd (O_CLOEXEC; borrowed: dup it to pass it to the target). */
int rtcr_utcb_area_fd(const rtcr_utcb_area_t *a);
/* Size in bytes of the memfd and of the mapping. */
size_t rtcr_utcb_area_size(const rtcr_utcb_area_t *a);
/* Number of UTCBs (the agent's own copy; the shared header is never read back). */
unsigned rtcr_utcb_area_count(const rtcr_utcb_area_t *a);
/* The agent's mapping of the whole area (what the target checks with rtcr_utcb_area_check). */
void *rtcr_utcb_area_base(const rtcr_utcb_area_t *a);
/* UTCB `index` in the agent's mapping (borrowed until the area is destroyed), NULL if out of
 * range. */
rtcr_utcb_t *rtcr_utcb_area_utcb(rtcr_utcb_area_t *a, unsigned index);

/* A request as the mirror took it: a private, validated snapshot. */
typedef struct rtcr_utcb_req {
    uint32_t seq;          /* the request's sequence number */
    enum rtcr_utcb_op op;  /* a valid operation (RTCR_UTCB_OP_NONE < op < RTCR_UTCB_OP_MAX) */
    unsigned dest;         /* slot < RTCR_CAP_SLOTS for ops that use it, else 0 */
    unsigned rcv_base;     /* receive window base; base + count <= RTCR_CAP_SLOTS */
    unsigned rcv_count;    /* receive window size <= RTCR_RCV_SLOTS_MAX, 0 = unchanged */
    uint64_t timeout_usec; /* 0 = forever */
    rtcr_msg_t msg;        /* words + 2 * items <= RTCR_MSG_WORDS for ops with a message;
                            * all zero for ops without one; registers past the used ones 0 */
} rtcr_utcb_req_t;

/* What a target thread is doing, as its mirror sees it. */
enum rtcr_utcb_mirror_state {
    RTCR_UTCB_MIRROR_IDLE = 0, /* mirror outside serve_next: not serving (new, aborted, ...) */
    RTCR_UTCB_MIRROR_READY,    /* mirror waits for a request: the target runs its own code */
    RTCR_UTCB_MIRROR_CALL,     /* a non-wait operation taken and in progress */
    RTCR_UTCB_MIRROR_WAIT,     /* a wait operation taken: the target thread blocks in a wait */
    RTCR_UTCB_MIRROR_STATE_MAX
};
#define RTCR_UTCB_MIRROR_MASK(s) (1u << (s))

/* mirror flags */
#define RTCR_UTCB_MIRROR_NO_WAITV (1u << 0) /* don't use futex_waitv: portable slow abort path */

/* Counters of one mirror. */
typedef struct rtcr_utcb_mirror_stats {
    uint64_t served;   /* requests handed out by serve_next */
    uint64_t rejected; /* requests answered with a validation error */
    uint64_t sleeps;   /* times serve_next slept in the kernel after spinning */
} rtcr_utcb_mirror_stats_t;

/* The agent-private serving end of one UTCB. */
typedef struct rtcr_utcb_mirror rtcr_utcb_mirror_t;

/* A mirror serving `utcb` (borrowed; must outlive the mirror), stopped by `abort_word`
 * (borrowed, agent-private memory, may be shared by many mirrors; non-zero = abort). The
 * mirror starts after the UTCB's current req_seq: requests posted before are not taken.
 * `flags` RTCR_UTCB_MIRROR_*. Returns -EINVAL (NULL argument, unknown flag), -ENOMEM. */
int rtcr_utcb_mirror_new(rtcr_utcb_t *utcb, uint32_t *abort_word, unsigned flags,
                         rtcr_utcb_mirror_t **ret_mirror);
/* NULL-safe, idempotent, NULLs *p. Must not be in use by another thread. */
void rtcr_utcb_mirror_destroy(rtcr_utcb_mirror_t **p);
/* How long serve_next spins before sleeping (default RTCR_UTCB_SPIN_NSEC; 0 = never spin). */
void rtcr_utcb_mirror_set_spin(rtcr_utcb_mirror_t *m, uint32_t spin_nsec);
/* How long the target spins before sleeping: written into the UTCB (advisory to the target). */
void rtcr_utcb_set_target_spin(rtcr_utcb_t *u, uint32_t spin_nsec);

/* Wait for the target's next request, copy it out once, validate the copy. An invalid request
 * is answered right here with its error (-ENOSYS unknown op, -EMSGSIZE words + 2 * items >
 * RTCR_MSG_WORDS, -ERANGE dest or receive window out of range), counted as rejected, and the
 * wait continues. A valid one is stored in *ret_req, becomes the mirror's pending request
 * (answer it with rtcr_utcb_complete or hand it back with rtcr_utcb_release), and the mirror
 * state becomes CALL or WAIT. `timeout_usec` 0 = forever.
 * Returns 0, or: -ECANCELED the abort word is set (checked first, also before sleeping);
 * -ETIMEDOUT; -EBUSY a request is still pending (agent bug). On error the state is IDLE and
 * *ret_req untouched. Called by one thread at a time per mirror. */
int rtcr_utcb_serve_next(rtcr_utcb_mirror_t *m, uint64_t timeout_usec, rtcr_utcb_req_t *ret_req);
/* Answer the pending request: write result and label and, if `msg` is non-NULL, its tag and
 * used registers (words + 2 * items, clamped to RTCR_MSG_WORDS) into the UTCB, then publish
 * and wake the target. State becomes READY.
 * Returns 0 or -EALREADY when nothing is pending. */
int rtcr_utcb_complete(rtcr_utcb_mirror_t *m, int32_t result, const rtcr_msg_t *msg,
                       uint64_t label);
/* Hand the pending request back unanswered: the next serve_next takes the same sequence again,
 * re-read and re-validated from the UTCB (for a wait interrupted by quiesce: it restarts).
 * State becomes IDLE. Returns 0 or -EALREADY when nothing is pending. */
int rtcr_utcb_release(rtcr_utcb_mirror_t *m);

/* Set an abort word and wake every mirror sleeping on it: they return -ECANCELED. Mirrors
 * without futex_waitv (flag or old kernel) notice within 10 ms, or at once after
 * rtcr_utcb_mirror_kick(). */
void rtcr_utcb_abort(uint32_t *abort_word);
/* Clear an abort word (mirrors serve again on their next serve_next). */
void rtcr_utcb_abort_clear(uint32_t *abort_word);
/* Wake the mirror if it sleeps, making it re-check its abort word now. */
void rtcr_utcb_mirror_kick(rtcr_utcb_mirror_t *m);

/* The mirror's current state (any thread may ask). */
enum rtcr_utcb_mirror_state rtcr_utcb_mirror_state(const rtcr_utcb_mirror_t *m);
/* Wait until the state is one of `mask` (RTCR_UTCB_MIRROR_MASK bits); returns the state, or
 * -ETIMEDOUT after `timeout_usec` (0 = forever), -EINVAL for an empty mask. Any thread. */
int rtcr_utcb_mirror_wait_state(rtcr_utcb_mirror_t *m, unsigned mask, uint64_t timeout_usec);
/* Copy the counters. */
void rtcr_utcb_mirror_stats(const rtcr_utcb_mirror_t *m, rtcr_utcb_mirror_stats_t *ret_stats);
/* The UTCB this mirror serves (borrowed). */
rtcr_utcb_t *rtcr_utcb_mirror_utcb(const rtcr_utcb_mirror_t *m);

#endif
