/* agent_config.c — see agent_config.h.
 *
 * Loading is three passes over the file: a line-by-line ZPL syntax check of our own (so that
 * a syntax error is reported with its line number in our message format, and CZMQ's parser,
 * which logs errors on its own, only ever sees well-formed input), then zconfig builds the
 * tree, then a schema walk validates every node against the tables below and fills an
 * agent_config_t. Nothing is returned unless everything is valid.
 */
#include "agent_config.h"

#include <czmq.h>
#include <errno.h>
#include <rtcr/dirty.h>
#include <rtcr/ecu.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The state of one load: where errors go and what the file's directory is. */
typedef struct loader {
    const char *path; /* file name for messages */
    char *dir;        /* directory of the file, for relative paths */
    char *error;      /* first error message (malloc'ed) */
} loader_t;

/* Record an error "FILE: KEY: message" (or "FILE: message" when key is NULL); returns -EINVAL.
 * Only the first error is kept. */
__attribute__((format(printf, 3, 4))) static int fail(loader_t *l, const char *key, const char *fmt,
                                                      ...)
{
    char msg[512];
    va_list ap;

    if (l->error)
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int r = key ? asprintf(&l->error, "%s: %s: %s", l->path, key, msg)
                : asprintf(&l->error, "%s: %s", l->path, msg);
    if (r < 0)
        l->error = NULL;
    return -EINVAL;
}

/* ---- value parsers ------------------------------------------------------------------------ */

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int agent_parse_size(const char *s, size_t *ret_size)
{
    if (!s)
        return -EINVAL;
    size_t n = strlen(s), digits = n, shift = 0;
    if (n > 0) {
        switch (s[n - 1]) {
        case 'K':
            shift = 10, digits = n - 1;
            break;
        case 'M':
            shift = 20, digits = n - 1;
            break;
        case 'G':
            shift = 30, digits = n - 1;
            break;
        default:
            break;
        }
    }
    if (!all_digits(s, digits))
        return -EINVAL;
    size_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        if (v > (SIZE_MAX - 9) / 10)
            return -ERANGE;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    if (shift && v > (SIZE_MAX >> shift))
        return -ERANGE;
    *ret_size = v << shift;
    return 0;
}

int agent_parse_uint(const char *s, unsigned max, unsigned *ret_value)
{
    if (!s || !all_digits(s, strlen(s)))
        return -EINVAL;
    unsigned long long v = 0;
    for (const char *p = s; *p; p++) {
        v = v * 10 + (unsigned)(*p - '0');
        if (v > max)
            return -ERANGE;
    }
    *ret_value = (unsigned)v;
    return 0;
}

int agent_parse_bool(const char *s, bool *ret_value)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *ret_value = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *ret_value = false;
            return 0;
        }
    }
    return -EINVAL;
}

const char *agent_on_crash_name(enum agent_on_crash p)
{
    static const char *const names[AGENT_ON_CRASH_MAX] = {"none", "restart", "restore"};
    return (unsigned)p < AGENT_ON_CRASH_MAX ? names[p] : "?";
}

bool agent_name_is_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > AGENT_NAME_MAX || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ---- ZPL syntax check --------------------------------------------------------------------- */

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("$-_@.&+/", c) != NULL;
}

/* Check one line; returns NULL if fine, else a static description of the problem.
 * *level is the previous line's level on entry and this line's level on exit. */
static const char *check_line(const char *s, size_t n, int *level)
{
    size_t i = 0;
    while (i < n && s[i] == ' ')
        i++;
    if (i < n && s[i] == '\t')
        return "tab in indentation (indent with 4 spaces per level)";
    if (i == n || s[i] == '#')
        return NULL; /* blank or comment line */
    if (i % 4)
        return "indentation is not a multiple of 4 spaces";
    int lv = (int)(i / 4);
    if (lv > *level + 1)
        return "indented more than one level (4 spaces) below the line above";
    if (!is_name_char(s[i]))
        return "expected a key name ([A-Za-z0-9] and $-_@.&+/)";
    while (i < n && is_name_char(s[i]))
        i++;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < n && s[i] == '=') {
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == n || s[i] == '#')
            return "missing value after '='";
        if (s[i] == '"' || s[i] == '\'') {
            char q = s[i++];
            while (i < n && s[i] != q)
                i++;
            if (i == n)
                return "missing closing quote";
            i++;
        } else {
            while (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '#') {
                if (s[i] == '"' || s[i] == '\'')
                    return "quote inside an unquoted value (quote the whole value)";
                i++;
            }
        }
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
    }
    if (i < n && s[i] != '#')
        return "unexpected text (values need \"key = value\", comments start with #)";
    *level = lv;
    return NULL;
}

