/*
 * floor.c — what the kernel and OpenSSL alone cost on this machine: the
 * floor under two CPU targets of issue 8 (bulk <= 0.5 ms per MiB, a full
 * RSA-2048 TLS 1.3 handshake <= 0.6 ms), measured by tests/bench/bench.sh
 * in the same run as the front-ends. No front-end can do its work for less
 * than this floor: if the floor is above a target, so is every front-end.
 *
 *   floor relay [-b BYTES_PER_IO] [-M MIB] [-e none|aes-256-gcm|aes-128-gcm]
 *               [-R RUNS]
 *   floor handshake -c CERT -k KEY [-n N] [-t TICKETS] [-r] [-R BLOCKS] [-l]
 *
 * relay: the cheapest possible TLS-like relay. A forked producer writes MIB
 * MiB (default 1024) into loopback TCP connection A as fast as it can; a
 * forked consumer drains connection B. This process reads up to
 * BYTES_PER_IO (default 16384) of plaintext per readv(2) from A, seals it
 * in place as TLS 1.3-like records of at most 16 KiB each, written
 * together by one write(2) (5-byte header as AAD, a fresh nonce per
 * record: EVP_EncryptInit_ex + EVP_EncryptUpdate + EVP_EncryptFinal_ex +
 * GET_TAG, 16-byte tag) to B. -e none writes the same bytes unencrypted: the kernel's share. The
 * figure is this process's own CPU (getrusage: utime+stime; the sum is
 * exact, the split between them sampled) per MiB of plaintext; on loopback
 * its stime includes the receiver's TCP processing of what it writes, as
 * for a real front-end. RUNS (default 3) runs, each with new connections:
 * ms_per_mib is the best, _med and _max the others.
 *
 * handshake: OpenSSL's own floor for a TLS 1.3 server handshake, with no
 * socket I/O at all. N (default 2000) handshakes after a warm-up, in this
 * one thread, between a client SSL and a server SSL joined by two memory
 * BIOs; default groups and ciphersuites, the server with CERT/KEY and
 * SSL_CTX_set_num_tickets(TICKETS) (default 2, OpenSSL's); the client
 * reads the tickets. Only the server's calls are timed, by
 * CLOCK_THREAD_CPUTIME_ID: SSL_new + SSL_set_bio, each SSL_do_handshake
 * (which also writes the tickets), SSL_shutdown + SSL_free; the clock's own
 * cost is subtracted. -r: the client offers the last ticket it got, so each
 * handshake resumes the previous session (resumed_pct says how many did).
 * The N handshakes are timed in BLOCKS (default 8) blocks: server_ms_per_hs
 * is the best block's mean, _med and _max the others; client_ms_per_hs is
 * the rest of the loop (the client, the BIOs).
 *
 *
 * handshake -l: the same server handshake over loopback TCP, the kernel's
 * share included. A forked client (OpenSSL, blocking socket, its own CPU)
 * connects N + warm-up times, reads the tickets and the close_notify and
 * closes. This process, per connection: accept(2), TCP_NODELAY (as a
 * front-end sets it), SSL_new + SSL_set_fd, SSL_accept (which writes the
 * tickets), SSL_shutdown (close_notify), SSL_free, close(2); all of it
 * timed by this thread's CPU clock, user and system time (the syscalls and
 * the loopback's TCP processing of what it writes): the least a TLS
 * front-end spends per handshake on its client's connection, before it
 * opens a backend connection, relays a byte or logs a line. The output
 * says io=tcp (else io=none), and client_ms_per_hs is 0: not measured.
 *
 * Best of several: on a shared virtual machine other work slows every CPU
 * figure by 10-40 % for seconds at a time; the best run is the floor.
 * Output: one line of key=value pairs on stdout; errors on stderr, exit 1.
 */
