/*
 * main.c — options, start-up order, signals.
 *
 * Start-up: parse and check the configuration (certificates and keys are
 * read into memory there) → build the TLS context → bind → daemonize →
 * serve. SIGHUP reloads the configuration and certificates for new
 * sessions; SIGTERM/SIGINT stop accepting and let sessions finish for up
 * to "timeout drain".
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tls.h>
#include <unistd.h>

#include <ev.h>

#include "conf.h"
#include "listener.h"
#include "log.h"
#include "popsd.h"
#include "session.h"
#include "tlsconf.h"

#define DEFAULT_CONF	"/etc/popsd.conf"

static struct popsd	 daemon_state;
static ev_signal	 sig_term, sig_int, sig_hup;

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: popsd [-dhnv] [-f file]\n"
	    "  -d       stay in the foreground and log to stderr\n"
	    "  -f file  configuration file (default " DEFAULT_CONF ")\n"
	    "  -h       this help\n"
	    "  -n       check the configuration and exit\n"
	    "  -v       more verbose logging (repeatable)\n"
	    "signals: HUP reloads configuration and certificates, "
	    "TERM/INT drain and exit\n");
	exit(status);
}

/* load: configuration plus a TLS context built from it, or NULL with the
 * reason in err. */
static struct conf *
load(const char *path, struct tls_server **ts, char *err, size_t errsz)
{
	struct conf *c;
	char why[512];

	if ((c = conf_load(path, err, errsz)) == NULL)
		return NULL;
	if ((*ts = tlsconf_server(c, why, sizeof(why))) == NULL) {
		snprintf(err, errsz, "%s: %s", path, why);
		conf_unref(c);
		return NULL;
	}
	return c;
}

void
popsd_session_closed(struct popsd *d)
{
	if (d->draining && d->nsessions == 0)
		ev_break(d->loop, EVBREAK_ALL);
}

static void
resume_accept_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct popsd *d = w->data;
	int i;

	(void)loop;
	(void)revents;
	d->accept_paused = false;
	if (d->draining)
		return;
	for (i = 0; i < d->nlisteners; i++)
		listener_start(d->listeners[i]);
}

static void
drain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct popsd *d = w->data;

	(void)revents;
	log_warnx("drain timeout: closing %u remaining sessions", d->nsessions);
	session_shutdown_all(d, "shutdown");
	ev_break(loop, EVBREAK_ALL);
}

static void
terminate_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct popsd *d = w->data;
	int i;

	(void)revents;
	if (d->draining) {
		log_info("second signal: closing %u sessions now", d->nsessions);
		session_shutdown_all(d, "shutdown");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	d->draining = true;
	for (i = 0; i < d->nlisteners; i++)
		listener_free(d->listeners[i]);
	d->nlisteners = 0;
	ev_timer_stop(loop, &d->accept_resume);
	log_info("signal %d: stopped accepting, draining %u sessions "
	    "(up to %.0fs)", w->signum, d->nsessions, d->conf->timeout_drain);
	if (d->nsessions == 0) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	ev_timer_init(&d->drain_timer, drain_timeout_cb, d->conf->timeout_drain, 0);
	d->drain_timer.data = d;
	ev_timer_start(loop, &d->drain_timer);
}

/* same_listeners: does the new configuration listen where we do? Listening
 * sockets are bound once, before privileges could be dropped, so a
 * reload cannot change them. */
static int
same_listeners(const struct conf *a, const struct conf *b)
{
	int i;

	if (a->nlistens != b->nlistens)
		return 0;
	for (i = 0; i < a->nlistens; i++)
		if (a->listens[i].kind != b->listens[i].kind ||
		    strcmp(a->listens[i].text, b->listens[i].text) != 0)
			return 0;
	return 1;
}

