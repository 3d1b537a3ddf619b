/*
 * proxy.h — the PROXY protocol, versions 1 (text) and 2 (binary), as
 * HAProxy's proxy-protocol.txt (2020/03/05) defines them. PURE: addresses
 * in, header bytes out; header bytes in, addresses out. No sockets, no
 * libev, no libtls, no allocation.
 *
 * popsd sends a header to backends that want one (backend-proxy-protocol)
 * and accepts one from trusted load balancers in front of it
 * (accept-proxy-protocol), before anything else on the connection, TLS
 * included. Whether a header is expected is configuration, never guessed
 * from the bytes (spec §5).
 */
#ifndef POPSD_PROXY_H
#define POPSD_PROXY_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest v1 line, CRLF included (spec §2.1: "PROXY UNKNOWN" with two
 * full IPv6 addresses and ports). proxy_build_v1 wants one more for NUL. */
#define PROXY_V1_MAX	107
/* A v2 header without TLVs: 16 fixed bytes and two IPv6 addresses with
 * their ports. */
#define PROXY_V2_ADDR_MAX	(16 + 36)
/* The longest header proxy_parse accepts, either version. The spec keeps
 * headers within 536 bytes in practice; twice that leaves room for every
 * TLV HAProxy and the cloud balancers add (authority, unique id, SSL with
 * CN, vendor TLVs) while bounding what a session must buffer. */
#define PROXY_HDR_MAX	1024

/* What proxy_build_v2 says about a TLS session (the PP2_TYPE_SSL TLV).
 * Strings are C strings, copied; NULL leaves that sub-TLV out. */
struct proxy_tls {
	const char	*version;	/* "TLSv1.3": PP2_SUBTYPE_SSL_VERSION */
	const char	*cipher;	/* PP2_SUBTYPE_SSL_CIPHER */
	const char	*cn;		/* client certificate CN: PP2_SUBTYPE_SSL_CN */
	bool		 verified_client_cert;
};

/*
 * proxy_build_v1: the v1 line for a connection from src to dst into out,
 * NUL-terminated. Returns its length (no NUL, at most PROXY_V1_MAX), or -1
 * if outsz is too small (PROXY_V1_MAX + 1 always suffices).
 *
 * proxy_build_v2: the v2 header for the same; with tls non-NULL it carries
 * a PP2_TYPE_SSL TLV (PP2_CLIENT_SSL; with verified_client_cert also
 * PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS and verify 0, otherwise
 * verify 1 as the spec asks; sub-TLVs VERSION, CN, CIPHER in type order).
 * Returns the length written, or -1 if it does not fit in outsz or in the
 * header's 16-bit length (PROXY_V2_ADDR_MAX suffices without tls; with
 * tls add 11 + 3 per string + the string lengths).
 *
 * Addresses (both builders): AF_INET and AF_INET6; an IPv4-mapped IPv6
 * address (::ffff:a.b.c.d, from a dual-stack socket) counts as the IPv4
 * address it maps. Both IPv4 → TCP4 (v2 0x11). Both IPv6, or one of each →
 * TCP6 (v2 0x21), the IPv4 one written mapped, so nothing is lost. A NULL,
 * AF_UNIX or any other address on either side → v1 "PROXY UNKNOWN\r\n"
 * (short form), v2 command LOCAL with family UNSPEC (0x20 0x00): the
 * receiver then keeps the real endpoints, which the spec says it must
 * accept (it may refuse PROXY + UNSPEC). An IPv6 scope id is dropped: the
 * protocol has no place for it.
 */
ssize_t	proxy_build_v1(char *out, size_t outsz, const struct sockaddr *src,
	    const struct sockaddr *dst);
ssize_t	proxy_build_v2(uint8_t *out, size_t outsz, const struct sockaddr *src,
	    const struct sockaddr *dst, const struct proxy_tls *tls);

/* proxy_parse results other than a header length (> 0). */
#define PROXY_NEED_MORE	0
#define PROXY_INVALID	(-1)

enum proxy_cmd {
	PROXY_CMD_LOCAL,	/* v2 LOCAL: health check, keep the real peer */
	PROXY_CMD_PROXY,	/* relayed connection (every v1 header) */
};

struct proxy_result {
	int			 version;	/* 1 or 2 */
	enum proxy_cmd		 command;
	/* true only for PROXY over TCP4/TCP6: then src (the client) and dst
	 * (the address it connected to) are AF_INET or AF_INET6, the same
	 * family both, ports included, with their lengths. false for v1
	 * UNKNOWN and v2 LOCAL, UNSPEC, UNIX and UDP: keep the real peer. */
	bool			 has_addr;
	struct sockaddr_storage	 src, dst;
	socklen_t		 srclen, dstlen;
	/* On PROXY_NEED_MORE: how many more bytes can certainly be read
	 * without reading past the header (>= 1), so a caller may read
	 * exactly that much and leave what follows (a TLS ClientHello) in
	 * the socket. */
	size_t			 need;
};

/*
 * proxy_parse: look for a PROXY header, v1 or v2, at the start of the
 * len bytes at buf (everything received so far; may be followed by
 * protocol data). Stateless: call again with the longer buffer.
 * Returns:
 *   > 0              the header's length; *res describes it. Bytes after
 *                    it are not the header's and are not looked at.
 *   PROXY_NEED_MORE  buf is a proper prefix of a header that may still
 *                    turn out valid; res->need is set.
 *   PROXY_INVALID    no valid header can start with these bytes: not a
 *                    PROXY header at all, malformed, or longer than
 *                    PROXY_V1_MAX (v1) / PROXY_HDR_MAX (v2). Decided at
 *                    the first byte that rules a header out (a "USER",
 *                    a TLS ClientHello: at once), and final: more bytes
 *                    never make it valid.
 * *res is written in every case; only the fields above are meaningful.
 *
 * Strict where the spec is: v1 exactly as §2.1 (single spaces; TCP4 with
 * dotted quads, TCP6 with IPv6 text, no leading zeros in IPv4 numbers or
 * ports, ports 0..65535, CRLF only; after UNKNOWN anything up to CRLF).
 * v2 signature and version 2, command LOCAL or PROXY, and for PROXY one of
 * the family bytes the spec lists (0x00 0x11 0x12 0x21 0x22 0x31 0x32),
 * an address block long enough for it and TLVs that exactly fill the rest
 * (PP2_TYPE_SSL's sub-TLVs too); TLV contents are otherwise ignored
 * (CRC32C included: the spec lets a receiver not implement it). LOCAL's
 * family and body are skipped unread, as the spec says.
 * An IPv4-mapped address in a TCP6 header is returned as sent (AF_INET6).
 */
int	proxy_parse(const uint8_t *buf, size_t len, struct proxy_result *res);

#endif
