/*
 * session_outbound.c — a session on a "listen outbound" socket: a
 * plaintext client inside, a verified TLS upstream outside.
 *
 *   fixed (upstream HOST:PORT pop3s|stls):
 *     connect → negotiate (upstream.c) → TLS handshake, certificate and
 *     name verified → the upstream's own greeting to the client → relay
 *   routed (upstream-allow):
 *     popsd greets; route.c stands in for the upstream behind the
 *     mediator until "USER name@host" → resolve (resolve.c) → connect →
 *     negotiate → TLS → "USER name" and what the client sent after it
 *     → relay
 *
 * Never downgrade: until the handshake has verified the certificate the
 * upstream gets nothing but upstream.c's CAPA and STLS (from ob->out);
 * the client's bytes wait in cin/to_backend, which only PH_RELAY writes.
 * Every failure before that is "-ERR [SYS/TEMP] ..." to the client.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tls.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "pop3.h"
#include "popsd.h"
#include "resolve.h"
#include "session.h"
#include "session_int.h"

#define NEGO_BUF_SIZE	(2 * UPSTREAM_LINE_MAX)

#define R_PLAINTEXT	"-ERR [AUTH] plaintext POP3 is not allowed from " \
			    "your address\r\n"
#define R_GREETING	"+OK popsd outbound proxy: USER name@host, then " \
			    "PASS\r\n"

static bool	start_tls(struct session *);

/* refuse: end with "-ERR [SYS/TEMP] text" after logging why once. */
static void
refuse(struct session *s, const char *reason, const char *text,
    const char *why)
{
	snprintf(s->detail, sizeof(s->detail), "upstream %s: %s",
	    s->target->text[0] ? s->target->text : "-", why);
	log_warnx("session=%llu %s", (unsigned long long)s->id, s->detail);
	session_refuse(s, reason, text);
}

/* start_target: connect to s->ob->target (resolved). */
static void
start_target(struct session *s)
{
	s->target = &s->ob->target;
	session_connect(s);
}

void
outbound_begin(struct session *s)
{
	const struct conf *c = s->conf;
	struct outbound *ob;

	if (s->peerlen == 0 || !conf_cidr_match(c->plaintext_allow,
	    c->nplaintext_allow, (struct sockaddr *)&s->peer)) {
		/* Its password would cross the network in the clear:
		 * nothing goes upstream, not even a connection. */
		session_refuse(s, "plaintext-denied", "");
		buf_free(&s->to_client);
		(void)buf_append(&s->to_client, R_PLAINTEXT,
		    strlen(R_PLAINTEXT));
		s->auth_refused = true;
		return;
	}
	if ((ob = calloc(1, sizeof(*ob))) == NULL) {
		session_close(s, "out-of-memory");
		return;
	}
	s->ob = ob;
	buf_init(&ob->in, NEGO_BUF_SIZE);
	buf_init(&ob->out, 64);
	if (c->have_upstream) {
		ob->target = c->upstream.target;
		ob->implicit_tls = c->upstream.implicit_tls;
		snprintf(ob->host, sizeof(ob->host), "%.*s", ROUTE_HOST_MAX,
		    c->upstream.host);
		start_target(s);
		return;
	}
	/* Routed: our greeting, no APOP timestamp (we hold no secret). */
	route_init(&ob->route, c->upstream_allow, c->nupstream_allow);
	ob->routing = true;
	(void)buf_append(&s->bin, R_GREETING, strlen(R_GREETING));
	/* No upstream socket yet: nothing to read or write there. */
	s->backend.rd_wait = s->backend.wr_wait = EV_READ;
	s->greeted = true;
	session_set_phase(s, PH_RELAY);
	session_relay_timeout(s);
}

/* resolved: the routed upstream's addresses (or why there are none). */
static void
resolved(void *arg, const struct addrinfo *res, int err)
{
	struct session *s = arg;
	struct conf_backend *t = &s->ob->target;
	const struct addrinfo *ai;

	s->ob->rq = NULL;
	for (ai = res; ai != NULL && t->naddrs < CONF_MAX_BACKEND_ADDRS;
	    ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(t->addrs[0]))
			continue;
		memcpy(&t->addrs[t->naddrs], ai->ai_addr, ai->ai_addrlen);
		t->addrlens[t->naddrs++] = ai->ai_addrlen;
	}
	if (t->naddrs == 0)
		refuse(s, "upstream-unresolved", "cannot find that server",
		    err ? gai_strerror(err) : "no IPv4 or IPv6 address");
	else
		start_target(s);
	session_pump(s);
}

