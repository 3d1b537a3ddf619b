/*
 * test_proxy.c — PROXY protocol headers (proxy-protocol.txt, v1 and v2).
 *
 * Building is compared byte for byte with vectors written out by hand from
 * the spec, and every size of output buffer too small for a header must be
 * refused. Parsing runs each valid header whole, with protocol bytes after
 * it (which must not count), and trickled: every proper prefix must ask for
 * more, and never for more than the rest of the header. Each invalid input
 * names the byte count at which it must be refused: shorter prefixes ask
 * for more, that one and every longer one is refused. Round trips go from
 * addresses to header and back. The IPv6 text check is compared with
 * inet_pton over every short string of a small alphabet, complete and
 * prefix. Inputs are copied to buffers of their exact size, so that an
 * over-read shows under valgrind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define B(s)	s, sizeof(s) - 1

/* The v2 signature, split so that no hex escape runs into the next byte. */
#define SIG	"\r\n\r\n\0\r\nQUIT\n"

/* --- helpers ------------------------------------------------------------- */

/* sa_of: "unix", an IPv4 or IPv6 address; NULL gives NULL. */
static const struct sockaddr *
sa_of(const char *ip, unsigned port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_un *sun = (struct sockaddr_un *)ss;

	if (ip == NULL)
		return NULL;
	memset(ss, 0, sizeof(*ss));
	if (strcmp(ip, "unix") == 0) {
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, "/run/popsd.sock");
	} else if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		sin6->sin6_scope_id = 3;	/* dropped by the builders */
	}
	return (struct sockaddr *)ss;
}

/* check_ep: sa is ip (text, the family it parses as) and port. */
static void
check_ep(const char *what, const struct sockaddr_storage *ss, socklen_t len,
    const char *ip, unsigned port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	uint8_t want[16];

	if (inet_pton(AF_INET, ip, want) == 1) {
		if (ss->ss_family != AF_INET || len != sizeof(*sin) ||
		    memcmp(&sin->sin_addr, want, 4) != 0 ||
		    ntohs(sin->sin_port) != port)
			fail_msg("%s: not %s port %u", what, ip, port);
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, ip, want), 1);
	if (ss->ss_family != AF_INET6 || len != sizeof(*sin6) ||
	    memcmp(&sin6->sin6_addr, want, 16) != 0 ||
	    ntohs(sin6->sin6_port) != port)
		fail_msg("%s: not [%s] port %u", what, ip, port);
}

/* parse_copy: proxy_parse on a copy of the first n bytes in a buffer of
 * exactly n bytes. */
static int
parse_copy(const void *in, size_t n, struct proxy_result *res)
{
	uint8_t *p = malloc(n ? n : 1);
	int r;

	assert_non_null(p);
	memcpy(p, in, n);
	r = proxy_parse(p, n, res);
	free(p);
	return r;
}

/* check_complete: in is exactly one valid header of n bytes: every proper
 * prefix asks for more (never past the header's end), the whole of it and
 * it with protocol bytes after it parse to n. *res: the result. */
static void
check_complete(const char *name, const void *in, size_t n,
    struct proxy_result *res)
{
	static const char after[] = "\x16\x03\x01\x02\x00USER x\r\n";
	struct proxy_result r2;
	uint8_t *longer;
	size_t k;
	int r;

	for (k = 0; k < n; k++) {
		r = parse_copy(in, k, res);
		if (r != PROXY_NEED_MORE)
			fail_msg("%s: prefix of %zu bytes: %d, not NEED_MORE",
			    name, k, r);
		if (res->need < 1 || k + res->need > n)
			fail_msg("%s: prefix of %zu bytes: need %zu, header %zu",
			    name, k, res->need, n);
	}
	longer = malloc(n + sizeof(after));
	assert_non_null(longer);
	memcpy(longer, in, n);
	memcpy(longer + n, after, sizeof(after));
	for (k = 1; k <= sizeof(after); k++) {
		r = parse_copy(longer, n + k, &r2);
		if (r < 0 || (size_t)r != n)
			fail_msg("%s: with %zu bytes after it: %d, not %zu", name,
			    k, r, n);
	}
	free(longer);
	r = parse_copy(in, n, res);
	if (r < 0 || (size_t)r != n)
		fail_msg("%s: %d, not %zu", name, r, n);
	/* The same result whatever follows. */
	if (memcmp(res, &r2, sizeof(r2)) != 0)
		fail_msg("%s: result depends on the bytes after it", name);
}

