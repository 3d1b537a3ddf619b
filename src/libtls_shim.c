/*
 * libtls_shim.c — five behaviours popsd needs that Debian 12's libtls
 * (libretls 3.7.0 on OpenSSL 3) gets wrong or does not expose, from thin
 * wrappers around two OpenSSL functions that libtls calls; the dynamic
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
 * 3. Age of renewed tickets. Each resumption gets a fresh ticket (1), and
 *    OpenSSL 3.0 dates a TLS 1.3 ticket from the handshake that issued it,
 *    resumed or not, so a client that resumes within every lifetime never
 *    makes a full handshake again. Where libtls sets its ticket key
 *    callback, the context also gets session ticket callbacks that put
 *    the time of the full handshake into each ticket (application data,
 *    encrypted with it) and carry it into renewed ones, and resume a
 *    ticket only while that time is within the context's session lifetime
 *    (tls-session-lifetime) of now; otherwise a full handshake, as for a
 *    ticket that does not decrypt. TLS 1.2 keeps the session's own time,
 *    and this agrees with it.
 *
 * 4. Plaintext in freed buffers. With released buffers (2), OpenSSL frees
 *    a read buffer that held decrypted records (USER and PASS lines)
 *    without wiping it. SSL_new() also sets SSL_OP_CLEANSE_PLAINTEXT
 *    (OpenSSL 3), which wipes each record once the application has read
 *    it and every buffer before it is freed, as popsd wipes its own
 *    (README, "Performance": a RETR, where popsd decrypts only commands,
 *    1.0025x the instructions; 20 MiB sent by a client 1.19x).
 *
 * 5. Reads. Without read-ahead OpenSSL reads each record with two
 *    read(2) calls (its 5-byte header, then the rest): SSL_new() also
 *    turns read-ahead on, so a flight or a command comes in with one read
 *    of up to the record buffer's size (which it allocates anyway). With
 *    popsd's skipped EAGAIN read after a short one (xio.c), 29 -> 16 reads
 *    per pop3s session (strace; README, "Performance").
 *
 * Under a libtls that does these itself, or on LibreSSL, the wrappers
 * change nothing harmful (1 is success there too; the mode is idempotent;
 * the option and the ticket callbacks are only set where the library has
 * them). Remove them once the libtls popsd is built against does this
 * itself.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB	72	/* <openssl/ssl.h> */

typedef long (*callback_ctrl_fn)(void *, int, void (*)(void));
typedef int (*ticket_cb_fn)(void *, unsigned char *, unsigned char *,
    void *, void *, int);

/* OpenSSL's prototype, with its types left opaque: popsd does not use
 * libssl's headers (only libcrypto's, in tlsconf.c and ticketkeys.c). */
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
 * And SSL_OP_CLEANSE_PLAINTEXT, so that what those buffers held is wiped
 * before they go back to the allocator (4 above), and read-ahead (5).
 */
#define SSL_CTRL_MODE			33		/* <openssl/ssl.h> */
#define SSL_CTRL_SET_READ_AHEAD		41
#define SSL_MODE_RELEASE_BUFFERS	0x00000010L
#define SSL_OP_CLEANSE_PLAINTEXT	((uint64_t)1 << 1)	/* OpenSSL 3 */

typedef void *(*ssl_new_fn)(void *);
typedef long (*ssl_ctrl_fn)(void *, int, long, void *);
typedef uint64_t (*ssl_set_options_fn)(void *, uint64_t);

void	*SSL_new(void *ctx);

void *
SSL_new(void *ctx)
{
	static ssl_new_fn real;
	static ssl_ctrl_fn ctrl;	/* popsd does not link libssl itself */
	/* A function from OpenSSL 3 on, as is the option (a macro before). */
	static ssl_set_options_fn set_options;
	void *ssl;

	if (real == NULL) {
		ctrl = (ssl_ctrl_fn)(void (*)(void))dlsym(RTLD_NEXT, "SSL_ctrl");
		set_options = (ssl_set_options_fn)(void (*)(void))dlsym(
		    RTLD_NEXT, "SSL_set_options");
		if ((real = (ssl_new_fn)(void (*)(void))dlsym(RTLD_NEXT,
		    "SSL_new")) == NULL)
			return NULL;
	}
	if ((ssl = real(ctx)) == NULL)
		return NULL;
	if (ctrl != NULL) {
		(void)ctrl(ssl, SSL_CTRL_MODE, SSL_MODE_RELEASE_BUFFERS, NULL);
		(void)ctrl(ssl, SSL_CTRL_SET_READ_AHEAD, 1, NULL);
	}
	if (set_options != NULL)
		(void)set_options(ssl, SSL_OP_CLEANSE_PLAINTEXT);
	return ssl;
}

/*
 * 3. The session ticket callbacks (SSL_CTX_set_session_ticket_cb(3)).
 * A stamp is the ticket's application data: a version byte, then the
 * time of the full handshake (seconds since the epoch, big-endian).
 */
