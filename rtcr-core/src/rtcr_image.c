/* rtcr_image.c — the epoch container: building (compress, hash, frame) and parsing (validate).
 *
 * Container (all integers little-endian; docs/image-format.md has the full layout):
 *   fixed header (32 bytes): magic "RTCRIMG1", u16 version, u16 header size, u32 section
 *   count, u64 total length, u64 header hash = XXH3-64(section table, seed = XXH3-64(bytes
 *   0..23)); then the section table (32 bytes per section: u32 type, u32 flags, u64 offset,
 *   u64 length, u64 XXH3-64 of the section); then the sections back to back in table order,
 *   no gaps, the last one ending exactly at the total length. Every byte is therefore covered
 *   by a check: a flipped bit anywhere makes parsing fail.
 *
 * Writer: pages are cut into 4 KiB units relative to the run start; all-zero units become zero
 * runs, the rest is cut into frames of at most the frame size, each hashed (XXH3-64 of the
 * uncompressed bytes) and compressed as one LZ4 block; a block that does not shrink is stored
 * raw (stored length == uncompressed length marks it). The writer puts the DATA section first
 * and compresses every frame straight into its final place in the container buffer (sized up
 * front with rtcr_epoch_builder_reserve), so the page bytes are written once and never copied
 * again; HEADER, METADATA and PAGEMAP follow at finish. The DATA offset of every frame is
 * implicit (the running sum of stored lengths in index order); when a caller interleaved
 * dataspaces, finish reorders the frames into index order (the only case that copies).
 *
 * Reader: checks the fixed header and every length against the limits before allocating,
 * the section hashes before decoding, decodes the protobuf messages with a budgeted
 * allocator, checks them for consistency (validate first), and finally decompresses and
 * hash-checks every frame. Modelled on CRIU's image files (magic + protobuf entries + pages)
 * with the checksums CRIU lacks.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lz4.h>
#include <xxhash.h>

#include <rtcr/image.h>
#include <rtcr/kernel.h>

#include "rtcr_image_int.h"
#include "time_internal.h"

#define N_SECTIONS_WRITTEN 4u
/* where the DATA section starts in what the writer produces: right after the section table */
#define DATA_AT    (RTCR_IMAGE_FIXED_HDR + N_SECTIONS_WRITTEN * RTCR_IMAGE_SECTION_ENT)
#define BUDGET_HDR 16u /* per-block header of the budget allocator (keeps alignment) */

/* ---- small helpers ------------------------------------------------------------------------ */

