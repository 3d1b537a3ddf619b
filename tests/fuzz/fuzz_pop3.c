/*
 * fuzz_pop3.c — libFuzzer harness for the authorization-phase mediator.
 *
 * The input is a policy, buffer sizes and a script: client bytes, backend
 * bytes, drains of either output, the STLS handshake, EOFs. The script is
 * played with the session's calling pattern three times: byte by byte;
 * in whole chunks, the backend's cut at line ends; and in whole chunks
 * throughout. The first two must end identically. (A backend chunk
 * holding one answer and then bytes past it is not causal: the backend
 * cannot answer a command that popsd holds back until that answer
 * arrives, so such bytes are unasked when they arrive or not, depending
 * on timing. The third play checks only the invariants.) Checked
 * throughout:
 *  - the backend only ever sees CRLF-terminated lines of printable bytes
 *    (or UTF-8), none longer than the bound in force;
 *  - while TLS is required and not active, no line to the backend starts
 *    with USER, PASS, APOP or AUTH, and no SPLICE happens;
 *  - a command line to the backend (any line with a space: SASL data has
 *    none) carries only what its syntax allows: nothing after CAPA, NOOP,
 *    QUIT, STLS or UTF8; one word after USER and LANG; a name and 32 hex
 *    digits after APOP; a mechanism and at most one word after AUTH;
 *    no other keyword;
 *  - STARTTLS leaves "+OK Begin TLS negotiation" last in to_client,
 *    SPLICE leaves a "+OK" line last;
 *  - once SPLICE, CLOSE or STARTTLS is returned, nothing more is consumed
 *    or produced (until the handshake, for STARTTLS, when only unasked
 *    backend bytes may be dropped);
 *  - the mediator settles: repeated calls stop changing anything.
 *
 * Script format: [policy][limits][caps] then ops of [op][len][len bytes].
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "pop3.h"

#define STLS_OK		"+OK Begin TLS negotiation\r\n"
#define TAIL_MAX	64

enum op {
	OP_CLIENT, OP_BACKEND, OP_DRAIN_CLIENT, OP_DRAIN_BACKEND, OP_TLS,
	OP_CLIENT_EOF, OP_BACKEND_EOF, OP_DRAIN_BOTH,
};

/* A byte stream as seen by one peer, checked and summarized. */
struct wire {
	uint64_t	hash;		/* FNV-1a of every byte */
	size_t		len;
	uint8_t		tail[TAIL_MAX];	/* last bytes, for end checks */
	size_t		ntail;
	/* backend stream only: the line being checked */
	uint8_t		line[256];
	size_t		linelen;
	bool		cr;
	bool		plaintext;	/* produced while TLS required, absent */
};

enum mode {
	MODE_TRICKLE,		/* byte by byte */
	MODE_LINES,		/* client chunks whole, backend by lines */
	MODE_RAW,		/* every chunk whole */
};

struct run {
	struct pop3_policy	 pol;
	enum mode		 mode;
	struct pop3		*p;
	struct buf		 cin, bin, tob, toc;
	struct wire		 wb, wc;
	int			 ev;
	bool			 stopped;	/* SPLICE or CLOSE */
	bool			 starttls;	/* waiting for the handshake */
	bool			 tls;		/* handshake done */
	size_t			 maxline;
};

static const size_t caps[] = { 512, 600, 1024, 4096 };
static const size_t sasl_maxes[] = { 0, 16, 64, 255, 300, 1024, 8192,
	100000 };

static void bug(const char *) __attribute__((noreturn));

static void
bug(const char *what)
{
	fprintf(stderr, "fuzz_pop3: invariant broken: %s\n", what);
	abort();
}

static bool
prefix_ci(const uint8_t *s, size_t n, const char *kw)
{
	size_t i, k = strlen(kw);

	if (n < k)
		return false;
	for (i = 0; i < k; i++)
		if ((s[i] & ~0x20) != kw[i])
			return false;
	return n == k || s[k] == ' ' || s[k] == '\r';
}

static size_t
words(const uint8_t *s, size_t n)
{
	size_t i, k = n > 0;

	for (i = 0; i < n; i++)
		if (s[i] == ' ') {
			if (i == 0 || i + 1 == n || s[i + 1] == ' ')
				return 0;	/* empty word */
			k++;
		}
	return k;
}

/* command_syntax: a line with a space is a command; is it one popsd may
 * forward, with the arguments its syntax allows? n excludes CR. */
