/* status: client side of the control socket. The master answers every
 * request itself, so status works when every worker is busy or stopped. */
#include "server/status.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/chatbus.h"
#include "server/config.h"

#define CONTROL_TIMEOUT_MS 5000

static int connect_unix(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int read_answer(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    for (;;) {
        int r = poll(&pfd, 1, CONTROL_TIMEOUT_MS);
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n == 0 || len + (size_t)(n > 0 ? n : 0) >= cap - 1) {
            len += n > 0 ? (size_t)n : 0;
            break;
        }
        len += n > 0 ? (size_t)n : 0;
    }
    buf[len] = '\0';
    return 0;
}

int control_request(const char *sock_path, const char *line, char *buf, size_t cap)
{
    int fd = connect_unix(sock_path);
    if (fd < 0)
        return -1;
    size_t len = strlen(line);
    int rc = -1;
    if (write(fd, line, len) == (ssize_t)len && write(fd, "\n", 1) == 1)
        rc = read_answer(fd, buf, cap);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* The master must answer even when its file was just broken by an edit:
 * then only control_socket is read from it, leniently. */
static int find_control_socket(const char *conf_path, char *sock, size_t cap)
{
    struct config cfg;
    char err[1024];
    if (config_load(conf_path, &cfg, err, sizeof err) == 0) {
        snprintf(sock, cap, "%s", cfg.control_socket);
        config_free(&cfg);
        return 0;
    }
    if (config_peek_path(conf_path, "control_socket", sock, cap) != 0) {
        fprintf(stderr, "preforkd: %s\n", err);
        return -1;
    }
    fprintf(stderr, "preforkd: warning: %s\n", err);
    return 0;
}

int status_client(const char *conf_path, enum status_format fmt)
{
    static const char *const cmds[] = { "status", "status json", "status prometheus" };
    return control_client(conf_path, cmds[fmt]);
}

int control_client(const char *conf_path, const char *line)
{
    char sock[PATH_MAX];
    if (find_control_socket(conf_path, sock, sizeof sock) != 0)
        return 1;
    static char answer[4 << 20];
    int rc = control_request(sock, line, answer, sizeof answer);
    int e = errno;
    if (rc != 0) {
        fprintf(stderr, "preforkd: %s: %s\n", sock, strerror(e));
        return (e == ENOENT || e == ECONNREFUSED) ? 3 : 1;
    }
    fputs(answer, stdout);
    return strncmp(answer, "error", 5) == 0 ? 1 : 0;
}

/* --- rendering (master side) -------------------------------------------- */

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>

#include "server/master.h"

#define PREFORKD_VERSION_STR "0.1.0"

struct slot_view {
    const struct slot *s;
    size_t idx;
    const char *state;
    double up_s, seen_s, cpu_s;
    uint64_t rss;
};

struct listen_view { int queue, backlog; };

static const char *fmt_duration(double s, char *buf, size_t cap)
{
    long t = (long)s;
    if (s < 10)
        snprintf(buf, cap, "%.1fs", s);
    else if (t < 60)
        snprintf(buf, cap, "%lds", t);
    else if (t < 3600)
        snprintf(buf, cap, "%ldm", t / 60);
    else if (t < 86400)
        snprintf(buf, cap, "%ldh%ldm", t / 3600, t % 3600 / 60);
    else
        snprintf(buf, cap, "%ldd%ldh", t / 86400, t % 86400 / 3600);
    return buf;
}

static const char *fmt_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char units[] = "KMGTP";
    if (n < 1024) {
        snprintf(buf, cap, "%llu", (unsigned long long)n);
        return buf;
    }
    double v = (double)n;
    int u = -1;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, v < 10 ? "%.1f%c" : "%.0f%c", v, units[u]);
    return buf;
}

/* Current accept queue of a listening TCP socket, from the kernel:
 * tcpi_unacked is the queue length, tcpi_sacked the backlog. A per-CPU
 * listener's is the sum over its sockets (each has the backlog). */
static struct listen_view listen_queue(const struct listener *l)
{
    struct listen_view v = { -1, l->conf.backlog };
    int fam = l->conf.addr.sa.ss_family;
    if (l->conf.addr.socktype != SOCK_STREAM || fam == AF_UNIX || l->fd < 0)
        return v;
    if (l->pc.n == 0) {
        v.queue = percpu_queue(l->fd, &v.backlog);
        return v;
    }
    for (int i = 0; i < l->pc.n; i++) {
        int q = percpu_queue(l->pc.fd[i], &v.backlog);
        if (q >= 0)
            v.queue = (v.queue < 0 ? 0 : v.queue) + q;
    }
    return v;
}

/* "queues":[{"cpu":0,"queue":3},...] for a per-CPU listener, else null. */
static void json_queues(struct sbuf *o, const struct listener *l)
{
    sbuf_printf(o, ",\"accept\":\"%s\",\"queues\":", listener_accept_name(l));
    if (l->pc.n == 0) {
        sbuf_printf(o, "null");
        return;
    }
    for (int i = 0; i < l->pc.n; i++) {
        int q = percpu_queue(l->pc.fd[i], NULL);
        sbuf_printf(o, "%s{\"cpu\":%d,\"queue\":", i ? "," : "[", l->pc.cpu[i]);
        sbuf_printf(o, q >= 0 ? "%d}" : "null}", q);
    }
    sbuf_printf(o, "]");
}

