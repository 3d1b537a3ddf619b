/*
 * test_ledger.c — the session counts behind max-sessions and
 * max-sessions-per-ip: key forms (IPv4, IPv6, IPv4-mapped, text as the
 * session logs it), counting up and down, many addresses, compaction
 * under churn, a full table, and across processes: counts seen by the
 * other worker, a dead worker forgotten, and two processes racing for
 * the last place never both getting it.
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
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger.h"

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
	uint8_t a[LEDGER_KEY_SIZE], b[LEDGER_KEY_SIZE];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sockaddr_of(cases[i].sa, &ss);
		assert_true(ledger_key_sockaddr((struct sockaddr *)&ss, a));
		if (!ledger_key_text(cases[i].text, b))
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
	uint8_t k[LEDGER_KEY_SIZE];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (ledger_key_text(bad[i], k))
			fail_msg("\"%s\" taken as an address", bad[i]);
	assert_false(ledger_key_text(NULL, k));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_false(ledger_key_sockaddr((struct sockaddr *)&sun, k));
	assert_false(ledger_key_sockaddr(NULL, k));
}

static void
text_key(const char *s, uint8_t k[LEDGER_KEY_SIZE])
{
	if (!ledger_key_text(s, k))
		fail_msg("\"%s\" not a key", s);
}

static void
test_counts(void **state)
{
	struct sockaddr_storage ss;
	uint8_t v4[LEDGER_KEY_SIZE], v6[LEDGER_KEY_SIZE], mapped[LEDGER_KEY_SIZE];
	struct ledger *l;
	unsigned n;
	int i;

	(void)state;
	assert_non_null(l = ledger_new(1, 100));
	assert_true(ledger_capacity(l) >= 100);
	sockaddr_of("198.51.100.7", &ss);
	assert_true(ledger_key_sockaddr((struct sockaddr *)&ss, v4));
	text_key("::ffff:198.51.100.7", mapped);
	text_key("2001:db8::7", v6);

	assert_int_equal(ledger_peer_count(l, v4), 0);
	assert_int_equal(ledger_peers(l), 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(ledger_peer_take(l, v4, 0, &n), 0);
	assert_int_equal(ledger_peer_take(l, mapped, 0, &n), 0);
	assert_int_equal(ledger_peer_take(l, v6, 0, &n), 0);
	assert_int_equal(ledger_peer_count(l, v4), 4);
	assert_int_equal(ledger_peer_count(l, mapped), 4);
	assert_int_equal(ledger_peer_count(l, v6), 1);
	assert_int_equal(ledger_peers(l), 2);

	ledger_peer_release(l, v6);
	assert_int_equal(ledger_peer_count(l, v6), 0);
	assert_int_equal(ledger_peers(l), 1);
	/* Releasing what is not held changes nothing. */
	ledger_peer_release(l, v6);
	assert_int_equal(ledger_peers(l), 1);
	assert_int_equal(ledger_peer_count(l, v4), 4);
	for (i = 0; i < 4; i++)
		ledger_peer_release(l, mapped);
	assert_int_equal(ledger_peer_count(l, v4), 0);
	assert_int_equal(ledger_peers(l), 0);
	ledger_free(l);
	ledger_free(NULL);
}

static void
test_limits(void **state)
{
	uint8_t k[LEDGER_KEY_SIZE], other[LEDGER_KEY_SIZE];
	struct ledger *l;
	unsigned n = 0;
	int i;

	(void)state;
	assert_non_null(l = ledger_new(1, 10));
	text_key("192.0.2.9", k);
	text_key("192.0.2.10", other);
	for (i = 0; i < 3; i++)
		assert_int_equal(ledger_peer_take(l, k, 3, &n), 0);
	assert_int_equal(ledger_peer_take(l, k, 3, &n), -1);
	assert_int_equal(n, 3);
	assert_int_equal(ledger_peer_count(l, k), 3);	/* not left counted */
	assert_int_equal(ledger_peer_take(l, other, 3, &n), 0);
	ledger_peer_release(l, k);
	assert_int_equal(ledger_peer_take(l, k, 3, &n), 0);

	for (i = 0; i < 2; i++)
		assert_int_equal(ledger_session_take(l, 2, &n), 0);
	assert_int_equal(ledger_session_take(l, 2, &n), -1);
	assert_int_equal(n, 2);
	assert_int_equal(ledger_sessions(l), 2);
	ledger_session_release(l);
	assert_int_equal(ledger_session_take(l, 2, &n), 0);
	assert_int_equal(ledger_session_take(l, 0, &n), 0);	/* no limit */
	assert_int_equal(ledger_sessions(l), 3);
	ledger_free(l);
}

