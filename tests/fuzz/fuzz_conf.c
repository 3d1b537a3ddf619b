/*
 * fuzz_conf.c — libFuzzer harness for the configuration parser (conf.c).
 *
 * Input: the bytes of a configuration file. conf_load() takes a path, so
 * each run writes the input into one memfd and passes its /proc/self/fd
 * path: no disk I/O, nothing left behind.
 *
 * The parser opens the certificate, key, OCSP and CA files that the input
 * names, and resolves backend host names. Linked with -Wl,--wrap=open and
 * -Wl,--wrap=getaddrinfo (see tests/robustness.mk), conf.c's calls come
 * here: open() accepts only names without a '/', which it opens inside a
 * scratch directory made at start-up (valid and invalid PEM files, a key
 * readable by others, a directory); getaddrinfo() gets AI_NUMERICHOST, so
 * no name ever reaches DNS ("localhost" is mapped to 127.0.0.1 so that the
 * success path of a named backend is reached too).
 *
 * Checked on every input:
 *  - success and failure are exclusive: a conf and an empty message, or
 *    NULL and "PATH: ..." / "PATH:LINE: ..." with LINE within the input;
 *  - the message is one line of printable ASCII: file text is quoted only
 *    after log_sanitize(), so a config cannot forge log or terminal output;
 *  - a loaded conf keeps the documented bounds (listens, backend address
 *    count or exec path, key pairs each with certificate and key bytes,
 *    timeouts in (0, 1 day], session, worker and error limits);
 *  - parsing is deterministic: a second load gives the same outcome;
 *  - conf_free() releases everything (LeakSanitizer).
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

#define ERR_SIZE	1024

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int __real_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...);
int __real_getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res);

static char	scratch[64];
static char	conf_path[64];
static int	conf_fd = -1;
static int	scratch_fd = -1;	/* where open() names resolve */
static bool	print_outcome;		/* FUZZ_CONF_PRINT set */

static void bug(const char *, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void
bug(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_conf: invariant broken: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* --- the wrapped system calls ---------------------------------------- */

int
__wrap_open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	/* Only names inside the scratch directory. */
	if (path == NULL || path[0] == '\0' || strchr(path, '/') != NULL ||
	    (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC))) {
		errno = ENOENT;
		return -1;
	}
	return openat(scratch_fd, path, flags, mode);
}

int
__wrap_getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
	struct addrinfo h;

	memset(&h, 0, sizeof(h));
	if (hints != NULL)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	if (node != NULL && strcmp(node, "localhost") == 0)
		node = "127.0.0.1";
	return __real_getaddrinfo(node, service, &h, res);
}

/* --- set-up ------------------------------------------------------------ */

static void
put(const char *name, const char *text, size_t len, mode_t mode)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", scratch, name);
	fd = __real_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1 || write(fd, text, len) != (ssize_t)len ||
	    fchmod(fd, mode) == -1 || close(fd) == -1) {
		perror(path);
		exit(1);
	}
}

