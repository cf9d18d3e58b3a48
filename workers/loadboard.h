/* loadboard: every worker's open-connection count, in memory the master maps
 * shared before its first fork, so that a worker far above its siblings steps
 * aside from accepting for a moment (accept fairness: see tests/bench/RESULTS.md,
 * "How connections are spread"). Lock-free: per spawn slot, a cache line holding
 * the count (with its pid) and a liveness stamp; a stale read only delays a
 * decision by one wake-up. */
#ifndef PREFORKD_LOADBOARD_H
#define PREFORKD_LOADBOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LOADBOARD_SLOTS 1024    /* the workers maximum: spawn slots are below */

struct loadboard;

/* Master, before the first fork. NULL (logged): fairness is off. */
struct loadboard *loadboard_create(void);
/* Master, when it spawns into slot: widens the range readers scan. */
void loadboard_note_slot(struct loadboard *b, size_t slot);
/* Worker: its pid and count of open connections (at every open and close). */
void loadboard_set(struct loadboard *b, size_t slot, pid_t pid, uint32_t conns);
/* Worker, about once a second while it runs: "alive at now_ms" (monotonic).
 * Apart from loadboard_set so the per-connection path stores one word. */
void loadboard_touch(struct loadboard *b, size_t slot, int64_t now_ms);
/* Empty slot if it still holds pid's entry (a worker that drains or dies;
 * a replacement may already have written its own). */
void loadboard_clear(struct loadboard *b, size_t slot, pid_t pid);
/* The least count among the other entries refreshed within LOADBOARD_FRESH_MS
 * (a stopped or stuck worker does not count); false when there are none. */
#define LOADBOARD_FRESH_MS 2500
bool loadboard_least_other(const struct loadboard *b, size_t self, int64_t now_ms,
                           uint32_t *least);

/* Per-CPU accept: is there another fresh entry whose slot is cpu modulo
 * ncpu, i.e. a live worker pinned to that CPU's socket? */
bool loadboard_covered(const struct loadboard *b, size_t self, int64_t now_ms,
                       size_t ncpu, size_t cpu);

#endif
