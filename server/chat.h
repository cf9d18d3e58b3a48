/* chat (master side): the one owner of nicks and rooms for every worker.
 * Workers relay what their clients ask (CHAT_* frames, ipc.h); the master
 * answers one connection (CHAT_REPLY) or fans a line out once per worker
 * that has members in a room (CHAT_DELIVER). Users are (worker pid, conn id). */
#ifndef PREFORKD_CHAT_H
#define PREFORKD_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ipc/ipc.h"
#include "server/chatbus.h"

#define CHAT_LINE_MAX       512     /* bytes of one client line, no newline */
#define CHAT_NICK_MAX       24
#define CHAT_ROOM_MAX       32      /* without the leading '#' */
#define CHAT_ROOMS_PER_USER 16

struct master;

/* Syntax shared by both sides: nick [A-Za-z0-9_-]{1,24}. */
bool chat_nick_valid(const char *nick);
/* Room #?[A-Za-z0-9_-]{1,32}: writes "#name" into out (>= CHAT_ROOM_MAX + 2
 * bytes). 0, or -1 when the name is invalid. */
int chat_room_normalize(const char *in, char *out, size_t cap);

/* Payloads: uint32 conn id, then fields separated by NUL. Returns the
 * payload length, or 0 when it does not fit (nothing to send). */
size_t chat_payload(unsigned char *buf, size_t cap, uint32_t conn,
                    const char *a, const char *b);
/* Split a received payload: *a and *b point into buf (NUL-ended copies
 * of the fields; *b is "" when absent). -1 when too short. */
int chat_parse(const struct ipc_msg *msg, char *buf, size_t cap,
               uint32_t *conn, const char **a, const char **b);

/* A CHAT_* frame from the worker in slot. */
void chat_handle(struct master *m, size_t slot, const struct ipc_msg *msg);
/* The worker pid is gone: its users leave their rooms, announced. */
void chat_worker_gone(struct master *m, pid_t pid);
void chat_free(struct master *m);

/* From the bus (server/chatbus.c), about other instances' users. text goes
 * to the local members of room as "[#room] text". */
void chat_bus_deliver(struct master *m, const char *room, const char *text);
void chat_bus_private(struct master *m, const char *to, const char *from, const char *text);
/* A line to every local user. */
void chat_bus_notice(struct master *m, const char *text);
/* Redis answered the claim of nick for (pid, conn). */
void chat_bus_claimed(struct master *m, pid_t pid, uint32_t conn, const char *nick, bool ok);
/* A local user's nick belongs to another instance now: rename the user. */
void chat_bus_nick_lost(struct master *m, const char *nick);
/* Every local user and its rooms, for the state sent to other instances. */
void chat_bus_each_local(struct master *m, chatbus_user_fn fn, void *ctx);
/* A new bus after a reload: subscribe the rooms in use. */
void chat_bus_rooms_again(struct master *m);

#endif