/* route_go: the client named an allowed server: look it up. */
static void
route_go(struct session *s)
{
	struct outbound *ob = s->ob;
	const struct route_target *t = &ob->route.target;

	ob->routing = false;
	snprintf(ob->host, sizeof(ob->host), "%s", t->host);
	snprintf(ob->name, sizeof(ob->name), "%s", t->name);
	ob->implicit_tls = t->implicit_tls;
	ob->target.kind = BACKEND_TCP;
	snprintf(ob->target.text, sizeof(ob->target.text), "%.120s:%u",
	    t->host, (unsigned)t->port);
	s->target = &ob->target;
	session_set_phase(s, PH_RESOLVE);
	session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_connect,
	    "upstream-timeout");
	ob->rq = resolve_start(s->d->loop, t->host, t->port, resolved, s);
	if (ob->rq == NULL)
		refuse(s, "upstream-unresolved", "cannot find that server",
		    "cannot start a lookup");
}

void
outbound_route(struct session *s)
{
	struct outbound *ob = s->ob;

	switch (route_input(&ob->route, &s->to_backend, &s->bin)) {
	case ROUTE_GO:
		route_go(s);
		break;
	case ROUTE_QUIT:
		/* As if the upstream had answered QUIT and closed. */
		ob->routing = false;
		if (s->first_eof == NULL)
			s->first_eof = "client-quit";
		s->backend.eof = true;
		break;
	case ROUTE_NONE:
		if (ob->route.refused[0] != '\0') {
			log_info("session=%llu routed upstream refused: %s is "
			    "not in upstream-allow", (unsigned long long)s->id,
			    ob->route.refused);
			ob->route.refused[0] = '\0';
		}
		if (s->client.eof) {
			if (s->first_eof == NULL)
				s->first_eof = "client-closed";
			s->backend.eof = true;	/* nothing more will come */
		}
		break;
	}
}

void
outbound_connected(struct session *s)
{
	struct outbound *ob = s->ob;

	upstream_init(&ob->nego, ob->implicit_tls ? UPSTREAM_POP3S :
	    UPSTREAM_STLS);
	s->backend.rd_wait = s->backend.wr_wait = 0;
	session_set_phase(s, PH_UP_NEGOTIATE);
	session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake,
	    "upstream-timeout");
	/* pop3s: TLS at once, before reading anything in the clear. */
	if (upstream_step(&ob->nego, &ob->in, &ob->out) == UP_START_TLS)
		(void)start_tls(s);
}

/* start_tls: the upstream said "+OK" to STLS (or is pop3s). */
static bool
start_tls(struct session *s)
{
	struct outbound *ob = s->ob;
	struct tls *ctx;

	/* Sent before the handshake, by the upstream or someone on the
	 * path: never read as if it came from inside TLS. */
	buf_free(&ob->in);
	if (s->conf->upstream_tls == NULL || (ctx = tls_client()) == NULL) {
		refuse(s, "upstream-tls-failed", "cannot reach the mail server "
		    "securely", "tls_client failed");
		return true;
	}
	s->backend.io.tls = ctx;	/* freed with the endpoint */
	/* tls_connect_socket sends SNI and has libtls check the name (or
	 * IP address) in the certificate against host. */
	if (tls_configure(ctx, s->conf->upstream_tls) == -1 ||
	    tls_connect_socket(ctx, s->backend.io.fd, ob->host) == -1) {
		refuse(s, "upstream-tls-failed", "cannot reach the mail server "
		    "securely", tls_error(ctx));
		return true;
	}
	s->backend.rd_wait = s->backend.wr_wait = 0;
	session_set_phase(s, PH_UP_HANDSHAKE);
	return true;
}

