/*
 * lopair.c — connected loopback TCP pairs no other process can get into
 * (see lopair.h).
 *
 * One listener for the life of the process rather than one per pair: the
 * daemon usually closes first (it exits after QUIT), so its end lingers in
 * TIME_WAIT on the listener's one port; a listener per pair would pin a
 * fresh port for 60 s per session and run the ephemeral range dry at a
 * few hundred sessions a second.
 *
 * Attaching a filter costs about 140 us (the kernel compiles it), more
 * than the rest of a pair. So connecting sockets are bound LOPAIR_SPARE
 * at a time, ahead of need, and the filter changes once per batch, to
 * admit the spares and the pairs in flight. Between batches it still
 * admits the ports of pairs already done: each such port lets in at most
 * one connection at a time (one address and port pair to our listener),
 * which ours() turns away, and the backlog is deeper than all of them
 * together, so such leftovers can never crowd out a pair of ours.
 */
#include "lopair.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/filter.h>
#include <unistd.h>

#define LOPAIR_SPARE	8
/* The filter admits the spares and the pairs in flight of its batch:
 * at most this many ports, so connections, queued at once. */
#define ADMIT_MAX	(LOPAIR_SPARE + LOPAIR_MAX)
#define BACKLOG		(2 * ADMIT_MAX)

struct bound {
	int			fd;	/* -1: none */
	struct sockaddr_in	addr;	/* fd's own address */
};

struct lopair {
	int			lfd;
	struct sockaddr_in	laddr;
	struct bound		slot[LOPAIR_MAX];	/* in flight */
	struct bound		spare[LOPAIR_SPARE];	/* bound, admitted */
};

static struct sockaddr_in
loopback_any_port(void)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

static bool
same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
	return a->sin_port == b->sin_port &&
	    a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/*
 * admit: let in only segments from 127.0.0.1 and the port of a spare or a
 * pair in flight. The filter runs on the listener before a SYN makes a
 * request socket, so what it drops never takes a place in the queue. When
 * it runs, the packet data starts at the TCP header (source port at
 * offset 0); the IP header is reached through SKF_NET_OFF.
 */
static int
admit(struct lopair *lp)
{
	struct sock_filter prog[3 + LOPAIR_MAX + LOPAIR_SPARE + 2];
	struct sock_fprog fprog;
	uint16_t port[LOPAIR_MAX + LOPAIR_SPARE];
	uint8_t n = 0, i;

	for (i = 0; i < LOPAIR_MAX; i++)
		if (lp->slot[i].fd != -1)
			port[n++] = ntohs(lp->slot[i].addr.sin_port);
	for (i = 0; i < LOPAIR_SPARE; i++)
		if (lp->spare[i].fd != -1)
			port[n++] = ntohs(lp->spare[i].addr.sin_port);
	prog[0] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	    (uint32_t)SKF_NET_OFF + 12);
	prog[1] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
	    INADDR_LOOPBACK, 0, (uint8_t)(n + 1));
	prog[2] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0);
	/* Port i: jump over the ports after it and the drop, to accept. */
	for (i = 0; i < n; i++)
		prog[3 + i] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ |
		    BPF_K, port[i], (uint8_t)(n - i), 0);
	prog[3 + n] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
	prog[4 + n] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
	    0xffffffffU);
	fprog.len = (unsigned short)(5 + n);
	fprog.filter = prog;
	return setsockopt(lp->lfd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog,
	    sizeof(fprog));
}

/* bind_spares: fill the spares, bound on 127.0.0.1 and an ephemeral port
 * each, and admit them. Bound ahead so the filter can name them, and
 * without SO_REUSEADDR, so no one else can bind their address and port
 * while we hold it. 0 with at least one spare, or -1 with errno set and
 * none (a spare the filter does not admit would never connect). */
static int
bind_spares(struct lopair *lp)
{
	socklen_t len;
	int i, fd, saved, have = 0;

	for (i = 0; i < LOPAIR_SPARE; i++) {
		if (lp->spare[i].fd != -1) {
			have++;
			continue;
		}
		lp->spare[i].addr = loopback_any_port();
		len = sizeof(lp->spare[i].addr);
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0)) == -1)
			break;
		if (bind(fd, (struct sockaddr *)&lp->spare[i].addr,
		    sizeof(lp->spare[i].addr)) == -1 || getsockname(fd,
		    (struct sockaddr *)&lp->spare[i].addr, &len) == -1) {
			saved = errno;
			close(fd);
			errno = saved;
			break;
		}
		lp->spare[i].fd = fd;
		have++;
	}
	if (have > 0 && admit(lp) == 0)
		return 0;
	saved = errno;
	for (i = 0; i < LOPAIR_SPARE; i++)
		if (lp->spare[i].fd != -1) {
			close(lp->spare[i].fd);
			lp->spare[i].fd = -1;
		}
	errno = saved;
	return -1;
}

