/* agent_log.h — the agent's logger: levels, %m support, journal-aware output.
 *
 * Modelled on systemd's log.h: log_error(), log_info(), ... take printf-style formats;
 * log_*_errno(r, fmt, ...) set errno = -r (or r if positive) so that "%m" prints the error text,
 * and return -abs(r), so an error path reads `return log_error_errno(r, "bind %s: %m", path);`.
 *
 * Output goes to stderr, one line per call, written with a single write(2) so that lines from
 * different threads do not interleave. When stderr is connected to the journal (the
 * JOURNAL_STREAM environment variable names the device and inode of stderr, as systemd sets it),
 * each line is prefixed with the syslog level "<N>" and nothing else (the journal adds its own
 * timestamp); otherwise with a local timestamp and the level name.
 *
 * The logger's configuration is the only mutable global state of the agent. Set it up once at
 * start (log_open, log_set_max_level) before any thread is created; logging itself may then be
 * called from any thread.
 */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Detect whether stderr is the journal (JOURNAL_STREAM) and configure the line prefix. */
void log_open(void);
/* Force the journal prefix on or off (tests; log_open() sets it from the environment). */
void log_set_journal(bool journal);
/* Messages with a level numerically above `level` (LOG_ERR .. LOG_DEBUG) are dropped.
 * Default LOG_INFO. */
void log_set_max_level(int level);
int log_get_max_level(void);
/* Parse "error", "warning", "notice", "info", "debug" (or the syslog digit); -EINVAL. */
int log_level_from_string(const char *s);
/* Level name as printed: "error", "warning", "notice", "info", "debug". */
const char *log_level_to_string(int level);

/* Log one line at `level`. If error != 0, errno is set to abs(error) before formatting (for %m).
 * Returns -abs(error) (0 if error == 0). errno is preserved when error == 0. */
int log_internal(int level, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...)   ((void)log_internal(LOG_ERR, 0, __VA_ARGS__))
#define log_warning(...) ((void)log_internal(LOG_WARNING, 0, __VA_ARGS__))
#define log_notice(...)  ((void)log_internal(LOG_NOTICE, 0, __VA_ARGS__))
#define log_info(...)    ((void)log_internal(LOG_INFO, 0, __VA_ARGS__))
#define log_debug(...)   ((void)log_internal(LOG_DEBUG, 0, __VA_ARGS__))

#define log_error_errno(r, ...)   log_internal(LOG_ERR, (r), __VA_ARGS__)
#define log_warning_errno(r, ...) log_internal(LOG_WARNING, (r), __VA_ARGS__)
#define log_notice_errno(r, ...)  log_internal(LOG_NOTICE, (r), __VA_ARGS__)
#define log_info_errno(r, ...)    log_internal(LOG_INFO, (r), __VA_ARGS__)
#define log_debug_errno(r, ...)   log_internal(LOG_DEBUG, (r), __VA_ARGS__)

#endif
