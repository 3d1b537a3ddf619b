/*
 * main.c — options, start-up order, signals, systemd notification.
 *
 * Start-up: no core dumps → parse and check the configuration (addresses
 * resolved, certificates and keys read into memory there) → build the TLS
 * context → resolve user/group → adopt systemd's sockets and bind the
 * other listen lines (or, with -i, take the connection on stdin) →
 * daemonize → drop privileges → serve, then READY=1 to systemd.
 * A file without listen lines is valid; only a start without -i that
 * gets no socket from systemd either is refused, at that point. -n runs
 * the same checks up to the sockets, which it does not bind.
 *
 * SIGHUP reloads the configuration and certificates for new sessions.
 * After a privilege drop the reload reads them as the unprivileged user:
 * whatever it cannot read makes the reload fail, logged, and the running
 * configuration stays (so keys must be readable by that user, e.g. mode
 * 0600 owned by it, or passed with systemd's LoadCredential=). Under
 * chroot the files are out of reach and a reload is refused with a log
 * line. Listen lines and user/group/chroot take effect only on restart.
 * The session ticket keys (struct ticket_keys in the daemon state) are
 * given to every new TLS context, so tickets survive a reload; a timer
 * rotates them (tlsconf.h), and they are wiped on exit. With
 * tls-ticket-key-file the keys are the file's, re-read on reload, and
 * the timer only renews them in libtls.
 * SIGTERM/SIGINT stop accepting and let sessions finish for up to
 * "timeout drain"; a second signal ends them at once.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include "ledger.h"
#include "certtime.h"
#include "metrics.h"
#include "metrics_http.h"
#include "popsd.h"
#include "privdrop.h"
#include "spawn.h"
#include "workers.h"
#include "sd.h"
#include "session.h"
#include "tlsconf.h"

#define DEFAULT_CONF	"/etc/popsd.conf"
/* How often systemd's STATUS= line is brought up to date, at most. */
#define STATUS_INTERVAL	5.0

struct options {
	const char	*path;
	bool		 foreground;	/* -d */
	bool		 check_only;	/* -n */
	int		 verbose;	/* -v */
	bool		 inetd;		/* -i */
	enum listen_kind inetd_kind;
	bool		 log_stderr;
};

static struct popsd	 daemon_state;
static struct privdrop	 privs;
static ev_signal	 sig_term, sig_int, sig_hup, sig_usr1;
static ev_timer		 watchdog_timer, status_timer;
static ev_timer		 ticket_timer;	/* session ticket key rotation */
static bool		 is_worker;	/* one of "workers N" */
#define WORKER_KEY_POLL	5.0		/* seconds */
static bool		 stop_requested;	/* first TERM/INT seen */
static char		 conf_path[PATH_MAX];

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: popsd [-dhnv] [-f file] [-i pop3s|pop3|tls|outbound]\n"
	    "  -d       stay in the foreground and log to stderr\n"
	    "  -f file  configuration file (default " DEFAULT_CONF ")\n"
	    "  -h       this help\n"
	    "  -i kind  inetd mode: serve the one connection on stdin as kind\n"
	    "           (pop3s, pop3, tls or outbound) and exit when it ends;\n"
	    "           for inetd, xinetd, systemd Accept=yes. listen lines are\n"
	    "           ignored (none are needed); logs go to syslog unless -d\n"
	    "  -n       check the configuration as a start by this user would\n"
	    "           (as root: a user line is needed; without -i: listen\n"
	    "           lines or systemd's sockets) and exit; binds nothing\n"
	    "  -v       more verbose logging (repeatable)\n"
	    "signals: HUP reloads configuration and certificates, "
	    "TERM/INT drain and exit,\n"
	    "USR1 logs the figures metrics-listen serves\n"
	    "systemd: sockets passed by socket activation and named "
	    "FileDescriptorName=pop3s,\n"
	    "pop3, tls or outbound are served like listen lines; NOTIFY_SOCKET "
	    "(Type=notify) and WATCHDOG_USEC\nare honoured\n");
	exit(status);
}

