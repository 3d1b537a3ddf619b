/*
 * test_capa.c — CAPA filtering and synthesis, table-driven.
 *
 * capa.c works on whole lines, so "trickle" does not apply here (the
 * byte-by-byte runs of CAPA answers are in test_pop3.c). Each filter case
 * runs twice instead: as written, and with every input line lowercased,
 * since capability names compare case-insensitively (RFC 2449 §5).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "capa.h"

struct filter_case {
	const char		*name;
	struct capa_policy	 pol;
	const char		*in;		/* body lines, each ending "\n" */
	const char		*kept;		/* lines relayed, each "\r\n" */
	const char		*trailer;	/* what popsd adds, with "." */
};

#define OFFER	{ .offer_stls = true, .hide_login = true }	/* port 110 */
#define ALLOW	{ .offer_stls = true, .hide_login = false }	/* plaintext ok */
#define ACTIVE	{ .offer_stls = false, .hide_login = false }	/* under TLS */
#define CLOSED	{ .offer_stls = false, .hide_login = true }	/* no way in */

static const struct filter_case filter_cases[] = {
{
	"dovecot list before TLS", OFFER,
	"CAPA\nTOP\nUIDL\nRESP-CODES\nPIPELINING\nAUTH-RESP-CODE\nSTLS\n"
	    "USER\nSASL PLAIN LOGIN\n",
	"CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
	    "AUTH-RESP-CODE\r\n",
	"STLS\r\n.\r\n",
},
{
	"dovecot list under TLS", ACTIVE,
	"CAPA\nTOP\nUIDL\nRESP-CODES\nPIPELINING\nAUTH-RESP-CODE\nSTLS\n"
	    "USER\nSASL PLAIN LOGIN\n",
	"CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
	    "AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n",
	".\r\n",
},
{
	"plaintext allowed keeps login, offers STLS", ALLOW,
	"USER\nSASL CRAM-MD5\nSTLS\n",
	"USER\r\nSASL CRAM-MD5\r\n",
	"STLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
},
{
	"no STLS, login hidden", CLOSED,
	"USER\nSTLS\nTOP\n",
	"TOP\r\n",
	"RESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
},
{
	"empty list", OFFER,
	"",
	"",
	"STLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
},
{
	"tags are whole words", OFFER,
	"USERS\nSASLX PLAIN\nSTLSX\nRESP-CODESX\nAUTH-RESP-CODES\nUSE\n",
	"USERS\r\nSASLX PLAIN\r\nSTLSX\r\nRESP-CODESX\r\n"
	    "AUTH-RESP-CODES\r\nUSE\r\n",
	"STLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
},
{
	"arguments after a tag", OFFER,
	"STLS now\nUSER x\nRESP-CODES y\nEXPIRE 30 USER\nLOGIN-DELAY 900\n",
	"RESP-CODES y\r\nEXPIRE 30 USER\r\nLOGIN-DELAY 900\r\n",
	"STLS\r\nAUTH-RESP-CODE\r\n.\r\n",
},
{
	"a repeated STLS is dropped every time", ACTIVE,
	"STLS\nSTLS\nTOP\nSTLS\n",
	"TOP\r\n",
	"RESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
},
{
	"odd lines kept as they are", ALLOW,
	" USER\n\nIMPLEMENTATION \"x\" = 1\n..stuffed\n",
	" USER\r\n\r\nIMPLEMENTATION \"x\" = 1\r\n..stuffed\r\n",
	"STLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n",
},
};

static size_t
lower_copy(char *dst, const char *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? src[i] + 32 :
		    src[i];
	return n;
}

