/* apppool: supervising app pools from the master. Each pool is a table of
 * processes; every loop turn (apppool_tick) spawns what a slot lacks,
 * checks readiness and watchdog deadlines and escalates stops, as
 * gunicorn's arbiter does, but with heartbeats over pipes and sockets
 * rather than file times. Deploys roll forward on READY and back on a
 * failure before the new generation is complete. */
#include "server/apppool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/log.h"
#include "server/master.h"
#include "workers/app.h"

#define ABORT_GRACE_MS   5000       /* after the watchdog's SIGABRT: SIGKILL */
#define OUTPUT_BUDGET    (256 * 1024) /* log bytes per worker per second */
#define READ_CHUNK       16384
#define DGRAMS_PER_TURN  32
#define SAMPLE_MS        1000

enum channel { CH_NOTIFY, CH_SD, CH_OUT, CH_ERR };

static const char *const state_names[] = { "starting", "ready", "draining", "stopping" };

/* --- configuration copies ------------------------------------------------- */

static char **dup_strv(char *const *v, size_t n)
{
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            for (size_t k = 0; k < i; k++)
                free(out[k]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static void gen_conf_free(struct app_gen_conf *g)
{
    free_strv(g->app.command);
    free_strv(g->app.environment);
    free(g->addrs);
    memset(g, 0, sizeof *g);
}

/* Deep copy of app `idx` of cfg and its listeners' addresses. */
static int gen_conf_copy(const struct config *cfg, size_t idx, struct app_gen_conf *g)
{
    memset(g, 0, sizeof *g);
    g->app = cfg->apps[idx];
    g->app.command = dup_strv(cfg->apps[idx].command, cfg->apps[idx].ncommand);
    g->app.environment = dup_strv(cfg->apps[idx].environment, cfg->apps[idx].nenvironment);
    g->addrs = calloc(cfg->nlistens + 1, sizeof *g->addrs);
    if (!g->app.command || !g->app.environment || !g->addrs) {
        gen_conf_free(g);
        return -1;
    }
    for (size_t i = 0; i < cfg->nlistens; i++)
        if (cfg->listens[i].app == (int)idx)
            g->addrs[g->naddrs++] = cfg->listens[i].addr;
    return 0;
}

/* --- small helpers ---------------------------------------------------------- */

/* snprintf for messages that may be cut on purpose (app output in them). */
__attribute__((format(printf, 3, 4)))
static void cutf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static const struct app_gen_conf *conf_of(const struct app_pool *pool,
                                          const struct app_proc *p)
{
    return p->rollout && pool->rolling ? &pool->next : &pool->cur;
}

static const char *pool_name(const struct app_pool *pool)
{
    return pool->name;
}

static bool alive(const struct app_proc *p)
{
    return p->id != 0;
}

static bool stopping_state(const struct app_proc *p)
{
    return p->state == APP_DRAINING || p->state == APP_STOPPING;
}

static uint64_t ev_key(const struct app_proc *p, enum channel ch)
{
    return ((uint64_t)EV_APP << 32) | ((uint64_t)(p->id & 0x3fffffffu) << 2) | ch;
}

static void close_channel(struct master *m, int *fd)
{
    if (*fd < 0)
        return;
    epoll_ctl(m->epfd, EPOLL_CTL_DEL, *fd, NULL);
    close(*fd);
    *fd = -1;
}

static void close_channels(struct master *m, struct app_proc *p)
{
    close_channel(m, &p->notify_fd);
    close_channel(m, &p->sd_fd);
    close_channel(m, &p->out_fd);
    close_channel(m, &p->err_fd);
}

typedef void (*proc_fn)(struct master *m, struct app_pool *pool, struct app_proc *p,
                        void *arg);

/* fn for every live (not yet reaped) worker of every pool. */
static void each_live_proc(struct master *m, proc_fn fn, void *arg)
{
    for (size_t k = 0; k < m->apps.npools; k++) {
        struct app_pool *pool = &m->apps.pools[k];
        for (size_t i = 0; i < pool->nprocs; i++)
            if (alive(&pool->procs[i]) && pool->procs[i].pid > 0)
                fn(m, pool, &pool->procs[i], arg);
    }
}

/* Send sig to a worker not yet reaped. */
static void signal_proc(struct app_proc *p, int sig)
{
    if (p->pid > 0 && kill(p->pid, sig) != 0 && errno != ESRCH)
        log_warn("kill %d: %s", (int)p->pid, strerror(errno));
}

/* --- spawning ---------------------------------------------------------------- */

static struct app_proc *free_entry(struct app_pool *pool)
{
    for (size_t i = 0; i < pool->nprocs; i++)
        if (!alive(&pool->procs[i]))
            return &pool->procs[i];
    size_t old = pool->nprocs, n = old ? 2 * old : 8;
    struct app_proc *grown = realloc(pool->procs, n * sizeof *grown);
    if (!grown)
        return NULL;
    memset(grown + old, 0, (n - old) * sizeof *grown);
    pool->procs = grown;
    pool->nprocs = n;
    return &pool->procs[old];
}

/* The NOTIFY_SOCKET of one worker: an abstract datagram socket of its own,
 * so every message is attributed to it without credentials. */
static int open_notify_socket(uint32_t id, char *name, size_t cap)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int len = snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1, "preforkd/%d/%u",
                       (int)getpid(), id);
    snprintf(name, cap, "@%s", sun.sun_path + 1);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
    if (bind(fd, (struct sockaddr *)&sun, salen) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Pipes whose master end is non-blocking and whose app end is blocking, as
 * a program expects of its stdout. Both ends close-on-exec: the child
 * dup2()s what it keeps. */
static int app_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    return 0;
}

struct spawn_fds {
    int notify[2], out[2], err[2];
    int sd;
    char sd_name[120];
};

static void close_spawn_fds(struct spawn_fds *f, bool master_ends)
{
    int *ends[] = { &f->notify[1], &f->out[1], &f->err[1],
                    &f->notify[0], &f->out[0], &f->err[0], &f->sd };
    for (size_t i = 0; i < (master_ends ? 7 : 3); i++)
        if (*ends[i] >= 0) {
            close(*ends[i]);
            *ends[i] = -1;
        }
}

static int open_spawn_fds(struct spawn_fds *f, uint32_t id)
{
    f->notify[0] = f->notify[1] = f->out[0] = f->out[1] = f->err[0] = f->err[1] = -1;
    f->sd = open_notify_socket(id, f->sd_name, sizeof f->sd_name);
    if (f->sd < 0 || app_pipe(f->notify) != 0 || app_pipe(f->out) != 0 ||
        app_pipe(f->err) != 0) {
        int saved = errno;
        close_spawn_fds(f, true);
        errno = saved;
        return -1;
    }
    return 0;
}

/* The master's listener fds for a generation's addresses, in its order. */
static size_t find_listen_fds(const struct master *m, const struct app_gen_conf *g,
                              int *fds, const char **addrs)
{
    size_t n = 0;
    for (size_t i = 0; i < g->naddrs; i++)
        for (size_t j = 0; j < m->nls; j++)
            if (m->ls[j].fd >= 0 && address_equal(&m->ls[j].conf.addr, &g->addrs[i])) {
                fds[n] = m->ls[j].fd;
                addrs[n++] = g->addrs[i].text;
                break;
            }
    return n;
}

static __attribute__((noreturn)) void run_app_child(struct master *m,
        const struct app_gen_conf *g, struct spawn_fds *f, int slot, uint32_t gen,
        pid_t master_pid)
{
    int fds[g->naddrs + 1];
    const char *addrs[g->naddrs + 1];
    struct app_spawn sp = {
        .conf = &g->app, .listen_fds = fds, .listen_addrs = addrs,
        .nlisten = find_listen_fds(m, g, fds, addrs),
        .notify_fd = f->notify[1], .out_fd = f->out[1], .err_fd = f->err[1],
        .slot = slot, .gen = gen, .workers = g->app.workers,
        .master_pid = master_pid, .notify_socket = f->sd_name,
    };
    app_exec(&sp);
}

static void watch_channel(struct master *m, struct app_proc *p, int fd, enum channel ch)
{
    struct epoll_event ee = { .events = EPOLLIN, .data.u64 = ev_key(p, ch) };
    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ee) != 0)
        log_error("epoll_ctl app channel: %s", strerror(errno));
}

