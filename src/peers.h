/*
 * peers.h — live session counts per client address, for
 * max-sessions-per-ip.
 *
 * A hash table keyed by the client's address in one 16-byte form (IPv4
 * and IPv4-mapped IPv6 alike as ::ffff:a.b.c.d, so a client counts the
 * same on a dual-stack and an IPv4 listener), with a hash keyed by a
 * random secret: clients choose their addresses (a /64 holds plenty), so
 * they must not be able to choose collisions. Lookups are O(1) on
 * average; the table doubles when it holds two entries per bucket.
 * Entries exist only while their count is above zero, so memory follows
 * the number of live sessions, not the number of addresses ever seen.
 * No I/O, no libev: unit-tested on its own.
 */
#ifndef POPSD_PEERS_H
#define POPSD_PEERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define PEER_KEY_SIZE	16

struct peers;

/* peers_new: an empty table, or NULL if out of memory (or no random
 * secret could be had). peers_free: free it; NULL ok. */
struct peers	*peers_new(void);
void		 peers_free(struct peers *t);

/* peers_key_sockaddr: the key of an AF_INET or AF_INET6 address (an IPv6
 * scope id is ignored). false for any other family or NULL. */
bool	peers_key_sockaddr(const struct sockaddr *sa, uint8_t key[PEER_KEY_SIZE]);

/* peers_key_text: the key of a numeric address as getnameinfo() writes
 * it ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1%eth0").
 * false if s is not one (e.g. "local"). */
bool	peers_key_text(const char *s, uint8_t key[PEER_KEY_SIZE]);

/* peers_count: live sessions from key (0 if none). */
unsigned peers_count(const struct peers *t, const uint8_t key[PEER_KEY_SIZE]);

/* peers_add: one more session from key. 0, or -1 if out of memory (the
 * table is unchanged). */
int	peers_add(struct peers *t, const uint8_t key[PEER_KEY_SIZE]);

/* peers_remove: one session fewer from key; a key with no count is left
 * alone (nothing was added for it). */
void	peers_remove(struct peers *t, const uint8_t key[PEER_KEY_SIZE]);

/* peers_size: how many distinct addresses have live sessions. */
unsigned peers_size(const struct peers *t);

#endif
