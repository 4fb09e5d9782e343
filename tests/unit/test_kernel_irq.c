/* test_kernel_irq.c — IRQ objects: attach/detach, latching, coalescing, masking, delivery to
 * waiting threads (rtcr_irq_receive and rtcr_ipc_reply_and_wait), handler threads, chaining,
 * state save/restore, and wake-ups across real pthreads (a lock-style ping-pong through two
 * thread-area IRQs must never lose a wake-up).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <rtcr/kernel.h>

#define LONG_USEC  5000000u /* a bound only a bug reaches */
#define SHORT_USEC 10000u   /* for waits meant to time out */

struct fx {
    rtcr_kernel_t *k; /* the kernel */
    rtcr_kobj_t *t;   /* task */
    rtcr_kobj_t *th;  /* thread, bound at index 0 */
    rtcr_kobj_t *th2; /* second thread, bound at index 1 */
    rtcr_kobj_t *irq; /* a free IRQ */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || !(f->k = rtcr_kernel_new()))
        return -1;
    if (rtcr_task_create(f->k, "t", &f->t) || rtcr_thread_create(f->k, f->t, "a", &f->th) ||
        rtcr_thread_create(f->k, f->t, "b", &f->th2) ||
        rtcr_task_bind_thread(f->k, f->t, f->th, NULL) ||
        rtcr_task_bind_thread(f->k, f->t, f->th2, NULL) || rtcr_irq_create(f->k, &f->irq))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    rtcr_kobj_unref(&f->irq);
    rtcr_kobj_unref(&f->th);
    rtcr_kobj_unref(&f->th2);
    rtcr_kobj_unref(&f->t);
    rtcr_kernel_destroy(&f->k);
    free(f);
    return 0;
}

static rtcr_irq_state_t state_of(rtcr_kernel_t *k, rtcr_kobj_t *irq)
{
    rtcr_irq_state_t s;
    memset(&s, 0xff, sizeof(s));
    assert_int_equal(rtcr_irq_state(k, irq, &s), 0);
    return s;
}

static void test_attach_detach(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_irq_state_t s = state_of(k, f->irq);
    assert_false(s.attached);
    assert_int_equal(s.thread_id, 0);
    assert_false(s.pending);
    assert_false(s.masked);
    assert_int_equal(s.triggers, 0);
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0x55, f->th), 0);
    s = state_of(k, f->irq);
    assert_true(s.attached);
    assert_int_equal(s.label, 0x55);
    assert_int_equal(s.thread_id, rtcr_kobj_id(f->th));
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0x56, f->th2), -EBUSY);
    assert_int_equal(rtcr_irq_detach(k, f->irq), 0);
    assert_int_equal(rtcr_irq_detach(k, f->irq), -ENOTCONN);
    assert_false(state_of(k, f->irq).attached);
    /* errors */
    rtcr_kobj_t *g;
    assert_int_equal(rtcr_gate_create(k, NULL, 4, &g), 0);
    assert_int_equal(rtcr_irq_attach(k, g, 0, f->th), -EPROTOTYPE);
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, g), -EPROTOTYPE);
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, NULL), -EINVAL);
    assert_int_equal(rtcr_irq_attach(NULL, f->irq, 0, f->th), -EINVAL);
    assert_int_equal(rtcr_irq_detach(k, g), -EPROTOTYPE);
    assert_int_equal(rtcr_irq_trigger(k, g), -EPROTOTYPE);
    assert_int_equal(rtcr_irq_unmask(k, g), -EPROTOTYPE);
    rtcr_irq_state_t st;
    assert_int_equal(rtcr_irq_state(k, g, &st), -EPROTOTYPE);
    assert_int_equal(rtcr_irq_state(k, f->irq, NULL), -EINVAL);
    assert_int_equal(rtcr_irq_set_state(k, g, true, false), -EPROTOTYPE);
    rtcr_kobj_unref(&g);
    rtcr_kobj_t *dead;
    assert_int_equal(rtcr_irq_create(k, &dead), 0);
    assert_int_equal(rtcr_kobj_delete(k, dead), 0);
    assert_int_equal(rtcr_irq_attach(k, dead, 0, f->th), -EIDRM);
    assert_int_equal(rtcr_irq_trigger(k, dead), -EIDRM);
    assert_int_equal(rtcr_irq_unmask(k, dead), -EIDRM);
    assert_int_equal(rtcr_irq_receive(k, dead, f->th, 1), -EIDRM);
    assert_int_equal(rtcr_irq_state(k, dead, &st), -EIDRM);
    rtcr_kobj_unref(&dead);
    /* attaching to a deleted thread */
    rtcr_kobj_t *t3;
    assert_int_equal(rtcr_thread_create(k, f->t, "c", &t3), 0);
    assert_int_equal(rtcr_kobj_delete(k, t3), 0);
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, t3), -EIDRM);
    rtcr_kobj_unref(&t3);
}

