/* test_agent_render — the reply bodies: JSON shapes of targets/caps/log/status as documented
 * (pid and failure null when absent, badge null for non-gates, rights letters), the text
 * tables (header, aligned columns, the operator's cap format), the checkpoint bodies
 * (targets' last_epoch and LAST EPOCH column, checkpoint statistics, images, check), the
 * compaction and standby state of every target (JSON objects, detail line, images footer), and that
 * control characters from a target or an image cannot reach the operator's terminal in text
 * output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../ecu-agent/agent_render.h"

static void test_targets(void **state)
{
    (void)state;
    const agent_epoch_stats_t last = {.epoch = 42,
                                      .full = false,
                                      .quiesce_usec = 12,
                                      .freeze_usec = 180,
                                      .pages_scanned = 4096,
                                      .pages_written = 3,
                                      .bytes_raw = 12288,
                                      .bytes_stored = 1876,
                                      .encode_usec = 55,
                                      .encode_cpu_usec = 41,
                                      .encoded_idle = true,
                                      .write_usec = 400};
    agent_target_row_t rows[] = {
        {.name = "brake",
         .state = "running",
         .pid = 4242,
         .restarts = 1,
         .ram_quota = 16u << 20,
         .ram_used = 1536u << 10,
         .failure = NULL},
        {.name = "logger",
         .state = "failed",
         .pid = 0,
         .restarts = 0,
         .ram_quota = 8u << 20,
         .ram_used = 0,
         .failure = "killed by signal 9 (Killed)"},
    };
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_targets(rows, 2, &json, &text), 0);
    assert_string_equal(json,
                        "[{\"name\":\"brake\",\"state\":\"running\",\"pid\":4242,\"restarts\":1,"
                        "\"ram_quota\":16777216,\"ram_used\":1572864,\"failure\":null,"
                        "\"last_epoch\":null,\"compaction\":null,\"standby\":null},"
                        "{\"name\":\"logger\",\"state\":\"failed\",\"pid\":null,\"restarts\":0,"
                        "\"ram_quota\":8388608,\"ram_used\":0,"
                        "\"failure\":\"killed by signal 9 (Killed)\",\"last_epoch\":null,"
                        "\"compaction\":null,\"standby\":null}]");
    assert_string_equal(text,
                        "NAME    STATE    PID   RESTARTS  RAM       FAILURE\n"
                        "brake   running  4242  1         1.5M/16M  -\n"
                        "logger  failed   -     0         0/8M      killed by signal 9 (Killed)\n");
    free(json);
    free(text);

    /* with a checkpointed target: last_epoch and the LAST EPOCH column */
    rows[0].last_epoch = &last;
    assert_int_equal(agent_render_targets(rows, 2, &json, &text), 0);
    assert_string_equal(json,
                        "[{\"name\":\"brake\",\"state\":\"running\",\"pid\":4242,\"restarts\":1,"
                        "\"ram_quota\":16777216,\"ram_used\":1572864,\"failure\":null,"
                        "\"last_epoch\":{\"epoch\":42,\"full\":false,\"freeze_usec\":180,"
                        "\"pages_scanned\":4096,\"pages_written\":3,\"bytes_raw\":12288,"
                        "\"bytes_stored\":1876,\"encode_usec\":55,\"encode_cpu_usec\":41,"
                        "\"encoded_idle\":true,\"idle_capped\":false},"
                        "\"compaction\":null,\"standby\":null},"
                        "{\"name\":\"logger\",\"state\":\"failed\",\"pid\":null,\"restarts\":0,"
                        "\"ram_quota\":8388608,\"ram_used\":0,"
                        "\"failure\":\"killed by signal 9 (Killed)\",\"last_epoch\":null,"
                        "\"compaction\":null,\"standby\":null}]");
    assert_string_equal(
        text, "NAME    STATE    PID   RESTARTS  RAM       LAST EPOCH                    FAILURE\n"
              "brake   running  4242  1         1.5M/16M  epoch 42 pause 180us 3 pages  -\n"
              "logger  failed   -     0         0/8M      -                             "
              "killed by signal 9 (Killed)\n");
    free(json);
    free(text);

    assert_int_equal(agent_render_targets(NULL, 0, &json, &text), 0);
    assert_string_equal(json, "[]");
    assert_string_equal(text, "no targets\n");
    free(json);
    free(text);
}

