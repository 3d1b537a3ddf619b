/*
 * tlsconf.c — turn the configuration's certificates, keys, OCSP staples
 * and TLS policy into a server context; make and rotate ticket keys.
 */
#include "tlsconf.h"

#include <sys/random.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <tls.h>

/* OpenSSL's headers, here and in ticketkeys.c only: SHA-256 for the
 * session id context. libtls has no digest; the libcrypto under it has
 * (EVP_MD_CTX_new and EVP_Digest*: OpenSSL 1.1 and 3, LibreSSL), and a
 * digest of popsd's own would be crypto code to maintain. */
#include <openssl/evp.h>

#include "conf.h"
#include "log.h"

static int
add_keypairs(struct tls_config *cfg, const struct conf *c, char *err,
    size_t errsz)
{
	const struct conf_keypair *kp;
	int i, rv;

	for (i = 0; i < c->nkeypairs; i++) {
		kp = &c->keypairs[i];
		/* A NULL staple is no staple: the _ocsp_ calls cover both. */
		if (i == 0)
			rv = tls_config_set_keypair_ocsp_mem(cfg, kp->cert,
			    kp->cert_len, kp->key, kp->key_len, kp->ocsp,
			    kp->ocsp_len);
		else
			rv = tls_config_add_keypair_ocsp_mem(cfg, kp->cert,
			    kp->cert_len, kp->key, kp->key_len, kp->ocsp,
			    kp->ocsp_len);
		if (rv == -1) {
			snprintf(err, errsz, "certificate %s / key %s: %s",
			    kp->cert_path, kp->key_path, tls_config_error(cfg));
			return -1;
		}
	}
	return 0;
}

/*
 * TLS 1.2 cipher suites when tls-ciphers is not given: forward-secret AEAD
 * only (Mozilla's "intermediate" set). libtls' own default ("secure")
 * still offers CBC suites, which testssl flags (LUCKY13). TLS 1.3 suites
 * are all AEAD and not affected.
 */
#define TLSCONF_DEFAULT_CIPHERS	"ECDHE+AESGCM:ECDHE+CHACHA20"

/* policy: protocols, ciphers, curves and client certificates. The values
 * were accepted by libtls at load time; a failure here is still reported. */
static int
set_policy(struct tls_config *cfg, const struct conf *c, char *err,
    size_t errsz)
{
	const char *what = NULL;

	if (tls_config_set_protocols(cfg, c->tls_protocols) == -1)
		what = "tls-protocols";
	else if (tls_config_set_ciphers(cfg, c->tls_ciphers != NULL ?
	    c->tls_ciphers : TLSCONF_DEFAULT_CIPHERS) == -1)
		what = "tls-ciphers";
	else if (c->tls_curves != NULL &&
	    tls_config_set_ecdhecurves(cfg, c->tls_curves) == -1)
		what = "tls-curves";
	else if (c->tls_client_cert != CLIENT_CERT_NONE &&
	    tls_config_set_ca_mem(cfg, c->tls_client_ca,
	    c->tls_client_ca_len) == -1)
		what = "tls-client-ca";
	if (what != NULL) {
		snprintf(err, errsz, "%s: %s", what, tls_config_error(cfg));
		return -1;
	}
	if (c->tls_client_cert == CLIENT_CERT_REQUIRED)
		tls_config_verify_client(cfg);
	else if (c->tls_client_cert == CLIENT_CERT_OPTIONAL)
		tls_config_verify_client_optional(cfg);
	return 0;
}

/* fill_random: len bytes from the kernel's CSPRNG; 0 or -1. */
static int
fill_random(void *p, size_t len)
{
	ssize_t n;

	/* Up to 256 bytes come whole once the pool is initialised. */
	do
		n = getrandom(p, len, 0);
	while (n == -1 && errno == EINTR);
	return n == (ssize_t)len ? 0 : -1;
}

/* next_rev: a key name libtls has not seen in this process; never 0,
 * which would collide with its empty slots. */
static uint32_t
next_rev(struct ticket_keys *tk)
{
	if (++tk->last_rev == 0)
		tk->last_rev = 1;
	return tk->last_rev;
}

