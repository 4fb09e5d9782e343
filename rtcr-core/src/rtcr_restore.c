/* rtcr_restore.c — bringing a target back from its image, so that it continues.
 *
 * The algorithm (docs/checkpoint-restore.md):
 *   1. Check: the chain is complete and hash-checked up to the epoch, the binary has the
 *      build id the image names, the stored state is within limits, the quota suffices; the
 *      memory of every dataspace is materialised straight into the pool on all CPUs (every
 *      frame that reaches the result hash-checked, rtcr_image_materialize_into).
 *   2. Prepare a fresh incarnation (task with itself at 1 and the parent at 8, core thread,
 *      main thread) without starting the process.
 *   3. Recreate, in creation order: threads at their old thread-area indices (gate, pager,
 *      lock IRQ at 9 + 3i, new badges), sessions with their creation/upgrade args and quota,
 *      dataspaces with their content, signal sources (attached to their entrypoint) and
 *      contexts with pending signals, local RPC objects bound to their entrypoint, timers
 *      re-armed with their remaining time, IRQ sessions with their ack state; then the
 *      references between them (attachments, signal handlers) through the old -> new badge
 *      table. Every object gets a NEW badge from this ECU's allocator, so a restore never
 *      collides with badges in use here (by other targets or an earlier incarnation).
 *   4. Install every capability at its old slot with its old rights, and rewrite the badges in
 *      the component's cap map and object pool (rtcr/croot.h) to the new ones.
 *   5. Start the process in restore mode: it maps its regions, restarts its entrypoints idle
 *      and reports back; construct is not run.
 * Any failure tears the half-made incarnation down; the image is only read, never changed.
 *
 * The hot standby (rtcr_standby.c): when the target keeps one and it holds exactly the epoch
 * restored (the newest, with the same METADATA section), step 1 does not materialise: the
 * standby's memfd becomes the new pool (through the kept-pool slot that make_pool adopts),
 * its extents are reserved before anything is allocated, and each RAM dataspace is recreated
 * on its extent (pool_claim), content already in place; ROM modules go to free space, which
 * is zero. All checks of step 1 except the frame hashes still run: no frame is read, because
 * the standby was written from the very staged bytes the frames were compressed and hashed
 * from, so a frame hash could only find damage in the image's copy, which this path does
 * not use (the fallback, replicas, loading and compaction check it whenever it is used). If
 * the standby does not fit what the restorer builds (layout, size, the pool is not its memfd)
 * the attempt is torn down and the restore runs again on the decoding path.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <rtcr/croot.h>
#include <rtcr/image.h>

#include "ecu_internal.h"

#define MAX_SESSIONS 4096 /* sessions in one stored state */

struct bmap {
    uint32_t old_badge; /* badge in the image */
    struct obj *obj;    /* the recreated record */
};

struct plan {
    struct rtcr_target *t;        /* target */
    uint64_t epoch;               /* epoch restored */
    struct bmap *map;             /* old -> new */
    size_t n, cap;                /* entries */
    char *err;                    /* message buffer */
    size_t errsz;                 /* its size */
    const struct standby_ext *sb; /* restoring from the standby: its layout, else NULL */
    size_t sb_n;                  /* entries of sb */
    bool sb_adopted;              /* the new pool is the standby's memfd (teardown zeroes it) */
};

/* The standby cannot be used as it is: the restore starts over on the decoding path. */
#define ERR_STANDBY_MISMATCH (-EREMCHG)

static int fail(struct plan *p, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct plan *p, int r, const char *fmt, ...)
{
    if (p->err && p->errsz) {
        int n = snprintf(p->err, p->errsz, "restore of '%s' from epoch %" PRIu64 ": ", p->t->name,
                         p->epoch);
        if (n >= 0 && (size_t)n < p->errsz) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errsz - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return r;
}

static int map_put(struct plan *p, uint32_t old_badge, struct obj *o)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->map[i].old_badge == old_badge)
            return fail(p, -EBADMSG, "badge %#x appears twice in the stored state", old_badge);
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 64;
        struct bmap *m = realloc(p->map, ncap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        p->map = m;
        p->cap = ncap;
    }
    p->map[p->n++] = (struct bmap){old_badge, o};
    return 0;
}

static struct obj *map_get(struct plan *p, uint32_t old_badge, enum obj_kind kind)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->map[i].old_badge == old_badge)
            return p->map[i].obj->kind == kind ? p->map[i].obj : NULL;
    return NULL;
}

static uint32_t map_badge(struct plan *p, uint32_t old_badge)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->map[i].old_badge == old_badge)
            return p->map[i].obj->badge;
    return 0;
}

/* ---- checks --------------------------------------------------------------------------------- */

static const RtcrImg__Session *find_type(const RtcrImg__StoredState *st, RtcrImg__SessionType ty)
{
    for (size_t i = 0; i < st->n_sessions; i++)
        if (st->sessions[i]->type == ty)
            return st->sessions[i];
    return NULL;
}

