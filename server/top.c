/* top: `preforkd top`, a live terminal view of the pool in plain ANSI (no
 * curses): every second it asks the master for `status json` over the
 * control socket and redraws a header and one row per worker, sorted by a
 * key the user picks. When stdout is not a terminal it prints one frame and
 * exits, so `preforkd top | cat` is a snapshot. */
#include "server/top.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "server/config.h"
#include "server/status.h"

#define ANSWER_MAX   (4 << 20)
#define MAX_ROWS     4096
#define REFRESH_MS   1000

/* --- reading the status JSON (the master's own, so trusted to be JSON; a
 * malformed one only shows as missing fields) ---------------------------- */

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

/* Past the value at p (string, object, array, number or literal). */
static const char *skip_value(const char *p)
{
    p = ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && p[1])
                p++;
        return *p ? p + 1 : p;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; *p; p++) {
            if (*p == '"') {
                p = skip_value(p) - 1;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
        }
        return p;
    }
    while (*p && !strchr(",}] \n\t\r", *p))
        p++;
    return p;
}

/* The value of member key in the object at obj, or NULL. */
static const char *member(const char *obj, const char *key)
{
    if (!obj || *(obj = ws(obj)) != '{')
        return NULL;
    size_t klen = strlen(key);
    const char *p = ws(obj + 1);
    while (*p == '"') {
        const char *name = p + 1, *end = skip_value(p);
        p = ws(end);
        if (*p != ':')
            return NULL;
        p = ws(p + 1);
        if ((size_t)(end - 1 - name) == klen && strncmp(name, key, klen) == 0)
            return p;
        p = ws(skip_value(p));
        if (*p != ',')
            return NULL;
        p = ws(p + 1);
    }
    return NULL;
}

static bool is_null(const char *v)
{
    return !v || strncmp(v, "null", 4) == 0;
}

static double num(const char *obj, const char *key, double dflt)
{
    const char *v = member(obj, key);
    return is_null(v) || *v == '"' || *v == '{' ? dflt : strtod(v, NULL);
}

static void str(const char *obj, const char *key, char *buf, size_t cap)
{
    const char *v = member(obj, key);
    size_t n = 0;
    buf[0] = '\0';
    if (!v || *v != '"')
        return;
    for (v++; *v && *v != '"' && n + 1 < cap; v++) {
        if (*v == '\\' && v[1])
            v++;
        buf[n++] = (unsigned char)*v < 0x20 ? '?' : *v;
    }
    buf[n] = '\0';
}

/* --- the model ---------------------------------------------------------- */

struct row {
    char pool[40], state[16];
    int slot, gen;
    long pid;
    double req_s, active, requests, cpu, cpu_pct, rss, up, p99;
};

struct frame {
    char head[3][512];
    struct row rows[MAX_ROWS];
    size_t nrows;
};

/* CPU seconds of each pid at the previous sample. */
static struct { long pid; double cpu, t; } prev[MAX_ROWS];
static size_t nprev;

static double prev_cpu_pct(long pid, double cpu, double up, double now)
{
    double pct = up > 0 ? 100 * cpu / up : 0;   /* first sight: its lifetime average */
    for (size_t i = 0; i < nprev; i++)
        if (prev[i].pid == pid && now > prev[i].t)
            pct = 100 * (cpu - prev[i].cpu) / (now - prev[i].t);
    return pct < 0 ? 0 : pct;
}

static const char *fmt_dur(double s, char *buf, size_t cap)
{
    long t = (long)s;
    if (t < 60)
        snprintf(buf, cap, "%lds", t);
    else if (t < 3600)
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else
        snprintf(buf, cap, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
    return buf;
}


static const char *fmt_bytes(double b, char *buf, size_t cap)
{
    static const char units[] = "BKMGT";
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, cap, b < 10 && u ? "%.1f%c" : "%.0f%c", b, units[u]);
    return buf;
}

