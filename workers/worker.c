/* worker: the per-process event loop. Listeners are shared by every worker
 * with EPOLLEXCLUSIVE (no thundering herd) and re-added every few accepts so
 * the kernel's LIFO wake-up order does not hand one worker everything. */
#include "workers/worker.h"

#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"
#include "server/percpu.h"
#include "workers/chat.h"
#include "workers/echo.h"
#include "workers/http.h"
#include "workers/iplimit.h"
#include "workers/loadboard.h"
#include "workers/proxy.h"
#include "workers/tls.h"

#define ACCEPT_BATCH      16    /* accepts per wake-up */
#define REORDER_EVERY     16    /* listener wake-ups between re-orders */
#define EMFILE_PAUSE_MS   1000  /* out of descriptors: stop accepting */
#define FAIR_SLACK        8     /* connections above 1.5 x the least-loaded sibling */
#define STEP_ASIDE_MS     1     /* ... before this worker steps aside this long */
#define PERCPU_CHECK_MS   50    /* per-CPU sockets: who accepts where (see percpu_check) */
/* Heartbeat period (status report with usage, plus once-a-second protocol
 * ticks). 0 = no status reports besides the startup, draining and exit ones:
 * the heartbeats and busy/idle flips are never sent, the ticks still run
 * every second. Only `make bench` builds that (build/bench-noreport/) to
 * measure what reporting costs; it needs a worker_timeout longer than the
 * run, or the master's watchdog kills the silent workers. */
#ifndef PREFORKD_REPORT_EVERY_MS
#define PREFORKD_REPORT_EVERY_MS 1000
#endif
#define TICK_EVERY_MS (PREFORKD_REPORT_EVERY_MS > 0 ? PREFORKD_REPORT_EVERY_MS : 1000)
#define STATE_MIN_GAP_MS  100   /* busy/idle flips reported at most this often */
#define MAX_EVENTS        256
#define UPLINK_LIMIT      (1024 * 1024) /* frames queued to the master */
#define UPLINK_HIGH       (256 * 1024)  /* above: producers pause */
#define UPLINK_LOW        (64 * 1024)   /* below again: they resume */
#define CONN_POOL_LOW     64    /* free conns kept per protocol at least */

static volatile sig_atomic_t sig_drain, sig_quit, sig_reopen;

static void on_signal(int sig)
{
    if (sig == SIGTERM)
        sig_drain = 1;
    else if (sig == SIGUSR1)
        sig_reopen = 1;
    else
        sig_quit = 1;
}

int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One clock read per wakeup: milliseconds for timers, nanoseconds for
 * request timing. */
static void set_clock(struct worker *w)
{
    w->now_ns = worker_clock_ns();
    w->now_ms = w->now_ns / 1000000;
}

/* --- protocols ---------------------------------------------------------- */

static const struct proto *proto_for(enum proto_kind kind)
{
    switch (kind) {
    case PROTO_HTTP: return &http_proto;
    case PROTO_ECHO: return &echo_proto;
    default:         return &chat_proto;
    }
}

static int proto_index(const struct proto *p)
{
    return p == &http_proto ? 0 : p == &echo_proto ? 1 : 2;
}

/* Listener i's protocol if no earlier listener uses it, else NULL: how
 * per-protocol hooks (init, tick, exit) run once per worker. */
static const struct proto *proto_once(const struct worker *w, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (w->ls[j].proto == w->ls[i].proto)
            return NULL;
    return w->ls[i].proto;
}

/* --- timers ------------------------------------------------------------- */

struct tlist *worker_timer_list(struct worker *w, int64_t dur_ms)
{
    for (size_t i = 0; i < w->ntimers; i++)
        if (w->timers[i].dur_ms == dur_ms)
            return &w->timers[i];
    if (w->ntimers == sizeof w->timers / sizeof w->timers[0])
        return NULL;
    struct tlist *tl = &w->timers[w->ntimers++];
    tl->dur_ms = dur_ms;
    tl->head = tl->tail = NULL;
    return tl;
}

void conn_timer_clear(struct conn *c)
{
    struct tlist *tl = c->tl;
    if (!tl)
        return;
    if (c->tprev) c->tprev->tnext = c->tnext; else tl->head = c->tnext;
    if (c->tnext) c->tnext->tprev = c->tprev; else tl->tail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->tl = NULL;
}

void conn_timer_set(struct conn *c, struct tlist *tl)
{
    conn_timer_clear(c);
    if (!tl)
        return;
    c->deadline_ms = c->w->now_ms + tl->dur_ms;
    c->tl = tl;
    c->tprev = tl->tail;
    if (tl->tail) tl->tail->tnext = c; else tl->head = c;
    tl->tail = c;
}

static void expire_timers(struct worker *w)
{
    for (size_t i = 0; i < w->ntimers; i++) {
        struct tlist *tl = &w->timers[i];
        while (tl->head && tl->head->deadline_ms <= w->now_ms) {
            struct conn *c = tl->head;
            conn_timer_clear(c);
            if (c->proto->on_timeout)
                c->proto->on_timeout(c);
            else
                conn_close(c);
        }
    }
}

