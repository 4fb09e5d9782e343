/* hostile — a misbehaving target for the integration tests. It attacks its own parent and
 * kernel interface, logs what each attack got back ("<attack> -> <result>"), then
 * stays alive logging "alive n=<k>" so a test can see that it is still served
 * normally. Every attack must be refused with an error; none may harm the agent or the other
 * targets on the ECU.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <rtcr/component.h>
#include <rtcr/kernel.h>
#include <rtcr/rpc.h>
#include <rtcr/utcb.h>

struct hostile {
    rtcr_env_t *env;  /* environment */
    rtcr_cap_t timer; /* Timer session */
    uint64_t alive;   /* heartbeat count */
};

static int raw(rtcr_env_t *env, rtcr_cap_t cap, rtcr_msg_t *m)
{
    int r = rtcr_raw_call(env, cap, m);
    if (r < 0)
        return r;
    return m->tag.words ? (int)(int64_t)m->mr[0] : -EBADMSG;
}

static void report(rtcr_env_t *env, const char *what, int r)
{
    rtcr_log(env, "%s -> %d", what, r);
}

/* Scribble the UTCB directly, bypassing every library check. */
static int utcb_garbage(uint32_t op, unsigned dest, unsigned words, unsigned items)
{
    extern rtcr_utcb_t *comp_utcb(void);
    rtcr_utcb_t *u = comp_utcb();
    u->op = op;
    u->dest = dest;
    u->rcv_count = 0;
    u->timeout_usec = 0;
    u->msg.tag.label = 0;
    u->msg.tag.words = (uint8_t)words;
    u->msg.tag.items = (uint8_t)items;
    for (unsigned i = 0; i < RTCR_MSG_WORDS; i++)
        u->msg.mr[i] = 0xdeadbeefcafef00dull * (i + 1);
    int r = rtcr_utcb_invoke(u);
    if (r < 0)
        return r;
    return u->msg.tag.words ? (int)(int64_t)u->msg.mr[0] : -EBADMSG;
}

static void on_alive(void *ctx, unsigned count)
{
    struct hostile *h = ctx;
    h->alive += count;
    rtcr_log(h->env, "alive n=%llu", (unsigned long long)h->alive);
}

