/* app: the child side of an app worker, from fork() to exec(). Listeners
 * go to fd 3.. in configuration order, the native status pipe right after
 * them, stdout/stderr to the master's output pipes, stdin to /dev/null;
 * every other descriptor is closed, so the program sees exactly its own. */
#include "workers/app.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

void strvec_free(struct strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof *sv);
}

/* Append a formatted string; -1 when out of memory. */
__attribute__((format(printf, 2, 3)))
static int strvec_addf(struct strvec *sv, const char *fmt, ...)
{
    if (sv->n + 2 > sv->cap) {
        size_t cap = sv->cap ? 2 * sv->cap : 16;
        char **v = realloc(sv->v, cap * sizeof *v);
        if (!v)
            return -1;
        sv->v = v;
        sv->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&sv->v[sv->n], fmt, ap);
    va_end(ap);
    if (r < 0)
        return -1;
    sv->v[++sv->n] = NULL;
    return 0;
}

static int notify_fd_number(const struct app_spawn *sp)
{
    return APP_FIRST_FD + (int)sp->nlisten;
}

/* --- argv: {fd} and {fd:ADDRESS} ------------------------------------------ */

/* The fd number a placeholder body ("fd" or "fd:ADDRESS") names, or -1. */
static int placeholder_fd(const struct app_spawn *sp, const char *body, size_t len)
{
    if (len == 2 && memcmp(body, "fd", 2) == 0)
        return sp->nlisten ? APP_FIRST_FD : -1;
    if (len < 3 || memcmp(body, "fd:", 3) != 0)
        return -1;
    for (size_t i = 0; i < sp->nlisten; i++)
        if (strlen(sp->listen_addrs[i]) == len - 3 &&
            memcmp(sp->listen_addrs[i], body + 3, len - 3) == 0)
            return APP_FIRST_FD + (int)i;
    return -1;
}

/* One argv word with its placeholders replaced, appended to out. */
static int substitute_word(const struct app_spawn *sp, const char *word,
                           struct strvec *out, char *err, size_t errlen)
{
    char buf[4096];
    size_t n = 0;
    for (const char *p = word; *p; ) {
        const char *close = p[0] == '{' && strncmp(p, "{fd", 3) == 0 ? strchr(p, '}') : NULL;
        int fd = close ? placeholder_fd(sp, p + 1, (size_t)(close - p - 1)) : -2;
        if (fd == -1) {
            snprintf(err, errlen, "command word \"%s\": no listener for %.*s", word,
                     (int)(close - p + 1), p);
            return -1;
        }
        int w = fd >= 0 ? snprintf(buf + n, sizeof buf - n, "%d", fd)
                        : snprintf(buf + n, sizeof buf - n, "%c", *p);
        if (w < 0 || (size_t)w >= sizeof buf - n) {
            snprintf(err, errlen, "command word too long");
            return -1;
        }
        n += (size_t)w;
        p = fd >= 0 ? close + 1 : p + 1;
    }
    buf[n] = '\0';
    return strvec_addf(out, "%s", buf);
}

int app_build_argv(const struct app_spawn *sp, struct strvec *argv,
                   char *err, size_t errlen)
{
    for (size_t i = 0; i < sp->conf->ncommand; i++) {
        if (substitute_word(sp, sp->conf->command[i], argv, err, errlen) != 0) {
            if (!err[0])
                snprintf(err, errlen, "out of memory");
            strvec_free(argv);
            return -1;
        }
    }
    return 0;
}

/* --- environment ------------------------------------------------------------ */

/* "ADDR=FD<sep>ADDR=FD..." (Server::Starter, PHP-FPM) or "FD<sep>..." (nginx,
 * unicorn) into buf. A unix listener is named by its path. */
static void join_fds(const struct app_spawn *sp, bool with_addr, const char *sep,
                     bool trailing, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sp->nlisten && n < cap; i++) {
        const char *addr = sp->listen_addrs[i];
        if (strncmp(addr, "unix:", 5) == 0)
            addr += 5;
        bool last = i + 1 == sp->nlisten;
        int w = with_addr
            ? snprintf(buf + n, cap - n, "%s=%d%s", addr, APP_FIRST_FD + (int)i,
                       last && !trailing ? "" : sep)
            : snprintf(buf + n, cap - n, "%d%s", APP_FIRST_FD + (int)i,
                       last && !trailing ? "" : sep);
        n += w > 0 ? (size_t)w : 0;
    }
}

