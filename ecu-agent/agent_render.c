/* agent_render.c — see agent_render.h. Text tables are built in two passes: measure every
 * column, then print with the widths found (header included), two spaces between columns. */
#include "agent_render.h"

#include "agent_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rtcr/image.h>

#define RIGHT_R 4u /* RTCR_CAP_R */
#define RIGHT_W 1u /* RTCR_CAP_W */
#define RIGHT_S 2u /* RTCR_CAP_S */
#define RIGHT_D 8u /* RTCR_CAP_D */

const char *agent_rights_string(unsigned rights, char buf[5])
{
    size_t n = 0;
    if (rights & RIGHT_R)
        buf[n++] = 'r';
    if (rights & RIGHT_W)
        buf[n++] = 'w';
    if (rights & RIGHT_S)
        buf[n++] = 's';
    if (rights & RIGHT_D)
        buf[n++] = 'd';
    buf[n] = '\0';
    return buf;
}

const char *agent_cap_type_name(enum agent_cap_type t)
{
    static const char *const names[AGENT_CAP_TYPE_MAX] = {"task", "thread", "gate", "irq"};
    return (unsigned)t < AGENT_CAP_TYPE_MAX ? names[t] : "?";
}

const char *agent_size_string(size_t bytes, char *buf, size_t len)
{
    static const char units[] = "KMG";
    int u = -1;
    double v = (double)bytes;
    while (u < 2 && v >= 1024.0) {
        v /= 1024.0;
        u++;
    }
    if (u < 0)
        snprintf(buf, len, "%zu", bytes);
    else if (bytes % (1ull << (10 * (u + 1))) == 0)
        snprintf(buf, len, "%zu%c", bytes >> (10 * (u + 1)), units[u]);
    else
        snprintf(buf, len, "%.1f%c", v, units[u]);
    return buf;
}

const char *agent_usec_string(uint64_t usec, char *buf, size_t len)
{
    if (usec < 1000)
        snprintf(buf, len, "%lluus", (unsigned long long)usec);
    else if (usec < 1000000)
        snprintf(buf, len, "%.1fms", (double)usec / 1000.0);
    else
        snprintf(buf, len, "%.2fs", (double)usec / 1000000.0);
    return buf;
}

/* A growing text buffer with a sticky out-of-memory flag. */
typedef struct text {
    char *buf;  /* NUL-terminated text */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
    bool oom;   /* an allocation failed */
} text_t;

