/* route.c — routed outbound mode: USER name@host[:port] (see route.h). */
#include "route.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define LINE_MAX_ROUTE	512	/* longer than any line the mediator forwards */
#define REPLY_ROOM	256	/* the longest answer written here, and then some */

#define R_CAPA		"+OK capability list follows\r\nUSER\r\n.\r\n"
#define R_QUIT		"+OK bye\r\n"
#define R_NEED_HOST	"-ERR [AUTH] give the user name as user@host " \
			    "(or user@host:port)\r\n"
#define R_FIRST		"-ERR [AUTH] USER user@host first; this proxy " \
			    "offers no APOP or AUTH before it\r\n"
#define R_NOT_ALLOWED	"-ERR [AUTH] that server is not allowed here\r\n"

static bool
label_char(int c)
{
	return isalnum(c) || c == '-' || c == '_';
}

/* host_ok: dot-separated labels of 1..63 label_chars, at most
 * ROUTE_HOST_MAX bytes in all. */
static bool
host_ok(const char *h, size_t len)
{
	size_t i, lab = 0;

	if (len == 0 || len > ROUTE_HOST_MAX)
		return false;
	for (i = 0; i < len; i++) {
		if (h[i] == '.') {
			if (lab == 0)
				return false;
			lab = 0;
		} else if (label_char((unsigned char)h[i]) && ++lab <= 63)
			continue;
		else
			return false;
	}
	return lab > 0;
}

static int
parse_port(const char *p, size_t len, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0 || len > 5 || p[0] == '0')
		return -1;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)p[i]))
			return -1;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int
route_parse_user(const char *arg, size_t len, struct route_target *t)
{
	const char *at = NULL, *h, *colon;
	size_t i, namelen, hlen;

	for (i = 0; i < len; i++) {
		if ((unsigned char)arg[i] <= ' ' || arg[i] == 0x7f)
			return -1;	/* one word, printable */
		if (arg[i] == '@')
			at = arg + i;
	}
	if (at == NULL || (namelen = (size_t)(at - arg)) == 0 ||
	    namelen > ROUTE_NAME_MAX)
		return -1;
	h = at + 1;
	hlen = len - namelen - 1;
	t->port = ROUTE_PORT_POP3S;
	if ((colon = memchr(h, ':', hlen)) != NULL) {
		if (parse_port(colon + 1, hlen - (size_t)(colon + 1 - h),
		    &t->port) == -1)
			return -1;
		hlen = (size_t)(colon - h);
	}
	if (hlen > 1 && h[hlen - 1] == '.')
		hlen--;		/* "host." is the same fully qualified name */
	if (!host_ok(h, hlen))
		return -1;
	memcpy(t->name, arg, namelen);
	t->name[namelen] = '\0';
	for (i = 0; i < hlen; i++)
		t->host[i] = (char)tolower((unsigned char)h[i]);
	t->host[hlen] = '\0';
	t->implicit_tls = t->port == ROUTE_PORT_POP3S;
	return 0;
}

bool
route_pattern_ok(const char *s)
{
	if (strncmp(s, "*.", 2) == 0)
		s += 2;
	return host_ok(s, strlen(s));
}

static bool
pattern_match(const char *pat, const char *host)
{
	size_t hl = strlen(host), pl;

	if (strncmp(pat, "*.", 2) != 0)
		return strcasecmp(pat, host) == 0;
	pat++;				/* ".example.net" */
	pl = strlen(pat);
	/* host labels are never empty (host_ok): hl > pl leaves at least
	 * one whole label before the suffix's dot. */
	return hl > pl && strcasecmp(host + hl - pl, pat) == 0;
}

bool
route_host_allowed(char *const *patterns, int n, const char *host)
{
	int i;

	for (i = 0; i < n; i++)
		if (pattern_match(patterns[i], host))
			return true;
	return false;
}

void
route_init(struct route *r, char *const *allow, int nallow)
{
	memset(r, 0, sizeof(*r));
	r->allow = allow;
	r->nallow = nallow;
}

/* keyword: is the line's first word kw (case-insensitive)? *arg, *arglen:
 * what follows one space. */
static bool
keyword(const char *line, size_t len, const char *kw, const char **arg,
    size_t *arglen)
{
	size_t k = strlen(kw);

	if (len < k || strncasecmp(line, kw, k) != 0 ||
	    (len > k && line[k] != ' '))
		return false;
	*arg = len > k ? line + k + 1 : line + len;
	*arglen = len > k ? len - k - 1 : 0;
	return true;
}

/* route_user: USER arg: choose, or say why not. */
static enum route_ev
route_user(struct route *r, const char *arg, size_t arglen,
    struct buf *replies)
{
	struct route_target t;

	if (memchr(arg, '@', arglen) == NULL) {
		(void)buf_append(replies, R_NEED_HOST, strlen(R_NEED_HOST));
		return ROUTE_NONE;
	}
	if (route_parse_user(arg, arglen, &t) == -1) {
		(void)buf_append(replies, R_NEED_HOST, strlen(R_NEED_HOST));
		return ROUTE_NONE;
	}
	if (!route_host_allowed(r->allow, r->nallow, t.host)) {
		snprintf(r->refused, sizeof(r->refused), "%s", t.host);
		(void)buf_append(replies, R_NOT_ALLOWED, strlen(R_NOT_ALLOWED));
		return ROUTE_NONE;
	}
	r->target = t;
	r->done = true;
	return ROUTE_GO;
}

/* one_line: act on one command line (no line ending). */
static enum route_ev
one_line(struct route *r, const char *line, size_t len, struct buf *replies)
{
	const char *arg;
	size_t arglen;

	if (keyword(line, len, "USER", &arg, &arglen))
		return route_user(r, arg, arglen, replies);
	if (keyword(line, len, "CAPA", &arg, &arglen) && arglen == 0) {
		(void)buf_append(replies, R_CAPA, strlen(R_CAPA));
		return ROUTE_NONE;
	}
	if (keyword(line, len, "QUIT", &arg, &arglen) && arglen == 0) {
		(void)buf_append(replies, R_QUIT, strlen(R_QUIT));
		r->done = true;
		return ROUTE_QUIT;
	}
	(void)buf_append(replies, R_FIRST, strlen(R_FIRST));
	return ROUTE_NONE;
}

enum route_ev
route_input(struct route *r, struct buf *cmds, struct buf *replies)
{
	char line[LINE_MAX_ROUTE];
	enum route_ev ev;
	const uint8_t *p;
	size_t len, n;
	long lf;

	while (!r->done && buf_space(replies) >= REPLY_ROOM &&
	    (lf = buf_find_lf(cmds)) >= 0) {
		p = buf_rptr(cmds, &len);
		n = (size_t)lf;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n >= sizeof(line))
			n = sizeof(line) - 1;	/* cannot come from pop3.c */
		memcpy(line, p, n);
		buf_consume(cmds, (size_t)lf + 1);
		ev = one_line(r, line, n, replies);
		/* The line may hold a password (PASS before USER). */
		explicit_bzero(line, sizeof(line));
		if (ev != ROUTE_NONE)
			return ev;
	}
	return ROUTE_NONE;
}
