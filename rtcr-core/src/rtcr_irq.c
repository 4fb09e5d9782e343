/* rtcr_irq.c — IRQ objects (Fiasco.OC Irq_sender as Genode uses it for locks, signals and
 * interrupt sessions).
 *
 * State per IRQ: attached thread and label, a pending bit and a mask bit. A trigger sets the
 * pending bit; a pending, unmasked IRQ is delivered to its thread as soon as the thread waits
 * for it (rtcr_ipc_reply_and_wait: any attached IRQ; rtcr_irq_receive: this IRQ), and delivery
 * clears pending and sets masked. Triggers while pending, or while masked, coalesce into the
 * one pending bit. rtcr_irq_unmask / rtcr_irq_receive clear the mask.
 *
 * A thread with a handler counts as always waiting: delivery calls the handler with
 * tag.label RTCR_PROTO_IRQ and label = attach label, in the pthread that triggered or
 * unmasked, without the kernel lock. Triggers that arrive while the handler runs latch; if the
 * IRQ is unmasked meanwhile (typically by the handler itself, or an ack), the same delivery
 * loop calls the handler again, so one IRQ never runs its handler concurrently or recursively.
 *
 * Chaining (l4_irq_mux_chain) is one level deep: a master has no thread and forwards each
 * trigger to its slaves, each of which latches and delivers on its own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_internal.h"

void irq_attach_locked(rtcr_kobj_t *irq, rtcr_kobj_t *thread, uint64_t label)
{
    struct irq_body *i = &irq->u.irq;
    struct thread_body *t = &thread->u.thread;
    i->thread = thread;
    obj_get(thread);
    i->label = label;
    i->aprev = NULL;
    i->anext = t->irqs;
    if (t->irqs)
        t->irqs->u.irq.aprev = irq;
    t->irqs = irq;
}

void irq_detach_locked(rtcr_kobj_t *irq)
{
    struct irq_body *i = &irq->u.irq;
    rtcr_kobj_t *th = i->thread;
    if (!th)
        return;
    if (i->aprev)
        i->aprev->u.irq.anext = i->anext;
    else
        th->u.thread.irqs = i->anext;
    if (i->anext)
        i->anext->u.irq.aprev = i->aprev;
    i->anext = i->aprev = NULL;
    i->thread = NULL;
    if (th->u.thread.wait == WAIT_IRQ && th->u.thread.wait_irq == irq)
        thread_wake(th);
    obj_put(th);
}

void irq_unchain_all(rtcr_kobj_t *irq)
{
    struct irq_body *i = &irq->u.irq;
    if (i->master) {
        rtcr_kobj_t **pp = &i->master->u.irq.slaves;
        while (*pp && *pp != irq)
            pp = &(*pp)->u.irq.snext;
        if (*pp)
            *pp = i->snext;
        i->snext = NULL;
        i->master = NULL;
        obj_put(irq); /* the master's reference */
    }
    while (i->slaves) {
        rtcr_kobj_t *s = i->slaves;
        i->slaves = s->u.irq.snext;
        s->u.irq.snext = NULL;
        s->u.irq.master = NULL;
        obj_put(s);
    }
}

void irq_consume(rtcr_kobj_t *irq)
{
    irq->u.irq.pending = false;
    irq->u.irq.masked = true;
}

rtcr_kobj_t *thread_pending_irq(rtcr_kobj_t *thread)
{
    for (rtcr_kobj_t *irq = thread->u.thread.irqs; irq; irq = irq->u.irq.anext)
        if (irq->u.irq.pending && !irq->u.irq.masked)
            return irq;
    return NULL;
}

/* Run the handler of the IRQ's thread while there is something to deliver. Drops the lock
 * around the handler; references keep irq and thread alive. */
