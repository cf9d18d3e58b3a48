/* Request latency (issue 15): the fixed log-scaled histogram, its sparse
 * wire form and percentiles (unit tests), then requests that take a known
 * time through the real binary: slow senders and a slow reader land in the
 * right bucket; echo is timed per message, app workers are not timed. */
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

#include "ipc/ipc.h"
#include "ipc/latency.h"
#include "tests/harness.h"

static struct server srv;
static int port;
static char out[1 << 17];

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

/* server_cleanup stops the master and whatever it started, by pid. */
static void teardown(void)
{
    server_cleanup(&srv);
}


/* --- the histogram, its codec, percentiles, address rules ---------------- */

TestSuite(status_latency_unit);

Test(status_latency_unit, bucket_is_the_first_bound_at_or_above)
{
    for (uint64_t v = 0; v < 80000000000ull; v = v < 100 ? v + 1 : v + v / 7 + 1) {
        unsigned want = 0;
        while (want < LAT_NBOUNDS && v > lat_bound_ns[want])
            want++;
        cr_assert_eq(lat_bucket(v), want, "value %llu", (unsigned long long)v);
        if (want < LAT_NBOUNDS) {       /* and the bounds themselves */
            cr_assert_eq(lat_bucket(lat_bound_ns[want]), want);
            cr_assert_eq(lat_bucket(lat_bound_ns[want] + 1), want + 1);
        }
    }
    cr_assert_eq(lat_bucket(UINT64_MAX), LAT_NBOUNDS);
    char b[32];
    cr_assert_str_eq(lat_bound_text(0, b, sizeof b), "0.00001");
    cr_assert_str_eq(lat_bound_text(21, b, sizeof b), "0.0012");
    cr_assert_str_eq(lat_bound_text(LAT_NBOUNDS - 1, b, sizeof b), "60");
}

Test(status_latency_unit, records_round_trip_and_fit_a_frame)
{
    struct lat_acc a = { 0 };
    for (unsigned i = 0; i < LAT_NBUCKETS; i++)   /* the worst case: every bucket */
        a.count[i] = UINT32_MAX / LAT_NBUCKETS;
    a.n = a.count[0] * LAT_NBUCKETS;
    a.sum_ns = UINT64_MAX;
    a.max_ns = UINT64_MAX - 1;
    unsigned char buf[LAT_RECORD_MAX + 16];
    size_t len = lat_encode(&a, 513, buf);
    cr_assert_leq(len, LAT_RECORD_MAX);
    cr_assert_geq(IPC_MAX_PAYLOAD / LAT_RECORD_MAX, 9);
    const unsigned char *p = buf;
    struct lat_delta d;
    cr_assert_eq(lat_decode(&p, buf + len, &d), 1);
    cr_assert_eq(p, buf + len);
    cr_assert_eq(d.listener, 513);
    cr_assert_eq(d.n, a.n);
    cr_assert_eq(d.sum_ns, a.sum_ns);
    cr_assert_eq(d.max_ns, a.max_ns);
    cr_assert_eq(memcmp(d.count, a.count, sizeof d.count), 0);
    cr_assert_eq(lat_decode(&p, buf + len, &d), 0, "end of payload");
    /* Cut anywhere, it is refused, never read past. */
    for (size_t cut = 1; cut < len; cut++) {
        p = buf;
        cr_assert_eq(lat_decode(&p, buf + cut, &d), -1, "cut at %zu", cut);
    }
}