static void init_proc(struct master *m, struct app_proc *p, struct spawn_fds *f,
                      uint32_t id, pid_t pid)
{
    memset(p, 0, sizeof *p);
    p->id = id;
    p->pid = pid;
    p->notify_fd = f->notify[0];
    p->sd_fd = f->sd;
    p->out_fd = f->out[0];
    p->err_fd = f->err[0];
    p->started_ms = p->seen_ms = p->watchdog_ms = m->now_ms;
    p->started_wall = time(NULL);
    watch_channel(m, p, p->notify_fd, CH_NOTIFY);
    watch_channel(m, p, p->sd_fd, CH_SD);
    watch_channel(m, p, p->out_fd, CH_OUT);
    watch_channel(m, p, p->err_fd, CH_ERR);
}

static void mark_ready(struct master *m, struct app_pool *pool, struct app_proc *p);

static struct app_proc *spawn_proc(struct master *m, struct app_pool *pool, int slot,
                                   bool rollout)
{
    const struct app_gen_conf *g = rollout ? &pool->next : &pool->cur;
    uint32_t gen = rollout ? pool->gen + 1 : pool->gen, id = ++m->apps.next_id;
    struct app_proc *p = free_entry(pool);
    struct spawn_fds f;
    if (!p || open_spawn_fds(&f, id) != 0) {
        log_error("app %s/%d: cannot spawn: %s", g->app.name, slot, strerror(errno));
        return NULL;
    }
    pid_t master_pid = getpid();    /* taken before fork: the child checks it */
    pid_t pid = fork();
    if (pid == 0)
        run_app_child(m, g, &f, slot, gen, master_pid);
    close_spawn_fds(&f, false);
    if (pid > 0)
        setpgid(pid, pid);          /* as the child does (EACCES once it has exec'd) */
    if (pid < 0) {
        log_error("app %s/%d: fork: %s", g->app.name, slot, strerror(errno));
        close(f.notify[0]); close(f.out[0]); close(f.err[0]); close(f.sd);
        return NULL;
    }
    init_proc(m, p, &f, id, pid);
    p->slot = slot;
    p->gen = gen;
    p->rollout = rollout;
    log_info("app %s/%d gen %u pid %d started", g->app.name, slot, gen, (int)pid);
    if (g->app.ready == READY_EXEC)
        mark_ready(m, pool, p);
    return p;
}

/* --- life cycle ---------------------------------------------------------------- */

/* Ask a worker to stop: its stop signal now, SIGKILL at graceful_timeout. */
static void stop_proc(struct master *m, struct app_pool *pool, struct app_proc *p,
                      enum app_state why)
{
    if (stopping_state(p))
        return;
    p->state = why;
    p->stop_ms = m->now_ms;
    signal_proc(p, conf_of(pool, p)->app.stop_signal);
}

/* The worker that p takes over from, if any: the same slot's recycled
 * worker, or in a smooth deploy the old generation's. */
static struct app_proc *replaced_by(struct app_pool *pool, const struct app_proc *p)
{
    bool smooth = pool->next.app.reload == RELOAD_SMOOTH;
    for (size_t i = 0; i < pool->nprocs; i++) {
        struct app_proc *o = &pool->procs[i];
        if (!alive(o) || o == p || o->slot != p->slot || stopping_state(o))
            continue;
        if (o->recycling && o->gen == p->gen && !o->rollout)
            return o;
        if (p->rollout && smooth && !o->rollout)
            return o;
    }
    return NULL;
}

