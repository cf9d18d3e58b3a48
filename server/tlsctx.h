/* tlsctx: the master's side of TLS. It builds one SSL_CTX per tls { }
 * listener when it loads the configuration (at start and at each reload,
 * as root: the key may be readable by root only), so a bad certificate or
 * key rejects the reload like any bad configuration and workers inherit the
 * context by fork. It also makes the pool's session ticket keys (getrandom)
 * and rotates them; they go to workers over the command pipes only. */
#ifndef PREFORKD_TLSCTX_H
#define PREFORKD_TLSCTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc/ipc.h"
#include "server/config.h"

/* Every tls listener of CFG gets its listens[i].ssl_ctx. 0, or -1 with err
 * as "FILE:LINE: message" and nothing built. */
int tlsctx_load(struct config *cfg, char *err, size_t errlen);
void tlsctx_free(struct config *cfg);
/* Any listener of CFG speaks TLS. */
bool tlsctx_any(const struct config *cfg);
/* One line for the log: how files go out over TLS. */
const char *tlsctx_file_path(void);

/* Make the first keys (current and previous); 0 or -1 (no randomness).
 * The period is an hour, or PREFORKD_TLS_TICKET_ROTATE seconds. */
int tlsctx_keys_init(int64_t now_ms);
/* When the next rotation is due, monotonic ms. */
int64_t tlsctx_keys_due_ms(void);
/* Rotate if due: true with PAYLOAD filled for the workers. */
bool tlsctx_keys_rotate(int64_t now_ms, unsigned char payload[IPC_TLS_KEYS_SIZE]);
/* The current keys, as a worker receives them. */
void tlsctx_keys_payload(unsigned char payload[IPC_TLS_KEYS_SIZE]);

/* A hot upgrade: the keys and the next rotation's time, versioned, for the
 * new master (at most TLSCTX_HANDOVER_MAX bytes into buf); the length, or 0
 * before tlsctx_keys_init. */
#define TLSCTX_HANDOVER_MAX 256
size_t tlsctx_keys_export(unsigned char *buf, size_t cap);
/* In the new master, before tlsctx_keys_init: what the old one exported
 * (len 0: nothing came). tlsctx_keys_init then keeps those keys and their
 * schedule, or logs why not and makes new ones. */
void tlsctx_keys_take(const void *blob, size_t len);

#endif
