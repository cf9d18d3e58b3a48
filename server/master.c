/* master: one loop, woken by signalfd, worker status pipes and timers.
 * Signals only set state (stopping, target count); the same code paths then
 * act on it, as in nginx's process cycle. The master never blocks on a
 * child: reaping is WNOHANG, writes to workers go through bounded queues. */
#include "server/master.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "server/chat.h"
#include "server/chatbus.h"
#include "server/daemon.h"
#include "server/log.h"
#include "server/sdnotify.h"
#include "server/status.h"
#include "server/tlsctx.h"
#include "workers/iplimit.h"
#include "workers/loadboard.h"
#include "workers/worker.h"

#define BACKOFF_BASE_MS  100
#define BACKOFF_MAX_MS   30000
#define CMD_QUEUE_LIMIT  (256 * 1024)
#define TICK_MS          1000
#define QUIT_GRACE_MS    1000   /* SIGINT/SIGQUIT: then SIGKILL */
/* Reloads faster than drains: at most CAP x workers draining once they have
 * drained for DRAIN_CAP_AGE_MS (by then a keep-alive client has made its
 * last request or been idle through the drain grace); a burst of reloads
 * may briefly go up to HARD_CAP x workers, beyond which the oldest go now. */
#define DRAINING_CAP_PER_WORKER       3
#define DRAINING_HARD_CAP_PER_WORKER 16
#define DRAIN_CAP_AGE_MS           2000
#define OVERSLEPT_MS               1000 /* master woke this late: it was stalled */

static uint64_t ev_data(enum ev_kind kind, size_t idx)
{
    return ((uint64_t)kind << 32) | (uint64_t)idx;
}

static int epoll_watch(struct master *m, int op, int fd, uint32_t events,
                       enum ev_kind kind, size_t idx)
{
    struct epoll_event ee = { .events = events, .data.u64 = ev_data(kind, idx) };
    if (epoll_ctl(m->epfd, op, fd, &ee) != 0) {
        log_error("epoll_ctl fd %d: %s", fd, strerror(errno));
        return -1;
    }
    return 0;
}

/* Built-in workers and app workers alike. */
static size_t live_workers(const struct master *m)
{
    size_t n = apppool_live(m);
    for (size_t i = 0; i < m->nslots; i++)
        n += m->slots[i].pid != 0;
    return n;
}

/* The built-in pool runs only when there are built-in listeners. */
static size_t builtin_target(const struct config *cfg)
{
    return config_builtin_listens(cfg) ? (size_t)cfg->workers : 0;
}

/* --- slots -------------------------------------------------------------- */

static int slots_reserve(struct master *m, size_t n)
{
    if (n <= m->nslots)
        return 0;
    struct slot *s = realloc(m->slots, n * sizeof *s);
    if (!s)
        return -1;
    for (size_t i = m->nslots; i < n; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].status_fd = s[i].cmd_fd = -1;
        ipc_queue_init(&s[i].q, CMD_QUEUE_LIMIT);
    }
    m->slots = s;
    m->nslots = n;
    return 0;
}

static void slot_close_channels(struct master *m, struct slot *s)
{
    if (s->status_fd >= 0) {
        epoll_ctl(m->epfd, EPOLL_CTL_DEL, s->status_fd, NULL);
        close(s->status_fd);
        s->status_fd = -1;
    }
    if (s->cmd_fd >= 0) {
        epoll_ctl(m->epfd, EPOLL_CTL_DEL, s->cmd_fd, NULL);
        close(s->cmd_fd);
        s->cmd_fd = -1;
    }
    ipc_queue_free(&s->q);
    s->cmd_wants_out = false;
}

/* In a new worker: drop every descriptor that belongs to the master. */
static void close_master_fds(struct master *m, size_t keep)
{
    close(m->epfd);
    close(m->sigfd);
    if (m->pidfile_fd >= 0)
        close(m->pidfile_fd);
    if (m->ready_fd >= 0)
        close(m->ready_fd);
    if (m->sd_fd >= 0)
        close(m->sd_fd);
    if (m->upgrade.pipe_fd >= 0)
        close(m->upgrade.pipe_fd);
    control_close_in_child(&m->ctl);
    status_http_close_in_child(&m->shttp);
    apppool_close_in_child(m);
    chatbus_close_in_child(m);
    for (size_t i = 0; i < m->nslots; i++) {
        if (i == keep)
            continue;
        if (m->slots[i].status_fd >= 0)
            close(m->slots[i].status_fd);
        if (m->slots[i].cmd_fd >= 0)
            close(m->slots[i].cmd_fd);
    }
}

/* --- spawning ----------------------------------------------------------- */

/* With per-CPU listeners, slot s runs on the s-th CPU (modulo their count)
 * of the first one's sockets, and accepts on that CPU's socket. */
static int pin_cpu_for(const struct master *m, size_t idx)
{
    for (size_t i = 0; i < m->nls; i++)
        if (m->ls[i].pc.n > 0)
            return m->ls[i].pc.cpu[idx % (size_t)m->ls[i].pc.n];
    return -1;
}

static __attribute__((noreturn)) void run_child(struct master *m, size_t idx,
                                                size_t limit_slot, int status_w, int cmd_r)
{
    close_master_fds(m, idx);
    int fds[m->nls ? m->nls : 1];
    const struct percpu_set *pcs[m->nls ? m->nls : 1];
    for (size_t i = 0; i < m->nls; i++) {
        fds[i] = m->ls[i].fd;
        pcs[i] = m->ls[i].pc.n > 0 ? &m->ls[i].pc : NULL;
    }
    struct worker_args a = {
        .percpu = pcs, .pin_cpu = pin_cpu_for(m, idx),
        .cfg = &m->cfg, .slot = (int)idx, .gen = m->gen,
        .master_pid = getppid(), .status_fd = status_w, .cmd_fd = cmd_r,
        .listen_fds = fds, .board = m->board, .limits = m->limits,
        .limit_slot = limit_slot,
        .listen_ids = m->lstats.nids == m->cfg.nlistens ? m->lstats.ids : NULL,
    };
    worker_main(&a);
}

/* A per-address count table no live worker writes (workers/iplimit.h):
 * a worker moved out of its slot to drain (retire_slot) keeps its table
 * while its replacement takes another. */
static size_t free_limit_slot(const struct master *m)
{
    for (size_t k = 0;; k++) {
        bool used = false;
        for (size_t i = 0; i < m->nslots && !used; i++)
            used = m->slots[i].pid && m->slots[i].limit_slot == k;
        if (!used)
            return k;
    }
}

