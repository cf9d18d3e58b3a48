/* statushttp: the status listener's accept, read, answer and expiry, all
 * non-blocking on the master's loop (see statushttp.h). */
#include "server/statushttp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/log.h"
#include "server/master.h"
#include "server/sdnotify.h"
#include "server/status.h"
#include "workers/worker.h"

extern const char status_page_html[];
extern const size_t status_page_len;

/* --- llhttp callbacks: only the target is kept ------------------------- */

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct shttp_client *cl = p->data;
    for (size_t i = 0; i < len && cl->pathlen < sizeof cl->path - 1; i++) {
        if (at[i] == '?' || at[i] == '#')
            cl->pathlen = sizeof cl->path - 1;  /* the rest is ignored */
        else
            cl->path[cl->pathlen++] = at[i];
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    ((struct shttp_client *)p->data)->complete = true;
    return HPE_PAUSED;
}

void status_http_init(struct status_http *h)
{
    memset(h, 0, sizeof *h);
    h->lfd = -1;
    h->epfd = -1;
    for (size_t i = 0; i < SHTTP_MAX_CLIENTS; i++)
        h->clients[i].fd = -1;
    llhttp_settings_init(&h->settings);
    h->settings.on_url = on_url;
    h->settings.on_message_complete = on_message_complete;
}

/* --- the listening socket --------------------------------------------- */

static int bind_socket(const struct address *a, char *err, size_t errlen)
{
    int one = 1;
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)&a->sa, a->salen) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "status_listen %s: %s", a->text, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int status_http_bind(struct status_http *h, const struct address *a, char *err, size_t errlen)
{
    if (!a->text[0])
        return 0;
    /* Passed by the old master of a hot upgrade (or by systemd): the same
     * socket, so no request is refused meanwhile. */
    int fd = sdnotify_adopt(a);
    if (fd >= 0) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
            snprintf(err, errlen, "status_listen %s: %s", a->text, strerror(errno));
            close(fd);
            return -1;
        }
        log_info("status listener %s: adopted the socket passed in LISTEN_FDS (fd %d)",
                 a->text, fd);
    } else {
        fd = bind_socket(a, err, errlen);
    }
    if (fd < 0)
        return -1;
    h->lfd = fd;
    h->addr = *a;
    return 0;
}

int status_http_watch(struct status_http *h, int epfd, uint64_t listen_tag,
                      uint64_t client_tag)
{
    h->epfd = epfd;
    h->listen_tag = listen_tag;
    h->client_tag = client_tag;
    if (h->lfd < 0)
        return 0;
    struct epoll_event ee = { .events = EPOLLIN, .data.u64 = listen_tag };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, h->lfd, &ee);
}

static void client_close(struct status_http *h, struct shttp_client *cl)
{
    close(cl->fd);          /* also leaves the epoll set */
    cl->fd = -1;
    h->queued -= cl->out.len - cl->sent;
    sbuf_free(&cl->out);
}

static void close_all(struct status_http *h)
{
    for (size_t i = 0; i < SHTTP_MAX_CLIENTS; i++)
        if (h->clients[i].fd >= 0)
            client_close(h, &h->clients[i]);
    if (h->lfd >= 0)
        close(h->lfd);
    h->lfd = -1;
}

void status_http_close(struct status_http *h)
{
    close_all(h);
}

void status_http_stop_listening(struct status_http *h)
{
    if (h->lfd < 0)
        return;
    epoll_ctl(h->epfd, EPOLL_CTL_DEL, h->lfd, NULL);
    close(h->lfd);
    h->lfd = -1;
}

size_t status_http_clients(const struct status_http *h)
{
    size_t n = 0;
    for (size_t i = 0; i < SHTTP_MAX_CLIENTS; i++)
        n += h->clients[i].fd >= 0;
    return n;
}

void status_http_close_in_child(struct status_http *h)
{
    for (size_t i = 0; i < SHTTP_MAX_CLIENTS; i++)
        if (h->clients[i].fd >= 0)
            close(h->clients[i].fd);
    if (h->lfd >= 0)
        close(h->lfd);
}

int status_http_reconfigure(struct status_http *h, const struct config *cfg,
                            char *err, size_t errlen)
{
    const struct address *a = &cfg->status_listen;
    bool on = a->text[0] != '\0', was = h->lfd >= 0;
    if (on == was && (!on || address_equal(a, &h->addr)))
        return 0;
    int fd = -1;
    if (on && (fd = bind_socket(a, err, errlen)) < 0)
        return -1;
    if (was)
        log_info("status listener %s closed", h->addr.text);
    close_all(h);
    memset(&h->addr, 0, sizeof h->addr);
    if (!on)
        return 0;
    h->lfd = fd;
    h->addr = *a;
    if (status_http_watch(h, h->epfd, h->listen_tag, h->client_tag) != 0) {
        snprintf(err, errlen, "status_listen %s: epoll: %s", a->text, strerror(errno));
        close_all(h);
        return -1;
    }
    log_info("status listener on http://%s/", a->text);
    return 0;
}

