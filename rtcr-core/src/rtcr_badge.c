/* rtcr_badge.c — the per-ECU badge allocator (Genode's cap_id_alloc on base-foc).
 *
 * Badges are 4-aligned (RTCR_BADGE_STEP, Genode's CAP_ID_OFFSET) so that the two low bits of a
 * delivered IPC label can carry the S and W rights of the capability used. Internally an id is
 * badge / 4; id 0 is RTCR_BADGE_INVALID and never handed out.
 *
 * Allocation is cursor based: the search starts after the badge handed out last and wraps at
 * the end of the range. A freed badge therefore is not handed out again until the cursor has
 * gone round the whole range, so a stale reference to a freed badge does not silently name a
 * new object. The used set is a bitmap of 2^26 bits allocated lazily in 8 KiB chunks with a
 * per-chunk count, so full chunks are skipped and the search is amortised O(1) and 64 ids per
 * step within a chunk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_internal.h"

void badge_init(struct badge_alloc *b)
{
    memset(b, 0, sizeof(*b));
    b->limit = BADGE_IDS;
    b->cursor = 1;
}

void badge_fini(struct badge_alloc *b)
{
    for (unsigned i = 0; i < BADGE_CHUNKS; i++)
        free(b->chunk[i]);
    memset(b, 0, sizeof(*b));
}

static bool id_used(const struct badge_alloc *b, uint32_t id)
{
    const uint64_t *c = b->chunk[id / BADGE_CHUNK_BITS];
    uint32_t bit = id % BADGE_CHUNK_BITS;
    return c && (c[bit / 64] >> (bit % 64)) & 1;
}

/* 0 or -ENOMEM (the chunk could not be allocated) */
static int id_set(struct badge_alloc *b, uint32_t id)
{
    uint32_t ci = id / BADGE_CHUNK_BITS, bit = id % BADGE_CHUNK_BITS;
    if (!b->chunk[ci]) {
        b->chunk[ci] = calloc(BADGE_CHUNK_WORDS, sizeof(uint64_t));
        if (!b->chunk[ci])
            return -ENOMEM;
    }
    b->chunk[ci][bit / 64] |= UINT64_C(1) << (bit % 64);
    b->used_in[ci]++;
    b->count++;
    return 0;
}

static void id_clear(struct badge_alloc *b, uint32_t id)
{
    uint32_t ci = id / BADGE_CHUNK_BITS, bit = id % BADGE_CHUNK_BITS;
    b->chunk[ci][bit / 64] &= ~(UINT64_C(1) << (bit % 64));
    b->used_in[ci]--;
    b->count--;
}

/* first free id in [from, to), or `to` if none */
static uint32_t find_free(const struct badge_alloc *b, uint32_t from, uint32_t to)
{
    uint32_t id = from;
    while (id < to) {
        uint32_t ci = id / BADGE_CHUNK_BITS;
        const uint64_t *c = b->chunk[ci];
        if (!c)
            return id;
        uint32_t chunk_end = (ci + 1) * BADGE_CHUNK_BITS;
        if (b->used_in[ci] == BADGE_CHUNK_BITS) {
            id = chunk_end;
            continue;
        }
        while (id < chunk_end && id < to) {
            uint32_t bit = id % BADGE_CHUNK_BITS;
            uint64_t free_bits = ~c[bit / 64] & (~UINT64_C(0) << (bit % 64));
            if (free_bits) {
                uint32_t cand = id - bit % 64 + (uint32_t)__builtin_ctzll(free_bits);
                return cand < to ? cand : to;
            }
            id = id - bit % 64 + 64;
        }
    }
    return to;
}

int badge_alloc_locked(struct badge_alloc *b, rtcr_badge_t *ret_badge)
{
    if (b->count >= (size_t)b->limit - 1)
        return -EOVERFLOW;
    uint32_t start = b->cursor < b->limit && b->cursor > 0 ? b->cursor : 1;
    uint32_t id = find_free(b, start, b->limit);
    if (id >= b->limit) {
        id = find_free(b, 1, start); /* wrap */
        if (id >= start)
            return -EOVERFLOW; /* not reached: the count says one is free */
    }
    int r = id_set(b, id);
    if (r < 0)
        return r;
    b->cursor = id + 1 < b->limit ? id + 1 : 1;
    *ret_badge = id * RTCR_BADGE_STEP;
    return 0;
}

static int badge_check(const struct badge_alloc *b, rtcr_badge_t badge)
{
    if (badge == RTCR_BADGE_INVALID || badge % RTCR_BADGE_STEP != 0 ||
        badge / RTCR_BADGE_STEP >= b->limit)
        return -EINVAL;
    return 0;
}

int badge_free_locked(struct badge_alloc *b, rtcr_badge_t badge)
{
    int r = badge_check(b, badge);
    if (r < 0)
        return r;
    if (!id_used(b, badge / RTCR_BADGE_STEP))
        return -ENOENT;
    id_clear(b, badge / RTCR_BADGE_STEP);
    return 0;
}

int rtcr_badge_alloc(rtcr_kernel_t *k, rtcr_badge_t *ret_badge)
{
    if (!k || !ret_badge)
        return -EINVAL;
    klock(k);
    int r = badge_alloc_locked(&k->badges, ret_badge);
    kunlock(k);
    return r;
}

int rtcr_badge_reserve(rtcr_kernel_t *k, rtcr_badge_t badge)
{
    if (!k)
        return -EINVAL;
    klock(k);
    int r = badge_check(&k->badges, badge);
    if (r == 0 && id_used(&k->badges, badge / RTCR_BADGE_STEP))
        r = -EEXIST;
    if (r == 0)
        r = id_set(&k->badges, badge / RTCR_BADGE_STEP);
    kunlock(k);
    return r;
}

int rtcr_badge_free(rtcr_kernel_t *k, rtcr_badge_t badge)
{
    if (!k)
        return -EINVAL;
    klock(k);
    int r = badge_free_locked(&k->badges, badge);
    kunlock(k);
    return r;
}

bool rtcr_badge_is_used(rtcr_kernel_t *k, rtcr_badge_t badge)
{
    if (!k)
        return false;
    klock(k);
    bool used = badge_check(&k->badges, badge) == 0 && id_used(&k->badges, badge / RTCR_BADGE_STEP);
    kunlock(k);
    return used;
}

size_t rtcr_badge_count(rtcr_kernel_t *k)
{
    if (!k)
        return 0;
    klock(k);
    size_t n = k->badges.count;
    kunlock(k);
    return n;
}

int rtcr_badge_set_range(rtcr_kernel_t *k, rtcr_badge_t end)
{
    if (!k)
        return -EINVAL;
    if (end % RTCR_BADGE_STEP != 0 || end < 2 * RTCR_BADGE_STEP || end > RTCR_BADGE_RANGE)
        return -EINVAL;
    klock(k);
    int r = 0;
    if (k->badges.count > 0) {
        r = -EBUSY;
    } else {
        k->badges.limit = end / RTCR_BADGE_STEP;
        k->badges.cursor = 1;
    }
    kunlock(k);
    return r;
}
