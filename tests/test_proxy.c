/* Behind a load balancer (issue 18): PROXY v1 and v2 headers sent by the
 * test itself reach the access log and the chat log, the bytes after them
 * are served, untrusted, missing, malformed and slow headers are closed,
 * counted and logged; then Debian's HAProxy (send-proxy-v2, /healthz
 * checks) in front of three instances: the client's address in every access
 * log, a rolling restart that loses nothing, a SIGKILL that costs only what
 * was in flight. The HAProxy tests skip, saying so, when it is missing. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

static char out[1 << 16];

/* --- clients -------------------------------------------------------------- */

/* A TCP connection to 127.0.0.1:p from address `from`. */
static int connect_from(const char *from, int p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in me = { .sin_family = AF_INET };
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;
    if (fd < 0)
        return -1;
    inet_pton(AF_INET, from, &me.sin_addr);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read until EOF, a reset or ms; NUL-ended; the length. */
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

/* Send data in one write from `from` and read the answer to EOF into out:
 * its length, or -1 when the connection could not be made. */
static long exchange_from(const char *from, int p, const void *data, size_t len)
{
    int fd = connect_from(from, p);
    out[0] = '\0';
    if (fd < 0)
        return -1;
    if (len)
        h_write_full(fd, data, len);
    long n = (long)read_to_eof(fd, out, sizeof out, 10000);
    close(fd);
    return n;
}

/* A v2 PROXY header for TCP from src:sport (IPv4 or IPv6 text) to dst:dport. */
static size_t v2_header(unsigned char *b, const char *src, int sport, const char *dst,
                        int dport)
{
    static const unsigned char sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                           0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
    bool v6 = strchr(src, ':') != NULL;
    size_t alen = v6 ? 16 : 4, body = 2 * alen + 4;
    memcpy(b, sig, 12);
    b[12] = 0x21;
    b[13] = v6 ? 0x21 : 0x11;
    b[14] = 0;
    b[15] = (unsigned char)body;
    inet_pton(v6 ? AF_INET6 : AF_INET, src, b + 16);
    inet_pton(v6 ? AF_INET6 : AF_INET, dst, b + 16 + alen);
    b[16 + 2 * alen] = (unsigned char)(sport >> 8);
    b[17 + 2 * alen] = (unsigned char)sport;
    b[18 + 2 * alen] = (unsigned char)(dport >> 8);
    b[19 + 2 * alen] = (unsigned char)dport;
    return 16 + body;
}

#define GET_CLOSE "GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

/* --- direct tests: headers written by the test ---------------------------- */

static struct server srv;
static int port, port2;

static void setup(void)
{
    h_adopt_orphans();              /* an upgraded master stays ours (see teardown) */
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
    port2 = h_free_port(SOCK_STREAM);
}

/* Then whatever a failed test left (an upgraded master, a balancer): our
 * descendants, killed by pid. */
static void teardown(void)
{
    server_cleanup(&srv);
    h_kill_descendants(10000);
}

static void write_index(const struct server *s, const char *body)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%.63s/www/index.html", s->dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(body, f);
    fclose(f);
}

/* An http listener with proxy_protocol, an access log, a header_timeout
 * (which bounds the wait for a PROXY header too) and extra config. */
static void start_http_timeout(const char *extra, int header_timeout)
{
    write_index(&srv, "hello\n");
    server_write_conf(&srv, "workers = 1\n"
                      "http { root = \"www\" access_log = \"access.log\" header_timeout = %d }\n"
                      "listen { address = \"127.0.0.1:%d\" proxy_protocol = true }\n%s",
                      header_timeout, port, extra);
    cr_assert_eq(server_start(&srv, NULL), 0, "preforkd did not start");
}

static void start_http(const char *extra)
{
    start_http_timeout(extra, 1);
}

static const char *access_log(const struct server *s)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%.63s/access.log", s->dir);
    return path;
}

static bool served(void)
{
    return strncmp(out, "HTTP/1.1 200 ", 13) == 0 && strstr(out, "\r\n\r\nhello\n");
}

TestSuite(proxy, .init = setup, .fini = teardown, .timeout = 120);

/* The request comes in the same write as the header (what HAProxy does):
 * the stage takes the header only, the protocol reads the rest. */
