/*
 * log.h — diagnostics for popsd.
 *
 * Two sinks: stderr (foreground, -d) or syslog(LOG_MAIL). Warnings carry
 * errno (log_warn) or not (log_warnx); fatal/fatalx log and exit(1).
 * Anything a peer sent must go through log_sanitize() before it is logged.
 */
#ifndef POPSD_LOG_H
#define POPSD_LOG_H

#include <stddef.h>

/* log_init: to_stderr != 0 logs to stderr, else to syslog as ident.
 * verbosity: 0 = info and above, 1 = debug, 2+ = trace-level debug. */
void log_init(int to_stderr, int verbosity, const char *ident);
int log_verbosity(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* log_sanitize: copy at most srclen bytes of peer-supplied src into dst
 * (size dstsz, always NUL-terminated), replacing every byte outside
 * printable ASCII, and the characters '"', '\\' and '=' which would make a
 * key=value log line ambiguous, with '?'. Output longer than dstsz-1 is
 * cut and ends in "...". Returns dst. */
char *log_sanitize(char *dst, size_t dstsz, const void *src, size_t srclen);

#endif