static enum rtcr_service service_of(RtcrImg__SessionType ty)
{
    switch (ty) {
    case RTCR_IMG__SESSION_TYPE__SESSION_PD:
        return RTCR_SVC_PD;
    case RTCR_IMG__SESSION_TYPE__SESSION_CPU:
        return RTCR_SVC_CPU;
    case RTCR_IMG__SESSION_TYPE__SESSION_RAM:
        return RTCR_SVC_RAM;
    case RTCR_IMG__SESSION_TYPE__SESSION_RM:
        return RTCR_SVC_RM;
    case RTCR_IMG__SESSION_TYPE__SESSION_ROM:
        return RTCR_SVC_ROM;
    case RTCR_IMG__SESSION_TYPE__SESSION_LOG:
        return RTCR_SVC_LOG;
    case RTCR_IMG__SESSION_TYPE__SESSION_TIMER:
        return RTCR_SVC_TIMER;
    case RTCR_IMG__SESSION_TYPE__SESSION_IRQ:
        return RTCR_SVC_IRQ;
    default:
        return RTCR_SVC_MAX;
    }
}

/* Validate the stored state before anything is created: types, limits, quota, references. */
static int check_state(struct plan *p, const RtcrImg__StoredState *st)
{
    struct rtcr_target *t = p->t;
    size_t ram = 0;
    if (st->n_sessions == 0 || st->n_sessions > MAX_SESSIONS || !st->cap_space)
        return fail(p, -EBADMSG, "stored state has %zu sessions and %s cap space", st->n_sessions,
                    st->cap_space ? "a" : "no");
    if (!find_type(st, RTCR_IMG__SESSION_TYPE__SESSION_PD) ||
        !find_type(st, RTCR_IMG__SESSION_TYPE__SESSION_RAM) ||
        !find_type(st, RTCR_IMG__SESSION_TYPE__SESSION_RM) ||
        !find_type(st, RTCR_IMG__SESSION_TYPE__SESSION_CPU))
        return fail(p, -EBADMSG, "stored state lacks one of the PD, RAM, RM and CPU sessions");
    for (size_t i = 0; i < st->n_sessions; i++) {
        const RtcrImg__Session *s = st->sessions[i];
        if (service_of(s->type) == RTCR_SVC_MAX)
            return fail(p, -EBADMSG, "session %zu has unknown type %d", i, s->type);
        if (strlen(s->creation_args) > RTCR_SESSION_ARGS_MAX ||
            strlen(s->upgrade_args) > RTCR_SESSION_ARGS_MAX)
            return fail(p, -EBADMSG, "session %#x: args too long", s->badge);
        ram += s->ram_quota;
        if (s->state_case == RTCR_IMG__SESSION__STATE_RAM)
            for (size_t k = 0; k < s->ram->n_dataspaces; k++) {
                const RtcrImg__Dataspace *d = s->ram->dataspaces[k];
                if (d->size == 0 || d->size % 4096 || d->size > RTCR_IMAGE_MAX_DATASPACE)
                    return fail(p, -EBADMSG, "dataspace %#x has size %" PRIu64, d->badge, d->size);
                ram += d->size;
            }
        if (s->state_case == RTCR_IMG__SESSION__STATE_CPU)
            for (size_t k = 0; k < s->cpu->n_threads; k++)
                if (s->cpu->threads[k]->index >= RTCR_THREAD_MAX)
                    return fail(p, -EBADMSG, "thread index %u out of range",
                                s->cpu->threads[k]->index);
        if (s->state_case == RTCR_IMG__SESSION__STATE_IRQ && s->irq->line >= RTCR_IRQ_LINES)
            return fail(p, -EBADMSG, "IRQ session on line %u", s->irq->line);
    }
    if (ram > t->ram_quota)
        return fail(p, -EDQUOT, "needs %zu bytes of RAM, the quota of '%s' here is %zu", ram,
                    t->name, t->ram_quota);
    if (st->cap_space->n_entries > t->cap_limit)
        return fail(p, -EDQUOT, "holds %zu capabilities, the limit here is %u",
                    st->cap_space->n_entries, t->cap_limit);
    for (size_t i = 0; i < st->cap_space->n_entries; i++)
        if (st->cap_space->entries[i]->slot >= RTCR_CAP_SLOTS || !st->cap_space->entries[i]->object)
            return fail(p, -EBADMSG, "cap entry %zu: slot %u", i, st->cap_space->entries[i]->slot);
    return 0;
}

/* ---- recreation ---------------------------------------------------------------------------- */

