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
 */
#include "session.h"

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
#include "pop3.h"
#include "proxy.h"
#include "spawn.h"
#include "tlsconf.h"
#include "popsd.h"
#include "xio.h"

/* One TLS record is at most 16 KiB: a buffer of that size moves a whole
 * record per call without holding more than one per direction. */
#define SESSION_BUF_SIZE	(16 * 1024)
/* Rounds of I/O per wakeup before yielding to other sessions. */
#define PUMP_ROUNDS		16

enum phase {
	PH_PROXY,		/* reading a load balancer's PROXY header */
	PH_HANDSHAKE,		/* implicit TLS handshake (pop3s) */
	PH_SPAWN,		/* waiting for the spawner (backend exec) */
	PH_CONNECT,		/* backend connect in progress */
	PH_RELAY,		/* relaying: mediated until login, then splice */
	PH_STARTTLS,		/* flushing our "+OK" to STLS */
	PH_STLS_HANDSHAKE,	/* TLS handshake after STLS */
	PH_REFUSE,		/* flushing a final "-ERR", then closing */
};

static const char *const phase_names[] = {
	[PH_PROXY] = "proxy",
	[PH_HANDSHAKE] = "handshake",
	[PH_SPAWN] = "spawn",
	[PH_CONNECT] = "connect",
	[PH_RELAY] = "relay",
	[PH_STARTTLS] = "starttls",
	[PH_STLS_HANDSHAKE] = "stls-handshake",
	[PH_REFUSE] = "refuse",
};

/* How the current phase's timer counts. */
enum deadline {
	DL_ABSOLUTE,		/* from the start of the phase */
	DL_IDLE,		/* from the last byte moved */
};

struct endpoint {
	struct xio	 io;
	ev_io		 w;
	int		 armed;		/* events the watcher is started for */
	int		 rd_wait;	/* readiness the read op waits for */
	int		 wr_wait;	/* ... the write/handshake/close op */
	bool		 eof;		/* the peer finished sending */
	bool		 shut;		/* we finished sending to the peer */
	uint64_t	 bytes_read;
	uint64_t	 bytes_written;
	struct session	*s;
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct popsd		*d;
	struct conf		*conf;		/* as when the session began */
	uint64_t		 id;
	enum listen_kind	 kind;
	enum phase		 phase;

	struct endpoint		 client;
	struct endpoint		 backend;
	struct buf		 cin, to_backend, bin, to_client;
	struct pop3		*pop3;		/* non-NULL while mediating */
	struct tls_server	*tls_srv;	/* what the client TLS came from */
	struct spawn_ticket	*spawn;		/* backend exec request in flight */
	ev_io			 errw;		/* backend exec: its stderr */
	int			 err_fd;
	int			 err_lines;	/* logged so far (bounded) */
	char			 err_buf[256];	/* partial stderr line */
	size_t			 err_len;
	struct sockaddr_storage	 peer;		/* the client (or PROXY source) */
	socklen_t		 peerlen;
	struct sockaddr_storage	 local;		/* our end (or PROXY destination) */
	socklen_t		 locallen;
	bool			 peer_counted;	/* in the per-address table */
	size_t			 proxy_need;	/* PROXY header bytes to read next */
	char			 via[64];	/* the balancer, when behind one */

	int			 backend_idx;	/* address being tried */
	bool			 greeted;	/* backend has said something */
	bool			 logged_in;	/* switched to splice */
	bool			 stls_used;
	bool			 auth_refused;
	char			 user[64];
	const char		*first_eof;	/* which side ended first */

	ev_timer		 timer;
	enum deadline		 deadline;
	double			 timeout;
	ev_tstamp		 phase_start;
	ev_tstamp		 last_activity;
	const char		*timeout_reason;
	ev_tstamp		 started;

	char			 peer_addr[64];
	char			 peer_port[8];
	char			 tls_version[24];
	char			 tls_cipher[64];
	char			 detail[320];	/* error text for the log */
};

static void	session_pump(struct session *s);
static void	endpoint_cb(struct ev_loop *loop, ev_io *w, int revents);
static void	timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void	stderr_drain(struct session *s);
static void	session_begin(struct session *s);
static void	peer_text(struct session *s);

static bool
want_is_io(ssize_t rv)
{
	return rv == XIO_WANT_READ || rv == XIO_WANT_WRITE;
}

