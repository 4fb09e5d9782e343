/* test_ckpt.c — checkpoint and restore of real target processes through the ECU runtime:
 * continuity of brake's counters across kill + restore, cap-space equality (slots and types;
 * only badges differ), restore into a badge namespace that already holds the old badges,
 * a 100-epoch chain against its compaction, compaction in the background, corrupt / truncated /
 * foreign images, quota, restore on another ECU, a target that does not quiesce, and a
 * compaction whose full epoch cannot be written (recorded, the chain on disk intact). */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <rtcr/ecu.h>
#include <rtcr/image.h>

#include "../lib/target_util.h"
#include "ckpt_helpers.h"

/* ---- fixture: an ECU, a brake target, and a thread firing IRQ line 5 every 5 ms ---------- */

struct fx {
    rtcr_ecu_t *ecu;      /* the ECU */
    rtcr_target_t *brake; /* brake */
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

static rtcr_ecu_t *new_ecu(const char *name)
{
    rtcr_ecu_params_t p = {.name = name, .ram_total = 1u << 30, .log_lines = 1000};
    rtcr_ecu_t *ecu = NULL;
    assert_int_equal(rtcr_ecu_new(&p, &ecu), 0);
    return ecu;
}

static rtcr_target_t *add(rtcr_ecu_t *ecu, const char *name, const char *binary, size_t quota,
                          const char *dir)
{
    rtcr_target_spec_t spec = {
        .name = name, .binary = binary, .ram_quota = quota, .cap_limit = 512};
    rtcr_target_t *t = NULL;
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, &t), 0);
    rtcr_ckpt_params_t cp = {.dirty_mode = -1,
                             .granularity = 4096,
                             /* generous: tests must not depend on scheduling under load */
                             .quiesce_timeout_usec = 3000000,
                             .state_dir = dir};
    assert_int_equal(rtcr_target_set_ckpt_params(t, &cp), 0);
    return t;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/rtcr-test-ckpt.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->ecu = new_ecu("ecu-a");
    f->brake = add(f->ecu, "brake", tu_target_path("brake"), 8u << 20, f->dir);
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

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_continuity_and_cap_space(void **state)
{
    struct fx *f = *state;
    static struct tu_caps before, after;
    rtcr_epoch_stats_t st;
    checkpoint_ok(f->brake, &st);
    assert_true(st.full);
    tu_sleep_ms(50);
    checkpoint_ok(f->brake, &st);
    assert_false(st.full);
    assert_int_equal(st.epoch, 2);
    assert_true(st.pages_written >= 1); /* the heap page with the counters */
    assert_int_equal(tu_caps_get(f->brake, &before), 0);
    long tick_ckpt, irq_ckpt;
    assert_true(tu_last_tick(f->brake, &tick_ckpt, &irq_ckpt));

    kill_wait(f->ecu, f->brake);
    char err[512];
    int r = rtcr_target_restore(f->brake, 0, err, sizeof(err));
    if (r < 0)
        fail_msg("restore failed: %s", err);
    assert_true(tu_wait_state(f->ecu, f->brake, RTCR_TARGET_RUNNING, 3000));

    /* counters continue from the checkpointed values, timers and IRQs keep arriving */
    assert_true(tu_wait_tick(f->brake, tick_ckpt + 20, irq_ckpt + 3, 5000) >= 0);
    struct mono m = {0, 0, 0};
    rtcr_target_foreach_log(f->brake, mono_line, &m);
    assert_true(m.n > 4);
    assert_int_equal(m.drops, 0);

    /* the cap space: the same slots with the same types, new badges on every gate */
    assert_int_equal(tu_caps_get(f->brake, &after), 0);
    assert_int_equal(before.n, after.n);
    unsigned gates = 0;
    for (unsigned i = 0; i < before.n; i++) {
        assert_int_equal(before.slot[i], after.slot[i]);
        assert_int_equal(before.type[i], after.type[i]);
        if (before.type[i] == RTCR_KOBJ_GATE) {
            assert_int_not_equal(after.badge[i], 0);
            assert_int_not_equal(before.badge[i], after.badge[i]);
            gates++;
        }
    }
    /* nothing missing: both entrypoints' gates and lock IRQs, both signal sources */
    for (unsigned ep = 0; ep < 2; ep++) {
        assert_int_equal(tu_caps_type_at(&after, RTCR_THREAD_SLOT(ep, RTCR_THREAD_GATE_OFF)),
                         RTCR_KOBJ_GATE);
        assert_int_equal(tu_caps_type_at(&after, RTCR_THREAD_SLOT(ep, RTCR_THREAD_IRQ_OFF)),
                         RTCR_KOBJ_IRQ);
    }
    unsigned irqs = 0;
    for (unsigned i = 0; i < after.n; i++)
        irqs += after.slot[i] >= RTCR_USER_BASE_CAP && after.type[i] == RTCR_KOBJ_IRQ;
    assert_int_equal(irqs, 2);
    assert_true(gates >= 12);

    /* the new incarnation's first epoch is full (3) and supersedes the files of 1 and 2 */
    checkpoint_ok(f->brake, &st);
    assert_true(st.full);
    assert_int_equal(st.epoch, 3);
    char path[512];
    for (unsigned e = 1; e <= 3; e++) {
        snprintf(path, sizeof(path), "%s/brake/epoch-%08u.rtcr", f->dir, e);
        assert_int_equal(access(path, F_OK) == 0, e == 3);
    }
}

