/* rtcr_ipc.c — synchronous IPC through IPC gates (l4_ipc_call / l4_ipc_reply_and_wait).
 *
 * Two server models:
 *  - handler threads (rtcr_thread_set_handler): the call runs the handler in the caller's
 *    pthread, without the kernel lock (references to server and caller are held across it);
 *    this is how the agent implements core's services;
 *  - blocking threads: a pthread sits in rtcr_ipc_reply_and_wait on the thread's behalf.
 *    A call is a `struct call` on the caller's stack, queued FIFO on the server thread; the
 *    caller sleeps on its own thread's condition variable until the call is done.
 *
 * Capabilities travel as map items; the kernel resolves the sender's slots, needs S on each,
 * and maps them into the receiver's receive window when the message is delivered (see
 * xfer_prepare/xfer_commit). The server learns the invoked object only from the label the
 * kernel computes: gate badge | (S|W bits of the capability used), never from the sender.
 *
 * Every blocking wait ends with: success, -ETIMEDOUT, -EINTR (rtcr_thread_cancel_wait; a
 * cancel that finds the thread not blocked is latched for its next wait) or -EPIPE (the
 * partner or the waiting thread itself was deleted). A thread does one blocking thing at a
 * time (-EBUSY otherwise).
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "kernel_internal.h"

bool deadline_make(uint64_t timeout_usec, struct timespec *ret_deadline)
{
    if (timeout_usec == 0)
        return false;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t ns = (uint64_t)now.tv_nsec + (timeout_usec % 1000000u) * 1000u;
    ret_deadline->tv_sec =
        now.tv_sec + (time_t)(timeout_usec / 1000000u) + (time_t)(ns / 1000000000u);
    ret_deadline->tv_nsec = (long)(ns % 1000000000u);
    return true;
}

int kwait(rtcr_kobj_t *thread, const struct timespec *deadline)
{
    rtcr_kernel_t *k = thread->k;
    kreap(k);
    if (!deadline) {
        pthread_cond_wait(&thread->u.thread.cond, &k->lock);
        return 0;
    }
    return pthread_cond_timedwait(&thread->u.thread.cond, &k->lock, deadline) == ETIMEDOUT
               ? ETIMEDOUT
               : 0;
}

void thread_wake(rtcr_kobj_t *thread)
{
    pthread_cond_broadcast(&thread->u.thread.cond);
}

/* ---- call records ----------------------------------------------------------------------- */

static void queue_remove(rtcr_kobj_t *server, struct call *c)
{
    struct thread_body *b = &server->u.thread;
    struct call *prev = NULL;
    for (struct call *p = b->queue_head; p; prev = p, p = p->next) {
        if (p != c)
            continue;
        if (prev)
            prev->next = c->next;
        else
            b->queue_head = c->next;
        if (b->queue_tail == c)
            b->queue_tail = prev;
        c->next = NULL;
        return;
    }
}

static void call_finish(struct call *c, int err)
{
    c->state = CALL_DONE;
    c->result = err;
    thread_wake(c->caller);
}

/* take a call out of the server's hands and finish it with err */
static void call_abort(struct call *c, int err)
{
    if (c->state == CALL_QUEUED)
        queue_remove(c->server, c);
    else if (c->state == CALL_RECEIVED && c->server->u.thread.serving == c)
        c->server->u.thread.serving = NULL;
    if (c->state != CALL_DONE)
        call_finish(c, err);
}

void thread_fail_calls(rtcr_kobj_t *thread, int err)
{
    struct thread_body *b = &thread->u.thread;
    while (b->queue_head) {
        struct call *c = b->queue_head;
        b->queue_head = c->next;
        c->next = NULL;
        call_finish(c, err);
    }
    b->queue_tail = NULL;
    if (b->serving) {
        call_finish(b->serving, err);
        b->serving = NULL;
    }
}

void thread_abort_own_call(rtcr_kobj_t *thread, int err)
{
    struct call *c = thread->u.thread.calling;
    if (c)
        call_abort(c, err);
}

