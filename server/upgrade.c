/* upgrade: the hot binary upgrade, both sides. The old master's child lays
 * out fds 3.. (listeners, as LISTEN_FDS), then the locked pidfile, the
 * verdict pipe and a sealed memfd of TLS ticket keys, and execs `BINARY -f
 * -c FILE`; the new master adopts the sockets by address (sdnotify.c),
 * writes its pid into the shared pidfile and "ok" to the pipe. */
#include "server/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/log.h"
#include "server/master.h"
#include "server/sdnotify.h"
#include "server/tlsctx.h"

#define UPGRADE_BASE_TIMEOUT_S 30   /* plus the slowest app pool's ready_timeout */

static void record(struct master *m, bool ok, const char *msg)
{
    struct upgrade *u = &m->upgrade;
    u->last_time = time(NULL);
    u->last_ok = ok;
    snprintf(u->last_msg, sizeof u->last_msg, "%s", msg);
}

/* --- the old master ------------------------------------------------------- */

static int lift(int fd, int floor)
{
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, floor);
    if (copy < 0)
        _exit(126);
    return copy;
}

/* The pool's session ticket keys and their schedule for the new master,
 * in a memfd sealed read-only: never on disk, in the environment or argv.
 * -1 (the new master makes new keys and says so) if it cannot be made. */
static int ticket_keys_memfd(void)
{
    unsigned char blob[TLSCTX_HANDOVER_MAX];
    size_t len = tlsctx_keys_export(blob, sizeof blob);
    int fd = len ? memfd_create("preforkd-ticket-keys", MFD_CLOEXEC | MFD_ALLOW_SEALING) : -1;
    if (fd >= 0 && (write(fd, blob, len) != (ssize_t)len ||
                    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
                          F_SEAL_SEAL) != 0)) {
        close(fd);
        fd = -1;
    }
    explicit_bzero(blob, sizeof blob);
    return fd;
}

/* In the forked child: fds and environment for the new master, then exec.
 * dup2 clears close-on-exec on exactly the fds that are passed. */
