/* tlsctx: SSL_CTX per tls listener and per site with a certificate, and the
 * pool's ticket keys (tlsctx.h). */
#include "server/tlsctx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "server/log.h"
#include "workers/tls.h"

#define ROTATE_DEFAULT_S 3600

static struct {
    struct tls_ticket_key cur, prev;
    int64_t period_ms, due_ms;
    /* a new master's: the old master's keys (taken), or why not (NULL:
     * no upgrade) */
    bool taken;
    const char *not_taken;
} KEYS;

/* What a hot upgrade hands over (tlsctx_keys_export): a magic and the
 * length of what follows, so that another binary's layout is told apart. */
#define HANDOVER_MAGIC "pfdtkey1"
struct handover {
    char magic[8];
    uint32_t len;                   /* sizeof(struct handover) - offsetof(due_ms) */
    uint32_t zero;
    int64_t due_ms;                 /* the next rotation, CLOCK_MONOTONIC */
    struct tls_ticket_key cur, prev;
};
#define HANDOVER_BODY (sizeof(struct handover) - offsetof(struct handover, due_ms))
_Static_assert(sizeof(struct handover) <= TLSCTX_HANDOVER_MAX, "TLSCTX_HANDOVER_MAX");

/* An hour, or PREFORKD_TLS_TICKET_ROTATE seconds (tests). */
static int64_t rotate_period_ms(void)
{
    const char *env = getenv("PREFORKD_TLS_TICKET_ROTATE");
    long s = env ? strtol(env, NULL, 10) : 0;
    return (int64_t)(s > 0 && s <= 86400 ? s : ROTATE_DEFAULT_S) * 1000;
}

/* --- building a context ------------------------------------------------- */

/* The first OpenSSL error's reason, or FALLBACK. */
static const char *ossl_reason(const char *fallback)
{
    unsigned long code = ERR_peek_last_error();
    const char *r = code ? ERR_reason_error_string(code) : NULL;
    return r ? r : fallback;
}

__attribute__((format(printf, 5, 6)))
static int fail(const struct config *cfg, int line, char *err, size_t errlen,
                const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s:%d: %s", cfg->path, line, msg);
    ERR_clear_error();
    return -1;
}

/* A readable file: the plain errno beats OpenSSL's "system lib". */
static int check_readable(const struct config *cfg, const char *sec, int line,
                          const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return fail(cfg, line, err, errlen, "%s.%s: cannot read \"%s\": %s", sec, what,
                    path, strerror(errno));
    fclose(f);
    return 0;
}

/* Intermediate certificates from the chain file, after the leaf's. */
static int add_chain(SSL_CTX *ctx, const struct config *cfg, const char *sec,
                     const struct tls_conf *t, char *err, size_t errlen)
{
    FILE *f = fopen(t->chain, "re");
    X509 *x;
    int n = 0;
    if (!f)
        return fail(cfg, t->chain_line, err, errlen, "%s.chain: cannot read \"%s\": %s",
                    sec, t->chain, strerror(errno));
    while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
        n++;
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            fclose(f);
            return fail(cfg, t->chain_line, err, errlen, "%s.chain: \"%s\": %s",
                        sec, t->chain, ossl_reason("cannot add a certificate"));
        }
    }
    fclose(f);
    ERR_clear_error();          /* the end of the file reads as an error */
    if (n == 0)
        return fail(cfg, t->chain_line, err, errlen,
                    "%s.chain: \"%s\" holds no PEM certificate", sec, t->chain);
    return 0;
}

static int use_cert_and_key(SSL_CTX *ctx, const struct config *cfg, const char *sec,
                            const struct tls_conf *t, char *err, size_t errlen)
{
    if (check_readable(cfg, sec, t->certificate_line, "certificate", t->certificate, err,
                       errlen) ||
        check_readable(cfg, sec, t->key_line, "key", t->key, err, errlen))
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, t->certificate) != 1)
        return fail(cfg, t->certificate_line, err, errlen, "%s.certificate: \"%s\": %s", sec,
                    t->certificate, ossl_reason("not a PEM certificate"));
    if (t->chain[0] && add_chain(ctx, cfg, sec, t, err, errlen) != 0)
        return -1;
    FILE *f = fopen(t->key, "re");
    EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!key)
        return fail(cfg, t->key_line, err, errlen, "%s.key: \"%s\": %s", sec, t->key,
                    ossl_reason("not a PEM private key"));
    int rc = 0;
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1)
        rc = fail(cfg, t->key_line, err, errlen,
                  "%s.key: \"%s\" does not match the certificate \"%s\"", sec, t->key,
                  t->certificate);
    else if (SSL_CTX_use_PrivateKey(ctx, key) != 1)
        rc = fail(cfg, t->key_line, err, errlen, "%s.key: \"%s\": %s", sec, t->key,
                  ossl_reason("unusable"));
    EVP_PKEY_free(key);
    return rc;
}

