/* test_kernel_badge.c — the per-ECU badge allocator and label imprinting into RPC gates.
 *
 * Covers: alignment and range of allocated badges, uniqueness, the cursor rule (a freed badge
 * is not handed out again before the cursor has gone round), wrap-around, exhaustion
 * (-EOVERFLOW, on a range shrunk with rtcr_badge_set_range), reserve/free/is_used/count and
 * every error, allocation across bitmap chunks, and gates: rtcr_gate_create_rpc imprints a
 * fresh badge and frees it on delete, rtcr_gate_create does not own its badge.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <rtcr/kernel.h>

static int setup(void **state)
{
    rtcr_kernel_t *k = rtcr_kernel_new();
    if (!k)
        return -1;
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    rtcr_kernel_t *k = *state;
    rtcr_kernel_destroy(&k);
    assert_null(k);
    return 0;
}

static void test_alloc_aligned_unique(void **state)
{
    rtcr_kernel_t *k = *state;
    rtcr_badge_t prev = 0;
    for (int i = 0; i < 1000; i++) {
        rtcr_badge_t b = 0;
        assert_int_equal(rtcr_badge_alloc(k, &b), 0);
        assert_int_not_equal(b, RTCR_BADGE_INVALID);
        assert_int_equal(b % RTCR_BADGE_STEP, 0);
        assert_true(b < RTCR_BADGE_RANGE);
        assert_true(b > prev); /* fresh allocator: ascending from the cursor, never repeated */
        assert_true(rtcr_badge_is_used(k, b));
        prev = b;
    }
    assert_int_equal(rtcr_badge_count(k), 1000);
}

static void test_freed_not_reused_until_wrap(void **state)
{
    rtcr_kernel_t *k = *state;
    /* ids 1..7: badges 4..28 */
    assert_int_equal(rtcr_badge_set_range(k, 8 * RTCR_BADGE_STEP), 0);
    rtcr_badge_t b[7];
    for (int i = 0; i < 3; i++)
        assert_int_equal(rtcr_badge_alloc(k, &b[i]), 0);
    assert_int_equal(b[0], 4);
    assert_int_equal(b[1], 8);
    assert_int_equal(b[2], 12);
    assert_int_equal(rtcr_badge_free(k, b[0]), 0);
    assert_false(rtcr_badge_is_used(k, b[0]));
    /* the freed 4 is behind the cursor: 16, 20, 24, 28 come first */
    for (int i = 3; i < 7; i++) {
        assert_int_equal(rtcr_badge_alloc(k, &b[i]), 0);
        assert_int_equal(b[i], (rtcr_badge_t)(4 * (i + 1)));
    }
    /* now the cursor wraps and finds 4 */
    rtcr_badge_t again = 0;
    assert_int_equal(rtcr_badge_alloc(k, &again), 0);
    assert_int_equal(again, 4);
    /* full: 7 of 7 */
    assert_int_equal(rtcr_badge_count(k), 7);
    rtcr_badge_t none = 0xdead;
    assert_int_equal(rtcr_badge_alloc(k, &none), -EOVERFLOW);
    assert_int_equal(none, 0xdead); /* output untouched on failure */
    /* one freed in the middle is the only candidate */
    assert_int_equal(rtcr_badge_free(k, 16), 0);
    assert_int_equal(rtcr_badge_alloc(k, &again), 0);
    assert_int_equal(again, 16);
}

static void test_reserve(void **state)
{
    rtcr_kernel_t *k = *state;
    assert_int_equal(rtcr_badge_reserve(k, 8), 0);
    assert_true(rtcr_badge_is_used(k, 8));
    assert_int_equal(rtcr_badge_reserve(k, 8), -EEXIST);
    assert_int_equal(rtcr_badge_reserve(k, 9), -EINVAL);
    assert_int_equal(rtcr_badge_reserve(k, 0), -EINVAL);
    assert_int_equal(rtcr_badge_reserve(k, RTCR_BADGE_RANGE), -EINVAL);
    assert_int_equal(rtcr_badge_reserve(k, RTCR_BADGE_RANGE - RTCR_BADGE_STEP), 0);
    /* allocation skips the reserved badge */
    rtcr_badge_t a, b;
    assert_int_equal(rtcr_badge_alloc(k, &a), 0);
    assert_int_equal(rtcr_badge_alloc(k, &b), 0);
    assert_int_equal(a, 4);
    assert_int_equal(b, 12);
    assert_int_equal(rtcr_badge_count(k), 4);
}

