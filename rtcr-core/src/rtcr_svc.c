/* rtcr_svc.c — core's services for one target and the interception records behind them.
 *
 * Models Genode core's services (PD, CPU, RAM, RM, ROM, LOG, Timer, IRQ, signals) as seen
 * through RTCR's intercepting parent: every session, dataspace, signal context and local RPC
 * object handed to a target is an RPC object (an IPC gate with a fresh badge, bound to the
 * target's core thread) whose record keeps the online state needed to recreate it: creation
 * and upgrade args, whether it was made during bootstrap, and its per-type state.
 *
 * Capability arguments: a component names a capability it holds by its slot number; core
 * resolves the slot in the caller's own capability space (as the kernel resolves a map item),
 * so a target can only pass objects it really holds and cannot forge one. Capabilities that
 * core returns travel as granted map items from the core task into the caller's receive
 * window; their badges travel as words so the component can keep its cap map.
 *
 * Every handler validates the whole request first and only then changes state, so a refused
 * request leaves nothing behind. Refusals are reported to the agent as RTCR_EV_TARGET_DENIED
 * with a reason; the component gets the negative errno as the RPC result.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ecu_internal.h"

#define PAGE_SIZE_    4096u
#define SESSION_COST  4096u /* RAM quota a session must bring (its metadata in core) */
#define PAGE_ALIGN(x) (((x) + PAGE_SIZE_ - 1) & ~(size_t)(PAGE_SIZE_ - 1))

static const char *const service_names[RTCR_SVC_MAX] = {
    [RTCR_SVC_PD] = "PD",       [RTCR_SVC_CPU] = "CPU", [RTCR_SVC_RAM] = "RAM",
    [RTCR_SVC_RM] = "RM",       [RTCR_SVC_ROM] = "ROM", [RTCR_SVC_LOG] = "LOG",
    [RTCR_SVC_TIMER] = "Timer", [RTCR_SVC_IRQ] = "IRQ",
};

static void deny(struct rtcr_target *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void deny(struct rtcr_target *t, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    target_emit(t, RTCR_EV_TARGET_DENIED, buf);
}

/* ---- badge -> record table (open addressing, linear probing, tombstone-free deletion) ---- */

static size_t objtab_hash(rtcr_badge_t b, size_t cap)
{
    return ((b >> 2) * 2654435761u) & (cap - 1);
}

int svc_objtab_put(struct rtcr_target *t, struct obj *o)
{
    if ((t->objtab_n + 1) * 2 > t->objtab_cap) {
        size_t ncap = t->objtab_cap ? t->objtab_cap * 2 : 64;
        struct obj **n = calloc(ncap, sizeof(*n));
        if (!n)
            return -ENOMEM;
        for (size_t i = 0; i < t->objtab_cap; i++) {
            struct obj *e = t->objtab[i];
            if (!e)
                continue;
            size_t h = objtab_hash(e->badge, ncap);
            while (n[h])
                h = (h + 1) & (ncap - 1);
            n[h] = e;
        }
        free(t->objtab);
        t->objtab = n;
        t->objtab_cap = ncap;
    }
    size_t h = objtab_hash(o->badge, t->objtab_cap);
    while (t->objtab[h])
        h = (h + 1) & (t->objtab_cap - 1);
    t->objtab[h] = o;
    t->objtab_n++;
    return 0;
}

static struct obj *objtab_get(struct rtcr_target *t, rtcr_badge_t b)
{
    if (!t->objtab_cap)
        return NULL;
    size_t h = objtab_hash(b, t->objtab_cap);
    for (size_t n = 0; n < t->objtab_cap && t->objtab[h]; n++) {
        if (t->objtab[h]->badge == b)
            return t->objtab[h];
        h = (h + 1) & (t->objtab_cap - 1);
    }
    return NULL;
}

static void objtab_del(struct rtcr_target *t, rtcr_badge_t b)
{
    if (!t->objtab_cap)
        return;
    size_t mask = t->objtab_cap - 1, h = objtab_hash(b, t->objtab_cap);
    while (t->objtab[h] && t->objtab[h]->badge != b)
        h = (h + 1) & mask;
    if (!t->objtab[h])
        return;
    t->objtab[h] = NULL;
    t->objtab_n--;
    /* re-insert the rest of the cluster so lookups never stop early */
    for (size_t j = (h + 1) & mask; t->objtab[j]; j = (j + 1) & mask) {
        struct obj *e = t->objtab[j];
        t->objtab[j] = NULL;
        size_t k = objtab_hash(e->badge, t->objtab_cap);
        while (t->objtab[k])
            k = (k + 1) & mask;
        t->objtab[k] = e;
    }
}

/* ---- records ------------------------------------------------------------------------- */

/* Create the gate for a new record and register it. The record is not yet linked anywhere. */
int svc_obj_init(struct rtcr_target *t, struct obj *o, enum obj_kind kind, const char *name)
{
    return svc_obj_init_on(t, o, kind, name, t->core_thread);
}

int svc_obj_init_on(struct rtcr_target *t, struct obj *o, enum obj_kind kind, const char *name,
                    rtcr_kobj_t *server)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    int r = rtcr_gate_create_rpc(k, server, &o->gate);
    if (r < 0)
        return r;
    o->kind = kind;
    o->t = t;
    o->badge = rtcr_kobj_badge(o->gate);
    o->bootstrapped = !t->constructed;
    o->created_seq = ++t->obj_seq;
    rtcr_kobj_set_user(o->gate, o);
    rtcr_kobj_set_name(o->gate, name);
    r = svc_objtab_put(t, o);
    if (r < 0) {
        rtcr_kobj_delete(k, o->gate);
        rtcr_kobj_unref(&o->gate);
        return r;
    }
    return 0;
}

struct unmap_ctx {
    rtcr_kobj_t *obj;               /* object whose capabilities go */
    unsigned slots[RTCR_CAP_SLOTS]; /* slots found */
    unsigned n;                     /* number found */
};

static int find_obj(void *ctx, const rtcr_cap_info_t *cap)
{
    struct unmap_ctx *u = ctx;
    if (cap->object == u->obj)
        u->slots[u->n++] = cap->slot;
    return 0;
}

/* Remove every capability to `obj` from the target's space (as core's Capability_map::remove
 * unmaps with L4_FP_ALL_SPACES), so a destroyed object frees its slots there. */