static int
want_event(ssize_t rv)
{
	return rv == XIO_WANT_READ ? EV_READ : EV_WRITE;
}

static void
endpoint_init(struct session *s, struct endpoint *e, int fd)
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

static void
set_timeout(struct session *s, enum deadline dl, double seconds,
    const char *reason)
{
	s->deadline = dl;
	s->timeout = seconds;
	s->timeout_reason = reason;
	s->phase_start = ev_now(s->d->loop);
	timer_schedule(s);
}

static void
set_phase(struct session *s, enum phase ph)
{
	if (log_verbosity() > 1)
		log_debug("session=%llu phase=%s->%s",
		    (unsigned long long)s->id, phase_names[s->phase],
		    phase_names[ph]);
	s->phase = ph;
}

/* The relay's timer: connect timeout until the backend greets, then the
 * login (mediated) or idle (spliced) timeout, then drain once half-closed. */
static void
relay_timeout(struct session *s)
{
	const struct conf *c = s->conf;

	if (s->client.eof || s->backend.eof)
		set_timeout(s, DL_ABSOLUTE, c->timeout_drain, "timeout-drain");
	else if (!s->greeted)
		set_timeout(s, DL_ABSOLUTE, c->timeout_connect, "backend-silent");
	else if (s->pop3 != NULL)
		set_timeout(s, DL_IDLE, c->timeout_login, "timeout-login");
	else
		set_timeout(s, DL_IDLE, c->timeout_idle, "timeout-idle");
}

/* --- ending ------------------------------------------------------------ */

static void
capture_pop3_facts(struct session *s)
{
	if (s->pop3 == NULL)
		return;
	s->stls_used |= pop3_stls_used(s->pop3);
	s->auth_refused |= pop3_auth_refused(s->pop3);
	if (pop3_user(s->pop3)[0] != '\0')
		snprintf(s->user, sizeof(s->user), "%s", pop3_user(s->pop3));
}

static void
log_summary(struct session *s, const char *reason)
{
	char detail[sizeof(s->detail)], sni[128], subject[256];
	double dur = ev_now(s->d->loop) - s->started;
	bool resumed;

	log_sanitize(detail, sizeof(detail), s->detail, strlen(s->detail));
	/* TLS facts only once the handshake completed (tls_version set). */
	tlsconf_conn_facts(s->tls_version[0] ? s->client.io.tls : NULL, sni,
	    sizeof(sni), subject, sizeof(subject), &resumed);
	log_info("session=%llu client=%s port=%s listener=%s tls=%s cipher=%s "
	    "servername=%s resumed=%s client_cert=\"%s\" "
	    "stls=%s login=%s auth_refused=%s user=\"%s\" from_client=%llu "
	    "to_client=%llu duration=%.3f reason=%s%s%s%s%s%s",
	    (unsigned long long)s->id, s->peer_addr, s->peer_port,
	    listen_kind_name(s->kind),
	    s->tls_version[0] ? s->tls_version : "none",
	    s->tls_cipher[0] ? s->tls_cipher : "none",
	    sni, resumed ? "yes" : "no", subject,
	    s->stls_used ? "yes" : "no", s->logged_in ? "yes" : "no",
	    s->auth_refused ? "yes" : "no", s->user[0] ? s->user : "-",
	    (unsigned long long)s->client.bytes_read,
	    (unsigned long long)s->client.bytes_written, dur, reason,
	    s->via[0] ? " via=" : "", s->via,
	    detail[0] ? " detail=\"" : "", detail, detail[0] ? "\"" : "");
}

void
session_close(struct session *s, const char *reason)
{
	struct popsd *d = s->d;

	capture_pop3_facts(s);
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
	spawner_cancel(s->spawn);
	if (s->err_fd != -1) {
		/* Last words of a daemon that just exited are still in the
		 * pipe: log them before closing it. */
		stderr_drain(s);
		ev_io_stop(d->loop, &s->errw);
		close(s->err_fd);
	}
	tls_server_unref(s->tls_srv);
	TAILQ_REMOVE(&d->sessions, s, entry);
	d->nsessions--;
	if (s->peer_counted)
		popsd_peer_closed(d, s->peer_addr);
	conf_unref(s->conf);
	free(s);
	popsd_session_closed(d);
}

