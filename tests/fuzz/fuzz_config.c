/* fuzz_config.c — fuzz the agent's config parser (agent_config_parse: our ZPL syntax check,
 * CZMQ's zconfig parser behind it, and the schema walk).
 *
 * The input is the config text (up to the first NUL, as agent_config_load refuses files with
 * a NUL; at most AGENT_CONFIG_SIZE_MAX bytes). It is parsed twice: under an absolute path
 * ("/etc/fuzz.conf", relative ROMs resolve in /etc) with "/bin" as the default target
 * directory, so that seeds naming "sh", "/bin/sh" or "/etc/passwd" reach a complete, valid
 * config without any file of our own; and under a relative path with no default directory.
 *
 * Contract checked (abort() on violation):
 *   failure: -EINVAL or -ENOMEM, no config returned, and (unless -ENOMEM) a message that
 *            starts with the file name;
 *   success: no message, and a config within every documented limit (names valid, counts at
 *            most the *_MAX constants, numbers in their ranges, targets' RAM within ecu/ram,
 *            sensor lines distinct, every target findable by name).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <rtcr/dirty.h>

#include "../../ecu-agent/agent_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_pow2(size_t v)
{
    return v && (v & (v - 1)) == 0;
}

static void check_target(const agent_config_t *cfg, const agent_target_conf_t *t)
{
    if (!agent_name_is_valid(t->name) || !t->binary || !t->binary[0])
        abort();
    if (t->ram == 0 || t->caps < 1 || t->caps > AGENT_CAPS_MAX)
        abort();
    if (t->n_roms > AGENT_ROMS_MAX || t->n_services > AGENT_SERVICES_MAX)
        abort();
    for (size_t k = 0; k < t->n_roms; k++)
        if (!t->roms[k].name || !t->roms[k].path || strlen(t->roms[k].name) > AGENT_NAME_MAX ||
            strcmp(t->roms[k].name, "binary") == 0)
            abort();
    for (size_t k = 0; k < t->n_services; k++) {
        if (!agent_name_is_valid(t->services[k]))
            abort();
        for (size_t j = 0; j < k; j++)
            if (strcmp(t->services[j], t->services[k]) == 0)
                abort();
    }
    if (t->checkpoint_ms > AGENT_CKPT_MS_MAX ||
        (t->checkpoint_ms > 0 && t->checkpoint_ms < AGENT_CKPT_MS_MIN))
        abort();
    if ((unsigned)t->on_crash >= AGENT_ON_CRASH_MAX ||
        strcmp(agent_on_crash_name(t->on_crash), "?") == 0)
        abort();
    if (t->dirty_mode < AGENT_DIRTY_AUTO || t->dirty_mode >= (int)RTCR_DIRTY_MODE_MAX)
        abort();
    if (t->granularity < 4096 || t->granularity > AGENT_GRANULARITY_MAX || !is_pow2(t->granularity))
        abort();
    if (t->quiesce_ms < 1 || t->quiesce_ms > AGENT_QUIESCE_MS_MAX ||
        t->max_chain > AGENT_MAX_CHAIN_MAX)
        abort();
    if (agent_config_find_target(cfg, t->name) != t)
        abort(); /* names are unique, so the lookup finds this very entry */
}

static void check_config(const agent_config_t *cfg, const char *path)
{
    size_t ram = 0;

    if (!cfg->path || strcmp(cfg->path, path) != 0 || !agent_name_is_valid(cfg->name))
        abort();
    if (!cfg->control || cfg->control[0] != '/' || strlen(cfg->control) > AGENT_SOCKET_PATH_MAX)
        abort();
    if (!cfg->state_dir || cfg->state_dir[0] != '/' || !cfg->target_dir)
        abort();
    if (cfg->ram == 0 || cfg->log_lines < 1 || cfg->log_lines > AGENT_LOG_LINES_MAX)
        abort();
    if (cfg->n_targets > AGENT_TARGETS_MAX || cfg->n_sensors > AGENT_SENSORS_MAX)
        abort();
    for (size_t i = 0; i < cfg->n_targets; i++) {
        check_target(cfg, &cfg->targets[i]);
        if (cfg->targets[i].ram > SIZE_MAX - ram)
            abort();
        ram += cfg->targets[i].ram;
    }
    if (ram > cfg->ram)
        abort();
    for (size_t i = 0; i < cfg->n_sensors; i++) {
        const agent_sensor_conf_t *s = &cfg->sensors[i];
        if (!agent_name_is_valid(s->name) || s->line >= AGENT_IRQ_LINES || s->period_ms < 1 ||
            s->period_ms > AGENT_PERIOD_MS_MAX)
            abort();
        for (size_t j = 0; j < i; j++)
            if (cfg->sensors[j].line == s->line)
                abort();
    }
    if (agent_config_find_target(cfg, "no such target name, it has spaces"))
        abort();
}

static void parse_one(const char *path, const char *text, const char *tdir)
{
    agent_config_t *cfg = NULL;
    char *error = NULL;
    int r = agent_config_parse(path, text, tdir, &cfg, &error);

    if (r == 0) {
        if (!cfg || error)
            abort();
        check_config(cfg, path);
    } else {
        if (cfg || (r != -EINVAL && r != -ENOMEM))
            abort();
        if (r == -EINVAL && (!error || strncmp(error, path, strlen(path)) != 0))
            abort(); /* a rejected config must say why, naming the file */
    }
    free(error);
    agent_config_destroy(&cfg);
    if (cfg)
        abort();
    agent_config_destroy(&cfg); /* idempotent */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t len = nul ? (size_t)(nul - data) : size;
    char *text;

    if (len > AGENT_CONFIG_SIZE_MAX)
        return 0;
    text = malloc(len + 1);
    if (!text)
        return 0;
    memcpy(text, data, len);
    text[len] = '\0';
    parse_one("/etc/fuzz.conf", text, "/bin");
    parse_one("fuzz-dir/fuzz-ecu.conf", text, NULL);
    free(text);
    return 0;
}
