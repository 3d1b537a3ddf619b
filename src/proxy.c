/* proxy.c — PROXY protocol v1/v2 headers, built and parsed (see proxy.h). */
#include "proxy.h"

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>

/* Spec §2.2. */
static const uint8_t v2sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
#define V2_HDR			16
#define V2_VERSION		0x20
#define V2_CMD_LOCAL		0x00
#define V2_CMD_PROXY		0x01
#define V2_FAM_UNSPEC		0x00
#define V2_FAM_TCP4		0x11
#define V2_FAM_TCP6		0x21
#define V2_ADDR_TCP4		12		/* 2 * 4 + 2 * 2 */
#define V2_ADDR_TCP6		36		/* 2 * 16 + 2 * 2 */
#define V2_ADDR_UNIX		216		/* 2 * 108 */
#define TLV_HDR			3		/* type, 16-bit length */
#define PP2_TYPE_SSL		0x20
#define PP2_SSL_HDR		5		/* client, 32-bit verify */
#define PP2_CLIENT_SSL		0x01
#define PP2_CLIENT_CERT_CONN	0x02
#define PP2_CLIENT_CERT_SESS	0x04
#define PP2_SUBTYPE_SSL_VERSION	0x21
#define PP2_SUBTYPE_SSL_CN	0x22
#define PP2_SUBTYPE_SSL_CIPHER	0x23

/* The shortest v1 line: "PROXY UNKNOWN\r\n". */
#define V1_MIN			15

/* --- building ------------------------------------------------------------ */

/* One endpoint as the header carries it: address bytes, port in network
 * byte order. */
struct ep {
	int		af;
	uint8_t		a[16];
	uint16_t	port;
};

static bool
ep_of(const struct sockaddr *sa, struct ep *e)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	/* Copied out: the caller's sockaddr need not be aligned for them. */
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		memcpy(&sin, sa, sizeof(sin));
		e->af = AF_INET;
		memcpy(e->a, &sin.sin_addr, 4);
		e->port = sin.sin_port;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(&sin6, sa, sizeof(sin6));
		if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
			e->af = AF_INET;
			memcpy(e->a, &sin6.sin6_addr.s6_addr[12], 4);
		} else {
			e->af = AF_INET6;
			memcpy(e->a, &sin6.sin6_addr, 16);
		}
		e->port = sin6.sin6_port;
		return true;
	}
	return false;
}

/* ep_map6: an IPv4 endpoint as ::ffff:a.b.c.d. */
static void
ep_map6(struct ep *e)
{
	if (e->af != AF_INET)
		return;
	memmove(&e->a[12], e->a, 4);
	memset(e->a, 0, 10);
	e->a[10] = e->a[11] = 0xff;
	e->af = AF_INET6;
}

/* ep_pair: both endpoints in one family, AF_INET or AF_INET6 (see
 * proxy.h for mixed pairs), or AF_UNSPEC when either cannot be told. */
static int
ep_pair(const struct sockaddr *src, const struct sockaddr *dst,
    struct ep *s, struct ep *d)
{
	if (!ep_of(src, s) || !ep_of(dst, d))
		return AF_UNSPEC;
	if (s->af == AF_INET && d->af == AF_INET)
		return AF_INET;
	ep_map6(s);
	ep_map6(d);
	return AF_INET6;
}

ssize_t
proxy_build_v1(char *out, size_t outsz, const struct sockaddr *src,
    const struct sockaddr *dst)
{
	struct ep s, d;
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
	int af, n;

	if ((af = ep_pair(src, dst, &s, &d)) == AF_UNSPEC)
		n = snprintf(out, outsz, "PROXY UNKNOWN\r\n");
	else {
		if (inet_ntop(af, s.a, sa, sizeof(sa)) == NULL ||
		    inet_ntop(af, d.a, da, sizeof(da)) == NULL)
			return -1;
		n = snprintf(out, outsz, "PROXY TCP%c %s %s %u %u\r\n",
		    af == AF_INET ? '4' : '6', sa, da,
		    (unsigned)ntohs(s.port), (unsigned)ntohs(d.port));
	}
	if (n < 0 || (size_t)n >= outsz)
		return -1;
	return n;
}

static void
put16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static size_t
put_tlv(uint8_t *out, size_t off, uint8_t type, const void *v, size_t n)
{
	out[off] = type;
	put16(&out[off + 1], n);
	memcpy(&out[off + TLV_HDR], v, n);
	return off + TLV_HDR + n;
}

/* ssl_tlv_size: the PP2_TYPE_SSL TLV's size, header included; 0 when a
 * string cannot be a sub-TLV. */