/* --- OCSP stapling (ocsp_response) ---------------------------------------- */

/* The issuer of LEAF among the certificates CTX's files gave. */
static X509 *issuer_of(SSL_CTX *ctx, X509 *leaf)
{
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    for (int i = 0; i < sk_X509_num(chain); i++)
        if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK)
            return sk_X509_value(chain, i);
    return NULL;
}

/* The answer about LEAF in BS (matched with each answer's own hash), or NULL. */
static OCSP_SINGLERESP *answer_for(OCSP_BASICRESP *bs, X509 *leaf, X509 *issuer)
{
    for (int i = 0; i < OCSP_resp_count(bs); i++) {
        OCSP_SINGLERESP *one = OCSP_resp_get0(bs, i);
        const OCSP_CERTID *id = OCSP_SINGLERESP_get0_id(one);
        ASN1_OBJECT *md_oid = NULL;
        OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, (OCSP_CERTID *)id);
        const EVP_MD *md = md_oid ? EVP_get_digestbyobj(md_oid) : NULL;
        OCSP_CERTID *ours = md ? OCSP_cert_to_id(md, leaf, issuer) : NULL;
        bool same = ours && OCSP_id_cmp(ours, id) == 0;
        OCSP_CERTID_free(ours);
        if (same)
            return one;
    }
    return NULL;
}

/* A successful response that says the certificate is good and is not past
 * its next update: its next update (or never), else -1 with err set. */
static time_t check_staple(SSL_CTX *ctx, const struct config *cfg, const char *sec,
                           const struct tls_conf *t, OCSP_RESPONSE *resp, char *err,
                           size_t errlen)
{
    int st = OCSP_response_status(resp), reason;
    if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL)
        return fail(cfg, t->ocsp_line, err, errlen, "%s.ocsp_response: \"%s\" says \"%s\"",
                    sec, t->ocsp_response, OCSP_response_status_str(st));
    X509 *leaf = SSL_CTX_get0_certificate(ctx), *issuer = issuer_of(ctx, leaf);
    if (!issuer)
        return fail(cfg, t->ocsp_line, err, errlen, "%s.ocsp_response: the certificate's "
                    "issuer is in neither certificate nor chain (it names the response's "
                    "certificate)", sec);
    OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
    OCSP_SINGLERESP *one = bs ? answer_for(bs, leaf, issuer) : NULL;
    ASN1_GENERALIZEDTIME *next = NULL;
    int cs = one ? OCSP_single_get0_status(one, &reason, NULL, NULL, &next) : -1;
    struct tm tm;
    time_t until = next && ASN1_TIME_to_tm(next, &tm) == 1 ? timegm(&tm) : (time_t)INT64_MAX;
    OCSP_BASICRESP_free(bs);
    if (!one)
        return fail(cfg, t->ocsp_line, err, errlen, "%s.ocsp_response: \"%s\" is not about "
                    "the certificate \"%s\"", sec, t->ocsp_response, t->certificate);
    if (cs != V_OCSP_CERTSTATUS_GOOD)
        return fail(cfg, t->ocsp_line, err, errlen, "%s.ocsp_response: \"%s\" says the "
                    "certificate is %s", sec, t->ocsp_response, OCSP_cert_status_str(cs));
    if (until <= time(NULL))
        return fail(cfg, t->ocsp_line, err, errlen, "%s.ocsp_response: \"%s\" is out of date "
                    "(next update was due); fetch a new one", sec, t->ocsp_response);
    return until;
}

/* ocsp_response: read, check against the certificate, staple. */
static int load_staple(SSL_CTX *ctx, const struct config *cfg, const char *sec,
                       const struct tls_conf *t, char *err, size_t errlen)
{
    if (!t->ocsp_response[0])
        return 0;
    if (check_readable(cfg, sec, t->ocsp_line, "ocsp_response", t->ocsp_response, err,
                       errlen) != 0)
        return -1;
    BIO *in = BIO_new_file(t->ocsp_response, "rb");
    OCSP_RESPONSE *resp = in ? d2i_OCSP_RESPONSE_bio(in, NULL) : NULL;
    BIO_free(in);
    if (!resp)
        return fail(cfg, t->ocsp_line, err, errlen, "%s.ocsp_response: \"%s\" is not a DER "
                    "OCSP response", sec, t->ocsp_response);
    time_t until = check_staple(ctx, cfg, sec, t, resp, err, errlen);
    unsigned char *der = NULL;
    int len = until < 0 ? -1 : i2d_OCSP_RESPONSE(resp, &der);
    OCSP_RESPONSE_free(resp);
    if (until < 0)
        return -1;
    if (len <= 0 || tls_ctx_staple(ctx, der, len, until) != 0)
        return fail(cfg, t->ocsp_line, err, errlen, "%s.ocsp_response: %s", sec,
                    ossl_reason("out of memory"));
    ERR_clear_error();
    return 0;
}

