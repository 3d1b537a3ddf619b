/*
 * test_upstream.c — the outbound negotiation (upstream.c), table-driven.
 * Each case is a script of steps: the upstream's bytes, what popsd must
 * write, what it must decide, and what input must be left unread. Every
 * case runs twice: each step's bytes fed whole, then one byte at a time
 * (with upstream_step() after each byte, as the session would call it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "upstream.h"

struct ustep {
	bool		 tls_done;	/* upstream_tls_done() first */
	const char	*in;		/* the upstream's bytes */
	enum upstream_act act;		/* the decision after all of them */
	const char	*out;		/* what popsd wrote meanwhile */
	const char	*left;		/* input left unread ("" : none) */
};

struct ucase {
	const char		*name;
	enum upstream_mode	 mode;
	struct ustep		 steps[5];
	const char		*greeting;	/* at UP_READY */
	const char		*why;		/* substring, at UP_FAIL */
};

#define END { false, NULL, UP_WAIT, NULL, NULL }

static const struct ucase cases[] = {
{ "stls: greeting, CAPA, STLS, handshake", UPSTREAM_STLS, {
	{ false, "+OK ready <1.2@h>\r\n", UP_WAIT, "CAPA\r\n", "" },
	{ false, "+OK\r\nTOP\r\nSTLS\r\nUSER\r\n.\r\n", UP_WAIT, "STLS\r\n", "" },
	{ false, "+OK go\r\n", UP_START_TLS, "", "" },
	{ true, "", UP_READY, "", "" }, END },
  "+OK <1.2@h> POP3 server ready (upstream greeting read before TLS)", NULL },
{ "stls: bytes after +OK to STLS are left for the caller to discard",
  UPSTREAM_STLS, {
	{ false, "+OK\r\n", UP_WAIT, "CAPA\r\n", "" },
	{ false, "+OK\r\nstls\r\n.\r\n", UP_WAIT, "STLS\r\n", "" },
	{ false, "+OK\r\n+OK evil\r\n", UP_START_TLS, "", "+OK evil\r\n" },
	{ true, "", UP_READY, "", "" }, END },
  "+OK POP3 server ready (upstream greeting read before TLS)", NULL },
{ "stls: of the greeting read in the clear only a well-formed timestamp "
  "stands", UPSTREAM_STLS, {
	{ false, "+OK call 555-0100 <a b> <x@y> [SYS/TEMP]\r\n", UP_WAIT,
	  "CAPA\r\n", "" },
	{ false, "+OK\r\nSTLS\r\n.\r\n", UP_WAIT, "STLS\r\n", "" },
	{ false, "+OK\r\n", UP_START_TLS, "", "" },
	{ true, "", UP_READY, "", "" }, END },
  "+OK POP3 server ready (upstream greeting read before TLS)", NULL },
{ "stls: a timestamp with no closing bracket is none", UPSTREAM_STLS, {
	{ false, "+OK <1.2@h\r\n", UP_WAIT, "CAPA\r\n", "" },
	{ false, "+OK\r\nSTLS\r\n.\r\n", UP_WAIT, "STLS\r\n", "" },
	{ false, "+OK\r\n", UP_START_TLS, "", "" },
	{ true, "", UP_READY, "", "" }, END },
  "+OK POP3 server ready (upstream greeting read before TLS)", NULL },
{ "stls: bare LF lines", UPSTREAM_STLS, {
	{ false, "+OK x\n", UP_WAIT, "CAPA\r\n", "" },
	{ false, "+OK\nSTLS\n.\n", UP_WAIT, "STLS\r\n", "" },
	{ false, "+OK\n", UP_START_TLS, "", "" }, END },
  NULL, NULL },
{ "stls stripped from CAPA", UPSTREAM_STLS, {
	{ false, "+OK\r\n", UP_WAIT, "CAPA\r\n", "" },
	{ false, "+OK\r\nTOP\r\nUSER\r\n.\r\n", UP_FAIL, "", "" }, END },
  NULL, "does not offer STLS" },
{ "STLSX is not STLS", UPSTREAM_STLS, {
	{ false, "+OK\r\n", UP_WAIT, "CAPA\r\n", "" },
	{ false, "+OK\r\nSTLSX\r\nXSTLS\r\n.\r\n", UP_FAIL, "", "" }, END },
  NULL, "does not offer STLS" },
{ "CAPA refused", UPSTREAM_STLS, {
	{ false, "+OK\r\n", UP_WAIT, "CAPA\r\n", "" },
	{ false, "-ERR what\r\n", UP_FAIL, "", "" }, END },
  NULL, "does not offer STLS" },
{ "STLS refused", UPSTREAM_STLS, {
	{ false, "+OK\r\n", UP_WAIT, "CAPA\r\n", "" },
	{ false, "+OK\r\nSTLS\r\n.\r\n", UP_WAIT, "STLS\r\n", "" },
	{ false, "-ERR no TLS today\r\n", UP_FAIL, "", "" }, END },
  NULL, "refused STLS" },
{ "greeting -ERR", UPSTREAM_STLS, {
	{ false, "-ERR busy\r\n", UP_FAIL, "", "" }, END },
  NULL, "refused the connection" },
{ "not POP3", UPSTREAM_STLS, {
	{ false, "SSH-2.0-OpenSSH\r\n", UP_FAIL, "", "" }, END },
  NULL, "no POP3 greeting" },
{ "+OKAY is not +OK", UPSTREAM_STLS, {
	{ false, "+OKAY\r\n", UP_FAIL, "", "" }, END },
  NULL, "no POP3 greeting" },
{ "over-long line", UPSTREAM_STLS, {
	{ false, "+OK xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxx", UP_FAIL, "", NULL }, END },
  NULL, "too long" },
{ "pop3s: TLS first, then the greeting", UPSTREAM_POP3S, {
	{ false, "", UP_START_TLS, "", "" },
	{ true, "+OK hello <9@h>\r\n", UP_READY, "", "" }, END },
  "+OK hello <9@h>", NULL },
{ "pop3s: refusal after TLS", UPSTREAM_POP3S, {
	{ false, "", UP_START_TLS, "", "" },
	{ true, "-ERR [SYS/TEMP] later\r\n", UP_FAIL, "", "" }, END },
  NULL, "refused the connection" },
};