/* append_key: add key named rev to tk, dropping the oldest when full. */
static void
append_key(struct ticket_keys *tk, const uint8_t *key, uint32_t rev)
{
	if (tk->n == TICKET_KEYS) {
		memmove(tk->key[0], tk->key[1], sizeof(tk->key[0]) *
		    (TICKET_KEYS - 1));
		memmove(&tk->rev[0], &tk->rev[1], sizeof(tk->rev[0]) *
		    (TICKET_KEYS - 1));
		tk->n--;
	}
	memcpy(tk->key[tk->n], key, TICKET_KEY_SIZE);
	tk->rev[tk->n] = rev;
	tk->n++;
}

/* new_key: append a fresh key to tk, dropping the oldest when full. */
static int
new_key(struct ticket_keys *tk, char *err, size_t errsz)
{
	uint8_t key[TICKET_KEY_SIZE];

	if (fill_random(key, sizeof(key)) == -1) {
		snprintf(err, errsz, "getrandom: %s", strerror(errno));
		return -1;
	}
	append_key(tk, key, next_rev(tk));
	explicit_bzero(key, sizeof(key));
	return 0;
}

/* digest_field: a length, then the bytes: no two lists of fields give
 * the same input. */
static int
digest_field(EVP_MD_CTX *md, const void *p, size_t len)
{
	uint8_t n[8];
	int i;

	for (i = 0; i < 8; i++)
		n[i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	return EVP_DigestUpdate(md, n, sizeof(n)) == 1 &&
	    (len == 0 || EVP_DigestUpdate(md, p, len) == 1) ? 0 : -1;
}

/*
 * set_session_id: the TLS session id context for c: SHA-256 of base (the
 * same for every context whose sessions are to resume in the others) and
 * of what a full handshake checks but a resumed one does not: the client
 * certificate mode, the CA bytes it verifies with, and the cipher list (a
 * TLS 1.2 session resumes with its cipher if the client still offers it,
 * whatever the server's list). OpenSSL resumes only sessions of the same
 * context, so after a reload that changes any of these every client makes
 * one full handshake under the new policy: a ticket from before
 * "tls-client-cert required" does not resume without a certificate. A
 * function of the configuration: workers, which reload each on its own,
 * agree. 0, or -1 with the reason in err.
 */
static int
set_session_id(struct tls_config *cfg, const struct conf *c,
    const void *base, size_t baselen, char *err, size_t errsz)
{
	static const char label[] = "popsd session id context 1";
	const char *ciphers = c->tls_ciphers != NULL ? c->tls_ciphers :
	    TLSCONF_DEFAULT_CIPHERS;
	bool ca = c->tls_client_cert != CLIENT_CERT_NONE;
	uint8_t mode = (uint8_t)c->tls_client_cert;
	uint8_t sid[TICKET_SESSION_ID_SIZE];
	unsigned int len = 0;
	EVP_MD_CTX *md;
	int ok;

	if ((md = EVP_MD_CTX_new()) == NULL) {
		snprintf(err, errsz, "session id context: out of memory");
		return -1;
	}
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    digest_field(md, label, sizeof(label) - 1) == 0 &&
	    digest_field(md, base, baselen) == 0 &&
	    digest_field(md, &mode, sizeof(mode)) == 0 &&
	    digest_field(md, ca ? c->tls_client_ca : NULL,
	    ca ? c->tls_client_ca_len : 0) == 0 &&
	    digest_field(md, ciphers, strlen(ciphers)) == 0 &&
	    EVP_DigestFinal_ex(md, sid, &len) == 1 && len == sizeof(sid);
	EVP_MD_CTX_free(md);
	if (!ok) {
		snprintf(err, errsz, "session id context: SHA-256 failed");
		return -1;
	}
	if (tls_config_set_session_id(cfg, sid, sizeof(sid)) == -1) {
		snprintf(err, errsz, "session id context: %s",
		    tls_config_error(cfg));
		return -1;
	}
	return 0;
}

/*
 * The base of the session id context with tls-ticket-key-file (see
 * set_session_id): every host sharing the file must have the same one,
 * or none would resume another's sessions. A fixed value, not one
 * derived from the keys: after a rotation, tickets of the keys still in
 * the file resume.
 */
static const uint8_t file_session_id[] = "popsd tls-ticket-key-file";

bool
tlsconf_keys_from_file(const struct conf *c)
{
	return c->tls_session_lifetime > 0 && c->tls_ticket_keys.n > 0;
}

/*
 * set_file_keys: the file's keys, last line first: libtls encrypts with
 * the key added last, so the file's first key encrypts and the others
 * decrypt (checked by tests/scenario/test_ticket_keys.py).
 */
static int
set_file_keys(struct tls_config *cfg, const struct conf *c)
{
	const struct ticket_key_set *ks = &c->tls_ticket_keys;
	int i;

	for (i = ks->n - 1; i >= 0; i--)
		/* libtls copies the key; its prototype is not const. */
		if (tls_config_add_ticket_key(cfg, ks->rev[i],
		    (unsigned char *)ks->key[i], TICKET_KEY_SIZE) == -1)
			return -1;
	return 0;
}

/*
 * set_resumption: session lifetime, then the session id context (see
 * set_session_id) and the keys: the file's (tls-ticket-key-file), or
 * every key of tk oldest first (libtls encrypts with the last added and
 * decrypts with any of its four).
 */
static int
set_resumption(struct tls_config *cfg, const struct conf *c,
    struct ticket_keys *tk, char *err, size_t errsz)
{
	int i;

	/* Made at start even while resumption is off or the keys are the
	 * file's: workers are forked with it, and must all have the same
	 * one whenever popsd's own keys are used. */
	if (!tk->have_session_id) {
		if (fill_random(tk->session_id, sizeof(tk->session_id)) == -1 ||
		    fill_random(&tk->last_rev, sizeof(tk->last_rev)) == -1) {
			snprintf(err, errsz, "getrandom: %s", strerror(errno));
			return -1;
		}
		tk->have_session_id = true;
	}
	if (c->tls_session_lifetime == 0)
		return 0;
	if (tls_config_set_session_lifetime(cfg, c->tls_session_lifetime) == -1)
		goto fail;
	if (tlsconf_keys_from_file(c)) {
		if (set_session_id(cfg, c, file_session_id,
		    sizeof(file_session_id) - 1, err, errsz) == -1)
			return -1;
		if (set_file_keys(cfg, c) == -1)
			goto fail;
		return 0;
	}
	if (tk->n == 0 && new_key(tk, err, errsz) == -1)
		return -1;
	if (set_session_id(cfg, c, tk->session_id, sizeof(tk->session_id),
	    err, errsz) == -1)
		return -1;
	for (i = 0; i < tk->n; i++)
		if (tls_config_add_ticket_key(cfg, tk->rev[i], tk->key[i],
		    sizeof(tk->key[i])) == -1)
			goto fail;
	return 0;
fail:
	snprintf(err, errsz, "session resumption: %s", tls_config_error(cfg));
	return -1;
}

/*
 * blame_keypair: libtls reads keys only in tls_configure(), and its error
 * ("failed to read private key") does not say which pair. On that path
 * only, configure each pair alone to name the first one that fails.
 * Returns 0 if one was found and described in err.
 */
static int
blame_keypair(const struct conf *c, char *err, size_t errsz)
{
	const struct conf_keypair *kp;
	struct tls_config *cfg;
	struct tls *ctx;
	int i, found = -1;

	for (i = 0; i < c->nkeypairs && found == -1; i++) {
		kp = &c->keypairs[i];
		if ((cfg = tls_config_new()) == NULL)
			break;
		if ((ctx = tls_server()) != NULL &&
		    (tls_config_set_keypair_ocsp_mem(cfg, kp->cert, kp->cert_len,
		    kp->key, kp->key_len, kp->ocsp, kp->ocsp_len) == -1 ||
		    tls_configure(ctx, cfg) == -1)) {
			snprintf(err, errsz, "certificate %s / key %s: %s",
			    kp->cert_path, kp->key_path, tls_error(ctx) ?
			    tls_error(ctx) : tls_config_error(cfg));
			found = 0;
		}
		tls_free(ctx);
		tls_config_clear_keys(cfg);
		tls_config_free(cfg);
	}
	return found;
}

static struct tls *
server_ctx(const struct conf *c, struct tls_config *cfg,
    struct ticket_keys *tk, char *err, size_t errsz)
{
	struct tls *ctx = NULL;

	if (set_policy(cfg, c, err, errsz) == -1 ||
	    add_keypairs(cfg, c, err, errsz) == -1 ||
	    set_resumption(cfg, c, tk, err, errsz) == -1)
		goto done;
	if ((ctx = tls_server()) == NULL) {
		snprintf(err, errsz, "tls_server: out of memory");
		goto done;
	}
	if (tls_configure(ctx, cfg) == -1) {
		if (blame_keypair(c, err, errsz) == -1)
			snprintf(err, errsz, "TLS setup: %s", tls_error(ctx));
		tls_free(ctx);
		ctx = NULL;
	}
done:
	/* The context holds its own copy; do not leave another in memory. */
	tls_config_clear_keys(cfg);
	return ctx;
}

/*
 * scrub_ticket_keys: libtls keeps its copy of the ticket keys in the
 * config, and tls_config_free() frees it without wiping. Its four slots
 * shift by one per key added, so four throwaway keys (zeros, under names
 * not in use: a name in use is refused, and at most four are) overwrite
 * every real one first.
 */
static void
scrub_ticket_keys(struct tls_config *cfg)
{
	static uint8_t zero[TICKET_KEY_SIZE];
	uint32_t rev = UINT32_MAX;
	int added = 0, tries;

	for (tries = 0; tries < 2 * TICKET_KEYS && added < TICKET_KEYS; tries++)
		if (tls_config_add_ticket_key(cfg, rev--, zero,
		    sizeof(zero)) == 0)
			added++;
}

struct tls_server *
tlsconf_server(const struct conf *c, struct ticket_keys *tk, char *err,
    size_t errsz)
{
	struct tls_server *ts;

	err[0] = '\0';
	if ((ts = calloc(1, sizeof(*ts))) == NULL ||
	    (ts->cfg = tls_config_new()) == NULL) {
		snprintf(err, errsz, "out of memory");
		free(ts);
		return NULL;
	}
	if ((ts->ctx = server_ctx(c, ts->cfg, tk, err, errsz)) == NULL) {
		if (err[0] == '\0')
			snprintf(err, errsz, "TLS setup: %s",
			    tls_config_error(ts->cfg));
		scrub_ticket_keys(ts->cfg);
		tls_config_free(ts->cfg);
		free(ts);
		return NULL;
	}
	ts->refs = 1;
	return ts;
}

struct tls_server *
tls_server_ref(struct tls_server *ts)
{
	ts->refs++;
	return ts;
}

void
tls_server_unref(struct tls_server *ts)
{
	if (ts == NULL || --ts->refs > 0)
		return;
	tls_free(ts->ctx);
	scrub_ticket_keys(ts->cfg);
	tls_config_free(ts->cfg);
	free(ts);
}

int
tlsconf_rotate(struct ticket_keys *tk, struct tls_server *ts, char *err,
    size_t errsz)
{
	struct ticket_keys saved = *tk;
	int last;

	if (new_key(tk, err, errsz) == -1)
		goto fail;
	last = tk->n - 1;
	if (ts != NULL && tls_config_add_ticket_key(ts->cfg, tk->rev[last],
	    tk->key[last], sizeof(tk->key[last])) == -1) {
		snprintf(err, errsz, "tls_config_add_ticket_key: %s",
		    tls_config_error(ts->cfg));
		*tk = saved;
		goto fail;
	}
	explicit_bzero(&saved, sizeof(saved));
	return 0;
fail:
	explicit_bzero(&saved, sizeof(saved));
	return -1;
}

double
tlsconf_rotate_interval(const struct conf *c)
{
	/* Four keys, one new per quarter: a key encrypts for a quarter of
	 * the lifetime and is gone when the lifetime has passed, so a ticket
	 * resumes for at least 3/4 of it (libtls itself drops keys older
	 * than the lifetime). */
	return c->tls_session_lifetime / (double)TICKET_KEYS;
}

void
tlsconf_wipe_keys(struct ticket_keys *tk)
{
	explicit_bzero(tk, sizeof(*tk));
}

void
tlsconf_forget_keys(struct ticket_keys *tk)
{
	explicit_bzero(tk->key, sizeof(tk->key));
	explicit_bzero(tk->rev, sizeof(tk->rev));
	tk->n = 0;
}

/* fact: sanitized s, or "-"; spaces too become '?' when bare is set,
 * for a value logged without quotes. */
static void
fact(char *dst, size_t dstsz, const char *s, bool bare)
{
	char *p;

	if (s == NULL || *s == '\0')
		s = "-";
	log_sanitize(dst, dstsz, s, strlen(s));
	if (bare)
		for (p = dst; *p != '\0'; p++)
			if (*p == ' ')
				*p = '?';
}

void
tlsconf_conn_facts(struct tls *t, char *sni, size_t snisz, char *subject,
    size_t subjectsz, bool *resumed)
{
	fact(sni, snisz, t ? tls_conn_servername(t) : NULL, true);
	/* libtls verified it (optional or required) before the handshake
	 * completed; a certificate that did not verify ended the session. */
	fact(subject, subjectsz, t && tls_peer_cert_provided(t) ?
	    tls_peer_cert_subject(t) : NULL, false);
	*resumed = t != NULL && tls_conn_session_resumed(t) == 1;
}

/*
 * Keys shared with workers: one anonymous shared page, written by the
 * master only (tlsconf_publish) and read by the workers (tlsconf_sync).
 * gen counts the keys ever published; key number g (from 1) sits in slot
 * (g - 1) % TICKET_KEYS. The master writes the slot, then releases gen;
 * a worker acquires gen, then reads. Rotation is every quarter of the
 * session lifetime and workers look every minute at most, so a slot is
 * never rewritten while a worker copies it.
 */
struct shared_keys {
	_Atomic unsigned	gen;
	uint8_t			key[TICKET_KEYS][TICKET_KEY_SIZE];
	uint32_t		rev[TICKET_KEYS];
};

static struct shared_keys	*shared;
static unsigned			 synced;	/* gen this worker has */

int
tlsconf_share_keys(const struct ticket_keys *tk)
{
	int i;

	shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		shared = NULL;
		return -1;
	}
	for (i = 0; i < tk->n; i++) {
		memcpy(shared->key[i], tk->key[i], TICKET_KEY_SIZE);
		shared->rev[i] = tk->rev[i];
	}
	atomic_store_explicit(&shared->gen, (unsigned)tk->n,
	    memory_order_release);
	synced = (unsigned)tk->n;
	return 0;
}

