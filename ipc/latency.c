/* latency: bucket bounds, the sparse record codec of latency.h and
 * percentiles. The decoder trusts nothing: a worker's bytes may be garbage. */
#include "ipc/latency.h"

#include <stdio.h>
#include <string.h>

#define B(x) (x##000ull)                    /* microseconds as nanoseconds */
const uint64_t lat_bound_ns[LAT_NBOUNDS] = {
    B(10), B(12), B(15), B(20), B(25), B(30), B(40), B(50), B(60), B(80),
    B(100), B(120), B(150), B(200), B(250), B(300), B(400), B(500), B(600), B(800),
    B(1000), B(1200), B(1500), B(2000), B(2500), B(3000), B(4000), B(5000), B(6000),
    B(8000),
    B(10000), B(12000), B(15000), B(20000), B(25000), B(30000), B(40000), B(50000),
    B(60000), B(80000),
    B(100000), B(120000), B(150000), B(200000), B(250000), B(300000), B(400000),
    B(500000), B(600000), B(800000),
    B(1000000), B(1200000), B(1500000), B(2000000), B(2500000), B(3000000),
    B(4000000), B(5000000), B(6000000), B(8000000),
    B(10000000), B(12000000), B(15000000), B(20000000), B(25000000), B(30000000),
    B(40000000), B(50000000), B(60000000),
};
#undef B

static unsigned char *put_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* -1 when truncated or longer than max_bytes. */
static int get_varint(const unsigned char **p, const unsigned char *end,
                      unsigned max_bytes, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned i = 0; i < max_bytes && *p < end; i++) {
        unsigned char b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

size_t lat_encode(const struct lat_acc *a, uint16_t id, unsigned char *out)
{
    unsigned char *p = out, *nnz;
    unsigned n = 0;
    *p++ = (unsigned char)(id & 0xff);
    *p++ = (unsigned char)(id >> 8);
    nnz = p++;
    p = put_varint(p, a->sum_ns);
    p = put_varint(p, a->max_ns);
    for (unsigned i = 0; i < LAT_NBUCKETS; i++) {
        if (!a->count[i])
            continue;
        *p++ = (unsigned char)i;
        p = put_varint(p, a->count[i]);
        n++;
    }
    *nnz = (unsigned char)n;
    return (size_t)(p - out);
}

int lat_decode(const unsigned char **p, const unsigned char *end, struct lat_delta *d)
{
    const unsigned char *q = *p;
    uint64_t v;
    if (q == end)
        return 0;
    if (end - q < 3)
        return -1;
    memset(d, 0, sizeof *d);
    d->listener = (uint16_t)(q[0] | q[1] << 8);
    unsigned nnz = q[2];
    q += 3;
    if (nnz > LAT_NBUCKETS || get_varint(&q, end, 10, &d->sum_ns) != 0 ||
        get_varint(&q, end, 10, &d->max_ns) != 0)
        return -1;
    int last = -1;
    for (unsigned k = 0; k < nnz; k++) {
        if (q == end)
            return -1;
        int i = *q++;
        if (i <= last || i >= LAT_NBUCKETS || get_varint(&q, end, 5, &v) != 0 ||
            v == 0 || v > UINT32_MAX || d->n + v > UINT32_MAX)
            return -1;
        d->count[i] = (uint32_t)v;
        d->n += (uint32_t)v;
        last = i;
    }
    *p = q;
    return 1;
}

double lat_quantile_ns(const uint64_t *count, uint64_t n, double q, uint64_t max_ns)
{
    if (n == 0)
        return 0;
    double rank = q * (double)n;            /* the value with this many at or below */
    if (rank < 1)
        rank = 1;
    uint64_t below = 0;
    for (unsigned i = 0; i < LAT_NBUCKETS; i++) {
        if (!count[i])
            continue;
        if ((double)(below + count[i]) >= rank) {
            double lo = i ? (double)lat_bound_ns[i - 1] : 0;
            double hi = i < LAT_NBOUNDS ? (double)lat_bound_ns[i] : (double)max_ns;
            double v = lo + (hi - lo) * (rank - (double)below) / (double)count[i];
            return v < (double)max_ns ? v : (double)max_ns;
        }
        below += count[i];
    }
    return (double)max_ns;
}

const char *lat_bound_text(unsigned i, char *buf, size_t cap)
{
    uint64_t ns = lat_bound_ns[i];
    char frac[16];
    snprintf(frac, sizeof frac, "%09llu", (unsigned long long)(ns % 1000000000ull));
    size_t len = strlen(frac);
    while (len > 0 && frac[len - 1] == '0')
        frac[--len] = '\0';
    snprintf(buf, cap, "%llu%s%s", (unsigned long long)(ns / 1000000000ull),
             len ? "." : "", frac);
    return buf;
}
