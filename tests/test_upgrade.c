/* Hot binary upgrade (SIGUSR2, preforkctl upgrade) against the real
 * daemon: upgrades under load lose nothing and move the pidfile and the
 * control socket to the new master; a new binary that cannot start, or a
 * configuration it rejects, leaves the old master serving, with the reason,
 * and without a descriptor more. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/log.h"
#include "server/tlsctx.h"
#include "tests/harness.h"

static struct server srv;
static int port;
static char out[1 << 16];
static char bin[PATH_MAX];          /* the binary the daemon runs: a copy */

static pid_t master_pid(void)
{
    char *t = h_read_file(srv.pidfile);
    pid_t p = t ? (pid_t)atoi(t) : 0;
    free(t);
    return p;
}

static void setup(void)
{
    h_adopt_orphans();              /* the daemon, and each new master, stay ours */
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
    /* A copy, so a test can put another "binary on disk" in its place. */
    snprintf(bin, sizeof bin, "%s/preforkd", srv.dir);
    cr_assert_eq(h_run(out, sizeof out, "cp %s %s", h_bin(), bin), 0, "%s", out);
}

/* Stop the daemon through its pidfile (valgrind reports at exit), then
 * kill whatever is left. A test that gave up during an upgrade can leave
 * an upgrade in flight: the old master's stop orphans the new one, which
 * no pidfile names; as our orphan it is our descendant, killed by pid. */
static void teardown(void)
{
    pid_t p = master_pid();
    if (p > 0) {
        kill(p, SIGINT);
        WAIT_UNTIL(h_pid_gone(p), 3000);
    }
    if (!h_kill_descendants(10000))
        fprintf(stderr, "upgrade: processes of the test outlived SIGKILL for 10 s\n");
    server_cleanup(&srv);
}

TestSuite(upgrade, .init = setup, .fini = teardown, .timeout = 120);

/* preforkctl with the build's binary (for status, signals); `start` runs
 * the copy, which is then "the binary on disk" of the daemon. */
static int ctl(const char *args)
{
    return h_run(out, sizeof out, "PREFORKD_BIN=%s %s/etc/preforkctl -c %s %s",
                 strcmp(args, "start") == 0 ? bin : h_bin(), h_root(), srv.conf, args);
}

static void start_http(void)
{
    FILE *f = fopen(strcat(strcpy(out, srv.dir), "/www/index.html"), "w");
    cr_assert(f);
    fputs("v-index\n", f);
    fclose(f);
    server_write_conf(&srv, "workers = 2\ngraceful_timeout = 5\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
                      "http { root = \"www\" }\n", port);
    cr_assert_eq(ctl("start"), 0, "%s", out);
}

static int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)); )
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

Test(upgrade, ten_upgrades_under_load_lose_nothing)
{
    SKIP_UNDER_VALGRIND("ten masters started in a row under load");
    start_http();
    struct h_load l, ka;
    h_load_start(&l, port, "GET / HTTP/1.0\r\n\r\n", "v-index");
    h_load_start(&ka, port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", "v-index");
    pid_t prev = master_pid();
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(ctl("upgrade"), 0, "upgrade %d: %s", i, out);
        pid_t now = master_pid();
        char want[64];
        snprintf(want, sizeof want, "upgrade: applied, master %d", (int)now);
        cr_assert(strstr(out, want), "%s", out);
        cr_assert_neq(now, prev);
        cr_assert(WAIT_UNTIL(h_pid_gone(prev), 10000), "old master %d still there", (int)prev);
        prev = now;
    }
    h_load_stop(&l);
    h_load_stop(&ka);
    cr_assert_eq(l.failed, 0, "connection per request: %ld of %ld failed, last: %s",
                 (long)l.failed, (long)(l.ok + l.failed), l.last_failure);
    cr_assert_eq(ka.failed, 0, "keep-alive: %ld of %ld failed, last: %s", (long)ka.failed,
                 (long)(ka.ok + ka.failed), ka.last_failure);
    cr_assert_gt(l.ok, 100);
    cr_assert_gt(ka.ok, 100);
    fprintf(stderr, "upgrade: 10 upgrades, %ld requests a connection each and %ld keep-alive "
            "(%ld connections closed by the server), 0 failed\n", (long)l.ok, (long)ka.ok,
            (long)ka.reconnects);
    cr_assert_eq(ctl("status --json"), 0, "%s", out);
    char want[96];
    snprintf(want, sizeof want, "\"master_pid\":%d", (int)prev);
    cr_assert(strstr(out, want), "status answers from the new master: %s", out);
    cr_assert(strstr(out, "\"last_upgrade\":{\"time\":"), "%s", out);
    cr_assert(strstr(out, "\"result\":\"ok\",\"message\":\"upgraded from master "), "%s", out);
}

