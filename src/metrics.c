/* metrics.c — counters shared by the workers, Prometheus text (metrics.h). */
#include "metrics.h"

#include <sys/mman.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Other processes add to and read these through a shared mapping: only
 * sound for lock-free (hence address-free) atomics, C11 7.17.5. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2,
    "the metrics need lock-free 64-bit atomics");

#define MAX_WORKERS	64
#define CACHE_LINE	64

enum mtype { COUNTER, GAUGE };

/* One sample. Consecutive samples of the same name form one family and
 * share its HELP and TYPE lines. */
struct mdesc {
	const char	*name;
	enum mtype	 type;
	const char	*help;
	const char	*label;		/* NULL: no label */
	const char	*value;
};

static const struct mdesc descs[M_COUNT] = {
#define SESSIONS "Sessions accepted, by listener kind."
	[M_SESSIONS_POP3S] = { "popsd_sessions_total", COUNTER, SESSIONS,
	    "listener", "pop3s" },
	[M_SESSIONS_POP3] = { "popsd_sessions_total", COUNTER, SESSIONS,
	    "listener", "pop3" },
	[M_SESSIONS_TLS] = { "popsd_sessions_total", COUNTER, SESSIONS,
	    "listener", "tls" },
	[M_SESSIONS_OUTBOUND] = { "popsd_sessions_total", COUNTER, SESSIONS,
	    "listener", "outbound" },
	[M_SESSIONS_ACTIVE] = { "popsd_sessions_active", GAUGE,
	    "Sessions open now.", NULL, NULL },
	[M_STLS_UPGRADES] = { "popsd_stls_upgrades_total", COUNTER,
	    "TLS handshakes completed after STLS.", NULL, NULL },
	[M_IMPLICIT_TLS] = { "popsd_implicit_tls_sessions_total", COUNTER,
	    "TLS handshakes completed on pop3s and tls listeners.", NULL,
	    NULL },
#define LOGINS "Successful logins, by transport."
	[M_LOGINS_TLS] = { "popsd_logins_total", COUNTER, LOGINS,
	    "transport", "tls" },
	[M_LOGINS_PLAIN_ALLOWED] = { "popsd_logins_total", COUNTER, LOGINS,
	    "transport", "plaintext-allowed" },
	[M_LOGINS_PLAIN_WARNED] = { "popsd_logins_total", COUNTER, LOGINS,
	    "transport", "plaintext-warned" },
	[M_PLAIN_REFUSED] = { "popsd_plaintext_logins_refused_total", COUNTER,
	    "Sessions whose login popsd refused for lack of TLS.", NULL,
	    NULL },
	[M_LOGIN_FAILURES] = { "popsd_login_failures_total", COUNTER,
	    "Logins the backend refused (PASS, APOP or AUTH answered -ERR).",
	    NULL, NULL },
#define TLSFAIL "Client TLS handshakes that failed, by reason."
	[M_TLS_FAIL_TIMEOUT] = { "popsd_tls_handshake_failures_total",
	    COUNTER, TLSFAIL, "reason", "timeout" },
	[M_TLS_FAIL_CLOSED] = { "popsd_tls_handshake_failures_total",
	    COUNTER, TLSFAIL, "reason", "closed" },
	[M_TLS_FAIL_NOT_TLS] = { "popsd_tls_handshake_failures_total",
	    COUNTER, TLSFAIL, "reason", "not-tls" },
	[M_TLS_FAIL_VERSION] = { "popsd_tls_handshake_failures_total",
	    COUNTER, TLSFAIL, "reason", "protocol-version" },
	[M_TLS_FAIL_CIPHER] = { "popsd_tls_handshake_failures_total",
	    COUNTER, TLSFAIL, "reason", "no-shared-cipher" },
	[M_TLS_FAIL_CLIENT_CERT] = { "popsd_tls_handshake_failures_total",
	    COUNTER, TLSFAIL, "reason", "client-certificate" },
	[M_TLS_FAIL_CERT_REJECTED] = { "popsd_tls_handshake_failures_total",
	    COUNTER, TLSFAIL, "reason", "certificate-rejected" },
	[M_TLS_FAIL_OTHER] = { "popsd_tls_handshake_failures_total",
	    COUNTER, TLSFAIL, "reason", "other" },
#define TLSV "Client TLS handshakes completed, by protocol version."
	[M_TLS_V1_2] = { "popsd_tls_sessions_total", COUNTER, TLSV,
	    "version", "TLSv1.2" },
	[M_TLS_V1_3] = { "popsd_tls_sessions_total", COUNTER, TLSV,
	    "version", "TLSv1.3" },
	[M_TLS_V_OTHER] = { "popsd_tls_sessions_total", COUNTER, TLSV,
	    "version", "other" },
	[M_TLS_RESUMED] = { "popsd_tls_resumed_total", COUNTER,
	    "Client TLS handshakes that resumed an earlier session.", NULL,
	    NULL },
	[M_BACKEND_FAILURES] = { "popsd_backend_connect_failures_total",
	    COUNTER, "Sessions refused because the backend could not be "
	    "reached or started in time.", NULL, NULL },
	[M_SHIELD_REJECTIONS] = { "popsd_shield_rejections_total", COUNTER,
	    "Malformed client lines the shield refused before login.", NULL,
	    NULL },
#define LIMITS "Connections turned away by a limit."
	[M_LIMIT_SESSIONS] = { "popsd_limit_rejections_total", COUNTER,
	    LIMITS, "limit", "max-sessions" },
	[M_LIMIT_PER_IP] = { "popsd_limit_rejections_total", COUNTER,
	    LIMITS, "limit", "max-sessions-per-ip" },
	[M_LIMIT_TABLE_FULL] = { "popsd_limit_rejections_total", COUNTER,
	    LIMITS, "limit", "address-table-full" },
#define BYTES "Bytes on the client side of ended sessions, by direction."
	[M_BYTES_FROM_CLIENT] = { "popsd_client_bytes_total", COUNTER,
	    BYTES, "direction", "from_client" },
	[M_BYTES_TO_CLIENT] = { "popsd_client_bytes_total", COUNTER,
	    BYTES, "direction", "to_client" },
	[M_RELOADS] = { "popsd_reloads_total", COUNTER,
	    "Configuration reloads that took effect (SIGHUP).", NULL, NULL },
	[M_RELOAD_FAILURES] = { "popsd_reload_failures_total", COUNTER,
	    "Reloads that failed or were refused; the running configuration "
	    "stayed.", NULL, NULL },
};

