/* peer: a client's address, kept compact in every connection (an idle
 * connection costs what it holds); set from accept4 or from a PROXY header. */
#ifndef PREFORKD_PEER_H
#define PREFORKD_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct peer_addr {
    uint8_t family;                 /* AF_INET, AF_INET6, or 0 = unknown */
    uint16_t port;                  /* host order */
    uint8_t addr[16];               /* the first 4 bytes for AF_INET */
};

/* Fill p from a socket address (AF_INET/AF_INET6; anything else: unknown). */
void peer_from_sockaddr(struct peer_addr *p, const struct sockaddr *sa);
/* The address as a socket address (to match it against rules, see
 * server/cidr.h); family AF_UNSPEC when unknown. */
void peer_to_sockaddr(const struct peer_addr *p, struct sockaddr_storage *ss);
/* The address as text, "-" when unknown; cap >= INET6_ADDRSTRLEN. */
const char *peer_addr_text(const struct peer_addr *p, char *out, size_t cap);

#endif
