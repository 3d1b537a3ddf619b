/*
 * upstream.h — popsd as a POP3 client of a TLS upstream (outbound
 * listeners): what is said before and just after TLS. PURE: bytes in,
 * actions out; no sockets, no libev, no libtls.
 *
 *   pop3s:  START_TLS at once; after the handshake, read the greeting.
 *   stls:   read the greeting, send CAPA, require STLS in the answer,
 *           send STLS, require "+OK", START_TLS; after the handshake the
 *           greeting read before it stands.
 *
 * Never downgrade: without STLS in CAPA, with "-ERR" to CAPA or STLS,
 * or with anything unexpected, the answer is UP_FAIL, and nothing but
 * "CAPA" and "STLS" is ever written before TLS: no client byte can
 * reach the upstream in the clear through here. On UP_START_TLS the
 * caller must discard what is left in its input buffer (bytes sent
 * before the handshake are an injection, CVE-2011-0411 mirrored) and
 * start the handshake on the same socket.
 */
#ifndef POPSD_UPSTREAM_H
#define POPSD_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define UPSTREAM_LINE_MAX	512	/* RFC 2449 §4: a response line, CRLF included */
#define UPSTREAM_CAPA_MAX	64	/* CAPA lines before we give up */

enum upstream_mode {
	UPSTREAM_POP3S,		/* implicit TLS (port 995) */
	UPSTREAM_STLS,		/* plaintext, STLS required (RFC 2595) */
};

enum upstream_act {
	UP_WAIT,		/* write what is in out (if anything), read more */
	UP_START_TLS,		/* discard unread input, start the handshake,
				 * then call upstream_tls_done() */
	UP_READY,		/* greeting() is the upstream's greeting line;
				 * relay from here on */
	UP_FAIL,		/* upstream_why() says why; end the session */
};

struct upstream {
	enum upstream_mode	mode;
	int			state;
	int			capa_lines;
	bool			saw_stls;
	char			greeting[UPSTREAM_LINE_MAX + 1]; /* no CRLF */
	char			why[160];	/* on UP_FAIL; may hold peer text */
};

/* upstream_init: a negotiation in mode m, nothing said yet. */
void	upstream_init(struct upstream *u, enum upstream_mode m);

/*
 * upstream_step: consume the upstream's lines from in (only whole lines,
 * and never past the one that ends a step), append popsd's commands to
 * out (which needs room for 8 bytes), and say what to do next. Call it
 * first with in empty, then after every read. Once UP_READY or UP_FAIL
 * was returned it returns the same again.
 */
enum upstream_act upstream_step(struct upstream *u, struct buf *in,
	    struct buf *out);

/* upstream_tls_done: the handshake (and its certificate check) succeeded;
 * call upstream_step() again. Ignored unless UP_START_TLS was returned. */
void	upstream_tls_done(struct upstream *u);

/* upstream_greeting: the greeting line without line ending ("" before
 * UP_READY). upstream_why: the failure text ("" unless UP_FAIL). */
const char *upstream_greeting(const struct upstream *u);
const char *upstream_why(const struct upstream *u);

#endif
