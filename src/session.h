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

#include "conf.h"

struct popsd;
struct session;

/* session_start: take ownership of the accepted, non-blocking socket fd
 * from a listener of the given kind and begin serving it. peer_key is the
 * per-address key (LEDGER_KEY_SIZE bytes) the listener counted the client
 * under, given back when the session ends, or NULL if it counted none.
 * On failure the fd is closed and the reason logged; never fails
 * silently. */
void	session_start(struct popsd *d, enum listen_kind kind, int fd,
	    const struct sockaddr *peer, socklen_t peerlen,
	    const uint8_t *peer_key);

/* session_close: end s now (reason is a short token for the log), free
 * everything it owns and log its summary line. s is invalid afterwards. */
void	session_close(struct session *s, const char *reason);

/* session_shutdown_all: end every session (SIGTERM drain timeout). */
void	session_shutdown_all(struct popsd *d, const char *reason);

#endif
