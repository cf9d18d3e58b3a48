/* sbuf: a growable, always NUL-terminated string buffer for answers built
 * piecewise (status tables, JSON). Allocation failure is sticky: the buffer
 * stops growing and sbuf_failed() says so; nothing is ever truncated silently. */
#ifndef PREFORKD_SBUF_H
#define PREFORKD_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string literal, quotes included. */
void sbuf_json_string(struct sbuf *b, const char *s);
bool sbuf_failed(const struct sbuf *b);

#endif
