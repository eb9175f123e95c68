/* catalog.c - arrays, revisions, block tables, commit and garbage
 * collection (see catalog.h for the model and the freeing rule).
 */
#include "catalog.h"
#include "names.h"
#include "shma.h"
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

struct pin {
	uint64_t rev, n;
};

static void fills_finish(struct catalog *c);

/* len bytes into pool offset dst from offset src, or zeros (src CAT_HOLE). */
struct fill_item {
	uint64_t dst, src, len;
};

struct revtime {
	uint64_t rev, ms;
};

/* A block's spare slot (catalog.h): it holds block blk of a as of revision
 * rev.  On the catalog's list, oldest first. */
struct cat_spare {
	struct cat_array *a;
	uint64_t blk, slot, rev;
	/* chunks in which the block's newest version may differ from it:
	 * those changed by every version after it (spare_put), and by every
	 * commit since (spares_commit) */
	uint64_t dirty[CAT_CHUNK_WORDS];
	struct cat_spare *older, *newer;
	struct cat_spare *next; /* the block's next older spare */
};

/* One spare per block is enough when its old versions are freed as fast as
 * it is committed to; the second absorbs the commits that come just before
 * the next old version is freed. */
#define SPARES_PER_BLOCK 2
#define SPARE_MAX_BEHIND 64

/* A superseded version waiting to be freed: a block version or a metadata
 * version of array a, seen by revisions [from, until). */
struct gc_entry {
	struct cat_array *a;
	uint64_t blk;
	struct cat_blkver *v;	  /* or NULL */
	struct cat_metaver *mv; /* or NULL */
	uint64_t from, until;
};

struct catalog {
	struct pool *pool;
	struct store *store;
	struct cat_retention ret;
	uint64_t now_ms;
	uint64_t head;
	uint64_t next_id;

	struct cat_array **names; /* newest incarnation per name, sorted by name */
	size_t nnames, capnames;
	uint64_t nlive;		/* incarnations live at head */
	uint64_t nincarnations; /* all, live or waiting to be freed */

	struct pin *pins;
	size_t npins, cappins;

	struct revtime *times; /* commit time of recent revisions, ascending */
	size_t ntimes, captimes;

	struct gc_entry *gc;
	size_t ngc, capgc;

	uint64_t nversions, commits, conflicts;

	struct cat_spare *spare_oldest, *spare_newest;
	uint64_t nspares, spare_bytes;

	/* revisions below floor are not kept whatever the retention says: the
	 * store kept nothing older (set by catalog_restore_done) */
	uint64_t floor;

	/* an open batch (catalog_batch_begin): changes since batch_head may
	 * still be undone, so nothing is freed meanwhile */
	bool batch;
	uint64_t batch_head, batch_commits;
	size_t batch_ngc, batch_ntimes;
	uint64_t compacted; /* the last oldest-kept revision told to the store */

	/* copies of unchanged pages into the batch's new slots, made while
	 * the store syncs (catalog_fill_start) and finished by
	 * catalog_batch_end: nobody reads those slots before */
	struct fill_item *fills;
	size_t nfills, capfills;
	atomic_size_t fill_next;
	pthread_t fill_th[3];
	size_t nfill_th;
	long ncpu; /* online CPUs, read once: sysconf reads a sysfs file */
};