Test(proxy, v1_and_v2_addresses_reach_the_access_log)
{
    start_http("");
    char req[512];
    int n = snprintf(req, sizeof req, "PROXY TCP4 203.0.113.7 127.0.0.1 40001 %d\r\n"
                     GET_CLOSE, port);
    cr_assert_gt(exchange_from("127.0.0.1", port, req, (size_t)n), 0);
    cr_assert(served(), "v1: %s", out);
    n = snprintf(req, sizeof req, "PROXY TCP6 2001:db8::42 ::1 40002 %d\r\n" GET_CLOSE, port);
    cr_assert_gt(exchange_from("127.0.0.1", port, req, (size_t)n), 0);
    cr_assert(served(), "v1 TCP6: %s", out);
    unsigned char b[512];
    size_t len = v2_header(b, "198.51.100.23", 40003, "127.0.0.1", port);
    memcpy(b + len, GET_CLOSE, strlen(GET_CLOSE));
    cr_assert_gt(exchange_from("127.0.0.1", port, b, len + strlen(GET_CLOSE)), 0);
    cr_assert(served(), "v2: %s", out);
    len = v2_header(b, "2001:db8::7", 40004, "::1", port);
    memcpy(b + len, GET_CLOSE, strlen(GET_CLOSE));
    cr_assert_gt(exchange_from("127.0.0.1", port, b, len + strlen(GET_CLOSE)), 0);
    cr_assert(served(), "v2 IPv6: %s", out);
    /* LOCAL and UNKNOWN: the connection's own address stands */
    static const unsigned char local[16] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                             0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00 };
    memcpy(b, local, 16);
    memcpy(b + 16, GET_CLOSE, strlen(GET_CLOSE));
    cr_assert_gt(exchange_from("127.0.0.1", port, b, 16 + strlen(GET_CLOSE)), 0);
    cr_assert(served(), "v2 LOCAL: %s", out);
    n = snprintf(req, sizeof req, "PROXY UNKNOWN\r\n" GET_CLOSE);
    cr_assert_gt(exchange_from("127.0.0.1", port, req, (size_t)n), 0);
    cr_assert(served(), "v1 UNKNOWN: %s", out);

    const char *log = access_log(&srv);
    cr_assert(WAIT_UNTIL(h_file_count(log, "\"GET /index.html HTTP/1.1\" 200") == 6, 5000),
              "%d lines", h_file_count(log, "GET"));
    cr_assert_eq(h_file_count(log, "203.0.113.7 - - ["), 1);
    cr_assert_eq(h_file_count(log, "2001:db8::42 - - ["), 1);
    cr_assert_eq(h_file_count(log, "198.51.100.23 - - ["), 1);
    cr_assert_eq(h_file_count(log, "2001:db8::7 - - ["), 1);
    cr_assert_eq(h_file_count(log, "127.0.0.1 - - ["), 2, "LOCAL and UNKNOWN");
    cr_assert_eq(h_status_number(&srv, "proxy_rejected"), 0);
}

