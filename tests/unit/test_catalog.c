/* test_catalog.c - the broker's catalog: names, create/delete, commits
 * (snapshot isolation, page granularity, conflicts, atomicity, validation,
 * resize), retention, pins and garbage collection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "catalog.h"
#include "shma.h"
#include "store.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define PG UINT64_C(4096)
#define BS (16 * KiB)	  /* block size of most arrays here: 4 pages */
#define PPB (BS / PG)	  /* pages per block */
#define POOL (64 * MiB)
#define MAX_ARRAYS 1000

/* ---- fixture -------------------------------------------------------------- */

/* A commit under construction: page data goes to a memfd, packed in order. */
#define CB_ARR 4
#define CB_BLK 80
#define CB_RUN 8

struct cb {
	struct cat_commit cm;
	struct cat_arrchange arrs[CB_ARR];
	struct cat_blkchange blks[CB_ARR][CB_BLK];
	struct cat_run runs[CB_ARR][CB_BLK][CB_RUN];
	uint64_t len; /* bytes of page data written */
	struct cb *next;
};

struct fx {
	bool open;
	struct pool pool;
	struct catalog *c;
	uint64_t now;	  /* the clock passed to the catalog */
	uint64_t step_ms; /* how far the clock moves per change (0: it stands) */
	struct cb *cbs;	  /* freed by the teardown */
};

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct fx));
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	while (f->cbs) {
		struct cb *b = f->cbs;

		f->cbs = b->next;
		if (b->cm.data_fd >= 0)
			close(b->cm.data_fd);
		free(b);
	}
	if (f->open) {
		catalog_free(&f->c);
		pool_fini(&f->pool);
	}
	free(f);
	return 0;
}

static void fx_open(struct fx *f, uint64_t keep_revisions, uint64_t keep_ms, uint64_t pool_size,
		    struct store *store)
{
	struct cat_retention ret = { keep_revisions, keep_ms };

	assert_int_equal(pool_init(&f->pool, pool_size), 0);
	f->open = true;
	assert_int_equal(catalog_new(&f->pool, store, &ret, f->now, &f->c), 0);
	assert_int_equal(catalog_head(f->c), 0);
}

/* The clock for the next change. */
static uint64_t tick(struct fx *f)
{
	f->now += f->step_ms;
	return f->now;
}

static struct cat_stats stats(const struct fx *f)
{
	struct cat_stats st;

	catalog_stats(f->c, &st);
	return st;
}

/* Nothing a failed change could have touched moved. */
#define ASSERT_UNCHANGED(f, before)                                               \
	do {                                                                      \
		struct cat_stats a_ = stats(f);                                   \
		assert_int_equal(a_.head, (before).head);                         \
		assert_int_equal(catalog_head((f)->c), (before).head);            \
		assert_int_equal(a_.narrays, (before).narrays);                   \
		assert_int_equal(a_.nincarnations, (before).nincarnations);       \
		assert_int_equal(a_.nversions, (before).nversions);               \
		assert_int_equal(a_.nslots, (before).nslots);                     \
		assert_int_equal(a_.pool_used, (before).pool_used);               \
		assert_int_equal(a_.commits, (before).commits);                   \
	} while (0)

static struct dtype dt(const char *s)
{
	struct dtype d;
	const char *why;

	assert_int_equal(dtype_parse(s, &d, &why), 0);
	return d;
}

/* Create a 1-D array of nbytes bytes ("|u1"); returns the new revision. */
static uint64_t create_arr(struct fx *f, const char *name, uint64_t nbytes, uint64_t blksize)
{
	struct cat_create cr = { .name = name, .dtype = dt("|u1"), .order = 'C',
				 .blksize = blksize, .meta = { .ndim = 1, .shape = { nbytes } } };
	struct cat_err err;
	uint64_t rev = 0, head = catalog_head(f->c);
	int rc = catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err);

	if (rc)
		fail_msg("create \"%s\": %d %s", name, rc, err.msg);
	assert_int_equal(rev, head + 1);
	assert_int_equal(catalog_head(f->c), rev);
	return rev;
}

static uint64_t delete_arr(struct fx *f, const char *name)
{
	struct cat_err err;
	uint64_t rev = 0;
	int rc = catalog_delete(f->c, name, tick(f), &rev, &err);

	if (rc)
		fail_msg("delete \"%s\": %d %s", name, rc, err.msg);
	return rev;
}

static struct cb *cb_new(struct fx *f, uint64_t base)
{
	struct cb *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->next = f->cbs;
	f->cbs = b;
	b->cm.base = base;
	b->cm.arrs = b->arrs;
	b->cm.data_fd = memfd_create("commit-data", MFD_CLOEXEC);
	assert_true(b->cm.data_fd >= 0);
	return b;
}

static struct cat_arrchange *cb_arr(struct cb *b, const char *name)
{
	struct cat_arrchange *ch;

	for (size_t i = 0; i < b->cm.narr; i++)
		if (!strcmp(b->arrs[i].name, name))
			return &b->arrs[i];
	assert_true(b->cm.narr < CB_ARR);
	ch = &b->arrs[b->cm.narr];
	ch->name = name;
	ch->blks = b->blks[b->cm.narr];
	b->cm.narr++;
	return ch;
}

static void cb_resize(struct cb *b, const char *name, uint64_t nbytes)
{
	struct cat_arrchange *ch = cb_arr(b, name);

	ch->resize = true;
	ch->meta.ndim = 1;
	ch->meta.shape[0] = nbytes;
}

/* Block blk of name, with no page runs yet (data from here on). */
static struct cat_blkchange *cb_blk(struct cb *b, const char *name, uint64_t blk)
{
	struct cat_arrchange *ch = cb_arr(b, name);
	size_t ai = (size_t)(ch - b->arrs);
	struct cat_blkchange *bc;

	if (ch->nblk && ch->blks[ch->nblk - 1].blk == blk)
		return &ch->blks[ch->nblk - 1];
	assert_true(ch->nblk < CB_BLK);
	bc = &ch->blks[ch->nblk];
	bc->blk = blk;
	bc->data_off = b->len;
	bc->runs = b->runs[ai][ch->nblk];
	ch->nblk++;
	return bc;
}

/* Pages [first, first + count) of block blk, every byte val. */
static void cb_pages(struct cb *b, const char *name, uint64_t blk, uint32_t first,
		     uint32_t count, unsigned char val)
{
	struct cat_blkchange *bc = cb_blk(b, name, blk);
	unsigned char page[PG];

	assert_true(bc->nruns < CB_RUN);
	bc->runs[bc->nruns++] = (struct cat_run){ first, count };
	memset(page, val, sizeof(page));
	for (uint32_t i = 0; i < count; i++) {
		assert_int_equal(pwrite(b->cm.data_fd, page, PG, (off_t)b->len), (ssize_t)PG);
		b->len += PG;
	}
}

/* The whole block (of BS bytes) set to val. */
static void cb_block(struct cb *b, const char *name, uint64_t blk, unsigned char val)
{
	cb_pages(b, name, blk, 0, (uint32_t)PPB, val);
}

static int cb_commit(struct fx *f, struct cb *b, struct cat_result *res, struct cat_err *err)
{
	memset(err, 0, sizeof(*err));
	return catalog_commit(f->c, &b->cm, tick(f), res, err);
}

/* Commit that must succeed; returns the new revision. */
static uint64_t commit_ok_at(struct fx *f, struct cb *b, int line)
{
	struct cat_result res;
	struct cat_err err;
	uint64_t head = catalog_head(f->c);
	int rc = cb_commit(f, b, &res, &err);

	if (rc)
		fail_msg("line %d: commit based on %" PRIu64 ": %d (%s) %s", line, b->cm.base,
			 rc, shma_strerror(rc), err.msg);
	assert_int_equal(res.rev, head + 1);
	assert_int_equal(catalog_head(f->c), res.rev);
	catalog_result_free(&res);
	assert_null(res.arrs);
	return head + 1;
}

#define commit_ok(f, b) commit_ok_at(f, b, __LINE__)

/* Commit that must fail with code, changing nothing. */
static void commit_fails_at(struct fx *f, struct cb *b, int code, struct cat_err *err, int line)
{
	struct cat_stats before = stats(f);
	struct cat_result res;
	int rc;

	memset(&res, 0x5a, sizeof(res));
	rc = cb_commit(f, b, &res, err);
	if (rc == 0)
		catalog_result_free(&res);
	if (rc != code)
		fail_msg("line %d: commit based on %" PRIu64 ": got %d (%s) \"%s\"%s, want %d (%s)",
			 line, b->cm.base, rc, shma_strerror(rc), rc ? err->msg : "",
			 rc ? "" : " (it became the head revision)", code, shma_strerror(code));
	assert_int_equal(err->code, code);
	assert_true(err->msg[0] != 0);
	assert_int_equal(res.narr, 0); /* nothing to free */
	assert_null(res.arrs);
	ASSERT_UNCHANGED(f, before);
}

#define commit_fails(f, b, code, err) commit_fails_at(f, b, code, err, __LINE__)

static void pin_ok(struct fx *f, uint64_t rev)
{
	struct cat_err err;
	int rc = catalog_pin(f->c, rev, &err);

	if (rc)
		fail_msg("pin %" PRIu64 ": %d %s", rev, rc, err.msg);
}

/* ---- reading -------------------------------------------------------------- */

static struct cat_array *find_at(struct fx *f, const char *name, uint64_t rev, int line)
{
	struct cat_array *a = catalog_find(f->c, name, rev);

	if (!a)
		fail_msg("line %d: no array \"%s\" at revision %" PRIu64, line, name, rev);
	return a;
}

/* Bytes [off, off + len) of block blk of name at rev all equal val (a hole
 * reads as zeros). */
static void expect_bytes(struct fx *f, const char *name, uint64_t rev, uint64_t blk, uint64_t off,
			 uint64_t len, unsigned char val, int line)
{
	struct cat_array *a = find_at(f, name, rev, line);
	uint64_t slot = catalog_slot_at(a, blk, rev);
	const unsigned char *d;

	if (slot == CAT_HOLE) {
		if (val)
			fail_msg("line %d: \"%s\" block %" PRIu64 " at revision %" PRIu64
				 " is a hole, want bytes 0x%02x", line, name, blk, rev, val);
		return;
	}
	if (slot % a->blksize || slot + a->blksize > f->pool.size)
		fail_msg("line %d: slot %" PRIu64 " is not a block slot", line, slot);
	d = pool_addr(&f->pool, slot);
	for (uint64_t i = off; i < off + len; i++)
		if (d[i] != val)
			fail_msg("line %d: \"%s\" block %" PRIu64 " at revision %" PRIu64
				 ": byte %" PRIu64 " (page %" PRIu64 ") is 0x%02x, want 0x%02x",
				 line, name, blk, rev, i, i / PG, d[i], val);
}

#define EXPECT_PAGE(f, name, rev, blk, page, val) \
	expect_bytes(f, name, rev, blk, (uint64_t)(page) * PG, PG, val, __LINE__)
#define EXPECT_BYTES(f, name, rev, blk, off, len, val) \
	expect_bytes(f, name, rev, blk, off, len, val, __LINE__)

/* The four pages of a BS block. */
#define EXPECT_BLOCK(f, name, rev, blk, v0, v1, v2, v3)         \
	do {                                                    \
		EXPECT_PAGE(f, name, rev, blk, 0, v0);          \
		EXPECT_PAGE(f, name, rev, blk, 1, v1);          \
		EXPECT_PAGE(f, name, rev, blk, 2, v2);          \
		EXPECT_PAGE(f, name, rev, blk, 3, v3);          \
	} while (0)

static uint64_t slot_at(struct fx *f, const char *name, uint64_t blk, uint64_t rev)
{
	return catalog_slot_at(find_at(f, name, rev, __LINE__), blk, rev);
}

/* Collect (blk, slot) pairs from catalog_changes / catalog_blocks_at. */
struct blklist {
	size_t n;
	uint64_t blk[64], slot[64];
};

static void collect(uint64_t blk, uint64_t slot, void *arg)
{
	struct blklist *l = arg;

	assert_true(l->n < ARRAY_SIZE(l->blk));
	l->blk[l->n] = blk;
	l->slot[l->n] = slot;
	l->n++;
}

/* l holds exactly the blocks want[0..n) (in any order). */
static void expect_blocks(const struct blklist *l, const uint64_t *want, size_t n, int line)
{
	if (l->n != n)
		fail_msg("line %d: %zu blocks listed, want %zu", line, l->n, n);
	for (size_t i = 0; i < n; i++) {
		size_t k;

		for (k = 0; k < l->n && l->blk[k] != want[i]; k++)
			;
		if (k == l->n)
			fail_msg("line %d: block %" PRIu64 " not listed", line, want[i]);
		for (size_t j = k + 1; j < l->n; j++)
			if (l->blk[j] == want[i])
				fail_msg("line %d: block %" PRIu64 " listed twice", line, want[i]);
	}
}

