/* mime: an open-addressing table of extension -> type. Built-in entries are
 * loaded first, so /etc/mime.types overrides them where they differ. */
#include "workers/mime.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIME_SLOTS   4096       /* power of two, > 2x Debian's ~1900 */
#define MIME_EXT_MAX 16

struct mime_slot {
    char ext[MIME_EXT_MAX];     /* lower case; "" = empty slot */
    char *type;
};

static struct mime_slot table[MIME_SLOTS];
static size_t used;

static const char *const builtin[][2] = {
    { "html", "text/html" }, { "htm", "text/html" }, { "css", "text/css" },
    { "js", "text/javascript" }, { "mjs", "text/javascript" },
    { "json", "application/json" }, { "txt", "text/plain" },
    { "xml", "application/xml" }, { "png", "image/png" },
    { "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" }, { "gif", "image/gif" },
    { "svg", "image/svg+xml" }, { "ico", "image/vnd.microsoft.icon" },
    { "webp", "image/webp" }, { "pdf", "application/pdf" },
    { "wasm", "application/wasm" }, { "woff2", "font/woff2" },
};

static uint32_t ext_hash(const char *ext)
{
    uint32_t h = 2166136261u;
    for (; *ext; ext++)
        h = (h ^ (unsigned char)*ext) * 16777619u;
    return h;
}

/* Lower-case copy of src[0..len) into dst; false when it does not fit. */
static int ext_lower(char dst[MIME_EXT_MAX], const char *src, size_t len)
{
    if (len == 0 || len >= MIME_EXT_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[len] = '\0';
    return 1;
}

static struct mime_slot *slot_for(const char *ext)
{
    uint32_t i = ext_hash(ext) & (MIME_SLOTS - 1);
    while (table[i].ext[0] && strcmp(table[i].ext, ext) != 0)
        i = (i + 1) & (MIME_SLOTS - 1);
    return &table[i];
}

static void mime_add(const char *ext, size_t len, const char *type)
{
    char key[MIME_EXT_MAX];
    if (!ext_lower(key, ext, len))
        return;
    struct mime_slot *s = slot_for(key);
    if (!s->ext[0]) {
        if (used >= MIME_SLOTS / 2)
            return;             /* keep probes short; ignore the excess */
        used++;
        memcpy(s->ext, key, sizeof key);
    }
    char *copy = strdup(type);
    if (!copy)
        return;
    free(s->type);
    s->type = copy;
}

/* "type ext1 ext2 ..." ; '#' starts a comment. */
static void parse_line(char *line)
{
    char *save = NULL;
    char *type = strtok_r(line, " \t\r\n", &save);
    if (!type || type[0] == '#')
        return;
    for (char *ext; (ext = strtok_r(NULL, " \t\r\n", &save)) && ext[0] != '#';)
        mime_add(ext, strlen(ext), type);
}

int mime_load(const char *path)
{
    mime_free();
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        mime_add(builtin[i][0], strlen(builtin[i][0]), builtin[i][1]);
    FILE *f = fopen(path ? path : "/etc/mime.types", "re");
    if (!f)
        return -1;
    char line[1024];
    while (fgets(line, sizeof line, f))
        parse_line(line);
    int err = ferror(f) ? EIO : 0;
    fclose(f);
    errno = err;
    return err ? -1 : 0;
}

const char *mime_lookup(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    const char *dot = strrchr(name, '.');
    char key[MIME_EXT_MAX];
    if (!dot || !ext_lower(key, dot + 1, strlen(dot + 1)))
        return MIME_DEFAULT;
    struct mime_slot *s = slot_for(key);
    return s->ext[0] ? s->type : MIME_DEFAULT;
}

void mime_free(void)
{
    for (size_t i = 0; i < MIME_SLOTS; i++)
        free(table[i].type);
    memset(table, 0, sizeof table);
    used = 0;
}
