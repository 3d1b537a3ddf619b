/* listener.c — accept connections and hand them to sessions. */
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "popsd.h"
#include "session.h"

/* Connections taken per wakeup: enough to empty a burst, small enough
 * that a flood cannot starve established sessions. */
#define ACCEPT_BATCH	32
#define LISTEN_BACKLOG	511

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

static int
bind_one(const struct sockaddr *sa, socklen_t len, bool dual_stack)
{
	int fd, one = 1, zero = 0;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
		    dual_stack ? &zero : &one, sizeof(int));
	if (bind(fd, sa, len) == -1 || listen(fd, LISTEN_BACKLOG) == -1) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

struct listener *
listener_bind(struct popsd *d, const struct conf_listen *cl)
{
	struct sockaddr_in any4;
	struct listener *l;
	int fd;

	fd = bind_one((const struct sockaddr *)&cl->addr, cl->addrlen,
	    cl->wildcard);
	if (fd == -1 && cl->wildcard && errno == EAFNOSUPPORT) {
		/* No IPv6 on this host: "*" means every IPv4 address. */
		memset(&any4, 0, sizeof(any4));
		any4.sin_family = AF_INET;
		any4.sin_port = ((const struct sockaddr_in6 *)&cl->addr)->sin6_port;
		fd = bind_one((struct sockaddr *)&any4, sizeof(any4), false);
	}
	if (fd == -1) {
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

/* over_capacity: turn away a connection beyond max-sessions. On a pop3s
 * port nothing can be said before TLS, so the connection is just closed;
 * on a plaintext port the client is told why (RFC 3206 [SYS/TEMP]). */
static void
over_capacity(struct listener *l, int fd, const struct sockaddr *sa,
    socklen_t salen)
{
	static const char msg[] = "-ERR [SYS/TEMP] too many sessions, "
	    "try again later\r\n";
	char host[64] = "?";

	if (l->kind == LISTEN_POP3)
		(void)send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		(void)getnameinfo(sa, salen, host, sizeof(host), NULL, 0,
		    NI_NUMERICHOST);
	log_warnx("refused client=%s listener=%s reason=max-sessions "
	    "sessions=%u", host, listen_kind_name(l->kind), l->d->nsessions);
}

static void
pause_accepting(struct popsd *d)
{
	int i;

	if (d->accept_paused)
		return;
	log_warnx("out of file descriptors: pausing accept for 1s");
	for (i = 0; i < d->nlisteners; i++)
		listener_stop(d->listeners[i]);
	d->accept_paused = true;
	ev_timer_set(&d->accept_resume, 1.0, 0);
	ev_timer_start(d->loop, &d->accept_resume);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, i;

	(void)loop;
	(void)revents;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE) {
				/* Spinning on a readable listener we cannot
				 * accept from would burn a core: back off. */
				pause_accepting(l->d);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				log_warn("accept on %s", l->text);
			return;
		}
		if (l->d->nsessions >= (unsigned)l->d->conf->max_sessions) {
			over_capacity(l, fd, (struct sockaddr *)&ss, sl);
			continue;
		}
		session_start(l->d, l->kind, fd, (struct sockaddr *)&ss, sl);
	}
}
