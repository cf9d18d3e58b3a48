/* Criterion tests for server/config.c: the shipped etc/preforkd.conf, every
 * option's checks with their exact FILE:LINE, the comment blanking that works
 * around libconfuse 3.3's line counting, and address_parse. Each test writes
 * its files into its own mkdtemp directory, removed afterwards. */
#include "server/config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ftw.h>
#include <libgen.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A listener that needs no http.root, on a kernel-chosen port. */
#define ECHO_LISTEN "listen { address = \"127.0.0.1:0\" protocol = \"echo\" }\n"

static char tmp[PATH_MAX];          /* this test's directory, canonical */
static char conf[PATH_MAX];         /* the file load_text() writes */

/* snprintf that fails the test instead of truncating. */
__attribute__((format(printf, 3, 4)))
static void print_to(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < len, "print_to: %zu bytes are too few", len);
}

static void make_tmp(void)
{
    char templ[] = "/tmp/preforkd-config-XXXXXX";

    cr_assert_not_null(mkdtemp(templ));
    cr_assert_not_null(realpath(templ, tmp));
    print_to(conf, sizeof conf, "%s/test.conf", tmp);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tmp(void)
{
    if (tmp[0])
        nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = make_tmp, .fini = remove_tmp);

/* tmp/NAME, in a static buffer. */
static const char *in_tmp(const char *name)
{
    static char path[PATH_MAX];

    print_to(path, sizeof path, "%s/%s", tmp, name);
    return path;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "we");

    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static void make_dir(const char *name)
{
    cr_assert_eq(mkdir(in_tmp(name), 0755), 0, "mkdir %s", name);
}

static int load_text(const char *text, struct config *c, char *err, size_t errlen)
{
    write_file(conf, text, strlen(text));
    return config_load(conf, c, err, errlen);
}

static void load_ok(const char *text, struct config *c)
{
    char err[1024] = "";

    cr_assert_eq(load_text(text, c, err, sizeof err), 0, "unexpected error: %s\nfor:\n%s",
                 err, text);
}

/* TEXT must fail with exactly "conf:LINE: MESSAGE" ("conf: MESSAGE" for
 * line 0) and leave the config zeroed. */
static void expect_error(const char *text, int line, const char *message)
{
    static const struct config zero;
    struct config c;
    char err[1024], want[1280];

    if (line > 0)
        print_to(want, sizeof want, "%s:%d: %s", conf, line, message);
    else
        print_to(want, sizeof want, "%s: %s", conf, message);
    cr_assert_eq(load_text(text, &c, err, sizeof err), -1, "no error for:\n%s", text);
    cr_expect_str_eq(err, want, "got  %s\nwant %s\nfor:\n%s", err, want, text);
    cr_expect_eq(memcmp(&c, &zero, sizeof c), 0, "config not zeroed after failure");
}

/* OPTION = VALUE on line 2 of an otherwise valid file must fail with
 * "conf:2: NAME: MESSAGE". */
static void expect_bad_value(const char *option, const char *value, const char *message)
{
    char text[1024];

    print_to(text, sizeof text, "workers = 2\n%s = %s\n" ECHO_LISTEN, option, value);
    expect_error(text, 2, message);
}

/* The same inside an http section, the bad value on line 3. */
static void expect_bad_http_value(const char *option, const char *value,
                                  const char *message)
{
    char text[1024];

    print_to(text, sizeof text, ECHO_LISTEN "http {\n  %s = %s\n}\n", option, value);
    expect_error(text, 3, message);
}

static long online_cpus_capped(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 1024 ? 1024 : n;
}

static in_port_t port_of(const struct address *a)
{
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
}

/* ---- the shipped file and defaults ---- */

Test(config, default_file_loads)
{
    const char *root = getenv("PREFORKD_ROOT") ? getenv("PREFORKD_ROOT") : ".";
    char path[PATH_MAX], real[PATH_MAX], want[PATH_MAX + 64], err[1024] = "";
    struct config c;

    print_to(path, sizeof path, "%s/etc/preforkd.conf", root);
    cr_assert_not_null(realpath(root, real));
    cr_assert_eq(config_load(path, &c, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(c.path, path);
    print_to(want, sizeof want, "%s/etc", real);
    cr_expect_str_eq(c.dir, want);
    cr_expect(c.workers_auto);
    cr_expect_eq(c.workers, online_cpus_capped());
    cr_expect_eq(c.worker_connections, 1024);
    cr_expect_eq(c.max_requests, 0);
    cr_expect_eq(c.worker_timeout, 30);
    cr_expect_eq(c.graceful_timeout, 30);
    cr_expect_str_eq(c.user, "");
    print_to(want, sizeof want, "%s/build/run/preforkd.pid", real);
    cr_expect_str_eq(c.pidfile, want);
    print_to(want, sizeof want, "%s/build/run/preforkd.sock", real);
    cr_expect_str_eq(c.control_socket, want);
    cr_expect_str_eq(c.error_log, "stderr");
    cr_expect_eq(c.log_level, LOG_LVL_INFO);

    cr_assert_eq(c.nlistens, 2);
    cr_expect_str_eq(c.listens[0].addr.text, "127.0.0.1:8080");
    cr_expect_eq(c.listens[0].protocol, PROTO_HTTP);
    cr_expect_eq(c.listens[0].backlog, 511);
    cr_expect_eq(c.listens[0].line, 12);
    cr_expect_eq(c.listens[0].addr.socktype, SOCK_STREAM);
    cr_expect_eq(port_of(&c.listens[0].addr), 8080);
    cr_expect_str_eq(c.listens[1].addr.text, "127.0.0.1:7007");
    cr_expect_eq(c.listens[1].protocol, PROTO_ECHO);
    cr_expect_eq(c.listens[1].backlog, 511);
    cr_expect_eq(c.listens[1].line, 17);

    print_to(want, sizeof want, "%s/etc/www", real);
    cr_expect_str_eq(c.http.root, want);
    cr_expect_str_eq(c.http.index, "index.html");
    cr_expect_str_eq(c.http.access_log, "");
    cr_expect_eq(c.http.keepalive_timeout, 5);
    cr_expect_eq(c.http.header_timeout, 10);
    cr_expect_eq(c.http.max_header_size, 8192);
    config_free(&c);
    cr_expect_null(c.listens);
    cr_expect_eq(c.nlistens, 0);
}

Test(config, minimal_file_gets_every_default)
{
    char parent[PATH_MAX], want[PATH_MAX + 64];
    struct config c;

    load_ok(ECHO_LISTEN, &c);
    print_to(parent, sizeof parent, "%s", tmp);
    dirname(parent);
    cr_expect_str_eq(c.dir, tmp);
    cr_expect(c.workers_auto);
    cr_expect_eq(c.workers, online_cpus_capped());
    cr_expect_eq(c.worker_connections, 1024);
    cr_expect_eq(c.max_requests, 0);
    cr_expect_eq(c.worker_timeout, 30);
    cr_expect_eq(c.graceful_timeout, 30);
    cr_expect_str_eq(c.user, "");
    print_to(want, sizeof want, "%s/build/run/preforkd.pid", strcmp(parent, "/") ? parent : "");
    cr_expect_str_eq(c.pidfile, want);
    cr_expect_str_eq(c.error_log, "stderr");
    cr_expect_eq(c.log_level, LOG_LVL_INFO);
    cr_expect_str_eq(c.http.root, in_tmp("www"));
    cr_expect_str_eq(c.http.index, "index.html");
    cr_expect_str_eq(c.http.access_log, "");
    cr_expect_eq(c.http.keepalive_timeout, 5);
    cr_expect_eq(c.http.header_timeout, 10);
    cr_expect_eq(c.http.max_header_size, 8192);
    cr_assert_eq(c.nlistens, 1);
    cr_expect_eq(c.listens[0].protocol, PROTO_ECHO);
    cr_expect_eq(c.listens[0].backlog, 511);
    cr_expect_eq(c.listens[0].line, 1);
    cr_expect_eq(c.listens[0].app, -1);
    cr_expect_eq(c.napps, 0);
    cr_expect_null(c.apps);
    cr_expect_eq(config_builtin_listens(&c), 1);
    config_free(&c);
}

Test(config, config_free_is_safe_on_zeroed_and_twice)
{
    struct config c;

    memset(&c, 0, sizeof c);
    config_free(&c);
    load_ok(ECHO_LISTEN, &c);
    config_free(&c);
    config_free(&c);
}

/* ---- top-level options ---- */

Test(config, workers_unquoted_and_quoted_numbers)
{
    struct config c;

    load_ok("workers = 4\n" ECHO_LISTEN, &c);
    cr_expect_eq(c.workers, 4);
    cr_expect_not(c.workers_auto);
    config_free(&c);
    load_ok("workers = \"7\"\n" ECHO_LISTEN, &c);
    cr_expect_eq(c.workers, 7);
    config_free(&c);
    load_ok("workers = 1024\n" ECHO_LISTEN, &c);
    cr_expect_eq(c.workers, 1024);
    config_free(&c);
}

Test(config, workers_auto_is_online_cpus)
{
    struct config c;

    load_ok("workers = 3\nworkers = auto\n" ECHO_LISTEN, &c);   /* last one wins */
    cr_expect(c.workers_auto);
    cr_expect_eq(c.workers, online_cpus_capped());
    config_free(&c);
    load_ok("workers = \"auto\"\n" ECHO_LISTEN, &c);
    cr_expect(c.workers_auto);
    config_free(&c);
}

Test(config, workers_out_of_range)
{
    static const char *const bad[][2] = {
        { "0", "\"0\"" }, { "1025", "\"1025\"" }, { "-1", "\"-1\"" },
        { "many", "\"many\"" }, { "4x", "\"4x\"" }, { "\"\"", "\"\"" },
        { "\" 4\"", "\" 4\"" }, { "AUTO", "\"AUTO\"" },
    };
    char message[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        print_to(message, sizeof message,
                 "workers: must be \"auto\" or between 1 and 1024, got %s", bad[i][1]);
        expect_bad_value("workers", bad[i][0], message);
    }
}

Test(config, worker_connections_range)
{
    struct config c;

    expect_bad_value("worker_connections", "0",
                     "worker_connections: must be between 1 and 1000000, got \"0\"");
    expect_bad_value("worker_connections", "1000001",
                     "worker_connections: must be between 1 and 1000000, got \"1000001\"");
    expect_bad_value("worker_connections", "1k",
                     "worker_connections: must be between 1 and 1000000, got \"1k\"");
    expect_bad_value("worker_connections", "0x10",
                     "worker_connections: must be between 1 and 1000000, got \"0x10\"");
    load_ok("worker_connections = 1000000\n" ECHO_LISTEN, &c);
    cr_expect_eq(c.worker_connections, 1000000);
    config_free(&c);
}

Test(config, max_requests_range)
{
    struct config c;

    expect_bad_value("max_requests", "-1", "max_requests: must be an integer >= 0, got \"-1\"");
    expect_bad_value("max_requests", "99999999999999999999",
                     "max_requests: must be an integer >= 0, got \"99999999999999999999\"");
    load_ok("max_requests = 5000000000\n" ECHO_LISTEN, &c);
    cr_expect_eq(c.max_requests, 5000000000L);
    config_free(&c);
}

Test(config, timeouts_range)
{
    struct config c;

    expect_bad_value("worker_timeout", "0",
                     "worker_timeout: must be between 1 and 86400, got \"0\"");
    expect_bad_value("worker_timeout", "86401",
                     "worker_timeout: must be between 1 and 86400, got \"86401\"");
    expect_bad_value("graceful_timeout", "-1",
                     "graceful_timeout: must be between 0 and 3600, got \"-1\"");
    expect_bad_value("graceful_timeout", "3601",
                     "graceful_timeout: must be between 0 and 3600, got \"3601\"");
    load_ok("worker_timeout = 1\ngraceful_timeout = 0\n" ECHO_LISTEN, &c);
    cr_expect_eq(c.worker_timeout, 1);
    cr_expect_eq(c.graceful_timeout, 0);
    config_free(&c);
}

Test(config, user_must_exist)
{
    struct config c;

    expect_bad_value("user", "\"no-such-user-preforkd\"",
                     "user: no such user \"no-such-user-preforkd\"");
    load_ok("user = root\n" ECHO_LISTEN, &c);
    cr_expect_str_eq(c.user, "root");
    config_free(&c);
}

Test(config, pidfile_resolved_against_config_dir)
{
    char parent[PATH_MAX], want[PATH_MAX + 16];
    struct config c;

    expect_bad_value("pidfile", "\"\"", "pidfile: must not be empty");
    expect_bad_value("pidfile", "\"run/\"", "pidfile: must name a file, got \"run/\"");
    load_ok("pidfile = \"run/p.pid\"\n" ECHO_LISTEN, &c);      /* run/ need not exist */
    cr_expect_str_eq(c.pidfile, in_tmp("run/p.pid"));
    config_free(&c);
    load_ok("pidfile = run//p.pid\n" ECHO_LISTEN, &c);         /* unquoted, "//" kept */
    cr_expect_str_eq(c.pidfile, in_tmp("run/p.pid"));
    config_free(&c);
    print_to(parent, sizeof parent, "%s", tmp);
    dirname(parent);
    print_to(want, sizeof want, "%s/p.pid", strcmp(parent, "/") ? parent : "");
    load_ok("pidfile = \"../p.pid\"\n" ECHO_LISTEN, &c);
    cr_expect_str_eq(c.pidfile, want);
    config_free(&c);
    make_dir("d");
    print_to(want, sizeof want, "pidfile = \"%s/d/../d/p.pid\"\n" ECHO_LISTEN, tmp);
    load_ok(want, &c);                                          /* absolute, normalised */
    cr_expect_str_eq(c.pidfile, in_tmp("d/p.pid"));
    config_free(&c);
}

Test(config, control_socket_must_fit_sun_path)
{
    char name[160], value[200], message[512];
    struct config c;
    struct sockaddr_un sun;

    memset(name, 's', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    print_to(value, sizeof value, "\"%s\"", name);
    print_to(message, sizeof message,
             "control_socket: \"%s/%s\" is longer than a unix socket path may be (%zu bytes, "
             "4 of them kept for the \".new\" a binary upgrade binds first)",
             tmp, name, sizeof sun.sun_path - 1);
    expect_bad_value("control_socket", value, message);
    /* 104 bytes fit a sun_path, but not with ".new" after them. */
    size_t room = sizeof sun.sun_path - 1 - strlen(tmp) - 1 - 2;
    memset(name, 'u', room);
    name[room] = '\0';
    print_to(value, sizeof value, "\"%s\"", name);
    print_to(message, sizeof message,
             "control_socket: \"%s/%s\" is longer than a unix socket path may be (%zu bytes, "
             "4 of them kept for the \".new\" a binary upgrade binds first)",
             tmp, name, sizeof sun.sun_path - 1);
    expect_bad_value("control_socket", value, message);
    expect_bad_value("control_socket", "\"\"", "control_socket: must not be empty");
    load_ok("control_socket = \"ctl.sock\"\n" ECHO_LISTEN, &c);
    cr_expect_str_eq(c.control_socket, in_tmp("ctl.sock"));
    config_free(&c);
}

Test(config, error_log_values)
{
    char message[PATH_MAX + 64];
    struct config c;

    load_ok("error_log = syslog\n" ECHO_LISTEN, &c);
    cr_expect_str_eq(c.error_log, "syslog");
    config_free(&c);
    print_to(message, sizeof message, "error_log: directory \"%s\" does not exist",
             in_tmp("logs"));
    expect_bad_value("error_log", "\"logs/error.log\"", message);
    expect_bad_value("error_log", "\"\"",
                     "error_log: must be \"stderr\", \"syslog\" or a file path, got \"\"");
    make_dir("logs");
    load_ok("error_log = \"logs/error.log\"\n" ECHO_LISTEN, &c);
    cr_expect_str_eq(c.error_log, in_tmp("logs/error.log"));
    config_free(&c);
}

Test(config, log_level_values)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    char text[256];
    struct config c;

    for (int l = LOG_LVL_ERROR; l <= LOG_LVL_DEBUG; l++) {
        print_to(text, sizeof text, "log_level = %s\n" ECHO_LISTEN, names[l]);
        load_ok(text, &c);
        cr_expect_eq(c.log_level, (enum log_level)l);
        cr_expect_str_eq(log_level_name(c.log_level), names[l]);
        config_free(&c);
    }
    expect_bad_value("log_level", "verbose",
                     "log_level: must be error, warn, info or debug, got \"verbose\"");
}

/* ---- listen sections ---- */

Test(config, at_least_one_listen)
{
    expect_error("workers = 2\n", 0, "listen: at least one listen section is required");
    expect_error("", 0, "listen: at least one listen section is required");
}

Test(config, listen_errors_name_option_and_line)
{
    expect_error("workers = 2\n\nlisten {\n  protocol = \"echo\"\n}\n", 3,
                 "listen: address is required");
    expect_error("listen {\n  protocol = echo\n  address = \"127.0.0.1:x\"\n}\n", 3,
                 "listen.address: bad port in \"127.0.0.1:x\"");
    expect_error("listen {\n  address = \"127.0.0.1:0\"\n  protocol = ftp\n}\n", 3,
                 "listen.protocol: must be http, echo or chat, got \"ftp\"");
    expect_error("listen {\n  address = \"127.0.0.1:0\"\n  backlog = 0\n}\n", 3,
                 "listen.backlog: must be between 1 and 65535, got \"0\"");
    expect_error(ECHO_LISTEN "listen { address = \"[::1]:0\" backlog = 65536 }\n", 2,
                 "listen.backlog: must be between 1 and 65535, got \"65536\"");
}

Test(config, listen_values_and_lines)
{
    struct config c;

    make_dir("www");
    load_ok("listen { address = \"127.0.0.1:0\" protocol = echo } listen { address = \"*:0\" }\n"
            "# listen { address = \"10.0.0.1:1\" }\n"
            "http { index = \"listen{x\" }\n"
            "listen\n{\n  address = \"unix:ctl/s.sock\"\n  protocol = chat\n  backlog = 7\n}\n",
            &c);
    cr_assert_eq(c.nlistens, 3);
    cr_expect_eq(c.listens[0].line, 1);
    cr_expect_eq(c.listens[0].protocol, PROTO_ECHO);
    cr_expect_eq(c.listens[1].line, 1);
    cr_expect_eq(c.listens[1].protocol, PROTO_HTTP);
    cr_expect_eq(c.listens[2].line, 4);
    cr_expect_eq(c.listens[2].protocol, PROTO_CHAT);
    cr_expect_eq(c.listens[2].backlog, 7);
    cr_expect_eq(c.listens[2].addr.sa.ss_family, AF_UNIX);
    cr_expect_str_eq(((struct sockaddr_un *)&c.listens[2].addr.sa)->sun_path,
                     in_tmp("ctl/s.sock"));
    cr_expect_str_eq(c.http.index, "listen{x");
    config_free(&c);
}

Test(config, udp_only_for_echo)
{
    struct config c;

    expect_error(ECHO_LISTEN "\nlisten { address = \"udp:127.0.0.1:7007\" }\n", 3,
                 "listen: protocol \"http\" needs a stream address, \"udp:127.0.0.1:7007\" "
                 "is udp (only echo speaks udp)");
    expect_error("listen {\n address = \"udp:[::1]:7007\"\n protocol = chat\n}\n", 1,
                 "listen: protocol \"chat\" needs a stream address, \"udp:[::1]:7007\" "
                 "is udp (only echo speaks udp)");
    load_ok("listen { address = \"udp:127.0.0.1:0\" protocol = echo }\n", &c);
    cr_assert_eq(c.nlistens, 1);
    cr_expect_eq(c.listens[0].addr.socktype, SOCK_DGRAM);
    config_free(&c);
}

Test(config, duplicate_listen_refused)
{
    struct config c;

    expect_error("listen { address = \"127.0.0.1:7007\" protocol = echo }\n"
                 "workers = 1\n\n"
                 "listen {\n address = \"127.0.0.1:7007\"\n protocol = chat\n}\n", 4,
                 "listen: duplicate address \"127.0.0.1:7007\" (also at line 1)");
    expect_error("listen { address = \"*:7007\" protocol = echo }\n"
                 "listen { address = \"0.0.0.0:7007\" protocol = echo }\n", 2,
                 "listen: duplicate address \"0.0.0.0:7007\" (also at line 1)");
    expect_error("listen { address = \"unix:s.sock\" protocol = echo }\n"
                 "listen { address = \"unix:t.sock\" protocol = echo }\n"
                 "listen { address = \"unix:./s.sock\" protocol = echo }\n", 3,
                 "listen: duplicate address \"unix:./s.sock\" (also at line 1)");
    /* tcp and udp on one port, and port 0 twice, are different sockets */
    load_ok("listen { address = \"127.0.0.1:7007\" protocol = echo }\n"
            "listen { address = \"udp:127.0.0.1:7007\" protocol = echo }\n"
            ECHO_LISTEN ECHO_LISTEN, &c);
    cr_expect_eq(c.nlistens, 4);
    config_free(&c);
}

/* ---- http section ---- */

Test(config, http_root_must_exist_with_http_listener)
{
    char message[PATH_MAX + 64];
    struct config c;

    print_to(message, sizeof message, "http.root: \"%s\" is not an existing directory",
             in_tmp("nowhere"));
    expect_error("http {\n  root = \"nowhere\"\n}\nlisten { address = \"127.0.0.1:0\" }\n", 2,
                 message);
    print_to(message, sizeof message, "http.root: \"%s\" is not an existing directory",
             in_tmp("www"));
    expect_error("listen { address = \"127.0.0.1:0\" }\n", 0, message);   /* default root */
    write_file(in_tmp("file"), "x", 1);
    print_to(message, sizeof message, "http.root: \"%s\" is not an existing directory",
             in_tmp("file"));
    expect_error("http { root = file }\nlisten { address = \"127.0.0.1:0\" }\n", 1, message);

    load_ok("http { root = nowhere }\n" ECHO_LISTEN, &c);     /* no http listener */
    config_free(&c);
    make_dir("site");
    load_ok("http { root = \"./site/\" }\nlisten { address = \"127.0.0.1:0\" }\n", &c);
    cr_expect_str_eq(c.http.root, in_tmp("site"));
    config_free(&c);
}

Test(config, http_option_ranges)
{
    expect_bad_http_value("index", "\"a/b.html\"",
                          "http.index: must be a file name without '/', got \"a/b.html\"");
    expect_bad_http_value("index", "\"\"", "http.index: must be a file name without '/', got \"\"");
    expect_bad_http_value("keepalive_timeout", "3601",
                          "http.keepalive_timeout: must be between 0 and 3600, got \"3601\"");
    expect_bad_http_value("keepalive_timeout", "-1",
                          "http.keepalive_timeout: must be between 0 and 3600, got \"-1\"");
    expect_bad_http_value("header_timeout", "0",
                          "http.header_timeout: must be between 1 and 3600, got \"0\"");
    expect_bad_http_value("max_header_size", "1023",
                          "http.max_header_size: must be between 1024 and 1048576, got \"1023\"");
    expect_bad_http_value("max_header_size", "1048577",
                          "http.max_header_size: must be between 1024 and 1048576, got \"1048577\"");
    expect_bad_http_value("root", "\"\"", "http.root: must not be empty");
}

Test(config, http_access_log)
{
    char message[PATH_MAX + 64];
    struct config c;

    print_to(message, sizeof message, "http.access_log: directory \"%s\" does not exist",
             in_tmp("logs"));
    expect_bad_http_value("access_log", "\"logs/access.log\"", message);
    make_dir("logs");
    load_ok(ECHO_LISTEN "http {\n access_log = \"logs/access.log\"\n"
            " keepalive_timeout = 0\n max_header_size = 1024\n}\n", &c);
    cr_expect_str_eq(c.http.access_log, in_tmp("logs/access.log"));
    cr_expect_eq(c.http.keepalive_timeout, 0);
    cr_expect_eq(c.http.max_header_size, 1024);
    config_free(&c);
}

/* ---- libconfuse's own errors ---- */

Test(config, unknown_options)
{
    expect_error("workers = 2\n\nbogus = 1\n" ECHO_LISTEN, 3, "no such option 'bogus'");
    expect_error(ECHO_LISTEN "http {\n  root = www\n  rooot = www\n}\n", 4,
                 "no such option 'rooot'");
    expect_error("listen {\n address = \"127.0.0.1:0\"\n port = 80\n}\n", 3,
                 "no such option 'port'");
    expect_error(ECHO_LISTEN "server {\n}\n", 2, "no such option 'server'");
}

Test(config, syntax_errors)
{
    expect_error("workers = 2\nworker_connections 10\n" ECHO_LISTEN, 2,
                 "missing equal sign after option 'worker_connections'");
    expect_error(ECHO_LISTEN "}\n", 2, "unexpected closing brace");
    expect_error(ECHO_LISTEN "listen = \"x\"\n", 2, "missing opening brace for section 'listen'");
    expect_error(ECHO_LISTEN "\nworkers =\n", 3, "premature end of file");
    expect_error("workers = 2\n" ECHO_LISTEN "user = \"root\n\n", 3, "unterminated string");
    expect_error("workers = 2\n" ECHO_LISTEN "user = 'root\\'\n", 3, "unterminated string");
}

Test(config, first_error_wins)
{
    expect_error("workers = 0\nworker_connections = 0\nbogus = 1\n", 1,
                 "workers: must be \"auto\" or between 1 and 1024, got \"0\"");
}

/* ---- the comment workaround (libconfuse 3.3 adds phantom lines) ---- */

Test(config, comments_keep_line_numbers)
{
    expect_error("# hash comment\n"
                 "## another, with \"quotes\" and 'more\n"
                 "// slash comment\n"
                 "/* block\n"
                 "   spanning # several\n"
                 "   lines // */\n"
                 "workers = 2   # trailing hash\n"
                 "/* one-line block */ log_level = debug // trailing slashes\n"
                 "#\n"
                 "worker_connections = 0\n" ECHO_LISTEN,
                 10, "worker_connections: must be between 1 and 1000000, got \"0\"");
}

Test(config, comments_inside_sections_keep_line_numbers)
{
    expect_error("# 1\n# 2\n// 3\n"
                 "listen {   # 4\n"
                 "  /* 5\n     6 */\n"
                 "  address = \"127.0.0.1:0\"  // 7\n"
                 "  # 8\n"
                 "  protocol = echo /* 9 */\n"
                 "}\n"
                 "http {\n"
                 "  // 12\n"
                 "  /**/ /***/ #13\n"
                 "  header_timeout = 0\n"
                 "}\n",
                 14, "http.header_timeout: must be between 1 and 3600, got \"0\"");
    expect_error("# 1\n/* 2\n 3 */\n\nlisten {\n # 6\n protocol = echo\n}\n", 5,
                 "listen: address is required");
}

/* The same text, valid and then with an error after it: the quoted '#',
 * '//' and slash-star must reach libconfuse untouched and not shift lines. */
#define MARKERS_IN_STRINGS \
    "# comment\n" \
    "http {\n" \
    "  index = \"q\\\"#x.html\"   # escaped quote, then a real comment\n" \
    "  access_log = \"d#1//access#.log\"\n" \
    "}\n" \
    "error_log = 'd#1/err\\'#.log' // single quotes, escaped quote\n" \
    "pidfile = \"/*run*/x.pid\"\n" \
    "control_socket = \"#s/*.sock\" /* block */\n" \
    "user = root#comment right after a word\n" \
    ECHO_LISTEN

Test(config, comment_markers_inside_strings_survive)
{
    struct config c;

    make_dir("d#1");
    load_ok(MARKERS_IN_STRINGS, &c);
    cr_expect_str_eq(c.http.index, "q\"#x.html");
    cr_expect_str_eq(c.http.access_log, in_tmp("d#1/access#.log"));
    cr_expect_str_eq(c.error_log, in_tmp("d#1/err'#.log"));
    cr_expect_str_eq(c.pidfile, "/*run*/x.pid");
    cr_expect_str_eq(c.control_socket, in_tmp("#s/*.sock"));
    cr_expect_str_eq(c.user, "root");
    config_free(&c);
    expect_error(MARKERS_IN_STRINGS "\nmax_requests = -5\n", 12,
                 "max_requests: must be an integer >= 0, got \"-5\"");
}

Test(config, unterminated_comment)
{
    expect_error("workers = 2\n# fine\n/* never\nclosed\n" ECHO_LISTEN, 3,
                 "unterminated /* comment");
}

/* ---- the file itself ---- */

Test(config, path_as_given_in_messages)
{
    char want[PATH_MAX + 32], err[1024];
    struct config c;
    const char *bad = "workers = 2\nworkers = 0\n";

    make_dir("sub");
    write_file(in_tmp("sub/x.conf"), bad, strlen(bad));
    cr_assert_eq(chdir(tmp), 0);
    cr_assert_eq(config_load("sub/x.conf", &c, err, sizeof err), -1);
    cr_expect_str_eq(err, "sub/x.conf:2: workers: must be \"auto\" or between 1 and 1024, "
                     "got \"0\"");
    write_file(in_tmp("sub/x.conf"), ECHO_LISTEN, strlen(ECHO_LISTEN));
    cr_assert_eq(config_load("sub/x.conf", &c, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(c.path, "sub/x.conf");
    cr_expect_str_eq(c.dir, in_tmp("sub"));
    print_to(want, sizeof want, "%s/build/run/preforkd.sock", tmp);
    cr_expect_str_eq(c.control_socket, want);
    config_free(&c);
    cr_assert_eq(chdir("sub"), 0);
    cr_assert_eq(config_load("x.conf", &c, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(c.dir, in_tmp("sub"));
    config_free(&c);
}

Test(config, unreadable_files)
{
    char want[PATH_MAX + 64], err[1024];
    struct config c;
    static const char with_nul[] = "workers = 2\nuser\0 = root\n";
    char *big;

    print_to(want, sizeof want, "%s: cannot open: No such file or directory", in_tmp("none"));
    cr_expect_eq(config_load(in_tmp("none"), &c, err, sizeof err), -1);
    cr_expect_str_eq(err, want);
    print_to(want, sizeof want, "%s: not a regular file", tmp);
    cr_expect_eq(config_load(tmp, &c, err, sizeof err), -1);
    cr_expect_str_eq(err, want);
    write_file(conf, with_nul, sizeof with_nul - 1);
    print_to(want, sizeof want, "%s:2: NUL byte in the file", conf);
    cr_expect_eq(config_load(conf, &c, err, sizeof err), -1);
    cr_expect_str_eq(err, want);
    big = malloc((1 << 20) + 1);
    cr_assert_not_null(big);
    memset(big, ' ', (1 << 20) + 1);
    write_file(conf, big, (1 << 20) + 1);
    free(big);
    print_to(want, sizeof want, "%s: larger than 1048576 bytes", conf);
    cr_expect_eq(config_load(conf, &c, err, sizeof err), -1);
    cr_expect_str_eq(err, want);
}

Test(config, failure_leaves_config_zeroed)
{
    static const struct config zero;
    struct config c;
    char err[1024];

    memset(&c, 0xa5, sizeof c);
    cr_assert_eq(load_text(ECHO_LISTEN ECHO_LISTEN "bogus = 1\n", &c, err, sizeof err), -1);
    cr_expect_eq(memcmp(&c, &zero, sizeof c), 0);
    config_free(&c);
}

/* ---- app sections ---- */

/* The smallest valid app: a command and one listener (a kernel-chosen port). */
#define APP_CMD "  command = {\"/bin/true\"}\n"
#define APP_LISTEN "  listen { address = \"127.0.0.1:0\" }\n"
#define MIN_APP "app web {\n" APP_CMD APP_LISTEN "}\n"

/* OPTION = VALUE on line 3, inside an otherwise valid app section. */
static void expect_bad_app_value(const char *option, const char *value, const char *message)
{
    char text[1024];

    print_to(text, sizeof text, "app web {\n" APP_CMD "  %s = %s\n" APP_LISTEN "}\n",
             option, value);
    expect_error(text, 3, message);
}

/* Line 2 of an app section: a list option. */
static void expect_bad_app_list(const char *option, const char *list, const char *message)
{
    char text[1024];

    print_to(text, sizeof text, "app web {\n  %s = %s\n" APP_CMD APP_LISTEN "}\n",
             option, list);
    expect_error(text, 2, message);
}

static void expect_str_list(char **got, size_t n, const char *const *want, size_t nwant)
{
    cr_assert_eq(n, nwant);
    cr_assert_not_null(got);
    for (size_t i = 0; i < n; i++)
        cr_expect_str_eq(got[i], want[i], "word %zu", i);
    cr_expect_null(got[n], "not NULL-ended");
}

Test(config, app_every_key)
{
    static const char *const argv[] = {
        "/usr/bin/gunicorn", "-w", "1", "--bind=fd://{fd}", "{fd:127.0.0.1:8000}x",
        "{fd:unix:app.sock}", "{not a placeholder}",
    };
    static const char *const env[] = { "A=1", "_B2=x=y", "EMPTY=", "PATH=/bin" };
    struct config c;
    const struct app_conf *a;

    make_dir("approot");
    load_ok("workers = 3\n"
            "app web-1_X {\n"
            "  command = {\"/usr/bin/gunicorn\", \"-w\", \"1\", \"--bind=fd://{fd}\",\n"
            "             \"{fd:127.0.0.1:8000}x\", \"{fd:unix:app.sock}\",\n"
            "             \"{not a placeholder}\"}\n"
            "  workers       = 5\n"
            "  listen { address = \"127.0.0.1:8000\"  backlog = 7 }\n"
            "  listen {\n    address = \"unix:app.sock\"\n  }\n"
            "  directory     = \"approot/\"\n"
            "  environment   = {\"A=1\", \"_B2=x=y\", \"EMPTY=\", \"PATH=/bin\"}\n"
            "  user          = root\n"
            "  handoff       = \"server_starter\"\n"
            "  ready         = \"delay 1.5\"\n"
            "  ready_timeout = 3600\n"
            "  watchdog      = 10\n"
            "  stop_signal   = \"SIGQUIT\"\n"
            "  reload        = fleet\n"
            "  max_rss       = \"256M\"\n"
            "}\n", &c);
    cr_expect_eq(c.workers, 3);
    cr_assert_eq(c.napps, 1);
    a = &c.apps[0];
    cr_expect_str_eq(a->name, "web-1_X");
    cr_expect_eq(a->line, 2);
    expect_str_list(a->command, a->ncommand, argv, sizeof argv / sizeof argv[0]);
    cr_expect_eq(a->workers, 5);
    cr_expect_not(a->workers_auto);
    cr_expect_str_eq(a->directory, in_tmp("approot"));
    expect_str_list(a->environment, a->nenvironment, env, sizeof env / sizeof env[0]);
    cr_expect_str_eq(a->user, "root");
    cr_expect_eq(a->handoff, HANDOFF_SERVER_STARTER);
    cr_expect_eq(a->ready, READY_DELAY);
    cr_expect_eq(a->ready_delay_ms, 1500);
    cr_expect_eq(a->ready_timeout, 3600);
    cr_expect_eq(a->watchdog, 10);
    cr_expect_eq(a->stop_signal, SIGQUIT);
    cr_expect_eq(a->reload, RELOAD_FLEET);
    cr_expect_eq(a->max_rss, 256ULL << 20);

    cr_assert_eq(c.nlistens, 2);
    cr_expect_eq(config_builtin_listens(&c), 0);
    cr_expect_str_eq(c.listens[0].addr.text, "127.0.0.1:8000");
    cr_expect_eq(c.listens[0].protocol, PROTO_APP);
    cr_expect_eq(c.listens[0].app, 0);
    cr_expect_eq(c.listens[0].backlog, 7);
    cr_expect_eq(c.listens[0].line, 7);
    cr_expect_eq(port_of(&c.listens[0].addr), 8000);
    cr_expect_eq(c.listens[1].addr.sa.ss_family, AF_UNIX);
    cr_expect_str_eq(((struct sockaddr_un *)&c.listens[1].addr.sa)->sun_path,
                     in_tmp("app.sock"));
    cr_expect_eq(c.listens[1].app, 0);
    cr_expect_eq(c.listens[1].backlog, 511);
    cr_expect_eq(c.listens[1].line, 8);
    config_free(&c);
    cr_expect_null(c.apps);
    cr_expect_eq(c.napps, 0);
}

Test(config, app_defaults)
{
    struct config c;
    const struct app_conf *a;

    load_ok("\n" MIN_APP, &c);
    cr_assert_eq(c.napps, 1);
    a = &c.apps[0];
    cr_expect_eq(a->line, 2);
    cr_expect_eq(a->ncommand, 1);
    cr_expect_str_eq(a->command[0], "/bin/true");
    cr_expect_null(a->command[1]);
    cr_expect_eq(a->workers, (int)sysconf(_SC_NPROCESSORS_ONLN), "auto, as top-level workers");
    cr_expect(a->workers_auto);
    cr_expect_str_eq(a->directory, tmp);
    cr_expect_null(a->environment);
    cr_expect_eq(a->nenvironment, 0);
    cr_expect_str_eq(a->user, "");
    cr_expect_eq(a->handoff, HANDOFF_SYSTEMD);
    cr_expect_eq(a->ready, READY_NOTIFY);
    cr_expect_eq(a->ready_timeout, 30);
    cr_expect_eq(a->watchdog, 0);
    cr_expect_eq(a->stop_signal, SIGTERM);
    cr_expect_eq(a->reload, RELOAD_SMOOTH);
    cr_expect_eq(a->max_rss, 0);
    cr_expect(c.workers_auto);              /* the built-in pool's own default */
    config_free(&c);
}

Test(config, app_workers_auto_is_the_apps_own)
{
    struct config c;

    load_ok("workers = 4\napp web {\n" APP_CMD "  workers = auto\n" APP_LISTEN "}\n", &c);
    cr_expect_eq(c.workers, 4);
    cr_expect_not(c.workers_auto);
    cr_expect(c.apps[0].workers_auto);
    cr_expect_eq(c.apps[0].workers, online_cpus_capped());
    config_free(&c);
}

/* Listeners in file order, each knowing its pool; the built-in ones -1. */
Test(config, two_pools_and_builtin_listeners)
{
    struct config c;
    static const struct { const char *addr; enum proto_kind p; int app, line; } want[] = {
        { "127.0.0.1:7100", PROTO_ECHO, -1, 1 },
        { "127.0.0.1:7101", PROTO_APP, 0, 4 },
        { "udp:127.0.0.1:7102", PROTO_APP, 0, 5 },
        { "127.0.0.1:7103", PROTO_CHAT, -1, 7 },
        { "127.0.0.1:7104", PROTO_APP, 1, 9 },
    };

    load_ok("listen { address = \"127.0.0.1:7100\" protocol = echo }\n"
            "app one {\n"
            "  command = {\"/bin/one\"}\n"
            "  listen { address = \"127.0.0.1:7101\" }\n"
            "  listen { address = \"udp:127.0.0.1:7102\" }\n"
            "}\n"
            "listen { address = \"127.0.0.1:7103\" protocol = chat }\n"
            "app two {\n"
            "  listen { address = \"127.0.0.1:7104\" }  command = \"/bin/two\"\n"
            "}\n", &c);
    cr_assert_eq(c.nlistens, 5);
    for (size_t i = 0; i < 5; i++) {
        cr_expect_str_eq(c.listens[i].addr.text, want[i].addr, "listener %zu", i);
        cr_expect_eq(c.listens[i].protocol, want[i].p, "listener %zu", i);
        cr_expect_eq(c.listens[i].app, want[i].app, "listener %zu", i);
        cr_expect_eq(c.listens[i].line, want[i].line, "listener %zu", i);
    }
    cr_expect_eq(c.listens[2].addr.socktype, SOCK_DGRAM);
    cr_expect_eq(config_builtin_listens(&c), 2);
    cr_assert_eq(c.napps, 2);
    cr_expect_str_eq(c.apps[0].name, "one");
    cr_expect_eq(c.apps[0].line, 2);
    cr_expect_str_eq(c.apps[1].name, "two");
    cr_expect_eq(c.apps[1].line, 8);
    cr_expect_str_eq(c.apps[1].command[0], "/bin/two");
    config_free(&c);
}

/* No built-in listener: no http.root needed ("www" does not exist here). */
Test(config, app_only_config)
{
    struct config c;

    load_ok(MIN_APP, &c);
    cr_expect_eq(c.nlistens, 1);
    cr_expect_eq(c.napps, 1);
    cr_expect_eq(config_builtin_listens(&c), 0);
    config_free(&c);
    expect_error("app web {\n" APP_CMD "}\n", 1,
                 "app web: at least one listen section is required");
}

Test(config, app_section_errors)
{
    expect_error("workers = 2\n\napp web {\n" APP_LISTEN "}\n", 3,
                 "app web: command is required");
    expect_error("app web {\n  command = {}\n" APP_LISTEN "}\n", 1,
                 "app web: command is required");
    expect_error(ECHO_LISTEN "app web {\n}\n", 2, "app web: command is required");
    expect_error("app \"a b\" {\n" APP_CMD APP_LISTEN "}\n", 1,
                 "app \"a b\": a name is 1 to 32 characters from A-Z a-z 0-9 _ -");
    expect_error("\napp \"\" {\n" APP_CMD APP_LISTEN "}\n", 2,
                 "app \"\": a name is 1 to 32 characters from A-Z a-z 0-9 _ -");
    expect_error("app web.1 { }\n", 1,
                 "app \"web.1\": a name is 1 to 32 characters from A-Z a-z 0-9 _ -");
    expect_error("app abcdefghijklmnopqrstuvwxyz0123456 { }\n", 1,
                 "app \"abcdefghijklmnopqrstuvwxyz0123456\": a name is 1 to 32 characters "
                 "from A-Z a-z 0-9 _ -");
    /* the name is checked before anything inside the section */
    expect_error("app \"a/b\" {\n  workers = 0\n}\n", 1,
                 "app \"a/b\": a name is 1 to 32 characters from A-Z a-z 0-9 _ -");
    expect_error("app \"a/b\" {\n  listen { address = \"x\" }\n}\n", 1,
                 "app \"a/b\": a name is 1 to 32 characters from A-Z a-z 0-9 _ -");
    expect_error(ECHO_LISTEN "app {\n" APP_CMD "}\n", 2, "missing title for section 'app'");
    expect_error(ECHO_LISTEN "app web {\n  bogus = 1\n}\n", 3, "no such option 'bogus'");
}

Test(config, app_name_limits)
{
    struct config c;

    load_ok("app abcdefghijklmnopqrstuvwxyz012345 {\n" APP_CMD APP_LISTEN "}\n"
            "app \"A-Z_0\" {\n" APP_CMD APP_LISTEN "}\n", &c);
    cr_assert_eq(c.napps, 2);
    cr_expect_str_eq(c.apps[0].name, "abcdefghijklmnopqrstuvwxyz012345");
    cr_expect_str_eq(c.apps[1].name, "A-Z_0");
    config_free(&c);
}

Test(config, duplicate_app_name)
{
    expect_error(MIN_APP "\n" ECHO_LISTEN "app other {\n" APP_CMD APP_LISTEN "}\n"
                 "app web {\n" APP_CMD APP_LISTEN "}\n", 11,
                 "app web: duplicate name (also at line 1)");
    expect_error(MIN_APP "app \"web\"\n{\n}\n", 5, "app web: duplicate name (also at line 1)");
}

/* Sections named like keywords, titles on their own lines: lines stay right. */
Test(config, app_titles_that_look_like_keywords)
{
    struct config c;

    load_ok("app listen {\n" APP_CMD "  listen { address = \"127.0.0.1:0\" }\n}\n"
            "app\n  \"app\"\n{\n" APP_CMD "\n  listen { address = \"127.0.0.1:0\" }\n}\n"
            "listen { address = \"127.0.0.1:0\" protocol = echo }\n", &c);
    cr_assert_eq(c.napps, 2);
    cr_expect_str_eq(c.apps[0].name, "listen");
    cr_expect_eq(c.apps[0].line, 1);
    cr_expect_str_eq(c.apps[1].name, "app");
    cr_expect_eq(c.apps[1].line, 5);
    cr_assert_eq(c.nlistens, 3);
    cr_expect_eq(c.listens[0].line, 3);
    cr_expect_eq(c.listens[1].line, 10);
    cr_expect_eq(c.listens[2].line, 12);
    cr_expect_eq(c.listens[2].app, -1);
    config_free(&c);
}

Test(config, app_listen_errors)
{
    expect_error("app web {\n" APP_CMD "  listen {\n    backlog = 5\n  }\n}\n", 3,
                 "app.listen: address is required");
    expect_error("app web {\n" APP_CMD "  listen {\n    address = \"127.0.0.1\"\n  }\n}\n", 4,
                 "app.listen.address: missing :port in \"127.0.0.1\"");
    expect_error("app web {\n" APP_CMD
                 "  listen { address = \"127.0.0.1:0\" backlog = 0 }\n}\n", 3,
                 "app.listen.backlog: must be between 1 and 65535, got \"0\"");
    expect_error("app web {\n" APP_CMD "  listen {\n    address = \"127.0.0.1:0\"\n"
                 "    protocol = http\n  }\n}\n", 5,
                 "app.listen.protocol: not allowed here: an app speaks its own protocol on "
                 "its listeners");
    expect_error("app web {\n" APP_CMD "  listen { address = \"127.0.0.1:0\" accept = 1 }\n}\n",
                 3, "no such option 'accept'");
}

Test(config, top_level_protocol_app_refused)
{
    expect_error("listen {\n  address = \"127.0.0.1:0\"\n  protocol = app\n}\n", 3,
                 "listen.protocol: must be http, echo or chat, got \"app\"");
}

Test(config, duplicate_address_between_apps_and_listens)
{
    expect_error("listen { address = \"127.0.0.1:7007\" protocol = echo }\n"
                 "app web {\n" APP_CMD "  listen { address = \"127.0.0.1:7007\" }\n}\n", 4,
                 "app.listen: duplicate address \"127.0.0.1:7007\" (also at line 1)");
    expect_error("app web {\n" APP_CMD "  listen { address = \"*:7007\" }\n}\n"
                 "listen {\n  address = \"0.0.0.0:7007\"\n  protocol = echo\n}\n", 5,
                 "listen: duplicate address \"0.0.0.0:7007\" (also at line 3)");
    expect_error("app a {\n" APP_CMD "  listen { address = \"unix:s.sock\" }\n}\n"
                 "app b {\n" APP_CMD "  listen { address = \"unix:./s.sock\" }\n}\n", 7,
                 "app.listen: duplicate address \"unix:./s.sock\" (also at line 3)");
    expect_error("app a {\n" APP_CMD "  listen { address = \"127.0.0.1:7007\" }\n"
                 "  listen { address = \"127.0.0.1:7007\" }\n}\n", 4,
                 "app.listen: duplicate address \"127.0.0.1:7007\" (also at line 3)");
}

Test(config, app_option_errors)
{
    char message[PATH_MAX + 64];

    expect_bad_app_value("workers", "0",
                         "app.workers: must be \"auto\" or between 1 and 1024, got \"0\"");
    expect_bad_app_value("workers", "1025",
                         "app.workers: must be \"auto\" or between 1 and 1024, got \"1025\"");
    print_to(message, sizeof message, "app.directory: \"%s\" is not an existing directory",
             in_tmp("nowhere"));
    expect_bad_app_value("directory", "nowhere", message);
    write_file(in_tmp("file"), "x", 1);
    print_to(message, sizeof message, "app.directory: \"%s\" is not an existing directory",
             in_tmp("file"));
    expect_bad_app_value("directory", "file", message);
    expect_bad_app_value("directory", "\"\"", "app.directory: must not be empty");
    expect_bad_app_value("user", "no-such-user-preforkd",
                         "app.user: no such user \"no-such-user-preforkd\"");
    expect_bad_app_value("handoff", "inetd", "app.handoff: must be systemd, nginx, "
                         "server_starter, unicorn, fpm or einhorn, got \"inetd\"");
    expect_bad_app_value("ready_timeout", "0",
                         "app.ready_timeout: must be between 1 and 3600, got \"0\"");
    expect_bad_app_value("ready_timeout", "3601",
                         "app.ready_timeout: must be between 1 and 3600, got \"3601\"");
    expect_bad_app_value("watchdog", "-1",
                         "app.watchdog: must be between 0 and 3600, got \"-1\"");
    expect_bad_app_value("watchdog", "3601",
                         "app.watchdog: must be between 0 and 3600, got \"3601\"");
    expect_bad_app_value("reload", "rolling", "app.reload: must be smooth or fleet, "
                         "got \"rolling\"");
}

Test(config, app_ready)
{
    static const char *const bad[] = {
        "\"delay 0\"", "\"delay 0.000\"", "\"delay 3600.001\"", "\"delay 3601\"", "\"delay\"",
        "\"delay \"", "\"delay -1\"", "\"delay 1.\"", "\"delay .5\"", "\"delay 0.0005\"",
        "\"delay 1s\"", "\"delay1\"", "\"delay 1 \"", "Notify", "\"\"", "\"exec \"",
    };
    static const struct { const char *text; enum app_ready ready; int ms; } good[] = {
        { "notify", READY_NOTIFY, 0 }, { "exec", READY_EXEC, 0 },
        { "\"delay 1.5\"", READY_DELAY, 1500 }, { "\"delay  2\"", READY_DELAY, 2000 },
        { "\"delay 0.001\"", READY_DELAY, 1 }, { "\"delay 3600\"", READY_DELAY, 3600000 },
        { "\"delay\t0.25\"", READY_DELAY, 250 }, { "\"delay 3600.000\"", READY_DELAY, 3600000 },
    };
    char text[512], message[512];
    struct config c;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *v = bad[i][0] == '"' ? bad[i] + 1 : bad[i];
        int len = (int)strlen(v) - (bad[i][0] == '"');
        print_to(message, sizeof message, "app.ready: must be notify, exec or "
                 "\"delay SECONDS\" (0 < SECONDS <= 3600, at most 3 decimals), got \"%.*s\"",
                 len, v);
        expect_bad_app_value("ready", bad[i], message);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        print_to(text, sizeof text, "app web {\n" APP_CMD "  ready = %s\n" APP_LISTEN "}\n",
                 good[i].text);
        load_ok(text, &c);
        cr_expect_eq(c.apps[0].ready, good[i].ready, "%s", good[i].text);
        if (good[i].ready == READY_DELAY)
            cr_expect_eq(c.apps[0].ready_delay_ms, good[i].ms, "%s", good[i].text);
        config_free(&c);
    }
}

Test(config, app_stop_signal)
{
    static const struct { const char *name; int sig; } good[] = {
        { "TERM", SIGTERM }, { "SIGTERM", SIGTERM }, { "INT", SIGINT }, { "QUIT", SIGQUIT },
        { "HUP", SIGHUP }, { "USR1", SIGUSR1 }, { "SIGUSR2", SIGUSR2 }, { "WINCH", SIGWINCH },
        { "KILL", SIGKILL }, { "ABRT", SIGABRT }, { "ALRM", SIGALRM },
    };
    static const char *const bad[] = { "term", "SIG", "15", "SIGSIGTERM", "STOP", "\"\"" };
    char text[512], message[512];
    struct config c;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        print_to(text, sizeof text, "app web {\n" APP_CMD "  stop_signal = %s\n" APP_LISTEN
                 "}\n", good[i].name);
        load_ok(text, &c);
        cr_expect_eq(c.apps[0].stop_signal, good[i].sig, "%s", good[i].name);
        config_free(&c);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        print_to(message, sizeof message, "app.stop_signal: must be TERM, INT, QUIT, HUP, "
                 "USR1, USR2, WINCH, KILL, ABRT or ALRM (SIG prefix optional), got \"%s\"",
                 strcmp(bad[i], "\"\"") ? bad[i] : "");
        expect_bad_app_value("stop_signal", bad[i], message);
    }
}

Test(config, app_max_rss)
{
    static const struct { const char *text; unsigned long long bytes; } good[] = {
        { "0", 0 }, { "\"0\"", 0 }, { "4096", 4096 }, { "1K", 1024 }, { "3k", 3072 },
        { "256M", 256ULL << 20 }, { "2g", 2ULL << 30 }, { "0M", 0 },
        { "17179869183G", 17179869183ULL << 30 },
    };
    static const char *const bad[] = {
        "-1", "1T", "1.5G", "M", "1MB", "1 M", "", "18446744073709551616",
        "17179869184G", "0x10",
    };
    char text[512], message[512], value[64];
    struct config c;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        print_to(text, sizeof text, "app web {\n" APP_CMD "  max_rss = %s\n" APP_LISTEN "}\n",
                 good[i].text);
        load_ok(text, &c);
        cr_expect_eq(c.apps[0].max_rss, good[i].bytes, "%s", good[i].text);
        config_free(&c);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        print_to(value, sizeof value, "\"%s\"", bad[i]);
        print_to(message, sizeof message, "app.max_rss: must be \"0\" or a size such as "
                 "\"256M\" (K, M, G: powers of 1024), got \"%s\"", bad[i]);
        expect_bad_app_value("max_rss", value, message);
    }
}

Test(config, app_command_errors)
{
    expect_bad_app_list("command", "{\"\", \"x\"}",
                        "app.command: the first word, the program, must not be empty");
    expect_bad_app_list("command", "\"\"",
                        "app.command: the first word, the program, must not be empty");
    expect_bad_app_list("command", "{\"x\", \"--fd={fd\"}",
                        "app.command: unterminated placeholder in \"--fd={fd\" "
                        "(write {fd} or {fd:ADDRESS})");
    expect_bad_app_list("command", "{\"x\", \"{fd:127.0.0.1:80\"}",
                        "app.command: unterminated placeholder in \"{fd:127.0.0.1:80\" "
                        "(write {fd} or {fd:ADDRESS})");
    expect_bad_app_list("command", "{\"x\", \"a{fdx}b\"}",
                        "app.command: unknown placeholder \"{fdx}\" in \"a{fdx}b\" "
                        "(write {fd} or {fd:ADDRESS})");
    expect_bad_app_list("command", "{\"x\", \"{fd:}\"}",
                        "app.command: unknown placeholder \"{fd:}\" in \"{fd:}\" "
                        "(write {fd} or {fd:ADDRESS})");
    expect_bad_app_list("command", "{\"x\", \"{fd}{fd:a\"}",
                        "app.command: unterminated placeholder in \"{fd}{fd:a\" "
                        "(write {fd} or {fd:ADDRESS})");
    /* the word's own line, in a list over several lines */
    expect_error("app web {\n  command = {\"x\",\n    \"ok\",\n    \"{fd\"}\n" APP_LISTEN "}\n",
                 4, "app.command: unterminated placeholder in \"{fd\" "
                 "(write {fd} or {fd:ADDRESS})");
}

/* {fd:ADDRESS} names one of the app's own listen addresses, as written. */
Test(config, app_fd_address_placeholders)
{
    struct config c;

    expect_error("app web {\n  command = {\"x\", \"{fd:127.0.0.1:9}\"}\n" APP_LISTEN "}\n", 2,
                 "app.command: {fd:127.0.0.1:9}: app web has no listen address "
                 "\"127.0.0.1:9\"");
    expect_error("app web {\n  listen { address = \"127.0.0.1:7300\" }\n"
                 "  command = {\"x\",\n    \"{fd:localhost:7300}\"}\n}\n", 3,
                 "app.command: {fd:localhost:7300}: app web has no listen address "
                 "\"localhost:7300\"");
    /* another app's address is not this app's */
    expect_error("app a {\n" APP_CMD "  listen { address = \"127.0.0.1:7301\" }\n}\n"
                 "app b {\n  command = {\"x\", \"{fd:127.0.0.1:7301}\"}\n"
                 "  listen { address = \"127.0.0.1:7302\" }\n}\n", 6,
                 "app.command: {fd:127.0.0.1:7301}: app b has no listen address "
                 "\"127.0.0.1:7301\"");
    expect_error("listen { address = \"127.0.0.1:7303\" protocol = echo }\n"
                 "app b {\n  command = {\"x\", \"{fd:127.0.0.1:7303}\"}\n" APP_LISTEN "}\n", 3,
                 "app.command: {fd:127.0.0.1:7303}: app b has no listen address "
                 "\"127.0.0.1:7303\"");
    /* a listen section after the command counts; the last command is checked */
    load_ok("app web {\n  command = {\"x\", \"{fd:nowhere}\"}\n"
            "  command = {\"y\", \"--a={fd:127.0.0.1:7304},{fd:udp:[::1]:7305}\", \"{fd}\"}\n"
            "  listen { address = \"127.0.0.1:7304\" }\n"
            "  listen { address = \"udp:[::1]:7305\" }\n}\n", &c);
    cr_expect_str_eq(c.apps[0].command[0], "y");
    cr_expect_eq(c.apps[0].ncommand, 3);
    config_free(&c);
}

Test(config, app_environment_errors)
{
    static const char *const reserved[] = {
        "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC",
        "WATCHDOG_PID", "PREFORKD_WORKER", "PREFORKD_",
    };
    char list[256], message[256];

    expect_bad_app_list("environment", "{\"A=1\", \"B\"}",
                        "app.environment: \"B\" is not KEY=VALUE");
    expect_bad_app_list("environment", "\"=x\"", "app.environment: bad variable name \"\" in "
                        "\"=x\" (letters, digits and _, not starting with a digit)");
    expect_bad_app_list("environment", "\"1A=x\"", "app.environment: bad variable name \"1A\" "
                        "in \"1A=x\" (letters, digits and _, not starting with a digit)");
    expect_bad_app_list("environment", "\"A-B=x\"", "app.environment: bad variable name "
                        "\"A-B\" in \"A-B=x\" (letters, digits and _, not starting with a "
                        "digit)");
    expect_bad_app_list("environment", "{\"A=1\", \"B=2\", \"A=3\"}",
                        "app.environment: A is set twice");
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        print_to(list, sizeof list, "{\"OK=1\", \"%s=3\"}", reserved[i]);
        print_to(message, sizeof message, "app.environment: %s is set by preforkd itself",
                 reserved[i]);
        expect_bad_app_list("environment", list, message);
    }
    expect_error("app web {\n" APP_CMD "  environment = {\"A=1\",\n\n    \"LISTEN_FDS=1\"}\n"
                 APP_LISTEN "}\n", 5, "app.environment: LISTEN_FDS is set by preforkd itself");
}

Test(config, app_environment_reassigned)
{
    struct config c;
    static const char *const env[] = { "A=2", "B=1" };

    load_ok("app web {\n" APP_CMD "  environment = {\"A=1\"}\n  environment = {\"A=2\"}\n"
            "  environment += {\"B=1\"}\n" APP_LISTEN "}\n", &c);
    expect_str_list(c.apps[0].environment, c.apps[0].nenvironment, env, 2);
    config_free(&c);
    expect_error("app web {\n" APP_CMD "  environment = {\"A=1\"}\n"
                 "  environment += {\"A=2\"}\n" APP_LISTEN "}\n", 4,
                 "app.environment: A is set twice");
}

Test(config, comments_inside_app_sections_keep_line_numbers)
{
    const char *head = "# 1\n"
                       "app web {   # 2\n"
                       "  /* 3\n     4 */ command = {\"x\", // 4\n"
                       "     # 5\n"
                       "     \"{fd:127.0.0.1:7400}\" /* 6 */ }\n"
                       "  // 7\n"
                       "  listen { /* 8 */ address = \"127.0.0.1:7400\" } # 8\n"
                       "  /* 9\n"
                       "     10 */\n"
                       "  listen {  # 11\n"
                       "    # 12\n"
                       "    address = \"127.0.0.1:7401\" // 13\n"
                       "  }\n";
    char text[2048];
    struct config c;

    print_to(text, sizeof text, "%s  /**/ watchdog = 3601 # 15\n}\n", head);
    expect_error(text, 15, "app.watchdog: must be between 0 and 3600, got \"3601\"");
    print_to(text, sizeof text, "%s}\n", head);
    load_ok(text, &c);
    cr_assert_eq(c.nlistens, 2);
    cr_expect_eq(c.apps[0].line, 2);
    cr_expect_eq(c.listens[0].line, 8);
    cr_expect_eq(c.listens[1].line, 11);
    config_free(&c);
    expect_error("// 1\napp web { /* 2\n 3 */ command = {\"x\",\n # 4\n \"{fd:a}\"}\n"
                 "/* 6 */ " APP_LISTEN "}\n", 3,
                 "app.command: {fd:a}: app web has no listen address \"a\"");
    expect_error("/* 1\n 2 */ app dup { command = \"x\" listen { address = \"*:0\" } }\n# 3\n"
                 "/* 4 */ app /* 4 */ dup // 4\n{\n}\n", 4,
                 "app dup: duplicate name (also at line 2)");
    expect_error("app web {\n # 2\n listen { # 3\n  # 4\n  backlog = 1 /* 5\n 6 */ }\n}\n", 3,
                 "app.listen: address is required");
}

Test(config, app_config_free_releases_everything)
{
    struct config c;

    load_ok("app a {\n  command = {\"x\", \"y\", \"z\"}\n  environment = {\"A=1\", \"B=2\"}\n"
            APP_LISTEN "}\n"
            "app b {\n" APP_CMD APP_LISTEN "}\n" ECHO_LISTEN, &c);
    cr_expect_eq(c.napps, 2);
    config_free(&c);
    cr_expect_null(c.apps);
    cr_expect_eq(c.napps, 0);
    cr_expect_null(c.listens);
    config_free(&c);                        /* twice is fine */
    /* a failure after complete apps leaves nothing allocated (valgrind) */
    expect_error("app a {\n  command = {\"x\", \"y\"}\n  environment = {\"A=1\"}\n"
                 APP_LISTEN "}\nbogus = 1\n", 6, "no such option 'bogus'");
}

/* ---- site sections and the site options of http ---- */

/* A site's least: a name, a root (tmp itself) and one server name. */
#define SITE_NAMES "  server_names = {\"example.org\"}\n"
#define SITE_ROOT "  root = \".\"\n"
#define MIN_SITE "site web {\n" SITE_NAMES SITE_ROOT "}\n"

/* OPTION = VALUE on line 3, first in an otherwise valid site section. */
static void expect_bad_site_value(const char *option, const char *value, const char *message)
{
    char text[1024];

    print_to(text, sizeof text, ECHO_LISTEN "site web {\n  %s = %s\n" SITE_NAMES SITE_ROOT
             "}\n", option, value);
    expect_error(text, 3, message);
}

Test(config, site_every_key)
{
    struct config c;
    const struct site_conf *s;

    make_dir("www-a");
    make_dir("logs");
    load_ok(ECHO_LISTEN
            "site a {\n"
            "  server_names  = {\"Example.org\", \"*.example.org\", \"[::1]\", \"10.0.0.1\"}\n"
            "  root          = \"www-a\"\n"
            "  index         = \"home.htm\"\n"
            "  access_log    = \"logs/a.log\"\n"
            "  precompressed = true\n"
            "  autoindex     = yes\n"
            "  error_pages   = {\"404=/404.html\", \"403=/e/403.html\", \"500=/50x.html\","
            " \"405=/405.html\"}\n"
            "  expires       = {\"*.css=7d\", \"*.js=12h\", \"/assets/=30m\", \"/=0\","
            " \"*.txt=45s\", \"*.x=45\"}\n"
            "}\n", &c);
    cr_assert_eq(c.nsites, 1);
    s = &c.sites[0];
    cr_expect_str_eq(s->name, "a");
    cr_expect_eq(s->line, 2);
    cr_assert_eq(s->nserver_names, 4);
    cr_expect_str_eq(s->server_names[0], "example.org", "lower case");
    cr_expect_str_eq(s->server_names[1], "*.example.org");
    cr_expect_str_eq(s->server_names[2], "[::1]");
    cr_expect_str_eq(s->server_names[3], "10.0.0.1");
    cr_expect_null(s->server_names[4]);
    cr_expect_eq(s->server_name_lines[3], 3);
    cr_expect_str_eq(s->root, in_tmp("www-a"));
    cr_expect_str_eq(s->index, "home.htm");
    cr_expect_str_eq(s->access_log, in_tmp("logs/a.log"));
    cr_expect(s->opts.precompressed);
    cr_expect(s->opts.autoindex);
    cr_assert_eq(s->opts.nerror_pages, 4);
    cr_expect_eq(s->opts.error_pages[0].status, 404);
    cr_expect_str_eq(s->opts.error_pages[0].path, "/404.html");
    cr_expect_eq(s->opts.error_pages[1].status, 403);
    cr_expect_str_eq(s->opts.error_pages[1].path, "/e/403.html");
    cr_expect_eq(s->opts.error_pages[2].status, 500);
    cr_expect_eq(s->opts.error_pages[3].status, 405);
    cr_assert_eq(s->opts.nexpires, 6);
    cr_expect_str_eq(s->opts.expires[0].pattern, "*.css");
    cr_expect_not(s->opts.expires[0].prefix);
    cr_expect_eq(s->opts.expires[0].seconds, 7 * 86400);
    cr_expect_eq(s->opts.expires[1].seconds, 12 * 3600);
    cr_expect_str_eq(s->opts.expires[2].pattern, "/assets/");
    cr_expect(s->opts.expires[2].prefix);
    cr_expect_eq(s->opts.expires[2].seconds, 30 * 60);
    cr_expect(s->opts.expires[3].prefix);
    cr_expect_eq(s->opts.expires[3].seconds, 0);
    cr_expect_eq(s->opts.expires[4].seconds, 45);
    cr_expect_eq(s->opts.expires[5].seconds, 45);
    /* the default site keeps its own (default) options */
    cr_expect_not(c.http.opts.precompressed);
    cr_expect_not(c.http.opts.autoindex);
    cr_expect_eq(c.http.opts.nerror_pages, 0);
    cr_expect_eq(c.http.opts.nexpires, 0);
    config_free(&c);
    cr_expect_null(c.sites);
    cr_expect_eq(c.nsites, 0);
}

Test(config, site_defaults_and_http_options)
{
    struct config c;
    const struct site_conf *s;

    load_ok(ECHO_LISTEN
            "http {\n"
            "  precompressed = on\n"
            "  autoindex = false\n"
            "  error_pages = {\"404=/nf.html\"}\n"
            "  expires = {\"*.png=3650d\"}\n"
            "}\n" MIN_SITE "site \"two.sites_-\" {\n  server_names = \"b.org\"\n" SITE_ROOT
            "}\n", &c);
    cr_expect(c.http.opts.precompressed);
    cr_expect_not(c.http.opts.autoindex);
    cr_assert_eq(c.http.opts.nerror_pages, 1);
    cr_expect_str_eq(c.http.opts.error_pages[0].path, "/nf.html");
    cr_assert_eq(c.http.opts.nexpires, 1);
    cr_expect_eq(c.http.opts.expires[0].seconds, 3650L * 86400);
    cr_assert_eq(c.nsites, 2);
    s = &c.sites[0];
    cr_expect_str_eq(s->name, "web");
    cr_expect_eq(s->line, 8);
    cr_expect_str_eq(s->root, tmp);
    cr_expect_str_eq(s->index, "index.html");
    cr_expect_str_eq(s->access_log, "");
    cr_expect_not(s->opts.precompressed, "not inherited from http");
    cr_expect_not(s->opts.autoindex);
    cr_expect_eq(s->opts.nerror_pages, 0);
    cr_expect_null(s->opts.error_pages);
    cr_expect_eq(s->opts.nexpires, 0);
    cr_expect_str_eq(c.sites[1].name, "two.sites_-");
    cr_expect_eq(c.sites[1].line, 12);
    cr_expect_str_eq(c.sites[1].server_names[0], "b.org");
    config_free(&c);
    load_ok(ECHO_LISTEN, &c);
    cr_expect_eq(c.nsites, 0);
    cr_expect_null(c.sites);
    cr_expect_not(c.http.opts.precompressed);
    config_free(&c);
}

Test(config, site_section_errors)
{
    char message[PATH_MAX + 64];

    expect_error(ECHO_LISTEN "\nsite web {\n" SITE_NAMES "}\n", 3, "site web: root is required");
    expect_error(ECHO_LISTEN "site web {\n" SITE_ROOT "}\n", 2,
                 "site web: server_names is required");
    expect_error(ECHO_LISTEN "site web {\n" SITE_ROOT "\n  server_names = {}\n}\n", 5,
                 "site.server_names: must name at least one host");
    expect_error("site \"a b\" {\n" SITE_NAMES SITE_ROOT "}\n", 1,
                 "site \"a b\": a name is 1 to 64 characters from A-Z a-z 0-9 _ - .");
    expect_error("site \"a/b\" {\n  root = nowhere\n}\n", 1,
                 "site \"a/b\": a name is 1 to 64 characters from A-Z a-z 0-9 _ - .");
    expect_error(ECHO_LISTEN "site {\n" SITE_NAMES "}\n", 2, "missing title for section 'site'");
    expect_error(ECHO_LISTEN "site web {\n  bogus = 1\n}\n", 3, "no such option 'bogus'");
    expect_error(ECHO_LISTEN "site web {\n  listen { address = \"127.0.0.1:0\" }\n}\n", 3,
                 "no such option 'listen'");
    expect_error(ECHO_LISTEN "site web {\n  keepalive_timeout = 5\n}\n", 3,
                 "no such option 'keepalive_timeout'");
    print_to(message, sizeof message, "site.root: \"%s\" is not an existing directory",
             in_tmp("nowhere"));
    expect_error(ECHO_LISTEN "site web {\n" SITE_NAMES "\n  root = \"nowhere\"\n}\n", 5,
                 message);
    expect_bad_site_value("root", "\"\"", "site.root: must not be empty");
    expect_bad_site_value("index", "\"a/b\"", "site.index: must be a file name without '/', "
                          "got \"a/b\"");
    print_to(message, sizeof message, "site.access_log: directory \"%s\" does not exist",
             in_tmp("logs"));
    expect_bad_site_value("access_log", "\"logs/a.log\"", message);
    expect_bad_site_value("precompressed", "1", "site.precompressed: must be true or false, "
                          "got \"1\"");
    expect_bad_site_value("autoindex", "maybe", "site.autoindex: must be true or false, "
                          "got \"maybe\"");
}

Test(config, duplicate_site_name)
{
    expect_error(MIN_SITE ECHO_LISTEN "site other {\n  server_names = \"o.org\"\n" SITE_ROOT
                 "}\nsite web {\n  server_names = \"w.org\"\n" SITE_ROOT "}\n", 10,
                 "site web: duplicate name (also at line 1)");
    expect_error(MIN_SITE "# 5\nsite \"web\"\n{\n}\n", 6, "site web: duplicate name (also at line 1)");
    /* an app and a site may share a name; two of either may not */
    expect_error("app web {\n" APP_CMD APP_LISTEN "}\n" MIN_SITE
                 "app web {\n" APP_CMD APP_LISTEN "}\n", 9,
                 "app web: duplicate name (also at line 1)");
    expect_error(MIN_SITE "app web {\n" APP_CMD APP_LISTEN "}\n" MIN_SITE, 9,
                 "site web: duplicate name (also at line 1)");
}

/* A name may belong to one site only, whatever its case; the message names
 * both lines. */
Test(config, duplicate_server_name)
{
    expect_error(ECHO_LISTEN
                 "site a {\n"
                 "  server_names = {\"a.org\",\n"
                 "                  \"*.Example.org\"}\n" SITE_ROOT
                 "}\n"
                 "site b {\n" SITE_ROOT
                 "  server_names = {\"b.org\",\n"
                 "     \"*.example.ORG\"}\n"
                 "}\n", 10,
                 "site.server_names: \"*.example.ORG\" is also a server name of site a (line 4)");
    expect_error(ECHO_LISTEN "site a {\n  server_names = {\"a.org\", \"b.org\", \"A.org\"}\n"
                 SITE_ROOT "}\n", 3, "site.server_names: \"A.org\" is given twice");
    expect_error(ECHO_LISTEN "site a {\n  server_names = \"a.org\"\n"
                 "  server_names += \"a.org\"\n" SITE_ROOT "}\n", 4,
                 "site.server_names: \"a.org\" is given twice");
    /* a wildcard and the name itself are two names */
    struct config c;
    load_ok(ECHO_LISTEN "site a {\n  server_names = \"a.org\"\n" SITE_ROOT "}\n"
            "site b {\n  server_names = \"*.a.org\"\n" SITE_ROOT "}\n", &c);
    config_free(&c);
}

Test(config, server_name_forms)
{
    static const struct { const char *name, *message; } bad[] = {
        { "a.org:80", "\"a.org:80\": a server name has no port (any port matches)" },
        { "[::1]:80", "\"[::1]:80\" is not an IPv6 address in brackets" },
        { "[zz]", "\"[zz]\" is not an IPv6 address in brackets" },
        { "a..org", NULL }, { "a.org.", NULL }, { ".a.org", NULL }, { "*", NULL },
        { "*.", NULL }, { "a.*.org", NULL }, { "**.a.org", NULL }, { "a b", NULL },
        { "", NULL }, { "a/b", NULL }, { "*.[::1]", NULL },
    };
    char value[64], message[512], name[300];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        print_to(value, sizeof value, "\"%s\"", bad[i].name);
        if (bad[i].message)
            print_to(message, sizeof message, "site.server_names: %s", bad[i].message);
        else
            print_to(message, sizeof message, "site.server_names: \"%s\" is not a host name "
                     "(labels of letters, digits, - and _ between dots, or \"*.\" and such a "
                     "name)", bad[i].name);
        expect_bad_site_value("server_names", value, message);
    }
    memset(name, 'a', 254);
    name[254] = '\0';
    print_to(value, sizeof value, "\"%.10s\"", name);
    print_to(message, sizeof message, "site.server_names: \"%s\" is longer than 253 bytes", name);
    char text[1024];
    print_to(text, sizeof text, ECHO_LISTEN "site web {\n  server_names = \"%s\"\n" SITE_ROOT
             "}\n", name);
    expect_error(text, 3, message);
}

Test(config, error_pages_errors)
{
    expect_bad_http_value("error_pages", "{\"404\"}",
                          "http.error_pages: \"404\" is not STATUS=/PATH (\"404=/404.html\")");
    expect_bad_http_value("error_pages", "{\"40=/x\"}",
                          "http.error_pages: \"40=/x\" is not STATUS=/PATH (\"404=/404.html\")");
    expect_bad_http_value("error_pages", "{\"401=/x.html\"}",
                          "http.error_pages: \"401=/x.html\": the status must be 403, 404, "
                          "405 or 500");
    static const char *const bad_paths[] = {
        "x.html", "/", "/dir/", "/a/../b", "/./a", "//a", "/a?b", "/a#b", "",
    };
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        char value[64], message[256];
        print_to(value, sizeof value, "{\"404=%s\"}", bad_paths[i]);
        print_to(message, sizeof message, "site.error_pages: \"404=%s\": the page must be a "
                 "file under the root, as a path that starts with '/' (no \".\", \"..\", "
                 "\"//\", '?' or '#')", bad_paths[i]);
        expect_bad_site_value("error_pages", value, message);
    }
    expect_error(ECHO_LISTEN "http {\n  error_pages = {\"404=/a.html\",\n"
                 "    \"403=/b.html\", \"404=/c.html\"}\n}\n", 4,
                 "http.error_pages: status 404 is given twice");
}

Test(config, expires_errors)
{
    expect_bad_http_value("expires", "{\"*.css\"}",
                          "http.expires: \"*.css\" is not PATTERN=TIME (\"*.css=7d\", "
                          "\"/assets/=30d\")");
    expect_bad_http_value("expires", "{\"=7d\"}",
                          "http.expires: \"=7d\" is not PATTERN=TIME (\"*.css=7d\", "
                          "\"/assets/=30d\")");
    static const char *const bad_patterns[] = { "css", "*", "/assets", "assets/", "*.c*s",
                                                "/a*/" };
    for (size_t i = 0; i < sizeof bad_patterns / sizeof bad_patterns[0]; i++) {
        char value[64], message[256];
        print_to(value, sizeof value, "{\"%s=1d\"}", bad_patterns[i]);
        print_to(message, sizeof message, "site.expires: \"%s=1d\": the pattern must be "
                 "*SUFFIX (\"*.css\") or a directory /DIR/ (\"/assets/\")", bad_patterns[i]);
        expect_bad_site_value("expires", value, message);
    }
    static const char *const bad_times[] = { "", "7w", "d", "-1d", "1.5d", "3651d", "7 d",
                                             "87600h1", "315360001" };
    for (size_t i = 0; i < sizeof bad_times / sizeof bad_times[0]; i++) {
        char value[64], message[256];
        print_to(value, sizeof value, "{\"*.css=%s\"}", bad_times[i]);
        print_to(message, sizeof message, "site.expires: \"*.css=%s\": the time must be a "
                 "number and a unit, s, m, h or d (\"7d\"), at most 3650d", bad_times[i]);
        expect_bad_site_value("expires", value, message);
    }
    expect_error(ECHO_LISTEN "site web {\n" SITE_NAMES SITE_ROOT
                 "  expires = {\"/a/=1d\", \"*.css=1h\",\n  \"/a/=2d\"}\n}\n", 6,
                 "site.expires: \"/a/\" is given twice");
    struct config c;
    load_ok(ECHO_LISTEN "http { expires = {\"*.css=315360000\", \"/x=y/=1s\"} }\n", &c);
    cr_expect_eq(c.http.opts.expires[0].seconds, 315360000L);
    cr_expect_str_eq(c.http.opts.expires[1].pattern, "/x=y/", "the time after the last '='");
    config_free(&c);
}

Test(config, comments_inside_site_sections_keep_line_numbers)
{
    const char *head = "# 1\n"
                       "site web {   # 2\n"
                       "  /* 3\n     4 */ server_names = {\"a.org\", // 4\n"
                       "     # 5\n"
                       "     \"*.a.org\" /* 6 */ }\n"
                       "  // 7\n"
                       "  root = \".\" # 8\n"
                       "  /* 9\n"
                       "     10 */\n"
                       "  expires = {  # 11\n"
                       "    # 12\n"
                       "    \"*.css=1d\" // 13\n"
                       "  }\n";
    char text[2048];
    struct config c;

    print_to(text, sizeof text, "%s  /**/ autoindex = sometimes # 15\n}\n", head);
    expect_error(text, 15, "site.autoindex: must be true or false, got \"sometimes\"");
    print_to(text, sizeof text, "%s  error_pages = {  # 15\n  \"404=/x\", /* 16 */\n"
             "  \"404=/y\" // 17\n }\n}\n", head);
    expect_error(text, 17, "site.error_pages: status 404 is given twice");
    print_to(text, sizeof text, "%s}\n" ECHO_LISTEN, head);
    load_ok(text, &c);
    cr_assert_eq(c.nsites, 1);
    cr_expect_eq(c.sites[0].line, 2);
    cr_expect_eq(c.sites[0].server_name_lines[0], 4);
    cr_expect_eq(c.sites[0].server_name_lines[1], 6);
    cr_expect_eq(c.listens[0].line, 16);
    config_free(&c);
    expect_error("// 1\nsite a { /* 2\n 3 */ server_names = {\"x.org\",\n # 4\n \"y.org\"}\n"
                 "/* 6 */ root = \".\" }\nsite b {\n # 8\n server_names = /* 9 */ \"y.org\"\n"
                 " root = \".\" }\n", 9,
                 "site.server_names: \"y.org\" is also a server name of site a (line 5)");
    expect_error("/* 1\n 2 */ " MIN_SITE "# 6\n/* 7 */ site /* 7 */ web // 7\n{\n}\n", 7,
                 "site web: duplicate name (also at line 2)");
    expect_error("site web {\n # 2\n server_names = { # 3\n # 4\n } /* 5\n 6 */ root = \".\"\n}\n",
                 3, "site.server_names: must name at least one host");
}

/* Sites named like keywords; a site among apps and listens: lines stay right. */
Test(config, site_titles_that_look_like_keywords)
{
    struct config c;

    load_ok("site listen {\n" SITE_NAMES SITE_ROOT "}\n"
            "site\n  \"app\"\n{\n  server_names = \"b.org\"\n" SITE_ROOT "}\n"
            "app site {\n" APP_CMD APP_LISTEN "}\n"
            "listen { address = \"127.0.0.1:0\" protocol = echo }\n", &c);
    cr_assert_eq(c.nsites, 2);
    cr_expect_str_eq(c.sites[0].name, "listen");
    cr_expect_eq(c.sites[0].line, 1);
    cr_expect_str_eq(c.sites[1].name, "app");
    cr_expect_eq(c.sites[1].line, 5);
    cr_assert_eq(c.napps, 1);
    cr_expect_str_eq(c.apps[0].name, "site");
    cr_expect_eq(c.apps[0].line, 11);
    cr_assert_eq(c.nlistens, 2);
    cr_expect_eq(c.listens[0].line, 13);
    cr_expect_eq(c.listens[1].line, 15);
    config_free(&c);
}

Test(config, site_config_free_releases_everything)
{
    struct config c;

    load_ok(ECHO_LISTEN "http { error_pages = {\"404=/a\"} expires = {\"*.a=1s\"} }\n"
            "site a {\n  server_names = {\"a.org\", \"b.org\"}\n" SITE_ROOT
            "  error_pages = {\"404=/x\", \"500=/y\"}\n  expires = {\"*.css=1d\"}\n}\n"
            "site b {\n  server_names = \"c.org\"\n" SITE_ROOT "}\n", &c);
    cr_expect_eq(c.nsites, 2);
    config_free(&c);
    cr_expect_null(c.sites);
    cr_expect_null(c.http.opts.error_pages);
    cr_expect_null(c.http.opts.expires);
    config_free(&c);                        /* twice is fine */
    /* a failure after complete sites leaves nothing allocated (valgrind) */
    expect_error(ECHO_LISTEN "http { expires = {\"*.a=1s\"} }\n"
                 "site a {\n  server_names = {\"a.org\", \"b.org\"}\n" SITE_ROOT
                 "  error_pages = {\"404=/x\"}\n}\nbogus = 1\n", 8, "no such option 'bogus'");
}

/* ---- address_parse ---- */

static void parse_ok(const char *text, const char *dir, struct address *a)
{
    char err[512] = "";

    cr_assert_eq(address_parse(text, dir, a, err, sizeof err), 0, "%s: %s", text, err);
    cr_expect_str_eq(a->text, text);
}

static void parse_bad(const char *text, const char *message)
{
    struct address a;
    char err[512] = "";

    cr_expect_eq(address_parse(text, "/srv", &a, err, sizeof err), -1, "accepted %s", text);
    cr_expect_str_eq(err, message, "for %s", text);
}

Test(config, address_ipv4_and_any)
{
    struct address a;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.sa;

    parse_ok("127.0.0.1:8080", NULL, &a);
    cr_expect_eq(a.socktype, SOCK_STREAM);
    cr_expect_eq(sin->sin_family, AF_INET);
    cr_expect_eq(a.salen, sizeof *sin);
    cr_expect_eq(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    cr_expect_eq(ntohs(sin->sin_port), 8080);
    parse_ok("*:65535", NULL, &a);
    cr_expect_eq(sin->sin_addr.s_addr, htonl(INADDR_ANY));
    cr_expect_eq(ntohs(sin->sin_port), 65535);
    parse_ok("0.0.0.0:0", NULL, &a);
    cr_expect_eq(ntohs(sin->sin_port), 0);
}

Test(config, address_ipv6)
{
    struct address a;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.sa;

    parse_ok("[::1]:8080", NULL, &a);
    cr_expect_eq(a.socktype, SOCK_STREAM);
    cr_expect_eq(sin6->sin6_family, AF_INET6);
    cr_expect_eq(a.salen, sizeof *sin6);
    cr_expect(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    cr_expect_eq(ntohs(sin6->sin6_port), 8080);
    parse_ok("[::]:0", NULL, &a);
    cr_expect(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
}

Test(config, address_unix)
{
    struct address a;
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&a.sa;
    char text[PATH_MAX + 32];

    parse_ok("unix:/run/p.sock", "/srv", &a);
    cr_expect_eq(sun->sun_family, AF_UNIX);
    cr_expect_eq(a.socktype, SOCK_STREAM);
    cr_expect_str_eq(sun->sun_path, "/run/p.sock");
    cr_expect_eq(a.salen, offsetof(struct sockaddr_un, sun_path) + strlen("/run/p.sock") + 1);
    parse_ok("unix:run/p.sock", "/srv", &a);
    cr_expect_str_eq(sun->sun_path, "/srv/run/p.sock");
    parse_ok("unix:p.sock", NULL, &a);                /* no dir: as written */
    cr_expect_str_eq(sun->sun_path, "p.sock");
    print_to(text, sizeof text, "unix:%s/./x//p.sock", tmp);
    parse_ok(text, NULL, &a);                          /* canonical directory */
    cr_expect_str_eq(sun->sun_path, in_tmp("x/p.sock"));
}

Test(config, address_udp)
{
    struct address a;

    parse_ok("udp:127.0.0.1:7007", NULL, &a);
    cr_expect_eq(a.socktype, SOCK_DGRAM);
    cr_expect_eq(a.sa.ss_family, AF_INET);
    cr_expect_eq(port_of(&a), 7007);
    parse_ok("udp:[::1]:7007", NULL, &a);
    cr_expect_eq(a.socktype, SOCK_DGRAM);
    cr_expect_eq(a.sa.ss_family, AF_INET6);
    cr_expect_eq(port_of(&a), 7007);
}

Test(config, address_host_name)
{
    struct address a;

    parse_ok("localhost:80", NULL, &a);
    cr_expect(a.sa.ss_family == AF_INET || a.sa.ss_family == AF_INET6);
    cr_expect_eq(port_of(&a), 80);
}

/* nginx's `listen *:80` written unquoted: libconfuse hands over ":80";
 * the message says to quote it. */
Test(config, unquoted_star_address_says_quote_it)
{
    struct config c;
    char err[1024] = "";
    cr_assert_neq(load_text("listen {\n  address = *:8080\n}\n", &c, err, sizeof err), 0);
    cr_assert(strstr(err, ":2: listen.address: missing host in \":8080\""), "%s", err);
    cr_assert(strstr(err, "in quotes"), "%s", err);
}

Test(config, address_bad_forms)
{
    char longtext[400], longunix[200], message[512];

    parse_bad("", "address: must not be empty");
    parse_bad("127.0.0.1", "address: missing :port in \"127.0.0.1\"");
    parse_bad("127.0.0.1:", "address: bad port in \"127.0.0.1:\"");
    parse_bad("127.0.0.1:65536", "address: bad port in \"127.0.0.1:65536\"");
    parse_bad("127.0.0.1:-1", "address: bad port in \"127.0.0.1:-1\"");
    parse_bad("127.0.0.1:8o", "address: bad port in \"127.0.0.1:8o\"");
    parse_bad("127.0.0.1:080080", "address: bad port in \"127.0.0.1:080080\"");
    parse_bad(":80", "address: missing host in \":80\" (\"*:PORT\" means any; in quotes: "
              "libconfuse drops an unquoted '*')");
    parse_bad("[::1", "address: missing ']' in \"[::1\"");
    parse_bad("[::1]80", "address: missing :port after ']' in \"[::1]80\"");
    parse_bad("[]:80", "address: missing host in \"[]:80\" (\"*:PORT\" means any; in quotes: "
              "libconfuse drops an unquoted '*')");
    parse_bad("::1:80", "address: IPv6 address needs brackets, as in \"[::1]:8080\", "
              "in \"::1:80\"");
    parse_bad("[127.0.0.1]:80", "address: bad IPv6 address in \"[127.0.0.1]:80\"");
    parse_bad("[*]:80", "address: bad IPv6 address in \"[*]:80\"");
    parse_bad("unix:", "address: unix socket path must name a file in \"unix:\"");
    parse_bad("unix:/run/", "address: unix socket path must name a file in \"unix:/run/\"");
    parse_bad("udp:unix:/x", "address: udp takes host:port, not a unix path, in \"udp:unix:/x\"");
    parse_bad("udp:127.0.0.1", "address: missing :port in \"udp:127.0.0.1\"");

    memset(longunix, 'u', sizeof longunix - 1);
    longunix[sizeof longunix - 1] = '\0';
    memcpy(longunix, "unix:/", 6);
    print_to(message, sizeof message,
             "address: unix socket path longer than 107 bytes in \"%s\"", longunix);
    parse_bad(longunix, message);
    memset(longtext, 'h', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    parse_bad(longtext, "address: longer than 299 bytes");
}

Test(config, address_unresolvable_name)
{
    struct address a;
    char err[512] = "";
    const char *want = "address: cannot resolve \"nonexistent.invalid\" in "
                       "\"nonexistent.invalid:80\": ";

    cr_assert_eq(address_parse("nonexistent.invalid:80", NULL, &a, err, sizeof err), -1);
    cr_expect_eq(strncmp(err, want, strlen(want)), 0, "got %s", err);
}

/* ---- names ---- */

Test(config, names)
{
    cr_expect_str_eq(proto_name(PROTO_HTTP), "http");
    cr_expect_str_eq(proto_name(PROTO_ECHO), "echo");
    cr_expect_str_eq(proto_name(PROTO_CHAT), "chat");
    cr_expect_str_eq(proto_name(PROTO_APP), "app");
    cr_expect_str_eq(app_handoff_name(HANDOFF_SYSTEMD), "systemd");
    cr_expect_str_eq(app_handoff_name(HANDOFF_NGINX), "nginx");
    cr_expect_str_eq(app_handoff_name(HANDOFF_SERVER_STARTER), "server_starter");
    cr_expect_str_eq(app_handoff_name(HANDOFF_UNICORN), "unicorn");
    cr_expect_str_eq(app_handoff_name(HANDOFF_FPM), "fpm");
    cr_expect_str_eq(app_handoff_name(HANDOFF_EINHORN), "einhorn");
    cr_expect_str_eq(log_level_name(LOG_LVL_ERROR), "error");
    cr_expect_str_eq(log_level_name(LOG_LVL_WARN), "warn");
    cr_expect_str_eq(log_level_name(LOG_LVL_INFO), "info");
    cr_expect_str_eq(log_level_name(LOG_LVL_DEBUG), "debug");
}

/* libconfuse 3.3 takes the end of the file as the end of an open section:
 * a file cut short would load. */
Test(config, unterminated_section)
{
    expect_error("listen { address = \"127.0.0.1:7007\" protocol = \"echo\"\n", 1,
                 "'{' is never closed (missing '}')");
    expect_error("# a comment { with a brace\n"
                 "listen { address = \"127.0.0.1:7007\" protocol = \"echo\" }\n"
                 "http {\n  root = \"/tmp\"   // }\n", 3,
                 "'{' is never closed (missing '}')");
    expect_error("listen { address = \"127.0.0.1:7007\" protocol = \"echo\" }\n"
                 "app web { command = {\"/bin/true\"}\n"
                 "  listen { address = \"127.0.0.1:7008\" }\n", 2,
                 "'{' is never closed (missing '}')");
}

/* Limits against misbehaving clients (tests/test_attacks.c runs them). */
Test(config, limits_per_client_address)
{
    struct config c;
    load_ok("max_connections_per_ip = 10 # per address\nrate_limit = \"100r/s burst 200\"\n"
            ECHO_LISTEN, &c);
    cr_assert_eq(c.max_connections_per_ip, 10);
    cr_assert_str_eq(c.rate_limit.text, "100r/s burst 200");
    cr_assert_eq(c.rate_limit.interval_us, 10000);
    cr_assert_eq(c.rate_limit.burst, 200);
    config_free(&c);
    load_ok("rate_limit = \"30 r/m\"\n" ECHO_LISTEN, &c);
    cr_assert_eq(c.rate_limit.interval_us, 2000000);
    cr_assert_eq(c.rate_limit.burst, 30, "burst defaults to the rate's count");
    cr_assert_eq(c.max_connections_per_ip, 0, "off by default");
    config_free(&c);
    load_ok(ECHO_LISTEN, &c);
    cr_assert_eq(c.rate_limit.interval_us, 0, "rate_limit is off by default");
    config_free(&c);
    const char *msg = "rate_limit: must be \"N r/s\" or \"N r/m\" (N 1..1000000), optionally "
                      "followed by \"burst B\" (B 1..1000000), got \"%s\"";
    const char *bad[] = { "100", "100r/h", "0r/s", "10r/s burst", "10r/s burst 0",
                          "10r/s bust 5", "10r/s burst 5 x", "r/s" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char v[64], m[512];
        print_to(v, sizeof v, "\"%s\"", bad[i]);
        print_to(m, sizeof m, msg, bad[i]);
        expect_bad_value("rate_limit", v, m);
    }
    expect_bad_value("max_connections_per_ip", "-1",
                     "max_connections_per_ip: must be between 0 and 1000000, got \"-1\"");
}

/* send_timeout in a site: its own, else the http section's. */
Test(config, site_send_timeout)
{
    struct config c;
    make_dir("www");
    make_dir("a");
    load_ok("listen { address = \"127.0.0.1:0\" protocol = \"http\" }\n"
            "http { root = \"www\" send_timeout = 30 }\n"
            "site a { server_names = {\"a.test\"} root = \"a\"\n"
            "  send_timeout = 2   # seconds\n}\n"
            "site b { server_names = {\"b.test\"} root = \"a\" }\n", &c);
    cr_assert_eq(c.http.send_timeout, 30);
    cr_assert_eq(c.nsites, 2);
    cr_assert_eq(c.sites[0].send_timeout, 2);
    cr_assert_eq(c.sites[1].send_timeout, 0, "0: the http section's");
    config_free(&c);
}
