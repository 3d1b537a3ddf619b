/*
 * spawn.c — the privileged spawner behind "backend exec" (see spawn.h).
 *
 * Parent side: requests go out on a SOCK_SEQPACKET socketpair, one
 * fixed-size record each; replies come back with two descriptors
 * attached, not necessarily in order (a pair that takes longer to make
 * does not hold up the others), and are matched to tickets by session id.
 * Spawner side: one poll over the channel, a signalfd for SIGCHLD and the
 * loopback listener of lopair.c, nothing blocking; it exits as soon as
 * the channel closes. It never parses anything but its own fixed-size
 * records.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/queue.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "conf.h"
#include "log.h"
#include "lopair.h"
#include "popsd.h"

/* Children still running, for the exit log line: bounded by max-sessions
 * in practice; beyond this the pid is still reaped, just logged without
 * its session id. */
#define SPAWN_TRACK_MAX	4096

struct spawn_request {
	uint64_t		id;
	struct spawn_env	env;
};

struct spawn_reply {
	uint64_t	id;
	int32_t		pid;		/* -1 on failure */
	char		why[128];
};

struct spawn_ticket {
	TAILQ_ENTRY(spawn_ticket) entry;
	uint64_t	 id;
	spawn_done_fn	*done;		/* NULL once cancelled */
	void		*arg;
};

TAILQ_HEAD(ticket_queue, spawn_ticket);

struct spawner {
	int			 fd;
	ev_io			 w;
	struct ticket_queue	 pending;
	char			*argv[CONF_MAX_EXEC_ARGS + 1]; /* our copy */
};

static struct spawner	*the_spawner;

/* --- the spawner process ------------------------------------------------- */

struct tracked {
	pid_t		pid;
	uint64_t	id;
};

static struct tracked	tracked[SPAWN_TRACK_MAX];
static int		running;	/* daemons tracked, alive */
/* At most this many daemons at once: max-sessions as popsd started (a
 * popsd that misbehaved could otherwise have root fork without end). */
static int		max_running = SPAWN_TRACK_MAX;

static void
track(pid_t pid, uint64_t id)
{
	int i;

	for (i = 0; i < SPAWN_TRACK_MAX; i++)
		if (tracked[i].pid == 0) {
			tracked[i].pid = pid;
			tracked[i].id = id;
			running++;
			return;
		}
}

static uint64_t
untrack(pid_t pid)
{
	uint64_t id;
	int i;

	for (i = 0; i < SPAWN_TRACK_MAX; i++)
		if (tracked[i].pid == pid) {
			id = tracked[i].id;
			tracked[i].pid = 0;
			running--;
			return id;
		}
	return 0;
}

static void
reap_children(const char *prog)
{
	uint64_t id;
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		id = untrack(pid);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			log_debug("session=%llu backend %s pid %d exited",
			    (unsigned long long)id, prog, (int)pid);
		else if (WIFEXITED(status))
			log_info("session=%llu backend %s pid %d exited with "
			    "status %d", (unsigned long long)id, prog,
			    (int)pid, WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			log_warnx("session=%llu backend %s pid %d killed by "
			    "signal %d", (unsigned long long)id, prog,
			    (int)pid, WTERMSIG(status));
	}
}

static void
env_put(char **envp, int *n, char *slot, size_t slotsz, const char *name,
    const char *value)
{
	if (value[0] == '\0')
		return;
	snprintf(slot, slotsz, "%s=%s", name, value);
	envp[(*n)++] = slot;
}

