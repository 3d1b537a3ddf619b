/*
 * session.c — one client, one backend connection, four bounded buffers.
 *
 *   client ──▶ cin ──(pop3 mediator)──▶ to_backend ──▶ backend
 *   client ◀── to_client ◀──(pop3 mediator)── bin ◀── backend
 *
 * While the POP3 session is in the AUTHORIZATION state the mediator
 * (pop3.c) sits between the buffers. After login it is freed and the
 * session splices: cin goes straight to the backend and bin straight to
 * the client, once whatever the mediator had queued has drained.
 *
 * I/O is driven by session_pump(): every operation that has something to
 * do and is not waiting for readiness is tried; what it waits for is
 * recorded (rd_wait/wr_wait) and the endpoint's single watcher is armed
 * for exactly that. A full buffer simply stops its reader.
 *
 * This file holds the life cycle, phases, timers and the pump; the bytes
 * move in relay.c, and session_exec.c and session_proxy.c hold the
 * "backend exec" and PROXY protocol parts (session_int.h).
 */
#include "session.h"
#include "session_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <tls.h>
#include <unistd.h>

#include <ev.h>

#include "backend.h"
#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "pop3.h"
#include "spawn.h"
#include "tlsconf.h"
#include "popsd.h"
#include "xio.h"

static const char *const phase_names[] = {
	[PH_PROXY] = "proxy",
	[PH_HANDSHAKE] = "handshake",
	[PH_SPAWN] = "spawn",
	[PH_CONNECT] = "connect",
	[PH_RELAY] = "relay",
	[PH_STARTTLS] = "starttls",
	[PH_STLS_HANDSHAKE] = "stls-handshake",
	[PH_REFUSE] = "refuse",
	[PH_RESOLVE] = "resolve",
	[PH_UP_NEGOTIATE] = "upstream-negotiate",
	[PH_UP_HANDSHAKE] = "upstream-handshake",
};

static void	endpoint_cb(struct ev_loop *loop, ev_io *w, int revents);
static void	timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

void
session_endpoint_init(struct session *s, struct endpoint *e, int fd)
{
	memset(e, 0, sizeof(*e));
	xio_init(&e->io, fd);
	e->s = s;
	ev_io_init(&e->w, endpoint_cb, fd, 0);
	e->w.data = e;
}

/* endpoint_arm: (re)start the watcher for exactly the events wanted. */
static void
endpoint_arm(struct session *s, struct endpoint *e, int events)
{
	if (e->io.fd == -1 || events == e->armed)
		return;
	ev_io_stop(s->d->loop, &e->w);
	if (e->w.fd != e->io.fd)
		ev_io_set(&e->w, e->io.fd, events);
	else
		ev_io_modify(&e->w, events);
	if (events)
		ev_io_start(s->d->loop, &e->w);
	e->armed = events;
}

/* --- timers ------------------------------------------------------------ */

static void
timer_schedule(struct session *s)
{
	ev_tstamp base, due, now = ev_now(s->d->loop);

	base = s->deadline == DL_IDLE ? s->last_activity : s->phase_start;
	due = base + s->timeout - now;
	ev_timer_stop(s->d->loop, &s->timer);
	ev_timer_set(&s->timer, due > 0 ? due : 0, 0);
	ev_timer_start(s->d->loop, &s->timer);
}

void
session_set_timeout(struct session *s, enum deadline dl, double seconds,
    const char *reason)
{
	s->deadline = dl;
	s->timeout = seconds;
	s->timeout_reason = reason;
	s->phase_start = ev_now(s->d->loop);
	timer_schedule(s);
}

void
session_set_phase(struct session *s, enum phase ph)
{
	if (log_verbosity() > 1)
		log_debug("session=%llu phase=%s->%s",
		    (unsigned long long)s->id, phase_names[s->phase],
		    phase_names[ph]);
	s->phase = ph;
}

/* The relay's timer: connect timeout until the backend greets, then the
 * login deadline (mediated) or idle timeout (spliced), then drain once
 * half-closed. */