/* A balancer that splits the header, or sends the request later. */
Test(proxy, header_in_pieces_then_the_request)
{
    start_http_timeout("", 30);
    int fd = connect_from("127.0.0.1", port);
    cr_assert_geq(fd, 0);
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "PROXY TCP4 192.0.2.44 127.0.0.1 5555 %d\r\n", port);
    cr_assert_eq(h_write_full(fd, hdr, 10), 0);
    /* accepted (its first bytes came) and waiting for the rest: the worker
     * counts it in its next heartbeat */
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "active") == 1, 5000));
    cr_assert_eq(h_write_full(fd, hdr + 10, (size_t)n - 10), 0);
    cr_assert_eq(h_write_full(fd, GET_CLOSE, strlen(GET_CLOSE)), 0);
    read_to_eof(fd, out, sizeof out, 10000);
    close(fd);
    cr_assert(served(), "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(access_log(&srv), "192.0.2.44 - - [") == 1, 5000));
}

/* A header from outside proxy_from: closed, counted, logged at most once a
 * second per source; a CIDR rule admits a network. */
Test(proxy, untrusted_source_closed_counted_logged_once_a_second)
{
    char extra[256];
    snprintf(extra, sizeof extra, "listen { address = \"127.0.0.1:%d\" proxy_protocol = true\n"
             "  proxy_from = {\"127.0.0.0/30\"} }\n", port2);
    start_http(extra);
    char req[512];
    int n = snprintf(req, sizeof req, "PROXY TCP4 203.0.113.8 127.0.0.1 1 2\r\n" GET_CLOSE);
    int64_t t0 = h_now_ms();
    for (int i = 0; i < 20; i++) {
        cr_assert_geq(exchange_from("127.0.0.2", port, req, (size_t)n), 0);
        cr_assert_eq(out[0], '\0', "an untrusted source got an answer: %s", out);
    }
    int64_t elapsed = h_now_ms() - t0;
    cr_assert_geq(exchange_from("127.0.0.3", port, req, (size_t)n), 0);
    cr_assert_eq(out[0], '\0');
    /* 127.0.0.2 is inside 127.0.0.0/30 on the second listener */
    cr_assert_gt(exchange_from("127.0.0.2", port2, req, (size_t)n), 0);
    cr_assert(served(), "%s", out);
    cr_assert_geq(exchange_from("127.0.0.5", port2, req, (size_t)n), 0);
    cr_assert_eq(out[0], '\0');

    cr_assert(WAIT_UNTIL(h_status_number(&srv, "proxy_rejected") == 22, 5000),
              "proxy_rejected %g", h_status_number(&srv, "proxy_rejected"));
    char want[128];
    snprintf(want, sizeof want, "from 127.0.0.2 on 127.0.0.1:%d: not in proxy_from", port);
    int lines = h_file_count(srv.log, want);
    cr_log_info("20 refusals from 127.0.0.2 in %lld ms: %d log lines", (long long)elapsed,
                lines);
    cr_assert_geq(lines, 1);
    cr_assert_leq(lines, elapsed / 1000 + 2, "%d lines in %lld ms", lines, (long long)elapsed);
    cr_assert_eq(h_file_count(srv.log, "from 127.0.0.3 on"), 1, "each source has its own");
    cr_assert_eq(h_file_count(srv.log, "from 127.0.0.5 on"), 1);
    cr_assert(WAIT_UNTIL(h_file_count(access_log(&srv), "203.0.113.8 - - [") == 1, 5000));
    cr_assert_eq(h_file_count(access_log(&srv), " 200 "), 1, "only the trusted one served");
}

/* No header, a malformed one, a slow one: closed without an answer. Each
 * from its own source, so that each is logged (once a second per source). */
Test(proxy, missing_malformed_or_slow_header_closed_and_counted)
{
    char extra[160];
    snprintf(extra, sizeof extra, "listen { address = \"127.0.0.1:%d\" proxy_protocol = true\n"
             "  proxy_from = {\"127.0.0.0/8\"} }\n", port2);
    start_http(extra);
    cr_assert_geq(exchange_from("127.0.0.11", port2, GET_CLOSE, strlen(GET_CLOSE)), 0);
    cr_assert_eq(out[0], '\0', "a request without a header was answered: %s", out);
    const char *bad = "PROXY TCP4 203.0.113.9 127.0.0.1 080 80\r\n" GET_CLOSE;
    cr_assert_geq(exchange_from("127.0.0.12", port2, bad, strlen(bad)), 0);
    cr_assert_eq(out[0], '\0');
    unsigned char b[256];
    size_t len = v2_header(b, "203.0.113.9", 1, "127.0.0.1", 2);
    b[12] = 0x11;                   /* version 1 in a v2 header */
    memcpy(b + len, GET_CLOSE, strlen(GET_CLOSE));
    cr_assert_geq(exchange_from("127.0.0.13", port2, b, len + strlen(GET_CLOSE)), 0);
    cr_assert_eq(out[0], '\0');
    /* silent, and half a header then silence: header_timeout (1 s) ends both */
    int64_t t0 = h_now_ms();
    cr_assert_geq(exchange_from("127.0.0.14", port2, NULL, 0), 0);
    cr_assert_geq(exchange_from("127.0.0.15", port2, "PROXY TCP4 1.2", 14), 0);
    cr_assert_eq(out[0], '\0');
    cr_assert_lt(h_now_ms() - t0, 2 * 10000, "not closed by header_timeout");

    cr_assert(WAIT_UNTIL(h_status_number(&srv, "proxy_rejected") == 5, 5000),
              "proxy_rejected %g", h_status_number(&srv, "proxy_rejected"));
    cr_assert_eq(h_file_count(srv.log, "not a PROXY header"), 1);
    cr_assert_eq(h_file_count(srv.log, "a port is not a decimal number"), 1);
    cr_assert_eq(h_file_count(srv.log, "v2: version is not 2"), 1);
    cr_assert_eq(h_file_count(srv.log, "no complete PROXY header within header_timeout"), 2);
    cr_assert_eq(h_run(out, sizeof out, "%s status --prometheus -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "\npreforkd_proxy_rejected_total 5\n"), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "proxy_rejected 5"), "%s", out);
    /* one good request: once its line is in, the access log has nothing else */
    char req[256];
    int n = snprintf(req, sizeof req, "PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n" GET_CLOSE);
    cr_assert_gt(exchange_from("127.0.0.16", port2, req, (size_t)n), 0);
    cr_assert(served(), "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(access_log(&srv), "GET") > 0, 5000));
    cr_assert_eq(h_file_count(access_log(&srv), "GET"), 1);
    cr_assert_eq(h_file_count(access_log(&srv), "192.0.2.1 - - ["), 1);
}

/* Echo and chat take the header too; chat's log shows the client. */
Test(proxy, echo_and_chat_listeners)
{
    int cport = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 1\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" "
                      "proxy_protocol = true }\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"chat\" "
                      "proxy_protocol = true }\n", port, cport);
    cr_assert_eq(server_start(&srv, NULL), 0);
    unsigned char b[256], r[5];
    size_t len = v2_header(b, "198.51.100.9", 7, "127.0.0.1", port);
    memcpy(b + len, "ping\n", 5);
    int fd = connect_from("127.0.0.1", port);
    cr_assert_eq(h_write_full(fd, b, len + 5), 0);
    cr_assert_eq(h_read_full(fd, r, 5, 5000), 0);
    cr_assert_eq(memcmp(r, "ping\n", 5), 0, "echoed something else: %.5s", r);
    shutdown(fd, SHUT_WR);
    cr_assert(h_closed_by_peer(fd, 5000), "the echo ran past what was sent");
    close(fd);
    /* without a header, echo closes too */
    cr_assert_geq(exchange_from("127.0.0.1", port, "ping\n", 5), 0);
    cr_assert_eq(out[0], '\0', "%s", out);

    fd = connect_from("127.0.0.1", cport);
    const char *hello = "PROXY TCP4 198.51.100.20 127.0.0.1 6000 7000\r\n/nick carol\r\n";
    cr_assert_eq(h_write_full(fd, hello, strlen(hello)), 0);
    size_t got = 0;
    out[0] = '\0';
    cr_assert(WAIT_UNTIL((h_read_some(fd, out + got, sizeof out - 1 - got, 100, &got),
                          out[got] = '\0', strstr(out, "carol") != NULL), 5000), "%s", out);
    cr_assert(!strstr(out, "PROXY"), "%s", out);
    close(fd);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "chat connection 1 from 198.51.100.20") == 1,
                         5000));
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "proxy_rejected") == 1, 5000));
}

