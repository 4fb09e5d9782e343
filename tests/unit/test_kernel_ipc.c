/* test_kernel_ipc.c — IPC through gates: labels, messages, capability transfer, blocking.
 *
 * Covers: label = badge | S/W bits of the capability used and its unforgeability, every error
 * of rtcr_ipc_call, message size limits, map items (S requirement, rights masking, grant,
 * rewriting of the delivered fpage word, window overflow delivering nothing, the window slot
 * being overwritten, revocation through the derivation), handler servers (called without the
 * kernel lock, errors passed back, reply capabilities), and blocking servers on real pthreads:
 * reply_and_wait, concurrent callers, timeouts, cancel (-EINTR, latched), deletion of either
 * side (-EPIPE), dropped replies, invalid replies, and the receive-window errors.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <rtcr/kernel.h>

#define LONG_USEC  5000000u /* a bound that only a bug reaches */
#define SHORT_USEC 20000u   /* for waits that are meant to time out */
#define CLIENT_CAP 0x200    /* the client's capability to the server gate */

struct fx {
    rtcr_kernel_t *k;  /* the kernel */
    rtcr_kobj_t *ct;   /* client task */
    rtcr_kobj_t *cth;  /* client thread (index 0) */
    rtcr_kobj_t *st;   /* server task */
    rtcr_kobj_t *sth;  /* server thread (index 0) */
    rtcr_kobj_t *gate; /* the server thread's gate (slot 9 of the server task) */
    rtcr_kobj_t *irq;  /* a plain IRQ to send around */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || !(f->k = rtcr_kernel_new()))
        return -1;
    rtcr_kernel_t *k = f->k;
    if (rtcr_task_create(k, "client", &f->ct) || rtcr_thread_create(k, f->ct, "c", &f->cth) ||
        rtcr_task_bind_thread(k, f->ct, f->cth, NULL) || rtcr_task_create(k, "server", &f->st) ||
        rtcr_thread_create(k, f->st, "ep", &f->sth) ||
        rtcr_task_bind_thread(k, f->st, f->sth, NULL) ||
        rtcr_task_lookup(k, f->st, RTCR_THREAD_SLOT(0, RTCR_THREAD_GATE_OFF), &f->gate, NULL) ||
        rtcr_task_install(k, f->ct, CLIENT_CAP, f->gate, RTCR_CAP_RWS) ||
        rtcr_thread_set_rcv_window(k, f->sth, 0x300, 4) ||
        rtcr_thread_set_rcv_window(k, f->cth, 0x300, 4) || rtcr_irq_create(k, &f->irq))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    rtcr_kobj_unref(&f->gate);
    rtcr_kobj_unref(&f->irq);
    rtcr_kobj_unref(&f->cth);
    rtcr_kobj_unref(&f->sth);
    rtcr_kobj_unref(&f->ct);
    rtcr_kobj_unref(&f->st);
    rtcr_kernel_destroy(&f->k);
    free(f);
    return 0;
}

static void msg_init(rtcr_msg_t *m, int32_t label, unsigned words)
{
    memset(m, 0, sizeof(*m));
    m->tag.label = label;
    m->tag.words = (uint8_t)words;
    for (unsigned i = 0; i < words && i < RTCR_MSG_WORDS; i++)
        m->mr[i] = 1000 + i;
}

static void msg_add_item(rtcr_msg_t *m, unsigned slot, unsigned rights, bool grant)
{
    unsigned at = m->tag.words + 2u * m->tag.items;
    if (at + 1 < RTCR_MSG_WORDS) { /* else only the count grows: an oversized message */
        m->mr[at] = RTCR_ITEM_MAP | (grant ? RTCR_MAP_GRANT : 0);
        m->mr[at + 1] = rtcr_obj_fpage(slot, rights);
    }
    m->tag.items++;
}

static uint64_t gate_badge(struct fx *f)
{
    return rtcr_kobj_badge(f->gate);
}

/* ---- handler servers -------------------------------------------------------------------- */

struct hctx {
    struct fx *f;          /* fixture */
    int calls;             /* times called */
    uint64_t label;        /* last label */
    rtcr_msg_t req;        /* last request */
    int ret;               /* what to return */
    unsigned reply_slot;   /* server slot to send back, 0 = none */
    unsigned reply_rights; /* rights for it */
    bool reply_grant;      /* grant it */
    unsigned reply_words;  /* words in the reply */
    int lookup_result;     /* result of a kernel call made from inside the handler */
};