static size_t
ssl_tlv_size(const struct proxy_tls *tls)
{
	const char *sub[3] = { tls->version, tls->cn, tls->cipher };
	size_t size = TLV_HDR + PP2_SSL_HDR, n;
	int i;

	for (i = 0; i < 3; i++) {
		if (sub[i] == NULL)
			continue;
		if ((n = strlen(sub[i])) > 0xffff)
			return 0;
		size += TLV_HDR + n;
	}
	return size;
}

static size_t
put_ssl_tlv(uint8_t *out, size_t off, size_t size, const struct proxy_tls *tls)
{
	bool cert = tls->verified_client_cert;

	out[off] = PP2_TYPE_SSL;
	put16(&out[off + 1], size - TLV_HDR);
	off += TLV_HDR;
	/* libtls ends the handshake on a client certificate that fails
	 * verification, so one that was presented was also verified. */
	out[off++] = PP2_CLIENT_SSL |
	    (cert ? PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS : 0);
	/* verify: zero only for a verified client certificate (spec
	 * §2.2.6; HAProxy sends 0 for no certificate too). */
	out[off++] = 0;
	out[off++] = 0;
	out[off++] = 0;
	out[off++] = cert ? 0 : 1;
	if (tls->version != NULL)
		off = put_tlv(out, off, PP2_SUBTYPE_SSL_VERSION, tls->version,
		    strlen(tls->version));
	if (tls->cn != NULL)
		off = put_tlv(out, off, PP2_SUBTYPE_SSL_CN, tls->cn,
		    strlen(tls->cn));
	if (tls->cipher != NULL)
		off = put_tlv(out, off, PP2_SUBTYPE_SSL_CIPHER, tls->cipher,
		    strlen(tls->cipher));
	return off;
}

ssize_t
proxy_build_v2(uint8_t *out, size_t outsz, const struct sockaddr *src,
    const struct sockaddr *dst, const struct proxy_tls *tls)
{
	struct ep s, d;
	size_t alen, n, ssl = 0, off;
	int af;

	af = ep_pair(src, dst, &s, &d);
	alen = af == AF_INET ? V2_ADDR_TCP4 : af == AF_INET6 ? V2_ADDR_TCP6 : 0;
	if (tls != NULL && (ssl = ssl_tlv_size(tls)) == 0)
		return -1;
	if (alen + ssl > 0xffff || V2_HDR + alen + ssl > outsz)
		return -1;

	memcpy(out, v2sig, sizeof(v2sig));
	out[12] = V2_VERSION |
	    (af == AF_UNSPEC ? V2_CMD_LOCAL : V2_CMD_PROXY);
	out[13] = af == AF_INET ? V2_FAM_TCP4 :
	    af == AF_INET6 ? V2_FAM_TCP6 : V2_FAM_UNSPEC;
	put16(&out[14], alen + ssl);
	off = V2_HDR;
	if (af != AF_UNSPEC) {
		n = af == AF_INET ? 4 : 16;
		memcpy(&out[off], s.a, n);
		memcpy(&out[off + n], d.a, n);
		memcpy(&out[off + 2 * n], &s.port, 2);
		memcpy(&out[off + 2 * n + 2], &d.port, 2);
		off += alen;
	}
	if (tls != NULL)
		off = put_ssl_tlv(out, off, ssl, tls);
	return (ssize_t)off;
}

/* --- parsing v1 -----------------------------------------------------------
 * A byte-at-a-time scan that checks each byte as it comes, so that a line
 * is refused at the first byte no valid line could have there: each field
 * has a small validator that says whether what it has seen can still
 * become a valid field. inet_pton then converts the addresses.
 */

enum scan {
	SC_OK,		/* this part is complete and valid */
	SC_MORE,	/* valid so far, input ends */
	SC_BAD,		/* no valid line goes on like this */
};

struct v1 {
	const uint8_t	*p;
	size_t		 len;
	size_t		 i;		/* next byte */
};

static enum scan
v1_next(struct v1 *s, int *c)
{
	/* The CRLF must be within the first PROXY_V1_MAX bytes (§2.1). */
	if (s->i >= PROXY_V1_MAX)
		return SC_BAD;
	if (s->i >= s->len)
		return SC_MORE;
	*c = s->p[s->i++];
	return SC_OK;
}

static enum scan
v1_literal(struct v1 *s, const char *lit)
{
	enum scan r;
	int c;

	for (; *lit != '\0'; lit++) {
		if ((r = v1_next(s, &c)) != SC_OK)
			return r;
		if (c != *lit)
			return SC_BAD;
	}
	return SC_OK;
}

