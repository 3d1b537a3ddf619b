/* ledger.c — live session counts shared by the workers (see ledger.h). */
#include "ledger.h"

#include <sys/mman.h>
#include <sys/random.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <sched.h>
#include <stdio.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Other processes read and write these counts through a shared mapping:
 * that is only sound for atomics that are lock-free (hence address-free,
 * C11 7.17.5). 32-bit ones are, on every port Debian builds. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
    "the ledger needs lock-free 32-bit atomics");

#define MIN_SLOTS	64
#define MAX_SLOTS	(1u << 22)	/* beyond max-sessions' bound */
#define MAX_PARTS	64
#define SPIN_YIELD	64		/* reads retried before yielding */
#define SPIN_GIVE_UP	(1u << 16)	/* a writer that died mid-change */

/* One slot of an address table. A slot once given a key keeps it until
 * the table is compacted; its count may drop to 0 meanwhile. Every field
 * is atomic because other workers read it while its owner writes. */
struct slot {
	_Atomic uint32_t	key[4];
	_Atomic uint32_t	count;
	_Atomic uint32_t	used;
};

/* One worker's part of the mapping: this header on a page of its own,
 * then nslots slots from the next page on (slots_of). */
struct part {
	_Atomic uint32_t	seq;		/* odd while the table changes */
	_Atomic uint32_t	sessions;
	uint32_t		claimed;	/* slots with a key: owner only */
	uint32_t		live;		/* keys with a count: owner only */
};

struct ledger {
	unsigned char	*map;
	size_t		 maplen;
	size_t		 stride;	/* bytes from one part to the next */
	size_t		 page;
	size_t		 head;		/* bytes from a part to its slots */
	unsigned	 nslots;	/* a power of two */
	int		 nparts;
	int		 me;		/* the part this process writes */
	uint64_t	 k0, k1;	/* SipHash key, the same in every worker */
};

/* --- SipHash-2-4 of a 16-byte message (Aumasson & Bernstein, 2012) ------ */

#define ROTL(x, b)	(uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do {							\
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);	\
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;				\
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;				\
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);	\
} while (0)

static uint64_t
le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t
siphash16(uint64_t k0, uint64_t k1, const uint64_t w01[2])
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	uint64_t w[3] = { w01[0], w01[1], (uint64_t)16 << 56 };
	int i;

	for (i = 0; i < 3; i++) {	/* 16 bytes: no tail bytes */
		v3 ^= w[i];
		SIPROUND;
		SIPROUND;
		v0 ^= w[i];
	}
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* --- keys ---------------------------------------------------------------- */

static void
key_v4(uint8_t key[LEDGER_KEY_SIZE], const void *in4)
{
	memset(key, 0, 10);
	key[10] = key[11] = 0xff;
	memcpy(key + 12, in4, 4);
}

bool
ledger_key_sockaddr(const struct sockaddr *sa, uint8_t key[LEDGER_KEY_SIZE])
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	if (sa == NULL)
		return false;
	/* Copied out: sa need not be aligned for the specific type. */
	if (sa->sa_family == AF_INET) {
		memcpy(&sin, sa, sizeof(sin));
		key_v4(key, &sin.sin_addr);
		return true;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	memcpy(&sin6, sa, sizeof(sin6));
	/* IPv4-mapped addresses are already in the IPv4 key form. */
	memcpy(key, sin6.sin6_addr.s6_addr, LEDGER_KEY_SIZE);
	return true;
}

static bool
key_is_v4(const uint8_t key[LEDGER_KEY_SIZE])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };

	return memcmp(key, mapped, sizeof(mapped)) == 0;
}

void
ledger_key_mask(uint8_t key[LEDGER_KEY_SIZE], int prefix)
{
	int i;

	if (key_is_v4(key) || prefix >= 128)
		return;
	if (prefix < 0)
		prefix = 0;
	for (i = prefix / 8; i < LEDGER_KEY_SIZE; i++)
		key[i] &= i == prefix / 8 ?
		    (uint8_t)(0xff00u >> (prefix % 8)) : 0;
}

