/* agent_ctl.h — the local control protocol between ecuctl and ecu-agent.
 *
 * Transport: the agent binds a ZeroMQ ROUTER at ipc://PATH (PATH from ecu/control); the file is
 * mode 0600, so only root (the socket's owner) can talk to it. ecuctl connects a REQ socket.
 *
 * Request:  [command, arg1, ...]              at most AGENT_CTL_FRAMES_MAX frames, each at most
 *                                             AGENT_CTL_FRAME_MAX bytes of printable text
 * Reply:    [status, errno, json, text]       status "ok" or "error"; errno decimal text ("0"
 *                                             when ok, else a positive errno value); json the
 *                                             machine-readable body; text the human-readable one
 * On ROUTER the request is preceded by its envelope (peer identity and an empty delimiter, as a
 * REQ socket sends); the reply goes back with the same envelope.
 *
 * Commands are listed in agent_cmd_table(); their JSON bodies are described in
 * docs/operator-guide.md. Every request is bounded and validated before anything runs: too many
 * frames (-E2BIG), a frame too large (-EMSGSIZE), control characters or an empty command
 * (-EBADMSG), an unknown command (-EOPNOTSUPP) or wrong arguments (-EINVAL) get an error reply.
 * ZMQ_MAXMSGSIZE on the socket disconnects a peer sending a frame above AGENT_CTL_WIRE_MAX, and
 * frames beyond the limit are drained without being kept, so a hostile client cannot make the
 * agent buffer much.
 *
 * This header is also included by ecuctl, which does not link the agent's objects: it may use
 * only the macros and static inline functions here.
 */
#ifndef AGENT_CTL_H
#define AGENT_CTL_H

#include <czmq.h>
#include <stdbool.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define AGENT_CTL_FRAMES_MAX   4    /* command + up to 3 arguments */
#define AGENT_CTL_FRAME_MAX    256  /* bytes per request frame */
#define AGENT_CTL_WIRE_MAX     4096 /* ZMQ_MAXMSGSIZE: larger frames disconnect the peer */
#define AGENT_CTL_ENVELOPE_MAX 4    /* routing frames accepted before the delimiter */
#define AGENT_CTL_REPLY_FRAMES 4    /* status, errno, json, text */
#define AGENT_CTL_TIMEOUT_MS   5000 /* ecuctl's default wait for a reply */

enum agent_cmd {
    AGENT_CMD_TARGETS = 0, /* list targets */
    AGENT_CMD_START,       /* start NAME */
    AGENT_CMD_STOP,        /* stop NAME */
    AGENT_CMD_KILL,        /* kill NAME: SIGKILL, a simulated crash */
    AGENT_CMD_CAPS,        /* caps NAME: cap-space dump */
    AGENT_CMD_LOG,         /* log NAME: recent LOG lines */
    AGENT_CMD_IRQ,         /* irq LINE: fire an interrupt line */
    AGENT_CMD_STATUS,      /* ECU status */
    AGENT_CMD_CHECKPOINT,  /* checkpoint NAME: take one epoch now */
    AGENT_CMD_RESTORE,     /* restore NAME [EPOCH]: restore a stopped/failed target */
    AGENT_CMD_IMAGES,      /* images NAME: the epochs of the target's image */
    AGENT_CMD_CHECK,       /* what this ECU supports (dirty tracking, kernel, state dir) */
    AGENT_CMD_MAX
};

/* One command of the protocol. */
typedef struct agent_cmd_info {
    const char *name;  /* command word (first frame) */
    unsigned nargs;    /* required arguments */
    unsigned nopt;     /* optional arguments after the required ones */
    const char *usage; /* argument synopsis for help texts, "" if none */
    const char *help;  /* one-line description */
    bool names_target; /* the first argument is a target name (validated, looked up) */
} agent_cmd_info_t;

