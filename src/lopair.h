/*
 * lopair.h — connected loopback TCP pairs that no other local process can
 * get into, made without ever blocking.
 *
 * "backend exec" daemons want a TCP socket on stdin, as inetd gives them
 * (solid-pop3d calls getpeername() and goes standalone on anything else),
 * so socketpair(2) will not do. A pair is one connect() to a listener on
 * 127.0.0.1 and the matching accept(). The listener is reachable by every
 * local user, so it carries a socket filter that drops every segment whose
 * source is not one of our own connecting sockets in flight: another
 * user's connections never reach its queue (they cannot fill it) and its
 * SYNs go unanswered. Our connecting sockets are bound without
 * SO_REUSEADDR, so while one is in flight no one else can send from its
 * address and port; an accepted peer is checked against them all the same.
 */
#ifndef POPSD_LOPAIR_H
#define POPSD_LOPAIR_H

/* Pairs in flight at once (connect started, not accepted yet). On
 * loopback a pair is usually complete when connect() returns. */
#define LOPAIR_MAX	16

struct lopair;

/* lopair_new: the listener on 127.0.0.1, an ephemeral port, admitting no
 * one yet. Returns NULL with errno set. */
struct lopair	*lopair_new(void);

/* lopair_free: close the listener and every pair in flight. NULL is a
 * no-op. */
void		 lopair_free(struct lopair *lp);

/* lopair_fd: the listener, to poll for POLLIN: a pair may be ready. */
int		 lopair_fd(const struct lopair *lp);

/* lopair_connect: start a pair. Returns its slot (0 .. LOPAIR_MAX-1),
 * or -1 with errno set (EAGAIN when LOPAIR_MAX are in flight). */
int		 lopair_connect(struct lopair *lp);

/* lopair_accept: take one finished pair. Returns 1 with *slot, *ours (the
 * connecting end, non-blocking) and *theirs (the accepted end, blocking,
 * as a daemon under inetd gets it), both close-on-exec and the caller's,
 * the slot free again; 0 when none is ready now; -1 with errno on a local
 * error (out of descriptors, say: the pairs stay in flight). Connections
 * that are not ours are closed and skipped. */
int		 lopair_accept(struct lopair *lp, int *slot, int *ours,
		    int *theirs);

/* lopair_cancel: give up on the pair in slot (a timeout). */
void		 lopair_cancel(struct lopair *lp, int slot);

#endif
