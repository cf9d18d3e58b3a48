/* Integration tests of app pools with tests/apps/capp, a small C program
 * run as the user's app: descriptor hygiene and each hand-off, readiness
 * over the pipe and NOTIFY_SOCKET, failed starts and deploys rolled back
 * with a verdict, deploys under load, watchdog, output capture, max_rss,
 * garbage on the notify channels, scaling, and dying with the master. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;
static int port, port2;
static char out[1 << 16];

static const char *capp(void)
{
    const char *p = getenv("PREFORKD_CAPP");
    return p ? p : "build/capp";
}

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
    port2 = h_free_port(SOCK_STREAM);
}

/* server_cleanup stops the master and whatever it started, by pid. */
static void teardown(void)
{
    server_cleanup(&srv);
}

TestSuite(app, .init = setup, .fini = teardown, .timeout = 120);

/* One app pool "web" on port (and port2 when two is set). */
static void write_app_conf(const char *command, const char *extra, bool two)
{
    char second[96] = "";
    if (two)
        snprintf(second, sizeof second, "  listen { address = \"127.0.0.1:%d\" }\n", port2);
    server_write_conf(&srv, "graceful_timeout = 5\n"
                      "app web {\n"
                      "  # a comment inside the section\n"
                      "  command = {%s}\n"
                      "  listen { address = \"127.0.0.1:%d\" }\n%s%s\n"
                      "}\n", command, port, second, extra);
}

static const char *get_body(int p, char *buf, size_t cap)
{
    return h_http_body(p, "GET / HTTP/1.0\r\n\r\n", buf, cap, 5000);
}

static int ctl(const char *args)
{
    return h_run(out, sizeof out, "%s/etc/preforkctl -c %s %s", h_root(), srv.conf, args);
}

static const char *status_json(void)
{
    if (h_run(out, sizeof out, "%s status --json -c %s 2>/dev/null", h_bin(), srv.conf) != 0)
        return "";
    return out;
}

static bool json_has(const char *needle)
{
    return strstr(status_json(), needle) != NULL;
}

/* A number of the first pool's JSON object; -1 if none. */
static double pool_number(const char *key)
{
    const char *pools = strstr(status_json(), "\"pools\":[");
    return pools ? h_json_number(pools, key) : -1;
}

/* Pids of the pool's workers in the given state, from status JSON. */
static size_t app_pids(const char *state, pid_t *pids, size_t cap)
{
    const char *p = status_json();
    size_t n = 0;
    char want[48];
    snprintf(want, sizeof want, "\"state\":\"%s\"", state);
    while ((p = strstr(p, "{\"pool\":\"web\",\"slot\":"))) {
        const char *end = strchr(p, '}');
        const char *pidp = strstr(p, "\"pid\":"), *st = strstr(p, want);
        if (pidp && pidp < end && st && st < end) {
            if (n < cap)
                pids[n] = (pid_t)atoi(pidp + 6);
            n++;
        }
        p = end ? end : p + 1;
    }
    return n;
}

static char cmdline[2 * PATH_MAX + 128];

static const char *cmd(const char *args)
{
    snprintf(cmdline, sizeof cmdline, "\"%s\"%s%s", capp(), args[0] ? ", " : "", args);
    return cmdline;
}

static void start_ok(void)
{
    cr_assert_eq(server_start(&srv, NULL), 0, "preforkd did not start: %s",
                 h_read_file(srv.log) ?: "");
    h_remember_tree(&srv.tree, srv.pid);
}

Test(app, fds_are_exactly_listeners_and_notify_pipe)
{
    write_app_conf(cmd("\"--report-fds\""), "workers = 2\nwatchdog = 30", true);
    start_ok();
    char buf[4096];
    for (int i = 0; i < 2; i++) {
        const char *body = get_body(i ? port2 : port, buf, sizeof buf);
        cr_assert(strstr(body, "fds=0,1,2,3,4,5,6, "), "the app sees other fds (6: this connection): %s", body);
        cr_assert(strstr(body, "listen_pid_ok=1 listen_fds=2 names=web:web "), "%s", body);
        cr_assert(strstr(body, "workers=2 notify_fd=5 notify_socket=yes watchdog=30000000"),
                  "%s", body);
        cr_assert(strstr(body, "worker=0") || strstr(body, "worker=1"), "%s", body);
    }
}

