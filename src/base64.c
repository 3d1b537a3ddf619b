/*
 * base64.c — strict base64 decoding (RFC 4648 §4).
 */
#include "base64.h"

#include <string.h>

int
base64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* quartet: the 24 bits of in[0..3] into *acc; how many of the four were
 * padding (only allowed when last), or -1. */
static int
quartet(const uint8_t *in, bool last, uint32_t *acc)
{
	int k, v, pad = 0;

	*acc = 0;
	for (k = 0; k < 4; k++) {
		if (in[k] == '=' && last && k >= 2) {
			pad++;
			v = 0;
		} else if (pad > 0 || (v = base64_value(in[k])) < 0)
			return -1;
		*acc = (*acc << 6) | (uint32_t)v;
	}
	return pad;
}

bool
base64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t outsz,
    size_t *outlen)
{
	uint32_t acc = 0;
	size_t i, n = 0;
	int pad;
	bool ok = false;

	if (len % 4 != 0)
		return false;
	for (i = 0; i < len; i += 4) {
		if ((pad = quartet(in + i, i + 4 == len, &acc)) < 0 ||
		    n + 3 - (size_t)pad > outsz)
			goto done;
		out[n++] = (uint8_t)(acc >> 16);
		if (pad < 2)
			out[n++] = (uint8_t)(acc >> 8);
		if (pad < 1)
			out[n++] = (uint8_t)acc;
	}
	*outlen = n;
	ok = true;
done:
	explicit_bzero(&acc, sizeof(acc));
	return ok;
}
