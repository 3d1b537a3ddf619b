/*
 * fuzz_proxy.c — libFuzzer harness for PROXY protocol headers.
 *
 * Every input is used twice.
 * As received bytes: proxy_parse must return INVALID, NEED_MORE or a
 * length within the input and PROXY_HDR_MAX, with a result that agrees
 * with the bytes (v1: "PROXY ", CRLF, at most 107 bytes; TCP4 lines are
 * canonical, so building from the result gives the same bytes; v2: the
 * length field; addresses as sent). Trickled, from exact-size copies of
 * every prefix: NEED_MORE until some byte, then one verdict for ever (an
 * INVALID never turns valid, a header's length and result never change),
 * a header complete exactly at its own length, and no NEED_MORE asking
 * for bytes past the header's end or past PROXY_HDR_MAX.
 * As build parameters: two endpoints (IPv4, IPv6, IPv4-mapped, unix or
 * none) and optional TLS strings, built as v1 and v2, must parse back to
 * what was meant (mapped and mixed pairs as proxy.h says), carry the SSL
 * TLV as the spec lays it out, and be refused by any smaller buffer.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

/* Prefixes beyond this are not parsed one by one: no header is longer. */
#define PREFIX_MAX	(PROXY_HDR_MAX + 1)

static void bug(const char *) __attribute__((noreturn));

static void
bug(const char *what)
{
	fprintf(stderr, "fuzz_proxy: invariant broken: %s\n", what);
	abort();
}

/* parse_exact: proxy_parse on a copy in a buffer of exactly n bytes, so
 * that ASan sees any read past the length it was given. */
static int
parse_exact(const uint8_t *data, size_t n, struct proxy_result *res)
{
	uint8_t *p = malloc(n ? n : 1);
	int r;

	if (p == NULL)
		bug("out of memory");
	memcpy(p, data, n);
	r = proxy_parse(p, n, res);
	free(p);
	return r;
}

static bool
same_result(const struct proxy_result *a, const struct proxy_result *b)
{
	return a->version == b->version && a->command == b->command &&
	    a->has_addr == b->has_addr && a->srclen == b->srclen &&
	    a->dstlen == b->dstlen &&
	    memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
	    memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

static void
check_addrs(const struct proxy_result *res)
{
	int f = res->src.ss_family;

	if (!res->has_addr) {
		if (res->srclen != 0 || res->dstlen != 0 ||
		    res->src.ss_family != 0 || res->dst.ss_family != 0)
			bug("addresses without has_addr");
		return;
	}
	if (res->command != PROXY_CMD_PROXY)
		bug("addresses on LOCAL");
	if (f != res->dst.ss_family || (f != AF_INET && f != AF_INET6))
		bug("address families");
	if (res->srclen != (f == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6)) || res->dstlen != res->srclen)
		bug("address lengths");
}

/* check_header: a header of n bytes at data, as proxy_parse described it. */
static void
check_header(const uint8_t *data, size_t n, const struct proxy_result *res)
{
	uint8_t out[PROXY_HDR_MAX];
	ssize_t m;

	check_addrs(res);
	if (res->version == 1) {
		if (n > PROXY_V1_MAX || n < 15 || memcmp(data, "PROXY ", 6) ||
		    data[n - 2] != '\r' || data[n - 1] != '\n' ||
		    memchr(data, '\n', n - 1) != NULL)
			bug("v1 header shape");
		if (res->command != PROXY_CMD_PROXY)
			bug("v1 command");
		if (res->has_addr != (memcmp(data + 6, "TCP", 3) == 0) ||
		    (res->has_addr && data[9] != (res->src.ss_family ==
		    AF_INET ? '4' : '6')))
			bug("v1 protocol and families");
		/* IPv4 text has one spelling: building gives the input. */
		if (res->has_addr && res->src.ss_family == AF_INET) {
			m = proxy_build_v1((char *)out, sizeof(out),
			    (const struct sockaddr *)&res->src,
			    (const struct sockaddr *)&res->dst);
			if (m < 0 || (size_t)m != n || memcmp(out, data, n))
				bug("v1 tcp4 does not rebuild");
		}
		return;
	}
	if (res->version != 2)
		bug("version");
	if (n < 16 || n != 16 + ((size_t)data[14] << 8 | data[15]) ||
	    (data[12] & 0xf0) != 0x20)
		bug("v2 header shape");
	if (res->command != ((data[12] & 0x0f) ? PROXY_CMD_PROXY :
	    PROXY_CMD_LOCAL))
		bug("v2 command");
	if (res->has_addr != (res->command == PROXY_CMD_PROXY &&
	    (data[13] == 0x11 || data[13] == 0x21)))
		bug("v2 has_addr");
	/* Without TLVs the header is exactly what popsd would build. */
	if (res->has_addr && n == 16 + (data[13] == 0x11 ? 12u : 36u)) {
		m = proxy_build_v2(out, sizeof(out),
		    (const struct sockaddr *)&res->src,
		    (const struct sockaddr *)&res->dst, NULL);
		/* ...unless a TCP6 header carried two mapped addresses, which
		 * popsd would have sent as TCP4. */
		if (m > 0 && out[13] != data[13])
			return;
		if (m < 0 || (size_t)m != n || memcmp(out, data, n))
			bug("v2 does not rebuild");
	}
}

