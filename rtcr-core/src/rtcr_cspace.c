/* rtcr_cspace.c — capability spaces, the mapping database and capability transfer.
 *
 * Slot layout as in Genode 16.08's base-foc: task 1, parent 8, thread area from 9 with three
 * slots per thread (gate, pager, lock IRQ) for 128 threads, the component's own first-fit
 * allocation from 0x200 (see rtcr/kernel.h).
 *
 * Each task holds an array of RTCR_CAP_SLOTS pointers to capabilities. Every capability is a
 * node of the mapping tree (Fiasco.OC's mapping database): a copy made by rtcr_task_map or by
 * an IPC map item is a child of its source; a grant moves the node itself, keeping its place in
 * the tree. Unmapping revokes a node and its whole subtree (iteratively, so a long chain of
 * mappings cannot overflow the stack). Overwriting an occupied receive-window slot only
 * releases that one capability: what was derived from it moves up to its parent, because the
 * receiver re-using its window must not revoke what it has handed on.
 *
 * A deleted object leaves its capabilities in place, stale; resolving them yields -EIDRM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_internal.h"

struct rtcr_cap *cap_at(rtcr_kobj_t *task, unsigned slot)
{
    return slot < RTCR_CAP_SLOTS ? task->u.task.slots[slot] : NULL;
}

int cap_resolve(rtcr_kobj_t *task, unsigned slot, struct rtcr_cap **ret_cap)
{
    if (slot >= RTCR_CAP_SLOTS)
        return -ERANGE;
    struct rtcr_cap *c = task->u.task.slots[slot];
    if (!c)
        return -ENOENT;
    if (c->obj->deleted)
        return -EIDRM;
    *ret_cap = c;
    return 0;
}

void cap_place(struct rtcr_cap *c, rtcr_kobj_t *task, unsigned slot)
{
    c->task = task;
    c->slot = slot;
    task->u.task.slots[slot] = c;
    task->u.task.used++;
}

static void slot_clear(struct rtcr_cap *c)
{
    if (!c->task)
        return;
    c->task->u.task.slots[c->slot] = NULL;
    c->task->u.task.used--;
    c->task = NULL;
}

static void tree_unlink(struct rtcr_cap *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->parent)
        c->parent->child = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->parent = c->next = c->prev = NULL;
}

static void tree_link(struct rtcr_cap *c, struct rtcr_cap *parent)
{
    c->parent = parent;
    c->prev = NULL;
    c->next = NULL;
    if (parent) {
        c->next = parent->child;
        if (c->next)
            c->next->prev = c;
        parent->child = c;
    }
}

static void cap_destroy(struct rtcr_cap *c)
{
    slot_clear(c);
    obj_put(c->obj);
    free(c);
}

void cap_revoke(struct rtcr_cap *c)
{
    struct rtcr_cap *n = c;
    for (;;) {
        while (n->child)
            n = n->child;
        struct rtcr_cap *p = n->parent;
        bool last = n == c;
        tree_unlink(n);
        cap_destroy(n);
        if (last)
            return;
        n = p;
    }
}

void cap_release(struct rtcr_cap *c)
{
    struct rtcr_cap *ch = c->child;
    c->child = NULL;
    while (ch) {
        struct rtcr_cap *next = ch->next;
        tree_link(ch, c->parent);
        ch = next;
    }
    tree_unlink(c);
    cap_destroy(c);
}

void task_clear(rtcr_kobj_t *task)
{
    if (!task->u.task.slots)
        return;
    for (unsigned s = 0; s < RTCR_CAP_SLOTS; s++)
        if (task->u.task.slots[s])
            cap_revoke(task->u.task.slots[s]);
    free(task->u.task.slots);
    task->u.task.slots = NULL;
}

static bool rights_ok(unsigned rights)
{
    return (rights & ~(unsigned)RTCR_CAP_ALL) == 0;
}

/* validate a task argument: -EINVAL, -EPROTOTYPE, -EIDRM */
static int task_check(rtcr_kernel_t *k, rtcr_kobj_t *task)
{
    return obj_check(k, task, RTCR_KOBJ_TASK);
}

/* ---- install, map, unmap ---------------------------------------------------------------- */

