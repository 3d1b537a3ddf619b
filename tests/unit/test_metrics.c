/*
 * test_metrics.c — the pure parts of the observability issue: the
 * Prometheus renderer (families, escaping, bounds), the classifiers, the
 * scrape request parser (table, byte by byte, bounds), a certificate's
 * notAfter from PEM (UTCTime, GeneralizedTime, chains, every truncation),
 * and the shared counters across processes (a dead worker's counts stay,
 * its gauge goes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certtime.h"
#include "metrics.h"
#include "metrics_http.h"

/* --- certificates --------------------------------------------------------- */

/* openssl req -x509 -days 30: notAfter Jan  4 07:37:23 2027 GMT (UTCTime). */
static const char pem_utc[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBgDCCASWgAwIBAgIUf33AId9IGErDr/HUVvFvl0Ch4ZUwCgYIKoZIzj0EAwIw\n"
    "FTETMBEGA1UEAwwKcG9wc2QtdGVzdDAeFw0yNjEyMDUwNzM3MjNaFw0yNzAxMDQw\n"
    "NzM3MjNaMBUxEzARBgNVBAMMCnBvcHNkLXRlc3QwWTATBgcqhkjOPQIBBggqhkjO\n"
    "PQMBBwNCAAScJ/7z5IYmeWNa9pbCYXymxnACLPMzs2Dzy+9qjhB+7FVwlSoIhKt9\n"
    "C0bC7YGPHAlG2F+hkXTNY6o8HIOPhmN3o1MwUTAdBgNVHQ4EFgQUGelQJKKBVzL9\n"
    "xsOVoi1C4ILxVI0wHwYDVR0jBBgwFoAUGelQJKKBVzL9xsOVoi1C4ILxVI0wDwYD\n"
    "VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAoTCTPyMLWyIPio3R6wuE\n"
    "Q/NlBbwzLXfaZzRiah5R4CQCIQDGq64lY/1zW6bjxo4/oR4dSBMgN8EPu9wntbuq\n"
    "1x9+vw==\n"
    "-----END CERTIFICATE-----\n";
#define PEM_UTC_NOT_AFTER	1799048243

/* -days 40000: notAfter Jun 11 07:37:23 2136 GMT (GeneralizedTime). */
static const char pem_gen[] =
    "-----BEGIN CERTIFICATE-----\r\n"
    "MIIBgjCCASegAwIBAgIUBkmDqNrbqDUjQZQ/2Tt/kCtOhu4wCgYIKoZIzj0EAwIw\r\n"
    "FTETMBEGA1UEAwwKcG9wc2QtdGVzdDAgFw0yNjEyMDUwNzM3MjNaGA8yMTM2MDYx\r\n"
    "MTA3MzcyM1owFTETMBEGA1UEAwwKcG9wc2QtdGVzdDBZMBMGByqGSM49AgEGCCqG\r\n"
    "SM49AwEHA0IABJhuD9pdER+I3QXskGl/NRaIE/kqnSmQaGHmfZwnBiagi2Oi4hcZ\r\n"
    "1zse+BEKMcD0KFvCcE/TKKT9Mj6GvZ+mC5+jUzBRMB0GA1UdDgQWBBQBtRbOIdve\r\n"
    "S7/mbsSYxTFyGTOEAzAfBgNVHSMEGDAWgBQBtRbOIdveS7/mbsSYxTFyGTOEAzAP\r\n"
    "BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDTFwkK9dJhc2bp/yfL\r\n"
    "51DwQCBSCXI2+2pfJR9iNMiMDQIhAJVN3jpYfD8TJPjQt/klR/pyRSzLmriZ/LJg\r\n"
    "vW3mbnP7\r\n"
    "-----END CERTIFICATE-----\r\n";
#define PEM_GEN_NOT_AFTER	5252456243LL

static void
test_pem_dates(void **state)
{
	char chain[sizeof(pem_utc) + sizeof(pem_gen) + 64];
	int64_t t = 0;

	(void)state;
	assert_int_equal(cert_pem_not_after(pem_utc, strlen(pem_utc), &t), 0);
	assert_true(t == PEM_UTC_NOT_AFTER);
	assert_int_equal(cert_pem_not_after(pem_gen, strlen(pem_gen), &t), 0);
	assert_true(t == PEM_GEN_NOT_AFTER);
	/* A full chain: the first certificate (the leaf) counts. */
	snprintf(chain, sizeof(chain), "junk before\n%s%s", pem_gen, pem_utc);
	assert_int_equal(cert_pem_not_after(chain, strlen(chain), &t), 0);
	assert_true(t == PEM_GEN_NOT_AFTER);
	assert_int_equal(cert_pem_not_after("", 0, &t), -1);
	assert_int_equal(cert_pem_not_after(NULL, 0, &t), -1);
	assert_int_equal(cert_pem_not_after("-----BEGIN CERTIFICATE-----\n"
	    "AAAA\n-----END CERTIFICATE-----\n", 60, &t), -1);
	assert_int_equal(cert_pem_not_after("-----BEGIN CERTIFICATE-----\n"
	    "MII*\n-----END CERTIFICATE-----\n", 60, &t), -1);
}

/* Every prefix of the PEM, and of the DER: never a date, never a read
 * past the end (ASan in make asan / fuzz). */
static void
test_pem_truncated(void **state)
{
	size_t n, len = strlen(pem_utc);
	char *copy;
	int64_t t;

	(void)state;
	for (n = 0; n < len - 1; n++) {
		copy = malloc(n ? n : 1);
		memcpy(copy, pem_utc, n);
		/* Only once the END line is whole can it decode at all. */
		if (n < len - 1 - strlen("-----END CERTIFICATE-----"))
			assert_int_equal(cert_pem_not_after(copy, n, &t), -1);
		else
			(void)cert_pem_not_after(copy, n, &t);
		free(copy);
	}
}

/* A minimal DER certificate around one notAfter of the given tag. */
static size_t
der_with(uint8_t tag, const char *when, uint8_t *out)
{
	uint8_t validity[64], tbs[96];
	size_t wl = strlen(when), vl, tl, n = 0;
	static const uint8_t before[] = { 0x17, 13, '2', '6', '0', '1', '0',
	    '1', '0', '0', '0', '0', '0', '0', 'Z' };

	vl = 0;
	memcpy(validity, before, sizeof(before));
	vl += sizeof(before);
	validity[vl++] = tag;
	validity[vl++] = (uint8_t)wl;
	memcpy(validity + vl, when, wl);
	vl += wl;
	tl = 0;
	tbs[tl++] = 0x02; tbs[tl++] = 1; tbs[tl++] = 7;	/* serial */
	tbs[tl++] = 0x30; tbs[tl++] = 0;		/* signature */
	tbs[tl++] = 0x30; tbs[tl++] = 0;		/* issuer */
	tbs[tl++] = 0x30; tbs[tl++] = (uint8_t)vl;
	memcpy(tbs + tl, validity, vl);
	tl += vl;
	out[n++] = 0x30; out[n++] = (uint8_t)(tl + 2);
	out[n++] = 0x30; out[n++] = (uint8_t)tl;
	memcpy(out + n, tbs, tl);
	return n + tl;
}

static void
test_der_times(void **state)
{
	static const struct {
		uint8_t		 tag;
		const char	*when;
		int64_t		 want;	/* -1: refused */
	} cases[] = {
		{ 0x17, "700101000000Z", 0 },
		{ 0x17, "491231235959Z", 2524607999 },	/* YY < 50: 20YY */
		{ 0x17, "500101000000Z", -631152000 },	/* YY >= 50: 19YY */
		{ 0x18, "20240229120000Z", 1709208000 },	/* leap day */
		{ 0x18, "20230229120000Z", -1 },
		{ 0x18, "21000229120000Z", -1 },		/* not leap */
		{ 0x18, "20000229000000Z", 951782400 },	/* leap */
		{ 0x18, "99991231235959Z", 253402300799LL },
		{ 0x17, "700101000000", -1 },		/* no Z */
		{ 0x17, "7001010000+0100", -1 },
		{ 0x18, "700101000000Z", -1 },		/* wrong length */
		{ 0x17, "701301000000Z", -1 },		/* month 13 */
		{ 0x17, "700132000000Z", -1 },
		{ 0x17, "700101240000Z", -1 },
		{ 0x17, "7001010a0000Z", -1 },
		{ 0x04, "700101000000Z", -1 },		/* not a time */
	};
	uint8_t der[160];
	size_t i, n, k;
	int64_t t;
	int rv;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = der_with(cases[i].tag, cases[i].when, der);
		rv = cert_der_not_after(der, n, &t);
		if (cases[i].want == -1)
			assert_int_equal(rv, -1);
		else {
			assert_int_equal(rv, 0);
			assert_true(t == cases[i].want);
		}
		for (k = 0; k < n; k++)		/* every truncation */
			assert_int_equal(cert_der_not_after(der, k, &t), -1);
	}
	/* Lengths that lie: longer than the input, or indefinite. */
	n = der_with(0x17, "700101000000Z", der);
	der[1] = 0x7f;
	assert_int_equal(cert_der_not_after(der, n, &t), -1);
	der[1] = 0x80;
	assert_int_equal(cert_der_not_after(der, n, &t), -1);
	der[1] = 0x85;
	assert_int_equal(cert_der_not_after(der, n, &t), -1);
}

