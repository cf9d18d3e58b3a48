/* fdlimit: enough descriptors for worker_connections. The master raises
 * its RLIMIT_NOFILE (workers inherit it) to what a worker needs, or to
 * worker_rlimit_nofile when set, as nginx's worker_rlimit_nofile and
 * lighttpd's server.max-fds do, and says by how much it falls short when
 * the hard limit will not allow it. */
#ifndef PREFORKD_FDLIMIT_H
#define PREFORKD_FDLIMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "server/config.h"

/* Descriptors a worker uses besides its connections: listeners, pipes,
 * epoll, logs, the file cache. */
#define FDLIMIT_RESERVE 64

struct fdlimit {
    long need;                      /* worker_connections + reserve, or the key */
    long soft, hard;                /* after fdlimit_apply */
    long short_by;                  /* 0: enough */
};

/* Look at (and with apply, raise) the limit for cfg. A shortfall is
 * described in msg ("" when none). */
struct fdlimit fdlimit_check(const struct config *cfg, bool apply, char *msg, size_t cap);

#endif
