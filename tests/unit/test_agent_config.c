/* test_agent_config — the agent's config loader: config/single.conf loads with the expected
 * values; defaults apply; and every class of error is refused with a message that names the
 * file and the key (or the line, for syntax errors). Binaries and ROM files are real files in
 * a temporary directory, because the loader checks that they exist. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <rtcr/dirty.h>

#include "../../ecu-agent/agent_config.h"

/* Temporary tree: DIR/targets/{brake,logger} (executable), DIR/brake.calib, DIR/plain (0644). */
typedef struct fixture {
    char dir[64];   /* the temp dir */
    char tdir[128]; /* DIR/targets */
    char conf[128]; /* DIR/x.conf: the path used in messages */
} fixture_t;

static void touch(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x\n", 2), 2);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char p[256];
    strcpy(f->dir, "/tmp/test_agent_config.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->tdir, sizeof(f->tdir), "%s/targets", f->dir);
    assert_int_equal(mkdir(f->tdir, 0755), 0);
    snprintf(p, sizeof(p), "%s/brake", f->tdir);
    touch(p, 0755);
    snprintf(p, sizeof(p), "%s/logger", f->tdir);
    touch(p, 0755);
    snprintf(p, sizeof(p), "%s/plain", f->tdir);
    touch(p, 0644);
    snprintf(p, sizeof(p), "%s/brake.calib", f->dir);
    touch(p, 0644);
    snprintf(f->conf, sizeof(f->conf), "%s/x.conf", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* The source tree's config directory: $RTCR_SRCDIR/config, else relative to this file. */
static void source_config(char *buf, size_t len)
{
    const char *src = getenv("RTCR_SRCDIR");
    if (src)
        snprintf(buf, len, "%s/config/single.conf", src);
    else
        snprintf(buf, len, "%s/../../config/single.conf",
                 strrchr(__FILE__, '/') ? "tests/unit" : ".");
}

static void test_single_conf_loads(void **state)
{
    fixture_t *f = *state;
    char path[256], *err = NULL;
    agent_config_t *cfg = NULL;
    source_config(path, sizeof(path));

    int r = agent_config_load(path, f->tdir, &cfg, &err);
    if (r < 0)
        fail_msg("single.conf: %s", err ? err : "?");
    assert_int_equal(r, 0);
    assert_null(err);
    assert_string_equal(cfg->name, "ecu1");
    assert_string_equal(cfg->control, "/run/rtcr/ecu1.sock");
    assert_string_equal(cfg->state_dir, "/var/lib/rtcr/ecu1");
    assert_int_equal(cfg->ram, 512u << 20);
    assert_int_equal(cfg->log_lines, 200);
    assert_int_equal(cfg->timer_priority, AGENT_TIMER_PRIORITY); /* defaults */
    assert_true(cfg->encode_idle);
    assert_string_equal(cfg->target_dir, f->tdir); /* target_dir = "" means the default */

    assert_int_equal(cfg->n_targets, 2);
    const agent_target_conf_t *b = agent_config_find_target(cfg, "brake");
    assert_non_null(b);
    char want[256];
    snprintf(want, sizeof(want), "%s/brake", f->tdir);
    assert_string_equal(b->binary, want);
    assert_int_equal(b->ram, 16u << 20);
    assert_int_equal(b->caps, 512);
    assert_true(b->autostart);
    assert_int_equal(b->n_roms, 1);
    assert_string_equal(b->roms[0].name, "calibration");
    const char *calib = b->roms[0].path;
    assert_true(strlen(calib) > strlen("config/brake.calib"));
    assert_string_equal(calib + strlen(calib) - strlen("config/brake.calib"), "config/brake.calib");
    assert_int_equal(access(calib, R_OK), 0);

    const agent_target_conf_t *l = agent_config_find_target(cfg, "logger");
    assert_non_null(l);
    assert_int_equal(l->ram, 8u << 20);
    assert_int_equal(l->caps, 256);
    assert_true(l->autostart);
    assert_int_equal(l->n_roms, 1);
    assert_string_equal(l->roms[0].name, "messages");
    assert_int_equal(access(l->roms[0].path, R_OK), 0);
    assert_null(agent_config_find_target(cfg, "nope"));

    assert_int_equal(cfg->n_sensors, 1);
    assert_string_equal(cfg->sensors[0].name, "wheel_speed");
    assert_int_equal(cfg->sensors[0].line, 5);
    assert_int_equal(cfg->sensors[0].period_ms, 20);
    agent_config_destroy(&cfg);
    assert_null(cfg);
    agent_config_destroy(&cfg); /* idempotent */
    agent_config_destroy(NULL);
}

static void test_defaults(void **state)
{
    fixture_t *f = *state;
    char path[160], *err = NULL;
    agent_config_t *cfg = NULL;
    snprintf(path, sizeof(path), "%s/ecu7.conf", f->dir);
    const char *text = "targets\n"
                       "    brake\n"
                       "        binary = brake\n"
                       "        provides = \"speed, pressure\"\n";
    int r = agent_config_parse(path, text, f->tdir, &cfg, &err);
    if (r < 0)
        fail_msg("%s", err);
    assert_string_equal(cfg->name, "ecu7"); /* from the file name */
    assert_string_equal(cfg->control, "/run/rtcr/ecu7.sock");
    assert_string_equal(cfg->state_dir, "/var/lib/rtcr/ecu7");
    assert_int_equal(cfg->ram, 512u << 20);
    assert_int_equal(cfg->log_lines, 200);
    assert_int_equal(cfg->n_targets, 1);
    assert_int_equal(cfg->targets[0].ram, 16u << 20);
    assert_int_equal(cfg->targets[0].caps, 512);
    assert_true(cfg->targets[0].autostart);
    assert_int_equal(cfg->targets[0].n_services, 2);
    assert_int_equal(cfg->targets[0].checkpoint_ms, 0); /* checkpoint defaults */
    assert_int_equal(cfg->targets[0].on_crash, AGENT_ON_CRASH_NONE);
    assert_int_equal(cfg->targets[0].dirty_mode, AGENT_DIRTY_AUTO);
    assert_int_equal(cfg->targets[0].granularity, 4096);
    assert_int_equal(cfg->targets[0].quiesce_ms, 500);
    assert_int_equal(cfg->targets[0].max_chain, 64);
    assert_string_equal(cfg->targets[0].services[0], "speed");
    assert_string_equal(cfg->targets[0].services[1], "pressure");
    assert_int_equal(cfg->n_sensors, 0);
    agent_config_destroy(&cfg);

    /* no default given: the compile-time directory */
    text = "ecu\n    name = e\n";
    assert_int_equal(agent_config_parse(path, text, NULL, &cfg, &err), 0);
    assert_string_equal(cfg->target_dir, RTCR_TARGET_DIR);
    assert_int_equal(cfg->n_targets, 0);
    agent_config_destroy(&cfg);

    /* the scheduling of the ECU's own threads, set explicitly */
    text = "ecu\n    timer_priority = 0\n    encode_idle = off\n";
    assert_int_equal(agent_config_parse(path, text, NULL, &cfg, &err), 0);
    assert_int_equal(cfg->timer_priority, 0);
    assert_false(cfg->encode_idle);
    agent_config_destroy(&cfg);
    text = "ecu\n    timer_priority = 99\n    encode_idle = yes\n";
    assert_int_equal(agent_config_parse(path, text, NULL, &cfg, &err), 0);
    assert_int_equal(cfg->timer_priority, 99);
    assert_true(cfg->encode_idle);
    agent_config_destroy(&cfg);
}

static void test_checkpoint_keys(void **state)
{
    fixture_t *f = *state;
    char *err = NULL;
    agent_config_t *cfg = NULL;
    const char *text = "targets\n"
                       "    brake\n"
                       "        binary = brake\n"
                       "        checkpoint_ms = 10\n"
                       "        on_crash = restore\n"
                       "        dirty_tracking = hash\n"
                       "        granularity = 64K\n"
                       "        quiesce_ms = 20\n"
                       "        max_chain = 0\n"
                       "    logger\n"
                       "        binary = logger\n"
                       "        on_crash = restart\n"
                       "        dirty_tracking = uffd-wp\n"
                       "        checkpoint_ms = 0\n"
                       "    third\n"
                       "        binary = logger\n"
                       "        dirty_tracking = full\n"
                       "        on_crash = none\n"
                       "        dirty_tracking = auto\n";
    /* the duplicate key in "third" must be refused; without it everything loads */
    assert_int_equal(agent_config_parse(f->conf, text, f->tdir, &cfg, &err), -EINVAL);
    assert_non_null(strstr(err, ": targets/third/dirty_tracking: duplicate key"));
    free(err);
    err = NULL;
    char *fixed = strdup(text);
    *strstr(fixed, "        dirty_tracking = auto\n") = '\0';
    int r = agent_config_parse(f->conf, fixed, f->tdir, &cfg, &err);
    free(fixed);
    if (r < 0)
        fail_msg("%s", err);
    assert_int_equal(cfg->n_targets, 3);
    const agent_target_conf_t *b = &cfg->targets[0], *l = &cfg->targets[1], *t = &cfg->targets[2];
    assert_int_equal(b->checkpoint_ms, 10);
    assert_int_equal(b->on_crash, AGENT_ON_CRASH_RESTORE);
    assert_int_equal(b->dirty_mode, RTCR_DIRTY_HASH);
    assert_int_equal(b->granularity, 64u << 10);
    assert_int_equal(b->quiesce_ms, 20);
    assert_int_equal(b->max_chain, 0);
    assert_int_equal(l->on_crash, AGENT_ON_CRASH_RESTART);
    assert_int_equal(l->dirty_mode, RTCR_DIRTY_UFFD_WP);
    assert_int_equal(l->checkpoint_ms, 0);
    assert_int_equal(t->dirty_mode, RTCR_DIRTY_FULL);
    assert_int_equal(t->on_crash, AGENT_ON_CRASH_NONE);
    agent_config_destroy(&cfg);

    assert_string_equal(agent_on_crash_name(AGENT_ON_CRASH_RESTORE), "restore");
    assert_string_equal(agent_on_crash_name(AGENT_ON_CRASH_MAX), "?");
}

static void test_paths(void **state)
{
    fixture_t *f = *state;
    char *err = NULL, want[256];
    agent_config_t *cfg = NULL;
    /* relative target_dir and a binary with a slash are relative to the config's directory */
    const char *text = "ecu\n"
                       "    target_dir = targets\n"
                       "    ram = 1G\n"
                       "targets\n"
                       "    a\n"
                       "        binary = brake\n"
                       "        autostart = no\n"
                       "    b\n"
                       "        binary = \"targets/logger\"\n"
                       "        rom\n"
                       "            calib = '" /* absolute ROM path stays */;
    char full[1024];
    snprintf(full, sizeof(full), "%s%s/brake.calib'\n", text, f->dir);
    int r = agent_config_parse(f->conf, full, "/nonexistent", &cfg, &err);
    if (r < 0)
        fail_msg("%s", err);
    assert_string_equal(cfg->target_dir, f->tdir);
    snprintf(want, sizeof(want), "%s/brake", f->tdir);
    assert_string_equal(cfg->targets[0].binary, want);
    assert_false(cfg->targets[0].autostart);
    snprintf(want, sizeof(want), "%s/targets/logger", f->dir);
    assert_string_equal(cfg->targets[1].binary, want);
    snprintf(want, sizeof(want), "%s/brake.calib", f->dir);
    assert_string_equal(cfg->targets[1].roms[0].path, want);
    agent_config_destroy(&cfg);
}

/* One invalid config and the message it must produce. */
typedef struct bad_case {
    const char *what; /* what the case checks */
    const char *text; /* config text; "@T" is not substituted: paths resolve via the fixture */
    const char *want; /* expected message after "DIR/x.conf" */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"bad size", "targets\n    brake\n        binary = brake\n        ram = 16Q\n",
     ": targets/brake/ram: \"16Q\" is not a size (use 16M, 1G, ...)"},
    {"size overflow", "ecu\n    ram = 99999999999999G\n",
     ": ecu/ram: \"99999999999999G\" is too large"},
    {"zero size", "ecu\n    ram = 0\n", ": ecu/ram: must not be 0"},
    {"unknown ecu key", "ecu\n    nmae = ecu1\n", ": ecu/nmae: unknown key"},
    {"unknown target key", "targets\n    brake\n        binary = brake\n        rma = 1M\n",
     ": targets/brake/rma: unknown key"},
    {"unknown sensor key", "sensors\n    s\n        line = 1\n        period = 5\n",
     ": sensors/s/period: unknown key"},
    {"unknown section", "ecus\n    name = x\n", ": ecus: unknown section"},
    {"missing binary key", "targets\n    brake\n        ram = 1M\n",
     ": targets/brake/binary: missing"},
    {"binary not found", "targets\n    brake\n        binary = nosuch\n",
     "/targets/nosuch\": No such file or directory"},
    {"binary not executable", "targets\n    brake\n        binary = plain\n",
     "/targets/plain\" is not an executable file"},
    {"rom not found",
     "targets\n    brake\n        binary = brake\n        rom\n            c = nope\n",
     ": targets/brake/rom/c: \""},
    {"rom named binary",
     "targets\n    brake\n        binary = brake\n        rom\n            binary = brake.calib\n",
     ": targets/brake/rom/binary: \"binary\" is the target's executable"},
    {"duplicate target",
     "targets\n    brake\n        binary = brake\n    brake\n        binary = brake\n",
     ": targets/brake: duplicate key"},
    {"duplicate key", "ecu\n    ram = 1M\n    ram = 2M\n", ": ecu/ram: duplicate key"},
    {"duplicate irq line",
     "sensors\n    a\n        line = 5\n        period_ms = 10\n    b\n        line = 5\n"
     "        period_ms = 20\n",
     ": sensors/b/line: line 5 is already driven by sensor 'a'"},
    {"line out of range", "sensors\n    a\n        line = 256\n        period_ms = 10\n",
     ": sensors/a/line: 256 is out of range (0..255)"},
    {"period zero", "sensors\n    a\n        line = 1\n        period_ms = 0\n",
     ": sensors/a/period_ms: 0 is out of range (1..3600000)"},
    {"missing period", "sensors\n    a\n        line = 1\n", ": sensors/a/period_ms: missing"},
    {"caps too many", "targets\n    brake\n        binary = brake\n        caps = 4097\n",
     ": targets/brake/caps: 4097 is out of range (1..4096)"},
    {"caps zero", "targets\n    brake\n        binary = brake\n        caps = 0\n",
     ": targets/brake/caps: 0 is out of range (1..4096)"},
    {"caps not a number", "targets\n    brake\n        binary = brake\n        caps = -5\n",
     ": targets/brake/caps: \"-5\" is not a number"},
    {"bad bool", "targets\n    brake\n        binary = brake\n        autostart = maybe\n",
     ": targets/brake/autostart: \"maybe\" is not a boolean"},
    {"log_lines", "ecu\n    log_lines = many\n", ": ecu/log_lines: \"many\" is not a number"},
    {"timer_priority", "ecu\n    timer_priority = 100\n",
     ": ecu/timer_priority: 100 is out of range (0..99)"},
    {"encode_idle", "ecu\n    encode_idle = sometimes\n",
     ": ecu/encode_idle: \"sometimes\" is not a boolean"},
    {"relative control", "ecu\n    control = ecu.sock\n",
     ": ecu/control: \"ecu.sock\" is not an absolute path"},
    {"bad ecu name", "ecu\n    name = \"ecu 1\"\n", ": ecu/name: \"ecu 1\" is not a valid name"},
    {"bad target name", "targets\n    br@ke\n        binary = brake\n",
     ": targets/br@ke: \"br@ke\" is not a valid name"},
    {"section with value", "targets = 3\n", ": targets: is a section and takes no value"},
    {"value with children", "ecu\n    ram = 5M\n        x = 1\n",
     ": ecu/ram: is a value, not a section"},
    {"missing value", "ecu\n    name\n", ": ecu/name: missing value"},
    {"bad indentation", "ecu\n    ram = 16M\n targets\n",
     ":3: indentation is not a multiple of 4 spaces"},
    {"quota sum",
     "ecu\n    ram = 16M\ntargets\n    a\n        binary = brake\n        ram = 10M\n"
     "    b\n        binary = brake\n        ram = 10M\n",
     ": targets: the targets' RAM quotas add up to 20971520 bytes, more than ecu/ram"},
    {"tab indent", "ecu\n\tname = x\n", ":2: tab in indentation"},
    {"jump two levels", "ecu\n        name = x\n", ":2: indented more than one level"},
    {"unclosed quote", "ecu\n    name = \"ecu1\n", ":2: missing closing quote"},
    {"garbage after value", "ecu\n    name = \"a\"b\n", ":2: unexpected text"},
    {"missing value after =", "ecu\n    name =\n", ":2: missing value after '='"},
    {"checkpoint_ms too short",
     "targets\n    brake\n        binary = brake\n        checkpoint_ms = 9\n",
     ": targets/brake/checkpoint_ms: 9 ms is too short (0 = off, else 10..3600000)"},
    {"checkpoint_ms too long",
     "targets\n    brake\n        binary = brake\n        checkpoint_ms = 3600001\n",
     ": targets/brake/checkpoint_ms: 3600001 is out of range (0..3600000)"},
    {"checkpoint_ms not a number",
     "targets\n    brake\n        binary = brake\n        checkpoint_ms = 10ms\n",
     ": targets/brake/checkpoint_ms: \"10ms\" is not a number"},
    {"bad on_crash", "targets\n    brake\n        binary = brake\n        on_crash = reboot\n",
     ": targets/brake/on_crash: \"reboot\" is not a crash policy (use none, restart or restore)"},
    {"bad dirty_tracking",
     "targets\n    brake\n        binary = brake\n        dirty_tracking = soft-dirty\n",
     ": targets/brake/dirty_tracking: \"soft-dirty\" is not a tracking mode"},
    {"granularity not a power of two",
     "targets\n    brake\n        binary = brake\n        granularity = 12K\n",
     ": targets/brake/granularity: 12288 bytes is not a power of two between 4K and 1G"},
    {"granularity too small",
     "targets\n    brake\n        binary = brake\n        granularity = 2048\n",
     ": targets/brake/granularity: 2048 bytes is not a power of two"},
    {"granularity too large",
     "targets\n    brake\n        binary = brake\n        granularity = 2G\n",
     ": targets/brake/granularity: 2147483648 bytes is not a power of two"},
    {"quiesce_ms zero", "targets\n    brake\n        binary = brake\n        quiesce_ms = 0\n",
     ": targets/brake/quiesce_ms: 0 is out of range (1..60000)"},
    {"max_chain too large",
     "targets\n    brake\n        binary = brake\n        max_chain = 100001\n",
     ": targets/brake/max_chain: 100001 is out of range (0..100000)"},
    {"unknown target key lists the checkpoint keys",
     "targets\n    brake\n        binary = brake\n        checkpoint = 10\n",
     ": targets/brake/checkpoint: unknown key (known: binary, ram, caps, autostart, provides, rom, "
     "checkpoint_ms, on_crash, dirty_tracking, granularity, quiesce_ms, max_chain, standby)"},
};

static void test_errors(void **state)
{
    fixture_t *f = *state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        agent_config_t *cfg = NULL;
        char *err = NULL;
        int r = agent_config_parse(f->conf, c->text, f->tdir, &cfg, &err);
        if (r != -EINVAL || !err || strncmp(err, f->conf, strlen(f->conf)) != 0 ||
            !strstr(err, c->want))
            fail_msg("case '%s': r=%d, message \"%s\", wanted \"%s%s...\"", c->what, r,
                     err ? err : "(none)", f->conf, c->want);
        assert_null(cfg);
        free(err);
    }
}

static void test_load_errors(void **state)
{
    fixture_t *f = *state;
    agent_config_t *cfg = NULL;
    char *err = NULL, path[160];

    snprintf(path, sizeof(path), "%s/missing.conf", f->dir);
    assert_int_equal(agent_config_load(path, f->tdir, &cfg, &err), -ENOENT);
    assert_null(cfg);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));
    free(err);

    assert_int_equal(agent_config_load(f->dir, f->tdir, &cfg, &err), -EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
    free(err);

    /* a real file with a typo */
    snprintf(path, sizeof(path), "%s/typo.conf", f->dir);
    FILE *fp = fopen(path, "we");
    assert_non_null(fp);
    fputs("ecu\n    nam = x\n", fp);
    fclose(fp);
    assert_int_equal(agent_config_load(path, f->tdir, &cfg, &err), -EINVAL);
    char want[256];
    snprintf(want, sizeof(want), "%s: ecu/nam: unknown key", path);
    assert_non_null(strstr(err, want));
    free(err);
}