static int make_threads(struct plan *p, const RtcrImg__CpuSession *cpu)
{
    struct rtcr_target *t = p->t;
    rtcr_kernel_t *k = t->ecu->kernel;
    for (size_t i = 0; i < cpu->n_threads; i++) {
        const RtcrImg__Thread *th = cpu->threads[i];
        unsigned idx = th->index;
        if (idx == 0) { /* the main thread exists already */
            snprintf(t->threads[0].name, sizeof(t->threads[0].name), "%s", th->name);
            continue;
        }
        if (t->threads[idx].kthread)
            return fail(p, -EBADMSG, "thread index %u appears twice", idx);
        char full[96];
        snprintf(full, sizeof(full), "%.48s:%.31s", t->name, th->name);
        rtcr_kobj_t *kt;
        int r = rtcr_thread_create(k, t->task, full, &kt);
        if (r >= 0 && (r = rtcr_task_bind_thread_at(k, t->task, kt, idx)) < 0) {
            rtcr_kobj_delete(k, kt);
            rtcr_kobj_unref(&kt);
        }
        if (r < 0)
            return fail(p, r, "thread %u ('%s') not recreated: %s", idx, th->name, strerror(-r));
        t->threads[idx].kthread = kt;
        snprintf(t->threads[idx].name, sizeof(t->threads[idx].name), "%s", th->name);
        if ((r = target_mirror_start(t, idx)) < 0)
            return fail(p, r, "thread %u: mirror: %s", idx, strerror(-r));
    }
    return 0;
}

static int make_pd(struct plan *p, struct session *s, const RtcrImg__PdSession *pd)
{
    struct rtcr_target *t = p->t;
    rtcr_kernel_t *k = t->ecu->kernel;
    int r;
    s->u.pd.next_source_id = 1;
    for (size_t i = 0; i < pd->n_signal_sources; i++) {
        const RtcrImg__SignalSource *x = pd->signal_sources[i];
        if (x->ep_thread >= RTCR_THREAD_MAX || !t->threads[x->ep_thread].kthread)
            return fail(p, -EBADMSG, "signal source %u names missing thread %u", x->badge,
                        x->ep_thread);
        struct sigsrc *src = calloc(1, sizeof(*src));
        if (!src)
            return -ENOMEM;
        src->id = x->badge;
        src->ep_index = x->ep_thread;
        src->next = s->u.pd.sources;
        s->u.pd.sources = src;
        if ((r = rtcr_irq_create(k, &src->irq)) < 0 ||
            (r = rtcr_irq_attach(k, src->irq, src->id, t->threads[x->ep_thread].kthread)) < 0)
            return fail(p, r, "signal source %u: %s", x->badge, strerror(-r));
        char name[64];
        snprintf(name, sizeof(name), "signal source %" PRIu64 " of ep %u", src->id, src->ep_index);
        rtcr_kobj_set_name(src->irq, name);
        if (src->id >= s->u.pd.next_source_id)
            s->u.pd.next_source_id = src->id + 1;
    }
    for (size_t i = 0; i < pd->n_signal_contexts; i++) {
        const RtcrImg__SignalContext *x = pd->signal_contexts[i];
        struct sigsrc *src = s->u.pd.sources;
        while (src && src->id != x->source_badge)
            src = src->next;
        if (!src)
            return fail(p, -EBADMSG, "signal context %#x names missing source %u", x->badge,
                        x->source_badge);
        struct sigctx *c = calloc(1, sizeof(*c));
        if (!c)
            return -ENOMEM;
        char name[64];
        snprintf(name, sizeof(name), "signal context %#" PRIx64, x->imprint);
        if ((r = svc_obj_init(t, &c->o, OBJ_SIGCTX, name)) < 0) {
            free(c);
            return r;
        }
        c->source_id = x->source_badge;
        c->imprint = x->imprint;
        c->next = s->u.pd.contexts;
        s->u.pd.contexts = c;
        if ((r = map_put(p, x->badge, &c->o)) < 0)
            return r;
        if (x->pending) { /* queue again; the source IRQ is re-triggered below */
            c->pending = x->pending;
            c->queued = true;
            struct sigctx **pp = &src->queue;
            while (*pp)
                pp = &(*pp)->qnext;
            *pp = c;
        }
    }
    for (size_t i = 0; i < pd->n_native_caps; i++) {
        const RtcrImg__NativeCap *x = pd->native_caps[i];
        if (x->ep_thread >= RTCR_THREAD_MAX || !t->threads[x->ep_thread].kthread)
            return fail(p, -EBADMSG, "RPC object %#x names missing thread %u", x->badge,
                        x->ep_thread);
        struct rpcobj *ro = calloc(1, sizeof(*ro));
        if (!ro)
            return -ENOMEM;
        char name[64];
        snprintf(name, sizeof(name), "RPC object of ep %u", x->ep_thread);
        if ((r = svc_obj_init_on(t, &ro->o, OBJ_RPC, name, t->threads[x->ep_thread].kthread)) < 0) {
            free(ro);
            return fail(p, r, "RPC object %#x: %s", x->badge, strerror(-r));
        }
        ro->ep_index = x->ep_thread;
        ro->next = s->u.pd.rpcs;
        s->u.pd.rpcs = ro;
        if ((r = map_put(p, x->badge, &ro->o)) < 0)
            return r;
    }
    if (pd->cap_space_info && pd->cap_space_info->cap_map) {
        uint64_t a = pd->cap_space_info->cap_map->addr;
        if (a < RTCR_AS_BASE + offsetof(struct rtcr_croot, capmap))
            return fail(p, -EBADMSG, "cap map at %#" PRIx64 " outside the address space", a);
        s->u.pd.root_addr = a - offsetof(struct rtcr_croot, capmap);
        s->u.pd.root_size = sizeof(struct rtcr_croot);
    }
    return 0;
}

