/*
 * session_proxy.c — the PROXY protocol at a session's two ends: the header
 * a trusted balancer sends before anything else (accept-proxy-protocol),
 * and the one popsd sends its backend (backend-proxy-protocol). The
 * parsing and building are proxy.c's; this is the I/O and what follows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "accounting.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "popsd.h"
#include "session.h"
#include "session_int.h"
#include "proxy.h"


/*
 * session_send_proxy_header: tell the backend who the client really is, before
 * any POP3 byte (backend-proxy-protocol). The TLS facts go with v2 when
 * TLS is already up. -1 if it could not be built (the session is then
 * refused).
 */
int
session_send_proxy_header(struct session *s)
{
	uint8_t hdr[PROXY_HDR_MAX];
	struct proxy_tls tls = { s->tls_version, s->tls_cipher, NULL, false };
	const struct sockaddr *src = s->peerlen ? (struct sockaddr *)&s->peer :
	    NULL, *dst = s->locallen ? (struct sockaddr *)&s->local : NULL;
	ssize_t n;

	if (s->conf->backend.proxy_version == 1)
		n = proxy_build_v1((char *)hdr, sizeof(hdr), src, dst);
	else
		n = proxy_build_v2(hdr, sizeof(hdr), src, dst,
		    s->tls_version[0] ? &tls : NULL);
	if (n <= 0 || buf_append(&s->to_backend, hdr, (size_t)n) == -1) {
		session_backend_unavailable(s, "cannot build the PROXY header");
		return -1;
	}
	return 0;
}

/* proxy_apply: a complete header: from here on the client is the one it
 * names (a LOCAL or UNKNOWN header keeps the balancer's address), and
 * that client is counted for max-sessions-per-ip. false if closed. */
static bool
proxy_apply(struct session *s, const struct proxy_result *res)
{
	const struct conf *c = s->d->conf;
	char as[LEDGER_KEY_TEXT_MAX];
	const char *why;
	unsigned n = 0;
	int r;

	snprintf(s->via, sizeof(s->via), "%s", s->peer_addr);
	if (res->has_addr) {
		memcpy(&s->peer, &res->src, res->srclen);
		s->peerlen = res->srclen;
		memcpy(&s->local, &res->dst, res->dstlen);
		s->locallen = res->dstlen;
		session_peer_text(s);
	}
	r = acct_take_peer(s->d->ledger, &s->acct, (struct sockaddr *)&s->peer,
	    c->per_ip_ipv6_prefix, (unsigned)c->max_sessions_per_ip, &n);
	if (r != 0) {
		why = r == -1 ? "max-sessions-per-ip" : "address-table-full";
		metrics_count(r == -1 ? M_LIMIT_PER_IP : M_LIMIT_TABLE_FULL, 1);
		if (r == -1)
			log_warnx("refused client=%s reason=%s sessions=%u "
			    "limit=%d counted_as=%s (behind a PROXY header)",
			    s->peer_addr, why, n, c->max_sessions_per_ip,
			    ledger_key_format(s->acct.key,
			    c->per_ip_ipv6_prefix, as, sizeof(as)));
		else
			log_warnx("refused client=%s reason=%s addresses=%u "
			    "limit=%u (behind a PROXY header)", s->peer_addr,
			    why, n, ledger_capacity(s->d->ledger));
		/* Nothing can be said before TLS. */
		if (s->kind != LISTEN_POP3 && s->kind != LISTEN_OUTBOUND) {
			session_close(s, why);
			return false;
		}
		session_refuse(s, why, r == -1 ? "too many sessions from your "
		    "address, try again later" : "too many sessions, try again "
		    "later");
		session_pump(s);
		return false;
	}
	session_begin(s);
	return false;	/* session_begin pumped (or closed) the session */
}

/*
 * session_read_proxy: read the header exactly (proxy_parse says how much
 * more is surely header), so that what follows it, a TLS ClientHello on a
 * pop3s port, stays in the socket for libtls. false if the session moved
 * on or was closed.
 */
bool
session_read_proxy(struct session *s)
{
	struct proxy_result res;
	const uint8_t *p;
	uint8_t *w;
	size_t avail, len;
	ssize_t n;
	int rv;

	while (s->client.rd_wait == 0) {
		if ((w = buf_wptr(&s->cin, &avail)) == NULL) {
			session_close(s, "proxy-invalid");
			return false;
		}
		n = xio_read(&s->client.io, w, avail < s->proxy_need ? avail :
		    s->proxy_need);
		if (xio_wants(n)) {
			s->client.rd_wait = xio_want_event(n);
			break;
		}
		if (n <= 0) {
			session_note_detail(s, "client", &s->client.io);
			session_close(s, n == 0 ? "proxy-eof" : "client-error");
			return false;
		}
		buf_commit(&s->cin, (size_t)n);
		p = buf_rptr(&s->cin, &len);
		rv = proxy_parse(p, len, &res);
		if (rv == PROXY_NEED_MORE) {
			s->proxy_need = res.need;
			continue;
		}
		if (rv == PROXY_INVALID) {
			log_warnx("session=%llu client=%s: no valid PROXY header "
			    "from a trusted balancer", (unsigned long long)s->id,
			    s->peer_addr);
			xio_discard_input(s->client.io.fd);
			session_close(s, "proxy-invalid");
			return false;
		}
		buf_consume(&s->cin, (size_t)rv);
		return proxy_apply(s, &res);
	}
	return true;
}
