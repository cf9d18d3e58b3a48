/* fuzz_worker: the worker loop's side of struct proto and the served site,
 * shared by the fuzz harnesses (see fuzz_worker.h). */
#include "tests/fuzz_worker.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/log.h"
#include "workers/http.h"
#include "workers/tls.h"

struct worker fuzz_w;
bool fuzz_closed;
static char base[64];

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

/* As worker.c's, then freed at once, so ASan reports any later use. */
void conn_close(struct conn *c)
{
    if (c->proto->on_close)
        c->proto->on_close(c);
    tls_conn_close(c);
    free(c);
    fuzz_closed = true;
}

/* No per-address limits here. */
bool conn_rate_ok(struct conn *c)
{
    (void)c;
    return true;
}

int64_t monotonic_ms(void)
{
    return fuzz_w.now_ms;
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
    put_text("outside/secret.txt", FUZZ_SECRET "\n");
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

/* The default site has every site feature on (precompressed, autoindex,
 * error pages, expires); a second site, chosen by Host, has none. */
static void site_conf(struct config *cfg)
{
    snprintf(cfg->http.root, sizeof cfg->http.root, "%s/www", base);
    snprintf(cfg->http.index, sizeof cfg->http.index, "index.html");
    const char *alog = getenv("FUZZ_ACCESS_LOG");     /* to see what was answered */
    snprintf(cfg->http.access_log, sizeof cfg->http.access_log, "%s",
             alog ? alog : "/dev/null");
    cfg->http.keepalive_timeout = 5;
    cfg->http.header_timeout = 10;
    cfg->http.max_header_size = 4608;   /* above URL_MAX: both 414 paths */
    static struct error_page pages[] = { { 404, "/404.html" }, { 403, "/noindex/x.js" } };
    static struct expires_rule rules[] = { { "*.css", false, 60 }, { "/sub/", true, 3600 } };
    cfg->http.opts = (struct site_opts){
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
    cfg->sites = &site;
    cfg->nsites = 1;
}

const char *fuzz_site_init(struct config *cfg)
{
    char err[256];
    snprintf(base, sizeof base, "/tmp/preforkd-fuzz.XXXXXX");
    if (!mkdtemp(base))
        abort();
    atexit(remove_root);
    make_root();
    if (log_open("/dev/null", LOG_LVL_DEBUG, err, sizeof err) != 0)
        abort();
    site_conf(cfg);
    fuzz_w.cfg = cfg;
    fuzz_w.now_ms = 1000000;
    if (http_proto.init(&fuzz_w) != 0)
        abort();
    return base;
}