void rtcr_image__err(rtcr_image_err_t *err, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

uint64_t rtcr_image__now_usec(bool realtime)
{
    return clock_usec(realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC);
}

bool rtcr_image__valid_name(const char *name)
{
    size_t n;

    if (!name || name[0] == '\0' || name[0] == '.')
        return false;
    for (n = 0; name[n]; n++) {
        char c = name[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n >= RTCR_IMAGE_NAME_MAX)
            return false;
    }
    return true;
}

void rtcr_image_limits_default(rtcr_image_limits_t *l)
{
    *l = (rtcr_image_limits_t){
        .max_total = RTCR_IMAGE_MAX_TOTAL,
        .max_header = RTCR_IMAGE_MAX_HEADER,
        .max_metadata = RTCR_IMAGE_MAX_METADATA,
        .max_pagemap = RTCR_IMAGE_MAX_PAGEMAP,
        .max_frames = RTCR_IMAGE_MAX_FRAMES,
        .max_frame_size = RTCR_IMAGE_MAX_FRAME_SIZE,
        .max_dataspace = RTCR_IMAGE_MAX_DATASPACE,
        .max_unpacked = RTCR_IMAGE_MAX_UNPACKED,
        .max_epochs = RTCR_IMAGE_MAX_EPOCHS,
        .skip_frame_check = false,
    };
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t header_hash(const uint8_t *buf, uint32_t n_sections)
{
    uint64_t seed = XXH3_64bits(buf, 24);

    return XXH3_64bits_withSeed(buf + RTCR_IMAGE_FIXED_HDR,
                                (size_t)n_sections * RTCR_IMAGE_SECTION_ENT, seed);
}

static const char *section_name(uint32_t type)
{
    switch (type) {
    case RTCR_IMAGE_SEC_HEADER:
        return "header";
    case RTCR_IMAGE_SEC_METADATA:
        return "metadata";
    case RTCR_IMAGE_SEC_PAGEMAP:
        return "pagemap";
    case RTCR_IMAGE_SEC_DATA:
        return "data";
    default:
        return "unknown";
    }
}

/* ---- budgeted protobuf-c allocator -------------------------------------------------------- */

static void *budget_alloc(void *opaque, size_t size)
{
    struct rtcr_image_budget *b = opaque;
    uint8_t *p;

    if (size > SIZE_MAX - BUDGET_HDR || size + BUDGET_HDR > b->max - b->used) {
        b->exceeded = true;
        return NULL;
    }
    p = malloc(size + BUDGET_HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof(size));
    b->used += size + BUDGET_HDR;
    return p + BUDGET_HDR;
}

static void budget_free(void *opaque, void *ptr)
{
    struct rtcr_image_budget *b = opaque;
    uint8_t *p = ptr;
    size_t size;

    if (!p)
        return;
    p -= BUDGET_HDR;
    memcpy(&size, p, sizeof(size));
    b->used -= size + BUDGET_HDR;
    free(p);
}

static void budget_init(struct rtcr_image_budget *b, uint64_t max)
{
    *b = (struct rtcr_image_budget){.max = max};
    b->pa.alloc = budget_alloc;
    b->pa.free = budget_free;
    b->pa.allocator_data = b;
}

/* ---- state validation (shared by writer and reader) --------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static int cmp_ds(const void *a, const void *b)
{
    return cmp_u32(&((const struct rtcr_image_ds *)a)->badge,
                   &((const struct rtcr_image_ds *)b)->badge);
}

const struct rtcr_image_ds *rtcr_image__ds_find(const struct rtcr_image_ds *ds, size_t n,
                                                uint32_t badge)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ds[mid].badge == badge)
            return &ds[mid];
        if (ds[mid].badge < badge)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* the oneof case that belongs to a session type, NOT_SET for unknown types */
static RtcrImg__Session__StateCase state_case_of(int type)
{
    switch (type) {
    case RTCR_IMG__SESSION_TYPE__SESSION_PD:
        return RTCR_IMG__SESSION__STATE_PD;
    case RTCR_IMG__SESSION_TYPE__SESSION_CPU:
        return RTCR_IMG__SESSION__STATE_CPU;
    case RTCR_IMG__SESSION_TYPE__SESSION_RAM:
        return RTCR_IMG__SESSION__STATE_RAM;
    case RTCR_IMG__SESSION_TYPE__SESSION_RM:
        return RTCR_IMG__SESSION__STATE_RM;
    case RTCR_IMG__SESSION_TYPE__SESSION_ROM:
        return RTCR_IMG__SESSION__STATE_ROM;
    case RTCR_IMG__SESSION_TYPE__SESSION_LOG:
        return RTCR_IMG__SESSION__STATE_LOG;
    case RTCR_IMG__SESSION_TYPE__SESSION_TIMER:
        return RTCR_IMG__SESSION__STATE_TIMER;
    case RTCR_IMG__SESSION_TYPE__SESSION_IRQ:
        return RTCR_IMG__SESSION__STATE_IRQ;
    default:
        return RTCR_IMG__SESSION__STATE__NOT_SET;
    }
}

static int check_region_maps(RtcrImg__RegionMap **rms, size_t n, char *why, size_t whylen)
{
    for (size_t i = 0; i < n; i++) {
        if (!rms[i] || rms[i]->badge == RTCR_BADGE_INVALID) {
            snprintf(why, whylen, "region map %zu: no badge", i);
            return -EBADMSG;
        }
        for (size_t k = 0; k < rms[i]->n_attachments; k++) {
            if (!rms[i]->attachments[k]) {
                snprintf(why, whylen, "region map 0x%x: attachment %zu missing", rms[i]->badge, k);
                return -EBADMSG;
            }
        }
    }
    return 0;
}

/* Check a stored state; on success return the sorted table of its RAM dataspaces (malloc'ed,
 * possibly NULL when there are none). -EBADMSG or -E2BIG with a reason in why, -ENOMEM. */
static int validate_state(const RtcrImg__StoredState *s, uint64_t max_ds, char *why, size_t whylen,
                          struct rtcr_image_ds **ret_ds, size_t *ret_n)
{
    uint32_t *badges = NULL;
    struct rtcr_image_ds *ds = NULL;
    uint8_t *slot_used = NULL;
    size_t n_ds = 0, n_ds_cap = 0;
    int r = -EBADMSG;

    badges = calloc(s->n_sessions ? s->n_sessions : 1, sizeof(*badges));
    if (!badges)
        return -ENOMEM;

    for (size_t i = 0; i < s->n_sessions; i++) {
        const RtcrImg__Session *se = s->sessions[i];
        RtcrImg__Session__StateCase want;

        if (!se) {
            snprintf(why, whylen, "session %zu missing", i);
            goto out;
        }
        if (se->badge == RTCR_BADGE_INVALID) {
            snprintf(why, whylen, "session %zu: no badge", i);
            goto out;
        }
        badges[i] = se->badge;
        want = state_case_of(se->type);
        if (se->state_case != RTCR_IMG__SESSION__STATE__NOT_SET &&
            (se->state_case != want || !se->pd)) {
            snprintf(why, whylen, "session 0x%x: state does not match its type %d", se->badge,
                     (int)se->type);
            goto out;
        }
        switch (se->state_case) {
        case RTCR_IMG__SESSION__STATE_PD: {
            const RtcrImg__PdSession *pd = se->pd;
            for (size_t k = 0; k < pd->n_signal_sources; k++)
                if (!pd->signal_sources[k]) {
                    snprintf(why, whylen, "session 0x%x: signal source missing", se->badge);
                    goto out;
                }
            for (size_t k = 0; k < pd->n_signal_contexts; k++)
                if (!pd->signal_contexts[k]) {
                    snprintf(why, whylen, "session 0x%x: signal context missing", se->badge);
                    goto out;
                }
            for (size_t k = 0; k < pd->n_native_caps; k++)
                if (!pd->native_caps[k] || pd->native_caps[k]->ep_thread >= RTCR_THREAD_MAX) {
                    snprintf(why, whylen, "session 0x%x: native cap %zu: bad entrypoint", se->badge,
                             k);
                    goto out;
                }
            r = check_region_maps(pd->region_maps, pd->n_region_maps, why, whylen);
            if (r < 0)
                goto out;
            r = -EBADMSG;
            break;
        }
        case RTCR_IMG__SESSION__STATE_CPU:
            for (size_t k = 0; k < se->cpu->n_threads; k++) {
                const RtcrImg__Thread *t = se->cpu->threads[k];
                if (!t || t->index >= RTCR_THREAD_MAX) {
                    snprintf(why, whylen, "session 0x%x: thread %zu: bad index", se->badge, k);
                    goto out;
                }
            }
            break;
        case RTCR_IMG__SESSION__STATE_RAM:
            for (size_t k = 0; k < se->ram->n_dataspaces; k++) {
                const RtcrImg__Dataspace *d = se->ram->dataspaces[k];
                if (!d || d->badge == RTCR_BADGE_INVALID || d->size == 0) {
                    snprintf(why, whylen, "session 0x%x: dataspace %zu: no badge or size 0",
                             se->badge, k);
                    goto out;
                }
                if (d->size > max_ds) {
                    snprintf(why, whylen, "dataspace 0x%x: size %llu above the limit %llu",
                             d->badge, (unsigned long long)d->size, (unsigned long long)max_ds);
                    r = -E2BIG;
                    goto out;
                }
                if (n_ds == n_ds_cap) {
                    size_t nc = n_ds_cap ? 2 * n_ds_cap : 16;
                    struct rtcr_image_ds *nd = realloc(ds, nc * sizeof(*nd));
                    if (!nd) {
                        r = -ENOMEM;
                        goto out;
                    }
                    ds = nd;
                    n_ds_cap = nc;
                }
                ds[n_ds++] = (struct rtcr_image_ds){.badge = d->badge, .size = d->size};
            }
            break;
        case RTCR_IMG__SESSION__STATE_RM:
            r = check_region_maps(se->rm->region_maps, se->rm->n_region_maps, why, whylen);
            if (r < 0)
                goto out;
            r = -EBADMSG;
            break;
        default:
            break;
        }
    }
    qsort(badges, s->n_sessions, sizeof(*badges), cmp_u32);
    for (size_t i = 1; i < s->n_sessions; i++)
        if (badges[i] == badges[i - 1]) {
            snprintf(why, whylen, "session badge 0x%x used twice", badges[i]);
            goto out;
        }
    if (n_ds)
        qsort(ds, n_ds, sizeof(*ds), cmp_ds);
    for (size_t i = 1; i < n_ds; i++)
        if (ds[i].badge == ds[i - 1].badge) {
            snprintf(why, whylen, "dataspace badge 0x%x declared twice", ds[i].badge);
            goto out;
        }

    if (s->cap_space) {
        slot_used = calloc(RTCR_CAP_SLOTS, 1);
        if (!slot_used) {
            r = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < s->cap_space->n_entries; i++) {
            const RtcrImg__CapEntry *ce = s->cap_space->entries[i];
            if (!ce || ce->slot >= RTCR_CAP_SLOTS) {
                snprintf(why, whylen, "cap entry %zu: slot out of range", i);
                goto out;
            }
            if (slot_used[ce->slot]) {
                snprintf(why, whylen, "cap slot %u used twice", ce->slot);
                goto out;
            }
            slot_used[ce->slot] = 1;
        }
    }
    *ret_ds = ds;
    *ret_n = n_ds;
    ds = NULL;
    r = 0;
out:
    free(slot_used);
    free(badges);
    free(ds);
    return r;
}

/* ---- frames ------------------------------------------------------------------------------- */

int rtcr_image__frame_decode(const uint8_t *src, uint32_t stored, uint8_t *dst, uint32_t ulen,
                             uint64_t hash, const char **why)
{
    if (stored == ulen) {
        memcpy(dst, src, ulen);
    } else {
        int n = LZ4_decompress_safe((const char *)src, (char *)dst, (int)stored, (int)ulen);
        if (n < 0 || (uint32_t)n != ulen) {
            *why = "decompression failed";
            return -EBADMSG;
        }
    }
    if (XXH3_64bits(dst, ulen) != hash) {
        *why = "hash mismatch";
        return -EBADMSG;
    }
    return 0;
}

/* ---- builder ------------------------------------------------------------------------------ */

struct brun {
    uint64_t offset;    /* byte offset in the dataspace */
    uint64_t length;    /* bytes */
    bool zero;          /* zero run */
    size_t first_frame; /* version 1: index of its first frame in the dataspace's arrays */
    size_t n_frames;    /* version 1: frames of the run */
};

struct bds {
    uint32_t badge;    /* dataspace */
    struct brun *runs; /* ascending runs */
    size_t n_runs;     /* used entries of runs */
    size_t cap_runs;   /* allocated entries of runs */
    uint32_t *fsize;   /* uncompressed bytes per frame (of the concatenated data runs) */
    uint32_t *fstored; /* stored bytes per frame */
    uint64_t *fhash;   /* XXH3-64 per frame */
    uint64_t *foff;    /* where each frame starts in the builder's stream */
    size_t n_frames;   /* used entries of the frame arrays */
    size_t cap_frames; /* allocated entries of the frame arrays */
    size_t data_len;   /* stored bytes of this dataspace's frames */
};

struct rtcr_epoch_builder {
    char *target;              /* target name */
    char *source_ecu;          /* ECU name or "" */
    char *tracking_mode;       /* tracker name or "" */
    uint8_t *build_id;         /* target build id */
    size_t build_id_len;       /* bytes of build_id */
    RtcrImg__BuildId *libs;    /* library build ids (name and id owned) */
    size_t n_libs;             /* entries of libs */
    uint64_t epoch;            /* epoch number */
    uint64_t parent;           /* parent epoch, 0 = full */
    uint64_t created_usec;     /* realtime creation time */
    uint32_t granularity;      /* tracking unit */
    uint64_t incarnation;      /* agent incarnation */
    uint64_t compacted_from;   /* set by compaction */
    uint64_t start_usec;       /* monotonic start of encoding */
    RtcrImg__EpochStats stats; /* statistics so far */
    uint8_t *meta;             /* serialised StoredState */
    size_t meta_len;           /* bytes of meta */
    struct rtcr_image_ds *ds;  /* declared dataspaces of meta, sorted */
    size_t n_ds;               /* entries of ds */
    struct bds *bds;           /* dataspaces with pages, in first-use order */
    size_t n_bds;              /* used entries of bds */
    size_t cap_bds;            /* allocated entries of bds */
    size_t last_bds;           /* index of the last used entry (lookup cache) */
    uint64_t total_frames;     /* frames over all dataspaces */
    uint64_t total_data;       /* stored bytes over all dataspaces */
    uint32_t frame_size;       /* frame size for new frames */
    void (*progress)(void *);  /* called after every frame, or NULL */
    void *progress_ctx;        /* its argument */
    uint16_t version;          /* container format version to write */
    uint8_t *out;              /* container being built: DATA stream from DATA_AT on */
    size_t out_cap;            /* allocated bytes of out */
    size_t stream_len;         /* stored frame bytes in out, in the order they were added */
    bool finished;             /* finish() ran */
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t nc;
    void *np;

    if (need <= *cap)
        return 0;
    nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem)
            return -ENOMEM;
        nc *= 2;
    }
    np = realloc(*p, nc * elem);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = nc;
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

void rtcr_epoch_builder_destroy(rtcr_epoch_builder_t **p)
{
    rtcr_epoch_builder_t *b;

    if (!p || !*p)
        return;
    b = *p;
    free(b->target);
    free(b->source_ecu);
    free(b->tracking_mode);
    free(b->build_id);
    for (size_t i = 0; i < b->n_libs; i++) {
        free(b->libs[i].name);
        free(b->libs[i].id.data);
    }
    free(b->libs);
    free(b->meta);
    free(b->ds);
    for (size_t i = 0; i < b->n_bds; i++) {
        free(b->bds[i].runs);
        free(b->bds[i].fsize);
        free(b->bds[i].fstored);
        free(b->bds[i].fhash);
        free(b->bds[i].foff);
    }
    free(b->bds);
    free(b->out);
    free(b);
    *p = NULL;
}

int rtcr_epoch_builder_new(const rtcr_epoch_info_t *info, rtcr_epoch_builder_t **ret)
{
    rtcr_epoch_builder_t *b;

    if (!info || !ret || !rtcr_image__valid_name(info->target) || info->epoch == 0)
        return -EINVAL;
    if (info->parent != 0 && info->parent != info->epoch - 1)
        return -EINVAL;
    if (info->build_id_len > RTCR_IMAGE_BUILD_ID_MAX || (info->build_id_len && !info->build_id))
        return -EINVAL;
    if (info->n_libs > RTCR_IMAGE_LIBS_MAX || (info->n_libs && !info->libs))
        return -EINVAL;
    for (size_t i = 0; i < info->n_libs; i++)
        if (info->libs[i].len > RTCR_IMAGE_BUILD_ID_MAX || (info->libs[i].len && !info->libs[i].id))
            return -EINVAL;

    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->start_usec = rtcr_image__now_usec(false);
    b->target = strdup(info->target);
    b->source_ecu = dup_or_empty(info->source_ecu);
    b->tracking_mode = dup_or_empty(info->tracking_mode);
    b->build_id = malloc(info->build_id_len ? info->build_id_len : 1);
    b->libs = calloc(info->n_libs ? info->n_libs : 1, sizeof(*b->libs));
    if (!b->target || !b->source_ecu || !b->tracking_mode || !b->build_id || !b->libs)
        goto oom;
    if (info->build_id_len)
        memcpy(b->build_id, info->build_id, info->build_id_len);
    b->build_id_len = info->build_id_len;
    for (size_t i = 0; i < info->n_libs; i++) {
        RtcrImg__BuildId *l = &b->libs[i];
        rtcr_img__build_id__init(l);
        b->n_libs = i + 1;
        l->name = dup_or_empty(info->libs[i].name);
        l->id.data = malloc(info->libs[i].len ? info->libs[i].len : 1);
        if (!l->name || !l->id.data)
            goto oom;
        if (info->libs[i].len)
            memcpy(l->id.data, info->libs[i].id, info->libs[i].len);
        l->id.len = info->libs[i].len;
    }
    b->epoch = info->epoch;
    b->parent = info->parent;
    b->created_usec = info->created_usec ? info->created_usec : rtcr_image__now_usec(true);
    b->granularity = info->granularity;
    b->incarnation = info->agent_incarnation;
    rtcr_img__epoch_stats__init(&b->stats);
    b->stats.pages_scanned = info->pages_scanned;
    b->stats.freeze_usec = info->freeze_usec;
    b->frame_size = RTCR_IMAGE_FRAME_SIZE;
    b->version = RTCR_IMAGE_VERSION;
    *ret = b;
    return 0;
oom:
    rtcr_epoch_builder_destroy(&b);
    return -ENOMEM;
}

int rtcr_image__builder_set_version(rtcr_epoch_builder_t *b, uint16_t version)
{
    if (!b || b->finished || b->n_bds || version < RTCR_IMAGE_VERSION_MIN ||
        version > RTCR_IMAGE_VERSION)
        return -EINVAL;
    b->version = version;
    return 0;
}

void rtcr_image__builder_set_compacted(rtcr_epoch_builder_t *b, uint64_t from)
{
    b->compacted_from = from;
}

int rtcr_epoch_builder_set_frame_size(rtcr_epoch_builder_t *b, uint32_t size)
{
    if (!b || size == 0 || size > RTCR_IMAGE_MAX_FRAME_SIZE)
        return -EINVAL;
    b->frame_size = size;
    return 0;
}

/* make room in out for `stream` bytes of frames after DATA_AT (doubling, like grow) */
static int out_room(rtcr_epoch_builder_t *b, size_t stream)
{
    if (stream > SIZE_MAX - DATA_AT)
        return -ENOMEM;
    return grow((void **)&b->out, &b->out_cap, DATA_AT + stream, 1);
}

/* Bytes of output that `raw_bytes` more of pages can take at most: the sum of the frames'
 * LZ4 bounds when every 4 KiB unit is a frame of its own, after what the builder holds,
 * rounded up to RESERVE_GRAIN so that epochs of about the same size ask for the same size
 * (and can take each other's containers, see rtcr_epoch_builder_reserve_recycled). */
#define RESERVE_GRAIN ((size_t)64 << 10)
static int reserve_size(const rtcr_epoch_builder_t *b, uint64_t raw_bytes, size_t *ret)
{
    if (!b || b->finished)
        return -EINVAL;
    if (raw_bytes > RTCR_IMAGE_MAX_TOTAL)
        return -E2BIG;
    size_t units = (size_t)raw_bytes / RTCR_IMAGE_ZERO_UNIT + 1;
    size_t need =
        DATA_AT + b->stream_len + (size_t)raw_bytes + (size_t)raw_bytes / 255u + units * 16u;
    *ret = (need + RESERVE_GRAIN - 1) / RESERVE_GRAIN * RESERVE_GRAIN;
    return 0;
}

int rtcr_epoch_builder_reserve(rtcr_epoch_builder_t *b, uint64_t raw_bytes)
{
    size_t need;
    int r = reserve_size(b, raw_bytes, &need);

    if (r < 0)
        return r;
    if (b->out_cap >= need)
        return 0;
    uint8_t *np = realloc(b->out, need);
    if (!np)
        return -ENOMEM;
    b->out = np;
    b->out_cap = need;
    return 0;
}

int rtcr_epoch_builder_reserve_recycled(rtcr_epoch_builder_t *b, uint64_t raw_bytes,
                                        rtcr_image_t *img)
{
    size_t need, cap;
    int r = reserve_size(b, raw_bytes, &need);

    if (r < 0)
        return r;
    if (b->out_cap >= need)
        return 0;
    if (b->stream_len == 0) {
        uint8_t *sp = rtcr_image__take_spare(img, need, &cap);
        if (sp && rtcr_image__builder_give(b, sp, cap) == 0)
            return 1;
    }
    return rtcr_epoch_builder_reserve(b, raw_bytes);
}

size_t rtcr_image__reserve_need(uint64_t raw_bytes)
{
    rtcr_epoch_builder_t empty = {0};
    size_t need = 0;

    return reserve_size(&empty, raw_bytes, &need) == 0 ? need : SIZE_MAX;
}

int rtcr_image__builder_give(rtcr_epoch_builder_t *b, uint8_t *buf, size_t cap)
{
    if (!b || b->finished || b->stream_len != 0) {
        free(buf);
        return -EINVAL;
    }
    free(b->out);
    b->out = buf;
    b->out_cap = cap;
    return 0;
}

uint8_t *rtcr_image__epoch_take_buf(rtcr_epoch_t *e, size_t *ret_cap)
{
    uint8_t *buf = e->buf;

    e->buf = NULL;
    *ret_cap = buf ? malloc_usable_size(buf) : 0;
    return buf;
}

int rtcr_epoch_builder_set_metadata_blob(rtcr_epoch_builder_t *b, const void *buf, size_t len)
{
    struct rtcr_image_budget budget;
    RtcrImg__StoredState *s;
    struct rtcr_image_ds *ds = NULL;
    size_t n_ds = 0;
    uint8_t *copy;
    char why[160];
    int r;

    if (!b || (!buf && len) || b->finished)
        return -EINVAL;
    if (len > RTCR_IMAGE_MAX_METADATA)
        return -E2BIG;
    budget_init(&budget, RTCR_IMAGE_MAX_UNPACKED);
    s = rtcr_img__stored_state__unpack(&budget.pa, len, buf);
    if (!s)
        return budget.exceeded ? -E2BIG : -EBADMSG;
    r = validate_state(s, RTCR_IMAGE_MAX_DATASPACE, why, sizeof(why), &ds, &n_ds);
    rtcr_img__stored_state__free_unpacked(s, &budget.pa);
    if (r < 0)
        return r == -EBADMSG ? -EINVAL : r;
    copy = malloc(len ? len : 1);
    if (!copy) {
        free(ds);
        return -ENOMEM;
    }
    if (len)
        memcpy(copy, buf, len);
    free(b->meta);
    free(b->ds);
    b->meta = copy;
    b->meta_len = len;
    b->ds = ds;
    b->n_ds = n_ds;
    return 0;
}

int rtcr_epoch_builder_set_metadata(rtcr_epoch_builder_t *b, const RtcrImg__StoredState *state)
{
    struct rtcr_image_ds *ds = NULL;
    size_t len, n_ds = 0;
    uint8_t *buf;
    char why[160];
    int r;

    if (!b || !state || b->finished)
        return -EINVAL;
    /* validate the caller's structs before protobuf-c walks them (NULL entries) */
    r = validate_state(state, RTCR_IMAGE_MAX_DATASPACE, why, sizeof(why), &ds, &n_ds);
    free(ds);
    if (r < 0)
        return r == -EBADMSG ? -EINVAL : r;
    len = rtcr_img__stored_state__get_packed_size(state);
    if (len > RTCR_IMAGE_MAX_METADATA)
        return -E2BIG;
    buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    rtcr_img__stored_state__pack(state, buf);
    /* round trip through the reader's checks, so the writer never emits what it rejects */
    r = rtcr_epoch_builder_set_metadata_blob(b, buf, len);
    free(buf);
    return r;
}

static struct bds *bds_get(rtcr_epoch_builder_t *b, uint32_t badge, bool create)
{
    if (b->n_bds && b->bds[b->last_bds].badge == badge)
        return &b->bds[b->last_bds];
    for (size_t i = 0; i < b->n_bds; i++)
        if (b->bds[i].badge == badge) {
            b->last_bds = i;
            return &b->bds[i];
        }
    if (!create || grow((void **)&b->bds, &b->cap_bds, b->n_bds + 1, sizeof(*b->bds)) < 0)
        return NULL;
    b->bds[b->n_bds] = (struct bds){.badge = badge};
    b->last_bds = b->n_bds;
    return &b->bds[b->n_bds++];
}

/* Append one run (zero, or data). With `frames_in_run` (format version 1) the run owns the
 * frames [first_frame, first_frame + n_frames) and extends the previous run only if their
 * frames are contiguous; in version 2 frames belong to the dataspace and runs merge freely. */
static int bds_add_run(struct bds *d, uint64_t offset, uint64_t length, bool zero,
                       size_t first_frame, size_t n_frames, bool frames_in_run)
{
    struct brun *last = d->n_runs ? &d->runs[d->n_runs - 1] : NULL;

    if (last && last->zero == zero && last->offset + last->length == offset &&
        (zero || !frames_in_run || last->first_frame + last->n_frames == first_frame)) {
        last->length += length;
        last->n_frames += n_frames;
        return 0;
    }
    if (grow((void **)&d->runs, &d->cap_runs, d->n_runs + 1, sizeof(*d->runs)) < 0)
        return -ENOMEM;
    d->runs[d->n_runs++] = (struct brun){.offset = offset,
                                         .length = length,
                                         .zero = zero,
                                         .first_frame = first_frame,
                                         .n_frames = n_frames};
    return 0;
}

static const uint8_t zero_unit[RTCR_IMAGE_ZERO_UNIT];

static bool is_zero(const uint8_t *p, size_t n)
{
    return memcmp(p, zero_unit, n) == 0;
}

static uint64_t units(uint64_t len)
{
    return (len + RTCR_IMAGE_ZERO_UNIT - 1) / RTCR_IMAGE_ZERO_UNIT;
}

/* checks shared by add_pages / add_zero */
static int add_check(rtcr_epoch_builder_t *b, uint32_t badge, uint64_t offset, uint64_t len)
{
    struct bds *d;

    if (!b || b->finished || badge == RTCR_BADGE_INVALID)
        return -EINVAL;
    if (offset > RTCR_IMAGE_MAX_DATASPACE || len > RTCR_IMAGE_MAX_DATASPACE - offset)
        return -EINVAL;
    d = bds_get(b, badge, false);
    if (d && d->n_runs) {
        const struct brun *last = &d->runs[d->n_runs - 1];
        if (offset < last->offset + last->length)
            return -EINVAL;
    }
    return 0;
}

/* Room for `need` entries in each of d's four frame arrays (one capacity for all). An array
 * grown before a later one fails keeps its contents; the capacity stays the old one. */
static int grow_frames(struct bds *d, size_t need)
{
    size_t cap = d->cap_frames;
    void **arrays[4] = {(void **)&d->fsize, (void **)&d->fstored, (void **)&d->fhash,
                        (void **)&d->foff};
    const size_t elem[4] = {sizeof(*d->fsize), sizeof(*d->fstored), sizeof(*d->fhash),
                            sizeof(*d->foff)};

    for (int i = 0; i < 4; i++) {
        cap = d->cap_frames;
        if (grow(arrays[i], &cap, need, elem[i]) < 0)
            return -ENOMEM;
    }
    d->cap_frames = cap;
    return 0;
}

/* Compress `ulen` (1 .. frame size) bytes at p as the next frame of d, appended to the
 * builder's stream in out. The caller rolls back on failure (see add_runs). */
static int put_frame(rtcr_epoch_builder_t *b, struct bds *d, const uint8_t *p, uint32_t ulen)
{
    size_t bound = (size_t)LZ4_compressBound((int)ulen), i = d->n_frames;
    int c;

    if (b->total_frames >= RTCR_IMAGE_MAX_FRAMES)
        return -E2BIG;
    if (grow_frames(d, i + 1) < 0 || out_room(b, b->stream_len + bound) < 0)
        return -ENOMEM;
    char *dst = (char *)b->out + DATA_AT + b->stream_len;
    c = LZ4_compress_default((const char *)p, dst, (int)ulen, (int)bound);
    if (c <= 0 || (uint32_t)c >= ulen) {
        memcpy(dst, p, ulen); /* LZ4 does not shrink it: stored raw */
        c = (int)ulen;
    }
    if (b->total_data + (uint64_t)c > RTCR_IMAGE_MAX_TOTAL)
        return -E2BIG;
    d->fsize[i] = ulen;
    d->fstored[i] = (uint32_t)c;
    d->fhash[i] = XXH3_64bits(p, ulen);
    d->foff[i] = b->stream_len;
    d->n_frames = i + 1;
    d->data_len += (size_t)c;
    b->stream_len += (size_t)c;
    b->total_frames++;
    b->total_data += (uint64_t)c;
    b->stats.frames++;
    return 0;
}

/* Non-zero bytes of the current add_runs call not compressed yet: contiguous in the caller's
 * memory, so a frame can be compressed in place from them. */
struct pending {
    const uint8_t *p; /* first byte */
    size_t len;       /* bytes */
};

/* Cut frames from the pending bytes: every whole frame, and the rest too if `all`. */
static int drain(rtcr_epoch_builder_t *b, struct bds *d, struct pending *pd, bool all)
{
    while (pd->len >= b->frame_size || (all && pd->len > 0)) {
        uint32_t n = pd->len < b->frame_size ? (uint32_t)pd->len : b->frame_size;
        int r = put_frame(b, d, pd->p, n);
        if (r < 0)
            return r;
        pd->p += n;
        pd->len -= n;
        if (b->progress)
            b->progress(b->progress_ctx);
    }
    return 0;
}

void rtcr_epoch_builder_set_progress(rtcr_epoch_builder_t *b, void (*fn)(void *ctx), void *ctx)
{
    b->progress = fn;
    b->progress_ctx = ctx;
}

/* Add one stretch [p, p+len) at `offset`, all zero or all non-zero units, to d. Data joins
 * the pending bytes (which are drained first when p does not continue them in memory); in
 * format version 1 the frames of a run must lie inside it, so the stretch is drained whole. */
static int add_stretch(rtcr_epoch_builder_t *b, struct bds *d, struct pending *pd, uint64_t offset,
                       const uint8_t *p, size_t len, bool zero)
{
    size_t f0 = d->n_frames;
    int r;

    if (zero) {
        r = bds_add_run(d, offset, len, true, f0, 0, false);
        if (r == 0)
            b->stats.pages_zero += units(len);
        return r;
    }
    if (pd->len && pd->p + pd->len != p && (r = drain(b, d, pd, true)) < 0)
        return r;
    if (!pd->len)
        pd->p = p;
    pd->len += len;
    r = drain(b, d, pd, b->version < 2);
    if (r == 0)
        r = bds_add_run(d, offset, len, false, f0, d->n_frames - f0, b->version < 2);
    if (r == 0) {
        b->stats.bytes_raw += len;
        b->stats.pages_written += units(len);
    }
    return r;
}

int rtcr_epoch_add_zero(rtcr_epoch_builder_t *b, uint32_t ds_badge, uint64_t offset, uint64_t len)
{
    struct bds *d;
    int r;

    r = add_check(b, ds_badge, offset, len);
    if (r < 0 || len == 0)
        return r;
    d = bds_get(b, ds_badge, true);
    if (!d)
        return -ENOMEM;
    r = bds_add_run(d, offset, len, true, d->n_frames, 0, false);
    if (r < 0)
        return r;
    b->stats.pages_zero += units(len);
    return 0;
}

int rtcr_epoch_add_runs(rtcr_epoch_builder_t *b, uint32_t ds_badge, const rtcr_epoch_run_t *runs,
                        size_t n, const void *data)
{
    const uint8_t *p = data;
    struct pending pd = {0};
    struct bds *d;
    size_t total = 0, at = 0;
    int r = 0;

    if (!b || (!runs && n))
        return -EINVAL;
    /* validate everything first: ascending, inside the limits, after what d already has */
    for (size_t i = 0, prev = SIZE_MAX; i < n; i++) {
        if (!runs[i].len)
            continue;
        r = add_check(b, ds_badge, runs[i].offset, runs[i].len);
        if (r < 0)
            return r;
        if (prev != SIZE_MAX && runs[i].offset < runs[prev].offset + runs[prev].len)
            return -EINVAL;
        if (runs[i].len > SIZE_MAX - total)
            return -EINVAL;
        total += runs[i].len;
        prev = i;
    }
    if (!total)
        return 0;
    if (!data)
        return -EINVAL;
    d = bds_get(b, ds_badge, true);
    if (!d)
        return -ENOMEM;
    /* A failure after the first stretch leaves earlier stretches added; the contract says
     * "unchanged", so remember the state and roll back. */
    size_t runs0 = d->n_runs, frames0 = d->n_frames, data0 = d->data_len, s0 = b->stream_len;
    struct brun last0 = runs0 ? d->runs[runs0 - 1] : (struct brun){0};
    RtcrImg__EpochStats stats0 = b->stats;
    uint64_t tf0 = b->total_frames, td0 = b->total_data;

    /* each run alternates maximal zero and non-zero stretches of whole units (relative to
     * the run's offset) */
    for (size_t i = 0; i < n && r >= 0; i++) {
        const uint8_t *q = p + at;
        size_t len = runs[i].len, pos = 0;

        at += len;
        while (pos < len && r >= 0) {
            size_t end = pos;
            bool zero = is_zero(q + pos, len - pos < RTCR_IMAGE_ZERO_UNIT ? len - pos
                                                                          : RTCR_IMAGE_ZERO_UNIT);
            while (end < len) {
                size_t u = len - end < RTCR_IMAGE_ZERO_UNIT ? len - end : RTCR_IMAGE_ZERO_UNIT;
                if (is_zero(q + end, u) != zero)
                    break;
                end += u;
            }
            r = add_stretch(b, d, &pd, runs[i].offset + pos, q + pos, end - pos, zero);
            pos = end;
        }
    }
    if (r >= 0)
        r = drain(b, d, &pd, true);
    if (r < 0) {
        d->n_runs = runs0;
        if (runs0)
            d->runs[runs0 - 1] = last0;
        d->n_frames = frames0;
        d->data_len = data0;
        b->stream_len = s0;
        b->stats = stats0;
        b->total_frames = tf0;
        b->total_data = td0;
    }
    return r;
}

int rtcr_epoch_add_pages(rtcr_epoch_builder_t *b, uint32_t ds_badge, uint64_t offset,
                         const void *data, size_t len)
{
    const rtcr_epoch_run_t run = {.offset = offset, .len = len};

    if (!data && len)
        return -EINVAL;
    return rtcr_epoch_add_runs(b, ds_badge, &run, 1, data);
}

/* build the PageIndex message pointing into the builder's arrays; frees with index_free */
static int build_index(rtcr_epoch_builder_t *b, RtcrImg__PageIndex *idx,
                       RtcrImg__DataspacePages **ret_dp, RtcrImg__PageRun **ret_runs,
                       RtcrImg__PageRun ***ret_runp)
{
    size_t n_runs = 0, k = 0;
    RtcrImg__DataspacePages *dp;
    RtcrImg__DataspacePages **dpp;
    RtcrImg__PageRun *runs, **runp;

    for (size_t i = 0; i < b->n_bds; i++)
        n_runs += b->bds[i].n_runs;
    dp = calloc(b->n_bds ? b->n_bds : 1, sizeof(*dp));
    dpp = calloc(b->n_bds ? b->n_bds : 1, sizeof(*dpp));
    runs = calloc(n_runs ? n_runs : 1, sizeof(*runs));
    runp = calloc(n_runs ? n_runs : 1, sizeof(*runp));
    if (!dp || !dpp || !runs || !runp) {
        free(dp);
        free(dpp);
        free(runs);
        free(runp);
        return -ENOMEM;
    }
    rtcr_img__page_index__init(idx);
    idx->dataspaces = dpp;
    for (size_t i = 0, o = 0; i < b->n_bds; i++) {
        struct bds *d = &b->bds[i];
        if (!d->n_runs)
            continue;
        rtcr_img__dataspace_pages__init(&dp[o]);
        dpp[o] = &dp[o];
        dp[o].badge = d->badge;
        dp[o].n_runs = d->n_runs;
        dp[o].runs = &runp[k];
        if (b->version >= 2) {
            dp[o].n_frame_size = dp[o].n_frame_stored = dp[o].n_frame_hash = d->n_frames;
            dp[o].frame_size = d->fsize;
            dp[o].frame_stored = d->fstored;
            dp[o].frame_hash = d->fhash;
        }
        idx->n_dataspaces = ++o;
        for (size_t j = 0; j < d->n_runs; j++, k++) {
            const struct brun *br = &d->runs[j];
            RtcrImg__PageRun *pr = &runs[k];
            rtcr_img__page_run__init(pr);
            runp[k] = pr;
            pr->offset = br->offset;
            pr->length = br->length;
            pr->zero = br->zero;
            if (!br->zero && b->version < 2) {
                pr->n_frame_size = pr->n_frame_stored = pr->n_frame_hash = br->n_frames;
                pr->frame_size = d->fsize + br->first_frame;
                pr->frame_stored = d->fstored + br->first_frame;
                pr->frame_hash = d->fhash + br->first_frame;
            }
        }
    }
    *ret_dp = dp;
    *ret_runs = runs;
    *ret_runp = runp;
    return 0;
}

/* The stream holds the frames in the order they were added; DATA needs them in PageIndex order
 * (dataspaces in first-use order, each one's frames in order). They agree unless the caller
 * interleaved dataspaces; then reorder through a scratch copy. Leaves out holding exactly
 * total_data bytes of frames at DATA_AT (allocating it when nothing was added). */
static int order_stream(rtcr_epoch_builder_t *b)
{
    uint64_t expect = 0;
    bool in_order = true;
    uint8_t *tmp;

    if (out_room(b, b->stream_len) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < b->n_bds && in_order; i++)
        for (size_t k = 0; k < b->bds[i].n_frames && in_order; k++) {
            in_order = b->bds[i].foff[k] == expect;
            expect += b->bds[i].fstored[k];
        }
    if (in_order && b->stream_len == b->total_data)
        return 0;
    tmp = malloc(b->total_data ? b->total_data : 1);
    if (!tmp)
        return -ENOMEM;
    expect = 0;
    for (size_t i = 0; i < b->n_bds; i++)
        for (size_t k = 0; k < b->bds[i].n_frames; k++) {
            memcpy(tmp + expect, b->out + DATA_AT + b->bds[i].foff[k], b->bds[i].fstored[k]);
            b->bds[i].foff[k] = expect;
            expect += b->bds[i].fstored[k];
        }
    memcpy(b->out + DATA_AT, tmp, expect);
    b->stream_len = expect;
    free(tmp);
    return 0;
}

#define SHRINK_SLACK ((size_t)4 << 20)

int rtcr_epoch_finish(rtcr_epoch_builder_t *b, rtcr_image_err_t *err, void **ret_buf,
                      size_t *ret_len)
{
    RtcrImg__PageIndex idx;
    RtcrImg__DataspacePages *dp = NULL;
    RtcrImg__PageRun *runs = NULL, **runp = NULL;
    RtcrImg__EpochHeader hdr;
    RtcrImg__BuildId **libp = NULL;
    uint8_t *out = NULL, *p;
    size_t hdr_len, map_len, total;
    size_t lens[N_SECTIONS_WRITTEN];
    int r;

    if (!b || !ret_buf || !ret_len || b->finished) {
        rtcr_image__err(err, "finish: bad argument or builder already finished");
        return -EINVAL;
    }
    if (!b->meta) {
        rtcr_image__err(err, "epoch %llu: no metadata set", (unsigned long long)b->epoch);
        return -EINVAL;
    }
    for (size_t i = 0; i < b->n_bds; i++) {
        const struct bds *d = &b->bds[i];
        const struct rtcr_image_ds *decl = rtcr_image__ds_find(b->ds, b->n_ds, d->badge);
        if (!d->n_runs)
            continue; /* left by a failed add: carries nothing */
        if (!decl) {
            rtcr_image__err(err,
                            "epoch %llu: pages of dataspace 0x%x, which the metadata "
                            "does not declare",
                            (unsigned long long)b->epoch, d->badge);
            return -EINVAL;
        }
        if (d->n_runs) {
            const struct brun *last = &d->runs[d->n_runs - 1];
            if (last->offset + last->length > decl->size) {
                rtcr_image__err(err,
                                "epoch %llu: dataspace 0x%x: pages up to %llu beyond its "
                                "size %llu",
                                (unsigned long long)b->epoch, d->badge,
                                (unsigned long long)(last->offset + last->length),
                                (unsigned long long)decl->size);
                return -EINVAL;
            }
        }
    }

    r = build_index(b, &idx, &dp, &runs, &runp);
    if (r < 0)
        return r;
    map_len = rtcr_img__page_index__get_packed_size(&idx);

    libp = calloc(b->n_libs ? b->n_libs : 1, sizeof(*libp));
    if (!libp) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < b->n_libs; i++)
        libp[i] = &b->libs[i];
    rtcr_img__epoch_header__init(&hdr);
    hdr.target = b->target;
    hdr.epoch = b->epoch;
    hdr.parent = b->parent;
    hdr.kind =
        b->parent ? RTCR_IMG__EPOCH_KIND__EPOCH_INCREMENTAL : RTCR_IMG__EPOCH_KIND__EPOCH_FULL;
    hdr.created_usec = b->created_usec;
    hdr.source_ecu = b->source_ecu;
    hdr.build_id.data = b->build_id;
    hdr.build_id.len = b->build_id_len;
    hdr.n_libraries = b->n_libs;
    hdr.libraries = libp;
    hdr.granularity = b->granularity;
    hdr.agent_incarnation = b->incarnation;
    hdr.metadata_hash = XXH3_64bits(b->meta, b->meta_len);
    hdr.tracking_mode = b->tracking_mode;
    hdr.compacted_from = b->compacted_from;
    b->stats.bytes_stored = b->total_data;
    b->stats.encode_usec = rtcr_image__now_usec(false) - b->start_usec;
    hdr.stats = &b->stats;
    hdr_len = rtcr_img__epoch_header__get_packed_size(&hdr);

    if (map_len > RTCR_IMAGE_MAX_PAGEMAP || hdr_len > RTCR_IMAGE_MAX_HEADER) {
        rtcr_image__err(err, "epoch %llu: page index (%zu bytes) or header above its limit",
                        (unsigned long long)b->epoch, map_len);
        r = -E2BIG;
        goto out;
    }
    total = DATA_AT + b->total_data + hdr_len + b->meta_len + map_len;
    if (total > RTCR_IMAGE_MAX_TOTAL) {
        rtcr_image__err(err, "epoch %llu: %zu bytes, above the limit", (unsigned long long)b->epoch,
                        total);
        r = -E2BIG;
        goto out;
    }
    if ((r = order_stream(b)) < 0)
        goto out;
    /* A container reserved for the worst case is kept as it is when it is at most twice what
     * the epoch needs or the difference is small: the pages past `total` were never touched
     * (they cost address space, not memory), and the container can be recycled for an epoch
     * of the same size (rtcr_epoch_builder_reserve_recycled). Larger slack is given back. */
    if (b->out_cap < total || (b->out_cap - total > total && b->out_cap - total > SHRINK_SLACK)) {
        if (!(out = realloc(b->out, total))) {
            r = -ENOMEM;
            goto out;
        }
    } else {
        out = b->out;
    }
    b->out = NULL; /* out owns it now */
    b->out_cap = 0;
    /* DATA is already in place at DATA_AT; the small sections follow it */
    lens[0] = b->total_data;
    p = out + DATA_AT + b->total_data;
    lens[1] = rtcr_img__epoch_header__pack(&hdr, p);
    p += lens[1];
    memcpy(p, b->meta, b->meta_len);
    lens[2] = b->meta_len;
    p += lens[2];
    lens[3] = rtcr_img__page_index__pack(&idx, p);
    p += lens[3];
    if (lens[1] != hdr_len || lens[3] != map_len || (size_t)(p - out) != total) {
        r = -EINVAL; /* protobuf-c packed differently than it sized: a programming error */
        goto out;
    }

    memcpy(out, RTCR_IMAGE_MAGIC, RTCR_IMAGE_MAGIC_LEN);
    put16(out + 8, b->version);
    put16(out + 10, RTCR_IMAGE_FIXED_HDR);
    put32(out + 12, N_SECTIONS_WRITTEN);
    put64(out + 16, total);
    {
        static const uint32_t types[N_SECTIONS_WRITTEN] = {
            RTCR_IMAGE_SEC_DATA, RTCR_IMAGE_SEC_HEADER, RTCR_IMAGE_SEC_METADATA,
            RTCR_IMAGE_SEC_PAGEMAP};
        size_t off = DATA_AT;
        for (uint32_t i = 0; i < N_SECTIONS_WRITTEN; i++) {
            uint8_t *e = out + RTCR_IMAGE_FIXED_HDR + i * RTCR_IMAGE_SECTION_ENT;
            put32(e, types[i]);
            put32(e + 4, 0);
            put64(e + 8, off);
            put64(e + 16, lens[i]);
            put64(e + 24, XXH3_64bits(out + off, lens[i]));
            off += lens[i];
        }
    }
    put64(out + 24, header_hash(out, N_SECTIONS_WRITTEN));

    b->finished = true;
    *ret_buf = out;
    *ret_len = total;
    out = NULL;
    r = 0;
out:
    free(out);
    free(libp);
    free(dp);
    free(idx.dataspaces);
    free(runs);
    free(runp);
    return r;
}