void
session_shutdown_all(struct popsd *d, const char *reason)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&d->sessions)) != NULL)
		session_close(s, reason);
}

/*
 * refuse: tell the client we cannot serve it ("-ERR [SYS/TEMP] ..." per
 * RFC 3206: the fault is ours and temporary), then close cleanly.
 */
static void
refuse(struct session *s, const char *reason, const char *text)
{
	buf_free(&s->to_client);
	buf_free(&s->bin);
	buf_free(&s->cin);
	/* A "listen tls" port speaks no POP3: there it is a clean close. */
	if (s->kind != LISTEN_TLS)
		(void)buf_appendf(&s->to_client, "-ERR [SYS/TEMP] %s\r\n",
		    text);
	set_phase(s, PH_REFUSE);
	set_timeout(s, DL_ABSOLUTE, s->conf->timeout_drain, reason);
	/* The reason to log once the refusal is flushed. */
	s->first_eof = reason;
}

static void
note_detail(struct session *s, const char *who, const struct xio *x)
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
	pol.tls_offered = s->d->tls_server != NULL;
	pol.require_tls = c->require_tls && !allowed;
	pol.sasl_line_max = (size_t)c->sasl_line_max;
	pol.max_errors = c->max_auth_errors;
	return pop3_new(&pol);
}

static void
backend_unavailable(struct session *s, const char *err)
{
	snprintf(s->detail, sizeof(s->detail), "backend %.128s: %.128s",
	    s->conf->backend.text, err);
	log_warnx("session=%llu %s", (unsigned long long)s->id, s->detail);
	refuse(s, "backend-unavailable", "mail service temporarily unavailable");
}

/* connect_next: try backend addresses from s->backend_idx on. */
static void
connect_next(struct session *s)
{
	char err[128];
	int fd, more = 0;

	for (;;) {
		fd = backend_connect_start(&s->conf->backend, s->backend_idx,
		    &more, err, sizeof(err));
		if (fd != -1)
			break;
		if (!more) {
			backend_unavailable(s, err);
			return;
		}
		s->backend_idx++;
	}
	endpoint_init(s, &s->backend, fd);
	s->backend.wr_wait = EV_WRITE;
	set_phase(s, PH_CONNECT);
}

/*
 * send_proxy_header: tell the backend who the client really is, before
 * any POP3 byte (backend-proxy-protocol). The TLS facts go with v2 when
 * TLS is already up. -1 if it could not be built (the session is then
 * refused).
 */
static int
send_proxy_header(struct session *s)
{
	uint8_t hdr[PROXY_HDR_MAX];
	struct proxy_tls tls = { s->tls_version, s->tls_cipher, NULL, false };
	const struct sockaddr *src = s->peerlen ? (struct sockaddr *)&s->peer :
	    NULL, *dst = s->locallen ? (struct sockaddr *)&s->local : NULL;
	ssize_t n;

	if (s->conf->backend.proxy_version == 1)
		n = proxy_build_v1((char *)hdr, sizeof(hdr), src, dst);
	else
		n = proxy_build_v2(hdr, sizeof(hdr), src, dst,
		    s->tls_version[0] ? &tls : NULL);
	if (n <= 0 || buf_append(&s->to_backend, hdr, (size_t)n) == -1) {
		backend_unavailable(s, "cannot build the PROXY header");
		return -1;
	}
	return 0;
}

/* backend_ready: the backend connection exists; relay from here on. A
 * "listen tls" session has no greeting to wait for (the protocol behind
 * it may well be client-first). */
static void
backend_ready(struct session *s)
{
	if (s->conf->backend.proxy_version && send_proxy_header(s) == -1)
		return;
	set_phase(s, PH_RELAY);
	if (s->kind == LISTEN_TLS) {
		s->greeted = true;
		relay_timeout(s);
	} else
		s->timeout_reason = "backend-silent";	/* until the greeting */
}

static void start_spawn(struct session *s);

static void
start_connect(struct session *s)
{
	s->backend_idx = 0;
	set_timeout(s, DL_ABSOLUTE, s->conf->timeout_connect, "backend-timeout");
	if (s->conf->backend.kind == BACKEND_EXEC)
		start_spawn(s);
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
		backend_ready(s);
		return;
	}
	ev_io_stop(s->d->loop, &s->backend.w);
	xio_close(&s->backend.io);
	s->backend.armed = 0;
	if (s->backend_idx + 1 < s->conf->backend.naddrs) {
		s->backend_idx++;
		connect_next(s);
		return;
	}
	backend_unavailable(s, err);
}