static size_t count_rollout(const struct app_pool *pool, bool ready_only)
{
    size_t n = 0;
    for (size_t i = 0; i < pool->nprocs; i++) {
        const struct app_proc *p = &pool->procs[i];
        if (alive(p) && p->rollout && !stopping_state(p) &&
            (!ready_only || p->state == APP_READY))
            n++;
    }
    return n;
}

/* Workers of a rolled-back deploy still running: they hold the shared
 * sockets and might still accept, so a rollback's verdict waits for them. */
static bool cancelled_alive(const struct master *m)
{
    for (size_t k = 0; k < m->apps.npools; k++)
        for (size_t i = 0; i < m->apps.pools[k].nprocs; i++)
            if (m->apps.pools[k].procs[i].id && m->apps.pools[k].procs[i].cancelled)
                return true;
    return false;
}

/* No pool is rolling any more: the reload's verdict is known. */
static void maybe_conclude_reload(struct master *m)
{
    if (!m->apps.verdict_pending || !apppool_settled(m) || cancelled_alive(m))
        return;
    m->apps.verdict_pending = false;
    if (m->apps.verdict[0]) {
        m->last_reload = RELOAD_ROLLED_BACK;
        cutf(m->last_reload_msg, sizeof m->last_reload_msg, "%s", m->apps.verdict);
        log_error("reload rolled back: %s", m->apps.verdict);
    } else {
        m->last_reload = RELOAD_OK;
        log_info("reload: every app pool is on its new generation");
    }
}

/* Every worker of the new generation is ready: it becomes the running one
 * and whatever is left of the old stops. */
static void commit_rollout(struct master *m, struct app_pool *pool)
{
    for (size_t i = 0; i < pool->nprocs; i++) {
        struct app_proc *p = &pool->procs[i];
        if (alive(p) && !p->rollout)
            stop_proc(m, pool, p, APP_DRAINING);
    }
    gen_conf_free(&pool->cur);
    pool->cur = pool->next;
    memset(&pool->next, 0, sizeof pool->next);
    pool->gen++;
    pool->rolling = false;
    pool->crash_streak = 0;
    for (size_t i = 0; i < pool->nprocs; i++)
        pool->procs[i].rollout = false;
    log_info("app %s: generation %u ready with %d workers", pool_name(pool), pool->gen,
             pool->cur.app.workers);
    maybe_conclude_reload(m);
}

static void mark_ready(struct master *m, struct app_pool *pool, struct app_proc *p)
{
    if (p->state != APP_STARTING)
        return;
    p->state = APP_READY;
    p->ready_ms = p->watchdog_ms = m->now_ms;
    if (!p->rollout)
        pool->crash_streak = 0;     /* a respawn came up: the loop is over */
    log_info("app %s/%d gen %u pid %d ready after %.3fs", pool_name(pool), p->slot,
             p->gen, (int)p->pid, (double)(m->now_ms - p->started_ms) / 1000.0);
    struct app_proc *old = replaced_by(pool, p);
    if (old)
        stop_proc(m, pool, old, APP_DRAINING);
    if (p->rollout && pool->rolling &&
        count_rollout(pool, true) == (size_t)pool->next.app.workers)
        commit_rollout(m, pool);
}

/* A deploy's workers stop and the running generation stays; spawn_missing
 * refills any slot a smooth deploy had already taken over. */
static void cancel_rollout(struct master *m, struct app_pool *pool)
{
    for (size_t i = 0; i < pool->nprocs; i++) {
        struct app_proc *p = &pool->procs[i];
        if (alive(p) && p->rollout) {
            stop_proc(m, pool, p, APP_DRAINING);
            p->rollout = false;     /* stopping; stop_signal came from next */
            p->cancelled = true;
        }
    }
    pool->rolling = false;
    gen_conf_free(&pool->next);
    if (pool->gen == 0)
        pool->removed = true;       /* nothing ran before it: the pool goes */
}

/* The deploy failed. At start-up the master's start fails with the reason;
 * later the reload's verdict says it. */
static void rollback(struct master *m, struct app_pool *pool, const char *why)
{
    char msg[480];
    cutf(msg, sizeof msg, "pool %s: %s", pool_name(pool), why);
    log_error("app %s: deploy of generation %u rolled back: %s", pool_name(pool),
              pool->gen + 1, why);
    cancel_rollout(m, pool);
    if (!m->ready) {
        master_abort_start(m, msg);
        return;
    }
    if (!m->apps.verdict[0])
        cutf(m->apps.verdict, sizeof m->apps.verdict, "%s", msg);
    maybe_conclude_reload(m);
}

/* "worker 1 exited with status 3 before READY=1 (last line: ...)". */
static void failure_reason(const struct app_proc *p, const char *what, char *buf, size_t cap)
{
    if (p->last_line[0])
        cutf(buf, cap, "worker %d %s (last line: %s)", p->slot, what, p->last_line);
    else
        cutf(buf, cap, "worker %d %s", p->slot, what);
}

/* Back-off: a worker of the running generation that dies young without
 * ever being ready is a crash loop; one that was ready is replaced now. */
static void schedule_respawn(struct master *m, struct app_pool *pool,
                             const struct app_proc *p)
{
    int64_t lived = m->now_ms - p->started_ms;
    if (p->ready_ms || lived >= MASTER_EARLY_DEATH_MS) {
        pool->crash_streak = 0;
        pool->respawn_at_ms = m->now_ms;
        return;
    }
    pool->crash_streak++;
    pool->respawn_at_ms = m->now_ms + master_backoff_ms(pool->crash_streak);
    log_warn("app %s: crash loop: %u workers in a row died within %d ms of start, never "
             "ready; respawning in %lld ms", pool_name(pool), pool->crash_streak,
             MASTER_EARLY_DEATH_MS, (long long)(pool->respawn_at_ms - m->now_ms));
}