static int make_ram(struct plan *p, struct session *s, const RtcrImg__RamSession *ram)
{
    struct rtcr_target *t = p->t;
    for (size_t i = 0; i < ram->n_dataspaces; i++) {
        const RtcrImg__Dataspace *d = ram->dataspaces[i];
        struct dataspace *ds;
        const struct standby_ext *x = NULL;
        for (size_t k = 0; p->sb && k < p->sb_n && !x; k++)
            if (p->sb[k].badge == d->badge)
                x = &p->sb[k];
        if (p->sb && (!x || x->size != d->size))
            return fail(p, ERR_STANDBY_MISMATCH, "the standby lacks dataspace %#x", d->badge);
        int r = svc_charge(t, d->size, "RAM dataspace");
        if (r < 0)
            return fail(p, r, "RAM quota exhausted at dataspace %#x", d->badge);
        /* from the standby: created on its reserved extent, where its content is */
        t->pool_claim = x != NULL;
        t->pool_claim_off = x ? x->off : 0;
        r = svc_ds_new(t, d->size, false, "RAM", &ds);
        t->pool_claim = false;
        if (r < 0) {
            svc_uncharge(t, d->size);
            if (x)
                return fail(p, ERR_STANDBY_MISMATCH, "dataspace %#x not on its standby extent",
                            d->badge);
            return fail(p, r, "dataspace %#x (%" PRIu64 " bytes): %s", d->badge, d->size,
                        strerror(-r));
        }
        ds->next = s->u.ram.dss;
        s->u.ram.dss = ds;
        s->u.ram.used += ds->size;
        if ((r = map_put(p, d->badge, &ds->o)) < 0)
            return r;
    }
    return 0;
}

static int make_rom(struct plan *p, struct session *s, const RtcrImg__RomSession *rom)
{
    struct rtcr_target *t = p->t;
    const char *path = svc_rom_path(t, rom->module);
    if (!path)
        return fail(p, -ENOENT, "ROM module '%s' is not configured here", rom->module);
    struct dataspace *ds;
    size_t len;
    int r = svc_rom_load(t, path, rom->module, &ds, &len);
    if (r < 0)
        return fail(p, r, "ROM module '%s' (%s): %s", rom->module, path, strerror(-r));
    s->u.rom.ds = ds;
    s->u.rom.length = len;
    snprintf(s->u.rom.module, sizeof(s->u.rom.module), "%s", rom->module);
    if (len != rom->length || XXH3_64bits(t->pool + ds->pool_off, len) != rom->content_hash)
        return fail(p, -ESTALE, "ROM module '%s' differs from the one the image was taken with",
                    rom->module);
    return map_put(p, rom->ds_badge, &ds->o);
}

static int make_session(struct plan *p, const RtcrImg__Session *ps, struct session **ret)
{
    struct rtcr_target *t = p->t;
    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->type = service_of(ps->type);
    snprintf(s->args, sizeof(s->args), "%s", ps->creation_args);
    snprintf(s->upgrade, sizeof(s->upgrade), "%s", ps->upgrade_args);
    int r = svc_charge(t, ps->ram_quota, "session");
    if (r < 0) {
        free(s);
        return fail(p, r, "session %#x: quota", ps->badge);
    }
    s->quota = ps->ram_quota;
    char name[128];
    switch (ps->state_case) {
    case RTCR_IMG__SESSION__STATE_LOG:
        snprintf(s->u.log.label, sizeof(s->u.log.label), "%s", ps->log->label);
        snprintf(name, sizeof(name), "LOG session '%s'", s->u.log.label);
        break;
    case RTCR_IMG__SESSION__STATE_IRQ:
        snprintf(name, sizeof(name), "IRQ session line %u", ps->irq->line);
        break;
    case RTCR_IMG__SESSION__STATE_ROM:
        snprintf(name, sizeof(name), "ROM session '%s'", ps->rom->module);
        break;
    default: {
        static const char *const n[RTCR_SVC_MAX] = {"PD",  "CPU", "RAM",   "RM",
                                                    "ROM", "LOG", "Timer", "IRQ"};
        snprintf(name, sizeof(name), "%s session '%s'", n[s->type], t->name);
    }
    }
    if ((r = svc_obj_init(t, &s->o, OBJ_SESSION, name)) < 0) {
        svc_uncharge(t, s->quota);
        free(s);
        return r;
    }
    s->o.bootstrapped = ps->bootstrapped;
    /* linked first, so that a failure below frees it with everything else */
    s->next = t->sessions;
    t->sessions = s;
    if ((r = map_put(p, ps->badge, &s->o)) < 0)
        return r;
    switch (ps->state_case) {
    case RTCR_IMG__SESSION__STATE_PD:
        r = make_pd(p, s, ps->pd);
        break;
    case RTCR_IMG__SESSION__STATE_RAM:
        r = make_ram(p, s, ps->ram);
        break;
    case RTCR_IMG__SESSION__STATE_ROM:
        r = make_rom(p, s, ps->rom);
        break;
    case RTCR_IMG__SESSION__STATE_TIMER: {
        const RtcrImg__TimerSession *x = ps->timer;
        /* the session clock runs on from where it was, never backwards */
        s->u.timer.epoch_usec = now_usec() - x->elapsed_usec;
        s->u.timer.period_usec = x->periodic ? x->period_usec : 0;
        if (x->armed)
            s->u.timer.deadline_usec = now_usec() + (x->remaining_usec ? x->remaining_usec : 1);
        break;
    }
    case RTCR_IMG__SESSION__STATE_IRQ:
        s->u.irq.line = ps->irq->line;
        s->u.irq.unmasked = ps->irq->ack_state == RTCR_IMG__IRQ_ACK_STATE__IRQ_ACKED;
        s->u.irq.pending = ps->irq->pending;
        s->u.irq.count = ps->irq->count;
        break;
    default:
        break;
    }
    *ret = s;
    return r;
}

