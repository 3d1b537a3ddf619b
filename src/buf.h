/*
 * buf.h — bounded byte buffers with lazily held memory.
 *
 * A buffer never grows past the capacity fixed by buf_init(), or the larger
 * bound a later buf_set_max() allows (then only once it fills: bulk data is
 * flowing); a full buffer is the signal for its producer to stop reading
 * (backpressure). Memory is taken from a small pool, capped in bytes, on
 * first write and given back as soon as the buffer drains, so an idle
 * session holds no buffer memory at all.
 * Pure: no I/O, usable from the protocol modules and their tests.
 */
#ifndef POPSD_BUF_H
#define POPSD_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 32-bit sizes (buffers are KiBs): every session holds six of these. */
struct buf {
	uint8_t	*mem;		/* NULL while empty */
	uint32_t cap;		/* capacity now */
	uint32_t max;		/* what cap may grow to once the buffer fills */
	uint32_t off;		/* start of unread data in mem */
	uint32_t len;		/* unread bytes */
	bool	 secret;	/* wipe memory before reuse (may hold passwords) */
};

/* buf_init: set up an empty buffer of capacity cap; allocates nothing.
 * Set b->secret afterwards for buffers that carry credentials: their memory
 * is then wiped whenever it goes back to the pool. */
void	buf_init(struct buf *b, size_t cap);
/* buf_set_max: let b grow up to max (>= its capacity) the next time it is
 * full. Growth is for spliced bulk data only: protocol limits must not
 * depend on it (pop3.c reads cap while it mediates, before any growth). */
void	buf_set_max(struct buf *b, size_t max);
/* buf_grow: grow b to its max now (keeping its data); 0, or -1 when
 * memory is short (b unchanged). Nothing to do is 0. */
int	buf_grow(struct buf *b);
/* buf_free: release the memory (if any); the buffer is empty afterwards. */
void	buf_free(struct buf *b);

static inline size_t buf_len(const struct buf *b) { return b->len; }
/* buf_space: how much more b can take, growth allowed by buf_set_max
 * included. */
static inline size_t buf_space(const struct buf *b) { return b->max - b->len; }
static inline bool buf_empty(const struct buf *b) { return b->len == 0; }
static inline bool buf_full(const struct buf *b) { return b->len == b->max; }

/* buf_wptr: the largest contiguous writable region (compacting if that
 * makes room, growing a full buffer up to its max); *avail gets its size
 * (0 when full). Returns NULL when full
 * or when memory cannot be had. Follow with buf_commit(). */
uint8_t	*buf_wptr(struct buf *b, size_t *avail);
/* buf_commit: n bytes written at buf_wptr() become data (n <= *avail). */
void	 buf_commit(struct buf *b, size_t n);

/* buf_rptr: the unread data, *len bytes (NULL and 0 when empty). */
const uint8_t *buf_rptr(const struct buf *b, size_t *len);
/* buf_consume: drop n (<= buf_len) bytes from the front; memory goes back
 * to the pool when the buffer becomes empty. */
void	 buf_consume(struct buf *b, size_t n);

/* buf_append: append all n bytes or nothing; returns 0, or -1 when they
 * do not fit (or memory is short). */
int	 buf_append(struct buf *b, const void *p, size_t n);
/* buf_appendf: printf into the buffer, all or nothing; 0 or -1. */
int	 buf_appendf(struct buf *b, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* buf_find_lf: offset of the first '\n' in the unread data, or -1. */
long	 buf_find_lf(const struct buf *b);

/* buf_pool_trim: give pooled memory back to the allocator (for tests and
 * after load peaks). */
void	 buf_pool_trim(void);
/* buf_pool_bytes: memory the pool holds now (never above BUF_POOL_BYTES). */
size_t	 buf_pool_bytes(void);

#define BUF_POOL_BYTES	(1024 * 1024)

#endif
