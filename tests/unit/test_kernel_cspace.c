/* test_kernel_cspace.c — objects, capability spaces, the mapping database and the dump.
 *
 * Covers: the slot-layout constants, task creation (slot 1), object ids/names/user pointers,
 * install/lookup/cap_valid/alloc_slot/map/unmap with every error, rights masking and the S
 * requirement, grant (move, keeps derivation), recursive revocation across tasks, deletion
 * (-EIDRM on stale caps, slots stay occupied), the thread area (bind, bind_at, -EMLINK,
 * unbinding on thread deletion), task deletion cascading to threads and derived caps,
 * foreach and the operator dump format, and a kernel destroyed with objects still referenced.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <rtcr/kernel.h>

struct fx {
    rtcr_kernel_t *k; /* the kernel */
    rtcr_kobj_t *a;   /* task "a" */
    rtcr_kobj_t *b;   /* task "b" */
    rtcr_kobj_t *c;   /* task "c" */
    rtcr_kobj_t *irq; /* an IRQ object, installed nowhere */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || !(f->k = rtcr_kernel_new()))
        return -1;
    if (rtcr_task_create(f->k, "a", &f->a) < 0 || rtcr_task_create(f->k, "b", &f->b) < 0 ||
        rtcr_task_create(f->k, "c", &f->c) < 0 || rtcr_irq_create(f->k, &f->irq) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    rtcr_kobj_unref(&f->irq);
    rtcr_kobj_unref(&f->a);
    rtcr_kobj_unref(&f->b);
    rtcr_kobj_unref(&f->c);
    rtcr_kernel_destroy(&f->k);
    rtcr_kernel_destroy(&f->k); /* idempotent */
    rtcr_kernel_destroy(NULL);
    free(f);
    return 0;
}

static rtcr_kobj_t *lookup(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot, unsigned *rights)
{
    rtcr_kobj_t *o = NULL;
    if (rtcr_task_lookup(k, task, slot, &o, rights) < 0)
        return NULL;
    rtcr_kobj_t *ret = o;
    rtcr_kobj_unref(&o); /* other references keep it alive in these tests */
    return ret;
}

static void test_layout_constants(void **state)
{
    (void)state;
    assert_int_equal(RTCR_CAP_SLOTS, 4096);
    assert_int_equal(RTCR_TASK_CAP, 1);
    assert_int_equal(RTCR_PARENT_CAP, 8);
    assert_int_equal(RTCR_USER_BASE_CAP, 512);
    assert_int_equal(RTCR_THREAD_SLOT(0, RTCR_THREAD_GATE_OFF), 9);
    assert_int_equal(RTCR_THREAD_SLOT(0, RTCR_THREAD_PAGER_OFF), 10);
    assert_int_equal(RTCR_THREAD_SLOT(0, RTCR_THREAD_IRQ_OFF), 11);
    assert_int_equal(RTCR_THREAD_SLOT(1, RTCR_THREAD_GATE_OFF), 12);
    assert_int_equal(RTCR_THREAD_SLOT(RTCR_THREAD_MAX - 1, RTCR_THREAD_IRQ_OFF), 392);
    assert_true(RTCR_THREAD_SLOT(RTCR_THREAD_MAX - 1, RTCR_THREAD_IRQ_OFF) < RTCR_USER_BASE_CAP);
    assert_int_equal(rtcr_obj_fpage(0x201, RTCR_CAP_RWS), (0x201ull << 12) | 0x30 | 7);
    assert_int_equal(rtcr_fpage_slot(rtcr_obj_fpage(0x201, 5)), 0x201);
    assert_int_equal(rtcr_fpage_rights(rtcr_obj_fpage(0x201, 5)), 5);
}