/* ---- parsing ------------------------------------------------------------------------------ */

void rtcr_epoch_destroy(rtcr_epoch_t **p)
{
    rtcr_epoch_t *e;

    if (!p || !*p)
        return;
    e = *p;
    if (e->hdr)
        rtcr_img__epoch_header__free_unpacked(e->hdr, &e->budget.pa);
    if (e->state)
        rtcr_img__stored_state__free_unpacked(e->state, &e->budget.pa);
    if (e->index)
        rtcr_img__page_index__free_unpacked(e->index, &e->budget.pa);
    free(e->ds);
    free(e->frames);
    free(e->pieces);
    free(e->ds_frame0);
    free(e->buf);
    free(e);
    *p = NULL;
}

struct section {
    uint32_t type;   /* RTCR_IMAGE_SEC_* */
    uint64_t offset; /* from the start of the buffer */
    uint64_t length; /* bytes */
};

/* Check the fixed header and section table of buf (hashes included) and locate the four known
 * sections. `what` prefixes messages. */
static int parse_container(const uint8_t *buf, size_t len, const rtcr_image_limits_t *lim,
                           rtcr_image_err_t *err, struct section sec[RTCR_IMAGE_SEC_MAX])
{
    uint32_t n, version;
    uint64_t total, off;

    if (len < RTCR_IMAGE_FIXED_HDR) {
        rtcr_image__err(err, "image: truncated: %zu bytes, the fixed header needs %u", len,
                        RTCR_IMAGE_FIXED_HDR);
        return -EBADMSG;
    }
    if (memcmp(buf, RTCR_IMAGE_MAGIC, RTCR_IMAGE_MAGIC_LEN) != 0) {
        rtcr_image__err(err, "image: bad magic (not an RTCR image)");
        return -EBADMSG;
    }
    version = get16(buf + 8);
    if (version < RTCR_IMAGE_VERSION_MIN || version > RTCR_IMAGE_VERSION) {
        rtcr_image__err(err, "image: format version %u, this reader supports %u to %u", version,
                        RTCR_IMAGE_VERSION_MIN, RTCR_IMAGE_VERSION);
        return -EPROTO;
    }
    if (get16(buf + 10) != RTCR_IMAGE_FIXED_HDR) {
        rtcr_image__err(err, "image: fixed header size %u, expected %u", get16(buf + 10),
                        RTCR_IMAGE_FIXED_HDR);
        return -EBADMSG;
    }
    n = get32(buf + 12);
    total = get64(buf + 16);
    if (n == 0 || n > RTCR_IMAGE_MAX_SECTIONS) {
        rtcr_image__err(err, "image: %u sections (1..%u allowed)", n, RTCR_IMAGE_MAX_SECTIONS);
        return -EBADMSG;
    }
    if (total > lim->max_total) {
        rtcr_image__err(err, "image: %llu bytes above the limit %llu", (unsigned long long)total,
                        (unsigned long long)lim->max_total);
        return -E2BIG;
    }
    if (total != len) {
        rtcr_image__err(err, "image: header says %llu bytes, buffer has %zu",
                        (unsigned long long)total, len);
        return -EBADMSG;
    }
    off = RTCR_IMAGE_FIXED_HDR + (uint64_t)n * RTCR_IMAGE_SECTION_ENT;
    if (off > len) {
        rtcr_image__err(err, "image: truncated section table");
        return -EBADMSG;
    }
    if (get64(buf + 24) != header_hash(buf, n)) {
        rtcr_image__err(err, "image: header hash mismatch");
        return -EBADMSG;
    }
    memset(sec, 0, sizeof(*sec) * RTCR_IMAGE_SEC_MAX);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = buf + RTCR_IMAGE_FIXED_HDR + i * RTCR_IMAGE_SECTION_ENT;
        uint32_t type = get32(e), flags = get32(e + 4);
        uint64_t so = get64(e + 8), sl = get64(e + 16), sh = get64(e + 24);

        if (type == RTCR_IMAGE_SEC_NONE || flags != 0) {
            rtcr_image__err(err, "image: section %u: bad type %u or flags 0x%x", i, type, flags);
            return -EBADMSG;
        }
        if (so != off || sl > len - off) {
            rtcr_image__err(err, "image: section %u (%s): offset %llu length %llu out of place", i,
                            section_name(type), (unsigned long long)so, (unsigned long long)sl);
            return -EBADMSG;
        }
        if (type < RTCR_IMAGE_SEC_MAX) {
            uint64_t max = type == RTCR_IMAGE_SEC_HEADER     ? lim->max_header
                           : type == RTCR_IMAGE_SEC_METADATA ? lim->max_metadata
                           : type == RTCR_IMAGE_SEC_PAGEMAP  ? lim->max_pagemap
                                                             : UINT64_MAX;
            if (sec[type].type) {
                rtcr_image__err(err, "image: section %s twice", section_name(type));
                return -EBADMSG;
            }
            if (sl > max) {
                rtcr_image__err(err, "image: %s section of %llu bytes above the limit %llu",
                                section_name(type), (unsigned long long)sl,
                                (unsigned long long)max);
                return -E2BIG;
            }
            sec[type] = (struct section){.type = type, .offset = so, .length = sl};
        }
        if (XXH3_64bits(buf + so, sl) != sh) {
            rtcr_image__err(err, "image: %s section: hash mismatch", section_name(type));
            return -EBADMSG;
        }
        off = so + sl;
    }
    if (off != len) {
        rtcr_image__err(err, "image: %llu trailing bytes after the last section",
                        (unsigned long long)(len - off));
        return -EBADMSG;
    }
    for (uint32_t t = RTCR_IMAGE_SEC_HEADER; t < RTCR_IMAGE_SEC_MAX; t++)
        if (!sec[t].type) {
            rtcr_image__err(err, "image: no %s section", section_name(t));
            return -EBADMSG;
        }
    return 0;
}

