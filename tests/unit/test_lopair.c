/*
 * test_lopair.c — src/lopair.c over real loopback sockets: a pair is a
 * connected TCP pair whose accepted end is blocking and sees our end as
 * its peer; connections from anyone else never reach the listener's
 * queue (a flood leaves it empty and pairs keep coming at once); slots
 * are bounded and a cancelled pair's leftover is turned away.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "lopair.h"

#define FLOOD	200

/* make_pair: one pair, waiting (bounded) for the listener to say so. */
static int
make_pair(struct lopair *lp, int *ours, int *theirs)
{
	struct pollfd pfd = { .fd = lopair_fd(lp), .events = POLLIN };
	int slot, got, rv, i;

	slot = lopair_connect(lp);
	assert_true(slot >= 0 && slot < LOPAIR_MAX);
	for (i = 0; i < 100; i++) {
		if ((rv = lopair_accept(lp, &got, ours, theirs)) == 1) {
			assert_int_equal(got, slot);
			return slot;
		}
		assert_int_equal(rv, 0);
		assert_true(poll(&pfd, 1, 100) >= 0);
	}
	fail_msg("no pair after 10 s");
	return -1;
}

static void
check_pair(int ours, int theirs)
{
	struct sockaddr_in a, b;
	socklen_t la = sizeof(a), lb = sizeof(b);
	char buf[8];

	assert_int_equal(getsockname(ours, (struct sockaddr *)&a, &la), 0);
	assert_int_equal(getpeername(theirs, (struct sockaddr *)&b, &lb), 0);
	assert_int_equal(a.sin_family, AF_INET);
	assert_int_equal(b.sin_family, AF_INET);
	assert_int_equal(a.sin_port, b.sin_port);
	assert_int_equal(a.sin_addr.s_addr, b.sin_addr.s_addr);
	assert_int_equal(ntohl(b.sin_addr.s_addr), INADDR_LOOPBACK);
	/* A daemon under inetd gets a blocking socket; popsd wants its end
	 * non-blocking; neither leaks into a child. */
	assert_false(fcntl(theirs, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(ours, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(theirs, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(ours, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(write(ours, "ping", 4), 4);
	assert_int_equal(read(theirs, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(write(theirs, "pong", 4), 4);
	assert_int_equal(send(ours, "", 0, 0), 0);
	{
		struct pollfd pfd = { .fd = ours, .events = POLLIN };

		assert_int_equal(poll(&pfd, 1, 5000), 1);
	}
	assert_int_equal(read(ours, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "pong", 4);
}

static void
test_pair(void **state)
{
	struct lopair *lp;
	int ours, theirs, i;

	(void)state;
	assert_non_null(lp = lopair_new());
	for (i = 0; i < 3 * LOPAIR_MAX; i++) {
		make_pair(lp, &ours, &theirs);
		check_pair(ours, theirs);
		close(ours);
		close(theirs);
	}
	lopair_free(lp);
}

static int
listener_port(const struct lopair *lp)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	assert_int_equal(getsockname(lopair_fd(lp), (struct sockaddr *)&sin,
	    &len), 0);
	return sin.sin_port;
}

/* flood: FLOOD non-blocking connects to the listener, from ordinary
 * sockets (the kernel picks their ports). */
static void
flood(const struct lopair *lp, int fds[FLOOD])
{
	struct sockaddr_in to;
	int i;

	memset(&to, 0, sizeof(to));
	to.sin_family = AF_INET;
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = (in_port_t)listener_port(lp);
	for (i = 0; i < FLOOD; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		assert_true(fds[i] >= 0);
		assert_true(connect(fds[i], (struct sockaddr *)&to,
		    sizeof(to)) == 0 || errno == EINPROGRESS);
	}
}

static void
test_foreign_connections_never_get_in(void **state)
{
	struct lopair *lp;
	struct pollfd pfd;
	int fds[FLOOD], ours, theirs, i, a, slot;

	(void)state;
	assert_non_null(lp = lopair_new());
	/* With nothing in flight, and again with a pair in flight. */
	flood(lp, fds);
	slot = lopair_connect(lp);
	assert_true(slot >= 0);
	lopair_cancel(lp, slot);
	make_pair(lp, &ours, &theirs);
	check_pair(ours, theirs);
	close(ours);
	close(theirs);
	/* None of them was answered: still connecting, nothing queued. */
	for (i = 0; i < FLOOD; i++) {
		pfd.fd = fds[i];
		pfd.events = POLLOUT;
		assert_int_equal(poll(&pfd, 1, 0), 0);
		close(fds[i]);
	}
	a = accept4(lopair_fd(lp), NULL, NULL, SOCK_NONBLOCK);
	assert_int_equal(a, -1);
	assert_int_equal(errno, EAGAIN);
	lopair_free(lp);
}

static void
test_slots_are_bounded(void **state)
{
	struct lopair *lp;
	int slots[LOPAIR_MAX], ours, theirs, i, slot, n;

	(void)state;
	assert_non_null(lp = lopair_new());
	for (i = 0; i < LOPAIR_MAX; i++)
		assert_true((slots[i] = lopair_connect(lp)) >= 0);
	assert_int_equal(lopair_connect(lp), -1);
	assert_int_equal(errno, EAGAIN);
	/* Every one of them completes, each to its own slot. */
	for (n = 0; n < LOPAIR_MAX; ) {
		struct pollfd pfd = { .fd = lopair_fd(lp), .events = POLLIN };

		if (lopair_accept(lp, &slot, &ours, &theirs) == 1) {
			check_pair(ours, theirs);
			close(ours);
			close(theirs);
			n++;
			continue;
		}
		assert_int_equal(poll(&pfd, 1, 5000), 1);
	}
	assert_int_equal(lopair_accept(lp, &slot, &ours, &theirs), 0);
	lopair_free(lp);
}

static void
test_cancelled_leftover_is_turned_away(void **state)
{
	struct lopair *lp;
	struct pollfd pfd;
	int ours, theirs, slot, got;

	(void)state;
	assert_non_null(lp = lopair_new());
	/* On loopback the connection is queued by the time connect()
	 * returns: cancel, and it is left in the queue. */
	slot = lopair_connect(lp);
	assert_true(slot >= 0);
	pfd.fd = lopair_fd(lp);
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	lopair_cancel(lp, slot);
	assert_int_equal(lopair_accept(lp, &got, &ours, &theirs), 0);
	assert_int_equal(poll(&pfd, 1, 0), 0);
	make_pair(lp, &ours, &theirs);
	check_pair(ours, theirs);
	close(ours);
	close(theirs);
	lopair_free(lp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pair),
		cmocka_unit_test(test_foreign_connections_never_get_in),
		cmocka_unit_test(test_slots_are_bounded),
		cmocka_unit_test(test_cancelled_leftover_is_turned_away),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
