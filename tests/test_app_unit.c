/* Unit tests of the app pools' pure parts: notify message parsing (with
 * garbage), the hand-off environments and argv placeholders. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ipc/notify.h"
#include "workers/app.h"

static struct notify_msg parse(const char *s)
{
    struct notify_msg m;
    notify_parse(s, strlen(s), &m);
    return m;
}

Test(app_unit, notify_known_keys)
{
    struct notify_msg m = parse("READY=1\nSTATUS=warming up\nREQUESTS=42\nACTIVE=3\n"
                                "WATCHDOG=1\nSTOPPING=1\nERRNO=2\nMAINPID=7\n");
    cr_assert(m.ready && m.watchdog && m.stopping);
    cr_assert(m.has_status);
    cr_assert_str_eq(m.status, "warming up");
    cr_assert(m.has_requests && m.requests == 42);
    cr_assert(m.has_active && m.active == 3);
    cr_assert(m.has_errno && m.errno_value == 2);
    cr_assert_eq(m.known, 7);
    cr_assert_eq(m.unknown, 1, "MAINPID is ignored, as systemd's unknown keys are");
    cr_assert_eq(m.bad, 0);
}

Test(app_unit, notify_garbage_is_counted_never_trusted)
{
    struct notify_msg m = parse("READY=yes\nNOEQUALS\n=1\nREQUESTS=-1\nACTIVE=99999999999\n"
                                "STATUS=a\x01z\nERRNO=abc\n");
    cr_assert(!m.ready);
    cr_assert(!m.has_status && !m.has_requests && !m.has_active && !m.has_errno);
    cr_assert_eq(m.known, 0);
    cr_assert_eq(m.bad, 7);
    char big[NOTIFY_MSG_MAX + 10];
    memset(big, 'a', sizeof big);
    memcpy(big, "READY=1\n", 8);
    notify_parse(big, sizeof big, &m);
    cr_assert(!m.ready, "an oversized message is refused whole");
    cr_assert_eq(m.bad, 1);
}

Test(app_unit, notify_status_is_cut_and_lines_need_no_final_newline)
{
    char text[400] = "STATUS=";
    memset(text + 7, 's', 300);
    struct notify_msg m = parse(text);
    cr_assert(m.has_status);
    cr_assert_eq(strlen(m.status), NOTIFY_STATUS_MAX - 1);
    m = parse("READY=1");
    cr_assert(m.ready);
    m = parse("\n\nREADY=1\n\n");
    cr_assert(m.ready);
    cr_assert_eq(m.bad, 0);
}

/* Every byte value, one message each: nothing crashes, nothing wrongly set. */
Test(app_unit, notify_every_byte)
{
    for (int c = 0; c < 256; c++) {
        char s[] = "READY=1?";
        s[7] = (char)c;
        struct notify_msg m;
        notify_parse(s, sizeof s - 1, &m);
        cr_assert(!m.ready || c == '\n', "byte %d", c);
    }
}

/* --- the spawn side ---------------------------------------------------- */

static char *cmd_words[] = { "/bin/app", "--bind", "fd://{fd}", "--other={fd:127.0.0.1:81}",
                             "{fd:unix:/tmp/s}x", "{notfd}", NULL };
static char *env_words[] = { "A=1", "B=two words", NULL };
static const char *addrs[] = { "127.0.0.1:80", "127.0.0.1:81", "unix:/tmp/s" };
static const int lfds[] = { 10, 11, 12 };

static struct app_conf conf(enum app_handoff h)
{
    struct app_conf c = { .name = "web", .command = cmd_words, .ncommand = 6,
                          .workers = 4, .environment = env_words, .nenvironment = 2,
                          .handoff = h, .watchdog = 0 };
    return c;
}

static struct app_spawn spawn_of(const struct app_conf *c)
{
    return (struct app_spawn){ .conf = c, .listen_fds = lfds, .listen_addrs = addrs,
                               .nlisten = 3, .slot = 2, .gen = 5, .workers = 4,
                               .master_pid = 100, .notify_socket = "@preforkd/100/7" };
}

static const char *env_get(const struct strvec *env, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < env->n; i++)
        if (strncmp(env->v[i], key, n) == 0 && env->v[i][n] == '=')
            return env->v[i] + n + 1;
    return NULL;
}

static struct strvec build_env(enum app_handoff h)
{
    struct app_conf c = conf(h);
    struct app_spawn sp = spawn_of(&c);
    struct strvec env = { 0 };
    char err[128] = "";
    cr_assert_eq(app_build_env(&sp, 4242, "/usr/bin", &env, err, sizeof err), 0, "%s", err);
    return env;
}