static void test_free_errors(void **state)
{
    rtcr_kernel_t *k = *state;
    assert_int_equal(rtcr_badge_free(k, 4), -ENOENT);
    assert_int_equal(rtcr_badge_free(k, 6), -EINVAL);
    assert_int_equal(rtcr_badge_free(k, 0), -EINVAL);
    assert_int_equal(rtcr_badge_free(k, RTCR_BADGE_RANGE), -EINVAL);
    rtcr_badge_t b;
    assert_int_equal(rtcr_badge_alloc(k, &b), 0);
    assert_int_equal(rtcr_badge_free(k, b), 0);
    assert_int_equal(rtcr_badge_free(k, b), -ENOENT);
    assert_false(rtcr_badge_is_used(k, 6));
    assert_false(rtcr_badge_is_used(k, 0));
    assert_int_equal(rtcr_badge_count(k), 0);
}

static void test_null_args(void **state)
{
    rtcr_kernel_t *k = *state;
    rtcr_badge_t b;
    assert_int_equal(rtcr_badge_alloc(NULL, &b), -EINVAL);
    assert_int_equal(rtcr_badge_alloc(k, NULL), -EINVAL);
    assert_int_equal(rtcr_badge_reserve(NULL, 4), -EINVAL);
    assert_int_equal(rtcr_badge_free(NULL, 4), -EINVAL);
    assert_false(rtcr_badge_is_used(NULL, 4));
    assert_int_equal(rtcr_badge_count(NULL), 0);
    assert_int_equal(rtcr_badge_set_range(NULL, 64), -EINVAL);
}

static void test_set_range(void **state)
{
    rtcr_kernel_t *k = *state;
    assert_int_equal(rtcr_badge_set_range(k, 6), -EINVAL);
    assert_int_equal(rtcr_badge_set_range(k, 4), -EINVAL);
    assert_int_equal(rtcr_badge_set_range(k, RTCR_BADGE_RANGE + 4), -EINVAL);
    assert_int_equal(rtcr_badge_set_range(k, 8), 0); /* exactly one badge: 4 */
    rtcr_badge_t b;
    assert_int_equal(rtcr_badge_alloc(k, &b), 0);
    assert_int_equal(b, 4);
    assert_int_equal(rtcr_badge_alloc(k, &b), -EOVERFLOW);
    assert_int_equal(rtcr_badge_reserve(k, 8), -EINVAL); /* out of the shrunk range */
    assert_int_equal(rtcr_badge_set_range(k, RTCR_BADGE_RANGE), -EBUSY);
    assert_int_equal(rtcr_badge_free(k, 4), 0);
    assert_int_equal(rtcr_badge_set_range(k, RTCR_BADGE_RANGE), 0);
}

/* crosses bitmap chunks (65536 ids each) and skips a chunk that is completely used */
static void test_across_chunks(void **state)
{
    rtcr_kernel_t *k = *state;
    const unsigned chunk = 1u << 16;
    /* fill ids chunk .. 2*chunk-1 by reservation: a full chunk */
    for (unsigned id = chunk; id < 2 * chunk; id++)
        assert_int_equal(rtcr_badge_reserve(k, id * RTCR_BADGE_STEP), 0);
    /* allocate all of chunk 0 (ids 1..chunk-1), then the next must skip the full chunk */
    rtcr_badge_t b = 0;
    for (unsigned id = 1; id < chunk; id++) {
        assert_int_equal(rtcr_badge_alloc(k, &b), 0);
        assert_int_equal(b, id * RTCR_BADGE_STEP);
    }
    assert_int_equal(rtcr_badge_alloc(k, &b), 0);
    assert_int_equal(b, 2 * chunk * RTCR_BADGE_STEP);
    assert_int_equal(rtcr_badge_count(k), 2 * chunk);
}

