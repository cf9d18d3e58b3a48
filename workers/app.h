/* app: the second worker kind. Where the event-loop worker (worker.c) runs
 * preforkd's own protocols, an app worker becomes the user's program: in
 * the forked child it lays out the descriptors and environment the hand-off
 * conventions expect, drops privileges and execs the command. */
#ifndef PREFORKD_APP_H
#define PREFORKD_APP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/config.h"

/* The first descriptor an app gets: fd 3, as in sd_listen_fds(3). */
#define APP_FIRST_FD 3

/* Everything the child needs, filled by the master before fork(). */
struct app_spawn {
    const struct app_conf *conf;
    const int *listen_fds;          /* in the pool's listen order */
    const char *const *listen_addrs;/* their addresses as written */
    size_t nlisten;
    int notify_fd;                  /* write end of the native status pipe */
    int out_fd, err_fd;             /* write ends of the output pipes */
    int slot;
    uint32_t gen;
    int workers;
    pid_t master_pid;
    const char *notify_socket;      /* NOTIFY_SOCKET value ("@...") or NULL */
};

/* A NULL-terminated array of heap strings. */
struct strvec {
    char **v;
    size_t n, cap;
};
void strvec_free(struct strvec *sv);

/* The program's argv with {fd} and {fd:ADDRESS} replaced by fd numbers.
 * 0, or -1 with err. */
int app_build_argv(const struct app_spawn *sp, struct strvec *argv,
                   char *err, size_t errlen);
/* Its whole environment for process `self`: PATH, the configured
 * variables, LISTEN_* (hand-off systemd) or the chosen hand-off's
 * variables, PREFORKD_*, NOTIFY_SOCKET, WATCHDOG_*. 0 or -1 with err. */
int app_build_env(const struct app_spawn *sp, pid_t self, const char *path,
                  struct strvec *env, char *err, size_t errlen);

/* In the forked child: become the app. Never returns; on failure the
 * reason goes to the stderr pipe and the exit status is 127. */
__attribute__((noreturn)) void app_exec(const struct app_spawn *sp);

#endif