void rtcr_component_construct(rtcr_env_t *env)
{
    struct hostile *h = rtcr_heap_alloc(env, sizeof(*h));
    rtcr_msg_t m;
    rtcr_cap_t cap;
    int r;
    h->env = env;

    rtcr_msg_init(&m, RTCR_RPC_LOG_WRITE);
    report(env, "call empty slot 0x300", raw(env, 0x300, &m));
    rtcr_msg_init(&m, RTCR_RPC_LOG_WRITE);
    report(env, "call the task capability", raw(env, RTCR_TASK_CAP, &m));
    report(env, "utcb slot out of range", utcb_garbage(RTCR_UTCB_OP_CALL, 5000, 1, 0));
    report(env, "utcb unknown operation", utcb_garbage(99, RTCR_PARENT_CAP, 1, 0));
    report(env, "utcb 200 words", utcb_garbage(RTCR_UTCB_OP_CALL, RTCR_PARENT_CAP, 200, 0));
    report(env, "utcb 40 items", utcb_garbage(RTCR_UTCB_OP_CALL, RTCR_PARENT_CAP, 1, 40));
    report(env, "utcb garbage to parent", utcb_garbage(RTCR_UTCB_OP_CALL, RTCR_PARENT_CAP, 9, 0));

    /* a map item sent to core: core takes capability arguments only as slot numbers */
    rtcr_msg_init(&m, RTCR_RPC_PARENT_CLOSE);
    rtcr_msg_put(&m, RTCR_PARENT_CAP);
    rtcr_msg_put_cap(&m, RTCR_PARENT_CAP, RTCR_CAP_RWS, 0);
    report(env, "map item to core", raw(env, RTCR_PARENT_CAP, &m));

    /* forged capability arguments: wrong kind, empty slot, out of range */
    rtcr_msg_init(&m, RTCR_RPC_RAM_FREE);
    rtcr_msg_put(&m, RTCR_PARENT_CAP);
    report(env, "free the parent as a dataspace", raw(env, 0x201, &m));
    rtcr_msg_init(&m, RTCR_RPC_RM_ATTACH);
    rtcr_msg_put(&m, 0x7ff);
    rtcr_msg_put(&m, 4096);
    rtcr_msg_put(&m, 0);
    rtcr_msg_put(&m, 0);
    rtcr_msg_put(&m, RTCR_RM_WRITABLE);
    report(env, "attach an empty slot", raw(env, 0x202, &m));
    rtcr_msg_init(&m, RTCR_RPC_PD_SUBMIT);
    rtcr_msg_put(&m, 1ull << 40);
    rtcr_msg_put(&m, 1);
    report(env, "slot number 2^40 as argument", raw(env, 0x200, &m));

    /* malformed strings */
    rtcr_msg_init(&m, RTCR_RPC_PARENT_SESSION);
    rtcr_msg_put(&m, RTCR_SVC_LOG);
    rtcr_msg_put(&m, 1000000000ull);
    report(env, "string length 10^9", raw(env, RTCR_PARENT_CAP, &m));
    rtcr_msg_init(&m, RTCR_RPC_PARENT_SESSION);
    rtcr_msg_put(&m, 77);
    rtcr_msg_put_str(&m, "ram_quota=4K");
    report(env, "session of service 77", raw(env, RTCR_PARENT_CAP, &m));
    rtcr_msg_init(&m, 0xabcdef);
    report(env, "unknown opcode to parent", raw(env, RTCR_PARENT_CAP, &m));

    /* quotas: a session without enough quota; RAM until refused; capabilities until refused */
    report(env, "session with ram_quota=1",
           rtcr_session_open(env, RTCR_SVC_LOG, "ram_quota=1", &cap));
    enum { MAX_SESS = 4096 };
    rtcr_cap_t *sess = rtcr_heap_alloc(env, MAX_SESS * sizeof(*sess));
    unsigned n = 0;
    while (n < MAX_SESS &&
           (r = rtcr_session_open(env, RTCR_SVC_LOG, "ram_quota=4K", &sess[n])) == 0)
        n++;
    rtcr_log(env, "cap limit: %u sessions then %d", n, r);
    while (n > 0) { /* close them again: their slots must become free */
        rtcr_msg_init(&m, RTCR_RPC_PARENT_CLOSE);
        rtcr_msg_put(&m, sess[--n]);
        if ((r = raw(env, RTCR_PARENT_CAP, &m)) < 0)
            rtcr_log(env, "close of slot %#x failed: %d", sess[n], r);
    }
    enum { MAX_DS = 256 };
    rtcr_cap_t *dss = rtcr_heap_alloc(env, MAX_DS * sizeof(*dss));
    void **addrs = rtcr_heap_alloc(env, MAX_DS * sizeof(*addrs));
    n = 0;
    while (n < MAX_DS && (r = rtcr_ram_alloc_attach(env, 1u << 20, &dss[n], &addrs[n])) == 0)
        n++;
    rtcr_log(env, "ram quota: %u MiB then %d", n, r);
    while (n > 0) {
        n--;
        rtcr_ram_free(env, dss[n], addrs[n]);
    }

    /* still served normally afterwards */
    rtcr_cap_t sig;
    if (rtcr_signal_handler(rtcr_env_ep(env), on_alive, h, &sig) < 0)
        rtcr_log(env, "no signal handler (cap limit)");
    if (rtcr_timer_open(env, &h->timer) == 0 && rtcr_timer_sigh(env, h->timer, sig) == 0)
        rtcr_timer_periodic(env, h->timer, 100000);
    rtcr_log(env, "done");
}