static int check_syntax(loader_t *l, const char *text)
{
    int level = -1, lineno = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)p[i] < 0x20 && p[i] != '\t')
                return fail(l, NULL, "line %d: control character in line", lineno);
        const char *e = check_line(p, n, &level);
        if (e) {
            char *msg;
            if (asprintf(&msg, "%s:%d: %s", l->path, lineno, e) < 0)
                return -ENOMEM;
            free(l->error);
            l->error = msg;
            return -EINVAL;
        }
        p = nl ? nl + 1 : p + strlen(p); /* not p + n: n may exclude a trailing '\r' */
    }
    return 0;
}

/* ---- schema walk ------------------------------------------------------------------------- */

static const char *value_of(zconfig_t *node)
{
    const char *v = zconfig_value(node);
    return v ? v : "";
}

/* Scalar key: must have no children; a value is required unless allow_empty. */
static int scalar(loader_t *l, const char *key, zconfig_t *node, bool allow_empty, const char **ret)
{
    if (zconfig_child(node))
        return fail(l, key, "is a value, not a section (remove the indented lines below it)");
    const char *v = value_of(node);
    if (!allow_empty && !*v)
        return fail(l, key, "missing value");
    *ret = v;
    return 0;
}

/* Section: must not carry a value. */
static int section(loader_t *l, const char *key, zconfig_t *node)
{
    if (*value_of(node))
        return fail(l, key, "is a section and takes no value (put its keys indented below it)");
    return 0;
}

/* Every child of node must have a distinct name. */
static int no_duplicates(loader_t *l, const char *prefix, zconfig_t *node)
{
    for (zconfig_t *a = zconfig_child(node); a; a = zconfig_next(a))
        for (zconfig_t *b = zconfig_next(a); b; b = zconfig_next(b))
            if (strcmp(zconfig_name(a), zconfig_name(b)) == 0) {
                char key[256];
                snprintf(key, sizeof(key), "%s%s", prefix, zconfig_name(a));
                return fail(l, key, "duplicate key");
            }
    return 0;
}

static int get_size(loader_t *l, const char *key, zconfig_t *node, size_t *ret)
{
    const char *v;
    int r = scalar(l, key, node, false, &v);
    if (r < 0)
        return r;
    r = agent_parse_size(v, ret);
    if (r == -ERANGE)
        return fail(l, key, "\"%s\" is too large", v);
    if (r < 0)
        return fail(l, key, "\"%s\" is not a size (use 16M, 1G, ...)", v);
    if (*ret == 0)
        return fail(l, key, "must not be 0");
    return 0;
}

static int get_uint(loader_t *l, const char *key, zconfig_t *node, unsigned min, unsigned max,
                    unsigned *ret)
{
    const char *v;
    int r = scalar(l, key, node, false, &v);
    if (r < 0)
        return r;
    r = agent_parse_uint(v, max, ret);
    if (r == -EINVAL)
        return fail(l, key, "\"%s\" is not a number", v);
    if (r < 0 || *ret < min)
        return fail(l, key, "%s is out of range (%u..%u)", v, min, max);
    return 0;
}

static int get_name(loader_t *l, const char *key, const char *v)
{
    if (!agent_name_is_valid(v))
        return fail(l, key,
                    "\"%s\" is not a valid name (1..%d characters of A-Z a-z 0-9 _ -, not "
                    "starting with -)",
                    v, AGENT_NAME_MAX);
    return 0;
}

/* Join a path relative to the config directory; absolute paths are kept. */
static char *resolve(const loader_t *l, const char *p)
{
    char *r;
    if (p[0] == '/' || strcmp(l->dir, ".") == 0)
        r = strdup(p);
    else if (asprintf(&r, "%s/%s", l->dir, p) < 0)
        r = NULL;
    return r;
}