void
session_relay_timeout(struct session *s)
{
	const struct conf *c = s->conf;

	if (s->client.eof || s->backend.eof)
		session_set_timeout(s, DL_ABSOLUTE, c->timeout_drain,
		    "timeout-drain");
	else if (!s->greeted)
		session_set_timeout(s, DL_ABSOLUTE, c->timeout_connect,
		    "backend-silent");
	else if (s->pop3 != NULL)
		/* Absolute, not idle: a client trickling a byte at a time
		 * must not hold an unauthenticated session open forever. */
		session_set_timeout(s, DL_ABSOLUTE, c->timeout_login,
		    "timeout-login");
	else
		session_set_timeout(s, DL_IDLE, c->timeout_idle,
		    "timeout-idle");
}

/* --- ending ------------------------------------------------------------ */

void
session_capture_pop3(struct session *s)
{
	if (s->pop3 == NULL)
		return;
	s->stls_used |= pop3_stls_used(s->pop3);
	s->auth_refused |= pop3_auth_refused(s->pop3);
	if (pop3_user(s->pop3)[0] != '\0')
		snprintf(s->user, sizeof(s->user), "%s", pop3_user(s->pop3));
}

/* count_login: a login went through; by transport. Under "require-tls
 * warn" a plaintext login is logged, so admins see who would break. */
static void
count_login(struct session *s)
{
	const struct conf *c = s->conf;

	if (s->client.io.tls != NULL)
		metrics_count(M_LOGINS_TLS, 1);
	else if (!c->require_tls_warn || (s->peerlen > 0 &&
	    conf_cidr_match(c->plaintext_allow, c->nplaintext_allow,
	    (struct sockaddr *)&s->peer)))
		metrics_count(M_LOGINS_PLAIN_ALLOWED, 1);
	else {
		metrics_count(M_LOGINS_PLAIN_WARNED, 1);
		log_warnx("session=%llu client=%s port=%s listener=%s "
		    "event=plaintext-login user=\"%s\"",
		    (unsigned long long)s->id, s->peer_addr, s->peer_port,
		    listen_kind_name(s->kind), pop3_user(s->pop3));
	}
}

/*
 * session_pop3_events: what the mediator saw since the last call, made
 * counts and log lines: one line per failed login and per shield
 * rejection, with the client address (what fail2ban matches; the user
 * name is sanitized and never a password), and the login itself when ev
 * says it went through. Called after every mediator call.
 */
void
session_pop3_events(struct session *s, int ev)
{
	const struct pop3 *p = s->pop3;

	if (p == NULL)
		return;
	for (; s->failures_seen < pop3_login_failures(p); s->failures_seen++) {
		metrics_count(M_LOGIN_FAILURES, 1);
		log_warnx("session=%llu client=%s port=%s event=auth-failed "
		    "user=\"%s\"", (unsigned long long)s->id, s->peer_addr,
		    s->peer_port, pop3_user(p)[0] ? pop3_user(p) : "-");
	}
	for (; s->shield_seen < pop3_shield_rejections(p); s->shield_seen++) {
		metrics_count(M_SHIELD_REJECTIONS, 1);
		log_warnx("session=%llu client=%s port=%s "
		    "event=shield-rejected", (unsigned long long)s->id,
		    s->peer_addr, s->peer_port);
	}
	if (pop3_auth_refused(p) && !s->refused_seen) {
		s->refused_seen = true;
		metrics_count(M_PLAIN_REFUSED, 1);
	}
	if (ev & POP3_EV_SPLICE)
		count_login(s);
}

/* count_close: a session's figures once it ends; a handshake it was in
 * the middle of failed. */
static void
count_close(struct session *s, const char *reason)
{
	if (s->phase == PH_HANDSHAKE || s->phase == PH_STLS_HANDSHAKE)
		metrics_count(metrics_tls_failure(reason, s->client.io.err), 1);
	metrics_session_closed(s->client.bytes_read, s->client.bytes_written);
}

/* upstream_facts: " upstream=... upstream_tls=... upstream_subject=..."
 * for an outbound session, else "". */
static void
upstream_facts(const struct session *s, char *out, size_t outsz)
{
	char subject[sizeof(s->ob->subject)];

	out[0] = '\0';
	if (s->ob == NULL)
		return;
	log_sanitize(subject, sizeof(subject), s->ob->subject,
	    strlen(s->ob->subject));
	snprintf(out, outsz, " upstream=%s upstream_tls=%s "
	    "upstream_subject=\"%s\"", s->ob->target.text[0] ?
	    s->ob->target.text : "-",
	    s->ob->tls_version[0] ? s->ob->tls_version : "none",
	    subject[0] ? subject : "-");
}

