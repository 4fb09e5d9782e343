/* test_agent_json — the JSON writer: structure and commas, escaping of hostile strings
 * (quotes, backslashes, control characters, NUL, U+2028) and replacement of every kind of
 * malformed UTF-8 by U+FFFD, and the sticky nesting errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../ecu-agent/agent_json.h"

/* Render one string value and compare the document. */
static void check_string(const char *in, size_t len, const char *want)
{
    agent_json_t *j = agent_json_new();
    assert_non_null(j);
    agent_json_string_len(j, in, len);
    assert_int_equal(agent_json_result(j), 0);
    assert_string_equal(agent_json_text(j), want);
    assert_int_equal(agent_json_len(j), strlen(want));
    agent_json_destroy(&j);
    assert_null(j);
}

#define CHECK(lit, want) check_string(lit, sizeof(lit) - 1, want)

static void test_structure(void **state)
{
    (void)state;
    agent_json_t *j = agent_json_new();
    agent_json_array_begin(j);
    agent_json_object_begin(j);
    agent_json_key(j, "name");
    agent_json_string(j, "brake");
    agent_json_key(j, "pid");
    agent_json_int(j, -1);
    agent_json_key(j, "big");
    agent_json_uint(j, UINT64_MAX);
    agent_json_key(j, "ok");
    agent_json_bool(j, true);
    agent_json_key(j, "failure");
    agent_json_string(j, NULL);
    agent_json_key(j, "list");
    agent_json_array_begin(j);
    agent_json_array_end(j);
    agent_json_object_end(j);
    agent_json_object_begin(j);
    agent_json_object_end(j);
    agent_json_null(j);
    agent_json_array_end(j);
    assert_int_equal(agent_json_result(j), 0);
    assert_string_equal(agent_json_text(j),
                        "[{\"name\":\"brake\",\"pid\":-1,\"big\":18446744073709551615,"
                        "\"ok\":true,\"failure\":null,\"list\":[]},{},null]");
    agent_json_destroy(&j);
    agent_json_destroy(&j);
    agent_json_destroy(NULL);
}

static void test_escaping(void **state)
{
    (void)state;
    CHECK("plain", "\"plain\"");
    CHECK("", "\"\"");
    CHECK("say \"hi\"", "\"say \\\"hi\\\"\"");
    CHECK("C:\\dir\\", "\"C:\\\\dir\\\\\"");
    CHECK("a\nb\rc\td\be\ff", "\"a\\nb\\rc\\td\\be\\ff\"");
    CHECK("\x01\x1b[31mred\x7f", "\"\\u0001\\u001b[31mred\\u007f\"");
    CHECK("nul\0byte", "\"nul\\u0000byte\"");
    CHECK("</script>", "\"</script>\"");
    /* valid multi-byte UTF-8 passes unchanged: é, €, U+1F600 */
    CHECK("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    /* line and paragraph separators are escaped */
    CHECK("\xe2\x80\xa8\xe2\x80\xa9", "\"\\u2028\\u2029\"");
    /* keys are escaped too */
    agent_json_t *j = agent_json_new();
    agent_json_object_begin(j);
    agent_json_key(j, "k\"\n");
    agent_json_int(j, 1);
    agent_json_object_end(j);
    assert_string_equal(agent_json_text(j), "{\"k\\\"\\n\":1}");
    agent_json_destroy(&j);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    CHECK("\xff", "\"\\ufffd\"");                                  /* never valid */
    CHECK("a\x80z", "\"a\\ufffdz\"");                              /* stray continuation */
    CHECK("\xc0\xaf", "\"\\ufffd\\ufffd\"");                       /* overlong '/' */
    CHECK("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");            /* overlong 3-byte */
    CHECK("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");            /* surrogate U+D800 */
    CHECK("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* above U+10FFFF */
    CHECK("\xe2\x82", "\"\\ufffd\\ufffd\"");                       /* truncated at the end */
    CHECK("\xe2\x82x", "\"\\ufffd\\ufffdx\"");                     /* truncated in the middle */
    CHECK("\xc3\xa9\xff\xc3\xa9", "\"\xc3\xa9\\ufffd\xc3\xa9\"");  /* resync after garbage */
}

static void test_long_string(void **state)
{
    (void)state;
    size_t n = 100000;
    char *s = malloc(n + 1);
    memset(s, '"', n);
    s[n] = '\0';
    char *q = agent_json_quote(s, n);
    assert_non_null(q);
    assert_int_equal(strlen(q), 2 * n + 2);
    assert_int_equal(q[0], '"');
    assert_int_equal(q[1], '\\');
    assert_int_equal(q[2 * n + 1], '"');
    free(q);
    free(s);
}

static void test_nesting_errors(void **state)
{
    (void)state;
    agent_json_t *j;

    j = agent_json_new(); /* end without begin */
    agent_json_array_end(j);
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* key in an array */
    agent_json_array_begin(j);
    agent_json_key(j, "x");
    agent_json_array_end(j);
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* value in an object without a key */
    agent_json_object_begin(j);
    agent_json_int(j, 1);
    agent_json_object_end(j);
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* key without a value */
    agent_json_object_begin(j);
    agent_json_key(j, "x");
    agent_json_object_end(j);
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* mismatched close */
    agent_json_object_begin(j);
    agent_json_array_end(j);
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* left open */
    agent_json_array_begin(j);
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* empty document */
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* two top-level values */
    agent_json_int(j, 1);
    agent_json_int(j, 2);
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* too deep */
    for (int i = 0; i <= AGENT_JSON_DEPTH_MAX; i++)
        agent_json_array_begin(j);
    assert_int_equal(agent_json_result(j), -EINVAL);
    agent_json_destroy(&j);

    j = agent_json_new(); /* exactly the maximum depth is fine */
    for (int i = 0; i < AGENT_JSON_DEPTH_MAX; i++)
        agent_json_array_begin(j);
    for (int i = 0; i < AGENT_JSON_DEPTH_MAX; i++)
        agent_json_array_end(j);
    assert_int_equal(agent_json_result(j), 0);
    agent_json_destroy(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure),      cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_invalid_utf8),   cmocka_unit_test(test_long_string),
        cmocka_unit_test(test_nesting_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