#define _GNU_SOURCE
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#define HDR_LEN		5		/* TLS record header */
#define TAG_LEN		16		/* AES-GCM tag */
#define NONCE_LEN	12
#define REC_MAX		16384		/* TLS: plaintext per record */
#define PEER_IO		(256 * 1024)	/* producer's writes, consumer's reads */
#define MAX_IO		(1024 * 1024)
#define MIB		1048576.0
#define HS_WARMUP	50		/* handshakes before the measured ones */
#define MAX_REPEATS	64

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "floor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: floor relay [-b BYTES_PER_IO] [-M MIB] "
	    "[-e none|aes-256-gcm|aes-128-gcm] [-R RUNS]\n"
	    "       floor handshake -c CERT -k KEY [-n N] [-t TICKETS] [-r] "
	    "[-R BLOCKS] [-l]\n");
	exit(2);
}

static long
number(const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		die("%s: not a number in [%ld, %ld]", s, min, max);
	return v;
}

/* --- relay: sockets ------------------------------------------------------ */

static int
listener(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof sa;
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    listen(fd, 1) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die("loopback listener: %s", strerror(errno));
	*port = ntohs(sa.sin_port);
	return fd;
}

/* In a child: connected to 127.0.0.1:PORT, or _exit(1). */
static int
connect_to(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		perror("floor: connect");
		_exit(1);
	}
	return fd;
}

static int
accept_one(int lfd)
{
	int fd;

	if ((fd = accept(lfd, NULL, NULL)) < 0)
		die("accept: %s", strerror(errno));
	close(lfd);
	return fd;
}

/* false on an error other than EINTR */
static bool
write_all(int fd, const unsigned char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* fork_peer: fork a producer or consumer: its pid here, 0 in the child,
 * which does not keep the relay's listening sockets. */
static pid_t
fork_peer(int lfd_a, int lfd_b)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(lfd_a);
		close(lfd_b);
	}
	return pid;
}

/* The producer: BYTES into 127.0.0.1:PORT, then EOF. */
static pid_t
spawn_producer(uint16_t port, long long bytes, int lfd_a, int lfd_b)
{
	static unsigned char buf[PEER_IO];
	size_t n;
	pid_t pid;
	int fd;

	if ((pid = fork_peer(lfd_a, lfd_b)) != 0)
		return pid;
	for (n = 0; n < sizeof buf; n++)
		buf[n] = (unsigned char)(n * 31 + 7);
	fd = connect_to(port);
	while (bytes > 0) {
		n = bytes < PEER_IO ? (size_t)bytes : PEER_IO;
		if (!write_all(fd, buf, n))
			_exit(1);
		bytes -= (long long)n;
	}
	close(fd);
	_exit(0);
}

/* The consumer: reads 127.0.0.1:PORT to EOF. */
static pid_t
spawn_consumer(uint16_t port, int lfd_a, int lfd_b)
{
	static unsigned char buf[PEER_IO];
	ssize_t n;
	pid_t pid;
	int fd;

	if ((pid = fork_peer(lfd_a, lfd_b)) != 0)
		return pid;
	fd = connect_to(port);
	while ((n = read(fd, buf, sizeof buf)) != 0)
		if (n < 0 && errno != EINTR)
			_exit(1);
	_exit(0);
}

static void
reap(pid_t pid, const char *what)
{
	int st;

	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("the %s failed", what);
}

/* --- relay: records --------------------------------------------------- */

struct sealer {
	EVP_CIPHER_CTX	*ctx;			/* NULL: -e none */
	unsigned char	 iv[NONCE_LEN];
	uint64_t	 seq;
};

