/*
 * pop3.c — the authorization-phase mediator (see pop3.h).
 *
 * Two streams meet here. Client command lines are checked (RFC 2449 §4
 * length, characters) and sorted by keyword into "forward", "refuse" or
 * "answer ourselves"; each leaves one entry in a FIFO of expected
 * responses. Backend lines are read as the head of that FIFO says
 * (single line, multi-line, CAPA to rewrite, login outcome, SASL step).
 * popsd's own replies sit in the same FIFO, so they reach the client in
 * command order, never ahead of a backend answer to an earlier command.
 *
 * Allowed before login (RFC 1939, 2449, 2595, 5034, 6856): USER PASS APOP
 * AUTH CAPA QUIT STLS NOOP UTF8 LANG. NOOP is a TRANSACTION command, but
 * harmless: the backend's own "-ERR" tells the client so. Everything else
 * that is well formed gets popsd's "-ERR" and never reaches the backend.
 * An allowed command goes on only with the arguments its syntax allows
 * (args_ok: none after CAPA, say); anything else is a shield error.
 * Multi-line after "+OK": CAPA, AUTH without argument (the mechanism list
 * some servers give, e.g. Dovecot), LANG without argument (RFC 6856).
 * All else is one line.
 *
 * Bounds: a command line is 255 octets with CRLF (RFC 2449 §4), a SASL
 * response line policy->sasl_line_max; longer lines are dropped through
 * their LF as they arrive. A SASL line the backend must not see is
 * replaced by "*", which cancels the exchange (RFC 5034 §4). A backend
 * line that cannot fit the buffers closes the session; backend bytes
 * that answer nothing are dropped.
 */
#include "pop3.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "capa.h"
#include "log.h"

#define CMD_LINE_MAX	255	/* RFC 2449 §4: a command line, CRLF included */
#define RESPQ_MAX	32	/* outstanding responses before input stops */
#define USER_MAX	64	/* sanitized login name kept for the log */
#define SASL_DATA_MAX	767	/* RFC 4616: 3 fields of 255 octets, 2 NULs */

/* popsd's own replies. */
#define R_TLS_REQUIRED	"-ERR [AUTH] TLS required: use STLS first " \
			    "(or connect to port 995)\r\n"
#define R_TLS_REQUIRED_995 "-ERR [AUTH] TLS required: connect with TLS " \
			    "(port 995)\r\n"
#define R_TOO_LONG	"-ERR line too long\r\n"
#define R_BAD_CHAR	"-ERR invalid character in command\r\n"
#define R_EMPTY		"-ERR empty command\r\n"
#define R_NO_ARG	"-ERR syntax error: this command takes no argument\r\n"
#define R_BAD_ARGS	"-ERR syntax error in arguments\r\n"
#define R_UNKNOWN	"-ERR unknown command or not allowed before login\r\n"
#define R_STLS_ACTIVE	"-ERR command not permitted when TLS active\r\n"
#define R_STLS_LATE	"-ERR STLS not permitted after USER, PASS, APOP " \
			    "or AUTH\r\n"
#define R_STLS_NONE	"-ERR STLS not available\r\n"
#define R_STLS_OK	"+OK Begin TLS negotiation\r\n"
#define R_TOO_MANY	"-ERR too many errors, closing\r\n"
#define R_BACKEND	"-ERR [SYS/TEMP] backend error, closing\r\n"

enum pop3_state {
	ST_AUTHORIZATION,	/* parsing client commands */
	ST_LOGIN,		/* PASS/APOP forwarded: client input held */
	ST_SASL,		/* AUTH forwarded: client input held */
	ST_SASL_RESPONSE,	/* continuation relayed: next line is SASL data */
	ST_STARTTLS,		/* "+OK" to STLS written: client input held */
	ST_CLOSING,		/* last reply queued: client input held */
	ST_CLOSED,		/* POP3_EV_CLOSE returned */
	ST_SPLICE,		/* POP3_EV_SPLICE returned */
};

static const char *const state_names[] = {
	[ST_AUTHORIZATION] = "authorization",
	[ST_LOGIN] = "login",
	[ST_SASL] = "sasl",
	[ST_SASL_RESPONSE] = "sasl-response",
	[ST_STARTTLS] = "starttls",
	[ST_CLOSING] = "closing",
	[ST_CLOSED] = "closed",
	[ST_SPLICE] = "splice",
};

/* How to read the response to one command. */
enum resp_kind {
	RESP_GREETING,		/* the backend's first line, unchanged */
	RESP_SINGLE,		/* one line, unchanged */
	RESP_LIST,		/* multi-line after "+OK", unchanged */
	RESP_CAPA,		/* multi-line after "+OK", rewritten; or synthesized */
	RESP_LOGIN,		/* PASS/APOP: "+OK" ends the mediation */
	RESP_AUTH,		/* SASL continuations, then as RESP_LOGIN */
	RESP_LOCAL,		/* popsd's own reply, waiting for its turn */
	RESP_CLOSE,		/* popsd's last reply; then POP3_EV_CLOSE */
};

static const char *const resp_names[] = {
	[RESP_GREETING] = "greeting",
	[RESP_SINGLE] = "single",
	[RESP_LIST] = "list",
	[RESP_CAPA] = "capa",
	[RESP_LOGIN] = "login",
	[RESP_AUTH] = "auth",
	[RESP_LOCAL] = "local",
	[RESP_CLOSE] = "close",
};

