/* Integration tests of the core: the real build/preforkd in foreground mode,
 * its pool, the spread of connections, echo over TCP and UDP, respawn and
 * crash-loop back-off, graceful and immediate stop, worker_connections. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

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

static void start_echo(int workers, const char *extra)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 5\n%s\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
                      workers, extra, port);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
}

static size_t worker_pids(pid_t *pids, size_t cap)
{
    return h_children(&srv, srv.pid, pids, cap);
}

/* start_echo with no extra settings, then wait until all n workers run. */
static void start_echo_pool(int n, pid_t *pids, size_t cap)
{
    start_echo(n, "");
    cr_assert(WAIT_UNTIL(worker_pids(pids, cap) == (size_t)n, 5000), "expected %d workers", n);
}

/* One byte out and back: 0 when the connection is served within ms. */
static int echo_byte(int fd, int ms)
{
    char c = 'x', r;
    return h_write_full(fd, &c, 1) == 0 && h_read_full(fd, &r, 1, ms) == 0 ? 0 : -1;
}

/* The state letter of /proc/PID/stat (R, S, T, Z, ...), or 0. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
}

static void fill_pattern(unsigned char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (unsigned char)(seed >> 16);
    }
}

TestSuite(core, .init = setup, .fini = teardown, .timeout = 60);

Test(core, pool_size_and_pidfile)
{
    pid_t w[16];
    start_echo_pool(3, w, 16);
    char *pid = h_read_file(srv.pidfile);
    cr_assert_eq(atoi(pid), srv.pid);
    free(pid);
    cr_assert_eq(server_stop(&srv, SIGTERM, 10000), 0, "clean exit on SIGTERM");
    cr_assert_null(h_read_file(srv.pidfile), "pidfile removed on exit");
}

Test(core, echo_large_payload_in_order)
{
    start_echo(2, "");
    size_t len = 8 << 20;
    unsigned char *out = malloc(len), *in = malloc(len);
    fill_pattern(out, len, 7);
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(h_echo_exchange(fd, out, len, in, 65536, 20000), 0);
    cr_assert_eq(memcmp(out, in, len), 0, "echoed bytes differ");
    close(fd);
    free(out);
    free(in);
}

Test(core, echo_fragmented_writes)
{
    start_echo(2, "");
    unsigned char out[20000], in[20000];
    fill_pattern(out, sizeof out, 3);
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    /* 1, 2, 3, ... byte writes: the reply must be the same stream. */
    size_t off = 0;
    for (size_t n = 1; off < sizeof out; n = n % 97 + 1) {
        size_t k = n < sizeof out - off ? n : sizeof out - off;
        cr_assert_eq(h_write_full(fd, out + off, k), 0);
        off += k;
    }
    cr_assert_eq(h_read_full(fd, in, sizeof in, 10000), 0);
    cr_assert_eq(memcmp(out, in, sizeof out), 0);
    close(fd);
}

Test(core, echo_udp)
{
    int uport = h_free_port(SOCK_DGRAM);
    server_write_conf(&srv, "workers = 2\n"
                      "listen { address = \"udp:127.0.0.1:%d\" protocol = \"echo\" }\n", uport);
    cr_assert_eq(server_start(&srv, NULL), 0);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)uport),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    for (int i = 0; i < 50; i++) {
        char msg[64], got[64];
        int n = snprintf(msg, sizeof msg, "datagram %d", i);
        cr_assert_eq(send(fd, msg, (size_t)n, 0), n);
        cr_assert_eq(h_read_full(fd, got, (size_t)n, 3000), 0, "no reply to %d", i);
        cr_assert_eq(memcmp(msg, got, (size_t)n), 0);
    }
    close(fd);
}

/* Back-pressure: a client that sends but never reads must not make the
 * worker buffer without bound; the worker's RSS stays flat. */
