/* workers.c — the master of "workers N" (see workers.h). */
#include "workers.h"

#include <errno.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#include <ev.h>

#include "conf.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "popsd.h"
#include "sd.h"

#define WORKERS_MAX		64
#define RESPAWN_DELAY		1.0	/* seconds before a dead worker returns */
#define STOP_GRACE		10.0	/* beyond the drain timeout, then KILL */
#define STATUS_INTERVAL		5.0	/* systemd's STATUS=, at most this often */

struct worker {
	pid_t		 pid;		/* 0 while not running */
	int		 index;
	ev_child	 child;
	ev_timer	 respawn;
	struct popsd	*d;
};

static struct worker	 workers[WORKERS_MAX];
static int		 nworkers;
static bool		 stopping;
static int		 my_index = -1;	/* set in a worker */
static ev_signal	 sig_term, sig_int, sig_hup, sig_usr1;
static ev_timer		 kill_timer;
static ev_timer		 watchdog;
static ev_timer		 status_timer;
static reload_check_fn	 reload_check;

static void	child_cb(struct ev_loop *loop, ev_child *w, int revents);

/* become_worker: in the child: forget the master's watchers and take
 * this worker's share of the daemon. */
static void
become_worker(struct popsd *d, int index, pid_t master)
{
	int i;

	ev_loop_fork(d->loop);
	for (i = 0; i < nworkers; i++) {
		ev_child_stop(d->loop, &workers[i].child);
		ev_timer_stop(d->loop, &workers[i].respawn);
	}
	ev_signal_stop(d->loop, &sig_term);
	ev_signal_stop(d->loop, &sig_int);
	ev_signal_stop(d->loop, &sig_hup);
	ev_signal_stop(d->loop, &sig_usr1);
	if (ev_is_active(&watchdog)) {
		ev_ref(d->loop);
		ev_timer_stop(d->loop, &watchdog);
	}
	if (ev_is_active(&status_timer)) {
		ev_ref(d->loop);
		ev_timer_stop(d->loop, &status_timer);
	}
	sd_notify_close();
	d->nworkers = nworkers;
	d->id_stride = (unsigned)nworkers;
	d->id_offset = (unsigned)index + 1;
	ledger_bind(d->ledger, index);
	metrics_bind(index);
	my_index = index;
	/* Without the master nobody restarts workers or rotates ticket
	 * keys, and orphans would hold the port a new popsd must bind: a
	 * worker drains and ends when the master goes, even by SIGKILL.
	 * Set last: until serve() takes SIGTERM, it just ends the worker. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		log_warn("worker %d: prctl(PR_SET_PDEATHSIG)", index);
	else if (getppid() != master)	/* gone before the prctl */
		(void)raise(SIGTERM);
}

/* spawn: start worker w; returns true in the new worker process. */
static bool
spawn(struct worker *w)
{
	pid_t master = getpid();
	pid_t pid = fork();

	if (pid == -1) {
		log_warn("worker %d: fork", w->index);
		ev_timer_set(&w->respawn, RESPAWN_DELAY, 0);
		ev_timer_start(w->d->loop, &w->respawn);
		return false;
	}
	if (pid == 0) {
		become_worker(w->d, w->index, master);
		return true;
	}
	w->pid = pid;
	ev_child_set(&w->child, pid, 0);
	ev_child_start(w->d->loop, &w->child);
	log_debug("worker %d started as pid %d", w->index, (int)pid);
	return false;
}

static bool
all_stopped(void)
{
	int i;

	for (i = 0; i < nworkers; i++)
		if (workers[i].pid != 0)
			return false;
	return true;
}

static void
child_cb(struct ev_loop *loop, ev_child *c, int revents)
{
	struct worker *w = c->data;

	(void)revents;
	ev_child_stop(loop, c);
	w->pid = 0;
	/* Its sessions ended with it: they no longer count toward the
	 * limits of the others. */
	ledger_forget(w->d->ledger, w->index);
	metrics_forget(w->index);	/* its counters stay */
	if (stopping) {
		if (all_stopped())
			ev_break(loop, EVBREAK_ALL);
		return;
	}
	log_warnx("worker %d (pid %d) ended unexpectedly (status 0x%x); "
	    "restarting it", w->index, c->rpid, c->rstatus);
	ev_timer_set(&w->respawn, RESPAWN_DELAY, 0);
	ev_timer_start(loop, &w->respawn);
}

static void
respawn_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct worker *w = t->data;

	(void)revents;
	if (stopping || !spawn(w))
		return;
	/* In the new worker: leave the master's loop for serve(). */
	ev_break(loop, EVBREAK_ALL);
}