static int spawn_worker(struct master *m, size_t idx)
{
    struct slot *s = &m->slots[idx];
    size_t limit_slot = free_limit_slot(m);
    int st[2], cm[2];
    iplimit_note_slot(m->limits, limit_slot);   /* before it can count */
    if (ipc_pipe(st) != 0)
        goto fail;
    if (ipc_pipe(cm) != 0) {
        close(st[0]); close(st[1]);
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(st[0]); close(st[1]); close(cm[0]); close(cm[1]);
        goto fail;
    }
    if (pid == 0) {
        close(st[0]);
        close(cm[1]);
        run_child(m, idx, limit_slot, st[1], cm[0]);
    }
    close(st[1]);
    close(cm[0]);
    ipc_queue_free(&s->q);
    free(s->lat);
    memset(s, 0, sizeof *s);
    ipc_reader_init(&s->rd);
    ipc_queue_init(&s->q, CMD_QUEUE_LIMIT);
    s->pid = pid;
    s->gen = m->gen;
    s->status_fd = st[0];
    s->cmd_fd = cm[1];
    s->state = WS_STARTING;
    s->board_slot = idx;
    s->pinned_cpu = pin_cpu_for(m, idx);
    s->limit_slot = limit_slot;
    loadboard_note_slot(m->board, idx);
    s->started_ms = s->last_seen_ms = s->prev_report_ms = m->now_ms;
    s->started_wall = time(NULL);
    epoll_watch(m, EPOLL_CTL_ADD, s->status_fd, EPOLLIN, EV_STATUS, idx);
    log_info("worker slot %zu started, pid %d, generation %u", idx, (int)pid, m->gen);
    return 0;
fail:
    log_error("spawning worker slot %zu: %s; retrying in 1s", idx, strerror(errno));
    s->respawn_at_ms = m->now_ms + 1000;
    return -1;
}

/* Fill every empty slot below target whose back-off has passed. */
static void spawn_missing(struct master *m)
{
    if (m->stopping)
        return;
    for (size_t i = 0; i < m->target; i++) {
        struct slot *s = &m->slots[i];
        if (s->pid == 0 && s->respawn_at_ms <= m->now_ms)
            spawn_worker(m, i);
    }
}

/* --- commands to workers ------------------------------------------------ */

static void flush_commands(struct master *m, size_t idx)
{
    struct slot *s = &m->slots[idx];
    if (s->cmd_fd < 0)
        return;
    int r = ipc_queue_flush(&s->q, s->cmd_fd);
    if (r < 0) {
        /* The worker is gone or going: say so once, send nothing more
         * (later frames are dropped at send_command_payload). */
        log_warn("command pipe of slot %zu pid %d: %s; closing it", idx,
                 (int)s->pid, strerror(errno));
        if (s->cmd_wants_out)
            epoll_ctl(m->epfd, EPOLL_CTL_DEL, s->cmd_fd, NULL);
        close(s->cmd_fd);
        s->cmd_fd = -1;
        s->cmd_wants_out = false;
        ipc_queue_free(&s->q);
        return;
    }
    bool want = r == 0;
    if (want != s->cmd_wants_out) {
        epoll_watch(m, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s->cmd_fd,
                    EPOLLOUT, EV_CMD, idx);
        s->cmd_wants_out = want;
    }
}

/* Drain age counts for the draining cap (cap_draining); the reason shows
 * in status when it exits (a planned retirement, not a restart). */
static void mark_draining(struct master *m, struct slot *s, const char *reason)
{
    s->draining = true;
    s->drain_started_ms = m->now_ms;
    s->retire_reason = reason;
}

static void send_command_payload(struct master *m, size_t idx, uint16_t type,
                                 const void *payload, size_t len)
{
    struct slot *s = &m->slots[idx];
    if (s->pid == 0 || s->cmd_fd < 0)
        return;
    if (ipc_queue_push(&s->q, type, (uint16_t)idx, s->gen, payload, len) == 0) {
        flush_commands(m, idx);
        return;
    }
    if (type < CHAT_HELLO) {
        log_warn("slot %zu is not reading its commands; killing pid %d",
                 idx, (int)s->pid);
        kill(s->pid, SIGKILL);
    } else if (!s->draining && !s->killed) {
        /* Chat traffic outruns it: its clients miss lines from now on, so
         * recycle it; they reconnect to a worker that keeps up. */
        log_warn("slot %zu pid %d is not keeping up with chat traffic (%zu bytes "
                 "queued): dropping its chat lines and recycling it", idx,
                 (int)s->pid, s->q.len);
        mark_draining(m, s, "chat backlog");
        kill(s->pid, SIGTERM);
    }
}

void master_send(struct master *m, size_t slot, uint16_t type,
                 const void *payload, size_t len)
{
    if (slot < m->nslots)
        send_command_payload(m, slot, type, payload, len);
}

static void send_command(struct master *m, size_t idx, uint16_t type)
{
    send_command_payload(m, idx, type, NULL, 0);
}

static void drain_worker(struct master *m, size_t idx, const char *reason)
{
    struct slot *s = &m->slots[idx];
    if (s->pid == 0 || s->draining)
        return;
    mark_draining(m, s, reason);
    send_command(m, idx, IPC_CMD_DRAIN);
}

/* Move a worker out of its slot into a free one at or above target, so the
 * slot can take a replacement at once while the old worker drains. */
static size_t retire_slot(struct master *m, size_t idx)
{
    size_t to = m->target > idx ? m->target : idx + 1;
    while (to < m->nslots && m->slots[to].pid)
        to++;
    if (to >= m->nslots && slots_reserve(m, to + 1) != 0)
        return idx;                 /* no memory: drain in place */
    struct slot *from = &m->slots[idx], *dst = &m->slots[to];
    ipc_queue_free(&dst->q);
    free(dst->lat);
    *dst = *from;
    if (dst->status_fd >= 0)
        epoll_watch(m, EPOLL_CTL_MOD, dst->status_fd, EPOLLIN, EV_STATUS, to);
    if (dst->cmd_wants_out)
        epoll_watch(m, EPOLL_CTL_MOD, dst->cmd_fd, EPOLLOUT, EV_CMD, to);
    memset(from, 0, sizeof *from);
    from->status_fd = from->cmd_fd = -1;
    ipc_queue_init(&from->q, CMD_QUEUE_LIMIT);
    from->respawn_at_ms = m->now_ms;
    return to;
}

/* --- reports from workers ----------------------------------------------- */

