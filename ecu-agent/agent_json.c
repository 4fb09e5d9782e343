/* agent_json.c — see agent_json.h. The buffer grows geometrically; a stack of per-level flags
 * remembers whether the current container already holds an element (so a comma is due) and
 * whether it is an object (so a key must precede each value). */
#include "agent_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct agent_json {
    char *buf;                            /* text, NUL-terminated */
    size_t len;                           /* bytes used, without NUL */
    size_t cap;                           /* bytes allocated */
    int error;                            /* sticky error: 0, -ENOMEM or -EINVAL */
    unsigned depth;                       /* open containers */
    bool is_object[AGENT_JSON_DEPTH_MAX]; /* per level: object (true) or array */
    bool has_elem[AGENT_JSON_DEPTH_MAX];  /* per level: an element was written */
    bool after_key;                       /* a key was written, its value is due */
    bool done;                            /* a top-level value is complete */
};

agent_json_t *agent_json_new(void)
{
    agent_json_t *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->cap = 256;
    j->buf = malloc(j->cap);
    if (!j->buf) {
        free(j);
        return NULL;
    }
    j->buf[0] = '\0';
    return j;
}

void agent_json_destroy(agent_json_t **p)
{
    if (!p || !*p)
        return;
    free((*p)->buf);
    free(*p);
    *p = NULL;
}

static void put(agent_json_t *j, const char *s, size_t n)
{
    if (j->error)
        return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap;
        while (j->len + n + 1 > cap)
            cap *= 2;
        char *b = realloc(j->buf, cap);
        if (!b) {
            j->error = -ENOMEM;
            return;
        }
        j->buf = b;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void puts_(agent_json_t *j, const char *s)
{
    put(j, s, strlen(s));
}

/* Prepare for a value: check that one may be written here and emit the comma. */
static bool value_begin(agent_json_t *j)
{
    if (j->error)
        return false;
    if (j->depth == 0) {
        if (j->done) {
            j->error = -EINVAL;
            return false;
        }
        return true;
    }
    unsigned d = j->depth - 1;
    if (j->is_object[d]) {
        if (!j->after_key) {
            j->error = -EINVAL;
            return false;
        }
        j->after_key = false;
        return true;
    }
    if (j->has_elem[d])
        put(j, ",", 1);
    j->has_elem[d] = true;
    return true;
}

static void value_end(agent_json_t *j)
{
    if (j->depth == 0)
        j->done = true;
}

static void container_begin(agent_json_t *j, bool object)
{
    if (!value_begin(j))
        return;
    if (j->depth >= AGENT_JSON_DEPTH_MAX) {
        j->error = -EINVAL;
        return;
    }
    j->is_object[j->depth] = object;
    j->has_elem[j->depth] = false;
    j->depth++;
    put(j, object ? "{" : "[", 1);
}

static void container_end(agent_json_t *j, bool object)
{
    if (j->error)
        return;
    if (j->depth == 0 || j->is_object[j->depth - 1] != object || j->after_key) {
        j->error = -EINVAL;
        return;
    }
    j->depth--;
    put(j, object ? "}" : "]", 1);
    value_end(j);
}

void agent_json_object_begin(agent_json_t *j)
{
    container_begin(j, true);
}

void agent_json_object_end(agent_json_t *j)
{
    container_end(j, true);
}

void agent_json_array_begin(agent_json_t *j)
{
    container_begin(j, false);
}

void agent_json_array_end(agent_json_t *j)
{
    container_end(j, false);
}

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 if the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *ret_cp)
{
    uint32_t cp;
    size_t len;

    if (s[0] < 0x80) {
        *ret_cp = s[0];
        return 1;
    } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2, cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3, cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4, cp = s[0] & 0x07;
    } else {
        return 0; /* continuation byte, overlong lead (c0, c1) or beyond U+10FFFF (f5..ff) */
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *ret_cp = cp;
    return len;
}

static void put_string(agent_json_t *j, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    put(j, "\"", 1);
    while (i < n && !j->error) {
        size_t run = i;
        /* copy plain printable ASCII in one go */
        while (run < n && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' && s[run] != '\\')
            run++;
        if (run > i) {
            put(j, str + i, run - i);
            i = run;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_seq(s + i, n - i, &cp);
        char esc[16];
        if (len == 0) {
            puts_(j, "\\ufffd");
            i++;
            continue;
        }
        switch (cp) {
        case '"':
            puts_(j, "\\\"");
            break;
        case '\\':
            puts_(j, "\\\\");
            break;
        case '\n':
            puts_(j, "\\n");
            break;
        case '\r':
            puts_(j, "\\r");
            break;
        case '\t':
            puts_(j, "\\t");
            break;
        case '\b':
            puts_(j, "\\b");
            break;
        case '\f':
            puts_(j, "\\f");
            break;
        default:
            if (cp < 0x20 || cp == 0x7f || cp == 0x2028 || cp == 0x2029) {
                snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
                puts_(j, esc);
            } else {
                put(j, str + i, len);
            }
        }
        i += len;
    }
    put(j, "\"", 1);
}

void agent_json_key(agent_json_t *j, const char *key)
{
    if (j->error)
        return;
    if (j->depth == 0 || !j->is_object[j->depth - 1] || j->after_key || !key) {
        j->error = -EINVAL;
        return;
    }
    if (j->has_elem[j->depth - 1])
        put(j, ",", 1);
    j->has_elem[j->depth - 1] = true;
    put_string(j, key, strlen(key));
    put(j, ":", 1);
    j->after_key = true;
}

void agent_json_string_len(agent_json_t *j, const char *s, size_t len)
{
    if (!value_begin(j))
        return;
    put_string(j, s, len);
    value_end(j);
}

void agent_json_string(agent_json_t *j, const char *s)
{
    if (!s) {
        agent_json_null(j);
        return;
    }
    agent_json_string_len(j, s, strlen(s));
}

void agent_json_int(agent_json_t *j, int64_t v)
{
    char b[32];
    if (!value_begin(j))
        return;
    snprintf(b, sizeof(b), "%lld", (long long)v);
    puts_(j, b);
    value_end(j);
}

void agent_json_uint(agent_json_t *j, uint64_t v)
{
    char b[32];
    if (!value_begin(j))
        return;
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    puts_(j, b);
    value_end(j);
}

void agent_json_bool(agent_json_t *j, bool v)
{
    if (!value_begin(j))
        return;
    puts_(j, v ? "true" : "false");
    value_end(j);
}

void agent_json_null(agent_json_t *j)
{
    if (!value_begin(j))
        return;
    puts_(j, "null");
    value_end(j);
}

int agent_json_result(const agent_json_t *j)
{
    if (j->error)
        return j->error;
    if (j->depth != 0 || !j->done)
        return -EINVAL;
    return 0;
}

const char *agent_json_text(const agent_json_t *j)
{
    return j->buf;
}

size_t agent_json_len(const agent_json_t *j)
{
    return j->len;
}

char *agent_json_quote(const char *s, size_t len)
{
    agent_json_t *j = agent_json_new();
    char *r = NULL;
    if (!j)
        return NULL;
    agent_json_string_len(j, s, len);
    if (agent_json_result(j) == 0) {
        r = j->buf;
        j->buf = NULL;
    }
    agent_json_destroy(&j);
    return r;
}