/* status_text: what "systemctl status" shows: the sessions of every
 * worker, read from the ledger they share. */
static const char *
status_text(const struct popsd *d)
{
	static char buf[80];
	unsigned n = ledger_sessions(d->ledger);

	snprintf(buf, sizeof(buf), "%s %u session%s, %d workers",
	    stopping ? "draining" : "serving", n, n == 1 ? "" : "s", nworkers);
	return buf;
}

/* Polled, as in a single process (main.c): no message per session. */
static void
status_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	sd_notify_status(status_text(t->data));
}

static void
forward(int sig)
{
	int i;

	for (i = 0; i < nworkers; i++)
		if (workers[i].pid != 0)
			(void)kill(workers[i].pid, sig);
}

static void
kill_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	log_warnx("workers did not stop in time: killing them");
	forward(SIGKILL);
}

static void
master_term_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
	struct popsd *d = s->data;

	(void)revents;
	if (!stopping) {
		stopping = true;
		sd_notify_send("STOPPING=1\nSTATUS=%s", status_text(d));
		log_info("signal %d: stopping %d workers", s->signum, nworkers);
		ev_timer_init(&kill_timer, kill_cb,
		    d->conf->timeout_drain + STOP_GRACE, 0);
		ev_timer_start(loop, &kill_timer);
	}
	stopping = true;
	forward(s->signum);	/* a second signal: workers close at once */
	if (all_stopped())
		ev_break(loop, EVBREAK_ALL);
}

static void
master_hup_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
	struct popsd *d = s->data;

	(void)loop;
	(void)revents;
	switch (reload_check(d)) {
	case RELOAD_REFUSED:
		sd_notify_send("STATUS=reload refused under chroot; %s",
		    status_text(d));
		return;
	case RELOAD_FAILED:
		sd_notify_send("RELOADING=1\nMONOTONIC_USEC=%llu",
		    sd_monotonic_usec());
		sd_notify_send("READY=1\nSTATUS=reload failed, kept the running "
		    "configuration; %s", status_text(d));
		return;
	case RELOAD_OK:
		break;
	}
	sd_notify_send("RELOADING=1\nMONOTONIC_USEC=%llu", sd_monotonic_usec());
	log_info("reload: passing SIGHUP to %d workers", nworkers);
	forward(SIGHUP);
	sd_notify_send("READY=1\nSTATUS=%s", status_text(d));
}

/* SIGUSR1: the whole daemon's figures to the log (the workers answer
 * it too, each with the same sums). */
static void
master_usr1_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
	(void)loop;
	(void)s;
	(void)revents;
	metrics_log();
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	sd_notify_send("WATCHDOG=1");
}

int
workers_run(struct popsd *d, int n, reload_check_fn check)
{
	int i;

	reload_check = check;
	nworkers = n > WORKERS_MAX ? WORKERS_MAX : n;
	ev_signal_init(&sig_term, master_term_cb, SIGTERM);
	ev_signal_init(&sig_int, master_term_cb, SIGINT);
	ev_signal_init(&sig_hup, master_hup_cb, SIGHUP);
	sig_term.data = sig_int.data = sig_hup.data = d;
	ev_signal_start(d->loop, &sig_term);
	ev_signal_start(d->loop, &sig_int);
	ev_signal_start(d->loop, &sig_hup);
	ev_signal_init(&sig_usr1, master_usr1_cb, SIGUSR1);
	ev_signal_start(d->loop, &sig_usr1);
	for (i = 0; i < nworkers; i++) {
		workers[i].index = i;
		workers[i].d = d;
		ev_child_init(&workers[i].child, child_cb, 0, 0);
		workers[i].child.data = &workers[i];
		ev_timer_init(&workers[i].respawn, respawn_cb, RESPAWN_DELAY, 0);
		workers[i].respawn.data = &workers[i];
	}
	for (i = 0; i < nworkers; i++)
		if (spawn(&workers[i]))
			return i;
	if (sd_watchdog_interval() > 0) {
		ev_timer_init(&watchdog, watchdog_cb, sd_watchdog_interval(),
		    sd_watchdog_interval());
		ev_timer_start(d->loop, &watchdog);
		ev_unref(d->loop);
	}
	ev_timer_init(&status_timer, status_cb, STATUS_INTERVAL, STATUS_INTERVAL);
	status_timer.data = d;
	ev_timer_start(d->loop, &status_timer);
	ev_unref(d->loop);
	log_info("popsd ready: %d workers", nworkers);
	sd_notify_send("READY=1\nSTATUS=%s", status_text(d));
	ev_run(d->loop, 0);
	/* Back here in a respawned worker, or in the master at the end. */
	return my_index;
}
