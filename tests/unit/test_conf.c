/*
 * test_conf.c — conf_load() on generated files: every directive, the
 * defaults, one case per error class (table), durations, CIDR parsing and
 * matching. Each run works in its own mkdtemp() directory, removed after.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>

#include <tls.h>

#include "conf.h"

#define CERT_PEM "-----BEGIN CERTIFICATE-----\nMIIBfake\n" \
		 "-----END CERTIFICATE-----\n"
#define KEY_PEM	 "-----BEGIN PRIVATE KEY-----\nMIGHfake\n" \
		 "-----END PRIVATE KEY-----\n"
#define ECKEY_PEM "-----BEGIN EC PRIVATE KEY-----\nMHcfake\n" \
		 "-----END EC PRIVATE KEY-----\n"
/* Session ticket keys: bytes(range(80)) in base64, and what popsd derives
 * from it (test_ticketkeys.c has the vectors). */
#define TICKET_K80 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp" \
		   "KissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk8="
#define TICKET_REV80	0xe2e14f71u
/* The start of a DER OCSPResponse: SEQUENCE, ENUMERATED successful. */
#define OCSP_DER "\x30\x03\x0a\x01\x01"

static char dir[64];
static char cfpath[128];
static char errbuf[1024];

/* Fixtures: name, contents, mode. "big.pem" is made sparse, 1 MiB + 1. */
static const struct fixture {
	const char	*name;
	const char	*text;
	mode_t		 mode;
} fixtures[] = {
	{ "cert.pem", CERT_PEM, 0644 },
	{ "key.pem", KEY_PEM, 0600 },
	{ "cert2 with space.pem", CERT_PEM, 0644 },
	{ "ec.key", ECKEY_PEM, 0400 },
	{ "key640.pem", KEY_PEM, 0640 },
	{ "key604.pem", KEY_PEM, 0604 },
	{ "notcert.pem", "hello\n", 0644 },
	{ "notkey.pem", CERT_PEM, 0600 },
	{ "big.pem", "", 0644 },
	{ "staple.der", OCSP_DER, 0644 },
	{ "staple.pem", "-----BEGIN OCSP RESPONSE-----\n", 0644 },
	{ "empty.der", "", 0644 },
	{ "ca.pem", CERT_PEM CERT_PEM, 0644 },
	{ "tickets.key", "# keys\r\n" TICKET_K80 "\r\n", 0600 },
	{ "tickets644.key", TICKET_K80 "\n", 0644 },
	{ "tickets-bad.key", TICKET_K80 "\nnot*base64\n", 0600 },
};

static void
path_in_dir(char *out, size_t outsz, const char *name)
{
	int n = snprintf(out, outsz, "%s/%s", dir, name);

	assert_true(n > 0 && (size_t)n < outsz);
}

static void
write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	/* fchmod, not the umask-filtered open mode: the modes are the test. */
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static int
setup(void **state)
{
	char path[256];
	size_t i;

	(void)state;
	strcpy(dir, "/tmp/popsd-conf-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	path_in_dir(cfpath, sizeof(cfpath), "popsd.conf");
	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		path_in_dir(path, sizeof(path), fixtures[i].name);
		write_file(path, fixtures[i].text, strlen(fixtures[i].text),
		    fixtures[i].mode);
	}
	path_in_dir(path, sizeof(path), "big.pem");
	if (truncate(path, 1024 * 1024 + 1) == -1)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char path[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		path_in_dir(path, sizeof(path), fixtures[i].name);
		unlink(path);
	}
	unlink(cfpath);
	return rmdir(dir);
}

/* expand: copy tmpl to out with every "@D@" replaced by the temp dir. */
static void
expand(char *out, size_t outsz, const char *tmpl)
{
	size_t n = 0, dl = strlen(dir);

	while (*tmpl != '\0') {
		if (strncmp(tmpl, "@D@", 3) == 0) {
			assert_true(n + dl < outsz);
			memcpy(out + n, dir, dl);
			n += dl;
			tmpl += 3;
			continue;
		}
		assert_true(n + 1 < outsz);
		out[n++] = *tmpl++;
	}
	out[n] = '\0';
}

static struct conf *
load_bytes(const void *data, size_t len)
{
	write_file(cfpath, data, len, 0644);
	errbuf[0] = '\0';
	return conf_load(cfpath, errbuf, sizeof(errbuf));
}

static struct conf *
load(const char *tmpl)
{
	static char text[16384];

	expand(text, sizeof(text), tmpl);
	return load_bytes(text, strlen(text));
}

/* The error must be "cfpath:line: ..." ("cfpath: ..." for line 0), contain
 * want, and hold nothing but printable ASCII. */
static void
check_error(int line, const char *want)
{
	char prefix[256], exp[1024];
	const char *s;

	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", cfpath, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", cfpath);
	if (strncmp(errbuf, prefix, strlen(prefix)) != 0)
		fail_msg("error \"%s\" does not start with \"%s\"", errbuf,
		    prefix);
	expand(exp, sizeof(exp), want);
	if (strstr(errbuf, exp) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", errbuf, exp);
	for (s = errbuf; *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e)
			fail_msg("control byte 0x%02x in error \"%s\"",
			    (unsigned char)*s, errbuf);
}

static void
expect_error(const char *tmpl, int line, const char *want)
{
	struct conf *c;

	c = load(tmpl);
	if (c != NULL) {
		conf_free(c);
		fail_msg("config accepted, wanted line %d \"%s\":\n%s", line,
		    want, tmpl);
	}
	check_error(line, want);
}

#define BASE	"listen pop3s *:995\n" \
		"backend 127.0.0.1:110\n" \
		"certificate @D@/cert.pem\n" \
		"key @D@/key.pem\n"

static const char good_conf[] =
    "# popsd test configuration\n"
    "\n"
    "listen pop3s *:995\t# implicit TLS\n"
    "listen pop3 127.0.0.1:110\n"
    "listen\tpop3s [::1]:9995\n"
    "  listen pop3 \"[2001:db8::1]:65535\"\n"
    "backend localhost:1110\n"
    "certificate @D@/cert.pem\n"
    "key @D@/key.pem\n"
    "certificate \"@D@/cert2 with space.pem\"\n"
    "key @D@/ec.key#comment right after\n"
    "timeout connect 5\n"
    "timeout handshake 20s\n"
    "timeout login 2m\n"
    "timeout idle 1h\n"
    "timeout drain 0.5s\n"
    "max-sessions 77\n"
    "require-tls no\n"
    "plaintext-allow 127.0.0.0/8 ::1\n"
    "plaintext-allow 10.1.2.3/31 fe80::1234/10 192.168.7.9\n"
    "max-auth-errors 5\n"
    "sasl-line-max 256\n"
    "user _popsd\n"
    "group \"pop \\\"d\\\\\"\n"
    "chroot /var/empty\n";

