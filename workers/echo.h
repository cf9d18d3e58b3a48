/* echo: the classic echo service over TCP and UDP. */
#ifndef PREFORKD_ECHO_H
#define PREFORKD_ECHO_H
#include "workers/worker.h"
extern const struct proto echo_proto;
#endif
