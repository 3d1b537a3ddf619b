/*
 * xio.h — one I/O result type for plaintext sockets and libtls contexts.
 *
 * The session code never sees EAGAIN or TLS_WANT_POLLIN/POLLOUT directly:
 * every call returns bytes, XIO_EOF, XIO_ERR, or which readiness it needs
 * before it can be repeated (XIO_WANT_READ/XIO_WANT_WRITE). A TLS read may
 * need writability and a TLS write may need readability; callers must arm
 * their watcher for exactly what was asked.
 */
#ifndef POPSD_XIO_H
#define POPSD_XIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

struct tls;

#define XIO_EOF		  0
#define XIO_ERR		(-1)
#define XIO_WANT_READ	(-2)	/* same values as TLS_WANT_POLLIN/POLLOUT */
#define XIO_WANT_WRITE	(-3)

/*
 * Ciphertext of an endpoint set up by xio_tls_accept() is queued in wq by
 * xio_write() and leaves with one write(2) per xio_flush(), several TLS
 * records at once: one 16 KiB write per record was most of a bulk
 * transfer's CPU. Handshake, alerts and close_notify still go out at once
 * (after whatever is queued, to keep the order). Queued bytes are owed to
 * the peer like unwritten plaintext: see xio_pending().
 */
#define XIO_WQ_RECORD	(16 * 1024 + 512)	/* a TLS record and overhead */
#define XIO_WQ_SMALL	XIO_WQ_RECORD		/* until xio_bulk() */
#define XIO_WQ_BULK	(4 * XIO_WQ_RECORD)

struct xio {
	int		 fd;		/* -1 when closed */
	struct tls	*tls;		/* NULL for plaintext */
	struct buf	 wq;		/* queued ciphertext (xio_tls_accept) */
	bool		 batch;		/* inside xio_write: queue, do not send */
	bool		 drained;	/* last TLS read(2) short: socket empty */
	bool		 tls_closed;	/* close_notify done, flush and FIN left */
	char		 err[160];	/* why the last call returned XIO_ERR */
};

/* xio_init: plaintext endpoint on fd (already non-blocking). */
void	xio_init(struct xio *x, int fd);

/* xio_tls_accept: put x's socket under a TLS server context srv, with the
 * coalescing write queue; 0, or -1 with the reason in err. x must not
 * move in memory afterwards (libtls keeps a pointer to it). */
int	xio_tls_accept(struct xio *x, struct tls *srv);

/* xio_bulk: x now carries bulk data (spliced): its write queue may grow
 * to several records. Memory is still taken only while bytes are queued. */
void	xio_bulk(struct xio *x);

/* xio_pending: ciphertext queued but not yet written (owed to the peer). */
static inline size_t xio_pending(const struct xio *x) { return buf_len(&x->wq); }

/* xio_flush: write what is queued: 0 when the queue is empty, XIO_ERR, or
 * XIO_WANT_WRITE. *wrote (if not NULL) gets the bytes written. */
int	xio_flush(struct xio *x, size_t *wrote);

/* xio_read: up to len bytes into p. Returns > 0, XIO_EOF, XIO_ERR or a
 * XIO_WANT_*. A TLS peer that vanishes without close_notify is XIO_EOF for
 * POP3's purposes (the POP3 layer has its own terminator), noted in err. */
ssize_t	xio_read(struct xio *x, void *p, size_t len);

/* xio_write: up to len (> 0) bytes from p. Returns > 0 (possibly short),
 * XIO_ERR or a XIO_WANT_*. Retry a wanted write with the same bytes. With
 * a write queue, bytes accepted may still be queued: xio_flush() them. */
ssize_t	xio_write(struct xio *x, const void *p, size_t len);

/* xio_handshake: drive the TLS handshake: 0 done, XIO_ERR, XIO_WANT_*. */
int	xio_handshake(struct xio *x);

/* xio_shutdown: no more writes toward the peer: TLS close_notify, what is
 * queued flushed (may need to be repeated on XIO_WANT_*), then
 * shutdown(SHUT_WR). 0 when done. */
int	xio_shutdown(struct xio *x);

/* xio_discard_input: read and drop what the peer of socket fd already
 * sent (at most 16 KiB: a client cannot keep us reading), so that closing
 * sends a FIN rather than the reset unread data would cause. */
void	xio_discard_input(int fd);

/* xio_close: free the TLS context (if any) and close the fd. Idempotent. */
void	xio_close(struct xio *x);

#endif
