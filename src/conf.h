/*
 * conf.h — the parsed configuration (see popsd.conf.5).
 *
 * conf_load() turns a file into an immutable struct conf: every address
 * resolved, every certificate and key read into memory, every error
 * reported as "file:line: what is wrong". The running daemon swaps whole
 * conf objects on reload; nothing edits one after it is loaded.
 */
#ifndef POPSD_CONF_H
#define POPSD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ticketkeys.h"
struct tls_config;

#define CONF_MAX_LISTEN		16
#define CONF_MAX_KEYPAIRS	16
#define CONF_MAX_CIDR		64
#define CONF_MAX_BACKEND_ADDRS	8

enum listen_kind {
	LISTEN_POP3S,		/* implicit TLS (RFC 8314), port 995 */
	LISTEN_POP3,		/* plaintext with STLS (RFC 2595), port 110 */
	LISTEN_TLS,		/* plain TLS wrap, no POP3 mediation (POP2...) */
	LISTEN_OUTBOUND,	/* plaintext clients, verified TLS upstream */
};

/* listen_kind_name: "pop3s", "pop3", "tls" or "outbound". */
const char *listen_kind_name(enum listen_kind kind);

struct conf_listen {
	enum listen_kind	kind;
	struct sockaddr_storage	addr;	/* "*" is [::] dual-stack */
	socklen_t		addrlen;
	bool			wildcard; /* written as "*": may fall back to 0.0.0.0 */
	char			text[80]; /* as written, for logs */
	int			line;
};

enum backend_kind {
	BACKEND_TCP,
	BACKEND_UNIX,
	BACKEND_EXEC,		/* inetd-style daemon started per session */
};

#define CONF_MAX_EXEC_ARGS	32

struct conf_backend {
	enum backend_kind	kind;
	/* BACKEND_TCP: every address HOST resolved to, tried in order. */
	struct sockaddr_storage	addrs[CONF_MAX_BACKEND_ADDRS];
	socklen_t		addrlens[CONF_MAX_BACKEND_ADDRS];
	int			naddrs;
	/* BACKEND_UNIX: sockaddr_un in addrs[0]. */
	/* BACKEND_EXEC: absolute path and arguments, NULL-terminated. */
	char			*argv[CONF_MAX_EXEC_ARGS + 1];
	/* backend-proxy-protocol: 0 (off), 1 or 2. */
	int			proxy_version;
	char			text[128]; /* as written, for logs */
};

#define CONF_MAX_UPSTREAM_ALLOW	64

/* "upstream HOST:PORT pop3s|stls": the fixed upstream of outbound
 * listeners. */
struct conf_upstream {
	struct conf_backend	target;	/* BACKEND_TCP, resolved at load */
	char			host[256]; /* as written: SNI and name check */
	bool			implicit_tls;	/* pop3s; else STLS required */
};

struct conf_keypair {
	char	*cert_path;
	char	*key_path;
	uint8_t	*cert;		/* PEM bytes, read at load time */
	size_t	 cert_len;
	uint8_t	*key;		/* PEM bytes; wiped with explicit_bzero on free */
	size_t	 key_len;
	char	*ocsp_path;	/* "ocsp-staple" after the pair, or NULL */
	uint8_t	*ocsp;		/* DER OCSP response, read at load time */
	size_t	 ocsp_len;
};

enum client_cert_mode {
	CLIENT_CERT_NONE,	/* no certificate asked for (default) */
	CLIENT_CERT_OPTIONAL,	/* asked for; if sent, it must verify */
	CLIENT_CERT_REQUIRED,	/* no verified certificate, no session */
};

/* Default max-sessions-per-ip: a tenth of max-sessions, so that one
 * address cannot take every place, and never below CONF_PER_IP_MIN, so
 * that a small max-sessions does not turn into a per-address limit that
 * refuses a household's second mail client. See popsd.conf.5. */
#define CONF_PER_IP_FRACTION		10
#define CONF_PER_IP_MIN			10
/* A site gets at least a /64 (RFC 6177): its hosts pick addresses in it
 * at will, so one /64 is one client for max-sessions-per-ip. */
#define CONF_PER_IP_IPV6_PREFIX_DEFAULT	64

/* Defaults of the TLS policy (see popsd.conf.5 for why). */
#define CONF_TLS_PROTOCOLS_DEFAULT	"tlsv1.2,tlsv1.3"
#define CONF_SESSION_LIFETIME_DEFAULT	7200	/* seconds: 2 hours */

struct conf_cidr {
	int	family;		/* AF_INET or AF_INET6 */
	uint8_t	addr[16];	/* network address, host bits cleared */
	int	prefix;		/* 0..32 or 0..128 */
};

struct conf {
	char			*path;
	int			 refs;	/* owners: the daemon and each session
					 * started under it; see conf_ref() */

	struct conf_listen	listens[CONF_MAX_LISTEN];
	int			nlistens;

	struct conf_backend	backend;
	bool			have_backend;

	struct conf_keypair	keypairs[CONF_MAX_KEYPAIRS]; /* [0] is the default */
	int			nkeypairs;

