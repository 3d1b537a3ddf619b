/*
 * test_buf.c — src/buf.c: the capacity is a hard bound, appends are all
 * or nothing, wptr/commit/consume compact when the tail is used up, a
 * drained buffer holds no memory, a buffer grows past its capacity only
 * when allowed (buf_set_max) and full, and the pool is capped in bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"

static int
teardown(void **state)
{
	(void)state;
	buf_pool_trim();
	return 0;
}

/* contents: the unread bytes must be exactly s. */
static void
contents(const struct buf *b, const char *s)
{
	const uint8_t *p;
	size_t n;

	/* The invariant every operation keeps: data lies inside the memory. */
	assert_true(b->off + b->len <= b->cap);
	p = buf_rptr(b, &n);
	assert_int_equal(n, strlen(s));
	assert_int_equal(buf_len(b), strlen(s));
	if (n > 0)
		assert_memory_equal(p, s, n);
	else
		assert_null(p);
}

static void
test_init_empty(void **state)
{
	struct buf b;
	size_t n = 99;

	(void)state;
	buf_init(&b, 16);
	assert_null(b.mem);
	assert_true(buf_empty(&b));
	assert_false(buf_full(&b));
	assert_int_equal(buf_space(&b), 16);
	assert_null(buf_rptr(&b, &n));
	assert_int_equal(n, 0);
	assert_int_equal(buf_find_lf(&b), -1);
	/* Nothing to append allocates nothing. */
	assert_int_equal(buf_append(&b, "", 0), 0);
	assert_null(b.mem);
	buf_free(&b);
	assert_null(b.mem);
}

static void
test_capacity_bound(void **state)
{
	struct buf b;
	size_t avail;

	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_append(&b, "12345678", 8), 0);
	assert_true(buf_full(&b));
	assert_int_equal(buf_space(&b), 0);
	assert_int_equal(buf_append(&b, "9", 1), -1);
	assert_null(buf_wptr(&b, &avail));
	assert_int_equal(avail, 0);
	contents(&b, "12345678");
	buf_free(&b);
	assert_null(b.mem);
	assert_true(buf_empty(&b));

	/* More than the capacity at once is refused outright. */
	assert_int_equal(buf_append(&b, "123456789", 9), -1);
	assert_true(buf_empty(&b));
}

static void
test_all_or_nothing(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "abcdef", 6), 0);
	/* 5 does not fit in 4: nothing of it lands. */
	assert_int_equal(buf_append(&b, "ghijk", 5), -1);
	contents(&b, "abcdef");
	assert_int_equal(buf_append(&b, "ghij", 4), 0);
	contents(&b, "abcdefghij");
	buf_free(&b);
}

/* Free space split between head and tail is joined by compaction. */
static void
test_append_compacts(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "0123456789", 10), 0);
	buf_consume(&b, 7);
	contents(&b, "789");
	assert_int_equal(buf_append(&b, "abcdefg", 7), 0);
	contents(&b, "789abcdefg");
	assert_true(buf_full(&b));
	assert_int_equal(b.off, 0);
	buf_free(&b);

	/* Tail not used up (2 left) but too short for 5: still fits. */
	assert_int_equal(buf_append(&b, "01234567", 8), 0);
	buf_consume(&b, 6);
	assert_int_equal(buf_append(&b, "abcde", 5), 0);
	contents(&b, "67abcde");
	buf_free(&b);
}