/* exec_child: in the forked child; never returns. */
static void __attribute__((noreturn))
exec_child(char **argv, const struct spawn_env *e, int conn, int errw)
{
	static char slots[8][160];
	char *envp[10];
	sigset_t all;
	int n = 0;

	envp[n++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
	    "/sbin:/bin";
	envp[n++] = "PROTO=TCP";
	env_put(envp, &n, slots[0], sizeof(slots[0]), "TCPREMOTEIP", e->remote_ip);
	env_put(envp, &n, slots[1], sizeof(slots[1]), "TCPREMOTEPORT",
	    e->remote_port);
	env_put(envp, &n, slots[2], sizeof(slots[2]), "TCPLOCALIP", e->local_ip);
	env_put(envp, &n, slots[3], sizeof(slots[3]), "TCPLOCALPORT",
	    e->local_port);
	env_put(envp, &n, slots[4], sizeof(slots[4]), "SSL_PROTOCOL",
	    e->ssl_protocol);
	env_put(envp, &n, slots[5], sizeof(slots[5]), "SSL_CIPHER",
	    e->ssl_cipher);
	envp[n] = NULL;

	/* The connection on stdin and stdout, exactly as inetd gives it. */
	if (dup2(conn, STDIN_FILENO) == -1 || dup2(conn, STDOUT_FILENO) == -1 ||
	    dup2(errw, STDERR_FILENO) == -1)
		_exit(127);
	closefrom(3);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	(void)setsid();
	execve(argv[0], argv, envp);
	dprintf(STDERR_FILENO, "popsd: cannot execute %s: %s\n", argv[0],
	    strerror(errno));
	_exit(127);
}

static void
send_reply(int ctl, uint64_t id, pid_t pid, int conn, int errr, const char *why)
{
	struct spawn_reply rep;
	struct msghdr msg;
	struct iovec iov;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(2 * sizeof(int))];
	} cm;
	struct cmsghdr *c;
	int fds[2] = { conn, errr };

	memset(&rep, 0, sizeof(rep));
	rep.id = id;
	rep.pid = pid;
	snprintf(rep.why, sizeof(rep.why), "%s", why ? why : "");
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = &rep;
	iov.iov_len = sizeof(rep);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (pid > 0) {
		memset(&cm, 0, sizeof(cm));
		msg.msg_control = cm.buf;
		msg.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(fds));
		memcpy(CMSG_DATA(c), fds, sizeof(fds));
	}
	/* Never wait for popsd: it reads replies as they come, and if it
	 * does not, the session's start timeout ends it; the daemon sees
	 * its connection close once our copies are closed. */
	if (sendmsg(ctl, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
		log_warn("spawner: sendmsg");
}

/*
 * The daemon's end of the connection is a loopback TCP socket, not a
 * socketpair: inetd gives daemons TCP sockets, and some look. solid-pop3d
 * calls getpeername() on stdin and, seeing AF_UNIX, binds [::]:110 and
 * goes standalone. lopair.c makes the pairs; nothing here blocks: a pair
 * still being made waits in its slot while the loop goes on reaping and
 * taking requests.
 */
#define PAIR_TIMEOUT_MS	5000

struct pending {
	bool			used;
	int64_t			deadline;	/* ms, CLOCK_MONOTONIC */
	struct spawn_request	rq;
};

static struct lopair	*pairs;
static struct pending	 pending[LOPAIR_MAX];
static int		 npending;

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* spawn_one: stderr pipe + fork/exec for a finished pair; reply either
 * way. Takes conn (ours) and peer (the daemon's end). */
static void
spawn_one(int ctl, char **argv, const struct spawn_request *rq, int conn,
    int peer)
{
	int ep[2];
	pid_t pid;

	if (pipe2(ep, O_CLOEXEC) == -1) {
		send_reply(ctl, rq->id, -1, -1, -1, strerror(errno));
		close(conn);
		close(peer);
		return;
	}
	if ((pid = fork()) == 0)
		exec_child(argv, &rq->env, peer, ep[1]);
	close(peer);
	close(ep[1]);
	if (pid == -1)
		send_reply(ctl, rq->id, -1, -1, -1, strerror(errno));
	else {
		track(pid, rq->id);
		send_reply(ctl, rq->id, pid, conn, ep[0], NULL);
	}
	close(conn);
	close(ep[0]);
}

/* start_request: a pair for rq; the spawn follows once it is made. */
static void
start_request(int ctl, const struct spawn_request *rq)
{
	int slot;

	if (running + npending >= max_running) {
		send_reply(ctl, rq->id, -1, -1, -1, "too many daemons running "
		    "(max-sessions as popsd started)");
		return;
	}
	if ((slot = lopair_connect(pairs)) == -1) {
		send_reply(ctl, rq->id, -1, -1, -1, strerror(errno));
		return;
	}
	pending[slot].used = true;
	pending[slot].deadline = now_ms() + PAIR_TIMEOUT_MS;
	pending[slot].rq = *rq;
	npending++;
}

static void
finish_pairs(int ctl, char **argv)
{
	int slot, conn, peer;

	/* Also with none pending: a leftover of a cancel must not keep the
	 * listener readable. */
	while (lopair_accept(pairs, &slot, &conn, &peer) == 1) {
		pending[slot].used = false;
		npending--;
		spawn_one(ctl, argv, &pending[slot].rq, conn, peer);
	}
}

/* expire_pairs: give up on pairs past their deadline; returns the poll
 * timeout until the next one (-1: none in flight). */
static int
expire_pairs(int ctl)
{
	int64_t now = now_ms(), next = -1;
	int i;

	for (i = 0; i < LOPAIR_MAX; i++) {
		if (!pending[i].used)
			continue;
		if (pending[i].deadline <= now) {
			lopair_cancel(pairs, i);
			pending[i].used = false;
			npending--;
			send_reply(ctl, pending[i].rq.id, -1, -1, -1,
			    "no connection to the daemon's socket in time");
		} else if (next == -1 || pending[i].deadline - now < next)
			next = pending[i].deadline - now;
	}
	return (int)next;
}

/* take_request: one request off the channel and its pair started.
 * Returns 1 when one was taken, 0 when none is waiting, -1 once the
 * channel is closed (popsd is gone). */
static int
take_request(int ctl)
{
	struct spawn_request rq;
	ssize_t n;

	n = recv(ctl, &rq, sizeof(rq), MSG_DONTWAIT);
	if (n == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR ? 0 : -1;
	if (n == 0)
		return -1;
	if (n != (ssize_t)sizeof(rq))
		return 1;	/* not one of ours: ignore */
	rq.env.remote_ip[sizeof(rq.env.remote_ip) - 1] = '\0';
	rq.env.remote_port[sizeof(rq.env.remote_port) - 1] = '\0';
	rq.env.local_ip[sizeof(rq.env.local_ip) - 1] = '\0';
	rq.env.local_port[sizeof(rq.env.local_port) - 1] = '\0';
	rq.env.ssl_protocol[sizeof(rq.env.ssl_protocol) - 1] = '\0';
	rq.env.ssl_cipher[sizeof(rq.env.ssl_cipher) - 1] = '\0';
	start_request(ctl, &rq);
	return 1;
}

/*
 * spawner_exit: popsd is gone (killed, crashed, or stopped). The daemons
 * still running are not signalled: popsd's ends of their connections
 * closed with it, so each sees its client hang up and ends as it would
 * under inetd, finishing what it was doing (a QUIT's deletions, say).
 * Whoever reaps orphans reaps them.
 */
static void __attribute__((noreturn))
spawner_exit(void)
{
	int i, left = 0;

	for (i = 0; i < SPAWN_TRACK_MAX; i++)
		if (tracked[i].pid != 0)
			left++;
	log_info("spawner exiting with popsd; %d daemon(s) still running "
	    "are left to end with their connections", left);
	_exit(0);
}

/*
 * spawner_main: one poll over the channel, SIGCHLD and the pair listener,
 * never blocking anywhere else. The channel is polled even when no more
 * requests can be taken (every pair slot busy) so that its closing is
 * seen at once: this, not PR_SET_PDEATHSIG, is what ends the spawner with
 * popsd. (The kernel checks a parent-death signal against the dying
 * parent's credentials, and popsd has dropped root by then, so the signal
 * to this root process would never come.)
 */
/* raise_fd_limit: the spawner holds a few descriptors per pair in flight
 * and must not be the one to run out when popsd's soft limit is tight:
 * it takes the hard limit (root may). */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void __attribute__((noreturn))
spawner_main(int ctl, char **argv)
{
	struct pollfd pfd[3];
	sigset_t chld;
	int sfd, timeout, i, rv;

	(void)prctl(PR_SET_NAME, "popsd-spawner");
	raise_fd_limit();
	if ((pairs = lopair_new()) == NULL)
		fatal("spawner: loopback listener");
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	if ((sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK)) == -1)
		fatal("spawner: signalfd");
	pfd[0].fd = ctl;
	pfd[1].fd = sfd;
	pfd[1].events = POLLIN;
	pfd[2].fd = lopair_fd(pairs);
	pfd[2].events = POLLIN;
	for (;;) {
		timeout = expire_pairs(ctl);
		pfd[0].events = npending < LOPAIR_MAX ? POLLIN : 0;
		if (poll(pfd, 3, timeout) == -1) {
			if (errno == EINTR)
				continue;
			fatal("spawner: poll");
		}
		if (pfd[0].revents & (POLLHUP | POLLERR | POLLNVAL))
			spawner_exit();
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				;
			reap_children(argv[0]);
		}
		/* A few at a time, so that pairs and children get their
		 * turn under a burst. */
		for (i = 0; i < LOPAIR_MAX && npending < LOPAIR_MAX &&
		    (pfd[0].revents & POLLIN) && (rv = take_request(ctl)) != 0;
		    i++)
			if (rv == -1)
				spawner_exit();
		finish_pairs(ctl, argv);
	}
}

/* forget_secrets: the spawner inherited the daemon's memory, keys
 * included; it needs none of them. */
static void
forget_secrets(struct popsd *d)
{
	struct conf *c = d->conf;
	int i;

	tls_server_unref(d->tls_server);
	d->tls_server = NULL;
	tlsconf_wipe_keys(&d->tickets);
	/* The configuration stays (the command line lives in it), its
	 * private keys and ticket keys do not. */
	for (i = 0; i < c->nkeypairs; i++)
		if (c->keypairs[i].key != NULL)
			explicit_bzero(c->keypairs[i].key,
			    c->keypairs[i].key_len);
	explicit_bzero(&c->tls_ticket_keys, sizeof(c->tls_ticket_keys));
}

/* --- the daemon side ------------------------------------------------------ */

static void
finish_ticket(struct spawner *sp, const struct spawn_reply *rep, int conn,
    int errr)
{
	struct spawn_ticket *t;

	TAILQ_FOREACH(t, &sp->pending, entry)
		if (t->id == rep->id)
			break;
	/* No ticket: the session was cancelled (it ended first), so what
	 * the reply carries is closed unused. */
	if (t != NULL)
		TAILQ_REMOVE(&sp->pending, t, entry);
	if (t == NULL) {
		if (conn != -1)
			close(conn);
		if (errr != -1)
			close(errr);
	} else if (rep->pid > 0 && conn != -1 && errr != -1)
		t->done(t->arg, conn, errr, rep->pid, NULL);
	else
		t->done(t->arg, -1, -1, -1, rep->why[0] ? rep->why :
		    "spawner failed");
	free(t);
}

static void
fail_all(struct spawner *sp, const char *why)
{
	struct spawn_ticket *t;

	while ((t = TAILQ_FIRST(&sp->pending)) != NULL) {
		TAILQ_REMOVE(&sp->pending, t, entry);
		if (t->done != NULL)
			t->done(t->arg, -1, -1, -1, why);
		free(t);
	}
}

/* take_fds: the descriptors in SCM_RIGHTS message c go into fds after
 * the got already there; any beyond two are closed (a spawner never sends
 * more). Returns the new count. */
static int
take_fds(struct cmsghdr *c, int fds[2], int got)
{
	size_t i, n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	int fd;

	for (i = 0; i < n; i++) {
		memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
		if (got < 2)
			fds[got++] = fd;
		else
			close(fd);
	}
	return got;
}

static int
recv_reply(struct spawner *sp, struct spawn_reply *rep, int *conn, int *errr)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(2 * sizeof(int))];
	} cm;
	struct msghdr msg;
	struct iovec iov;
	struct cmsghdr *c;
	int fds[2], got = 0;
	ssize_t n;

	*conn = *errr = -1;
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = rep;
	iov.iov_len = sizeof(*rep);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cm.buf;
	msg.msg_controllen = sizeof(cm.buf);
	n = recvmsg(sp->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	if (n != (ssize_t)sizeof(*rep))
		return -1;
	rep->why[sizeof(rep->why) - 1] = '\0';
	for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			got = take_fds(c, fds, got);
	if (rep->pid <= 0 || got != 2 || (msg.msg_flags & MSG_CTRUNC)) {
		/* A refusal carries no descriptors. A daemon's that did not
		 * all arrive (EMFILE here truncates SCM_RIGHTS) fails this
		 * one request; the channel and the spawner stay. */
		while (got > 0)
			close(fds[--got]);
		if (rep->pid > 0)
			snprintf(rep->why, sizeof(rep->why), "its descriptors "
			    "did not arrive (out of file descriptors?)");
		rep->pid = -1;
		return 1;
	}
	*conn = fds[0];
	*errr = fds[1];
	if (*conn != -1)
		(void)fcntl(*conn, F_SETFL, fcntl(*conn, F_GETFL) | O_NONBLOCK);
	if (*errr != -1)
		(void)fcntl(*errr, F_SETFL, fcntl(*errr, F_GETFL) | O_NONBLOCK);
	return 1;
}