static int handler(void *ctx, rtcr_kobj_t *thread, uint64_t label, const rtcr_msg_t *req,
                   rtcr_msg_t *reply)
{
    struct hctx *h = ctx;
    (void)thread;
    h->calls++;
    h->label = label;
    h->req = *req;
    /* the kernel lock is not held: calling back must not deadlock */
    h->lookup_result = rtcr_task_lookup(h->f->k, h->f->st, RTCR_TASK_CAP, NULL, NULL);
    reply->tag.label = 0;
    reply->tag.words = (uint8_t)h->reply_words;
    for (unsigned i = 0; i < h->reply_words; i++)
        reply->mr[i] = 7000 + i;
    if (h->reply_slot)
        msg_add_item(reply, h->reply_slot, h->reply_rights, h->reply_grant);
    return h->ret;
}

static void test_label_is_badge_plus_rights(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    struct hctx h = {.f = f, .reply_words = 2};
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, handler, &h), 0);
    /* copies of the gate capability with different rights */
    assert_int_equal(rtcr_task_map(k, f->ct, 0x201, f->ct, CLIENT_CAP, RTCR_CAP_R, false), 0);
    assert_int_equal(
        rtcr_task_map(k, f->ct, 0x202, f->ct, CLIENT_CAP, RTCR_CAP_R | RTCR_CAP_W, false), 0);
    assert_int_equal(
        rtcr_task_map(k, f->ct, 0x203, f->ct, CLIENT_CAP, RTCR_CAP_R | RTCR_CAP_S, false), 0);
    rtcr_msg_t m;
    /* the client writes a fake badge everywhere it can: label field and words */
    msg_init(&m, 0x7ffc, 3);
    m.mr[0] = 0x1234;
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), 0);
    assert_int_equal(h.label, gate_badge(f) | RTCR_CAP_S | RTCR_CAP_W);
    assert_int_equal(h.req.tag.label, 0x7ffc); /* the protocol label is the sender's */
    assert_int_equal(h.req.tag.words, 3);
    assert_int_equal(h.req.mr[0], 0x1234);
    assert_int_equal(h.req.mr[2], 1002);
    assert_int_equal(h.lookup_result, 0);
    /* the reply overwrote the message */
    assert_int_equal(m.tag.words, 2);
    assert_int_equal(m.mr[0], 7000);
    assert_int_equal(m.mr[1], 7001);
    assert_int_equal(m.mr[2], 0); /* unused registers are not leaked from the server */

    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x201, &m, 0), 0);
    assert_int_equal(h.label, gate_badge(f));
    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x202, &m, 0), 0);
    assert_int_equal(h.label, gate_badge(f) | RTCR_CAP_W);
    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x203, &m, 0), 0);
    assert_int_equal(h.label, gate_badge(f) | RTCR_CAP_S);
    assert_int_equal(h.calls, 4);

    /* a second gate to the same thread: a different badge, so the server tells them apart */
    rtcr_kobj_t *g2;
    assert_int_equal(rtcr_gate_create_rpc(k, f->sth, &g2), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x204, g2, RTCR_CAP_R), 0);
    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x204, &m, 0), 0);
    assert_int_equal(h.label, rtcr_kobj_badge(g2));
    assert_int_not_equal(h.label & ~3ull, gate_badge(f));
    /* a mapped copy in another task carries the same badge: only core creates labels */
    rtcr_kobj_t *t3, *th3;
    assert_int_equal(rtcr_task_create(k, "third", &t3), 0);
    assert_int_equal(rtcr_thread_create(k, t3, "x", &th3), 0);
    assert_int_equal(rtcr_task_map(k, t3, 0x200, f->ct, CLIENT_CAP, RTCR_CAP_R, false), 0);
    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, th3, 0x200, &m, 0), 0);
    assert_int_equal(h.label, gate_badge(f));
    rtcr_kobj_unref(&g2);
    rtcr_kobj_unref(&th3);
    rtcr_kobj_unref(&t3);
}