/* --- accepting -------------------------------------------------------- */

static void peer_text(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    const void *a = ss->ss_family == AF_INET
                    ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                    : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!inet_ntop(ss->ss_family, a, buf, (socklen_t)cap))
        snprintf(buf, cap, "?");
}

/* A short answer, best effort (a fresh socket's buffer takes it). */
static void say(int fd, const char *status)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                     status, strlen(status) + 1, status);
    ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
}

static void turn_away(int fd, const char *status)
{
    say(fd, status);
    close(fd);
}

void status_http_on_listen(struct master *m, struct status_http *h)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(h->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("status listener accept: %s", strerror(errno));
            return;
        }
        if (!cidr_match(m->cfg.status_allow, m->cfg.nstatus_allow, (struct sockaddr *)&ss)) {
            h->refused++;
            peer_text(&ss, h->last_refused, sizeof h->last_refused);
            turn_away(fd, "403 Forbidden");
            continue;
        }
        size_t i = 0;
        while (i < SHTTP_MAX_CLIENTS && h->clients[i].fd >= 0)
            i++;
        if (i == SHTTP_MAX_CLIENTS) {
            h->busy++;
            turn_away(fd, "503 Service Unavailable");
            continue;
        }
        struct shttp_client *cl = &h->clients[i];
        struct epoll_event ee = { .events = EPOLLIN, .data.u64 = h->client_tag | i };
        if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ee) != 0) {
            close(fd);
            continue;
        }
        cl->fd = fd;
        cl->len = cl->pathlen = cl->sent = 0;
        cl->complete = false;
        cl->reading = true;
        sbuf_init(&cl->out);
        llhttp_init(&cl->parser, HTTP_REQUEST, &h->settings);
        cl->parser.data = cl;
        cl->deadline_ms = m->now_ms + SHTTP_READ_MS;
    }
}

/* --- answering -------------------------------------------------------- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    default:  return "Service Unavailable";
    }
}

static void answer(struct shttp_client *cl, int status, const char *ctype,
                   const char *body, size_t len, bool head)
{
    sbuf_printf(&cl->out, "HTTP/1.1 %d %s\r\nServer: preforkd\r\nContent-Type: %s\r\n"
                "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                "X-Content-Type-Options: nosniff\r\n", status, reason(status), ctype, len);
    if (status == 405)
        sbuf_printf(&cl->out, "Allow: GET, HEAD\r\n");
    if (strncmp(ctype, "text/html", 9) == 0)
        sbuf_printf(&cl->out, "Content-Security-Policy: default-src 'none'; "
                    "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                    "connect-src 'self'; img-src data:\r\n");
    sbuf_printf(&cl->out, "Connection: close\r\n\r\n");
    if (!head && len)
        sbuf_printf(&cl->out, "%.*s", (int)len, body);
}

static void answer_text(struct shttp_client *cl, int status, const char *text, bool head)
{
    answer(cl, status, "text/plain; charset=utf-8", text, strlen(text), head);
}

static void route(struct master *m, struct shttp_client *cl)
{
    int method = cl->parser.method;
    bool head = method == HTTP_HEAD;
    const char *path = cl->path;
    cl->path[cl->pathlen] = '\0';
    if (method != HTTP_GET && method != HTTP_HEAD) {
        answer_text(cl, 405, "405 Method Not Allowed\n", false);
        return;
    }
    enum status_format fmt;
    const char *ctype;
    if (strcmp(path, "/") == 0) {
        answer(cl, 200, "text/html; charset=utf-8", status_page_html, status_page_len, head);
        return;
    } else if (strcmp(path, "/healthz") == 0) {
        if (m->health_draining)
            answer_text(cl, 503, "draining\n", head);
        else
            answer_text(cl, 200, "ok\n", head);
        return;
    } else if (strcmp(path, "/status.json") == 0) {
        fmt = STATUS_JSON;
        ctype = "application/json";
    } else if (strcmp(path, "/metrics") == 0) {
        fmt = STATUS_PROMETHEUS;
        ctype = "text/plain; version=0.0.4; charset=utf-8";
    } else {
        answer_text(cl, 404, "404 Not Found: try /, /status.json, /metrics, /healthz\n", head);
        return;
    }
    struct sbuf body;
    sbuf_init(&body);
    m->now_ms = monotonic_ms();
    status_render(m, fmt, &body);
    if (sbuf_failed(&body))
        answer_text(cl, 503, "503 out of memory\n", head);
    else
        answer(cl, 200, ctype, body.p, body.len, head);
    sbuf_free(&body);
}

/* Read what came; -1: closed or failed before a whole request. */
static int read_request(struct shttp_client *cl)
{
    for (;;) {
        if (cl->len == sizeof cl->in)
            return 0;               /* full: parse says 431 */
        ssize_t n = read(cl->fd, cl->in + cl->len, sizeof cl->in - cl->len);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        if (n == 0)
            return -1;
        llhttp_errno_t e = llhttp_execute(&cl->parser, cl->in + cl->len, (size_t)n);
        cl->len += (size_t)n;
        if (e == HPE_PAUSED && cl->complete)
            return 1;
        if (e != HPE_OK)
            return 2;               /* garbage */
    }
}

