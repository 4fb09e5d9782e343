/* test_ecu.c — the ECU runtime with real target processes (no agent): start `brake`, see its
 * LOG lines, its cap-space layout, IRQ delivery, kill and reap. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <rtcr/ecu.h>

static char brake_path[256];

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

struct last_line {
    char line[256];
    unsigned n;
};

static int grab_last(void *ctx, const char *line)
{
    struct last_line *l = ctx;
    if (strncmp(line, "tick=", 5) == 0) {
        snprintf(l->line, sizeof(l->line), "%s", line);
        l->n++;
    }
    return 0;
}

/* wait until the target logged a tick line with irq >= min_irq; returns tick */
static long wait_tick(rtcr_target_t *t, long min_tick, long min_irq, unsigned timeout_ms)
{
    for (unsigned waited = 0; waited < timeout_ms; waited += 10) {
        struct last_line l = {{0}, 0};
        rtcr_target_foreach_log(t, grab_last, &l);
        long tick, irq;
        if (l.n && sscanf(l.line, "tick=%ld irq=%ld", &tick, &irq) == 2 && tick >= min_tick &&
            irq >= min_irq)
            return tick;
        sleep_ms(10);
    }
    return -1;
}

struct caps {
    unsigned n;
    unsigned slot[4096];
    enum rtcr_kobj_type type[4096];
    rtcr_badge_t badge[4096];
};

static int collect(void *ctx, const rtcr_cap_info_t *c)
{
    struct caps *cs = ctx;
    cs->slot[cs->n] = c->slot;
    cs->type[cs->n] = c->type;
    cs->badge[cs->n] = c->badge;
    cs->n++;
    return 0;
}

static enum rtcr_kobj_type type_at(const struct caps *cs, unsigned slot)
{
    for (unsigned i = 0; i < cs->n; i++)
        if (cs->slot[i] == slot)
            return cs->type[i];
    return RTCR_KOBJ_NONE;
}

static void test_brake_runs(void **state)
{
    (void)state;
    rtcr_ecu_params_t p = {.name = "ecu-test", .ram_total = 256u << 20, .log_lines = 64};
    rtcr_ecu_t *ecu = NULL;
    assert_int_equal(rtcr_ecu_new(&p, &ecu), 0);
    rtcr_target_spec_t spec = {
        .name = "brake", .binary = brake_path, .ram_quota = 8u << 20, .cap_limit = 512};
    rtcr_target_t *t = NULL;
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, &t), 0);
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, NULL), -EEXIST);
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(rtcr_target_pid(t) > 0);

    long tick = wait_tick(t, 10, 0, 5000);
    assert_true(tick >= 10);
    assert_int_equal(rtcr_target_state(t), RTCR_TARGET_RUNNING);

    /* interrupts on line 5 reach the IRQ session and are counted */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(rtcr_ecu_irq_fire(ecu, 5), 1);
        sleep_ms(3);
    }
    assert_int_equal(rtcr_ecu_irq_fire(ecu, 7), 0);
    assert_int_equal(rtcr_ecu_irq_fire(ecu, 4096), -ERANGE);
    assert_true(wait_tick(t, tick, 10, 3000) >= 0);

    /* cap-space layout as in base-foc: task 1, parent 8, thread triples from 9, own from 0x200 */
    static struct caps cs;
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(rtcr_target_foreach_cap(t, collect, &cs), 0);
    assert_int_equal(type_at(&cs, 1), RTCR_KOBJ_TASK);
    assert_int_equal(type_at(&cs, 8), RTCR_KOBJ_GATE);
    for (unsigned i = 0; i < 2; i++) { /* main and the "status" entrypoint */
        assert_int_equal(type_at(&cs, RTCR_THREAD_SLOT(i, RTCR_THREAD_GATE_OFF)), RTCR_KOBJ_GATE);
        assert_int_equal(type_at(&cs, RTCR_THREAD_SLOT(i, RTCR_THREAD_IRQ_OFF)), RTCR_KOBJ_IRQ);
        assert_int_not_equal(type_at(&cs, RTCR_THREAD_SLOT(i, RTCR_THREAD_PAGER_OFF)),
                             RTCR_KOBJ_NONE);
    }
    for (unsigned s = 2; s < 8; s++)
        assert_int_equal(type_at(&cs, s), RTCR_KOBJ_NONE);
    unsigned own_gates = 0, own_irqs = 0;
    for (unsigned i = 0; i < cs.n; i++) {
        if (cs.slot[i] < RTCR_USER_BASE_CAP)
            continue;
        own_gates += cs.type[i] == RTCR_KOBJ_GATE;
        own_irqs += cs.type[i] == RTCR_KOBJ_IRQ;
        if (cs.type[i] == RTCR_KOBJ_GATE)
            assert_int_equal(cs.badge[i] & 3u, 0);
    }
    /* sessions PD RAM RM CPU LOG Timer IRQ ROM?, root + heap dataspaces, 2 contexts, 1 RPC */
    assert_true(own_gates >= 10);
    assert_int_equal(own_irqs, 2); /* the signal sources of the two entrypoints */

    /* a crash: the target is failed with its signal, the ECU keeps going */
    pid_t pid = rtcr_target_pid(t);
    assert_int_equal(rtcr_target_kill(t), 0);
    for (int i = 0; i < 200 && rtcr_target_state(t) != RTCR_TARGET_FAILED; i++) {
        rtcr_ecu_reap(ecu);
        sleep_ms(10);
    }
    assert_int_equal(rtcr_target_state(t), RTCR_TARGET_FAILED);
    assert_int_equal(rtcr_target_exit_status(t), -SIGKILL);
    assert_non_null(strstr(rtcr_target_failure(t), "signal 9"));
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(rtcr_target_kill(t), -ESRCH);

    /* and it can be started again, fresh */
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(wait_tick(t, 5, 0, 5000) >= 5);
    assert_int_equal(rtcr_target_restarts(t), 1);
    assert_int_equal(rtcr_target_stop(t), 0);
    assert_int_equal(rtcr_target_state(t), RTCR_TARGET_STOPPED);
    rtcr_ecu_destroy(&ecu);
    assert_null(ecu);
}

static void test_bad_specs(void **state)
{
    (void)state;
    rtcr_ecu_params_t p = {.name = "ecu-test", .ram_total = 1u << 30};
    rtcr_ecu_t *ecu = NULL;
    assert_int_equal(rtcr_ecu_new(&p, &ecu), 0);
    rtcr_target_spec_t spec = {
        .name = "x", .binary = "/nonexistent/brake", .ram_quota = 1u << 20, .cap_limit = 64};
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, NULL), -ENOENT);
    spec.binary = brake_path;
    spec.cap_limit = 5000;
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, NULL), -EINVAL);
    spec.cap_limit = 64;
    spec.ram_quota = 0;
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, NULL), -EINVAL);
    spec.ram_quota = 1u << 20;
    spec.name = "bad/name";
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, NULL), -EINVAL);
    rtcr_ecu_destroy(&ecu);
}

int main(void)
{
    const char *b = getenv("B");
    snprintf(brake_path, sizeof(brake_path), "%s/targets/brake", b && *b ? b : "build");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_brake_runs),
        cmocka_unit_test(test_bad_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
