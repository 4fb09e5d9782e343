/* test_ecu.c — the ECU runtime with real target processes (no agent): start `brake`, see its
 * LOG lines, its cap-space layout, IRQ delivery, kill and reap. */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
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

#include "../../rtcr-core/src/ecu_internal.h"

#include "../lib/target_util.h"

/* the brake target with 8 MiB of RAM and 512 capabilities */
static rtcr_target_spec_t brake_spec(void)
{
    return (rtcr_target_spec_t){.name = "brake",
                                .binary = tu_target_path("brake"),
                                .ram_quota = 8u << 20,
                                .cap_limit = 512};
}

static void test_brake_runs(void **state)
{
    (void)state;
    rtcr_ecu_params_t p = {.name = "ecu-test", .ram_total = 256u << 20, .log_lines = 64};
    rtcr_ecu_t *ecu = NULL;
    assert_int_equal(rtcr_ecu_new(&p, &ecu), 0);
    rtcr_target_spec_t spec = brake_spec();
    rtcr_target_t *t = NULL;
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, &t), 0);
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, NULL), -EEXIST);
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(rtcr_target_pid(t) > 0);

    long tick = tu_wait_tick(t, 10, 0, 5000);
    assert_true(tick >= 10);
    assert_int_equal(rtcr_target_state(t), RTCR_TARGET_RUNNING);

    /* interrupts on line 5 reach the IRQ session and are counted */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(rtcr_ecu_irq_fire(ecu, 5), 1);
        tu_sleep_ms(3);
    }
    assert_int_equal(rtcr_ecu_irq_fire(ecu, 7), 0);
    assert_int_equal(rtcr_ecu_irq_fire(ecu, 4096), -ERANGE);
    assert_true(tu_wait_tick(t, tick, 10, 3000) >= 0);

    /* cap-space layout as in base-foc: task 1, parent 8, thread triples from 9, own from 0x200 */
    static struct tu_caps cs;
    assert_int_equal(tu_caps_get(t, &cs), 0);
    assert_int_equal(tu_caps_type_at(&cs, 1), RTCR_KOBJ_TASK);
    assert_int_equal(tu_caps_type_at(&cs, 8), RTCR_KOBJ_GATE);
    for (unsigned i = 0; i < 2; i++) { /* main and the "status" entrypoint */
        assert_int_equal(tu_caps_type_at(&cs, RTCR_THREAD_SLOT(i, RTCR_THREAD_GATE_OFF)),
                         RTCR_KOBJ_GATE);
        assert_int_equal(tu_caps_type_at(&cs, RTCR_THREAD_SLOT(i, RTCR_THREAD_IRQ_OFF)),
                         RTCR_KOBJ_IRQ);
        assert_int_not_equal(tu_caps_type_at(&cs, RTCR_THREAD_SLOT(i, RTCR_THREAD_PAGER_OFF)),
                             RTCR_KOBJ_NONE);
    }
    for (unsigned s = 2; s < 8; s++)
        assert_int_equal(tu_caps_type_at(&cs, s), RTCR_KOBJ_NONE);
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
    assert_true(tu_wait_state(ecu, t, RTCR_TARGET_FAILED, 2000));
    assert_int_equal(rtcr_target_exit_status(t), -SIGKILL);
    char why[RTCR_FAILURE_MAX];
    size_t n = rtcr_target_failure(t, why, sizeof(why));
    assert_int_equal(n, strlen(why));
    assert_non_null(strstr(why, "killed by signal 9"));
    char small[8];
    assert_int_equal(rtcr_target_failure(t, small, sizeof(small)), n); /* truncated */
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_int_equal(rtcr_target_failure(t, NULL, 0), n);
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(rtcr_target_kill(t), -ESRCH);

    /* and it can be started again, fresh */
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(tu_wait_tick(t, 5, 0, 5000) >= 5);
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
    spec.binary = tu_target_path("brake");
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

/* The timer service's due check: counts the timeouts a late run missed, keeps the phase. */
static void test_timer_due(void **state)
{
    (void)state;
    uint64_t d = 0;
    assert_int_equal(svc_timer_due(&d, 1000, 5000), 0); /* not armed */
    d = 5000;
    assert_int_equal(svc_timer_due(&d, 1000, 4999), 0); /* not yet */
    assert_int_equal(d, 5000);
    assert_int_equal(svc_timer_due(&d, 1000, 5000), 1); /* on time */
    assert_int_equal(d, 6000);
    assert_int_equal(svc_timer_due(&d, 1000, 6999), 1); /* late, within the period */
    assert_int_equal(d, 7000);
    assert_int_equal(svc_timer_due(&d, 1000, 9500), 3);  /* 7000, 8000, 9000 passed */
    assert_int_equal(d, 10000);                          /* the phase is kept */
    assert_int_equal(svc_timer_due(&d, 1000, 10000), 1); /* exactly on a boundary */
    assert_int_equal(d, 11000);
    d = 1;
    assert_int_equal(svc_timer_due(&d, 1, UINT64_C(1) << 40), SVC_TIMER_COUNT_MAX); /* capped */
    assert_true(d > UINT64_C(1) << 40);
    d = 300; /* a one-shot fires once however late, then disarms */
    assert_int_equal(svc_timer_due(&d, 0, 100000), 1);
    assert_int_equal(d, 0);
    assert_int_equal(svc_timer_due(&d, 0, 200000), 0);
}