static void test_latch_and_coalesce(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    /* a trigger without a thread latches */
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_true(state_of(k, f->irq).pending);
    assert_int_equal(rtcr_irq_attach(k, f->irq, 8, f->th), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    rtcr_irq_state_t s = state_of(k, f->irq);
    assert_true(s.pending);
    assert_int_equal(s.triggers, 3);
    /* three triggers, one delivery */
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th, LONG_USEC), 0);
    s = state_of(k, f->irq);
    assert_false(s.pending);
    assert_true(s.masked);
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th, SHORT_USEC), -ETIMEDOUT);
    /* receive unmasks: a trigger now is delivered at the next receive */
    assert_false(state_of(k, f->irq).masked);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th, LONG_USEC), 0);
}

static void test_mask_and_open_wait(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_msg_t m;
    uint64_t label = 0;
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0x1230, f->th), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    memset(&m, 0xee, sizeof(m));
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->th, NULL, &m, &label, LONG_USEC), 0);
    assert_int_equal(m.tag.label, RTCR_PROTO_IRQ);
    assert_int_equal(m.tag.words, 0);
    assert_int_equal(m.tag.items, 0);
    assert_int_equal(m.mr[0], 0);
    assert_int_equal(label, 0x1230);
    /* masked after delivery: a new trigger latches and is not delivered */
    assert_true(state_of(k, f->irq).masked);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->th, NULL, &m, &label, SHORT_USEC), -ETIMEDOUT);
    assert_true(state_of(k, f->irq).pending);
    /* unmask: delivered at the next wait */
    assert_int_equal(rtcr_irq_unmask(k, f->irq), 0);
    label = 0;
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->th, NULL, &m, &label, LONG_USEC), 0);
    assert_int_equal(label, 0x1230);
    /* the other thread's wait does not see it */
    assert_int_equal(rtcr_irq_unmask(k, f->irq), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->th2, NULL, &m, &label, SHORT_USEC), -ETIMEDOUT);
    assert_true(state_of(k, f->irq).pending);
}

static void test_receive_errors(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th, 1), -ENOTCONN);
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, f->th), 0);
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th2, 1), -EPERM);
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->t, 1), -EPROTOTYPE);
    assert_int_equal(rtcr_irq_receive(NULL, f->irq, f->th, 1), -EINVAL);
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th, SHORT_USEC), -ETIMEDOUT);
    /* latched cancel */
    assert_int_equal(rtcr_thread_cancel_wait(k, f->th), 0);
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th, LONG_USEC), -EINTR);
}

struct rx {
    struct fx *f;        /* fixture */
    rtcr_kobj_t *irq;    /* IRQ to receive */
    rtcr_kobj_t *thread; /* receiving thread */
    int result;          /* what the receive returned */
    bool open_wait;      /* use reply_and_wait instead of irq_receive */
    uint64_t label;      /* label of an open-wait delivery */
};