/* One process's counters, on cache lines of their own: each is written
 * by one process and read by the others. */
struct slot {
	_Atomic int64_t	v[M_COUNT];
} __attribute__((aligned(CACHE_LINE)));

static struct slot		*slots;
static int			 nslots;
static int			 me;
static struct metrics_cert	 certs[METRICS_CERTS_MAX];
static int			 ncerts;

int
metrics_init(int nworkers)
{
	size_t len;

	if (nworkers < 1 || nworkers > MAX_WORKERS || slots != NULL)
		return -1;
	len = sizeof(struct slot) * (size_t)(nworkers + 1);
	/* Shared so that workers forked later count into one table. */
	slots = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slots == MAP_FAILED) {
		slots = NULL;
		return -1;
	}
	nslots = nworkers + 1;
	me = nworkers;
	return 0;
}

void
metrics_bind(int worker)
{
	if (worker >= 0 && worker < nslots)
		me = worker;
}

void
metrics_forget(int worker)
{
	if (slots == NULL || worker < 0 || worker >= nslots)
		return;
	atomic_store_explicit(&slots[worker].v[M_SESSIONS_ACTIVE], 0,
	    memory_order_relaxed);
}

void
metrics_count(enum metric id, int64_t n)
{
	if (slots == NULL || (unsigned)id >= M_COUNT)
		return;
	/* Relaxed: each figure stands alone, and only this process writes
	 * this slot. */
	atomic_fetch_add_explicit(&slots[me].v[id], n, memory_order_relaxed);
}

