/* accounting.c — a session's places in the ledger (accounting.h). */
#include "accounting.h"

#include <string.h>

int
acct_take_session(struct ledger *l, struct acct *a, unsigned limit,
    unsigned *total)
{
	if (ledger_session_take(l, limit, total) == -1)
		return -1;
	a->session = true;
	return 0;
}

int
acct_take_peer(struct ledger *l, struct acct *a, const struct sockaddr *sa,
    int prefix, unsigned limit, unsigned *count)
{
	uint8_t key[LEDGER_KEY_SIZE];
	int r;

	if (a->peer || !ledger_key_sockaddr(sa, key))
		return 0;
	ledger_key_mask(key, prefix);
	memcpy(a->key, key, sizeof(key));	/* for the caller's log */
	if ((r = ledger_peer_take(l, key, limit, count)) != 0) {
		if (r == -2)
			*count = ledger_peers(l);
		return r;
	}
	a->peer = true;
	return 0;
}

void
acct_release(struct ledger *l, struct acct *a)
{
	if (a->peer)
		ledger_peer_release(l, a->key);
	if (a->session)
		ledger_session_release(l);
	memset(a, 0, sizeof(*a));
}
