/* Integration tests of the control script etc/preforkctl, driven as an
 * operator would drive it, against the real binary ($PREFORKD_BIN, which
 * the script also reads) in a temporary directory. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;
static int port;
static char out[1 << 16];

static pid_t pidfile_pid(void)
{
    char *p = h_read_file(srv.pidfile);
    pid_t pid = p ? (pid_t)atoi(p) : 0;
    free(p);
    return pid;
}

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

static void teardown(void)
{
    /* A daemon is not our child: stop it by the pid it wrote. */
    pid_t pid = pidfile_pid();
    if (pid > 0 && !h_pid_gone(pid)) {
        kill(pid, SIGTERM);
        if (!WAIT_UNTIL(h_pid_gone(pid), 6000))
            kill(pid, SIGKILL);
    }
    server_cleanup(&srv);
}

TestSuite(ctl, .init = setup, .fini = teardown, .timeout = 60);

/* The configuration every test starts from, with `workers` variable. */
static void write_conf(int workers)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 3\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
                      workers, port);
}

/* Run `preforkctl -c CONF ARGS`; exit code, output in out. */
static int ctl(const char *args)
{
    return h_run(out, sizeof out, "%s/etc/preforkctl -c %s %s", h_root(), srv.conf, args);
}

static void start_ok(void)
{
    write_conf(2);
    cr_assert_eq(ctl("start"), 0, "%s", out);
}

static int echo_once(void)
{
    unsigned char msg[64], back[64];
    memset(msg, 'c', sizeof msg);
    int fd = h_tcp_connect(port);
    if (fd < 0)
        return -1;
    int rc = h_echo_exchange(fd, msg, sizeof msg, back, sizeof back, 5000);
    close(fd);
    return rc == 0 && memcmp(msg, back, sizeof msg) == 0 ? 0 : -1;
}

/* A JSON field of `preforkctl status --json`, -1 if it did not answer. */
static double json_field(const char *key)
{
    static char js[1 << 16];
    if (h_run(js, sizeof js, "%s/etc/preforkctl -c %s status --json 2>/dev/null",
              h_root(), srv.conf) != 0 || !h_json_valid(js))
        return -1;
    return h_json_number(js, key);
}

static double serving_workers(void)
{
    return json_field("workers_count") - json_field("draining");
}

Test(ctl, start_serves_at_once)
{
    start_ok();
    cr_assert(strstr(out, "started"), "%s", out);
    pid_t pid = pidfile_pid();
    cr_assert_gt(pid, 0);
    cr_assert_eq(echo_once(), 0, "echo did not answer right after start");
}

Test(ctl, start_again_says_already_running)
{
    SKIP_UNDER_VALGRIND("preforkctl identifies the master by its process name, which is valgrind's here");
    start_ok();
    pid_t pid = pidfile_pid();
    cr_assert_eq(ctl("start"), 0, "%s", out);
    cr_assert(strstr(out, "already running"), "%s", out);
    cr_assert_eq(pidfile_pid(), pid, "a second master replaced the first");
    cr_assert_eq(json_field("master_pid"), pid);
    cr_assert_eq(echo_once(), 0);
}

Test(ctl, status_table_and_json)
{
    start_ok();
    cr_assert_eq(ctl("status"), 0, "%s", out);
    cr_assert(strstr(out, "preforkd 0.1.0  master"), "%s", out);
    cr_assert(strstr(out, "SLOT  PID"), "%s", out);
    cr_assert_eq(ctl("status --json"), 0, "%s", out);
    cr_assert(h_json_valid(out), "invalid JSON: %s", out);
    cr_assert_eq(h_json_number(out, "master_pid"), pidfile_pid());
    cr_assert_eq(h_json_number(out, "workers_count"), 2);
    cr_assert_eq(ctl("status --prometheus"), 0, "%s", out);
    const char *bad = NULL;
    cr_assert(h_prometheus_valid(out, &bad), "bad exposition line: %.80s", bad);
}

Test(ctl, stop_then_status_not_running)
{
    SKIP_UNDER_VALGRIND("preforkctl identifies the master by its process name, which is valgrind's here");
    start_ok();
    pid_t pid = pidfile_pid();
    cr_assert_eq(ctl("stop"), 0, "%s", out);
    cr_assert(strstr(out, "stopped"), "%s", out);
    cr_assert(h_pid_gone(pid), "master %d still there after stop", (int)pid);
    cr_assert_eq(ctl("status"), 3, "%s", out);
    cr_assert(strstr(out, "not running"), "%s", out);
    cr_assert_eq(ctl("stop"), 0, "stopping a stopped server: %s", out);
    cr_assert(strstr(out, "not running"), "%s", out);
}

Test(ctl, stale_pidfile_detected_and_replaced)
{
    start_ok();
    pid_t pid = pidfile_pid();
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert(WAIT_UNTIL(h_pid_gone(pid), 3000));
    cr_assert_eq(ctl("status"), 1, "%s", out);
    cr_assert(strstr(out, "dead but pidfile"), "%s", out);
    /* Workers of the killed master notice and leave; the new one binds. */
    cr_assert_eq(ctl("start"), 0, "%s", out);
    pid_t now = pidfile_pid();
    cr_assert_neq(now, pid);
    cr_assert_eq(ctl("status"), 0, "%s", out);
    cr_assert_eq(echo_once(), 0);
}