static void unmap_from_target(struct rtcr_target *t, rtcr_kobj_t *obj)
{
    static __thread struct unmap_ctx u;
    if (!t->task)
        return;
    u.obj = obj;
    u.n = 0;
    rtcr_task_foreach_cap(t->ecu->kernel, t->task, find_obj, &u);
    for (unsigned i = 0; i < u.n; i++)
        rtcr_task_unmap(t->ecu->kernel, t->task, u.slots[i], false);
}

/* Destroy the gate (every capability to it goes) and unregister. */
void svc_obj_fini(struct rtcr_target *t, struct obj *o)
{
    if (!o->gate)
        return;
    if (!t->dead)
        unmap_from_target(t, o->gate);
    objtab_del(t, o->badge);
    rtcr_kobj_delete(t->ecu->kernel, o->gate);
    rtcr_kobj_unref(&o->gate);
}

/* Resolve a capability argument: the slot must hold a live gate to one of this target's
 * records of the given kind. */
static int resolve(struct rtcr_target *t, uint64_t slot, enum obj_kind kind, struct obj **ret)
{
    rtcr_kobj_t *o = NULL;
    unsigned rights;
    if (slot >= RTCR_CAP_SLOTS)
        return -ERANGE;
    int r = rtcr_task_lookup(t->ecu->kernel, t->task, (unsigned)slot, &o, &rights);
    if (r < 0)
        return r;
    r = -EPROTOTYPE;
    if (rtcr_kobj_type_of(o) == RTCR_KOBJ_GATE) {
        struct obj *rec = rtcr_kobj_user(o);
        if (rec && rec->t == t && rec->kind == kind && rec->gate == o) {
            *ret = rec;
            r = 0;
        }
    }
    rtcr_kobj_unref(&o);
    return r;
}

/* Does the component have room for `n` more capabilities? */
static int cap_room(struct rtcr_target *t, unsigned n)
{
    unsigned used = rtcr_task_used_slots(t->ecu->kernel, t->task);
    if (used + n > t->cap_limit) {
        deny(t, "capability limit reached: %u of %u slots in use", used, t->cap_limit);
        return -EDQUOT;
    }
    return 0;
}

/* Append a capability to the reply: a granted map item from the core task. Words must all be
 * in the reply already. */
static int reply_cap(struct rtcr_target *t, rtcr_kobj_t *obj, rtcr_msg_t *reply)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    unsigned slot;
    int r = rtcr_task_alloc_slot(k, t->core_task, &slot);
    if (r < 0)
        return r;
    r = rtcr_task_install(k, t->core_task, slot, obj, RTCR_CAP_RWS);
    if (r < 0)
        return r;
    r = rtcr_msg_put_cap(reply, slot, RTCR_CAP_RWS, 1);
    if (r < 0)
        rtcr_task_unmap(k, t->core_task, slot, false);
    return r;
}

/* ---- session args (Genode style: key=value, comma separated, values maybe quoted) ------ */

static int arg_get(const char *args, const char *key, char *buf, size_t bufsz)
{
    size_t klen = strlen(key);
    const char *p = args;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *eq = strchr(p, '=');
        if (!eq)
            return -ENOENT;
        const char *kstart = p;
        size_t kl = (size_t)(eq - kstart);
        const char *v = eq + 1, *vend;
        bool quoted = *v == '"';
        if (quoted) {
            v++;
            vend = strchr(v, '"');
            if (!vend)
                return -EINVAL;
            p = vend + 1;
        } else {
            vend = v + strcspn(v, ",");
            p = vend;
        }
        if (kl == klen && strncmp(kstart, key, klen) == 0) {
            size_t vl = (size_t)(vend - v);
            if (vl + 1 > bufsz)
                return -E2BIG;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return 0;
        }
        if (quoted && *p && *p != ',' && *p != ' ')
            return -EINVAL;
    }
    return -ENOENT;
}

static int parse_size(const char *s, size_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned long long mul = 1;
    switch (*end) {
    case 'K':
        mul = 1ull << 10;
        end++;
        break;
    case 'M':
        mul = 1ull << 20;
        end++;
        break;
    case 'G':
        mul = 1ull << 30;
        end++;
        break;
    default:
        break;
    }
    if (*end || v > (1ull << 40) / mul)
        return -EINVAL;
    *ret = (size_t)(v * mul);
    return 0;
}

/* ---- RAM accounting --------------------------------------------------------------------- */

int svc_charge(struct rtcr_target *t, size_t bytes, const char *what)
{
    if (bytes > t->ram_quota || t->ram_used > t->ram_quota - bytes) {
        deny(t, "RAM quota exceeded: %s needs %zu bytes, %zu of %zu in use", what, bytes,
             t->ram_used, t->ram_quota);
        return -EDQUOT;
    }
    t->ram_used += bytes;
    return 0;
}

void svc_uncharge(struct rtcr_target *t, size_t bytes)
{
    t->ram_used = bytes > t->ram_used ? 0 : t->ram_used - bytes;
}

/* ---- dataspaces ------------------------------------------------------------------------ */

int svc_ds_new(struct rtcr_target *t, size_t size, bool readonly, const char *what,
               struct dataspace **ret)
{
    struct dataspace *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return -ENOMEM;
    size = PAGE_ALIGN(size);
    int r = target_pool_alloc(t, size, &ds->pool_off);
    if (r < 0) {
        free(ds);
        if (r == -ENOSPC)
            deny(t, "RAM pool exhausted allocating %zu bytes for %s", size, what);
        return r;
    }
    char name[96];
    snprintf(name, sizeof(name), "%s dataspace %zu KiB", what, size >> 10);
    r = svc_obj_init(t, &ds->o, OBJ_DATASPACE, name);
    if (r < 0) {
        target_pool_free(t, ds->pool_off, size);
        free(ds);
        return r;
    }
    ds->size = size;
    ds->readonly = readonly;
    *ret = ds;
    return 0;
}

static void ds_free(struct rtcr_target *t, struct dataspace *ds)
{
    svc_obj_fini(t, &ds->o);
    target_pool_free(t, ds->pool_off, ds->size);
    free(ds);
}

static struct dataspace *ds_find(struct rtcr_target *t, rtcr_badge_t badge)
{
    struct obj *o = objtab_get(t, badge);
    return o && o->kind == OBJ_DATASPACE ? (struct dataspace *)o : NULL;
}

/* ---- signals --------------------------------------------------------------------------- */

