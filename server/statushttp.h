/* statushttp: the master's own HTTP status listener (status_listen), so the
 * page, /status.json, /metrics and /healthz answer when every worker is
 * stuck or the pool is crash-looping. On the master's epoll like the
 * control socket, and as careful: non-blocking sockets, requests parsed by
 * llhttp, one request per connection (Connection: close), a cap on clients
 * at once and on the bytes queued to them, and a deadline to send the
 * request (slowloris) and to take the answer. Peers outside status_allow
 * get a 403 and the door. */
#ifndef PREFORKD_STATUSHTTP_H
#define PREFORKD_STATUSHTTP_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/config.h"
#include "server/sbuf.h"

#define SHTTP_MAX_CLIENTS 32
#define SHTTP_HEAD_MAX    4096          /* request bytes: more is a 431 */
#define SHTTP_READ_MS     3000          /* the request must be in by then */
#define SHTTP_WRITE_MS    10000         /* and the answer taken by then */
#define SHTTP_OUT_BUDGET  (16u << 20)   /* answer bytes queued, all clients */
#define SHTTP_NOTE_MS     10000         /* refusals logged at most this often */

struct master;

struct shttp_client {
    int fd;                         /* -1: free */
    llhttp_t parser;
    char in[SHTTP_HEAD_MAX];
    size_t len;
    char path[64];                  /* the target up to '?', cut (404 anyway) */
    size_t pathlen;
    bool complete, reading;
    struct sbuf out;
    size_t sent;
    int64_t deadline_ms;
};

struct status_http {
    int lfd;                        /* -1: off */
    struct address addr;
    int epfd;
    uint64_t listen_tag, client_tag;    /* epoll data: client_tag | index */
    llhttp_settings_t settings;
    size_t queued;                  /* answer bytes not yet sent */
    /* counted between log lines, so a scan or flood cannot flood the log */
    unsigned long refused, busy, timed_out, bad;
    char last_refused[64];
    int64_t noted_ms;
    struct shttp_client clients[SHTTP_MAX_CLIENTS];
};

/* Off: lfd -1 (call before anything else). */
void status_http_init(struct status_http *h);
/* Bind and listen at a (before the daemon detaches, so a failure is on the
 * operator's terminal), or adopt the socket passed for it in LISTEN_FDS (a
 * hot upgrade's old master passes its own). 0, or -1 with err. */
int status_http_bind(struct status_http *h, const struct address *a, char *err, size_t errlen);
/* Join the master's epoll. 0 or -1 with errno. */
int status_http_watch(struct status_http *h, int epfd, uint64_t listen_tag,
                      uint64_t client_tag);
/* Reload: move to cfg's status_listen if it changed (bound first, so a
 * failure keeps the old one). 0, or -1 with err. */
int status_http_reconfigure(struct status_http *h, const struct config *cfg,
                            char *err, size_t errlen);
void status_http_close(struct status_http *h);
/* After a hot upgrade handed over: accept no more (the new master answers
 * on the same socket), but finish the clients already accepted. */
void status_http_stop_listening(struct status_http *h);
size_t status_http_clients(const struct status_http *h);
void status_http_close_in_child(struct status_http *h);

void status_http_on_listen(struct master *m, struct status_http *h);
void status_http_on_client(struct master *m, struct status_http *h, size_t idx,
                           uint32_t events);
/* Drop clients past their deadline; log what was counted. */
void status_http_expire(struct status_http *h, int64_t now_ms);

#endif
