/* Hostile clients: limits per client address (max_connections_per_ip
 * across the pool, rate_limit), early answers to requests with a body,
 * send_timeout per site, a bounded send queue for a client that does not
 * read, and workers' memory coming back after an attack. The attacks
 * themselves, timed beside nginx and lighttpd, are `make check-attacks`. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;
static int port;
static char out[1 << 16];

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

static void teardown(void) { server_cleanup(&srv); }

TestSuite(attacks, .init = setup, .fini = teardown, .timeout = 90);

static void write_www(const char *name, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/%s", srv.dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    for (size_t i = 0; i < len; i++)
        fputc('a' + (int)(i % 26), f);
    fclose(f);
}

static void start(const char *top, const char *http_extra, const char *more)
{
    write_www("1k.bin", 1024);
    server_write_conf(&srv, "graceful_timeout = 2\n%s\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
                      "http { root = \"www\" keepalive_timeout = 60 %s }\n%s\n",
                      top, port, http_extra, more);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
}

/* A blocking TCP connection to the server from source address src. */
static int connect_from(const char *src, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    inet_pton(AF_INET, src, &sa.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "bind %s", src);
    sa.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* A keep-alive GET of path on fd: the response's status (0: none). */
static int get_on(int fd, const char *path, const char *host)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
    struct h_resp r = { 0 };
    if (h_write_full(fd, req, (size_t)n) != 0 || h_read_resp(fd, &r, false) != 0)
        return 0;
    free(r.body);
    return r.status;
}

/* One GET on a new connection from src: its status. */
static int get_from(const char *src)
{
    int fd = connect_from(src, 0), st = get_on(fd, "/1k.bin", "t");
    close(fd);
    return st;
}

/* A number in the "totals" object of `preforkd status --json`; -1 if none. */
static double total(const char *key)
{
    if (h_run(out, sizeof out, "%s status --json -c %s 2>/dev/null", h_bin(), srv.conf) != 0)
        return -1;
    const char *t = strstr(out, "\"totals\"");
    return t ? h_json_number(t, key) : -1;
}

/* --- max_connections_per_ip ---------------------------------------------- */

/* Across the whole pool (two workers): the fifth connection from one
 * address gets a 503 and is closed, another address is served, and the
 * counts go back down as connections close. */
Test(attacks, max_connections_per_ip_is_pool_wide)
{
    start("workers = 2\nmax_connections_per_ip = 4", "", "");
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = connect_from("127.0.0.1", 0);
        cr_assert_eq(get_on(fds[i], "/1k.bin", "t"), 200, "connection %d", i);
    }
    int extra = connect_from("127.0.0.1", 0);
    cr_assert_eq(get_on(extra, "/1k.bin", "t"), 503, "the fifth from 127.0.0.1");
    cr_assert(h_closed_by_peer(extra, 5000), "a refused connection is closed");
    close(extra);
    cr_assert_eq(get_from("127.0.0.2"), 200, "another address has its own count");
    cr_assert(WAIT_UNTIL(total("limited") >= 1, 5000), "counted in status totals");
    /* Every close gives its place back: the same four again. */
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    cr_assert(WAIT_UNTIL(total("active") == 0, 10000));
    for (int i = 0; i < 4; i++) {
        fds[i] = connect_from("127.0.0.1", 0);
        cr_assert_eq(get_on(fds[i], "/1k.bin", "t"), 200, "again, connection %d", i);
    }
    for (int i = 0; i < 4; i++)
        close(fds[i]);
}

/* A worker killed while holding connections leaves no count behind (the
 * master empties its slot's table): its replacement serves the address. */
Test(attacks, killed_worker_leaves_no_count)
{
    start("workers = 1\nmax_connections_per_ip = 2", "", "");
    int a = connect_from("127.0.0.1", 0), b = connect_from("127.0.0.1", 0);
    cr_assert_eq(get_on(a, "/1k.bin", "t"), 200);
    cr_assert_eq(get_on(b, "/1k.bin", "t"), 200);
    pid_t w, w2 = 0;
    cr_assert_eq(h_children(&srv, srv.pid, &w, 1), 1);
    kill(w, SIGKILL);
    close(a);
    close(b);
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, &w2, 1) == 1 && w2 != w, 10000));
    for (int i = 0; i < 2; i++) {
        /* The replacement may still be starting: wait for its answer. */
        int fd = connect_from("127.0.0.1", 0);
        cr_assert_eq(get_on(fd, "/1k.bin", "t"), 200, "connection %d after the crash", i);
        if (i == 0)
            a = fd;
        else
            close(fd);
    }
    close(a);
}