/* Second pass: references between records, now that all exist. */
static int link_session(struct plan *p, struct session *s, const RtcrImg__Session *ps)
{
    switch (ps->state_case) {
    case RTCR_IMG__SESSION__STATE_RM:
        for (size_t m = 0; m < ps->rm->n_region_maps; m++) {
            const RtcrImg__RegionMap *rm = ps->rm->region_maps[m];
            struct attachment **tail = &s->u.rm.atts;
            for (size_t i = 0; i < rm->n_attachments; i++) {
                const RtcrImg__Attachment *x = rm->attachments[i];
                struct dataspace *ds = (struct dataspace *)map_get(p, x->ds_badge, OBJ_DATASPACE);
                if (!ds || x->offset > ds->size || x->size > ds->size - x->offset ||
                    x->addr < RTCR_AS_BASE || x->addr - RTCR_AS_BASE > RTCR_AS_SIZE - x->size ||
                    x->addr % 4096 || x->size == 0)
                    return fail(p, -EBADMSG, "attachment at %#" PRIx64 " of dataspace %#x invalid",
                                x->addr, x->ds_badge);
                struct attachment *a = calloc(1, sizeof(*a));
                if (!a)
                    return -ENOMEM;
                a->ds_badge = ds->o.badge;
                a->addr = x->addr;
                a->size = x->size;
                a->offset = x->offset;
                a->flags =
                    (x->writable ? RTCR_RM_WRITABLE : 0) | (x->executable ? RTCR_RM_EXECUTABLE : 0);
                if (ds->readonly && x->writable) {
                    free(a);
                    return fail(p, -EBADMSG, "writable attachment of read-only dataspace %#x",
                                x->ds_badge);
                }
                ds->attach_count++;
                *tail = a; /* stored in ascending order */
                tail = &a->next;
            }
        }
        return 0;
    case RTCR_IMG__SESSION__STATE_TIMER:
        if (ps->timer->sigh_badge && !(s->u.timer.sigh = map_badge(p, ps->timer->sigh_badge)))
            return fail(p, -EBADMSG, "timer signal handler %#x missing", ps->timer->sigh_badge);
        return 0;
    case RTCR_IMG__SESSION__STATE_IRQ:
        if (ps->irq->sigh_badge && !(s->u.irq.sigh = map_badge(p, ps->irq->sigh_badge)))
            return fail(p, -EBADMSG, "IRQ signal handler %#x missing", ps->irq->sigh_badge);
        return 0;
    default:
        return 0;
    }
}