struct resp {
	enum resp_kind	 kind;
	const char	*text;		/* RESP_LOCAL, RESP_CLOSE: static text */
};

enum sasl_mech {
	MECH_OTHER,		/* identity not looked for */
	MECH_PLAIN,		/* RFC 4616: authzid NUL authcid NUL passwd */
	MECH_LOGIN,		/* first response is the user name */
};

struct pop3 {
	struct pop3_policy	pol;
	enum pop3_state		state;

	struct resp		q[RESPQ_MAX];	/* ring of expected responses */
	size_t			qhead;
	size_t			qlen;
	bool			in_body;	/* head is inside a multi-line body */
	struct capa_filter	capa;		/* head is RESP_CAPA in its body */

	bool			skipping;	/* dropping an over-long line to LF */
	bool			bskipping;	/* dropping an unasked backend line */
	bool			auth_forwarded;	/* credentials went to the backend */
	bool			auth_refused;
	bool			stls_used;
	enum sasl_mech		mech;
	bool			sasl_name_next;	/* next SASL data carries the name */
	bool			failure_counts;	/* a "-ERR" to the pending PASS,
						 * APOP or AUTH is a failed login */
	int			errors;
	int			login_failures;	/* of errors: backend -ERR */
	int			shield_rejections; /* of errors: malformed */
	const char		*close_reason;
	char			user[USER_MAX];
};

/* A complete client line in cin. */
struct line {
	const uint8_t	*s;
	size_t		 len;		/* content, without CR LF or LF */
	size_t		 n;		/* bytes to consume, line ending included */
};

enum line_status {
	LINE_NONE,		/* no complete line yet */
	LINE_OK,		/* a complete line within the bound */
	LINE_LONG,		/* over the bound; .n bytes are its start or all */
};

/* ---- state and response queue ---- */

static void
set_state(struct pop3 *p, enum pop3_state st)
{
	if (p->state != st)
		log_debug("pop3: %s -> %s", state_names[p->state],
		    state_names[st]);
	p->state = st;
}

static struct resp *
head(struct pop3 *p)
{
	return p->qlen ? &p->q[p->qhead] : NULL;
}

/* enqueue: callers have checked for a free slot (client_step). */
static void
enqueue(struct pop3 *p, enum resp_kind kind, const char *text)
{
	struct resp *r = &p->q[(p->qhead + p->qlen) % RESPQ_MAX];

	r->kind = kind;
	r->text = text;
	p->qlen++;
	log_debug("pop3: expect %s (%zu queued)", resp_names[kind], p->qlen);
}

static void
dequeue(struct pop3 *p)
{
	p->qhead = (p->qhead + 1) % RESPQ_MAX;
	p->qlen--;
	p->in_body = false;
}

/* auth_over: a login attempt failed; parse commands again (unless the
 * session is already closing). */
static void
auth_over(struct pop3 *p)
{
	if (p->state == ST_LOGIN || p->state == ST_SASL ||
	    p->state == ST_SASL_RESPONSE)
		set_state(p, ST_AUTHORIZATION);
}

/* flush_local: append popsd's replies that have reached the head. */
static int
flush_local(struct pop3 *p, struct buf *to_client)
{
	struct resp *r;
	enum resp_kind kind;

	if (p->state == ST_CLOSED || p->state == ST_SPLICE ||
	    p->state == ST_STARTTLS)
		return 0;
	while ((r = head(p)) != NULL &&
	    (r->kind == RESP_LOCAL || r->kind == RESP_CLOSE)) {
		if (buf_append(to_client, r->text, strlen(r->text)) == -1)
			return 0;	/* again when to_client drains */
		kind = r->kind;
		dequeue(p);
		if (kind == RESP_CLOSE) {
			set_state(p, ST_CLOSED);
			return POP3_EV_CLOSE;
		}
	}
	return 0;
}

/* ---- small parsers ---- */

