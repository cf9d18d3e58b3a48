/* http_path: pure helpers of the HTTP handler: percent-decoding and
 * normalisation of a request target, byte-range parsing, HTTP dates.
 * No I/O, so unit tests cover every corner. */
#ifndef PREFORKD_HTTP_PATH_H
#define PREFORKD_HTTP_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Decode and normalise the path of a request target (origin form "/a/b?q"
 * or absolute form "http://host/a/b") into out as a NUL-ended path that
 * starts with '/'. "." segments and repeated slashes go away; "..", an
 * encoded '/', NUL or a backslash is refused. Returns the length, or
 * -400 (malformed, or an absolute form whose authority is not a valid
 * host[:port]), -403 (refused) or -414 (longer than cap - 1). */
int http_path_normalize(const char *target, size_t len, char *out, size_t cap);

/* Length of the path part of an origin-form target (up to '?' or '#'). */
size_t http_target_path_len(const char *target, size_t len);

/* Length of the token (RFC 9110 5.6.2: 1*tchar) at the start of s. */
size_t http_token_len(const char *s, size_t len);

/* A Host field value or the authority of an absolute-form target, without
 * surrounding whitespace: uri-host [":" port] (RFC 9110 7.2, RFC 3986
 * 3.2.2). uri-host is an IP-literal in brackets (IPv6 or IPvFuture), or a
 * reg-name (IPv4 included) of unreserved, pct-encoded and sub-delims
 * characters except ',' (a list: two Host values merged). Invalid: empty,
 * userinfo ('@'), a path, a port that is not *DIGIT or is above 65535. */
bool http_host_valid(const char *v, size_t len);

/* Transfer-Encoding of a request, one field line after another (several
 * lines form one list, RFC 9110 5.3). http_te_status: 0 when the list is
 * exactly "chunked"; 400 when chunked is missing, not last, repeated or
 * has parameters, or an element is not a token (RFC 9112 6.1: the framing
 * is in doubt); 501 when codings this server does not know come before
 * a final chunked (RFC 9112 6.1: "SHOULD respond with 501"). */
struct http_te {
    uint8_t chunked, other;     /* codings seen (saturating) */
    bool bad, last_chunked;
};
void http_te_add(struct http_te *te, const char *v, size_t len);
int http_te_status(const struct http_te *te);

/* The authority of an absolute-form target ("http://host:port/p"): true
 * with [*off, *off + *len) its bytes; false for any other form. */
bool http_target_authority(const char *t, size_t len, size_t *off, size_t *alen);

enum http_range { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

#define HTTP_RANGES_MAX 16

struct http_byte_range {
    uint64_t first, last;
};

/* The byte ranges ("bytes=a-b", "a-", "-n", comma-separated) of a body of
 * size bytes, into out[0..*n): sorted, those that overlap or touch merged
 * into one (RFC 9110 14.3 allows both). RANGE_NONE, to serve the whole
 * body: absent or malformed, more than HTTP_RANGES_MAX ranges, or ranges
 * that ask for more bytes in all than the body has (they overlap that
 * much: a request that multiplies the answer). RANGE_UNSATISFIABLE: none
 * of them is in the body. */
enum http_range http_ranges_parse(const char *v, size_t len, uint64_t size,
                                  struct http_byte_range out[HTTP_RANGES_MAX], size_t *n);

/* Accept-Encoding (RFC 9110 12.5.3): the weight, in thousandths, that the
 * field value gives br, gzip (or x-gzip) and identity. A coding not named
 * takes the weight of "*", or 0; identity takes 1000 unless it or "*" says
 * otherwise. An element that does not parse is left out. */
struct http_accept {
    uint16_t br, gzip, identity;
};
void http_accept_encoding(const char *v, size_t len, struct http_accept *a);

/* IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT": 29 chars + NUL. */
#define HTTP_DATE_LEN 29
void http_date_format(time_t t, char out[HTTP_DATE_LEN + 1]);
/* Parse an IMF-fixdate; -1 when malformed. */
time_t http_date_parse(const char *s, size_t len);

#endif
