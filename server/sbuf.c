/* sbuf: printf-style appends into a doubling heap buffer. */
#include "server/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void sbuf_init(struct sbuf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

void sbuf_free(struct sbuf *b)
{
    free(b->p);
    sbuf_init(b);
}

static bool sbuf_reserve(struct sbuf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sbuf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sbuf_json_string(struct sbuf *b, const char *s)
{
    sbuf_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sbuf_printf(b, "\\%c", c);
        else if (c < 0x20)
            sbuf_printf(b, "\\u%04x", c);
        else
            sbuf_printf(b, "%c", c);
    }
    sbuf_printf(b, "\"");
}

bool sbuf_failed(const struct sbuf *b)
{
    return b->failed;
}
