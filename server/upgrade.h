/* upgrade: replacing the running binary without closing a listener
 * (SIGUSR2, `preforkctl upgrade`). The old master forks and execs the
 * binary on disk, passing its listening sockets as socket activation does
 * (LISTEN_FDS), its locked pidfile and a pipe for the new master's verdict.
 * Only on "ok" does it hand over and drain; on anything else it goes on
 * serving, and status says why. */
#ifndef PREFORKD_UPGRADE_H
#define PREFORKD_UPGRADE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct master;

struct upgrade {
    pid_t child;                    /* the new master while in flight; 0 */
    int pipe_fd;                    /* its verdict pipe (read end); -1 */
    int64_t deadline_ms;
    char buf[512];
    size_t len;
    bool awaiting_exit;             /* pipe closed without a verdict */
    bool handed_over;               /* a new master took over: drain, exit */
    /* the last upgrade, for status ("last_upgrade"); time 0: none */
    time_t last_time;
    bool last_ok;
    char last_msg[512];
    /* in a new master: the pid it took over from (0: none) */
    pid_t from;
};

/* SIGUSR2: start one, unless one is in flight or the master is stopping. */
void upgrade_start(struct master *m);
/* The verdict pipe is readable. */
void upgrade_on_event(struct master *m);
/* waitpid() returned pid: true if it was the new master. */
/* A stop while an upgrade is in flight: the starting new master goes
 * (SIGKILL; its workers follow it), or it would serve on and the stop be
 * lost. */
void upgrade_abort(struct master *m, const char *why);
bool upgrade_reaped(struct master *m, pid_t pid, int status);
/* Every loop turn: the new master's deadline. */
void upgrade_tick(struct master *m);

/* In a new master, before anything else: take the inherited pidfile and
 * verdict pipe named in the environment. 0 when not an upgrade. */
int upgrade_inherit(struct master *m);

#endif
