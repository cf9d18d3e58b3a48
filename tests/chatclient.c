/* chatclient: see tests/chatclient.h. */
#include "tests/chatclient.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void chat_client_open(struct client *c, int fd)
{
    *c = (struct client){ .fd = fd, .data = calloc(1, CHAT_CL_CAP) };
    cr_assert_not_null(c->data);
}

void chat_clients_close(struct client *cl, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        close(cl[i].fd);
        free(cl[i].data);
    }
}

static void read_into(struct client *c)
{
    ssize_t n = read(c->fd, c->data + c->len, CHAT_CL_CAP - 1 - c->len);
    if (n <= 0) {
        c->eof = true;
        return;
    }
    for (const char *q = c->data + c->len;
         (q = memchr(q, '\n', (size_t)(c->data + c->len + n - q))); q++)
        c->lines++;
    c->len += (size_t)n;
    c->data[c->len] = '\0';
}

void chat_pump(struct client *cl, size_t n, int ms)
{
    struct pollfd p[n ? n : 1];
    for (size_t i = 0; i < n; i++)
        p[i] = (struct pollfd){ .fd = cl[i].eof ? -1 : cl[i].fd, .events = POLLIN };
    if (poll(p, n, ms) <= 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
            read_into(&cl[i]);
}

bool chat_has(const struct client *c, const char *s)
{
    return strstr(c->data, s) != NULL;
}

int chat_count(const struct client *c, const char *s)
{
    int n = 0;
    for (const char *p = c->data; (p = strstr(p, s)); p++)
        n++;
    return n;
}

void chat_say(struct client *c, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cr_assert_eq(h_write_full(c->fd, line, (size_t)n), 0);
}