/* masked_key: the key of text counted per /prefix. */
static void
masked_key(const char *text, int prefix, uint8_t k[LEDGER_KEY_SIZE])
{
	struct sockaddr_storage ss;

	sockaddr_of(text, &ss);
	assert_true(ledger_key_sockaddr((struct sockaddr *)&ss, k));
	ledger_key_mask(k, prefix);
}

/* An IPv6 client counts per network (its host picks any address in its
 * /64); IPv4, native or mapped, per address whatever the prefix. */
static void
test_mask(void **state)
{
	static const struct {
		const char	*a, *b;
		int		 prefix;
		bool		 same;
		const char	*shown;		/* a's key as logged */
	} cases[] = {
		{ "2001:db8:1:2::5", "2001:db8:1:2:ffff:1:2:3", 64, true,
		    "2001:db8:1:2::/64" },
		{ "2001:db8:1:2::5", "2001:db8:1:3::5", 64, false,
		    "2001:db8:1:2::/64" },
		{ "2001:db8:1:2::5", "2001:db8:1:2::6", 128, false,
		    "2001:db8:1:2::5" },
		{ "2001:db8:1:2:8000::", "2001:db8:1:2::", 65, false,
		    "2001:db8:1:2:8000::/65" },
		{ "2001:db8:1:2:7fff::", "2001:db8:1:2::", 65, true,
		    "2001:db8:1:2::/65" },
		{ "2001:db8:1:3::", "2001:db8:1:2::", 63, true,
		    "2001:db8:1:2::/63" },
		{ "2001:db8:aa::1", "2001:db8:bb::1", 32, true,
		    "2001:db8::/32" },
		{ "8000::1", "::1", 1, false, "8000::/1" },
		{ "192.0.2.1", "::ffff:192.0.2.1", 64, true, "192.0.2.1" },
		{ "::ffff:192.0.2.1", "::ffff:192.0.2.2", 64, false,
		    "192.0.2.1" },
		{ "192.0.2.1", "192.0.2.2", 1, false, "192.0.2.1" },
		{ "::1", "::2", 64, true, "::/64" },
	};
	uint8_t a[LEDGER_KEY_SIZE], b[LEDGER_KEY_SIZE];
	char shown[LEDGER_KEY_TEXT_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		masked_key(cases[i].a, cases[i].prefix, a);
		masked_key(cases[i].b, cases[i].prefix, b);
		if ((memcmp(a, b, sizeof(a)) == 0) != cases[i].same)
			fail_msg("%s vs %s per /%d: expected %s", cases[i].a,
			    cases[i].b, cases[i].prefix,
			    cases[i].same ? "same" : "different");
		ledger_key_format(a, cases[i].prefix, shown, sizeof(shown));
		if (strcmp(shown, cases[i].shown) != 0)
			fail_msg("%s per /%d shown as %s, wanted %s",
			    cases[i].a, cases[i].prefix, shown,
			    cases[i].shown);
	}
	masked_key("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 128, a);
	ledger_key_format(a, 128, shown, sizeof(shown));
	assert_string_equal(shown, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	masked_key("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 127, a);
	ledger_key_format(a, 127, shown, sizeof(shown));
	assert_string_equal(shown,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
}

/* A limit per /64 holds for the network, not for each address in it. */
static void
test_limit_per_network(void **state)
{
	uint8_t k[LEDGER_KEY_SIZE];
	struct ledger *l;
	unsigned n = 0;
	char text[64];
	int i;

	(void)state;
	assert_non_null(l = ledger_new(1, 100));
	for (i = 1; i <= 2; i++) {
		snprintf(text, sizeof(text), "2001:db8:7:7::%x", i);
		masked_key(text, 64, k);
		assert_int_equal(ledger_peer_take(l, k, 2, &n), 0);
	}
	masked_key("2001:db8:7:7:dead:beef:0:1", 64, k);
	assert_int_equal(ledger_peer_take(l, k, 2, &n), -1);
	assert_int_equal(n, 2);
	assert_int_equal(ledger_peers(l), 1);
	masked_key("2001:db8:7:8::1", 64, k);
	assert_int_equal(ledger_peer_take(l, k, 2, &n), 0);
	assert_int_equal(ledger_peers(l), 2);
	ledger_free(l);
}

static void
key_of(int i, uint8_t k[LEDGER_KEY_SIZE])
{
	char text[64];

	snprintf(text, sizeof(text), "2001:db8::%x:%x", i >> 16, i & 0xffff);
	text_key(text, k);
}

/* Many addresses at once: every count stays right. */
static void
test_many(void **state)
{
	enum { N = 5000 };
	uint8_t k[LEDGER_KEY_SIZE];
	struct ledger *l;
	unsigned n;
	int i;

	(void)state;
	assert_non_null(l = ledger_new(1, N));
	for (i = 0; i < N; i++) {
		key_of(i, k);
		assert_int_equal(ledger_peer_take(l, k, 0, &n), 0);
		if (i % 3 == 0)
			assert_int_equal(ledger_peer_take(l, k, 0, &n), 0);
	}
	assert_int_equal(ledger_peers(l), N);
	for (i = 0; i < N; i++) {
		key_of(i, k);
		assert_int_equal(ledger_peer_count(l, k), i % 3 == 0 ? 2 : 1);
		ledger_peer_release(l, k);
	}
	assert_int_equal(ledger_peers(l), N / 3 + 1);
	ledger_free(l);
}

/* Far more addresses over time than the table holds at once: addresses
 * that left make room again (compaction), and the ones still there keep
 * their counts. */
static void
test_churn(void **state)
{
	uint8_t k[LEDGER_KEY_SIZE], stay[LEDGER_KEY_SIZE];
	struct ledger *l;
	unsigned n;
	int i;

	(void)state;
	assert_non_null(l = ledger_new(1, 10));
	text_key("203.0.113.1", stay);
	assert_int_equal(ledger_peer_take(l, stay, 0, &n), 0);
	assert_int_equal(ledger_peer_take(l, stay, 0, &n), 0);
	for (i = 0; i < 100000; i++) {
		key_of(i, k);
		assert_int_equal(ledger_peer_take(l, k, 0, &n), 0);
		if (i % 7 != 0)
			ledger_peer_release(l, k);
		else if (i >= 7 * 8) {
			/* at most 9 of these at once */
			key_of(i - 7 * 8, k);
			ledger_peer_release(l, k);
		}
	}
	assert_int_equal(ledger_peer_count(l, stay), 2);
	assert_true(ledger_peers(l) <= 10);
	ledger_free(l);
}

/* A table holding its capacity of live addresses refuses one more
 * (-2), and takes it once one has left. */
static void
test_full(void **state)
{
	uint8_t k[LEDGER_KEY_SIZE];
	struct ledger *l;
	unsigned i, n, cap;

	(void)state;
	assert_non_null(l = ledger_new(1, 20));
	cap = ledger_capacity(l);
	for (i = 0; i < cap; i++) {
		key_of((int)i, k);
		assert_int_equal(ledger_peer_take(l, k, 0, &n), 0);
	}
	key_of((int)cap, k);
	assert_int_equal(ledger_peer_take(l, k, 0, &n), -2);
	key_of(0, k);
	assert_int_equal(ledger_peer_take(l, k, 0, &n), 0);	/* known key */
	ledger_peer_release(l, k);
	ledger_peer_release(l, k);
	key_of((int)cap, k);
	assert_int_equal(ledger_peer_take(l, k, 0, &n), 0);
	ledger_free(l);
}

/* run_child: fork; the child writes part 1, runs fn and exits with its
 * result; the parent gets the pid. */
static pid_t
run_child(struct ledger *l, int (*fn)(struct ledger *, int), int arg)
{
	pid_t pid = fork();

	assert_true(pid != -1);
	if (pid == 0) {
		ledger_bind(l, 1);
		_exit(fn(l, arg));
	}
	return pid;
}

static int
child_status(pid_t pid)
{
	int st;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int parent_end = -1;	/* closed in the child */

static int
hold_two(struct ledger *l, int fd)
{
	uint8_t k[LEDGER_KEY_SIZE];
	unsigned n;
	char c;

	close(parent_end);
	text_key("192.0.2.77", k);
	if (ledger_peer_take(l, k, 0, &n) != 0 ||
	    ledger_peer_take(l, k, 0, &n) != 0 ||
	    ledger_session_take(l, 0, &n) != 0)
		return 1;
	c = 'x';
	/* Tell the parent, then stay until it closes the pipe. */
	if (write(fd, &c, 1) != 1)
		return 1;
	return read(fd, &c, 1) == 0 ? 0 : 1;	/* EOF */
}

/* Counts held by one worker limit the other; once the master forgets a
 * dead worker, its counts are gone. */
static void
test_two_workers(void **state)
{
	uint8_t k[LEDGER_KEY_SIZE];
	struct ledger *l;
	int sv[2];
	unsigned n;
	pid_t pid;
	char c;

	(void)state;
	assert_non_null(l = ledger_new(2, 100));
	text_key("192.0.2.77", k);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	parent_end = sv[0];
	pid = run_child(l, hold_two, sv[1]);
	assert_int_equal(read(sv[0], &c, 1), 1);
	assert_int_equal(ledger_peer_count(l, k), 2);
	assert_int_equal(ledger_sessions(l), 1);
	assert_int_equal(ledger_peer_take(l, k, 3, &n), 0);
	assert_int_equal(ledger_peer_take(l, k, 3, &n), -1);
	assert_int_equal(n, 3);
	assert_int_equal(ledger_session_take(l, 1, &n), -1);
	assert_int_equal(ledger_peers(l), 1);		/* this process's own */
	close(sv[0]);
	assert_int_equal(child_status(pid), 0);
	close(sv[1]);
	/* Dead, but not yet forgotten: still counted. */
	assert_int_equal(ledger_peer_count(l, k), 3);
	ledger_forget(l, 1);
	assert_int_equal(ledger_peer_count(l, k), 1);
	assert_int_equal(ledger_sessions(l), 0);
	ledger_free(l);
}

enum { RACE_ROUNDS = 200000 };

/* Processes inside the one place, shared by the two racers. A racer
 * counts itself in only after the ledger let it in: the ledger's own
 * counts include the other's tentative try, which it takes back. */
static _Atomic int *inside;

/* race: take the one place there is, check nobody else is in, give it
 * back; returns how often the other was found in too. */
static int
race(struct ledger *l, int arg)
{
	uint8_t k[LEDGER_KEY_SIZE];
	unsigned n;
	int i, over = 0;

	(void)arg;
	text_key("198.51.100.200", k);
	for (i = 0; i < RACE_ROUNDS; i++) {
		if (ledger_peer_take(l, k, 1, &n) == 0) {
			if (atomic_fetch_add(inside, 1) != 0)
				over++;
			atomic_fetch_sub(inside, 1);
			ledger_peer_release(l, k);
		}
		if (ledger_session_take(l, 1, &n) == 0) {
			if (atomic_fetch_add(inside + 1, 1) != 0)
				over++;
			atomic_fetch_sub(inside + 1, 1);
			ledger_session_release(l);
		}
	}
	return over > 255 ? 255 : over;
}

/* Two processes racing for a limit of one: never both in. */
static void
test_race(void **state)
{
	struct ledger *l;
	pid_t pid;
	int over;

	(void)state;
	inside = mmap(NULL, 2 * sizeof(*inside), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(inside != MAP_FAILED);
	assert_non_null(l = ledger_new(2, 10));
	pid = run_child(l, race, 0);
	over = race(l, 0);
	assert_int_equal(child_status(pid), 0);
	assert_int_equal(over, 0);
	ledger_free(l);
	munmap((void *)inside, 2 * sizeof(*inside));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_bad_keys),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_limit_per_network),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_churn),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_two_workers),
		cmocka_unit_test(test_race),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
