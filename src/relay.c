/*
 * relay.c — a session's bytes: read into the four bounded buffers, let
 * the POP3 mediator act on them while it is there, write them out, and
 * propagate EOF once what is owed has drained (see session.c's diagram).
 * A full buffer stops its reader: nothing here ever grows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "popsd.h"
#include "session.h"
#include "session_int.h"
#include "pop3.h"

static void
activity(struct session *s)
{
	s->last_activity = ev_now(s->d->loop);
}

/* relay_read: fill b from e until it would block, ends, fails or b is full.
 * Returns bytes read; sets e->eof, e->rd_wait, or *failed. */
size_t
relay_read(struct endpoint *e, struct buf *b, bool *failed)
{
	size_t total = 0, avail;
	uint8_t *p;
	ssize_t n;

	while (!e->eof && e->rd_wait == 0 &&
	    (p = buf_wptr(b, &avail)) != NULL) {
		n = xio_read(&e->io, p, avail);
		if (n > 0) {
			buf_commit(b, (size_t)n);
			total += (size_t)n;
			e->bytes_read += (uint64_t)n;
		} else if (n == XIO_EOF)
			e->eof = true;
		else if (xio_wants(n))
			e->rd_wait = xio_want_event(n);
		else {
			*failed = true;
			break;
		}
	}
	return total;
}

/* relay_write: drain b into e until it would block or fails, then send
 * what e's TLS queued with one write(2). Returns plaintext bytes taken
 * plus ciphertext bytes sent (progress, for the idle timer). */
size_t
relay_write(struct endpoint *e, struct buf *b, bool *failed)
{
	size_t total = 0, len, sent = 0;
	const uint8_t *p;
	ssize_t n;
	int rv;

	while (e->wr_wait == 0 && !e->shut && (p = buf_rptr(b, &len)) != NULL) {
		n = xio_write(&e->io, p, len);
		if (n > 0) {
			buf_consume(b, (size_t)n);
			total += (size_t)n;
			e->bytes_written += (uint64_t)n;
		} else if (xio_wants(n))
			e->wr_wait = xio_want_event(n);
		else {
			*failed = true;
			return total;
		}
	}
	if (e->wr_wait == 0 && xio_pending(&e->io) > 0) {
		rv = xio_flush(&e->io, &sent);
		total += sent;
		if (rv == XIO_ERR)
			*failed = true;
		else if (xio_wants(rv))
			e->wr_wait = xio_want_event(rv);
	}
	return total;
}

/* The buffer whose bytes go to the backend next: what the mediator queued
 * first, then (spliced) the raw client input. */
struct buf *
relay_backend_source(struct session *s)
{
	if (!buf_empty(&s->to_backend) || s->pop3 != NULL)
		return &s->to_backend;
	return &s->cin;
}

struct buf *
relay_client_source(struct session *s)
{
	if (!buf_empty(&s->to_client) || s->pop3 != NULL)
		return &s->to_client;
	return &s->bin;
}

/* relay_bulk: the session is spliced: its relay buffers and the client's
 * write queue may grow once bulk data fills them. Nothing is allocated
 * here: an idle spliced session still holds no buffer memory. */
void
relay_bulk(struct session *s)
{
	buf_set_max(&s->cin, SESSION_BULK_SIZE);
	buf_set_max(&s->bin, SESSION_BULK_SIZE);
	xio_bulk(&s->client.io);
}

/* mediate_events: act on POP3_EV_* bits. */
static void
mediate_events(struct session *s, int ev)
{
	if (ev & POP3_EV_CLOSE) {
		const char *why = pop3_close_reason(s->pop3);

		session_capture_pop3(s);
		session_set_phase(s, PH_REFUSE);
		s->first_eof = why ? why : "protocol-error";
		session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_drain,
		    "timeout-drain");
	} else if (ev & POP3_EV_STARTTLS) {
		session_set_phase(s, PH_STARTTLS);
		session_set_timeout(s, DL_ABSOLUTE, s->conf->timeout_handshake,
		    "timeout-handshake");
	} else if (ev & POP3_EV_SPLICE) {
		session_capture_pop3(s);
		pop3_free(s->pop3);
		s->pop3 = NULL;
		s->logged_in = true;
		relay_bulk(s);
		session_relay_timeout(s);
	}
}

/*
 * mediate: let the mediator act on what arrived. Both directions are
 * offered on every round, even with empty input: a reply the mediator
 * queued while an output buffer was full goes out once it has drained.
 */