static int check_header(const RtcrImg__EpochHeader *h, rtcr_image_err_t *err)
{
    unsigned long long ep = (unsigned long long)h->epoch;

    if (!rtcr_image__valid_name(h->target)) {
        rtcr_image__err(err, "epoch %llu: invalid target name", ep);
        return -EBADMSG;
    }
    if (h->epoch == 0) {
        rtcr_image__err(err, "image: epoch number 0");
        return -EBADMSG;
    }
    if (h->kind == RTCR_IMG__EPOCH_KIND__EPOCH_FULL          ? h->parent != 0
        : h->kind == RTCR_IMG__EPOCH_KIND__EPOCH_INCREMENTAL ? h->parent != h->epoch - 1
                                                             : true) {
        rtcr_image__err(err, "epoch %llu: kind %d does not fit parent %llu", ep, (int)h->kind,
                        (unsigned long long)h->parent);
        return -EBADMSG;
    }
    if (h->compacted_from > h->epoch ||
        (h->compacted_from && h->kind != RTCR_IMG__EPOCH_KIND__EPOCH_FULL)) {
        rtcr_image__err(err, "epoch %llu: bad compacted_from %llu", ep,
                        (unsigned long long)h->compacted_from);
        return -EBADMSG;
    }
    if (h->build_id.len > RTCR_IMAGE_BUILD_ID_MAX || h->n_libraries > RTCR_IMAGE_LIBS_MAX) {
        rtcr_image__err(err, "epoch %llu: build id or library list too long", ep);
        return -EBADMSG;
    }
    for (size_t i = 0; i < h->n_libraries; i++)
        if (!h->libraries[i] || h->libraries[i]->id.len > RTCR_IMAGE_BUILD_ID_MAX) {
            rtcr_image__err(err, "epoch %llu: library %zu: bad build id", ep, i);
            return -EBADMSG;
        }
    return 0;
}

