/*
 * certtime.h — when a certificate expires, read from its PEM text. PURE.
 *
 * libtls tells the notAfter of a peer's certificate but not of its own,
 * and popsd does not link OpenSSL itself, so the first certificate of a
 * PEM file (the leaf, in a full chain) is decoded here: base64 to DER,
 * then just enough of X.509 (RFC 5280 §4.1) to reach the validity's
 * notAfter, a UTCTime or GeneralizedTime. Bounded by its input; never
 * reads past it, whatever it holds.
 */
#ifndef POPSD_CERTTIME_H
#define POPSD_CERTTIME_H

#include <stddef.h>
#include <stdint.h>

/* cert_pem_not_after: the notAfter of the first "CERTIFICATE" block in
 * pem (len bytes, NUL not needed), as seconds since the Unix epoch, in
 * *out. 0, or -1 if there is no such block or it does not decode. */
int	cert_pem_not_after(const void *pem, size_t len, int64_t *out);

/* cert_der_not_after: the same for one DER certificate. */
int	cert_der_not_after(const uint8_t *der, size_t len, int64_t *out);

#endif