void gate_fail_calls(rtcr_kobj_t *gate, int err)
{
    rtcr_kobj_t *server = gate->u.gate.thread;
    struct call *c = server->u.thread.queue_head;
    while (c) {
        struct call *next = c->next;
        if (c->gate == gate)
            call_abort(c, err);
        c = next;
    }
}

/* ---- configuration ---------------------------------------------------------------------- */

int rtcr_thread_set_rcv_window(rtcr_kernel_t *k, rtcr_kobj_t *thread, unsigned base, unsigned count)
{
    if (!k || !thread)
        return -EINVAL;
    if (count > RTCR_RCV_SLOTS_MAX)
        return -EINVAL;
    if (base >= RTCR_CAP_SLOTS || base + count > RTCR_CAP_SLOTS)
        return -ERANGE;
    if (count > 0 && base < RTCR_USER_BASE_CAP)
        return -EACCES;
    klock(k);
    int r = obj_check(k, thread, RTCR_KOBJ_THREAD);
    if (r == 0) {
        thread->u.thread.rcv_base = base;
        thread->u.thread.rcv_count = count;
    }
    kunlock(k);
    return r;
}

int rtcr_thread_set_handler(rtcr_kernel_t *k, rtcr_kobj_t *thread, rtcr_ipc_handler_fn fn,
                            void *ctx)
{
    if (!k || !thread)
        return -EINVAL;
    klock(k);
    int r = obj_check(k, thread, RTCR_KOBJ_THREAD);
    struct thread_body *b = &thread->u.thread;
    if (r == 0 && (b->wait == WAIT_OPEN || b->wait == WAIT_IRQ || b->queue_head || b->serving))
        r = -EBUSY;
    if (r == 0) {
        b->handler = fn;
        b->handler_ctx = fn ? ctx : NULL;
    }
    kunlock(k);
    return r;
}

int rtcr_thread_cancel_wait(rtcr_kernel_t *k, rtcr_kobj_t *thread)
{
    if (!k || !thread)
        return -EINVAL;
    klock(k);
    int r = obj_check(k, thread, RTCR_KOBJ_THREAD);
    if (r == 0) {
        struct thread_body *b = &thread->u.thread;
        b->cancel_pending = true;
        r = b->wait != WAIT_NONE ? 1 : 0;
        thread_wake(thread);
    }
    kunlock(k);
    return r;
}

/* ---- call ------------------------------------------------------------------------------- */

/* the handler model: lock held on entry and on return; dropped around fn */
static int call_handler(rtcr_kobj_t *caller, rtcr_kobj_t *server, uint64_t label, rtcr_msg_t *msg)
{
    rtcr_kernel_t *k = caller->k;
    struct xfer x;
    int r = xfer_prepare(caller->u.thread.task, msg, server->u.thread.rcv_count, &x);
    if (r < 0)
        return r;
    rtcr_msg_t req, reply;
    msg_copy(&req, msg);
    xfer_commit(&x, server->u.thread.task, server->u.thread.rcv_base, &req);
    rtcr_ipc_handler_fn fn = server->u.thread.handler;
    void *ctx = server->u.thread.handler_ctx;
    obj_get(caller);
    obj_get(server);
    kunlock(k);

    memset(&reply, 0, sizeof(reply));
    r = fn(ctx, server, label, &req, &reply);

    klock(k);
    if (r >= 0) {
        if (caller->deleted || server->deleted) {
            r = -EPIPE;
        } else {
            r = xfer_prepare(server->u.thread.task, &reply, caller->u.thread.rcv_count, &x);
            if (r == 0) {
                msg_copy(msg, &reply);
                xfer_commit(&x, caller->u.thread.task, caller->u.thread.rcv_base, msg);
            }
        }
    }
    obj_put(server);
    obj_put(caller);
    return r;
}