/* --- the renderer --------------------------------------------------------- */

static char text[METRICS_TEXT_MAX];

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay++;
	}
	return n;
}

static void
test_render(void **state)
{
	int64_t v[M_COUNT] = { 0 };
	struct metrics_cert c[2];
	size_t n;

	(void)state;
	v[M_SESSIONS_POP3] = 12;
	v[M_SESSIONS_ACTIVE] = 3;
	v[M_LOGINS_PLAIN_WARNED] = 7;
	v[M_TLS_FAIL_TIMEOUT] = 2;
	v[M_BYTES_TO_CLIENT] = 10000000000LL;
	snprintf(c[0].label, sizeof(c[0].label), "/etc/popsd/a.pem");
	c[0].not_after = 1799048243;
	snprintf(c[1].label, sizeof(c[1].label), "we\"ird\\na\nme");
	c[1].not_after = -5;
	n = metrics_render(v, c, 2, text, sizeof(text));
	assert_int_equal(n, strlen(text));
	assert_non_null(strstr(text,
	    "# TYPE popsd_sessions_total counter\n"
	    "popsd_sessions_total{listener=\"pop3s\"} 0\n"
	    "popsd_sessions_total{listener=\"pop3\"} 12\n"
	    "popsd_sessions_total{listener=\"tls\"} 0\n"));
	assert_non_null(strstr(text, "# TYPE popsd_sessions_active gauge\n"
	    "popsd_sessions_active 3\n"));
	assert_non_null(strstr(text,
	    "popsd_logins_total{transport=\"plaintext-warned\"} 7\n"));
	assert_non_null(strstr(text,
	    "popsd_tls_handshake_failures_total{reason=\"timeout\"} 2\n"));
	assert_non_null(strstr(text,
	    "popsd_client_bytes_total{direction=\"to_client\"} 10000000000\n"));
	assert_non_null(strstr(text, "# TYPE popsd_certificate_expiry_seconds "
	    "gauge\npopsd_certificate_expiry_seconds{certificate="
	    "\"/etc/popsd/a.pem\"} 1799048243\n"
	    "popsd_certificate_expiry_seconds{certificate="
	    "\"we\\\"ird\\\\na\\nme\"} -5\n"));
	/* One HELP and one TYPE per family. */
	assert_int_equal(count(text, "# TYPE popsd_sessions_total "), 1);
	assert_int_equal(count(text, "# HELP popsd_logins_total "), 1);
	assert_int_equal(count(text, "# TYPE "), count(text, "# HELP "));
	assert_int_equal(count(text, "# TYPE "), 17);
	assert_int_equal(count(text, "\n"), 2 * 17 + M_COUNT + 2);
	assert_int_equal(text[n - 1], '\n');
}