/* v1_unknown: after "UNKNOWN", the line end, or a space and then anything
 * up to CRLF, which the receiver must ignore (§2.1); a lone CR or LF is
 * not a line end. */
static enum scan
v1_unknown(struct v1 *s)
{
	enum scan r;
	int c;

	if ((r = v1_next(s, &c)) != SC_OK)
		return r;
	if (c == '\r')
		return v1_literal(s, "\n");
	if (c != ' ')
		return SC_BAD;
	for (;;) {
		if ((r = v1_next(s, &c)) != SC_OK)
			return r;
		if (c == '\r')
			return v1_literal(s, "\n");
		if (c == '\n')
			return SC_BAD;
	}
}

/* A dotted quad being read: numbers 0..255 without leading zeros (§2.1;
 * glibc's inet_pton refuses them too). */
struct a4 {
	int		dots;
	int		digits;		/* of the current number */
	unsigned	val;
};

static bool
a4_feed(struct a4 *a, int c)
{
	if (c == '.') {
		if (a->digits == 0 || a->dots == 3)
			return false;
		a->dots++;
		a->digits = 0;
		a->val = 0;
		return true;
	}
	if (c < '0' || c > '9' || (a->digits == 1 && a->val == 0))
		return false;
	a->val = a->val * 10 + (unsigned)(c - '0');
	a->digits++;
	return a->val <= 255;
}

static bool
a4_done(const struct a4 *a)
{
	return a->dots == 3 && a->digits > 0;
}

/* IPv6 text being read (RFC 4291 §2.2, as inet_pton takes it): groups of
 * 1-4 hex digits, at most one "::", an optional dotted-quad tail counting
 * as two groups; eight groups without "::", at most seven with it. Each
 * step refuses what no completion could make valid. */
struct a6 {
	int		groups;		/* completed; the tail counts two */
	int		hex;		/* digits of the current group */
	int		colons;		/* ':' just read: 0, 1, 2 */
	bool		dcolon;		/* "::" seen */
	bool		lead;		/* a lone ':' at the start */
	bool		dec;		/* current group may begin a tail */
	bool		tail;		/* in the dotted-quad tail */
	struct a4	v4;		/* the current group read as decimal */
};

static bool
is_hex(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

static bool
a6_colon(struct a6 *a)
{
	int maxg = a->dcolon ? 7 : 8;

	if (a->hex > 0) {
		/* A single ':' must be followed by a group (or by a second
		 * ':' while none has been seen): room for one more group. */
		a->groups++;
		a->hex = 0;
		a->colons = 1;
		return a->groups + 1 <= maxg;
	}
	if (a->colons == 1) {
		if (a->dcolon)
			return false;
		a->dcolon = true;
		a->lead = false;
		a->colons = 2;
		return a->groups <= 7;
	}
	if (a->colons == 0 && a->groups == 0 && !a->dcolon) {
		a->lead = true;		/* must become "::" */
		a->colons = 1;
		return true;
	}
	return false;			/* ":::" */
}

static bool
a6_feed(struct a6 *a, int c)
{
	if (a->tail)
		return a4_feed(&a->v4, c);
	if (a->lead && c != ':')
		return false;
	if (c == ':')
		return a6_colon(a);
	if (c == '.') {
		/* The tail ends the address: it needs exactly two groups'
		 * room left, or fewer with a "::". */
		if (a->hex == 0 || !a->dec ||
		    (a->dcolon ? a->groups > 5 : a->groups != 6))
			return false;
		a->tail = true;
		a->groups += 2;
		return a4_feed(&a->v4, c);
	}
	if (!is_hex(c))
		return false;
	if (a->hex == 0) {
		memset(&a->v4, 0, sizeof(a->v4));
		a->dec = true;
	}
	if (++a->hex > 4 || a->groups + 1 > (a->dcolon ? 7 : 8))
		return false;
	a->colons = 0;
	if (a->dec)
		a->dec = a4_feed(&a->v4, c);
	return true;
}

static bool
a6_done(const struct a6 *a)
{
	int total;

	if (a->tail)
		return a4_done(&a->v4);
	if (a->lead || a->colons == 1)
		return false;
	total = a->groups + (a->hex > 0);
	return a->dcolon ? total <= 7 : total == 8;
}

/* v1_addr: an address of family af and the space after it, into addr
 * (struct in_addr or in6_addr). */
static enum scan
v1_addr(struct v1 *s, int af, void *addr)
{
	struct a4 st4 = { 0 };
	struct a6 st6 = { 0 };
	char text[INET6_ADDRSTRLEN];
	size_t start = s->i, n;
	enum scan r;
	bool ok;
	int c;

	for (;;) {
		if ((r = v1_next(s, &c)) != SC_OK)
			return r;
		if (c == ' ')
			break;
		ok = af == AF_INET ? a4_feed(&st4, c) : a6_feed(&st6, c);
		if (!ok)
			return SC_BAD;
	}
	if (!(af == AF_INET ? a4_done(&st4) : a6_done(&st6)))
		return SC_BAD;
	if ((n = s->i - 1 - start) >= sizeof(text))
		return SC_BAD;
	memcpy(text, &s->p[start], n);
	text[n] = '\0';
	/* The validators above accept exactly what inet_pton does; this
	 * converts, and would refuse should they ever disagree. */
	return inet_pton(af, text, addr) == 1 ? SC_OK : SC_BAD;
}

/* v1_port: a port 0..65535 without leading zeros, then the byte term. */
static enum scan
v1_port(struct v1 *s, int term, uint16_t *port)
{
	unsigned v = 0;
	enum scan r;
	int c, n = 0;

	for (;;) {
		if ((r = v1_next(s, &c)) != SC_OK)
			return r;
		if (c == term && n > 0)
			break;
		if (c < '0' || c > '9' || (n == 1 && v == 0))
			return SC_BAD;
		v = v * 10 + (unsigned)(c - '0');
		n++;
		if (v > 65535)
			return SC_BAD;
	}
	*port = htons((uint16_t)v);
	return SC_OK;
}

/* set_sin, set_sin6: an endpoint from address and port bytes as the
 * header carries them (network byte order). */
static void
set_sin(struct sockaddr_storage *ss, socklen_t *len, const void *addr,
    const void *port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, addr, 4);
	memcpy(&sin->sin_port, port, 2);
	*len = sizeof(*sin);
}