/* take_spare: a bound, admitted socket, or -1 (none left). */
static int
take_spare(struct lopair *lp, struct sockaddr_in *addr)
{
	int i, fd;

	for (i = 0; i < LOPAIR_SPARE; i++)
		if ((fd = lp->spare[i].fd) != -1) {
			*addr = lp->spare[i].addr;
			lp->spare[i].fd = -1;
			return fd;
		}
	return -1;
}

struct lopair *
lopair_new(void)
{
	struct lopair *lp;
	socklen_t len = sizeof(lp->laddr);
	int i, saved;

	if ((lp = calloc(1, sizeof(*lp))) == NULL)
		return NULL;
	for (i = 0; i < LOPAIR_MAX; i++)
		lp->slot[i].fd = -1;
	for (i = 0; i < LOPAIR_SPARE; i++)
		lp->spare[i].fd = -1;
	lp->laddr = loopback_any_port();
	/* The filter goes on before listen(): nothing gets in unfiltered. */
	if ((lp->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1 ||
	    bind(lp->lfd, (struct sockaddr *)&lp->laddr, sizeof(lp->laddr)) ==
	    -1 || bind_spares(lp) == -1 || listen(lp->lfd, BACKLOG) == -1 ||
	    getsockname(lp->lfd, (struct sockaddr *)&lp->laddr, &len) == -1) {
		saved = errno;
		lopair_free(lp);
		errno = saved;
		return NULL;
	}
	return lp;
}

void
lopair_free(struct lopair *lp)
{
	int i;

	if (lp == NULL)
		return;
	for (i = 0; i < LOPAIR_MAX; i++)
		if (lp->slot[i].fd != -1)
			close(lp->slot[i].fd);
	for (i = 0; i < LOPAIR_SPARE; i++)
		if (lp->spare[i].fd != -1)
			close(lp->spare[i].fd);
	if (lp->lfd != -1)
		close(lp->lfd);
	free(lp);
}

int
lopair_fd(const struct lopair *lp)
{
	return lp->lfd;
}

int
lopair_connect(struct lopair *lp)
{
	int i, fd, one = 1, saved;

	for (i = 0; i < LOPAIR_MAX && lp->slot[i].fd != -1; i++)
		;
	if (i == LOPAIR_MAX) {
		errno = EAGAIN;
		return -1;
	}
	if ((fd = take_spare(lp, &lp->slot[i].addr)) == -1 &&
	    (bind_spares(lp) == -1 ||
	    (fd = take_spare(lp, &lp->slot[i].addr)) == -1))
		return -1;
	lp->slot[i].fd = fd;
	/* Lock-step POP3 both ways: no Nagle delay on either end. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&lp->laddr, sizeof(lp->laddr)) ==
	    -1 && errno != EINPROGRESS) {
		saved = errno;
		lopair_cancel(lp, i);
		errno = saved;
		return -1;
	}
	return i;
}

/* ours: the slot whose connecting socket is peer and is connected to our
 * listener, or -1. */
static int
ours(const struct lopair *lp, const struct sockaddr_in *peer)
{
	struct sockaddr_in to;
	socklen_t len = sizeof(to);
	int i;

	for (i = 0; i < LOPAIR_MAX; i++)
		if (lp->slot[i].fd != -1 && same_addr(&lp->slot[i].addr, peer))
			break;
	if (i == LOPAIR_MAX ||
	    getpeername(lp->slot[i].fd, (struct sockaddr *)&to, &len) == -1 ||
	    !same_addr(&to, &lp->laddr))
		return -1;
	return i;
}

int
lopair_accept(struct lopair *lp, int *slot, int *mine, int *theirs)
{
	struct sockaddr_in peer;
	socklen_t len;
	int a, i, tries, one = 1;

	/* Bounded: poll says again if more are queued. */
	for (tries = 0; tries < 2 * LOPAIR_MAX; tries++) {
		len = sizeof(peer);
		a = accept4(lp->lfd, (struct sockaddr *)&peer, &len,
		    SOCK_CLOEXEC);
		if (a == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return -1;
		}
		if (len != sizeof(peer) || peer.sin_family != AF_INET ||
		    (i = ours(lp, &peer)) == -1) {
			close(a);	/* not ours: a leftover of a cancel */
			continue;
		}
		/* The accepted socket inherited the listener's filter: the
		 * daemon gets a plain socket. */
		(void)setsockopt(a, SOL_SOCKET, SO_DETACH_FILTER, NULL, 0);
		(void)setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		*slot = i;
		*mine = lp->slot[i].fd;
		*theirs = a;
		lp->slot[i].fd = -1;	/* still admitted: see the top */
		return 1;
	}
	return 0;
}

void
lopair_cancel(struct lopair *lp, int slot)
{
	if (slot < 0 || slot >= LOPAIR_MAX || lp->slot[slot].fd == -1)
		return;
	close(lp->slot[slot].fd);
	lp->slot[slot].fd = -1;	/* still admitted: see the top */
}