#define EXPECT_BLOCKS(l, ...)                                                         \
	do {                                                                          \
		const uint64_t w_[] = { __VA_ARGS__ };                                \
		expect_blocks(l, w_, ARRAY_SIZE(w_), __LINE__);                       \
	} while (0)

static struct blklist changes(struct fx *f, const char *name, uint64_t from, uint64_t to)
{
	struct blklist l = { 0 };

	catalog_changes(find_at(f, name, to, __LINE__), from, to, collect, &l);
	return l;
}

static struct blklist blocks_at(struct fx *f, const char *name, uint64_t rev)
{
	struct blklist l = { 0 };

	catalog_blocks_at(find_at(f, name, rev, __LINE__), rev, collect, &l);
	return l;
}

/* ---- names ---------------------------------------------------------------- */

static void test_name_ok(void **state)
{
	static const char *const good[] = {
		"a", "Z", "0", "a/b", "a.b", "a..b", "a_b-c.d/e-f/_g/-h/0", "x.", "x-", "x_",
		"data/2024-01-01/prices.f8",
	};
	static const char *const bad[] = {
		"", "/a", ".a", "..", "./a", "a b", "a\tb", "a\\b", "a:b", "a*", "a\xc3\xa9",
		"a//b", "a/.b", "a/..", "a/../b", "a/", "a/b/",
	};
	char name[CAT_NAME_MAX + 2];
	const char *why;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		why = NULL;
		if (!catalog_name_ok(good[i], &why))
			fail_msg("\"%s\" rejected: %s", good[i], why);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		why = NULL;
		if (catalog_name_ok(bad[i], &why))
			fail_msg("\"%s\" accepted", bad[i]);
		assert_non_null(why);
		assert_true(why[0] != 0);
	}
	/* length: 200 bytes is fine, 201 is not */
	memset(name, 'n', CAT_NAME_MAX);
	name[CAT_NAME_MAX] = 0;
	assert_true(catalog_name_ok(name, &why));
	name[CAT_NAME_MAX] = 'n';
	name[CAT_NAME_MAX + 1] = 0;
	assert_false(catalog_name_ok(name, &why));
	/* each rule says which one broke */
	{
		const char *w_len, *w_start, *w_char, *w_slash;

		assert_false(catalog_name_ok("", &w_len));
		assert_false(catalog_name_ok(".x", &w_start));
		assert_false(catalog_name_ok("x y", &w_char));
		assert_false(catalog_name_ok("x//y", &w_slash));
		assert_string_not_equal(w_len, w_start);
		assert_string_not_equal(w_start, w_char);
		assert_string_not_equal(w_char, w_slash);
		assert_string_not_equal(w_len, w_slash);
	}
}

/* ---- create --------------------------------------------------------------- */

static void test_create(void **state)
{
	struct fx *f = *state;
	struct cat_create cr = { .name = "m", .dtype = dt("<f8"), .order = 'F', .blksize = BS,
				 .meta = { .ndim = 2, .shape = { 3, 5 } } };
	struct cat_array *a, *b;
	const struct cat_meta *m;
	struct cat_stats before;
	struct cat_err err;
	uint64_t rev = 77, r1, r2;

	fx_open(f, 16, 0, POOL, &store_memory);
	assert_null(catalog_find(f->c, "m", 0));

	/* revisions go 0 -> 1 -> 2 */
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), 0);
	r1 = rev;
	assert_int_equal(r1, 1);
	assert_int_equal(catalog_head(f->c), 1);
	a = catalog_find(f->c, "m", r1);
	assert_non_null(a);
	assert_null(catalog_find(f->c, "m", 0));
	assert_string_equal(a->name, "m");
	assert_string_equal(a->dtype.str, "<f8");
	assert_int_equal(a->order, 'F');
	assert_int_equal(a->blksize, BS);
	assert_int_equal(a->created, r1);
	assert_true(a->deleted == CAT_LIVE);
	m = catalog_meta_at(a, r1);
	assert_non_null(m);
	assert_int_equal(m->ndim, 2);
	assert_int_equal(m->shape[0], 3);
	assert_int_equal(m->shape[1], 5);
	assert_int_equal(m->nbytes, 3 * 5 * 8); /* computed, not taken from the caller */
	for (uint64_t blk = 0; blk < 4; blk++)
		assert_true(catalog_slot_at(a, blk, r1) == CAT_HOLE);

	r2 = create_arr(f, "n", 10 * BS + 1, BS);
	assert_int_equal(r2, 2);
	b = catalog_find(f->c, "n", r2);
	assert_non_null(b);
	assert_int_equal(catalog_meta_at(b, r2)->nbytes, 10 * BS + 1);
	assert_true(b->id != a->id);
	assert_null(catalog_find(f->c, "n", r1));
	assert_ptr_equal(catalog_find(f->c, "m", r2), a);
	assert_int_equal(stats(f).narrays, 2);

	/* scalar: no dimensions, one item */
	cr.name = "s";
	cr.meta.ndim = 0;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), 0);
	assert_int_equal(catalog_meta_at(catalog_find(f->c, "s", rev), rev)->nbytes, 8);
	/* a zero-length dimension: no bytes */
	cr.name = "z";
	cr.meta.ndim = 2;
	cr.meta.shape[0] = 0;
	cr.meta.shape[1] = 7;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), 0);
	assert_int_equal(catalog_meta_at(catalog_find(f->c, "z", rev), rev)->nbytes, 0);
	/* a block as large as the pool is allowed */
	cr.name = "big";
	cr.blksize = POOL;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), 0);

	/* failures change nothing */
	before = stats(f);
	cr = (struct cat_create){ .name = "m", .dtype = dt("|u1"), .order = 'C', .blksize = BS,
				  .meta = { .ndim = 1, .shape = { 10 } } };
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EEXIST);
	assert_int_equal(err.code, -EEXIST);
	assert_non_null(strstr(err.msg, "m"));
	ASSERT_UNCHANGED(f, before);

	cr.name = "ok";
	{
		static const uint64_t bad_bs[] = { 0, 1, 2048, 4095, 3 * 4096, 4096 + 1, POOL * 2,
						   UINT64_C(1) << 63 };

		for (size_t i = 0; i < ARRAY_SIZE(bad_bs); i++) {
			cr.blksize = bad_bs[i];
			if (catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err) != -EINVAL)
				fail_msg("block size %" PRIu64 " accepted", bad_bs[i]);
			assert_true(err.msg[0] != 0);
			ASSERT_UNCHANGED(f, before);
		}
	}
	cr.blksize = BS;
	cr.order = 'X';
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EINVAL);
	cr.order = 0;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EINVAL);
	ASSERT_UNCHANGED(f, before);
	cr.order = 'C';
	/* shape overflow */
	cr.meta.ndim = 2;
	cr.meta.shape[0] = UINT64_C(1) << 40;
	cr.meta.shape[1] = UINT64_C(1) << 40;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EINVAL);
	cr.meta.ndim = 1;
	cr.meta.shape[0] = UINT64_MAX;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EINVAL);
	cr.dtype = dt("<c16");
	cr.meta.shape[0] = UINT64_MAX / 8;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EINVAL);
	cr.dtype = dt("|u1");
	cr.meta.ndim = CAT_MAXDIM + 1;
	cr.meta.shape[0] = 1;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EINVAL);
	ASSERT_UNCHANGED(f, before);
	cr.meta.ndim = 1;
	/* bad names */
	cr.name = "a//b";
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EINVAL);
	assert_true(err.msg[0] != 0);
	cr.name = "";
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EINVAL);
	ASSERT_UNCHANGED(f, before);

	/* the limit counts live arrays */
	cr.name = "ok";
	assert_int_equal(catalog_create(f->c, &cr, before.narrays, tick(f), &rev, &err), -EUSERS);
	assert_int_equal(err.code, -EUSERS);
	ASSERT_UNCHANGED(f, before);
	delete_arr(f, "big");
	assert_int_equal(catalog_create(f->c, &cr, before.narrays, tick(f), &rev, &err), 0);
	assert_int_equal(rev, before.head + 2);
	assert_int_equal(stats(f).narrays, before.narrays);
}

/* ---- commit --------------------------------------------------------------- */

static void test_commit_basic(void **state)
{
	struct fx *f = *state;
	struct cat_result res;
	struct cat_err err;
	struct cat_array *a;
	struct cb *b;
	uint64_t r1, r2, r3, r4, s2, s3;

	fx_open(f, 100, 0, POOL, &store_memory);
	r1 = create_arr(f, "a", 4 * BS, BS);
	a = catalog_find(f->c, "a", r1);

	/* block 1, page by page */
	b = cb_new(f, r1);
	cb_pages(b, "a", 1, 0, 1, 0x11);
	cb_pages(b, "a", 1, 1, 1, 0x12);
	cb_pages(b, "a", 1, 2, 1, 0x13);
	cb_pages(b, "a", 1, 3, 1, 0x14);
	assert_int_equal(cb_commit(f, b, &res, &err), 0);
	r2 = res.rev;
	assert_int_equal(r2, r1 + 1);
	assert_int_equal(catalog_head(f->c), r2);
	assert_int_equal(res.narr, 1);
	assert_ptr_equal(res.arrs[0].array, a);
	assert_false(res.arrs[0].resized);
	assert_int_equal(res.arrs[0].n, 1);
	assert_int_equal(res.arrs[0].blks[0], 1);
	s2 = catalog_slot_at(a, 1, r2);
	assert_int_equal(res.arrs[0].slots[0], s2);
	assert_true(s2 != CAT_HOLE);
	assert_int_equal(s2 % BS, 0);
	catalog_result_free(&res);
	assert_int_equal(res.narr, 0);
	pin_ok(f, r2);

	EXPECT_BLOCK(f, "a", r2, 1, 0x11, 0x12, 0x13, 0x14);
	assert_true(catalog_slot_at(a, 1, r1) == CAT_HOLE); /* before the commit */
	assert_true(catalog_slot_at(a, 0, r2) == CAT_HOLE);
	assert_true(catalog_slot_at(a, 2, r2) == CAT_HOLE);
	assert_true(catalog_slot_at(a, 3, r2) == CAT_HOLE);
	assert_true(catalog_slot_at(a, 1000, r2) == CAT_HOLE);
	assert_int_equal(stats(f).nslots, 1);
	assert_int_equal(stats(f).pool_used, BS);
	assert_int_equal(stats(f).nversions, 1);
	assert_int_equal(a->nversions, 1);

	/* change one page: the others come from the previous version */
	b = cb_new(f, r2);
	cb_pages(b, "a", 1, 2, 1, 0x99);
	r3 = commit_ok(f, b);
	s3 = catalog_slot_at(a, 1, r3);
	assert_true(s3 != s2 && s3 != CAT_HOLE);
	EXPECT_BLOCK(f, "a", r3, 1, 0x11, 0x12, 0x99, 0x14);
	/* the old revision keeps its slot and its data (snapshot isolation) */
	assert_int_equal(catalog_slot_at(a, 1, r2), s2);
	EXPECT_BLOCK(f, "a", r2, 1, 0x11, 0x12, 0x13, 0x14);

	/* several blocks and runs in one commit, packed in the data file */
	b = cb_new(f, r3);
	cb_pages(b, "a", 0, 1, 2, 0x31);
	cb_pages(b, "a", 1, 0, 1, 0x21);
	cb_pages(b, "a", 1, 3, 1, 0x24);
	cb_pages(b, "a", 3, 3, 1, 0x43);
	assert_int_equal(b->blks[0][1].data_off, 2 * PG);
	r4 = commit_ok(f, b);
	EXPECT_BLOCK(f, "a", r4, 0, 0, 0x31, 0x31, 0);
	EXPECT_BLOCK(f, "a", r4, 1, 0x21, 0x12, 0x99, 0x24);
	EXPECT_BLOCK(f, "a", r4, 2, 0, 0, 0, 0);
	EXPECT_BLOCK(f, "a", r4, 3, 0, 0, 0, 0x43);
	EXPECT_BLOCK(f, "a", r3, 1, 0x11, 0x12, 0x99, 0x14);
	EXPECT_BLOCK(f, "a", r2, 1, 0x11, 0x12, 0x13, 0x14);
	assert_true(catalog_slot_at(a, 0, r3) == CAT_HOLE);
	assert_int_equal(stats(f).nslots, 5);
	assert_int_equal(stats(f).nversions, 5);
	assert_int_equal(stats(f).commits, 3);
	assert_int_equal(stats(f).conflicts, 0);

	/* a block listed without page runs is refused: it would change nothing */
	b = cb_new(f, r4);
	cb_blk(b, "a", 3);
	close(b->cm.data_fd);
	b->cm.data_fd = -1; /* no page data at all */
	commit_fails(f, b, -EINVAL, &err);

	/* so is an empty commit: no revision for nothing */
	b = cb_new(f, catalog_head(f->c));
	commit_fails(f, b, -EINVAL, &err);
	catalog_unpin(f->c, r2);
}

