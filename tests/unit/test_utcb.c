/* test_utcb.c — the UTCB channel between two real processes.
 *
 * Each test creates a memfd UTCB area, forks a child that plays the target (it uses only the
 * header-only target side: rtcr_utcb_invoke) and serves it from the parent with a mirror. A
 * child cannot use cmocka's assertions (they would longjmp inside the forked copy), so it
 * checks its own results and reports through its exit status, which the parent asserts.
 * Every child is reaped (killed if need be) and every fd and mapping released.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <rtcr/utcb.h>

#define SERVE_TIMEOUT_USEC 5000000u /* a test never waits longer than this for a request */
#define ROUNDS             300

/* ---- helpers --------------------------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void sleep_usec(unsigned usec)
{
    struct timespec ts = {.tv_sec = usec / 1000000u, .tv_nsec = (long)(usec % 1000000u) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

typedef int (*child_fn)(void *base, void *arg);

/* The children a test started (its cmocka state), so that the teardown can kill and reap
 * whatever a failing test left behind. */
struct kids {
    pid_t pid[8]; /* live, unreaped children; 0 = free */
};

static int kids_setup(void **state)
{
    *state = calloc(1, sizeof(struct kids));
    return *state ? 0 : -1;
}

static int kids_teardown(void **state)
{
    struct kids *k = *state;
    for (unsigned i = 0; i < 8; i++) {
        if (k->pid[i] > 0) {
            kill(k->pid[i], SIGKILL);
            waitpid(k->pid[i], NULL, 0);
        }
    }
    free(k);
    return 0;
}

/* the child has been reaped by the test itself */
static void forget(void **state, pid_t pid)
{
    struct kids *k = *state;
    for (unsigned i = 0; i < 8; i++)
        if (k->pid[i] == pid)
            k->pid[i] = 0;
}

/* fork a target child running fn(area base, arg); its return value is its exit status */
static pid_t spawn(void **state, rtcr_utcb_area_t *a, child_fn fn, void *arg)
{
    struct kids *k = *state;
    unsigned i = 0;
    pid_t pid;

    while (i < 8 && k->pid[i])
        i++;
    assert_true(i < 8);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int rc = fn(rtcr_utcb_area_base(a), arg);
        _exit(rc & 0xff);
    }
    k->pid[i] = pid;
    return pid;
}

/* wait up to 5 s for the child, then kill it; returns its exit status or -1 if it did not
 * exit normally */