/* Write what the socket takes: 1 all sent, 0 wait, -1 failed. */
static int write_answer(struct status_http *h, struct shttp_client *cl)
{
    while (cl->sent < cl->out.len) {
        ssize_t n = send(cl->fd, cl->out.p + cl->sent, cl->out.len - cl->sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        cl->sent += (size_t)n;
        h->queued -= (size_t)n;
    }
    return 1;
}

/* Unread input makes close() send a reset, which can cost the client the
 * answer it has not read yet: take what is there first (bounded). */
static void finish(struct status_http *h, struct shttp_client *cl)
{
    char sink[4096];
    shutdown(cl->fd, SHUT_WR);
    for (int i = 0; i < 4 && read(cl->fd, sink, sizeof sink) > 0; i++)
        ;
    client_close(h, cl);
}

static void start_answer(struct master *m, struct status_http *h, struct shttp_client *cl,
                         int got)
{
    cl->reading = false;
    if (got == 1) {
        route(m, cl);
    } else if (cl->len == sizeof cl->in) {
        h->bad++;
        answer_text(cl, 431, "431 Request Header Fields Too Large\n", false);
    } else {
        h->bad++;
        answer_text(cl, 400, "400 Bad Request\n", false);
    }
    if (sbuf_failed(&cl->out) || h->queued + cl->out.len > SHTTP_OUT_BUDGET) {
        sbuf_free(&cl->out);
        answer_text(cl, 503, "503 Service Unavailable: too much queued\n", false);
    }
    h->queued += cl->out.len;
    cl->deadline_ms = m->now_ms + SHTTP_WRITE_MS;
    struct epoll_event ee = { .events = EPOLLOUT,
                              .data.u64 = h->client_tag | (size_t)(cl - h->clients) };
    epoll_ctl(h->epfd, EPOLL_CTL_MOD, cl->fd, &ee);
}

void status_http_on_client(struct master *m, struct status_http *h, size_t idx,
                           uint32_t events)
{
    if (idx >= SHTTP_MAX_CLIENTS || h->clients[idx].fd < 0)
        return;
    struct shttp_client *cl = &h->clients[idx];
    if (cl->reading) {
        int got = read_request(cl);
        if (got < 0) {
            client_close(h, cl);
            return;
        }
        if (got == 0 && cl->len < sizeof cl->in)
            return;
        start_answer(m, h, cl, got);
        events |= EPOLLOUT;
    }
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        int r = write_answer(h, cl);
        if (r > 0)
            finish(h, cl);
        else if (r < 0)
            client_close(h, cl);
    }
}

void status_http_expire(struct status_http *h, int64_t now_ms)
{
    for (size_t i = 0; i < SHTTP_MAX_CLIENTS; i++) {
        struct shttp_client *cl = &h->clients[i];
        if (cl->fd < 0 || now_ms < cl->deadline_ms)
            continue;
        if (cl->reading && cl->len > 0)
            say(cl->fd, "408 Request Timeout");
        h->timed_out++;
        client_close(h, cl);
    }
    if (!(h->refused | h->busy | h->timed_out | h->bad) || now_ms - h->noted_ms < SHTTP_NOTE_MS)
        return;
    log_warn("status listener %s: refused %lu (not in status_allow; last %s), "
             "turned away %lu (all %d client slots busy), dropped %lu (no request within "
             "%d ms, or the answer not taken within %d ms), bad requests %lu "
             "(counted since the last such line; at most one every %d s)", h->addr.text,
             h->refused, h->refused ? h->last_refused : "-", h->busy, SHTTP_MAX_CLIENTS,
             h->timed_out, SHTTP_READ_MS, SHTTP_WRITE_MS, h->bad, SHTTP_NOTE_MS / 1000);
    h->refused = h->busy = h->timed_out = h->bad = 0;
    h->noted_ms = now_ms;
}
