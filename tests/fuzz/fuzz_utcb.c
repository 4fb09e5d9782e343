/* fuzz_utcb.c — fuzz the agent's validation of a target's UTCB request (rtcr_utcb_serve_next),
 * the boundary where an untrusted target process hands a kernel operation to the agent.
 *
 * Each input: bytes 0..639 are the whole UTCB 0 of a fresh one-UTCB area (missing bytes are
 * zero), written as a hostile target would; byte 640, if present, selects options (bit 0: a
 * mirror without futex_waitv; bit 1: hand the request back once with rtcr_utcb_release and take
 * it again; bit 2: answer with a message built from the rest of the input). The mirror is
 * created on that state (so it takes nothing already posted), then req_seq is bumped to post
 * one request and serve_next runs with a tiny timeout and no spinning.
 *
 * The verdict is compared with a reference reading of the rules in rtcr/utcb.h:
 *   valid:   serve_next returns 0 with a snapshot that has a valid op, dest < RTCR_CAP_SLOTS for
 *            ops that name one (else 0), a receive window within the space and at most
 *            RTCR_RCV_SLOTS_MAX slots (else 0/0), the timeout for ops that wait (else 0), and
 *            for ops that send a message words + 2 * items <= RTCR_MSG_WORDS, the used registers
 *            copied and every other register zero (all of msg zero for other ops);
 *   invalid: serve_next answers it itself (rep_seq = the request, result -ENOSYS/-EMSGSIZE/
 *            -ERANGE as the rules say), counts it as rejected and then times out.
 * rtcr_utcb_complete must then publish the answer with the message clamped to the registers.
 * Everything is created and destroyed per input.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <rtcr/utcb.h>

#define OPT_NO_WAITV  (1u << 0) /* mirror flag RTCR_UTCB_MIRROR_NO_WAITV */
#define OPT_RELEASE   (1u << 1) /* release the taken request and take it again */
#define OPT_REPLY_MSG (1u << 2) /* complete with a message from the input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool uses_dest(uint32_t op)
{
    return op == RTCR_UTCB_OP_CALL || op == RTCR_UTCB_OP_IRQ_RECEIVE ||
           op == RTCR_UTCB_OP_IRQ_TRIGGER || op == RTCR_UTCB_OP_IRQ_UNMASK;
}

static bool uses_window(uint32_t op)
{
    return op == RTCR_UTCB_OP_CALL || op == RTCR_UTCB_OP_REPLY_WAIT || op == RTCR_UTCB_OP_WAIT;
}

static bool uses_timeout(uint32_t op)
{
    return uses_window(op) || op == RTCR_UTCB_OP_IRQ_RECEIVE;
}

static bool sends_msg(uint32_t op)
{
    return op == RTCR_UTCB_OP_CALL || op == RTCR_UTCB_OP_REPLY_WAIT;
}

/* The reference verdict for a request as the target wrote it. */
static int expected_verdict(const rtcr_utcb_t *u)
{
    if (u->op == RTCR_UTCB_OP_NONE || u->op >= RTCR_UTCB_OP_MAX)
        return -ENOSYS;
    if (uses_dest(u->op) && u->dest >= RTCR_CAP_SLOTS)
        return -ERANGE;
    if (uses_window(u->op) && u->rcv_count &&
        (u->rcv_count > RTCR_RCV_SLOTS_MAX || u->rcv_base >= RTCR_CAP_SLOTS ||
         u->rcv_count > RTCR_CAP_SLOTS - u->rcv_base))
        return -ERANGE;
    if (sends_msg(u->op) && (unsigned)u->msg.tag.words + 2u * u->msg.tag.items > RTCR_MSG_WORDS)
        return -EMSGSIZE;
    return 0;
}

/* The snapshot must be exactly what the rules make of the target's request. */
static void check_req(const rtcr_utcb_req_t *req, const rtcr_utcb_t *in, uint32_t seq)
{
    unsigned used = 0;

    if (req->seq != seq || (uint32_t)req->op != in->op || req->op <= RTCR_UTCB_OP_NONE ||
        req->op >= RTCR_UTCB_OP_MAX)
        abort();
    if (uses_dest(in->op) ? (req->dest != in->dest || req->dest >= RTCR_CAP_SLOTS) : req->dest != 0)
        abort();
    if (uses_window(in->op) && in->rcv_count) {
        if (req->rcv_base != in->rcv_base || req->rcv_count != in->rcv_count)
            abort();
    } else if (req->rcv_base != 0 || req->rcv_count != 0) {
        abort();
    }
    if (req->rcv_count > RTCR_RCV_SLOTS_MAX || req->rcv_base >= RTCR_CAP_SLOTS ||
        req->rcv_base + req->rcv_count > RTCR_CAP_SLOTS)
        abort();
    if (req->timeout_usec != (uses_timeout(in->op) ? in->timeout_usec : 0))
        abort();
    if (sends_msg(in->op)) {
        used = (unsigned)req->msg.tag.words + 2u * req->msg.tag.items;
        if (used > RTCR_MSG_WORDS || memcmp(&req->msg.tag, &in->msg.tag, sizeof(in->msg.tag)) ||
            memcmp(req->msg.mr, in->msg.mr, used * sizeof(uint64_t)))
            abort();
    } else {
        static const rtcr_msgtag_t zero_tag;
        if (memcmp(&req->msg.tag, &zero_tag, sizeof(zero_tag)) != 0)
            abort();
    }
    for (unsigned i = used; i < RTCR_MSG_WORDS; i++)
        if (req->msg.mr[i] != 0)
            abort();
}