/* Two arrays in one commit become visible at the same revision. */
static void test_commit_two_arrays(void **state)
{
	struct fx *f = *state;
	struct cat_result res;
	struct cat_err err;
	struct cb *b;
	uint64_t base, rev;

	fx_open(f, 100, 0, POOL, &store_memory);
	create_arr(f, "x", 2 * BS, BS);
	base = create_arr(f, "y", 2 * BS, BS);
	b = cb_new(f, base);
	cb_block(b, "y", 1, 0x71);
	cb_block(b, "x", 0, 0x70);
	assert_int_equal(cb_commit(f, b, &res, &err), 0);
	rev = res.rev;
	assert_int_equal(res.narr, 2);
	assert_string_equal(res.arrs[0].array->name, "y");
	assert_string_equal(res.arrs[1].array->name, "x");
	catalog_result_free(&res);
	EXPECT_BLOCK(f, "x", rev, 0, 0x70, 0x70, 0x70, 0x70);
	EXPECT_BLOCK(f, "y", rev, 1, 0x71, 0x71, 0x71, 0x71);
	assert_true(slot_at(f, "x", 0, base) == CAT_HOLE);
	assert_true(slot_at(f, "y", 1, base) == CAT_HOLE);
}

/* ---- conflicts ------------------------------------------------------------ */

static void test_conflict_same_block(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t base, r1, r2;

	fx_open(f, 100, 0, POOL, &store_memory);
	create_arr(f, "a", 4 * BS, BS);
	create_arr(f, "b", 4 * BS, BS);
	b = cb_new(f, catalog_head(f->c));
	cb_block(b, "a", 0, 0x10);
	base = commit_ok(f, b);

	/* first committer wins */
	b = cb_new(f, base);
	cb_block(b, "a", 1, 0x21);
	r1 = commit_ok(f, b);

	b = cb_new(f, base);
	cb_block(b, "b", 0, 0x30); /* fine on its own */
	cb_block(b, "a", 1, 0x31); /* conflicts */
	cb_block(b, "a", 2, 0x32); /* fine on its own */
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_string_equal(err.array, "a");
	assert_int_equal(err.nblocks, 1);
	assert_int_equal(err.blocks[0], 1);
	assert_non_null(strstr(err.msg, "\"a\""));
	assert_int_equal(stats(f).conflicts, 1);
	/* nothing of it is visible */
	assert_int_equal(catalog_head(f->c), r1);
	EXPECT_BLOCK(f, "a", r1, 1, 0x21, 0x21, 0x21, 0x21);
	assert_true(slot_at(f, "a", 2, r1) == CAT_HOLE);
	assert_true(slot_at(f, "b", 0, r1) == CAT_HOLE);

	/* a block changed at base itself is no conflict: only those after it */
	b = cb_new(f, base);
	cb_pages(b, "a", 0, 0, 1, 0x40);
	cb_pages(b, "a", 1, 0, 1, 0x41);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_int_equal(err.nblocks, 1);
	assert_int_equal(err.blocks[0], 1);

	/* several conflicting blocks are all named */
	b = cb_new(f, r1);
	cb_block(b, "a", 2, 0x52);
	cb_block(b, "a", 3, 0x53);
	r2 = commit_ok(f, b);
	b = cb_new(f, r1);
	cb_block(b, "a", 0, 0x60);
	cb_block(b, "a", 2, 0x62);
	cb_block(b, "a", 3, 0x63);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_int_equal(err.nblocks, 2);
	assert_int_equal(err.blocks[0], 2);
	assert_int_equal(err.blocks[1], 3);
	/* rebased on the head it goes through */
	b = cb_new(f, r2);
	cb_block(b, "a", 0, 0x60);
	cb_block(b, "a", 2, 0x62);
	commit_ok(f, b);
	assert_int_equal(stats(f).conflicts, 3);
}

/* More conflicting blocks than err->blocks holds: the first 64 are named. */
static void test_conflict_many_blocks(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t base;

	fx_open(f, 100, 0, POOL, &store_memory);
	base = create_arr(f, "a", 80 * PG, PG);
	b = cb_new(f, base);
	for (uint64_t blk = 0; blk < 70; blk++)
		cb_pages(b, "a", blk, 0, 1, (unsigned char)blk);
	commit_ok(f, b);
	b = cb_new(f, base);
	for (uint64_t blk = 0; blk < 75; blk++)
		cb_pages(b, "a", blk, 0, 1, 0xff);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_int_equal(err.nblocks, ARRAY_SIZE(err.blocks));
	for (size_t i = 0; i < err.nblocks; i++)
		assert_int_equal(err.blocks[i], i);
}

static void test_no_conflict_different_blocks(void **state)
{
	struct fx *f = *state;
	struct cb *b;
	uint64_t base, r1, r2;

	fx_open(f, 100, 0, POOL, &store_memory);
	create_arr(f, "a", 4 * BS, BS);
	base = create_arr(f, "b", 4 * BS, BS);
	b = cb_new(f, base);
	cb_block(b, "a", 0, 0x10);
	r1 = commit_ok(f, b);
	b = cb_new(f, base);
	cb_block(b, "a", 1, 0x11);
	cb_block(b, "b", 0, 0x20);
	r2 = commit_ok(f, b);
	assert_int_equal(r2, r1 + 1);
	assert_int_equal(stats(f).conflicts, 0);
	/* both are in the head; the first's snapshot does not see the second */
	EXPECT_BLOCK(f, "a", r2, 0, 0x10, 0x10, 0x10, 0x10);
	EXPECT_BLOCK(f, "a", r2, 1, 0x11, 0x11, 0x11, 0x11);
	EXPECT_BLOCK(f, "b", r2, 0, 0x20, 0x20, 0x20, 0x20);
	assert_true(slot_at(f, "a", 1, r1) == CAT_HOLE);
	assert_true(slot_at(f, "b", 0, r1) == CAT_HOLE);
	/* a third, from the same old base, on yet another block */
	b = cb_new(f, base);
	cb_pages(b, "a", 2, 1, 1, 0x12);
	commit_ok(f, b);
	EXPECT_BLOCK(f, "a", catalog_head(f->c), 2, 0, 0x12, 0, 0);
	EXPECT_BLOCK(f, "a", catalog_head(f->c), 0, 0x10, 0x10, 0x10, 0x10);
}

/* A resize committed first conflicts with any later change of the array
 * from an older base. */
static void test_conflict_resize_first(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t base, r;

	fx_open(f, 100, 0, POOL, &store_memory);
	create_arr(f, "a", 4 * BS, BS);
	base = create_arr(f, "other", BS, BS);

	/* grow first */
	b = cb_new(f, base);
	cb_resize(b, "a", 8 * BS);
	r = commit_ok(f, b);
	b = cb_new(f, base);
	cb_block(b, "a", 0, 0x01);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_string_equal(err.array, "a");
	b = cb_new(f, base);
	cb_resize(b, "a", 2 * BS);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_string_equal(err.array, "a");
	/* other arrays are not affected */
	b = cb_new(f, base);
	cb_block(b, "other", 0, 0x02);
	commit_ok(f, b);

	/* shrink first */
	base = catalog_head(f->c);
	b = cb_new(f, base);
	cb_resize(b, "a", 3 * BS);
	r = commit_ok(f, b);
	b = cb_new(f, base);
	cb_block(b, "a", 0, 0x03);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_string_equal(err.array, "a");
	/* based on the resize, fine */
	b = cb_new(f, r);
	cb_block(b, "a", 0, 0x03);
	commit_ok(f, b);
}

/* A block change committed first, then a shrink from the same base that cuts
 * that block off: the shrink must conflict, or the first commit's data is
 * silently thrown away. */
static void test_conflict_change_then_shrink(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t base, r1;

	fx_open(f, 100, 0, POOL, &store_memory);
	base = create_arr(f, "a", 4 * BS, BS);
	b = cb_new(f, base);
	cb_block(b, "a", 3, 0x33);
	r1 = commit_ok(f, b);
	b = cb_new(f, base);
	cb_resize(b, "a", 2 * BS); /* cuts off block 3, which base saw as a hole */
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_string_equal(err.array, "a");
	EXPECT_BLOCK(f, "a", catalog_head(f->c), 3, 0x33, 0x33, 0x33, 0x33);
	assert_int_equal(catalog_head(f->c), r1);

	/* the partial last block too: zeroing its tail loses the other's data */
	b = cb_new(f, r1);
	cb_block(b, "a", 1, 0x11);
	r1 = commit_ok(f, b);
	b = cb_new(f, r1 - 1);
	cb_resize(b, "a", BS + 100);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	EXPECT_BLOCK(f, "a", catalog_head(f->c), 1, 0x11, 0x11, 0x11, 0x11);
}

/* A block change committed first, then a grow from the same base: by the
 * rule "a resize conflicts with any change of that array by another from the
 * same base", it conflicts too. */
static void test_conflict_change_then_grow(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t base;

	fx_open(f, 100, 0, POOL, &store_memory);
	base = create_arr(f, "a", 4 * BS, BS);
	b = cb_new(f, base);
	cb_block(b, "a", 0, 0x01);
	commit_ok(f, b);
	b = cb_new(f, base);
	cb_resize(b, "a", 8 * BS);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_string_equal(err.array, "a");
}

static void test_conflict_deleted(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t base, r;

	fx_open(f, 100, 0, POOL, &store_memory);
	create_arr(f, "keep", BS, BS);
	base = create_arr(f, "a", 4 * BS, BS);
	b = cb_new(f, base);
	cb_block(b, "a", 0, 0x01);
	base = commit_ok(f, b);
	delete_arr(f, "a");

	/* deleted after base */
	b = cb_new(f, base);
	cb_block(b, "keep", 0, 0x0f);
	cb_block(b, "a", 1, 0x02);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_string_equal(err.array, "a");
	assert_true(slot_at(f, "keep", 0, catalog_head(f->c)) == CAT_HOLE);
	/* based on the delete: the array is unknown */
	b = cb_new(f, catalog_head(f->c));
	cb_block(b, "a", 1, 0x02);
	commit_fails(f, b, -ENOENT, &err);
	/* deleted and created again after base: a different array */
	r = create_arr(f, "a", 4 * BS, BS);
	b = cb_new(f, base);
	cb_block(b, "a", 1, 0x02);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	assert_string_equal(err.array, "a");
	/* created after base (base did not see it at all) */
	b = cb_new(f, r - 1);
	cb_block(b, "a", 1, 0x02);
	commit_fails(f, b, SHMA_ECONFLICT, &err);
	b = cb_new(f, r);
	cb_block(b, "a", 1, 0x02);
	commit_ok(f, b);
	/* never existed */
	b = cb_new(f, catalog_head(f->c));
	cb_block(b, "nope", 0, 0x02);
	commit_fails(f, b, -ENOENT, &err);
	assert_non_null(strstr(err.msg, "nope"));
}

/* ---- atomicity ------------------------------------------------------------ */

/* A store that records what it is asked and can refuse. */
struct test_store {
	struct store st;
	struct fx *f;
	int fail;	  /* returned by write */
	unsigned ncalls;
	bool saw_unpublished; /* the record's revision was not yet visible */
	bool data_ready;      /* commit: the new slots held their data */
};

static int ts_write(struct store *st, const struct store_record *rec)
{
	struct test_store *ts = container_of(st, struct test_store, st);

	ts->ncalls++;
	ts->saw_unpublished = rec->rev == catalog_head(ts->f->c) + 1;
	if (rec->kind == STORE_COMMIT) {
		const unsigned char *d;

		ts->data_ready = rec->result && rec->result->narr == 1 &&
				 rec->result->arrs[0].n == 1 &&
				 rec->result->arrs[0].slots[0] != CAT_HOLE;
		if (ts->data_ready) {
			d = pool_addr(rec->pool, rec->result->arrs[0].slots[0]);
			ts->data_ready = d[0] == 0x5e && d[BS - 1] == 0x5e;
		}
	}
	return ts->fail;
}

static const struct store_ops ts_ops = { .write = ts_write, .close = NULL };

