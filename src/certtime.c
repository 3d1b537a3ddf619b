/* certtime.c — a certificate's notAfter from PEM (see certtime.h). */
#include "certtime.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

#define PEM_BEGIN	"-----BEGIN CERTIFICATE-----"
#define PEM_END		"-----END CERTIFICATE-----"

#define TAG_INTEGER	0x02
#define TAG_UTCTIME	0x17
#define TAG_GENTIME	0x18
#define TAG_SEQUENCE	0x30
#define TAG_VERSION	0xa0	/* [0] EXPLICIT, constructed */

/* One DER element: where its content is and where the next begins. */
struct tlv {
	uint8_t		 tag;
	const uint8_t	*v;
	size_t		 len;
	const uint8_t	*next;
};

/* der_next: the element at p (before end); 0 or -1. Definite lengths of
 * up to 4 octets only (DER has no indefinite ones; nothing here is
 * near 4 GiB). */
static int
der_next(const uint8_t *p, const uint8_t *end, struct tlv *t)
{
	size_t len, i, nlen;

	if (end - p < 2)
		return -1;
	t->tag = p[0];
	if ((t->tag & 0x1f) == 0x1f)	/* multi-octet tags: not in our path */
		return -1;
	len = p[1];
	p += 2;
	if (len & 0x80) {
		nlen = len & 0x7f;
		if (nlen == 0 || nlen > 4 || (size_t)(end - p) < nlen)
			return -1;
		for (len = 0, i = 0; i < nlen; i++)
			len = len << 8 | p[i];
		p += nlen;
	}
	if ((size_t)(end - p) < len)
		return -1;
	t->v = p;
	t->len = len;
	t->next = p + len;
	return 0;
}

/* expect: the element at *p must have tag; *p moves past it. */
static int
expect(const uint8_t **p, const uint8_t *end, uint8_t tag, struct tlv *t)
{
	if (der_next(*p, end, t) == -1 || t->tag != tag)
		return -1;
	*p = t->next;
	return 0;
}

/* digits: n decimal digits at s as a number, or -1. */
static long
digits(const uint8_t *s, int n)
{
	long v = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* days_from_civil: days from 1970-01-01 to y-m-d in the proleptic
 * Gregorian calendar (H. Hinnant's algorithm), with no time zone. */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* der_time: UTCTime "YYMMDDHHMMSSZ" (RFC 5280 §4.1.2.5.1: YY < 50 is
 * 20YY) or GeneralizedTime "YYYYMMDDHHMMSSZ", as RFC 5280 requires them
 * (UTC, seconds, no fraction). */
static int
der_time(const struct tlv *t, int64_t *out)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30,
	    31, 30, 31 };
	const uint8_t *s = t->v;
	long y, mo, d, h, mi, sec;
	int yl;

	if (t->tag == TAG_UTCTIME && t->len == 13)
		yl = 2;
	else if (t->tag == TAG_GENTIME && t->len == 15)
		yl = 4;
	else
		return -1;
	if (s[t->len - 1] != 'Z' || (y = digits(s, yl)) < 0)
		return -1;
	if (yl == 2)
		y += y < 50 ? 2000 : 1900;
	s += yl;
	mo = digits(s, 2);
	d = digits(s + 2, 2);
	h = digits(s + 4, 2);
	mi = digits(s + 6, 2);
	sec = digits(s + 8, 2);
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 ||
	    h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
		return -1;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 ||
	    y % 400 == 0)))
		return -1;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	return 0;
}

int
cert_der_not_after(const uint8_t *der, size_t len, int64_t *out)
{
	const uint8_t *p = der, *end = der + len;
	struct tlv cert, tbs, t, validity;

	/* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
	 * OPTIONAL, serialNumber, signature, issuer, validity ... } ... } */
	if (expect(&p, end, TAG_SEQUENCE, &cert) == -1)
		return -1;
	p = cert.v;
	end = cert.next;
	if (expect(&p, end, TAG_SEQUENCE, &tbs) == -1)
		return -1;
	p = tbs.v;
	end = tbs.next;
	if (der_next(p, end, &t) == 0 && t.tag == TAG_VERSION)
		p = t.next;
	if (expect(&p, end, TAG_INTEGER, &t) == -1 ||
	    expect(&p, end, TAG_SEQUENCE, &t) == -1 ||	/* signature */
	    expect(&p, end, TAG_SEQUENCE, &t) == -1 ||	/* issuer */
	    expect(&p, end, TAG_SEQUENCE, &validity) == -1)
		return -1;
	p = validity.v;
	end = validity.next;
	if (der_next(p, end, &t) == -1)			/* notBefore */
		return -1;
	p = t.next;
	if (der_next(p, end, &t) == -1)			/* notAfter */
		return -1;
	return der_time(&t, out);
}

/* find: needle in the len bytes at hay, or NULL. */
static const uint8_t *
find(const uint8_t *hay, size_t len, const char *needle)
{
	return memmem(hay, len, needle, strlen(needle));
}

int
cert_pem_not_after(const void *pem, size_t len, int64_t *out)
{
	const uint8_t *s = pem, *begin, *end, *p;
	uint8_t *der;
	uint32_t acc = 0;
	size_t n = 0;
	int bits = 0, v, rv;

	if (s == NULL || (begin = find(s, len, PEM_BEGIN)) == NULL)
		return -1;
	begin += strlen(PEM_BEGIN);
	if ((end = find(begin, len - (size_t)(begin - s), PEM_END)) == NULL)
		return -1;
	if ((der = malloc((size_t)(end - begin) / 4 * 3 + 3)) == NULL)
		return -1;
	for (p = begin; p < end; p++) {
		if (*p == '=')
			break;
		if ((v = base64_value(*p)) < 0) {
			if (*p == '\r' || *p == '\n' || *p == ' ' ||
			    *p == '\t')
				continue;
			free(der);
			return -1;
		}
		acc = acc << 6 | (uint32_t)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			der[n++] = (uint8_t)(acc >> bits);
		}
	}
	rv = cert_der_not_after(der, n, out);
	free(der);
	return rv;
}