/* ready: verified TLS and a greeting: relay from here on. */
static void
ready(struct session *s)
{
	struct outbound *ob = s->ob;
	const char *g = upstream_greeting(&ob->nego);
	uint8_t *rest = NULL;
	const uint8_t *p;
	size_t len = 0;

	buf_free(&ob->in);	/* nothing else is owed to anyone */
	if (ob->name[0] == '\0') {
		/* Fixed: the upstream's own greeting, so that APOP's
		 * timestamp is the upstream's and APOP works end to end. */
		(void)buf_appendf(&s->bin, "%s\r\n", g);
	} else {
		/* Routed: the client had our greeting; the upstream gets
		 * the USER it was asked for, then what followed it. */
		if ((p = buf_rptr(&s->to_backend, &len)) != NULL) {
			if ((rest = malloc(len)) == NULL) {
				refuse(s, "out-of-memory", "out of memory",
				    "out of memory");
				return;
			}
			memcpy(rest, p, len);
		}
		buf_free(&s->to_backend);
		(void)buf_appendf(&s->to_backend, "USER %s\r\n", ob->name);
		if (rest != NULL) {
			(void)buf_append(&s->to_backend, rest, len);
			explicit_bzero(rest, len);
			free(rest);
		}
	}
	s->backend.rd_wait = s->backend.wr_wait = 0;
	s->greeted = true;
	session_set_phase(s, PH_RELAY);
	session_relay_timeout(s);
}

static void
handshake_done(struct session *s)
{
	struct outbound *ob = s->ob;
	struct tls *ctx = s->backend.io.tls;
	const char *v = tls_conn_version(ctx), *sub = tls_peer_cert_subject(ctx);

	snprintf(ob->tls_version, sizeof(ob->tls_version), "%s", v ? v : "?");
	snprintf(ob->subject, sizeof(ob->subject), "%s", sub ? sub : "");
	log_debug("session=%llu upstream %s verified: %s %s",
	    (unsigned long long)s->id, s->target->text, ob->tls_version,
	    ob->subject);
	upstream_tls_done(&ob->nego);
	session_set_phase(s, PH_UP_NEGOTIATE);
}

/* negotiate: one round of upstream.c's dialogue. false: closed. */
static bool
negotiate(struct session *s)
{
	struct outbound *ob = s->ob;
	bool failed = false;

	(void)relay_write(&s->backend, &ob->out, &failed);
	if (!failed)
		(void)relay_read(&s->backend, &ob->in, &failed);
	if (failed) {
		refuse(s, "upstream-error", "cannot reach the mail server",
		    s->backend.io.err);
		return true;
	}
	switch (upstream_step(&ob->nego, &ob->in, &ob->out)) {
	case UP_WAIT:
		if (s->backend.eof)
			refuse(s, "upstream-closed", "the mail server closed "
			    "the connection", "closed during negotiation");
		else if (!buf_empty(&ob->out) && s->backend.wr_wait == 0)
			(void)relay_write(&s->backend, &ob->out, &failed);
		break;
	case UP_START_TLS:
		return start_tls(s);
	case UP_READY:
		ready(s);
		break;
	case UP_FAIL:
		refuse(s, "upstream-refused", "the mail server offers no "
		    "secure login; nothing was sent", upstream_why(&ob->nego));
		break;
	}
	return true;
}

bool
outbound_step(struct session *s)
{
	int rv;

	if (s->phase == PH_UP_NEGOTIATE)
		return negotiate(s);
	if (s->backend.wr_wait != 0)
		return true;
	rv = xio_handshake(&s->backend.io);
	if (xio_wants(rv)) {
		s->backend.wr_wait = xio_want_event(rv);
		return true;
	}
	if (rv != 0) {
		refuse(s, "upstream-tls-failed", "cannot reach the mail server "
		    "securely (TLS or certificate check failed); nothing was "
		    "sent", s->backend.io.err);
		return true;
	}
	handshake_done(s);
	return true;
}

void
outbound_timeout(struct session *s)
{
	const char *what = s->phase == PH_RESOLVE ? "lookup" :
	    s->phase == PH_CONNECT ? "connect" : s->phase == PH_UP_HANDSHAKE ?
	    "TLS handshake" : "negotiation";
	char why[64];

	resolve_cancel(s->ob->rq);
	s->ob->rq = NULL;
	ev_io_stop(s->d->loop, &s->backend.w);
	xio_close(&s->backend.io);
	s->backend.armed = 0;
	snprintf(why, sizeof(why), "%s timed out", what);
	refuse(s, "upstream-timeout", "mail server not answering", why);
}

void
outbound_free(struct session *s)
{
	if (s->ob == NULL)
		return;
	resolve_cancel(s->ob->rq);
	buf_free(&s->ob->in);
	buf_free(&s->ob->out);
	free(s->ob);
	s->ob = NULL;
}
