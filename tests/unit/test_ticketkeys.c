/*
 * test_ticketkeys.c — the session ticket key file parser and the key
 * derivation (ticketkeys.h).
 *
 * The derived names and keys are compared with vectors computed outside
 * popsd (Python's hmac module, and `openssl kdf ... HKDF` for the same
 * input), so two hosts, or two popsd versions, cannot silently disagree.
 * Every bad file names the line at which it must be refused; errors must
 * never quote key material; on failure the output holds nothing. Inputs
 * are copied to buffers of their exact size (no NUL after them), so that
 * an over-read shows under valgrind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ticketkeys.h"

/* bytes(range(80)) and bytes(range(48)), base64. */
#define K80 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss" \
	    "LS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk8="
#define K48 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"
#define REV80	0xe2e14f71u
#define KEY80	"6b2b15d9b31f5172573f407cf2cfcf32118a402bc83cd3922f2883a0" \
		"68fa4af0402bbcf6dc98c39ceb4dd0bc79bfc381"
#define REV48	0x8397b14cu
#define KEY48	"e3cc08563b11a1a8acb1f9b9ed8d1b40795815541e7571832798689b" \
		"f0bd169253cadc2f5d4f1b65a4087c99a8328a5c"
/* Two 48-byte keys whose derived names are the same (0xb2fd37bb), found
 * by a birthday search over (i as 4 bytes) * 12. */
#define KC1 "AACD1wAAg9cAAIPXAACD1wAAg9cAAIPXAACD1wAAg9cAAIPXAACD1wAAg9cAAIPX"
#define KC2 "AACirQAAoq0AAKKtAACirQAAoq0AAKKtAACirQAAoq0AAKKtAACirQAAoq0AAKKt"
/* Other valid keys: 80 bytes of 0x01, of 0x02, ... */
#define KA  "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB" \
	    "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define KB  "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC" \
	    "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
#define KC  "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD" \
	    "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
#define KD  "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE" \
	    "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="
#define KE  "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUF" \
	    "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU="

static void
hex(const uint8_t *p, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* parse: text (a C string, without its NUL) in an exact-size buffer. */
static int
parse(const char *text, struct ticket_key_set *ks, int *line, char *err,
    size_t errsz)
{
	size_t len = strlen(text);
	uint8_t *copy = malloc(len ? len : 1);
	int rv;

	assert_non_null(copy);
	memcpy(copy, text, len);
	err[0] = '\0';
	rv = ticketkeys_parse(copy, len, ks, line, err, errsz);
	free(copy);
	return rv;
}

static void
assert_key(const struct ticket_key_set *ks, int i, uint32_t rev,
    const char *keyhex)
{
	char h[2 * TICKET_KEY_SIZE + 1];

	assert_int_equal(ks->rev[i], rev);
	hex(ks->key[i], TICKET_KEY_SIZE, h);
	assert_string_equal(h, keyhex);
}

static void
assert_good(const char *text, int n)
{
	struct ticket_key_set ks;
	char err[256];
	int line = -1;

	if (parse(text, &ks, &line, err, sizeof(err)) != 0)
		fail_msg("refused: %s (line %d) for:\n%s", err, line, text);
	assert_int_equal(ks.n, n);
	assert_int_equal(line, 0);
}

/* assert_bad: refused at line, err containing want, quoting no key. */
static void
assert_bad(const char *text, int want_line, const char *want)
{
	struct ticket_key_set ks, zero;
	char err[256];
	int line = -1;

	memset(&zero, 0, sizeof(zero));
	if (parse(text, &ks, &line, err, sizeof(err)) != -1)
		fail_msg("accepted:\n%s", text);
	assert_int_equal(line, want_line);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" does not say \"%s\"", err, want);
	assert_null(strstr(err, "AAEC"));
	assert_null(strstr(err, "AQEB"));
	assert_null(strstr(err, "AACD"));
	assert_memory_equal(&ks, &zero, sizeof(ks));
}

/* --- derivation ----------------------------------------------------------- */

static void
test_vectors(void **state)
{
	struct ticket_key_set ks;
	char err[256];
	int line;

	(void)state;
	assert_int_equal(parse(K80 "\n", &ks, &line, err, sizeof(err)), 0);
	assert_int_equal(ks.n, 1);
	assert_key(&ks, 0, REV80, KEY80);
	assert_int_equal(parse(K48 "\n", &ks, &line, err, sizeof(err)), 0);
	assert_key(&ks, 0, REV48, KEY48);
}

static void
test_derive_direct(void **state)
{
	uint8_t raw[80], key[TICKET_KEY_SIZE];
	char h[2 * TICKET_KEY_SIZE + 1];
	uint32_t rev;
	int i;

	(void)state;
	for (i = 0; i < 80; i++)
		raw[i] = (uint8_t)i;
	assert_int_equal(ticketkeys_derive(raw, 80, &rev, key), 0);
	assert_int_equal(rev, REV80);
	hex(key, sizeof(key), h);
	assert_string_equal(h, KEY80);
}

/* --- the file ------------------------------------------------------------- */

static void
test_order_is_file_order(void **state)
{
	struct ticket_key_set ks;
	char err[256];
	int line;

	(void)state;
	assert_int_equal(parse(K48 "\n" K80 "\n", &ks, &line, err,
	    sizeof(err)), 0);
	assert_int_equal(ks.n, 2);
	assert_key(&ks, 0, REV48, KEY48);	/* the first encrypts */
	assert_key(&ks, 1, REV80, KEY80);
}

