/* rtcr_utcb.c — the agent's end of the UTCB channel: areas and mirrors.
 *
 * The protocol and the layout are described in rtcr/utcb.h. This file keeps to three rules:
 *   - shared memory is read once per request, into a private snapshot, and only the snapshot is
 *     validated and used (a hostile target may rewrite its UTCB between any two instructions);
 *   - nothing the target controls can make the mirror block forever: a sleep is either on the
 *     request word together with the agent-private abort word (futex_waitv, Linux >= 5.16), or,
 *     without futex_waitv, in slices of at most ABORT_POLL_NSEC;
 *   - the mirror's state word is agent-private; a quiescing thread may read it or sleep on it.
 *     Transitions wake sleepers only when someone announced itself (watchers), so the hot path
 *     pays no system call for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

#include <rtcr/utcb.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

/* Without futex_waitv, a sleeping mirror re-checks its abort word at least this often. */
#define ABORT_POLL_NSEC 10000000ull

#define NSEC_PER_SEC  1000000000ull
#define NSEC_PER_USEC 1000ull

struct rtcr_utcb_area {
    int fd;         /* the memfd, O_CLOEXEC */
    void *base;     /* agent mapping of the whole memfd */
    size_t size;    /* bytes of the memfd and the mapping */
    unsigned count; /* UTCBs; the agent's copy, the shared header is never read back */
};

struct rtcr_utcb_mirror {
    rtcr_utcb_t *utcb;           /* borrowed: the shared UTCB it serves */
    uint32_t *abort;             /* borrowed: agent-private abort word, non-zero = abort */
    unsigned flags;              /* RTCR_UTCB_MIRROR_* */
    uint32_t spin_nsec;          /* spin budget before sleeping in serve_next */
    uint32_t taken_seq;          /* sequence of the last request taken */
    uint32_t prev_seq;           /* taken_seq before the pending request (for release) */
    bool pending;                /* a taken request waits for complete or release */
    bool no_waitv;               /* futex_waitv unavailable or disabled */
    uint32_t state;              /* private futex: enum rtcr_utcb_mirror_state */
    uint32_t watchers;           /* threads in rtcr_utcb_mirror_wait_state */
    rtcr_utcb_mirror_stats_t st; /* counters, updated with relaxed atomics */
};

/* ---- time and futex helpers ------------------------------------------------------------------ */

static void nsec_to_ts(uint64_t nsec, struct timespec *ts)
{
    ts->tv_sec = (time_t)(nsec / NSEC_PER_SEC);
    ts->tv_nsec = (long)(nsec % NSEC_PER_SEC);
}

/* deadline in CLOCK_MONOTONIC nsec for a timeout in usec; 0 = none */
static uint64_t deadline_of(uint64_t timeout_usec)
{
    if (!timeout_usec)
        return 0;
    if (timeout_usec > UINT64_MAX / NSEC_PER_USEC / 2)
        return 0; /* centuries: forever */
    return rtcr_utcb_now_nsec() + timeout_usec * NSEC_PER_USEC;
}

/* FUTEX_WAIT_BITSET (absolute CLOCK_MONOTONIC deadline, 0 = none) */
static int futex_wait_abs(uint32_t *word, uint32_t expected, uint64_t deadline, bool private)
{
    struct timespec ts;
    int op = FUTEX_WAIT_BITSET | (private ? FUTEX_PRIVATE_FLAG : 0);
    long r;

    if (deadline)
        nsec_to_ts(deadline, &ts);
    r = syscall(SYS_futex, word, op, expected, deadline ? &ts : NULL, NULL, FUTEX_BITSET_MATCH_ANY);
    return r < 0 ? -errno : 0;
}