const char *
ledger_key_format(const uint8_t key[LEDGER_KEY_SIZE], int prefix, char *buf,
    size_t bufsz)
{
	char a[INET6_ADDRSTRLEN];

	if (key_is_v4(key)) {
		if (inet_ntop(AF_INET, key + 12, a, sizeof(a)) == NULL)
			snprintf(a, sizeof(a), "?");
		snprintf(buf, bufsz, "%s", a);
		return buf;
	}
	if (inet_ntop(AF_INET6, key, a, sizeof(a)) == NULL)
		snprintf(a, sizeof(a), "?");
	if (prefix < 128)
		snprintf(buf, bufsz, "%s/%d", a, prefix < 0 ? 0 : prefix);
	else
		snprintf(buf, bufsz, "%s", a);
	return buf;
}

bool
ledger_key_text(const char *s, uint8_t key[LEDGER_KEY_SIZE])
{
	char buf[INET6_ADDRSTRLEN];
	struct in_addr in4;
	size_t n;

	if (s == NULL)
		return false;
	n = strcspn(s, "%");		/* drop an IPv6 scope ("%eth0") */
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, &in4) == 1) {
		key_v4(key, &in4);
		return true;
	}
	return inet_pton(AF_INET6, buf, key) == 1;
}

/* --- the mapping ----------------------------------------------------------- */