static void apply_report(struct master *m, struct slot *s, const struct ipc_msg *msg)
{
    const struct ipc_report *r = (const struct ipc_report *)msg->payload;
    s->last_seen_ms = m->now_ms;
    if (msg->hdr.type == IPC_HEARTBEAT) {
        int64_t dt = m->now_ms - s->prev_report_ms;
        if (dt > 0 && r->requests >= s->prev_report.requests)
            s->req_rate = (double)(r->requests - s->prev_report.requests) * 1000.0 / (double)dt;
        if (dt > 0 && r->cpu_usec >= s->prev_report.cpu_usec)
            s->cpu_pct = (double)(r->cpu_usec - s->prev_report.cpu_usec) / 10.0 / (double)dt;
        s->prev_report = *r;
        s->prev_report_ms = m->now_ms;
    }
    s->report = *r;
    if (r->state < WS_NSTATES)
        s->state = (enum worker_state)r->state;
    if (s->state == WS_DRAINING && !s->draining) {
        mark_draining(m, s, "max_requests");    /* reached: recycling */
        log_info("worker pid %d is recycling after %llu requests", (int)s->pid,
                 (unsigned long long)r->requests);
    }
}

/* Latency records: into the worker's window (made at its first) and its
 * listeners'. An id the master never gave is a protocol error. */
static int apply_latency(struct master *m, struct slot *s, const struct ipc_msg *msg,
                         char *err, size_t errlen)
{
    const unsigned char *p = msg->payload, *end = p + msg->hdr.len;
    struct lat_delta d;
    int r;
    while ((r = lat_decode(&p, end, &d)) == 1) {
        if (d.listener >= m->lstats.n) {
            snprintf(err, errlen, "latency record for unknown listener %u", d.listener);
            return -1;
        }
        if (!d.n)
            continue;
        if (!s->lat)
            s->lat = calloc(1, sizeof *s->lat);
        if (s->lat)
            latwin_add(s->lat, m->now_ms, &d);
        latwin_add(&m->lstats.v[d.listener].win, m->now_ms, &d);
    }
    if (r < 0)
        snprintf(err, errlen, "malformed latency record");
    return r;
}

/* A worker that breaks the protocol is replaced, never trusted further. */
static void reject_worker(struct master *m, size_t idx, const char *why)
{
    struct slot *s = &m->slots[idx];
    log_error("worker slot %zu pid %d: bad message on its status pipe: %s; "
              "replacing it", idx, (int)s->pid, why);
    slot_close_channels(m, s);
    if (!s->killed)
        kill(s->pid, SIGKILL);
    s->killed = true;
}

/* Take every complete frame in the reader. 0, or -1 after rejecting. */
static int read_frames(struct master *m, size_t idx)
{
    struct slot *s = &m->slots[idx];
    struct ipc_msg msg;
    char err[160];
    int r;
    while ((r = ipc_reader_next(&s->rd, &msg, err, sizeof err)) == 1) {
        if (msg.hdr.type >= CHAT_HELLO && msg.hdr.type <= CHAT_BYE) {
            chat_handle(m, idx, &msg);
            continue;
        }
        if (msg.hdr.type == IPC_LATENCY) {
            if ((r = apply_latency(m, s, &msg, err, sizeof err)) < 0)
                break;
            continue;
        }
        if (msg.hdr.type != IPC_STATE && msg.hdr.type != IPC_HEARTBEAT) {
            snprintf(err, sizeof err, "unexpected message type %u", msg.hdr.type);
            r = -1;
            break;
        }
        apply_report(m, s, &msg);
    }
    if (r < 0) {
        reject_worker(m, idx, err);
        return -1;
    }
    return 0;
}

static void on_status(struct master *m, size_t idx)
{
    struct slot *s = &m->slots[idx];
    ssize_t n = ipc_reader_fill(&s->rd, s->status_fd);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        /* EOF: the worker exited (SIGCHLD follows) or closed its end. */
        epoll_ctl(m->epfd, EPOLL_CTL_DEL, s->status_fd, NULL);
        close(s->status_fd);
        s->status_fd = -1;
        return;
    }
    if (read_frames(m, idx) != 0)
        return;
    if (s->draining && idx < m->target && !m->stopping)
        retire_slot(m, idx);        /* the replacement starts now */
}

/* An exited worker's last reports may still sit in its pipe: read them
 * before closing, or the totals would lose its final counters. */
static void read_last_reports(struct master *m, size_t idx)
{
    struct slot *s = &m->slots[idx];
    while (s->status_fd >= 0 && ipc_reader_fill(&s->rd, s->status_fd) > 0)
        if (read_frames(m, idx) != 0)
            return;
}

/* --- reaping ------------------------------------------------------------ */

void master_describe_exit(int status, char *buf, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
}

static void record_exit(struct master *m, size_t idx, int status, int64_t lived,
                        const char *retired)
{
    struct exit_record *e = &m->exits[m->nexits++ % EXIT_RING];
    *e = (struct exit_record){ .pid = m->slots[idx].pid, .slot = (int)idx,
        .status = status, .when = time(NULL), .lived_ms = lived, .retired = retired };
    if (retired) {
        m->retirements++;
        m->last_retired = *e;
    } else {
        m->restarts++;
        m->last_restart = *e;
    }
}

int64_t master_backoff_ms(unsigned streak)
{
    int64_t delay = BACKOFF_BASE_MS;
    for (unsigned i = 1; i < streak && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    return delay < BACKOFF_MAX_MS ? delay : BACKOFF_MAX_MS;
}

/* Back-off: a worker that dies young without having served anything is a
 * crash loop and lengthens the wait before the next. One killed after
 * serving (an operator's kill, the OOM killer under load) is replaced now. */
static void schedule_respawn(struct master *m, size_t idx, int64_t lived)
{
    struct slot *s = &m->slots[idx];
    if (lived >= MASTER_EARLY_DEATH_MS || s->report.requests > 0) {
        m->crash_streak = 0;
        s->respawn_at_ms = m->now_ms;
        return;
    }
    m->crash_streak++;
    int64_t delay = master_backoff_ms(m->crash_streak);
    s->respawn_at_ms = m->now_ms + delay;
    log_warn("crash loop: %u workers in a row died within %d ms of start, serving nothing; "
             "respawning slot %zu in %lld ms", m->crash_streak, MASTER_EARLY_DEATH_MS,
             idx, (long long)delay);
}

static void worker_exited(struct master *m, size_t idx, int status)
{
    struct slot *s = &m->slots[idx];
    int64_t lived = m->now_ms - s->started_ms;
    s->killed = true;               /* reaped: its pid must not be signalled */
    read_last_reports(m, idx);
    chat_worker_gone(m, s->pid);
    loadboard_clear(m->board, s->board_slot, s->pid);
    iplimit_clear_slot(m->limits, s->limit_slot);     /* its connections are gone */
    char how[96];
    master_describe_exit(status, how, sizeof how);
    bool expected = s->draining || m->stopping;
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    log_msg(expected && clean ? LOG_LVL_INFO : LOG_LVL_WARN,
            "worker slot %zu pid %d %s after %.3fs", idx, (int)s->pid, how,
            (double)lived / 1000.0);
    record_exit(m, idx, status, lived,
                !expected ? NULL : s->retire_reason ? s->retire_reason : "stop");
    m->retired.accepted += s->report.accepted;
    m->retired.requests += s->report.requests;
    m->retired.bytes_in += s->report.bytes_in;
    m->retired.bytes_out += s->report.bytes_out;
    m->retired.proxy_rejected += s->report.proxy_rejected;
    m->retired.limited += s->report.limited;
    slot_close_channels(m, s);
    free(s->lat);
    s->lat = NULL;
    s->pid = 0;
    s->state = WS_STARTING;
    if (!m->ready && !expected && !m->stopping) {
        char why[160];
        snprintf(why, sizeof why, "worker slot %zu %s during start-up", idx, how);
        master_abort_start(m, why);
        return;
    }
    if (idx < m->target && !m->stopping)
        schedule_respawn(m, idx, expected ? MASTER_EARLY_DEATH_MS : lived);
}

static void reap_children(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        bool found = false;
        for (size_t i = 0; i < m->nslots && !found; i++) {
            if (m->slots[i].pid == pid) {
                worker_exited(m, i, status);
                found = true;
            }
        }
        if (!found && !upgrade_reaped(m, pid, status))
            apppool_reaped(m, pid, status);
    }
    if (pid < 0 && errno != ECHILD)
        log_error("waitpid: %s", strerror(errno));
}

