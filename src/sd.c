/* sd.c — socket activation and sd_notify, implemented directly. */
#include "sd.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <netdb.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* systemd passes activated sockets from this descriptor on. */
#define SD_LISTEN_FDS_START	3

static int	notify_fd = -1;
static double	watchdog_interval;

/* parse_ulong: all-digit decimal, no sign or spaces; 0 or -1. */
static int
parse_ulong(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (ULLONG_MAX - 9) / 10)
			return -1;
		v = v * 10 + (unsigned long long)(*s - '0');
	}
	*out = v;
	return 0;
}

/* for_this_process: does a *_PID variable name us? Unset means yes only
 * when unset_means_us (WATCHDOG_PID is optional, LISTEN_PID is not). */
static bool
for_this_process(const char *var, bool unset_means_us)
{
	const char *s = getenv(var);
	unsigned long long pid;

	if (s == NULL)
		return unset_means_us;
	return parse_ulong(s, &pid) == 0 && pid == (unsigned long long)getpid();
}

int
sd_check_stream_socket(int fd, bool listening, char *why, size_t whysz)
{
	int type = 0, acc = 0;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1) {
		snprintf(why, whysz, "not a socket (%s)", strerror(errno));
		return -1;
	}
	if (type != SOCK_STREAM) {
		snprintf(why, whysz, "not a stream socket (SO_TYPE %d)", type);
		return -1;
	}
	len = sizeof(acc);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == -1) {
		snprintf(why, whysz, "SO_ACCEPTCONN: %s", strerror(errno));
		return -1;
	}
	if ((acc != 0) != listening) {
		snprintf(why, whysz, listening ? "not a listening socket" :
		    "a listening socket, not a connection");
		return -1;
	}
	return 0;
}

/* local_text: "127.0.0.1:995", "[::]:995" or a unix path, for logs. */
static void
local_text(int fd, char *buf, size_t bufsz)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN], port[8];

	snprintf(buf, bufsz, "fd %d", fd);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		return;
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
		if (sl > offsetof(struct sockaddr_un, sun_path) &&
		    sun->sun_path[0] != '\0')
			snprintf(buf, bufsz, "%.*s", (int)(sl -
			    offsetof(struct sockaddr_un, sun_path)),
			    sun->sun_path);
		return;
	}
	if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
	    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return;
	snprintf(buf, bufsz, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
	    host, port);
}

/* name_kind: the listener kind a FileDescriptorName= stands for. */
static int
name_kind(const char *name, size_t len, enum listen_kind *kind)
{
	if (len == 5 && memcmp(name, "pop3s", 5) == 0)
		*kind = LISTEN_POP3S;
	else if (len == 4 && memcmp(name, "pop3", 4) == 0)
		*kind = LISTEN_POP3;
	else if (len == 3 && memcmp(name, "tls", 3) == 0)
		*kind = LISTEN_TLS;
	else if (len == 8 && memcmp(name, "outbound", 8) == 0)
		*kind = LISTEN_OUTBOUND;
	else
		return -1;
	return 0;
}

/* nth_name: the i-th ':'-separated name of LISTEN_FDNAMES (names may be
 * empty); *len 0 and NULL when there are fewer names than sockets. */
static const char *
nth_name(const char *names, int i, size_t *len)
{
	const char *p = names, *end;

	*len = 0;
	if (p == NULL)
		return NULL;
	for (; i > 0; i--) {
		if ((p = strchr(p, ':')) == NULL)
			return NULL;
		p++;
	}
	end = strchr(p, ':');
	*len = end != NULL ? (size_t)(end - p) : strlen(p);
	return p;
}

/* adopt_one: check the i-th passed socket and fill out; 0 or -1. */
static int
adopt_one(int i, int n, const char *names, struct sd_listen_fd *out,
    char *err, size_t errsz)
{
	int fd = SD_LISTEN_FDS_START + i, fl;
	const char *name;
	char why[128], q[64], addr[64];
	size_t len;

	name = nth_name(names, i, &len);
	if (name == NULL || len == 0) {
		snprintf(err, errsz, "socket %d of %d passed by systemd (fd %d) "
		    "has no name: set FileDescriptorName=pop3s, pop3, tls or "
		    "outbound in its .socket unit", i + 1, n, fd);
		return -1;
	}
	if (name_kind(name, len, &out->kind) == -1) {
		log_sanitize(q, sizeof(q), name, len);
		snprintf(err, errsz, "socket %d of %d passed by systemd (fd %d) "
		    "is named \"%s\": expected FileDescriptorName=pop3s, "
		    "pop3, tls or outbound", i + 1, n, fd, q);
		return -1;
	}
	if (sd_check_stream_socket(fd, true, why, sizeof(why)) == -1) {
		snprintf(err, errsz, "socket %d of %d passed by systemd (fd %d, "
		    "%s): %s; use ListenStream= without Accept=yes", i + 1, n,
		    fd, listen_kind_name(out->kind), why);
		return -1;
	}
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		snprintf(err, errsz, "socket passed by systemd (fd %d): fcntl: "
		    "%s", fd, strerror(errno));
		return -1;
	}
	out->fd = fd;
	local_text(fd, addr, sizeof(addr));
	snprintf(out->text, sizeof(out->text), "%s (systemd)", addr);
	return 0;
}

