/* listener: binding the configured addresses. A stale unix socket file is
 * replaced only when nothing answers on it, so a second instance cannot
 * steal a live server's socket. */
#include "server/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/log.h"
#include "server/sdnotify.h"

static int unix_socket_is_live(const struct sockaddr_un *sun, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int live = connect(fd, (const struct sockaddr *)sun, len) == 0;
    close(fd);
    return live;
}

static int prepare_unix_path(const struct address *a, char *err, size_t errlen)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->sa;
    if (access(sun->sun_path, F_OK) != 0)
        return 0;
    if (a->socktype == SOCK_STREAM && unix_socket_is_live(sun, a->salen)) {
        snprintf(err, errlen, "bind %s: a server is already listening there",
                 a->text);
        return -1;
    }
    if (unlink(sun->sun_path) != 0) {
        snprintf(err, errlen, "bind %s: unlink stale socket: %s", a->text,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static int set_socket_options(int fd, const struct listen_conf *conf)
{
    const struct address *a = &conf->addr;
    int one = 1;
    if (a->sa.ss_family == AF_UNIX)
        return 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        return -1;
    if (a->socktype != SOCK_STREAM || conf->protocol != PROTO_HTTP)
        return 0;
    /* Accepted sockets inherit it: HTTP sets no option per connection. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        return -1;
    /* A client speaks first in HTTP: hand over a connection only once its
     * request has arrived, so the worker's first read finds it (nginx's
     * "deferred"). A silent client is handed over after this many seconds. */
    int defer_s = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof defer_s) != 0)
        return -1;
    /* [::]:port means IPv6 only; bind 0.0.0.0 separately for IPv4. */
    if (a->sa.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        return -1;
    return 0;
}

/* A socket passed by socket activation (systemd, systemd-socket-activate)
 * for this address: used as if bound here, with our options and backlog. */
static int adopt_passed(struct listener *l, int fd, char *err, size_t errlen)
{
    const struct listen_conf *conf = &l->conf;
    int flags = fcntl(fd, F_GETFL);
    bool nonblock = conf->protocol != PROTO_APP;
    if (flags < 0 || fcntl(fd, F_SETFL, nonblock ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) != 0 ||
        set_socket_options(fd, conf) != 0 ||
        (conf->addr.socktype == SOCK_STREAM && listen(fd, conf->backlog) != 0)) {
        snprintf(err, errlen, "passed socket %s: %s", conf->addr.text, strerror(errno));
        close(fd);
        return -1;
    }
    l->fd = fd;
    l->adopted = true;
    log_info("listener %s: adopted the socket passed by socket activation (fd %d)",
             conf->addr.text, fd);
    return 0;
}

int listener_open(struct listener *l, const struct listen_conf *conf,
                  char *err, size_t errlen)
{
    const struct address *a = &conf->addr;
    l->conf = *conf;
    l->fd = -1;
    l->adopted = false;
    int passed = sdnotify_adopt(a);
    if (passed >= 0)
        return adopt_passed(l, passed, err, errlen);
    if (a->sa.ss_family == AF_UNIX && prepare_unix_path(a, err, errlen) != 0)
        return -1;
    /* An app's listener stays blocking, as systemd passes sockets: a
     * program that wants it non-blocking says so itself. */
    int nonblock = conf->protocol == PROTO_APP ? 0 : SOCK_NONBLOCK;
    int fd = socket(a->sa.ss_family, a->socktype | nonblock | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket %s: %s", a->text, strerror(errno));
        return -1;
    }
    const char *step = "setsockopt";
    if (set_socket_options(fd, conf) != 0)
        goto fail;
    step = "bind";
    if (bind(fd, (const struct sockaddr *)&a->sa, a->salen) != 0)
        goto fail;
    step = "listen";
    if (a->socktype == SOCK_STREAM && listen(fd, conf->backlog) != 0)
        goto fail;
    l->fd = fd;
    return 0;
fail:
    snprintf(err, errlen, "%s %s: %s", step, a->text, strerror(errno));
    close(fd);
    return -1;
}

void listener_close(struct listener *l)
{
    if (l->fd < 0)
        return;
    close(l->fd);
    l->fd = -1;
    if (l->conf.addr.sa.ss_family == AF_UNIX && !l->adopted) {   /* systemd's path */
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&l->conf.addr.sa;
        unlink(sun->sun_path);
    }
}

int listeners_open_all(const struct config *cfg, struct listener **out,
                       char *err, size_t errlen)
{
    struct listener *ls = calloc(cfg->nlistens, sizeof *ls);
    if (!ls) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->nlistens; i++) {
        if (listener_open(&ls[i], &cfg->listens[i], err, errlen) != 0) {
            listeners_close_all(ls, i);
            return -1;
        }
    }
    *out = ls;
    return 0;
}

void listeners_close_all(struct listener *ls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        listener_close(&ls[i]);
    free(ls);
}

const char *listener_describe(const struct listener *l, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s %s", proto_name(l->conf.protocol), l->conf.addr.text);
    return buf;
}
