/* chatpeers: what one master knows of the other instances on the chat bus:
 * each instance's id, the last sequence number and time it was heard, and
 * its users with their rooms, as its messages told (server/chatbus.c keeps
 * it up to date; /who, /rooms and /msg read it). Bounded in users. */
#ifndef PREFORKD_CHATPEERS_H
#define PREFORKD_CHATPEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/chat.h"

#define PEER_ID_LEN     16          /* hex digits of an instance id */
#define PEER_USERS_MAX  100000      /* mirrored users, all instances together */

struct peer_user {
    char nick[CHAT_NICK_MAX + 1];
    char rooms[CHAT_ROOMS_PER_USER][CHAT_ROOM_MAX + 2];     /* "#name" */
    size_t nrooms;
};

struct peer {
    char id[PEER_ID_LEN + 1];
    uint64_t last_seq;
    int64_t heard_ms;
    bool known;                     /* its whole state came once */
    bool greet;                     /* that state is news: announce its users */
    struct peer_user *users;
    size_t n, cap;
};

struct chatpeers {
    struct peer *v;
    size_t n;
    size_t users;                   /* over all of them */
};

/* The instance id, added (heard now) when create; NULL when absent or out
 * of memory. Pointers stay valid until the next add or remove. */
struct peer *peers_find(struct chatpeers *p, const char *id, bool create, int64_t now_ms);
/* Forget instance idx (its users with it). */
void peers_remove(struct chatpeers *p, size_t idx);
void peers_free(struct chatpeers *p);
/* The instance that has nick, or NULL. */
const struct peer *peers_owner(const struct chatpeers *p, const char *nick);
void peers_each_user(const struct chatpeers *p, chatbus_user_fn fn, void *ctx);

struct peer_user *peer_user(struct peer *r, const char *nick);
/* nick (a valid one) as a user of r, added if new; NULL past the bound. */
struct peer_user *peer_user_add(struct chatpeers *p, struct peer *r, const char *nick);
void peer_user_remove(struct chatpeers *p, struct peer *r, struct peer_user *u);
void peer_users_clear(struct chatpeers *p, struct peer *r);
bool peer_user_in(const struct peer_user *u, const char *room);
/* Add a (valid) room; false when it was there, invalid or one too many. */
bool peer_user_join(struct peer_user *u, const char *room);
bool peer_user_leave(struct peer_user *u, const char *room);

#endif