static void test_store_failure_changes_nothing(void **state)
{
	struct fx *f = *state;
	struct test_store ts = { .st = { .ops = &ts_ops }, .f = f };
	struct cat_create cr = { .name = "b", .dtype = dt("|u1"), .order = 'C', .blksize = BS,
				 .meta = { .ndim = 1, .shape = { BS } } };
	struct cat_stats before;
	struct cat_err err;
	struct cb *b;
	uint64_t rev = 0, r1, r2;

	fx_open(f, 100, 0, POOL, &ts.st);
	r1 = create_arr(f, "a", 4 * BS, BS);
	assert_int_equal(ts.ncalls, 1);
	assert_true(ts.saw_unpublished);

	b = cb_new(f, r1);
	cb_block(b, "a", 0, 0x5e);
	r2 = commit_ok(f, b);
	assert_int_equal(ts.ncalls, 2);
	assert_true(ts.saw_unpublished);
	assert_true(ts.data_ready);

	ts.fail = -EIO;
	before = stats(f);
	b = cb_new(f, r2);
	cb_block(b, "a", 0, 0x5e);
	cb_block(b, "a", 1, 0x5f);
	commit_fails(f, b, -EIO, &err);
	assert_int_equal(ts.ncalls, 3);
	assert_true(slot_at(f, "a", 1, r2) == CAT_HOLE);
	EXPECT_BLOCK(f, "a", r2, 0, 0x5e, 0x5e, 0x5e, 0x5e);

	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), -EIO);
	assert_int_equal(err.code, -EIO);
	assert_null(catalog_find(f->c, "b", catalog_head(f->c)));
	assert_null(catalog_find(f->c, "b", catalog_head(f->c) + 1));
	ASSERT_UNCHANGED(f, before);

	assert_int_equal(catalog_delete(f->c, "a", tick(f), &rev, &err), -EIO);
	assert_non_null(catalog_find(f->c, "a", catalog_head(f->c)));
	ASSERT_UNCHANGED(f, before);

	/* and it all works again once the store does */
	ts.fail = 0;
	assert_int_equal(catalog_create(f->c, &cr, MAX_ARRAYS, tick(f), &rev, &err), 0);
	assert_int_equal(rev, before.head + 1);
	assert_int_equal(delete_arr(f, "a"), before.head + 2);
}

/* A batch the store could not make durable is undone whole: its creates,
 * commits (new chains, superseded heads), resizes and deletes all go, nothing
 * was freed meanwhile (retention 1 would have freed at once), and the
 * catalog works on from where it was. */
static void test_batch_undo(void **state)
{
	struct fx *f = *state;
	struct cat_stats before, mid;
	struct cb *b;
	uint64_t head, r;

	fx_open(f, 1, 0, POOL, NULL);
	create_arr(f, "a", 4 * BS, BS);
	create_arr(f, "d", 2 * BS, BS);
	b = cb_new(f, catalog_head(f->c));
	cb_block(b, "a", 0, 0x11);
	cb_block(b, "d", 1, 0x12);
	head = commit_ok(f, b);
	before = stats(f);

	catalog_batch_begin(f->c);
	assert_true(catalog_batch_open(f->c));
	b = cb_new(f, head);
	cb_block(b, "a", 0, 0x22); /* supersedes a version */
	cb_block(b, "a", 2, 0x33); /* a new chain */
	assert_int_equal(commit_ok(f, b), head + 1);
	assert_int_equal(create_arr(f, "n", 2 * BS, BS), head + 2);
	b = cb_new(f, head + 2);
	cb_block(b, "n", 0, 0x44);
	assert_int_equal(commit_ok(f, b), head + 3);
	b = cb_new(f, head + 3);
	cb_resize(b, "a", 8 * BS);
	cb_block(b, "a", 5, 0x55);
	assert_int_equal(commit_ok(f, b), head + 4);
	assert_int_equal(delete_arr(f, "d"), head + 5);
	catalog_gc(f->c, tick(f)); /* frees nothing while the batch is open */
	mid = stats(f);
	assert_int_equal(mid.nversions, before.nversions + 4);
	assert_int_equal(mid.head, head + 5);
	catalog_batch_end(f->c, false);
	assert_false(catalog_batch_open(f->c));

	ASSERT_UNCHANGED(f, before);
	assert_null(catalog_find(f->c, "n", head));
	assert_non_null(catalog_find(f->c, "d", head));
	assert_int_equal(catalog_meta_at(find_at(f, "a", head, __LINE__), head)->nbytes, 4 * BS);
	EXPECT_BLOCK(f, "a", head, 0, 0x11, 0x11, 0x11, 0x11);
	assert_true(slot_at(f, "a", 2, head) == CAT_HOLE);
	EXPECT_BLOCK(f, "d", head, 1, 0x12, 0x12, 0x12, 0x12);

	/* it goes on from the head before the batch: the same changes work */
	b = cb_new(f, head);
	cb_block(b, "a", 0, 0x66);
	assert_int_equal(commit_ok(f, b), head + 1);
	assert_int_equal(create_arr(f, "n", 2 * BS, BS), head + 2);
	assert_int_equal(delete_arr(f, "d"), head + 3);
	EXPECT_BLOCK(f, "a", head + 3, 0, 0x66, 0x66, 0x66, 0x66);

	/* a batch that is kept is simply there */
	catalog_batch_begin(f->c);
	b = cb_new(f, head + 3);
	cb_block(b, "n", 1, 0x77);
	r = commit_ok(f, b);
	catalog_batch_end(f->c, true);
	assert_int_equal(catalog_head(f->c), r);
	EXPECT_BLOCK(f, "n", r, 1, 0x77, 0x77, 0x77, 0x77);
	catalog_gc(f->c, tick(f)); /* retention 1: the superseded versions go now */
	assert_int_equal(stats(f).oldest_kept, r);
}

/* In a batch, a small commit copies its blocks' unchanged pages only when
 * the batch ends (on helper threads started by catalog_fill_start, while
 * the store would sync): the blocks are whole then, kept or undone. */
static void test_batch_deferred_fills(void **state)
{
	struct fx *f = *state;
	const char *names[] = { "p", "q" };
	struct cat_stats before;
	struct cb *b;
	uint64_t head, r;

	fx_open(f, 100, 0, POOL, NULL);
	create_arr(f, "p", CB_BLK * BS, BS);
	create_arr(f, "q", CB_BLK * BS, BS);
	b = cb_new(f, catalog_head(f->c));
	for (int a = 0; a < 2; a++)
		for (uint64_t k = 0; k < CB_BLK; k++)
			cb_block(b, names[a], k, 0x10);
	head = commit_ok(f, b);

	/* 160 blocks with one page changed: 1.9 MiB of copies, threaded */
	catalog_batch_begin(f->c);
	b = cb_new(f, head);
	for (int a = 0; a < 2; a++)
		for (uint64_t k = 0; k < CB_BLK; k++)
			cb_pages(b, names[a], k, 1, 1, 0x20);
	r = commit_ok(f, b);
	catalog_fill_start(f->c);
	catalog_batch_end(f->c, true);
	for (int a = 0; a < 2; a++)
		for (uint64_t k = 0; k < CB_BLK; k++)
			EXPECT_BLOCK(f, names[a], r, k, 0x10, 0x20, 0x10, 0x10);

	/* the same undone: nothing of it stays, the blocks before are intact */
	before = stats(f);
	catalog_batch_begin(f->c);
	b = cb_new(f, r);
	for (int a = 0; a < 2; a++)
		for (uint64_t k = 0; k < CB_BLK; k++)
			cb_pages(b, names[a], k, 2, 1, 0x30);
	assert_int_equal(commit_ok(f, b), r + 1);
	catalog_fill_start(f->c);
	catalog_batch_end(f->c, false);
	ASSERT_UNCHANGED(f, before);
	for (int a = 0; a < 2; a++)
		for (uint64_t k = 0; k < CB_BLK; k++)
			EXPECT_BLOCK(f, names[a], r, k, 0x10, 0x20, 0x10, 0x10);
}

static void test_atomic_bad_data(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t base;
	char path[64];
	int pfd[2], wfd;

	fx_open(f, 100, 0, POOL, &store_memory);
	create_arr(f, "a", 4 * BS, BS);
	create_arr(f, "b", 4 * BS, BS);
	b = cb_new(f, catalog_head(f->c));
	cb_block(b, "a", 0, 0x01);
	base = commit_ok(f, b);

	/* the second array's page data lies past the end of the data file */
	b = cb_new(f, base);
	cb_block(b, "a", 1, 0x02);
	cb_block(b, "b", 0, 0x03);
	assert_int_equal(ftruncate(b->cm.data_fd, (off_t)(b->len - 1)), 0);
	commit_fails(f, b, -EINVAL, &err);
	/* a data_off past the end */
	b = cb_new(f, base);
	cb_block(b, "a", 1, 0x02);
	b->blks[0][0].data_off = UINT64_MAX - 10;
	commit_fails(f, b, -EINVAL, &err);

	/* the second array does not exist */
	b = cb_new(f, base);
	cb_block(b, "a", 1, 0x02);
	cb_block(b, "zz", 0, 0x03);
	commit_fails(f, b, -ENOENT, &err);

	/* page data in something that is not a file */
	b = cb_new(f, base);
	cb_block(b, "a", 1, 0x02);
	close(b->cm.data_fd);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	b->cm.data_fd = pfd[0];
	commit_fails(f, b, -EINVAL, &err);
	close(pfd[1]);

	/* page data that cannot be read: refused before anything is taken */
	b = cb_new(f, base);
	cb_block(b, "b", 0, 0x03);
	cb_block(b, "a", 1, 0x02);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", b->cm.data_fd);
	wfd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(wfd >= 0);
	close(b->cm.data_fd);
	b->cm.data_fd = wfd;
	commit_fails(f, b, -EINVAL, &err);

	/* nothing of all that is visible */
	assert_true(slot_at(f, "a", 1, base) == CAT_HOLE);
	assert_true(slot_at(f, "b", 0, base) == CAT_HOLE);
	EXPECT_BLOCK(f, "a", base, 0, 0x01, 0x01, 0x01, 0x01);
	assert_int_equal(stats(f).nslots, 1);
	assert_int_equal(stats(f).pool_used, BS);
}

static void test_atomic_pool_full(void **state)
{
	struct fx *f = *state;
	const uint64_t bs = 64 * KiB;
	struct cat_stats before;
	struct cat_err err;
	struct cb *b;
	uint64_t rev;

	fx_open(f, 100, 0, 8 * bs, &store_memory);
	create_arr(f, "a", 32 * bs, bs);
	rev = create_arr(f, "b", 32 * bs, bs);
	b = cb_new(f, rev);
	for (uint32_t blk = 0; blk < 6; blk++)
		cb_pages(b, "a", blk, 0, 1, (unsigned char)(blk + 1));
	rev = commit_ok(f, b);
	assert_int_equal(stats(f).pool_used, 6 * bs);
	assert_int_equal(stats(f).pool_size, 8 * bs);

	/* 4 more do not fit: none is taken */
	before = stats(f);
	b = cb_new(f, rev);
	for (uint32_t blk = 6; blk < 10; blk++)
		cb_pages(b, "a", blk, 0, 1, 0xee);
	commit_fails(f, b, -ENOSPC, &err);
	assert_non_null(strstr(err.msg, "pool"));
	assert_int_equal(stats(f).pool_used, before.pool_used);
	/* across two arrays: the first's slots go back too */
	b = cb_new(f, rev);
	cb_pages(b, "b", 0, 0, 1, 0xee);
	cb_pages(b, "a", 6, 0, 1, 0xee);
	cb_pages(b, "a", 7, 0, 1, 0xee);
	commit_fails(f, b, -ENOSPC, &err);
	for (uint64_t blk = 6; blk < 10; blk++)
		assert_true(slot_at(f, "a", blk, rev) == CAT_HOLE);
	assert_true(slot_at(f, "b", 0, rev) == CAT_HOLE);

	/* exactly what is left still fits */
	b = cb_new(f, rev);
	cb_pages(b, "a", 6, 0, 1, 0x07);
	cb_pages(b, "b", 0, 0, 1, 0x08);
	rev = commit_ok(f, b);
	assert_int_equal(stats(f).pool_used, 8 * bs);
	EXPECT_PAGE(f, "a", rev, 6, 0, 0x07);
	EXPECT_PAGE(f, "b", rev, 0, 0, 0x08);
	for (uint64_t blk = 0; blk < 6; blk++)
		EXPECT_PAGE(f, "a", rev, blk, 0, (unsigned char)(blk + 1));
}

/* ---- validation ----------------------------------------------------------- */

