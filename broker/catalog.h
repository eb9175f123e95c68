/* catalog.h - arrays, revisions and block tables (MVCC) of the broker.
 *
 * Every change — create, delete, commit — makes the next revision (a global
 * counter; revision 0 is the empty catalog).  An array is a name plus
 * incarnations: deleting and creating it again makes a new incarnation with
 * a new id, so old snapshots keep seeing the old one.  An incarnation has
 * metadata versions (its shape changes by commit) and, per block, a chain of
 * versions newest first, each naming the pool slot holding that block's data
 * from the revision that wrote it (or a hole: zeros).
 *
 * What may be freed (LMDB's reader-table rule): a version written at revision
 * `from` and superseded at `until` is seen by revisions [from, until).  It is
 * freed, and its slot reused, once until <= the oldest retained revision and
 * no pinned revision (a connection's snapshot, a lease) lies in [from, until).
 * Retained: the newest keep_revisions revisions and every revision younger
 * than keep_ms.  So a slot is never written while any snapshot can see it.
 *
 * Spare slots: a freed version's slot still holds its block as of the
 * version's revision.  The catalog keeps the newest two such slots per
 * block as the block's spares, and its next commit writes in the newer: it
 * then copies from the current version only the chunks changed since (each
 * version records which chunks may differ from the one before, and each
 * spare which chunks changed since its version), not the whole block.  A
 * 1-page commit to a block committed to often moves a few pages instead of
 * the block.  Spares are free memory: beyond a budget (a
 * 64th of the pool or an eighth of the memory in use), an allocation that
 * would otherwise touch pool memory never used before takes the oldest big
 * enough spare's memory instead, so spares make the pool use at most that
 * much more memory.
 *
 * Not thread-safe: the broker's main loop owns it.  (Its own helper threads
 * only copy pages into slots no one else uses yet: see catalog_fill_start.)
 */
#ifndef SHMA_BROKER_CATALOG_H
#define SHMA_BROKER_CATALOG_H

#include "dtype.h"
#include "pagemap.h"
#include "pool.h"
#include "util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAT_MAXDIM 32
#define CAT_NAME_MAX 200
#define CAT_HOLE UINT64_MAX /* slot of a block that reads as zeros */
#define CAT_LIVE UINT64_MAX /* deleted revision of a live incarnation */

struct cat_meta {
	unsigned ndim;
	uint64_t shape[CAT_MAXDIM];
	uint64_t nbytes; /* itemsize * product(shape) */
};

struct cat_metaver {
	uint64_t rev;
	struct cat_meta m;
	struct cat_metaver *older, *newer;
};

/* A block is seen as CAT_CHUNKS chunks of blksize / CAT_CHUNKS bytes (at
 * least 4 KiB: blocks up to 2 MiB have one chunk per page). */
#define CAT_CHUNKS 512
#define CAT_CHUNK_WORDS (CAT_CHUNKS / 64)

struct cat_blkver {
	uint64_t rev;
	uint64_t slot; /* byte offset in the pool, or CAT_HOLE */
	struct cat_blkver *older, *newer;
	/* chunks that may differ from the older version (a superset: every
	 * chunk when unknown, or when the version is a hole) */
	uint64_t changed[CAT_CHUNK_WORDS];
};

struct cat_array {
	uint64_t id; /* unique per incarnation, never reused */
	char name[CAT_NAME_MAX + 1];
	struct dtype dtype;
	char order; /* 'C' or 'F' */
	uint64_t blksize;
	uint64_t created, deleted; /* revisions; deleted == CAT_LIVE while live */
	struct cat_metaver *meta;  /* newest first */
	struct pagemap blocks;	   /* blk -> newest struct cat_blkver */
	struct pagemap spares;	   /* blk -> struct cat_spare (catalog.c) */
	struct cat_array *prev;	   /* older incarnation of the same name */
	uint64_t nversions;	   /* block versions held (for stats) */
	uint64_t data_rev;	   /* newest revision that changed a block */
};

/* An error for a reply: code (-errno or SHMA_E*) and a message a person can
 * act on.  Conflicts also list the blocks (up to ARRAY_SIZE(blocks)). */
struct cat_err {
	int code;
	char msg[320];
	char array[CAT_NAME_MAX + 1];
	size_t nblocks;
	uint64_t blocks[64];
};

struct cat_retention {
	uint64_t keep_revisions; /* >= 1 */
	uint64_t keep_ms;
};

