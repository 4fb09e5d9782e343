/* rtcr_standby.c — the hot standby of a target: a copy of the memory of its newest epoch,
 * kept ready as a pool, so that a restore of that epoch decodes nothing.
 *
 * Modelled on the backup memory of Remus: after every checkpoint the backup applies the
 * checkpoint's dirty pages to its own copy, so that failing over is a matter of starting
 * from that copy. Here the copy lives in a memfd of exactly the size of the target's pool
 * (target_pool_bytes), laid out as a pool: each RAM dataspace of the newest epoch at an
 * offset of its own (the standby's layout), everything else zero.
 *
 * Invariants, while `valid`:
 *   - the bytes of dataspace D at ext[i].off .. + size equal the materialisation of D at
 *     epoch `epoch` of t->image (rtcr_image_materialize_into), for every RAM dataspace that
 *     epoch declares, and the layout holds no other dataspace;
 *   - every byte outside the layout's extents is zero;
 *   - meta_hash is the XXH3 of that epoch's METADATA section (a restore compares it, so an
 *     image replaced behind our back is never matched).
 * Whatever the state, every non-zero byte of the memfd lies inside an extent of `ext`, so
 * that a rebuild knows what to clear.
 *
 * Updating (standby_begin/put/end, after an epoch K was added, while the target runs): K's
 * memory is defined by the lifetime rule of docs/image-format.md — a dataspace that K-1
 * declared with the same size continues from its K-1 content, any other starts zero-filled,
 * then K's runs are applied. The runs of K are exactly the staged runs the epoch was encoded
 * from (an all-zero unit becomes a zero run, which is the same bytes), so applying the staged
 * runs is a memcpy of the dirty bytes; nothing is decoded. An incremental K applies only on a
 * standby valid at K-1; a full K (every dataspace staged whole) rebuilds from scratch. A
 * continuing dataspace keeps its offset; a new one gets the first hole above the ROM room
 * (the page-rounded sizes of the ROM modules of K, where a restore's first-fit allocator
 * puts them); the extents of dataspaces that are gone are zeroed.
 *
 * Taking (standby_take, by a restore of the newest epoch): the memfd moves into the kept-pool
 * slot, which the new incarnation adopts as its pool; the restorer reserves the layout's
 * extents and recreates each dataspace on its extent (rtcr_restore.c). The memfd is then no
 * longer the standby's: the zeroed kept pool of the previous incarnation (if any) becomes
 * the standby's memory, rebuilt by the next full epoch. So the standby is never written while
 * a process maps it, and memory stays at two copies: pool and standby.
 *
 * Locking: the small fields are read and changed under t->lock; the copying runs without it
 * on the checkpointing thread, guarded by `applying` (a take refuses while it is set), as the
 * encoding of the staged bytes does. Checkpoint, restore and removal of one target are
 * serialised by the caller (rtcr/ecu.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <rtcr/image.h>

#include "ecu_internal.h"

#define PAGE_SZ 4096u

struct standby {
    int fd;                  /* the memfd, -1 if none */
    uint8_t *map;            /* the agent's mapping of it, NULL if none */
    size_t size;             /* its bytes (the pool size it was made for) */
    struct standby_ext *ext; /* layout, ascending offset */
    size_t n;                /* entries of ext */
    uint32_t *idx;           /* indices into ext, ascending badge (for put) */
    size_t last;             /* index into ext of the previous put (runs come per dataspace) */
    bool valid;              /* holds the memory of `epoch` (invariants above) */
    bool applying;           /* an update is running (between begin and end) */
    bool failed;             /* the update in progress cannot be completed exactly */
    uint64_t epoch;          /* epoch held (valid) or being applied (applying) */
    uint64_t meta_hash;      /* XXH3 of that epoch's METADATA section */
    uint64_t t0;             /* start of the update in progress */
    uint64_t apply_usec;     /* duration of the last update */
    uint64_t work;           /* bytes written by the update in progress (its thread only) */
    uint64_t applied;        /* bytes written by the last update */
    unsigned rebuilds;       /* full epochs applied */
    unsigned taken;          /* restores that took the memory */
    const char *why;         /* why not valid (static string), NULL if valid */
};