/* The app gets only its configured environment (and preforkd's), runs as
 * `user`, in `directory`. */
Test(app, environment_user_and_directory)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to switch users");
    /* nobody must reach the program: the checkout may sit in a directory
     * only root can enter (mktemp -d makes them 0700), so use a copy. */
    char app[PATH_MAX + 8], args[PATH_MAX + 64];
    snprintf(app, sizeof app, "%s/capp", srv.dir);
    cr_assert_eq(h_run(out, sizeof out, "cp %s %s && chmod 0755 %s %s", capp(), app, app,
                       srv.dir), 0, "%s", out);
    snprintf(args, sizeof args, "\"%s\", \"--report-fds\"", app);
    write_app_conf(args, "workers = 1\nuser = \"nobody\"\n"
                   "directory = \"/tmp\"\nenvironment = {\"A=1\"}", false);
    char *env[] = { "PREFORKD_TEST_LEAK=yes", NULL };
    cr_assert_eq(server_start(&srv, env), 0, "%s", h_read_file(srv.log) ?: "");
    h_remember_tree(&srv.tree, srv.pid);
    char buf[4096];
    const char *body = get_body(port, buf, sizeof buf);
    cr_assert(strstr(body, "uid=65534 leak=-"), "%s", body);
    pid_t pid;
    cr_assert_eq(app_pids("ready", &pid, 1), 1);
    char path[64], cwd[PATH_MAX] = "";
    snprintf(path, sizeof path, "/proc/%d/cwd", (int)pid);
    cr_assert_gt(readlink(path, cwd, sizeof cwd - 1), 0);
    cr_assert_str_eq(cwd, "/tmp");
}

/* A worker that cannot start again backs off, visibly; it recovers. */
Test(app, crash_loop_backs_off_and_recovers)
{
    char marker[PATH_MAX], args[PATH_MAX + 64];
    snprintf(marker, sizeof marker, "%s/broken", srv.dir);
    snprintf(args, sizeof args, "\"--exit-if-exists\", \"%s\"", marker);
    write_app_conf(cmd(args), "workers = 1", false);
    start_ok();
    pid_t pid;
    cr_assert(WAIT_UNTIL(app_pids("ready", &pid, 1) == 1, 5000));
    FILE *f = fopen(marker, "w");
    fclose(f);
    kill(pid, SIGKILL);
    cr_assert(WAIT_UNTIL(pool_number("crash_streak") >= 3, 10000), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "CRASH LOOP backing off"), "%s", out);
    cr_assert(strstr(out, "exit 4, "), "the last exit in the pools line: %s", out);
    cr_assert(h_file_count(srv.log, "crash loop: ") >= 2);
    unlink(marker);
    cr_assert(WAIT_UNTIL(app_pids("ready", NULL, 0) == 1, 15000), "did not recover: %s", out);
    cr_assert(WAIT_UNTIL(pool_number("crash_streak") == 0, 5000), "%s", out);
}

Test(app, argv_placeholder_and_nginx_handoff)
{
    char args[256];
    snprintf(args, sizeof args, "\"--fd\", \"{fd:127.0.0.1:%d}\", \"--report-fds\"", port);
    write_app_conf(cmd(args), "handoff = \"nginx\"\nready = \"exec\"", false);
    start_ok();
    char buf[4096];
    const char *body = get_body(port, buf, sizeof buf);
    cr_assert(strstr(body, "fds=0,1,2,3,4,5, "), "%s", body);
    cr_assert(strstr(body, "listen_fds=- "), "no LISTEN_FDS outside handoff systemd: %s", body);
    cr_assert(strstr(body, "nginx=3;"), "%s", body);
}