static void test_validation(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t base;

	fx_open(f, 100, 0, POOL, &store_memory);
	create_arr(f, "a", 4 * BS, BS);
	base = create_arr(f, "b", 4 * BS, BS);

	/* a block beyond the end */
	b = cb_new(f, base);
	cb_block(b, "a", 4, 0x01);
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, base);
	cb_block(b, "a", UINT64_MAX, 0x01);
	commit_fails(f, b, -EINVAL, &err);

	/* blocks not ascending, or repeated */
	b = cb_new(f, base);
	cb_block(b, "a", 2, 0x01);
	cb_block(b, "a", 1, 0x01);
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, base);
	cb_pages(b, "a", 1, 0, 1, 0x01);
	b->blks[0][1] = b->blks[0][0]; /* block 1 twice */
	b->arrs[0].nblk = 2;
	cb_pages(b, "a", 1, 1, 1, 0x01); /* appended to the duplicate */
	commit_fails(f, b, -EINVAL, &err);

	/* runs: empty, overlapping, out of order, out of the block */
	b = cb_new(f, base);
	cb_pages(b, "a", 0, 0, 0, 0x01);
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, base);
	cb_pages(b, "a", 0, 0, 2, 0x01);
	cb_pages(b, "a", 0, 1, 1, 0x01);
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, base);
	cb_pages(b, "a", 0, 2, 1, 0x01);
	cb_pages(b, "a", 0, 0, 1, 0x01);
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, base);
	cb_pages(b, "a", 0, 3, 2, 0x01);
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, base);
	cb_pages(b, "a", 0, (uint32_t)PPB, 1, 0x01);
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, base);
	cb_pages(b, "a", 0, UINT32_MAX, 1, 0x01); /* first + count overflows 32 bits */
	commit_fails(f, b, -EINVAL, &err);
	/* a bad run in the second block of the second array */
	b = cb_new(f, base);
	cb_block(b, "a", 0, 0x01);
	cb_block(b, "b", 0, 0x01);
	cb_pages(b, "b", 1, 1, 4, 0x01);
	commit_fails(f, b, -EINVAL, &err);

	/* an array twice in one commit */
	b = cb_new(f, base);
	cb_block(b, "a", 0, 0x01);
	b->arrs[1] = b->arrs[0];
	b->cm.narr = 2;
	commit_fails(f, b, -EINVAL, &err);

	/* base from the future */
	b = cb_new(f, base + 1);
	cb_block(b, "a", 0, 0x01);
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, UINT64_MAX);
	commit_fails(f, b, -EINVAL, &err);

	/* pages but no data */
	b = cb_new(f, base);
	cb_block(b, "a", 0, 0x01);
	close(b->cm.data_fd);
	b->cm.data_fd = -1;
	commit_fails(f, b, -EINVAL, &err);

	/* bad new shapes */
	b = cb_new(f, base);
	cb_resize(b, "a", 1);
	b->arrs[0].meta.ndim = CAT_MAXDIM + 1;
	commit_fails(f, b, -EINVAL, &err);
	b = cb_new(f, base);
	cb_resize(b, "a", UINT64_MAX);
	commit_fails(f, b, -EINVAL, &err);

	/* a block past the end that the same commit's shrink cuts off */
	b = cb_new(f, base);
	cb_resize(b, "a", 2 * BS);
	cb_block(b, "a", 2, 0x01);
	commit_fails(f, b, -EINVAL, &err);

	/* none of that counted as a conflict */
	assert_int_equal(stats(f).conflicts, 0);
	assert_int_equal(stats(f).nslots, 0);
}

/* ---- resize --------------------------------------------------------------- */

static void test_resize_grow(void **state)
{
	struct fx *f = *state;
	struct cat_result res;
	struct cat_err err;
	struct cat_array *a;
	struct cb *b;
	uint64_t r1, r2, r3;

	fx_open(f, 100, 0, POOL, &store_memory);
	r1 = create_arr(f, "a", 2 * BS, BS);
	a = catalog_find(f->c, "a", r1);
	b = cb_new(f, r1);
	cb_block(b, "a", 1, 0x11);
	r2 = commit_ok(f, b);

	/* grow and write the new blocks in one commit */
	b = cb_new(f, r2);
	cb_resize(b, "a", 4 * BS);
	cb_block(b, "a", 3, 0x33);
	assert_int_equal(cb_commit(f, b, &res, &err), 0);
	r3 = res.rev;
	assert_int_equal(res.narr, 1);
	assert_true(res.arrs[0].resized);
	assert_int_equal(res.arrs[0].n, 1);
	assert_int_equal(res.arrs[0].blks[0], 3);
	catalog_result_free(&res);
	assert_int_equal(catalog_meta_at(a, r3)->nbytes, 4 * BS);
	assert_int_equal(catalog_meta_at(a, r3)->shape[0], 4 * BS);
	assert_int_equal(catalog_meta_at(a, r2)->nbytes, 2 * BS);
	assert_int_equal(catalog_meta_at(a, r1)->nbytes, 2 * BS);
	EXPECT_BLOCK(f, "a", r3, 1, 0x11, 0x11, 0x11, 0x11);
	EXPECT_BLOCK(f, "a", r3, 3, 0x33, 0x33, 0x33, 0x33);
	assert_true(catalog_slot_at(a, 2, r3) == CAT_HOLE);
	assert_true(catalog_slot_at(a, 0, r3) == CAT_HOLE);
	assert_true(catalog_slot_at(a, 3, r2) == CAT_HOLE);

	/* then write another new block */
	b = cb_new(f, r3);
	cb_pages(b, "a", 2, 1, 1, 0x22);
	r3 = commit_ok(f, b);
	EXPECT_BLOCK(f, "a", r3, 2, 0, 0x22, 0, 0);

	/* a resize alone is a revision, with no block changed */
	b = cb_new(f, r3);
	cb_resize(b, "a", 100 * BS);
	assert_int_equal(cb_commit(f, b, &res, &err), 0);
	assert_true(res.arrs[0].resized);
	assert_int_equal(res.arrs[0].n, 0);
	catalog_result_free(&res);
	assert_int_equal(catalog_meta_at(a, catalog_head(f->c))->nbytes, 100 * BS);
	EXPECT_BLOCK(f, "a", catalog_head(f->c), 3, 0x33, 0x33, 0x33, 0x33);
}

static unsigned char pv(uint64_t blk, uint64_t page)
{
	return (unsigned char)(0x10 * (blk + 1) + page + 1);
}

static void test_resize_shrink(void **state)
{
	struct fx *f = *state;
	const uint64_t nb = BS + 2 * PG + 100; /* block 1: 2 pages and 100 bytes */
	struct cat_result res;
	struct cat_err err;
	struct cat_array *a;
	struct cb *b;
	uint64_t r0, rfull, rs, rg;

	fx_open(f, 100, 0, POOL, &store_memory);
	r0 = create_arr(f, "a", 4 * BS, BS);
	a = catalog_find(f->c, "a", r0);
	b = cb_new(f, r0);
	for (uint64_t blk = 0; blk < 4; blk++)
		for (uint32_t pg = 0; pg < PPB; pg++)
			cb_pages(b, "a", blk, pg, 1, pv(blk, pg));
	rfull = commit_ok(f, b);
	pin_ok(f, rfull);

	b = cb_new(f, rfull);
	cb_resize(b, "a", nb);
	assert_int_equal(cb_commit(f, b, &res, &err), 0);
	rs = res.rev;
	assert_true(res.arrs[0].resized);
	/* block 1 (its tail zeroed, in a new slot) and 2, 3 (now holes) */
	{
		struct blklist l = { 0 };

		for (size_t i = 0; i < res.arrs[0].n; i++) {
			collect(res.arrs[0].blks[i], res.arrs[0].slots[i], &l);
			if (res.arrs[0].blks[i] == 1)
				assert_true(res.arrs[0].slots[i] != CAT_HOLE &&
					    res.arrs[0].slots[i] == catalog_slot_at(a, 1, rs));
			else
				assert_true(res.arrs[0].slots[i] == CAT_HOLE);
		}
		EXPECT_BLOCKS(&l, 1, 2, 3);
	}
	catalog_result_free(&res);
	assert_int_equal(catalog_meta_at(a, rs)->nbytes, nb);
	EXPECT_BLOCK(f, "a", rs, 0, pv(0, 0), pv(0, 1), pv(0, 2), pv(0, 3));
	EXPECT_PAGE(f, "a", rs, 1, 0, pv(1, 0));
	EXPECT_PAGE(f, "a", rs, 1, 1, pv(1, 1));
	EXPECT_BYTES(f, "a", rs, 1, 2 * PG, 100, pv(1, 2));
	EXPECT_BYTES(f, "a", rs, 1, 2 * PG + 100, PG - 100, 0);
	EXPECT_PAGE(f, "a", rs, 1, 3, 0);
	assert_true(catalog_slot_at(a, 2, rs) == CAT_HOLE);
	assert_true(catalog_slot_at(a, 3, rs) == CAT_HOLE);
	/* the pinned old revision still sees everything */
	for (uint64_t blk = 0; blk < 4; blk++)
		EXPECT_BLOCK(f, "a", rfull, blk, pv(blk, 0), pv(blk, 1), pv(blk, 2), pv(blk, 3));
	assert_int_equal(catalog_meta_at(a, rfull)->nbytes, 4 * BS);

	/* grow again: what was cut off reads as zeros */
	b = cb_new(f, rs);
	cb_resize(b, "a", 4 * BS);
	rg = commit_ok(f, b);
	EXPECT_BLOCK(f, "a", rg, 0, pv(0, 0), pv(0, 1), pv(0, 2), pv(0, 3));
	EXPECT_PAGE(f, "a", rg, 1, 0, pv(1, 0));
	EXPECT_PAGE(f, "a", rg, 1, 1, pv(1, 1));
	EXPECT_BYTES(f, "a", rg, 1, 2 * PG, 100, pv(1, 2));
	EXPECT_BYTES(f, "a", rg, 1, 2 * PG + 100, BS - 2 * PG - 100, 0);
	assert_true(catalog_slot_at(a, 2, rg) == CAT_HOLE);
	assert_true(catalog_slot_at(a, 3, rg) == CAT_HOLE);
	assert_int_equal(catalog_slot_at(a, 1, rg), catalog_slot_at(a, 1, rs));
	for (uint64_t blk = 0; blk < 4; blk++)
		EXPECT_BLOCK(f, "a", rfull, blk, pv(blk, 0), pv(blk, 1), pv(blk, 2), pv(blk, 3));
	catalog_unpin(f->c, rfull);
}

static void test_resize_shrink_grow_zeroes(void **state)
{
	struct fx *f = *state;
	const uint64_t nb = BS + 2 * PG + 100;
	struct cb *b;
	uint64_t r0, rs, rg;

	fx_open(f, 100, 0, POOL, &store_memory);
	r0 = create_arr(f, "a", 4 * BS, BS);
	b = cb_new(f, r0);
	for (uint64_t blk = 0; blk < 4; blk++)
		cb_block(b, "a", blk, (unsigned char)(0xa0 + blk));
	r0 = commit_ok(f, b);
	b = cb_new(f, r0);
	cb_resize(b, "a", nb);
	rs = commit_ok(f, b);
	b = cb_new(f, rs);
	cb_resize(b, "a", 4 * BS);
	rg = commit_ok(f, b);
	EXPECT_BLOCK(f, "a", rg, 0, 0xa0, 0xa0, 0xa0, 0xa0);
	EXPECT_PAGE(f, "a", rg, 1, 0, 0xa1);
	EXPECT_PAGE(f, "a", rg, 1, 1, 0xa1);
	EXPECT_BYTES(f, "a", rg, 1, 2 * PG, 100, 0xa1);
	EXPECT_BYTES(f, "a", rg, 1, 2 * PG + 100, PG - 100, 0);
	EXPECT_PAGE(f, "a", rg, 1, 3, 0);
	EXPECT_BLOCK(f, "a", rg, 2, 0, 0, 0, 0);
	EXPECT_BLOCK(f, "a", rg, 3, 0, 0, 0, 0);
	{
		struct blklist l = blocks_at(f, "a", rg);

		EXPECT_BLOCKS(&l, 0, 1);
	}

	/* write one page of a block that was cut off: the rest reads zero */
	b = cb_new(f, rg);
	cb_pages(b, "a", 3, 1, 1, 0xb3);
	rg = commit_ok(f, b);
	EXPECT_BLOCK(f, "a", rg, 3, 0, 0xb3, 0, 0);

	/* shrink and write the new last block in the same commit: its tail is
	 * zeroed even though the client sent data there */
	b = cb_new(f, rg);
	cb_resize(b, "a", BS + 100);
	cb_block(b, "a", 1, 0x77);
	rs = commit_ok(f, b);
	EXPECT_BYTES(f, "a", rs, 1, 0, 100, 0x77);
	EXPECT_BYTES(f, "a", rs, 1, 100, BS - 100, 0);
	assert_true(slot_at(f, "a", 3, rs) == CAT_HOLE);

	/* a write to the partial last block without a resize: tail zeroed too */
	b = cb_new(f, rs);
	cb_block(b, "a", 1, 0x78);
	rs = commit_ok(f, b);
	EXPECT_BYTES(f, "a", rs, 1, 0, 100, 0x78);
	EXPECT_BYTES(f, "a", rs, 1, 100, BS - 100, 0);

	/* shrink to a block boundary: no partial block; then to nothing */
	b = cb_new(f, rs);
	cb_resize(b, "a", BS);
	rs = commit_ok(f, b);
	EXPECT_BYTES(f, "a", rs, 0, 0, BS, 0xa0);
	assert_true(slot_at(f, "a", 1, rs) == CAT_HOLE);
	b = cb_new(f, rs);
	cb_resize(b, "a", 0);
	rs = commit_ok(f, b);
	{
		struct blklist l = blocks_at(f, "a", rs);

		assert_int_equal(l.n, 0);
	}
	b = cb_new(f, rs);
	cb_resize(b, "a", 4 * BS);
	rs = commit_ok(f, b);
	for (uint64_t blk = 0; blk < 4; blk++)
		assert_true(slot_at(f, "a", blk, rs) == CAT_HOLE);
}

