/* test_agent_ctl — the control protocol: the request validator refuses too many frames,
 * oversized frames, control characters, unknown commands and bad arguments with the right
 * errno and a message; replies have the four documented frames; and over a real ROUTER socket
 * the agent side answers malformed requests with errors, refuses a second bind on a live
 * socket, replaces a stale socket file, refuses a non-socket file, and creates the socket file
 * with mode 0600 in a freshly created 0755 parent directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <czmq.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../ecu-agent/agent_ctl.h"

static zmsg_t *msg_of(int n, ...)
{
    zmsg_t *m = zmsg_new();
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        zmsg_addstr(m, va_arg(ap, const char *));
    va_end(ap);
    return m;
}

/* Parse and return the result; why must be non-empty on failure. */
static int parse(zmsg_t **m, agent_ctl_req_t *req, char *why)
{
    why[0] = '\0';
    int r = agent_ctl_req_parse(*m, req, why, 160);
    zmsg_destroy(m);
    if (r < 0)
        assert_true(strlen(why) > 0);
    return r;
}

static void test_valid_requests(void **state)
{
    (void)state;
    agent_ctl_req_t req;
    char why[160];
    zmsg_t *m = msg_of(1, "targets");
    assert_int_equal(parse(&m, &req, why), 0);
    assert_int_equal(req.cmd, AGENT_CMD_TARGETS);
    assert_int_equal(req.argc, 0);

    m = msg_of(2, "start", "brake");
    assert_int_equal(parse(&m, &req, why), 0);
    assert_int_equal(req.cmd, AGENT_CMD_START);
    assert_string_equal(req.args[0], "brake");

    m = msg_of(2, "irq", "255");
    assert_int_equal(parse(&m, &req, why), 0);
    assert_int_equal(req.cmd, AGENT_CMD_IRQ);
    assert_int_equal(req.irq_line, 255);

    m = msg_of(2, "restore", "brake"); /* the epoch is optional: 0 means the newest */
    assert_int_equal(parse(&m, &req, why), 0);
    assert_int_equal(req.cmd, AGENT_CMD_RESTORE);
    assert_int_equal(req.argc, 1);
    assert_int_equal(req.epoch, 0);

    m = msg_of(3, "restore", "brake", "17");
    assert_int_equal(parse(&m, &req, why), 0);
    assert_int_equal(req.argc, 2);
    assert_int_equal(req.epoch, 17);

    m = msg_of(2, "checkpoint", "brake");
    assert_int_equal(parse(&m, &req, why), 0);
    assert_int_equal(req.cmd, AGENT_CMD_CHECKPOINT);
    m = msg_of(2, "images", "brake");
    assert_int_equal(parse(&m, &req, why), 0);
    assert_int_equal(req.cmd, AGENT_CMD_IMAGES);
    m = msg_of(1, "check");
    assert_int_equal(parse(&m, &req, why), 0);
    assert_int_equal(req.cmd, AGENT_CMD_CHECK);

    for (int i = 0; i < AGENT_CMD_MAX; i++)
        assert_int_equal(agent_cmd_lookup(agent_cmd_table()[i].name), i);
}

