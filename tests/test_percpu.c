/* accept = "per-cpu" against the real daemon: the key and its errors, one
 * socket per CPU each served by the worker pinned there, and no connection
 * stranded on a CPU's socket when its worker is killed, stopped, reloaded
 * or scaled away (clients pinned to a CPU with sched_setaffinity put their
 * connections on that CPU's socket); sockets kept across reloads; status. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/config.h"
#include "tests/harness.h"

static struct server srv;
static int port;
static char out[1 << 16];

static void setup(void)
{
    h_adopt_orphans();              /* an upgraded master stays ours (see teardown) */
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

/* A test that gave up mid-upgrade leaves a new master no tree of srv's
 * holds: as our orphan it is our descendant, killed by pid. */
static void teardown(void)
{
    server_cleanup(&srv);
    h_kill_descendants(10000);
}

TestSuite(percpu, .init = setup, .fini = teardown, .timeout = 150);

/* --- helpers --------------------------------------------------------------- */

static int allowed_cpus(int *cpus, int max)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

static void need_two_cpus(int *cpus)
{
    if (allowed_cpus(cpus, 2) < 2)
        cr_skip_test("needs two CPUs");
}

static void write_echo_conf(int workers, const char *accept)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 5\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" "
                      "accept = \"%s\" }\n", workers, port, accept);
}

static void start_echo(int workers, const char *accept)
{
    write_echo_conf(workers, accept);
    cr_assert_eq(server_start(&srv, NULL), 0);
}

static int exchange(int p, int ms)
{
    int fd = h_tcp_connect(p);
    if (fd < 0)
        return -1;
    unsigned char b[32], r[32];
    memset(b, 'p', sizeof b);
    int rc = h_echo_exchange(fd, b, sizeof b, r, sizeof b, ms);
    close(fd);
    return rc == 0 && memcmp(b, r, sizeof b) == 0 ? 0 : -1;
}

static void pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0);
}

/* n sequential exchanges from a thread on cpu (so on that CPU's socket),
 * each given 10 s: how many failed; *slow counts those over a second. */
struct burst { int port, cpu, n, failed, slow; int64_t worst_ms; };

static void *burst_thread(void *arg)
{
    struct burst *b = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(b->cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
    for (int i = 0; i < b->n; i++) {
        int64_t t0 = h_now_ms();
        if (exchange(b->port, 10000) != 0)
            b->failed++;
        int64_t dt = h_now_ms() - t0;
        b->slow += dt > 1000;
        b->worst_ms = dt > b->worst_ms ? dt : b->worst_ms;
    }
    return NULL;
}

static struct burst run_burst(int cpu, int n)
{
    struct burst b = { .port = port, .cpu = cpu, .n = n };
    pthread_t th;
    pthread_create(&th, NULL, burst_thread, &b);
    pthread_join(th, NULL);
    return b;
}

/* A bounded load: a client thread per CPU, exchanges until stopped. */
struct cload {
    int port;
    atomic_int stop, ok, failed, slow;
    pthread_t th[2];
    int cpu[2];
};

static void *cload_thread(void *arg)
{
    struct cload *l = arg;
    static atomic_int next;
    int me = atomic_fetch_add(&next, 1) % 2;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(l->cpu[me], &set);
    sched_setaffinity(0, sizeof set, &set);
    while (!atomic_load(&l->stop)) {
        int64_t t0 = h_now_ms();
        if (exchange(l->port, 10000) == 0)
            atomic_fetch_add(&l->ok, 1);
        else
            atomic_fetch_add(&l->failed, 1);
        if (h_now_ms() - t0 > 1000)
            atomic_fetch_add(&l->slow, 1);
    }
    return NULL;
}

static void cload_start(struct cload *l, const int *cpus)
{
    memset(l, 0, sizeof *l);
    l->port = port;
    l->cpu[0] = cpus[0];
    l->cpu[1] = cpus[1];
    for (int i = 0; i < 2; i++)
        pthread_create(&l->th[i], NULL, cload_thread, l);
}

static void cload_stop(struct cload *l)
{
    atomic_store(&l->stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(l->th[i], NULL);
}

static const char *status_json(void)
{
    if (h_run(out, sizeof out, "%s status --json -c %s 2>/dev/null", h_bin(), srv.conf) != 0 ||
        !h_json_valid(out))
        return NULL;
    return out;
}

/* The workers of the JSON: pid, accepted and pinned_cpu (-1: null). */
struct wview { pid_t pid; long accepted; int cpu; const char *state; };

static size_t workers_of(const char *json, struct wview *w, size_t cap)
{
    const char *p = json ? strstr(json, "\"workers\":[") : NULL;
    size_t n = 0;
    while (p && n < cap && (p = strstr(p, "\"pid\":"))) {
        w[n].pid = (pid_t)atol(p + 6);
        const char *st = strstr(p, "\"state\":\"");
        w[n].state = st && strncmp(st + 9, "draining", 8) == 0 ? "draining" : "live";
        const char *a = strstr(p, "\"accepted\":"), *c = strstr(p, "\"pinned_cpu\":");
        if (!a || !c)
            break;
        w[n].accepted = atol(a + 11);
        w[n].cpu = strncmp(c + 13, "null", 4) == 0 ? -1 : atoi(c + 13);
        p = c + 13;
        n++;
    }
    return n;
}

static pid_t worker_on(int cpu)
{
    struct wview w[16];
    size_t n = workers_of(status_json(), w, 16);
    for (size_t i = 0; i < n; i++)
        if (w[i].cpu == cpu && strcmp(w[i].state, "live") == 0)
            return w[i].pid;
    return 0;
}

static long accepted_on(int cpu)
{
    struct wview w[16];
    size_t n = workers_of(status_json(), w, 16);
    long sum = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].cpu == cpu)
            sum += w[i].accepted;
    return sum;
}