static void parse_frame(const char *json, struct frame *f, double now)
{
    char ver[32], health[16], buf[64], p99[16];
    str(json, "version", ver, sizeof ver);
    str(json, "health", health, sizeof health);
    const char *lr = member(json, "last_reload");
    char reload[64] = "never";
    if (!is_null(lr)) {
        str(lr, "result", buf, sizeof buf);
        snprintf(reload, sizeof reload, "%s", buf);
    }
    snprintf(f->head[0], sizeof f->head[0],
             "preforkd %s  master %.0f  up %s  gen %.0f  reload %s  health %s",
             ver, num(json, "master_pid", 0),
             fmt_dur(now - num(json, "started", now), buf, sizeof buf),
             num(json, "generation", 0), reload, health[0] ? health : "?");
    f->nrows = 0;
    double rate = 0;
    const char *w = member(json, "workers");
    if (w && *w == '[') {
        for (w = ws(w + 1); *w == '{' && f->nrows < MAX_ROWS; w = ws(w)) {
            struct row *r = &f->rows[f->nrows++];
            str(w, "pool", r->pool, sizeof r->pool);
            str(w, "state", r->state, sizeof r->state);
            r->slot = (int)num(w, "slot", -1);
            r->gen = (int)num(w, "gen", 0);
            r->pid = (long)num(w, "pid", 0);
            r->req_s = num(w, "req_s", -1);
            r->active = num(w, "active", -1);
            r->requests = num(w, "requests", -1);
            r->cpu = num(w, "cpu", 0);
            r->rss = num(w, "rss", 0);
            r->up = num(w, "up", 0);
            r->p99 = num(member(w, "latency_ms"), "p99", -1);
            r->cpu_pct = num(w, "cpu_pct", -1);     /* the master's, between heartbeats */
            if (r->cpu_pct < 0)
                r->cpu_pct = prev_cpu_pct(r->pid, r->cpu, r->up, now);
            rate += r->req_s > 0 ? r->req_s : 0;
            w = ws(skip_value(w));
            if (*w == ',')
                w++;
        }
    }
    /* The states with workers in them only: 80 columns are enough. */
    static const char *const states[] = { "busy", "idle", "starting", "draining",
                                          "unresponsive" };
    char st[128] = "";
    size_t sl = 0;
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        double n = num(json, states[i], 0);
        if (n > 0 && sl < sizeof st)
            sl += (size_t)snprintf(st + sl, sizeof st - sl, "%s%s %.0f", sl ? " " : "",
                                   states[i], n);
    }
    const char *t = member(json, "totals");
    snprintf(f->head[1], sizeof f->head[1],
             "workers %.0f (%s)  restarts %.0f  retired %.0f  req/s %.1f  active %.0f",
             num(json, "workers_count", 0), st, num(json, "restarts", 0),
             num(json, "retirements", 0), rate, num(t, "active", 0));
    if (num(json, "crash_streak", 0) > 0)
        snprintf(f->head[1] + strlen(f->head[1]), sizeof f->head[1] - strlen(f->head[1]),
                 "  CRASH LOOP");
    size_t len = 0;
    f->head[2][0] = '\0';
    const char *l = member(json, "listen");
    if (l && *l == '[') {
        for (l = ws(l + 1); *l == '{'; l = ws(l)) {
            char proto[16], addr[128], pool[40];
            str(l, "protocol", proto, sizeof proto);
            str(l, "address", addr, sizeof addr);
            str(l, "pool", pool, sizeof pool);
            double q = num(l, "queue", -1);
            len += (size_t)snprintf(f->head[2] + len, len < sizeof f->head[2] ?
                                    sizeof f->head[2] - len : 0, "%s%s%s %s",
                                    len ? "   " : "", pool[0] ? "app:" : "",
                                    pool[0] ? pool : proto, addr);
            if (q >= 0 && len < sizeof f->head[2])
                len += (size_t)snprintf(f->head[2] + len, sizeof f->head[2] - len,
                                        " queue %.0f/%.0f", q, num(l, "backlog", 0));
            double lp = num(member(l, "latency_ms"), "p99", -1);
            if (lp >= 0 && len < sizeof f->head[2])
                len += (size_t)snprintf(f->head[2] + len, sizeof f->head[2] - len,
                                        " p99 %s", status_fmt_ms(lp, p99, sizeof p99));
            l = ws(skip_value(l));
            if (*l == ',')
                l++;
            if (len >= sizeof f->head[2])
                break;
        }
    }
    nprev = 0;
    for (size_t i = 0; i < f->nrows && nprev < MAX_ROWS; i++) {
        prev[nprev].pid = f->rows[i].pid;
        prev[nprev].cpu = f->rows[i].cpu;
        prev[nprev++].t = now;
    }
}