static void tput(text_t *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (t->len + n + 1 > cap)
            cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->oom = true;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void tprintf(text_t *t, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        tput(t, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        t->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tput(t, big, (size_t)n);
    free(big);
}

/* Append s with control characters replaced by '?'. */
static void tput_safe(text_t *t, const char *s)
{
    for (const char *p = s; *p;) {
        size_t run = 0;
        while (p[run] && (unsigned char)p[run] >= 0x20 && p[run] != 0x7f)
            run++;
        tput(t, p, run);
        p += run;
        if (*p) {
            tput(t, "?", 1);
            p++;
        }
    }
}

/* Append a cell padded to width (width 0: no padding, last column). */
static void cell(text_t *t, const char *s, size_t width)
{
    size_t n = strlen(s);
    tput_safe(t, s);
    for (; n < width; n++)
        tput(t, " ", 1);
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* Hand over both results or free both. */
static int finish(agent_json_t **j, text_t *t, char **ret_json, char **ret_text)
{
    int r = agent_json_result(*j);
    if (r == 0 && t->oom)
        r = -ENOMEM;
    if (r == 0 && !t->buf)
        tput(t, "", 0);
    char *json = r == 0 ? strdup(agent_json_text(*j)) : NULL;
    agent_json_destroy(j);
    if (r == 0 && (!json || t->oom))
        r = -ENOMEM;
    if (r < 0) {
        free(json);
        free(t->buf);
        return r;
    }
    *ret_json = json;
    *ret_text = t->buf;
    return 0;
}

/* "encode_usec", "encode_cpu_usec", "encoded_idle", "idle_capped" of an epoch */
static void json_encode_stats(agent_json_t *j, const agent_epoch_stats_t *e)
{
    agent_json_key(j, "encode_usec");
    agent_json_uint(j, e->encode_usec);
    agent_json_key(j, "encode_cpu_usec");
    agent_json_uint(j, e->encode_cpu_usec);
    agent_json_key(j, "encoded_idle");
    agent_json_bool(j, e->encoded_idle);
    agent_json_key(j, "idle_capped");
    agent_json_bool(j, e->idle_capped);
}

static void json_last_epoch(agent_json_t *j, const agent_epoch_stats_t *e)
{
    agent_json_object_begin(j);
    agent_json_key(j, "epoch");
    agent_json_uint(j, e->epoch);
    agent_json_key(j, "full");
    agent_json_bool(j, e->full);
    agent_json_key(j, "freeze_usec");
    agent_json_uint(j, e->freeze_usec);
    agent_json_key(j, "pages_scanned");
    agent_json_uint(j, e->pages_scanned);
    agent_json_key(j, "pages_written");
    agent_json_uint(j, e->pages_written);
    agent_json_key(j, "bytes_raw");
    agent_json_uint(j, e->bytes_raw);
    agent_json_key(j, "bytes_stored");
    agent_json_uint(j, e->bytes_stored);
    json_encode_stats(j, e);
    agent_json_object_end(j);
}

const char *agent_compaction_outcome_name(enum agent_compaction_outcome o)
{
    static const char *const names[AGENT_COMPACTION_OUTCOME_MAX] = {
        "none", "committed", "unwritten", "failed", "discarded"}; /* in enum order */
    return (unsigned)o < AGENT_COMPACTION_OUTCOME_MAX ? names[o] : "?";
}

/* a number, or null when `has` is false */
static void json_uint_or_null(agent_json_t *j, const char *key, bool has, uint64_t v)
{
    agent_json_key(j, key);
    if (has)
        agent_json_uint(j, v);
    else
        agent_json_null(j);
}

static void json_compaction(agent_json_t *j, const agent_compaction_t *c)
{
    bool ended = c->last != AGENT_COMPACTION_NONE;
    agent_json_object_begin(j);
    agent_json_key(j, "max_chain");
    agent_json_uint(j, c->max_chain);
    agent_json_key(j, "chain_epochs");
    agent_json_uint(j, c->chain_epochs);
    agent_json_key(j, "running");
    agent_json_bool(j, c->running);
    json_uint_or_null(j, "running_from", c->running, c->running_from);
    json_uint_or_null(j, "running_upto", c->running, c->running_upto);
    json_uint_or_null(j, "running_usec", c->running, c->running_usec);
    agent_json_key(j, "running_on_kept");
    agent_json_bool(j, c->running && c->running_on_kept);
    agent_json_key(j, "last");
    agent_json_string(j, agent_compaction_outcome_name(c->last));
    json_uint_or_null(j, "last_from", ended, c->last_from);
    json_uint_or_null(j, "last_upto", ended, c->last_upto);
    json_uint_or_null(j, "last_usec", ended, c->last_usec);
    json_uint_or_null(j, "last_ago_usec", ended, c->last_ago_usec);
    agent_json_key(j, "last_on_kept");
    agent_json_bool(j, ended && c->last_on_kept);
    agent_json_key(j, "started");
    agent_json_uint(j, c->started);
    agent_json_key(j, "committed");
    agent_json_uint(j, c->committed);
    agent_json_key(j, "failed");
    agent_json_uint(j, c->failed);
    agent_json_key(j, "discarded");
    agent_json_uint(j, c->discarded);
    bool err = c->error && *c->error;
    agent_json_key(j, "error");
    agent_json_string(j, err ? c->error : NULL);
    json_uint_or_null(j, "error_ago_usec", err, c->error_ago_usec);
    agent_json_object_end(j);
}

static void json_standby(agent_json_t *j, const agent_standby_t *sb)
{
    agent_json_object_begin(j);
    agent_json_key(j, "enabled");
    agent_json_bool(j, sb->enabled);
    agent_json_key(j, "ready");
    agent_json_bool(j, sb->ready);
    json_uint_or_null(j, "epoch", sb->ready, sb->epoch);
    agent_json_key(j, "bytes");
    agent_json_uint(j, sb->bytes);
    agent_json_key(j, "dataspaces");
    agent_json_uint(j, sb->dataspaces);
    agent_json_key(j, "apply_usec");
    agent_json_uint(j, sb->apply_usec);
    agent_json_key(j, "applied_bytes");
    agent_json_uint(j, sb->applied_bytes);
    agent_json_key(j, "rebuilds");
    agent_json_uint(j, sb->rebuilds);
    agent_json_key(j, "taken");
    agent_json_uint(j, sb->taken);
    agent_json_key(j, "why");
    agent_json_string(j, !sb->ready && sb->why && *sb->why ? sb->why : NULL);
    agent_json_key(j, "last_restore");
    agent_json_string(j, sb->last_restore ? sb->last_restore : "none");
    agent_json_object_end(j);
}

/* "compaction running (65..128, 12.0ms, on kept memory)" or what the last one did, e.g.
 * "last compaction 1..64 committed (35.2ms)" or "last compaction 1..64 FAILED (1 of 3 failed)" */
static void compaction_text(text_t *t, const agent_compaction_t *c)
{
    char us[16];
    bool ended = c->last != AGENT_COMPACTION_NONE;
    if (c->running)
        tprintf(t, "compaction running (%llu..%llu, %s%s)", (unsigned long long)c->running_from,
                (unsigned long long)c->running_upto,
                agent_usec_string(c->running_usec, us, sizeof(us)),
                c->running_on_kept ? ", on kept memory" : "");
    else if (!ended)
        tprintf(t, c->max_chain ? "no compaction yet" : "compaction off");
    if (!ended)
        return;
    tprintf(t, "%s %llu..%llu ", c->running ? ", last" : "last compaction",
            (unsigned long long)c->last_from, (unsigned long long)c->last_upto);
    switch (c->last) {
    case AGENT_COMPACTION_COMMITTED:
        tprintf(t, "committed (%s%s)", agent_usec_string(c->last_usec, us, sizeof(us)),
                c->last_on_kept ? ", on kept memory" : "");
        break;
    case AGENT_COMPACTION_UNWRITTEN:
        tprintf(t, "NOT WRITTEN (kept in memory only)");
        break;
    case AGENT_COMPACTION_FAILED:
        tprintf(t, "FAILED (chain unchanged)");
        break;
    case AGENT_COMPACTION_DISCARDED:
        tprintf(t, "discarded (chain replaced)");
        break;
    default:
        tprintf(t, "?");
        break;
    }
}

/* "standby: epoch 112", "standby: disabled", "standby: invalid (a checkpoint failed)" */
static void standby_text(text_t *t, const agent_standby_t *sb)
{
    if (!sb->enabled) {
        tprintf(t, "standby: disabled");
    } else if (sb->ready) {
        tprintf(t, "standby: epoch %llu", (unsigned long long)sb->epoch);
    } else {
        tprintf(t, "standby: invalid (");
        tput_safe(t, sb->why && *sb->why ? sb->why : "not ready");
        tprintf(t, ")");
    }
}

/* A target's indented detail line under its row in `ecuctl targets`:
 * "  chain 37 epochs (max 64), compaction running (1..64, 12.0ms); standby: epoch 112", and
 * one more with the last compaction failure if there was one. Nothing for a target that has
 * neither a chain, nor compactions, nor a standby. */
static void target_detail(text_t *t, const agent_target_row_t *r)
{
    const agent_compaction_t *c = r->compaction;
    const agent_standby_t *sb = r->standby;
    if ((!c || (!c->chain_epochs && !c->started)) && (!sb || !sb->enabled))
        return;
    tprintf(t, "  ");
    if (c) {
        tprintf(t, "chain %llu epoch%s", (unsigned long long)c->chain_epochs,
                c->chain_epochs == 1 ? "" : "s");
        if (c->max_chain)
            tprintf(t, " (max %u)", c->max_chain);
        tprintf(t, ", ");
        compaction_text(t, c);
        if (c->failed)
            tprintf(t, ", %u of %u failed", c->failed, c->started);
    }
    if (sb) {
        tprintf(t, c ? "; " : "");
        standby_text(t, sb);
    }
    tput(t, "\n", 1);
    if (c && c->error && *c->error) {
        char us[16];
        tprintf(t, "  last compaction failure (%s ago): ",
                agent_usec_string(c->error_ago_usec, us, sizeof(us)));
        tput_safe(t, c->error);
        tput(t, "\n", 1);
    }
}

/* "epoch 42 pause 180us 3 pages" ("full" added for a full epoch) */
static const char *epoch_cell(const agent_epoch_stats_t *e, char *buf, size_t len)
{
    char us[16];
    snprintf(buf, len, "epoch %llu%s pause %s %llu page%s", (unsigned long long)e->epoch,
             e->full ? " full" : "", agent_usec_string(e->freeze_usec, us, sizeof(us)),
             (unsigned long long)e->pages_written, e->pages_written == 1 ? "" : "s");
    return buf;
}

int agent_render_targets(const agent_target_row_t *rows, size_t n, char **ret_json, char **ret_text)
{
    agent_json_t *j = agent_json_new();
    text_t t = {0};
    if (!j)
        return -ENOMEM;
    agent_json_array_begin(j);
    for (size_t i = 0; i < n; i++) {
        const agent_target_row_t *r = &rows[i];
        agent_json_object_begin(j);
        agent_json_key(j, "name");
        agent_json_string(j, r->name);
        agent_json_key(j, "state");
        agent_json_string(j, r->state);
        agent_json_key(j, "pid");
        if (r->pid > 0)
            agent_json_int(j, r->pid);
        else
            agent_json_null(j);
        agent_json_key(j, "restarts");
        agent_json_uint(j, r->restarts);
        agent_json_key(j, "ram_quota");
        agent_json_uint(j, r->ram_quota);
        agent_json_key(j, "ram_used");
        agent_json_uint(j, r->ram_used);
        agent_json_key(j, "failure");
        agent_json_string(j, r->failure);
        agent_json_key(j, "last_epoch");
        if (r->last_epoch)
            json_last_epoch(j, r->last_epoch);
        else
            agent_json_null(j);
        agent_json_key(j, "compaction");
        if (r->compaction)
            json_compaction(j, r->compaction);
        else
            agent_json_null(j);
        agent_json_key(j, "standby");
        if (r->standby)
            json_standby(j, r->standby);
        else
            agent_json_null(j);
        agent_json_object_end(j);
    }
    agent_json_array_end(j);

    /* columns: NAME STATE PID RESTARTS RAM [LAST EPOCH] FAILURE; LAST EPOCH only once some
     * target has been checkpointed */
    char pid[16], ram[48], a[16], b[16], ep[96];
    size_t w_name = 4, w_state = 5, w_pid = 3, w_rs = 8, w_ram = 3, w_ep = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].last_epoch)
            w_ep = max_sz(max_sz(w_ep, 10), strlen(epoch_cell(rows[i].last_epoch, ep, sizeof(ep))));
        w_name = max_sz(w_name, strlen(rows[i].name));
        w_state = max_sz(w_state, strlen(rows[i].state));
        w_pid = max_sz(w_pid, (size_t)snprintf(pid, sizeof(pid), "%d", (int)rows[i].pid));
        w_ram = max_sz(w_ram, (size_t)snprintf(ram, sizeof(ram), "%s/%s",
                                               agent_size_string(rows[i].ram_used, a, sizeof(a)),
                                               agent_size_string(rows[i].ram_quota, b, sizeof(b))));
    }
    if (n == 0) {
        tprintf(&t, "no targets\n");
    } else {
        cell(&t, "NAME", w_name + 2);
        cell(&t, "STATE", w_state + 2);
        cell(&t, "PID", w_pid + 2);
        cell(&t, "RESTARTS", w_rs + 2);
        cell(&t, "RAM", w_ram + 2);
        if (w_ep)
            cell(&t, "LAST EPOCH", w_ep + 2);
        cell(&t, "FAILURE", 0);
        tput(&t, "\n", 1);
    }
    for (size_t i = 0; i < n; i++) {
        const agent_target_row_t *r = &rows[i];
        char rs[16];
        if (r->pid > 0)
            snprintf(pid, sizeof(pid), "%d", (int)r->pid);
        else
            snprintf(pid, sizeof(pid), "-");
        snprintf(rs, sizeof(rs), "%u", r->restarts);
        snprintf(ram, sizeof(ram), "%s/%s", agent_size_string(r->ram_used, a, sizeof(a)),
                 agent_size_string(r->ram_quota, b, sizeof(b)));
        cell(&t, r->name, w_name + 2);
        cell(&t, r->state, w_state + 2);
        cell(&t, pid, w_pid + 2);
        cell(&t, rs, w_rs + 2);
        cell(&t, ram, w_ram + 2);
        if (w_ep)
            cell(&t, r->last_epoch ? epoch_cell(r->last_epoch, ep, sizeof(ep)) : "-", w_ep + 2);
        cell(&t, r->failure ? r->failure : "-", 0);
        tput(&t, "\n", 1);
        target_detail(&t, r);
    }
    return finish(&j, &t, ret_json, ret_text);
}