Test(app_unit, env_systemd_and_preforkd)
{
    struct strvec env = build_env(HANDOFF_SYSTEMD);
    cr_assert_str_eq(env_get(&env, "LISTEN_FDS"), "3");
    cr_assert_str_eq(env_get(&env, "LISTEN_PID"), "4242");
    cr_assert_str_eq(env_get(&env, "LISTEN_FDNAMES"), "web:web:web");
    cr_assert_str_eq(env_get(&env, "PREFORKD_WORKER"), "2");
    cr_assert_str_eq(env_get(&env, "PREFORKD_GENERATION"), "5");
    cr_assert_str_eq(env_get(&env, "PREFORKD_WORKERS"), "4");
    cr_assert_str_eq(env_get(&env, "PREFORKD_MASTER_PID"), "100");
    cr_assert_str_eq(env_get(&env, "PREFORKD_NOTIFY_FD"), "6", "right after fds 3, 4, 5");
    cr_assert_str_eq(env_get(&env, "NOTIFY_SOCKET"), "@preforkd/100/7");
    cr_assert_str_eq(env_get(&env, "PATH"), "/usr/bin");
    cr_assert_str_eq(env_get(&env, "B"), "two words");
    cr_assert_null(env_get(&env, "WATCHDOG_USEC"));
    cr_assert_null(env_get(&env, "NGINX"));
    cr_assert_null(env.v[env.n]);
    strvec_free(&env);
}

Test(app_unit, env_other_handoffs)
{
    struct { enum app_handoff h; const char *key, *value; } cases[] = {
        { HANDOFF_NGINX, "NGINX", "3;4;5;" },
        { HANDOFF_SERVER_STARTER, "SERVER_STARTER_PORT", "127.0.0.1:80=3;127.0.0.1:81=4;/tmp/s=5" },
        { HANDOFF_UNICORN, "UNICORN_FD", "3,4,5" },
        { HANDOFF_FPM, "FPM_SOCKETS", "127.0.0.1:80=3,127.0.0.1:81=4,/tmp/s=5" },
        { HANDOFF_EINHORN, "EINHORN_FD_COUNT", "3" },
        { HANDOFF_EINHORN, "EINHORN_FD_2", "5" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct strvec env = build_env(cases[i].h);
        cr_assert_str_eq(env_get(&env, cases[i].key), cases[i].value, "%s", cases[i].key);
        cr_assert_null(env_get(&env, "LISTEN_FDS"),
                       "LISTEN_FDS only with handoff systemd (gunicorn would take both)");
        strvec_free(&env);
    }
}

Test(app_unit, env_watchdog_and_own_path)
{
    char *with_path[] = { "PATH=/opt/bin", NULL };
    struct app_conf c = conf(HANDOFF_SYSTEMD);
    c.watchdog = 3;
    c.environment = with_path;
    c.nenvironment = 1;
    struct app_spawn sp = spawn_of(&c);
    struct strvec env = { 0 };
    char err[128];
    cr_assert_eq(app_build_env(&sp, 77, "/usr/bin", &env, err, sizeof err), 0);
    cr_assert_str_eq(env_get(&env, "WATCHDOG_USEC"), "3000000");
    cr_assert_str_eq(env_get(&env, "WATCHDOG_PID"), "77");
    cr_assert_str_eq(env_get(&env, "PATH"), "/opt/bin");
    size_t paths = 0;
    for (size_t i = 0; i < env.n; i++)
        paths += strncmp(env.v[i], "PATH=", 5) == 0;
    cr_assert_eq(paths, 1);
    strvec_free(&env);
}

Test(app_unit, argv_placeholders)
{
    struct app_conf c = conf(HANDOFF_SYSTEMD);
    struct app_spawn sp = spawn_of(&c);
    struct strvec argv = { 0 };
    char err[256] = "";
    cr_assert_eq(app_build_argv(&sp, &argv, err, sizeof err), 0, "%s", err);
    cr_assert_eq(argv.n, 6);
    cr_assert_str_eq(argv.v[2], "fd://3");
    cr_assert_str_eq(argv.v[3], "--other=4");
    cr_assert_str_eq(argv.v[4], "5x");
    cr_assert_str_eq(argv.v[5], "{notfd}", "only {fd...} is a placeholder");
    cr_assert_null(argv.v[6]);
    strvec_free(&argv);
    char *bad[] = { "/bin/app", "{fd:127.0.0.1:99}", NULL };
    c.command = bad;
    c.ncommand = 2;
    cr_assert_eq(app_build_argv(&sp, &argv, err, sizeof err), -1);
    cr_assert(strstr(err, "no listener for {fd:127.0.0.1:99}"), "%s", err);
}
