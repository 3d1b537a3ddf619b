/*
 * ledger.h — live session counts, in all (max-sessions) and per client
 * address (max-sessions-per-ip), exact across "workers N".
 *
 * The counts live in one shared anonymous mapping made before the
 * workers are forked. Each worker writes only its own part: a session
 * count and an address table; a limit is checked against the sum over
 * every part. A worker first counts the new session in its own part and
 * then sums, so that two workers admitting at the same moment cannot
 * both miss each other: a limit is never exceeded (at worst both refuse
 * the last place). When a worker ends, the master clears its part, so a
 * crash leaks nothing.
 *
 * An address table is open addressing over one 16-byte key form (IPv4
 * and IPv4-mapped IPv6 alike as ::ffff:a.b.c.d, so a client counts the
 * same on a dual-stack and an IPv4 listener), hashed with SipHash under
 * a random secret: clients choose their addresses (a /64 holds plenty),
 * so they must not be able to choose collisions. Other workers read a
 * table under its sequence lock and retry while it changes; nothing
 * blocks the writer. The table is sized at start for max-sessions
 * addresses (a reload that raises max-sessions beyond that is told to
 * restart) and compacted as addresses leave, so memory follows
 * max-sessions, not the number of addresses ever seen.
 * No I/O, no libev: unit-tested on its own, across processes.
 */
#ifndef POPSD_LEDGER_H
#define POPSD_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define LEDGER_KEY_SIZE	16

struct ledger;

/* ledger_new: counts for nworkers (1..64) processes, each able to hold
 * sessions from up to max_addresses distinct addresses at once; NULL if
 * out of memory (or no random secret could be had). The calling process
 * writes part 0 until ledger_bind(). ledger_free: unmap it; NULL ok. */
struct ledger	*ledger_new(int nworkers, unsigned max_addresses);
void		 ledger_free(struct ledger *l);

/* ledger_bind: in a worker after fork(): write part `worker` from now. */
void	ledger_bind(struct ledger *l, int worker);

/* ledger_forget: in the master once worker `worker` has ended: its
 * sessions are gone, so its part is cleared. */
void	ledger_forget(struct ledger *l, int worker);

/* ledger_capacity: how many distinct addresses one part can hold. */
unsigned ledger_capacity(const struct ledger *l);

/* ledger_session_take: one more session for this process if that keeps
 * the total at or below limit (0: no limit): 0, or -1 with *total set to
 * the sessions already running. ledger_session_release: one fewer. */
int	ledger_session_take(struct ledger *l, unsigned limit, unsigned *total);
void	ledger_session_release(struct ledger *l);

/* ledger_sessions: live sessions in all processes. */
unsigned ledger_sessions(const struct ledger *l);

/* ledger_key_sockaddr: the key of an AF_INET or AF_INET6 address (an
 * IPv6 scope id is ignored). false for any other family or NULL. */
bool	ledger_key_sockaddr(const struct sockaddr *sa,
	    uint8_t key[LEDGER_KEY_SIZE]);

/* ledger_key_mask: count an IPv6 client by its first prefix bits (1..128):
 * the host bits of key are cleared, so every address of the network is
 * one key. IPv4 and IPv4-mapped keys are left alone: they count per
 * address whatever the prefix. */
void	ledger_key_mask(uint8_t key[LEDGER_KEY_SIZE], int prefix);

/* ledger_key_format: key as a log shows it, into buf (size at least
 * LEDGER_KEY_TEXT_MAX): "192.0.2.1" for IPv4 and IPv4-mapped keys,
 * "2001:db8:1:2::/64" for IPv6 ones counted by a prefix below 128,
 * "2001:db8::1" otherwise. Returns buf. */
#define LEDGER_KEY_TEXT_MAX	(46 + 4)	/* INET6_ADDRSTRLEN + "/128" */
const char *ledger_key_format(const uint8_t key[LEDGER_KEY_SIZE], int prefix,
	    char *buf, size_t bufsz);

/* ledger_key_text: the key of a numeric address as getnameinfo() writes
 * it ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1%eth0").
 * false if s is not one (e.g. "local"). */
bool	ledger_key_text(const char *s, uint8_t key[LEDGER_KEY_SIZE]);

/*
 * ledger_peer_take: one more session from key for this process if that
 * keeps the sessions from key, in all processes, at or below limit (0:
 * no limit, counted all the same so that a reload setting a limit counts
 * the sessions already running). 0; -1 over the limit, with *count set to
 * the sessions already running from key; -2 if this process's table has
 * no room for another address.
 */
int	ledger_peer_take(struct ledger *l, const uint8_t key[LEDGER_KEY_SIZE],
	    unsigned limit, unsigned *count);

/* ledger_peer_release: one session fewer from key for this process; a
 * key it holds no session for is left alone. */
void	ledger_peer_release(struct ledger *l, const uint8_t key[LEDGER_KEY_SIZE]);

/* ledger_peer_count: live sessions from key, in all processes. */
unsigned ledger_peer_count(const struct ledger *l,
	    const uint8_t key[LEDGER_KEY_SIZE]);

/* ledger_peers: distinct addresses this process holds sessions from. */
unsigned ledger_peers(const struct ledger *l);

#endif