/* The binary on disk now exits at once: the old master keeps serving. */
Test(upgrade, a_binary_that_exits_is_no_upgrade)
{
    SKIP_UNDER_VALGRIND("valgrind's /proc/self/exe is the real binary, not the replaced copy");
    start_http();
    pid_t m = master_pid();
    int fds = fd_count(m);
    struct h_load l;
    h_load_start(&l, port, "GET / HTTP/1.0\r\n\r\n", "v-index");
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", bin);
    FILE *f = fopen(tmp, "w");
    fputs("#!/bin/sh\necho 'broken build' >&2\nexit 3\n", f);
    fclose(f);
    cr_assert_eq(h_run(out, sizeof out, "chmod +x %s && mv %s %s", tmp, tmp, bin), 0);
    cr_assert_eq(ctl("upgrade"), 1, "%s", out);
    cr_assert(strstr(out, "upgrade: failed: the new master exited with status 3 before it "
                     "was ready"), "%s", out);
    cr_assert_eq(master_pid(), m);
    h_load_stop(&l);
    cr_assert_eq(l.failed, 0, "%ld failed, last: %s", (long)l.failed, l.last_failure);
    cr_assert_eq(fd_count(m), fds, "the old master holds as many descriptors as before");
    cr_assert(strstr(h_http_body(port, "GET / HTTP/1.0\r\n\r\n", out, sizeof out, 5000),
                     "v-index"));
}

/* A configuration the new master rejects: FILE:LINE in the verdict. */
Test(upgrade, a_rejected_configuration_is_no_upgrade)
{
    start_http();
    pid_t m = master_pid();
    server_write_conf(&srv, "workers = 0\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n", port);
    cr_assert_eq(ctl("upgrade"), 1, "%s", out);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "upgrade: failed: %s:5: workers:", srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    cr_assert_eq(master_pid(), m);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0, "%s", out);
    cr_assert(strstr(out, "upgrade  ") && strstr(out, ": failed: "), "%s", out);
}

/* Under systemd the old master hands MAINPID= to the new one. */
Test(upgrade, systemd_learns_the_new_main_pid)
{
    char path[PATH_MAX];
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(path, sizeof path, "%s/notify", srv.dir);
    cr_assert_lt(strlen(path), sizeof sun.sun_path);
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    start_http();
    unsetenv("NOTIFY_SOCKET");
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    char want[64], msg[512];
    snprintf(want, sizeof want, "MAINPID=%d\n", (int)master_pid());
    bool seen = false;
    int64_t end = h_now_ms() + 5000;
    while (!seen && h_now_ms() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) == 1) {
            ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
            msg[n > 0 ? n : 0] = '\0';
            seen = strstr(msg, want) != NULL;
        }
    }
    close(fd);
    cr_assert(seen, "no %s", want);
}