void
metrics_session_opened(int kind)
{
	if (kind >= 0 && kind <= M_SESSIONS_OUTBOUND - M_SESSIONS_POP3S)
		metrics_count((enum metric)(M_SESSIONS_POP3S + kind), 1);
	metrics_count(M_SESSIONS_ACTIVE, 1);
}

void
metrics_session_closed(uint64_t from_client, uint64_t to_client)
{
	metrics_count(M_SESSIONS_ACTIVE, -1);
	metrics_count(M_BYTES_FROM_CLIENT, (int64_t)from_client);
	metrics_count(M_BYTES_TO_CLIENT, (int64_t)to_client);
}

void
metrics_tls_established(const char *version, bool resumed, bool stls)
{
	enum metric v = M_TLS_V_OTHER;

	if (version != NULL && strcmp(version, "TLSv1.3") == 0)
		v = M_TLS_V1_3;
	else if (version != NULL && strcmp(version, "TLSv1.2") == 0)
		v = M_TLS_V1_2;
	metrics_count(v, 1);
	metrics_count(stls ? M_STLS_UPGRADES : M_IMPLICIT_TLS, 1);
	if (resumed)
		metrics_count(M_TLS_RESUMED, 1);
}

void
metrics_sum(int64_t out[M_COUNT])
{
	int i, k;

	memset(out, 0, sizeof(int64_t) * M_COUNT);
	for (i = 0; slots != NULL && i < nslots; i++)
		for (k = 0; k < M_COUNT; k++)
			out[k] += atomic_load_explicit(&slots[i].v[k],
			    memory_order_relaxed);
}

/* label_copy: the certificate's path as a label value: printable ASCII
 * only (a path may hold any byte; the format wants UTF-8), cut with
 * "..." at METRICS_LABEL_MAX. Escaping is the renderer's job. */
static void
label_copy(char *dst, const char *src)
{
	size_t i, n = strlen(src);

	for (i = 0; i < n && i < METRICS_LABEL_MAX; i++)
		dst[i] = (src[i] < 0x20 || src[i] > 0x7e) ? '?' : src[i];
	dst[i] = '\0';
	if (n > METRICS_LABEL_MAX)
		memcpy(dst + METRICS_LABEL_MAX - 3, "...", 4);
}

void
metrics_set_cert(int i, const char *path, int64_t not_after)
{
	if (i < 0 || i >= METRICS_CERTS_MAX || path == NULL)
		return;
	label_copy(certs[i].label, path);
	certs[i].not_after = not_after;
}

void
metrics_set_ncerts(int n)
{
	ncerts = n < 0 ? 0 : n > METRICS_CERTS_MAX ? METRICS_CERTS_MAX : n;
}

size_t
metrics_text(char *out, size_t outsz)
{
	int64_t v[M_COUNT];
	size_t n;

	metrics_sum(v);
	n = metrics_render(v, certs, ncerts, out, outsz);
	return n < outsz ? n : outsz - 1;
}

void
metrics_log(void)
{
	static char text[METRICS_TEXT_MAX];
	char *line, *save = NULL;

	(void)metrics_text(text, sizeof(text));
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		if (line[0] != '#')
			log_info("metrics: %s", line);
}

/* --- the text format (pure) ---------------------------------------------- */

struct out {
	char	*p;
	size_t	 size;
	size_t	 len;		/* needed so far; may pass size */
};

static void __attribute__((format(printf, 2, 3)))
emit(struct out *o, const char *fmt, ...)
{
	va_list ap;
	size_t room = o->len < o->size ? o->size - o->len : 0;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room ? o->p + o->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

/* emit_label: a label value, escaped (\\, \", \n) as the format says. */
static void
emit_label(struct out *o, const char *s)
{
	char buf[2 * METRICS_LABEL_MAX + 1];
	size_t n = 0;

	for (; *s != '\0' && n + 2 < sizeof(buf); s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			buf[n++] = '\\';
			buf[n++] = *s == '\n' ? 'n' : *s;
		} else
			buf[n++] = *s;
	}
	buf[n] = '\0';
	emit(o, "%s", buf);
}

