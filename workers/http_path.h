/* http_path: pure helpers of the HTTP handler: percent-decoding and
 * normalisation of a request target, byte-range parsing, HTTP dates.
 * No I/O, so unit tests cover every corner. */
#ifndef PREFORKD_HTTP_PATH_H
#define PREFORKD_HTTP_PATH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Decode and normalise the path of a request target (origin form "/a/b?q"
 * or absolute form "http://host/a/b") into out as a NUL-ended path that
 * starts with '/'. "." segments and repeated slashes go away; "..", an
 * encoded '/', NUL or a backslash is refused. Returns the length, or
 * -400 (malformed), -403 (refused) or -414 (longer than cap - 1). */
int http_path_normalize(const char *target, size_t len, char *out, size_t cap);

/* Length of the path part of an origin-form target (up to '?' or '#'). */
size_t http_target_path_len(const char *target, size_t len);

enum http_range { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

/* One byte range ("bytes=a-b", "a-", "-n") of a body of size bytes.
 * RANGE_NONE: absent, malformed or several ranges (serve it whole). */
enum http_range http_range_parse(const char *v, size_t len, uint64_t size,
                                 uint64_t *first, uint64_t *last);

/* IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT": 29 chars + NUL. */
#define HTTP_DATE_LEN 29
void http_date_format(time_t t, char out[HTTP_DATE_LEN + 1]);
/* Parse an IMF-fixdate; -1 when malformed. */
time_t http_date_parse(const char *s, size_t len);

#endif
