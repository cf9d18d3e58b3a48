/* install: `make install` into a temporary DESTDIR, the installed
 * preforkctl driving the installed binary with the installed configuration
 * (start, status, reload, upgrade, stop), `make uninstall` leaving only
 * what the operator changed, and `mandoc -T lint` on the man pages.
 * Nothing here writes outside /tmp, so nothing needs root. */
#include <criterion/criterion.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;           /* pidfile, control socket and log live here */
static char destdir[64];
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
    h_adopt_orphans();              /* the daemon and an upgraded master stay ours */
    server_init(&srv);
    snprintf(destdir, sizeof destdir, "/tmp/preforkd-install-XXXXXX");
    if (!mkdtemp(destdir))
        abort();
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
    h_kill_descendants(10000);
    if (!getenv("PREFORKD_KEEP_TEST_DIRS"))
        h_run(out, sizeof out, "rm -rf '%s'", destdir);
}

TestSuite(install, .init = setup, .fini = teardown, .timeout = 120);

/* The build directory the suite runs with: make picks it from SANITIZE. */
static const char *build_dir(void)
{
    char san[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
    snprintf(san, sizeof san, "%s/build/san/preforkd", h_root());
    bool is_san = realpath(san, a) && realpath(h_bin(), b) && strcmp(a, b) == 0;
    return is_san ? "build/san" : "build";
}

/* `make TARGET PREFIX=prefix DESTDIR=destdir` in the source tree, with the
 * suite's own binary taken as up to date (-o): install copies exactly the
 * binary under test and rebuilds nothing. The outer make's MAKEFLAGS (its
 * jobserver) is not ours. */
static int make(const char *target, const char *prefix)
{
    const char *build = build_dir();
    return h_run(out, sizeof out,
                 "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C '%s' -o %s/preforkd "
                 "SANITIZE=%d %s PREFIX=%s DESTDIR='%s'", h_root(), build,
                 strcmp(build, "build") != 0, target, prefix, destdir);
}

/* DESTDIR + PREFIX + rel, in one of 8 rotating buffers: copy to keep. */
static const char *installed(const char *prefix, const char *rel)
{
    static char path[8][PATH_MAX];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, PATH_MAX, "%s%s/%s", destdir, prefix, rel);
    return p;
}

static void assert_file(const char *path, mode_t mode)
{
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0, "%s is not installed", path);
    cr_assert(S_ISREG(st.st_mode), "%s is not a regular file", path);
    cr_assert_eq(st.st_mode & 07777, mode, "%s has mode %o, not %o", path,
                 (unsigned)(st.st_mode & 07777), (unsigned)mode);
}

static bool same_file(const char *a, const char *b)
{
    char cmd_out[256];
    return h_run(cmd_out, sizeof cmd_out, "cmp -s '%s' '%s'", a, b) == 0;
}

/* Every file the install writes, with its mode. */
static const struct { const char *rel; mode_t mode; } files[] = {
    { "sbin/preforkd", 0755 },
    { "sbin/preforkctl", 0755 },
    { "etc/preforkd/preforkd.conf", 0644 },
    { "etc/preforkd/www/index.html", 0644 },
    { "etc/preforkd/www/style.css", 0644 },
    { "etc/preforkd/www/logo.png", 0644 },
    { "etc/logrotate.d/preforkd", 0644 },
    { "lib/systemd/system/preforkd.service", 0644 },
    { "lib/systemd/system/preforkd.socket", 0644 },
    { "share/man/man8/preforkd.8", 0644 },
    { "share/man/man8/preforkctl.8", 0644 },
    { "share/man/man5/preforkd.conf.5", 0644 },
};
#define NFILES (sizeof files / sizeof files[0])

static void assert_installed(const char *prefix)
{
    for (size_t i = 0; i < NFILES; i++)
        assert_file(installed(prefix, files[i].rel), files[i].mode);
}