	/* Timeouts, in seconds. */
	double	timeout_connect;	/* backend connect: default 10 */
	double	timeout_handshake;	/* TLS handshake: default 30 */
	double	timeout_login;		/* idle before login: default 600 */
	double	timeout_idle;		/* idle after login: default 600 (RFC 1939 §3: >= 10 min) */
	double	timeout_drain;		/* finishing after EOF or SIGTERM: default 30 */

	int	max_sessions;		/* default 1000 */
	int	workers;		/* processes serving; default auto:
					 * one per CPU (1 with backend exec) */
	int	workers_configured;	/* as written: 0 for auto */
	int	max_sessions_per_ip;	/* 0: no per-address cap; default
					 * conf_default_per_ip(max_sessions) */
	int	per_ip_ipv6_prefix;	/* IPv6 clients counted per /N: 64 */

	/* metrics-listen: the Prometheus scrape endpoint (off by default). */
	struct conf_listen	metrics_listen;
	bool			have_metrics;

	/* Authorization-phase policy (STLS issue). */
	bool			require_tls;	/* default true */
	bool			require_tls_warn; /* "warn": require_tls is
						 * false; log plaintext logins */
	struct conf_cidr	plaintext_allow[CONF_MAX_CIDR];
	int			nplaintext_allow;
	/* accept-proxy-protocol: peers whose PROXY header is believed. */
	struct conf_cidr	accept_proxy[CONF_MAX_CIDR];
	int			naccept_proxy;
	int			max_auth_errors;	/* default 3 */
	int			sasl_line_max;		/* default 8192 */

	/* TLS policy. The strings are passed to libtls as written and were
	 * checked by it at load time; NULL means libtls' default. */
	uint32_t		tls_protocols;	/* TLS_PROTOCOL_* bits */
	char			*tls_protocols_text;
	char			*tls_ciphers;
	char			*tls_curves;
	int			 tls_session_lifetime;	/* seconds; 0: off */
	/* tls-ticket-key-file: its path, or NULL (popsd makes and rotates
	 * its own keys), and its keys, read at load time; wiped with c. */
	char			*tls_ticket_key_path;
	struct ticket_key_set	 tls_ticket_keys;
	enum client_cert_mode	 tls_client_cert;
	char			*tls_client_ca_path;
	uint8_t			*tls_client_ca;	/* PEM bytes */
	size_t			 tls_client_ca_len;

	/* Outbound listeners: a fixed upstream, or routed by "USER
	 * name@host" to hosts upstream-allow matches (route.h); never both. */
	bool			 have_upstream;
	struct conf_upstream	 upstream;
	char			*upstream_allow[CONF_MAX_UPSTREAM_ALLOW];
	int			 nupstream_allow;
	char			*upstream_ca_path;	/* NULL: system store */
	uint8_t			*upstream_ca;		/* PEM bytes */
	size_t			 upstream_ca_len;
	/* The libtls client config for upstreams, made by the caller of
	 * conf_load (tlsconf_client) and freed with the conf, so that a
	 * session keeps the one it started with. NULL without outbound. */
	struct tls_config	*upstream_tls;

	/* Privilege drop (systemd issue); NULL when not set. */
	char	*user;
	char	*group;
	char	*chroot_dir;
};

/* conf_has_kind: does c have a listen line of kind k? */
bool conf_has_kind(const struct conf *c, enum listen_kind k);

/* conf_defaults: fill c with the documented defaults and nothing else. */
void conf_defaults(struct conf *c);

/*
 * conf_load: parse the file at path into a newly allocated conf (refs 1).
 * On success returns it; on failure returns NULL and writes one message
 * ("path:line: what is wrong", or "path: ..." for whole-file problems such
 * as a missing backend) into err (size errsz). Never exits, never crashes
 * on any input. Checks: keywords, argument counts, addresses, that
 * certificate, key, OCSP, CA and ticket key files are readable, that each
 * key file (and the ticket key file) is not accessible to group or others,
 * that the ticket key file holds valid keys, and that libtls accepts the
 * tls-protocols, tls-ciphers and tls-curves values (so -n catches them).
 * The caller owns the result (conf_free).
 */
struct conf *conf_load(const char *path, char *err, size_t errsz);

/* conf_free: free c and everything it owns, wiping key material. NULL ok. */
void conf_free(struct conf *c);

/* conf_ref / conf_unref: a session keeps the conf it started with alive
 * across reloads; the last conf_unref frees it. conf_load returns refs=1. */
static inline struct conf *conf_ref(struct conf *c) { c->refs++; return c; }
static inline void conf_unref(struct conf *c) { if (c != NULL && --c->refs == 0) conf_free(c); }

/* conf_default_per_ip: max-sessions-per-ip when the file does not set
 * it, for a given max-sessions (>= 1). */
int conf_default_per_ip(int max_sessions);

/* conf_cidr_match: does the address sa belong to any of n networks?
 * IPv4-mapped IPv6 addresses match IPv4 networks. */
bool conf_cidr_match(const struct conf_cidr *nets, int n,
    const struct sockaddr *sa);

/* conf_parse_duration: "30", "30s", "10m", "1h" → seconds in *out; 0 or -1. */
int conf_parse_duration(const char *s, double *out);

#endif