static void
check_good(const struct conf *c)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	char a[INET6_ADDRSTRLEN], path[256];
	static const uint8_t net10[16] = { 10, 1, 2, 2 };
	static const uint8_t fe80[16] = { 0xfe, 0x80 };

	assert_non_null(c);
	assert_string_equal(c->path, cfpath);

	assert_int_equal(c->nlistens, 4);
	assert_int_equal(c->listens[0].kind, LISTEN_POP3S);
	assert_true(c->listens[0].wildcard);
	assert_string_equal(c->listens[0].text, "*:995");
	assert_int_equal(c->listens[0].line, 3);
	sin6 = (const struct sockaddr_in6 *)&c->listens[0].addr;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(c->listens[0].addrlen, sizeof(*sin6));
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	assert_int_equal(ntohs(sin6->sin6_port), 995);

	assert_int_equal(c->listens[1].kind, LISTEN_POP3);
	assert_false(c->listens[1].wildcard);
	sin = (const struct sockaddr_in *)&c->listens[1].addr;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(c->listens[1].addrlen, sizeof(*sin));
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(ntohs(sin->sin_port), 110);

	sin6 = (const struct sockaddr_in6 *)&c->listens[2].addr;
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(ntohs(sin6->sin6_port), 9995);
	assert_string_equal(c->listens[2].text, "[::1]:9995");
	assert_int_equal(c->listens[2].line, 5);

	sin6 = (const struct sockaddr_in6 *)&c->listens[3].addr;
	inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
	assert_string_equal(a, "2001:db8::1");
	assert_int_equal(ntohs(sin6->sin6_port), 65535);

	assert_true(c->have_backend);
	assert_int_equal(c->backend.kind, BACKEND_TCP);
	assert_string_equal(c->backend.text, "localhost:1110");
	assert_true(c->backend.naddrs >= 1);
	sin = (const struct sockaddr_in *)&c->backend.addrs[0];
	assert_true(sin->sin_family == AF_INET || sin->sin_family == AF_INET6);
	assert_int_equal(ntohs(sin->sin_port), 1110);

	assert_int_equal(c->nkeypairs, 2);
	path_in_dir(path, sizeof(path), "cert.pem");
	assert_string_equal(c->keypairs[0].cert_path, path);
	assert_int_equal(c->keypairs[0].cert_len, strlen(CERT_PEM));
	assert_memory_equal(c->keypairs[0].cert, CERT_PEM, strlen(CERT_PEM));
	assert_int_equal(c->keypairs[0].key_len, strlen(KEY_PEM));
	assert_memory_equal(c->keypairs[0].key, KEY_PEM, strlen(KEY_PEM));
	path_in_dir(path, sizeof(path), "cert2 with space.pem");
	assert_string_equal(c->keypairs[1].cert_path, path);
	path_in_dir(path, sizeof(path), "ec.key");
	assert_string_equal(c->keypairs[1].key_path, path);
	assert_int_equal(c->keypairs[1].key_len, strlen(ECKEY_PEM));

	assert_true(c->timeout_connect == 5);
	assert_true(c->timeout_handshake == 20);
	assert_true(c->timeout_login == 120);
	assert_true(c->timeout_idle == 3600);
	assert_true(c->timeout_drain == 0.5);
	assert_int_equal(c->max_sessions, 77);
	assert_false(c->require_tls);

	assert_int_equal(c->nplaintext_allow, 5);
	assert_int_equal(c->plaintext_allow[0].family, AF_INET);
	assert_int_equal(c->plaintext_allow[0].prefix, 8);
	assert_int_equal(c->plaintext_allow[1].family, AF_INET6);
	assert_int_equal(c->plaintext_allow[1].prefix, 128);
	assert_int_equal(c->plaintext_allow[2].prefix, 31);
	assert_memory_equal(c->plaintext_allow[2].addr, net10, 4);
	assert_int_equal(c->plaintext_allow[3].prefix, 10);
	assert_memory_equal(c->plaintext_allow[3].addr, fe80, 16);
	assert_int_equal(c->plaintext_allow[4].prefix, 32);

	assert_int_equal(c->max_auth_errors, 5);
	assert_int_equal(c->sasl_line_max, 256);
	/* Not set: a tenth of max-sessions 77, but never below 10. */
	assert_int_equal(c->max_sessions_per_ip, 10);
	assert_int_equal(c->per_ip_ipv6_prefix, 64);
	assert_string_equal(c->user, "_popsd");
	assert_string_equal(c->group, "pop \"d\\");
	assert_string_equal(c->chroot_dir, "/var/empty");
}

static void
test_good(void **state)
{
	struct conf *c;

	(void)state;
	c = load(good_conf);
	if (c == NULL)
		fail_msg("%s", errbuf);
	check_good(c);
	conf_free(c);
}

/* The same file with CRLF line endings means the same. */
static void
test_good_crlf(void **state)
{
	char text[8192], crlf[16384];
	size_t i, n = 0;
	struct conf *c;

	(void)state;
	expand(text, sizeof(text), good_conf);
	for (i = 0; text[i] != '\0'; i++) {
		if (text[i] == '\n')
			crlf[n++] = '\r';
		crlf[n++] = text[i];
	}
	c = load_bytes(crlf, n);
	if (c == NULL)
		fail_msg("%s", errbuf);
	check_good(c);
	conf_free(c);
}

static void
check_defaults(const struct conf *c)
{
	assert_true(c->timeout_connect == 10);
	assert_true(c->timeout_handshake == 30);
	assert_true(c->timeout_login == 600);
	assert_true(c->timeout_idle == 600);
	assert_true(c->timeout_drain == 30);
	assert_int_equal(c->max_sessions, 1000);
	assert_true(c->require_tls);
	assert_int_equal(c->nplaintext_allow, 0);
	assert_int_equal(c->max_auth_errors, 3);
	assert_int_equal(c->sasl_line_max, 8192);
	assert_int_equal(c->max_sessions_per_ip, 100);	/* 1000 / 10 */
	assert_int_equal(c->per_ip_ipv6_prefix, 64);
	assert_int_equal(c->tls_protocols, TLS_PROTOCOLS_DEFAULT);
	assert_null(c->tls_protocols_text);
	assert_null(c->tls_ciphers);
	assert_null(c->tls_curves);
	assert_int_equal(c->tls_session_lifetime, 7200);
	assert_int_equal(c->tls_client_cert, CLIENT_CERT_NONE);
	assert_null(c->tls_client_ca);
	assert_null(c->user);
	assert_null(c->group);
	assert_null(c->chroot_dir);
}