Test(core, echo_backpressure_bounds_memory)
{
    pid_t w;
    start_echo_pool(1, &w, 1);
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    static unsigned char junk[1 << 16];
    size_t sent = 0;
    int64_t end = h_now_ms() + 5000;
    /* Send until the kernel buffers on both sides are full. */
    while (h_now_ms() < end) {
        ssize_t n = send(fd, junk, sizeof junk, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            h_sleep_ms(50);
            if (send(fd, junk, sizeof junk, MSG_DONTWAIT) < 0 && errno == EAGAIN)
                break;
            continue;
        }
        cr_assert_gt(n, 0);
        sent += (size_t)n;
    }
    cr_assert_lt(sent, (size_t)64 << 20, "server accepted %zu bytes unread", sent);
    close(fd);
}

/* 400 connections over 4 workers: EPOLLEXCLUSIVE alone would give most of
 * them to the first worker; re-ordering the wait queue spreads them. */
Test(core, connections_spread_over_workers)
{
    pid_t w[8];
    start_echo_pool(4, w, 8);
    int base[4];
    for (int i = 0; i < 4; i++)
        base[i] = h_count_sockets(w[i]);
    static int fds[400];
    for (int i = 0; i < 400; i++) {
        fds[i] = h_tcp_connect(port);
        cr_assert_geq(fds[i], 0);
        cr_assert_eq(echo_byte(fds[i], 5000), 0, "conn %d not served", i);
    }
    int total = 0, most = 0;
    for (int i = 0; i < 4; i++) {
        int n = h_count_sockets(w[i]) - base[i];
        cr_log_info("worker %d: %d connections", w[i], n);
        total += n;
        most = n > most ? n : most;
    }
    cr_assert_eq(total, 400);
    cr_assert_leq(most, 200, "one worker took %d of 400 connections", most);
    for (int i = 0; i < 400; i++)
        close(fds[i]);
}

/* A burst of connections (what wrk does at its start) right after start-up:
 * the worker already running would take the whole queue before its woken
 * sibling gets a CPU; the fair-share rule makes it step aside. */
Test(core, connection_burst_spread_over_workers)
{
    SKIP_UNDER_VALGRIND("the rule gives a sibling 1 ms to take the queue; "
                        "under valgrind a woken worker needs far longer");
    enum { N = 60 };
    pid_t w[4];
    start_echo_pool(2, w, 4);
    int base[2] = { h_count_sockets(w[0]), h_count_sockets(w[1]) };
    static int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = h_tcp_connect(port);
        cr_assert_geq(fds[i], 0);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(echo_byte(fds[i], 5000), 0, "conn %d not served", i);
    }
    int n0 = h_count_sockets(w[0]) - base[0], n1 = h_count_sockets(w[1]) - base[1];
    cr_log_info("burst of %d: %d and %d connections", N, n0, n1);
    cr_assert_eq(n0 + n1, N);
    cr_assert_geq(n0 < n1 ? n0 : n1, N / 5, "split %d/%d", n0, n1);
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

/* The fair-share rule must not stall a worker whose sibling is stuck: a
 * stopped worker's count stays low, yet the other keeps accepting. */
