/*
 * test_pop3.c — the authorization-phase mediator, table-driven.
 *
 * Each scenario is a script of client bytes, backend bytes and session
 * events, with the exact bytes expected on each wire. Every scenario runs
 * three ways: fed whole, fed one byte at a time ("trickle", with the
 * mediator called after every byte), and fed whole through 512-byte output
 * buffers, so that results cannot depend on how reads happen to split.
 * The rig behaves as the session does: it drains the output buffers after
 * every call, discards client bytes between POP3_EV_STARTTLS and the
 * handshake, and stops calling in after POP3_EV_SPLICE or POP3_EV_CLOSE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "pop3.h"

#define GREET	"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
#define TLS_REQ	"-ERR [AUTH] TLS required: use STLS first " \
		    "(or connect to port 995)\r\n"
#define TLS_995	"-ERR [AUTH] TLS required: connect with TLS (port 995)\r\n"
#define TOO_LONG "-ERR line too long\r\n"
#define BAD_CHAR "-ERR invalid character in command\r\n"
#define EMPTY	"-ERR empty command\r\n"
#define NO_ARG	"-ERR syntax error: this command takes no argument\r\n"
#define BAD_ARGS "-ERR syntax error in arguments\r\n"
#define UNKNOWN	"-ERR unknown command or not allowed before login\r\n"
#define STLS_ACTIVE "-ERR command not permitted when TLS active\r\n"
#define STLS_LATE "-ERR STLS not permitted after USER, PASS, APOP or AUTH\r\n"
#define STLS_NONE "-ERR STLS not available\r\n"
#define STLS_OK	"+OK Begin TLS negotiation\r\n"
#define TOO_MANY "-ERR too many errors, closing\r\n"
#define BACKEND_ERR "-ERR [SYS/TEMP] backend error, closing\r\n"

/* A backend CAPA answer with everything the filter acts on. */
#define CAPA_BACKEND \
	"+OK Capability list follows\r\n" \
	"TOP\r\n" \
	"USER\r\n" \
	"SASL PLAIN LOGIN\r\n" \
	"STLS\r\n" \
	"RESP-CODES\r\n" \
	"PIPELINING\r\n" \
	"UIDL\r\n" \
	".\r\n"

#define MAX_STEPS 16
#define WIRE_MAX 65536
#define BUF_CAP	16384

enum step_kind { S_END, S_CLIENT, S_BACKEND, S_TLS, S_CLIENT_EOF,
	S_BACKEND_EOF };

struct step {
	enum step_kind	 kind;
	const char	*data;
	size_t		 len;
};

#define C(s)	{ S_CLIENT, (s), sizeof(s) - 1 }
#define B(s)	{ S_BACKEND, (s), sizeof(s) - 1 }
#define TLS	{ S_TLS, NULL, 0 }
#define CEOF	{ S_CLIENT_EOF, NULL, 0 }
#define BEOF	{ S_BACKEND_EOF, NULL, 0 }

#define NOCHECK	(-1)

struct scenario {
	const char		*name;
	struct pop3_policy	 pol;
	struct step		 steps[MAX_STEPS];
	const char		*to_backend;	/* exact */
	const char		*to_client;	/* exact */
	int			 events;	/* OR of all returned */
	const char		*cin_left;	/* NULL: must be empty */
	const char		*bin_left;	/* NULL: must be empty */
	int			 errors;	/* NOCHECK or exact */
	const char		*user;		/* NULL: not checked */
	int			 refused;	/* NOCHECK, 0, 1 */
	const char		*close_reason;	/* NULL: not checked */
	size_t			 cin_cap;	/* 0: BUF_CAP */
	size_t			 bin_cap;	/* 0: BUF_CAP */
};

/* Policies: require-tls on port 110 with STLS, the usual deployment. */
#define P_REQUIRE	{ .tls_offered = true, .require_tls = true, \
			  .sasl_line_max = 8192, .max_errors = 3 }
#define P_PLAIN		{ .tls_offered = true, .require_tls = false, \
			  .sasl_line_max = 8192, .max_errors = 3 }
#define P_TLS		{ .tls_active = true, .tls_offered = false, \
			  .require_tls = true, .sasl_line_max = 8192, \
			  .max_errors = 3 }
#define P_NOSTLS	{ .tls_offered = false, .require_tls = true, \
			  .sasl_line_max = 8192, .max_errors = 3 }

enum mode { WHOLE, TRICKLE, SMALL_OUT };

struct rig {
	const struct scenario	*sc;
	enum mode		 mode;
	struct pop3		*p;
	struct buf		 cin, bin, tob, toc;
	char			 wb[WIRE_MAX];	/* what reached the backend */
	size_t			 nb;
	char			 wc[WIRE_MAX];	/* what reached the client */
	size_t			 nc;
	int			 ev;
	bool			 stopped;	/* SPLICE or CLOSE seen */
	bool			 discard;	/* STARTTLS seen, no handshake */
};

static void
fail_at(const struct rig *r, const char *what)
{
	static const char *const modes[] = { "whole", "trickle", "small-out" };

	print_error("scenario \"%s\" (%s): %s\n", r->sc->name, modes[r->mode],
	    what);
	fail();
}

/* drain: the session writes both output buffers out. */
static bool
drain(struct rig *r)
{
	const uint8_t *s;
	size_t n;
	bool moved = false;

	if ((s = buf_rptr(&r->tob, &n)) != NULL) {
		if (r->nb + n > WIRE_MAX)
			fail_at(r, "to_backend wire overflow");
		memcpy(r->wb + r->nb, s, n);
		r->nb += n;
		buf_consume(&r->tob, n);
		moved = true;
	}
	if ((s = buf_rptr(&r->toc, &n)) != NULL) {
		if (r->nc + n > WIRE_MAX)
			fail_at(r, "to_client wire overflow");
		memcpy(r->wc + r->nc, s, n);
		r->nc += n;
		buf_consume(&r->toc, n);
		moved = true;
	}
	return moved;
}

static bool
wire_ends_with(const struct rig *r, const char *tail)
{
	size_t n = strlen(tail);

	return r->nc >= n && memcmp(r->wc + r->nc - n, tail, n) == 0;
}

/* last_line_is_ok: the client wire ends with a "+OK" line. */
static bool
last_line_is_ok(const struct rig *r)
{
	size_t i;

	if (r->nc < 2 || r->wc[r->nc - 1] != '\n')
		return false;
	for (i = r->nc - 1; i > 0 && r->wc[i - 1] != '\n'; i--)
		;
	return r->nc - i >= 4 && memcmp(r->wc + i, "+OK", 3) == 0;
}

static void
note_events(struct rig *r, int ev)
{
	if (ev & POP3_EV_STARTTLS) {
		if (!wire_ends_with(r, STLS_OK))
			fail_at(r, "STARTTLS but to_client does not end "
			    "with +OK");
		/* The session throws away what the client sent too early. */
		buf_consume(&r->cin, buf_len(&r->cin));
		r->discard = true;
	}
	if ((ev & POP3_EV_SPLICE) && !last_line_is_ok(r))
		fail_at(r, "SPLICE but to_client does not end with +OK line");
	if (ev & (POP3_EV_SPLICE | POP3_EV_CLOSE))
		r->stopped = true;
	r->ev |= ev;
}

