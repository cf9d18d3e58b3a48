/* The live view's status listener (issue 15): the page, status.json,
 * metrics and healthz served by the master itself; the allow-list, garbage,
 * slowloris and every worker stopped; graceful_stop_delay; the page in
 * headless Chromium. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/cidr.h"
#include "server/statushttp.h"
#include "tests/harness.h"

static struct server srv;
static int port, sport;                 /* a listener; the status listener */
static char out[1 << 17];

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
    sport = h_free_port(SOCK_STREAM);
}

/* server_cleanup stops the master and whatever it started, by pid. */
static void teardown(void)
{
    server_cleanup(&srv);
}


TestSuite(status_cidr);

Test(status_cidr, allow_rules)
{
    struct cidr r[3];
    char err[200];
    cr_assert_eq(cidr_parse("127.0.0.1", &r[0], err, sizeof err), 0);
    cr_assert_eq(cidr_parse("10.1.0.0/16", &r[1], err, sizeof err), 0);
    cr_assert_eq(cidr_parse("fd00::/8", &r[2], err, sizeof err), 0);
    cr_assert_eq(cidr_parse("10.0.0.0/33", &r[0], err, sizeof err), -1);
    cr_assert_eq(cidr_parse("localhost", &r[0], err, sizeof err), -1);
    cr_assert(strstr(err, "not an IP address"), "%s", err);
    cr_assert_eq(cidr_parse("127.0.0.1", &r[0], err, sizeof err), 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    struct sockaddr_in6 b = { .sin6_family = AF_INET6 };
    inet_pton(AF_INET, "10.1.200.3", &a.sin_addr);
    cr_assert(cidr_match(r, 3, (struct sockaddr *)&a));
    inet_pton(AF_INET, "10.2.0.1", &a.sin_addr);
    cr_assert(!cidr_match(r, 3, (struct sockaddr *)&a));
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &b.sin6_addr);
    cr_assert(cidr_match(r, 3, (struct sockaddr *)&b), "v4-mapped matches v4");
    inet_pton(AF_INET6, "fdaa::1", &b.sin6_addr);
    cr_assert(cidr_match(r, 3, (struct sockaddr *)&b));
    inet_pton(AF_INET6, "::1", &b.sin6_addr);
    cr_assert(!cidr_match(r, 3, (struct sockaddr *)&b));
}

/* --- helpers ------------------------------------------------------------ */

/* Connect to 127.0.0.1:p from address `from` (NULL: any). */
static int connect_from(const char *from, int p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0)
        return -1;
    if (from) {
        struct sockaddr_in me = { .sin_family = AF_INET };
        inet_pton(AF_INET, from, &me.sin_addr);
        if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read to EOF within ms into buf; the length. */
static size_t read_to_eof(int fd, char *buf, size_t cap, int ms)
{
    size_t len = 0;
    int64_t end = h_now_ms() + ms;
    while (len + 1 < cap && h_now_ms() < end &&
           h_read_some(fd, buf + len, cap - 1 - len, (int)(end - h_now_ms()), &len) == 0)
        ;
    buf[len] = '\0';
    return len;
}

/* Send raw bytes on a new connection from `from`; the status code of the
 * answer (read to EOF into out), or -1. */
static int raw_from(const char *from, int p, const char *req, size_t reqlen, int ms)
{
    int fd = connect_from(from, p);
    out[0] = '\0';
    if (fd < 0)
        return -1;
    if (reqlen && h_write_full(fd, req, reqlen) != 0) {
        close(fd);
        return -1;
    }
    read_to_eof(fd, out, sizeof out, ms);
    close(fd);
    int code = -1;
    return sscanf(out, "HTTP/1.1 %d", &code) == 1 ? code : -1;
}

static int get_from(const char *from, const char *path)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    return raw_from(from, sport, req, (size_t)n, 5000);
}

static int get(const char *path)
{
    return get_from(NULL, path);
}

static const char *body(void)
{
    const char *b = strstr(out, "\r\n\r\n");
    return b ? b + 4 : "";
}

static void start(const char *fmt_body, ...) __attribute__((format(printf, 1, 2)));
static void start(const char *fmt_body, ...)
{
    char conf[4096];
    va_list ap;
    va_start(ap, fmt_body);
    vsnprintf(conf, sizeof conf, fmt_body, ap);
    va_end(ap);
    server_write_conf(&srv, "%s", conf);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready: %s",
                 h_read_file(srv.log));
}