static struct session *pd_session(struct rtcr_target *t)
{
    for (struct session *s = t->sessions; s; s = s->next)
        if (s->type == RTCR_SVC_PD)
            return s;
    return NULL;
}

static struct sigsrc *source_find(struct session *pd, uint64_t id)
{
    for (struct sigsrc *src = pd->u.pd.sources; src; src = src->next)
        if (src->id == id)
            return src;
    return NULL;
}

int svc_signal_submit(struct rtcr_target *t, rtcr_badge_t badge, unsigned count)
{
    struct obj *o = objtab_get(t, badge);
    if (!o || o->kind != OBJ_SIGCTX)
        return -ENOENT;
    struct sigctx *c = (struct sigctx *)o;
    struct session *pd = pd_session(t);
    struct sigsrc *src = pd ? source_find(pd, c->source_id) : NULL;
    if (!src)
        return -ENOENT;
    c->pending = count > UINT_MAX - c->pending ? UINT_MAX : c->pending + count; /* saturates */
    if (!c->queued) {
        c->queued = true;
        c->qnext = NULL;
        struct sigctx **pp = &src->queue;
        while (*pp)
            pp = &(*pp)->qnext;
        *pp = c;
    }
    return rtcr_irq_trigger(t->ecu->kernel, src->irq);
}

static void sigctx_unqueue(struct session *pd, struct sigctx *c)
{
    struct sigsrc *src = source_find(pd, c->source_id);
    if (!src || !c->queued)
        return;
    for (struct sigctx **pp = &src->queue; *pp; pp = &(*pp)->qnext)
        if (*pp == c) {
            *pp = c->qnext;
            break;
        }
    c->queued = false;
}

/* ---- sessions -------------------------------------------------------------------------- */

static void session_free(struct rtcr_target *t, struct session *s)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    switch (s->type) {
    case RTCR_SVC_PD:
        while (s->u.pd.contexts) {
            struct sigctx *c = s->u.pd.contexts;
            s->u.pd.contexts = c->next;
            svc_obj_fini(t, &c->o);
            free(c);
        }
        while (s->u.pd.sources) {
            struct sigsrc *src = s->u.pd.sources;
            s->u.pd.sources = src->next;
            rtcr_kobj_delete(k, src->irq);
            rtcr_kobj_unref(&src->irq);
            free(src);
        }
        while (s->u.pd.rpcs) {
            struct rpcobj *ro = s->u.pd.rpcs;
            s->u.pd.rpcs = ro->next;
            svc_obj_fini(t, &ro->o);
            free(ro);
        }
        break;
    case RTCR_SVC_RAM:
        while (s->u.ram.dss) {
            struct dataspace *ds = s->u.ram.dss;
            s->u.ram.dss = ds->next;
            svc_uncharge(t, ds->size);
            ds_free(t, ds);
        }
        break;
    case RTCR_SVC_RM:
        while (s->u.rm.atts) {
            struct attachment *a = s->u.rm.atts;
            s->u.rm.atts = a->next;
            struct dataspace *ds = ds_find(t, a->ds_badge);
            if (ds && ds->attach_count)
                ds->attach_count--;
            free(a);
        }
        break;
    case RTCR_SVC_ROM:
        if (s->u.rom.ds)
            ds_free(t, s->u.rom.ds);
        break;
    default:
        break;
    }
    svc_uncharge(t, s->quota);
    svc_obj_fini(t, &s->o);
    free(s);
}

void svc_free_all(struct rtcr_target *t)
{
    /* RM sessions first: they hold attachment counts on dataspaces of other sessions */
    for (struct session **pp = &t->sessions; *pp;) {
        struct session *s = *pp;
        if (s->type == RTCR_SVC_RM) {
            *pp = s->next;
            session_free(t, s);
        } else {
            pp = &s->next;
        }
    }
    while (t->sessions) {
        struct session *s = t->sessions;
        t->sessions = s->next;
        session_free(t, s);
    }
    if (t->parent) {
        svc_obj_fini(t, t->parent);
        free(t->parent);
        t->parent = NULL;
    }
    free(t->objtab);
    t->objtab = NULL;
    t->objtab_cap = t->objtab_n = 0;
}

const char *svc_rom_path(struct rtcr_target *t, const char *module)
{
    if (strcmp(module, "binary") == 0)
        return t->binary;
    for (size_t i = 0; i < t->n_roms; i++)
        if (strcmp(t->roms[i].name, module) == 0)
            return t->roms[i].path;
    return NULL;
}

/* Read a ROM module's file into a fresh read-only dataspace. */
int svc_rom_load(struct rtcr_target *t, const char *path, const char *module,
                 struct dataspace **ret, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        deny(t, "ROM module '%s': cannot open %s: %s", module, path, strerror(errno));
        return -ENOENT;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)(64u << 20)) {
        close(fd);
        deny(t, "ROM module '%s': %s is not a regular file of at most 64 MiB", module, path);
        return -EINVAL;
    }
    char what[NAME_MAX_LEN + 8];
    snprintf(what, sizeof(what), "ROM '%.*s'", NAME_MAX_LEN - 1, module);
    struct dataspace *ds;
    int r = svc_ds_new(t, st.st_size ? (size_t)st.st_size : 1, true, what, &ds);
    if (r < 0) {
        close(fd);
        return r;
    }
    size_t done = 0;
    while (done < (size_t)st.st_size) {
        ssize_t n =
            pread(fd, t->pool + ds->pool_off + done, (size_t)st.st_size - done, (off_t)done);
        if (n <= 0) {
            close(fd);
            ds_free(t, ds);
            return n < 0 ? -errno : -EIO;
        }
        done += (size_t)n;
    }
    close(fd);
    *ret = ds;
    *ret_len = (size_t)st.st_size;
    return 0;
}