static int ecu_section(loader_t *l, zconfig_t *ecu, agent_config_t *cfg, const char **ret_tdir)
{
    int r = section(l, "ecu", ecu);
    if (r < 0)
        return r;
    if ((r = no_duplicates(l, "ecu/", ecu)) < 0)
        return r;
    for (zconfig_t *k = zconfig_child(ecu); k; k = zconfig_next(k)) {
        const char *n = zconfig_name(k), *v;
        char key[128];
        snprintf(key, sizeof(key), "ecu/%s", n);
        if (strcmp(n, "name") == 0) {
            if ((r = scalar(l, key, k, false, &v)) < 0 || (r = get_name(l, key, v)) < 0)
                return r;
            free(cfg->name);
            if (!(cfg->name = strdup(v)))
                return -ENOMEM;
        } else if (strcmp(n, "control") == 0 || strcmp(n, "state_dir") == 0) {
            if ((r = scalar(l, key, k, false, &v)) < 0)
                return r;
            if (v[0] != '/')
                return fail(l, key, "\"%s\" is not an absolute path", v);
            if (n[0] == 'c' && strlen(v) > AGENT_SOCKET_PATH_MAX)
                return fail(l, key, "path is longer than %d bytes (a Unix socket limit)",
                            AGENT_SOCKET_PATH_MAX);
            char **dst = n[0] == 'c' ? &cfg->control : &cfg->state_dir;
            if (!(*dst = strdup(v)))
                return -ENOMEM;
        } else if (strcmp(n, "ram") == 0) {
            if ((r = get_size(l, key, k, &cfg->ram)) < 0)
                return r;
        } else if (strcmp(n, "log_lines") == 0) {
            if ((r = get_uint(l, key, k, 1, AGENT_LOG_LINES_MAX, &cfg->log_lines)) < 0)
                return r;
        } else if (strcmp(n, "timer_priority") == 0) {
            if ((r = get_uint(l, key, k, 0, RTCR_TIMER_PRIORITY_MAX, &cfg->timer_priority)) < 0)
                return r;
        } else if (strcmp(n, "encode_idle") == 0) {
            if ((r = scalar(l, key, k, false, &v)) < 0)
                return r;
            if (agent_parse_bool(v, &cfg->encode_idle) < 0)
                return fail(l, key, "\"%s\" is not a boolean (use 1/0, true/false, yes/no)", v);
        } else if (strcmp(n, "target_dir") == 0) {
            if ((r = scalar(l, key, k, true, &v)) < 0)
                return r;
            *ret_tdir = v;
        } else {
            return fail(l, key,
                        "unknown key (known: name, control, state_dir, ram, log_lines, "
                        "timer_priority, encode_idle, target_dir)");
        }
    }
    return 0;
}

static int services_key(loader_t *l, const char *key, const char *v, agent_target_conf_t *t)
{
    char buf[512];
    if (strlen(v) >= sizeof(buf))
        return fail(l, key, "value too long");
    strcpy(buf, v);
    char *save = NULL;
    for (char *s = strtok_r(buf, " ,", &save); s; s = strtok_r(NULL, " ,", &save)) {
        int r = get_name(l, key, s);
        if (r < 0)
            return r;
        for (size_t i = 0; i < t->n_services; i++)
            if (strcmp(t->services[i], s) == 0)
                return fail(l, key, "service \"%s\" listed twice", s);
        if (t->n_services == AGENT_SERVICES_MAX)
            return fail(l, key, "more than %d services", AGENT_SERVICES_MAX);
        if (!(t->services[t->n_services] = strdup(s)))
            return -ENOMEM;
        t->n_services++;
    }
    return 0;
}

