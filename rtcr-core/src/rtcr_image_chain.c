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
 * Compaction materialises K and writes it out as one FULL epoch numbered K with K's header and
 * metadata; all-zero units become zero runs, so untouched memory costs no payload. The result
 * replaces base..K only after it was built and parsed back, so a failure changes nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <xxhash.h>

#include <rtcr/image.h>

#include "rtcr_image_int.h"

struct rtcr_image {
    char *target;            /* target name */
    rtcr_image_limits_t lim; /* limits for epochs and materialisation */
    rtcr_epoch_t **epochs;   /* epochs[i] has number base + i */
    size_t n;                /* epochs held */
    size_t cap;              /* allocated entries of epochs */
};

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
            rtcr_epoch_destroy(&img->epochs[i]);
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

struct mds {
    uint32_t badge; /* dataspace */
    uint64_t size;  /* bytes */
    uint64_t life;  /* first epoch of its current lifetime */
    uint8_t *dst;   /* destination buffer */
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

/* apply the runs of epoch e to the dataspaces of m that are alive in e */
static int apply_epoch(const rtcr_epoch_t *e, struct mds *m, size_t n, rtcr_image_err_t *err)
{
    const RtcrImg__PageIndex *idx = e->index;
    uint64_t num = e->hdr->epoch;

    for (size_t i = 0; i < idx->n_dataspaces; i++) {
        const RtcrImg__DataspacePages *dp = idx->dataspaces[i];
        struct mds *d = mds_find(m, n, dp->badge);
        uint64_t off = e->ds_data_off[i], fi = 0;

        if (!d || num < d->life)
            continue;
        for (size_t j = 0; j < dp->n_runs; j++) {
            const RtcrImg__PageRun *run = dp->runs[j];
            uint64_t pos = run->offset;

            /* parse checked the run against this epoch's size, equal to d->size in the
             * lifetime; check again rather than trust an invariant of another module */
            if (run->offset > d->size || run->length > d->size - run->offset)
                return -EBADMSG;
            if (run->zero) {
                memset(d->dst + run->offset, 0, run->length);
                continue;
            }
            for (size_t k = 0; k < run->n_frame_size; k++, fi++) {
                const char *why = NULL;
                int r = rtcr_image__frame_decode(e->data + off, run->frame_stored[k], d->dst + pos,
                                                 run->frame_size[k], run->frame_hash[k], &why);
                if (r < 0) {
                    rtcr_image__err(err, "epoch %llu: frame %llu of dataspace 0x%x: %s",
                                    (unsigned long long)num, (unsigned long long)fi, dp->badge,
                                    why);
                    return r;
                }
                off += run->frame_stored[k];
                pos += run->frame_size[k];
            }
        }
    }
    return 0;
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

struct collect {
    const rtcr_image_t *img; /* the chain */
    size_t k;                /* index of the target epoch */
    struct mds *m;           /* collected dataspaces */
    size_t n;                /* used entries of m */
    rtcr_image_ds_fn fn;     /* caller's destination callback */
    void *opaque;            /* its argument */
};

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
    r = c->fn(c->opaque, d->badge, d->size, &dst);
    if (r < 0)
        return r;
    if (!dst)
        return -EINVAL;
    *md = (struct mds){.badge = d->badge,
                       .size = d->size,
                       .life = rtcr_epoch_number(c->img->epochs[j]),
                       .dst = dst};
    c->n++;
    return 0;
}

int rtcr_image_materialize_into(const rtcr_image_t *img, uint64_t epoch, rtcr_image_ds_fn fn,
                                void *opaque, rtcr_image_err_t *err)
{
    const rtcr_epoch_t *ek;
    struct collect c = {0};
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
    for (size_t j = 0; j <= c.k && r >= 0; j++)
        r = apply_epoch(img->epochs[j], c.m, c.n, err);
out:
    free(c.m);
    return r;
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
};

void rtcr_memstate_destroy(rtcr_memstate_t **p)
{
    rtcr_memstate_t *m;

    if (!p || !*p)
        return;
    m = *p;
    for (size_t i = 0; i < m->n; i++)
        free(m->ds[i].data);
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

static int memstate_dst(void *opaque, uint32_t badge, uint64_t size, void **ret_dst)
{
    rtcr_memstate_t *m = opaque;
    uint8_t *data;

    if (size > m->max_ds || size > SIZE_MAX)
        return -E2BIG;
    if (m->n == m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 16;
        struct memds *nd = realloc(m->ds, nc * sizeof(*nd));
        if (!nd)
            return -ENOMEM;
        m->ds = nd;
        m->cap = nc;
    }
    data = calloc(1, (size_t)size);
    if (!data)
        return -ENOMEM;
    m->ds[m->n++] = (struct memds){.badge = badge, .size = size, .data = data};
    *ret_dst = data;
    return 0;
}

int rtcr_image_materialize(const rtcr_image_t *img, uint64_t epoch, rtcr_image_err_t *err,
                           rtcr_memstate_t **ret)
{
    rtcr_memstate_t *m;
    int r;

    if (!img || !ret)
        return -EINVAL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->max_ds = img->lim.max_dataspace;
    r = rtcr_image_materialize_into(img, epoch, memstate_dst, m, err);
    if (r < 0) {
        rtcr_memstate_destroy(&m);
        return r;
    }
    *ret = m;
    return 0;
}

/* ---- compaction --------------------------------------------------------------------------- */

int rtcr_image_compact(rtcr_image_t *img, uint64_t upto, rtcr_image_err_t *err,
                       const rtcr_epoch_t **ret_epoch)
{
    const rtcr_epoch_t *ek;
    const RtcrImg__EpochHeader *h;
    rtcr_memstate_t *m = NULL;
    rtcr_epoch_builder_t *b = NULL;
    rtcr_image_build_id_t *libs = NULL;
    rtcr_epoch_t *full = NULL;
    void *buf = NULL;
    size_t len, k;
    rtcr_image_limits_t lim;
    int r;

    if (err)
        err->msg[0] = '\0';
    if (!img)
        return -EINVAL;
    ek = rtcr_image_epoch(img, upto);
    if (!ek) {
        rtcr_image__err(err, "target '%s': epoch %llu is not in the chain", img->target,
                        (unsigned long long)upto);
        return -EINVAL;
    }
    h = ek->hdr;
    r = rtcr_image_materialize(img, upto, err, &m);
    if (r < 0)
        return r;
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
                        (unsigned long long)upto, r);
        goto out;
    }
    r = rtcr_epoch_finish(b, err, &buf, &len);
    if (r < 0)
        goto out;
    /* frames were produced from hash-checked data just now: skip decompressing them again */
    lim = img->lim;
    lim.skip_frame_check = true;
    r = rtcr_epoch_parse_owned(&buf, len, &lim, err, &full);
    if (r < 0)
        goto out;

    /* commit: epochs base..upto are replaced by `full` */
    k = upto - rtcr_image_first(img);
    for (size_t i = 0; i <= k; i++)
        rtcr_epoch_destroy(&img->epochs[i]);
    img->epochs[0] = full;
    memmove(&img->epochs[1], &img->epochs[k + 1], (img->n - k - 1) * sizeof(*img->epochs));
    img->n -= k;
    if (ret_epoch)
        *ret_epoch = full;
    r = 0;
out:
    free(buf);
    free(libs);
    rtcr_epoch_builder_destroy(&b);
    rtcr_memstate_destroy(&m);
    return r;
}
