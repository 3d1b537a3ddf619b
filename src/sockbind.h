/*
 * sockbind.h — a listening TCP socket for a configured address, shared by
 * the POP3 listeners and the metrics endpoint.
 */
#ifndef POPSD_SOCKBIND_H
#define POPSD_SOCKBIND_H

#include "conf.h"

/*
 * sockbind_listen: a non-blocking, close-on-exec socket bound to cl's
 * address (SO_REUSEADDR) and listening with the given backlog. "*" is
 * [::] dual-stack, and 0.0.0.0 on a host without IPv6. Returns the fd, or
 * -1 with errno set; logs nothing (the caller says what it was for).
 */
int	sockbind_listen(const struct conf_listen *cl, int backlog);

#endif
