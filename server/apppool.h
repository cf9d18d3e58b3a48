/* apppool: the master's side of app pools, the user's programs run as
 * workers (workers/app.c execs them). A pool's processes are kept by slot
 * and generation; their notify, stdout and stderr channels are read on the
 * master's epoll. A deploy (reload) starts the next generation beside the
 * running one and stops old workers only as new ones report READY; one
 * that fails to come up rolls the deploy back. */
#ifndef PREFORKD_APPPOOL_H
#define PREFORKD_APPPOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "ipc/notify.h"
#include "server/config.h"
#include "server/sbuf.h"

struct master;

enum app_state { APP_STARTING, APP_READY, APP_DRAINING, APP_STOPPING };

#define APP_LINE_MAX 1024           /* an output line longer is cut */

struct linebuf {
    size_t len;
    bool overflowed;                /* the current line was cut */
    char buf[APP_LINE_MAX];
};

/* One process of a pool; id 0 marks a free entry. */
struct app_proc {
    uint32_t id;
    pid_t pid;
    int slot;
    uint32_t gen;
    enum app_state state;
    bool rollout;                   /* started by a deploy not yet committed */
    bool recycling;                 /* above max_rss: replaced, then stopped */
    bool cancelled;                 /* of a deploy rolled back: stopping */
    bool aborted, killed;           /* SIGABRT (watchdog) / SIGKILL sent */
    int notify_fd, sd_fd, out_fd, err_fd;
    struct linebuf notify, out, err;
    int64_t started_ms, ready_ms, watchdog_ms, stop_ms, abort_ms, seen_ms;
    time_t started_wall;
    char app_status[NOTIFY_STATUS_MAX];
    char last_line[256];            /* last stderr line, for verdicts */
    uint64_t requests;
    uint32_t active;
    bool has_requests, has_active;
    unsigned garbage;               /* malformed notify messages */
    uint64_t out_bytes_this_s, dropped;
    double cpu_s;
    uint64_t rss;                   /* bytes, sampled once a second */
};

/* A pool's configuration for one generation: its section and addresses. */
struct app_gen_conf {
    struct app_conf app;            /* deep copy */
    struct address *addrs;
    size_t naddrs;
};

struct app_pool {
    char name[APP_NAME_MAX + 1];
    struct app_gen_conf cur;        /* the running generation's */
    struct app_gen_conf next;       /* a deploy's, while rolling */
    bool rolling, removed;
    uint32_t gen;                   /* running generation; 0 before the first */
    struct app_proc *procs;
    size_t nprocs;                  /* capacity */
    int64_t respawn_at_ms;          /* crash-loop back-off, pool-wide */
    unsigned crash_streak;
    unsigned long restarts;         /* unexpected exits */
    unsigned long recycles;         /* replaced above max_rss */
    pid_t last_exit_pid;
    int last_exit_status;           /* as from waitpid */
    time_t last_exit_wall;
    uint64_t retired_requests;      /* of exited workers */
};

struct apppools {
    struct app_pool *pools;
    size_t npools;
    uint32_t next_id;
    int64_t next_sample_ms;
    bool verdict_pending;           /* a reload waits for pools to roll */
    char verdict[512];              /* the first rollback's reason */
};

/* Create the pools of m->cfg and start their first generation. */
int apppool_start(struct master *m);
/* After m->cfg became the reloaded configuration: deploy every pool in it
 * (new generation), stop pools it no longer has. Sets the reload verdict
 * pending until every deploy is ready or rolled back. */
void apppool_reload(struct master *m);
/* A channel of an app worker is readable (key from the epoll data). */
void apppool_on_event(struct master *m, uint32_t key, uint32_t events);
/* waitpid() returned pid: true if it was an app worker. */
bool apppool_reaped(struct master *m, pid_t pid, int status);
/* Every loop turn: readiness and watchdog deadlines, escalation, spawning. */
void apppool_tick(struct master *m);
int64_t apppool_next_wakeup(const struct master *m, int64_t next);
/* The master was held up late_ms (machine stall): app workers' watchdog,
 * readiness and stop deadlines move by as much, as heartbeats' do. */
void apppool_forgive(struct master *m, int64_t late_ms);
/* Master stopping: graceful (stop_signal) or immediate (SIGINT). */
void apppool_stop(struct master *m, bool now);
/* The stop deadline passed: SIGKILL every app worker left. */
void apppool_kill_all(struct master *m);
size_t apppool_live(const struct master *m);
/* Every pool has its generation up (none rolling). */
bool apppool_settled(const struct master *m);
/* In a forked built-in worker: close the master's app channels. */
void apppool_close_in_child(struct master *m);
/* `scale N pool NAME`: answer into out. */
void apppool_scale(struct master *m, const char *name, long n, struct sbuf *out);
void apppool_free(struct master *m);

/* For status: the state name of p ("starting", "ready", "draining",
 * "unresponsive", "stopping") and a pool by index. */
const char *apppool_state_name(const struct master *m, const struct app_pool *pool,
                               const struct app_proc *p);

#endif