static enum worker_state current_state(const struct worker *w);

static int64_t next_deadline(const struct worker *w)
{
    int64_t next = w->next_report_ms;
    /* A busy/idle change held back by STATE_MIN_GAP_MS is sent on time. */
    if (current_state(w) != w->reported_state && w->last_state_ms + STATE_MIN_GAP_MS < next)
        next = w->last_state_ms + STATE_MIN_GAP_MS;
    for (size_t i = 0; i < w->ntimers; i++)
        if (w->timers[i].head && w->timers[i].head->deadline_ms < next)
            next = w->timers[i].head->deadline_ms;
    if (w->accept_resume_ms && w->accept_resume_ms < next)
        next = w->accept_resume_ms;
    if (w->draining && w->drain_deadline_ms < next)
        next = w->drain_deadline_ms;
    if (w->has_percpu && !w->draining && w->next_percpu_ms < next)
        next = w->next_percpu_ms;
    return next;
}

/* --- connections -------------------------------------------------------- */

static void conn_dispatch(struct worker *w, struct ev *ev, uint32_t events)
{
    (void)w;
    struct conn *c = (struct conn *)ev;
    c->proto->on_event(c, events);
}

static struct conn *conn_alloc(struct worker *w, const struct proto *p)
{
    int i = proto_index(p);
    struct conn *c = w->pool[i];
    if (c) {
        w->pool[i] = c->free_next;
        if (--w->npool[i] < w->pool_min[i])
            w->pool_min[i] = w->npool[i];
    } else {
        c = malloc(sizeof *c + p->state_size);
        if (!c)
            return NULL;
    }
    memset(c, 0, sizeof *c + p->state_size);
    c->ev.on_event = conn_dispatch;
    c->w = w;
    c->proto = p;
    return c;
}

int conn_set_interest(struct conn *c, uint32_t events)
{
    if (c->in_epoll && c->interest == events)
        return 0;
    struct epoll_event ee = { .events = events, .data.ptr = &c->ev };
    int op = c->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(c->w->epfd, op, c->fd, &ee) != 0) {
        log_error("epoll_ctl %s fd %d: %s", c->in_epoll ? "mod" : "add", c->fd,
                  strerror(errno));
        return -1;
    }
    c->in_epoll = true;
    c->interest = events;
    return 0;
}

static void listeners_enable(struct worker *w, bool on);

/* One relaxed store: siblings read it when they decide to accept. */
static void publish_load(struct worker *w)
{
    if (w->board && !w->draining)
        loadboard_set(w->board, (size_t)w->slot, w->pid, (uint32_t)w->nconns);
}

void conn_close(struct conn *c)
{
    struct worker *w = c->w;
    if (c->proto->on_close && !c->refused)
        c->proto->on_close(c);
    if (c->ip_counted)
        iplimit_conn_close(w->limits, w->limit_slot, &c->peer);
    conn_timer_clear(c);
    tls_conn_close(c);
    /* close() also removes the fd from the epoll set. */
    close(c->fd);
    if (c->aprev) c->aprev->anext = c->anext; else w->all = c->anext;
    if (c->anext) c->anext->aprev = c->aprev;
    /* The listener's protocol sized it (c->proto may be a stage's). */
    struct conn **pool = &w->pool[proto_index(c->ls->proto)];
    c->free_next = *pool;
    *pool = c;
    w->npool[proto_index(c->ls->proto)]++;
    w->nconns--;
    w->stats.active = (uint32_t)w->nconns;
    publish_load(w);
    if (!w->accepting && !w->draining && !w->accept_resume_ms)
        listeners_enable(w, true);
}

/* At most one warning a minute that the per-address table is full. */
static void warn_untracked(struct worker *w)
{
    static int64_t last_ms = -60000;
    if (w->now_ms - last_ms < 60000)
        return;
    last_ms = w->now_ms;
    log_warn("limits: no room to track more client addresses; their connections "
             "and requests are not limited");
}

static bool rate_ok(struct conn *c)
{
    struct worker *w = c->w;
    const struct rate_limit *rl = &w->cfg->rate_limit;
    enum iplimit_verdict v = iplimit_rate(w->limits, &c->peer, w->now_ns / 1000,
                                          rl->interval_us, rl->burst);
    if (v == IPL_UNTRACKED)
        warn_untracked(w);
    return v != IPL_OVER;
}

bool conn_rate_ok(struct conn *c)
{
    if (!c->w->cfg->rate_limit.interval_us || !c->peer.family || rate_ok(c))
        return true;
    c->w->stats.limited++;
    return false;
}

/* max_connections_per_ip, and rate_limit for protocols that count
 * connections: true when c may be served (and is counted if limited). */
