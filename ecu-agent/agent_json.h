/* agent_json.h — a small streaming JSON writer for the control protocol's reply bodies.
 *
 * The writer appends to a growing buffer and inserts commas itself: the caller opens objects
 * and arrays, writes keys and values, and closes them. Strings are escaped so that any byte
 * sequence becomes valid JSON: quote and backslash are escaped, control characters become
 * \n, \t, ... or \u00XX, U+2028/U+2029 are escaped (they break JavaScript embedding), and every
 * byte that is not part of well-formed UTF-8 (stray continuation bytes, overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences) is replaced by U+FFFD. A target
 * or a peer may send hostile strings; none of them can break the document.
 *
 * Errors are sticky: after an out-of-memory or a nesting error every call is a no-op and
 * agent_json_result() reports the error, so a renderer checks once at the end.
 */
#ifndef AGENT_JSON_H
#define AGENT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_JSON_DEPTH_MAX 16 /* maximum nesting of objects/arrays */

typedef struct agent_json agent_json_t;

/* A new, empty writer. Caller owns; NULL only when out of memory. */
agent_json_t *agent_json_new(void);
/* Free the writer. NULL-safe, idempotent, NULLs *p. */
void agent_json_destroy(agent_json_t **p);

void agent_json_object_begin(agent_json_t *j);
void agent_json_object_end(agent_json_t *j);
void agent_json_array_begin(agent_json_t *j);
void agent_json_array_end(agent_json_t *j);
/* A key inside an object; the next call writes its value. */
void agent_json_key(agent_json_t *j, const char *key);
/* A string value (NULL writes null). */
void agent_json_string(agent_json_t *j, const char *s);
/* A string value of exactly len bytes (may contain NUL, which is escaped). */
void agent_json_string_len(agent_json_t *j, const char *s, size_t len);
void agent_json_int(agent_json_t *j, int64_t v);
void agent_json_uint(agent_json_t *j, uint64_t v);
void agent_json_bool(agent_json_t *j, bool v);
void agent_json_null(agent_json_t *j);

/* 0 if the document is complete and well nested, -ENOMEM after an allocation failure,
 * -EINVAL after a nesting error (end without begin, key outside an object, too deep, open
 * containers left). */
int agent_json_result(const agent_json_t *j);
/* The text written so far, NUL-terminated; borrowed until the next call on j. */
const char *agent_json_text(const agent_json_t *j);
/* Length of agent_json_text(). */
size_t agent_json_len(const agent_json_t *j);

/* Append the JSON string literal for s[0..len) (with quotes) to a malloc'ed buffer: helper for
 * callers that build JSON by hand. Returns a new string (caller frees) or NULL on ENOMEM. */
char *agent_json_quote(const char *s, size_t len);

#endif