#define SSL_TICKET_SUCCESS		5	/* <openssl/ssl.h> */
#define SSL_TICKET_SUCCESS_RENEW	6
#define SSL_TICKET_RETURN_IGNORE_RENEW	2
#define SSL_TICKET_RETURN_USE		3
#define SSL_TICKET_RETURN_USE_RENEW	4

#define STAMP_VERSION	1
#define STAMP_SIZE	9

typedef int (*gen_ticket_fn)(void *, void *);
typedef int (*dec_ticket_fn)(void *, void *, const unsigned char *, size_t,
    int, void *);

static struct {
	int	(*set_cb)(void *, gen_ticket_fn, dec_ticket_fn, void *);
	int	(*set_appdata)(void *, const void *, size_t);
	int	(*get_appdata)(void *, void **, size_t *);
	void	*(*get_session)(const void *);
	void	*(*get_ctx)(const void *);
	long	(*get_timeout)(const void *);
} ossl;

/* ticket_api: OpenSSL's session ticket functions, looked up once; 0, or
 * -1 if this library has not all of them. */
static int
ticket_api(void)
{
	static int found;

#define FIND(f, name) \
	((ossl.f = (__typeof__(ossl.f))dlsym(RTLD_NEXT, name)) != NULL)
	if (found == 0)
		found = FIND(set_cb, "SSL_CTX_set_session_ticket_cb") &&
		    FIND(set_appdata, "SSL_SESSION_set1_ticket_appdata") &&
		    FIND(get_appdata, "SSL_SESSION_get0_ticket_appdata") &&
		    FIND(get_session, "SSL_get_session") &&
		    FIND(get_ctx, "SSL_get_SSL_CTX") &&
		    FIND(get_timeout, "SSL_CTX_get_timeout") ? 1 : -1;
#undef FIND
	return found == 1 ? 0 : -1;
}

/* stamp_time: the full handshake's time from sess's stamp; 0 or -1 if it
 * has none (a ticket from before stamps, or not from popsd). */
static int
stamp_time(void *sess, int64_t *t)
{
	const unsigned char *p;
	void *data;
	size_t len;
	uint64_t v = 0;
	int i;

	if (ossl.get_appdata(sess, &data, &len) != 1 || data == NULL ||
	    len != STAMP_SIZE || (p = data)[0] != STAMP_VERSION)
		return -1;
	for (i = 1; i < STAMP_SIZE; i++)
		v = v << 8 | p[i];
	*t = (int64_t)v;
	return 0;
}

/*
 * ticket_gen: a ticket is about to be made for ssl's session. A resumed
 * session kept the stamp of the ticket it came from (its application
 * data); any other is from a full handshake now. Always 1: a session
 * whose stamp could not be set is not resumed, and the connection goes on.
 */
static int
ticket_gen(void *ssl, void *arg)
{
	unsigned char stamp[STAMP_SIZE];
	uint64_t now = (uint64_t)time(NULL);
	void *sess = ossl.get_session(ssl);
	int64_t t;
	int i;

	(void)arg;
	if (sess == NULL || stamp_time(sess, &t) == 0)
		return 1;
	stamp[0] = STAMP_VERSION;
	for (i = STAMP_SIZE - 1; i > 0; i--, now >>= 8)
		stamp[i] = (unsigned char)now;
	(void)ossl.set_appdata(sess, stamp, sizeof(stamp));
	return 1;
}

/*
 * ticket_dec: a ticket was decrypted (or not: status says). Resume only
 * a stamped session whose full handshake is no more than the session
 * lifetime ago (or ahead: another host's clock); otherwise a full
 * handshake and a new ticket, as OpenSSL does for a ticket that does not
 * decrypt.
 */
static int
ticket_dec(void *ssl, void *sess, const unsigned char *name, size_t namelen,
    int status, void *arg)
{
	int64_t t, now = (int64_t)time(NULL), lifetime;

	(void)name;
	(void)namelen;
	(void)arg;
	if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	lifetime = ossl.get_timeout(ossl.get_ctx(ssl));
	if (sess == NULL || stamp_time(sess, &t) == -1 ||
	    now - t > lifetime || t - now > lifetime)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE :
	    SSL_TICKET_RETURN_USE_RENEW;
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
		/* Without the callbacks (LibreSSL; OpenSSL before 1.1.1)
		 * there is no TLS 1.3 resumption, and a renewed TLS 1.2
		 * ticket keeps its session's time. Where they are, failing
		 * to set them fails libtls' configure ("failed to set
		 * ticket callback"): tickets without an age limit are worse
		 * than none. */
		if (ticket_api() == 0 &&
		    ossl.set_cb(ctx, ticket_gen, ticket_dec, NULL) != 1)
			return 0;
	}
	return real(ctx, cmd, fp);
}