static bool within_limits(struct conn *c)
{
    struct worker *w = c->w;
    if (!c->peer.family)
        return true;
    if (w->cfg->max_connections_per_ip) {
        enum iplimit_verdict v = iplimit_conn_open(w->limits, w->limit_slot, &c->peer,
                                                   (uint32_t)w->cfg->max_connections_per_ip);
        if (v == IPL_OVER)
            return false;
        if (v == IPL_UNTRACKED)
            warn_untracked(w);
        c->ip_counted = v == IPL_OK;
    }
    return c->proto->rate_per_request || conn_rate_ok(c);
}

/* Refused by a limit: the protocol's fixed answer, then close. What the
 * client already sent is read first, so that close() sends a FIN, not a
 * reset that could destroy the answer before the client reads it. */
static void conn_refuse(struct conn *c)
{
    char sink[4096];
    c->refused = true;
    c->w->stats.limited++;
    /* Best effort, both: the connection is closed either way. A TLS client
     * would take a plain-text answer for garbage: it is just closed. */
    if (c->proto->refusal && !tls_wanted(c)) {
        if (recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) < 0 && errno != EAGAIN)
            log_debug("refused fd %d: %s", c->fd, strerror(errno));
        if (send(c->fd, c->proto->refusal, strlen(c->proto->refusal),
                 MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            log_debug("refused fd %d: %s", c->fd, strerror(errno));
    }
    conn_close(c);
}

void conn_admit(struct conn *c)
{
    c->proto = c->ls->proto;        /* a stage in front may have stood in */
    if (!within_limits(c)) {
        conn_refuse(c);
        return;
    }
    if (tls_wanted(c)) {
        tls_admit(c);           /* opens the protocol after its handshake */
        return;
    }
    c->proto->on_open(c);
}

static void conn_open(struct worker *w, struct wlistener *l, int fd,
                      const struct sockaddr *sa)
{
    struct conn *c = conn_alloc(w, l->proto);
    if (!c) {
        log_error("out of memory for a connection");
        close(fd);
        return;
    }
    c->fd = fd;
    c->ls = l;
    peer_from_sockaddr(&c->peer, sa);
    /* Not in epoll until on_open first waits (conn_set_interest): an HTTP
     * request that is answered and closed at once (its bytes came with the
     * accept, TCP_DEFER_ACCEPT) costs no epoll_ctl at all. */
    c->anext = w->all;
    if (w->all)
        w->all->aprev = c;
    w->all = c;
    w->nconns++;
    w->stats.accepted++;
    w->stats.active = (uint32_t)w->nconns;
    publish_load(w);
    if (l->conf->proxy_protocol)
        proxy_stage_open(c);        /* it calls conn_admit once the header is in */
    else
        conn_admit(c);
}

/* --- listeners ---------------------------------------------------------- */

static int listener_add(struct worker *w, struct wlistener *l)
{
    struct epoll_event ee = { .events = EPOLLIN | EPOLLEXCLUSIVE,
                              .data.ptr = &l->ev };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->fd, &ee) != 0) {
        log_error("epoll_ctl add listener %s: %s", l->conf->addr.text,
                  strerror(errno));
        return -1;
    }
    l->in_epoll = true;
    return 0;
}

static void listener_del(struct worker *w, struct wlistener *l)
{
    if (l->in_epoll && epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->fd, NULL) != 0)
        log_error("epoll_ctl del listener: %s", strerror(errno));
    l->in_epoll = false;
}

static void listeners_enable(struct worker *w, bool on)
{
    for (size_t i = 0; i < w->nls; i++) {
        struct wlistener *l = &w->ls[i];
        if (on && !l->in_epoll && l->fd >= 0 && l->home)
            listener_add(w, l);
        else if (!on && l->in_epoll && l->conf->addr.socktype == SOCK_STREAM)
            listener_del(w, l);
    }
    w->accepting = on;
}

/* EPOLLEXCLUSIVE wakes the first idle epoll instance in the socket's wait
 * queue, which is the one that added the socket first. Re-adding moves this
 * worker to the back, so the next connections go to its siblings. */
static void listener_reorder(struct worker *w, struct wlistener *l)
{
    if (++l->accepts % REORDER_EVERY != 0 || !l->in_epoll)
        return;
    listener_del(w, l);
    listener_add(w, l);
}

static bool accept_error_is_transient(int err)
{
    return err == ECONNABORTED || err == EINTR || err == EPROTO ||
           err == EPERM || err == ENETDOWN || err == EHOSTUNREACH;
}

static void pause_accepting(struct worker *w, int err)
{
    log_warn("accept: %s; pausing accepts for %d ms (%zu connections open)",
             strerror(err), EMFILE_PAUSE_MS, w->nconns);
    listeners_enable(w, false);
    w->accept_resume_ms = w->now_ms + EMFILE_PAUSE_MS;
}