/* --- sorting ------------------------------------------------------------ */

struct sort_key {
    char key;
    const char *name;
    double (*get)(const struct row *r);
    int dir;                        /* 1 ascending, -1 descending */
};

static double by_slot(const struct row *r) { return (r->pool[0] ? 1e9 : 0) + r->slot; }
static double by_pid(const struct row *r) { return (double)r->pid; }
static double by_rate(const struct row *r) { return r->req_s; }
static double by_active(const struct row *r) { return r->active; }
static double by_p99(const struct row *r) { return r->p99; }
static double by_cpu(const struct row *r) { return r->cpu_pct; }
static double by_rss(const struct row *r) { return r->rss; }

static const struct sort_key keys[] = {
    { 's', "slot", by_slot, 1 },      { 'n', "pid", by_pid, 1 },
    { 'r', "req/s", by_rate, -1 },    { 'a', "active", by_active, -1 },
    { 'l', "p99", by_p99, -1 },       { 'c', "cpu", by_cpu, -1 },
    { 'm', "rss", by_rss, -1 },
};
#define NKEYS (sizeof keys / sizeof keys[0])

static const struct sort_key *sort_by;

static int cmp_rows(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    double dx = sort_by->get(x), dy = sort_by->get(y);
    if (dx != dy)
        return (dx < dy ? -1 : 1) * sort_by->dir;
    double sx = by_slot(x), sy = by_slot(y);     /* ties: in slot order */
    return sx < sy ? -1 : sx > sy;
}

/* --- drawing ------------------------------------------------------------ */

struct screen {
    bool tty;
    int cols, lines;
    FILE *out;
};

/* One line, cut at the width, cleared to its end on a terminal. */
static void put_line(struct screen *sc, int *used, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put_line(struct screen *sc, int *used, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    if (sc->tty && *used >= sc->lines)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (sc->tty && sc->cols > 0 && (int)strlen(line) > sc->cols)
        line[sc->cols] = '\0';
    fprintf(sc->out, "%s%s\n", line, sc->tty ? "\033[K" : "");
    (*used)++;
}

static void draw(struct screen *sc, struct frame *f, const char *error)
{
    char clock[16], up[16], p99[16], rss[16], rate[16], active[16], pool[48];
    time_t t = time(NULL);
    int used = 0;
    strftime(clock, sizeof clock, "%H:%M:%S", localtime(&t));
    if (sc->tty)
        fputs("\033[H", sc->out);
    qsort(f->rows, f->nrows, sizeof f->rows[0], cmp_rows);
    put_line(sc, &used, "%s  %s", f->head[0], clock);
    put_line(sc, &used, "%s", f->head[1]);
    put_line(sc, &used, "%s", f->head[2]);
    if (error)
        put_line(sc, &used, "master not answering: %s", error);
    if (sc->tty)
        put_line(sc, &used, "sort: %-6s (s slot, n pid, r req/s, a active, l p99, c cpu, "
                 "m rss; q quit)", sort_by->name);
    else
        put_line(sc, &used, "sort: %s", sort_by->name);
    put_line(sc, &used, "%s", "");
    put_line(sc, &used, "%-10s %-7s %-4s %-12s %8s %6s %7s %5s %6s %7s", "SLOT", "PID",
             "GEN", "STATE", "REQ/S", "ACTIVE", "P99", "CPU%", "RSS", "UP");
    for (size_t i = 0; i < f->nrows; i++) {
        const struct row *r = &f->rows[i];
        snprintf(pool, sizeof pool, "%s%s%d", r->pool, r->pool[0] ? "/" : "", r->slot);
        snprintf(rate, sizeof rate, r->req_s < 0 ? "-" : "%.1f", r->req_s);
        snprintf(active, sizeof active, r->active < 0 ? "-" : "%.0f", r->active);
        put_line(sc, &used, "%-10s %-7ld %-4d %-12s %8s %6s %7s %5.0f %6s %7s", pool, r->pid,
                 r->gen, r->state, rate, active, status_fmt_ms(r->p99, p99, sizeof p99),
                 r->cpu_pct, fmt_bytes(r->rss, rss, sizeof rss),
                 fmt_dur(r->up, up, sizeof up));
    }
    if (sc->tty)
        fputs("\033[J", sc->out);
    fflush(sc->out);
}

/* --- the loop ----------------------------------------------------------- */

static volatile sig_atomic_t got_quit, got_winch;

static void on_signal(int sig)
{
    if (sig == SIGWINCH)
        got_winch = 1;
    else
        got_quit = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void window_size(struct screen *sc)
{
    struct winsize ws;
    sc->cols = 80;
    sc->lines = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        sc->cols = ws.ws_col;
        sc->lines = ws.ws_row;
    }
}

/* Wall-clock seconds for uptimes: the JSON's times are Unix seconds. */
static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sample(const char *sock, char *answer, struct frame *f, char *err, size_t errlen)
{
    if (control_request(sock, "status json", answer, ANSWER_MAX) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", sock, strerror(e));
        errno = e;
        return -1;
    }
    if (strncmp(answer, "error", 5) == 0) {
        snprintf(err, errlen, "%.200s", answer);
        return -1;
    }
    parse_frame(answer, f, wall_s());
    return 0;
}

static const struct sort_key *key_for(int c)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].key == c)
            return &keys[i];
    return NULL;
}

