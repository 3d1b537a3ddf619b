/*
 * session_int.h — the inside of a session, shared by the files that make
 * it up (not for the rest of popsd, which sees session.h only):
 *
 *   session.c        life cycle, phases, timers, the pump and its watchers
 *   relay.c          moving bytes between the four buffers; half-close
 *   session_exec.c   "backend exec": asking the spawner, the daemon's stderr
 *   session_proxy.c  PROXY headers: read from a balancer, sent to a backend
 *   session_outbound.c  outbound listeners: route, resolve, TLS upstream
 *
 * The module calls only down (accounting.h for its ledger places, never
 * listener.c or main.c); what popsd-wide state it reads is in popsd.h.
 */
#ifndef POPSD_SESSION_INT_H
#define POPSD_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <ev.h>

#include "accounting.h"
#include "buf.h"
#include "conf.h"
#include "ledger.h"
#include "route.h"
#include "upstream.h"
#include "xio.h"

struct pop3;
struct popsd;
struct spawn_ticket;
struct tls_server;

/* One TLS record is at most 16 KiB: a buffer of that size moves a whole
 * record per call without holding more than one per direction. Once
 * spliced, a buffer that fills (bulk data) grows to SESSION_BULK_SIZE:
 * four records per read(2) and, through the client's write queue
 * (xio.h), per write(2). Limits before login never see the bigger size. */
#define SESSION_BUF_SIZE	(16 * 1024)
#define SESSION_BULK_SIZE	(64 * 1024)
/* Rounds of I/O per wakeup before yielding to other sessions. */
#define PUMP_ROUNDS		16

enum phase {
	PH_PROXY,		/* reading a load balancer's PROXY header */
	PH_HANDSHAKE,		/* implicit TLS handshake (pop3s) */
	PH_SPAWN,		/* waiting for the spawner (backend exec) */
	PH_CONNECT,		/* backend connect in progress */
	PH_RELAY,		/* relaying: mediated until login, then splice */
	PH_STARTTLS,		/* flushing our "+OK" to STLS */
	PH_STLS_HANDSHAKE,	/* TLS handshake after STLS */
	PH_REFUSE,		/* flushing a final "-ERR", then closing */
	PH_RESOLVE,		/* outbound, routed: looking the upstream up */
	PH_UP_NEGOTIATE,	/* outbound: greeting/CAPA/STLS, plain or TLS */
	PH_UP_HANDSHAKE,	/* outbound: TLS handshake with the upstream */
};

/* How the current phase's timer counts. */
enum deadline {
	DL_ABSOLUTE,		/* from the start of the phase */
	DL_IDLE,		/* from the last byte moved */
};

struct endpoint {
	struct xio	 io;
	ev_io		 w;
	int		 armed;		/* events the watcher is started for */
	int		 rd_wait;	/* readiness the read op waits for */
	int		 wr_wait;	/* ... the write/handshake/close op */
	bool		 eof;		/* the peer finished sending */
	bool		 shut;		/* we finished sending to the peer */
	uint64_t	 bytes_read;
	uint64_t	 bytes_written;
	struct session	*s;
};

struct resolve_req;

/* What an outbound session (listen outbound) adds. */
struct outbound {
	struct upstream		 nego;		/* upstream.c */
	struct route		 route;		/* routed mode: route.c */
	bool			 routing;	/* route stands in for the upstream */
	bool			 implicit_tls;
	struct conf_backend	 target;	/* routed: resolved at run time */
	char			 host[ROUTE_HOST_MAX + 1];	/* SNI, name check */
	char			 name[ROUTE_NAME_MAX + 1];	/* routed: USER */
	struct buf		 in, out;	/* negotiation, before relaying */
	struct resolve_req	*rq;
	char			 tls_version[24];
	char			 subject[256];	/* verified upstream certificate */
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct popsd		*d;
	struct conf		*conf;		/* as when the session began */
	uint64_t		 id;
	enum listen_kind	 kind;
	enum phase		 phase;

	struct endpoint		 client;
	struct endpoint		 backend;
	struct buf		 cin, to_backend, bin, to_client;
	struct pop3		*pop3;		/* non-NULL while mediating */
	struct tls_server	*tls_srv;	/* what the client TLS came from */
	struct spawn_ticket	*spawn;		/* backend exec request in flight */
	const struct conf_backend *target;	/* what connect_next() tries */
	struct outbound		*ob;		/* listen outbound only */
	ev_io			 errw;		/* backend exec: its stderr */
	int			 err_fd;
	int			 err_lines;	/* logged so far (bounded) */
	char			 err_buf[256];	/* partial stderr line */
	size_t			 err_len;
	struct sockaddr_storage	 peer;		/* the client (or PROXY source) */
	socklen_t		 peerlen;
	struct sockaddr_storage	 local;		/* our end (or PROXY destination) */
	socklen_t		 locallen;
	struct acct		 acct;		/* ledger places held */
	size_t			 proxy_need;	/* PROXY header bytes to read next */
	char			 via[64];	/* the balancer, when behind one */