/* Install the capabilities at their old slots. */
static int install_caps(struct plan *p, const RtcrImg__CapSpace *cs, struct session *pd)
{
    struct rtcr_target *t = p->t;
    rtcr_kernel_t *k = t->ecu->kernel;
    for (size_t i = 0; i < cs->n_entries; i++) {
        const RtcrImg__CapEntry *e = cs->entries[i];
        const RtcrImg__ObjectRef *ref = e->object;
        rtcr_kobj_t *obj = NULL;
        unsigned canonical = RTCR_CAP_SLOTS;
        switch (ref->role) {
        case RTCR_IMG__OBJ_ROLE__ROLE_TASK:
            obj = t->task;
            canonical = RTCR_TASK_CAP;
            break;
        case RTCR_IMG__OBJ_ROLE__ROLE_PARENT:
            obj = t->parent->gate;
            canonical = RTCR_PARENT_CAP;
            break;
        case RTCR_IMG__OBJ_ROLE__ROLE_THREAD_GATE:
        case RTCR_IMG__OBJ_ROLE__ROLE_THREAD_PAGER:
        case RTCR_IMG__OBJ_ROLE__ROLE_THREAD_IRQ: {
            unsigned off = ref->role == RTCR_IMG__OBJ_ROLE__ROLE_THREAD_GATE ? RTCR_THREAD_GATE_OFF
                           : ref->role == RTCR_IMG__OBJ_ROLE__ROLE_THREAD_PAGER
                               ? RTCR_THREAD_PAGER_OFF
                               : RTCR_THREAD_IRQ_OFF;
            if (ref->thread_index >= RTCR_THREAD_MAX || !t->threads[ref->thread_index].kthread)
                return fail(p, -EBADMSG, "slot %#x names missing thread %u", e->slot,
                            ref->thread_index);
            canonical = RTCR_THREAD_SLOT(ref->thread_index, off);
            break;
        }
        case RTCR_IMG__OBJ_ROLE__ROLE_RPC_OBJECT: {
            uint32_t nb = map_badge(p, ref->badge);
            struct obj *o = NULL;
            for (size_t j = 0; j < p->n && !o; j++)
                if (p->map[j].old_badge == ref->badge)
                    o = p->map[j].obj;
            if (!nb || !o)
                return fail(p, -EBADMSG, "slot %#x names object %#x that the image lacks", e->slot,
                            ref->badge);
            obj = o->gate;
            break;
        }
        case RTCR_IMG__OBJ_ROLE__ROLE_SIGNAL_SOURCE: {
            struct sigsrc *src = pd->u.pd.sources;
            while (src && src->id != ref->badge)
                src = src->next;
            if (!src)
                return fail(p, -EBADMSG, "slot %#x names missing signal source %u", e->slot,
                            ref->badge);
            obj = src->irq;
            break;
        }
        default:
            return fail(p, -EBADMSG, "slot %#x has object role %d", e->slot, ref->role);
        }
        if (canonical != RTCR_CAP_SLOTS) {
            /* made with the task/thread: it must be where the image says, with that type */
            rtcr_kobj_t *have;
            unsigned rights;
            int r = rtcr_task_lookup(k, t->task, canonical, &have, &rights);
            if (r < 0)
                return fail(p, r, "slot %#x missing after recreation", canonical);
            bool same_type = (int)rtcr_kobj_type_of(have) == (int)e->type;
            if (e->slot == canonical) {
                rtcr_kobj_unref(&have);
                if (!same_type)
                    return fail(p, -EBADMSG, "slot %#x has another type than stored", e->slot);
                continue;
            }
            obj = have; /* a copy of a thread-area capability elsewhere */
            r = rtcr_task_install(k, t->task, e->slot, obj, e->rights & RTCR_CAP_ALL);
            rtcr_kobj_unref(&have);
            if (r < 0)
                return fail(p, r, "slot %#x: %s", e->slot, strerror(-r));
            continue;
        }
        if ((int)rtcr_kobj_type_of(obj) != (int)e->type)
            return fail(p, -EBADMSG, "slot %#x: stored type %d, object is %s", e->slot, e->type,
                        rtcr_kobj_type_name(rtcr_kobj_type_of(obj)));
        int r = rtcr_task_install(k, t->task, e->slot, obj, e->rights & RTCR_CAP_ALL);
        if (r < 0)
            return fail(p, r, "capability at slot %#x not installed: %s", e->slot, strerror(-r));
    }
    return 0;
}

/* Does `slot` of the restored task hold the IRQ of the PD's signal source `id`? The cap map
 * entry of a signal source's slot is its source id (what PD alloc_signal_source returns and
 * the IRQ's label), not a badge: source ids survive a restore unchanged, and they are small
 * numbers that an old badge may equal, so the slot's object decides, not the value. */
static bool slot_holds_source(struct plan *p, struct session *pd, unsigned slot, uint32_t id)
{
    rtcr_kernel_t *k = p->t->ecu->kernel;
    rtcr_kobj_t *o;
    unsigned rights;
    if (id >= pd->u.pd.next_source_id || rtcr_task_lookup(k, p->t->task, slot, &o, &rights) < 0)
        return false;
    bool found = false;
    for (struct sigsrc *src = pd->u.pd.sources; src && !found; src = src->next)
        found = src->irq == o && src->id == id;
    rtcr_kobj_unref(&o);
    return found;
}

/* Rewrite the badges in the component's cap map and object pool. Signal source slots keep
 * their source id: were it cleared, the component would take the slot as free, reuse it as
 * a receive window and so replace the entrypoint's source IRQ, which then stays masked. */