static void test_call_errors(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    struct hctx h = {.f = f};
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, handler, &h), 0);
    rtcr_msg_t m;
    msg_init(&m, 0, 1);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x2f0, &m, 0), -ENOENT);
    assert_int_equal(rtcr_ipc_call(k, f->cth, RTCR_CAP_SLOTS, &m, 0), -ERANGE);
    assert_int_equal(rtcr_ipc_call(k, f->cth, RTCR_TASK_CAP, &m, 0), -EPROTOTYPE);
    assert_int_equal(rtcr_ipc_call(k, f->cth, RTCR_THREAD_SLOT(0, 2), &m, 0), -EPROTOTYPE);
    assert_int_equal(rtcr_ipc_call(k, f->ct, CLIENT_CAP, &m, 0), -EPROTOTYPE); /* not a thread */
    assert_int_equal(rtcr_ipc_call(NULL, f->cth, CLIENT_CAP, &m, 0), -EINVAL);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, NULL, 0), -EINVAL);
    /* no R */
    assert_int_equal(
        rtcr_task_map(k, f->ct, 0x201, f->ct, CLIENT_CAP, RTCR_CAP_W | RTCR_CAP_S, false), 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x201, &m, 0), -EPERM);
    /* unbound gate */
    rtcr_kobj_t *ug;
    assert_int_equal(rtcr_gate_create(k, NULL, 0x40, &ug), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x202, ug, RTCR_CAP_RWS), 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x202, &m, 0), -ENOTCONN);
    /* the pager gate of the thread area has no server either */
    assert_int_equal(rtcr_ipc_call(k, f->cth, RTCR_THREAD_SLOT(0, 1), &m, 0), -ENOTCONN);
    rtcr_kobj_unref(&ug);
    /* message too large */
    msg_init(&m, 0, RTCR_MSG_WORDS + 1);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EMSGSIZE);
    msg_init(&m, 0, RTCR_MSG_WORDS - 1);
    msg_add_item(&m, 0x210, RTCR_CAP_RWS, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EMSGSIZE);
    /* a full message without items is fine */
    msg_init(&m, 0, RTCR_MSG_WORDS);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), 0);
    assert_int_equal(h.req.tag.words, RTCR_MSG_WORDS);
    assert_int_equal(h.req.mr[RTCR_MSG_WORDS - 1], 1000 + RTCR_MSG_WORDS - 1);
    /* the handler's error comes back, the message is unchanged */
    h.ret = -ENOSYS;
    msg_init(&m, 5, 1);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -ENOSYS);
    assert_int_equal(m.tag.label, 5);
    assert_int_equal(m.mr[0], 1000);
    h.ret = 0;
    /* a deleted gate, a deleted caller */
    int calls = h.calls;
    assert_int_equal(rtcr_kobj_delete(k, f->gate), 0);
    msg_init(&m, 0, 1);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EIDRM);
    assert_int_equal(rtcr_kobj_delete(k, f->cth), 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EIDRM);
    assert_int_equal(h.calls, calls);
}

static void test_item_errors(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    struct hctx h = {.f = f};
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, handler, &h), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x210, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x211, f->irq, RTCR_CAP_R | RTCR_CAP_W), 0);
    rtcr_msg_t m;
    /* no S on the sent capability */
    msg_init(&m, 0, 1);
    msg_add_item(&m, 0x211, RTCR_CAP_ALL, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EPERM);
    /* empty / out-of-range source slot */
    msg_init(&m, 0, 1);
    msg_add_item(&m, 0x212, RTCR_CAP_ALL, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -ENOENT);
    msg_init(&m, 0, 1);
    msg_add_item(&m, 0x210, RTCR_CAP_ALL, false);
    m.mr[2] = ((uint64_t)RTCR_CAP_SLOTS << RTCR_CAP_SHIFT) | 0x30 | 7;
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -ERANGE);
    /* malformed items */
    msg_init(&m, 0, 1);
    msg_add_item(&m, 0x210, RTCR_CAP_ALL, false);
    m.mr[1] = 0; /* not a map item */
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EBADMSG);
    m.mr[1] = RTCR_ITEM_MAP | 0x100; /* unknown control bits */
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EBADMSG);
    m.mr[1] = RTCR_ITEM_MAP;
    m.mr[2] = (0x210ull << RTCR_CAP_SHIFT) | 0x10 | 7; /* memory fpage, not object */
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EBADMSG);
    m.mr[2] = rtcr_obj_fpage(0x210, 7) | (1u << 6); /* two slots */
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EBADMSG);
    /* granting a capability and sending it again in the same message */
    msg_init(&m, 0, 0);
    msg_add_item(&m, 0x210, RTCR_CAP_ALL, true);
    msg_add_item(&m, 0x210, RTCR_CAP_ALL, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EBADMSG);
    /* a stale capability */
    rtcr_kobj_t *i2;
    assert_int_equal(rtcr_irq_create(k, &i2), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x213, i2, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_kobj_delete(k, i2), 0);
    rtcr_kobj_unref(&i2);
    msg_init(&m, 0, 0);
    msg_add_item(&m, 0x213, RTCR_CAP_ALL, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EIDRM);
    /* more items than the server's window (4): nothing is delivered */
    msg_init(&m, 0, 0);
    for (int i = 0; i < 5; i++)
        msg_add_item(&m, 0x210, RTCR_CAP_ALL, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EMSGSIZE);
    assert_int_equal(rtcr_task_used_slots(k, f->st), 4); /* task + thread area only */
    assert_int_equal(h.calls, 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->ct, 0x210), 1);
}