static void
emit_family(struct out *o, const char *name, const char *help,
    const char *type)
{
	emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

size_t
metrics_render(const int64_t v[M_COUNT], const struct metrics_cert *cs,
    int n, char *outbuf, size_t outsz)
{
	struct out o = { outbuf, outsz, 0 };
	const struct mdesc *d;
	int i;

	if (outsz > 0)
		outbuf[0] = '\0';
	for (i = 0; i < M_COUNT; i++) {
		d = &descs[i];
		if (i == 0 || strcmp(descs[i - 1].name, d->name) != 0)
			emit_family(&o, d->name, d->help,
			    d->type == GAUGE ? "gauge" : "counter");
		if (d->label != NULL)
			emit(&o, "%s{%s=\"%s\"} %" PRId64 "\n", d->name,
			    d->label, d->value, v[i]);
		else
			emit(&o, "%s %" PRId64 "\n", d->name, v[i]);
	}
	emit_family(&o, "popsd_certificate_expiry_seconds", "When each "
	    "loaded certificate expires (its notAfter), in seconds since "
	    "the Unix epoch.", "gauge");
	for (i = 0; i < n && i < METRICS_CERTS_MAX; i++) {
		emit(&o, "popsd_certificate_expiry_seconds{certificate=\"");
		emit_label(&o, cs[i].label);
		emit(&o, "\"} %" PRId64 "\n", cs[i].not_after);
	}
	return o.len;
}

/* --- classifiers (pure) --------------------------------------------------- */

static bool
has(const char *s, const char *needle)
{
	return s != NULL && strstr(s, needle) != NULL;
}

enum metric
metrics_tls_failure(const char *reason, const char *err)
{
	if (has(reason, "timeout"))
		return M_TLS_FAIL_TIMEOUT;
	/* OpenSSL's reason strings, as libtls passes them on. */
	if (has(err, "unsupported protocol") ||
	    has(err, "no protocols available") ||
	    has(err, "version too low") || has(err, "tlsv1 alert protocol"))
		return M_TLS_FAIL_VERSION;
	if (has(err, "no shared cipher") ||
	    has(err, "no suitable signature") ||
	    has(err, "no shared signature"))
		return M_TLS_FAIL_CIPHER;
	if (has(err, "peer did not return a certificate") ||
	    has(err, "certificate verify failed") ||
	    has(err, "certificate required") ||
	    has(err, "client certificate"))
		return M_TLS_FAIL_CLIENT_CERT;
	/* The client's alert about our certificate (unknown CA, expired,
	 * wrong name...): what an expired certificate looks like here. */
	if (has(err, "alert unknown ca") || has(err, "alert bad certificate") ||
	    has(err, "alert certificate") ||
	    has(err, "alert unsupported certificate"))
		return M_TLS_FAIL_CERT_REJECTED;
	if (has(err, "wrong version number") || has(err, "http request") ||
	    has(err, "https proxy request") || has(err, "unknown protocol") ||
	    has(err, "packet length too long") ||
	    has(err, "record layer failure"))
		return M_TLS_FAIL_NOT_TLS;
	if (has(err, "EOF") || has(err, "eof") ||
	    has(err, "Connection reset") || has(err, "Broken pipe") ||
	    has(reason, "client-closed") || has(reason, "client-error"))
		return M_TLS_FAIL_CLOSED;
	return M_TLS_FAIL_OTHER;
}

enum metric
metrics_limit(const char *reason)
{
	if (reason == NULL)
		return M_COUNT;
	if (strcmp(reason, "max-sessions") == 0)
		return M_LIMIT_SESSIONS;
	if (strcmp(reason, "max-sessions-per-ip") == 0)
		return M_LIMIT_PER_IP;
	if (strcmp(reason, "address-table-full") == 0)
		return M_LIMIT_TABLE_FULL;
	return M_COUNT;
}
