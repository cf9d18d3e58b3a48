/* fuzz_proxy: libFuzzer harness of the PROXY-header parser
 * (workers/proxy_hdr.c). Each input is the first bytes of a connection.
 * Besides the sanitizers' findings, it checks what the stage relies on:
 * the verdict never goes back as bytes arrive (a prefix that needs more
 * never follows a refusal; a complete header stays complete and the same),
 * a header never claims more bytes than it got or than PROXY_HDR_MAX, a
 * refusal always says why, and an address is IPv4 or IPv6. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "workers/proxy_hdr.h"

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_header(const struct proxy_hdr *h)
{
    check(h->version == 1 || h->version == 2);
    if (!h->local) {
        check(h->src.family == AF_INET || h->src.family == AF_INET6);
        check(h->dst.family == h->src.family);
    }
}

static int same_peer(const struct peer_addr *a, const struct peer_addr *b)
{
    return a->family == b->family && a->port == b->port &&
           memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

static int same_header(const struct proxy_hdr *a, const struct proxy_hdr *b)
{
    return a->version == b->version && a->local == b->local &&
           same_peer(&a->src, &b->src) && same_peer(&a->dst, &b->dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_hdr first, h;
    const char *why;
    int settled = 0;                /* the verdict once it is not "more" */
    for (size_t k = 0; k <= size; k++) {
        int r = proxy_hdr_parse(data, k, &h, &why);
        check(r >= -1 && r <= (int)k && r <= PROXY_HDR_MAX);
        if (r < 0)
            check(why != NULL);
        if (settled)
            check(r == settled);    /* refused stays refused, done stays done */
        if (r > 0 && !settled) {
            check_header(&h);
            first = h;
        }
        if (r > 0)
            check(same_header(&first, &h));
        if (r != 0)
            settled = r;
        /* a header is complete within PROXY_HDR_MAX bytes or refused */
        check(k < PROXY_HDR_MAX || settled != 0);
    }
    return 0;
}