static int rom_section(loader_t *l, const char *tkey, zconfig_t *rom, agent_target_conf_t *t)
{
    char key[256];
    snprintf(key, sizeof(key), "%s/rom", tkey);
    int r = section(l, key, rom);
    if (r < 0)
        return r;
    snprintf(key, sizeof(key), "%s/rom/", tkey);
    if ((r = no_duplicates(l, key, rom)) < 0)
        return r;
    for (zconfig_t *k = zconfig_child(rom); k; k = zconfig_next(k)) {
        const char *n = zconfig_name(k), *v;
        snprintf(key, sizeof(key), "%s/rom/%s", tkey, n);
        if ((r = scalar(l, key, k, false, &v)) < 0)
            return r;
        if (strlen(n) > AGENT_NAME_MAX)
            return fail(l, key, "module name longer than %d characters", AGENT_NAME_MAX);
        if (strcmp(n, "binary") == 0)
            return fail(l, key, "\"binary\" is the target's executable; choose another name");
        if (t->n_roms == AGENT_ROMS_MAX)
            return fail(l, key, "more than %d ROM modules", AGENT_ROMS_MAX);
        agent_rom_conf_t *m = &t->roms[t->n_roms];
        if (!(m->name = strdup(n)) || !(m->path = resolve(l, v))) {
            free(m->name);
            m->name = NULL;
            return -ENOMEM;
        }
        t->n_roms++;
        struct stat st;
        if (stat(m->path, &st) < 0)
            return fail(l, key, "\"%s\": %s", m->path, strerror(errno));
        if (!S_ISREG(st.st_mode))
            return fail(l, key, "\"%s\" is not a regular file", m->path);
        if (access(m->path, R_OK) < 0)
            return fail(l, key, "\"%s\" is not readable: %s", m->path, strerror(errno));
    }
    return 0;
}

/* The checkpoint keys of a target. Returns 1 if `n` was one of them and valid, 0 if `n` is
 * not a checkpoint key, < 0 on an error (recorded). */
static int ckpt_key(loader_t *l, const char *key, const char *n, zconfig_t *k,
                    agent_target_conf_t *t, bool *standby_given)
{
    const char *v;
    int r;
    if (strcmp(n, "checkpoint_ms") == 0) {
        if ((r = get_uint(l, key, k, 0, AGENT_CKPT_MS_MAX, &t->checkpoint_ms)) < 0)
            return r;
        if (t->checkpoint_ms > 0 && t->checkpoint_ms < AGENT_CKPT_MS_MIN)
            return fail(l, key, "%u ms is too short (0 = off, else %u..%u)", t->checkpoint_ms,
                        AGENT_CKPT_MS_MIN, AGENT_CKPT_MS_MAX);
    } else if (strcmp(n, "on_crash") == 0) {
        if ((r = scalar(l, key, k, false, &v)) < 0)
            return r;
        int p = -1;
        for (int i = 0; i < AGENT_ON_CRASH_MAX; i++)
            if (strcmp(v, agent_on_crash_name((enum agent_on_crash)i)) == 0)
                p = i;
        if (p < 0)
            return fail(l, key, "\"%s\" is not a crash policy (use none, restart or restore)", v);
        t->on_crash = (enum agent_on_crash)p;
    } else if (strcmp(n, "dirty_tracking") == 0) {
        rtcr_dirty_mode_t m;
        if ((r = scalar(l, key, k, false, &v)) < 0)
            return r;
        if (strcmp(v, "auto") == 0)
            t->dirty_mode = AGENT_DIRTY_AUTO;
        else if (rtcr_dirty_mode_parse(v, &m) == 0)
            t->dirty_mode = (int)m;
        else
            return fail(l, key, "\"%s\" is not a tracking mode (use auto, uffd-wp, hash or full)",
                        v);
    } else if (strcmp(n, "granularity") == 0) {
        if ((r = get_size(l, key, k, &t->granularity)) < 0)
            return r;
        if (t->granularity < 4096 || t->granularity > AGENT_GRANULARITY_MAX ||
            (t->granularity & (t->granularity - 1)))
            return fail(l, key, "%zu bytes is not a power of two between 4K and 1G",
                        t->granularity);
    } else if (strcmp(n, "quiesce_ms") == 0) {
        if ((r = get_uint(l, key, k, 1, AGENT_QUIESCE_MS_MAX, &t->quiesce_ms)) < 0)
            return r;
    } else if (strcmp(n, "max_chain") == 0) {
        if ((r = get_uint(l, key, k, 0, AGENT_MAX_CHAIN_MAX, &t->max_chain)) < 0)
            return r;
    } else if (strcmp(n, "standby") == 0) {
        if ((r = scalar(l, key, k, false, &v)) < 0)
            return r;
        if (agent_parse_bool(v, &t->standby) < 0)
            return fail(l, key, "\"%s\" is not a boolean (use 1/0, true/false, yes/no)", v);
        *standby_given = true;
    } else {
        return 0;
    }
    return 1;
}

