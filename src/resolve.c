/* resolve.c — getaddrinfo_a() woken into the event loop (see resolve.h). */
#include "resolve.h"

#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct resolve_req {
	TAILQ_ENTRY(resolve_req) entry;
	struct gaicb		 gcb;
	struct addrinfo		 hints;
	char			 host[256];
	char			 port[8];
	resolve_cb		 cb;
	void			*arg;
	bool			 cancelled;
};

TAILQ_HEAD(req_list, resolve_req);

/* One per process: the loop and its async watcher live as long as the
 * process, so glibc's notification thread may always touch them. */
static struct ev_loop	*rloop;
static ev_async		 rasync;
static struct req_list	 pending = TAILQ_HEAD_INITIALIZER(pending);

static void
req_free(struct resolve_req *r)
{
	if (r->gcb.ar_result != NULL)
		freeaddrinfo(r->gcb.ar_result);
	free(r);
}

/* Runs on a glibc thread: only wake the loop. */
static void
notify(union sigval sv)
{
	(void)sv;
	ev_async_send(rloop, &rasync);
}

/* In the loop: every finished lookup is reported (or dropped). */
static void
async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct resolve_req *r, *next;
	int err;

	(void)loop;
	(void)w;
	(void)revents;
	for (r = TAILQ_FIRST(&pending); r != NULL; r = next) {
		next = TAILQ_NEXT(r, entry);
		if ((err = gai_error(&r->gcb)) == EAI_INPROGRESS)
			continue;
		TAILQ_REMOVE(&pending, r, entry);
		if (!r->cancelled)
			r->cb(r->arg, err == 0 ? r->gcb.ar_result : NULL, err);
		req_free(r);
	}
}

struct resolve_req *
resolve_start(struct ev_loop *loop, const char *host, uint16_t port,
    resolve_cb cb, void *arg)
{
	struct gaicb *list[1];
	struct sigevent sev;
	struct resolve_req *r;

	if (rloop == NULL) {
		rloop = loop;
		ev_async_init(&rasync, async_cb);
		ev_async_start(loop, &rasync);
		/* A pending lookup must not keep a draining loop alive. */
		ev_unref(loop);
	}
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	snprintf(r->host, sizeof(r->host), "%s", host);
	snprintf(r->port, sizeof(r->port), "%u", (unsigned)port);
	r->hints.ai_family = AF_UNSPEC;
	r->hints.ai_socktype = SOCK_STREAM;
	r->hints.ai_flags = AI_NUMERICSERV;
	r->gcb.ar_name = r->host;
	r->gcb.ar_service = r->port;
	r->gcb.ar_request = &r->hints;
	r->cb = cb;
	r->arg = arg;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD;
	sev.sigev_notify_function = notify;
	list[0] = &r->gcb;
	if (getaddrinfo_a(GAI_NOWAIT, list, 1, &sev) != 0) {
		free(r);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&pending, r, entry);
	return r;
}

void
resolve_cancel(struct resolve_req *r)
{
	if (r == NULL)
		return;
	if (gai_cancel(&r->gcb) == EAI_CANCELED) {
		/* Never started: glibc forgets it and will not notify. */
		TAILQ_REMOVE(&pending, r, entry);
		req_free(r);
		return;
	}
	r->cancelled = true;	/* freed by async_cb once it finishes */
}
