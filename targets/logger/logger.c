/* logger — example target that uses the services differently from brake:
 *
 * - a ROM consumer: reads its message catalogue from ROM module "messages" (one message per
 *   line; a built-in line if the module is absent);
 * - one-shot timers re-armed from the handler with a varying delay (50..200 ms) instead of a
 *   periodic timer;
 * - dynamic RAM: every round allocates a dataspace of a few pages, fills and checks it, and
 *   frees it again, so its dataspaces and region map change while it runs;
 * - user signals: every 10 rounds it submits a signal to a handler on a second entrypoint.
 * Every round logs "round=<n> <message>".
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rtcr/component.h>

struct logger {
    rtcr_env_t *env;      /* environment */
    rtcr_cap_t timer;     /* Timer session */
    rtcr_cap_t sig_audit; /* signal context on the "audit" entrypoint */
    const char *catalog;  /* ROM content (not NUL-terminated) */
    size_t catalog_size;  /* its length */
    uint64_t round;       /* rounds done */
    uint64_t audits;      /* audit signals handled */
    size_t next_line;     /* offset of the next message in the catalogue */
};

static void next_message(struct logger *l, char *buf, size_t bufsz)
{
    if (!l->catalog || !l->catalog_size) {
        snprintf(buf, bufsz, "no message catalogue");
        return;
    }
    if (l->next_line >= l->catalog_size)
        l->next_line = 0;
    const char *s = l->catalog + l->next_line;
    const char *nl = memchr(s, '\n', l->catalog_size - l->next_line);
    size_t n = nl ? (size_t)(nl - s) : l->catalog_size - l->next_line;
    l->next_line += n + 1;
    if (n >= bufsz)
        n = bufsz - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
}

static void on_audit(void *ctx, unsigned count)
{
    struct logger *l = ctx;
    l->audits += count;
    rtcr_log(l->env, "audit %llu after round %llu", (unsigned long long)l->audits,
             (unsigned long long)l->round);
}

static void on_timeout(void *ctx, unsigned count)
{
    struct logger *l = ctx;
    (void)count;
    l->round++;

    /* churn a dataspace: allocate, fill, check, free */
    size_t size = (1 + l->round % 4) * 4096;
    rtcr_cap_t ds;
    void *p;
    const char *verdict = "ram ok";
    if (rtcr_ram_alloc_attach(l->env, size, &ds, &p) < 0) {
        verdict = "ram alloc failed";
    } else {
        memset(p, (int)(l->round & 0xff), size);
        if (((unsigned char *)p)[size - 1] != (unsigned char)(l->round & 0xff))
            verdict = "ram mismatch";
        rtcr_ram_free(l->env, ds, p);
    }

    char msg[128];
    next_message(l, msg, sizeof(msg));
    rtcr_log(l->env, "round=%llu %s (%s)", (unsigned long long)l->round, msg, verdict);
    if (l->round % 10 == 0)
        rtcr_signal_submit(l->env, l->sig_audit, 1);
    rtcr_timer_oneshot(l->env, l->timer, 50000 + (l->round % 4) * 50000);
}

void rtcr_component_construct(rtcr_env_t *env)
{
    struct logger *l = rtcr_heap_alloc(env, sizeof(*l));
    if (!l)
        rtcr_env_exit(env, 1);
    l->env = env;
    rtcr_env_set_root(env, l);
    const void *data;
    if (rtcr_rom_attach(env, "messages", &data, &l->catalog_size) == 0)
        l->catalog = data;
    rtcr_ep_t *audit_ep;
    rtcr_cap_t sig_timeout;
    if (rtcr_ep_create(env, "audit", &audit_ep) < 0 ||
        rtcr_signal_handler(audit_ep, on_audit, l, &l->sig_audit) < 0 ||
        rtcr_signal_handler(rtcr_env_ep(env), on_timeout, l, &sig_timeout) < 0 ||
        rtcr_timer_open(env, &l->timer) < 0 || rtcr_timer_sigh(env, l->timer, sig_timeout) < 0 ||
        rtcr_timer_oneshot(env, l->timer, 50000) < 0) {
        rtcr_log(env, "setup failed");
        rtcr_env_exit(env, 1);
    }
    rtcr_log(env, "started with %zu bytes of messages", l->catalog_size);
}