static void
log_summary(struct session *s, const char *reason)
{
	char detail[sizeof(s->detail)], sni[128], subject[256], up[640];
	double dur = ev_now(s->d->loop) - s->started;
	bool resumed;

	log_sanitize(detail, sizeof(detail), s->detail, strlen(s->detail));
	/* TLS facts only once the handshake completed (tls_version set). */
	tlsconf_conn_facts(s->tls_version[0] ? s->client.io.tls : NULL, sni,
	    sizeof(sni), subject, sizeof(subject), &resumed);
	upstream_facts(s, up, sizeof(up));
	log_info("session=%llu client=%s port=%s listener=%s tls=%s cipher=%s "
	    "servername=%s resumed=%s client_cert=\"%s\" "
	    "stls=%s login=%s auth_refused=%s user=\"%s\" from_client=%llu "
	    "to_client=%llu duration=%.3f reason=%s%s%s%s%s%s%s",
	    (unsigned long long)s->id, s->peer_addr, s->peer_port,
	    listen_kind_name(s->kind),
	    s->tls_version[0] ? s->tls_version : "none",
	    s->tls_cipher[0] ? s->tls_cipher : "none",
	    sni, resumed ? "yes" : "no", subject,
	    s->stls_used ? "yes" : "no", s->logged_in ? "yes" : "no",
	    s->auth_refused ? "yes" : "no", s->user[0] ? s->user : "-",
	    (unsigned long long)s->client.bytes_read,
	    (unsigned long long)s->client.bytes_written, dur, reason, up,
	    s->via[0] ? " via=" : "", s->via,
	    detail[0] ? " detail=\"" : "", detail, detail[0] ? "\"" : "");
}

void
session_close(struct session *s, const char *reason)
{
	struct popsd *d = s->d;

	session_capture_pop3(s);
	/* Its places are given back before its line is logged: once the
	 * line is there, a new session from the same client is admitted
	 * (in every worker). */
	TAILQ_REMOVE(&d->sessions, s, entry);
	d->nsessions--;
	acct_release(d->ledger, &s->acct);
	/* Draining (SIGTERM, or inetd mode, which never takes a second
	 * session) ends with the last session. */
	if (d->draining && d->nsessions == 0)
		ev_break(d->loop, EVBREAK_ALL);
	count_close(s, reason);
	log_summary(s, reason);
	ev_io_stop(d->loop, &s->client.w);
	ev_io_stop(d->loop, &s->backend.w);
	ev_timer_stop(d->loop, &s->timer);
	xio_close(&s->client.io);
	xio_close(&s->backend.io);
	buf_free(&s->cin);
	buf_free(&s->to_backend);
	buf_free(&s->bin);
	buf_free(&s->to_client);
	pop3_free(s->pop3);
	outbound_free(s);
	spawner_cancel(s->spawn);
	if (s->err_fd != -1) {
		/* Last words of a daemon that just exited are still in the
		 * pipe: log them before closing it. */
		session_stderr_drain(s);
		ev_io_stop(d->loop, &s->errw);
		close(s->err_fd);
	}
	tls_server_unref(s->tls_srv);
	conf_unref(s->conf);
	free(s);
}

void
session_shutdown_all(struct popsd *d, const char *reason)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&d->sessions)) != NULL)
		session_close(s, reason);
}

/*
 * session_refuse: tell the client we cannot serve it ("-ERR [SYS/TEMP]
 * ..." per RFC 3206: the fault is ours and temporary), then close
 * cleanly.
 */
void
session_refuse(struct session *s, const char *reason, const char *text)
{
	buf_free(&s->to_client);
	buf_free(&s->bin);
	buf_free(&s->cin);
	/* A "listen tls" port speaks no POP3: there it is a clean close. */
	if (s->kind != LISTEN_TLS)
		(void)buf_appendf(&s->to_client, "-ERR [SYS/TEMP] %s\r\n",
		    text);
	session_set_phase(s, PH_REFUSE);
	session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_drain, reason);
	/* The reason to log once the refusal is flushed. */
	s->first_eof = reason;
}

void
session_note_detail(struct session *s, const char *who, const struct xio *x)
{
	if (x->err[0] != '\0' && s->detail[0] == '\0')
		snprintf(s->detail, sizeof(s->detail), "%s: %s", who, x->err);
}

