/*
 * base64.h — the standard base64 alphabet (RFC 4648 §4), decoding only.
 * PURE: used by the POP3 mediator (SASL data), the ticket key file and
 * the PEM reader of the certificate-expiry gauge.
 */
#ifndef POPSD_BASE64_H
#define POPSD_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* base64_value: the 6-bit value of c, or -1 when c is not in the
 * alphabet ('=' included). */
int	base64_value(uint8_t c);

/*
 * base64_decode: strict base64: whole quartets, '=' only as the last one
 * or two characters. Writes at most outsz bytes to out and their count to
 * *outlen. Returns false for anything else (also when out is too small),
 * with out's contents then unspecified. No state outlives the call, so
 * decoding a secret leaves it only in out.
 */
bool	base64_decode(const uint8_t *in, size_t len, uint8_t *out,
	    size_t outsz, size_t *outlen);

#endif
