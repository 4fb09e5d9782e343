/* rtcr_image_chain.c — chains of epochs: validation, materialisation and compaction.
 *
 * An image holds the epochs base..last of one target, epochs[i] numbered base + i. The base
 * is a FULL epoch (the first ever, or the result of a compaction); every later epoch is
 * INCREMENTAL with parent = its predecessor and the build ids of the base.
 *
 * Materialising epoch K: every dataspace D declared by K's metadata gets a zero-filled buffer
 * of its declared size; then the runs of D from the epochs of its lifetime (the longest
 * suffix base..K of epochs whose metadata declare D with the same size) are applied in epoch
 * order, zero runs by memset and frames decompressed straight into the buffer and
 * hash-checked there. Runs of dataspaces K does not declare are skipped.
 *
 * It is done in two steps. A plan, built from the newest epoch back to the oldest, lists the
 * frames and zero runs to apply, one group per epoch; while planning, each dataspace keeps
 * the union of the byte ranges newer epochs write, and a frame or zero run wholly inside it
 * is left out (a newer epoch overwrites every byte of it), as are zero runs of the first
 * epoch of a lifetime (the buffer starts zeroed). Then the groups are run oldest first on a
 * few threads (one per CPU): the runs of one epoch never overlap, so the items of a group go
 * to any thread in any order; a barrier separates two groups, so a newer epoch's bytes always
 * land last. Threads take items in ascending order and stop after a group with a failure, so
 * the error is the one the serial order meets first, whatever the thread count.
 *
 * Compaction materialises K and writes it out as one FULL epoch numbered K with K's header and
 * metadata; all-zero units become zero runs, so untouched memory costs no payload. The result
 * replaces base..K only after it was built and parsed back, so a failure changes nothing.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lz4.h>
#include <xxhash.h>

#include <rtcr/image.h>

#include "rtcr_image_int.h"

/* The container of a dropped incremental epoch, kept for the next epoch's builder. */
struct spare {
    uint8_t *buf; /* malloc'd, pages already touched */
    size_t cap;   /* usable bytes */
};

struct rtcr_image {
    char *target;                           /* target name */
    rtcr_image_limits_t lim;                /* limits for epochs and materialisation */
    rtcr_epoch_t **epochs;                  /* epochs[i] has number base + i */
    size_t n;                               /* epochs held */
    size_t cap;                             /* allocated entries of epochs */
    struct spare spares[RTCR_IMAGE_SPARES]; /* containers of dropped epochs */
    size_t n_spares;                        /* used entries of spares */
    size_t spare_bytes;                     /* sum of their cap */
    bool borrowed;                          /* a compaction's view: epochs are not owned */
};

/* Drop epoch *pe of img: its container joins the spares if there is room (the next
 * incremental epochs have about the size of an incremental one, the next compaction that of a
 * full one); freed otherwise. */
static void drop_epoch(rtcr_image_t *img, rtcr_epoch_t **pe)
{
    rtcr_epoch_t *e = *pe;

    if (e && img->n_spares < RTCR_IMAGE_SPARES) {
        size_t cap;
        uint8_t *buf = rtcr_image__epoch_take_buf(e, &cap);
        if (buf && cap <= RTCR_IMAGE_SPARE_MAX && img->spare_bytes + cap <= RTCR_IMAGE_SPARE_MAX) {
            img->spares[img->n_spares++] = (struct spare){buf, cap};
            img->spare_bytes += cap;
        } else {
            free(buf);
        }
    }
    rtcr_epoch_destroy(pe);
}

void *rtcr_image__take_spare(rtcr_image_t *img, size_t need, size_t *ret_cap)
{
    size_t best = SIZE_MAX;

    if (!img)
        return NULL;
    for (size_t i = 0; i < img->n_spares; i++)
        if (img->spares[i].cap >= need &&
            (best == SIZE_MAX || img->spares[i].cap < img->spares[best].cap))
            best = i;
    if (best == SIZE_MAX)
        return NULL;
    struct spare sp = img->spares[best];
    img->spares[best] = img->spares[--img->n_spares];
    img->spare_bytes -= sp.cap;
    *ret_cap = sp.cap;
    return sp.buf;
}

void rtcr_image_spares(const rtcr_image_t *img, size_t *ret_count, size_t *ret_bytes)
{
    if (ret_count)
        *ret_count = img ? img->n_spares : 0;
    if (ret_bytes)
        *ret_bytes = img ? img->spare_bytes : 0;
}

rtcr_image_t *rtcr_image_new(const char *target, const rtcr_image_limits_t *limits)
{
    rtcr_image_t *img;

    if (!rtcr_image__valid_name(target))
        return NULL;
    img = calloc(1, sizeof(*img));
    if (!img)
        return NULL;
    img->target = strdup(target);
    if (!img->target) {
        free(img);
        return NULL;
    }
    if (limits)
        img->lim = *limits;
    else
        rtcr_image_limits_default(&img->lim);
    return img;
}

void rtcr_image_destroy(rtcr_image_t **p)
{
    rtcr_image_t *img;

    if (!p || !*p)
        return;
    img = *p;
    for (size_t i = 0; i < img->n; i++)
        rtcr_epoch_destroy(&img->epochs[i]);
    for (size_t i = 0; i < img->n_spares; i++)
        free(img->spares[i].buf);
    free(img->epochs);
    free(img->target);
    free(img);
    *p = NULL;
}

const char *rtcr_image_target(const rtcr_image_t *img)
{
    return img->target;
}

size_t rtcr_image_count(const rtcr_image_t *img)
{
    return img->n;
}

uint64_t rtcr_image_first(const rtcr_image_t *img)
{
    return img->n ? rtcr_epoch_number(img->epochs[0]) : 0;
}

uint64_t rtcr_image_last(const rtcr_image_t *img)
{
    return img->n ? rtcr_epoch_number(img->epochs[img->n - 1]) : 0;
}

