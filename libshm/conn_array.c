/* conn_array.c - array handles of a broker connection: the block table,
 * the mapping, applying changes, and gathering a commit's pages.
 *
 * An array handle is a direct-map virtmem file over the broker's pool with
 * SHMA_FILE_COW_PRIVATE: mapblk answers from the handle's own copy of the
 * snapshot's block table (no round trip), and a write makes the kernel copy
 * only the 4 KiB pages written.  At commit those pages are found from
 * /proc/self/pagemap (an anonymous page in a private file mapping is one the
 * kernel copied on write) and compared with the base, so a 1-byte change
 * sends one page.
 */
#include "conn_int.h"
#include "dtype.h"
#include "virtmem.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static int array_mapblk(shma_file *f, uint64_t blk, int *fd, uint64_t *off)
{
	struct shma_array *a = shma_file_opaque(f);
	int err = 0;

	pthread_mutex_lock(&a->lock);
	if (a->deleted) {
		err = -ENOENT;
	} else if (blk >= a->nblocks) {
		err = -ERANGE; /* past the array's end: SIGBUS, as past a file's */
	} else {
		void *v = pagemap_get(&a->table, blk);

		*fd = v ? a->pool_fd : -1;
		*off = v ? (uint64_t)(uintptr_t)v - 1 : 0;
	}
	pthread_mutex_unlock(&a->lock);
	return err;
}

struct shma_array *array_find(struct shma_conn *c, const char *name)
{
	struct list_head *it;

	for (it = c->arrays.next; it != &c->arrays; it = it->next) {
		struct shma_array *a = container_of(it, struct shma_array, link);

		if (!strcmp(a->name, name))
			return a;
	}
	return NULL;
}

static uint64_t nblocks_of(uint64_t nbytes, size_t blksize)
{
	return (nbytes + blksize - 1) / blksize;
}

/* Address space for this many blocks: room to grow without moving. */
static uint64_t capacity_for(uint64_t nblocks)
{
	return nblocks + (nblocks / 2 > 16 ? nblocks / 2 : 16);
}

/* Parse a shape array; itemsize * product into *nbytes. */
static int parse_shape(json_t *js, unsigned itemsize, unsigned *ndim, uint64_t *shape,
		       uint64_t *nbytes)
{
	uint64_t n = itemsize;
	size_t i;
	json_t *d;

	if (!json_is_array(js) || json_array_size(js) > CONN_MAXDIM)
		return -EINVAL;
	*ndim = (unsigned)json_array_size(js);
	json_array_foreach(js, i, d) {
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return -EINVAL;
		shape[i] = (uint64_t)json_integer_value(d);
		if (__builtin_mul_overflow(n, shape[i], &n))
			return -EINVAL;
	}
	*nbytes = n;
	return 0;
}

/* Fill the table from [[blk, offset|null], ...]; the broker's word is
 * checked all the same (an offset must lie inside the pool). */
static int table_fill(struct shma_array *a, json_t *blocks)
{
	size_t i;
	json_t *pair;

	json_array_foreach(blocks, i, pair) {
		json_t *jb = json_array_get(pair, 0), *jo = json_array_get(pair, 1);
		uint64_t blk, off;

		if (!json_is_integer(jb) || json_integer_value(jb) < 0)
			return -EPROTO;
		blk = (uint64_t)json_integer_value(jb);
		if (json_is_null(jo)) {
			pagemap_del(&a->table, blk);
			continue;
		}
		if (!json_is_integer(jo) || json_integer_value(jo) < 0)
			return -EPROTO;
		off = (uint64_t)json_integer_value(jo);
		if (off % PAGE_4K || off + a->blksize > a->conn->pool_size || off + a->blksize < off)
			return -EPROTO;
		if (pagemap_set(&a->table, blk, (void *)(uintptr_t)(off + 1)))
			return -ENOMEM;
	}
	return 0;
}

/* Fill the table from runs [[first, count, first slot], ...]: count blocks
 * whose slots follow each other (a compact open reply). */
