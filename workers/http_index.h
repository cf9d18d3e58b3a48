/* http_index: the HTML listing of a directory (autoindex = true), made per
 * request: directories first, each part sorted by name (bytewise), with
 * sizes and modification times; names starting with '.' are not listed. */
#ifndef PREFORKD_HTTP_INDEX_H
#define PREFORKD_HTTP_INDEX_H

#include <stddef.h>

/* The listing of directory dir (a real path under root, the real path of
 * the site's root) that the normalised request path names, in a heap
 * buffer of *len bytes and a NUL. Names are HTML-escaped in the text and
 * percent-encoded in the links; a symlink is listed only when it leads to
 * a file or directory under root. NULL with errno. */
char *http_index_html(const char *root, const char *dir, const char *path, size_t *len);

#endif