static int target_section(loader_t *l, zconfig_t *node, const char *tdir, agent_target_conf_t *t)
{
    const char *name = zconfig_name(node), *binary = NULL;
    char tkey[128], key[192];
    snprintf(tkey, sizeof(tkey), "targets/%s", name);
    int r = get_name(l, tkey, name);
    if (r < 0 || (r = section(l, tkey, node)) < 0)
        return r;
    snprintf(key, sizeof(key), "%s/", tkey);
    if ((r = no_duplicates(l, key, node)) < 0)
        return r;
    if (!(t->name = strdup(name)))
        return -ENOMEM;
    t->ram = 16u << 20;
    t->caps = 512;
    t->autostart = true;
    t->dirty_mode = AGENT_DIRTY_AUTO;
    t->granularity = 4096;
    t->quiesce_ms = 500;
    t->max_chain = 64;
    bool standby_given = false;
    for (zconfig_t *k = zconfig_child(node); k; k = zconfig_next(k)) {
        const char *n = zconfig_name(k), *v;
        snprintf(key, sizeof(key), "%s/%s", tkey, n);
        if (strcmp(n, "binary") == 0) {
            if ((r = scalar(l, key, k, false, &binary)) < 0)
                return r;
        } else if (strcmp(n, "ram") == 0) {
            if ((r = get_size(l, key, k, &t->ram)) < 0)
                return r;
        } else if (strcmp(n, "caps") == 0) {
            if ((r = get_uint(l, key, k, 1, AGENT_CAPS_MAX, &t->caps)) < 0)
                return r;
        } else if (strcmp(n, "autostart") == 0) {
            if ((r = scalar(l, key, k, false, &v)) < 0)
                return r;
            if (agent_parse_bool(v, &t->autostart) < 0)
                return fail(l, key, "\"%s\" is not a boolean (use 1/0, true/false, yes/no)", v);
        } else if (strcmp(n, "provides") == 0) {
            if ((r = scalar(l, key, k, false, &v)) < 0 || (r = services_key(l, key, v, t)) < 0)
                return r;
        } else if (strcmp(n, "rom") == 0) {
            if ((r = rom_section(l, tkey, k, t)) < 0)
                return r;
        } else if ((r = ckpt_key(l, key, n, k, t, &standby_given)) <= 0) {
            if (r == 0)
                return fail(l, key,
                            "unknown key (known: binary, ram, caps, autostart, provides, rom, "
                            "checkpoint_ms, on_crash, dirty_tracking, granularity, quiesce_ms, "
                            "max_chain, standby)");
            return r;
        }
    }
    /* the standby costs one copy of the target's memory: by default only for the targets
     * that are restored when they crash, where it makes the restore fast */
    if (!standby_given)
        t->standby = t->on_crash == AGENT_ON_CRASH_RESTORE;
    snprintf(key, sizeof(key), "%s/binary", tkey);
    if (!binary)
        return fail(l, key, "missing (every target needs its executable)");
    if (strchr(binary, '/')) {
        t->binary = resolve(l, binary);
    } else if (asprintf(&t->binary, "%s/%s", tdir, binary) < 0) {
        t->binary = NULL;
    }
    if (!t->binary)
        return -ENOMEM;
    struct stat st;
    if (stat(t->binary, &st) < 0)
        return fail(l, key, "\"%s\": %s", t->binary, strerror(errno));
    if (!S_ISREG(st.st_mode) || access(t->binary, X_OK) < 0)
        return fail(l, key, "\"%s\" is not an executable file", t->binary);
    return 0;
}

static int targets_section(loader_t *l, zconfig_t *targets, const char *tdir, agent_config_t *cfg)
{
    int r = section(l, "targets", targets);
    if (r < 0 || (r = no_duplicates(l, "targets/", targets)) < 0)
        return r;
    size_t total = 0;
    for (zconfig_t *k = zconfig_child(targets); k; k = zconfig_next(k)) {
        if (cfg->n_targets == AGENT_TARGETS_MAX)
            return fail(l, "targets", "more than %d targets", AGENT_TARGETS_MAX);
        agent_target_conf_t *t = &cfg->targets[cfg->n_targets++];
        if ((r = target_section(l, k, tdir, t)) < 0)
            return r;
        if (t->ram > SIZE_MAX - total)
            return fail(l, "targets", "total RAM overflows");
        total += t->ram;
    }
    if (total > cfg->ram)
        return fail(l, "targets",
                    "the targets' RAM quotas add up to %zu bytes, more than ecu/ram (%zu bytes)",
                    total, cfg->ram);
    return 0;
}