/* --- stopping ----------------------------------------------------------- */

void master_abort_start(struct master *m, const char *why)
{
    if (m->stopping)
        return;
    daemon_ready(m->ready_fd, why);
    m->ready_fd = -1;
    log_error("%s; stopping", why);
    m->stopping = m->stop_now = true;
    m->stop_deadline_ms = m->now_ms + QUIT_GRACE_MS;
    apppool_stop(m, true);
}

/* graceful_stop_delay: /healthz says draining at once, and the listeners
 * stay open that long, so a load balancer stops sending before anything
 * is refused. A second TERM waits too; INT or QUIT stop at once. */
static void begin_stop(struct master *m, bool now)
{
    if (m->stopping && (m->stop_now || !now))
        return;
    upgrade_abort(m, "the master was told to stop");
    master_set_health(m, false);
    if (!now && !m->stopping && m->cfg.graceful_stop_delay > 0 && m->ready &&
        (!m->stop_at_ms || m->now_ms < m->stop_at_ms)) {
        if (!m->stop_at_ms) {
            m->stop_at_ms = m->now_ms + (int64_t)m->cfg.graceful_stop_delay * 1000;
            log_info("graceful stop in %d s (graceful_stop_delay); serving until then",
                     m->cfg.graceful_stop_delay);
        }
        return;
    }
    m->stop_at_ms = 0;
    m->stopping = true;
    m->stop_now = now;
    sdnotify_send(m->sd_fd, "STOPPING=1");
    log_info("%s stop: %zu workers", now ? "immediate" : "graceful", live_workers(m));
    /* Stop accepting: our copies of the listeners go first. */
    listeners_close_all(m->ls, m->nls);
    m->ls = NULL;
    m->nls = 0;
    apppool_stop(m, now);
    if (now) {
        for (size_t i = 0; i < m->nslots; i++)
            if (m->slots[i].pid)
                kill(m->slots[i].pid, SIGQUIT);
        m->stop_deadline_ms = m->now_ms + QUIT_GRACE_MS;
        return;
    }
    for (size_t i = 0; i < m->nslots; i++)
        drain_worker(m, i, "stop");
    /* Workers enforce graceful_timeout themselves; this is the backstop. */
    m->stop_deadline_ms = m->now_ms + (int64_t)m->cfg.graceful_timeout * 1000 + 1000;
}

/* After a hot upgrade's hand-over: no graceful_stop_delay, the new master
 * serves the same sockets already. */
void master_begin_stop(struct master *m)
{
    m->stop_at_ms = m->now_ms;
    begin_stop(m, false);
}

void master_set_health(struct master *m, bool ok)
{
    ok = ok && !m->stopping && !m->stop_at_ms;
    if (ok == !m->health_draining)
        return;
    m->health_draining = !ok;
    if (m->shttp.lfd >= 0)
        log_info("/healthz now answers %s", ok ? "200 ok" : "503 draining");
}

/* Past the deadline: SIGKILL what is left, then give up waiting. */
static void enforce_stop_deadline(struct master *m)
{
    if (!m->stopping || m->now_ms < m->stop_deadline_ms)
        return;
    if (m->stop_kills++ > 0)
        return;
    for (size_t i = 0; i < m->nslots; i++) {
        if (m->slots[i].pid) {
            log_warn("worker slot %zu pid %d still running at the stop deadline; "
                     "SIGKILL", i, (int)m->slots[i].pid);
            kill(m->slots[i].pid, SIGKILL);
        }
    }
    apppool_kill_all(m);
    m->stop_deadline_ms = m->now_ms + 1000;
}

/* --- signals ------------------------------------------------------------ */

static void scale_by(struct master *m, int delta)
{
    if (m->stopping)
        return;
    if (!config_builtin_listens(&m->cfg)) {
        log_warn("no built-in listeners, so no built-in workers to scale; "
                 "use `preforkctl scale N --pool NAME` for an app pool");
        return;
    }
    if (delta > 0) {
        if (slots_reserve(m, m->target + 1) != 0)
            return;
        m->target++;
    } else if (m->target > 1) {
        m->target--;
        drain_worker(m, m->target, "scale down");
    }
    log_info("worker count now %zu", m->target);
}

/* Workers that run as `user` reopen log files themselves after rotation:
 * create them first, owned by that user, so they can. */
