/* metrics_http.c — the scrape endpoint (see metrics_http.h). */
#include "metrics_http.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "sockbind.h"
#include "xio.h"

#define LISTEN_BACKLOG	64
#define ACCEPT_BATCH	8

/* --- the request (pure) ---------------------------------------------------- */

/* line_end: length of the first line (without CR LF or LF), or -1 if
 * its LF has not arrived. */
static long
line_end(const char *buf, size_t len)
{
	const char *lf = memchr(buf, '\n', len);
	size_t n;

	if (lf == NULL)
		return -1;
	n = (size_t)(lf - buf);
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	return (long)n;
}

/* header_done: has the blank line that ends the header arrived? */
static bool
header_done(const char *buf, size_t len)
{
	return memmem(buf, len, "\r\n\r\n", 4) != NULL ||
	    memmem(buf, len, "\n\n", 2) != NULL ||
	    memmem(buf, len, "\n\r\n", 3) != NULL;
}

static bool
starts(const char *s, size_t n, const char *word)
{
	size_t k = strlen(word);

	return n >= k && memcmp(s, word, k) == 0;
}

/* request_line: judge "METHOD SP TARGET SP VERSION" (n bytes). */
static enum http_verdict
request_line(const char *s, size_t n, bool *head)
{
	const char *sp1, *sp2, *target, *version;
	size_t i, tlen, vlen;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return HTTP_BAD_REQUEST;
	if ((sp1 = memchr(s, ' ', n)) == NULL ||
	    (sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - s))) == NULL)
		return HTTP_BAD_REQUEST;
	target = sp1 + 1;
	tlen = (size_t)(sp2 - target);
	version = sp2 + 1;
	vlen = n - (size_t)(version - s);
	if (!(vlen == 8 && (starts(version, vlen, "HTTP/1.0") ||
	    starts(version, vlen, "HTTP/1.1"))) || sp1 == s || tlen == 0)
		return HTTP_BAD_REQUEST;
	*head = (size_t)(sp1 - s) == 4 && starts(s, n, "HEAD");
	if (!*head && !((size_t)(sp1 - s) == 3 && starts(s, n, "GET")))
		return HTTP_BAD_METHOD;
	if (!((tlen == 8 && starts(target, tlen, "/metrics")) ||
	    (tlen > 8 && starts(target, tlen, "/metrics?"))))
		return HTTP_NOT_FOUND;
	return HTTP_OK;
}

enum http_verdict
metrics_http_parse(const char *buf, size_t len, size_t max, bool *head)
{
	enum http_verdict v;
	long n;

	*head = false;
	if (len > max)
		len = max;
	if ((n = line_end(buf, len)) < 0)
		return len >= max ? HTTP_TOO_LARGE : HTTP_MORE;
	v = request_line(buf, (size_t)n, head);
	if (v != HTTP_BAD_REQUEST && !header_done(buf, len))
		v = len >= max ? HTTP_TOO_LARGE : HTTP_MORE;
	if (v != HTTP_OK)
		*head = false;
	return v;
}

/* --- the server -------------------------------------------------------------- */

struct client {
	int			 fd;		/* -1: free */
	ev_io			 w;
	ev_timer		 timer;
	char			 req[METRICS_HTTP_REQ_MAX];
	size_t			 reqlen;
	char			*out;		/* response, NULL while reading */
	size_t			 outlen;
	size_t			 outoff;
	bool			 lingering;	/* answered: reading to EOF */
	struct metrics_http	*h;
};

struct metrics_http {
	struct ev_loop		*loop;
	int			 fd;
	ev_io			 w;
	ev_timer		 pause;		/* accept() failing: back-off */
	ev_tstamp		 logged_at;	/* last pause logged, or 0 */
	bool			 one_per_wakeup;
	char			 text[80];
	struct client		 clients[METRICS_HTTP_CLIENTS];
};

static void	client_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void	client_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void	accept_cb(struct ev_loop *loop, ev_io *w, int revents);
static void	resume_cb(struct ev_loop *loop, ev_timer *w, int revents);

struct metrics_http *
metrics_http_bind(struct ev_loop *loop, const struct conf_listen *cl)
{
	struct metrics_http *h;
	int fd, i;

	if ((fd = sockbind_listen(cl, LISTEN_BACKLOG)) == -1) {
		log_warn("metrics-listen %s", cl->text);
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		log_warnx("metrics-listen: out of memory");
		close(fd);
		return NULL;
	}
	h->loop = loop;
	h->fd = fd;
	snprintf(h->text, sizeof(h->text), "%s", cl->text);
	ev_io_init(&h->w, accept_cb, fd, EV_READ);
	h->w.data = h;
	ev_timer_init(&h->pause, resume_cb, 1.0, 0);
	h->pause.data = h;
	for (i = 0; i < METRICS_HTTP_CLIENTS; i++) {
		h->clients[i].fd = -1;
		h->clients[i].h = h;
	}
	return h;
}

void
metrics_http_start(struct metrics_http *h, bool one_per_wakeup)
{
	if (h == NULL)
		return;
	h->one_per_wakeup = one_per_wakeup;
	ev_io_start(h->loop, &h->w);
	log_info("listening: metrics %s", h->text);
}

static void
client_end(struct client *c)
{
	ev_io_stop(c->h->loop, &c->w);
	ev_timer_stop(c->h->loop, &c->timer);
	/* Unread bytes at close would make it a reset, which can cut the
	 * response short at the client: read them away first. */
	(void)shutdown(c->fd, SHUT_WR);
	xio_discard_input(c->fd);
	close(c->fd);
	c->fd = -1;
	free(c->out);
	c->out = NULL;
}