static void test_caps(void **state)
{
    (void)state;
    agent_cap_row_t rows[] = {
        {.slot = 1, .type = AGENT_CAP_TASK, .rights = 4 | 1 | 2 | 8, .object = "task 'brake'"},
        {.slot = 9, .type = AGENT_CAP_THREAD, .rights = 4 | 1, .object = "thread 'ep'"},
        {.slot = 0x201,
         .type = AGENT_CAP_GATE,
         .has_badge = true,
         .badge = 0x17a,
         .rights = 4 | 1 | 2,
         .object = "LOG session 'brake'"},
        {.slot = 0x202,
         .type = AGENT_CAP_IRQ,
         .rights = 4,
         .stale = true,
         .object = "irq\x1b[2J 5"},
    };
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_caps(rows, 4, &json, &text), 0);
    assert_string_equal(
        json, "[{\"slot\":1,\"type\":\"task\",\"badge\":null,\"rights\":\"rwsd\",\"stale\":false,"
              "\"object\":\"task 'brake'\"},"
              "{\"slot\":9,\"type\":\"thread\",\"badge\":null,\"rights\":\"rw\",\"stale\":false,"
              "\"object\":\"thread 'ep'\"},"
              "{\"slot\":513,\"type\":\"gate\",\"badge\":378,\"rights\":\"rws\",\"stale\":false,"
              "\"object\":\"LOG session 'brake'\"},"
              "{\"slot\":514,\"type\":\"irq\",\"badge\":null,\"rights\":\"r\",\"stale\":true,"
              "\"object\":\"irq\\u001b[2J 5\"}]");
    assert_string_equal(text, "SLOT      BADGE    TYPE    OBJECT\n"
                              "0x000001  -        TASK    task 'brake'\n"
                              "0x000009  -        THREAD  thread 'ep'\n"
                              "0x000201  0x0017a  GATE    LOG session 'brake'\n"
                              "0x000202  -        IRQ     irq?[2J 5 (stale)\n");
    free(json);
    free(text);
}

static void test_log(void **state)
{
    (void)state;
    const char *lines[] = {"tick=1 speed=12", "evil\r\x1b]0;pwned\a", "\xff"};
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_log(lines, 3, &json, &text), 0);
    assert_string_equal(json, "[\"tick=1 speed=12\",\"evil\\r\\u001b]0;pwned\\u0007\","
                              "\"\\ufffd\"]");
    assert_string_equal(text, "tick=1 speed=12\nevil??]0;pwned?\n\xff\n");
    free(json);
    free(text);
}

