/* ckpt_helpers.h — cmocka helpers shared by the unit tests that checkpoint and restore real
 * targets (test_ckpt.c, test_standby.c). Include after <cmocka.h> and "../lib/target_util.h". */
#ifndef RTCR_TEST_CKPT_HELPERS_H
#define RTCR_TEST_CKPT_HELPERS_H

#include <stdio.h>
#include <stdlib.h>

#include <rtcr/ecu.h>

/* One epoch of t now; fails the test with the library's message otherwise. */
static inline void checkpoint_ok(rtcr_target_t *t, rtcr_epoch_stats_t *st)
{
    char err[512] = "";
    rtcr_epoch_stats_t local;
    int r = rtcr_target_checkpoint(t, st ? st : &local, err, sizeof(err));
    if (r < 0)
        fail_msg("checkpoint failed: %d %s", r, err);
}

/* SIGKILL the target and wait (a bound, not a timing check) until the ECU reports it failed. */
static inline void kill_wait(rtcr_ecu_t *ecu, rtcr_target_t *t)
{
    assert_int_equal(rtcr_target_kill(t), 0);
    assert_true(tu_wait_state(ecu, t, RTCR_TARGET_FAILED, 10000));
}

/* rtcr_target_foreach_log callback: all tick values in the LOG, in order, never decrease (a
 * restart from zero would). Start with struct mono m = {0, 0, 0}; expect m.drops == 0. */
struct mono {
    long prev;  /* previous tick */
    long drops; /* decreases seen */
    long n;     /* tick lines */
};

static inline int mono_line(void *ctx, const char *line)
{
    struct mono *m = ctx;
    long tick, irq;
    if (sscanf(line, "tick=%ld irq=%ld", &tick, &irq) == 2) {
        if (tick < m->prev)
            m->drops++;
        m->prev = tick;
        m->n++;
    }
    return 0;
}

/* Remove a test's state directory tree. */
static inline void rm_dir(const char *dir)
{
    char cmd[256];
    assert_true(snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) < (int)sizeof(cmd));
    assert_int_equal(system(cmd), 0);
}

#endif