const char *rtcr_restore_path_name(enum rtcr_restore_path p)
{
    switch (p) {
    case RTCR_RESTORE_STANDBY:
        return "standby";
    case RTCR_RESTORE_DECODE:
        return "decode";
    default:
        return "none";
    }
}

static void sb_unmap(struct standby *sb)
{
    if (sb->map)
        munmap(sb->map, sb->size);
    if (sb->fd >= 0)
        close(sb->fd);
    sb->map = NULL;
    sb->fd = -1;
    sb->size = 0;
    sb->n = 0; /* nothing is held any more */
}

void standby_fini(struct rtcr_target *t)
{
    struct standby *sb = t->standby;
    if (!sb)
        return;
    sb_unmap(sb);
    free(sb->ext);
    free(sb->idx);
    free(sb);
    t->standby = NULL;
}

void standby_invalidate(struct rtcr_target *t, const char *why)
{
    pthread_mutex_lock(&t->lock);
    if (t->standby) {
        t->standby->valid = false;
        t->standby->why = why;
    }
    pthread_mutex_unlock(&t->lock);
}

static uint64_t meta_hash(const rtcr_epoch_t *e)
{
    size_t len = 0;
    const void *m = rtcr_epoch_metadata_blob(e, &len);
    return XXH3_64bits(m, len);
}

static int ext_off_cmp(const void *x, const void *y)
{
    const struct standby_ext *a = x, *b = y;
    return a->off < b->off ? -1 : a->off > b->off;
}

/* ---- layout of an epoch ---------------------------------------------------------------------- */

/* Bytes a restore's ROM modules take at the bottom of the pool: page-rounded lengths (an
 * empty module still takes a page, as svc_rom_load allocates it). */
static size_t rom_room(const RtcrImg__StoredState *st)
{
    size_t room = 0;
    for (size_t i = 0; i < st->n_sessions; i++) {
        const RtcrImg__Session *s = st->sessions[i];
        if (s->state_case == RTCR_IMG__SESSION__STATE_ROM && s->rom) {
            size_t len = s->rom->length ? (size_t)s->rom->length : 1;
            room += (len + PAGE_SZ - 1) & ~(size_t)(PAGE_SZ - 1);
        }
    }
    return room;
}

static const struct standby_ext *old_find(const struct standby *sb, uint32_t badge)
{
    for (size_t i = 0; i < sb->n; i++)
        if (sb->ext[i].badge == badge)
            return &sb->ext[i];
    return NULL;
}

/* Place a new dataspace of `size` bytes in the first hole at or above `from` among v[0..k)
 * (ascending, disjoint) within [0, limit): insert it there, keeping v ascending. */
static int place(struct standby_ext *v, size_t k, uint32_t badge, size_t size, size_t from,
                 size_t limit)
{
    size_t pos = from, at = 0;
    for (; at < k && v[at].off < pos + size; at++)
        if (v[at].off + v[at].size > pos)
            pos = v[at].off + v[at].size;
    if (pos > limit || size > limit - pos)
        return -ENOSPC;
    memmove(&v[at + 1], &v[at], (k - at) * sizeof(*v));
    v[at] = (struct standby_ext){.badge = badge, .off = pos, .size = size, .fresh = true};
    return 0;
}

/* The layout of epoch state `st` in a memfd of `size` bytes: continuing dataspaces (cont)
 * keep their offsets, new ones take the first hole above the ROM room, in metadata order.
 * Returns the entries ascending by offset in *ret (caller frees). -ENOSPC, -EBADMSG,
 * -ENOMEM. */
