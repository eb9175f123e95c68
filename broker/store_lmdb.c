/* store_lmdb.c - the durable store: every change, at page granularity, in an
 * LMDB environment in the data directory (docs/STORE.md).
 *
 * Three named databases:
 *   meta    "format" -> "shma-store 1"; "id" -> the store id (32 hex);
 *           "head", "oldest", "next_id" -> uint64 (little-endian)
 *   arrays  id (uint64 big-endian) -> CRC-32C (4 bytes) + JSON record of
 *           the incarnation (name, dtype, order, block size, created,
 *           deleted, shape versions)
 *   blocks  (id, blk, rev) (uint64 big-endian each) -> struct blkrec:
 *           the pages of block blk that revision rev changed, zero pages
 *           only flagged; or a hole (the block reads as zeros from rev on)
 *
 * A block at revision r is rebuilt from its records <= r, newest first, each
 * page from the newest record that has it, down to a hole or the oldest
 * record.  "oldest" is the oldest revision a restart must bring back (the
 * catalog's oldest kept, pins aside); compaction deletes records no revision
 * >= oldest needs, and whole incarnations deleted before it.
 *
 * Writes go into one LMDB write transaction per batch (a child transaction
 * per record, so a record that does not fit is undone alone); sync()
 * commits it: one fsync (two: data, then LMDB's meta page) for every change
 * of the batch.  Not thread-safe: the broker's main loop owns it.
 */
#include "store.h"

#include "catalog.h"
#include "dtype.h"
#include "log.h"
#include "pool.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT_PREFIX "shma-store "
#define FORMAT_VERSION 1
#define BLK_MAGIC 0x314b4c42u /* "BLK1" */
#define BLK_DATA 0
#define BLK_HOLE 1
#define COMPACT_PER_SYNC 512 /* blocks one sync compacts at most */
/* A commit's sync compacts once this many queue entries, or records of this
 * many bytes, are due (the idle tick does it whatever is due).  A pass reads
 * every record of each block it compacts, so rarer passes cost less: a
 * block written a page at a time holds hundreds of records. */
#define COMPACT_BATCH 2048
#define COMPACT_BYTES ((uint64_t)32 << 20)

/* The value of a blocks record: this header, the changed and zero page
 * bitmaps (nwords uint64 each), then the nstored changed non-zero pages in
 * page order.  The machine's byte order (the store is not portable). */
struct blkrec {
	uint32_t crc;	  /* CRC-32C of everything after this field */
	uint32_t magic;	  /* BLK_MAGIC */
	uint32_t kind;	  /* BLK_DATA or BLK_HOLE */
	uint32_t npages;  /* pages per block */
	uint32_t nstored; /* pages stored after the bitmaps */
	uint32_t pad;
};
_Static_assert(sizeof(struct blkrec) == 24, "blkrec layout");

/* Work for compaction: a block that got a newer record at rev (its older
 * records may go once rev <= oldest), or an incarnation deleted at rev.
 * size: its record's bytes; cum: the bytes of the records queued so far,
 * this one's included. */
struct cq {
	uint64_t id, blk, rev, size, cum;
	bool array;
};

struct lstore {
	struct store st;
	MDB_env *env;
	MDB_dbi meta, arrays, blocks;
	MDB_txn *txn; /* the batch's write transaction, or NULL */
	bool async, unsynced;
	bool broken; /* LMDB failed fatally: no more writes */
	int lockfd;
	char id[33];
	char dir[PATH_MAX];
	uint64_t head, next_id, oldest; /* as stored */
	const char *map;		/* LMDB's map of data.mdb, and the file's */
	uint64_t file_size;		/* size when opened (restore reads only that) */
	uint64_t s_head, s_next_id;	/* staged in txn */
	uint64_t want_oldest;		/* told by compact() */
	struct cq *q;
	size_t qfront, nq, capq;
	size_t nq_synced; /* entries at the last successful sync */
	/* bytes of the records queued since the store opened; entries dropped
	 * after a failed write or sync leave it ahead of the last entry's cum,
	 * which does not matter: only differences between queued entries'
	 * cum are used (compaction_due_count) */
	uint64_t q_bytes;
};

static const struct store_ops lmdb_ops;

static struct lstore *L(struct store *st)
{
	return (struct lstore *)st;
}

/* ---- CRC-32C ---------------------------------------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc_soft(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p,
							 size_t n)
{
	uint64_t c = crc;

	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	crc = (uint32_t)c;
	while (n--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

static uint32_t crc32c(const void *data, size_t n)
{
	static int hw = -1;

	if (hw < 0) {
		crc_init();
#if defined(__x86_64__)
		__builtin_cpu_init();
		hw = __builtin_cpu_supports("sse4.2");
#else
		hw = 0;
#endif
	}
#if defined(__x86_64__)
	if (hw)
		return ~crc_hw(~0u, data, n);
#endif
	return ~crc_soft(~0u, data, n);
}

/* ---- small helpers ---------------------------------------------------------- */

static void fail(char *errbuf, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* LMDB's result -> -errno. */
static int mdb_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_PAGE_FULL:
	case ENOSPC:
	case EFBIG:
	case EDQUOT:
		return -ENOSPC;
	case ENOMEM:
		return -ENOMEM;
	default:
		log_warn("store: LMDB: %s", mdb_strerror(rc));
		return rc > 0 ? -rc : -EIO;
	}
}

static void be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint64_t get_be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void blk_key(unsigned char k[24], uint64_t id, uint64_t blk, uint64_t rev)
{
	be64(k, id);
	be64(k + 8, blk);
	be64(k + 16, rev);
}

static size_t nwords_of(uint32_t npages)
{
	return (npages + 63) / 64;
}

static bool bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static void set_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= UINT64_C(1) << (i % 64);
}

static bool page_is_zero(const void *p)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < PAGE_4K / 8; i++)
		if (w[i])
			return false;
	return true;
}

static int put_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t v)
{
	MDB_val k = { strlen(key), (void *)key }, d = { sizeof(v), &v };

	return mdb_put(txn, dbi, &k, &d, 0);
}

static int get_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t *v)
{
	MDB_val k = { strlen(key), (void *)key }, d;
	int rc = mdb_get(txn, dbi, &k, &d);

	if (rc)
		return rc;
	if (d.mv_size != sizeof(*v))
		return MDB_CORRUPTED;
	memcpy(v, d.mv_data, sizeof(*v));
	return 0;
}

/* ---- the compaction queue --------------------------------------------------- */

static int queue(struct lstore *s, uint64_t id, uint64_t blk, uint64_t rev, bool array,
		 uint64_t bytes)
{
	if (s->nq == s->capq) {
		size_t ncap = s->capq ? s->capq * 2 : 256;
		struct cq *nq;

		if (s->qfront > s->nq / 2) { /* reuse the consumed front first */
			memmove(s->q, s->q + s->qfront, (s->nq - s->qfront) * sizeof(*s->q));
			s->nq -= s->qfront;
			s->nq_synced -= s->qfront; /* qfront <= nq_synced */
			s->qfront = 0;
		} else {
			nq = realloc(s->q, ncap * sizeof(*nq));
			if (!nq)
				return -ENOMEM;
			s->q = nq;
			s->capq = ncap;
		}
	}
	s->q_bytes += bytes;
	s->q[s->nq++] = (struct cq){ id, blk, rev, bytes, s->q_bytes, array };
	return 0;
}

/* ---- arrays records ----------------------------------------------------------- */