static void test_cap_transfer(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    struct hctx h = {.f = f};
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, handler, &h), 0);
    rtcr_kobj_t *i2;
    assert_int_equal(rtcr_irq_create(k, &i2), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x210, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x211, i2, RTCR_CAP_RWS), 0);
    rtcr_msg_t m;
    msg_init(&m, 0, 2);
    msg_add_item(&m, 0x210, RTCR_CAP_R | RTCR_CAP_W, false); /* copy, drop S and D */
    msg_add_item(&m, 0x211, RTCR_CAP_ALL, true);             /* grant */
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), 0);
    assert_int_equal(h.req.tag.items, 2);
    /* the delivered items name the server's receive slots */
    assert_int_equal(h.req.mr[2], RTCR_ITEM_MAP);
    assert_int_equal(h.req.mr[3], rtcr_obj_fpage(0x300, RTCR_CAP_R | RTCR_CAP_W));
    assert_int_equal(h.req.mr[4], RTCR_ITEM_MAP | RTCR_MAP_GRANT);
    assert_int_equal(h.req.mr[5], rtcr_obj_fpage(0x301, RTCR_CAP_RWS));
    rtcr_kobj_t *o;
    unsigned rights;
    assert_int_equal(rtcr_task_lookup(k, f->st, 0x300, &o, &rights), 0);
    assert_ptr_equal(o, f->irq);
    assert_int_equal(rights, RTCR_CAP_R | RTCR_CAP_W);
    rtcr_kobj_unref(&o);
    assert_int_equal(rtcr_task_lookup(k, f->st, 0x301, &o, &rights), 0);
    assert_ptr_equal(o, i2);
    assert_int_equal(rights, RTCR_CAP_RWS);
    rtcr_kobj_unref(&o);
    /* copy stays with the client, grant moved away */
    assert_int_equal(rtcr_task_cap_valid(k, f->ct, 0x210), 1);
    assert_int_equal(rtcr_task_cap_valid(k, f->ct, 0x211), 0);
    /* the server's copy lacks S: it cannot pass it on */
    assert_int_equal(rtcr_task_map(k, f->ct, 0x220, f->st, 0x300, RTCR_CAP_ALL, false), -EPERM);
    /* the copy is derived from the client's capability: revoking that revokes it */
    assert_int_equal(rtcr_task_unmap(k, f->ct, 0x210, false), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->st, 0x300), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->st, 0x301), 1);

    /* a capability in the reply: from the server's slot into the client's window */
    h.reply_slot = 0x301;
    h.reply_rights = RTCR_CAP_R | RTCR_CAP_S;
    h.reply_words = 1;
    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), 0);
    assert_int_equal(m.tag.items, 1);
    assert_int_equal(m.mr[0], 7000);
    assert_int_equal(m.mr[2], rtcr_obj_fpage(0x300, RTCR_CAP_R | RTCR_CAP_S));
    assert_int_equal(rtcr_task_lookup(k, f->ct, 0x300, &o, &rights), 0);
    assert_ptr_equal(o, i2);
    assert_int_equal(rights, RTCR_CAP_R | RTCR_CAP_S);
    rtcr_kobj_unref(&o);

    /* a reply the handler got wrong (no such slot) fails the call */
    h.reply_slot = 0x3ff;
    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -ENOENT);
    rtcr_kobj_unref(&i2);
}

