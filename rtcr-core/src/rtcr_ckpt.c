/* rtcr_ckpt.c — checkpointing a target: one epoch at a time, incremental in memory.
 *
 * The algorithm (docs/checkpoint-restore.md):
 *   1. Quiesce. Mark the target freezing: its mirrors stop handing IRQ/signal deliveries to
 *      the target (they park them), while calls and replies in flight still complete. Wait
 *      until every target thread is blocked in a wait at its mirror, confirmed by two
 *      consecutive samples in which no mirror served anything new. Bounded by
 *      quiesce_timeout_usec; on timeout the target thaws and nothing is stored.
 *   2. Memory. Sync the dirty tracker's ranges with the RM attachments, collect the units
 *      written since the previous epoch (re-arming tracking in the same step) and copy them
 *      into a staging buffer; dataspaces that the previous epoch did not store are copied
 *      whole. The first epoch of an incarnation is full.
 *   3. Stored state. Serialise the interception records (sessions and their per-type state),
 *      the cap space of the target's task (slot, type, rights and the identity of each
 *      object) and the location of the cap map and object pool.
 *   4. Resume: the pause ends here.
 *   5. Encode (protobuf + LZ4 frames with hashes, rtcr/image.h) while the target runs, append
 *      to the target's chain, write the epoch file, compact the chain when it grows long.
 * A failure after step 2 makes the next epoch full again, so no write is ever lost.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <rtcr/croot.h>
#include <rtcr/dirty.h>
#include <rtcr/image.h>

#include "ecu_internal.h"
#include "time_internal.h"

#define DEFAULT_QUIESCE_USEC 500000u
#define DEFAULT_GRANULARITY  4096u

static void set_err(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || !errsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* ---- parameters and lifetime ------------------------------------------------------------- */

struct stage;
static void stage_free(struct stage *s);

void ckpt_target_init(struct rtcr_target *t)
{
    pthread_mutex_init(&t->freeze_lock, NULL);
    pthread_cond_init(&t->freeze_cond, NULL);
    t->ckpt.dirty_mode = -1;
    t->ckpt.granularity = DEFAULT_GRANULARITY;
    t->ckpt.quiesce_timeout_usec = DEFAULT_QUIESCE_USEC;
    t->build_id_len =
        t->binary ? rtcr_elf_build_id(t->binary, t->build_id, sizeof(t->build_id)) : -EINVAL;
}

void ckpt_incarnation_end(struct rtcr_target *t)
{
    if (t->staging) {
        stage_free(t->staging);
        free(t->staging);
        t->staging = NULL;
    }
    rtcr_dirty_destroy(&t->dirty);
    free(t->tracked);
    t->tracked = NULL;
    t->n_tracked = 0;
    free(t->known_ds);
    t->known_ds = NULL;
    t->n_known_ds = 0;
    t->incarnation_has_epoch = false;
    pthread_mutex_lock(&t->freeze_lock);
    t->freezing = false;
    pthread_cond_broadcast(&t->freeze_cond);
    pthread_mutex_unlock(&t->freeze_lock);
}

/* ---- compaction in the background ------------------------------------------------------- */

/* One compaction of the target's chain on a thread of its own (rtcr_image_compaction_*): the
 * checkpoint that finds the chain longer than max_chain starts it, a later checkpoint commits
 * it once it is done, so the checkpoint path never spends the time of materialising and
 * re-encoding the whole memory (about 150 ms for 64 MiB). The memory a compaction built is kept
 * (t->compact_mem) while the chain still starts with the full epoch it made: the next
 * compaction then decodes only the epochs since onto it instead of the whole chain into fresh
 * buffers (64 MiB, 1 MiB per epoch: 30-65 ms instead of 60-150 ms of CPU), at the price of one
 * more copy of the target's memory between compactions. The thread runs at nice 19: it takes
 * what the target and the freeze leave of the CPU, and it waits at its next frame while an
 * epoch is encoded (compact_yield). SCHED_IDLE was measured three times and is worse:
 * with it, one freeze in ten during a compaction took 2-4 ms instead of 0.3 ms (the cause was
 * not pinned down; the time went into capturing the stored state, not into the copy). */
#define COMPACT_NICE 19
struct compactor {
    pthread_t thread;           /* running compact_main */
    rtcr_image_compaction_t *c; /* the job (borrows epochs of t->image) */
    char *dir;                  /* state dir to write the full epoch to, or NULL */
    atomic_bool done;           /* compact_main returned */
    pid_t tid;                  /* its thread id (0 until it runs; atomic access) */
    int result;                 /* of the compaction: 0 or -errno */
    int written;                /* of writing the file: 0, -errno, 1 not written (no dir) */
    bool on_kept;               /* builds on the memory the previous compaction kept */
    pthread_mutex_t hold_lock;  /* protects hold */
    pthread_cond_t hold_cond;   /* signalled when hold ends */
    bool hold;                  /* an epoch is being encoded: pause at the next frame */
    uint64_t usec;              /* how long it ran */
    rtcr_image_err_t err;       /* what failed */
    uint64_t from, upto;        /* the epochs it merges */
};

/* Operators' view of the compactions (t->compaction, rtcr_target_compaction_info): every
 * compaction that starts is counted, and every one that ends records how, under t->lock, so
 * that the agent's control thread can read it while the checkpoint thread writes it. */

const char *rtcr_compaction_outcome_name(enum rtcr_compaction_outcome o)
{
    static const char *const names[RTCR_COMPACTION_OUTCOME_MAX] = {
        "none", "committed", "unwritten", "failed", "discarded"}; /* in enum order */
    return (unsigned)o < RTCR_COMPACTION_OUTCOME_MAX ? names[o] : "?";
}

/* A compaction of from..upto began (k, on its thread) or could not start (k NULL). */
static void compact_note_start(struct rtcr_target *t, const struct compactor *k, uint64_t from,
                               uint64_t upto)
{
    pthread_mutex_lock(&t->lock);
    rtcr_compaction_info_t *ci = &t->compaction;
    ci->started++;
    if (k) {
        ci->running = true;
        ci->running_from = from;
        ci->running_upto = upto;
        ci->running_since_usec = now_usec();
        ci->running_on_kept = k->on_kept;
    }
    pthread_mutex_unlock(&t->lock);
}

/* The compaction of from..upto ended with `o` after running usec (k may be NULL: it never
 * ran); a failure's message is formatted from fmt. */
static void compact_note_end(struct rtcr_target *t, const struct compactor *k, uint64_t from,
                             uint64_t upto, enum rtcr_compaction_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void compact_note_end(struct rtcr_target *t, const struct compactor *k, uint64_t from,
                             uint64_t upto, enum rtcr_compaction_outcome o, const char *fmt, ...)
{
    uint64_t now = now_usec();
    pthread_mutex_lock(&t->lock);
    rtcr_compaction_info_t *ci = &t->compaction;
    ci->running = false;
    ci->running_from = ci->running_upto = ci->running_since_usec = 0;
    ci->running_on_kept = false;
    ci->last = o;
    ci->last_from = from;
    ci->last_upto = upto;
    ci->last_usec = k ? k->usec : 0;
    ci->last_on_kept = k && k->on_kept;
    ci->last_end_usec = now;
    if (o == RTCR_COMPACTION_COMMITTED)
        ci->committed++;
    else if (o == RTCR_COMPACTION_DISCARDED)
        ci->discarded++;
    else
        ci->failed++;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ci->error, sizeof(ci->error), fmt, ap);
        va_end(ap);
        ci->error_usec = now;
    }
    pthread_mutex_unlock(&t->lock);
}

int rtcr_target_compaction_info(rtcr_target_t *t, rtcr_compaction_info_t *ret_info)
{
    pthread_mutex_lock(&t->lock);
    rtcr_compaction_info_t info = t->compaction;
    info.max_chain = t->ckpt.max_chain;
    info.chain_epochs = t->image ? rtcr_image_count(t->image) : 0;
    pthread_mutex_unlock(&t->lock);
    *ret_info = info;
    return 0;
}

