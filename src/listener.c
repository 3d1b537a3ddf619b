/* listener.c — accept connections and hand them to sessions, within the
 * limits: max-sessions, max-sessions-per-ip, and a pause when accept()
 * runs out of something (EMFILE, ENOBUFS, ...). */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "accounting.h"
#include "log.h"
#include "ledger.h"
#include "metrics.h"
#include "popsd.h"
#include "sd.h"
#include "session.h"
#include "sockbind.h"
#include "xio.h"

/* Connections taken per wakeup: enough to empty a burst, small enough
 * that a flood cannot starve established sessions. */
#define ACCEPT_BATCH	32
#define LISTEN_BACKLOG	511
/* accept() failing for want of resources: seconds without accepting,
 * and at most one log line per ACCEPT_LOG_EVERY seconds about it. */
#define ACCEPT_PAUSE		1.0
#define ACCEPT_LOG_EVERY	60.0

struct listener {
	ev_io		 w;
	int		 fd;
	enum listen_kind kind;
	char		 text[80];
	struct popsd	*d;
};

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents);

static struct listener *
listener_new(struct popsd *d, int fd, enum listen_kind kind, const char *text)
{
	struct listener *l;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		log_warnx("listener: out of memory");
		return NULL;
	}
	l->fd = fd;
	l->kind = kind;
	l->d = d;
	snprintf(l->text, sizeof(l->text), "%s", text);
	ev_io_init(&l->w, accept_cb, fd, EV_READ);
	l->w.data = l;
	return l;
}

struct listener *
listener_bind(struct popsd *d, const struct conf_listen *cl)
{
	struct listener *l;
	int fd;

	if ((fd = sockbind_listen(cl, LISTEN_BACKLOG)) == -1) {
		log_warn("listen %s %s", listen_kind_name(cl->kind), cl->text);
		return NULL;
	}
	if ((l = listener_new(d, fd, cl->kind, cl->text)) == NULL)
		close(fd);
	return l;
}

struct listener *
listener_adopt(struct popsd *d, int fd, enum listen_kind kind, const char *text)
{
	return listener_new(d, fd, kind, text);
}

/* same_port_any: is ss the any-address of its family on port? */
static bool
same_port_any(const struct sockaddr_storage *ss, in_port_t port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET)
		return sin->sin_port == port &&
		    sin->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return sin6->sin6_port == port &&
		    IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
	return false;
}

bool
listener_serves(const struct listener *l, const struct conf_listen *cl)
{
	const struct sockaddr_in *a4, *b4;
	const struct sockaddr_in6 *a6, *b6;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == -1)
		return false;
	if (cl->wildcard)
		return same_port_any(&ss,
		    ((const struct sockaddr_in6 *)&cl->addr)->sin6_port);
	if (ss.ss_family != cl->addr.ss_family)
		return false;
	if (ss.ss_family == AF_INET) {
		a4 = (const struct sockaddr_in *)&ss;
		b4 = (const struct sockaddr_in *)&cl->addr;
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	}
	a6 = (const struct sockaddr_in6 *)&ss;
	b6 = (const struct sockaddr_in6 *)&cl->addr;
	return ss.ss_family == AF_INET6 && a6->sin6_port == b6->sin6_port &&
	    IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &b6->sin6_addr);
}

int
listener_inetd(struct popsd *d, int fd, enum listen_kind kind, char *err,
    size_t errsz)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct acct a = { 0 };
	char why[128];
	unsigned n;
	int fl;

	if (sd_check_stream_socket(fd, false, why, sizeof(why)) == -1) {
		snprintf(err, errsz, "-i %s: stdin is %s; popsd -i serves one "
		    "connection passed on stdin by inetd, xinetd or systemd "
		    "Accept=yes", listen_kind_name(kind), why);
		return -1;
	}
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1) {
		snprintf(err, errsz, "-i: fcntl: %s", strerror(errno));
		return -1;
	}
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	/* A unix socketpair has no useful peer address: the session then
	 * logs the client as "local". */
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1)
		sl = 0;
	/* Counted like a listener's session, so that its end balances; one
	 * connection has no neighbours to count per address. */
	(void)acct_take_session(d->ledger, &a, 0, &n);
	session_start(d, kind, fd, sl ? (struct sockaddr *)&ss : NULL, sl, &a);
	return 0;
}

void
listener_start(struct listener *l)
{
	ev_io_start(l->d->loop, &l->w);
}

void
listener_stop(struct listener *l)
{
	ev_io_stop(l->d->loop, &l->w);
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	listener_stop(l);
	close(l->fd);
	free(l);
}

const char *
listener_text(const struct listener *l)
{
	return l->text;
}

enum listen_kind
listener_kind(const struct listener *l)
{
	return l->kind;
}

/*
 * turn_away: refuse a connection over a limit, with a log line (with the
 * key it was counted under, counted_as, when that is the limit). On a
 * plaintext port the client is told why (RFC 3206 [SYS/TEMP]: ours, and
 * temporary). On a pop3s port nothing can be said before TLS, so the
 * connection just ends with a FIN: what the client already sent (its
 * ClientHello) is read and dropped first, because closing a socket with
 * unread data would send a reset instead.
 */
