/* control: the master's Unix control socket (mode 0600, SO_PEERCRED: root or
 * the master's own user). One command line in, the answer out, then close.
 * Bounded: a few clients at once, a line limit and a deadline per client. */
#ifndef PREFORKD_CONTROL_H
#define PREFORKD_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/sbuf.h"

#define CONTROL_MAX_CLIENTS 16
#define CONTROL_LINE_MAX    256
#define CONTROL_DEADLINE_MS 5000

/* Fills out with the answer to one command line. */
typedef void (*control_handler)(void *ctx, const char *line, struct sbuf *out);

struct control_client {
    int fd;                         /* -1: free */
    char line[CONTROL_LINE_MAX];
    size_t linelen;
    struct sbuf out;
    size_t sent;
    int64_t deadline_ms;
};

struct control {
    int lfd;
    char path[108];
    char bound[112];                /* where lfd is bound: path, or path.new
                                       until control_publish */
    bool keep_path;                 /* control_close leaves the path */
    int epfd;
    uint64_t tag;                   /* epoll data = tag | client index */
    uint64_t listen_tag;
    struct control_client clients[CONTROL_MAX_CLIENTS];
};

/* Bind and listen at path (with defer: at path.new, for a new master of a
 * hot upgrade while the old one still answers at path); register with
 * epfd. 0 or -1 with err. */
int control_open(struct control *c, const char *path, bool defer, int epfd,
                 uint64_t listen_tag, uint64_t client_tag,
                 char *err, size_t errlen);
/* Move a deferred socket onto its path (rename: no moment without one). */
int control_publish(struct control *c);
/* After a hot upgrade handed over: the path is the new master's. */
void control_keep_path(struct control *c);
void control_close(struct control *c);
void control_on_listen(struct control *c, int64_t now_ms);
void control_on_client(struct control *c, size_t idx, uint32_t events,
                       control_handler h, void *ctx);
/* Drop clients past their deadline (a client that never reads). */
void control_expire(struct control *c, int64_t now_ms);
/* Close every descriptor without unlinking (in a forked worker). */
void control_close_in_child(struct control *c);

#endif