int rtcr_task_install(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot, rtcr_kobj_t *obj,
                      unsigned rights)
{
    if (!k || !task || !obj || obj->k != k || !rights_ok(rights))
        return -EINVAL;
    struct rtcr_cap *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    klock(k);
    int r = task_check(k, task);
    if (r == 0 && slot >= RTCR_CAP_SLOTS)
        r = -ERANGE;
    if (r == 0 && obj->deleted)
        r = -EIDRM;
    if (r == 0 && task->u.task.slots[slot])
        r = -EEXIST;
    if (r < 0) {
        kunlock(k);
        free(c);
        return r;
    }
    c->obj = obj;
    obj_get(obj);
    c->rights = rights;
    cap_place(c, task, slot);
    kunlock(k);
    return 0;
}

int rtcr_task_map(rtcr_kernel_t *k, rtcr_kobj_t *dst, unsigned dst_slot, rtcr_kobj_t *src,
                  unsigned src_slot, unsigned rights, bool grant)
{
    if (!k || !dst || !src || !rights_ok(rights))
        return -EINVAL;
    struct rtcr_cap *n = grant ? NULL : calloc(1, sizeof(*n));
    if (!grant && !n)
        return -ENOMEM;
    klock(k);
    struct rtcr_cap *s = NULL;
    int r = task_check(k, src);
    if (r == 0)
        r = task_check(k, dst);
    if (r == 0 && dst_slot >= RTCR_CAP_SLOTS)
        r = -ERANGE;
    if (r == 0)
        r = cap_resolve(src, src_slot, &s);
    if (r == 0 && !(s->rights & RTCR_CAP_S))
        r = -EPERM;
    if (r == 0 && dst->u.task.slots[dst_slot])
        r = -EEXIST;
    if (r < 0) {
        kunlock(k);
        free(n);
        return r;
    }
    if (grant) {
        slot_clear(s);
        s->rights &= rights;
        cap_place(s, dst, dst_slot);
    } else {
        n->obj = s->obj;
        obj_get(n->obj);
        n->rights = s->rights & rights;
        tree_link(n, s);
        cap_place(n, dst, dst_slot);
    }
    kunlock(k);
    return 0;
}

int rtcr_task_unmap(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot, bool delete_obj)
{
    if (!k || !task)
        return -EINVAL;
    klock(k);
    int r = task_check(k, task);
    if (r == 0 && slot >= RTCR_CAP_SLOTS)
        r = -ERANGE;
    struct rtcr_cap *c = r == 0 ? task->u.task.slots[slot] : NULL;
    if (r == 0 && !c)
        r = -ENOENT;
    if (r == 0 && delete_obj && !(c->rights & RTCR_CAP_D))
        r = -EPERM;
    if (r < 0) {
        kunlock(k);
        return r;
    }
    rtcr_kobj_t *obj = c->obj;
    obj_get(obj); /* keep it across the revocation */
    cap_revoke(c);
    /* unmap first, then delete: a stale capability is simply removed */
    if (delete_obj && !obj->deleted)
        obj_teardown(obj);
    obj_put(obj);
    kunlock(k);
    return 0;
}

int rtcr_task_cap_valid(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot)
{
    if (!k || !task)
        return -EINVAL;
    klock(k);
    int r = task_check(k, task);
    if (r == 0 && slot >= RTCR_CAP_SLOTS)
        r = -ERANGE;
    if (r == 0) {
        struct rtcr_cap *c = task->u.task.slots[slot];
        r = c && !c->obj->deleted ? 1 : 0;
    }
    kunlock(k);
    return r;
}

int rtcr_task_alloc_slot(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned *ret_slot)
{
    if (!k || !task || !ret_slot)
        return -EINVAL;
    klock(k);
    int r = task_check(k, task);
    if (r == 0) {
        r = -ENOSPC;
        for (unsigned s = RTCR_USER_BASE_CAP; s < RTCR_CAP_SLOTS; s++) {
            if (!task->u.task.slots[s]) {
                *ret_slot = s;
                r = 0;
                break;
            }
        }
    }
    kunlock(k);
    return r;
}

int rtcr_task_lookup(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot, rtcr_kobj_t **ret_obj,
                     unsigned *ret_rights)
{
    if (!k || !task)
        return -EINVAL;
    klock(k);
    struct rtcr_cap *c = NULL;
    int r = task_check(k, task);
    if (r == 0)
        r = cap_resolve(task, slot, &c);
    if (r == 0) {
        if (ret_obj) {
            obj_get(c->obj);
            *ret_obj = c->obj;
        }
        if (ret_rights)
            *ret_rights = c->rights;
    }
    kunlock(k);
    return r;
}

unsigned rtcr_task_used_slots(rtcr_kernel_t *k, rtcr_kobj_t *task)
{
    if (!k || !task)
        return 0;
    klock(k);
    unsigned n = task_check(k, task) == 0 ? task->u.task.used : 0;
    kunlock(k);
    return n;
}