/* check_parse: the input as received bytes, whole and trickled. */
static void
check_parse(const uint8_t *data, size_t size)
{
	struct proxy_result res, fin, at;
	size_t k, kmax, header = 0;
	int r, final, prev = PROXY_NEED_MORE;

	final = parse_exact(data, size, &fin);
	if (final > 0) {
		if ((size_t)final > size || final > PROXY_HDR_MAX)
			bug("header longer than input or PROXY_HDR_MAX");
		header = (size_t)final;
		check_header(data, header, &fin);
	} else if (final == PROXY_NEED_MORE) {
		if (size >= PREFIX_MAX || fin.need == 0 ||
		    size + fin.need > PROXY_HDR_MAX)
			bug("NEED_MORE past any header's length");
	} else if (final != PROXY_INVALID)
		bug("unknown result");

	kmax = size < PREFIX_MAX ? size : PREFIX_MAX;
	for (k = 0; k <= kmax; k++) {
		r = parse_exact(data, k, &res);
		if (prev != PROXY_NEED_MORE) {
			if (r != prev)
				bug("verdict changed with more bytes");
			if (r > 0 && !same_result(&res, &at))
				bug("result changed with more bytes");
			continue;
		}
		if (r == PROXY_NEED_MORE) {
			if (res.need == 0 || k + res.need > PROXY_HDR_MAX ||
			    (final > 0 && k + res.need > header))
				bug("need reaches past the header");
			continue;
		}
		if (r > 0 && (size_t)r != k)
			bug("header not complete at its own length");
		if (r != final)
			bug("prefix verdict differs from the whole input's");
		prev = r;
		at = res;
	}
	if (prev > 0 && !same_result(&at, &fin))
		bug("prefix result differs from the whole input's");
}

/* --- building ------------------------------------------------------------ */

struct rd {
	const uint8_t	*p;
	size_t		 n;
};

static uint8_t
rd8(struct rd *r)
{
	if (r->n == 0)
		return 0;
	r->n--;
	return *r->p++;
}

/* The endpoint as the header should carry it. */
struct want {
	bool		ip;
	bool		v4;		/* an IPv4 address, mapped or not */
	uint8_t		a6[16];		/* as ::ffff:a.b.c.d when v4 */
	uint16_t	port;		/* network byte order */
};

static const uint8_t v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

static const struct sockaddr *
gen_ep(struct rd *r, struct sockaddr_storage *ss, struct want *w)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_un *sun = (struct sockaddr_un *)ss;
	uint8_t kind = rd8(r) % 5;
	size_t i;

	memset(ss, 0, sizeof(*ss));
	memset(w, 0, sizeof(*w));
	for (i = 0; i < 16; i++)
		w->a6[i] = rd8(r);
	w->port = rd8(r);
	w->port = (uint16_t)(w->port << 8 | rd8(r));
	w->ip = kind <= 2;
	w->v4 = kind == 0 || kind == 2 ||
	    (kind == 1 && memcmp(w->a6, v4mapped, 12) == 0);
	if (kind == 0 || kind == 2)
		memcpy(w->a6, v4mapped, 12);
	switch (kind) {
	case 0:
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, &w->a6[12], 4);
		memcpy(&sin->sin_port, &w->port, 2);
		return (struct sockaddr *)ss;
	case 1:
	case 2:
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, w->a6, 16);
		memcpy(&sin6->sin6_port, &w->port, 2);
		sin6->sin6_scope_id = rd8(r);
		return (struct sockaddr *)ss;
	case 3:
		sun->sun_family = AF_UNIX;
		return (struct sockaddr *)ss;
	}
	return NULL;
}

static void
check_ep(const struct sockaddr_storage *ss, const struct want *w, bool v4)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

	if (v4) {
		if (ss->ss_family != AF_INET ||
		    memcmp(&sin->sin_addr, &w->a6[12], 4) != 0 ||
		    memcmp(&sin->sin_port, &w->port, 2) != 0)
			bug("round trip: IPv4 endpoint");
	} else if (ss->ss_family != AF_INET6 ||
	    memcmp(&sin6->sin6_addr, w->a6, 16) != 0 ||
	    memcmp(&sin6->sin6_port, &w->port, 2) != 0)
		bug("round trip: IPv6 endpoint");
}

