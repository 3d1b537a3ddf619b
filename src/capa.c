/* capa.c — CAPA answer filtering and synthesis (see capa.h). */
#include "capa.h"

#include <string.h>

/* The "+OK" line of a synthesized answer (RFC 2449 §5 example wording). */
#define SYNTH_OK	"+OK Capability list follows\r\n"

static int
ascii_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* tag_is: does the capability line start with the tag name, as a whole
 * word? ASCII only: tolower() would follow the locale. */
static bool
tag_is(const char *line, size_t len, const char *name)
{
	size_t i, n = strlen(name);

	if (len < n || (len > n && line[n] != ' '))
		return false;
	for (i = 0; i < n; i++)
		if (ascii_lower((unsigned char)line[i]) != ascii_lower(name[i]))
			return false;
	return true;
}

void
capa_begin(struct capa_filter *f, const struct capa_policy *pol)
{
	f->pol = *pol;
	f->seen_resp_codes = false;
	f->seen_auth_resp_code = false;
}

bool
capa_keep(struct capa_filter *f, const char *line, size_t len)
{
	if (tag_is(line, len, "STLS"))
		return false;
	if (f->pol.hide_login &&
	    (tag_is(line, len, "USER") || tag_is(line, len, "SASL")))
		return false;
	if (tag_is(line, len, "RESP-CODES"))
		f->seen_resp_codes = true;
	if (tag_is(line, len, "AUTH-RESP-CODE"))
		f->seen_auth_resp_code = true;
	return true;
}

/* put: append the NUL-terminated s at out[*off]; the callers' size
 * checks against the *_MAX bounds make overflow impossible. */
static void
put(char *out, size_t *off, const char *s)
{
	size_t n = strlen(s);

	memcpy(out + *off, s, n);
	*off += n;
}

size_t
capa_trailer(const struct capa_filter *f, char *out, size_t outsz)
{
	size_t off = 0;

	if (outsz < CAPA_TRAILER_MAX)
		return 0;
	if (f->pol.offer_stls)
		put(out, &off, "STLS\r\n");
	/* popsd itself answers with [SYS/TEMP] and [AUTH] (RFC 3206). */
	if (!f->seen_resp_codes)
		put(out, &off, "RESP-CODES\r\n");
	if (!f->seen_auth_resp_code)
		put(out, &off, "AUTH-RESP-CODE\r\n");
	put(out, &off, ".\r\n");
	return off;
}

size_t
capa_synth(const struct capa_policy *pol, char *out, size_t outsz)
{
	struct capa_filter f;
	size_t off = 0;

	if (outsz < CAPA_SYNTH_MAX)
		return 0;
	put(out, &off, SYNTH_OK);
	/*
	 * USER/PASS is the one login every RFC 1939 server we front is known
	 * to take (APOP has no capability tag). TOP, UIDL, PIPELINING and the
	 * like are the backend's to claim, and it did not answer: claim
	 * nothing on its behalf.
	 */
	if (!pol->hide_login)
		put(out, &off, "USER\r\n");
	capa_begin(&f, pol);
	return off + capa_trailer(&f, out + off, outsz - off);
}
