/* main: command line of build/preforkd. Starts the master (daemonized unless
 * -f), tests a configuration (-t), or asks a running master for its status.
 * Everything that can fail at start fails here, on the operator's terminal. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/config.h"
#include "server/daemon.h"
#include "server/fdlimit.h"
#include "server/listener.h"
#include "server/log.h"
#include "server/master.h"
#include "server/sdnotify.h"
#include "server/status.h"
#include "server/upgrade.h"
#include "server/top.h"
#include "server/tlsctx.h"

#define PREFORKD_VERSION "0.1.0"
#define DEFAULT_CONF "etc/preforkd.conf"
#define INSTALLED_CONF "../etc/preforkd/preforkd.conf"   /* from $PREFIX/sbin */

struct options {
    const char *conf;
    const char *show;               /* `show KEY`: print a resolved setting */
    const char *scale;              /* `scale N`: set the worker count */
    const char *pool;               /* `scale N --pool NAME`: of an app pool */
    int foreground, test_only, status, top;
    enum status_format format;
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: preforkd [-c FILE] [-f]          start (daemonizes unless -f)\n"
        "       preforkd -t [-c FILE]            test the configuration\n"
        "       preforkd status [-c FILE] [--json | --prometheus]\n"
        "       preforkd top [-c FILE]           live view of the workers (q quits;\n"
        "                                        one frame when not on a terminal)\n"
        "       preforkd scale N [--pool NAME] [-c FILE]\n"
        "                                        set the worker count now (not persisted)\n"
        "       preforkd show KEY [-c FILE]      print a resolved setting (pidfile,\n"
        "                                        control_socket, error_log,\n"
        "                                        graceful_timeout, graceful_stop_delay,\n"
        "                                        workers)\n"
        "       preforkd -v | -h\n"
        "default FILE: $PREFORKD_CONF, else PREFIX/%s when run as\n"
        "              PREFIX/sbin/preforkd (installed), else %s\n", INSTALLED_CONF + 3,
        DEFAULT_CONF);
}

/* The configuration when there is no -c: $PREFORKD_CONF (as preforkctl),
 * else the installed one when this binary is installed ($PREFIX/sbin/preforkd
 * reads $PREFIX/etc/preforkd/preforkd.conf wherever it is started from),
 * else etc/preforkd.conf of the checkout in the current directory. */