/* ---- retention, pins, GC -------------------------------------------------- */

/* Old shapes stay readable at a pinned revision through GC, and go with it. */
static void test_resize_meta_kept_while_pinned(void **state)
{
	struct fx *f = *state;
	struct cat_array *a;
	struct cb *b;
	uint64_t r1, r2, r3, r4;

	f->step_ms = 1;
	fx_open(f, 1, 0, POOL, &store_memory);
	r1 = create_arr(f, "a", 2 * BS, BS);
	a = catalog_find(f->c, "a", r1);
	b = cb_new(f, r1);
	cb_block(b, "a", 1, 0x11);
	r2 = commit_ok(f, b);
	pin_ok(f, r2);
	b = cb_new(f, r2);
	cb_resize(b, "a", BS + 10);
	r3 = commit_ok(f, b);
	b = cb_new(f, r3);
	cb_resize(b, "a", 7 * BS);
	r4 = commit_ok(f, b);
	catalog_gc(f->c, tick(f));
	assert_int_equal(catalog_meta_at(a, r2)->nbytes, 2 * BS);
	assert_int_equal(catalog_meta_at(a, r4)->nbytes, 7 * BS);
	EXPECT_BLOCK(f, "a", r2, 1, 0x11, 0x11, 0x11, 0x11);
	EXPECT_BYTES(f, "a", r4, 1, 0, 10, 0x11);
	EXPECT_BYTES(f, "a", r4, 1, 10, BS - 10, 0);
	assert_int_equal(stats(f).nslots, 2);
	catalog_unpin(f->c, r2);
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).nslots, 1);
	assert_int_equal(catalog_meta_at(a, r4)->nbytes, 7 * BS);
	assert_int_equal(catalog_meta_at(a, r4)->shape[0], 7 * BS);
	assert_null(catalog_meta_at(a, r1 - 1)); /* before it existed */
}


static void test_retention_by_count(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cat_stats st;
	struct cb *b;
	uint64_t rev[16], r;

	f->step_ms = 10; /* the clock moves: only the count matters */
	fx_open(f, 2, 0, POOL, &store_memory);
	rev[1] = create_arr(f, "a", 4 * BS, BS);
	for (int i = 2; i <= 6; i++) {
		b = cb_new(f, rev[i - 1]);
		cb_block(b, "a", 0, (unsigned char)i);
		rev[i] = commit_ok(f, b);
		assert_int_equal(rev[i], (uint64_t)i);
	}
	st = stats(f);
	assert_int_equal(st.nversions, 5);
	assert_int_equal(st.nslots, 5);

	catalog_gc(f->c, tick(f));
	assert_int_equal(catalog_oldest_kept(f->c), 5);
	st = stats(f);
	assert_int_equal(st.oldest_kept, 5);
	assert_int_equal(st.nversions, 2); /* seen by revisions 5 and 6 */
	assert_int_equal(st.nslots, 2);
	assert_int_equal(st.pool_used, 2 * BS);
	EXPECT_BLOCK(f, "a", 5, 0, 5, 5, 5, 5);
	EXPECT_BLOCK(f, "a", 6, 0, 6, 6, 6, 6);

	/* too old to pin */
	memset(&err, 0, sizeof(err));
	assert_int_equal(catalog_pin(f->c, 4, &err), SHMA_ENOTKEPT);
	assert_int_equal(err.code, SHMA_ENOTKEPT);
	assert_non_null(strstr(err.msg, "retention"));
	assert_int_equal(catalog_pin(f->c, 0, &err), SHMA_ENOTKEPT);
	assert_int_equal(catalog_pin(f->c, 7, &err), -EINVAL); /* not yet */
	assert_int_equal(stats(f).npins, 0);

	/* a pinned revision keeps its data through later commits and GC */
	pin_ok(f, 5);
	pin_ok(f, 5);
	assert_int_equal(stats(f).npins, 2);
	for (int i = 7; i <= 8; i++) {
		b = cb_new(f, catalog_head(f->c));
		cb_block(b, "a", 0, (unsigned char)i);
		rev[i] = commit_ok(f, b);
	}
	catalog_gc(f->c, tick(f));
	assert_int_equal(catalog_oldest_kept(f->c), 7);
	st = stats(f);
	assert_int_equal(st.nslots, 3); /* revisions 5 (pinned), 7, 8 */
	assert_int_equal(st.nversions, 3);
	EXPECT_BLOCK(f, "a", 5, 0, 5, 5, 5, 5);
	EXPECT_BLOCK(f, "a", 8, 0, 8, 8, 8, 8);
	/* still pinned: pinning again works although it is not retained */
	pin_ok(f, 5);
	catalog_unpin(f->c, 5);
	catalog_unpin(f->c, 5);
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).nslots, 3);
	EXPECT_BLOCK(f, "a", 5, 0, 5, 5, 5, 5);
	catalog_unpin(f->c, 5);
	assert_int_equal(stats(f).npins, 0);
	catalog_gc(f->c, tick(f));
	st = stats(f);
	assert_int_equal(st.nslots, 2);
	assert_int_equal(st.nversions, 2);
	assert_int_equal(catalog_pin(f->c, 5, &err), SHMA_ENOTKEPT);
	catalog_unpin(f->c, 5); /* unpinning what is not pinned does nothing */
	catalog_unpin(f->c, 123);

	/* a reused slot: the pages not written read zeros, not old data */
	b = cb_new(f, catalog_head(f->c));
	cb_pages(b, "a", 2, 1, 1, 0x42);
	r = commit_ok(f, b);
	EXPECT_BLOCK(f, "a", r, 2, 0, 0x42, 0, 0);
	assert_int_equal(stats(f).nslots, 3);
}

/* retention.seconds 0 "keeps by count alone" (docs/CONFIG.md), and a
 * revision is kept by age only while younger than keep_ms: with a clock that
 * stands still, keep_revisions = 1 keeps just the head. */
static void test_retention_zero_ms_keeps_by_count_alone(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t r = 0;

	f->now = 5000;
	f->step_ms = 0;
	fx_open(f, 1, 0, POOL, &store_memory);
	r = create_arr(f, "a", BS, BS);
	for (int i = 0; i < 3; i++) {
		b = cb_new(f, r);
		cb_block(b, "a", 0, (unsigned char)(i + 1));
		r = commit_ok(f, b);
	}
	catalog_gc(f->c, 5000);
	assert_int_equal(catalog_oldest_kept(f->c), r);
	assert_int_equal(stats(f).nslots, 1);
	assert_int_equal(catalog_pin(f->c, r - 1, &err), SHMA_ENOTKEPT);
}

/* A revision committed exactly keep_ms ago is no longer "younger than
 * keep_ms". */
static void test_retention_age_is_strict(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t r1, r2, r3;

	f->now = 10000;
	fx_open(f, 1, 1000, POOL, &store_memory);
	r1 = create_arr(f, "a", BS, BS); /* at 10000 */
	f->now = 10000;
	b = cb_new(f, r1);
	cb_block(b, "a", 0, 1);
	r2 = commit_ok(f, b); /* at 10000 */
	f->now = 10500;
	b = cb_new(f, r2);
	cb_block(b, "a", 0, 2);
	r3 = commit_ok(f, b); /* at 10500 */
	catalog_gc(f->c, 10999);
	assert_int_equal(catalog_oldest_kept(f->c), 0); /* 999 ms old: kept */
	assert_true(r1 < r2);
	catalog_gc(f->c, 11000);
	assert_int_equal(catalog_oldest_kept(f->c), r3); /* 1000 ms old: not kept */
	assert_int_equal(catalog_pin(f->c, r2, &err), SHMA_ENOTKEPT);
	assert_int_equal(stats(f).nslots, 1);
}

static void test_retention_by_age(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cb *b;
	uint64_t r1, r2, r3, r4, r5;

	f->now = 0;
	fx_open(f, 1, 1000, POOL, &store_memory);
	f->now = 0;
	r1 = create_arr(f, "a", BS, BS);
	f->now = 100;
	b = cb_new(f, r1);
	cb_block(b, "a", 0, 2);
	r2 = commit_ok(f, b);
	f->now = 200;
	b = cb_new(f, r2);
	cb_block(b, "a", 0, 3);
	r3 = commit_ok(f, b);
	f->now = 900;
	b = cb_new(f, r3);
	cb_block(b, "a", 0, 4);
	r4 = commit_ok(f, b);
	f->now = 1500;
	b = cb_new(f, r4);
	cb_block(b, "a", 0, 5);
	r5 = commit_ok(f, b);
	assert_int_equal(stats(f).nslots, 4);

	/* at 1500: revisions 4 (600 ms old) and 5 are kept, 2 and 3 are not */
	catalog_gc(f->c, 1500);
	assert_int_equal(catalog_oldest_kept(f->c), r4);
	assert_int_equal(stats(f).nslots, 2);
	assert_int_equal(stats(f).nversions, 2);
	EXPECT_BLOCK(f, "a", r4, 0, 4, 4, 4, 4);
	EXPECT_BLOCK(f, "a", r5, 0, 5, 5, 5, 5);
	assert_int_equal(catalog_pin(f->c, r3, &err), SHMA_ENOTKEPT);
	assert_non_null(strstr(err.msg, "retention"));
	pin_ok(f, r4);
	catalog_unpin(f->c, r4);

	/* time passes without commits: revision 4 ages out */
	catalog_gc(f->c, 1800);
	assert_int_equal(stats(f).nslots, 2);
	catalog_gc(f->c, 1950);
	assert_int_equal(catalog_oldest_kept(f->c), r5);
	assert_int_equal(stats(f).nslots, 1);
	assert_int_equal(catalog_pin(f->c, r4, &err), SHMA_ENOTKEPT);
	/* the clock never goes back */
	catalog_gc(f->c, 10);
	assert_int_equal(catalog_oldest_kept(f->c), r5);

	/* a pin taken while a revision is young outlives its age */
	f->now = 2000;
	b = cb_new(f, r5);
	cb_block(b, "a", 0, 6);
	r1 = commit_ok(f, b);
	pin_ok(f, r5);
	catalog_gc(f->c, 5000);
	assert_int_equal(catalog_oldest_kept(f->c), r1);
	EXPECT_BLOCK(f, "a", r5, 0, 5, 5, 5, 5);
	assert_int_equal(stats(f).nslots, 2);
	catalog_unpin(f->c, r5);
	catalog_gc(f->c, 5001);
	assert_int_equal(stats(f).nslots, 1);
}

/* ---- delete --------------------------------------------------------------- */

