/* proxy: the PROXY-protocol stage in front of a connection's protocol. On a
 * listener with proxy_protocol, conn_open hands the connection here instead
 * of to conn_admit: the sender must be in proxy_from; its header is peeked,
 * checked (workers/proxy_hdr.c) and consumed, and only it, so whatever
 * follows (a request, a TLS ClientHello) stays in the socket for the
 * protocol; c->peer becomes the client's address, then conn_admit(c). */
#ifndef PREFORKD_PROXY_H
#define PREFORKD_PROXY_H

#include "workers/worker.h"

/* Take c (accepted, not in epoll, c->peer the socket's source): admitted,
 * waiting for the rest of its header, or closed (and counted, and logged at
 * most once a second per source) before this returns. */
void proxy_stage_open(struct conn *c);

#endif