static void
turn_away(struct listener *l, int fd, const struct sockaddr *sa,
    socklen_t salen, const char *reason, const char *text, unsigned count,
    int limit, const char *counted_as)
{
	char host[64] = "?", msg[128];
	int n;

	if (l->kind == LISTEN_POP3 || l->kind == LISTEN_OUTBOUND) {
		n = snprintf(msg, sizeof(msg), "-ERR [SYS/TEMP] %s\r\n", text);
		(void)send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	xio_discard_input(fd);
	(void)shutdown(fd, SHUT_WR);
	close(fd);
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		(void)getnameinfo(sa, salen, host, sizeof(host), NULL, 0,
		    NI_NUMERICHOST);
	metrics_count(metrics_limit(reason), 1);
	log_warnx("refused client=%s listener=%s reason=%s sessions=%u limit=%d"
	    "%s%s", host, listen_kind_name(l->kind), reason, count, limit,
	    counted_as ? " counted_as=" : "", counted_as ? counted_as : "");
}

/*
 * admit: start a session for an accepted connection, or turn it away if
 * it is over max-sessions or max-sessions-per-ip, counted in the ledger
 * across all workers. Sessions are counted per address whether or not a
 * per-address limit is set, so that a reload that sets one counts the
 * sessions already running. The places taken go to the session, whose
 * destructor gives them back.
 */
static void
admit(struct listener *l, int fd, const struct sockaddr *sa, socklen_t sl)
{
	struct popsd *d = l->d;
	const struct conf *c = d->conf;
	struct acct a = { 0 };
	char as[LEDGER_KEY_TEXT_MAX];
	unsigned n;
	int r;

	if (acct_take_session(d->ledger, &a, (unsigned)c->max_sessions,
	    &n) == -1) {
		turn_away(l, fd, sa, sl, "max-sessions", "too many sessions, "
		    "try again later", n, c->max_sessions, NULL);
		return;
	}
	/* A trusted balancer's connections are counted by the address in
	 * their PROXY header, once the session has read it. */
	if (!conf_cidr_match(c->accept_proxy, c->naccept_proxy, sa) &&
	    (r = acct_take_peer(d->ledger, &a, sa, c->per_ip_ipv6_prefix,
	    (unsigned)c->max_sessions_per_ip, &n)) != 0) {
		/* The key it was counted under, before a is cleared. */
		(void)ledger_key_format(a.key, c->per_ip_ipv6_prefix, as,
		    sizeof(as));
		acct_release(d->ledger, &a);
		if (r == -1)
			turn_away(l, fd, sa, sl, "max-sessions-per-ip",
			    "too many sessions from your address, try "
			    "again later", n, c->max_sessions_per_ip, as);
		else
			turn_away(l, fd, sa, sl, "address-table-full",
			    "too many sessions, try again later", n,
			    (int)ledger_capacity(d->ledger), NULL);
		return;
	}
	session_start(d, l->kind, fd, sa, sl, &a);
}

/*
 * pause_accepting: accept() failed for want of something (descriptors,
 * buffers, memory) or for a reason we do not know: the connection stays
 * in the queue and the listener stays readable, so trying again at once
 * would spin. Every listener stops for ACCEPT_PAUSE seconds; the waiting
 * clients stay in the listen queue. A shortage that lasts pauses again
 * every ACCEPT_PAUSE, and is logged once per ACCEPT_LOG_EVERY with the
 * number of pauses in between, so it cannot flood the log either.
 */
static void
pause_accepting(struct listener *l, int e)
{
	struct popsd *d = l->d;
	ev_tstamp now = ev_now(d->loop);
	char more[64] = "";
	int i;

	if (d->accept_paused)
		return;
	if (d->accept_logged_at != 0 &&
	    now - d->accept_logged_at < ACCEPT_LOG_EVERY)
		d->accept_unlogged++;
	else {
		if (d->accept_unlogged > 0)
			snprintf(more, sizeof(more), " (paused %u more time%s "
			    "since the last report)", d->accept_unlogged,
			    d->accept_unlogged == 1 ? "" : "s");
		if (e == EMFILE || e == ENFILE)
			log_warnx("out of file descriptors: pausing accept for "
			    "%.0fs%s", ACCEPT_PAUSE, more);
		else
			log_warnx("accept on %s: %s: pausing accept for %.0fs%s",
			    l->text, strerror(e), ACCEPT_PAUSE, more);
		d->accept_logged_at = now;
		d->accept_unlogged = 0;
		d->accept_failing = true;
	}
	for (i = 0; i < d->nlisteners; i++)
		listener_stop(d->listeners[i]);
	d->accept_paused = true;
	ev_timer_set(&d->accept_resume, ACCEPT_PAUSE, 0);
	ev_timer_start(d->loop, &d->accept_resume);
}

/* accepted_again: said once after a logged pause, so that the log shows
 * the end of the trouble as well as its start. */
static void
accepted_again(struct listener *l)
{
	struct popsd *d = l->d;

	if (!d->accept_failing)
		return;
	d->accept_failing = false;
	log_info("accept on %s works again", l->text);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, i, batch;

	(void)loop;
	(void)revents;
	/* Workers share the listening socket and all wake for a new
	 * connection: one accept each keeps a burst from all landing on
	 * the first worker to wake. */
	batch = l->d->nworkers > 1 ? 1 : ACCEPT_BATCH;
	for (i = 0; i < batch; i++) {
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return;
			if (sockbind_accept_gone(errno)) {
				log_debug("accept on %s: %s", l->text,
				    strerror(errno));
				continue;
			}
			pause_accepting(l, errno);
			return;
		}
		accepted_again(l);
		admit(l, fd, (struct sockaddr *)&ss, sl);
	}
}