static int unpack_header(const uint8_t *p, size_t len, ProtobufCAllocator *pa,
                         rtcr_image_err_t *err, RtcrImg__EpochHeader **ret)
{
    RtcrImg__EpochHeader *h = rtcr_img__epoch_header__unpack(pa, len, p);
    int r;

    if (!h) {
        rtcr_image__err(err, "image: header section does not decode");
        return -EBADMSG;
    }
    r = check_header(h, err);
    if (r < 0) {
        rtcr_img__epoch_header__free_unpacked(h, pa);
        return r;
    }
    *ret = h;
    return 0;
}

int rtcr_image__peek_header(const void *buf, size_t len, rtcr_image_err_t *err,
                            RtcrImg__EpochHeader **ret_hdr)
{
    struct section sec[RTCR_IMAGE_SEC_MAX];
    rtcr_image_limits_t lim;
    int r;

    if (!buf)
        return -EINVAL;
    rtcr_image_limits_default(&lim);
    r = parse_container(buf, len, &lim, err, sec);
    if (r < 0)
        return r;
    return unpack_header((const uint8_t *)buf + sec[RTCR_IMAGE_SEC_HEADER].offset,
                         sec[RTCR_IMAGE_SEC_HEADER].length, NULL, err, ret_hdr);
}

/* The frame lists of the index are where the epoch's version puts them and consistent:
 * counts the frames and runs (for the tables) and checks the frame count limit. */
