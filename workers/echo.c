/* echo: bytes come back in order. Each TCP connection has a fixed buffer;
 * when it is full the worker stops reading, so a client that does not read
 * fills its own socket buffers, never the worker's memory. UDP datagrams are
 * answered in batches (recvmmsg/sendmmsg); one that cannot be sent is dropped. */
#include "workers/echo.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/log.h"

#define ECHO_BUF        16384
#define ECHO_ROUNDS     8       /* read/write rounds per event, for fairness */
#define DRAIN_IDLE_MS   500     /* draining: close after this much quiet */
#define UDP_BATCH       16
#define UDP_MAX         65536

struct echo_state {
    size_t head, len;           /* pending bytes are buf[head..len) */
    int eof;
    uint32_t unsent;            /* reads not yet all echoed (timing) */
    int64_t t_first;            /* the wakeup of the first of them */
    unsigned char buf[ECHO_BUF];
};

static struct tlist *drain_timer;

static int echo_init(struct worker *w)
{
    drain_timer = worker_timer_list(w, DRAIN_IDLE_MS);
    return drain_timer ? 0 : -1;
}

/* -1 on a fatal error, else whether any byte moved. */
static int echo_write(struct conn *c, struct echo_state *s)
{
    if (s->head == s->len)
        return 0;
    ssize_t n = write(c->fd, s->buf + s->head, s->len - s->head);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    s->head += (size_t)n;
    c->w->stats.bytes_out += (uint64_t)n;
    if (s->head == s->len) {
        s->head = s->len = 0;
        /* Timed per read: from the wakeup that read the first of them
         * to the last byte handed back. */
        if (s->unsent)
            worker_lat_done(c->ls, s->t_first, s->unsent);
        s->unsent = 0;
    }
    return 1;
}

static int echo_read(struct conn *c, struct echo_state *s)
{
    if (s->eof || s->len == ECHO_BUF)
        return 0;
    ssize_t n = read(c->fd, s->buf + s->len, ECHO_BUF - s->len);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (n == 0) {
        s->eof = 1;
        return 1;
    }
    s->len += (size_t)n;
    c->w->stats.bytes_in += (uint64_t)n;
    c->w->stats.requests++;
    if (!s->unsent++)
        s->t_first = worker_now_ns(c->w);
    return 1;
}

static uint32_t echo_interest(const struct echo_state *s)
{
    uint32_t ev = 0;
    if (!s->eof && s->len < ECHO_BUF)
        ev |= EPOLLIN;
    if (s->head < s->len)
        ev |= EPOLLOUT;
    return ev;
}

static void echo_pump(struct conn *c)
{
    struct echo_state *s = (struct echo_state *)c->state;
    int moved = 0;
    for (int i = 0; i < ECHO_ROUNDS; i++) {
        int w = echo_write(c, s);
        int r = echo_read(c, s);
        if (w < 0 || r < 0) {
            conn_close(c);
            return;
        }
        if (!w && !r)
            break;
        moved = 1;
    }
    if (s->eof && s->head == s->len) {
        conn_close(c);          /* the client finished and has everything */
        return;
    }
    if (c->w->draining && (moved || !c->tl))
        conn_timer_set(c, drain_timer);
    if (conn_set_interest(c, echo_interest(s)) != 0)
        conn_close(c);
}

static void echo_open(struct conn *c)
{
    struct echo_state *s = (struct echo_state *)c->state;
    s->head = s->len = 0;
    s->eof = 0;
    s->unsent = 0;
    if (conn_set_interest(c, EPOLLIN) != 0)
        conn_close(c);
}

static void echo_event(struct conn *c, uint32_t events)
{
    if (events & EPOLLERR) {
        conn_close(c);
        return;
    }
    echo_pump(c);
}

/* Draining: keep echoing while the client is active; close once quiet. */
static void echo_drain(struct conn *c)
{
    conn_timer_set(c, drain_timer);
}

static void echo_timeout(struct conn *c)
{
    struct echo_state *s = (struct echo_state *)c->state;
    if (s->head < s->len) {
        conn_timer_set(c, drain_timer);     /* still writing: wait */
        return;
    }
    shutdown(c->fd, SHUT_WR);
    conn_close(c);
}

static unsigned char udp_bufs[UDP_BATCH][UDP_MAX];

static void echo_datagram(struct worker *w, struct wlistener *l)
{
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    struct sockaddr_storage peers[UDP_BATCH];
    for (int i = 0; i < UDP_BATCH; i++) {
        iov[i] = (struct iovec){ udp_bufs[i], UDP_MAX };
        msgs[i].msg_hdr = (struct msghdr){ .msg_name = &peers[i],
            .msg_namelen = sizeof peers[i], .msg_iov = &iov[i], .msg_iovlen = 1 };
    }
    int n = recvmmsg(l->fd, msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) {
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            log_warn("recvmmsg %s: %s", l->conf->addr.text, strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        iov[i].iov_len = msgs[i].msg_len;
        w->stats.bytes_in += msgs[i].msg_len;
        w->stats.requests++;
    }
    int sent = sendmmsg(l->fd, msgs, (unsigned)n, MSG_DONTWAIT);
    for (int i = 0; i < sent; i++)
        w->stats.bytes_out += msgs[i].msg_len;
    if (sent > 0)
        worker_lat_done(l, worker_now_ns(w), (uint32_t)sent);
}

const struct proto echo_proto = {
    .name = "echo",
    .state_size = sizeof(struct echo_state),
    .init = echo_init,
    .on_open = echo_open,
    .on_event = echo_event,
    .on_timeout = echo_timeout,
    .on_drain = echo_drain,
    .on_datagram = echo_datagram,
};