static void err_set(struct cat_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void err_set(struct cat_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	err->array[0] = 0;
	err->nblocks = 0;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

/* Grow a dynamic array *v of *cap elements of size sz to hold n + 1. */
static int grow(void **v, size_t *cap, size_t n, size_t sz)
{
	size_t ncap;
	void *nv;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	nv = realloc(*v, ncap * sz);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = ncap;
	return 0;
}

#define GROW(c, arr, n, cap) grow((void **)&(c)->arr, &(c)->cap, (c)->n, sizeof(*(c)->arr))

/* ---- revisions, retention, pins ------------------------------------------ */

static int note_revision(struct catalog *c, uint64_t rev)
{
	if (GROW(c, times, ntimes, captimes))
		return -ENOMEM;
	c->times[c->ntimes++] = (struct revtime){ rev, c->now_ms };
	return 0;
}

uint64_t catalog_oldest_kept(const struct catalog *c)
{
	uint64_t by_count = c->head + 1 > c->ret.keep_revisions
				    ? c->head + 1 - c->ret.keep_revisions
				    : 0;
	uint64_t by_time = c->head;
	size_t lo = 0, hi = c->ntimes;

	/* the oldest revision committed within the last keep_ms */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (c->times[mid].ms + c->ret.keep_ms <= c->now_ms)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < c->ntimes)
		by_time = c->times[lo].rev;
	by_count = by_count < by_time ? by_count : by_time;
	return by_count > c->floor ? by_count : c->floor;
}

/* Index of the first pin with rev >= r. */
static size_t pin_search(const struct catalog *c, uint64_t r)
{
	size_t lo = 0, hi = c->npins;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (c->pins[mid].rev < r)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Is any revision in [from, to] pinned? */
static bool pinned_between(const struct catalog *c, uint64_t from, uint64_t to)
{
	size_t i = pin_search(c, from);

	return i < c->npins && c->pins[i].rev <= to;
}

int catalog_pin(struct catalog *c, uint64_t rev, struct cat_err *err)
{
	size_t i = pin_search(c, rev);

	if (rev > c->head) {
		err_set(err, -EINVAL, "revision %" PRIu64 " does not exist yet (head is %" PRIu64 ")",
			rev, c->head);
		return err->code;
	}
	if (i < c->npins && c->pins[i].rev == rev) {
		c->pins[i].n++;
		return 0;
	}
	if (rev < catalog_oldest_kept(c)) {
		err_set(err, SHMA_ENOTKEPT,
			"revision %" PRIu64 " is no longer kept: retention keeps the newest %" PRIu64
			" revisions and those younger than %" PRIu64 " ms (oldest kept: %" PRIu64 ")",
			rev, c->ret.keep_revisions, c->ret.keep_ms, catalog_oldest_kept(c));
		return err->code;
	}
	if (GROW(c, pins, npins, cappins)) {
		err_set(err, -ENOMEM, "out of memory");
		return err->code;
	}
	memmove(&c->pins[i + 1], &c->pins[i], (c->npins - i) * sizeof(*c->pins));
	c->pins[i] = (struct pin){ rev, 1 };
	c->npins++;
	return 0;
}

void catalog_unpin(struct catalog *c, uint64_t rev)
{
	size_t i = pin_search(c, rev);

	if (i >= c->npins || c->pins[i].rev != rev)
		return;
	if (--c->pins[i].n == 0) {
		memmove(&c->pins[i], &c->pins[i + 1], (c->npins - i - 1) * sizeof(*c->pins));
		c->npins--;
	}
}

/* ---- names ------------------------------------------------------------- */

bool catalog_name_ok(const char *name, const char **why)
{
	return name_ok(name, why);
}

/* Index of name in c->names, or of where it would go. */
static size_t name_search(const struct catalog *c, const char *name, bool *found)
{
	size_t lo = 0, hi = c->nnames;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d = strcmp(c->names[mid]->name, name);

		if (d == 0) {
			*found = true;
			return mid;
		}
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool visible(const struct cat_array *a, uint64_t rev)
{
	return a->created <= rev && rev < a->deleted;
}

struct cat_array *catalog_find(struct catalog *c, const char *name, uint64_t rev)
{
	bool found;
	size_t i = name_search(c, name, &found);
	struct cat_array *a;

	if (!found)
		return NULL;
	for (a = c->names[i]; a; a = a->prev)
		if (visible(a, rev))
			return a;
	return NULL;
}

const struct cat_meta *catalog_meta_at(const struct cat_array *a, uint64_t rev)
{
	const struct cat_metaver *mv;

	for (mv = a->meta; mv; mv = mv->older)
		if (mv->rev <= rev)
			return &mv->m;
	return NULL;
}

static const struct cat_blkver *version_at(const struct cat_blkver *v, uint64_t rev)
{
	for (; v; v = v->older)
		if (v->rev <= rev)
			return v;
	return NULL;
}

uint64_t catalog_slot_at(const struct cat_array *a, uint64_t blk, uint64_t rev)
{
	const struct cat_blkver *v = version_at(pagemap_get(&a->blocks, blk), rev);

	return v ? v->slot : CAT_HOLE;
}

void catalog_foreach(struct catalog *c, uint64_t rev,
		     void (*fn)(struct cat_array *a, void *arg), void *arg)
{
	for (size_t i = 0; i < c->nnames; i++) {
		struct cat_array *a;

		for (a = c->names[i]; a; a = a->prev)
			if (visible(a, rev)) {
				fn(a, arg);
				break;
			}
	}
}

void catalog_blocks_at(const struct cat_array *a, uint64_t rev,
		       void (*fn)(uint64_t blk, uint64_t slot, void *arg), void *arg)
{
	uint64_t blk;
	void *val;

	for (size_t pos = 0; pagemap_next(&a->blocks, &pos, &blk, &val);) {
		const struct cat_blkver *v = version_at(val, rev);

		if (v && v->slot != CAT_HOLE)
			fn(blk, v->slot, arg);
	}
}

void catalog_changes(const struct cat_array *a, uint64_t from, uint64_t to,
		     void (*fn)(uint64_t blk, uint64_t slot, void *arg), void *arg)
{
	uint64_t blk;
	void *val;

	for (size_t pos = 0; pagemap_next(&a->blocks, &pos, &blk, &val);) {
		const struct cat_blkver *vf = version_at(val, from), *vt = version_at(val, to);
		uint64_t sf = vf ? vf->slot : CAT_HOLE, st = vt ? vt->slot : CAT_HOLE;

		if (sf != st)
			fn(blk, st, arg);
	}
}

/* ---- chunks and spares ----------------------------------------------------- */

static uint64_t chunk_size(uint64_t blksize)
{
	return blksize / CAT_CHUNKS > PAGE_4K ? blksize / CAT_CHUNKS : PAGE_4K;
}

/* Mark the chunks overlapping bytes [from, to) of a block. */
static void chunks_mark(uint64_t *bm, uint64_t blksize, uint64_t from, uint64_t to)
{
	uint64_t cs = chunk_size(blksize);

	for (uint64_t i = from / cs; i * cs < to; i++)
		bm[i / 64] |= UINT64_C(1) << (i % 64);
}

static void chunks_all(uint64_t *bm)
{
	memset(bm, 0xff, CAT_CHUNK_WORDS * sizeof(*bm));
}

static bool chunk_marked(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static void spare_unlink(struct catalog *c, struct cat_spare *s)
{
	struct cat_spare *first = pagemap_get(&s->a->spares, s->blk);

	if (s->older)
		s->older->newer = s->newer;
	else
		c->spare_oldest = s->newer;
	if (s->newer)
		s->newer->older = s->older;
	else
		c->spare_newest = s->older;
	if (first == s) {
		if (s->next)
			pagemap_set(&s->a->spares, s->blk, s->next); /* replaces: cannot fail */
		else
			pagemap_del(&s->a->spares, s->blk);
	} else {
		while (first->next != s)
			first = first->next;
		first->next = s->next;
	}
	c->nspares--;
	c->spare_bytes -= s->a->blksize;
}

/* Give a spare's slot back to the pool. */
static void spare_drop(struct catalog *c, struct cat_spare *s)
{
	spare_unlink(c, s);
	pool_free(c->pool, s->slot, s->a->blksize);
	free(s);
}

/* A freed version's slot (v's: it holds blk as of v's revision) becomes
 * one of the block's spares, unless the block has SPARES_PER_BLOCK newer
 * ones (then it goes back to the pool; an older one makes room), or more
 * than SPARE_MAX_BEHIND newer versions (a long chain: reading it for each
 * freed version would cost too much, and the spare would be far behind).
 * Called while v is still on its chain: its newer versions say what
 * changed. */
static void spare_put(struct catalog *c, struct cat_array *a, uint64_t blk,
		      const struct cat_blkver *v)
{
	struct cat_spare *first, *s, *last = NULL, **pp;
	uint64_t dirty[CAT_CHUNK_WORDS] = { 0 };
	size_t n = 0, behind = 0;

	for (const struct cat_blkver *u = v->newer; u; u = u->newer) {
		if (++behind > SPARE_MAX_BEHIND) {
			pool_free(c->pool, v->slot, a->blksize);
			return;
		}
		for (size_t i = 0; i < CAT_CHUNK_WORDS; i++)
			dirty[i] |= u->changed[i];
	}
	for (s = pagemap_get(&a->spares, blk); s; s = s->next) {
		n++;
		last = s;
	}
	if (n >= SPARES_PER_BLOCK && last->rev < v->rev) {
		spare_drop(c, last);
		n--;
	}
	first = pagemap_get(&a->spares, blk);
	if (a->deleted != CAT_LIVE || n >= SPARES_PER_BLOCK || !(s = malloc(sizeof(*s)))) {
		pool_free(c->pool, v->slot, a->blksize);
		return;
	}
	*s = (struct cat_spare){ .a = a, .blk = blk, .slot = v->slot, .rev = v->rev,
				 .older = c->spare_newest };
	memcpy(s->dirty, dirty, sizeof(dirty));
	if (!first || first->rev < v->rev) { /* the newest: it heads the block's list */
		s->next = first;
		if (pagemap_set(&a->spares, blk, s)) {
			free(s);
			pool_free(c->pool, v->slot, a->blksize);
			return;
		}
	} else {
		for (pp = &first->next; *pp && (*pp)->rev > v->rev; pp = &(*pp)->next)
			;
		s->next = *pp;
		*pp = s;
	}
	if (c->spare_newest)
		c->spare_newest->newer = s;
	else
		c->spare_oldest = s;
	c->spare_newest = s;
	c->nspares++;
	c->spare_bytes += a->blksize;
}

/* A new version v of block blk of a: its spares fall behind by its changes. */
static void spares_commit(struct cat_array *a, uint64_t blk, const struct cat_blkver *v)
{
	for (struct cat_spare *s = pagemap_get(&a->spares, blk); s; s = s->next)
		for (size_t i = 0; i < CAT_CHUNK_WORDS; i++)
			s->dirty[i] |= v->changed[i];
}

/* Spares may keep memory the pool would otherwise have reused, up to this
 * many bytes: a 64th of the pool or an eighth of what is in use, whichever
 * is more.  (Without it, a commit to a block whose spare is not back yet
 * would take another hot block's spare, which then misses in turn.) */
static uint64_t spare_budget(const struct catalog *c)
{
	uint64_t used = pool_used(c->pool) - c->spare_bytes;

	return c->pool->size / 64 > used / 8 ? c->pool->size / 64 : used / 8;
}

/* A slot of size bytes for a new version.  Memory the pool used before
 * comes first: where the allocator would put it, if that memory was used;
 * then untouched memory while the spares are within their budget; else the
 * oldest spare big enough (what it does not need goes back); and when the
 * pool is full, the smaller spares go back too (they may merge). */
static bool slot_alloc(struct catalog *c, uint64_t size, uint64_t *off)
{
	struct cat_spare *s;

	if (!c->spare_oldest)
		return pool_alloc(c->pool, size, off);
	if (pool_alloc_reused(c->pool, size, off))
		return true;
	if (c->spare_bytes + size <= spare_budget(c) && pool_alloc(c->pool, size, off))
		return true;
	for (s = c->spare_oldest; s; s = s->newer)
		if (s->a->blksize >= size) {
			uint64_t slot = s->slot, bs = s->a->blksize;

			spare_unlink(c, s);
			free(s);
			if (bs > size)
				pool_shrink(c->pool, slot, bs, size);
			*off = slot;
			return true;
		}
	while (!pool_alloc(c->pool, size, off)) {
		if (!c->spare_oldest)
			return false;
		spare_drop(c, c->spare_oldest);
	}
	return true;
}

/* Block blk of a gets its newest spare as the new version's slot, if it
 * has one; delta: the chunks that may differ between the spare and the
 * block's current version head, which the commit must copy. */
static bool spare_take(struct catalog *c, struct cat_array *a, uint64_t blk,
		       const struct cat_blkver *head, uint64_t *slot, uint64_t *delta)
{
	struct cat_spare *s = pagemap_get(&a->spares, blk);

	if (!s || !head || head->slot == CAT_HOLE)
		return false;
	memcpy(delta, s->dirty, CAT_CHUNK_WORDS * sizeof(*delta));
	*slot = s->slot;
	spare_unlink(c, s);
	free(s);
	return true;
}

static void spares_drop_array(struct catalog *c, struct cat_array *a)
{
	uint64_t blk;
	void *val;
	size_t pos;

	/* (each drop changes the map: look from its start again) */
	while (pos = 0, pagemap_next(&a->spares, &pos, &blk, &val))
		spare_drop(c, val);
	pagemap_clear(&a->spares);
}

/* ---- lifetime ------------------------------------------------------------ */

int catalog_new(struct pool *pool, struct store *store, const struct cat_retention *ret,
		uint64_t now_ms, struct catalog **out)
{
	struct catalog *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->pool = pool;
	c->store = store;
	c->ret = *ret;
	if (c->ret.keep_revisions == 0)
		c->ret.keep_revisions = 1;
	c->now_ms = now_ms;
	c->next_id = 1;
	c->ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (note_revision(c, 0)) {
		free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

static void array_free(struct catalog *c, struct cat_array *a)
{
	struct cat_metaver *mv, *mvn;
	uint64_t blk;
	void *val;

	for (size_t pos = 0; pagemap_next(&a->blocks, &pos, &blk, &val);) {
		struct cat_blkver *v = val, *older;

		for (; v; v = older) {
			older = v->older;
			if (v->slot != CAT_HOLE)
				pool_free(c->pool, v->slot, a->blksize);
			free(v);
			c->nversions--;
		}
	}
	pagemap_clear(&a->blocks);
	spares_drop_array(c, a);
	for (mv = a->meta; mv; mv = mvn) {
		mvn = mv->older;
		free(mv);
	}
	c->nincarnations--;
	free(a);
}

void catalog_free(struct catalog **cp)
{
	struct catalog *c = *cp;

	if (!c)
		return;
	for (size_t i = 0; i < c->nnames; i++) {
		struct cat_array *a, *prev;

		for (a = c->names[i]; a; a = prev) {
			prev = a->prev;
			array_free(c, a);
		}
	}
	fills_finish(c);
	free(c->fills);
	free(c->names);
	free(c->pins);
	free(c->times);
	free(c->gc);
	free(c);
	*cp = NULL;
}

uint64_t catalog_head(const struct catalog *c)
{
	return c->head;
}

void catalog_stats(const struct catalog *c, struct cat_stats *st)
{
	st->head = c->head;
	st->oldest_kept = catalog_oldest_kept(c);
	st->narrays = c->nlive;
	st->nincarnations = c->nincarnations;
	st->nversions = c->nversions;
	st->nslots = c->pool->nslots - c->nspares;
	st->pool_used = pool_used(c->pool) - c->spare_bytes;
	st->pool_spare = c->spare_bytes;
	st->pool_size = c->pool->size;
	st->npins = 0;
	for (size_t i = 0; i < c->npins; i++)
		st->npins += c->pins[i].n;
	st->commits = c->commits;
	st->conflicts = c->conflicts;
}

/* ---- garbage collection -------------------------------------------------- */

static void gc_free_entry(struct catalog *c, struct gc_entry *e)
{
	if (e->v) {
		struct cat_blkver *v = e->v;

		/* never the newest: it was superseded.  What the newer one
		 * changed now counts from v's older one, if any: it takes v's
		 * changes too (for a later spare_put of that one) */
		if (v->slot != CAT_HOLE)
			spare_put(c, e->a, e->blk, v);
		for (size_t i = 0; v->older && i < CAT_CHUNK_WORDS; i++)
			v->newer->changed[i] |= v->changed[i];
		v->newer->older = v->older;
		if (v->older)
			v->older->newer = v->newer;
		free(v);
		c->nversions--;
		e->a->nversions--;
	} else {
		struct cat_metaver *mv = e->mv;

		mv->newer->older = mv->older;
		if (mv->older)
			mv->older->newer = mv->newer;
		free(mv);
	}
}

/* Unlink incarnation a from its name's list (dropping the name when it was
 * the only one) and free it. */
static void gc_free_array(struct catalog *c, struct cat_array *a)
{
	bool found;
	size_t i = name_search(c, a->name, &found), j;

	if (found) {
		struct cat_array **pp = &c->names[i];

		while (*pp && *pp != a)
			pp = &(*pp)->prev;
		if (*pp)
			*pp = a->prev;
		if (!c->names[i]) {
			memmove(&c->names[i], &c->names[i + 1],
				(c->nnames - i - 1) * sizeof(*c->names));
			c->nnames--;
		}
	}
	/* its superseded versions go with it */
	for (i = j = 0; i < c->ngc; i++)
		if (c->gc[i].a != a)
			c->gc[j++] = c->gc[i];
	c->ngc = j;
	array_free(c, a);
}

void catalog_gc(struct catalog *c, uint64_t now_ms)
{
	uint64_t kept;
	size_t i, j;

	if (now_ms > c->now_ms)
		c->now_ms = now_ms;
	if (c->batch) /* the batch may still be undone: free nothing yet */
		return;
	kept = catalog_oldest_kept(c);
	if (kept > c->compacted && c->store && c->store->ops->compact) {
		c->store->ops->compact(c->store, kept);
		c->compacted = kept;
	}

	for (i = j = 0; i < c->ngc; i++) {
		struct gc_entry *e = &c->gc[i];

		if (e->until <= kept && !pinned_between(c, e->from, e->until - 1))
			gc_free_entry(c, e);
		else
			c->gc[j++] = *e;
	}
	c->ngc = j;

	/* deleted incarnations nobody can see any more */
	for (i = 0; i < c->nnames; i++) {
		struct cat_array *a = c->names[i], *prev;

		for (; a; a = prev) {
			prev = a->prev;
			if (a->deleted != CAT_LIVE && a->deleted <= kept &&
			    !pinned_between(c, a->created, a->deleted - 1)) {
				gc_free_array(c, a);
				/* names[] may have shifted: look at slot i again */
				if (i < c->nnames && c->names[i] != a)
					i--;
				break;
			}
		}
	}

	/* times older than the window are not needed any more (keep one) */
	for (i = 0; i + 1 < c->ntimes && c->times[i].ms + c->ret.keep_ms <= c->now_ms &&
		    c->times[i].rev < kept;
	     i++)
		;
	if (i) {
		memmove(c->times, c->times + i, (c->ntimes - i) * sizeof(*c->times));
		c->ntimes -= i;
	}
}

/* ---- create / delete ----------------------------------------------------- */

/* itemsize * product(shape), false on overflow. */
static bool meta_nbytes(struct cat_meta *m, unsigned itemsize)
{
	uint64_t n = itemsize;

	if (m->ndim > CAT_MAXDIM)
		return false;
	for (unsigned i = 0; i < m->ndim; i++)
		if (!util_mul_ok(n, m->shape[i], &n))
			return false;
	/* block numbers and byte offsets must stay far from overflow */
	if (n > (UINT64_C(1) << 60))
		return false;
	m->nbytes = n;
	return true;
}

static uint64_t nblocks_of(const struct cat_array *a, uint64_t nbytes)
{
	return (nbytes + a->blksize - 1) / a->blksize;
}

static int write_store(struct catalog *c, const struct store_record *rec, struct cat_err *err)
{
	int r = c->store ? c->store->ops->write(c->store, rec) : 0;

	if (r)
		err_set(err, r, "the store could not write revision %" PRIu64 ": %s", rec->rev,
			shma_strerror(r));
	return r;
}

/* Check cr and allocate its incarnation, not yet visible (nnew: arrays this
 * same change creates before it, for the limit). */
static int array_alloc(struct catalog *c, const struct cat_create *cr, uint64_t max_arrays,
		       uint64_t nnew, struct cat_array **out, struct cat_err *err)
{
	struct cat_array *a;
	struct cat_metaver *mv;
	const char *why;

	if (!catalog_name_ok(cr->name, &why)) {
		err_set(err, -EINVAL, "bad array name \"%.64s\": %s", cr->name, why);
		return err->code;
	}
	if (!util_is_pow2(cr->blksize) || cr->blksize < PAGE_4K ||
	    cr->blksize > c->pool->size) {
		err_set(err, -EINVAL,
			"block size %" PRIu64 " must be a power of two, >= 4096 and at most "
			"the pool size (%" PRIu64 ")",
			cr->blksize, c->pool->size);
		return err->code;
	}
	if (c->store && c->store->max_blksize && cr->blksize > c->store->max_blksize) {
		err_set(err, -EINVAL, "block size %" PRIu64 " is larger than the durable store "
			"keeps (at most %" PRIu64 ")", cr->blksize, c->store->max_blksize);
		return err->code;
	}
	if (cr->order != 'C' && cr->order != 'F') {
		err_set(err, -EINVAL, "order must be \"C\" or \"F\"");
		return err->code;
	}
	if (catalog_find(c, cr->name, c->head)) {
		err_set(err, -EEXIST, "array \"%s\" exists", cr->name);
		return err->code;
	}
	if (max_arrays && c->nlive + nnew >= max_arrays) {
		err_set(err, -EUSERS, "too many arrays (limits.arrays: %" PRIu64 ")", max_arrays);
		return err->code;
	}
	a = calloc(1, sizeof(*a));
	mv = calloc(1, sizeof(*mv));
	if (!a || !mv) {
		free(a);
		free(mv);
		err_set(err, -ENOMEM, "out of memory");
		return err->code;
	}
	mv->m = cr->meta;
	if (!meta_nbytes(&mv->m, cr->dtype.size)) {
		free(a);
		free(mv);
		err_set(err, -EINVAL, "shape too large or more than %d dimensions", CAT_MAXDIM);
		return err->code;
	}
	snprintf(a->name, sizeof(a->name), "%s", cr->name);
	a->dtype = cr->dtype;
	a->order = cr->order;
	a->blksize = cr->blksize;
	a->deleted = CAT_LIVE;
	a->meta = mv;
	pagemap_init(&a->blocks);
	pagemap_init(&a->spares);
	*out = a;
	return 0;
}

/* Free an incarnation that never became visible. */
static void array_unalloc(struct cat_array *a)
{
	pagemap_clear(&a->blocks);
	free(a->meta);
	free(a);
}

/* Free an incarnation being restored (not linked; its blocks are empty). */
static void array_unalloc_all(struct cat_array *a)
{
	struct cat_metaver *mv, *older;

	for (mv = a->meta; mv; mv = older) {
		older = mv->older;
		free(mv);
	}
	pagemap_clear(&a->blocks);
	free(a);
}

/* Room in names[] for n more names, so linking cannot fail. */
static int names_reserve(struct catalog *c, size_t n)
{
	struct cat_array **nv;
	size_t ncap;

	if (c->nnames + n <= c->capnames)
		return 0;
	ncap = c->nnames + n + 16;
	nv = realloc(c->names, ncap * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	c->names = nv;
	c->capnames = ncap;
	return 0;
}

/* Make a the newest incarnation of its name (room reserved; i and found
 * from name_search) and count it. */
static void names_push(struct catalog *c, struct cat_array *a, size_t i, bool found)
{
	if (found) {
		a->prev = c->names[i];
		c->names[i] = a;
	} else {
		memmove(&c->names[i + 1], &c->names[i], (c->nnames - i) * sizeof(*c->names));
		c->names[i] = a;
		c->nnames++;
	}
	if (a->deleted == CAT_LIVE)
		c->nlive++;
	c->nincarnations++;
	if (a->id >= c->next_id)
		c->next_id = a->id + 1;
}

/* Make a visible from revision rev (room reserved: cannot fail). */
static void array_link(struct catalog *c, struct cat_array *a, uint64_t rev)
{
	bool found;
	size_t i = name_search(c, a->name, &found);

	if (!a->id)
		a->id = c->next_id;
	a->created = rev;
	a->meta->rev = rev;
	names_push(c, a, i, found);
}

int catalog_create(struct catalog *c, const struct cat_create *cr, uint64_t max_arrays,
		   uint64_t now_ms, uint64_t *rev, struct cat_err *err)
{
	struct store_record rec;
	struct cat_array *a;
	int r;

	if (now_ms > c->now_ms)
		c->now_ms = now_ms;
	r = array_alloc(c, cr, max_arrays, 0, &a, err);
	if (r)
		return r;
	if (names_reserve(c, 1) || note_revision(c, c->head + 1)) {
		array_unalloc(a);
		err_set(err, -ENOMEM, "out of memory");
		return err->code;
	}
	/* the store sees it as it will be */
	a->id = c->next_id;
	a->created = a->meta->rev = c->head + 1;
	rec = (struct store_record){ .kind = STORE_CREATE, .rev = a->created,
				     .time_ms = c->now_ms, .array = a, .pool = c->pool };
	r = write_store(c, &rec, err);
	if (r) {
		c->ntimes--; /* the noted revision did not happen */
		array_unalloc(a);
		return r;
	}
	array_link(c, a, c->head + 1); /* visible from here on */
	c->head = a->created;
	*rev = c->head;
	return 0;
}

int catalog_delete(struct catalog *c, const char *name, uint64_t now_ms, uint64_t *rev,
		   struct cat_err *err)
{
	struct cat_array *a;
	struct store_record rec;
	int r;

	if (now_ms > c->now_ms)
		c->now_ms = now_ms;
	a = catalog_find(c, name, c->head);
	if (!a) {
		err_set(err, -ENOENT, "no array \"%.200s\"", name);
		return err->code;
	}
	if (note_revision(c, c->head + 1)) {
		err_set(err, -ENOMEM, "out of memory");
		return err->code;
	}
	rec = (struct store_record){ .kind = STORE_DELETE, .rev = c->head + 1,
				     .time_ms = c->now_ms, .array = a, .pool = c->pool };
	r = write_store(c, &rec, err);
	if (r) {
		c->ntimes--;
		return r;
	}
	a->deleted = c->head + 1;
	c->nlive--;
	c->head++;
	spares_drop_array(c, a); /* no commit can use them now */
	*rev = c->head;
	return 0;
}

/* ---- commit -------------------------------------------------------------- */

/* Per changed array, the work of one commit. */
struct work_arr {
	struct cat_array *a;
	const struct cat_arrchange *ch;
	bool resize;  /* the shape really changes */
	bool created; /* a is new: linked by publish, freed on failure */
	struct cat_meta meta; /* after the commit */
	uint64_t old_nblocks, new_nblocks;
	/* blocks that get a new version: the client's, plus on shrink the
	 * blocks cut off (-> hole) and a partial last block (tail zeroed) */
	size_t n;
	uint64_t *blks;
	uint64_t *slots;		   /* new slot or CAT_HOLE */
	const struct cat_blkchange **chg; /* the client's change, or NULL */
	/* when the new slot is the block's spare: the chunks to copy from
	 * the current version (others already hold the same bytes) */
	bool *spare;
	uint64_t (*delta)[CAT_CHUNK_WORDS];
};

/* Validate the client's changes to one array and check for conflicts. */
static int check_array(struct catalog *c, const struct cat_commit *cm, struct work_arr *w,
		       uint64_t data_len, size_t *nnew, struct cat_err *err)
{
	const struct cat_arrchange *ch = w->ch;
	struct cat_array *a = catalog_find(c, ch->name, c->head);
	uint64_t ppb, prev_blk = 0;
	size_t nconf = 0;

	if (ch->create) {
		/* created by this commit: the name must be free at the head, and if
		 * another commit took it after base, that is a conflict */
		if (a && a->created > cm->base) {
			err_set(err, SHMA_ECONFLICT, "array \"%.200s\" was created by another commit "
				"after revision %" PRIu64, ch->name, cm->base);
			snprintf(err->array, sizeof(err->array), "%s", ch->name);
			return err->code;
		}
		if (array_alloc(c, &ch->cr, cm->max_arrays, *nnew, &w->a, err))
			return err->code;
		(*nnew)++;
		w->created = true;
		a = w->a;
		w->meta = a->meta->m;
		w->old_nblocks = 0;
		w->new_nblocks = nblocks_of(a, w->meta.nbytes);
		goto check_blocks;
	}
	if (!a) {
		if (catalog_find(c, ch->name, cm->base)) {
			err_set(err, SHMA_ECONFLICT, "array \"%.200s\" was deleted after revision %" PRIu64,
				ch->name, cm->base);
			snprintf(err->array, sizeof(err->array), "%s", ch->name);
			return err->code;
		}
		err_set(err, -ENOENT, "no array \"%.200s\"", ch->name);
		return err->code;
	}
	w->a = a;
	if (a->created > cm->base) {
		err_set(err, SHMA_ECONFLICT,
			"array \"%.200s\" was created after revision %" PRIu64, ch->name, cm->base);
		snprintf(err->array, sizeof(err->array), "%s", ch->name);
		return err->code;
	}
	if (a->meta->rev > cm->base) {
		err_set(err, SHMA_ECONFLICT,
			"the shape of array \"%.200s\" changed at revision %" PRIu64
			", after revision %" PRIu64,
			ch->name, a->meta->rev, cm->base);
		snprintf(err->array, sizeof(err->array), "%s", ch->name);
		return err->code;
	}
	w->meta = a->meta->m;
	w->resize = ch->resize;
	if (w->resize) {
		struct cat_meta m = ch->meta;

		/* the same shape again is no change */
		if (meta_nbytes(&m, a->dtype.size) && m.ndim == w->meta.ndim &&
		    !memcmp(m.shape, w->meta.shape, m.ndim * sizeof(m.shape[0])))
			w->resize = false;
	}
	if (w->resize && a->data_rev > cm->base) {
		/* a shape change rewrites the array's extent: it conflicts with any
		 * data change since the snapshot, as data conflicts with shape */
		err_set(err, SHMA_ECONFLICT,
			"array \"%.200s\": its data changed at revision %" PRIu64
			", after revision %" PRIu64 ", so its shape cannot change in this commit",
			ch->name, a->data_rev, cm->base);
		snprintf(err->array, sizeof(err->array), "%s", ch->name);
		return err->code;
	}
	if (w->resize) {
		w->meta = ch->meta;
		if (!meta_nbytes(&w->meta, a->dtype.size)) {
			err_set(err, -EINVAL, "array \"%.200s\": new shape too large or more than %d "
				"dimensions", ch->name, CAT_MAXDIM);
			return err->code;
		}
	}
	w->old_nblocks = nblocks_of(a, a->meta->m.nbytes);
	w->new_nblocks = nblocks_of(a, w->meta.nbytes);
check_blocks:
	ppb = a->blksize / PAGE_4K;

	for (size_t i = 0; i < ch->nblk; i++) {
		const struct cat_blkchange *b = &ch->blks[i];
		const struct cat_blkver *head;
		uint64_t npages = 0, prev_end = 0;

		if (b->blk >= w->new_nblocks) {
			err_set(err, -EINVAL, "array \"%.200s\": block %" PRIu64
				" is beyond its end (%" PRIu64 " blocks)", ch->name, b->blk,
				w->new_nblocks);
			return err->code;
		}
		if (i && b->blk <= prev_blk) {
			err_set(err, -EINVAL, "array \"%.200s\": blocks must be listed in ascending "
				"order without repeats (block %" PRIu64 ")", ch->name, b->blk);
			return err->code;
		}
		prev_blk = b->blk;
		if (b->nruns == 0) {
			err_set(err, -EINVAL, "array \"%.200s\" block %" PRIu64 ": a changed block "
				"lists at least one run of pages", ch->name, b->blk);
			return err->code;
		}
		for (size_t r = 0; r < b->nruns; r++) {
			const struct cat_run *run = &b->runs[r];

			if (run->count == 0 || run->first < prev_end ||
			    (uint64_t)run->first + run->count > ppb) {
				err_set(err, -EINVAL, "array \"%.200s\" block %" PRIu64
					": page runs must be non-empty, ascending, non-overlapping "
					"and within the block's %" PRIu64 " pages", ch->name, b->blk, ppb);
				return err->code;
			}
			prev_end = (uint64_t)run->first + run->count;
			npages += run->count;
		}
		if (npages && (cm->data_fd < 0 || b->data_off > data_len ||
			       npages * PAGE_4K > data_len - b->data_off)) {
			err_set(err, -EINVAL, "array \"%.200s\" block %" PRIu64
				": its page data lies beyond the end of the data (%" PRIu64 " bytes)",
				ch->name, b->blk, data_len);
			return err->code;
		}
		head = pagemap_get(&a->blocks, b->blk);
		if (head && head->rev > cm->base) {
			if (nconf < ARRAY_SIZE(err->blocks))
				err->blocks[nconf] = b->blk;
			nconf++;
		}
	}
	if (nconf) {
		err_set(err, SHMA_ECONFLICT, "array \"%.200s\": %zu block(s) changed after revision %"
			PRIu64 " (first committer wins)%s", ch->name, nconf, cm->base,
			nconf > ARRAY_SIZE(err->blocks) ? "; the first 64 are listed" : "");
		snprintf(err->array, sizeof(err->array), "%s", ch->name);
		/* err->blocks was filled above */
		err->nblocks = nconf < ARRAY_SIZE(err->blocks) ? nconf : ARRAY_SIZE(err->blocks);
		return err->code;
	}
	return 0;
}

/* Plan which blocks get new versions: the client's, and on shrink those cut
 * off and the partial last one. */
static int plan_array(struct work_arr *w)
{
	const struct cat_arrchange *ch = w->ch;
	uint64_t tail = w->meta.nbytes % w->a->blksize ? w->new_nblocks - 1 : UINT64_MAX;
	size_t cap = ch->nblk + 1, ci = 0;
	uint64_t blk;
	void *val;

	if (w->new_nblocks < w->old_nblocks)
		cap += pagemap_len(&w->a->blocks);
	w->blks = malloc(cap * sizeof(*w->blks));
	w->slots = malloc(cap * sizeof(*w->slots));
	w->chg = calloc(cap, sizeof(*w->chg));
	w->spare = calloc(cap, sizeof(*w->spare));
	w->delta = malloc(cap * sizeof(*w->delta));
	if (!w->blks || !w->slots || !w->chg || !w->spare || !w->delta)
		return -ENOMEM;
	for (size_t i = 0; i < ch->nblk; i++) {
		w->blks[w->n] = ch->blks[i].blk;
		w->chg[w->n] = &ch->blks[i];
		w->slots[w->n++] = CAT_HOLE;
		if (ch->blks[i].blk == tail)
			tail = UINT64_MAX; /* already changed: its tail is zeroed there */
	}
	if (w->meta.nbytes >= w->a->meta->m.nbytes)
		return 0;
	/* shrinking: blocks past the end become holes, the tail is zeroed */
	for (size_t pos = 0; pagemap_next(&w->a->blocks, &pos, &blk, &val);) {
		const struct cat_blkver *head = val;

		if (head->slot == CAT_HOLE)
			continue;
		if (blk >= w->new_nblocks || blk == tail) {
			/* skip blocks the client changes (tail handled above) */
			while (ci < ch->nblk && ch->blks[ci].blk < blk)
				ci++;
			if (ci < ch->nblk && ch->blks[ci].blk == blk)
				continue;
			w->blks[w->n] = blk;
			w->chg[w->n] = NULL;
			w->slots[w->n++] = CAT_HOLE;
		}
	}
	return 0;
}

static void fill_item_do(const struct pool *pool, const struct fill_item *it)
{
	char *dst = pool_addr(pool, it->dst);

	if (it->src == CAT_HOLE)
		memset(dst, 0, it->len);
	else
		memcpy(dst, pool_addr(pool, it->src), it->len);
}

/* Copy [from, to) of the block from old (or zeros) into the new slot: now,
 * or, when defer, later (catalog_fill_start / catalog_batch_end). */
static void copy_gap(struct catalog *c, uint64_t new_slot, uint64_t old, uint64_t from,
		     uint64_t to, bool defer)
{
	struct fill_item it = { new_slot + from, old == CAT_HOLE ? CAT_HOLE : old + from,
				to - from };

	if (to <= from)
		return;
	if (defer && !grow((void **)&c->fills, &c->capfills, c->nfills, sizeof(*c->fills))) {
		c->fills[c->nfills++] = it;
		return;
	}
	fill_item_do(c->pool, &it);
}

/* copy_gap for the bytes of [from, to) in chunks marked in delta (all of
 * it without one). */
static void copy_delta(struct catalog *c, const struct work_arr *w, size_t k, uint64_t old,
		       uint64_t from, uint64_t to, bool defer)
{
	uint64_t cs = chunk_size(w->a->blksize);

	if (!w->spare[k]) {
		copy_gap(c, w->slots[k], old, from, to, defer);
		return;
	}
	for (uint64_t i = from / cs; i * cs < to; i++) {
		uint64_t a = i * cs > from ? i * cs : from, b;

		if (!chunk_marked(w->delta[k], i))
			continue;
		while ((i + 1) * cs < to && chunk_marked(w->delta[k], i + 1))
			i++; /* copy a run of marked chunks at once */
		b = (i + 1) * cs < to ? (i + 1) * cs : to;
		copy_gap(c, w->slots[k], old, a, b, defer);
	}
}

/* Write the new content of block w->blks[k] into its new slot.  defer:
 * the unchanged pages may be copied later, all but those the store reads
 * (the partial page at the array's end). */
static int fill_block(struct catalog *c, const struct cat_commit *cm, struct work_arr *w,
		      size_t k, bool defer)
{
	const struct cat_blkchange *b = w->chg[k];
	const struct cat_blkver *head = pagemap_get(&w->a->blocks, w->blks[k]);
	uint64_t bs = w->a->blksize, old = head ? head->slot : CAT_HOLE;
	char *dst = pool_addr(c->pool, w->slots[k]);
	uint64_t pos = 0, data_off = b ? b->data_off : 0;
	uint64_t sync_from = bs; /* gaps from here on are copied now */
	int r;

	if (w->blks[k] == w->new_nblocks - 1 && w->meta.nbytes % bs)
		sync_from = (w->meta.nbytes % bs) & ~(PAGE_4K - 1);
	/* unchanged pages from the previous version, changed ones from the
	 * client: only gaps are copied, so 1 changed page moves 1 page */
	for (size_t i = 0; b && i <= b->nruns; i++) {
		uint64_t start = i < b->nruns ? (uint64_t)b->runs[i].first * PAGE_4K : bs;
		uint64_t len = i < b->nruns ? (uint64_t)b->runs[i].count * PAGE_4K : 0;

		if (start > pos) {
			uint64_t mid = start < sync_from ? start : sync_from;

			copy_delta(c, w, k, old, pos, mid, defer);
			copy_delta(c, w, k, old, pos > mid ? pos : mid, start, false);
		}
		if (len) {
			r = util_pread_full(cm->data_fd, dst + start, len, data_off);
			if (r)
				return r;
			data_off += len;
		}
		pos = start + len;
	}
	if (!b) /* a partial last block of a shrink: keep what stays */
		memcpy(dst, pool_addr(c->pool, old), bs);
	/* bytes past the array's end read as zeros, now and after a regrow */
	if (w->blks[k] == w->new_nblocks - 1 && w->meta.nbytes % bs)
		memset(dst + w->meta.nbytes % bs, 0, bs - w->meta.nbytes % bs);
	return 0;
}

/* Filling is the cost of a large commit (copying the client's pages into
 * the pool); every block goes to its own fresh slot, so blocks fill in
 * parallel: a few threads take blocks from a shared counter. */
#define FILL_PARALLEL_BYTES ((uint64_t)32 << 20)
#define FILL_MAX_THREADS 4

struct fill_job {
	struct catalog *c;
	const struct cat_commit *cm;
	struct work_arr *w;
	size_t (*items)[2]; /* (array, block) of every block to fill */
	size_t nitems;
	bool defer; /* single-threaded: gaps may go to c->fills */
	atomic_size_t next;
	atomic_int err;
};

static void *fill_worker(void *arg)
{
	struct fill_job *j = arg;

	for (;;) {
		size_t n = atomic_fetch_add(&j->next, 1);
		int r;

		if (n >= j->nitems || atomic_load(&j->err))
			return NULL;
		r = fill_block(j->c, j->cm, &j->w[j->items[n][0]], j->items[n][1], j->defer);
		if (r) {
			int zero = 0;

			atomic_compare_exchange_strong(&j->err, &zero, r);
		}
	}
}

static int fill_all(struct catalog *c, const struct cat_commit *cm, struct work_arr *w)
{
	struct fill_job j = { .c = c, .cm = cm, .w = w };
	pthread_t th[FILL_MAX_THREADS - 1];
	size_t nth = 0, cap = 0;
	uint64_t bytes = 0;
	long ncpu;

	for (size_t i = 0; i < cm->narr; i++)
		cap += w[i].n;
	j.items = malloc((cap + 1) * sizeof(*j.items));
	if (!j.items)
		return -ENOMEM;
	for (size_t i = 0; i < cm->narr; i++)
		for (size_t k = 0; k < w[i].n; k++)
			if (w[i].slots[k] != CAT_HOLE) {
				j.items[j.nitems][0] = i;
				j.items[j.nitems++][1] = k;
				bytes += w[i].a->blksize;
			}
	atomic_init(&j.next, 0);
	atomic_init(&j.err, 0);
	ncpu = c->ncpu;
	/* in a batch, small commits leave the copies of unchanged pages for
	 * later: they run while the store syncs (big ones fill in parallel
	 * now) */
	j.defer = c->batch && (bytes < FILL_PARALLEL_BYTES || ncpu <= 1);
	if (bytes >= FILL_PARALLEL_BYTES && ncpu > 1)
		while (nth < (size_t)ncpu - 1 && nth < FILL_MAX_THREADS - 1 && nth + 1 < j.nitems &&
		       pthread_create(&th[nth], NULL, fill_worker, &j) == 0)
			nth++;
	fill_worker(&j);
	while (nth)
		pthread_join(th[--nth], NULL);
	free(j.items);
	return atomic_load(&j.err);
}

static void work_free(struct work_arr *w, size_t n, struct pool *pool, bool failed)
{
	for (size_t i = 0; i < n; i++) {
		if (failed && w[i].slots)
			for (size_t k = 0; k < w[i].n; k++)
				if (w[i].slots[k] != CAT_HOLE)
					pool_free(pool, w[i].slots[k], w[i].a->blksize);
		if (failed && w[i].created && w[i].a)
			array_unalloc(w[i].a);
		free(w[i].blks);
		free(w[i].slots);
		free(w[i].chg);
		free(w[i].spare);
		free(w[i].delta);
	}
	free(w);
}

void catalog_result_free(struct cat_result *res)
{
	for (size_t i = 0; i < res->narr; i++) {
		free(res->arrs[i].blks);
		free(res->arrs[i].slots);
	}
	free(res->arrs);
	res->arrs = NULL;
	res->narr = 0;
}

/* Making a commit visible takes two steps around the store's write: prepare
 * does everything that can fail (allocations, new chains' pagemap inserts,
 * the revision's time), so that link, after the store took the commit,
 * cannot fail; cancel undoes prepare when the store refused it. */
struct prep {
	struct cat_blkver **vs;
	struct cat_metaver **mvs;
	bool *fresh; /* the block's chain starts with this commit */
	size_t total;
};

static void prep_free(struct prep *p, size_t narr, bool all)
{
	for (size_t k = 0; all && k < p->total; k++)
		free(p->vs[k]);
	for (size_t i = 0; all && p->mvs && i < narr; i++)
		free(p->mvs[i]);
	free(p->vs);
	free(p->mvs);
	free(p->fresh);
	memset(p, 0, sizeof(*p));
}

/* Take the fresh chains out again. */
static void prep_unchain(const struct cat_commit *cm, struct work_arr *w, struct prep *p)
{
	size_t k = 0;

	for (size_t i = 0; i < cm->narr; i++)
		for (size_t j = 0; j < w[i].n; j++, k++)
			if (p->fresh[k])
				pagemap_del(&w[i].a->blocks, w[i].blks[j]);
}

/* The chunks in which block w->blks[k]'s new version may differ from the
 * current one: the client's pages and the zeroed tail past the array's end;
 * every chunk for a hole or a block without a current version. */
static void version_changes(const struct work_arr *w, size_t k, uint64_t *bm)
{
	const struct cat_blkchange *b = w->chg[k];
	uint64_t bs = w->a->blksize;

	memset(bm, 0, CAT_CHUNK_WORDS * sizeof(*bm));
	if (w->slots[k] == CAT_HOLE || !pagemap_get(&w->a->blocks, w->blks[k])) {
		chunks_all(bm);
		return;
	}
	for (size_t i = 0; b && i < b->nruns; i++)
		chunks_mark(bm, bs, (uint64_t)b->runs[i].first * PAGE_4K,
			    ((uint64_t)b->runs[i].first + b->runs[i].count) * PAGE_4K);
	if (w->blks[k] == w->new_nblocks - 1 && w->meta.nbytes % bs)
		chunks_mark(bm, bs, w->meta.nbytes % bs, bs);
}

static int publish_prepare(struct catalog *c, const struct cat_commit *cm, struct work_arr *w,
			   uint64_t rev, struct prep *p)
{
	size_t k, ncreated = 0;

	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < cm->narr; i++) {
		p->total += w[i].n;
		ncreated += w[i].created;
	}
	p->vs = calloc(p->total + 1, sizeof(*p->vs));
	p->fresh = calloc(p->total + 1, sizeof(*p->fresh));
	p->mvs = calloc(cm->narr + 1, sizeof(*p->mvs));
	if (!p->vs || !p->fresh || !p->mvs)
		goto err_free;
	for (k = 0; k < p->total; k++)
		if (!(p->vs[k] = calloc(1, sizeof(**p->vs))))
			goto err_free;
	for (size_t i = 0; i < cm->narr; i++)
		if (w[i].resize && !(p->mvs[i] = calloc(1, sizeof(**p->mvs))))
			goto err_free;
	if (names_reserve(c, ncreated))
		goto err_free;
	if (c->ngc + p->total + cm->narr > c->capgc) {
		size_t ncap = c->ngc + p->total + cm->narr + 16;
		struct gc_entry *ng = realloc(c->gc, ncap * sizeof(*ng));

		if (!ng)
			goto err_free;
		c->gc = ng;
		c->capgc = ncap;
	}
	/* new chains go in now (a pagemap insert may allocate); replacing the
	 * head of an existing chain later cannot fail.  Their version is newer
	 * than every snapshot, so nobody sees it before link. */
	k = 0;
	for (size_t i = 0; i < cm->narr; i++)
		for (size_t j = 0; j < w[i].n; j++, k++) {
			p->vs[k]->rev = rev;
			p->vs[k]->slot = w[i].slots[j];
			version_changes(&w[i], j, p->vs[k]->changed);
			if (pagemap_get(&w[i].a->blocks, w[i].blks[j]))
				continue;
			if (pagemap_set(&w[i].a->blocks, w[i].blks[j], p->vs[k]))
				goto err_unchain;
			p->fresh[k] = true;
		}
	if (note_revision(c, rev))
		goto err_unchain;
	return 0;

err_unchain:
	prep_unchain(cm, w, p);
err_free:
	prep_free(p, cm->narr, true);
	return -ENOMEM;
}

static void publish_cancel(struct catalog *c, const struct cat_commit *cm, struct work_arr *w,
			   struct prep *p)
{
	prep_unchain(cm, w, p);
	c->ntimes--; /* the revision noted by prepare did not happen */
	prep_free(p, cm->narr, true);
}

/* Make the commit visible: new versions on the chains, superseded ones to
 * the GC queue, the next revision.  Cannot fail. */
static void publish_link(struct catalog *c, const struct cat_commit *cm, struct work_arr *w,
			 uint64_t rev, struct prep *p)
{
	size_t k = 0;

	for (size_t i = 0; i < cm->narr; i++) {
		struct cat_array *a = w[i].a;

		if (w[i].created)
			array_link(c, a, rev);

		for (size_t j = 0; j < w[i].n; j++, k++) {
			struct cat_blkver *v = p->vs[k], *head;

			c->nversions++;
			a->nversions++;
			a->data_rev = rev;
			spares_commit(a, w[i].blks[j], v);
			if (p->fresh[k])
				continue;
			head = pagemap_get(&a->blocks, w[i].blks[j]);
			v->older = head;
			head->newer = v;
			c->gc[c->ngc++] = (struct gc_entry){ .a = a, .blk = w[i].blks[j], .v = head,
							     .from = head->rev, .until = rev };
			pagemap_set(&a->blocks, w[i].blks[j], v);
		}
		if (p->mvs[i]) {
			struct cat_metaver *mv = p->mvs[i];

			mv->rev = rev;
			mv->m = w[i].meta;
			mv->older = a->meta;
			a->meta->newer = mv;
			c->gc[c->ngc++] = (struct gc_entry){ .a = a, .mv = a->meta,
							     .from = a->meta->rev, .until = rev };
			a->meta = mv;
		}
	}
	c->head = rev;
	prep_free(p, cm->narr, false); /* the versions are the catalog's now */
}

/* Copy what the commit did into res (for the store, the reply and the
 * invalidation). */
static int make_result(const struct cat_commit *cm, const struct work_arr *w, uint64_t rev,
		       struct cat_result *res)
{
	res->rev = rev;
	res->arrs = calloc(cm->narr + 1, sizeof(*res->arrs));
	if (!res->arrs)
		return -ENOMEM;
	res->narr = cm->narr;
	for (size_t i = 0; i < cm->narr; i++) {
		struct cat_result_arr *ra = &res->arrs[i];

		ra->array = w[i].a;
		ra->resized = w[i].resize;
		ra->created = w[i].created;
		ra->meta = w[i].meta;
		ra->n = w[i].n;
		ra->blks = malloc((w[i].n + 1) * sizeof(*ra->blks));
		ra->slots = malloc((w[i].n + 1) * sizeof(*ra->slots));
		if (!ra->blks || !ra->slots)
			return -ENOMEM;
		memcpy(ra->blks, w[i].blks, w[i].n * sizeof(*ra->blks));
		memcpy(ra->slots, w[i].slots, w[i].n * sizeof(*ra->slots));
	}
	return 0;
}

int catalog_commit(struct catalog *c, const struct cat_commit *cm, uint64_t now_ms,
		   struct cat_result *res, struct cat_err *err)
{
	struct prep prep;
	struct work_arr *w;
	struct store_record rec;
	size_t nfills = c->nfills; /* this commit's deferred copies come after */
	uint64_t data_len = 0;
	size_t nnew = 0;
	struct stat sb;
	int r = 0;

	memset(res, 0, sizeof(*res));
	if (now_ms > c->now_ms)
		c->now_ms = now_ms;
	if (cm->base > c->head) {
		err_set(err, -EINVAL, "base revision %" PRIu64 " is newer than head %" PRIu64,
			cm->base, c->head);
		return err->code;
	}
	if (cm->narr == 0) {
		err_set(err, -EINVAL, "a commit changes at least one array");
		return err->code;
	}
	for (size_t i = 0; i < cm->narr; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cm->arrs[i].name, cm->arrs[j].name)) {
				err_set(err, -EINVAL, "array \"%.200s\" appears twice in one commit",
					cm->arrs[i].name);
				return err->code;
			}
	if (cm->data_fd >= 0) {
		int fl = fcntl(cm->data_fd, F_GETFL);

		if (fstat(cm->data_fd, &sb) < 0 || !S_ISREG(sb.st_mode) || fl < 0 ||
		    (fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY) {
			err_set(err, -EINVAL, "the page data must come in a regular file or memfd "
				"open for reading");
			return err->code;
		}
		data_len = (uint64_t)sb.st_size;
	}
	w = calloc(cm->narr + 1, sizeof(*w));
	if (!w) {
		err_set(err, -ENOMEM, "out of memory");
		return err->code;
	}
	for (size_t i = 0; i < cm->narr; i++) {
		w[i].ch = &cm->arrs[i];
		r = check_array(c, cm, &w[i], data_len, &nnew, err);
		if (r) {
			if (r == SHMA_ECONFLICT)
				c->conflicts++;
			goto out;
		}
	}
	for (size_t i = 0; i < cm->narr; i++) {
		r = plan_array(&w[i]);
		if (r) {
			err_set(err, r, "out of memory");
			goto out;
		}
	}
	/* new slots: every changed block, and a shrink's partial last block;
	 * blocks cut off by a shrink become holes */
	for (size_t i = 0; i < cm->narr; i++)
		for (size_t k = 0; k < w[i].n; k++) {
			if (w[i].blks[k] >= w[i].new_nblocks)
				continue;
			/* a shrink's partial last block (no change of the
			 * client's) copies the whole block: no spare */
			if (w[i].chg[k] &&
			    spare_take(c, w[i].a, w[i].blks[k],
				       pagemap_get(&w[i].a->blocks, w[i].blks[k]), &w[i].slots[k],
				       w[i].delta[k])) {
				w[i].spare[k] = true;
				continue;
			}
			if (!slot_alloc(c, w[i].a->blksize, &w[i].slots[k])) {
				w[i].slots[k] = CAT_HOLE;
				r = -ENOSPC;
				err_set(err, r, "no space in the page pool for this commit (%" PRIu64
					" of %" PRIu64 " bytes in use; retained revisions and open "
					"snapshots hold older data)", pool_used(c->pool), c->pool->size);
				goto out;
			}
		}
	r = fill_all(c, cm, w);
	if (r) {
		err_set(err, r, "the commit's page data could not be read (%s): is the "
			"data file shorter than its description?", shma_strerror(r));
		goto out;
	}
	/* arrays the commit creates get their ids now: the store records them */
	for (size_t i = 0, id = c->next_id; i < cm->narr; i++)
		if (w[i].created) {
			w[i].a->id = id++;
			w[i].a->created = w[i].a->meta->rev = c->head + 1;
		}
	r = make_result(cm, w, c->head + 1, res);
	if (r) {
		err_set(err, r, "out of memory");
		goto out_free_result;
	}
	r = publish_prepare(c, cm, w, c->head + 1, &prep);
	if (r) {
		err_set(err, r, "out of memory");
		goto out_free_result;
	}
	rec = (struct store_record){ .kind = STORE_COMMIT, .rev = c->head + 1,
				     .time_ms = c->now_ms, .commit = cm, .result = res,
				     .pool = c->pool };
	r = write_store(c, &rec, err);
	if (r) {
		publish_cancel(c, cm, w, &prep);
		goto out_free_result;
	}
	publish_link(c, cm, w, c->head + 1, &prep); /* cannot fail: the store has it */
	c->commits++;
	goto out;

out_free_result:
	catalog_result_free(res);
out:
	if (r)
		c->nfills = nfills; /* its slots go back to the pool */
	work_free(w, cm->narr, c->pool, r != 0);
	return r;
}

/* ---- batches ------------------------------------------------------------- */

void catalog_batch_begin(struct catalog *c)
{
	if (c->batch)
		return;
	c->batch = true;
	c->batch_head = c->head;
	c->batch_commits = c->commits;
	c->batch_ngc = c->ngc;
	c->batch_ntimes = c->ntimes;
}

bool catalog_batch_open(const struct catalog *c)
{
	return c->batch;
}

/* Pop the versions of a's blocks written after rev h; chains left empty go.
 * Returns the newest revision that still changed a block. */
static uint64_t undo_blocks(struct catalog *c, struct cat_array *a, uint64_t h)
{
	uint64_t blk, data_rev = 0, *gone = NULL;
	size_t ngone = 0, capgone = 0;
	void *val;

	for (size_t pos = 0; pagemap_next(&a->blocks, &pos, &blk, &val);) {
		struct cat_blkver *v = val, *older;

		for (; v && v->rev > h; v = older) {
			older = v->older;
			if (v->slot != CAT_HOLE)
				pool_free(c->pool, v->slot, a->blksize);
			free(v);
			c->nversions--;
			a->nversions--;
		}
		if (v) {
			v->newer = NULL;
			if (v != val)
				pagemap_set(&a->blocks, blk, v); /* replaces: cannot fail */
			if (v->rev > data_rev)
				data_rev = v->rev;
			continue;
		}
		if (!grow((void **)&gone, &capgone, ngone, sizeof(*gone)))
			gone[ngone++] = blk;
		else /* no memory for the list: leave an empty chain's key for now */
			pagemap_set(&a->blocks, blk, NULL);
	}
	for (size_t i = 0; i < ngone; i++)
		pagemap_del(&a->blocks, gone[i]);
	free(gone);
	return data_rev;
}

/* Undo every change after the batch's first revision.  Nothing was freed
 * meanwhile (catalog_gc waits for the batch), so the older versions, meta
 * versions and incarnations are all still there: each change is undone by
 * popping what it pushed. */
static void batch_undo(struct catalog *c)
{
	uint64_t h = c->batch_head;
	size_t i, j;

	for (i = 0; i < c->nnames; i++) {
		struct cat_array **pp = &c->names[i];

		while (*pp) {
			struct cat_array *a = *pp;

			if (a->created > h) { /* created in the batch */
				*pp = a->prev;
				if (a->deleted == CAT_LIVE)
					c->nlive--;
				array_free(c, a);
				continue;
			}
			if (a->deleted != CAT_LIVE && a->deleted > h) {
				a->deleted = CAT_LIVE;
				c->nlive++;
			}
			while (a->meta->rev > h && a->meta->older) {
				struct cat_metaver *mv = a->meta;

				a->meta = mv->older;
				a->meta->newer = NULL;
				free(mv);
			}
			a->data_rev = undo_blocks(c, a, h);
			pp = &a->prev;
		}
	}
	for (i = j = 0; i < c->nnames; i++)
		if (c->names[i])
			c->names[j++] = c->names[i];
	c->nnames = j;
	c->ngc = c->batch_ngc;
	c->ntimes = c->batch_ntimes;
	c->head = h;
	c->commits = c->batch_commits;
}

static void *fills_worker(void *arg)
{
	struct catalog *c = arg;

	for (;;) {
		size_t n = atomic_fetch_add(&c->fill_next, 1);

		if (n >= c->nfills)
			return NULL;
		fill_item_do(c->pool, &c->fills[n]);
	}
}

void catalog_fill_start(struct catalog *c)
{
	uint64_t bytes = 0;
	long ncpu = c->ncpu;

	if (c->nfill_th || c->nfills == 0)
		return;
	for (size_t i = 0; i < c->nfills; i++)
		bytes += c->fills[i].len;
	if (bytes < ((uint64_t)1 << 20) || ncpu < 2)
		return; /* not worth a thread: catalog_batch_end copies */
	while (c->nfill_th < ARRAY_SIZE(c->fill_th) && c->nfill_th < (size_t)ncpu &&
	       c->nfill_th < c->nfills &&
	       pthread_create(&c->fill_th[c->nfill_th], NULL, fills_worker, c) == 0)
		c->nfill_th++;
}

/* Finish the deferred copies (helping the threads) and wait for them. */
static void fills_finish(struct catalog *c)
{
	fills_worker(c);
	while (c->nfill_th)
		pthread_join(c->fill_th[--c->nfill_th], NULL);
	c->nfills = 0;
	atomic_store(&c->fill_next, 0);
}

void catalog_batch_end(struct catalog *c, bool keep)
{
	if (!c->batch)
		return;
	fills_finish(c); /* before slots are freed or seen */
	if (!keep)
		batch_undo(c);
	c->batch = false;
}

/* ---- restoring from the store --------------------------------------------- */

int catalog_restore_array(struct catalog *c, const struct cat_restore_array *ra,
			  struct cat_array **out)
{
	struct cat_array *a;
	const char *why;
	bool found;
	size_t i;

	if (!ra->nmeta || ra->id == 0 || ra->created >= ra->deleted ||
	    !util_is_pow2(ra->blksize) || ra->blksize < PAGE_4K ||
	    ra->blksize > c->pool->size || (ra->order != 'C' && ra->order != 'F') ||
	    !catalog_name_ok(ra->name, &why) || ra->metas[0].rev != ra->created)
		return -EINVAL;
	if (names_reserve(c, 1))
		return -ENOMEM;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	snprintf(a->name, sizeof(a->name), "%s", ra->name);
	a->id = ra->id;
	a->dtype = ra->dtype;
	a->order = ra->order;
	a->blksize = ra->blksize;
	a->created = ra->created;
	a->deleted = ra->deleted;
	pagemap_init(&a->blocks);
	pagemap_init(&a->spares);
	for (size_t k = 0; k < ra->nmeta; k++) {
		struct cat_metaver *mv = calloc(1, sizeof(*mv));

		if (!mv || (k && ra->metas[k].rev <= a->meta->rev) || c->ngc >= SIZE_MAX / 2 ||
		    GROW(c, gc, ngc, capgc)) {
			free(mv);
			array_unalloc_all(a);
			return -EINVAL;
		}
		*mv = ra->metas[k];
		mv->older = a->meta;
		mv->newer = NULL;
		if (!meta_nbytes(&mv->m, a->dtype.size)) {
			free(mv);
			array_unalloc_all(a);
			return -EINVAL;
		}
		if (a->meta) {
			a->meta->newer = mv;
			c->gc[c->ngc++] = (struct gc_entry){ .a = a, .mv = a->meta,
							     .from = a->meta->rev, .until = mv->rev };
		}
		a->meta = mv;
	}
	/* incarnations come in id order: the newest of a name is the last */
	i = name_search(c, a->name, &found);
	if (found && c->names[i]->id >= a->id) {
		array_unalloc_all(a);
		return -EINVAL;
	}
	names_push(c, a, i, found);
	*out = a;
	return 0;
}

int catalog_restore_block(struct catalog *c, struct cat_array *a, uint64_t blk, uint64_t rev,
			  uint64_t slot)
{
	struct cat_blkver *head = pagemap_get(&a->blocks, blk), *v;

	if (head && head->rev >= rev)
		return -EINVAL;
	if (GROW(c, gc, ngc, capgc))
		return -ENOMEM;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->rev = rev;
	v->slot = slot;
	v->older = head;
	chunks_all(v->changed); /* not known */
	if (pagemap_set(&a->blocks, blk, v)) {
		free(v);
		return -ENOMEM;
	}
	if (head) {
		head->newer = v;
		c->gc[c->ngc++] = (struct gc_entry){ .a = a, .blk = blk, .v = head,
						     .from = head->rev, .until = rev };
	}
	c->nversions++;
	a->nversions++;
	if (rev > a->data_rev)
		a->data_rev = rev;
	return 0;
}

int catalog_restore_done(struct catalog *c, uint64_t head, uint64_t floor, uint64_t next_id)
{
	if (floor > head)
		return -EINVAL;
	c->head = head;
	if (next_id > c->next_id) /* ids of incarnations compacted away stay used */
		c->next_id = next_id;
	c->floor = floor;
	c->compacted = floor;
	/* ages are unknown after a restart: count them from now, so retention
	 * by time keeps everything restored for a while (never less) */
	c->ntimes = 0;
	return note_revision(c, floor);
}