static int reap(void **state, pid_t pid)
{
    int st = 0;
    forget(state, pid);
    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        sleep_usec(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* the message pattern of request i: words w, mr[k] = i * 1000 + k */
static void fill_request(rtcr_msg_t *msg, unsigned i, unsigned words)
{
    msg->tag.label = (int32_t)(i + 7);
    msg->tag.words = (uint8_t)words;
    msg->tag.items = 0;
    msg->tag.flags = 0;
    for (unsigned k = 0; k < words; k++)
        msg->mr[k] = (uint64_t)i * 1000u + k;
}

/* what the parent's handler makes of a request: every register + 1, label negated, result =
 * words, label = 4 * seq */
static int handle(const rtcr_utcb_req_t *req, rtcr_msg_t *reply, uint64_t *ret_label)
{
    *reply = req->msg;
    reply->tag.label = -req->msg.tag.label;
    for (unsigned k = 0; k < req->msg.tag.words; k++)
        reply->mr[k] = req->msg.mr[k] + 1;
    *ret_label = (uint64_t)req->seq * 4u;
    return req->msg.tag.words;
}

/* ---- layout and areas ------------------------------------------------------------------------ */

static void test_layout(void **state)
{
    (void)state;
    assert_int_equal(sizeof(rtcr_utcb_t), 640);
    assert_int_equal(sizeof(rtcr_utcb_t) % 64, 0);
    assert_int_equal(offsetof(rtcr_utcb_t, rep_seq), 64);
    assert_int_equal(offsetof(rtcr_utcb_t, msg), 128);
    assert_int_equal(offsetof(rtcr_utcb_t, msg.mr[62]) + 8, 640);
    assert_int_equal(sizeof(rtcr_utcb_area_hdr_t), 64);
}

/* the spin heuristic: spin only for a peer last seen on another (or an unknown) CPU */
static void test_peer_elsewhere(void **state)
{
    (void)state;
    assert_true(rtcr_utcb_peer_elsewhere(0, 3));  /* peer unknown */
    assert_true(rtcr_utcb_peer_elsewhere(4, -1)); /* own CPU unknown */
    assert_true(rtcr_utcb_peer_elsewhere(1, 1));  /* peer on CPU 0, we on 1 */
    assert_false(rtcr_utcb_peer_elsewhere(2, 1)); /* both on CPU 1 */
    assert_false(rtcr_utcb_peer_elsewhere(1, 0));
}

static void test_area(void **state)
{
    rtcr_utcb_area_t *a = NULL;
    void *base = NULL;
    size_t size = 0;
    (void)state;

    assert_int_equal(rtcr_utcb_area_new("t", 0, &a), -EINVAL);
    assert_int_equal(rtcr_utcb_area_new("t", RTCR_THREAD_MAX + 1, &a), -EINVAL);
    assert_null(a);

    assert_int_equal(rtcr_utcb_area_new("t", RTCR_THREAD_MAX, &a), 0);
    assert_non_null(a);
    assert_int_equal(rtcr_utcb_area_count(a), RTCR_THREAD_MAX);
    assert_true(rtcr_utcb_area_size(a) >= RTCR_UTCB_AREA_BYTES(RTCR_THREAD_MAX));
    assert_int_equal(rtcr_utcb_area_size(a) % (size_t)sysconf(_SC_PAGESIZE), 0);
    assert_int_equal(rtcr_utcb_area_check(rtcr_utcb_area_base(a), rtcr_utcb_area_size(a)),
                     RTCR_THREAD_MAX);
    assert_non_null(rtcr_utcb_area_utcb(a, RTCR_THREAD_MAX - 1));
    assert_null(rtcr_utcb_area_utcb(a, RTCR_THREAD_MAX));
    assert_ptr_equal(rtcr_utcb_area_utcb(a, 1), rtcr_utcb_area_at(rtcr_utcb_area_base(a), 1));
    assert_int_equal(((uintptr_t)rtcr_utcb_area_utcb(a, 3)) % 64, 0);
    assert_int_equal(rtcr_utcb_area_utcb(a, 5)->spin_nsec, RTCR_UTCB_SPIN_NSEC);
    assert_true(fcntl(rtcr_utcb_area_fd(a), F_GETFD) & FD_CLOEXEC);

    /* sealed: a target holding the fd cannot shrink (or grow) it under the agent */
    assert_int_equal(ftruncate(rtcr_utcb_area_fd(a), 4096), -1);
    assert_int_equal(errno, EPERM);

    /* the target's view through the fd */
    assert_int_equal(rtcr_utcb_area_attach(rtcr_utcb_area_fd(a), &base, &size), RTCR_THREAD_MAX);
    assert_int_equal(size, rtcr_utcb_area_size(a));
    rtcr_utcb_area_at(base, 2)->op = 42;
    assert_int_equal(rtcr_utcb_area_utcb(a, 2)->op, 42); /* same memory */
    /* a damaged header is refused */
    ((rtcr_utcb_area_hdr_t *)base)->utcb_count = RTCR_THREAD_MAX + 1;
    assert_int_equal(rtcr_utcb_area_check(base, size), -EINVAL);
    ((rtcr_utcb_area_hdr_t *)base)->utcb_count = RTCR_THREAD_MAX;
    ((rtcr_utcb_area_hdr_t *)base)->version = 99;
    assert_int_equal(rtcr_utcb_area_check(base, size), -EPROTO);
    assert_int_equal(rtcr_utcb_area_check(base, 32), -EINVAL);
    munmap(base, size);

    /* something that is not an area */
    {
        int fd = memfd_create("not-an-area", MFD_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, 100), 0);
        assert_int_equal(rtcr_utcb_area_attach(fd, &base, &size), -EINVAL);
        assert_int_equal(ftruncate(fd, 8192), 0);
        assert_int_equal(rtcr_utcb_area_attach(fd, &base, &size), -EPROTO);
        close(fd);
    }

    rtcr_utcb_area_destroy(&a);
    assert_null(a);
    rtcr_utcb_area_destroy(&a); /* idempotent */
    rtcr_utcb_area_destroy(NULL);
}

/* ---- round trips ----------------------------------------------------------------------------- */

struct rt_args {
    unsigned rounds;    /* CALLs to make */
    uint32_t spin_nsec; /* target spin budget */
};

/* child: ROUNDS calls with growing messages, checking every reply */
static int child_roundtrip(void *base, void *arg)
{
    const struct rt_args *ra = arg;
    rtcr_utcb_t *u = rtcr_utcb_area_at(base, 0);

    rtcr_utcb_set_target_spin(u, ra->spin_nsec);
    for (unsigned i = 0; i < ra->rounds; i++) {
        unsigned words = i % (RTCR_MSG_WORDS + 1);
        int r;
        u->op = RTCR_UTCB_OP_CALL;
        u->dest = 0x200 + i % 7;
        u->timeout_usec = 1000 + i;
        u->rcv_base = 0;
        u->rcv_count = 0;
        fill_request(&u->msg, i, words);
        r = rtcr_utcb_invoke(u);
        if (r != (int)words)
            return 10;
        if (u->req_seq != i + 1 || u->rep_seq != i + 1)
            return 11;
        if (u->label != (uint64_t)(i + 1) * 4u)
            return 12;
        if (u->msg.tag.label != -(int32_t)(i + 7) || u->msg.tag.words != words)
            return 13;
        for (unsigned k = 0; k < words; k++)
            if (u->msg.mr[k] != (uint64_t)i * 1000u + k + 1)
                return 14;
    }
    return 0;
}

static void roundtrip(void **state, uint32_t spin_nsec, unsigned flags)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    rtcr_utcb_mirror_stats_t st;
    struct rt_args ra = {.rounds = ROUNDS, .spin_nsec = spin_nsec};
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req;
    pid_t pid;

    assert_int_equal(rtcr_utcb_area_new("rt", 1, &a), 0);
    assert_int_equal(rtcr_utcb_mirror_new(rtcr_utcb_area_utcb(a, 0), &abort_word, flags, &m), 0);
    rtcr_utcb_mirror_set_spin(m, spin_nsec);
    assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_IDLE);
    pid = spawn(state, a, child_roundtrip, &ra);

    for (unsigned i = 0; i < ROUNDS; i++) {
        rtcr_msg_t reply;
        uint64_t label;
        int res;

        assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
        assert_int_equal(req.seq, i + 1);
        assert_int_equal(req.op, RTCR_UTCB_OP_CALL);
        assert_int_equal(req.dest, 0x200 + i % 7);
        assert_int_equal(req.timeout_usec, 1000 + i);
        assert_int_equal(req.msg.tag.label, (int32_t)(i + 7));
        assert_int_equal(req.msg.tag.words, i % (RTCR_MSG_WORDS + 1));
        for (unsigned k = 0; k < req.msg.tag.words; k++)
            assert_int_equal(req.msg.mr[k], (uint64_t)i * 1000u + k);
        for (unsigned k = req.msg.tag.words; k < RTCR_MSG_WORDS; k++)
            assert_int_equal(req.msg.mr[k], 0); /* unused registers are not copied */
        assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_CALL);
        res = handle(&req, &reply, &label);
        assert_int_equal(rtcr_utcb_complete(m, res, &reply, label), 0);
        assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_READY);
    }
    assert_int_equal(reap(state, pid), 0);
    assert_int_equal(rtcr_utcb_area_utcb(a, 0)->rep_seq, ROUNDS);
    rtcr_utcb_mirror_stats(m, &st);
    assert_int_equal(st.served, ROUNDS);
    assert_int_equal(st.rejected, 0);
    if (spin_nsec == 0)
        assert_true(st.sleeps > 0);
    rtcr_utcb_mirror_destroy(&m);
    assert_null(m);
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
}