int agent_render_caps(const agent_cap_row_t *rows, size_t n, char **ret_json, char **ret_text)
{
    agent_json_t *j = agent_json_new();
    text_t t = {0};
    char rights[5];
    if (!j)
        return -ENOMEM;
    agent_json_array_begin(j);
    for (size_t i = 0; i < n; i++) {
        const agent_cap_row_t *c = &rows[i];
        agent_json_object_begin(j);
        agent_json_key(j, "slot");
        agent_json_uint(j, c->slot);
        agent_json_key(j, "type");
        agent_json_string(j, agent_cap_type_name(c->type));
        agent_json_key(j, "badge");
        if (c->has_badge)
            agent_json_uint(j, c->badge);
        else
            agent_json_null(j);
        agent_json_key(j, "rights");
        agent_json_string(j, agent_rights_string(c->rights, rights));
        agent_json_key(j, "stale");
        agent_json_bool(j, c->stale);
        agent_json_key(j, "object");
        agent_json_string(j, c->object ? c->object : "");
        agent_json_object_end(j);
    }
    agent_json_array_end(j);

    /* operator format, as rtcr_task_dump: 0x000201  0x0017a  GATE    LOG session 'brake' */
    tprintf(&t, "%-8s  %-7s  %-6s  %s\n", "SLOT", "BADGE", "TYPE", "OBJECT");
    for (size_t i = 0; i < n; i++) {
        const agent_cap_row_t *c = &rows[i];
        char badge[16], type[8];
        if (c->has_badge)
            snprintf(badge, sizeof(badge), "0x%05x", c->badge);
        else
            snprintf(badge, sizeof(badge), "-");
        const char *tn = agent_cap_type_name(c->type);
        size_t k = 0;
        for (; tn[k] && k < sizeof(type) - 1; k++)
            type[k] = (char)(tn[k] - ('a' <= tn[k] && tn[k] <= 'z' ? 'a' - 'A' : 0));
        type[k] = '\0';
        tprintf(&t, "0x%06x  %-7s  %-6s  ", c->slot, badge, type);
        tput_safe(&t, c->object ? c->object : "");
        if (c->stale)
            tput(&t, " (stale)", 8);
        tput(&t, "\n", 1);
    }
    return finish(&j, &t, ret_json, ret_text);
}