/* The worst case fits the bound; a short buffer is cut, NUL-terminated,
 * and told the length it would need. */
static void
test_render_bounds(void **state)
{
	int64_t v[M_COUNT];
	struct metrics_cert c[METRICS_CERTS_MAX];
	char small[100];
	size_t n, full;
	int i;

	(void)state;
	for (i = 0; i < M_COUNT; i++)
		v[i] = INT64_MIN;
	for (i = 0; i < METRICS_CERTS_MAX; i++) {
		memset(c[i].label, '"', METRICS_LABEL_MAX);
		c[i].label[METRICS_LABEL_MAX] = '\0';
		c[i].not_after = INT64_MIN;
	}
	full = metrics_render(v, c, METRICS_CERTS_MAX, text, sizeof(text));
	assert_true(full < sizeof(text));
	assert_int_equal(full, strlen(text));
	n = metrics_render(v, c, METRICS_CERTS_MAX, small, sizeof(small));
	assert_int_equal(n, full);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(metrics_render(v, c, 0, NULL, 0) + 0 > 0, 1);
	/* More than METRICS_CERTS_MAX asked for: the bound holds. */
	assert_int_equal(metrics_render(v, c, METRICS_CERTS_MAX + 5, text,
	    sizeof(text)), full);
}

/* --- classifiers ------------------------------------------------------------ */

