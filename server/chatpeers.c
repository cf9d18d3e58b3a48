/* chatpeers: the other instances on the chat bus (see chatpeers.h). Plain
 * arrays searched in order: instances are few, and a user is looked up only
 * when its instance says something about it. */
#include "server/chatpeers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct peer *peers_find(struct chatpeers *p, const char *id, bool create, int64_t now_ms)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].id, id) == 0)
            return &p->v[i];
    if (!create)
        return NULL;
    struct peer *r = realloc(p->v, (p->n + 1) * sizeof *r);
    if (!r)
        return NULL;
    p->v = r;
    r = &p->v[p->n++];
    *r = (struct peer){ .heard_ms = now_ms };
    snprintf(r->id, sizeof r->id, "%s", id);
    return r;
}

void peers_remove(struct chatpeers *p, size_t idx)
{
    p->users -= p->v[idx].n;
    free(p->v[idx].users);
    p->v[idx] = p->v[--p->n];
}

void peers_free(struct chatpeers *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].users);
    free(p->v);
    *p = (struct chatpeers){ 0 };
}

const struct peer *peers_owner(const struct chatpeers *p, const char *nick)
{
    for (size_t i = 0; i < p->n; i++)
        if (peer_user((struct peer *)&p->v[i], nick))
            return &p->v[i];
    return NULL;
}

void peers_each_user(const struct chatpeers *p, chatbus_user_fn fn, void *ctx)
{
    const char *rooms[CHAT_ROOMS_PER_USER];
    for (size_t i = 0; i < p->n; i++) {
        for (size_t k = 0; k < p->v[i].n; k++) {
            const struct peer_user *u = &p->v[i].users[k];
            for (size_t j = 0; j < u->nrooms; j++)
                rooms[j] = u->rooms[j];
            fn(u->nick, rooms, u->nrooms, ctx);
        }
    }
}

struct peer_user *peer_user(struct peer *r, const char *nick)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcasecmp(r->users[i].nick, nick) == 0)
            return &r->users[i];
    return NULL;
}

struct peer_user *peer_user_add(struct chatpeers *p, struct peer *r, const char *nick)
{
    struct peer_user *u = peer_user(r, nick);
    if (u)
        return u;
    if (p->users >= PEER_USERS_MAX || !chat_nick_valid(nick))
        return NULL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct peer_user *v = realloc(r->users, cap * sizeof *v);
        if (!v)
            return NULL;
        r->users = v;
        r->cap = cap;
    }
    u = &r->users[r->n++];
    memset(u, 0, sizeof *u);
    snprintf(u->nick, sizeof u->nick, "%s", nick);
    p->users++;
    return u;
}

void peer_user_remove(struct chatpeers *p, struct peer *r, struct peer_user *u)
{
    *u = r->users[--r->n];
    p->users--;
}

void peer_users_clear(struct chatpeers *p, struct peer *r)
{
    p->users -= r->n;
    r->n = 0;
}

static ssize_t room_index(const struct peer_user *u, const char *room)
{
    for (size_t i = 0; i < u->nrooms; i++)
        if (strcasecmp(u->rooms[i], room) == 0)
            return (ssize_t)i;
    return -1;
}

bool peer_user_in(const struct peer_user *u, const char *room)
{
    return room_index(u, room) >= 0;
}

bool peer_user_join(struct peer_user *u, const char *room)
{
    char norm[CHAT_ROOM_MAX + 2];
    if (chat_room_normalize(room, norm, sizeof norm) != 0 || room_index(u, norm) >= 0 ||
        u->nrooms == CHAT_ROOMS_PER_USER)
        return false;
    snprintf(u->rooms[u->nrooms++], sizeof u->rooms[0], "%s", norm);
    return true;
}

bool peer_user_leave(struct peer_user *u, const char *room)
{
    ssize_t i = room_index(u, room);
    if (i < 0)
        return false;
    memmove(u->rooms[i], u->rooms[i + 1], (u->nrooms - (size_t)i - 1) * sizeof u->rooms[0]);
    u->nrooms--;
    return true;
}
