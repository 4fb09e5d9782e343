/* agent_render.h — the two faces of every control reply: a JSON body for programs and an
 * aligned text table for operators, rendered from plain rows that the daemon collects from the
 * runtime. Rendering knows nothing of the runtime, so it is tested without one.
 *
 * JSON shapes (docs/operator-guide.md):
 *   targets: [{"name", "state", "pid" (int|null), "restarts", "ram_quota", "ram_used",
 *              "failure" (string|null)}]
 *   caps:    [{"slot", "type" (task|thread|gate|irq), "badge" (int|null), "rights" ("rws"...),
 *              "stale", "object"}]
 *   log:     ["line", ...]
 *   status:  {"name", "pid", "uptime_ms", "targets", "running", "failed", "ram_total",
 *             "ram_quota", "ram_used", "sensors", "control"}
 * Text output replaces control characters coming from targets with '?' so that a target
 * cannot drive the operator's terminal.
 */
#ifndef AGENT_RENDER_H
#define AGENT_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One target as `ecuctl targets` shows it. Strings borrowed. */
typedef struct agent_target_row {
    const char *name;    /* target name */
    const char *state;   /* "running", "stopped", "failed", "starting", "restoring" */
    pid_t pid;           /* process id, 0 when not running */
    unsigned restarts;   /* restarts counted by the runtime */
    size_t ram_quota;    /* bytes */
    size_t ram_used;     /* bytes */
    const char *failure; /* failure text when failed, else NULL */
} agent_target_row_t;

/* Capability object types as the protocol names them. */
enum agent_cap_type {
    AGENT_CAP_TASK = 0, /* "task" */
    AGENT_CAP_THREAD,   /* "thread" */
    AGENT_CAP_GATE,     /* "gate" */
    AGENT_CAP_IRQ,      /* "irq" */
    AGENT_CAP_TYPE_MAX
};

/* One occupied capability slot. Strings borrowed. */
typedef struct agent_cap_row {
    unsigned slot;            /* slot number */
    enum agent_cap_type type; /* object type */
    bool has_badge;           /* badge is meaningful (gates) */
    uint32_t badge;           /* badge (label) of a gate */
    unsigned rights;          /* RTCR_CAP_* bits: R 4, W 1, S 2, D 8 */
    bool stale;               /* the object was deleted */
    const char *object;       /* object description, e.g. "LOG session 'brake'" */
} agent_cap_row_t;

/* ECU status. Strings borrowed. */
typedef struct agent_status {
    const char *name;     /* ECU name */
    pid_t pid;            /* agent pid */
    uint64_t uptime_usec; /* since the agent started */
    unsigned targets;     /* configured targets */
    unsigned running;     /* targets running (or starting) */
    unsigned failed;      /* targets failed */
    size_t ram_total;     /* ecu/ram */
    size_t ram_quota;     /* sum of target quotas */
    size_t ram_used;      /* sum of target RAM in use */
    unsigned sensors;     /* simulated sensors firing */
    const char *control;  /* control socket path */
} agent_status_t;

/* Each renderer returns 0 and two malloc'ed strings (caller frees) or -ENOMEM and nothing. */
int agent_render_targets(const agent_target_row_t *rows, size_t n, char **ret_json,
                         char **ret_text);
int agent_render_caps(const agent_cap_row_t *rows, size_t n, char **ret_json, char **ret_text);
int agent_render_log(const char *const *lines, size_t n, char **ret_json, char **ret_text);
int agent_render_status(const agent_status_t *st, char **ret_json, char **ret_text);

/* Rights as letters in the order r, w, s, d ("rws"; "" for none). buf needs 5 bytes. */
const char *agent_rights_string(unsigned rights, char buf[5]);
/* Type name: "task", "thread", "gate", "irq"; "?" if out of range. */
const char *agent_cap_type_name(enum agent_cap_type t);
/* A size for humans: "16M" when exact, "1.5M" otherwise, "512" below 1K. buf >= 16 bytes. */
const char *agent_size_string(size_t bytes, char *buf, size_t len);

#endif
