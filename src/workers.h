/*
 * workers.h — "workers N": several processes serving the same sockets.
 *
 * A TLS handshake is CPU work in one thread; on a host with more cores
 * popsd forks N workers once the sockets are bound and privileges dropped.
 * They share the listening sockets (the kernel hands each connection to
 * one of them) and the session ticket keys, so a ticket issued by one
 * worker resumes with any other. The first process stays as master: it
 * makes the ticket keys, forwards HUP/TERM/INT to the workers, restarts a
 * worker that dies, and is the one that talks to systemd.
 */
#ifndef POPSD_WORKERS_H
#define POPSD_WORKERS_H

struct popsd;

enum reload_verdict { RELOAD_OK, RELOAD_FAILED, RELOAD_REFUSED };

/* A SIGHUP to the master: would the workers' reload work? Logs why not. */
typedef enum reload_verdict (*reload_check_fn)(struct popsd *d);

/*
 * workers_run: fork n (>= 2) workers. Returns in each worker (0 .. n-1,
 * with d set up to serve: session ids distinct across workers, no
 * systemd notification) and, in the master, -1 once every worker has
 * exited after TERM/INT. On SIGHUP the master asks check, passes the
 * signal on only if the reload would work, and tells systemd either way.
 */
int	workers_run(struct popsd *d, int n, reload_check_fn check);

#endif