	int			 backend_idx;	/* address being tried */
	bool			 greeted;	/* backend has said something */
	bool			 logged_in;	/* switched to splice */
	bool			 stls_used;
	bool			 auth_refused;
	bool			 refused_seen;	/* counted (metrics) */
	int			 failures_seen;	/* login failures logged */
	int			 shield_seen;	/* shield rejections logged */
	char			 user[64];
	const char		*first_eof;	/* which side ended first */

	ev_timer		 timer;
	enum deadline		 deadline;
	double			 timeout;
	ev_tstamp		 phase_start;
	ev_tstamp		 last_activity;
	const char		*timeout_reason;
	ev_tstamp		 started;

	char			 peer_addr[64];
	char			 peer_port[8];
	char			 tls_version[24];
	char			 tls_cipher[48];	/* OpenSSL names are under 40 */
	char			 detail[288];	/* error text for the log */
};

/* xio_wants: rv asks to wait for readiness; xio_want_event: which. */
static inline bool
xio_wants(ssize_t rv)
{
	return rv == XIO_WANT_READ || rv == XIO_WANT_WRITE;
}

static inline int
xio_want_event(ssize_t rv)
{
	return rv == XIO_WANT_READ ? EV_READ : EV_WRITE;
}

/* session.c */
void	session_endpoint_init(struct session *s, struct endpoint *e, int fd);
void	session_set_phase(struct session *s, enum phase ph);
void	session_set_timeout(struct session *s, enum deadline dl, double seconds,
	    const char *reason);
void	session_relay_timeout(struct session *s);
void	session_refuse(struct session *s, const char *reason, const char *text);
void	session_note_detail(struct session *s, const char *who,
	    const struct xio *x);
void	session_capture_pop3(struct session *s);
void	session_pop3_events(struct session *s, int ev);
void	session_backend_unavailable(struct session *s, const char *err);
void	session_backend_ready(struct session *s);
void	session_numeric_host(const struct sockaddr_storage *ss, socklen_t len,
	    char *host, size_t hostsz, char *port, size_t portsz);
void	session_peer_text(struct session *s);
void	session_begin(struct session *s);
void	session_pump(struct session *s);

/* session_connect: connect to s->target (the backend, or an outbound
 * session's upstream), under the connect timeout. */
void	session_connect(struct session *s);

/* relay.c: each returns -1 / false when the session was closed. */
/* relay_read / relay_write: move bytes between e and b until e would
 * block (rd_wait/wr_wait set), b is full/empty, EOF (e->eof) or an error
 * (*failed, reason in e->io.err); bytes moved. */
size_t	relay_read(struct endpoint *e, struct buf *b, bool *failed);
size_t	relay_write(struct endpoint *e, struct buf *b, bool *failed);
long	relay_io(struct session *s);		/* bytes moved */
bool	relay_halfclose(struct session *s);
bool	relay_refusal(struct session *s);	/* flush the last reply */
struct buf *relay_backend_source(struct session *s);
void	relay_bulk(struct session *s);	/* spliced: buffers may grow */
struct buf *relay_client_source(struct session *s);

/* session_exec.c */
void	session_start_spawn(struct session *s);
void	session_stderr_drain(struct session *s);

/* session_proxy.c */
int	session_send_proxy_header(struct session *s);	/* -1: refused */
bool	session_read_proxy(struct session *s);	/* false: moved on/closed */

/*
 * session_outbound.c (listen outbound):
 * outbound_begin: the client is known: refuse it unless in
 *   plaintext-allow, else connect the fixed upstream or greet it for
 *   routing. outbound_connected: the upstream's TCP connection is up
 *   (from session_backend_ready): negotiate. outbound_step: the pump for
 *   PH_UP_NEGOTIATE and PH_UP_HANDSHAKE; false if the session closed.
 *   outbound_route: called by the mediation while route.c stands in for
 *   the upstream. outbound_timeout: a resolve/connect/negotiation/
 *   handshake deadline passed: refuse. outbound_free: from
 *   session_close(); NULL s->ob ok.
 */
void	outbound_begin(struct session *s);
void	outbound_connected(struct session *s);
bool	outbound_step(struct session *s);
void	outbound_route(struct session *s);
void	outbound_timeout(struct session *s);
void	outbound_free(struct session *s);

#endif