static void test_task_slot1_and_objects(void **state)
{
    struct fx *f = *state;
    unsigned rights = 0;
    assert_ptr_equal(lookup(f->k, f->a, RTCR_TASK_CAP, &rights), f->a);
    assert_int_equal(rights, RTCR_CAP_RWS);
    assert_int_equal(rtcr_task_used_slots(f->k, f->a), 1);
    assert_int_equal(rtcr_kobj_type_of(f->a), RTCR_KOBJ_TASK);
    assert_int_equal(rtcr_kobj_type_of(f->irq), RTCR_KOBJ_IRQ);
    assert_int_equal(rtcr_kobj_type_of(NULL), RTCR_KOBJ_NONE);
    assert_string_equal(rtcr_kobj_name(f->a), "a");
    assert_null(rtcr_kobj_name(f->irq));
    rtcr_kobj_set_name(f->irq, "IRQ session 7");
    assert_string_equal(rtcr_kobj_name(f->irq), "IRQ session 7");
    rtcr_kobj_set_name(f->irq, NULL);
    assert_null(rtcr_kobj_name(f->irq));
    int x;
    assert_null(rtcr_kobj_user(f->a));
    rtcr_kobj_set_user(f->a, &x);
    assert_ptr_equal(rtcr_kobj_user(f->a), &x);
    /* ids: unique and increasing in creation order */
    assert_true(rtcr_kobj_id(f->a) > 0);
    assert_true(rtcr_kobj_id(f->b) > rtcr_kobj_id(f->a));
    assert_true(rtcr_kobj_id(f->irq) > rtcr_kobj_id(f->c));
    rtcr_kobj_t *i2;
    assert_int_equal(rtcr_irq_create(f->k, &i2), 0);
    assert_true(rtcr_kobj_id(i2) > rtcr_kobj_id(f->irq));
    rtcr_kobj_unref(&i2);
    assert_null(i2);
    rtcr_kobj_unref(&i2); /* NULL-safe */
    rtcr_kobj_unref(NULL);
    assert_string_equal(rtcr_kobj_type_name(RTCR_KOBJ_TASK), "task");
    assert_string_equal(rtcr_kobj_type_name(RTCR_KOBJ_THREAD), "thread");
    assert_string_equal(rtcr_kobj_type_name(RTCR_KOBJ_GATE), "gate");
    assert_string_equal(rtcr_kobj_type_name(RTCR_KOBJ_IRQ), "irq");
    assert_false(rtcr_kobj_is_deleted(f->a));
    assert_true(rtcr_kobj_is_deleted(NULL));
    /* creation errors */
    rtcr_kobj_t *o = NULL;
    assert_int_equal(rtcr_task_create(NULL, "x", &o), -EINVAL);
    assert_int_equal(rtcr_task_create(f->k, "x", NULL), -EINVAL);
    assert_int_equal(rtcr_thread_create(f->k, f->irq, "x", &o), -EPROTOTYPE);
    assert_int_equal(rtcr_thread_create(f->k, NULL, "x", &o), -EINVAL);
    assert_int_equal(rtcr_gate_create(f->k, f->a, 4, &o), -EPROTOTYPE);
    assert_int_equal(rtcr_gate_create_rpc(f->k, f->irq, &o), -EPROTOTYPE);
    assert_int_equal(rtcr_irq_create(f->k, NULL), -EINVAL);
    assert_null(o);
}