static void test_gate_rpc_imprints_badge(void **state)
{
    rtcr_kernel_t *k = *state;
    rtcr_kobj_t *task, *th, *g1, *g2;
    assert_int_equal(rtcr_task_create(k, "srv", &task), 0);
    assert_int_equal(rtcr_thread_create(k, task, "ep", &th), 0);
    assert_int_equal(rtcr_gate_create_rpc(k, th, &g1), 0);
    assert_int_equal(rtcr_gate_create_rpc(k, th, &g2), 0);
    rtcr_badge_t b1 = rtcr_kobj_badge(g1), b2 = rtcr_kobj_badge(g2);
    assert_int_not_equal(b1, RTCR_BADGE_INVALID);
    assert_int_not_equal(b1, b2);
    assert_int_equal(b1 % RTCR_BADGE_STEP, 0);
    assert_true(rtcr_badge_is_used(k, b1));
    assert_true(rtcr_badge_is_used(k, b2));
    /* deleting the gate frees its badge; the badge stays readable for dumps */
    assert_int_equal(rtcr_kobj_delete(k, g1), 0);
    assert_false(rtcr_badge_is_used(k, b1));
    assert_int_equal(rtcr_kobj_badge(g1), b1);
    /* a new RPC gate does not get the freed badge (cursor rule) */
    rtcr_kobj_t *g3;
    assert_int_equal(rtcr_gate_create_rpc(k, NULL, &g3), 0);
    assert_int_not_equal(rtcr_kobj_badge(g3), b1);
    /* the badge of other types is invalid */
    assert_int_equal(rtcr_kobj_badge(th), RTCR_BADGE_INVALID);
    assert_int_equal(rtcr_kobj_badge(NULL), RTCR_BADGE_INVALID);
    rtcr_kobj_unref(&g1);
    rtcr_kobj_unref(&g2);
    rtcr_kobj_unref(&g3);
    assert_int_equal(rtcr_kobj_delete(k, task), 0);
    rtcr_kobj_unref(&th);
    rtcr_kobj_unref(&task);
    assert_int_equal(rtcr_badge_count(k), 0); /* g2 freed when its last reference went */
}

static void test_gate_plain_badge(void **state)
{
    rtcr_kernel_t *k = *state;
    rtcr_kobj_t *g = NULL;
    assert_int_equal(rtcr_gate_create(k, NULL, 0x102, &g), -EINVAL);
    assert_null(g);
    assert_int_equal(rtcr_gate_create(k, NULL, 0x100, &g), 0);
    assert_int_equal(rtcr_kobj_badge(g), 0x100);
    assert_false(rtcr_badge_is_used(k, 0x100)); /* not owned, not reserved */
    assert_int_equal(rtcr_badge_reserve(k, 0x100), 0);
    assert_int_equal(rtcr_kobj_delete(k, g), 0);
    assert_true(rtcr_badge_is_used(k, 0x100)); /* a plain gate never frees its label */
    rtcr_kobj_unref(&g);
    assert_int_equal(rtcr_gate_create(NULL, NULL, 0x100, &g), -EINVAL);
    assert_int_equal(rtcr_gate_create(k, NULL, 0x100, NULL), -EINVAL);
}

static void test_gate_rpc_exhausted(void **state)
{
    rtcr_kernel_t *k = *state;
    assert_int_equal(rtcr_badge_set_range(k, 3 * RTCR_BADGE_STEP), 0); /* 2 badges */
    rtcr_kobj_t *g[3] = {NULL, NULL, NULL};
    assert_int_equal(rtcr_gate_create_rpc(k, NULL, &g[0]), 0);
    assert_int_equal(rtcr_gate_create_rpc(k, NULL, &g[1]), 0);
    assert_int_equal(rtcr_gate_create_rpc(k, NULL, &g[2]), -EOVERFLOW);
    assert_null(g[2]);
    /* a thread bind needs two badges (gate, pager): fails as a whole */
    rtcr_kobj_t *task, *th;
    assert_int_equal(rtcr_task_create(k, "t", &task), 0);
    assert_int_equal(rtcr_thread_create(k, task, "ep", &th), 0);
    assert_int_equal(rtcr_task_bind_thread(k, task, th, NULL), -EOVERFLOW);
    assert_int_equal(rtcr_task_used_slots(k, task), 1);
    assert_int_equal(rtcr_kobj_delete(k, g[0]), 0);
    assert_int_equal(rtcr_task_bind_thread(k, task, th, NULL), -EOVERFLOW);
    assert_int_equal(rtcr_badge_count(k), 1); /* the failed bind gave its badge back */
    assert_int_equal(rtcr_kobj_delete(k, g[1]), 0);
    unsigned idx = 99;
    assert_int_equal(rtcr_task_bind_thread(k, task, th, &idx), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(rtcr_badge_count(k), 2);
    rtcr_kobj_unref(&g[0]);
    rtcr_kobj_unref(&g[1]);
    rtcr_kobj_unref(&th);
    rtcr_kobj_unref(&task);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alloc_aligned_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freed_not_reused_until_wrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_across_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_rpc_imprints_badge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_plain_badge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_rpc_exhausted, setup, teardown),
    };
    return cmocka_run_group_tests_name("kernel_badge", tests, NULL, NULL);
}