static void test_window_overwrite_releases(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    struct hctx h = {.f = f};
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, handler, &h), 0);
    rtcr_kobj_t *i2;
    assert_int_equal(rtcr_irq_create(k, &i2), 0);
    /* the server's window slot 0x300 holds i2; the server handed a copy on to the client */
    assert_int_equal(rtcr_task_install(k, f->st, 0x300, i2, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_map(k, f->ct, 0x230, f->st, 0x300, RTCR_CAP_RWS, false), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x210, f->irq, RTCR_CAP_ALL), 0);
    rtcr_msg_t m;
    msg_init(&m, 0, 0);
    msg_add_item(&m, 0x210, RTCR_CAP_RWS, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), 0);
    rtcr_kobj_t *o;
    assert_int_equal(rtcr_task_lookup(k, f->st, 0x300, &o, NULL), 0);
    assert_ptr_equal(o, f->irq);
    rtcr_kobj_unref(&o);
    /* what the server had handed on survives the overwrite */
    assert_int_equal(rtcr_task_lookup(k, f->ct, 0x230, &o, NULL), 0);
    assert_ptr_equal(o, i2);
    rtcr_kobj_unref(&o);
    /* sending a capability that sits in the receiver's own window slot (same task) */
    assert_int_equal(rtcr_thread_set_rcv_window(k, f->cth, 0x210, 1), 0);
    assert_int_equal(rtcr_thread_set_handler(k, f->cth, handler, &h), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x240, f->gate, RTCR_CAP_RWS), 0);
    rtcr_kobj_t *own_gate;
    assert_int_equal(rtcr_gate_create_rpc(k, f->cth, &own_gate), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x241, own_gate, RTCR_CAP_RWS), 0);
    msg_init(&m, 0, 0);
    msg_add_item(&m, 0x210, RTCR_CAP_R | RTCR_CAP_S, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x241, &m, 0), 0); /* handler call to itself */
    unsigned rights;
    assert_int_equal(rtcr_task_lookup(k, f->ct, 0x210, &o, &rights), 0);
    assert_ptr_equal(o, f->irq);
    assert_int_equal(rights, RTCR_CAP_R | RTCR_CAP_S);
    rtcr_kobj_unref(&o);
    rtcr_kobj_unref(&own_gate);
    rtcr_kobj_unref(&i2);
}

static void test_rcv_window_and_handler_errors(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_thread_set_rcv_window(k, f->sth, 0x300, RTCR_RCV_SLOTS_MAX), 0);
    assert_int_equal(rtcr_thread_set_rcv_window(k, f->sth, 0x300, RTCR_RCV_SLOTS_MAX + 1), -EINVAL);
    assert_int_equal(rtcr_thread_set_rcv_window(k, f->sth, 4090, 8), -ERANGE);
    assert_int_equal(rtcr_thread_set_rcv_window(k, f->sth, 4096, 0), -ERANGE);
    assert_int_equal(rtcr_thread_set_rcv_window(k, f->sth, 0x100, 4), -EACCES);
    assert_int_equal(rtcr_thread_set_rcv_window(k, f->sth, 0x100, 0), 0);
    assert_int_equal(rtcr_thread_set_rcv_window(k, f->st, 0x300, 4), -EPROTOTYPE);
    assert_int_equal(rtcr_thread_set_rcv_window(NULL, f->sth, 0x300, 4), -EINVAL);
    assert_int_equal(rtcr_thread_set_handler(k, f->st, handler, NULL), -EPROTOTYPE);
    assert_int_equal(rtcr_thread_set_handler(NULL, f->sth, handler, NULL), -EINVAL);
    rtcr_msg_t m;
    uint64_t label;
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, handler, NULL), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, SHORT_USEC), -EINVAL);
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, NULL, NULL), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, NULL, &label, 1), -EINVAL);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, NULL, 1), -EINVAL);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->st, NULL, &m, &label, 1), -EPROTOTYPE);
    /* a window of 0 slots accepts no capability */
    struct hctx h = {.f = f};
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, handler, &h), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x210, f->irq, RTCR_CAP_ALL), 0);
    msg_init(&m, 0, 0);
    msg_add_item(&m, 0x210, RTCR_CAP_ALL, false);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, 0), -EMSGSIZE);
    assert_int_equal(h.calls, 0);
}

/* ---- blocking servers ------------------------------------------------------------------- */

struct server {
    struct fx *f;          /* fixture */
    rtcr_kobj_t *thread;   /* thread served */
    int rounds;            /* requests to serve; the last reply goes out with a 1 us wait */
    int served;            /* requests served */
    int last;              /* result of the last reply_and_wait */
    unsigned reply_slot;   /* a capability to return in each reply, 0 = none */
    uint64_t timeout_usec; /* per wait */
};