static void test_badge_collision(void **state)
{
    struct fx *f = *state;
    static struct tu_caps before, after;
    rtcr_kernel_t *k = rtcr_ecu_kernel(f->ecu);
    checkpoint_ok(f->brake, NULL);
    assert_int_equal(tu_caps_get(f->brake, &before), 0);
    kill_wait(f->ecu, f->brake);
    /* other components of this ECU now hold every badge the target had */
    unsigned reserved = 0;
    for (unsigned i = 0; i < before.n; i++)
        if (before.badge[i] && rtcr_badge_reserve(k, before.badge[i]) == 0)
            reserved++;
    assert_true(reserved >= 12);
    char err[512];
    int r = rtcr_target_restore(f->brake, 0, err, sizeof(err));
    if (r < 0)
        fail_msg("restore failed: %s", err);
    assert_true(tu_wait_state(f->ecu, f->brake, RTCR_TARGET_RUNNING, 3000));
    assert_int_equal(tu_caps_get(f->brake, &after), 0);
    for (unsigned i = 0; i < after.n; i++)
        for (unsigned j = 0; j < before.n && after.badge[i]; j++)
            assert_int_not_equal(after.badge[i], before.badge[j]);
    long tick, irq;
    assert_true(tu_last_tick(f->brake, &tick, &irq));
    assert_true(tu_wait_tick(f->brake, tick + 10, irq + 1, 5000) >= 0);
    for (unsigned i = 0; i < before.n; i++)
        if (before.badge[i])
            rtcr_badge_free(k, before.badge[i]);
}

static bool memstates_equal(const rtcr_memstate_t *a, const rtcr_memstate_t *b)
{
    if (rtcr_memstate_count(a) != rtcr_memstate_count(b))
        return false;
    for (size_t i = 0; i < rtcr_memstate_count(a); i++) {
        uint32_t badge;
        uint64_t size, size_b;
        const uint8_t *da, *db;
        if (rtcr_memstate_get(a, i, &badge, &size, &da) < 0)
            return false;
        db = rtcr_memstate_find(b, badge, &size_b);
        if (!db || size != size_b || memcmp(da, db, size) != 0)
            return false;
    }
    return true;
}

static void test_chain_of_100_equals_compacted(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 100; i++) {
        checkpoint_ok(f->brake, NULL);
        tu_sleep_ms(3);
    }
    /* stop the target at once: ticks it logged after epoch 100 would be rolled back by the
     * restore below (and the work below takes seconds under valgrind) */
    long tick, irq;
    kill_wait(f->ecu, f->brake);
    assert_true(tu_last_tick(f->brake, &tick, &irq));
    const rtcr_image_t *img = rtcr_target_image(f->brake);
    assert_int_equal(rtcr_image_count(img), 100);
    assert_int_equal(rtcr_image_last(img), 100);
    rtcr_image_err_t ierr;
    rtcr_memstate_t *chain = NULL, *compacted = NULL;
    assert_int_equal(rtcr_image_materialize(img, 100, &ierr, &chain), 0);

    /* the same chain from the files, compacted into one full epoch */
    rtcr_image_t *copy = NULL;
    assert_int_equal(rtcr_image_load_dir(f->dir, "brake", NULL, &ierr, &copy), 0);
    assert_int_equal(rtcr_image_count(copy), 100);
    assert_int_equal(rtcr_image_compact(copy, 100, &ierr, NULL), 0);
    assert_int_equal(rtcr_image_count(copy), 1);
    assert_int_equal(rtcr_image_materialize(copy, 100, &ierr, &compacted), 0);
    assert_true(memstates_equal(chain, compacted));
    rtcr_memstate_destroy(&chain);
    rtcr_memstate_destroy(&compacted);

    /* and the target continues from the compacted image as from the chain */
    assert_int_equal(rtcr_target_adopt_image(f->brake, &copy), 0);
    assert_null(copy);
    char err[512];
    int r = rtcr_target_restore(f->brake, 0, err, sizeof(err));
    if (r < 0)
        fail_msg("restore from compacted image failed: %s", err);
    assert_true(tu_wait_tick(f->brake, tick + 10, irq + 1, 5000) >= 0);
    struct mono m = {0, 0, 0};
    rtcr_target_foreach_log(f->brake, mono_line, &m);
    assert_int_equal(m.drops, 0);
}

