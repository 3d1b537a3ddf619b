/* log.c — stderr or syslog diagnostics, OpenBSD log.c style. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int log_to_stderr = 1;
static int log_verbose;

void
log_init(int to_stderr, int verbosity, const char *ident)
{
	log_to_stderr = to_stderr;
	log_verbose = verbosity;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	tzset();
}

int
log_verbosity(void)
{
	return log_verbose;
}

/*
 * stderr_line: one log line with a single write(2). With "workers N"
 * several processes share stderr; a line written in pieces (text, then
 * newline) would interleave with another process's.
 */
static void
stderr_line(const char *msg, const char *suffix)
{
	char line[2048];
	int n;

	n = snprintf(line, sizeof(line), "%s%s\n", msg, suffix);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* Nowhere to report a failed log write: the result is dropped. */
	if (write(STDERR_FILENO, line, (size_t)n) == -1)
		return;
}

static void __attribute__((format(printf, 2, 0)))
vlog(int pri, const char *fmt, va_list ap)
{
	char msg[1536];

	if (!log_to_stderr) {
		vsyslog(pri, fmt, ap);
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	stderr_line(msg, "");
}

static void __attribute__((format(printf, 3, 0)))
vlog_errno(int pri, int saved, const char *fmt, va_list ap)
{
	char msg[1024], suffix[256];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_to_stderr) {
		snprintf(suffix, sizeof(suffix), ": %s", strerror(saved));
		stderr_line(msg, suffix);
	} else
		syslog(pri, "%s: %s", msg, strerror(saved));
}

void
log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog_errno(LOG_WARNING, saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (log_verbose < 1)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog_errno(LOG_CRIT, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

char *
log_sanitize(char *dst, size_t dstsz, const void *src, size_t srclen)
{
	const unsigned char *s = src;
	size_t i, n = 0;

	if (dstsz == 0)
		return dst;
	for (i = 0; i < srclen && n + 1 < dstsz; i++) {
		unsigned char c = s[i];
		dst[n++] = (c < 0x20 || c > 0x7e || c == '"' || c == '\\' ||
		    c == '=') ? '?' : (char)c;
	}
	dst[n] = '\0';
	if (i < srclen && dstsz >= 4)
		memcpy(dst + dstsz - 4, "...", 4);
	return dst;
}