static json_t *shape_json(const struct cat_meta *m)
{
	json_t *sh = json_array();

	for (unsigned i = 0; sh && i < m->ndim; i++)
		json_array_append_new(sh, json_integer((json_int_t)m->shape[i]));
	return sh;
}

/* Write the record j (consumed) of incarnation id. */
static int put_array_json(struct lstore *s, MDB_txn *txn, uint64_t id, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	unsigned char key[8];
	MDB_val k = { 8, key }, d;
	size_t len;
	uint32_t crc;
	int rc;

	json_decref(j);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	be64(key, id);
	d.mv_size = 4 + len;
	rc = mdb_put(txn, s->arrays, &k, &d, MDB_RESERVE);
	if (!rc) {
		memcpy((char *)d.mv_data + 4, text, len);
		crc = crc32c(text, len);
		memcpy(d.mv_data, &crc, 4);
	}
	free(text);
	return mdb_err(rc);
}

/* Read and check the record of incarnation id. */
static int get_array_json(struct lstore *s, MDB_txn *txn, uint64_t id, json_t **out)
{
	unsigned char key[8];
	MDB_val k = { 8, key }, d;
	uint32_t crc;
	int rc;

	be64(key, id);
	rc = mdb_get(txn, s->arrays, &k, &d);
	if (rc)
		return mdb_err(rc);
	if (d.mv_size < 4)
		return -EIO;
	memcpy(&crc, d.mv_data, 4);
	if (crc != crc32c((char *)d.mv_data + 4, d.mv_size - 4))
		return -EIO;
	*out = json_loadb((char *)d.mv_data + 4, d.mv_size - 4, 0, NULL);
	return *out ? 0 : -EIO;
}

static int array_create(struct lstore *s, MDB_txn *txn, const struct cat_array *a, uint64_t rev,
			const struct cat_meta *m)
{
	char order[2] = { a->order, 0 };
	json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:I,s:n,s:[[I,o]]}", "name", a->name, "dtype",
			      a->dtype.str, "order", order, "block_size",
			      (json_int_t)a->blksize, "created", (json_int_t)rev, "deleted", "meta",
			      (json_int_t)rev, shape_json(m));

	if (!j)
		return -ENOMEM;
	if (a->id >= s->s_next_id)
		s->s_next_id = a->id + 1;
	return put_array_json(s, txn, a->id, j);
}

/* Shape versions older than the newest one <= oldest are not needed. */
static void trim_meta(json_t *metas, uint64_t oldest)
{
	while (json_array_size(metas) > 1) {
		json_int_t next = json_integer_value(json_array_get(json_array_get(metas, 1), 0));

		if ((uint64_t)next > oldest)
			break;
		json_array_remove(metas, 0);
	}
}

static int array_resize(struct lstore *s, MDB_txn *txn, const struct cat_array *a, uint64_t rev,
			const struct cat_meta *m)
{
	json_t *j, *metas;
	int r = get_array_json(s, txn, a->id, &j);

	if (r)
		return r;
	metas = json_object_get(j, "meta");
	if (!json_is_array(metas) || json_array_append_new(metas, json_pack("[I,o]",
					(json_int_t)rev, shape_json(m)))) {
		json_decref(j);
		return -EIO;
	}
	trim_meta(metas, s->oldest > s->want_oldest ? s->oldest : s->want_oldest);
	return put_array_json(s, txn, a->id, j);
}

static int array_delete(struct lstore *s, MDB_txn *txn, const struct cat_array *a, uint64_t rev)
{
	json_t *j;
	int r = get_array_json(s, txn, a->id, &j);

	if (r)
		return r;
	json_object_set_new(j, "deleted", json_integer((json_int_t)rev));
	r = put_array_json(s, txn, a->id, j);
	return r ? r : queue(s, a->id, 0, rev, true, 0);
}

/* ---- blocks records ---------------------------------------------------------- */

/* Store the pages of changed[] (a bitmap) of the block at data; a hole if
 * data is NULL. */
static int put_block(struct lstore *s, MDB_txn *txn, uint64_t id, uint64_t blk, uint64_t rev,
		     uint32_t npages, const char *data, const uint64_t *changed)
{
	size_t nw = nwords_of(npages), nstored = 0;
	unsigned char key[24];
	MDB_val k = { 24, key }, d;
	uint64_t *zero = calloc(nw + 1, sizeof(*zero));
	struct blkrec h = { .magic = BLK_MAGIC, .kind = data ? BLK_DATA : BLK_HOLE,
			    .npages = npages };
	char *p;
	int rc;

	if (!zero)
		return -ENOMEM;
	for (uint32_t i = 0; data && i < npages; i++)
		if (bit(changed, i)) {
			if (page_is_zero(data + (size_t)i * PAGE_4K))
				set_bit(zero, i);
			else
				nstored++;
		}
	h.nstored = (uint32_t)nstored;
	blk_key(key, id, blk, rev);
	d.mv_size = sizeof(h) + 2 * nw * 8 + nstored * PAGE_4K;
	rc = mdb_put(txn, s->blocks, &k, &d, MDB_RESERVE);
	if (rc) {
		free(zero);
		return mdb_err(rc);
	}
	p = d.mv_data;
	if (data)
		memcpy(p + sizeof(h), changed, nw * 8);
	else
		memset(p + sizeof(h), 0, nw * 8);
	memcpy(p + sizeof(h) + nw * 8, zero, nw * 8);
	p += sizeof(h) + 2 * nw * 8;
	for (uint32_t i = 0; data && i < npages; i++)
		if (bit(changed, i) && !bit(zero, i)) {
			memcpy(p, data + (size_t)i * PAGE_4K, PAGE_4K);
			p += PAGE_4K;
		}
	memcpy(d.mv_data, &h, sizeof(h));
	h.crc = crc32c((char *)d.mv_data + 4, d.mv_size - 4);
	memcpy(d.mv_data, &h.crc, sizeof(h.crc));
	free(zero);
	return queue(s, id, blk, rev, false, d.mv_size);
}

static int cmp_blkchange(const void *key, const void *elem)
{
	uint64_t blk = *(const uint64_t *)key, e = ((const struct cat_blkchange *)elem)->blk;

	return blk < e ? -1 : blk > e;
}

static int write_commit(struct lstore *s, MDB_txn *txn, const struct store_record *rec)
{
	const struct cat_result *res = rec->result;
	int r = 0;

	for (size_t i = 0; !r && i < res->narr; i++) {
		const struct cat_result_arr *ra = &res->arrs[i];
		const struct cat_arrchange *ch = &rec->commit->arrs[i];
		const struct cat_array *a = ra->array;
		uint32_t npages = (uint32_t)(a->blksize / PAGE_4K);
		size_t nw = nwords_of(npages);
		uint64_t *changed;

		if (ra->created)
			r = array_create(s, txn, a, rec->rev, &ra->meta);
		else if (ra->resized)
			r = array_resize(s, txn, a, rec->rev, &ra->meta);
		changed = calloc(nw + 1, sizeof(*changed));
		if (!changed)
			r = -ENOMEM;
		for (size_t k = 0; !r && k < ra->n; k++) {
			const struct cat_blkchange *b;

			if (ra->slots[k] == CAT_HOLE) {
				r = put_block(s, txn, a->id, ra->blks[k], rec->rev, npages, NULL, NULL);
				continue;
			}
			/* the client's pages; a block it did not send (a shrink's
			 * partial last block) is stored whole */
			memset(changed, 0, nw * 8);
			b = bsearch(&ra->blks[k], ch->blks, ch->nblk, sizeof(*ch->blks),
				    cmp_blkchange);
			if (b)
				for (size_t x = 0; x < b->nruns; x++)
					for (uint32_t pg = 0; pg < b->runs[x].count; pg++)
						set_bit(changed, b->runs[x].first + pg);
			else
				for (uint32_t pg = 0; pg < npages; pg++)
					set_bit(changed, pg);
			/* the catalog zeroes the last block past the array's end
			 * (a shrink's new last block): those pages changed too */
			if (ra->meta.nbytes % a->blksize &&
			    ra->blks[k] == (ra->meta.nbytes - 1) / a->blksize)
				for (uint64_t pg = (ra->meta.nbytes % a->blksize) / PAGE_4K;
				     pg < npages; pg++)
					set_bit(changed, pg);
			r = put_block(s, txn, a->id, ra->blks[k], rec->rev, npages,
				      pool_addr(rec->pool, ra->slots[k]), changed);
		}
		free(changed);
	}
	return r;
}

