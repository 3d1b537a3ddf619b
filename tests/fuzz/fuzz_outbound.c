/*
 * fuzz_outbound.c — libFuzzer harness for the outbound protocol logic:
 * upstream.c (the STLS negotiation) and route.c (USER name@host[:port]).
 *
 * Input: one mode byte, then bytes fed in chunks whose sizes come from
 * the input itself. Checked: before UP_START_TLS popsd writes nothing but
 * a prefix of "CAPA\r\nSTLS\r\n"; a parsed route's host is lowercase, at
 * most ROUTE_HOST_MAX bytes, and reparses to the same target; the stand-in
 * upstream never leaves a line it consumed in place.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "upstream.h"

static void bug(const char *) __attribute__((noreturn));

static void
bug(const char *what)
{
	fprintf(stderr, "fuzz_outbound: invariant broken: %s\n", what);
	abort();
}

static void
fuzz_upstream(const uint8_t *d, size_t n, enum upstream_mode m)
{
	static const char allowed[] = "CAPA\r\nSTLS\r\n";
	struct upstream u;
	struct buf in, out;
	enum upstream_act a;
	size_t off = 0, i = 0, chunk, len;
	const uint8_t *p;

	upstream_init(&u, m);
	buf_init(&in, 4096);
	buf_init(&out, 64);
	a = upstream_step(&u, &in, &out);
	while (i < n && (a == UP_WAIT || a == UP_START_TLS)) {
		if (a == UP_START_TLS) {
			buf_free(&in);
			upstream_tls_done(&u);
		}
		chunk = 1 + d[i] % 16;
		i++;
		if (chunk > n - i)
			chunk = n - i;
		(void)buf_append(&in, d + i, chunk);
		i += chunk;
		a = upstream_step(&u, &in, &out);
		if ((p = buf_rptr(&out, &len)) != NULL) {
			if (off + len > strlen(allowed) ||
			    memcmp(allowed + off, p, len) != 0)
				bug("wrote something but CAPA/STLS before TLS");
			off += len;
			buf_consume(&out, len);
		}
	}
	if (a == UP_READY && strchr(upstream_greeting(&u), '\n'))
		bug("greeting holds a line ending");
	buf_free(&in);
	buf_free(&out);
}

static void
fuzz_route(const uint8_t *d, size_t n)
{
	char *allow[] = { "*.example.net", "mail.example.org" };
	struct route_target t, t2;
	struct route r;
	struct buf cmds, replies;
	char again[ROUTE_NAME_MAX + ROUTE_HOST_MAX + 16];
	size_t i;

	if (route_parse_user((const char *)d, n, &t) == 0) {
		if (strlen(t.host) > ROUTE_HOST_MAX)
			bug("host too long");
		for (i = 0; t.host[i]; i++)
			if (t.host[i] >= 'A' && t.host[i] <= 'Z')
				bug("host not lowercase");
		snprintf(again, sizeof(again), "%s@%s:%u", t.name, t.host,
		    t.port);
		if (route_parse_user(again, strlen(again), &t2) != 0 ||
		    strcmp(t.name, t2.name) || strcmp(t.host, t2.host) ||
		    t.port != t2.port)
			bug("route does not reparse");
	}
	route_init(&r, allow, 2);
	buf_init(&cmds, 2048);
	buf_init(&replies, 4096);
	(void)buf_append(&cmds, d, n > 2048 ? 2048 : n);
	while (route_input(&r, &cmds, &replies) == ROUTE_NONE &&
	    buf_find_lf(&cmds) >= 0 && buf_space(&replies) >= 256)
		bug("a complete line left unanswered");
	if (r.done && r.target.host[0] &&
	    !route_host_allowed(allow, 2, r.target.host))
		bug("routed to a host outside upstream-allow");
	buf_free(&cmds);
	buf_free(&replies);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_upstream(data + 1, size - 1, UPSTREAM_STLS);
		break;
	case 1:
		fuzz_upstream(data + 1, size - 1, UPSTREAM_POP3S);
		break;
	default:
		fuzz_route(data + 1, size - 1);
		break;
	}
	return 0;
}