static int count_frames(const rtcr_epoch_t *e, const rtcr_image_limits_t *lim,
                        rtcr_image_err_t *err, uint64_t *ret_frames, uint64_t *ret_runs)
{
    const RtcrImg__PageIndex *idx = e->index;
    unsigned long long ep = (unsigned long long)e->hdr->epoch;
    uint64_t frames = 0, runs = 0;

    for (size_t i = 0; i < idx->n_dataspaces; i++) {
        const RtcrImg__DataspacePages *dp = idx->dataspaces[i];
        size_t nf = dp->n_frame_size;

        if (nf != dp->n_frame_stored || nf != dp->n_frame_hash || (e->version < 2 && nf)) {
            rtcr_image__err(err,
                            "epoch %llu: dataspace 0x%x: inconsistent frame lists "
                            "(format version %u)",
                            ep, dp->badge, e->version);
            return -EBADMSG;
        }
        for (size_t j = 0; j < dp->n_runs; j++) {
            const RtcrImg__PageRun *run = dp->runs[j];
            size_t rf = run->n_frame_size;
            bool ok = rf == run->n_frame_stored && rf == run->n_frame_hash &&
                      (e->version >= 2 ? rf == 0 : run->zero == !rf);
            if (!ok) {
                rtcr_image__err(err,
                                "epoch %llu: run %zu of dataspace 0x%x: inconsistent "
                                "frame lists (format version %u)",
                                ep, j, dp->badge, e->version);
                return -EBADMSG;
            }
            nf += rf;
        }
        runs += dp->n_runs;
        if (nf > lim->max_frames - frames) {
            rtcr_image__err(err, "epoch %llu: more than %u frames", ep, lim->max_frames);
            return -E2BIG;
        }
        frames += nf;
    }
    *ret_frames = frames;
    *ret_runs = runs;
    return 0;
}