/* Replace every FROM in *text by TO; the count. */
static int replace_all(char **text, const char *from, const char *to)
{
    int n = 0;
    for (char *at = strstr(*text, from); at; at = strstr(at, from), n++) {
        size_t head = (size_t)(at - *text), flen = strlen(from), tlen = strlen(to);
        char *grown = malloc(strlen(*text) - flen + tlen + 1);
        cr_assert(grown);
        memcpy(grown, *text, head);
        memcpy(grown + head, to, tlen);
        strcpy(grown + head + tlen, *text + head + flen);
        free(*text);
        *text = grown;
        at = *text + head + tlen;
    }
    return n;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* The installed preforkctl, as an operator runs it: nothing of the
 * suite's environment tells it which binary or file to use. */
static int ctl(const char *conf, const char *args)
{
    return h_run(out, sizeof out, "env -u PREFORKD_BIN -u PREFORKD_CONF %s -c %s %s",
                 installed("/usr/local", "sbin/preforkctl"), conf, args);
}

static int lint(const char *a, const char *b, const char *c)
{
    cr_assert_eq(access("/usr/bin/mandoc", X_OK), 0,
                 "mandoc is not installed (make test installs it)");
    return h_run(out, sizeof out, "mandoc -T lint -W warning '%s' '%s' '%s'", a, b, c);
}

Test(install, man_pages_lint_clean)
{
    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
    snprintf(a, sizeof a, "%s/etc/man/preforkd.8", h_root());
    snprintf(b, sizeof b, "%s/etc/man/preforkctl.8", h_root());
    snprintf(c, sizeof c, "%s/etc/man/preforkd.conf.5", h_root());
    int rc = lint(a, b, c);
    cr_assert_eq(rc, 0, "mandoc -T lint -W warning exit %d:\n%s", rc, out);
    cr_assert_str_empty(out, "mandoc -T lint -W warning:\n%s", out);
}

Test(install, installed_preforkctl_runs_installed_binary_then_uninstall)
{
    const char *p = "/usr/local";
    cr_assert_eq(make("install", p), 0, "make install: %s", out);
    assert_installed(p);
    char built[PATH_MAX];
    snprintf(built, sizeof built, "%s/%s/preforkd", h_root(), build_dir());
    cr_assert(same_file(built, installed(p, "sbin/preforkd")), "not the binary under test");
    char src[PATH_MAX];
    snprintf(src, sizeof src, "%s/etc/www/index.html", h_root());
    cr_assert(same_file(src, installed(p, "etc/preforkd/www/index.html")));
    char *unit = h_read_file(installed(p, "lib/systemd/system/preforkd.service"));
    cr_assert(unit && strstr(unit, "ExecStart=/usr/local/sbin/preforkd -f -c "
                                   "/usr/local/etc/preforkd/preforkd.conf\n"), "%s", unit);
    free(unit);

    /* The installed file, as shipped, keeps its run files where the unit's
     * RuntimeDirectory is; this test moves them, and the ports, to its own. */
    char conf[PATH_MAX];
    snprintf(conf, sizeof conf, "%s", installed(p, "etc/preforkd/preforkd.conf"));
    char *text = h_read_file(conf);
    cr_assert(text);
    cr_assert(strstr(text, "pidfile            = \"/run/preforkd/preforkd.pid\""), "%s", text);
    cr_assert(strstr(text, "control_socket     = \"/run/preforkd/preforkd.sock\""), "%s", text);
    int http_port = h_free_port(SOCK_STREAM), echo_port = h_free_port(SOCK_STREAM);
    char pid_q[PATH_MAX + 2], sock_q[PATH_MAX + 2], log_q[PATH_MAX + 32], http[32], echo[32];
    snprintf(pid_q, sizeof pid_q, "\"%s\"", srv.pidfile);
    snprintf(sock_q, sizeof sock_q, "\"%s\"", srv.sock);
    snprintf(log_q, sizeof log_q, "\"%s\"    # or a path", srv.log);
    snprintf(http, sizeof http, "127.0.0.1:%d", http_port);
    snprintf(echo, sizeof echo, "127.0.0.1:%d", echo_port);
    cr_assert_eq(replace_all(&text, "\"/run/preforkd/preforkd.pid\"", pid_q), 1);
    cr_assert_eq(replace_all(&text, "\"/run/preforkd/preforkd.sock\"", sock_q), 1);
    cr_assert_eq(replace_all(&text, "\"stderr\"    # or a path", log_q), 1);
    cr_assert_eq(replace_all(&text, "127.0.0.1:8080", http), 1);
    cr_assert_eq(replace_all(&text, "127.0.0.1:7007", echo), 1);
    write_file(conf, text);
    free(text);

    cr_assert_eq(ctl(conf, "start"), 0, "start: %s", out);
    pid_t pid = 0;
    cr_assert(sscanf(strstr(out, "preforkd started (pid ") ? strstr(out, "(pid ") : "",
                     "(pid %d)", &pid) == 1, "%s", out);
    cr_assert_eq(pid, pidfile_pid());
    char exe[PATH_MAX], want[PATH_MAX], link[64];
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(link, exe, sizeof exe - 1);
    cr_assert_gt(n, 0);
    exe[n] = '\0';
    cr_assert(realpath(installed(p, "sbin/preforkd"), want));
    cr_assert_str_eq(exe, want, "the master runs %s, not the installed binary", exe);

    char buf[8192];
    char *index = h_read_file(installed(p, "etc/preforkd/www/index.html"));
    const char *body = h_http_body(http_port, "GET / HTTP/1.1\r\nHost: t\r\n"
                                   "Connection: close\r\n\r\n", buf, sizeof buf, 5000);
    cr_assert(index && strcmp(body, index) == 0, "GET / answered: %s", buf);
    free(index);
    int fd = h_tcp_connect(echo_port);
    unsigned char ping[5] = "ping", back[5];
    cr_assert_eq(h_echo_exchange(fd, ping, 4, back, 4, 5000), 0, "echo");
    close(fd);

    cr_assert_eq(ctl(conf, "status"), 0, "status: %s", out);
    cr_assert(strstr(out, "generation 1"), "%s", out);
    /* The installed binary without -c, started from anywhere, reads the
     * installed configuration (it used to look for etc/preforkd.conf in the
     * current directory). */
    cr_assert_eq(h_run(out, sizeof out, "cd / && env -u PREFORKD_CONF %s show pidfile 2>&1",
                       installed(p, "sbin/preforkd")), 0, "show pidfile: %s", out);
    cr_assert(strncmp(out, srv.pidfile, strlen(srv.pidfile)) == 0, "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "cd / && env -u PREFORKD_CONF %s status 2>&1",
                       installed(p, "sbin/preforkd")), 0, "status without -c: %s", out);
    cr_assert(strstr(out, "generation 1"), "%s", out);
    char listener[64];
    snprintf(listener, sizeof listener, "http %s", http);
    cr_assert(strstr(out, listener), "%s", out);
    cr_assert_eq(ctl(conf, "reload"), 0, "reload: %s", out);
    cr_assert(strstr(out, "reload: applied, generation 2"), "%s", out);

    /* After an install, the operator's next step: the installed binary
     * starts itself again as the new master. */
    cr_assert_eq(ctl(conf, "upgrade"), 0, "upgrade: %s", out);
    pid_t old = pid;
    cr_assert(sscanf(strstr(out, "upgrade: applied, master ") ? strstr(out, "master ") : "",
                     "master %d", &pid) == 1, "%s", out);
    cr_assert_neq(pid, old);
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    n = readlink(link, exe, sizeof exe - 1);
    cr_assert_gt(n, 0);
    exe[n] = '\0';
    cr_assert_str_eq(exe, want, "the new master runs %s, not the installed binary", exe);
    cr_assert(WAIT_UNTIL(h_pid_gone(old), 10000), "the old master %d stays", (int)old);
    body = h_http_body(http_port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                       buf, sizeof buf, 5000);
    cr_assert(strstr(buf, "HTTP/1.1 200 "), "GET / after the upgrade: %s", buf);

    cr_assert_eq(ctl(conf, "stop"), 0, "stop: %s", out);
    cr_assert(strstr(out, "preforkd stopped"), "%s", out);
    cr_assert(h_pid_gone(pid));
    cr_assert_eq(ctl(conf, "status"), 3, "status after stop: %s", out);

    /* A second install keeps the changed file, the shipped one beside it. */
    char *edited = h_read_file(conf);
    cr_assert_eq(make("install", p), 0, "make install again: %s", out);
    cr_assert(strstr(out, "differs from the shipped version: kept it"), "%s", out);
    char *after = h_read_file(conf);
    cr_assert(edited && after && strcmp(edited, after) == 0, "the edited file was replaced");
    free(edited);
    free(after);
    assert_file(installed(p, "etc/preforkd/preforkd.conf.new"), 0644);

    /* Uninstall removes everything else, and says what it keeps. */
    cr_assert_eq(make("uninstall", p), 0, "make uninstall: %s", out);
    char kept[PATH_MAX + 64];
    snprintf(kept, sizeof kept, "kept %s: changed since make install", conf);
    cr_assert(strstr(out, kept), "%s", out);
    char left[4096];
    cr_assert_eq(h_run(left, sizeof left, "cd '%s' && find . ! -type d", destdir), 0);
    cr_assert_str_eq(left, "./usr/local/etc/preforkd/preforkd.conf\n",
                     "left behind besides the edited file:\n%s", left);
    cr_assert_neq(access(installed(p, "etc/preforkd/www"), F_OK), 0, "www/ stays");

    /* Once the operator's file is gone, so is preforkd's directory. */
    cr_assert_eq(unlink(conf), 0);
    cr_assert_eq(make("uninstall", p), 0, "make uninstall again: %s", out);
    cr_assert_str_empty(out, "%s", out);
    cr_assert_eq(h_run(left, sizeof left, "cd '%s' && find . -name '*preforkd*'", destdir), 0);
    cr_assert_str_empty(left, "left behind:\n%s", left);
}