/* ---- thread area ------------------------------------------------------------------------ */

int rtcr_thread_index(const rtcr_kobj_t *thread)
{
    if (!thread || thread->type != RTCR_KOBJ_THREAD)
        return -EINVAL;
    klock(thread->k);
    int i = thread->u.thread.index;
    kunlock(thread->k);
    return i >= 0 ? i : -ENOENT;
}

void thread_unbind(rtcr_kobj_t *th)
{
    struct thread_body *b = &th->u.thread;
    if (b->index < 0)
        return;
    rtcr_kobj_t *task = b->task;
    for (unsigned off = 0; off < RTCR_THREAD_AREA_SLOT; off++) {
        rtcr_kobj_t *o = b->area_obj[off];
        struct rtcr_cap *c =
            task->u.task.slots ? task->u.task.slots[RTCR_THREAD_SLOT(b->index, off)] : NULL;
        if (c && c->obj == o)
            cap_revoke(c);
        if (!o->deleted)
            obj_teardown(o);
        obj_put(o);
        b->area_obj[off] = NULL;
    }
    task->u.task.area[b->index] = NULL;
    b->index = -1;
}

static bool index_free(rtcr_kobj_t *task, unsigned i)
{
    if (task->u.task.area[i])
        return false;
    for (unsigned off = 0; off < RTCR_THREAD_AREA_SLOT; off++)
        if (task->u.task.slots[RTCR_THREAD_SLOT(i, off)])
            return false;
    return true;
}

static char *area_name(const char *what, const char *thread)
{
    char *s = NULL;
    if (asprintf(&s, "%s of thread '%s'", what, thread ? thread : "") < 0)
        return NULL;
    return s;
}

/* bind at `index`, or at the first free index when index < 0 */
static int bind_thread(rtcr_kernel_t *k, rtcr_kobj_t *task, rtcr_kobj_t *th, int index,
                       unsigned *ret_index)
{
    if (!k || !task || !th)
        return -EINVAL;
    if (index >= RTCR_THREAD_MAX)
        return -ERANGE;

    /* everything that can fail for lack of memory is prepared before the lock is taken */
    rtcr_kobj_t *obj[RTCR_THREAD_AREA_SLOT] = {
        obj_alloc(k, RTCR_KOBJ_GATE), obj_alloc(k, RTCR_KOBJ_GATE), obj_alloc(k, RTCR_KOBJ_IRQ)};
    struct rtcr_cap *cap[RTCR_THREAD_AREA_SLOT];
    for (unsigned i = 0; i < RTCR_THREAD_AREA_SLOT; i++)
        cap[i] = calloc(1, sizeof(*cap[i]));
    rtcr_badge_t badge[2] = {0, 0};
    int nbadges = 0;
    int r = 0;
    for (unsigned i = 0; i < RTCR_THREAD_AREA_SLOT; i++)
        if (!obj[i] || !cap[i])
            r = -ENOMEM;

    klock(k);
    if (r == 0)
        r = task_check(k, task);
    if (r == 0)
        r = obj_check(k, th, RTCR_KOBJ_THREAD);
    if (r == 0 && th->u.thread.task != task)
        r = -EINVAL;
    if (r == 0 && th->u.thread.index >= 0)
        r = -EALREADY;
    if (r == 0) {
        if (index >= 0) {
            if (!index_free(task, (unsigned)index))
                r = -EEXIST;
        } else {
            r = -EMLINK;
            for (unsigned i = 0; i < RTCR_THREAD_MAX; i++) {
                if (index_free(task, i)) {
                    index = (int)i;
                    r = 0;
                    break;
                }
            }
        }
    }
    for (; r == 0 && nbadges < 2; nbadges++)
        r = badge_alloc_locked(&k->badges, &badge[nbadges]);
    if (r < 0) {
        for (int i = 0; i < nbadges; i++)
            badge_free_locked(&k->badges, badge[i]);
        kunlock(k);
        for (unsigned i = 0; i < RTCR_THREAD_AREA_SLOT; i++) {
            obj_free_unlinked(obj[i]);
            free(cap[i]);
        }
        return r;
    }

    /* commit: nothing below can fail (names are best effort) */
    const char *what[RTCR_THREAD_AREA_SLOT] = {"gate", "pager", "lock irq"};
    struct thread_body *b = &th->u.thread;
    for (unsigned off = 0; off < RTCR_THREAD_AREA_SLOT; off++) {
        rtcr_kobj_t *o = obj[off];
        obj_link(o);
        o->name = area_name(what[off], th->name);
        if (off < 2) {
            o->u.gate.badge = badge[off];
            o->u.gate.owns_badge = true;
        }
        /* the creation reference becomes the thread's reference */
        b->area_obj[off] = o;
        cap[off]->obj = o;
        obj_get(o);
        cap[off]->rights = RTCR_CAP_RWS;
        cap_place(cap[off], task, RTCR_THREAD_SLOT(index, off));
    }
    /* the gate is bound to the thread (Rpc_cap_factory::alloc); the pager is core's pager
     * gate, which has no server thread in the emulation; the lock IRQ is attached to the
     * thread with label 0, as Platform_thread does */
    obj[RTCR_THREAD_GATE_OFF]->u.gate.thread = th;
    obj_get(th);
    irq_attach_locked(obj[RTCR_THREAD_IRQ_OFF], th, 0);
    b->index = index;
    task->u.task.area[index] = th;
    kunlock(k);
    if (ret_index)
        *ret_index = (unsigned)index;
    return 0;
}

