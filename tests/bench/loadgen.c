/*
 * loadgen.c — the POP3 load generator behind `make bench` (issue 8).
 *
 * One process, one thread, epoll (edge-triggered), OpenSSL in non-blocking
 * mode: the client side of every workload costs one event loop, so that its
 * own CPU per operation can be set beside the front-end's (it reports both).
 *
 *   loadgen bulk     -a ADDR -m tls|stls|plain -c K -M MSG [-R N]   K sessions
 *                    log in, wait for each other, then each RETRs MSG N times:
 *                    MiB/s
 *   loadgen sessions -a ADDR -m ... -c C -t T [-r]   C slots run whole
 *                    sessions (handshake, USER, PASS, STAT, QUIT) for T s:
 *                    sessions/s, p50/p99 latency; -r resumes TLS sessions
 *   loadgen latency  -a ADDR -m ... -n N [-r]   one session at a time:
 *                    connect→greeting and connect→"+OK" after PASS
 *   loadgen idle     -a ADDR -m ... -n N -c C   N sessions log in (C
 *                    handshakes in flight) and stay: RSS of the watched
 *                    trees before and with them, per session
 *   loadgen backend  -l ADDR [-B BYTES]   a minimal POP3 server: "+OK" to
 *                    USER, PASS, NOOP; STAT, CAPA, QUIT; RETR 1 sends one
 *                    synthetic message of BYTES from memory. It isolates
 *                    the front-end (its own cost is next to nothing)
 *
 * -w NAME=PID (repeatable) watches a process tree: CPU (utime+stime of the
 * tree, reaped children included) over the measured phase, and RSS for
 * idle. Output: one line of key=value pairs on stdout; errors on stderr.
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_WATCH	4
#define LINE_MAX_LEN	1024
#define BODY_CHUNK	(256 * 1024)
#define MAX_EVENTS	256

/* --- options and results ------------------------------------------------ */

enum mode { M_TLS, M_STLS, M_PLAIN };

struct watch {
	const char	*name;
	pid_t		 pid;
	long long	 ticks0, ticks1;
	long long	 rss0, rss1;		/* KiB */
	int		 nproc;
};

static struct {
	const char	*cmd;
	struct sockaddr_in addr;
	enum mode	 mode;
	const char	*user, *pass;
	int		 conc;
	double		 secs;
	long		 n;
	int		 msg;
	int		 repeat;	/* RETRs per bulk session */
	bool		 resume;
	bool		 tls12;
	double		 sess_timeout;
	double		 hold_max;
	double		 settle;
	struct watch	 watch[MAX_WATCH];
	int		 nwatch;
} opt = {
	.user = "bench", .pass = "bench", .conc = 16, .secs = 5, .n = 100,
	.msg = 1, .repeat = 1, .sess_timeout = 30, .hold_max = 120, .settle = 1,
};

static volatile sig_atomic_t stop_signal;

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loadgen: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* --- /proc: process trees ------------------------------------------------- */

struct procent {
	pid_t		 pid, ppid;
	long long	 ticks;		/* utime+stime+cutime+cstime */
};

/* read_stat: ppid and CPU ticks of pid; 0 or -1. The command name may hold
 * spaces and parentheses: fields are counted after the last ')'. */
static int
read_stat(pid_t pid, struct procent *pe)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	long long cut, cst;
	int ppid;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime cutime cstime */
	if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
	    "%llu %lld %lld", &ppid, &ut, &st, &cut, &cst) != 5)
		return -1;
	pe->pid = pid;
	pe->ppid = ppid;
	pe->ticks = (long long)(ut + st) + cut + cst;
	return 0;
}

static long long
read_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long long kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %lld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* tree_sample: CPU ticks and RSS (KiB) summed over root and every
 * descendant alive now; reaped children count through cutime/cstime. */
static void
tree_sample(pid_t root, long long *ticks, long long *rss, int *nproc)
{
	static struct procent *all;
	static size_t cap;
	size_t n = 0, i, j, nin;
	pid_t *in;
	struct dirent *de;
	DIR *d;

	*ticks = *rss = 0;
	*nproc = 0;
	if ((d = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);

		if (*end != '\0' || pid <= 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((all = realloc(all, cap * sizeof(*all))) == NULL)
				die("out of memory");
		}
		if (read_stat((pid_t)pid, &all[n]) == 0)
			n++;
	}
	closedir(d);
	if ((in = calloc(n + 1, sizeof(*in))) == NULL)
		die("out of memory");
	in[0] = root;
	nin = 1;
	/* Breadth first over the ppid links; the list is small. */
	for (i = 0; i < nin; i++)
		for (j = 0; j < n; j++)
			if (all[j].ppid == in[i] && all[j].pid != root)
				in[nin++] = all[j].pid;
	for (i = 0; i < nin; i++)
		for (j = 0; j < n; j++)
			if (all[j].pid == in[i]) {
				*ticks += all[j].ticks;
				*rss += read_rss_kib(in[i]);
				(*nproc)++;
			}
	free(in);
}

