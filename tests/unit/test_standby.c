/* test_standby.c — the hot standby (rtcr_standby.c): a copy of the memory of the newest epoch
 * that a restore of that epoch takes as its pool instead of decoding the image.
 *
 * Two levels:
 *   - the update rule against materialisation, on synthetic chains driven through the
 *     internal hooks (standby_begin/put/end, as rtcr_target_checkpoint calls them), with
 *     dataspaces created, destroyed, re-created with the same badge, resized and partly
 *     written between epochs, full epochs replacing the chain, and the memfd taken by a
 *     restore checked byte by byte (content at the layout, zero everywhere else);
 *   - real target processes (brake, logger) through rtcr/ecu.h, as test_ckpt.c runs them:
 *     the standby equals rtcr_image_materialize of the newest epoch after every epoch, a
 *     restore takes it and the target continues, the next full epoch rebuilds it, a restore
 *     of an older epoch, a failed checkpoint, a loaded or adopted image fall back to decoding,
 *     and corrupt images are handled as without a standby.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <rtcr/ecu.h>
#include <rtcr/image.h>

#include "../../ecu-agent/agent_config.h"
#include "../../rtcr-core/src/ecu_internal.h"
#include "../lib/target_util.h"
#include "ckpt_helpers.h"

/* ---- synthetic chains through the hooks ------------------------------------------------ */

#define SYN_MAX_DS 8
#define SYN_QUOTA  (256u << 10)

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A dataspace of the model: badge, size and the content the target "has". */
struct mds {
    uint32_t badge;
    size_t size;
    uint8_t *mem;
    bool known; /* stored by the previous epoch (its runs may be partial) */
};

struct syn {
    struct rtcr_target *t; /* a target record with just what the standby uses */
    struct mds ds[SYN_MAX_DS];
    size_t n;
    uint64_t epoch; /* newest epoch */
    uint32_t next_badge;
};

static void syn_init(struct syn *s)
{
    memset(s, 0, sizeof(*s));
    s->t = calloc(1, sizeof(*s->t));
    assert_non_null(s->t);
    pthread_mutex_init(&s->t->lock, NULL);
    snprintf(s->t->name, sizeof(s->t->name), "synth");
    s->t->binary = (char *)"/nonexistent/binary";
    s->t->ram_quota = SYN_QUOTA;
    s->t->pool_fd = s->t->spare_fd = -1;
    s->t->ckpt.standby = true;
    s->t->image = rtcr_image_new("synth", NULL);
    assert_non_null(s->t->image);
    s->next_badge = 0x400;
}

static void syn_fini(struct syn *s)
{
    standby_fini(s->t);
    target_spare_drop(s->t);
    rtcr_image_destroy(&s->t->image);
    pthread_mutex_destroy(&s->t->lock);
    free(s->t);
    for (size_t i = 0; i < s->n; i++)
        free(s->ds[i].mem);
}

static void syn_add_ds(struct syn *s, uint32_t badge, size_t pages)
{
    assert_true(s->n < SYN_MAX_DS);
    struct mds *d = &s->ds[s->n++];
    d->badge = badge;
    d->size = pages * 4096;
    d->mem = calloc(1, d->size);
    assert_non_null(d->mem);
    d->known = false;
}

static void syn_drop_ds(struct syn *s, size_t i)
{
    free(s->ds[i].mem);
    s->ds[i] = s->ds[--s->n];
}

/* Write `pages` random pages (some all-zero) into a dataspace of the model. */
static void syn_scribble(struct mds *d, unsigned pages)
{
    for (unsigned k = 0; k < pages; k++) {
        size_t pg = rnd() % (d->size / 4096);
        uint8_t *p = d->mem + pg * 4096;
        if (rnd() % 4 == 0)
            memset(p, 0, 4096);
        else
            for (size_t i = 0; i < 4096; i += 8) {
                uint64_t v = rnd();
                memcpy(p + i, &v, 8);
            }
    }
}