/* --- building ------------------------------------------------------------ */

static const struct proxy_tls tls13 = {
	"TLSv1.3", "TLS_AES_256_GCM_SHA384", NULL, false
};
static const struct proxy_tls tls12_cert = {
	"TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "alice", true
};
static const struct proxy_tls tls_version_only = {
	"TLSv1.3", NULL, NULL, false
};
static const struct proxy_tls tls_nothing = { NULL, NULL, NULL, false };

struct build_case {
	const char		*name;
	int			 version;
	const char		*src;
	unsigned		 sport;
	const char		*dst;
	unsigned		 dport;
	const struct proxy_tls	*tls;
	const char		*want;
	size_t			 wantlen;
};

#define V4A	"\xc0\x00\x02\x01" "\xc6\x33\x64\x07"	/* 192.0.2.1 198.51.100.7 */
#define V4P	"\xdc\x04" "\x03\xe3"			/* 56324 995 */
#define V6A	"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01" \
		"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02"
#define V6P	"\x9c\x40" "\x03\xe3"			/* 40000 995 */

static const struct build_case build_cases[] = {
{ "v1 tcp4", 1, "192.0.2.1", 56324, "198.51.100.7", 995, NULL,
  B("PROXY TCP4 192.0.2.1 198.51.100.7 56324 995\r\n") },
{ "v1 tcp6", 1, "2001:db8::1", 40000, "2001:db8::2", 995, NULL,
  B("PROXY TCP6 2001:db8::1 2001:db8::2 40000 995\r\n") },
{ "v1 both mapped is tcp4", 1, "::ffff:192.0.2.1", 56324,
  "::ffff:198.51.100.7", 995, NULL,
  B("PROXY TCP4 192.0.2.1 198.51.100.7 56324 995\r\n") },
{ "v1 mixed is tcp6, mapped", 1, "192.0.2.1", 56324, "2001:db8::2", 995,
  NULL, B("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 56324 995\r\n") },
{ "v1 mapped and native v6", 1, "::ffff:192.0.2.1", 56324, "2001:db8::2",
  995, NULL, B("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 56324 995\r\n") },
{ "v1 extremes", 1, "0.0.0.0", 0, "255.255.255.255", 65535, NULL,
  B("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n") },
{ "v1 longest", 1, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535, NULL,
  B("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n") },
{ "v1 unix", 1, "unix", 0, "unix", 0, NULL, B("PROXY UNKNOWN\r\n") },
{ "v1 unix client, tcp listener", 1, "unix", 0, "192.0.2.1", 110, NULL,
  B("PROXY UNKNOWN\r\n") },
{ "v1 no source", 1, NULL, 0, "192.0.2.1", 110, NULL,
  B("PROXY UNKNOWN\r\n") },

{ "v2 tcp4", 2, "192.0.2.1", 56324, "198.51.100.7", 995, NULL,
  B(SIG "\x21\x11\x00\x0c" V4A V4P) },
{ "v2 tcp6", 2, "2001:db8::1", 40000, "2001:db8::2", 995, NULL,
  B(SIG "\x21\x21\x00\x24" V6A V6P) },
{ "v2 both mapped is tcp4", 2, "::ffff:192.0.2.1", 56324,
  "::ffff:198.51.100.7", 995, NULL,
  B(SIG "\x21\x11\x00\x0c" V4A V4P) },
{ "v2 mixed is tcp6, mapped", 2, "192.0.2.1", 56324, "2001:db8::2", 995,
  NULL, B(SIG "\x21\x21\x00\x24"
  "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc0\x00\x02\x01"
  "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02" V4P) },
{ "v2 tcp4 tls", 2, "192.0.2.1", 56324, "198.51.100.7", 995, &tls13,
  B(SIG "\x21\x11\x00\x37" V4A V4P
  "\x20\x00\x28" "\x01" "\x00\x00\x00\x01"
  "\x21\x00\x07" "TLSv1.3"
  "\x23\x00\x16" "TLS_AES_256_GCM_SHA384") },
{ "v2 tcp6 tls, verified client cert", 2, "2001:db8::1", 40000,
  "2001:db8::2", 995, &tls12_cert,
  B(SIG "\x21\x21\x00\x5c" V6A V6P
  "\x20\x00\x35" "\x07" "\x00\x00\x00\x00"
  "\x21\x00\x07" "TLSv1.2"
  "\x22\x00\x05" "alice"
  "\x23\x00\x1b" "ECDHE-RSA-AES128-GCM-SHA256") },
{ "v2 tls without strings", 2, "192.0.2.1", 56324, "198.51.100.7", 995,
  &tls_nothing, B(SIG "\x21\x11\x00\x14" V4A V4P
  "\x20\x00\x05" "\x01" "\x00\x00\x00\x01") },
{ "v2 unix is local", 2, "unix", 0, "unix", 0, NULL,
  B(SIG "\x20\x00\x00\x00") },
{ "v2 no destination is local", 2, "192.0.2.1", 1, NULL, 0, NULL,
  B(SIG "\x20\x00\x00\x00") },
{ "v2 local keeps the tls tlv", 2, "unix", 0, "unix", 0, &tls_version_only,
  B(SIG "\x20\x00\x00\x12"
  "\x20\x00\x0f" "\x01" "\x00\x00\x00\x01"
  "\x21\x00\x07" "TLSv1.3") },
};