static void
watch_sample(bool end)
{
	long long t, r;
	int i, np;

	for (i = 0; i < opt.nwatch; i++) {
		tree_sample(opt.watch[i].pid, &t, &r, &np);
		if (end) {
			opt.watch[i].ticks1 = t;
			opt.watch[i].rss1 = r;
		} else {
			opt.watch[i].ticks0 = t;
			opt.watch[i].rss0 = r;
		}
		opt.watch[i].nproc = np;
	}
}

static double
watch_cpu_ms(const struct watch *w)
{
	return (double)(w->ticks1 - w->ticks0) * 1000.0 /
	    (double)sysconf(_SC_CLK_TCK);
}

/* --- statistics ------------------------------------------------------------ */

struct samples {
	double	*v;
	size_t	 n, cap;
};

static void
sample_add(struct samples *s, double x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		if ((s->v = realloc(s->v, s->cap * sizeof(double))) == NULL)
			die("out of memory");
	}
	s->v[s->n++] = x;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* pct: the p-th percentile (nearest rank) in ms, samples in seconds. */
static double
pct(struct samples *s, double p)
{
	size_t i;

	if (s->n == 0)
		return 0;
	qsort(s->v, s->n, sizeof(double), cmp_double);
	i = (size_t)(p / 100.0 * (double)s->n + 0.5);
	if (i > 0)
		i--;
	if (i >= s->n)
		i = s->n - 1;
	return s->v[i] * 1000.0;
}

/* --- the client: scripts ------------------------------------------------ */

enum op {
	OP_TLS,		/* TLS handshake */
	OP_GREETING,	/* read the "+OK" greeting */
	OP_CMD,		/* send cmd, read a "+OK" line */
	OP_RETR,	/* send cmd, read "+OK" and a body up to "\r\n.\r\n" */
	OP_BARRIER,	/* wait until every connection got here */
	OP_EOF,		/* read until the server closes */
	OP_HOLD,	/* stay connected, logged in */
	OP_END,
};

enum mark { MK_NONE, MK_GREET, MK_LOGIN, MK_DONE };

struct step {
	enum op		 op;
	const char	*cmd;
	enum mark	 mark;
};

static char cmd_user[128], cmd_pass[128], cmd_retr[32];
static struct step script[48];

static void
build_script(const char *what)
{
	int i = 0, r;

	snprintf(cmd_user, sizeof(cmd_user), "USER %s\r\n", opt.user);
	snprintf(cmd_pass, sizeof(cmd_pass), "PASS %s\r\n", opt.pass);
	snprintf(cmd_retr, sizeof(cmd_retr), "RETR %d\r\n", opt.msg);
	if (opt.mode == M_TLS)
		script[i++] = (struct step){ OP_TLS, NULL, MK_NONE };
	script[i++] = (struct step){ OP_GREETING, NULL, MK_GREET };
	if (opt.mode == M_STLS) {
		script[i++] = (struct step){ OP_CMD, "STLS\r\n", MK_NONE };
		script[i++] = (struct step){ OP_TLS, NULL, MK_NONE };
	}
	script[i++] = (struct step){ OP_CMD, cmd_user, MK_NONE };
	script[i++] = (struct step){ OP_CMD, cmd_pass, MK_LOGIN };
	if (strcmp(what, "idle") == 0) {
		script[i++] = (struct step){ OP_HOLD, NULL, MK_NONE };
	} else if (strcmp(what, "bulk") == 0) {
		script[i++] = (struct step){ OP_BARRIER, NULL, MK_NONE };
		for (r = 0; r < opt.repeat; r++)
			script[i++] = (struct step){ OP_RETR, cmd_retr, MK_NONE };
		script[i++] = (struct step){ OP_CMD, "QUIT\r\n", MK_DONE };
		script[i++] = (struct step){ OP_EOF, NULL, MK_NONE };
	} else {
		script[i++] = (struct step){ OP_CMD, "STAT\r\n", MK_NONE };
		script[i++] = (struct step){ OP_CMD, "QUIT\r\n", MK_DONE };
		script[i++] = (struct step){ OP_EOF, NULL, MK_NONE };
	}
	script[i++] = (struct step){ OP_END, NULL, MK_NONE };
}

/* --- the client: connections ---------------------------------------------- */

enum result { R_WAIT, R_NEXT, R_FAIL };

struct conn {
	int		 fd;
	SSL		*ssl;
	int		 slot;
	int		 step;
	bool		 connecting;
	bool		 sent;		/* this step's command is out */
	size_t		 outoff;
	bool		 in_body;
	bool		 parked;	/* at OP_BARRIER or OP_HOLD */
	char		 tail[5];	/* last bytes of the body so far */
	uint64_t	 body;
	char		 in[LINE_MAX_LEN];
	size_t		 inlen;
	double		 t0, t_greet, t_login, t_done, deadline;
	const char	*why;		/* failure reason */
};