Test(app, ready_over_pipe_shows_in_status)
{
    write_app_conf(cmd("\"--answer\", \"one\""), "workers = 2", false);
    start_ok();
    char buf[1024];
    cr_assert_str_eq(get_body(port, buf, sizeof buf), "one\n");
    cr_assert(WAIT_UNTIL(json_has("\"state\":\"ready\"") && json_has("\"requests\":1"), 5000),
              "%s", out);
    cr_assert(json_has("\"app_status\":\"serving\""), "%s", out);
    cr_assert(json_has("\"pools\":[{\"name\":\"web\",\"workers\":2,\"generation\":1"), "%s", out);
    cr_assert(json_has("{\"protocol\":\"app\",\"pool\":\"web\""), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "POOL     SLOT  PID"), "%s", out);
    cr_assert(strstr(out, "pools    web 2 workers gen 1: ready 2"), "%s", out);
    cr_assert(strstr(out, "app:web 127.0.0.1:"), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status --prometheus -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "preforkd_app_workers{pool=\"web\",state=\"ready\"} 2"), "%s", out);
}

Test(app, ready_over_notify_socket)
{
    write_app_conf(cmd("\"--sd-notify\", \"--answer\", \"sd\""), "workers = 1\nready_timeout = 10",
                   false);
    start_ok();
    char buf[1024];
    cr_assert_str_eq(get_body(port, buf, sizeof buf), "sd\n");
    cr_assert(WAIT_UNTIL(json_has("\"app_status\":\"serving\""), 5000), "%s", out);
}

Test(app, failed_start_says_why)
{
    write_app_conf(cmd("\"--exit-at-start\", \"3\""), "workers = 1", false);
    cr_assert_neq(server_start(&srv, NULL), 0, "started although the app exits at once");
    char *log = h_read_file(srv.log);
    cr_assert(log && strstr(log, "pool web: worker 0 exited with status 3 before READY=1 "
                            "(last line: capp: failing at start on purpose (status 3))"),
              "%s", log ?: "");
    free(log);
}

/* The verdict of preforkctl reload, its exit code; the old generation
 * keeps serving untouched. */
static void expect_rollback(const char *bad_args, const char *extra, const char *why)
{
    char bad_cmd[sizeof cmdline];
    snprintf(bad_cmd, sizeof bad_cmd, "%s", cmd(bad_args));
    write_app_conf(cmd("\"--answer\", \"old\""), "workers = 2", false);
    start_ok();
    pid_t before[4];
    cr_assert(WAIT_UNTIL(app_pids("ready", before, 4) == 2, 5000));
    write_app_conf(bad_cmd, extra, false);
    cr_assert_eq(ctl("reload"), 1, "%s", out);
    cr_assert(strstr(out, "reload: rolled back: pool web: "), "%s", out);
    cr_assert(strstr(out, why), "want \"%s\" in: %s", why, out);
    char buf[1024];
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(get_body(port, buf, sizeof buf), "old\n");
    pid_t after[4];
    cr_assert(WAIT_UNTIL(app_pids("ready", after, 4) == 2 && app_pids("draining", NULL, 0) == 0 &&
                         app_pids("starting", NULL, 0) == 0, 8000), "%s", out);
    cr_assert((after[0] == before[0] && after[1] == before[1]) ||
              (after[0] == before[1] && after[1] == before[0]), "old workers were touched");
    cr_assert(json_has("\"result\":\"rolled_back\""), "%s", out);
}

Test(app, deploy_that_exits_is_rolled_back)
{
    expect_rollback("\"--exit-at-start\", \"7\"", "workers = 2",
                    "exited with status 7 before READY=1 (last line: capp: failing "
                    "at start on purpose (status 7))");
}

Test(app, deploy_that_never_says_ready_is_rolled_back)
{
    expect_rollback("\"--no-ready\"", "workers = 2\nready_timeout = 1",
                    "sent no READY=1 within ready_timeout (1s)");
}