/* One frame's lengths against the limits and the DATA section; appends it to e->frames. */
static int add_frame(rtcr_epoch_t *e, const rtcr_image_limits_t *lim, rtcr_image_err_t *err,
                     uint32_t badge, uint64_t fi, uint32_t fs, uint32_t st, uint64_t hash,
                     uint64_t *off)
{
    unsigned long long ep = (unsigned long long)e->hdr->epoch;

    if (fs == 0 || st == 0 || st > fs) {
        rtcr_image__err(err, "epoch %llu: frame %llu of dataspace 0x%x: bad lengths %u/%u", ep,
                        (unsigned long long)fi, badge, st, fs);
        return -EBADMSG;
    }
    if (fs > lim->max_frame_size) {
        rtcr_image__err(err,
                        "epoch %llu: frame %llu of dataspace 0x%x: %u bytes above the limit %u", ep,
                        (unsigned long long)fi, badge, fs, lim->max_frame_size);
        return -E2BIG;
    }
    if (st > e->data_len - *off) {
        rtcr_image__err(err, "epoch %llu: frame %llu of dataspace 0x%x: beyond the data section",
                        ep, (unsigned long long)fi, badge);
        return -EBADMSG;
    }
    e->frames[e->n_frames++] = (struct rtcr_image_frame){
        .data_off = *off, .hash = hash, .size = fs, .stored = st, .first_piece = e->n_pieces};
    *off += st;
    if (fs > e->max_frame)
        e->max_frame = fs;
    return 0;
}

/* Version 2: the frames of dp cover its data runs, concatenated; cut them into pieces. */
static int frames_v2(rtcr_epoch_t *e, const rtcr_image_limits_t *lim, rtcr_image_err_t *err,
                     const RtcrImg__DataspacePages *dp, uint64_t *off)
{
    uint64_t in_runs = 0, in_frames = 0, rpos = 0;
    size_t j = 0, f0 = e->n_frames;

    for (size_t k = 0; k < dp->n_runs; k++)
        if (!dp->runs[k]->zero)
            in_runs += dp->runs[k]->length;
    for (size_t k = 0; k < dp->n_frame_size; k++)
        in_frames += dp->frame_size[k];
    if (in_frames != in_runs) {
        rtcr_image__err(err,
                        "epoch %llu: dataspace 0x%x: frames hold %llu bytes, the data runs %llu",
                        (unsigned long long)e->hdr->epoch, dp->badge, (unsigned long long)in_frames,
                        (unsigned long long)in_runs);
        return -EBADMSG;
    }
    for (size_t k = 0; k < dp->n_frame_size; k++) {
        int r = add_frame(e, lim, err, dp->badge, k, dp->frame_size[k], dp->frame_stored[k],
                          dp->frame_hash[k], off);
        if (r < 0)
            return r;
        struct rtcr_image_frame *f = &e->frames[f0 + k];
        for (uint32_t fpos = 0; fpos < f->size;) {
            /* sums agree, so a data run with bytes left exists */
            while (dp->runs[j]->zero || rpos == dp->runs[j]->length) {
                j++;
                rpos = 0;
            }
            uint64_t left = dp->runs[j]->length - rpos;
            uint32_t take = left < f->size - fpos ? (uint32_t)left : f->size - fpos;
            e->pieces[e->n_pieces++] = (struct rtcr_image_piece){
                .ds_off = dp->runs[j]->offset + rpos, .frame_off = fpos, .len = take};
            f->n_pieces++;
            fpos += take;
            rpos += take;
        }
    }
    return 0;
}

/* Version 1: each data run has its own frames, covering it in order. */
static int frames_v1(rtcr_epoch_t *e, const rtcr_image_limits_t *lim, rtcr_image_err_t *err,
                     const RtcrImg__DataspacePages *dp, uint64_t *off)
{
    uint64_t fi = 0;

    for (size_t j = 0; j < dp->n_runs; j++) {
        const RtcrImg__PageRun *run = dp->runs[j];
        uint64_t pos = run->offset, sum = 0;

        for (size_t k = 0; k < run->n_frame_size; k++, fi++) {
            int r = add_frame(e, lim, err, dp->badge, fi, run->frame_size[k], run->frame_stored[k],
                              run->frame_hash[k], off);
            if (r < 0)
                return r;
            e->frames[e->n_frames - 1].n_pieces = 1;
            e->pieces[e->n_pieces++] =
                (struct rtcr_image_piece){.ds_off = pos, .frame_off = 0, .len = run->frame_size[k]};
            pos += run->frame_size[k];
            sum += run->frame_size[k];
        }
        if (!run->zero && sum != run->length) {
            rtcr_image__err(err,
                            "epoch %llu: run %zu of dataspace 0x%x: frames hold %llu bytes, the "
                            "run %llu",
                            (unsigned long long)e->hdr->epoch, j, dp->badge,
                            (unsigned long long)sum, (unsigned long long)run->length);
            return -EBADMSG;
        }
    }
    return 0;
}

/* Check the page index against the metadata, the limits and the DATA length, and build the
 * frame table (e->frames, e->pieces, e->ds_frame0) for either format version. */
static int check_index(rtcr_epoch_t *e, const rtcr_image_limits_t *lim, rtcr_image_err_t *err)
{
    const RtcrImg__PageIndex *idx = e->index;
    unsigned long long ep = (unsigned long long)e->hdr->epoch;
    uint64_t off = 0, frames = 0, runs = 0;
    uint8_t *seen = NULL;
    int r;

    r = count_frames(e, lim, err, &frames, &runs);
    if (r < 0)
        return r;
    /* frames <= max_frames and runs were decoded within max_unpacked: both bounded */
    e->frames = calloc(frames ? frames : 1, sizeof(*e->frames));
    e->pieces = calloc(frames + runs ? frames + runs : 1, sizeof(*e->pieces));
    e->ds_frame0 = calloc(idx->n_dataspaces + 1, sizeof(*e->ds_frame0));
    seen = calloc(e->n_ds ? e->n_ds : 1, 1);
    if (!e->frames || !e->pieces || !e->ds_frame0 || !seen) {
        r = -ENOMEM;
        goto out;
    }
    r = -EBADMSG;
    for (size_t i = 0; i < idx->n_dataspaces; i++) {
        const RtcrImg__DataspacePages *dp = idx->dataspaces[i];
        const struct rtcr_image_ds *ds = rtcr_image__ds_find(e->ds, e->n_ds, dp->badge);
        uint64_t end = 0;

        if (!ds) {
            rtcr_image__err(err,
                            "epoch %llu: pages of dataspace 0x%x, which the metadata "
                            "does not declare",
                            ep, dp->badge);
            goto out;
        }
        if (seen[ds - e->ds]++) {
            rtcr_image__err(err, "epoch %llu: dataspace 0x%x listed twice in the page index", ep,
                            dp->badge);
            goto out;
        }
        for (size_t j = 0; j < dp->n_runs; j++) {
            const RtcrImg__PageRun *run = dp->runs[j];
            if (run->length == 0 || run->offset < end || run->offset > ds->size ||
                run->length > ds->size - run->offset) {
                rtcr_image__err(err,
                                "epoch %llu: run %zu of dataspace 0x%x (offset %llu, "
                                "length %llu) overlaps, is empty or exceeds the size %llu",
                                ep, j, dp->badge, (unsigned long long)run->offset,
                                (unsigned long long)run->length, (unsigned long long)ds->size);
                goto out;
            }
            end = run->offset + run->length;
        }
        e->ds_frame0[i] = e->n_frames;
        r = e->version >= 2 ? frames_v2(e, lim, err, dp, &off) : frames_v1(e, lim, err, dp, &off);
        if (r < 0)
            goto out;
        r = -EBADMSG;
    }
    e->ds_frame0[idx->n_dataspaces] = e->n_frames;
    if (off != e->data_len) {
        rtcr_image__err(err, "epoch %llu: %llu bytes of the data section belong to no frame", ep,
                        (unsigned long long)(e->data_len - off));
        goto out;
    }
    r = 0;
out:
    free(seen);
    return r;
}

