/* listener: the master's bound sockets (TCP v4/v6, unix stream, UDP), all
 * non-blocking and close-on-exec; workers inherit them through fork(). */
#ifndef PREFORKD_LISTENER_H
#define PREFORKD_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include "server/config.h"
#include "server/percpu.h"

struct listener {
    struct listen_conf conf;
    int fd;
    bool adopted;                   /* passed by socket activation */
    /* accept = "per-cpu" as it is in effect (pc.n > 0), whatever the
     * config now says: fd is pc.fd[0] then. */
    struct percpu_set pc;
};

/* Create, bind and (for streams) listen, or adopt the socket passed by
 * socket activation for this address. 0, or -1 with "bind ADDR: why". */
int listener_open(struct listener *l, const struct listen_conf *conf,
                  char *err, size_t errlen);
/* "per-cpu" or "shared": the mode in effect. */
const char *listener_accept_name(const struct listener *l);
/* Every socket of l (one, or one per CPU): listen(backlog) again. */
void listener_relisten(const struct listener *l);
/* Close; a unix socket's path is removed. */
void listener_close(struct listener *l);
/* Open every listen of cfg into a new array; on failure none stay open. */
int listeners_open_all(const struct config *cfg, struct listener **out,
                       char *err, size_t errlen);
void listeners_close_all(struct listener *ls, size_t n);
/* "echo 127.0.0.1:7007" for logs. */
const char *listener_describe(const struct listener *l, char *buf, size_t cap);

#endif
