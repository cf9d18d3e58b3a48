/* mime: file name extension -> media type, read once per worker from
 * /etc/mime.types (Debian's media-types) with a small built-in table when
 * that file is missing. Lookups are case-insensitive and allocation-free. */
#ifndef PREFORKD_MIME_H
#define PREFORKD_MIME_H

#define MIME_DEFAULT "application/octet-stream"

/* Load path (NULL: /etc/mime.types). 0, or -1 with errno when the file
 * could not be read (the built-in table is in use then). */
int mime_load(const char *path);
/* Media type for the extension of the file name at the end of path. */
const char *mime_lookup(const char *path);
void mime_free(void);

#endif