static double json_field(const char *key)
{
    return h_status_number(&srv, key);
}

static size_t live_workers(size_t want)
{
    return (size_t)(json_field("idle") + json_field("busy")) == want;
}

/* --- the configuration key -------------------------------------------------- */

static int load_text(const char *text, struct config *c, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/t.conf", srv.dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    return config_load(path, c, err, errlen);
}

Test(percpu, config_accepts_both_modes_and_a_comment_inside_listen)
{
    struct config c;
    char err[512];
    cr_assert_eq(load_text("listen { address = \"127.0.0.1:7001\" protocol = \"echo\"\n"
                           "  # accept = \"bogus\" is a comment\n"
                           "  accept = \"per-cpu\" # and so is this\n}\n"
                           "listen { address = \"127.0.0.1:7002\" protocol = \"echo\" }\n",
                           &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.nlistens, 2);
    cr_expect_eq(c.listens[0].accept, ACCEPT_PER_CPU);
    cr_expect_eq(c.listens[1].accept, ACCEPT_SHARED, "shared is the default");
    config_free(&c);
}

Test(percpu, config_rejects_bad_values_with_file_and_line)
{
    struct config c;
    char err[512];
    cr_assert_eq(load_text("workers = 2\n\n"
                           "listen { address = \"127.0.0.1:7001\" protocol = \"echo\"\n"
                           "  accept = \"per_cpu\" }\n", &c, err, sizeof err), -1);
    cr_expect(strstr(err, "t.conf:4:") && strstr(err, "accept") &&
              strstr(err, "\"shared\" or \"per-cpu\""), "%s", err);
    cr_assert_eq(load_text("listen { address = \"udp:127.0.0.1:7001\" protocol = \"echo\"\n"
                           "  accept = \"per-cpu\" }\n", &c, err, sizeof err), -1);
    cr_expect(strstr(err, "t.conf:1:") && strstr(err, "needs a TCP address"), "%s", err);
    char text[600];
    snprintf(text, sizeof text, "listen { address = \"unix:%s/u.sock\" protocol = \"echo\" "
             "accept = \"per-cpu\" }\n", srv.dir);
    cr_assert_eq(load_text(text, &c, err, sizeof err), -1);
    cr_expect(strstr(err, "a unix socket"), "%s", err);
}

/* --- serving ---------------------------------------------------------------- */

/* Connections made on CPU c go to the worker pinned to c, for each CPU. */
Test(percpu, each_cpu_socket_is_served_by_its_pinned_worker)
{
    int cpus[2];
    need_two_cpus(cpus);
    start_echo(2, "per-cpu");
    cr_expect(h_file_count(srv.log, "steered by a reuseport CBPF program") == 1,
              "the log says how connections are steered");
    for (int k = 0; k < 2; k++) {
        long before = accepted_on(cpus[k]), other = accepted_on(cpus[1 - k]);
        struct burst b = run_burst(cpus[k], 40);
        cr_assert_eq(b.failed, 0);
        /* Reports come once a second: wait for the counts to arrive. */
        cr_assert(WAIT_UNTIL(accepted_on(cpus[k]) + accepted_on(cpus[1 - k]) >=
                             before + other + 40, 5000));
        long mine = accepted_on(cpus[k]) - before;
        cr_log_info("40 connections from CPU %d: %ld accepted by its worker", cpus[k], mine);
        cr_expect_geq(mine, 30, "CPU %d's connections went elsewhere (%ld of 40)", cpus[k], mine);
    }
}

/* Two workers' pins: 0 and 1; three workers (more than CPUs): 0, 1, 0, and
 * the two on CPU 0 share its socket; one worker serves both sockets. */
Test(percpu, fewer_and_more_workers_than_cpus)
{
    int cpus[2];
    need_two_cpus(cpus);
    start_echo(1, "per-cpu");
    for (int k = 0; k < 2; k++) {
        struct burst b = run_burst(cpus[k], 10);
        cr_assert_eq(b.failed, 0, "one worker, CPU %d's socket: %d failed", cpus[k], b.failed);
        cr_log_info("1 worker, CPU %d: 10 served, %d over 1 s", cpus[k], b.slow);
    }
    cr_assert_eq(h_run(out, sizeof out, "PREFORKD_BIN=%s %s/etc/preforkctl -c %s scale 3",
                       h_bin(), h_root(), srv.conf), 0, "%s", out);
    cr_assert(WAIT_UNTIL(live_workers(3), 10000), "%s", status_json());
    struct wview w[8];
    size_t n = workers_of(status_json(), w, 8);
    int on[2] = { 0, 0 };
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++)
            on[k] += w[i].cpu == cpus[k];
    cr_expect_eq(on[0], 2, "two workers pinned to the first CPU");
    cr_expect_eq(on[1], 1);
    for (int k = 0; k < 2; k++)
        cr_assert_eq(run_burst(cpus[k], 10).failed, 0);
}

