/* test_agent_render — the reply bodies: JSON shapes of targets/caps/log/status as documented
 * (pid and failure null when absent, badge null for non-gates, rights letters), the text
 * tables (header, aligned columns, the operator's cap format), and that control characters
 * from a target cannot reach the operator's terminal in text output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../ecu-agent/agent_render.h"

static void test_targets(void **state)
{
    (void)state;
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
                        "\"ram_quota\":16777216,\"ram_used\":1572864,\"failure\":null},"
                        "{\"name\":\"logger\",\"state\":\"failed\",\"pid\":null,\"restarts\":0,"
                        "\"ram_quota\":8388608,\"ram_used\":0,"
                        "\"failure\":\"killed by signal 9 (Killed)\"}]");
    assert_string_equal(text,
                        "NAME    STATE    PID   RESTARTS  RAM       FAILURE\n"
                        "brake   running  4242  1         1.5M/16M  -\n"
                        "logger  failed   -     0         0/8M      killed by signal 9 (Killed)\n");
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
                         .control = "/run/rtcr/ecu1.sock"};
    char *json = NULL, *text = NULL;
    assert_int_equal(agent_render_status(&st, &json, &text), 0);
    assert_string_equal(json, "{\"name\":\"ecu1\",\"pid\":77,\"uptime_ms\":90061000,"
                              "\"targets\":2,\"running\":1,\"failed\":1,"
                              "\"ram_total\":536870912,\"ram_quota\":25165824,"
                              "\"ram_used\":1048576,\"sensors\":1,"
                              "\"control\":\"/run/rtcr/ecu1.sock\"}");
    assert_non_null(strstr(text, "ecu:       ecu1\n"));
    assert_non_null(strstr(text, "uptime:    1d 01:01:01\n"));
    assert_non_null(strstr(text, "targets:   2 (1 running, 1 failed)\n"));
    assert_non_null(strstr(text, "ram:       1M used, 24M assigned, 512M total\n"));
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets), cmocka_unit_test(test_caps),    cmocka_unit_test(test_log),
        cmocka_unit_test(test_status),  cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