/* --- deploys under load ------------------------------------------------- */

static void deploy_answers_under_load(const char *mode)
{
    char args[128], extra[128];
    snprintf(extra, sizeof extra, "workers = 2\nreload = \"%s\"", mode);
    snprintf(args, sizeof args, "\"--answer\", \"v0\"");
    write_app_conf(cmd(args), extra, false);
    start_ok();
    struct h_load l;
    h_load_start(&l, port, "GET / HTTP/1.0\r\n\r\n", "v");
    for (int d = 1; d <= 20; d++) {
        snprintf(args, sizeof args, "\"--answer\", \"v%d\"", d);
        write_app_conf(cmd(args), extra, false);
        int rc = ctl("reload");
        cr_assert_eq(rc, 0, "deploy %d: %s", d, out);
        cr_assert(strstr(out, "reload: applied, generation"), "%s", out);
        char want[16], buf[1024];
        snprintf(want, sizeof want, "v%d\n", d);
        for (int k = 0; k < 5; k++)
            cr_assert_str_eq(get_body(port, buf, sizeof buf), want,
                             "deploy %d: an old worker answered after the verdict", d);
    }
    h_load_stop(&l);
    cr_assert_eq(l.failed, 0, "%ld of %ld requests failed, last: %s", (long)l.failed,
                 (long)(l.ok + l.failed), l.last_failure);
    cr_assert_gt(l.ok, 100);
    fprintf(stderr, "app deploys (%s): 20 deploys, %ld requests, 0 failed\n", mode, (long)l.ok);
    cr_assert(json_has("\"generation\":21"), "%s", out);
}

Test(app, twenty_smooth_deploys_under_load_lose_nothing)
{
    SKIP_UNDER_VALGRIND("a request every few ms against 20 deploys");
    deploy_answers_under_load("smooth");
}

Test(app, twenty_fleet_deploys_under_load_lose_nothing)
{
    SKIP_UNDER_VALGRIND("a request every few ms against 20 deploys");
    deploy_answers_under_load("fleet");
}

/* --- supervision ------------------------------------------------------- */

Test(app, watchdog_replaces_a_hung_worker)
{
    write_app_conf(cmd("\"--hang-after\", \"1\""), "workers = 1\nwatchdog = 1", false);
    start_ok();
    pid_t first;
    cr_assert(WAIT_UNTIL(app_pids("ready", &first, 1) == 1, 5000));
    cr_assert(WAIT_UNTIL(app_pids("unresponsive", NULL, 0) == 1, 10000),
              "never shown unresponsive: %s", out);
    cr_assert(WAIT_UNTIL(h_pid_gone(first), 15000), "hung worker %d not killed", (int)first);
    pid_t next = 0;
    cr_assert(WAIT_UNTIL(app_pids("ready", &next, 1) == 1 && next != first, 10000));
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "unresponsive: no WATCHDOG=1") >= 1, 5000));
    cr_assert(h_file_count(srv.log, "SIGABRT") >= 1);
    cr_assert(h_file_count(srv.log, "ms after SIGABRT; SIGKILL") >= 1, "capp ignores SIGABRT");
    cr_assert_geq(pool_number("restarts"), 1, "the pool counts the restart: %s", out);
}

/* A machine stall stops master and app alike: when the master runs again
 * before the app, the app's silence during the stall is not a watchdog
 * miss (as for built-in heartbeats; status::machine_stall_kills_no_worker). */
