/* buf.c — bounded buffers backed by a small free-list pool. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Freed chunks are kept for reuse: a bulk transfer empties and refills its
 * buffers thousands of times a second, and idle sessions must not pin
 * memory, so a chunk goes back here as soon as a buffer drains. Chunks of
 * any capacity are kept, up to BUF_POOL_BYTES in all (and POOL_MAX
 * chunks): bigger bulk buffers must not make the pool itself grow with the
 * number of sessions that once moved data.
 */
#define POOL_MAX 64

static struct {
	void	*mem;
	size_t	 cap;
} pool[POOL_MAX];
static size_t	 pool_n;
static size_t	 pool_bytes;

static uint8_t *
chunk_get(size_t cap)
{
	size_t i;
	void *mem;

	for (i = pool_n; i-- > 0; ) {
		if (pool[i].cap != cap)
			continue;
		mem = pool[i].mem;
		pool_bytes -= cap;
		pool[i] = pool[--pool_n];
		return mem;
	}
	return malloc(cap);
}

static void
chunk_put(uint8_t *mem, size_t cap)
{
	if (pool_n < POOL_MAX && pool_bytes + cap <= BUF_POOL_BYTES) {
		pool[pool_n].mem = mem;
		pool[pool_n++].cap = cap;
		pool_bytes += cap;
	} else
		free(mem);
}

void
buf_pool_trim(void)
{
	while (pool_n > 0)
		free(pool[--pool_n].mem);
	pool_bytes = 0;
}

size_t
buf_pool_bytes(void)
{
	return pool_bytes;
}

void
buf_init(struct buf *b, size_t cap)
{
	b->mem = NULL;
	b->cap = cap;
	b->max = cap;
	b->off = 0;
	b->len = 0;
	b->secret = false;
}

void
buf_set_max(struct buf *b, size_t max)
{
	if (max > b->max)
		b->max = max;
}

int
buf_grow(struct buf *b)
{
	uint8_t *mem;

	if (b->max <= b->cap)
		return 0;
	if (b->mem == NULL) {
		b->cap = b->max;
		return 0;
	}
	if ((mem = chunk_get(b->max)) == NULL)
		return -1;
	memcpy(mem, b->mem + b->off, b->len);
	if (b->secret)
		explicit_bzero(b->mem, b->cap);
	chunk_put(b->mem, b->cap);
	b->mem = mem;
	b->off = 0;
	b->cap = b->max;
	return 0;
}

void
buf_free(struct buf *b)
{
	if (b->mem != NULL) {
		if (b->secret)
			explicit_bzero(b->mem, b->cap);
		chunk_put(b->mem, b->cap);
	}
	b->mem = NULL;
	b->off = 0;
	b->len = 0;
}

uint8_t *
buf_wptr(struct buf *b, size_t *avail)
{
	*avail = 0;
	if (b->len == b->cap && (b->max == b->cap || buf_grow(b) == -1))
		return NULL;
	if (b->mem == NULL) {
		if ((b->mem = chunk_get(b->cap)) == NULL)
			return NULL;
		b->off = 0;
	}
	/* Compact when most of the free room lies before the data: one
	 * memmove of the (usually small) remainder beats many short reads. */
	if (b->off > 0 && b->cap - b->off - b->len < (b->cap - b->len) / 2) {
		memmove(b->mem, b->mem + b->off, b->len);
		b->off = 0;
	}
	*avail = b->cap - b->off - b->len;
	return b->mem + b->off + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
	b->len += n;
}

const uint8_t *
buf_rptr(const struct buf *b, size_t *len)
{
	*len = b->len;
	return b->len ? b->mem + b->off : NULL;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_free(b);
		return;
	}
	b->off += n;
	b->len -= n;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	uint8_t *w;
	size_t avail;

	if (n == 0)
		return 0;
	if (n > buf_space(b))
		return -1;
	if (n > b->cap - b->len && buf_grow(b) == -1)
		return -1;
	if ((w = buf_wptr(b, &avail)) == NULL)
		return -1;
	if (avail < n) {
		/* Room exists but is split: compact so it is contiguous. */
		memmove(b->mem, b->mem + b->off, b->len);
		b->off = 0;
		w = b->mem + b->len;
	}
	memcpy(w, p, n);
	b->len += n;
	return 0;
}

int
buf_appendf(struct buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	return buf_append(b, tmp, (size_t)n);
}

long
buf_find_lf(const struct buf *b)
{
	const uint8_t *p;

	if (b->len == 0)
		return -1;
	p = memchr(b->mem + b->off, '\n', b->len);
	return p ? (long)(p - (b->mem + b->off)) : -1;
}
