/* control: non-blocking line protocol on the master's epoll. Garbage gets an
 * "error: ..." line, an endless line is cut at CONTROL_LINE_MAX, and a client
 * that never reads is dropped at its deadline: the master never waits. */
#include "server/control.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/log.h"

int control_open(struct control *c, const char *path, bool defer, int epfd,
                 uint64_t listen_tag, uint64_t client_tag, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < CONTROL_MAX_CLIENTS; i++)
        c->clients[i].fd = -1;
    c->epfd = epfd;
    c->tag = client_tag;
    c->listen_tag = listen_tag;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->bound, sizeof c->bound, "%s%s", path, defer ? ".new" : "");
    if (strlen(c->bound) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        goto fail;
    }
    memcpy(sun.sun_path, c->bound, strlen(c->bound) + 1);
    path = c->bound;
    /* The pidfile lock proves no other master runs: a leftover is stale. */
    if (unlink(path) != 0 && errno != ENOENT)
        goto fail;
    c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(077);
    int rc = c->lfd < 0 ? -1 : bind(c->lfd, (struct sockaddr *)&sun, sizeof sun);
    umask(old);
    if (rc != 0 || chmod(path, 0600) != 0 || listen(c->lfd, 16) != 0)
        goto fail;
    struct epoll_event ee = { .events = EPOLLIN, .data.u64 = listen_tag };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->lfd, &ee) != 0)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
    if (c->lfd >= 0)
        close(c->lfd);
    c->lfd = -1;
    return -1;
}

static void client_close(struct control_client *cl)
{
    close(cl->fd);      /* also leaves the epoll set */
    cl->fd = -1;
    sbuf_free(&cl->out);
}

void control_close(struct control *c)
{
    if (c->lfd < 0)
        return;
    for (size_t i = 0; i < CONTROL_MAX_CLIENTS; i++)
        if (c->clients[i].fd >= 0)
            client_close(&c->clients[i]);
    close(c->lfd);
    c->lfd = -1;
    if (!c->keep_path)
        unlink(c->bound);
}

int control_publish(struct control *c)
{
    if (c->lfd < 0 || strcmp(c->bound, c->path) == 0)
        return 0;
    if (rename(c->bound, c->path) != 0)
        return -1;
    snprintf(c->bound, sizeof c->bound, "%s", c->path);
    return 0;
}

void control_keep_path(struct control *c)
{
    c->keep_path = true;
}

void control_close_in_child(struct control *c)
{
    if (c->lfd < 0)
        return;
    for (size_t i = 0; i < CONTROL_MAX_CLIENTS; i++)
        if (c->clients[i].fd >= 0)
            close(c->clients[i].fd);
    close(c->lfd);
}

static bool peer_allowed(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return false;
    if (cred.uid == 0 || cred.uid == geteuid())
        return true;
    log_warn("control socket: refused uid %u (pid %d)", cred.uid, (int)cred.pid);
    return false;
}

static void refuse(int fd, const char *why)
{
    ssize_t n = write(fd, why, strlen(why));
    (void)n;    /* best effort: a refusal note, then close */
    close(fd);
}

void control_on_listen(struct control *c, int64_t now_ms)
{
    for (;;) {
        int fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("control socket accept: %s", strerror(errno));
            return;
        }
        if (!peer_allowed(fd)) {
            refuse(fd, "error: permission denied\n");
            continue;
        }
        size_t i = 0;
        while (i < CONTROL_MAX_CLIENTS && c->clients[i].fd >= 0)
            i++;
        if (i == CONTROL_MAX_CLIENTS) {
            refuse(fd, "error: busy, try again\n");
            continue;
        }
        struct control_client *cl = &c->clients[i];
        struct epoll_event ee = { .events = EPOLLIN, .data.u64 = c->tag | i };
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ee) != 0) {
            close(fd);
            continue;
        }
        cl->fd = fd;
        cl->linelen = 0;
        cl->sent = 0;
        sbuf_init(&cl->out);
        cl->deadline_ms = now_ms + CONTROL_DEADLINE_MS;
    }
}

/* Read until a newline; -1 error/EOF before a line, 0 need more, 1 line. */
static int read_line(struct control_client *cl)
{
    while (cl->linelen < CONTROL_LINE_MAX - 1) {
        ssize_t n = read(cl->fd, cl->line + cl->linelen, CONTROL_LINE_MAX - 1 - cl->linelen);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        if (n == 0)
            return cl->linelen ? 1 : -1;
        cl->linelen += (size_t)n;
        char *nl = memchr(cl->line, '\n', cl->linelen);
        if (nl) {
            *nl = '\0';
            if (nl > cl->line && nl[-1] == '\r')
                nl[-1] = '\0';
            return 1;
        }
    }
    cl->line[CONTROL_LINE_MAX - 1] = '\0';
    return 2;   /* too long */
}

static int write_answer(struct control_client *cl)
{
    while (cl->sent < cl->out.len) {
        ssize_t n = write(cl->fd, cl->out.p + cl->sent, cl->out.len - cl->sent);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        cl->sent += (size_t)n;
    }
    return 1;
}

static void start_answer(struct control *c, size_t idx, int got,
                         control_handler h, void *ctx)
{
    struct control_client *cl = &c->clients[idx];
    if (got == 2)
        sbuf_printf(&cl->out, "error: command line longer than %d bytes\n",
                    CONTROL_LINE_MAX - 1);
    else
        h(ctx, cl->line, &cl->out);
    if (sbuf_failed(&cl->out)) {
        sbuf_free(&cl->out);
        sbuf_printf(&cl->out, "error: out of memory\n");
    }
    struct epoll_event ee = { .events = EPOLLOUT, .data.u64 = c->tag | idx };
    epoll_ctl(c->epfd, EPOLL_CTL_MOD, cl->fd, &ee);
}

void control_on_client(struct control *c, size_t idx, uint32_t events,
                       control_handler h, void *ctx)
{
    struct control_client *cl = &c->clients[idx];
    if (cl->fd < 0)
        return;
    if (cl->out.len == 0) {
        int got = read_line(cl);
        if (got < 0) {
            client_close(cl);
            return;
        }
        if (got == 0)
            return;
        start_answer(c, idx, got, h, ctx);
        events |= EPOLLOUT;
    }
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        int r = write_answer(cl);
        if (r != 0)
            client_close(cl);
    }
}

void control_expire(struct control *c, int64_t now_ms)
{
    for (size_t i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        struct control_client *cl = &c->clients[i];
        if (cl->fd >= 0 && now_ms >= cl->deadline_ms) {
            log_warn("control socket: client did not finish in %d ms; dropped",
                     CONTROL_DEADLINE_MS);
            client_close(cl);
        }
    }
}