static void test_roundtrip_spin(void **state)
{
    roundtrip(state, RTCR_UTCB_SPIN_NSEC, 0);
}

/* no spinning on either side: every hand-over goes through the futex sleep/wake paths */
static void test_roundtrip_sleep(void **state)
{
    roundtrip(state, 0, 0);
}

static void test_roundtrip_sleep_no_waitv(void **state)
{
    roundtrip(state, 0, RTCR_UTCB_MIRROR_NO_WAITV);
}

/* ---- every operation: which fields reach the snapshot ---------------------------------------- */

static int child_ops(void *base, void *arg)
{
    rtcr_utcb_t *u = rtcr_utcb_area_at(base, 0);
    static const uint32_t ops[] = {RTCR_UTCB_OP_REPLY_WAIT, RTCR_UTCB_OP_WAIT,
                                   RTCR_UTCB_OP_IRQ_RECEIVE, RTCR_UTCB_OP_IRQ_TRIGGER,
                                   RTCR_UTCB_OP_IRQ_UNMASK};
    (void)arg;
    for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        /* garbage in every field the operation does not use */
        u->op = ops[i];
        u->dest = 0x300 + i;
        u->rcv_base = 0x400;
        u->rcv_count = 3;
        u->timeout_usec = 77;
        fill_request(&u->msg, 5, 4);
        if (rtcr_utcb_invoke(u) != (int)(100 + i))
            return 20 + (int)i;
    }
    return 0;
}