static void test_install_lookup_errors(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_used_slots(k, f->a), 2);
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_ALL), -EEXIST);
    assert_int_equal(rtcr_task_install(k, f->a, RTCR_CAP_SLOTS, f->irq, 0), -ERANGE);
    assert_int_equal(rtcr_task_install(k, f->irq, 0x201, f->irq, 0), -EPROTOTYPE);
    assert_int_equal(rtcr_task_install(k, f->a, 0x201, f->irq, 0x10), -EINVAL);
    assert_int_equal(rtcr_task_install(k, f->a, 0x201, NULL, 0), -EINVAL);
    assert_int_equal(rtcr_task_install(NULL, f->a, 0x201, f->irq, 0), -EINVAL);
    /* an object of another kernel */
    rtcr_kernel_t *k2 = rtcr_kernel_new();
    rtcr_kobj_t *foreign;
    assert_int_equal(rtcr_irq_create(k2, &foreign), 0);
    assert_int_equal(rtcr_task_install(k, f->a, 0x201, foreign, 0), -EINVAL);
    assert_int_equal(rtcr_task_install(k, foreign, 0x201, f->irq, 0), -EINVAL);
    assert_int_equal(rtcr_kobj_delete(k, foreign), -EINVAL);
    rtcr_kernel_destroy(&k2); /* frees `foreign` although referenced */

    unsigned rights = 0;
    assert_ptr_equal(lookup(k, f->a, 0x200, &rights), f->irq);
    assert_int_equal(rights, RTCR_CAP_ALL);
    rtcr_kobj_t *o = (rtcr_kobj_t *)0x1;
    assert_int_equal(rtcr_task_lookup(k, f->a, 0x201, &o, &rights), -ENOENT);
    assert_int_equal(rtcr_task_lookup(k, f->a, 5000, &o, &rights), -ERANGE);
    assert_int_equal(rtcr_task_lookup(k, f->irq, 1, &o, &rights), -EPROTOTYPE);
    assert_ptr_equal(o, (rtcr_kobj_t *)0x1); /* outputs untouched on failure */
    assert_int_equal(rtcr_task_lookup(k, f->a, 0x200, NULL, NULL), 0);

    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x200), 1);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x201), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, RTCR_CAP_SLOTS), -ERANGE);
    assert_int_equal(rtcr_task_cap_valid(k, f->irq, 1), -EPROTOTYPE);
    assert_int_equal(rtcr_task_cap_valid(NULL, f->a, 1), -EINVAL);

    /* deleted object: install refused, existing cap stale */
    assert_int_equal(rtcr_kobj_delete(k, f->irq), 0);
    assert_true(rtcr_kobj_is_deleted(f->irq));
    assert_int_equal(rtcr_kobj_delete(k, f->irq), -EIDRM);
    assert_int_equal(rtcr_task_install(k, f->a, 0x201, f->irq, 0), -EIDRM);
    assert_int_equal(rtcr_task_lookup(k, f->a, 0x200, &o, &rights), -EIDRM);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x200), 0);
    assert_int_equal(rtcr_task_used_slots(k, f->a), 2); /* the stale cap still occupies */
    assert_int_equal(rtcr_task_unmap(k, f->a, 0x200, false), 0);
    assert_int_equal(rtcr_task_used_slots(k, f->a), 1);

    /* deleted task */
    assert_int_equal(rtcr_kobj_delete(k, f->c), 0);
    assert_int_equal(rtcr_task_install(k, f->c, 0x200, f->a, 0), -EIDRM);
    assert_int_equal(rtcr_task_cap_valid(k, f->c, 1), -EIDRM);
    assert_int_equal(rtcr_task_lookup(k, f->c, 1, &o, &rights), -EIDRM);
    unsigned slot;
    assert_int_equal(rtcr_task_alloc_slot(k, f->c, &slot), -EIDRM);
    assert_int_equal(rtcr_task_used_slots(k, f->c), 0);
}

static void test_alloc_slot_first_fit(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    unsigned s = 0;
    assert_int_equal(rtcr_task_alloc_slot(k, f->a, &s), 0);
    assert_int_equal(s, RTCR_USER_BASE_CAP);
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, 0), 0);
    assert_int_equal(rtcr_task_install(k, f->a, 0x202, f->irq, 0), 0);
    assert_int_equal(rtcr_task_alloc_slot(k, f->a, &s), 0);
    assert_int_equal(s, 0x201);
    /* slots below the user range do not count */
    for (unsigned i = RTCR_USER_BASE_CAP; i < RTCR_CAP_SLOTS; i++)
        if (rtcr_task_cap_valid(k, f->a, i) == 0)
            assert_int_equal(rtcr_task_install(k, f->a, i, f->irq, 0), 0);
    s = 77;
    assert_int_equal(rtcr_task_alloc_slot(k, f->a, &s), -ENOSPC);
    assert_int_equal(s, 77);
    assert_int_equal(rtcr_task_used_slots(k, f->a), 1 + RTCR_CAP_SLOTS - RTCR_USER_BASE_CAP);
    assert_int_equal(rtcr_task_unmap(k, f->a, 0x7ff, false), 0);
    assert_int_equal(rtcr_task_alloc_slot(k, f->a, &s), 0);
    assert_int_equal(s, 0x7ff);
    assert_int_equal(rtcr_task_alloc_slot(k, f->a, NULL), -EINVAL);
    assert_int_equal(rtcr_task_alloc_slot(k, f->irq, &s), -EPROTOTYPE);
}

