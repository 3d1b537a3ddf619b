/*
 * sockbind.c — bind and listen on a configured address (sockbind.h).
 */
#include "sockbind.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int
bind_one(const struct sockaddr *sa, socklen_t len, bool dual_stack,
    int backlog)
{
	int fd, one = 1, zero = 0, saved;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
		    dual_stack ? &zero : &one, sizeof(int));
	if (bind(fd, sa, len) == -1 || listen(fd, backlog) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
sockbind_listen(const struct conf_listen *cl, int backlog)
{
	struct sockaddr_in any4;
	int fd;

	fd = bind_one((const struct sockaddr *)&cl->addr, cl->addrlen,
	    cl->wildcard, backlog);
	if (fd == -1 && cl->wildcard && errno == EAFNOSUPPORT) {
		/* No IPv6 on this host: "*" means every IPv4 address. */
		memset(&any4, 0, sizeof(any4));
		any4.sin_family = AF_INET;
		any4.sin_port = ((const struct sockaddr_in6 *)&cl->addr)->sin6_port;
		fd = bind_one((struct sockaddr *)&any4, sizeof(any4), false,
		    backlog);
	}
	return fd;
}

bool
sockbind_accept_gone(int e)
{
	switch (e) {
	case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN:
	case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH:
	case EOPNOTSUPP: case ENETUNREACH: case ETIMEDOUT:
		return true;
	default:
		return false;
	}
}