/* The command table, indexed by enum agent_cmd (AGENT_CMD_MAX entries). */
static inline const agent_cmd_info_t *agent_cmd_table(void)
{
    static const agent_cmd_info_t table[AGENT_CMD_MAX] = {
        [AGENT_CMD_TARGETS] = {"targets", 0, 0, "",
                               "list targets: state, pid, restarts, RAM, last epoch, failure, "
                               "compaction, standby"},
        [AGENT_CMD_START] = {"start", 1, 0, "NAME", "start a stopped or failed target", true},
        [AGENT_CMD_STOP] = {"stop", 1, 0, "NAME", "stop a running target on purpose", true},
        [AGENT_CMD_KILL] = {"kill", 1, 0, "NAME", "SIGKILL a target (simulated crash: it fails)",
                            true},
        [AGENT_CMD_CAPS] = {"caps", 1, 0, "NAME", "dump the capability space of a running target",
                            true},
        [AGENT_CMD_LOG] = {"log", 1, 0, "NAME", "recent LOG lines of a target", true},
        [AGENT_CMD_IRQ] = {"irq", 1, 0, "LINE", "fire simulated interrupt line LINE (0..255)"},
        [AGENT_CMD_STATUS] = {"status", 0, 0, "", "ECU name, uptime, target counts, RAM"},
        [AGENT_CMD_CHECKPOINT] = {"checkpoint", 1, 0, "NAME",
                                  "checkpoint a running target now (one epoch)", true},
        [AGENT_CMD_RESTORE] = {"restore", 1, 1, "NAME [EPOCH]",
                               "restore a stopped or failed target (newest epoch by default)",
                               true},
        [AGENT_CMD_IMAGES] = {"images", 1, 0, "NAME",
                              "the epochs of a target's image, each verified", true},
        [AGENT_CMD_CHECK] = {"check", 0, 0, "",
                             "what this ECU supports: dirty tracking, kernel, state dir"},
    };
    return table;
}

/* Look a command word up; -1 if unknown. */
static inline int agent_cmd_lookup(const char *word)
{
    for (int i = 0; i < AGENT_CMD_MAX; i++)
        if (strcmp(agent_cmd_table()[i].name, word) == 0)
            return i;
    return -1;
}

/* Probe a Unix socket path: 1 if a process accepts connections on it, 0 if the file exists but
 * nobody listens (stale, ECONNREFUSED), -ENOENT if there is no file, other -errno otherwise. */
static inline int agent_ctl_probe(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 1 : -errno;
    close(fd);
    if (r == -ECONNREFUSED)
        return 0;
    return r;
}

/* A validated request. */
typedef struct agent_ctl_req {
    enum agent_cmd cmd;                                           /* the command */
    unsigned argc;                                                /* arguments used */
    char args[AGENT_CTL_FRAMES_MAX - 1][AGENT_CTL_FRAME_MAX + 1]; /* NUL-terminated */
    unsigned irq_line;                                            /* AGENT_CMD_IRQ: the line */
    uint64_t epoch; /* AGENT_CMD_RESTORE: the epoch (0: the newest) */
} agent_ctl_req_t;

/* Validate a request body (frames after the envelope; borrowed). On success fills *ret_req.
 * On failure returns -E2BIG, -EMSGSIZE, -EBADMSG, -EOPNOTSUPP or -EINVAL and writes a one-line
 * explanation into why[why_len] (if why is not NULL). */
int agent_ctl_req_parse(zmsg_t *body, agent_ctl_req_t *ret_req, char *why, size_t why_len);

/* Build a reply: err 0 gives status "ok", else "error" with errno -err. json and text are
 * copied (NULL is sent as an empty frame). Returns a new message (caller owns) or NULL. */
zmsg_t *agent_ctl_reply_new(int err, const char *json, const char *text);
/* An error reply whose JSON body is {"error": text, "errno": N} and text body is `text`. */
zmsg_t *agent_ctl_error_reply(int err, const char *text);

/* Receive one request from the ROUTER: *ret_envelope gets the routing frames including the
 * empty delimiter, *ret_body at most AGENT_CTL_FRAMES_MAX + 1 body frames (further frames
 * are read and dropped). -EAGAIN if nothing was waiting, -EBADMSG if the envelope has no
 * delimiter within AGENT_CTL_ENVELOPE_MAX frames (the message is dropped: no way to answer),
 * -ENOMEM. Caller owns both messages. */
int agent_ctl_recv(zsock_t *router, zmsg_t **ret_envelope, zmsg_t **ret_body);
/* Send *reply to the peer named by *envelope; takes both (destroys them even on failure). */
int agent_ctl_send(zsock_t *router, zmsg_t **envelope, zmsg_t **reply);

/* Bind the control socket at `path`: create the parent directory if missing (0755), refuse
 * with -EADDRINUSE if a live agent answers on the path, -EEXIST if the path is something other
 * than a socket, remove a stale socket file, bind a ROUTER at ipc://path with the file created
 * mode 0600, and chmod it 0600. Caller owns *ret_sock; use agent_ctl_close() to undo. */
int agent_ctl_bind(const char *path, zsock_t **ret_sock);
/* Close the socket and remove the socket file. NULL-safe, idempotent. */
void agent_ctl_close(zsock_t **sock, const char *path);

#endif