/* LISTEN_FDNAMES: every fd is named after the pool, as systemd names all
 * the sockets of one .socket unit after the unit. */
static int add_systemd_env(const struct app_spawn *sp, pid_t self, struct strvec *env)
{
    char names[4096];
    size_t n = 0;
    names[0] = '\0';
    for (size_t i = 0; i < sp->nlisten && n < sizeof names; i++) {
        int w = snprintf(names + n, sizeof names - n, "%s%s", i ? ":" : "", sp->conf->name);
        n += w > 0 ? (size_t)w : 0;
    }
    return strvec_addf(env, "LISTEN_FDS=%zu", sp->nlisten) |
           strvec_addf(env, "LISTEN_PID=%d", (int)self) |
           strvec_addf(env, "LISTEN_FDNAMES=%s", names);
}

static int add_handoff_env(const struct app_spawn *sp, pid_t self, struct strvec *env)
{
    char list[8192];
    switch (sp->conf->handoff) {
    case HANDOFF_SYSTEMD:
        return add_systemd_env(sp, self, env);
    case HANDOFF_NGINX:
        join_fds(sp, false, ";", true, list, sizeof list);
        return strvec_addf(env, "NGINX=%s", list);
    case HANDOFF_SERVER_STARTER:
        join_fds(sp, true, ";", false, list, sizeof list);
        return strvec_addf(env, "SERVER_STARTER_PORT=%s", list);
    case HANDOFF_UNICORN:
        join_fds(sp, false, ",", false, list, sizeof list);
        return strvec_addf(env, "UNICORN_FD=%s", list);
    case HANDOFF_FPM:
        join_fds(sp, true, ",", false, list, sizeof list);
        return strvec_addf(env, "FPM_SOCKETS=%s", list);
    case HANDOFF_EINHORN: {
        int r = strvec_addf(env, "EINHORN_FD_COUNT=%zu", sp->nlisten);
        for (size_t i = 0; i < sp->nlisten; i++)
            r |= strvec_addf(env, "EINHORN_FD_%zu=%d", i, APP_FIRST_FD + (int)i);
        return r;
    }
    }
    return 0;
}

static bool env_has(const struct app_conf *c, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < c->nenvironment; i++)
        if (strncmp(c->environment[i], key, klen) == 0 && c->environment[i][klen] == '=')
            return true;
    return false;
}

static int add_preforkd_env(const struct app_spawn *sp, pid_t self, struct strvec *env)
{
    int r = strvec_addf(env, "PREFORKD_WORKER=%d", sp->slot) |
            strvec_addf(env, "PREFORKD_GENERATION=%u", sp->gen) |
            strvec_addf(env, "PREFORKD_WORKERS=%d", sp->workers) |
            strvec_addf(env, "PREFORKD_MASTER_PID=%d", (int)sp->master_pid) |
            strvec_addf(env, "PREFORKD_POOL=%s", sp->conf->name) |
            strvec_addf(env, "PREFORKD_NOTIFY_FD=%d", notify_fd_number(sp));
    if (sp->notify_socket)
        r |= strvec_addf(env, "NOTIFY_SOCKET=%s", sp->notify_socket);
    if (sp->conf->watchdog > 0)
        r |= strvec_addf(env, "WATCHDOG_USEC=%lld", (long long)sp->conf->watchdog * 1000000) |
             strvec_addf(env, "WATCHDOG_PID=%d", (int)self);
    return r;
}

int app_build_env(const struct app_spawn *sp, pid_t self, const char *path,
                  struct strvec *env, char *err, size_t errlen)
{
    const struct app_conf *c = sp->conf;
    int r = 0;
    if (!env_has(c, "PATH"))
        r |= strvec_addf(env, "PATH=%s", path && *path ? path : DEFAULT_PATH);
    for (size_t i = 0; i < c->nenvironment; i++)
        r |= strvec_addf(env, "%s", c->environment[i]);
    r |= add_handoff_env(sp, self, env) | add_preforkd_env(sp, self, env);
    if (r != 0) {
        snprintf(err, errlen, "out of memory");
        strvec_free(env);
        return -1;
    }
    return 0;
}

/* --- in the child ------------------------------------------------------------ */

/* Where set-up failures are written: the stderr pipe, first where the
 * master put it, then at fd 2. */
static int fail_fd = -1;