/* the blocking model: queue, wake the server, sleep until done */
static int call_blocking(rtcr_kobj_t *caller, rtcr_kobj_t *server, rtcr_kobj_t *gate,
                         uint64_t label, rtcr_msg_t *msg, uint64_t timeout_usec)
{
    struct thread_body *cb = &caller->u.thread;
    if (server == caller)
        return -EDEADLK;
    if (cb->wait != WAIT_NONE)
        return -EBUSY;
    /* check the items now so that the caller learns of a bad message at once; they are
     * resolved again when the server receives the message */
    struct xfer x;
    int r = xfer_prepare(cb->task, msg, server->u.thread.rcv_count, &x);
    if (r < 0)
        return r;
    xfer_abort(&x);
    if (cb->cancel_pending) {
        cb->cancel_pending = false;
        return -EINTR;
    }

    struct call c;
    memset(&c, 0, sizeof(c));
    c.caller = caller;
    c.server = server;
    c.gate = gate;
    c.label = label;
    c.state = CALL_QUEUED;
    msg_copy(&c.msg, msg);
    obj_get(caller);
    obj_get(server);
    obj_get(gate);

    struct thread_body *sb = &server->u.thread;
    if (sb->queue_tail)
        sb->queue_tail->next = &c;
    else
        sb->queue_head = &c;
    sb->queue_tail = &c;
    if (sb->wait == WAIT_OPEN)
        thread_wake(server);

    cb->wait = WAIT_CALL;
    cb->calling = &c;
    struct timespec dl;
    bool has_dl = deadline_make(timeout_usec, &dl);
    bool timed_out = false;
    for (;;) {
        if (c.state == CALL_DONE)
            break;
        if (cb->cancel_pending) {
            cb->cancel_pending = false;
            call_abort(&c, -EINTR);
            break;
        }
        if (timed_out) {
            call_abort(&c, -ETIMEDOUT);
            break;
        }
        timed_out = kwait(caller, has_dl ? &dl : NULL) == ETIMEDOUT;
    }
    cb->wait = WAIT_NONE;
    cb->calling = NULL;
    r = c.result;
    if (r == 0)
        *msg = c.msg;
    obj_put(gate);
    obj_put(server);
    obj_put(caller);
    return r;
}

int rtcr_ipc_call(rtcr_kernel_t *k, rtcr_kobj_t *caller, unsigned slot, rtcr_msg_t *msg,
                  uint64_t timeout_usec)
{
    if (!k || !caller || !msg)
        return -EINVAL;
    klock(k);
    struct rtcr_cap *c = NULL;
    int r = obj_check(k, caller, RTCR_KOBJ_THREAD);
    if (r == 0)
        r = cap_resolve(caller->u.thread.task, slot, &c);
    if (r == 0 && c->obj->type != RTCR_KOBJ_GATE)
        r = -EPROTOTYPE;
    if (r == 0 && !(c->rights & RTCR_CAP_R))
        r = -EPERM;
    if (r == 0)
        r = msg_check_size(msg);
    rtcr_kobj_t *server = NULL;
    if (r == 0) {
        server = c->obj->u.gate.thread;
        if (!server || server->deleted)
            r = -ENOTCONN;
    }
    if (r == 0) {
        uint64_t label = (uint64_t)c->obj->u.gate.badge | (c->rights & RTCR_LABEL_RIGHTS_MASK);
        if (server->u.thread.handler)
            r = call_handler(caller, server, label, msg);
        else
            r = call_blocking(caller, server, c->obj, label, msg, timeout_usec);
    }
    kunlock(k);
    return r;
}

/* ---- reply and wait --------------------------------------------------------------------- */