/* Parent::session(service, args) */
static int parent_session(struct rtcr_target *t, const rtcr_msg_t *req, rtcr_msg_t *reply)
{
    uint64_t svc;
    char args[RTCR_SESSION_ARGS_MAX + 1], val[RTCR_SESSION_ARGS_MAX + 1];
    unsigned pos = 2;
    if (rtcr_msg_get(req, 1, &svc) < 0 || rtcr_msg_get_str(req, &pos, args, sizeof(args)) < 0)
        return -EBADMSG;
    if (svc >= RTCR_SVC_MAX) {
        deny(t, "session request for unknown service %" PRIu64, svc);
        return -ENOENT;
    }
    size_t quota = 0;
    if (arg_get(args, "ram_quota", val, sizeof(val)) < 0 || parse_size(val, &quota) < 0 ||
        quota < SESSION_COST) {
        deny(t, "%s session refused: args '%s' must give ram_quota >= %u", service_names[svc], args,
             SESSION_COST);
        return -EDQUOT;
    }
    int r = cap_room(t, 1);
    if (r < 0)
        return r;

    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->type = (enum rtcr_service)svc;
    snprintf(s->args, sizeof(s->args), "%s", args);
    struct dataspace *rom_ds = NULL;
    size_t rom_len = 0;

    /* per-type validation that needs no state change yet */
    switch (s->type) {
    case RTCR_SVC_PD:
        if (pd_session(t)) {
            deny(t, "second PD session refused");
            free(s);
            return -EEXIST;
        }
        s->u.pd.next_source_id = 1;
        break;
    case RTCR_SVC_IRQ: {
        size_t line;
        if (arg_get(args, "line", val, sizeof(val)) < 0 || parse_size(val, &line) < 0 ||
            line >= RTCR_IRQ_LINES) {
            deny(t, "IRQ session refused: args '%s' need line=0..%d", args, RTCR_IRQ_LINES - 1);
            free(s);
            return -EINVAL;
        }
        s->u.irq.line = (unsigned)line;
        break;
    }
    case RTCR_SVC_LOG:
        if (arg_get(args, "label", val, sizeof(val)) < 0)
            snprintf(val, sizeof(val), "%s", t->name);
        snprintf(s->u.log.label, sizeof(s->u.log.label), "%.*s", NAME_MAX_LEN - 1, val);
        break;
    case RTCR_SVC_ROM: {
        const char *path;
        if (arg_get(args, "label", val, sizeof(val)) < 0)
            val[0] = '\0';
        if (!(path = svc_rom_path(t, val))) {
            deny(t, "ROM session refused: no module '%s'", val);
            free(s);
            return -ENOENT;
        }
        snprintf(s->u.rom.module, sizeof(s->u.rom.module), "%.*s", NAME_MAX_LEN - 1, val);
        r = svc_rom_load(t, path, val, &rom_ds, &rom_len);
        if (r < 0) {
            free(s);
            return r;
        }
        break;
    }
    case RTCR_SVC_TIMER:
        s->u.timer.epoch_usec = now_usec();
        break;
    default:
        break;
    }

    r = svc_charge(t, quota, service_names[svc]);
    if (r < 0)
        goto fail;
    s->quota = quota;
    char name[128];
    if (s->type == RTCR_SVC_ROM)
        snprintf(name, sizeof(name), "ROM session '%s'", s->u.rom.module);
    else if (s->type == RTCR_SVC_IRQ)
        snprintf(name, sizeof(name), "IRQ session line %u", s->u.irq.line);
    else if (s->type == RTCR_SVC_LOG)
        snprintf(name, sizeof(name), "LOG session '%s'", s->u.log.label);
    else
        snprintf(name, sizeof(name), "%s session '%s'", service_names[svc], t->name);
    r = svc_obj_init(t, &s->o, OBJ_SESSION, name);
    if (r < 0) {
        svc_uncharge(t, quota);
        goto fail;
    }
    if (s->type == RTCR_SVC_ROM) {
        s->u.rom.ds = rom_ds;
        s->u.rom.length = rom_len;
    }
    rtcr_msg_init(reply, 0);
    rtcr_msg_put(reply, s->o.badge);
    r = reply_cap(t, s->o.gate, reply);
    if (r < 0) {
        svc_obj_fini(t, &s->o);
        svc_uncharge(t, quota);
        goto fail;
    }
    s->next = t->sessions;
    t->sessions = s;
    return 0;
fail:
    if (rom_ds)
        ds_free(t, rom_ds);
    free(s);
    return r;
}

static int parent_upgrade(struct rtcr_target *t, const rtcr_msg_t *req)
{
    uint64_t slot;
    char args[RTCR_SESSION_ARGS_MAX + 1], val[RTCR_SESSION_ARGS_MAX + 1];
    unsigned pos = 2;
    struct obj *o;
    size_t q;
    if (rtcr_msg_get(req, 1, &slot) < 0 || rtcr_msg_get_str(req, &pos, args, sizeof(args)) < 0)
        return -EBADMSG;
    int r = resolve(t, slot, OBJ_SESSION, &o);
    if (r < 0)
        return r;
    struct session *s = (struct session *)o;
    if (arg_get(args, "ram_quota", val, sizeof(val)) < 0 || parse_size(val, &q) < 0)
        return -EINVAL;
    size_t ul = strlen(s->upgrade);
    if (ul + strlen(args) + 2 > sizeof(s->upgrade))
        return -E2BIG;
    r = svc_charge(t, q, "session upgrade");
    if (r < 0)
        return r;
    s->quota += q;
    size_t al = strlen(args); /* fits: checked above */
    if (ul)
        s->upgrade[ul++] = ',';
    memcpy(s->upgrade + ul, args, al + 1);
    return 0;
}

