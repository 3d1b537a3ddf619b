/*
 * buf.h — fixed-capacity byte buffers with lazily held memory.
 *
 * A buffer never grows past the capacity fixed by buf_init(); a full buffer
 * is the signal for its producer to stop reading (backpressure). Memory is
 * taken from a small pool on first write and given back as soon as the
 * buffer drains, so an idle session holds no buffer memory at all.
 * Pure: no I/O, usable from the protocol modules and their tests.
 */
#ifndef POPSD_BUF_H
#define POPSD_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t	*mem;		/* NULL while empty */
	size_t	 cap;		/* fixed capacity */
	size_t	 off;		/* start of unread data in mem */
	size_t	 len;		/* unread bytes */
	bool	 secret;	/* wipe memory before reuse (may hold passwords) */
};

/* buf_init: set up an empty buffer of capacity cap; allocates nothing.
 * Set b->secret afterwards for buffers that carry credentials: their memory
 * is then wiped whenever it goes back to the pool. */
void	buf_init(struct buf *b, size_t cap);
/* buf_free: release the memory (if any); the buffer is empty afterwards. */
void	buf_free(struct buf *b);

static inline size_t buf_len(const struct buf *b) { return b->len; }
static inline size_t buf_space(const struct buf *b) { return b->cap - b->len; }
static inline bool buf_empty(const struct buf *b) { return b->len == 0; }
static inline bool buf_full(const struct buf *b) { return b->len == b->cap; }

/* buf_wptr: the largest contiguous writable region (compacting if that
 * makes room); *avail gets its size (0 when full). Returns NULL when full
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

#endif
