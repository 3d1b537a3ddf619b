/* tlsconf.c — turn certificates and keys in memory into a server context. */
#include "tlsconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <tls.h>

#include "conf.h"

static int
add_keypairs(struct tls_config *cfg, const struct conf *c, char *err,
    size_t errsz)
{
	const struct conf_keypair *kp;
	int i, rv;

	for (i = 0; i < c->nkeypairs; i++) {
		kp = &c->keypairs[i];
		if (i == 0)
			rv = tls_config_set_keypair_mem(cfg, kp->cert,
			    kp->cert_len, kp->key, kp->key_len);
		else
			rv = tls_config_add_keypair_mem(cfg, kp->cert,
			    kp->cert_len, kp->key, kp->key_len);
		if (rv == -1) {
			snprintf(err, errsz, "certificate %s / key %s: %s",
			    kp->cert_path, kp->key_path, tls_config_error(cfg));
			return -1;
		}
	}
	return 0;
}

static struct tls *
server_ctx(const struct conf *c, char *err, size_t errsz)
{
	struct tls_config *cfg;
	struct tls *ctx = NULL;

	err[0] = '\0';
	if ((cfg = tls_config_new()) == NULL) {
		snprintf(err, errsz, "tls_config_new: out of memory");
		return NULL;
	}
	if (tls_config_set_protocols(cfg, TLS_PROTOCOLS_DEFAULT) == -1 ||
	    add_keypairs(cfg, c, err, errsz) == -1)
		goto fail;
	if ((ctx = tls_server()) == NULL) {
		snprintf(err, errsz, "tls_server: out of memory");
		goto fail;
	}
	if (tls_configure(ctx, cfg) == -1) {
		snprintf(err, errsz, "TLS setup: %s", tls_error(ctx));
		tls_free(ctx);
		ctx = NULL;
		goto fail;
	}
fail:
	if (ctx == NULL && err[0] == '\0')
		snprintf(err, errsz, "TLS setup: %s", tls_config_error(cfg));
	/* The context holds its own copy; do not leave another in memory. */
	tls_config_clear_keys(cfg);
	tls_config_free(cfg);
	return ctx;
}

struct tls_server *
tlsconf_server(const struct conf *c, char *err, size_t errsz)
{
	struct tls_server *ts;

	if ((ts = calloc(1, sizeof(*ts))) == NULL) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	if ((ts->ctx = server_ctx(c, err, errsz)) == NULL) {
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
	free(ts);
}
