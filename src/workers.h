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

/*
 * workers_run: fork n (>= 2) workers. Returns in each worker (0 .. n-1,
 * with d set up to serve: session ids distinct across workers, no
 * systemd notification) and, in the master, -1 once every worker has
 * exited after TERM/INT. ready_status is sent to systemd by the master.
 */
int	workers_run(struct popsd *d, int n);

#endif