/* --- backend exec ---------------------------------------------------------- */

/* numeric_host: address and port of sa as text, IPv4-mapped shown as IPv4
 * (what a legacy daemon and an admin expect in TCPREMOTEIP and logs). */
static void
numeric_host(const struct sockaddr_storage *ss, socklen_t len, char *host,
    size_t hostsz, char *port, size_t portsz)
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

/* backend_stderr_line: one line of the daemon's stderr into our log,
 * sanitized, and only so many per session: a noisy daemon must not be
 * able to flood the log. */
static void
backend_stderr_line(struct session *s, const char *line, size_t len)
{
	char clean[sizeof(s->err_buf) + 4];

	if (len == 0 || ++s->err_lines > 50) {
		if (s->err_lines == 51)
			log_warnx("session=%llu backend stderr: further lines "
			    "suppressed", (unsigned long long)s->id);
		return;
	}
	log_sanitize(clean, sizeof(clean), line, len);
	log_warnx("session=%llu backend stderr: %s",
	    (unsigned long long)s->id, clean);
}

/* stderr_read: one read from the daemon's stderr, logging whole lines.
 * Returns false at EOF or error (the pipe is done), true otherwise. */
static bool
stderr_read(struct session *s)
{
	char *nl;
	ssize_t n;

	n = read(s->err_fd, s->err_buf + s->err_len,
	    sizeof(s->err_buf) - s->err_len);
	if (n <= 0) {
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return true;
		backend_stderr_line(s, s->err_buf, s->err_len);
		s->err_len = 0;
		return false;
	}
	s->err_len += (size_t)n;
	while ((nl = memchr(s->err_buf, '\n', s->err_len)) != NULL) {
		backend_stderr_line(s, s->err_buf, (size_t)(nl - s->err_buf));
		s->err_len -= (size_t)(nl + 1 - s->err_buf);
		memmove(s->err_buf, nl + 1, s->err_len);
	}
	if (s->err_len == sizeof(s->err_buf)) {	/* overlong: cut it */
		backend_stderr_line(s, s->err_buf, s->err_len);
		s->err_len = 0;
	}
	return n > 0;
}

/* stderr_drain: read what is already in the pipe (bounded). */
static void
stderr_drain(struct session *s)
{
	int i;

	for (i = 0; i < 16 && stderr_read(s); i++)
		;
	if (s->err_len > 0)
		backend_stderr_line(s, s->err_buf, s->err_len);
}

static void
stderr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct session *s = w->data;

	(void)revents;
	if (stderr_read(s))
		return;
	ev_io_stop(loop, w);
	close(s->err_fd);
	s->err_fd = -1;
}

static void
spawn_done(void *arg, int conn_fd, int err_fd, pid_t pid, const char *why)
{
	struct session *s = arg;

	s->spawn = NULL;
	if (conn_fd == -1) {
		backend_unavailable(s, why);
		session_pump(s);
		return;
	}
	log_debug("session=%llu backend %s started as pid %d",
	    (unsigned long long)s->id, s->conf->backend.text, (int)pid);
	s->err_fd = err_fd;
	ev_io_init(&s->errw, stderr_cb, err_fd, EV_READ);
	s->errw.data = s;
	ev_io_start(s->d->loop, &s->errw);
	endpoint_init(s, &s->backend, conn_fd);
	backend_ready(s);
	session_pump(s);
}

/* start_spawn: ask the spawner for a daemon with the UCSPI-TCP
 * environment of this session (SSL_* only when TLS is already up). */
static void
start_spawn(struct session *s)
{
	struct spawn_env env;

	memset(&env, 0, sizeof(env));
	numeric_host(&s->peer, s->peerlen, env.remote_ip,
	    sizeof(env.remote_ip), env.remote_port, sizeof(env.remote_port));
	numeric_host(&s->local, s->locallen, env.local_ip,
	    sizeof(env.local_ip), env.local_port, sizeof(env.local_port));
	snprintf(env.ssl_protocol, sizeof(env.ssl_protocol), "%s",
	    s->tls_version);
	snprintf(env.ssl_cipher, sizeof(env.ssl_cipher), "%s", s->tls_cipher);
	s->spawn = spawner_request(s->d, s->id, &env, spawn_done, s);
	if (s->spawn == NULL) {
		backend_unavailable(s, "cannot start the backend (spawner "
		    "unavailable or busy)");
		return;
	}
	set_phase(s, PH_SPAWN);
}

