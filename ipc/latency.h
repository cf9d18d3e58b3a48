/* latency: the fixed log-scaled histogram of request durations that
 * workers fill and the master sums, and its wire form on the status pipe.
 *
 * Buckets: upper bounds 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k from 10 us
 * to 8 s, then 10 s to 60 s (69 bounds; a bucket is at most 1/3 wider than
 * the one below, so a percentile read from it is within that of the truth),
 * and a last bucket above 60 s. They are also the Prometheus `le` values.
 * Finding a bucket is a count of leading zeros and at most three compares.
 *
 * Wire: worker -> master IPC_LATENCY frames carry, per listener that served
 * anything since the last frame that got through, a sparse record:
 *   u16 listener id, u8 nonzero buckets, varint sum_ns, varint max_ns,
 *   then per nonzero bucket: u8 index (increasing), varint count.
 * A record is at most LAT_RECORD_MAX bytes (443), so a frame (<= PIPE_BUF)
 * holds at least nine; more listeners than fit go in further frames. */
#ifndef PREFORKD_LATENCY_H
#define PREFORKD_LATENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LAT_NBOUNDS   69
#define LAT_NBUCKETS  (LAT_NBOUNDS + 1)     /* the last: above 60 s */
#define LAT_RECORD_MAX (2 + 1 + 10 + 10 + LAT_NBUCKETS * (1 + 5))
#define LAT_NO_LISTENER 0xffffu              /* a listener not timed */

/* Upper bounds in nanoseconds, increasing; a value equal to a bound is in
 * that bound's bucket (Prometheus `le`). */
extern const uint64_t lat_bound_ns[LAT_NBOUNDS];

/* Bucket of a duration. 2^k ns first reaches bound 3(k-13) (10 per decade
 * is 3.01 per doubling): start there, step over at most three. */
static inline unsigned lat_bucket(uint64_t ns)
{
    int k = 63 - __builtin_clzll(ns | 1);
    unsigned i = k <= 13 ? 0 : k >= 36 ? LAT_NBOUNDS : 3u * (unsigned)(k - 13);
    while (i < LAT_NBOUNDS && ns > lat_bound_ns[i])
        i++;
    return i;
}

/* A worker's counts for one listener since its last delivered frame. */
struct lat_acc {
    uint32_t n;                     /* 0: nothing to send */
    uint32_t count[LAT_NBUCKETS];
    uint64_t sum_ns, max_ns;
};

static inline void lat_acc_add(struct lat_acc *a, uint64_t ns, uint32_t times)
{
    a->count[lat_bucket(ns)] += times;
    a->n += times;
    a->sum_ns += ns * times;
    if (ns > a->max_ns)
        a->max_ns = ns;
}

/* One decoded record (counts of one listener over one report period). */
struct lat_delta {
    uint16_t listener;
    uint32_t n;
    uint32_t count[LAT_NBUCKETS];
    uint64_t sum_ns, max_ns;
};

/* Encode a's record for listener id into out (>= LAT_RECORD_MAX bytes);
 * returns its length. */
size_t lat_encode(const struct lat_acc *a, uint16_t id, unsigned char *out);

/* Decode the next record from [*p, end): 1 with *p past it, 0 at end, -1
 * when malformed (truncated, bucket out of range or out of order, a count
 * or varint too large). */
int lat_decode(const unsigned char **p, const unsigned char *end, struct lat_delta *d);

/* The q-quantile (0 < q <= 1) in nanoseconds of counts summing to n, from
 * the bucket that holds it, linearly within the bucket, never above max_ns
 * (the largest value seen). 0 when n is 0. */
double lat_quantile_ns(const uint64_t *count, uint64_t n, double q, uint64_t max_ns);

/* A bound as Prometheus writes seconds: "0.00001", "0.0012", "60". */
const char *lat_bound_text(unsigned i, char *buf, size_t cap);

#endif
