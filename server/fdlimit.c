/* fdlimit: RLIMIT_NOFILE for worker_connections. The soft limit goes up
 * to what is needed; the hard one too when we may (CAP_SYS_RESOURCE, up to
 * fs.nr_open). Never lowered: a larger limit costs nothing. */
#include "server/fdlimit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static long need_for(const struct config *cfg)
{
    if (cfg->worker_rlimit_nofile > 0)
        return cfg->worker_rlimit_nofile;
    return (long)cfg->worker_connections + FDLIMIT_RESERVE;
}

static void raise_to(long need, struct rlimit *rl)
{
    struct rlimit want = *rl;
    if ((rlim_t)need > want.rlim_max) {
        want.rlim_max = (rlim_t)need;       /* works with CAP_SYS_RESOURCE */
        want.rlim_cur = (rlim_t)need;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
            *rl = want;
            return;
        }
        want = *rl;
    }
    if (want.rlim_cur < (rlim_t)need) {
        want.rlim_cur = (rlim_t)need < want.rlim_max ? (rlim_t)need : want.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            *rl = want;
    }
}

struct fdlimit fdlimit_check(const struct config *cfg, bool apply, char *msg, size_t cap)
{
    struct fdlimit f = { .need = need_for(cfg) };
    struct rlimit rl;
    msg[0] = '\0';
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(msg, cap, "getrlimit: %s", strerror(errno));
        return f;
    }
    if (apply)
        raise_to(f.need, &rl);
    f.soft = (long)rl.rlim_cur;
    f.hard = (long)rl.rlim_max;
    long have = apply ? f.soft : f.hard;    /* -t: what a start could reach */
    if (have < f.need) {
        f.short_by = f.need - have;
        snprintf(msg, cap, "%s needs %ld descriptors per worker, the limit is %ld "
                 "(hard %ld): short by %ld; a worker stops accepting at about %ld "
                 "connections (raise the hard limit: LimitNOFILE=, ulimit -Hn; or lower "
                 "worker_connections)", cfg->worker_rlimit_nofile ? "worker_rlimit_nofile" :
                 "worker_connections", f.need, have, f.hard, f.short_by,
                 have > FDLIMIT_RESERVE ? have - FDLIMIT_RESERVE : 0);
    }
    return f;
}