/* step_handshake: returns false when the session was closed. */
static bool
step_handshake(struct session *s)
{
	int rv;

	if (s->client.wr_wait != 0)
		return true;
	rv = xio_handshake(&s->client.io);
	if (want_is_io(rv)) {
		s->client.wr_wait = want_event(rv);
		return true;
	}
	if (rv != 0) {
		note_detail(s, "client", &s->client.io);
		session_close(s, "tls-handshake-failed");
		return false;
	}
	capture_tls_facts(s);
	if (s->phase == PH_HANDSHAKE) {
		start_connect(s);
		return true;
	}
	/* STLS: same backend connection, now behind TLS (RFC 2595 §4). */
	pop3_tls_started(s->pop3);
	set_phase(s, PH_RELAY);
	relay_timeout(s);
	return true;
}

/* accept_tls: put the client socket under the current TLS server context,
 * which the session keeps alive until it ends. -1 if the session closed. */
static int
accept_tls(struct session *s)
{
	struct tls_server *ts = s->d->tls_server;
	struct tls *cctx = NULL;

	if (ts == NULL || tls_accept_socket(ts->ctx, &cctx,
	    s->client.io.fd) == -1) {
		snprintf(s->detail, sizeof(s->detail), "tls_accept_socket: %s",
		    ts ? tls_error(ts->ctx) : "no TLS configured");
		session_close(s, "tls-setup-failed");
		return -1;
	}
	s->tls_srv = tls_server_ref(ts);
	s->client.io.tls = cctx;
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
	set_phase(s, PH_STLS_HANDSHAKE);
	set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake,
	    "timeout-handshake");
	return true;
}

/* --- relaying ------------------------------------------------------------ */

static void
activity(struct session *s)
{
	s->last_activity = ev_now(s->d->loop);
}

/* do_read: fill b from e until it would block, ends, fails or b is full.
 * Returns bytes read; sets e->eof, e->rd_wait, or *failed. */
static size_t
do_read(struct endpoint *e, struct buf *b, bool *failed)
{
	size_t total = 0, avail;
	uint8_t *p;
	ssize_t n;

	while (!e->eof && e->rd_wait == 0 &&
	    (p = buf_wptr(b, &avail)) != NULL) {
		n = xio_read(&e->io, p, avail);
		if (n > 0) {
			buf_commit(b, (size_t)n);
			total += (size_t)n;
			e->bytes_read += (uint64_t)n;
		} else if (n == XIO_EOF)
			e->eof = true;
		else if (want_is_io(n))
			e->rd_wait = want_event(n);
		else {
			*failed = true;
			break;
		}
	}
	return total;
}

/* do_write: drain b into e until it would block or fails. */
static size_t
do_write(struct endpoint *e, struct buf *b, bool *failed)
{
	size_t total = 0, len;
	const uint8_t *p;
	ssize_t n;

	while (e->wr_wait == 0 && !e->shut && (p = buf_rptr(b, &len)) != NULL) {
		n = xio_write(&e->io, p, len);
		if (n > 0) {
			buf_consume(b, (size_t)n);
			total += (size_t)n;
			e->bytes_written += (uint64_t)n;
		} else if (want_is_io(n))
			e->wr_wait = want_event(n);
		else {
			*failed = true;
			break;
		}
	}
	return total;
}

/* The buffer whose bytes go to the backend next: what the mediator queued
 * first, then (spliced) the raw client input. */
static struct buf *
backend_source(struct session *s)
{
	if (!buf_empty(&s->to_backend) || s->pop3 != NULL)
		return &s->to_backend;
	return &s->cin;
}

static struct buf *
client_source(struct session *s)
{
	if (!buf_empty(&s->to_client) || s->pop3 != NULL)
		return &s->to_client;
	return &s->bin;
}