/* load: configuration plus a TLS context built from it (with the ticket
 * keys of tk), or NULL with the reason in err. */
static struct conf *
load(const char *path, struct tls_server **ts, struct ticket_keys *tk,
    char *err, size_t errsz)
{
	struct conf *c;
	char why[512];

	*ts = NULL;
	if ((c = conf_load(path, err, errsz)) == NULL)
		return NULL;
	/* Outbound listeners alone need no certificate of ours. */
	if (c->nkeypairs > 0 &&
	    (*ts = tlsconf_server(c, tk, why, sizeof(why))) == NULL)
		goto fail;
	if ((c->have_upstream || c->nupstream_allow > 0) &&
	    (c->upstream_tls = tlsconf_client(c, why, sizeof(why))) == NULL)
		goto fail;
	return c;
fail:
	snprintf(err, errsz, "%s: %s", path, why);
	tls_server_unref(*ts);
	*ts = NULL;
	conf_unref(c);
	return NULL;
}

/* note_certificates: each loaded certificate's expiry, for the
 * popsd_certificate_expiry_seconds gauge. One that cannot be read is
 * left out, with a log line (libtls accepted it, so this is unusual). */
static void
note_certificates(const struct conf *c)
{
	const struct conf_keypair *kp;
	int64_t t;
	int i, n = 0;

	for (i = 0; i < c->nkeypairs && n < METRICS_CERTS_MAX; i++) {
		kp = &c->keypairs[i];
		if (cert_pem_not_after(kp->cert, kp->cert_len, &t) == -1) {
			log_warnx("certificate %s: cannot read its expiry date "
			    "(no popsd_certificate_expiry_seconds for it)",
			    kp->cert_path);
			continue;
		}
		metrics_set_cert(n++, kp->cert_path, t);
	}
	metrics_set_ncerts(n);
}

/* count_reload: a reload's outcome, counted once for the daemon: by the
 * master of workers (which tries it first), not again by each worker. */
static void
count_reload(bool ok)
{
	if (!is_worker)
		metrics_count(ok ? M_RELOADS : M_RELOAD_FAILURES, 1);
}

/* status_text: the short summary systemd shows in "systemctl status". */
static const char *
status_text(const struct popsd *d)
{
	static char buf[64];

	/* Not d->draining: inetd mode sets that from the start. */
	snprintf(buf, sizeof(buf), "%s %u session%s",
	    stop_requested ? "draining" : "serving", d->nsessions,
	    d->nsessions == 1 ? "" : "s");
	return buf;
}

/* Polled rather than pushed from every session start and end: one
 * wakeup per STATUS_INTERVAL keeps systemd out of the session paths, and
 * a busy server does not send a datagram per connection. */
static void
status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sd_notify_status(status_text(w->data));
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	sd_notify_send("WATCHDOG=1");
}

/*
 * renew_file_keys: with tls-ticket-key-file, a new server context from
 * the running configuration, so that libtls takes the file's keys afresh
 * (it stops using a key tls-session-lifetime after it was given it).
 * Sessions keep the context they started with.
 */
static void
renew_file_keys(struct popsd *d)
{
	struct tls_server *ts;
	char err[512];

	if ((ts = tlsconf_server(d->conf, &d->tickets, err,
	    sizeof(err))) == NULL) {
		log_warnx("session ticket keys from %s not renewed, the "
		    "current ones stay: %s", d->conf->tls_ticket_key_path, err);
		return;
	}
	tls_server_unref(d->tls_server);
	d->tls_server = ts;
	log_debug("session ticket keys from %s renewed",
	    d->conf->tls_ticket_key_path);
}

