/* Request latency (issue 15): the fixed log-scaled histogram, its sparse
 * wire form and percentiles. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/ipc.h"
#include "ipc/latency.h"
#include "tests/harness.h"

/* --- the histogram, its codec, percentiles, address rules ---------------- */

TestSuite(status_latency_unit);

Test(status_latency_unit, bucket_is_the_first_bound_at_or_above)
{
    for (uint64_t v = 0; v < 80000000000ull; v = v < 100 ? v + 1 : v + v / 7 + 1) {
        unsigned want = 0;
        while (want < LAT_NBOUNDS && v > lat_bound_ns[want])
            want++;
        cr_assert_eq(lat_bucket(v), want, "value %llu", (unsigned long long)v);
        if (want < LAT_NBOUNDS) {       /* and the bounds themselves */
            cr_assert_eq(lat_bucket(lat_bound_ns[want]), want);
            cr_assert_eq(lat_bucket(lat_bound_ns[want] + 1), want + 1);
        }
    }
    cr_assert_eq(lat_bucket(UINT64_MAX), LAT_NBOUNDS);
    char b[32];
    cr_assert_str_eq(lat_bound_text(0, b, sizeof b), "0.00001");
    cr_assert_str_eq(lat_bound_text(21, b, sizeof b), "0.0012");
    cr_assert_str_eq(lat_bound_text(LAT_NBOUNDS - 1, b, sizeof b), "60");
}

Test(status_latency_unit, records_round_trip_and_fit_a_frame)
{
    struct lat_acc a = { 0 };
    for (unsigned i = 0; i < LAT_NBUCKETS; i++)   /* the worst case: every bucket */
        a.count[i] = UINT32_MAX / LAT_NBUCKETS;
    a.n = a.count[0] * LAT_NBUCKETS;
    a.sum_ns = UINT64_MAX;
    a.max_ns = UINT64_MAX - 1;
    unsigned char buf[LAT_RECORD_MAX + 16];
    size_t len = lat_encode(&a, 513, buf);
    cr_assert_leq(len, LAT_RECORD_MAX);
    cr_assert_geq(IPC_MAX_PAYLOAD / LAT_RECORD_MAX, 9);
    const unsigned char *p = buf;
    struct lat_delta d;
    cr_assert_eq(lat_decode(&p, buf + len, &d), 1);
    cr_assert_eq(p, buf + len);
    cr_assert_eq(d.listener, 513);
    cr_assert_eq(d.n, a.n);
    cr_assert_eq(d.sum_ns, a.sum_ns);
    cr_assert_eq(d.max_ns, a.max_ns);
    cr_assert_eq(memcmp(d.count, a.count, sizeof d.count), 0);
    cr_assert_eq(lat_decode(&p, buf + len, &d), 0, "end of payload");
    /* Cut anywhere, it is refused, never read past. */
    for (size_t cut = 1; cut < len; cut++) {
        p = buf;
        cr_assert_eq(lat_decode(&p, buf + cut, &d), -1, "cut at %zu", cut);
    }
}

Test(status_latency_unit, garbage_records_refused)
{
    struct lat_delta d;
    const unsigned char *p;
    /* buckets out of order, out of range, a zero count, a long varint */
    static const unsigned char bad[][12] = {
        { 1, 0, 2, 5, 5, 7, 1, 3, 1 },
        { 1, 0, 1, 5, 5, LAT_NBUCKETS, 1 },
        { 1, 0, 1, 5, 5, 3, 0 },
        { 1, 0, 1, 5, 5, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 },
        { 1, 0, 200, 5, 5 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = bad[i];
        cr_assert_eq(lat_decode(&p, bad[i] + sizeof bad[i], &d), -1, "case %zu", i);
    }
}

Test(status_latency_unit, quantiles_from_buckets)
{
    uint64_t count[LAT_NBUCKETS] = { 0 };
    /* 99 requests of 1.1 ms, 1 of 250 ms */
    count[lat_bucket(1100000)] = 99;
    count[lat_bucket(250000000)] = 1;
    double p50 = lat_quantile_ns(count, 100, 0.5, 250000000) / 1e6;
    double p99 = lat_quantile_ns(count, 100, 0.99, 250000000) / 1e6;
    double p100 = lat_quantile_ns(count, 100, 1.0, 250000000) / 1e6;
    cr_assert(p50 > 1.0 && p50 <= 1.2, "p50 %.3f", p50);
    cr_assert(p99 > 1.0 && p99 <= 1.2, "p99 %.3f", p99);
    cr_assert(fabs(p100 - 250) < 0.001, "p100 %.3f", p100);
    cr_assert_eq(lat_quantile_ns(count, 0, 0.5, 0), 0);
}