static int rewrite_root(struct plan *p, struct session *pd)
{
    struct rtcr_target *t = p->t;
    uint64_t root = pd->u.pd.root_addr;
    if (!root)
        return fail(p, -EBADMSG, "the component never reported its cap map");
    struct dataspace *ds = NULL;
    uint64_t off = 0;
    for (struct session *s = t->sessions; s && !ds; s = s->next)
        if (s->type == RTCR_SVC_RM)
            for (struct attachment *a = s->u.rm.atts; a; a = a->next)
                if (root >= a->addr && root + sizeof(struct rtcr_croot) <= a->addr + a->size) {
                    ds = (struct dataspace *)map_get(p, 0, OBJ_DATASPACE);
                    for (struct obj **o = t->objtab; o < t->objtab + t->objtab_cap; o++)
                        if (*o && (*o)->badge == a->ds_badge)
                            ds = (struct dataspace *)*o;
                    off = a->offset + (root - a->addr);
                    break;
                }
    if (!ds)
        return fail(p, -EBADMSG, "cap map at %#" PRIx64 " is not in an attached dataspace", root);
    struct rtcr_croot *cr = (struct rtcr_croot *)(t->pool + ds->pool_off + off);
    if (cr->magic != RTCR_CROOT_MAGIC || cr->version != RTCR_CROOT_VERSION)
        return fail(p, -EBADMSG, "no component root at %#" PRIx64, root);
    for (unsigned slot = 0; slot < RTCR_CAP_SLOTS; slot++) {
        uint32_t b = cr->capmap[slot];
        if (b == 0)
            continue;
        if (b != RTCR_CAPMAP_RESERVED && slot_holds_source(p, pd, slot, b))
            continue;
        /* a receive window left reserved, or a capability of an object that is gone */
        cr->capmap[slot] = b == RTCR_CAPMAP_RESERVED ? 0 : map_badge(p, b);
    }
    for (unsigned i = 0; i < RTCR_POOL_MAX; i++) {
        struct rtcr_pool_entry *e = &cr->pool[i];
        if (e->magic != RTCR_POOL_ENTRY_MAGIC)
            continue;
        uint32_t nb = map_badge(p, e->badge);
        if (!nb)
            return fail(p, -EBADMSG, "object pool entry %u names unknown badge %#x", i, e->badge);
        e->badge = nb;
    }
    return 0;
}

/* Where the image's content of dataspace `badge` goes: straight into its new place in the
 * pool (unallocated extents are zero, as materialisation requires). Not pre-faulted: pages
 * the kept pool lacks are faulted in by the decoding threads, in parallel, which measured
 * faster than one MADV_POPULATE_WRITE before decoding (and costs nothing on a kept pool). */
static int ds_dest(void *opaque, uint32_t badge, uint64_t size, void **ret_dst)
{
    struct plan *p = opaque;
    struct dataspace *ds = (struct dataspace *)map_get(p, badge, OBJ_DATASPACE);
    if (!ds || ds->readonly || ds->size != size)
        return fail(p, -EBADMSG, "image memory for dataspace %#x does not match its record", badge);
    *ret_dst = p->t->pool + ds->pool_off;
    return 0;
}

static int recreate(struct plan *p, const RtcrImg__StoredState *st)
{
    struct rtcr_target *t = p->t;
    rtcr_kernel_t *k = t->ecu->kernel;
    const RtcrImg__Session *cpu = find_type(st, RTCR_IMG__SESSION_TYPE__SESSION_CPU);
    int r = cpu->state_case == RTCR_IMG__SESSION__STATE_CPU ? make_threads(p, cpu->cpu) : 0;
    if (r < 0)
        return r;
    struct session **made = calloc(st->n_sessions, sizeof(*made));
    if (!made)
        return -ENOMEM;
    for (size_t i = 0; i < st->n_sessions && r >= 0; i++)
        r = make_session(p, st->sessions[i], &made[i]);
    for (size_t i = 0; i < st->n_sessions && r >= 0; i++)
        r = link_session(p, made[i], st->sessions[i]);
    struct session *pd = NULL;
    for (size_t i = 0; i < st->n_sessions && r >= 0; i++)
        if (made[i]->type == RTCR_SVC_PD)
            pd = made[i];
    free(made);
    if (r < 0)
        return r;
    rtcr_image_err_t ierr = {{0}};
    if (p->sb) { /* the memory is in place; every extent must belong to a dataspace now */
        if (target_pool_has_reserved(t))
            return fail(p, ERR_STANDBY_MISMATCH, "the standby holds a dataspace the epoch lacks");
    } else if ((r = rtcr_image_materialize_into(t->image, p->epoch, ds_dest, p, &ierr)) < 0) {
        return p->err && *p->err ? r : fail(p, r == -ENOMEM ? r : -EBADMSG, "memory: %s", ierr.msg);
    }
    if ((r = install_caps(p, st->cap_space, pd)) < 0)
        return r;
    if ((r = rewrite_root(p, pd)) < 0)
        return r;
    /* signal sources: a delivery the target had not taken yet is made again */
    for (struct sigsrc *src = pd->u.pd.sources; src; src = src->next)
        if ((r = rtcr_irq_set_state(k, src->irq, src->queue != NULL, false)) < 0)
            return fail(p, r, "signal source %" PRIu64 ": %s", src->id, strerror(-r));
    return 0;
}