static void
sealer_init(struct sealer *s, const char *aead)
{
	unsigned char key[EVP_MAX_KEY_LENGTH];
	EVP_CIPHER *c;

	memset(s, 0, sizeof *s);
	if (strcmp(aead, "none") == 0)
		return;
	if (strcmp(aead, "aes-256-gcm") != 0 && strcmp(aead, "aes-128-gcm") != 0)
		usage();
	if ((c = EVP_CIPHER_fetch(NULL, aead, NULL)) == NULL ||
	    (s->ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    RAND_bytes(key, sizeof key) != 1 ||
	    RAND_bytes(s->iv, sizeof s->iv) != 1 ||
	    !EVP_EncryptInit_ex(s->ctx, c, NULL, key, NULL))
		die("%s: cannot set up", aead);
	EVP_CIPHER_free(c);
}

/* REC: a 5-byte header, N bytes of plaintext, room for the tag. */
static void
seal(struct sealer *s, unsigned char *rec, size_t n)
{
	unsigned char nonce[NONCE_LEN], *p = rec + HDR_LEN;
	int outl, finl, i;

	rec[0] = 0x17;				/* application_data */
	rec[1] = 0x03;
	rec[2] = 0x03;
	rec[3] = (unsigned char)((n + TAG_LEN) >> 8);	/* > 16 KiB: wraps */
	rec[4] = (unsigned char)(n + TAG_LEN);
	if (s->ctx == NULL)
		return;
	memcpy(nonce, s->iv, sizeof nonce);
	for (i = 0; i < 8; i++)			/* TLS 1.3: iv ^ sequence */
		nonce[NONCE_LEN - 1 - i] ^= (unsigned char)(s->seq >> (8 * i));
	s->seq++;
	if (!EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) ||
	    !EVP_EncryptUpdate(s->ctx, NULL, &outl, rec, HDR_LEN) ||
	    !EVP_EncryptUpdate(s->ctx, p, &outl, p, (int)n) ||
	    !EVP_EncryptFinal_ex(s->ctx, p + outl, &finl) ||
	    !EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, p + n))
		die("AES-GCM failed");
}

/*
 * Relays A to B until EOF on A: plaintext bytes; *RECORDS written. Each
 * readv(2) of up to IO bytes lands in the payload slots of consecutive
 * records of at most 16 KiB (TLS's limit), each is sealed in place, and
 * all of them leave in one write(2): what a relay that reads IO bytes at
 * a time and coalesces its records would do, with no copy at all.
 */
static long long
relay_loop(int a, int b, size_t io, struct sealer *s, long long *records)
{
	enum { MAXREC = 16, STRIDE = HDR_LEN + REC_MAX + TAG_LEN };
	struct iovec iov[MAXREC];
	unsigned char *buf;
	long long total = 0;
	size_t nslots, k, m, left, out;
	ssize_t n;

	nslots = (io + REC_MAX - 1) / REC_MAX;
	if (nslots == 0 || nslots > MAXREC)
		die("-b: from 1 to %d bytes", MAXREC * REC_MAX);
	if ((buf = malloc(nslots * STRIDE)) == NULL)
		die("out of memory");
	for (k = 0; k < nslots; k++) {
		iov[k].iov_base = buf + k * STRIDE + HDR_LEN;
		iov[k].iov_len = k + 1 < nslots ? REC_MAX : io - k * REC_MAX;
	}
	*records = 0;
	while ((n = readv(a, iov, (int)nslots)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read: %s", strerror(errno));
		}
		/* Every record but the last is full: they are contiguous. */
		for (k = 0, left = (size_t)n, out = 0; left > 0; k++) {
			m = left < REC_MAX ? left : REC_MAX;
			seal(s, buf + k * STRIDE, m);
			out = k * STRIDE + HDR_LEN + m + TAG_LEN;
			left -= m;
		}
		if (!write_all(b, buf, out))
			die("write: %s", strerror(errno));
		total += n;
		*records += (long long)k;
	}
	free(buf);
	return total;
}

/* One relay run: CPU of this process per MiB relayed, and the rest. */
struct relay_run {
	double		ms, user_ms, sys_ms;	/* per MiB */
	double		secs, csw, peers_ms;	/* csw, peers_ms: per MiB */
	long long	records;
};