/* ALPN: http/1.1 when the client offers it; otherwise no ALPN at all. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    (void)ssl, (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int set_protocols(SSL_CTX *ctx, const struct config *cfg, const struct tls_conf *t,
                         char *err, size_t errlen)
{
    int min = t->protocols & TLS_PROTO_12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    int max = t->protocols & TLS_PROTO_13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(ctx, min) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, max) != 1)
        return fail(cfg, t->line, err, errlen, "listen.tls.protocols: %s",
                    ossl_reason("not supported"));
    if (SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1 && (t->protocols & TLS_PROTO_12))
        return fail(cfg, t->line, err, errlen, "listen.tls.ciphers: no usable cipher in \"%s\"",
                    t->ciphers);
    if (SSL_CTX_set1_groups_list(ctx, t->curves) != 1)
        return fail(cfg, t->line, err, errlen, "listen.tls.curves: no usable curve in \"%s\"",
                    t->curves);
    ERR_clear_error();
    return 0;
}

/* Sessions resume from tickets only, sealed with the pool's keys (a
 * session cache would be one worker's); a session lives two key periods,
 * the most its ticket can open for. */
static void set_sessions(SSL_CTX *ctx)
{
    static const unsigned char sid_ctx[] = "preforkd";
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_timeout(ctx, (long)(2 * rotate_period_ms() / 1000));
    tls_ctx_use_pool_tickets(ctx);
}

/* A listener's context (sec "listen.tls": protocols, ciphers, curves, its
 * certificate) or a site's ("site.tls": its certificate; a handshake keeps
 * its listener's protocols when the site's context is swapped in). */
static SSL_CTX *build(const struct config *cfg, const char *sec, const struct tls_conf *t,
                      char *err, size_t errlen)
{
    bool listener = strcmp(sec, "listen.tls") == 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        fail(cfg, t->line, err, errlen, "%s: %s", sec, ossl_reason("out of memory"));
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                        SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                        (tls_ktls_available() ? SSL_OP_ENABLE_KTLS : 0));
    /* NO_AUTO_CHAIN: send the chain the files give (certificate, then its
     * intermediates, then `chain`) as it is; without it OpenSSL builds a
     * chain from its store again in every handshake (about 7% of a full
     * handshake's CPU in `make bench`, where nginx sets it too). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                     SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    /* One read(2) for what the socket holds, not two per record (header,
     * then body); workers/tls.c wakes a connection whose bytes wait in
     * OpenSSL's buffer. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if ((listener && set_protocols(ctx, cfg, t, err, errlen) != 0) ||
        use_cert_and_key(ctx, cfg, sec, t, err, errlen) != 0 ||
        load_staple(ctx, cfg, sec, t, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    set_sessions(ctx);
    return ctx;
}

/* Sites with a certificate: each gets its context; every tls listener then
 * picks one by the name the client asks for (SNI, workers/tls.c). */
static int load_sites(struct config *cfg, char *err, size_t errlen)
{
    bool any = false;
    for (size_t i = 0; i < cfg->nsites; i++) {
        struct site_conf *s = &cfg->sites[i];
        if (!s->tls.on)
            continue;
        if (!tlsctx_any(cfg))
            return fail(cfg, s->tls.line, err, errlen, "site.tls: no listen section has tls { }"
                        " (a site's certificate is for the TLS clients of a tls listener)");
        if (!(s->ssl_ctx = build(cfg, "site.tls", &s->tls, err, errlen)))
            return -1;
        any = true;
    }
    for (size_t i = 0; any && i < cfg->nlistens; i++)
        if (cfg->listens[i].ssl_ctx)
            tls_ctx_use_site_certs(cfg->listens[i].ssl_ctx);
    return 0;
}

int tlsctx_load(struct config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlistens; i++) {
        struct listen_conf *l = &cfg->listens[i];
        if (!l->tls.on)
            continue;
        l->ssl_ctx = build(cfg, "listen.tls", &l->tls, err, errlen);
        if (!l->ssl_ctx) {
            tlsctx_free(cfg);
            return -1;
        }
    }
    if (load_sites(cfg, err, errlen) != 0) {
        tlsctx_free(cfg);
        return -1;
    }
    return 0;
}

void tlsctx_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->nlistens; i++) {
        SSL_CTX_free(cfg->listens[i].ssl_ctx);
        cfg->listens[i].ssl_ctx = NULL;
    }
    for (size_t i = 0; i < cfg->nsites; i++) {
        SSL_CTX_free(cfg->sites[i].ssl_ctx);
        cfg->sites[i].ssl_ctx = NULL;
    }
}

