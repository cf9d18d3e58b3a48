/* chat (worker side): the line protocol of a `chat` listener. Commands are
 * relayed to the master, which owns nicks and rooms (server/chat.c); lines
 * it sends back are written to this worker's connections. */
#ifndef PREFORKD_WORKERS_CHAT_H
#define PREFORKD_WORKERS_CHAT_H
#include "workers/worker.h"
extern const struct proto chat_proto;
#endif
