/* fuzz_http: libFuzzer harness of the HTTP handler. Each input is the byte
 * stream of one client connection, run through the real workers/http.c
 * (llhttp, path resolution against a real root, the file cache, response
 * building, the access log) with the worker loop and the socket calls of
 * workers/http_io.h replaced by the memory-backed fakes below. The default
 * site has every site feature on (precompressed, autoindex, error pages,
 * expires); a second site, chosen by Host, has none. */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/log.h"
#include "workers/http.h"
#include "workers/http_io.h"

#define SECRET "TOP-SECRET-OUTSIDE-ROOT"

/* How the fake client and socket behave for one run of an input. */
struct mode {
    size_t read_chunk;          /* bytes per read(); 0 = all that fits */
    size_t send_cap;            /* bytes per send/sendfile; 0 = all */
    bool eagain;                /* every other send returns EAGAIN */
    bool drain_when_idle;          /* the worker drains once the client waits */
    bool timeout_at_end;        /* the client goes silent instead of EOF */
};

static struct {
    const uint8_t *in;
    size_t len, pos;
    bool eof;
    struct mode m;
    unsigned sends;
    uint64_t out_total;
    char head[9];               /* first bytes of the response stream */
    bool closed;
} io;

static char base[64];
static struct config cfg;
static struct listen_conf lconf;
static struct wlistener wl;
static struct worker W;

/* --- the worker loop's side of struct proto ---------------------------- */

struct tlist *worker_timer_list(struct worker *w, int64_t dur_ms)
{
    for (size_t i = 0; i < w->ntimers; i++)
        if (w->timers[i].dur_ms == dur_ms)
            return &w->timers[i];
    if (w->ntimers == sizeof w->timers / sizeof w->timers[0])
        return NULL;
    w->timers[w->ntimers].dur_ms = dur_ms;
    return &w->timers[w->ntimers++];
}

/* One connection at a time: a timer is just which list it is on. */
void conn_timer_set(struct conn *c, struct tlist *tl)
{
    c->tl = tl;
    if (tl)
        c->deadline_ms = c->w->now_ms + tl->dur_ms;
}

void conn_timer_clear(struct conn *c)
{
    c->tl = NULL;
}

int conn_set_interest(struct conn *c, uint32_t events)
{
    c->interest = events;
    return 0;
}

/* Freed at once, so ASan reports any later use by the handler. */
void conn_close(struct conn *c)
{
    if (c->proto->on_close)
        c->proto->on_close(c);
    free(c);
    io.closed = true;
}

/* No per-address limits here. */
bool conn_rate_ok(struct conn *c)
{
    (void)c;
    return true;
}

int64_t monotonic_ms(void)
{
    return W.now_ms;
}

/* --- the socket calls, in memory ----------------------------------------- */

ssize_t http_io_read(int fd, void *buf, size_t len)
{
    (void)fd;
    size_t left = io.len - io.pos;
    if (!left) {
        if (io.eof)
            return 0;
        errno = EAGAIN;
        return -1;
    }
    size_t n = len < left ? len : left;
    if (io.m.read_chunk && n > io.m.read_chunk)
        n = io.m.read_chunk;
    memcpy(buf, io.in + io.pos, n);
    io.pos += n;
    return (ssize_t)n;
}

/* Short writes and EAGAIN as the mode says; n bytes go out. */
static ssize_t out_room(size_t len, size_t cap)
{
    if (io.m.eagain && io.sends++ % 2 == 0) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)(cap && len > cap ? cap : len);
}