struct slot {
	struct conn	*c;
	SSL_SESSION	*sess;		/* for -r */
};

static int epfd;
static int n_active, n_parked;	/* connections open; parked of them */
static SSL_CTX *ctx;
static struct slot *slots;
static int nslots;
static char body_buf[BODY_CHUNK];

static struct {
	long		 started, ok, failed, resumed, held;
	uint64_t	 body_bytes;
	struct samples	 lat, greet, login;
	char		 version[32], cipher[64];
	char		 first_err[256];
	long		 why_connect, why_tls, why_err, why_eof, why_timeout,
			 why_other;
} st;

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct conn *c = SSL_get_app_data(ssl);

	if (c == NULL || !opt.resume)
		return 0;
	if (slots[c->slot].sess != NULL)
		SSL_SESSION_free(slots[c->slot].sess);
	slots[c->slot].sess = sess;
	return 1;	/* we keep the reference */
}

static void
tls_init_ctx(void)
{
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		die("SSL_CTX_new");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
	if (opt.tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	/* Read several records per read(2) while bulk data streams in. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	if (!opt.resume)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
}

static void
set_why(struct conn *c, const char *why, const char *fmt, ...)
{
	va_list ap;

	c->why = why;
	if (st.first_err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(st.first_err, sizeof(st.first_err), fmt, ap);
	va_end(ap);
}

static const char *
ssl_errtext(void)
{
	static char buf[160];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return strerror(errno);
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* io_read: > 0 bytes, 0 EOF, -1 error, -2 would block. */
static ssize_t
io_read(struct conn *c, void *p, size_t len)
{
	ssize_t n;
	int r, e;

	if (c->ssl == NULL) {
		n = read(c->fd, p, len);
		if (n >= 0)
			return n;
		return errno == EAGAIN || errno == EINTR ? -2 : -1;
	}
	ERR_clear_error();
	r = SSL_read(c->ssl, p, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return -2;
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
		return 0;
	/* OpenSSL 3 reports an EOF without close_notify as an SSL error. */
	if (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) ==
	    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		ERR_clear_error();
		return 0;
	}
	return -1;
}

/* io_write: > 0 bytes, -1 error, -2 would block. */
static ssize_t
io_write(struct conn *c, const void *p, size_t len)
{
	ssize_t n;
	int r, e;

	if (c->ssl == NULL) {
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		return errno == EAGAIN || errno == EINTR ? -2 : -1;
	}
	ERR_clear_error();
	r = SSL_write(c->ssl, p, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? -2 : -1;
}

static enum result
do_send(struct conn *c, const char *cmd)
{
	size_t len = strlen(cmd);
	ssize_t n;

	while (!c->sent) {
		n = io_write(c, cmd + c->outoff, len - c->outoff);
		if (n == -2)
			return R_WAIT;
		if (n < 0) {
			set_why(c, "other", "write: %s", ssl_errtext());
			return R_FAIL;
		}
		c->outoff += (size_t)n;
		if (c->outoff == len)
			c->sent = true;
	}
	return R_NEXT;
}

/* body_feed: account body bytes; true once the terminator was seen. No
 * command is pipelined, so the server sends nothing after "\r\n.\r\n":
 * the terminator is whatever the stream ends with. */
static bool
body_feed(struct conn *c, const char *p, size_t n)
{
	c->body += n;
	if (n >= 5)
		memcpy(c->tail, p + n - 5, 5);
	else {
		memmove(c->tail, c->tail + n, 5 - n);
		memcpy(c->tail + 5 - n, p, n);
	}
	return c->body >= 5 && memcmp(c->tail, "\r\n.\r\n", 5) == 0;
}

/* read_line: fill c->in until it holds a line; R_NEXT with the line
 * checked for "+OK" (extra bytes stay in c->in for a body). */
static enum result
read_line(struct conn *c, size_t *linelen)
{
	char *lf;
	ssize_t n;

	for (;;) {
		if ((lf = memchr(c->in, '\n', c->inlen)) != NULL) {
			*linelen = (size_t)(lf - c->in) + 1;
			if (c->inlen < 3 || memcmp(c->in, "+OK", 3) != 0) {
				c->in[*linelen - 1] = '\0';
				set_why(c, "err", "server said: %.120s", c->in);
				return R_FAIL;
			}
			return R_NEXT;
		}
		if (c->inlen == sizeof(c->in)) {
			set_why(c, "other", "line too long");
			return R_FAIL;
		}
		n = io_read(c, c->in + c->inlen, sizeof(c->in) - c->inlen);
		if (n == -2)
			return R_WAIT;
		if (n == 0) {
			set_why(c, "eof", "server closed before replying");
			return R_FAIL;
		}
		if (n < 0) {
			set_why(c, "other", "read: %s", ssl_errtext());
			return R_FAIL;
		}
		c->inlen += (size_t)n;
	}
}

static enum result
step_tls(struct conn *c)
{
	int r, e;

	if (c->ssl == NULL) {
		if ((c->ssl = SSL_new(ctx)) == NULL)
			die("SSL_new");
		SSL_set_app_data(c->ssl, c);
		SSL_set_fd(c->ssl, c->fd);
		SSL_set_tlsext_host_name(c->ssl, "localhost");
		if (opt.resume && slots[c->slot].sess != NULL)
			SSL_set_session(c->ssl, slots[c->slot].sess);
		SSL_set_connect_state(c->ssl);
	}
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		if (SSL_session_reused(c->ssl))
			st.resumed++;
		if (st.version[0] == '\0') {
			snprintf(st.version, sizeof(st.version), "%s",
			    SSL_get_version(c->ssl));
			snprintf(st.cipher, sizeof(st.cipher), "%s",
			    SSL_get_cipher_name(c->ssl));
		}
		return R_NEXT;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return R_WAIT;
	set_why(c, "tls", "TLS handshake: %s", ssl_errtext());
	return R_FAIL;
}

static enum result
step_body(struct conn *c)
{
	ssize_t n;

	for (;;) {
		n = io_read(c, body_buf, sizeof(body_buf));
		if (n == -2)
			return R_WAIT;
		if (n <= 0) {
			set_why(c, n == 0 ? "eof" : "other", "RETR body: %s",
			    n == 0 ? "server closed" : ssl_errtext());
			return R_FAIL;
		}
		if (body_feed(c, body_buf, (size_t)n)) {
			st.body_bytes += c->body;
			return R_NEXT;
		}
	}
}

static enum result
step_eof(struct conn *c)
{
	char junk[512];
	ssize_t n;

	for (;;) {
		n = io_read(c, junk, sizeof(junk));
		if (n == -2)
			return R_WAIT;
		if (n <= 0)
			return R_NEXT;	/* closed, cleanly or not */
	}
}

static void
mark(struct conn *c, enum mark m)
{
	double t = now();

	switch (m) {
	case MK_GREET: c->t_greet = t; break;
	case MK_LOGIN: c->t_login = t; break;
	case MK_DONE: c->t_done = t; break;
	default: break;
	}
}

/* run_step: one step of the script, as far as it can go now. */
static enum result
run_step(struct conn *c)
{
	const struct step *s = &script[c->step];
	enum result r = R_NEXT;
	size_t ll;

	switch (s->op) {
	case OP_TLS:
		return step_tls(c);
	case OP_GREETING:
	case OP_CMD:
	case OP_RETR:
		if (c->in_body)
			return step_body(c);
		if (s->cmd != NULL && (r = do_send(c, s->cmd)) != R_NEXT)
			return r;
		if ((r = read_line(c, &ll)) != R_NEXT)
			return r;
		c->inlen -= ll;
		memmove(c->in, c->in + ll, c->inlen);
		if (s->op != OP_RETR)
			return R_NEXT;
		c->in_body = true;
		if (c->inlen > 0 && body_feed(c, c->in, c->inlen)) {
			c->inlen = 0;
			st.body_bytes += c->body;
			return R_NEXT;
		}
		c->inlen = 0;
		return step_body(c);
	case OP_BARRIER:
	case OP_HOLD:
		c->parked = true;
		n_parked++;
		return R_WAIT;
	case OP_EOF:
		return step_eof(c);
	case OP_END:
		return R_NEXT;
	}
	return R_FAIL;
}

static void conn_finish(struct conn *c, bool ok);

/* drive: run the script until it must wait, fails or ends. */
static void
drive(struct conn *c)
{
	enum result r;

	if (c->connecting || c->parked)
		return;
	for (;;) {
		r = run_step(c);
		if (r == R_WAIT)
			return;
		if (r == R_FAIL) {
			conn_finish(c, false);
			return;
		}
		mark(c, script[c->step].mark);
		if (script[c->step].op == OP_END) {
			conn_finish(c, true);
			return;
		}
		c->step++;
		c->sent = false;
		c->outoff = 0;
		c->in_body = false;
		c->body = 0;
	}
}

static void
conn_free(struct conn *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd != -1)
		close(c->fd);
	slots[c->slot].c = NULL;
	n_active--;
	if (c->parked)
		n_parked--;
	free(c);
}

static void
count_why(const char *why)
{
	if (why == NULL || strcmp(why, "other") == 0)
		st.why_other++;
	else if (strcmp(why, "connect") == 0)
		st.why_connect++;
	else if (strcmp(why, "tls") == 0)
		st.why_tls++;
	else if (strcmp(why, "err") == 0)
		st.why_err++;
	else if (strcmp(why, "eof") == 0)
		st.why_eof++;
	else if (strcmp(why, "timeout") == 0)
		st.why_timeout++;
	else
		st.why_other++;
}

static void
conn_finish(struct conn *c, bool ok)
{
	if (ok) {
		st.ok++;
		sample_add(&st.lat, c->t_done - c->t0);
		sample_add(&st.greet, c->t_greet - c->t0);
		sample_add(&st.login, c->t_login - c->t0);
		/* A session freed without SSL_SENT_SHUTDOWN is "bad": OpenSSL
		 * marks it not resumable, and it is the very object the new
		 * session callback kept for -r. The server closed first; no
		 * close_notify of ours is due on a closed socket. */
		if (c->ssl != NULL)
			SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN |
			    SSL_RECEIVED_SHUTDOWN);
	} else {
		st.failed++;
		count_why(c->why);
	}
	conn_free(c);
}

static struct conn *
conn_start(int slot)
{
	struct epoll_event ev;
	struct conn *c;
	int one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		die("out of memory");
	c->slot = slot;
	c->t0 = now();
	c->deadline = c->t0 + opt.sess_timeout;
	slots[slot].c = c;
	n_active++;
	st.started++;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		set_why(c, "connect", "socket: %s", strerror(errno));
		conn_finish(c, false);
		return NULL;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
	if (connect(c->fd, (struct sockaddr *)&opt.addr, sizeof(opt.addr)) == -1) {
		if (errno != EINPROGRESS) {
			set_why(c, "connect", "connect: %s", strerror(errno));
			conn_finish(c, false);
			return NULL;
		}
		c->connecting = true;
		return c;
	}
	drive(c);
	return slots[slot].c;
}

static void
on_event(struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (c->connecting) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		(void)getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			set_why(c, "connect", "connect: %s", strerror(err));
			conn_finish(c, false);
			return;
		}
		c->connecting = false;
	}
	if (c->parked && script[c->step].op == OP_HOLD &&
	    (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))) {
		set_why(c, "eof", "held session closed by the server");
		st.held--;
		conn_finish(c, false);
		return;
	}
	drive(c);
}