/* --- phases -------------------------------------------------------------- */

static void
capture_tls_facts(struct session *s)
{
	const char *v = tls_conn_version(s->client.io.tls);
	const char *c = tls_conn_cipher(s->client.io.tls);

	snprintf(s->tls_version, sizeof(s->tls_version), "%s", v ? v : "?");
	snprintf(s->tls_cipher, sizeof(s->tls_cipher), "%s", c ? c : "?");
}

static struct pop3 *
mediator_new(struct session *s)
{
	const struct conf *c = s->conf;
	struct pop3_policy pol;
	bool allowed = false;

	if (s->peerlen > 0)
		allowed = conf_cidr_match(c->plaintext_allow,
		    c->nplaintext_allow, (struct sockaddr *)&s->peer);
	memset(&pol, 0, sizeof(pol));
	pol.tls_active = s->kind == LISTEN_POP3S;
	/* An outbound listener is plaintext by design, for clients in
	 * plaintext-allow only (outbound_begin checks): no STLS there. */
	pol.tls_offered = s->d->tls_server != NULL && s->kind != LISTEN_OUTBOUND;
	pol.require_tls = c->require_tls && !allowed && s->kind != LISTEN_OUTBOUND;
	pol.sasl_line_max = (size_t)c->sasl_line_max;
	pol.max_errors = c->max_auth_errors;
	return pop3_new(&pol);
}

void
session_backend_unavailable(struct session *s, const char *err)
{
	snprintf(s->detail, sizeof(s->detail), "%s %.128s: %.128s",
	    s->ob ? "upstream" : "backend", s->target->text, err);
	log_warnx("session=%llu %s", (unsigned long long)s->id, s->detail);
	metrics_count(M_BACKEND_FAILURES, 1);
	session_refuse(s, s->ob ? "upstream-unavailable" : "backend-unavailable",
	    "mail service temporarily unavailable");
}

/* connect_next: try backend addresses from s->backend_idx on. */
static void
connect_next(struct session *s)
{
	char err[128];
	int fd, more = 0;

	for (;;) {
		fd = backend_connect_start(s->target, s->backend_idx,
		    &more, err, sizeof(err));
		if (fd != -1)
			break;
		if (!more) {
			session_backend_unavailable(s, err);
			return;
		}
		s->backend_idx++;
	}
	session_endpoint_init(s, &s->backend, fd);
	s->backend.wr_wait = EV_WRITE;
	session_set_phase(s, PH_CONNECT);
}

/* session_backend_ready: the backend connection exists; relay from here on. A
 * "listen tls" session has no greeting to wait for (the protocol behind
 * it may well be client-first). */
void
session_backend_ready(struct session *s)
{
	if (s->ob != NULL) {
		outbound_connected(s);
		return;
	}
	if (s->conf->backend.proxy_version && session_send_proxy_header(s) == -1)
		return;
	session_set_phase(s, PH_RELAY);
	if (s->kind == LISTEN_TLS) {
		s->greeted = true;
		session_relay_timeout(s);
	} else
		s->timeout_reason = "backend-silent";	/* until the greeting */
}

void
session_connect(struct session *s)
{
	s->backend_idx = 0;
	session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_connect,
	    s->ob ? "upstream-timeout" : "backend-timeout");
	if (s->target->kind == BACKEND_EXEC)
		session_start_spawn(s);
	else
		connect_next(s);
}

static void
step_connect(struct session *s)
{
	char err[128];

	if (s->backend.wr_wait != 0)
		return;
	if (backend_connect_result(s->backend.io.fd, err, sizeof(err)) == 0) {
		session_backend_ready(s);
		return;
	}
	ev_io_stop(s->d->loop, &s->backend.w);
	xio_close(&s->backend.io);
	s->backend.armed = 0;
	if (s->backend_idx + 1 < s->target->naddrs) {
		s->backend_idx++;
		connect_next(s);
		return;
	}
	session_backend_unavailable(s, err);
}