int rtcr_task_bind_thread(rtcr_kernel_t *k, rtcr_kobj_t *task, rtcr_kobj_t *thread,
                          unsigned *ret_index)
{
    return bind_thread(k, task, thread, -1, ret_index);
}

int rtcr_task_bind_thread_at(rtcr_kernel_t *k, rtcr_kobj_t *task, rtcr_kobj_t *thread,
                             unsigned index)
{
    if (index >= RTCR_THREAD_MAX)
        return -ERANGE;
    return bind_thread(k, task, thread, (int)index, NULL);
}

/* ---- iteration and dump ----------------------------------------------------------------- */

int rtcr_task_foreach_cap(rtcr_kernel_t *k, rtcr_kobj_t *task,
                          int (*fn)(void *ctx, const rtcr_cap_info_t *cap), void *ctx)
{
    if (!k || !task || !fn)
        return -EINVAL;
    klock(k);
    int r = task_check(k, task);
    if (r < 0) {
        kunlock(k);
        return r;
    }
    unsigned n = task->u.task.used;
    rtcr_cap_info_t *info = calloc(n ? n : 1, sizeof(*info));
    char **names = calloc(n ? n : 1, sizeof(*names));
    if (!info || !names) {
        kunlock(k);
        free(info);
        free(names);
        return -ENOMEM;
    }
    unsigned i = 0;
    for (unsigned s = 0; s < RTCR_CAP_SLOTS && i < n; s++) {
        struct rtcr_cap *c = task->u.task.slots[s];
        if (!c)
            continue;
        rtcr_kobj_t *o = c->obj;
        if (o->name) {
            names[i] = strdup(o->name);
            if (!names[i]) {
                r = -ENOMEM;
                break;
            }
        }
        info[i] = (rtcr_cap_info_t){
            .slot = s,
            .type = o->type,
            .badge = o->type == RTCR_KOBJ_GATE ? o->u.gate.badge : RTCR_BADGE_INVALID,
            .rights = c->rights,
            .stale = o->deleted,
            .object_id = o->id,
            .object = o,
            .name = names[i],
        };
        obj_get(o);
        i++;
    }
    kunlock(k);

    for (unsigned j = 0; r == 0 && j < i; j++)
        r = fn(ctx, &info[j]);

    klock(k);
    for (unsigned j = 0; j < i; j++)
        obj_put(info[j].object);
    kunlock(k);
    for (unsigned j = 0; j < i; j++)
        free(names[j]);
    free(names);
    free(info);
    return r;
}

static int dump_line(void *ctx, const rtcr_cap_info_t *cap)
{
    FILE *out = ctx;
    char badge[16] = "-";
    char type[16];
    if (cap->badge != RTCR_BADGE_INVALID)
        snprintf(badge, sizeof(badge), "0x%05x", (unsigned)cap->badge);
    const char *tn = rtcr_kobj_type_name(cap->type);
    size_t i;
    for (i = 0; tn[i] && i + 1 < sizeof(type); i++)
        type[i] = (char)(tn[i] >= 'a' && tn[i] <= 'z' ? tn[i] - 'a' + 'A' : tn[i]);
    type[i] = '\0';
    fprintf(out, "0x%06x  %-7s  %-6s  %s%s\n", cap->slot, badge, type,
            cap->name && cap->name[0] ? cap->name : "-", cap->stale ? "  (deleted)" : "");
    return ferror(out) ? -EIO : 0;
}