static void
test_wptr_commit_consume(void **state)
{
	struct buf b;
	uint8_t *w;
	size_t avail;

	(void)state;
	buf_init(&b, 8);
	w = buf_wptr(&b, &avail);
	assert_non_null(w);
	assert_non_null(b.mem);
	assert_int_equal(avail, 8);
	memcpy(w, "hello", 5);
	buf_commit(&b, 5);
	contents(&b, "hello");

	w = buf_wptr(&b, &avail);
	assert_int_equal(avail, 3);
	memcpy(w, "abc", 3);
	buf_commit(&b, 3);
	assert_true(buf_full(&b));
	assert_null(buf_wptr(&b, &avail));
	assert_int_equal(avail, 0);

	/* The tail is used up: wptr must compact to offer the head. */
	buf_consume(&b, 6);
	contents(&b, "bc");
	w = buf_wptr(&b, &avail);
	assert_non_null(w);
	assert_int_equal(avail, 6);
	assert_ptr_equal(w, b.mem + 2);
	contents(&b, "bc");
	memcpy(w, "defghi", 6);
	buf_commit(&b, 6);
	contents(&b, "bcdefghi");

	/* A partial write commits only what was written. */
	buf_consume(&b, 8);
	w = buf_wptr(&b, &avail);
	assert_int_equal(avail, 8);
	memcpy(w, "xy", 2);
	buf_commit(&b, 2);
	contents(&b, "xy");
	buf_free(&b);
}

static void
test_drained_releases_memory(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 32);
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_non_null(b.mem);
	buf_consume(&b, 1);
	assert_non_null(b.mem);
	buf_consume(&b, 2);
	assert_null(b.mem);
	assert_true(buf_empty(&b));
	assert_int_equal(b.off, 0);

	/* Refilling works, from offset 0, after memory was given back. */
	assert_int_equal(buf_append(&b, "de", 2), 0);
	contents(&b, "de");
	assert_int_equal(b.off, 0);
	buf_consume(&b, 2);
	assert_null(b.mem);

	/* A second capacity behaves the same. */
	buf_init(&b, 7);
	assert_int_equal(buf_append(&b, "1234567", 7), 0);
	buf_consume(&b, 7);
	assert_null(b.mem);
}

static void
test_grow_only_when_allowed_and_full(void **state)
{
	struct buf b;
	uint8_t *w;
	size_t avail;

	(void)state;
	buf_init(&b, 8);
	/* Without buf_set_max the capacity stays a hard bound. */
	assert_int_equal(buf_append(&b, "12345678", 8), 0);
	assert_null(buf_wptr(&b, &avail));
	assert_int_equal(buf_append(&b, "9", 1), -1);
	assert_true(buf_full(&b));

	/* Allowed: a full buffer grows on the next write, keeping its data. */
	buf_set_max(&b, 32);
	assert_false(buf_full(&b));
	assert_int_equal(buf_space(&b), 24);
	assert_int_equal(b.cap, 8);
	buf_consume(&b, 2);		/* data not at offset 0 */
	assert_int_equal(b.cap, 8);	/* not full: no growth yet */
	assert_int_equal(buf_append(&b, "90", 2), 0);
	assert_int_equal(b.cap, 8);
	w = buf_wptr(&b, &avail);
	assert_non_null(w);
	assert_int_equal(b.cap, 32);
	assert_int_equal(avail, 24);
	contents(&b, "34567890");
	/* All or nothing still holds at the larger bound. */
	assert_int_equal(buf_append(&b, "abcdefghijklmnopqrstuvwxy", 25), -1);
	assert_int_equal(buf_append(&b, "abcdefghijklmnopqrstuvwx", 24), 0);
	assert_true(buf_full(&b));
	assert_null(buf_wptr(&b, &avail));
	buf_free(&b);
	assert_null(b.mem);

	/* An append that does not fit the current capacity grows it. */
	buf_init(&b, 4);
	buf_set_max(&b, 16);
	assert_int_equal(buf_append(&b, "ab", 2), 0);
	assert_int_equal(buf_append(&b, "cdefgh", 6), 0);
	assert_int_equal(b.cap, 16);
	contents(&b, "abcdefgh");
	/* A lower max never shrinks. */
	buf_set_max(&b, 2);
	assert_int_equal(b.max, 16);
	buf_free(&b);
}

