/* tls: a worker's TLS connections (see tls.h). Per fd, the SSL object and
 * two flags; OpenSSL's own buffers are all a connection holds beyond that
 * (SSL_MODE_RELEASE_BUFFERS drops them while it is idle). */
#include "workers/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "server/log.h"
#include "workers/http_site.h"
#include "workers/worker.h"

/* Files without kernel TLS: one TLS record's worth per SSL_write. */
#define FILE_CHUNK 16384

struct tls_slot {
    SSL *ssl;
    bool settled;           /* the handshake's outcome is counted */
    bool broken;            /* a fatal error: no close_notify */
    bool pending;           /* on the pending list */
};

/* Per worker process (the master uses only the keys). */
static struct {
    struct tls_slot *by_fd;
    size_t cap;
    int *pend;              /* fds with decrypted bytes left in OpenSSL */
    size_t npend, pend_cap;
    void (*dispatch)(struct worker *, struct ev *, uint32_t);  /* the conn's own */
    struct tlist *handshake_tl;
    unsigned char filebuf[FILE_CHUNK];
} T;

static struct {
    struct tls_ticket_key cur, prev;
    bool have;
    EVP_CIPHER *aes;        /* fetched once (the master's, inherited), not
                               looked up by name for every ticket */
} K;

/* --- ticket keys -------------------------------------------------------- */

int tls_ticket_keys_set(const void *payload, size_t len)
{
    if (len != 2 * sizeof(struct tls_ticket_key))
        return -1;
    memcpy(&K.cur, payload, sizeof K.cur);
    memcpy(&K.prev, (const unsigned char *)payload + sizeof K.cur, sizeof K.prev);
    if (!K.aes)
        K.aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    K.have = K.aes != NULL;
    return K.have ? 0 : -1;
}

static int set_hmac_key(EVP_MAC_CTX *hctx, const struct tls_ticket_key *k)
{
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac,
                                                  sizeof k->hmac);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* OpenSSL's ticket callback (TLS 1.2 and 1.3 tickets alike): seal with the
 * current key; open with the current (1) or the previous one (2: the
 * client gets a fresh ticket); an unknown name is a full handshake (0).
 * A TLS 1.3 resumption always gets a fresh ticket (2), as nginx does:
 * clients use a 1.3 ticket once (RFC 8446, C.4), so without one their next
 * connection is a full handshake. In `make bench` wrk's client resumed only
 * every other connection and spent 40% more CPU per handshake. */
static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
                     EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    if (!K.have)
        return 0;           /* no ticket issued, none opened: full handshakes */
    if (enc) {
        memcpy(name, K.cur.name, sizeof K.cur.name);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(K.aes)) != 1 ||
            EVP_EncryptInit_ex(ectx, K.aes, NULL, K.cur.aes, iv) != 1 ||
            set_hmac_key(hctx, &K.cur) != 0)
            return -1;
        return 1;
    }
    const struct tls_ticket_key *k =
        memcmp(name, K.cur.name, sizeof K.cur.name) == 0 ? &K.cur
        : memcmp(name, K.prev.name, sizeof K.prev.name) == 0 ? &K.prev : NULL;
    if (!k)
        return 0;
    if (set_hmac_key(hctx, k) != 0 ||
        EVP_DecryptInit_ex(ectx, K.aes, NULL, k->aes, iv) != 1)
        return -1;
    return k == &K.cur && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
}

int tls_ctx_use_pool_tickets(SSL_CTX *ctx)
{
    return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) == 1 ? 0 : -1;
}

/* --- certificates per site (SNI) ---------------------------------------- */

/* The client hello's server name picks a site as a Host value would; a
 * site with a certificate lends it to this handshake (SSL_set_SSL_CTX takes
 * the certificate and key; the protocols and ciphers stay the listener's).
 * The site's context seals and opens tickets with the same keys, so a
 * session resumes whichever certificate it began with. */
static int choose_site_cert(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !http_sites_virtual())
        return SSL_TLSEXT_ERR_NOACK;
    const struct http_site *site = http_site_for_host(name, strlen(name));
    if (site->ssl_ctx && SSL_set_SSL_CTX(ssl, site->ssl_ctx) != site->ssl_ctx) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