/* mediate_events: act on POP3_EV_* bits. */
static void
mediate_events(struct session *s, int ev)
{
	if (ev & POP3_EV_CLOSE) {
		const char *why = pop3_close_reason(s->pop3);

		capture_pop3_facts(s);
		set_phase(s, PH_REFUSE);
		s->first_eof = why ? why : "protocol-error";
		set_timeout(s, DL_ABSOLUTE, s->conf->timeout_drain,
		    "timeout-drain");
	} else if (ev & POP3_EV_STARTTLS) {
		set_phase(s, PH_STARTTLS);
		set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake,
		    "timeout-handshake");
	} else if (ev & POP3_EV_SPLICE) {
		capture_pop3_facts(s);
		pop3_free(s->pop3);
		s->pop3 = NULL;
		s->logged_in = true;
		relay_timeout(s);
	}
}

/*
 * mediate: let the mediator act on what arrived. Both directions are
 * offered on every round, even with empty input: a reply the mediator
 * queued while an output buffer was full goes out once it has drained.
 */
static void
mediate(struct session *s, bool client_ended, bool backend_ended)
{
	int ev;

	if (s->pop3 == NULL)
		return;
	ev = pop3_backend_input(s->pop3, &s->bin, &s->to_client);
	if (backend_ended)
		ev |= pop3_backend_eof(s->pop3, &s->to_client);
	if (!(ev & (POP3_EV_SPLICE | POP3_EV_CLOSE))) {
		ev |= pop3_client_input(s->pop3, &s->cin, &s->to_backend,
		    &s->to_client);
		if (client_ended)
			ev |= pop3_client_eof(s->pop3, &s->to_client);
	}
	if (ev)
		mediate_events(s, ev);
}

/* relay_io: one round of reads and writes; returns bytes moved, or -1
 * when the session was closed. */
static long
relay_io(struct session *s)
{
	bool failed = false, was_greeted = s->greeted;
	bool ceof = s->client.eof, beof = s->backend.eof;
	size_t moved = 0;

	if (s->phase == PH_RELAY)
		moved += do_read(&s->client, &s->cin, &failed);
	if (failed) {
		note_detail(s, "client", &s->client.io);
		session_close(s, "client-error");
		return -1;
	}
	if (s->phase == PH_RELAY || s->phase == PH_STARTTLS) {
		moved += do_read(&s->backend, &s->bin, &failed);
		if (failed) {
			note_detail(s, "backend", &s->backend.io);
			session_close(s, "backend-error");
			return -1;
		}
	}
	if (s->bin.len > 0 || s->backend.bytes_read > 0)
		s->greeted = true;
	if (s->phase == PH_RELAY)
		mediate(s, s->client.eof && !ceof, s->backend.eof && !beof);
	moved += do_write(&s->backend, backend_source(s), &failed);
	if (failed) {
		note_detail(s, "backend", &s->backend.io);
		session_close(s, "backend-error");
		return -1;
	}
	moved += do_write(&s->client, client_source(s), &failed);
	if (failed) {
		note_detail(s, "client", &s->client.io);
		session_close(s, "client-error");
		return -1;
	}
	if (moved)
		activity(s);
	if (s->client.eof && !ceof && s->first_eof == NULL)
		s->first_eof = "client-closed";
	if (s->backend.eof && !beof && s->first_eof == NULL)
		s->first_eof = "backend-closed";
	if (s->phase == PH_RELAY && ((s->greeted && !was_greeted) ||
	    s->client.eof != ceof || s->backend.eof != beof))
		relay_timeout(s);
	return (long)moved;
}

/* What is still owed to one side once the other has ended. */
static bool
backend_owed(struct session *s)
{
	return !buf_empty(&s->to_backend) ||
	    (s->pop3 == NULL && !buf_empty(&s->cin));
}

static bool
client_owed(struct session *s)
{
	return !buf_empty(&s->to_client) ||
	    (s->pop3 == NULL && !buf_empty(&s->bin));
}

/*
 * relay_halfclose: propagate EOF once what is owed has drained: the
 * backend gets a FIN, the client a close_notify and a FIN. The session
 * ends when nothing more can reach the client. Returns false if closed.
 */