/* loop_once: wait up to ms for events and handle them. */
static void
loop_once(int ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int n, i;

	n = epoll_wait(epfd, evs, MAX_EVENTS, ms);
	if (n == -1 && errno != EINTR)
		die("epoll_wait: %s", strerror(errno));
	for (i = 0; i < n; i++)
		on_event(evs[i].data.ptr, evs[i].events);
}

/* expire: fail every connection past its deadline (not held ones). */
static void
expire(double t)
{
	static double last;
	int i;

	if (t - last < 0.1)
		return;
	last = t;
	for (i = 0; i < nslots; i++) {
		struct conn *c = slots[i].c;

		if (c != NULL && !(c->parked && script[c->step].op == OP_HOLD) &&
		    t > c->deadline) {
			set_why(c, "timeout", "session timed out after %.0fs "
			    "(step %d)", opt.sess_timeout, c->step);
			conn_finish(c, false);
		}
	}
}

static void
slots_init(int n)
{
	nslots = n;
	if ((slots = calloc((size_t)n, sizeof(*slots))) == NULL)
		die("out of memory");
}

/* --- output ---------------------------------------------------------------- */

static void
print_common(double elapsed, double lg_cpu, long ops)
{
	int i;

	printf(" ok=%ld failed=%ld secs=%.3f lg_cpu_ms=%.1f lg_cpu_per_op_ms=%.4f"
	    " lg_util=%.2f", st.ok, st.failed, elapsed, lg_cpu * 1000,
	    ops > 0 ? lg_cpu * 1000 / (double)ops : 0,
	    elapsed > 0 ? lg_cpu / elapsed : 0);
	if (st.failed > 0)
		printf(" why_connect=%ld why_tls=%ld why_err=%ld why_eof=%ld "
		    "why_timeout=%ld why_other=%ld", st.why_connect,
		    st.why_tls, st.why_err, st.why_eof, st.why_timeout,
		    st.why_other);
	for (i = 0; i < opt.nwatch; i++) {
		double ms = watch_cpu_ms(&opt.watch[i]);

		printf(" %s_cpu_ms=%.0f %s_cpu_per_op_ms=%.4f %s_util=%.2f",
		    opt.watch[i].name, ms, opt.watch[i].name,
		    ops > 0 ? ms / (double)ops : 0, opt.watch[i].name,
		    elapsed > 0 ? ms / 1000 / elapsed : 0);
	}
	if (st.version[0] != '\0')
		printf(" tls=%s cipher=%s", st.version, st.cipher);
	if (st.first_err[0] != '\0')
		fprintf(stderr, "loadgen: first error: %s\n", st.first_err);
}

