/*
 * popsd.h — the daemon's shared state: one instance, owned by main.c.
 *
 * Sessions and listeners hold a pointer to it. The configuration and the
 * TLS server context are swapped as a whole on reload; a session keeps
 * what it started with (libtls connection contexts hold their own
 * references), so a reload never disturbs sessions in flight.
 */
#ifndef POPSD_POPSD_H
#define POPSD_POPSD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <ev.h>

#include "ledger.h"
#include "tlsconf.h"

struct conf;
struct tls_server;
struct session;
struct listener;
struct ledger;
struct metrics_http;

TAILQ_HEAD(session_list, session);

struct popsd {
	struct ev_loop		*loop;
	struct conf		*conf;		/* current configuration */
	struct tls_server	*tls_server;	/* current server context */
	struct ticket_keys	 tickets;	/* shared by every server context */
	struct ledger		*ledger;	/* live sessions, in all and per
						 * address, across workers */
	struct session_list	 sessions;
	unsigned		 nsessions;
	uint64_t		 next_session_id;
	/* workers N: session ids are next_session_id * id_stride +
	 * id_offset, distinct across workers. */
	unsigned		 id_stride;	/* 1, or the number of workers */
	unsigned		 id_offset;	/* 1, or this worker's number + 1 */
	int			 nworkers;	/* 1 when not forked */
	struct listener		**listeners;
	int			 nlisteners;
	struct metrics_http	*metrics_http;	/* metrics-listen, or NULL */
	bool			 accept_paused;	/* accept() failing: back-off */
	ev_timer		 accept_resume;
	ev_tstamp		 accept_logged_at; /* last pause logged, or 0 */
	unsigned		 accept_unlogged; /* pauses since, not logged */
	bool			 accept_failing; /* logged, no accept since */
	bool			 draining;	/* SIGTERM: no new sessions */
	ev_timer		 drain_timer;
};

#endif
