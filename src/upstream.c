/* upstream.c — popsd as a POP3 client before and at TLS (see upstream.h). */
#include "upstream.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum ustate {
	US_TLS_FIRST,		/* pop3s: nothing before the handshake */
	US_GREETING,		/* waiting for the greeting */
	US_CAPA,		/* CAPA sent: waiting for its status line */
	US_CAPA_BODY,		/* reading the capability list */
	US_STLS,		/* STLS sent: waiting for "+OK" */
	US_HANDSHAKE,		/* UP_START_TLS returned */
	US_READY,
	US_FAILED,
};

void
upstream_init(struct upstream *u, enum upstream_mode m)
{
	memset(u, 0, sizeof(*u));
	u->mode = m;
	u->state = m == UPSTREAM_POP3S ? US_TLS_FIRST : US_GREETING;
}

/* fail: why is msg, then (sanitized by the logger) up to 100 bytes of
 * what the upstream said, in parentheses. */
static enum upstream_act
fail(struct upstream *u, const char *msg, const char *peer)
{
	snprintf(u->why, sizeof(u->why), "%s%s%.100s%s", msg,
	    peer ? " (" : "", peer ? peer : "", peer ? ")" : "");
	u->state = US_FAILED;
	return UP_FAIL;
}

/* status: +1 for "+OK", -1 for "-ERR", 0 for anything else. */
static int
status(const char *l)
{
	if (strncmp(l, "+OK", 3) == 0 && (l[3] == '\0' || l[3] == ' '))
		return 1;
	if (strncmp(l, "-ERR", 4) == 0 && (l[4] == '\0' || l[4] == ' '))
		return -1;
	return 0;
}

/* take_line: the next whole line of in into line (no CRLF, NUL ended):
 * 1; 0 when none is complete yet; -1 when it would be too long. */
static int
take_line(struct buf *in, char *line)
{
	const uint8_t *p;
	size_t len, n;
	long lf;

	if ((lf = buf_find_lf(in)) < 0)
		return buf_len(in) >= UPSTREAM_LINE_MAX ? -1 : 0;
	if ((size_t)lf + 1 > UPSTREAM_LINE_MAX)
		return -1;
	p = buf_rptr(in, &len);
	n = (size_t)lf;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	memcpy(line, p, n);
	line[n] = '\0';
	if (memchr(line, '\0', n) != NULL)
		line[0] = '\0';		/* a NUL in a line: not POP3 */
	buf_consume(in, (size_t)lf + 1);
	return 1;
}

/* capa_line: one line of the capability list (dot-stuffed, RFC 2449). */
static void
capa_line(struct upstream *u, const char *l)
{
	if (l[0] == '.')
		l++;
	if (strncasecmp(l, "STLS", 4) == 0 && (l[4] == '\0' || l[4] == ' '))
		u->saw_stls = true;
}

static enum upstream_act
one_line(struct upstream *u, const char *l, struct buf *out)
{
	switch (u->state) {
	case US_GREETING:
		if (status(l) != 1)
			return fail(u, status(l) == -1 ? "upstream refused "
			    "the connection" : "upstream sent no POP3 greeting",
			    l);
		snprintf(u->greeting, sizeof(u->greeting), "%s", l);
		if (u->mode == UPSTREAM_POP3S) {
			u->state = US_READY;
			return UP_READY;
		}
		if (buf_append(out, "CAPA\r\n", 6) == -1)
			return fail(u, "internal: no room for CAPA", NULL);
		u->state = US_CAPA;
		return UP_WAIT;
	case US_CAPA:
		if (status(l) != 1)
			return fail(u, "upstream does not offer STLS: "
			    "CAPA refused", l);
		u->state = US_CAPA_BODY;
		return UP_WAIT;
	case US_CAPA_BODY:
		if (strcmp(l, ".") != 0) {
			if (++u->capa_lines > UPSTREAM_CAPA_MAX)
				return fail(u, "upstream CAPA list too long",
				    NULL);
			capa_line(u, l);
			return UP_WAIT;
		}
		if (!u->saw_stls)
			return fail(u, "upstream does not offer STLS", NULL);
		if (buf_append(out, "STLS\r\n", 6) == -1)
			return fail(u, "internal: no room for STLS", NULL);
		u->state = US_STLS;
		return UP_WAIT;
	case US_STLS:
		if (status(l) != 1)
			return fail(u, "upstream refused STLS", l);
		u->state = US_HANDSHAKE;
		return UP_START_TLS;
	default:
		return fail(u, "internal: unexpected state", NULL);
	}
}

enum upstream_act
upstream_step(struct upstream *u, struct buf *in, struct buf *out)
{
	char line[UPSTREAM_LINE_MAX + 1];
	enum upstream_act a;
	int r;

	switch (u->state) {
	case US_TLS_FIRST:
		u->state = US_HANDSHAKE;
		return UP_START_TLS;
	case US_HANDSHAKE:
		return UP_START_TLS;
	case US_READY:
		return UP_READY;
	case US_FAILED:
		return UP_FAIL;
	default:
		break;
	}
	while ((r = take_line(in, line)) == 1) {
		if ((a = one_line(u, line, out)) != UP_WAIT)
			return a;
	}
	if (r == -1)
		return fail(u, "upstream line too long", NULL);
	return UP_WAIT;
}

/*
 * keep_timestamp: the greeting an STLS upstream sent before TLS, reduced
 * to what the client needs from it: "+OK", the APOP timestamp (RFC 1939
 * §7: "<" msg-id ">", printable, no space) if there is one, and text of
 * ours. Nothing read in the clear is relayed as the upstream's own words;
 * a forged timestamp only makes APOP fail (its digest goes out in TLS).
 */
static void
keep_timestamp(struct upstream *u)
{
	const char *lt = strchr(u->greeting, '<'), *gt;
	char stamp[UPSTREAM_LINE_MAX + 1] = "";
	const char *c;

	if (lt != NULL && (gt = strchr(lt, '>')) != NULL) {
		for (c = lt + 1; c < gt; c++)
			if (*c <= ' ' || *c > '~' || *c == '<')
				break;
		if (c == gt && gt > lt + 1)
			snprintf(stamp, sizeof(stamp), " %.*s",
			    (int)(gt - lt + 1), lt);
	}
	snprintf(u->greeting, sizeof(u->greeting),
	    "+OK%s POP3 server ready (upstream greeting read before TLS)",
	    stamp);
}

void
upstream_tls_done(struct upstream *u)
{
	if (u->state != US_HANDSHAKE)
		return;
	/* STLS: the greeting came before TLS (RFC 2595 §4 has no second
	 * one): only its timestamp stands. pop3s: it comes now. */
	if (u->mode == UPSTREAM_STLS) {
		keep_timestamp(u);
		u->state = US_READY;
	} else
		u->state = US_GREETING;
}

const char *
upstream_greeting(const struct upstream *u)
{
	return u->state == US_READY ? u->greeting : "";
}

const char *
upstream_why(const struct upstream *u)
{
	return u->state == US_FAILED ? u->why : "";
}
