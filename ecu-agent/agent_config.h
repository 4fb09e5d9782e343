/* agent_config.h — the agent's configuration: one ECU, its targets and its simulated sensors,
 * read from a ZPL file (CZMQ zconfig, rfc.zeromq.org/spec:4/ZPL) and fully validated.
 *
 * Validation is strict, because a typo in a vehicle's config must not pass silently: unknown
 * keys, duplicate keys, values that do not parse, out-of-range numbers, missing files and
 * inconsistent settings are all errors. Every error message names the file, the key path and
 * what is wrong, e.g.
 *     single.conf: targets/brake/ram: "16Q" is not a size (use 16M, 1G, ...)
 * Syntax errors carry the line number instead of a key ("single.conf:7: ...").
 *
 * Paths: relative ROM paths, a relative target_dir and binaries containing a slash are
 * relative to the directory of the config file. A binary without a slash is looked up in
 * target_dir; an empty target_dir means the default the caller passes (the agent uses the
 * directory of its executable + "/targets" if that exists, else RTCR_TARGET_DIR). All paths in
 * the loaded config are resolved (absolute when the config path is absolute).
 *
 * The full key reference is docs/config-reference.md; keep both in step.
 */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#ifndef RTCR_TARGET_DIR
#define RTCR_TARGET_DIR "/usr/local/lib/rtcr/targets" /* PREFIX/lib/rtcr/targets */
#endif
#define AGENT_CONTROL_DIR     "/run/rtcr"     /* default control socket: DIR/NAME.sock */
#define AGENT_STATE_DIR       "/var/lib/rtcr" /* default state dir: DIR/NAME */
#define AGENT_NAME_MAX        31              /* ECU, target, sensor and ROM names */
#define AGENT_TARGETS_MAX     64              /* targets per ECU */
#define AGENT_SENSORS_MAX     64              /* sensors per ECU */
#define AGENT_ROMS_MAX        16              /* extra ROM modules per target */
#define AGENT_SERVICES_MAX    8               /* services a target provides */
#define AGENT_CAPS_MAX        4096            /* capability slots of a PD (RTCR_CAP_SLOTS) */
#define AGENT_IRQ_LINES       256             /* simulated interrupt lines (RTCR_IRQ_LINES) */
#define AGENT_PERIOD_MS_MAX   3600000u        /* longest sensor period: one hour */
#define AGENT_LOG_LINES_MAX   100000u         /* LOG lines kept per target */
#define AGENT_TIMER_PRIORITY  10              /* ecu/timer_priority default (SCHED_FIFO) */
#define AGENT_CONFIG_SIZE_MAX (1u << 20)      /* a config file larger than this is refused */
#define AGENT_SOCKET_PATH_MAX 107             /* sizeof(sun_path) - 1 */
#define AGENT_CKPT_MS_MIN     10              /* shortest periodic checkpoint interval */
#define AGENT_CKPT_MS_MAX     3600000u        /* longest periodic checkpoint interval: one hour */
#define AGENT_QUIESCE_MS_MAX  60000u          /* longest quiesce timeout: one minute */
#define AGENT_MAX_CHAIN_MAX   100000u         /* max_chain at most (RTCR_IMAGE_MAX_EPOCHS) */
#define AGENT_GRANULARITY_MAX (1u << 30) /* largest tracking unit (RTCR_DIRTY_MAX_GRANULARITY) */
#define AGENT_DIRTY_AUTO      (-1)       /* dirty_tracking = auto: the best the kernel has */

/* What the agent does when a target crashes (targets/NAME/on_crash). */
enum agent_on_crash {
    AGENT_ON_CRASH_NONE = 0, /* leave it failed */
    AGENT_ON_CRASH_RESTART,  /* start it fresh (construct runs again) */
    AGENT_ON_CRASH_RESTORE,  /* restore it from its newest checkpoint epoch */
    AGENT_ON_CRASH_MAX
};

/* One extra ROM module of a target. */
typedef struct agent_rom_conf {
    char *name; /* module name the component asks for */
    char *path; /* resolved file path */
} agent_rom_conf_t;