static void
run_filter(const struct filter_case *fc, bool lower)
{
	struct capa_filter f;
	char out[4096], want[4096], line[256];
	const char *s = fc->in, *nl;
	size_t off = 0, n, wn;

	capa_begin(&f, &fc->pol);
	while ((nl = strchr(s, '\n')) != NULL) {
		n = (size_t)(nl - s);
		assert_true(n < sizeof(line));
		if (lower)
			lower_copy(line, s, n);
		else
			memcpy(line, s, n);
		if (capa_keep(&f, line, n)) {
			memcpy(out + off, line, n);
			memcpy(out + off + n, "\r\n", 2);
			off += n + 2;
		}
		s = nl + 1;
	}
	n = capa_trailer(&f, out + off, sizeof(out) - off);
	assert_true(n > 0 && n <= CAPA_TRAILER_MAX);
	off += n;

	wn = strlen(fc->kept);
	if (lower)
		lower_copy(want, fc->kept, wn);
	else
		memcpy(want, fc->kept, wn);
	memcpy(want + wn, fc->trailer, strlen(fc->trailer));
	wn += strlen(fc->trailer);
	if (off != wn || memcmp(out, want, wn) != 0) {
		print_error("case \"%s\"%s\nwant:\n%.*s\ngot:\n%.*s\n",
		    fc->name, lower ? " (lowercased)" : "", (int)wn, want,
		    (int)off, out);
		fail();
	}
}

static void
test_filter(void **state)
{
	const struct filter_case *fc = *state;

	run_filter(fc, false);
	run_filter(fc, true);
}

struct synth_case {
	const char		*name;
	struct capa_policy	 pol;
	const char		*want;
};

#define SYNTH_OK "+OK Capability list follows\r\n"

static const struct synth_case synth_cases[] = {
	{ "synth: port 110, require-tls", OFFER,
	    SYNTH_OK "STLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n" },
	{ "synth: plaintext allowed", ALLOW,
	    SYNTH_OK "USER\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n" },
	{ "synth: under TLS", ACTIVE,
	    SYNTH_OK "USER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n" },
	{ "synth: no way in", CLOSED,
	    SYNTH_OK "RESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n" },
};

static void
test_synth(void **state)
{
	const struct synth_case *sc = *state;
	char out[CAPA_SYNTH_MAX];
	size_t n;

	n = capa_synth(&sc->pol, out, sizeof(out));
	assert_int_equal(n, strlen(sc->want));
	assert_memory_equal(out, sc->want, n);
}

/* The size contracts: too small a buffer gets 0 and nothing written past
 * it; the largest outputs fit the advertised bounds. */
static void
test_bounds(void **state)
{
	struct capa_policy pol = ALLOW;
	struct capa_filter f;
	char out[CAPA_SYNTH_MAX + 1];

	(void)state;
	memset(out, 'X', sizeof(out));
	assert_int_equal(capa_synth(&pol, out, CAPA_SYNTH_MAX - 1), 0);
	assert_int_equal(out[0], 'X');
	capa_begin(&f, &pol);
	assert_int_equal(capa_trailer(&f, out, CAPA_TRAILER_MAX - 1), 0);
	assert_int_equal(out[0], 'X');
	assert_true(capa_trailer(&f, out, CAPA_TRAILER_MAX) <=
	    CAPA_TRAILER_MAX);
	assert_true(capa_synth(&pol, out, CAPA_SYNTH_MAX) <= CAPA_SYNTH_MAX);
	/* A zero-length line is never a tag. */
	assert_true(capa_keep(&f, "", 0));
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

int
main(void)
{
	struct CMUnitTest tests[N(filter_cases) + N(synth_cases) + 1];
	size_t i, n = 0;

	for (i = 0; i < N(filter_cases); i++)
		tests[n++] = (struct CMUnitTest){ .name = filter_cases[i].name,
		    .test_func = test_filter,
		    .initial_state = (void *)&filter_cases[i] };
	for (i = 0; i < N(synth_cases); i++)
		tests[n++] = (struct CMUnitTest){ .name = synth_cases[i].name,
		    .test_func = test_synth,
		    .initial_state = (void *)&synth_cases[i] };
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_bounds);
	return _cmocka_run_group_tests("capa", tests, n, NULL, NULL);
}
