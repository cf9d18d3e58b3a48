/* loadboard: shared per-worker connection counts for accept fairness. */
#include "workers/loadboard.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "server/log.h"

/* One cache line each: workers write their own entry at every open and
 * close, and sharing a line would bounce it between their CPUs. */
struct loadboard_entry {
    _Alignas(64) _Atomic uint64_t who;  /* pid << 32 | conns; 0 = empty */
    _Atomic int64_t stamp_ms;           /* when the worker last touched it */
};

struct loadboard {
    _Alignas(64) _Atomic uint32_t nslots;   /* scan bound */
    struct loadboard_entry e[LOADBOARD_SLOTS];
};

struct loadboard *loadboard_create(void)
{
    void *p = mmap(NULL, sizeof(struct loadboard), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        log_warn("loadboard: mmap: %s; accept fairness off", strerror(errno));
        return NULL;
    }
    return p;       /* anonymous: already zero */
}

void loadboard_note_slot(struct loadboard *b, size_t slot)
{
    if (!b || slot >= LOADBOARD_SLOTS)
        return;
    if (atomic_load_explicit(&b->nslots, memory_order_relaxed) <= slot)
        atomic_store_explicit(&b->nslots, (uint32_t)slot + 1, memory_order_relaxed);
}

static uint64_t pack(pid_t pid, uint32_t conns)
{
    return (uint64_t)(uint32_t)pid << 32 | conns;
}

void loadboard_set(struct loadboard *b, size_t slot, pid_t pid, uint32_t conns)
{
    if (b && slot < LOADBOARD_SLOTS)
        atomic_store_explicit(&b->e[slot].who, pack(pid, conns), memory_order_relaxed);
}

void loadboard_touch(struct loadboard *b, size_t slot, int64_t now_ms)
{
    if (b && slot < LOADBOARD_SLOTS)
        atomic_store_explicit(&b->e[slot].stamp_ms, now_ms, memory_order_relaxed);
}

void loadboard_clear(struct loadboard *b, size_t slot, pid_t pid)
{
    if (!b || slot >= LOADBOARD_SLOTS)
        return;
    uint64_t cur = atomic_load_explicit(&b->e[slot].who, memory_order_relaxed);
    while (cur >> 32 == (uint32_t)pid &&
           !atomic_compare_exchange_weak_explicit(&b->e[slot].who, &cur, 0,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

bool loadboard_least_other(const struct loadboard *b, size_t self, int64_t now_ms,
                           uint32_t *least)
{
    if (!b)
        return false;
    size_t n = atomic_load_explicit(&b->nslots, memory_order_relaxed);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        uint64_t e = atomic_load_explicit(&b->e[i].who, memory_order_relaxed);
        if (i == self || e == 0 ||
            now_ms - atomic_load_explicit(&b->e[i].stamp_ms, memory_order_relaxed) >
                LOADBOARD_FRESH_MS)
            continue;
        uint32_t conns = (uint32_t)e;
        if (!found || conns < *least)
            *least = conns;
        found = true;
    }
    return found;
}

bool loadboard_covered(const struct loadboard *b, size_t self, int64_t now_ms,
                       size_t ncpu, size_t cpu)
{
    size_t n = b ? atomic_load_explicit(&b->nslots, memory_order_relaxed) : 0;
    for (size_t i = cpu; i < n; i += ncpu) {
        if (i == self || atomic_load_explicit(&b->e[i].who, memory_order_relaxed) == 0)
            continue;
        if (now_ms - atomic_load_explicit(&b->e[i].stamp_ms, memory_order_relaxed) <=
            LOADBOARD_FRESH_MS)
            return true;
    }
    return false;
}