/* Walk every frame of e in index order: decode it into a scratch buffer (hash-checked), then
 * call fn (if not NULL) for each of its pieces, and for the zero runs in offset order. */
static int walk_frames(const rtcr_epoch_t *e, rtcr_image_page_fn fn, void *opaque,
                       rtcr_image_err_t *err)
{
    const RtcrImg__PageIndex *idx = e->index;
    uint8_t *scratch = NULL;
    int r = 0;

    if (e->max_frame) {
        scratch = malloc(e->max_frame);
        if (!scratch)
            return -ENOMEM;
    }
    for (size_t i = 0; i < idx->n_dataspaces && r >= 0; i++) {
        const RtcrImg__DataspacePages *dp = idx->dataspaces[i];
        size_t zj = 0; /* next run to consider for a zero-run call */

        for (size_t f = e->ds_frame0[i]; f < e->ds_frame0[i + 1] && r >= 0; f++) {
            const struct rtcr_image_frame *fr = &e->frames[f];
            const char *why = NULL;

            r = rtcr_image__frame_decode(e->data + fr->data_off, fr->stored, scratch, fr->size,
                                         fr->hash, &why);
            if (r < 0) {
                rtcr_image__err(err, "epoch %llu: frame %llu of dataspace 0x%x: %s",
                                (unsigned long long)e->hdr->epoch,
                                (unsigned long long)(f - e->ds_frame0[i]), dp->badge, why);
                break;
            }
            for (uint32_t k = 0; k < fr->n_pieces && fn && r >= 0; k++) {
                const struct rtcr_image_piece *pc = &e->pieces[fr->first_piece + k];
                for (; zj < dp->n_runs && dp->runs[zj]->offset < pc->ds_off && r >= 0; zj++)
                    if (dp->runs[zj]->zero)
                        r = fn(opaque, dp->badge, dp->runs[zj]->offset, NULL, dp->runs[zj]->length);
                if (r >= 0)
                    r = fn(opaque, dp->badge, pc->ds_off, scratch + pc->frame_off, pc->len);
            }
        }
        for (; zj < dp->n_runs && fn && r >= 0; zj++)
            if (dp->runs[zj]->zero)
                r = fn(opaque, dp->badge, dp->runs[zj]->offset, NULL, dp->runs[zj]->length);
    }
    free(scratch);
    return r;
}

static int parse_impl(uint8_t *buf, size_t len, const rtcr_image_limits_t *lim,
                      rtcr_image_err_t *err, rtcr_epoch_t **ret)
{
    struct section sec[RTCR_IMAGE_SEC_MAX];
    rtcr_epoch_t *e;
    char why[160];
    int r;

    r = parse_container(buf, len, lim, err, sec);
    if (r < 0)
        return r;
    e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    budget_init(&e->budget, lim->max_unpacked);
    e->version = get16(buf + 8); /* checked by parse_container */

    r = unpack_header(buf + sec[RTCR_IMAGE_SEC_HEADER].offset, sec[RTCR_IMAGE_SEC_HEADER].length,
                      &e->budget.pa, err, &e->hdr);
    if (r < 0) {
        if (e->budget.exceeded) {
            rtcr_image__err(err, "image: header needs more memory than the limit");
            r = -E2BIG;
        }
        goto fail;
    }
    e->meta = buf + sec[RTCR_IMAGE_SEC_METADATA].offset;
    e->meta_len = sec[RTCR_IMAGE_SEC_METADATA].length;
    e->data = buf + sec[RTCR_IMAGE_SEC_DATA].offset;
    e->data_len = sec[RTCR_IMAGE_SEC_DATA].length;
    if (XXH3_64bits(e->meta, e->meta_len) != e->hdr->metadata_hash) {
        rtcr_image__err(err, "epoch %llu: metadata hash mismatch",
                        (unsigned long long)e->hdr->epoch);
        r = -EBADMSG;
        goto fail;
    }
    e->state = rtcr_img__stored_state__unpack(&e->budget.pa, e->meta_len, e->meta);
    if (!e->state) {
        r = e->budget.exceeded ? -E2BIG : -EBADMSG;
        rtcr_image__err(err, "epoch %llu: metadata %s", (unsigned long long)e->hdr->epoch,
                        r == -E2BIG ? "needs more memory than the limit" : "does not decode");
        goto fail;
    }
    r = validate_state(e->state, lim->max_dataspace, why, sizeof(why), &e->ds, &e->n_ds);
    if (r < 0) {
        rtcr_image__err(err, "epoch %llu: metadata: %s", (unsigned long long)e->hdr->epoch,
                        r == -ENOMEM ? "out of memory" : why);
        goto fail;
    }
    e->index = rtcr_img__page_index__unpack(&e->budget.pa, sec[RTCR_IMAGE_SEC_PAGEMAP].length,
                                            buf + sec[RTCR_IMAGE_SEC_PAGEMAP].offset);
    if (!e->index) {
        r = e->budget.exceeded ? -E2BIG : -EBADMSG;
        rtcr_image__err(err, "epoch %llu: page index %s", (unsigned long long)e->hdr->epoch,
                        r == -E2BIG ? "needs more memory than the limit" : "does not decode");
        goto fail;
    }
    r = check_index(e, lim, err);
    if (r < 0)
        goto fail;
    if (!lim->skip_frame_check) {
        r = walk_frames(e, NULL, NULL, err);
        if (r < 0)
            goto fail;
    }
    e->buf = buf;
    e->len = len;
    *ret = e;
    return 0;
fail:
    rtcr_epoch_destroy(&e);
    return r;
}

static int check_limits(const rtcr_image_limits_t *lim)
{
    /* frames are LZ4 blocks: their sizes must fit LZ4's int lengths */
    if (lim->max_frame_size > (1u << 30))
        return -EINVAL;
    return lim->max_total && lim->max_header && lim->max_metadata && lim->max_pagemap &&
                   lim->max_frames && lim->max_frame_size && lim->max_dataspace &&
                   lim->max_unpacked && lim->max_epochs
               ? 0
               : -EINVAL;
}

int rtcr_epoch_parse(const void *buf, size_t len, const rtcr_image_limits_t *limits,
                     rtcr_image_err_t *err, rtcr_epoch_t **ret_epoch)
{
    rtcr_image_limits_t def;
    uint8_t *copy;
    int r;

    if (err)
        err->msg[0] = '\0';
    if ((!buf && len) || !ret_epoch)
        return -EINVAL;
    if (!limits) {
        rtcr_image_limits_default(&def);
        limits = &def;
    }
    if (check_limits(limits) < 0)
        return -EINVAL;
    if (len > limits->max_total) {
        rtcr_image__err(err, "image: %zu bytes above the limit %llu", len,
                        (unsigned long long)limits->max_total);
        return -E2BIG;
    }
    copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    if (len)
        memcpy(copy, buf, len);
    r = parse_impl(copy, len, limits, err, ret_epoch);
    if (r < 0)
        free(copy);
    return r;
}

int rtcr_epoch_parse_owned(void **pbuf, size_t len, const rtcr_image_limits_t *limits,
                           rtcr_image_err_t *err, rtcr_epoch_t **ret_epoch)
{
    rtcr_image_limits_t def;
    int r;

    if (err)
        err->msg[0] = '\0';
    if (!pbuf || !*pbuf || !ret_epoch)
        return -EINVAL;
    if (!limits) {
        rtcr_image_limits_default(&def);
        limits = &def;
    }
    if (check_limits(limits) < 0)
        return -EINVAL;
    r = parse_impl(*pbuf, len, limits, err, ret_epoch);
    if (r == 0)
        *pbuf = NULL;
    return r;
}

/* ---- accessors ---------------------------------------------------------------------------- */

const RtcrImg__EpochHeader *rtcr_epoch_header(const rtcr_epoch_t *e)
{
    return e->hdr;
}

const RtcrImg__StoredState *rtcr_epoch_state(const rtcr_epoch_t *e)
{
    return e->state;
}

const RtcrImg__PageIndex *rtcr_epoch_page_index(const rtcr_epoch_t *e)
{
    return e->index;
}

uint64_t rtcr_epoch_number(const rtcr_epoch_t *e)
{
    return e->hdr->epoch;
}

uint64_t rtcr_epoch_parent(const rtcr_epoch_t *e)
{
    return e->hdr->parent;
}

bool rtcr_epoch_is_full(const rtcr_epoch_t *e)
{
    return e->hdr->kind == RTCR_IMG__EPOCH_KIND__EPOCH_FULL;
}

const char *rtcr_epoch_target(const rtcr_epoch_t *e)
{
    return e->hdr->target;
}

const void *rtcr_epoch_bytes(const rtcr_epoch_t *e, size_t *ret_len)
{
    if (ret_len)
        *ret_len = e->len;
    return e->buf;
}

const void *rtcr_epoch_metadata_blob(const rtcr_epoch_t *e, size_t *ret_len)
{
    if (ret_len)
        *ret_len = e->meta_len;
    return e->meta;
}

int rtcr_epoch_foreach_pages(const rtcr_epoch_t *e, rtcr_image_page_fn fn, void *opaque,
                             rtcr_image_err_t *err)
{
    if (err)
        err->msg[0] = '\0';
    if (!e || !fn)
        return -EINVAL;
    return walk_frames(e, fn, opaque, err);
}