const rtcr_epoch_t *rtcr_image_epoch(const rtcr_image_t *img, uint64_t number)
{
    uint64_t base = rtcr_image_first(img);

    if (!img->n || number < base || number - base >= img->n)
        return NULL;
    return img->epochs[number - base];
}

static bool same_bytes(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* same binary and libraries */
static bool same_build(const RtcrImg__EpochHeader *a, const RtcrImg__EpochHeader *b)
{
    if (!same_bytes(&a->build_id, &b->build_id) || a->n_libraries != b->n_libraries)
        return false;
    for (size_t i = 0; i < a->n_libraries; i++)
        if (strcmp(a->libraries[i]->name, b->libraries[i]->name) != 0 ||
            !same_bytes(&a->libraries[i]->id, &b->libraries[i]->id))
            return false;
    return true;
}

/* Would `e` be accepted after `prev` (NULL: as a new base)? 0 or -errno with err set. */
static int check_link(const rtcr_image_t *img, const rtcr_epoch_t *base, const rtcr_epoch_t *prev,
                      const rtcr_epoch_t *e, rtcr_image_err_t *err)
{
    const RtcrImg__EpochHeader *h = rtcr_epoch_header(e);
    unsigned long long num = (unsigned long long)h->epoch;

    if (strcmp(h->target, img->target) != 0) {
        rtcr_image__err(err, "epoch %llu: belongs to target '%s', not '%s'", num, h->target,
                        img->target);
        return -EINVAL;
    }
    if (!prev) {
        if (!rtcr_epoch_is_full(e)) {
            rtcr_image__err(err,
                            "epoch %llu: incremental, but the chain has no full epoch "
                            "before it",
                            num);
            return -EINVAL;
        }
        return 0;
    }
    if (h->epoch <= rtcr_epoch_number(prev)) {
        rtcr_image__err(err, "epoch %llu: not newer than epoch %llu of the chain", num,
                        (unsigned long long)rtcr_epoch_number(prev));
        return -ESTALE;
    }
    if (rtcr_epoch_is_full(e))
        return 0; /* replaces the chain */
    if (h->epoch != rtcr_epoch_number(prev) + 1) {
        rtcr_image__err(err, "epoch %llu: gap after epoch %llu (missing %llu)", num,
                        (unsigned long long)rtcr_epoch_number(prev),
                        (unsigned long long)rtcr_epoch_number(prev) + 1);
        return -EINVAL;
    }
    if (h->parent != rtcr_epoch_number(prev)) {
        rtcr_image__err(err, "epoch %llu: parent %llu, but the chain ends at %llu", num,
                        (unsigned long long)h->parent, (unsigned long long)rtcr_epoch_number(prev));
        return -EINVAL;
    }
    if (!same_build(rtcr_epoch_header(base), h)) {
        rtcr_image__err(err, "epoch %llu: foreign build id (not the binary of epoch %llu)", num,
                        (unsigned long long)rtcr_epoch_number(base));
        return -EINVAL;
    }
    return 0;
}

int rtcr_image_add_epoch(rtcr_image_t *img, rtcr_epoch_t **epoch, rtcr_image_err_t *err)
{
    rtcr_epoch_t *e;
    int r;

    if (err)
        err->msg[0] = '\0';
    if (!img || !epoch || !*epoch)
        return -EINVAL;
    e = *epoch;
    r = check_link(img, img->n ? img->epochs[0] : NULL, img->n ? img->epochs[img->n - 1] : NULL, e,
                   err);
    if (r < 0)
        return r;
    if (rtcr_epoch_is_full(e)) {
        /* a new base: drop the old chain */
        if (img->cap == 0) {
            img->epochs = malloc(16 * sizeof(*img->epochs));
            if (!img->epochs)
                return -ENOMEM;
            img->cap = 16;
        }
        for (size_t i = 0; i < img->n; i++)
            drop_epoch(img, &img->epochs[i]);
        img->n = 0;
    } else {
        if (img->n >= img->lim.max_epochs) {
            rtcr_image__err(err, "epoch %llu: chain longer than %u epochs",
                            (unsigned long long)rtcr_epoch_number(e), img->lim.max_epochs);
            return -E2BIG;
        }
        if (img->n == img->cap) {
            rtcr_epoch_t **ne = realloc(img->epochs, 2 * img->cap * sizeof(*ne));
            if (!ne)
                return -ENOMEM;
            img->epochs = ne;
            img->cap *= 2;
        }
    }
    img->epochs[img->n++] = e;
    *epoch = NULL;
    return 0;
}

int rtcr_image_check(const rtcr_image_t *img, rtcr_image_err_t *err)
{
    if (err)
        err->msg[0] = '\0';
    if (!img)
        return -EINVAL;
    if (img->n == 0) {
        rtcr_image__err(err, "target '%s': no epochs", img->target);
        return -ENOENT;
    }
    for (size_t i = 0; i < img->n; i++) {
        const rtcr_epoch_t *prev = i ? img->epochs[i - 1] : NULL;
        int r = check_link(img, img->epochs[0], prev, img->epochs[i], err);
        if (r == 0 && i > 0 && rtcr_epoch_is_full(img->epochs[i])) {
            rtcr_image__err(err, "epoch %llu: full epoch inside the chain",
                            (unsigned long long)rtcr_epoch_number(img->epochs[i]));
            r = -EINVAL;
        }
        if (r < 0)
            return r < 0 && r != -ESTALE ? r : -EINVAL;
    }
    return 0;
}

/* ---- materialisation ---------------------------------------------------------------------- */

#define PAR_MIN_BYTES (1u << 20) /* decoded bytes that justify one more worker thread */

/* [start, end) byte range of a dataspace */
struct ival {
    uint64_t start; /* first byte */
    uint64_t end;   /* one past the last byte */
};

struct mds {
    uint32_t badge;   /* dataspace */
    uint64_t size;    /* bytes */
    uint64_t life;    /* first epoch of its current lifetime */
    uint64_t have;    /* dst already holds the dataspace at this epoch (0: dst is zero-filled) */
    uint8_t *dst;     /* destination buffer */
    struct ival *cov; /* bytes written by the epochs planned so far (newer ones), sorted,
                         disjoint and not touching */
    size_t n_cov;     /* entries of cov */
};

/* One unit of work: a frame to decode or a zero run to clear. A frame whose bytes go to one
 * place is decoded straight there (pieces NULL); one that spans several runs (format version
 * 2) is decoded into the worker's scratch buffer and its pieces copied out. */
struct mitem {
    uint8_t *dst;                          /* destination, or the dataspace's base if pieces */
    const uint8_t *src;                    /* stored frame bytes, NULL for a zero run */
    const struct rtcr_image_piece *pieces; /* where the bytes go (dst + ds_off), or NULL */
    uint64_t len;                          /* uncompressed bytes */
    uint64_t hash;                         /* XXH3-64 of the uncompressed frame */
    uint64_t epoch;                        /* epoch number, for errors */
    uint64_t frame;    /* frame index within the dataspace's pages of the epoch, for errors */
    uint32_t stored;   /* stored bytes of the frame */
    uint32_t n_pieces; /* entries of pieces */
    uint32_t badge;    /* dataspace, for errors */
};

/* The plan: items grouped by epoch, groups applied oldest first with a barrier between two
 * groups, items of one group in any order on any worker (the runs of one epoch do not
 * overlap). Planned newest group first, then put in order (plan_order): group g (0 = the
 * oldest) is items[gs[g] .. gs[g + 1]), so item indexes ascend in the order of application. */
struct mplan {
    struct mitem *items; /* all items, grouped */
    size_t n, cap;       /* used / allocated entries of items */
    size_t *gs;          /* first item of each group (+ n at the end once in order) */
    size_t ng;           /* groups */
    uint64_t bytes;      /* uncompressed bytes to write, for the worker count */
    uint32_t scratch;    /* largest frame decoded through a scratch buffer (0: none) */
};

static int cmp_mds(const void *a, const void *b)
{
    uint32_t x = ((const struct mds *)a)->badge, y = ((const struct mds *)b)->badge;

    return x < y ? -1 : x > y;
}

static struct mds *mds_find(struct mds *m, size_t n, uint32_t badge)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m[mid].badge == badge)
            return &m[mid];
        if (m[mid].badge < badge)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Is [a, b) written by a newer epoch? */
