/* rtcr_kernel.c — the kernel context and the life cycle of kernel objects.
 *
 * Models Fiasco.OC's object life cycle as Genode's core uses it: objects come from a factory
 * (l4_factory_create_*), live as long as a capability or an owner reference names them, and
 * can be deleted explicitly (L4_FP_DELETE_OBJ), after which every capability to them is stale.
 *
 * Invariants:
 *  - every object not yet freed is on k->objects; an object with refs == 0 is on k->reap and is
 *    torn down (if not yet deleted) and freed when the kernel lock is released (kunlock);
 *  - obj_teardown() runs exactly once per object and releases every outgoing reference;
 *  - no teardown path drops the kernel lock, so a teardown is atomic for every observer.
 * See kernel_internal.h for which pointers are counted.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_internal.h"

void klock(rtcr_kernel_t *k)
{
    int r = pthread_mutex_lock(&k->lock);
    assert(r == 0);
    (void)r;
}

static void obj_free(rtcr_kobj_t *o);

void kreap(rtcr_kernel_t *k)
{
    while (k->reap) {
        rtcr_kobj_t *o = k->reap;
        k->reap = o->reap_next;
        o->reap_next = NULL;
        o->reaping = false;
        if (o->refs > 0)
            continue; /* taken again before the lock was released */
        if (!o->deleted)
            obj_teardown(o);
        if (o->refs == 0 && !o->reaping)
            obj_free(o);
    }
}

void kunlock(rtcr_kernel_t *k)
{
    kreap(k);
    int r = pthread_mutex_unlock(&k->lock);
    assert(r == 0);
    (void)r;
}

rtcr_kernel_t *rtcr_kernel_new(void)
{
    rtcr_kernel_t *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    if (pi_mutex_init(&k->lock) < 0) {
        free(k);
        return NULL;
    }
    k->next_id = 1;
    badge_init(&k->badges);
    return k;
}

