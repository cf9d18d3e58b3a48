/* http: the HTTP/1.1 static file handler. */
#ifndef PREFORKD_HTTP_H
#define PREFORKD_HTTP_H
#include "workers/worker.h"
extern const struct proto http_proto;
#endif