/* --- output and notify channels --------------------------------------------- */

static void log_output_line(struct app_pool *pool, struct app_proc *p, bool is_err,
                            const char *line, size_t n, bool cut)
{
    if (is_err) {
        size_t keep = n < sizeof p->last_line - 1 ? n : sizeof p->last_line - 1;
        memcpy(p->last_line, line, keep);
        p->last_line[keep] = '\0';
    }
    if (p->out_bytes_this_s > OUTPUT_BUDGET) {
        p->dropped += n + 1;
        return;
    }
    p->out_bytes_this_s += n + 1;
    log_msg(is_err ? LOG_LVL_WARN : LOG_LVL_INFO, "app %s/%d gen %u pid %d: %.*s%s",
            pool_name(pool), p->slot, p->gen, (int)p->pid, (int)n, line,
            cut ? " [line cut]" : "");
}

/* Split bytes into lines; a line longer than APP_LINE_MAX is logged in
 * pieces, each marked, rather than held without bound. */
static void take_output(struct app_pool *pool, struct app_proc *p, bool is_err,
                        const char *data, size_t n)
{
    struct linebuf *lb = is_err ? &p->err : &p->out;
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            if (lb->len || !lb->overflowed)
                log_output_line(pool, p, is_err, lb->buf, lb->len, false);
            lb->len = 0;
            lb->overflowed = false;
            continue;
        }
        if (lb->len == sizeof lb->buf) {
            log_output_line(pool, p, is_err, lb->buf, lb->len, true);
            lb->len = 0;
            lb->overflowed = true;
        }
        lb->buf[lb->len++] = data[i];
    }
}

/* Read what the pipe has now (bounded per turn; level-triggered epoll
 * brings the rest). EOF or an error closes the channel. Returns whether
 * bytes came. */
static bool on_output(struct master *m, struct app_pool *pool, struct app_proc *p,
                      bool is_err)
{
    int *fd = is_err ? &p->err_fd : &p->out_fd;
    char buf[READ_CHUNK];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) {
        take_output(pool, p, is_err, buf, (size_t)n);
        return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        struct linebuf *lb = is_err ? &p->err : &p->out;
        if (lb->len)
            log_output_line(pool, p, is_err, lb->buf, lb->len, false);
        lb->len = 0;
        close_channel(m, fd);
    }
    return false;
}

/* After the exit: what the app wrote last is still in the pipes. */
static void drain_output(struct master *m, struct app_pool *pool, struct app_proc *p)
{
    for (int round = 0; round < 64 && p->err_fd >= 0; round++)
        if (!on_output(m, pool, p, true))
            break;
    for (int round = 0; round < 64 && p->out_fd >= 0; round++)
        if (!on_output(m, pool, p, false))
            break;
}

static void note_garbage(struct app_pool *pool, struct app_proc *p, const char *what)
{
    if (p->garbage++ == 0)
        log_warn("app %s/%d pid %d: %s on its notify channel, ignored (said once per "
                 "worker)", pool_name(pool), p->slot, (int)p->pid, what);
}

static void apply_notify(struct master *m, struct app_pool *pool, struct app_proc *p,
                         const struct notify_msg *msg)
{
    if (msg->bad)
        note_garbage(pool, p, "malformed lines");
    if (!msg->known)
        return;
    p->seen_ms = m->now_ms;
    if (msg->has_status)
        snprintf(p->app_status, sizeof p->app_status, "%s", msg->status);
    if (msg->has_requests) {
        p->requests = msg->requests;
        p->has_requests = true;
    }
    if (msg->has_active) {
        p->active = msg->active;
        p->has_active = true;
    }
    if (msg->watchdog)
        p->watchdog_ms = m->now_ms;
    if (msg->has_errno)
        cutf(p->last_line, sizeof p->last_line, "ERRNO=%d (%s)", msg->errno_value,
                 strerror(msg->errno_value));
    /* READY=1 counts in notify mode only: "delay" and "exec" say when. */
    if (msg->ready && conf_of(pool, p)->app.ready == READY_NOTIFY)
        mark_ready(m, pool, p);
    if (msg->stopping && !stopping_state(p)) {
        p->state = APP_STOPPING;    /* it leaves by itself: replace it now */
        p->stop_ms = m->now_ms;
    }
}

/* Native pipe: lines, each a message (a write of <= PIPE_BUF is atomic, so
 * the lines of several processes never interleave). */
static void on_notify_pipe(struct master *m, struct app_pool *pool, struct app_proc *p)
{
    struct linebuf *lb = &p->notify;
    char buf[READ_CHUNK];
    ssize_t n = read(p->notify_fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close_channel(m, &p->notify_fd);
        return;
    }
    for (ssize_t i = 0; i < n && alive(p); i++) {
        if (buf[i] != '\n') {
            if (lb->len < sizeof lb->buf)
                lb->buf[lb->len++] = buf[i];
            else
                lb->overflowed = true;
            continue;
        }
        struct notify_msg msg;
        if (lb->overflowed) {
            note_garbage(pool, p, "an overlong line");
        } else {
            notify_parse(lb->buf, lb->len, &msg);
            apply_notify(m, pool, p, &msg);
        }
        lb->len = 0;
        lb->overflowed = false;
    }
}