static double
tv_ms(struct timeval tv)
{
	return (double)tv.tv_sec * 1e3 + (double)tv.tv_usec / 1e3;
}

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Producer, consumer, relay of MIB MiB: one struct relay_run. */
static struct relay_run
relay_once(size_t io, struct sealer *s, long long mib)
{
	struct rusage r0, r1, c0, c1;
	struct relay_run run;
	long long bytes = mib * 1048576, total;
	uint16_t pa, pb;
	pid_t prod, cons;
	int la, lb, a, b;
	double t0;

	getrusage(RUSAGE_CHILDREN, &c0);
	la = listener(&pa);
	lb = listener(&pb);
	prod = spawn_producer(pa, bytes, la, lb);
	cons = spawn_consumer(pb, la, lb);
	a = accept_one(la);
	b = accept_one(lb);

	getrusage(RUSAGE_SELF, &r0);
	t0 = mono_s();
	total = relay_loop(a, b, io, s, &run.records);
	run.secs = mono_s() - t0;
	getrusage(RUSAGE_SELF, &r1);
	close(a);
	close(b);
	reap(prod, "producer");
	reap(cons, "consumer");
	getrusage(RUSAGE_CHILDREN, &c1);
	if (total != bytes)
		die("relayed %lld bytes of %lld", total, bytes);

	run.user_ms = (tv_ms(r1.ru_utime) - tv_ms(r0.ru_utime)) / (double)mib;
	run.sys_ms = (tv_ms(r1.ru_stime) - tv_ms(r0.ru_stime)) / (double)mib;
	run.ms = run.user_ms + run.sys_ms;
	run.csw = (double)(r1.ru_nvcsw - r0.ru_nvcsw + r1.ru_nivcsw -
	    r0.ru_nivcsw) / (double)mib;
	run.peers_ms = (tv_ms(c1.ru_utime) + tv_ms(c1.ru_stime) -
	    tv_ms(c0.ru_utime) - tv_ms(c0.ru_stime)) / (double)mib;
	return run;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The median of V[0..N-1] (sorts V). */
static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int
cmd_relay(int argc, char **argv)
{
	const char *aead = "aes-256-gcm";
	struct relay_run run, best;
	double ms[MAX_REPEATS], med;
	struct sealer s;
	long long mib = 1024;
	size_t io = 16384;
	int opt, k = 3, i;

	while ((opt = getopt(argc, argv, "b:M:e:R:")) != -1) {
		switch (opt) {
		case 'b': io = (size_t)number(optarg, 1, MAX_IO); break;
		case 'M': mib = number(optarg, 1, 1L << 20); break;
		case 'e': aead = optarg; break;
		case 'R': k = (int)number(optarg, 1, MAX_REPEATS); break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	sealer_init(&s, aead);
	best = relay_once(io, &s, mib);
	ms[0] = best.ms;
	for (i = 1; i < k; i++) {
		run = relay_once(io, &s, mib);
		if (run.ms < best.ms)
			best = run;
		ms[i] = run.ms;
	}
	EVP_CIPHER_CTX_free(s.ctx);
	med = median(ms, k);			/* sorts ms */
	printf("mode=relay io=%zu aead=%s mib=%lld runs=%d records=%lld "
	    "avg_read=%.0f secs=%.2f mibps=%.0f ms_per_mib=%.3f "
	    "user_ms_per_mib=%.3f sys_ms_per_mib=%.3f ms_per_mib_med=%.3f "
	    "ms_per_mib_max=%.3f csw_per_mib=%.1f peers_ms_per_mib=%.3f\n",
	    io, aead, mib, k, best.records, mib * MIB / (double)best.records,
	    best.secs, (double)mib / best.secs, best.ms, best.user_ms,
	    best.sys_ms, med, ms[k - 1], best.csw, best.peers_ms);
	return 0;
}

/* --- handshake ----------------------------------------------------------- */

struct hs_stats {
	int64_t	server_ns;	/* the server's calls, clock cost included */
	long	regions;	/* timed regions (for the clock's cost) */
	long	resumed;
	long	tickets;	/* received by the client */
	const char *version, *cipher, *group;
};

/* The client's latest ticket (-r offers it), and how many came. */
static struct {
	SSL_SESSION	*last;
	long		 received;
} client_tickets;

static int64_t
thread_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* What one empty timed region costs, in ns: subtracted per region. */
static int64_t
clock_cost(void)
{
	int64_t sum = 0, t;
	int i;

	for (i = 0; i < 2000; i++) {
		t = thread_ns();
		sum += thread_ns() - t;
	}
	return sum / 2000;
}

static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	SSL_SESSION_free(client_tickets.last);
	client_tickets.last = sess;
	client_tickets.received++;
	return 1;			/* the reference is ours */
}

static SSL_CTX *
server_ctx(const char *cert, const char *key, int tickets)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 ||
	    SSL_CTX_set_num_tickets(ctx, (size_t)tickets) != 1)
		die("%s, %s: cannot load", cert, key);
	return ctx;
}