static void *server_main(void *arg)
{
    struct server *s = arg;
    rtcr_kernel_t *k = s->f->k;
    rtcr_msg_t req, reply;
    bool have_reply = false;
    for (;;) {
        uint64_t label = 0;
        bool done = s->served == s->rounds;
        s->last = rtcr_ipc_reply_and_wait(k, s->thread, have_reply ? &reply : NULL, &req, &label,
                                          done ? 1 : s->timeout_usec);
        if (s->last < 0 || done)
            return NULL;
        memset(&reply, 0, sizeof(reply));
        reply.tag.words = 2;
        reply.mr[0] = req.mr[0] + 1;
        reply.mr[1] = label;
        if (s->reply_slot) {
            reply.mr[2] = RTCR_ITEM_MAP;
            reply.mr[3] = rtcr_obj_fpage(s->reply_slot, RTCR_CAP_RWS);
            reply.tag.items = 1;
        }
        have_reply = true;
        s->served++;
    }
}

static void test_blocking_call(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_task_install(k, f->st, 0x280, f->irq, RTCR_CAP_ALL), 0);
    struct server s = {
        .f = f, .thread = f->sth, .rounds = 50, .reply_slot = 0x280, .timeout_usec = LONG_USEC};
    pthread_t pt;
    assert_int_equal(pthread_create(&pt, NULL, server_main, &s), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x210, f->irq, RTCR_CAP_ALL), 0);
    for (int i = 0; i < 50; i++) {
        rtcr_msg_t m;
        msg_init(&m, 0, 1);
        m.mr[0] = (uint64_t)i * 10;
        if (i == 0)
            msg_add_item(&m, 0x210, RTCR_CAP_RWS, false);
        assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, LONG_USEC), 0);
        assert_int_equal(m.mr[0], (uint64_t)i * 10 + 1);
        assert_int_equal(m.mr[1], gate_badge(f) | RTCR_CAP_S | RTCR_CAP_W);
        assert_int_equal(m.tag.items, 1);
        assert_int_equal(m.mr[3], rtcr_obj_fpage(0x300, RTCR_CAP_RWS));
    }
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(s.served, 50);
    assert_int_equal(s.last, -ETIMEDOUT);
    /* the request's capability reached the server's window; the reply's the client's */
    assert_int_equal(rtcr_task_cap_valid(k, f->st, 0x300), 1);
    assert_int_equal(rtcr_task_cap_valid(k, f->ct, 0x300), 1);
}

struct client {
    struct fx *f;        /* fixture */
    rtcr_kobj_t *thread; /* calling thread */
    unsigned slot;       /* gate capability */
    int rounds;          /* calls to make */
    uint64_t base;       /* first mr[0] */
    int ok;              /* calls answered correctly */
    int last;            /* last error */
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        rtcr_msg_t m;
        msg_init(&m, 0, 1);
        m.mr[0] = c->base + (uint64_t)i;
        int r = rtcr_ipc_call(c->f->k, c->thread, c->slot, &m, LONG_USEC);
        c->last = r;
        if (r == 0 && m.mr[0] == c->base + (uint64_t)i + 1)
            c->ok++;
    }
    return NULL;
}

static void test_concurrent_callers(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    enum { NCLIENTS = 4, ROUNDS = 200 };
    struct server s = {
        .f = f, .thread = f->sth, .rounds = NCLIENTS * ROUNDS, .timeout_usec = LONG_USEC};
    struct client c[NCLIENTS];
    rtcr_kobj_t *th[NCLIENTS];
    pthread_t pt[NCLIENTS], ps;
    assert_int_equal(pthread_create(&ps, NULL, server_main, &s), 0);
    for (int i = 0; i < NCLIENTS; i++) {
        assert_int_equal(rtcr_thread_create(k, f->ct, "worker", &th[i]), 0);
        c[i] = (struct client){.f = f,
                               .thread = th[i],
                               .slot = CLIENT_CAP,
                               .rounds = ROUNDS,
                               .base = (uint64_t)i << 32};
        assert_int_equal(pthread_create(&pt[i], NULL, client_main, &c[i]), 0);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        assert_int_equal(pthread_join(pt[i], NULL), 0);
        assert_int_equal(c[i].ok, ROUNDS);
        rtcr_kobj_unref(&th[i]);
    }
    assert_int_equal(pthread_join(ps, NULL), 0);
    assert_int_equal(s.served, NCLIENTS * ROUNDS);
}