/* NOTIFY_SOCKET datagrams, a bounded number per turn. */
static void on_notify_socket(struct master *m, struct app_pool *pool, struct app_proc *p)
{
    char buf[NOTIFY_MSG_MAX];
    for (int i = 0; i < DGRAMS_PER_TURN && p->sd_fd >= 0; i++) {
        ssize_t n = recv(p->sd_fd, buf, sizeof buf, MSG_TRUNC | MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                close_channel(m, &p->sd_fd);
            return;
        }
        struct notify_msg msg;
        if ((size_t)n > sizeof buf) {
            note_garbage(pool, p, "an oversized datagram");
            continue;
        }
        notify_parse(buf, (size_t)n, &msg);
        apply_notify(m, pool, p, &msg);
    }
}

/* --- events and exits ------------------------------------------------------------ */

static struct app_proc *find_proc(struct master *m, bool (*match)(const struct app_proc *,
                                  uint64_t), uint64_t what, struct app_pool **pool_out)
{
    for (size_t k = 0; k < m->apps.npools; k++) {
        struct app_pool *pool = &m->apps.pools[k];
        for (size_t i = 0; i < pool->nprocs; i++) {
            if (alive(&pool->procs[i]) && match(&pool->procs[i], what)) {
                *pool_out = pool;
                return &pool->procs[i];
            }
        }
    }
    return NULL;
}

static bool id_matches(const struct app_proc *p, uint64_t id)
{
    return (p->id & 0x3fffffffu) == id;
}

static bool pid_matches(const struct app_proc *p, uint64_t pid)
{
    return p->pid == (pid_t)pid;
}

void apppool_on_event(struct master *m, uint32_t key, uint32_t events)
{
    struct app_pool *pool;
    struct app_proc *p = find_proc(m, id_matches, key >> 2, &pool);
    (void)events;
    if (!p)
        return;
    switch ((enum channel)(key & 3)) {
    case CH_NOTIFY: on_notify_pipe(m, pool, p); break;
    case CH_SD:     on_notify_socket(m, pool, p); break;
    case CH_OUT:    on_output(m, pool, p, false); break;
    case CH_ERR:    on_output(m, pool, p, true); break;
    }
}

/* What an exit means: a failed deploy, an expected stop, or a crash of the
 * running generation (respawned, with back-off when it is a loop). */
static void judge_exit(struct master *m, struct app_pool *pool, struct app_proc *p,
                       const char *how)
{
    char why[400], what[200];
    if (p->rollout && pool->rolling) {
        cutf(what, sizeof what, "%s %s", how,
                 p->state == APP_READY ? "before the deploy completed" : "before READY=1");
        failure_reason(p, what, why, sizeof why);
        rollback(m, pool, why);
        return;
    }
    if (stopping_state(p) || m->stopping || pool->removed)
        return;
    pool->restarts++;
    if (!m->ready && !p->ready_ms) {
        cutf(what, sizeof what, "%s during start-up", how);
        failure_reason(p, what, why, sizeof why);
        char msg[480];
        cutf(msg, sizeof msg, "pool %s: %s", pool_name(pool), why);
        master_abort_start(m, msg);
        return;
    }
    schedule_respawn(m, pool, p);
}

static void proc_exited(struct master *m, struct app_pool *pool, struct app_proc *p,
                        int status)
{
    char how[96];
    drain_output(m, pool, p);
    master_describe_exit(status, how, sizeof how);
    bool expected = stopping_state(p) || m->stopping;
    log_msg(expected ? LOG_LVL_INFO : LOG_LVL_WARN,
            "app %s/%d gen %u pid %d %s after %.3fs", pool_name(pool), p->slot,
            p->gen, (int)p->pid, how, (double)(m->now_ms - p->started_ms) / 1000.0);
    if (p->dropped)
        log_warn("app %s/%d pid %d: %llu bytes of output dropped (over %d bytes/s)",
                 pool_name(pool), p->slot, (int)p->pid, (unsigned long long)p->dropped,
                 OUTPUT_BUDGET);
    pool->last_exit_pid = p->pid;
    pool->last_exit_status = status;
    pool->last_exit_wall = time(NULL);
    pool->retired_requests += p->requests;
    p->pid = 0;                     /* reaped: never signalled again */
    judge_exit(m, pool, p, how);
    close_channels(m, p);
    p->id = 0;
}

/* A worker's own processes (its process group) do not outlive it: the stop
 * signal went to the worker alone, which had its chance to stop them
 * (systemd's KillMode=mixed). Left alone they would keep the listening
 * sockets, accepting connections nobody answers. Before any respawn: the
 * group's id cannot be a new process's while one of it is alive. */
static void kill_leftovers(const struct app_pool *pool, const struct app_proc *p)
{
    if (kill(-p->pid, SIGKILL) == 0)
        log_warn("app %s/%d pid %d: processes it started were still running; SIGKILL to "
                 "its process group", pool_name(pool), p->slot, (int)p->pid);
}

bool apppool_reaped(struct master *m, pid_t pid, int status)
{
    struct app_pool *pool;
    struct app_proc *p = find_proc(m, pid_matches, (uint64_t)pid, &pool);
    if (!p)
        return false;
    kill_leftovers(pool, p);
    proc_exited(m, pool, p, status);
    return true;
}

/* --- deadlines ---------------------------------------------------------------------- */

/* A starting worker past its readiness deadline: a failed deploy, or a
 * respawn that never came up (killed, and its exit backs off). */
static void check_start(struct master *m, struct app_pool *pool, struct app_proc *p)
{
    const struct app_conf *c = &conf_of(pool, p)->app;
    int64_t age = m->now_ms - p->started_ms;
    if (c->ready == READY_DELAY && age >= c->ready_delay_ms) {
        mark_ready(m, pool, p);
        return;
    }
    if (c->ready != READY_NOTIFY || age <= (int64_t)c->ready_timeout * 1000 || p->killed)
        return;
    char what[96], why[400];
    snprintf(what, sizeof what, "sent no READY=1 within ready_timeout (%ds)", c->ready_timeout);
    failure_reason(p, what, why, sizeof why);
    log_error("app %s/%d pid %d: %s; SIGKILL", pool_name(pool), p->slot, (int)p->pid, why);
    signal_proc(p, SIGKILL);
    p->killed = true;
    if (p->rollout && pool->rolling)
        rollback(m, pool, why);
}

