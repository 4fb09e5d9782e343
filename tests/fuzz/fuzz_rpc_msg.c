/* fuzz_rpc_msg.c — fuzz the message decoding helpers of rtcr/rpc.h (rtcr_msg_get,
 * rtcr_msg_get_str, rtcr_msg_get_cap), which every service handler of the agent runs on the
 * requests of its targets, and the encoders they pair with.
 *
 * Two uses of each input:
 *  1. decode: the first 8 bytes are the message tag (label, words, items, flags), the next 504
 *     the 63 registers (missing bytes zero), placed right before an inaccessible page so that
 *     any read past the registers faults (with or without ASan). Every word and item index is
 *     read, and strings are decoded from every start position with several buffer sizes. A tag
 *     may claim more words or items than there are registers: the helpers are documented as
 *     bounds-checked, so they must refuse whatever lies outside, not read it.
 *  2. round trip: the input as a little program of puts (word, string, capability) into a fresh
 *     message; what the encoders accept must decode to exactly what was put.
 *
 * Invariants (abort() on violation): a word is returned iff its index is below both the tag's
 * word count and RTCR_MSG_WORDS, and it is that register; a decoded string is NUL-terminated,
 * at most RTCR_RPC_STR_MAX bytes and shorter than the buffer, has the length its length word
 * says, matches the register bytes, and advances the position by 1 + ceil(len / 8) to a
 * position within the tag's words and the registers; a failed decode leaves the position; a
 * capability is returned iff the item exists within the registers, as its fpage's slot.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rtcr/rpc.h>

#define TAG_BYTES sizeof(rtcr_msgtag_t)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t buf_sizes[] = {
    1, 8, 9, RTCR_SESSION_ARGS_MAX + 1, RTCR_RPC_STR_MAX, RTCR_RPC_STR_MAX + 1, 1024};

static void check_words(const rtcr_msg_t *m)
{
    for (unsigned i = 0; i < 260; i++) {
        uint64_t w = ~0ull;
        int r = rtcr_msg_get(m, i, &w);
        bool ok = i < m->tag.words && i < RTCR_MSG_WORDS;
        if (ok ? (r != 0 || w != m->mr[i]) : (r != -EBADMSG || w != ~0ull))
            abort();
    }
}

/* Decode one string at pos with a buffer of bufsz; check what came out. */
static void check_str_at(const rtcr_msg_t *m, unsigned pos, size_t bufsz)
{
    char *buf = malloc(bufsz);
    unsigned p = pos;
    int r;

    if (!buf)
        return;
    r = rtcr_msg_get_str(m, &p, buf, bufsz);
    if (r < 0) {
        if (r != -EBADMSG || p != pos)
            abort();
        free(buf);
        return;
    }
    if (r != 0 || pos >= m->tag.words || pos >= RTCR_MSG_WORDS)
        abort();
    uint64_t len = m->mr[pos];
    unsigned nw = (unsigned)((len + 7) / 8);
    if (len > RTCR_RPC_STR_MAX || len + 1 > bufsz)
        abort();
    if (p != pos + 1 + nw || p > m->tag.words || p > RTCR_MSG_WORDS)
        abort(); /* the string's words must lie within the message's registers */
    if (buf[len] != '\0' || strlen(buf) != len || memcmp(buf, &m->mr[pos + 1], len) != 0)
        abort();
    free(buf);
}

static void check_strings(const rtcr_msg_t *m)
{
    unsigned pos = 0;

    for (unsigned start = 0; start <= RTCR_MSG_WORDS; start++)
        for (size_t k = 0; k < sizeof(buf_sizes) / sizeof(buf_sizes[0]); k++)
            check_str_at(m, start, buf_sizes[k]);
    /* a request's string arguments in sequence, as the services read them */
    for (int n = 0; n < RTCR_MSG_WORDS; n++) {
        char buf[RTCR_RPC_STR_MAX + 1];
        unsigned before = pos;
        if (rtcr_msg_get_str(m, &pos, buf, sizeof(buf)) < 0)
            break;
        if (pos <= before)
            abort();
    }
}

static void check_caps(const rtcr_msg_t *m)
{
    for (unsigned i = 0; i < 260; i++) {
        unsigned slot = ~0u;
        int r = rtcr_msg_get_cap(m, i, &slot);
        bool ok = i < m->tag.items && m->tag.words + 2u * (i + 1) <= RTCR_MSG_WORDS;
        if (ok ? (r != 0 || slot != rtcr_fpage_slot(m->mr[m->tag.words + 2 * i + 1]))
               : (r != -EBADMSG || slot != ~0u))
            abort();
    }
}