/* One allowed CPU (the master started under a one-CPU affinity): one socket
 * per listener, every worker pinned to that CPU. */
Test(percpu, one_cpu_affinity_gives_one_socket)
{
    int cpus[2];
    cr_assert_geq(allowed_cpus(cpus, 2), 1);
    cpu_set_t saved;
    sched_getaffinity(0, sizeof saved, &saved);
    pin_self(cpus[0]);
    write_echo_conf(2, "per-cpu");
    int rc = server_start(&srv, NULL);
    sched_setaffinity(0, sizeof saved, &saved);
    cr_assert_eq(rc, 0);
    const char *j = status_json();
    cr_assert(j);
    char one[64];
    snprintf(one, sizeof one, "\"queues\":[{\"cpu\":%d,\"queue\":0}]", cpus[0]);
    cr_expect(strstr(j, one), "%s", j);
    struct wview w[8];
    size_t n = workers_of(j, w, 8);
    cr_assert_eq(n, 2);
    cr_expect(w[0].cpu == cpus[0] && w[1].cpu == cpus[0]);
    cr_assert_eq(run_burst(cpus[0], 10).failed, 0);
}

/* --- no stranded connection ----------------------------------------------- */

/* A worker stopped with SIGSTOP: connections on its CPU are taken by the
 * other worker (without that, they would wait until it is continued). */
