/*
 * libtls_shim.c — two behaviours popsd needs that Debian 12's libtls
 * (libretls 3.7.0 on OpenSSL 3) gets wrong or does not expose. Each is a
 * thin wrapper around one OpenSSL function that libtls calls; the dynamic
 * linker binds libtls' calls to popsd's definitions (the executable is
 * searched first), and they forward to OpenSSL's (dlsym RTLD_NEXT).
 * Measured with tests/bench (make bench).
 *
 * 1. Session tickets. libretls kept LibreSSL's ticket key callback, which
 *    returns 0 once it has set up a new ticket: LibreSSL reads any value
 *    >= 0 as success, OpenSSL 3 reads 0 as "no ticket" and sends an empty
 *    one (SSL_CTX_set_tlsext_ticket_key_cb(3): 1 means success), so no
 *    client could ever resume. SSL_CTX_callback_ctrl() is wrapped so the
 *    callback is: a 0 in encrypt mode (success there; failures are -1)
 *    becomes 1. In decrypt mode a 1 ("resumed") becomes 2 ("resumed, send
 *    a fresh ticket"): OpenSSL 3 clients use a TLS 1.3 ticket once, so
 *    without renewal every other reconnection was a full handshake
 *    (bench: 50% -> 99% resumed, CPU per session 0.83 -> 0.48 ms).
 *
 * 2. Idle memory. libtls never sets SSL_MODE_RELEASE_BUFFERS, so every
 *    idle connection keeps OpenSSL's ~17 KiB read and write buffers.
 *    SSL_new() is wrapped to set it on each new connection (bench: 34 ->
 *    18 KiB RSS per idle TLS session; bulk CPU unchanged).
 *
 * Under a libtls that does both itself, or on LibreSSL, the wrappers
 * change nothing harmful (1 is success there too; the mode is idempotent).
 * Remove them once the libtls popsd is built against does this itself.
 */
#include <dlfcn.h>
#include <stddef.h>

#define SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB	72	/* <openssl/ssl.h> */

typedef long (*callback_ctrl_fn)(void *, int, void (*)(void));
typedef int (*ticket_cb_fn)(void *, unsigned char *, unsigned char *,
    void *, void *, int);

/* OpenSSL's prototype, with its types left opaque: popsd does not use
 * OpenSSL's headers. */
long	SSL_CTX_callback_ctrl(void *ctx, int cmd, void (*fp)(void));

static ticket_cb_fn libtls_ticket_cb;

static int
ticket_cb(void *ssl, unsigned char *name, unsigned char *iv, void *cctx,
    void *hctx, int enc)
{
	int rv = libtls_ticket_cb(ssl, name, iv, cctx, hctx, enc);

	if (enc == 1)
		return rv == 0 ? 1 : rv;
	/* Decrypted with a current key: 2 ("renew") makes OpenSSL send a
	 * fresh ticket after the resumed handshake. OpenSSL 3 clients use a
	 * TLS 1.3 ticket once; without a new one, every other reconnection
	 * would be a full handshake. */
	return rv == 1 ? 2 : rv;
}

/*
 * SSL_new: OpenSSL's, forwarded, then SSL_MODE_RELEASE_BUFFERS on the new
 * connection, which libtls never sets: OpenSSL frees the connection's
 * ~17 KiB read and write buffers whenever they are empty, so an idle
 * session holds neither (tests/bench: 34 -> 18 KiB RSS per idle session).
 */
#define SSL_CTRL_MODE			33		/* <openssl/ssl.h> */
#define SSL_MODE_RELEASE_BUFFERS	0x00000010L

typedef void *(*ssl_new_fn)(void *);
typedef long (*ssl_ctrl_fn)(void *, int, long, void *);

void	*SSL_new(void *ctx);

void *
SSL_new(void *ctx)
{
	static ssl_new_fn real;
	static ssl_ctrl_fn ctrl;	/* popsd does not link libssl itself */
	void *ssl;

	if (real == NULL) {
		ctrl = (ssl_ctrl_fn)(void (*)(void))dlsym(RTLD_NEXT, "SSL_ctrl");
		if ((real = (ssl_new_fn)(void (*)(void))dlsym(RTLD_NEXT,
		    "SSL_new")) == NULL)
			return NULL;
	}
	if ((ssl = real(ctx)) != NULL && ctrl != NULL)
		(void)ctrl(ssl, SSL_CTRL_MODE, SSL_MODE_RELEASE_BUFFERS, NULL);
	return ssl;
}

long
SSL_CTX_callback_ctrl(void *ctx, int cmd, void (*fp)(void))
{
	static callback_ctrl_fn real;

	if (real == NULL && (real = (callback_ctrl_fn)(void (*)(void))
	    dlsym(RTLD_NEXT, "SSL_CTX_callback_ctrl")) == NULL)
		return 0;	/* OpenSSL's "failed" */
	/* libtls registers one callback function for every context; a
	 * different one (someone else's) is left alone. */
	if (cmd == SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB && fp != NULL &&
	    (libtls_ticket_cb == NULL ||
	    libtls_ticket_cb == (ticket_cb_fn)fp)) {
		libtls_ticket_cb = (ticket_cb_fn)fp;
		fp = (void (*)(void))ticket_cb;
	}
	return real(ctx, cmd, fp);
}