/* pump: call in as the session does, until nothing moves. */
static void
pump(struct rig *r)
{
	int i, ev;
	size_t lc, lb;
	bool moved;

	for (i = 0; i < 10000; i++) {
		if (r->stopped)
			return;
		lc = buf_len(&r->cin);
		lb = buf_len(&r->bin);
		ev = pop3_backend_input(r->p, &r->bin, &r->toc);
		if (!(ev & (POP3_EV_SPLICE | POP3_EV_CLOSE)))
			ev |= pop3_client_input(r->p, &r->cin, &r->tob,
			    &r->toc);
		moved = drain(r);
		note_events(r, ev);
		if (!moved && ev == 0 && lc == buf_len(&r->cin) &&
		    lb == buf_len(&r->bin))
			return;
	}
	fail_at(r, "mediator does not settle");
}

/* feed: append bytes chunk by chunk as room allows, pumping between. */
static void
feed(struct rig *r, struct buf *b, const char *data, size_t len)
{
	size_t chunk, space;

	while (len > 0) {
		space = buf_space(b);
		chunk = r->mode == TRICKLE ? 1 : len;
		if (chunk > space)
			chunk = space;
		if (chunk == 0) {
			if (r->stopped || r->discard)
				fail_at(r, "test data left over after stop");
			fail_at(r, "input buffer full and nothing consumed "
			    "(wedged)");
			return;
		}
		if (buf_append(b, data, chunk) != 0)
			fail_at(r, "buf_append");
		data += chunk;
		len -= chunk;
		pump(r);
	}
}

static void
run_step(struct rig *r, const struct step *st)
{
	size_t i;

	switch (st->kind) {
	case S_CLIENT:
		if (r->discard)
			return;
		/* Feed byte-wise when discarding may start midway. */
		if (r->mode == TRICKLE) {
			for (i = 0; i < st->len && !r->discard; i++)
				feed(r, &r->cin, st->data + i, 1);
		} else
			feed(r, &r->cin, st->data, st->len);
		break;
	case S_BACKEND:
		feed(r, &r->bin, st->data, st->len);
		break;
	case S_TLS:
		assert_true(r->discard);
		r->discard = false;
		pop3_tls_started(r->p);
		pump(r);
		break;
	case S_CLIENT_EOF:
		note_events(r, pop3_client_eof(r->p, &r->toc));
		drain(r);
		break;
	case S_BACKEND_EOF:
		note_events(r, pop3_backend_eof(r->p, &r->toc));
		drain(r);
		break;
	case S_END:
		break;
	}
}

static void
expect_bytes(const struct rig *r, const char *what, const char *want,
    size_t wantlen, const void *got, size_t gotlen)
{
	if (wantlen == gotlen && memcmp(want, got, gotlen) == 0)
		return;
	print_error("%s:\n--- want (%zu)\n%.*s\n--- got (%zu)\n%.*s\n---\n",
	    what, wantlen, (int)wantlen, want, gotlen, (int)gotlen,
	    (const char *)got);
	fail_at(r, what);
}

static void
expect_left(const struct rig *r, const char *what, const char *want,
    const struct buf *b)
{
	const uint8_t *s;
	size_t n;

	s = buf_rptr(b, &n);
	expect_bytes(r, what, want ? want : "", want ? strlen(want) : 0,
	    s, n);
}

static void
run_mode(const struct scenario *sc, enum mode mode)
{
	struct rig *r;
	size_t out = mode == SMALL_OUT ? 512 : BUF_CAP;
	int i;

	assert_non_null(r = calloc(1, sizeof(*r)));
	r->sc = sc;
	r->mode = mode;
	assert_non_null(r->p = pop3_new(&sc->pol));
	buf_init(&r->cin, sc->cin_cap ? sc->cin_cap : BUF_CAP);
	buf_init(&r->bin, sc->bin_cap ? sc->bin_cap : BUF_CAP);
	buf_init(&r->tob, out);
	buf_init(&r->toc, out);
	for (i = 0; i < MAX_STEPS && sc->steps[i].kind != S_END; i++)
		run_step(r, &sc->steps[i]);

	expect_bytes(r, "to_backend", sc->to_backend, strlen(sc->to_backend),
	    r->wb, r->nb);
	expect_bytes(r, "to_client", sc->to_client, strlen(sc->to_client),
	    r->wc, r->nc);
	expect_left(r, "cin left", sc->cin_left, &r->cin);
	expect_left(r, "bin left", sc->bin_left, &r->bin);
	if (r->ev != sc->events) {
		print_error("events want %#x got %#x\n", sc->events, r->ev);
		fail_at(r, "events");
	}
	if (sc->errors != NOCHECK && pop3_errors(r->p) != sc->errors) {
		print_error("errors want %d got %d\n", sc->errors,
		    pop3_errors(r->p));
		fail_at(r, "error count");
	}
	if (sc->user != NULL && strcmp(pop3_user(r->p), sc->user) != 0) {
		print_error("user want \"%s\" got \"%s\"\n", sc->user,
		    pop3_user(r->p));
		fail_at(r, "user");
	}
	if (sc->refused != NOCHECK &&
	    pop3_auth_refused(r->p) != (sc->refused != 0))
		fail_at(r, "auth_refused");
	if (sc->close_reason != NULL && (pop3_close_reason(r->p) == NULL ||
	    strcmp(pop3_close_reason(r->p), sc->close_reason) != 0))
		fail_at(r, "close reason");
	if (!(sc->events & POP3_EV_CLOSE) && pop3_close_reason(r->p) != NULL)
		fail_at(r, "close reason without CLOSE");

	buf_free(&r->cin);
	buf_free(&r->bin);
	buf_free(&r->tob);
	buf_free(&r->toc);
	pop3_free(r->p);
	free(r);
}

static void
run_scenario(const struct scenario *sc)
{
	run_mode(sc, WHOLE);
	run_mode(sc, TRICKLE);
	run_mode(sc, SMALL_OUT);
}

/* ---- the table ---- */

