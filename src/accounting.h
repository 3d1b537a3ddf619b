/*
 * accounting.h — the places a session holds in the ledger: one of
 * max-sessions and, for a client with an IP address, one of
 * max-sessions-per-ip.
 *
 * Below both the listener and the session, above the ledger: the
 * listener takes a new connection's places and hands them to
 * session_start(); the session takes the per-address place itself when
 * a PROXY header names the real client, and its destructor gives back
 * whatever it holds. Neither calls the other (nor main.c) to count.
 * No I/O, no libev.
 */
#ifndef POPSD_ACCOUNTING_H
#define POPSD_ACCOUNTING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ledger.h"

/* Places held; all false (zeroed) holds none. Plain data: whoever holds
 * it must pass it on or acct_release() it. */
struct acct {
	bool	session;		/* one max-sessions place */
	bool	peer;			/* one place for key */
	uint8_t	key[LEDGER_KEY_SIZE];
};

/* acct_take_session: one max-sessions place into a (limit 0: none, but
 * counted). 0, or -1 with *total set to the sessions running. */
int	acct_take_session(struct ledger *l, struct acct *a, unsigned limit,
	    unsigned *total);

/* acct_take_peer: one place for the address sa into a (limit 0: none,
 * but counted, so that a reload setting a limit counts what runs), under
 * its key: the address, an IPv6 one cut to its first prefix bits (a
 * host picks any address in its /64), written to a->key whatever the
 * outcome (for the log). The key counted is the one given back, so a
 * reload that changes the prefix cannot unbalance the counts. An address
 * without a key (not IP) takes nothing and returns 0. -1 over the limit,
 * *count set to the sessions running under the key; -2 when this
 * process's address table is full (*count: addresses held). */
int	acct_take_peer(struct ledger *l, struct acct *a,
	    const struct sockaddr *sa, int prefix, unsigned limit,
	    unsigned *count);

/* acct_release: give back every place a holds; a holds none afterwards
 * (calling it twice is harmless). */
void	acct_release(struct ledger *l, struct acct *a);

#endif
