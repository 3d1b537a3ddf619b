/* xio.c — read/write/handshake/shutdown for plaintext and TLS endpoints. */
#include "xio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <tls.h>
#include <unistd.h>

void
xio_init(struct xio *x, int fd)
{
	x->fd = fd;
	x->tls = NULL;
	buf_init(&x->wq, XIO_WQ_SMALL);
	x->batch = false;
	x->drained = false;
	x->tls_closed = false;
	x->err[0] = '\0';
}

/*
 * sock_read: read(2), unless the last one was short. A stream socket
 * returns less than asked only when it had no more: the next read would
 * be EAGAIN (one per client command, and after each handshake flight;
 * OpenSSL reads ahead, as much as its buffer holds). Instead the caller
 * waits for readability, which libev's level-triggered epoll reports at
 * once if bytes (or EOF) came in since. -1 with EAGAIN then.
 */
static ssize_t
sock_read(struct xio *x, void *p, size_t len)
{
	ssize_t n;

	if (x->drained) {
		x->drained = false;
		errno = EAGAIN;
		return -1;
	}
	n = read(x->fd, p, len);
	x->drained = n > 0 && (size_t)n < len;
	return n;
}

/* cb_read: libtls wants ciphertext: straight from the socket. */
static ssize_t
cb_read(struct tls *ctx, void *p, size_t len, void *arg)
{
	struct xio *x = arg;
	ssize_t n;

	(void)ctx;
	n = sock_read(x, p, len);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return TLS_WANT_POLLIN;
	return n;
}

/* send_queue: one write(2) of what is queued; -1 with errno on failure
 * (EAGAIN included), else bytes written. */
static ssize_t
send_queue(struct xio *x)
{
	const uint8_t *p;
	size_t len;
	ssize_t n;

	if ((p = buf_rptr(&x->wq, &len)) == NULL)
		return 0;
	if ((n = write(x->fd, p, len)) > 0)
		buf_consume(&x->wq, (size_t)n);
	return n;
}

/*
 * cb_write: libtls has ciphertext to send. Outside xio_write (handshake,
 * alerts, close_notify) it goes out at once, as with a plain socket,
 * unless data is already queued ahead of it. Inside xio_write it is queued;
 * a queue without room is flushed first, and one that stays full asks
 * libtls to wait for writability (it retries with the same bytes).
 */
static ssize_t
cb_write(struct tls *ctx, const void *p, size_t len, void *arg)
{
	struct xio *x = arg;
	size_t room;
	ssize_t n;

	(void)ctx;
	if (!x->batch && buf_empty(&x->wq)) {
		n = write(x->fd, p, len);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			return TLS_WANT_POLLOUT;
		return n;
	}
	if (buf_space(&x->wq) < len && !buf_empty(&x->wq) &&
	    send_queue(x) == -1 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR)
		return -1;
	if ((room = buf_space(&x->wq)) == 0)
		return TLS_WANT_POLLOUT;
	if (len > room)
		len = room;
	if (buf_append(&x->wq, p, len) == -1) {
		errno = ENOMEM;
		return -1;
	}
	return (ssize_t)len;
}

int
xio_tls_accept(struct xio *x, struct tls *srv)
{
	const char *e;

	if (tls_accept_cbs(srv, &x->tls, cb_read, cb_write, x) == 0)
		return 0;
	e = tls_error(srv);
	snprintf(x->err, sizeof(x->err), "tls_accept_cbs: %s",
	    e ? e : "unknown error");
	x->tls = NULL;
	return -1;
}

void
xio_bulk(struct xio *x)
{
	buf_set_max(&x->wq, XIO_WQ_BULK);
	(void)buf_grow(&x->wq);		/* sets cap if empty; else later */
}

int
xio_flush(struct xio *x, size_t *wrote)
{
	size_t total = 0;
	ssize_t n;

	while (!buf_empty(&x->wq)) {
		if ((n = send_queue(x)) > 0) {
			total += (size_t)n;
			continue;
		}
		if (wrote != NULL)
			*wrote = total;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			return XIO_WANT_WRITE;
		snprintf(x->err, sizeof(x->err), "write: %s",
		    n == 0 ? "nothing written" : strerror(errno));
		return XIO_ERR;
	}
	if (wrote != NULL)
		*wrote = total;
	return 0;
}

static ssize_t
tls_result(struct xio *x, ssize_t n, const char *what)
{
	const char *e;

	if (n >= 0 || n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT)
		return n;
	e = tls_error(x->tls);
	snprintf(x->err, sizeof(x->err), "%s: %s", what, e ? e : "unknown error");
	return XIO_ERR;
}

