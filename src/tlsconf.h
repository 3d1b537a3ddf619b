/*
 * tlsconf.h — libtls server contexts built from a struct conf, and the
 * session ticket keys they share.
 *
 * A server context is reference counted: the daemon holds the current one,
 * and every session that accepted TLS with it holds it until the session
 * ends. libtls' SNI callback dereferences the server context during a
 * handshake, so a context replaced by a reload must outlive the sessions
 * still using it.
 *
 * Session tickets (RFC 5077, and TLS 1.3 resumption) are encrypted with
 * keys popsd makes itself (getrandom) and keeps in a struct ticket_keys in
 * the daemon's state. Every server context gets all of them, so a ticket
 * issued before a reload still resumes after it, unless the reload changed
 * the client certificate policy or the ciphers (the session id context is
 * derived from them); a timer adds a new key every quarter of
 * tls-session-lifetime and the oldest of the four falls out, so no key
 * lives longer than the lifetime. (How long a chain of renewed tickets
 * resumes is libtls_shim.c's.)
 *
 * With tls-ticket-key-file the keys are the file's instead (struct conf
 * holds them; ticketkeys.h): every host reading the same file makes the
 * same keys and, under the same policy, the same session id context, so
 * a ticket from one host resumes on another. popsd then makes and
 * rotates none: the file is re-read on reload, and the operator rotates
 * it.
 */
#ifndef POPSD_TLSCONF_H
#define POPSD_TLSCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ticketkeys.h"

struct conf;
struct tls;
struct tls_config;

#define TICKET_SESSION_ID_SIZE	32	/* TICKET_KEYS, _SIZE: ticketkeys.h */

struct ticket_keys {
	uint8_t		key[TICKET_KEYS][TICKET_KEY_SIZE]; /* oldest first */
	uint32_t	rev[TICKET_KEYS];	/* libtls key names */
	int		n;
	uint32_t	last_rev;
	/* Random, the same for every server context of this process: what
	 * the TLS session id context is derived from, with the policy a
	 * resumed session must share (tlsconf.c, set_session_id). */
	uint8_t		session_id[TICKET_SESSION_ID_SIZE];
	bool		have_session_id;
};

struct tls_server {
	struct tls		*ctx;
	/* The config the context was made from: libtls shares it with the
	 * context and its connections (refcounted), so a ticket key added
	 * to it serves the next handshake. Keys were cleared from it. */
	struct tls_config	*cfg;
	int			 refs;
};

/*
 * tlsconf_server: a configured server context (refs 1) for c: its
 * certificate and key pairs (the first is the default; the others are
 * chosen by SNI) each with its OCSP staple, the tls-* policy, client
 * certificate verification, and, when c->tls_session_lifetime > 0, the
 * session lifetime, every key of tk (making the first key if tk has none)
 * and a session id context from tk's random id and c's client certificate
 * mode, CA and ciphers: a session resumes only under the same ones. Key
 * material is wiped from the config once the context holds it.
 * Returns NULL with the reason in err.
 */
struct tls_server *tlsconf_server(const struct conf *c, struct ticket_keys *tk,
    char *err, size_t errsz);

/*
 * tlsconf_client: the libtls client config for outbound upstreams:
 * TLS 1.2 and 1.3 only, certificate and host name verified (libtls'
 * client default, never turned off) against upstream-ca, else the
 * system store (tls_default_ca_cert_file()), read into memory now so a
 * reload or chroot cannot lose it. The caller owns it (the conf frees
 * it: conf.h upstream_tls). NULL with the reason in err.
 */
struct tls_config *tlsconf_client(const struct conf *c, char *err,
    size_t errsz);

/* tls_server_ref / tls_server_unref: the last unref frees. NULL ok. */
struct tls_server *tls_server_ref(struct tls_server *ts);
void	tls_server_unref(struct tls_server *ts);

/*
 * tlsconf_keys_from_file: are c's ticket keys the tls-ticket-key-file's
 * (and resumption on)? Then tlsconf_rotate must not be used; instead
 * tlsconf_server is called again from the same conf every
 * tlsconf_rotate_interval: libtls stops using a key session-lifetime
 * after it was given one, and only a new context takes it afresh.
 */
bool	tlsconf_keys_from_file(const struct conf *c);

/*
 * tlsconf_rotate: make a new ticket key, keep it in tk (the oldest of
 * TICKET_KEYS falls out) and give it to ts (may be NULL), where it
 * encrypts new tickets from the next handshake on while the older keys
 * still decrypt. Returns 0, or -1 with the reason in err (tk unchanged).
 */
int	tlsconf_rotate(struct ticket_keys *tk, struct tls_server *ts,
	    char *err, size_t errsz);

/* tlsconf_rotate_interval: seconds between rotations for c, 0 if
 * resumption is off. */
double	tlsconf_rotate_interval(const struct conf *c);

/*
 * Workers share ticket keys through memory mapped before they are forked.
 * tlsconf_share_keys: set that up with tk's keys (the master, before
 * forking); 0 or -1. tlsconf_publish: the master, after each
 * tlsconf_rotate, makes the new key available. tlsconf_sync: a worker
 * adopts keys published since its last call into tk and (if non-NULL)
 * the live context ts; 0 or -1 with err. Both are no-ops without sharing.
 */
int	tlsconf_share_keys(const struct ticket_keys *tk);
void	tlsconf_publish(const struct ticket_keys *tk);
int	tlsconf_sync(struct ticket_keys *tk, struct tls_server *ts, char *err,
	    size_t errsz);

/* tlsconf_wipe_keys: forget every ticket key (explicit_bzero). */
void	tlsconf_wipe_keys(struct ticket_keys *tk);

/* tlsconf_forget_keys: the same, but keep the session id context and the
 * last key name, which the workers share from the start: if popsd's own
 * keys are used again, the next one the master makes and publishes is
 * every worker's. */
void	tlsconf_forget_keys(struct ticket_keys *tk);

/*
 * tlsconf_conn_facts: what the session summary line says about a client
 * TLS connection whose handshake completed (t may be NULL: no TLS): the
 * server name the client asked for (SNI) and the subject of its verified
 * certificate, both sanitized for a log line ("-" when there is none),
 * and whether the session was resumed.
 */
void	tlsconf_conn_facts(struct tls *t, char *sni, size_t snisz,
	    char *subject, size_t subjectsz, bool *resumed);

#endif