static int table_fill_runs(struct shma_array *a, json_t *runs)
{
	size_t i;
	json_t *run;

	json_array_foreach(runs, i, run) {
		json_t *jb = json_array_get(run, 0), *jn = json_array_get(run, 1);
		json_t *jo = json_array_get(run, 2);
		uint64_t blk, n, off, span;

		if (!json_is_integer(jb) || !json_is_integer(jn) || !json_is_integer(jo) ||
		    json_integer_value(jb) < 0 || json_integer_value(jn) <= 0 ||
		    json_integer_value(jo) < 0)
			return -EPROTO;
		blk = (uint64_t)json_integer_value(jb);
		n = (uint64_t)json_integer_value(jn);
		off = (uint64_t)json_integer_value(jo);
		if (off % PAGE_4K || __builtin_mul_overflow(n, (uint64_t)a->blksize, &span) ||
		    off + span > a->conn->pool_size || off + span < off || blk + n < blk)
			return -EPROTO;
		for (uint64_t k = 0; k < n; k++)
			if (pagemap_set(&a->table, blk + k,
					(void *)(uintptr_t)(off + k * a->blksize + 1)))
				return -ENOMEM;
	}
	return 0;
}

/* Tear down the virtmem side (file, handle, mapping). */
static void vm_teardown(struct shma_array *a)
{
	shma_fileh_close(&a->fh); /* unmaps its mappings too */
	a->map = NULL;
	shma_file_destroy(&a->file);
}

/* Set up the virtmem side for the current block size and shape. */
static int vm_setup(struct shma_array *a)
{
	int err;

	a->ops = (struct shma_file_ops){ .mapblk = array_mapblk,
					 .flags = SHMA_FILE_COW_PRIVATE | SHMA_FILE_READAHEAD };
	err = shma_file_new(&a->ops, a->blksize, a, &a->file);
	if (err)
		return err;
	err = shma_fileh_open(a->file, a->conn->ram, &a->fh);
	if (err) {
		shma_file_destroy(&a->file);
		return err == -EINVAL ? -EFBIG : err; /* a block larger than the RAM */
	}
	if (a->is_ref) /* exactly the extent's blocks: they never grow */
		a->cap = a->nblocks > a->first ? a->nblocks - a->first : 1;
	else
		a->cap = capacity_for(a->nblocks);
	err = shma_map(a->fh, a->first, a->cap, &a->map);
	if (err)
		vm_teardown(a);
	return err;
}

/* Take the incarnation described by meta: dtype, order, block size, shape. */
static int take_meta(struct shma_array *a, json_t *meta)
{
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *dts = json_string_value(json_object_get(meta, "dtype"));
	const char *order = json_string_value(json_object_get(meta, "order"));
	json_t *jid = json_object_get(meta, "id"), *jbs = json_object_get(meta, "block_size");
	struct dtype dt;
	const char *why;
	uint64_t bs;

	if (!name || strlen(name) > CONN_NAME_MAX || !dts || dtype_parse(dts, &dt, &why) ||
	    !order || (strcmp(order, "C") && strcmp(order, "F")) || !json_is_integer(jid) ||
	    !json_is_integer(jbs))
		return -EPROTO;
	bs = (uint64_t)json_integer_value(jbs);
	if (!util_is_pow2(bs) || bs < PAGE_4K)
		return -EPROTO;
	snprintf(a->name, sizeof(a->name), "%s", name);
	snprintf(a->dtype, sizeof(a->dtype), "%s", dt.str);
	a->itemsize = dt.size;
	a->order = order[0];
	a->id = (uint64_t)json_integer_value(jid);
	a->blksize = (size_t)bs;
	if (parse_shape(json_object_get(meta, "shape"), a->itemsize, &a->ndim, a->shape,
			&a->nbytes))
		return -EPROTO;
	return 0;
}