static bool covered(const struct mds *d, uint64_t a, uint64_t b)
{
    size_t lo = 0, hi = d->n_cov;

    /* the last interval starting at or before a */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->cov[mid].start <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && d->cov[lo - 1].end >= b;
}

/* Merge the runs of one epoch (ascending, disjoint) into d->cov. */
static int cover_runs(struct mds *d, const RtcrImg__DataspacePages *dp)
{
    size_t n = d->n_cov + dp->n_runs, i = 0, j = 0, k = 0;
    struct ival *out;

    if (dp->n_runs == 0)
        return 0;
    out = malloc(n * sizeof(*out));
    if (!out)
        return -ENOMEM;
    while (i < d->n_cov || j < dp->n_runs) {
        struct ival next;
        if (j == dp->n_runs || (i < d->n_cov && d->cov[i].start <= dp->runs[j]->offset))
            next = d->cov[i++];
        else {
            next = (struct ival){dp->runs[j]->offset, dp->runs[j]->offset + dp->runs[j]->length};
            j++;
        }
        if (k > 0 && next.start <= out[k - 1].end) {
            if (next.end > out[k - 1].end)
                out[k - 1].end = next.end;
        } else {
            out[k++] = next;
        }
    }
    free(d->cov);
    d->cov = out;
    d->n_cov = k;
    return 0;
}

static int plan_add(struct mplan *pl, const struct mitem *it)
{
    if (pl->n == pl->cap) {
        size_t nc = pl->cap ? 2 * pl->cap : 256;
        struct mitem *ni = realloc(pl->items, nc * sizeof(*ni));
        if (!ni)
            return -ENOMEM;
        pl->items = ni;
        pl->cap = nc;
    }
    pl->items[pl->n++] = *it;
    pl->bytes += it->len;
    return 0;
}

/* Plan the runs of epoch e for the dataspaces of m alive in e. Epochs are planned newest
 * first: what a newer epoch writes is in each dataspace's cov, and a frame or zero run of e
 * that lies wholly inside it is not planned (its bytes would be overwritten). A zero run of
 * the first epoch of a lifetime is not planned either (the destination starts zero-filled).
 * The DATA bytes of an unplanned frame were checked by the section hash when the epoch was
 * parsed; its content cannot reach the result. */