/* What workers auto means here: the CPUs in this process's affinity. */
static int
online_workers(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

static void
test_defaults(void **state)
{
	struct conf raw, *c;
	const struct sockaddr_un *sunp;

	(void)state;
	memset(&raw, 0xa5, sizeof(raw));
	conf_defaults(&raw);
	check_defaults(&raw);
	assert_int_equal(raw.workers, 0);	/* auto, resolved at the end */
	assert_int_equal(raw.nlistens, 0);
	assert_int_equal(raw.nkeypairs, 0);
	assert_false(raw.have_backend);

	c = load("listen pop3 *:110\nbackend unix:/run/pop3.sock\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\n");
	if (c == NULL)
		fail_msg("%s", errbuf);
	check_defaults(c);
	/* workers auto: one per online CPU. */
	assert_int_equal(c->workers, online_workers());
	assert_int_equal(c->backend.kind, BACKEND_UNIX);
	assert_int_equal(c->backend.naddrs, 1);
	sunp = (const struct sockaddr_un *)&c->backend.addrs[0];
	assert_int_equal(sunp->sun_family, AF_UNIX);
	assert_string_equal(sunp->sun_path, "/run/pop3.sock");
	assert_string_equal(c->backend.text, "unix:/run/pop3.sock");
	conf_free(c);
}

static void
test_backend_numeric(void **state)
{
	const struct sockaddr_in6 *sin6;
	struct conf *c;

	(void)state;
	c = load("listen pop3s *:995\nbackend [::1]:110\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\n");
	if (c == NULL)
		fail_msg("%s", errbuf);
	assert_int_equal(c->backend.naddrs, 1);
	assert_int_equal(c->backend.addrlens[0], sizeof(*sin6));
	sin6 = (const struct sockaddr_in6 *)&c->backend.addrs[0];
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(ntohs(sin6->sin6_port), 110);
	conf_free(c);
	assert_int_equal(strcmp(listen_kind_name(LISTEN_POP3S), "pop3s"), 0);
	assert_int_equal(strcmp(listen_kind_name(LISTEN_POP3), "pop3"), 0);
}

static const struct errcase {
	const char	*text;
	int		 line;
	const char	*want;
} errcases[] = {
	/* Whole-file checks. */
	{ "", 0, "no backend directive" },
	{ "# only a comment\n", 0, "no backend directive" },
	{ "listen pop3s *:995\n", 0, "no backend directive" },
	{ "listen pop3s *:995\nbackend 127.0.0.1:110\n", 0,
	    "no certificate configured" },

	/* Lexical. */
	{ "lissen pop3s *:995\n", 1, "unknown keyword \"lissen\"" },
	{ "\n\n  \t\nfoo\n", 4, "unknown keyword \"foo\"" },
	{ "\x1b[31mevil\x07\n", 1, "unknown keyword \"?[31mevil?\"" },
	{ "user \"abc\n", 1, "unterminated quoted string" },
	{ "user \"abc\\\"\n", 1, "unterminated quoted string" },
	{ "user abc\"def # x\n", 1, "unterminated quoted string" },

	/* Argument counts. */
	{ "listen pop3s\n", 1,
	    "listen: expected \"listen pop3s|pop3|tls|outbound ADDRESS:PORT\"" },
	{ "listen pop3s *:995 *:996\n", 1, "listen: expected \"listen" },
	{ "listen pop3s # *:995\n", 1, "listen: expected" },
	{ "backend\n", 1, "backend: expected \"backend HOST:PORT" },
	{ "certificate\n", 1, "certificate: expected \"certificate PATH\"" },
	{ "certificate a b\n", 1, "certificate: expected" },
	{ "key\n", 1, "key: expected \"key PATH\"" },
	{ "timeout idle\n", 1, "timeout: expected \"timeout connect|" },
	{ "max-sessions\n", 1, "max-sessions: expected \"max-sessions N\"" },
	{ "require-tls\n", 1,
	    "require-tls: expected \"require-tls yes|no|warn\"" },
	{ "plaintext-allow\n", 1, "plaintext-allow: expected" },
	{ "max-auth-errors 1 2\n", 1, "max-auth-errors: expected" },
	{ "sasl-line-max\n", 1, "sasl-line-max: expected" },
	{ "user a b\n", 1, "user: expected \"user NAME\"" },
	{ "group\n", 1, "group: expected \"group NAME\"" },
	{ "chroot\n", 1, "chroot: expected \"chroot DIR\"" },

	/* Backends and PROXY protocol (issue 6). */
	{ "backend a:1 b:2\n", 1, "backend: expected \"backend HOST:PORT|" },
	{ "backend exec\n", 1, "backend exec: expected" },
	{ "backend exec bin/sh\n", 1, "\"bin/sh\" is not an absolute path" },
	{ "backend exec /nonexistent/popd\n", 1, "No such file or directory" },
	{ "backend-proxy-protocol v3\n", 1, "expected v1, v2 or off" },
	{ "backend-proxy-protocol\n", 1, "backend-proxy-protocol: expected" },
	{ "accept-proxy-protocol 10.0.0.0/33\n", 1,
	    "accept-proxy-protocol: bad network \"10.0.0.0/33\"" },
	{ "accept-proxy-protocol\n", 1, "accept-proxy-protocol: expected" },

	/* listen. */
	{ "listen imaps *:993\n", 1, "unknown kind \"imaps\"" },

	/* Outbound. */
	{ "listen outbound 127.0.0.1:110\n", 0,
	    "listen outbound needs an upstream or upstream-allow" },
	{ "listen outbound 127.0.0.1:110\nupstream 127.0.0.1:995 pop3s\n"
	    "upstream-allow *.example.net\n", 3,
	    "upstream-allow cannot be used with upstream (line 2)" },
	{ "upstream-allow *\n", 1, "bad pattern \"*\"" },
	{ "upstream-allow a.*.example.net\n", 1, "bad pattern" },
	{ "upstream 127.0.0.1:995 tls\n", 1, "unknown mode \"tls\"" },
	{ "upstream 127.0.0.1 pop3s\n", 1, "upstream: bad address" },
	{ "upstream 127.0.0.1:995 pop3s\nupstream 127.0.0.1:995 pop3s\n", 2,
	    "only one upstream is allowed (first on line 1)" },
	{ "listen pop3s *:995\nupstream-allow x.example\n", 2,
	    "upstream-allow has no effect without \"listen outbound\"" },
	{ "upstream-ca /nonexistent/ca.pem\n", 1, "/nonexistent/ca.pem" },
	{ "listen pop3s localhost:995\n", 1, "bad address \"localhost:995\"" },
	{ "listen pop3s 1.2.3:5\n", 1, "bad address \"1.2.3:5\"" },
	{ "listen pop3s [::1]995\n", 1, "bad address \"[::1]995\"" },
	{ "listen pop3s ::1:995\n", 1, "bad address \"::1:995\"" },
	{ "listen pop3s *:0\n", 1, "bad address \"*:0\"" },
	{ "listen pop3s *:70000\n", 1, "bad address \"*:70000\"" },
	{ "listen pop3s *:abc\n", 1, "bad address \"*:abc\"" },
	{ "listen pop3s *:+995\n", 1, "bad address" },
	{ "listen pop3s *:\n", 1, "bad address" },
	{ "listen pop3s :995\n", 1, "bad address" },
	{ "listen pop3s 127.0.0.1\n", 1, "bad address" },
	{ "listen pop3s [::1\n", 1, "bad address" },
	{ "listen pop3s []:995\n", 1, "bad address" },
	{ "listen pop3s [1.2.3.4]:995\n", 1, "bad address" },
	{ "listen pop3s [*]:995\n", 1, "bad address" },
	{ "listen pop3s 256.0.0.1:995\n", 1, "bad address" },
	{ "listen pop3s 127.0.0.1:995\nlisten pop3 127.0.0.1:995\n", 2,
	    "duplicate address \"127.0.0.1:995\" (already on line 1)" },
	{ "listen pop3s [::1]:995\nlisten pop3s [0:0::1]:995\n", 2,
	    "duplicate address" },

	/* backend. */
	{ "backend 127.0.0.1\n", 1, "backend: bad address \"127.0.0.1\"" },
	{ "backend 1.2.3:110\n", 1, "backend: bad address \"1.2.3:110\"" },
	{ "backend [::1]110\n", 1, "backend: bad address" },
	{ "backend [nothost]:110\n", 1, "backend: bad address" },
	{ "backend *:110\n", 1, "backend: bad address" },
	{ "backend host:0\n", 1, "backend: bad address" },
	{ "backend unix:run/sock\n", 1, "must be absolute" },
	{ "backend unix:\n", 1, "must be absolute" },
	{ "backend unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	    1, "shorter than" },
	{ "backend no-such-host.invalid:110\n", 1,
	    "cannot resolve backend host \"no-such-host.invalid\": " },
	{ "backend 127.0.0.1:110\nbackend 127.0.0.1:111\n", 2,
	    "only one backend is allowed (first on line 1)" },

	/* certificate and key. */
	{ "certificate @D@/nope.pem\n", 1,
	    "cannot read certificate \"@D@/nope.pem\": No such file or "
	    "directory" },
	{ "certificate @D@\n", 1, "not a regular file" },
	{ "certificate @D@/big.pem\n", 1, "is larger than" },
	{ "certificate @D@/notcert.pem\n", 1, "is not a PEM certificate" },
	{ "key @D@/key.pem\n", 1, "key: no certificate directive before it" },
	{ "certificate @D@/cert.pem\nkey @D@/key.pem\nkey @D@/key.pem\n", 3,
	    "key: no certificate directive before it" },
	{ "certificate @D@/cert.pem\nkey @D@/key640.pem\n", 2,
	    "key file \"@D@/key640.pem\" is accessible by group or others "
	    "(mode 0640); chmod 600 it" },
	{ "certificate @D@/cert.pem\nkey @D@/key604.pem\n", 2, "(mode 0604)" },
	{ "certificate @D@/cert.pem\nkey @D@/nokey.pem\n", 2,
	    "cannot read key \"@D@/nokey.pem\": No such file" },
	{ "certificate @D@/cert.pem\nkey @D@/notkey.pem\n", 2,
	    "is not a PEM private key" },
	{ "\ncertificate @D@/cert.pem\ncertificate @D@/cert.pem\n", 2,
	    "certificate \"@D@/cert.pem\" has no key directive" },
	{ "listen pop3s *:995\nbackend 127.0.0.1:110\n"
	    "certificate @D@/cert.pem\n# no key\n", 3,
	    "certificate \"@D@/cert.pem\" has no key directive" },

	/* timeout. */
	{ "timeout idel 5\n", 1, "unknown timeout \"idel\"" },
	{ "timeout idle 0\n", 1, "bad duration \"0\"" },
	{ "timeout idle 2d\n", 1, "bad duration \"2d\"" },
	{ "timeout connect 25h\n", 1, "bad duration \"25h\"" },
	{ "timeout drain -1\n", 1, "bad duration" },

	/* Numbers and switches. */
	{ "max-sessions 0\n", 1,
	    "max-sessions: \"0\" is not a number from 1 to 1000000" },
	{ "max-sessions 1000001\n", 1, "max-sessions: \"1000001\" is not" },
	{ "max-sessions 99999999999999999999999\n", 1, "is not a number" },
	{ "max-sessions abc\n", 1, "is not a number" },
	{ "max-sessions -1\n", 1, "is not a number" },
	{ "max-sessions \"\"\n", 1, "is not a number" },
	{ "max-auth-errors 0\n", 1, "from 1 to 100" },
	{ "max-auth-errors 101\n", 1, "from 1 to 100" },
	{ "sasl-line-max 255\n", 1, "from 256 to 65536" },
	{ "sasl-line-max 65537\n", 1, "from 256 to 65536" },
	{ "require-tls maybe\n", 1,
	    "require-tls: expected \"yes\", \"no\" or \"warn\", not \"maybe\"" },
	{ "require-tls WARN\n", 1, "require-tls: expected" },

	/* metrics-listen. */
	{ "metrics-listen\n", 1,
	    "metrics-listen: expected \"metrics-listen ADDRESS:PORT\"" },
	{ "metrics-listen localhost:9100\n", 1,
	    "metrics-listen: bad address \"localhost:9100\"" },
	{ "metrics-listen 127.0.0.1:0\n", 1, "metrics-listen: bad address" },
	{ "metrics-listen 127.0.0.1:9100\nmetrics-listen [::1]:9100\n", 2,
	    "metrics-listen: given twice (first on line 1)" },
	{ "metrics-listen 127.0.0.1:995\nlisten pop3s 127.0.0.1:995\n"
	    "backend 127.0.0.1:110\ncertificate @D@/cert.pem\n"
	    "key @D@/key.pem\n", 1, "metrics-listen: \"127.0.0.1:995\" is "
	    "also a listen address (line 2)" },

	/* plaintext-allow. */
	{ "plaintext-allow 10.0.0.0/33\n", 1, "bad network \"10.0.0.0/33\"" },
	{ "plaintext-allow ::1/129\n", 1, "bad network \"::1/129\"" },
	{ "plaintext-allow 127.0.0.1 10.0.0/8\n", 1, "bad network \"10.0.0/8\"" },
	{ "plaintext-allow 10.0.0.0/\n", 1, "bad network" },
	{ "plaintext-allow /8\n", 1, "bad network" },
	{ "plaintext-allow 10.0.0.0/-1\n", 1, "bad network" },
	{ "plaintext-allow 10.0.0.0/8/8\n", 1, "bad network" },
	{ "plaintext-allow localhost\n", 1, "bad network \"localhost\"" },
	{ "plaintext-allow fe80::1%eth0\n", 1, "bad network" },

	/* Strings given once. */
	{ "user a\nuser b\n", 2, "user: given more than once" },
	{ "group a\ngroup a\n", 2, "group: given more than once" },
	{ "chroot /a\nchroot /b\n", 2, "chroot: given more than once" },
	{ "user \"\"\n", 1, "user: must not be empty" },

	/* max-sessions-per-ip. */
	{ "max-sessions-per-ip\n", 1,
	    "max-sessions-per-ip: expected \"max-sessions-per-ip N\"" },
	{ "max-sessions-per-ip -1\n", 1,
	    "max-sessions-per-ip: \"-1\" is not a number from 0 to 1000000" },
	{ "max-sessions-per-ip 1000001\n", 1, "from 0 to 1000000" },
	{ "max-sessions-per-ip ten\n", 1, "is not a number" },

	/* per-ip-ipv6-prefix. */
	{ "per-ip-ipv6-prefix\n", 1,
	    "per-ip-ipv6-prefix: expected \"per-ip-ipv6-prefix N\"" },
	{ "per-ip-ipv6-prefix 0\n", 1,
	    "per-ip-ipv6-prefix: \"0\" is not a number from 1 to 128" },
	{ "per-ip-ipv6-prefix 129\n", 1, "from 1 to 128" },
	{ "per-ip-ipv6-prefix /64\n", 1, "is not a number" },

	/* ocsp-staple. */
	{ "ocsp-staple\n", 1, "ocsp-staple: expected \"ocsp-staple PATH\"" },
	{ "ocsp-staple @D@/staple.der\n", 1,
	    "ocsp-staple: must follow a certificate and its key" },
	{ "certificate @D@/cert.pem\nocsp-staple @D@/staple.der\n", 2,
	    "ocsp-staple: must follow a certificate and its key" },
	{ "certificate @D@/cert.pem\nkey @D@/key.pem\n"
	    "ocsp-staple @D@/staple.der\nocsp-staple @D@/staple.der\n", 4,
	    "ocsp-staple: certificate \"@D@/cert.pem\" already has one" },
	{ "certificate @D@/cert.pem\nkey @D@/key.pem\n"
	    "ocsp-staple @D@/nope.der\n", 3,
	    "cannot read OCSP response \"@D@/nope.der\": No such file" },
	{ "certificate @D@/cert.pem\nkey @D@/key.pem\n"
	    "ocsp-staple @D@/staple.pem\n", 3,
	    "ocsp-staple: \"@D@/staple.pem\" is not a DER OCSP response" },
	{ "certificate @D@/cert.pem\nkey @D@/key.pem\n"
	    "ocsp-staple @D@/empty.der\n", 3, "is not a DER OCSP response" },
	{ "certificate @D@/cert.pem\nkey @D@/key.pem\n"
	    "ocsp-staple @D@/big.pem\n", 3, "is larger than" },

	/* TLS policy: libtls judges the values, with the line number. */
	{ "tls-protocols\n", 1,
	    "tls-protocols: expected \"tls-protocols PROTOCOLS\"" },
	{ "tls-protocols tlsv1.4\n", 1,
	    "tls-protocols: bad protocol list \"tlsv1.4\"" },
	{ "tls-protocols \"\"\n", 1, "bad protocol list \"\"" },
	{ "tls-protocols tlsv1.2,,tlsv1.3\n", 1, "bad protocol list" },
	{ "tls-protocols secure\ntls-protocols all\n", 2,
	    "tls-protocols: given more than once" },
	{ "tls-ciphers\n", 1, "tls-ciphers: expected \"tls-ciphers CIPHERS\"" },
	{ "\ntls-ciphers bogus\n", 2,
	    "tls-ciphers: libtls refuses \"bogus\": no ciphers for 'bogus'" },
	{ "tls-ciphers \"\"\n", 1, "tls-ciphers: libtls refuses \"\"" },
	{ "tls-ciphers secure\ntls-ciphers compat\n", 2,
	    "tls-ciphers: given more than once" },
	{ "tls-curves X25519 P-256\n", 1,
	    "tls-curves: expected \"tls-curves CURVES\"" },
	{ "tls-curves P-999\n", 1,
	    "tls-curves: libtls refuses \"P-999\": invalid ecdhe curve" },
	{ "tls-curves X25519\ntls-curves P-256\n", 2,
	    "tls-curves: given more than once" },
	{ "tls-session-lifetime\n", 1, "tls-session-lifetime: expected" },
	{ "tls-session-lifetime 3s\n", 1,
	    "tls-session-lifetime: bad duration \"3s\" (expected \"off\" "
	    "or 4s to 24h)" },
	{ "tls-session-lifetime 25h\n", 1, "bad duration \"25h\"" },
	{ "tls-session-lifetime on\n", 1, "bad duration \"on\"" },
	{ "tls-session-lifetime 0\n", 1, "bad duration \"0\"" },
	{ "tls-client-cert maybe\n", 1,
	    "tls-client-cert: expected \"none\", \"optional\" or "
	    "\"required\", not \"maybe\"" },
	{ "tls-client-cert none\ntls-client-cert none\n", 2,
	    "tls-client-cert: given more than once" },
	{ "tls-client-ca\n", 1, "tls-client-ca: expected" },
	{ "tls-client-ca @D@/nope.pem\n", 1,
	    "cannot read CA file \"@D@/nope.pem\": No such file" },
	{ "tls-client-ca @D@/notcert.pem\n", 1,
	    "tls-client-ca: \"@D@/notcert.pem\" holds no PEM certificate" },
	{ "tls-client-ca @D@/ca.pem\ntls-client-ca @D@/ca.pem\n", 2,
	    "tls-client-ca: given more than once" },
	/* The pair must make sense as a whole, reported where it is. */
	{ BASE "\ntls-client-cert required\n", 6,
	    "tls-client-cert required needs a tls-client-ca file" },
	{ BASE "tls-client-cert optional\n", 5,
	    "tls-client-cert optional needs a tls-client-ca file" },
	{ BASE "tls-client-ca @D@/ca.pem\n", 5,
	    "tls-client-ca has no effect without \"tls-client-cert optional\"" },
	{ BASE "tls-client-ca @D@/ca.pem\ntls-client-cert none\n", 5,
	    "tls-client-ca has no effect" },

	/* An error after a good prefix is still reported at its line. */
	{ BASE "max-sessions 5\nlisten pop3 *:995\n", 6, "duplicate address" },
};

/* Issue 6 directives: exec backends, PROXY protocol both ways, listen tls. */
static void
test_backend_exec_proxy(void **state)
{
	struct conf *c;

	(void)state;
	c = load("listen tls 127.0.0.1:109\n"
	    "backend exec /bin/cat -u \"a b\"\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\n"
	    "accept-proxy-protocol 10.0.0.0/8\naccept-proxy-protocol ::1\n");
	assert_non_null(c);
	assert_int_equal(c->listens[0].kind, LISTEN_TLS);
	assert_string_equal(listen_kind_name(LISTEN_TLS), "tls");
	assert_int_equal(c->backend.kind, BACKEND_EXEC);
	assert_string_equal(c->backend.argv[0], "/bin/cat");
	assert_string_equal(c->backend.argv[1], "-u");
	assert_string_equal(c->backend.argv[2], "a b");
	assert_null(c->backend.argv[3]);
	assert_string_equal(c->backend.text, "/bin/cat");
	assert_int_equal(c->naccept_proxy, 2);
	assert_int_equal(c->backend.proxy_version, 0);
	/* One spawner serves one process: auto means one worker here. */
	assert_int_equal(c->workers, 1);
	conf_free(c);

	c = load("listen pop3s *:995\nbackend exec /bin/cat\nworkers auto\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\n");
	assert_non_null(c);
	assert_int_equal(c->workers, 1);
	conf_free(c);
	expect_error("listen pop3s *:995\nbackend exec /bin/cat\nworkers 2\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\n", 3,
	    "more than one worker cannot be used");

	c = load(BASE "backend-proxy-protocol v2\n");
	assert_non_null(c);
	assert_int_equal(c->backend.proxy_version, 2);
	conf_free(c);

	expect_error("listen pop3s *:995\nbackend exec /bin/cat\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\n"
	    "backend-proxy-protocol v1\n", 5,
	    "cannot be used with \"backend exec\"");
}

/* require-tls warn and metrics-listen: what they set. */
static void
test_observability(void **state)
{
	const struct sockaddr_in *sin;
	struct conf *c;

	(void)state;
	c = load("listen pop3 *:110\nbackend 127.0.0.1:1110\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\n");
	assert_non_null(c);
	assert_true(c->require_tls);
	assert_false(c->require_tls_warn);
	assert_false(c->have_metrics);
	conf_free(c);
	c = load("listen pop3 *:110\nbackend 127.0.0.1:1110\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\nrequire-tls warn\n"
	    "metrics-listen 127.0.0.1:9100\n");
	if (c == NULL)
		fail_msg("%s", errbuf);
	assert_false(c->require_tls);
	assert_true(c->require_tls_warn);
	assert_true(c->have_metrics);
	assert_string_equal(c->metrics_listen.text, "127.0.0.1:9100");
	assert_int_equal(c->metrics_listen.line, 6);
	sin = (const struct sockaddr_in *)&c->metrics_listen.addr;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 9100);
	conf_free(c);
	/* A later line sets it again, warn or not. */
	c = load("listen pop3 *:110\nbackend 127.0.0.1:1110\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\nrequire-tls warn\n"
	    "require-tls yes\nmetrics-listen *:9100\n");
	assert_non_null(c);
	assert_true(c->require_tls);
	assert_false(c->require_tls_warn);
	assert_true(c->metrics_listen.wildcard);
	conf_free(c);
}

static void
test_errors(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(errcases) / sizeof(errcases[0]); i++)
		expect_error(errcases[i].text, errcases[i].line,
		    errcases[i].want);
}

