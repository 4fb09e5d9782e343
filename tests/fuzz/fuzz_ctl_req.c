/* fuzz_ctl_req.c — fuzz the control-socket request decoder (agent_ctl_req_parse), the first
 * thing the agent does with what a local client sends.
 *
 * Framing of the input: a sequence of frames, each a length then that many bytes (the last
 * frame takes what is left if the input ends early). The length is one byte 0..127, or, with
 * the top bit set, 15 bits in two bytes (big endian) so frames above AGENT_CTL_FRAME_MAX are
 * reachable. At most 8 frames are built (the agent's receiver keeps at most
 * AGENT_CTL_FRAMES_MAX + 1 body frames).
 *
 * Contract checked (abort() on violation):
 *   failure: one of -E2BIG, -EMSGSIZE, -EBADMSG, -EOPNOTSUPP, -EINVAL; a non-empty, terminated
 *            explanation; *ret_req untouched; the same error without a buffer or with a tiny
 *            one (truncation is safe);
 *   success: a known command with the argument count of its table entry, every argument the
 *            exact bytes of its frame, printable, NUL-terminated; a valid target name where the
 *            command takes one; the IRQ line and restore epoch parsed and in range.
 */
#include <czmq.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ecu-agent/agent_config.h"
#include "../../ecu-agent/agent_ctl.h"

#define FUZZ_FRAMES_MAX 8 /* frames built from one input at most */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool takes_name(enum agent_cmd c)
{
    return c == AGENT_CMD_START || c == AGENT_CMD_STOP || c == AGENT_CMD_KILL ||
           c == AGENT_CMD_CAPS || c == AGENT_CMD_LOG || c == AGENT_CMD_CHECKPOINT ||
           c == AGENT_CMD_RESTORE || c == AGENT_CMD_IMAGES;
}

static bool is_error(int r)
{
    return r == -E2BIG || r == -EMSGSIZE || r == -EBADMSG || r == -EOPNOTSUPP || r == -EINVAL;
}

static void check_ok(zmsg_t *body, const agent_ctl_req_t *req)
{
    size_t nframes = zmsg_size(body);
    const agent_cmd_info_t *info;
    zframe_t *f = zmsg_first(body);
    char word[AGENT_CTL_FRAME_MAX + 1];

    if ((unsigned)req->cmd >= AGENT_CMD_MAX || nframes < 1 || nframes > AGENT_CTL_FRAMES_MAX)
        abort();
    info = &agent_cmd_table()[req->cmd];
    if (zframe_size(f) > AGENT_CTL_FRAME_MAX)
        abort();
    memcpy(word, zframe_data(f), zframe_size(f));
    word[zframe_size(f)] = '\0';
    if (strcmp(word, info->name) != 0 || agent_cmd_lookup(word) != (int)req->cmd)
        abort();
    if (req->argc != nframes - 1 || req->argc < info->nargs || req->argc > info->nargs + info->nopt)
        abort();
    for (unsigned a = 0; a < req->argc; a++) {
        f = zmsg_next(body);
        size_t n = zframe_size(f);
        if (n > AGENT_CTL_FRAME_MAX || strnlen(req->args[a], sizeof(req->args[a])) != n ||
            memcmp(req->args[a], zframe_data(f), n) != 0)
            abort();
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)req->args[a][k] < 0x20 || req->args[a][k] == 0x7f)
                abort();
    }
    if (takes_name(req->cmd) && !agent_name_is_valid(req->args[0]))
        abort();
    if (req->cmd == AGENT_CMD_IRQ) {
        char text[16];
        if (req->irq_line >= AGENT_IRQ_LINES)
            abort();
        /* the line must be what the argument says (leading zeros allowed) */
        snprintf(text, sizeof(text), "%u", req->irq_line);
        const char *arg = req->args[0];
        while (arg[0] == '0' && arg[1])
            arg++;
        if (strcmp(arg, text) != 0)
            abort();
    }
    if (req->cmd == AGENT_CMD_RESTORE) {
        if (req->argc == 1 && req->epoch != 0)
            abort();
        if (req->argc == 2) {
            char text[24];
            snprintf(text, sizeof(text), "%llu", (unsigned long long)req->epoch);
            if (req->epoch == 0 || strcmp(text, req->args[1]) != 0)
                abort();
        }
    }
}

/* Build the request body from the input; NULL if out of memory. */
static zmsg_t *frames_of(const uint8_t *data, size_t size)
{
    zmsg_t *m = zmsg_new();
    size_t p = 0;

    if (!m)
        return NULL;
    for (unsigned i = 0; p < size && i < FUZZ_FRAMES_MAX; i++) {
        size_t len = data[p++];
        if (len & 0x80) {
            len = (len & 0x7f) << 8;
            if (p < size)
                len |= data[p++];
        }
        if (len > size - p)
            len = size - p;
        if (zmsg_addmem(m, data + p, len) < 0) {
            zmsg_destroy(&m);
            return NULL;
        }
        p += len;
    }
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zmsg_t *body = frames_of(data, size);
    agent_ctl_req_t req, untouched;
    char why[128], tiny[6];
    int r, r2, r3;

    if (!body)
        return 0;
    memset(&req, 0xa5, sizeof(req));
    memcpy(&untouched, &req, sizeof(req));
    memset(why, 0, sizeof(why));
    r = agent_ctl_req_parse(body, &req, why, sizeof(why));
    if (r == 0) {
        check_ok(body, &req);
    } else {
        if (!is_error(r) || why[0] == '\0' || memchr(why, '\0', sizeof(why)) == NULL)
            abort();
        if (memcmp(&req, &untouched, sizeof(req)) != 0)
            abort(); /* outputs are written only on success */
    }

    /* the explanation buffer is optional and may be tiny; neither changes the verdict */
    r2 = agent_ctl_req_parse(body, &req, NULL, 0);
    memset(tiny, 'x', sizeof(tiny));
    r3 = agent_ctl_req_parse(body, &req, tiny, sizeof(tiny));
    if (r2 != r || r3 != r)
        abort();
    if (r < 0 && (tiny[0] == '\0' || tiny[sizeof(tiny) - 1] != '\0'))
        abort();
    zmsg_destroy(&body);
    return 0;
}