int agent_render_log(const char *const *lines, size_t n, char **ret_json, char **ret_text)
{
    agent_json_t *j = agent_json_new();
    text_t t = {0};
    if (!j)
        return -ENOMEM;
    agent_json_array_begin(j);
    for (size_t i = 0; i < n; i++) {
        agent_json_string(j, lines[i]);
        tput_safe(&t, lines[i]);
        tput(&t, "\n", 1);
    }
    agent_json_array_end(j);
    return finish(&j, &t, ret_json, ret_text);
}

int agent_render_status(const agent_status_t *st, char **ret_json, char **ret_text)
{
    agent_json_t *j = agent_json_new();
    text_t t = {0};
    char a[16], b[16], c[16];
    if (!j)
        return -ENOMEM;
    agent_json_object_begin(j);
    agent_json_key(j, "name");
    agent_json_string(j, st->name);
    agent_json_key(j, "pid");
    agent_json_int(j, st->pid);
    agent_json_key(j, "uptime_ms");
    agent_json_uint(j, st->uptime_usec / 1000);
    agent_json_key(j, "targets");
    agent_json_uint(j, st->targets);
    agent_json_key(j, "running");
    agent_json_uint(j, st->running);
    agent_json_key(j, "failed");
    agent_json_uint(j, st->failed);
    agent_json_key(j, "ram_total");
    agent_json_uint(j, st->ram_total);
    agent_json_key(j, "ram_quota");
    agent_json_uint(j, st->ram_quota);
    agent_json_key(j, "ram_used");
    agent_json_uint(j, st->ram_used);
    agent_json_key(j, "sensors");
    agent_json_uint(j, st->sensors);
    agent_json_key(j, "control");
    agent_json_string(j, st->control);
    agent_json_key(j, "timer_priority");
    agent_json_uint(j, st->timer_priority > 0 ? (uint64_t)st->timer_priority : 0);
    agent_json_key(j, "timer_refused");
    agent_json_string(j, st->timer_why); /* null when NULL */
    agent_json_key(j, "encode_idle");
    agent_json_bool(j, st->encode_idle);
    agent_json_key(j, "encode_idle_refused");
    agent_json_string(j, st->encode_idle_why);
    agent_json_object_end(j);

    uint64_t s = st->uptime_usec / 1000000;
    tprintf(&t, "ecu:       ");
    tput_safe(&t, st->name);
    tprintf(&t, "\npid:       %d\n", (int)st->pid);
    tprintf(&t, "uptime:    %llud %02llu:%02llu:%02llu\n", (unsigned long long)(s / 86400),
            (unsigned long long)(s / 3600 % 24), (unsigned long long)(s / 60 % 60),
            (unsigned long long)(s % 60));
    tprintf(&t, "targets:   %u (%u running, %u failed)\n", st->targets, st->running, st->failed);
    tprintf(&t, "ram:       %s used, %s assigned, %s total\n",
            agent_size_string(st->ram_used, a, sizeof(a)),
            agent_size_string(st->ram_quota, b, sizeof(b)),
            agent_size_string(st->ram_total, c, sizeof(c)));
    tprintf(&t, "sensors:   %u\n", st->sensors);
    if (st->timer_priority > 0)
        tprintf(&t, "timers:    SCHED_FIFO priority %d\n", st->timer_priority);
    else if (st->timer_why)
        tprintf(&t, "timers:    normal scheduling (real-time priority refused: %s)\n",
                st->timer_why);
    else
        tprintf(&t, "timers:    normal scheduling\n");
    if (st->encode_idle)
        tprintf(&t, "encoding:  SCHED_IDLE (targets preempt it)\n");
    else if (st->encode_idle_why)
        tprintf(&t, "encoding:  normal scheduling (SCHED_IDLE not possible: %s)\n",
                st->encode_idle_why);
    else
        tprintf(&t, "encoding:  normal scheduling\n");
    tprintf(&t, "control:   ");
    tput_safe(&t, st->control);
    tput(&t, "\n", 1);
    return finish(&j, &t, ret_json, ret_text);
}

