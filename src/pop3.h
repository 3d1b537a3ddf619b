/*
 * pop3.h — the authorization-phase mediator. PURE: bytes in, bytes and
 * events out; no sockets, no libev, no libtls (RFC 1939, 2449, 2595, 5034).
 *
 * The session owns four buffers and calls in here while the POP3 session is
 * in the AUTHORIZATION state:
 *
 *   client ──read──▶ cin ──pop3_client_input──▶ to_backend ──write──▶ backend
 *   client ◀─write── to_client ◀──pop3_backend_input── bin ◀──read── backend
 *                         ▲ (popsd's own replies, in command order)
 *
 * The mediator consumes complete lines only (an over-long client line is
 * dropped as it arrives), and only when it can act on them now: while it
 * waits for the outcome of PASS/APOP/AUTH, or when the output buffer lacks
 * room, it leaves input in place (the session then stops reading once cin
 * is full: backpressure, and the exact switch point).
 *
 * After POP3_EV_SPLICE the session stops calling in here: the unconsumed
 * bytes of cin go raw to the backend (after to_backend drains) and the
 * unconsumed bytes of bin go raw to the client (after to_client drains).
 *
 * Held input moves only when the session calls in again, so: call
 * pop3_client_input after every pop3_backend_input (a response may have
 * released held client lines or queued popsd replies), and call both again
 * after to_client or to_backend drained, even with cin and bin unchanged.
 * Calls that find nothing to do are cheap and change nothing. The four
 * buffers need a capacity of at least 512 bytes; a backend line that
 * cannot fit in bin or to_client ends the session (POP3_EV_CLOSE).
 */
#ifndef POPSD_POP3_H
#define POPSD_POP3_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Event bits returned by the input functions. */
#define POP3_EV_STARTTLS 0x01	/* popsd's "+OK" to STLS ends to_client: once
				 * to_client is flushed, DISCARD what is left in
				 * cin (CVE-2011-0411), run the TLS handshake,
				 * then call pop3_tls_started(). */
#define POP3_EV_SPLICE	 0x02	/* login succeeded: to_client ends with the
				 * backend's "+OK"; go raw from here on. */
#define POP3_EV_CLOSE	 0x04	/* too many errors (or similar): flush
				 * to_client, then end the session;
				 * pop3_close_reason() says why. */

struct pop3_policy {
	bool	tls_active;	/* already under TLS (pop3s listener) */
	bool	tls_offered;	/* STLS can be offered (server TLS configured) */
	bool	require_tls;	/* require-tls yes, client not in plaintext-allow */
	size_t	sasl_line_max;	/* bound for SASL response lines, CRLF
				 * included (0: the 255-octet command bound) */
	int	max_errors;	/* shield errors before the session ends */
};

struct pop3;

/* pop3_new: a mediator for one session, expecting the backend greeting
 * first. Returns NULL when memory is short. pop3_free(NULL) is a no-op. */
struct pop3 *pop3_new(const struct pop3_policy *policy);
void	pop3_free(struct pop3 *p);

/* pop3_client_input: consume what can be acted on now from cin; append
 * forwarded commands to to_backend and popsd's own replies to to_client
 * (never ahead of responses to earlier commands). Returns POP3_EV_* bits. */
int	pop3_client_input(struct pop3 *p, struct buf *cin,
	    struct buf *to_backend, struct buf *to_client);

/* pop3_backend_input: consume backend response lines from bin, rewriting
 * CAPA answers, appending to to_client. Bytes the backend sends while no
 * response is outstanding are dropped (also during the STLS handshake).
 * Returns POP3_EV_* bits. */
int	pop3_backend_input(struct pop3 *p, struct buf *bin,
	    struct buf *to_client);

/* pop3_client_eof / pop3_backend_eof: the peer closed; returns POP3_EV_*
 * bits (e.g. pending popsd replies may still be appended to to_client).
 * After pop3_backend_eof no backend response is expected any more: popsd's
 * own replies queued behind them are appended at once. */
int	pop3_client_eof(struct pop3 *p, struct buf *to_client);
int	pop3_backend_eof(struct pop3 *p, struct buf *to_client);

/* pop3_tls_started: the STLS handshake succeeded; forget everything learned
 * before it (RFC 2595 §4) and continue with policy->tls_active = true.
 * Ignored unless POP3_EV_STARTTLS was returned. */
void	pop3_tls_started(struct pop3 *p);

/* pop3_idle: true when no response is outstanding (for STLS ordering and
 * for the session's timers). */
bool	pop3_idle(const struct pop3 *p);

/* Facts for the session's summary log line. */
bool	    pop3_stls_used(const struct pop3 *p);
bool	    pop3_auth_refused(const struct pop3 *p);	/* refused for lack of TLS */
/* pop3_user: the sanitized login name for the log, "" if none: taken only
 * from a well-formed USER or APOP line or the first data of a well-formed
 * SASL PLAIN or LOGIN exchange, so never from a password. */
const char *pop3_user(const struct pop3 *p);
const char *pop3_close_reason(const struct pop3 *p);	/* NULL unless POP3_EV_CLOSE */
int	    pop3_errors(const struct pop3 *p);
/* Running counts for metrics and fail2ban's log lines: logins the backend
 * refused, and malformed lines the shield refused. */
int	    pop3_login_failures(const struct pop3 *p);
int	    pop3_shield_rejections(const struct pop3 *p);

#endif