static void test_ops(void **state)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req;
    rtcr_msg_t zero;
    pid_t pid;

    memset(&zero, 0, sizeof(zero));
    assert_int_equal(rtcr_utcb_area_new("ops", 1, &a), 0);
    assert_int_equal(rtcr_utcb_mirror_new(rtcr_utcb_area_utcb(a, 0), &abort_word, 0, &m), 0);
    pid = spawn(state, a, child_ops, NULL);

    /* REPLY_WAIT: window, timeout, message; no dest */
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(req.op, RTCR_UTCB_OP_REPLY_WAIT);
    assert_int_equal(req.dest, 0);
    assert_int_equal(req.rcv_base, 0x400);
    assert_int_equal(req.rcv_count, 3);
    assert_int_equal(req.timeout_usec, 77);
    assert_int_equal(req.msg.tag.words, 4);
    assert_int_equal(req.msg.mr[3], 5003);
    assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_WAIT);
    assert_int_equal(rtcr_utcb_complete(m, 100, NULL, 0), 0);

    /* WAIT: window and timeout; no message */
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(req.op, RTCR_UTCB_OP_WAIT);
    assert_int_equal(req.dest, 0);
    assert_int_equal(req.rcv_count, 3);
    assert_memory_equal(&req.msg, &zero, sizeof(zero));
    assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_WAIT);
    assert_int_equal(rtcr_utcb_complete(m, 101, NULL, 0), 0);

    /* IRQ_RECEIVE: dest and timeout */
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(req.op, RTCR_UTCB_OP_IRQ_RECEIVE);
    assert_int_equal(req.dest, 0x302);
    assert_int_equal(req.timeout_usec, 77);
    assert_int_equal(req.rcv_count, 0);
    assert_int_equal(req.rcv_base, 0);
    assert_memory_equal(&req.msg, &zero, sizeof(zero));
    assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_WAIT);
    assert_int_equal(rtcr_utcb_complete(m, 102, NULL, 0), 0);

    /* IRQ_TRIGGER, IRQ_UNMASK: dest only */
    for (unsigned i = 3; i < 5; i++) {
        assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
        assert_int_equal(req.op, i == 3 ? RTCR_UTCB_OP_IRQ_TRIGGER : RTCR_UTCB_OP_IRQ_UNMASK);
        assert_int_equal(req.dest, 0x300 + i);
        assert_int_equal(req.timeout_usec, 0);
        assert_int_equal(req.rcv_count, 0);
        assert_memory_equal(&req.msg, &zero, sizeof(zero));
        assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_CALL);
        assert_int_equal(rtcr_utcb_complete(m, (int32_t)(100 + i), NULL, 0), 0);
    }
    assert_int_equal(reap(state, pid), 0);
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
}

/* ---- garbage from a hostile target ----------------------------------------------------------- */

struct bad_case {
    uint32_t op;        /* operation */
    uint32_t dest;      /* destination slot */
    uint32_t rcv_base;  /* window base */
    uint32_t rcv_count; /* window size */
    uint8_t words;      /* tag words */
    uint8_t items;      /* tag items */
    int expect;         /* result the target must see */
};

static const struct bad_case bad_cases[] = {
    {RTCR_UTCB_OP_NONE, 0x200, 0, 0, 0, 0, -ENOSYS},
    {RTCR_UTCB_OP_MAX, 0x200, 0, 0, 0, 0, -ENOSYS},
    {0xdeadbeefu, 0x200, 0, 0, 0, 0, -ENOSYS},
    {RTCR_UTCB_OP_CALL, 0x200, 0, 0, 64, 0, -EMSGSIZE},
    {RTCR_UTCB_OP_CALL, 0x200, 0, 0, 255, 255, -EMSGSIZE},
    {RTCR_UTCB_OP_CALL, 0x200, 0, 0, 1, 32, -EMSGSIZE},
    {RTCR_UTCB_OP_REPLY_WAIT, 0, 0, 0, 0, 40, -EMSGSIZE},
    {RTCR_UTCB_OP_CALL, RTCR_CAP_SLOTS, 0, 0, 1, 0, -ERANGE},
    {RTCR_UTCB_OP_IRQ_RECEIVE, 0xffffffffu, 0, 0, 0, 0, -ERANGE},
    {RTCR_UTCB_OP_CALL, 0x200, 0x300, RTCR_RCV_SLOTS_MAX + 1, 1, 0, -ERANGE},
    {RTCR_UTCB_OP_WAIT, 0, RTCR_CAP_SLOTS - 2, 3, 0, 0, -ERANGE},
    {RTCR_UTCB_OP_WAIT, 0, 0xfffffff0u, 0x20, 0, 0, -ERANGE},
};
#define N_BAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

static int child_garbage(void *base, void *arg)
{
    rtcr_utcb_t *u = rtcr_utcb_area_at(base, 0);
    (void)arg;
    for (unsigned i = 0; i < N_BAD; i++) {
        const struct bad_case *c = &bad_cases[i];
        u->op = c->op;
        u->dest = c->dest;
        u->rcv_base = c->rcv_base;
        u->rcv_count = c->rcv_count;
        u->msg.tag.words = c->words;
        u->msg.tag.items = c->items;
        if (rtcr_utcb_invoke(u) != c->expect)
            return 30 + (int)i;
    }
    /* the edge cases that are still valid */
    u->op = RTCR_UTCB_OP_CALL;
    u->dest = RTCR_CAP_SLOTS - 1;
    u->rcv_base = RTCR_CAP_SLOTS - RTCR_RCV_SLOTS_MAX;
    u->rcv_count = RTCR_RCV_SLOTS_MAX;
    u->msg.tag.words = 1;
    u->msg.tag.items = 31;
    if (rtcr_utcb_invoke(u) != 1)
        return 29;
    return 0;
}

