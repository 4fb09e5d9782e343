/* agent_ckpt.c — see agent_ckpt.h. Verification re-parses an epoch from its wire bytes, the
 * same check a replica or a restore on another ECU would make, rather than trusting the
 * parsed copy the image holds (which was parsed without frame checks when it was taken). */
#include "agent_ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <rtcr/image.h>

bool agent_latch_fail(agent_latch_t *l, const char *cause)
{
    char c[AGENT_CAUSE_MAX];
    snprintf(c, sizeof(c), "%s", cause ? cause : "");
    l->failures++;
    if (l->failures > 1 && strcmp(c, l->cause) == 0)
        return false;
    memcpy(l->cause, c, sizeof(c));
    return true;
}

unsigned agent_latch_ok(agent_latch_t *l)
{
    unsigned n = l->failures;
    l->failures = 0;
    l->cause[0] = '\0';
    return n;
}

void agent_image_rows_free(agent_image_row_t **rows, size_t n)
{
    if (!rows || !*rows)
        return;
    for (size_t i = 0; i < n; i++)
        free((char *)(*rows)[i].error);
    free(*rows);
    *rows = NULL;
}

int agent_image_rows(const struct rtcr_image *img, agent_image_row_t **ret_rows, size_t *ret_n)
{
    size_t n = img ? rtcr_image_count(img) : 0;
    agent_image_row_t *rows = NULL;

    if (n > 0 && !(rows = calloc(n, sizeof(*rows))))
        return -ENOMEM;
    uint64_t first = n ? rtcr_image_first(img) : 0;
    for (size_t i = 0; i < n; i++) {
        const rtcr_epoch_t *e = rtcr_image_epoch(img, first + i);
        agent_image_row_t *r = &rows[i];
        if (!e) { /* the chain is contiguous; a hole would be a library bug */
            r->epoch = first + i;
            if (!(r->error = strdup("missing from the chain"))) {
                agent_image_rows_free(&rows, n);
                return -ENOMEM;
            }
            continue;
        }
        const RtcrImg__EpochHeader *h = rtcr_epoch_header(e);
        size_t len = 0;
        const void *bytes = rtcr_epoch_bytes(e, &len);
        *r = (agent_image_row_t){
            .epoch = rtcr_epoch_number(e),
            .full = rtcr_epoch_is_full(e),
            .parent = rtcr_epoch_parent(e),
            .compacted_from = h->compacted_from,
            .bytes = len,
            .created_usec = h->created_usec,
        };
        if (h->stats) {
            r->pages_written = h->stats->pages_written;
            r->pages_zero = h->stats->pages_zero;
            r->freeze_usec = h->stats->freeze_usec;
            r->encode_usec = h->stats->encode_usec;
        }
        rtcr_image_err_t err = {{0}};
        rtcr_epoch_t *again = NULL;
        int p = rtcr_epoch_parse(bytes, len, NULL, &err, &again);
        rtcr_epoch_destroy(&again);
        if (p == -ENOMEM) {
            agent_image_rows_free(&rows, n);
            return -ENOMEM;
        }
        r->verified = p == 0;
        if (p < 0 && !(r->error = strdup(err.msg[0] ? err.msg : strerror(-p)))) {
            agent_image_rows_free(&rows, n);
            return -ENOMEM;
        }
    }
    *ret_rows = rows;
    *ret_n = n;
    return 0;
}

int agent_state_dir_make(const char *dir)
{
    char buf[4096];
    struct stat st;
    if (!dir || dir[0] != '/')
        return -EINVAL;
    if (strlen(dir) >= sizeof(buf))
        return -ENAMETOOLONG;
    strcpy(buf, dir);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        bool last = c == '\0';
        if (mkdir(buf, last ? 0750 : 0755) < 0) {
            if (errno != EEXIST)
                return -errno;
            if (stat(buf, &st) < 0)
                return -errno;
            if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        } else if (last && chmod(buf, 0750) < 0) { /* whatever the umask */
            return -errno;
        }
        if (last)
            return 0;
        *p = c;
    }
}

int agent_state_dir_writable(const char *dir, char *why, size_t why_len)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/.rtcr-check.XXXXXX", dir) >= (int)sizeof(path)) {
        snprintf(why, why_len, "path too long");
        return -ENAMETOOLONG;
    }
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        int r = -errno;
        snprintf(why, why_len, "cannot create a file there: %s", strerror(-r));
        return r;
    }
    close(fd);
    unlink(path);
    return 0;
}

bool agent_have_futex_waitv(void)
{
#ifdef SYS_futex_waitv
    /* no waiters is invalid: EINVAL proves the call exists, ENOSYS that it does not */
    long r = syscall(SYS_futex_waitv, NULL, 0, 0, NULL, 0);
    return !(r < 0 && errno == ENOSYS);
#else
    return false;
#endif
}

const char *agent_kernel_string(char *buf, size_t len)
{
    struct utsname u;
    if (uname(&u) < 0)
        snprintf(buf, len, "unknown");
    else
        snprintf(buf, len, "%s %s %s", u.sysname, u.release, u.machine);
    return buf;
}