static SSL_CTX *
client_ctx(void)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		die("SSL_CTX_new");
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	return ctx;
}

static const char *
key_kind(SSL_CTX *ctx, int *bits)
{
	EVP_PKEY *pk = SSL_CTX_get0_privatekey(ctx);

	*bits = EVP_PKEY_get_bits(pk);
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA: return "rsa";
	case EVP_PKEY_EC: return "ec";
	default: return "other";
	}
}

/* One handshake step of SSL: true when done, false when it waits. */
static bool
hs_step(SSL *ssl, const char *who)
{
	int r = SSL_do_handshake(ssl);

	if (r == 1)
		return true;
	if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ)
		die("%s: handshake failed", who);
	return false;
}

/* The client reads what the server sent (tickets, close_notify). */
static void
client_drain(SSL *cl)
{
	unsigned char buf[256];
	int r = SSL_read(cl, buf, sizeof buf), e = SSL_get_error(cl, r);

	if (r > 0 || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_ZERO_RETURN))
		die("client: unexpected read");
}

/* A client SSL and the two memory BIOs: *C2S, *S2C for the server. */
static SSL *
client_new(SSL_CTX *cctx, bool resume, BIO **c2s, BIO **s2c)
{
	SSL *cl;

	if ((*c2s = BIO_new(BIO_s_mem())) == NULL ||
	    (*s2c = BIO_new(BIO_s_mem())) == NULL ||
	    !BIO_up_ref(*c2s) || !BIO_up_ref(*s2c) ||
	    (cl = SSL_new(cctx)) == NULL)
		die("client: out of memory");
	SSL_set_bio(cl, *s2c, *c2s);
	SSL_set_connect_state(cl);
	if (resume && client_tickets.last != NULL &&
	    SSL_set_session(cl, client_tickets.last) != 1)
		die("client: SSL_set_session");
	return cl;
}

#define TIMED(st, stmt) do {						\
	int64_t t0_ = thread_ns();					\
	stmt;								\
	(st)->server_ns += thread_ns() - t0_;				\
	(st)->regions++;						\
} while (0)

static SSL *
server_new(SSL_CTX *sctx, BIO *c2s, BIO *s2c)
{
	SSL *sv;

	if ((sv = SSL_new(sctx)) == NULL)
		die("server: SSL_new");
	SSL_set_bio(sv, c2s, s2c);
	SSL_set_accept_state(sv);
	return sv;
}

static void
server_close(SSL *sv)
{
	SSL_shutdown(sv);			/* sends close_notify */
	SSL_free(sv);
}

/* What was negotiated, from the client's side (not timed). */
static void
note_params(SSL *cl, struct hs_stats *st)
{
	st->version = SSL_get_version(cl);
	st->cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(cl));
	st->group = SSL_group_to_name(cl, SSL_get_negotiated_group(cl));
}

static void
handshake_once(SSL_CTX *sctx, SSL_CTX *cctx, bool resume, struct hs_stats *st)
{
	bool cdone = false, sdone = false;
	long before = client_tickets.received;
	BIO *c2s, *s2c;
	SSL *cl, *sv;
	int round;

	cl = client_new(cctx, resume, &c2s, &s2c);
	TIMED(st, sv = server_new(sctx, c2s, s2c));
	for (round = 0; round < 10 && !(cdone && sdone); round++) {
		if (!cdone)
			cdone = hs_step(cl, "client");
		if (!sdone)
			TIMED(st, sdone = hs_step(sv, "server"));
	}
	if (!(cdone && sdone))
		die("the handshake did not finish");
	client_drain(cl);			/* the tickets */
	st->resumed += SSL_session_reused(sv);
	note_params(cl, st);
	TIMED(st, server_close(sv));
	client_drain(cl);			/* close_notify */
	SSL_shutdown(cl);	/* else SSL_free marks the session not resumable */
	SSL_free(cl);
	st->tickets += client_tickets.received - before;
}