static int
ascii_upper(int c)
{
	return (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
}

/* is_status: does the response line start with the status indicator
 * (case-sensitive, RFC 1939 §3) followed by a space or the line end? */
static bool
is_status(const uint8_t *s, size_t n, const char *ind)
{
	size_t k = strlen(ind);

	return n > k && memcmp(s, ind, k) == 0 &&
	    (s[k] == ' ' || s[k] == '\r' || s[k] == '\n');
}

/* is_continuation: "+ " or a bare "+" (RFC 5034 §4). */
static bool
is_continuation(const uint8_t *s, size_t n)
{
	return n >= 2 && s[0] == '+' &&
	    (s[1] == ' ' || s[1] == '\r' || s[1] == '\n');
}

/* content_len: the line without its LF and an optional CR before it. */
static size_t
content_len(const uint8_t *s, size_t n)
{
	if (n > 0 && s[n - 1] == '\n')
		n--;
	if (n > 0 && s[n - 1] == '\r')
		n--;
	return n;
}

static bool
is_terminator(const uint8_t *s, size_t n)
{
	return content_len(s, n) == 1 && s[0] == '.';
}

/* ---- facts for the log ---- */

static void
record_user(struct pop3 *p, const void *name, size_t len)
{
	log_sanitize(p->user, sizeof(p->user), name, len);
}

/* plain_authcid: the authentication identity of a well-formed RFC 4616
 * message, authzid NUL authcid NUL passwd with exactly two NULs and a
 * non-empty authcid and password; NULL otherwise. With one NUL only, what
 * follows it is the password: it must never pose as the name. */
static const uint8_t *
plain_authcid(const uint8_t *msg, size_t n, size_t *len)
{
	const uint8_t *id, *pw, *end = msg + n;

	if ((id = memchr(msg, '\0', n)) == NULL)
		return NULL;
	id++;
	if ((pw = memchr(id, '\0', (size_t)(end - id))) == NULL)
		return NULL;
	pw++;
	if (pw == id + 1 || pw == end ||
	    memchr(pw, '\0', (size_t)(end - pw)) != NULL)
		return NULL;
	*len = (size_t)(pw - 1 - id);
	return id;
}

/*
 * record_sasl_name: take the login identity out of the first data of a
 * PLAIN or LOGIN exchange (the initial response or the first client
 * response), and only from there: the first data decides, whatever it
 * holds. Empty ("=" or an empty line), malformed base64, a PLAIN message
 * that is not authzid NUL authcid NUL passwd: no name. A later response
 * is never looked at (with LOGIN it is the password). The decoded data
 * may hold the password: wipe it.
 */
static void
record_sasl_name(struct pop3 *p, const uint8_t *b64, size_t len)
{
	uint8_t dec[SASL_DATA_MAX];
	const uint8_t *name = dec;
	size_t n;

	if (!p->sasl_name_next)
		return;
	p->sasl_name_next = false;
	if (p->mech == MECH_OTHER ||
	    !base64_decode(b64, len, dec, sizeof(dec), &n))
		goto done;
	if (p->mech == MECH_PLAIN && (name = plain_authcid(dec, n, &n)) == NULL)
		goto done;
	if (n > 0)
		record_user(p, name, n);
done:
	explicit_bzero(dec, sizeof(dec));
}

/* ---- client side ---- */

/* line_limit: the bound for the next client line, CRLF included. A line
 * must also fit to_backend whole, or it could never be forwarded. */
static size_t
line_limit(const struct pop3 *p, const struct buf *to_backend)
{
	size_t limit = CMD_LINE_MAX;

	if (p->state == ST_SASL_RESPONSE && p->pol.sasl_line_max > 0)
		limit = p->pol.sasl_line_max;
	return limit < to_backend->cap ? limit : to_backend->cap;
}

/* next_line: find the next client line. A line without LF is already
 * known to be too long once it holds limit bytes (even its last byte
 * being CR, the content plus CRLF would pass limit) or fills cin. */
static enum line_status
next_line(const struct buf *cin, size_t limit, struct line *l)
{
	size_t avail;
	long lf;

	if ((l->s = buf_rptr(cin, &avail)) == NULL)
		return LINE_NONE;
	if ((lf = buf_find_lf(cin)) < 0) {
		l->n = l->len = avail;
		return (avail >= limit || buf_full(cin)) ? LINE_LONG :
		    LINE_NONE;
	}
	l->n = (size_t)lf + 1;
	l->len = content_len(l->s, l->n);
	return l->len + 2 > limit ? LINE_LONG : LINE_OK;
}

/*
 * count_error: one more malformed line or failed login (max-auth-errors);
 * the last one allowed queues the closing reply, after the answers to
 * earlier commands. Otherwise reply (if any) is queued.
 */
static void
count_error(struct pop3 *p, const char *reply, const char *what)
{
	log_debug("pop3: error %d (%s)", p->errors + 1, what);
	if (p->state == ST_CLOSING || p->state == ST_CLOSED)
		return;
	if (++p->errors >= p->pol.max_errors) {
		p->close_reason = "too-many-errors";
		enqueue(p, RESP_CLOSE, R_TOO_MANY);
		set_state(p, ST_CLOSING);
	} else if (reply != NULL)
		enqueue(p, RESP_LOCAL, reply);
}

/* shield_error: count a malformed line; the last one allowed closes. */
static void
shield_error(struct pop3 *p, const char *reply)
{
	p->shield_rejections++;
	count_error(p, reply, reply != NULL ? "command" : "sasl response");
}

/* forward: send the line content to the backend with CRLF, all or
 * nothing. */
static bool
forward(const struct line *l, struct buf *to_backend)
{
	if (buf_space(to_backend) < l->len + 2)
		return false;
	/* Room is checked, so only a first write into an empty buffer can
	 * fail (no memory), and then nothing has been written: the CRLF
	 * append writes into memory the buffer already holds. */
	if (buf_append(to_backend, l->s, l->len) == -1 ||
	    buf_append(to_backend, "\r\n", 2) == -1)
		return false;
	return true;
}

/* bad_chars: a control character or DEL anywhere in the content. */
static bool
bad_chars(const struct line *l)
{
	size_t i;

	for (i = 0; i < l->len; i++)
		if (l->s[i] < 0x20 || l->s[i] == 0x7f)
			return true;
	return false;
}

/* sasl_chars: "*" (cancel) or base64 text, possibly empty (RFC 5034 §4). */
static bool
sasl_chars(const struct line *l)
{
	size_t i;

	if (l->len == 1 && l->s[0] == '*')
		return true;
	for (i = 0; i < l->len; i++)
		if (base64_value(l->s[i]) < 0 && l->s[i] != '=')
			return false;
	return true;
}

/*
 * What each command allowed here may carry (RFC 1939 §3: keyword and
 * arguments separated by single spaces; RFC 2449 §4 relaxes only the
 * length). Only what this allows reaches the backend: a legacy daemon
 * that splits long lines must never find a second command in the tail of
 * one that takes no argument ("CAPA <200 spaces>PASS guess").
 */
enum args {
	ARGS_NONE,		/* CAPA QUIT STLS NOOP UTF8 */
	ARGS_WORD,		/* USER name */
	ARGS_OPT_WORD,		/* LANG [lang-or-wild] (RFC 6856 §3) */
	ARGS_STRING,		/* PASS string: the rest, spaces too */
	ARGS_APOP,		/* APOP name digest (32 hex digits) */
	ARGS_AUTH,		/* AUTH [mechanism [initial-response]] */
};

enum cmd {
	CMD_USER, CMD_PASS, CMD_APOP, CMD_AUTH, CMD_CAPA, CMD_QUIT, CMD_STLS,
	CMD_NOOP, CMD_UTF8, CMD_LANG, CMD_UNKNOWN,
};

static const struct {
	const char	*name;
	enum args	 args;
} cmds[] = {
	[CMD_USER] = { "USER", ARGS_WORD },
	[CMD_PASS] = { "PASS", ARGS_STRING },
	[CMD_APOP] = { "APOP", ARGS_APOP },
	[CMD_AUTH] = { "AUTH", ARGS_AUTH },
	[CMD_CAPA] = { "CAPA", ARGS_NONE },
	[CMD_QUIT] = { "QUIT", ARGS_NONE },
	[CMD_STLS] = { "STLS", ARGS_NONE },
	[CMD_NOOP] = { "NOOP", ARGS_NONE },
	[CMD_UTF8] = { "UTF8", ARGS_NONE },
	[CMD_LANG] = { "LANG", ARGS_OPT_WORD },
};

/* A parsed command line: keyword and what follows its first space. */
struct cmdline {
	enum cmd	 cmd;
	const uint8_t	*arg;
	size_t		 arglen;	/* 0: no argument */
	bool		 sp;		/* a space after the keyword */
};

/* word_is: s is the upper-case word, in any case (ASCII: toupper()
 * would follow the locale). */
static bool
word_is(const uint8_t *s, size_t len, const char *word)
{
	size_t i;

	if (len != strlen(word))
		return false;
	for (i = 0; i < len; i++)
		if (ascii_upper(s[i]) != word[i])
			return false;
	return true;
}

/*
 * parse_command: find the keyword. Trailing spaces are tolerated and cut
 * off (the line forwarded is l without them), except after PASS, where
 * they may belong to the password.
 */
static void
parse_command(struct line *l, struct cmdline *c)
{
	const uint8_t *sp = memchr(l->s, ' ', l->len);
	size_t kwlen = sp ? (size_t)(sp - l->s) : l->len;
	int k;

	for (k = 0; k < CMD_UNKNOWN; k++)
		if (word_is(l->s, kwlen, cmds[k].name))
			break;
	c->cmd = (enum cmd)k;
	if (c->cmd != CMD_PASS)
		while (l->len > kwlen && l->s[l->len - 1] == ' ')
			l->len--;
	c->sp = l->len > kwlen;
	c->arg = c->sp ? l->s + kwlen + 1 : l->s + l->len;
	c->arglen = c->sp ? l->len - kwlen - 1 : 0;
}

/* span: the length of s's leading run of bytes for which ok() holds. */
static size_t
span(const uint8_t *s, size_t len, bool (*ok)(uint8_t))
{
	size_t i;

	for (i = 0; i < len && ok(s[i]); i++)
		;
	return i;
}

static bool
not_space(uint8_t c)
{
	return c != ' ';
}

static bool
is_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/* RFC 4422 §3.1 names mechanisms in upper case; clients vary. */
static bool
is_mech_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static bool
is_b64_char(uint8_t c)
{
	return base64_value(c) >= 0 || c == '=';
}

/* first_word: length of the argument up to its first space. */
static size_t
first_word(const struct cmdline *c)
{
	return span(c->arg, c->arglen, not_space);
}

/* is_word: exactly n bytes of s, at least one, all ok(). */
static bool
is_word(const uint8_t *s, size_t n, bool (*ok)(uint8_t))
{
	return n > 0 && span(s, n, ok) == n;
}

/*
 * args_ok: does the argument fit the command's syntax? "AUTH" alone is
 * not in RFC 5034 but asks many servers for their mechanisms (Dovecot,
 * Exchange, and clients such as Thunderbird send it); the initial
 * response is base64 or "=" (RFC 5034 §4), the mechanism 1 to 20
 * characters (RFC 4422 §3.1).
 */
static bool
args_ok(const struct cmdline *c)
{
	size_t w = first_word(c);
	const uint8_t *rest = c->arg + w + 1;
	size_t nrest = w < c->arglen ? c->arglen - w - 1 : 0;

	switch (cmds[c->cmd].args) {
	case ARGS_NONE:
		return !c->sp;
	case ARGS_WORD:
		return c->sp && is_word(c->arg, c->arglen, not_space);
	case ARGS_OPT_WORD:
		return !c->sp || is_word(c->arg, c->arglen, not_space);
	case ARGS_STRING:
		return c->arglen > 0;
	case ARGS_APOP:
		return w > 0 && w < c->arglen && nrest == 32 &&
		    is_word(rest, nrest, is_hex);
	case ARGS_AUTH:
		if (!c->sp)
			return true;
		if (w > 20 || !is_word(c->arg, w, is_mech_char))
			return false;
		return w == c->arglen || is_word(rest, nrest, is_b64_char);
	}
	return false;
}

/* login_refused: true (and the refusal queued) when credentials may not
 * travel here: they must never reach the backend in the clear. */
static bool
login_refused(struct pop3 *p)
{
	if (!p->pol.require_tls || p->pol.tls_active)
		return false;
	p->auth_refused = true;
	enqueue(p, RESP_LOCAL, p->pol.tls_offered ? R_TLS_REQUIRED :
	    R_TLS_REQUIRED_995);
	return true;
}

static bool
cmd_user(struct pop3 *p, const struct line *l, const struct cmdline *c,
    struct buf *to_backend)
{
	/* The name alone is no secret: keep it for the log either way. */
	if (login_refused(p)) {
		record_user(p, c->arg, c->arglen);
		return true;
	}
	if (!forward(l, to_backend))
		return false;
	record_user(p, c->arg, c->arglen);
	p->auth_forwarded = true;
	enqueue(p, RESP_SINGLE, NULL);
	return true;
}

/* cmd_login: PASS or APOP; hold client input until the outcome. */
static bool
cmd_login(struct pop3 *p, const struct line *l, const struct cmdline *c,
    struct buf *to_backend)
{
	if (c->cmd == CMD_APOP)
		record_user(p, c->arg, first_word(c));
	if (login_refused(p))
		return true;
	if (!forward(l, to_backend))
		return false;
	p->auth_forwarded = true;
	p->failure_counts = true;
	enqueue(p, RESP_LOGIN, NULL);
	set_state(p, ST_LOGIN);
	return true;
}

static enum sasl_mech
sasl_mech(const uint8_t *s, size_t len)
{
	if (word_is(s, len, "PLAIN"))
		return MECH_PLAIN;
	if (word_is(s, len, "LOGIN"))
		return MECH_LOGIN;
	return MECH_OTHER;
}

/*
 * cmd_auth: "AUTH" alone lists mechanisms (multi-line); "AUTH mech [ir]"
 * starts a SASL exchange and holds client input until its outcome. Under
 * require-tls both are refused: the list would only invite a refused
 * login, and CAPA hides SASL there too. A "-ERR" before the client sent
 * any SASL data refused the mechanism, not credentials: no failed login.
 */
static bool
cmd_auth(struct pop3 *p, const struct line *l, const struct cmdline *c,
    struct buf *to_backend)
{
	size_t mlen = first_word(c);

	if (login_refused(p))
		return true;
	if (!forward(l, to_backend))
		return false;
	if (c->arglen == 0) {
		enqueue(p, RESP_LIST, NULL);
		return true;
	}
	p->auth_forwarded = true;
	p->mech = sasl_mech(c->arg, mlen);
	p->sasl_name_next = true;
	p->failure_counts = mlen < c->arglen;
	if (mlen < c->arglen)		/* initial response (RFC 5034 §4) */
		record_sasl_name(p, c->arg + mlen + 1, c->arglen - mlen - 1);
	enqueue(p, RESP_AUTH, NULL);
	set_state(p, ST_SASL);
	return true;
}

/* stls_refusal: why STLS cannot start now (RFC 2595 §4), or NULL. After
 * USER/PASS/APOP/AUTH reached the backend its state predates TLS and
 * cannot be reset from here, so TLS could not protect that login. */
static const char *
stls_refusal(const struct pop3 *p)
{
	if (p->pol.tls_active)
		return R_STLS_ACTIVE;
	if (p->auth_forwarded)
		return R_STLS_LATE;
	if (!p->pol.tls_offered)
		return R_STLS_NONE;
	return NULL;
}

static bool
cmd_stls(struct pop3 *p, struct buf *to_client, int *ev)
{
	const char *refusal;

	if ((refusal = stls_refusal(p)) != NULL) {
		enqueue(p, RESP_LOCAL, refusal);
		return true;
	}
	/* "+OK" must end to_client: every earlier response goes first. */
	if (p->qlen > 0)
		return false;
	if (buf_append(to_client, R_STLS_OK, strlen(R_STLS_OK)) == -1)
		return false;
	set_state(p, ST_STARTTLS);
	*ev |= POP3_EV_STARTTLS;
	return true;
}

/* cmd_plain: forward a command whose response needs no interpretation. */
static bool
cmd_plain(struct pop3 *p, const struct line *l, enum resp_kind kind,
    struct buf *to_backend)
{
	if (!forward(l, to_backend))
		return false;
	enqueue(p, kind, NULL);
	return true;
}

/* command: act on one complete, well-bounded command line; false to
 * leave it in cin for a later call. */
static bool
command(struct pop3 *p, const struct line *raw, struct buf *to_backend,
    struct buf *to_client, int *ev)
{
	struct line l = *raw;
	struct cmdline c;

	if (l.len == 0) {
		shield_error(p, R_EMPTY);
		return true;
	}
	if (bad_chars(&l)) {
		shield_error(p, R_BAD_CHAR);
		return true;
	}
	parse_command(&l, &c);
	if (c.cmd == CMD_UNKNOWN) {
		/* Well formed, just not for this state: no shield error. */
		enqueue(p, RESP_LOCAL, R_UNKNOWN);
		return true;
	}
	if (!args_ok(&c)) {
		shield_error(p, cmds[c.cmd].args == ARGS_NONE ? R_NO_ARG :
		    R_BAD_ARGS);
		return true;
	}
	switch (c.cmd) {
	case CMD_USER:
		return cmd_user(p, &l, &c, to_backend);
	case CMD_PASS:
	case CMD_APOP:
		return cmd_login(p, &l, &c, to_backend);
	case CMD_AUTH:
		return cmd_auth(p, &l, &c, to_backend);
	case CMD_CAPA:
		return cmd_plain(p, &l, RESP_CAPA, to_backend);
	case CMD_LANG:
		return cmd_plain(p, &l, c.arglen ? RESP_SINGLE : RESP_LIST,
		    to_backend);
	case CMD_QUIT:
	case CMD_NOOP:
	case CMD_UTF8:
		return cmd_plain(p, &l, RESP_SINGLE, to_backend);
	case CMD_STLS:
		return cmd_stls(p, to_client, ev);
	case CMD_UNKNOWN:
		break;
	}
	return true;
}

/* sasl_cancel: replace a client response the backend must not see by the
 * "*" that cancels the exchange (RFC 5034 §4). The backend's "-ERR" is
 * then the client's one answer to its AUTH: a reply of popsd's own as
 * well would put client and server out of step. The refusal is this
 * exchange's one error: that "-ERR" does not count again. */
static bool
sasl_cancel(struct pop3 *p, struct buf *to_backend)
{
	if (buf_append(to_backend, "*\r\n", 3) == -1)
		return false;
	set_state(p, ST_SASL);
	p->sasl_name_next = false;
	p->failure_counts = false;
	shield_error(p, NULL);
	return true;
}

/* sasl_response: relay one client line of a SASL exchange, raw. */
static bool
sasl_response(struct pop3 *p, const struct line *l, struct buf *to_backend)
{
	if (!sasl_chars(l))
		return sasl_cancel(p, to_backend);
	if (!forward(l, to_backend))
		return false;
	if (l->len == 1 && l->s[0] == '*') {
		/* The client's own cancel: no failed login (RFC 5034 §4). */
		p->sasl_name_next = false;
		p->failure_counts = false;
	} else {
		record_sasl_name(p, l->s, l->len);
		p->failure_counts = true;
	}
	set_state(p, ST_SASL);
	return true;
}

/* too_long: a line over the bound is dropped (the rest of it up to LF
 * as it arrives) and counted. */
static bool
too_long(struct pop3 *p, const struct line *l, struct buf *cin,
    struct buf *to_backend)
{
	if (p->state == ST_SASL_RESPONSE) {
		if (!sasl_cancel(p, to_backend))
			return false;
	} else
		shield_error(p, R_TOO_LONG);
	p->skipping = l->s[l->n - 1] != '\n';
	buf_consume(cin, l->n);
	return true;
}

/* skip_line: drop the rest of an over-long line, through its LF. */
static bool
skip_line(struct pop3 *p, struct buf *cin)
{
	long lf = buf_find_lf(cin);

	if (buf_empty(cin))
		return false;
	if (lf >= 0)
		p->skipping = false;
	buf_consume(cin, lf >= 0 ? (size_t)lf + 1 : buf_len(cin));
	return true;
}

/* client_step: act on at most one client line; false when nothing more
 * can be done now. */
static bool
client_step(struct pop3 *p, struct buf *cin, struct buf *to_backend,
    struct buf *to_client, int *ev)
{
	struct line l;
	bool done;

	switch (p->state) {
	case ST_AUTHORIZATION:
	case ST_SASL_RESPONSE:
		break;
	case ST_LOGIN:
	case ST_SASL:
	case ST_CLOSING:
		/* Held, but the tail of a dropped line may still go. */
		return p->skipping && skip_line(p, cin);
	default:
		return false;
	}
	if (p->skipping)
		return skip_line(p, cin);
	if (p->qlen == RESPQ_MAX)
		return false;
	switch (next_line(cin, line_limit(p, to_backend), &l)) {
	case LINE_NONE:
		return false;
	case LINE_LONG:
		return too_long(p, &l, cin, to_backend);
	case LINE_OK:
		break;
	}
	if (p->state == ST_SASL_RESPONSE)
		done = sasl_response(p, &l, to_backend);
	else
		done = command(p, &l, to_backend, to_client, ev);
	if (done)
		buf_consume(cin, l.n);
	return done;
}

int
pop3_client_input(struct pop3 *p, struct buf *cin, struct buf *to_backend,
    struct buf *to_client)
{
	int ev;

	ev = flush_local(p, to_client);
	while (ev == 0 && client_step(p, cin, to_backend, to_client, &ev))
		ev |= flush_local(p, to_client);
	return ev;
}

/* ---- backend side ---- */

enum bres {
	B_DONE,			/* line used; consume it */
	B_WAIT,			/* no room in to_client: again later */
};

/* relay: append the line unchanged. */
static enum bres
relay(struct buf *to_client, const uint8_t *s, size_t n)
{
	return buf_append(to_client, s, n) == 0 ? B_DONE : B_WAIT;
}

/* login_ok: the backend accepted the login; go raw right after this
 * line. A session already closing for errors closes instead. */
static void
login_ok(struct pop3 *p, int *ev)
{
	dequeue(p);
	if (p->state == ST_CLOSING)
		return;
	set_state(p, ST_SPLICE);
	*ev |= POP3_EV_SPLICE;
}

static enum bres
login_line(struct pop3 *p, const uint8_t *s, size_t n, struct buf *to_client,
    int *ev)
{
	if (relay(to_client, s, n) == B_WAIT)
		return B_WAIT;
	if (is_status(s, n, "+OK"))
		login_ok(p, ev);
	else {
		/* A failed login counts too: one connection must not be a
		 * free password-guessing channel to the legacy daemon. Once
		 * per exchange, and not for an exchange without credentials
		 * or one the client cancelled (failure_counts). */
		dequeue(p);
		auth_over(p);
		if (p->failure_counts) {
			p->login_failures++;
			count_error(p, NULL, "failed login");
		}
		p->failure_counts = false;
	}
	return B_DONE;
}

static enum bres
auth_line(struct pop3 *p, const uint8_t *s, size_t n, struct buf *to_client,
    int *ev)
{
	if (!is_continuation(s, n))	/* "+OK" or "-ERR": the outcome */
		return login_line(p, s, n, to_client, ev);
	if (relay(to_client, s, n) == B_WAIT)
		return B_WAIT;
	if (p->state == ST_SASL)
		set_state(p, ST_SASL_RESPONSE);
	return B_DONE;
}

/* list_line: a response that is multi-line after "+OK", kept as is. */
static enum bres
list_line(struct pop3 *p, const uint8_t *s, size_t n, struct buf *to_client)
{
	if (relay(to_client, s, n) == B_WAIT)
		return B_WAIT;
	if (p->in_body ? is_terminator(s, n) : !is_status(s, n, "+OK"))
		dequeue(p);
	else
		p->in_body = true;
	return B_DONE;
}

static void
capa_policy_now(const struct pop3 *p, struct capa_policy *cp)
{
	cp->offer_stls = p->pol.tls_offered && !p->pol.tls_active;
	cp->hide_login = p->pol.require_tls && !p->pol.tls_active;
}

/* capa_status: "+OK" starts a list to filter; anything else is a backend
 * without CAPA (RFC 1939 only), whose answer popsd replaces with its own. */
static enum bres
capa_status(struct pop3 *p, const uint8_t *s, size_t n, struct buf *to_client)
{
	struct capa_policy cp;
	char out[CAPA_SYNTH_MAX];
	size_t len;

	capa_policy_now(p, &cp);
	if (is_status(s, n, "+OK")) {
		if (relay(to_client, s, n) == B_WAIT)
			return B_WAIT;
		capa_begin(&p->capa, &cp);
		p->in_body = true;
		return B_DONE;
	}
	len = capa_synth(&cp, out, sizeof(out));
	if (buf_append(to_client, out, len) == -1)
		return B_WAIT;
	dequeue(p);
	return B_DONE;
}

/* capa_body: one line of a CAPA list; normalized to CRLF, since popsd's
 * own lines are CRLF and one answer should not mix line endings. */
static enum bres
capa_body(struct pop3 *p, const uint8_t *s, size_t n, struct buf *to_client)
{
	char out[CAPA_TRAILER_MAX];
	size_t len = content_len(s, n);

	if (is_terminator(s, n)) {
		len = capa_trailer(&p->capa, out, sizeof(out));
		if (buf_append(to_client, out, len) == -1)
			return B_WAIT;
		dequeue(p);
		return B_DONE;
	}
	if (!capa_keep(&p->capa, (const char *)s, len))
		return B_DONE;
	if (buf_space(to_client) < len + 2 ||
	    buf_append(to_client, s, len) == -1 ||
	    buf_append(to_client, "\r\n", 2) == -1)
		return B_WAIT;
	return B_DONE;
}

/*
 * bad_greeting: the backend's first line is not a POP3 status (a TLS
 * server, an HTTP server, a crashed daemon's noise on the port): the
 * client gets popsd's own "-ERR [SYS/TEMP]", never those bytes.
 */
static enum bres
bad_greeting(struct pop3 *p, struct buf *to_client, int *ev)
{
	log_debug("pop3: backend greeting is not +OK or -ERR");
	(void)buf_append(to_client, R_BACKEND, strlen(R_BACKEND));
	p->close_reason = "backend-bad-greeting";
	set_state(p, ST_CLOSED);
	*ev |= POP3_EV_CLOSE;
	return B_DONE;
}

/* backend_line: use one complete backend line as the head response says. */
static enum bres
backend_line(struct pop3 *p, const uint8_t *s, size_t n,
    struct buf *to_client, int *ev)
{
	struct resp *r = head(p);
	enum bres res;

	switch (r->kind) {
	case RESP_GREETING:
		if (!is_status(s, n, "+OK") && !is_status(s, n, "-ERR"))
			return bad_greeting(p, to_client, ev);
		/* FALLTHROUGH */
	case RESP_SINGLE:
		if ((res = relay(to_client, s, n)) == B_DONE)
			dequeue(p);
		return res;
	case RESP_LIST:
		return list_line(p, s, n, to_client);
	case RESP_CAPA:
		return p->in_body ? capa_body(p, s, n, to_client) :
		    capa_status(p, s, n, to_client);
	case RESP_LOGIN:
		return login_line(p, s, n, to_client, ev);
	case RESP_AUTH:
		return auth_line(p, s, n, to_client, ev);
	case RESP_LOCAL:
	case RESP_CLOSE:
		break;		/* backend_step does not get here */
	}
	return B_WAIT;
}

/*
 * backend_overflow: a backend line that can never be handled whole (no LF
 * within bin's capacity, or larger than to_client). RFC 2449 §4 bounds
 * responses to 512 octets and nothing in this phase comes near a sane
 * buffer, so this is a broken or hostile backend: close rather than relay
 * a fragment and lose track of line boundaries. Say so unless that would
 * land inside a multi-line answer.
 */
static int
backend_overflow(struct pop3 *p, struct buf *to_client)
{
	log_debug("pop3: backend line exceeds the buffers");
	if (!p->in_body)
		(void)buf_append(to_client, R_BACKEND, strlen(R_BACKEND));
	p->close_reason = "backend-line-too-long";
	set_state(p, ST_CLOSED);
	return POP3_EV_CLOSE;
}

/*
 * drop_unasked: backend bytes while no response is outstanding (a stray
 * "-ERR autologout" before a close, or junk) are dropped, not relayed:
 * where they would land in the client's stream would depend on read
 * timing (before or after "+OK Begin TLS negotiation", say), and no answer
 * of ours may be mistaken for them. A partial line is dropped through its
 * LF, even once a response is due, so its tail cannot pose as one.
 */
static bool
drop_unasked(struct pop3 *p, struct buf *bin)
{
	const uint8_t *s;
	size_t n;
	long lf;

	if ((s = buf_rptr(bin, &n)) == NULL)
		return false;
	if (p->qlen > 0) {		/* only the tail of a stray line */
		if ((lf = buf_find_lf(bin)) >= 0)
			n = (size_t)lf + 1;
	}
	p->bskipping = s[n - 1] != '\n';
	log_debug("pop3: dropped %zu unasked backend bytes", n);
	buf_consume(bin, n);
	return true;
}

/* backend_step: act on at most one backend line; false when nothing more
 * can be done now. */
static bool
backend_step(struct pop3 *p, struct buf *bin, struct buf *to_client, int *ev)
{
	const uint8_t *s;
	size_t avail;
	long lf;

	if (p->state == ST_CLOSED || p->state == ST_SPLICE)
		return false;
	if (p->qlen == 0 || p->bskipping)	/* always so in ST_STARTTLS */
		return drop_unasked(p, bin);
	/* A reply of ours still waits for room: it goes first. */
	if (head(p)->kind == RESP_LOCAL || head(p)->kind == RESP_CLOSE)
		return false;
	if ((lf = buf_find_lf(bin)) < 0) {
		if (buf_full(bin))
			*ev |= backend_overflow(p, to_client);
		return false;
	}
	s = buf_rptr(bin, &avail);
	switch (backend_line(p, s, (size_t)lf + 1, to_client, ev)) {
	case B_DONE:
		buf_consume(bin, (size_t)lf + 1);
		return true;
	case B_WAIT:
		/* Waiting for room that an empty buffer cannot give. */
		if (buf_empty(to_client))
			*ev |= backend_overflow(p, to_client);
		break;
	}
	return false;
}

int
pop3_backend_input(struct pop3 *p, struct buf *bin, struct buf *to_client)
{
	int ev;

	ev = flush_local(p, to_client);
	while (ev == 0 && backend_step(p, bin, to_client, &ev))
		ev |= flush_local(p, to_client);
	return ev;
}

/* ---- life cycle and facts ---- */

struct pop3 *
pop3_new(const struct pop3_policy *policy)
{
	struct pop3 *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->pol = *policy;
	p->state = ST_AUTHORIZATION;
	enqueue(p, RESP_GREETING, NULL);
	return p;
}

void
pop3_free(struct pop3 *p)
{
	free(p);
}

int
pop3_client_eof(struct pop3 *p, struct buf *to_client)
{
	return flush_local(p, to_client);
}

int
pop3_backend_eof(struct pop3 *p, struct buf *to_client)
{
	struct resp *r;

	/* Inside a multi-line answer a reply of ours would read as a line
	 * of it: leave the client to see the connection end. */
	if (p->in_body)
		return 0;
	while ((r = head(p)) != NULL && r->kind != RESP_LOCAL &&
	    r->kind != RESP_CLOSE)
		dequeue(p);
	return flush_local(p, to_client);
}

void
pop3_tls_started(struct pop3 *p)
{
	if (p->state != ST_STARTTLS)
		return;
	/* RFC 2595 §4: nothing learned in the clear carries over. No new
	 * greeting either: the client already has it. */
	p->pol.tls_active = true;
	p->stls_used = true;
	p->auth_forwarded = false;
	p->skipping = false;
	p->mech = MECH_OTHER;
	p->sasl_name_next = false;
	p->failure_counts = false;
	p->user[0] = '\0';
	set_state(p, ST_AUTHORIZATION);
}

bool
pop3_idle(const struct pop3 *p)
{
	return p->qlen == 0;
}

bool
pop3_stls_used(const struct pop3 *p)
{
	return p->stls_used;
}

bool
pop3_auth_refused(const struct pop3 *p)
{
	return p->auth_refused;
}

const char *
pop3_user(const struct pop3 *p)
{
	return p->user;
}

const char *
pop3_close_reason(const struct pop3 *p)
{
	return p->close_reason;
}

int
pop3_errors(const struct pop3 *p)
{
	return p->errors;
}

int
pop3_login_failures(const struct pop3 *p)
{
	return p->login_failures;
}

int
pop3_shield_rejections(const struct pop3 *p)
{
	return p->shield_rejections;
}