static void test_status(void **state)
{
    (void)state;
    agent_status_t st = {.name = "ecu1",
                         .pid = 77,
                         .uptime_usec = 90061000000ull,
                         .targets = 2,
                         .running = 1,
                         .failed = 1,
                         .ram_total = 512u << 20,
                         .ram_quota = 24u << 20,
                         .ram_used = 1u << 20,
                         .sensors = 1,
                         .control = "/run/rtcr/ecu1.sock",
                         .timer_priority = 10,
                         .encode_idle = true};
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_status(&st, &json, &text), 0);
    assert_string_equal(json, "{\"name\":\"ecu1\",\"pid\":77,\"uptime_ms\":90061000,"
                              "\"targets\":2,\"running\":1,\"failed\":1,"
                              "\"ram_total\":536870912,\"ram_quota\":25165824,"
                              "\"ram_used\":1048576,\"sensors\":1,"
                              "\"control\":\"/run/rtcr/ecu1.sock\",\"timer_priority\":10,"
                              "\"timer_refused\":null,\"encode_idle\":true,"
                              "\"encode_idle_refused\":null}");
    assert_non_null(strstr(text, "ecu:       ecu1\n"));
    assert_non_null(strstr(text, "uptime:    1d 01:01:01\n"));
    assert_non_null(strstr(text, "targets:   2 (1 running, 1 failed)\n"));
    assert_non_null(strstr(text, "ram:       1M used, 24M assigned, 512M total\n"));
    assert_non_null(strstr(text, "timers:    SCHED_FIFO priority 10\n"));
    assert_non_null(strstr(text, "encoding:  SCHED_IDLE (targets preempt it)\n"));
    free(json);
    free(text);

    /* refused: both say why, in JSON and in text */
    st.timer_priority = 0;
    st.timer_why = "Operation not permitted";
    st.encode_idle = false;
    st.encode_idle_why = "no CAP_SYS_NICE";
    assert_int_equal(agent_render_status(&st, &json, &text), 0);
    assert_non_null(strstr(json, "\"timer_priority\":0,\"timer_refused\":\"Operation not "
                                 "permitted\",\"encode_idle\":false,\"encode_idle_refused\":"
                                 "\"no CAP_SYS_NICE\"}"));
    assert_non_null(strstr(
        text,
        "timers:    normal scheduling (real-time priority refused: Operation not permitted)\n"));
    assert_non_null(
        strstr(text, "encoding:  normal scheduling (SCHED_IDLE not possible: no CAP_SYS_NICE)\n"));
    free(json);
    free(text);
}

static void test_checkpoint(void **state)
{
    (void)state;
    agent_epoch_stats_t s = {.epoch = 17,
                             .full = true,
                             .quiesce_usec = 210,
                             .freeze_usec = 3200,
                             .pages_scanned = 4112,
                             .pages_written = 52,
                             .bytes_raw = 212992,
                             .bytes_stored = 1797,
                             .encode_usec = 95,
                             .encode_cpu_usec = 90,
                             .write_usec = 1250000};
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_checkpoint("brake", &s, &json, &text), 0);
    assert_string_equal(json, "{\"target\":\"brake\",\"epoch\":17,\"full\":true,"
                              "\"quiesce_usec\":210,\"freeze_usec\":3200,"
                              "\"pages_scanned\":4112,\"pages_written\":52,"
                              "\"bytes_raw\":212992,\"bytes_stored\":1797,"
                              "\"encode_usec\":95,\"encode_cpu_usec\":90,"
                              "\"encoded_idle\":false,\"idle_capped\":false,"
                              "\"write_usec\":1250000}");
    assert_string_equal(text, "checkpoint of 'brake': epoch 17 (full)\n"
                              "  quiesce:         210us\n"
                              "  freeze (pause):  3.2ms\n"
                              "  pages scanned:   4112\n"
                              "  pages written:   52\n"
                              "  bytes raw:       212992 (208K)\n"
                              "  bytes stored:    1797 (1.8K)\n"
                              "  encode:          95us\n"
                              "  encode CPU:      90us\n"
                              "  write:           1.25s\n");
    free(json);
    free(text);

    /* encoded at SCHED_IDLE: said in text and JSON, and when the cap ended it */
    s.encoded_idle = true;
    assert_int_equal(agent_render_checkpoint("brake", &s, &json, &text), 0);
    assert_non_null(strstr(json, "\"encoded_idle\":true,\"idle_capped\":false,"));
    assert_non_null(strstr(text, "\n  encode CPU:      90us (at idle priority)\n"));
    free(json);
    free(text);
    s.idle_capped = true;
    assert_int_equal(agent_render_checkpoint("brake", &s, &json, &text), 0);
    assert_non_null(strstr(json, "\"encoded_idle\":true,\"idle_capped\":true,"));
    assert_non_null(
        strstr(text, "\n  encode CPU:      90us (began at idle priority, normal after the cap)\n"));
    free(json);
    free(text);
}