static int plan_epoch(const rtcr_epoch_t *e, struct mds *m, size_t n, struct mplan *pl,
                      rtcr_image_err_t *err)
{
    const RtcrImg__PageIndex *idx = e->index;
    uint64_t num = e->hdr->epoch;
    size_t first = pl->n;

    for (size_t i = 0; i < idx->n_dataspaces; i++) {
        const RtcrImg__DataspacePages *dp = idx->dataspaces[i];
        struct mds *d = mds_find(m, n, dp->badge);
        int r;

        if (!d || num < d->life || num <= d->have)
            continue;
        for (size_t j = 0; j < dp->n_runs; j++) {
            const RtcrImg__PageRun *run = dp->runs[j];

            /* parse checked the run against this epoch's size, equal to d->size in the
             * lifetime; check again rather than trust an invariant of another module */
            if (run->offset > d->size || run->length > d->size - run->offset) {
                rtcr_image__err(err, "epoch %llu: run at %llu of dataspace 0x%x outside it",
                                (unsigned long long)num, (unsigned long long)run->offset,
                                dp->badge);
                return -EBADMSG;
            }
            if (run->zero && num != d->life &&
                !covered(d, run->offset, run->offset + run->length) &&
                (r = plan_add(pl, &(struct mitem){.dst = d->dst + run->offset,
                                                  .len = run->length,
                                                  .epoch = num,
                                                  .badge = dp->badge})) < 0)
                return r;
        }
        for (size_t f = e->ds_frame0[i]; f < e->ds_frame0[i + 1]; f++) {
            const struct rtcr_image_frame *fr = &e->frames[f];
            const struct rtcr_image_piece *pc = &e->pieces[fr->first_piece];
            bool needed = false, direct = fr->n_pieces == 1;

            for (uint32_t k = 0; k < fr->n_pieces && !needed; k++)
                needed = !covered(d, pc[k].ds_off, pc[k].ds_off + pc[k].len);
            if (!needed)
                continue;
            struct mitem it = {.dst = direct ? d->dst + pc->ds_off : d->dst,
                               .src = e->data + fr->data_off,
                               .pieces = direct ? NULL : pc,
                               .len = fr->size,
                               .hash = fr->hash,
                               .epoch = num,
                               .frame = f - e->ds_frame0[i],
                               .stored = fr->stored,
                               .n_pieces = fr->n_pieces,
                               .badge = dp->badge};
            if ((r = plan_add(pl, &it)) < 0)
                return r;
            if (!direct && fr->size > pl->scratch)
                pl->scratch = fr->size;
        }
    }
    /* only now: the runs of e do not overlap each other */
    for (size_t i = 0; i < idx->n_dataspaces; i++) {
        struct mds *d = mds_find(m, n, idx->dataspaces[i]->badge);
        int r;
        /* what the first epoch of a lifetime (or the oldest one applied onto what dst already
         * holds) writes matters to no older epoch */
        if (d && num > d->life && num > d->have + 1 && (r = cover_runs(d, idx->dataspaces[i])) < 0)
            return r;
    }
    /* a group per epoch that has work; plan_order puts the groups oldest first */
    if (pl->n > first) {
        size_t *ng = realloc(pl->gs, (pl->ng + 2) * sizeof(*ng));
        if (!ng)
            return -ENOMEM;
        pl->gs = ng;
        pl->gs[pl->ng++] = first;
    }
    return 0;
}

/* Reverse the planned groups (newest first) into application order, oldest first. */
static int plan_order(struct mplan *pl)
{
    struct mitem *items = malloc((pl->n ? pl->n : 1) * sizeof(*items));
    size_t *gs = malloc((pl->ng + 1) * sizeof(*gs)), k = 0;

    if (!items || !gs) {
        free(items);
        free(gs);
        return -ENOMEM;
    }
    for (size_t g = pl->ng; g-- > 0;) {
        size_t end = g + 1 < pl->ng ? pl->gs[g + 1] : pl->n;
        gs[pl->ng - 1 - g] = k;
        memcpy(items + k, pl->items + pl->gs[g], (end - pl->gs[g]) * sizeof(*items));
        k += end - pl->gs[g];
    }
    gs[pl->ng] = k;
    free(pl->items);
    free(pl->gs);
    pl->items = items;
    pl->gs = gs;
    return 0;
}

struct mrun {
    const struct mplan *pl; /* the plan, in order */
    size_t *next;           /* per group: next item index to take (atomic) */
    unsigned workers;       /* threads taking part, the caller included */
    pthread_barrier_t bar;  /* between groups (workers > 1) */
    pthread_mutex_t start;  /* held by the caller until workers and bar are final */
    pthread_mutex_t elock;  /* protects fail_* */
    size_t fail_at;         /* lowest failing item in plan order; SIZE_MAX: none (atomic) */
    const char *fail_why;   /* its cause */
};

/* Take items of each group in turn until the group is done; stop after a group that failed.
 * Items are taken in ascending order, so every item before a failing one is still done and
 * the error reported is the one the serial order meets first. After the barrier of group g
 * only a failure inside groups ..g counts: a thread already in group g + 1 may have recorded
 * one there, and then every thread still stops at the next barrier, together. */
static void run_groups(struct mrun *c, uint8_t *scratch)
{
    const struct mplan *pl = c->pl;

    for (size_t g = 0; g < pl->ng; g++) {
        size_t end = pl->gs[g + 1];
        for (;;) {
            size_t i = __atomic_fetch_add(&c->next[g], 1, __ATOMIC_RELAXED);
            if (i >= end || i > __atomic_load_n(&c->fail_at, __ATOMIC_RELAXED))
                break;
            const struct mitem *it = &pl->items[i];
            const char *why = NULL;
            if (!it->src) {
                memset(it->dst, 0, it->len);
                continue;
            }
            uint8_t *to = it->pieces ? scratch : it->dst;
            if (rtcr_image__frame_decode(it->src, it->stored, to, (uint32_t)it->len, it->hash,
                                         &why) == 0) {
                for (uint32_t k = 0; it->pieces && k < it->n_pieces; k++)
                    memcpy(it->dst + it->pieces[k].ds_off, scratch + it->pieces[k].frame_off,
                           it->pieces[k].len);
            } else {
                pthread_mutex_lock(&c->elock);
                if (i < c->fail_at) {
                    c->fail_why = why;
                    __atomic_store_n(&c->fail_at, i, __ATOMIC_RELAXED);
                }
                pthread_mutex_unlock(&c->elock);
            }
        }
        if (c->workers > 1)
            pthread_barrier_wait(&c->bar);
        if (__atomic_load_n(&c->fail_at, __ATOMIC_RELAXED) < end)
            break;
    }
}