static const struct scenario scenarios[] = {
{
	.name = "greeting with APOP timestamp passes unchanged",
	.pol = P_REQUIRE,
	.steps = { B(GREET) },
	.to_backend = "", .to_client = GREET,
	.errors = 0, .refused = 0, .user = "",
},
{
	.name = "-ERR greeting passes",
	.pol = P_REQUIRE,
	.steps = { B("-ERR too busy\r\n") },
	.to_backend = "", .to_client = "-ERR too busy\r\n",
	.errors = 0, .refused = NOCHECK,
},
{
	/* Not POP3 at all (a TLS or HTTP server, noise): the client gets
	 * popsd's own [SYS/TEMP] and none of those bytes. */
	.name = "garbage greeting: -ERR [SYS/TEMP] and close",
	.pol = P_REQUIRE,
	.steps = { B("\x16\x03\x01garbage\r\n") },
	.to_backend = "",
	.to_client = "-ERR [SYS/TEMP] backend error, closing\r\n",
	.events = POP3_EV_CLOSE, .close_reason = "backend-bad-greeting",
	.errors = 0, .refused = NOCHECK,
},
{
	.name = "CAPA rewritten before TLS under require-tls",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("CAPA\r\n"), B(CAPA_BACKEND) },
	.to_backend = "CAPA\r\n",
	.to_client = GREET
	    "+OK Capability list follows\r\n"
	    "TOP\r\nRESP-CODES\r\nPIPELINING\r\nUIDL\r\n"
	    "STLS\r\nAUTH-RESP-CODE\r\n.\r\n",
	.errors = 0, .refused = 0,
},
{
	.name = "CAPA under implicit TLS shows USER and SASL, no STLS",
	.pol = P_TLS,
	.steps = { B(GREET), C("CAPA\r\n"), B(CAPA_BACKEND) },
	.to_backend = "CAPA\r\n",
	.to_client = GREET
	    "+OK Capability list follows\r\n"
	    "TOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nPIPELINING\r\n"
	    "UIDL\r\nAUTH-RESP-CODE\r\n.\r\n",
	.errors = 0,
},
{
	.name = "CAPA with plaintext allowed keeps USER, adds STLS",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("CAPA\r\n"), B(CAPA_BACKEND) },
	.to_backend = "CAPA\r\n",
	.to_client = GREET
	    "+OK Capability list follows\r\n"
	    "TOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nPIPELINING\r\n"
	    "UIDL\r\nSTLS\r\nAUTH-RESP-CODE\r\n.\r\n",
	.errors = 0,
},
{
	.name = "CAPA tags are case-insensitive, bare LF normalized",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("capa\n"),
	    B("+OK\nuser\nSasl PLAIN\nstls\nresp-codes\nAuth-Resp-Code\n"
	      "USERX\nIMPLEMENTATION Legacy 1.0\n.\n") },
	.to_backend = "capa\r\n",
	.to_client = GREET "+OK\n"
	    "resp-codes\r\nAuth-Resp-Code\r\nUSERX\r\n"
	    "IMPLEMENTATION Legacy 1.0\r\nSTLS\r\n.\r\n",
	.errors = 0,
},
{
	.name = "CAPA -ERR from a legacy backend: popsd's own list",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("CAPA\r\n"), B("-ERR unknown command\r\n") },
	.to_backend = "CAPA\r\n",
	.to_client = GREET "+OK Capability list follows\r\n"
	    "STLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
	.errors = 0,
},
{
	.name = "CAPA -ERR, plaintext allowed: USER announced",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("CAPA\r\n"), B("-ERR\r\n") },
	.to_backend = "CAPA\r\n",
	.to_client = GREET "+OK Capability list follows\r\n"
	    "USER\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
	.errors = 0,
},
{
	.name = "CAPA -ERR under TLS: USER, no STLS",
	.pol = P_TLS,
	.steps = { B(GREET), C("CAPA\r\n"), B("-ERR\r\n") },
	.to_backend = "CAPA\r\n",
	.to_client = GREET "+OK Capability list follows\r\n"
	    "USER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
	.errors = 0,
},
{
	.name = "pipelined CAPA STLS, then CAPA again under TLS",
	.pol = P_REQUIRE,
	.steps = { C("CAPA\r\nSTLS\r\n"), B(GREET CAPA_BACKEND), TLS,
	    C("CAPA\r\n"), B(CAPA_BACKEND) },
	.to_backend = "CAPA\r\nCAPA\r\n",
	.to_client = GREET
	    "+OK Capability list follows\r\n"
	    "TOP\r\nRESP-CODES\r\nPIPELINING\r\nUIDL\r\n"
	    "STLS\r\nAUTH-RESP-CODE\r\n.\r\n"
	    STLS_OK
	    "+OK Capability list follows\r\n"
	    "TOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nPIPELINING\r\n"
	    "UIDL\r\nAUTH-RESP-CODE\r\n.\r\n",
	.events = POP3_EV_STARTTLS,
	.errors = 0,
},
{
	.name = "require-tls refuses USER PASS APOP AUTH, nothing forwarded",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("USER bob\r\nPASS secret\r\n"
	    "APOP bob c4c9334bac560ecc979e58001b3e22fb\r\n"
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\nAUTH PLAIN\r\nauth\r\n"
	    "pass secret\r\n") },
	.to_backend = "",
	.to_client = GREET TLS_REQ TLS_REQ TLS_REQ TLS_REQ TLS_REQ TLS_REQ
	    TLS_REQ,
	.errors = 0, .refused = 1, .user = "bob",
},
{
	.name = "require-tls without STLS names implicit TLS",
	.pol = P_NOSTLS,
	.steps = { B(GREET), C("USER bob\r\nSTLS\r\n") },
	.to_backend = "",
	.to_client = GREET TLS_995 STLS_NONE,
	.errors = 0, .refused = 1,
},
{
	.name = "plaintext allowed: USER PASS, splice at the exact byte",
	.pol = P_PLAIN,
	.steps = { C("USER bob\r\nPASS secret\r\nSTAT\r\n"),
	    B(GREET "+OK bob\r\n+OK maildrop has 2 messages\r\n"
	      "+OK 2 320\r\n") },
	.to_backend = "USER bob\r\nPASS secret\r\n",
	.to_client = GREET "+OK bob\r\n+OK maildrop has 2 messages\r\n",
	.events = POP3_EV_SPLICE,
	.cin_left = "STAT\r\n", .bin_left = "+OK 2 320\r\n",
	.errors = 0, .refused = 0, .user = "bob",
},
{
	.name = "under TLS: login forwarded, splice",
	.pol = P_TLS,
	.steps = { B(GREET), C("USER alice\r\n"), B("+OK\r\n"),
	    C("PASS pw\r\n"), B("+OK welcome\r\n+OK 0 0\r\n") },
	.to_backend = "USER alice\r\nPASS pw\r\n",
	.to_client = GREET "+OK\r\n+OK welcome\r\n",
	.events = POP3_EV_SPLICE, .bin_left = "+OK 0 0\r\n",
	.errors = 0, .user = "alice",
},
{
	.name = "pipelined USER PASS: later input held while PASS pends",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("USER a\r\nPASS b\r\nRETR 1\r\n"),
	    B("+OK\r\n") },
	.to_backend = "USER a\r\nPASS b\r\n",
	.to_client = GREET "+OK\r\n",
	.cin_left = "RETR 1\r\n",
	.errors = 0,
},
{
	/* max-auth-errors bounds password guessing on one connection: the
	 * backend's -ERR to PASS counts, and the last one allowed closes. */
	.name = "failed logins count: the third -ERR to PASS closes",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("USER a\r\nPASS b\r\n"),
	    B("+OK\r\n-ERR [AUTH] invalid password\r\n"),
	    C("USER a\r\nPASS c\r\n"),
	    B("+OK\r\n-ERR [AUTH] invalid password\r\n"),
	    C("USER a\r\nPASS d\r\nUSER a\r\n"),
	    B("+OK\r\n-ERR [AUTH] invalid password\r\n") },
	.to_backend = "USER a\r\nPASS b\r\nUSER a\r\nPASS c\r\n"
	    "USER a\r\nPASS d\r\n",
	.to_client = GREET "+OK\r\n-ERR [AUTH] invalid password\r\n"
	    "+OK\r\n-ERR [AUTH] invalid password\r\n"
	    "+OK\r\n-ERR [AUTH] invalid password\r\n"
	    "-ERR too many errors, closing\r\n",
	.events = POP3_EV_CLOSE, .cin_left = "USER a\r\n",
	.errors = 3, .close_reason = "too-many-errors",
},
{
	.name = "failed PASS releases held input; retry splices",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("USER a\r\nPASS b\r\nRETR 1\r\n"),
	    B("+OK\r\n-ERR [AUTH] invalid password\r\n"),
	    C("USER a\r\nPASS c\r\n"), B("+OK\r\n+OK\r\n") },
	.to_backend = "USER a\r\nPASS b\r\nUSER a\r\nPASS c\r\n",
	.to_client = GREET "+OK\r\n-ERR [AUTH] invalid password\r\n" UNKNOWN
	    "+OK\r\n+OK\r\n",
	.events = POP3_EV_SPLICE,
	.errors = 1,
},
{
	.name = "APOP plaintext allowed: timestamp login splices",
	.pol = P_PLAIN,
	.steps = { B(GREET),
	    C("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
	    B("+OK mrose's maildrop has 2 messages (320 octets)\r\n") },
	.to_backend = "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
	.to_client = GREET "+OK mrose's maildrop has 2 messages (320 octets)"
	    "\r\n",
	.events = POP3_EV_SPLICE, .errors = 0, .user = "mrose",
},
{
	.name = "STLS injection: bytes after STLS never reach the backend",
	.pol = P_REQUIRE,
	.steps = { C("STLS\r\nUSER evil\r\n"), B(GREET) },
	.to_backend = "",
	.to_client = GREET STLS_OK,
	.events = POP3_EV_STARTTLS,
	.errors = 0, .user = "",
},
{
	.name = "STLS injection, then TLS: the injected line is gone",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("STLS\r\nUSER evil\r\nPASS x\r\n"), TLS,
	    C("CAPA\r\n"), B("-ERR\r\n") },
	.to_backend = "CAPA\r\n",
	.to_client = GREET STLS_OK "+OK Capability list follows\r\n"
	    "USER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
	.events = POP3_EV_STARTTLS, .user = "",
},
{
	.name = "STLS twice: second one after the handshake is refused",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("STLS\r\n"), TLS, C("STLS\r\n") },
	.to_backend = "",
	.to_client = GREET STLS_OK STLS_ACTIVE,
	.events = POP3_EV_STARTTLS, .errors = 0,
},
{
	.name = "STLS under implicit TLS",
	.pol = P_TLS,
	.steps = { B(GREET), C("STLS\r\n") },
	.to_backend = "",
	.to_client = GREET STLS_ACTIVE,
	.errors = 0,
},
{
	.name = "STLS after USER went to the backend",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("USER bob\r\nSTLS\r\n"), B("+OK\r\n") },
	.to_backend = "USER bob\r\n",
	.to_client = GREET "+OK\r\n" STLS_LATE,
	.errors = 0,
},
{
	/* A mechanism refused before any SASL data is no failed login. */
	.name = "STLS after a failed AUTH is still refused",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("AUTH FOO\r\n"), B("-ERR unsupported\r\n"),
	    C("STLS\r\n") },
	.to_backend = "AUTH FOO\r\n",
	.to_client = GREET "-ERR unsupported\r\n" STLS_LATE,
	.errors = 0,
},
{
	.name = "STLS after a refused USER is allowed; USER forgotten",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("USER bob\r\nSTLS\r\n"), TLS },
	.to_backend = "",
	.to_client = GREET TLS_REQ STLS_OK,
	.events = POP3_EV_STARTTLS, .refused = 1, .user = "",
},
{
	.name = "STLS not configured",
	.pol = P_NOSTLS,
	.steps = { B(GREET), C("STLS\r\n") },
	.to_backend = "", .to_client = GREET STLS_NONE,
},
{
	.name = "SASL PLAIN with continuation, splice keeps pipelined bytes",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"),
	    C("AGJvYgBzZWNyZXQ=\r\nSTAT\r\n"), B("+OK logged in\r\n") },
	.to_backend = "AUTH PLAIN\r\nAGJvYgBzZWNyZXQ=\r\n",
	.to_client = GREET "+ \r\n+OK logged in\r\n",
	.events = POP3_EV_SPLICE, .cin_left = "STAT\r\n",
	.errors = 0, .user = "bob",
},
{
	.name = "SASL PLAIN initial response (authzid ignored for the log)",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH PLAIN YWRtaW4AYm9iAHB3\r\n"),
	    B("+OK\r\n") },
	.to_backend = "AUTH PLAIN YWRtaW4AYm9iAHB3\r\n",
	.to_client = GREET "+OK\r\n",
	.events = POP3_EV_SPLICE, .user = "bob",
},
{
	.name = "SASL LOGIN with initial response, bare + continuation",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH LOGIN Ym9i\r\n"), B("+\r\n"),
	    C("c2VjcmV0\r\n"), B("+OK\r\n") },
	.to_backend = "AUTH LOGIN Ym9i\r\nc2VjcmV0\r\n",
	.to_client = GREET "+\r\n+OK\r\n",
	.events = POP3_EV_SPLICE, .user = "bob",
},
{
	.name = "SASL cancel with *: back to authorization",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH LOGIN\r\n"), B("+ VXNlcm5hbWU6\r\n"),
	    C("*\r\nNOOP\r\n"), B("-ERR [AUTH] cancelled\r\n"),
	    B("-ERR not in this state\r\n") },
	.to_backend = "AUTH LOGIN\r\n*\r\nNOOP\r\n",
	.to_client = GREET "+ VXNlcm5hbWU6\r\n-ERR [AUTH] cancelled\r\n"
	    "-ERR not in this state\r\n",
	.errors = 0, .user = "",
},
{
	.name = "SASL empty response line is relayed",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"), C("\r\n"),
	    B("-ERR\r\n") },
	.to_backend = "AUTH PLAIN\r\n\r\n",
	.to_client = GREET "+ \r\n-ERR\r\n",
	.errors = 1,
},
{
	.name = "SASL response with a space: cancelled for the client",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"),
	    C("USER evil\r\n"), B("-ERR cancelled\r\n"), C("NOOP\r\n") },
	.to_backend = "AUTH PLAIN\r\n*\r\nNOOP\r\n",
	.to_client = GREET "+ \r\n-ERR cancelled\r\n",
	.errors = 1,
},
{
	.name = "SASL response over sasl_line_max: * sent, rest skipped",
	.pol = { .tls_active = true, .require_tls = true,
	    .sasl_line_max = 16, .max_errors = 3 },
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"),
	    C("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n"),
	    B("-ERR cancelled\r\n"), C("NOOP\r\n") },
	.to_backend = "AUTH PLAIN\r\n*\r\nNOOP\r\n",
	.to_client = GREET "+ \r\n-ERR cancelled\r\n",
	.errors = 1,
},
{
	.name = "SASL over-long, backend accepts anyway: rest still dropped",
	.pol = { .tls_active = true, .require_tls = true,
	    .sasl_line_max = 16, .max_errors = 3 },
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"),
	    C("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n"), B("+OK\r\n") },
	.to_backend = "AUTH PLAIN\r\n*\r\n",
	.to_client = GREET "+ \r\n+OK\r\n",
	.events = POP3_EV_SPLICE,
	.errors = 1,
},
{
	.name = "SASL error that closes: a late +OK does not splice",
	.pol = { .tls_active = true, .require_tls = true,
	    .sasl_line_max = 8192, .max_errors = 1 },
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"),
	    C("AG\x01\r\n"), B("+OK\r\n") },
	.to_backend = "AUTH PLAIN\r\n*\r\n",
	.to_client = GREET "+ \r\n+OK\r\n" TOO_MANY,
	.events = POP3_EV_CLOSE,
	.errors = 1, .close_reason = "too-many-errors",
},
{
	.name = "SASL response at exactly sasl_line_max is relayed",
	.pol = { .tls_active = true, .require_tls = true,
	    .sasl_line_max = 16, .max_errors = 3 },
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"),
	    C("QUFBQUFBQUFBQU\r\n"), B("-ERR no\r\n") },
	.to_backend = "AUTH PLAIN\r\nQUFBQUFBQUFBQU\r\n",
	.to_client = GREET "+ \r\n-ERR no\r\n",
	.errors = 1,
},
{
	.name = "AUTH alone lists mechanisms (multi-line)",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("AUTH\r\nNOOP\r\nRETR 1\r\n"),
	    B("+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n-ERR no\r\n") },
	.to_backend = "AUTH\r\nNOOP\r\n",
	.to_client = GREET "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n-ERR no\r\n"
	    UNKNOWN,
	.errors = 0,
},
{
	.name = "AUTH alone answered -ERR is one line",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("AUTH\r\nRETR 1\r\n"), B("-ERR no list\r\n") },
	.to_backend = "AUTH\r\n",
	.to_client = GREET "-ERR no list\r\n" UNKNOWN,
	.errors = 0,
},
{
	.name = "LANG alone is multi-line, LANG xx single",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("LANG\r\nLANG en\r\nUTF8\r\n"),
	    B("+OK Language listing follows\r\nen English\r\n.\r\n"
	      "+OK en\r\n+OK UTF8 enabled\r\n") },
	.to_backend = "LANG\r\nLANG en\r\nUTF8\r\n",
	.to_client = GREET "+OK Language listing follows\r\nen English\r\n"
	    ".\r\n+OK en\r\n+OK UTF8 enabled\r\n",
	.errors = 0,
},
{
	.name = "unknown command answered behind a pending response",
	.pol = P_PLAIN,
	.steps = { C("RETR 1\r\n"), B(GREET), C("USER bob\r\nLIST\r\nCAPA\r\n"),
	    B("+OK\r\n-ERR\r\n") },
	.to_backend = "USER bob\r\nCAPA\r\n",
	.to_client = GREET UNKNOWN "+OK\r\n" UNKNOWN
	    "+OK Capability list follows\r\n"
	    "USER\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
	.errors = 0,
},
{
	.name = "NUL and control characters refused",
	.pol = { .tls_offered = true, .sasl_line_max = 8192,
	    .max_errors = 10 },
	.steps = { B(GREET), C("USER a\0b\r\nNOOP\x01\r\nNOOP\x7f\r\n"
	    "USER\tbob\r\nUSER a\rPASS b\r\nNOOP \x1b[1m\r\nNOOP\r\n") },
	.to_backend = "NOOP\r\n",
	.to_client = GREET BAD_CHAR BAD_CHAR BAD_CHAR BAD_CHAR BAD_CHAR
	    BAD_CHAR,
	.errors = 6,
},
{
	.name = "UTF-8 in a command is not a control character",
	.pol = P_TLS,
	.steps = { B(GREET), C("USER j\xc3\xb6rg\r\n"), B("+OK\r\n") },
	.to_backend = "USER j\xc3\xb6rg\r\n",
	.to_client = GREET "+OK\r\n",
	.errors = 0, .user = "j??rg",
},
{
	.name = "empty lines refused",
	.pol = { .tls_offered = true, .sasl_line_max = 8192,
	    .max_errors = 10 },
	.steps = { B(GREET), C("\r\n\n") },
	.to_backend = "", .to_client = GREET EMPTY EMPTY, .errors = 2,
},
{
	.name = "bare LF accepted, forwarded with CRLF",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("CAPA\nNOOP\nQUIT\n"),
	    B("-ERR\n-ERR no\n+OK bye\n") },
	.to_backend = "CAPA\r\nNOOP\r\nQUIT\r\n",
	.to_client = GREET "+OK Capability list follows\r\n"
	    "USER\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
	    "-ERR no\n+OK bye\n",
	.errors = 0,
},
{
	.name = "too many errors: close, nothing after it is read",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("\r\nNOOP\x01\r\n\r\nNOOP\r\n") },
	.to_backend = "",
	.to_client = GREET EMPTY BAD_CHAR TOO_MANY,
	.events = POP3_EV_CLOSE, .cin_left = "NOOP\r\n",
	.errors = 3, .close_reason = "too-many-errors",
},
{
	.name = "close waits behind a pending backend answer",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("CAPA\r\n\r\n\r\n\r\n"),
	    B("+OK\r\nTOP\r\n.\r\n") },
	.to_backend = "CAPA\r\n",
	.to_client = GREET "+OK\r\nTOP\r\nSTLS\r\nRESP-CODES\r\n"
	    "AUTH-RESP-CODE\r\n.\r\n" EMPTY EMPTY TOO_MANY,
	.events = POP3_EV_CLOSE,
	.errors = 3, .close_reason = "too-many-errors",
},
{
	.name = "over-long line beyond cin capacity is skipped to its LF",
	.pol = P_TLS,
	.cin_cap = 512,
	.steps = { B(GREET), C("NOOP "
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "\r\nNOOP\r\n"), B("-ERR no\r\n") },
	.to_backend = "NOOP\r\n",
	.to_client = GREET TOO_LONG "-ERR no\r\n",
	.errors = 1,
},
{
	.name = "unasked backend lines are dropped",
	.pol = P_REQUIRE,
	.steps = { B(GREET), B("-ERR autologout\r\n+OK\r\n"), C("CAPA\r\n"),
	    B("-ERR\r\n") },
	.to_backend = "CAPA\r\n",
	.to_client = GREET "+OK Capability list follows\r\n"
	    "STLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
},
{
	.name = "the tail of an unasked partial line is no answer",
	.pol = P_PLAIN,
	.steps = { B(GREET "+OK stray"), C("USER bob\r\nPASS x\r\n"),
	    B(" tail\r\n-ERR no such user\r\n-ERR [AUTH] no\r\n") },
	.to_backend = "USER bob\r\nPASS x\r\n",
	.to_client = GREET "-ERR no such user\r\n-ERR [AUTH] no\r\n",
	.errors = 1,
},
{
	.name = "backend bytes during the STLS handshake are dropped",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("STLS\r\n"), B("+OK surprise\r\n"), TLS,
	    C("CAPA\r\n"), B("-ERR\r\n") },
	.to_backend = "CAPA\r\n",
	.to_client = GREET STLS_OK "+OK Capability list follows\r\n"
	    "USER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
	.events = POP3_EV_STARTTLS,
},
{
	.name = "QUIT forwarded, answer relayed",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("QUIT\r\n"), B("+OK bye\r\n"), BEOF },
	.to_backend = "QUIT\r\n", .to_client = GREET "+OK bye\r\n",
},
{
	.name = "client EOF with nothing pending",
	.pol = P_REQUIRE,
	.steps = { B(GREET), CEOF },
	.to_backend = "", .to_client = GREET,
},
{
	.name = "backend EOF releases replies queued behind it",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("NOOP\r\nRETR 1\r\n"), BEOF },
	.to_backend = "NOOP\r\n", .to_client = GREET UNKNOWN,
},
/* ---- issue 13.4: a password never becomes the logged name ---- */
{
	/* RFC 4616 wants two NULs; with one, what follows it is the
	 * password. */
	.name = "SASL PLAIN with one NUL: no name, the password is not one",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH PLAIN Ym9iAHNlY3JldA==\r\n"),
	    B("-ERR [AUTH] failed\r\n") },
	.to_backend = "AUTH PLAIN Ym9iAHNlY3JldA==\r\n",
	.to_client = GREET "-ERR [AUTH] failed\r\n",
	.errors = 1, .user = "",
},
{
	.name = "SASL PLAIN one NUL as a response: no name",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"),
	    C("Ym9iAHNlY3JldA==\r\n"), B("-ERR [AUTH] failed\r\n") },
	.to_backend = "AUTH PLAIN\r\nYm9iAHNlY3JldA==\r\n",
	.to_client = GREET "+ \r\n-ERR [AUTH] failed\r\n",
	.errors = 1, .user = "",
},
{
	.name = "SASL PLAIN with three NULs or no password: no name",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH PLAIN YQBib2IAcHcAeA==\r\n"),
	    B("-ERR no\r\n"), C("AUTH PLAIN AGJvYgA=\r\n"), B("-ERR no\r\n") },
	.to_backend = "AUTH PLAIN YQBib2IAcHcAeA==\r\nAUTH PLAIN AGJvYgA=\r\n",
	.to_client = GREET "-ERR no\r\n-ERR no\r\n",
	.errors = 2, .user = "",
},
{
	/* Padding missing: the backend may accept it, the log takes no
	 * name from data that is not well formed. */
	.name = "SASL PLAIN not strict base64: no name",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH PLAIN AGJvYgBzZWNyZXQ\r\n"),
	    B("+OK\r\n") },
	.to_backend = "AUTH PLAIN AGJvYgBzZWNyZXQ\r\n",
	.to_client = GREET "+OK\r\n",
	.events = POP3_EV_SPLICE, .errors = 0, .user = "",
},
{
	/* The second LOGIN response is the password: it is never taken,
	 * even when the first (the name) was empty. */
	.name = "SASL LOGIN empty first response: the password is no name",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH LOGIN\r\n"), B("+ VXNlcm5hbWU6\r\n"),
	    C("\r\n"), B("+ UGFzc3dvcmQ6\r\n"), C("c2VjcmV0\r\n"),
	    B("-ERR [AUTH] failed\r\n") },
	.to_backend = "AUTH LOGIN\r\n\r\nc2VjcmV0\r\n",
	.to_client = GREET "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n"
	    "-ERR [AUTH] failed\r\n",
	.errors = 1, .user = "",
},
{
	.name = "SASL LOGIN empty initial response =: the password is no name",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH LOGIN =\r\n"), B("+ UGFzc3dvcmQ6\r\n"),
	    C("c2VjcmV0\r\n"), B("-ERR [AUTH] failed\r\n") },
	.to_backend = "AUTH LOGIN =\r\nc2VjcmV0\r\n",
	.to_client = GREET "+ UGFzc3dvcmQ6\r\n-ERR [AUTH] failed\r\n",
	.errors = 1, .user = "",
},
{
	.name = "SASL LOGIN name after the USER name replaces it",
	.pol = P_TLS,
	.steps = { B(GREET), C("USER alice\r\n"), B("+OK\r\n"),
	    C("AUTH LOGIN\r\n"), B("+ VXNlcm5hbWU6\r\n"), C("Ym9i\r\n"),
	    B("+ UGFzc3dvcmQ6\r\n"), C("c2VjcmV0\r\n"), B("+OK\r\n") },
	.to_backend = "USER alice\r\nAUTH LOGIN\r\nYm9i\r\nc2VjcmV0\r\n",
	.to_client = GREET "+OK\r\n+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK\r\n",
	.events = POP3_EV_SPLICE, .errors = 0, .user = "bob",
},
/* ---- issue 13.6 and 13.7: only what the syntax allows is forwarded ---- */
{
	.name = "no argument after CAPA NOOP QUIT UTF8 STLS: refused",
	.pol = { .tls_offered = true, .sasl_line_max = 8192,
	    .max_errors = 10 },
	.steps = { B(GREET), C("CAPA x\r\nNOOP PASS guess\r\nQUIT now\r\n"
	    "UTF8 x\r\nSTLS now\r\nnoop\r\n"), B("+OK\r\n") },
	.to_backend = "noop\r\n",
	.to_client = GREET NO_ARG NO_ARG NO_ARG NO_ARG NO_ARG "+OK\r\n",
	.errors = 5,
},
{
	/* A legacy daemon that splits long lines would read a second
	 * command in the tail. */
	.name = "smuggling after CAPA's padding never reaches the backend",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("CAPA                                        "
	    "                                                            "
	    "                                                            "
	    "                  PASS guess\r\nQUIT\r\n"), B("+OK bye\r\n") },
	.to_backend = "QUIT\r\n",
	.to_client = GREET NO_ARG "+OK bye\r\n",
	.errors = 1,
},
{
	.name = "STLS with an argument: -ERR, no TLS, then STLS works",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("STLS now\r\nSTLS\r\n"), TLS, C("CAPA\r\n"),
	    B("-ERR\r\n") },
	.to_backend = "CAPA\r\n",
	.to_client = GREET NO_ARG STLS_OK "+OK Capability list follows\r\n"
	    "USER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
	.events = POP3_EV_STARTTLS, .errors = 1,
},
{
	/* Trailing spaces are cut, except after PASS (they may be part
	 * of the password); any case for keywords and mechanisms. */
	.name = "trailing spaces tolerated and cut, case-insensitive",
	.pol = P_PLAIN,
	.steps = { B(GREET), C("capa  \r\nStls \r\n"),
	    B("-ERR\r\n"), TLS,
	    C("User bob  \r\npass  a b  \r\n"), B("+OK\r\n-ERR no\r\n"),
	    C("auth plain AGJvYgBzZWNyZXQ= \r\n"), B("+OK\r\n") },
	.to_backend = "capa\r\nUser bob\r\npass  a b  \r\n"
	    "auth plain AGJvYgBzZWNyZXQ=\r\n",
	.to_client = GREET "+OK Capability list follows\r\n"
	    "USER\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n" STLS_OK
	    "+OK\r\n-ERR no\r\n+OK\r\n",
	.events = POP3_EV_STARTTLS | POP3_EV_SPLICE, .errors = 1,
	.user = "bob",
},
{
	.name = "USER and PASS need their one argument",
	.pol = { .tls_active = true, .sasl_line_max = 8192,
	    .max_errors = 10 },
	.steps = { B(GREET), C("USER\r\nUSER \r\nUSER a b\r\nUSER  a\r\n"
	    "PASS\r\nPASS \r\nQUIT\r\n"), B("+OK\r\n") },
	.to_backend = "QUIT\r\n",
	.to_client = GREET BAD_ARGS BAD_ARGS BAD_ARGS BAD_ARGS BAD_ARGS
	    BAD_ARGS "+OK\r\n",
	.errors = 6, .user = "",
},
{
	.name = "APOP needs a name and a 32-digit hex digest",
	.pol = { .tls_active = true, .sasl_line_max = 8192,
	    .max_errors = 10 },
	.steps = { B(GREET), C("APOP mrose\r\n"
	    "APOP mrose c4c9334bac560ecc979e58001b3e22f\r\n"
	    "APOP mrose c4c9334bac560ecc979e58001b3e22fbb\r\n"
	    "APOP mrose c4c9334bac560ecc979e58001b3e22fg\r\n"
	    "APOP mrose c4c9334bac560ecc979e58001b3e22fb x\r\n"
	    "APOP  c4c9334bac560ecc979e58001b3e22fb\r\n"
	    "APOP mrose C4C9334BAC560ECC979E58001B3E22FB\r\n"),
	    B("-ERR [AUTH] no\r\n") },
	.to_backend = "APOP mrose C4C9334BAC560ECC979E58001B3E22FB\r\n",
	.to_client = GREET BAD_ARGS BAD_ARGS BAD_ARGS BAD_ARGS BAD_ARGS
	    BAD_ARGS "-ERR [AUTH] no\r\n",
	.errors = 7, .user = "mrose",
},
{
	.name = "AUTH takes a mechanism and one base64 initial response",
	.pol = { .tls_active = true, .sasl_line_max = 8192,
	    .max_errors = 10 },
	.steps = { B(GREET), C("AUTH PLAIN a b\r\nAUTH PLAIN\tx\r\n"
	    "AUTH PL@IN\r\nAUTH  PLAIN\r\n"
	    "AUTH ABCDEFGHIJKLMNOPQRSTU\r\nAUTH PLAIN PASS:x\r\n"
	    "AUTH ABCDEFGHIJKLMNOPQRST\r\n"), B("-ERR unsupported\r\n") },
	.to_backend = "AUTH ABCDEFGHIJKLMNOPQRST\r\n",
	.to_client = GREET BAD_ARGS BAD_CHAR BAD_ARGS BAD_ARGS BAD_ARGS
	    BAD_ARGS "-ERR unsupported\r\n",
	.errors = 6,
},
{
	.name = "LANG takes at most one argument",
	.pol = P_TLS,
	.steps = { B(GREET), C("LANG en x\r\nLANG *\r\n"), B("+OK\r\n") },
	.to_backend = "LANG *\r\n",
	.to_client = GREET BAD_ARGS "+OK\r\n",
	.errors = 1,
},
{
	.name = "a malformed USER under require-tls records no name",
	.pol = P_REQUIRE,
	.steps = { B(GREET), C("USER bob secret\r\nUSER bob\r\n") },
	.to_backend = "",
	.to_client = GREET BAD_ARGS TLS_REQ,
	.errors = 1, .refused = 1, .user = "bob",
},
/* ---- issue 13.8: max-auth-errors counts failed logins, once ---- */
{
	/* Before: cancel (1), popsd's refusal (2) and the backend's -ERR
	 * to it (3) closed the session at the default 3. */
	.name = "a cancel and one bad SASL response: one error, login works",
	.pol = P_TLS,
	.steps = { B(GREET), C("AUTH LOGIN\r\n"), B("+ VXNlcm5hbWU6\r\n"),
	    C("*\r\n"), B("-ERR cancelled\r\n"), C("AUTH PLAIN\r\n"),
	    B("+ \r\n"), C("not base64\r\n"), B("-ERR cancelled\r\n"),
	    C("USER bob\r\nPASS secret\r\n"), B("+OK\r\n+OK\r\n") },
	.to_backend = "AUTH LOGIN\r\n*\r\nAUTH PLAIN\r\n*\r\n"
	    "USER bob\r\nPASS secret\r\n",
	.to_client = GREET "+ VXNlcm5hbWU6\r\n-ERR cancelled\r\n+ \r\n"
	    "-ERR cancelled\r\n+OK\r\n+OK\r\n",
	.events = POP3_EV_SPLICE, .errors = 1, .user = "bob",
},
{
	.name = "cancels are no failed logins; a failed SASL login counts once",
	.pol = { .tls_active = true, .sasl_line_max = 8192,
	    .max_errors = 1 },
	.steps = { B(GREET), C("AUTH PLAIN\r\n"), B("+ \r\n"), C("*\r\n"),
	    B("-ERR cancelled\r\n"), C("AUTH LOGIN Ym9i\r\n"), B("+ \r\n"),
	    C("*\r\n"), B("-ERR cancelled\r\n"),
	    C("AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n"), B("-ERR [AUTH] no\r\n") },
	.to_backend = "AUTH PLAIN\r\n*\r\nAUTH LOGIN Ym9i\r\n*\r\n"
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n",
	.to_client = GREET "+ \r\n-ERR cancelled\r\n+ \r\n-ERR cancelled\r\n"
	    "-ERR [AUTH] no\r\n" TOO_MANY,
	.events = POP3_EV_CLOSE, .errors = 1,
	.close_reason = "too-many-errors", .user = "bob",
},
};