static void test_images(void **state)
{
    (void)state;
    /* a zone far from UTC: text and JSON must both show UTC, whatever the local zone */
    setenv("TZ", "EST+5", 1);
    tzset();
    agent_image_row_t rows[] = {
        {.epoch = 5,
         .full = true,
         .compacted_from = 1,
         .bytes = 1834,
         .pages_written = 5,
         .pages_zero = 27,
         .freeze_usec = 475,
         .encode_usec = 73,
         .created_usec = 1795259645774610ull,
         .verified = true},
        {.epoch = 6,
         .parent = 5,
         .bytes = 1315,
         .pages_written = 1,
         .freeze_usec = 137,
         .encode_usec = 64,
         .created_usec = 1795259645874610ull,
         .verified = false,
         .error = "image: data\x1b frame 0: hash mismatch"},
    };
    char *json = NULL, *text = NULL;
    assert_int_equal(
        agent_render_images("brake", rows, 2, "loaded: epoch 7 corrupt", NULL, NULL, &json, &text),
        0);
    assert_string_equal(
        json, "[{\"epoch\":5,\"kind\":\"full\",\"parent\":null,\"compacted_from\":1,"
              "\"bytes\":1834,\"pages_written\":5,\"pages_zero\":27,\"freeze_usec\":475,"
              "\"encode_usec\":73,\"created_usec\":1795259645774610,"
              "\"created\":\"2026-11-21T11:14:05.774Z\",\"verified\":true,\"error\":null},"
              "{\"epoch\":6,\"kind\":\"incremental\",\"parent\":5,\"compacted_from\":null,"
              "\"bytes\":1315,\"pages_written\":1,\"pages_zero\":0,\"freeze_usec\":137,"
              "\"encode_usec\":64,\"created_usec\":1795259645874610,"
              "\"created\":\"2026-11-21T11:14:05.874Z\",\"verified\":false,"
              "\"error\":\"image: data\\u001b frame 0: hash mismatch\"}]");
    assert_string_equal(
        text,
        "EPOCH   KIND         PARENT  SIZE     PAGES   ZERO   FREEZE   ENCODE   CREATED          "
        "         VERIFIED\n"
        "5       compacted    -       1.8K     5       27     475us    73us     "
        "2026-11-21T11:14:05.774Z  yes\n"
        "6       incremental  5       1.3K     1       0      137us    64us     "
        "2026-11-21T11:14:05.874Z  NO: image: data? frame 0: hash mismatch\n"
        "epoch 5 is epochs 1..5 compacted into one full epoch\n"
        "loaded: epoch 7 corrupt\n");
    free(json);
    free(text);

    assert_int_equal(agent_render_images("brake", NULL, 0, NULL, NULL, NULL, &json, &text), 0);
    assert_string_equal(json, "[]");
    assert_string_equal(text, "no image of 'brake'\n");
    free(json);
    free(text);
    unsetenv("TZ");
    tzset();
}

/* Render one running target with the given compaction and standby state; returns the text
 * (caller frees) and the JSON in *ret_json. */
static char *render_one(const agent_compaction_t *c, const agent_standby_t *sb, char **ret_json)
{
    agent_target_row_t row = {.name = "brake",
                              .state = "running",
                              .pid = 4242,
                              .ram_quota = 16u << 20,
                              .ram_used = 1u << 20,
                              .compaction = c,
                              .standby = sb};
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_targets(&row, 1, &json, &text), 0);
    *ret_json = json;
    return text;
}

#define ROW  "brake  running  4242  0         1M/16M  -\n"
#define HEAD "NAME   STATE    PID   RESTARTS  RAM     FAILURE\n"

/* The compaction and standby of `ecuctl targets`: the JSON objects with every field (numbers
 * as numbers, null where a field does not apply) and the detail line under the target's row
 * in every state: no compaction yet, running, committed, unwritten, failed with its message,
 * discarded, off; standby disabled, ready at an epoch, invalidated with its reason. */
