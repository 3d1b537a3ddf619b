/*
 * conf.c — the directive parser behind conf_load() (see popsd.conf.5).
 *
 * The file is read one bounded line at a time, split into arguments in
 * place, and each line is handed to the handler of its keyword. The first
 * error stops the parse: it is written once into the caller's buffer and
 * everything built so far goes through conf_free().
 */
#include "conf.h"

#include "route.h"

#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tls.h>
#include <unistd.h>

#include "log.h"

#define CONF_LINE_MAX	4096		/* bytes, without the line ending */
#define CONF_ARGS_MAX	(CONF_MAX_CIDR + 2)
#define CONF_FILE_MAX	(1024 * 1024)	/* certificate and key files */
#define DAY_SECONDS	86400.0

struct parser {
	const char	*path;
	int		 line;		/* 0 while no line is being parsed */
	char		*err;
	size_t		 errsz;
	struct conf	*c;
	int		 backend_line;
	int		 proxy_line;	/* last backend-proxy-protocol */
	int		 workers_line;	/* last workers */
	bool		 per_ip_set;	/* max-sessions-per-ip written */
	int		 cert_line;	/* certificate waiting for its key, or 0 */
	int		 client_cert_line; /* tls-client-cert, or 0 */
	int		 client_ca_line;   /* tls-client-ca, or 0 */
	int		 ticket_key_line;  /* tls-ticket-key-file, or 0 */
	int		 lifetime_line;	   /* last tls-session-lifetime */
	int		 upstream_line;	   /* upstream, or 0 */
	int		 allow_line;	   /* first upstream-allow, or 0 */
};

struct directive {
	const char	*name;
	int		 minargs;	/* arguments after the keyword */
	int		 maxargs;
	const char	*usage;
	int		(*handler)(struct parser *, int, char **);
};

static void	perr(struct parser *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

const char *
listen_kind_name(enum listen_kind kind)
{
	switch (kind) {
	case LISTEN_POP3S:
		return "pop3s";
	case LISTEN_POP3:
		return "pop3";
	case LISTEN_TLS:
		return "tls";
	case LISTEN_OUTBOUND:
		return "outbound";
	}
	return "?";
}

/* Every failure ends here: "path:line: msg", or "path: msg" outside a line. */
static void
perr(struct parser *p, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->err == NULL || p->errsz == 0)
		return;
	if (p->line > 0)
		snprintf(p->err, p->errsz, "%s:%d: %s", p->path, p->line, msg);
	else
		snprintf(p->err, p->errsz, "%s: %s", p->path, msg);
}

/* Text from the file, made safe to quote in an error message. */
static const char *
clean(char *dst, size_t dstsz, const char *s)
{
	return log_sanitize(dst, dstsz, s, strlen(s));
}

/* copy: bounded copy that always terminates; truncates silently. */
static void
copy(char *dst, size_t dstsz, const char *src)
{
	size_t n = strlen(src);

	if (n >= dstsz)
		n = dstsz - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* parse_uint: all-digit decimal in [min, max]; no sign, no spaces. */
static int
parse_uint(const char *s, long min, long max, long *out)
{
	long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > max)
			return -1;
	}
	if (v < min)
		return -1;
	*out = v;
	return 0;
}

int
conf_parse_duration(const char *s, double *out)
{
	double v = 0, scale = 1;
	const char *d;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (*s - '0');
	if (*s == '.') {
		/* A digit must follow: "5." is more likely a typo than 5. */
		if (s[1] < '0' || s[1] > '9')
			return -1;
		for (d = s + 1; *d >= '0' && *d <= '9'; d++) {
			scale /= 10;
			v += (*d - '0') * scale;
		}
		s = d;
	}
	switch (*s) {
	case 'h':
		v *= 60;
		/* FALLTHROUGH */
	case 'm':
		v *= 60;
		/* FALLTHROUGH */
	case 's':
		s++;
		break;
	}
	if (*s != '\0' || !(v > 0) || v > DAY_SECONDS)
		return -1;
	*out = v;
	return 0;
}

/*
 * split_hostport: "h:p", "[h]:p" → host (brackets removed) and port.
 * The port must be 1..65535. An unbracketed host may not contain ':',
 * so "::1:995" is refused rather than guessed at.
 */
static int
split_hostport(const char *s, char *host, size_t hostsz, bool *bracketed,
    in_port_t *port)
{
	const char *colon, *end;
	long v;
	size_t n;

	*bracketed = s[0] == '[';
	if (*bracketed) {
		if ((end = strchr(s, ']')) == NULL || end[1] != ':')
			return -1;
		s++;
		colon = end + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return -1;
		end = colon;
	}
	n = (size_t)(end - s);
	if (n == 0 || n >= hostsz ||
	    (!*bracketed && memchr(s, ':', n) != NULL))
		return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	if (parse_uint(colon + 1, 1, 65535, &v) == -1)
		return -1;
	*port = htons((in_port_t)v);
	return 0;
}

/* Fill a sockaddr for a numeric address; 0, or -1 if it is not one. */
static int
numeric_addr(const char *host, bool v6, in_port_t port,
    struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (v6) {
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = port;
		*len = sizeof(*sin6);
	} else {
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		*len = sizeof(*sin);
	}
	return 0;
}

/* listen_addr: "*:p", "a.b.c.d:p" or "[v6]:p" into l; 0 or -1. */
static int
listen_addr(const char *s, struct conf_listen *l)
{
	char host[INET6_ADDRSTRLEN];
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->addr;
	in_port_t port;
	bool br;

	if (split_hostport(s, host, sizeof(host), &br, &port) == -1)
		return -1;
	if (!br && strcmp(host, "*") == 0) {
		memset(&l->addr, 0, sizeof(l->addr));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		sin6->sin6_port = port;
		l->addrlen = sizeof(*sin6);
		l->wildcard = true;
		return 0;
	}
	l->wildcard = false;
	return numeric_addr(host, br, port, &l->addr, &l->addrlen);
}

static int
do_listen(struct parser *p, int argc, char **argv)
{
	struct conf *c = p->c;
	struct conf_listen *l;
	char q[128];
	int i;

	(void)argc;
	if (c->nlistens == CONF_MAX_LISTEN) {
		perr(p, "too many listen directives (at most %d)",
		    CONF_MAX_LISTEN);
		return -1;
	}
	l = &c->listens[c->nlistens];
	if (strcmp(argv[0], "pop3s") == 0)
		l->kind = LISTEN_POP3S;
	else if (strcmp(argv[0], "pop3") == 0)
		l->kind = LISTEN_POP3;
	else if (strcmp(argv[0], "tls") == 0)
		l->kind = LISTEN_TLS;
	else if (strcmp(argv[0], "outbound") == 0)
		l->kind = LISTEN_OUTBOUND;
	else {
		perr(p, "listen: unknown kind \"%s\" (expected pop3s, pop3, "
		    "tls or outbound)",
		    clean(q, sizeof(q), argv[0]));
		return -1;
	}
	if (listen_addr(argv[1], l) == -1) {
		perr(p, "listen: bad address \"%s\" (expected IPV4:PORT, "
		    "[IPV6]:PORT or *:PORT with a numeric address)",
		    clean(q, sizeof(q), argv[1]));
		return -1;
	}
	for (i = 0; i < c->nlistens; i++) {
		if (c->listens[i].addrlen == l->addrlen &&
		    memcmp(&c->listens[i].addr, &l->addr, l->addrlen) == 0) {
			perr(p, "listen: duplicate address \"%s\" "
			    "(already on line %d)", clean(q, sizeof(q),
			    argv[1]), c->listens[i].line);
			return -1;
		}
	}
	copy(l->text, sizeof(l->text), argv[1]);
	l->line = p->line;
	c->nlistens++;
	return 0;
}