/* ---- compaction ---------------------------------------------------------------- */

struct crec {
	uint64_t rev;
	uint32_t kind;
	uint64_t *changed; /* copy */
	size_t nchanged;
};

/* Bits set in x (without libgcc's call: the baseline x86-64 has no
 * popcount instruction). */
static int popcount64(uint64_t x)
{
	x -= (x >> 1) & 0x5555555555555555u;
	x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fu;
	return (int)((x * 0x0101010101010101u) >> 56);
}

static int popcount_bm(const uint64_t *bm, size_t nw)
{
	int n = 0;

	for (size_t i = 0; i < nw; i++)
		n += popcount64(bm[i]);
	return n;
}

/* Rewrite record (id, blk, rev) with only the pages in keep[]. */
static int rewrite_block(struct lstore *s, MDB_txn *txn, uint64_t id, uint64_t blk,
			 uint64_t rev, const uint64_t *keep)
{
	unsigned char key[24];
	MDB_val k = { 24, key }, d;
	struct blkrec h;
	uint64_t *changed, *zero;
	char *copy, *src, *dst;
	size_t nw, nstored = 0;
	int rc;

	blk_key(key, id, blk, rev);
	rc = mdb_get(txn, s->blocks, &k, &d);
	if (rc)
		return mdb_err(rc);
	copy = malloc(d.mv_size);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, d.mv_data, d.mv_size);
	memcpy(&h, copy, sizeof(h));
	nw = nwords_of(h.npages);
	changed = (uint64_t *)(copy + sizeof(h));
	zero = changed + nw;
	for (uint32_t i = 0; i < h.npages; i++)
		if (bit(keep, i) && !bit(zero, i))
			nstored++;
	d.mv_size = sizeof(h) + 2 * nw * 8 + nstored * PAGE_4K;
	rc = mdb_put(txn, s->blocks, &k, &d, MDB_RESERVE);
	if (rc) {
		free(copy);
		return mdb_err(rc);
	}
	dst = (char *)d.mv_data + sizeof(h) + 2 * nw * 8;
	src = copy + sizeof(h) + 2 * nw * 8;
	for (uint32_t i = 0; i < h.npages; i++) {
		bool stored = bit(changed, i) && !bit(zero, i);

		if (stored && bit(keep, i)) {
			memcpy(dst, src, PAGE_4K);
			dst += PAGE_4K;
		}
		if (stored)
			src += PAGE_4K;
	}
	for (size_t w = 0; w < nw; w++) {
		changed[w] &= keep[w];
		zero[w] &= keep[w];
	}
	memcpy((char *)d.mv_data + sizeof(h), changed, 2 * nw * 8);
	h.nstored = (uint32_t)nstored;
	memcpy(d.mv_data, &h, sizeof(h));
	h.crc = crc32c((char *)d.mv_data + 4, d.mv_size - 4);
	memcpy(d.mv_data, &h.crc, 4);
	free(copy);
	return 0;
}

/* Delete record (id, blk, rev). */
static int del_block(struct lstore *s, MDB_txn *txn, uint64_t id, uint64_t blk, uint64_t rev)
{
	unsigned char key[24];
	MDB_val k = { 24, key };

	blk_key(key, id, blk, rev);
	return mdb_err(mdb_del(txn, s->blocks, &k, NULL));
}

/* Drop what no revision >= oldest needs of block (id, blk): records older
 * than the newest one <= oldest (the base) whose pages newer records up to
 * the base all replace; a hole base and everything older. */
static int compact_block(struct lstore *s, MDB_txn *txn, uint64_t id, uint64_t blk,
			 uint64_t oldest)
{
	unsigned char key[24];
	MDB_val k = { 24, key }, d;
	MDB_cursor *cur;
	struct crec *recs = NULL;
	size_t n = 0, cap = 0, nw = 0;
	uint32_t npages = 0;
	uint64_t *covered = NULL, *live = NULL;
	ssize_t base = -1;
	int rc, r = 0;

	rc = mdb_cursor_open(txn, s->blocks, &cur);
	if (rc)
		return mdb_err(rc);
	blk_key(key, id, blk, 0);
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE); !rc;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		struct blkrec h;
		struct crec *nr;

		if (k.mv_size != 24 || get_be64(k.mv_data) != id || get_be64((unsigned char *)k.mv_data + 8) != blk)
			break;
		if (get_be64((unsigned char *)k.mv_data + 16) > oldest)
			break;
		if (d.mv_size < sizeof(h)) {
			r = -EIO;
			break;
		}
		memcpy(&h, d.mv_data, sizeof(h));
		nw = nwords_of(h.npages);
		npages = h.npages;
		if (d.mv_size < sizeof(h) + 2 * nw * 8) {
			r = -EIO;
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			nr = realloc(recs, cap * sizeof(*recs));
			if (!nr) {
				r = -ENOMEM;
				break;
			}
			recs = nr;
		}
		recs[n].rev = get_be64((unsigned char *)k.mv_data + 16);
		recs[n].kind = h.kind;
		recs[n].changed = malloc(nw * 8 + 8);
		if (!recs[n].changed) {
			r = -ENOMEM;
			break;
		}
		memcpy(recs[n].changed, (char *)d.mv_data + sizeof(h), nw * 8);
		n++;
	}
	mdb_cursor_close(cur);
	if (r || n == 0)
		goto out;
	base = (ssize_t)n - 1; /* the newest record <= oldest */
	covered = calloc(nw + 1, 8);
	live = calloc(nw + 1, 8);
	if (!covered || !live) {
		r = -ENOMEM;
		goto out;
	}
	if (recs[base].kind != BLK_HOLE)
		memcpy(covered, recs[base].changed, nw * 8);
	for (ssize_t i = recs[base].kind == BLK_HOLE ? base : base - 1; i >= 0 && !r; i--) {
		struct crec *c = &recs[i];
		int nlive, nall;

		if (c->kind == BLK_HOLE || popcount_bm(covered, nw) == (int)npages) {
			/* nothing older shows through a hole or a fully covered
			 * block: this record (if a hole) and all older ones go */
			for (ssize_t j = i; j >= 0 && !r; j--)
				r = del_block(s, txn, id, blk, recs[j].rev);
			break;
		}
		nall = popcount_bm(c->changed, nw);
		for (size_t w = 0; w < nw; w++)
			live[w] = c->changed[w] & ~covered[w];
		nlive = popcount_bm(live, nw);
		if (nlive == 0)
			r = del_block(s, txn, id, blk, c->rev);
		else if (nlive * 2 < nall)
			r = rewrite_block(s, txn, id, blk, c->rev, live);
		for (size_t w = 0; w < nw; w++)
			covered[w] |= c->changed[w];
	}