/* Accept fairness. The worker already running takes a burst of new
 * connections from the shared queue before a woken sibling gets a CPU (on a
 * busy machine that takes longer than the burst), so long connections can all
 * end up in one process. A worker holding more than 1.5 times the
 * least-loaded sibling's connections plus FAIR_SLACK stops accepting for
 * STEP_ASIDE_MS, which lets the sibling's wake-up take the queue; nginx's
 * accept_disabled does the same against its own limit. A sibling that has
 * not refreshed its count lately (stopped, stuck) does not count, and after
 * a pause a full batch is taken, so a slow sibling only slows this one. */
static bool over_fair_share(const struct worker *w)
{
    uint32_t least;
    if (w->nconns <= FAIR_SLACK ||
        !loadboard_least_other(w->board, (size_t)w->slot, w->now_ms, &least))
        return false;
    return w->nconns > (size_t)least + least / 2 + FAIR_SLACK;
}

static void step_aside(struct worker *w)
{
    listeners_enable(w, false);
    w->accept_resume_ms = w->now_ms + STEP_ASIDE_MS;
    w->stepped_aside = true;
}

static void on_listener(struct worker *w, struct ev *ev, uint32_t events)
{
    (void)events;
    struct wlistener *l = (struct wlistener *)ev;
    /* A drain command earlier in the same epoll batch closed it. */
    if (l->fd < 0)
        return;
    if (l->conf->addr.socktype == SOCK_DGRAM) {
        l->proto->on_datagram(w, l);
        return;
    }
    bool forced = w->stepped_aside;     /* paused last time: take a batch */
    w->stepped_aside = false;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (!forced && over_fair_share(w)) {
            step_aside(w);
            return;
        }
        if (w->nconns >= w->max_conns) {
            listeners_enable(w, false);     /* back on when a slot frees */
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof ss;
        ss.ss_family = AF_UNSPEC;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sslen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (accept_error_is_transient(errno))
                continue;
            pause_accepting(w, errno);      /* EMFILE, ENFILE, ENOBUFS, ... */
            return;
        }
        conn_open(w, l, fd, (struct sockaddr *)&ss);
        if (w->draining)
            return;
    }
    listener_reorder(w, l);
}

/* EPOLLEXCLUSIVE hands each arrival's wake-up to one worker. If that worker
 * then cannot accept it (EMFILE, or a SIGSTOP that lands between the wake-up
 * and the accept), the connection waits in the queue until the next arrival
 * wakes someone. So once a second every accepting worker tries its stream
 * listeners itself: one accept4() that usually says EAGAIN. */
static void accept_sweep(struct worker *w)
{
    for (size_t i = 0; i < w->nls; i++) {
        struct wlistener *l = &w->ls[i];
        if (l->in_epoll && l->conf->addr.socktype == SOCK_STREAM)
            on_listener(w, &l->ev, EPOLLIN);
    }
}

/* Per-CPU sockets (accept = "per-cpu"). A worker accepts on its own CPU's
 * socket, index slot mod n; these checks make sure every socket has an
 * acceptor without waiting for the one-second sweep:
 * - a socket that no live sibling is pinned to (fewer workers than CPUs, a
 *   worker dead, scaled away, draining, or stopped for longer than the
 *   loadboard's freshness) is accepted on by every worker;
 * - a socket that had a queue at two checks in a row (its worker stopped or
 *   behind) is taken into this worker's set until a check finds it empty.
 * Added to epoll after its own worker, this worker is woken for it only
 * when that one is not waiting (EPOLLEXCLUSIVE wakes the first waiter). */
static bool percpu_wanted(struct worker *w, struct wlistener *l)
{
    if (l->cpu == w->slot % l->ncpu)
        return true;
    if (!loadboard_covered(w->board, (size_t)w->slot, w->now_ms, (size_t)l->ncpu,
                           (size_t)l->cpu))
        return true;
    int q = percpu_queue(l->fd, NULL);
    bool stuck = q > 0 && (l->queued || l->home);
    l->queued = q > 0;
    return stuck;
}

static void percpu_check(struct worker *w)
{
    if (!w->has_percpu || w->draining || w->now_ms < w->next_percpu_ms)
        return;
    w->next_percpu_ms = w->now_ms + PERCPU_CHECK_MS;
    for (size_t i = 0; i < w->nls; i++) {
        struct wlistener *l = &w->ls[i];
        if (l->cpu < 0 || l->fd < 0)
            continue;
        bool want = percpu_wanted(w, l);
        if (want == l->home)
            continue;
        l->home = want;
        if (!w->accepting)
            continue;               /* listeners_enable(w, true) adds it later */
        if (want && listener_add(w, l) == 0)
            on_listener(w, &l->ev, EPOLLIN);    /* the queue it was taken for */
        else if (!want)
            listener_del(w, l);
    }
}

/* --- reports to the master ---------------------------------------------- */

static enum worker_state current_state(const struct worker *w)
{
    if (w->draining)
        return WS_DRAINING;
    return w->nconns > 0 ? WS_BUSY : WS_IDLE;
}