static void test_map_rights_and_errors(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_install(k, f->a, 0x201, f->irq, RTCR_CAP_R | RTCR_CAP_W), 0);
    /* copy with masked rights */
    assert_int_equal(rtcr_task_map(k, f->b, 0x300, f->a, 0x200, RTCR_CAP_R | RTCR_CAP_S, false), 0);
    unsigned rights = 0;
    assert_ptr_equal(lookup(k, f->b, 0x300, &rights), f->irq);
    assert_int_equal(rights, RTCR_CAP_R | RTCR_CAP_S);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x200), 1); /* copy keeps the source */
    /* the mask only removes rights */
    assert_int_equal(rtcr_task_map(k, f->c, 0x300, f->b, 0x300, RTCR_CAP_ALL, false), 0);
    assert_ptr_equal(lookup(k, f->c, 0x300, &rights), f->irq);
    assert_int_equal(rights, RTCR_CAP_R | RTCR_CAP_S);
    /* S is needed on the source */
    assert_int_equal(rtcr_task_map(k, f->b, 0x301, f->a, 0x201, RTCR_CAP_ALL, false), -EPERM);
    assert_int_equal(rtcr_task_map(k, f->b, 0x301, f->a, 0x201, RTCR_CAP_ALL, true), -EPERM);
    /* a copy without S cannot be passed on */
    assert_int_equal(rtcr_task_map(k, f->b, 0x302, f->a, 0x200, RTCR_CAP_R, false), 0);
    assert_int_equal(rtcr_task_map(k, f->c, 0x302, f->b, 0x302, RTCR_CAP_R, false), -EPERM);
    /* other errors */
    assert_int_equal(rtcr_task_map(k, f->b, 0x300, f->a, 0x200, RTCR_CAP_ALL, false), -EEXIST);
    assert_int_equal(rtcr_task_map(k, f->b, 0x303, f->a, 0x209, RTCR_CAP_ALL, false), -ENOENT);
    assert_int_equal(rtcr_task_map(k, f->b, 0x303, f->a, 9999, RTCR_CAP_ALL, false), -ERANGE);
    assert_int_equal(rtcr_task_map(k, f->b, 4096, f->a, 0x200, RTCR_CAP_ALL, false), -ERANGE);
    assert_int_equal(rtcr_task_map(k, f->irq, 0x303, f->a, 0x200, RTCR_CAP_ALL, false),
                     -EPROTOTYPE);
    assert_int_equal(rtcr_task_map(k, f->b, 0x303, f->irq, 0x200, RTCR_CAP_ALL, false),
                     -EPROTOTYPE);
    assert_int_equal(rtcr_task_map(k, f->b, 0x303, f->a, 0x200, 0x100, false), -EINVAL);
    assert_int_equal(rtcr_task_map(k, NULL, 0x303, f->a, 0x200, 0, false), -EINVAL);
    /* a stale source */
    rtcr_kobj_t *i2;
    assert_int_equal(rtcr_irq_create(k, &i2), 0);
    assert_int_equal(rtcr_task_install(k, f->a, 0x210, i2, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_kobj_delete(k, i2), 0);
    assert_int_equal(rtcr_task_map(k, f->b, 0x303, f->a, 0x210, RTCR_CAP_ALL, false), -EIDRM);
    rtcr_kobj_unref(&i2);
    /* failed maps changed nothing */
    assert_int_equal(rtcr_task_used_slots(k, f->b), 1 + 2);
    assert_int_equal(rtcr_task_used_slots(k, f->c), 1 + 1);
}

static void test_grant_moves(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_map(k, f->b, 0x200, f->a, 0x200, RTCR_CAP_ALL, false), 0);
    /* grant b's copy to c with fewer rights: b loses it, c has it, still derived from a */
    assert_int_equal(rtcr_task_map(k, f->c, 0x250, f->b, 0x200, RTCR_CAP_R | RTCR_CAP_S, true), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->b, 0x200), 0);
    unsigned rights;
    assert_ptr_equal(lookup(k, f->c, 0x250, &rights), f->irq);
    assert_int_equal(rights, RTCR_CAP_R | RTCR_CAP_S);
    assert_int_equal(rtcr_task_unmap(k, f->a, 0x200, false), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->c, 0x250), 0); /* revoked with its ancestor */
    /* grant within one task */
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_map(k, f->a, 0x201, f->a, 0x200, RTCR_CAP_ALL, true), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x200), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x201), 1);
    /* grant onto itself: the slot is occupied */
    assert_int_equal(rtcr_task_map(k, f->a, 0x201, f->a, 0x201, RTCR_CAP_ALL, true), -EEXIST);
}