/* gen_str: a string of up to 255 bytes from the input, or NULL. */
static const char *
gen_str(struct rd *r, char *buf, bool present)
{
	size_t n = rd8(r), i;

	for (i = 0; i < n; i++)
		buf[i] = (char)(rd8(r) | 1);	/* no NUL inside */
	buf[n] = '\0';
	return present ? buf : NULL;
}

static size_t
tlv(const uint8_t *p, uint8_t type, const char *s)
{
	size_t n = strlen(s);

	if (p[0] != type || ((size_t)p[1] << 8 | p[2]) != n ||
	    memcmp(p + 3, s, n) != 0)
		bug("round trip: SSL sub-TLV");
	return 3 + n;
}

/* check_ssl_tlv: the TLV after the address block says what tls does. */
static void
check_ssl_tlv(const uint8_t *p, size_t left, const struct proxy_tls *tls)
{
	bool cert = tls->verified_client_cert;
	size_t off = 8;

	if (left < 8 || p[0] != 0x20 || ((size_t)p[1] << 8 | p[2]) != left - 3)
		bug("round trip: SSL TLV header");
	if (p[3] != (cert ? 0x07 : 0x01) ||
	    memcmp(p + 4, cert ? "\0\0\0\0" : "\0\0\0\1", 4) != 0)
		bug("round trip: SSL client and verify");
	if (tls->version != NULL)
		off += tlv(p + off, 0x21, tls->version);
	if (tls->cn != NULL)
		off += tlv(p + off, 0x22, tls->cn);
	if (tls->cipher != NULL)
		off += tlv(p + off, 0x23, tls->cipher);
	if (off != left)
		bug("round trip: SSL TLV length");
}

static void
check_built(const uint8_t *h, ssize_t n, int version, const struct want *ws,
    const struct want *wd, const struct proxy_tls *tls)
{
	struct proxy_result res;
	bool ip = ws->ip && wd->ip, v4 = ip && ws->v4 && wd->v4;
	size_t alen;

	if (n <= 0 || (version == 1 && n > PROXY_V1_MAX))
		bug("round trip: build failed");
	if (parse_exact(h, (size_t)n, &res) != n)
		bug("round trip: does not parse back whole");
	if (res.version != version || res.has_addr != ip ||
	    res.command != (version == 2 && !ip ? PROXY_CMD_LOCAL :
	    PROXY_CMD_PROXY))
		bug("round trip: version, command, has_addr");
	if (ip) {
		check_ep(&res.src, ws, v4);
		check_ep(&res.dst, wd, v4);
	}
	if (version == 2 && tls != NULL) {
		alen = !ip ? 0 : v4 ? 12 : 36;
		check_ssl_tlv(h + 16 + alen, (size_t)n - 16 - alen, tls);
	}
}

static void
check_build(const uint8_t *data, size_t size)
{
	struct rd r = { data, size };
	struct sockaddr_storage s, d;
	const struct sockaddr *src, *dst;
	struct want ws, wd;
	struct proxy_tls tls;
	static char sv[256], sc[256], sn[256];
	static uint8_t out[PROXY_HDR_MAX];
	uint8_t *small, flags;
	ssize_t n, m;
	size_t sz;

	src = gen_ep(&r, &s, &ws);
	dst = gen_ep(&r, &d, &wd);
	flags = rd8(&r);
	tls.version = gen_str(&r, sv, flags & 2);
	tls.cipher = gen_str(&r, sc, flags & 4);
	tls.cn = gen_str(&r, sn, flags & 8);
	tls.verified_client_cert = flags & 16;

	n = proxy_build_v1((char *)out, sizeof(out), src, dst);
	check_built(out, n, 1, &ws, &wd, NULL);
	if (out[n] != '\0')
		bug("v1 without NUL");
	for (sz = 0; sz <= (size_t)n; sz++) {
		if ((small = malloc(sz ? sz : 1)) == NULL)
			bug("out of memory");
		if (proxy_build_v1((char *)small, sz, src, dst) != -1)
			bug("v1 built into too small a buffer");
		free(small);
	}

	n = proxy_build_v2(out, sizeof(out), src, dst,
	    (flags & 1) ? &tls : NULL);
	check_built(out, n, 2, &ws, &wd, (flags & 1) ? &tls : NULL);
	/* Exactly n bytes do, one fewer does not. */
	if ((small = malloc((size_t)n)) == NULL)
		bug("out of memory");
	m = proxy_build_v2(small, (size_t)n - 1, src, dst,
	    (flags & 1) ? &tls : NULL);
	if (m != -1 || proxy_build_v2(small, (size_t)n, src, dst,
	    (flags & 1) ? &tls : NULL) != n || memcmp(small, out, (size_t)n))
		bug("v2 buffer size");
	free(small);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_parse(data, size);
	check_build(data, size);
	return 0;
}
