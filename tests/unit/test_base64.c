/*
 * test_base64.c — strict base64 decoding (RFC 4648 §4 and its test
 * vectors), as the SASL mediator, the ticket key file and the PEM reader
 * rely on it: padding only at the end, nothing outside the alphabet,
 * never more than the room given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"

struct vector {
	const char	*in;
	const char	*out;	/* NULL: must be refused */
};

static const struct vector vectors[] = {
	{ "", "" },
	{ "Zg==", "f" },
	{ "Zm8=", "fo" },
	{ "Zm9v", "foo" },
	{ "Zm9vYg==", "foob" },
	{ "Zm9vYmE=", "fooba" },
	{ "Zm9vYmFy", "foobar" },
	{ "dXNlcgBwYXNz", "user\0pass" },
	{ "Zg=", NULL },		/* not a whole quartet */
	{ "Zg", NULL },
	{ "Z===", NULL },		/* three pads */
	{ "====", NULL },
	{ "Zg==Zg==", NULL },		/* padding before the end */
	{ "Zm=v", NULL },		/* data after a pad */
	{ "Zm9v\r\n", NULL },		/* line breaks are not data */
	{ "Zm 9", NULL },
	{ "Zm9-", NULL },		/* base64url is another alphabet */
};

static void
test_vectors(void **state)
{
	uint8_t out[16];
	size_t i, n, want;

	(void)state;
	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];
		bool ok = base64_decode((const uint8_t *)v->in, strlen(v->in),
		    out, sizeof(out), &n);

		if (v->out == NULL) {
			if (ok)
				fail_msg("\"%s\" was accepted", v->in);
			continue;
		}
		/* "user\0pass": the expected length is not strlen's. */
		want = strcmp(v->out, "user") == 0 ? 9 : strlen(v->out);
		if (!ok)
			fail_msg("\"%s\" was refused", v->in);
		assert_int_equal(n, want);
		assert_memory_equal(out, v->out, want);
	}
}

static void
test_room(void **state)
{
	const uint8_t in[] = "Zm9vYmFy";
	uint8_t out[6];
	size_t n;

	(void)state;
	assert_false(base64_decode(in, 8, out, 5, &n));
	assert_true(base64_decode(in, 8, out, 6, &n));
	assert_int_equal(n, 6);
	/* "Zm8=" needs 2 bytes, not 3: padding is counted. */
	assert_true(base64_decode((const uint8_t *)"Zm8=", 4, out, 2, &n));
	assert_int_equal(n, 2);
}

static void
test_alphabet(void **state)
{
	const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/";
	int c, i;

	(void)state;
	for (i = 0; i < 64; i++)
		assert_int_equal(base64_value((uint8_t)abc[i]), i);
	for (c = 0; c < 256; c++)
		if (strchr(abc, c) == NULL || c == 0)
			assert_int_equal(base64_value((uint8_t)c), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_room),
		cmocka_unit_test(test_alphabet),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
