/* comp_ep.c — entrypoints: the threads that run a component's handlers.
 *
 * An entrypoint is a thread bound into the PD's thread area (core creates its gate, pager
 * and lock IRQ at slots 9 + 3i) plus a signal source whose IRQ core attached to the thread.
 * Its loop is one open wait (reply-and-wait) that returns either
 *   - an IRQ delivery (tag label RTCR_PROTO_IRQ, label = source id): fetch every pending
 *     signal from the PD session and run its handler, then unmask the source IRQ (a trigger
 *     meanwhile stays latched and wakes the next wait); or
 *   - an RPC request for one of the entrypoint's local objects (label = badge | rights): look
 *     the badge up in the object pool (rtcr/croot.h), run the handler, reply with the next wait.
 * Between two events an entrypoint holds no state on its stack; the loop restarts cleanly in
 * a restored process, which is what makes checkpoints at "every entrypoint waits" complete.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "comp_internal.h"

int comp_ep_init(rtcr_env_t *env, unsigned index, const char *name)
{
    rtcr_msg_t m;
    rtcr_cap_t irq;
    rtcr_msg_init(&m, RTCR_RPC_PD_ALLOC_SIGNAL_SOURCE);
    rtcr_msg_put(&m, index);
    int r = comp_call(env->pd, &m, true, &irq);
    if (r < 0)
        return r;
    struct rtcr_ep *ep = &env->eps[index];
    ep->index = index;
    ep->source_id = m.mr[1];
    ep->source_irq = irq;
    ep->env = env;
    snprintf(ep->name, sizeof(ep->name), "%s", name);
    __atomic_store_n(&ep->magic, COMP_EP_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

void *comp_ep_thread(void *p)
{
    comp_ep_loop(p);
}

int rtcr_ep_create(rtcr_env_t *env, const char *name, rtcr_ep_t **ret_ep)
{
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_CPU_CREATE_THREAD);
    int r = rtcr_msg_put_str(&m, name);
    if (r < 0)
        return r;
    r = comp_call(env->cpu, &m, false, NULL);
    if (r < 0)
        return r;
    uint64_t index;
    if (rtcr_msg_get(&m, 1, &index) < 0 || index == 0 || index >= RTCR_THREAD_MAX)
        return -EBADMSG;
    r = comp_ep_init(env, (unsigned)index, name);
    if (r < 0)
        return r;
    pthread_t th;
    r = -pthread_create(&th, NULL, comp_ep_thread, &env->eps[index]);
    if (r < 0)
        return r;
    pthread_detach(th);
    *ret_ep = &env->eps[index];
    return 0;
}

unsigned rtcr_ep_thread_index(const rtcr_ep_t *ep)
{
    return ep->index;
}

/* ---- signals ------------------------------------------------------------------------------ */

int rtcr_signal_handler(rtcr_ep_t *ep, rtcr_signal_fn fn, void *ctx, rtcr_cap_t *ret_sigh)
{
    rtcr_env_t *env = ep->env;
    struct comp_sigrec *rec = rtcr_heap_alloc(env, sizeof(*rec));
    if (!rec)
        return -ENOMEM;
    rec->magic = COMP_SIG_MAGIC;
    rec->ep = ep->index;
    rec->fn = fn;
    rec->ctx = ctx;
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_PD_ALLOC_CONTEXT);
    rtcr_msg_put(&m, ep->source_id);
    rtcr_msg_put(&m, (uint64_t)(uintptr_t)rec);
    int r = comp_call(env->pd, &m, true, ret_sigh);
    if (r < 0)
        rtcr_heap_free(env, rec);
    return r;
}

int rtcr_signal_submit(rtcr_env_t *env, rtcr_cap_t sigh, unsigned count)
{
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_PD_SUBMIT);
    rtcr_msg_put(&m, sigh);
    rtcr_msg_put(&m, count);
    return comp_call(env->pd, &m, false, NULL);
}

static void dispatch_signals(struct rtcr_ep *ep)
{
    rtcr_env_t *env = ep->env;
    for (;;) {
        rtcr_msg_t m;
        rtcr_msg_init(&m, RTCR_RPC_PD_WAIT_FOR_SIGNAL);
        rtcr_msg_put(&m, ep->source_id);
        if (comp_call(env->pd, &m, false, NULL) < 0)
            break;
        uint64_t imprint, count;
        if (rtcr_msg_get(&m, 1, &imprint) < 0 || rtcr_msg_get(&m, 2, &count) < 0 || !count)
            break;
        struct comp_sigrec *rec = (struct comp_sigrec *)(uintptr_t)imprint;
        if (rec && rec->magic == COMP_SIG_MAGIC && rec->ep == ep->index && rec->fn)
            rec->fn(rec->ctx, (unsigned)count);
    }
    /* unmask: a trigger that came after the last fetch is latched and wakes the next wait */
    rtcr_utcb_t *u = comp_utcb();
    u->op = RTCR_UTCB_OP_IRQ_UNMASK;
    u->dest = ep->source_irq;
    u->rcv_count = 0;
    rtcr_utcb_invoke(u);
}

/* ---- RPC objects -------------------------------------------------------------------------- */