static void test_targets_compaction_standby(void **state)
{
    (void)state;
    char *json, *text;

    /* no compaction yet, standby disabled */
    agent_compaction_t c = {.max_chain = 64, .chain_epochs = 3};
    agent_standby_t sb = {.enabled = false, .why = "disabled", .last_restore = "none"};
    text = render_one(&c, &sb, &json);
    assert_string_equal(text, HEAD ROW
                        "  chain 3 epochs (max 64), no compaction yet; standby: disabled\n");
    assert_string_equal(
        json, "[{\"name\":\"brake\",\"state\":\"running\",\"pid\":4242,\"restarts\":0,"
              "\"ram_quota\":16777216,\"ram_used\":1048576,\"failure\":null,\"last_epoch\":null,"
              "\"compaction\":{\"max_chain\":64,\"chain_epochs\":3,\"running\":false,"
              "\"running_from\":null,\"running_upto\":null,\"running_usec\":null,"
              "\"running_on_kept\":false,\"last\":\"none\",\"last_from\":null,"
              "\"last_upto\":null,\"last_usec\":null,\"last_ago_usec\":null,"
              "\"last_on_kept\":false,\"started\":0,\"committed\":0,\"failed\":0,"
              "\"discarded\":0,\"error\":null,\"error_ago_usec\":null},"
              "\"standby\":{\"enabled\":false,\"ready\":false,\"epoch\":null,\"bytes\":0,"
              "\"dataspaces\":0,\"apply_usec\":0,\"applied_bytes\":0,\"rebuilds\":0,"
              "\"taken\":0,\"why\":\"disabled\",\"last_restore\":\"none\"}}]");
    free(json);
    free(text);

    /* running (the first one), standby ready at epoch 112 */
    c = (agent_compaction_t){.max_chain = 64,
                             .chain_epochs = 70,
                             .running = true,
                             .running_from = 1,
                             .running_upto = 65,
                             .running_usec = 12000,
                             .started = 1};
    sb = (agent_standby_t){.enabled = true,
                           .ready = true,
                           .epoch = 112,
                           .bytes = 16u << 20,
                           .dataspaces = 4,
                           .apply_usec = 180,
                           .applied_bytes = 12288,
                           .rebuilds = 1,
                           .taken = 2,
                           .why = "",
                           .last_restore = "standby"};
    text = render_one(&c, &sb, &json);
    assert_string_equal(
        text, HEAD ROW
        "  chain 70 epochs (max 64), compaction running (1..65, 12.0ms); standby: epoch 112\n");
    assert_non_null(strstr(json, "\"compaction\":{\"max_chain\":64,\"chain_epochs\":70,"
                                 "\"running\":true,\"running_from\":1,\"running_upto\":65,"
                                 "\"running_usec\":12000,\"running_on_kept\":false,"
                                 "\"last\":\"none\","));
    assert_non_null(strstr(json, "\"standby\":{\"enabled\":true,\"ready\":true,\"epoch\":112,"
                                 "\"bytes\":16777216,\"dataspaces\":4,\"apply_usec\":180,"
                                 "\"applied_bytes\":12288,\"rebuilds\":1,\"taken\":2,"
                                 "\"why\":null,\"last_restore\":\"standby\"}}]"));
    free(json);
    free(text);

    /* committed, on kept memory; the next one running */
    c = (agent_compaction_t){.max_chain = 64,
                             .chain_epochs = 40,
                             .running = true,
                             .running_from = 65,
                             .running_upto = 104,
                             .running_usec = 900,
                             .running_on_kept = true,
                             .last = AGENT_COMPACTION_COMMITTED,
                             .last_from = 1,
                             .last_upto = 65,
                             .last_usec = 35200,
                             .last_ago_usec = 5000000,
                             .last_on_kept = true,
                             .started = 2,
                             .committed = 1};
    text = render_one(&c, &sb, &json);
    assert_string_equal(text, HEAD ROW "  chain 40 epochs (max 64), compaction running (65..104, "
                                       "900us, on kept memory), last 1..65 committed (35.2ms, on "
                                       "kept memory); standby: epoch 112\n");
    assert_non_null(strstr(json, "\"running_on_kept\":true,\"last\":\"committed\",\"last_from\":1,"
                                 "\"last_upto\":65,\"last_usec\":35200,\"last_ago_usec\":5000000,"
                                 "\"last_on_kept\":true,\"started\":2,\"committed\":1,"
                                 "\"failed\":0,\"discarded\":0,\"error\":null,"
                                 "\"error_ago_usec\":null}"));
    free(json);
    free(text);

    /* failed with its message (control characters cannot reach the terminal); standby
     * invalidated with its reason */
    c = (agent_compaction_t){.max_chain = 8,
                             .chain_epochs = 12,
                             .last = AGENT_COMPACTION_FAILED,
                             .last_from = 9,
                             .last_upto = 17,
                             .last_usec = 4100,
                             .last_ago_usec = 2000000,
                             .started = 3,
                             .committed = 2,
                             .failed = 1,
                             .error = "compaction of epochs 9..17 failed: epoch 12: frame\x1b 3: "
                                      "hash mismatch",
                             .error_ago_usec = 2000000};
    sb = (agent_standby_t){.enabled = true, .why = "a checkpoint failed", .last_restore = "decode"};
    text = render_one(&c, &sb, &json);
    assert_string_equal(text, HEAD ROW "  chain 12 epochs (max 8), last compaction 9..17 FAILED "
                                       "(chain unchanged), 1 of 3 failed; standby: invalid (a "
                                       "checkpoint failed)\n"
                                       "  last compaction failure (2.00s ago): compaction of "
                                       "epochs 9..17 failed: epoch 12: frame? 3: hash mismatch\n");
    assert_non_null(strstr(json, "\"last\":\"failed\",\"last_from\":9,\"last_upto\":17,"
                                 "\"last_usec\":4100,\"last_ago_usec\":2000000,"
                                 "\"last_on_kept\":false,\"started\":3,\"committed\":2,"
                                 "\"failed\":1,\"discarded\":0,\"error\":\"compaction of epochs "
                                 "9..17 failed: epoch 12: frame\\u001b 3: hash mismatch\","
                                 "\"error_ago_usec\":2000000}"));
    assert_non_null(strstr(json, "\"standby\":{\"enabled\":true,\"ready\":false,\"epoch\":null,"));
    assert_non_null(strstr(json, "\"why\":\"a checkpoint failed\",\"last_restore\":\"decode\"}"));
    free(json);
    free(text);

    /* unwritten (committed in memory, its file not written) */
    c.last = AGENT_COMPACTION_UNWRITTEN;
    c.error = "compaction of epochs 9..17: full epoch 17 not written";
    text = render_one(&c, &sb, &json);
    assert_non_null(strstr(text, "last compaction 9..17 NOT WRITTEN (kept in memory only), 1 of "
                                 "3 failed; standby: invalid"));
    assert_non_null(strstr(text, "\n  last compaction failure (2.00s ago): compaction of epochs "
                                 "9..17: full epoch 17 not written\n"));
    assert_non_null(strstr(json, "\"last\":\"unwritten\""));
    free(json);
    free(text);

    /* discarded; and compaction off */
    c = (agent_compaction_t){.max_chain = 8,
                             .chain_epochs = 1,
                             .last = AGENT_COMPACTION_DISCARDED,
                             .last_from = 1,
                             .last_upto = 9,
                             .started = 1,
                             .discarded = 1};
    text = render_one(&c, &sb, &json);
    assert_string_equal(text, HEAD ROW "  chain 1 epoch (max 8), last compaction 1..9 discarded "
                                       "(chain replaced); standby: invalid (a checkpoint "
                                       "failed)\n");
    assert_non_null(strstr(json, "\"last\":\"discarded\""));
    assert_non_null(strstr(json, "\"discarded\":1"));
    free(json);
    free(text);
    c = (agent_compaction_t){.chain_epochs = 5};
    text = render_one(&c, NULL, &json);
    assert_string_equal(text, HEAD ROW "  chain 5 epochs, compaction off\n");
    assert_non_null(strstr(json, "\"standby\":null"));
    free(json);
    free(text);

    /* nothing to say: no chain, no compaction, no standby */
    c = (agent_compaction_t){.max_chain = 64};
    sb = (agent_standby_t){.why = "disabled"};
    text = render_one(&c, &sb, &json);
    assert_string_equal(text, HEAD ROW);
    free(json);
    free(text);
    assert_string_equal(agent_compaction_outcome_name(AGENT_COMPACTION_OUTCOME_MAX), "?");
}