static int sensors_section(loader_t *l, zconfig_t *sensors, agent_config_t *cfg)
{
    int r = section(l, "sensors", sensors);
    if (r < 0 || (r = no_duplicates(l, "sensors/", sensors)) < 0)
        return r;
    for (zconfig_t *node = zconfig_child(sensors); node; node = zconfig_next(node)) {
        const char *name = zconfig_name(node);
        char skey[128], key[192];
        bool has_line = false, has_period = false;
        snprintf(skey, sizeof(skey), "sensors/%s", name);
        if ((r = get_name(l, skey, name)) < 0 || (r = section(l, skey, node)) < 0)
            return r;
        snprintf(key, sizeof(key), "%s/", skey);
        if ((r = no_duplicates(l, key, node)) < 0)
            return r;
        if (cfg->n_sensors == AGENT_SENSORS_MAX)
            return fail(l, "sensors", "more than %d sensors", AGENT_SENSORS_MAX);
        agent_sensor_conf_t *s = &cfg->sensors[cfg->n_sensors++];
        if (!(s->name = strdup(name)))
            return -ENOMEM;
        for (zconfig_t *k = zconfig_child(node); k; k = zconfig_next(k)) {
            const char *n = zconfig_name(k);
            snprintf(key, sizeof(key), "%s/%s", skey, n);
            if (strcmp(n, "line") == 0) {
                if ((r = get_uint(l, key, k, 0, AGENT_IRQ_LINES - 1, &s->line)) < 0)
                    return r;
                has_line = true;
            } else if (strcmp(n, "period_ms") == 0) {
                if ((r = get_uint(l, key, k, 1, AGENT_PERIOD_MS_MAX, &s->period_ms)) < 0)
                    return r;
                has_period = true;
            } else {
                return fail(l, key, "unknown key (known: line, period_ms)");
            }
        }
        snprintf(key, sizeof(key), "%s/%s", skey, has_line ? "period_ms" : "line");
        if (!has_line || !has_period)
            return fail(l, key, "missing (a sensor needs line and period_ms)");
        for (size_t i = 0; i + 1 < cfg->n_sensors; i++)
            if (cfg->sensors[i].line == s->line) {
                snprintf(key, sizeof(key), "%s/line", skey);
                return fail(l, key, "line %u is already driven by sensor '%s'", s->line,
                            cfg->sensors[i].name);
            }
    }
    return 0;
}

static char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    const char *dot = strrchr(b, '.');
    if (dot && dot != b)
        n = (size_t)(dot - b);
    return strndup(b, n);
}

static int walk(loader_t *l, zconfig_t *root, const char *default_tdir, agent_config_t *cfg)
{
    zconfig_t *ecu = NULL, *targets = NULL, *sensors = NULL;
    const char *tdir = "";
    int r;

    if ((r = no_duplicates(l, "", root)) < 0)
        return r;
    for (zconfig_t *k = zconfig_child(root); k; k = zconfig_next(k)) {
        const char *n = zconfig_name(k);
        if (strcmp(n, "ecu") == 0)
            ecu = k;
        else if (strcmp(n, "targets") == 0)
            targets = k;
        else if (strcmp(n, "sensors") == 0)
            sensors = k;
        else
            return fail(l, n, "unknown section (known: ecu, targets, sensors)");
    }
    cfg->ram = 512u << 20;
    cfg->log_lines = 200;
    cfg->timer_priority = AGENT_TIMER_PRIORITY;
    cfg->encode_idle = true;
    if (ecu && (r = ecu_section(l, ecu, cfg, &tdir)) < 0)
        return r;
    if (!cfg->name) {
        char *b = base_name(l->path);
        if (!b)
            return -ENOMEM;
        if (!agent_name_is_valid(b)) {
            r = fail(l, "ecu/name", "missing, and the file name \"%s\" is not a valid name", b);
            free(b);
            return r;
        }
        cfg->name = b;
    }
    if (!cfg->control && asprintf(&cfg->control, AGENT_CONTROL_DIR "/%s.sock", cfg->name) < 0)
        return (cfg->control = NULL), -ENOMEM;
    if (!cfg->state_dir && asprintf(&cfg->state_dir, AGENT_STATE_DIR "/%s", cfg->name) < 0)
        return (cfg->state_dir = NULL), -ENOMEM;
    cfg->target_dir =
        *tdir ? resolve(l, tdir) : strdup(default_tdir ? default_tdir : RTCR_TARGET_DIR);
    if (!cfg->target_dir)
        return -ENOMEM;
    if (targets && (r = targets_section(l, targets, cfg->target_dir, cfg)) < 0)
        return r;
    if (sensors && (r = sensors_section(l, sensors, cfg)) < 0)
        return r;
    return 0;
}

