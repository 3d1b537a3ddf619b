/*
 * sockbind.h — a listening TCP socket for a configured address, shared by
 * the POP3 listeners and the metrics endpoint.
 */
#ifndef POPSD_SOCKBIND_H
#define POPSD_SOCKBIND_H

#include <stdbool.h>

#include "conf.h"

/*
 * sockbind_listen: a non-blocking, close-on-exec socket bound to cl's
 * address (SO_REUSEADDR) and listening with the given backlog. "*" is
 * [::] dual-stack, and 0.0.0.0 on a host without IPv6. Returns the fd, or
 * -1 with errno set; logs nothing (the caller says what it was for).
 */
int	sockbind_listen(const struct conf_listen *cl, int backlog);

/*
 * sockbind_accept_gone: is e an accept() error about one connection that
 * is gone with it? Linux passes a pending network error of the new
 * connection on (accept(2), "Error handling"), and a firewall may refuse
 * it (EPERM): the next connection in the queue may be fine, so accepting
 * goes on. Any other error but EAGAIN/EINTR leaves the connection queued
 * and the socket readable: the caller must pause, or it would spin.
 */
bool	sockbind_accept_gone(int e);

#endif