/* The TLS operations directives: what each good line sets. */
static void
test_tls_directives(void **state)
{
	static const struct {
		const char	*text;		/* after BASE */
		uint32_t	 protocols;
		const char	*ciphers;	/* NULL: not set */
		const char	*curves;
		int		 lifetime;
		enum client_cert_mode cc;
		int		 per_ip;
	} cases[] = {
		{ "", TLS_PROTOCOL_TLSv1_2 | TLS_PROTOCOL_TLSv1_3, NULL, NULL,
		    7200, CLIENT_CERT_NONE, 100 },
		{ "tls-protocols tlsv1.3\n", TLS_PROTOCOL_TLSv1_3, NULL, NULL,
		    7200, CLIENT_CERT_NONE, 100 },
		{ "tls-protocols secure\n", TLS_PROTOCOLS_DEFAULT, NULL, NULL,
		    7200, CLIENT_CERT_NONE, 100 },
		{ "tls-protocols \"tlsv1.1,tlsv1.2\"\n",
		    TLS_PROTOCOL_TLSv1_1 | TLS_PROTOCOL_TLSv1_2, NULL, NULL,
		    7200, CLIENT_CERT_NONE, 100 },
		{ "tls-ciphers compat\ntls-curves X25519,P-256\n",
		    TLS_PROTOCOLS_DEFAULT, "compat", "X25519,P-256", 7200,
		    CLIENT_CERT_NONE, 100 },
		{ "tls-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:HIGH:!aNULL\n",
		    TLS_PROTOCOLS_DEFAULT,
		    "ECDHE-ECDSA-AES128-GCM-SHA256:HIGH:!aNULL", NULL, 7200,
		    CLIENT_CERT_NONE, 100 },
		{ "tls-session-lifetime off\n", TLS_PROTOCOLS_DEFAULT, NULL,
		    NULL, 0, CLIENT_CERT_NONE, 100 },
		{ "tls-session-lifetime 4s\n", TLS_PROTOCOLS_DEFAULT, NULL,
		    NULL, 4, CLIENT_CERT_NONE, 100 },
		{ "tls-session-lifetime 24h\n", TLS_PROTOCOLS_DEFAULT, NULL,
		    NULL, 86400, CLIENT_CERT_NONE, 100 },
		{ "tls-session-lifetime 90.9\n", TLS_PROTOCOLS_DEFAULT, NULL,
		    NULL, 90, CLIENT_CERT_NONE, 100 },
		{ "tls-client-cert optional\ntls-client-ca @D@/ca.pem\n",
		    TLS_PROTOCOLS_DEFAULT, NULL, NULL, 7200,
		    CLIENT_CERT_OPTIONAL, 100 },
		{ "tls-client-ca @D@/ca.pem\ntls-client-cert required\n",
		    TLS_PROTOCOLS_DEFAULT, NULL, NULL, 7200,
		    CLIENT_CERT_REQUIRED, 100 },
		{ "tls-client-cert none\n", TLS_PROTOCOLS_DEFAULT, NULL, NULL,
		    7200, CLIENT_CERT_NONE, 100 },
		{ "max-sessions-per-ip 0\n", TLS_PROTOCOLS_DEFAULT, NULL, NULL,
		    7200, CLIENT_CERT_NONE, 0 },
		{ "max-sessions-per-ip 16\n", TLS_PROTOCOLS_DEFAULT, NULL, NULL,
		    7200, CLIENT_CERT_NONE, 16 },
	};
	char text[1024];
	struct conf *c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", BASE, cases[i].text);
		if ((c = load(text)) == NULL)
			fail_msg("case %zu: %s", i, errbuf);
		assert_int_equal(c->tls_protocols, cases[i].protocols);
		if (cases[i].ciphers == NULL)
			assert_null(c->tls_ciphers);
		else
			assert_string_equal(c->tls_ciphers, cases[i].ciphers);
		if (cases[i].curves == NULL)
			assert_null(c->tls_curves);
		else
			assert_string_equal(c->tls_curves, cases[i].curves);
		assert_int_equal(c->tls_session_lifetime, cases[i].lifetime);
		assert_int_equal(c->tls_client_cert, cases[i].cc);
		if (cases[i].cc == CLIENT_CERT_NONE)
			assert_null(c->tls_client_ca);
		else
			assert_int_equal(c->tls_client_ca_len,
			    2 * strlen(CERT_PEM));
		assert_int_equal(c->max_sessions_per_ip, cases[i].per_ip);
		conf_free(c);
	}
}