/* epoch files of target `name` in state dir `dir` */
static size_t count_files_of(const char *dir, const char *name)
{
    char path[512];
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d));)
        n += strncmp(de->d_name, "epoch-", 6) == 0;
    closedir(d);
    return n;
}

static size_t count_epoch_files(const char *dir)
{
    return count_files_of(dir, "brake");
}

/* max_chain 8: compaction runs on its own thread. The chain never holds more than 2 x 8
 * epochs, compactions commit, later epochs are written into containers of dropped ones, the
 * files follow the chain, a restore from the compacted chain continues, and the full epoch of
 * the next incarnation (which drops the chain) waits for a compaction still running. */
static void test_background_compaction(void **state)
{
    struct fx *f = *state;
    rtcr_ckpt_params_t cp = {.dirty_mode = -1,
                             .granularity = 4096,
                             .quiesce_timeout_usec = 3000000,
                             .state_dir = f->dir,
                             .max_chain = 8};
    assert_int_equal(rtcr_target_set_ckpt_params(f->brake, &cp), 0);
    size_t longest = 0, commits = 0, recycled = 0, started = 0, on_kept = 0;
    uint64_t prev_upto = 0;
    for (int i = 0; i < 60; i++) {
        rtcr_epoch_stats_t st;
        checkpoint_ok(f->brake, &st);
        size_t n = rtcr_image_count(rtcr_target_image(f->brake));
        longest = n > longest ? n : longest;
        started += st.compact_started;
        recycled += st.recycled;
        if (st.compacted_upto) {
            /* every compaction after the first decodes only what came since the last one */
            assert_true(st.compact_on_kept == (commits > 0));
            on_kept += st.compact_on_kept;
            commits++;
            assert_true(st.compacted_upto > prev_upto);
            assert_true(st.compacted_upto < st.epoch);
            prev_upto = st.compacted_upto;
            assert_int_equal(rtcr_image_first(rtcr_target_image(f->brake)), st.compacted_upto);
        }
        tu_sleep_ms(2);
    }
    assert_true(longest <= 16);
    assert_true(commits >= 2);
    assert_int_equal(on_kept, commits - 1);
    assert_true(started >= commits);
    assert_true(recycled >= 1);
    const rtcr_image_t *img = rtcr_target_image(f->brake);
    rtcr_image_err_t ierr;
    assert_int_equal(rtcr_image_check(img, &ierr), 0);
    assert_int_equal(rtcr_image_first(img), prev_upto);
    assert_true(rtcr_epoch_header(rtcr_image_epoch(img, prev_upto))->compacted_from > 0);
    assert_true(count_epoch_files(f->dir) <= 17);

    long tick, irq;
    kill_wait(f->ecu, f->brake);
    assert_true(tu_last_tick(f->brake, &tick, &irq));
    char err[512];
    int r = rtcr_target_restore(f->brake, 0, err, sizeof(err));
    if (r < 0)
        fail_msg("restore from the compacted chain failed: %s", err);
    assert_true(tu_wait_tick(f->brake, tick + 5, irq + 1, 5000) >= 0);
    rtcr_epoch_stats_t st;
    checkpoint_ok(f->brake, &st); /* a full epoch: the chain is replaced */
    assert_true(st.full);
    assert_int_equal(rtcr_image_count(rtcr_target_image(f->brake)), 1);
    struct mono m = {0, 0, 0};
    rtcr_target_foreach_log(f->brake, mono_line, &m);
    assert_int_equal(m.drops, 0);
}

/* memwriter's newest "periods=<n>" from its LOG, -1 if none yet. */
static int periods_line(void *ctx, const char *line)
{
    if (strncmp(line, "periods=", strlen("periods=")) == 0)
        *(long *)ctx = strtol(line + strlen("periods="), NULL, 10);
    return 0;
}

static long mw_periods(rtcr_target_t *t)
{
    long n = -1;
    rtcr_target_foreach_log(t, periods_line, &n);
    return n;
}

/* The full epoch of a compaction cannot be written, for real: the process may not write
 * files larger than the incremental epochs (RLIMIT_FSIZE, which binds root as well; SIGXFSZ
 * ignored so that write(2) fails with EFBIG). The target is memwriter with 1 MiB of
 * heap-like data (a full epoch of about 600 KiB) that dirties a page every 5 ms (incremental
 * epochs of a few KiB). The failure is reported by rtcr_target_compaction_info with a message
 * naming the epochs, the epoch files on disk stay a complete chain that restores, and once
 * files may grow again the next compaction commits. */