/* The compaction's frame hook: while the checkpointing thread encodes an epoch (hold), wait,
 * at most RTCR_ENCODE_IDLE_MAX_MSEC per frame, so the epoch in flight has the CPU that the
 * targets leave before the background work does. */
static void compact_yield(void *arg)
{
    struct compactor *k = arg;
    pthread_mutex_lock(&k->hold_lock);
    struct timespec ts;
    if (k->hold && deadline_make(RTCR_ENCODE_IDLE_MAX_MSEC * 1000u, &ts))
        while (k->hold && pthread_cond_timedwait(&k->hold_cond, &k->hold_lock, &ts) == 0)
            ;
    pthread_mutex_unlock(&k->hold_lock);
}

/* Pause (on) or resume the running compaction of t, if any. */
static void compact_hold(struct rtcr_target *t, bool on)
{
    struct compactor *k = t->compactor;
    if (!k)
        return;
    pthread_mutex_lock(&k->hold_lock);
    k->hold = on;
    if (!on)
        pthread_cond_broadcast(&k->hold_cond);
    pthread_mutex_unlock(&k->hold_lock);
}

static void *compact_main(void *arg)
{
    struct compactor *k = arg;
    uint64_t t0 = now_usec();

    pid_t tid = gettid();
    __atomic_store_n(&k->tid, tid, __ATOMIC_RELEASE);
    setpriority(PRIO_PROCESS, (id_t)tid, COMPACT_NICE); /* best effort */
    k->result = rtcr_image_compaction_run(k->c, &k->err);
    k->written = 1;
    if (k->result == 0 && k->dir) {
        size_t len;
        const void *buf = rtcr_epoch_bytes(rtcr_image_compaction_result(k->c), &len);
        k->written = rtcr_image_write_epoch_file(
            k->dir, rtcr_epoch_target(rtcr_image_compaction_result(k->c)), buf, len, &k->err);
    }
    k->usec = now_usec() - t0;
    atomic_store(&k->done, true);
    return NULL;
}

/* Drop the memory the last compaction kept, if any. */
static void compact_forget(struct rtcr_target *t)
{
    rtcr_memstate_destroy(&t->compact_mem);
    t->compact_mem_of = NULL;
}

/* Start compacting the chain up to its newest epoch. 0 or -errno (then nothing runs). */
static int compact_start(struct rtcr_target *t)
{
    struct compactor *k = calloc(1, sizeof(*k));
    rtcr_image_err_t ierr = {{0}};
    int r;

    uint64_t from = rtcr_image_first(t->image), upto = rtcr_image_last(t->image);
    if (!k) {
        compact_note_start(t, NULL, from, upto);
        compact_note_end(t, NULL, from, upto, RTCR_COMPACTION_FAILED,
                         "compaction of epochs %" PRIu64 "..%" PRIu64 " could not start: %s", from,
                         upto, strerror(ENOMEM));
        return -ENOMEM;
    }
    k->from = from;
    k->upto = upto;
    if ((r = rtcr_image_compaction_new(t->image, upto, &ierr, &k->c)) < 0)
        goto fail;
    /* the memory the last compaction left is that of the chain's first epoch while that is
     * still the epoch it built: then only the epochs since are decoded */
    if (t->compact_mem &&
        rtcr_image_epoch(t->image, rtcr_image_first(t->image)) == t->compact_mem_of)
        k->on_kept = rtcr_image_compaction_set_memory(k->c, &t->compact_mem) == 0;
    compact_forget(t);
    if (t->ckpt.state_dir && !(k->dir = strdup(t->ckpt.state_dir))) {
        r = -ENOMEM;
        goto fail;
    }
    atomic_init(&k->done, false);
    pthread_mutex_init(&k->hold_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->hold_cond, &ca);
    pthread_condattr_destroy(&ca);
    rtcr_image_compaction_set_progress(k->c, compact_yield, k);
    if ((r = -pthread_create(&k->thread, NULL, compact_main, k)) < 0) {
        pthread_cond_destroy(&k->hold_cond);
        pthread_mutex_destroy(&k->hold_lock);
        goto fail;
    }
    t->compactor = k;
    compact_note_start(t, k, from, upto);
    return 0;
fail:
    compact_note_start(t, NULL, from, upto);
    compact_note_end(t, NULL, from, upto, RTCR_COMPACTION_FAILED,
                     "compaction of epochs %" PRIu64 "..%" PRIu64 " could not start: %s", from,
                     upto, ierr.msg[0] ? ierr.msg : strerror(-r));
    rtcr_image_compaction_destroy(&k->c);
    free(k->dir);
    free(k);
    return r;
}

/* Finish the running compaction, if any: when it is done (or `wait`: after waiting for it,
 * with the thread raised to normal priority so that it cannot starve), commit it when
 * `commit` and the chain is still the one it read, delete the epoch files it superseded, and
 * free it; the memory of the committed epoch is kept for the next compaction. Without
 * `commit` (the chain is about to be replaced) that memory is freed as well. st (may be
 * NULL) gets how long the compaction ran (0 if none finished) and whether it built on kept
 * memory. Returns the epoch the committed full epoch replaced, 0 if none was committed. */
static uint64_t compact_finish(struct rtcr_target *t, bool wait, bool commit,
                               rtcr_epoch_stats_t *st)
{
    struct compactor *k = t->compactor;
    rtcr_image_err_t ierr = {{0}};
    uint64_t upto = 0;

    if (st) {
        st->compact_usec = 0;
        st->compact_on_kept = false;
    }
    if (!commit)
        compact_forget(t);
    if (!k || (!wait && !atomic_load(&k->done)))
        return 0;
    pid_t tid = __atomic_load_n(&k->tid, __ATOMIC_ACQUIRE);
    if (!atomic_load(&k->done) && tid > 0)
        setpriority(PRIO_PROCESS, (id_t)tid, 0); /* needs CAP_SYS_NICE; best effort */
    compact_hold(t, false);
    pthread_join(k->thread, NULL);
    t->compactor = NULL;
    if (st) {
        st->compact_usec = k->usec;
        st->compact_on_kept = k->on_kept;
    }
    /* every end is recorded (compact_note_end): a failure leaves the chain as it was and the
     * next checkpoint that finds it too long starts a new compaction */
    if (!commit) {
        compact_note_end(t, k, k->from, k->upto, RTCR_COMPACTION_DISCARDED, NULL);
    } else if (k->result < 0) {
        compact_note_end(t, k, k->from, k->upto, RTCR_COMPACTION_FAILED,
                         "compaction of epochs %" PRIu64 "..%" PRIu64 " failed: %s", k->from,
                         k->upto, k->err.msg[0] ? k->err.msg : strerror(-k->result));
    } else {
        uint64_t e = rtcr_image_compaction_epoch(k->c);
        rtcr_memstate_t *mem = rtcr_image_compaction_take_memory(k->c);
        const rtcr_epoch_t *full = NULL;
        /* under the lock: the standby's apply thread looks epochs up in t->image */
        pthread_mutex_lock(&t->lock);
        int cr = rtcr_image_compaction_commit(t->image, &k->c, &ierr, &full);
        pthread_mutex_unlock(&t->lock);
        if (cr < 0) {
            rtcr_memstate_destroy(&mem);
            compact_note_end(t, k, k->from, k->upto, RTCR_COMPACTION_FAILED,
                             "compaction of epochs %" PRIu64 "..%" PRIu64 " not committed: %s",
                             k->from, k->upto, ierr.msg[0] ? ierr.msg : strerror(-cr));
        } else {
            upto = e;
            rtcr_memstate_destroy(&t->compact_mem);
            t->compact_mem = mem;
            t->compact_mem_of = full;
            /* the full epoch's file is fsynced: the files it supersedes can go. Without it
             * they stay, and the chain on disk is the one before the compaction, complete;
             * in memory the full epoch replaces them all the same (memory stays bounded) */
            if (k->written == 0)
                rtcr_image_prune_dir(k->dir, t->name, e, &ierr);
            if (k->written < 0)
                compact_note_end(t, k, k->from, k->upto, RTCR_COMPACTION_UNWRITTEN,
                                 "compaction of epochs %" PRIu64 "..%" PRIu64
                                 ": full epoch %" PRIu64
                                 " not written (committed in memory only; the files of epochs "
                                 "%" PRIu64 "..%" PRIu64 " stay): %s",
                                 k->from, k->upto, e, k->from, k->upto,
                                 k->err.msg[0] ? k->err.msg : strerror(-k->written));
            else
                compact_note_end(t, k, k->from, k->upto, RTCR_COMPACTION_COMMITTED, NULL);
        }
    }
    rtcr_image_compaction_destroy(&k->c);
    pthread_cond_destroy(&k->hold_cond);
    pthread_mutex_destroy(&k->hold_lock);
    free(k->dir);
    free(k);
    return upto;
}