int agent_render_checkpoint(const char *target, const agent_epoch_stats_t *s, char **ret_json,
                            char **ret_text)
{
    agent_json_t *j = agent_json_new();
    text_t t = {0};
    char a[16], b[16];
    if (!j)
        return -ENOMEM;
    agent_json_object_begin(j);
    agent_json_key(j, "target");
    agent_json_string(j, target);
    agent_json_key(j, "epoch");
    agent_json_uint(j, s->epoch);
    agent_json_key(j, "full");
    agent_json_bool(j, s->full);
    agent_json_key(j, "quiesce_usec");
    agent_json_uint(j, s->quiesce_usec);
    agent_json_key(j, "freeze_usec");
    agent_json_uint(j, s->freeze_usec);
    agent_json_key(j, "pages_scanned");
    agent_json_uint(j, s->pages_scanned);
    agent_json_key(j, "pages_written");
    agent_json_uint(j, s->pages_written);
    agent_json_key(j, "bytes_raw");
    agent_json_uint(j, s->bytes_raw);
    agent_json_key(j, "bytes_stored");
    agent_json_uint(j, s->bytes_stored);
    json_encode_stats(j, s);
    agent_json_key(j, "write_usec");
    agent_json_uint(j, s->write_usec);
    agent_json_object_end(j);

    /* in the manner of CRIU's dump statistics */
    tprintf(&t, "checkpoint of '");
    tput_safe(&t, target);
    tprintf(&t, "': epoch %llu (%s)\n", (unsigned long long)s->epoch,
            s->full ? "full" : "incremental");
    tprintf(&t, "  quiesce:         %s\n", agent_usec_string(s->quiesce_usec, a, sizeof(a)));
    tprintf(&t, "  freeze (pause):  %s\n", agent_usec_string(s->freeze_usec, a, sizeof(a)));
    tprintf(&t, "  pages scanned:   %llu\n", (unsigned long long)s->pages_scanned);
    tprintf(&t, "  pages written:   %llu\n", (unsigned long long)s->pages_written);
    tprintf(&t, "  bytes raw:       %llu (%s)\n", (unsigned long long)s->bytes_raw,
            agent_size_string((size_t)s->bytes_raw, b, sizeof(b)));
    tprintf(&t, "  bytes stored:    %llu (%s)\n", (unsigned long long)s->bytes_stored,
            agent_size_string((size_t)s->bytes_stored, b, sizeof(b)));
    tprintf(&t, "  encode:          %s\n", agent_usec_string(s->encode_usec, a, sizeof(a)));
    tprintf(&t, "  encode CPU:      %s%s\n", agent_usec_string(s->encode_cpu_usec, a, sizeof(a)),
            !s->encoded_idle ? ""
            : s->idle_capped ? " (began at idle priority, normal after the cap)"
                             : " (at idle priority)");
    tprintf(&t, "  write:           %s\n", agent_usec_string(s->write_usec, a, sizeof(a)));
    return finish(&j, &t, ret_json, ret_text);
}