static void
command_syntax(const uint8_t *s, size_t n)
{
	const uint8_t *sp = memchr(s, ' ', n), *arg;
	size_t alen, i;

	if (sp == NULL)
		return;			/* a bare keyword or SASL data */
	arg = sp + 1;
	alen = n - (size_t)(arg - s);
	if (prefix_ci(s, n, "PASS"))
		return;			/* the rest is the password */
	if (prefix_ci(s, n, "USER") || prefix_ci(s, n, "LANG")) {
		if (words(arg, alen) != 1)
			bug("USER or LANG forwarded without one word");
		return;
	}
	if (prefix_ci(s, n, "AUTH")) {
		if (words(arg, alen) < 1 || words(arg, alen) > 2)
			bug("AUTH forwarded with extra words");
		return;
	}
	if (prefix_ci(s, n, "APOP")) {
		if (words(arg, alen) != 2 || alen < 34 || arg[alen - 33] != ' ')
			bug("APOP forwarded without name and digest");
		for (i = alen - 32; i < alen; i++)
			if (!isxdigit(arg[i]))
				bug("APOP digest not hex");
		return;
	}
	bug("argument after a command that takes none, or unknown command");
}

/* backend_line_done: checks on one complete line to the backend. */
static void
backend_line_done(struct run *r)
{
	struct wire *w = &r->wb;
	size_t n = w->linelen < sizeof(w->line) ? w->linelen : sizeof(w->line);

	if (w->linelen <= sizeof(w->line) && n > 0)
		command_syntax(w->line, n - 1);

	if (w->plaintext && (prefix_ci(w->line, n, "USER") ||
	    prefix_ci(w->line, n, "PASS") || prefix_ci(w->line, n, "APOP") ||
	    prefix_ci(w->line, n, "AUTH")))
		bug("login command sent to the backend in the clear");
	if (w->linelen + 1 > r->maxline)
		bug("line to the backend over its bound");
	w->linelen = 0;
}

static void
wire_byte(struct run *r, struct wire *w, uint8_t c, bool backend)
{
	w->hash = (w->hash ^ c) * 0x100000001b3ULL;
	w->len++;
	if (w->ntail == TAIL_MAX) {
		memmove(w->tail, w->tail + 1, TAIL_MAX - 1);
		w->ntail--;
	}
	w->tail[w->ntail++] = c;
	if (!backend)
		return;
	if (w->cr && c != '\n')
		bug("CR without LF to the backend");
	if (c == '\n') {
		if (!w->cr)
			bug("bare LF to the backend");
		w->cr = false;
		backend_line_done(r);
		return;
	}
	if (c == '\r') {
		w->cr = true;
		if (w->linelen < sizeof(w->line))
			w->line[w->linelen] = c;
		w->linelen++;
		return;
	}
	if (c < 0x20 || c == 0x7f)
		bug("control character to the backend");
	if (w->linelen < sizeof(w->line))
		w->line[w->linelen] = c;
	w->linelen++;
}

static void
drain(struct run *r, struct buf *b, struct wire *w, bool backend)
{
	const uint8_t *s;
	size_t n, i;

	if ((s = buf_rptr(b, &n)) == NULL)
		return;
	for (i = 0; i < n; i++)
		wire_byte(r, w, s[i], backend);
	buf_consume(b, n);
}

/* client_tail_is: the client stream so far ends with the text. */
static bool
client_tail_is(struct run *r, const char *text)
{
	size_t n = strlen(text);

	drain(r, &r->toc, &r->wc, false);
	return r->wc.ntail >= n &&
	    memcmp(r->wc.tail + r->wc.ntail - n, text, n) == 0;
}

static bool
client_last_line_ok(struct run *r)
{
	size_t i;

	drain(r, &r->toc, &r->wc, false);
	if (r->wc.ntail < 2 || r->wc.tail[r->wc.ntail - 1] != '\n')
		return false;
	for (i = r->wc.ntail - 1; i > 0 && r->wc.tail[i - 1] != '\n'; i--)
		;
	/* A line longer than the tail: cannot tell, trust the rest. */
	if (i == 0 && r->wc.len > r->wc.ntail)
		return true;
	return r->wc.ntail - i >= 4 && memcmp(r->wc.tail + i, "+OK", 3) == 0;
}

static void
note(struct run *r, int ev)
{
	if (ev & ~(POP3_EV_STARTTLS | POP3_EV_SPLICE | POP3_EV_CLOSE))
		bug("unknown event bit");
	if ((ev & POP3_EV_SPLICE) && (ev & POP3_EV_CLOSE))
		bug("SPLICE and CLOSE together");
	if (ev & POP3_EV_STARTTLS) {
		if (!r->pol.tls_offered || r->tls || r->pol.tls_active)
			bug("STARTTLS not on offer");
		if (!client_tail_is(r, STLS_OK))
			bug("STARTTLS without +OK last");
		/* The session discards what the client sent too early. */
		buf_consume(&r->cin, buf_len(&r->cin));
		r->starttls = true;
	}
	if (ev & POP3_EV_SPLICE) {
		if (r->wb.plaintext)
			bug("SPLICE while TLS is required and absent");
		if (!client_last_line_ok(r))
			bug("SPLICE without +OK last");
	}
	if (ev & POP3_EV_CLOSE) {
		if (pop3_close_reason(r->p) == NULL)
			bug("CLOSE without reason");
	}
	if ((ev & (POP3_EV_SPLICE | POP3_EV_CLOSE)) != 0)
		r->stopped = true;
	r->ev |= ev;
}