void ckpt_target_fini(struct rtcr_target *t)
{
    compact_finish(t, true, false, NULL);
    ckpt_incarnation_end(t);
    standby_fini(t);
    rtcr_image_destroy(&t->image);
    free((char *)t->ckpt.state_dir);
    t->ckpt.state_dir = NULL;
    pthread_cond_destroy(&t->freeze_cond);
    pthread_mutex_destroy(&t->freeze_lock);
}

int rtcr_target_set_ckpt_params(rtcr_target_t *t, const rtcr_ckpt_params_t *p)
{
    if (!p || (p->dirty_mode != -1 && (p->dirty_mode < 0 || p->dirty_mode >= RTCR_DIRTY_MODE_MAX)))
        return -EINVAL;
    if (p->granularity < 4096 || (p->granularity & (p->granularity - 1)) ||
        p->granularity > RTCR_DIRTY_MAX_GRANULARITY || p->quiesce_timeout_usec == 0)
        return -EINVAL;
    char *dir = NULL;
    if (p->state_dir && *p->state_dir && !(dir = strdup(p->state_dir)))
        return -ENOMEM;
    compact_finish(t, true, true, NULL);
    if (!p->max_chain)
        compact_forget(t); /* no compaction from now on will take it */
    free((char *)t->ckpt.state_dir);
    t->ckpt = *p;
    t->ckpt.state_dir = dir;
    return 0;
}

/* ---- quiesce ------------------------------------------------------------------------------ */

void ckpt_park_if_freezing(struct rtcr_target *t)
{
    /* called with freeze_lock held by the mirror (see rtcr_target.c) */
    while (t->freezing && !__atomic_load_n(&t->dead, __ATOMIC_ACQUIRE))
        pthread_cond_wait(&t->freeze_cond, &t->freeze_lock);
}

static void thaw(struct rtcr_target *t)
{
    pthread_mutex_lock(&t->freeze_lock);
    t->freezing = false;
    pthread_cond_broadcast(&t->freeze_cond);
    pthread_mutex_unlock(&t->freeze_lock);
}

/* Sample every mirror: all blocked in a wait? Fills served[] with the served counters and
 * returns the index of a busy thread, or -1 when all wait. */
static int sample(struct rtcr_target *t, uint64_t *served)
{
    int busy = -1;
    for (unsigned i = 0; i < RTCR_THREAD_MAX; i++) {
        struct tthread *th = &t->threads[i];
        if (!th->m)
            continue;
        rtcr_utcb_mirror_stats_t st;
        rtcr_utcb_mirror_stats(th->m, &st);
        served[i] = st.served;
        if (rtcr_utcb_mirror_state(th->m) != RTCR_UTCB_MIRROR_WAIT && busy < 0)
            busy = (int)i;
    }
    return busy;
}

static int quiesce(struct rtcr_target *t, char *err, size_t errsz)
{
    static __thread uint64_t s1[RTCR_THREAD_MAX], s2[RTCR_THREAD_MAX];
    pthread_mutex_lock(&t->freeze_lock);
    t->freezing = true;
    pthread_mutex_unlock(&t->freeze_lock);
    /* every delivery that checked the flag before it was set has completed now */
    uint64_t deadline = now_usec() + t->ckpt.quiesce_timeout_usec;
    for (;;) {
        int busy = sample(t, s1);
        if (busy < 0) {
            busy = sample(t, s2);
            if (busy < 0 && memcmp(s1, s2, sizeof(s1)) == 0)
                return 0;
        }
        if (now_usec() >= deadline) {
            thaw(t);
            unsigned i = busy < 0 ? 0 : (unsigned)busy;
            set_err(err, errsz,
                    "target '%s' did not quiesce within %" PRIu64 " ms: thread '%s' (index %u) "
                    "did not reach a wait",
                    t->name, t->ckpt.quiesce_timeout_usec / 1000, t->threads[i].name, i);
            return -ETIMEDOUT;
        }
        if (busy >= 0 && t->threads[busy].m)
            rtcr_utcb_mirror_wait_state(t->threads[busy].m,
                                        RTCR_UTCB_MIRROR_MASK(RTCR_UTCB_MIRROR_WAIT), 1000);
        else
            sched_yield();
    }
}

/* ---- staging ------------------------------------------------------------------------------ */

/* The staging buffer is filled in two steps: while the collect reports runs, stage_add() only
 * reserves room and records where the bytes come from (so the buffer may still move when it
 * grows); stage_copy_begin() then hands all chunks to the dirty tracker, which copies them on
 * two threads for large epochs (rtcr_dirty_copy_begin), and stage_copy_finish() waits for
 * that. Chunks keep their order and offsets, so the bytes are the same as a serial copy's. */
struct chunk {
    uint32_t badge;     /* dataspace */
    uint64_t offset;    /* in the dataspace */
    size_t len;         /* bytes */
    size_t at;          /* offset in stage.data */
    const uint8_t *src; /* the agent's view of the bytes (the pool), until copied */
};

struct stage {
    struct chunk *v;       /* chunks */
    size_t n, cap;         /* used / allocated chunks */
    uint8_t *data;         /* copied bytes */
    size_t used, size;     /* used / allocated bytes */
    rtcr_dirty_copy_t *cp; /* copy segments of the copy in progress */
    size_t cap_cp;         /* allocated entries of cp */
    rtcr_dirty_t *copier;  /* the tracker copying, NULL when no copy is in progress */
};

static int stage_add(struct stage *s, uint32_t badge, uint64_t offset, const void *src, size_t len)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        struct chunk *v = realloc(s->v, ncap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = ncap;
    }
    if (s->used + len > s->size) {
        size_t nsize = s->size ? s->size : (1u << 20);
        while (nsize < s->used + len)
            nsize *= 2;
        uint8_t *d = realloc(s->data, nsize);
        if (!d)
            return -ENOMEM;
        s->data = d;
        s->size = nsize;
    }
    s->v[s->n++] = (struct chunk){badge, offset, len, s->used, src};
    s->used += len;
    return 0;
}

/* Start copying every staged chunk to its place (dirty's copier: two threads when large). */
static int stage_copy_begin(struct stage *s, rtcr_dirty_t *dirty)
{
    if (s->n > s->cap_cp) {
        rtcr_dirty_copy_t *cp = realloc(s->cp, s->n * sizeof(*cp));
        if (!cp)
            return -ENOMEM;
        s->cp = cp;
        s->cap_cp = s->n;
    }
    for (size_t i = 0; i < s->n; i++)
        s->cp[i] = (rtcr_dirty_copy_t){s->data + s->v[i].at, s->v[i].src, s->v[i].len};
    int r = rtcr_dirty_copy_begin(dirty, s->cp, s->n);
    if (r >= 0)
        s->copier = dirty;
    return r;
}

/* Wait until the copy begun by stage_copy_begin() is done (nothing if none was begun). */
static void stage_copy_finish(struct stage *s)
{
    if (s && s->copier) {
        rtcr_dirty_copy_finish(s->copier);
        s->copier = NULL;
    }
}

static void stage_free(struct stage *s)
{
    free(s->v);
    free(s->data);
    free(s->cp);
    memset(s, 0, sizeof(*s));
}

/* The target's staging buffer, emptied but with its memory kept (NULL on out-of-memory). */
static struct stage *stage_get(struct rtcr_target *t)
{
    if (!t->staging)
        t->staging = calloc(1, sizeof(struct stage));
    struct stage *s = t->staging;
    if (s) {
        s->n = 0;
        s->used = 0;
    }
    return s;
}