static void
test_classifiers(void **state)
{
	static const struct {
		const char	*reason;
		const char	*err;
		enum metric	 want;
	} cases[] = {
		{ "timeout-handshake", "", M_TLS_FAIL_TIMEOUT },
		{ "tls-handshake-failed", "client: tls_handshake: handshake "
		    "failed: error:0A00010B:SSL routines::wrong version number",
		    M_TLS_FAIL_NOT_TLS },
		{ "tls-handshake-failed", "client: tls_handshake: handshake "
		    "failed: error:0A00009C:SSL routines::http request",
		    M_TLS_FAIL_NOT_TLS },
		{ "tls-handshake-failed", "client: tls_handshake: handshake "
		    "failed: error:0A000126:SSL routines::unexpected eof while "
		    "reading", M_TLS_FAIL_CLOSED },
		{ "tls-handshake-failed", "client: tls_handshake: handshake "
		    "failed: error:0A000102:SSL routines::unsupported protocol",
		    M_TLS_FAIL_VERSION },
		{ "tls-handshake-failed", "client: tls_handshake: handshake "
		    "failed: error:0A0000C1:SSL routines::no shared cipher",
		    M_TLS_FAIL_CIPHER },
		{ "tls-handshake-failed", "client: tls_handshake: handshake "
		    "failed: error:0A0000C7:SSL routines::peer did not return a "
		    "certificate", M_TLS_FAIL_CLIENT_CERT },
		{ "tls-handshake-failed", "client: tls_handshake: handshake "
		    "failed: error:0A000418:SSL routines::tlsv1 alert unknown ca",
		    M_TLS_FAIL_CERT_REJECTED },
		{ "tls-handshake-failed", "client: tls_handshake: handshake "
		    "failed: error:0A000415:SSL routines::sslv3 alert "
		    "certificate expired", M_TLS_FAIL_CERT_REJECTED },
		{ "tls-handshake-failed", "client: tls_handshake: something "
		    "new", M_TLS_FAIL_OTHER },
		{ "watcher-error", NULL, M_TLS_FAIL_OTHER },
		{ NULL, NULL, M_TLS_FAIL_OTHER },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(metrics_tls_failure(cases[i].reason,
		    cases[i].err), cases[i].want);
	assert_int_equal(metrics_limit("max-sessions"), M_LIMIT_SESSIONS);
	assert_int_equal(metrics_limit("max-sessions-per-ip"), M_LIMIT_PER_IP);
	assert_int_equal(metrics_limit("address-table-full"),
	    M_LIMIT_TABLE_FULL);
	assert_int_equal(metrics_limit("other"), M_COUNT);
	assert_int_equal(metrics_limit(NULL), M_COUNT);
}

/* --- the request parser ------------------------------------------------------ */

static const struct {
	const char		*req;
	enum http_verdict	 want;
	bool			 head;
} requests[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", HTTP_OK,
	    false },
	{ "GET /metrics HTTP/1.0\r\n\r\n", HTTP_OK, false },
	{ "GET /metrics HTTP/1.0\n\n", HTTP_OK, false },
	{ "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", HTTP_OK, false },
	{ "HEAD /metrics HTTP/1.1\r\n\r\n", HTTP_OK, true },
	{ "GET / HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND, false },
	{ "GET /metricsx HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND, false },
	{ "GET /metrics/ HTTP/1.1\r\n\r\n", HTTP_NOT_FOUND, false },
	{ "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
	    HTTP_BAD_METHOD, false },
	{ "get /metrics HTTP/1.1\r\n\r\n", HTTP_BAD_METHOD, false },
	{ "GET /metrics HTTP/2.0\r\n\r\n", HTTP_BAD_REQUEST, false },
	{ "GET /metrics\r\n\r\n", HTTP_BAD_REQUEST, false },
	{ "GET  /metrics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST, false },
	{ " /metrics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST, false },
	{ "GET /met\x01rics HTTP/1.1\r\n\r\n", HTTP_BAD_REQUEST, false },
	{ "GET /metrics HTTP/1.1 \r\n\r\n", HTTP_BAD_REQUEST, false },
	{ "\r\n\r\n", HTTP_BAD_REQUEST, false },
	{ "\x16\x03\x01\x02\xff\x01\r\n", HTTP_BAD_REQUEST, false },
};

static void
test_http_table(void **state)
{
	size_t i;
	bool head;

	(void)state;
	for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		assert_int_equal(metrics_http_parse(requests[i].req,
		    strlen(requests[i].req), METRICS_HTTP_REQ_MAX, &head),
		    requests[i].want);
		assert_int_equal(head, requests[i].head);
	}
}

/* Byte by byte: nothing is decided before the request line is whole,
 * and nothing but a bad request line before the blank line. */
static void
test_http_trickle(void **state)
{
	enum http_verdict v;
	size_t i, n, len;
	bool head;

	(void)state;
	for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		len = strlen(requests[i].req);
		for (n = 0; n < len; n++) {
			v = metrics_http_parse(requests[i].req, n,
			    METRICS_HTTP_REQ_MAX, &head);
			if (v != HTTP_MORE) {
				assert_int_equal(v, HTTP_BAD_REQUEST);
				assert_int_equal(requests[i].want,
				    HTTP_BAD_REQUEST);
				assert_non_null(memchr(requests[i].req, '\n',
				    n));
			}
		}
	}
}

static void
test_http_bounds(void **state)
{
	static char big[METRICS_HTTP_REQ_MAX + 10];
	bool head;

	(void)state;
	memset(big, 'a', sizeof(big));
	assert_int_equal(metrics_http_parse(big, METRICS_HTTP_REQ_MAX,
	    METRICS_HTTP_REQ_MAX, &head), HTTP_TOO_LARGE);
	assert_int_equal(metrics_http_parse(big, METRICS_HTTP_REQ_MAX - 1,
	    METRICS_HTTP_REQ_MAX, &head), HTTP_MORE);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	assert_int_equal(metrics_http_parse(big, METRICS_HTTP_REQ_MAX,
	    METRICS_HTTP_REQ_MAX, &head), HTTP_TOO_LARGE);
	/* A blank line beyond the bound is not looked for. */
	memcpy(big + METRICS_HTTP_REQ_MAX, "\r\n\r\n", 4);
	assert_int_equal(metrics_http_parse(big, sizeof(big),
	    METRICS_HTTP_REQ_MAX, &head), HTTP_TOO_LARGE);
	assert_int_equal(metrics_http_parse("", 0, METRICS_HTTP_REQ_MAX,
	    &head), HTTP_MORE);
}

/* --- across processes -------------------------------------------------------- */

static void
child_counts(int worker, int64_t n)
{
	pid_t pid = fork();
	int status;

	assert_true(pid != -1);
	if (pid == 0) {
		metrics_bind(worker);
		metrics_session_opened(0);
		metrics_count(M_LOGIN_FAILURES, n);
		_exit(0);	/* dies with its session open */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(status, 0);
}

static void
test_shared_counts(void **state)
{
	int64_t v[M_COUNT];

	(void)state;
	metrics_sum(v);			/* before init: zeros */
	assert_true(v[M_LOGIN_FAILURES] == 0);
	metrics_count(M_LOGIN_FAILURES, 1);	/* a no-op */
	assert_int_equal(metrics_init(2), 0);
	assert_int_equal(metrics_init(2), -1);	/* once */
	metrics_count(M_LOGIN_FAILURES, 2);	/* the master's slot */
	child_counts(0, 5);
	child_counts(1, 10);
	metrics_sum(v);
	assert_true(v[M_LOGIN_FAILURES] == 17);
	assert_true(v[M_SESSIONS_ACTIVE] == 2);
	assert_true(v[M_SESSIONS_POP3S] == 2);
	/* Worker 0 died: its session is gone, its counts stay; its
	 * successor adds to them. */
	metrics_forget(0);
	metrics_sum(v);
	assert_true(v[M_LOGIN_FAILURES] == 17);
	assert_true(v[M_SESSIONS_ACTIVE] == 1);
	child_counts(0, 1);
	metrics_forget(0);
	metrics_forget(1);
	metrics_forget(7);		/* out of range: ignored */
	metrics_count(M_COUNT, 1);	/* likewise */
	metrics_sum(v);
	assert_true(v[M_LOGIN_FAILURES] == 18);
	assert_true(v[M_SESSIONS_POP3S] == 3);
	assert_true(v[M_SESSIONS_ACTIVE] == 0);
	/* What a scrape shows: the sums and this process's certificates. */
	metrics_set_cert(0, "/c.pem", 42);
	metrics_set_ncerts(1);
	assert_true(metrics_text(text, sizeof(text)) == strlen(text));
	assert_non_null(strstr(text, "popsd_login_failures_total 18\n"));
	assert_non_null(strstr(text,
	    "popsd_certificate_expiry_seconds{certificate=\"/c.pem\"} 42\n"));
	metrics_set_ncerts(0);
	(void)metrics_text(text, sizeof(text));
	assert_null(strstr(text, "/c.pem"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pem_dates),
		cmocka_unit_test(test_pem_truncated),
		cmocka_unit_test(test_der_times),
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_render_bounds),
		cmocka_unit_test(test_classifiers),
		cmocka_unit_test(test_http_table),
		cmocka_unit_test(test_http_trickle),
		cmocka_unit_test(test_http_bounds),
		cmocka_unit_test(test_shared_counts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