/* --- workloads --------------------------------------------------------------- */

static void
run_sessions(void)
{
	double t0, cpu0, end, t;
	int i;

	slots_init(opt.conc);
	watch_sample(false);
	cpu0 = self_cpu();
	t0 = now();
	end = t0 + opt.secs;
	for (i = 0; i < nslots; i++)
		conn_start(i);
	while ((t = now()) < end || n_active > 0) {
		if (stop_signal || t > end + opt.sess_timeout)
			break;
		loop_once(50);
		t = now();
		expire(t);
		if (t < end)
			for (i = 0; i < nslots; i++)
				if (slots[i].c == NULL)
					conn_start(i);
	}
	t = now() - t0;
	watch_sample(true);
	printf("mode=sessions conc=%d rate=%.1f p50_ms=%.2f p99_ms=%.2f "
	    "resumed=%ld", opt.conc, (double)st.ok / t, pct(&st.lat, 50),
	    pct(&st.lat, 99), st.resumed);
	print_common(t, self_cpu() - cpu0, st.ok);
	printf("\n");
}

static void
run_latency(void)
{
	double t0, cpu0;
	long i;

	slots_init(1);
	watch_sample(false);
	cpu0 = self_cpu();
	t0 = now();
	for (i = 0; i < opt.n && !stop_signal; i++) {
		conn_start(0);
		while (slots[0].c != NULL) {
			loop_once(50);
			expire(now());
		}
	}
	t0 = now() - t0;
	watch_sample(true);
	printf("mode=latency n=%ld greet_p50_ms=%.3f greet_p99_ms=%.3f "
	    "login_p50_ms=%.3f login_p99_ms=%.3f session_p50_ms=%.3f "
	    "resumed=%ld", opt.n, pct(&st.greet, 50), pct(&st.greet, 99),
	    pct(&st.login, 50), pct(&st.login, 99), pct(&st.lat, 50),
	    st.resumed);
	print_common(t0, self_cpu() - cpu0, st.ok);
	printf("\n");
}

