/*
 * test_peers.c — the per-address session counts behind
 * max-sessions-per-ip: key forms (IPv4, IPv6, IPv4-mapped, text as the
 * session logs it), counting up and down, growth past many addresses,
 * and that entries go away with their last session.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>

#include "peers.h"

static void
sockaddr_of(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(995);
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, s, &sin6->sin6_addr), 1);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(1234);
}

/* Pairs that must (same) or must not give the same key, from a socket
 * address on the left and the text a session logs on the right. */
static void
test_keys(void **state)
{
	static const struct {
		const char	*sa;
		const char	*text;
		bool		 same;
	} cases[] = {
		{ "192.0.2.1", "192.0.2.1", true },
		{ "192.0.2.1", "::ffff:192.0.2.1", true },
		{ "::ffff:192.0.2.1", "192.0.2.1", true },
		{ "::ffff:192.0.2.1", "::ffff:192.0.2.1", true },
		{ "192.0.2.1", "192.0.2.2", false },
		{ "192.0.2.1", "::192.0.2.1", false },	/* compatible, not mapped */
		{ "2001:db8::1", "2001:db8::1", true },
		{ "2001:db8::1", "2001:db8:0:0::1", true },
		{ "2001:db8::1", "2001:db8::2", false },
		{ "fe80::1", "fe80::1%eth0", true },
		{ "::1", "::1", true },
		{ "::1", "127.0.0.1", false },
	};
	struct sockaddr_storage ss;
	uint8_t a[PEER_KEY_SIZE], b[PEER_KEY_SIZE];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sockaddr_of(cases[i].sa, &ss);
		assert_true(peers_key_sockaddr((struct sockaddr *)&ss, a));
		if (!peers_key_text(cases[i].text, b))
			fail_msg("\"%s\" not a key", cases[i].text);
		if ((memcmp(a, b, sizeof(a)) == 0) != cases[i].same)
			fail_msg("%s vs %s: expected %s", cases[i].sa,
			    cases[i].text, cases[i].same ? "same" : "different");
	}
}

static void
test_bad_keys(void **state)
{
	static const char *const bad[] = {
		"local", "", "%eth0", "1.2.3", "1.2.3.4.5", "::g", "-",
		"2001:db8::1/64", "192.0.2.1 ",
		"aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa:aaaa",
	};
	struct sockaddr_un sun;
	uint8_t k[PEER_KEY_SIZE];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (peers_key_text(bad[i], k))
			fail_msg("\"%s\" taken as an address", bad[i]);
	assert_false(peers_key_text(NULL, k));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_false(peers_key_sockaddr((struct sockaddr *)&sun, k));
	assert_false(peers_key_sockaddr(NULL, k));
}

static void
test_counts(void **state)
{
	struct sockaddr_storage ss;
	uint8_t v4[PEER_KEY_SIZE], v6[PEER_KEY_SIZE], mapped[PEER_KEY_SIZE];
	struct peers *t;
	int i;

	(void)state;
	assert_non_null(t = peers_new());
	sockaddr_of("198.51.100.7", &ss);
	assert_true(peers_key_sockaddr((struct sockaddr *)&ss, v4));
	assert_true(peers_key_text("::ffff:198.51.100.7", mapped));
	assert_true(peers_key_text("2001:db8::7", v6));

	assert_int_equal(peers_count(t, v4), 0);
	assert_int_equal(peers_size(t), 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(peers_add(t, v4), 0);
	assert_int_equal(peers_add(t, mapped), 0);
	assert_int_equal(peers_add(t, v6), 0);
	assert_int_equal(peers_count(t, v4), 4);
	assert_int_equal(peers_count(t, mapped), 4);
	assert_int_equal(peers_count(t, v6), 1);
	assert_int_equal(peers_size(t), 2);

	peers_remove(t, v6);
	assert_int_equal(peers_count(t, v6), 0);
	assert_int_equal(peers_size(t), 1);
	/* Removing what is not there changes nothing. */
	peers_remove(t, v6);
	assert_int_equal(peers_size(t), 1);
	assert_int_equal(peers_count(t, v4), 4);
	for (i = 0; i < 4; i++)
		peers_remove(t, mapped);
	assert_int_equal(peers_count(t, v4), 0);
	assert_int_equal(peers_size(t), 0);
	peers_free(t);
	peers_free(NULL);
}

/* Many addresses: the table grows and every count stays right. */
static void
test_many(void **state)
{
	enum { N = 5000 };
	char text[64];
	uint8_t k[PEER_KEY_SIZE];
	struct peers *t;
	int i;

	(void)state;
	assert_non_null(t = peers_new());
	for (i = 0; i < N; i++) {
		snprintf(text, sizeof(text), "2001:db8::%x:%x", i >> 8, i);
		assert_true(peers_key_text(text, k));
		assert_int_equal(peers_add(t, k), 0);
		if (i % 3 == 0)
			assert_int_equal(peers_add(t, k), 0);
	}
	assert_int_equal(peers_size(t), N);
	for (i = 0; i < N; i++) {
		snprintf(text, sizeof(text), "2001:db8::%x:%x", i >> 8, i);
		assert_true(peers_key_text(text, k));
		assert_int_equal(peers_count(t, k), i % 3 == 0 ? 2 : 1);
		peers_remove(t, k);
	}
	assert_int_equal(peers_size(t), N / 3 + 1);
	peers_free(t);		/* with entries left: no leak (valgrind) */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_bad_keys),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
