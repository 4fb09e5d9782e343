/* agent_ckpt.h — the agent's side of checkpoint and restore that is not event-loop policy:
 * turning a target's image into rows for `ecuctl images` (every epoch re-verified), probing
 * what the ECU supports for `ecuctl check`, preparing the state directory, and the failure
 * latch that lets a checkpoint failing at 100 Hz be logged once per distinct cause.
 *
 * The policy itself (periodic timers, what to do on a crash) lives with the event loop in
 * ecu-agent.c; the runtime (rtcr/ecu.h) does the checkpoints and restores.
 */
#ifndef AGENT_CKPT_H
#define AGENT_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_render.h"

struct rtcr_image;

#define AGENT_CAUSE_MAX 256 /* bytes of a failure cause kept by a latch */

/* Remembers the cause of the last failure of a repeated operation, so that only a change of
 * cause is logged. Zero-initialised = no failure seen. */
typedef struct agent_latch {
    char cause[AGENT_CAUSE_MAX]; /* cause of the last failure, "" after a success */
    unsigned failures;           /* failures since the last success */
} agent_latch_t;

/* Record a failure with `cause` (truncated to AGENT_CAUSE_MAX - 1 bytes). Returns true if the
 * caller should log it: the first failure, or a cause different from the previous one. */
bool agent_latch_fail(agent_latch_t *l, const char *cause);
/* Record a success. Returns the number of failures since the previous success (0: nothing to
 * report) and resets the latch. */
unsigned agent_latch_ok(agent_latch_t *l);

/* Rows for `ecuctl images` of `img` (borrowed; NULL or empty gives 0 rows): one per epoch,
 * oldest first, with the header's statistics. Each epoch's bytes are parsed again with the
 * default limits and every frame decompressed and hash-checked (rtcr_epoch_parse), so
 * `verified` says whether the bytes still are what was written; a failure's message is in
 * `error` (owned by the rows). On success *ret_rows (free with agent_image_rows_free) and
 * *ret_n are set. -ENOMEM. */
int agent_image_rows(const struct rtcr_image *img, agent_image_row_t **ret_rows, size_t *ret_n);
/* Free rows from agent_image_rows (NULL-safe; NULLs *rows). */
void agent_image_rows_free(agent_image_row_t **rows, size_t n);

/* Create `dir` and its missing parents; the last component is created mode 0750 (parents
 * 0755). An existing directory is fine. -ENOTDIR if `dir` exists and is not a directory,
 * -errno of mkdir. */
int agent_state_dir_make(const char *dir);

/* Whether a file can be created in `dir` (a temporary file is created and removed). Returns 0,
 * or -errno with a message in why[why_len]. */
int agent_state_dir_writable(const char *dir, char *why, size_t why_len);

/* Whether the futex_waitv(2) system call exists (Linux >= 5.16). */
bool agent_have_futex_waitv(void);

/* "Linux 6.18.0 x86_64" (uname) into buf. */
const char *agent_kernel_string(char *buf, size_t len);

#endif