Test(app, machine_stall_is_no_watchdog_miss)
{
    write_app_conf(cmd(""), "workers = 1\nwatchdog = 2", false);
    start_ok();
    pid_t pid;
    cr_assert(WAIT_UNTIL(app_pids("ready", &pid, 1) == 1, 5000));
    int ctl = h_unix_connect(srv.sock);     /* connected now: no wait later */
    cr_assert_geq(ctl, 0);
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    cr_assert_eq(kill(srv.pid, SIGSTOP), 0);
    h_sleep_ms(4500);               /* the stall itself: longer than the watchdog */
    cr_assert_eq(kill(srv.pid, SIGCONT), 0);
    char answer[256];               /* the master has run its loop since */
    cr_assert_eq(h_write_full(ctl, "status\n", 7), 0);
    cr_assert_eq(h_read_full(ctl, answer, 4, 5000), 0);
    close(ctl);
    cr_assert_eq(kill(pid, SIGCONT), 0);
    cr_assert(WAIT_UNTIL(pool_number("requests") >= 0 && app_pids("ready", NULL, 0) == 1, 3000));
    cr_assert(!h_pid_gone(pid), "the app was killed after the stall");
    cr_assert_eq(h_file_count(srv.log, "unresponsive"), 0);
    cr_assert_geq(h_file_count(srv.log, "master held up for"), 1);
}

Test(app, output_goes_to_the_log_and_a_flood_is_bounded)
{
    write_app_conf(cmd("\"--flood\", \"--long-line\""), "workers = 1", false);
    start_ok();
    pid_t pid;
    cr_assert(WAIT_UNTIL(app_pids("ready", &pid, 1) == 1, 5000));
    char want[128];
    snprintf(want, sizeof want, "[info] master %d: app web/0 gen 1 pid %d: capp %d starting",
             (int)srv.pid, (int)pid, (int)pid);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, want) == 1, 5000), "no %s", want);
    cr_assert_eq(h_file_count(srv.log, " [line cut]"), 2, "3000 bytes: 1024 + 1024 cut, 952 whole");
    /* The master answers while the app writes 20 MB as fast as it can. */
    for (int i = 0; i < 5; i++)
        cr_assert(h_status_number(&srv, "master_pid") == srv.pid);
    cr_assert(WAIT_UNTIL(!json_has("\"dropped_output\":0}"), 20000), "nothing dropped: %s", out);
    char buf[256];
    cr_assert_str_eq(get_body(port, buf, sizeof buf), "hello\n");
}

Test(app, max_rss_recycles_with_the_replacement_ready_first)
{
    write_app_conf(cmd("\"--grow-mb\", \"48\""), "workers = 1\nmax_rss = \"24M\"", false);
    start_ok();
    pid_t first;
    cr_assert(WAIT_UNTIL(app_pids("ready", &first, 1) >= 1, 5000));
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "is above max_rss") >= 1, 10000));
    cr_assert_eq(h_file_count(srv.log, "max_rss: enforced by sampling"), 1,
                 "the start says how max_rss is enforced here");
    cr_assert(WAIT_UNTIL(h_pid_gone(first), 15000), "over-grown worker not recycled");
    char *log = h_read_file(srv.log), want[96];
    snprintf(want, sizeof want, "pid %d: resident memory", (int)first);
    const char *above = strstr(log, want);
    cr_assert(above, "%s", log);
    /* Its replacement was ready before it was asked to stop. */
    cr_assert(strstr(above, " ready after"), "%s", above);
    free(log);
    cr_assert_eq(pool_number("restarts"), 0, "a recycle is not a restart: %s", out);
    cr_assert_geq(pool_number("recycles"), 1, "%s", out);
}

