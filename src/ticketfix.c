/*
 * ticketfix.c — make libtls' session tickets work on libretls + OpenSSL.
 *
 * libretls (the libtls of Debian 12: 3.7.0 on OpenSSL 3) kept LibreSSL's
 * session ticket key callback, which returns 0 once it has set up the
 * cipher and HMAC for a new ticket: LibreSSL reads any value >= 0 as
 * success. OpenSSL reads 0 as "no ticket" and sends an empty one
 * (SSL_CTX_set_tlsext_ticket_key_cb(3): 1 means success), so no client
 * ever holds a usable ticket and no session is ever resumed, whatever
 * keys and lifetime popsd gives libtls. (Seen in the disassembly of
 * libtls.so.26.0.1 and with "openssl s_client -sess_out", which gets no
 * session to save.)
 *
 * libtls registers the callback through SSL_CTX_callback_ctrl(), the
 * function behind the SSL_CTX_set_tlsext_ticket_key_cb() macro. popsd
 * defines that function; the dynamic linker binds libtls' call to it
 * (the executable is searched first) and it forwards every call to
 * OpenSSL's (dlsym RTLD_NEXT) unchanged, except that the ticket key
 * callback is wrapped: a 0 from libtls in encrypt mode, which there means
 * success (its failures return -1), becomes 1. Decrypt mode (0: unknown
 * key, 1: resumed, 2: resumed and renew) and errors pass through. Under a
 * libtls whose callback already returns 1, or on LibreSSL, which accepts
 * 1 as well, the wrapper changes nothing. Remove this file once the
 * libtls popsd is built against returns 1 itself.
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

	return enc == 1 && rv == 0 ? 1 : rv;
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