#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static void
test_scenario(void **state)
{
	run_scenario(*state);
}

/* ---- generated scenarios: exact RFC 2449 §4 bound ---- */

/* cmdline: "USER " + n x 'a' + ending, in a static buffer. */
static const char *
long_user(char *buf, size_t n, const char *ending)
{
	memcpy(buf, "USER ", 5);
	memset(buf + 5, 'a', n);
	strcpy(buf + 5 + n, ending);
	return buf;
}

static void
test_line_bound(void **state)
{
	static char ok[300], okw[300], bad[300], badlf[300], oklf[300];
	struct scenario sc = { .name = "255 octets ok, 256 refused",
	    .pol = P_TLS, .errors = 2 };
	static char expect[2048];

	(void)state;
	/* 5 + 248 + 2 = 255 octets: the longest legal command line. */
	long_user(ok, 248, "\r\n");
	long_user(bad, 249, "\r\n");		/* 256 octets */
	long_user(badlf, 249, "\n");		/* 255 on the wire, 256 as CRLF */
	long_user(oklf, 248, "\n");
	sc.steps[0] = (struct step){ S_BACKEND, GREET, strlen(GREET) };
	sc.steps[1] = (struct step){ S_CLIENT, ok, strlen(ok) };
	sc.steps[2] = (struct step){ S_BACKEND, "-ERR a\r\n", 8 };
	sc.steps[3] = (struct step){ S_CLIENT, bad, strlen(bad) };
	sc.steps[4] = (struct step){ S_CLIENT, badlf, strlen(badlf) };
	sc.steps[5] = (struct step){ S_CLIENT, oklf, strlen(oklf) };
	sc.steps[6] = (struct step){ S_BACKEND, "-ERR b\r\n", 8 };
	long_user(okw, 248, "\r\n");
	snprintf(expect, sizeof(expect), "%s%s", ok, okw);
	sc.to_backend = expect;
	sc.to_client = GREET "-ERR a\r\n" TOO_LONG TOO_LONG "-ERR b\r\n";
	run_scenario(&sc);
}