static int layout(const struct standby *sb, const RtcrImg__StoredState *st, bool cont, size_t size,
                  struct standby_ext **ret, size_t *ret_n)
{
    size_t n = 0, k = 0, from = rom_room(st);
    for (size_t i = 0; i < st->n_sessions; i++)
        if (st->sessions[i]->state_case == RTCR_IMG__SESSION__STATE_RAM)
            n += st->sessions[i]->ram->n_dataspaces;
    struct standby_ext *v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    int r = 0;
    for (int pass = 0; pass < 2 && r >= 0; pass++) { /* continuing ones first, then new */
        for (size_t i = 0; i < st->n_sessions && r >= 0; i++) {
            const RtcrImg__Session *s = st->sessions[i];
            if (s->state_case != RTCR_IMG__SESSION__STATE_RAM)
                continue;
            for (size_t j = 0; j < s->ram->n_dataspaces && r >= 0; j++) {
                const RtcrImg__Dataspace *d = s->ram->dataspaces[j];
                const struct standby_ext *o = cont ? old_find(sb, d->badge) : NULL;
                bool carried = o && o->size == d->size;
                if ((pass == 0) != carried)
                    continue;
                if (d->size == 0 || d->size % PAGE_SZ || d->size > size)
                    r = -EBADMSG;
                else if (carried)
                    v[k++] =
                        (struct standby_ext){.badge = d->badge, .off = o->off, .size = o->size};
                else if ((r = place(v, k, d->badge, (size_t)d->size, from, size)) >= 0)
                    k++;
            }
        }
        if (pass == 0)
            qsort(v, k, sizeof(*v), ext_off_cmp);
    }
    /* disjoint and one entry per badge (the image's validation promises it: check anyway) */
    for (size_t i = 1; i < k && r >= 0; i++)
        if (v[i - 1].off + v[i - 1].size > v[i].off)
            r = -EBADMSG;
    for (size_t i = 0; i < k && r >= 0; i++)
        for (size_t j = i + 1; j < k && r >= 0; j++)
            if (v[i].badge == v[j].badge)
                r = -EBADMSG;
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = k;
    return 0;
}

/* Zero the bytes of [off, off + len) that no extent of v[0..n) (ascending) covers. */
static uint64_t zero_outside(uint8_t *map, size_t off, size_t len, const struct standby_ext *v,
                             size_t n)
{
    size_t pos = off, end = off + len;
    uint64_t zeroed = 0;
    for (size_t i = 0; i < n && pos < end; i++) {
        if (v[i].off + v[i].size <= pos)
            continue;
        if (v[i].off >= end)
            break;
        if (v[i].off > pos) {
            memset(map + pos, 0, v[i].off - pos);
            zeroed += v[i].off - pos;
        }
        pos = v[i].off + v[i].size;
    }
    if (pos < end) {
        memset(map + pos, 0, end - pos);
        zeroed += end - pos;
    }
    return zeroed;
}

/* ---- update after an epoch ------------------------------------------------------------------- */

/* Give the standby a memfd of `size` bytes: the zeroed kept pool if it fits, else a new one.
 * t->lock held. */
static int sb_memory(struct rtcr_target *t, struct standby *sb, size_t size)
{
    if (sb->map && sb->size == size)
        return 0;
    sb_unmap(sb);
    if (t->spare && t->spare_size == size) { /* zeroed at teardown, no process maps it */
        sb->fd = t->spare_fd;
        sb->map = t->spare;
        t->spare = NULL;
        t->spare_fd = -1;
        t->spare_size = 0;
    } else {
        int r = target_pool_create(t, "standby", size, &sb->fd, &sb->map);
        if (r < 0) {
            sb->fd = -1;
            sb->map = NULL;
            return r;
        }
    }
    sb->size = size;
    return 0;
}