static void test_parsers(void **state)
{
    (void)state;
    size_t s = 0;
    assert_int_equal(agent_parse_size("0", &s), 0);
    assert_int_equal(s, 0);
    assert_int_equal(agent_parse_size("4096", &s), 0);
    assert_int_equal(s, 4096);
    assert_int_equal(agent_parse_size("64K", &s), 0);
    assert_int_equal(s, 65536);
    assert_int_equal(agent_parse_size("16M", &s), 0);
    assert_int_equal(s, 16u << 20);
    assert_int_equal(agent_parse_size("2G", &s), 0);
    assert_int_equal(s, 2ull << 30);
    s = 7;
    assert_int_equal(agent_parse_size("16Q", &s), -EINVAL);
    assert_int_equal(agent_parse_size("M", &s), -EINVAL);
    assert_int_equal(agent_parse_size("", &s), -EINVAL);
    assert_int_equal(agent_parse_size("-1", &s), -EINVAL);
    assert_int_equal(agent_parse_size("1.5M", &s), -EINVAL);
    assert_int_equal(agent_parse_size("16m", &s), -EINVAL);
    assert_int_equal(agent_parse_size(" 1", &s), -EINVAL);
    assert_int_equal(agent_parse_size("99999999999999999999", &s), -ERANGE);
    assert_int_equal(agent_parse_size("17179869184G", &s), -ERANGE);
    assert_int_equal(s, 7); /* untouched on failure */

    unsigned u = 9;
    assert_int_equal(agent_parse_uint("4096", 4096, &u), 0);
    assert_int_equal(u, 4096);
    assert_int_equal(agent_parse_uint("4097", 4096, &u), -ERANGE);
    assert_int_equal(agent_parse_uint("99999999999999999999999", 10, &u), -ERANGE);
    assert_int_equal(agent_parse_uint("1x", 10, &u), -EINVAL);
    assert_int_equal(u, 4096);

    bool b = false;
    assert_int_equal(agent_parse_bool("yes", &b), 0);
    assert_true(b);
    assert_int_equal(agent_parse_bool("0", &b), 0);
    assert_false(b);
    assert_int_equal(agent_parse_bool("maybe", &b), -EINVAL);

    assert_true(agent_name_is_valid("brake_2-x"));
    assert_false(agent_name_is_valid(""));
    assert_false(agent_name_is_valid("-x"));
    assert_false(agent_name_is_valid("a b"));
    assert_false(agent_name_is_valid("a/b"));
    assert_false(agent_name_is_valid("abcdefghijabcdefghijabcdefghijab")); /* 32 chars */
}

static void test_default_target_dir(void **state)
{
    fixture_t *f = *state;
    char exe[160], want[160];
    snprintf(exe, sizeof(exe), "%s/ecu-agent", f->dir); /* f->dir/targets exists */
    snprintf(want, sizeof(want), "%s/targets", f->dir);
    char *d = agent_default_target_dir(exe);
    assert_string_equal(d, want);
    free(d);
    snprintf(exe, sizeof(exe), "%s/targets/ecu-agent", f->dir); /* no targets/targets */
    d = agent_default_target_dir(exe);
    assert_string_equal(d, RTCR_TARGET_DIR);
    free(d);
    d = agent_default_target_dir(NULL);
    assert_string_equal(d, RTCR_TARGET_DIR);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_conf_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test_setup_teardown(test_default_target_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
