/* peers.c — per-address session counts (see peers.h). */
#include "peers.h"

#include <sys/random.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS	256		/* a power of two */
#define MAX_BUCKETS	(1u << 22)	/* beyond max-sessions' bound */

struct peer {
	struct peer	*next;
	uint8_t		 key[PEER_KEY_SIZE];
	unsigned	 count;
};

struct peers {
	struct peer	**bucket;
	unsigned	 nbuckets;	/* a power of two */
	unsigned	 nentries;
	uint64_t	 k0, k1;	/* SipHash key */
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
siphash16(uint64_t k0, uint64_t k1, const uint8_t m[16])
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	uint64_t w[3];
	int i;

	w[0] = le64(m);
	w[1] = le64(m + 8);
	w[2] = (uint64_t)16 << 56;	/* length byte, no tail bytes */
	for (i = 0; i < 3; i++) {
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
key_v4(uint8_t key[PEER_KEY_SIZE], const void *in4)
{
	memset(key, 0, 10);
	key[10] = key[11] = 0xff;
	memcpy(key + 12, in4, 4);
}

bool
peers_key_sockaddr(const struct sockaddr *sa, uint8_t key[PEER_KEY_SIZE])
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
	memcpy(key, sin6.sin6_addr.s6_addr, PEER_KEY_SIZE);
	return true;
}

bool
peers_key_text(const char *s, uint8_t key[PEER_KEY_SIZE])
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

/* --- table --------------------------------------------------------------- */

struct peers *
peers_new(void)
{
	struct peers *t;
	uint64_t k[2];

	if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k))
		return NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if ((t->bucket = calloc(INITIAL_BUCKETS, sizeof(*t->bucket))) == NULL) {
		free(t);
		return NULL;
	}
	t->nbuckets = INITIAL_BUCKETS;
	t->k0 = k[0];
	t->k1 = k[1];
	return t;
}

void
peers_free(struct peers *t)
{
	struct peer *e, *next;
	unsigned i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nbuckets; i++)
		for (e = t->bucket[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free(t->bucket);
	free(t);
}

static struct peer **
slot(const struct peers *t, const uint8_t key[PEER_KEY_SIZE])
{
	return &t->bucket[siphash16(t->k0, t->k1, key) & (t->nbuckets - 1)];
}

/* find: the link that points at key's entry (or at NULL: absent). */
static struct peer **
find(const struct peers *t, const uint8_t key[PEER_KEY_SIZE])
{
	struct peer **pp;

	for (pp = slot(t, key); *pp != NULL; pp = &(*pp)->next)
		if (memcmp((*pp)->key, key, PEER_KEY_SIZE) == 0)
			break;
	return pp;
}

/* grow: double the buckets; on failure keep the longer chains. */
static void
grow(struct peers *t)
{
	struct peer **old = t->bucket, *e, *next;
	unsigned i, n = t->nbuckets;

	if (n >= MAX_BUCKETS ||
	    (t->bucket = calloc((size_t)n * 2, sizeof(*t->bucket))) == NULL) {
		t->bucket = old;
		return;
	}
	t->nbuckets = n * 2;
	for (i = 0; i < n; i++)
		for (e = old[i]; e != NULL; e = next) {
			struct peer **pp = slot(t, e->key);

			next = e->next;
			e->next = *pp;
			*pp = e;
		}
	free(old);
}

unsigned
peers_count(const struct peers *t, const uint8_t key[PEER_KEY_SIZE])
{
	struct peer *e = *find(t, key);

	return e != NULL ? e->count : 0;
}

int
peers_add(struct peers *t, const uint8_t key[PEER_KEY_SIZE])
{
	struct peer **pp = find(t, key), *e;

	if (*pp != NULL) {
		(*pp)->count++;
		return 0;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return -1;
	memcpy(e->key, key, PEER_KEY_SIZE);
	e->count = 1;
	*pp = e;
	if (++t->nentries > 2 * t->nbuckets)
		grow(t);
	return 0;
}

void
peers_remove(struct peers *t, const uint8_t key[PEER_KEY_SIZE])
{
	struct peer **pp = find(t, key), *e = *pp;

	if (e == NULL || --e->count > 0)
		return;
	*pp = e->next;
	free(e);
	t->nentries--;
}

unsigned
peers_size(const struct peers *t)
{
	return t->nentries;
}
