/* cidr: parsing and matching of address rules (cidr.h). */
#include "server/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cidr_parse(const char *text, struct cidr *out, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
    memset(out, 0, sizeof *out);
    if (hlen == 0 || hlen >= sizeof host)
        goto bad;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, host, out->addr) == 1)
        out->family = AF_INET6;
    else
        goto bad;
    int max = out->family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || p < 0 || p > max)
            goto bad;
        out->prefix = (int)p;
    }
    for (int bit = out->prefix; bit < max; bit++)
        out->addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    return 0;
bad:
    snprintf(err, errlen, "\"%s\" is not an IP address or ADDRESS/PREFIX "
             "(e.g. \"127.0.0.1\", \"10.0.0.0/8\", \"::1\")", text);
    return -1;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *net, int prefix)
{
    int bytes = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, (size_t)bytes) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[bytes] & mask) == net[bytes];
}

bool cidr_match(const struct cidr *rules, size_t n, const struct sockaddr *sa)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    int family = sa->sa_family;
    const unsigned char *a;
    if (family == AF_INET) {
        a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (memcmp(a, mapped, sizeof mapped) == 0) {
            family = AF_INET;
            a += 12;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (rules[i].family == family && prefix_equal(a, rules[i].addr, rules[i].prefix))
            return true;
    return false;
}
