/* redisloop: drives a hiredis async context from the master's epoll loop.
 * hiredis asks through its ev hooks to watch reading and writing; this
 * turns them into epoll registrations tagged with the caller's data, and
 * hands readiness back to hiredis. No libevent: a handful of functions. */
#ifndef PREFORKD_REDISLOOP_H
#define PREFORKD_REDISLOOP_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/async.h>

struct redis_loop {
    redisAsyncContext *ac;      /* NULL once hiredis has freed it */
    int epfd, fd;
    uint64_t tag;               /* epoll_event.data.u64 */
    bool added, reading, writing;
};

/* Hook ac into epfd (call before setting its connect callback, which asks
 * for write readiness at once). 0, or -1 with errno. */
int redis_loop_attach(struct redis_loop *l, redisAsyncContext *ac, int epfd, uint64_t tag);
/* epoll reported events for l's fd: let hiredis read and write. The
 * context may be gone afterwards (l->ac NULL). */
void redis_loop_handle(struct redis_loop *l, uint32_t events);

#endif
