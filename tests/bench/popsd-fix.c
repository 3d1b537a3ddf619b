/*
 * popsd-fix.c — LD_PRELOAD shim that gives a popsd binary the two OpenSSL
 * settings this benchmark proposes for it (tests/bench/README.md), so that
 * their effect is measured in the same run ("popsd+fix" column). Not part
 * of popsd: the proposal is to do the same inside popsd (src/ticketfix.c
 * already interposes libtls' OpenSSL calls the same way).
 *
 * 1. SSL_MODE_RELEASE_BUFFERS on every SSL object (libretls 3.7 never sets
 *    it): OpenSSL frees a connection's ~17 KiB read and write buffers
 *    whenever they are empty, so an idle session holds neither.
 * 2. Session ticket renewal: a ticket decrypted with a current key makes
 *    the ticket key callback return 2 ("renew") instead of 1, so OpenSSL
 *    sends a fresh ticket after a resumed TLS 1.3 handshake. OpenSSL 3
 *    clients use a ticket once; without a new one, every other connection
 *    of a reconnecting client is a full handshake.
 *    (Encrypt mode: libretls' 0 is read as success, as src/ticketfix.c
 *    does; harmless when that already happened.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

#include <openssl/ssl.h>

typedef int (*ticket_cb_fn)(SSL *, unsigned char *, unsigned char *, void *,
    void *, int);
typedef long (*callback_ctrl_fn)(SSL_CTX *, int, void (*)(void));

static ticket_cb_fn inner_cb;

SSL *
SSL_new(SSL_CTX *ctx)
{
	static SSL *(*real)(SSL_CTX *);
	SSL *ssl;

	if (real == NULL &&
	    (real = (SSL *(*)(SSL_CTX *))dlsym(RTLD_NEXT, "SSL_new")) == NULL)
		return NULL;
	if ((ssl = real(ctx)) != NULL)
		SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	return ssl;
}

static int
renew_cb(SSL *ssl, unsigned char *name, unsigned char *iv, void *cctx,
    void *hctx, int enc)
{
	int rv = inner_cb(ssl, name, iv, cctx, hctx, enc);

	if (enc == 1 && rv == 0)
		return 1;
	return enc == 0 && rv == 1 ? 2 : rv;
}

long
SSL_CTX_callback_ctrl(SSL_CTX *ctx, int cmd, void (*fp)(void))
{
	static callback_ctrl_fn real;

	if (real == NULL && (real = (callback_ctrl_fn)(void (*)(void))
	    dlsym(RTLD_NEXT, "SSL_CTX_callback_ctrl")) == NULL)
		return 0;
	if (cmd == SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB && fp != NULL &&
	    (inner_cb == NULL || inner_cb == (ticket_cb_fn)fp)) {
		inner_cb = (ticket_cb_fn)fp;
		fp = (void (*)(void))renew_cb;
	}
	return real(ctx, cmd, fp);
}