/* No listen line is no error: the sockets may come from systemd or
 * inetd, which conf_load cannot know (the start-up checks that). */
static void
test_listenless(void **state)
{
	struct conf *c;

	(void)state;
	c = load("backend 127.0.0.1:110\ncertificate @D@/cert.pem\n"
	    "key @D@/key.pem\n");
	if (c == NULL)
		fail_msg("%s", errbuf);
	assert_int_equal(c->nlistens, 0);
	conf_free(c);
}

/* max-sessions-per-ip: unset, a tenth of max-sessions (rounded up, at
 * least 10) wherever max-sessions is written; set, what is written,
 * 0 for no limit. per-ip-ipv6-prefix: 64 unless set. */
static void
test_per_ip(void **state)
{
	static const struct {
		const char	*text;		/* after BASE */
		int		 per_ip;
		int		 prefix;
	} cases[] = {
		{ "", 100, 64 },
		{ "max-sessions 2000\n", 200, 64 },
		{ "max-sessions 1001\n", 101, 64 },
		{ "max-sessions 99\n", 10, 64 },
		{ "max-sessions 4\n", 10, 64 },
		{ "max-sessions-per-ip 0\n", 0, 64 },
		{ "max-sessions-per-ip 3\nmax-sessions 5000\n", 3, 64 },
		{ "max-sessions 5000\nmax-sessions-per-ip 3\n", 3, 64 },
		{ "per-ip-ipv6-prefix 48\n", 100, 48 },
		{ "per-ip-ipv6-prefix 128\nmax-sessions-per-ip 2\n", 2, 128 },
	};
	char text[1024];
	struct conf *c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", BASE, cases[i].text);
		if ((c = load(text)) == NULL)
			fail_msg("case %zu: %s", i, errbuf);
		if (c->max_sessions_per_ip != cases[i].per_ip ||
		    c->per_ip_ipv6_prefix != cases[i].prefix)
			fail_msg("case %zu: per-ip %d /%d, wanted %d /%d", i,
			    c->max_sessions_per_ip, c->per_ip_ipv6_prefix,
			    cases[i].per_ip, cases[i].prefix);
		conf_free(c);
	}
	assert_int_equal(conf_default_per_ip(1), 10);
	assert_int_equal(conf_default_per_ip(1000000), 100000);
}

