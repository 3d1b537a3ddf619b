/*
 * metrics_http.h — "metrics-listen": GET /metrics over plain HTTP/1.x,
 * served from the event loop of each worker (the counters are shared,
 * metrics.h, so any worker gives the whole daemon's figures).
 *
 * Bounded on every side: at most METRICS_HTTP_CLIENTS requests at once
 * (more are closed at once), a request of at most METRICS_HTTP_REQ_MAX
 * bytes up to its blank line, METRICS_HTTP_TIMEOUT seconds for the whole
 * exchange, one response, then close. The request parser is pure.
 */
#ifndef POPSD_METRICS_HTTP_H
#define POPSD_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "conf.h"

#define METRICS_HTTP_CLIENTS	8
#define METRICS_HTTP_REQ_MAX	4096
#define METRICS_HTTP_TIMEOUT	5.0

enum http_verdict {
	HTTP_MORE,		/* no blank line yet: read on */
	HTTP_OK,		/* GET or HEAD /metrics */
	HTTP_BAD_REQUEST,	/* 400: not an HTTP/1.x request line */
	HTTP_NOT_FOUND,		/* 404: another path */
	HTTP_BAD_METHOD,	/* 405: not GET or HEAD */
	HTTP_TOO_LARGE,		/* 431: no blank line within the bound */
};

/*
 * metrics_http_parse: PURE. Judge the request in buf (len bytes read so
 * far, max the bound): HTTP_MORE until the header's blank line ("\r\n\r\n"
 * or "\n\n") has arrived, unless the request line alone already decides
 * (a bad request line is refused as soon as it is complete). *head is
 * set for a HEAD that is HTTP_OK, false otherwise. The request line is
 * "METHOD SP /metrics[?query] SP HTTP/1.0 or HTTP/1.1"; headers are not
 * interpreted.
 */
enum http_verdict metrics_http_parse(const char *buf, size_t len, size_t max,
	    bool *head);

struct metrics_http;

/* metrics_http_bind: listen on cl (at start-up, before the privilege
 * drop). NULL with the reason logged. */
struct metrics_http *metrics_http_bind(struct ev_loop *loop,
	    const struct conf_listen *cl);

/* metrics_http_start: serve on the loop given to bind (after fork, in
 * each worker). one_per_wakeup: several processes share the socket. */
void	metrics_http_start(struct metrics_http *h, bool one_per_wakeup);

/* metrics_http_free: stop, end the requests in flight, close. NULL ok. */
void	metrics_http_free(struct metrics_http *h);

#endif