/* Answer the request; the UTCB must then carry exactly the answer. */
static void complete_and_check(rtcr_utcb_mirror_t *m, rtcr_utcb_t *u, const rtcr_utcb_req_t *req,
                               const uint8_t *rest, size_t rest_len, bool with_msg)
{
    rtcr_msg_t reply;
    rtcr_utcb_t before;
    unsigned n;
    const int32_t result = -(int32_t)(req->seq % 200);
    const uint64_t label = 0x1234567800000000ull | req->seq;

    memset(&reply, 0, sizeof(reply));
    if (with_msg) {
        /* an arbitrary message, also one claiming more registers than exist: must be clamped */
        if (rest_len)
            memcpy(&reply, rest, rest_len < sizeof(reply) ? rest_len : sizeof(reply));
    } else {
        reply.tag = req->msg.tag;
        memcpy(reply.mr, req->msg.mr, sizeof(reply.mr));
    }
    memcpy(&before, u, sizeof(before));
    if (rtcr_utcb_complete(m, result, &reply, label) != 0)
        abort();
    if (u->rep_seq != req->seq || u->result != result || u->label != label ||
        memcmp(&u->msg.tag, &reply.tag, sizeof(reply.tag)) != 0)
        abort();
    n = (unsigned)reply.tag.words + 2u * reply.tag.items;
    if (n > RTCR_MSG_WORDS)
        n = RTCR_MSG_WORDS;
    if (memcmp(u->msg.mr, reply.mr, n * sizeof(uint64_t)) != 0 ||
        memcmp(u->msg.mr + n, before.msg.mr + n, (RTCR_MSG_WORDS - n) * sizeof(uint64_t)) != 0)
        abort(); /* registers past the used ones are left alone */
    if (rtcr_utcb_mirror_state(m) != RTCR_UTCB_MIRROR_READY)
        abort();
    if (rtcr_utcb_complete(m, 0, NULL, 0) != -EALREADY || rtcr_utcb_release(m) != -EALREADY)
        abort(); /* nothing pending any more */
}

static void run(const uint8_t *data, size_t size, rtcr_utcb_area_t *area, uint32_t *abort_word)
{
    rtcr_utcb_t *u = rtcr_utcb_area_utcb(area, 0);
    rtcr_utcb_t in;
    rtcr_utcb_mirror_t *m = NULL;
    rtcr_utcb_mirror_stats_t st;
    rtcr_utcb_req_t req, again;
    unsigned opts = size > sizeof(in) ? data[sizeof(in)] : 0;
    const uint8_t *rest = size > sizeof(in) + 1 ? data + sizeof(in) + 1 : NULL;
    size_t rest_len = rest ? size - sizeof(in) - 1 : 0;
    uint32_t seq;
    int expect, r;

    if (!u || rtcr_utcb_area_utcb(area, 1) != NULL)
        abort();
    memset(u, 0, sizeof(*u));
    memcpy(u, data, size < sizeof(*u) ? size : sizeof(*u));
    if (rtcr_utcb_mirror_new(u, abort_word, (opts & OPT_NO_WAITV) ? RTCR_UTCB_MIRROR_NO_WAITV : 0,
                             &m) < 0)
        return;
    rtcr_utcb_mirror_set_spin(m, 0);
    if (rtcr_utcb_mirror_state(m) != RTCR_UTCB_MIRROR_IDLE)
        abort();
    /* nothing posted yet: the mirror must not take the state it started on */
    if (rtcr_utcb_serve_next(m, 1, &req) != -ETIMEDOUT)
        abort();

    seq = u->req_seq + 1;
    __atomic_store_n(&u->req_seq, seq, __ATOMIC_SEQ_CST);
    memcpy(&in, u, sizeof(in));
    expect = expected_verdict(&in);

    r = rtcr_utcb_serve_next(m, 1, &req);
    rtcr_utcb_mirror_stats(m, &st);
    if (expect < 0) {
        /* answered by the mirror itself, then nothing else to take */
        if (r != -ETIMEDOUT || u->rep_seq != seq || u->result != expect || st.rejected != 1 ||
            st.served != 0 || rtcr_utcb_mirror_state(m) != RTCR_UTCB_MIRROR_IDLE)
            abort();
        rtcr_utcb_mirror_destroy(&m);
        return;
    }
    if (r != 0 || st.served != 1 || st.rejected != 0)
        abort();
    check_req(&req, &in, seq);
    if (rtcr_utcb_mirror_state(m) !=
        (rtcr_utcb_op_is_wait(req.op) ? RTCR_UTCB_MIRROR_WAIT : RTCR_UTCB_MIRROR_CALL))
        abort();
    if (rtcr_utcb_serve_next(m, 1, &again) != -EBUSY)
        abort(); /* one pending request at a time */

    if (opts & OPT_RELEASE) {
        /* handed back, the same sequence is taken again and validated again */
        if (rtcr_utcb_release(m) != 0 || rtcr_utcb_mirror_state(m) != RTCR_UTCB_MIRROR_IDLE)
            abort();
        if (rtcr_utcb_serve_next(m, 1, &again) != 0)
            abort();
        check_req(&again, &in, seq);
    }
    complete_and_check(m, u, &req, rest, rest_len, opts & OPT_REPLY_MSG);
    /* answered: nothing more to take */
    if (rtcr_utcb_serve_next(m, 1, &again) != -ETIMEDOUT)
        abort();
    rtcr_utcb_mirror_destroy(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rtcr_utcb_area_t *area = NULL;
    uint32_t abort_word = 0;

    if (rtcr_utcb_area_new("fuzz-utcb", 1, &area) < 0)
        return 0;
    if (rtcr_utcb_area_check(rtcr_utcb_area_base(area), rtcr_utcb_area_size(area)) != 1)
        abort();
    run(data, size, area, &abort_word);
    rtcr_utcb_area_destroy(&area);
    if (area)
        abort();
    return 0;
}