struct ledger *
ledger_new(int nworkers, unsigned max_addresses)
{
	struct ledger *l;
	uint64_t k[2];

	if (nworkers < 1 || nworkers > MAX_PARTS ||
	    getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k) ||
	    (l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	/* Twice the addresses, so that probes stay short; compaction keeps
	 * at most three quarters of the slots claimed. */
	l->nslots = MIN_SLOTS;
	while (l->nslots < MAX_SLOTS && l->nslots / 2 < max_addresses)
		l->nslots *= 2;
	/* Each part, and the slots in it, start on their own page: a part is
	 * written by one process and read by the others, and clearing its
	 * slots hands their pages back (clear_slots). */
	l->page = (size_t)sysconf(_SC_PAGESIZE);
	l->head = (sizeof(struct part) + l->page - 1) & ~(l->page - 1);
	l->stride = (l->head + (size_t)l->nslots * sizeof(struct slot) +
	    l->page - 1) & ~(l->page - 1);
	l->nparts = nworkers;
	l->maplen = l->stride * (size_t)nworkers;
	l->k0 = k[0];
	l->k1 = k[1];
	/* Shared so that the workers forked later see one another's counts;
	 * zero-filled, and pages are only backed once touched. */
	l->map = mmap(NULL, l->maplen, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (l->map == MAP_FAILED) {
		free(l);
		return NULL;
	}
	return l;
}

void
ledger_free(struct ledger *l)
{
	if (l == NULL)
		return;
	(void)munmap(l->map, l->maplen);
	free(l);
}

static struct part *
part_of(const struct ledger *l, int i)
{
	return (struct part *)(void *)(l->map + l->stride * (size_t)i);
}

void
ledger_bind(struct ledger *l, int worker)
{
	if (worker >= 0 && worker < l->nparts)
		l->me = worker;
}

unsigned
ledger_capacity(const struct ledger *l)
{
	return l->nslots / 4 * 3;
}

/* --- one part's sequence lock ---------------------------------------------- */

/*
 * The owner makes seq odd, changes the table, makes it even again; a
 * reader takes a count only if seq was even and the same before and
 * after it looked (a seqlock, in the form H.-J. Boehm gives for C11:
 * "Can seqlocks get along with programming language memory models?").
 */
static void
write_begin(struct part *p)
{
	uint32_t s = atomic_load_explicit(&p->seq, memory_order_relaxed);

	atomic_store_explicit(&p->seq, s | 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void
write_end(struct part *p)
{
	uint32_t s = atomic_load_explicit(&p->seq, memory_order_relaxed);

	atomic_store_explicit(&p->seq, (s | 1) + 1, memory_order_release);
}

static uint32_t
load32(_Atomic uint32_t *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

static void
store32(_Atomic uint32_t *a, uint32_t v)
{
	atomic_store_explicit(a, v, memory_order_relaxed);
}

/* A key is kept as four 32-bit words (64-bit atomics are not lock-free
 * everywhere); w is its two 64-bit halves, as hashed. */
static bool
key_is(struct slot *s, const uint64_t w[2])
{
	return load32(&s->key[0]) == (uint32_t)w[0] &&
	    load32(&s->key[1]) == (uint32_t)(w[0] >> 32) &&
	    load32(&s->key[2]) == (uint32_t)w[1] &&
	    load32(&s->key[3]) == (uint32_t)(w[1] >> 32);
}

static void
key_load(struct slot *s, uint64_t w[2])
{
	w[0] = (uint64_t)load32(&s->key[1]) << 32 | load32(&s->key[0]);
	w[1] = (uint64_t)load32(&s->key[3]) << 32 | load32(&s->key[2]);
}

static void
key_store(struct slot *s, const uint64_t w[2])
{
	store32(&s->key[0], (uint32_t)w[0]);
	store32(&s->key[1], (uint32_t)(w[0] >> 32));
	store32(&s->key[2], (uint32_t)w[1]);
	store32(&s->key[3], (uint32_t)(w[1] >> 32));
}

static struct slot *
slots_of(const struct ledger *l, struct part *p)
{
	return (struct slot *)(void *)((unsigned char *)p + l->head);
}

/* clear_slots: every slot of p empty. The pages go back to the kernel
 * (a shared anonymous mapping reads as zeros afterwards), so a part that
 * once held many addresses does not stay resident; stores if that fails.
 * The caller holds p's write side. */
static void
clear_slots(const struct ledger *l, struct part *p)
{
	struct slot *s = slots_of(l, p);
	uint32_t i;

	if (madvise(s, l->stride - l->head, MADV_REMOVE) == 0)
		return;
	for (i = 0; i < l->nslots; i++) {
		store32(&s[i].used, 0);
		store32(&s[i].count, 0);
	}
}

/* probe: the slot holding w, or the free slot where it would go, or NULL
 * when every slot is taken by other keys. Bounded, so a reader racing a
 * change reads garbage at worst, never forever. */
static struct slot *
probe(const struct ledger *l, struct part *p, const uint64_t w[2])
{
	uint32_t mask = l->nslots - 1, i, n;
	struct slot *s;

	i = (uint32_t)siphash16(l->k0, l->k1, w) & mask;
	for (n = 0; n < l->nslots; n++, i = (i + 1) & mask) {
		s = &slots_of(l, p)[i];
		if (!load32(&s->used) || key_is(s, w))
			return s;
	}
	return NULL;
}

static unsigned
count_in(const struct ledger *l, struct part *p, const uint64_t w[2])
{
	struct slot *s = probe(l, p, w);

	return s != NULL && load32(&s->used) ? load32(&s->count) : 0;
}

/* read_count: sessions from w in part p, read consistently while its
 * owner may be changing it. */
static unsigned
read_count(const struct ledger *l, struct part *p, const uint64_t w[2])
{
	uint32_t s1, tries;
	unsigned n;

	for (tries = 0; tries < SPIN_GIVE_UP; tries++) {
		s1 = atomic_load_explicit(&p->seq, memory_order_acquire);
		if ((s1 & 1) == 0) {
			n = count_in(l, p, w);
			atomic_thread_fence(memory_order_acquire);
			if (atomic_load_explicit(&p->seq,
			    memory_order_relaxed) == s1)
				return n;
		}
		if (tries >= SPIN_YIELD)
			(void)sched_yield();
	}
	/* The owner died inside a change and the master has not cleared
	 * its part yet: its sessions are gone with it. */
	return 0;
}

static void
words(const uint8_t key[LEDGER_KEY_SIZE], uint64_t w[2])
{
	w[0] = le64(key);
	w[1] = le64(key + 8);
}

/* --- sessions ---------------------------------------------------------------- */

static unsigned
sum_sessions(const struct ledger *l)
{
	unsigned total = 0;
	int i;

	for (i = 0; i < l->nparts; i++)
		total += atomic_load(&part_of(l, i)->sessions);
	return total;
}

int
ledger_session_take(struct ledger *l, unsigned limit, unsigned *total)
{
	struct part *me = part_of(l, l->me);
	unsigned n;

	/* Counted first, then summed (both sequentially consistent): of
	 * two workers taking the last place at once, at least one sees the
	 * other's session. */
	atomic_fetch_add(&me->sessions, 1);
	n = sum_sessions(l);
	if (limit > 0 && n > limit) {
		atomic_fetch_sub(&me->sessions, 1);
		*total = n - 1;
		return -1;
	}
	return 0;
}

void
ledger_session_release(struct ledger *l)
{
	struct part *me = part_of(l, l->me);

	if (atomic_load(&me->sessions) > 0)
		atomic_fetch_sub(&me->sessions, 1);
}

unsigned
ledger_sessions(const struct ledger *l)
{
	return sum_sessions(l);
}

/* --- per address ------------------------------------------------------------- */

/* compact: drop the keys whose count is 0, so that the claimed slots are
 * the live ones again. false if out of memory (the table is unchanged). */
static bool
compact(struct ledger *l, struct part *p)
{
	struct { uint64_t w[2]; uint32_t count; } *keep;
	uint32_t i, n = 0;
	struct slot *s;

	if ((keep = calloc(p->live + 1, sizeof(*keep))) == NULL)
		return false;
	for (i = 0; i < l->nslots; i++) {
		s = &slots_of(l, p)[i];
		if (load32(&s->used) && load32(&s->count) > 0 && n < p->live) {
			key_load(s, keep[n].w);
			keep[n++].count = load32(&s->count);
		}
	}
	write_begin(p);
	clear_slots(l, p);
	for (i = 0; i < n; i++) {
		s = probe(l, p, keep[i].w);	/* never NULL: n < nslots */
		key_store(s, keep[i].w);
		store32(&s->count, keep[i].count);
		store32(&s->used, 1);
	}
	p->claimed = p->live = n;
	write_end(p);
	free(keep);
	return true;
}

/* own_add: one more from w in this process's part; -1 if no room. */
static int
own_add(struct ledger *l, const uint64_t w[2])
{
	struct part *p = part_of(l, l->me);
	struct slot *s = probe(l, p, w);
	uint32_t c;

	if (s == NULL || !load32(&s->used)) {
		/* A new key: room for it, compacting first if dead keys
		 * fill the table. */
		if (p->claimed + 1 > ledger_capacity(l) &&
		    (p->live + 1 > ledger_capacity(l) || !compact(l, p)))
			return -1;
		if ((s = probe(l, p, w)) == NULL)
			return -1;	/* not reached: claimed < nslots */
	}
	write_begin(p);
	if (!load32(&s->used)) {
		key_store(s, w);
		store32(&s->used, 1);
		p->claimed++;
	}
	c = load32(&s->count);
	store32(&s->count, c + 1);
	if (c == 0)
		p->live++;
	write_end(p);
	return 0;
}

static void
own_remove(struct ledger *l, const uint64_t w[2])
{
	struct part *p = part_of(l, l->me);
	struct slot *s = probe(l, p, w);
	uint32_t c;

	if (s == NULL || !load32(&s->used) || (c = load32(&s->count)) == 0)
		return;
	write_begin(p);
	store32(&s->count, c - 1);
	if (c == 1)
		p->live--;
	write_end(p);
}

int
ledger_peer_take(struct ledger *l, const uint8_t key[LEDGER_KEY_SIZE],
    unsigned limit, unsigned *count)
{
	uint64_t w[2];
	unsigned n;

	words(key, w);
	if (own_add(l, w) == -1)
		return -2;
	/* Counted first, then summed, as for sessions. */
	atomic_thread_fence(memory_order_seq_cst);
	if (limit == 0)
		return 0;
	n = ledger_peer_count(l, key);
	if (n > limit) {
		own_remove(l, w);
		*count = n - 1;
		return -1;
	}
	return 0;
}

void
ledger_peer_release(struct ledger *l, const uint8_t key[LEDGER_KEY_SIZE])
{
	uint64_t w[2];

	words(key, w);
	own_remove(l, w);
}

unsigned
ledger_peer_count(const struct ledger *l, const uint8_t key[LEDGER_KEY_SIZE])
{
	uint64_t w[2];
	unsigned n = 0;
	int i;

	words(key, w);
	for (i = 0; i < l->nparts; i++)
		n += read_count(l, part_of(l, i), w);
	return n;
}

unsigned
ledger_peers(const struct ledger *l)
{
	return part_of(l, l->me)->live;
}

void
ledger_forget(struct ledger *l, int worker)
{
	struct part *p;

	if (worker < 0 || worker >= l->nparts)
		return;
	p = part_of(l, worker);
	/* The worker is gone, but may have died inside a change (seq odd):
	 * write_begin keeps it odd, write_end makes it even for readers. */
	write_begin(p);
	clear_slots(l, p);
	p->claimed = p->live = 0;
	atomic_store(&p->sessions, 0);
	write_end(p);
}