int array_new(struct shma_conn *c, json_t *meta, json_t *blocks, struct shma_array **out)
{
	struct shma_array *a = calloc(1, sizeof(*a));
	int err;

	if (!a)
		return conn_error(c, -ENOMEM, "out of memory");
	a->conn = c;
	a->refs = 1;
	list_init(&a->link);
	pthread_mutex_init(&a->lock, NULL);
	pagemap_init(&a->table);
	a->pool_fd = c->pool_fd;
	err = take_meta(a, meta);
	if (!err)
		err = table_fill(a, blocks);
	if (err) {
		err = conn_error(c, SHMA_EPROTOCOL, "the broker described the array badly");
		goto err_free;
	}
	a->nblocks = nblocks_of(a->nbytes, a->blksize);
	err = vm_setup(a);
	if (err) {
		conn_error(c, err, err == -EFBIG ? "block size %zu is larger than the connection's "
			   "RAM (shma_conn_options.ram_limit)" : "cannot map the array (block size %zu)",
			   a->blksize);
		goto err_free;
	}
	*out = a;
	return 0;

err_free:
	pagemap_clear(&a->table);
	pthread_mutex_destroy(&a->lock);
	free(a);
	return err;
}

int array_new_pending(struct shma_conn *c, const char *name, const char *dtype,
		      unsigned ndim, const uint64_t *shape, char order, size_t blksize,
		      struct shma_array **out)
{
	json_t *meta, *jshape = json_array();
	int err;

	for (unsigned i = 0; i < ndim; i++)
		json_array_append_new(jshape, json_integer((json_int_t)shape[i]));
	/* described as the broker would: id 0 until the commit gives it one */
	meta = json_pack("{s:s,s:I,s:s,s:o,s:s#,s:I}", "name", name, "id", (json_int_t)0, "dtype",
			 dtype, "shape", jshape, "order", &order, (size_t)1, "block_size",
			 (json_int_t)blksize);
	if (!meta)
		return conn_error(c, -ENOMEM, "out of memory");
	err = array_new(c, meta, NULL, out);
	json_decref(meta);
	if (!err)
		(*out)->pending = true;
	return err;
}

int array_new_ref(struct shma_conn *c, json_t *meta, json_t *blocks, uint64_t rev, uint64_t lo,
		  uint64_t hi, struct shma_array **out)
{
	struct shma_array *a = calloc(1, sizeof(*a));
	int err;

	if (!a)
		return conn_error(c, -ENOMEM, "out of memory");
	a->conn = c;
	a->refs = 1;
	a->is_ref = true;
	a->ref_rev = rev;
	list_init(&a->link);
	pthread_mutex_init(&a->lock, NULL);
	pagemap_init(&a->table);
	a->pool_fd = c->pool_fd;
	err = take_meta(a, meta);
	if (!err)
		err = table_fill_runs(a, blocks);
	if (err) {
		err = conn_error(c, SHMA_EPROTOCOL, "the broker described the array badly");
		goto err_free;
	}
	if (hi > a->nbytes) {
		err = conn_error(c, SHMA_EBADREF, "the ref's extent [%" PRIu64 ", %" PRIu64 ") lies "
				 "beyond the end of \"%s\" at revision %" PRIu64 " (%" PRIu64 " bytes)",
				 lo, hi, a->name, rev, a->nbytes);
		goto err_free;
	}
	a->first = lo / a->blksize;
	a->nblocks = hi > lo ? nblocks_of(hi, a->blksize) : a->first + 1;
	err = vm_setup(a);
	if (err) {
		conn_error(c, err, "cannot map the ref's blocks (block size %zu)", a->blksize);
		goto err_free;
	}
	*out = a;
	return 0;

err_free:
	pagemap_clear(&a->table);
	pthread_mutex_destroy(&a->lock);
	free(a);
	return err;
}

void array_free(struct shma_array *a)
{
	list_del_init(&a->link);
	vm_teardown(a);
	pagemap_clear(&a->table);
	pthread_mutex_destroy(&a->lock);
	free(a->doomed);
	free(a);
}

static void doom(struct shma_array *a, uint64_t blk)
{
	if (a->ndoomed == a->capdoomed) {
		size_t ncap = a->capdoomed ? a->capdoomed * 2 : 16;
		uint64_t *n = realloc(a->doomed, ncap * sizeof(*n));

		if (!n) {
			a->recreated = true; /* still conflicts, without the list */
			return;
		}
		a->doomed = n;
		a->capdoomed = ncap;
	}
	a->doomed[a->ndoomed++] = blk;
}