/* An echo pool with the status listener, as most tests here want it. */
static void start_echo(int workers, const char *extra)
{
    start("workers = %d\ngraceful_timeout = 5\nstatus_listen = \"127.0.0.1:%d\"\n%s\n"
          "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
          workers, sport, extra, port);
}

static int echo_once(size_t n)
{
    unsigned char buf[4096], back[4096];
    memset(buf, 'e', n);
    int fd = h_tcp_connect(port);
    if (fd < 0)
        return -1;
    int rc = h_echo_exchange(fd, buf, n, back, n, 5000);
    close(fd);
    return rc == 0 && memcmp(buf, back, n) == 0 ? 0 : -1;
}

/* The control socket answers `status` within ms (the master's loop runs). */
static bool control_answers(int ms)
{
    int fd = h_unix_connect(srv.sock);
    char buf[64];
    bool ok = fd >= 0 && h_write_full(fd, "status\n", 7) == 0 &&
              h_read_full(fd, buf, 8, ms) == 0 && strncmp(buf, "preforkd", 8) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* --- the status listener ------------------------------------------------ */

TestSuite(status_http, .init = setup, .fini = teardown, .timeout = 90);

Test(status_http, endpoints)
{
    start_echo(2, "");
    cr_assert_eq(echo_once(100), 0);
    cr_assert_eq(get("/healthz"), 200, "%s", out);
    cr_assert_str_eq(body(), "ok\n");
    cr_assert_eq(get("/"), 200, "%s", out);
    cr_assert(strstr(out, "Content-Type: text/html"), "%.300s", out);
    cr_assert(strstr(body(), "<!doctype html>") == body(), "%.100s", body());
    cr_assert(strstr(body(), "status.json"));
    cr_assert(!strstr(body(), "src=\"http") && !strstr(body(), "href=\"http"),
              "the page loads nothing from elsewhere");
    cr_assert_eq(get("/status.json?x=1"), 200, "%s", out);
    cr_assert(strstr(out, "Content-Type: application/json"));
    cr_assert(h_json_valid(body()), "invalid JSON: %.300s", body());
    cr_assert_eq(h_json_number(body(), "master_pid"), srv.pid);
    cr_assert(strstr(body(), "\"health\":\"ok\""), "%.300s", body());
    char sl[64];
    snprintf(sl, sizeof sl, "\"status_listen\":\"127.0.0.1:%d\"", sport);
    cr_assert(strstr(body(), sl), "%.400s", body());
    cr_assert_eq(get("/metrics"), 200, "%s", out);
    cr_assert(strstr(out, "text/plain; version=0.0.4"), "%.300s", out);
    cr_assert(strstr(body(), "preforkd_workers{state=\"idle\"} 2"), "%s", body());
    cr_assert_eq(get("/nope"), 404, "%s", out);
    char req[] = "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    cr_assert_eq(raw_from(NULL, sport, req, sizeof req - 1, 5000), 405, "%s", out);
    char head[] = "HEAD /status.json HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(raw_from(NULL, sport, head, sizeof head - 1, 5000), 200, "%s", out);
    cr_assert_str_eq(body(), "", "HEAD has no body");
    /* The same object as `status --json`. */
    cr_assert_eq(h_run(out, sizeof out, "%s status --json -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, sl) && strstr(out, "\"latency_ms\""), "%.400s", out);
}

/* /metrics is valid exposition: the suite's own checker and, when Debian's
 * prometheus package is there, promtool. */
Test(status_http, metrics_valid)
{
    start("workers = 2\nstatus_listen = \"127.0.0.1:%d\"\n"
          "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n", sport, port);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/index.html", srv.dir);
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    char buf[4096];
    for (int i = 0; i < 20; i++)
        cr_assert_str_eq(h_http_body(port, "GET / HTTP/1.0\r\n\r\n", buf, sizeof buf, 5000),
                         "hello\n");
    cr_assert(WAIT_UNTIL(get("/metrics") == 200 &&
                         strstr(body(), "preforkd_request_duration_seconds_count{listener=") &&
                         !strstr(body(), "_count{listener=\"127.0.0.1:0\"} 0"), 5000));
    char want[128];
    snprintf(want, sizeof want, "preforkd_request_duration_seconds_count{listener=\"127.0.0.1:%d\"} 20",
             port);
    cr_assert(WAIT_UNTIL(get("/metrics") == 200 && strstr(body(), want), 4000), "%s", body());
    snprintf(want, sizeof want,
             "preforkd_request_duration_seconds_bucket{listener=\"127.0.0.1:%d\",le=\"+Inf\"} 20",
             port);
    cr_assert(strstr(body(), want), "%s", body());
    cr_assert(strstr(body(), "# TYPE preforkd_request_duration_seconds histogram"));
    cr_assert(strstr(body(), ",le=\"0.00001\"} "), "%s", body());
    const char *bad = NULL;
    cr_assert(h_prometheus_valid(body(), &bad), "bad exposition line: %.120s", bad);
    snprintf(path, sizeof path, "%s/metrics.txt", srv.dir);
    f = fopen(path, "w");
    fputs(body(), f);
    fclose(f);
    if (h_run(out, sizeof out, "command -v promtool") != 0) {
        cr_log_warn("promtool not installed (Debian package prometheus): only the "
                    "suite's own format check ran");
        return;
    }
    int rc = h_run(out, sizeof out, "promtool check metrics < '%s'", path);
    cr_assert_eq(rc, 0, "promtool check metrics: %s", out);
}

/* A real Prometheus (Debian's package) scrapes /metrics every second, and
 * the README's p99 query answers from what it stored. */
Test(status_http, prometheus_scrapes_and_answers_the_p99_query)
{
    if (h_run(out, sizeof out, "command -v prometheus") != 0)
        cr_skip_test("prometheus not installed (Debian package prometheus)");
    SKIP_UNDER_VALGRIND("the scrape interval is a second");
    start("workers = 2\nstatus_listen = \"127.0.0.1:%d\"\n"
          "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n", sport, port);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/index.html", srv.dir);
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/prometheus.yml", srv.dir);
    f = fopen(path, "w");
    fprintf(f, "global: { scrape_interval: 1s, evaluation_interval: 1s }\n"
            "scrape_configs:\n  - job_name: preforkd\n"
            "    static_configs: [ { targets: ['127.0.0.1:%d'] } ]\n", sport);
    fclose(f);
    int pport = h_free_port(SOCK_STREAM);
    pid_t prom = fork();
    if (prom == 0) {
        char cfg[PATH_MAX + 32], db[PATH_MAX + 32], web[64], logf[PATH_MAX];
        snprintf(cfg, sizeof cfg, "--config.file=%s", path);
        snprintf(db, sizeof db, "--storage.tsdb.path=%s/tsdb", srv.dir);
        snprintf(web, sizeof web, "--web.listen-address=127.0.0.1:%d", pport);
        snprintf(logf, sizeof logf, "%s/prometheus.log", srv.dir);
        int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("prometheus", "prometheus", cfg, db, web, (char *)NULL);
        _exit(127);
    }
    cr_assert_gt(prom, 0);
    struct h_load load;
    h_load_start(&load, port, "GET / HTTP/1.0\r\n\r\n", "hello");
    const char *q = "histogram_quantile(0.99,%20sum%20by%20(le,%20listener)%20"
                    "(rate(preforkd_request_duration_seconds_bucket%5B1m%5D)))";
    char want[64];
    snprintf(want, sizeof want, "\"listener\":\"127.0.0.1:%d\"", port);
    bool answered = WAIT_UNTIL(h_run(out, sizeof out, "curl -s 'http://127.0.0.1:%d/api/v1/query?"
                                     "query=%s'", pport, q) == 0 && strstr(out, want) &&
                               !strstr(out, "\"NaN\""), 30000);
    h_load_stop(&load);
    kill(prom, SIGTERM);
    int st;
    if (!WAIT_UNTIL(waitpid(prom, &st, WNOHANG) == prom, 10000)) {
        kill(prom, SIGKILL);
        waitpid(prom, &st, 0);
    }
    cr_assert(answered, "no p99 from prometheus: %s", out);
    cr_log_info("prometheus: %.300s", out);
}

/* The master answers with every worker stopped (PHP-FPM's page would hang). */
Test(status_http, answers_with_every_worker_stopped)
{
    start_echo(2, "worker_timeout = 60");
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 2, 5000));
    cr_assert_eq(kill(w[0], SIGSTOP), 0);
    cr_assert_eq(kill(w[1], SIGSTOP), 0);
    int64_t t0 = h_now_ms();
    cr_assert_eq(get("/healthz"), 200, "%s", out);
    cr_assert_eq(get("/"), 200);
    cr_assert_eq(get("/metrics"), 200);
    cr_assert_eq(get("/status.json"), 200);
    int64_t dt = h_now_ms() - t0;
    char pid[32];
    snprintf(pid, sizeof pid, "\"pid\":%d,", (int)w[1]);
    cr_assert(strstr(body(), pid), "%s", body());
    cr_assert(WAIT_UNTIL(get("/status.json") == 200 &&
                         h_json_number(body(), "unresponsive") == 2, 6000), "%s", body());
    kill(w[0], SIGCONT);
    kill(w[1], SIGCONT);
    cr_log_info("four answers with both workers stopped: %lld ms", (long long)dt);
}