/* Steps 2-5: a new incarnation from stored state `st`, its memory from the standby (p->sb,
 * whose memfd has inode `ino`) or from the image. On failure everything made is torn down. */
static int incarnate(struct plan *p, const RtcrImg__StoredState *st, uint64_t ino)
{
    struct rtcr_target *t = p->t;
    enum rtcr_target_state before = t->state;
    t->state = RTCR_TARGET_RESTORING;
    p->n = 0;
    int r = target_prepare(t);
    if (r < 0)
        fail(p, r, "new incarnation: %s", strerror(-r));
    if (r >= 0) {
        pthread_mutex_lock(&t->lock);
        struct stat pst;
        if (p->sb && (fstat(t->pool_fd, &pst) < 0 || (uint64_t)pst.st_ino != ino))
            r = fail(p, ERR_STANDBY_MISMATCH, "the pool is not the standby's memory");
        p->sb_adopted = p->sb && r >= 0;
        /* before anything is allocated: nothing else may land on the standby's content */
        for (size_t i = 0; p->sb && i < p->sb_n && r >= 0; i++)
            if ((r = target_pool_reserve(t, p->sb[i].off, p->sb[i].size)) < 0)
                r = fail(p, ERR_STANDBY_MISMATCH, "standby extent at %zu does not fit the pool",
                         p->sb[i].off);
        t->constructed = true; /* nothing made now is bootstrap */
        if (r >= 0)
            r = recreate(p, st);
        if (r == -ENOMEM)
            fail(p, r, "out of memory");
        pthread_mutex_unlock(&t->lock);
    }
    if (r >= 0 && (r = target_launch(t)) < 0)
        fail(p, r, "starting the process: %s", strerror(-r));
    if (r >= 0)
        ecu_timer_kick(t->ecu); /* the re-armed timers may be due before any other */
    free(p->map);
    p->map = NULL;
    p->n = p->cap = 0;
    if (r < 0) {
        target_teardown(t);
        t->state = before;
        return r;
    }
    return 0;
}

int rtcr_target_restore(rtcr_target_t *t, uint64_t epoch, char *err, size_t errsz)
{
    struct plan p = {.t = t, .epoch = epoch, .err = err, .errsz = errsz};
    rtcr_image_err_t ierr = {{0}};
    int r;
    if (err && errsz)
        err[0] = '\0';
    if (t->pid > 0)
        return fail(&p, -EBUSY, "target is running");
    if (!t->image || rtcr_image_count(t->image) == 0)
        return fail(&p, -ENOENT, "target '%s' has no image", t->name);
    if (!epoch)
        p.epoch = epoch = rtcr_image_last(t->image);
    const rtcr_epoch_t *e = rtcr_image_epoch(t->image, epoch);
    if (!e)
        return fail(&p, -ENOENT, "no such epoch (image holds %" PRIu64 "..%" PRIu64 ")",
                    rtcr_image_first(t->image), rtcr_image_last(t->image));
    if ((r = rtcr_image_check(t->image, &ierr)) < 0)
        return fail(&p, -EBADMSG, "image check failed: %s", ierr.msg);
    const RtcrImg__EpochHeader *h = rtcr_epoch_header(e);
    if (t->build_id_len <= 0 || h->build_id.len != (size_t)t->build_id_len ||
        memcmp(h->build_id.data, t->build_id, h->build_id.len) != 0)
        return fail(&p, -EXDEV, "binary %s is not the one the image was taken from (build id)",
                    t->binary);
    const RtcrImg__StoredState *st = rtcr_epoch_state(e);
    if ((r = check_state(&p, st)) < 0)
        return r;

    struct standby_ext *lay = NULL;
    uint64_t ino = 0;
    if (standby_take(t, epoch, &lay, &p.sb_n, &ino, NULL) == 0) {
        p.sb = lay;
        r = incarnate(&p, st, ino);
        free(lay);
        p.sb = NULL;
        p.sb_n = 0;
        if (r >= 0) {
            t->last_restore = RTCR_RESTORE_STANDBY;
            return 0;
        }
        /* whatever went wrong, the decoding path decides (and reports its own error); a
         * standby memfd that make_pool did not adopt must not be taken as zeroed memory */
        struct stat sst;
        pthread_mutex_lock(&t->lock);
        if (!p.sb_adopted && t->spare && fstat(t->spare_fd, &sst) == 0 &&
            (uint64_t)sst.st_ino == ino)
            target_spare_drop(t);
        pthread_mutex_unlock(&t->lock);
        if (err && errsz)
            err[0] = '\0';
    }
    r = incarnate(&p, st, 0);
    if (r >= 0)
        t->last_restore = RTCR_RESTORE_DECODE;
    return r;
}
