/*
 * route.h — routed outbound mode (upstream-allow): the client names its
 * server in "USER name@host[:port]". PURE: no sockets, no libev.
 *
 * Until the upstream is chosen, struct route stands in for it behind the
 * POP3 mediator: it reads the command lines the mediator forwards (the
 * "to_backend" buffer) and writes the answers a server would give into
 * the mediator's "bin" buffer. CAPA and QUIT are answered; USER with an
 * allowed name@host picks the upstream (ROUTE_GO, the USER line consumed,
 * anything the client sent after it left in place); everything else gets
 * "-ERR". A host no upstream-allow pattern matches is refused and no
 * connection is made: popsd is never an open relay.
 */
#ifndef POPSD_ROUTE_H
#define POPSD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define ROUTE_NAME_MAX	128	/* the upstream user name, bytes */
#define ROUTE_HOST_MAX	253	/* a DNS name (RFC 1035), bytes */
#define ROUTE_PORT_POP3S 995

struct route_target {
	char		name[ROUTE_NAME_MAX + 1];	/* NUL-terminated */
	char		host[ROUTE_HOST_MAX + 1];	/* lowercase */
	uint16_t	port;
	bool		implicit_tls;	/* 995 (or no port): pop3s; else STLS */
};

/*
 * route_parse_user: the argument of USER (arg, len bytes, no line ending)
 * as name@host[:port]. The last "@" separates the host, so a name may
 * itself contain "@" (a mailbox address). host is a DNS name or IPv4
 * address: letters, digits, "-" and "_" in dot-separated labels of 1 to
 * 63 bytes; a trailing dot is dropped. No port: 995. Returns 0 with *t
 * filled, or -1 (t undefined) when arg is not of that form.
 */
int	route_parse_user(const char *arg, size_t len, struct route_target *t);

/*
 * route_pattern_ok: can s be an upstream-allow pattern? A host name as
 * above, or "*." followed by one (which matches one or more labels at
 * the left). A bare "*" is refused.
 */
bool	route_pattern_ok(const char *s);

/* route_host_allowed: does the lowercase host match one of n patterns
 * (route_pattern_ok, compared case-insensitively)? "*.example.net"
 * matches "a.example.net" and "a.b.example.net", not "example.net". */
bool	route_host_allowed(char *const *patterns, int n, const char *host);

enum route_ev {
	ROUTE_NONE,	/* nothing (more) to do until more input */
	ROUTE_GO,	/* route_target(r) is chosen; the USER line consumed */
	ROUTE_QUIT,	/* "+OK" to QUIT written: end once it is flushed */
};

struct route {
	char *const		*allow;		/* upstream-allow patterns */
	int			 nallow;
	struct route_target	 target;
	bool			 done;		/* ROUTE_GO or ROUTE_QUIT given */
	char			 refused[ROUTE_HOST_MAX + 1]; /* last refused host */
};

/* route_init: a router for one session under the given patterns (kept
 * by pointer: they must outlive r). */
void	route_init(struct route *r, char *const *allow, int nallow);

/*
 * route_input: act on the complete lines in cmds, one at a time, while
 * replies has room for an answer, writing answers to replies. Returns
 * ROUTE_GO once an allowed USER arrives (then r->target is the choice and
 * cmds holds what followed the USER line), ROUTE_QUIT after QUIT, else
 * ROUTE_NONE. After ROUTE_GO or ROUTE_QUIT it does nothing.
 */
enum route_ev route_input(struct route *r, struct buf *cmds,
	    struct buf *replies);

#endif