/* Take epoch `s->epoch + 1`: metadata declares the model's dataspaces (a ROM session first);
 * known dataspaces store `dirty` random runs, new ones either whole or only a few runs (as a
 * restored one might); the same runs go to the builder and to the standby, as
 * rtcr_target_checkpoint does. */
static void syn_epoch(struct syn *s, bool full, unsigned dirty)
{
    uint64_t num = s->epoch + 1;
    static const uint8_t bid[4] = {1, 2, 3, 4};
    rtcr_epoch_info_t info = {.target = "synth",
                              .epoch = num,
                              .parent = full ? 0 : num - 1,
                              .build_id = bid,
                              .build_id_len = sizeof(bid),
                              .granularity = 4096};
    RtcrImg__StoredState st = RTCR_IMG__STORED_STATE__INIT;
    RtcrImg__Session se[2] = {RTCR_IMG__SESSION__INIT, RTCR_IMG__SESSION__INIT}, *sp[2];
    RtcrImg__RomSession rom = RTCR_IMG__ROM_SESSION__INIT;
    RtcrImg__RamSession ram = RTCR_IMG__RAM_SESSION__INIT;
    RtcrImg__Dataspace dd[SYN_MAX_DS], *ddp[SYN_MAX_DS];
    se[0].type = RTCR_IMG__SESSION_TYPE__SESSION_ROM;
    se[0].badge = 0x100;
    se[0].creation_args = "label=\"binary\"";
    se[0].upgrade_args = "";
    rom.module = "binary";
    rom.ds_badge = 0x104;
    rom.length = 5000; /* two pages of ROM room */
    se[0].state_case = RTCR_IMG__SESSION__STATE_ROM;
    se[0].rom = &rom;
    se[1].type = RTCR_IMG__SESSION_TYPE__SESSION_RAM;
    se[1].badge = 0x108;
    se[1].creation_args = "ram_quota=1M";
    se[1].upgrade_args = "";
    for (size_t i = 0; i < s->n; i++) {
        rtcr_img__dataspace__init(&dd[i]);
        dd[i].badge = s->ds[i].badge;
        dd[i].size = s->ds[i].size;
        ddp[i] = &dd[i];
    }
    ram.n_dataspaces = s->n;
    ram.dataspaces = ddp;
    se[1].state_case = RTCR_IMG__SESSION__STATE_RAM;
    se[1].ram = &ram;
    sp[0] = &se[0];
    sp[1] = &se[1];
    st.n_sessions = 2;
    st.sessions = sp;

    /* runs: per dataspace ascending, no overlap */
    struct {
        uint32_t badge;
        uint64_t off;
        size_t len;
        const uint8_t *data;
    } runs[SYN_MAX_DS * 16];
    size_t nr = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct mds *d = &s->ds[i];
        size_t pages = d->size / 4096;
        bool whole = full || (!d->known && rnd() % 2);
        d->known = true;
        if (whole) { /* as the checkpointer stores a new dataspace */
            runs[nr++] = (typeof(runs[0])){d->badge, 0, d->size, d->mem};
            continue;
        }
        if (dirty == 0)
            continue;
        /* some runs, ascending with gaps; for a dataspace new in this epoch the pages between
         * them read as zero (the reference is materialisation, not the model) */
        syn_scribble(d, dirty);
        for (size_t pg = 0; pg < pages;) {
            size_t len = 1 + rnd() % 3;
            if (pg + len > pages)
                len = pages - pg;
            if (rnd() % 2)
                runs[nr++] = (typeof(runs[0])){d->badge, pg * 4096, len * 4096, d->mem + pg * 4096};
            pg += len + rnd() % 2;
        }
    }
    rtcr_epoch_builder_t *b = NULL;
    rtcr_image_err_t err;
    void *buf;
    size_t len;
    rtcr_epoch_t *e = NULL;
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_frame_size(b, 8192), 0);
    for (size_t i = 0; i < nr; i++)
        assert_int_equal(
            rtcr_epoch_add_pages(b, runs[i].badge, runs[i].off, runs[i].data, runs[i].len), 0);
    if (rtcr_epoch_builder_set_metadata(b, &st) != 0)
        fail_msg("metadata refused");
    if (rtcr_epoch_finish(b, &err, &buf, &len) != 0)
        fail_msg("finish: %s", err.msg);
    rtcr_epoch_builder_destroy(&b);
    if (rtcr_epoch_parse_owned(&buf, len, NULL, &err, &e) != 0)
        fail_msg("parse: %s", err.msg);
    if (rtcr_image_add_epoch(s->t->image, &e, &err) != 0)
        fail_msg("add: %s", err.msg);
    s->epoch = num;
    if (standby_begin(s->t, num, full) >= 0) {
        for (size_t i = 0; i < nr; i++)
            standby_put(s->t, runs[i].badge, runs[i].off, runs[i].data, runs[i].len);
        standby_end(s->t);
    }
}

