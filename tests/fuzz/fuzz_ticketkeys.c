/*
 * fuzz_ticketkeys.c — libFuzzer harness for the ticket key file parser
 * (tls-ticket-key-file, ticketkeys.h).
 *
 * Input: the file's bytes. Checked: a success has 1 to TICKET_KEYS keys,
 * distinct nonzero names, and line 0; a failure leaves the output all
 * zero, names a line within the input (0 only for "no key"), and says
 * why in a terminated message that quotes no run of 12 base64 characters
 * of the input (no key text); parsing the same input twice agrees.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ticketkeys.h"

static void bug(const char *) __attribute__((noreturn));

static void
bug(const char *what)
{
	fprintf(stderr, "fuzz_ticketkeys: invariant broken: %s\n", what);
	abort();
}

/* b64_run: n base64 characters, as a key's text is; the messages have
 * no run of 12 of them. */
static int
b64_run(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' &&
		    p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
		    p[i] == '+' || p[i] == '/' || p[i] == '='))
			return 0;
	return 1;
}

static size_t
count_lines(const uint8_t *p, size_t n)
{
	size_t i, lines = n > 0;

	for (i = 0; i + 1 < n; i++)
		if (p[i] == '\n')
			lines++;
	return lines;
}

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct ticket_key_set zero;
	struct ticket_key_set a, b;
	char err[256], err2[256];
	int line, line2, rv, i, j;

	memset(err, 'x', sizeof(err));
	rv = ticketkeys_parse(data, size, &a, &line, err, sizeof(err));
	if (ticketkeys_parse(data, size, &b, &line2, err2, sizeof(err2)) != rv ||
	    line != line2 || memcmp(&a, &b, sizeof(a)) != 0)
		bug("two parses of one input disagree");
	if (rv == 0) {
		if (a.n < 1 || a.n > TICKET_KEYS || line != 0)
			bug("success without 1 to 4 keys, or with a line");
		for (i = 0; i < a.n; i++) {
			if (a.rev[i] == 0)
				bug("a key named 0");
			for (j = 0; j < i; j++)
				if (a.rev[i] == a.rev[j])
					bug("two keys of one name");
		}
		return 0;
	}
	if (rv != -1)
		bug("neither 0 nor -1");
	if (memcmp(&a, &zero, sizeof(a)) != 0)
		bug("output not wiped on failure");
	if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
		bug("no terminated error message");
	if (line < 0 || (size_t)line > count_lines(data, size))
		bug("error line outside the input");
	for (i = 0; (size_t)i + 12 <= size; i++)
		if (b64_run(data + i, 12) &&
		    memmem(err, strlen(err), data + i, 12) != NULL)
			bug("input quoted in the error");
	return 0;
}