/* --- HAProxy in front of three instances ---------------------------------- */

#define NINST 3
#define LOAD_THREADS 3

struct inst {
    struct server srv;
    int port, sport;                /* the http listener; status_listen */
};

static struct inst inst[NINST];

static struct {
    pid_t pid;
    char dir[64], cfg[PATH_MAX], sock[PATH_MAX], log[PATH_MAX];
    int port;
} hap;

static const char *haproxy_path(void)
{
    static const char *const where[] = { "/usr/sbin/haproxy", "/usr/bin/haproxy",
                                         "/usr/local/sbin/haproxy" };
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++)
        if (access(where[i], X_OK) == 0)
            return where[i];
    return NULL;
}

static void hap_setup(void)
{
    memset(&hap, 0, sizeof hap);
    for (int i = 0; i < NINST; i++) {
        server_init(&inst[i].srv);
        inst[i].port = h_free_port(SOCK_STREAM);
        inst[i].sport = h_free_port(SOCK_STREAM);
    }
}

static void hap_teardown(void)
{
    if (hap.pid > 0) {
        kill(hap.pid, SIGKILL);
        waitpid(hap.pid, NULL, 0);
    }
    for (int i = 0; i < NINST; i++)
        server_cleanup(&inst[i].srv);
    if (hap.dir[0] && !getenv("PREFORKD_KEEP_TEST_DIRS")) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", hap.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", hap.dir);
    }
}

