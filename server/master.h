/* master: the supervising process. It owns the listeners and a slot table
 * of workers, watches them over their status pipes and signals through one
 * epoll loop (signalfd), respawns with back-off, and stops them gracefully. */
#ifndef PREFORKD_MASTER_H
#define PREFORKD_MASTER_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ipc/ipc.h"
#include "server/apppool.h"
#include "server/config.h"
#include "server/control.h"
#include "server/fdlimit.h"
#include "server/latwin.h"
#include "server/listener.h"
#include "server/statushttp.h"
#include "server/upgrade.h"

#define EXIT_RING 16

/* What an epoll event is about: the high 32 bits of its data. */
enum ev_kind { EV_SIGNAL = 1, EV_STATUS, EV_CMD, EV_CTL_LISTEN, EV_CTL_CLIENT, EV_APP,
               EV_UPGRADE, EV_SHTTP_LISTEN, EV_SHTTP_CLIENT, EV_BUS };

/* The last reload's outcome: pending while app pools deploy. */
enum reload_result { RELOAD_OK, RELOAD_REJECTED, RELOAD_PENDING, RELOAD_ROLLED_BACK };

struct slot {
    pid_t pid;                      /* 0: empty */
    uint32_t gen;
    int status_fd, cmd_fd;          /* master's ends, -1 when closed */
    struct ipc_reader rd;
    struct ipc_queue q;
    bool cmd_wants_out;             /* EPOLLOUT registered for cmd_fd */
    bool draining, killed;
    enum worker_state state;
    int64_t started_ms, last_seen_ms, respawn_at_ms;
    int64_t drain_started_ms;
    time_t started_wall;
    struct ipc_report report, prev_report;
    int64_t prev_report_ms;
    double req_rate;                /* requests/s between the last two heartbeats */
    double cpu_pct;                 /* CPU % (of one core) between them */
    size_t board_slot;              /* its loadboard entry: the slot it was spawned in */
    int pinned_cpu;                 /* per-CPU accept: the CPU it runs on; else -1 */
    size_t limit_slot;              /* its per-address count table (iplimit) */
    const char *retire_reason;      /* why it drains: "reload", "max_requests", ... */
    struct lat_window *lat;         /* its request durations, once it sent any */
};

/* Counters of workers that have exited, so totals never go backwards. */
struct totals {
    uint64_t accepted, requests, bytes_in, bytes_out;
    uint64_t proxy_rejected;
    uint64_t limited;               /* refused by per-address limits */
};

struct exit_record {
    pid_t pid;                      /* 0: none */
    int slot;
    int status;                     /* as from waitpid */
    time_t when;
    int64_t lived_ms;
    const char *retired;            /* a planned exit's reason; NULL: unexpected */
};

struct master {
    struct config cfg;
    struct listener *ls;
    size_t nls;
    struct slot *slots;
    size_t nslots;                  /* capacity */
    size_t target;                  /* workers wanted in this generation */
    uint32_t gen;
    int epfd, sigfd;
    int pidfile_fd, ready_fd;
    bool foreground, ready;
    bool stopping, stop_now;
    int64_t stop_deadline_ms;
    int stop_kills;                 /* SIGKILL rounds sent while stopping */
    int64_t now_ms;
    time_t started_wall;
    unsigned crash_streak;          /* workers in a row that died young */
    unsigned long restarts;         /* unexpected exits */
    unsigned long retirements;      /* planned exits: drains, max_requests, scale down */
    struct exit_record last_restart, last_retired;
    struct exit_record exits[EXIT_RING];
    unsigned long nexits;
    struct totals retired;
    struct control ctl;
    unsigned long reloads;          /* SIGHUPs handled, applied or not */
    time_t last_reload_wall;        /* 0: never */
    enum reload_result last_reload;
    char last_reload_msg[512];      /* "FILE:LINE: message" when rejected */
    struct chat *chat;              /* chat registry (server/chat.c), lazily */
    struct chatbus *bus;            /* chat across instances (server/chatbus.c) */
    struct loadboard *board;        /* workers' connection counts, shared */
    struct iplimit *limits;         /* per-address counts (workers/iplimit.h) */
    struct apppools apps;           /* app pools (server/apppool.c) */
    /* systemd (server/sdnotify.c): NOTIFY_SOCKET, -1 when not under it */
    int sd_fd;
    char sd_socket[108];            /* its address, for a new master */
    bool sd_reloading;              /* RELOADING=1 sent, READY=1 owed */
    int64_t sd_watchdog_ms, sd_next_ping_ms, sd_next_status_ms;
    char sd_status[160];            /* last STATUS= sent */
    char self_path[PATH_MAX];       /* this binary, for hot upgrades */
    struct upgrade upgrade;         /* server/upgrade.c */
    struct fdlimit fds;             /* RLIMIT_NOFILE against worker_connections */
    struct lstats lstats;           /* latency per listener (server/latwin.c) */
    struct status_http shttp;       /* status_listen (server/statushttp.c) */
    bool health_draining;           /* /healthz says 503 draining */
    int64_t stop_at_ms;             /* graceful_stop_delay: the stop proper; 0 none */
};

/* Worker state as status shows it: a heartbeat overdue by this much is
 * "unresponsive" (the kill comes later, at worker_timeout). */
#define UNRESPONSIVE_AFTER_MS 3000
const char *master_slot_state(const struct master *m, const struct slot *s);

/* Queue a frame to the worker in slot (bounded). A chat frame that does
 * not fit is dropped and that worker is recycled (drained), logged once. */
void master_send(struct master *m, size_t slot, uint16_t type,
                 const void *payload, size_t len);

/* A worker dying sooner after its start, without having served (built-in)
 * or been ready (app), is a crash loop: the next respawn waits
 * master_backoff_ms(deaths in a row), 100 ms doubling up to 30 s. */
#define MASTER_EARLY_DEATH_MS 2000
int64_t master_backoff_ms(unsigned streak);

/* "exited with status N" or "killed by signal N (name)", from waitpid. */
void master_describe_exit(int status, char *buf, size_t cap);

/* Graceful stop, as SIGTERM does (after a hot upgrade handed over). */
void master_begin_stop(struct master *m);
/* /healthz: 200 ok, or 503 draining (a stop or an upgrade began); ok is
 * refused while stopping. */
void master_set_health(struct master *m, bool ok);

/* Start-up cannot complete: tell the waiting parent why, stop now. */
void master_abort_start(struct master *m, const char *why);

/* Take ownership of cfg and the open listeners; run until stopped.
 * Returns the process exit code. */
int master_run(struct master *m);

#endif
