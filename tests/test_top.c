/* `preforkd top` (issue 15): one frame on a pipe; under tmux, with load,
 * rows for every worker, a change of sort order, and q quits. */
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

/* --- preforkd top ---------------------------------------------------------- */

TestSuite(status_top, .init = setup, .fini = teardown, .timeout = 90);

static void start_top_server(int workers)
{
    start("workers = %d\nworker_timeout = 60\n"
          "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n", workers, port);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/index.html", srv.dir);
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
}

Test(status_top, one_frame_on_a_pipe)
{
    start_top_server(2);
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 2, 5000));
    cr_assert_eq(h_run(out, sizeof out, "%s top -c %s | cat", h_bin(), srv.conf), 0, "%s", out);
    cr_assert(strstr(out, "SLOT") && strstr(out, "REQ/S") && strstr(out, "P99"), "%s", out);
    char pid[32];
    for (int i = 0; i < 2; i++) {
        snprintf(pid, sizeof pid, " %d ", (int)w[i]);
        cr_assert(strstr(out, pid), "no row for %d: %s", (int)w[i], out);
    }
    cr_assert(!strstr(out, "\033["), "escape sequences on a pipe");
    server_stop(&srv, SIGTERM, 10000);
    cr_assert_eq(h_run(out, sizeof out, "%s top -c %s > /dev/null", h_bin(), srv.conf), 3,
                 "not running: exit 3");
}

static char tmux_sock[64];

static int tmux(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int tmux(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return h_run(out, sizeof out, "tmux -L %s %s", tmux_sock, cmd);
}

/* The rows in the pane, top to bottom: their SLOT column. */
static int pane_slots(int *slots, int cap)
{
    if (tmux("capture-pane -p -t top") != 0)
        return -1;
    const char *p = strstr(out, "SLOT ");
    int n = 0;
    while (p && (p = strchr(p, '\n')) && n < cap) {
        p++;
        int slot, pid;
        if (sscanf(p, "%d %d", &slot, &pid) == 2)
            slots[n++] = slot;
    }
    return n;
}

static void kill_tmux(void)
{
    char buf[256];
    h_run(buf, sizeof buf, "tmux -L %s kill-server 2>/dev/null", tmux_sock);
}

/* Under tmux with load: rows for each worker; `n` sorts by pid (a replaced
 * worker has the newest, so the order changes), `s` back by slot; q quits. */
Test(status_top, live_under_tmux)
{
    if (h_run(out, sizeof out, "command -v tmux") != 0)
        cr_assert_fail("tmux is not installed (make test installs it: apt-get install tmux)");
    start_top_server(3);
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 3, 5000));
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "idle") == 3, 5000));
    /* Slot 0's worker replaced: the highest pid is now in the first slot. */
    char json[1 << 15];
    cr_assert_eq(h_run(json, sizeof json, "%s status --json -c %s", h_bin(), srv.conf), 0);
    pid_t slot0 = (pid_t)h_json_number(strstr(json, "\"slot\":0,"), "pid");
    cr_assert_gt(slot0, 0, "%s", json);
    kill(slot0, SIGKILL);
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "restarts") == 1 &&
                         h_status_number(&srv, "idle") == 3, 5000));
    struct h_load load;
    h_load_start(&load, port, "GET / HTTP/1.0\r\n\r\n", "hello");
    snprintf(tmux_sock, sizeof tmux_sock, "pftest%d", (int)getpid());
    int rc = tmux("new-session -d -s top -x 100 -y 30 \"exec '%s' top -c '%s'\"", h_bin(), srv.conf);
    cr_assert_eq(rc, 0, "tmux: %s", out);
    int slots[16], n;
    /* Rows, and the load in them: a P99 (its unit) once heartbeats came. */
    bool shown = WAIT_UNTIL((n = pane_slots(slots, 16)) == 3 && strstr(out, "sort: slot") &&
                            (strstr(out, "us ") || strstr(out, "ms ")), 8000);
    h_load_stop(&load);
    if (!shown)
        kill_tmux();
    cr_assert(shown, "pane:\n%s", out);
    cr_assert(slots[0] == 0 && slots[1] == 1 && slots[2] == 2, "by slot: %d %d %d\n%s",
              slots[0], slots[1], slots[2], out);
    cr_assert_gt(load.ok, 0);
    tmux("send-keys -t top n");
    bool resorted = WAIT_UNTIL(pane_slots(slots, 16) == 3 && strstr(out, "sort: pid"), 3000);
    if (!resorted)
        kill_tmux();
    cr_assert(resorted, "pane:\n%s", out);
    cr_assert(slots[0] == 1 && slots[1] == 2 && slots[2] == 0, "by pid: %d %d %d\n%s",
              slots[0], slots[1], slots[2], out);
    char shot[PATH_MAX];
    snprintf(shot, sizeof shot, "%s/build/top.txt", h_root());
    FILE *f = fopen(shot, "w");
    if (f) {
        fputs(out, f);
        fclose(f);
    }
    tmux("send-keys -t top q");
    bool quit = WAIT_UNTIL(tmux("has-session -t top 2>/dev/null") != 0, 3000);
    kill_tmux();
    cr_assert(quit, "q did not quit");
}

