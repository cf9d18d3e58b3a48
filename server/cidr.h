/* cidr: client address rules ("127.0.0.1", "::1", "10.0.0.0/8",
 * "fd00::/8") and matching a peer against them. IPv4-mapped IPv6 peers
 * (a dual-stack listener's) match IPv4 rules. */
#ifndef PREFORKD_CIDR_H
#define PREFORKD_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct cidr {
    int family;                     /* AF_INET or AF_INET6 */
    unsigned char addr[16];         /* network byte order, host bits zero */
    int prefix;                     /* 0..32 or 0..128 */
};

/* 0, or -1 with err ("..." is not an address or address/prefix). */
int cidr_parse(const char *text, struct cidr *out, char *err, size_t errlen);

/* Does the peer address match one of the n rules? */
bool cidr_match(const struct cidr *rules, size_t n, const struct sockaddr *sa);

#endif
