/* fuzz_worker: what the libFuzzer harnesses of the HTTP handler share
 * (tests/fuzz_http.c over plain bytes, tests/fuzz_tls.c over TLS): the
 * worker loop's side of struct proto for one connection at a time, in
 * place of workers/worker.c, and the site they serve: a root with files
 * inside and a secret outside it, every site feature on. */
#ifndef PREFORKD_FUZZ_WORKER_H
#define PREFORKD_FUZZ_WORKER_H

#include <stdbool.h>

#include "server/config.h"
#include "workers/worker.h"

/* The content of outside/secret.txt: never in a response (unless echoed). */
#define FUZZ_SECRET "TOP-SECRET-OUTSIDE-ROOT"

extern struct worker fuzz_w;
/* conn_close ran; the harness clears it before each connection. */
extern bool fuzz_closed;

/* The root under a temp dir (removed at exit), the error log on /dev/null,
 * CFG's http section and sites set for it, fuzz_w on CFG, http_proto's
 * init: abort() on any failure. The temp dir's path. */
const char *fuzz_site_init(struct config *cfg);

#endif