Test(percpu, stopped_worker_strands_nothing)
{
    int cpus[2];
    need_two_cpus(cpus);
    start_echo(2, "per-cpu");
    /* Served by its own worker first (its count comes with a heartbeat, a
     * second on): past the start, when the sibling also watches it. */
    cr_assert_eq(run_burst(cpus[1], 10).failed, 0);
    cr_assert(WAIT_UNTIL(json_field("accepted") >= 10, 5000));
    pid_t victim = worker_on(cpus[1]);
    cr_assert_gt(victim, 0);
    cr_assert_eq(kill(victim, SIGSTOP), 0);
    struct burst b = run_burst(cpus[1], 30);
    kill(victim, SIGCONT);
    cr_log_info("worker on CPU %d stopped: 30 connections from that CPU, %d failed, "
                "%d over 1 s, worst %lld ms", cpus[1], b.failed, b.slow, (long long)b.worst_ms);
    cr_assert_eq(b.failed, 0, "connections stranded on the stopped worker's socket");
}

/* kill -9 of the worker of CPU 1, five times, under a load from both CPUs:
 * nothing fails beyond the connections the killed workers held. */
Test(percpu, killed_worker_strands_nothing)
{
    int cpus[2];
    need_two_cpus(cpus);
    start_echo(2, "per-cpu");
    static struct cload l;
    cload_start(&l, cpus);
    int held = 0;
    for (int k = 0; k < 5; k++) {
        pid_t victim = 0;
        cr_assert(WAIT_UNTIL((victim = worker_on(cpus[1])) > 0, 10000));
        held += h_count_sockets(victim) - 2;    /* minus its two listening sockets */
        kill(victim, SIGKILL);
        cr_assert(WAIT_UNTIL(h_pid_gone(victim), 5000));
        int before = atomic_load(&l.ok);
        cr_assert(WAIT_UNTIL(atomic_load(&l.ok) > before + 20, 10000));
    }
    cload_stop(&l);
    cr_log_info("5 kills under load: %d ok, %d failed, %d over 1 s; killed workers held %d",
                l.ok, l.failed, l.slow, held);
    cr_assert_leq(l.failed, held + 5, "failures beyond what the killed workers held");
    cr_assert_eq(run_burst(cpus[1], 10).failed, 0);
}

static long master_fds(void)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/fd", (int)srv.pid);
    DIR *d = opendir(p);
    long n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n - 2;
}

/* The inodes of the master's sockets: the same set after reloads means the
 * per-CPU sockets (and their queues) were kept. */
static size_t master_socket_inodes(unsigned long *ino, size_t cap)
{
    char dir[64], path[384], link[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)srv.pid);
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < cap) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len > 0) {
            link[len] = '\0';
            if (strncmp(link, "socket:[", 8) == 0)
                ino[n++] = strtoul(link + 8, NULL, 10);
        }
    }
    if (d)
        closedir(d);
    return n;
}

static bool has_inode(const unsigned long *set, size_t n, unsigned long ino)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == ino)
            return true;
    return false;
}

/* 50 reloads (worker count alternating) under a load from both CPUs: no
 * exchange fails, the master's sockets are the same ones, no fd more. */