out:
	for (size_t i = 0; i < n; i++)
		free(recs[i].changed);
	free(recs);
	free(covered);
	free(live);
	return r;
}

/* An incarnation deleted before oldest: its record and all its blocks. */
static int compact_array(struct lstore *s, MDB_txn *txn, uint64_t id)
{
	unsigned char key[24];
	MDB_val k = { 8, key }, d;
	MDB_cursor *cur;
	int rc;

	be64(key, id);
	rc = mdb_del(txn, s->arrays, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return mdb_err(rc);
	rc = mdb_cursor_open(txn, s->blocks, &cur);
	if (rc)
		return mdb_err(rc);
	blk_key(key, id, 0, 0);
	k.mv_size = 24;
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE); !rc;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 24 || get_be64(k.mv_data) != id)
			break;
		rc = mdb_cursor_del(cur, 0);
		if (rc)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : mdb_err(rc);
}

/* ---- the store operations ------------------------------------------------------ */

static int begin(struct lstore *s)
{
	int rc;

	if (s->txn)
		return 0;
	if (s->broken)
		return -EIO;
	rc = mdb_txn_begin(s->env, NULL, 0, &s->txn);
	if (rc) {
		s->txn = NULL;
		if (rc == MDB_PANIC) { /* a failed write of LMDB's meta page */
			s->broken = true;
			log_error("store %s: LMDB failed fatally: no change can be stored until the "
				  "broker restarts (it recovers the last durable state)", s->dir);
		}
		return mdb_err(rc);
	}
	s->s_head = s->head;
	s->s_next_id = s->next_id;
	return 0;
}

static int lmdb_write(struct store *st, const struct store_record *rec)
{
	struct lstore *s = L(st);
	size_t nq = s->nq - s->qfront; /* queue() may move the entries down */
	uint64_t next_id;
	MDB_txn *child;
	int r;

	r = begin(s);
	if (r)
		return r;
	r = mdb_err(mdb_txn_begin(s->env, s->txn, 0, &child));
	if (r)
		return r;
	next_id = s->s_next_id;
	switch (rec->kind) {
	case STORE_CREATE:
		r = array_create(s, child, rec->array, rec->rev, &rec->array->meta->m);
		break;
	case STORE_DELETE:
		r = array_delete(s, child, rec->array, rec->rev);
		break;
	case STORE_COMMIT:
		r = write_commit(s, child, rec);
		break;
	}
	if (!r)
		r = mdb_err(mdb_txn_commit(child));
	else
		mdb_txn_abort(child);
	if (r) {
		s->nq = s->qfront + nq; /* what it queued is not there */
		s->s_next_id = next_id;
		log_warn("store: cannot write revision %" PRIu64 ": %s", rec->rev,
			 r == -ENOSPC ? "the store is full (store_size, or the disk)" :
			 strerror(-r));
		return r;
	}
	s->s_head = rec->rev;
	return 0;
}

/* How many queue entries are due (rev <= oldest), and the bytes of their
 * records.  The queue is in the order of the writes, so by revision: a
 * binary search. */
static size_t compaction_due_count(const struct lstore *s, uint64_t *bytes)
{
	size_t lo = s->qfront, hi = s->nq_synced;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->q[mid].rev <= s->want_oldest)
			lo = mid + 1;
		else
			hi = mid;
	}
	*bytes = lo > s->qfront ? s->q[lo - 1].cum - s->q[s->qfront].cum +
					  s->q[s->qfront].size : 0;
	return lo - s->qfront;
}

/* The blocks (and incarnations) one compaction pass has done, at most
 * COMPACT_PER_SYNC: a block written often is queued once per write, and
 * compacting it once at oldest does for every entry of it in the pass.
 * Open addressing, never more than half full. */
#define DONE_SLOTS (2 * COMPACT_PER_SYNC)
_Static_assert((DONE_SLOTS & (DONE_SLOTS - 1)) == 0, "DONE_SLOTS: a power of two");

static size_t done_hash(const struct cq *e)
{
	uint64_t h = e->id * 0x9e3779b97f4a7c15u ^ e->blk * 0xc2b2ae3d27d4eb4fu ^ e->array;

	return (size_t)(h ^ h >> 29) & (DONE_SLOTS - 1);
}

/* Add e to done; false if an entry of the same block was there. */
static bool done_add(const struct cq **done, const struct cq *e)
{
	size_t i = done_hash(e);

	for (; done[i]; i = (i + 1) & (DONE_SLOTS - 1))
		if (done[i]->id == e->id && done[i]->blk == e->blk &&
		    done[i]->array == e->array)
			return false;
	done[i] = e;
	return true;
}

static int do_compaction(struct lstore *s, size_t *front, bool idle)
{
	uint64_t oldest = s->want_oldest, due_bytes;
	size_t i = s->qfront, ndone = 0;
	const struct cq **done;
	int r = 0;

	/* a batch of changes does compaction only when much is due, so that
	 * small commits do not pay for it each time (a pass reads every
	 * record of each block it compacts); the idle tick does the rest */
	if (!idle && compaction_due_count(s, &due_bytes) < COMPACT_BATCH &&
	    due_bytes < COMPACT_BYTES) {
		*front = i;
		return 0;
	}
	done = calloc(DONE_SLOTS, sizeof(*done));
	if (!done) {
		*front = i;
		return 0; /* compaction waits; the batch goes on */
	}

	/* each item in a child transaction: one that fails (a damaged
	 * record, no room for a rewrite) is left as it is, never failing the
	 * batch it rides with */
	while (!r && i < s->nq && s->q[i].rev <= oldest && ndone < COMPACT_PER_SYNC) {
		const struct cq *e = &s->q[i];
		MDB_txn *child;
		int rc;

		if (!done_add(done, e)) {
			i++;
			continue;
		}
		rc = mdb_txn_begin(s->env, s->txn, 0, &child);
		if (rc) {
			r = mdb_err(rc); /* the batch itself is in trouble */
			break;
		}
		rc = e->array ? compact_array(s, child, e->id) :
				compact_block(s, child, e->id, e->blk, oldest);
		if (!rc)
			rc = mdb_err(mdb_txn_commit(child));
		else
			mdb_txn_abort(child);
		if (rc)
			log_warn("store: compaction of array %" PRIu64 " block %" PRIu64
				 " skipped: %s", e->id, e->blk, strerror(-rc));
		i++;
		ndone++;
	}
	free(done);
	*front = i;
	return r;
}

/* Compaction waiting (done by the next sync, or by tick()). */
static bool compaction_due(const struct lstore *s)
{
	return s->want_oldest > s->oldest ||
	       (s->qfront < s->nq_synced && s->q[s->qfront].rev <= s->oldest);
}

static bool lmdb_pending(const struct store *st)
{
	return ((const struct lstore *)st)->txn != NULL;
}

static int sync_txn(struct lstore *s, bool idle);

static int lmdb_sync(struct store *st)
{
	return sync_txn(L(st), false);
}

/* Commit the batch's transaction, with compaction work (all that is due
 * when idle, else only when much is due). */
