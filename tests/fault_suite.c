/* The fault suite (make check-faults): the real server under load while
 * workers are killed, the master is stopped, reloads pile up, and under
 * valgrind. Each scenario prints the figures it measured (cr_log_info). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
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

struct load;
static struct load *running_load;    /* stopped by teardown if a test fails */
static void load_stop(struct load *l);

static void teardown(void)
{
    if (running_load)
        load_stop(running_load);
    server_cleanup(&srv);
}

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 240);

/* The accept mode of the echo listener: the scenarios below that matter
 * for it (kills, reloads) run in both. */
static const char *accept_mode = "shared";

static void write_conf(int workers, const char *extra)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 5\nlog_level = \"info\"\n%s\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" accept = \"%s\" }\n",
                      workers, extra, port, accept_mode);
}

/* Sockets of a worker that are not connections: its listening sockets. */
static int listening_sockets(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    return strcmp(accept_mode, "per-cpu") == 0 ? n : 1;
}

static double json_field(const char *key)
{
    return h_status_number(&srv, key);
}

/* --- a load of connection-per-request echo exchanges ---------------------- */

struct load {
    atomic_int stop, ok, failed;
    atomic_ullong bytes;
    int port;
    pthread_t th[2];
};

static int exchange(int p)
{
    int fd = h_tcp_connect(p);
    if (fd < 0)
        return -1;
    unsigned char b[64], r[64];
    memset(b, 'x', sizeof b);
    int rc = h_echo_exchange(fd, b, sizeof b, r, sizeof b, 5000);
    close(fd);
    return rc == 0 && memcmp(b, r, sizeof b) == 0 ? 0 : -1;
}

static void *load_thread(void *arg)
{
    struct load *l = arg;
    while (!atomic_load(&l->stop)) {
        if (exchange(l->port) == 0) {
            atomic_fetch_add(&l->ok, 1);
            atomic_fetch_add(&l->bytes, 64);
        } else {
            atomic_fetch_add(&l->failed, 1);
        }
    }
    return NULL;
}

static void load_start(struct load *l, int p)
{
    memset(l, 0, sizeof *l);
    running_load = l;
    l->port = p;
    for (int i = 0; i < 2; i++)
        pthread_create(&l->th[i], NULL, load_thread, l);
}

