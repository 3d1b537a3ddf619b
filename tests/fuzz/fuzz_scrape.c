/*
 * fuzz_scrape.c — libFuzzer harness for the metrics endpoint's request
 * parser (metrics_http_parse) and a certificate's notAfter
 * (cert_pem_not_after, cert_der_not_after): the two parsers of issue 16
 * that take bytes from outside.
 *
 * The request parser, on exact-size copies of every prefix of the input:
 * a verdict other than HTTP_MORE before the whole input is the verdict
 * for ever after (more bytes never change it), only a bad request line
 * is judged before the blank line, nothing is judged without an LF, and
 * HTTP_TOO_LARGE comes exactly when the bound is reached undecided.
 * The certificate parsers: any input, as PEM and as DER, decodes or not
 * without reading outside it (ASan), and a date is one a UTCTime or
 * GeneralizedTime can hold.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certtime.h"
#include "metrics_http.h"

#define MAX	512	/* a smaller bound than the daemon's: reached often */

static void bug(const char *) __attribute__((noreturn));

static void
bug(const char *what)
{
	fprintf(stderr, "fuzz_scrape: %s\n", what);
	abort();
}

static void
requests(const uint8_t *data, size_t size)
{
	enum http_verdict first = HTTP_MORE, v;
	size_t n, decided = 0;
	char *copy;
	bool head;

	for (n = 0; n <= size && n <= MAX; n++) {
		copy = malloc(n ? n : 1);
		memcpy(copy, data, n);
		v = metrics_http_parse(copy, n, MAX, &head);
		free(copy);
		if (v != HTTP_MORE && memchr(data, '\n', n) == NULL &&
		    v != HTTP_TOO_LARGE)
			bug("judged without a line");
		if (v == HTTP_TOO_LARGE && n < MAX)
			bug("too large under the bound");
		if (head && v != HTTP_OK)
			bug("HEAD set on a refusal");
		if (first == HTTP_MORE && v != HTTP_MORE) {
			first = v;
			decided = n;
		} else if (first != HTTP_MORE && v != first)
			bug("a verdict changed with more bytes");
		if (n == MAX && v == HTTP_MORE)
			bug("undecided at the bound");
	}
	(void)decided;
}

static void
certificates(const uint8_t *data, size_t size)
{
	int64_t t;

	if (cert_pem_not_after(data, size, &t) == 0 &&
	    (t < -62167219200LL || t > 253402300800LL))
		bug("PEM date out of range");
	if (cert_der_not_after(data, size, &t) == 0 &&
	    (t < -62167219200LL || t > 253402300800LL))
		bug("DER date out of range");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	requests(data, size);
	certificates(data, size);
	return 0;
}