/* Report a set-up failure on the stderr pipe (the master logs it as the
 * app's last line) and exit 127, as a shell does for a command not run. */
__attribute__((noreturn, format(printf, 2, 3)))
static void child_fail(const struct app_spawn *sp, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof msg - 2)
        n = sizeof msg - 2;
    msg[n++] = '\n';
    if (write(fail_fd >= 0 ? fail_fd : sp->err_fd, msg, (size_t)n) < 0) {
        /* nowhere left to say it */
    }
    _exit(127);
}

/* The master blocks its signals for signalfd and ignores SIGPIPE: both
 * survive exec, and the app must start with the defaults. */
static void reset_signals(void)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            signal(sig, SIG_DFL);
    }
}

/* Copy src above every target slot first, so no dup2 below clobbers a
 * source that still has to move. */
static int lift(const struct app_spawn *sp, int src, int floor)
{
    int fd = fcntl(src, F_DUPFD_CLOEXEC, floor);
    if (fd < 0)
        child_fail(sp, "preforkd: moving descriptor %d: %s", src, strerror(errno));
    return fd;
}

static void place(const struct app_spawn *sp, int from, int to)
{
    if (dup2(from, to) < 0)         /* dup2 clears close-on-exec on `to` */
        child_fail(sp, "preforkd: dup2 %d to %d: %s", from, to, strerror(errno));
}

static void close_from(int first)
{
    if (close_range((unsigned)first, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = first; fd < (max > 0 ? max : 65536); fd++)
        close(fd);
}

/* 0 /dev/null, 1 and 2 the output pipes, 3.. listeners, then the notify
 * pipe; nothing else stays open. */
static void place_fds(const struct app_spawn *sp)
{
    int n = (int)sp->nlisten, floor = APP_FIRST_FD + n + 1;
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0)
        child_fail(sp, "preforkd: /dev/null: %s", strerror(errno));
    int lifted[n + 4];
    for (int i = 0; i < n; i++)
        lifted[i] = lift(sp, sp->listen_fds[i], floor);
    lifted[n] = lift(sp, sp->notify_fd, floor);
    lifted[n + 1] = lift(sp, null_fd, floor);
    lifted[n + 2] = lift(sp, sp->out_fd, floor);
    lifted[n + 3] = lift(sp, sp->err_fd, floor);
    place(sp, lifted[n + 3], 2);
    fail_fd = 2;                    /* the pipe's first copy may go next */
    place(sp, lifted[n + 1], 0);
    place(sp, lifted[n + 2], 1);
    for (int i = 0; i < n; i++)
        place(sp, lifted[i], APP_FIRST_FD + i);
    place(sp, lifted[n], APP_FIRST_FD + n);
    close_from(floor);
}

static void drop_privileges(const struct app_spawn *sp)
{
    const char *user = sp->conf->user;
    if (!user[0] || geteuid() != 0)
        return;
    struct passwd *pw = getpwnam(user);
    if (!pw)
        child_fail(sp, "preforkd: user \"%s\": no such user", user);
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0)
        child_fail(sp, "preforkd: switching to user \"%s\": %s", user, strerror(errno));
}

void app_exec(const struct app_spawn *sp)
{
    struct strvec argv = { 0 }, env = { 0 };
    char err[512] = "";
    /* Its own process group (the master does the same from its side, so
     * neither order races): whatever the app forks goes with it when it
     * exits (server/apppool.c). */
    setpgid(0, 0);
    /* The pool goes with its master, whatever killed it. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != sp->master_pid)
        _exit(1);
    reset_signals();
    const char *path = getenv("PATH");
    if (app_build_argv(sp, &argv, err, sizeof err) != 0 ||
        app_build_env(sp, getpid(), path, &env, err, sizeof err) != 0)
        child_fail(sp, "preforkd: %s", err);
    if (chdir(sp->conf->directory) != 0)
        child_fail(sp, "preforkd: directory %s: %s", sp->conf->directory, strerror(errno));
    place_fds(sp);
    drop_privileges(sp);
    /* execvpe searches the PATH of this process, so make it the app's. */
    for (size_t i = 0; i < env.n; i++)
        if (strncmp(env.v[i], "PATH=", 5) == 0)
            setenv("PATH", env.v[i] + 5, 1);
    execvpe(argv.v[0], argv.v, env.v);
    child_fail(sp, "preforkd: exec %s: %s", argv.v[0], strerror(errno));
}