/* The fatal error is an over-long line while the close waits for the
 * greeting: the rest of that line is still dropped, what follows stays. */
static void
test_close_skips_tail(void **state)
{
	static char in[400];
	struct scenario sc = { .name = "closing still drops a long line's tail",
	    .pol = { .tls_active = true, .sasl_line_max = 8192,
	    .max_errors = 1 }, .errors = 1, .events = POP3_EV_CLOSE,
	    .close_reason = "too-many-errors" };

	(void)state;
	memset(in, 'n', 300);
	strcpy(in + 300, "\r\nNOOP\r\n");
	sc.steps[0] = (struct step){ S_CLIENT, in, strlen(in) };
	sc.steps[1] = (struct step){ S_BACKEND, GREET, strlen(GREET) };
	sc.to_backend = "";
	sc.to_client = GREET TOO_MANY;
	sc.cin_left = "NOOP\r\n";
	run_scenario(&sc);
}

/* 40 pipelined commands with no answers: 31 go out (the greeting holds
 * the 32nd slot), the rest wait in cin. */
static void
test_queue_bound(void **state)
{
	static char in[40 * 6 + 1], out[31 * 6 + 1], left[9 * 6 + 1];
	struct scenario sc = { .name = "response queue bound",
	    .pol = P_PLAIN, .errors = 0 };
	int i;

	(void)state;
	for (i = 0; i < 40; i++)
		memcpy(in + 6 * i, "NOOP\r\n", 6);
	memcpy(out, in, 31 * 6);
	memcpy(left, in, 9 * 6);
	sc.steps[0] = (struct step){ S_CLIENT, in, strlen(in) };
	sc.to_backend = out;
	sc.to_client = "";
	sc.cin_left = left;
	run_scenario(&sc);
}