static void
test_layout(void **state)
{
	struct ticket_key_set a, b;
	char err[256];
	int line;

	(void)state;
	/* Comments, blank lines, CRLF, blanks around a key, no final
	 * newline: the same keys as the bare file. */
	assert_int_equal(parse(K80 "\n" K48 "\n", &a, &line, err,
	    sizeof(err)), 0);
	assert_int_equal(parse("# popsd ticket keys\r\n\r\n  \t\n"
	    "\t" K80 "  \r\n# old one:\n   # indented comment\n" K48, &b,
	    &line, err, sizeof(err)), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_good(K80 "\r\n", 1);
	assert_good(K80, 1);
	assert_good("\n\n" K80 "\n\n", 1);
	assert_good("#" K80 "\n" K48 "\n", 1);	/* a commented-out key */
	assert_good(K80 "\n" K48 "\n" KA "\n" KB "\n", 4);	/* mixed sizes */
}

static void
test_bad_base64(void **state)
{
	(void)state;
	assert_bad("!" K80 "\n", 1, "not a base64 key");
	assert_bad("# c\n" K80 "\nAAEC-wQF\n", 3, "not a base64 key");
	assert_bad("AAEC_wQF\n", 1, "not a base64 key");	/* url-safe */
	assert_bad("AAECAwQ\n", 1, "not a base64 key");	/* 7 chars */
	assert_bad("AAECAw==AAEC\n", 1, "not a base64 key");	/* pad inside */
	assert_bad("AAECA===\n", 1, "not a base64 key");	/* 3 pads */
	assert_bad("====\n", 1, "not a base64 key");
	assert_bad("AAEC AwQF\n", 1, "not a base64 key");	/* space inside */
	assert_bad(K80 " # comment\n", 1, "not a base64 key");
	assert_bad(K80 " " K48 "\n", 1, "not a base64 key");	/* two on a line */
	/* 80 bytes without their padding */
	assert_bad("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss"
	    "LS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk8\n", 1,
	    "not a base64 key");
}

static void
test_wrong_length(void **state)
{
	(void)state;
	assert_bad("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 1,
	    "this one decodes to 32");
	assert_bad(K48 "AAEC\n", 1, "this one decodes to 51");
	assert_bad(K48 "AA==\n", 1, "this one decodes to 49");
	assert_bad(K80 "\n" K48 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"
	    "Hh8gISIjJCUmJygpKissLS4v\n", 2, "decodes to 96");
	assert_bad("AAAA\n", 1, "decodes to 3");
}

static void
test_too_many(void **state)
{
	(void)state;
	assert_good(KA "\n" KB "\n" KC "\n" KD "\n", TICKET_KEYS);
	assert_bad(KA "\n" KB "\n# x\n" KC "\n" KD "\n\n" KE "\n", 7,
	    "more than 4 keys");
}

static void
test_duplicates(void **state)
{
	(void)state;
	assert_bad(KA "\n" KB "\n" KA "\n", 3, "the same key as line 1");
	assert_bad("# a\n" KC1 "\n" KC2 "\n", 3,
	    "this key's name (derived) is line 2's too");
	assert_good(KC1 "\n", 1);
	assert_good(KC2 "\n", 1);
}

static void
test_empty_and_binary(void **state)
{
	struct ticket_key_set ks;
	uint8_t text[sizeof(K80) + 2];
	char err[256];
	int line;

	(void)state;
	assert_bad("", 0, "no key in the file");
	assert_bad("\n\r\n# only a comment\n", 0, "no key in the file");
	/* A NUL in a line, which a C string cannot show. */
	memcpy(text, K80 "\n", sizeof(K80));
	text[sizeof(K80)] = '\0';
	text[sizeof(K80) + 1] = 'A';
	assert_int_equal(ticketkeys_parse(text, sizeof(text), &ks, &line, err,
	    sizeof(err)), -1);
	assert_int_equal(line, 2);
	assert_non_null(strstr(err, "NUL byte"));
	assert_int_equal(ks.n, 0);
}

static void
test_long_line(void **state)
{
	char text[TICKETKEYS_LINE_MAX + 8];

	(void)state;
	memset(text, 'A', TICKETKEYS_LINE_MAX + 4);
	text[TICKETKEYS_LINE_MAX + 4] = '\0';
	assert_bad(text, 1, "line too long");
	/* The longest line that is looked at: decodes, but is no key. */
	text[TICKETKEYS_LINE_MAX] = '\0';
	assert_bad(text, 1, "decodes to 192");
}

/* A key cut short anywhere is refused, never read past its end; except
 * where its first 64 characters are a 48-byte key (K48) themselves. */
static void
test_truncated(void **state)
{
	struct ticket_key_set ks;
	char err[256];
	size_t n;
	int line;

	(void)state;
	for (n = 1; n < strlen(K80); n++) {
		uint8_t *p = malloc(n);

		assert_non_null(p);
		memcpy(p, K80, n);
		assert_int_equal(ticketkeys_parse(p, n, &ks, &line, err,
		    sizeof(err)), n == strlen(K48) ? 0 : -1);
		assert_int_equal(line, n == strlen(K48) ? 0 : 1);
		free(p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_derive_direct),
		cmocka_unit_test(test_order_is_file_order),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_bad_base64),
		cmocka_unit_test(test_wrong_length),
		cmocka_unit_test(test_too_many),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_empty_and_binary),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_truncated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