static void futex_wake_private(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* ---- areas ----------------------------------------------------------------------------------- */

int rtcr_utcb_area_new(const char *name, unsigned count, rtcr_utcb_area_t **ret_area)
{
    rtcr_utcb_area_t *a;
    rtcr_utcb_area_hdr_t *h;
    long page = sysconf(_SC_PAGESIZE);
    size_t size;
    int r;

    if (!ret_area || count == 0 || count > RTCR_THREAD_MAX)
        return -EINVAL;
    if (page <= 0)
        page = 4096;
    size = (RTCR_UTCB_AREA_BYTES(count) + (size_t)page - 1) / (size_t)page * (size_t)page;

    a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->fd = -1;
    a->base = MAP_FAILED;
    a->size = size;
    a->count = count;

    a->fd = memfd_create(name ? name : "rtcr-utcb", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (a->fd < 0)
        goto fail_errno;
    if (ftruncate(a->fd, (off_t)size) < 0)
        goto fail_errno;
    /* a target holding the fd must not shrink it under the agent's mapping (SIGBUS) */
    if (fcntl(a->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        goto fail_errno;
    a->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
    if (a->base == MAP_FAILED)
        goto fail_errno;

    /* a fresh memfd reads as zeroes: only the non-zero fields need writing */
    h = a->base;
    h->magic = RTCR_UTCB_MAGIC;
    h->version = RTCR_UTCB_VERSION;
    h->utcb_size = RTCR_UTCB_SIZE;
    h->utcb_count = count;
    h->utcb_offset = RTCR_UTCB_AREA_OFFSET;
    h->area_size = (uint32_t)size;
    for (unsigned i = 0; i < count; i++)
        rtcr_utcb_set_target_spin(rtcr_utcb_area_utcb(a, i), RTCR_UTCB_SPIN_NSEC);

    *ret_area = a;
    return 0;

fail_errno:
    r = -errno;
    rtcr_utcb_area_destroy(&a);
    return r;
}

void rtcr_utcb_area_destroy(rtcr_utcb_area_t **p)
{
    rtcr_utcb_area_t *a;

    if (!p || !*p)
        return;
    a = *p;
    *p = NULL;
    if (a->base != MAP_FAILED)
        munmap(a->base, a->size);
    if (a->fd >= 0)
        close(a->fd);
    free(a);
}

int rtcr_utcb_area_fd(const rtcr_utcb_area_t *a)
{
    return a->fd;
}

size_t rtcr_utcb_area_size(const rtcr_utcb_area_t *a)
{
    return a->size;
}

unsigned rtcr_utcb_area_count(const rtcr_utcb_area_t *a)
{
    return a->count;
}

void *rtcr_utcb_area_base(const rtcr_utcb_area_t *a)
{
    return a->base;
}

rtcr_utcb_t *rtcr_utcb_area_utcb(rtcr_utcb_area_t *a, unsigned index)
{
    if (!a || index >= a->count)
        return NULL;
    return (rtcr_utcb_t *)((char *)a->base + RTCR_UTCB_AREA_OFFSET +
                           (size_t)index * RTCR_UTCB_SIZE);
}

/* ---- mirrors --------------------------------------------------------------------------------- */

int rtcr_utcb_mirror_new(rtcr_utcb_t *utcb, uint32_t *abort_word, unsigned flags,
                         rtcr_utcb_mirror_t **ret_mirror)
{
    rtcr_utcb_mirror_t *m;

    if (!utcb || !abort_word || !ret_mirror || (flags & ~RTCR_UTCB_MIRROR_NO_WAITV))
        return -EINVAL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->utcb = utcb;
    m->abort = abort_word;
    m->flags = flags;
    m->spin_nsec = RTCR_UTCB_SPIN_NSEC;
    m->no_waitv = flags & RTCR_UTCB_MIRROR_NO_WAITV;
    m->taken_seq = __atomic_load_n(&utcb->req_seq, __ATOMIC_ACQUIRE);
    m->state = RTCR_UTCB_MIRROR_IDLE;
    *ret_mirror = m;
    return 0;
}

void rtcr_utcb_mirror_destroy(rtcr_utcb_mirror_t **p)
{
    if (!p || !*p)
        return;
    free(*p);
    *p = NULL;
}

void rtcr_utcb_mirror_set_spin(rtcr_utcb_mirror_t *m, uint32_t spin_nsec)
{
    m->spin_nsec = spin_nsec;
}

void rtcr_utcb_set_target_spin(rtcr_utcb_t *u, uint32_t spin_nsec)
{
    __atomic_store_n(&u->spin_nsec, spin_nsec, __ATOMIC_RELAXED);
}

rtcr_utcb_t *rtcr_utcb_mirror_utcb(const rtcr_utcb_mirror_t *m)
{
    return m->utcb;
}

static void bump(uint64_t *c)
{
    __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

static void set_state(rtcr_utcb_mirror_t *m, enum rtcr_utcb_mirror_state s)
{
    /* store, then read the watcher count: pairs with the reverse order in wait_state */
    __atomic_store_n(&m->state, (uint32_t)s, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&m->watchers, __ATOMIC_SEQ_CST))
        futex_wake_private(&m->state);
}

enum rtcr_utcb_mirror_state rtcr_utcb_mirror_state(const rtcr_utcb_mirror_t *m)
{
    return (enum rtcr_utcb_mirror_state)__atomic_load_n(&m->state, __ATOMIC_SEQ_CST);
}

int rtcr_utcb_mirror_wait_state(rtcr_utcb_mirror_t *m, unsigned mask, uint64_t timeout_usec)
{
    uint64_t deadline = deadline_of(timeout_usec);
    int r;

    if (!(mask & ((1u << RTCR_UTCB_MIRROR_STATE_MAX) - 1)))
        return -EINVAL;
    __atomic_fetch_add(&m->watchers, 1, __ATOMIC_SEQ_CST);
    for (;;) {
        uint32_t s = __atomic_load_n(&m->state, __ATOMIC_SEQ_CST);
        if (mask & RTCR_UTCB_MIRROR_MASK(s)) {
            r = (int)s;
            break;
        }
        if (deadline && rtcr_utcb_now_nsec() >= deadline) {
            r = -ETIMEDOUT;
            break;
        }
        futex_wait_abs(&m->state, s, deadline, true);
    }
    __atomic_fetch_sub(&m->watchers, 1, __ATOMIC_SEQ_CST);
    return r;
}

void rtcr_utcb_mirror_stats(const rtcr_utcb_mirror_t *m, rtcr_utcb_mirror_stats_t *ret_stats)
{
    ret_stats->served = __atomic_load_n(&m->st.served, __ATOMIC_RELAXED);
    ret_stats->rejected = __atomic_load_n(&m->st.rejected, __ATOMIC_RELAXED);
    ret_stats->sleeps = __atomic_load_n(&m->st.sleeps, __ATOMIC_RELAXED);
}

void rtcr_utcb_abort(uint32_t *abort_word)
{
    __atomic_store_n(abort_word, 1, __ATOMIC_SEQ_CST);
    futex_wake_private(abort_word);
}

void rtcr_utcb_abort_clear(uint32_t *abort_word)
{
    __atomic_store_n(abort_word, 0, __ATOMIC_SEQ_CST);
}

void rtcr_utcb_mirror_kick(rtcr_utcb_mirror_t *m)
{
    rtcr_utcb_futex_wake(&m->utcb->req_seq, INT_MAX);
}

static bool aborted(const rtcr_utcb_mirror_t *m)
{
    return __atomic_load_n(m->abort, __ATOMIC_SEQ_CST) != 0;
}

/* One sleep until req_seq may differ from m->taken_seq, the abort word may be set, or the
 * deadline (0 = none) passes. Spurious returns are fine: the caller re-checks everything. */
static void sleep_once(rtcr_utcb_mirror_t *m, uint64_t deadline)
{
    struct timespec ts;
    uint64_t slice;

    if (!m->no_waitv) {
        struct futex_waitv w[2] = {
            {.val = m->taken_seq, .uaddr = (uintptr_t)&m->utcb->req_seq, .flags = FUTEX_32},
            {.val = 0, .uaddr = (uintptr_t)m->abort, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG},
        };
        long r;

        if (deadline)
            nsec_to_ts(deadline, &ts);
        r = syscall(SYS_futex_waitv, w, 2, 0, deadline ? &ts : NULL, CLOCK_MONOTONIC);
        if (r >= 0 || errno != ENOSYS)
            return;
        m->no_waitv = true; /* kernel < 5.16 (or a tool that does not know it) */
    }
    slice = rtcr_utcb_now_nsec() + ABORT_POLL_NSEC;
    if (deadline && deadline < slice)
        slice = deadline;
    futex_wait_abs(&m->utcb->req_seq, m->taken_seq, slice, false);
}

/* Wait until the target posts a sequence other than the last taken one. */
static int wait_request(rtcr_utcb_mirror_t *m, uint64_t deadline, uint32_t *ret_seq)
{
    rtcr_utcb_t *u = m->utcb;
    uint64_t spin_end = 0;
    uint32_t s, spin = m->spin_nsec;
    int r;

    /* a target that last ran on this CPU cannot post while we spin here */
    if (!rtcr_utcb_peer_elsewhere(__atomic_load_n(&u->target_cpu, __ATOMIC_RELAXED),
                                  sched_getcpu()))
        spin = 0;
    for (unsigned i = 0;; i++) {
        if (aborted(m))
            return -ECANCELED;
        s = __atomic_load_n(&u->req_seq, __ATOMIC_ACQUIRE);
        if (s != m->taken_seq) {
            *ret_seq = s;
            return 0;
        }
        if (!spin)
            break;
        rtcr_utcb_cpu_relax();
        if ((i & 15) == 0) {
            uint64_t now = rtcr_utcb_now_nsec();
            if (!spin_end)
                spin_end = now + spin;
            else if (now >= spin_end)
                break;
            if (deadline && now >= deadline)
                return -ETIMEDOUT;
        }
    }

    for (;;) {
        /* announce, then re-check: pairs with the target's store of req_seq, load of the hint */
        __atomic_store_n(&u->agent_sleeping, 1, __ATOMIC_SEQ_CST);
        if (aborted(m)) {
            r = -ECANCELED;
            break;
        }
        s = __atomic_load_n(&u->req_seq, __ATOMIC_SEQ_CST);
        if (s != m->taken_seq) {
            *ret_seq = s;
            r = 0;
            break;
        }
        if (deadline && rtcr_utcb_now_nsec() >= deadline) {
            r = -ETIMEDOUT;
            break;
        }
        bump(&m->st.sleeps);
        sleep_once(m, deadline);
    }
    __atomic_store_n(&u->agent_sleeping, 0, __ATOMIC_RELAXED);
    return r;
}

static bool op_uses_dest(uint32_t op)
{
    return op == RTCR_UTCB_OP_CALL || op == RTCR_UTCB_OP_IRQ_RECEIVE ||
           op == RTCR_UTCB_OP_IRQ_TRIGGER || op == RTCR_UTCB_OP_IRQ_UNMASK;
}

static bool op_uses_window(uint32_t op)
{
    return op == RTCR_UTCB_OP_CALL || op == RTCR_UTCB_OP_REPLY_WAIT || op == RTCR_UTCB_OP_WAIT;
}

static bool op_uses_timeout(uint32_t op)
{
    return op_uses_window(op) || op == RTCR_UTCB_OP_IRQ_RECEIVE;
}

static bool op_sends_msg(uint32_t op)
{
    return op == RTCR_UTCB_OP_CALL || op == RTCR_UTCB_OP_REPLY_WAIT;
}

/* Copy the request once out of the shared UTCB into *r and validate the copy. Each shared
 * field is read exactly once (volatile); the compiler barrier keeps it from re-reading the
 * shared memory in place of the private copy. */
static int snapshot(const rtcr_utcb_t *u, uint32_t seq, rtcr_utcb_req_t *r)
{
    const volatile rtcr_utcb_t *vu = u;
    uint32_t op, dest, base, cnt;
    uint64_t timeout;
    rtcr_msgtag_t tag;
    unsigned n;

    memset(r, 0, sizeof(*r));
    op = vu->op;
    dest = vu->dest;
    base = vu->rcv_base;
    cnt = vu->rcv_count;
    timeout = vu->timeout_usec;
    memcpy(&tag, (const void *)&u->msg.tag, sizeof(tag));
    __asm__ volatile("" ::: "memory");

    if (op == RTCR_UTCB_OP_NONE || op >= RTCR_UTCB_OP_MAX)
        return -ENOSYS;
    if (op_uses_dest(op)) {
        if (dest >= RTCR_CAP_SLOTS)
            return -ERANGE;
        r->dest = dest;
    }
    if (op_uses_window(op) && cnt) {
        if (cnt > RTCR_RCV_SLOTS_MAX || base >= RTCR_CAP_SLOTS || cnt > RTCR_CAP_SLOTS - base)
            return -ERANGE;
        r->rcv_base = base;
        r->rcv_count = cnt;
    }
    if (op_uses_timeout(op))
        r->timeout_usec = timeout;
    if (op_sends_msg(op)) {
        n = (unsigned)tag.words + 2u * tag.items;
        if (n > RTCR_MSG_WORDS)
            return -EMSGSIZE;
        memcpy(r->msg.mr, (const void *)u->msg.mr, n * sizeof(uint64_t));
        __asm__ volatile("" ::: "memory");
        r->msg.tag = tag;
    }
    r->seq = seq;
    r->op = (enum rtcr_utcb_op)op;
    return 0;
}

/* Write an answer for sequence `seq` and wake the target if it sleeps. */
static void answer(rtcr_utcb_t *u, uint32_t seq, int32_t result, const rtcr_msg_t *msg,
                   uint64_t label)
{
    volatile rtcr_utcb_t *vu = u;

    vu->result = result;
    vu->label = label;
    vu->agent_cpu = (uint32_t)(sched_getcpu() + 1);
    if (msg) {
        unsigned n = (unsigned)msg->tag.words + 2u * msg->tag.items;
        if (n > RTCR_MSG_WORDS)
            n = RTCR_MSG_WORDS;
        memcpy(u->msg.mr, msg->mr, n * sizeof(uint64_t));
        memcpy(&u->msg.tag, &msg->tag, sizeof(msg->tag));
    }
    /* publish (orders the writes above), then read the target's sleeping hint */
    __atomic_store_n(&u->rep_seq, seq, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&u->target_sleeping, __ATOMIC_SEQ_CST))
        rtcr_utcb_futex_wake(&u->rep_seq, INT_MAX);
}

int rtcr_utcb_serve_next(rtcr_utcb_mirror_t *m, uint64_t timeout_usec, rtcr_utcb_req_t *ret_req)
{
    uint64_t deadline = deadline_of(timeout_usec);
    rtcr_utcb_req_t req;
    uint32_t seq;
    int r;

    if (m->pending)
        return -EBUSY;
    set_state(m, RTCR_UTCB_MIRROR_READY);
    for (;;) {
        r = wait_request(m, deadline, &seq);
        if (r < 0) {
            set_state(m, RTCR_UTCB_MIRROR_IDLE);
            return r;
        }
        r = snapshot(m->utcb, seq, &req);
        if (r >= 0)
            break;
        m->taken_seq = seq;
        bump(&m->st.rejected);
        answer(m->utcb, seq, r, NULL, 0);
    }
    m->prev_seq = m->taken_seq;
    m->taken_seq = seq;
    m->pending = true;
    bump(&m->st.served);
    set_state(m, rtcr_utcb_op_is_wait(req.op) ? RTCR_UTCB_MIRROR_WAIT : RTCR_UTCB_MIRROR_CALL);
    memcpy(ret_req, &req, sizeof(req));
    return 0;
}

int rtcr_utcb_complete(rtcr_utcb_mirror_t *m, int32_t result, const rtcr_msg_t *msg, uint64_t label)
{
    if (!m->pending)
        return -EALREADY;
    m->pending = false;
    /* READY before the answer is visible: a quiescer never sees WAIT while the target runs */
    set_state(m, RTCR_UTCB_MIRROR_READY);
    answer(m->utcb, m->taken_seq, result, msg, label);
    return 0;
}

int rtcr_utcb_release(rtcr_utcb_mirror_t *m)
{
    if (!m->pending)
        return -EALREADY;
    m->pending = false;
    m->taken_seq = m->prev_seq;
    set_state(m, RTCR_UTCB_MIRROR_IDLE);
    return 0;
}