/* step_handshake: returns false when the session was closed. */
static bool
step_handshake(struct session *s)
{
	int rv;

	if (s->client.wr_wait != 0)
		return true;
	rv = xio_handshake(&s->client.io);
	if (xio_wants(rv)) {
		s->client.wr_wait = xio_want_event(rv);
		return true;
	}
	if (rv != 0) {
		session_note_detail(s, "client", &s->client.io);
		session_close(s, "tls-handshake-failed");
		return false;
	}
	capture_tls_facts(s);
	metrics_tls_established(s->tls_version, tls_conn_session_resumed(
	    s->client.io.tls) == 1, s->phase == PH_STLS_HANDSHAKE);
	if (s->phase == PH_HANDSHAKE) {
		session_connect(s);
		return true;
	}
	/* STLS: same backend connection, now behind TLS (RFC 2595 §4). */
	pop3_tls_started(s->pop3);
	session_set_phase(s, PH_RELAY);
	session_relay_timeout(s);
	return true;
}

/* accept_tls: put the client socket under the current TLS server context,
 * which the session keeps alive until it ends. -1 if the session closed. */
static int
accept_tls(struct session *s)
{
	struct tls_server *ts = s->d->tls_server;

	if (ts == NULL || xio_tls_accept(&s->client.io, ts->ctx) == -1) {
		snprintf(s->detail, sizeof(s->detail), "%s",
		    ts ? s->client.io.err : "no TLS configured");
		session_close(s, "tls-setup-failed");
		return -1;
	}
	s->tls_srv = tls_server_ref(ts);
	return 0;
}

/* begin_stls_handshake: our "+OK" is out; anything the client sent after
 * its STLS line was sent before it could have seen that "+OK", so it is
 * discarded unread (CVE-2011-0411), then TLS starts on the same socket. */
static bool
begin_stls_handshake(struct session *s)
{
	buf_free(&s->cin);
	if (accept_tls(s) == -1)
		return false;
	s->client.rd_wait = s->client.wr_wait = 0;
	s->stls_used = true;
	session_set_phase(s, PH_STLS_HANDSHAKE);
	session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake,
	    "timeout-handshake");
	return true;
}

/* --- relaying ------------------------------------------------------------ */


/* --- the pump ------------------------------------------------------------ */

/* pump_round: one pass over the current phase; returns -1 if the session
 * was closed, else how much happened (0 = nothing more to do now). */
static long
pump_round(struct session *s)
{
	enum phase before = s->phase;
	long moved;

	switch (s->phase) {
	case PH_PROXY:
		if (!session_read_proxy(s))
			return -1;
		break;
	case PH_HANDSHAKE:
	case PH_STLS_HANDSHAKE:
		if (!step_handshake(s))
			return -1;
		break;
	case PH_SPAWN:
		break;		/* spawn_done() moves on */
	case PH_CONNECT:
		step_connect(s);
		break;
	case PH_RELAY:
	case PH_STARTTLS:
		if ((moved = relay_io(s)) < 0)
			return -1;
		if (s->phase == PH_STARTTLS && buf_empty(&s->to_client) &&
		    s->client.wr_wait == 0) {
			if (!begin_stls_handshake(s))
				return -1;
		} else if (s->phase == PH_RELAY && !relay_halfclose(s))
			return -1;
		if (moved > 0)
			return moved;
		break;
	case PH_REFUSE:
		if (!relay_refusal(s))
			return -1;
		break;
	case PH_RESOLVE:
		break;		/* the resolver calls back */
	case PH_UP_NEGOTIATE:
	case PH_UP_HANDSHAKE:
		if (!outbound_step(s))
			return -1;
		break;
	}
	return s->phase != before;
}

/* Events the endpoints must wait for, given what each op still has to do. */
static void
arm_watchers(struct session *s, bool *repump)
{
	int cev = 0, bev = 0;
	bool relaying = s->phase == PH_RELAY || s->phase == PH_STARTTLS;

	*repump = false;
	switch (s->phase) {
	case PH_PROXY:
		cev = s->client.rd_wait;
		break;
	case PH_HANDSHAKE:
	case PH_STLS_HANDSHAKE:
		cev = s->client.wr_wait;
		break;
	case PH_CONNECT:
		bev = s->backend.wr_wait;
		break;
	case PH_REFUSE:
		cev = s->client.wr_wait;
		break;
	case PH_UP_NEGOTIATE:
		bev = s->backend.rd_wait;
		if (!buf_empty(&s->ob->out))
			bev |= s->backend.wr_wait;
		break;
	case PH_UP_HANDSHAKE:
		bev = s->backend.wr_wait;
		break;
	default:
		break;
	}
	if (relaying) {
		if (s->phase == PH_RELAY && !s->client.eof && buf_space(&s->cin))
			cev |= s->client.rd_wait;
		if (!buf_empty(relay_client_source(s)) ||
		    xio_pending(&s->client.io) > 0 || (s->backend.eof &&
		    !s->client.shut))
			cev |= s->client.wr_wait;
		if (!s->backend.eof && buf_space(&s->bin))
			bev |= s->backend.rd_wait;
		if (!buf_empty(relay_backend_source(s)) && !s->backend.shut)
			bev |= s->backend.wr_wait;
		/* Something could proceed but was not tried: come back. */
		if ((s->phase == PH_RELAY && !s->client.eof &&
		    buf_space(&s->cin) && s->client.rd_wait == 0) ||
		    (!s->backend.eof && buf_space(&s->bin) &&
		    s->backend.rd_wait == 0))
			*repump = true;
	}
	endpoint_arm(s, &s->client, cev);
	endpoint_arm(s, &s->backend, bev);
}