static int sync_txn(struct lstore *s, bool idle)
{
	size_t front = s->qfront;
	uint64_t oldest = s->want_oldest > s->oldest ? s->want_oldest : s->oldest;
	int r, rc;

	if (!s->txn && !compaction_due(s))
		return 0;
	r = begin(s);
	if (r)
		goto err;
	r = do_compaction(s, &front, idle);
	if (!r)
		r = mdb_err(put_u64(s->txn, s->meta, "head", s->s_head));
	if (!r)
		r = mdb_err(put_u64(s->txn, s->meta, "next_id", s->s_next_id));
	if (!r && oldest != s->oldest)
		r = mdb_err(put_u64(s->txn, s->meta, "oldest", oldest));
	if (r) {
		mdb_txn_abort(s->txn);
		s->txn = NULL;
		goto err;
	}
	rc = mdb_txn_commit(s->txn);
	s->txn = NULL;
	if (rc) {
		r = mdb_err(rc);
		if (rc == MDB_PANIC)
			s->broken = true;
		goto err;
	}
	s->head = s->s_head;
	s->next_id = s->s_next_id;
	s->oldest = oldest;
	s->qfront = front;
	s->nq_synced = s->nq;
	if (s->qfront == s->nq) {
		s->qfront = s->nq = s->nq_synced = 0;
	}
	s->unsynced = s->async;
	return 0;

err:
	/* everything staged since the last sync is gone, and so is what it
	 * queued; the catalog undoes those changes */
	s->nq = s->nq_synced;
	log_error("store: cannot make revisions up to %" PRIu64 " durable: %s", s->s_head,
		  r == -ENOSPC ? "the store is full (store_size, or the disk)" : strerror(-r));
	return r;
}

static void lmdb_compact(struct store *st, uint64_t oldest)
{
	struct lstore *s = L(st);

	if (oldest > s->want_oldest)
		s->want_oldest = oldest;
}

static int lmdb_tick(struct store *st)
{
	struct lstore *s = L(st);
	int rc;

	if (!s->txn && compaction_due(s)) {
		rc = sync_txn(s, true);
		if (rc)
			return rc;
	}
	if (!s->unsynced)
		return 0;
	rc = mdb_env_sync(s->env, 1);
	if (rc) {
		log_error("store: cannot flush %s to disk: %s", s->dir, mdb_strerror(rc));
		return mdb_err(rc);
	}
	s->unsynced = false;
	return 0;
}

static void lmdb_close(struct store *st)
{
	struct lstore *s = L(st);

	if (!s)
		return;
	if (s->txn) {
		mdb_txn_abort(s->txn);
		s->txn = NULL;
	}
	/* a clean stop leaves the store compacted (a bounded amount of work) */
	for (int i = 0; s->env && !s->broken && i < 64 && compaction_due(s); i++) {
		size_t before = s->qfront;

		if (sync_txn(s, true) || s->qfront == before)
			break;
	}
	if (s->env) {
		if (s->unsynced)
			mdb_env_sync(s->env, 1);
		mdb_env_close(s->env);
	}
	util_close(s->lockfd);
	free(s->q);
	free(s);
}

static const struct store_ops lmdb_ops = {
	.write = lmdb_write,
	.sync = lmdb_sync,
	.pending = lmdb_pending,
	.compact = lmdb_compact,
	.tick = lmdb_tick,
	.close = lmdb_close,
};

const char *store_lmdb_id(const struct store *st)
{
	return ((const struct lstore *)st)->id;
}

/* ---- opening ----------------------------------------------------------------------- */

static int mkdir_p(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);

	if (len >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(path, 0700) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Does dir hold anything but LMDB's files and our lock? */
static bool dir_has_other(const char *dir, char *what, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool other = false;

	if (!d)
		return false;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strcmp(e->d_name, "lock.mdb") || !strcmp(e->d_name, "broker.lock"))
			continue;
		snprintf(what, len, "%s", e->d_name);
		other = true;
		break;
	}
	closedir(d);
	return other;
}

/* Where LMDB mapped path (it says only for a fixed map): from
 * /proc/self/maps; NULL if not found (restore then refuses). */
static const char *map_of(const char *path)
{
	char line[PATH_MAX + 128], real[PATH_MAX];
	const char *found = NULL;
	FILE *f;

	if (!realpath(path, real))
		return NULL;
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return NULL;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long start, off;
		char *name = strchr(line, '/');
		size_t n;

		if (!name || sscanf(line, "%lx-%*x %*s %lx", &start, &off) != 2 || off != 0)
			continue;
		n = strlen(name);
		if (n && name[n - 1] == '\n')
			name[--n] = 0;
		if (!strcmp(name, real))
			found = (const char *)start;
	}
	fclose(f);
	return found;
}

/* Check the format record, or write a new store's. */
static int check_format(struct lstore *s, MDB_txn *txn, bool fresh, const char *new_id,
			char *errbuf, size_t errlen)
{
	MDB_val k = { 6, "format" }, d;
	char text[64];
	long ver;
	int rc;

	rc = mdb_get(txn, s->meta, &k, &d);
	if (rc == MDB_NOTFOUND && fresh) {
		snprintf(text, sizeof(text), FORMAT_PREFIX "%d", FORMAT_VERSION);
		d = (MDB_val){ strlen(text), text };
		rc = mdb_put(txn, s->meta, &k, &d, 0);
		if (!rc) {
			MDB_val ki = { 2, "id" }, di = { 32, (void *)new_id };

			rc = mdb_put(txn, s->meta, &ki, &di, 0);
		}
		if (!rc)
			rc = put_u64(txn, s->meta, "head", 0);
		if (!rc)
			rc = put_u64(txn, s->meta, "oldest", 0);
		if (!rc)
			rc = put_u64(txn, s->meta, "next_id", 1);
		if (rc)
			fail(errbuf, errlen, "store %s: cannot initialise: %s", s->dir,
			     mdb_strerror(rc));
		return mdb_err(rc);
	}
	if (rc) {
		fail(errbuf, errlen, "store %s: data.mdb is not a shma store (no format record: %s)",
		     s->dir, mdb_strerror(rc));
		return -EINVAL;
	}
	if (d.mv_size >= sizeof(text) || d.mv_size <= strlen(FORMAT_PREFIX) ||
	    memcmp(d.mv_data, FORMAT_PREFIX, strlen(FORMAT_PREFIX))) {
		fail(errbuf, errlen, "store %s: data.mdb is not a shma store (unknown format record)",
		     s->dir);
		return -EINVAL;
	}
	memcpy(text, d.mv_data, d.mv_size);
	text[d.mv_size] = 0;
	ver = strtol(text + strlen(FORMAT_PREFIX), NULL, 10);
	if (ver != FORMAT_VERSION) {
		fail(errbuf, errlen, "store %s: format %ld, but this broker reads format %d%s",
		     s->dir, ver, FORMAT_VERSION, ver > FORMAT_VERSION ? " (made by a newer shma)" : "");
		return -EINVAL;
	}
	k = (MDB_val){ 2, "id" };
	rc = mdb_get(txn, s->meta, &k, &d);
	if (rc || d.mv_size != 32) {
		fail(errbuf, errlen, "store %s: the store id record is missing or damaged", s->dir);
		return -EIO;
	}
	memcpy(s->id, d.mv_data, 32);
	s->id[32] = 0;
	if (get_u64(txn, s->meta, "head", &s->head) || get_u64(txn, s->meta, "oldest", &s->oldest) ||
	    get_u64(txn, s->meta, "next_id", &s->next_id) || s->oldest > s->head) {
		fail(errbuf, errlen, "store %s: the head/oldest/next_id records are missing or "
		     "damaged", s->dir);
		return -EIO;
	}
	return 0;
}