/* A second SIGUSR2 while a new master is still starting is refused. */
Test(upgrade, one_at_a_time)
{
    SKIP_UNDER_VALGRIND("the refusal needs the second signal within the first's 2 s");
    const char *capp = getenv("PREFORKD_CAPP") ? getenv("PREFORKD_CAPP") : "build/capp";
    server_write_conf(&srv, "workers = 1\n"
                      "app slow { command = {\"%s\"} workers = 1 ready = \"delay 2\"\n"
                      "  listen { address = \"127.0.0.1:%d\" } }\n", capp, port);
    cr_assert_eq(ctl("start"), 0, "%s", out);
    pid_t old = master_pid();
    cr_assert_eq(kill(old, SIGUSR2), 0);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "upgrade: started the new master") == 1, 5000));
    cr_assert_eq(kill(old, SIGUSR2), 0);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "upgrade refused: an upgrade is already in "
                                      "flight") == 1, 5000));
    cr_assert(WAIT_UNTIL(master_pid() != old && h_pid_gone(old), 15000), "no hand-over");
    cr_assert_eq(h_file_count(srv.log, "upgrade: started the new master"), 1);
}

/* The status listener goes to the new master with the listeners (the same
 * socket: not one /healthz request refused); the old master says 503
 * draining from the start of the upgrade; the new one says ok. */
struct healthz_poll {
    int port;
    _Atomic bool stop;
    _Atomic long ok, draining, refused, other;
};

static void *poll_healthz(void *arg)
{
    struct healthz_poll *h = arg;
    char buf[1024];
    while (!h->stop) {
        int fd = h_tcp_connect(h->port);
        if (fd < 0) {
            h->refused++;
            continue;
        }
        size_t len = 0;
        (void)!write(fd, "GET /healthz HTTP/1.0\r\n\r\n", 25);
        while (len + 1 < sizeof buf && h_read_some(fd, buf + len, sizeof buf - 1 - len,
                                                   5000, &len) == 0)
            ;
        buf[len] = '\0';
        close(fd);
        if (strncmp(buf, "HTTP/1.1 200", 12) == 0)
            h->ok++;
        else if (strncmp(buf, "HTTP/1.1 503", 12) == 0 && strstr(buf, "draining"))
            h->draining++;
        else
            h->other++;
    }
    return NULL;
}

Test(upgrade, status_listener_passes_to_the_new_master)
{
    int sport = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 1\nstatus_listen = \"127.0.0.1:%d\"\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
                      sport, port);
    cr_assert_eq(ctl("start"), 0, "%s", out);
    pid_t old = master_pid();
    struct healthz_poll h = { .port = sport };
    pthread_t t;
    pthread_create(&t, NULL, poll_healthz, &h);
    cr_assert(WAIT_UNTIL(h.ok > 0, 5000));
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    cr_assert(WAIT_UNTIL(h_pid_gone(old), 10000));
    long ok_before = h.ok;
    cr_assert(WAIT_UNTIL(h.ok > ok_before + 5, 5000), "the new master does not say ok");
    h.stop = true;
    pthread_join(t, NULL);
    cr_assert_eq(h.refused, 0, "%ld /healthz connections refused", (long)h.refused);
    cr_assert_eq(h.other, 0, "%ld odd answers", (long)h.other);
    cr_assert_geq(h_file_count(srv.log, "adopted the socket passed in LISTEN_FDS"), 1);
    char *body = (char *)h_http_body(sport, "GET /status.json HTTP/1.0\r\n\r\n", out,
                                     sizeof out, 5000);
    char want[64];
    snprintf(want, sizeof want, "\"master_pid\":%d,", (int)master_pid());
    cr_assert(strstr(body, want), "%.300s", body);
    cr_log_info("/healthz during an upgrade: %ld ok, %ld draining, 0 refused",
                (long)h.ok, (long)h.draining);
}

/* An IPv6 listener passes too: the new master used to set IPV6_V6ONLY on
 * the socket it was handed (bound already: EINVAL) and refused to start,
 * "passed socket [::1]:PORT: Invalid argument". */
Test(upgrade, ipv6_listeners_pass_to_the_new_master)
{
    FILE *f = fopen(strcat(strcpy(out, srv.dir), "/www/index.html"), "w");
    cr_assert(f);
    fputs("v6-index\n", f);
    fclose(f);
    int echo_port = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 1\ngraceful_timeout = 5\n"
                      "listen { address = \"[::1]:%d\" protocol = \"http\" }\n"
                      "listen { address = \"[::1]:%d\" protocol = \"echo\" }\n"
                      "http { root = \"www\" }\n", port, echo_port);
    cr_assert_eq(ctl("start"), 0, "%s", out);
    pid_t old = master_pid();
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    cr_assert(strstr(out, "upgrade: applied, master "), "%s", out);
    cr_assert_neq(master_pid(), old);
    cr_assert_eq(h_run(out, sizeof out, "curl -gsS --max-time 10 http://[::1]:%d/", port), 0,
                 "%s", out);
    cr_assert_str_eq(out, "v6-index\n");
}