/* One target. */
typedef struct agent_target_conf {
    char *name;                            /* unique on the ECU */
    char *binary;                          /* resolved path of the executable */
    size_t ram;                            /* RAM quota (bytes) */
    unsigned caps;                         /* capability limit (1..4096) */
    bool autostart;                        /* start when the agent starts */
    agent_rom_conf_t roms[AGENT_ROMS_MAX]; /* extra ROM modules */
    size_t n_roms;                         /* number of roms */
    char *services[AGENT_SERVICES_MAX];    /* services the target provides */
    size_t n_services;                     /* number of services */
    unsigned checkpoint_ms;                /* periodic checkpoint interval, 0 = off */
    enum agent_on_crash on_crash;          /* crash policy */
    int dirty_mode;                        /* rtcr_dirty_mode_t or AGENT_DIRTY_AUTO */
    size_t granularity;                    /* dirty-tracking unit in bytes */
    unsigned quiesce_ms;                   /* how long entrypoints may take to reach a wait */
    unsigned max_chain;                    /* compact the chain beyond this many epochs (0 never) */
    bool standby;                          /* keep a hot standby for fast restores (default:
                                              on when on_crash = restore) */
} agent_target_conf_t;

/* One simulated sensor: the agent fires interrupt `line` every `period_ms`. */
typedef struct agent_sensor_conf {
    char *name;         /* sensor name (for logs) */
    unsigned line;      /* interrupt line (0..255) */
    unsigned period_ms; /* firing period in ms (1..3600000) */
} agent_sensor_conf_t;

/* A loaded, validated configuration. Plain data, read by the agent after loading. */
typedef struct agent_config {
    char *path;                                     /* config file as given */
    char *name;                                     /* ecu/name */
    char *control;                                  /* ecu/control: socket path */
    char *state_dir;                                /* ecu/state_dir */
    size_t ram;                                     /* ecu/ram (bytes) */
    unsigned log_lines;                             /* ecu/log_lines */
    unsigned timer_priority;                        /* ecu/timer_priority, 0: normal */
    bool encode_idle;                               /* ecu/encode_idle */
    char *target_dir;                               /* resolved ecu/target_dir */
    agent_target_conf_t targets[AGENT_TARGETS_MAX]; /* targets in file order */
    size_t n_targets;                               /* number of targets */
    agent_sensor_conf_t sensors[AGENT_SENSORS_MAX]; /* sensors in file order */
    size_t n_sensors;                               /* number of sensors */
} agent_config_t;

/* Load and validate the config file at `path`. `default_target_dir` (borrowed, may be NULL for
 * RTCR_TARGET_DIR) is used when ecu/target_dir is empty or absent.
 * On success *ret_cfg is a new config (caller owns, agent_config_destroy). On failure returns
 * -errno (-ENOENT/-EACCES/... file not readable, -EFBIG too large, -EINVAL invalid, -ENOMEM)
 * and, if ret_error is not NULL, sets *ret_error to a malloc'ed message naming file and key
 * (caller frees; may be NULL on -ENOMEM). */
int agent_config_load(const char *path, const char *default_target_dir, agent_config_t **ret_cfg,
                      char **ret_error);
/* As agent_config_load, but from `text`; `path` only names the file in messages and gives the
 * base directory for relative paths. */
int agent_config_parse(const char *path, const char *text, const char *default_target_dir,
                       agent_config_t **ret_cfg, char **ret_error);
/* Free a config. NULL-safe, idempotent, NULLs *p. */
void agent_config_destroy(agent_config_t **p);

/* Find a target by name; borrowed or NULL. */
const agent_target_conf_t *agent_config_find_target(const agent_config_t *cfg, const char *name);

/* Parse a size: decimal digits with an optional K, M or G suffix (powers of 1024).
 * -EINVAL if malformed, -ERANGE if it overflows size_t. */
int agent_parse_size(const char *s, size_t *ret_size);
/* Parse a decimal unsigned integer <= max. -EINVAL malformed, -ERANGE above max. */
int agent_parse_uint(const char *s, unsigned max, unsigned *ret_value);
/* Parse a boolean: 1/0, true/false, yes/no, on/off. -EINVAL otherwise. */
int agent_parse_bool(const char *s, bool *ret_value);
/* Name of a crash policy as written in the config ("none", "restart", "restore"); "?" if out
 * of range. */
const char *agent_on_crash_name(enum agent_on_crash p);
/* Whether s is a valid target/ECU/sensor name: 1..31 of [A-Za-z0-9_-], not starting with '-'. */
bool agent_name_is_valid(const char *s);

/* The default target directory for an agent whose executable is `exe` (e.g. "/proc/self/exe"
 * resolved): dirname(exe) + "/targets" if that directory exists, else RTCR_TARGET_DIR.
 * Returns a malloc'ed string (caller frees) or NULL on ENOMEM. */
char *agent_default_target_dir(const char *exe);

#endif