static void
spawner_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct spawner *sp = w->data;
	struct spawn_reply rep;
	int rv, conn, errr;

	(void)revents;
	while ((rv = recv_reply(sp, &rep, &conn, &errr)) == 1)
		finish_ticket(sp, &rep, conn, errr);
	if (rv == -1) {
		log_warnx("spawner exited: backend exec sessions will fail");
		ev_io_stop(loop, w);
		close(sp->fd);
		sp->fd = -1;
		fail_all(sp, "spawner gone");
	}
}

static void
free_argv(char **argv)
{
	int i;

	for (i = 0; argv[i] != NULL; i++) {
		free(argv[i]);
		argv[i] = NULL;
	}
}

int
spawner_start(struct popsd *d, const struct conf_backend *b)
{
	struct spawner *sp;
	int sv[2], i;
	pid_t pid;

	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		goto nomem;
	/* A reload may free b; the spawner's command never changes. */
	for (i = 0; b->argv[i] != NULL; i++)
		if ((sp->argv[i] = strdup(b->argv[i])) == NULL)
			goto nomem;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("spawner: socketpair");
		goto fail;
	}
	if ((pid = fork()) == -1) {
		log_warn("spawner: fork");
		close(sv[0]);
		close(sv[1]);
		goto fail;
	}
	if (pid == 0) {
		/* Keep only the channel (as fd 3) and stdio: no listening
		 * sockets, no event loop, no notify socket. No parent-death
		 * signal either (see spawner_main): if popsd is already gone,
		 * the channel is closed and the first poll says so. */
		if (dup2(sv[1], 3) == -1)
			_exit(1);
		closefrom(4);
		closelog();
		forget_secrets(d);
		if (d->conf->max_sessions < SPAWN_TRACK_MAX)
			max_running = d->conf->max_sessions;
		spawner_main(3, (char **)b->argv);
	}
	close(sv[1]);
	(void)fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	sp->fd = sv[0];
	TAILQ_INIT(&sp->pending);
	ev_io_init(&sp->w, spawner_cb, sp->fd, EV_READ);
	sp->w.data = sp;
	ev_io_start(d->loop, &sp->w);
	the_spawner = sp;
	log_info("spawner pid %d runs %s for each session", (int)pid, b->argv[0]);
	return 0;
