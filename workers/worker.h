/* worker: one process of the pool. An epoll loop over the inherited
 * listeners, its command pipe from the master and its connections; protocol
 * handlers (echo, http, chat) plug in through struct proto and the conn_*
 * calls below. Handlers do the I/O; the loop does accept, timers, reports. */
#ifndef PREFORKD_WORKER_H
#define PREFORKD_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "ipc/ipc.h"
#include "ipc/latency.h"
#include "server/config.h"
#include "workers/peer.h"

struct worker;
struct conn;

/* Everything in the loop's epoll set starts with this. */
struct ev {
    void (*on_event)(struct worker *w, struct ev *ev, uint32_t events);
};

/* Connections with the same timeout duration share a FIFO list, so the
 * oldest deadline is always at its head: O(1) set, clear and expire. */
struct tlist {
    int64_t dur_ms;
    struct conn *head, *tail;
};

struct wlistener {
    struct ev ev;
    int fd;
    const struct listen_conf *conf;
    const struct proto *proto;
    bool in_epoll;
    unsigned accepts;               /* for re-ordering the wait queue */
    /* accept = "per-cpu": one wlistener per CPU socket of the listener */
    int cpu, ncpu;                  /* its index in the group and their count; -1, 0: shared */
    bool home;                      /* in this worker's accept set (shared: always) */
    bool queued;                    /* per-CPU: had a queue at the last check */
    uint16_t lat_id;                /* the master's id of this listener */
    struct lat_acc lat;             /* durations not yet sent to the master */
};

struct conn {
    struct ev ev;
    int fd;
    uint32_t interest;              /* events registered with epoll */
    bool in_epoll;                  /* registered yet (on its first wait) */
    struct worker *w;
    const struct proto *proto;
    struct wlistener *ls;
    struct tlist *tl;               /* timer list, or NULL */
    struct conn *tprev, *tnext;
    int64_t deadline_ms;
    struct conn *free_next;         /* pool link while unused */
    struct conn *anext, *aprev;     /* the worker's list of live conns */
    struct peer_addr peer;          /* the client (see conn_admit) */
    bool refused;                   /* by a limit at conn_admit: on_open never ran */
    bool ip_counted;                /* counted for max_connections_per_ip */
    /* protocol state follows, proto->state_size bytes, max-aligned */
    _Alignas(max_align_t) unsigned char state[];
};

struct proto {
    const char *name;
    size_t state_size;
    /* once per worker, before the loop; 0 or -1 (the worker exits) */
    int (*init)(struct worker *w);
    /* accepted, not yet in epoll: set an interest before waiting */
    void (*on_open)(struct conn *c);
    void (*on_event)(struct conn *c, uint32_t events);
    void (*on_timeout)(struct conn *c);         /* its deadline passed */
    void (*on_drain)(struct conn *c);           /* the worker is draining */
    void (*on_close)(struct conn *c);           /* release state; may be NULL */
    /* datagram listeners: the socket is readable */
    void (*on_datagram)(struct worker *w, struct wlistener *l);
    void (*on_reopen)(struct worker *w);        /* SIGUSR1: reopen logs */
    void (*on_exit)(struct worker *w);          /* flush before exiting */
    void (*on_tick)(struct worker *w);          /* about once a second */
    /* a frame from the master of a type >= CHAT_HELLO (chat relay) */
    void (*on_master_msg)(struct worker *w, const struct ipc_msg *m);
    /* the queue to the master fell below its low-water mark again */
    void (*on_uplink_ready)(struct worker *w);
    /* Per-address limits (max_connections_per_ip, rate_limit): a refused
     * connection gets these bytes (NULL: none), then is closed. With
     * rate_per_request, rate_limit meters the protocol's requests
     * (conn_rate_ok) instead of its connections. */
    const char *refusal;
    bool rate_per_request;
};

struct loadboard;
struct percpu_set;
struct iplimit;