static int parent_close(struct rtcr_target *t, const rtcr_msg_t *req)
{
    uint64_t slot;
    struct obj *o;
    if (rtcr_msg_get(req, 1, &slot) < 0)
        return -EBADMSG;
    int r = resolve(t, slot, OBJ_SESSION, &o);
    if (r < 0)
        return r;
    struct session *s = (struct session *)o;
    if (s->type == RTCR_SVC_PD || s->type == RTCR_SVC_RAM || s->type == RTCR_SVC_RM)
        return -EBUSY; /* the environment's own sessions live as long as the PD */
    for (struct session **pp = &t->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    session_free(t, s);
    ecu_timer_kick(t->ecu);
    return 0;
}

/* Restore support: which mode the component runs in, and where its root lives. */
static int parent_resume_info(struct rtcr_target *t, rtcr_msg_t *reply)
{
    struct session *pd = pd_session(t);
    rtcr_msg_init(reply, 0);
    rtcr_msg_put(reply, t->state == RTCR_TARGET_RESTORING ? 1 : 0);
    rtcr_msg_put(reply, pd ? pd->u.pd.root_addr : 0);
    rtcr_msg_put(reply, pd ? pd->u.pd.root_size : 0);
    return 0;
}

/* i-th attachment over all RM sessions, for a restored component to map its memory again */
static int parent_region(struct rtcr_target *t, const rtcr_msg_t *req, rtcr_msg_t *reply)
{
    uint64_t want;
    if (rtcr_msg_get(req, 1, &want) < 0)
        return -EBADMSG;
    uint64_t i = 0;
    for (struct session *s = t->sessions; s; s = s->next) {
        if (s->type != RTCR_SVC_RM)
            continue;
        for (struct attachment *a = s->u.rm.atts; a; a = a->next, i++) {
            if (i != want)
                continue;
            struct dataspace *ds = ds_find(t, a->ds_badge);
            if (!ds)
                return -ENOENT;
            rtcr_msg_init(reply, 0);
            rtcr_msg_put(reply, a->addr);
            rtcr_msg_put(reply, a->size);
            rtcr_msg_put(reply, ds->pool_off + a->offset);
            rtcr_msg_put(reply, a->flags);
            return 0;
        }
    }
    return -ENOENT;
}

static int parent_dispatch(struct rtcr_target *t, uint64_t op, const rtcr_msg_t *req,
                           rtcr_msg_t *reply)
{
    switch (op) {
    case RTCR_RPC_PARENT_SESSION:
        return parent_session(t, req, reply);
    case RTCR_RPC_PARENT_UPGRADE:
        return parent_upgrade(t, req);
    case RTCR_RPC_PARENT_CLOSE:
        return parent_close(t, req);
    case RTCR_RPC_PARENT_CONSTRUCTED:
        if (!t->constructed || t->state == RTCR_TARGET_RESTORING) {
            const char *how = t->state == RTCR_TARGET_RESTORING ? "restored" : NULL;
            t->constructed = true;
            t->state = RTCR_TARGET_RUNNING;
            target_emit(t, RTCR_EV_TARGET_STARTED, how);
        }
        return 0;
    case RTCR_RPC_PARENT_EXIT: {
        uint64_t code = 0;
        rtcr_msg_get(req, 1, &code);
        char buf[64];
        snprintf(buf, sizeof(buf), "component exit(%" PRIu64 ")", code);
        target_emit(t, RTCR_EV_TARGET_DENIED, buf);
        return 0;
    }
    case RTCR_RPC_PARENT_RESUME_INFO:
        return parent_resume_info(t, reply);
    case RTCR_RPC_PARENT_REGION:
        return parent_region(t, req, reply);
    default:
        return -ENOSYS;
    }
}

/* ---- PD ---------------------------------------------------------------------------------- */

static int pd_dispatch(struct rtcr_target *t, struct session *s, uint64_t op, const rtcr_msg_t *req,
                       rtcr_msg_t *reply)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    uint64_t a1 = 0, a2 = 0;
    int r;
    switch (op) {
    case RTCR_RPC_PD_ALLOC_RPC_CAP: {
        if (rtcr_msg_get(req, 1, &a1) < 0)
            return -EBADMSG;
        if (a1 >= RTCR_THREAD_MAX || !t->threads[a1].kthread)
            return -ENOENT;
        if ((r = cap_room(t, 1)) < 0)
            return r;
        struct rpcobj *ro = calloc(1, sizeof(*ro));
        if (!ro)
            return -ENOMEM;
        char name[64];
        snprintf(name, sizeof(name), "RPC object of ep %u", (unsigned)a1);
        /* a local RPC object's gate is bound to the entrypoint thread that serves it */
        if ((r = svc_obj_init_on(t, &ro->o, OBJ_RPC, name, t->threads[a1].kthread)) < 0) {
            free(ro);
            return r;
        }
        ro->ep_index = (unsigned)a1;
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, ro->o.badge);
        if ((r = reply_cap(t, ro->o.gate, reply)) < 0) {
            svc_obj_fini(t, &ro->o);
            free(ro);
            return r;
        }
        ro->next = s->u.pd.rpcs;
        s->u.pd.rpcs = ro;
        return 0;
    }
    case RTCR_RPC_PD_FREE_RPC_CAP: {
        struct obj *o;
        if (rtcr_msg_get(req, 1, &a1) < 0)
            return -EBADMSG;
        if ((r = resolve(t, a1, OBJ_RPC, &o)) < 0)
            return r;
        for (struct rpcobj **pp = &s->u.pd.rpcs; *pp; pp = &(*pp)->next)
            if (&(*pp)->o == o) {
                struct rpcobj *ro = *pp;
                *pp = ro->next;
                svc_obj_fini(t, &ro->o);
                free(ro);
                return 0;
            }
        return -ENOENT;
    }
    case RTCR_RPC_PD_ALLOC_SIGNAL_SOURCE: {
        if (rtcr_msg_get(req, 1, &a1) < 0)
            return -EBADMSG;
        if (a1 >= RTCR_THREAD_MAX || !t->threads[a1].kthread)
            return -ENOENT;
        if ((r = cap_room(t, 1)) < 0)
            return r;
        struct sigsrc *src = calloc(1, sizeof(*src));
        if (!src)
            return -ENOMEM;
        if ((r = rtcr_irq_create(k, &src->irq)) < 0) {
            free(src);
            return r;
        }
        src->id = s->u.pd.next_source_id++;
        src->ep_index = (unsigned)a1;
        /* the source's IRQ wakes the entrypoint's open wait with label = source id (Genode's
         * client attaches the semaphore to its own thread; core does it here on its behalf) */
        if ((r = rtcr_irq_attach(k, src->irq, src->id, t->threads[a1].kthread)) < 0) {
            rtcr_kobj_delete(k, src->irq);
            rtcr_kobj_unref(&src->irq);
            free(src);
            return r;
        }
        char name[64];
        snprintf(name, sizeof(name), "signal source %" PRIu64 " of ep %u", src->id, src->ep_index);
        rtcr_kobj_set_name(src->irq, name);
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, src->id);
        if ((r = reply_cap(t, src->irq, reply)) < 0) {
            rtcr_kobj_delete(k, src->irq);
            rtcr_kobj_unref(&src->irq);
            free(src);
            return r;
        }
        src->next = s->u.pd.sources;
        s->u.pd.sources = src;
        return 0;
    }
    case RTCR_RPC_PD_ALLOC_CONTEXT: {
        if (rtcr_msg_get(req, 1, &a1) < 0 || rtcr_msg_get(req, 2, &a2) < 0)
            return -EBADMSG;
        if (!source_find(s, a1))
            return -ENOENT;
        if ((r = cap_room(t, 1)) < 0)
            return r;
        struct sigctx *c = calloc(1, sizeof(*c));
        if (!c)
            return -ENOMEM;
        char name[64];
        snprintf(name, sizeof(name), "signal context %#" PRIx64, a2);
        if ((r = svc_obj_init(t, &c->o, OBJ_SIGCTX, name)) < 0) {
            free(c);
            return r;
        }
        c->source_id = a1;
        c->imprint = a2;
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, c->o.badge);
        if ((r = reply_cap(t, c->o.gate, reply)) < 0) {
            svc_obj_fini(t, &c->o);
            free(c);
            return r;
        }
        c->next = s->u.pd.contexts;
        s->u.pd.contexts = c;
        return 0;
    }
    case RTCR_RPC_PD_FREE_CONTEXT: {
        struct obj *o;
        if (rtcr_msg_get(req, 1, &a1) < 0)
            return -EBADMSG;
        if ((r = resolve(t, a1, OBJ_SIGCTX, &o)) < 0)
            return r;
        for (struct sigctx **pp = &s->u.pd.contexts; *pp; pp = &(*pp)->next)
            if (&(*pp)->o == o) {
                struct sigctx *c = *pp;
                sigctx_unqueue(s, c);
                *pp = c->next;
                svc_obj_fini(t, &c->o);
                free(c);
                return 0;
            }
        return -ENOENT;
    }
    case RTCR_RPC_PD_SUBMIT: {
        struct obj *o;
        if (rtcr_msg_get(req, 1, &a1) < 0 || rtcr_msg_get(req, 2, &a2) < 0)
            return -EBADMSG;
        if (a2 == 0 || a2 > 1000000)
            return -EINVAL;
        if ((r = resolve(t, a1, OBJ_SIGCTX, &o)) < 0)
            return r;
        return svc_signal_submit(t, o->badge, (unsigned)a2);
    }
    case RTCR_RPC_PD_WAIT_FOR_SIGNAL: {
        if (rtcr_msg_get(req, 1, &a1) < 0)
            return -EBADMSG;
        struct sigsrc *src = source_find(s, a1);
        if (!src)
            return -ENOENT;
        rtcr_msg_init(reply, 0);
        struct sigctx *c = src->queue;
        if (c && __atomic_load_n(&t->freezing, __ATOMIC_ACQUIRE)) {
            /* a checkpoint waits for this entrypoint: hand out nothing now and keep the
             * signal latched, so the entrypoint reaches its wait and gets it after the thaw */
            rtcr_irq_trigger(t->ecu->kernel, src->irq);
            c = NULL;
        }
        if (!c) {
            rtcr_msg_put(reply, 0);
            rtcr_msg_put(reply, 0);
            return 0;
        }
        src->queue = c->qnext;
        c->queued = false;
        rtcr_msg_put(reply, c->imprint);
        rtcr_msg_put(reply, c->pending);
        c->pending = 0;
        return 0;
    }
    case RTCR_RPC_PD_CAP_SPACE_INFO:
        if (rtcr_msg_get(req, 1, &a1) < 0 || rtcr_msg_get(req, 2, &a2) < 0)
            return -EBADMSG;
        if (a1 < RTCR_AS_BASE || a2 == 0 || a2 > RTCR_AS_SIZE ||
            a1 - RTCR_AS_BASE > RTCR_AS_SIZE - a2)
            return -EINVAL;
        s->u.pd.root_addr = a1;
        s->u.pd.root_size = a2;
        return 0;
    default:
        return -ENOSYS;
    }
}