/* --- TLS session tickets across an upgrade -------------------------------- */

/* A test CA, a localhost certificate signed by it and a site over TLS,
 * started by preforkctl with ENV ("K=V " or ""); EXTRA: more config. */
static void start_https(const char *env, const char *extra)
{
    cr_assert_eq(h_make_test_ca(srv.dir, out, sizeof out), 0, "the test CA: %s", out);
    cr_assert_eq(h_make_tls_cert(srv.dir, "server", "localhost", "DNS:localhost", out,
                                 sizeof out), 0, "the certificate: %s", out);
    cr_assert_eq(h_run(out, sizeof out, "echo v-index > '%s/www/index.html'", srv.dir), 0);
    server_write_conf(&srv, "workers = 2\ngraceful_timeout = 5\nhttp { root = \"www\" }\n"
                      "listen {\n  address = \"127.0.0.1:%d\"\n"
                      "  tls { certificate = \"server.pem\" key = \"server.key\" }\n}\n%s",
                      port, extra);
    cr_assert_eq(h_run(out, sizeof out, "%sPREFORKD_BIN=%s %s/etc/preforkctl -c %s start", env,
                       bin, h_root(), srv.conf), 0, "%s", out);
}

#define GET_CLOSE "GET /index.html HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n"

/* `openssl s_client` with ARGS (run in the test's directory); its output
 * in out. Resumed: whether it says so. */
static bool s_client(const char *args)
{
    int rc = h_run(out, sizeof out,
                   "cd '%s' && printf '%s' | timeout 20 openssl s_client -connect 127.0.0.1:%d "
                   "-CAfile ca.pem -verify_return_error -servername localhost -ign_eof %s 2>&1",
                   srv.dir, GET_CLOSE, port, args);
    cr_assert_eq(rc, 0, "s_client %s: %s", args, out);
    cr_assert(strstr(out, "v-index"), "s_client %s: %s", args, out);
    return strstr(out, "\nReused, ") != NULL;
}

/* The key name a ticket in session file FILE was sealed with (its first 16
 * bytes), as 32 hex digits. */
static void ticket_key_name(const char *file, char *hex, size_t cap)
{
    int rc = h_run(hex, cap, "openssl sess_id -in '%s/%s' -noout -text | "
                   "sed -n '/TLS session ticket:/{n;p;q}' | cut -c12-58 | tr -d ' \\n-'",
                   srv.dir, file);
    cr_assert(rc == 0 && strlen(hex) == 32, "no ticket in %s: %s", file, hex);
}

static void resume_after_upgrade(const char *version)
{
    char args[128];
    start_https("", "");
    snprintf(args, sizeof args, "%s -sess_out sess.pem", version);
    cr_assert_not(s_client(args), "a first connection is a full handshake: %s", out);
    pid_t old = master_pid();
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    cr_assert_neq(master_pid(), old);
    snprintf(args, sizeof args, "%s -sess_in sess.pem", version);
    for (int i = 0; i < 4; i++)     /* on either worker of the new master */
        cr_assert(s_client(args), "%s: connection %d after the upgrade not resumed: %s",
                  version, i + 1, out);
    cr_assert_eq(h_file_count(srv.log, "tls: session ticket keys taken over from the old "
                              "master"), 1);
}

/* A deploy must not turn every returning client into a full handshake:
 * a session saved before the upgrade resumes on the new master. */
Test(upgrade, tls12_session_resumes_after_an_upgrade)
{
    resume_after_upgrade("-tls1_2");
}

Test(upgrade, tls13_session_resumes_after_an_upgrade)
{
    resume_after_upgrade("-tls1_3");
}