/* Echo has no answer to give: the connection over the limit is closed. */
Test(attacks, echo_over_the_limit_is_closed)
{
    server_write_conf(&srv, "workers = 1\nmax_connections_per_ip = 1\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(server_start(&srv, NULL), 0);
    int a = connect_from("127.0.0.1", 0);
    unsigned char in[3];
    cr_assert_eq(h_echo_exchange(a, (const unsigned char *)"hi\n", 3, in, 3, 5000), 0);
    int b = connect_from("127.0.0.1", 0);
    cr_assert(h_closed_by_peer(b, 5000), "the second connection is closed");
    cr_assert_eq(h_echo_exchange(a, (const unsigned char *)"ok\n", 3, in, 3, 5000), 0,
                 "the first one is still served");
    close(a);
    close(b);
}

/* --- rate_limit ----------------------------------------------------------- */

/* "6r/m burst 3": three requests at once, then one per 10 s. Over it, on
 * a keep-alive connection too: 503 and close; other addresses unaffected;
 * a token comes back after its interval. */
Test(attacks, rate_limit_per_address)
{
    start("workers = 2\nrate_limit = \"6r/m burst 3\"  # per client address", "", "");
    int fd = connect_from("127.0.0.1", 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(get_on(fd, "/1k.bin", "t"), 200, "request %d of the burst", i);
    cr_assert_eq(get_on(fd, "/1k.bin", "t"), 503, "the fourth on the same connection");
    cr_assert(h_closed_by_peer(fd, 5000));
    close(fd);
    cr_assert_eq(get_from("127.0.0.1"), 503, "a new connection is still over it");
    cr_assert_eq(get_from("127.0.0.2"), 200, "127.0.0.2 has its own bucket");
    cr_assert(WAIT_UNTIL(get_from("127.0.0.1") == 200, 30000), "no token came back");
    cr_assert(WAIT_UNTIL(total("limited") >= 2, 5000));
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "limited "), "text status: %s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status --prometheus -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "\npreforkd_limited_total "), "prometheus: %s", out);
}

/* --- early answers -------------------------------------------------------- */

/* A POST's 405 does not wait for its body (trickled here): it comes after
 * the head; the body is then read and dropped and the connection serves
 * the next request. A declared oversized body gets its 413 at once. */
Test(attacks, early_answer_before_the_body)
{
    start("workers = 1", "header_timeout = 60", "");
    int fd = connect_from("127.0.0.1", 0);
    const char head[] = "POST /1k.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n0123";
    cr_assert_eq(h_write_full(fd, head, sizeof head - 1), 0);
    char buf[4096] = "";
    size_t len = 0;
    cr_assert_eq(h_read_some(fd, buf, sizeof buf - 1, 10000, &len), 0,
                 "no answer before the body was complete");
    cr_assert(strncmp(buf, "HTTP/1.1 405 ", 13) == 0, "%s", buf);
    cr_assert_eq(h_write_full(fd, "456789abcdefghij", 16), 0);
    cr_assert_eq(get_on(fd, "/1k.bin", "t"), 200, "the body was dropped; keep-alive");
    close(fd);

    fd = connect_from("127.0.0.1", 0);
    const char chunked[] = "PUT /x HTTP/1.1\r\nHost: t\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n5\r\nab";
    cr_assert_eq(h_write_full(fd, chunked, sizeof chunked - 1), 0);
    len = 0;
    cr_assert_eq(h_read_some(fd, buf, sizeof buf - 1, 10000, &len), 0);
    cr_assert(strncmp(buf, "HTTP/1.1 405 ", 13) == 0, "%s", buf);
    close(fd);

    fd = connect_from("127.0.0.1", 0);
    const char big[] = "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n";
    cr_assert_eq(h_write_full(fd, big, sizeof big - 1), 0);
    len = 0;
    memset(buf, 0, sizeof buf);
    cr_assert_eq(h_read_some(fd, buf, sizeof buf - 1, 10000, &len), 0);
    cr_assert(strncmp(buf, "HTTP/1.1 413 ", 13) == 0, "%s", buf);
    close(fd);
}

/* --- slow readers --------------------------------------------------------- */

/* Bytes the server's socket for our client port has queued (unsent and
 * unacknowledged: tx_queue of /proc/net/tcp); -1 when not found. */
static long server_queue(int client_fd)
{
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    getsockname(client_fd, (struct sockaddr *)&me, &len);
    char want[64];
    snprintf(want, sizeof want, "0100007F:%04X 0100007F:%04X", port, ntohs(me.sin_port));
    char *t = h_read_file("/proc/net/tcp"), *l = t ? strstr(t, want) : NULL;
    long q = -1;
    if (l)
        q = strtol(l + strlen(want) + 4, NULL, 16);     /* " ST " then tx_queue */
    free(t);
    return q;
}

/* A client that asks for a large file and reads nothing: the server keeps
 * a bounded amount queued for it (TCP_NOTSENT_LOWAT), not a send buffer's
 * worth (megabytes: thousands of such clients exhausted the kernel's TCP
 * memory and held the worker in long sendfile calls). */
Test(attacks, slow_reader_gets_a_bounded_queue)
{
    write_www("big.bin", 16 << 20);
    start("workers = 1", "", "");
    int fd = connect_from("127.0.0.1", 4096);
    const char req[] = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(fd, req, sizeof req - 1), 0);
    /* Watched for 3 s: the first sendfile queues what it will. */
    long most = -1;
    for (int64_t end = h_now_ms() + 3000; h_now_ms() < end && most <= 1 << 20; h_sleep_ms(10)) {
        long q = server_queue(fd);
        most = q > most ? q : most;
    }
    cr_assert_gt(most, 0, "the server queued nothing?");
    cr_assert_lt(most, 1 << 20, "%ld bytes queued for a client that reads nothing", most);
    close(fd);
}