static int
backend_unix(struct parser *p, const char *path)
{
	struct conf_backend *b = &p->c->backend;
	struct sockaddr_un *sunp = (struct sockaddr_un *)&b->addrs[0];
	char q[128];

	if (path[0] != '/' || strlen(path) >= sizeof(sunp->sun_path)) {
		perr(p, "backend: unix socket path \"%s\" must be absolute "
		    "and shorter than %zu bytes", clean(q, sizeof(q), path),
		    sizeof(sunp->sun_path));
		return -1;
	}
	memset(sunp, 0, sizeof(*sunp));
	sunp->sun_family = AF_UNIX;
	memcpy(sunp->sun_path, path, strlen(path) + 1);
	b->addrlens[0] = sizeof(*sunp);
	b->naddrs = 1;
	b->kind = BACKEND_UNIX;
	return 0;
}

/*
 * hostname_ok: only name characters, so "*" or a stray space is refused
 * here rather than passed to the resolver. All digits and dots is a
 * mistyped IPv4 address ("1.2.3"), not a name to look up.
 */
static bool
hostname_ok(const char *s)
{
	size_t n = strlen(s);

	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789.-_") == n && strspn(s, "0123456789.") != n;
}

/* Resolve a host name now: the event loop must never block on DNS. */
static int
backend_resolve(struct parser *p, struct conf_backend *b, const char *what,
    const char *host, in_port_t port)
{
	struct addrinfo hints, *res, *ai;
	char q[128], serv[8];
	int rv;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(serv, sizeof(serv), "%u", (unsigned)ntohs(port));
	if ((rv = getaddrinfo(host, serv, &hints, &res)) != 0) {
		perr(p, "cannot resolve %s host \"%s\": %s", what,
		    clean(q, sizeof(q), host), rv == EAI_SYSTEM ?
		    strerror(errno) : gai_strerror(rv));
		return -1;
	}
	b->naddrs = 0;
	for (ai = res; ai != NULL && b->naddrs < CONF_MAX_BACKEND_ADDRS;
	    ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(b->addrs[0]))
			continue;
		memset(&b->addrs[b->naddrs], 0, sizeof(b->addrs[0]));
		memcpy(&b->addrs[b->naddrs], ai->ai_addr, ai->ai_addrlen);
		b->addrlens[b->naddrs++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (b->naddrs == 0) {
		perr(p, "cannot resolve %s host \"%s\": no IPv4 or IPv6 "
		    "address", what, clean(q, sizeof(q), host));
		return -1;
	}
	return 0;
}

static int
backend_tcp(struct parser *p, const char *arg)
{
	struct conf_backend *b = &p->c->backend;
	char host[256], q[128];
	in_port_t port;
	bool br;

	if (split_hostport(arg, host, sizeof(host), &br, &port) == -1)
		goto bad;
	b->kind = BACKEND_TCP;
	if (numeric_addr(host, br, port, &b->addrs[0], &b->addrlens[0]) == 0) {
		b->naddrs = 1;
		return 0;
	}
	if (br || !hostname_ok(host))
		goto bad;
	return backend_resolve(p, b, "backend", host, port);
bad:
	perr(p, "backend: bad address \"%s\" (expected HOST:PORT, "
	    "[IPV6]:PORT or unix:/PATH)", clean(q, sizeof(q), arg));
	return -1;
}

/*
 * backend_exec: "exec /path/daemon args...": no shell is involved, so the
 * path must be absolute and executable now (checked again by execve).
 */
static int
backend_exec(struct parser *p, int argc, char **argv)
{
	struct conf_backend *b = &p->c->backend;
	char q[128];
	int i;

	if (argc < 1 || argc > CONF_MAX_EXEC_ARGS) {
		perr(p, "backend exec: expected \"backend exec /PATH "
		    "[ARGUMENTS...]\" (at most %d words)", CONF_MAX_EXEC_ARGS);
		return -1;
	}
	if (argv[0][0] != '/' || access(argv[0], X_OK) == -1) {
		perr(p, "backend exec: \"%s\" is not an absolute path to an "
		    "executable file%s%s", clean(q, sizeof(q), argv[0]),
		    argv[0][0] == '/' ? ": " : "",
		    argv[0][0] == '/' ? strerror(errno) : "");
		return -1;
	}
	for (i = 0; i < argc; i++)
		if ((b->argv[i] = strdup(argv[i])) == NULL) {
			perr(p, "out of memory");
			return -1;
		}
	b->argv[argc] = NULL;
	b->kind = BACKEND_EXEC;
	return 0;
}

static int
do_backend(struct parser *p, int argc, char **argv)
{
	int rv;

	if (p->c->have_backend) {
		perr(p, "backend: only one backend is allowed (first on "
		    "line %d)", p->backend_line);
		return -1;
	}
	if (strcmp(argv[0], "exec") == 0)
		rv = backend_exec(p, argc - 1, argv + 1);
	else if (argc != 1) {
		perr(p, "backend: expected \"backend HOST:PORT|unix:/PATH|"
		    "exec /PATH [ARGUMENTS...]\"");
		return -1;
	} else if (strncmp(argv[0], "unix:", 5) == 0)
		rv = backend_unix(p, argv[0] + 5);
	else
		rv = backend_tcp(p, argv[0]);
	if (rv == -1)
		return -1;
	copy(p->c->backend.text, sizeof(p->c->backend.text),
	    p->c->backend.kind == BACKEND_EXEC ? argv[1] : argv[0]);
	p->c->have_backend = true;
	p->backend_line = p->line;
	return 0;
}

static void
wipe_free(uint8_t *mem, size_t len)
{
	if (mem == NULL)
		return;
	explicit_bzero(mem, len);
	free(mem);
}

/*
 * read_pem: read a certificate (secret false) or key (secret true) file
 * into a new buffer. The mode is checked on the open descriptor, so the
 * file checked is the file read. Key bytes are wiped on every exit.
 */
static int
read_pem(struct parser *p, const char *what, const char *path, bool secret,
    uint8_t **out, size_t *outlen)
{
	struct stat st;
	uint8_t *mem = NULL;
	size_t cap = 0, len = 0;
	ssize_t n;
	char q[256];
	int fd;

	clean(q, sizeof(q), path);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1 ||
	    fstat(fd, &st) == -1) {
		perr(p, "cannot read %s \"%s\": %s", what, q, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		perr(p, "cannot read %s \"%s\": not a regular file", what, q);
		goto fail;
	}
	if (secret && (st.st_mode & 077) != 0) {
		perr(p, "%s file \"%s\" is accessible by group or others "
		    "(mode %04o); chmod 600 it", what, q,
		    (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_size > CONF_FILE_MAX) {
		perr(p, "%s file \"%s\" is larger than %d bytes", what, q,
		    CONF_FILE_MAX);
		goto fail;
	}
	cap = (size_t)st.st_size + 1;
	if ((mem = malloc(cap)) == NULL) {
		perr(p, "%s", strerror(errno));
		goto fail;
	}
	/* A file that shrinks under us is read as it now is; growth is cut. */
	while (len < (size_t)st.st_size &&
	    (n = read(fd, mem + len, (size_t)st.st_size - len)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			perr(p, "cannot read %s \"%s\": %s", what, q,
			    strerror(errno));
			goto fail;
		}
		len += (size_t)n;
	}
	close(fd);
	mem[len] = '\0';
	*out = mem;
	*outlen = len;
	return 0;
fail:
	if (fd != -1)
		close(fd);
	wipe_free(mem, cap);
	return -1;
}

static bool
contains(const uint8_t *mem, size_t len, const char *needle)
{
	return memmem(mem, len, needle, strlen(needle)) != NULL;
}

static int
do_certificate(struct parser *p, int argc, char **argv)
{
	struct conf *c = p->c;
	struct conf_keypair *kp;
	char q[256];

	(void)argc;
	if (p->cert_line != 0) {
		p->line = p->cert_line;
		perr(p, "certificate \"%s\" has no key directive after it",
		    clean(q, sizeof(q), c->keypairs[c->nkeypairs - 1].cert_path));
		return -1;
	}
	if (c->nkeypairs == CONF_MAX_KEYPAIRS) {
		perr(p, "too many certificates (at most %d)",
		    CONF_MAX_KEYPAIRS);
		return -1;
	}
	kp = &c->keypairs[c->nkeypairs];
	if ((kp->cert_path = strdup(argv[0])) == NULL) {
		perr(p, "%s", strerror(errno));
		return -1;
	}
	/* Counted now so that conf_free() releases it on any later error. */
	c->nkeypairs++;
	if (read_pem(p, "certificate", argv[0], false, &kp->cert,
	    &kp->cert_len) == -1)
		return -1;
	if (!contains(kp->cert, kp->cert_len, "-----BEGIN CERTIFICATE-----")) {
		perr(p, "certificate \"%s\" is not a PEM certificate (no "
		    "\"-----BEGIN CERTIFICATE-----\" line)",
		    clean(q, sizeof(q), argv[0]));
		return -1;
	}
	p->cert_line = p->line;
	return 0;
}

static int
do_key(struct parser *p, int argc, char **argv)
{
	struct conf_keypair *kp;
	char q[256];

	(void)argc;
	if (p->cert_line == 0) {
		perr(p, "key: no certificate directive before it");
		return -1;
	}
	kp = &p->c->keypairs[p->c->nkeypairs - 1];
	if ((kp->key_path = strdup(argv[0])) == NULL) {
		perr(p, "%s", strerror(errno));
		return -1;
	}
	if (read_pem(p, "key", argv[0], true, &kp->key, &kp->key_len) == -1)
		return -1;
	if (!contains(kp->key, kp->key_len, "-----BEGIN") ||
	    !contains(kp->key, kp->key_len, "PRIVATE KEY-----")) {
		perr(p, "key \"%s\" is not a PEM private key (no "
		    "\"-----BEGIN ... PRIVATE KEY-----\" line)",
		    clean(q, sizeof(q), argv[0]));
		return -1;
	}
	p->cert_line = 0;
	return 0;
}

static int
do_timeout(struct parser *p, int argc, char **argv)
{
	static const char *names[] = {
		"connect", "handshake", "login", "idle", "drain",
	};
	double *fields[] = {
		&p->c->timeout_connect, &p->c->timeout_handshake,
		&p->c->timeout_login, &p->c->timeout_idle,
		&p->c->timeout_drain,
	};
	char q[128];
	size_t i;

	(void)argc;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(argv[0], names[i]) == 0)
			break;
	if (i == sizeof(names) / sizeof(names[0])) {
		perr(p, "timeout: unknown timeout \"%s\" (expected connect, "
		    "handshake, login, idle or drain)",
		    clean(q, sizeof(q), argv[0]));
		return -1;
	}
	if (conf_parse_duration(argv[1], fields[i]) == -1) {
		perr(p, "timeout: bad duration \"%s\" (expected a number "
		    "with an optional s, m or h; more than 0, at most 1 day)",
		    clean(q, sizeof(q), argv[1]));
		return -1;
	}
	return 0;
}

/* A whole number directive: keyword N with min <= N <= max. */
static int
number(struct parser *p, const char *kw, const char *arg, long min, long max,
    int *out)
{
	char q[128];
	long v;

	if (parse_uint(arg, min, max, &v) == -1) {
		perr(p, "%s: \"%s\" is not a number from %ld to %ld", kw,
		    clean(q, sizeof(q), arg), min, max);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int
do_max_sessions(struct parser *p, int argc, char **argv)
{
	(void)argc;
	return number(p, "max-sessions", argv[0], 1, 1000000,
	    &p->c->max_sessions);
}

static int
do_max_auth_errors(struct parser *p, int argc, char **argv)
{
	(void)argc;
	return number(p, "max-auth-errors", argv[0], 1, 100,
	    &p->c->max_auth_errors);
}

static int
do_sasl_line_max(struct parser *p, int argc, char **argv)
{
	(void)argc;
	return number(p, "sasl-line-max", argv[0], 256, 65536,
	    &p->c->sasl_line_max);
}

static int
do_require_tls(struct parser *p, int argc, char **argv)
{
	char q[128];

	(void)argc;
	/* warn: logins go through as with "no", each one logged and
	 * counted (metrics), so that admins see who would break. */
	p->c->require_tls_warn = strcmp(argv[0], "warn") == 0;
	if (strcmp(argv[0], "yes") == 0)
		p->c->require_tls = true;
	else if (strcmp(argv[0], "no") == 0 || p->c->require_tls_warn)
		p->c->require_tls = false;
	else {
		perr(p, "require-tls: expected \"yes\", \"no\" or \"warn\", "
		    "not \"%s\"", clean(q, sizeof(q), argv[0]));
		return -1;
	}
	return 0;
}

/* Keep the first prefix bits of a (len bytes), zero the rest. */
static void
clear_host_bits(uint8_t *a, size_t len, int prefix)
{
	size_t i;

	for (i = 0; i < len; i++, prefix -= 8) {
		if (prefix >= 8)
			continue;
		a[i] &= prefix <= 0 ? 0 : (uint8_t)(0xff00 >> prefix);
	}
}

/* parse_cidr: "a.b.c.d[/n]" or "v6[/n]"; bare means a single host. */
static int
parse_cidr(const char *s, struct conf_cidr *net)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash;
	size_t n;
	long prefix;
	int max;

	slash = strchr(s, '/');
	n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(addr))
		return -1;
	memcpy(addr, s, n);
	addr[n] = '\0';
	memset(net, 0, sizeof(*net));
	net->family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;
	if (inet_pton(net->family, addr, net->addr) != 1)
		return -1;
	max = net->family == AF_INET6 ? 128 : 32;
	prefix = max;
	if (slash != NULL && parse_uint(slash + 1, 0, max, &prefix) == -1)
		return -1;
	net->prefix = (int)prefix;
	clear_host_bits(net->addr, (size_t)max / 8, net->prefix);
	return 0;
}

/* cidr_list: append networks to a directive's list (repeatable). */
static int
cidr_list(struct parser *p, const char *what, struct conf_cidr *nets,
    int *n, int argc, char **argv)
{
	char q[128];
	int i;

	for (i = 0; i < argc; i++) {
		if (*n == CONF_MAX_CIDR) {
			perr(p, "%s: too many networks (at most %d)", what,
			    CONF_MAX_CIDR);
			return -1;
		}
		if (parse_cidr(argv[i], &nets[*n]) == -1) {
			perr(p, "%s: bad network \"%s\" (expected e.g. "
			    "127.0.0.0/8, ::1 or fe80::/10)", what,
			    clean(q, sizeof(q), argv[i]));
			return -1;
		}
		(*n)++;
	}
	return 0;
}

static int
do_plaintext_allow(struct parser *p, int argc, char **argv)
{
	return cidr_list(p, "plaintext-allow", p->c->plaintext_allow,
	    &p->c->nplaintext_allow, argc, argv);
}

static int
do_accept_proxy(struct parser *p, int argc, char **argv)
{
	return cidr_list(p, "accept-proxy-protocol", p->c->accept_proxy,
	    &p->c->naccept_proxy, argc, argv);
}

/* workers N|auto: auto (0 here) is resolved once the backend is known. */
static int
do_workers(struct parser *p, int argc, char **argv)
{
	long n;
	char q[64];

	(void)argc;
	if (strcmp(argv[0], "auto") == 0)
		p->c->workers = p->c->workers_configured = 0;
	else if (parse_uint(argv[0], 1, 64, &n) == 0)
		p->c->workers = p->c->workers_configured = (int)n;
	else {
		perr(p, "workers: expected a number from 1 to 64 or auto, not "
		    "\"%s\"", clean(q, sizeof(q), argv[0]));
		return -1;
	}
	p->workers_line = p->line;
	return 0;
}

/* metrics-listen ADDRESS:PORT: the HTTP endpoint for /metrics. */
static int
do_metrics_listen(struct parser *p, int argc, char **argv)
{
	struct conf *c = p->c;
	char q[128];

	(void)argc;
	if (c->have_metrics) {
		perr(p, "metrics-listen: given twice (first on line %d)",
		    c->metrics_listen.line);
		return -1;
	}
	if (listen_addr(argv[0], &c->metrics_listen) == -1) {
		perr(p, "metrics-listen: bad address \"%s\" (expected "
		    "IPV4:PORT, [IPV6]:PORT or *:PORT with a numeric address)",
		    clean(q, sizeof(q), argv[0]));
		return -1;
	}
	copy(c->metrics_listen.text, sizeof(c->metrics_listen.text), argv[0]);
	c->metrics_listen.line = p->line;
	c->have_metrics = true;
	return 0;
}

static int
do_backend_proxy(struct parser *p, int argc, char **argv)
{
	char q[64];

	(void)argc;
	if (strcmp(argv[0], "v1") == 0)
		p->c->backend.proxy_version = 1;
	else if (strcmp(argv[0], "v2") == 0)
		p->c->backend.proxy_version = 2;
	else if (strcmp(argv[0], "off") == 0)
		p->c->backend.proxy_version = 0;
	else {
		perr(p, "backend-proxy-protocol: expected v1, v2 or off, not "
		    "\"%s\"", clean(q, sizeof(q), argv[0]));
		return -1;
	}
	p->proxy_line = p->line;
	return 0;
}

/* A string that may be given once. */
static int
string_once(struct parser *p, const char *kw, const char *arg, char **out)
{
	if (*out != NULL) {
		perr(p, "%s: given more than once", kw);
		return -1;
	}
	if (*arg == '\0') {
		perr(p, "%s: must not be empty", kw);
		return -1;
	}
	if ((*out = strdup(arg)) == NULL) {
		perr(p, "%s", strerror(errno));
		return -1;
	}
	return 0;
}

static int
do_user(struct parser *p, int argc, char **argv)
{
	(void)argc;
	return string_once(p, "user", argv[0], &p->c->user);
}

static int
do_group(struct parser *p, int argc, char **argv)
{
	(void)argc;
	return string_once(p, "group", argv[0], &p->c->group);
}

static int
do_chroot(struct parser *p, int argc, char **argv)
{
	(void)argc;
	return string_once(p, "chroot", argv[0], &p->c->chroot_dir);
}

static int
do_max_sessions_per_ip(struct parser *p, int argc, char **argv)
{
	(void)argc;
	p->per_ip_set = true;
	return number(p, "max-sessions-per-ip", argv[0], 0, 1000000,
	    &p->c->max_sessions_per_ip);
}

static int
do_per_ip_ipv6_prefix(struct parser *p, int argc, char **argv)
{
	(void)argc;
	return number(p, "per-ip-ipv6-prefix", argv[0], 1, 128,
	    &p->c->per_ip_ipv6_prefix);
}

/*
 * do_ocsp_staple: a DER OCSP response for the pair just completed. Only
 * the outer shape is checked here (a DER SEQUENCE); a stale or unrelated
 * response is the client's to judge, as with any stapled response.
 */
static int
do_ocsp_staple(struct parser *p, int argc, char **argv)
{
	struct conf *c = p->c;
	struct conf_keypair *kp;
	char q[256];

	(void)argc;
	if (c->nkeypairs == 0 || p->cert_line != 0) {
		perr(p, "ocsp-staple: must follow a certificate and its key");
		return -1;
	}
	kp = &c->keypairs[c->nkeypairs - 1];
	if (kp->ocsp_path != NULL) {
		perr(p, "ocsp-staple: certificate \"%s\" already has one",
		    clean(q, sizeof(q), kp->cert_path));
		return -1;
	}
	if ((kp->ocsp_path = strdup(argv[0])) == NULL) {
		perr(p, "%s", strerror(errno));
		return -1;
	}
	if (read_pem(p, "OCSP response", argv[0], false, &kp->ocsp,
	    &kp->ocsp_len) == -1)
		return -1;
	if (kp->ocsp_len < 2 || kp->ocsp[0] != 0x30) {
		perr(p, "ocsp-staple: \"%s\" is not a DER OCSP response (as "
		    "written by \"openssl ocsp -respout\")",
		    clean(q, sizeof(q), argv[0]));
		return -1;
	}
	return 0;
}

/*
 * tls_check: let libtls judge a policy value now, on a scratch config, so
 * that -n and a reload report it with its line rather than failing later.
 */
static int
tls_check(struct parser *p, const char *kw, const char *arg,
    int (*set)(struct tls_config *, const char *))
{
	struct tls_config *cfg;
	char q[128], why[256];

	if (tls_init() == -1 || (cfg = tls_config_new()) == NULL) {
		perr(p, "%s: cannot initialise libtls", kw);
		return -1;
	}
	if (set(cfg, arg) == -1) {
		perr(p, "%s: libtls refuses \"%s\": %s", kw,
		    clean(q, sizeof(q), arg),
		    clean(why, sizeof(why), tls_config_error(cfg) ?
		    tls_config_error(cfg) : "unknown error"));
		tls_config_free(cfg);
		return -1;
	}
	tls_config_free(cfg);
	return 0;
}

static int
do_tls_protocols(struct parser *p, int argc, char **argv)
{
	uint32_t protos = 0;
	char q[128];

	(void)argc;
	if (tls_config_parse_protocols(&protos, argv[0]) == -1 ||
	    protos == 0) {
		perr(p, "tls-protocols: bad protocol list \"%s\" (expected "
		    "libtls keywords such as \"tlsv1.2,tlsv1.3\", \"tlsv1.3\" "
		    "or \"secure\")", clean(q, sizeof(q), argv[0]));
		return -1;
	}
	if (string_once(p, "tls-protocols", argv[0],
	    &p->c->tls_protocols_text) == -1)
		return -1;
	p->c->tls_protocols = protos;
	return 0;
}

static int
do_tls_ciphers(struct parser *p, int argc, char **argv)
{
	(void)argc;
	if (p->c->tls_ciphers == NULL &&
	    tls_check(p, "tls-ciphers", argv[0], tls_config_set_ciphers) == -1)
		return -1;
	return string_once(p, "tls-ciphers", argv[0], &p->c->tls_ciphers);
}

static int
do_tls_curves(struct parser *p, int argc, char **argv)
{
	(void)argc;
	if (p->c->tls_curves == NULL && tls_check(p, "tls-curves", argv[0],
	    tls_config_set_ecdhecurves) == -1)
		return -1;
	return string_once(p, "tls-curves", argv[0], &p->c->tls_curves);
}

/* libtls' bounds (TLS_MIN_SESSION_TIMEOUT, TLS_MAX_SESSION_TIMEOUT). */
#define SESSION_LIFETIME_MIN	4
#define SESSION_LIFETIME_MAX	86400

static int
do_tls_session_lifetime(struct parser *p, int argc, char **argv)
{
	double v;
	char q[128];

	(void)argc;
	p->lifetime_line = p->line;
	if (strcmp(argv[0], "off") == 0) {
		p->c->tls_session_lifetime = 0;
		return 0;
	}
	if (conf_parse_duration(argv[0], &v) == -1 ||
	    v < SESSION_LIFETIME_MIN || v > SESSION_LIFETIME_MAX) {
		perr(p, "tls-session-lifetime: bad duration \"%s\" (expected "
		    "\"off\" or %ds to 24h)", clean(q, sizeof(q), argv[0]),
		    SESSION_LIFETIME_MIN);
		return -1;
	}
	p->c->tls_session_lifetime = (int)v;
	return 0;
}

/* tls-ticket-key-file: read like a private key (mode checked on the open
 * file), parsed at once so that -n finds a bad key, and the text wiped. */
static int
do_tls_ticket_key_file(struct parser *p, int argc, char **argv)
{
	struct conf *c = p->c;
	uint8_t *text = NULL;
	size_t len = 0;
	char q[256], why[256];
	int line, rv;

	(void)argc;
	if (string_once(p, "tls-ticket-key-file", argv[0],
	    &c->tls_ticket_key_path) == -1)
		return -1;
	if (read_pem(p, "ticket key", argv[0], true, &text, &len) == -1)
		return -1;
	rv = ticketkeys_parse(text, len, &c->tls_ticket_keys, &line, why,
	    sizeof(why));
	wipe_free(text, len + 1);
	if (rv == -1) {
		clean(q, sizeof(q), argv[0]);
		if (line > 0)
			perr(p, "tls-ticket-key-file \"%s\" line %d: %s", q,
			    line, why);
		else
			perr(p, "tls-ticket-key-file \"%s\": %s", q, why);
		return -1;
	}
	p->ticket_key_line = p->line;
	return 0;
}

static int
do_tls_client_cert(struct parser *p, int argc, char **argv)
{
	char q[128];

	(void)argc;
	if (p->client_cert_line != 0) {
		perr(p, "tls-client-cert: given more than once");
		return -1;
	}
	if (strcmp(argv[0], "none") == 0)
		p->c->tls_client_cert = CLIENT_CERT_NONE;
	else if (strcmp(argv[0], "optional") == 0)
		p->c->tls_client_cert = CLIENT_CERT_OPTIONAL;
	else if (strcmp(argv[0], "required") == 0)
		p->c->tls_client_cert = CLIENT_CERT_REQUIRED;
	else {
		perr(p, "tls-client-cert: expected \"none\", \"optional\" or "
		    "\"required\", not \"%s\"", clean(q, sizeof(q), argv[0]));
		return -1;
	}
	p->client_cert_line = p->line;
	return 0;
}

static int
do_tls_client_ca(struct parser *p, int argc, char **argv)
{
	struct conf *c = p->c;
	char q[256];

	(void)argc;
	if (string_once(p, "tls-client-ca", argv[0],
	    &c->tls_client_ca_path) == -1)
		return -1;
	if (read_pem(p, "CA file", argv[0], false, &c->tls_client_ca,
	    &c->tls_client_ca_len) == -1)
		return -1;
	if (!contains(c->tls_client_ca, c->tls_client_ca_len,
	    "-----BEGIN CERTIFICATE-----")) {
		perr(p, "tls-client-ca: \"%s\" holds no PEM certificate",
		    clean(q, sizeof(q), argv[0]));
		return -1;
	}
	p->client_ca_line = p->line;
	return 0;
}

/* do_upstream: "upstream HOST:PORT pop3s|stls", resolved now like the
 * backend (the loop never waits for DNS for a fixed upstream). */
static int
do_upstream(struct parser *p, int argc, char **argv)
{
	struct conf_upstream *u = &p->c->upstream;
	char host[256], q[128];
	in_port_t port;
	bool br;

	(void)argc;
	if (p->c->have_upstream) {
		perr(p, "upstream: only one upstream is allowed (first on "
		    "line %d)", p->upstream_line);
		return -1;
	}
	if (strcmp(argv[1], "pop3s") == 0)
		u->implicit_tls = true;
	else if (strcmp(argv[1], "stls") == 0)
		u->implicit_tls = false;
	else {
		perr(p, "upstream: unknown mode \"%s\" (expected pop3s or "
		    "stls)", clean(q, sizeof(q), argv[1]));
		return -1;
	}
	if (split_hostport(argv[0], host, sizeof(host), &br, &port) == -1)
		goto bad;
	u->target.kind = BACKEND_TCP;
	if (numeric_addr(host, br, port, &u->target.addrs[0],
	    &u->target.addrlens[0]) == 0)
		u->target.naddrs = 1;
	else if (br || !hostname_ok(host))
		goto bad;
	else if (backend_resolve(p, &u->target, "upstream", host, port) == -1)
		return -1;
	copy(u->host, sizeof(u->host), host);
	copy(u->target.text, sizeof(u->target.text), argv[0]);
	p->c->have_upstream = true;
	p->upstream_line = p->line;
	return 0;
bad:
	perr(p, "upstream: bad address \"%s\" (expected HOST:PORT or "
	    "[IPV6]:PORT)", clean(q, sizeof(q), argv[0]));
	return -1;
}

/* do_upstream_allow: patterns for routed mode (route_pattern_ok). */
static int
do_upstream_allow(struct parser *p, int argc, char **argv)
{
	struct conf *c = p->c;
	char q[128];
	size_t j;
	int i;

	for (i = 0; i < argc; i++) {
		if (!route_pattern_ok(argv[i])) {
			perr(p, "upstream-allow: bad pattern \"%s\" (expected "
			    "a host name, or *. and a host name; a bare * "
			    "would make an open relay)",
			    clean(q, sizeof(q), argv[i]));
			return -1;
		}
		if (c->nupstream_allow == CONF_MAX_UPSTREAM_ALLOW) {
			perr(p, "upstream-allow: too many patterns (at most "
			    "%d)", CONF_MAX_UPSTREAM_ALLOW);
			return -1;
		}
		if ((c->upstream_allow[c->nupstream_allow] =
		    strdup(argv[i])) == NULL) {
			perr(p, "out of memory");
			return -1;
		}
		for (j = 0; c->upstream_allow[c->nupstream_allow][j]; j++)
			c->upstream_allow[c->nupstream_allow][j] = (char)tolower(
			    (unsigned char)argv[i][j]);
		c->nupstream_allow++;
	}
	if (p->allow_line == 0)
		p->allow_line = p->line;
	return 0;
}

static int
do_upstream_ca(struct parser *p, int argc, char **argv)
{
	struct conf *c = p->c;
	char q[256];

	(void)argc;
	if (string_once(p, "upstream-ca", argv[0], &c->upstream_ca_path) == -1)
		return -1;
	if (read_pem(p, "CA file", argv[0], false, &c->upstream_ca,
	    &c->upstream_ca_len) == -1)
		return -1;
	if (!contains(c->upstream_ca, c->upstream_ca_len,
	    "-----BEGIN CERTIFICATE-----")) {
		perr(p, "upstream-ca: \"%s\" holds no PEM certificate",
		    clean(q, sizeof(q), argv[0]));
		return -1;
	}
	return 0;
}

static const struct directive directives[] = {
	{ "listen", 2, 2, "listen pop3s|pop3|tls|outbound ADDRESS:PORT",
	    do_listen },
	{ "upstream", 2, 2, "upstream HOST:PORT pop3s|stls", do_upstream },
	{ "upstream-allow", 1, CONF_MAX_UPSTREAM_ALLOW,
	    "upstream-allow PATTERN...", do_upstream_allow },
	{ "upstream-ca", 1, 1, "upstream-ca PATH", do_upstream_ca },
	{ "backend", 1, CONF_MAX_EXEC_ARGS + 1,
	    "backend HOST:PORT|unix:/PATH|exec /PATH [ARGUMENTS...]",
	    do_backend },
	{ "backend-proxy-protocol", 1, 1, "backend-proxy-protocol v1|v2|off",
	    do_backend_proxy },
	{ "accept-proxy-protocol", 1, CONF_MAX_CIDR,
	    "accept-proxy-protocol CIDR...", do_accept_proxy },
	{ "certificate", 1, 1, "certificate PATH", do_certificate },
	{ "key", 1, 1, "key PATH", do_key },
	{ "timeout", 2, 2,
	    "timeout connect|handshake|login|idle|drain DURATION",
	    do_timeout },
	{ "ocsp-staple", 1, 1, "ocsp-staple PATH", do_ocsp_staple },
	{ "max-sessions", 1, 1, "max-sessions N", do_max_sessions },
	{ "workers", 1, 1, "workers N|auto", do_workers },
	{ "max-sessions-per-ip", 1, 1, "max-sessions-per-ip N",
	    do_max_sessions_per_ip },
	{ "per-ip-ipv6-prefix", 1, 1, "per-ip-ipv6-prefix N",
	    do_per_ip_ipv6_prefix },
	{ "require-tls", 1, 1, "require-tls yes|no|warn", do_require_tls },
	{ "metrics-listen", 1, 1, "metrics-listen ADDRESS:PORT",
	    do_metrics_listen },
	{ "plaintext-allow", 1, CONF_MAX_CIDR, "plaintext-allow CIDR...",
	    do_plaintext_allow },
	{ "max-auth-errors", 1, 1, "max-auth-errors N", do_max_auth_errors },
	{ "sasl-line-max", 1, 1, "sasl-line-max N", do_sasl_line_max },
	{ "user", 1, 1, "user NAME", do_user },
	{ "group", 1, 1, "group NAME", do_group },
	{ "chroot", 1, 1, "chroot DIR", do_chroot },
	{ "tls-protocols", 1, 1, "tls-protocols PROTOCOLS", do_tls_protocols },
	{ "tls-ciphers", 1, 1, "tls-ciphers CIPHERS", do_tls_ciphers },
	{ "tls-curves", 1, 1, "tls-curves CURVES", do_tls_curves },
	{ "tls-session-lifetime", 1, 1, "tls-session-lifetime DURATION|off",
	    do_tls_session_lifetime },
	{ "tls-ticket-key-file", 1, 1, "tls-ticket-key-file PATH",
	    do_tls_ticket_key_file },
	{ "tls-client-cert", 1, 1, "tls-client-cert none|optional|required",
	    do_tls_client_cert },
	{ "tls-client-ca", 1, 1, "tls-client-ca PATH", do_tls_client_ca },
};

/*
 * tokenize: split line in place into *argc words. Words are separated by
 * spaces and tabs; '#' outside quotes ends the line; "..." quotes, with
 * \" and \\ as the only escapes (any other backslash is kept as is).
 */
static int
tokenize(struct parser *p, char *line, char **argv, int *argc)
{
	char *r = line, *w, ch;
	int n = 0;

	for (;;) {
		while (*r == ' ' || *r == '\t')
			r++;
		if (*r == '\0' || *r == '#')
			break;
		if (n == CONF_ARGS_MAX) {
			perr(p, "too many arguments (at most %d)",
			    CONF_ARGS_MAX - 1);
			return -1;
		}
		argv[n++] = w = r;
		while (*r != '\0' && *r != ' ' && *r != '\t' && *r != '#') {
			if (*r != '"') {
				*w++ = *r++;
				continue;
			}
			for (r++; *r != '"'; *w++ = *r++) {
				if (*r == '\0') {
					perr(p, "unterminated quoted string");
					return -1;
				}
				if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
					r++;
			}
			r++;
		}
		/* w may equal r: remember the separator before ending the word. */
		ch = *r;
		*w = '\0';
		if (ch == '\0' || ch == '#')
			break;
		r++;
	}
	*argc = n;
	return 0;
}

static int
parse_line(struct parser *p, char *line)
{
	const struct directive *d;
	char *argv[CONF_ARGS_MAX];
	char q[64];
	int argc;
	size_t i;

	if (tokenize(p, line, argv, &argc) == -1)
		return -1;
	if (argc == 0)
		return 0;
	for (i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
		d = &directives[i];
		if (strcmp(argv[0], d->name) != 0)
			continue;
		if (argc - 1 < d->minargs || argc - 1 > d->maxargs) {
			perr(p, "%s: expected \"%s\"", d->name, d->usage);
			return -1;
		}
		return d->handler(p, argc - 1, argv + 1);
	}
	perr(p, "unknown keyword \"%s\"", clean(q, sizeof(q), argv[0]));
	return -1;
}

/*
 * read_line: the next line of fp into buf (CONF_LINE_MAX + 2 bytes),
 * without its "\n" or "\r\n". Returns 1 for a line, 0 at end of file,
 * -1 on error. Overlong lines are refused rather than read in full, so a
 * hostile file cannot make us allocate.
 */
static int
read_line(struct parser *p, FILE *fp, char *buf)
{
	size_t len = 0;
	int ch;

	while ((ch = getc(fp)) != EOF && ch != '\n') {
		if (ch == '\0') {
			perr(p, "NUL byte in line");
			return -1;
		}
		/* One byte of slack for a '\r' that the '\n' will excuse. */
		if (len == CONF_LINE_MAX + 1) {
			perr(p, "line too long (more than %d bytes)",
			    CONF_LINE_MAX);
			return -1;
		}
		buf[len++] = (char)ch;
	}
	if (ch == EOF && ferror(fp)) {
		p->line = 0;
		perr(p, "%s", strerror(errno));
		return -1;
	}
	if (ch == EOF && len == 0)
		return 0;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len > CONF_LINE_MAX) {
		perr(p, "line too long (more than %d bytes)", CONF_LINE_MAX);
		return -1;
	}
	buf[len] = '\0';
	return 1;
}

static int
parse_file(struct parser *p, FILE *fp)
{
	char line[CONF_LINE_MAX + 2];
	int rv;

	for (;;) {
		p->line++;
		if ((rv = read_line(p, fp, line)) <= 0)
			return rv;
		if (parse_line(p, line) == -1)
			return -1;
	}
}

/* online_cpus: the CPUs popsd may run on, as workers (1 to 64): its
 * affinity mask (systemd CPUAffinity=, a container's cpuset), else the
 * CPUs online. */
static int
online_cpus(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

bool
conf_has_kind(const struct conf *c, enum listen_kind k)
{
	int i;

	for (i = 0; i < c->nlistens; i++)
		if (c->listens[i].kind == k)
			return true;
	return false;
}

/* serves_inbound: a listener that needs a backend and a certificate.
 * Without listen lines (socket activation, -i bring their own kinds) a
 * file with upstream lines is taken for an outbound-only one. */
static bool
serves_inbound(const struct conf *c)
{
	int i;

	for (i = 0; i < c->nlistens; i++)
		if (c->listens[i].kind != LISTEN_OUTBOUND)
			return true;
	return c->nlistens == 0 && !c->have_upstream &&
	    c->nupstream_allow == 0;
}

/* check_outbound: upstream lines and outbound listeners go together. */
static int
check_outbound(struct parser *p)
{
	struct conf *c = p->c;
	bool outbound = conf_has_kind(c, LISTEN_OUTBOUND);

	if (c->have_upstream && c->nupstream_allow > 0) {
		p->line = p->allow_line;
		perr(p, "upstream-allow cannot be used with upstream (line %d): "
		    "either one fixed upstream, or routed by USER name@host",
		    p->upstream_line);
		return -1;
	}
	if (outbound && !c->have_upstream && c->nupstream_allow == 0) {
		p->line = 0;
		perr(p, "listen outbound needs an upstream or upstream-allow "
		    "directive");
		return -1;
	}
	/* Without listen lines the sockets may all come from systemd
	 * (FileDescriptorName=outbound): nothing to hold against then. */
	if (!outbound && c->nlistens > 0 &&
	    (c->have_upstream || c->nupstream_allow > 0)) {
		p->line = c->have_upstream ? p->upstream_line : p->allow_line;
		perr(p, "%s has no effect without \"listen outbound\"",
		    c->have_upstream ? "upstream" : "upstream-allow");
		return -1;
	}
	return 0;
}

/* Checks that need the whole file. */
static int
check_complete(struct parser *p)
{
	struct conf *c = p->c;
	char q[256];
	int i;

	if (p->cert_line != 0) {
		p->line = p->cert_line;
		perr(p, "certificate \"%s\" has no key directive after it",
		    clean(q, sizeof(q), c->keypairs[c->nkeypairs - 1].cert_path));
		return -1;
	}
	if (c->tls_client_cert != CLIENT_CERT_NONE && c->tls_client_ca == NULL) {
		p->line = p->client_cert_line;
		perr(p, "tls-client-cert %s needs a tls-client-ca file to "
		    "verify client certificates with",
		    c->tls_client_cert == CLIENT_CERT_REQUIRED ? "required" :
		    "optional");
		return -1;
	}
	if (c->tls_client_ca != NULL && c->tls_client_cert == CLIENT_CERT_NONE) {
		p->line = p->client_ca_line;
		perr(p, "tls-client-ca has no effect without \"tls-client-cert "
		    "optional\" or \"tls-client-cert required\"");
		return -1;
	}
	if (c->tls_ticket_key_path != NULL && c->tls_session_lifetime == 0) {
		p->line = p->lifetime_line;
		perr(p, "tls-session-lifetime off: resumption is off, so the "
		    "tls-ticket-key-file on line %d would not be used; remove "
		    "one of them", p->ticket_key_line);
		return -1;
	}
	/* auto: one per online CPU, for the handshakes; one with backend
	 * exec, whose spawner serves one process. */
	if (c->workers == 0)
		c->workers = c->backend.kind == BACKEND_EXEC ? 1 : online_cpus();
	if (c->backend.kind == BACKEND_EXEC && c->workers > 1) {
		p->line = p->workers_line;
		perr(p, "workers: more than one worker cannot be used with "
		    "\"backend exec\" (one spawner serves one process); exec'd "
		    "daemons are a process per session already");
		return -1;
	}
	if (c->backend.kind == BACKEND_EXEC && c->backend.proxy_version) {
		p->line = p->proxy_line;
		perr(p, "backend-proxy-protocol cannot be used with \"backend "
		    "exec\" (the daemon gets the client address in "
		    "TCPREMOTEIP)");
		return -1;
	}
	for (i = 0; c->have_metrics && i < c->nlistens; i++) {
		if (c->listens[i].addrlen == c->metrics_listen.addrlen &&
		    memcmp(&c->listens[i].addr, &c->metrics_listen.addr,
		    c->listens[i].addrlen) == 0) {
			p->line = c->metrics_listen.line;
			perr(p, "metrics-listen: \"%s\" is also a listen "
			    "address (line %d)", c->metrics_listen.text,
			    c->listens[i].line);
			return -1;
		}
	}
	if (!p->per_ip_set)
		c->max_sessions_per_ip = conf_default_per_ip(c->max_sessions);
	if (check_outbound(p) == -1)
		return -1;
	/* No listen line is no error here: the sockets may come from
	 * systemd or inetd, which only the start-up knows (main.c). */
	p->line = 0;
	if (!c->have_backend && serves_inbound(c))
		perr(p, "no backend directive");
	else if (c->nkeypairs == 0 && serves_inbound(c))
		perr(p, "no certificate configured");
	else
		return 0;
	return -1;
}

int
conf_default_per_ip(int max_sessions)
{
	int n = (max_sessions + CONF_PER_IP_FRACTION - 1) / CONF_PER_IP_FRACTION;

	return n < CONF_PER_IP_MIN ? CONF_PER_IP_MIN : n;
}

/* Treats c as raw memory: everything not defaulted is zero or NULL. */
void
conf_defaults(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->timeout_connect = 10;
	c->timeout_handshake = 30;
	c->timeout_login = 600;
	c->timeout_idle = 600;
	c->timeout_drain = 30;
	c->max_sessions = 1000;
	c->workers = 0;		/* auto */
	c->require_tls = true;
	c->max_auth_errors = 3;
	c->sasl_line_max = 8192;
	c->max_sessions_per_ip = conf_default_per_ip(c->max_sessions);
	c->per_ip_ipv6_prefix = CONF_PER_IP_IPV6_PREFIX_DEFAULT;
	c->tls_protocols = TLS_PROTOCOL_TLSv1_2 | TLS_PROTOCOL_TLSv1_3;
	c->tls_session_lifetime = CONF_SESSION_LIFETIME_DEFAULT;
	c->tls_client_cert = CLIENT_CERT_NONE;
}

struct conf *
conf_load(const char *path, char *err, size_t errsz)
{
	struct parser p;
	struct conf *c = NULL;
	FILE *fp = NULL;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.err = err;
	p.errsz = errsz;
	if (err != NULL && errsz > 0)
		err[0] = '\0';
	if ((c = malloc(sizeof(*c))) == NULL) {
		perr(&p, "%s", strerror(errno));
		goto fail;
	}
	conf_defaults(c);
	c->refs = 1;
	p.c = c;
	if ((c->path = strdup(path)) == NULL) {
		perr(&p, "%s", strerror(errno));
		goto fail;
	}
	if ((fp = fopen(path, "re")) == NULL) {
		perr(&p, "%s", strerror(errno));
		goto fail;
	}
	if (parse_file(&p, fp) == -1 || check_complete(&p) == -1)
		goto fail;
	fclose(fp);
	return c;
fail:
	if (fp != NULL)
		fclose(fp);
	conf_free(c);
	return NULL;
}

void
conf_free(struct conf *c)
{
	struct conf_keypair *kp;
	int i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nkeypairs; i++) {
		kp = &c->keypairs[i];
		free(kp->cert_path);
		free(kp->key_path);
		free(kp->cert);
		wipe_free(kp->key, kp->key_len);
		free(kp->ocsp_path);
		free(kp->ocsp);
	}
	for (i = 0; c->backend.argv[i] != NULL; i++)
		free(c->backend.argv[i]);
	free(c->tls_protocols_text);
	free(c->tls_ciphers);
	free(c->tls_curves);
	free(c->tls_client_ca_path);
	free(c->tls_client_ca);
	free(c->tls_ticket_key_path);
	for (i = 0; i < c->nupstream_allow; i++)
		free(c->upstream_allow[i]);
	free(c->upstream_ca_path);
	free(c->upstream_ca);
	if (c->upstream_tls != NULL)
		tls_config_free(c->upstream_tls);
	free(c->path);
	free(c->user);
	free(c->group);
	free(c->chroot_dir);
	explicit_bzero(c, sizeof(*c));
	free(c);
}

/* Do the first prefix bits of a and b agree? */
static bool
prefix_equal(const uint8_t *a, const uint8_t *b, int prefix)
{
	int bytes = prefix / 8, bits = prefix % 8;
	uint8_t mask;

	if (memcmp(a, b, (size_t)bytes) != 0)
		return false;
	if (bits == 0)
		return true;
	mask = (uint8_t)(0xff00 >> bits);
	return (a[bytes] & mask) == (b[bytes] & mask);
}

static bool
match_family(const struct conf_cidr *nets, int n, int family,
    const uint8_t *addr)
{
	int i;

	for (i = 0; i < n; i++)
		if (nets[i].family == family &&
		    prefix_equal(nets[i].addr, addr, nets[i].prefix))
			return true;
	return false;
}

bool
conf_cidr_match(const struct conf_cidr *nets, int n,
    const struct sockaddr *sa)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	if (sa == NULL)
		return false;
	/* Copied out: sa need not be aligned for the specific type. */
	if (sa->sa_family == AF_INET) {
		memcpy(&sin, sa, sizeof(sin));
		return match_family(nets, n, AF_INET,
		    (const uint8_t *)&sin.sin_addr);
	}
	if (sa->sa_family != AF_INET6)
		return false;
	memcpy(&sin6, sa, sizeof(sin6));
	if (match_family(nets, n, AF_INET6, sin6.sin6_addr.s6_addr))
		return true;
	/* A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d. */
	return IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr) &&
	    match_family(nets, n, AF_INET, sin6.sin6_addr.s6_addr + 12);
}
