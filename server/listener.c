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
#include "server/percpu.h"
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
    return 0;
}

/* [::]:port means IPv6 only, for every protocol (as nginx's ipv6only=on):
 * *:port is a listener of its own. Only before bind: an adopted socket
 * (socket activation, a hot upgrade) keeps what it was bound with; setting
 * it there fails with EINVAL, which made an upgrade of an IPv6 http
 * listener fail. */
static int set_v6only(int fd, const struct address *a)
{
    int one = 1;
    if (a->sa.ss_family != AF_INET6)
        return 0;
    return setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
}

static int adopt_passed(struct listener *l, int fd, char *err, size_t errlen);

/* Per-CPU sockets passed by the old master of a hot upgrade, in their
 * group's order (it laid them out so): re-steered for our CPUs. */
static int adopt_per_cpu(struct listener *l, const int *fds, int n, char *err, size_t errlen)
{
    int cpus[PERCPU_MAX], ncpus = percpu_allowed(cpus, PERCPU_MAX);
    for (int i = 0; i < n; i++) {
        if (adopt_passed(l, fds[i], err, errlen) != 0) {
            for (int k = i + 1; k < n; k++)
                close(fds[k]);
            for (int k = 0; k < i; k++)
                close(l->pc.fd[k]);
            l->pc.n = 0;
            return -1;
        }
        l->pc.fd[i] = fds[i];
        l->pc.cpu[i] = ncpus > 0 ? cpus[i % ncpus] : i;
        l->pc.n = i + 1;
    }
    l->fd = l->pc.fd[0];
    if (l->conf.accept != ACCEPT_PER_CPU)
        log_warn("listener %s: %d per-CPU sockets passed; changing accept mode needs "
                 "a restart, keeping \"per-cpu\"", l->conf.addr.text, n);
    if (percpu_steer(&l->pc, err, errlen) != 0)
        log_warn("listener %s: %s; connections spread by hash", l->conf.addr.text, err);
    return 0;
}

/* Sockets passed for this address (socket activation or a hot upgrade):
 * one is used as it is (shared: systemd passes one socket per address, so
 * per-cpu cannot be had that way), several are a per-CPU group. */
static int adopt_all_passed(struct listener *l, const int *fds, int n,
                            char *err, size_t errlen)
{
    if (n > 1)
        return adopt_per_cpu(l, fds, n, err, errlen);
    if (l->conf.accept == ACCEPT_PER_CPU)
        log_warn("listener %s: accept = \"per-cpu\", but one socket was passed for it "
                 "(socket activation, or a hot upgrade from a shared listener): "
                 "serving it shared", l->conf.addr.text);
    return adopt_passed(l, fds[0], err, errlen);
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

/* Is the address free? A socket without SO_REUSEPORT cannot bind beside a
 * live listener, so a second instance does not join our reuseport group
 * (and take half of our connections) but fails as it would in shared mode. */
static int probe_free(const struct address *a, char *err, size_t errlen)
{
    int one = 1, fd = socket(a->sa.ss_family, a->socktype | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        set_v6only(fd, a) != 0 || bind(fd, (const struct sockaddr *)&a->sa, a->salen) != 0) {
        snprintf(err, errlen, "bind %s: %s", a->text, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* One member of the group: bound to sa (port 0: the first member's port). */
static int open_member(const struct listen_conf *conf, struct sockaddr_storage *sa,
                       int cpu, char *err, size_t errlen)
{
    const struct address *a = &conf->addr;
    int one = 1, fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    socklen_t len = a->salen;
    const char *step = "socket";
    if (fd < 0)
        goto fail;
    step = "setsockopt";
    if (set_socket_options(fd, conf) != 0 || set_v6only(fd, a) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        goto fail;
    /* Used by the kernel (6.1 on) if the steering program cannot be attached. */
    (void)setsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, sizeof cpu);
    step = "bind";
    if (bind(fd, (const struct sockaddr *)sa, a->salen) != 0 ||
        getsockname(fd, (struct sockaddr *)sa, &len) != 0)
        goto fail;
    step = "listen";
    if (listen(fd, conf->backlog) != 0)
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "%s %s: %s", step, a->text, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

static void log_per_cpu(const struct listener *l, bool steered)
{
    char cpus[256] = "";
    for (int i = 0, len = 0; i < l->pc.n && len < (int)sizeof cpus - 8; i++)
        len += snprintf(cpus + len, sizeof cpus - (size_t)len, "%s%d", i ? "," : "", l->pc.cpu[i]);
    log_info("listener %s: accept per-cpu, %d SO_REUSEPORT sockets (CPUs %s), %s",
             l->conf.addr.text, l->pc.n, cpus, steered ?
             "steered by a reuseport CBPF program (SKF_AD_CPU -> that CPU's socket)" :
             "spread by the kernel's hash");
}

/* One socket per allowed CPU, put in listen state in CPU order: that is
 * their order in the kernel's reuseport group, which the program indexes. */
static int open_per_cpu(struct listener *l, char *err, size_t errlen)
{
    int cpus[PERCPU_MAX], n = percpu_allowed(cpus, PERCPU_MAX);
    struct sockaddr_storage sa = l->conf.addr.sa;
    if (n <= 0) {
        log_warn("listener %s: cannot read the CPU affinity; serving it shared",
                 l->conf.addr.text);
        return 1;
    }
    if (probe_free(&l->conf.addr, err, errlen) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int fd = open_member(&l->conf, &sa, cpus[i], err, errlen);
        if (fd < 0) {
            while (i-- > 0)
                close(l->pc.fd[i]);
            l->pc.n = 0;
            return -1;
        }
        l->pc.fd[i] = fd;
        l->pc.cpu[i] = cpus[i];
        l->pc.n = i + 1;
    }
    l->fd = l->pc.fd[0];
    char why[200];
    bool steered = percpu_steer(&l->pc, why, sizeof why) == 0;
    if (!steered)
        log_warn("listener %s: %s", l->conf.addr.text, why);
    log_per_cpu(l, steered);
    return 0;
}

int listener_open(struct listener *l, const struct listen_conf *conf,
                  char *err, size_t errlen)
{
    const struct address *a = &conf->addr;
    l->conf = *conf;
    l->fd = -1;
    l->adopted = false;
    memset(&l->pc, 0, sizeof l->pc);
    int passed[PERCPU_MAX], npassed = sdnotify_adopt_all(a, passed, PERCPU_MAX);
    if (npassed > 0)
        return adopt_all_passed(l, passed, npassed, err, errlen);
    if (conf->accept == ACCEPT_PER_CPU) {
        int r = open_per_cpu(l, err, errlen);
        if (r <= 0)
            return r;               /* else: shared after all */
    }
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
    if (set_socket_options(fd, conf) != 0 || set_v6only(fd, a) != 0)
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

const char *listener_accept_name(const struct listener *l)
{
    return l->pc.n > 0 ? "per-cpu" : "shared";
}

void listener_relisten(const struct listener *l)
{
    if (l->conf.addr.socktype != SOCK_STREAM)
        return;
    if (l->pc.n == 0)
        listen(l->fd, l->conf.backlog);
    for (int i = 0; i < l->pc.n; i++)
        listen(l->pc.fd[i], l->conf.backlog);
}

void listener_close(struct listener *l)
{
    if (l->fd < 0)
        return;
    for (int i = 1; i < l->pc.n; i++)   /* pc.fd[0] is l->fd */
        close(l->pc.fd[i]);
    l->pc.n = 0;
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
