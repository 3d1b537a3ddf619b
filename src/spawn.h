/*
 * spawn.h — "backend exec": inetd-style daemons started per session.
 *
 * Legacy POP daemons expect to start as root (to read /etc/shadow and
 * become the user) with the connection on stdin/stdout. popsd itself
 * drops privileges after binding, so the daemons are started by a small
 * spawner process forked before the drop. It keeps its privileges, knows
 * only the command line from the configuration at start-up, and takes
 * fixed-size requests ("start one for session N with this environment")
 * from the unprivileged daemon over a socketpair; it answers with the
 * session's end of a new loopback TCP connection (the daemon has the
 * other end on stdin/stdout, a TCP socket as under inetd; lopair.c makes
 * it so that no other local user can get in) and the read end of the
 * daemon's stderr pipe (SCM_RIGHTS). It reaps children and logs how they
 * ended. It never blocks, and exits as soon as the socketpair closes,
 * whatever ended popsd, leaving running daemons to end with their
 * connections.
 */
#ifndef POPSD_SPAWN_H
#define POPSD_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

struct popsd;
struct conf_backend;
struct spawn_ticket;

/* UCSPI-TCP environment for one session (all NUL-terminated; SSL_* empty
 * when the session is not under TLS yet). */
struct spawn_env {
	char	remote_ip[64];
	char	remote_port[8];
	char	local_ip[64];
	char	local_port[8];
	char	ssl_protocol[32];
	char	ssl_cipher[96];
};

/* Called once per request unless cancelled: conn_fd (non-blocking) and
 * err_fd are the caller's to close; on failure both are -1 and why says
 * what went wrong. */
typedef void spawn_done_fn(void *arg, int conn_fd, int err_fd, pid_t pid,
    const char *why);

/* spawner_start: fork the spawner for b (a BACKEND_EXEC backend). Must be
 * called before privileges are dropped and before serving; the child
 * wipes every key it inherited. Returns 0, or -1 with the reason logged. */
int	spawner_start(struct popsd *d, const struct conf_backend *b);

/* spawner_request: ask for a daemon for session id; done(arg, ...) runs
 * from the event loop later (or never, after spawner_cancel); replies to
 * several requests may come in any order. Returns a
 * ticket, or NULL when the spawner cannot take the request (gone, or
 * too busy): the caller treats that as backend unavailable. */
struct spawn_ticket *spawner_request(struct popsd *d, uint64_t id,
	    const struct spawn_env *env, spawn_done_fn *done, void *arg);

/* spawner_cancel: the session ended first: its fds are closed on arrival. */
void	spawner_cancel(struct spawn_ticket *t);

/* spawner_argv_matches: is b the command the spawner was started with?
 * (A reload cannot change it: the spawner never takes commands later.) */
int	spawner_argv_matches(const struct popsd *d, const struct conf_backend *b);

/* spawner_stop: close the channel; the spawner exits as soon as it sees
 * it closed (as it does when popsd dies, SIGKILL included). */
void	spawner_stop(struct popsd *d);

#endif