void tls_ctx_use_site_certs(SSL_CTX *ctx)
{
    SSL_CTX_set_tlsext_servername_callback(ctx, choose_site_cert);
}

/* --- OCSP stapling ------------------------------------------------------ */

/* The response the master read and checked (server/tlsctx.c), freed with
 * its context. */
struct ocsp_staple {
    unsigned char *der;
    long len;
    time_t next_update;
};

static int staple_index = -1;

static void free_staple(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    struct ocsp_staple *st = ptr;
    if (st) {
        OPENSSL_free(st->der);
        OPENSSL_free(st);
    }
}

/* A client asked for the certificate's status: a copy for this handshake
 * (OpenSSL frees it), unless the response is past its next update. */
static int staple_ocsp(SSL *ssl, void *arg)
{
    const struct ocsp_staple *st = arg;
    if (!st || time(NULL) >= st->next_update)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = OPENSSL_memdup(st->der, (size_t)st->len);
    if (!copy || SSL_set_tlsext_status_ocsp_resp(ssl, copy, st->len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

int tls_ctx_staple(SSL_CTX *ctx, unsigned char *der, long len, time_t next_update)
{
    if (staple_index < 0)
        staple_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_staple);
    struct ocsp_staple *st = staple_index >= 0 ? OPENSSL_zalloc(sizeof *st) : NULL;
    if (!st) {
        OPENSSL_free(der);
        return -1;
    }
    *st = (struct ocsp_staple){ .der = der, .len = len, .next_update = next_update };
    if (SSL_CTX_set_ex_data(ctx, staple_index, st) != 1) {
        free_staple(NULL, st, NULL, 0, 0, NULL);
        return -1;
    }
    SSL_CTX_set_tlsext_status_cb(ctx, staple_ocsp);
    SSL_CTX_set_tlsext_status_arg(ctx, st);
    return 0;
}

/* --- the fd table ------------------------------------------------------- */

SSL *tls_of(int fd)
{
    return fd >= 0 && (size_t)fd < T.cap ? T.by_fd[fd].ssl : NULL;
}

static struct tls_slot *slot_for(int fd)
{
    if ((size_t)fd >= T.cap) {
        size_t cap = T.cap ? T.cap : 256;
        while (cap <= (size_t)fd)
            cap *= 2;
        struct tls_slot *grown = realloc(T.by_fd, cap * sizeof *grown);
        if (!grown)
            return NULL;
        memset(grown + T.cap, 0, (cap - T.cap) * sizeof *grown);
        T.by_fd = grown;
        T.cap = cap;
    }
    return &T.by_fd[fd];
}

static void mark_pending(SSL *ssl)
{
    int fd = SSL_get_fd(ssl);
    struct tls_slot *s = tls_of(fd) ? &T.by_fd[fd] : NULL;
    if (!s || s->pending)
        return;
    if (T.npend == T.pend_cap) {
        size_t cap = T.pend_cap ? 2 * T.pend_cap : 64;
        int *grown = realloc(T.pend, cap * sizeof *grown);
        if (!grown)
            return;         /* the next socket event reads it anyway */
        T.pend = grown;
        T.pend_cap = cap;
    }
    s->pending = true;
    T.pend[T.npend++] = fd;
}

/* --- handshake ---------------------------------------------------------- */

bool tls_wanted(const struct conn *c)
{
    return c->ls->conf->ssl_ctx && !tls_of(c->fd);
}

static const char *peer_text(const struct conn *c, char *out, size_t cap)
{
    return peer_addr_text(&c->peer, out, cap);
}

static void handshake_done(struct conn *c, SSL *ssl)
{
    T.by_fd[c->fd].settled = true;
    c->w->stats.tls_handshakes++;
    if (SSL_session_reused(ssl))
        c->w->stats.tls_resumed++;
    c->ev.on_event = T.dispatch;
    c->proto->on_open(c);
}

/* Why a handshake failed, for the log: OpenSSL's reason, or the socket's. */
static const char *failure_reason(int e, char *buf, size_t cap)
{
    unsigned long code = ERR_peek_last_error();
    if (code) {
        const char *r = ERR_reason_error_string(code);
        snprintf(buf, cap, "%s", r ? r : "unknown error");
    } else if (e == SSL_ERROR_SYSCALL && errno) {
        snprintf(buf, cap, "%s", strerror(errno));
    } else {
        snprintf(buf, cap, "the client closed the connection");
    }
    return buf;
}

/* The kind of a failure, for status (the log has OpenSSL's words). */
static enum tls_fail failure_kind(void)
{
    unsigned long code = ERR_peek_last_error();
    if (!code)
        return TLS_FAIL_CLOSED;         /* EOF or a reset: nothing queued */
    switch (ERR_GET_REASON(code)) {
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return TLS_FAIL_CLOSED;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return TLS_FAIL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY:
        return TLS_FAIL_CIPHER;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE:
        return TLS_FAIL_CERTIFICATE;
    }
    return TLS_FAIL_PROTOCOL;
}

static void count_failure(struct conn *c, enum tls_fail kind)
{
    c->w->stats.tls_failed++;
    c->w->stats.tls_failed_by[kind]++;
}

static void handshake_step(struct conn *c)
{
    SSL *ssl = T.by_fd[c->fd].ssl;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        handshake_done(c, ssl);
        return;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (conn_set_interest(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT) != 0)
            conn_close(c);
        return;
    }
    char why[160], addr[64];
    log_info("tls: handshake with %s failed: %s", peer_text(c, addr, sizeof addr),
             failure_reason(e, why, sizeof why));
    count_failure(c, failure_kind());
    ERR_clear_error();
    T.by_fd[c->fd].settled = true;
    T.by_fd[c->fd].broken = true;
    conn_close(c);
}

static void on_handshake_event(struct worker *w, struct ev *ev, uint32_t events)
{
    (void)w, (void)events;
    handshake_step((struct conn *)ev);
}

static void admit_failed(struct conn *c, SSL *ssl)
{
    log_error("tls: out of memory for a connection");
    SSL_free(ssl);
    ERR_clear_error();
    conn_close(c);
}

void tls_admit(struct conn *c)
{
    SSL *ssl = SSL_new(c->ls->conf->ssl_ctx);
    if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
        admit_failed(c, ssl);
        return;
    }
    tls_admit_ssl(c, ssl);
}