static void test_invalid_requests(void **state)
{
    (void)state;
    agent_ctl_req_t req = {.cmd = AGENT_CMD_STATUS};
    char why[160];
    zmsg_t *m;

    m = zmsg_new();
    assert_int_equal(parse(&m, &req, why), -EBADMSG);

    m = msg_of(5, "start", "a", "b", "c", "d"); /* more than AGENT_CTL_FRAMES_MAX */
    assert_int_equal(parse(&m, &req, why), -E2BIG);
    assert_non_null(strstr(why, "too many frames"));

    char big[AGENT_CTL_FRAME_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    m = msg_of(2, "start", big);
    assert_int_equal(parse(&m, &req, why), -EMSGSIZE);
    assert_non_null(strstr(why, "too large"));

    big[AGENT_CTL_FRAME_MAX] = '\0'; /* exactly the limit: size is fine, name is not */
    m = msg_of(2, "start", big);
    assert_int_equal(parse(&m, &req, why), -EINVAL);

    m = msg_of(1, "reboot");
    assert_int_equal(parse(&m, &req, why), -EOPNOTSUPP);
    assert_string_equal(why, "unknown command 'reboot'");

    m = msg_of(1, "");
    assert_int_equal(parse(&m, &req, why), -EBADMSG);

    m = msg_of(2, "start", "br\nake");
    assert_int_equal(parse(&m, &req, why), -EBADMSG);
    assert_non_null(strstr(why, "control character"));

    m = zmsg_new(); /* a NUL byte inside a frame */
    zmsg_addstr(m, "log");
    zmsg_addmem(m, "a\0b", 3);
    assert_int_equal(parse(&m, &req, why), -EBADMSG);

    m = msg_of(1, "start"); /* missing argument */
    assert_int_equal(parse(&m, &req, why), -EINVAL);
    assert_string_equal(why, "usage: start NAME");

    m = msg_of(2, "targets", "x"); /* extra argument */
    assert_int_equal(parse(&m, &req, why), -EINVAL);

    m = msg_of(2, "kill", "../etc");
    assert_int_equal(parse(&m, &req, why), -EINVAL);

    m = msg_of(2, "irq", "256");
    assert_int_equal(parse(&m, &req, why), -EINVAL);
    m = msg_of(2, "irq", "-1");
    assert_int_equal(parse(&m, &req, why), -EINVAL);

    /* checkpoint commands: names validated, the epoch a positive decimal number */
    m = msg_of(1, "restore");
    assert_int_equal(parse(&m, &req, why), -EINVAL);
    assert_string_equal(why, "usage: restore NAME [EPOCH]");
    m = msg_of(4, "restore", "brake", "1", "2");
    assert_int_equal(parse(&m, &req, why), -EINVAL);
    const char *bad_epochs[] = {"0", "-1", "01", "1x", "", "12345678901234567890", " 1"};
    for (size_t i = 0; i < sizeof(bad_epochs) / sizeof(bad_epochs[0]); i++) {
        m = msg_of(3, "restore", "brake", bad_epochs[i]);
        assert_int_equal(parse(&m, &req, why), -EINVAL);
        if (bad_epochs[i][0] && bad_epochs[i][0] != ' ')
            assert_non_null(strstr(why, "is not an epoch number"));
    }
    m = msg_of(2, "checkpoint", "../x");
    assert_int_equal(parse(&m, &req, why), -EINVAL);
    m = msg_of(2, "images", "");
    assert_int_equal(parse(&m, &req, why), -EINVAL);
    m = msg_of(2, "check", "x");
    assert_int_equal(parse(&m, &req, why), -EINVAL);
    m = msg_of(1, "checkpoint");
    assert_int_equal(parse(&m, &req, why), -EINVAL);

    assert_int_equal(req.cmd, AGENT_CMD_STATUS); /* never written on failure */
}

static void test_replies(void **state)
{
    (void)state;
    zmsg_t *m = agent_ctl_reply_new(0, "[]", "no targets\n");
    assert_int_equal(zmsg_size(m), AGENT_CTL_REPLY_FRAMES);
    char *s;
    assert_string_equal(s = zmsg_popstr(m), "ok"), free(s);
    assert_string_equal(s = zmsg_popstr(m), "0"), free(s);
    assert_string_equal(s = zmsg_popstr(m), "[]"), free(s);
    assert_string_equal(s = zmsg_popstr(m), "no targets\n"), free(s);
    zmsg_destroy(&m);

    m = agent_ctl_error_reply(-ENOENT, "no target \"x\"");
    assert_int_equal(zmsg_size(m), AGENT_CTL_REPLY_FRAMES);
    assert_string_equal(s = zmsg_popstr(m), "error"), free(s);
    assert_string_equal(s = zmsg_popstr(m), "2"), free(s);
    assert_string_equal(s = zmsg_popstr(m), "{\"error\":\"no target \\\"x\\\"\",\"errno\":2}"),
        free(s);
    assert_string_equal(s = zmsg_popstr(m), "no target \"x\""), free(s);
    zmsg_destroy(&m);
}

/* Temp directory with a not-yet-existing subdirectory for the socket. */
typedef struct sockdir {
    char dir[64];   /* mkdtemp'd */
    char sub[96];   /* DIR/run (created by agent_ctl_bind) */
    char path[128]; /* DIR/run/ecu.sock */
} sockdir_t;

static int sock_setup(void **state)
{
    sockdir_t *d = calloc(1, sizeof(*d));
    strcpy(d->dir, "/tmp/test_agent_ctl.XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->sub, sizeof(d->sub), "%s/run", d->dir);
    snprintf(d->path, sizeof(d->path), "%s/ecu.sock", d->sub);
    *state = d;
    return 0;
}

static int sock_teardown(void **state)
{
    sockdir_t *d = *state;
    unlink(d->path);
    rmdir(d->sub);
    rmdir(d->dir);
    free(d);
    return 0;
}

/* Serve one request on the router: validate and answer with an error or "ok". */
static void serve_one(zsock_t *router)
{
    zpoller_t *p = zpoller_new(router, NULL);
    assert_non_null(zpoller_wait(p, 5000));
    zpoller_destroy(&p);
    zmsg_t *env = NULL, *body = NULL, *reply;
    assert_int_equal(agent_ctl_recv(router, &env, &body), 0);
    assert_true(zmsg_size(body) <= AGENT_CTL_FRAMES_MAX + 1);
    agent_ctl_req_t req;
    char why[160];
    int r = agent_ctl_req_parse(body, &req, why, sizeof(why));
    zmsg_destroy(&body);
    reply = r < 0 ? agent_ctl_error_reply(r, why) : agent_ctl_reply_new(0, "{}", "fine");
    assert_int_equal(agent_ctl_send(router, &env, &reply), 0);
    assert_null(env);
    assert_null(reply);
}

static char *ask(zsock_t *req, zsock_t *router, zmsg_t **m, char **ret_errno)
{
    assert_int_equal(zmsg_send(m, req), 0);
    serve_one(router);
    zmsg_t *rep = zmsg_recv(req);
    assert_non_null(rep);
    assert_int_equal(zmsg_size(rep), AGENT_CTL_REPLY_FRAMES);
    char *status = zmsg_popstr(rep);
    *ret_errno = zmsg_popstr(rep);
    zmsg_destroy(&rep);
    return status;
}

static void test_socket(void **state)
{
    sockdir_t *d = *state;
    zsock_t *router = NULL, *second = NULL;
    struct stat st;

    assert_int_equal(agent_ctl_bind(d->path, &router), 0);
    assert_int_equal(stat(d->sub, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(lstat(d->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(agent_ctl_probe(d->path), 1);

    /* a second agent on the same path is refused and leaves the first one's file alone */
    assert_int_equal(agent_ctl_bind(d->path, &second), -EADDRINUSE);
    assert_null(second);
    assert_int_equal(lstat(d->path, &st), 0);

    zsock_t *req = zsock_new(ZMQ_REQ);
    zsock_set_linger(req, 0);
    zsock_set_rcvtimeo(req, 5000);
    assert_int_equal(zsock_connect(req, "ipc://%s", d->path), 0);
    char *status, *err;

    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, "status");
    status = ask(req, router, &m, &err);
    assert_string_equal(status, "ok");
    assert_string_equal(err, "0");
    free(status), free(err);

    m = zmsg_new(); /* 40 frames: kept at most FRAMES_MAX + 1, answered E2BIG */
    for (int i = 0; i < 40; i++)
        zmsg_addstr(m, "x");
    status = ask(req, router, &m, &err);
    assert_string_equal(status, "error");
    assert_int_equal(atoi(err), E2BIG);
    free(status), free(err);

    m = zmsg_new();
    zmsg_addstr(m, "frobnicate");
    status = ask(req, router, &m, &err);
    assert_string_equal(status, "error");
    assert_int_equal(atoi(err), EOPNOTSUPP);
    free(status), free(err);

    char big[AGENT_CTL_WIRE_MAX / 2];
    memset(big, 'b', sizeof(big));
    m = zmsg_new();
    zmsg_addstr(m, "log");
    zmsg_addmem(m, big, sizeof(big));
    status = ask(req, router, &m, &err);
    assert_string_equal(status, "error");
    assert_int_equal(atoi(err), EMSGSIZE);
    free(status), free(err);

    /* nothing waiting: -EAGAIN, not a block */
    zmsg_t *env = NULL, *body = NULL;
    assert_int_equal(agent_ctl_recv(router, &env, &body), -EAGAIN);
    assert_null(env);

    zsock_destroy(&req);
    agent_ctl_close(&router, d->path);
    assert_null(router);
    assert_int_equal(lstat(d->path, &st), -1);
    agent_ctl_close(&router, d->path); /* idempotent */
}

static void test_stale_and_foreign_files(void **state)
{
    sockdir_t *d = *state;
    zsock_t *router = NULL;
    assert_int_equal(mkdir(d->sub, 0700), 0);

    /* a stale socket: bound, then closed without unlink */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, d->path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(agent_ctl_probe(d->path), 0);
    assert_int_equal(agent_ctl_bind(d->path, &router), 0);
    assert_int_equal(agent_ctl_probe(d->path), 1);
    agent_ctl_close(&router, d->path);
    assert_int_equal(agent_ctl_probe(d->path), -ENOENT);

    /* a regular file is not ours to delete */
    FILE *f = fopen(d->path, "we");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(agent_ctl_bind(d->path, &router), -EEXIST);
    assert_null(router);
    struct stat st;
    assert_int_equal(lstat(d->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
}

int main(void)
{
    zsys_handler_set(NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_requests),
        cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_replies),
        cmocka_unit_test_setup_teardown(test_socket, sock_setup, sock_teardown),
        cmocka_unit_test_setup_teardown(test_stale_and_foreign_files, sock_setup, sock_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