/* send_timeout in a site: a client of that site that takes nothing is
 * closed after it, while one of the default site (send_timeout 60) stays. */
Test(attacks, send_timeout_per_site)
{
    write_www("big.bin", 8 << 20);
    start("workers = 1", "send_timeout = 60",
          "site slow { server_names = {\"slow.test\"} root = \"www\"\n"
          "  send_timeout = 1  # seconds\n}");
    int slow = connect_from("127.0.0.1", 4096), dflt = connect_from("127.0.0.1", 4096);
    const char r1[] = "GET /big.bin HTTP/1.1\r\nHost: slow.test\r\n\r\n";
    const char r2[] = "GET /big.bin HTTP/1.1\r\nHost: other.test\r\n\r\n";
    cr_assert_eq(h_write_full(slow, r1, sizeof r1 - 1), 0);
    cr_assert_eq(h_write_full(dflt, r2, sizeof r2 - 1), 0);
    cr_assert(WAIT_UNTIL(total("active") == 2, 5000));
    cr_assert(WAIT_UNTIL(total("active") == 1, 20000), "the slow.test client was not closed");
    cr_assert_gt(server_queue(dflt), 0, "the default site's client is still served");
    close(slow);
    close(dflt);
}

/* --- memory comes back ---------------------------------------------------- */

static long vmrss_kib(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *t = h_read_file(path), *l = t ? strstr(t, "VmRSS:") : NULL;
    long v = l ? strtol(l + 6, NULL, 10) : -1;
    free(t);
    return v;
}

/* Whether pid runs with AddressSanitizer's allocator (`make SANITIZE=1`),
 * which keeps freed memory in its quarantine. */
static bool under_asan(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    char *t = h_read_file(path);
    bool asan = t && strstr(t, "libasan");
    free(t);
    return asan;
}

#define HELD 1600

/* Half the connections hold a request head they never finish (each
 * borrows a request buffer), half sit idle after a request: while they are
 * open each worker grows by megabytes; 10 s after they are gone each is
 * back within 1 MiB of where it started. */
