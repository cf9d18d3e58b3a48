/* test_browser: headless Chromium (Debian's chromium, installed by `make
 * test`) loads the bundled site etc/www from the real preforkd; every request
 * in the access log must be a 200, and the page, its stylesheet and its image
 * must all have been asked for. The screenshot is kept in build/. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tests/harness.h"

static struct server srv;
static int port;

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

static void teardown(void)
{
    server_cleanup(&srv);
}

/* Chromium can take a while to start on a busy machine. */
TestSuite(browser, .init = setup, .fini = teardown, .timeout = 150);

static void start_site(void)
{
    char out[4096];
    cr_assert_eq(h_run(out, sizeof out, "cp -R '%s/etc/www/.' '%s/www/'", h_root(), srv.dir),
                 0, "copying etc/www: %s", out);
    server_write_conf(&srv, "workers = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
                      "http { root = \"www\" access_log = \"access.log\" }\n", port);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
}

/* Not installed is a failure, not a skip: `make test` installs it. */
static void load_page(void)
{
    char out[4096];
    cr_assert_eq(h_run(out, sizeof out, "command -v chromium"), 0,
                 "chromium is not installed (make test installs it: apt-get install chromium)");
    int rc = h_run(out, sizeof out,
                   "cd '%1$s' && timeout 60 chromium --headless --no-sandbox --disable-gpu "
                   "--disable-quic --no-first-run --disable-background-networking "
                   "--disable-component-update --disable-sync --user-data-dir=profile "
                   "--screenshot='%1$s/shot.png' --window-size=800,600 "
                   "http://127.0.0.1:%2$d/ >chromium.log 2>&1; rc=$?; "
                   "tail -c 2000 chromium.log; exit $rc", srv.dir, port);
    cr_assert_eq(rc, 0, "chromium exited with %d:\n%s", rc, out);
}

/* "GET /path HTTP/1.1" in the access log: a request for exactly path. */
static bool requested(const char *log, const char *path)
{
    char needle[256];
    snprintf(needle, sizeof needle, "\"GET %s HTTP/1.1\"", path);
    return log && strstr(log, needle);
}

static bool log_has_site(const char *path)
{
    char *log = h_read_file(path);
    bool all = requested(log, "/") && requested(log, "/style.css") &&
               requested(log, "/logo.png");
    free(log);
    return all;
}

/* Every line: host - - [time] "request" STATUS bytes "referer" "agent". */
static void assert_all_200(const char *log)
{
    int lines = 0;
    for (const char *l = log; *l; l = strchr(l, '\n') + 1) {
        const char *req = strchr(l, '"'), *end = req ? strchr(req + 1, '"') : NULL;
        cr_assert_not_null(end, "malformed access log line: %.200s", l);
        cr_assert_eq(atoi(end + 1), 200, "not a 200: %.*s", (int)strcspn(l, "\n"), l);
        lines++;
        if (!strchr(l, '\n'))
            break;
    }
    cr_assert_geq(lines, 3);
}

static void assert_png(const char *path)
{
    static const unsigned char sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "no screenshot at %s", path);
    size_t n = fread(head, 1, sizeof head, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert(n == sizeof sig && memcmp(head, sig, sizeof sig) == 0, "not a PNG: %s", path);
    cr_assert_gt(size, 1000, "screenshot of %ld bytes is too small to show the page", size);
}

Test(browser, bundled_site_loads_without_an_error)
{
    start_site();
    load_page();
    char alog[PATH_MAX], shot[PATH_MAX];
    snprintf(alog, sizeof alog, "%s/access.log", srv.dir);
    /* Workers buffer the log and flush it about once a second. */
    cr_assert(WAIT_UNTIL(log_has_site(alog), 10000),
              "/, /style.css and /logo.png were not all requested");
    h_sleep_ms(1500);           /* the other worker's lines, if any */
    char *log = h_read_file(alog);
    cr_assert_not_null(log);
    assert_all_200(log);
    free(log);
    snprintf(shot, sizeof shot, "%s/shot.png", srv.dir);
    assert_png(shot);
    char out[512];
    h_run(out, sizeof out, "cp '%s' '%s/build/browser-shot.png'", shot, h_root());
}