static ssize_t
sys_result(struct xio *x, ssize_t n, const char *what, int want)
{
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return want;
	snprintf(x->err, sizeof(x->err), "%s: %s", what, strerror(errno));
	return XIO_ERR;
}

ssize_t
xio_read(struct xio *x, void *p, size_t len)
{
	ssize_t n;

	/* Plaintext (a backend, mostly) is read until EAGAIN: an EOF right
	 * after its last reply is seen in the same round (measured: skipping
	 * that read cost an extra event loop round and a lone close_notify
	 * write per session). */
	if (x->tls == NULL)
		return sys_result(x, read(x->fd, p, len), "read",
		    XIO_WANT_READ);
	n = tls_read(x->tls, p, len);
	if (n == -1) {
		const char *e = tls_error(x->tls);
		/*
		 * libtls reports a TCP EOF without close_notify as an error.
		 * POP3 frames its own data (".\r\n", QUIT), so a truncation
		 * attack cannot make a partial message look complete: treat
		 * it as EOF and keep the reason for the log.
		 */
		if (e == NULL || strstr(e, "EOF") != NULL ||
		    strstr(e, "unexpected eof") != NULL) {
			snprintf(x->err, sizeof(x->err), "eof without close_notify");
			return XIO_EOF;
		}
	}
	return tls_result(x, n, "tls_read");
}

ssize_t
xio_write(struct xio *x, const void *p, size_t len)
{
	ssize_t n;

	if (x->tls == NULL)
		return sys_result(x, write(x->fd, p, len), "write",
		    XIO_WANT_WRITE);
	x->batch = true;
	n = tls_write(x->tls, p, len);
	x->batch = false;
	return tls_result(x, n, "tls_write");
}

/*
 * xio_handshake: the handshake's records are queued while libtls runs it
 * and leave with one write(2) per step: a flight the peer must answer
 * goes out before we wait for it. The tail of a TLS 1.3 handshake (the
 * session tickets, written after the client's Finished) stays queued when
 * the handshake completes: it leaves with the first reply (the greeting
 * of a pop3s session, after the backend connect), one write instead of
 * three (make bench, strace). The client needs nothing of it to go on.
 * TLS 1.2's last flight (ticket, Finished) is one the client waits for:
 * it goes at once.
 */
int
xio_handshake(struct xio *x)
{
	const char *v;
	int rv, f;

	if (x->tls == NULL)
		return 0;
	/* A flight that could not all be written goes before anything. */
	if ((f = xio_flush(x, NULL)) != 0)
		return f;
	x->batch = true;
	rv = (int)tls_result(x, tls_handshake(x->tls), "tls_handshake");
	x->batch = false;
	if (rv == 0 && (v = tls_conn_version(x->tls)) != NULL &&
	    strcmp(v, "TLSv1.3") == 0)
		return 0;
	if (rv == XIO_ERR) {
		/* The alert, if any, best effort: the reason is libtls'. */
		char why[sizeof(x->err)];

		memcpy(why, x->err, sizeof(why));
		(void)xio_flush(x, NULL);
		memcpy(x->err, why, sizeof(x->err));
		return rv;
	}
	/* Waiting for the peer, or done (TLS 1.2): the flight goes now. */
	f = xio_flush(x, NULL);
	/* Done: what could not be written stays queued, owed to the peer
	 * like a reply (libtls refuses a second tls_handshake). */
	if (rv == 0 || f == 0)
		return rv;
	return f;
}

int
xio_shutdown(struct xio *x)
{
	int rv;

	if (x->tls != NULL && !x->tls_closed) {
		rv = (int)tls_result(x, tls_close(x->tls), "tls_close");
		if (rv == XIO_WANT_READ || rv == XIO_WANT_WRITE)
			return rv;
		/* A failed close_notify still ends our sending side. */
		x->tls_closed = true;
	}
	/* The FIN must not overtake queued records (close_notify included). */
	if ((rv = xio_flush(x, NULL)) == XIO_WANT_WRITE)
		return rv;
	if (shutdown(x->fd, SHUT_WR) == -1 && errno != ENOTCONN) {
		snprintf(x->err, sizeof(x->err), "shutdown: %s", strerror(errno));
		return XIO_ERR;
	}
	return 0;
}

void
xio_discard_input(int fd)
{
	char junk[4096];
	int i;

	for (i = 0; i < 4 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
		continue;
}

void
xio_close(struct xio *x)
{
	buf_free(&x->wq);
	if (x->tls != NULL) {
		tls_free(x->tls);
		x->tls = NULL;
	}
	if (x->fd != -1) {
		close(x->fd);
		x->fd = -1;
	}
}