/* A backend line that cannot fit bin ends the session instead of
 * wedging it. */
static void
test_backend_overflow(void **state)
{
	static char big[513];
	struct scenario sc = { .name = "backend line longer than bin",
	    .pol = P_REQUIRE, .bin_cap = 512,
	    .close_reason = "backend-line-too-long" };

	(void)state;
	memset(big, 'y', 512);
	memcpy(big, "+OK ", 4);
	sc.steps[0] = (struct step){ S_BACKEND, big, 512 };
	sc.to_backend = "";
	sc.to_client = BACKEND_ERR;
	sc.events = POP3_EV_CLOSE;
	sc.bin_left = big;
	run_scenario(&sc);
}

/* A backend line that fits bin but can never fit to_client. */
static void
test_backend_line_over_output(void **state)
{
	struct pop3_policy pol = P_REQUIRE;
	struct buf bin, toc;
	struct pop3 *p;
	char line[1000];

	(void)state;
	buf_init(&bin, 4096);
	buf_init(&toc, 512);
	memset(line, 'z', sizeof(line));
	memcpy(line, "+OK ", 4);
	line[sizeof(line) - 1] = '\n';
	assert_non_null(p = pop3_new(&pol));
	assert_int_equal(buf_append(&bin, line, sizeof(line)), 0);
	assert_int_equal(pop3_backend_input(p, &bin, &toc), POP3_EV_CLOSE);
	assert_string_equal(pop3_close_reason(p), "backend-line-too-long");
	assert_int_equal(buf_len(&toc), strlen(BACKEND_ERR));
	/* Closed: nothing more is consumed or produced. */
	assert_int_equal(pop3_backend_input(p, &bin, &toc), 0);
	assert_int_equal(buf_len(&bin), sizeof(line));
	pop3_free(p);
	buf_free(&bin);
	buf_free(&toc);
}