/* ---- memory ------------------------------------------------------------------------------- */

static struct dataspace *ds_of(struct rtcr_target *t, rtcr_badge_t badge)
{
    for (struct session *s = t->sessions; s; s = s->next) {
        if (s->type == RTCR_SVC_RAM)
            for (struct dataspace *d = s->u.ram.dss; d; d = d->next)
                if (d->o.badge == badge)
                    return d;
        if (s->type == RTCR_SVC_ROM && s->u.rom.ds && s->u.rom.ds->o.badge == badge)
            return s->u.rom.ds;
    }
    return NULL;
}

static bool known(struct rtcr_target *t, rtcr_badge_t badge)
{
    for (size_t i = 0; i < t->n_known_ds; i++)
        if (t->known_ds[i] == badge)
            return true;
    return false;
}

static int make_tracker(struct rtcr_target *t)
{
    rtcr_dirty_mode_t mode;
    int uffd = -1, r;
    if (t->ckpt.dirty_mode >= 0)
        mode = (rtcr_dirty_mode_t)t->ckpt.dirty_mode;
    else
        mode = rtcr_dirty_probe(NULL, 0);
    if (mode == RTCR_DIRTY_UFFD_WP) {
        r = rtcr_dirty_recv_uffd(t->sock_fd, &uffd);
        if (r < 0)
            mode = RTCR_DIRTY_HASH; /* the component did not hand over a userfaultfd */
    }
    r = rtcr_dirty_new(mode, t->pid, mode == RTCR_DIRTY_UFFD_WP ? uffd : -1, t->ckpt.granularity,
                       &t->dirty);
    if (uffd >= 0)
        close(uffd);
    if (r < 0 && mode == RTCR_DIRTY_UFFD_WP)
        r = rtcr_dirty_new(RTCR_DIRTY_HASH, t->pid, -1, t->ckpt.granularity, &t->dirty);
    return r;
}

/* Make the tracker's ranges equal to the current attachments. */
static int sync_ranges(struct rtcr_target *t)
{
    size_t n = 0;
    for (struct session *s = t->sessions; s; s = s->next)
        if (s->type == RTCR_SVC_RM)
            for (struct attachment *a = s->u.rm.atts; a; a = a->next)
                n++;
    struct tracked *want = calloc(n ? n : 1, sizeof(*want));
    void **views = calloc(n ? n : 1, sizeof(*views));
    if (!want || !views) {
        free(want);
        free(views);
        return -ENOMEM;
    }
    n = 0;
    for (struct session *s = t->sessions; s; s = s->next) {
        if (s->type != RTCR_SVC_RM)
            continue;
        for (struct attachment *a = s->u.rm.atts; a; a = a->next) {
            struct dataspace *d = ds_of(t, a->ds_badge);
            if (!d)
                continue;
            want[n].addr = a->addr;
            want[n].len = a->size;
            views[n] = t->pool + d->pool_off + a->offset;
            n++;
        }
    }
    int r = 0;
    for (size_t i = 0; i < t->n_tracked; i++) { /* drop what is no longer attached */
        bool keep = false;
        for (size_t j = 0; j < n && !keep; j++)
            keep = want[j].addr == t->tracked[i].addr && want[j].len == t->tracked[i].len;
        if (!keep)
            rtcr_dirty_remove_range(t->dirty, (uintptr_t)t->tracked[i].addr);
    }
    for (size_t j = 0; j < n && r >= 0; j++) { /* add what is new */
        bool have = false;
        for (size_t i = 0; i < t->n_tracked && !have; i++)
            have = want[j].addr == t->tracked[i].addr && want[j].len == t->tracked[i].len;
        if (!have)
            r = rtcr_dirty_add_range(t->dirty, (uintptr_t)want[j].addr, want[j].len, views[j]);
    }
    free(views);
    free(t->tracked);
    t->tracked = want;
    t->n_tracked = n;
    return r;
}

struct collect_ctx {
    struct rtcr_target *t;    /* target */
    struct stage *st;         /* staging */
    struct attachment *hit;   /* attachment of the previous run (runs come in address order,
                                 so most runs hit the same one), or NULL */
    struct dataspace *hit_ds; /* its dataspace */
    bool hit_store;           /* whether its runs are staged (known and writable) */
};

/* A written range of the target: store it per dataspace, except for dataspaces copied whole. */
static int on_dirty(void *p, uintptr_t addr, void *view, size_t len)
{
    struct collect_ctx *c = p;
    (void)view;
    while (len) {
        struct attachment *hit = c->hit;
        if (!hit || addr < hit->addr || addr >= hit->addr + hit->size) {
            hit = NULL;
            for (struct session *s = c->t->sessions; s && !hit; s = s->next)
                if (s->type == RTCR_SVC_RM)
                    for (struct attachment *a = s->u.rm.atts; a && !hit; a = a->next)
                        if (addr >= a->addr && addr < a->addr + a->size)
                            hit = a;
            if (!hit)
                return -EFAULT; /* tracker and attachments disagree: make the next epoch full */
            struct dataspace *d = ds_of(c->t, hit->ds_badge);
            if (!d)
                return -EFAULT;
            c->hit = hit;
            c->hit_ds = d;
            c->hit_store = known(c->t, d->o.badge) && !d->readonly;
        }
        size_t n = hit->addr + hit->size - addr;
        if (n > len)
            n = len;
        struct dataspace *d = c->hit_ds;
        uint64_t off = hit->offset + (addr - hit->addr);
        if (c->hit_store) {
            int r = stage_add(c->st, d->o.badge, off, c->t->pool + d->pool_off + off, n);
            if (r < 0)
                return r;
        }
        addr += n;
        len -= n;
    }
    return 0;
}

/* Copy every dataspace the previous epoch did not store, whole. */
static int stage_new_dataspaces(struct rtcr_target *t, struct stage *st, uint64_t *pages)
{
    for (struct session *s = t->sessions; s; s = s->next) {
        if (s->type != RTCR_SVC_RAM)
            continue;
        for (struct dataspace *d = s->u.ram.dss; d; d = d->next) {
            if (known(t, d->o.badge))
                continue;
            int r = stage_add(st, d->o.badge, 0, t->pool + d->pool_off, d->size);
            if (r < 0)
                return r;
            *pages += d->size / 4096;
        }
    }
    return 0;
}

static int remember_dataspaces(struct rtcr_target *t)
{
    size_t n = 0;
    for (struct session *s = t->sessions; s; s = s->next)
        if (s->type == RTCR_SVC_RAM)
            for (struct dataspace *d = s->u.ram.dss; d; d = d->next)
                n++;
    uint32_t *v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    n = 0;
    for (struct session *s = t->sessions; s; s = s->next)
        if (s->type == RTCR_SVC_RAM)
            for (struct dataspace *d = s->u.ram.dss; d; d = d->next)
                v[n++] = d->o.badge;
    free(t->known_ds);
    t->known_ds = v;
    t->n_known_ds = n;
    return 0;
}

/* ---- stored state (protobuf) -------------------------------------------------------------- */

struct arena {
    void **blocks; /* every allocation */
    size_t n, cap; /* used / allocated */
    bool oom;      /* an allocation failed */
};

static void *aalloc(struct arena *a, size_t size)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 256;
        void **b = realloc(a->blocks, ncap * sizeof(*b));
        if (!b) {
            a->oom = true;
            return NULL;
        }
        a->blocks = b;
        a->cap = ncap;
    }
    void *p = calloc(1, size ? size : 1);
    if (!p) {
        a->oom = true;
        return NULL;
    }
    a->blocks[a->n++] = p;
    return p;
}

static char *astr(struct arena *a, const char *s)
{
    char *p = aalloc(a, strlen(s) + 1);
    if (p)
        strcpy(p, s);
    return p;
}

static void afree(struct arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof(*a));
}