static void test_garbage(void **state)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    rtcr_utcb_mirror_stats_t st;
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req;
    pid_t pid;

    assert_int_equal(rtcr_utcb_area_new("bad", 1, &a), 0);
    assert_int_equal(rtcr_utcb_mirror_new(rtcr_utcb_area_utcb(a, 0), &abort_word, 0, &m), 0);
    pid = spawn(state, a, child_garbage, NULL);

    /* every bad request is answered inside serve_next; only the valid one comes out */
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(req.seq, N_BAD + 1);
    assert_int_equal(req.dest, RTCR_CAP_SLOTS - 1);
    assert_int_equal(req.rcv_count, RTCR_RCV_SLOTS_MAX);
    assert_int_equal(req.msg.tag.items, 31);
    assert_int_equal(rtcr_utcb_complete(m, 1, NULL, 0), 0);
    assert_int_equal(reap(state, pid), 0);
    rtcr_utcb_mirror_stats(m, &st);
    assert_int_equal(st.rejected, N_BAD);
    assert_int_equal(st.served, 1);
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
}

/* A target that scribbles random bytes over its UTCB while it invokes: whatever arrives at
 * the agent must be a valid snapshot, and the agent must keep serving. */
struct scribble {
    rtcr_utcb_t *u; /* the UTCB */
    uint32_t stop;  /* set to end the scribbler */
};

static void *scribbler(void *arg)
{
    struct scribble *s = arg;
    uint64_t rnd = 0x9e3779b97f4a7c15ull;
    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
        volatile rtcr_utcb_t *vu = s->u;
        uint64_t x = xorshift(&rnd);
        switch (x % 6) {
        case 0:
            vu->op = (uint32_t)(x >> 8) % 9;
            break;
        case 1:
            vu->dest = (uint32_t)(x >> 8) % 5000;
            break;
        case 2:
            vu->rcv_count = (uint32_t)(x >> 8) % 70;
            break;
        case 3:
            vu->rcv_base = (uint32_t)(x >> 8) % 5000;
            break;
        case 4:
            vu->msg.tag.words = (uint8_t)(x >> 8);
            break;
        default:
            vu->msg.tag.items = (uint8_t)((x >> 8) % 40);
            break;
        }
    }
    return NULL;
}

#define FUZZ_ROUNDS 2000

static int child_fuzz(void *base, void *arg)
{
    rtcr_utcb_t *u = rtcr_utcb_area_at(base, 0);
    struct scribble s = {.u = u, .stop = 0};
    uint64_t rnd = 12345;
    pthread_t t;
    (void)arg;

    rtcr_utcb_set_target_spin(u, 0);
    if (pthread_create(&t, NULL, scribbler, &s) != 0)
        return 40;
    for (unsigned i = 0; i < FUZZ_ROUNDS; i++) {
        /* random bytes in every request field and the message */
        uint64_t *w = (uint64_t *)&u->msg;
        u->op = (uint32_t)xorshift(&rnd) % 9;
        u->dest = (uint32_t)xorshift(&rnd) % 5000;
        u->rcv_base = (uint32_t)xorshift(&rnd);
        u->rcv_count = (uint32_t)xorshift(&rnd) % 80;
        u->timeout_usec = xorshift(&rnd);
        for (unsigned k = 0; k < sizeof(u->msg) / 8; k++)
            w[k] = xorshift(&rnd);
        if (rtcr_utcb_invoke(u) > 0)
            return 41; /* the parent answers valid requests with 0, invalid ones with -errno */
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    return 0;
}

static void test_fuzz(void **state)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    rtcr_utcb_mirror_stats_t st;
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req;
    pid_t pid;
    int r;

    assert_int_equal(rtcr_utcb_area_new("fuzz", 1, &a), 0);
    assert_int_equal(rtcr_utcb_mirror_new(rtcr_utcb_area_utcb(a, 0), &abort_word, 0, &m), 0);
    pid = spawn(state, a, child_fuzz, NULL);
    for (;;) {
        siginfo_t si = {0};
        r = rtcr_utcb_serve_next(m, 300000, &req);
        if (r == -ETIMEDOUT) {
            /* done when the child has exited (left unreaped for reap() below) */
            assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT), 0);
            if (si.si_pid == pid)
                break;
            continue;
        }
        assert_int_equal(r, 0);
        /* the snapshot is valid whatever the child did */
        assert_true(req.op > RTCR_UTCB_OP_NONE && req.op < RTCR_UTCB_OP_MAX);
        assert_true(req.dest < RTCR_CAP_SLOTS);
        assert_true(req.rcv_count <= RTCR_RCV_SLOTS_MAX);
        assert_true(req.rcv_base + req.rcv_count <= RTCR_CAP_SLOTS);
        assert_true(req.msg.tag.words + 2u * req.msg.tag.items <= RTCR_MSG_WORDS);
        assert_int_equal(rtcr_utcb_complete(m, 0, &req.msg, 0), 0);
    }
    assert_int_equal(reap(state, pid), 0);
    rtcr_utcb_mirror_stats(m, &st);
    assert_int_equal(st.served + st.rejected, FUZZ_ROUNDS);
    assert_true(st.served > 0);
    assert_true(st.rejected > 0);
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
}