/* frozen: after a final event, or during the handshake, calls in must
 * change nothing. */
static void
check_frozen(struct run *r)
{
	size_t a = buf_len(&r->cin), b = buf_len(&r->bin);
	size_t c = buf_len(&r->tob), d = buf_len(&r->toc);

	if (pop3_backend_input(r->p, &r->bin, &r->toc) != 0 ||
	    (!r->stopped && pop3_client_input(r->p, &r->cin, &r->tob,
	    &r->toc) != 0))
		bug("events after the end");
	/* During the handshake unasked backend bytes may be dropped. */
	if (a != buf_len(&r->cin) || c != buf_len(&r->tob) ||
	    d != buf_len(&r->toc) || (b != buf_len(&r->bin) &&
	    !(r->starttls && buf_len(&r->bin) < b)))
		bug("buffers changed after the end");
}

static void
pump(struct run *r)
{
	size_t lens[4];
	int i, ev;

	for (i = 0; i < 1000; i++) {
		if (r->stopped || r->starttls) {
			check_frozen(r);
			return;
		}
		lens[0] = buf_len(&r->cin);
		lens[1] = buf_len(&r->bin);
		lens[2] = buf_len(&r->tob);
		lens[3] = buf_len(&r->toc);
		ev = pop3_backend_input(r->p, &r->bin, &r->toc);
		if (!(ev & (POP3_EV_SPLICE | POP3_EV_CLOSE)))
			ev |= pop3_client_input(r->p, &r->cin, &r->tob,
			    &r->toc);
		note(r, ev);
		if (ev == 0 && lens[0] == buf_len(&r->cin) &&
		    lens[1] == buf_len(&r->bin) &&
		    lens[2] == buf_len(&r->tob) &&
		    lens[3] == buf_len(&r->toc))
			return;
	}
	bug("mediator does not settle");
}

/* feed: as the session reads, appending while there is room; what does
 * not fit once the mediator is stuck is what the peer never got to send. */
static void
feed(struct run *r, struct buf *b, const uint8_t *s, size_t n, bool client)
{
	const uint8_t *lf;
	size_t chunk;

	while (n > 0) {
		if (client && r->starttls)
			return;		/* discarded by the session */
		chunk = r->mode == MODE_TRICKLE ? 1 : n;
		if (r->mode == MODE_LINES && !client &&
		    (lf = memchr(s, '\n', n)) != NULL)
			chunk = (size_t)(lf - s) + 1;
		if (chunk > buf_space(b))
			chunk = buf_space(b);
		if (chunk == 0)
			return;
		if (buf_append(b, s, chunk) != 0)
			return;		/* memory short */
		s += chunk;
		n -= chunk;
		pump(r);
	}
}

static void
tls_started(struct run *r)
{
	if (!r->starttls)
		return;
	/* Everything the mediator wrote so far was written in the clear. */
	drain(r, &r->tob, &r->wb, true);
	r->starttls = false;
	r->tls = true;
	r->wb.plaintext = false;
	pop3_tls_started(r->p);
	pump(r);
}

static void
step(struct run *r, uint8_t op, const uint8_t *s, size_t n)
{
	switch (op % 8) {
	case OP_CLIENT:
		feed(r, &r->cin, s, n, true);
		break;
	case OP_BACKEND:
		feed(r, &r->bin, s, n, false);
		break;
	case OP_DRAIN_CLIENT:
		drain(r, &r->toc, &r->wc, false);
		pump(r);
		break;
	case OP_DRAIN_BACKEND:
		drain(r, &r->tob, &r->wb, true);
		pump(r);
		break;
	case OP_TLS:
		tls_started(r);
		break;
	case OP_CLIENT_EOF:
		if (!r->stopped && !r->starttls)
			note(r, pop3_client_eof(r->p, &r->toc));
		pump(r);
		break;
	case OP_BACKEND_EOF:
		if (!r->stopped && !r->starttls)
			note(r, pop3_backend_eof(r->p, &r->toc));
		pump(r);
		break;
	case OP_DRAIN_BOTH:
		drain(r, &r->toc, &r->wc, false);
		drain(r, &r->tob, &r->wb, true);
		pump(r);
		break;
	}
}

