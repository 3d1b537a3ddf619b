/*
 * listener.h — listening sockets: bind, accept, admission control.
 */
#ifndef POPSD_LISTENER_H
#define POPSD_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

struct popsd;
struct listener;

/* listener_bind: create, bind and listen on l's address (close-on-exec,
 * non-blocking, SO_REUSEADDR; "*" tries [::] dual-stack, then 0.0.0.0).
 * Returns a listener not yet started, or NULL with the reason logged. */
struct listener *listener_bind(struct popsd *d, const struct conf_listen *l);

/* listener_adopt: wrap an already listening, non-blocking socket (socket
 * activation); the listener owns fd. NULL (fd untouched) if out of memory. */
struct listener *listener_adopt(struct popsd *d, int fd, enum listen_kind kind,
    const char *text);

/* listener_serves: is l's socket bound to the address of the "listen"
 * line cl? Lets a configuration keep its listen lines when systemd
 * passes sockets for the same addresses ("*:P" matches [::]:P and
 * 0.0.0.0:P). The kinds are for the caller to compare. */
bool	listener_serves(const struct listener *l, const struct conf_listen *cl);

/*
 * listener_inetd: inetd mode (popsd -i): serve the one connection already
 * open on fd (0: inetd and systemd Accept=yes pass it as stdin, and the
 * same socket as stdout, which popsd does not use). Checks that fd is a
 * connected stream socket, makes it non-blocking and starts its session.
 * Returns 0, or -1 with the reason in err and fd untouched.
 */
int	listener_inetd(struct popsd *d, int fd, enum listen_kind kind,
	    char *err, size_t errsz);

/* listener_start / listener_stop: watch for connections or not. */
void	listener_start(struct listener *l);
void	listener_stop(struct listener *l);

/* listener_free: stop, close the socket and free. NULL ok. */
void	listener_free(struct listener *l);

/* listener_text / listener_kind: for logs and reload comparisons. */
const char	*listener_text(const struct listener *l);
enum listen_kind listener_kind(const struct listener *l);

#endif