/* ---- abort ----------------------------------------------------------------------------------- */

struct aborter {
    rtcr_utcb_mirror_t *m; /* mirror to wait for */
    uint32_t *word;        /* abort word */
    bool kick;             /* also kick the mirror */
};

static void *abort_when_ready(void *arg)
{
    struct aborter *ab = arg;
    /* READY: the mirror is inside serve_next; give it time to fall asleep */
    if (rtcr_utcb_mirror_wait_state(ab->m, RTCR_UTCB_MIRROR_MASK(RTCR_UTCB_MIRROR_READY),
                                    SERVE_TIMEOUT_USEC) < 0)
        return (void *)1;
    sleep_usec(30000);
    rtcr_utcb_abort(ab->word);
    if (ab->kick)
        rtcr_utcb_mirror_kick(ab->m);
    return NULL;
}

static void abort_blocked(unsigned flags, bool kick)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    rtcr_utcb_mirror_stats_t st;
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req;
    struct aborter ab;
    pthread_t t;
    void *tr;

    assert_int_equal(rtcr_utcb_area_new("abort", 1, &a), 0);
    assert_int_equal(rtcr_utcb_mirror_new(rtcr_utcb_area_utcb(a, 0), &abort_word, flags, &m), 0);
    ab = (struct aborter){.m = m, .word = &abort_word, .kick = kick};
    assert_int_equal(pthread_create(&t, NULL, abort_when_ready, &ab), 0);
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), -ECANCELED);
    assert_int_equal(pthread_join(t, &tr), 0);
    assert_null(tr);
    assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_IDLE);
    rtcr_utcb_mirror_stats(m, &st);
    assert_true(st.sleeps >= 1); /* it was asleep, not spinning, when aborted */
    assert_int_equal(st.served, 0);

    /* still aborted: returns at once */
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), -ECANCELED);
    rtcr_utcb_abort_clear(&abort_word);
    assert_int_equal(rtcr_utcb_serve_next(m, 1000, &req), -ETIMEDOUT);
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
}

static void test_abort_blocked(void **state)
{
    (void)state;
    abort_blocked(0, false);
}

static void test_abort_blocked_no_waitv(void **state)
{
    (void)state;
    abort_blocked(RTCR_UTCB_MIRROR_NO_WAITV, false); /* noticed by the periodic re-check */
    abort_blocked(RTCR_UTCB_MIRROR_NO_WAITV, true);
}

/* A request posted while aborted is not taken; after the clear it is. */
static int child_one_call(void *base, void *arg)
{
    rtcr_utcb_t *u = rtcr_utcb_area_at(base, 0);
    (void)arg;
    u->op = RTCR_UTCB_OP_CALL;
    u->dest = 0x200;
    fill_request(&u->msg, 1, 2);
    return rtcr_utcb_invoke(u) == 55 ? 0 : 50;
}

static void test_abort_then_serve(void **state)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req;
    rtcr_utcb_t *u;
    pid_t pid;

    assert_int_equal(rtcr_utcb_area_new("abort2", 1, &a), 0);
    u = rtcr_utcb_area_utcb(a, 0);
    assert_int_equal(rtcr_utcb_mirror_new(u, &abort_word, 0, &m), 0);
    rtcr_utcb_abort(&abort_word);
    pid = spawn(state, a, child_one_call, NULL);
    while (__atomic_load_n(&u->req_seq, __ATOMIC_ACQUIRE) == 0)
        sleep_usec(1000);
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), -ECANCELED);
    rtcr_utcb_abort_clear(&abort_word);
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(req.seq, 1);
    assert_int_equal(req.msg.mr[1], 1001);
    assert_int_equal(rtcr_utcb_complete(m, 55, NULL, 0), 0);
    assert_int_equal(reap(state, pid), 0);
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
}

/* ---- a target that dies ---------------------------------------------------------------------- */

static int child_call_forever(void *base, void *arg)
{
    rtcr_utcb_t *u = rtcr_utcb_area_at(base, 0);
    (void)arg;
    for (;;) {
        u->op = RTCR_UTCB_OP_CALL;
        u->dest = 0x200;
        u->msg.tag.words = 0;
        u->msg.tag.items = 0;
        rtcr_utcb_invoke(u);
    }
    return 0;
}

struct pid_watch {
    pid_t pid;      /* the target */
    int pidfd;      /* its pidfd, -1 where pidfd_open is missing (valgrind 3.19) */
    uint32_t *word; /* abort word to set when it exits */
};

/* the agent's reaction to a dead target: wait for its exit, then abort its mirrors */
static void *watch_pid(void *arg)
{
    struct pid_watch *w = arg;
    int ok;

    if (w->pidfd >= 0) {
        struct pollfd p = {.fd = w->pidfd, .events = POLLIN};
        ok = poll(&p, 1, (int)(SERVE_TIMEOUT_USEC / 1000)) == 1;
    } else {
        siginfo_t si;
        ok = waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOWAIT) == 0;
    }
    rtcr_utcb_abort(w->word); /* also on a failure, so that the test cannot hang */
    return ok ? NULL : (void *)1;
}