/* Watchdog: overdue is "unresponsive", SIGABRT (a core to look at), then
 * SIGKILL; the exit is then handled as a crash. */
static void check_watchdog(struct master *m, struct app_pool *pool, struct app_proc *p)
{
    int64_t limit = (int64_t)conf_of(pool, p)->app.watchdog * 1000;
    if (limit <= 0 || p->state != APP_READY || p->killed)
        return;
    if (!p->aborted && m->now_ms - p->watchdog_ms > limit) {
        log_error("app %s/%d pid %d unresponsive: no WATCHDOG=1 for %.1fs (watchdog %llds); "
                  "SIGABRT", pool_name(pool), p->slot, (int)p->pid,
                  (double)(m->now_ms - p->watchdog_ms) / 1000.0, (long long)limit / 1000);
        signal_proc(p, SIGABRT);
        p->aborted = true;
        p->abort_ms = m->now_ms;
    } else if (p->aborted && m->now_ms - p->abort_ms > ABORT_GRACE_MS) {
        log_error("app %s/%d pid %d still there %d ms after SIGABRT; SIGKILL",
                  pool_name(pool), p->slot, (int)p->pid, ABORT_GRACE_MS);
        signal_proc(p, SIGKILL);
        p->killed = true;
    }
}

static void check_stop(struct master *m, struct app_pool *pool, struct app_proc *p)
{
    int64_t limit = (int64_t)m->cfg.graceful_timeout * 1000;
    if (!stopping_state(p) || p->killed || m->now_ms - p->stop_ms <= limit)
        return;
    log_warn("app %s/%d pid %d still running %d s after its stop signal; SIGKILL",
             pool_name(pool), p->slot, (int)p->pid, m->cfg.graceful_timeout);
    signal_proc(p, SIGKILL);
    p->killed = true;
}

/* CPU seconds and resident bytes from /proc/PID/stat; false if gone. */
static bool sample_usage(struct app_proc *p)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *r = strrchr(buf, ')');
    unsigned long long ut, st;
    long rss_pages;
    if (!r || sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
                     "%*d %*d %*d %*d %*d %*d %*u %*u %ld", &ut, &st, &rss_pages) != 3)
        return false;
    p->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    p->rss = rss_pages > 0 ? (uint64_t)rss_pages * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
    return true;
}

/* Above max_rss: a replacement starts in the slot; this one stops when the
 * replacement is ready (mark_ready), so capacity never dips. */
static void check_rss(struct app_pool *pool, struct app_proc *p)
{
    unsigned long long limit = conf_of(pool, p)->app.max_rss;
    if (!limit || p->recycling || p->rollout || p->state != APP_READY || p->rss <= limit)
        return;
    p->recycling = true;
    pool->recycles++;
    log_warn("app %s/%d pid %d: resident memory %llu bytes is above max_rss %llu; "
             "recycling it once a replacement is ready", pool_name(pool), p->slot,
             (int)p->pid, (unsigned long long)p->rss, limit);
}

/* --- spawning what is missing -------------------------------------------------------- */

/* Whether slot has a worker serving it (or about to): for the running
 * generation, one not stopping or recycling, or a ready deploy worker that
 * took it over; for a deploy, any of its own. */
static bool slot_covered(const struct app_pool *pool, int slot, bool rollout)
{
    for (size_t i = 0; i < pool->nprocs; i++) {
        const struct app_proc *p = &pool->procs[i];
        if (!alive(p) || p->slot != slot || stopping_state(p))
            continue;
        if (rollout ? p->rollout
                    : (!p->rollout && !p->recycling) || (p->rollout && p->state == APP_READY))
            return true;
    }
    return false;
}

static void spawn_missing(struct master *m, struct app_pool *pool)
{
    if (m->stopping || pool->removed)
        return;
    if (pool->rolling)
        for (int s = 0; s < pool->next.app.workers && pool->rolling; s++)
            if (!slot_covered(pool, s, true))
                spawn_proc(m, pool, s, true);
    if (pool->gen == 0 || pool->respawn_at_ms > m->now_ms)
        return;
    for (int s = 0; s < pool->cur.app.workers; s++)
        if (!slot_covered(pool, s, false))
            spawn_proc(m, pool, s, false);
}

/* Slots above a smaller count (scale down) stop. */
static void trim_slots(struct master *m, struct app_pool *pool)
{
    for (size_t i = 0; i < pool->nprocs; i++) {
        struct app_proc *p = &pool->procs[i];
        if (alive(p) && !p->rollout && p->slot >= pool->cur.app.workers)
            stop_proc(m, pool, p, APP_DRAINING);
    }
}

static void check_procs(struct master *m, struct app_pool *pool, bool sample)
{
    for (size_t i = 0; i < pool->nprocs; i++) {
        struct app_proc *p = &pool->procs[i];
        if (!alive(p) || p->pid <= 0)
            continue;
        if (sample) {
            p->out_bytes_this_s = 0;
            if (sample_usage(p))
                check_rss(pool, p);
        }
        if (p->state == APP_STARTING)
            check_start(m, pool, p);
        else if (p->state == APP_READY)
            check_watchdog(m, pool, p);
        else
            check_stop(m, pool, p);
    }
}

static size_t pool_live(const struct app_pool *pool)
{
    size_t n = 0;
    for (size_t i = 0; i < pool->nprocs; i++)
        n += alive(&pool->procs[i]);
    return n;
}