static void test_recursive_revocation(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    /* a:0x200 -> b:0x200 -> c:0x200 -> c:0x201 ; a:0x200 -> c:0x300 ; b:0x200 -> a:0x300 */
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_map(k, f->b, 0x200, f->a, 0x200, RTCR_CAP_ALL, false), 0);
    assert_int_equal(rtcr_task_map(k, f->c, 0x200, f->b, 0x200, RTCR_CAP_ALL, false), 0);
    assert_int_equal(rtcr_task_map(k, f->c, 0x201, f->c, 0x200, RTCR_CAP_ALL, false), 0);
    assert_int_equal(rtcr_task_map(k, f->c, 0x300, f->a, 0x200, RTCR_CAP_ALL, false), 0);
    assert_int_equal(rtcr_task_map(k, f->a, 0x300, f->b, 0x200, RTCR_CAP_ALL, false), 0);
    /* unmapping b's cap revokes its subtree only */
    assert_int_equal(rtcr_task_unmap(k, f->b, 0x200, false), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->b, 0x200), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->c, 0x200), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->c, 0x201), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x300), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x200), 1);
    assert_int_equal(rtcr_task_cap_valid(k, f->c, 0x300), 1);
    assert_false(rtcr_kobj_is_deleted(f->irq)); /* unmapping is not deleting */
    /* a long chain (deeper than any sensible stack recursion would like) */
    unsigned prev = 0x200;
    rtcr_kobj_t *t[2] = {f->b, f->c};
    assert_int_equal(rtcr_task_map(k, f->b, 0x200, f->a, 0x200, RTCR_CAP_ALL, false), 0);
    for (unsigned i = 0; i < 2000; i++) {
        rtcr_kobj_t *src = t[i % 2], *dst = t[(i + 1) % 2];
        unsigned slot = 0x400 + i;
        assert_int_equal(rtcr_task_map(k, dst, slot, src, prev, RTCR_CAP_ALL, false), 0);
        prev = slot;
    }
    assert_int_equal(rtcr_task_used_slots(k, f->b) + rtcr_task_used_slots(k, f->c),
                     2 + 1 + 1 + 2000);
    assert_int_equal(rtcr_task_unmap(k, f->a, 0x200, false), 0);
    assert_int_equal(rtcr_task_used_slots(k, f->b), 1);
    assert_int_equal(rtcr_task_used_slots(k, f->c), 1);
    /* errors */
    assert_int_equal(rtcr_task_unmap(k, f->a, 0x200, false), -ENOENT);
    assert_int_equal(rtcr_task_unmap(k, f->a, 4096, false), -ERANGE);
    assert_int_equal(rtcr_task_unmap(k, f->irq, 1, false), -EPROTOTYPE);
    assert_int_equal(rtcr_task_unmap(NULL, f->a, 1, false), -EINVAL);
}

static void test_unmap_delete_obj(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_install(k, f->c, 0x200, f->irq, RTCR_CAP_R), 0); /* a 2nd root */
    assert_int_equal(rtcr_task_map(k, f->b, 0x200, f->a, 0x200, RTCR_CAP_RWS, false), 0);
    /* needs D */
    assert_int_equal(rtcr_task_unmap(k, f->b, 0x200, true), -EPERM);
    assert_int_equal(rtcr_task_cap_valid(k, f->b, 0x200), 1);
    assert_false(rtcr_kobj_is_deleted(f->irq));
    assert_int_equal(rtcr_task_unmap(k, f->a, 0x200, true), 0);
    assert_true(rtcr_kobj_is_deleted(f->irq));
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 0x200), 0); /* unmapped */
    assert_int_equal(rtcr_task_cap_valid(k, f->b, 0x200), 0); /* revoked */
    /* the independent root in c is stale, not gone */
    rtcr_kobj_t *o;
    unsigned rights;
    assert_int_equal(rtcr_task_lookup(k, f->c, 0x200, &o, &rights), -EIDRM);
    assert_int_equal(rtcr_task_used_slots(k, f->c), 2);
    /* mapping or unmapping a stale cap with delete: unmapped, nothing else to delete */
    assert_int_equal(rtcr_task_map(k, f->b, 0x201, f->c, 0x200, RTCR_CAP_R, false), -EIDRM);
    assert_int_equal(rtcr_task_install(k, f->c, 0x201, f->a, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_unmap(k, f->c, 0x201, true), 0); /* deletes task a */
    assert_true(rtcr_kobj_is_deleted(f->a));
    assert_int_equal(rtcr_task_used_slots(k, f->a), 0);
}

