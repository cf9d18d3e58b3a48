/* redisloop: hiredis's event hooks on the master's epoll (see redisloop.h). */
#include "server/redisloop.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>

#include "server/log.h"

/* One registration per fd; its event mask follows what hiredis wants. */
static void update(struct redis_loop *l)
{
    struct epoll_event ee = { .data.u64 = l->tag };
    ee.events = (l->reading ? EPOLLIN : 0) | (l->writing ? EPOLLOUT : 0);
    int op = !l->added ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(l->epfd, op, l->fd, &ee) != 0) {
        log_error("chat bus: epoll_ctl fd %d: %s", l->fd, strerror(errno));
        return;
    }
    l->added = true;
}

static void add_read(void *p)
{
    struct redis_loop *l = p;
    if (!l->reading) {
        l->reading = true;
        update(l);
    }
}

static void del_read(void *p)
{
    struct redis_loop *l = p;
    if (l->reading) {
        l->reading = false;
        update(l);
    }
}

static void add_write(void *p)
{
    struct redis_loop *l = p;
    if (!l->writing) {
        l->writing = true;
        update(l);
    }
}

static void del_write(void *p)
{
    struct redis_loop *l = p;
    if (l->writing) {
        l->writing = false;
        update(l);
    }
}

/* hiredis frees the context (and closes the fd) right after this. */
static void cleanup(void *p)
{
    struct redis_loop *l = p;
    if (l->added)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->fd, NULL);
    l->added = l->reading = l->writing = false;
    l->ac = NULL;
    l->fd = -1;
}

int redis_loop_attach(struct redis_loop *l, redisAsyncContext *ac, int epfd, uint64_t tag)
{
    *l = (struct redis_loop){ .ac = ac, .epfd = epfd, .fd = ac->c.fd, .tag = tag };
    /* Workers are forked from the master: they must not keep the socket
     * (they close it too); an exec'd upgrade must not either. */
    if (fcntl(l->fd, F_SETFD, FD_CLOEXEC) != 0)
        return -1;
    ac->ev.data = l;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}

void redis_loop_handle(struct redis_loop *l, uint32_t events)
{
    if (l->ac && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        redisAsyncHandleRead(l->ac);
    if (l->ac && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && l->writing)
        redisAsyncHandleWrite(l->ac);
}
