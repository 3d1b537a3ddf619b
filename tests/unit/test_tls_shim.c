/*
 * test_tls_shim.c — what libtls_shim.c's SSL_new() sets on every
 * connection, checked two ways:
 *
 * - directly: SSL_new() through the shim, then OpenSSL's own getters with
 *   OpenSSL's own constants (the shim copies them by hand);
 * - by its effect, TLS in memory through libtls (tls_accept_cbs and
 *   tls_connect_cbs): OpenSSL allocates through hooks that look into
 *   every block it frees, and no freed block may still hold a line the
 *   server read ("PASS ..."). This fails if the option is dropped, if its
 *   value is wrong, or if libtls' calls stop reaching the wrapper.
 *
 * This test uses OpenSSL's headers, as popsd does not: it checks the
 * shim against them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <tls.h>

/* What the client sends: a line no other freed block can contain. */
static const char secret[] = "PASS plaintext-7c1e2f9a-must-not-linger\r\n";

/* ------------------------------------------------ OpenSSL's allocations */

static bool	scanning;	/* look into freed blocks */
static int	freed;		/* blocks looked into */
static int	lingering;	/* of them, still holding the secret */

static void *
hook_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n);
}

static void *
hook_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return realloc(p, n);
}

static void
hook_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (p != NULL && scanning) {
		freed++;
		if (memmem(p, malloc_usable_size(p), secret,
		    sizeof(secret) - 1) != NULL)
			lingering++;
	}
	free(p);
}

/* ------------------------------------------------ an in-memory transport */

struct queue {
	unsigned char	buf[1 << 16];
	size_t		len;
};

struct end {
	struct queue	*in, *out;
};

static ssize_t
q_read(struct tls *t, void *buf, size_t n, void *arg)
{
	struct end *e = arg;

	(void)t;
	if (e->in->len == 0)
		return TLS_WANT_POLLIN;
	if (n > e->in->len)
		n = e->in->len;
	memcpy(buf, e->in->buf, n);
	memmove(e->in->buf, e->in->buf + n, e->in->len - n);
	e->in->len -= n;
	return (ssize_t)n;
}

static ssize_t
q_write(struct tls *t, const void *buf, size_t n, void *arg)
{
	struct end *e = arg;

	(void)t;
	if (n > sizeof(e->out->buf) - e->out->len)
		n = sizeof(e->out->buf) - e->out->len;
	if (n == 0)
		return TLS_WANT_POLLOUT;
	memcpy(e->out->buf + e->out->len, buf, n);
	e->out->len += n;
	return (ssize_t)n;
}

/* A self-signed P-256 certificate for "localhost", PEM in memory. */
static void
keypair(char **cert, size_t *certlen, char **key, size_t *keylen)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	BIO *b;
	char *p;
	long n;

	assert_non_null(pk);
	assert_non_null(x);
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"localhost", -1, -1, 0), 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	assert_int_equal(X509_set_pubkey(x, pk), 1);
	assert_true(X509_sign(x, pk, EVP_sha256()) > 0);

	assert_non_null(b = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_X509(b, x), 1);
	n = BIO_get_mem_data(b, &p);
	assert_non_null(*cert = malloc((size_t)n));
	memcpy(*cert, p, (size_t)n);
	*certlen = (size_t)n;
	assert_int_equal(BIO_reset(b), 1);
	assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL,
	    NULL), 1);
	n = BIO_get_mem_data(b, &p);
	assert_non_null(*key = malloc((size_t)n));
	memcpy(*key, p, (size_t)n);
	*keylen = (size_t)n;
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(pk);
}

/* ------------------------------------------------ tests */