static bool
relay_halfclose(struct session *s)
{
	int rv;

	if (s->client.eof && !s->backend.shut && !backend_owed(s)) {
		(void)xio_shutdown(&s->backend.io);
		s->backend.shut = true;
	}
	if (s->backend.eof && !s->client.shut && !client_owed(s) &&
	    s->client.wr_wait == 0) {
		rv = xio_shutdown(&s->client.io);
		if (want_is_io(rv)) {
			s->client.wr_wait = want_event(rv);
			return true;
		}
		s->client.shut = true;
	}
	if (s->client.shut || (s->client.eof && s->backend.eof &&
	    !client_owed(s))) {
		session_close(s, s->first_eof ? s->first_eof : "closed");
		return false;
	}
	return true;
}

/* step_refuse: flush the final reply, close_notify, done. */
static bool
step_refuse(struct session *s)
{
	bool failed = false;
	int rv;

	(void)do_write(&s->client, &s->to_client, &failed);
	if (failed) {
		note_detail(s, "client", &s->client.io);
		session_close(s, s->first_eof);
		return false;
	}
	if (!buf_empty(&s->to_client) || s->client.wr_wait != 0)
		return true;
	rv = xio_shutdown(&s->client.io);
	if (want_is_io(rv)) {
		s->client.wr_wait = want_event(rv);
		return true;
	}
	session_close(s, s->first_eof);
	return false;
}

/* --- PROXY header from a load balancer ------------------------------------- */

/* discard_pending: read and drop what the peer already sent (bounded), so
 * that closing sends a FIN, not the reset unread data would cause. */
static void
discard_pending(int fd)
{
	char junk[4096];
	int i;

	for (i = 0; i < 4 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
		continue;
}

/* proxy_apply: a complete header: from here on the client is the one it
 * names (a LOCAL or UNKNOWN header keeps the balancer's address), and
 * that client is counted for max-sessions-per-ip. false if closed. */
static bool
proxy_apply(struct session *s, const struct proxy_result *res)
{
	snprintf(s->via, sizeof(s->via), "%s", s->peer_addr);
	if (res->has_addr) {
		memcpy(&s->peer, &res->src, res->srclen);
		s->peerlen = res->srclen;
		memcpy(&s->local, &res->dst, res->dstlen);
		s->locallen = res->dstlen;
		peer_text(s);
	}
	if (popsd_peer_admit(s->d, (struct sockaddr *)&s->peer) == -1) {
		if (s->kind != LISTEN_POP3) {	/* nothing to say before TLS */
			session_close(s, "max-sessions-per-ip");
			return false;
		}
		refuse(s, "max-sessions-per-ip", "too many sessions from your "
		    "address, try again later");
		session_pump(s);
		return false;
	}
	s->peer_counted = true;
	session_begin(s);
	return false;	/* session_begin pumped (or closed) the session */
}

/*
 * step_proxy: read the header exactly (proxy_parse says how much more is
 * surely header), so that what follows it, a TLS ClientHello on a pop3s
 * port, stays in the socket for libtls. false if the session moved on or
 * was closed.
 */
static bool
step_proxy(struct session *s)
{
	struct proxy_result res;
	const uint8_t *p;
	uint8_t *w;
	size_t avail, len;
	ssize_t n;
	int rv;

	while (s->client.rd_wait == 0) {
		if ((w = buf_wptr(&s->cin, &avail)) == NULL) {
			session_close(s, "proxy-invalid");
			return false;
		}
		n = xio_read(&s->client.io, w, avail < s->proxy_need ? avail :
		    s->proxy_need);
		if (want_is_io(n)) {
			s->client.rd_wait = want_event(n);
			break;
		}
		if (n <= 0) {
			note_detail(s, "client", &s->client.io);
			session_close(s, n == 0 ? "proxy-eof" : "client-error");
			return false;
		}
		buf_commit(&s->cin, (size_t)n);
		p = buf_rptr(&s->cin, &len);
		rv = proxy_parse(p, len, &res);
		if (rv == PROXY_NEED_MORE) {
			s->proxy_need = res.need;
			continue;
		}
		if (rv == PROXY_INVALID) {
			log_warnx("session=%llu client=%s: no valid PROXY header "
			    "from a trusted balancer", (unsigned long long)s->id,
			    s->peer_addr);
			discard_pending(s->client.io.fd);
			session_close(s, "proxy-invalid");
			return false;
		}
		buf_consume(&s->cin, (size_t)rv);
		return proxy_apply(s, &res);
	}
	return true;
}

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
		if (!step_proxy(s))
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
		if (!step_refuse(s))
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
	default:
		break;
	}
	if (relaying) {
		if (s->phase == PH_RELAY && !s->client.eof && buf_space(&s->cin))
			cev |= s->client.rd_wait;
		if (!buf_empty(client_source(s)) || (s->backend.eof &&
		    !s->client.shut))
			cev |= s->client.wr_wait;
		if (!s->backend.eof && buf_space(&s->bin))
			bev |= s->backend.rd_wait;
		if (!buf_empty(backend_source(s)) && !s->backend.shut)
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

static void
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
		refuse(s, "backend-silent", "mail service not answering");
		session_pump(s);
		return;
	}
	if (s->phase == PH_CONNECT || s->phase == PH_SPAWN) {
		snprintf(s->detail, sizeof(s->detail), "backend %s: %s timed "
		    "out", s->conf->backend.text,
		    s->phase == PH_SPAWN ? "start" : "connect");
		log_warnx("session=%llu %s", (unsigned long long)s->id,
		    s->detail);
		spawner_cancel(s->spawn);
		s->spawn = NULL;
		ev_io_stop(loop, &s->backend.w);
		xio_close(&s->backend.io);
		refuse(s, "backend-timeout", "mail service not answering");
		session_pump(s);
		return;
	}
	if (s->phase == PH_RELAY && s->pop3 != NULL && !s->client.eof &&
	    !s->backend.eof) {
		/* Pre-login: say why, like the backend would (RFC 1939 §3). */
		(void)buf_appendf(&s->to_client,
		    "-ERR Disconnected for inactivity\r\n");
		set_phase(s, PH_REFUSE);
		s->first_eof = s->timeout_reason;
		set_timeout(s, DL_ABSOLUTE, s->conf->timeout_drain,
		    "timeout-drain");
		session_pump(s);
		return;
	}
	session_close(s, s->timeout_reason);
}

