/* iplimit: pool-wide limits per client address (see iplimit.h). Both
 * tables are set-associative: an address hashes (with a key drawn at
 * start, so a client cannot aim at one set) to a set of eight 64-bit words
 * in one cache line, each word holding a fingerprint of the address and its
 * value. Nothing ever moves, so a reader never sees an entry half-moved. */
#include "workers/iplimit.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include "server/log.h"

#define WAYS        8
#define CONN_SETS   1024            /* per slot: 8192 addresses, 64 KiB */
#define RATE_SETS   4096            /* pool-wide: 32768 addresses, 256 KiB */
/* connection word: fingerprint << COUNT_BITS | count (0 = free) */
#define COUNT_BITS  20              /* worker_connections <= 1000000 */
#define COUNT_MASK  ((UINT64_C(1) << COUNT_BITS) - 1)
/* rate word: fingerprint << TAT_BITS | theoretical arrival time, in
 * microseconds modulo 2^40 (12.7 days; an arrival time is never more than
 * burst intervals ahead, so older words are recognised as expired) */
#define TAT_BITS    40
#define TAT_MASK    ((UINT64_C(1) << TAT_BITS) - 1)
#define CAS_TRIES   8               /* then the request is let through */

struct set {
    _Alignas(64) _Atomic uint64_t way[WAYS];
};

struct slot_table {
    _Alignas(4096) struct set set[CONN_SETS];
};

struct iplimit {
    uint64_t key[2];                /* hash key, written before any fork */
    _Alignas(64) _Atomic uint32_t nslots;   /* sums cover [0, nslots) */
    struct set rate[RATE_SETS];
    struct slot_table slot[IPLIMIT_SLOTS];
};

struct iplimit *iplimit_create(void)
{
    /* 64 MiB of address space; pages cost memory only once touched. */
    struct iplimit *t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (t == MAP_FAILED) {
        log_warn("iplimit: mmap: %s; limits per client address are off", strerror(errno));
        return NULL;
    }
    if (getrandom(t->key, sizeof t->key, GRND_NONBLOCK) != sizeof t->key) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        t->key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u;
        t->key[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)t;
    }
    return t;
}

void iplimit_note_slot(struct iplimit *t, size_t slot)
{
    if (!t || slot >= IPLIMIT_SLOTS)
        return;
    if (atomic_load_explicit(&t->nslots, memory_order_relaxed) <= slot)
        atomic_store_explicit(&t->nslots, (uint32_t)slot + 1, memory_order_relaxed);
}