struct cat_stats {
	uint64_t head, oldest_kept;
	uint64_t narrays, nincarnations;
	uint64_t nversions, nslots;
	uint64_t pool_used, pool_size;
	uint64_t pool_spare; /* slots kept for their blocks' next commit: free
			      * for any use when the pool needs them (not in
			      * pool_used nor nslots) */
	uint64_t npins;
	uint64_t commits, conflicts;
};

struct catalog;

struct store;

/* pool and store are borrowed (they must outlive the catalog); now_ms: a
 * monotonic clock, used only for retention by age. */
int catalog_new(struct pool *pool, struct store *store, const struct cat_retention *ret,
		uint64_t now_ms, struct catalog **out);
void catalog_free(struct catalog **cp);

uint64_t catalog_head(const struct catalog *c);
void catalog_stats(const struct catalog *c, struct cat_stats *st);

/* ---- names --------------------------------------------------------------- */

/* Is name acceptable?  1..200 bytes of [A-Za-z0-9._-/], not starting with
 * '/' or '.', no "//", no "/." (so no "..").  *why says which rule broke. */
bool catalog_name_ok(const char *name, const char **why);

/* ---- snapshots ----------------------------------------------------------- */

/* Pin revision rev (a snapshot or lease): its data stays until unpinned.
 * SHMA_ENOTKEPT (with a message naming the retention) if rev is older than
 * every kept revision and not pinned already, -EINVAL if rev > head. */
int catalog_pin(struct catalog *c, uint64_t rev, struct cat_err *err);
void catalog_unpin(struct catalog *c, uint64_t rev);

/* Free what no retained or pinned revision can see (see above); now_ms also
 * becomes the catalog's idea of the time for catalog_pin. */
void catalog_gc(struct catalog *c, uint64_t now_ms);

/* The oldest revision kept by retention (pinned ones aside). */
uint64_t catalog_oldest_kept(const struct catalog *c);

/* ---- reading at a revision ----------------------------------------------- */

/* The incarnation of name visible at rev, or NULL. */
struct cat_array *catalog_find(struct catalog *c, const char *name, uint64_t rev);
/* Its metadata at rev (rev must be within [created, deleted)). */
const struct cat_meta *catalog_meta_at(const struct cat_array *a, uint64_t rev);
/* The slot of block blk at rev (CAT_HOLE if never written or a hole). */
uint64_t catalog_slot_at(const struct cat_array *a, uint64_t blk, uint64_t rev);

/* Call fn for every array visible at rev, in name order. */
void catalog_foreach(struct catalog *c, uint64_t rev,
		     void (*fn)(struct cat_array *a, void *arg), void *arg);

/* Call fn(blk, slot) for every block of a with data (not a hole) at rev. */
void catalog_blocks_at(const struct cat_array *a, uint64_t rev,
		       void (*fn)(uint64_t blk, uint64_t slot, void *arg), void *arg);

/* Call fn(blk, slot) for every block of a whose data at `to` differs from
 * `from` (slot CAT_HOLE: now zeros).  Both revisions within a's lifetime. */
void catalog_changes(const struct cat_array *a, uint64_t from, uint64_t to,
		     void (*fn)(uint64_t blk, uint64_t slot, void *arg), void *arg);

/* ---- changes: each makes the next revision -------------------------------- */

struct cat_create {
	const char *name;
	struct dtype dtype;
	char order;
	uint64_t blksize;
	struct cat_meta meta; /* ndim and shape; nbytes is computed */
};

/* Create an array.  -EEXIST if name is live at head; -EINVAL (err says why)
 * for a bad name, shape or block size; -EUSERS past max_arrays.
 * Returns the new revision in *rev. */
int catalog_create(struct catalog *c, const struct cat_create *cr, uint64_t max_arrays,
		   uint64_t now_ms, uint64_t *rev, struct cat_err *err);

/* Delete an array (live at head); -ENOENT if not. */
int catalog_delete(struct catalog *c, const char *name, uint64_t now_ms, uint64_t *rev,
		   struct cat_err *err);

/* A commit: based on snapshot `base`, per array a new shape and/or changed
 * 4 KiB pages of some blocks.  Page data is read from data_fd with pread:
 * for each changed block, its page runs in order, packed, from data_off. */
struct cat_run {
	uint32_t first, count; /* pages [first, first + count) of the block */
};

struct cat_blkchange {
	uint64_t blk;
	uint64_t data_off;
	size_t nruns;
	struct cat_run *runs; /* sorted, non-overlapping, within the block */
};