/* Another PREFIX: every path in the installed text files follows it (the
 * app PATH default /usr/local/bin is the binary's, not an install path),
 * the installed man pages still lint clean, and an untouched install
 * uninstalls to nothing. */
Test(install, other_prefix_rewritten_and_uninstalled)
{
    const char *p = "/opt/preforkd";
    cr_assert_eq(make("install", p), 0, "make install: %s", out);
    assert_installed(p);
    char *unit = h_read_file(installed(p, "lib/systemd/system/preforkd.service"));
    cr_assert(unit && strstr(unit, "ExecReload=/opt/preforkd/sbin/preforkctl -c "
                                   "/opt/preforkd/etc/preforkd/preforkd.conf reload\n"),
              "%s", unit);
    free(unit);
    char *ctl_text = h_read_file(installed(p, "sbin/preforkctl"));
    cr_assert(ctl_text && strstr(ctl_text, "CONF=/opt/preforkd/etc/preforkd/preforkd.conf\n"));
    free(ctl_text);
    char *rotate = h_read_file(installed(p, "etc/logrotate.d/preforkd"));
    cr_assert(rotate && strstr(rotate, "/opt/preforkd/sbin/preforkctl -c "
                                       "/opt/preforkd/etc/preforkd/preforkd.conf reopen-logs"));
    free(rotate);
    char grep[4096];
    h_run(grep, sizeof grep, "cd '%s' && grep -rIn /usr/local/ . | grep -v "
          "'/usr/local/bin:/usr/bin:/bin'", destdir);
    cr_assert_str_empty(grep, "paths not rewritten for PREFIX=%s:\n%s", p, grep);
    char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
    snprintf(a, sizeof a, "%s", installed(p, "share/man/man8/preforkd.8"));
    snprintf(b, sizeof b, "%s", installed(p, "share/man/man8/preforkctl.8"));
    snprintf(c, sizeof c, "%s", installed(p, "share/man/man5/preforkd.conf.5"));
    cr_assert_eq(lint(a, b, c), 0, "%s", out);
    cr_assert_str_empty(out, "%s", out);

    cr_assert_eq(make("uninstall", p), 0, "make uninstall: %s", out);
    cr_assert_str_empty(out, "nothing was changed, nothing is kept: %s", out);
    char left[4096];
    cr_assert_eq(h_run(left, sizeof left, "cd '%s' && find . ! -type d", destdir), 0);
    cr_assert_str_empty(left, "left behind:\n%s", left);
    cr_assert_neq(access(installed(p, "etc/preforkd"), F_OK), 0, "etc/preforkd stays");
}
