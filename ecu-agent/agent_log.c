/* agent_log.c — see agent_log.h. The two settings below are the agent's only mutable globals;
 * they are written once at start-up, before any thread exists, and only read afterwards. */
#include "agent_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048 /* longer messages are truncated */

static int log_max_level = LOG_INFO; /* drop messages above this level */
static bool log_journal = false;     /* stderr is the journal: "<N>" prefix, no timestamp */

static const char *const level_names[] = {
    [LOG_EMERG] = "emerg",     [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit", [LOG_ERR] = "error",
    [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_open(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    log_journal = false;
    if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
        return;
    if (fstat(STDERR_FILENO, &st) < 0)
        return;
    log_journal = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_journal(bool journal)
{
    log_journal = journal;
}

void log_set_max_level(int level)
{
    if (level < LOG_EMERG)
        level = LOG_EMERG;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    log_max_level = level;
}

int log_get_max_level(void)
{
    return log_max_level;
}

int log_level_from_string(const char *s)
{
    if (!s)
        return -EINVAL;
    for (int i = LOG_EMERG; i <= LOG_DEBUG; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warn") == 0)
        return LOG_WARNING;
    if (strcmp(s, "err") == 0)
        return LOG_ERR;
    if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
        return s[0] - '0';
    return -EINVAL;
}

const char *log_level_to_string(int level)
{
    if (level < LOG_EMERG || level > LOG_DEBUG)
        return "?";
    return level_names[level];
}

int log_internal(int level, int error, const char *fmt, ...)
{
    int saved = errno;
    int ret = error < 0 ? error : -error;
    char line[LOG_LINE_MAX + 64];
    size_t n = 0;
    va_list ap;

    if (level > log_max_level) {
        errno = saved;
        return ret;
    }
    if (log_journal) {
        n = (size_t)snprintf(line, sizeof(line), "<%d>", level);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld %-7s ", ts.tv_nsec / 1000000L,
                              log_level_to_string(level));
    }
    errno = error != 0 ? -ret : saved;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t end = n + (size_t)m;
    if (end > sizeof(line) - 2)
        end = sizeof(line) - 2;
    /* one record per line: control characters from targets or peers must not forge lines */
    for (size_t i = n; i < end; i++)
        if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
            line[i] = ' ';
    line[end++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, end);
    (void)w;
    errno = saved;
    return ret;
}