int standby_begin(struct rtcr_target *t, uint64_t epoch, bool full)
{
    pthread_mutex_lock(&t->lock);
    if (!t->ckpt.standby) {
        standby_fini(t); /* switched off: give the memory back */
        pthread_mutex_unlock(&t->lock);
        return -ENOENT;
    }
    struct standby *sb = t->standby;
    if (!sb && (sb = t->standby = calloc(1, sizeof(*sb))))
        sb->fd = -1;
    const rtcr_epoch_t *e =
        t->image && rtcr_image_last(t->image) == epoch ? rtcr_image_epoch(t->image, epoch) : NULL;
    size_t size = target_pool_bytes(t);
    bool cont = !full && sb && sb->valid && sb->epoch + 1 == epoch && sb->map && sb->size == size;
    const char *why = NULL;
    int r = 0;
    if (!sb)
        r = -ENOMEM, why = "out of memory";
    else if (!e)
        r = -ENOENT, why = "the epoch is not the newest of the image";
    else if (!full && !cont)
        r = -ESTALE, why = sb->why ? sb->why : "no standby of the parent epoch";
    else if ((r = sb_memory(t, sb, size)) < 0)
        why = "no memory for the standby";
    if (sb) {
        sb->valid = false;
        sb->why = why;
        sb->applying = r >= 0;
        sb->failed = false;
        sb->epoch = epoch;
        sb->work = 0;
        sb->t0 = now_usec();
    }
    pthread_mutex_unlock(&t->lock);
    if (r < 0)
        return r;

    /* no lock from here: `applying` keeps a restore off, the caller serialises the rest */
    struct standby_ext *v = NULL;
    size_t n = 0;
    uint32_t *idx = NULL;
    r = layout(sb, rtcr_epoch_state(e), cont, sb->size, &v, &n);
    if (r >= 0 && !(idx = calloc(n ? n : 1, sizeof(*idx))))
        r = -ENOMEM;
    if (r < 0) {
        free(v);
        pthread_mutex_lock(&t->lock);
        sb->applying = false;
        sb->why = r == -ENOSPC ? "the layout does not fit the pool" : "layout failed";
        pthread_mutex_unlock(&t->lock);
        return r;
    }
    /* what the previous layout held and the new one does not: zero (an extent that continues
     * is in v at the same place; a new dataspace's bytes are all written by end) */
    for (size_t i = 0; i < sb->n; i++)
        sb->work += zero_outside(sb->map, sb->ext[i].off, sb->ext[i].size, v, n);
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    /* ascending badge, for put (insertion sort: n is the number of dataspaces) */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && v[idx[j - 1]].badge > v[idx[j]].badge; j--) {
            uint32_t x = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = x;
        }
    pthread_mutex_lock(&t->lock);
    free(sb->ext);
    free(sb->idx);
    sb->ext = v;
    sb->idx = idx;
    sb->n = n;
    sb->last = 0;
    sb->meta_hash = meta_hash(e);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static struct standby_ext *find(struct standby *sb, uint32_t badge)
{
    if (sb->last < sb->n && sb->ext[sb->last].badge == badge)
        return &sb->ext[sb->last];
    size_t lo = 0, hi = sb->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t b = sb->ext[sb->idx[mid]].badge;
        if (b == badge) {
            sb->last = sb->idx[mid];
            return &sb->ext[sb->last];
        }
        if (b < badge)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void standby_put(struct rtcr_target *t, uint32_t badge, uint64_t offset, const void *data,
                 size_t len)
{
    struct standby *sb = t->standby;
    if (!sb || !sb->applying || sb->failed || len == 0)
        return;
    struct standby_ext *x = find(sb, badge);
    /* a run the epoch could not hold: the epoch was refused before, so this is never */
    if (!x || offset > x->size || len > x->size - offset || (x->fresh && offset < x->cursor)) {
        sb->failed = true;
        return;
    }
    uint8_t *base = sb->map + x->off;
    if (x->fresh) { /* a new dataspace starts zero-filled: clear what the runs skip */
        memset(base + x->cursor, 0, (size_t)offset - x->cursor);
        sb->work += offset - x->cursor;
        x->cursor = (size_t)offset + len;
    }
    memcpy(base + offset, data, len);
    sb->work += len;
}

void standby_end(struct rtcr_target *t)
{
    struct standby *sb = t->standby;
    if (!sb || !sb->applying)
        return;
    for (size_t i = 0; i < sb->n && !sb->failed; i++) {
        struct standby_ext *x = &sb->ext[i];
        if (x->fresh) {
            memset(sb->map + x->off + x->cursor, 0, x->size - x->cursor);
            sb->work += x->size - x->cursor;
        }
        x->fresh = false;
        x->cursor = 0;
    }
    pthread_mutex_lock(&t->lock);
    sb->applying = false;
    sb->valid = !sb->failed;
    sb->why = sb->failed ? "a staged run did not fit the epoch's layout" : NULL;
    sb->apply_usec = now_usec() - sb->t0;
    sb->applied = sb->work;
    if (sb->valid && rtcr_epoch_is_full(rtcr_image_epoch(t->image, sb->epoch)))
        sb->rebuilds++;
    pthread_mutex_unlock(&t->lock);
}

/* ---- restore ------------------------------------------------------------------------------- */

int standby_take(struct rtcr_target *t, uint64_t epoch, struct standby_ext **ret_layout,
                 size_t *ret_n, uint64_t *ret_ino, const char **ret_why)
{
    pthread_mutex_lock(&t->lock);
    struct standby *sb = t->standby;
    const rtcr_epoch_t *e = t->image ? rtcr_image_epoch(t->image, epoch) : NULL;
    const char *why = NULL;
    if (!t->ckpt.standby)
        why = "standby disabled";
    else if (!sb || (!sb->valid && !sb->applying))
        why = sb && sb->why ? sb->why : "no standby yet";
    else if (sb->applying)
        why = "standby being updated";
    else if (!e || epoch != rtcr_image_last(t->image) || sb->epoch != epoch)
        why = "the standby holds another epoch";
    else if (sb->size != target_pool_bytes(t))
        why = "the standby does not have the pool's size";
    else if (meta_hash(e) != sb->meta_hash)
        why = "the image's epoch is not the one the standby followed";
    struct standby_ext *v = NULL;
    struct stat sst;
    if (!why && fstat(sb->fd, &sst) < 0)
        why = "the standby's memfd cannot be examined";
    if (!why && !(v = malloc((sb->n ? sb->n : 1) * sizeof(*v))))
        why = "out of memory";
    if (why) {
        pthread_mutex_unlock(&t->lock);
        free(v);
        if (ret_why)
            *ret_why = why;
        return -ENOENT;
    }
    memcpy(v, sb->ext, sb->n * sizeof(*v));
    size_t n = sb->n;
    /* swap: the standby's memory becomes the kept pool that make_pool adopts; the kept pool
     * (zeroed at teardown: no extents) becomes the standby's memory for the next rebuild */
    int fd = t->spare_fd;
    uint8_t *map = t->spare;
    size_t size = t->spare_size;
    t->spare = sb->map;
    t->spare_fd = sb->fd;
    t->spare_size = sb->size;
    sb->map = NULL;
    sb->fd = -1;
    sb->size = 0;
    sb->n = 0;
    if (map && size == t->spare_size) {
        sb->map = map;
        sb->fd = fd;
        sb->size = size;
    } else if (map) {
        munmap(map, size);
        close(fd);
    }
    sb->valid = false;
    sb->why = "taken by a restore";
    sb->taken++;
    pthread_mutex_unlock(&t->lock);
    *ret_layout = v;
    *ret_n = n;
    *ret_ino = (uint64_t)sst.st_ino;
    return 0;
}

/* ---- public ------------------------------------------------------------------------------- */

int rtcr_target_standby_info(rtcr_target_t *t, rtcr_standby_info_t *ret_info)
{
    rtcr_standby_info_t info = {0};
    pthread_mutex_lock(&t->lock);
    struct standby *sb = t->standby;
    info.enabled = t->ckpt.standby;
    info.last_restore = t->last_restore;
    if (sb) {
        info.ready = sb->valid;
        info.epoch = sb->valid ? sb->epoch : 0;
        info.bytes = sb->map ? sb->size : 0;
        info.dataspaces = sb->valid ? sb->n : 0;
        info.apply_usec = sb->apply_usec;
        info.applied_bytes = sb->applied;
        info.rebuilds = sb->rebuilds;
        info.taken = sb->taken;
    }
    const char *why = !info.enabled ? "disabled"
                      : !sb         ? "no epoch taken yet"
                      : sb->valid   ? ""
                      : sb->why     ? sb->why
                                    : "being updated";
    snprintf(info.why, sizeof(info.why), "%s", why);
    pthread_mutex_unlock(&t->lock);
    *ret_info = info;
    return 0;
}

int rtcr_target_standby_foreach(rtcr_target_t *t,
                                int (*fn)(void *ctx, uint32_t badge, uint64_t size,
                                          const uint8_t *data),
                                void *ctx)
{
    struct standby *sb = t->standby;
    if (!sb || !sb->valid)
        return -ENOENT;
    for (size_t i = 0; i < sb->n; i++) {
        int r = fn(ctx, sb->ext[i].badge, sb->ext[i].size, sb->map + sb->ext[i].off);
        if (r != 0)
            return r;
    }
    return 0;
}