static void
ticket_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct popsd *d = w->data;
	char err[256];

	(void)loop;
	(void)revents;
	if (tlsconf_keys_from_file(d->conf)) {
		renew_file_keys(d);
		return;
	}
	if (is_worker) {
		/* The master makes the keys; take what it published. */
		if (tlsconf_sync(&d->tickets, d->tls_server, err,
		    sizeof(err)) == -1)
			log_warnx("session ticket keys from the master: %s", err);
		return;
	}
	if (tlsconf_rotate(&d->tickets, d->tls_server, err, sizeof(err)) == -1)
		log_warnx("session ticket key rotation failed, the current "
		    "key stays: %s", err);
	else {
		tlsconf_publish(&d->tickets);
		log_debug("session ticket key rotated (every %.0fs)", w->repeat);
	}
}

/*
 * schedule_rotation: rotate ticket keys every quarter of the current
 * tls-session-lifetime (see tlsconf.h), or not at all when resumption is
 * off, in which case the keys are forgotten. With tls-ticket-key-file
 * popsd's own keys are forgotten too, and the timer renews the file's
 * keys in every process instead (tlsconf_keys_from_file). Called at
 * start and after each reload. The timer does not keep the loop alive
 * (ev_unref).
 */
static void
schedule_rotation(struct popsd *d)
{
	double every = tlsconf_rotate_interval(d->conf);
	bool from_file = tlsconf_keys_from_file(d->conf);

	/* A worker looks for the master's new key often, so that all of
	 * them encrypt with it within seconds of each other. */
	if (is_worker && !from_file && every > WORKER_KEY_POLL)
		every = WORKER_KEY_POLL;
	if (from_file || every == 0)
		tlsconf_forget_keys(&d->tickets);
	if (ev_is_active(&ticket_timer)) {
		if (every == ticket_timer.repeat)
			return;
		ev_ref(d->loop);
		ev_timer_stop(d->loop, &ticket_timer);
	}
	if (every == 0)
		return;
	ev_timer_init(&ticket_timer, ticket_cb, every, every);
	ticket_timer.data = d;
	ev_timer_start(d->loop, &ticket_timer);
	ev_unref(d->loop);
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
	if (stop_requested) {
		log_info("second signal: closing %u sessions now", d->nsessions);
		session_shutdown_all(d, "shutdown");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	stop_requested = true;
	d->draining = true;
	sd_notify_send("STOPPING=1\nSTATUS=%s", status_text(d));
	for (i = 0; i < d->nlisteners; i++)
		listener_free(d->listeners[i]);
	d->nlisteners = 0;
	metrics_http_free(d->metrics_http);	/* its port too is let go */
	d->metrics_http = NULL;
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

static bool
same_string(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* same_privileges: privileges were dropped at start-up, for good. */
static bool
same_privileges(const struct conf *a, const struct conf *b)
{
	return same_string(a->user, b->user) &&
	    same_string(a->group, b->group) &&
	    same_string(a->chroot_dir, b->chroot_dir);
}

/* warn_restart_needed: what a reload to c cannot change, logged. */
static void
warn_restart_needed(const struct popsd *d, const struct conf *c)
{
	if (!same_listeners(d->conf, c))
		log_warnx("reload: listen directives changed; restart popsd "
		    "to apply them (keeping the current sockets)");
	if (!same_privileges(d->conf, c))
		log_warnx("reload: user, group or chroot changed; restart "
		    "popsd to apply them (keeping the current ones)");
	if (c->have_metrics != d->conf->have_metrics || (c->have_metrics &&
	    strcmp(c->metrics_listen.text, d->conf->metrics_listen.text) != 0))
		log_warnx("reload: metrics-listen changed; restart popsd to "
		    "apply it (keeping the current socket)");
	if (c->workers_configured != d->conf->workers_configured)
		log_warnx("reload: workers changed; restart popsd to apply it "
		    "(keeping %d)", d->conf->workers);
	if ((unsigned)c->max_sessions > ledger_capacity(d->ledger))
		log_warnx("reload: max-sessions %d: the per-address counts "
		    "were sized at start for %u addresses per process; "
		    "restart popsd to raise that", c->max_sessions,
		    ledger_capacity(d->ledger));
}

/* reload: load the configuration again and swap it in; 0 or -1 (the
 * reason is logged and the running configuration kept). */
static int
reload(struct popsd *d)
{
	struct tls_server *ts = NULL;
	struct conf *c;
	uint32_t last_rev = d->tickets.last_rev;
	char err[1024];

	/* popsd's own keys used again (tls-session-lifetime back on,
	 * tls-ticket-key-file removed): the master, which reloads first,
	 * has made the first key and published it; a worker takes it
	 * rather than make its own, or tickets would resume only in the
	 * worker that issued them. Into the running context only if its
	 * keys are popsd's own. */
	if (is_worker && tlsconf_sync(&d->tickets, d->tickets.n > 0 ?
	    d->tls_server : NULL, err, sizeof(err)) == -1)
		log_warnx("session ticket keys from the master: %s", err);
	if ((c = load(d->conf->path, &ts, &d->tickets, err,
	    sizeof(err))) == NULL) {
		log_warnx("reload failed, keeping the running configuration: %s",
		    err);
		count_reload(false);
		return -1;
	}
	if (!spawner_argv_matches(d, &c->backend) &&
	    (c->backend.kind == BACKEND_EXEC ||
	    d->conf->backend.kind == BACKEND_EXEC)) {
		/* The privileged spawner only ever runs the command it was
		 * started with: an unprivileged process cannot change it. */
		log_warnx("reload failed, keeping the running configuration: "
		    "%s: a \"backend exec\" command can only be changed by a "
		    "restart", c->path);
		tls_server_unref(ts);
		conf_unref(c);
		count_reload(false);
		return -1;
	}
	/* Said once: by the master of workers, which reloaded first. */
	if (!is_worker)
		warn_restart_needed(d, c);
	conf_unref(d->conf);
	tls_server_unref(d->tls_server);
	d->conf = c;
	d->tls_server = ts;
	note_certificates(c);
	count_reload(true);
	if (!is_worker && d->tickets.last_rev != last_rev)
		tlsconf_publish(&d->tickets);	/* made by this load */
	schedule_rotation(d);
	log_info("reloaded %s: new sessions use the new configuration and "
	    "certificates", c->path);
	return 0;
}

static void
reload_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct popsd *d = w->data;

	(void)loop;
	(void)revents;
	if (privs.chroot_dir[0] != '\0') {
		/* The configuration and keys live outside the chroot. */
		log_warnx("reload refused: popsd is chrooted to %s, where %s "
		    "and the keys are out of reach; restart popsd to apply "
		    "changes", privs.chroot_dir, d->conf->path);
		sd_notify_send("STATUS=reload refused under chroot; %s",
		    status_text(d));
		count_reload(false);
		return;
	}
	sd_notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
	    sd_monotonic_usec());
	if (reload(d) == -1)
		sd_notify_send("READY=1\nSTATUS=reload failed, kept the running "
		    "configuration; %s", status_text(d));
	else
		sd_notify_send("READY=1\nSTATUS=%s", status_text(d));
}

/*
 * reload_check: for the master of "workers N", which serves nothing
 * itself: reload as a worker would (same user, same files), so that
 * systemd hears the outcome of "systemctl reload", a broken file is logged
 * once rather than per worker, and a worker restarted later (forked from
 * the master) starts with the configuration in force, not the first one.
 */
static enum reload_verdict
reload_check(struct popsd *d)
{
	if (privs.chroot_dir[0] != '\0') {
		log_warnx("reload refused: popsd is chrooted to %s, where %s "
		    "and the keys are out of reach; restart popsd to apply "
		    "changes", privs.chroot_dir, d->conf->path);
		count_reload(false);
		return RELOAD_REFUSED;
	}
	return reload(d) == 0 ? RELOAD_OK : RELOAD_FAILED;
}

/* adopt_sockets: make listeners of the sockets systemd passed. */
static void
adopt_sockets(struct popsd *d, const struct sd_listen_fd *fds, int n)
{
	struct listener *l;
	int i;

	for (i = 0; i < n; i++) {
		if ((l = listener_adopt(d, fds[i].fd, fds[i].kind,
		    fds[i].text)) == NULL)
			fatalx("out of memory");
		d->listeners[d->nlisteners++] = l;
	}
}

/* adopted_for: the adopted listener already serving cl's address. */
static struct listener *
adopted_for(struct popsd *d, int nadopted, const struct conf_listen *cl)
{
	int i;

	for (i = 0; i < nadopted; i++)
		if (listener_serves(d->listeners[i], cl))
			return d->listeners[i];
	return NULL;
}

/*
 * setup_listeners: sockets from systemd first, then every listen line
 * not already served by one of them (so the same configuration works
 * with and without socket activation).
 */
static void
setup_listeners(struct popsd *d)
{
	struct sd_listen_fd fds[SD_MAX_LISTEN_FDS];
	const struct conf_listen *cl;
	struct listener *l;
	char err[512];
	int i, n;

	if ((n = sd_adopt_listen_fds(fds, SD_MAX_LISTEN_FDS, err,
	    sizeof(err))) == -1)
		fatalx("%s", err);
	d->listeners = calloc((size_t)(n + d->conf->nlistens),
	    sizeof(*d->listeners));
	if (d->listeners == NULL)
		fatal("calloc");
	adopt_sockets(d, fds, n);
	for (i = 0; i < d->conf->nlistens; i++) {
		cl = &d->conf->listens[i];
		if ((l = adopted_for(d, n, cl)) != NULL) {
			if (listener_kind(l) != cl->kind)
				fatalx("listen %s %s: systemd passed that "
				    "socket as %s", listen_kind_name(cl->kind),
				    cl->text, listen_kind_name(listener_kind(l)));
			continue;
		}
		if ((l = listener_bind(d, cl)) == NULL)
			fatalx("cannot listen on %s, exiting", cl->text);
		d->listeners[d->nlisteners++] = l;
	}
	if (d->conf->have_metrics && (d->metrics_http = metrics_http_bind(
	    d->loop, &d->conf->metrics_listen)) == NULL)
		fatalx("cannot listen on metrics-listen %s, exiting",
		    d->conf->metrics_listen.text);
}

/* SIGUSR1: every figure metrics-listen would serve, to the log. */
static void
usr1_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	metrics_log();
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
	ev_signal_init(&sig_usr1, usr1_cb, SIGUSR1);
	ev_signal_start(d->loop, &sig_usr1);
	/* Not a reference: it must not keep an ending loop alive. */
	ev_unref(d->loop);
}