/* ---- CPU --------------------------------------------------------------------------------- */

static int cpu_dispatch(struct rtcr_target *t, uint64_t op, const rtcr_msg_t *req,
                        rtcr_msg_t *reply)
{
    char name[32];
    unsigned pos = 1, index;
    switch (op) {
    case RTCR_RPC_CPU_CREATE_THREAD: {
        if (rtcr_msg_get_str(req, &pos, name, sizeof(name)) < 0)
            return -EBADMSG;
        int r = cap_room(t, RTCR_THREAD_AREA_SLOT);
        if (r < 0)
            return r;
        r = target_thread_add(t, name, &index);
        if (r < 0) {
            if (r == -EMLINK)
                deny(t, "thread limit of %d reached", RTCR_THREAD_MAX);
            return r;
        }
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, index);
        return 0;
    }
    default:
        return -ENOSYS;
    }
}

/* ---- RAM --------------------------------------------------------------------------------- */

static int ram_dispatch(struct rtcr_target *t, struct session *s, uint64_t op,
                        const rtcr_msg_t *req, rtcr_msg_t *reply)
{
    uint64_t a1;
    int r;
    switch (op) {
    case RTCR_RPC_RAM_ALLOC: {
        if (rtcr_msg_get(req, 1, &a1) < 0)
            return -EBADMSG;
        if (a1 == 0 || a1 > (1ull << 34))
            return -EINVAL;
        size_t size = PAGE_ALIGN((size_t)a1);
        if ((r = cap_room(t, 1)) < 0)
            return r;
        if ((r = svc_charge(t, size, "RAM dataspace")) < 0)
            return r;
        struct dataspace *ds;
        if ((r = svc_ds_new(t, size, false, "RAM", &ds)) < 0) {
            svc_uncharge(t, size);
            return r;
        }
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, ds->o.badge);
        rtcr_msg_put(reply, ds->size);
        rtcr_msg_put(reply, ds->pool_off);
        if ((r = reply_cap(t, ds->o.gate, reply)) < 0) {
            svc_uncharge(t, size);
            ds_free(t, ds);
            return r;
        }
        ds->next = s->u.ram.dss;
        s->u.ram.dss = ds;
        s->u.ram.used += size;
        return 0;
    }
    case RTCR_RPC_RAM_FREE: {
        struct obj *o;
        if (rtcr_msg_get(req, 1, &a1) < 0)
            return -EBADMSG;
        if ((r = resolve(t, a1, OBJ_DATASPACE, &o)) < 0)
            return r;
        for (struct dataspace **pp = &s->u.ram.dss; *pp; pp = &(*pp)->next)
            if (&(*pp)->o == o) {
                struct dataspace *ds = *pp;
                if (ds->attach_count)
                    return -EBUSY;
                *pp = ds->next;
                s->u.ram.used -= ds->size;
                svc_uncharge(t, ds->size);
                ds_free(t, ds);
                return 0;
            }
        return -ENOENT; /* not allocated by this session (e.g. a ROM dataspace) */
    }
    case RTCR_RPC_RAM_QUOTA:
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, t->ram_quota);
        rtcr_msg_put(reply, t->ram_used);
        return 0;
    default:
        return -ENOSYS;
    }
}