#define ANEW(a, T, init)                                                                           \
    ({                                                                                             \
        T *p_ = aalloc(a, sizeof(T));                                                              \
        if (p_) {                                                                                  \
            T i_ = init;                                                                           \
            *p_ = i_;                                                                              \
        }                                                                                          \
        p_;                                                                                        \
    })
#define AVEC(a, T, n) ((T **)aalloc(a, sizeof(T *) * ((n) ? (n) : 1)))

static int session_cmp(const void *x, const void *y)
{
    const struct session *a = *(struct session *const *)x, *b = *(struct session *const *)y;
    return a->o.created_seq < b->o.created_seq ? -1 : a->o.created_seq > b->o.created_seq;
}

static RtcrImg__SessionType session_type(enum rtcr_service s)
{
    static const RtcrImg__SessionType m[RTCR_SVC_MAX] = {
        [RTCR_SVC_PD] = RTCR_IMG__SESSION_TYPE__SESSION_PD,
        [RTCR_SVC_CPU] = RTCR_IMG__SESSION_TYPE__SESSION_CPU,
        [RTCR_SVC_RAM] = RTCR_IMG__SESSION_TYPE__SESSION_RAM,
        [RTCR_SVC_RM] = RTCR_IMG__SESSION_TYPE__SESSION_RM,
        [RTCR_SVC_ROM] = RTCR_IMG__SESSION_TYPE__SESSION_ROM,
        [RTCR_SVC_LOG] = RTCR_IMG__SESSION_TYPE__SESSION_LOG,
        [RTCR_SVC_TIMER] = RTCR_IMG__SESSION_TYPE__SESSION_TIMER,
        [RTCR_SVC_IRQ] = RTCR_IMG__SESSION_TYPE__SESSION_IRQ,
    };
    return m[s];
}

static void fill_pd(struct arena *a, struct rtcr_target *t, struct session *s, RtcrImg__Session *ps)
{
    RtcrImg__PdSession *pd = ANEW(a, RtcrImg__PdSession, RTCR_IMG__PD_SESSION__INIT);
    if (!pd)
        return;
    size_t n = 0;
    for (struct sigsrc *x = s->u.pd.sources; x; x = x->next)
        n++;
    pd->signal_sources = AVEC(a, RtcrImg__SignalSource, n);
    for (struct sigsrc *x = s->u.pd.sources; x && pd->signal_sources; x = x->next) {
        RtcrImg__SignalSource *e = ANEW(a, RtcrImg__SignalSource, RTCR_IMG__SIGNAL_SOURCE__INIT);
        if (!e)
            return;
        rtcr_irq_state_t is;
        if (rtcr_irq_state(t->ecu->kernel, x->irq, &is) == 0) {
            e->irq_pending = is.pending;
            e->irq_masked = is.masked;
        }
        e->badge = (uint32_t)x->id;
        e->ep_thread = x->ep_index;
        pd->signal_sources[pd->n_signal_sources++] = e;
    }
    n = 0;
    for (struct sigctx *x = s->u.pd.contexts; x; x = x->next)
        n++;
    pd->signal_contexts = AVEC(a, RtcrImg__SignalContext, n);
    for (struct sigctx *x = s->u.pd.contexts; x && pd->signal_contexts; x = x->next) {
        RtcrImg__SignalContext *e = ANEW(a, RtcrImg__SignalContext, RTCR_IMG__SIGNAL_CONTEXT__INIT);
        if (!e)
            return;
        e->badge = x->o.badge;
        e->source_badge = (uint32_t)x->source_id;
        e->imprint = x->imprint;
        e->pending = x->pending;
        pd->signal_contexts[pd->n_signal_contexts++] = e;
    }
    n = 0;
    for (struct rpcobj *x = s->u.pd.rpcs; x; x = x->next)
        n++;
    pd->native_caps = AVEC(a, RtcrImg__NativeCap, n);
    for (struct rpcobj *x = s->u.pd.rpcs; x && pd->native_caps; x = x->next) {
        RtcrImg__NativeCap *e = ANEW(a, RtcrImg__NativeCap, RTCR_IMG__NATIVE_CAP__INIT);
        if (!e)
            return;
        e->badge = x->o.badge;
        e->ep_thread = x->ep_index;
        pd->native_caps[pd->n_native_caps++] = e;
    }
    pd->cap_space_info = ANEW(a, RtcrImg__CapSpaceInfo, RTCR_IMG__CAP_SPACE_INFO__INIT);
    if (pd->cap_space_info && s->u.pd.root_addr) {
        RtcrImg__MemRange *cm = ANEW(a, RtcrImg__MemRange, RTCR_IMG__MEM_RANGE__INIT);
        RtcrImg__MemRange *op = ANEW(a, RtcrImg__MemRange, RTCR_IMG__MEM_RANGE__INIT);
        if (!cm || !op)
            return;
        cm->addr = s->u.pd.root_addr + offsetof(struct rtcr_croot, capmap);
        cm->size = sizeof(((struct rtcr_croot *)0)->capmap);
        op->addr = s->u.pd.root_addr + offsetof(struct rtcr_croot, pool);
        op->size = sizeof(((struct rtcr_croot *)0)->pool);
        pd->cap_space_info->cap_map = cm;
        pd->cap_space_info->object_pool = op;
    }
    pd->cap_limit = t->cap_limit;
    ps->pd = pd;
    ps->state_case = RTCR_IMG__SESSION__STATE_PD;
}