int agent_render_images(const char *target, const agent_image_row_t *rows, size_t n,
                        const char *note, const agent_compaction_t *c, const agent_standby_t *sb,
                        char **ret_json, char **ret_text)
{
    agent_json_t *j = agent_json_new();
    text_t t = {0};
    char tm[RTCR_IMAGE_TIME_STRING_MAX];
    if (!j)
        return -ENOMEM;
    agent_json_array_begin(j);
    for (size_t i = 0; i < n; i++) {
        const agent_image_row_t *r = &rows[i];
        agent_json_object_begin(j);
        agent_json_key(j, "epoch");
        agent_json_uint(j, r->epoch);
        agent_json_key(j, "kind");
        agent_json_string(j, r->full ? "full" : "incremental");
        agent_json_key(j, "parent");
        if (r->full)
            agent_json_null(j);
        else
            agent_json_uint(j, r->parent);
        agent_json_key(j, "compacted_from");
        if (r->compacted_from)
            agent_json_uint(j, r->compacted_from);
        else
            agent_json_null(j);
        agent_json_key(j, "bytes");
        agent_json_uint(j, r->bytes);
        agent_json_key(j, "pages_written");
        agent_json_uint(j, r->pages_written);
        agent_json_key(j, "pages_zero");
        agent_json_uint(j, r->pages_zero);
        agent_json_key(j, "freeze_usec");
        agent_json_uint(j, r->freeze_usec);
        agent_json_key(j, "encode_usec");
        agent_json_uint(j, r->encode_usec);
        agent_json_key(j, "created_usec");
        agent_json_uint(j, r->created_usec);
        agent_json_key(j, "created");
        agent_json_string(j, rtcr_image_time_string(r->created_usec, tm, sizeof(tm)));
        agent_json_key(j, "verified");
        agent_json_bool(j, r->verified);
        agent_json_key(j, "error");
        agent_json_string(j, r->verified ? NULL : (r->error ? r->error : "not verified"));
        agent_json_object_end(j);
    }
    agent_json_array_end(j);

    if (n == 0) {
        tprintf(&t, "no image of '");
        tput_safe(&t, target);
        tprintf(&t, "'\n");
    } else {
        tprintf(&t, "%-6s  %-11s  %-6s  %-7s  %-6s  %-5s  %-7s  %-7s  %-24s  %s\n", "EPOCH", "KIND",
                "PARENT", "SIZE", "PAGES", "ZERO", "FREEZE", "ENCODE", "CREATED", "VERIFIED");
    }
    for (size_t i = 0; i < n; i++) {
        const agent_image_row_t *r = &rows[i];
        char parent[24], size[16], fr[16], en[16];
        if (r->full)
            snprintf(parent, sizeof(parent), "-");
        else
            snprintf(parent, sizeof(parent), "%llu", (unsigned long long)r->parent);
        tprintf(&t, "%-6llu  %-11s  %-6s  %-7s  %-6llu  %-5llu  %-7s  %-7s  %-24s  ",
                (unsigned long long)r->epoch,
                r->compacted_from ? "compacted"
                : r->full         ? "full"
                                  : "incremental",
                parent, agent_size_string((size_t)r->bytes, size, sizeof(size)),
                (unsigned long long)r->pages_written, (unsigned long long)r->pages_zero,
                agent_usec_string(r->freeze_usec, fr, sizeof(fr)),
                agent_usec_string(r->encode_usec, en, sizeof(en)),
                rtcr_image_time_string(r->created_usec, tm, sizeof(tm)));
        if (r->verified) {
            tprintf(&t, "yes\n");
        } else {
            tprintf(&t, "NO: ");
            tput_safe(&t, r->error ? r->error : "not verified");
            tput(&t, "\n", 1);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (rows[i].compacted_from) {
            tprintf(&t, "epoch %llu is epochs %llu..%llu compacted into one full epoch\n",
                    (unsigned long long)rows[i].epoch, (unsigned long long)rows[i].compacted_from,
                    (unsigned long long)rows[i].epoch);
            break;
        }
    if (note && *note) {
        tput_safe(&t, note);
        tput(&t, "\n", 1);
    }
    /* footer: "standby: epoch 112 (16M, updated in 180us)", "compaction: ..." and the last
     * compaction failure (the JSON body is the epochs alone: `ecuctl targets --json` has these) */
    if (sb) {
        char sz[16], us[16];
        standby_text(&t, sb);
        if (sb->ready)
            tprintf(&t, " (%s, updated in %s)",
                    agent_size_string((size_t)sb->bytes, sz, sizeof(sz)),
                    agent_usec_string(sb->apply_usec, us, sizeof(us)));
        tput(&t, "\n", 1);
    }
    if (c) {
        tprintf(&t, "compaction: ");
        compaction_text(&t, c);
        if (c->max_chain || c->started)
            tprintf(&t, "; %u started, %u committed, %u failed, %u discarded (max chain %u)",
                    c->started, c->committed, c->failed, c->discarded, c->max_chain);
        tput(&t, "\n", 1);
        if (c->error && *c->error) {
            char us[16];
            tprintf(&t, "last compaction failure (%s ago): ",
                    agent_usec_string(c->error_ago_usec, us, sizeof(us)));
            tput_safe(&t, c->error);
            tput(&t, "\n", 1);
        }
    }
    return finish(&j, &t, ret_json, ret_text);
}

int agent_render_check(const agent_check_t *c, char **ret_json, char **ret_text)
{
    agent_json_t *j = agent_json_new();
    text_t t = {0};
    bool has_reason = c->dirty_reason && *c->dirty_reason;
    if (!j)
        return -ENOMEM;
    agent_json_object_begin(j);
    agent_json_key(j, "ecu");
    agent_json_string(j, c->ecu);
    agent_json_key(j, "kernel");
    agent_json_string(j, c->kernel);
    agent_json_key(j, "dirty_tracking");
    agent_json_object_begin(j);
    agent_json_key(j, "mode");
    agent_json_string(j, c->dirty_mode);
    agent_json_key(j, "reason");
    agent_json_string(j, has_reason ? c->dirty_reason : NULL);
    agent_json_object_end(j);
    agent_json_key(j, "futex_waitv");
    agent_json_bool(j, c->futex_waitv);
    agent_json_key(j, "state_dir");
    agent_json_object_begin(j);
    agent_json_key(j, "path");
    agent_json_string(j, c->state_dir);
    agent_json_key(j, "writable");
    agent_json_bool(j, c->state_dir_writable);
    agent_json_key(j, "error");
    agent_json_string(j, c->state_dir_writable ? NULL : c->state_dir_error);
    agent_json_object_end(j);
    agent_json_key(j, "targets");
    agent_json_array_begin(j);
    for (size_t i = 0; i < c->n_targets; i++) {
        const agent_check_target_t *tg = &c->targets[i];
        agent_json_object_begin(j);
        agent_json_key(j, "name");
        agent_json_string(j, tg->name);
        agent_json_key(j, "checkpoint_ms");
        agent_json_uint(j, tg->checkpoint_ms);
        agent_json_key(j, "on_crash");
        agent_json_string(j, tg->on_crash);
        agent_json_key(j, "dirty_tracking");
        agent_json_string(j, tg->configured);
        agent_json_key(j, "effective");
        agent_json_string(j, tg->effective);
        agent_json_object_end(j);
    }
    agent_json_array_end(j);
    agent_json_object_end(j);

    tprintf(&t, "ecu:             ");
    tput_safe(&t, c->ecu);
    tprintf(&t, "\nkernel:          ");
    tput_safe(&t, c->kernel);
    tprintf(&t, "\ndirty tracking:  ");
    tput_safe(&t, c->dirty_mode);
    if (has_reason) {
        tprintf(&t, " (uffd-wp unavailable: ");
        tput_safe(&t, c->dirty_reason);
        tput(&t, ")", 1);
    }
    tprintf(&t, "\nfutex_waitv:     %s\n", c->futex_waitv ? "available" : "not available");
    tprintf(&t, "state dir:       ");
    tput_safe(&t, c->state_dir);
    if (c->state_dir_writable) {
        tprintf(&t, " (writable)\n");
    } else {
        tprintf(&t, " (NOT writable: ");
        tput_safe(&t, c->state_dir_error ? c->state_dir_error : "unknown");
        tprintf(&t, ")\n");
    }
    for (size_t i = 0; i < c->n_targets; i++) {
        const agent_check_target_t *tg = &c->targets[i];
        tprintf(&t, "target ");
        tput_safe(&t, tg->name);
        if (tg->checkpoint_ms)
            tprintf(&t, ": checkpoint every %u ms", tg->checkpoint_ms);
        else
            tprintf(&t, ": no periodic checkpoints");
        tprintf(&t, ", on_crash %s, dirty tracking %s", tg->on_crash, tg->configured);
        if (strcmp(tg->configured, tg->effective) != 0)
            tprintf(&t, " -> %s", tg->effective);
        tput(&t, "\n", 1);
    }
    return finish(&j, &t, ret_json, ret_text);
}