static void test_child_dies_mid_call(void **state)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req;
    struct pid_watch w;
    pthread_t t;
    void *tr;
    pid_t pid;
    int st;

    assert_int_equal(rtcr_utcb_area_new("dies", 1, &a), 0);
    assert_int_equal(rtcr_utcb_mirror_new(rtcr_utcb_area_utcb(a, 0), &abort_word, 0, &m), 0);
    pid = spawn(state, a, child_call_forever, NULL);

    /* serve some calls, then kill the target while its call is being handled */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
        assert_int_equal(rtcr_utcb_complete(m, 0, &req.msg, 0), 0);
    }
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    forget(state, pid);
    assert_true(WIFSIGNALED(st));
    /* answering a dead target is harmless */
    assert_int_equal(rtcr_utcb_complete(m, 0, &req.msg, 0), 0);
    /* with a timeout the mirror comes back on its own */
    assert_int_equal(rtcr_utcb_serve_next(m, 20000, &req), -ETIMEDOUT);

    /* without one, the agent's death watch aborts it */
    pid = spawn(state, a, child_call_forever, NULL); /* a new incarnation, same UTCB */
    w.pid = pid;
    w.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    w.word = &abort_word;
    assert_int_equal(pthread_create(&t, NULL, watch_pid, &w), 0);
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(rtcr_utcb_complete(m, 0, &req.msg, 0), 0);
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    {
        /* dead (but not reaped) before the answer, so it cannot post another request */
        siginfo_t si;
        assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    }
    assert_int_equal(rtcr_utcb_complete(m, 0, &req.msg, 0), 0);
    assert_int_equal(rtcr_utcb_serve_next(m, 0, &req), -ECANCELED);
    assert_int_equal(pthread_join(t, &tr), 0);
    assert_null(tr);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    forget(state, pid);
    if (w.pidfd >= 0)
        close(w.pidfd);
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
}

/* ---- release, state, misuse ------------------------------------------------------------------ */

static int child_wait_once(void *base, void *arg)
{
    rtcr_utcb_t *u = rtcr_utcb_area_at(base, 0);
    (void)arg;
    u->op = RTCR_UTCB_OP_WAIT;
    u->timeout_usec = 9;
    if (rtcr_utcb_invoke(u) != 0)
        return 60;
    if (u->label != 0x1234 || u->msg.tag.words != 1 || u->msg.mr[0] != 0xabc)
        return 61;
    return 0;
}

struct watcher {
    rtcr_utcb_mirror_t *m; /* mirror */
    int seen;              /* state seen */
};

static void *watch_wait_state(void *arg)
{
    struct watcher *w = arg;
    w->seen = rtcr_utcb_mirror_wait_state(w->m, RTCR_UTCB_MIRROR_MASK(RTCR_UTCB_MIRROR_WAIT),
                                          SERVE_TIMEOUT_USEC);
    return NULL;
}

static void test_release_and_state(void **state)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req, again;
    struct watcher w;
    rtcr_msg_t msg;
    pthread_t t;
    pid_t pid;

    assert_int_equal(rtcr_utcb_area_new("rel", 1, &a), 0);
    assert_int_equal(rtcr_utcb_mirror_new(rtcr_utcb_area_utcb(a, 0), &abort_word, 0, &m), 0);
    assert_int_equal(rtcr_utcb_complete(m, 0, NULL, 0), -EALREADY);
    assert_int_equal(rtcr_utcb_release(m), -EALREADY);
    assert_int_equal(rtcr_utcb_mirror_wait_state(m, 0, 1000), -EINVAL);
    assert_int_equal(
        rtcr_utcb_mirror_wait_state(m, RTCR_UTCB_MIRROR_MASK(RTCR_UTCB_MIRROR_WAIT), 1000),
        -ETIMEDOUT);

    w = (struct watcher){.m = m, .seen = -1};
    assert_int_equal(pthread_create(&t, NULL, watch_wait_state, &w), 0);
    pid = spawn(state, a, child_wait_once, NULL);
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &req), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.seen, RTCR_UTCB_MIRROR_WAIT); /* the watcher was woken by the change */
    assert_int_equal(req.op, RTCR_UTCB_OP_WAIT);
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &again), -EBUSY);

    /* a wait interrupted by quiesce is handed back and restarts, same sequence */
    assert_int_equal(rtcr_utcb_release(m), 0);
    assert_int_equal(rtcr_utcb_mirror_state(m), RTCR_UTCB_MIRROR_IDLE);
    assert_int_equal(rtcr_utcb_serve_next(m, SERVE_TIMEOUT_USEC, &again), 0);
    assert_int_equal(again.seq, req.seq);
    assert_int_equal(again.op, RTCR_UTCB_OP_WAIT);
    assert_int_equal(again.timeout_usec, 9);

    memset(&msg, 0, sizeof(msg));
    msg.tag.words = 1;
    msg.mr[0] = 0xabc;
    assert_int_equal(rtcr_utcb_complete(m, 0, &msg, 0x1234), 0);
    assert_int_equal(reap(state, pid), 0);
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
    assert_int_equal(rtcr_utcb_mirror_new(NULL, &abort_word, 0, &m), -EINVAL);
    assert_int_equal(rtcr_utcb_mirror_new((rtcr_utcb_t *)&msg, &abort_word, 0x80, &m), -EINVAL);
}