static void fill_usage(struct ipc_report *r)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return;
    r->cpu_usec = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
                  (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    r->maxrss_kb = (uint64_t)ru.ru_maxrss;
}

/* --- the uplink: frames to the master that must not be dropped ---------- */

static void uplink_set_out(struct worker *w, bool want)
{
    if (want == w->up_wants_out)
        return;
    struct epoll_event ee = { .events = want ? EPOLLOUT : 0, .data.ptr = &w->up_ev };
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->status_fd, &ee) != 0) {
        log_error("epoll_ctl status pipe: %s", strerror(errno));
        return;
    }
    w->up_wants_out = want;
}

static void uplink_ready(struct worker *w)
{
    w->up_congested = false;
    for (size_t i = 0; i < w->nls; i++) {
        const struct proto *p = w->ls[i].proto;
        bool first = true;
        for (size_t j = 0; j < i; j++)
            first = first && w->ls[j].proto != p;
        if (first && p->on_uplink_ready)
            p->on_uplink_ready(w);
    }
}

static void uplink_flush(struct worker *w)
{
    int r = ipc_queue_flush(&w->up, w->status_fd);
    if (r < 0) {
        /* The master is gone: nothing will read these; the parent check
         * drains us soon. Drop them rather than grow. */
        log_warn("status pipe: %s; dropping %zu queued bytes", strerror(errno), w->up.len);
        w->up.len = w->up.head = 0;
        r = 1;
    }
    uplink_set_out(w, r == 0);
    if (w->up_congested && w->up.len < UPLINK_LOW)
        uplink_ready(w);
}

static void on_uplink(struct worker *w, struct ev *ev, uint32_t events)
{
    (void)ev; (void)events;
    uplink_flush(w);
}

int worker_send_master(struct worker *w, uint16_t type, const void *payload,
                       size_t len)
{
    if (ipc_queue_push(&w->up, type, (uint16_t)w->slot, w->gen, payload, len) != 0) {
        log_error("queue to the master full (%zu bytes): frame type %u lost",
                  w->up.len, type);
        return -1;
    }
    if (w->up.len > UPLINK_HIGH)
        w->up_congested = true;
    if (!w->up_wants_out)
        uplink_flush(w);
    return 0;
}

/* A full pipe drops the report: counters are cumulative, the next one
 * carries everything. While uplink frames are queued (possibly half
 * written) the report must queue behind them instead. */
static void send_report(struct worker *w, uint16_t type)
{
    w->stats.state = current_state(w);
    w->stats.active = (uint32_t)w->nconns;
    if (type == IPC_HEARTBEAT)
        fill_usage(&w->stats);
    if (w->up.len > 0)
        (void)ipc_queue_push(&w->up, type, (uint16_t)w->slot, w->gen, &w->stats,
                             sizeof w->stats);
    else if (ipc_send(w->status_fd, type, (uint16_t)w->slot, w->gen, &w->stats,
                      sizeof w->stats) != 0 && errno != EAGAIN)
        log_debug("report to master: %s", strerror(errno));
    w->reported_state = current_state(w);
    w->last_state_ms = w->now_ms;
}

/* Durations since the last delivered latency frame, packed per listener
 * into frames of at most PIPE_BUF (ipc/latency.h). Like reports, a frame a
 * full pipe refuses is dropped, but its counts stay and go with the next. */
static int send_latency_frame(struct worker *w, const unsigned char *buf, size_t len)
{
    if (w->up.len > 0)
        return ipc_queue_push(&w->up, IPC_LATENCY, (uint16_t)w->slot, w->gen, buf, len);
    return ipc_send(w->status_fd, IPC_LATENCY, (uint16_t)w->slot, w->gen, buf, len);
}

static void send_latency(struct worker *w)
{
    unsigned char buf[IPC_MAX_PAYLOAD];
    size_t len = 0, first = 0;
    for (size_t i = 0; i <= w->nls; i++) {
        struct wlistener *l = i < w->nls ? &w->ls[i] : NULL;
        if (l && (!l->lat.n || l->lat_id == LAT_NO_LISTENER))
            continue;
        if (len && (!l || len + LAT_RECORD_MAX > sizeof buf)) {
            if (send_latency_frame(w, buf, len) != 0)
                return;             /* the rest waits for the next heartbeat */
            for (size_t k = first; k < i; k++)
                if (w->ls[k].lat.n && w->ls[k].lat_id != LAT_NO_LISTENER)
                    memset(&w->ls[k].lat, 0, sizeof w->ls[k].lat);
            len = 0;
            first = i;
        }
        if (l)
            len += lat_encode(&l->lat, l->lat_id, buf + len);
    }
}

/* Memory comes back after a flood of connections: free conns that stayed
 * in a pool for a whole tick, down to CONN_POOL_LOW, and once anything
 * (here or in a handler's pools) was freed, give the heap's free pages
 * back (glibc keeps them otherwise: freed memory below its top stays). */
