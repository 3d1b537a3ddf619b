/*
 * tlsconf.h — libtls server contexts built from a struct conf.
 *
 * A server context is reference counted: the daemon holds the current one,
 * and every session that accepted TLS with it holds it until the session
 * ends. libtls' SNI callback dereferences the server context during a
 * handshake, so a context replaced by a reload must outlive the sessions
 * still using it.
 */
#ifndef POPSD_TLSCONF_H
#define POPSD_TLSCONF_H

#include <stddef.h>

struct conf;
struct tls;

struct tls_server {
	struct tls	*ctx;
	int		 refs;
};

/*
 * tlsconf_server: a configured server context (refs 1) for c's certificate
 * and key pairs (the first is the default; the others are chosen by SNI),
 * TLS 1.2 and 1.3. Key material is wiped from the intermediate tls_config
 * once the context holds it. Returns NULL with the reason in err.
 */
struct tls_server *tlsconf_server(const struct conf *c, char *err, size_t errsz);

/* tls_server_ref / tls_server_unref: the last unref frees. NULL ok. */
struct tls_server *tls_server_ref(struct tls_server *ts);
void	tls_server_unref(struct tls_server *ts);

#endif