struct cmp {
    const rtcr_memstate_t *ms; /* reference */
    size_t n;                  /* dataspaces seen */
    size_t bad;                /* of them differing */
};

static int cmp_ds(void *ctx, uint32_t badge, uint64_t size, const uint8_t *data)
{
    struct cmp *c = ctx;
    uint64_t msz = 0;
    const uint8_t *m = rtcr_memstate_find(c->ms, badge, &msz);
    if (!m || msz != size || memcmp(m, data, (size_t)size) != 0)
        c->bad++;
    c->n++;
    return 0;
}

/* The standby of t holds exactly the materialisation of the newest epoch. */
static void expect_standby_equals_newest(rtcr_target_t *t)
{
    rtcr_standby_info_t si;
    assert_int_equal(rtcr_target_standby_info(t, &si), 0);
    if (!si.ready)
        fail_msg("standby not ready: %s", si.why);
    const rtcr_image_t *img = rtcr_target_image(t);
    assert_int_equal(si.epoch, rtcr_image_last(img));
    rtcr_memstate_t *ms = NULL;
    rtcr_image_err_t err;
    if (rtcr_image_materialize(img, rtcr_image_last(img), &err, &ms) != 0)
        fail_msg("materialize: %s", err.msg);
    struct cmp c = {.ms = ms};
    assert_int_equal(rtcr_target_standby_foreach(t, cmp_ds, &c), 0);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.n, rtcr_memstate_count(ms));
    assert_int_equal(si.dataspaces, c.n);
    rtcr_memstate_destroy(&ms);
}

static bool standby_ready(rtcr_target_t *t)
{
    rtcr_standby_info_t si;
    rtcr_target_standby_info(t, &si);
    return si.ready;
}

/* Take the standby as a restore would and check the whole memfd: each dataspace of the
 * newest epoch at its layout offset, zero everywhere else. */
static void syn_take_and_check(struct syn *s)
{
    struct rtcr_target *t = s->t;
    struct standby_ext *lay = NULL;
    size_t n = 0;
    uint64_t ino = 0;
    const char *why = NULL;
    assert_int_equal(standby_take(t, s->epoch, &lay, &n, &ino, &why), 0);
    assert_non_null(t->spare);
    assert_int_equal(t->spare_size, target_pool_bytes(t));
    struct stat sst;
    assert_int_equal(fstat(t->spare_fd, &sst), 0);
    assert_int_equal((uint64_t)sst.st_ino, ino);
    rtcr_memstate_t *ms = NULL;
    rtcr_image_err_t err;
    assert_int_equal(rtcr_image_materialize(t->image, s->epoch, &err, &ms), 0);
    assert_int_equal(n, rtcr_memstate_count(ms));
    uint8_t *covered = calloc(1, t->spare_size / 4096);
    assert_non_null(covered);
    for (size_t i = 0; i < n; i++) {
        uint64_t size = 0;
        const uint8_t *m = rtcr_memstate_find(ms, lay[i].badge, &size);
        assert_non_null(m);
        assert_int_equal(size, lay[i].size);
        assert_true(lay[i].off >= 2 * 4096); /* above the ROM room */
        assert_memory_equal(t->spare + lay[i].off, m, size);
        for (size_t pg = lay[i].off / 4096; pg < (lay[i].off + size) / 4096; pg++) {
            assert_int_equal(covered[pg], 0); /* disjoint */
            covered[pg] = 1;
        }
    }
    for (size_t pg = 0; pg < t->spare_size / 4096; pg++)
        if (!covered[pg])
            for (size_t i = 0; i < 4096; i++)
                if (t->spare[pg * 4096 + i])
                    fail_msg("byte %zu outside the layout is not zero", pg * 4096 + i);
    free(covered);
    free(lay);
    rtcr_memstate_destroy(&ms);
    /* taken: not ready, and a second take finds nothing */
    assert_false(standby_ready(t));
    assert_int_equal(standby_take(t, s->epoch, &lay, &n, &ino, &why), -ENOENT);
    assert_non_null(why);
}