static void trim_memory(struct worker *w)
{
    for (int i = 0; i < 4; i++) {
        size_t surplus = w->pool_min[i] > CONN_POOL_LOW ? w->pool_min[i] - CONN_POOL_LOW : 0;
        for (; surplus && w->pool[i]; surplus--, w->npool[i]--) {
            struct conn *c = w->pool[i];
            w->pool[i] = c->free_next;
            free(c);
            w->heap_shrank = true;
        }
        w->pool_min[i] = w->npool[i];
    }
    if (w->heap_shrank)
        malloc_trim(0);
    w->heap_shrank = false;
}

/* Once a second, each protocol in use gets on_tick (e.g. to flush logs). */
static void tick_protocols(struct worker *w)
{
    for (size_t i = 0; i < w->nls; i++) {
        const struct proto *p = proto_once(w, i);
        if (p && p->on_tick)
            p->on_tick(w);
    }
}

static void report_if_due(struct worker *w)
{
    if (w->now_ms >= w->next_report_ms) {
        tick_protocols(w);
        trim_memory(w);
        if (!w->draining)           /* keeps this worker's entry fresh */
            loadboard_touch(w->board, (size_t)w->slot, w->now_ms);
        accept_sweep(w);
        if (PREFORKD_REPORT_EVERY_MS > 0) {
            send_latency(w);
            send_report(w, IPC_HEARTBEAT);
        }
        w->next_report_ms = w->now_ms + TICK_EVERY_MS;
        /* The parent check backs up PR_SET_PDEATHSIG. */
        if (getppid() != w->master_pid && !w->draining) {
            log_warn("master %d is gone; draining", (int)w->master_pid);
            sig_drain = 1;
        }
        return;
    }
    if (PREFORKD_REPORT_EVERY_MS == 0) {
        /* Treat the flip as reported, so nothing waits to be sent. */
        w->reported_state = current_state(w);
        w->last_state_ms = w->now_ms;
        return;
    }
    enum worker_state st = current_state(w);
    if (st != w->reported_state &&
        (st == WS_DRAINING || w->now_ms - w->last_state_ms >= STATE_MIN_GAP_MS))
        send_report(w, IPC_STATE);
}

/* --- draining and commands ---------------------------------------------- */

/* Out of the wait queue first, then take what is already queued: a
 * connection whose wake-up came to us is served, never left behind. */
static void accept_pending(struct worker *w, struct wlistener *l)
{
    while (l->conf->addr.socktype == SOCK_STREAM && w->nconns < w->max_conns) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof ss;
        ss.ss_family = AF_UNSPEC;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sslen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (accept_error_is_transient(errno))
                continue;
            return;
        }
        conn_open(w, l, fd, (struct sockaddr *)&ss);
    }
}

static void start_draining(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    loadboard_clear(w->board, (size_t)w->slot, w->pid);
    w->drain_deadline_ms = w->now_ms + (int64_t)w->cfg->graceful_timeout * 1000;
    for (size_t i = 0; i < w->nls; i++) {
        struct wlistener *l = &w->ls[i];
        listener_del(w, l);
        if (l->fd < 0)
            continue;
        if (l->home)                /* not another CPU's queue */
            accept_pending(w, l);
        close(l->fd);
        l->fd = -1;
    }
    w->accepting = false;
    log_info("draining %zu connections", w->nconns);
    /* on_drain may close c, so take the next link first. */
    for (struct conn *c = w->all, *next; c; c = next) {
        next = c->anext;
        if (c->proto->on_drain)
            c->proto->on_drain(c);
        else
            conn_close(c);
    }
    send_report(w, IPC_STATE);
}

static void reopen_logs(struct worker *w)
{
    log_reopen();
    log_info("log files reopened");
    for (size_t i = 0; i < w->nls; i++)
        if (w->ls[i].proto->on_reopen)
            w->ls[i].proto->on_reopen(w);
}

/* Test hook (the master sends it only with PREFORKD_FAULT_HOOKS=1): write a
 * corrupt frame into the status pipe, as a buggy or compromised worker. */
static void inject_fault(struct worker *w, const struct ipc_msg *m)
{
    unsigned char junk[64];
    size_t n = sizeof junk;
    memset(junk, 0xff, sizeof junk);
    if (m->hdr.len == 9 && memcmp(m->payload, "oversized", 9) == 0) {
        struct ipc_hdr h = { .type = IPC_HEARTBEAT, .len = 60000, .slot = (uint16_t)w->slot };
        memcpy(junk, &h, sizeof h);
        n = sizeof h;
    }
    log_warn("fault injection: writing a corrupt frame to the master");
    if (write(w->status_fd, junk, n) < 0)
        log_warn("fault injection: %s", strerror(errno));
}

/* Relayed chat frames go to the protocol that takes them. */
static bool deliver_to_protocol(struct worker *w, const struct ipc_msg *m)
{
    for (size_t i = 0; i < w->nls; i++) {
        if (w->ls[i].proto->on_master_msg) {
            w->ls[i].proto->on_master_msg(w, m);
            return true;
        }
    }
    return false;
}