Test(status_latency_unit, garbage_records_refused)
{
    struct lat_delta d;
    const unsigned char *p;
    /* buckets out of order, out of range, a zero count, a long varint */
    static const unsigned char bad[][12] = {
        { 1, 0, 2, 5, 5, 7, 1, 3, 1 },
        { 1, 0, 1, 5, 5, LAT_NBUCKETS, 1 },
        { 1, 0, 1, 5, 5, 3, 0 },
        { 1, 0, 1, 5, 5, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 },
        { 1, 0, 200, 5, 5 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = bad[i];
        cr_assert_eq(lat_decode(&p, bad[i] + sizeof bad[i], &d), -1, "case %zu", i);
    }
}

Test(status_latency_unit, quantiles_from_buckets)
{
    uint64_t count[LAT_NBUCKETS] = { 0 };
    /* 99 requests of 1.1 ms, 1 of 250 ms */
    count[lat_bucket(1100000)] = 99;
    count[lat_bucket(250000000)] = 1;
    double p50 = lat_quantile_ns(count, 100, 0.5, 250000000) / 1e6;
    double p99 = lat_quantile_ns(count, 100, 0.99, 250000000) / 1e6;
    double p100 = lat_quantile_ns(count, 100, 1.0, 250000000) / 1e6;
    cr_assert(p50 > 1.0 && p50 <= 1.2, "p50 %.3f", p50);
    cr_assert(p99 > 1.0 && p99 <= 1.2, "p99 %.3f", p99);
    cr_assert(fabs(p100 - 250) < 0.001, "p100 %.3f", p100);
    cr_assert_eq(lat_quantile_ns(count, 0, 0.5, 0), 0);
}


/* --- helpers ------------------------------------------------------------ */

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

/* `preforkd status` with flags into out; its exit code. */
static int status(const char *flags)
{
    return h_run(out, sizeof out, "%s status %s -c %s 2>/dev/null", h_bin(), flags, srv.conf);
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

/* --- latency -------------------------------------------------------------- */

TestSuite(status_latency, .init = setup, .fini = teardown, .timeout = 90);

static void write_file(const char *name, size_t size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/%s", srv.dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static void start_http(void)
{
    start("workers = 2\nlisten { address = \"127.0.0.1:%d\" protocol = \"http\" }\n", port);
}

/* The listener's latency_ms from status.json: 0 when found. */
static int listener_latency(double *p50, double *p99, double *max)
{
    if (status("--json") != 0)
        return -1;
    const char *l = strstr(out, "\"listen\":[");
    const char *lat = l ? strstr(l, "\"latency_ms\":{\"p50\":") : NULL;
    if (!lat || sscanf(lat, "\"latency_ms\":{\"p50\":%lf,\"p99\":%lf,\"max\":%lf",
                       p50, p99, max) != 3)
        return -1;
    return 0;
}

/* Requests whose bytes take 320 ms to arrive (first byte, a pause, the
 * rest): the clock starts at the first byte, so p50 and p99 land in the
 * (300 ms, 400 ms] bucket, the max just above 320 ms. */
Test(status_latency, slow_senders_in_their_band)
{
    SKIP_UNDER_VALGRIND("a first request under memcheck takes 100+ ms of its own");
    write_file("f.txt", 100);
    start_http();
    for (int i = 0; i < 6; i++) {
        int fd = h_tcp_connect(port);
        cr_assert_geq(fd, 0);
        const char *rest = "Host: x\r\nConnection: close\r\n\r\n";
        cr_assert_eq(h_write_full(fd, "GET /f.txt HTTP/1.1\r\n", 21), 0);
        h_sleep_ms(320);
        cr_assert_eq(h_write_full(fd, rest, strlen(rest)), 0);
        char buf[1024];
        read_to_eof(fd, buf, sizeof buf, 5000);
        close(fd);
        cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
    }
    double p50 = -1, p99 = -1, max = -1;
    cr_assert(WAIT_UNTIL(listener_latency(&p50, &p99, &max) == 0 && max >= 300, 4000),
              "%s", out);
    cr_log_info("slow senders (300 ms): p50 %.1f p99 %.1f max %.1f ms", p50, p99, max);
    cr_assert(p50 >= 300 && p50 <= 400, "p50 %.1f ms", p50);
    cr_assert(p99 >= 300 && p99 <= 400, "p99 %.1f ms", p99);
    cr_assert(max >= 300 && max < 400, "max %.1f ms", max);
    /* The text table: a P99 column, and the listener's figures. */
    cr_assert_eq(status(""), 0);
    cr_assert(strstr(out, " P99 "), "%s", out);
    cr_assert(strstr(out, " p99 3"), "listener line: %s", out);
}

/* A 16 MiB file to a client that reads nothing for a second: the last byte
 * cannot be handed to the kernel before then, so the request takes a
 * second and the time to read it (buckets (1 s, 1.2 s] or (1.2 s, 1.5 s] on
 * a busy machine). */
Test(status_latency, slow_reader_counts_until_the_last_byte)
{
    SKIP_UNDER_VALGRIND("16 MiB through sendfile under memcheck is too slow for the band");
    write_file("big.bin", 16u << 20);
    start_http();
    /* A small receive buffer: what the kernel can hold for the client is
     * the server's send buffer (at most 4 MiB) and this. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rcv = 64 * 1024;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv), 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    char req[] = "GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    cr_assert_eq(h_write_full(fd, req, sizeof req - 1), 0);
    h_sleep_ms(1000);
    static char sink[1 << 16];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, sink, sizeof sink);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    close(fd);
    cr_assert_gt(total, 16u << 20);
    double p50 = -1, p99 = -1, max = -1;
    cr_assert(WAIT_UNTIL(listener_latency(&p50, &p99, &max) == 0 && max >= 1000, 4000),
              "%s", out);
    cr_log_info("slow reader (1 s): p99 %.1f max %.1f ms", p99, max);
    cr_assert(p99 >= 1000 && p99 <= 1500, "p99 %.1f ms", p99);
}

/* Fast requests: well under a slow one's band; echo is timed per message;
 * app workers time their own traffic and show null. */
Test(status_latency, echo_timed_per_message)
{
    start("workers = 1\nlisten { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(echo_once(100), 0);
    double p50 = -1, p99 = -1, max = -1;
    cr_assert(WAIT_UNTIL(listener_latency(&p50, &p99, &max) == 0, 4000), "%s", out);
    cr_assert(p99 < 300, "an echo took %.1f ms", p99);
    cr_assert(strstr(out, "\"history\":{\"step\":5,\"req_s\":["), "%s", out);
    const char *w = strstr(out, "\"workers\":[");
    cr_assert(w && strstr(w, "\"latency_ms\":{\"p50\":"), "%s", out);
}

static const char *capp(void)
{
    const char *p = getenv("PREFORKD_CAPP");
    return p ? p : "build/capp";
}

Test(status_latency, app_workers_show_null)
{
    int aport = h_free_port(SOCK_STREAM);
    start("workers = 1\n"
          "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n"
          "app web {\n  command = {\"%s\"}\n  workers = 1\n"
          "  listen { address = \"127.0.0.1:%d\" }\n}\n", port, capp(), aport);
    cr_assert_eq(status("--json"), 0);
    cr_assert(h_json_valid(out), "%.300s", out);
    const char *app = strstr(out, "{\"pool\":\"web\"");
    cr_assert_not_null(app, "%s", out);
    cr_assert(strstr(app, "\"latency_ms\":null"), "%s", app);
    const char *al = strstr(out, "\"pool\":\"web\",\"address\"");
    cr_assert_not_null(al, "%s", out);
    cr_assert(strstr(al, "\"latency_ms\":null,\"history\":null"), "%s", al);
}


/* Prometheus: a real histogram per listener, cumulative, counting every
 * request once. */
Test(status_latency, prometheus_histogram)
{
    write_file("index.html", 6);
    start_http();
    char buf[4096];
    for (int i = 0; i < 20; i++) {
        h_http_body(port, "GET / HTTP/1.0\r\n\r\n", buf, sizeof buf, 5000);
        cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
    }
    char want[160];
    snprintf(want, sizeof want,
             "preforkd_request_duration_seconds_count{listener=\"127.0.0.1:%d\"} 20", port);
    cr_assert(WAIT_UNTIL(status("--prometheus") == 0 && strstr(out, want), 4000), "%s", out);
    snprintf(want, sizeof want,
             "preforkd_request_duration_seconds_bucket{listener=\"127.0.0.1:%d\",le=\"+Inf\"} 20",
             port);
    cr_assert(strstr(out, want), "%s", out);
    cr_assert(strstr(out, "# TYPE preforkd_request_duration_seconds histogram"), "%s", out);
    cr_assert(strstr(out, ",le=\"0.00001\"} "), "%s", out);
    cr_assert(strstr(out, ",le=\"60\"} 20"), "%s", out);
    const char *bad = NULL;
    cr_assert(h_prometheus_valid(out, &bad), "bad exposition line: %.120s", bad);
}