Test(percpu, fifty_reloads_keep_the_sockets_and_lose_nothing)
{
    int cpus[2];
    need_two_cpus(cpus);
    start_echo(2, "per-cpu");
    unsigned long first[64], last[64];
    size_t nfirst = master_socket_inodes(first, 64);
    long fds0 = master_fds();
    /* Under valgrind 50 reloads outlast the suite's timeout and starve the
     * tests running beside it (their masters miss the 15 s start): 5. */
    const int reloads = getenv("PREFORKD_VALGRIND") ? 5 : 50;
    static struct cload l;
    cload_start(&l, cpus);
    for (int r = 1; r <= reloads; r++) {
        write_echo_conf(2 + r % 2, "per-cpu");
        double before = json_field("reloads");
        kill(srv.pid, SIGHUP);
        cr_assert(WAIT_UNTIL(json_field("reloads") == before + 1, 10000), "reload %d", r);
        cr_assert(WAIT_UNTIL(json_field("draining") == 0, 10000), "reload %d: drain stuck", r);
    }
    cload_stop(&l);
    size_t nlast = master_socket_inodes(last, 64);
    long fds50 = master_fds();
    cr_log_info("%d reloads per-cpu: %d ok, %d failed, %d over 1 s; master fds %ld -> %ld",
                reloads, l.ok, l.failed, l.slow, fds0, fds50);
    cr_assert_eq(l.failed, 0);
    /* valgrind's own descriptors show in /proc too, and come and go */
    if (!getenv("PREFORKD_VALGRIND"))
        cr_assert_eq(fds50, fds0, "master descriptors grew");
    cr_assert_eq(nlast, nfirst);
    for (size_t i = 0; i < nfirst; i++)
        cr_expect(has_inode(last, nlast, first[i]), "socket %lu replaced", first[i]);
    cr_assert_eq(json_field("generation"), reloads + 1);
}

/* Scaled from two workers to one: CPU 1's socket is taken over by the one
 * left, nothing fails under load. */
Test(percpu, scale_down_strands_nothing)
{
    int cpus[2];
    need_two_cpus(cpus);
    start_echo(2, "per-cpu");
    static struct cload l;
    cload_start(&l, cpus);
    int before = atomic_load(&l.ok);
    cr_assert(WAIT_UNTIL(atomic_load(&l.ok) > before + 20, 10000));
    cr_assert_eq(kill(srv.pid, SIGTTOU), 0);
    cr_assert(WAIT_UNTIL(live_workers(1) && json_field("draining") == 0, 10000));
    before = atomic_load(&l.ok);
    cr_assert(WAIT_UNTIL(atomic_load(&l.ok) > before + 50, 20000));
    cload_stop(&l);
    cr_log_info("scale 2 -> 1 under load: %d ok, %d failed, %d over 1 s", l.ok, l.failed, l.slow);
    cr_assert_eq(l.failed, 0);
    struct burst b = run_burst(cpus[1], 10);
    cr_assert_eq(b.failed, 0);
}

/* --- status ------------------------------------------------------------------ */

Test(percpu, status_shows_mode_queues_and_pins)
{
    int cpus[2];
    need_two_cpus(cpus);
    int port2 = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" accept = \"per-cpu\" }\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port, port2);
    cr_assert_eq(server_start(&srv, NULL), 0);
    const char *j = status_json();
    cr_assert(j);
    char want[512];
    snprintf(want, sizeof want, "\"accept\":\"per-cpu\",\"queues\":[{\"cpu\":%d,\"queue\":0},"
             "{\"cpu\":%d,\"queue\":0}]", cpus[0], cpus[1]);
    cr_expect(strstr(j, want), "%s", j);
    cr_expect(strstr(j, "\"accept\":\"shared\",\"queues\":null"), "%s", j);
    struct wview w[8];
    cr_assert_eq(workers_of(j, w, 8), 2);
    cr_expect(w[0].cpu == cpus[0] && w[1].cpu == cpus[1], "pins %d %d", w[0].cpu, w[1].cpu);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    snprintf(want, sizeof want, "127.0.0.1:%d per-cpu x2 queue 0/", port);
    cr_expect(strstr(out, want), "%s", out);
}

Test(percpu, shared_listener_has_no_pins)
{
    start_echo(2, "shared");
    const char *j = status_json();
    cr_assert(j);
    cr_expect(strstr(j, "\"accept\":\"shared\",\"queues\":null"), "%s", j);
    struct wview w[8];
    cr_assert_eq(workers_of(j, w, 8), 2);
    cr_expect(w[0].cpu == -1 && w[1].cpu == -1);
}

/* A second instance on the same address fails to bind instead of joining
 * the reuseport group and taking half of the connections. */