static void
reload_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct popsd *d = w->data;
	struct tls_server *ts = NULL;
	struct conf *c;
	char err[1024];

	(void)loop;
	(void)revents;
	if ((c = load(d->conf->path, &ts, err, sizeof(err))) == NULL) {
		log_warnx("reload failed, keeping the running configuration: %s",
		    err);
		return;
	}
	if (!same_listeners(d->conf, c))
		log_warnx("reload: listen directives changed; restart popsd "
		    "to apply them (keeping the current sockets)");
	conf_unref(d->conf);
	tls_server_unref(d->tls_server);
	d->conf = c;
	d->tls_server = ts;
	log_info("reloaded %s: new sessions use the new configuration and "
	    "certificates", c->path);
}

static void
bind_listeners(struct popsd *d)
{
	struct listener *l;
	int i;

	d->listeners = calloc((size_t)d->conf->nlistens, sizeof(*d->listeners));
	if (d->listeners == NULL)
		fatal("calloc");
	for (i = 0; i < d->conf->nlistens; i++) {
		if ((l = listener_bind(d, &d->conf->listens[i])) == NULL)
			fatalx("cannot listen on %s, exiting",
			    d->conf->listens[i].text);
		d->listeners[d->nlisteners++] = l;
	}
}

static void
setup_signals(struct popsd *d)
{
	signal(SIGPIPE, SIG_IGN);
	ev_signal_init(&sig_term, terminate_cb, SIGTERM);
	ev_signal_init(&sig_int, terminate_cb, SIGINT);
	ev_signal_init(&sig_hup, reload_cb, SIGHUP);
	sig_term.data = sig_int.data = sig_hup.data = d;
	ev_signal_start(d->loop, &sig_term);
	ev_signal_start(d->loop, &sig_int);
	ev_signal_start(d->loop, &sig_hup);
}

static void
serve(struct popsd *d)
{
	int i;

	ev_timer_init(&d->accept_resume, resume_accept_cb, 1.0, 0);
	d->accept_resume.data = d;
	for (i = 0; i < d->nlisteners; i++) {
		listener_start(d->listeners[i]);
		log_info("listening: %s %s",
		    listen_kind_name(listener_kind(d->listeners[i])),
		    listener_text(d->listeners[i]));
	}
	log_info("popsd ready: %d listeners, backend %s, max-sessions %d",
	    d->nlisteners, d->conf->backend.text, d->conf->max_sessions);
	ev_run(d->loop, 0);
}

static void
teardown(struct popsd *d)
{
	int i;

	session_shutdown_all(d, "shutdown");
	for (i = 0; i < d->nlisteners; i++)
		listener_free(d->listeners[i]);
	free(d->listeners);
	tls_server_unref(d->tls_server);
	conf_unref(d->conf);
	log_info("popsd exiting");
}

int
main(int argc, char *argv[])
{
	struct popsd *d = &daemon_state;
	const char *path = DEFAULT_CONF;
	int ch, foreground = 0, check_only = 0, verbose = 0;
	char err[1024];

	while ((ch = getopt(argc, argv, "df:hnv")) != -1) {
		switch (ch) {
		case 'd': foreground = 1; break;
		case 'f': path = optarg; break;
		case 'h': usage(0);
		case 'n': check_only = 1; break;
		case 'v': verbose++; break;
		default: usage(1);
		}
	}
	if (optind != argc)
		usage(1);
	log_init(foreground || check_only, verbose, "popsd");
	if (tls_init() == -1)
		fatalx("tls_init failed");
	TAILQ_INIT(&d->sessions);
	if ((d->conf = load(path, &d->tls_server, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check_only) {
		printf("configuration OK\n");
		tls_server_unref(d->tls_server);
		conf_unref(d->conf);
		return 0;
	}
	if ((d->loop = ev_default_loop(EVFLAG_AUTO)) == NULL)
		fatalx("cannot initialise the event loop");
	bind_listeners(d);
	if (!foreground && daemon(0, 0) == -1)
		fatal("daemon");
	if (!foreground)
		ev_loop_fork(d->loop);
	setup_signals(d);
	serve(d);
	teardown(d);
	return 0;
}
