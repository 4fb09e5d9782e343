/* agent_ctl.c — see agent_ctl.h. Requests are validated completely (decode) before the daemon
 * acts on them (invoke), as in seL4's decode/invoke split. */
#include "agent_ctl.h"

#include "agent_config.h"
#include "agent_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>

static void why_set(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void why_set(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    if (!why || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

/* A decimal epoch number >= 1 without sign or leading zero. */
static bool parse_epoch(const char *s, uint64_t *ret)
{
    uint64_t v = 0;
    if (!*s || *s == '0' || strlen(s) > 19)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *ret = v;
    return true;
}

int agent_ctl_req_parse(zmsg_t *body, agent_ctl_req_t *ret_req, char *why, size_t why_len)
{
    size_t nframes = zmsg_size(body);
    const zframe_t *f[AGENT_CTL_FRAMES_MAX];

    if (nframes == 0) {
        why_set(why, why_len, "empty request");
        return -EBADMSG;
    }
    if (nframes > AGENT_CTL_FRAMES_MAX) {
        why_set(why, why_len, "too many frames in request (at most %d)", AGENT_CTL_FRAMES_MAX);
        return -E2BIG;
    }
    size_t i = 0;
    for (zframe_t *fr = zmsg_first(body); fr; fr = zmsg_next(body), i++) {
        size_t n = zframe_size(fr);
        const unsigned char *d = zframe_data(fr);
        if (n > AGENT_CTL_FRAME_MAX) {
            why_set(why, why_len, "request frame %zu is too large (%zu bytes, at most %d)", i, n,
                    AGENT_CTL_FRAME_MAX);
            return -EMSGSIZE;
        }
        for (size_t k = 0; k < n; k++)
            if (d[k] < 0x20 || d[k] == 0x7f) {
                why_set(why, why_len, "request frame %zu contains a control character", i);
                return -EBADMSG;
            }
        f[i] = fr;
    }
    char word[AGENT_CTL_FRAME_MAX + 1];
    size_t wn = zframe_size((zframe_t *)f[0]);
    if (wn == 0) {
        why_set(why, why_len, "empty command");
        return -EBADMSG;
    }
    memcpy(word, zframe_data((zframe_t *)f[0]), wn);
    word[wn] = '\0';
    int cmd = agent_cmd_lookup(word);
    if (cmd < 0) {
        /* the word is printable (checked above) but may be long: show a bounded prefix */
        why_set(why, why_len, "unknown command '%.32s'", word);
        return -EOPNOTSUPP;
    }
    const agent_cmd_info_t *info = &agent_cmd_table()[cmd];
    if (nframes - 1 < info->nargs || nframes - 1 > info->nargs + info->nopt) {
        why_set(why, why_len, "usage: %s%s%s", info->name, *info->usage ? " " : "", info->usage);
        return -EINVAL;
    }
    agent_ctl_req_t req = {.cmd = (enum agent_cmd)cmd, .argc = (unsigned)(nframes - 1)};
    for (unsigned a = 0; a < req.argc; a++) {
        size_t n = zframe_size((zframe_t *)f[a + 1]);
        memcpy(req.args[a], zframe_data((zframe_t *)f[a + 1]), n);
        req.args[a][n] = '\0';
    }
    if (agent_cmd_table()[req.cmd].names_target && !agent_name_is_valid(req.args[0])) {
        why_set(why, why_len, "'%.40s' is not a valid target name", req.args[0]);
        return -EINVAL;
    }
    if (req.cmd == AGENT_CMD_RESTORE && req.argc == 2 && !parse_epoch(req.args[1], &req.epoch)) {
        why_set(why, why_len, "'%.40s' is not an epoch number (1, 2, ...)", req.args[1]);
        return -EINVAL;
    }
    if (req.cmd == AGENT_CMD_IRQ &&
        agent_parse_uint(req.args[0], AGENT_IRQ_LINES - 1, &req.irq_line) < 0) {
        why_set(why, why_len, "'%.40s' is not an interrupt line (0..%d)", req.args[0],
                AGENT_IRQ_LINES - 1);
        return -EINVAL;
    }
    *ret_req = req;
    return 0;
}

zmsg_t *agent_ctl_reply_new(int err, const char *json, const char *text)
{
    zmsg_t *m = zmsg_new();
    char num[16];
    if (!m)
        return NULL;
    snprintf(num, sizeof(num), "%d", err < 0 ? -err : err);
    if (zmsg_addstr(m, err ? "error" : "ok") < 0 || zmsg_addstr(m, num) < 0 ||
        zmsg_addstr(m, json ? json : "") < 0 || zmsg_addstr(m, text ? text : "") < 0)
        zmsg_destroy(&m);
    return m;
}

zmsg_t *agent_ctl_error_reply(int err, const char *text)
{
    agent_json_t *j = agent_json_new();
    zmsg_t *m = NULL;
    if (!j)
        return NULL;
    agent_json_object_begin(j);
    agent_json_key(j, "error");
    agent_json_string(j, text);
    agent_json_key(j, "errno");
    agent_json_int(j, err < 0 ? -err : err);
    agent_json_object_end(j);
    if (agent_json_result(j) == 0)
        m = agent_ctl_reply_new(err, agent_json_text(j), text);
    agent_json_destroy(&j);
    return m;
}

/* Read and drop the rest of a multipart message. */
static void drain(void *raw)
{
    char sink[64];
    int more = 1;
    size_t len = sizeof(more);
    while (zmq_getsockopt(raw, ZMQ_RCVMORE, &more, &len) == 0 && more)
        if (zmq_recv(raw, sink, sizeof(sink), ZMQ_DONTWAIT) < 0)
            break;
}

int agent_ctl_recv(zsock_t *router, zmsg_t **ret_envelope, zmsg_t **ret_body)
{
    void *raw = zsock_resolve(router);
    zmsg_t *env = zmsg_new(), *body = zmsg_new();
    bool delim = false;
    int r = 0;

    if (!env || !body) {
        r = -ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < AGENT_CTL_ENVELOPE_MAX && !delim; i++) {
        zframe_t *f = zframe_recv_nowait(raw);
        if (!f) {
            r = i == 0 ? -EAGAIN : -EBADMSG;
            goto out;
        }
        delim = zframe_size(f) == 0;
        zmsg_append(env, &f);
        if (!zsock_rcvmore(router) && !delim) {
            r = -EBADMSG;
            goto out;
        }
    }
    if (!delim) {
        r = -EBADMSG;
        goto out;
    }
    while (zsock_rcvmore(router) && zmsg_size(body) <= AGENT_CTL_FRAMES_MAX) {
        zframe_t *f = zframe_recv_nowait(raw);
        if (!f)
            break;
        zmsg_append(body, &f);
    }
out:
    drain(raw);
    if (r < 0) {
        zmsg_destroy(&env);
        zmsg_destroy(&body);
        return r;
    }
    *ret_envelope = env;
    *ret_body = body;
    return 0;
}

int agent_ctl_send(zsock_t *router, zmsg_t **envelope, zmsg_t **reply)
{
    int r = 0;
    if (!*envelope || !*reply) {
        r = -EINVAL;
        goto out;
    }
    zmsg_t *out = *envelope;
    *envelope = NULL;
    zframe_t *f;
    while ((f = zmsg_pop(*reply)))
        zmsg_append(out, &f);
    if (zmsg_send(&out, router) < 0) {
        r = errno ? -errno : -EIO;
        zmsg_destroy(&out);
    }
out:
    zmsg_destroy(envelope);
    zmsg_destroy(reply);
    return r;
}

/* mkdir -p for the parent directories of path, mode 0755. */
static int make_parents(const char *path)
{
    char buf[AGENT_SOCKET_PATH_MAX + 1];
    if (strlen(path) >= sizeof(buf))
        return -ENAMETOOLONG;
    strcpy(buf, path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) == 0) {
                if (chmod(buf, 0755) < 0) /* whatever the umask */
                    return -errno;
            } else if (errno != EEXIST) {
                return -errno;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

int agent_ctl_bind(const char *path, zsock_t **ret_sock)
{
    struct stat st;
    int r = make_parents(path);
    if (r < 0)
        return r;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        r = agent_ctl_probe(path);
        if (r == 1)
            return -EADDRINUSE;
        if (r < 0 && r != -ENOENT)
            return r;
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;
    } else if (errno != ENOENT) {
        return -errno;
    }
    zsock_t *s = zsock_new(ZMQ_ROUTER);
    if (!s)
        return -ENOMEM;
    zsock_set_linger(s, 0);
    zsock_set_maxmsgsize(s, AGENT_CTL_WIRE_MAX);
    /* the file must never be reachable by others, not even between bind and chmod */
    mode_t old = umask(0177);
    r = zsock_bind(s, "ipc://%s", path);
    int e = errno;
    umask(old);
    if (r < 0) {
        zsock_destroy(&s);
        return e ? -e : -EADDRNOTAVAIL;
    }
    if (chmod(path, 0600) < 0) {
        r = -errno;
        zsock_destroy(&s);
        unlink(path);
        return r;
    }
    *ret_sock = s;
    return 0;
}

void agent_ctl_close(zsock_t **sock, const char *path)
{
    if (!sock || !*sock)
        return;
    zsock_destroy(sock);
    if (path)
        unlink(path);
}
