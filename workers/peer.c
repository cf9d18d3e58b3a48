/* peer: see workers/peer.h. */
#include "workers/peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

void peer_from_sockaddr(struct peer_addr *p, const struct sockaddr *sa)
{
    memset(p, 0, sizeof *p);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        p->family = AF_INET;
        p->port = ntohs(in->sin_port);
        memcpy(p->addr, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        p->family = AF_INET6;
        p->port = ntohs(in6->sin6_port);
        memcpy(p->addr, &in6->sin6_addr, 16);
    }
}

void peer_to_sockaddr(const struct peer_addr *p, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (p->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(p->port);
        memcpy(&in->sin_addr, p->addr, 4);
    } else if (p->family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(p->port);
        memcpy(&in6->sin6_addr, p->addr, 16);
    } else {
        ss->ss_family = AF_UNSPEC;
    }
}

const char *peer_addr_text(const struct peer_addr *p, char *out, size_t cap)
{
    if ((p->family != AF_INET && p->family != AF_INET6) ||
        !inet_ntop(p->family, p->addr, out, (socklen_t)cap))
        snprintf(out, cap, "-");
    return out;
}