static void
unset_listen_env(void)
{
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

int
sd_adopt_listen_fds(struct sd_listen_fd *out, int max, char *err,
    size_t errsz)
{
	unsigned long long n;
	const char *names = getenv("LISTEN_FDNAMES");
	int i, rv = 0;

	if (getenv("LISTEN_FDS") == NULL || !for_this_process("LISTEN_PID",
	    false))
		goto done;	/* not activated, or meant for another process */
	if (parse_ulong(getenv("LISTEN_FDS"), &n) == -1 ||
	    n > (unsigned long long)max) {
		snprintf(err, errsz, "LISTEN_FDS=\"%.16s\": expected a number "
		    "of sockets from 0 to %d", getenv("LISTEN_FDS"), max);
		rv = -1;
		goto done;
	}
	for (i = 0; i < (int)n; i++) {
		if (adopt_one(i, (int)n, names, &out[i], err, errsz) == -1) {
			rv = -1;
			goto done;
		}
	}
	rv = (int)n;
done:
	unset_listen_env();
	return rv;
}

/* --- notification ------------------------------------------------------ */

/* notify_addr: NOTIFY_SOCKET as a sockaddr_un; its length, or 0. */
static socklen_t
notify_addr(const char *path, struct sockaddr_un *sun)
{
	size_t len = strlen(path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if ((path[0] != '/' && path[0] != '@') || len < 2 ||
	    len >= sizeof(sun->sun_path))
		return 0;
	memcpy(sun->sun_path, path, len);
	if (path[0] == '@') {
		/* Abstract namespace: a leading NUL, and no trailing one
		 * (the length says where the name ends). */
		sun->sun_path[0] = '\0';
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	}
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

static void
watchdog_open(void)
{
	unsigned long long usec;
	const char *s = getenv("WATCHDOG_USEC");

	if (s != NULL && for_this_process("WATCHDOG_PID", true)) {
		if (parse_ulong(s, &usec) == 0 && usec > 0)
			watchdog_interval = (double)usec / 2e6;
		else
			log_warnx("WATCHDOG_USEC=\"%.16s\" is not a number of "
			    "microseconds: no watchdog pings", s);
	}
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

void
sd_notify_open(void)
{
	struct sockaddr_un sun;
	const char *path = getenv("NOTIFY_SOCKET");
	socklen_t len;
	char q[112];

	watchdog_open();
	if (path == NULL)
		return;
	log_sanitize(q, sizeof(q), path, strlen(path));
	if ((len = notify_addr(path, &sun)) == 0)
		log_warnx("NOTIFY_SOCKET=\"%s\" is not an absolute path or "
		    "@name: not notifying systemd", q);
	else if ((notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC,
	    0)) == -1)
		log_warn("NOTIFY_SOCKET: socket");
	else if (connect(notify_fd, (struct sockaddr *)&sun, len) == -1) {
		log_warn("NOTIFY_SOCKET=\"%s\": connect", q);
		close(notify_fd);
		notify_fd = -1;
	}
	unsetenv("NOTIFY_SOCKET");
}

void
sd_notify_close(void)
{
	if (notify_fd != -1)
		close(notify_fd);
	notify_fd = -1;
	watchdog_interval = 0;
}

bool
sd_notify_active(void)
{
	return notify_fd != -1;
}

void
sd_notify_send(const char *fmt, ...)
{
	static bool warned;
	char msg[512];
	va_list ap;
	int n;

	if (notify_fd == -1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	if (send(notify_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == -1 &&
	    errno != EAGAIN && !warned) {
		/* Once: a vanished receiver would otherwise fill the log
		 * with one line per watchdog ping. */
		log_warn("NOTIFY_SOCKET: send");
		warned = true;
	}
}

void
sd_notify_status(const char *status)
{
	static char last[128];

	if (strcmp(status, last) == 0)
		return;
	snprintf(last, sizeof(last), "%s", status);
	sd_notify_send("STATUS=%s", status);
}

double
sd_watchdog_interval(void)
{
	return watchdog_interval;
}

unsigned long long
sd_monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL;
}