int top_main(const char *conf_path)
{
    char sock[PATH_MAX], err[512];
    struct config cfg;
    if (config_load(conf_path, &cfg, err, sizeof err) == 0) {
        snprintf(sock, sizeof sock, "%s", cfg.control_socket);
        config_free(&cfg);
    } else if (config_peek_path(conf_path, "control_socket", sock, sizeof sock) != 0) {
        fprintf(stderr, "preforkd: %s\n", err);
        return 1;
    }
    char *answer = malloc(ANSWER_MAX);
    struct frame *f = calloc(1, sizeof *f);
    if (!answer || !f) {
        fprintf(stderr, "preforkd: out of memory\n");
        return 1;
    }
    sort_by = &keys[0];
    struct screen sc = { .tty = isatty(STDOUT_FILENO), .out = stdout };
    int rc = 0;
    if (!sc.tty) {
        if (sample(sock, answer, f, err, sizeof err) != 0) {
            int e = errno;
            fprintf(stderr, "preforkd: %s\n", err);
            rc = e == ENOENT || e == ECONNREFUSED ? 3 : 1;
        } else {
            draw(&sc, f, NULL);
        }
        free(answer);
        free(f);
        return rc;
    }
    struct sigaction sa = { .sa_handler = on_signal };   /* no SA_RESTART: poll wakes */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGWINCH, &sa, NULL);
    struct termios saved, raw;
    bool term = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (term) {
        raw = saved;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    fputs("\033[?1049h\033[?25l\033[2J", stdout);     /* own screen, no cursor */
    window_size(&sc);
    char *error = NULL;
    double next = 0;
    while (!got_quit) {
        if (now_s() >= next) {
            /* On failure the last frame stays, under the error. */
            error = sample(sock, answer, f, err, sizeof err) == 0 ? NULL : err;
            next = now_s() + REFRESH_MS / 1000.0;
            draw(&sc, f, error);
        }
        /* Keys only from a terminal; otherwise just the refresh. */
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        int wait = (int)((next - now_s()) * 1000);
        int n = poll(&pfd, term ? 1 : 0, wait < 0 ? 0 : wait);
        if (got_winch) {
            got_winch = 0;
            window_size(&sc);
            fputs("\033[2J", stdout);
            draw(&sc, f, error);
        }
        if (n <= 0)
            continue;
        char c;
        if (read(STDIN_FILENO, &c, 1) != 1) {
            got_quit = 1;               /* the terminal went away */
            break;
        }
        const struct sort_key *k = key_for(c);
        if (c == 'q' || c == 'Q')
            break;
        if (!k && (c == '>' || c == '\t'))
            k = &keys[((size_t)(sort_by - keys) + 1) % NKEYS];
        if (!k && c == '<')
            k = &keys[((size_t)(sort_by - keys) + NKEYS - 1) % NKEYS];
        if (k) {
            sort_by = k;
            draw(&sc, f, error);
        }
    }
    fputs("\033[?25h\033[?1049l", stdout);
    fflush(stdout);
    if (term)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    free(answer);
    free(f);
    return 0;
}