void tls_admit_ssl(struct conn *c, SSL *ssl)
{
    struct tls_slot *s = slot_for(c->fd);
    if (!s) {
        admit_failed(c, ssl);
        return;
    }
    SSL_set_accept_state(ssl);
    SSL_set_app_data(ssl, c);
    *s = (struct tls_slot){ .ssl = ssl };
    if (!T.handshake_tl)
        T.handshake_tl = worker_timer_list(c->w, (int64_t)c->w->cfg->http.header_timeout * 1000);
    if (T.handshake_tl)
        conn_timer_set(c, T.handshake_tl);  /* header_timeout covers the handshake */
    T.dispatch = c->ev.on_event;
    c->ev.on_event = on_handshake_event;
    handshake_step(c);  /* the ClientHello usually came with the accept */
}

void tls_conn_close(struct conn *c)
{
    SSL *ssl = tls_of(c->fd);
    if (!ssl)
        return;
    struct tls_slot *s = &T.by_fd[c->fd];
    if (!s->settled) {
        char addr[64];
        count_failure(c, TLS_FAIL_TIMEOUT);
        log_info("tls: handshake with %s not finished within header_timeout (or a drain)",
                 peer_text(c, addr, sizeof addr));
    } else if (!s->broken && SSL_is_init_finished(ssl) &&
               !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
        SSL_shutdown(ssl);      /* close_notify, best effort */
    }
    ERR_clear_error();
    SSL_free(ssl);
    *s = (struct tls_slot){ 0 };
}

/* --- bytes the socket will not announce --------------------------------- */

/* With read-ahead (one read takes what the socket has, not a record at a
 * time) OpenSSL may hold whole records, and a read into a small buffer
 * leaves decrypted bytes: either way epoll says nothing more. */

static bool wants_input(int fd, struct conn **out)
{
    SSL *ssl = tls_of(fd);
    if (!ssl || !SSL_has_pending(ssl))
        return false;
    *out = SSL_get_app_data(ssl);
    return true;
}

