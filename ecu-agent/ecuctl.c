/* ecuctl — the operator's command-line tool for one ecu-agent, over its local control socket
 * (protocol in agent_ctl.h and docs/operator-guide.md).
 *
 *   ecuctl [-c FILE | -s SOCKET] [--json] [-t MS] COMMAND [ARGS]
 *   ecuctl inspect [-v] FILE|DIR
 *
 * The socket path comes from -s, or from ecu/control of the config given with -c (only that
 * key is read; the default is /run/rtcr/NAME.sock with NAME from ecu/name or the file name),
 * or from $ECUCTL_SOCKET. The agent renders both reply bodies; ecuctl prints the JSON body with
 * --json and the text body otherwise.
 *
 * Exit status: 0 success; 1 the agent reported an error (message on stderr); 2 usage error;
 * 3 the agent cannot be reached (no socket, nobody listening, or no reply within the timeout).
 *
 * `inspect` runs locally, without an agent: it parses an epoch file (or a target's image
 * directory) with librtcr's image reader, every hash checked, and prints it. A corrupt file is
 * an error (exit 1) with the reader's message naming what is wrong and where.
 *
 * ecuctl links none of the agent's objects: from agent_ctl.h it uses only macros and inline
 * functions; from librtcr only the image reader (rtcr/image.h).
 */
#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rtcr/image.h>

#include "agent_config.h"
#include "agent_ctl.h"

#define EXIT_AGENT_ERROR 1 /* the agent answered with an error */
#define EXIT_USAGE       2 /* bad command line */
#define EXIT_UNREACHABLE 3 /* no agent at the socket */

static void usage(FILE *out)
{
    const agent_cmd_info_t *t = agent_cmd_table();
    fprintf(out, "usage: ecuctl [-c FILE | -s SOCKET] [--json] [-t MS] COMMAND [ARGS]\n"
                 "       ecuctl inspect [-v] FILE|DIR\n"
                 "Control a running ecu-agent through its local control socket.\n\n"
                 "commands:\n");
    for (int i = 0; i < AGENT_CMD_MAX; i++) {
        char syn[64];
        snprintf(syn, sizeof(syn), "%s%s%s", t[i].name, *t[i].usage ? " " : "", t[i].usage);
        if (i == AGENT_CMD_RESTORE) /* the epoch is given as an option */
            snprintf(syn, sizeof(syn), "%s NAME [--epoch N]", t[i].name);
        fprintf(out, "  %-24s %s\n", syn, t[i].help);
    }
    fprintf(out,
            "\nlocal commands (no agent needed):\n"
            "  %-24s %s\n",
            "inspect FILE|DIR", "print an epoch file or a target's image dir (hashes checked)");
    fprintf(out,
            "\noptions:\n"
            "  -c, --config FILE    take the socket path from ecu/control of this config\n"
            "  -s, --socket PATH    the agent's control socket\n"
            "  -j, --json           print the JSON body instead of the text table\n"
            "  -t, --timeout MS     wait at most MS milliseconds for the reply (default %d)\n"
            "  -e, --epoch N        restore: the epoch to restore (default: the newest)\n"
            "  -v, --verbose        inspect: also list the data frames\n"
            "  -h, --help           this text\n"
            "\nexit status: 0 ok, 1 the agent reported an error, 2 usage error,\n"
            "3 the agent cannot be reached\n",
            AGENT_CTL_TIMEOUT_MS);
}

/* The control path from a config: ecu/control, or /run/rtcr/NAME.sock. Caller frees. */
static char *control_from_config(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "ecuctl: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    if (n < 0) {
        free(text);
        fprintf(stderr, "ecuctl: %s: cannot read\n", path);
        return NULL;
    }
    zconfig_t *root = zconfig_str_load(text);
    free(text);
    if (!root) {
        fprintf(stderr, "ecuctl: %s: not a valid config (check it with ecu-agent --check)\n", path);
        return NULL;
    }
    char *r = NULL;
    const char *control = zconfig_get(root, "ecu/control", NULL);
    const char *name = zconfig_get(root, "ecu/name", NULL);
    if (control && *control) {
        r = strdup(control);
    } else if (name && *name) {
        if (asprintf(&r, "%s/%s.sock", AGENT_CONTROL_DIR, name) < 0)
            r = NULL;
    } else {
        const char *b = strrchr(path, '/');
        b = b ? b + 1 : path;
        const char *dot = strrchr(b, '.');
        int len = dot && dot != b ? (int)(dot - b) : (int)strlen(b);
        if (asprintf(&r, "%s/%.*s.sock", AGENT_CONTROL_DIR, len, b) < 0)
            r = NULL;
    }
    zconfig_destroy(&root);
    return r;
}