static void fill_session(struct arena *a, struct rtcr_target *t, struct session *s,
                         RtcrImg__Session *ps)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    ps->type = session_type(s->type);
    ps->badge = s->o.badge;
    ps->creation_args = astr(a, s->args);
    ps->upgrade_args = astr(a, s->upgrade);
    ps->bootstrapped = s->o.bootstrapped;
    ps->ram_quota = s->quota;
    switch (s->type) {
    case RTCR_SVC_PD:
        fill_pd(a, t, s, ps);
        break;
    case RTCR_SVC_CPU: {
        RtcrImg__CpuSession *c = ANEW(a, RtcrImg__CpuSession, RTCR_IMG__CPU_SESSION__INIT);
        if (!c || !(c->threads = AVEC(a, RtcrImg__Thread, RTCR_THREAD_MAX)))
            return;
        for (unsigned i = 0; i < RTCR_THREAD_MAX; i++) {
            if (!t->threads[i].kthread)
                continue;
            RtcrImg__Thread *th = ANEW(a, RtcrImg__Thread, RTCR_IMG__THREAD__INIT);
            if (!th)
                return;
            th->index = i;
            th->name = astr(a, t->threads[i].name);
            th->is_entrypoint = true;
            th->started = true;
            rtcr_kobj_t *g;
            unsigned rights;
            if (rtcr_task_lookup(k, t->task, RTCR_THREAD_SLOT(i, RTCR_THREAD_GATE_OFF), &g,
                                 &rights) == 0) {
                th->gate_badge = rtcr_kobj_badge(g);
                rtcr_kobj_unref(&g);
            }
            c->threads[c->n_threads++] = th;
        }
        ps->cpu = c;
        ps->state_case = RTCR_IMG__SESSION__STATE_CPU;
        break;
    }
    case RTCR_SVC_RAM: {
        RtcrImg__RamSession *r = ANEW(a, RtcrImg__RamSession, RTCR_IMG__RAM_SESSION__INIT);
        size_t n = 0;
        for (struct dataspace *d = s->u.ram.dss; d; d = d->next)
            n++;
        if (!r || !(r->dataspaces = AVEC(a, RtcrImg__Dataspace, n)))
            return;
        for (struct dataspace *d = s->u.ram.dss; d; d = d->next) {
            RtcrImg__Dataspace *e = ANEW(a, RtcrImg__Dataspace, RTCR_IMG__DATASPACE__INIT);
            if (!e)
                return;
            e->badge = d->o.badge;
            e->size = d->size;
            e->quota_used = d->size;
            e->cached = true;
            e->timestamp = d->o.created_seq;
            r->dataspaces[r->n_dataspaces++] = e;
        }
        r->quota_limit = t->ram_quota;
        ps->ram = r;
        ps->state_case = RTCR_IMG__SESSION__STATE_RAM;
        break;
    }
    case RTCR_SVC_RM: {
        RtcrImg__RmSession *r = ANEW(a, RtcrImg__RmSession, RTCR_IMG__RM_SESSION__INIT);
        RtcrImg__RegionMap *m = ANEW(a, RtcrImg__RegionMap, RTCR_IMG__REGION_MAP__INIT);
        size_t n = 0;
        for (struct attachment *x = s->u.rm.atts; x; x = x->next)
            n++;
        if (!r || !m || !(r->region_maps = AVEC(a, RtcrImg__RegionMap, 1)) ||
            !(m->attachments = AVEC(a, RtcrImg__Attachment, n)))
            return;
        m->badge = s->o.badge;
        m->size = RTCR_AS_SIZE;
        m->role = RTCR_IMG__REGION_MAP_ROLE__RM_ROLE_ADDRESS_SPACE;
        for (struct attachment *x = s->u.rm.atts; x; x = x->next) {
            RtcrImg__Attachment *e = ANEW(a, RtcrImg__Attachment, RTCR_IMG__ATTACHMENT__INIT);
            if (!e)
                return;
            e->ds_badge = x->ds_badge;
            e->addr = x->addr;
            e->size = x->size;
            e->offset = x->offset;
            e->writable = (x->flags & RTCR_RM_WRITABLE) != 0;
            e->executable = (x->flags & RTCR_RM_EXECUTABLE) != 0;
            m->attachments[m->n_attachments++] = e;
        }
        r->region_maps[r->n_region_maps++] = m;
        ps->rm = r;
        ps->state_case = RTCR_IMG__SESSION__STATE_RM;
        break;
    }
    case RTCR_SVC_ROM: {
        RtcrImg__RomSession *r = ANEW(a, RtcrImg__RomSession, RTCR_IMG__ROM_SESSION__INIT);
        if (!r)
            return;
        r->module = astr(a, s->u.rom.module);
        r->ds_badge = s->u.rom.ds ? s->u.rom.ds->o.badge : 0;
        r->length = s->u.rom.length;
        if (s->u.rom.ds)
            r->content_hash = XXH3_64bits(t->pool + s->u.rom.ds->pool_off, s->u.rom.length);
        ps->rom = r;
        ps->state_case = RTCR_IMG__SESSION__STATE_ROM;
        break;
    }
    case RTCR_SVC_LOG: {
        RtcrImg__LogSession *l = ANEW(a, RtcrImg__LogSession, RTCR_IMG__LOG_SESSION__INIT);
        if (!l)
            return;
        l->label = astr(a, s->u.log.label);
        ps->log = l;
        ps->state_case = RTCR_IMG__SESSION__STATE_LOG;
        break;
    }
    case RTCR_SVC_TIMER: {
        RtcrImg__TimerSession *x = ANEW(a, RtcrImg__TimerSession, RTCR_IMG__TIMER_SESSION__INIT);
        if (!x)
            return;
        uint64_t now = now_usec();
        x->sigh_badge = s->u.timer.sigh;
        x->periodic = s->u.timer.period_usec != 0;
        x->armed = s->u.timer.deadline_usec != 0;
        x->period_usec = s->u.timer.period_usec;
        x->remaining_usec =
            x->armed && s->u.timer.deadline_usec > now ? s->u.timer.deadline_usec - now : 0;
        x->elapsed_usec = now - s->u.timer.epoch_usec;
        ps->timer = x;
        ps->state_case = RTCR_IMG__SESSION__STATE_TIMER;
        break;
    }
    case RTCR_SVC_IRQ: {
        RtcrImg__IrqSession *x = ANEW(a, RtcrImg__IrqSession, RTCR_IMG__IRQ_SESSION__INIT);
        if (!x)
            return;
        x->line = s->u.irq.line;
        x->sigh_badge = s->u.irq.sigh;
        x->ack_state = s->u.irq.unmasked ? RTCR_IMG__IRQ_ACK_STATE__IRQ_ACKED
                                         : RTCR_IMG__IRQ_ACK_STATE__IRQ_WAITING_FOR_ACK;
        x->pending = s->u.irq.pending;
        x->count = s->u.irq.count;
        ps->irq = x;
        ps->state_case = RTCR_IMG__SESSION__STATE_IRQ;
        break;
    }
    default:
        break;
    }
}

struct capctx {
    struct arena *a;                                           /* allocations */
    struct rtcr_target *t;                                     /* target */
    RtcrImg__CapSpace *cs;                                     /* output */
    uint64_t area_ids[RTCR_THREAD_MAX][RTCR_THREAD_AREA_SLOT]; /* thread-area object ids */
    char *err;                                                 /* error text */
    size_t errsz;                                              /* its size */
};

static int identify(struct capctx *c, const rtcr_cap_info_t *cap, RtcrImg__ObjectRef *ref)
{
    struct rtcr_target *t = c->t;
    if (cap->type == RTCR_KOBJ_TASK && cap->object == t->task) {
        ref->role = RTCR_IMG__OBJ_ROLE__ROLE_TASK;
        return 0;
    }
    if (cap->type == RTCR_KOBJ_GATE) {
        struct obj *o = rtcr_kobj_user(cap->object);
        if (o && o == t->parent) {
            ref->role = RTCR_IMG__OBJ_ROLE__ROLE_PARENT;
            return 0;
        }
        if (o && o->t == t && o->gate == cap->object) {
            ref->role = RTCR_IMG__OBJ_ROLE__ROLE_RPC_OBJECT;
            ref->badge = o->badge;
            return 0;
        }
    }
    for (unsigned i = 0; i < RTCR_THREAD_MAX; i++)
        for (unsigned k = 0; k < RTCR_THREAD_AREA_SLOT; k++)
            if (c->area_ids[i][k] && c->area_ids[i][k] == cap->object_id) {
                static const RtcrImg__ObjRole roles[RTCR_THREAD_AREA_SLOT] = {
                    RTCR_IMG__OBJ_ROLE__ROLE_THREAD_GATE, RTCR_IMG__OBJ_ROLE__ROLE_THREAD_PAGER,
                    RTCR_IMG__OBJ_ROLE__ROLE_THREAD_IRQ};
                ref->role = roles[k];
                ref->thread_index = i;
                return 0;
            }
    if (cap->type == RTCR_KOBJ_IRQ)
        for (struct session *s = t->sessions; s; s = s->next)
            if (s->type == RTCR_SVC_PD)
                for (struct sigsrc *x = s->u.pd.sources; x; x = x->next)
                    if (x->irq == cap->object) {
                        ref->role = RTCR_IMG__OBJ_ROLE__ROLE_SIGNAL_SOURCE;
                        ref->badge = (uint32_t)x->id;
                        return 0;
                    }
    set_err(c->err, c->errsz, "slot %#x holds a %s ('%s') that the checkpointer cannot identify",
            cap->slot, rtcr_kobj_type_name(cap->type), cap->name ? cap->name : "");
    return -EPROTO;
}

static int on_cap(void *p, const rtcr_cap_info_t *cap)
{
    struct capctx *c = p;
    if (cap->stale)
        return 0; /* a capability to a destroyed object: the slot is garbage, not state */
    RtcrImg__CapEntry *e = ANEW(c->a, RtcrImg__CapEntry, RTCR_IMG__CAP_ENTRY__INIT);
    RtcrImg__ObjectRef *ref = ANEW(c->a, RtcrImg__ObjectRef, RTCR_IMG__OBJECT_REF__INIT);
    if (!e || !ref)
        return -ENOMEM;
    int r = identify(c, cap, ref);
    if (r < 0)
        return r;
    e->slot = cap->slot;
    e->type = (RtcrImg__KobjType)cap->type; /* same numbering: NONE, TASK, THREAD, GATE, IRQ */
    e->rights = cap->rights;
    e->object = ref;
    c->cs->entries[c->cs->n_entries++] = e;
    return 0;
}