static void pool_free(struct app_pool *pool)
{
    gen_conf_free(&pool->cur);
    gen_conf_free(&pool->next);
    free(pool->procs);
}

/* Pools removed from the configuration go once their last worker has. */
static void forget_removed(struct master *m)
{
    struct apppools *a = &m->apps;
    for (size_t k = 0; k < a->npools; ) {
        if (a->pools[k].removed && pool_live(&a->pools[k]) == 0) {
            pool_free(&a->pools[k]);
            memmove(&a->pools[k], &a->pools[k + 1], (a->npools - k - 1) * sizeof *a->pools);
            a->npools--;
        } else {
            k++;
        }
    }
}

void apppool_tick(struct master *m)
{
    bool sample = m->now_ms >= m->apps.next_sample_ms;
    if (sample)
        m->apps.next_sample_ms = m->now_ms + SAMPLE_MS;
    for (size_t k = 0; k < m->apps.npools; k++) {
        check_procs(m, &m->apps.pools[k], sample);
        spawn_missing(m, &m->apps.pools[k]);
    }
    forget_removed(m);
    maybe_conclude_reload(m);
}

static void shift(int64_t *t, int64_t by, int64_t now)
{
    *t = *t + by < now ? *t + by : now;
}

static void forgive_proc(struct master *m, struct app_pool *pool, struct app_proc *p,
                         void *late)
{
    int64_t by = *(int64_t *)late;
    (void)pool;
    shift(&p->watchdog_ms, by, m->now_ms);
    shift(&p->stop_ms, by, m->now_ms);
    shift(&p->abort_ms, by, m->now_ms);
    if (p->state == APP_STARTING)
        shift(&p->started_ms, by, m->now_ms);   /* its ready_timeout */
}

void apppool_forgive(struct master *m, int64_t late_ms)
{
    each_live_proc(m, forgive_proc, &late_ms);
}

int64_t apppool_next_wakeup(const struct master *m, int64_t next)
{
    for (size_t k = 0; k < m->apps.npools; k++) {
        const struct app_pool *pool = &m->apps.pools[k];
        if (pool->gen && pool->respawn_at_ms > m->now_ms && pool->respawn_at_ms < next)
            next = pool->respawn_at_ms;
        for (size_t i = 0; i < pool->nprocs; i++) {
            const struct app_proc *p = &pool->procs[i];
            const struct app_conf *c = &conf_of(pool, p)->app;
            if (alive(p) && p->state == APP_STARTING && c->ready == READY_DELAY &&
                p->started_ms + c->ready_delay_ms < next)
                next = p->started_ms + c->ready_delay_ms;
        }
    }
    return next < m->apps.next_sample_ms || m->apps.npools == 0 ? next
                                                                : m->apps.next_sample_ms;
}

/* --- pools: start, deploy, stop ------------------------------------------------------- */

static struct app_pool *find_pool(struct master *m, const char *name)
{
    for (size_t k = 0; k < m->apps.npools; k++)
        if (!m->apps.pools[k].removed && strcmp(pool_name(&m->apps.pools[k]), name) == 0)
            return &m->apps.pools[k];
    return NULL;
}

/* Start rolling app idx of m->cfg into pool: its next generation. A deploy
 * still under way is superseded (its workers stop; a reload is the
 * operator's latest word). */
static int begin_rollout(struct master *m, struct app_pool *pool, size_t idx)
{
    if (pool->rolling) {
        log_warn("app %s: the deploy of generation %u is superseded by a newer reload",
                 pool_name(pool), pool->gen + 1);
        cancel_rollout(m, pool);
        pool->removed = false;
    }
    if (gen_conf_copy(&m->cfg, idx, &pool->next) != 0) {
        log_error("app %s: out of memory for the deploy", m->cfg.apps[idx].name);
        return -1;
    }
    pool->rolling = true;
    log_info("app %s: deploying generation %u (%d workers, reload %s)", pool_name(pool),
             pool->gen + 1, pool->next.app.workers,
             pool->next.app.reload == RELOAD_SMOOTH ? "smooth" : "fleet");
    spawn_missing(m, pool);
    return 0;
}