static void *rx_main(void *arg)
{
    struct rx *r = arg;
    if (r->open_wait) {
        rtcr_msg_t m;
        r->result = rtcr_ipc_reply_and_wait(r->f->k, r->thread, NULL, &m, &r->label, LONG_USEC);
    } else {
        r->result = rtcr_irq_receive(r->f->k, r->irq, r->thread, LONG_USEC);
    }
    return NULL;
}

/* wait until `thread` blocks (rtcr_thread_set_handler refuses a thread that waits) */
static void wait_blocked(rtcr_kernel_t *k, rtcr_kobj_t *thread)
{
    for (int i = 0; i < 5000; i++) {
        if (rtcr_thread_set_handler(k, thread, NULL, NULL) == -EBUSY)
            return;
        usleep(1000);
    }
    fail_msg("thread never blocked");
}

static void test_wake_blocked(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0x40, f->th), 0);
    pthread_t pt;
    /* irq_receive woken by a trigger */
    struct rx r = {.f = f, .irq = f->irq, .thread = f->th};
    assert_int_equal(pthread_create(&pt, NULL, rx_main, &r), 0);
    wait_blocked(k, f->th);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(r.result, 0);
    /* a second trigger right after the delivery latched: it was masked */
    rtcr_irq_state_t s = state_of(k, f->irq);
    assert_true(s.masked);
    assert_false(s.pending);
    /* reply_and_wait woken by a trigger after unmask */
    assert_int_equal(rtcr_irq_unmask(k, f->irq), 0);
    struct rx o = {.f = f, .thread = f->th, .open_wait = true};
    assert_int_equal(pthread_create(&pt, NULL, rx_main, &o), 0);
    wait_blocked(k, f->th);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0); /* after delivery: latches */
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(o.result, 0);
    assert_int_equal(o.label, 0x40);
    s = state_of(k, f->irq);
    assert_true(s.masked);
    assert_true(s.pending);
    /* unmask while the thread waits delivers at once */
    struct rx o2 = {.f = f, .thread = f->th, .open_wait = true};
    assert_int_equal(pthread_create(&pt, NULL, rx_main, &o2), 0);
    wait_blocked(k, f->th);
    assert_int_equal(rtcr_irq_unmask(k, f->irq), 0);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(o2.result, 0);
    assert_false(state_of(k, f->irq).pending);
}

static void test_wait_ends(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    pthread_t pt;
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, f->th), 0);
    /* detached while waiting */
    struct rx r = {.f = f, .irq = f->irq, .thread = f->th};
    assert_int_equal(pthread_create(&pt, NULL, rx_main, &r), 0);
    wait_blocked(k, f->th);
    assert_int_equal(rtcr_irq_detach(k, f->irq), 0);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(r.result, -ENOTCONN);
    /* cancelled while waiting */
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, f->th), 0);
    assert_int_equal(pthread_create(&pt, NULL, rx_main, &r), 0);
    wait_blocked(k, f->th);
    assert_int_equal(rtcr_thread_cancel_wait(k, f->th), 1);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(r.result, -EINTR);
    /* a second wait on the same thread is refused */
    assert_int_equal(pthread_create(&pt, NULL, rx_main, &r), 0);
    wait_blocked(k, f->th);
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th, 1), -EBUSY);
    /* the IRQ deleted while waiting */
    assert_int_equal(rtcr_kobj_delete(k, f->irq), 0);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(r.result, -EPIPE);
    /* the thread deleted while waiting: its lock IRQ */
    rtcr_kobj_t *lock_irq;
    assert_int_equal(
        rtcr_task_lookup(k, f->t, RTCR_THREAD_SLOT(1, RTCR_THREAD_IRQ_OFF), &lock_irq, NULL), 0);
    struct rx r2 = {.f = f, .irq = lock_irq, .thread = f->th2};
    assert_int_equal(pthread_create(&pt, NULL, rx_main, &r2), 0);
    wait_blocked(k, f->th2);
    assert_int_equal(rtcr_kobj_delete(k, f->th2), 0);
    assert_int_equal(pthread_join(pt, NULL), 0);
    assert_int_equal(r2.result, -EPIPE);
    assert_true(rtcr_kobj_is_deleted(lock_irq)); /* thread-area objects die with the thread */
    rtcr_kobj_unref(&lock_irq);
}