Test(app, garbage_on_notify_channels_is_ignored)
{
    write_app_conf(cmd("\"--garbage\""), "workers = 1", false);
    start_ok();
    cr_assert(WAIT_UNTIL(json_has("\"app_status\":\"after garbage\""), 5000), "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "on its notify channel, ignored") == 1, 5000));
    char buf[256];
    cr_assert_str_eq(get_body(port, buf, sizeof buf), "hello\n");
    cr_assert(json_has("\"state\":\"ready\""), "%s", out);
}

Test(app, scale_a_pool)
{
    write_app_conf(cmd(""), "workers = 1", false);
    start_ok();
    cr_assert_eq(ctl("scale 3 --pool web"), 0, "%s", out);
    cr_assert(strstr(out, "scale: pool web: 3 workers"), "%s", out);
    cr_assert(WAIT_UNTIL(app_pids("ready", NULL, 0) == 3, 5000), "%s", out);
    cr_assert_eq(ctl("scale 1 --pool web"), 0, "%s", out);
    cr_assert(WAIT_UNTIL(app_pids("ready", NULL, 0) == 1 && app_pids("draining", NULL, 0) == 0,
                         8000), "%s", out);
    cr_assert_neq(ctl("scale 2 --pool nosuch"), 0, "%s", out);
    cr_assert(strstr(out, "no running app pool \"nosuch\""), "%s", out);
}

Test(app, pool_dies_with_its_master)
{
    write_app_conf(cmd(""), "workers = 2", false);
    start_ok();
    pid_t pids[2];
    cr_assert(WAIT_UNTIL(app_pids("ready", pids, 2) == 2, 5000));
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
    for (int i = 0; i < 2; i++)
        cr_assert(WAIT_UNTIL(h_pid_gone(pids[i]), 5000), "app %d outlived the master", pids[i]);
}

Test(app, two_pools_beside_builtin_listeners)
{
    int echo_port = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 1\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n"
                      "app web { command = {\"%s\", \"--answer\", \"W\"} workers = 2\n"
                      "  listen { address = \"127.0.0.1:%d\" } }\n"
                      "app api { command = {\"%s\", \"--answer\", \"A\"} workers = 1\n"
                      "  listen { address = \"127.0.0.1:%d\" } }\n",
                      echo_port, capp(), port, capp(), port2);
    start_ok();
    char buf[256];
    cr_assert_str_eq(get_body(port, buf, sizeof buf), "W\n");
    cr_assert_str_eq(get_body(port2, buf, sizeof buf), "A\n");
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "web 2 workers gen 1") && strstr(out, "api 1 workers gen 1"), "%s", out);
    cr_assert(strstr(out, "\n-        0     "), "a built-in row: %s", out);
    int fd = h_tcp_connect(echo_port);
    unsigned char b[4] = "ping", r[4];
    cr_assert_eq(h_echo_exchange(fd, b, 4, r, 4, 5000), 0);
    close(fd);
}

/* The pid an app's shell wrote to child.PID in the test directory, or 0. */
static pid_t child_of(pid_t worker)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/child.%d", srv.dir, (int)worker);
    char *text = h_read_file(path);
    pid_t pid = text ? (pid_t)atoi(text) : 0;
    free(text);
    return pid;
}

/* A worker's own processes go with it (its process group, as systemd's
 * KillMode=mixed): here a child that ignores SIGTERM and holds the
 * listening socket, which used to outlive its killed worker and the pool,
 * accepting connections nobody would answer. */
Test(app, its_own_processes_go_with_a_worker)
{
    write_app_conf("\"/bin/sh\", \"-c\", \"(trap '' TERM; exec sleep 1000) & "
                   "echo $! > child.$$; exec sleep 1001\"", "  ready = \"exec\" workers = 1", false);
    start_ok();
    pid_t w[1], w2[1], c = 0, c2 = 0;
    cr_assert(WAIT_UNTIL(app_pids("ready", w, 1) == 1 && (c = child_of(w[0])) > 0, 5000));
    cr_assert_not(h_pid_gone(c));
    kill(w[0], SIGKILL);
    bool gone = WAIT_UNTIL(h_pid_gone(c), 10000);
    cr_assert(WAIT_UNTIL(app_pids("ready", w2, 1) == 1 && w2[0] != w[0] &&
                         (c2 = child_of(w2[0])) > 0, 10000), "no new worker");
    bool gone2 = server_stop(&srv, SIGTERM, 15000) == 0 && WAIT_UNTIL(h_pid_gone(c2), 10000);
    kill(c, SIGKILL);               /* ours either way: never left behind */
    kill(c2, SIGKILL);
    cr_assert(gone, "the child %d of killed worker %d outlived it", (int)c, (int)w[0]);
    cr_assert(gone2, "the child %d of worker %d outlived the stopped pool", (int)c2, (int)w2[0]);
}