void
session_pump(struct session *s)
{
	bool repump;
	long r;
	int i;

	for (i = 0; i < PUMP_ROUNDS; i++) {
		if ((r = pump_round(s)) < 0)
			return;
		if (r == 0)
			break;
	}
	arm_watchers(s, &repump);
	if (repump || i == PUMP_ROUNDS)
		ev_feed_event(s->d->loop, &s->client.w, EV_CUSTOM);
}

static void
endpoint_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct endpoint *e = w->data;

	(void)loop;
	if (revents & EV_ERROR) {
		session_close(e->s, "watcher-error");
		return;
	}
	if (e->rd_wait & revents)
		e->rd_wait = 0;
	if (e->wr_wait & revents)
		e->wr_wait = 0;
	session_pump(e->s);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;
	ev_tstamp base;

	(void)revents;
	base = s->deadline == DL_IDLE ? s->last_activity : s->phase_start;
	if (base + s->timeout > ev_now(loop) + 0.001) {
		timer_schedule(s);	/* activity since: not yet due */
		return;
	}
	if (s->phase == PH_RELAY && !s->greeted) {
		snprintf(s->detail, sizeof(s->detail),
		    "backend %s sent no greeting", s->conf->backend.text);
		log_warnx("session=%llu backend %s sent no greeting in %.1fs",
		    (unsigned long long)s->id, s->conf->backend.text, s->timeout);
		session_refuse(s, "backend-silent", "mail service not answering");
		session_pump(s);
		return;
	}
	if (s->phase == PH_RESOLVE || s->phase == PH_UP_NEGOTIATE ||
	    s->phase == PH_UP_HANDSHAKE || (s->ob && s->phase == PH_CONNECT)) {
		outbound_timeout(s);
		session_pump(s);
		return;
	}
	if (s->phase == PH_CONNECT || s->phase == PH_SPAWN) {
		snprintf(s->detail, sizeof(s->detail), "backend %s: %s timed "
		    "out", s->conf->backend.text,
		    s->phase == PH_SPAWN ? "start" : "connect");
		log_warnx("session=%llu %s", (unsigned long long)s->id,
		    s->detail);
		metrics_count(M_BACKEND_FAILURES, 1);
		spawner_cancel(s->spawn);
		s->spawn = NULL;
		ev_io_stop(loop, &s->backend.w);
		xio_close(&s->backend.io);
		session_refuse(s, "backend-timeout", "mail service not answering");
		session_pump(s);
		return;
	}
	if (s->phase == PH_RELAY && s->pop3 != NULL && !s->client.eof &&
	    !s->backend.eof) {
		/* Pre-login: say why, like the backend would (RFC 1939 §3). */
		(void)buf_appendf(&s->to_client,
		    "-ERR Disconnected for inactivity\r\n");
		session_set_phase(s, PH_REFUSE);
		s->first_eof = s->timeout_reason;
		session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_drain,
		    "timeout-drain");
		session_pump(s);
		return;
	}
	session_close(s, s->timeout_reason);
}

/* --- start ---------------------------------------------------------------- */

/* session_numeric_host: address and port of ss as text, IPv4-mapped as IPv4
 * (what a legacy daemon and an admin expect in TCPREMOTEIP and logs). */
