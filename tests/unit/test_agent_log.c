/* test_agent_log — the logger: %m prints the error of log_*_errno's argument and the call
 * returns -abs(r); levels above the maximum are dropped; the journal format is "<N>message";
 * the terminal format carries a timestamp and the level name; errno survives a log call; and
 * control characters cannot split a record into two lines. stderr is redirected to a file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../ecu-agent/agent_log.h"

/* stderr captured into a temp file */
typedef struct capture {
    int saved;     /* the original stderr */
    char path[64]; /* temp file */
} capture_t;

static int setup(void **state)
{
    capture_t *c = calloc(1, sizeof(*c));
    strcpy(c->path, "/tmp/test_agent_log.XXXXXX");
    int fd = mkostemp(c->path, O_CLOEXEC);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    log_set_journal(false);
    log_set_max_level(LOG_INFO);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    capture_t *c = *state;
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    unlink(c->path);
    free(c);
    return 0;
}

/* Everything written so far. Caller frees. */
static char *captured(capture_t *c)
{
    FILE *f = fopen(c->path, "re");
    char *buf = NULL;
    size_t cap = 0;
    assert_non_null(f);
    if (getdelim(&buf, &cap, '\0', f) < 0) {
        free(buf);
        buf = strdup("");
    }
    fclose(f);
    return buf;
}

static void test_errno_and_levels(void **state)
{
    capture_t *c = *state;
    errno = EPERM;
    int r = log_error_errno(-ENOENT, "open %s: %m", "x.conf");
    assert_int_equal(r, -ENOENT);
    assert_int_equal(errno, EPERM); /* preserved */
    assert_int_equal(log_warning_errno(EACCES, "positive %m"), -EACCES);
    log_debug("hidden at info level");
    log_info("shown at info");
    log_set_max_level(LOG_DEBUG);
    log_debug("shown at debug");
    log_set_max_level(LOG_ERR);
    log_warning("hidden at error level");
    assert_int_equal(log_info_errno(-EIO, "dropped but returns"), -EIO);

    char *out = captured(c);
    assert_non_null(strstr(out, " error   open x.conf: No such file or directory\n"));
    assert_non_null(strstr(out, " warning positive Permission denied\n"));
    assert_non_null(strstr(out, " info    shown at info\n"));
    assert_non_null(strstr(out, " debug   shown at debug\n"));
    assert_null(strstr(out, "hidden"));
    assert_null(strstr(out, "dropped"));
    /* terminal format: "YYYY-MM-DD HH:MM:SS.mmm level message" */
    assert_int_equal(out[4], '-');
    assert_int_equal(out[10], ' ');
    assert_int_equal(out[19], '.');
    free(out);
}

static void test_journal_format(void **state)
{
    capture_t *c = *state;
    log_set_journal(true);
    log_set_max_level(LOG_DEBUG);
    log_notice("ecu '%s' ready", "ecu1");
    log_error("two\nlines");
    log_debug("dbg");
    char *out = captured(c);
    assert_string_equal(out, "<5>ecu 'ecu1' ready\n<3>two lines\n<7>dbg\n");
    free(out);
}

static void test_journal_detection(void **state)
{
    (void)state;
    setenv("JOURNAL_STREAM", "1:1", 1); /* not our stderr */
    log_open();
    unsetenv("JOURNAL_STREAM");
    log_error("plain");
    capture_t *c = *state;
    char *out = captured(c);
    assert_int_not_equal(out[0], '<');
    free(out);
}

static void test_level_names(void **state)
{
    (void)state;
    assert_int_equal(log_level_from_string("debug"), LOG_DEBUG);
    assert_int_equal(log_level_from_string("warning"), LOG_WARNING);
    assert_int_equal(log_level_from_string("3"), LOG_ERR);
    assert_int_equal(log_level_from_string("loud"), -EINVAL);
    assert_string_equal(log_level_to_string(LOG_NOTICE), "notice");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_errno_and_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_detection, setup, teardown),
        cmocka_unit_test(test_level_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