static void test_update_rule_equals_materialization(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 6; seed++) {
        struct syn s;
        rng = 0x9e3779b97f4a7c15ull * seed;
        syn_init(&s);
        for (uint32_t i = 0; i < 3; i++)
            syn_add_ds(&s, s.next_badge += 4, 2 + rnd() % 6);
        syn_epoch(&s, true, 0);
        expect_standby_equals_newest(s.t);
        uint32_t gone_badge = 0;
        size_t gone_size = 0;
        for (unsigned k = 0; k < 14; k++) {
            unsigned what = (unsigned)(rnd() % 6);
            if (what == 0 && s.n > 1) { /* destroyed */
                size_t i = rnd() % s.n;
                gone_badge = s.ds[i].badge;
                gone_size = s.ds[i].size / 4096;
                syn_drop_ds(&s, i);
            } else if (what == 1 && s.n < SYN_MAX_DS) { /* created */
                syn_add_ds(&s, s.next_badge += 4, 1 + rnd() % 8);
            } else if (what == 2 && gone_badge && s.n < SYN_MAX_DS) {
                /* the same badge again: a new lifetime, its old content must not come back */
                syn_add_ds(&s, gone_badge, gone_size);
                gone_badge = 0;
            } else if (what == 3 && s.n > 0) { /* the same badge with another size */
                size_t i = rnd() % s.n;
                uint32_t b = s.ds[i].badge;
                size_t pages = s.ds[i].size / 4096 + 1;
                syn_drop_ds(&s, i);
                syn_add_ds(&s, b, pages);
            }
            bool full = k == 7; /* a full epoch replaces the chain in the middle */
            syn_epoch(&s, full, (unsigned)(rnd() % 4));
            if (full)
                assert_int_equal(rtcr_image_count(s.t->image), 1);
            expect_standby_equals_newest(s.t);
        }
        rtcr_standby_info_t si;
        rtcr_target_standby_info(s.t, &si);
        assert_int_equal(si.rebuilds, 2);
        syn_take_and_check(&s);

        /* after the take, an incremental epoch cannot follow: still not ready */
        target_spare_drop(s.t); /* what make_pool would have adopted */
        syn_epoch(&s, false, 2);
        assert_false(standby_ready(s.t));
        rtcr_target_standby_info(s.t, &si);
        assert_non_null(strstr(si.why, "taken"));
        /* a full epoch rebuilds it in the memory that was left (the old kept pool: none here) */
        syn_epoch(&s, true, 0);
        expect_standby_equals_newest(s.t);
        syn_take_and_check(&s);
        target_spare_drop(s.t);
        syn_fini(&s);
    }
}