/* How many of pid's descriptors are the keys' memfd. */
static int key_memfds(pid_t pid)
{
    char path[64], p[PATH_MAX], link[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)); ) {
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        ssize_t len = readlink(p, link, sizeof link - 1);
        link[len > 0 ? len : 0] = '\0';
        n += strstr(link, "memfd:preforkd-ticket-keys") != NULL;
    }
    if (d)
        closedir(d);
    return n;
}

/* The whole of file PATH (NULs and all: /proc's environ, cmdline) into
 * buf; its length. */
static size_t read_bytes(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    size_t len = f ? fread(buf, 1, cap, f) : 0;
    if (f)
        fclose(f);
    return len;
}

/* Whether file PATH holds NEEDLE (len bytes). */
static bool file_has(const char *path, const void *needle, size_t len)
{
    static char buf[1 << 20];
    size_t n = read_bytes(path, buf, sizeof buf);
    return memmem(buf, n, needle, len) != NULL;
}

/* Whether file PATH holds the key name HEX, as hex (either case) or raw. */
static bool file_has_key_name(const char *path, const char *hex)
{
    char upper[33];
    unsigned char raw[16];
    for (int i = 0; i < 32; i++)
        upper[i] = (char)(hex[i] >= 'a' ? hex[i] - 32 : hex[i]);
    upper[32] = '\0';
    for (int i = 0; i < 16; i++)
        sscanf(hex + 2 * i, "%2hhx", &raw[i]);
    return file_has(path, hex, 32) || file_has(path, upper, 32) || file_has(path, raw, 16);
}

/* The keys' memfd goes to the new master alone, which closes it before
 * it forks: none of its workers nor an app pool's program holds it; and
 * the keys are nowhere in the log, the status, the environment or argv. */
Test(upgrade, ticket_keys_reach_the_new_master_alone)
{
    const char *capp = getenv("PREFORKD_CAPP") ? getenv("PREFORKD_CAPP") : "build/capp";
    char extra[PATH_MAX + 200];
    snprintf(extra, sizeof extra, "app a { command = {\"%s\"} workers = 1\n"
             "  listen { address = \"127.0.0.1:%d\" } }\n", capp, h_free_port(SOCK_STREAM));
    start_https("", extra);
    cr_assert_not(s_client("-tls1_2 -sess_out before.pem"), "%s", out);
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    pid_t m = master_pid();
    cr_assert(s_client("-tls1_2 -sess_in before.pem"), "%s", out);
    cr_assert_not(s_client("-tls1_2 -sess_out after.pem"), "%s", out);
    cr_assert_eq(h_file_count(srv.log, "tls: session ticket keys taken over"), 1);
    char env[PATH_MAX];
    snprintf(env, sizeof env, "/proc/%d/environ", (int)m);
    cr_assert(file_has(env, "PREFORKD_UPGRADE_KEYS_FD=", 25), "no memfd was passed");
    struct h_pids tree = { .n = 0 };
    h_remember_tree(&tree, m);
    cr_assert_geq(tree.n, 3, "two workers and an app worker");
    cr_assert_eq(key_memfds(m), 0, "the new master keeps the keys' memfd open");
    bool app_seen = false;
    for (size_t i = 0; i < tree.n; i++) {
        cr_assert_eq(key_memfds(tree.pid[i]), 0, "child %d holds the keys' memfd",
                     (int)tree.pid[i]);
        char comm[64];
        snprintf(env, sizeof env, "/proc/%d/comm", (int)tree.pid[i]);
        char *c = h_read_file(env);
        snprintf(comm, sizeof comm, "%s", c ? c : "");
        free(c);
        app_seen = app_seen || strncmp(comm, "preforkd", 8) != 0;
    }
    cr_assert(app_seen, "the app pool's program was not among the new master's children");
    const char *names[] = { "before.pem", "after.pem" };
    for (int i = 0; i < 2; i++) {
        char hex[128], file[PATH_MAX];
        ticket_key_name(names[i], hex, sizeof hex);
        cr_assert_not(file_has_key_name(srv.log, hex), "a key name is in the log");
        cr_assert_not(file_has_key_name(srv.out, hex), "a key name is in the output");
        snprintf(file, sizeof file, "/proc/%d/environ", (int)m);
        cr_assert_not(file_has_key_name(file, hex), "a key name is in the environment");
        snprintf(file, sizeof file, "/proc/%d/cmdline", (int)m);
        cr_assert_not(file_has_key_name(file, hex), "a key name is in argv");
        cr_assert_eq(ctl("status --json"), 0, "%s", out);
        cr_assert(!strstr(out, hex), "a key name is in the status");
    }
}