static void test_timeouts(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_msg_t m, out;
    uint64_t label = 0xabc;
    /* nobody serves: the call times out and leaves nothing queued */
    msg_init(&m, 0, 1);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, SHORT_USEC), -ETIMEDOUT);
    assert_int_equal(m.mr[0], 1000);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &out, &label, SHORT_USEC),
                     -ETIMEDOUT);
    assert_int_equal(label, 0xabc); /* untouched on failure */
}

struct waiter {
    struct fx *f;        /* fixture */
    rtcr_kobj_t *thread; /* thread waiting */
    int result;          /* what the wait returned */
};

static void *wait_main(void *arg)
{
    struct waiter *w = arg;
    rtcr_msg_t m;
    uint64_t label;
    w->result = rtcr_ipc_reply_and_wait(w->f->k, w->thread, NULL, &m, &label, LONG_USEC);
    return NULL;
}

static void *call_main(void *arg)
{
    struct waiter *w = arg;
    rtcr_msg_t m;
    msg_init(&m, 0, 1);
    w->result = rtcr_ipc_call(w->f->k, w->thread, CLIENT_CAP, &m, LONG_USEC);
    return NULL;
}

/* Wait until `server` waits in reply_and_wait or has a call queued: both make
 * rtcr_thread_set_handler fail with -EBUSY (setting NULL on a blocking thread changes nothing). */
static void wait_server_busy(rtcr_kernel_t *k, rtcr_kobj_t *server)
{
    for (int i = 0; i < 5000; i++) {
        if (rtcr_thread_set_handler(k, server, NULL, NULL) == -EBUSY)
            return;
        usleep(1000);
    }
    fail_msg("server never became busy");
}

static void test_cancel(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_msg_t m;
    uint64_t label;
    /* a latched cancel ends the next wait at once */
    assert_int_equal(rtcr_thread_cancel_wait(k, f->sth), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, LONG_USEC), -EINTR);
    /* ... only once */
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, 1000), -ETIMEDOUT);
    /* cancel a blocked server */
    struct waiter w = {.f = f, .thread = f->sth};
    pthread_t pt;
    assert_int_equal(pthread_create(&pt, NULL, wait_main, &w), 0);
    wait_server_busy(k, f->sth);
    assert_int_equal(rtcr_thread_cancel_wait(k, f->sth), 1);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(w.result, -EINTR);
    /* a blocked caller: once its call is queued it blocks until answered */
    struct waiter c = {.f = f, .thread = f->cth};
    assert_int_equal(pthread_create(&pt, NULL, call_main, &c), 0);
    wait_server_busy(k, f->sth);
    assert_int_equal(rtcr_thread_cancel_wait(k, f->cth), 1);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(c.result, -EINTR);
    /* the cancelled call left the server's queue */
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, 1000), -ETIMEDOUT);
    /* a latched cancel ends the next call before it is sent */
    assert_int_equal(rtcr_thread_cancel_wait(k, f->cth), 0);
    msg_init(&m, 0, 1);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, LONG_USEC), -EINTR);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, 1000), -ETIMEDOUT);
    assert_int_equal(rtcr_thread_cancel_wait(k, f->st), -EPROTOTYPE);
    assert_int_equal(rtcr_thread_cancel_wait(NULL, f->sth), -EINVAL);
}

static void test_busy_and_deadlock(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    struct waiter w = {.f = f, .thread = f->sth};
    pthread_t pt;
    assert_int_equal(pthread_create(&pt, NULL, wait_main, &w), 0);
    rtcr_msg_t m;
    uint64_t label;
    wait_server_busy(k, f->sth);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, 1), -EBUSY);
    assert_int_equal(rtcr_thread_set_handler(k, f->sth, handler, NULL), -EBUSY);
    assert_int_equal(rtcr_thread_cancel_wait(k, f->sth), 1);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(w.result, -EINTR);
    /* a blocking thread calling its own gate */
    rtcr_kobj_t *own;
    assert_int_equal(rtcr_gate_create_rpc(k, f->cth, &own), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x220, own, RTCR_CAP_RWS), 0);
    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, 0x220, &m, LONG_USEC), -EDEADLK);
    rtcr_kobj_unref(&own);
}

static void test_delete_partner(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    /* the server thread is deleted while a client waits for its reply */
    struct waiter c = {.f = f, .thread = f->cth};
    pthread_t pt;
    assert_int_equal(pthread_create(&pt, NULL, call_main, &c), 0);
    rtcr_msg_t m;
    uint64_t label;
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, LONG_USEC), 0);
    assert_int_equal(label, gate_badge(f) | RTCR_CAP_S | RTCR_CAP_W);
    assert_int_equal(rtcr_kobj_delete(k, f->sth), 0); /* while the caller waits for a reply */
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(c.result, -EPIPE);
    assert_true(rtcr_kobj_is_deleted(f->gate)); /* the thread's gate went with it */
    msg_init(&m, 0, 0);
    assert_int_equal(rtcr_ipc_call(k, f->cth, CLIENT_CAP, &m, LONG_USEC), -EIDRM);
}