Test(core, burst_served_while_sibling_stopped)
{
    enum { N = 60 };
    pid_t w[4];
    start_echo_pool(2, w, 4);
    cr_assert_eq(kill(w[1], SIGSTOP), 0);
    /* Until it has stopped, it may still take a wake-up it will not act on
     * (the sweep covers that, but this test is about the fair-share rule). */
    cr_assert(WAIT_UNTIL(proc_state(w[1]) == 'T', 3000));
    static int fds[N];
    int64_t t0 = h_now_ms();
    bool ok = true;
    for (int i = 0; i < N && ok; i++) {
        fds[i] = h_tcp_connect(port);
        ok = fds[i] >= 0 && echo_byte(fds[i], 3000) == 0;
    }
    int64_t dt = h_now_ms() - t0;
    kill(w[1], SIGCONT);
    cr_assert(ok, "a connection was not served while worker %d was stopped", (int)w[1]);
    cr_log_info("%d connections served in %lld ms with one worker stopped", N, (long long)dt);
    /* Under LOADBOARD_FRESH_MS (2.5 s): the stopped sibling still counted, so
     * the one-batch-after-a-pause rule is what kept this worker accepting. */
    cr_assert_lt(dt, 2000);
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

/* The wake-up for a connection goes to one worker only (EPOLLEXCLUSIVE).
 * If that worker is out of descriptors, its sibling must still take the
 * connection without waiting for another arrival: the once-a-second sweep. */
Test(core, connection_not_stranded_on_a_worker_out_of_descriptors)
{
    pid_t w[4];
    start_echo_pool(2, w, 4);
    int base[2] = { h_count_sockets(w[0]), h_count_sockets(w[1]) };
    int c1 = h_tcp_connect(port);
    cr_assert_eq(echo_byte(c1, 3000), 0);
    /* The worker that took c1 is first in the wait queue: it gets the next
     * wake-up too. Leave it no descriptor for the next connection. */
    int a = h_count_sockets(w[0]) > base[0] ? 0 : 1;
    char path[64], cmd[128];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)w[a]);
    bool used[1024] = { false };
    DIR *d = opendir(path);
    cr_assert_not_null(d);
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_name[0] != '.' && atoi(de->d_name) < 1024)
            used[atoi(de->d_name)] = true;
    closedir(d);
    int lowest_free = 0;        /* what accept() would return: make it too high */
    while (used[lowest_free])
        lowest_free++;
    snprintf(cmd, sizeof cmd, "prlimit --pid %d --nofile=%d:%d", (int)w[a],
             lowest_free, lowest_free);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    int c2 = h_tcp_connect(port);
    int64_t t0 = h_now_ms();
    cr_assert_eq(echo_byte(c2, 3000), 0, "stranded: worker %d (out of descriptors) "
                 "had the wake-up and worker %d never took it", (int)w[a], (int)w[1 - a]);
    cr_log_info("served by the sibling after %lld ms", (long long)(h_now_ms() - t0));
    cr_assert_eq(h_count_sockets(w[1 - a]) - base[1 - a], 1);
    close(c1);
    close(c2);
}

Test(core, killed_worker_is_replaced)
{
    pid_t w[8], after[8];
    start_echo_pool(3, w, 8);
    cr_assert_eq(kill(w[1], SIGKILL), 0);
    cr_assert(WAIT_UNTIL(h_pid_gone(w[1]), 3000));
    bool replaced = WAIT_UNTIL(worker_pids(after, 8) == 3 &&
        after[0] != w[1] && after[1] != w[1] && after[2] != w[1], 3000);
    cr_assert(replaced, "the killed worker was not replaced");
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "killed by signal 9") == 1, 2000));
    int fd = h_tcp_connect(port);
    char r[2];
    cr_assert_eq(h_write_full(fd, "ok", 2), 0);
    cr_assert_eq(h_read_full(fd, r, 2, 3000), 0);
    close(fd);
}

/* Workers that die right after start are respawned with a growing delay,
 * not in a tight loop, and the pool recovers once the cause is gone. */
Test(core, crash_loop_backs_off_and_recovers)
{
    char fault[128], env[160];
    snprintf(fault, sizeof fault, "%s/crash", srv.dir);
    snprintf(env, sizeof env, "PREFORKD_FAULT_EXIT=%s", fault);
    char *envv[] = { env, NULL };
    server_write_conf(&srv, "workers = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(server_start(&srv, envv), 0);
    pid_t w[8];
    cr_assert(WAIT_UNTIL(worker_pids(w, 8) == 2, 5000));
    FILE *f = fopen(fault, "w");
    fclose(f);
    kill(w[0], SIGKILL);
    /* Let it loop for a while: count respawns in 2.5 s. */
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "crash loop:") >= 4, 5000),
              "no back-off logged");
    int64_t t0 = h_now_ms();
    int before = h_file_count(srv.log, "fault injection");
    while (h_now_ms() - t0 < 2500)
        h_sleep_ms(50);
    int during = h_file_count(srv.log, "fault injection") - before;
    cr_log_info("%d crashes in 2.5 s of back-off", during);
    cr_assert_leq(during, 4, "respawned %d times in 2.5 s: no back-off", during);
    cr_assert(h_file_count(srv.log, "respawning slot 0 in 800 ms") +
              h_file_count(srv.log, "respawning slot 0 in 1600 ms") >= 1,
              "delays did not grow");
    unlink(fault);
    cr_assert(WAIT_UNTIL(worker_pids(w, 8) == 2, 15000), "pool did not recover");
}

