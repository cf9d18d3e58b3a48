/* tls: HTTPS for a worker's connections (OpenSSL 3). A connection on a
 * listener with an SSL_CTX gets an SSL object at conn_admit; its handshake
 * runs in the worker's epoll loop under header_timeout, then the protocol
 * is opened and its reads and writes go through workers/http_io.c, which
 * finds the SSL object by fd here. Session tickets are sealed with keys the
 * master hands the whole pool, so a session resumes on any worker. */
#ifndef PREFORKD_TLS_H
#define PREFORKD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/ssl.h>

#include "ipc/ipc.h"

struct conn;
struct worker;

/* A session ticket key: its name (sent in the ticket), AES-256 key and
 * HMAC-SHA256 key. The current one seals, the previous one still opens. */
struct tls_ticket_key {
    unsigned char name[16], aes[32], hmac[32];
};
_Static_assert(2 * sizeof(struct tls_ticket_key) == IPC_TLS_KEYS_SIZE,
               "the keys message is the current and the previous key");

/* Seal tickets of CTX with the pool's keys (the master, at load). */
int tls_ctx_use_pool_tickets(SSL_CTX *ctx);
/* Let CTX's handshakes take the certificate of the site a client names
 * (SNI, matched as Host is: workers/http_site.c); other names, and none,
 * keep CTX's own (the master, at load, when a site has tls { }). */
void tls_ctx_use_site_certs(SSL_CTX *ctx);
/* Staple DER (an OCSP response of LEN bytes, which CTX now owns) to the
 * handshakes of clients that ask for it, until NEXT_UPDATE; later it is
 * stale and nothing is stapled (the master, at load). 0, or -1. */
int tls_ctx_staple(SSL_CTX *ctx, unsigned char *der, long len, time_t next_update);
/* Install the current and previous keys (PAYLOAD: cur then prev, as the
 * master sends them); 0, or -1 on a bad length or no AES-256-CBC. */
int tls_ticket_keys_set(const void *payload, size_t len);

/* c's listener speaks TLS and its handshake is not done: start it, and open
 * the protocol when it completes (closing c on failure). */
bool tls_wanted(const struct conn *c);
void tls_admit(struct conn *c);
/* tls_admit with SSL made and bound by the caller: tls_admit binds it to
 * c's socket. This seam exists for the fuzz harness (tests/fuzz_tls.c),
 * which binds memory BIOs instead and so drives this file's own handshake
 * and I/O code without sockets. The slot is found by SSL_get_fd(ssl): the
 * BIOs must answer BIO_get_fd with c->fd. SSL is c's (freed on failure). */
void tls_admit_ssl(struct conn *c, SSL *ssl);
/* Conns whose SSL holds bytes (read ahead, or decrypted and not yet taken)
 * that the socket will not announce:
 * handed their EPOLLIN now. tls_pending_any: wake without waiting. */
bool tls_pending_any(void);
void tls_run_pending(struct worker *w);
/* Before close(c->fd): close_notify when it is due, free the SSL. */
void tls_conn_close(struct conn *c);

/* The SSL of a connection's fd, or NULL: plain. */
SSL *tls_of(int fd);
/* read(2), send(2), sendfile(2), shutdown(SHUT_WR) contracts over TLS. */
ssize_t tls_read(SSL *ssl, void *buf, size_t len);
ssize_t tls_write(SSL *ssl, const void *buf, size_t len);
ssize_t tls_sendfile(SSL *ssl, int in_fd, off_t *off, size_t count);
int tls_shutdown_wr(SSL *ssl, int fd);
/* " TLSv1.3 TLS_AES_256_GCM_SHA384" when the listener logs it (see
 * http_io_tls_text); its length or 0. */
size_t tls_log_text(SSL *ssl, char *out, size_t cap);

/* Whether kernel TLS can carry files (SSL_sendfile): OpenSSL built with it
 * and the kernel's tls ULP loaded. */
bool tls_ktls_available(void);

#endif