struct worker {
    const struct config *cfg;
    int slot;
    uint32_t gen;
    pid_t master_pid;
    int epfd;
    int status_fd;                  /* to the master */
    struct ev up_ev;                /* status_fd's EPOLLOUT, while up is queued */
    struct ipc_queue up;            /* frames that must not be dropped */
    bool up_wants_out, up_congested;
    struct ev cmd_ev;
    int cmd_fd;                     /* from the master */
    struct ipc_reader cmd_rd;
    struct wlistener *ls;
    size_t nls;
    size_t nconns, max_conns;
    struct conn *all;               /* live conns */
    struct conn *pool[4];           /* free conns per protocol */
    size_t npool[4], pool_min[4];   /* their number; its least since the tick */
    bool heap_shrank;               /* memory was freed: trim the heap */
    struct tlist timers[24];        /* one per distinct timeout duration */
    size_t ntimers;
    int64_t now_ms;                 /* monotonic, updated every wakeup */
    int64_t now_ns;                 /* the same instant, in nanoseconds */
    int64_t accept_resume_ms;       /* EMFILE pause; 0 = none */
    int64_t drain_deadline_ms;
    int64_t next_report_ms;
    int64_t last_state_ms;
    uint64_t recycle_at;            /* max_requests plus jitter; 0 = never */
    bool accepting, draining;
    bool stepped_aside;             /* paused accepting for fairness last time */
    bool has_percpu;                /* some listener is per-CPU */
    int64_t next_percpu_ms;         /* its sockets' next check */
    pid_t pid;
    struct loadboard *board;
    struct iplimit *limits;
    size_t limit_slot;              /* its table in limits (only it writes) */
    enum worker_state reported_state;
    struct ipc_report stats;        /* handlers bump requests and bytes */
};

/* Arguments from the master for one worker process. */
struct worker_args {
    const struct config *cfg;
    int slot;
    uint32_t gen;
    pid_t master_pid;
    int status_fd, cmd_fd;
    const int *listen_fds;          /* parallel to cfg->listens */
    const uint16_t *listen_ids;     /* parallel too: latency ids, or NULL */
    struct loadboard *board;        /* shared counts, or NULL */
    /* parallel to cfg->listens: a per-CPU listener's sockets, else NULL */
    const struct percpu_set *const *percpu;
    int pin_cpu;                    /* the CPU to run on, or -1 */
    struct iplimit *limits;         /* per-address limits, or NULL */
    size_t limit_slot;              /* the count table this worker writes */
};

/* Run a worker; never returns. */
__attribute__((noreturn)) void worker_main(const struct worker_args *a);

/* --- for protocol handlers --- */
/* Change the epoll interest (EPOLLIN, EPOLLOUT, both or 0); the first call
 * registers the connection with epoll. */
int conn_set_interest(struct conn *c, uint32_t events);
/* Close and free; c must not be used afterwards. */
void conn_close(struct conn *c);
/* c->peer is the client's address now (set at accept, or by a stage in
 * front of the protocol such as a PROXY header): hand c to its protocol. */
void conn_admit(struct conn *c);
/* rate_limit for one request on c (protocols with rate_per_request):
 * false = over it (counted as limited); answer it so and close. */
bool conn_rate_ok(struct conn *c);

/* Find or make the timer list for a duration (call from proto->init). */
struct tlist *worker_timer_list(struct worker *w, int64_t dur_ms);
/* Arm c's deadline at now + tl->dur_ms (re-arming moves it to the tail). */
void conn_timer_set(struct conn *c, struct tlist *tl);
void conn_timer_clear(struct conn *c);
/* Queue a frame to the master that must arrive (unlike reports, which a
 * full pipe drops). 0, or -1 with ENOBUFS when the queue is full. */
int worker_send_master(struct worker *w, uint16_t type, const void *payload,
                       size_t len);
/* Above the high-water mark: stop taking input that produces such frames
 * until proto->on_uplink_ready. */
static inline bool worker_uplink_congested(const struct worker *w)
{
    return w->up_congested;
}
/* A handler freed memory it had pooled: the worker gives the heap's free
 * pages back to the kernel at its next tick (malloc_trim). */
static inline void worker_heap_shrank(struct worker *w) { w->heap_shrank = true; }
/* Millisecond monotonic clock, as cached for this wakeup. */
int64_t monotonic_ms(void);
static inline int64_t worker_now(const struct worker *w) { return w->now_ms; }

/* Request timing (see ipc/latency.h). A request starts at the wakeup that
 * read its first byte (worker_now_ns: the loop's cached clock, taken once
 * per wakeup anyway) and ends when its last byte is handed to the kernel:
 * worker_lat_done reads the clock then, once per batch of responses
 * (clock_gettime(CLOCK_MONOTONIC) is served by the vDSO, no system call,
 * with the usual tsc/kvm-clock clocksources), and adds a bucket count.
 * `make bench`'s A/B: build with -DPREFORKD_LATENCY=0 to compile it out. */
#ifndef PREFORKD_LATENCY
#define PREFORKD_LATENCY 1
#endif
static inline int64_t worker_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static inline int64_t worker_now_ns(const struct worker *w) { return w->now_ns; }
/* times requests that started at start_ns end now, on listener l. */
static inline void worker_lat_done(struct wlistener *l, int64_t start_ns, uint32_t times)
{
#if PREFORKD_LATENCY
    int64_t d = worker_clock_ns() - start_ns;
    lat_acc_add(&l->lat, d > 0 ? (uint64_t)d : 0, times);
#else
    (void)l, (void)start_ns, (void)times;
#endif
}

#endif
