/*
 * test_route.c — routed outbound mode (route.c): USER name@host[:port],
 * upstream-allow patterns, and the stand-in upstream before routing,
 * table-driven; the stand-in's scripts are also fed one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "route.h"

struct parse_case {
	const char	*arg;
	int		 rv;
	const char	*name, *host;
	int		 port;
	bool		 implicit_tls;
};

static const struct parse_case parse_cases[] = {
	{ "joe@pop.example.net", 0, "joe", "pop.example.net", 995, true },
	{ "joe@POP.Example.NET:995", 0, "joe", "pop.example.net", 995, true },
	{ "joe@pop.example.net:110", 0, "joe", "pop.example.net", 110, false },
	{ "joe@pop.example.net.:1110", 0, "joe", "pop.example.net", 1110, false },
	{ "joe@corp.example@pop.example.net", 0, "joe@corp.example",
	    "pop.example.net", 995, true },
	{ "joe@127.0.0.1:9950", 0, "joe", "127.0.0.1", 9950, false },
	{ "joe@localhost", 0, "joe", "localhost", 995, true },
	{ "joe@a_b.example", 0, "joe", "a_b.example", 995, true },
	{ "joe", -1, NULL, NULL, 0, false },
	{ "@pop.example.net", -1, NULL, NULL, 0, false },
	{ "joe@", -1, NULL, NULL, 0, false },
	{ "joe@:995", -1, NULL, NULL, 0, false },
	{ "joe@pop..example.net", -1, NULL, NULL, 0, false },
	{ "joe@.pop.example.net", -1, NULL, NULL, 0, false },
	{ "joe@pop.example.net:", -1, NULL, NULL, 0, false },
	{ "joe@pop.example.net:0", -1, NULL, NULL, 0, false },
	{ "joe@pop.example.net:0995", -1, NULL, NULL, 0, false },
	{ "joe@pop.example.net:65536", -1, NULL, NULL, 0, false },
	{ "joe@pop.example.net:99x", -1, NULL, NULL, 0, false },
	{ "joe@pop.example.net:1:2", -1, NULL, NULL, 0, false },
	{ "joe@[::1]", -1, NULL, NULL, 0, false },
	{ "joe@pop/example", -1, NULL, NULL, 0, false },
	{ "joe@pop example", -1, NULL, NULL, 0, false },
	{ "jo e@pop.example", -1, NULL, NULL, 0, false },
	{ "joe@p\x01op", -1, NULL, NULL, 0, false },
	{ "joe@xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    ".example", -1, NULL, NULL, 0, false },	/* 64-byte label */
};

static void
test_parse(void **state)
{
	struct route_target t;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];

		print_message("  %s\n", c->arg);
		assert_int_equal(route_parse_user(c->arg, strlen(c->arg), &t),
		    c->rv);
		if (c->rv != 0)
			continue;
		assert_string_equal(t.name, c->name);
		assert_string_equal(t.host, c->host);
		assert_int_equal(t.port, c->port);
		assert_int_equal(t.implicit_tls, c->implicit_tls);
	}
}

static void
test_patterns(void **state)
{
	char *allow[] = { "*.example.net", "mail.example.org", "127.0.0.1" };
	static const struct { const char *host; bool ok; } hosts[] = {
		{ "pop.example.net", true }, { "a.b.example.net", true },
		{ "example.net", false }, { "badexample.net", false },
		{ "pop.example.net.evil", false }, { "mail.example.org", true },
		{ "x.mail.example.org", false }, { "example.org", false },
		{ "127.0.0.1", true }, { "127.0.0.2", false },
		{ "MAIL.EXAMPLE.ORG", true },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		print_message("  %s\n", hosts[i].host);
		assert_int_equal(route_host_allowed(allow, 3, hosts[i].host),
		    hosts[i].ok);
	}
	assert_false(route_host_allowed(allow, 0, "pop.example.net"));
	assert_true(route_pattern_ok("*.example.net"));
	assert_true(route_pattern_ok("mail.example.org"));
	assert_true(route_pattern_ok("*.net"));
	assert_false(route_pattern_ok("*"));
	assert_false(route_pattern_ok("*."));
	assert_false(route_pattern_ok("a.*.example.net"));
	assert_false(route_pattern_ok("**.example.net"));
	assert_false(route_pattern_ok("*example.net"));
	assert_false(route_pattern_ok(""));
}

