/* http: placeholder until the static file handler lands: every request is
 * answered 501 Not Implemented and the connection closed. */
#include "workers/http.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void http_open(struct conn *c)
{
    if (conn_set_interest(c, EPOLLIN) != 0)
        conn_close(c);
}

static void http_event(struct conn *c, uint32_t events)
{
    static const char resp[] =
        "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\n"
        "Content-Length: 16\r\nConnection: close\r\n\r\nnot implemented\n";
    char buf[4096];
    if (!(events & EPOLLERR) && read(c->fd, buf, sizeof buf) < 0 && errno == EAGAIN)
        return;
    ssize_t n = write(c->fd, resp, sizeof resp - 1);
    (void)n;        /* best effort: closed either way */
    c->w->stats.requests++;
    shutdown(c->fd, SHUT_WR);
    conn_close(c);
}

const struct proto http_proto = {
    .name = "http",
    .on_open = http_open,
    .on_event = http_event,
};