static uint64_t process_rss(pid_t pid)
{
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unsigned long size = 0, resident = 0;
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static struct slot_view view_slot(const struct master *m, size_t idx)
{
    const struct slot *s = &m->slots[idx];
    struct slot_view v = { .s = s, .idx = idx };
    v.state = master_slot_state(m, s);
    v.up_s = (double)(m->now_ms - s->started_ms) / 1000.0;
    v.seen_s = (double)(m->now_ms - s->last_seen_ms) / 1000.0;
    v.cpu_s = (double)s->report.cpu_usec / 1e6;
    v.rss = process_rss(s->pid);
    return v;
}

static void sum_totals(const struct master *m, struct totals *t, uint64_t *active)
{
    *t = m->retired;
    *active = 0;
    for (size_t i = 0; i < m->nslots; i++) {
        const struct slot *s = &m->slots[i];
        if (!s->pid)
            continue;
        t->accepted += s->report.accepted;
        t->requests += s->report.requests;
        t->bytes_in += s->report.bytes_in;
        t->bytes_out += s->report.bytes_out;
        t->proxy_rejected += s->report.proxy_rejected;
        t->limited += s->report.limited;
        *active += s->report.active;
    }
}

/* --- latency ------------------------------------------------------------ */

static const struct lstat *listener_lat(const struct master *m, const struct listener *l)
{
    if (l->conf.protocol == PROTO_APP)
        return NULL;
    return lstats_find(&m->lstats, l->conf.addr.text);
}

static struct lat_summary lat_of(const struct lat_window *w, int64_t now_ms)
{
    struct lat_summary s = { 0 };
    if (w)
        latwin_minute(w, now_ms, &s);
    return s;
}

/* "850us", "3.1ms", "42ms", "1.25s"; "-" when nothing was timed. */
const char *status_fmt_ms(double ms, char *buf, size_t cap)
{
    if (ms < 0)
        snprintf(buf, cap, "-");
    else if (ms < 1)
        snprintf(buf, cap, "%.0fus", ms * 1000);
    else if (ms < 10)
        snprintf(buf, cap, "%.1fms", ms);
    else if (ms < 1000)
        snprintf(buf, cap, "%.0fms", ms);
    else
        snprintf(buf, cap, "%.2fs", ms / 1000);
    return buf;
}

/* A figure of a latency summary, "-" when it counted nothing. */
static const char *fmt_ms(const struct lat_summary *s, double ms, char *buf, size_t cap)
{
    return status_fmt_ms(s->n ? ms : -1, buf, cap);
}

/* "latency_ms":{"p50":..,"p99":..,"max":..} over the last minute, the
 * values null when nothing was timed in it; null for what is not timed. */
static void json_latency(struct sbuf *o, const struct lat_window *w, bool timed,
                         int64_t now_ms)
{
    if (!timed) {
        sbuf_printf(o, ",\"latency_ms\":null");
        return;
    }
    struct lat_summary s = lat_of(w, now_ms);
    if (!s.n)
        sbuf_printf(o, ",\"latency_ms\":{\"p50\":null,\"p99\":null,\"max\":null}");
    else
        sbuf_printf(o, ",\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
                    s.p50_ms, s.p99_ms, s.max_ms);
}

/* The listener's chart: requests/s and p99 per step, oldest first. */
static void json_history(struct sbuf *o, const struct lstat *l)
{
    if (!l) {
        sbuf_printf(o, ",\"history\":null");
        return;
    }
    sbuf_printf(o, ",\"history\":{\"step\":%d,\"req_s\":[", LATWIN_STEP_MS / 1000);
    for (unsigned i = 0; i < l->hist_n; i++)
        sbuf_printf(o, "%s%.1f", i ? "," : "", (double)lstat_point(l, i)->req_s);
    sbuf_printf(o, "],\"p99_ms\":[");
    for (unsigned i = 0; i < l->hist_n; i++) {
        const struct lat_point *p = lstat_point(l, i);
        if (p->p99_ms < 0)
            sbuf_printf(o, "%snull", i ? "," : "");
        else
            sbuf_printf(o, "%s%.3f", i ? "," : "", (double)p->p99_ms);
    }
    sbuf_printf(o, "]}");
}

static const char *state_names[] = { "starting", "idle", "busy", "draining", "unresponsive" };

static const char *reload_result_name(enum reload_result r)
{
    static const char *const names[] = { "ok", "rejected", "pending", "rolled_back" };
    return names[r];
}

/* "http 127.0.0.1:8080", or "app:NAME 127.0.0.1:8000" for a pool's. */
static const char *listener_label(const struct master *m, const struct listener *l,
                                  char *buf, size_t cap)
{
    int app = l->conf.app;
    if (l->conf.protocol == PROTO_APP && app >= 0 && (size_t)app < m->cfg.napps)
        snprintf(buf, cap, "app:%s", m->cfg.apps[app].name);
    else
        snprintf(buf, cap, "%s", proto_name(l->conf.protocol));
    return buf;
}
enum { NSTATE_NAMES = 5 };

static void count_states(const struct master *m, size_t counts[NSTATE_NAMES], size_t *total)
{
    memset(counts, 0, NSTATE_NAMES * sizeof counts[0]);
    *total = 0;
    for (size_t i = 0; i < m->nslots; i++) {
        if (!m->slots[i].pid)
            continue;
        const char *st = master_slot_state(m, &m->slots[i]);
        for (size_t k = 0; k < NSTATE_NAMES; k++)
            counts[k] += strcmp(st, state_names[k]) == 0;
        (*total)++;
    }
}

static const struct exit_record *last_exit(const struct master *m)
{
    return m->nexits ? &m->exits[(m->nexits - 1) % EXIT_RING] : NULL;
}

static void describe_exit(const struct exit_record *e, char *buf, size_t cap)
{
    if (WIFSIGNALED(e->status))
        snprintf(buf, cap, "signal %d", WTERMSIG(e->status));
    else
        snprintf(buf, cap, "exit %d", WEXITSTATUS(e->status));
}

/* --- text --------------------------------------------------------------- */

static void text_header(const struct master *m, struct sbuf *o)
{
    char up[32], ago[32];
    time_t now = time(NULL);
    sbuf_printf(o, "preforkd %s  master %d  up %s  generation %u  last reload ",
                PREFORKD_VERSION_STR, (int)getpid(),
                fmt_duration((double)(now - m->started_wall), up, sizeof up), m->gen);
    if (!m->last_reload_wall)
        sbuf_printf(o, "never\n");
    else
        sbuf_printf(o, "%s ago: %s%s%s\n",
                    fmt_duration((double)(now - m->last_reload_wall), ago, sizeof ago),
                    reload_result_name(m->last_reload),
                    m->last_reload_msg[0] ? ": " : "", m->last_reload_msg);
    if (m->fds.short_by)
        sbuf_printf(o, "WARNING  descriptors: %ld needed per worker, limit %ld: short by %ld\n",
                    m->fds.need, m->fds.soft, m->fds.short_by);
    if (m->upgrade.last_time) {
        char ago[32];
        sbuf_printf(o, "upgrade  %s ago: %s: %s\n",
                    fmt_duration((double)(now - m->upgrade.last_time), ago, sizeof ago),
                    m->upgrade.last_ok ? "ok" : "failed", m->upgrade.last_msg);
    }
    sbuf_printf(o, "listen  ");
    for (size_t i = 0; i < m->nls; i++) {
        struct listen_view q = listen_queue(&m->ls[i]);
        char label[64];
        sbuf_printf(o, " %s %s", listener_label(m, &m->ls[i], label, sizeof label),
                    m->ls[i].conf.addr.text);
        if (m->ls[i].pc.n > 0)
            sbuf_printf(o, " per-cpu x%d", m->ls[i].pc.n);
        if (q.queue >= 0)
            sbuf_printf(o, " queue %d/%d", q.queue, q.backlog);
        const struct lstat *ll = listener_lat(m, &m->ls[i]);
        struct lat_summary ls = lat_of(ll ? &ll->win : NULL, m->now_ms);
        if (ls.n) {
            char p50[16], p99[16], max[16];
            sbuf_printf(o, " p50 %s p99 %s max %s", fmt_ms(&ls, ls.p50_ms, p50, sizeof p50),
                        fmt_ms(&ls, ls.p99_ms, p99, sizeof p99),
                        fmt_ms(&ls, ls.max_ms, max, sizeof max));
        }
        sbuf_printf(o, "  ");
    }
    sbuf_printf(o, "\n");
}

/* --- app pools ------------------------------------------------------------ */

static void prom_metric(struct sbuf *o, const char *name, const char *type,
                        const char *help);

struct app_counts { size_t live, ready, starting, draining; };

static struct app_counts count_app(const struct app_pool *pool)
{
    struct app_counts c = { 0 };
    for (size_t i = 0; i < pool->nprocs; i++) {
        const struct app_proc *p = &pool->procs[i];
        if (!p->id)
            continue;
        c.live++;
        c.ready += p->state == APP_READY;
        c.starting += p->state == APP_STARTING;
        c.draining += p->state == APP_DRAINING || p->state == APP_STOPPING;
    }
    return c;
}

/* "pools    web 2 workers gen 3 (deploying gen 4), ready 2 ..." */
static void text_pools(const struct master *m, struct sbuf *o)
{
    if (!m->apps.npools)
        return;
    sbuf_printf(o, "pools   ");
    for (size_t k = 0; k < m->apps.npools; k++) {
        const struct app_pool *pool = &m->apps.pools[k];
        struct app_counts c = count_app(pool);
        sbuf_printf(o, " %s %d workers gen %u%s%s: ready %zu, starting %zu, draining %zu, "
                    "restarts %lu", pool->name, pool->cur.app.workers, pool->gen,
                    pool->rolling ? ", deploying" : "", pool->removed ? ", removed" : "",
                    c.ready, c.starting, c.draining, pool->restarts);
        if (pool->restarts && pool->last_exit_pid) {
            char how[32], ago[32];
            struct exit_record e = { .status = pool->last_exit_status };
            describe_exit(&e, how, sizeof how);
            sbuf_printf(o, " (last exit: pid %d %s, %s ago)", (int)pool->last_exit_pid, how,
                        fmt_duration((double)(time(NULL) - pool->last_exit_wall), ago,
                                     sizeof ago));
        }
        if (pool->recycles)
            sbuf_printf(o, ", recycled above max_rss %lu", pool->recycles);
        sbuf_printf(o, "%s ", pool->crash_streak ? ", CRASH LOOP backing off" : "");
    }
    sbuf_printf(o, "\n");
}

static void text_app_rows(const struct master *m, struct sbuf *o)
{
    for (size_t k = 0; k < m->apps.npools; k++) {
        const struct app_pool *pool = &m->apps.pools[k];
        for (size_t i = 0; i < pool->nprocs; i++) {
            const struct app_proc *p = &pool->procs[i];
            if (!p->id)
                continue;
            char up[16], cpu[16], rss[16], seen[16], active[16], req[24];
            snprintf(active, sizeof active, p->has_active ? "%u" : "-", p->active);
            snprintf(req, sizeof req, p->has_requests ? "%llu" : "-",
                     (unsigned long long)p->requests);
            sbuf_printf(o, "%-8.8s %-5d %-7d %-4u %-12s %-6s %-7s %-9s %-9s %-8s %-6s %-6s %-6s "
                        "%-6s %-6s %-6s %s\n", pool->name, p->slot, (int)p->pid, p->gen,
                        apppool_state_name(m, pool, p),
                        fmt_duration((double)(m->now_ms - p->started_ms) / 1000.0, up, sizeof up),
                        active, "-", req, "-", "-", "-", "-",
                        fmt_duration(p->cpu_s, cpu, sizeof cpu), fmt_bytes(p->rss, rss, sizeof rss),
                        fmt_duration((double)(m->now_ms - p->seen_ms) / 1000.0, seen, sizeof seen),
                        p->app_status);
        }
    }
}

static void json_app_rows(const struct master *m, struct sbuf *o, bool first)
{
    time_t now = time(NULL);
    for (size_t k = 0; k < m->apps.npools; k++) {
        const struct app_pool *pool = &m->apps.pools[k];
        for (size_t i = 0; i < pool->nprocs; i++) {
            const struct app_proc *p = &pool->procs[i];
            if (!p->id)
                continue;
            sbuf_printf(o, "%s{\"pool\":", first ? "" : ",");
            sbuf_json_string(o, pool->name);
            sbuf_printf(o, ",\"slot\":%d,\"pid\":%d,\"gen\":%u,\"state\":\"%s\","
                        "\"up\":%lld,\"started\":%lld,\"active\":", p->slot, (int)p->pid,
                        p->gen, apppool_state_name(m, pool, p),
                        (long long)((m->now_ms - p->started_ms) / 1000),
                        (long long)p->started_wall);
            sbuf_printf(o, p->has_active ? "%u" : "null", p->active);
            sbuf_printf(o, ",\"accepted\":null,\"requests\":");
            sbuf_printf(o, p->has_requests ? "%llu" : "null", (unsigned long long)p->requests);
            sbuf_printf(o, ",\"cpu\":%.3f,\"cpu_pct\":null,\"rss\":%llu,\"seen\":%lld,\"app_status\":",
                        p->cpu_s, (unsigned long long)p->rss,
                        (long long)(now - (m->now_ms - p->seen_ms) / 1000));
            if (p->app_status[0])
                sbuf_json_string(o, p->app_status);
            else
                sbuf_printf(o, "null");
            sbuf_printf(o, ",\"dropped_output\":%llu", (unsigned long long)p->dropped);
            json_latency(o, NULL, false, m->now_ms);    /* the app times its own */
            sbuf_printf(o, "}");
            first = false;
        }
    }
}

static void json_pools(const struct master *m, struct sbuf *o)
{
    sbuf_printf(o, ",\"pools\":[");
    for (size_t k = 0; k < m->apps.npools; k++) {
        const struct app_pool *pool = &m->apps.pools[k];
        struct app_counts c = count_app(pool);
        sbuf_printf(o, "%s{\"name\":", k ? "," : "");
        sbuf_json_string(o, pool->name);
        sbuf_printf(o, ",\"workers\":%d,\"generation\":%u,\"deploying\":%s,"
                    "\"removed\":%s,\"live\":%zu,\"ready\":%zu,\"starting\":%zu,"
                    "\"draining\":%zu,\"restarts\":%lu,\"crash_streak\":%u,"
                    "\"requests\":%llu,\"recycles\":%lu,\"last_exit\":", pool->cur.app.workers,
                    pool->gen, pool->rolling ? "true" : "false", pool->removed ? "true" : "false",
                    c.live, c.ready, c.starting, c.draining, pool->restarts,
                    pool->crash_streak, (unsigned long long)pool->retired_requests,
                    pool->recycles);
        if (!pool->last_exit_pid)
            sbuf_printf(o, "null}");
        else
            sbuf_printf(o, "{\"pid\":%d,\"exit_code\":%d,\"signal\":%d,\"time\":%lld}}",
                        (int)pool->last_exit_pid,
                        WIFEXITED(pool->last_exit_status) ? WEXITSTATUS(pool->last_exit_status) : -1,
                        WIFSIGNALED(pool->last_exit_status) ? WTERMSIG(pool->last_exit_status) : 0,
                        (long long)pool->last_exit_wall);
    }
    sbuf_printf(o, "]");
}

static void prom_pools(const struct master *m, struct sbuf *o)
{
    if (!m->apps.npools)
        return;
    prom_metric(o, "app_workers", "gauge", "App pool worker processes by state.");
    for (size_t k = 0; k < m->apps.npools; k++) {
        const struct app_pool *pool = &m->apps.pools[k];
        struct app_counts c = count_app(pool);
        sbuf_printf(o, "preforkd_app_workers{pool=\"%s\",state=\"ready\"} %zu\n"
                    "preforkd_app_workers{pool=\"%s\",state=\"starting\"} %zu\n"
                    "preforkd_app_workers{pool=\"%s\",state=\"draining\"} %zu\n",
                    pool->name, c.ready, pool->name, c.starting, pool->name, c.draining);
    }
    prom_metric(o, "app_generation", "gauge", "Running generation of each app pool.");
    for (size_t k = 0; k < m->apps.npools; k++)
        sbuf_printf(o, "preforkd_app_generation{pool=\"%s\"} %u\n",
                    m->apps.pools[k].name, m->apps.pools[k].gen);
    prom_metric(o, "app_restarts_total", "counter", "Unexpected exits of app workers.");
    for (size_t k = 0; k < m->apps.npools; k++)
        sbuf_printf(o, "preforkd_app_restarts_total{pool=\"%s\"} %lu\n",
                    m->apps.pools[k].name, m->apps.pools[k].restarts);
    prom_metric(o, "app_worker_rss_bytes", "gauge", "Resident memory of each app worker.");
    for (size_t k = 0; k < m->apps.npools; k++) {
        const struct app_pool *pool = &m->apps.pools[k];
        for (size_t i = 0; i < pool->nprocs; i++)
            if (pool->procs[i].id)
                sbuf_printf(o, "preforkd_app_worker_rss_bytes{pool=\"%s\",slot=\"%d\","
                            "pid=\"%d\"} %llu\n", pool->name, pool->procs[i].slot,
                            (int)pool->procs[i].pid, (unsigned long long)pool->procs[i].rss);
    }
}

static void text_summary(const struct master *m, struct sbuf *o)
{
    size_t c[NSTATE_NAMES], total;
    count_states(m, c, &total);
    sbuf_printf(o, "workers  %zu: busy %zu, idle %zu, starting %zu, draining %zu",
                total, c[2], c[1], c[0], c[3]);
    if (c[4])
        sbuf_printf(o, ", unresponsive %zu", c[4]);
    /* Unexpected exits and planned retirements apart: a drained worker's
     * exit 0 is no restart. */
    sbuf_printf(o, "   restarts %lu", m->restarts);
    char how[32], ago[32];
    const struct exit_record *e = &m->last_restart;
    if (e->pid) {
        describe_exit(e, how, sizeof how);
        sbuf_printf(o, " (last: pid %d %s, %s ago)", (int)e->pid, how,
                    fmt_duration((double)(time(NULL) - e->when), ago, sizeof ago));
    }
    sbuf_printf(o, "   retired %lu", m->retirements);
    e = &m->last_retired;
    if (e->pid) {
        describe_exit(e, how, sizeof how);
        sbuf_printf(o, " (last: pid %d %s, %s%s%s ago)", (int)e->pid, e->retired,
                    strcmp(how, "exit 0") ? how : "", strcmp(how, "exit 0") ? ", " : "",
                    fmt_duration((double)(time(NULL) - e->when), ago, sizeof ago));
    }
    if (m->crash_streak)
        sbuf_printf(o, "   CRASH LOOP: %u early deaths in a row, respawn backing off",
                    m->crash_streak);
    struct totals t;
    uint64_t active;
    sum_totals(m, &t, &active);
    char in[16], out[16];
    sbuf_printf(o, "\ntotals   accepted %llu  active %llu  requests %llu  in %s  out %s"
                "  limited %llu",
                (unsigned long long)t.accepted, (unsigned long long)active,
                (unsigned long long)t.requests, fmt_bytes(t.bytes_in, in, sizeof in),
                fmt_bytes(t.bytes_out, out, sizeof out), (unsigned long long)t.limited);
    if (t.proxy_rejected)       /* PROXY headers missing, malformed or untrusted */
        sbuf_printf(o, "  proxy_rejected %llu", (unsigned long long)t.proxy_rejected);
    sbuf_printf(o, "\n\n");
}

/* " (closed 3, version 1)": the failures' reasons that happened. */
static void text_tls_reasons(const struct ipc_report *r, struct sbuf *o)
{
    bool first = true;
    for (unsigned k = 0; k < TLS_FAIL_N; k++) {
        if (!r->tls_failed_by[k])
            continue;
        sbuf_printf(o, "%s%s %llu", first ? " (" : ", ", tls_fail_name(k),
                    (unsigned long long)r->tls_failed_by[k]);
        first = false;
    }
    if (!first)
        sbuf_printf(o, ")");
}

/* With a tls listener: the handshakes of each worker, under its row. */
static void text_tls_rows(const struct master *m, struct sbuf *o)
{
    bool any = false;
    for (size_t i = 0; i < m->cfg.nlistens; i++)
        any = any || m->cfg.listens[i].tls.on;
    if (!any)
        return;
    sbuf_printf(o, "\n%-8s %-5s %-7s %-11s %-9s %s\n", "TLS", "SLOT", "PID", "HANDSHAKES",
                "RESUMED", "FAILED");
    for (size_t i = 0; i < m->nslots; i++) {
        const struct slot *s = &m->slots[i];
        if (!s->pid)
            continue;
        sbuf_printf(o, "%-8s %-5zu %-7d %-11llu %-9llu %llu", "-", i, (int)s->pid,
                    (unsigned long long)s->report.tls_handshakes,
                    (unsigned long long)s->report.tls_resumed,
                    (unsigned long long)s->report.tls_failed);
        text_tls_reasons(&s->report, o);
        sbuf_printf(o, "\n");
    }
}

static void text_rows(const struct master *m, struct sbuf *o)
{
    sbuf_printf(o, "%-8s %-5s %-7s %-4s %-12s %-6s %-7s %-9s %-9s %-8s %-6s %-6s %-6s %-6s %-6s %s\n",
                "POOL", "SLOT", "PID", "GEN", "STATE", "UP", "ACTIVE", "ACCEPTED", "REQUESTS",
                "REQ/S", "P99", "IN", "OUT", "CPU", "RSS",
                m->apps.npools ? "SEEN   STATUS" : "SEEN");
    for (size_t i = 0; i < m->nslots; i++) {
        if (!m->slots[i].pid)
            continue;
        struct slot_view v = view_slot(m, i);
        const struct ipc_report *r = &v.s->report;
        char up[16], in[16], out[16], cpu[16], rss[16], seen[16], p99[16];
        struct lat_summary ls = lat_of(v.s->lat, m->now_ms);
        sbuf_printf(o, "%-8s %-5zu %-7d %-4u %-12s %-6s %-7u %-9llu %-9llu %-8.1f %-6s %-6s %-6s %-6s %-6s %s\n",
                    "-", v.idx, (int)v.s->pid, v.s->gen, v.state,
                    fmt_duration(v.up_s, up, sizeof up), r->active,
                    (unsigned long long)r->accepted, (unsigned long long)r->requests,
                    v.s->req_rate, fmt_ms(&ls, ls.p99_ms, p99, sizeof p99),
                    fmt_bytes(r->bytes_in, in, sizeof in),
                    fmt_bytes(r->bytes_out, out, sizeof out),
                    fmt_duration(v.cpu_s, cpu, sizeof cpu), fmt_bytes(v.rss, rss, sizeof rss),
                    fmt_duration(v.seen_s, seen, sizeof seen));
    }
}

/* --- JSON: the same facts, snake_case, Unix seconds, integer counters ---- */

static void json_header(const struct master *m, struct sbuf *o)
{
    sbuf_printf(o, "{\"version\":\"%s\",\"master_pid\":%d,\"started\":%lld,"
                "\"generation\":%u,\"reloads\":%lu,\"last_reload\":",
                PREFORKD_VERSION_STR, (int)getpid(), (long long)m->started_wall, m->gen,
                m->reloads);
    if (!m->last_reload_wall) {
        sbuf_printf(o, "null");
    } else {
        sbuf_printf(o, "{\"time\":%lld,\"result\":\"%s\",\"message\":",
                    (long long)m->last_reload_wall, reload_result_name(m->last_reload));
        sbuf_json_string(o, m->last_reload_msg);
        sbuf_printf(o, "}");
    }
    sbuf_printf(o, ",\"fd_limit\":{\"soft\":%ld,\"hard\":%ld,\"need\":%ld,\"short_by\":%ld}",
                m->fds.soft, m->fds.hard, m->fds.need, m->fds.short_by);
    sbuf_printf(o, ",\"last_upgrade\":");
    if (!m->upgrade.last_time) {
        sbuf_printf(o, "null");
    } else {
        sbuf_printf(o, "{\"time\":%lld,\"result\":\"%s\",\"message\":",
                    (long long)m->upgrade.last_time, m->upgrade.last_ok ? "ok" : "failed");
        sbuf_json_string(o, m->upgrade.last_msg);
        sbuf_printf(o, "}");
    }
    sbuf_printf(o, ",\"listen\":[");
    for (size_t i = 0; i < m->nls; i++) {
        struct listen_view q = listen_queue(&m->ls[i]);
        int app = m->ls[i].conf.app;
        sbuf_printf(o, "%s{\"protocol\":\"%s\",\"pool\":", i ? "," : "",
                    proto_name(m->ls[i].conf.protocol));
        if (app >= 0 && (size_t)app < m->cfg.napps)
            sbuf_json_string(o, m->cfg.apps[app].name);
        else
            sbuf_printf(o, "null");
        sbuf_printf(o, ",\"address\":");
        sbuf_json_string(o, m->ls[i].conf.addr.text);
        if (q.queue >= 0)
            sbuf_printf(o, ",\"queue\":%d", q.queue);
        else
            sbuf_printf(o, ",\"queue\":null");
        sbuf_printf(o, ",\"backlog\":%d", q.backlog);
        json_queues(o, &m->ls[i]);
        const struct lstat *ll = listener_lat(m, &m->ls[i]);
        json_latency(o, ll ? &ll->win : NULL, ll != NULL, m->now_ms);
        json_history(o, ll);
        sbuf_printf(o, "}");
    }
    sbuf_printf(o, "]");
    sbuf_printf(o, ",\"health\":\"%s\",\"status_listen\":",
                m->health_draining ? "draining" : "ok");
    if (m->shttp.lfd >= 0)
        sbuf_json_string(o, m->shttp.addr.text);
    else
        sbuf_printf(o, "null");
}

/* An exit record with its reason ("retired": null for an unexpected one). */
static void json_exit(struct sbuf *o, const char *key, const struct exit_record *e)
{
    sbuf_printf(o, ",\"%s\":", key);
    if (!e->pid) {
        sbuf_printf(o, "null");
        return;
    }
    sbuf_printf(o, "{\"pid\":%d,\"slot\":%d,\"exit_code\":%d,\"signal\":%d,"
                "\"time\":%lld,\"lived_ms\":%lld,\"reason\":", (int)e->pid, e->slot,
                WIFEXITED(e->status) ? WEXITSTATUS(e->status) : -1,
                WIFSIGNALED(e->status) ? WTERMSIG(e->status) : 0,
                (long long)e->when, (long long)e->lived_ms);
    if (e->retired)
        sbuf_json_string(o, e->retired);
    else
        sbuf_printf(o, "null");
    sbuf_printf(o, "}");
}

static void json_summary(const struct master *m, struct sbuf *o)
{
    size_t c[NSTATE_NAMES], total;
    count_states(m, c, &total);
    sbuf_printf(o, ",\"workers_count\":%zu,\"busy\":%zu,\"idle\":%zu,\"starting\":%zu,"
                "\"draining\":%zu,\"unresponsive\":%zu,\"target\":%zu,\"restarts\":%lu,"
                "\"crash_streak\":%u,\"last_exit\":", total, c[2], c[1], c[0], c[3], c[4],
                m->target, m->restarts, m->crash_streak);
    const struct exit_record *e = last_exit(m);
    if (!e)
        sbuf_printf(o, "null");
    else
        sbuf_printf(o, "{\"pid\":%d,\"slot\":%d,\"exit_code\":%d,\"signal\":%d,"
                    "\"time\":%lld,\"lived_ms\":%lld}", (int)e->pid, e->slot,
                    WIFEXITED(e->status) ? WEXITSTATUS(e->status) : -1,
                    WIFSIGNALED(e->status) ? WTERMSIG(e->status) : 0,
                    (long long)e->when, (long long)e->lived_ms);
    json_exit(o, "last_restart", &m->last_restart);
    sbuf_printf(o, ",\"retirements\":%lu", m->retirements);
    json_exit(o, "last_retired", &m->last_retired);
    struct totals t;
    uint64_t active;
    sum_totals(m, &t, &active);
    sbuf_printf(o, ",\"totals\":{\"accepted\":%llu,\"active\":%llu,\"requests\":%llu,"
                "\"in\":%llu,\"out\":%llu,\"proxy_rejected\":%llu,\"limited\":%llu}",
                (unsigned long long)t.accepted,
                (unsigned long long)active, (unsigned long long)t.requests,
                (unsigned long long)t.bytes_in, (unsigned long long)t.bytes_out,
                (unsigned long long)t.proxy_rejected, (unsigned long long)t.limited);
}

static void json_rows(const struct master *m, struct sbuf *o)
{
    time_t now = time(NULL);
    bool first = true;
    sbuf_printf(o, ",\"workers\":[");
    for (size_t i = 0; i < m->nslots; i++) {
        if (!m->slots[i].pid)
            continue;
        struct slot_view v = view_slot(m, i);
        const struct ipc_report *r = &v.s->report;
        sbuf_printf(o, "%s{\"pool\":null,\"app_status\":null,\"slot\":%zu,\"pid\":%d,\"gen\":%u,\"state\":\"%s\","
                    "\"up\":%lld,\"started\":%lld,\"active\":%u,\"accepted\":%llu,"
                    "\"requests\":%llu,\"req_s\":%.1f,\"in\":%llu,\"out\":%llu,"
                    "\"cpu\":%.3f,\"cpu_pct\":%.1f,\"rss\":%llu,\"seen\":%lld",
                    first ? "" : ",", v.idx, (int)v.s->pid, v.s->gen, v.state,
                    (long long)v.up_s, (long long)v.s->started_wall, r->active,
                    (unsigned long long)r->accepted, (unsigned long long)r->requests,
                    v.s->req_rate, (unsigned long long)r->bytes_in,
                    (unsigned long long)r->bytes_out, v.cpu_s, v.s->cpu_pct,
                    (unsigned long long)v.rss,
                    (long long)(now - (time_t)v.seen_s));
        sbuf_printf(o, v.s->pinned_cpu >= 0 ? ",\"pinned_cpu\":%d" : ",\"pinned_cpu\":null",
                    v.s->pinned_cpu);
        sbuf_printf(o, ",\"tls\":{\"handshakes\":%llu,\"resumed\":%llu,\"failed\":%llu,"
                    "\"failed_by\":{", (unsigned long long)r->tls_handshakes,
                    (unsigned long long)r->tls_resumed, (unsigned long long)r->tls_failed);
        for (unsigned k = 0; k < TLS_FAIL_N; k++)
            sbuf_printf(o, "%s\"%s\":%llu", k ? "," : "", tls_fail_name(k),
                        (unsigned long long)r->tls_failed_by[k]);
        sbuf_printf(o, "}}");
        json_latency(o, v.s->lat, true, m->now_ms);
        sbuf_printf(o, "}");
        first = false;
    }
    json_app_rows(m, o, first);
    sbuf_printf(o, "]}\n");
}

/* --- Prometheus text exposition ----------------------------------------- */

static void prom_metric(struct sbuf *o, const char *name, const char *type,
                        const char *help)
{
    sbuf_printf(o, "# HELP preforkd_%s %s\n# TYPE preforkd_%s %s\n", name, help, name, type);
}

static void prom_master(const struct master *m, struct sbuf *o)
{
    struct totals t;
    uint64_t active;
    sum_totals(m, &t, &active);
    prom_metric(o, "start_time_seconds", "gauge", "Start time of the master, Unix seconds.");
    sbuf_printf(o, "preforkd_start_time_seconds %lld\n", (long long)m->started_wall);
    prom_metric(o, "generation", "gauge", "Configuration generation.");
    sbuf_printf(o, "preforkd_generation %u\n", m->gen);
    prom_metric(o, "last_reload_success", "gauge", "1 if the last reload was applied.");
    sbuf_printf(o, "preforkd_last_reload_success %d\n",
                !m->last_reload_wall || m->last_reload == RELOAD_OK ||
                m->last_reload == RELOAD_PENDING);
    prom_metric(o, "worker_restarts_total", "counter", "Unexpected worker exits.");
    sbuf_printf(o, "preforkd_worker_restarts_total %lu\n", m->restarts);
    prom_metric(o, "worker_retirements_total", "counter",
                "Planned worker exits (reload, max_requests, scale down, stop).");
    sbuf_printf(o, "preforkd_worker_retirements_total %lu\n", m->retirements);
    prom_metric(o, "accepted_connections_total", "counter", "Connections accepted.");
    sbuf_printf(o, "preforkd_accepted_connections_total %llu\n", (unsigned long long)t.accepted);
    prom_metric(o, "requests_total", "counter", "Requests served (echo: reads echoed).");
    sbuf_printf(o, "preforkd_requests_total %llu\n", (unsigned long long)t.requests);
    prom_metric(o, "limited_total", "counter",
                "Connections and requests refused by max_connections_per_ip or rate_limit.");
    sbuf_printf(o, "preforkd_limited_total %llu\n", (unsigned long long)t.limited);
    prom_metric(o, "received_bytes_total", "counter", "Bytes received.");
    sbuf_printf(o, "preforkd_received_bytes_total %llu\n", (unsigned long long)t.bytes_in);
    prom_metric(o, "sent_bytes_total", "counter", "Bytes sent.");
    sbuf_printf(o, "preforkd_sent_bytes_total %llu\n", (unsigned long long)t.bytes_out);
    prom_metric(o, "proxy_rejected_total", "counter",
                "Connections closed for a missing, malformed or untrusted PROXY header.");
    sbuf_printf(o, "preforkd_proxy_rejected_total %llu\n", (unsigned long long)t.proxy_rejected);
    prom_metric(o, "active_connections", "gauge", "Open connections.");
    sbuf_printf(o, "preforkd_active_connections %llu\n", (unsigned long long)active);
}

static void prom_pool(const struct master *m, struct sbuf *o)
{
    size_t c[NSTATE_NAMES], total;
    count_states(m, c, &total);
    prom_metric(o, "workers", "gauge", "Worker processes by state.");
    for (size_t k = 0; k < NSTATE_NAMES; k++)
        sbuf_printf(o, "preforkd_workers{state=\"%s\"} %zu\n", state_names[k], c[k]);
    prom_metric(o, "listen_queue", "gauge", "Connections waiting in the accept queue.");
    for (size_t i = 0; i < m->nls; i++) {
        struct listen_view q = listen_queue(&m->ls[i]);
        if (q.queue >= 0)
            sbuf_printf(o, "preforkd_listen_queue{protocol=\"%s\",address=\"%s\"} %d\n",
                        proto_name(m->ls[i].conf.protocol), m->ls[i].conf.addr.text, q.queue);
    }
    prom_metric(o, "worker_requests_total", "counter", "Requests served per worker.");
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].pid)
            sbuf_printf(o, "preforkd_worker_requests_total{slot=\"%zu\",pid=\"%d\"} %llu\n",
                        i, (int)m->slots[i].pid,
                        (unsigned long long)m->slots[i].report.requests);
    static const struct { const char *name, *help; size_t off; } tls[] = {
        { "handshakes", "TLS handshakes completed per worker (resumed ones too).",
          offsetof(struct ipc_report, tls_handshakes) },
        { "resumed", "TLS sessions resumed per worker.", offsetof(struct ipc_report, tls_resumed) },
        { "failed", "TLS handshakes that failed or never finished, per worker.",
          offsetof(struct ipc_report, tls_failed) },
    };
    for (size_t k = 0; k < sizeof tls / sizeof tls[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "worker_tls_%s_total", tls[k].name);
        prom_metric(o, name, "counter", tls[k].help);
        for (size_t i = 0; i < m->nslots; i++) {
            uint64_t v;
            if (!m->slots[i].pid)
                continue;
            memcpy(&v, (const char *)&m->slots[i].report + tls[k].off, sizeof v);
            sbuf_printf(o, "preforkd_%s{slot=\"%zu\",pid=\"%d\"} %llu\n", name, i,
                        (int)m->slots[i].pid, (unsigned long long)v);
        }
    }
    prom_metric(o, "worker_tls_failures_total", "counter",
                "TLS handshakes that failed, per worker and reason (closed, timeout, version, "
                "cipher, certificate, protocol).");
    for (size_t i = 0; i < m->nslots; i++)
        for (unsigned k = 0; m->slots[i].pid && k < TLS_FAIL_N; k++)
            sbuf_printf(o, "preforkd_worker_tls_failures_total{slot=\"%zu\",pid=\"%d\","
                        "reason=\"%s\"} %llu\n", i, (int)m->slots[i].pid, tls_fail_name(k),
                        (unsigned long long)m->slots[i].report.tls_failed_by[k]);
}

