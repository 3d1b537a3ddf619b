/*
 * fuzz_capa.c — libFuzzer harness for CAPA filtering and synthesis.
 *
 * Input: one policy byte, then body lines separated by LF. Checked: the
 * output never names STLS unless popsd offers it (then exactly once),
 * never USER or SASL under hide_login, always names RESP-CODES and
 * AUTH-RESP-CODE exactly once, ends with ".\r\n", stays within the
 * advertised bounds, and keeps every line it did not drop unchanged.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capa.h"

#define LINE_MAX_FUZZ	1024

static void bug(const char *) __attribute__((noreturn));

static void
bug(const char *what)
{
	fprintf(stderr, "fuzz_capa: invariant broken: %s\n", what);
	abort();
}

/* is_tag: the line is the capability name as a whole word, any case. */
static bool
is_tag(const char *s, size_t n, const char *tag)
{
	size_t i, k = strlen(tag);

	if (n < k || (n > k && s[k] != ' '))
		return false;
	for (i = 0; i < k; i++)
		if ((s[i] & ~0x20) != (tag[i] & ~0x20))
			return false;
	return true;
}

struct tally {
	int	stls, user, sasl, resp, authresp;
};

static void
count(struct tally *t, const char *s, size_t n)
{
	t->stls += is_tag(s, n, "STLS");
	t->user += is_tag(s, n, "USER");
	t->sasl += is_tag(s, n, "SASL");
	t->resp += is_tag(s, n, "RESP-CODES");
	t->authresp += is_tag(s, n, "AUTH-RESP-CODE");
}

/* count_lines: tally the CRLF lines of a popsd-made block; returns false
 * unless it is well formed and ends with ".\r\n". */
static bool
count_lines(struct tally *t, const char *s, size_t n)
{
	const char *e;
	size_t len;

	while (n > 0) {
		if ((e = memchr(s, '\n', n)) == NULL || e == s || e[-1] != '\r')
			return false;
		len = (size_t)(e - s) - 1;
		if (len == 1 && s[0] == '.')
			return (size_t)(e - s) + 1 == n;
		count(t, s, len);
		n -= (size_t)(e - s) + 1;
		s = e + 1;
	}
	return false;
}

static void
check_tally(const struct tally *t, const struct capa_policy *pol)
{
	if (t->stls != (pol->offer_stls ? 1 : 0))
		bug("STLS count");
	if (pol->hide_login && (t->user || t->sasl))
		bug("USER or SASL under hide_login");
	if (t->resp != 1 || t->authresp != 1)
		bug("response-code capabilities not exactly once");
}

static void
check_synth(const struct capa_policy *pol)
{
	char out[CAPA_SYNTH_MAX];
	struct tally t = { 0 };
	size_t n;
	const char *first;

	if ((n = capa_synth(pol, out, sizeof(out))) == 0 || n > sizeof(out))
		bug("capa_synth size");
	if (memcmp(out, "+OK", 3) != 0 || (first = memchr(out, '\n', n)) ==
	    NULL)
		bug("capa_synth status line");
	if (!count_lines(&t, first + 1, n - (size_t)(first + 1 - out)))
		bug("capa_synth shape");
	check_tally(&t, pol);
	if (!pol->hide_login && t.user != 1)
		bug("capa_synth without USER");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct capa_policy pol;
	struct capa_filter f;
	struct tally t = { 0 };
	char tail[CAPA_TRAILER_MAX];
	const char *s, *e, *end;
	size_t n, tn;
	bool backend_resp = false, backend_authresp = false;

	if (size < 1)
		return 0;
	pol.offer_stls = data[0] & 1;
	pol.hide_login = data[0] & 2;
	check_synth(&pol);

	capa_begin(&f, &pol);
	s = (const char *)data + 1;
	end = (const char *)data + size;
	while (s < end) {
		e = memchr(s, '\n', (size_t)(end - s));
		n = (size_t)((e ? e : end) - s);
		if (n > LINE_MAX_FUZZ)
			n = LINE_MAX_FUZZ;
		if (capa_keep(&f, s, n)) {
			count(&t, s, n);
			backend_resp |= is_tag(s, n, "RESP-CODES");
			backend_authresp |= is_tag(s, n, "AUTH-RESP-CODE");
		} else if (!is_tag(s, n, "STLS") && !(pol.hide_login &&
		    (is_tag(s, n, "USER") || is_tag(s, n, "SASL"))))
			bug("dropped a line it should keep");
		if (e == NULL)
			break;
		s = e + 1;
	}
	if ((tn = capa_trailer(&f, tail, sizeof(tail))) == 0 ||
	    tn > sizeof(tail))
		bug("capa_trailer size");
	if (!count_lines(&t, tail, tn))
		bug("capa_trailer shape");
	if (t.stls != (pol.offer_stls ? 1 : 0))
		bug("STLS count");
	if (pol.hide_login && (t.user || t.sasl))
		bug("USER or SASL under hide_login");
	/* The backend may repeat a tag; popsd adds one only if it had none. */
	if (t.resp < 1 || (!backend_resp && t.resp != 1))
		bug("RESP-CODES");
	if (t.authresp < 1 || (!backend_authresp && t.authresp != 1))
		bug("AUTH-RESP-CODE");
	return 0;
}