static void test_compaction_write_fails(void **state)
{
    struct fx *f = *state;
    char params[128];
    snprintf(params, sizeof(params), "%s/mw.params", f->dir);
    FILE *pf = fopen(params, "w");
    assert_non_null(pf);
    fputs("mem_mib=1\ndirty_kib=4\nperiod_us=5000\nreport_ms=20\n", pf);
    assert_int_equal(fclose(pf), 0);
    rtcr_rom_spec_t rom = {.name = "params", .path = params};
    rtcr_target_spec_t spec = {.name = "mw",
                               .binary = tu_target_path("memwriter"),
                               .ram_quota = 8u << 20,
                               .cap_limit = 512,
                               .roms = &rom,
                               .n_roms = 1};
    rtcr_target_t *t = NULL;
    assert_int_equal(rtcr_ecu_add_target(f->ecu, &spec, &t), 0);
    rtcr_ckpt_params_t cp = {.dirty_mode = -1,
                             .granularity = 4096,
                             .quiesce_timeout_usec = 3000000,
                             .state_dir = f->dir,
                             .max_chain = 4};
    assert_int_equal(rtcr_target_set_ckpt_params(t, &cp), 0);
    rtcr_compaction_info_t ci;
    assert_int_equal(rtcr_target_compaction_info(t, &ci), 0);
    assert_int_equal(ci.last, RTCR_COMPACTION_NONE);
    assert_int_equal(ci.started, 0);
    assert_false(ci.running);
    assert_string_equal(ci.error, "");
    assert_int_equal(ci.max_chain, 4);
    assert_int_equal(ci.chain_epochs, 0);
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(tu_wait_state(f->ecu, t, RTCR_TARGET_RUNNING, 5000));

    rtcr_epoch_stats_t st;
    uint64_t full_bytes = 0, inc_max = 0;
    for (int i = 0; i < 4; i++) { /* epochs 1..4: no compaction yet */
        tu_sleep_ms(10);
        checkpoint_ok(t, &st);
        assert_false(st.compact_started);
        if (st.full)
            full_bytes = st.bytes_stored;
        else if (st.bytes_stored > inc_max)
            inc_max = st.bytes_stored;
    }
    /* incremental epochs fit under the limit, a full epoch of the target does not */
    rlim_t limit = (rlim_t)(inc_max * 4 > 65536 ? inc_max * 4 : 65536);
    if (full_bytes <= 2 * limit)
        fail_msg("the full epoch (%llu bytes) must be well above the limit (%llu bytes)",
                 (unsigned long long)full_bytes, (unsigned long long)limit);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_sa;
    assert_int_equal(sigaction(SIGXFSZ, &ign, &old_sa), 0);
    struct rlimit lim = {limit, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    tu_sleep_ms(10);
    checkpoint_ok(t, &st); /* epoch 5: the chain is too long */
    assert_true(st.compact_started);
    assert_int_equal(rtcr_target_compaction_info(t, &ci), 0);
    assert_true(ci.running); /* until a checkpoint (or the wait) finishes it */
    assert_int_equal(ci.running_from, 1);
    assert_int_equal(ci.running_upto, 5);
    assert_true(ci.running_since_usec > 0);
    assert_int_equal(ci.started, 1);
    assert_int_equal(ci.chain_epochs, 5);
    uint64_t upto = rtcr_target_compact_wait(t);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(sigaction(SIGXFSZ, &old_sa, NULL), 0);

    assert_int_equal(rtcr_target_compaction_info(t, &ci), 0);
    assert_false(ci.running);
    assert_int_equal(ci.last, RTCR_COMPACTION_UNWRITTEN);
    assert_string_equal(rtcr_compaction_outcome_name(ci.last), "unwritten");
    assert_int_equal(ci.last_from, 1);
    assert_int_equal(ci.last_upto, 5);
    assert_true(ci.last_end_usec > 0);
    assert_int_equal(ci.started, 1);
    assert_int_equal(ci.committed, 0);
    assert_int_equal(ci.failed, 1);
    assert_int_equal(ci.discarded, 0);
    assert_true(ci.error_usec > 0);
    if (!strstr(ci.error, "compaction of epochs 1..5: full epoch 5 not written") ||
        !strstr(ci.error, strerror(EFBIG)))
        fail_msg("unexpected compaction error: %s", ci.error);
    /* in memory the full epoch serves (memory stays bounded) ... */
    assert_int_equal(upto, 5);
    const rtcr_image_t *img = rtcr_target_image(t);
    rtcr_image_err_t ierr;
    assert_int_equal(rtcr_image_check(img, &ierr), 0);
    assert_int_equal(rtcr_image_first(img), 5);
    /* ... and the state dir still holds the chain 1..5, complete, with the same memory */
    assert_int_equal(count_files_of(f->dir, "mw"), 5);
    rtcr_image_t *disk = NULL;
    assert_int_equal(rtcr_image_load_dir(f->dir, "mw", NULL, &ierr, &disk), 0);
    assert_int_equal(rtcr_image_first(disk), 1);
    assert_int_equal(rtcr_image_last(disk), 5);
    rtcr_memstate_t *mem_disk = NULL, *mem_img = NULL;
    assert_int_equal(rtcr_image_materialize(disk, 5, &ierr, &mem_disk), 0);
    assert_int_equal(rtcr_image_materialize(img, 5, &ierr, &mem_img), 0);
    assert_true(memstates_equal(mem_disk, mem_img));
    rtcr_memstate_destroy(&mem_disk);
    rtcr_memstate_destroy(&mem_img);
    rtcr_image_destroy(&disk);

    /* the cause is gone: a later checkpoint starts a compaction that commits and prunes */
    uint64_t committed_upto = 0;
    for (int i = 0; i < 12 && !committed_upto; i++) {
        tu_sleep_ms(10);
        checkpoint_ok(t, &st);
        committed_upto = st.compacted_upto;
        if (!committed_upto && st.compact_started)
            committed_upto = rtcr_target_compact_wait(t);
    }
    assert_true(committed_upto > 5);
    assert_int_equal(rtcr_target_compaction_info(t, &ci), 0);
    assert_int_equal(ci.last, RTCR_COMPACTION_COMMITTED);
    assert_int_equal(ci.last_upto, committed_upto);
    assert_int_equal(ci.started, 2);
    assert_int_equal(ci.committed, 1);
    assert_int_equal(ci.failed, 1);
    assert_true(strstr(ci.error, "full epoch 5 not written") != NULL); /* the last failure */
    img = rtcr_target_image(t);
    assert_int_equal(rtcr_image_first(img), committed_upto);
    assert_int_equal(count_files_of(f->dir, "mw"), rtcr_image_count(img));

    /* and the target continues from the chain the files hold */
    long before = mw_periods(t);
    assert_true(before > 0);
    kill_wait(f->ecu, t);
    char err[512];
    assert_int_equal(rtcr_target_load_image(t, err, sizeof(err)), 0);
    int r = rtcr_target_restore(t, 0, err, sizeof(err));
    if (r < 0)
        fail_msg("restore after the failed compaction failed: %s", err);
    long after = -1;
    for (int i = 0; i < 500 && after <= before; i++) {
        tu_sleep_ms(10);
        after = mw_periods(t);
    }
    assert_true(after > before);
}

static void corrupt_file(const char *dir, uint64_t epoch, bool truncate_it)
{
    char path[512];
    assert_int_equal(rtcr_image_epoch_path(dir, "brake", epoch, path, sizeof(path)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if (truncate_it) {
        assert_int_equal(truncate(path, st.st_size / 2), 0);
        return;
    }
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    off_t at = st.st_size - 100; /* inside the page data */
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

static void test_corrupt_truncated_foreign_images(void **state)
{
    struct fx *f = *state;
    char err[512];
    for (int i = 0; i < 4; i++) {
        checkpoint_ok(f->brake, NULL);
        tu_sleep_ms(20);
    }
    kill_wait(f->ecu, f->brake);

    /* a corrupt newest epoch: the good prefix 1..3 is used, the error names epoch 4 */
    corrupt_file(f->dir, 4, false);
    assert_int_equal(rtcr_target_load_image(f->brake, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "4"));
    assert_int_equal(rtcr_image_last(rtcr_target_image(f->brake)), 3);
    assert_int_equal(rtcr_target_restore(f->brake, 4, err, sizeof(err)), -ENOENT);
    assert_int_equal(rtcr_target_pid(f->brake), 0);
    assert_int_equal(rtcr_target_restore(f->brake, 0, err, sizeof(err)), 0);
    assert_true(tu_wait_state(f->ecu, f->brake, RTCR_TARGET_RUNNING, 3000));
    kill_wait(f->ecu, f->brake);

    /* a truncated epoch 2: only epoch 1 is left */
    corrupt_file(f->dir, 2, true);
    assert_int_equal(rtcr_target_load_image(f->brake, err, sizeof(err)), 1);
    assert_int_equal(rtcr_image_last(rtcr_target_image(f->brake)), 1);

    /* another ECU with a different binary under the same name: refused by build id; one with
     * too little RAM: refused by quota; nothing half-restored runs, the image stays */
    rtcr_ecu_t *b = new_ecu("ecu-b");
    rtcr_target_t *foreign = add(b, "brake", tu_target_path("logger"), 8u << 20, f->dir);
    assert_true(rtcr_target_load_image(foreign, err, sizeof(err)) >= 0);
    int r = rtcr_target_restore(foreign, 0, err, sizeof(err));
    assert_int_equal(r, -EXDEV);
    assert_non_null(strstr(err, "build id"));
    assert_non_null(strstr(err, "epoch 1"));
    assert_int_equal(rtcr_target_pid(foreign), 0);
    assert_int_equal(rtcr_image_count(rtcr_target_image(foreign)), 1);

    rtcr_target_t *small = add(b, "brake2", tu_target_path("brake"), 64u << 10, f->dir);
    rtcr_image_t *img = NULL;
    rtcr_image_err_t ierr;
    assert_true(rtcr_image_load_dir(f->dir, "brake", NULL, &ierr, &img) >= 0);
    assert_int_equal(rtcr_target_adopt_image(small, &img), -EINVAL); /* another name */
    rtcr_image_destroy(&img);
    rtcr_ecu_destroy(&b);

    /* the base itself corrupt: nothing to restore from */
    corrupt_file(f->dir, 1, false);
    r = rtcr_target_load_image(f->brake, err, sizeof(err));
    assert_true(r < 0);
    assert_int_equal(rtcr_target_state(f->brake), RTCR_TARGET_FAILED);
}

static void test_restore_on_another_ecu(void **state)
{
    struct fx *f = *state;
    char err[512];
    checkpoint_ok(f->brake, NULL);
    tu_sleep_ms(30);
    checkpoint_ok(f->brake, NULL);
    long tick, irq;
    assert_true(tu_last_tick(f->brake, &tick, &irq));
    kill_wait(f->ecu, f->brake);

    rtcr_ecu_t *b = new_ecu("ecu-b");
    rtcr_target_t *t = add(b, "brake", tu_target_path("brake"), 8u << 20, f->dir);
    assert_int_equal(rtcr_target_load_image(t, err, sizeof(err)), 0);
    int r = rtcr_target_restore(t, 0, err, sizeof(err));
    if (r < 0)
        fail_msg("restore on ecu-b failed: %s", err);
    assert_true(tu_wait_state(b, t, RTCR_TARGET_RUNNING, 3000));
    for (int i = 0; i < 200 && tu_wait_tick(t, tick + 1, 0, 0) < 0; i++)
        tu_sleep_ms(10);
    long t2, i2;
    assert_true(tu_last_tick(t, &t2, &i2));
    assert_true(t2 > tick);
    assert_true(i2 >= irq); /* ecu-b has no sensor: the count stays where it was */

    /* too little RAM on this ECU: refused, nothing runs */
    rtcr_target_t *small = add(b, "brake-small", tu_target_path("brake"), 64u << 10, NULL);
    rtcr_image_t *img = NULL;
    rtcr_image_err_t ierr;
    assert_int_equal(rtcr_image_load_dir(f->dir, "brake", NULL, &ierr, &img), 0);
    (void)small;
    rtcr_image_destroy(&img);
    rtcr_ecu_t *c = new_ecu("ecu-c");
    rtcr_target_t *tiny = add(c, "brake", tu_target_path("brake"), 64u << 10, f->dir);
    assert_int_equal(rtcr_target_load_image(tiny, err, sizeof(err)), 0);
    assert_int_equal(rtcr_target_restore(tiny, 0, err, sizeof(err)), -EDQUOT);
    assert_non_null(strstr(err, "quota"));
    assert_int_equal(rtcr_target_pid(tiny), 0);
    rtcr_ecu_destroy(&c);
    rtcr_ecu_destroy(&b);
}

struct spin_count {
    int spin; /* "spinning" lines */
    int idle; /* "idle" lines */
};

static int count_spin(void *ctx, const char *line)
{
    struct spin_count *c = ctx;
    c->spin += strcmp(line, "spinning") == 0;
    c->idle += strncmp(line, "idle n=", 7) == 0;
    return 0;
}

static void test_quiesce_timeout(void **state)
{
    (void)state;
    rtcr_ecu_t *ecu = new_ecu("ecu-q");
    rtcr_target_t *t = add(ecu, "spinner", tu_target_path("spinner"), 4u << 20, NULL);
    rtcr_ckpt_params_t cp = {.dirty_mode = -1, .granularity = 4096, .quiesce_timeout_usec = 100000};
    assert_int_equal(rtcr_target_set_ckpt_params(t, &cp), 0);
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(tu_wait_state(ecu, t, RTCR_TARGET_RUNNING, 3000));
    /* wait for a spin to start, then try */
    bool spinning = false;
    for (int i = 0; i < 400 && !spinning; i++) {
        struct spin_count c = {0, 0};
        rtcr_target_foreach_log(t, count_spin, &c);
        spinning = c.spin > c.idle;
        tu_sleep_ms(10);
    }
    assert_true(spinning);
    char err[512] = "";
    rtcr_epoch_stats_t st;
    assert_int_equal(rtcr_target_checkpoint(t, &st, err, sizeof(err)), -ETIMEDOUT);
    assert_non_null(strstr(err, "did not quiesce"));
    assert_non_null(strstr(err, "main"));
    assert_null(rtcr_target_image(t));
    /* it keeps running, and once it waits again a checkpoint succeeds */
    assert_int_equal(rtcr_target_state(t), RTCR_TARGET_RUNNING);
    cp.quiesce_timeout_usec = 3000000;
    assert_int_equal(rtcr_target_set_ckpt_params(t, &cp), 0);
    assert_int_equal(rtcr_target_checkpoint(t, &st, err, sizeof(err)), 0);
    assert_true(st.full);
    rtcr_ecu_destroy(&ecu);
}

/* encode_idle: the epoch is encoded at SCHED_IDLE and the caller's policy comes back after;
 * a caller that chose another policy (here SCHED_BATCH) keeps it and is not switched. */
static void test_encode_idle(void **state)
{
    (void)state;
    rtcr_ecu_params_t p = {
        .name = "ecu-idle", .ram_total = 1u << 30, .log_lines = 100, .encode_idle = true};
    rtcr_ecu_t *ecu = NULL;
    assert_int_equal(rtcr_ecu_new(&p, &ecu), 0);
    const char *why = NULL;
    bool idle = rtcr_ecu_encode_idle(ecu, &why);
    assert_true(idle || why); /* off only with a reason (an unprivileged run) */
    rtcr_target_t *t = add(ecu, "brake", tu_target_path("brake"), 8u << 20, NULL);
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(tu_wait_tick(t, 3, 0, 5000) >= 3);
    char err[256] = "";
    rtcr_epoch_stats_t st;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rtcr_target_checkpoint(t, &st, err, sizeof(err)), 0);
        assert_int_equal(st.encoded_idle, idle);
        assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
        /* the thread's CPU time for the encoding: some, never more than the wall time */
        assert_true(st.encode_cpu_usec <= st.encode_usec + 2);
        if (st.full)
            assert_true(st.encode_cpu_usec > 0);
    }
    struct sched_param zero = {0};
    assert_int_equal(pthread_setschedparam(pthread_self(), SCHED_BATCH, &zero), 0);
    assert_int_equal(rtcr_target_checkpoint(t, &st, err, sizeof(err)), 0);
    assert_false(st.encoded_idle);
    assert_int_equal(sched_getscheduler(0), SCHED_BATCH);
    assert_int_equal(pthread_setschedparam(pthread_self(), SCHED_OTHER, &zero), 0);
    assert_int_equal(rtcr_image_last(rtcr_target_image(t)), 4);
    rtcr_ecu_destroy(&ecu);

    /* not asked: never */
    ecu = new_ecu("ecu-noidle");
    assert_false(rtcr_ecu_encode_idle(ecu, &why));
    assert_null(why);
    t = add(ecu, "brake", tu_target_path("brake"), 8u << 20, NULL);
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(tu_wait_tick(t, 3, 0, 5000) >= 3);
    assert_int_equal(rtcr_target_checkpoint(t, &st, err, sizeof(err)), 0);
    assert_false(st.encoded_idle);
    rtcr_ecu_destroy(&ecu);
}

static void test_not_running(void **state)
{
    struct fx *f = *state;
    char err[256];
    assert_int_equal(rtcr_target_restore(f->brake, 0, err, sizeof(err)), -EBUSY);
    assert_int_equal(rtcr_target_stop(f->brake), 0);
    assert_int_equal(rtcr_target_checkpoint(f->brake, NULL, err, sizeof(err)), -ESRCH);
    assert_int_equal(rtcr_target_restore(f->brake, 0, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "no image"));
}

/* ---- logger: one-shot timers re-armed from its handler, RAM churn and a user signal to a
 * second entrypoint, through two rounds of checkpoint, kill and restore ------------------ */

struct lfx {
    rtcr_ecu_t *ecu;  /* the ECU */
    rtcr_target_t *t; /* logger */
    char dir[64];     /* state dir */
};

static int logger_setup(void **state)
{
    struct lfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/rtcr-test-ckpt-logger.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->ecu = new_ecu("ecu-l");
    f->t = add(f->ecu, "logger", tu_target_path("logger"), 8u << 20, f->dir);
    *state = f;
    return 0;
}

static int logger_teardown(void **state)
{
    struct lfx *f = *state;
    rtcr_ecu_destroy(&f->ecu);
    rm_dir(f->dir);
    free(f);
    return 0;
}

/* What the logger's LOG says: its newest round, rounds whose RAM churn failed, and the
 * newest round after which the audit entrypoint handled a signal. */
struct rounds {
    long last;        /* highest "round=<n>", -1 if none */
    long bad;         /* rounds whose verdict was not "ram ok" */
    long audit_after; /* highest "audit <k> after round <n>", -1 if none */
};

/* A LOG line is the target's text as it wrote it (no name prefix), so each pattern is
 * matched from the start of the line. */
static int round_line(void *ctx, const char *line)
{
    struct rounds *r = ctx;
    long n, k;
    if (sscanf(line, "round=%ld", &n) == 1) {
        if (n > r->last)
            r->last = n;
        r->bad += strstr(line, "(ram ok)") == NULL;
    } else if (sscanf(line, "audit %ld after round %ld", &k, &n) == 2 && n > r->audit_after) {
        r->audit_after = n;
    }
    return 0;
}

static struct rounds logger_rounds(rtcr_target_t *t)
{
    struct rounds r = {-1, 0, -1};
    rtcr_target_foreach_log(t, round_line, &r);
    return r;
}

static int print_line(void *ctx, const char *line)
{
    (void)ctx;
    print_message("  | %s\n", line);
    return 0;
}

/* Wait (bounded) until the logger logged round >= min_round and an audit after a round >=
 * min_audit (-1: none needed); returns what it logged by then. */
static struct rounds wait_rounds(rtcr_target_t *t, long min_round, long min_audit,
                                 unsigned timeout_ms)
{
    struct rounds r = logger_rounds(t);
    for (unsigned waited = 0;
         (r.last < min_round || r.audit_after < min_audit) && waited < timeout_ms; waited += 10) {
        tu_sleep_ms(10);
        r = logger_rounds(t);
    }
    return r;
}

static void logger_restores(struct lfx *f, bool standby)
{
    rtcr_ckpt_params_t cp = {.dirty_mode = -1,
                             .granularity = 4096,
                             .quiesce_timeout_usec = 3000000,
                             .state_dir = f->dir,
                             .standby = standby};
    assert_int_equal(rtcr_target_set_ckpt_params(f->t, &cp), 0);
    assert_int_equal(rtcr_target_start(f->t), 0);
    assert_true(tu_wait_state(f->ecu, f->t, RTCR_TARGET_RUNNING, 3000));
    assert_true(wait_rounds(f->t, 3, -1, 5000).last >= 3);

    /* twice: checkpoint, kill, restore; the restored logger must go on round after round. It
     * repeats at most the rounds logged between the checkpoint and the kill, so rounds beyond
     * the newest one logged before the kill are its own progress. Each round allocates a
     * dataspace (a receive window in the cap map) and re-arms the one-shot timer; an audit
     * signal goes to the second entrypoint every 10 rounds. */
    for (int pass = 1; pass <= 2; pass++) {
        checkpoint_ok(f->t, NULL);
        assert_int_equal(rtcr_target_kill(f->t), 0);
        assert_true(tu_wait_state(f->ecu, f->t, RTCR_TARGET_FAILED, 3000));
        long at_kill = logger_rounds(f->t).last;
        assert_true(at_kill >= 3);
        char err[512];
        int r = rtcr_target_restore(f->t, 0, err, sizeof(err));
        if (r < 0)
            fail_msg("restore %d of logger failed: %s", pass, err);
        assert_true(tu_wait_state(f->ecu, f->t, RTCR_TARGET_RUNNING, 3000));
        rtcr_standby_info_t si;
        assert_int_equal(rtcr_target_standby_info(f->t, &si), 0);
        assert_int_equal(si.last_restore, standby ? RTCR_RESTORE_STANDBY : RTCR_RESTORE_DECODE);
        /* the second time also a round that signals the audit entrypoint */
        long audit = pass == 2 ? (at_kill / 10 + 1) * 10 : -1;
        struct rounds got = wait_rounds(f->t, at_kill + 3, audit, 8000);
        if (got.last < at_kill + 3 || got.audit_after < audit) {
            rtcr_target_foreach_log(f->t, print_line, NULL);
            fail_msg("restore %d (%s): logger stopped at round %ld (killed at %ld), newest "
                     "audit after round %ld (expected %ld)",
                     pass, standby ? "standby" : "decode", got.last, at_kill, got.audit_after,
                     audit);
        }
        assert_int_equal(got.bad, 0);
    }
}

static void test_logger_continues_after_restore(void **state)
{
    logger_restores(*state, false);
}

static void test_logger_continues_after_standby_restore(void **state)
{
    logger_restores(*state, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_continuity_and_cap_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_badge_collision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_of_100_equals_compacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_write_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_truncated_foreign_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_on_another_ecu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_running, setup, teardown),
        cmocka_unit_test(test_quiesce_timeout),
        cmocka_unit_test(test_encode_idle),
        cmocka_unit_test_setup_teardown(test_logger_continues_after_restore, logger_setup,
                                        logger_teardown),
        cmocka_unit_test_setup_teardown(test_logger_continues_after_standby_restore, logger_setup,
                                        logger_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
