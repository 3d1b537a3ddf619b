/*
 * ticketkeys.c — parse a session ticket key file and derive libtls' keys
 * from it (see ticketkeys.h for the format and the derivation).
 */
#include "ticketkeys.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base64.h"

#define SHA512_LEN	64
#define DERIVED_LEN	(4 + TICKET_KEY_SIZE)

int
ticketkeys_derive(const uint8_t *raw, size_t rawlen, uint32_t *rev,
    uint8_t key[TICKET_KEY_SIZE])
{
	static const uint8_t salt[SHA512_LEN];	/* RFC 5869: none given */
	static const char info[] = TICKETKEYS_HKDF_INFO;
	uint8_t prk[SHA512_LEN], t[sizeof(info) - 1 + 1], okm[SHA512_LEN];
	unsigned int len = 0;
	int rv = -1;

	/* Extract, then one block of Expand: 52 bytes fit in one SHA-512. */
	if (HMAC(EVP_sha512(), salt, sizeof(salt), raw, rawlen, prk,
	    &len) == NULL || len != sizeof(prk))
		goto done;
	memcpy(t, info, sizeof(info) - 1);
	t[sizeof(t) - 1] = 0x01;
	if (HMAC(EVP_sha512(), prk, sizeof(prk), t, sizeof(t), okm,
	    &len) == NULL || len != sizeof(okm))
		goto done;
	*rev = (uint32_t)okm[0] << 24 | (uint32_t)okm[1] << 16 |
	    (uint32_t)okm[2] << 8 | okm[3];
	memcpy(key, okm + 4, TICKET_KEY_SIZE);
	rv = 0;
done:
	explicit_bzero(prk, sizeof(prk));
	explicit_bzero(okm, sizeof(okm));
	return rv;
}

/* trim: the line [*s, *s + *len) without blanks at either end. */
static void
trim(const uint8_t **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t' ||
	    (*s)[*len - 1] == '\r'))
		(*len)--;
}

/* add_key: one key line (decoded into raw) into out; 0 or -1 with err. */
static int
add_key(struct ticket_key_set *out, const uint8_t *raw, size_t rawlen,
    const int *lines, char *err, size_t errsz)
{
	int i, k = out->n;

	if (rawlen != TICKETKEYS_RAW_LONG && rawlen != TICKETKEYS_RAW_SHORT) {
		snprintf(err, errsz, "a key is the base64 of %d (or %d) random "
		    "bytes, this one decodes to %zu", TICKETKEYS_RAW_LONG,
		    TICKETKEYS_RAW_SHORT, rawlen);
		return -1;
	}
	if (k == TICKET_KEYS) {
		snprintf(err, errsz, "more than %d keys: popsd uses at most %d "
		    "(the first encrypts, the others decrypt); remove the "
		    "oldest, at the end", TICKET_KEYS, TICKET_KEYS);
		return -1;
	}
	if (ticketkeys_derive(raw, rawlen, &out->rev[k],
	    out->key[k]) == -1) {
		snprintf(err, errsz, "cannot derive the key (libcrypto)");
		return -1;
	}
	for (i = 0; i < k; i++)
		if (out->rev[i] == out->rev[k]) {
			snprintf(err, errsz, memcmp(out->key[i], out->key[k],
			    TICKET_KEY_SIZE) == 0 ? "the same key as line %d" :
			    "this key's name (derived) is line %d's too; "
			    "replace one of them with a new key", lines[i]);
			return -1;
		}
	if (out->rev[k] == 0) {
		snprintf(err, errsz, "this key's name (derived) is 0, which "
		    "libtls cannot use; replace it with a new key");
		return -1;
	}
	out->n++;
	return 0;
}

int
ticketkeys_parse(const uint8_t *text, size_t len, struct ticket_key_set *out,
    int *line, char *err, size_t errsz)
{
	uint8_t raw[TICKETKEYS_LINE_MAX / 4 * 3];
	int lines[TICKET_KEYS], lineno = 0, rv = -1;
	size_t rawlen;
	const uint8_t *s, *nl, *end = text + len;
	size_t n;

	explicit_bzero(out, sizeof(*out));
	for (s = text; s < end; s = nl + 1) {
		lineno++;
		if ((nl = memchr(s, '\n', (size_t)(end - s))) == NULL)
			nl = end;
		n = (size_t)(nl - s);
		if (memchr(s, '\0', n) != NULL) {
			snprintf(err, errsz, "NUL byte in line");
			goto fail;
		}
		trim(&s, &n);
		if (n == 0 || s[0] == '#')
			continue;
		if (n > TICKETKEYS_LINE_MAX) {
			snprintf(err, errsz, "line too long (more than %d "
			    "bytes)", TICKETKEYS_LINE_MAX);
			goto fail;
		}
		if (!base64_decode(s, n, raw, sizeof(raw), &rawlen)) {
			snprintf(err, errsz, "not a base64 key (one key per "
			    "line, nothing else on it)");
			goto fail;
		}
		if (add_key(out, raw, rawlen, lines, err, errsz) == -1)
			goto fail;
		lines[out->n - 1] = lineno;
	}
	lineno = 0;
	if (out->n == 0) {
		snprintf(err, errsz, "no key in the file");
		goto fail;
	}
	rv = 0;
	goto done;
fail:
	explicit_bzero(out, sizeof(*out));
done:
	*line = lineno;
	explicit_bzero(raw, sizeof(raw));
	return rv;
}