Test(ctl, reload_good_file_applies)
{
    start_ok();
    write_conf(3);
    cr_assert_eq(ctl("reload"), 0, "%s", out);
    cr_assert(strstr(out, "reload: applied, generation 2"), "%s", out);
    cr_assert(WAIT_UNTIL(json_field("workers_count") == 3 && json_field("draining") == 0,
                         5000), "workers %.0f", json_field("workers_count"));
    cr_assert_eq(json_field("generation"), 2);
    cr_assert_eq(echo_once(), 0);
}

Test(ctl, reload_bad_file_rejected_old_workers_serve)
{
    start_ok();
    server_write_conf(&srv, "workers = 2\ngraceful_timeout = 3\n"
                      "worker_connections = -1\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(ctl("reload"), 1, "%s", out);
    /* server_write_conf's header is 4 lines: the bad one is line 7. */
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "%s:7: worker_connections", srv.conf);
    cr_assert(strstr(out, want), "expected '%s' in: %s", want, out);
    cr_assert(strstr(out, "rejected"), "%s", out);
    cr_assert_eq(echo_once(), 0);
    /* The file is still broken: status must still find the master. */
    cr_assert_eq(json_field("generation"), 1);
    cr_assert_eq(json_field("workers_count"), 2);
}

Test(ctl, scale_up_and_down)
{
    start_ok();
    cr_assert_eq(ctl("scale 4"), 0, "%s", out);
    cr_assert(strstr(out, "4 workers"), "%s", out);
    cr_assert(WAIT_UNTIL(serving_workers() == 4, 3000), "%.0f", serving_workers());
    cr_assert_eq(ctl("scale 1"), 0, "%s", out);
    cr_assert(WAIT_UNTIL(serving_workers() == 1, 3000), "%.0f", serving_workers());
    cr_assert(WAIT_UNTIL(json_field("workers_count") == 1, 6000), "drained workers stay");
    cr_assert_eq(echo_once(), 0);
    cr_assert_eq(ctl("scale 0"), 1, "%s", out);
    cr_assert_eq(ctl("scale many"), 1, "%s", out);
}

Test(ctl, reopen_logs_after_rename)
{
    SKIP_UNDER_VALGRIND("preforkctl identifies the master by its process name, which is valgrind's here");
    start_ok();
    char rotated[PATH_MAX + 8];
    snprintf(rotated, sizeof rotated, "%s.1", srv.log);
    cr_assert_eq(rename(srv.log, rotated), 0);
    cr_assert_eq(ctl("reopen-logs"), 0, "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "log files reopened") >= 1, 3000),
              "no new %s", srv.log);
    cr_assert_eq(ctl("scale 3"), 0, "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "worker count now 3") == 1, 3000));
    cr_assert_eq(h_file_count(rotated, "worker count now 3"), 0);
}

Test(ctl, reopen_logs_not_running)
{
    write_conf(2);
    cr_assert_eq(ctl("reopen-logs"), 1, "%s", out);
    cr_assert(strstr(out, "not running"), "%s", out);
}

Test(ctl, configtest_good_and_bad)
{
    write_conf(2);
    cr_assert_eq(ctl("configtest"), 0, "%s", out);
    cr_assert(strstr(out, "configuration OK"), "%s", out);
    write_conf(0);
    cr_assert_eq(ctl("configtest"), 1, "%s", out);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "%s:5: workers", srv.conf);
    cr_assert(strstr(out, want), "expected '%s' in: %s", want, out);
}

Test(ctl, start_fails_on_taken_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(listen(fd, 1), 0);
    write_conf(2);
    int rc = ctl("start");
    close(fd);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "Address already in use"), "%s", out);
    /* The binary may leave an empty pidfile: it names no one. */
    cr_assert_eq(pidfile_pid(), 0, "a pidfile names a process");
    cr_assert_eq(ctl("status"), 3, "%s", out);
}

Test(ctl, restart_replaces_master)
{
    SKIP_UNDER_VALGRIND("preforkctl identifies the master by its process name, which is valgrind's here");
    start_ok();
    pid_t pid = pidfile_pid();
    cr_assert_eq(ctl("restart"), 0, "%s", out);
    cr_assert(h_pid_gone(pid));
    pid_t now = pidfile_pid();
    cr_assert(now > 0 && now != pid, "pid %d then %d", (int)pid, (int)now);
    cr_assert_eq(echo_once(), 0);
}

Test(ctl, usage_and_bad_action)
{
    cr_assert_eq(h_run(out, sizeof out, "%s/etc/preforkctl -h", h_root()), 0, "%s", out);
    cr_assert(strstr(out, "usage: preforkctl"), "%s", out);
    write_conf(2);
    cr_assert_eq(ctl("frobnicate"), 1, "%s", out);
    cr_assert(strstr(out, "unknown action"), "%s", out);
}