static void prepare_log_file(const struct master *m, const char *path)
{
    if (!m->cfg.user[0] || geteuid() != 0 || path[0] != '/')
        return;
    struct passwd *pw = getpwnam(m->cfg.user);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 || !pw || fchown(fd, pw->pw_uid, pw->pw_gid) != 0)
        log_warn("log file %s for user %s: %s", path, m->cfg.user, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static void prepare_log_files(const struct master *m)
{
    prepare_log_file(m, m->cfg.error_log);
    if (m->cfg.http.access_log[0])
        prepare_log_file(m, m->cfg.http.access_log);
    for (size_t i = 0; i < m->cfg.nsites; i++)
        if (m->cfg.sites[i].access_log[0])
            prepare_log_file(m, m->cfg.sites[i].access_log);
}

static void reopen_logs(struct master *m)
{
    prepare_log_files(m);
    log_reopen();
    log_info("log files reopened");
    for (size_t i = 0; i < m->nslots; i++)
        send_command(m, i, IPC_CMD_REOPEN);
}

/* Workers inherit the master's limit: raise it before they fork. */
static void apply_fd_limit(struct master *m)
{
    char msg[512];
    m->fds = fdlimit_check(&m->cfg, true, msg, sizeof msg);
    if (msg[0])
        log_warn("descriptors: %s", msg);
}

/* --- reload ------------------------------------------------------------- */

static bool ls_is_shared(const struct master *m, int fd)
{
    for (size_t j = 0; j < m->nls; j++)
        if (m->ls[j].fd == fd)
            return true;
    return false;
}

/* The new set of listeners: an unchanged address keeps its socket (no
 * connection refused during the swap), a new one is bound. On failure
 * nothing changes. */
/* A kept socket keeps its accept mode: per-CPU sockets are SO_REUSEPORT
 * and a shared one is not, so neither kind can be bound beside the other
 * on the same address. The new mode needs a restart (or a removal of the
 * listen entry and a reload, then its return and another). */
static void keep_accept_mode(struct listener *l, char *note, size_t cap)
{
    enum accept_mode now = l->pc.n > 0 ? ACCEPT_PER_CPU : ACCEPT_SHARED;
    if (l->conf.accept == now || l->conf.addr.socktype != SOCK_STREAM ||
        l->conf.addr.sa.ss_family == AF_UNIX)
        return;
    log_warn("reload: listen %s: changing accept mode needs a restart; keeping \"%s\"",
             l->conf.addr.text, listener_accept_name(l));
    size_t len = strlen(note);
    snprintf(note + len, cap - len, "%saccept of %s needs a restart", len ? "; " : "",
             l->conf.addr.text);
    l->conf.accept = now;
}

static int build_listeners(struct master *m, const struct config *cfg,
                           struct listener **out, char *note, size_t notecap,
                           char *err, size_t errlen)
{
    struct listener *ls = calloc(cfg->nlistens, sizeof *ls);
    if (!ls) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->nlistens; i++) {
        ls[i].fd = -1;
        for (size_t j = 0; j < m->nls && ls[i].fd < 0; j++) {
            if (m->ls[j].fd >= 0 && address_equal(&m->ls[j].conf.addr, &cfg->listens[i].addr)) {
                ls[i] = m->ls[j];       /* its socket(s), per-CPU ones too */
                ls[i].conf = cfg->listens[i];
            }
        }
        if (ls[i].fd >= 0) {
            listener_relisten(&ls[i]);  /* a new backlog applies */
            keep_accept_mode(&ls[i], note, notecap);
            continue;
        }
        if (listener_open(&ls[i], &cfg->listens[i], err, errlen) != 0) {
            for (size_t k = 0; k < i; k++)
                if (!ls_is_shared(m, ls[k].fd))
                    listener_close(&ls[k]);
            free(ls);
            return -1;
        }
    }
    *out = ls;
    return 0;
}

/* Close the old listeners that the new set does not reuse. */
static void replace_listeners(struct master *m, struct listener *ls, size_t n)
{
    for (size_t j = 0; j < m->nls; j++) {
        bool kept = false;
        for (size_t i = 0; i < n; i++)
            kept = kept || ls[i].fd == m->ls[j].fd;
        if (!kept) {
            char d[400];
            log_info("closing listener %s", listener_describe(&m->ls[j], d, sizeof d));
            listener_close(&m->ls[j]);
        }
    }
    free(m->ls);
    m->ls = ls;
    m->nls = n;
}

/* Settings the running master cannot change: keep the old, say so. */
static void keep_restart_settings(struct master *m, struct config *cfg, char *note, size_t cap)
{
    struct { const char *name; char *now, *next; size_t size; } fixed[] = {
        { "pidfile", m->cfg.pidfile, cfg->pidfile, sizeof cfg->pidfile },
        { "control_socket", m->cfg.control_socket, cfg->control_socket, sizeof cfg->control_socket },
        { "user", m->cfg.user, cfg->user, sizeof cfg->user },
    };
    note[0] = '\0';
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (strcmp(fixed[i].now, fixed[i].next) == 0)
            continue;
        log_warn("reload: %s changed; this needs a restart, keeping \"%s\"",
                 fixed[i].name, fixed[i].now);
        size_t len = strlen(note);
        snprintf(note + len, cap - len, "%s%s needs a restart", len ? "; " : "", fixed[i].name);
        snprintf(fixed[i].next, fixed[i].size, "%s", fixed[i].now);
    }
}

static struct slot *oldest_draining(struct master *m, size_t *count)
{
    struct slot *oldest = NULL;
    *count = 0;
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = &m->slots[i];
        if (!s->pid || !s->draining || s->killed)
            continue;
        ++*count;
        if (!oldest || s->drain_started_ms < oldest->drain_started_ms)
            oldest = s;
    }
    return oldest;
}

/* Too many generations draining at once: stop the oldest (see the caps).
 * Called every loop turn (a reload's included), as drains age. */
static void cap_draining(struct master *m)
{
    size_t per = m->target ? m->target : 1;  /* all built-in listeners removed */
    size_t cap = per * DRAINING_CAP_PER_WORKER;
    size_t hard = per * DRAINING_HARD_CAP_PER_WORKER, draining;
    struct slot *oldest;
    while ((oldest = oldest_draining(m, &draining)) && draining > cap) {
        if (draining <= hard && m->now_ms - oldest->drain_started_ms < DRAIN_CAP_AGE_MS)
            return;
        log_warn("%zu workers draining (cap %zu): stopping the oldest, pid %d",
                 draining, draining > hard ? hard : cap, (int)oldest->pid);
        kill(oldest->pid, SIGQUIT);
        oldest->killed = true;
    }
}

/* Old generation out of its slots and draining; the new one spawns. */
static void start_generation(struct master *m, size_t new_target)
{
    size_t old_target = m->target;
    m->gen++;
    m->target = old_target > new_target ? old_target : new_target;
    for (size_t i = 0; i < old_target; i++) {
        if (m->slots[i].pid)
            drain_worker(m, retire_slot(m, i), "reload");
        m->slots[i].respawn_at_ms = m->now_ms;
    }
    m->target = new_target;
    if (slots_reserve(m, new_target) != 0)
        log_error("reload: out of memory for %zu slots", new_target);
    for (size_t i = 0; i < m->target; i++)
        if (!m->slots[i].pid)
            m->slots[i].respawn_at_ms = m->now_ms;
}

static void reject_reload(struct master *m, const char *why)
{
    m->last_reload = RELOAD_REJECTED;
    snprintf(m->last_reload_msg, sizeof m->last_reload_msg, "%s", why);
    log_error("reload rejected, still serving generation %u: %s", m->gen, why);
}