static ssize_t
build(const struct build_case *c, void *out, size_t outsz)
{
	struct sockaddr_storage s, d;
	const struct sockaddr *src, *dst;

	src = sa_of(c->src, c->sport, &s);
	dst = sa_of(c->dst, c->dport, &d);
	if (c->version == 1)
		return proxy_build_v1(out, outsz, src, dst);
	return proxy_build_v2(out, outsz, src, dst, c->tls);
}

static void
test_build(void **state)
{
	uint8_t out[PROXY_HDR_MAX + 1], *exact;
	const struct build_case *c;
	struct proxy_result res;
	size_t i, sz, fit;
	ssize_t n;

	(void)state;
	for (i = 0; i < sizeof(build_cases) / sizeof(build_cases[0]); i++) {
		c = &build_cases[i];
		memset(out, 0xa5, sizeof(out));
		n = build(c, out, sizeof(out));
		if (n < 0 || (size_t)n != c->wantlen ||
		    memcmp(out, c->want, c->wantlen) != 0) {
			print_error("got %zd bytes: %.*s\n", n,
			    n > 0 ? (int)n : 0, (const char *)out);
			fail_msg("%s: not the expected bytes", c->name);
		}
		if (c->version == 1 && (n > PROXY_V1_MAX || out[n] != '\0'))
			fail_msg("%s: too long or no NUL", c->name);
		/* v1 writes a NUL as well. Every smaller buffer is refused
		 * (and exact-size ones show overruns under valgrind). */
		fit = (size_t)n + (c->version == 1);
		for (sz = 0; sz <= fit; sz++) {
			exact = malloc(sz ? sz : 1);
			assert_non_null(exact);
			n = build(c, exact, sz);
			if (sz < fit ? n != -1 : n != (ssize_t)c->wantlen)
				fail_msg("%s: outsz %zu gave %zd", c->name, sz,
				    n);
			free(exact);
		}
		/* What popsd sends, it takes. */
		if (proxy_parse((const uint8_t *)c->want, c->wantlen, &res) !=
		    (int)c->wantlen)
			fail_msg("%s: does not parse back", c->name);
	}
}

static void
test_build_tls_too_long(void **state)
{
	struct sockaddr_storage s, d;
	struct proxy_tls tls = { "TLSv1.3", NULL, NULL, false };
	char *huge;
	static uint8_t out[70000 + 200];

	(void)state;
	huge = malloc(70000);
	assert_non_null(huge);
	memset(huge, 'x', 69999);
	huge[69999] = '\0';
	tls.cn = huge;
	assert_int_equal(proxy_build_v2(out, sizeof(out), sa_of("192.0.2.1",
	    1, &s), sa_of("192.0.2.2", 2, &d), &tls), -1);
	/* Each string fits, the header's 16-bit length does not. */
	huge[33000] = '\0';
	tls.cipher = huge;
	assert_int_equal(proxy_build_v2(out, sizeof(out), sa_of("192.0.2.1",
	    1, &s), sa_of("192.0.2.2", 2, &d), &tls), -1);
	/* One alone does. */
	tls.cipher = NULL;
	assert_int_equal(proxy_build_v2(out, sizeof(out), sa_of("192.0.2.1",
	    1, &s), sa_of("192.0.2.2", 2, &d), &tls),
	    16 + 12 + 3 + 5 + 3 + 7 + 3 + 33000);
	free(huge);
}

/* --- parsing: valid headers --------------------------------------------- */

