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
	x->err[0] = '\0';
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
	if (x->tls == NULL)
		return sys_result(x, write(x->fd, p, len), "write",
		    XIO_WANT_WRITE);
	return tls_result(x, tls_write(x->tls, p, len), "tls_write");
}

int
xio_handshake(struct xio *x)
{
	if (x->tls == NULL)
		return 0;
	return (int)tls_result(x, tls_handshake(x->tls), "tls_handshake");
}

int
xio_shutdown(struct xio *x)
{
	int rv;

	if (x->tls != NULL) {
		rv = (int)tls_result(x, tls_close(x->tls), "tls_close");
		if (rv == XIO_WANT_READ || rv == XIO_WANT_WRITE)
			return rv;
		/* A failed close_notify still ends our sending side. */
	}
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
	if (x->tls != NULL) {
		tls_free(x->tls);
		x->tls = NULL;
	}
	if (x->fd != -1) {
		close(x->fd);
		x->fd = -1;
	}
}