/* SIGTERM while an echo exchange is under way: the exchange completes. */
Test(core, sigterm_drains_inflight_echo)
{
    start_echo(2, "");
    size_t len = 4 << 20, half = len / 2;
    unsigned char *out = malloc(len), *in = malloc(len);
    fill_pattern(out, len, 11);
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(h_echo_exchange(fd, out, half, in, 65536, 10000), 0);
    cr_assert_eq(kill(srv.pid, SIGTERM), 0);
    cr_assert_eq(h_echo_exchange(fd, out + half, len - half, in + half, 65536, 10000), 0,
                 "exchange broken by the graceful stop");
    cr_assert_eq(memcmp(out, in, len), 0);
    free(out);
    free(in);
    /* After a quiet moment the server closes: we see EOF, not a reset. */
    char c;
    cr_assert_eq(h_read_full(fd, &c, 1, 5000), -1);
    close(fd);
    int st = server_stop(&srv, 0, 8000);
    cr_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    cr_assert_lt(h_tcp_connect(port), 0, "port still open after stop");
}

Test(core, sigint_stops_at_once)
{
    start_echo(2, "");
    pid_t w[8];
    size_t n = worker_pids(w, 8);
    int fd = h_tcp_connect(port);     /* an idle connection must not delay it */
    cr_assert_geq(fd, 0);
    int64_t t0 = h_now_ms();
    int st = server_stop(&srv, SIGINT, 3000);
    cr_assert_geq(st, 0, "master did not stop on SIGINT");
    cr_assert_lt(h_now_ms() - t0, 2000);
    for (size_t i = 0; i < n; i++)
        cr_assert(WAIT_UNTIL(h_pid_gone(w[i]), 2000));
    close(fd);
}

/* SIGKILL on the master: no orphan keeps serving the old configuration. */
Test(core, workers_die_with_master)
{
    pid_t w[8];
    start_echo_pool(3, w, 8);
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
    for (int i = 0; i < 3; i++)
        cr_assert(WAIT_UNTIL(h_pid_gone(w[i]), 5000), "worker %d survived", w[i]);
    cr_assert(WAIT_UNTIL(h_tcp_connect(port) < 0, 2000), "port still served");
}

/* At worker_connections a worker stops accepting; a freed slot resumes. */
Test(core, worker_connections_limit)
{
    start_echo(1, "worker_connections = 2");
    int a = h_tcp_connect(port), b = h_tcp_connect(port), c = h_tcp_connect(port);
    char r;
    cr_assert_eq(h_write_full(a, "a", 1), 0);
    cr_assert_eq(h_read_full(a, &r, 1, 3000), 0);
    cr_assert_eq(h_write_full(b, "b", 1), 0);
    cr_assert_eq(h_read_full(b, &r, 1, 3000), 0);
    cr_assert_eq(h_write_full(c, "c", 1), 0);
    cr_assert_eq(h_read_full(c, &r, 1, 500), -1, "third connection served over the limit");
    close(a);
    cr_assert_eq(h_read_full(c, &r, 1, 3000), 0, "not served after a slot freed");
    cr_assert_eq(r, 'c');
    close(b);
    close(c);
}

/* Out of descriptors (EMFILE): the worker pauses accepting instead of
 * spinning on the ready listener, and serves the waiting clients once
 * descriptors free up. */