/* Read a whole file of at most `max` bytes. Returns 0 with a malloc'ed buffer or -errno. */
static int read_all(const char *path, uint64_t max, void **ret_buf, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int r = S_ISREG(st.st_mode) ? -errno : -EINVAL;
        close(fd);
        return r;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int r = n < 0 ? -errno : -EIO;
            free(buf);
            close(fd);
            return r;
        }
        got += (size_t)n;
    }
    close(fd);
    *ret_buf = buf;
    *ret_len = len;
    return 0;
}

/* `ecuctl inspect PATH`: an epoch file, or a target's image directory STATE_DIR/TARGET. */
static int inspect(const char *path, bool verbose)
{
    struct stat st;
    rtcr_image_err_t err = {{0}};
    if (stat(path, &st) < 0) {
        fprintf(stderr, "ecuctl: inspect: %s: %s\n", path, strerror(errno));
        return EXIT_AGENT_ERROR;
    }
    if (S_ISDIR(st.st_mode)) {
        char dir[4096];
        if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
            fprintf(stderr, "ecuctl: inspect: %s: path too long\n", path);
            return EXIT_AGENT_ERROR;
        }
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            dir[--n] = '\0';
        char *slash = strrchr(dir, '/');
        const char *target = slash ? slash + 1 : dir;
        const char *parent = slash ? (slash == dir ? "/" : dir) : ".";
        if (slash)
            *slash = '\0';
        rtcr_image_t *img = NULL;
        int r = rtcr_image_load_dir(parent, target, NULL, &err, &img);
        if (r < 0) {
            fprintf(stderr, "ecuctl: inspect: %s: %s\n", path, err.msg[0] ? err.msg : strerror(-r));
            return EXIT_AGENT_ERROR;
        }
        rtcr_image_print(img, stdout, verbose);
        rtcr_image_destroy(&img);
        if (r > 0) {
            fflush(stdout);
            fprintf(stderr, "ecuctl: inspect: %s: only a prefix is usable: %s\n", path, err.msg);
            return EXIT_AGENT_ERROR;
        }
        return 0;
    }
    void *buf = NULL;
    size_t len = 0;
    int r = read_all(path, RTCR_IMAGE_MAX_TOTAL, &buf, &len);
    if (r < 0) {
        fprintf(stderr, "ecuctl: inspect: %s: %s\n", path,
                r == -EFBIG ? "larger than any epoch can be" : strerror(-r));
        return EXIT_AGENT_ERROR;
    }
    rtcr_epoch_t *e = NULL;
    r = rtcr_epoch_parse_owned(&buf, len, NULL, &err, &e);
    free(buf);
    if (r < 0) {
        fprintf(stderr, "ecuctl: inspect: %s: not a valid epoch: %s\n", path,
                err.msg[0] ? err.msg : strerror(-r));
        return EXIT_AGENT_ERROR;
    }
    rtcr_epoch_print(e, stdout, verbose);
    rtcr_epoch_destroy(&e);
    return 0;
}

