/* top: `preforkd top [-c FILE]`, the live terminal view (server/top.c). */
#ifndef PREFORKD_TOP_H
#define PREFORKD_TOP_H

/* Runs until `q` (or one frame when stdout is not a terminal). Exit code:
 * 0, 3 not running (one frame only), 1 other errors. */
int top_main(const char *conf_path);

#endif