ssize_t http_io_send(int fd, const void *buf, size_t len, int flags)
{
    (void)fd, (void)flags;
    if (len == 0)
        abort();                        /* the handler never sends nothing */
    ssize_t n = out_room(len, io.m.send_cap);
    if (n < 0)
        return n;
    static char sink[1 << 16];
    size_t touch = (size_t)n < sizeof sink ? (size_t)n : sizeof sink;
    memcpy(sink, buf, touch);           /* ASan checks every byte sent */
    if (memmem(buf, (size_t)n, SECRET, sizeof SECRET - 1) &&
        !memmem(io.in, io.len, SECRET, sizeof SECRET - 1))
        abort();        /* a file outside the root was served (not an echo) */
    for (size_t i = 0; io.out_total + i < sizeof io.head && i < (size_t)n; i++)
        io.head[io.out_total + i] = ((const char *)buf)[i];
    io.out_total += (uint64_t)n;
    return n;
}

ssize_t http_io_sendfile(int out_fd, int in_fd, off_t *off, size_t count)
{
    (void)out_fd;
    struct stat st;
    if (fstat(in_fd, &st) != 0 || !S_ISREG(st.st_mode) || *off < 0 ||
        (uint64_t)*off + count > (uint64_t)st.st_size || count == 0)
        abort();                        /* a bad fd or a range past the end */
    if (io.out_total < sizeof io.head)
        abort();                        /* a body before any header */
    ssize_t n = out_room(count, io.m.send_cap * 1024);  /* big files: 1-byte steps are slow */
    if (n < 0)
        return n;
    *off += n;
    io.out_total += (uint64_t)n;
    return n;
}

int http_io_shutdown_wr(int fd)
{
    (void)fd;
    return 0;
}

size_t http_io_tls_text(int fd, char *out, size_t cap)
{
    (void)fd, (void)out, (void)cap;
    return 0;
}

/* --- the root directory ------------------------------------------------- */

static void put_file(const char *rel, const char *text, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    FILE *f = fopen(path, "w");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0)
        abort();
}

static void put_text(const char *rel, const char *text)
{
    put_file(rel, text, strlen(text));
}

static void sub_mkdir(const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    if (mkdir(path, 0755) != 0)
        abort();
}

static void sub_symlink(const char *target, const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    if (symlink(target, path) != 0)
        abort();
}

/* Small files (kept in memory), a large one (sent with sendfile), an empty
 * one, odd names, directories with and without an index, and symlinks that
 * stay inside the root or lead out of it (those must never be served). */
static void make_root(void)
{
    static char big[40000];
    memset(big, 'b', sizeof big);
    sub_mkdir("www");
    sub_mkdir("outside");
    put_text("outside/secret.txt", SECRET "\n");
    put_text("www/index.html", "<html><body>index</body></html>\n");
    put_text("www/a.txt", "hello\n");
    put_text("www/style.css", "body { color: red }\n");
    put_file("www/big.bin", big, sizeof big);
    put_text("www/empty", "");
    put_text("www/a.txt.gz", "gz\n");
    put_text("www/a.txt.br", "br\n");
    put_file("www/big.bin.gz", big, sizeof big / 2);
    put_text("www/404.html", "<h1>404</h1>\n");
    put_text("www/sp ace.txt", "space\n");
    put_text("www/pct%41.txt", "percent\n");
    sub_mkdir("www/sub");
    put_text("www/sub/index.html", "<p>sub</p>\n");
    sub_mkdir("www/noindex");
    put_text("www/noindex/x.js", "x = 1;\n");
    sub_symlink("../outside/secret.txt", "www/link-out");
    sub_symlink("../outside", "www/dir-out");
    sub_symlink("a.txt", "www/link-in");
    sub_symlink("/etc/passwd", "www/passwd");
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(path);
}