struct script {
	const char	*name;
	const char	*cmds;		/* what the mediator forwarded */
	const char	*replies;	/* the stand-in's answers */
	enum route_ev	 ev;
	const char	*left;		/* cmds left after the event */
	const char	*host;		/* ROUTE_GO: the choice */
	const char	*user;
};

static const struct script scripts[] = {
	{ "capa then user", "CAPA\r\nUSER joe@pop.example.net\r\nPASS s\r\n",
	  "+OK capability list follows\r\nUSER\r\n.\r\n", ROUTE_GO,
	  "PASS s\r\n", "pop.example.net", "joe" },
	{ "lowercase user, port", "user joe@pop.example.net:110\n", "",
	  ROUTE_GO, "", "pop.example.net", "joe" },
	{ "no host", "USER joe\r\n", "-ERR [AUTH] give", ROUTE_NONE, "",
	  NULL, NULL },
	{ "host not allowed", "USER joe@evil.example.com\r\n",
	  "-ERR [AUTH] that server is not allowed", ROUTE_NONE, "", NULL,
	  NULL },
	{ "pass first", "PASS secret\r\n", "-ERR [AUTH] USER user@host first",
	  ROUTE_NONE, "", NULL, NULL },
	{ "apop", "APOP joe 0123456789abcdef0123456789abcdef\r\n",
	  "-ERR [AUTH] USER", ROUTE_NONE, "", NULL, NULL },
	{ "quit", "QUIT\r\nUSER joe@pop.example.net\r\n", "+OK bye\r\n",
	  ROUTE_QUIT, "USER joe@pop.example.net\r\n", NULL, NULL },
	{ "refused then allowed", "USER a@evil.com\r\nUSER b@pop.example.net\r\n",
	  "-ERR [AUTH] that server", ROUTE_GO, "", "pop.example.net", "b" },
};

static void
run_script(const struct script *sc, bool trickle)
{
	char *allow[] = { "*.example.net" };
	struct route r;
	struct buf cmds, replies;
	enum route_ev ev = ROUTE_NONE, e;
	const uint8_t *p;
	size_t i, n = strlen(sc->cmds), len;

	route_init(&r, allow, 1);
	buf_init(&cmds, 1024);
	buf_init(&replies, 1024);
	if (!trickle) {
		(void)buf_append(&cmds, sc->cmds, n);
		ev = route_input(&r, &cmds, &replies);
	} else
		for (i = 0; i < n; i++) {
			(void)buf_append(&cmds, sc->cmds + i, 1);
			if ((e = route_input(&r, &cmds, &replies)) != ROUTE_NONE)
				ev = e;
		}
	assert_int_equal(ev, sc->ev);
	p = buf_rptr(&replies, &len);
	assert_true(len >= strlen(sc->replies));
	if (sc->replies[0])
		assert_memory_equal(p, sc->replies, strlen(sc->replies));
	p = buf_rptr(&cmds, &len);
	assert_int_equal(len, strlen(sc->left));
	if (len)
		assert_memory_equal(p, sc->left, len);
	if (sc->host) {
		assert_string_equal(r.target.host, sc->host);
		assert_string_equal(r.target.name, sc->user);
	}
	/* After the event, nothing more happens. */
	if (ev != ROUTE_NONE)
		assert_int_equal(route_input(&r, &cmds, &replies), ROUTE_NONE);
	buf_free(&cmds);
	buf_free(&replies);
}

static void
test_scripts(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		print_message("  %s\n", scripts[i].name);
		run_script(&scripts[i], false);
		run_script(&scripts[i], true);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_scripts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