/* Each OCSP staple belongs to the pair just before it. */
static void
test_ocsp_staple(void **state)
{
	char path[256];
	struct conf *c;

	(void)state;
	c = load(BASE "ocsp-staple @D@/staple.der\n"
	    "certificate \"@D@/cert2 with space.pem\"\nkey @D@/ec.key\n"
	    "certificate @D@/cert.pem\nkey @D@/key.pem\n"
	    "ocsp-staple \"@D@/staple.der\"\n");
	if (c == NULL)
		fail_msg("%s", errbuf);
	assert_int_equal(c->nkeypairs, 3);
	path_in_dir(path, sizeof(path), "staple.der");
	assert_string_equal(c->keypairs[0].ocsp_path, path);
	assert_int_equal(c->keypairs[0].ocsp_len, sizeof(OCSP_DER) - 1);
	assert_memory_equal(c->keypairs[0].ocsp, OCSP_DER,
	    sizeof(OCSP_DER) - 1);
	assert_null(c->keypairs[1].ocsp_path);
	assert_null(c->keypairs[1].ocsp);
	assert_int_equal(c->keypairs[1].ocsp_len, 0);
	assert_string_equal(c->keypairs[2].ocsp_path, path);
	conf_free(c);
}

/* tls-ticket-key-file: read and parsed at load time, its mode checked
 * like a private key's, its errors placed at the directive's line. */