/* The footer of `ecuctl images`: the standby's epoch and the compaction state, with the
 * last compaction failure; the JSON body stays the list of epochs. */
static void test_images_footer(void **state)
{
    (void)state;
    agent_image_row_t row = {.epoch = 5,
                             .full = true,
                             .bytes = 1834,
                             .pages_written = 5,
                             .created_usec = 1795259645774610ull,
                             .verified = true};
    agent_compaction_t c = {.max_chain = 4,
                            .chain_epochs = 1,
                            .running = true,
                            .running_from = 5,
                            .running_upto = 10,
                            .running_usec = 2500,
                            .last = AGENT_COMPACTION_UNWRITTEN,
                            .last_from = 1,
                            .last_upto = 5,
                            .last_usec = 3100,
                            .started = 2,
                            .failed = 1,
                            .error = "compaction of epochs 1..5: full epoch 5 not written",
                            .error_ago_usec = 1500};
    agent_standby_t sb = {.enabled = true,
                          .ready = true,
                          .epoch = 5,
                          .bytes = 16u << 20,
                          .apply_usec = 180,
                          .last_restore = "none"};
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_images("brake", &row, 1, NULL, &c, &sb, &json, &text), 0);
    assert_non_null(strstr(text, "  yes\nstandby: epoch 5 (16M, updated in 180us)\n"
                                 "compaction: compaction running (5..10, 2.5ms), last 1..5 NOT "
                                 "WRITTEN (kept in memory only); 2 started, 0 committed, 1 "
                                 "failed, 0 discarded (max chain 4)\n"
                                 "last compaction failure (1.5ms ago): compaction of epochs 1..5: "
                                 "full epoch 5 not written\n"));
    assert_int_equal(json[0], '[');
    assert_null(strstr(json, "compaction\""));
    free(json);
    free(text);

    sb = (agent_standby_t){.enabled = true, .why = "taken by a restore"};
    c = (agent_compaction_t){.max_chain = 4, .chain_epochs = 1};
    assert_int_equal(agent_render_images("brake", &row, 1, NULL, &c, &sb, &json, &text), 0);
    assert_non_null(strstr(text, "  yes\nstandby: invalid (taken by a restore)\n"
                                 "compaction: no compaction yet; 0 started, 0 committed, 0 "
                                 "failed, 0 discarded (max chain 4)\n"));
    assert_null(strstr(text, "failure"));
    free(json);
    free(text);
}