static void
start_notify_timers(struct popsd *d)
{
	if (!sd_notify_active())
		return;
	ev_timer_init(&status_timer, status_cb, STATUS_INTERVAL,
	    STATUS_INTERVAL);
	status_timer.data = d;
	ev_timer_start(d->loop, &status_timer);
	/* Not a reference: the pings must not keep an ending loop alive. */
	ev_unref(d->loop);
	if (sd_watchdog_interval() > 0) {
		ev_timer_init(&watchdog_timer, watchdog_cb,
		    sd_watchdog_interval(), sd_watchdog_interval());
		ev_timer_start(d->loop, &watchdog_timer);
		ev_unref(d->loop);
	}
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
	metrics_http_start(d->metrics_http, d->nworkers > 1);
	log_info("popsd ready: %d listeners, backend %s, max-sessions %d",
	    d->nlisteners, d->conf->have_backend ? d->conf->backend.text :
	    "none", d->conf->max_sessions);
	schedule_rotation(d);
	start_notify_timers(d);
	sd_notify_send("READY=1\nSTATUS=%s", status_text(d));
	ev_run(d->loop, 0);
}

/* serve_inetd: one session on stdin; the loop ends when it does. */
static void
serve_inetd(struct popsd *d, enum listen_kind kind)
{
	char err[512];

	/* Set first: the session may end inside listener_inetd() already,
	 * and session_close() must then find us draining. */
	d->draining = true;
	ev_timer_init(&d->accept_resume, resume_accept_cb, 1.0, 0);
	d->accept_resume.data = d;
	if (listener_inetd(d, STDIN_FILENO, kind, err, sizeof(err)) == -1)
		fatalx("%s", err);
	start_notify_timers(d);
	sd_notify_send("READY=1\nSTATUS=%s", status_text(d));
	if (d->nsessions > 0)
		ev_run(d->loop, 0);
}