/* Threads of this process running SCHED_FIFO at `prio`. */
static int fifo_threads(int prio)
{
    DIR *dir = opendir("/proc/self/task");
    assert_non_null(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        pid_t tid = (pid_t)atoi(e->d_name);
        struct sched_param sp;
        if (sched_getscheduler(tid) == SCHED_FIFO && sched_getparam(tid, &sp) == 0 &&
            sp.sched_priority == prio)
            n++;
    }
    closedir(dir);
    return n;
}

/* The scheduling priority of the calling thread as the kernel has it now, boosts included
 * (field 18 of /proc/thread-self/stat: 20 + nice for normal threads, -1 - prio for SCHED_FIFO). */
static long own_priority(void)
{
    char buf[1024];
    FILE *f = fopen("/proc/thread-self/stat", "re");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    assert_non_null(p);
    long v = 0;
    for (int field = 2; field <= 18 && p; field++) { /* p is at the end of field 2 (comm) */
        p = strchr(p + 1, ' ');
        if (p && field == 17)
            v = strtol(p + 1, NULL, 10);
    }
    assert_non_null(p);
    return v;
}

/* Hold `m` until the ECU's SCHED_FIFO `prio` timer thread waits for it: priority inheritance
 * must raise this (normal) thread to the waiter's priority, and drop it again on unlock. */
static void expect_inherited(pthread_mutex_t *m, int prio)
{
    long base = own_priority();
    assert_true(base >= 0); /* a normal thread */
    pthread_mutex_lock(m);
    long boosted = base;
    for (int i = 0; i < 400 && boosted == base; i++) { /* the timer runs every few ms */
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        boosted = own_priority();
    }
    pthread_mutex_unlock(m);
    assert_int_equal(boosted, -1 - prio);
    assert_int_equal(own_priority(), base);
}

static void test_timer_priority(void **state)
{
    (void)state;
    rtcr_ecu_params_t p = {.name = "ecu-rt", .ram_total = 64u << 20, .timer_priority = 7};
    rtcr_ecu_t *ecu = NULL;
    assert_int_equal(rtcr_ecu_new(&p, &ecu), 0);
    const char *why = NULL;
    int prio = rtcr_ecu_timer_priority(ecu, &why);
    if (prio == 7) { /* privileged: the timer thread, and only it, runs SCHED_FIFO 7 */
        assert_null(why);
        assert_int_equal(fifo_threads(7), 1);
    } else { /* refused: it says why and runs normally */
        assert_int_equal(prio, 0);
        assert_non_null(why);
        assert_int_equal(fifo_threads(7), 0);
    }
    /* the timers still fire: a brake target ticks */
    rtcr_target_spec_t spec = brake_spec();
    rtcr_target_t *t = NULL;
    assert_int_equal(rtcr_ecu_add_target(ecu, &spec, &t), 0);
    assert_int_equal(rtcr_target_start(t), 0);
    assert_true(tu_wait_tick(t, 5, 0, 5000) >= 5);
    if (prio == 7) { /* the locks the timer thread takes pass its priority on to their holder */
        expect_inherited(&ecu->lock, 7);
        expect_inherited(&t->lock, 7);
    }
    rtcr_ecu_destroy(&ecu);
    assert_int_equal(fifo_threads(7), 0);

    p.timer_priority = 0; /* normal scheduling: nothing to refuse */
    assert_int_equal(rtcr_ecu_new(&p, &ecu), 0);
    assert_int_equal(rtcr_ecu_timer_priority(ecu, &why), 0);
    assert_null(why);
    rtcr_ecu_destroy(&ecu);
    p.timer_priority = RTCR_TIMER_PRIORITY_MAX + 1;
    assert_int_equal(rtcr_ecu_new(&p, &ecu), -EINVAL);
    p.timer_priority = -1;
    assert_int_equal(rtcr_ecu_new(&p, &ecu), -EINVAL);
    assert_null(ecu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_brake_runs),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_timer_due),
        cmocka_unit_test(test_timer_priority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