/* Serialise the stored state; t->lock held, target quiesced. */
static int capture_state(struct rtcr_target *t, struct arena *a, RtcrImg__StoredState **ret,
                         char *err, size_t errsz)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    RtcrImg__StoredState *st = ANEW(a, RtcrImg__StoredState, RTCR_IMG__STORED_STATE__INIT);
    size_t n = 0;
    for (struct session *s = t->sessions; s; s = s->next)
        n++;
    struct session **sorted = AVEC(a, struct session, n);
    if (!st || !sorted || !(st->sessions = AVEC(a, RtcrImg__Session, n)))
        return -ENOMEM;
    n = 0;
    for (struct session *s = t->sessions; s; s = s->next)
        sorted[n++] = s;
    qsort(sorted, n, sizeof(*sorted), session_cmp);
    for (size_t i = 0; i < n; i++) {
        RtcrImg__Session *ps = ANEW(a, RtcrImg__Session, RTCR_IMG__SESSION__INIT);
        if (!ps)
            return -ENOMEM;
        fill_session(a, t, sorted[i], ps);
        st->sessions[st->n_sessions++] = ps;
    }

    static __thread struct capctx c;
    memset(&c, 0, sizeof(c));
    c.a = a;
    c.t = t;
    c.err = err;
    c.errsz = errsz;
    for (unsigned i = 0; i < RTCR_THREAD_MAX; i++) {
        if (!t->threads[i].kthread)
            continue;
        for (unsigned off = 0; off < RTCR_THREAD_AREA_SLOT; off++) {
            rtcr_kobj_t *o;
            unsigned rights;
            if (rtcr_task_lookup(k, t->task, RTCR_THREAD_SLOT(i, off), &o, &rights) == 0) {
                c.area_ids[i][off] = rtcr_kobj_id(o);
                rtcr_kobj_unref(&o);
            }
        }
    }
    c.cs = ANEW(a, RtcrImg__CapSpace, RTCR_IMG__CAP_SPACE__INIT);
    if (!c.cs || !(c.cs->entries = AVEC(a, RtcrImg__CapEntry, RTCR_CAP_SLOTS)))
        return -ENOMEM;
    int r = rtcr_task_foreach_cap(k, t->task, on_cap, &c);
    if (r != 0)
        return r < 0 ? r : -EIO;
    st->cap_space = c.cs;
    if (a->oom)
        return -ENOMEM;
    *ret = st;
    return 0;
}

/* ---- the epoch ---------------------------------------------------------------------------- */

/* Encoding at SCHED_IDLE (rtcr_ecu_params.encode_idle): the calling thread's own policy is
 * kept in `policy` and `p` and restored by idle_end(), or by idle_check() once the epoch has
 * been encoding for RTCR_ENCODE_IDLE_MAX_MSEC (a busy ECU delays an epoch, never starves it). */
struct idle {
    bool on;              /* the thread runs SCHED_IDLE now */
    bool began;           /* it did at the start */
    bool capped;          /* idle_check() ended it */
    int policy;           /* its own policy */
    struct sched_param p; /* and parameters */
    uint64_t until;       /* now_usec() after which it goes back */
};

static void idle_begin(struct idle *id, const struct rtcr_ecu *ecu)
{
    static const struct sched_param zero = {0};
    id->on = id->began = id->capped = false;
    if (!ecu->encode_idle || pthread_getschedparam(pthread_self(), &id->policy, &id->p) != 0 ||
        id->policy != SCHED_OTHER)
        return; /* a real-time or batch caller keeps what it chose */
    id->until = now_usec() + RTCR_ENCODE_IDLE_MAX_MSEC * 1000u;
    id->on = id->began = pthread_setschedparam(pthread_self(), SCHED_IDLE, &zero) == 0;
}

static void idle_end(struct idle *id)
{
    if (id->on && pthread_setschedparam(pthread_self(), id->policy, &id->p) == 0)
        id->on = false;
}

static void idle_check(void *arg) /* after every frame (rtcr_epoch_builder_set_progress) */
{
    struct idle *id = arg;
    if (id->on && now_usec() >= id->until) {
        idle_end(id);
        id->capped = true;
    }
}

/* Hand the staged chunks to the builder, one rtcr_epoch_add_runs call per stretch of chunks
 * of one dataspace that lie back to back in the staging buffer, so that frames span the
 * scattered small runs a typical epoch has (LZ4 on one 1 MiB frame instead of 256 x 4 KiB). */
static int encode_stage(rtcr_epoch_builder_t *b, const struct stage *st)
{
    rtcr_epoch_run_t *runs = malloc((st->n ? st->n : 1) * sizeof(*runs));
    int r = 0;

    if (!runs)
        return -ENOMEM;
    for (size_t i = 0; i < st->n && r >= 0;) {
        size_t j = i, n = 0;
        do {
            runs[n++] = (rtcr_epoch_run_t){.offset = st->v[j].offset, .len = st->v[j].len};
            j++;
        } while (j < st->n && st->v[j].badge == st->v[i].badge &&
                 st->v[j].at == st->v[j - 1].at + st->v[j - 1].len);
        r = rtcr_epoch_add_runs(b, st->v[i].badge, runs, n, st->data + st->v[i].at);
        i = j;
    }
    free(runs);
    return r;
}