static void
set_sin6(struct sockaddr_storage *ss, socklen_t *len, const void *addr,
    const void *port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	sin6->sin6_family = AF_INET6;
	memcpy(&sin6->sin6_addr, addr, 16);
	memcpy(&sin6->sin6_port, port, 2);
	*len = sizeof(*sin6);
}

static enum scan
v1_scan(struct v1 *s, struct proxy_result *res)
{
	struct in6_addr src, dst;	/* large enough for either family */
	uint16_t sport, dport;
	enum scan r;
	int c, af;

	if ((r = v1_literal(s, "PROXY ")) != SC_OK ||
	    (r = v1_next(s, &c)) != SC_OK)
		return r;
	if (c == 'U') {
		if ((r = v1_literal(s, "NKNOWN")) != SC_OK)
			return r;
		return v1_unknown(s);
	}
	if (c != 'T')
		return SC_BAD;
	if ((r = v1_literal(s, "CP")) != SC_OK ||
	    (r = v1_next(s, &c)) != SC_OK)
		return r;
	if (c == '4')
		af = AF_INET;
	else if (c == '6')
		af = AF_INET6;
	else
		return SC_BAD;
	if ((r = v1_literal(s, " ")) != SC_OK ||
	    (r = v1_addr(s, af, &src)) != SC_OK ||
	    (r = v1_addr(s, af, &dst)) != SC_OK ||
	    (r = v1_port(s, ' ', &sport)) != SC_OK ||
	    (r = v1_port(s, '\r', &dport)) != SC_OK ||
	    (r = v1_literal(s, "\n")) != SC_OK)
		return r;
	res->has_addr = true;
	if (af == AF_INET) {
		set_sin(&res->src, &res->srclen, &src, &sport);
		set_sin(&res->dst, &res->dstlen, &dst, &dport);
	} else {
		set_sin6(&res->src, &res->srclen, &src, &sport);
		set_sin6(&res->dst, &res->dstlen, &dst, &dport);
	}
	return SC_OK;
}

static int
parse_v1(const uint8_t *buf, size_t len, struct proxy_result *res)
{
	struct v1 s = { buf, len, 0 };

	switch (v1_scan(&s, res)) {
	case SC_OK:
		res->version = 1;
		res->command = PROXY_CMD_PROXY;
		return (int)s.i;
	case SC_MORE:
		/* The line ends with CRLF, still to come, and no line is
		 * shorter than V1_MIN. */
		if (len < V1_MIN)
			res->need = V1_MIN - len;
		else
			res->need = buf[len - 1] == '\r' ? 1 : 2;
		return PROXY_NEED_MORE;
	case SC_BAD:
		break;
	}
	return PROXY_INVALID;
}