Test(core, emfile_does_not_spin_and_recovers)
{
    pid_t w;
    start_echo_pool(1, &w, 1);
    char cmd[128];
    int open_fds = h_count_sockets(w) + 6;      /* stdio, log, epoll, pipes */
    snprintf(cmd, sizeof cmd, "prlimit --pid %d --nofile=%d:%d", (int)w,
             open_fds + 3, open_fds + 3);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    int fds[12];
    for (int i = 0; i < 12; i++)
        cr_assert_geq(fds[i] = h_tcp_connect(port), 0);    /* the kernel queues them */
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "Too many open files") >= 1, 3000));
    long t0 = h_cpu_ticks(w);
    int64_t start = h_now_ms();
    while (h_now_ms() - start < 1500)
        h_sleep_ms(50);
    long used = h_cpu_ticks(w) - t0;
    cr_log_info("worker CPU during 1.5 s at EMFILE: %ld ticks", used);
    cr_assert_lt(used, 15, "worker spun: %ld ticks in 1.5 s", used);
    /* Close the served ones: the queued clients get their turn. */
    int served = 0;
    for (int i = 0; i < 12; i++) {
        char c = 'q', r;
        if (h_write_full(fds[i], &c, 1) == 0 && h_read_full(fds[i], &r, 1, 300) == 0) {
            served++;
            close(fds[i]);
            fds[i] = -1;
        }
    }
    cr_assert_gt(served, 0);
    cr_assert_lt(served, 12, "the limit did not bite");
    for (int i = 0; i < 12; i++) {
        if (fds[i] < 0)
            continue;
        char r;
        cr_assert_eq(h_read_full(fds[i], &r, 1, 5000), 0, "client %d never served", i);
        close(fds[i]);
    }
}

/* IPv6 and unix stream listeners serve like IPv4; a unix socket file is
 * removed when the server stops. */
Test(core, ipv6_and_unix_listeners)
{
    int fd6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    if (fd6 < 0 || bind(fd6, (struct sockaddr *)&s6, sizeof s6) != 0)
        cr_skip_test("no IPv6 loopback here");
    close(fd6);
    server_write_conf(&srv, "workers = 2\n"
                      "listen { address = \"[::1]:%d\" protocol = \"echo\" }\n"
                      "listen { address = \"unix:echo.sock\" protocol = \"echo\" }\n", port);
    cr_assert_eq(server_start(&srv, NULL), 0);
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    s6.sin6_port = htons((uint16_t)port);
    cr_assert_eq(connect(fd, (struct sockaddr *)&s6, sizeof s6), 0);
    char r[4];
    cr_assert_eq(h_write_full(fd, "six!", 4), 0);
    cr_assert_eq(h_read_full(fd, r, 4, 3000), 0);
    cr_assert_eq(memcmp(r, "six!", 4), 0);
    close(fd);
    char path[128];
    snprintf(path, sizeof path, "%s/echo.sock", srv.dir);
    fd = h_unix_connect(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(h_write_full(fd, "unix", 4), 0);
    cr_assert_eq(h_read_full(fd, r, 4, 3000), 0);
    cr_assert_eq(memcmp(r, "unix", 4), 0);
    close(fd);
    cr_assert_eq(server_stop(&srv, SIGTERM, 8000), 0);
    cr_assert_neq(access(path, F_OK), 0, "unix socket file left behind");
}

/* [::]:PORT is IPv6 only for every protocol, so *:PORT can be a listener
 * of its own (an echo pair used to fail: "bind [::]:PORT: Address already
 * in use"). The wildcards are bound in a network namespace of the test's
 * own (loopback only), where the daemon is started and stopped by pid. */
Test(core, ipv6_wildcard_is_ipv6_only_for_every_protocol)
{
    char out[8192];
    if (h_run(out, sizeof out, "unshare -n true 2>&1") != 0)
        cr_skip_test("no network namespaces here: %s", out);
    server_write_conf(&srv, "workers = 1\n"
                      "listen { address = \"*:%d\" protocol = \"echo\" }\n"
                      "listen { address = \"[::]:%d\" protocol = \"echo\" }\n", port, port);
    int rc = h_run(out, sizeof out,
                   "timeout -k 5 60 unshare -n sh -c 'ip link set lo up && %s -c %s 2>&1 && "
                   "ss -Hlnt \"sport = :%d\" && p=$(cat %s) && kill $p && "
                   "while [ -e /proc/$p ] && ! grep -q \"^State:.*Z\" /proc/$p/status; "
                   "do sleep 0.05; done' 2>&1", h_bin(), srv.conf, port, srv.pidfile);
    cr_assert_eq(rc, 0, "%s", out);
    char v4[64], v6[64];
    snprintf(v4, sizeof v4, "0.0.0.0:%d", port);
    snprintf(v6, sizeof v6, "[::]:%d", port);
    cr_assert(strstr(out, v4) && strstr(out, v6), "both listeners: %s", out);
}