/* A label value as the exposition format wants it escaped. */
static void prom_label(struct sbuf *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sbuf_printf(o, "\\%c", *v);
        else if (*v == '\n')
            sbuf_printf(o, "\\n");
        else
            sbuf_printf(o, "%c", *v);
    }
}

/* Since the start, per built-in listener: cumulative buckets at every
 * bound of ipc/latency.h. */
static void prom_latency(const struct master *m, struct sbuf *o)
{
    bool any = false;
    for (size_t i = 0; i < m->nls; i++) {
        const struct lstat *l = listener_lat(m, &m->ls[i]);
        if (!l)
            continue;
        if (!any)
            prom_metric(o, "request_duration_seconds", "histogram",
                        "Time from a request's first byte to its last byte handed to "
                        "the kernel (echo, chat: per message).");
        any = true;
        const struct lat_total *t = &l->win.total;
        uint64_t cum = 0;
        char le[32];
        for (unsigned b = 0; b < LAT_NBUCKETS; b++) {
            cum += t->count[b];
            sbuf_printf(o, "preforkd_request_duration_seconds_bucket{listener=\"");
            prom_label(o, l->key);
            sbuf_printf(o, "\",le=\"%s\"} %llu\n",
                        b < LAT_NBOUNDS ? lat_bound_text(b, le, sizeof le) : "+Inf",
                        (unsigned long long)cum);
        }
        sbuf_printf(o, "preforkd_request_duration_seconds_sum{listener=\"");
        prom_label(o, l->key);
        sbuf_printf(o, "\"} %.9f\n", (double)t->sum_ns / 1e9);
        sbuf_printf(o, "preforkd_request_duration_seconds_count{listener=\"");
        prom_label(o, l->key);
        sbuf_printf(o, "\"} %llu\n", (unsigned long long)t->n);
    }
}

void status_render(const struct master *m, enum status_format fmt, struct sbuf *out)
{
    switch (fmt) {
    case STATUS_TEXT:
        text_header(m, out);
        chatbus_status_text(m, out);
        text_pools(m, out);
        text_summary(m, out);
        text_rows(m, out);
        text_app_rows(m, out);
        text_tls_rows(m, out);
        break;
    case STATUS_JSON:
        json_header(m, out);
        chatbus_status_json(m, out);
        json_summary(m, out);
        json_pools(m, out);         /* after the top-level keys they reuse */
        json_rows(m, out);
        break;
    case STATUS_PROMETHEUS:
        prom_master(m, out);
        chatbus_status_prometheus(m, out);
        prom_pool(m, out);
        prom_latency(m, out);
        prom_pools(m, out);
        break;
    }
}