/* Make the mapping cover at least nblocks (it may move). */
static int ensure_capacity(struct shma_array *a, uint64_t nblocks)
{
	shma_mapping *m;
	uint64_t cap = capacity_for(nblocks);
	int err;

	if (nblocks <= a->cap)
		return 0;
	err = shma_map(a->fh, 0, cap, &m);
	if (err)
		return err;
	err = shma_unmap(&a->map); /* its private copies move into RAM */
	if (err) {
		shma_unmap(&m);
		return err;
	}
	a->map = m;
	a->cap = cap;
	return 0;
}

void array_reset(struct shma_array *a)
{
	vm_fileh_drop_all(a->fh);
	pthread_mutex_lock(&a->lock);
	pagemap_clear(&a->table);
	a->pool_fd = a->conn->pool_fd;
	pthread_mutex_unlock(&a->lock);
	a->resized = a->recreated = false;
	a->ndoomed = 0;
}

/* A new incarnation (re-created, or re-opened after reconnect). */
static int apply_recreated(struct shma_array *a, json_t *e)
{
	bool had_changes = a->resized || shma_fileh_dirty_blocks(a->fh, NULL, 0) > 0;
	int err;

	vm_teardown(a);
	pthread_mutex_lock(&a->lock);
	pagemap_clear(&a->table);
	a->deleted = false;
	err = take_meta(a, json_object_get(e, "meta"));
	if (!err)
		err = table_fill(a, json_object_get(e, "blocks"));
	a->nblocks = err ? 0 : nblocks_of(a->nbytes, a->blksize);
	pthread_mutex_unlock(&a->lock);
	a->resized = false;
	a->ndoomed = 0;
	a->recreated = had_changes; /* changes to the old one can only conflict */
	if (err)
		return conn_error(a->conn, SHMA_EPROTOCOL, "the broker described \"%s\" badly",
				  a->name);
	err = vm_setup(a);
	if (err)
		return conn_error(a->conn, err, "cannot map the re-created array \"%s\"", a->name);
	return 0;
}