void
tlsconf_publish(const struct ticket_keys *tk)
{
	unsigned g;

	if (shared == NULL || tk->n == 0)
		return;
	g = atomic_load_explicit(&shared->gen, memory_order_relaxed) + 1;
	memcpy(shared->key[(g - 1) % TICKET_KEYS], tk->key[tk->n - 1],
	    TICKET_KEY_SIZE);
	shared->rev[(g - 1) % TICKET_KEYS] = tk->rev[tk->n - 1];
	atomic_store_explicit(&shared->gen, g, memory_order_release);
	synced = g;
}

int
tlsconf_sync(struct ticket_keys *tk, struct tls_server *ts, char *err,
    size_t errsz)
{
	unsigned g, gen;
	int slot;

	if (shared == NULL)
		return 0;
	gen = atomic_load_explicit(&shared->gen, memory_order_acquire);
	if (gen - synced > TICKET_KEYS)
		synced = gen - TICKET_KEYS;	/* missed some: the last four */
	for (g = synced + 1; g <= gen; g++) {
		slot = (int)((g - 1) % TICKET_KEYS);
		append_key(tk, shared->key[slot], shared->rev[slot]);
		if (ts != NULL && tls_config_add_ticket_key(ts->cfg,
		    shared->rev[slot], shared->key[slot], TICKET_KEY_SIZE) == -1) {
			snprintf(err, errsz, "tls_config_add_ticket_key: %s",
			    tls_config_error(ts->cfg));
			return -1;
		}
		synced = g;
	}
	return 0;
}

struct tls_config *
tlsconf_client(const struct conf *c, char *err, size_t errsz)
{
	struct tls_config *cfg;
	const char *ca = tls_default_ca_cert_file();

	if ((cfg = tls_config_new()) == NULL) {
		snprintf(err, errsz, "tls_config_new failed");
		return NULL;
	}
	/* Never below TLS 1.2, whatever tls-protocols says for clients. */
	if (tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 |
	    TLS_PROTOCOL_TLSv1_3) == -1)
		goto fail;
	if (c->upstream_ca != NULL) {
		if (tls_config_set_ca_mem(cfg, c->upstream_ca,
		    c->upstream_ca_len) == -1)
			goto fail;
	} else if (tls_config_set_ca_file(cfg, ca) == -1)
		goto fail;
	return cfg;
fail:
	snprintf(err, errsz, "upstream TLS (CA %s): %s", c->upstream_ca ?
	    c->upstream_ca_path : ca, tls_config_error(cfg));
	tls_config_free(cfg);
	return NULL;
}
