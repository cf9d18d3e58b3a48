/* latwin: the master's latency figures. Workers send histogram deltas
 * (ipc/latency.h); they land in windows of 5 s steps: the last 12 steps are
 * "the last minute" (sliding by 5 s, so 55 to 60 s), plus a total since the
 * start. Per worker (slot) and per listener; a listener also keeps a chart
 * of 60 points (requests/s and p99 per 5 s step: the last 5 minutes).
 * Listeners are known by address, so a reload that keeps an address keeps
 * its figures; the ids workers send are indexes in the table here, fixed
 * when the worker forks (an old generation's stay valid). */
#ifndef PREFORKD_LATWIN_H
#define PREFORKD_LATWIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc/latency.h"
#include "server/config.h"

#define LATWIN_STEP_MS  5000
#define LATWIN_SLOTS    12
#define LATWIN_HISTORY  60
#define LSTATS_MAX      1024         /* distinct listener addresses timed */

struct lat_slot {
    int64_t step;                   /* now_ms / LATWIN_STEP_MS it counts */
    uint32_t n;
    uint32_t count[LAT_NBUCKETS];
    uint64_t sum_ns, max_ns;
};

struct lat_total {
    uint64_t n, sum_ns, max_ns;
    uint64_t count[LAT_NBUCKETS];
};

struct lat_window {
    struct lat_slot slot[LATWIN_SLOTS];
    struct lat_total total;
};

/* Over the last minute; n == 0: nothing was timed (the figures are 0). */
struct lat_summary {
    uint64_t n;
    double p50_ms, p99_ms, max_ms;
};

struct lat_point {
    float req_s;
    float p99_ms;                   /* < 0: no request in that step */
};

struct lstat {
    char key[sizeof(((struct address *)0)->text)];
    struct lat_window win;
    struct lat_point hist[LATWIN_HISTORY];  /* a ring, oldest at hist_head */
    unsigned hist_n, hist_head;
    int64_t hist_next;              /* the next step to become a point */
};

struct lstats {
    struct lstat *v;
    size_t n;
    uint16_t *ids;                  /* parallel to the config's listens */
    size_t nids;
};

void latwin_add(struct lat_window *w, int64_t now_ms, const struct lat_delta *d);
void latwin_minute(const struct lat_window *w, int64_t now_ms, struct lat_summary *s);

/* ids[] for cfg's built-in listeners (LAT_NO_LISTENER for app pools' and
 * when the table is full), adding table entries for new addresses. -1 when
 * out of memory (ids are then all LAT_NO_LISTENER). */
int lstats_assign(struct lstats *ls, const struct config *cfg, int64_t now_ms);
/* Turn closed steps into chart points; call at least every step. */
void lstats_tick(struct lstats *ls, int64_t now_ms);
const struct lstat *lstats_find(const struct lstats *ls, const char *key);
/* Point i (0 = oldest) of the chart. */
const struct lat_point *lstat_point(const struct lstat *l, unsigned i);
void lstats_free(struct lstats *ls);

#endif