static void decode(const uint8_t *data, size_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t len = 2 * (size_t)(page > 0 ? page : 4096);
    uint8_t *map;
    rtcr_msg_t *m;

    /* the message ends where an inaccessible page starts: a read past the registers faults
     * also in the replay build without ASan */
    map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return;
    if (mprotect(map + len / 2, len / 2, PROT_NONE) < 0) {
        munmap(map, len);
        return;
    }
    m = (rtcr_msg_t *)(map + len / 2 - sizeof(*m));
    memset(m, 0, sizeof(*m));
    if (size > TAG_BYTES) {
        memcpy(&m->tag, data, TAG_BYTES);
        size_t n = size - TAG_BYTES;
        if (n > sizeof(m->mr))
            n = sizeof(m->mr);
        memcpy(m->mr, data + TAG_BYTES, n);
    } else {
        memcpy(&m->tag, data, size);
    }
    check_words(m);
    check_caps(m);
    check_strings(m);
    munmap(map, len);
}

/* What was put, to compare the decoding with. */
typedef struct put_log {
    uint8_t kind[RTCR_MSG_WORDS];                   /* 'w' word, 's' string */
    uint64_t word[RTCR_MSG_WORDS];                  /* 'w': the word */
    char str[RTCR_MSG_WORDS][RTCR_RPC_STR_MAX + 1]; /* 's': the string */
    unsigned n;                                     /* entries */
    unsigned slot[RTCR_MSG_WORDS];                  /* capabilities put, in order */
    unsigned ncaps;                                 /* capabilities */
} put_log_t;

static void roundtrip(const uint8_t *data, size_t size)
{
    put_log_t *log = calloc(1, sizeof(*log));
    rtcr_msg_t *m = malloc(sizeof(*m));
    size_t p = 0;
    unsigned pos;

    if (!log || !m)
        goto out;
    memset(m, 0xee, sizeof(*m));
    rtcr_msg_init(m, 0x100);
    log->kind[0] = 'w';
    log->word[0] = 0x100;
    log->n = 1;
    while (p < size) {
        uint8_t op = data[p++];
        if ((op & 3) == 0 || (op & 3) == 3) { /* word: 8 bytes */
            uint64_t w = 0;
            size_t k = size - p < 8 ? size - p : 8;
            memcpy(&w, data + p, k);
            p += k;
            int r = rtcr_msg_put(m, w);
            if (r == 0) {
                if (log->n >= RTCR_MSG_WORDS)
                    abort(); /* more words than registers */
                log->kind[log->n] = 'w';
                log->word[log->n++] = w;
            } else if (r != -EMSGSIZE) {
                abort();
            }
        } else if ((op & 3) == 1) { /* string: length byte (x2), then bytes without NUL */
            size_t len = p < size ? (size_t)data[p++] * 2 : 0;
            char s[RTCR_RPC_STR_MAX + 64];
            if (len > size - p)
                len = size - p;
            if (len > sizeof(s) - 1)
                len = sizeof(s) - 1;
            memcpy(s, data + p, len);
            s[len] = '\0';
            p += len;
            len = strlen(s); /* stops at an embedded NUL, as a C caller's string does */
            int r = rtcr_msg_put_str(m, s);
            if (r == 0) {
                if (len > RTCR_RPC_STR_MAX || log->n >= RTCR_MSG_WORDS)
                    abort();
                log->kind[log->n] = 's';
                memcpy(log->str[log->n++], s, len + 1);
            } else if (r != -EMSGSIZE) {
                abort();
            }
        } else { /* capability: 2 bytes slot, 1 byte rights/grant */
            unsigned slot = 0, rights = 0;
            if (p + 3 <= size) {
                slot = ((unsigned)data[p] | (unsigned)data[p + 1] << 8) % RTCR_CAP_SLOTS;
                rights = data[p + 2];
            }
            p += size - p < 3 ? size - p : 3;
            int r = rtcr_msg_put_cap(m, slot, rights & 0xf, rights & 0x10);
            if (r == 0) {
                if (log->ncaps >= RTCR_MSG_WORDS)
                    abort();
                log->slot[log->ncaps++] = slot;
            } else if (r != -EMSGSIZE) {
                abort();
            }
        }
        if ((unsigned)m->tag.words + 2u * m->tag.items > RTCR_MSG_WORDS)
            abort(); /* the encoders keep every message within the registers */
    }

    /* decode in the same order */
    pos = 0;
    for (unsigned i = 0; i < log->n; i++) {
        if (log->kind[i] == 'w') {
            uint64_t w;
            if (rtcr_msg_get(m, pos, &w) != 0 || w != log->word[i])
                abort();
            pos++;
        } else {
            char buf[RTCR_RPC_STR_MAX + 1];
            if (rtcr_msg_get_str(m, &pos, buf, sizeof(buf)) != 0 || strcmp(buf, log->str[i]))
                abort();
        }
    }
    if (pos != m->tag.words || log->ncaps != m->tag.items)
        abort(); /* every word is accounted for */
    for (unsigned i = 0; i < log->ncaps; i++) {
        unsigned slot;
        if (rtcr_msg_get_cap(m, i, &slot) != 0 || slot != log->slot[i])
            abort();
    }
    decode((const uint8_t *)m, sizeof(*m)); /* and the generic checks on a valid message */
out:
    free(m);
    free(log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size);
    roundtrip(data, size);
    return 0;
}