static __attribute__((noreturn)) void exec_new_master(struct master *m, int verdict_w,
                                                      pid_t old)
{
    /* The status listener goes last among the sockets: adopted by address.
     * A per-CPU listener's sockets go in their group's order: the new
     * master adopts them in fd order and steers by that index. */
    int n = (int)(m->shttp.lfd >= 0);
    for (size_t i = 0; i < m->nls; i++)
        n += m->ls[i].pc.n > 0 ? m->ls[i].pc.n : 1;
    int keys = ticket_keys_memfd(), passed = n + 2 + (keys >= 0);
    int floor = 3 + passed, lifted[passed], k = 0;
    for (size_t i = 0; i < m->nls; i++) {
        if (m->ls[i].pc.n == 0)
            lifted[k++] = lift(m->ls[i].fd, floor);
        for (int c = 0; c < m->ls[i].pc.n; c++)
            lifted[k++] = lift(m->ls[i].pc.fd[c], floor);
    }
    if (m->shttp.lfd >= 0)
        lifted[n - 1] = lift(m->shttp.lfd, floor);
    lifted[n] = lift(m->pidfile_fd, floor);
    lifted[n + 1] = lift(verdict_w, floor);
    if (keys >= 0)
        lifted[n + 2] = lift(keys, floor);
    for (int i = 0; i < passed; i++)
        if (dup2(lifted[i], 3 + i) < 0)
            _exit(126);
    close_range((unsigned)floor, ~0U, 0);
    char v[32];
    unsetenv("PREFORKD_UPGRADE_KEYS_FD");
    if (keys >= 0) {
        snprintf(v, sizeof v, "%d", 3 + n + 2);
        setenv("PREFORKD_UPGRADE_KEYS_FD", v, 1);
    }
    snprintf(v, sizeof v, "%d", n);
    setenv("LISTEN_FDS", v, 1);
    snprintf(v, sizeof v, "%d", (int)getpid());
    setenv("LISTEN_PID", v, 1);
    snprintf(v, sizeof v, "%d", 3 + n);
    setenv("PREFORKD_UPGRADE_PIDFILE_FD", v, 1);
    snprintf(v, sizeof v, "%d", 3 + n + 1);
    setenv("PREFORKD_UPGRADE_FD", v, 1);
    snprintf(v, sizeof v, "%d", (int)old);
    setenv("PREFORKD_UPGRADE_FROM", v, 1);
    if (m->sd_socket[0])
        setenv("NOTIFY_SOCKET", m->sd_socket, 1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execl(m->self_path, "preforkd", "-f", "-c", m->cfg.path, (char *)NULL);
    dprintf(3 + n + 1, "exec %s: %s\n", m->self_path, strerror(errno));
    _exit(127);
}

static int64_t upgrade_timeout_ms(const struct master *m)
{
    int slowest = 0;
    for (size_t i = 0; i < m->cfg.napps; i++)
        if (m->cfg.apps[i].ready_timeout > slowest)
            slowest = m->cfg.apps[i].ready_timeout;
    return (int64_t)(UPGRADE_BASE_TIMEOUT_S + slowest) * 1000;
}

static void refuse(struct master *m, const char *why)
{
    log_error("upgrade refused: %s", why);
    record(m, false, why);
}

void upgrade_start(struct master *m)
{
    struct upgrade *u = &m->upgrade;
    int p[2];
    if (u->child)
        return refuse(m, "an upgrade is already in flight");
    /* stop_at_ms: a stop waiting out graceful_stop_delay; a new master
     * would answer 200 on /healthz and serve on, and the stop be lost */
    if (m->stopping || m->stop_at_ms || !m->ready)
        return refuse(m, m->ready ? "the master is stopping" : "the master is not ready yet");
    if (pipe2(p, O_CLOEXEC) != 0)
        return refuse(m, strerror(errno));
    pid_t old = getpid(), pid = fork();
    if (pid == 0)
        exec_new_master(m, p[1], old);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return refuse(m, strerror(errno));
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    struct epoll_event ee = { .events = EPOLLIN, .data.u64 = (uint64_t)EV_UPGRADE << 32 };
    epoll_ctl(m->epfd, EPOLL_CTL_ADD, p[0], &ee);
    u->child = pid;
    u->pipe_fd = p[0];
    master_set_health(m, false);    /* /healthz: 503 from the start of an upgrade */
    u->len = 0;
    u->awaiting_exit = false;
    u->deadline_ms = m->now_ms + upgrade_timeout_ms(m);
    log_info("upgrade: started the new master %s, pid %d", m->self_path, (int)pid);
}

static void close_pipe(struct master *m)
{
    struct upgrade *u = &m->upgrade;
    if (u->pipe_fd < 0)
        return;
    epoll_ctl(m->epfd, EPOLL_CTL_DEL, u->pipe_fd, NULL);
    close(u->pipe_fd);
    u->pipe_fd = -1;
}

/* The new master failed: it goes (its workers die with it), we stay. */
static void upgrade_failed(struct master *m, const char *why)
{
    struct upgrade *u = &m->upgrade;
    log_error("upgrade failed, still serving as master %d: %s", (int)getpid(), why);
    record(m, false, why);
    master_set_health(m, true);
    close_pipe(m);
    if (u->child > 0)
        kill(u->child, SIGKILL);    /* reaped by upgrade_reaped */
}

void upgrade_abort(struct master *m, const char *why)
{
    if (m->upgrade.child > 0 && !m->upgrade.handed_over)
        upgrade_failed(m, why);
}

/* "ok": the new master serves. Hand over, drain our workers, exit, leaving
 * the pidfile, the control socket's path and unix listeners' paths to it. */
static void hand_over(struct master *m)
{
    struct upgrade *u = &m->upgrade;
    char msg[64];
    snprintf(msg, sizeof msg, "master %d took over", (int)u->child);
    log_info("upgrade: %s; draining and exiting", msg);
    record(m, true, msg);
    close_pipe(m);
    sdnotify_send(m->sd_fd, "MAINPID=%d\nSTATUS=upgraded: new master %d", (int)u->child,
                  (int)u->child);
    u->handed_over = true;
    u->child = 0;                   /* not ours to wait for any more */
    for (size_t i = 0; i < m->nls; i++)
        m->ls[i].adopted = true;    /* the new master's paths now */
    status_http_stop_listening(&m->shttp);  /* the new master answers on it alone;
                                               clients already here get their answer */
    master_begin_stop(m);
}

void upgrade_on_event(struct master *m)
{
    struct upgrade *u = &m->upgrade;
    ssize_t n = read(u->pipe_fd, u->buf + u->len, sizeof u->buf - 1 - u->len);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n > 0)
        u->len += (size_t)n;
    u->buf[u->len] = '\0';
    char *nl = strchr(u->buf, '\n');
    if (nl) {
        *nl = '\0';
        if (strcmp(u->buf, "ok") == 0)
            hand_over(m);
        else
            upgrade_failed(m, u->buf);
    } else if (u->len == sizeof u->buf - 1) {
        upgrade_failed(m, "the new master's verdict is garbage");
    } else if (n <= 0) {
        close_pipe(m);              /* it is exiting: the verdict comes with its status */
        u->awaiting_exit = true;
    }
}