void iplimit_clear_slot(struct iplimit *t, size_t slot)
{
    if (!t || slot >= IPLIMIT_SLOTS)
        return;
    /* Gives the pages back too; reads see zeros again. */
    if (madvise(&t->slot[slot], sizeof t->slot[slot], MADV_REMOVE) != 0)
        for (size_t i = 0; i < CONN_SETS; i++)
            for (size_t k = 0; k < WAYS; k++)
                atomic_store_explicit(&t->slot[slot].set[i].way[k], 0, memory_order_relaxed);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static uint64_t addr_hash(const struct iplimit *t, const struct peer_addr *p)
{
    uint64_t a, b;
    memcpy(&a, p->addr, 8);
    memcpy(&b, p->addr + 8, 8);
    return mix(mix(a ^ t->key[0] ^ p->family) ^ b ^ t->key[1]);
}

/* --- connections ------------------------------------------------------- */

/* 44 bits of the hash besides the set index's; never 0 (a free word). */
static uint64_t conn_fp(uint64_t h)
{
    return ((h >> 20) & ((UINT64_C(1) << (64 - COUNT_BITS)) - 1)) | 1;
}

static uint32_t count_in(const struct set *s, uint64_t fp)
{
    for (int k = 0; k < WAYS; k++) {
        uint64_t v = atomic_load_explicit(&s->way[k], memory_order_relaxed);
        if (v >> COUNT_BITS == fp)
            return (uint32_t)(v & COUNT_MASK);
    }
    return 0;
}

static uint32_t pool_count(const struct iplimit *t, size_t set, uint64_t fp)
{
    uint32_t n = atomic_load_explicit(&t->nslots, memory_order_relaxed), total = 0;
    for (uint32_t i = 0; i < n && i < IPLIMIT_SLOTS; i++)
        total += count_in(&t->slot[i].set[set], fp);
    return total;
}

/* Add delta to fp's count in the worker's own set (it is the only writer):
 * false when a new address finds no free way. */
static bool own_add(struct set *s, uint64_t fp, int delta)
{
    int free_way = -1;
    for (int k = 0; k < WAYS; k++) {
        uint64_t v = atomic_load_explicit(&s->way[k], memory_order_relaxed);
        if (v >> COUNT_BITS == fp) {
            uint64_t n = (v & COUNT_MASK) + (uint64_t)(int64_t)delta;
            if (n > COUNT_MASK)
                return false;
            atomic_store_explicit(&s->way[k], n ? fp << COUNT_BITS | n : 0,
                                  memory_order_relaxed);
            return true;
        }
        if (v == 0 && free_way < 0)
            free_way = k;
    }
    if (delta <= 0 || free_way < 0)
        return false;
    atomic_store_explicit(&s->way[free_way], fp << COUNT_BITS | (uint64_t)delta,
                          memory_order_relaxed);
    return true;
}

enum iplimit_verdict iplimit_conn_open(struct iplimit *t, size_t slot,
                                       const struct peer_addr *p, uint32_t max)
{
    if (!t || slot >= IPLIMIT_SLOTS)
        return IPL_UNTRACKED;
    uint64_t h = addr_hash(t, p), fp = conn_fp(h);
    size_t set = h % CONN_SETS;
    struct set *own = &t->slot[slot].set[set];
    if (!own_add(own, fp, 1))
        return IPL_UNTRACKED;
    /* Counted first, then summed: two workers racing for the last place
     * both see it taken, so the pool never holds more than max. */
    atomic_thread_fence(memory_order_seq_cst);
    if (pool_count(t, set, fp) > max) {
        own_add(own, fp, -1);
        return IPL_OVER;
    }
    return IPL_OK;
}

void iplimit_conn_close(struct iplimit *t, size_t slot, const struct peer_addr *p)
{
    if (!t || slot >= IPLIMIT_SLOTS)
        return;
    uint64_t h = addr_hash(t, p);
    own_add(&t->slot[slot].set[h % CONN_SETS], conn_fp(h), -1);
}

uint32_t iplimit_conns(const struct iplimit *t, const struct peer_addr *p)
{
    if (!t)
        return 0;
    uint64_t h = addr_hash(t, p);
    return pool_count(t, h % CONN_SETS, conn_fp(h));
}

/* --- requests ---------------------------------------------------------- */

static int64_t signed40(uint64_t x)
{
    return (int64_t)(x << (64 - TAT_BITS)) >> (64 - TAT_BITS);
}

/* How far fp's arrival time in v is ahead of now; 0 when it has passed
 * (the bucket is full again: the same as no entry at all). */
static uint64_t ahead_of(uint64_t v, uint64_t now, uint64_t horizon)
{
    int64_t d = signed40((v & TAT_MASK) - now);
    return d > 0 && (uint64_t)d <= horizon ? (uint64_t)d : 0;
}

/* GCRA: a request is let through when the address's theoretical arrival
 * time is at most (burst - 1) intervals ahead; then it moves one interval
 * on. A word whose time has passed is free for any address. */
enum iplimit_verdict iplimit_rate(struct iplimit *t, const struct peer_addr *p,
                                  int64_t now_us, uint64_t interval_us, uint32_t burst)
{
    if (!t || interval_us == 0)
        return IPL_UNTRACKED;
    uint64_t h = addr_hash(t, p), fp = (h >> 40) | 1, now = (uint64_t)now_us & TAT_MASK;
    uint64_t tau = interval_us * (burst ? burst - 1 : 0), horizon = tau + interval_us;
    struct set *s = &t->rate[h % RATE_SETS];
    for (int tries = 0; tries < CAS_TRIES; tries++) {
        int use = -1;
        uint64_t old = 0;
        for (int k = 0; k < WAYS; k++) {
            uint64_t v = atomic_load_explicit(&s->way[k], memory_order_relaxed);
            if (v >> TAT_BITS == fp) {
                use = k, old = v;
                break;
            }
            if (use < 0 && (v == 0 || !ahead_of(v, now, horizon)))
                use = k, old = v;
        }
        if (use < 0)
            return IPL_UNTRACKED;
        uint64_t ahead = old >> TAT_BITS == fp ? ahead_of(old, now, horizon) : 0;
        if (ahead > tau)
            return IPL_OVER;
        uint64_t tat = (now + ahead + interval_us) & TAT_MASK;
        if (atomic_compare_exchange_weak_explicit(&s->way[use], &old, fp << TAT_BITS | tat,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
            return IPL_OK;
    }
    return IPL_UNTRACKED;
}