static void handler_loop(rtcr_kobj_t *irq)
{
    rtcr_kernel_t *k = irq->k;
    struct irq_body *i = &irq->u.irq;
    if (i->delivering)
        return; /* the running loop picks the new trigger up */
    rtcr_kobj_t *th = i->thread;
    i->delivering = true;
    obj_get(irq);
    obj_get(th);
    while (!irq->deleted && i->thread == th && !th->deleted && th->u.thread.handler && i->pending &&
           !i->masked) {
        irq_consume(irq);
        rtcr_ipc_handler_fn fn = th->u.thread.handler;
        void *ctx = th->u.thread.handler_ctx;
        uint64_t label = i->label;
        kunlock(k);
        rtcr_msg_t req, reply;
        memset(&req, 0, sizeof(req));
        memset(&reply, 0, sizeof(reply));
        req.tag.label = RTCR_PROTO_IRQ;
        (void)fn(ctx, th, label, &req, &reply);
        klock(k);
    }
    i->delivering = false;
    obj_put(th);
    obj_put(irq);
}

void irq_kick(rtcr_kobj_t *irq)
{
    struct irq_body *i = &irq->u.irq;
    rtcr_kobj_t *th = i->thread;
    if (!th || !i->pending || i->masked)
        return;
    struct thread_body *t = &th->u.thread;
    if (t->handler) {
        handler_loop(irq);
        return;
    }
    bool waits = t->wait == WAIT_OPEN || (t->wait == WAIT_IRQ && t->wait_irq == irq);
    if (!waits || t->woken_irq)
        return; /* latched: delivered at the thread's next wait */
    irq_consume(irq);
    t->woken_irq = irq;
    obj_get(irq);
    t->woken_label = i->label;
    thread_wake(th);
}

static int irq_check(rtcr_kernel_t *k, rtcr_kobj_t *irq)
{
    return obj_check(k, irq, RTCR_KOBJ_IRQ);
}

int rtcr_irq_attach(rtcr_kernel_t *k, rtcr_kobj_t *irq, uint64_t label, rtcr_kobj_t *thread)
{
    if (!k || !irq || !thread)
        return -EINVAL;
    klock(k);
    int r = irq_check(k, irq);
    if (r == 0)
        r = obj_check(k, thread, RTCR_KOBJ_THREAD);
    if (r == 0 && (irq->u.irq.thread || irq->u.irq.slaves))
        r = -EBUSY;
    if (r == 0) {
        irq_attach_locked(irq, thread, label);
        irq_kick(irq);
    }
    kunlock(k);
    return r;
}

int rtcr_irq_detach(rtcr_kernel_t *k, rtcr_kobj_t *irq)
{
    if (!k || !irq)
        return -EINVAL;
    klock(k);
    int r = irq_check(k, irq);
    if (r == 0 && !irq->u.irq.thread)
        r = -ENOTCONN;
    if (r == 0)
        irq_detach_locked(irq);
    kunlock(k);
    return r;
}

static void trigger_one(rtcr_kobj_t *irq)
{
    irq->u.irq.triggers++;
    irq->u.irq.pending = true;
    irq_kick(irq);
}

int rtcr_irq_trigger(rtcr_kernel_t *k, rtcr_kobj_t *irq)
{
    if (!k || !irq)
        return -EINVAL;
    klock(k);
    int r = irq_check(k, irq);
    if (r < 0) {
        kunlock(k);
        return r;
    }
    if (!irq->u.irq.slaves) {
        trigger_one(irq);
        kunlock(k);
        return 0;
    }
    /* a master: snapshot the slaves, as a handler delivery drops the lock */
    size_t n = 0;
    for (rtcr_kobj_t *s = irq->u.irq.slaves; s; s = s->u.irq.snext)
        n++;
    rtcr_kobj_t **v = malloc(n * sizeof(*v));
    if (!v) {
        kunlock(k);
        return -ENOMEM;
    }
    n = 0;
    for (rtcr_kobj_t *s = irq->u.irq.slaves; s; s = s->u.irq.snext) {
        obj_get(s);
        v[n++] = s;
    }
    irq->u.irq.triggers++;
    for (size_t j = 0; j < n; j++) {
        if (!v[j]->deleted)
            trigger_one(v[j]);
        obj_put(v[j]);
    }
    kunlock(k);
    free(v);
    return 0;
}

int rtcr_irq_unmask(rtcr_kernel_t *k, rtcr_kobj_t *irq)
{
    if (!k || !irq)
        return -EINVAL;
    klock(k);
    int r = irq_check(k, irq);
    if (r == 0) {
        irq->u.irq.masked = false;
        irq_kick(irq);
    }
    kunlock(k);
    return r;
}