static struct app_pool *add_pool(struct master *m, const char *name)
{
    struct apppools *a = &m->apps;
    struct app_pool *grown = realloc(a->pools, (a->npools + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    a->pools = grown;
    memset(&a->pools[a->npools], 0, sizeof *a->pools);
    snprintf(a->pools[a->npools].name, sizeof a->pools[a->npools].name, "%s", name);
    return &a->pools[a->npools++];
}

/* The cgroup v2 directory of this process ("0::/path" in /proc/self/cgroup)
 * under the first mount that has it, or "" when there is none. */
static void own_cgroup_dir(char *dir, size_t cap)
{
    static const char *const roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
    char line[512] = "";
    FILE *f = fopen("/proc/self/cgroup", "re");
    dir[0] = '\0';
    while (f && fgets(line, sizeof line, f) && strncmp(line, "0::", 3) != 0)
        line[0] = '\0';
    if (f)
        fclose(f);
    line[strcspn(line, "\n")] = '\0';
    for (size_t i = 0; line[0] && i < sizeof roots / sizeof roots[0] && !dir[0]; i++) {
        char probe[PATH_MAX];
        snprintf(probe, sizeof probe, "%s%s/cgroup.controllers", roots[i], line + 3);
        if (access(probe, R_OK) == 0)
            cutf(dir, cap, "%s%s", roots[i], line + 3);
    }
}

/* max_rss is enforced by sampling; say once whether the machine would
 * also allow a kernel limit (a delegated cgroup v2 memory controller). */
static void report_memory_limits(const struct config *cfg)
{
    bool wanted = false;
    for (size_t i = 0; i < cfg->napps; i++)
        wanted = wanted || cfg->apps[i].max_rss;
    if (!wanted)
        return;
    char dir[PATH_MAX], path[PATH_MAX + 32], ctl[256] = "";
    own_cgroup_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/cgroup.controllers", dir);
    FILE *f = dir[0] ? fopen(path, "re") : NULL;
    if (f && !fgets(ctl, sizeof ctl, f))
        ctl[0] = '\0';
    if (f)
        fclose(f);
    bool memory = strstr(ctl, "memory") != NULL;
    log_info("max_rss: enforced by sampling each app worker's /proc/PID/stat once a second "
             "and replacing it; cgroup v2 memory controller %s%s%s", memory ? "present at " :
             "not delegated here", memory ? dir : "", memory ? " (not used yet)" :
             " (no kernel limit; sampling only)");
}

int apppool_start(struct master *m)
{
    report_memory_limits(&m->cfg);
    for (size_t i = 0; i < m->cfg.napps; i++) {
        struct app_pool *pool = add_pool(m, m->cfg.apps[i].name);
        if (!pool || begin_rollout(m, pool, i) != 0)
            return -1;
    }
    return 0;
}

void apppool_reload(struct master *m)
{
    m->apps.verdict[0] = '\0';
    for (size_t k = 0; k < m->apps.npools; k++) {
        struct app_pool *pool = &m->apps.pools[k];
        bool kept = false;
        for (size_t i = 0; i < m->cfg.napps; i++)
            kept = kept || strcmp(m->cfg.apps[i].name, pool_name(pool)) == 0;
        if (kept || pool->removed)
            continue;
        log_info("app %s: no longer configured; stopping its workers", pool_name(pool));
        if (pool->rolling)
            cancel_rollout(m, pool);
        pool->removed = true;
        for (size_t i = 0; i < pool->nprocs; i++)
            if (alive(&pool->procs[i]))
                stop_proc(m, pool, &pool->procs[i], APP_DRAINING);
    }
    for (size_t i = 0; i < m->cfg.napps; i++) {
        struct app_pool *pool = find_pool(m, m->cfg.apps[i].name);
        if (!pool)
            pool = add_pool(m, m->cfg.apps[i].name);
        if (!pool || begin_rollout(m, pool, i) != 0)
            snprintf(m->apps.verdict, sizeof m->apps.verdict, "pool %s: out of memory",
                     m->cfg.apps[i].name);
    }
    m->apps.verdict_pending = true;
    maybe_conclude_reload(m);
}

static void stop_for_master(struct master *m, struct app_pool *pool, struct app_proc *p,
                            void *now)
{
    if (!*(bool *)now) {
        stop_proc(m, pool, p, APP_STOPPING);
        return;
    }
    signal_proc(p, SIGINT);         /* most programs' "quit now" */
    p->state = APP_STOPPING;
    p->stop_ms = m->now_ms;
}

void apppool_stop(struct master *m, bool now)
{
    each_live_proc(m, stop_for_master, &now);
}

static void kill_at_deadline(struct master *m, struct app_pool *pool, struct app_proc *p,
                             void *arg)
{
    (void)m; (void)arg;
    log_warn("app %s/%d pid %d still running at the stop deadline; SIGKILL",
             pool_name(pool), p->slot, (int)p->pid);
    signal_proc(p, SIGKILL);
    p->killed = true;
}

void apppool_kill_all(struct master *m)
{
    each_live_proc(m, kill_at_deadline, NULL);
}

size_t apppool_live(const struct master *m)
{
    size_t n = 0;
    for (size_t k = 0; k < m->apps.npools; k++)
        n += pool_live(&m->apps.pools[k]);
    return n;
}

bool apppool_settled(const struct master *m)
{
    for (size_t k = 0; k < m->apps.npools; k++)
        if (m->apps.pools[k].rolling)
            return false;
    return true;
}

static void close_in_child(struct master *m, struct app_pool *pool, struct app_proc *p,
                           void *arg)
{
    (void)m; (void)pool; (void)arg;
    int fds[] = { p->notify_fd, p->sd_fd, p->out_fd, p->err_fd };
    for (size_t j = 0; j < sizeof fds / sizeof fds[0]; j++)
        if (fds[j] >= 0)
            close(fds[j]);
}

void apppool_close_in_child(struct master *m)
{
    each_live_proc(m, close_in_child, NULL);
}

void apppool_scale(struct master *m, const char *name, long n, struct sbuf *out)
{
    struct app_pool *pool = find_pool(m, name);
    if (!pool || pool->gen == 0) {
        sbuf_printf(out, "error: no running app pool \"%s\"\n", name);
        return;
    }
    if (n < 1 || n > 1024) {
        sbuf_printf(out, "error: scale takes a worker count from 1 to 1024\n");
        return;
    }
    pool->cur.app.workers = (int)n;
    trim_slots(m, pool);
    spawn_missing(m, pool);
    log_info("app %s: worker count now %ld", pool_name(pool), n);
    sbuf_printf(out, "ok: pool %s: %ld workers\n", pool_name(pool), n);
}

void apppool_free(struct master *m)
{
    for (size_t k = 0; k < m->apps.npools; k++) {
        struct app_pool *pool = &m->apps.pools[k];
        for (size_t i = 0; i < pool->nprocs; i++)
            if (alive(&pool->procs[i]))
                close_channels(m, &pool->procs[i]);
        pool_free(pool);
    }
    free(m->apps.pools);
    memset(&m->apps, 0, sizeof m->apps);
}

const char *apppool_state_name(const struct master *m, const struct app_pool *pool,
                               const struct app_proc *p)
{
    int64_t limit = (int64_t)conf_of(pool, p)->app.watchdog * 1000;
    if (p->state == APP_READY && (p->aborted ||
        (limit > 0 && m->now_ms - p->watchdog_ms > limit)))
        return "unresponsive";
    return state_names[p->state];
}