bool upgrade_reaped(struct master *m, pid_t pid, int status)
{
    struct upgrade *u = &m->upgrade;
    if (!u->child || pid != u->child)
        return false;
    char how[96], why[200];
    master_describe_exit(status, how, sizeof how);
    u->child = 0;
    if (u->pipe_fd >= 0 || u->awaiting_exit) {
        snprintf(why, sizeof why, "the new master %s before it was ready", how);
        upgrade_failed(m, why);
        u->awaiting_exit = false;
    }
    log_info("upgrade: the new master pid %d %s", (int)pid, how);
    return true;
}

void upgrade_tick(struct master *m)
{
    struct upgrade *u = &m->upgrade;
    if (u->child && (u->pipe_fd >= 0 || u->awaiting_exit) && m->now_ms > u->deadline_ms) {
        upgrade_failed(m, "the new master was not ready in time");
        u->awaiting_exit = false;
    }
}

/* --- the new master ------------------------------------------------------ */

static int inherited_fd(const char *name)
{
    const char *v = getenv(name);
    int fd = v ? atoi(v) : -1;
    unsetenv(name);
    if (fd < 3 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        return -1;
    return fd;
}

/* The old master's ticket keys to tlsctx, and the memfd closed at once:
 * nothing this master forks later sees it. */
static void take_ticket_keys(int fd)
{
    unsigned char blob[TLSCTX_HANDOVER_MAX + 1];
    size_t len = 0;
    ssize_t got = 1;
    while (fd >= 0 && got > 0 && len < sizeof blob) {
        got = pread(fd, blob + len, sizeof blob - len, (off_t)len);
        if (got > 0)
            len += (size_t)got;
        else if (got < 0 && errno == EINTR)
            got = 1;
    }
    if (fd >= 0)
        close(fd);
    tlsctx_keys_take(blob, got < 0 ? 0 : len);
    explicit_bzero(blob, sizeof blob);
}

int upgrade_inherit(struct master *m)
{
    const char *from = getenv("PREFORKD_UPGRADE_FROM");
    m->upgrade.from = from ? (pid_t)atoi(from) : 0;
    unsetenv("PREFORKD_UPGRADE_FROM");
    int ready = inherited_fd("PREFORKD_UPGRADE_FD");
    int pidfile = inherited_fd("PREFORKD_UPGRADE_PIDFILE_FD");
    int keys = inherited_fd("PREFORKD_UPGRADE_KEYS_FD");
    if (!m->upgrade.from || ready < 0 || pidfile < 0) {
        if (keys >= 0)
            close(keys);
        return 0;
    }
    take_ticket_keys(keys);
    m->ready_fd = ready;            /* daemon_ready() writes the verdict */
    m->pidfile_fd = pidfile;        /* locked by the old master: the lock is ours too */
    return 1;
}