static void test_check(void **state)
{
    (void)state;
    agent_check_target_t tg[] = {
        {.name = "brake",
         .checkpoint_ms = 50,
         .on_crash = "restore",
         .configured = "auto",
         .effective = "hash"},
        {.name = "logger",
         .checkpoint_ms = 0,
         .on_crash = "none",
         .configured = "full",
         .effective = "full"},
    };
    agent_check_t c = {.ecu = "ecu1",
                       .kernel = "Linux 6.1.0 aarch64",
                       .dirty_mode = "hash",
                       .dirty_reason = "UFFD_FEATURE_WP_ASYNC not supported",
                       .futex_waitv = true,
                       .state_dir = "/var/lib/rtcr/ecu1",
                       .state_dir_writable = false,
                       .state_dir_error = "cannot create a file there: Permission denied",
                       .targets = tg,
                       .n_targets = 2};
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_check(&c, &json, &text), 0);
    assert_string_equal(
        json, "{\"ecu\":\"ecu1\",\"kernel\":\"Linux 6.1.0 aarch64\","
              "\"dirty_tracking\":{\"mode\":\"hash\","
              "\"reason\":\"UFFD_FEATURE_WP_ASYNC not supported\"},\"futex_waitv\":true,"
              "\"state_dir\":{\"path\":\"/var/lib/rtcr/ecu1\",\"writable\":false,"
              "\"error\":\"cannot create a file there: Permission denied\"},"
              "\"targets\":[{\"name\":\"brake\",\"checkpoint_ms\":50,\"on_crash\":\"restore\","
              "\"dirty_tracking\":\"auto\",\"effective\":\"hash\"},"
              "{\"name\":\"logger\",\"checkpoint_ms\":0,\"on_crash\":\"none\","
              "\"dirty_tracking\":\"full\",\"effective\":\"full\"}]}");
    assert_string_equal(
        text,
        "ecu:             ecu1\n"
        "kernel:          Linux 6.1.0 aarch64\n"
        "dirty tracking:  hash (uffd-wp unavailable: UFFD_FEATURE_WP_ASYNC not supported)\n"
        "futex_waitv:     available\n"
        "state dir:       /var/lib/rtcr/ecu1 (NOT writable: cannot create a file there: "
        "Permission denied)\n"
        "target brake: checkpoint every 50 ms, on_crash restore, dirty tracking auto -> hash\n"
        "target logger: no periodic checkpoints, on_crash none, dirty tracking full\n");
    free(json);
    free(text);

    c.dirty_mode = "uffd-wp";
    c.dirty_reason = "";
    c.state_dir_writable = true;
    c.n_targets = 0;
    assert_int_equal(agent_render_check(&c, &json, &text), 0);
    assert_non_null(strstr(json, "\"dirty_tracking\":{\"mode\":\"uffd-wp\",\"reason\":null}"));
    assert_non_null(strstr(json, "\"writable\":true,\"error\":null"));
    assert_non_null(strstr(text, "dirty tracking:  uffd-wp\n"));
    assert_non_null(strstr(text, "/var/lib/rtcr/ecu1 (writable)\n"));
    free(json);
    free(text);
}