static void test_invalidation_rules(void **state)
{
    (void)state;
    struct syn s;
    rng = 77;
    syn_init(&s);
    syn_add_ds(&s, 0x500, 4);
    syn_add_ds(&s, 0x504, 3);
    syn_epoch(&s, true, 0);
    syn_epoch(&s, false, 2);
    expect_standby_equals_newest(s.t);

    /* invalidated (as a failed checkpoint does): incremental epochs do not bring it back */
    standby_invalidate(s.t, "a checkpoint failed");
    assert_false(standby_ready(s.t));
    struct standby_ext *lay;
    size_t n;
    uint64_t ino;
    const char *why = NULL;
    assert_int_equal(standby_take(s.t, s.epoch, &lay, &n, &ino, &why), -ENOENT);
    assert_non_null(strstr(why, "checkpoint failed"));
    syn_epoch(&s, false, 1);
    assert_false(standby_ready(s.t));
    rtcr_standby_info_t si;
    rtcr_target_standby_info(s.t, &si);
    assert_non_null(strstr(si.why, "checkpoint failed"));
    syn_epoch(&s, true, 0);
    expect_standby_equals_newest(s.t);

    /* an older epoch is never taken, nor one whose metadata differs from what was applied */
    syn_epoch(&s, false, 1);
    assert_int_equal(standby_take(s.t, s.epoch - 1, &lay, &n, &ino, &why), -ENOENT);
    assert_true(standby_ready(s.t));

    /* switched off: the next epoch frees it, and nothing is ready */
    s.t->ckpt.standby = false;
    syn_epoch(&s, false, 1);
    rtcr_target_standby_info(s.t, &si);
    assert_false(si.enabled);
    assert_false(si.ready);
    assert_int_equal(si.bytes, 0);
    assert_null(s.t->standby);
    syn_fini(&s);
}

/* ---- real targets -------------------------------------------------------------------------- */

struct fx {
    rtcr_ecu_t *ecu;      /* the ECU */
    rtcr_target_t *brake; /* brake (standby on) */
    pthread_t sensor;     /* fires line 5 */
    volatile bool stop;   /* stops the sensor */
    char dir[64];         /* state dir */
};

static void *sensor_main(void *p)
{
    struct fx *f = p;
    while (!f->stop) {
        rtcr_ecu_irq_fire(f->ecu, 5);
        tu_sleep_ms(5);
    }
    return NULL;
}

static void set_params(rtcr_target_t *t, const char *dir, bool standby)
{
    rtcr_ckpt_params_t cp = {.dirty_mode = -1,
                             .granularity = 4096,
                             /* generous: tests must not depend on scheduling under load */
                             .quiesce_timeout_usec = 3000000,
                             .state_dir = dir,
                             .standby = standby};
    assert_int_equal(rtcr_target_set_ckpt_params(t, &cp), 0);
}

static rtcr_target_t *add(rtcr_ecu_t *ecu, const char *name, const char *binary,
                          const rtcr_rom_spec_t *roms, size_t n_roms, const char *dir)
{
    rtcr_target_spec_t spec = {.name = name,
                               .binary = binary,
                               .ram_quota = 8u << 20,
                               .cap_limit = 512,
                               .roms = roms,
                               .n_roms = n_roms};
    rtcr_target_t *t = NULL;
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, &t), 0);
    set_params(t, dir, true);
    return t;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/rtcr-test-standby.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    rtcr_ecu_params_t p = {.name = "ecu-a", .ram_total = 1u << 30, .log_lines = 1000};
    assert_int_equal(rtcr_ecu_new(&p, &f->ecu), 0);
    f->brake = add(f->ecu, "brake", tu_target_path("brake"), NULL, 0, f->dir);
    assert_int_equal(rtcr_target_start(f->brake), 0);
    assert_int_equal(pthread_create(&f->sensor, NULL, sensor_main, f), 0);
    assert_true(tu_wait_tick(f->brake, 20, 2, 5000) >= 20);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    f->stop = true;
    pthread_join(f->sensor, NULL);
    rtcr_ecu_destroy(&f->ecu);
    rm_dir(f->dir);
    free(f);
    return 0;
}

static void restore_ok(struct fx *f, rtcr_target_t *t, uint64_t epoch, enum rtcr_restore_path want)
{
    char err[512] = "";
    int r = rtcr_target_restore(t, epoch, err, sizeof(err));
    if (r < 0)
        fail_msg("restore failed: %s", err);
    assert_true(tu_wait_state(f->ecu, t, RTCR_TARGET_RUNNING, 10000));
    rtcr_standby_info_t si;
    rtcr_target_standby_info(t, &si);
    if (si.last_restore != want)
        fail_msg("restore took the %s path, expected %s", rtcr_restore_path_name(si.last_restore),
                 rtcr_restore_path_name(want));
}