static void
run_bulk(void)
{
	double t0 = 0, cpu0 = 0, deadline = now() + opt.sess_timeout;
	bool released = false;
	int i;

	slots_init(opt.conc);
	for (i = 0; i < nslots; i++)
		conn_start(i);
	while (n_active > 0 && !stop_signal) {
		loop_once(50);
		expire(now());
		if (!released && n_active > 0 && n_parked == n_active) {
			/* Every session logged in: RETR all at once. */
			released = true;
			watch_sample(false);
			cpu0 = self_cpu();
			t0 = now();
			for (i = 0; i < nslots; i++) {
				struct conn *c = slots[i].c;

				if (c == NULL)
					continue;
				c->parked = false;
				n_parked--;
				c->step++;
				c->deadline = t0 + opt.sess_timeout;
				drive(c);
			}
		}
		if (!released && now() > deadline)
			break;
	}
	t0 = released ? now() - t0 : 0;
	watch_sample(true);
	{
		double mib = (double)st.body_bytes / 1048576.0;

		printf("mode=bulk clients=%d bytes=%llu mib=%.1f mibps=%.1f",
		    opt.conc, (unsigned long long)st.body_bytes, mib,
		    t0 > 0 ? mib / t0 : 0);
		for (i = 0; i < opt.nwatch; i++)
			printf(" %s_ms_per_mib=%.3f", opt.watch[i].name,
			    mib > 0 ? watch_cpu_ms(&opt.watch[i]) / mib : 0);
		printf(" lg_ms_per_mib=%.3f", mib > 0 ?
		    (self_cpu() - cpu0) * 1000 / mib : 0);
		print_common(t0, self_cpu() - cpu0, (long)(mib + 0.5));
		printf("\n");
	}
}

static void
run_idle(void)
{
	double t0, cpu0, settle_until;
	long next = 0;
	int i;

	slots_init((int)opt.n);
	watch_sample(false);
	cpu0 = self_cpu();
	t0 = now();
	/* Open with at most opt.conc sessions not yet logged in. */
	while (!stop_signal) {
		while (next < opt.n && n_active - n_parked < opt.conc)
			conn_start((int)next++);
		loop_once(20);
		expire(now());
		st.held = n_parked;
		if (next == opt.n && n_parked == n_active)
			break;
		if (now() - t0 > opt.hold_max) {
			fprintf(stderr, "loadgen: idle: gave up opening after "
			    "%.0fs\n", opt.hold_max);
			break;
		}
	}
	t0 = now() - t0;
	/* Let the front-end settle (lazy frees, deferred work), then look. */
	settle_until = now() + opt.settle;
	while (now() < settle_until && !stop_signal)
		loop_once(50);
	st.held = n_parked;
	watch_sample(true);
	printf("mode=idle n=%ld held=%ld open_secs=%.2f", opt.n, st.held, t0);
	for (i = 0; i < opt.nwatch; i++) {
		struct watch *w = &opt.watch[i];

		printf(" %s_rss0_kib=%lld %s_rss_kib=%lld %s_nproc=%d "
		    "%s_kib_per_session=%.2f %s_delta_kib_per_session=%.2f",
		    w->name, w->rss0, w->name, w->rss1, w->name, w->nproc,
		    w->name, st.held ? (double)w->rss1 / (double)st.held : 0,
		    w->name, st.held ? (double)(w->rss1 - w->rss0) /
		    (double)st.held : 0);
	}
	print_common(t0, self_cpu() - cpu0, st.held);
	printf("\n");
	fflush(stdout);
	for (i = 0; i < nslots; i++)
		if (slots[i].c != NULL)
			conn_free(slots[i].c);
}

