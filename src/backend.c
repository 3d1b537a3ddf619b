/* backend.c — TCP or unix-socket connect to the backend, never blocking. */
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"

int
backend_connect_start(const struct conf_backend *b, int idx, int *more,
    char *err, size_t errsz)
{
	const struct sockaddr *sa = (const struct sockaddr *)&b->addrs[idx];
	int fd, one = 1;

	*more = idx + 1 < b->naddrs;
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errsz, "socket: %s", strerror(errno));
		return -1;
	}
	/* POP3 is a lock-step dialogue: never let Nagle hold a reply back. */
	if (sa->sa_family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, sa, b->addrlens[idx]) == -1 && errno != EINPROGRESS) {
		snprintf(err, errsz, "connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
backend_connect_result(int fd, char *err, size_t errsz)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
		soerr = errno;
	if (soerr == 0)
		return 0;
	snprintf(err, errsz, "connect: %s", strerror(soerr));
	return -1;
}