Test(percpu, second_instance_cannot_join_the_group)
{
    start_echo(2, "per-cpu");
    struct server other;
    server_init(&other);
    server_write_conf(&other, "workers = 1\nlisten { address = \"127.0.0.1:%d\" "
                      "protocol = \"echo\" accept = \"per-cpu\" }\n", port);
    int rc = server_start(&other, NULL);
    char *said = h_read_file(other.out);
    bool refused = rc != 0 && said && strstr(said, "Address already in use");
    cr_log_info("the second instance: %s", said ? said : "(nothing)");
    free(said);
    server_cleanup(&other);
    cr_assert(refused, "the second instance started");
}

/* A reload cannot switch a kept address between modes (the sockets differ
 * in SO_REUSEPORT): it keeps the old mode and says so in the verdict. */
Test(percpu, reload_keeps_the_mode_of_a_kept_address)
{
    start_echo(2, "per-cpu");
    write_echo_conf(2, "shared");
    kill(srv.pid, SIGHUP);
    cr_assert(WAIT_UNTIL(json_field("reloads") == 1, 10000));
    const char *j = status_json();
    cr_assert(j);
    cr_expect(strstr(j, "\"accept\":\"per-cpu\""), "%s", j);
    cr_expect(strstr(j, "needs a restart"), "%s", j);
    cr_assert_eq(exchange(port, 10000), 0);
}

/* --- hot upgrade ---------------------------------------------------------- */

static pid_t pidfile_pid(void)
{
    char *t = h_read_file(srv.pidfile);
    pid_t p = t ? (pid_t)atoi(t) : 0;
    free(t);
    return p;
}

/* preforkctl upgrade under a load from both CPUs: the new master gets every
 * CPU socket back, in order (each CPU's connections still go to the worker
 * pinned there), the same sockets, and nothing fails. */
Test(percpu, upgrade_passes_every_cpu_socket_in_order)
{
    SKIP_UNDER_VALGRIND("a second master started under load");
    int cpus[2];
    need_two_cpus(cpus);
    start_echo(2, "per-cpu");
    unsigned long before[64], after[64];
    size_t nbefore = master_socket_inodes(before, 64);
    static struct cload l;
    cload_start(&l, cpus);
    pid_t old = srv.pid;
    int rc = h_run(out, sizeof out, "PREFORKD_BIN=%s %s/etc/preforkctl -c %s upgrade",
                   h_bin(), h_root(), srv.conf);
    pid_t now = pidfile_pid();
    h_remember_tree(&srv.tree, now);
    if (srv.tree.n < sizeof srv.tree.pid / sizeof srv.tree.pid[0])
        srv.tree.pid[srv.tree.n++] = now;
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_neq(now, old);
    cr_assert(WAIT_UNTIL(h_pid_gone(old), 15000), "old master still there");
    int ok = atomic_load(&l.ok);
    cr_assert(WAIT_UNTIL(atomic_load(&l.ok) > ok + 50, 10000));
    cload_stop(&l);
    srv.pid = now;
    size_t nafter = master_socket_inodes(after, 64);
    size_t kept = 0;
    for (size_t i = 0; i < nbefore; i++)
        kept += has_inode(after, nafter, before[i]);
    cr_expect_geq(kept, 2, "the new master holds the same two CPU sockets");
    const char *j = status_json();
    cr_assert(j && strstr(j, "\"accept\":\"per-cpu\",\"queues\":[{"), "%s", j ? j : "");
    cr_log_info("upgrade under per-cpu load: %d ok, %d failed, %d over 1 s", l.ok, l.failed, l.slow);
    cr_assert_eq(l.failed, 0);
    for (int k = 0; k < 2; k++) {
        long mine = accepted_on(cpus[k]), all = mine + accepted_on(cpus[1 - k]);
        cr_assert_eq(run_burst(cpus[k], 20).failed, 0);
        cr_assert(WAIT_UNTIL(accepted_on(cpus[k]) + accepted_on(cpus[1 - k]) >= all + 20, 5000));
        cr_expect_geq(accepted_on(cpus[k]) - mine, 15, "CPU %d's connections went elsewhere "
                      "after the upgrade: the sockets' order was lost", cpus[k]);
    }
    kill(now, SIGTERM);
    cr_assert(WAIT_UNTIL(h_pid_gone(now), 15000));
}