static void
mediate(struct session *s, bool client_ended, bool backend_ended)
{
	int ev;

	if (s->pop3 == NULL)
		return;
	ev = pop3_backend_input(s->pop3, &s->bin, &s->to_client);
	if (backend_ended)
		ev |= pop3_backend_eof(s->pop3, &s->to_client);
	if (!(ev & (POP3_EV_SPLICE | POP3_EV_CLOSE))) {
		ev |= pop3_client_input(s->pop3, &s->cin, &s->to_backend,
		    &s->to_client);
		if (client_ended)
			ev |= pop3_client_eof(s->pop3, &s->to_client);
	}
	if (s->ob != NULL && s->ob->routing && !(ev & POP3_EV_CLOSE)) {
		/* Routed outbound: what the mediator forwarded is answered
		 * here until the client names its server. */
		outbound_route(s);
		ev |= pop3_backend_input(s->pop3, &s->bin, &s->to_client);
	}
	session_pop3_events(s, ev);
	if (ev)
		mediate_events(s, ev);
}

/* relay_io: one round of reads and writes; returns bytes moved, or -1
 * when the session was closed. */
long
relay_io(struct session *s)
{
	bool failed = false, was_greeted = s->greeted;
	bool ceof = s->client.eof, beof = s->backend.eof;
	size_t moved = 0;

	if (s->phase == PH_RELAY)
		moved += relay_read(&s->client, &s->cin, &failed);
	if (failed) {
		session_note_detail(s, "client", &s->client.io);
		session_close(s, "client-error");
		return -1;
	}
	if (s->phase == PH_RELAY || s->phase == PH_STARTTLS) {
		moved += relay_read(&s->backend, &s->bin, &failed);
		if (failed) {
			session_note_detail(s, "backend", &s->backend.io);
			session_close(s, "backend-error");
			return -1;
		}
	}
	if (s->bin.len > 0 || s->backend.bytes_read > 0)
		s->greeted = true;
	if (s->phase == PH_RELAY)
		mediate(s, s->client.eof && !ceof, s->backend.eof && !beof);
	moved += relay_write(&s->backend, relay_backend_source(s), &failed);
	if (failed) {
		session_note_detail(s, "backend", &s->backend.io);
		session_close(s, "backend-error");
		return -1;
	}
	moved += relay_write(&s->client, relay_client_source(s), &failed);
	if (failed) {
		session_note_detail(s, "client", &s->client.io);
		session_close(s, "client-error");
		return -1;
	}
	if (moved)
		activity(s);
	if (s->client.eof && !ceof && s->first_eof == NULL)
		s->first_eof = "client-closed";
	if (s->backend.eof && !beof && s->first_eof == NULL)
		s->first_eof = "backend-closed";
	if (s->phase == PH_RELAY && ((s->greeted && !was_greeted) ||
	    s->client.eof != ceof || s->backend.eof != beof))
		session_relay_timeout(s);
	return (long)moved;
}

/* What is still owed to one side once the other has ended. */
static bool
backend_owed(struct session *s)
{
	return !buf_empty(&s->to_backend) ||
	    (s->pop3 == NULL && !buf_empty(&s->cin));
}

static bool
client_owed(struct session *s)
{
	return !buf_empty(&s->to_client) || xio_pending(&s->client.io) > 0 ||
	    (s->pop3 == NULL && !buf_empty(&s->bin));
}

/*
 * relay_halfclose: propagate EOF once what is owed has drained: the
 * backend gets a FIN, the client a close_notify and a FIN. The session
 * ends when nothing more can reach the client. Returns false if closed.
 */
bool
relay_halfclose(struct session *s)
{
	int rv;

	if (s->client.eof && !s->backend.shut && !backend_owed(s)) {
		(void)xio_shutdown(&s->backend.io);
		s->backend.shut = true;
	}
	if (s->backend.eof && !s->client.shut && !client_owed(s) &&
	    s->client.wr_wait == 0) {
		rv = xio_shutdown(&s->client.io);
		if (xio_wants(rv)) {
			s->client.wr_wait = xio_want_event(rv);
			return true;
		}
		s->client.shut = true;
	}
	if (s->client.shut || (s->client.eof && s->backend.eof &&
	    !client_owed(s))) {
		session_close(s, s->first_eof ? s->first_eof : "closed");
		return false;
	}
	return true;
}

/* relay_refusal: flush the final reply, close_notify, done. */
bool
relay_refusal(struct session *s)
{
	bool failed = false;
	int rv;

	(void)relay_write(&s->client, &s->to_client, &failed);
	if (failed) {
		session_note_detail(s, "client", &s->client.io);
		session_close(s, s->first_eof);
		return false;
	}
	if (!buf_empty(&s->to_client) || xio_pending(&s->client.io) > 0 ||
	    s->client.wr_wait != 0)
		return true;
	rv = xio_shutdown(&s->client.io);
	if (xio_wants(rv)) {
		s->client.wr_wait = xio_want_event(rv);
		return true;
	}
	/* What the client sent unread (e.g. commands pipelined before an
	 * outbound upstream failed) would turn our FIN into a reset that
	 * can destroy the "-ERR" before the client reads it. */
	xio_discard_input(s->client.io.fd);
	session_close(s, s->first_eof);
	return false;
}