/* ---- many threads, many UTCBs ---------------------------------------------------------------- */

#define MT_THREADS 4
#define MT_ROUNDS  400

struct mt_target {
    void *base;     /* area */
    unsigned index; /* thread/UTCB index */
    int rc;         /* result */
};

static void *mt_target_thread(void *arg)
{
    struct mt_target *t = arg;
    rtcr_utcb_t *u = rtcr_utcb_area_at(t->base, t->index);
    /* odd threads never spin, so sleeping and spinning hand-overs mix */
    rtcr_utcb_set_target_spin(u, t->index & 1 ? 0 : RTCR_UTCB_SPIN_NSEC);
    for (unsigned i = 0; i < MT_ROUNDS; i++) {
        u->op = RTCR_UTCB_OP_CALL;
        u->dest = 0x200 + t->index;
        fill_request(&u->msg, i + t->index * 100000u, 3);
        if (rtcr_utcb_invoke(u) != 3 || u->msg.mr[2] != (i + t->index * 100000u) * 1000u + 3) {
            t->rc = 70;
            return NULL;
        }
    }
    return NULL;
}

static int child_mt(void *base, void *arg)
{
    struct mt_target t[MT_THREADS];
    pthread_t th[MT_THREADS];
    (void)arg;
    for (unsigned i = 0; i < MT_THREADS; i++) {
        t[i] = (struct mt_target){.base = base, .index = i, .rc = 0};
        if (pthread_create(&th[i], NULL, mt_target_thread, &t[i]) != 0)
            return 71;
    }
    for (unsigned i = 0; i < MT_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (t[i].rc)
            return t[i].rc;
    }
    return 0;
}

struct mt_mirror {
    rtcr_utcb_mirror_t *m; /* mirror */
    unsigned index;        /* UTCB index */
    int rc;                /* 0 ok */
};

static void *mt_mirror_thread(void *arg)
{
    struct mt_mirror *mm = arg;
    rtcr_utcb_req_t req;
    for (unsigned i = 0; i < MT_ROUNDS; i++) {
        rtcr_msg_t reply;
        uint64_t label;
        if (rtcr_utcb_serve_next(mm->m, SERVE_TIMEOUT_USEC, &req) != 0 ||
            req.dest != 0x200 + mm->index) {
            mm->rc = 1;
            return NULL;
        }
        int res = handle(&req, &reply, &label);
        rtcr_utcb_complete(mm->m, res, &reply, label);
    }
    return NULL;
}

static void test_many_threads(void **state)
{
    rtcr_utcb_area_t *a = NULL;
    struct mt_mirror mm[MT_THREADS];
    pthread_t th[MT_THREADS];
    uint32_t abort_word = 0;
    pid_t pid;

    assert_int_equal(rtcr_utcb_area_new("mt", MT_THREADS, &a), 0);
    for (unsigned i = 0; i < MT_THREADS; i++) {
        mm[i] = (struct mt_mirror){.index = i, .rc = 0};
        assert_int_equal(rtcr_utcb_mirror_new(rtcr_utcb_area_utcb(a, i), &abort_word, 0, &mm[i].m),
                         0);
        rtcr_utcb_mirror_set_spin(mm[i].m, i & 2 ? 0 : RTCR_UTCB_SPIN_NSEC);
    }
    pid = spawn(state, a, child_mt, NULL);
    for (unsigned i = 0; i < MT_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, mt_mirror_thread, &mm[i]), 0);
    for (unsigned i = 0; i < MT_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(reap(state, pid), 0);
    for (unsigned i = 0; i < MT_THREADS; i++) {
        assert_int_equal(mm[i].rc, 0);
        assert_int_equal(rtcr_utcb_area_utcb(a, i)->rep_seq, MT_ROUNDS);
        rtcr_utcb_mirror_destroy(&mm[i].m);
    }
    rtcr_utcb_area_destroy(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_peer_elsewhere, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_area, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_spin, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_sleep, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_sleep_no_waitv, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_ops, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_garbage, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_fuzz, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_abort_blocked, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_abort_blocked_no_waitv, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_abort_then_serve, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_child_dies_mid_call, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_release_and_state, kids_setup, kids_teardown),
        cmocka_unit_test_setup_teardown(test_many_threads, kids_setup, kids_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