static void test_thread_area(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_kobj_t *t0, *t1, *t5, *tb;
    assert_int_equal(rtcr_thread_create(k, f->a, "ep", &t0), 0);
    assert_int_equal(rtcr_thread_create(k, f->a, "worker", &t1), 0);
    assert_int_equal(rtcr_thread_create(k, f->a, "five", &t5), 0);
    assert_int_equal(rtcr_thread_create(k, f->b, "other", &tb), 0);
    assert_int_equal(rtcr_thread_index(t0), -ENOENT);
    assert_int_equal(rtcr_thread_index(f->a), -EINVAL);
    assert_int_equal(rtcr_thread_index(NULL), -EINVAL);

    unsigned idx = 99;
    assert_int_equal(rtcr_task_bind_thread(k, f->a, t0, &idx), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(rtcr_thread_index(t0), 0);
    unsigned rights;
    rtcr_kobj_t *gate = lookup(k, f->a, 9, &rights);
    assert_non_null(gate);
    assert_int_equal(rtcr_kobj_type_of(gate), RTCR_KOBJ_GATE);
    assert_int_equal(rights, RTCR_CAP_RWS);
    assert_true(rtcr_badge_is_used(k, rtcr_kobj_badge(gate)));
    assert_string_equal(rtcr_kobj_name(gate), "gate of thread 'ep'");
    rtcr_kobj_t *pager = lookup(k, f->a, 10, &rights);
    assert_int_equal(rtcr_kobj_type_of(pager), RTCR_KOBJ_GATE);
    assert_int_not_equal(rtcr_kobj_badge(pager), rtcr_kobj_badge(gate));
    rtcr_kobj_t *irq = lookup(k, f->a, 11, &rights);
    assert_int_equal(rtcr_kobj_type_of(irq), RTCR_KOBJ_IRQ);
    rtcr_irq_state_t st;
    assert_int_equal(rtcr_irq_state(k, irq, &st), 0);
    assert_true(st.attached);
    assert_int_equal(st.thread_id, rtcr_kobj_id(t0));
    assert_int_equal(st.label, 0);
    assert_int_equal(rtcr_task_used_slots(k, f->a), 4);

    /* bind at a given index, then automatic binding skips taken indices */
    assert_int_equal(rtcr_task_bind_thread_at(k, f->a, t5, 1), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, RTCR_THREAD_SLOT(1, 0)), 1);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, RTCR_THREAD_SLOT(1, 2)), 1);
    /* an index whose slots are occupied is skipped too */
    assert_int_equal(rtcr_task_install(k, f->a, RTCR_THREAD_SLOT(2, 1), f->irq, 0), 0);
    assert_int_equal(rtcr_task_bind_thread(k, f->a, t1, &idx), 0);
    assert_int_equal(idx, 3);
    assert_int_equal(rtcr_thread_index(t1), 3);

    /* errors */
    rtcr_kobj_t *t6;
    assert_int_equal(rtcr_thread_create(k, f->a, "six", &t6), 0);
    assert_int_equal(rtcr_task_bind_thread(k, f->a, t0, &idx), -EALREADY);
    assert_int_equal(rtcr_task_bind_thread_at(k, f->a, t6, 1), -EEXIST);
    assert_int_equal(rtcr_task_bind_thread_at(k, f->a, t6, 2), -EEXIST); /* slot occupied */
    assert_int_equal(rtcr_task_bind_thread_at(k, f->a, t6, RTCR_THREAD_MAX), -ERANGE);
    assert_int_equal(rtcr_task_bind_thread(k, f->a, tb, &idx), -EINVAL); /* other task's */
    assert_int_equal(rtcr_task_bind_thread(k, f->irq, t6, &idx), -EPROTOTYPE);
    assert_int_equal(rtcr_task_bind_thread(k, f->a, f->irq, &idx), -EPROTOTYPE);
    assert_int_equal(rtcr_task_bind_thread(NULL, f->a, t6, &idx), -EINVAL);

    /* deleting a thread unbinds it: slots emptied, gate and pager badges freed */
    rtcr_badge_t gb = rtcr_kobj_badge(gate), pb = rtcr_kobj_badge(pager);
    rtcr_kobj_ref(gate);
    assert_int_equal(rtcr_kobj_delete(k, t0), 0);
    assert_int_equal(rtcr_thread_index(t0), -ENOENT);
    assert_int_equal(rtcr_task_cap_valid(k, f->a, 9), 0);
    assert_int_equal(rtcr_task_lookup(k, f->a, 10, NULL, NULL), -ENOENT);
    assert_int_equal(rtcr_task_lookup(k, f->a, 11, NULL, NULL), -ENOENT);
    assert_true(rtcr_kobj_is_deleted(gate));
    assert_false(rtcr_badge_is_used(k, gb));
    assert_false(rtcr_badge_is_used(k, pb));
    rtcr_kobj_unref(&gate);
    assert_int_equal(rtcr_task_bind_thread(k, f->a, t6, &idx), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(rtcr_task_bind_thread(k, f->a, t0, &idx), -EIDRM);

    rtcr_kobj_unref(&t0);
    rtcr_kobj_unref(&t1);
    rtcr_kobj_unref(&t5);
    rtcr_kobj_unref(&t6);
    rtcr_kobj_unref(&tb);
}