bool tlsctx_any(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nlistens; i++)
        if (cfg->listens[i].tls.on)
            return true;
    return false;
}

const char *tlsctx_file_path(void)
{
    return tls_ktls_available()
        ? "tls: kernel TLS is available: files go out with SSL_sendfile"
        : "tls: no kernel TLS (the tls ULP is not loaded): files go out through a "
          "16 KiB buffer with SSL_write";
}

/* --- ticket keys -------------------------------------------------------- */

static int random_key(struct tls_ticket_key *k)
{
    unsigned char *p = (unsigned char *)k;
    size_t got = 0;
    while (got < sizeof *k) {
        ssize_t n = getrandom(p + got, sizeof *k - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

void tlsctx_keys_payload(unsigned char payload[IPC_TLS_KEYS_SIZE])
{
    memcpy(payload, &KEYS.cur, sizeof KEYS.cur);
    memcpy(payload + sizeof KEYS.cur, &KEYS.prev, sizeof KEYS.prev);
}

/* The master's own copy too: workers it forks start with it. */
static int install(void)
{
    unsigned char p[IPC_TLS_KEYS_SIZE];
    tlsctx_keys_payload(p);
    int rc = tls_ticket_keys_set(p, sizeof p);
    OPENSSL_cleanse(p, sizeof p);
    return rc;
}

/* The old master's keys, or one line saying why its clients' tickets stop
 * opening now. */
static bool use_taken_keys(int64_t now_ms)
{
    if (KEYS.not_taken)
        log_warn("tls: %s: new session ticket keys (returning clients make one "
                 "full handshake)", KEYS.not_taken);
    KEYS.not_taken = NULL;
    if (!KEYS.taken)
        return false;
    KEYS.taken = false;
    /* never later than one of our own periods (a clock the other binary
     * read otherwise); overdue rotates at the loop's first turn */
    if (KEYS.due_ms > now_ms + KEYS.period_ms)
        KEYS.due_ms = now_ms + KEYS.period_ms;
    log_info("tls: session ticket keys taken over from the old master; next rotation "
             "in %lld s", (long long)((KEYS.due_ms - now_ms + 999) / 1000));
    return true;
}

int tlsctx_keys_init(int64_t now_ms)
{
    KEYS.period_ms = rotate_period_ms();
    if (!use_taken_keys(now_ms)) {
        KEYS.due_ms = now_ms + KEYS.period_ms;
        if (random_key(&KEYS.cur) != 0 || random_key(&KEYS.prev) != 0)
            return -1;
    }
    return install();
}

size_t tlsctx_keys_export(unsigned char *buf, size_t cap)
{
    struct handover h = { .len = HANDOVER_BODY, .due_ms = KEYS.due_ms,
                          .cur = KEYS.cur, .prev = KEYS.prev };
    if (cap < sizeof h || !KEYS.period_ms)
        return 0;
    memcpy(h.magic, HANDOVER_MAGIC, sizeof h.magic);
    memcpy(buf, &h, sizeof h);
    OPENSSL_cleanse(&h, sizeof h);
    return sizeof h;
}

void tlsctx_keys_take(const void *blob, size_t len)
{
    struct handover h;
    memset(&h, 0, sizeof h);
    KEYS.taken = false;
    if (len == 0) {
        KEYS.not_taken = "the old master passed no ticket keys";
        return;
    }
    if (len < offsetof(struct handover, due_ms)) {
        KEYS.not_taken = "the old master's ticket keys are cut short";
        return;
    }
    memcpy(&h, blob, len < sizeof h ? len : sizeof h);
    if (memcmp(h.magic, HANDOVER_MAGIC, sizeof h.magic) != 0 || h.len != HANDOVER_BODY ||
        len != sizeof h) {
        KEYS.not_taken = "the old master's ticket keys are in another layout";
    } else {
        KEYS.not_taken = NULL;
        KEYS.taken = true;
        KEYS.due_ms = h.due_ms;
        KEYS.cur = h.cur;
        KEYS.prev = h.prev;
    }
    OPENSSL_cleanse(&h, sizeof h);
}

int64_t tlsctx_keys_due_ms(void)
{
    return KEYS.due_ms;
}

bool tlsctx_keys_rotate(int64_t now_ms, unsigned char payload[IPC_TLS_KEYS_SIZE])
{
    struct tls_ticket_key next;
    if (!KEYS.period_ms || now_ms < KEYS.due_ms)
        return false;
    /* One rotation per due time, however late: a stalled master must not
     * retire two keys at once (tickets of the previous period still open). */
    KEYS.due_ms = now_ms + KEYS.period_ms;
    if (random_key(&next) != 0)
        return false;
    KEYS.prev = KEYS.cur;
    KEYS.cur = next;
    OPENSSL_cleanse(&next, sizeof next);
    install();
    tlsctx_keys_payload(payload);
    return true;
}
