/* iplimit: limits per client address across the whole pool (nginx's
 * limit_conn and limit_req): max_connections_per_ip and rate_limit. Shared
 * memory the master maps before its first fork; lock-free, so a worker that
 * dies holding nothing can block nobody. Connections are counted per worker
 * (each live worker writes only its own table, the master empties a dead
 * worker's), so a crash leaks no count; the limit is their sum. Requests
 * are metered by one pool-wide table of GCRA arrival times (a token bucket
 * in one word per address), updated with compare-and-swap. */
#ifndef PREFORKD_IPLIMIT_H
#define PREFORKD_IPLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workers/peer.h"

#define IPLIMIT_SLOTS 1024          /* count tables: live workers, draining ones too */

struct iplimit;

enum iplimit_verdict {
    IPL_OK,                         /* within the limit (and counted) */
    IPL_OVER,                       /* over it: refuse */
    IPL_UNTRACKED,                  /* no room to track this address: let it in */
};

/* Master, before the first fork. NULL (logged): limits are off. */
struct iplimit *iplimit_create(void);
/* Master, before it forks the worker that will write slot's table: widens
 * the range the sums cover. */
void iplimit_note_slot(struct iplimit *t, size_t slot);
/* Master, when slot's worker is gone: its connections are closed. */
void iplimit_clear_slot(struct iplimit *t, size_t slot);

/* Worker writing table slot (the master gives each live worker its own):
 * one more connection from p, unless the pool already
 * holds max from that address. IPL_OK means counted: pair it with
 * iplimit_conn_close. Never lets more than max in; two workers admitting
 * the last place at once may both refuse. */
enum iplimit_verdict iplimit_conn_open(struct iplimit *t, size_t slot,
                                       const struct peer_addr *p, uint32_t max);
void iplimit_conn_close(struct iplimit *t, size_t slot, const struct peer_addr *p);
/* Connections from p open in the pool now (the sum over slots). */
uint32_t iplimit_conns(const struct iplimit *t, const struct peer_addr *p);

/* One request from p at now_us (CLOCK_MONOTONIC, the same in every
 * process): at most burst at once, then one per interval_us. */
enum iplimit_verdict iplimit_rate(struct iplimit *t, const struct peer_addr *p,
                                  int64_t now_us, uint64_t interval_us, uint32_t burst);

#endif
