/*
 * backend.h — non-blocking connection to the plaintext POP3 backend.
 */
#ifndef POPSD_BACKEND_H
#define POPSD_BACKEND_H

#include <stddef.h>

struct conf_backend;

/*
 * backend_connect_start: start a non-blocking connect to address number
 * idx of the backend (0 first). Returns the socket (non-blocking,
 * close-on-exec, TCP_NODELAY for TCP) with the connect in progress or
 * done, or -1 with a reason in err (errsz bytes). *more says whether
 * another address remains to be tried after this one.
 */
int	backend_connect_start(const struct conf_backend *b, int idx,
	    int *more, char *err, size_t errsz);

/* backend_connect_result: after the socket became writable: 0 when
 * connected, else -1 with the reason in err. */
int	backend_connect_result(int fd, char *err, size_t errsz);

#endif