int rtcr_target_checkpoint(rtcr_target_t *t, rtcr_epoch_stats_t *ret_stats, char *err, size_t errsz)
{
    rtcr_epoch_stats_t stats = {0};
    struct stage *st = NULL;
    struct arena a = {0};
    rtcr_epoch_builder_t *b = NULL;
    rtcr_image_err_t ierr = {{0}};
    int r;

    if (t->pid <= 0 || t->dead) {
        set_err(err, errsz, "target '%s' is not running", t->name);
        return -ESRCH;
    }
    if (!t->constructed) {
        set_err(err, errsz, "target '%s' has not finished its construct yet", t->name);
        return -EAGAIN;
    }
    uint64_t t0 = now_usec();
    r = quiesce(t, err, errsz);
    if (r < 0)
        return r;
    uint64_t t1 = now_usec();
    stats.quiesce_usec = t1 - t0;

    pthread_mutex_lock(&t->lock);
    st = stage_get(t);
    bool full = !t->incarnation_has_epoch || !t->image;
    if (full) {
        free(t->known_ds);
        t->known_ds = NULL;
        t->n_known_ds = 0;
    }
    uint64_t epoch =
        full ? (t->image ? rtcr_image_last(t->image) + 1 : 1) : rtcr_image_last(t->image) + 1;
    rtcr_dirty_stats_t ds = {0};
    RtcrImg__StoredState *state = NULL;
    if (!st)
        r = -ENOMEM;
    else if (!t->dirty && (r = make_tracker(t)) < 0)
        set_err(err, errsz, "dirty tracking of '%s' unavailable: %s", t->name, strerror(-r));
    if (r >= 0 && (r = sync_ranges(t)) < 0)
        set_err(err, errsz, "tracking the memory of '%s' failed: %s", t->name, strerror(-r));
    if (r >= 0) {
        struct collect_ctx cc = {.t = t, .st = st};
        r = rtcr_dirty_collect(t->dirty, on_dirty, &cc, &ds);
        if (r < 0)
            set_err(err, errsz, "collecting written pages of '%s' failed: %s", t->name,
                    strerror(-r));
    }
    if (r >= 0)
        r = stage_new_dataspaces(t, st, &stats.pages_written);
    /* the copy runs on the tracker's helper thread while this one captures the stored state,
     * then this one joins in (for small epochs it all runs here, in stage_copy_finish) */
    if (r >= 0)
        r = stage_copy_begin(st, t->dirty);
    if (r >= 0 && (r = capture_state(t, &a, &state, err, errsz)) < 0 && err && !*err)
        set_err(err, errsz, "capturing the state of '%s' failed: %s", t->name, strerror(-r));
    if (r >= 0)
        r = remember_dataspaces(t);
    stage_copy_finish(st);
    const char *mode = t->dirty ? rtcr_dirty_mode_name(rtcr_dirty_mode(t->dirty)) : NULL;
    pthread_mutex_unlock(&t->lock);
    thaw(t); /* the pause ends here: encoding runs while the target runs */
    uint64_t t2 = now_usec(), c2 = thread_cpu_usec();
    stats.freeze_usec = t2 - t1;
    struct idle id;
    idle_begin(&id, t->ecu); /* until the epoch is encoded */
    compact_hold(t, true);   /* and a running compaction waits for it */

    rtcr_epoch_info_t info = {
        .target = t->name,
        .epoch = epoch,
        .parent = full ? 0 : epoch - 1,
        .source_ecu = t->ecu->name,
        .build_id = t->build_id,
        .build_id_len = t->build_id_len > 0 ? (size_t)t->build_id_len : 0,
        .granularity = (uint32_t)t->ckpt.granularity,
        .tracking_mode = mode,
        .pages_scanned = ds.pages_scanned,
        .freeze_usec = stats.freeze_usec,
    };
    if (r >= 0 && (r = rtcr_epoch_builder_new(&info, &b)) < 0)
        set_err(err, errsz, "epoch %" PRIu64 " of '%s': %s", epoch, t->name, strerror(-r));
    if (b)
        rtcr_epoch_builder_set_progress(b, idle_check, &id);
    if (r >= 0 && (r = rtcr_epoch_builder_set_metadata(b, state)) < 0)
        set_err(err, errsz, "epoch %" PRIu64 " of '%s': stored state not encodable: %s", epoch,
                t->name, strerror(-r));
    afree(&a);

    if (r >= 0 && (r = rtcr_epoch_builder_reserve_recycled(b, st->used, t->image)) < 0)
        set_err(err, errsz, "epoch %" PRIu64 " of '%s': %s", epoch, t->name, strerror(-r));
    stats.recycled = r == 1;
    if (r >= 0) {
        if ((r = encode_stage(b, st)) < 0)
            set_err(err, errsz, "epoch %" PRIu64 " of '%s': encoding the pages failed: %s", epoch,
                    t->name, strerror(-r));
        stats.bytes_raw = st->used;
        stats.pages_written = st->used / 4096;
    }
    void *buf = NULL;
    size_t len = 0;
    rtcr_epoch_t *ep = NULL;
    if (r >= 0 && (r = rtcr_epoch_finish(b, &ierr, &buf, &len)) < 0)
        set_err(err, errsz, "%s", ierr.msg);
    rtcr_epoch_builder_destroy(&b);
    compact_hold(t, false);
    idle_end(&id); /* the file write and what follows run at the thread's own policy */
    uint64_t t3 = now_usec();
    stats.encode_usec = t3 - t2;
    stats.encode_cpu_usec = thread_cpu_usec() - c2;
    if (r >= 0 && t->ckpt.state_dir) {
        if ((r = rtcr_image_write_epoch_file(t->ckpt.state_dir, t->name, buf, len, &ierr)) < 0)
            set_err(err, errsz, "epoch %" PRIu64 " of '%s' not written: %s", epoch, t->name,
                    ierr.msg);
        stats.write_usec = now_usec() - t3;
    }
    if (r >= 0) {
        rtcr_image_limits_t lim;
        rtcr_image_limits_default(&lim);
        lim.skip_frame_check = true; /* we just built it */
        r = rtcr_epoch_parse_owned(&buf, len, &lim, &ierr, &ep);
        if (r < 0)
            set_err(err, errsz, "epoch %" PRIu64 " of '%s' does not parse back: %s", epoch, t->name,
                    ierr.msg);
    }
    free(buf);
    idle_end(&id); /* on every path before locks: never hold one at SCHED_IDLE */
    stats.encoded_idle = id.began;
    stats.idle_capped = id.capped;
    if (r >= 0 && full)
        compact_finish(t, true, false, NULL); /* the full epoch drops the epochs it reads */
    if (r >= 0 && !t->image && !(t->image = rtcr_image_new(t->name, NULL)))
        r = -ENOMEM;
    if (r >= 0) {
        pthread_mutex_lock(&t->lock); /* see compact_finish */
        r = rtcr_image_add_epoch(t->image, &ep, &ierr);
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
            set_err(err, errsz, "epoch %" PRIu64 " of '%s' not added: %s", epoch, t->name,
                    ierr.msg);
    }
    rtcr_epoch_destroy(&ep);
    if (r < 0) {
        /* tracking was re-armed: what this epoch collected is lost, so start over full */
        pthread_mutex_lock(&t->lock);
        t->incarnation_has_epoch = false;
        pthread_mutex_unlock(&t->lock);
        standby_invalidate(t, "a checkpoint failed");
        return r;
    }
    /* the hot standby follows the epoch just added: a memcpy of the staged runs */
    if (standby_begin(t, epoch, full) >= 0) {
        for (size_t i = 0; i < st->n; i++)
            standby_put(t, st->v[i].badge, st->v[i].offset, st->data + st->v[i].at, st->v[i].len);
        standby_end(t);
    }

    stats.epoch = epoch;
    stats.full = full;
    stats.pages_scanned = ds.pages_scanned;
    stats.bytes_stored = len;
    /* a full epoch on disk supersedes every older file of the target (an earlier incarnation's
     * chain stays otherwise until compaction): it is written and fsynced, so drop them */
    if (full && t->ckpt.state_dir)
        rtcr_image_prune_dir(t->ckpt.state_dir, t->name, epoch, &ierr);
    /* compaction: commit the one that finished, start the next when the chain is too long;
     * wait for a running one only when the chain has grown to twice max_chain meanwhile
     * (memory stays bounded even when the compaction gets no CPU) */
    if (t->ckpt.max_chain) {
        uint64_t w0 = now_usec();
        bool wait = t->compactor && rtcr_image_count(t->image) >= 2 * (size_t)t->ckpt.max_chain;
        stats.compacted_upto = compact_finish(t, wait, true, &stats);
        if (wait)
            stats.compact_wait = now_usec() - w0;
        if (!t->compactor && rtcr_image_count(t->image) > t->ckpt.max_chain)
            stats.compact_started = compact_start(t) == 0;
    }
    pthread_mutex_lock(&t->lock);
    t->incarnation_has_epoch = true;
    t->last_stats = stats;
    t->have_stats = true;
    pthread_mutex_unlock(&t->lock);
    if (ret_stats)
        *ret_stats = stats;
    return 0;
}

uint64_t rtcr_target_compact_wait(rtcr_target_t *t)
{
    return compact_finish(t, true, true, NULL);
}

int rtcr_target_last_stats(rtcr_target_t *t, rtcr_epoch_stats_t *ret_stats)
{
    pthread_mutex_lock(&t->lock);
    int r = t->have_stats ? 0 : -ENOENT;
    if (r == 0)
        *ret_stats = t->last_stats;
    pthread_mutex_unlock(&t->lock);
    return r;
}

const struct rtcr_image *rtcr_target_image(rtcr_target_t *t)
{
    return t->image;
}

int rtcr_target_load_image(rtcr_target_t *t, char *err, size_t errsz)
{
    rtcr_image_err_t ierr = {{0}};
    rtcr_image_t *img = NULL;
    if (!t->ckpt.state_dir) {
        set_err(err, errsz, "target '%s' has no state directory", t->name);
        return -ENOENT;
    }
    int r = rtcr_image_load_dir(t->ckpt.state_dir, t->name, NULL, &ierr, &img);
    if (r < 0) {
        set_err(err, errsz, "%s", ierr.msg[0] ? ierr.msg : strerror(-r));
        return r;
    }
    if (r > 0)
        set_err(err, errsz, "%s", ierr.msg);
    compact_finish(t, true, false, NULL); /* it borrows epochs of the image replaced now */
    rtcr_image_destroy(&t->image);
    t->image = img;
    t->incarnation_has_epoch = false;
    standby_invalidate(t, "image loaded from disk");
    return r;
}

int rtcr_target_adopt_image(rtcr_target_t *t, struct rtcr_image **img)
{
    if (!img || !*img || strcmp(rtcr_image_target(*img), t->name) != 0)
        return -EINVAL;
    compact_finish(t, true, false, NULL); /* it borrows epochs of the image replaced now */
    rtcr_image_destroy(&t->image);
    t->image = *img;
    *img = NULL;
    t->incarnation_has_epoch = false;
    standby_invalidate(t, "image adopted");
    return 0;
}
