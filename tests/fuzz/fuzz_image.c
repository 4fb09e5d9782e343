/* fuzz_image.c — fuzz the checkpoint image reader (rtcr_epoch_parse and everything a parsed
 * epoch offers: page iteration, printing, chains, materialisation, compaction).
 *
 * Each input is used three ways:
 *  1. as an epoch buffer, unchanged: most mutations die at a hash check, as they must;
 *  2. with the container's length field, section hashes and header hash recomputed, so the
 *     mutations reach the protobuf decoders and the consistency checks behind the hashes;
 *  3. as a serialised StoredState handed to the builder: if the builder accepts it, the epoch
 *     it produces (with pages for the declared dataspaces) must parse, materialise and
 *     compact — a writer/reader disagreement aborts.
 * Limits are small so that one input cannot make the harness allocate much.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include <rtcr/image.h>

#define FUZZ_MAX_DS_TOTAL (4u << 20) /* bytes materialised per input at most */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_limits(rtcr_image_limits_t *lim)
{
    rtcr_image_limits_default(lim);
    lim->max_total = 4u << 20;
    lim->max_metadata = 1u << 20;
    lim->max_pagemap = 1u << 20;
    lim->max_frames = 4096;
    lim->max_frame_size = 1u << 20;
    lim->max_dataspace = 1u << 20;
    lim->max_unpacked = 32u << 20;
    lim->max_epochs = 16;
}

static int page_fn(void *opaque, uint32_t ds, uint64_t offset, const void *data, size_t len)
{
    uint64_t *sum = opaque;

    (void)ds;
    *sum += offset + len;
    if (data && len)
        *sum += ((const uint8_t *)data)[len - 1];
    return 0;
}

static uint64_t ds_total(const rtcr_epoch_t *e)
{
    const RtcrImg__StoredState *s = rtcr_epoch_state(e);
    uint64_t total = 0;

    for (size_t i = 0; i < s->n_sessions; i++)
        if (s->sessions[i]->state_case == RTCR_IMG__SESSION__STATE_RAM)
            for (size_t k = 0; k < s->sessions[i]->ram->n_dataspaces; k++)
                total += s->sessions[i]->ram->dataspaces[k]->size;
    return total;
}

/* everything one can do with a parsed epoch; `must` aborts on unexpected failures */
static void use_epoch(rtcr_epoch_t **pe, const rtcr_image_limits_t *lim, int must)
{
    rtcr_epoch_t *e = *pe;
    rtcr_image_err_t err;
    uint64_t sum = 0;
    FILE *null = fopen("/dev/null", "we");
    int r;

    if (null) {
        rtcr_epoch_print(e, null, 1);
        fclose(null);
    }
    r = rtcr_epoch_foreach_pages(e, page_fn, &sum, &err);
    if (must && r < 0)
        abort();
    if (r < 0 || !rtcr_epoch_is_full(e) || ds_total(e) > FUZZ_MAX_DS_TOTAL)
        return;

    rtcr_image_t *img = rtcr_image_new(rtcr_epoch_target(e), lim);
    uint64_t num = rtcr_epoch_number(e);
    rtcr_memstate_t *ms = NULL;
    if (!img)
        abort(); /* the target name was validated by the parser */
    if (rtcr_image_add_epoch(img, pe, &err) < 0)
        abort(); /* a full epoch starts any empty chain of its target */
    if (rtcr_image_check(img, &err) < 0)
        abort();
    r = rtcr_image_materialize(img, num, &err, &ms);
    if (r < 0 && must)
        abort();
    rtcr_memstate_destroy(&ms);
    /* materialisable state must compact; only the harness's tight limits may refuse it */
    if (r == 0) {
        r = rtcr_image_compact(img, num, &err, NULL);
        if (r < 0 && r != -E2BIG)
            abort();
    }
    rtcr_image_destroy(&img);
}