/* The outcome of one run, compared between whole and trickle. */
struct result {
	uint64_t	hb, hc, hcin, hbin;
	size_t		lb, lc, lcin, lbin;
	int		ev, errors;
	char		user[80];
	const char	*reason;
};

static uint64_t
hash_buf(const struct buf *b, size_t *len)
{
	const uint8_t *s = buf_rptr(b, len);
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < *len; i++)
		h = (h ^ s[i]) * 0x100000001b3ULL;
	return h;
}

static void
play(const uint8_t *data, size_t size, const struct pop3_policy *pol,
    const size_t bufcaps[3], enum mode mode, struct result *res)
{
	struct run r;
	size_t i = 0, n;
	uint8_t op;

	memset(&r, 0, sizeof(r));
	r.pol = *pol;
	r.mode = mode;
	r.wb.hash = r.wc.hash = 0xcbf29ce484222325ULL;
	r.wb.plaintext = pol->require_tls && !pol->tls_active;
	r.maxline = pol->sasl_line_max > 255 ? pol->sasl_line_max : 255;
	if ((r.p = pop3_new(pol)) == NULL)
		return;
	buf_init(&r.cin, bufcaps[0]);
	buf_init(&r.bin, bufcaps[1]);
	buf_init(&r.tob, bufcaps[2]);
	buf_init(&r.toc, bufcaps[2]);
	while (i < size) {
		op = data[i++];
		n = 0;
		if (op % 8 == OP_CLIENT || op % 8 == OP_BACKEND) {
			n = i < size ? data[i++] : 0;
			if (n > size - i)
				n = size - i;
		}
		step(&r, op, data + i, n);
		i += n;
	}
	drain(&r, &r.toc, &r.wc, false);
	drain(&r, &r.tob, &r.wb, true);
	if (pop3_errors(r.p) < 0)
		bug("negative error count");

	res->hb = r.wb.hash;
	res->lb = r.wb.len;
	res->hc = r.wc.hash;
	res->lc = r.wc.len;
	res->hcin = hash_buf(&r.cin, &res->lcin);
	res->hbin = hash_buf(&r.bin, &res->lbin);
	res->ev = r.ev;
	res->errors = pop3_errors(r.p);
	snprintf(res->user, sizeof(res->user), "%s", pop3_user(r.p));
	res->reason = pop3_close_reason(r.p);

	pop3_free(r.p);
	buf_free(&r.cin);
	buf_free(&r.bin);
	buf_free(&r.tob);
	buf_free(&r.toc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_policy pol;
	struct result whole, trickle, raw;
	size_t bufcaps[3];

	if (size < 3)
		return 0;
	memset(&pol, 0, sizeof(pol));
	pol.tls_active = data[0] & 1;
	pol.tls_offered = data[0] & 2;
	pol.require_tls = data[0] & 4;
	pol.max_errors = 1 + (data[1] & 7);
	pol.sasl_line_max = sasl_maxes[(data[1] >> 3) & 7];
	bufcaps[0] = caps[data[2] & 3];
	bufcaps[1] = caps[(data[2] >> 2) & 3];
	bufcaps[2] = caps[(data[2] >> 4) & 3];

	memset(&whole, 0, sizeof(whole));
	memset(&trickle, 0, sizeof(trickle));
	play(data + 3, size - 3, &pol, bufcaps, MODE_LINES, &whole);
	play(data + 3, size - 3, &pol, bufcaps, MODE_TRICKLE, &trickle);
	play(data + 3, size - 3, &pol, bufcaps, MODE_RAW, &raw);
	if (whole.hb != trickle.hb || whole.lb != trickle.lb)
		bug("whole and trickle differ: to_backend");
	if (whole.hc != trickle.hc || whole.lc != trickle.lc)
		bug("whole and trickle differ: to_client");
	if (whole.ev != trickle.ev || whole.errors != trickle.errors)
		bug("whole and trickle differ: events or errors");
	/* After CLOSE the session throws cin and bin away; how much of an
	 * over-long line or of unasked backend bytes went before is a
	 * matter of read sizes. */
	if (whole.ev & POP3_EV_CLOSE)
		return 0;
	if (whole.hcin != trickle.hcin || whole.lcin != trickle.lcin)
		bug("whole and trickle differ: unconsumed client input");
	if (whole.hbin != trickle.hbin || whole.lbin != trickle.lbin)
		bug("whole and trickle differ: unconsumed backend input");
	if (strcmp(whole.user, trickle.user) != 0 ||
	    (whole.reason == NULL) != (trickle.reason == NULL) ||
	    (whole.reason && strcmp(whole.reason, trickle.reason) != 0))
		bug("whole and trickle differ: facts");
	return 0;
}