void
metrics_http_free(struct metrics_http *h)
{
	int i;

	if (h == NULL)
		return;
	for (i = 0; i < METRICS_HTTP_CLIENTS; i++)
		if (h->clients[i].fd != -1)
			client_end(&h->clients[i]);
	ev_io_stop(h->loop, &h->w);
	ev_timer_stop(h->loop, &h->pause);
	close(h->fd);
	free(h);
}

static const char *const status_lines[] = {
	[HTTP_OK] = "200 OK",
	[HTTP_BAD_REQUEST] = "400 Bad Request",
	[HTTP_NOT_FOUND] = "404 Not Found",
	[HTTP_BAD_METHOD] = "405 Method Not Allowed",
	[HTTP_TOO_LARGE] = "431 Request Header Fields Too Large",
};

/* respond: build the whole response for verdict v, then write it. */
static void
respond(struct client *c, enum http_verdict v, bool head)
{
	static char body[METRICS_TEXT_MAX];
	const char *type = "text/plain; charset=utf-8";
	size_t blen;
	int n;

	if (v == HTTP_OK) {
		blen = metrics_text(body, sizeof(body));
		type = "text/plain; version=0.0.4; charset=utf-8";
	} else
		blen = (size_t)snprintf(body, sizeof(body), "%s\n",
		    status_lines[v]);
	if ((c->out = malloc(blen + 256)) == NULL) {
		client_end(c);
		return;
	}
	n = snprintf(c->out, 256, "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
	    status_lines[v], type, blen,
	    v == HTTP_BAD_METHOD ? "Allow: GET, HEAD\r\n" : "");
	c->outlen = (size_t)n;
	if (!head) {
		memcpy(c->out + c->outlen, body, blen);
		c->outlen += blen;
	}
	c->outoff = 0;
	ev_io_stop(c->h->loop, &c->w);
	ev_io_set(&c->w, c->fd, EV_WRITE);
	ev_io_start(c->h->loop, &c->w);
}

static void
client_read(struct client *c)
{
	enum http_verdict v;
	ssize_t n;
	bool head;

	n = recv(c->fd, c->req + c->reqlen, sizeof(c->req) - c->reqlen, 0);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0) {		/* gone before asking, or an error */
		client_end(c);
		return;
	}
	c->reqlen += (size_t)n;
	v = metrics_http_parse(c->req, c->reqlen, sizeof(c->req), &head);
	if (v != HTTP_MORE)
		respond(c, v, head);
}

/*
 * client_write: send the response; once it is out, send a FIN and read
 * what the client still sends (the rest of a request refused as too
 * large) until it closes: closing with unread bytes would be a reset,
 * which can destroy the response before the client has read it. The
 * exchange's timer still bounds this.
 */
static void
client_write(struct client *c)
{
	ssize_t n;

	while (c->outoff < c->outlen) {
		n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
		    MSG_NOSIGNAL);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			return;
		if (n <= 0) {
			client_end(c);
			return;
		}
		c->outoff += (size_t)n;
	}
	(void)shutdown(c->fd, SHUT_WR);
	c->lingering = true;
	ev_io_stop(c->h->loop, &c->w);
	ev_io_set(&c->w, c->fd, EV_READ);
	ev_io_start(c->h->loop, &c->w);
}

static void
client_linger(struct client *c)
{
	ssize_t n;
	int i = 0;

	/* A few reads per wakeup: a flooding client waits its turn. */
	while ((n = recv(c->fd, c->req, sizeof(c->req), 0)) > 0)
		if (++i == 4)
			return;
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	client_end(c);
}

static void
client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;

	(void)loop;
	(void)revents;
	if (c->lingering)
		client_linger(c);
	else if (c->out == NULL)
		client_read(c);
	else
		client_write(c);
}

static void
client_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	client_end(w->data);
}

static void
resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct metrics_http *h = w->data;

	(void)revents;
	ev_io_start(loop, &h->w);
}

static struct client *
free_client(struct metrics_http *h)
{
	int i;

	for (i = 0; i < METRICS_HTTP_CLIENTS; i++)
		if (h->clients[i].fd == -1)
			return &h->clients[i];
	return NULL;
}

/* pause_accepting: a readable socket we cannot accept from (out of
 * descriptors, buffers, memory) would spin: look again in a second, and
 * say so at most once a minute. */
static void
pause_accepting(struct metrics_http *h, int e)
{
	ev_tstamp now = ev_now(h->loop);

	if (h->logged_at == 0 || now - h->logged_at >= 60) {
		log_warnx("metrics: accept on %s: %s: pausing for 1s", h->text,
		    strerror(e));
		h->logged_at = now;
	}
	ev_io_stop(h->loop, &h->w);
	/* Set again each time: an expired timer restarted as it is would
	 * be due at once (libev keeps what was left of it, nothing). */
	ev_timer_set(&h->pause, 1.0, 0);
	ev_timer_start(h->loop, &h->pause);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct metrics_http *h = w->data;
	struct client *c;
	int fd, i;

	(void)revents;
	for (i = 0; i < (h->one_per_wakeup ? 1 : ACCEPT_BATCH); i++) {
		fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return;
			if (sockbind_accept_gone(errno))
				continue;
			pause_accepting(h, errno);
			return;
		}
		if ((c = free_client(h)) == NULL) {
			/* Busy with slow scrapers: this one is closed now
			 * rather than let them hold the rest back. */
			close(fd);
			continue;
		}
		c->fd = fd;
		c->reqlen = 0;
		c->out = NULL;
		c->lingering = false;
		ev_io_init(&c->w, client_io_cb, fd, EV_READ);
		c->w.data = c;
		ev_io_start(loop, &c->w);
		ev_timer_init(&c->timer, client_timer_cb, METRICS_HTTP_TIMEOUT, 0);
		c->timer.data = c;
		ev_timer_start(loop, &c->timer);
	}
}