static void
check_out(struct buf *out, const char *want)
{
	const uint8_t *p;
	size_t len;

	p = buf_rptr(out, &len);
	assert_int_equal(len, strlen(want));
	if (len)
		assert_memory_equal(p, want, len);
	buf_free(out);
}

static void
run_case(const struct ucase *c, bool trickle)
{
	struct upstream u;
	struct buf in, out;
	enum upstream_act a = UP_WAIT;
	const struct ustep *st;
	size_t i, n;

	upstream_init(&u, c->mode);
	buf_init(&in, 4096);
	buf_init(&out, 64);
	for (st = c->steps; st->in != NULL; st++) {
		if (st->tls_done)
			upstream_tls_done(&u);
		n = strlen(st->in);
		if (!trickle || n == 0) {
			assert_int_equal(buf_append(&in, st->in, n), 0);
			a = upstream_step(&u, &in, &out);
		} else
			for (i = 0; i < n; i++) {
				assert_int_equal(buf_append(&in, st->in + i, 1), 0);
				a = upstream_step(&u, &in, &out);
				if (a == UP_WAIT)
					continue;
				/* Decided: the rest arrives unread (the
				 * left-over bytes, or an over-long line). */
				if (st->left != NULL)
					assert_int_equal(n - i - 1,
					    strlen(st->left));
				(void)buf_append(&in, st->in + i + 1, n - i - 1);
				break;
			}
		assert_int_equal(a, st->act);
		check_out(&out, st->out);
		if (st->left != NULL) {
			const uint8_t *p = buf_rptr(&in, &n);
			assert_int_equal(n, strlen(st->left));
			if (n)
				assert_memory_equal(p, st->left, n);
		}
		if (a == UP_START_TLS)
			buf_free(&in);	/* what the session does */
		if (a != UP_WAIT && a != UP_START_TLS)
			break;
		a = UP_WAIT;
	}
	if (c->greeting) {
		assert_int_equal(upstream_step(&u, &in, &out), UP_READY);
		assert_string_equal(upstream_greeting(&u), c->greeting);
	}
	if (c->why) {
		assert_int_equal(upstream_step(&u, &in, &out), UP_FAIL);
		assert_non_null(strstr(upstream_why(&u), c->why));
		assert_string_equal(upstream_greeting(&u), "");
	}
	buf_free(&in);
	buf_free(&out);
}

static void
test_cases(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("  %s\n", cases[i].name);
		run_case(&cases[i], false);
		run_case(&cases[i], true);
	}
}

/* Nothing before TLS but CAPA and STLS: however the upstream answers,
 * popsd's output is a prefix of "CAPA\r\nSTLS\r\n" until UP_START_TLS. */
static void
test_only_capa_and_stls_before_tls(void **state)
{
	static const char *const answers[] = {
		"+OK\r\n+OK\r\nSTLS\r\n.\r\n+OK\r\n",
		"+OK\r\n+OK\r\nUSER\r\n.\r\n",
		"+OK\r\n-ERR\r\n",
		"+OK\r\n+OK\r\nSTLS\r\n.\r\n-ERR\r\n",
		"+OK\r\n+OK\r\n.\r\n+OK\r\n+OK\r\n",
	};
	char all[64];
	size_t i, j, off, len;
	const uint8_t *p;

	(void)state;
	for (i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		struct upstream u;
		struct buf in, out;
		enum upstream_act a = UP_WAIT;

		upstream_init(&u, UPSTREAM_STLS);
		buf_init(&in, 512);
		buf_init(&out, 64);
		off = 0;
		for (j = 0; answers[i][j] && a == UP_WAIT; j++) {
			(void)buf_append(&in, answers[i] + j, 1);
			a = upstream_step(&u, &in, &out);
			if ((p = buf_rptr(&out, &len)) != NULL) {
				memcpy(all + off, p, len);
				off += len;
				buf_consume(&out, len);
			}
		}
		assert_true(off <= 12);
		assert_memory_equal(all, "CAPA\r\nSTLS\r\n", off);
		buf_free(&in);
		buf_free(&out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_only_capa_and_stls_before_tls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