/* --- start ---------------------------------------------------------------- */

static void
peer_text(struct session *s)
{
	numeric_host(&s->peer, s->peerlen, s->peer_addr, sizeof(s->peer_addr),
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
	s->id = d->next_session_id++ * d->id_stride + d->id_offset;
	s->kind = kind;
	s->started = s->last_activity = ev_now(d->loop);
	endpoint_init(s, &s->client, fd);
	endpoint_init(s, &s->backend, -1);
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
	return s;
}

void
session_start(struct popsd *d, enum listen_kind kind, int fd,
    const struct sockaddr *peer, socklen_t peerlen)
{
	struct session *s;
	int one = 1;

	/* The greeting and every reply are small writes that must leave at
	 * once: with Nagle a reply can wait for a delayed ACK (~40 ms). */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((s = session_new(d, kind, fd)) == NULL) {
		log_warnx("session: out of memory");
		close(fd);
		return;
	}
	if (peer != NULL && peerlen <= sizeof(s->peer)) {
		memcpy(&s->peer, peer, peerlen);
		s->peerlen = peerlen;
	}
	s->locallen = sizeof(s->local);
	if (getsockname(fd, (struct sockaddr *)&s->local, &s->locallen) == -1)
		s->locallen = 0;
	peer_text(s);
	if (s->peerlen == 0 || !conf_cidr_match(s->conf->accept_proxy,
	    s->conf->naccept_proxy, (struct sockaddr *)&s->peer)) {
		s->peer_counted = true;	/* by the listener */
		session_begin(s);
		return;
	}
	/* A trusted balancer: its PROXY header comes before anything else. */
	s->proxy_need = 1;
	set_phase(s, PH_PROXY);
	set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake, "timeout-proxy");
	session_pump(s);
}

/* session_begin: the client is known (after any PROXY header): mediate
 * POP3 unless this is a plain TLS wrap, then TLS first or backend first. */
static void
session_begin(struct session *s)
{
	if (s->kind != LISTEN_TLS && (s->pop3 = mediator_new(s)) == NULL) {
		session_close(s, "out-of-memory");
		return;
	}
	if (s->kind == LISTEN_POP3) {
		start_connect(s);
		session_pump(s);
		return;
	}
	if (accept_tls(s) == -1)
		return;
	set_phase(s, PH_HANDSHAKE);
	set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake,
	    "timeout-handshake");
	session_pump(s);
}