/* The same inside a CAPA list: no "-ERR" that would read as a
 * capability; the connection just ends. */
static void
test_backend_overflow_in_body(void **state)
{
	struct pop3_policy pol = P_REQUIRE;
	struct buf cin, bin, tob, toc;
	struct pop3 *p;
	char junk[512];

	(void)state;
	buf_init(&cin, 512);
	buf_init(&bin, 512);
	buf_init(&tob, 512);
	buf_init(&toc, 4096);
	memset(junk, 'j', sizeof(junk));
	assert_non_null(p = pop3_new(&pol));
	assert_int_equal(buf_append(&cin, "CAPA\r\n", 6), 0);
	assert_int_equal(buf_append(&bin, GREET "+OK\r\nTOP\r\n",
	    strlen(GREET) + 10), 0);
	assert_int_equal(pop3_client_input(p, &cin, &tob, &toc), 0);
	assert_int_equal(pop3_backend_input(p, &bin, &toc), 0);
	assert_int_equal(buf_append(&bin, junk, sizeof(junk)), 0);
	assert_int_equal(pop3_backend_input(p, &bin, &toc), POP3_EV_CLOSE);
	assert_int_equal(buf_len(&toc), strlen(GREET) + 10);
	pop3_free(p);
	buf_free(&cin);
	buf_free(&bin);
	buf_free(&tob);
	buf_free(&toc);
}

