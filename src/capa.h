/*
 * capa.h — rewriting the backend's CAPA answer. PURE: lines in, lines out
 * (RFC 2449 §5, RFC 2595 §4, RFC 3206 §6, RFC 5034 §3).
 *
 * popsd, not the backend, decides whether STLS is on offer and whether a
 * login may be tried in the clear, so the capability list is filtered line
 * by line on its way to the client, and replaced outright when a
 * pre-RFC 2449 backend answers CAPA with "-ERR". Body lines are passed
 * without their line ending and without the terminating "." line.
 * Capability names compare case-insensitively (RFC 2449 §5).
 */
#ifndef POPSD_CAPA_H
#define POPSD_CAPA_H

#include <stdbool.h>
#include <stddef.h>

struct capa_policy {
	bool	offer_stls;	/* STLS is configured and TLS not yet active */
	bool	hide_login;	/* TLS required and not active: no USER, SASL */
};

/* One CAPA answer being filtered; plain data, no memory held. */
struct capa_filter {
	struct capa_policy	pol;
	bool			seen_resp_codes;
	bool			seen_auth_resp_code;
};

/* Upper bounds on what capa_trailer() and capa_synth() write. */
#define CAPA_TRAILER_MAX	64
#define CAPA_SYNTH_MAX		128

/* capa_begin: start filtering one CAPA answer under pol. */
void	capa_begin(struct capa_filter *f, const struct capa_policy *pol);

/* capa_keep: one body line (len bytes, no line ending, not the final
 * "."): true to relay it unchanged, false to drop it. The backend's STLS
 * is always dropped (only popsd can start TLS); USER and SASL are dropped
 * under hide_login. Notes RESP-CODES and AUTH-RESP-CODE so that
 * capa_trailer() does not repeat them. */
bool	capa_keep(struct capa_filter *f, const char *line, size_t len);

/* capa_trailer: write the lines popsd adds (STLS when offered,
 * RESP-CODES and AUTH-RESP-CODE unless the backend listed them) and the
 * terminating ".\r\n" into out. Returns the length written (no NUL), or 0
 * when outsz < CAPA_TRAILER_MAX. */
size_t	capa_trailer(const struct capa_filter *f, char *out, size_t outsz);

/* capa_synth: a complete CAPA answer ("+OK" line to ".\r\n") for a backend
 * that answered "-ERR": only what popsd knows to be true of any RFC 1939
 * backend and of itself (USER unless hidden, STLS when offered,
 * RESP-CODES, AUTH-RESP-CODE). Returns the length, or 0 when
 * outsz < CAPA_SYNTH_MAX. */
size_t	capa_synth(const struct capa_policy *pol, char *out, size_t outsz);

#endif
