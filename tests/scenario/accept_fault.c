/*
 * accept_fault.c — LD_PRELOAD shim for test_faults.py: makes accept4()
 * fail the way a kernel short of memory does, without taking the
 * connection from the queue, so the listening socket stays readable.
 *
 * While the file named by POPSD_ACCEPT_FAULT exists, accept4() returns -1
 * with errno ENOBUFS, and appends one byte to the file named by
 * POPSD_ACCEPT_FAULT_COUNT (if set), so the test can count the calls.
 * Without the file it is the real accept4(). Built by the test with
 * "cc -shared -fPIC -o accept_fault.so accept_fault.c -ldl".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);

int
accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	static accept4_fn real;
	const char *flag = getenv("POPSD_ACCEPT_FAULT");
	const char *count = getenv("POPSD_ACCEPT_FAULT_COUNT");
	int saved = errno, c;

	if (flag != NULL && access(flag, F_OK) == 0) {
		if (count != NULL && (c = open(count,
		    O_WRONLY | O_APPEND | O_CLOEXEC)) != -1) {
			(void)!write(c, "x", 1);
			close(c);
		}
		errno = ENOBUFS;
		return -1;
	}
	errno = saved;
	if (real == NULL)
		real = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
	return real(fd, sa, len, flags);
}