int rtcr_irq_receive(rtcr_kernel_t *k, rtcr_kobj_t *irq, rtcr_kobj_t *thread, uint64_t timeout_usec)
{
    if (!k || !irq || !thread)
        return -EINVAL;
    klock(k);
    int r = irq_check(k, irq);
    if (r == 0)
        r = obj_check(k, thread, RTCR_KOBJ_THREAD);
    struct thread_body *t = &thread->u.thread;
    if (r == 0 && t->handler)
        r = -EINVAL;
    if (r == 0 && !irq->u.irq.thread)
        r = -ENOTCONN;
    if (r == 0 && irq->u.irq.thread != thread)
        r = -EPERM;
    if (r == 0 && t->wait != WAIT_NONE)
        r = -EBUSY;
    if (r < 0) {
        kunlock(k);
        return r;
    }

    irq->u.irq.masked = false;
    obj_get(thread);
    obj_get(irq);
    t->wait = WAIT_IRQ;
    t->wait_irq = irq;
    struct timespec dl;
    bool has_dl = deadline_make(timeout_usec, &dl);
    bool timed_out = false;
    for (;;) {
        if (t->woken_irq) {
            obj_put(t->woken_irq);
            t->woken_irq = NULL;
            r = 0;
            break;
        }
        if (irq->u.irq.pending && !irq->u.irq.masked && irq->u.irq.thread == thread) {
            irq_consume(irq);
            r = 0;
            break;
        }
        if (thread->deleted || irq->deleted) {
            r = -EPIPE;
            break;
        }
        if (irq->u.irq.thread != thread) {
            r = -ENOTCONN;
            break;
        }
        if (t->cancel_pending) {
            t->cancel_pending = false;
            r = -EINTR;
            break;
        }
        if (timed_out) {
            r = -ETIMEDOUT;
            break;
        }
        timed_out = kwait(thread, has_dl ? &dl : NULL) == ETIMEDOUT;
    }
    t->wait = WAIT_NONE;
    t->wait_irq = NULL;
    obj_put(irq);
    obj_put(thread);
    kunlock(k);
    return r;
}

int rtcr_irq_chain(rtcr_kernel_t *k, rtcr_kobj_t *master, rtcr_kobj_t *slave)
{
    if (!k || !master || !slave || master == slave)
        return -EINVAL;
    klock(k);
    int r = irq_check(k, master);
    if (r == 0)
        r = irq_check(k, slave);
    if (r == 0 && (master->u.irq.thread || slave->u.irq.master))
        r = -EBUSY;
    if (r == 0 && (master->u.irq.master || slave->u.irq.slaves))
        r = -EINVAL; /* one level only */
    if (r == 0) {
        slave->u.irq.master = master;
        slave->u.irq.snext = master->u.irq.slaves;
        master->u.irq.slaves = slave;
        obj_get(slave);
    }
    kunlock(k);
    return r;
}

int rtcr_irq_state(rtcr_kernel_t *k, rtcr_kobj_t *irq, rtcr_irq_state_t *ret_state)
{
    if (!k || !irq || !ret_state)
        return -EINVAL;
    klock(k);
    int r = irq_check(k, irq);
    if (r == 0) {
        const struct irq_body *i = &irq->u.irq;
        *ret_state = (rtcr_irq_state_t){
            .attached = i->thread != NULL,
            .label = i->label,
            .thread_id = i->thread ? i->thread->id : 0,
            .pending = i->pending,
            .masked = i->masked,
            .triggers = i->triggers,
        };
    }
    kunlock(k);
    return r;
}

int rtcr_irq_set_state(rtcr_kernel_t *k, rtcr_kobj_t *irq, bool pending, bool masked)
{
    if (!k || !irq)
        return -EINVAL;
    klock(k);
    int r = irq_check(k, irq);
    if (r == 0) {
        irq->u.irq.pending = pending;
        irq->u.irq.masked = masked;
        irq_kick(irq);
    }
    kunlock(k);
    return r;
}