static void handle_command(struct worker *w, const struct ipc_msg *m)
{
    switch (m->hdr.type) {
    case IPC_CMD_DRAIN:
        start_draining(w);
        break;
    case IPC_CMD_REOPEN:
        reopen_logs(w);
        break;
    case IPC_CMD_FAULT:
        inject_fault(w, m);
        break;
    case IPC_CMD_TLS_KEYS:
        tls_ticket_keys_set(m->payload, m->hdr.len);
        break;
    default:
        if (m->hdr.type >= CHAT_HELLO && deliver_to_protocol(w, m))
            break;
        log_warn("unexpected command %u from the master", m->hdr.type);
    }
}

static void on_command(struct worker *w, struct ev *ev, uint32_t events)
{
    (void)ev; (void)events;
    ssize_t n = ipc_reader_fill(&w->cmd_rd, w->cmd_fd);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        /* The master closed our channel: it is gone or replacing us. */
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->cmd_fd, NULL);
        start_draining(w);
        return;
    }
    struct ipc_msg m;
    char err[128];
    int r;
    while ((r = ipc_reader_next(&w->cmd_rd, &m, err, sizeof err)) == 1)
        handle_command(w, &m);
    if (r < 0) {
        log_error("command pipe: %s", err);
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->cmd_fd, NULL);
        start_draining(w);
    }
}

/* --- set-up and loop ---------------------------------------------------- */

static void setup_signals(void)
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    int handled[] = { SIGTERM, SIGINT, SIGQUIT, SIGUSR1 };
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        sigaction(handled[i], &sa, NULL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
    signal(SIGTTOU, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    /* Blocked except inside epoll_pwait, so no signal slips in between
     * checking the flags and going to sleep. */
    sigset_t block;
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        sigaddset(&block, handled[i]);
    sigprocmask(SIG_SETMASK, &block, NULL);
}

/* Test hook for the crash-loop tests: PREFORKD_FAULT_EXIT=FILE makes a
 * worker exit at start while FILE exists. */
static void fault_exit_at_start(void)
{
    const char *f = getenv("PREFORKD_FAULT_EXIT");
    if (f && *f && access(f, F_OK) == 0) {
        log_error("fault injection: %s exists, exiting at start", f);
        _exit(3);
    }
}

static size_t count_listeners(const struct worker_args *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->cfg->nlistens; i++)
        n += a->percpu && a->percpu[i] ? (size_t)a->percpu[i]->n : 1;
    return n;
}

static int setup_listeners(struct worker *w, const struct worker_args *a)
{
    w->ls = calloc(count_listeners(a), sizeof *w->ls);
    if (!w->ls)
        return -1;
    w->nls = 0;
    for (size_t i = 0; i < a->cfg->nlistens; i++) {
        if (a->cfg->listens[i].protocol == PROTO_APP) {
            close(a->listen_fds[i]);    /* an app pool's: not ours to hold */
            continue;
        }
        const struct percpu_set *pc = a->percpu ? a->percpu[i] : NULL;
        for (int k = 0; k < (pc ? pc->n : 1); k++) {
            struct wlistener *l = &w->ls[w->nls++];
            l->ev.on_event = on_listener;
            l->fd = pc ? pc->fd[k] : a->listen_fds[i];
            l->conf = &a->cfg->listens[i];
            l->proto = proto_for(l->conf->protocol);
            l->lat_id = a->listen_ids ? a->listen_ids[i] : LAT_NO_LISTENER;
            l->cpu = pc ? k : -1;
            l->ncpu = pc ? pc->n : 0;
            l->home = !pc || k == w->slot % pc->n;
            w->has_percpu = w->has_percpu || pc;
        }
    }
    for (size_t i = 0; i < w->nls; i++) {
        const struct proto *p = proto_once(w, i);
        if (p && p->init && p->init(w) != 0)
            return -1;
    }
    listeners_enable(w, true);
    return 0;
}

/* max_requests plus up to 10% jitter, so workers do not recycle at once. */
static uint64_t recycle_threshold(long max_requests)
{
    if (max_requests <= 0)
        return 0;
    uint64_t jitter_span = (uint64_t)max_requests / 10 + 1;
    unsigned seed = (unsigned)getpid() ^ (unsigned)monotonic_ms();
    return (uint64_t)max_requests + (uint64_t)rand_r(&seed) % jitter_span;
}

static void recycle_if_due(struct worker *w)
{
    if (w->recycle_at && !w->draining && w->stats.requests >= w->recycle_at) {
        log_info("served %llu requests (max_requests %ld): recycling",
                 (unsigned long long)w->stats.requests, w->cfg->max_requests);
        start_draining(w);
    }
}