struct cat_arrchange {
	const char *name;
	bool create;	      /* the commit creates the array (cr; name = cr.name) */
	struct cat_create cr;
	bool resize;
	struct cat_meta meta; /* new ndim and shape when resize */
	size_t nblk;
	struct cat_blkchange *blks; /* sorted by blk, no duplicates */
};

struct cat_commit {
	uint64_t base;
	uint64_t max_arrays; /* limit for arrays the commit creates; 0: none */
	int data_fd; /* -1 if there is no page data */
	size_t narr;
	struct cat_arrchange *arrs;
};

/* What a commit did, for the invalidation message and the reply: per array,
 * the blocks that changed with their new slots (CAT_HOLE: now zeros).
 * Owned by the caller after a successful commit: free with
 * catalog_result_free(). */
struct cat_result_arr {
	struct cat_array *array; /* borrowed: valid until the next catalog_gc */
	bool resized;
	bool created; /* by this commit */
	struct cat_meta meta; /* after the commit */
	size_t n;
	uint64_t *blks, *slots;
};

struct cat_result {
	uint64_t rev;
	size_t narr;
	struct cat_result_arr *arrs;
};

/* Apply a commit.  All of it becomes visible at once, or nothing changes:
 * SHMA_ECONFLICT (err names the array and blocks) when a changed block, or an
 * array's shape, changed after base, or the array was deleted/re-created, or
 * an array the commit creates was created by another commit after base
 * (-EEXIST if it existed at base);
 * -ENOENT for an unknown array; -EINVAL for a block or page out of range or
 * runs out of order; -ENOSPC when the pool is full; -EIO/-errno when the
 * page data cannot be read (short data: -EIO). */
int catalog_commit(struct catalog *c, const struct cat_commit *cm, uint64_t now_ms,
		   struct cat_result *res, struct cat_err *err);
void catalog_result_free(struct cat_result *res);

/* ---- batches: changes that may still be undone ----------------------------
 *
 * The server makes several changes durable with one store sync (group
 * commit).  Between catalog_batch_begin and catalog_batch_end the changes
 * are made as usual, but nothing is freed (catalog_gc waits), so that
 * catalog_batch_end(c, false) can undo all of them when the store could not
 * make them durable.  Nobody but the server's own batch bookkeeping may pin
 * a revision of an open batch (those pins go before catalog_batch_end's
 * undo matters: they are dropped right after it). */
void catalog_batch_begin(struct catalog *c);
bool catalog_batch_open(const struct catalog *c);
/* A commit in a batch fills its new slots with what it changed (what the
 * store reads) at once, but copies the unchanged pages from the previous
 * versions only later: this starts those copies on helper threads, to run
 * while the store syncs; catalog_batch_end finishes them, before anyone can
 * see the slots.  Optional (catalog_batch_end copies what is left). */
void catalog_fill_start(struct catalog *c);
/* keep: the changes stay; else the catalog is as at catalog_batch_begin
 * (their new slots are freed, their arrays gone). */
void catalog_batch_end(struct catalog *c, bool keep);

/* ---- restoring from the store (at start, before any request) ---------------
 *
 * The store calls these to rebuild what it kept: every incarnation in id
 * order, then each block's versions in ascending revision order (their
 * slots already filled), then catalog_restore_done with the head revision,
 * the oldest revision the store kept whole (floor: older revisions are
 * never reported as kept, whatever the retention says) and the next id. */
struct cat_restore_array {
	uint64_t id;
	const char *name;
	struct dtype dtype;
	char order;
	uint64_t blksize;
	uint64_t created, deleted; /* deleted: CAT_LIVE while live */
	size_t nmeta;
	const struct cat_metaver *metas; /* rev and m; ascending, metas[0].rev == created */
};

/* -EINVAL for a record that cannot be (bad name, block size, order...). */
int catalog_restore_array(struct catalog *c, const struct cat_restore_array *ra,
			  struct cat_array **out);
/* slot: filled pool slot (now owned by the catalog) or CAT_HOLE. */
int catalog_restore_block(struct catalog *c, struct cat_array *a, uint64_t blk, uint64_t rev,
			  uint64_t slot);
/* next_id: the lowest incarnation id never used (ids are never reused,
 * even of incarnations the store no longer holds). */
int catalog_restore_done(struct catalog *c, uint64_t head, uint64_t floor, uint64_t next_id);

#endif