/* ---- RM ---------------------------------------------------------------------------------- */

static bool range_free(struct session *s, uint64_t addr, size_t size)
{
    for (struct attachment *a = s->u.rm.atts; a; a = a->next)
        if (addr < a->addr + a->size && a->addr < addr + size)
            return false;
    return true;
}

static int rm_dispatch(struct rtcr_target *t, struct session *s, uint64_t op, const rtcr_msg_t *req,
                       rtcr_msg_t *reply)
{
    uint64_t slot, size, offset, at, flags;
    int r;
    switch (op) {
    case RTCR_RPC_RM_ATTACH: {
        struct obj *o;
        if (rtcr_msg_get(req, 1, &slot) < 0 || rtcr_msg_get(req, 2, &size) < 0 ||
            rtcr_msg_get(req, 3, &offset) < 0 || rtcr_msg_get(req, 4, &at) < 0 ||
            rtcr_msg_get(req, 5, &flags) < 0)
            return -EBADMSG;
        if ((r = resolve(t, slot, OBJ_DATASPACE, &o)) < 0)
            return r;
        struct dataspace *ds = (struct dataspace *)o;
        if (size == 0)
            size = ds->size > offset ? ds->size - offset : 0;
        if (flags & ~(uint64_t)(RTCR_RM_WRITABLE | RTCR_RM_EXECUTABLE) || offset % PAGE_SIZE_ ||
            at % PAGE_SIZE_ || size == 0 || offset >= ds->size || size > ds->size - offset)
            return -EINVAL;
        if (ds->readonly && (flags & RTCR_RM_WRITABLE))
            return -EPERM;
        size = PAGE_ALIGN(size);
        if (at == 0) { /* first fit in the address-space window */
            at = RTCR_AS_BASE;
            for (struct attachment *a = s->u.rm.atts; a; a = a->next) {
                if (a->addr >= at + size)
                    break;
                if (a->addr + a->size > at)
                    at = a->addr + a->size;
            }
        }
        if (at < RTCR_AS_BASE || at - RTCR_AS_BASE > RTCR_AS_SIZE - size)
            return -ERANGE;
        if (!range_free(s, at, size))
            return -EEXIST;
        struct attachment *na = calloc(1, sizeof(*na));
        if (!na)
            return -ENOMEM;
        na->ds_badge = ds->o.badge;
        na->addr = at;
        na->size = size;
        na->offset = offset;
        na->flags = (unsigned)flags;
        struct attachment **pp = &s->u.rm.atts;
        while (*pp && (*pp)->addr < at)
            pp = &(*pp)->next;
        na->next = *pp;
        *pp = na;
        ds->attach_count++;
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, at);
        rtcr_msg_put(reply, ds->pool_off + offset);
        return 0;
    }
    case RTCR_RPC_RM_DETACH:
        if (rtcr_msg_get(req, 1, &at) < 0)
            return -EBADMSG;
        for (struct attachment **pp = &s->u.rm.atts; *pp; pp = &(*pp)->next)
            if ((*pp)->addr == at) {
                struct attachment *a = *pp;
                struct dataspace *ds = ds_find(t, a->ds_badge);
                if (ds && ds->attach_count)
                    ds->attach_count--;
                *pp = a->next;
                rtcr_msg_init(reply, 0);
                rtcr_msg_put(reply, a->size);
                free(a);
                return 0;
            }
        return -ENOENT;
    default:
        return -ENOSYS;
    }
}

/* ---- ROM, LOG, Timer, IRQ ---------------------------------------------------------------- */

static int rom_dispatch(struct rtcr_target *t, struct session *s, uint64_t op, rtcr_msg_t *reply)
{
    if (op != RTCR_RPC_ROM_DATASPACE)
        return -ENOSYS;
    int r = cap_room(t, 1);
    if (r < 0)
        return r;
    rtcr_msg_init(reply, 0);
    rtcr_msg_put(reply, s->u.rom.ds->o.badge);
    rtcr_msg_put(reply, s->u.rom.ds->size);
    rtcr_msg_put(reply, s->u.rom.length);
    return reply_cap(t, s->u.rom.ds->o.gate, reply);
}

static int log_dispatch(struct rtcr_target *t, struct session *s, uint64_t op,
                        const rtcr_msg_t *req)
{
    char line[RTCR_RPC_STR_MAX + 1], out[RTCR_RPC_STR_MAX + NAME_MAX_LEN + 4];
    unsigned pos = 1;
    if (op != RTCR_RPC_LOG_WRITE)
        return -ENOSYS;
    if (rtcr_msg_get_str(req, &pos, line, sizeof(line)) < 0)
        return -EBADMSG;
    /* strip one trailing newline; replace control characters so a line stays one line */
    size_t n = strlen(line);
    if (n && line[n - 1] == '\n')
        line[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    if (strcmp(s->u.log.label, t->name) == 0)
        snprintf(out, sizeof(out), "%s", line);
    else
        snprintf(out, sizeof(out), "[%s] %s", s->u.log.label, line);
    target_log_line(t, out);
    return 0;
}

static int sigh_arg(struct rtcr_target *t, const rtcr_msg_t *req, rtcr_badge_t *ret)
{
    uint64_t slot;
    struct obj *o;
    if (rtcr_msg_get(req, 1, &slot) < 0)
        return -EBADMSG;
    int r = resolve(t, slot, OBJ_SIGCTX, &o);
    if (r < 0)
        return r;
    *ret = o->badge;
    return 0;
}

static int timer_dispatch(struct rtcr_target *t, struct session *s, uint64_t op,
                          const rtcr_msg_t *req, rtcr_msg_t *reply)
{
    uint64_t usec;
    int r;
    switch (op) {
    case RTCR_RPC_TIMER_SIGH:
        return sigh_arg(t, req, &s->u.timer.sigh);
    case RTCR_RPC_TIMER_TRIGGER_ONCE:
    case RTCR_RPC_TIMER_TRIGGER_PERIODIC:
        if ((r = rtcr_msg_get(req, 1, &usec)) < 0)
            return -EBADMSG;
        if (usec > 3600ull * 1000000)
            return -EINVAL;
        if (op == RTCR_RPC_TIMER_TRIGGER_PERIODIC && usec != 0 && usec < 1000)
            usec = 1000; /* 1 ms floor for periodic timers */
        s->u.timer.period_usec = op == RTCR_RPC_TIMER_TRIGGER_PERIODIC ? usec : 0;
        if (op == RTCR_RPC_TIMER_TRIGGER_PERIODIC && usec == 0)
            s->u.timer.deadline_usec = 0;
        else
            s->u.timer.deadline_usec = now_usec() + (usec ? usec : 1);
        ecu_timer_kick(t->ecu);
        return 0;
    case RTCR_RPC_TIMER_NOW:
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, now_usec() - s->u.timer.epoch_usec);
        return 0;
    default:
        return -ENOSYS;
    }
}