/* COUNT handshakes into *ST: the server's ms per handshake among them. */
static double
hs_block(SSL_CTX *sctx, SSL_CTX *cctx, bool resume, long count,
    int64_t cost, struct hs_stats *st)
{
	int64_t before = st->server_ns;
	long regions = st->regions, i;

	for (i = 0; i < count; i++)
		handshake_once(sctx, cctx, resume, st);
	return (double)(st->server_ns - before - cost * (st->regions -
	    regions)) / 1e6 / (double)count;
}

/* --- handshake over loopback TCP (-l) ------------------------------------ */

/* The client process: WARM + COUNT connections to PORT, each a handshake
 * (resuming the previous session with RESUME), the tickets and close_notify
 * read, then close. Writes the tickets received after the WARM first ones
 * to REPORT, then exits. */
static void __attribute__((noreturn))
tcp_client(uint16_t port, long warm, long count, bool resume, int report)
{
	unsigned char buf[256];
	SSL_CTX *cctx = client_ctx();
	long i, warm_tickets = 0;
	SSL *cl;
	int fd, r;

	for (i = 0; i < warm + count; i++) {
		if (i == warm)
			warm_tickets = client_tickets.received;
		fd = connect_to(port);
		if ((cl = SSL_new(cctx)) == NULL || SSL_set_fd(cl, fd) != 1)
			_exit(1);
		if (resume && client_tickets.last != NULL &&
		    SSL_set_session(cl, client_tickets.last) != 1)
			_exit(1);
		if (SSL_connect(cl) != 1) {
			ERR_print_errors_fp(stderr);
			_exit(1);
		}
		/* The tickets, then close_notify: 0. */
		while ((r = SSL_read(cl, buf, sizeof buf)) > 0)
			continue;
		if (SSL_get_error(cl, r) != SSL_ERROR_ZERO_RETURN)
			_exit(1);
		/* Keep the session resumable without answering the
		 * close_notify: the server has closed. */
		SSL_set_quiet_shutdown(cl, 1);
		SSL_shutdown(cl);
		SSL_free(cl);
		close(fd);
	}
	dprintf(report, "%ld\n", client_tickets.received - warm_tickets);
	_exit(0);
}

/* One server connection on LFD, all timed: accept to close. */
static void
tcp_server_once(SSL_CTX *sctx, int lfd, struct hs_stats *st)
{
	int64_t t0 = thread_ns();
	int fd, one = 1;
	SSL *sv;

	if ((fd = accept(lfd, NULL, NULL)) < 0)
		die("accept: %s", strerror(errno));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if ((sv = SSL_new(sctx)) == NULL || SSL_set_fd(sv, fd) != 1)
		die("server: SSL_new");
	if (SSL_accept(sv) != 1)
		die("server: handshake failed");
	st->resumed += SSL_session_reused(sv);
	if (st->version == NULL) {
		st->version = SSL_get_version(sv);
		st->cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(sv));
		st->group = SSL_group_to_name(sv, SSL_get_negotiated_group(sv));
	}
	SSL_shutdown(sv);			/* sends close_notify */
	SSL_free(sv);
	close(fd);
	st->server_ns += thread_ns() - t0;
	st->regions++;
}

/* handshake -l: K blocks of PER handshakes after the warm-up, over
 * loopback TCP with a forked client; MS gets each block's server ms per
 * handshake; the client's ticket count goes to *TICKETS. */