/* The shim's SSL_new(), then OpenSSL's getters and constants. */
static void
test_ssl_new_sets_mode_and_option(void **state)
{
	SSL_CTX *ctx;
	SSL *ssl;

	(void)state;
	assert_non_null(ctx = SSL_CTX_new(TLS_server_method()));
	assert_non_null(ssl = SSL_new(ctx));
	assert_true(SSL_get_options(ssl) & SSL_OP_CLEANSE_PLAINTEXT);
	assert_true(SSL_get_mode(ssl) & SSL_MODE_RELEASE_BUFFERS);
	assert_int_equal(SSL_get_read_ahead(ssl), 1);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

/* drive: step both handshakes until both are done. */
static void
handshake(struct tls *srv, struct tls *cli)
{
	int i, rs = -1, rc = -1;

	for (i = 0; i < 100 && (rs != 0 || rc != 0); i++) {
		if (rc != 0)
			rc = tls_handshake(cli);
		if (rs != 0)
			rs = tls_handshake(srv);
		assert_true(rc == 0 || rc == TLS_WANT_POLLIN ||
		    rc == TLS_WANT_POLLOUT);
		assert_true(rs == 0 || rs == TLS_WANT_POLLIN ||
		    rs == TLS_WANT_POLLOUT);
	}
	assert_int_equal(rs, 0);
	assert_int_equal(rc, 0);
}

/* A line read by the server through libtls is not in any block OpenSSL
 * frees: not when its read buffer is released, not at tls_free(). */
static void
test_read_plaintext_not_left_in_freed_buffers(void **state)
{
	static struct queue c2s, s2c;
	struct end srv_end = { &c2s, &s2c }, cli_end = { &s2c, &c2s };
	struct tls_config *scfg, *ccfg;
	struct tls *server, *srv = NULL, *cli;
	char *cert, *key, got[sizeof(secret)];
	size_t certlen, keylen, n = 0;
	ssize_t r;
	int i;

	(void)state;
	keypair(&cert, &certlen, &key, &keylen);
	assert_non_null(scfg = tls_config_new());
	assert_int_equal(tls_config_set_keypair_mem(scfg,
	    (const uint8_t *)cert, certlen, (const uint8_t *)key, keylen), 0);
	assert_non_null(server = tls_server());
	assert_int_equal(tls_configure(server, scfg), 0);
	assert_non_null(ccfg = tls_config_new());
	tls_config_insecure_noverifycert(ccfg);
	tls_config_insecure_noverifyname(ccfg);
	assert_non_null(cli = tls_client());
	assert_int_equal(tls_configure(cli, ccfg), 0);

	assert_int_equal(tls_accept_cbs(server, &srv, q_read, q_write,
	    &srv_end), 0);
	assert_int_equal(tls_connect_cbs(cli, q_read, q_write, &cli_end,
	    "localhost"), 0);
	handshake(srv, cli);

	scanning = true;
	assert_int_equal(tls_write(cli, secret, sizeof(secret) - 1),
	    (ssize_t)(sizeof(secret) - 1));
	for (i = 0; i < 10 && n < sizeof(secret) - 1; i++) {
		r = tls_read(srv, got + n, sizeof(got) - 1 - n);
		if (r == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT)
			continue;
		assert_true(r > 0);
		n += (size_t)r;
	}
	assert_memory_equal(got, secret, sizeof(secret) - 1);
	(void)tls_close(cli);
	(void)tls_close(srv);
	tls_free(srv);
	tls_free(cli);
	tls_free(server);
	scanning = false;

	assert_true(freed > 0);		/* the hooks did look */
	assert_int_equal(lingering, 0);
	tls_config_free(scfg);
	tls_config_free(ccfg);
	free(cert);
	free(key);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ssl_new_sets_mode_and_option),
		cmocka_unit_test(test_read_plaintext_not_left_in_freed_buffers),
	};

	/* Before OpenSSL allocates anything, or it refuses. */
	if (CRYPTO_set_mem_functions(hook_malloc, hook_realloc,
	    hook_free) != 1) {
		fprintf(stderr, "CRYPTO_set_mem_functions: too late\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
