/* chatbus: chat rooms shared by several preforkd instances through Redis
 * pub/sub (chat { bus = "redis://..." }). The master of each instance
 * publishes its users' lines, joins, leaves and nick changes, tagged with
 * an instance id and a sequence number, and mirrors the other instances'
 * users for /who, /rooms and /msg; nicks are claimed by Redis keys with a
 * TTL. All through hiredis's async API on the master's own epoll loop. */
#ifndef PREFORKD_CHATBUS_H
#define PREFORKD_CHATBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct master;
struct sbuf;

/* What became of something published. */
enum bus_result { BUS_SENT, BUS_DOWN, BUS_DROPPED };

/* Life cycle, from the master: start after the epoll set exists (nothing
 * when chat.bus is ""); reconfigure after a reload (a changed bus leaves
 * the old one); events for EV_BUS with idx 0 (commands) or 1 (pub/sub). */
int chatbus_start(struct master *m);
void chatbus_reconfigure(struct master *m);
void chatbus_on_event(struct master *m, size_t idx, uint32_t events);
void chatbus_tick(struct master *m);
int64_t chatbus_next_wakeup(const struct master *m, int64_t next);
void chatbus_close_in_child(struct master *m);
/* Says goodbye (a bounded, best-effort flush) and frees everything. */
void chatbus_free(struct master *m);
void chatbus_status_text(const struct master *m, struct sbuf *o);
void chatbus_status_json(const struct master *m, struct sbuf *o);
void chatbus_status_prometheus(const struct master *m, struct sbuf *o);

/* For server/chat.c: all no-ops (BUS_DOWN) when no bus is configured. */
bool chatbus_configured(const struct master *m);
bool chatbus_up(const struct master *m);
/* Four hex digits of this instance's id, for guest nicks ("" without a bus). */
const char *chatbus_tag(const struct master *m);
/* Bumps each time publishing starts to drop: warn a user once per episode. */
unsigned chatbus_episode(const struct master *m);
void chatbus_room_used(struct master *m, const char *room);
void chatbus_room_unused(struct master *m, const char *room);
void chatbus_user_new(struct master *m, const char *nick);
void chatbus_user_gone(struct master *m, const char *nick, const char *why);
void chatbus_join(struct master *m, const char *nick, const char *room);
void chatbus_leave(struct master *m, const char *nick, const char *room);
void chatbus_renamed(struct master *m, const char *old, const char *nick);
enum bus_result chatbus_say(struct master *m, const char *room, const char *nick,
                            const char *text);
/* A private line to a user of another instance: BUS_DOWN also when no
 * instance has that nick. */
enum bus_result chatbus_msg(struct master *m, const char *from, const char *to,
                            const char *text);
/* Is nick a user of another instance (as last heard)? */
bool chatbus_remote_nick(const struct master *m, const char *nick);
/* Ask Redis for nick on behalf of (pid, conn): 0, and the answer comes
 * through chat_bus_claimed(); -1 when it cannot be asked now (go ahead
 * locally; the periodic claim settles it later). */
int chatbus_claim(struct master *m, pid_t pid, uint32_t conn, const char *nick);
void chatbus_release(struct master *m, const char *nick);
/* The other instances' users: fn(nick, rooms, nrooms, ctx) for each. */
typedef void (*chatbus_user_fn)(const char *nick, const char *const *rooms, size_t nrooms,
                                void *ctx);
void chatbus_each_remote(const struct master *m, chatbus_user_fn fn, void *ctx);

#endif