/* Keys rotate every 3 s here. The new master goes on rotating from the
 * old one's schedule: a ticket made before the upgrade still opens right
 * after it, stops opening after about two periods, and fresh tickets
 * change keys as before. */
Test(upgrade, ticket_keys_keep_rotating_after_an_upgrade)
{
    start_https("PREFORKD_TLS_TICKET_ROTATE=3 ", "");
    int64_t made = h_now_ms();
    cr_assert_not(s_client("-tls1_2 -sess_out s0.pem"), "%s", out);
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    bool reused = s_client("-tls1_2 -sess_in s0.pem");
    /* Within a period of its making it opens, unless the machine froze. */
    if (h_now_ms() - made < 3000)
        cr_assert(reused, "not resumed right after the upgrade: %s", out);
    cr_assert_eq(h_file_count(srv.log, "tls: session ticket keys taken over"), 1);
    char name[128], last[128] = "";
    int changes = -1;
    int64_t end = h_now_ms() + 60000;
    while ((reused || changes < 2) && h_now_ms() < end) {
        reused = reused && s_client("-tls1_2 -sess_in s0.pem");
        if (!reused && h_now_ms() - made < 3000)
            cr_assert_fail("the ticket stopped opening within one period");
        s_client("-tls1_2 -sess_out fresh.pem");
        ticket_key_name("fresh.pem", name, sizeof name);
        changes += strcmp(name, last) != 0;
        strcpy(last, name);
        h_sleep_ms(200);
    }
    cr_assert_not(reused, "a 3 s ticket key still opens the ticket after 60 s");
    cr_assert_geq(changes, 2, "the new master's keys changed %d times in 60 s", changes);
}

/* --- the keys' hand-over, in the test process ----------------------------- */

TestSuite(upgrade_keys, .timeout = 30);

#define HOUR_MS 3600000

/* What the old master exports, the new one takes: the same keys, and the
 * next rotation stays where it was (not an hour from the new start). */
Test(upgrade_keys, taken_keys_keep_their_rotation_time)
{
    unsigned char blob[TLSCTX_HANDOVER_MAX], before[IPC_TLS_KEYS_SIZE], now[IPC_TLS_KEYS_SIZE];
    char path[] = "/tmp/preforkd-keys-log-XXXXXX", err[256];
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(log_open(path, LOG_LVL_INFO, err, sizeof err), 0, "%s", err);
    unsetenv("PREFORKD_TLS_TICKET_ROTATE");
    cr_assert_eq(tlsctx_keys_init(1000), 0);
    tlsctx_keys_payload(before);
    size_t len = tlsctx_keys_export(blob, sizeof blob);
    cr_assert_gt(len, 0);
    cr_assert_eq(tlsctx_keys_init(2000), 0);     /* a master's own start: new keys */
    tlsctx_keys_payload(now);
    cr_assert_neq(memcmp(before, now, sizeof now), 0);
    tlsctx_keys_take(blob, len);
    cr_assert_eq(tlsctx_keys_init(61000), 0);    /* the new master, a minute later */
    tlsctx_keys_payload(now);
    cr_assert_eq(memcmp(before, now, sizeof now), 0, "not the old master's keys");
    cr_assert_eq(tlsctx_keys_due_ms(), 1000 + HOUR_MS);
    cr_assert_not(tlsctx_keys_rotate(1000 + HOUR_MS - 1, now));
    cr_assert(tlsctx_keys_rotate(1000 + HOUR_MS, now));
    cr_assert_eq(memcmp(now + IPC_TLS_KEYS_SIZE / 2, before, IPC_TLS_KEYS_SIZE / 2), 0,
                 "the old current key is the previous one after the rotation");
    cr_assert_eq(h_file_count(path, "tls: session ticket keys taken over from the old master; "
                              "next rotation in 3540 s"), 1);
    unlink(path);
}