int store_lmdb_open(const struct store_lmdb_opts *o, const char *new_id, struct store **out,
		    char *errbuf, size_t errlen)
{
	struct lstore *s = calloc(1, sizeof(*s));
	char path[PATH_MAX + 32], other[256];
	struct stat sb;
	MDB_envinfo info;
	MDB_stat mst;
	MDB_txn *txn;
	bool fresh;
	int r, rc;

	if (!s)
		return -ENOMEM;
	s->st.ops = &lmdb_ops;
	/* a block's record is one LMDB value, which holds less than 4 GiB */
	s->st.max_blksize = (uint64_t)1 << 31;
	s->lockfd = -1;
	s->async = o->async;
	snprintf(s->dir, sizeof(s->dir), "%s", o->dir);
	r = mkdir_p(o->dir);
	if (r) {
		fail(errbuf, errlen, "store %s: cannot create the directory: %s", o->dir,
		     strerror(-r));
		goto err;
	}
	snprintf(path, sizeof(path), "%s/broker.lock", o->dir);
	s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lockfd < 0) {
		r = -errno;
		fail(errbuf, errlen, "store %s: cannot open %s: %s", o->dir, path, strerror(-r));
		goto err;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		fail(errbuf, errlen, "store %s: %s", o->dir, r == -EWOULDBLOCK ?
		     "another broker uses this store" : strerror(-r));
		goto err;
	}
	snprintf(path, sizeof(path), "%s/data.mdb", o->dir);
	fresh = stat(path, &sb) < 0;
	if (fresh && errno != ENOENT) {
		r = -errno;
		fail(errbuf, errlen, "store %s: %s: %s", o->dir, path, strerror(-r));
		goto err;
	}
	if (fresh && dir_has_other(o->dir, other, sizeof(other))) {
		r = -EINVAL;
		fail(errbuf, errlen, "store %s: the directory holds \"%s\" but no data.mdb: it is "
		     "not a shma store (choose an empty or new data_dir)", o->dir, other);
		goto err;
	}
	if (!fresh && sb.st_size < 2 * PAGE_4K) {
		r = -EIO;
		fail(errbuf, errlen, "store %s: data.mdb is truncated (%jd bytes)", o->dir,
		     (intmax_t)sb.st_size);
		goto err;
	}
	rc = mdb_env_create(&s->env);
	if (!rc)
		rc = mdb_env_set_maxdbs(s->env, 8);
	if (!rc)
		rc = mdb_env_set_mapsize(s->env, o->max_size);
	if (!rc)
		rc = mdb_env_open(s->env, o->dir, MDB_NOTLS | MDB_NORDAHEAD |
				  (o->async ? MDB_NOSYNC : 0), 0600);
	if (rc) {
		r = mdb_err(rc);
		fail(errbuf, errlen, "store %s: cannot open data.mdb: %s%s", o->dir, mdb_strerror(rc),
		     rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ? " (damaged, or not an LMDB "
		     "file of this format)" : "");
		goto err;
	}
	if (!fresh) {
		/* every page LMDB will look at must be in the file */
		rc = mdb_env_info(s->env, &info);
		if (!rc)
			rc = mdb_env_stat(s->env, &mst);
		if (rc || stat(path, &sb) < 0 ||
		    (uint64_t)(info.me_last_pgno + 1) * mst.ms_psize > (uint64_t)sb.st_size) {
			r = -EIO;
			fail(errbuf, errlen, "store %s: data.mdb is truncated (%jd bytes, its pages "
			     "reach %ju)", o->dir, (intmax_t)sb.st_size,
			     rc ? 0 : (uintmax_t)(info.me_last_pgno + 1) * mst.ms_psize);
			goto err;
		}
		s->map = map_of(path);
		s->file_size = (uint64_t)sb.st_size;
	}
	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc) {
		r = mdb_err(rc);
		fail(errbuf, errlen, "store %s: %s", o->dir, mdb_strerror(rc));
		goto err;
	}
	rc = mdb_dbi_open(txn, "meta", fresh ? MDB_CREATE : 0, &s->meta);
	if (!rc)
		rc = mdb_dbi_open(txn, "arrays", fresh ? MDB_CREATE : 0, &s->arrays);
	if (!rc)
		rc = mdb_dbi_open(txn, "blocks", fresh ? MDB_CREATE : 0, &s->blocks);
	if (rc) {
		mdb_txn_abort(txn);
		r = -EINVAL;
		fail(errbuf, errlen, "store %s: data.mdb is not a shma store (%s)", o->dir,
		     mdb_strerror(rc));
		goto err;
	}
	r = check_format(s, txn, fresh, new_id, errbuf, errlen);
	if (r) {
		mdb_txn_abort(txn);
		goto err;
	}
	rc = mdb_txn_commit(txn);
	if (rc) {
		r = mdb_err(rc);
		fail(errbuf, errlen, "store %s: %s", o->dir, mdb_strerror(rc));
		goto err;
	}
	if (fresh) {
		memcpy(s->id, new_id, 32);
		s->id[32] = 0;
		s->next_id = 1;
	}
	s->want_oldest = s->oldest;
	*out = &s->st;
	return 0;

err:
	lmdb_close(&s->st);
	return r;
}

/* ---- restoring ------------------------------------------------------------------------ */

struct rarr {
	uint64_t id;
	struct cat_array *a; /* NULL: not restored (deleted before oldest) */
	uint64_t created, deleted;
};

struct restore {
	struct lstore *s;
	struct catalog *c;
	struct pool *pool;
	struct rarr *arrs;
	size_t narrs, cap;
	char *errbuf;
	size_t errlen;
	uint64_t nblocks, nslots;
};