int array_apply(struct shma_array *a, json_t *e)
{
	json_t *meta = json_object_get(e, "meta"), *blocks = json_object_get(e, "blocks"), *pair;
	size_t i;
	int err;

	if (json_is_true(json_object_get(e, "deleted"))) {
		vm_fileh_drop_all(a->fh);
		pthread_mutex_lock(&a->lock);
		a->deleted = true;
		a->nblocks = 0;
		pagemap_clear(&a->table);
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	if (json_is_true(json_object_get(e, "recreated")) ||
	    (json_is_true(json_object_get(e, "created")) &&
	     (a->deleted || (uint64_t)json_integer_value(json_object_get(meta, "id")) != a->id)))
		return apply_recreated(a, e);
	if (json_is_true(json_object_get(e, "created")))
		return 0; /* the incarnation we have */

	if (meta) {
		unsigned ndim;
		uint64_t shape[CONN_MAXDIM], nbytes, nb;

		if (parse_shape(json_object_get(meta, "shape"), a->itemsize, &ndim, shape, &nbytes))
			return conn_error(a->conn, SHMA_EPROTOCOL, "bad shape from the broker");
		if (a->resized)
			a->recreated = true; /* both changed the shape: a conflict */
		nb = nblocks_of(nbytes, a->blksize);
		err = ensure_capacity(a, nb);
		if (err)
			return conn_error(a->conn, err, "cannot grow the mapping of \"%s\"", a->name);
		a->ndim = ndim;
		memcpy(a->shape, shape, sizeof(shape));
		a->nbytes = nbytes;
		pthread_mutex_lock(&a->lock);
		a->nblocks = a->resized ? (nb > a->nblocks ? nb : a->nblocks) : nb;
		pthread_mutex_unlock(&a->lock);
	}
	pthread_mutex_lock(&a->lock);
	err = table_fill(a, blocks);
	pthread_mutex_unlock(&a->lock);
	if (err)
		return conn_error(a->conn, SHMA_EPROTOCOL, "bad block list from the broker");
	/* the new table first, then the stale pages go: a refault maps the new */
	json_array_foreach(blocks, i, pair) {
		uint64_t blk = (uint64_t)json_integer_value(json_array_get(pair, 0));

		if (shma_fileh_block_state(a->fh, blk) == SHMA_PAGE_DIRTY) {
			/* changed here and there: keep ours (off the old slot), and
			 * the next commit conflicts */
			doom(a, blk);
			err = vm_detach_block(a->fh, blk);
			if (err)
				return conn_error(a->conn, err, "cannot keep the changes of \"%s\" "
						  "block %" PRIu64, a->name, blk);
		} else {
			shma_fileh_invalidate(a->fh, blk);
		}
	}
	return 0;
}

void array_committed(struct shma_array *a)
{
	a->pending = false; /* the reply names its incarnation ("recreated") */
	shma_fileh_discard(a->fh);
	a->resized = false;
	a->ndoomed = 0;
	a->recreated = false;
}

void array_abort(struct shma_array *a)
{
	if (a->pending) { /* never was: accesses get SIGBUS, as for a deleted array */
		vm_fileh_drop_all(a->fh);
		pthread_mutex_lock(&a->lock);
		a->deleted = true;
		a->nblocks = 0;
		pthread_mutex_unlock(&a->lock);
		a->pending = false;
		return;
	}
	shma_fileh_discard(a->fh);
	if (a->resized) {
		pthread_mutex_lock(&a->lock);
		a->nblocks = nblocks_of(a->nbytes, a->blksize);
		pthread_mutex_unlock(&a->lock);
		a->resized = false;
	}
	a->ndoomed = 0;
	a->recreated = false;
}

/* ---- gathering a commit -------------------------------------------------- */

struct dirty {
	uint64_t blk;
	const char *data;
	bool priv;
	int base_fd;
	uint64_t base_off;
};

static int cmp_dirty(const void *x, const void *y)
{
	uint64_t a = ((const struct dirty *)x)->blk, b = ((const struct dirty *)y)->blk;

	return a < b ? -1 : a > b;
}

/* Which pages of block d differ from its base?  changed[i] for page i. */
static int changed_pages(struct shma_array *a, const struct dirty *d, bool *changed,
			 uint64_t *ents, char *tmp)
{
	static const char zero[PAGE_4K];
	size_t ppb = a->blksize / PAGE_4K;
	int err;

	for (size_t i = 0; i < ppb; i++)
		changed[i] = true;
	if (d->priv) {
		/* only pages the kernel copied on write can differ */
		int pm = util_pagemap_fd();

		if (pm >= 0 &&
		    util_pread_full(pm, ents, ppb * 8, (uint64_t)(uintptr_t)d->data / PAGE_4K * 8) == 0)
			for (size_t i = 0; i < ppb; i++)
				changed[i] = (ents[i] & PM_SWAPPED) ||
					     ((ents[i] & PM_PRESENT) && !(ents[i] & PM_FILE));
	}
	for (size_t i = 0; i < ppb; i++) {
		const char *base = zero;

		if (!changed[i])
			continue;
		if (d->base_fd >= 0) {
			err = util_pread_full(d->base_fd, tmp, PAGE_4K, d->base_off + i * PAGE_4K);
			if (err)
				return err;
			base = tmp;
		}
		changed[i] = memcmp(d->data + i * PAGE_4K, base, PAGE_4K) != 0;
	}
	return 0;
}

int array_gather(struct shma_array *a, json_t *arrs, int data_fd, uint64_t *data_off,
		 uint64_t *pages)
{
	size_t ppb = a->blksize / PAGE_4K, n = 0, cap;
	struct dirty *ds = NULL;
	struct list_head *it;
	bool *changed = NULL;
	uint64_t *ents = NULL, nblocks;
	char *tmp = NULL;
	json_t *jblocks = NULL, *entry;
	int err = 0;

	if (a->recreated || a->ndoomed) {
		char list[160] = "";
		size_t len = 0;

		for (size_t i = 0; i < a->ndoomed && len + 24 < sizeof(list); i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%" PRIu64,
						i ? ", " : "", a->doomed[i]);
		return conn_error(a->conn, SHMA_ECONFLICT,
				  a->ndoomed ? "array \"%s\": block(s) %s changed by another commit "
					       "after this transaction's snapshot"
					     : "array \"%s\"%s was re-created or reshaped by another "
					       "commit after this transaction's snapshot",
				  a->name, list);
	}
	if (a->deleted)
		return 0;

	/* the dirty pages, under virtmem's lock; their data stays put while
	 * no writer races the commit (the contract in shma.h) */
	vm_lock();
	cap = a->fh->ndirty;
	ds = calloc(cap + 1, sizeof(*ds));
	if (ds)
		for (it = a->fh->dirty.next; it != &a->fh->dirty; it = it->next) {
			struct page *p = container_of(it, struct page, lru);

			ds[n++] = (struct dirty){ p->blk, vm_page_data(p), vm_page_private(p),
						  p->base_fd, p->base_off };
		}
	vm_unlock();
	if (!ds)
		return conn_error(a->conn, -ENOMEM, "out of memory");
	if (n == 0 && !a->resized && !a->pending)
		goto out;
	qsort(ds, n, sizeof(*ds), cmp_dirty);

	changed = calloc(ppb, sizeof(*changed));
	ents = calloc(ppb, sizeof(*ents));
	tmp = malloc(PAGE_4K);
	jblocks = json_array();
	if (!changed || !ents || !tmp || !jblocks) {
		err = conn_error(a->conn, -ENOMEM, "out of memory");
		goto out;
	}
	nblocks = nblocks_of(a->resized ? a->rs_nbytes : a->nbytes, a->blksize);
	for (size_t k = 0; k < n; k++) {
		const struct dirty *d = &ds[k];
		json_t *runs;
		uint64_t start = *data_off;

		if (d->blk >= nblocks) /* cut off by this transaction's shrink */
			continue;
		err = changed_pages(a, d, changed, ents, tmp);
		if (err) {
			err = conn_error(a->conn, err, "cannot read the base of \"%s\" block %" PRIu64,
					 a->name, d->blk);
			goto out;
		}
		runs = json_array();
		for (size_t i = 0; i < ppb;) {
			size_t j = i;

			if (!changed[i]) {
				i++;
				continue;
			}
			while (j < ppb && changed[j])
				j++;
			err = util_pwrite_full(data_fd, d->data + i * PAGE_4K, (j - i) * PAGE_4K, *data_off);
			if (err) {
				json_decref(runs);
				err = conn_error(a->conn, err, "cannot write the commit's pages: %s",
						 strerror(-err));
				goto out;
			}
			json_array_append_new(runs, json_pack("[I,I]", (json_int_t)i,
							      (json_int_t)(j - i)));
			*data_off += (j - i) * PAGE_4K;
			*pages += j - i;
			i = j;
		}
		if (json_array_size(runs) == 0) { /* written back unchanged */
			json_decref(runs);
			continue;
		}
		json_array_append_new(jblocks, json_pack("{s:I,s:o,s:I}", "blk", (json_int_t)d->blk,
							 "runs", runs, "data", (json_int_t)start));
	}
	if (json_array_size(jblocks) || a->resized || a->pending) {
		entry = json_pack("{s:s,s:O}", "name", a->name, "blocks", jblocks);
		if (a->pending) {
			json_t *shape = json_array();
			unsigned nd = a->resized ? a->rs_ndim : a->ndim;
			const uint64_t *sh = a->resized ? a->rs_shape : a->shape;

			for (unsigned i = 0; i < nd; i++)
				json_array_append_new(shape, json_integer((json_int_t)sh[i]));
			json_object_set_new(entry, "create",
					    json_pack("{s:s,s:o,s:s#,s:I}", "dtype", a->dtype, "shape",
						      shape, "order", &a->order, (size_t)1, "block_size",
						      (json_int_t)a->blksize));
			json_array_append_new(arrs, entry);
			goto out;
		}
		if (a->resized) {
			json_t *shape = json_array();

			for (unsigned i = 0; i < a->rs_ndim; i++)
				json_array_append_new(shape, json_integer((json_int_t)a->rs_shape[i]));
			json_object_set_new(entry, "shape", shape);
		}
		json_array_append_new(arrs, entry);
	}
out:
	json_decref(jblocks);
	free(ds);
	free(changed);
	free(ents);
	free(tmp);
	return err;
}

/* ---- public -------------------------------------------------------------- */

void shma_array_info(shma_array *a, struct shma_array_info *out)
{
	struct shma_conn *c = a->conn;

	pthread_mutex_lock(&c->lock);
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", a->name);
	memcpy(out->dtype, a->dtype, sizeof(out->dtype));
	out->order = a->order;
	out->ndim = a->resized ? a->rs_ndim : a->ndim;
	memcpy(out->shape, a->resized ? a->rs_shape : a->shape, sizeof(out->shape));
	out->nbytes = a->resized ? a->rs_nbytes : a->nbytes;
	out->block_size = a->blksize;
	out->nblocks = nblocks_of(out->nbytes, a->blksize);
	out->revision = a->is_ref ? a->ref_rev : c->snap;
	out->deleted = a->deleted;
	pthread_mutex_unlock(&c->lock);
}

void *shma_array_data(shma_array *a)
{
	void *p;

	pthread_mutex_lock(&a->conn->lock);
	/* a ref maps only its extent: byte 0 of the array is where it would be */
	p = (void *)((uintptr_t)shma_mapping_addr(a->map) - a->first * a->blksize);
	pthread_mutex_unlock(&a->conn->lock);
	return p;
}

int shma_resize(shma_array *a, unsigned ndim, const uint64_t *shape)
{
	struct shma_conn *c = a->conn;
	uint64_t nbytes = a->itemsize, nb, old;
	int err = 0;

	if (conn_forked(c))
		return SHMA_EFORKED;
	pthread_mutex_lock(&c->lock);
	if (a->is_ref) {
		err = conn_error(c, -EROFS, "an opened ArrayRef is read-only");
		goto out;
	}
	if (a->deleted) {
		err = conn_error(c, -ENOENT, "array \"%s\" was deleted", a->name);
		goto out;
	}
	if (ndim > CONN_MAXDIM || (ndim && !shape)) {
		err = conn_error(c, -EINVAL, "shma_resize: at most 32 dimensions");
		goto out;
	}
	for (unsigned i = 0; i < ndim; i++)
		if (__builtin_mul_overflow(nbytes, shape[i], &nbytes) || nbytes > (1ull << 60)) {
			err = conn_error(c, -EINVAL, "shma_resize: the shape is too large");
			goto out;
		}
	nb = nblocks_of(nbytes, a->blksize);
	err = ensure_capacity(a, nb);
	if (err) {
		conn_error(c, err, "cannot grow the mapping of \"%s\"", a->name);
		goto out;
	}
	pthread_mutex_lock(&a->lock);
	old = a->nblocks;
	a->nblocks = nb;
	pthread_mutex_unlock(&a->lock);
	/* blocks cut off go, changes included */
	for (uint64_t b = nb; b < old; b++)
		shma_fileh_invalidate(a->fh, b);
	a->resized = true;
	a->rs_ndim = ndim;
	memcpy(a->rs_shape, shape, ndim * sizeof(*shape));
	a->rs_nbytes = nbytes;
out:
	pthread_mutex_unlock(&c->lock);
	return err;
}

int shma_append(shma_array *a, uint64_t n, void **rows)
{
	struct shma_array_info info;
	uint64_t shape[CONN_MAXDIM], old, rowbytes;
	unsigned axis;
	int err;

	shma_array_info(a, &info);
	if (info.ndim == 0)
		return conn_error(a->conn, -EINVAL, "a 0-dimensional array has no rows");
	axis = info.order == 'F' ? info.ndim - 1 : 0;
	memcpy(shape, info.shape, sizeof(shape));
	old = shape[axis];
	if (__builtin_add_overflow(shape[axis], n, &shape[axis]))
		return conn_error(a->conn, -EINVAL, "shma_append: too many rows");
	err = shma_resize(a, info.ndim, shape);
	if (err)
		return err;
	if (rows) {
		/* the rows of axis 0 (C) or of the last axis (F) are contiguous */
		rowbytes = old ? info.nbytes / old : 0;
		*rows = (char *)shma_array_data(a) + old * rowbytes;
	}
	return 0;
}