static void
test_ticket_key_file(void **state)
{
	char path[256];
	struct conf *c;

	(void)state;
	c = load(BASE "tls-ticket-key-file @D@/tickets.key\n");
	if (c == NULL)
		fail_msg("%s", errbuf);
	path_in_dir(path, sizeof(path), "tickets.key");
	assert_string_equal(c->tls_ticket_key_path, path);
	assert_int_equal(c->tls_ticket_keys.n, 1);
	assert_int_equal(c->tls_ticket_keys.rev[0], TICKET_REV80);
	conf_free(c);
	c = load(BASE);
	assert_non_null(c);
	assert_null(c->tls_ticket_key_path);
	assert_int_equal(c->tls_ticket_keys.n, 0);
	conf_free(c);

	expect_error(BASE "tls-ticket-key-file @D@/tickets644.key\n", 5,
	    "ticket key file \"@D@/tickets644.key\" is accessible by group "
	    "or others (mode 0644)");
	expect_error(BASE "\ntls-ticket-key-file @D@/tickets-bad.key\n", 6,
	    "tls-ticket-key-file \"@D@/tickets-bad.key\" line 2: not a "
	    "base64 key");
	expect_error(BASE "tls-ticket-key-file @D@/cert.pem\n", 5,
	    "is accessible by group or others");
	expect_error(BASE "tls-ticket-key-file @D@/key.pem\n", 5,
	    "line 1: not a base64 key");
	expect_error(BASE "tls-ticket-key-file @D@/nonexistent\n", 5,
	    "cannot read ticket key \"@D@/nonexistent\"");
	expect_error(BASE "tls-ticket-key-file @D@/tickets.key\n"
	    "tls-ticket-key-file @D@/tickets.key\n", 6,
	    "tls-ticket-key-file: given more than once");
	expect_error(BASE "tls-ticket-key-file\n", 5,
	    "expected \"tls-ticket-key-file PATH\"");
	/* No resumption, no use for the keys: say so rather than ignore. */
	expect_error(BASE "tls-ticket-key-file @D@/tickets.key\n"
	    "tls-session-lifetime 1h\ntls-session-lifetime off\n", 7,
	    "tls-session-lifetime off: resumption is off, so the "
	    "tls-ticket-key-file on line 5 would not be used");
}

/* A key at 0600 or 0400 is fine where 0640 was refused. */
static void
test_key_modes(void **state)
{
	char path[256];
	struct conf *c;

	(void)state;
	expect_error("certificate @D@/cert.pem\nkey @D@/key640.pem\n", 2,
	    "(mode 0640)");
	path_in_dir(path, sizeof(path), "key640.pem");
	assert_int_equal(chmod(path, 0600), 0);
	c = load(BASE "certificate @D@/cert.pem\nkey @D@/key640.pem\n");
	assert_int_equal(chmod(path, 0640), 0);
	if (c == NULL)
		fail_msg("%s", errbuf);
	assert_int_equal(c->nkeypairs, 2);
	conf_free(c);
}

static void
test_missing_file(void **state)
{
	struct conf *c;
	char err[256];

	(void)state;
	c = conf_load("/nonexistent/popsd.conf", err, sizeof(err));
	assert_null(c);
	assert_string_equal(err,
	    "/nonexistent/popsd.conf: No such file or directory");
	/* A tiny or absent error buffer is not written past. */
	assert_null(conf_load("/nonexistent/popsd.conf", err, 4));
	assert_string_equal(err, "/no");
	assert_null(conf_load("/nonexistent/popsd.conf", NULL, 0));
	conf_free(NULL);
}

static void
test_long_lines(void **state)
{
	static char text[8192];
	struct conf *c;
	size_t n;

	(void)state;
	/* 4096 bytes without the ending: fine, even with a CR. */
	expand(text, sizeof(text), BASE);
	n = strlen(text);
	memset(text + n, '#', 4096);
	memcpy(text + n + 4096, "\r\n", 2);
	c = load_bytes(text, n + 4098);
	if (c == NULL)
		fail_msg("%s", errbuf);
	conf_free(c);
	/* ... and without a final newline. */
	c = load_bytes(text, n + 4096);
	if (c == NULL)
		fail_msg("%s", errbuf);
	conf_free(c);

	/* 4097 bytes: refused, with or without a line ending. */
	memset(text + n, '#', 4097);
	text[n + 4097] = '\n';
	assert_null(load_bytes(text, n + 4098));
	check_error(5, "line too long");
	assert_null(load_bytes(text, n + 4097));
	check_error(5, "line too long");
	memset(text + n, '#', 6000);
	assert_null(load_bytes(text, n + 6000));
	check_error(5, "line too long");
}

static void
test_nul_byte(void **state)
{
	static const char text[] = "# ok\nuser a\0b\n";

	(void)state;
	assert_null(load_bytes(text, sizeof(text) - 1));
	check_error(2, "NUL byte");
}

static void
test_too_many(void **state)
{
	char text[8192];
	size_t n = 0;
	int i;

	(void)state;
	for (i = 0; i <= CONF_MAX_LISTEN; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "listen pop3s 127.0.0.1:%d\n", 1000 + i);
	expect_error(text, CONF_MAX_LISTEN + 1, "too many listen directives");

	n = 0;
	for (i = 0; i <= CONF_MAX_KEYPAIRS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "certificate @D@/cert.pem\nkey @D@/key.pem\n");
	expect_error(text, 2 * CONF_MAX_KEYPAIRS + 1, "too many certificates");

	/* 64 networks fit, on one line or over several; 65 do not. */
	n = (size_t)snprintf(text, sizeof(text), "plaintext-allow");
	for (i = 0; i < CONF_MAX_CIDR; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, " 10.0.%d.0/24",
		    i);
	snprintf(text + n, sizeof(text) - n, "\nplaintext-allow ::1\n");
	expect_error(text, 2, "too many networks");
	/* 65 on one line is a usage error; far more, too many words. */
	n = (size_t)snprintf(text, sizeof(text), "plaintext-allow");
	for (i = 0; i <= CONF_MAX_CIDR; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, " ::1");
	snprintf(text + n, sizeof(text) - n, "\n");
	expect_error(text, 1, "plaintext-allow: expected");
	for (i = 0; i < 100; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, " ::1");
	snprintf(text + n, sizeof(text) - n, "\n");
	expect_error(text, 1, "too many arguments");
}