Test(attacks, memory_comes_back_after_an_attack)
{
    SKIP_UNDER_VALGRIND("valgrind's own allocator keeps freed memory");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max < HELD + 256)
        cr_skip_test("the descriptor limit here is %llu", (unsigned long long)rl.rlim_max);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    start("workers = 2\nworker_connections = 4096", "header_timeout = 120", "");
    pid_t w[2];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 2) == 2, 5000));
    if (under_asan(w[0]))
        cr_skip_test("AddressSanitizer's allocator keeps freed memory");
    for (int i = 0; i < 20; i++) {
        int fd = connect_from("127.0.0.1", 0);
        cr_assert_eq(get_on(fd, "/1k.bin", "t"), 200);
        close(fd);
    }
    cr_assert(WAIT_UNTIL(total("active") == 0, 10000));
    long before[2] = { vmrss_kib(w[0]), vmrss_kib(w[1]) };
    static int fds[HELD];
    for (int i = 0; i < HELD; i++) {
        fds[i] = connect_from("127.0.0.1", 0);
        if (i % 2) {
            cr_assert_eq(get_on(fds[i], "/1k.bin", "t"), 200);
        } else {
            const char part[] = "GET /1k.bin HTTP/1.1\r\nHost: t\r\nX-Slow: ";
            cr_assert_eq(h_write_full(fds[i], part, sizeof part - 1), 0);
        }
    }
    cr_assert(WAIT_UNTIL(total("active") == HELD, 20000), "active %g", total("active"));
    long during = vmrss_kib(w[0]) + vmrss_kib(w[1]);
    cr_assert_gt(during - before[0] - before[1], 4 * 1024,
                 "the attack held too little to tell (%ld -> %ld KiB)",
                 before[0] + before[1], during);
    for (int i = 0; i < HELD; i++)
        close(fds[i]);
    cr_assert(WAIT_UNTIL(total("active") == 0, 20000));
    for (int i = 0; i < 2; i++)
        cr_assert(WAIT_UNTIL(vmrss_kib(w[i]) <= before[i] + 1024, 10000),
                  "worker %d: %ld KiB before, %ld during (both), %ld now", i, before[i],
                  during, vmrss_kib(w[i]));
}

/* A reload: the old worker drains with a connection while its replacement
 * serves others from the same address. Each keeps its own count, so when
 * the old one exits (and its counts are dropped) the new one's stay. */
Test(attacks, counts_survive_a_reload)
{
    write_www("big.bin", 8 << 20);
    start("workers = 1\nmax_connections_per_ip = 2\ngraceful_timeout = 60", "", "");
    pid_t old, w[2];
    cr_assert_eq(h_children(&srv, srv.pid, &old, 1), 1);
    int a = connect_from("127.0.0.1", 4096);    /* keeps the old worker busy */
    const char req[] = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(a, req, sizeof req - 1), 0);
    cr_assert(WAIT_UNTIL(total("active") == 1, 5000));
    kill(srv.pid, SIGHUP);
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 2) == 2, 10000), "no replacement");
    int b = connect_from("127.0.0.1", 0);   /* waits in the queue if it is starting */
    cr_assert_eq(get_on(b, "/1k.bin", "t"), 200, "the new worker serves");
    cr_assert_eq(get_from("127.0.0.1"), 503, "the old worker's connection counts");
    close(a);
    cr_assert(WAIT_UNTIL(h_pid_gone(old), 20000), "the old worker did not finish");
    int c = connect_from("127.0.0.1", 0);
    cr_assert_eq(get_on(c, "/1k.bin", "t"), 200, "b and c make two");
    cr_assert_eq(get_from("127.0.0.1"), 503, "a third while b and c are open");
    close(b);
    close(c);
}

/* Behind a load balancer the address limited is the client's, from the
 * PROXY header, not the balancer's (every connection comes from it). */
static int get_via_proxy(int fd, const char *client)
{
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "PROXY TCP4 %s 127.0.0.1 40000 %d\r\n", client, port);
    cr_assert_eq(h_write_full(fd, hdr, (size_t)n), 0);
    return get_on(fd, "/1k.bin", "t");
}

Test(attacks, limits_apply_to_the_proxy_protocol_address)
{
    write_www("1k.bin", 1024);
    server_write_conf(&srv, "workers = 2\nmax_connections_per_ip = 1\n"
                      "listen { address = \"127.0.0.1:%d\" proxy_protocol = true }\n"
                      "http { root = \"www\" keepalive_timeout = 60 }\n", port);
    cr_assert_eq(server_start(&srv, NULL), 0);
    int a = connect_from("127.0.0.1", 0), b = connect_from("127.0.0.1", 0);
    cr_assert_eq(get_via_proxy(a, "203.0.113.1"), 200);
    cr_assert_eq(get_via_proxy(b, "203.0.113.2"), 200, "another client behind the same balancer");
    int c = connect_from("127.0.0.1", 0);
    cr_assert_eq(get_via_proxy(c, "203.0.113.1"), 503, "a second from 203.0.113.1");
    close(a);
    close(b);
    close(c);
}