static void parse_and_use(const uint8_t *buf, size_t len, rtcr_image_limits_t *lim)
{
    rtcr_image_err_t err;
    rtcr_epoch_t *e = NULL;

    if (rtcr_epoch_parse(buf, len, lim, &err, &e) == 0) {
        use_epoch(&e, lim, 0);
        rtcr_epoch_destroy(&e);
    } else if (e || err.msg[0] == '\0') {
        abort(); /* a failure must name its cause and return nothing */
    }
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* mode 2: recompute the container's integrity fields */
static void fixup_and_parse(const uint8_t *data, size_t size, rtcr_image_limits_t *lim)
{
    uint32_t n;
    uint8_t *buf;

    if (size < 32)
        return;
    n = (uint32_t)data[12] | (uint32_t)data[13] << 8 | (uint32_t)data[14] << 16 |
        (uint32_t)data[15] << 24;
    if (n == 0 || n > RTCR_IMAGE_MAX_SECTIONS || 32 + 32 * (size_t)n > size)
        return;
    buf = malloc(size);
    if (!buf)
        return;
    memcpy(buf, data, size);
    put64(buf + 16, size);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *ent = buf + 32 + 32 * i;
        uint64_t off = get64(ent + 8), sl = get64(ent + 16);
        if (off <= size && sl <= size - off)
            put64(ent + 24, XXH3_64bits(buf + off, sl));
    }
    put64(buf + 24, XXH3_64bits_withSeed(buf + 32, 32 * (size_t)n, XXH3_64bits(buf, 24)));
    parse_and_use(buf, size, lim);
    lim->skip_frame_check = true;
    parse_and_use(buf, size, lim);
    lim->skip_frame_check = false;
    free(buf);
}

/* mode 3: the input as metadata; what the builder accepts the reader must accept */
static void metadata_roundtrip(const uint8_t *data, size_t size, rtcr_image_limits_t *lim)
{
    static const uint8_t bid[4] = {1, 2, 3, 4};
    rtcr_epoch_info_t info = {.target = "fuzz",
                              .epoch = 1,
                              .build_id = bid,
                              .build_id_len = sizeof(bid),
                              .created_usec = 1};
    RtcrImg__StoredState *s;
    rtcr_epoch_builder_t *b = NULL;
    rtcr_image_err_t err;
    rtcr_epoch_t *e = NULL;
    void *buf = NULL;
    size_t len, added = 0;

    if (size > lim->max_metadata)
        return;
    if (rtcr_epoch_builder_new(&info, &b) < 0)
        abort();
    if (rtcr_epoch_builder_set_metadata_blob(b, data, size) < 0) {
        rtcr_epoch_builder_destroy(&b);
        return;
    }
    /* pages for (the start of) every declared dataspace, content from the input */
    s = rtcr_img__stored_state__unpack(NULL, size, data);
    if (!s)
        abort(); /* the builder accepted it */
    rtcr_epoch_builder_set_frame_size(b, 4096);
    for (size_t i = 0; i < s->n_sessions && added < 16; i++) {
        const RtcrImg__Session *se = s->sessions[i];
        if (se->state_case != RTCR_IMG__SESSION__STATE_RAM)
            continue;
        for (size_t k = 0; k < se->ram->n_dataspaces && added < 16; k++, added++) {
            const RtcrImg__Dataspace *d = se->ram->dataspaces[k];
            size_t n = d->size < size ? (size_t)d->size : size;
            if (n > 65536)
                n = 65536;
            if (rtcr_epoch_add_pages(b, d->badge, 0, data, n) < 0)
                abort();
        }
    }
    rtcr_img__stored_state__free_unpacked(s, NULL);
    if (rtcr_epoch_finish(b, &err, &buf, &len) == 0) {
        if (rtcr_epoch_parse(buf, len, lim, &err, &e) == 0) {
            use_epoch(&e, lim, 1);
            rtcr_epoch_destroy(&e);
        } else if (len <= lim->max_total) {
            /* limits of the harness are tighter than the writer's: only those may refuse */
            rtcr_image_limits_t def;
            rtcr_image_limits_default(&def);
            if (rtcr_epoch_parse(buf, len, &def, &err, &e) < 0)
                abort();
            rtcr_epoch_destroy(&e);
        }
        free(buf);
    }
    rtcr_epoch_builder_destroy(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rtcr_image_limits_t lim;

    fuzz_limits(&lim);
    parse_and_use(data, size, &lim);
    fixup_and_parse(data, size, &lim);
    metadata_roundtrip(data, size, &lim);
    return 0;
}