static void test_thread_area_full(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_kobj_t *th[RTCR_THREAD_MAX + 1];
    for (unsigned i = 0; i <= RTCR_THREAD_MAX; i++)
        assert_int_equal(rtcr_thread_create(k, f->a, "t", &th[i]), 0);
    for (unsigned i = 0; i < RTCR_THREAD_MAX; i++) {
        unsigned idx;
        assert_int_equal(rtcr_task_bind_thread(k, f->a, th[i], &idx), 0);
        assert_int_equal(idx, i);
    }
    assert_int_equal(rtcr_task_bind_thread(k, f->a, th[RTCR_THREAD_MAX], NULL), -EMLINK);
    assert_int_equal(rtcr_task_used_slots(k, f->a), 1 + 3 * RTCR_THREAD_MAX);
    /* every thread slot is below the component's range */
    unsigned s;
    assert_int_equal(rtcr_task_alloc_slot(k, f->a, &s), 0);
    assert_int_equal(s, RTCR_USER_BASE_CAP);
    /* deleting the task deletes its threads and empties the space */
    assert_int_equal(rtcr_kobj_delete(k, f->a), 0);
    for (unsigned i = 0; i <= RTCR_THREAD_MAX; i++) {
        assert_true(rtcr_kobj_is_deleted(th[i]));
        rtcr_kobj_unref(&th[i]);
    }
    assert_int_equal(rtcr_badge_count(k), 0);
}

static void test_task_delete_revokes(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    /* caps derived from a's caps vanish, caps to a elsewhere become stale */
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_map(k, f->b, 0x200, f->a, 0x200, RTCR_CAP_ALL, false), 0);
    assert_int_equal(rtcr_task_map(k, f->b, 0x201, f->a, RTCR_TASK_CAP, RTCR_CAP_ALL, false), 0);
    assert_int_equal(rtcr_task_install(k, f->c, RTCR_PARENT_CAP, f->a, RTCR_CAP_RWS), 0);
    assert_int_equal(rtcr_kobj_delete(k, f->a), 0);
    assert_int_equal(rtcr_task_cap_valid(k, f->b, 0x200), 0);
    assert_int_equal(rtcr_task_lookup(k, f->b, 0x200, NULL, NULL), -ENOENT);
    assert_int_equal(rtcr_task_lookup(k, f->b, 0x201, NULL, NULL), -ENOENT); /* derived */
    assert_int_equal(rtcr_task_lookup(k, f->c, RTCR_PARENT_CAP, NULL, NULL), -EIDRM);
    assert_false(rtcr_kobj_is_deleted(f->irq));
}

struct collect {
    unsigned n;          /* callbacks seen */
    unsigned stop_after; /* return 42 after this many, 0 = never */
    unsigned slots[8];   /* slots seen */
};

static int collect_cb(void *ctx, const rtcr_cap_info_t *cap)
{
    struct collect *c = ctx;
    if (c->n < 8)
        c->slots[c->n] = cap->slot;
    c->n++;
    return c->stop_after && c->n >= c->stop_after ? 42 : 0;
}

static void test_foreach(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    assert_int_equal(rtcr_task_install(k, f->a, 0x300, f->irq, RTCR_CAP_R), 0);
    assert_int_equal(rtcr_task_install(k, f->a, 0x200, f->irq, RTCR_CAP_R), 0);
    assert_int_equal(rtcr_task_install(k, f->a, RTCR_PARENT_CAP, f->b, RTCR_CAP_R), 0);
    struct collect c = {0};
    assert_int_equal(rtcr_task_foreach_cap(k, f->a, collect_cb, &c), 0);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.slots[0], 1);
    assert_int_equal(c.slots[1], 8);
    assert_int_equal(c.slots[2], 0x200);
    assert_int_equal(c.slots[3], 0x300);
    struct collect s = {.stop_after = 2};
    assert_int_equal(rtcr_task_foreach_cap(k, f->a, collect_cb, &s), 42);
    assert_int_equal(s.n, 2);
    assert_int_equal(rtcr_task_foreach_cap(k, f->a, NULL, &s), -EINVAL);
    assert_int_equal(rtcr_task_foreach_cap(k, f->irq, collect_cb, &s), -EPROTOTYPE);
}

/* the callback may use the kernel: the lock is not held */
static int unmap_cb(void *ctx, const rtcr_cap_info_t *cap)
{
    struct fx *f = ctx;
    if (cap->slot >= RTCR_USER_BASE_CAP)
        return rtcr_task_unmap(f->k, f->a, cap->slot, false);
    return 0;
}

