/*
 * session.h — one client connection and its backend connection.
 *
 * A session runs through phases (TLS handshake, backend connect, relay
 * with the POP3 mediator until login, raw splice, closing), each with its
 * own timeout. It has one destructor, session_close(), which frees
 * everything and writes the one key=value summary line.
 */
#ifndef POPSD_SESSION_H
#define POPSD_SESSION_H

#include <stdint.h>
#include <sys/socket.h>

#include "accounting.h"
#include "conf.h"

struct popsd;
struct session;

/* session_start: take ownership of the accepted, non-blocking socket fd
 * from a listener of the given kind, and of the ledger places in a (the
 * session gives them back when it ends), and begin serving it. On failure
 * the fd is closed, the places given back and the reason logged; never
 * fails silently. When the session ends and popsd is draining with no
 * session left, the loop is asked to end (ev_break). */
void	session_start(struct popsd *d, enum listen_kind kind, int fd,
	    const struct sockaddr *peer, socklen_t peerlen, const struct acct *a);

/* session_close: end s now (reason is a short token for the log), free
 * everything it owns and log its summary line. s is invalid afterwards. */
void	session_close(struct session *s, const char *reason);

/* session_shutdown_all: end every session (SIGTERM drain timeout). */
void	session_shutdown_all(struct popsd *d, const char *reason);

#endif