static const char *default_conf(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("PREFORKD_CONF");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash && (size_t)snprintf(path, sizeof path, "%.*s/%s", (int)(slash - exe), exe,
                                      INSTALLED_CONF) < sizeof path &&
            access(path, F_OK) == 0)
            return path;
    }
    return DEFAULT_CONF;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'J' },
        { "prometheus", no_argument, NULL, 'P' },
        { "pool", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'v' },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct options){ .conf = default_conf(), .format = STATUS_TEXT };
    if (argc > 1 && (strcmp(argv[1], "status") == 0 || strcmp(argv[1], "top") == 0)) {
        o->status = argv[1][0] == 's';
        o->top = argv[1][0] == 't';
        argv[1] = argv[0];
        argc--;
        argv++;
    } else if (argc > 2 && strcmp(argv[1], "scale") == 0) {
        o->scale = argv[2];
        argv[2] = argv[0];
        argc -= 2;
        argv += 2;
    } else if (argc > 2 && strcmp(argv[1], "show") == 0) {
        o->show = argv[2];
        argv[2] = argv[0];
        argc -= 2;
        argv += 2;
    }
    int c;
    while ((c = getopt_long(argc, argv, "c:fthv", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->conf = optarg; break;
        case 'p': o->pool = optarg; break;
        case 'f': o->foreground = 1; break;
        case 't': o->test_only = 1; break;
        case 'J': o->format = STATUS_JSON; break;
        case 'P': o->format = STATUS_PROMETHEUS; break;
        case 'h': usage(stdout); exit(0);
        case 'v': printf("preforkd %s\n", PREFORKD_VERSION); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "preforkd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

static int control_dir_ready(const char *sock, char *err, size_t errlen)
{
    if (mkdir_parents(sock, 0755) == 0)
        return 0;
    snprintf(err, errlen, "control_socket %.900s: mkdir: %s", sock, strerror(errno));
    return -1;
}

static int open_listeners(struct master *m, char *err, size_t errlen)
{
    sdnotify_take_listen_fds();     /* socket activation: adopted, not bound */
    if (listeners_open_all(&m->cfg, &m->ls, err, errlen) != 0 ||
        status_http_bind(&m->shttp, &m->cfg.status_listen, err, errlen) != 0)
        return -1;
    sdnotify_close_unadopted();
    m->nls = m->cfg.nlistens;
    return 0;
}

/* Everything that can fail before detaching: config, log, pidfile, bind. */
/* The pidfile: locked here, or inherited already locked from the old
 * master of a hot upgrade. */
static int take_pidfile(struct master *m, bool upgrading, char *err, size_t errlen)
{
    if (upgrading)
        return 0;
    m->pidfile_fd = pidfile_lock(m->cfg.pidfile, err, errlen);
    return m->pidfile_fd < 0 ? -1 : 0;
}

/* Everything that can fail before detaching: config, log, pidfile, bind. */
static int prepare_master(const struct options *o, struct master *m)
{
    char err[1024], abs[PATH_MAX];
    memset(m, 0, sizeof *m);
    m->pidfile_fd = m->ready_fd = m->sd_fd = m->upgrade.pipe_fd = -1;
    status_http_init(&m->shttp);
    m->foreground = o->foreground;
    ssize_t n = readlink("/proc/self/exe", m->self_path, sizeof m->self_path - 1);
    m->self_path[n > 0 ? n : 0] = '\0';
    bool upgrading = upgrade_inherit(m) == 1;
    /* Reloads re-read the file after the daemon's chdir("/"). */
    const char *conf = realpath(o->conf, abs) ? abs : o->conf;
    if (config_load(conf, &m->cfg, err, sizeof err) != 0 ||
        tlsctx_load(&m->cfg, err, sizeof err) != 0 ||
        log_open(m->cfg.error_log, m->cfg.log_level, err, sizeof err) != 0 ||
        control_dir_ready(m->cfg.control_socket, err, sizeof err) != 0 ||
        take_pidfile(m, upgrading, err, sizeof err) != 0 ||
        open_listeners(m, err, sizeof err) != 0) {
        fprintf(stderr, "preforkd: %s\n", err);
        if (upgrading) {
            daemon_ready(m->ready_fd, err);     /* the old master's verdict */
        } else {
            /* Our own lock, our own empty file: leave nothing behind. */
            pidfile_remove(m->cfg.pidfile, m->pidfile_fd);
        }
        tlsctx_free(&m->cfg);
        config_free(&m->cfg);
        return -1;
    }
    return 0;
}

static int start(const struct options *o)
{
    struct master m;
    if (prepare_master(o, &m) != 0)
        return 1;
    if (!o->foreground) {
        char err[256];
        if (daemonize(&m.ready_fd, err, sizeof err) != 0) {
            fprintf(stderr, "preforkd: %s\n", err);
            return 1;
        }
        int keep_stderr = strcmp(m.cfg.error_log, "stderr") == 0;
        if (daemon_redirect_stdio(keep_stderr) != 0)
            log_warn("redirecting stdio to /dev/null: %s", strerror(errno));
    }
    return master_run(&m);
}

static int test_config(const struct options *o)
{
    struct config cfg;
    char err[1024];
    if (config_load(o->conf, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (tlsctx_load(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        config_free(&cfg);
        return 1;
    }
    tlsctx_free(&cfg);
    char msg[512];
    fdlimit_check(&cfg, false, msg, sizeof msg);
    if (msg[0])
        fprintf(stderr, "preforkd: warning: descriptors: %s\n", msg);
    config_free(&cfg);
    printf("configuration OK\n");
    return 0;
}

/* For the control script: settings resolved exactly as the master would. */
static int show_setting(const struct options *o)
{
    struct config cfg;
    char err[1024], path[PATH_MAX];
    bool is_path = strcmp(o->show, "pidfile") == 0 || strcmp(o->show, "control_socket") == 0;
    if (config_load(o->conf, &cfg, err, sizeof err) != 0) {
        /* Stopping a master whose file was just broken must still work. */
        if (is_path && config_peek_path(o->conf, o->show, path, sizeof path) == 0) {
            fprintf(stderr, "preforkd: warning: %s\n", err);
            printf("%s\n", path);
            return 0;
        }
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = 0;
    if (strcmp(o->show, "pidfile") == 0)
        printf("%s\n", cfg.pidfile);
    else if (strcmp(o->show, "control_socket") == 0)
        printf("%s\n", cfg.control_socket);
    else if (strcmp(o->show, "error_log") == 0)
        printf("%s\n", cfg.error_log);
    else if (strcmp(o->show, "graceful_timeout") == 0)
        printf("%d\n", cfg.graceful_timeout);
    else if (strcmp(o->show, "graceful_stop_delay") == 0)
        printf("%d\n", cfg.graceful_stop_delay);
    else if (strcmp(o->show, "workers") == 0)
        printf("%d\n", cfg.workers);
    else {
        fprintf(stderr, "preforkd: show: unknown setting '%s'\n", o->show);
        rc = 1;
    }
    config_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;
    if (parse_args(argc, argv, &o) != 0)
        return 1;
    if (o.test_only)
        return test_config(&o);
    if (o.status)
        return status_client(o.conf, o.format);
    if (o.top)
        return top_main(o.conf);
    if (o.show)
        return show_setting(&o);
    if (o.scale) {
        char line[128];
        if (o.pool)
            snprintf(line, sizeof line, "scale %.40s pool %.40s", o.scale, o.pool);
        else
            snprintf(line, sizeof line, "scale %.40s", o.scale);
        return control_client(o.conf, line);
    }
    return start(&o);
}