static void test_thread_delete_detaches(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, f->th2), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(rtcr_kobj_delete(k, f->th2), 0);
    rtcr_irq_state_t s = state_of(k, f->irq);
    assert_false(s.attached);
    assert_true(s.pending);
    /* the pending bit survives: re-attached, delivered at once */
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, f->th), 0);
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th, LONG_USEC), 0);
    /* detach keeps it too */
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(rtcr_irq_detach(k, f->irq), 0);
    assert_true(state_of(k, f->irq).pending);
}

static void test_set_state(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, f->th), 0);
    assert_int_equal(rtcr_irq_set_state(k, f->irq, true, true), 0);
    rtcr_irq_state_t s = state_of(k, f->irq);
    assert_true(s.pending);
    assert_true(s.masked);
    rtcr_msg_t m;
    uint64_t label;
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->th, NULL, &m, &label, SHORT_USEC), -ETIMEDOUT);
    assert_int_equal(rtcr_irq_set_state(k, f->irq, true, false), 0);
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->th, NULL, &m, &label, LONG_USEC), 0);
    assert_int_equal(rtcr_irq_set_state(k, f->irq, false, false), 0);
    s = state_of(k, f->irq);
    assert_false(s.pending);
    assert_false(s.masked);
    assert_int_equal(rtcr_irq_set_state(NULL, f->irq, false, false), -EINVAL);
}

struct hctx {
    rtcr_kernel_t *k;  /* kernel */
    rtcr_kobj_t *irq;  /* the IRQ */
    int calls;         /* handler invocations */
    int depth;         /* current nesting */
    int max_depth;     /* deepest nesting seen */
    uint64_t label;    /* last label */
    int32_t tag_label; /* last tag label */
    int retrigger;     /* trigger+unmask from inside this many more times */
};

static int irq_handler(void *ctx, rtcr_kobj_t *thread, uint64_t label, const rtcr_msg_t *req,
                       rtcr_msg_t *reply)
{
    struct hctx *h = ctx;
    (void)thread;
    (void)reply;
    h->calls++;
    h->depth++;
    if (h->depth > h->max_depth)
        h->max_depth = h->depth;
    h->label = label;
    h->tag_label = req->tag.label;
    if (h->retrigger > 0) {
        h->retrigger--;
        /* the lock is not held; a trigger while masked latches, the unmask re-delivers
         * through the running loop, not recursively */
        rtcr_irq_trigger(h->k, h->irq);
        rtcr_irq_unmask(h->k, h->irq);
    }
    h->depth--;
    return 0;
}

static void test_handler_thread(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    struct hctx h = {.k = k, .irq = f->irq};
    assert_int_equal(rtcr_thread_set_handler(k, f->th2, irq_handler, &h), 0);
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0x99c, f->th2), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.label, 0x99c);
    assert_int_equal(h.tag_label, RTCR_PROTO_IRQ);
    /* masked: latched, not called */
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(h.calls, 1);
    assert_true(state_of(k, f->irq).pending);
    /* the unmask (an ack) delivers the coalesced trigger */
    assert_int_equal(rtcr_irq_unmask(k, f->irq), 0);
    assert_int_equal(h.calls, 2);
    assert_false(state_of(k, f->irq).pending);
    /* re-triggering from inside the handler loops, never recurses */
    assert_int_equal(rtcr_irq_unmask(k, f->irq), 0);
    h.retrigger = 5;
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(h.calls, 2 + 6);
    assert_int_equal(h.max_depth, 1);
    /* a handler thread does not block */
    assert_int_equal(rtcr_irq_receive(k, f->irq, f->th2, 1), -EINVAL);
    /* a latched trigger is delivered at attach to a handler thread */
    assert_int_equal(rtcr_irq_detach(k, f->irq), 0);
    assert_int_equal(rtcr_irq_unmask(k, f->irq), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    int before = h.calls;
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0x77, f->th2), 0);
    assert_int_equal(h.calls, before + 1);
    assert_int_equal(h.label, 0x77);
}