/* --- parsing v2 ---------------------------------------------------------- */

/* v2_addr_len: the address block size for a family byte the spec lists. */
static bool
v2_addr_len(uint8_t fam, size_t *alen)
{
	switch (fam) {
	case V2_FAM_UNSPEC:
		*alen = 0;
		return true;
	case 0x11: case 0x12:		/* TCP, UDP over IPv4 */
		*alen = V2_ADDR_TCP4;
		return true;
	case 0x21: case 0x22:		/* TCP, UDP over IPv6 */
		*alen = V2_ADDR_TCP6;
		return true;
	case 0x31: case 0x32:		/* UNIX stream, datagram */
		*alen = V2_ADDR_UNIX;
		return true;
	}
	return false;
}

/*
 * tlv_walk: do TLVs exactly fill buf[off..end)? Only buf[0..have) has
 * arrived: TLVs not yet seen are taken on trust, so a header is refused as
 * soon as a TLV's length overruns it. The PP2_TYPE_SSL value holds 5 bytes
 * and then sub-TLVs, checked the same way (depth 1). Every step moves off
 * forward by at least TLV_HDR.
 */
static bool
tlv_walk(const uint8_t *buf, size_t off, size_t end, size_t have, int depth)
{
	size_t vlen;

	while (off < end) {
		if (end - off < TLV_HDR)
			return false;
		if (have < off + TLV_HDR)
			return true;
		vlen = (size_t)buf[off + 1] << 8 | buf[off + 2];
		if (vlen > end - off - TLV_HDR)
			return false;
		if (depth == 0 && buf[off] == PP2_TYPE_SSL &&
		    (vlen < PP2_SSL_HDR || !tlv_walk(buf,
		    off + TLV_HDR + PP2_SSL_HDR, off + TLV_HDR + vlen, have, 1)))
			return false;
		off += TLV_HDR + vlen;
	}
	return true;
}

static int
parse_v2(const uint8_t *buf, size_t len, struct proxy_result *res)
{
	size_t alen = 0, total;
	int cmd;

	if (memcmp(buf, v2sig, len < sizeof(v2sig) ? len : sizeof(v2sig)) != 0)
		return PROXY_INVALID;
	if (len > 12 && ((buf[12] & 0xf0) != V2_VERSION ||
	    (buf[12] & 0x0f) > V2_CMD_PROXY))
		return PROXY_INVALID;
	cmd = len > 12 ? buf[12] & 0x0f : -1;
	/* LOCAL: "discard the protocol block including the family which is
	 * ignored" (§2.2), so neither is looked at. */
	if (len > 13 && cmd == V2_CMD_PROXY && !v2_addr_len(buf[13], &alen))
		return PROXY_INVALID;
	if (len < V2_HDR) {
		res->need = V2_HDR - len;
		return PROXY_NEED_MORE;
	}
	total = V2_HDR + ((size_t)buf[14] << 8 | buf[15]);
	if (total > PROXY_HDR_MAX)
		return PROXY_INVALID;
	if (cmd == V2_CMD_PROXY && (total - V2_HDR < alen ||
	    !tlv_walk(buf, V2_HDR + alen, total, len < total ? len : total, 0)))
		return PROXY_INVALID;
	if (len < total) {
		res->need = total - len;
		return PROXY_NEED_MORE;
	}

	res->version = 2;
	res->command = cmd == V2_CMD_PROXY ? PROXY_CMD_PROXY : PROXY_CMD_LOCAL;
	if (cmd == V2_CMD_PROXY && buf[13] == V2_FAM_TCP4) {
		res->has_addr = true;
		set_sin(&res->src, &res->srclen, &buf[16], &buf[24]);
		set_sin(&res->dst, &res->dstlen, &buf[20], &buf[26]);
	} else if (cmd == V2_CMD_PROXY && buf[13] == V2_FAM_TCP6) {
		res->has_addr = true;
		set_sin6(&res->src, &res->srclen, &buf[16], &buf[48]);
		set_sin6(&res->dst, &res->dstlen, &buf[32], &buf[50]);
	}
	return (int)total;
}

int
proxy_parse(const uint8_t *buf, size_t len, struct proxy_result *res)
{
	memset(res, 0, sizeof(*res));
	if (len == 0) {
		/* Either version: no header is shorter than V1_MIN. */
		res->need = V1_MIN;
		return PROXY_NEED_MORE;
	}
	if (buf[0] == 'P')
		return parse_v1(buf, len, res);
	if (buf[0] == v2sig[0])
		return parse_v2(buf, len, res);
	return PROXY_INVALID;
}