static int restore_fail(struct restore *rs, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int restore_fail(struct restore *rs, int r, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail(rs->errbuf, rs->errlen, "store %s: %s", rs->s->dir, msg);
	return r;
}

static bool j_u64(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* Does the value lie inside data.mdb?  (A damaged node can claim a size
 * that runs past the file: reading it would fault.) */
static bool in_file(const struct lstore *s, const MDB_val *d)
{
	const char *p = d->mv_data;

	return s->map && p >= s->map && d->mv_size <= s->file_size &&
	       (uint64_t)(p - s->map) <= s->file_size - d->mv_size;
}

static int restore_array(struct restore *rs, uint64_t id, const MDB_val *d)
{
	struct cat_restore_array ra = { .id = id, .deleted = CAT_LIVE };
	struct cat_metaver *metas = NULL;
	const char *name, *dtype, *order, *why;
	json_t *j, *jm, *jdel;
	uint32_t crc;
	struct rarr *e;
	int r = -EIO;

	if (d->mv_size < 4 || !in_file(rs->s, d))
		return restore_fail(rs, -EIO, "arrays record %" PRIu64 ": damaged (truncated, "
				    "or past the end of data.mdb)", id);
	memcpy(&crc, d->mv_data, 4);
	if (crc != crc32c((char *)d->mv_data + 4, d->mv_size - 4))
		return restore_fail(rs, -EIO, "arrays record %" PRIu64 ": bad checksum", id);
	j = json_loadb((char *)d->mv_data + 4, d->mv_size - 4, 0, NULL);
	if (!j || json_unpack(j, "{s:s,s:s,s:s,s:o,s:o}", "name", &name, "dtype", &dtype, "order",
			      &order, "meta", &jm, "deleted", &jdel) ||
	    !j_u64(json_object_get(j, "block_size"), &ra.blksize) ||
	    !j_u64(json_object_get(j, "created"), &ra.created) || !json_is_array(jm) ||
	    !json_array_size(jm) || (!json_is_null(jdel) && !j_u64(jdel, &ra.deleted)) ||
	    dtype_parse(dtype, &ra.dtype, &why) || strlen(order) != 1) {
		restore_fail(rs, -EIO, "arrays record %" PRIu64 ": damaged (checksum right, "
			     "content wrong)", id);
		goto out;
	}
	ra.name = name;
	ra.order = order[0];
	ra.nmeta = json_array_size(jm);
	metas = calloc(ra.nmeta, sizeof(*metas));
	if (!metas) {
		r = restore_fail(rs, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ra.nmeta; i++) {
		json_t *mv = json_array_get(jm, i), *sh = json_array_get(mv, 1);

		if (!j_u64(json_array_get(mv, 0), &metas[i].rev) || !json_is_array(sh) ||
		    json_array_size(sh) > CAT_MAXDIM) {
			restore_fail(rs, -EIO, "arrays record %" PRIu64 ": bad shape", id);
			goto out;
		}
		metas[i].m.ndim = (unsigned)json_array_size(sh);
		for (unsigned k = 0; k < metas[i].m.ndim; k++)
			if (!j_u64(json_array_get(sh, k), &metas[i].m.shape[k])) {
				restore_fail(rs, -EIO, "arrays record %" PRIu64 ": bad shape", id);
				goto out;
			}
	}
	/* shape versions older than the oldest kept revision were dropped: the
	 * first one left is the shape from creation as far as anyone can see */
	if (metas[0].rev < ra.created || (metas[0].rev > rs->s->oldest && metas[0].rev != ra.created)) {
		restore_fail(rs, -EIO, "arrays record %" PRIu64 ": bad shape history", id);
		goto out;
	}
	metas[0].rev = ra.created;
	ra.metas = metas;
	if (rs->narrs == rs->cap) {
		size_t ncap = rs->cap ? rs->cap * 2 : 64;
		struct rarr *na = realloc(rs->arrs, ncap * sizeof(*na));

		if (!na) {
			r = restore_fail(rs, -ENOMEM, "out of memory");
			goto out;
		}
		rs->arrs = na;
		rs->cap = ncap;
	}
	e = &rs->arrs[rs->narrs];
	*e = (struct rarr){ .id = id, .created = ra.created, .deleted = ra.deleted };
	if (ra.deleted != CAT_LIVE && ra.deleted <= rs->s->oldest) {
		/* nothing kept can see it: compaction takes it */
		r = queue(rs->s, id, 0, ra.deleted, true, 0);
		if (!r)
			rs->narrs++;
		goto out;
	}
	if (ra.created > rs->s->head || (ra.deleted != CAT_LIVE && ra.deleted > rs->s->head)) {
		restore_fail(rs, -EIO, "array \"%s\" (record %" PRIu64 ") is newer than the "
			     "store's head revision %" PRIu64, name, id, rs->s->head);
		goto out;
	}
	if (ra.deleted != CAT_LIVE) { /* compaction takes it once oldest passes */
		r = queue(rs->s, id, 0, ra.deleted, true, 0);
		if (r) {
			restore_fail(rs, r, "out of memory");
			goto out;
		}
	}
	r = catalog_restore_array(rs->c, &ra, &e->a);
	if (r) {
		restore_fail(rs, r, "arrays record %" PRIu64 " (\"%s\") cannot be restored: %s", id,
			     name, strerror(-r));
		goto out;
	}
	rs->narrs++;
out:
	free(metas);
	json_decref(j);
	return r;
}

static struct rarr *find_rarr(struct restore *rs, uint64_t id)
{
	size_t lo = 0, hi = rs->narrs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rs->arrs[mid].id == id)
			return &rs->arrs[mid];
		if (rs->arrs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct rrec {
	uint64_t rev;
	const struct blkrec *h;
	const uint64_t *changed, *zero;
	const char *pages;
};

/* Check one blocks record; fill *rr. */
static int check_block(struct restore *rs, const MDB_val *k, const MDB_val *d,
		       const struct rarr *ra, struct rrec *rr)
{
	uint64_t id = get_be64(k->mv_data), blk = get_be64((unsigned char *)k->mv_data + 8);
	struct blkrec h;
	size_t nw;
	uint64_t nstored = 0;

	rr->rev = get_be64((unsigned char *)k->mv_data + 16);
	if (d->mv_size < sizeof(h) || !in_file(rs->s, d))
		return restore_fail(rs, -EIO, "blocks record (%" PRIu64 ", %" PRIu64 ", %" PRIu64
				    "): damaged (truncated, or past the end of data.mdb)", id, blk,
				    rr->rev);
	memcpy(&h, d->mv_data, sizeof(h));
	if (h.crc != crc32c((char *)d->mv_data + 4, d->mv_size - 4))
		return restore_fail(rs, -EIO, "blocks record (array %" PRIu64 ", block %" PRIu64
				    ", revision %" PRIu64 "): bad checksum", id, blk, rr->rev);
	nw = nwords_of(h.npages);
	if (h.magic != BLK_MAGIC || h.kind > BLK_HOLE || !ra->a ||
	    (uint64_t)h.npages * PAGE_4K != ra->a->blksize ||
	    d->mv_size != sizeof(h) + 2 * nw * 8 + (size_t)h.nstored * PAGE_4K ||
	    rr->rev < ra->created || rr->rev >= ra->deleted || rr->rev > rs->s->head)
		return restore_fail(rs, -EIO, "blocks record (array %" PRIu64 ", block %" PRIu64
				    ", revision %" PRIu64 "): damaged (checksum right, content "
				    "wrong)", id, blk, rr->rev);
	rr->h = d->mv_data;
	rr->changed = (const uint64_t *)((const char *)d->mv_data + sizeof(h));
	rr->zero = rr->changed + nw;
	rr->pages = (const char *)(rr->zero + nw);
	for (size_t w = 0; w < nw; w++)
		nstored += (uint64_t)popcount64(rr->changed[w] & ~rr->zero[w]);
	if (nstored != h.nstored)
		return restore_fail(rs, -EIO, "blocks record (array %" PRIu64 ", block %" PRIu64
				    ", revision %" PRIu64 "): damaged page count", id, blk, rr->rev);
	return 0;
}

/* Rebuild block blk at records[v] into a fresh slot. */
static int fill_version(struct restore *rs, struct cat_array *a, const struct rrec *recs,
			size_t v, uint64_t *slot)
{
	uint32_t npages = recs[v].h->npages;
	size_t nw = nwords_of(npages);
	uint64_t *filled = calloc(nw + 1, 8);
	char *dst;

	if (!filled)
		return -ENOMEM;
	if (!pool_alloc(rs->pool, a->blksize, slot)) {
		free(filled);
		return -ENOSPC;
	}
	dst = pool_addr(rs->pool, *slot);
	for (ssize_t i = (ssize_t)v; i >= 0; i--) {
		const struct rrec *r = &recs[i];
		const char *src = r->pages;

		if (r->h->kind == BLK_HOLE)
			break;
		for (uint32_t p = 0; p < npages; p++) {
			bool stored = bit(r->changed, p) && !bit(r->zero, p);

			if (bit(r->changed, p) && !bit(filled, p)) {
				if (stored)
					memcpy(dst + (size_t)p * PAGE_4K, src, PAGE_4K);
				set_bit(filled, p);
			}
			if (stored)
				src += PAGE_4K;
		}
	}
	free(filled);
	rs->nslots++;
	return 0;
}

/* Put record r's pages over the block at dst (which holds the version
 * before it). */
static void apply_record(const struct rrec *r, char *dst)
{
	const char *src = r->pages;

	for (uint32_t p = 0; p < r->h->npages; p++) {
		if (!bit(r->changed, p))
			continue;
		if (bit(r->zero, p)) {
			memset(dst + (size_t)p * PAGE_4K, 0, PAGE_4K);
		} else {
			memcpy(dst + (size_t)p * PAGE_4K, src, PAGE_4K);
			src += PAGE_4K;
		}
	}
}

/* One block's records, ascending: its versions from the newest record <=
 * oldest on.  The first is rebuilt from the records under it; each later
 * one is the one before plus its record. */
static int restore_block(struct restore *rs, struct rarr *ra, uint64_t blk, struct rrec *recs,
			 size_t n)
{
	uint64_t prev = CAT_HOLE;
	ssize_t base = -1;
	int r = 0;

	for (size_t i = 0; i < n; i++)
		if (recs[i].rev <= rs->s->oldest)
			base = (ssize_t)i;
	/* what compaction had still to do when the broker stopped: what is
	 * under the base now, the rest once oldest reaches the newest record */
	if (base > 0 || (base == 0 && recs[0].h->kind == BLK_HOLE))
		r = queue(rs->s, ra->id, blk, recs[base].rev, false, 0);
	if (!r && n > 1 && recs[n - 1].rev > rs->s->oldest)
		r = queue(rs->s, ra->id, blk, recs[n - 1].rev, false, 0);
	if (r)
		return restore_fail(rs, r, "out of memory");
	for (size_t i = base < 0 ? 0 : (size_t)base; i < n; i++) {
		uint64_t slot = CAT_HOLE;

		if (recs[i].h->kind == BLK_HOLE) {
			if ((ssize_t)i == base)
				continue; /* zeros from the start: no version needed */
		} else if (prev != CAT_HOLE) {
			if (!pool_alloc(rs->pool, ra->a->blksize, &slot))
				r = -ENOSPC;
			if (!r) {
				memcpy(pool_addr(rs->pool, slot), pool_addr(rs->pool, prev),
				       ra->a->blksize);
				apply_record(&recs[i], pool_addr(rs->pool, slot));
				rs->nslots++;
			}
		} else {
			r = fill_version(rs, ra->a, recs, i, &slot);
		}
		if (r) {
			if (r == -ENOSPC)
				return restore_fail(rs, r, "the pool (pool_size, %" PRIu64 " MiB) is too "
						    "small for the stored data (%" PRIu64 " blocks "
						    "restored so far)", rs->pool->size >> 20, rs->nslots);
			return restore_fail(rs, r, "out of memory");
		}
		prev = slot;
		r = catalog_restore_block(rs->c, ra->a, blk, recs[i].rev, slot);
		if (r) {
			if (slot != CAT_HOLE)
				pool_free(rs->pool, slot, ra->a->blksize);
			return restore_fail(rs, r, "array \"%s\" block %" PRIu64 ": cannot restore "
					    "revision %" PRIu64, ra->a->name, blk, recs[i].rev);
		}
		rs->nblocks++;
	}
	return 0;
}

static int cmp_cq(const void *x, const void *y)
{
	const struct cq *a = x, *b = y;

	return a->rev < b->rev ? -1 : a->rev > b->rev;
}

int store_lmdb_restore(struct store *st, struct catalog *c, struct pool *pool, char *errbuf,
		       size_t errlen)
{
	struct lstore *s = L(st);
	struct restore rs = { .s = s, .c = c, .pool = pool, .errbuf = errbuf, .errlen = errlen };
	struct rrec *recs = NULL;
	size_t nrecs = 0, caprecs = 0;
	uint64_t cur_id = 0, cur_blk = 0;
	struct rarr *cur = NULL;
	MDB_cursor *cu = NULL;
	MDB_txn *txn;
	MDB_val k, d;
	int r = 0, rc;

	rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return restore_fail(&rs, mdb_err(rc), "%s", mdb_strerror(rc));
	rc = mdb_cursor_open(txn, s->arrays, &cu);
	for (rc = rc ? rc : mdb_cursor_get(cu, &k, &d, MDB_FIRST); !rc && !r;
	     rc = mdb_cursor_get(cu, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 8) {
			r = restore_fail(&rs, -EIO, "arrays: a key of %zu bytes", k.mv_size);
			break;
		}
		r = restore_array(&rs, get_be64(k.mv_data), &d);
	}
	mdb_cursor_close(cu);
	cu = NULL;
	if (!r && rc != MDB_NOTFOUND)
		r = restore_fail(&rs, -EIO, "arrays: %s", mdb_strerror(rc));
	if (r)
		goto out;

	rc = mdb_cursor_open(txn, s->blocks, &cu);
	for (rc = rc ? rc : mdb_cursor_get(cu, &k, &d, MDB_FIRST);; rc = mdb_cursor_get(cu, &k, &d,
										       MDB_NEXT)) {
		uint64_t id, blk;

		if (rc && rc != MDB_NOTFOUND) {
			r = restore_fail(&rs, -EIO, "blocks: %s", mdb_strerror(rc));
			break;
		}
		if (!rc && k.mv_size != 24) {
			r = restore_fail(&rs, -EIO, "blocks: a key of %zu bytes", k.mv_size);
			break;
		}
		id = rc ? 0 : get_be64(k.mv_data);
		blk = rc ? 0 : get_be64((unsigned char *)k.mv_data + 8);
		if (nrecs && (rc || id != cur_id || blk != cur_blk)) {
			r = restore_block(&rs, cur, cur_blk, recs, nrecs);
			nrecs = 0;
			if (r)
				break;
		}
		if (rc)
			break;
		if (!cur || cur->id != id) {
			cur = find_rarr(&rs, id);
			if (!cur) {
				r = restore_fail(&rs, -EIO, "blocks of array record %" PRIu64 " but no "
						 "such array", id);
				break;
			}
		}
		cur_id = id;
		cur_blk = blk;
		if (!cur->a) /* deleted before oldest: compaction takes it */
			continue;
		if (nrecs == caprecs) {
			size_t ncap = caprecs ? caprecs * 2 : 16;
			struct rrec *nr = realloc(recs, ncap * sizeof(*nr));

			if (!nr) {
				r = restore_fail(&rs, -ENOMEM, "out of memory");
				break;
			}
			recs = nr;
			caprecs = ncap;
		}
		r = check_block(&rs, &k, &d, cur, &recs[nrecs]);
		if (r)
			break;
		nrecs++;
	}
	mdb_cursor_close(cu);
	if (r)
		goto out;
	r = catalog_restore_done(c, s->head, s->oldest, s->next_id);
	if (r) {
		r = restore_fail(&rs, r, "cannot restore revision %" PRIu64, s->head);
		goto out;
	}
	if (s->nq)
		qsort(s->q, s->nq, sizeof(*s->q), cmp_cq);
	s->nq_synced = s->nq;
	log_info("store %s: restored %zu array incarnations, %" PRIu64 " block versions (%" PRIu64
		 " MiB in the pool), head revision %" PRIu64 ", oldest kept %" PRIu64, s->dir,
		 rs.narrs, rs.nblocks, pool_used(pool) >> 20, s->head, s->oldest);
out:
	mdb_txn_abort(txn);
	free(recs);
	free(rs.arrs);
	return r;
}