static void
tcp_blocks(SSL_CTX *sctx, bool resume, int k, long per, int64_t cost,
    double *ms, struct hs_stats *st, long *tickets)
{
	struct hs_stats warm;
	int64_t before;
	uint16_t port;
	int lfd, p[2], status, i;
	long j, regions;
	FILE *f;
	pid_t pid;

	lfd = listener(&port);
	if (listen(lfd, 64) < 0 || pipe(p) < 0)
		die("listen, pipe: %s", strerror(errno));
	if ((pid = fork()) < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(lfd);
		close(p[0]);
		tcp_client(port, HS_WARMUP, per * k, resume, p[1]);
	}
	close(p[1]);
	memset(&warm, 0, sizeof warm);
	for (j = 0; j < HS_WARMUP; j++)
		tcp_server_once(sctx, lfd, &warm);
	for (i = 0; i < k; i++) {
		before = st->server_ns;
		regions = st->regions;
		for (j = 0; j < per; j++)
			tcp_server_once(sctx, lfd, st);
		ms[i] = (double)(st->server_ns - before - cost *
		    (st->regions - regions)) / 1e6 / (double)per;
	}
	close(lfd);
	if ((f = fdopen(p[0], "r")) == NULL || fscanf(f, "%ld", tickets) != 1)
		die("the client did not finish");
	fclose(f);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		die("the client failed");
}

static int
cmd_handshake(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *kind;
	double ms[MAX_REPEATS], best, med;
	struct hs_stats st, warm;
	SSL_CTX *sctx, *cctx;
	int64_t t0, total, cost;
	long n = 2000, per;
	int opt, tickets = 2, bits, k = 8, i;
	bool resume = false, tcp = false;

	while ((opt = getopt(argc, argv, "c:k:n:t:rR:l")) != -1) {
		switch (opt) {
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'n': n = number(optarg, 1, 10000000); break;
		case 't': tickets = (int)number(optarg, 0, 16); break;
		case 'r': resume = true; break;
		case 'R': k = (int)number(optarg, 1, MAX_REPEATS); break;
		case 'l': tcp = true; break;
		default: usage();
		}
	}
	if (optind != argc || cert == NULL || key == NULL)
		usage();
	sctx = server_ctx(cert, key, tickets);
	cctx = client_ctx();
	kind = key_kind(sctx, &bits);

	cost = clock_cost();
	memset(&st, 0, sizeof st);
	per = n / k > 0 ? n / k : 1;
	n = per * k;
	if (tcp) {
		tcp_blocks(sctx, resume, k, per, cost, ms, &st, &st.tickets);
		total = st.server_ns;	/* the client's CPU is not ours */
	} else {
		memset(&warm, 0, sizeof warm);
		(void)hs_block(sctx, cctx, resume, HS_WARMUP, 0, &warm);
		t0 = thread_ns();
		for (i = 0; i < k; i++)
			ms[i] = hs_block(sctx, cctx, resume, per, cost, &st);
		total = thread_ns() - t0;
	}
	best = ms[0];
	for (i = 1; i < k; i++)
		best = ms[i] < best ? ms[i] : best;
	med = median(ms, k);

	printf("mode=handshake io=%s cert=%s bits=%d tickets=%d resume=%d n=%ld "
	    "runs=%d resumed_pct=%.1f tickets_per_hs=%.2f server_ms_per_hs=%.3f "
	    "server_ms_med=%.3f server_ms_max=%.3f client_ms_per_hs=%.3f "
	    "clock_ns=%lld tls=%s cipher=%s group=%s\n", tcp ? "tcp" : "none",
	    kind, bits, tickets,
	    resume, n, k, 100.0 * (double)st.resumed / (double)n,
	    (double)st.tickets / (double)n, best, med, ms[k - 1],
	    (double)(total - st.server_ns) / 1e6 / (double)n, (long long)cost,
	    st.version, st.cipher, st.group != NULL ? st.group : "-");
	SSL_SESSION_free(client_tickets.last);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "relay") == 0)
		return cmd_relay(argc - 1, argv + 1);
	if (strcmp(argv[1], "handshake") == 0)
		return cmd_handshake(argc - 1, argv + 1);
	usage();
}