/* Instance i: two workers, its own status listener for the checks, a
 * graceful_stop_delay that outlasts a few check intervals. */
static void inst_start(int i)
{
    struct inst *n = &inst[i];
    char body[32];
    snprintf(body, sizeof body, "instance %d\n", i + 1);
    write_index(&n->srv, body);
    server_write_conf(&n->srv, "workers = 2\nstatus_listen = \"127.0.0.1:%d\"\n"
                      "graceful_stop_delay = 2\ngraceful_timeout = 10\n"
                      "http { root = \"www\" access_log = \"access.log\" }\n"
                      "listen { address = \"127.0.0.1:%d\" proxy_protocol = true }\n",
                      n->sport, n->port);
    cr_assert_eq(server_start(&n->srv, NULL), 0, "instance %d did not start", i + 1);
}

/* Checks every 300 ms, down at the first failure (a 503 from /healthz),
 * up after two good ones; a refused connection is retried and then
 * redispatched to another server. */
static void hap_start(void)
{
    const char *bin = haproxy_path();
    snprintf(hap.dir, sizeof hap.dir, "/tmp/preforkd-haproxy-XXXXXX");
    cr_assert_not_null(mkdtemp(hap.dir));
    snprintf(hap.cfg, sizeof hap.cfg, "%s/haproxy.cfg", hap.dir);
    snprintf(hap.sock, sizeof hap.sock, "%s/admin.sock", hap.dir);
    snprintf(hap.log, sizeof hap.log, "%s/haproxy.out", hap.dir);
    hap.port = h_free_port(SOCK_STREAM);
    FILE *f = fopen(hap.cfg, "w");
    cr_assert_not_null(f);
    fprintf(f, "global\n  nbthread 1\n  stats socket %s mode 600 level admin\n"
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n"
            "  timeout server 30s\n  timeout check 2s\n  retries 3\n  option redispatch 1\n"
            "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
            "backend be\n  balance roundrobin\n  option httpchk GET /healthz\n"
            "  http-check expect status 200\n"
            "  default-server inter 300ms fastinter 300ms downinter 300ms fall 1 rise 2 "
            "send-proxy-v2\n", hap.sock, hap.port);
    for (int i = 0; i < NINST; i++)
        fprintf(f, "  server s%d 127.0.0.1:%d check addr 127.0.0.1 port %d\n", i + 1,
                inst[i].port, inst[i].sport);
    fclose(f);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(hap.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        close_range(3, ~0u, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(bin, "haproxy", "-f", hap.cfg, "-db", (char *)NULL);
        _exit(127);
    }
    hap.pid = pid;
}

/* Field `name` of HAProxy's statistics line for `sv` in backend be (a
 * server "sN", or "BACKEND"), from its admin socket's CSV; "" if none. */
static const char *hap_stat(const char *sv, const char *name)
{
    static char buf[16384], value[64];
    size_t len = 0;
    int fd = h_unix_connect(hap.sock);
    value[0] = '\0';
    if (fd < 0)
        return value;
    h_write_full(fd, "show stat\n", 10);
    while (len + 1 < sizeof buf && h_read_some(fd, buf + len, sizeof buf - 1 - len, 2000,
                                               &len) == 0)
        ;
    buf[len] = '\0';
    close(fd);
    /* the column's index in the "# pxname,svname,..." header */
    char want[48], *line, *p;
    int col = 0;
    snprintf(want, sizeof want, ",%s,", name);
    if (strncmp(buf, "# ", 2) != 0 || !(p = strstr(buf, want)) || p > strchr(buf, '\n'))
        return value;
    for (char *q = buf; q <= p; q++)
        col += *q == ',';
    snprintf(want, sizeof want, "\nbe,%s,", sv);
    if (!(line = strstr(buf, want)))
        return value;
    p = line + 1;
    for (int field = 0; field < col && p; field++)
        p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
    if (p)
        snprintf(value, sizeof value, "%.*s", (int)strcspn(p, ",\n"), p);
    return value;
}

/* HAProxy's view of server sN: "UP", "DOWN", ... */
static const char *hap_state(int n)
{
    char sv[16];
    snprintf(sv, sizeof sv, "s%d", n);
    return hap_stat(sv, "status");
}

static bool hap_is(int n, const char *want)
{
    return strncmp(hap_state(n), want, strlen(want)) == 0;
}

/* Clients from 127.0.0.2 through HAProxy: one request per connection, a
 * short pause between them, at most max in all. */
struct load {
    _Atomic bool stop;
    _Atomic long ok, failed, started;
    long max;
    char last_failure[160];
    pthread_t t[LOAD_THREADS];
};

static void *load_thread(void *arg)
{
    struct load *l = arg;
    char buf[4096];
    while (!l->stop && l->started++ < l->max) {
        int fd = connect_from("127.0.0.2", hap.port);
        bool good = false;
        if (fd >= 0 && h_write_full(fd, GET_CLOSE, strlen(GET_CLOSE)) == 0) {
            read_to_eof(fd, buf, sizeof buf, 20000);
            good = strncmp(buf, "HTTP/1.1 200 ", 13) == 0 && strstr(buf, "\r\n\r\ninstance ");
        } else {
            snprintf(buf, sizeof buf, "connect: %s", strerror(errno));
        }
        if (fd >= 0)
            close(fd);
        if (good) {
            l->ok++;
        } else {
            l->failed++;
            snprintf(l->last_failure, sizeof l->last_failure, "%.150s", buf);
        }
        h_sleep_ms(5);              /* pacing: a bounded load on a shared machine */
    }
    return NULL;
}

static void load_start(struct load *l, long max)
{
    memset(l, 0, sizeof *l);
    l->max = max;
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_create(&l->t[i], NULL, load_thread, l);
}

static void load_stop(struct load *l)
{
    l->stop = true;
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_join(l->t[i], NULL);
}

/* Everything up: three instances, HAProxy, every server UP. */
static void bring_up(void)
{
    if (!haproxy_path())
        cr_skip_test("haproxy is not installed (Debian package haproxy; `make test-deps` "
                     "installs it): the load-balancer tests need it");
    SKIP_UNDER_VALGRIND("HAProxy's 300 ms health checks time out against a memcheck'd master");
    for (int i = 0; i < NINST; i++)
        inst_start(i);
    hap_start();
    for (int i = 0; i < NINST; i++)
        cr_assert(WAIT_UNTIL(hap_is(i + 1, "UP"), 15000), "s%d is %s; haproxy said: %s", i + 1,
                  hap_state(i + 1), h_read_file(hap.log));
}

static const char *inst_log(int i)
{
    return access_log(&inst[i].srv);
}

TestSuite(haproxy, .init = hap_setup, .fini = hap_teardown, .timeout = 240);

/* (1) The access logs show the client (127.0.0.2), not HAProxy (127.0.0.1). */
Test(haproxy, access_logs_show_the_client)
{
    bring_up();
    struct load l;
    load_start(&l, 60);
    cr_assert(WAIT_UNTIL(l.ok + l.failed >= 60, 60000));
    load_stop(&l);
    cr_assert_eq(l.failed, 0, "%ld failed; last: %s", (long)l.failed, l.last_failure);
    cr_assert_eq(l.ok, 60);
    long lines = 0;
    cr_assert(WAIT_UNTIL((lines = h_file_count(inst_log(0), "127.0.0.2 - - [") +
                                  h_file_count(inst_log(1), "127.0.0.2 - - [") +
                                  h_file_count(inst_log(2), "127.0.0.2 - - [")) == 60, 5000),
              "%ld lines for 60 requests", lines);
    for (int i = 0; i < NINST; i++) {
        cr_assert_gt(h_file_count(inst_log(i), "127.0.0.2 - - ["), 0,
                     "instance %d logged no request from 127.0.0.2", i + 1);
        cr_assert_eq(h_file_count(inst_log(i), "127.0.0.1 - - ["), 0,
                     "instance %d logged HAProxy's address", i + 1);
    }
}

/* (2) Graceful stop (the 503 first, the listeners 2 s later), start again,
 * wait until HAProxy has it back; one instance after the other, under load:
 * not one request lost. */
Test(haproxy, rolling_restart_loses_nothing)
{
    bring_up();
    struct load l;
    load_start(&l, 200000);
    cr_assert(WAIT_UNTIL(l.ok > 20, 10000));
    for (int i = 0; i < NINST; i++) {
        struct server *s = &inst[i].srv;
        pid_t old = s->pid;
        long before = l.ok;
        cr_assert_eq(kill(old, SIGTERM), 0);
        /* HAProxy sees the 503 and takes it out while its listener still
         * accepts: the old master is alive when the server goes DOWN */
        cr_assert(WAIT_UNTIL(hap_is(i + 1, "DOWN"), 10000), "s%d stays %s", i + 1,
                  hap_state(i + 1));
        /* ... and the listener still serves: the delay is not over */
        unsigned char local[16 + sizeof GET_CLOSE] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
                                                        0x51, 0x55, 0x49, 0x54, 0x0a, 0x20 };
        memcpy(local + 16, GET_CLOSE, strlen(GET_CLOSE));
        cr_assert_gt(exchange_from("127.0.0.1", inst[i].port, local, sizeof local - 1), 0,
                     "instance %d closed its listener before HAProxy saw it down", i + 1);
        cr_assert(strstr(out, "\r\n\r\ninstance "), "%s", out);
        int st = server_stop(s, 0, 20000);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "instance %d: status %d", i + 1, st);
        cr_assert_eq(h_file_count(s->log, "/healthz now answers 503 draining"), 1);
        cr_assert_eq(server_start(s, NULL), 0, "instance %d did not start again", i + 1);
        cr_assert(WAIT_UNTIL(hap_is(i + 1, "UP"), 15000), "s%d is %s", i + 1, hap_state(i + 1));
        cr_assert(WAIT_UNTIL(l.ok > before + 20, 10000), "no progress after instance %d", i + 1);
    }
    load_stop(&l);
    cr_log_info("rolling restart of %d instances under load: %ld ok, %ld failed", NINST,
                (long)l.ok, (long)l.failed);
    cr_assert_eq(l.failed, 0, "%ld requests lost; last: %s", (long)l.failed, l.last_failure);
    /* and HAProxy never had to retry or redispatch: no server refused a
     * connection, the balancer stopped sending before the sockets closed */
    cr_assert_str_eq(hap_stat("BACKEND", "wretr"), "0");
    cr_assert_str_eq(hap_stat("BACKEND", "wredis"), "0");
    /* each restarted instance serves again */
    for (int i = 0; i < NINST; i++)
        cr_assert_gt(h_file_count(inst_log(i), "127.0.0.2 - - ["), 0);
}

