/* latwin: sliding latency windows and per-listener charts (latwin.h). */
#include "server/latwin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct lat_slot *slot_for(struct lat_window *w, int64_t step)
{
    struct lat_slot *s = &w->slot[step % LATWIN_SLOTS];
    if (s->step != step) {
        memset(s, 0, sizeof *s);
        s->step = step;
    }
    return s;
}

void latwin_add(struct lat_window *w, int64_t now_ms, const struct lat_delta *d)
{
    struct lat_slot *s = slot_for(w, now_ms / LATWIN_STEP_MS);
    for (unsigned i = 0; i < LAT_NBUCKETS; i++) {
        if (!d->count[i])
            continue;
        s->count[i] += d->count[i];
        w->total.count[i] += d->count[i];
    }
    s->n += d->n;
    s->sum_ns += d->sum_ns;
    if (d->max_ns > s->max_ns)
        s->max_ns = d->max_ns;
    w->total.n += d->n;
    w->total.sum_ns += d->sum_ns;
    if (d->max_ns > w->total.max_ns)
        w->total.max_ns = d->max_ns;
}

static void summarize(const uint64_t *count, uint64_t n, uint64_t max_ns,
                      struct lat_summary *s)
{
    s->n = n;
    s->p50_ms = lat_quantile_ns(count, n, 0.50, max_ns) / 1e6;
    s->p99_ms = lat_quantile_ns(count, n, 0.99, max_ns) / 1e6;
    s->max_ms = (double)max_ns / 1e6;
}

void latwin_minute(const struct lat_window *w, int64_t now_ms, struct lat_summary *s)
{
    int64_t now = now_ms / LATWIN_STEP_MS;
    uint64_t count[LAT_NBUCKETS] = { 0 }, n = 0, max_ns = 0;
    for (unsigned k = 0; k < LATWIN_SLOTS; k++) {
        const struct lat_slot *sl = &w->slot[k];
        if (!sl->n || sl->step <= now - LATWIN_SLOTS || sl->step > now)
            continue;
        for (unsigned i = 0; i < LAT_NBUCKETS; i++)
            count[i] += sl->count[i];
        n += sl->n;
        if (sl->max_ns > max_ns)
            max_ns = sl->max_ns;
    }
    summarize(count, n, max_ns, s);
}

/* --- listeners ---------------------------------------------------------- */

static uint16_t find_or_add(struct lstats *ls, const char *key, int64_t now_ms)
{
    for (size_t i = 0; i < ls->n; i++)
        if (strcmp(ls->v[i].key, key) == 0)
            return (uint16_t)i;
    if (ls->n >= LSTATS_MAX)
        return LAT_NO_LISTENER;
    struct lstat *v = realloc(ls->v, (ls->n + 1) * sizeof *v);
    if (!v)
        return LAT_NO_LISTENER;
    ls->v = v;
    struct lstat *l = &v[ls->n];
    memset(l, 0, sizeof *l);
    snprintf(l->key, sizeof l->key, "%s", key);
    l->hist_next = now_ms / LATWIN_STEP_MS;
    return (uint16_t)ls->n++;
}

int lstats_assign(struct lstats *ls, const struct config *cfg, int64_t now_ms)
{
    uint16_t *ids = calloc(cfg->nlistens ? cfg->nlistens : 1, sizeof *ids);
    if (!ids)
        return -1;
    for (size_t i = 0; i < cfg->nlistens; i++)
        ids[i] = cfg->listens[i].protocol == PROTO_APP ? LAT_NO_LISTENER
                 : find_or_add(ls, cfg->listens[i].addr.text, now_ms);
    free(ls->ids);
    ls->ids = ids;
    ls->nids = cfg->nlistens;
    return 0;
}

static void push_point(struct lstat *l, const struct lat_slot *s)
{
    struct lat_point p = { 0, -1 };
    if (s && s->n) {
        uint64_t count[LAT_NBUCKETS];
        for (unsigned i = 0; i < LAT_NBUCKETS; i++)
            count[i] = s->count[i];
        p.req_s = (float)s->n * 1000.0f / LATWIN_STEP_MS;
        p.p99_ms = (float)(lat_quantile_ns(count, s->n, 0.99, s->max_ns) / 1e6);
    }
    if (l->hist_n < LATWIN_HISTORY) {
        l->hist[(l->hist_head + l->hist_n++) % LATWIN_HISTORY] = p;
    } else {
        l->hist[l->hist_head] = p;
        l->hist_head = (l->hist_head + 1) % LATWIN_HISTORY;
    }
}

void lstats_tick(struct lstats *ls, int64_t now_ms)
{
    int64_t now = now_ms / LATWIN_STEP_MS;
    for (size_t i = 0; i < ls->n; i++) {
        struct lstat *l = &ls->v[i];
        if (now - l->hist_next > LATWIN_HISTORY)
            l->hist_next = now - LATWIN_HISTORY;
        for (; l->hist_next < now; l->hist_next++) {
            const struct lat_slot *s = &l->win.slot[l->hist_next % LATWIN_SLOTS];
            push_point(l, s->step == l->hist_next ? s : NULL);
        }
    }
}

const struct lstat *lstats_find(const struct lstats *ls, const char *key)
{
    for (size_t i = 0; i < ls->n; i++)
        if (strcmp(ls->v[i].key, key) == 0)
            return &ls->v[i];
    return NULL;
}

const struct lat_point *lstat_point(const struct lstat *l, unsigned i)
{
    return &l->hist[(l->hist_head + i) % LATWIN_HISTORY];
}

void lstats_free(struct lstats *ls)
{
    free(ls->v);
    free(ls->ids);
    memset(ls, 0, sizeof *ls);
}