/* hand a queued call to the server: map its items into the server's window */
static int deliver_call(rtcr_kobj_t *server, struct call *c, rtcr_msg_t *ret_msg,
                        uint64_t *ret_label)
{
    struct xfer x;
    int r = xfer_prepare(c->caller->u.thread.task, &c->msg, server->u.thread.rcv_count, &x);
    if (r < 0)
        return r;
    msg_copy(ret_msg, &c->msg);
    xfer_commit(&x, server->u.thread.task, server->u.thread.rcv_base, ret_msg);
    *ret_label = c->label;
    c->state = CALL_RECEIVED;
    server->u.thread.serving = c;
    return 0;
}

static void irq_msg(rtcr_msg_t *ret_msg, uint64_t *ret_label, uint64_t label)
{
    memset(ret_msg, 0, sizeof(*ret_msg));
    ret_msg->tag.label = RTCR_PROTO_IRQ;
    *ret_label = label;
}

/* send the reply to the call being served; nothing changes on error */
static int send_reply(rtcr_kobj_t *server, const rtcr_msg_t *reply)
{
    struct thread_body *b = &server->u.thread;
    struct call *c = b->serving;
    if (!reply) {
        if (c) { /* the server gives up on the call: do not leave the caller hanging */
            b->serving = NULL;
            call_finish(c, -EPIPE);
        }
        return 0;
    }
    int r = msg_check_size(reply);
    if (r < 0 || !c)
        return r; /* a reply without a caller (it timed out or died) is dropped */
    struct xfer x;
    r = xfer_prepare(b->task, reply, c->caller->u.thread.rcv_count, &x);
    if (r < 0)
        return r;
    msg_copy(&c->msg, reply);
    xfer_commit(&x, c->caller->u.thread.task, c->caller->u.thread.rcv_base, &c->msg);
    b->serving = NULL;
    call_finish(c, 0);
    return 0;
}

int rtcr_ipc_reply_and_wait(rtcr_kernel_t *k, rtcr_kobj_t *thread, const rtcr_msg_t *reply,
                            rtcr_msg_t *ret_msg, uint64_t *ret_label, uint64_t timeout_usec)
{
    if (!k || !thread || !ret_msg || !ret_label)
        return -EINVAL;
    klock(k);
    int r = obj_check(k, thread, RTCR_KOBJ_THREAD);
    struct thread_body *b = &thread->u.thread;
    if (r == 0 && b->handler)
        r = -EINVAL;
    if (r == 0 && b->wait != WAIT_NONE)
        r = -EBUSY;
    if (r == 0)
        r = send_reply(thread, reply);
    if (r < 0) {
        kunlock(k);
        return r;
    }

    obj_get(thread);
    b->wait = WAIT_OPEN;
    struct timespec dl;
    bool has_dl = deadline_make(timeout_usec, &dl);
    bool timed_out = false;
    for (;;) {
        if (thread->deleted) {
            r = -EPIPE;
            break;
        }
        if (b->woken_irq) {
            irq_msg(ret_msg, ret_label, b->woken_label);
            obj_put(b->woken_irq);
            b->woken_irq = NULL;
            r = 0;
            break;
        }
        rtcr_kobj_t *irq = thread_pending_irq(thread);
        if (irq) {
            irq_consume(irq);
            irq_msg(ret_msg, ret_label, irq->u.irq.label);
            r = 0;
            break;
        }
        if (b->cancel_pending) {
            b->cancel_pending = false;
            r = -EINTR;
            break;
        }
        bool got = false;
        while (b->queue_head && !got) {
            struct call *c = b->queue_head;
            b->queue_head = c->next;
            if (!b->queue_head)
                b->queue_tail = NULL;
            c->next = NULL;
            int e = deliver_call(thread, c, ret_msg, ret_label);
            if (e < 0)
                call_finish(c, e); /* the caller's items became invalid meanwhile */
            else
                got = true;
        }
        if (got) {
            r = 0;
            break;
        }
        if (timed_out) {
            r = -ETIMEDOUT;
            break;
        }
        timed_out = kwait(thread, has_dl ? &dl : NULL) == ETIMEDOUT;
    }
    b->wait = WAIT_NONE;
    obj_put(thread);
    kunlock(k);
    return r;
}