static void
test_durations(void **state)
{
	static const struct {
		const char	*s;
		double		 want;	/* 0: must be refused */
	} cases[] = {
		{ "30", 30 }, { "30s", 30 }, { "10m", 600 }, { "1h", 3600 },
		{ "0.5s", 0.5 }, { "0.25", 0.25 }, { "1.5m", 90 },
		{ "24h", 86400 }, { "1440m", 86400 }, { "86400", 86400 },
		{ "007", 7 },
		{ "", 0 }, { "0", 0 }, { "0s", 0 }, { "0.0", 0 }, { "s", 0 },
		{ "-1", 0 }, { "+1", 0 }, { " 1", 0 }, { "1 ", 0 },
		{ "1d", 0 }, { "1.5.5", 0 }, { ".5", 0 }, { "5.", 0 },
		{ "1e3", 0 }, { "25h", 0 }, { "86401", 0 }, { "1ss", 0 },
		{ "1hs", 0 }, { "0x10", 0 }, { "inf", 0 }, { "nan", 0 },
		{ "1S", 0 },
		{ "99999999999999999999999999999999999999999999999999", 0 },
	};
	size_t i;
	double d;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		d = -42;
		if (cases[i].want == 0) {
			if (conf_parse_duration(cases[i].s, &d) != -1)
				fail_msg("\"%s\" accepted", cases[i].s);
			assert_true(d == -42);
			continue;
		}
		if (conf_parse_duration(cases[i].s, &d) != 0)
			fail_msg("\"%s\" refused", cases[i].s);
		if (d != cases[i].want)
			fail_msg("\"%s\" gave %g, not %g", cases[i].s, d,
			    cases[i].want);
	}
	assert_int_equal(conf_parse_duration(NULL, &d), -1);
}

static void
sockaddr_of(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, s, &sin6->sin6_addr), 1);
	sin6->sin6_family = AF_INET6;
}

static void
test_cidr(void **state)
{
	static const struct {
		const char	*addr;
		bool		 match;
	} cases[] = {
		{ "127.0.0.1", true }, { "127.255.255.255", true },
		{ "128.0.0.1", false }, { "126.255.255.255", false },
		{ "::ffff:127.0.0.1", true }, { "::ffff:128.0.0.1", false },
		{ "::127.0.0.1", false },	/* v4-compatible, not mapped */
		{ "::1", true }, { "::2", false }, { "0.0.0.1", false },
		{ "10.1.2.2", true }, { "10.1.2.3", true },
		{ "10.1.2.4", false }, { "10.1.2.1", false },
		{ "::ffff:10.1.2.3", true }, { "::ffff:10.1.2.4", false },
		{ "fe80::1", true }, { "febf:ffff::1", true },
		{ "fec0::1", false }, { "fe7f::1", false },
		{ "192.168.7.9", true }, { "192.168.7.8", false },
		{ "2001:db8::1", false },
	};
	struct sockaddr_storage ss;
	struct sockaddr_un sunx;
	const struct conf_cidr *nets;
	struct conf *c;
	size_t i;
	int n;

	(void)state;
	c = load(BASE "plaintext-allow 127.0.0.0/8 ::1\n"
	    "plaintext-allow 10.1.2.3/31 fe80::1234/10 192.168.7.9\n");
	if (c == NULL)
		fail_msg("%s", errbuf);
	nets = c->plaintext_allow;
	n = c->nplaintext_allow;
	assert_int_equal(n, 5);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sockaddr_of(cases[i].addr, &ss);
		if (conf_cidr_match(nets, n, (struct sockaddr *)&ss) !=
		    cases[i].match)
			fail_msg("%s: expected %s", cases[i].addr,
			    cases[i].match ? "match" : "no match");
	}
	sockaddr_of("127.0.0.1", &ss);
	assert_false(conf_cidr_match(nets, 0, (struct sockaddr *)&ss));
	assert_false(conf_cidr_match(nets, n, NULL));
	memset(&sunx, 0, sizeof(sunx));
	sunx.sun_family = AF_UNIX;
	assert_false(conf_cidr_match(nets, n, (struct sockaddr *)&sunx));
	conf_free(c);

	/* /0 matches its whole family, and only it (mapped aside). */
	c = load(BASE "plaintext-allow 0.0.0.0/0\n");
	assert_non_null(c);
	sockaddr_of("203.0.113.5", &ss);
	assert_true(conf_cidr_match(c->plaintext_allow, 1,
	    (struct sockaddr *)&ss));
	sockaddr_of("::ffff:203.0.113.5", &ss);
	assert_true(conf_cidr_match(c->plaintext_allow, 1,
	    (struct sockaddr *)&ss));
	sockaddr_of("2001:db8::5", &ss);
	assert_false(conf_cidr_match(c->plaintext_allow, 1,
	    (struct sockaddr *)&ss));
	conf_free(c);
}

/* Every prefix of v4 and v6 parses with host bits cleared. */
static void
test_cidr_prefixes(void **state)
{
	char text[512];
	struct conf *c;
	int p, i;

	(void)state;
	for (p = 0; p <= 128; p++) {
		if (p <= 32)
			snprintf(text, sizeof(text), BASE "plaintext-allow "
			    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/%d "
			    "255.255.255.255/%d\n", p, p);
		else
			snprintf(text, sizeof(text), BASE "plaintext-allow "
			    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/%d\n", p);
		c = load(text);
		if (c == NULL)
			fail_msg("%s", errbuf);
		for (i = 0; i < 16; i++) {
			int bits = p - 8 * i;
			uint8_t want = bits >= 8 ? 0xff : bits <= 0 ? 0 :
			    (uint8_t)(0xff00 >> bits);

			assert_int_equal(c->plaintext_allow[0].addr[i], want);
			if (p <= 32 && i < 4)
				assert_int_equal(c->plaintext_allow[1].addr[i],
				    want);
		}
		assert_int_equal(c->plaintext_allow[0].prefix, p);
		conf_free(c);
	}
}

/* Mangled versions of the good file never crash and always explain. */
static void
test_mangled(void **state)
{
	static char text[8192];
	uint32_t seed = 12345;
	size_t len, pos;
	struct conf *c;
	int i, j;

	(void)state;
	expand(text, sizeof(text), good_conf);
	/* Keep the resolver out of it: a unix backend, same length. */
	pos = (size_t)(strstr(text, "backend localhost:1110") - text);
	memcpy(text + pos, "backend unix:/pop3.soc", 22);
	len = strlen(text);
	for (i = 0; i < 300; i++) {
		char copy[8192];

		memcpy(copy, text, len);
		for (j = 0; j < 4; j++) {
			seed = seed * 1103515245 + 12345;
			pos = (seed >> 8) % len;
			seed = seed * 1103515245 + 12345;
			copy[pos] = (char)(seed >> 16);
		}
		c = load_bytes(copy, len);
		if (c == NULL && errbuf[0] == '\0')
			fail_msg("refused without a message");
		if (c == NULL)
			check_error(atoi(errbuf + strlen(cfpath) + 1), "");
		conf_free(c);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_good_crlf),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_backend_numeric),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_observability),
		cmocka_unit_test(test_backend_exec_proxy),
		cmocka_unit_test(test_tls_directives),
		cmocka_unit_test(test_listenless),
		cmocka_unit_test(test_per_ip),
		cmocka_unit_test(test_ocsp_staple),
		cmocka_unit_test(test_ticket_key_file),
		cmocka_unit_test(test_key_modes),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_too_many),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_cidr_prefixes),
		cmocka_unit_test(test_mangled),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