/* A blob of another layout (another binary's magic, length or size):
 * new keys on a fresh schedule, and one log line each time, no crash. */
Test(upgrade_keys, another_layout_means_new_keys_and_one_log_line)
{
    char path[] = "/tmp/preforkd-keys-log-XXXXXX", err[256];
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(log_open(path, LOG_LVL_INFO, err, sizeof err), 0, "%s", err);
    unsetenv("PREFORKD_TLS_TICKET_ROTATE");
    unsigned char blob[TLSCTX_HANDOVER_MAX + 8], bad[sizeof blob];
    unsigned char before[IPC_TLS_KEYS_SIZE], now[IPC_TLS_KEYS_SIZE];
    cr_assert_eq(tlsctx_keys_init(1000), 0);
    tlsctx_keys_payload(before);
    size_t len = tlsctx_keys_export(blob, sizeof blob);
    struct { const char *what; size_t at, len; } cases[] = {
        { "another magic", 0, len }, { "another length field", 8, len },
        { "cut short", sizeof blob, len - 1 }, { "longer", sizeof blob, len + 1 },
        { "the header alone", sizeof blob, 12 }, { "four bytes", sizeof blob, 4 },
        { "nothing passed", sizeof blob, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, blob, sizeof bad);
        if (cases[i].at < sizeof bad)
            bad[cases[i].at] ^= 0x20;
        tlsctx_keys_take(bad, cases[i].len);
        cr_assert_eq(tlsctx_keys_init(5000), 0, "%s", cases[i].what);
        tlsctx_keys_payload(now);
        cr_assert_neq(memcmp(before, now, sizeof now), 0, "%s: the keys were taken",
                      cases[i].what);
        cr_assert_eq(tlsctx_keys_due_ms(), 5000 + HOUR_MS, "%s", cases[i].what);
        cr_assert_eq(h_file_count(path, "new session ticket keys (returning clients make "
                                  "one full handshake)"), (int)i + 1, "%s", cases[i].what);
    }
    cr_assert_eq(h_file_count(path, "tls: the old master passed no ticket keys: new"), 1);
    cr_assert_eq(h_file_count(path, "tls: the old master's ticket keys are in another "
                              "layout: new"), 4);
    unlink(path);
}

/* SIGTERM while an upgrade is in flight: the starting new master goes too
 * (it used to be left to start and serve on, the stop lost). */
Test(upgrade, a_stop_during_an_upgrade_stops_the_new_master)
{
    SKIP_UNDER_VALGRIND("valgrind's /proc/self/exe is the real binary, not the replaced copy");
    start_http();
    pid_t m = master_pid();
    char tmp[PATH_MAX + 8], newpid[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", bin);
    snprintf(newpid, sizeof newpid, "%s/new.pid", srv.dir);
    FILE *f = fopen(tmp, "w");
    fprintf(f, "#!/bin/sh\necho $$ > '%s'\nexec sleep 1000\n", newpid);
    fclose(f);
    cr_assert_eq(h_run(out, sizeof out, "chmod +x %s && mv %s %s", tmp, tmp, bin), 0);
    cr_assert_eq(kill(m, SIGUSR2), 0);
    char *t = NULL;
    cr_assert(WAIT_UNTIL((free(t), (t = h_read_file(newpid)) && atoi(t) > 0), 10000),
              "the new master never started");
    pid_t child = (pid_t)atoi(t);
    free(t);
    cr_assert_eq(kill(m, SIGTERM), 0);
    cr_assert(WAIT_UNTIL(h_pid_gone(m), 15000), "the old master did not stop");
    cr_assert(WAIT_UNTIL(h_pid_gone(child), 10000), "the new master %d outlived the stop",
              (int)child);
}