static void test_restore_via_standby_continues(void **state)
{
    struct fx *f = *state;
    rtcr_epoch_stats_t st;
    rtcr_standby_info_t si;
    for (int round = 0; round < 2; round++) {
        /* the incarnation's first epoch is full and (re)builds the standby */
        checkpoint_ok(f->brake, &st);
        assert_true(st.full);
        expect_standby_equals_newest(f->brake);
        for (int k = 0; k < 5; k++) {
            tu_sleep_ms(30);
            checkpoint_ok(f->brake, &st);
            assert_false(st.full);
            expect_standby_equals_newest(f->brake);
        }
        rtcr_target_standby_info(f->brake, &si);
        assert_int_equal(si.rebuilds, (unsigned)round + 1);
        assert_true(si.bytes >= 8u << 20);
        long tick_ckpt, irq_ckpt;
        assert_true(tu_last_tick(f->brake, &tick_ckpt, &irq_ckpt));

        kill_wait(f->ecu, f->brake);
        restore_ok(f, f->brake, 0, RTCR_RESTORE_STANDBY);
        rtcr_target_standby_info(f->brake, &si);
        assert_false(si.ready); /* it is the pool now */
        assert_int_equal(si.taken, (unsigned)round + 1);

        /* counters continue from the checkpointed values, timers and IRQs keep arriving */
        assert_true(tu_wait_tick(f->brake, tick_ckpt + 20, irq_ckpt + 3, 5000) >= 0);
        struct mono m = {0, 0, 0};
        rtcr_target_foreach_log(f->brake, mono_line, &m);
        assert_true(m.n > 4);
        assert_int_equal(m.drops, 0);
    }
}

static void test_older_epoch_falls_back(void **state)
{
    struct fx *f = *state;
    rtcr_epoch_stats_t st;
    long tick2 = 0, irq2 = 0;
    for (int k = 1; k <= 4; k++) {
        checkpoint_ok(f->brake, &st);
        if (k == 2)
            assert_true(tu_last_tick(f->brake, &tick2, &irq2));
        tu_sleep_ms(40);
    }
    expect_standby_equals_newest(f->brake);
    kill_wait(f->ecu, f->brake);
    restore_ok(f, f->brake, 2, RTCR_RESTORE_DECODE);
    assert_true(tu_wait_tick(f->brake, tick2 + 10, 0, 5000) >= 0);
    /* the standby still holds epoch 4, the newest of the image: it was not touched */
    expect_standby_equals_newest(f->brake);
    /* the new incarnation's first epoch (5, full) rebuilds it */
    checkpoint_ok(f->brake, &st);
    assert_true(st.full);
    assert_int_equal(st.epoch, 5);
    expect_standby_equals_newest(f->brake);
    kill_wait(f->ecu, f->brake);
    restore_ok(f, f->brake, 0, RTCR_RESTORE_STANDBY);
}

static void test_failed_checkpoint_invalidates(void **state)
{
    struct fx *f = *state;
    rtcr_epoch_stats_t st;
    checkpoint_ok(f->brake, &st);
    checkpoint_ok(f->brake, &st);
    expect_standby_equals_newest(f->brake);

    /* a state dir that cannot be created: the epoch is encoded, then writing it fails */
    char bad[128];
    snprintf(bad, sizeof(bad), "%s/not-a-dir", f->dir);
    FILE *fp = fopen(bad, "w");
    assert_non_null(fp);
    fclose(fp);
    char sub[160];
    snprintf(sub, sizeof(sub), "%s/sub", bad);
    set_params(f->brake, sub, true);
    char err[512] = "";
    assert_true(rtcr_target_checkpoint(f->brake, &st, err, sizeof(err)) < 0);
    rtcr_standby_info_t si;
    rtcr_target_standby_info(f->brake, &si);
    assert_false(si.ready);
    assert_non_null(strstr(si.why, "checkpoint failed"));
    assert_int_equal(rtcr_image_last(rtcr_target_image(f->brake)), 2);

    /* the image (epochs 1..2) is restored by decoding, and continues */
    long tick, irq;
    assert_true(tu_last_tick(f->brake, &tick, &irq));
    kill_wait(f->ecu, f->brake);
    restore_ok(f, f->brake, 0, RTCR_RESTORE_DECODE);
    assert_true(tu_wait_tick(f->brake, 10, 0, 5000) >= 0);

    /* a working state dir again: the next (full) epoch makes it ready */
    set_params(f->brake, f->dir, true);
    checkpoint_ok(f->brake, &st);
    assert_true(st.full);
    expect_standby_equals_newest(f->brake);
}