/* what a started worker gets */
struct mworker {
    struct mrun *c;   /* the shared run */
    uint8_t *scratch; /* its own scratch buffer (pl->scratch bytes) or NULL */
};

static void *worker_main(void *arg)
{
    struct mworker *w = arg;

    pthread_mutex_lock(&w->c->start);
    pthread_mutex_unlock(&w->c->start);
    run_groups(w->c, w->scratch);
    return NULL;
}

static unsigned auto_workers(uint64_t bytes)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t by_size = bytes / PAR_MIN_BYTES;
    unsigned n = cpus < 1                        ? 1
                 : cpus > RTCR_IMAGE_MAX_WORKERS ? RTCR_IMAGE_MAX_WORKERS
                                                 : (unsigned)cpus;

    if (by_size < n)
        n = by_size ? (unsigned)by_size : 1;
    return n;
}

/* Execute the plan on `workers` threads (the caller and workers - 1 started here; fewer if
 * threads cannot be started). 0 or -EBADMSG with err naming the epoch and frame. */
static int run_plan(const struct mplan *pl, unsigned workers, rtcr_image_err_t *err)
{
    struct mrun c = {.pl = pl, .fail_at = SIZE_MAX};
    pthread_t tid[RTCR_IMAGE_MAX_WORKERS];
    struct mworker w[RTCR_IMAGE_MAX_WORKERS];
    size_t *next;
    uint8_t *scratch;
    unsigned started = 0;
    int r = 0;

    if (workers > RTCR_IMAGE_MAX_WORKERS)
        workers = RTCR_IMAGE_MAX_WORKERS;
    if (workers < 1)
        workers = 1;
    next = malloc((pl->ng ? pl->ng : 1) * sizeof(*next));
    /* one scratch buffer per thread for frames that span runs */
    scratch = pl->scratch ? malloc((size_t)pl->scratch * workers) : NULL;
    if (!next || (pl->scratch && !scratch)) {
        free(next);
        free(scratch);
        return -ENOMEM;
    }
    for (size_t g = 0; g < pl->ng; g++)
        next[g] = pl->gs[g];
    c.next = next;
    pthread_mutex_init(&c.elock, NULL);
    pthread_mutex_init(&c.start, NULL);
    if (workers > 1 && pl->ng > 0) {
        sigset_t all, old;
        /* workers take no signals meant for the process */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_mutex_lock(&c.start);
        for (; started < workers - 1; started++) {
            w[started] = (struct mworker){
                &c, scratch ? scratch + (size_t)pl->scratch * (started + 1) : NULL};
            if (pthread_create(&tid[started], NULL, worker_main, &w[started]) != 0)
                break;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        c.workers = started + 1;
        if (c.workers > 1)
            pthread_barrier_init(&c.bar, NULL, c.workers);
        pthread_mutex_unlock(&c.start);
    } else {
        c.workers = 1;
    }
    run_groups(&c, scratch);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    if (c.workers > 1)
        pthread_barrier_destroy(&c.bar);
    pthread_mutex_destroy(&c.start);
    pthread_mutex_destroy(&c.elock);
    if (c.fail_at != SIZE_MAX) {
        const struct mitem *it = &pl->items[c.fail_at];
        rtcr_image__err(err, "epoch %llu: frame %llu of dataspace 0x%x: %s",
                        (unsigned long long)it->epoch, (unsigned long long)it->frame, it->badge,
                        c.fail_why);
        r = -EBADMSG;
    }
    free(next);
    free(scratch);
    return r;
}

/* visit the RAM dataspaces of a state in metadata order */
static int foreach_ds(const RtcrImg__StoredState *s,
                      int (*fn)(void *opaque, const RtcrImg__Dataspace *d), void *opaque)
{
    for (size_t i = 0; i < s->n_sessions; i++) {
        const RtcrImg__Session *se = s->sessions[i];
        if (se->state_case != RTCR_IMG__SESSION__STATE_RAM)
            continue;
        for (size_t k = 0; k < se->ram->n_dataspaces; k++) {
            int r = fn(opaque, se->ram->dataspaces[k]);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

struct memds {
    uint32_t badge; /* dataspace */
    uint64_t size;  /* bytes */
    uint8_t *data;  /* content (calloc) */
};

struct rtcr_memstate {
    struct memds *ds; /* dataspaces in metadata order */
    size_t n;         /* used entries */
    size_t cap;       /* allocated entries */
    uint64_t max_ds;  /* size limit per dataspace */
    uint64_t epoch;   /* the epoch whose memory this is */
};

struct collect {
    const rtcr_image_t *img; /* the chain */
    size_t k;                /* index of the target epoch */
    struct mds *m;           /* collected dataspaces */
    size_t n;                /* used entries of m */
    rtcr_image_ds_fn fn;     /* caller's destination callback */
    void *opaque;            /* its argument */
    rtcr_memstate_t *prev;   /* memory of an earlier epoch to build on, or NULL (then opaque is
                                the rtcr_memstate_t being filled) */
};

static int memstate_put(rtcr_memstate_t *m, uint32_t badge, uint64_t size, uint8_t *data);
static uint8_t *memstate_take(rtcr_memstate_t *m, uint32_t badge, uint64_t size, uint64_t life);

static int collect_one(void *opaque, const RtcrImg__Dataspace *d)
{
    struct collect *c = opaque;
    struct mds *md = &c->m[c->n];
    size_t j = c->k;
    void *dst = NULL;
    int r;

    /* lifetime: walk back while the epoch before declares the same dataspace and size */
    while (j > 0) {
        const rtcr_epoch_t *pe = c->img->epochs[j - 1];
        const struct rtcr_image_ds *pd = rtcr_image__ds_find(pe->ds, pe->n_ds, d->badge);
        if (!pd || pd->size != d->size)
            break;
        j--;
    }
    uint64_t life = rtcr_epoch_number(c->img->epochs[j]), have = 0;
    uint8_t *old = c->prev ? memstate_take(c->prev, d->badge, d->size, life) : NULL;
    if (old) {
        /* the same dataspace in the same lifetime: apply only the newer epochs onto it */
        if ((r = memstate_put(c->opaque, d->badge, d->size, old)) < 0) {
            free(old);
            return r;
        }
        dst = old;
        have = c->prev->epoch;
    } else if ((r = c->fn(c->opaque, d->badge, d->size, &dst)) < 0) {
        return r;
    }
    if (!dst)
        return -EINVAL;
    *md = (struct mds){.badge = d->badge, .size = d->size, .life = life, .have = have, .dst = dst};
    c->n++;
    return 0;
}

/* rtcr_image_materialize_into_mt; with `prev` (the memory of an earlier epoch of img, whose
 * buffers are moved into the rtcr_memstate_t `opaque` where they can be reused) */
static int materialize(const rtcr_image_t *img, uint64_t epoch, unsigned workers,
                       rtcr_image_ds_fn fn, void *opaque, rtcr_memstate_t *prev,
                       rtcr_image_err_t *err)
{
    const rtcr_epoch_t *ek;
    struct collect c = {0};
    struct mplan pl = {0};
    int r;

    if (err)
        err->msg[0] = '\0';
    if (!img || !fn)
        return -EINVAL;
    ek = rtcr_image_epoch(img, epoch);
    if (!ek) {
        rtcr_image__err(err, "target '%s': epoch %llu is not in the chain (%llu..%llu)",
                        img->target, (unsigned long long)epoch,
                        (unsigned long long)rtcr_image_first(img),
                        (unsigned long long)rtcr_image_last(img));
        return -EINVAL;
    }
    c.img = img;
    c.k = epoch - rtcr_image_first(img);
    c.fn = fn;
    c.opaque = opaque;
    c.prev = prev && prev->epoch <= epoch ? prev : NULL;
    c.m = calloc(ek->n_ds ? ek->n_ds : 1, sizeof(*c.m));
    if (!c.m)
        return -ENOMEM;
    r = foreach_ds(ek->state, collect_one, &c);
    if (r < 0) {
        rtcr_image__err(err, "epoch %llu: destination callback failed (%d)",
                        (unsigned long long)epoch, r);
        goto out;
    }
    qsort(c.m, c.n, sizeof(*c.m), cmp_mds);
    for (size_t j = c.k + 1; j-- > 0 && r >= 0;)
        r = plan_epoch(img->epochs[j], c.m, c.n, &pl, err);
    if (r >= 0)
        r = plan_order(&pl);
    if (r >= 0)
        r = run_plan(&pl, workers ? workers : auto_workers(pl.bytes), err);
out:
    for (size_t i = 0; i < c.n; i++)
        free(c.m[i].cov);
    free(c.m);
    free(pl.items);
    free(pl.gs);
    return r;
}

int rtcr_image_materialize_into_mt(const rtcr_image_t *img, uint64_t epoch, unsigned workers,
                                   rtcr_image_ds_fn fn, void *opaque, rtcr_image_err_t *err)
{
    return materialize(img, epoch, workers, fn, opaque, NULL, err);
}

int rtcr_image_materialize_into(const rtcr_image_t *img, uint64_t epoch, rtcr_image_ds_fn fn,
                                void *opaque, rtcr_image_err_t *err)
{
    return rtcr_image_materialize_into_mt(img, epoch, 0, fn, opaque, err);
}

void rtcr_memstate_destroy(rtcr_memstate_t **p)
{
    rtcr_memstate_t *m;

    if (!p || !*p)
        return;
    m = *p;
    for (size_t i = 0; i < m->n; i++)
        free(m->ds[i].data); /* NULL where memstate_take took it */
    free(m->ds);
    free(m);
    *p = NULL;
}

size_t rtcr_memstate_count(const rtcr_memstate_t *m)
{
    return m->n;
}

int rtcr_memstate_get(const rtcr_memstate_t *m, size_t i, uint32_t *ret_badge, uint64_t *ret_size,
                      const uint8_t **ret_data)
{
    if (i >= m->n)
        return -ERANGE;
    if (ret_badge)
        *ret_badge = m->ds[i].badge;
    if (ret_size)
        *ret_size = m->ds[i].size;
    if (ret_data)
        *ret_data = m->ds[i].data;
    return 0;
}

const uint8_t *rtcr_memstate_find(const rtcr_memstate_t *m, uint32_t badge, uint64_t *ret_size)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->ds[i].badge == badge) {
            if (ret_size)
                *ret_size = m->ds[i].size;
            return m->ds[i].data;
        }
    return NULL;
}

uint64_t rtcr_memstate_epoch(const rtcr_memstate_t *m)
{
    return m->epoch;
}

/* Append dataspace `badge` with its content `data` (m takes it on success). */
static int memstate_put(rtcr_memstate_t *m, uint32_t badge, uint64_t size, uint8_t *data)
{
    if (m->n == m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 16;
        struct memds *nd = realloc(m->ds, nc * sizeof(*nd));
        if (!nd)
            return -ENOMEM;
        m->ds = nd;
        m->cap = nc;
    }
    m->ds[m->n++] = (struct memds){.badge = badge, .size = size, .data = data};
    return 0;
}

/* Take the content of dataspace `badge` out of m (the caller owns it) if m has it with this
 * size and it is of the lifetime that began at epoch `life` (so life <= m's epoch); NULL
 * otherwise. */
static uint8_t *memstate_take(rtcr_memstate_t *m, uint32_t badge, uint64_t size, uint64_t life)
{
    if (life > m->epoch)
        return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (m->ds[i].badge == badge && m->ds[i].size == size && m->ds[i].data) {
            uint8_t *data = m->ds[i].data;
            m->ds[i].data = NULL;
            return data;
        }
    return NULL;
}

static int memstate_dst(void *opaque, uint32_t badge, uint64_t size, void **ret_dst)
{
    rtcr_memstate_t *m = opaque;
    uint8_t *data;
    int r;

    if (size > m->max_ds || size > SIZE_MAX)
        return -E2BIG;
    data = calloc(1, (size_t)size);
    if (!data)
        return -ENOMEM;
    if ((r = memstate_put(m, badge, size, data)) < 0) {
        free(data);
        return r;
    }
    *ret_dst = data;
    return 0;
}

/* rtcr_image_materialize on `workers` threads (0: as many as help), building on *prev (the
 * memory of an earlier epoch of img; may be NULL or point at NULL) if it is given: its
 * buffers of dataspaces still alive are reused, only the epochs after it are applied. *prev
 * is consumed (freed, NULLed) in any case. */
static int materialize_mt(const rtcr_image_t *img, uint64_t epoch, unsigned workers,
                          rtcr_memstate_t **prev, rtcr_image_err_t *err, rtcr_memstate_t **ret)
{
    rtcr_memstate_t *m;
    int r;

    if (!img || !ret) {
        rtcr_memstate_destroy(prev);
        return -EINVAL;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        rtcr_memstate_destroy(prev);
        return -ENOMEM;
    }
    m->max_ds = img->lim.max_dataspace;
    m->epoch = epoch;
    r = materialize(img, epoch, workers, memstate_dst, m, prev ? *prev : NULL, err);
    rtcr_memstate_destroy(prev); /* what is left of it: dataspaces gone since */
    if (r < 0) {
        rtcr_memstate_destroy(&m);
        return r;
    }
    *ret = m;
    return 0;
}

int rtcr_image_materialize(const rtcr_image_t *img, uint64_t epoch, rtcr_image_err_t *err,
                           rtcr_memstate_t **ret)
{
    return materialize_mt(img, epoch, 0, NULL, err, ret);
}

/* ---- compaction ----------------------------------------------------------------------- */

struct rtcr_image_compaction {
    rtcr_image_t view;        /* epochs base..upto of the image, borrowed (view.borrowed) */
    uint64_t upto;            /* the epoch the full one replaces */
    rtcr_epoch_t *full;       /* built by _run */
    int result;               /* of _run: 1 not run yet, 0 built, -errno */
    rtcr_memstate_t *mem;     /* before _run: memory to build on (or NULL); after: that of upto */
    uint64_t raw;             /* bytes of the dataspaces declared at upto */
    uint8_t *out;             /* a spare container of the image for the full epoch, or NULL */
    size_t out_cap;           /* its usable bytes */
    void (*progress)(void *); /* after every frame of the full epoch, or NULL */
    void *progress_ctx;       /* its argument */
};

void rtcr_image_compaction_set_progress(rtcr_image_compaction_t *c, void (*fn)(void *ctx),
                                        void *ctx)
{
    c->progress = fn;
    c->progress_ctx = ctx;
}

int rtcr_image_compaction_new(rtcr_image_t *img, uint64_t upto, rtcr_image_err_t *err,
                              rtcr_image_compaction_t **ret)
{
    rtcr_image_compaction_t *c;
    size_t k;

    if (err)
        err->msg[0] = '\0';
    if (!img || !ret)
        return -EINVAL;
    if (!rtcr_image_epoch(img, upto)) {
        rtcr_image__err(err, "target '%s': epoch %llu is not in the chain", img->target,
                        (unsigned long long)upto);
        return -EINVAL;
    }
    k = upto - rtcr_image_first(img) + 1;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->view.epochs = malloc(k * sizeof(*c->view.epochs));
    if (!c->view.epochs) {
        free(c);
        return -ENOMEM;
    }
    memcpy(c->view.epochs, img->epochs, k * sizeof(*c->view.epochs));
    c->view.n = c->view.cap = k;
    c->view.target = img->target; /* borrowed too */
    c->view.lim = img->lim;
    c->view.borrowed = true;
    c->upto = upto;
    c->result = 1;
    /* the container of the full epoch a previous commit dropped fits the next one: writing
     * into mapped pages saves a page fault per 4 KiB and the mmap of a fresh buffer */
    const rtcr_epoch_t *ek = img->epochs[k - 1];
    for (size_t i = 0; i < ek->n_ds; i++)
        c->raw += ek->ds[i].size;
    size_t need = rtcr_image__reserve_need(c->raw);
    if (need != SIZE_MAX)
        c->out = rtcr_image__take_spare(img, need, &c->out_cap);
    *ret = c;
    return 0;
}

int rtcr_image_compaction_set_memory(rtcr_image_compaction_t *c, rtcr_memstate_t **m)
{
    if (!c || !m || !*m || c->result != 1) {
        rtcr_memstate_destroy(m);
        return -EINVAL;
    }
    if ((*m)->epoch < rtcr_image_first(&c->view) || (*m)->epoch > c->upto) {
        rtcr_memstate_destroy(m);
        return -ESTALE;
    }
    rtcr_memstate_destroy(&c->mem);
    c->mem = *m;
    *m = NULL;
    return 0;
}

rtcr_memstate_t *rtcr_image_compaction_take_memory(rtcr_image_compaction_t *c)
{
    rtcr_memstate_t *m = NULL;

    if (c && c->result == 0) {
        m = c->mem;
        c->mem = NULL;
    }
    return m;
}

void rtcr_image_compaction_destroy(rtcr_image_compaction_t **p)
{
    if (!p || !*p)
        return;
    rtcr_epoch_destroy(&(*p)->full);
    rtcr_memstate_destroy(&(*p)->mem);
    free((*p)->out);
    free((*p)->view.epochs);
    free(*p);
    *p = NULL;
}

uint64_t rtcr_image_compaction_epoch(const rtcr_image_compaction_t *c)
{
    return c->upto;
}

const rtcr_epoch_t *rtcr_image_compaction_result(const rtcr_image_compaction_t *c)
{
    return c->result == 0 ? c->full : NULL;
}

int rtcr_image_compaction_run(rtcr_image_compaction_t *c, rtcr_image_err_t *err)
{
    const rtcr_image_t *img;
    const rtcr_epoch_t *ek;
    const RtcrImg__EpochHeader *h;
    rtcr_memstate_t *m = NULL;
    rtcr_epoch_builder_t *b = NULL;
    rtcr_image_build_id_t *libs = NULL;
    void *buf = NULL;
    size_t len;
    rtcr_image_limits_t lim;
    int r;

    if (err)
        err->msg[0] = '\0';
    if (!c || c->result != 1)
        return -EINVAL;
    img = &c->view;
    ek = img->epochs[img->n - 1];
    h = ek->hdr;
    /* one thread: a compaction runs beside the target and its checkpoints, not against them */
    r = materialize_mt(img, c->upto, 1, &c->mem, err, &m);
    if (r < 0)
        goto out;
    libs = calloc(h->n_libraries ? h->n_libraries : 1, sizeof(*libs));
    if (!libs) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < h->n_libraries; i++)
        libs[i] = (rtcr_image_build_id_t){.name = h->libraries[i]->name,
                                          .id = h->libraries[i]->id.data,
                                          .len = h->libraries[i]->id.len};
    rtcr_epoch_info_t info = {
        .target = h->target,
        .epoch = h->epoch,
        .parent = 0,
        .created_usec = h->created_usec,
        .source_ecu = h->source_ecu,
        .build_id = h->build_id.data,
        .build_id_len = h->build_id.len,
        .libs = libs,
        .n_libs = h->n_libraries,
        .granularity = h->granularity,
        .agent_incarnation = h->agent_incarnation,
        .tracking_mode = h->tracking_mode,
    };
    r = rtcr_epoch_builder_new(&info, &b);
    if (r < 0)
        goto out;
    rtcr_image__builder_set_compacted(b, rtcr_image_first(img));
    rtcr_epoch_builder_set_progress(b, c->progress, c->progress_ctx);
    if (c->out) {
        r = rtcr_image__builder_give(b, c->out, c->out_cap);
        c->out = NULL;
    }
    if (r >= 0)
        r = rtcr_epoch_builder_reserve(b, c->raw);
    if (r >= 0)
        r = rtcr_epoch_builder_set_metadata_blob(b, ek->meta, ek->meta_len);
    for (size_t i = 0; r >= 0 && i < rtcr_memstate_count(m); i++) {
        uint32_t badge;
        uint64_t size;
        const uint8_t *data;
        rtcr_memstate_get(m, i, &badge, &size, &data);
        r = rtcr_epoch_add_pages(b, badge, 0, data, (size_t)size);
    }
    if (r < 0) {
        rtcr_image__err(err, "epoch %llu: compaction failed to build the full epoch (%d)",
                        (unsigned long long)c->upto, r);
        goto out;
    }
    r = rtcr_epoch_finish(b, err, &buf, &len);
    if (r < 0)
        goto out;
    /* frames were produced from hash-checked data just now: skip decompressing them again */
    lim = img->lim;
    lim.skip_frame_check = true;
    r = rtcr_epoch_parse_owned(&buf, len, &lim, err, &c->full);
out:
    c->result = r < 0 ? r : 0;
    if (r == 0)
        c->mem = m; /* the memory of upto, for rtcr_image_compaction_take_memory */
    else
        rtcr_memstate_destroy(&m);
    free(buf);
    free(libs);
    rtcr_epoch_builder_destroy(&b);
    return r;
}

int rtcr_image_compaction_commit(rtcr_image_t *img, rtcr_image_compaction_t **pc,
                                 rtcr_image_err_t *err, const rtcr_epoch_t **ret_epoch)
{
    rtcr_image_compaction_t *c;
    size_t k;

    if (err)
        err->msg[0] = '\0';
    if (!img || !pc || !*pc || img->borrowed)
        return -EINVAL;
    c = *pc;
    if (c->result != 0) {
        rtcr_image__err(err, "epoch %llu: compaction %s", (unsigned long long)c->upto,
                        c->result == 1 ? "has not run" : "failed");
        return c->result == 1 ? -EINVAL : c->result;
    }
    /* the chain must still start with the very epochs the compaction read */
    k = c->view.n;
    if (img->n < k || memcmp(img->epochs, c->view.epochs, k * sizeof(*img->epochs)) != 0) {
        rtcr_image__err(err, "target '%s': the chain changed while epoch %llu was being compacted",
                        img->target, (unsigned long long)c->upto);
        return -ESTALE;
    }
    for (size_t i = 0; i < k; i++)
        drop_epoch(img, &img->epochs[i]);
    img->epochs[0] = c->full;
    c->full = NULL;
    memmove(&img->epochs[1], &img->epochs[k], (img->n - k) * sizeof(*img->epochs));
    img->n -= k - 1;
    if (ret_epoch)
        *ret_epoch = img->epochs[0];
    rtcr_image_compaction_destroy(pc);
    return 0;
}

int rtcr_image_compact(rtcr_image_t *img, uint64_t upto, rtcr_image_err_t *err,
                       const rtcr_epoch_t **ret_epoch)
{
    rtcr_image_compaction_t *c = NULL;
    int r = rtcr_image_compaction_new(img, upto, err, &c);

    if (r == 0)
        r = rtcr_image_compaction_run(c, err);
    if (r == 0)
        r = rtcr_image_compaction_commit(img, &c, err, ret_epoch);
    rtcr_image_compaction_destroy(&c);
    return r;
}