static void test_chain(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_kobj_t *s1, *s2, *s3;
    assert_int_equal(rtcr_irq_create(k, &s1), 0);
    assert_int_equal(rtcr_irq_create(k, &s2), 0);
    assert_int_equal(rtcr_irq_create(k, &s3), 0);
    assert_int_equal(rtcr_irq_chain(k, f->irq, s1), 0);
    assert_int_equal(rtcr_irq_chain(k, f->irq, s2), 0);
    /* errors */
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, f->th), -EBUSY); /* master with slaves */
    assert_int_equal(rtcr_irq_chain(k, s3, s1), -EBUSY);            /* s1 chained already */
    assert_int_equal(rtcr_irq_chain(k, s3, s3), -EINVAL);
    assert_int_equal(rtcr_irq_chain(k, s1, s3), -EINVAL);     /* master is a slave */
    assert_int_equal(rtcr_irq_chain(k, s3, f->irq), -EINVAL); /* slave is a master */
    assert_int_equal(rtcr_irq_chain(k, s3, f->t), -EPROTOTYPE);
    assert_int_equal(rtcr_irq_chain(NULL, s3, s1), -EINVAL);
    assert_int_equal(rtcr_irq_attach(k, s3, 0, f->th), 0);
    assert_int_equal(rtcr_irq_chain(k, s3, f->irq), -EBUSY); /* master with a thread */
    /* slaves may have threads */
    assert_int_equal(rtcr_irq_attach(k, s1, 0x10, f->th), 0);
    assert_int_equal(rtcr_irq_attach(k, s2, 0x20, f->th2), 0);
    /* a trigger of the master reaches both slaves */
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_true(state_of(k, s1).pending);
    assert_true(state_of(k, s2).pending);
    assert_int_equal(state_of(k, f->irq).triggers, 1);
    assert_int_equal(rtcr_irq_receive(k, s1, f->th, LONG_USEC), 0);
    rtcr_msg_t m;
    uint64_t label;
    assert_int_equal(rtcr_ipc_reply_and_wait(k, f->th2, NULL, &m, &label, LONG_USEC), 0);
    assert_int_equal(label, 0x20);
    /* deleting a slave unchains it; deleting the master frees the others */
    assert_int_equal(rtcr_kobj_delete(k, s2), 0);
    assert_int_equal(rtcr_irq_unmask(k, s1), 0);
    assert_int_equal(rtcr_irq_trigger(k, f->irq), 0);
    assert_int_equal(state_of(k, f->irq).triggers, 2);
    assert_int_equal(rtcr_irq_receive(k, s1, f->th, LONG_USEC), 0);
    assert_int_equal(rtcr_kobj_delete(k, f->irq), 0);
    assert_int_equal(rtcr_irq_chain(k, s3, s1), -EBUSY); /* s3 has a thread */
    assert_int_equal(rtcr_irq_detach(k, s3), 0);
    assert_int_equal(rtcr_irq_chain(k, s3, s1), 0); /* s1 is free again */
    rtcr_kobj_unref(&s1);
    rtcr_kobj_unref(&s2);
    rtcr_kobj_unref(&s3);
}

/* Two threads hand a token back and forth through each other's thread-area lock IRQ, the way
 * Genode's lock blocks (l4_irq_receive on its own IRQ) and wakes (l4_irq_trigger on the
 * other's). A lost wake-up hangs the test (bounded by LONG_USEC per wait). */
struct pp {
    struct fx *f;          /* fixture */
    rtcr_kobj_t *me;       /* my thread */
    rtcr_kobj_t *my_irq;   /* my lock IRQ */
    rtcr_kobj_t *peer_irq; /* the peer's lock IRQ */
    bool first;            /* trigger before the first wait */
    int rounds;            /* round trips */
    int ok;                /* successful waits */
};