/* (3) SIGKILL of a whole instance: the requests in flight on it may fail
 * (each client thread has at most one in flight), HAProxy's checks take it
 * out, and everything after goes to the other two. */
Test(haproxy, sigkill_costs_only_what_was_in_flight)
{
    bring_up();
    struct load l;
    load_start(&l, 200000);
    cr_assert(WAIT_UNTIL(l.ok > 30, 10000));
    struct server *s = &inst[1].srv;
    pid_t workers[16];
    size_t nw = h_children(s, s->pid, workers, 16);
    cr_assert_eq(kill(s->pid, SIGKILL), 0);
    for (size_t k = 0; k < nw; k++)
        kill(workers[k], SIGKILL);
    cr_assert(WAIT_UNTIL(hap_is(2, "DOWN"), 10000), "s2 is %s", hap_state(2));
    long failed_at_down = l.failed, ok_at_down = l.ok;
    cr_assert(WAIT_UNTIL(l.ok > ok_at_down + 100, 20000), "no progress after the kill");
    load_stop(&l);
    cr_log_info("SIGKILL of 1 of %d instances under %d clients: %ld failed, %ld ok", NINST,
                LOAD_THREADS, (long)l.failed, (long)l.ok);
    cr_assert_leq(l.failed, LOAD_THREADS, "%ld failed, more than the %d in flight; last: %s",
                  (long)l.failed, LOAD_THREADS, l.last_failure);
    cr_assert_eq(l.failed, failed_at_down, "failures after HAProxy took it out; last: %s",
                 l.last_failure);
    int st = 0;
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* The commented example in etc/ is a configuration HAProxy accepts. */
Test(haproxy, shipped_example_is_valid)
{
    if (!haproxy_path())
        cr_skip_test("haproxy is not installed (Debian package haproxy)");
    cr_assert_eq(h_run(out, sizeof out, "%s -c -f %s/etc/haproxy.cfg", haproxy_path(),
                       h_root()), 0, "%s", out);
    cr_assert(strstr(out, "Configuration file is valid"), "%s", out);
}

/* Per-CPU accept sockets take the header the same way. */
Test(proxy, per_cpu_listener)
{
    char extra[192];
    snprintf(extra, sizeof extra, "listen { address = \"127.0.0.1:%d\" accept = \"per-cpu\"\n"
             "  proxy_protocol = true }\n", port2);
    start_http(extra);
    for (int i = 0; i < 4; i++) {
        char req[256];
        int n = snprintf(req, sizeof req, "PROXY TCP4 192.0.2.%d 127.0.0.1 1 2\r\n" GET_CLOSE,
                         10 + i);
        cr_assert_gt(exchange_from("127.0.0.1", port2, req, (size_t)n), 0);
        cr_assert(served(), "%s", out);
    }
    cr_assert(WAIT_UNTIL(h_file_count(access_log(&srv), "192.0.2.1") == 4, 5000));
    cr_assert_eq(h_file_count(access_log(&srv), "127.0.0.1 - - ["), 0);
    cr_assert_geq(exchange_from("127.0.0.1", port2, GET_CLOSE, strlen(GET_CLOSE)), 0);
    cr_assert_eq(out[0], '\0', "%s", out);
}

/* Over a unix socket there is no address to check: any client may send a
 * header (the socket file's permissions decide who connects). */
Test(proxy, unix_socket_listener)
{
    char extra[512], path[96];
    snprintf(path, sizeof path, "%.63s/http.sock", srv.dir);
    snprintf(extra, sizeof extra, "listen { address = \"unix:%s\" proxy_protocol = true "
             "proxy_from = {\"192.0.2.99\"} }\n", path);
    start_http(extra);
    int fd = h_unix_connect(path);
    cr_assert_geq(fd, 0);
    const char *req = "PROXY TCP6 2001:db8::99 ::1 1 2\r\n" GET_CLOSE;
    cr_assert_eq(h_write_full(fd, req, strlen(req)), 0);
    read_to_eof(fd, out, sizeof out, 10000);
    close(fd);
    cr_assert(served(), "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(access_log(&srv), "2001:db8::99 - - [") == 1, 5000));
    /* and without a header it is closed like any other */
    fd = h_unix_connect(path);
    cr_assert_eq(h_write_full(fd, GET_CLOSE, strlen(GET_CLOSE)), 0);
    read_to_eof(fd, out, sizeof out, 10000);
    close(fd);
    cr_assert_eq(out[0], '\0', "%s", out);
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "proxy_rejected") == 1, 5000));
}