static void reload(struct master *m)
{
    struct config cfg;
    struct listener *ls;
    char err[512], note[256];
    m->reloads++;
    m->last_reload_wall = time(NULL);
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    sdnotify_send(m->sd_fd, "RELOADING=1\nMONOTONIC_USEC=%llu",
                  (unsigned long long)mono.tv_sec * 1000000ull +
                  (unsigned long long)mono.tv_nsec / 1000);
    m->sd_reloading = m->sd_fd >= 0;
    if (m->stopping || m->stop_at_ms)
        return reject_reload(m, "stopping");
    if (config_load(m->cfg.path, &cfg, err, sizeof err) != 0)
        return reject_reload(m, err);
    if (tlsctx_load(&cfg, err, sizeof err) != 0) {
        config_free(&cfg);      /* the old certificates keep serving */
        return reject_reload(m, err);
    }
    keep_restart_settings(m, &cfg, note, sizeof note);
    if (build_listeners(m, &cfg, &ls, note, sizeof note, err, sizeof err) != 0) {
        tlsctx_free(&cfg);
        config_free(&cfg);
        return reject_reload(m, err);
    }
    if (status_http_reconfigure(&m->shttp, &cfg, err, sizeof err) != 0) {
        for (size_t i = 0; i < cfg.nlistens; i++)
            if (!ls_is_shared(m, ls[i].fd))
                listener_close(&ls[i]);
        free(ls);
        tlsctx_free(&cfg);
        config_free(&cfg);
        return reject_reload(m, err);
    }
    replace_listeners(m, ls, cfg.nlistens);
    if (log_open(cfg.error_log, cfg.log_level, err, sizeof err) != 0)
        log_error("reload: %s (keeping the old log)", err);
    tlsctx_free(&m->cfg);       /* old workers have their own copy */
    config_free(&m->cfg);
    m->cfg = cfg;
    apply_fd_limit(m);
    prepare_log_files(m);
    if (lstats_assign(&m->lstats, &m->cfg, m->now_ms) != 0)
        log_error("reload: out of memory for latency figures; the new workers send none");
    m->last_reload = RELOAD_PENDING;
    snprintf(m->last_reload_msg, sizeof m->last_reload_msg, "%s", note);
    start_generation(m, builtin_target(&m->cfg));
    log_info("reload: generation %u with %zu workers, %zu listeners%s%s", m->gen,
             m->target, m->nls, note[0] ? "; " : "", note);
    chatbus_reconfigure(m);
    apppool_reload(m);              /* the verdict waits for their deploys */
}

static void on_signal(struct master *m)
{
    struct signalfd_siginfo si;
    ssize_t n;
    while ((n = read(m->sigfd, &si, sizeof si)) == sizeof si) {
        switch (si.ssi_signo) {
        case SIGCHLD: reap_children(m); break;
        case SIGTERM: begin_stop(m, false); break;
        case SIGINT:
        case SIGQUIT: begin_stop(m, true); break;
        case SIGUSR1: reopen_logs(m); break;
        case SIGTTIN: scale_by(m, +1); break;
        case SIGTTOU: scale_by(m, -1); break;
        case SIGHUP: reload(m); break;
        case SIGUSR2: upgrade_start(m); break;
        }
    }
    if (n < 0 && errno != EAGAIN)
        log_error("signalfd read: %s", strerror(errno));
}

static const int master_signals[] = {
    SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGHUP, SIGTTIN, SIGTTOU,
};

static int setup_signalfd(struct master *m)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof master_signals / sizeof master_signals[0]; i++)
        sigaddset(&set, master_signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    m->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m->sigfd < 0)
        return -1;
    return epoll_watch(m, EPOLL_CTL_ADD, m->sigfd, EPOLLIN, EV_SIGNAL, 0);
}

/* --- timers: watchdog, readiness ---------------------------------------- */

/* Moves the clock to now; from due_ms to now the master should have been
 * running. More than OVERSLEPT_MS late, it was not (a VM or host stall,
 * SIGSTOP), and most likely its workers were not either, so silence during
 * that time says nothing about them: without this, a machine that freezes
 * longer than worker_timeout has every worker killed when it thaws. */
static void forgive_own_stall(struct master *m, int64_t now_ms, int64_t due_ms)
{
    int64_t late_ms = now_ms - due_ms;
    m->now_ms = now_ms;
    if (late_ms < OVERSLEPT_MS)
        return;
    log_warn("master held up for %.1fs (machine stalled, master stopped or busy); "
             "heartbeat deadlines move by as much", (double)late_ms / 1000.0);
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = &m->slots[i];
        if (s->pid)
            s->last_seen_ms = s->last_seen_ms + late_ms < now_ms ?
                              s->last_seen_ms + late_ms : now_ms;
    }
    apppool_forgive(m, late_ms);
}

/* A worker whose heartbeat is overdue (an endless loop, SIGSTOP) is killed
 * and replaced; its exit is then handled like any other. */
static void check_heartbeats(struct master *m)
{
    int64_t limit = (int64_t)m->cfg.worker_timeout * 1000;
    for (size_t i = 0; i < m->nslots; i++) {
        struct slot *s = &m->slots[i];
        if (s->pid == 0 || s->killed || m->now_ms - s->last_seen_ms <= limit)
            continue;
        log_error("worker slot %zu pid %d unresponsive: no heartbeat for %.1fs "
                  "(worker_timeout %d); SIGKILL", i, (int)s->pid,
                  (double)(m->now_ms - s->last_seen_ms) / 1000.0,
                  m->cfg.worker_timeout);
        kill(s->pid, SIGKILL);
        s->killed = true;
    }
}

static void check_ready(struct master *m)
{
    if (m->ready || m->stopping || !apppool_settled(m))
        return;
    for (size_t i = 0; i < m->target; i++)
        if (m->slots[i].pid == 0 || m->slots[i].state == WS_STARTING)
            return;
    m->ready = true;
    if (m->pidfile_fd >= 0 && pidfile_write(m->pidfile_fd, getpid()) != 0) {
        log_error("pidfile %s: %s", m->cfg.pidfile, strerror(errno));
        daemon_ready(m->ready_fd, "cannot write the pidfile");
        m->ready_fd = -1;
        begin_stop(m, true);
        return;
    }
    log_info("ready: %zu workers, %zu listeners, generation %u", m->target,
             m->nls, m->gen);
    if (control_publish(&m->ctl) != 0)
        log_error("control_socket %s: %s", m->cfg.control_socket, strerror(errno));
    if (m->upgrade.from) {
        char msg[64];
        snprintf(msg, sizeof msg, "upgraded from master %d", (int)m->upgrade.from);
        m->upgrade.last_time = time(NULL);
        m->upgrade.last_ok = true;
        snprintf(m->upgrade.last_msg, sizeof m->upgrade.last_msg, "%s", msg);
        log_info("upgrade: %s", msg);
    }
    daemon_ready(m->ready_fd, NULL);
    m->ready_fd = -1;
    sdnotify_send(m->sd_fd, "READY=1\nMAINPID=%d", (int)getpid());
}