/* --- the minimal backend ----------------------------------------------------- */

/* One message of opt_msg_bytes (-B), built once: RETR 1 sends it from
 * memory, so that the backend costs next to nothing per MiB. */
static char *msg;
static size_t msg_len;
static size_t opt_msg_bytes = 1048576;

struct bconn {
	int		 fd;
	size_t		 len;
	char		 in[512];
	char		 reply[128];	/* small reply, or the RETR header */
	size_t		 reply_len, reply_off;
	size_t		 body_off;	/* into msg, while sending it */
	bool		 body;
	bool		 quit;		/* close once flushed */
};

static void
build_message(void)
{
	static const char head[] = "From: bench <bench@localhost>\r\n"
	    "Subject: synthetic\r\n\r\n";
	size_t i, col = 0;

	if ((msg = malloc(opt_msg_bytes + 128)) == NULL)
		die("out of memory");
	memcpy(msg, head, sizeof(head) - 1);
	msg_len = sizeof(head) - 1;
	/* Lines of 76 letters; none starts with a dot. */
	for (i = 0; msg_len + 2 < opt_msg_bytes; i++) {
		if (col == 76) {
			msg[msg_len++] = '\r';
			msg[msg_len++] = '\n';
			col = 0;
			continue;
		}
		msg[msg_len++] = (char)('A' + i % 26);
		col++;
	}
	memcpy(msg + msg_len, "\r\n.\r\n", 5);
	msg_len += 5;
}

static void
bclose(struct bconn *b)
{
	close(b->fd);
	free(b);
}

/* bflush: send what is queued; false on error or when a QUIT is done. */
static bool
bflush(struct bconn *b, bool *blocked)
{
	ssize_t n;

	*blocked = false;
	while (b->reply_off < b->reply_len) {
		n = send(b->fd, b->reply + b->reply_off,
		    b->reply_len - b->reply_off, MSG_NOSIGNAL);
		if (n == -1) {
			*blocked = errno == EAGAIN;
			return *blocked;
		}
		b->reply_off += (size_t)n;
	}
	while (b->body && b->body_off < msg_len) {
		n = send(b->fd, msg + b->body_off, msg_len - b->body_off,
		    MSG_NOSIGNAL);
		if (n == -1) {
			*blocked = errno == EAGAIN;
			return *blocked;
		}
		b->body_off += (size_t)n;
	}
	b->body = false;
	return !b->quit;
}

static void
breply(struct bconn *b, const char *s)
{
	b->reply_len = (size_t)snprintf(b->reply, sizeof(b->reply), "%s", s);
	b->reply_off = 0;
}

/* bline: queue the answer to one command. */
static void
bline(struct bconn *b, char *line)
{
	size_t i;

	for (i = 0; i < 4 && line[i] != '\0'; i++)
		if (line[i] >= 'a' && line[i] <= 'z')
			line[i] -= 'a' - 'A';
	if (strncmp(line, "QUIT", 4) == 0) {
		breply(b, "+OK bye\r\n");
		b->quit = true;
	} else if (strncmp(line, "CAPA", 4) == 0)
		breply(b, "+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n");
	else if (strncmp(line, "USER", 4) == 0 || strncmp(line, "NOOP", 4) == 0)
		breply(b, "+OK\r\n");
	else if (strncmp(line, "PASS", 4) == 0)
		breply(b, "+OK logged in\r\n");
	else if (strncmp(line, "STAT", 4) == 0) {
		b->reply_len = (size_t)snprintf(b->reply, sizeof(b->reply),
		    "+OK 1 %zu\r\n", msg_len - 3);
		b->reply_off = 0;
	} else if (strncmp(line, "RETR 1", 6) == 0) {
		b->reply_len = (size_t)snprintf(b->reply, sizeof(b->reply),
		    "+OK %zu octets\r\n", msg_len - 3);
		b->reply_off = 0;
		b->body = true;
		b->body_off = 0;
	} else
		breply(b, "-ERR unknown command\r\n");
}

/* bevent: flush, then answer whole lines one at a time (no reading ahead
 * while a reply is still going out). */
static void
bevent(struct bconn *b)
{
	bool blocked;
	char *lf;
	ssize_t n;
	size_t ll;

	for (;;) {
		if (!bflush(b, &blocked)) {
			bclose(b);
			return;
		}
		if (blocked)
			return;
		if ((lf = memchr(b->in, '\n', b->len)) != NULL) {
			*lf = '\0';
			ll = (size_t)(lf - b->in) + 1;
			bline(b, b->in);
			b->len -= ll;
			memmove(b->in, b->in + ll, b->len);
			continue;
		}
		if (b->len == sizeof(b->in) - 1) {
			bclose(b);
			return;
		}
		n = read(b->fd, b->in + b->len, sizeof(b->in) - 1 - b->len);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			bclose(b);
			return;
		}
		b->len += (size_t)n;
	}
}