void
session_numeric_host(const struct sockaddr_storage *ss, socklen_t len,
    char *host, size_t hostsz, char *port, size_t portsz)
{
	struct sockaddr_in sin;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	const struct sockaddr *sa = (const struct sockaddr *)ss;

	host[0] = port[0] = '\0';
	if (len == 0 || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return;
	if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = s6->sin6_port;
		memcpy(&sin.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
		sa = (const struct sockaddr *)&sin;
		len = sizeof(sin);
	}
	if (getnameinfo(sa, len, host, hostsz, port, portsz,
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		host[0] = port[0] = '\0';
}

void
session_peer_text(struct session *s)
{
	session_numeric_host(&s->peer, s->peerlen, s->peer_addr, sizeof(s->peer_addr),
	    s->peer_port, sizeof(s->peer_port));
	if (s->peer_addr[0] == '\0') {
		snprintf(s->peer_addr, sizeof(s->peer_addr), "local");
		snprintf(s->peer_port, sizeof(s->peer_port), "-");
	}
}

static struct session *
session_new(struct popsd *d, enum listen_kind kind, int fd)
{
	struct session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->d = d;
	s->conf = conf_ref(d->conf);
	s->target = &s->conf->backend;
	s->id = d->next_session_id++ * d->id_stride + d->id_offset;
	s->kind = kind;
	s->started = s->last_activity = ev_now(d->loop);
	session_endpoint_init(s, &s->client, fd);
	session_endpoint_init(s, &s->backend, -1);
	buf_init(&s->cin, SESSION_BUF_SIZE);
	buf_init(&s->to_backend, SESSION_BUF_SIZE);
	/* Client-to-backend bytes include passwords: wiped before reuse. */
	s->cin.secret = s->to_backend.secret = true;
	buf_init(&s->bin, SESSION_BUF_SIZE);
	buf_init(&s->to_client, SESSION_BUF_SIZE);
	s->err_fd = -1;
	ev_timer_init(&s->timer, timer_cb, 0, 0);
	s->timer.data = s;
	TAILQ_INSERT_TAIL(&d->sessions, s, entry);
	d->nsessions++;
	metrics_session_opened(kind);
	return s;
}

void
session_start(struct popsd *d, enum listen_kind kind, int fd,
    const struct sockaddr *peer, socklen_t peerlen, const struct acct *a)
{
	struct acct places = *a;
	struct session *s;
	int one = 1;

	/* The greeting and every reply are small writes that must leave at
	 * once: with Nagle a reply can wait for a delayed ACK (~40 ms). */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((s = session_new(d, kind, fd)) == NULL) {
		log_warnx("session: out of memory");
		acct_release(d->ledger, &places);
		close(fd);
		return;
	}
	s->acct = places;
	if (peer != NULL && peerlen <= sizeof(s->peer)) {
		memcpy(&s->peer, peer, peerlen);
		s->peerlen = peerlen;
	}
	s->locallen = sizeof(s->local);
	if (getsockname(fd, (struct sockaddr *)&s->local, &s->locallen) == -1)
		s->locallen = 0;
	session_peer_text(s);
	if (s->peerlen == 0 || !conf_cidr_match(s->conf->accept_proxy,
	    s->conf->naccept_proxy, (struct sockaddr *)&s->peer)) {
		session_begin(s);	/* counted by the listener */
		return;
	}
	/* A trusted balancer: its PROXY header comes before anything else. */
	s->proxy_need = 1;
	session_set_phase(s, PH_PROXY);
	session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake,
	    "timeout-proxy");
	session_pump(s);
}

/* session_begin: the client is known (after any PROXY header): mediate
 * POP3 unless this is a plain TLS wrap, then TLS first or backend first. */
void
session_begin(struct session *s)
{
	if (s->kind != LISTEN_TLS && (s->pop3 = mediator_new(s)) == NULL) {
		session_close(s, "out-of-memory");
		return;
	}
	if (s->kind == LISTEN_OUTBOUND) {
		outbound_begin(s);
		session_pump(s);
		return;
	}
	if (s->kind == LISTEN_POP3) {
		session_connect(s);
		session_pump(s);
		return;
	}
	if (accept_tls(s) == -1)
		return;
	if (s->kind == LISTEN_TLS)
		relay_bulk(s);		/* a plain wrap is spliced from the start */
	session_set_phase(s, PH_HANDSHAKE);
	session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake,
	    "timeout-handshake");
	session_pump(s);
}