static int setup_worker(struct worker *w, const struct worker_args *a)
{
    memset(w, 0, sizeof *w);
    w->cfg = a->cfg;
    w->slot = a->slot;
    w->gen = a->gen;
    w->master_pid = a->master_pid;
    w->pid = getpid();
    w->board = a->board;
    w->limits = a->limits;
    w->limit_slot = a->limit_slot;
    w->status_fd = a->status_fd;
    w->cmd_fd = a->cmd_fd;
    w->max_conns = (size_t)a->cfg->worker_connections;
    w->recycle_at = recycle_threshold(a->cfg->max_requests);
    set_clock(w);
    if (a->pin_cpu >= 0 && percpu_pin(a->pin_cpu) != 0)
        log_warn("pinning to CPU %d: %s", a->pin_cpu, strerror(errno));
    w->reported_state = WS_STARTING;
    ipc_reader_init(&w->cmd_rd);
    ipc_queue_init(&w->up, UPLINK_LIMIT);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0) {
        log_error("epoll_create1: %s", strerror(errno));
        return -1;
    }
    w->up_ev.on_event = on_uplink;
    struct epoll_event up = { .events = 0, .data.ptr = &w->up_ev };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->status_fd, &up) != 0) {
        log_error("epoll_ctl status pipe: %s", strerror(errno));
        return -1;
    }
    w->cmd_ev.on_event = on_command;
    struct epoll_event ee = { .events = EPOLLIN, .data.ptr = &w->cmd_ev };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->cmd_fd, &ee) != 0) {
        log_error("epoll_ctl command pipe: %s", strerror(errno));
        return -1;
    }
    return setup_listeners(w, a);
}

/* Let each protocol flush (access logs) exactly once, then exit. */
static __attribute__((noreturn)) void worker_exit(struct worker *w, int code)
{
    for (size_t i = 0; i < w->nls; i++) {
        const struct proto *p = proto_once(w, i);
        if (p && p->on_exit)
            p->on_exit(w);
    }
    _exit(code);
}

static void handle_signal_flags(struct worker *w)
{
    if (sig_quit) {
        log_info("stopping now (%zu connections open)", w->nconns);
        worker_exit(w, 0);
    }
    if (sig_drain) {
        sig_drain = 0;
        start_draining(w);
    }
    if (sig_reopen) {
        sig_reopen = 0;
        reopen_logs(w);
    }
}

static void run_once(struct worker *w, const sigset_t *waitmask)
{
    struct epoll_event evs[MAX_EVENTS];
    int64_t timeout = next_deadline(w) - w->now_ms;
    if (timeout < 0 || tls_pending_any())
        timeout = 0;
    int n = epoll_pwait(w->epfd, evs, MAX_EVENTS, (int)timeout, waitmask);
    if (n < 0 && errno != EINTR) {
        log_error("epoll_pwait: %s", strerror(errno));
        _exit(1);
    }
    set_clock(w);
    for (int i = 0; i < n; i++) {
        struct ev *ev = evs[i].data.ptr;
        ev->on_event(w, ev, evs[i].events);
    }
    tls_run_pending(w);
    handle_signal_flags(w);
    recycle_if_due(w);
    expire_timers(w);
    percpu_check(w);
    if (w->accept_resume_ms && w->now_ms >= w->accept_resume_ms) {
        w->accept_resume_ms = 0;
        if (!w->draining)
            listeners_enable(w, true);
    }
    report_if_due(w);
}

/* setgroups, setgid, setuid, in that order, each checked; then make sure
 * root cannot be regained. Files were opened before, as root. */
static int drop_privileges(const char *user)
{
    if (!user[0] || geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        log_error("user %s: no such user", user);
        return -1;
    }
    if (initgroups(user, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        log_error("switching to user %s: %s", user, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && setuid(0) == 0) {
        log_error("switching to user %s: root could be regained", user);
        return -1;
    }
    return 0;
}

void worker_main(const struct worker_args *a)
{
    struct worker w;
    setup_signals();
    log_set_role("worker %d", a->slot);
    fault_exit_at_start();
    if (setup_worker(&w, a) != 0 || drop_privileges(a->cfg->user) != 0)
        _exit(2);
    /* Siblings count this worker from now on. */
    loadboard_touch(w.board, (size_t)w.slot, w.now_ms);
    publish_load(&w);
    /* After the credential change, which clears the parent-death signal. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != a->master_pid)
        _exit(0);               /* the master died before PDEATHSIG was set */
    sigset_t waitmask;
    sigemptyset(&waitmask);
    send_report(&w, IPC_STATE);     /* starting -> idle: we are up */
    w.next_report_ms = w.now_ms + TICK_EVERY_MS;
    for (;;) {
        run_once(&w, &waitmask);
        if (w.draining && (w.nconns == 0 || w.now_ms >= w.drain_deadline_ms))
            break;
    }
    if (w.nconns)
        log_warn("graceful_timeout: closing %zu connections", w.nconns);
    send_latency(&w);
    send_report(&w, IPC_HEARTBEAT);
    worker_exit(&w, 0);
}