static void remove_root(void)
{
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char err[256];
    snprintf(base, sizeof base, "/tmp/preforkd-fuzz.XXXXXX");
    if (!mkdtemp(base))
        abort();
    atexit(remove_root);
    make_root();
    if (log_open("/dev/null", LOG_LVL_DEBUG, err, sizeof err) != 0)
        abort();
    snprintf(cfg.http.root, sizeof cfg.http.root, "%s/www", base);
    snprintf(cfg.http.index, sizeof cfg.http.index, "index.html");
    const char *alog = getenv("FUZZ_ACCESS_LOG");     /* to see what was answered */
    snprintf(cfg.http.access_log, sizeof cfg.http.access_log, "%s", alog ? alog : "/dev/null");
    cfg.http.keepalive_timeout = 5;
    cfg.http.header_timeout = 10;
    cfg.http.max_header_size = 4608;    /* above URL_MAX: both 414 paths */
    static struct error_page pages[] = { { 404, "/404.html" }, { 403, "/noindex/x.js" } };
    static struct expires_rule rules[] = { { "*.css", false, 60 }, { "/sub/", true, 3600 } };
    cfg.http.opts = (struct site_opts){
        .precompressed = true, .autoindex = true, .error_pages = pages, .nerror_pages = 2,
        .expires = rules, .nexpires = 2,
    };
    static char *names[] = { "s.test", "*.w.test", NULL };
    static int lines[] = { 1, 1 };
    static struct site_conf site = {
        .name = "s", .server_names = names, .server_name_lines = lines, .nserver_names = 2,
        .index = "index.html",
    };
    snprintf(site.root, sizeof site.root, "%s/www", base);
    cfg.sites = &site;
    cfg.nsites = 1;
    lconf.addr.sa.ss_family = AF_UNIX;  /* no TCP_NODELAY on a fake fd */
    wl.conf = &lconf;
    wl.proto = &http_proto;
    W.cfg = &cfg;
    W.now_ms = 1000000;
    if (http_proto.init(&W) != 0)
        abort();
    return 0;
}

/* --- one connection ----------------------------------------------------- */

/* Input exhausted and the handler waits for more: drain, time out or EOF. */
static void client_idle(struct conn *c)
{
    if (io.m.drain_when_idle && !W.draining) {
        W.draining = true;
        http_proto.on_drain(c);
    } else if (io.m.timeout_at_end) {
        W.now_ms += 10000;
        http_proto.on_timeout(c);
    } else {
        io.eof = true;
        http_proto.on_event(c, EPOLLIN);
    }
}

static void run_conn(const uint8_t *data, size_t size, struct mode m)
{
    memset(&io, 0, sizeof io);
    io.in = data, io.len = size, io.m = m;
    W.draining = false;
    struct conn *c = calloc(1, sizeof *c + http_proto.state_size);
    if (!c)
        abort();
    c->fd = -1, c->w = &W, c->proto = &http_proto, c->ls = &wl;
    http_proto.on_open(c);
    size_t stalled = 0, last_pos = 0;
    uint64_t last_out = 0;
    while (!io.closed) {
        stalled = io.pos == last_pos && io.out_total == last_out ? stalled + 1 : 0;
        if (stalled == 100)
            abort();                    /* the handler makes no progress */
        last_pos = io.pos, last_out = io.out_total;
        W.now_ns++;                     /* each event a wake-up of its own (the
                                           sendfile budget is per wake-up) */
        if (c->interest & EPOLLOUT)
            http_proto.on_event(c, EPOLLOUT);
        else if (io.pos < io.len)
            http_proto.on_event(c, EPOLLIN);
        else
            client_idle(c);
    }
    if (io.out_total && memcmp(io.head, "HTTP/1.1 ", io.out_total < 9 ? io.out_total : 9))
        abort();                        /* the stream must start with a status line */
    http_proto.on_tick(&W);
}

/* The I/O pattern of the second run, from the input's own bytes. */
static struct mode mode_of(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = { 0, 1, 2, 5, 64, 700 };
    static const size_t caps[] = { 0, 1, 13, 1000 };
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    return (struct mode){
        .read_chunk = chunks[h % 6], .send_cap = caps[(h >> 3) % 4],
        .eagain = h & 0x100, .drain_when_idle = h & 0x200, .timeout_at_end = h & 0x400,
    };
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    W.now_ms += 300;                    /* cache entries expire every few runs */
    run_conn(data, size, (struct mode){ 0 });
    run_conn(data, size, mode_of(data, size));
    return 0;
}
