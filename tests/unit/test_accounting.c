/*
 * test_accounting.c — a session's ledger places (accounting.c): taken,
 * refused at the limits, given back exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <cmocka.h>

#include "accounting.h"
#include "ledger.h"

static struct sockaddr_in
v4(const char *a)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, a, &sin.sin_addr), 1);
	return sin;
}

static void
test_take_and_release(void **state)
{
	struct ledger *l = ledger_new(1, 16);
	struct sockaddr_in a = v4("192.0.2.7");
	struct acct x = { 0 }, y = { 0 }, z = { 0 };
	uint8_t key[LEDGER_KEY_SIZE];
	unsigned n = 0;

	(void)state;
	assert_non_null(l);
	assert_true(ledger_key_sockaddr((struct sockaddr *)&a, key));
	assert_int_equal(acct_take_session(l, &x, 2, &n), 0);
	assert_int_equal(acct_take_peer(l, &x, (struct sockaddr *)&a, 64, 1, &n), 0);
	assert_int_equal(ledger_sessions(l), 1);
	assert_int_equal(ledger_peer_count(l, key), 1);
	/* Over the per-address limit: -1, the count said, nothing held. */
	assert_int_equal(acct_take_session(l, &y, 2, &n), 0);
	assert_int_equal(acct_take_peer(l, &y, (struct sockaddr *)&a, 64, 1, &n), -1);
	assert_int_equal(n, 1);
	assert_false(y.peer);
	/* Over max-sessions. */
	assert_int_equal(acct_take_session(l, &z, 2, &n), -1);
	assert_int_equal(n, 2);
	assert_false(z.session);
	acct_release(l, &y);
	acct_release(l, &x);
	acct_release(l, &x);		/* twice is harmless */
	assert_int_equal(ledger_sessions(l), 0);
	assert_int_equal(ledger_peer_count(l, key), 0);
	ledger_free(l);
}

static void
test_no_address_no_place(void **state)
{
	struct ledger *l = ledger_new(1, 16);
	struct sockaddr_un un;
	struct acct x = { 0 };
	unsigned n = 0;

	(void)state;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	assert_int_equal(acct_take_peer(l, &x, (struct sockaddr *)&un, 64, 1, &n), 0);
	assert_false(x.peer);
	acct_release(l, &x);
	assert_int_equal(ledger_peers(l), 0);
	ledger_free(l);
}

/* IPv6 clients count per prefix: two addresses of one /64 share a
 * place, and the key held is the one given back. */
static void
test_ipv6_prefix(void **state)
{
	struct ledger *l = ledger_new(1, 16);
	struct sockaddr_in6 a, b;
	struct acct x = { 0 }, y = { 0 };
	unsigned n = 0;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	b = a;
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:1:2::1", &a.sin6_addr), 1);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &b.sin6_addr), 1);
	assert_int_equal(acct_take_peer(l, &x, (struct sockaddr *)&a, 64, 1, &n), 0);
	assert_int_equal(acct_take_peer(l, &y, (struct sockaddr *)&b, 64, 1, &n), -1);
	assert_memory_equal(x.key, y.key, LEDGER_KEY_SIZE);
	assert_int_equal(acct_take_peer(l, &y, (struct sockaddr *)&b, 128, 1, &n), 0);
	acct_release(l, &x);
	acct_release(l, &y);
	assert_int_equal(ledger_peers(l), 0);
	ledger_free(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take_and_release),
		cmocka_unit_test(test_no_address_no_place),
		cmocka_unit_test(test_ipv6_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