static void load_stop(struct load *l)
{
    atomic_store(&l->stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(l->th[i], NULL);
    running_load = NULL;
}

static bool pool_has(size_t n, pid_t gone)
{
    pid_t w[64];
    size_t k = h_children(&srv, srv.pid, w, 64);
    for (size_t i = 0; i < k && i < 64; i++)
        if (w[i] == gone)
            return false;
    return k == n;
}

/* 1. SIGKILL a random worker every 200 ms for 10 s under load. */
static void sigkill_storm(void)
{
    write_conf(4, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    static struct load l;
    load_start(&l, port);
    int kills = 0, held = 0;
    int64_t worst = 0, end = h_now_ms() + 10000;
    unsigned seed = (unsigned)getpid();
    while (h_now_ms() < end) {
        int64_t t0 = h_now_ms();
        pid_t w[8];
        size_t n = h_children(&srv, srv.pid, w, 8);
        cr_assert_eq(n, 4, "pool is %zu", n);
        pid_t victim = w[rand_r(&seed) % n];
        held += h_count_sockets(victim) - listening_sockets();
        kill(victim, SIGKILL);
        kills++;
        cr_assert(WAIT_UNTIL(pool_has(4, victim), 1000), "kill %d not replaced in 1 s", kills);
        worst = h_now_ms() - t0 > worst ? h_now_ms() - t0 : worst;
        while (h_now_ms() - t0 < 200)
            h_sleep_ms(5);
    }
    load_stop(&l);
    cr_log_info("sigkill storm: %d kills, worst replacement %lld ms, %d exchanges ok, "
                "%d failed, killed workers held %d connections", kills, (long long)worst,
                l.ok, l.failed, held);
    /* A connection accepted between our look at /proc and the kill also dies
     * with its worker: at most one per kill on this two-client load. */
    cr_assert_leq(l.failed, held + kills, "failures beyond what the killed workers held");
    cr_assert(WAIT_UNTIL(json_field("idle") + json_field("busy") == 4, 3000));
}

Test(faults, sigkill_storm_under_load) { sigkill_storm(); }

/* The same with one socket per CPU: a killed worker's CPU socket is
 * served by the others until its replacement is up. */
Test(faults, sigkill_storm_under_load_per_cpu)
{
    accept_mode = "per-cpu";
    sigkill_storm();
}

static long fd_count(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(p);
    long n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n - 2;
}

static long rss_kb(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    char *t = h_read_file(p);
    char *v = t ? strstr(t, "VmRSS:") : NULL;
    long kb = v ? atol(v + 6) : -1;
    free(t);
    return kb;
}

/* 3. 50 reloads under load, alternating two valid files with one invalid in
 * the middle: nothing fails; the master's descriptors and memory stay flat. */
static void fifty_reloads(void)
{
    write_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    static struct load l;
    load_start(&l, port);
    long fd10 = 0, rss10 = 0;
    for (int r = 1; r <= 50; r++) {
        if (r == 25)
            write_conf(2, "workers_typo = 3");
        else
            write_conf(2 + r % 2, r % 3 ? "max_requests = 0" : "max_requests = 100000");
        double before = json_field("reloads");
        kill(srv.pid, SIGHUP);
        cr_assert(WAIT_UNTIL(json_field("reloads") == before + 1, 5000), "reload %d", r);
        cr_assert(WAIT_UNTIL(json_field("draining") == 0, 8000), "reload %d: drain stuck", r);
        if (r == 10) {
            fd10 = fd_count(srv.pid);
            rss10 = rss_kb(srv.pid);
        }
    }
    long fd50 = fd_count(srv.pid), rss50 = rss_kb(srv.pid);
    load_stop(&l);
    cr_log_info("50 reloads: %d exchanges ok, %d failed; master fds %ld -> %ld, "
                "RSS %ld -> %ld KiB (reload 10 -> 50)", l.ok, l.failed, fd10, fd50, rss10, rss50);
    cr_assert_eq(l.failed, 0);
    cr_assert_eq(fd50, fd10, "master descriptors grew");
    cr_assert_leq(rss50 - rss10, 256, "master RSS grew by %ld KiB", rss50 - rss10);
    cr_assert_eq(json_field("generation"), 50, "49 applied + 1 initial");
}

Test(faults, fifty_reloads_no_failure_no_growth) { fifty_reloads(); }

/* The same with one socket per CPU: they are kept, not re-bound. */
Test(faults, fifty_reloads_no_failure_no_growth_per_cpu)
{
    accept_mode = "per-cpu";
    fifty_reloads();
}

/* 20 reloads in a row (worker count alternating) under a load on each
 * accept mode: no exchange fails (tests/test_ops.c has the shared one). */
Test(faults, twenty_reloads_per_cpu)
{
    accept_mode = "per-cpu";
    write_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    static struct load l;
    load_start(&l, port);
    for (int r = 0; r < 20; r++) {
        write_conf(2 + r % 2, "");
        double before = json_field("reloads");
        kill(srv.pid, SIGHUP);
        cr_assert(WAIT_UNTIL(json_field("reloads") == before + 1, 5000), "reload %d", r);
        cr_assert(WAIT_UNTIL(json_field("draining") == 0, 8000), "reload %d: drain stuck", r);
    }
    int ok = atomic_load(&l.ok);
    cr_assert(WAIT_UNTIL(atomic_load(&l.ok) > ok + 50, 5000));
    load_stop(&l);
    cr_log_info("20 reloads per-cpu: %d exchanges ok, %d failed", l.ok, l.failed);
    cr_assert_eq(l.failed, 0);
    cr_assert_eq(json_field("generation"), 21);
}

/* 8. The master stalls (SIGSTOP for 100 ms, ten times): workers keep serving
 * and no report is lost for good: the totals catch up. */
Test(faults, master_stall_loses_no_report)
{
    write_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    static struct load l;
    load_start(&l, port);
    int served_while_stopped = 0;
    for (int i = 0; i < 10; i++) {
        int before = atomic_load(&l.ok);
        kill(srv.pid, SIGSTOP);
        h_sleep_ms(100);
        served_while_stopped += atomic_load(&l.ok) - before;
        kill(srv.pid, SIGCONT);
        h_sleep_ms(100);
    }
    load_stop(&l);
    unsigned long long bytes = atomic_load(&l.bytes);
    cr_log_info("master stalls: %d exchanges served while the master was stopped; "
                "%d ok, %d failed", served_while_stopped, l.ok, l.failed);
    cr_assert_gt(served_while_stopped, 0);
    cr_assert_eq(l.failed, 0);
    cr_assert(WAIT_UNTIL(json_field("in") == (double)bytes, 4000),
              "totals in %.0f, client sent %llu", json_field("in"), bytes);
}

/* 9. Master and workers under valgrind memcheck through requests, a
 * recycle, reloads and a stop: no error, no definite or indirect leak. */
Test(faults, valgrind_master_and_workers)
{
    char wrapper[PATH_MAX], vgdir[PATH_MAX];
    snprintf(vgdir, sizeof vgdir, "%s/vg", srv.dir);
    snprintf(wrapper, sizeof wrapper, "%s/preforkd-vg", srv.dir);
    FILE *f = fopen(wrapper, "w");
    fprintf(f, "#!/bin/sh\nmkdir -p %s\nexec valgrind --quiet --leak-check=full "
            "--show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect "
            "--log-file=%s/vg.%%p %s \"$@\"\n", vgdir, vgdir, h_bin());
    fclose(f);
    chmod(wrapper, 0755);
    setenv("PREFORKD_BIN", wrapper, 1);
    write_conf(2, "max_requests = 50\nworker_timeout = 60");
    cr_assert_eq(server_start(&srv, NULL), 0);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(exchange(port), 0, "exchange %d", i);
    for (int r = 0; r < 3; r++) {
        kill(srv.pid, SIGHUP);
        cr_assert(WAIT_UNTIL(h_file_count(srv.log, "reload: generation") == r + 1, 20000));
    }
    for (int i = 0; i < 50; i++)
        cr_assert_eq(exchange(port), 0);
    cr_assert_eq(server_stop(&srv, SIGTERM, 60000), 0);
    cr_assert_eq(h_run(out, sizeof out, "cat %s/vg.* | grep -c . || true", vgdir), 0);
    cr_log_info("valgrind: %d lines of findings", atoi(out));
    cr_assert_eq(atoi(out), 0, "valgrind found problems: see %s", vgdir);
    cr_assert_gt(h_run(out, sizeof out, "ls %s | wc -l", vgdir), -1);
    cr_log_info("valgrind: %d processes checked", atoi(out));
    cr_assert_geq(atoi(out), 6, "master + initial workers + recycled + reloaded");
}

/* --- 5. slowloris -------------------------------------------------------- */

struct probe { int64_t lat_us[600000]; int n; };

/* Keep-alive GETs for ms milliseconds; latencies into p. */
static void http_probe(int p, int ms, struct probe *pr)
{
    static const char req[] = "GET /1k.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    char buf[2048];
    int fd = h_tcp_connect(p);
    cr_assert_geq(fd, 0);
    int64_t end = h_now_ms() + ms;
    pr->n = 0;
    while (h_now_ms() < end && pr->n < 200000) {   /* one round's worth */
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        cr_assert_eq(h_write_full(fd, req, sizeof req - 1), 0);
        size_t len = 0;
        char *hdr_end = NULL;
        while (!hdr_end || len < (size_t)(hdr_end - buf) + 4 + 1024) {
            ssize_t n = read(fd, buf + len, sizeof buf - len);
            cr_assert_gt(n, 0, "probe connection failed");
            len += (size_t)n;
            hdr_end = memmem(buf, len, "\r\n\r\n", 4);
        }
        cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        pr->lat_us[pr->n++] = (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
    }
    close(fd);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t p99(struct probe *pr)
{
    qsort(pr->lat_us, (size_t)pr->n, sizeof pr->lat_us[0], cmp_i64);
    return pr->lat_us[pr->n * 99 / 100];
}

/* 2000 connections that send a request one byte every two seconds, while a
 * normal client measures req/s and p99: both within 2x of no attack. */
Test(faults, slowloris_does_not_starve_others)
{
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/www/1k.bin", srv.dir);
    FILE *f = fopen(file, "w");
    for (int i = 0; i < 1024; i++)
        fputc('x', f);
    fclose(f);
    server_write_conf(&srv, "workers = 2\nworker_connections = 4096\nlog_level = \"warn\"\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" backlog = 4096 }\n"
                      "http { root = \"www\" header_timeout = 60 }\n", port);
    cr_assert_eq(server_start(&srv, NULL), 0);
    static struct probe base, attacked;
    http_probe(port, 2000, &base);
    static int slow[2000];
    for (int i = 0; i < 2000; i++) {
        slow[i] = h_tcp_connect(port);
        cr_assert_geq(slow[i], 0, "slow client %d", i);
        cr_assert_eq(h_write_full(slow[i], "G", 1), 0);
    }
    /* Three rounds: measure for 2 s, then every slow client sends one more
     * byte of its never-ending request header. */
    static const char drip[] = "ET / HTTP/1.1\r\nX-a: b\r\n";
    struct probe *round = malloc(sizeof *round);
    attacked.n = 0;
    for (int r = 0; r < 3; r++) {
        http_probe(port, 2000, round);
        memcpy(attacked.lat_us + attacked.n, round->lat_us, (size_t)round->n * sizeof round->lat_us[0]);
        attacked.n += round->n;
        for (int i = 0; i < 2000; i++)
            cr_assert_eq(h_write_full(slow[i], drip + r, 1), 0, "slow client %d dropped", i);
    }
    free(round);
    double rps_base = base.n / 2.0, rps_att = attacked.n / 6.0;
    int64_t p99_base = p99(&base), p99_att = p99(&attacked);
    cr_log_info("slowloris: 2000 slow connections; probe %.0f req/s p99 %lld us without, "
                "%.0f req/s p99 %lld us with", rps_base, (long long)p99_base, rps_att,
                (long long)p99_att);
    double active = json_field("active");
    cr_assert_geq(active, 2000, "slow connections were dropped early (%.0f active)", active);
    for (int i = 0; i < 2000; i++)
        close(slow[i]);
    cr_assert_geq(rps_att * 2, rps_base, "req/s fell more than 2x");
    cr_assert_leq(p99_att, 2 * p99_base + 1000, "p99 grew more than 2x (+1 ms)");
}