static void
run_backend(void)
{
	struct epoll_event ev, evs[MAX_EVENTS];
	struct bconn *b;
	int lfd, fd, one = 1, n, i;

	build_message();
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	(void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&opt.addr, sizeof(opt.addr)) == -1 ||
	    listen(lfd, 4096) == -1)
		die("backend: bind/listen: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
	fprintf(stderr, "loadgen: backend ready, message of %zu bytes\n",
	    msg_len);
	while (!stop_signal) {
		n = epoll_wait(epfd, evs, MAX_EVENTS, 500);
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr != NULL) {
				bevent(evs[i].data.ptr);
				continue;
			}
			while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK |
			    SOCK_CLOEXEC)) != -1) {
				if ((b = calloc(1, sizeof(*b))) == NULL)
					die("out of memory");
				b->fd = fd;
				(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY,
				    &one, sizeof(one));
				breply(b, "+OK minimal POP3 backend ready\r\n");
				ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
				ev.data.ptr = b;
				if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
					bclose(b);
				else
					bevent(b);
			}
		}
	}
}

/* --- main ------------------------------------------------------------------ */

static void
on_signal(int sig)
{
	stop_signal = sig;
}

static void
parse_addr(const char *s, struct sockaddr_in *sin)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		die("bad address %s (want IPv4:PORT)", s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		die("bad address %s", s);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen bulk|sessions|latency|idle -a IP:PORT [-m tls|stls|plain]\n"
	    "         [-u USER] [-p PASS] [-c CONC] [-t SECS] [-n N] [-M MSG] [-R RETRS]\n"
	    "         [-r] [-2]"
	    " [-T SESSION_TIMEOUT] [-H OPEN_TIMEOUT] [-s SETTLE] [-w NAME=PID]...\n"
	    "       loadgen backend -l IP:PORT [-B MESSAGE_BYTES]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	struct rlimit rl;
	bool have_addr = false;
	char *eq;
	int ch;

	if (argc < 2)
		usage();
	opt.cmd = argv[1];
	optind = 2;
	while ((ch = getopt(argc, argv, "a:l:m:u:p:c:t:n:M:R:r2T:H:s:w:B:")) !=
	    -1) {
		switch (ch) {
		case 'a': case 'l':
			parse_addr(optarg, &opt.addr);
			have_addr = true;
			break;
		case 'm':
			if (strcmp(optarg, "tls") == 0) opt.mode = M_TLS;
			else if (strcmp(optarg, "stls") == 0) opt.mode = M_STLS;
			else if (strcmp(optarg, "plain") == 0) opt.mode = M_PLAIN;
			else usage();
			break;
		case 'u': opt.user = optarg; break;
		case 'p': opt.pass = optarg; break;
		case 'c': opt.conc = atoi(optarg); break;
		case 't': opt.secs = atof(optarg); break;
		case 'n': opt.n = atol(optarg); break;
		case 'M': opt.msg = atoi(optarg); break;
		case 'B': opt_msg_bytes = (size_t)atol(optarg); break;
		case 'R': opt.repeat = atoi(optarg); break;
		case 'r': opt.resume = true; break;
		case '2': opt.tls12 = true; break;
		case 'T': opt.sess_timeout = atof(optarg); break;
		case 'H': opt.hold_max = atof(optarg); break;
		case 's': opt.settle = atof(optarg); break;
		case 'w':
			if (opt.nwatch == MAX_WATCH ||
			    (eq = strchr(optarg, '=')) == NULL)
				usage();
			*eq = '\0';
			opt.watch[opt.nwatch].name = optarg;
			opt.watch[opt.nwatch].pid = (pid_t)atoi(eq + 1);
			opt.nwatch++;
			break;
		default: usage();
		}
	}
	if (!have_addr || opt.conc < 1 || opt.n < 1 || opt.repeat < 1 ||
	    opt.repeat > 32)
		usage();
	/* Thousands of sockets for idle; the caller raised the hard limit. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1: %s", strerror(errno));
	if (strcmp(opt.cmd, "backend") == 0) {
		run_backend();
		return 0;
	}
	tls_init_ctx();
	build_script(opt.cmd);
	if (strcmp(opt.cmd, "sessions") == 0)
		run_sessions();
	else if (strcmp(opt.cmd, "latency") == 0)
		run_latency();
	else if (strcmp(opt.cmd, "bulk") == 0)
		run_bulk();
	else if (strcmp(opt.cmd, "idle") == 0)
		run_idle();
	else
		usage();
	return st.failed > 0 && st.ok == 0 && st.held == 0 ? 1 : 0;
}