/* ---- direct checks of the small API ---- */

static void
test_facts(void **state)
{
	struct pop3_policy pol = P_REQUIRE;
	struct buf cin, bin, tob, toc;
	struct pop3 *p;

	(void)state;
	buf_init(&cin, 1024);
	buf_init(&bin, 1024);
	buf_init(&tob, 1024);
	buf_init(&toc, 1024);
	assert_non_null(p = pop3_new(&pol));
	assert_false(pop3_idle(p));		/* the greeting is expected */
	assert_int_equal(pop3_client_eof(p, &toc), 0);
	assert_int_equal(buf_append(&bin, GREET, strlen(GREET)), 0);
	assert_int_equal(pop3_backend_input(p, &bin, &toc), 0);
	assert_true(pop3_idle(p));
	assert_false(pop3_stls_used(p));
	assert_null(pop3_close_reason(p));
	assert_string_equal(pop3_user(p), "");

	/* A name with quotes, '=' or DEL is sanitized for key=value logs. */
	assert_int_equal(buf_append(&cin, "USER a\"b\"=c\x7f\r\n", 14), 0);
	assert_int_equal(pop3_client_input(p, &cin, &tob, &toc), 0);
	assert_string_equal(pop3_user(p), "");	/* DEL: refused line */
	assert_int_equal(pop3_errors(p), 1);
	assert_int_equal(buf_append(&cin, "USER a\"b\"=c\r\n", 13), 0);
	assert_int_equal(pop3_client_input(p, &cin, &tob, &toc), 0);
	assert_string_equal(pop3_user(p), "a?b??c");
	assert_true(pop3_auth_refused(p));

	/* pop3_tls_started outside STLS changes nothing. */
	pop3_tls_started(p);
	assert_false(pop3_stls_used(p));

	assert_int_equal(buf_append(&cin, "STLS\r\n", 6), 0);
	assert_int_equal(pop3_client_input(p, &cin, &tob, &toc),
	    POP3_EV_STARTTLS);
	/* Held until the handshake: nothing more is consumed. */
	assert_int_equal(buf_append(&cin, "NOOP\r\n", 6), 0);
	assert_int_equal(pop3_client_input(p, &cin, &tob, &toc), 0);
	assert_int_equal(buf_len(&cin), 6);
	buf_consume(&cin, 6);
	pop3_tls_started(p);
	assert_true(pop3_stls_used(p));
	assert_string_equal(pop3_user(p), "");
	assert_true(pop3_auth_refused(p));
	assert_true(buf_empty(&tob));

	pop3_free(p);
	pop3_free(NULL);
	buf_free(&cin);
	buf_free(&bin);
	buf_free(&tob);
	buf_free(&toc);
}

/* A full to_backend holds the command in cin until there is room. */
static void
test_output_backpressure(void **state)
{
	struct pop3_policy pol = P_PLAIN;
	struct buf cin, bin, tob, toc;
	struct pop3 *p;

	(void)state;
	buf_init(&cin, 1024);
	buf_init(&bin, 1024);
	buf_init(&tob, 8);
	buf_init(&toc, 1024);
	assert_non_null(p = pop3_new(&pol));
	assert_int_equal(buf_append(&cin, "NOOP\r\nQUIT\r\n", 12), 0);
	assert_int_equal(pop3_client_input(p, &cin, &tob, &toc), 0);
	assert_int_equal(buf_len(&tob), 6);
	assert_int_equal(buf_len(&cin), 6);	/* QUIT waits for room */
	buf_consume(&tob, 6);
	assert_int_equal(pop3_client_input(p, &cin, &tob, &toc), 0);
	assert_int_equal(buf_len(&tob), 6);
	assert_int_equal(buf_len(&cin), 0);
	pop3_free(p);
	buf_free(&cin);
	buf_free(&bin);
	buf_free(&tob);
	buf_free(&toc);
}

int
main(void)
{
	static const struct CMUnitTest extra[] = {
		cmocka_unit_test(test_line_bound),
		cmocka_unit_test(test_queue_bound),
		cmocka_unit_test(test_close_skips_tail),
		cmocka_unit_test(test_backend_overflow),
		cmocka_unit_test(test_backend_line_over_output),
		cmocka_unit_test(test_backend_overflow_in_body),
		cmocka_unit_test(test_facts),
		cmocka_unit_test(test_output_backpressure),
	};
	struct CMUnitTest tests[NSCENARIOS + sizeof(extra) / sizeof(extra[0])];
	size_t i, n = 0;
	int rc;

	for (i = 0; i < NSCENARIOS; i++)
		tests[n++] = (struct CMUnitTest){ .name = scenarios[i].name,
		    .test_func = test_scenario,
		    .initial_state = (void *)&scenarios[i] };
	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		tests[n++] = extra[i];
	rc = _cmocka_run_group_tests("pop3", tests, n, NULL, NULL);
	buf_pool_trim();
	return rc;
}