/* Default allow-list: loopback only, and 127.0.0.2 is not 127.0.0.1. */
Test(status_http, allow_list_refuses_others)
{
    start_echo(1, "");
    int fd = connect_from("127.0.0.2", port);
    if (fd < 0)
        cr_skip_test("cannot bind a client to 127.0.0.2 here");
    close(fd);
    cr_assert_eq(get_from("127.0.0.2", "/healthz"), 403, "%s", out);
    cr_assert_eq(get_from("127.0.0.1", "/healthz"), 200, "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "not in status_allow; last 127.0.0.2") >= 1, 3000),
              "%s", h_read_file(srv.log));
}

Test(status_http, allow_list_configured)
{
    start_echo(1, "status_allow = {\"10.0.0.0/8\", \"127.0.0.2/32\"}");
    cr_assert_eq(get_from("127.0.0.1", "/healthz"), 403, "%s", out);
    int fd = connect_from("127.0.0.2", sport);
    if (fd < 0)
        cr_skip_test("cannot bind a client to 127.0.0.2 here");
    close(fd);
    cr_assert_eq(get_from("127.0.0.2", "/healthz"), 200, "%s", out);
}

Test(status_http, bad_configuration_refused)
{
    server_write_conf(&srv, "status_listen = \"unix:/tmp/x.sock\"\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 1);
    cr_assert(strstr(out, ":5: status_listen: must be \"\" (off) or a TCP host:port"), "%s", out);
    server_write_conf(&srv, "status_allow = {\"127.0.0.1\", \"everyone\"}\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 1);
    cr_assert(strstr(out, ":5: status_allow: \"everyone\" is not an IP address"), "%s", out);
    server_write_conf(&srv, "status_listen = \"127.0.0.1:%d\"\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port, port);
    cr_assert_eq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 1);
    cr_assert(strstr(out, "is also status_listen"), "%s", out);
    server_write_conf(&srv, "graceful_stop_delay = -1\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 1);
    cr_assert(strstr(out, "graceful_stop_delay: must be between 0 and 3600"), "%s", out);
}

/* Garbage gets a 400 and the door, an endless head a 431, a slow trickle
 * (slowloris) is dropped at the read deadline; more clients than the cap
 * are turned away at once. Meanwhile the control socket answers in time
 * and echo serves. */
Test(status_http, garbage_and_slowloris_do_not_harm_the_master)
{
    start_echo(1, "");
    char garbage[] = "\x01\xff\xfe garbage\r\n\r\n";
    cr_assert_eq(raw_from(NULL, sport, garbage, sizeof garbage - 1, 5000), 400, "%s", out);
    static char big[SHTTP_HEAD_MAX + 512];
    memcpy(big, "GET / HTTP/1.1\r\n", 16);
    for (size_t i = 16; i + 8 <= sizeof big; i += 8)
        memcpy(big + i, "X-a: b\r\n", 8);
    cr_assert_eq(raw_from(NULL, sport, big, sizeof big, 5000), 431, "%.200s", out);
    int slow[40];
    for (int i = 0; i < 40; i++) {
        slow[i] = h_tcp_connect(sport);
        cr_assert_geq(slow[i], 0);
    }
    int64_t t0 = h_now_ms();
    for (int round = 0; h_now_ms() - t0 < SHTTP_READ_MS + 1000; round++) {
        for (int i = 0; i < 40; i++)
            (void)!send(slow[i], round ? "X" : "GET / HTTP/1.1\r\nX-slow: ", round ? 1 : 24,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
        cr_assert(control_answers(1000), "control socket slow during the trickle");
        cr_assert_eq(echo_once(64), 0);
        h_sleep_ms(400);
    }
    /* The 32 admitted were dropped at SHTTP_READ_MS (a 408), the rest at
     * once (a 503): every one is closed by the master by now. */
    int closed = 0, answered = 0;
    for (int i = 0; i < 40; i++) {
        char buf[512];
        size_t len = 0;
        int64_t end = h_now_ms() + 2000;
        while (h_now_ms() < end && h_read_some(slow[i], buf + len, sizeof buf - 1 - len,
                                               (int)(end - h_now_ms()), &len) == 0)
            ;
        buf[len] = '\0';
        char c;
        ssize_t r = recv(slow[i], &c, 1, MSG_DONTWAIT);
        closed += r == 0 || (r < 0 && errno != EAGAIN);
        answered += strstr(buf, " 408 ") || strstr(buf, " 503 ");
        close(slow[i]);
    }
    cr_log_info("slow clients: %d closed, %d answered 408 or 503", closed, answered);
    cr_assert_eq(closed, 40, "only %d of 40 slow clients were closed after %lld ms", closed,
                 (long long)(h_now_ms() - t0));
    cr_assert_eq(get("/healthz"), 200, "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "status listener 127.0.0.1:") >= 1, 3000));
    cr_assert(control_answers(1000));
}

/* SIGTERM with graceful_stop_delay: /healthz turns 503 at once, the
 * listeners keep serving for the delay, then close. */
Test(status_http, healthz_draining_before_listeners_close)
{
    start_echo(2, "graceful_stop_delay = 2");
    cr_assert_eq(get("/healthz"), 200);
    cr_assert_eq(kill(srv.pid, SIGTERM), 0);
    int64_t t_term = h_now_ms();
    cr_assert(WAIT_UNTIL(get("/healthz") == 503, 1000), "%s", out);
    int64_t t_503 = h_now_ms();
    cr_assert_str_eq(body(), "draining\n");
    cr_assert(WAIT_UNTIL(get("/status.json") == 200 && strstr(body(), "\"health\":\"draining\""),
                         1000));
    /* Still serving after the 503, until the listener goes. */
    int served_after = 0;
    int64_t t_closed = 0;
    while (h_now_ms() - t_term < 6000) {
        int fd = h_tcp_connect(port);
        if (fd < 0) {
            t_closed = h_now_ms();
            break;
        }
        unsigned char b[8] = "12345678", r[8];
        served_after += h_echo_exchange(fd, b, 8, r, 8, 2000) == 0;
        close(fd);
        h_sleep_ms(100);
    }
    cr_assert_gt(t_closed, 0, "the listener never closed");
    cr_assert_gt(served_after, 5, "served %d after /healthz said draining", served_after);
    cr_assert_lt(t_503, t_closed);
    cr_assert_geq(t_closed - t_term, 1500, "listeners closed %lld ms after TERM",
                  (long long)(t_closed - t_term));
    int st = server_stop(&srv, 0, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    cr_assert_eq(h_file_count(srv.log, "graceful stop in 2 s (graceful_stop_delay)"), 1);
}

/* A reload moves the status listener; a failed bind keeps the old one. */
Test(status_http, reload_moves_the_listener)
{
    start_echo(1, "");
    int sport2 = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 1\nstatus_listen = \"127.0.0.1:%d\"\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", sport2, port);
    cr_assert_eq(kill(srv.pid, SIGHUP), 0);
    int old = sport;
    sport = sport2;
    cr_assert(WAIT_UNTIL(get("/healthz") == 200, 5000));
    sport = old;
    cr_assert(WAIT_UNTIL(get("/healthz") == -1, 2000), "old port still answers");
}

/* --- the page in headless Chromium ----------------------------------------- */

TestSuite(status_page, .init = setup, .fini = teardown, .timeout = 180);

static int chromium(const char *what, const char *url)
{
    return h_run(out, sizeof out,
                 "cd '%s' && timeout 90 chromium --headless --no-sandbox --disable-gpu "
                 "--disable-quic --no-first-run --disable-background-networking "
                 "--disable-component-update --disable-sync --user-data-dir=profile "
                 "--hide-scrollbars --virtual-time-budget=4500 %s '%s' 2>chromium.log; "
                 "rc=$?; [ $rc = 0 ] || tail -c 2000 chromium.log; exit $rc",
                 srv.dir, what, url);
}

/* Points of the first polyline in the DOM; 0 if none. */
static int polyline_points(const char *dom)
{
    const char *p = strstr(dom, "<polyline points=\"");
    if (!p)
        return 0;
    p += 18;
    int n = 0;
    for (; *p && *p != '"'; p++)
        n += *p == ',';
    return n;
}

/* Points in the first listener's chart (its history.req_s). */
static int chart_points(void)
{
    if (get("/status.json") != 200)
        return -1;
    const char *h = strstr(body(), "\"req_s\":[");
    if (!h || h[9] == ']')
        return 0;
    int n = 1;
    for (h += 9; *h && *h != ']'; h++)
        n += *h == ',';
    return n;
}

/* The page, loaded by a real browser, refreshes from status.json, lists
 * every worker and draws the charts; its screenshot goes to build/ (and to
 * $PREFORKD_SHOTS_DIR when set: how the README's picture is made). */
Test(status_page, page_refreshes_lists_workers_and_draws_charts)
{
    cr_assert_eq(h_run(out, sizeof out, "command -v chromium"), 0,
                 "chromium is not installed (make test installs it: apt-get install chromium)");
    start("workers = 3\nstatus_listen = \"127.0.0.1:%d\"\n"
          "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
          "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
          sport, port, h_free_port(SOCK_STREAM));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/index.html", srv.dir);
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    struct h_load load;
    h_load_start(&load, port, "GET / HTTP/1.0\r\n\r\n", "hello");
    /* Three chart steps (5 s each) with traffic in them; for the README's
     * picture ($PREFORKD_SHOTS_DIR), a minute of them. */
    const char *dir = getenv("PREFORKD_SHOTS_DIR");
    int want = dir && *dir ? 12 : 3;
    bool charted = WAIT_UNTIL(chart_points() >= want, 5000 * (want + 1));
    cr_assert(charted, "%d chart points: %.600s", chart_points(), body());
    pid_t w[4];
    cr_assert_eq(h_children(&srv, srv.pid, w, 4), 3);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", sport);
    int rc = chromium("--dump-dom", url);
    cr_assert_eq(rc, 0, "chromium exited with %d:\n%s", rc, out);
    char *dom = strdup(out);
    const char *refreshes = strstr(dom, "data-refreshes=\"");
    cr_assert_not_null(refreshes, "%.2000s", dom);
    cr_assert_geq(atoi(refreshes + 16), 2, "refreshed %d times", atoi(refreshes + 16));
    for (int i = 0; i < 3; i++) {
        char row[48];
        snprintf(row, sizeof row, "data-pid=\"%d\"", (int)w[i]);
        cr_assert(strstr(dom, row), "no row for worker %d: %.3000s", (int)w[i], dom);
    }
    cr_assert_geq(polyline_points(dom), want, "the chart has no line: %.3000s", dom);
    cr_assert(strstr(dom, "class=\"st idle\"") || strstr(dom, "class=\"st busy\""), "%.2000s", dom);
    free(dom);
    rc = chromium("--screenshot=shot.png --window-size=1100,500", url);
    h_load_stop(&load);
    cr_assert_eq(rc, 0, "chromium exited with %d:\n%s", rc, out);
    snprintf(path, sizeof path, "%s/shot.png", srv.dir);
    FILE *png = fopen(path, "rb");
    cr_assert_not_null(png, "no screenshot");
    fseek(png, 0, SEEK_END);
    cr_assert_gt(ftell(png), 5000, "screenshot too small to show the page");
    fclose(png);
    h_run(out, sizeof out, "cp '%s' '%s/build/status-page.png'", path, h_root());
    if (dir && *dir)
        h_run(out, sizeof out, "cp '%s' '%s/status-page.png'", path, dir);
}

