/* test_agent_ckpt — the agent's checkpoint helpers: the failure latch logs the first failure
 * and every change of cause but not repeats, and counts failures until a success; image rows
 * carry each epoch's number, kind, parent, size and header statistics, and `verified` really
 * re-checks the bytes (a bit flipped in an epoch held in memory is reported with the reader's
 * message); the state dir is created 0750 with its parents, a file in its place is refused,
 * and writability is probed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rtcr/image.h>

#include "../../ecu-agent/agent_ckpt.h"

#define DS_BADGE 0x1a4u
#define DS_SIZE  (4u * 4096u)

static void test_latch(void **state)
{
    (void)state;
    agent_latch_t l = {0};
    assert_int_equal(agent_latch_ok(&l), 0);
    assert_true(agent_latch_fail(&l, "target did not quiesce"));
    for (int i = 0; i < 100; i++) /* 100 Hz of the same failure: silent */
        assert_false(agent_latch_fail(&l, "target did not quiesce"));
    assert_true(agent_latch_fail(&l, "No space left on device")); /* a new cause */
    assert_false(agent_latch_fail(&l, "No space left on device"));
    assert_true(agent_latch_fail(&l, "target did not quiesce")); /* changed back */
    assert_int_equal(agent_latch_ok(&l), 104);
    assert_int_equal(agent_latch_ok(&l), 0);
    assert_true(agent_latch_fail(&l, "target did not quiesce")); /* after a success: again */

    /* causes longer than the latch keeps compare by their kept prefix */
    char long1[600], long2[600];
    memset(long1, 'a', sizeof(long1) - 1);
    long1[sizeof(long1) - 1] = '\0';
    memcpy(long2, long1, sizeof(long2));
    long2[500] = 'b';
    agent_latch_ok(&l);
    assert_true(agent_latch_fail(&l, long1));
    assert_false(agent_latch_fail(&l, long2));
    assert_true(agent_latch_fail(&l, NULL));
}

/* Epoch `num` (parent num-1, or full if parent 0) of target "brake": one RAM session with one
 * dataspace, whose page `page` is filled with `fill`. Returns the parsed epoch. */
static rtcr_epoch_t *make_epoch(uint64_t num, uint64_t parent, unsigned page, uint8_t fill)
{
    static const uint8_t bid[] = {1, 2, 3, 4};
    rtcr_epoch_info_t info = {.target = "brake",
                              .epoch = num,
                              .parent = parent,
                              .build_id = bid,
                              .build_id_len = sizeof(bid),
                              .granularity = 4096,
                              .tracking_mode = "uffd-wp",
                              .pages_scanned = 4,
                              .freeze_usec = 100 + num};
    RtcrImg__StoredState st = RTCR_IMG__STORED_STATE__INIT;
    RtcrImg__Session s = RTCR_IMG__SESSION__INIT, *sp = &s;
    RtcrImg__RamSession ram = RTCR_IMG__RAM_SESSION__INIT;
    RtcrImg__Dataspace ds = RTCR_IMG__DATASPACE__INIT, *dsp = &ds;
    ds.badge = DS_BADGE;
    ds.size = DS_SIZE;
    ram.n_dataspaces = 1;
    ram.dataspaces = &dsp;
    ram.quota_limit = 1 << 20;
    s.type = RTCR_IMG__SESSION_TYPE__SESSION_RAM;
    s.badge = 0x100;
    s.state_case = RTCR_IMG__SESSION__STATE_RAM;
    s.ram = &ram;
    st.n_sessions = 1;
    st.sessions = &sp;

    uint8_t pagebuf[4096];
    memset(pagebuf, fill, sizeof(pagebuf));
    rtcr_epoch_builder_t *b = NULL;
    rtcr_image_err_t err = {{0}};
    void *buf = NULL;
    size_t len = 0;
    rtcr_epoch_t *e = NULL;
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &st), 0);
    assert_int_equal(rtcr_epoch_add_pages(b, DS_BADGE, (uint64_t)page * 4096u, pagebuf, 4096), 0);
    if (parent == 0) /* a full epoch declares the rest zero */
        assert_int_equal(rtcr_epoch_add_zero(b, DS_BADGE, (uint64_t)(page + 1) * 4096u,
                                             DS_SIZE - (uint64_t)(page + 1) * 4096u),
                         0);
    if (rtcr_epoch_finish(b, &err, &buf, &len) != 0)
        fail_msg("finish: %s", err.msg);
    rtcr_epoch_builder_destroy(&b);
    if (rtcr_epoch_parse_owned(&buf, len, NULL, &err, &e) != 0)
        fail_msg("parse: %s", err.msg);
    free(buf);
    return e;
}