struct parse_case {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	int		 version;
	enum proxy_cmd	 cmd;
	const char	*src;		/* NULL: no addresses */
	unsigned	 sport;
	const char	*dst;
	unsigned	 dport;
};

#define UNKNOWN_107 "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff " \
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"

static const struct parse_case parse_cases[] = {
{ "v1 tcp4", B("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
  1, PROXY_CMD_PROXY, "192.168.0.1", 56324, "192.168.0.11", 443 },
{ "v1 tcp6", B("PROXY TCP6 2001:db8::1 2001:db8::2 40000 995\r\n"),
  1, PROXY_CMD_PROXY, "2001:db8::1", 40000, "2001:db8::2", 995 },
{ "v1 tcp6 mapped, as sent", B("PROXY TCP6 ::ffff:192.0.2.1 :: 1 2\r\n"),
  1, PROXY_CMD_PROXY, "::ffff:192.0.2.1", 1, "::", 2 },
{ "v1 tcp6 upper case, full", B("PROXY TCP6 2001:DB8:0:0:0:0:0:1 "
  "1:2:3:4:5:6:1.2.3.4 0 65535\r\n"),
  1, PROXY_CMD_PROXY, "2001:db8::1", 0, "1:2:3:4:5:6:102:304", 65535 },
{ "v1 tcp6 longest", B("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
  1, PROXY_CMD_PROXY, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535 },
{ "v1 tcp4 extremes", B("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
  1, PROXY_CMD_PROXY, "0.0.0.0", 0, "255.255.255.255", 65535 },
{ "v1 unknown", B("PROXY UNKNOWN\r\n"), 1, PROXY_CMD_PROXY, NULL, 0, NULL, 0 },
{ "v1 unknown, space", B("PROXY UNKNOWN \r\n"),
  1, PROXY_CMD_PROXY, NULL, 0, NULL, 0 },
{ "v1 unknown, anything", B("PROXY UNKNOWN what\tever 1.2.3.4\r\n"),
  1, PROXY_CMD_PROXY, NULL, 0, NULL, 0 },
{ "v1 unknown, 107 bytes", B(UNKNOWN_107),
  1, PROXY_CMD_PROXY, NULL, 0, NULL, 0 },

{ "v2 tcp4", B(SIG "\x21\x11\x00\x0c" V4A V4P),
  2, PROXY_CMD_PROXY, "192.0.2.1", 56324, "198.51.100.7", 995 },
{ "v2 tcp6", B(SIG "\x21\x21\x00\x24" V6A V6P),
  2, PROXY_CMD_PROXY, "2001:db8::1", 40000, "2001:db8::2", 995 },
{ "v2 tcp4 with tlvs", B(SIG "\x21\x11\x00\x3c" V4A V4P
  "\x01\x00\x04" "pop3"				/* ALPN */
  "\x04\x00\x00"				/* NOOP, empty */
  "\x03\x00\x04" "\xde\xad\xbe\xef"		/* CRC32C, not checked */
  "\x20\x00\x14" "\x07" "\x00\x00\x00\x00"	/* SSL */
  "\x21\x00\x07" "TLSv1.3" "\x22\x00\x02" "cn"
  "\xea\x00\x05" "vpc-1"),			/* vendor */
  2, PROXY_CMD_PROXY, "192.0.2.1", 56324, "198.51.100.7", 995 },
{ "v2 tcp4, empty ssl tlv", B(SIG "\x21\x11\x00\x14" V4A V4P
  "\x20\x00\x05" "\x00" "\x00\x00\x00\x01"),
  2, PROXY_CMD_PROXY, "192.0.2.1", 56324, "198.51.100.7", 995 },
{ "v2 local", B(SIG "\x20\x00\x00\x00"), 2, PROXY_CMD_LOCAL, NULL, 0, NULL, 0 },
{ "v2 local, tcp4 block", B(SIG "\x20\x11\x00\x0c" V4A V4P),
  2, PROXY_CMD_LOCAL, NULL, 0, NULL, 0 },
{ "v2 local, family and body ignored", B(SIG "\x20\xff\x00\x05" "abcde"),
  2, PROXY_CMD_LOCAL, NULL, 0, NULL, 0 },
{ "v2 proxy unspec", B(SIG "\x21\x00\x00\x00"),
  2, PROXY_CMD_PROXY, NULL, 0, NULL, 0 },
{ "v2 proxy unspec with tlv", B(SIG "\x21\x00\x00\x03" "\x04\x00\x00"),
  2, PROXY_CMD_PROXY, NULL, 0, NULL, 0 },
{ "v2 udp4: no addresses", B(SIG "\x21\x12\x00\x0c" V4A V4P),
  2, PROXY_CMD_PROXY, NULL, 0, NULL, 0 },
{ "v2 udp6: no addresses", B(SIG "\x21\x22\x00\x24" V6A V6P),
  2, PROXY_CMD_PROXY, NULL, 0, NULL, 0 },
};

static void
test_parse_valid(void **state)
{
	const struct parse_case *c;
	struct proxy_result res;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		c = &parse_cases[i];
		check_complete(c->name, c->in, c->inlen, &res);
		if (res.version != c->version || res.command != c->cmd ||
		    res.has_addr != (c->src != NULL))
			fail_msg("%s: version %d command %d has_addr %d",
			    c->name, res.version, res.command, res.has_addr);
		if (c->src != NULL) {
			check_ep(c->name, &res.src, res.srclen, c->src,
			    c->sport);
			check_ep(c->name, &res.dst, res.dstlen, c->dst,
			    c->dport);
		}
	}
}

/* Headers too long to write out: v2 UNIX, and v2 at the size limit. */
static void
test_parse_valid_long(void **state)
{
	uint8_t h[PROXY_HDR_MAX + 1];
	struct proxy_result res;
	size_t body;

	(void)state;
	memcpy(h, SIG "\x21\x31\x00\xd8", 16);		/* 216 */
	memset(h + 16, 'u', 216);
	check_complete("v2 unix stream", h, 16 + 216, &res);
	assert_int_equal(res.version, 2);
	assert_int_equal(res.command, PROXY_CMD_PROXY);
	assert_false(res.has_addr);

	/* TCP4 and one NOOP TLV filling it to PROXY_HDR_MAX. */
	body = PROXY_HDR_MAX - 16;
	memcpy(h, SIG "\x21\x11", 14);
	h[14] = (uint8_t)(body >> 8);
	h[15] = (uint8_t)body;
	memcpy(h + 16, V4A V4P, 12);
	h[28] = 0x04;
	h[29] = (uint8_t)((body - 15) >> 8);
	h[30] = (uint8_t)(body - 15);
	memset(h + 31, 0, body - 15);
	check_complete("v2 at PROXY_HDR_MAX", h, PROXY_HDR_MAX, &res);
	assert_true(res.has_addr);
	check_ep("v2 at PROXY_HDR_MAX", &res.src, res.srclen, "192.0.2.1",
	    56324);

	/* One byte more is refused as soon as the length says so. */
	body++;
	h[14] = (uint8_t)(body >> 8);
	h[15] = (uint8_t)body;
	assert_int_equal(parse_copy(h, 15, &res), PROXY_NEED_MORE);
	assert_int_equal(parse_copy(h, 16, &res), PROXY_INVALID);
}

/* --- parsing: invalid input ---------------------------------------------- */

struct bad_case {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	size_t		 at;		/* refused from this many bytes on */
};

#define TOO_LONG "PROXY UNKNOWN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"

static const struct bad_case bad_cases[] = {
{ "pop3 command", B("USER x\r\n"), 1 },
{ "http", B("GET / HTTP/1.0\r\n"), 1 },
{ "tls clienthello", B("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"), 1 },
{ "lower case", B("proxy tcp4"), 1 },
{ "crlf then text", B("\r\nGET"), 3 },
{ "PROXX", B("PROXX TCP4"), 5 },
{ "no space", B("PROXYTCP4"), 6 },
{ "two spaces", B("PROXY  TCP4"), 7 },
{ "lower case protocol", B("PROXY tcp4"), 7 },
{ "TCP5", B("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"), 10 },
{ "UDP4", B("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"), 8 },
{ "UNKNOWNX", B("PROXY UNKNOWNX\r\n"), 14 },
{ "unknown, LF only", B("PROXY UNKNOWN\n"), 14 },
{ "unknown, lone LF", B("PROXY UNKNOWN x\ny\r\n"), 16 },
{ "unknown, lone CR", B("PROXY UNKNOWN x\ry\r\n"), 17 },
{ "unknown, no CRLF in 107 bytes", B(TOO_LONG), 107 },
{ "LF without CR", B("PROXY TCP4 192.0.2.1 198.51.100.7 56324 995\n"), 44 },
{ "CR without LF", B("PROXY TCP4 192.0.2.1 198.51.100.7 56324 995\rX"), 45 },
{ "CR CR", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), 32 },
{ "address missing", B("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), 12 },
{ "ipv4 leading zero", B("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), 13 },
{ "ipv4 256", B("PROXY TCP4 256.0.0.1 5.6.7.8 1 2\r\n"), 14 },
{ "ipv4 five numbers", B("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"), 19 },
{ "ipv4 three numbers", B("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), 17 },
{ "ipv4 empty number", B("PROXY TCP4 1..2.3 5.6.7.8 1 2\r\n"), 14 },
{ "tcp4 with ipv6", B("PROXY TCP4 ::1 ::1 1 2\r\n"), 12 },
{ "tcp4 with ipv6 destination",
  B("PROXY TCP4 192.0.2.1 2001:db8::1 1 2\r\n"), 25 },
{ "tcp6 with ipv4", B("PROXY TCP6 192.0.2.1 ::1 1 2\r\n"), 15 },
{ "ipv6 :::", B("PROXY TCP6 :::1 ::1 1 2\r\n"), 14 },
{ "ipv6 leading single colon", B("PROXY TCP6 :1::2 ::1 1 2\r\n"), 13 },
{ "ipv6 two ::", B("PROXY TCP6 1::2::3 ::1 1 2\r\n"), 17 },
{ "ipv6 five digits", B("PROXY TCP6 12345:: ::1 1 2\r\n"), 16 },
{ "ipv6 nine groups", B("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"), 27 },
{ "ipv6 seven groups", B("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n"), 25 },
{ "ipv6 trailing colon", B("PROXY TCP6 1::2: ::1 1 2\r\n"), 17 },
{ "ipv6 hex tail", B("PROXY TCP6 ::a.2.3.4 ::1 1 2\r\n"), 15 },
{ "ipv6 tail too early", B("PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n"),
  27 },
{ "ipv6 tail after :: and six", B("PROXY TCP6 1:2:3:4:5:6::1.2.3.4 ::1 1 2\r\n"),
  26 },
{ "ipv6 scope", B("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), 19 },
{ "port 65536", B("PROXY TCP6 ::1 ::2 65536 1\r\n"), 24 },
{ "port leading zero", B("PROXY TCP6 ::1 ::2 01 2\r\n"), 21 },
{ "port empty", B("PROXY TCP6 ::1 ::2  2\r\n"), 20 },
{ "port sign", B("PROXY TCP6 ::1 ::2 +1 2\r\n"), 20 },
{ "destination port missing", B("PROXY TCP6 ::1 ::2 1\r\n"), 21 },
{ "space before CRLF", B("PROXY TCP6 ::1 ::2 1 2 \r\n"), 23 },

{ "v2 signature byte 8", B("\r\n\r\n\0\r\nX" "UIT\n\x21\x11\x00\x0c"), 8 },
{ "v2 signature byte 12", B("\r\n\r\n\0\r\nQUIT\r" "\x21\x11\x00\x0c"), 12 },
{ "v2 version 1", B(SIG "\x11\x11\x00\x0c" V4A V4P), 13 },
{ "v2 version 3", B(SIG "\x31\x11\x00\x0c" V4A V4P), 13 },
{ "v2 command 2", B(SIG "\x22\x11\x00\x0c" V4A V4P), 13 },
{ "v2 command f", B(SIG "\x2f\x11\x00\x0c" V4A V4P), 13 },
{ "v2 family 4", B(SIG "\x21\x41\x00\x0c" V4A V4P), 14 },
{ "v2 protocol 3", B(SIG "\x21\x13\x00\x0c" V4A V4P), 14 },
{ "v2 inet, protocol unspec", B(SIG "\x21\x10\x00\x0c" V4A V4P), 14 },
{ "v2 unspec, stream", B(SIG "\x21\x01\x00\x00"), 14 },
{ "v2 length 0xffff", B(SIG "\x21\x11\xff\xff" V4A V4P), 16 },
{ "v2 length one over", B(SIG "\x21\x00\x03\xf1"), 16 },
{ "v2 tcp4 block short", B(SIG "\x21\x11\x00\x08" "\xc0\x00\x02\x01"
  "\xc6\x33\x64\x07"), 16 },
{ "v2 tcp6 block short", B(SIG "\x21\x21\x00\x0c" V4A V4P), 16 },
{ "v2 unix block short", B(SIG "\x21\x31\x00\x00"), 16 },
{ "v2 two bytes after addresses", B(SIG "\x21\x11\x00\x0e" V4A V4P "\x04\x00"),
  16 },
{ "v2 tlv overruns", B(SIG "\x21\x11\x00\x10" V4A V4P "\x04\x00\x02" "x"),
  31 },
{ "v2 second tlv overruns", B(SIG "\x21\x11\x00\x14" V4A V4P
  "\x04\x00\x00" "\x04\x00\x03" "xx"), 34 },
{ "v2 ssl tlv under 5 bytes", B(SIG "\x21\x11\x00\x12" V4A V4P
  "\x20\x00\x03" "\x01\x00\x00"), 31 },
{ "v2 ssl sub-tlv overruns", B(SIG "\x21\x11\x00\x1b" V4A V4P
  "\x20\x00\x0c" "\x01" "\x00\x00\x00\x00" "\x21\x00\x05" "TLSv"), 39 },
{ "v2 ssl sub-tlv stub", B(SIG "\x21\x11\x00\x16" V4A V4P
  "\x20\x00\x07" "\x01" "\x00\x00\x00\x00" "\x21\x00"), 31 },
{ "v2 ssl tlv overruns", B(SIG "\x21\x11\x00\x14" V4A V4P
  "\x20\x00\x06" "\x01" "\x00\x00\x00\x00"), 31 },
};

static void
test_parse_invalid(void **state)
{
	const struct bad_case *c;
	struct proxy_result res;
	size_t i, k;
	int r;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		c = &bad_cases[i];
		assert_true(c->at >= 1 && c->at <= c->inlen);
		for (k = 0; k <= c->inlen; k++) {
			r = parse_copy(c->in, k, &res);
			if (r != (k < c->at ? PROXY_NEED_MORE : PROXY_INVALID))
				fail_msg("%s: %zu bytes: %d, refusal expected "
				    "at %zu", c->name, k, r, c->at);
		}
	}
}

/* --- round trips ----------------------------------------------------------- */

struct trip {
	const char	*src, *dst;
	const char	*want_src, *want_dst;	/* NULL: no addresses */
};

static const struct trip trips[] = {
	{ "192.0.2.1", "198.51.100.7", "192.0.2.1", "198.51.100.7" },
	{ "2001:db8::1", "2001:db8::2", "2001:db8::1", "2001:db8::2" },
	{ "::ffff:192.0.2.1", "198.51.100.7", "192.0.2.1", "198.51.100.7" },
	{ "192.0.2.1", "::1", "::ffff:192.0.2.1", "::1" },
	{ "fe80::1", "::ffff:10.0.0.1", "fe80::1", "::ffff:10.0.0.1" },
	{ "::", "0.0.0.0", "::", "::ffff:0.0.0.0" },
	{ "unix", "192.0.2.1", NULL, NULL },
	{ NULL, NULL, NULL, NULL },
};

static void
test_round_trip(void **state)
{
	static const struct proxy_tls *tlss[] = {
		NULL, &tls13, &tls12_cert, &tls_nothing
	};
	struct sockaddr_storage s, d;
	const struct sockaddr *src, *dst;
	struct proxy_result res;
	uint8_t out[PROXY_HDR_MAX];
	const struct trip *t;
	size_t i, j;
	ssize_t n;
	int v;

	(void)state;
	for (i = 0; i < sizeof(trips) / sizeof(trips[0]); i++)
	for (v = 1; v <= 2; v++)
	for (j = 0; j < (v == 1 ? 1 : 4); j++) {
		t = &trips[i];
		src = sa_of(t->src, 50000 + (unsigned)i, &s);
		dst = sa_of(t->dst, 110, &d);
		n = v == 1 ? proxy_build_v1((char *)out, sizeof(out), src, dst) :
		    proxy_build_v2(out, sizeof(out), src, dst, tlss[j]);
		assert_true(n > 0);
		check_complete("round trip", out, (size_t)n, &res);
		assert_int_equal(res.version, v);
		assert_int_equal(res.has_addr, t->want_src != NULL);
		assert_int_equal(res.command, v == 2 && t->want_src == NULL ?
		    PROXY_CMD_LOCAL : PROXY_CMD_PROXY);
		if (t->want_src != NULL) {
			check_ep(t->src, &res.src, res.srclen, t->want_src,
			    50000 + (unsigned)i);
			check_ep(t->dst, &res.dst, res.dstlen, t->want_dst, 110);
		}
	}
}

/* --- the IPv6 text check against inet_pton --------------------------------- */

#define ALPHA		"01:."
#define NALPHA		4
#define REF_LEN		9	/* valid tokens enumerated up to this length */
#define CHECK_LEN	4	/* prefixes checked up to this length */

/* token_code: a token's index among all strings over ALPHA, shorter first
 * (a bijective base-NALPHA numeral). */
static size_t
token_code(const char *t, size_t n)
{
	size_t code = 0, i;

	for (i = 0; i < n; i++)
		code = code * NALPHA + (size_t)(strchr(ALPHA, t[i]) - ALPHA) + 1;
	return code;
}

static void
token_of(size_t x, size_t n, char *t)
{
	size_t i;

	for (i = 0; i < n; i++) {
		t[n - 1 - i] = ALPHA[x % NALPHA];
		x /= NALPHA;
	}
	t[n] = '\0';
}

/* Every string over ALPHA up to REF_LEN: valid ones as inet_pton says mark
 * all their prefixes. A prefix of CHECK_LEN or less is a prefix of a valid
 * address if and only if it is one of these: none needs more than five
 * more characters ("::1." needs "0.0.0"). Then the parser must take a
 * complete token exactly when inet_pton does, and refuse a partial one
 * exactly when it is no prefix of any valid address. */
static void
test_ipv6_text(void **state)
{
	size_t n, x, count, k, ncodes = 1, p;
	uint8_t *viable, a6[16];
	char t[REF_LEN + 1], line[64];
	struct proxy_result res;
	int r, want;

	(void)state;
	for (n = 0; n <= REF_LEN; n++)
		ncodes = ncodes * NALPHA + 1;
	viable = calloc(ncodes, 1);
	assert_non_null(viable);
	for (n = 0, count = 1; n <= REF_LEN; n++, count *= NALPHA)
		for (x = 0; x < count; x++) {
			token_of(x, n, t);
			if (inet_pton(AF_INET6, t, a6) != 1)
				continue;
			for (k = 0; k <= n; k++)
				viable[token_code(t, k)] = 1;
		}
	for (n = 0, count = 1; n <= CHECK_LEN; n++, count *= NALPHA)
		for (x = 0; x < count; x++) {
			token_of(x, n, t);
			p = (size_t)snprintf(line, sizeof(line), "PROXY TCP6 %s",
			    t);
			r = proxy_parse((const uint8_t *)line, p, &res);
			if (r != (viable[token_code(t, n)] ? PROXY_NEED_MORE :
			    PROXY_INVALID))
				fail_msg("prefix \"%s\": %d", t, r);
			p = (size_t)snprintf(line, sizeof(line),
			    "PROXY TCP6 %s ::1 1 2\r\n", t);
			want = inet_pton(AF_INET6, t, a6) == 1;
			r = proxy_parse((const uint8_t *)line, p, &res);
			if ((r > 0) != want)
				fail_msg("token \"%s\": %d, inet_pton %d", t, r,
				    want);
		}
	free(viable);
}

/* Complete tokens over a wider alphabet, with hex letters and numbers
 * over 255, against inet_pton for both families. */
static void
test_address_text_complete(void **state)
{
	static const char alpha[] = "0a25:.";
	const size_t na = sizeof(alpha) - 1;
	char t[8], line[64];
	struct proxy_result res;
	uint8_t a[16];
	size_t n, x, y, count, i, p;
	int r, fam;

	(void)state;
	for (n = 1, count = na; n <= 6; n++, count *= na)
		for (x = 0; x < count; x++) {
			for (i = 0, y = x; i < n; i++, y /= na)
				t[i] = alpha[y % na];
			t[n] = '\0';
			for (fam = 4; fam <= 6; fam += 2) {
				p = (size_t)snprintf(line, sizeof(line),
				    "PROXY TCP%d %s %s 1 2\r\n", fam, t,
				    fam == 4 ? "1.2.3.4" : "::1");
				r = proxy_parse((const uint8_t *)line, p, &res);
				if ((r > 0) != (inet_pton(fam == 4 ? AF_INET :
				    AF_INET6, t, a) == 1))
					fail_msg("TCP%d \"%s\": %d", fam, t, r);
			}
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_build_tls_too_long),
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_valid_long),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_ipv6_text),
		cmocka_unit_test(test_address_text_complete),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