static void *pp_main(void *arg)
{
    struct pp *p = arg;
    rtcr_kernel_t *k = p->f->k;
    for (int i = 0; i < p->rounds; i++) {
        if (p->first && rtcr_irq_trigger(k, p->peer_irq) < 0)
            return NULL;
        if (rtcr_irq_receive(k, p->my_irq, p->me, LONG_USEC) < 0)
            return NULL;
        p->ok++;
        if (!p->first && rtcr_irq_trigger(k, p->peer_irq) < 0)
            return NULL;
    }
    return NULL;
}

static void test_lock_ping_pong(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_kobj_t *ia, *ib;
    assert_int_equal(rtcr_task_lookup(k, f->t, RTCR_THREAD_SLOT(0, RTCR_THREAD_IRQ_OFF), &ia, NULL),
                     0);
    assert_int_equal(rtcr_task_lookup(k, f->t, RTCR_THREAD_SLOT(1, RTCR_THREAD_IRQ_OFF), &ib, NULL),
                     0);
    enum { ROUNDS = 2000 };
    struct pp a = {
        .f = f, .me = f->th, .my_irq = ia, .peer_irq = ib, .first = true, .rounds = ROUNDS};
    struct pp b = {.f = f, .me = f->th2, .my_irq = ib, .peer_irq = ia, .rounds = ROUNDS};
    pthread_t pa, pb;
    assert_int_equal(pthread_create(&pb, NULL, pp_main, &b), 0);
    assert_int_equal(pthread_create(&pa, NULL, pp_main, &a), 0);
    assert_int_equal(pthread_join(pa, NULL), 0);
    assert_int_equal(pthread_join(pb, NULL), 0);
    assert_int_equal(a.ok, ROUNDS);
    assert_int_equal(b.ok, ROUNDS);
    assert_int_equal(state_of(k, ia).triggers, ROUNDS);
    assert_int_equal(state_of(k, ib).triggers, ROUNDS);
    rtcr_kobj_unref(&ia);
    rtcr_kobj_unref(&ib);
}

/* many triggers from several pthreads against one receiver: no crash, no hang, and every
 * receive corresponds to at least one trigger (coalescing may merge them) */
struct trig {
    struct fx *f; /* fixture */
    int n;        /* triggers to send */
};

static void *trig_main(void *arg)
{
    struct trig *t = arg;
    for (int i = 0; i < t->n; i++)
        rtcr_irq_trigger(t->f->k, t->f->irq);
    return NULL;
}

static void test_trigger_storm(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_irq_attach(k, f->irq, 0, f->th), 0);
    enum { NT = 3, N = 2000 };
    struct trig t = {.f = f, .n = N};
    pthread_t pt[NT];
    for (int i = 0; i < NT; i++)
        assert_int_equal(pthread_create(&pt[i], NULL, trig_main, &t), 0);
    int got = 0;
    for (;;) {
        int r = rtcr_irq_receive(k, f->irq, f->th, 50000);
        if (r == -ETIMEDOUT)
            break;
        assert_int_equal(r, 0);
        got++;
    }
    for (int i = 0; i < NT; i++)
        assert_int_equal(pthread_join(pt[i], NULL), 0);
    /* the receiver may have timed out during a pause of the triggers: drain what is left */
    while (rtcr_irq_receive(k, f->irq, f->th, SHORT_USEC) == 0)
        got++;
    assert_true(got >= 1);
    assert_true(got <= NT * N);
    rtcr_irq_state_t s = state_of(k, f->irq);
    assert_int_equal(s.triggers, NT * N);
    assert_false(s.pending); /* everything latched was received */
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_attach_detach),          T(test_latch_and_coalesce),
        T(test_mask_and_open_wait),     T(test_receive_errors),
        T(test_wake_blocked),           T(test_wait_ends),
        T(test_thread_delete_detaches), T(test_set_state),
        T(test_handler_thread),         T(test_chain),
        T(test_lock_ping_pong),         T(test_trigger_storm),
    };
#undef T
    return cmocka_run_group_tests_name("kernel_irq", tests, NULL, NULL);
}