static void corrupt_file(const char *dir, uint64_t epoch)
{
    char path[512];
    assert_int_equal(rtcr_image_epoch_path(dir, "brake", epoch, path, sizeof(path)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    FILE *fp = fopen(path, "r+");
    assert_non_null(fp);
    off_t at = st.st_size - 100; /* inside the page data */
    assert_int_equal(fseeko(fp, at, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_int_equal(fseeko(fp, at, SEEK_SET), 0);
    fputc(c ^ 0x5a, fp);
    fclose(fp);
}

static void test_loaded_adopted_corrupt_images(void **state)
{
    struct fx *f = *state;
    char err[512];
    for (int i = 0; i < 4; i++) {
        checkpoint_ok(f->brake, NULL);
        tu_sleep_ms(20);
    }
    expect_standby_equals_newest(f->brake);
    kill_wait(f->ecu, f->brake);

    /* loaded from disk: the corrupt newest epoch is dropped as without a standby, and the
     * standby (of epoch 4) is not used for anything */
    corrupt_file(f->dir, 4);
    assert_int_equal(rtcr_target_load_image(f->brake, err, sizeof(err)), 1);
    assert_int_equal(rtcr_image_last(rtcr_target_image(f->brake)), 3);
    assert_false(standby_ready(f->brake));
    assert_int_equal(rtcr_target_restore(f->brake, 4, err, sizeof(err)), -ENOENT);
    restore_ok(f, f->brake, 0, RTCR_RESTORE_DECODE);

    /* a full epoch makes it ready; then an adopted image (the same bytes) invalidates it */
    checkpoint_ok(f->brake, NULL);
    expect_standby_equals_newest(f->brake);
    const rtcr_image_t *cur = rtcr_target_image(f->brake);
    rtcr_image_t *copy = rtcr_image_new("brake", NULL);
    assert_non_null(copy);
    for (uint64_t e = rtcr_image_first(cur); e <= rtcr_image_last(cur); e++) {
        size_t len;
        const void *b = rtcr_epoch_bytes(rtcr_image_epoch(cur, e), &len);
        rtcr_epoch_t *ep = NULL;
        rtcr_image_err_t ierr;
        assert_int_equal(rtcr_epoch_parse(b, len, NULL, &ierr, &ep), 0);
        assert_int_equal(rtcr_image_add_epoch(copy, &ep, &ierr), 0);
    }
    kill_wait(f->ecu, f->brake);
    assert_int_equal(rtcr_target_adopt_image(f->brake, &copy), 0);
    assert_null(copy);
    assert_false(standby_ready(f->brake));
    restore_ok(f, f->brake, 0, RTCR_RESTORE_DECODE);

    /* the base itself corrupt on disk: nothing loads, the image in memory stays */
    checkpoint_ok(f->brake, NULL);
    kill_wait(f->ecu, f->brake);
    uint64_t last = rtcr_image_last(rtcr_target_image(f->brake));
    corrupt_file(f->dir, last);
    assert_true(rtcr_target_load_image(f->brake, err, sizeof(err)) < 0);
    assert_int_equal(rtcr_image_last(rtcr_target_image(f->brake)), last);
    /* the image in memory was not replaced, so its standby still holds it exactly */
    expect_standby_equals_newest(f->brake);
    restore_ok(f, f->brake, 0, RTCR_RESTORE_STANDBY);
}

/* The newest round logger logged; counts lines whose RAM check failed into *bad. */
struct rounds {
    long last; /* newest round */
    long bad;  /* rounds without "ram ok" */
};

static int round_line(void *ctx, const char *line)
{
    struct rounds *r = ctx;
    long round;
    if (sscanf(line, "round=%ld", &round) == 1) {
        if (!strstr(line, "(ram ok)"))
            r->bad++;
        r->last = round;
    }
    return 0;
}

static long logger_round(rtcr_target_t *t, long *ret_bad)
{
    struct rounds r = {0, 0};
    rtcr_target_foreach_log(t, round_line, &r);
    *ret_bad = r.bad;
    return r.last;
}

/* logger: a dataspace comes and goes in every round, a ROM module of more than a page sits
 * in the pool next to the standby's content. */
static void test_logger_churn_and_rom(void **state)
{
    struct fx *f = *state;
    char msgs[128];
    snprintf(msgs, sizeof(msgs), "%s/messages", f->dir);
    FILE *fp = fopen(msgs, "w");
    assert_non_null(fp);
    for (int i = 0; i < 300; i++)
        fprintf(fp, "message number %d of the catalogue\n", i);
    fclose(fp);
    rtcr_rom_spec_t rom = {.name = "messages", .path = msgs};
    rtcr_target_t *lg = add(f->ecu, "logger", tu_target_path("logger"), &rom, 1, f->dir);
    assert_int_equal(rtcr_target_start(lg), 0);
    assert_true(tu_wait_state(f->ecu, lg, RTCR_TARGET_RUNNING, 3000));
    long bad, at_ckpt = 0;
    for (int k = 0; k < 8; k++) {
        tu_sleep_ms(60);
        at_ckpt = logger_round(lg, &bad); /* the epoch holds this round or a later one */
        checkpoint_ok(lg, NULL);
        expect_standby_equals_newest(lg);
    }
    kill_wait(f->ecu, lg);
    restore_ok(f, lg, 0, RTCR_RESTORE_STANDBY);
    /* it goes on past the checkpointed round, its RAM check passing (only one round is
     * awaited: a restored logger currently stops after its first round on the decoding path
     * just the same, a restore issue outside the standby) */
    long now = 0;
    for (int i = 0; i < 60 && now <= at_ckpt; i++) {
        tu_sleep_ms(50);
        now = logger_round(lg, &bad);
    }
    assert_true(now > at_ckpt);
    assert_int_equal(bad, 0);
    checkpoint_ok(lg, NULL);
    expect_standby_equals_newest(lg);
    assert_int_equal(rtcr_target_stop(lg), 0);
}

/* ---- the agent's knob --------------------------------------------------------------------- */

static void test_config_key(void **state)
{
    (void)state;
    static const char text[] = "targets\n"
                               "    a\n        binary = true\n        on_crash = restore\n"
                               "    b\n        binary = true\n        on_crash = restart\n"
                               "    c\n        binary = true\n        on_crash = restore\n"
                               "        standby = no\n"
                               "    d\n        binary = true\n        standby = yes\n";
    agent_config_t *cfg = NULL;
    char *err = NULL;
    if (agent_config_parse("/tmp/x.conf", text, "/bin", &cfg, &err) != 0)
        fail_msg("config: %s", err ? err : "?");
    assert_int_equal(cfg->n_targets, 4);
    /* default: on exactly for the targets restored on crash; the key overrides it */
    assert_true(cfg->targets[0].standby);
    assert_false(cfg->targets[1].standby);
    assert_false(cfg->targets[2].standby);
    assert_true(cfg->targets[3].standby);
    agent_config_destroy(&cfg);
    assert_int_equal(agent_config_parse("/tmp/x.conf",
                                        "targets\n    a\n        binary = true\n"
                                        "        standby = maybe\n",
                                        "/bin", &cfg, &err),
                     -EINVAL);
    assert_non_null(err);
    assert_non_null(strstr(err, "targets/a/standby"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_rule_equals_materialization),
        cmocka_unit_test(test_invalidation_rules),
        cmocka_unit_test(test_config_key),
        cmocka_unit_test_setup_teardown(test_restore_via_standby_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_epoch_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_checkpoint_invalidates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loaded_adopted_corrupt_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logger_churn_and_rom, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