static void
teardown(struct popsd *d, bool inetd)
{
	int i;

	if (!stop_requested)
		sd_notify_send("STOPPING=1");
	session_shutdown_all(d, "shutdown");
	spawner_stop(d);
	for (i = 0; i < d->nlisteners; i++)
		listener_free(d->listeners[i]);
	free(d->listeners);
	metrics_http_free(d->metrics_http);
	tls_server_unref(d->tls_server);
	conf_unref(d->conf);
	ledger_free(d->ledger);
	tlsconf_wipe_keys(&d->tickets);
	if (inetd)
		log_debug("popsd exiting");
	else
		log_info("popsd exiting");
}

/* absolute_path: reloads re-read the file after daemon() has changed to
 * "/", so a relative -f path is made absolute now. */
static const char *
absolute_path(const char *path)
{
	char cwd[PATH_MAX];

	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL ||
	    (size_t)snprintf(conf_path, sizeof(conf_path), "%s/%s", cwd,
	    path) >= sizeof(conf_path))
		return path;
	return conf_path;
}

static void
parse_options(int argc, char *argv[], struct options *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	o->path = DEFAULT_CONF;
	while ((ch = getopt(argc, argv, "df:hi:nv")) != -1) {
		switch (ch) {
		case 'd': o->foreground = true; break;
		case 'f': o->path = optarg; break;
		case 'h': usage(0);
		case 'i':
			o->inetd = true;
			if (strcmp(optarg, "pop3s") == 0)
				o->inetd_kind = LISTEN_POP3S;
			else if (strcmp(optarg, "pop3") == 0)
				o->inetd_kind = LISTEN_POP3;
			else if (strcmp(optarg, "tls") == 0)
				o->inetd_kind = LISTEN_TLS;
			else if (strcmp(optarg, "outbound") == 0)
				o->inetd_kind = LISTEN_OUTBOUND;
			else
				usage(1);
			break;
		case 'n': o->check_only = true; break;
		case 'v': o->verbose++; break;
		default: usage(1);
		}
	}
	if (optind != argc)
		usage(1);
	o->path = absolute_path(o->path);
	o->log_stderr = o->foreground || o->check_only;
}