/* A stop waiting out graceful_stop_delay stays a stop: an upgrade asked for
 * in that window is refused (it would hand the listeners to a new master
 * that says 200 and serves on, and the stop would be lost). */
Test(proxy, no_upgrade_during_graceful_stop_delay)
{
    int sport = h_free_port(SOCK_STREAM);
    char extra[128];
    snprintf(extra, sizeof extra, "status_listen = \"127.0.0.1:%d\"\ngraceful_stop_delay = 3\n",
             sport);
    start_http(extra);
    cr_assert_eq(kill(srv.pid, SIGTERM), 0);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "graceful stop in 3 s") == 1, 5000));
    cr_assert_eq(kill(srv.pid, SIGUSR2), 0);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "upgrade refused: the master is stopping") == 1 ||
                         h_file_count(srv.log, "took over; draining and exiting") == 1, 5000));
    char *pidtext = h_read_file(srv.pidfile);
    pid_t now = pidtext ? (pid_t)atoi(pidtext) : 0;
    free(pidtext);
    if (now > 0 && now != srv.pid) {        /* the bug: a new master serves on */
        h_remember_tree(&srv.tree, now);
        kill(now, SIGKILL);
    }
    cr_assert_eq(h_file_count(srv.log, "upgrade: started the new master"), 0);
    int st = server_stop(&srv, 0, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    cr_assert_lt(h_tcp_connect(port), 0, "something still listens after the stop");
}