static void
test_pool_capped_in_bytes(void **state)
{
	struct buf b[40];
	size_t i;

	(void)state;
	buf_pool_trim();
	assert_int_equal(buf_pool_bytes(), 0);
	/* 40 x 64 KiB drained at once: the pool keeps at most its cap. */
	for (i = 0; i < 40; i++) {
		buf_init(&b[i], 64 * 1024);
		assert_int_equal(buf_append(&b[i], "x", 1), 0);
	}
	for (i = 0; i < 40; i++)
		buf_free(&b[i]);
	assert_true(buf_pool_bytes() <= BUF_POOL_BYTES);
	assert_true(buf_pool_bytes() > 0);
	/* Small chunks still get pooled next to big ones, within the cap. */
	buf_pool_trim();
	for (i = 0; i < 40; i++) {
		buf_init(&b[i], i % 2 ? 16 : 64 * 1024);
		assert_int_equal(buf_append(&b[i], "y", 1), 0);
	}
	for (i = 0; i < 40; i++)
		buf_free(&b[i]);
	assert_true(buf_pool_bytes() <= BUF_POOL_BYTES);
	/* Reuse takes a chunk of the right size. */
	buf_init(&b[0], 16);
	assert_int_equal(buf_append(&b[0], "z", 1), 0);
	assert_int_equal(b[0].cap, 16);
	buf_free(&b[0]);
	buf_pool_trim();
	assert_int_equal(buf_pool_bytes(), 0);
}

static void
test_find_lf(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 16);
	assert_int_equal(buf_append(&b, "USER x", 6), 0);
	assert_int_equal(buf_find_lf(&b), -1);
	assert_int_equal(buf_append(&b, "\r\nPASS", 6), 0);
	assert_int_equal(buf_find_lf(&b), 7);
	/* Offsets are relative to the unread data, not to the memory. */
	buf_consume(&b, 8);
	contents(&b, "PASS");
	assert_int_equal(buf_find_lf(&b), -1);
	assert_int_equal(buf_append(&b, " y\n", 3), 0);
	assert_int_equal(buf_find_lf(&b), 6);
	assert_int_equal(buf_append(&b, "\n", 1), 0);
	assert_int_equal(buf_find_lf(&b), 6);
	buf_consume(&b, 7);
	assert_int_equal(buf_find_lf(&b), 0);
	buf_consume(&b, 1);
	assert_int_equal(buf_find_lf(&b), -1);
	buf_free(&b);
}

static void
test_appendf(void **state)
{
	char big[2000];
	struct buf b;

	(void)state;
	buf_init(&b, 16);
	assert_int_equal(buf_appendf(&b, "+OK %d %s\r\n", 2, "ab"), 0);
	contents(&b, "+OK 2 ab\r\n");
	/* 7 more do not fit in 6: all or nothing. */
	assert_int_equal(buf_appendf(&b, "%s", "1234567"), -1);
	contents(&b, "+OK 2 ab\r\n");
	assert_int_equal(buf_appendf(&b, "%06d", 42), 0);
	contents(&b, "+OK 2 ab\r\n000042");
	assert_int_equal(buf_appendf(&b, "%s", ""), 0);
	buf_free(&b);

	/* Output past the formatting limit is refused, not cut short. */
	buf_init(&b, 4096);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(buf_appendf(&b, "%s", big), -1);
	assert_true(buf_empty(&b));
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_empty),
		cmocka_unit_test(test_capacity_bound),
		cmocka_unit_test(test_all_or_nothing),
		cmocka_unit_test(test_append_compacts),
		cmocka_unit_test(test_wptr_commit_consume),
		cmocka_unit_test(test_drained_releases_memory),
		cmocka_unit_test(test_grow_only_when_allowed_and_full),
		cmocka_unit_test(test_pool_capped_in_bytes),
		cmocka_unit_test(test_find_lf),
		cmocka_unit_test(test_appendf),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