static void test_delete_waiting_server(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    struct waiter w = {.f = f, .thread = f->sth};
    pthread_t pt;
    assert_int_equal(pthread_create(&pt, NULL, wait_main, &w), 0);
    rtcr_msg_t m;
    uint64_t label;
    wait_server_busy(k, f->sth);
    assert_int_equal(rtcr_kobj_delete(k, f->st), 0); /* the task, and with it the thread */
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(w.result, -EPIPE);
    assert_true(rtcr_kobj_is_deleted(f->sth));
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, 1), -EIDRM);
}

static void test_reply_cases(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_msg_t m, reply;
    uint64_t label;
    pthread_t pt;
    struct waiter c = {.f = f, .thread = f->cth};

    /* NULL reply while a caller waits: the caller gets -EPIPE */
    assert_int_equal(pthread_create(&pt, NULL, call_main, &c), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, LONG_USEC), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, 1000), -ETIMEDOUT);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(c.result, -EPIPE);

    /* an invalid reply is refused and the caller still waits; a valid one then arrives */
    assert_int_equal(pthread_create(&pt, NULL, call_main, &c), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, LONG_USEC), 0);
    msg_init(&reply, 0, 1);
    msg_add_item(&reply, 0x2aa, RTCR_CAP_RWS, false); /* empty slot */
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, &reply, &m, &label, 1000), -ENOENT);
    msg_init(&reply, 0, RTCR_MSG_WORDS + 1);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, &reply, &m, &label, 1000), -EMSGSIZE);
    msg_init(&reply, 0, 1);
    reply.mr[0] = 99;
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, &reply, &m, &label, 1000), -ETIMEDOUT);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(c.result, 0);

    /* the caller gives up (deleted) while the server works: the reply is dropped */
    rtcr_kobj_t *tmp;
    assert_int_equal(rtcr_thread_create(k, f->ct, "tmp", &tmp), 0);
    struct waiter c2 = {.f = f, .thread = tmp};
    assert_int_equal(pthread_create(&pt, NULL, call_main, &c2), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, LONG_USEC), 0);
    assert_int_equal(rtcr_kobj_delete(k, tmp), 0);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(c2.result, -EPIPE);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, &reply, &m, &label, 1000), -ETIMEDOUT);
    rtcr_kobj_unref(&tmp);

    /* a reply without any caller is dropped too */
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, &reply, &m, &label, 1000), -ETIMEDOUT);
}

static void test_gate_deleted_while_queued(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_kobj_t *g2;
    assert_int_equal(rtcr_gate_create_rpc(k, f->sth, &g2), 0);
    assert_int_equal(rtcr_task_install(k, f->ct, 0x220, g2, RTCR_CAP_RWS), 0);
    /* call through g2 from a pthread; once queued, delete the gate */
    struct client cl = {.f = f, .thread = f->cth, .slot = 0x220, .rounds = 1};
    pthread_t pt;
    assert_int_equal(pthread_create(&pt, NULL, client_main, &cl), 0);
    wait_server_busy(k, f->sth);
    assert_int_equal(rtcr_kobj_delete(k, g2), 0);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(cl.last, -EPIPE);
    assert_int_equal(cl.ok, 0);
    /* nothing is left queued for the server */
    rtcr_msg_t m;
    uint64_t label;
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->sth, NULL, &m, &label, 1000), -ETIMEDOUT);
    rtcr_kobj_unref(&g2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_label_is_badge_plus_rights),
        T(test_call_errors),
        T(test_item_errors),
        T(test_cap_transfer),
        T(test_window_overwrite_releases),
        T(test_rcv_window_and_handler_errors),
        T(test_blocking_call),
        T(test_concurrent_callers),
        T(test_timeouts),
        T(test_cancel),
        T(test_busy_and_deadlock),
        T(test_delete_partner),
        T(test_delete_waiting_server),
        T(test_reply_cases),
        T(test_gate_deleted_while_queued),
    };
#undef T
    return cmocka_run_group_tests_name("kernel_ipc", tests, NULL, NULL);
}