int agent_config_parse(const char *path, const char *text, const char *default_target_dir,
                       agent_config_t **ret_cfg, char **ret_error)
{
    loader_t l = {.path = path};
    agent_config_t *cfg = NULL;
    zconfig_t *root = NULL;
    int r;

    const char *slash = strrchr(path, '/');
    l.dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!l.dir) {
        r = -ENOMEM;
        goto out;
    }
    if ((r = check_syntax(&l, text)) < 0)
        goto out;
    root = zconfig_str_load(text);
    if (!root) {
        r = fail(&l, NULL, "not valid ZPL");
        goto out;
    }
    cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->path = strdup(path))) {
        r = -ENOMEM;
        goto out;
    }
    if ((r = walk(&l, root, default_target_dir, cfg)) < 0)
        goto out;
    *ret_cfg = cfg;
    cfg = NULL;
    r = 0;
out:
    zconfig_destroy(&root);
    agent_config_destroy(&cfg);
    free(l.dir);
    if (r < 0 && ret_error) {
        *ret_error = l.error;
        l.error = NULL;
    }
    free(l.error);
    return r;
}

int agent_config_load(const char *path, const char *default_target_dir, agent_config_t **ret_cfg,
                      char **ret_error)
{
    char *text = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int r = 0;
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0) {
        r = -errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        goto fail;
    }
    if (st.st_size > AGENT_CONFIG_SIZE_MAX) {
        r = -EFBIG;
        goto fail;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        r = -ENOMEM;
        goto fail;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto fail;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    text[got] = '\0';
    close(fd);
    fd = -1;
    if (memchr(text, '\0', got)) {
        r = -EINVAL;
        goto fail;
    }
    r = agent_config_parse(path, text, default_target_dir, ret_cfg, ret_error);
    free(text);
    return r;
fail:
    if (fd >= 0)
        close(fd);
    free(text);
    if (ret_error) {
        const char *why = r == -EFBIG    ? "file is too large for a config"
                          : r == -EINVAL ? (text ? "contains a NUL byte" : "not a regular file")
                                         : strerror(-r);
        if (asprintf(ret_error, "%s: %s", path, why) < 0)
            *ret_error = NULL;
    }
    return r;
}

void agent_config_destroy(agent_config_t **p)
{
    if (!p || !*p)
        return;
    agent_config_t *c = *p;
    for (size_t i = 0; i < c->n_targets; i++) {
        agent_target_conf_t *t = &c->targets[i];
        free(t->name);
        free(t->binary);
        for (size_t k = 0; k < t->n_roms; k++) {
            free(t->roms[k].name);
            free(t->roms[k].path);
        }
        for (size_t k = 0; k < t->n_services; k++)
            free(t->services[k]);
    }
    for (size_t i = 0; i < c->n_sensors; i++)
        free(c->sensors[i].name);
    free(c->path);
    free(c->name);
    free(c->control);
    free(c->state_dir);
    free(c->target_dir);
    free(c);
    *p = NULL;
}

const agent_target_conf_t *agent_config_find_target(const agent_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_targets; i++)
        if (strcmp(cfg->targets[i].name, name) == 0)
            return &cfg->targets[i];
    return NULL;
}

char *agent_default_target_dir(const char *exe)
{
    char *r = NULL;
    struct stat st;
    const char *slash = exe ? strrchr(exe, '/') : NULL;
    if (slash && asprintf(&r, "%.*s/targets", (int)(slash - exe), exe) >= 0) {
        if (stat(r, &st) == 0 && S_ISDIR(st.st_mode))
            return r;
        free(r);
    }
    return strdup(RTCR_TARGET_DIR);
}