int rtcr_rpc_obj_create(rtcr_ep_t *ep, rtcr_rpc_fn fn, void *ctx, rtcr_cap_t *ret_cap)
{
    rtcr_env_t *env = ep->env;
    struct rtcr_croot *root = comp_proc.root;
    rtcr_msg_t m;
    rtcr_cap_t cap;
    rtcr_msg_init(&m, RTCR_RPC_PD_ALLOC_RPC_CAP);
    rtcr_msg_put(&m, ep->index);
    int r = comp_call(env->pd, &m, true, &cap);
    if (r < 0)
        return r;
    pthread_mutex_lock(&env->lock);
    for (unsigned i = 0; i < RTCR_POOL_MAX; i++) {
        struct rtcr_pool_entry *e = &root->pool[i];
        if (e->magic == RTCR_POOL_ENTRY_MAGIC)
            continue;
        e->badge = (uint32_t)m.mr[1];
        e->kcap = cap;
        e->ep = ep->index;
        e->fn = (uint64_t)(uintptr_t)fn;
        e->ctx = (uint64_t)(uintptr_t)ctx;
        __atomic_store_n(&e->magic, RTCR_POOL_ENTRY_MAGIC, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&env->lock);
        *ret_cap = cap;
        return 0;
    }
    pthread_mutex_unlock(&env->lock);
    rtcr_msg_init(&m, RTCR_RPC_PD_FREE_RPC_CAP);
    rtcr_msg_put(&m, cap);
    comp_call(env->pd, &m, false, NULL);
    comp_slot_release(cap);
    return -ENOSPC;
}

int rtcr_rpc_call(rtcr_env_t *env, rtcr_cap_t obj, uint64_t op, const uint64_t *args,
                  unsigned nargs, uint64_t *ret, unsigned max_ret, unsigned *ret_n)
{
    (void)env;
    if (nargs > RTCR_RPC_ARGS_MAX || op < RTCR_RPC_USER)
        return -EINVAL;
    rtcr_msg_t m;
    rtcr_msg_init(&m, op);
    for (unsigned i = 0; i < nargs; i++)
        rtcr_msg_put(&m, args[i]);
    int r = comp_call(obj, &m, false, NULL);
    if (r < 0)
        return r;
    unsigned n = m.tag.words > 0 ? m.tag.words - 1u : 0;
    if (n > max_ret)
        n = max_ret;
    for (unsigned i = 0; i < n; i++)
        ret[i] = m.mr[1 + i];
    if (ret_n)
        *ret_n = n;
    return r;
}

/* Handle one request in the UTCB; leave the reply in it. */
static void dispatch_rpc(struct rtcr_ep *ep, rtcr_utcb_t *u)
{
    struct rtcr_croot *root = comp_proc.root;
    uint32_t badge = (uint32_t)(u->label & ~(uint64_t)RTCR_LABEL_RIGHTS_MASK);
    const struct rtcr_pool_entry *e = NULL;
    for (unsigned i = 0; i < RTCR_POOL_MAX; i++)
        if (root->pool[i].magic == RTCR_POOL_ENTRY_MAGIC && root->pool[i].badge == badge) {
            e = &root->pool[i];
            break;
        }
    uint64_t args[RTCR_RPC_ARGS_MAX], res[RTCR_RPC_ARGS_MAX];
    unsigned nargs = u->msg.tag.words > 1 ? u->msg.tag.words - 1u : 0, nres = 0;
    uint64_t op = u->msg.tag.words ? u->msg.mr[0] : 0;
    int r;
    if (!e || e->ep != ep->index) {
        r = -ENOENT;
    } else if (nargs > RTCR_RPC_ARGS_MAX || u->msg.tag.items) {
        r = -EMSGSIZE;
    } else {
        memcpy(args, &u->msg.mr[1], nargs * sizeof(uint64_t));
        rtcr_rpc_fn fn = (rtcr_rpc_fn)(uintptr_t)e->fn;
        r = fn((void *)(uintptr_t)e->ctx, op, args, nargs, res, &nres);
        if (nres > RTCR_RPC_ARGS_MAX)
            nres = RTCR_RPC_ARGS_MAX;
    }
    memset(&u->msg.tag, 0, sizeof(u->msg.tag));
    u->msg.mr[0] = (uint64_t)(int64_t)r;
    if (r >= 0)
        memcpy(&u->msg.mr[1], res, nres * sizeof(uint64_t));
    u->msg.tag.words = (uint8_t)(1 + (r >= 0 ? nres : 0));
}

void comp_ep_loop(struct rtcr_ep *ep)
{
    comp_set_thread(ep->index);
    rtcr_utcb_t *u = comp_utcb();
    bool reply = false;
    for (;;) {
        u->op = reply ? RTCR_UTCB_OP_REPLY_WAIT : RTCR_UTCB_OP_WAIT;
        u->dest = 0;
        u->timeout_usec = 0;
        u->rcv_count = 0;
        int r = rtcr_utcb_invoke(u);
        reply = false;
        if (r < 0)
            continue; /* interrupted or the caller vanished: wait again */
        if (u->msg.tag.label == RTCR_PROTO_IRQ) {
            if (u->label == ep->source_id)
                dispatch_signals(ep);
            continue;
        }
        dispatch_rpc(ep, u);
        reply = true;
    }
}