void rtcr_kernel_destroy(rtcr_kernel_t **p)
{
    if (!p || !*p)
        return;
    rtcr_kernel_t *k = *p;
    *p = NULL;

    klock(k);
    /* tear everything down first (capabilities, bindings, badges), then free regardless of
     * the owners' references: after destroy no reference may be used */
    for (rtcr_kobj_t *o = k->objects; o; o = o->next)
        if (!o->deleted)
            obj_teardown(o);
    while (k->objects)
        obj_free(k->objects);
    k->reap = NULL;
    pthread_mutex_unlock(&k->lock);

    badge_fini(&k->badges);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

/* ---- object memory ---------------------------------------------------------------------- */

rtcr_kobj_t *obj_alloc(rtcr_kernel_t *k, enum rtcr_kobj_type type)
{
    rtcr_kobj_t *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->k = k;
    o->type = type;
    o->refs = 1;
    switch (type) {
    case RTCR_KOBJ_TASK:
        o->u.task.slots = calloc(RTCR_CAP_SLOTS, sizeof(*o->u.task.slots));
        if (!o->u.task.slots) {
            free(o);
            return NULL;
        }
        break;
    case RTCR_KOBJ_THREAD: {
        pthread_condattr_t a;
        if (pthread_condattr_init(&a) != 0) {
            free(o);
            return NULL;
        }
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        int r = pthread_cond_init(&o->u.thread.cond, &a);
        pthread_condattr_destroy(&a);
        if (r != 0) {
            free(o);
            return NULL;
        }
        o->u.thread.index = -1;
        break;
    }
    default:
        break;
    }
    return o;
}

void obj_free_unlinked(rtcr_kobj_t *o)
{
    if (!o)
        return;
    if (o->type == RTCR_KOBJ_THREAD)
        pthread_cond_destroy(&o->u.thread.cond);
    if (o->type == RTCR_KOBJ_TASK)
        free(o->u.task.slots);
    free(o->name);
    free(o);
}

void obj_link(rtcr_kobj_t *o)
{
    rtcr_kernel_t *k = o->k;
    o->id = k->next_id++;
    o->next = k->objects;
    o->prev = NULL;
    if (k->objects)
        k->objects->prev = o;
    k->objects = o;
}

static void obj_free(rtcr_kobj_t *o)
{
    rtcr_kernel_t *k = o->k;
    if (o->prev)
        o->prev->next = o->next;
    else
        k->objects = o->next;
    if (o->next)
        o->next->prev = o->prev;
    obj_free_unlinked(o);
}

void obj_get(rtcr_kobj_t *o)
{
    o->refs++;
}

void obj_put(rtcr_kobj_t *o)
{
    assert(o->refs > 0);
    if (--o->refs == 0 && !o->reaping) {
        o->reaping = true;
        o->reap_next = o->k->reap;
        o->k->reap = o;
    }
}

int obj_check(rtcr_kernel_t *k, const rtcr_kobj_t *o, enum rtcr_kobj_type type)
{
    if (!k || !o || o->k != k)
        return -EINVAL;
    if (o->type != type)
        return -EPROTOTYPE;
    if (o->deleted)
        return -EIDRM;
    return 0;
}

/* ---- teardown --------------------------------------------------------------------------- */

static void task_teardown(rtcr_kobj_t *t)
{
    /* a PD's threads die with it (core destroys them before the task) */
    while (t->u.task.threads)
        obj_teardown(t->u.task.threads);
    task_clear(t);
}

static void thread_teardown(rtcr_kobj_t *th)
{
    struct thread_body *b = &th->u.thread;
    thread_unbind(th);
    while (b->irqs)
        irq_detach_locked(b->irqs);
    thread_fail_calls(th, -EPIPE);
    thread_abort_own_call(th, -EPIPE);
    if (b->woken_irq) {
        obj_put(b->woken_irq);
        b->woken_irq = NULL;
    }
    b->handler = NULL;
    b->handler_ctx = NULL;

    rtcr_kobj_t *task = b->task;
    if (b->tprev)
        b->tprev->u.thread.tnext = b->tnext;
    else
        task->u.task.threads = b->tnext;
    if (b->tnext)
        b->tnext->u.thread.tprev = b->tprev;
    b->tnext = b->tprev = NULL;
    b->task = NULL;
    obj_put(task);
    thread_wake(th); /* a waiter on its behalf sees `deleted` */
}

static void gate_teardown(rtcr_kobj_t *g)
{
    if (g->u.gate.thread) {
        gate_fail_calls(g, -EPIPE);
        obj_put(g->u.gate.thread);
        g->u.gate.thread = NULL;
    }
    if (g->u.gate.owns_badge) {
        badge_free_locked(&g->k->badges, g->u.gate.badge);
        g->u.gate.owns_badge = false;
    }
}

static void irq_teardown(rtcr_kobj_t *irq)
{
    if (irq->u.irq.thread)
        irq_detach_locked(irq);
    irq_unchain_all(irq);
    irq->u.irq.pending = false;
}

void obj_teardown(rtcr_kobj_t *o)
{
    assert(!o->deleted);
    o->deleted = true;
    switch (o->type) {
    case RTCR_KOBJ_TASK:
        task_teardown(o);
        break;
    case RTCR_KOBJ_THREAD:
        thread_teardown(o);
        break;
    case RTCR_KOBJ_GATE:
        gate_teardown(o);
        break;
    case RTCR_KOBJ_IRQ:
        irq_teardown(o);
        break;
    default:
        assert(!"bad object type");
    }
}

/* ---- factory ---------------------------------------------------------------------------- */

static int set_name_copy(rtcr_kobj_t *o, const char *name)
{
    char *n = NULL;
    if (name) {
        n = strdup(name);
        if (!n)
            return -ENOMEM;
    }
    free(o->name);
    o->name = n;
    return 0;
}

int rtcr_task_create(rtcr_kernel_t *k, const char *name, rtcr_kobj_t **ret_task)
{
    if (!k || !ret_task)
        return -EINVAL;
    rtcr_kobj_t *t = obj_alloc(k, RTCR_KOBJ_TASK);
    struct rtcr_cap *self = calloc(1, sizeof(*self));
    if (!t || !self || set_name_copy(t, name) < 0) {
        obj_free_unlinked(t);
        free(self);
        return -ENOMEM;
    }
    klock(k);
    obj_link(t);
    /* the task's capability to itself (L4_BASE_TASK_CAP); it keeps the task alive until the
     * task is deleted */
    self->obj = t;
    obj_get(t);
    self->rights = RTCR_CAP_RWS;
    cap_place(self, t, RTCR_TASK_CAP);
    kunlock(k);
    *ret_task = t;
    return 0;
}

int rtcr_thread_create(rtcr_kernel_t *k, rtcr_kobj_t *task, const char *name,
                       rtcr_kobj_t **ret_thread)
{
    if (!k || !task || !ret_thread)
        return -EINVAL;
    rtcr_kobj_t *th = obj_alloc(k, RTCR_KOBJ_THREAD);
    if (!th || set_name_copy(th, name) < 0) {
        obj_free_unlinked(th);
        return -ENOMEM;
    }
    klock(k);
    int r = obj_check(k, task, RTCR_KOBJ_TASK);
    if (r < 0) {
        kunlock(k);
        obj_free_unlinked(th);
        return r;
    }
    obj_link(th);
    th->u.thread.task = task;
    obj_get(task);
    th->u.thread.tnext = task->u.task.threads;
    if (task->u.task.threads)
        task->u.task.threads->u.thread.tprev = th;
    task->u.task.threads = th;
    kunlock(k);
    *ret_thread = th;
    return 0;
}

static int gate_new(rtcr_kernel_t *k, rtcr_kobj_t *thread, rtcr_badge_t badge, bool rpc,
                    rtcr_kobj_t **ret_gate)
{
    if (!k || !ret_gate)
        return -EINVAL;
    if (!rpc && (badge & RTCR_LABEL_RIGHTS_MASK))
        return -EINVAL;
    rtcr_kobj_t *g = obj_alloc(k, RTCR_KOBJ_GATE);
    if (!g)
        return -ENOMEM;
    klock(k);
    int r = thread ? obj_check(k, thread, RTCR_KOBJ_THREAD) : 0;
    if (r == 0 && rpc)
        r = badge_alloc_locked(&k->badges, &badge);
    if (r < 0) {
        kunlock(k);
        obj_free_unlinked(g);
        return r;
    }
    obj_link(g);
    g->u.gate.badge = badge;
    g->u.gate.owns_badge = rpc;
    if (thread) {
        g->u.gate.thread = thread;
        obj_get(thread);
    }
    kunlock(k);
    *ret_gate = g;
    return 0;
}

int rtcr_gate_create(rtcr_kernel_t *k, rtcr_kobj_t *thread, rtcr_badge_t badge,
                     rtcr_kobj_t **ret_gate)
{
    return gate_new(k, thread, badge, false, ret_gate);
}

int rtcr_gate_create_rpc(rtcr_kernel_t *k, rtcr_kobj_t *thread, rtcr_kobj_t **ret_gate)
{
    return gate_new(k, thread, RTCR_BADGE_INVALID, true, ret_gate);
}

int rtcr_irq_create(rtcr_kernel_t *k, rtcr_kobj_t **ret_irq)
{
    if (!k || !ret_irq)
        return -EINVAL;
    rtcr_kobj_t *irq = obj_alloc(k, RTCR_KOBJ_IRQ);
    if (!irq)
        return -ENOMEM;
    klock(k);
    obj_link(irq);
    kunlock(k);
    *ret_irq = irq;
    return 0;
}

/* ---- references and accessors ----------------------------------------------------------- */

void rtcr_kobj_ref(rtcr_kobj_t *o)
{
    if (!o)
        return;
    klock(o->k);
    obj_get(o);
    kunlock(o->k);
}

void rtcr_kobj_unref(rtcr_kobj_t **p)
{
    if (!p || !*p)
        return;
    rtcr_kobj_t *o = *p;
    *p = NULL;
    rtcr_kernel_t *k = o->k;
    klock(k);
    obj_put(o);
    kunlock(k);
}

int rtcr_kobj_delete(rtcr_kernel_t *k, rtcr_kobj_t *o)
{
    if (!k || !o || o->k != k)
        return -EINVAL;
    klock(k);
    if (o->deleted) {
        kunlock(k);
        return -EIDRM;
    }
    obj_teardown(o);
    kunlock(k);
    return 0;
}

enum rtcr_kobj_type rtcr_kobj_type_of(const rtcr_kobj_t *o)
{
    return o ? o->type : RTCR_KOBJ_NONE;
}

bool rtcr_kobj_is_deleted(const rtcr_kobj_t *o)
{
    if (!o)
        return true;
    klock(o->k);
    bool d = o->deleted;
    kunlock(o->k);
    return d;
}

uint64_t rtcr_kobj_id(const rtcr_kobj_t *o)
{
    return o ? o->id : 0;
}

void rtcr_kobj_set_name(rtcr_kobj_t *o, const char *name)
{
    if (!o)
        return;
    char *n = name ? strdup(name) : NULL;
    if (name && !n)
        return; /* out of memory: keep the old name */
    klock(o->k);
    free(o->name);
    o->name = n;
    kunlock(o->k);
}

const char *rtcr_kobj_name(const rtcr_kobj_t *o)
{
    if (!o)
        return NULL;
    klock(o->k);
    const char *n = o->name;
    kunlock(o->k);
    return n;
}

void rtcr_kobj_set_user(rtcr_kobj_t *o, void *user)
{
    if (!o)
        return;
    klock(o->k);
    o->user = user;
    kunlock(o->k);
}

void *rtcr_kobj_user(const rtcr_kobj_t *o)
{
    if (!o)
        return NULL;
    klock(o->k);
    void *u = o->user;
    kunlock(o->k);
    return u;
}

rtcr_badge_t rtcr_kobj_badge(const rtcr_kobj_t *o)
{
    if (!o || o->type != RTCR_KOBJ_GATE)
        return RTCR_BADGE_INVALID;
    return o->u.gate.badge; /* immutable after creation */
}

const char *rtcr_kobj_type_name(enum rtcr_kobj_type t)
{
    switch (t) {
    case RTCR_KOBJ_NONE:
        return "none";
    case RTCR_KOBJ_TASK:
        return "task";
    case RTCR_KOBJ_THREAD:
        return "thread";
    case RTCR_KOBJ_GATE:
        return "gate";
    case RTCR_KOBJ_IRQ:
        return "irq";
    default:
        return "?";
    }
}