int rtcr_task_dump(rtcr_kernel_t *k, rtcr_kobj_t *task, FILE *out)
{
    if (!out)
        return -EINVAL;
    return rtcr_task_foreach_cap(k, task, dump_line, out);
}

/* ---- capability transfer (IPC map items) ------------------------------------------------ */

int msg_check_size(const rtcr_msg_t *msg)
{
    if ((unsigned)msg->tag.words + 2u * msg->tag.items > RTCR_MSG_WORDS)
        return -EMSGSIZE;
    return 0;
}

void msg_copy(rtcr_msg_t *dst, const rtcr_msg_t *src)
{
    unsigned used = (unsigned)src->tag.words + 2u * src->tag.items;
    if (used > RTCR_MSG_WORDS)
        used = RTCR_MSG_WORDS;
    rtcr_msg_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.tag = src->tag;
    memcpy(tmp.mr, src->mr, used * sizeof(tmp.mr[0]));
    *dst = tmp;
}

int xfer_prepare(rtcr_kobj_t *src_task, const rtcr_msg_t *msg, unsigned rcv_count, struct xfer *x)
{
    int r = msg_check_size(msg);
    if (r < 0)
        return r;
    unsigned n = msg->tag.items, w = msg->tag.words;
    memset(x, 0, sizeof(*x));
    if (n == 0)
        return 0;
    if (n > rcv_count)
        return -EMSGSIZE;
    for (unsigned i = 0; i < n; i++) {
        uint64_t ctl = msg->mr[w + 2 * i], fp = msg->mr[w + 2 * i + 1];
        if (!(ctl & RTCR_ITEM_MAP) || (ctl & ~(uint64_t)(RTCR_ITEM_MAP | RTCR_MAP_GRANT)))
            return -EBADMSG;
        if (((fp >> 4) & 3) != 3 || ((fp >> 6) & 0x3f) != 0)
            return -EBADMSG; /* not an object flexpage of one slot */
        if ((fp >> RTCR_CAP_SHIFT) >= RTCR_CAP_SLOTS)
            return -ERANGE;
        struct rtcr_cap *c;
        r = cap_resolve(src_task, rtcr_fpage_slot(fp), &c);
        if (r < 0)
            return r;
        if (!(c->rights & RTCR_CAP_S))
            return -EPERM;
        x->src[i] = c;
        x->rights[i] = c->rights & rtcr_fpage_rights(fp);
        x->grant[i] = (ctl & RTCR_MAP_GRANT) != 0;
    }
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < n; j++)
            if (i != j && x->grant[i] && x->src[i] == x->src[j])
                return -EBADMSG; /* a granted capability cannot also be sent otherwise */
    for (unsigned i = 0; i < n; i++) {
        if (x->grant[i])
            continue;
        x->node[i] = calloc(1, sizeof(*x->node[i]));
        if (!x->node[i]) {
            x->n = n;
            xfer_abort(x);
            return -ENOMEM;
        }
    }
    x->n = n;
    x->words = w;
    return 0;
}

void xfer_abort(struct xfer *x)
{
    for (unsigned i = 0; i < x->n; i++) {
        free(x->node[i]);
        x->node[i] = NULL;
    }
    x->n = 0;
}

void xfer_commit(struct xfer *x, rtcr_kobj_t *dst_task, unsigned rcv_base, rtcr_msg_t *out)
{
    struct rtcr_cap *moved[MAX_ITEMS];
    /* 1. take every capability out of (grant) or derive it from (copy) its source */
    for (unsigned i = 0; i < x->n; i++) {
        struct rtcr_cap *s = x->src[i];
        if (x->grant[i]) {
            slot_clear(s);
            s->rights = x->rights[i];
            moved[i] = s;
        } else {
            struct rtcr_cap *c = x->node[i];
            x->node[i] = NULL;
            c->obj = s->obj;
            obj_get(c->obj);
            c->rights = x->rights[i];
            tree_link(c, s);
            moved[i] = c;
        }
    }
    /* 2. free the window; 3. place and tell the receiver where */
    for (unsigned i = 0; i < x->n; i++) {
        struct rtcr_cap *old = dst_task->u.task.slots[rcv_base + i];
        if (old)
            cap_release(old);
    }
    for (unsigned i = 0; i < x->n; i++) {
        cap_place(moved[i], dst_task, rcv_base + i);
        out->mr[x->words + 2 * i + 1] = rtcr_obj_fpage(rcv_base + i, x->rights[i]);
    }
    x->n = 0;
}