static void test_delete(void **state)
{
	struct fx *f = *state;
	struct cat_err err;
	struct cat_array *old, *cur;
	struct cb *b;
	uint64_t old_id, cur_id, r1, rw, rd, rc, r;

	f->step_ms = 1;
	fx_open(f, 1, 0, POOL, &store_memory);
	assert_int_equal(stats(f).pool_used, 0);
	r1 = create_arr(f, "a", 4 * BS, BS);
	old = catalog_find(f->c, "a", r1);
	old_id = old->id;
	b = cb_new(f, r1);
	cb_block(b, "a", 0, 0x51);
	cb_block(b, "a", 1, 0x52);
	rw = commit_ok(f, b);
	pin_ok(f, rw);

	rd = delete_arr(f, "a");
	assert_int_equal(rd, rw + 1);
	assert_int_equal(old->deleted, rd);
	assert_null(catalog_find(f->c, "a", rd));
	assert_ptr_equal(catalog_find(f->c, "a", rw), old);
	EXPECT_BLOCK(f, "a", rw, 0, 0x51, 0x51, 0x51, 0x51);
	assert_int_equal(stats(f).narrays, 0);
	assert_int_equal(stats(f).nincarnations, 1);
	assert_int_equal(catalog_delete(f->c, "a", tick(f), &r, &err), -ENOENT);
	assert_int_equal(err.code, -ENOENT);
	assert_int_equal(catalog_delete(f->c, "never", tick(f), &r, &err), -ENOENT);
	assert_int_equal(catalog_head(f->c), rd);

	/* pinned: GC keeps the deleted incarnation */
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).nincarnations, 1);
	assert_int_equal(stats(f).nslots, 2);
	EXPECT_BLOCK(f, "a", rw, 1, 0x52, 0x52, 0x52, 0x52);

	/* created again: a new incarnation, empty */
	rc = create_arr(f, "a", 2 * BS, BS);
	cur = catalog_find(f->c, "a", rc);
	assert_non_null(cur);
	assert_true(cur != old);
	assert_true(cur->id != old_id);
	cur_id = cur->id;
	assert_int_equal(catalog_meta_at(cur, rc)->nbytes, 2 * BS);
	assert_true(catalog_slot_at(cur, 0, rc) == CAT_HOLE);
	assert_ptr_equal(catalog_find(f->c, "a", rw), old);
	assert_null(catalog_find(f->c, "a", rd)); /* between the two */
	b = cb_new(f, rc);
	cb_block(b, "a", 0, 0x61);
	r = commit_ok(f, b);
	EXPECT_BLOCK(f, "a", r, 0, 0x61, 0x61, 0x61, 0x61);
	EXPECT_BLOCK(f, "a", rw, 0, 0x51, 0x51, 0x51, 0x51);
	assert_int_equal(stats(f).nincarnations, 2);
	assert_int_equal(stats(f).narrays, 1);

	/* unpinned: the old incarnation and its slots go */
	catalog_unpin(f->c, rw);
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).nincarnations, 1);
	assert_int_equal(stats(f).nslots, 1);
	assert_int_equal(stats(f).pool_used, BS);
	assert_null(catalog_find(f->c, "a", rw));
	assert_ptr_equal(catalog_find(f->c, "a", catalog_head(f->c)), cur);
	EXPECT_BLOCK(f, "a", r, 0, 0x61, 0x61, 0x61, 0x61);

	/* and the new one too, once deleted */
	delete_arr(f, "a");
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).nincarnations, 0);
	assert_int_equal(stats(f).nslots, 0);
	assert_int_equal(stats(f).pool_used, 0);
	assert_int_equal(stats(f).nversions, 0);
	assert_null(catalog_find(f->c, "a", catalog_head(f->c)));
	/* the name is free again */
	r = create_arr(f, "a", BS, BS);
	assert_true(catalog_find(f->c, "a", r)->id > cur_id);
}

/* Several dead incarnations of one name, and of neighbouring names, all
 * freed in one GC. */
static void test_delete_many_incarnations(void **state)
{
	struct fx *f = *state;
	static const char *const names[] = { "m", "k", "z", "a" };
	struct cb *b;
	uint64_t r;

	f->step_ms = 1;
	fx_open(f, 1, 0, POOL, &store_memory);
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
			r = create_arr(f, names[i], BS, BS);
			b = cb_new(f, r);
			cb_block(b, names[i], 0, (unsigned char)(round + 1));
			commit_ok(f, b);
			if (round < 2 || i % 2)
				delete_arr(f, names[i]);
		}
	assert_int_equal(stats(f).nincarnations, 12);
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).nincarnations, 2); /* "m" and "z" of the last round */
	assert_int_equal(stats(f).nslots, 2);
	EXPECT_PAGE(f, "m", catalog_head(f->c), 0, 0, 3);
	EXPECT_PAGE(f, "z", catalog_head(f->c), 0, 0, 3);
	assert_null(catalog_find(f->c, "k", catalog_head(f->c)));
	assert_null(catalog_find(f->c, "a", catalog_head(f->c)));
}

/* ---- listing -------------------------------------------------------------- */

static void test_changes_and_blocks_at(void **state)
{
	struct fx *f = *state;
	struct blklist l;
	struct cb *b;
	uint64_t r0, r1, r2, r3, r4;

	fx_open(f, 100, 0, POOL, &store_memory);
	r0 = create_arr(f, "a", 4 * BS, BS);
	b = cb_new(f, r0);
	cb_block(b, "a", 0, 1);
	cb_block(b, "a", 1, 1);
	cb_block(b, "a", 2, 1);
	r1 = commit_ok(f, b);
	b = cb_new(f, r1);
	cb_pages(b, "a", 1, 0, 1, 2);
	r2 = commit_ok(f, b);
	b = cb_new(f, r2);
	cb_block(b, "a", 3, 3);
	r3 = commit_ok(f, b);

	l = changes(f, "a", r0, r1);
	EXPECT_BLOCKS(&l, 0, 1, 2);
	l = changes(f, "a", r1, r2);
	EXPECT_BLOCKS(&l, 1);
	assert_int_equal(l.slot[0], slot_at(f, "a", 1, r2));
	l = changes(f, "a", r2, r3);
	EXPECT_BLOCKS(&l, 3);
	l = changes(f, "a", r1, r3);
	EXPECT_BLOCKS(&l, 1, 3);
	l = changes(f, "a", r3, r3);
	assert_int_equal(l.n, 0);
	l = changes(f, "a", r3, r1); /* backwards: the slots of r1 */
	EXPECT_BLOCKS(&l, 1, 3);
	for (size_t i = 0; i < l.n; i++)
		assert_true(l.slot[i] == (l.blk[i] == 3 ? CAT_HOLE : slot_at(f, "a", 1, r1)));

	l = blocks_at(f, "a", r0);
	assert_int_equal(l.n, 0);
	l = blocks_at(f, "a", r2);
	EXPECT_BLOCKS(&l, 0, 1, 2);
	for (size_t i = 0; i < l.n; i++)
		assert_int_equal(l.slot[i], slot_at(f, "a", l.blk[i], r2));
	l = blocks_at(f, "a", r3);
	EXPECT_BLOCKS(&l, 0, 1, 2, 3);

	/* a shrink: the blocks cut off change to holes */
	b = cb_new(f, r3);
	cb_resize(b, "a", 2 * BS);
	r4 = commit_ok(f, b);
	l = changes(f, "a", r3, r4);
	EXPECT_BLOCKS(&l, 2, 3);
	assert_true(l.slot[0] == CAT_HOLE && l.slot[1] == CAT_HOLE);
	l = blocks_at(f, "a", r4);
	EXPECT_BLOCKS(&l, 0, 1);
	l = changes(f, "a", r0, r4);
	EXPECT_BLOCKS(&l, 0, 1);
}

struct names {
	size_t n;
	char name[8][CAT_NAME_MAX + 1];
};

static void collect_name(struct cat_array *a, void *arg)
{
	struct names *ns = arg;

	assert_true(ns->n < ARRAY_SIZE(ns->name));
	snprintf(ns->name[ns->n++], sizeof(ns->name[0]), "%s", a->name);
}

static void test_foreach(void **state)
{
	struct fx *f = *state;
	struct names ns;
	uint64_t r2;

	fx_open(f, 100, 0, POOL, &store_memory);
	create_arr(f, "b", BS, BS);
	r2 = create_arr(f, "a/x", BS, BS);
	create_arr(f, "a", BS, BS);
	create_arr(f, "c", BS, BS);
	delete_arr(f, "b");
	memset(&ns, 0, sizeof(ns));
	catalog_foreach(f->c, catalog_head(f->c), collect_name, &ns);
	assert_int_equal(ns.n, 3);
	assert_string_equal(ns.name[0], "a");
	assert_string_equal(ns.name[1], "a/x");
	assert_string_equal(ns.name[2], "c");
	memset(&ns, 0, sizeof(ns));
	catalog_foreach(f->c, r2, collect_name, &ns);
	assert_int_equal(ns.n, 2);
	assert_string_equal(ns.name[0], "a/x");
	assert_string_equal(ns.name[1], "b");
	memset(&ns, 0, sizeof(ns));
	catalog_foreach(f->c, 0, collect_name, &ns);
	assert_int_equal(ns.n, 0);
}

/* ---- leaks ---------------------------------------------------------------- */

/* Many create / commit / resize / delete cycles, with pins coming and going:
 * once everything is deleted, unpinned and collected, nothing is left. */
static void test_cycles_leave_nothing(void **state)
{
	struct fx *f = *state;
	struct cat_stats st;
	uint64_t pinned[4] = { 0 };
	char names[5][16];
	struct cb *b;

	f->step_ms = 1;
	fx_open(f, 1, 0, POOL, &store_memory);
	for (int i = 0; i < 5; i++)
		snprintf(names[i], sizeof(names[i]), "cyc/%d", i);
	for (int i = 0; i < 200; i++) {
		const char *name = names[i % 5];
		uint64_t head = catalog_head(f->c);
		struct cat_array *a = catalog_find(f->c, name, head);

		uint64_t nbytes, nblocks;

		if (!a) {
			create_arr(f, name, 3 * BS + 100 * (uint64_t)(i % 7), BS);
			head = catalog_head(f->c);
			a = catalog_find(f->c, name, head);
		}
		nbytes = catalog_meta_at(a, head)->nbytes;
		if (i % 6 == 0)
			nbytes = 5 * BS + 7;
		else if (i % 6 == 3)
			nbytes = BS + 4096 * (uint64_t)(i % 4);
		nblocks = (nbytes + BS - 1) / BS;
		b = cb_new(f, head);
		if ((uint64_t)i % 3 < nblocks)
			cb_block(b, name, (uint64_t)i % 3, (unsigned char)i);
		if (i % 4 == 0 && nblocks > 3)
			cb_pages(b, name, 3, 0, 1, (unsigned char)i);
		if (i % 6 == 0 || i % 6 == 3)
			cb_resize(b, name, nbytes);
		head = commit_ok(f, b);
		if (i % 3 == 0) {
			b = cb_new(f, head);
			cb_pages(b, name, 0, 1, 2, (unsigned char)(i + 1));
			head = commit_ok(f, b);
		}
		/* a stale commit now and then: conflicts leave nothing behind */
		if (i % 5 == 1 && head > 2) {
			struct cat_result res;
			struct cat_err err;

			b = cb_new(f, head - 1);
			cb_block(b, name, (uint64_t)i % 3, 0xee);
			if (cb_commit(f, b, &res, &err) == 0)
				catalog_result_free(&res);
		}
		if (i % 7 == 0) {
			catalog_unpin(f->c, pinned[i % 4]);
			pinned[i % 4] = 0;
			pin_ok(f, catalog_head(f->c));
			pinned[i % 4] = catalog_head(f->c);
		}
		if (i % 2)
			delete_arr(f, name);
		if (i % 3 == 0)
			catalog_gc(f->c, tick(f));
	}
	for (int i = 0; i < 5; i++)
		if (catalog_find(f->c, names[i], catalog_head(f->c)))
			delete_arr(f, names[i]);
	for (int i = 0; i < 4; i++)
		if (pinned[i])
			catalog_unpin(f->c, pinned[i]);
	catalog_gc(f->c, tick(f));
	st = stats(f);
	assert_int_equal(st.npins, 0);
	assert_int_equal(st.narrays, 0);
	assert_int_equal(st.nincarnations, 0);
	assert_int_equal(st.nversions, 0);
	assert_int_equal(st.nslots, 0);
	assert_int_equal(st.pool_used, 0);
}

/* ---- spare slots ------------------------------------------------------------ */

/* A block's freed version becomes its spare and its next commit writes
 * there; spares are not counted as used and never make the pool touch new
 * memory. */
static void test_spare_reused(void **state)
{
	struct fx *f = *state;
	uint64_t rev, s1, s2;
	struct cb *b;

	fx_open(f, 1, 0, 8 * BS, &store_memory);
	rev = create_arr(f, "a", 4 * BS, BS);
	b = cb_new(f, rev);
	cb_block(b, "a", 0, 1);
	rev = commit_ok(f, b);
	s1 = slot_at(f, "a", 0, rev);
	b = cb_new(f, rev);
	cb_pages(b, "a", 0, 1, 1, 2);
	rev = commit_ok(f, b);
	s2 = slot_at(f, "a", 0, rev);
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).pool_spare, BS); /* s1, holding the block at 1, 1, 1, 1 */
	assert_int_equal(stats(f).pool_used, BS);
	assert_int_equal(stats(f).nslots, 1);
	b = cb_new(f, rev);
	cb_pages(b, "a", 0, 3, 1, 3);
	rev = commit_ok(f, b);
	assert_int_equal(slot_at(f, "a", 0, rev), s1);
	assert_int_equal(stats(f).pool_spare, 0);
	EXPECT_BLOCK(f, "a", rev, 0, 1, 2, 1, 3); /* page 1 brought up to date */
	for (int i = 0; i < 50; i++) {
		catalog_gc(f->c, tick(f));
		b = cb_new(f, rev);
		cb_pages(b, "a", 0, (uint32_t)i % PPB, 1, (unsigned char)(i + 10));
		rev = commit_ok(f, b);
	}
	assert_true(slot_at(f, "a", 0, rev) == s1 || slot_at(f, "a", 0, rev) == s2);
	assert_true(f->pool.touched <= 2 * BS); /* as without spares */

	/* a commit that needs the room takes the spares back */
	catalog_gc(f->c, tick(f));
	assert_true(stats(f).pool_spare > 0);
	b = cb_new(f, rev);
	for (uint32_t blk = 1; blk < 4; blk++)
		cb_block(b, "a", blk, 0x77);
	rev = commit_ok(f, b);
	rev = create_arr(f, "b", 4 * BS, BS);
	b = cb_new(f, rev);
	for (uint32_t blk = 0; blk < 4; blk++)
		cb_block(b, "b", blk, 0x88);
	rev = commit_ok(f, b);
	assert_int_equal(stats(f).pool_used, 8 * BS);
	assert_int_equal(stats(f).pool_spare, 0);
	EXPECT_BLOCK(f, "a", rev, 3, 0x77, 0x77, 0x77, 0x77);
	EXPECT_BLOCK(f, "b", rev, 3, 0x88, 0x88, 0x88, 0x88);
}