static int unreachable(const char *path, const char *why)
{
    fprintf(stderr, "ecuctl: cannot reach ecu-agent at %s: %s (is it running?)\n", path, why);
    return EXIT_UNREACHABLE;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},         {"timeout", required_argument, NULL, 't'},
        {"epoch", required_argument, NULL, 'e'},  {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *socket_path = NULL, *epoch = NULL;
    bool json = false, verbose = false;
    long timeout = AGENT_CTL_TIMEOUT_MS;
    int c;

    zsys_handler_set(NULL);
    while ((c = getopt_long(argc, argv, "c:s:jt:e:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 's':
            socket_path = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 't': {
            char *end;
            errno = 0;
            timeout = strtol(optarg, &end, 10);
            if (errno || *end || timeout <= 0 || timeout > 3600000) {
                fprintf(stderr, "ecuctl: bad timeout '%s' (milliseconds, 1..3600000)\n", optarg);
                return EXIT_USAGE;
            }
            break;
        }
        case 'e':
            epoch = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "ecuctl: missing command (see ecuctl --help)\n");
        return EXIT_USAGE;
    }
    const char *word = argv[optind];
    if (strcmp(word, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(word, "inspect") == 0) {
        if (argc - optind != 2 || epoch || json) {
            fprintf(stderr, "ecuctl: usage: ecuctl inspect [-v] FILE|DIR (text output only)\n");
            return EXIT_USAGE;
        }
        return inspect(argv[optind + 1], verbose);
    }
    int cmd = agent_cmd_lookup(word);
    if (cmd < 0) {
        fprintf(stderr, "ecuctl: unknown command '%s' (see ecuctl --help)\n", word);
        return EXIT_USAGE;
    }
    const agent_cmd_info_t *info = &agent_cmd_table()[cmd];
    int nargs = argc - optind - 1;
    if (epoch && (cmd != AGENT_CMD_RESTORE || nargs != 1)) {
        fprintf(stderr, "ecuctl: --epoch goes with restore NAME only\n");
        return EXIT_USAGE;
    }
    if (nargs < (int)info->nargs || nargs > (int)(info->nargs + info->nopt)) {
        fprintf(stderr, "ecuctl: usage: ecuctl %s%s%s\n", info->name, *info->usage ? " " : "",
                info->usage);
        return EXIT_USAGE;
    }
    if (epoch && strlen(epoch) > AGENT_CTL_FRAME_MAX) {
        fprintf(stderr, "ecuctl: argument too long\n");
        return EXIT_USAGE;
    }
    for (int i = optind + 1; i < argc; i++)
        if (strlen(argv[i]) > AGENT_CTL_FRAME_MAX) {
            fprintf(stderr, "ecuctl: argument too long\n");
            return EXIT_USAGE;
        }
    if (config && socket_path) {
        fprintf(stderr, "ecuctl: give either -c or -s, not both\n");
        return EXIT_USAGE;
    }

    char *path = NULL;
    if (socket_path)
        path = strdup(socket_path);
    else if (config)
        path = control_from_config(config);
    else if (getenv("ECUCTL_SOCKET"))
        path = strdup(getenv("ECUCTL_SOCKET"));
    else {
        fprintf(stderr, "ecuctl: which agent? give -c CONFIG or -s SOCKET\n");
        return EXIT_USAGE;
    }
    if (!path)
        return EXIT_USAGE;

    /* Fail fast when nobody is there: ZeroMQ would otherwise wait silently for a listener. */
    int rc = EXIT_UNREACHABLE;
    int p = agent_ctl_probe(path);
    if (p == 0) {
        rc = unreachable(path, "connection refused (stale socket file)");
        goto out;
    } else if (p < 0) {
        rc = unreachable(path, strerror(-p));
        goto out;
    }

    zsock_t *req = zsock_new(ZMQ_REQ);
    if (!req) {
        fprintf(stderr, "ecuctl: cannot create a socket\n");
        rc = EXIT_AGENT_ERROR;
        goto out;
    }
    zsock_set_linger(req, 0);
    if (zsock_connect(req, "ipc://%s", path) < 0) {
        rc = unreachable(path, strerror(errno));
        zsock_destroy(&req);
        goto out;
    }
    zmsg_t *msg = zmsg_new();
    for (int i = optind; i < argc; i++)
        zmsg_addstr(msg, argv[i]);
    if (epoch)
        zmsg_addstr(msg, epoch);
    if (zmsg_send(&msg, req) < 0) {
        zmsg_destroy(&msg);
        rc = unreachable(path, "sending the request failed");
        zsock_destroy(&req);
        goto out;
    }
    zpoller_t *poller = zpoller_new(req, NULL);
    void *ready = poller ? zpoller_wait(poller, (int)timeout) : NULL;
    zpoller_destroy(&poller);
    if (!ready) {
        char why[64];
        snprintf(why, sizeof(why), "no answer within %ld ms", timeout);
        rc = unreachable(path, why);
        zsock_destroy(&req);
        goto out;
    }
    zmsg_t *reply = zmsg_recv(req);
    zsock_destroy(&req);
    if (!reply || zmsg_size(reply) != AGENT_CTL_REPLY_FRAMES) {
        fprintf(stderr, "ecuctl: malformed reply from %s\n", path);
        zmsg_destroy(&reply);
        rc = EXIT_AGENT_ERROR;
        goto out;
    }
    char *status = zmsg_popstr(reply), *err = zmsg_popstr(reply);
    char *jbody = zmsg_popstr(reply), *tbody = zmsg_popstr(reply);
    zmsg_destroy(&reply);
    if (status && strcmp(status, "ok") == 0) {
        const char *out = json ? jbody : tbody;
        if (out && *out) {
            fputs(out, stdout);
            if (out[strlen(out) - 1] != '\n')
                fputc('\n', stdout);
        }
        rc = 0;
    } else {
        if (json && jbody && *jbody)
            printf("%s\n", jbody);
        fprintf(stderr, "ecuctl: %s: %s\n", word,
                tbody && *tbody ? tbody : (err ? strerror(atoi(err)) : "error"));
        rc = EXIT_AGENT_ERROR;
    }
    free(status);
    free(err);
    free(jbody);
    free(tbody);
out:
    free(path);
    return rc;
}
