/*
 * metrics.h — counters for the whole daemon, and their Prometheus text.
 *
 * The counters live in one shared anonymous mapping made before the
 * workers are forked: one slot per worker and one for the process that
 * made it (the master of "workers N", or the single process). Each
 * process adds only to its own slot, with relaxed atomics; a reader sums
 * every slot, so whichever worker answers a scrape gives the daemon's
 * view. A slot is never cleared when its worker dies: the worker that
 * replaces it takes the same slot and goes on counting, so nothing
 * counted is lost. Only the gauges of a dead worker (its live sessions)
 * are zeroed, by the master (metrics_forget).
 *
 * Callers below which the counting happens (session, listener, main) call
 * down into this module with metrics_count() and a few helpers that name
 * a counter from facts they have; nothing here calls back up. Counting
 * happens at events (a session opens, logs in, closes), never per read,
 * so a spliced session costs nothing here until it ends.
 *
 * The renderer (metrics_render) and the classifiers are pure.
 */
#ifndef POPSD_METRICS_H
#define POPSD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metric {
	/* popsd_sessions_total{listener}: in enum listen_kind order. */
	M_SESSIONS_POP3S,
	M_SESSIONS_POP3,
	M_SESSIONS_TLS,
	M_SESSIONS_OUTBOUND,
	M_SESSIONS_ACTIVE,		/* gauge */
	M_STLS_UPGRADES,
	M_IMPLICIT_TLS,
	/* popsd_logins_total{transport} */
	M_LOGINS_TLS,
	M_LOGINS_PLAIN_ALLOWED,
	M_LOGINS_PLAIN_WARNED,
	M_PLAIN_REFUSED,
	M_LOGIN_FAILURES,
	/* popsd_tls_handshake_failures_total{reason} */
	M_TLS_FAIL_TIMEOUT,
	M_TLS_FAIL_CLOSED,
	M_TLS_FAIL_NOT_TLS,
	M_TLS_FAIL_VERSION,
	M_TLS_FAIL_CIPHER,
	M_TLS_FAIL_CLIENT_CERT,
	M_TLS_FAIL_CERT_REJECTED,
	M_TLS_FAIL_OTHER,
	/* popsd_tls_sessions_total{version} */
	M_TLS_V1_2,
	M_TLS_V1_3,
	M_TLS_V_OTHER,
	M_TLS_RESUMED,
	M_BACKEND_FAILURES,
	M_SHIELD_REJECTIONS,
	/* popsd_limit_rejections_total{limit} */
	M_LIMIT_SESSIONS,
	M_LIMIT_PER_IP,
	M_LIMIT_TABLE_FULL,
	/* popsd_client_bytes_total{direction} */
	M_BYTES_FROM_CLIENT,
	M_BYTES_TO_CLIENT,
	M_RELOADS,
	M_RELOAD_FAILURES,
	M_COUNT
};

/* At most this many certificates have an expiry gauge (conf's bound). */
#define METRICS_CERTS_MAX	16
/* Longest certificate label kept (a longer path is cut, ending "..."). */
#define METRICS_LABEL_MAX	200
/* metrics_render never needs more than this for every counter and
 * METRICS_CERTS_MAX certificates with the longest labels. */
#define METRICS_TEXT_MAX	(16 * 1024)

struct metrics_cert {
	char	label[METRICS_LABEL_MAX + 1];	/* the certificate's path */
	int64_t	not_after;			/* Unix time */
};

/* metrics_init: the shared counters for nworkers (1..64) workers plus
 * the calling process, which writes the last slot until metrics_bind().
 * 0, or -1 if the mapping cannot be made. Call once, before forking. */
int	metrics_init(int nworkers);

/* metrics_bind: in a worker after fork(): count into slot `worker`. */
void	metrics_bind(int worker);

/* metrics_forget: in the master once worker `worker` has ended: its
 * gauges drop to 0; its counters stay, and its successor adds to them. */
void	metrics_forget(int worker);

/* metrics_count: add n to counter (or gauge) id in this process's slot.
 * A no-op before metrics_init() (unit tests) or for an id out of range. */
void	metrics_count(enum metric id, int64_t n);

/* metrics_session_opened / _closed: a session began on a listener of
 * kind (enum listen_kind), or ended having read from_client and written
 * to_client bytes on the client side. */
void	metrics_session_opened(int kind);
void	metrics_session_closed(uint64_t from_client, uint64_t to_client);

/* metrics_tls_established: a client handshake completed with version
 * (tls_conn_version()), resumed or not, after STLS or as implicit TLS. */
void	metrics_tls_established(const char *version, bool resumed, bool stls);

/* metrics_sum: every slot added up, into out[M_COUNT]. Zeros before
 * metrics_init(). */
void	metrics_sum(int64_t out[M_COUNT]);

/* metrics_set_cert: certificate i (0 .. METRICS_CERTS_MAX-1) of this
 * process's current configuration expires at not_after (Unix time).
 * metrics_set_ncerts: how many there are now (the rest are dropped).
 * Kept in this process only: each worker reloads on its own. */
void	metrics_set_cert(int i, const char *path, int64_t not_after);
void	metrics_set_ncerts(int n);

/* metrics_log: write every figure (metrics_render's samples) to the log,
 * one line each (SIGUSR1). */
void	metrics_log(void);

/* metrics_text: render this process's view (the sums and its own
 * certificates) into out; returns the length (< outsz). */
size_t	metrics_text(char *out, size_t outsz);

/*
 * metrics_render: PURE. The Prometheus text exposition format (0.0.4) of
 * the counters v and the ncerts certificates, with # HELP and # TYPE
 * lines, into out (size outsz, NUL-terminated). Returns the length the
 * whole text needs, as snprintf does; METRICS_TEXT_MAX always suffices.
 * Label values are escaped as the format requires and cut at
 * METRICS_LABEL_MAX.
 */
size_t	metrics_render(const int64_t v[M_COUNT],
	    const struct metrics_cert *certs, int ncerts, char *out,
	    size_t outsz);

/* metrics_tls_failure: PURE. The counter for a client handshake that did
 * not complete, from the session's close reason and the TLS error text
 * (either may be NULL or empty). */
enum metric metrics_tls_failure(const char *reason, const char *err);

/* metrics_limit: PURE. The counter for a connection turned away by a
 * limit, from the reason it is logged with ("max-sessions",
 * "max-sessions-per-ip", "address-table-full"); M_COUNT for another. */
enum metric metrics_limit(const char *reason);

#endif