static void test_image_rows(void **state)
{
    (void)state;
    agent_image_row_t *rows = NULL;
    size_t n = 99;

    assert_int_equal(agent_image_rows(NULL, &rows, &n), 0);
    assert_int_equal(n, 0);
    assert_null(rows);

    rtcr_image_t *img = rtcr_image_new("brake", NULL);
    assert_non_null(img);
    rtcr_image_err_t err = {{0}};
    for (uint64_t k = 1; k <= 3; k++) {
        rtcr_epoch_t *e = make_epoch(k, k - 1, (unsigned)(k - 1), (uint8_t)(0x10 * k));
        if (rtcr_image_add_epoch(img, &e, &err) != 0)
            fail_msg("add: %s", err.msg);
    }
    assert_int_equal(agent_image_rows(img, &rows, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < 3; i++) {
        const rtcr_epoch_t *e = rtcr_image_epoch(img, i + 1);
        size_t len;
        rtcr_epoch_bytes(e, &len);
        assert_int_equal(rows[i].epoch, i + 1);
        assert_int_equal(rows[i].full, i == 0);
        assert_int_equal(rows[i].parent, i);
        assert_int_equal(rows[i].bytes, len);
        assert_int_equal(rows[i].pages_written, 1);
        assert_int_equal(rows[i].pages_zero, i == 0 ? 3 : 0);
        assert_int_equal(rows[i].freeze_usec, 101 + i);
        assert_true(rows[i].created_usec > 0);
        assert_int_equal(rows[i].compacted_from, 0);
        assert_true(rows[i].verified);
        assert_null(rows[i].error);
    }
    agent_image_rows_free(&rows, n);
    assert_null(rows);
    agent_image_rows_free(&rows, n); /* idempotent */

    /* a bit flipped in the middle epoch while it sits in memory: the row says so */
    const rtcr_epoch_t *e2 = rtcr_image_epoch(img, 2);
    size_t len2;
    uint8_t *bytes = (uint8_t *)rtcr_epoch_bytes(e2, &len2);
    bytes[len2 - 8] ^= 0x40;
    assert_int_equal(agent_image_rows(img, &rows, &n), 0);
    assert_int_equal(n, 3);
    assert_true(rows[0].verified);
    assert_false(rows[1].verified);
    assert_non_null(rows[1].error);
    assert_true(strlen(rows[1].error) > 0);
    assert_true(rows[2].verified);
    bytes[len2 - 8] ^= 0x40;
    agent_image_rows_free(&rows, n);

    /* compaction: one full epoch that names where it starts */
    assert_int_equal(rtcr_image_compact(img, 3, &err, NULL), 0);
    assert_int_equal(agent_image_rows(img, &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].epoch, 3);
    assert_true(rows[0].full);
    assert_int_equal(rows[0].compacted_from, 1);
    assert_true(rows[0].verified);
    agent_image_rows_free(&rows, n);
    rtcr_image_destroy(&img);
}

static void test_state_dir(void **state)
{
    (void)state;
    char base[] = "/tmp/test_agent_ckpt.XXXXXX", dir[128], file[160], why[256];
    struct stat st;
    assert_non_null(mkdtemp(base));
    snprintf(dir, sizeof(dir), "%s/a/b/state/", base);
    mode_t old = umask(077);
    assert_int_equal(agent_state_dir_make(dir), 0);
    umask(old);
    snprintf(dir, sizeof(dir), "%s/a/b/state", base);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0750);
    assert_int_equal(agent_state_dir_make(dir), 0); /* exists: fine */
    assert_int_equal(agent_state_dir_writable(dir, why, sizeof(why)), 0);

    snprintf(file, sizeof(file), "%s/plain", base);
    FILE *f = fopen(file, "we");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(agent_state_dir_make(file), -ENOTDIR);
    snprintf(dir, sizeof(dir), "%s/plain/sub", base);
    assert_true(agent_state_dir_make(dir) < 0);
    assert_int_equal(agent_state_dir_make("relative/dir"), -EINVAL);

    snprintf(dir, sizeof(dir), "%s/missing", base);
    assert_true(agent_state_dir_writable(dir, why, sizeof(why)) < 0);
    assert_non_null(strstr(why, "cannot create a file there"));

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

static void test_probes(void **state)
{
    (void)state;
    char k[128];
    assert_true(strlen(agent_kernel_string(k, sizeof(k))) > 0);
    assert_non_null(strstr(k, "Linux"));
    (void)agent_have_futex_waitv(); /* either answer is fine; it must not crash or block */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latch),
        cmocka_unit_test(test_image_rows),
        cmocka_unit_test(test_state_dir),
        cmocka_unit_test(test_probes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