bool tls_pending_any(void)
{
    struct conn *c;
    for (size_t i = 0; i < T.npend; i++)
        if (wants_input(T.pend[i], &c) && (c->interest & EPOLLIN))
            return true;
    return false;
}

/* Once per loop turn: a connection waiting for input gets EPOLLIN; one
 * waiting to write keeps its place until it waits for input again. */
void tls_run_pending(struct worker *w)
{
    size_t n = T.npend, kept = 0;
    for (size_t i = 0; i < n; i++) {
        int fd = T.pend[i];
        struct conn *c;
        if (!wants_input(fd, &c)) {
            if ((size_t)fd < T.cap)
                T.by_fd[fd].pending = false;
            continue;
        }
        if (!(c->interest & EPOLLIN)) {
            T.pend[kept++] = fd;
            continue;
        }
        T.by_fd[fd].pending = false;
        c->ev.on_event(w, &c->ev, EPOLLIN);
    }
    /* Handlers may have added fds at the end meanwhile: keep them. */
    if (T.npend > n)
        memmove(T.pend + kept, T.pend + n, (T.npend - n) * sizeof *T.pend);
    T.npend = kept + (T.npend - n);
}

/* --- I/O ---------------------------------------------------------------- */

/* -1 with errno as the socket call would set it. */
static ssize_t io_error(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    int saved = errno;
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        if (tls_of(SSL_get_fd(ssl)))
            T.by_fd[SSL_get_fd(ssl)].broken = true;
        errno = e == SSL_ERROR_SYSCALL && saved ? saved : ECONNRESET;
        return -1;
    }
}

ssize_t tls_read(SSL *ssl, void *buf, size_t len)
{
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0) {
        if (SSL_has_pending(ssl))
            mark_pending(ssl);
        return n;
    }
    return io_error(ssl, n);
}

/* SSL_MODE_ENABLE_PARTIAL_WRITE: each completed record counts; a retry
 * after EAGAIN passes the same bytes again, as http.c's callers do. */
ssize_t tls_write(SSL *ssl, const void *buf, size_t len)
{
    ERR_clear_error();
    errno = 0;
    int n = SSL_write(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    return n > 0 ? n : io_error(ssl, n);
}

/* Kernel TLS: SSL_sendfile. Else a record's worth through T.filebuf; a
 * retry after EAGAIN reads the same bytes at the same offset again. */
ssize_t tls_sendfile(SSL *ssl, int in_fd, off_t *off, size_t count)
{
    if (BIO_get_ktls_send(SSL_get_wbio(ssl))) {
        ERR_clear_error();
        errno = 0;
        ossl_ssize_t n = SSL_sendfile(ssl, in_fd, *off, count, 0);
        if (n > 0) {
            *off += n;
            return n;
        }
        return io_error(ssl, (int)n);
    }
    size_t want = count < sizeof T.filebuf ? count : sizeof T.filebuf;
    ssize_t got = pread(in_fd, T.filebuf, want, *off);
    if (got <= 0)
        return got;
    ssize_t n = tls_write(ssl, T.filebuf, (size_t)got);
    if (n > 0)
        *off += n;
    return n;
}

int tls_shutdown_wr(SSL *ssl, int fd)
{
    struct tls_slot *s = &T.by_fd[fd];
    if (!s->broken && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
        ERR_clear_error();
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
    return shutdown(fd, SHUT_WR);
}

size_t tls_log_text(SSL *ssl, char *out, size_t cap)
{
    const struct conn *c = SSL_get_app_data(ssl);
    if (!c || !c->ls->conf->tls.log_cipher)
        return 0;
    char text[128];
    int n = snprintf(text, sizeof text, " %s %s", SSL_get_version(ssl),
                     SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
    if (n <= 0)
        return 0;
    size_t len = (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    len = len < cap ? len : cap;
    memcpy(out, text, len);
    return len;
}

bool tls_ktls_available(void)
{
#ifdef OPENSSL_NO_KTLS
    return false;
#else
    char buf[256];
    int fd = open("/proc/sys/net/ipv4/tcp_available_ulp", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    for (char *w = strtok(buf, " \n"); w; w = strtok(NULL, " \n"))
        if (strcmp(w, "tls") == 0)
            return true;
    return false;
#endif
}