/* --- systemd: reload verdicts, STATUS=, the watchdog -------------------- */

static void systemd_status(struct master *m)
{
    char status[sizeof m->sd_status];
    double rate = 0;
    size_t n = 0;
    for (size_t i = 0; i < m->nslots; i++) {
        if (m->slots[i].pid) {
            rate += m->slots[i].req_rate;
            n++;
        }
    }
    snprintf(status, sizeof status, "generation %u: %zu workers, %zu app workers, %.0f req/s%s",
             m->gen, n, apppool_live(m), rate, m->crash_streak ? ", CRASH LOOP" : "");
    if (strcmp(status, m->sd_status) != 0) {
        snprintf(m->sd_status, sizeof m->sd_status, "%s", status);
        sdnotify_send(m->sd_fd, "STATUS=%s", status);
    }
}

/* Each loop turn: READY=1 once a reload has its verdict (app deploys can
 * take a while), STATUS= once a second when it changed, WATCHDOG=1 at half
 * the period systemd asked for. */
static void notify_systemd(struct master *m)
{
    if (m->sd_fd < 0 || !m->ready)
        return;
    if (m->sd_reloading && m->last_reload != RELOAD_PENDING) {
        m->sd_reloading = false;
        sdnotify_send(m->sd_fd, "READY=1\nSTATUS=reload %s%s%s",
                      m->last_reload == RELOAD_OK ? "applied" :
                      m->last_reload == RELOAD_REJECTED ? "rejected" : "rolled back",
                      m->last_reload == RELOAD_OK ? "" : ": ",
                      m->last_reload == RELOAD_OK ? "" : m->last_reload_msg);
        m->sd_status[0] = '\0';
        m->sd_next_status_ms = m->now_ms + TICK_MS;
    }
    if (m->now_ms >= m->sd_next_status_ms && !m->stopping) {
        systemd_status(m);
        m->sd_next_status_ms = m->now_ms + TICK_MS;
    }
    if (m->sd_watchdog_ms && m->now_ms >= m->sd_next_ping_ms) {
        sdnotify_send(m->sd_fd, "WATCHDOG=1");
        m->sd_next_ping_ms = m->now_ms + m->sd_watchdog_ms / 2;
    }
}

static int64_t next_wakeup(const struct master *m)
{
    int64_t next = m->now_ms + TICK_MS;
    if (m->sd_watchdog_ms && m->sd_next_ping_ms < next)
        next = m->sd_next_ping_ms;
    if (m->stopping && m->stop_deadline_ms < next)
        next = m->stop_deadline_ms;
    if (m->stop_at_ms && m->stop_at_ms < next)
        next = m->stop_at_ms;
    for (size_t i = 0; i < m->target && i < m->nslots; i++)
        if (m->slots[i].pid == 0 && m->slots[i].respawn_at_ms < next)
            next = m->slots[i].respawn_at_ms;
    return apppool_next_wakeup(m, chatbus_next_wakeup(m, next));
}

/* --- the control socket ------------------------------------------------- */

const char *master_slot_state(const struct master *m, const struct slot *s)
{
    static const char *names[] = { "starting", "idle", "busy", "draining" };
    if (s->state != WS_STARTING && !s->draining &&
        m->now_ms - s->last_seen_ms > UNRESPONSIVE_AFTER_MS)
        return "unresponsive";
    if (s->draining)
        return "draining";
    return s->state < WS_NSTATES ? names[s->state] : "unknown";
}

/* "scale N" (built-in workers) or "scale N pool NAME". */
static void handle_scale(struct master *m, const char *arg, struct sbuf *out)
{
    char *end;
    long n = strtol(arg, &end, 10);
    if (*arg != '\0' && strncmp(end, " pool ", 6) == 0)
        return apppool_scale(m, end + 6, n, out);
    if (*arg == '\0' || *end != '\0' || n < 1 || n > 1024) {
        sbuf_printf(out, "error: scale takes a worker count from 1 to 1024\n");
        return;
    }
    if (!config_builtin_listens(&m->cfg)) {
        sbuf_printf(out, "error: no built-in listeners to scale; name an app pool\n");
        return;
    }
    while ((long)m->target < n && !m->stopping)
        scale_by(m, +1);
    while ((long)m->target > n && !m->stopping)
        scale_by(m, -1);
    sbuf_printf(out, "ok: %zu workers\n", m->target);
}

/* Test-only: "fault garbage|oversized SLOT" makes a worker corrupt its
 * status pipe. Enabled by PREFORKD_FAULT_HOOKS=1 in the master's env. */
static void handle_fault(struct master *m, const char *arg, struct sbuf *out)
{
    char kind[16];
    unsigned slot;
    if (!getenv("PREFORKD_FAULT_HOOKS") || sscanf(arg, "%15s %u", kind, &slot) != 2 ||
        slot >= m->nslots || !m->slots[slot].pid) {
        sbuf_printf(out, "error: fault hooks are off or no such slot\n");
        return;
    }
    send_command_payload(m, slot, IPC_CMD_FAULT, kind, strlen(kind));
    sbuf_printf(out, "ok: fault %s sent to slot %u pid %d\n", kind, slot,
                (int)m->slots[slot].pid);
}

static void handle_control(void *ctx, const char *line, struct sbuf *out)
{
    struct master *m = ctx;
    m->now_ms = monotonic_ms();
    if (strcmp(line, "status") == 0)
        status_render(m, STATUS_TEXT, out);
    else if (strcmp(line, "status json") == 0)
        status_render(m, STATUS_JSON, out);
    else if (strcmp(line, "status prometheus") == 0)
        status_render(m, STATUS_PROMETHEUS, out);
    else if (strncmp(line, "scale ", 6) == 0)
        handle_scale(m, line + 6, out);
    else if (strncmp(line, "fault ", 6) == 0)
        handle_fault(m, line + 6, out);
    else
        sbuf_printf(out, "error: unknown command; try: status [json|prometheus], scale N\n");
}

/* --- the loop ----------------------------------------------------------- */