nomem:
	log_warnx("spawner: out of memory");
fail:
	if (sp != NULL)
		free_argv(sp->argv);
	free(sp);
	return -1;
}

struct spawn_ticket *
spawner_request(struct popsd *d, uint64_t id, const struct spawn_env *env,
    spawn_done_fn *done, void *arg)
{
	struct spawner *sp = the_spawner;
	struct spawn_request rq;
	struct spawn_ticket *t;

	(void)d;
	if (sp == NULL || sp->fd == -1)
		return NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	memset(&rq, 0, sizeof(rq));
	rq.id = id;
	rq.env = *env;
	if (send(sp->fd, &rq, sizeof(rq), MSG_NOSIGNAL | MSG_DONTWAIT) !=
	    (ssize_t)sizeof(rq)) {
		free(t);
		return NULL;
	}
	t->id = id;
	t->done = done;
	t->arg = arg;
	TAILQ_INSERT_TAIL(&sp->pending, t, entry);
	return t;
}

/* The ticket is freed now, not when the reply comes: a reply the spawner
 * could not send would otherwise leave it pending for good. A late reply
 * finds no ticket and its descriptors are closed (finish_ticket). */
void
spawner_cancel(struct spawn_ticket *t)
{
	struct spawner *sp = the_spawner;

	if (t == NULL)
		return;
	if (sp != NULL)
		TAILQ_REMOVE(&sp->pending, t, entry);
	free(t);
}

int
spawner_argv_matches(const struct popsd *d, const struct conf_backend *b)
{
	const struct spawner *sp = the_spawner;
	int i;

	(void)d;
	if (sp == NULL || b->kind != BACKEND_EXEC)
		return sp == NULL && b->kind != BACKEND_EXEC;
	for (i = 0; sp->argv[i] != NULL || b->argv[i] != NULL; i++)
		if (sp->argv[i] == NULL || b->argv[i] == NULL ||
		    strcmp(sp->argv[i], b->argv[i]) != 0)
			return 0;
	return 1;
}

void
spawner_stop(struct popsd *d)
{
	struct spawner *sp = the_spawner;

	if (sp == NULL)
		return;
	if (sp->fd != -1) {
		ev_io_stop(d->loop, &sp->w);
		close(sp->fd);
	}
	fail_all(sp, "shutting down");
	free_argv(sp->argv);
	free(sp);
	the_spawner = NULL;
}