/* A version freed with more than 64 newer versions after it is no spare:
 * too far behind, and too long a chain to read for every free. */
static void test_spare_far_behind(void **state)
{
	struct fx *f = *state;
	uint64_t rev;
	struct cb *b;

	fx_open(f, 70, 0, POOL, &store_memory);
	rev = create_arr(f, "a", 4 * BS, BS);
	for (int i = 0; i < 80; i++) {
		b = cb_new(f, rev);
		cb_pages(b, "a", 0, (uint32_t)i % PPB, 1, (unsigned char)(i + 1));
		rev = commit_ok(f, b);
		close(b->cm.data_fd);
		b->cm.data_fd = -1;
		catalog_gc(f->c, tick(f));
	}
	assert_true(stats(f).nversions < 80); /* some were freed */
	assert_int_equal(stats(f).pool_spare, 0);
	EXPECT_BLOCK(f, "a", rev, 0, 77, 78, 79, 80);
}

/* Within their budget, spares stay and new blocks take untouched memory. */
static void test_spare_budget(void **state)
{
	struct fx *f = *state;
	uint64_t rev, touched, spare;
	struct cb *b;

	fx_open(f, 1, 0, POOL, &store_memory); /* budget: 1 MiB, 64 blocks */
	rev = create_arr(f, "a", 4 * BS, BS);
	for (int i = 0; i < 3; i++) {
		b = cb_new(f, rev);
		cb_pages(b, "a", 0, (uint32_t)i, 1, (unsigned char)(i + 1));
		rev = commit_ok(f, b);
		catalog_gc(f->c, tick(f));
	}
	spare = stats(f).pool_spare;
	assert_true(spare > 0);
	touched = f->pool.touched;
	b = cb_new(f, rev);
	cb_block(b, "a", 1, 9);
	rev = commit_ok(f, b);
	assert_int_equal(stats(f).pool_spare, spare);
	assert_int_equal(f->pool.touched, touched + BS);
	EXPECT_BLOCK(f, "a", rev, 0, 1, 2, 3, 0);
	EXPECT_BLOCK(f, "a", rev, 1, 9, 9, 9, 9);
}

/* Beyond their budget, spares do not make the pool touch memory it did not
 * use before: a new block takes the oldest spare's memory before an
 * untouched gap, and the part of a bigger spare it does not need goes
 * back. */
static void test_spare_memory(void **state)
{
	struct fx *f = *state;
	uint64_t rev, touched;
	struct cb *b;

	fx_open(f, 1, 0, 64 * BS, &store_memory); /* spare budget: a 64th, 1 block */
	create_arr(f, "a", 4 * BS, BS);
	rev = create_arr(f, "b", 4 * 4 * BS, 4 * BS);
	b = cb_new(f, rev);
	cb_block(b, "a", 0, 1);	       /* slot 0 */
	cb_pages(b, "b", 0, 0, 1, 2); /* slot 4 BS: a gap of 3 BS stays below */
	rev = commit_ok(f, b);
	b = cb_new(f, rev);
	cb_pages(b, "a", 0, 1, 1, 3); /* slot BS */
	rev = commit_ok(f, b);
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).pool_spare, BS); /* a's slot 0 */
	touched = f->pool.touched;
	rev = create_arr(f, "c", 4 * BS, BS);
	b = cb_new(f, rev);
	cb_block(b, "c", 0, 4);
	rev = commit_ok(f, b);
	assert_int_equal(slot_at(f, "c", 0, rev), 0); /* the spare's memory */
	assert_int_equal(f->pool.touched, touched);
	assert_int_equal(stats(f).pool_spare, 0);
	EXPECT_BLOCK(f, "c", rev, 0, 4, 4, 4, 4);

	/* a bigger spare gives a smaller block what it needs (the rest goes
	 * back); the next block takes the lowest free memory, as it would
	 * without spares */
	b = cb_new(f, rev);
	cb_pages(b, "b", 0, 1, 1, 5);
	rev = commit_ok(f, b);
	catalog_gc(f->c, tick(f));
	assert_int_equal(stats(f).pool_spare, 4 * BS);
	touched = f->pool.touched;
	b = cb_new(f, rev);
	cb_block(b, "c", 1, 6);
	cb_block(b, "c", 2, 7);
	rev = commit_ok(f, b);
	assert_int_equal(slot_at(f, "c", 1, rev), 4 * BS); /* b's old slot */
	assert_int_equal(stats(f).pool_spare, 0);
	assert_true(f->pool.touched <= touched + BS);
	EXPECT_BLOCK(f, "c", rev, 1, 6, 6, 6, 6);
	EXPECT_BLOCK(f, "c", rev, 2, 7, 7, 7, 7);
	EXPECT_BLOCK(f, "b", rev, 0, 2, 5, 0, 0);

	/* a deleted array keeps none */
	b = cb_new(f, rev);
	cb_pages(b, "a", 0, 2, 1, 8);
	rev = commit_ok(f, b);
	catalog_gc(f->c, tick(f));
	assert_true(stats(f).pool_spare > 0);
	delete_arr(f, "a");
	delete_arr(f, "b");
	delete_arr(f, "c");
	assert_int_equal(stats(f).pool_spare, 0);
}

/* Random commits, resizes, pins, batches (kept or undone) and GC on two
 * arrays, against a model: whatever spares the blocks get, every revision
 * still pinned reads what it read when it was made. */
#define RM_ARRS 2
#define RM_BLKS 6
#define RM_PINS 3

struct rm_state {
	uint64_t nbytes[RM_ARRS];
	unsigned char page[RM_ARRS][RM_BLKS][PPB];
};

static void rm_check(struct fx *f, uint64_t rev, const struct rm_state *m)
{
	static const char *const names[RM_ARRS] = { "r0", "r1" };

	for (int i = 0; i < RM_ARRS; i++)
		for (uint64_t blk = 0; blk < RM_BLKS; blk++)
			for (uint64_t pg = 0; pg < PPB; pg++)
				if ((blk * PPB + pg) * PG < m->nbytes[i])
					EXPECT_PAGE(f, names[i], rev, blk, pg, m->page[i][blk][pg]);
}

static void test_spares_random(void **state)
{
	static const char *const names[RM_ARRS] = { "r0", "r1" };
	struct fx *f = *state;
	struct rm_state cur = { 0 }, saved, pinned[RM_PINS];
	uint64_t pins[RM_PINS] = { 0 }, rev = 0;
	unsigned seed = 12345, max_spare = 0, undone = 0;
	bool batch = false, touched[RM_ARRS];

	fx_open(f, 2, 0, POOL, &store_memory);
	for (int i = 0; i < RM_ARRS; i++) {
		rev = create_arr(f, names[i], RM_BLKS * BS, BS);
		cur.nbytes[i] = RM_BLKS * BS;
	}
	for (int step = 0; step < 1500; step++) {
		unsigned r = (unsigned)rand_r(&seed);
		int ai = (int)(r % RM_ARRS);
		struct cb *b;
		uint64_t nblocks, nb;

		if (!batch && r % 7 == 0) { /* a batch of the next few commits */
			catalog_batch_begin(f->c);
			saved = cur;
			batch = true;
			memset(touched, 0, sizeof(touched));
		}
		/* as in the broker, a batch changes an array once: nobody sees
		 * its revisions, so nothing is based on them */
		if (batch && touched[ai])
			ai = (ai + 1) % RM_ARRS;
		if (batch && touched[ai]) {
			catalog_fill_start(f->c);
			catalog_batch_end(f->c, true);
			batch = false;
		}
		touched[ai] = true;
		b = cb_new(f, rev);
		nb = cur.nbytes[ai];
		if (r % 11 == 0) /* resize to whole pages: 2 to 6 blocks */
			nb = (2 * PPB + (uint64_t)rand_r(&seed) % (4 * PPB + 1)) * PG;
		nblocks = (nb + BS - 1) / BS;
		for (uint64_t blk = 0; blk < nblocks; blk++) {
			uint32_t first = (uint32_t)rand_r(&seed) % PPB;
			uint32_t count = 1 + (uint32_t)rand_r(&seed) % (PPB - first);
			unsigned char val = (unsigned char)rand_r(&seed);

			if (rand_r(&seed) % 3)
				continue;
			cb_pages(b, names[ai], blk, first, count, val);
			for (uint32_t pg = first; pg < first + count; pg++)
				cur.page[ai][blk][pg] = val;
		}
		if (nb != cur.nbytes[ai])
			cb_resize(b, names[ai], nb);
		cur.nbytes[ai] = nb;
		for (uint64_t pg = nb / PG; pg < RM_BLKS * PPB; pg++)
			cur.page[ai][pg / PPB][pg % PPB] = 0; /* past the end: zeros */
		if (!b->cm.narr) /* a commit changes something */
			cb_pages(b, names[ai], 0, 0, 1, cur.page[ai][0][0]);
		rev = commit_ok(f, b);
		close(b->cm.data_fd); /* the catalog read it */
		b->cm.data_fd = -1;
		if (batch && r % 3 == 0) { /* the batch ends: kept or undone */
			bool keep = r % 4 != 0;

			catalog_fill_start(f->c);
			catalog_batch_end(f->c, keep);
			batch = false;
			if (!keep) {
				cur = saved;
				rev = catalog_head(f->c);
				undone++;
			}
		}
		if (!batch) {
			int k = (int)((r >> 8) % RM_PINS);

			if (pins[k]) {
				rm_check(f, pins[k], &pinned[k]);
				catalog_unpin(f->c, pins[k]);
				pins[k] = 0;
			}
			if (r & 0x10000) {
				pin_ok(f, rev);
				pins[k] = rev;
				pinned[k] = cur;
			}
			catalog_gc(f->c, tick(f));
			if (stats(f).pool_spare / BS > max_spare)
				max_spare = (unsigned)(stats(f).pool_spare / BS);
			rm_check(f, rev, &cur); /* (in a batch, copies may wait) */
		}
	}
	if (batch)
		catalog_batch_end(f->c, true);
	for (int k = 0; k < RM_PINS; k++)
		if (pins[k])
			rm_check(f, pins[k], &pinned[k]);
	assert_true(max_spare > 0);
	assert_true(undone > 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_name_ok),
		T(test_create),
		T(test_commit_basic),
		T(test_commit_two_arrays),
		T(test_conflict_same_block),
		T(test_conflict_many_blocks),
		T(test_no_conflict_different_blocks),
		T(test_conflict_resize_first),
		T(test_conflict_change_then_shrink),
		T(test_conflict_change_then_grow),
		T(test_conflict_deleted),
		T(test_store_failure_changes_nothing),
		T(test_batch_undo),
		T(test_batch_deferred_fills),
		T(test_atomic_bad_data),
		T(test_atomic_pool_full),
		T(test_validation),
		T(test_resize_grow),
		T(test_resize_shrink),
		T(test_resize_shrink_grow_zeroes),
		T(test_resize_meta_kept_while_pinned),
		T(test_retention_by_count),
		T(test_retention_zero_ms_keeps_by_count_alone),
		T(test_retention_age_is_strict),
		T(test_retention_by_age),
		T(test_delete),
		T(test_delete_many_incarnations),
		T(test_changes_and_blocks_at),
		T(test_foreach),
		T(test_cycles_leave_nothing),
		T(test_spare_reused),
		T(test_spare_far_behind),
		T(test_spare_budget),
		T(test_spare_memory),
		T(test_spares_random),
	};

	return cmocka_run_group_tests_name("catalog", tests, NULL, NULL);
}