/* same_file: do descriptors a and b refer to the same open file? */
static bool
same_file(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 &&
	    sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/*
 * inetd_stdio: inetd and systemd Accept=yes hand over the connection as
 * stdin and stdout (fd 0 and 1), and some set stderr to it too. popsd
 * uses fd 0 for both directions; 1 and 2 are pointed at /dev/null when
 * they are the connection, so nothing but the session ever writes to the
 * client, and the connection closes when the session closes fd 0. If
 * stderr was the connection, -d cannot log there: syslog it is.
 */
static void
inetd_stdio(struct options *o)
{
	int fd, i;

	for (i = STDOUT_FILENO; i <= STDERR_FILENO; i++) {
		if (!same_file(STDIN_FILENO, i))
			continue;
		if ((fd = open("/dev/null", O_RDWR)) == -1 ||
		    dup2(fd, i) == -1)
			exit(1);	/* nowhere safe to say why */
		if (fd != i)
			close(fd);
		if (i == STDERR_FILENO)
			o->log_stderr = false;
	}
}

/* no_sockets: why a start without -i has nothing to serve. */
static const char *
no_sockets(const struct conf *c, char *err, size_t errsz)
{
	snprintf(err, errsz, "%s: no listen directive, and no sockets passed "
	    "by systemd (LISTEN_FDS): nothing to serve; a file without listen "
	    "lines is for socket activation and inetd mode (-i)", c->path);
	return err;
}

/*
 * check_sockets: for -n, what a start would find about its sockets:
 * systemd's must be well named, and without -i there must be sockets
 * to serve (listen lines, or systemd's). Sockets are not bound here:
 * -n must not take a port from a running popsd. A real start checks the
 * same in setup_listeners(). 0, or -1 with the reason in err.
 */
static int
check_sockets(const struct conf *c, const struct options *o, char *err,
    size_t errsz)
{
	struct sd_listen_fd fds[SD_MAX_LISTEN_FDS];
	int i, n;

	if (!o->check_only)
		return 0;
	if ((n = sd_adopt_listen_fds(fds, SD_MAX_LISTEN_FDS, err,
	    errsz)) == -1)
		return -1;
	for (i = 0; i < n; i++)
		close(fds[i].fd);
	if (!o->inetd && n == 0 && c->nlistens == 0) {
		no_sockets(c, err, errsz);
		return -1;
	}
	return 0;
}

/* startup: everything up to serving; exits on any error. */
static void
startup(struct popsd *d, const struct options *o)
{
	char err[1024];

	if ((d->conf = load(o->path, &d->tls_server, &d->tickets, err,
	    sizeof(err))) == NULL ||
	    privdrop_plan(d->conf, &privs, err, sizeof(err)) == -1 ||
	    check_sockets(d->conf, o, err, sizeof(err)) == -1) {
		if (o->log_stderr)
			fprintf(stderr, "%s\n", err);
		else
			log_warnx("%s", err);
		exit(1);
	}
	if (o->check_only) {
		printf("configuration OK\n");
		tls_server_unref(d->tls_server);
		conf_unref(d->conf);
		tlsconf_wipe_keys(&d->tickets);
		exit(0);
	}
	sd_notify_open();
	if ((d->loop = ev_default_loop(EVFLAG_AUTO)) == NULL)
		fatalx("cannot initialise the event loop");
	/* Before the workers are forked: they share them. */
	if (metrics_init(o->inetd ? 1 : d->conf->workers) == -1)
		fatal("cannot map the metrics");
	note_certificates(d->conf);
	if ((d->ledger = ledger_new(o->inetd ? 1 : d->conf->workers,
	    (unsigned)d->conf->max_sessions)) == NULL)
		fatalx("cannot allocate the session ledger");
	if (!o->inetd) {
		setup_listeners(d);
		if (d->nlisteners == 0)
			fatalx("%s", no_sockets(d->conf, err, sizeof(err)));
	}
	/* Before the drop: daemon() opens /dev/null, absent in a chroot. */
	if (!o->foreground && !o->inetd) {
		if (daemon(0, 0) == -1)
			fatal("daemon");
		ev_loop_fork(d->loop);
	}
	/* The spawner keeps the privileges a legacy daemon expects. */
	if (d->conf->backend.kind == BACKEND_EXEC && spawner_start(d,
	    &d->conf->backend) == -1)
		fatalx("cannot start the backend spawner");
	privdrop_apply(&privs);
}

int
main(int argc, char *argv[])
{
	struct popsd *d = &daemon_state;
	struct options o;

	/* First of all: nothing below may leave a core file with keys. */
	privdrop_no_core_dumps();
	parse_options(argc, argv, &o);
	if (o.inetd && !o.check_only)
		inetd_stdio(&o);
	log_init(o.log_stderr, o.verbose, "popsd");
	if (tls_init() == -1)
		fatalx("tls_init failed");
	TAILQ_INIT(&d->sessions);
	d->id_stride = d->id_offset = 1;
	d->nworkers = 1;
	startup(d, &o);
	if (!o.inetd && d->conf->workers > 1) {
		if (tlsconf_share_keys(&d->tickets) == -1)
			fatal("cannot share ticket keys with workers");
		schedule_rotation(d);
		if (workers_run(d, d->conf->workers, reload_check) == -1) {
			teardown(d, false);	/* the master, at the end */
			return 0;
		}
		is_worker = true;
	}
	setup_signals(d);
	if (o.inetd)
		serve_inetd(d, o.inetd_kind);
	else
		serve(d);
	teardown(d, o.inetd);
	return 0;
}
