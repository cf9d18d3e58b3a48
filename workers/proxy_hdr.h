/* proxy_hdr: a strict, bounded parser of the PROXY protocol header (v1 text
 * and v2 binary, HAProxy's doc/proxy-protocol.txt) that a load balancer puts
 * in front of a connection's bytes to say whose connection it is. Pure: bytes
 * in, a verdict out; no I/O, no allocation (workers/proxy.c reads the socket). */
#ifndef PREFORKD_PROXY_HDR_H
#define PREFORKD_PROXY_HDR_H

#include <stdbool.h>
#include <stddef.h>

#include "workers/peer.h"

/* v1: the longest line the spec allows, CRLF included ("PROXY UNKNOWN" with
 * two full IPv6 addresses and ports). */
#define PROXY_V1_MAX 107
/* v2: 16 fixed bytes, then addresses and TLVs. The spec allows 65535 bytes of
 * them; we take what HAProxy and cloud balancers send (addresses, ALPN,
 * authority, unique id, SSL details, CRC): 1 KiB, more is "too long". */
#define PROXY_V2_FIXED 16
#define PROXY_V2_MAX_BODY 1024
/* Whatever the version, a header is never longer than this. */
#define PROXY_HDR_MAX (PROXY_V2_FIXED + PROXY_V2_MAX_BODY)

struct proxy_hdr {
    int version;                    /* 1 or 2 */
    /* true: v2 LOCAL, v1 UNKNOWN or an address family we do not map (UNSPEC,
     * UNIX, ...): the connection's own endpoints stand, src is unset */
    bool local;
    struct peer_addr src;           /* the client, when !local */
    struct peer_addr dst;           /* the address it connected to */
};

/* Look at the first len bytes a connection sent. Returns the header's length
 * (> 0, *out filled; the bytes after it belong to the protocol), 0 when every
 * byte so far fits a header but it is not complete yet, or -1 when it cannot
 * be one: *why then says what is wrong (a static string). Never reads past
 * buf[len - 1] nor past PROXY_HDR_MAX bytes. */
int proxy_hdr_parse(const unsigned char *buf, size_t len, struct proxy_hdr *out,
                    const char **why);

#endif