static void dispatch(struct master *m, const struct epoll_event *ee)
{
    enum ev_kind kind = (enum ev_kind)(ee->data.u64 >> 32);
    size_t idx = (size_t)(ee->data.u64 & 0xffffffffu);
    switch (kind) {
    case EV_SIGNAL: on_signal(m); break;
    case EV_STATUS: on_status(m, idx); break;
    case EV_CMD:    flush_commands(m, idx); break;
    case EV_CTL_LISTEN: control_on_listen(&m->ctl, m->now_ms); break;
    case EV_CTL_CLIENT:
        control_on_client(&m->ctl, idx, ee->events, handle_control, m);
        break;
    case EV_APP: apppool_on_event(m, (uint32_t)idx, ee->events); break;
    case EV_UPGRADE: upgrade_on_event(m); break;
    case EV_SHTTP_LISTEN: status_http_on_listen(m, &m->shttp); break;
    case EV_SHTTP_CLIENT: status_http_on_client(m, &m->shttp, idx, ee->events); break;
    case EV_BUS: chatbus_on_event(m, idx, ee->events); break;
    }
}

/* Session ticket keys to every worker when they rotate (the master's own
 * copy changed too, for the workers it forks next). */
static void rotate_ticket_keys(struct master *m)
{
    unsigned char keys[IPC_TLS_KEYS_SIZE];
    if (!tlsctx_keys_rotate(m->now_ms, keys))
        return;
    if (tlsctx_any(&m->cfg))
        for (size_t i = 0; i < m->nslots; i++)
            send_command_payload(m, i, IPC_CMD_TLS_KEYS, keys, sizeof keys);
    OPENSSL_cleanse(keys, sizeof keys);
}

static void run_loop(struct master *m)
{
    struct epoll_event evs[64];
    /* Stopped: no worker left and no status client owed an answer (each
     * has a deadline), or past the stop deadline's SIGKILL round. */
    while (!(m->stopping && live_workers(m) == 0 && status_http_clients(&m->shttp) == 0) &&
           !(m->stopping && m->stop_kills > 1)) {
        /* A turn's work takes milliseconds: longer, the master was stopped. */
        forgive_own_stall(m, monotonic_ms(), m->now_ms);
        int64_t timeout = next_wakeup(m) - m->now_ms;
        if (timeout < 0)
            timeout = 0;
        int n = epoll_wait(m->epfd, evs, 64, (int)timeout);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait: %s", strerror(errno));
            break;
        }
        forgive_own_stall(m, monotonic_ms(), m->now_ms + timeout);
        for (int i = 0; i < n; i++)
            dispatch(m, &evs[i]);
        spawn_missing(m);
        apppool_tick(m);
        cap_draining(m);
        check_heartbeats(m);
        check_ready(m);
        notify_systemd(m);
        upgrade_tick(m);
        if (m->stop_at_ms && m->now_ms >= m->stop_at_ms)
            begin_stop(m, false);   /* graceful_stop_delay is over */
        enforce_stop_deadline(m);
        control_expire(&m->ctl, m->now_ms);
        status_http_expire(&m->shttp, m->now_ms);
        lstats_tick(&m->lstats, m->now_ms);
        chatbus_tick(m);
        rotate_ticket_keys(m);
    }
}

static void cleanup(struct master *m)
{
    if (m->upgrade.handed_over) {
        control_keep_path(&m->ctl);     /* the new master's now */
        if (m->pidfile_fd >= 0)
            close(m->pidfile_fd);
        m->pidfile_fd = -1;
    }
    control_close(&m->ctl);
    status_http_close(&m->shttp);
    chatbus_free(m);
    chat_free(m);
    apppool_free(m);
    for (size_t i = 0; i < m->nslots; i++) {
        slot_close_channels(m, &m->slots[i]);
        free(m->slots[i].lat);
    }
    free(m->slots);
    lstats_free(&m->lstats);
    if (m->ls)
        listeners_close_all(m->ls, m->nls);
    if (m->pidfile_fd >= 0)
        pidfile_remove(m->cfg.pidfile, m->pidfile_fd);
    close(m->sigfd);
    close(m->epfd);
    if (m->sd_fd >= 0)
        close(m->sd_fd);
}

int master_run(struct master *m)
{
    m->now_ms = monotonic_ms();
    m->started_wall = time(NULL);
    m->gen = 1;
    m->target = builtin_target(&m->cfg);
    m->sigfd = -1;
    log_set_role("master");
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (m->epfd < 0 || setup_signalfd(m) != 0 || slots_reserve(m, m->target) != 0) {
        log_error("master set-up: %s", strerror(errno));
        daemon_ready(m->ready_fd, "master set-up failed");
        return 1;
    }
    char err[512];
    if (control_open(&m->ctl, m->cfg.control_socket, m->upgrade.from != 0, m->epfd,
                     ev_data(EV_CTL_LISTEN, 0),
                     ev_data(EV_CTL_CLIENT, 0), err, sizeof err) != 0) {
        log_error("%s", err);
        daemon_ready(m->ready_fd, err);
        return 1;
    }
    if (status_http_watch(&m->shttp, m->epfd, ev_data(EV_SHTTP_LISTEN, 0),
                          ev_data(EV_SHTTP_CLIENT, 0)) != 0) {
        snprintf(err, sizeof err, "status_listen: epoll: %s", strerror(errno));
        log_error("%s", err);
        daemon_ready(m->ready_fd, err);
        return 1;
    }
    if (m->shttp.lfd >= 0)
        log_info("status listener on http://%s/", m->shttp.addr.text);
    if (lstats_assign(&m->lstats, &m->cfg, m->now_ms) != 0)
        log_error("out of memory for latency figures; workers send none");
    if (geteuid() == 0 && !m->cfg.user[0])
        log_warn("running as root without `user`: workers keep root privileges; "
                 "set user = \"www-data\" (or another unprivileged user) in %s",
                 m->cfg.path);
    prepare_log_files(m);
    apply_fd_limit(m);
    m->sd_fd = sdnotify_open(m->sd_socket, sizeof m->sd_socket);
    m->sd_watchdog_ms = sdnotify_watchdog_ms();
    m->board = loadboard_create();
    if (chatbus_start(m) != 0)
        log_error("chat bus: out of memory; chat stays on this instance");
    if (tlsctx_keys_init(m->now_ms) != 0)
        master_abort_start(m, "no TLS session ticket keys (no randomness, or no AES-256-CBC)");
    if (tlsctx_any(&m->cfg))
        log_info("%s", tlsctx_file_path());
    m->limits = iplimit_create();
    spawn_missing(m);
    if (apppool_start(m) != 0)
        master_abort_start(m, "out of memory starting the app pools");
    run_loop(m);
    bool failed = !m->ready;
    log_info("stopped");
    cleanup(m);
    tlsctx_free(&m->cfg);
    config_free(&m->cfg);
    return failed ? 1 : 0;
}