static void test_foreach_reenters(void **state)
{
    struct fx *f = *state;
    assert_int_equal(rtcr_task_install(f->k, f->a, 0x200, f->irq, RTCR_CAP_R), 0);
    assert_int_equal(rtcr_task_foreach_cap(f->k, f->a, unmap_cb, f), 0);
    assert_int_equal(rtcr_task_used_slots(f->k, f->a), 1);
}

static void test_dump_format(void **state)
{
    struct fx *f = *state;
    rtcr_kernel_t *k = f->k;
    rtcr_kobj_t *th, *log, *dead;
    assert_int_equal(rtcr_thread_create(k, f->a, "ep", &th), 0);
    assert_int_equal(rtcr_task_bind_thread(k, f->a, th, NULL), 0);
    assert_int_equal(rtcr_gate_create(k, th, 0x178, &log), 0);
    rtcr_kobj_set_name(log, "LOG session 'brake'");
    assert_int_equal(rtcr_task_install(k, f->a, 0x201, log, RTCR_CAP_RWS), 0);
    assert_int_equal(rtcr_task_install(k, f->a, RTCR_PARENT_CAP, f->b, RTCR_CAP_RWS), 0);
    assert_int_equal(rtcr_irq_create(k, &dead), 0);
    assert_int_equal(rtcr_task_install(k, f->a, 0x2ff, dead, RTCR_CAP_RWS), 0);
    assert_int_equal(rtcr_kobj_delete(k, dead), 0);
    rtcr_kobj_t *gate = lookup(k, f->a, 9, NULL), *pager = lookup(k, f->a, 10, NULL);

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(rtcr_task_dump(k, f->a, out), 0);
    fclose(out);
    char expect[1024];
    snprintf(expect, sizeof(expect),
             "0x000001  -        TASK    a\n"
             "0x000008  -        TASK    b\n"
             "0x000009  0x%05x  GATE    gate of thread 'ep'\n"
             "0x00000a  0x%05x  GATE    pager of thread 'ep'\n"
             "0x00000b  -        IRQ     lock irq of thread 'ep'\n"
             "0x000201  0x00178  GATE    LOG session 'brake'\n"
             "0x0002ff  -        IRQ     -  (deleted)\n",
             rtcr_kobj_badge(gate), rtcr_kobj_badge(pager));
    assert_string_equal(buf, expect);
    free(buf);
    assert_int_equal(rtcr_task_dump(k, f->a, NULL), -EINVAL);
    assert_int_equal(rtcr_task_dump(k, f->irq, stdout), -EPROTOTYPE);
    rtcr_kobj_unref(&th);
    rtcr_kobj_unref(&log);
    rtcr_kobj_unref(&dead);
}

/* destroying the kernel with objects still referenced and linked frees everything */
static void test_destroy_with_live_objects(void **state)
{
    (void)state;
    rtcr_kernel_t *k = rtcr_kernel_new();
    assert_non_null(k);
    rtcr_kobj_t *t, *th, *g, *irq;
    assert_int_equal(rtcr_task_create(k, "x", &t), 0);
    assert_int_equal(rtcr_thread_create(k, t, "ep", &th), 0);
    assert_int_equal(rtcr_task_bind_thread(k, t, th, NULL), 0);
    assert_int_equal(rtcr_gate_create_rpc(k, th, &g), 0);
    assert_int_equal(rtcr_irq_create(k, &irq), 0);
    assert_int_equal(rtcr_irq_attach(k, irq, 4, th), 0);
    assert_int_equal(rtcr_task_install(k, t, 0x200, g, RTCR_CAP_ALL), 0);
    assert_int_equal(rtcr_task_map(k, t, 0x201, t, 0x200, RTCR_CAP_ALL, false), 0);
    rtcr_kernel_destroy(&k);
    assert_null(k);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_layout_constants),
        T(test_task_slot1_and_objects),
        T(test_install_lookup_errors),
        T(test_alloc_slot_first_fit),
        T(test_map_rights_and_errors),
        T(test_grant_moves),
        T(test_recursive_revocation),
        T(test_unmap_delete_obj),
        T(test_thread_area),
        T(test_thread_area_full),
        T(test_task_delete_revokes),
        T(test_foreach),
        T(test_foreach_reenters),
        T(test_dump_format),
        cmocka_unit_test(test_destroy_with_live_objects),
    };
#undef T
    return cmocka_run_group_tests_name("kernel_cspace", tests, NULL, NULL);
}