static int irq_deliver(struct rtcr_target *t, struct session *s)
{
    s->u.irq.unmasked = false;
    if (s->u.irq.sigh)
        return svc_signal_submit(t, s->u.irq.sigh, 1);
    return 0;
}

static int irq_dispatch(struct rtcr_target *t, struct session *s, uint64_t op,
                        const rtcr_msg_t *req, rtcr_msg_t *reply)
{
    switch (op) {
    case RTCR_RPC_IRQ_SIGH:
        return sigh_arg(t, req, &s->u.irq.sigh);
    case RTCR_RPC_IRQ_ACK:
        s->u.irq.unmasked = true;
        if (s->u.irq.pending && s->u.irq.sigh) {
            s->u.irq.pending = false;
            irq_deliver(t, s);
        }
        return 0;
    case RTCR_RPC_IRQ_INFO:
        rtcr_msg_init(reply, 0);
        rtcr_msg_put(reply, s->u.irq.line);
        return 0;
    default:
        return -ENOSYS;
    }
}

int svc_irq_fire(struct rtcr_target *t, unsigned line)
{
    int n = 0;
    for (struct session *s = t->sessions; s; s = s->next) {
        if (s->type != RTCR_SVC_IRQ || s->u.irq.line != line)
            continue;
        s->u.irq.count++;
        if (s->u.irq.unmasked && s->u.irq.sigh)
            irq_deliver(t, s);
        else
            s->u.irq.pending = true; /* latched until acked with a handler set */
        n++;
    }
    return n;
}

unsigned svc_timer_due(uint64_t *deadline, uint64_t period, uint64_t now)
{
    uint64_t d = *deadline;
    if (!d || d > now)
        return 0;
    if (!period) {
        *deadline = 0;
        return 1;
    }
    uint64_t n = (now - d) / period + 1; /* boundaries d, d + p, ... up to now */
    *deadline = d + n * period;
    return n < SVC_TIMER_COUNT_MAX ? (unsigned)n : SVC_TIMER_COUNT_MAX;
}

uint64_t svc_timers_run(struct rtcr_ecu *ecu, uint64_t now)
{
    uint64_t next = 0;
    pthread_mutex_lock(&ecu->lock);
    for (struct rtcr_target *t = ecu->targets; t; t = t->next) {
        pthread_mutex_lock(&t->lock);
        for (struct session *s = t->sessions; s && !t->dead; s = s->next) {
            if (s->type != RTCR_SVC_TIMER || !s->u.timer.deadline_usec)
                continue;
            unsigned n = svc_timer_due(&s->u.timer.deadline_usec, s->u.timer.period_usec, now);
            if (n && s->u.timer.sigh)
                svc_signal_submit(t, s->u.timer.sigh, n);
            uint64_t d = s->u.timer.deadline_usec;
            if (d && (!next || d < next))
                next = d;
        }
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_unlock(&ecu->lock);
    return next;
}

/* ---- entry ------------------------------------------------------------------------------ */

int svc_make_parent(struct rtcr_target *t)
{
    struct obj *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int r = svc_obj_init(t, p, OBJ_PARENT, "parent");
    if (r < 0) {
        free(p);
        return r;
    }
    r = rtcr_task_install(t->ecu->kernel, t->task, RTCR_PARENT_CAP, p->gate, RTCR_CAP_RWS);
    if (r < 0) {
        svc_obj_fini(t, p);
        free(p);
        return r;
    }
    t->parent = p;
    return 0;
}

int svc_dispatch(void *ctx, rtcr_kobj_t *thread, uint64_t label, const rtcr_msg_t *req,
                 rtcr_msg_t *reply)
{
    struct rtcr_target *t = ctx;
    (void)thread;
    if (req->tag.label == RTCR_PROTO_IRQ)
        return -EINVAL; /* core threads attach no IRQs */
    if (req->tag.items != 0 || req->tag.words == 0)
        return -EBADMSG; /* capability arguments to core travel as slot numbers */
    rtcr_badge_t badge = (rtcr_badge_t)(label & ~(uint64_t)RTCR_LABEL_RIGHTS_MASK);
    uint64_t op = req->mr[0];
    int r;

    pthread_mutex_lock(&t->lock);
    struct obj *o = t->dead ? NULL : objtab_get(t, badge);
    if (!o) {
        r = -ENOENT;
        goto out;
    }
    rtcr_msg_init(reply, 0);
    if (o->kind == OBJ_PARENT) {
        r = parent_dispatch(t, op, req, reply);
    } else if (o->kind == OBJ_SESSION) {
        struct session *s = (struct session *)o;
        switch (s->type) {
        case RTCR_SVC_PD:
            r = pd_dispatch(t, s, op, req, reply);
            break;
        case RTCR_SVC_CPU:
            r = cpu_dispatch(t, op, req, reply);
            break;
        case RTCR_SVC_RAM:
            r = ram_dispatch(t, s, op, req, reply);
            break;
        case RTCR_SVC_RM:
            r = rm_dispatch(t, s, op, req, reply);
            break;
        case RTCR_SVC_ROM:
            r = rom_dispatch(t, s, op, reply);
            break;
        case RTCR_SVC_LOG:
            r = log_dispatch(t, s, op, req);
            break;
        case RTCR_SVC_TIMER:
            r = timer_dispatch(t, s, op, req, reply);
            break;
        case RTCR_SVC_IRQ:
            r = irq_dispatch(t, s, op, req, reply);
            break;
        default:
            r = -ENOSYS;
            break;
        }
    } else {
        r = -ENOSYS; /* dataspaces and signal contexts have no RPC interface of their own */
    }
out:
    pthread_mutex_unlock(&t->lock);
    if (r < 0) {
        rtcr_msg_init(reply, (uint64_t)(int64_t)r);
        return 0; /* the error travels as the RPC result, the IPC itself succeeded */
    }
    reply->mr[0] = 0;
    return 0;
}