static void test_helpers(void **state)
{
    (void)state;
    char b[16], r[5];
    assert_string_equal(agent_size_string(0, b, sizeof(b)), "0");
    assert_string_equal(agent_size_string(1023, b, sizeof(b)), "1023");
    assert_string_equal(agent_size_string(1024, b, sizeof(b)), "1K");
    assert_string_equal(agent_size_string(16u << 20, b, sizeof(b)), "16M");
    assert_string_equal(agent_size_string(3u << 29, b, sizeof(b)), "1.5G");
    assert_string_equal(agent_rights_string(0, r), "");
    assert_string_equal(agent_rights_string(4 | 2, r), "rs");
    assert_string_equal(agent_cap_type_name(AGENT_CAP_IRQ), "irq");
    assert_string_equal(agent_cap_type_name(AGENT_CAP_TYPE_MAX), "?");
    assert_string_equal(agent_usec_string(0, b, sizeof(b)), "0us");
    assert_string_equal(agent_usec_string(999, b, sizeof(b)), "999us");
    assert_string_equal(agent_usec_string(3250, b, sizeof(b)), "3.2ms");
    assert_string_equal(agent_usec_string(2500000, b, sizeof(b)), "2.50s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_targets_compaction_standby),
        cmocka_unit_test(test_images_footer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
