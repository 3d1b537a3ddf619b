/*
 * listener.h — listening sockets: bind, accept, admission control.
 */
#ifndef POPSD_LISTENER_H
#define POPSD_LISTENER_H

#include "conf.h"

struct popsd;
struct listener;

/* listener_bind: create, bind and listen on l's address (close-on-exec,
 * non-blocking, SO_REUSEADDR; "*" tries [::] dual-stack, then 0.0.0.0).
 * Returns a listener not yet started, or NULL with the reason logged. */
struct listener *listener_bind(struct popsd *d, const struct conf_listen *l);

/* listener_adopt: wrap an already listening socket (socket activation). */
struct listener *listener_adopt(struct popsd *d, int fd, enum listen_kind kind,
    const char *text);

/* listener_start / listener_stop: watch for connections or not. */
void	listener_start(struct listener *l);
void	listener_stop(struct listener *l);

/* listener_free: stop, close the socket and free. NULL ok. */
void	listener_free(struct listener *l);

/* listener_text / listener_kind: for logs and reload comparisons. */
const char	*listener_text(const struct listener *l);
enum listen_kind listener_kind(const struct listener *l);

#endif