static void
cleanup(void)
{
	static const char *const names[] = {
		"cert.pem", "key.pem", "key-open.pem", "ca.pem", "ocsp.der",
		"notpem.txt", "empty",
	};
	char path[128];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", scratch, names[i]);
		(void)unlink(path);
	}
	snprintf(path, sizeof(path), "%s/dir", scratch);
	(void)rmdir(path);
	(void)rmdir(scratch);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* conf.c only looks for the PEM markers; the bytes need not be a
	 * real certificate or key (tlsconf.c, not fuzzed here, parses them). */
	static const char cert[] = "-----BEGIN CERTIFICATE-----\n"
	    "MIIBfzCCASWgAwIBAgIUZnV6ei1jb25mLWNlcnQ=\n"
	    "-----END CERTIFICATE-----\n";
	static const char key[] = "-----BEGIN PRIVATE KEY-----\n"
	    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
	    "-----END PRIVATE KEY-----\n";
	static const char ocsp[] = "\x30\x03\x0a\x01\x00";
	const char *tmp = getenv("TMPDIR");
	char path[128];

	(void)argc;
	(void)argv;
	print_outcome = getenv("FUZZ_CONF_PRINT") != NULL;
	snprintf(scratch, sizeof(scratch), "%s/fuzz_conf.XXXXXX",
	    tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp");
	if (mkdtemp(scratch) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(cleanup);
	put("cert.pem", cert, sizeof(cert) - 1, 0644);
	put("ca.pem", cert, sizeof(cert) - 1, 0644);
	put("key.pem", key, sizeof(key) - 1, 0600);
	put("key-open.pem", key, sizeof(key) - 1, 0644);
	put("ocsp.der", ocsp, sizeof(ocsp) - 1, 0644);
	put("notpem.txt", "hello\n", 6, 0644);
	put("empty", "", 0, 0644);
	snprintf(path, sizeof(path), "%s/dir", scratch);
	/* Not chdir(): libFuzzer reads the inputs named on its command
	 * line relative to the caller's directory after this returns. */
	if (mkdir(path, 0755) == -1 || (scratch_fd = __real_open(scratch,
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		perror(path);
		exit(1);
	}
	if ((conf_fd = memfd_create("fuzz.conf", MFD_CLOEXEC)) == -1) {
		perror("memfd_create");
		exit(1);
	}
	snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
	return 0;
}

/* --- checks ------------------------------------------------------------ */

static size_t
count_lines(const uint8_t *data, size_t size)
{
	size_t i, n = 1;

	for (i = 0; i < size; i++)
		n += data[i] == '\n';
	return n;
}

static void
check_error(const char *err, size_t lines)
{
	size_t plen = strlen(conf_path), i;
	const char *p;
	long line;

	if (err[0] == '\0')
		bug("conf_load failed without a message");
	if (strncmp(err, conf_path, plen) != 0 || err[plen] != ':')
		bug("message does not start with the path: \"%s\"", err);
	p = err + plen + 1;
	if (*p >= '0' && *p <= '9') {
		line = strtol(p, (char **)&p, 10);
		if (*p != ':' || line < 1 || (size_t)line > lines)
			bug("bad line number in \"%s\" (%zu lines)", err, lines);
	}
	for (i = 0; err[i] != '\0'; i++)
		if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] > 0x7e)
			bug("unsanitized byte 0x%02x in message: \"%s\"",
			    (unsigned char)err[i], err);
}

static bool
timeout_ok(double t)
{
	return t > 0 && t <= 86400;
}

static void
check_conf(const struct conf *c)
{
	int i;

	if (c->refs != 1)
		bug("refs %d", c->refs);
	/* 0 is valid: sockets from systemd or inetd (main.c checks). */
	if (c->nlistens < 0 || c->nlistens > CONF_MAX_LISTEN)
		bug("nlistens %d", c->nlistens);
	for (i = 0; i < c->nlistens; i++)
		if (c->listens[i].addrlen == 0 ||
		    c->listens[i].addrlen > sizeof(c->listens[i].addr) ||
		    memchr(c->listens[i].text, '\0',
		    sizeof(c->listens[i].text)) == NULL)
			bug("listen %d malformed", i);
	if (!c->have_backend)
		bug("no backend");
	if (c->backend.kind == BACKEND_EXEC) {
		if (c->backend.argv[0] == NULL || c->backend.argv[0][0] != '/')
			bug("backend exec without an absolute path");
		for (i = 0; c->backend.argv[i] != NULL; i++)
			if (i >= CONF_MAX_EXEC_ARGS)
				bug("backend exec: too many arguments");
	} else if (c->backend.naddrs < 1 ||
	    c->backend.naddrs > CONF_MAX_BACKEND_ADDRS)
		bug("backend naddrs %d", c->backend.naddrs);
	if (c->backend.proxy_version < 0 || c->backend.proxy_version > 2)
		bug("backend-proxy-protocol %d", c->backend.proxy_version);
	if (c->workers < 1 || c->workers > 64)
		bug("workers %d", c->workers);
	if (c->naccept_proxy < 0 || c->naccept_proxy > CONF_MAX_CIDR)
		bug("naccept_proxy %d", c->naccept_proxy);
	if (c->nkeypairs < 1 || c->nkeypairs > CONF_MAX_KEYPAIRS)
		bug("nkeypairs %d", c->nkeypairs);
	for (i = 0; i < c->nkeypairs; i++)
		if (c->keypairs[i].cert == NULL || c->keypairs[i].key == NULL ||
		    c->keypairs[i].cert_len == 0 || c->keypairs[i].key_len == 0)
			bug("key pair %d incomplete", i);
	if (!timeout_ok(c->timeout_connect) || !timeout_ok(c->timeout_handshake) ||
	    !timeout_ok(c->timeout_login) || !timeout_ok(c->timeout_idle) ||
	    !timeout_ok(c->timeout_drain))
		bug("timeout out of range");
	if (c->max_sessions < 1 || c->max_sessions > 1000000 ||
	    c->max_sessions_per_ip < 0 || c->max_auth_errors < 1 ||
	    c->sasl_line_max < 256 ||
	    c->nplaintext_allow < 0 || c->nplaintext_allow > CONF_MAX_CIDR)
		bug("limit out of range");
	for (i = 0; i < c->nplaintext_allow; i++)
		if (c->plaintext_allow[i].prefix < 0 ||
		    c->plaintext_allow[i].prefix >
		    (c->plaintext_allow[i].family == AF_INET6 ? 128 : 32))
			bug("plaintext-allow prefix %d",
			    c->plaintext_allow[i].prefix);
	if ((c->tls_client_cert != CLIENT_CERT_NONE) !=
	    (c->tls_client_ca != NULL))
		bug("tls-client-cert without a CA, or a CA without it");
}

/* load: one conf_load of the current memfd; checks; returns a summary
 * (the error text, or "OK") in out for the determinism check. */
static void
load(size_t lines, char *out, size_t outsz)
{
	char err[ERR_SIZE];
	struct conf *c;

	memset(err, 'x', sizeof(err));
	c = conf_load(conf_path, err, sizeof(err));
	if (memchr(err, '\0', sizeof(err)) == NULL)
		bug("message not terminated");
	if (c != NULL) {
		if (err[0] != '\0')
			bug("success with a message: \"%s\"", err);
		check_conf(c);
		conf_free(c);
		snprintf(out, outsz, "OK");
	} else {
		check_error(err, lines);
		snprintf(out, outsz, "%s", err);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char first[ERR_SIZE], second[ERR_SIZE];
	size_t lines = count_lines(data, size);

	if (ftruncate(conf_fd, 0) == -1 ||
	    (size > 0 && pwrite(conf_fd, data, size, 0) != (ssize_t)size))
		bug("cannot write the memfd: %s", strerror(errno));
	load(lines, first, sizeof(first));
	load(lines, second, sizeof(second));
	if (strcmp(first, second) != 0)
		bug("not deterministic: \"%s\" then \"%s\"", first, second);
	if (print_outcome)		/* for whoever writes seeds */
		fprintf(stderr, "fuzz_conf: %s\n", first);
	return 0;
}
