/* store.h - where committed changes go before they are acknowledged.
 *
 * The catalog calls write() once per change (create, delete, commit), after
 * the new data is in fresh pool slots and before the new revision becomes
 * visible: if write() fails, the change fails and nothing is visible.
 * write() only stages the record; the server then calls sync() once for all
 * the changes that arrived together (group commit) and acknowledges them
 * only when it returned 0.  If sync() fails, every change staged since the
 * last sync is lost and the server undoes them (catalog_batch_end).
 *
 * Two stores: the in-memory one keeps nothing (a restart starts empty); the
 * LMDB one (store_lmdb.c, docs/STORE.md) keeps every change at page
 * granularity in a data directory and rebuilds the catalog and the pool
 * from it at start.
 */
#ifndef SHMA_BROKER_STORE_H
#define SHMA_BROKER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cat_array;
struct cat_commit;
struct cat_result;
struct catalog;
struct pool;

enum store_kind { STORE_CREATE, STORE_DELETE, STORE_COMMIT };

struct store_record {
	enum store_kind kind;
	uint64_t rev;
	uint64_t time_ms;
	const struct cat_array *array;	/* CREATE, DELETE */
	const struct cat_commit *commit; /* COMMIT: what the client sent */
	const struct cat_result *result; /* COMMIT: new slots per changed block */
	const struct pool *pool;	 /* where the new slots' data is */
};

struct store;

struct store_ops {
	/* Stage rec; 0 or -errno (the change is then refused, nothing of it
	 * stays staged): -ENOSPC when the store is full. */
	int (*write)(struct store *st, const struct store_record *rec);
	/* Make everything staged durable.  0, or -errno: all of it is lost. */
	int (*sync)(struct store *st);
	/* Has write() staged anything since the last sync()? */
	bool (*pending)(const struct store *st);
	/* Revisions older than oldest are no longer needed after a restart:
	 * their history may go (done by a later sync or tick).  Optional. */
	void (*compact)(struct store *st, uint64_t oldest);
	/* Periodic work, about once a second: compaction when idle, the async
	 * store's flush to disk; 0 or -errno.  Optional. */
	int (*tick)(struct store *st);
	void (*close)(struct store *st);
};

struct store {
	const struct store_ops *ops;
	uint64_t max_blksize; /* largest block size it can keep; 0: any */
};

/* The in-memory store: accepts everything, keeps nothing. */
extern struct store store_memory;

/* ---- the LMDB store -------------------------------------------------------- */

struct store_lmdb_opts {
	const char *dir;   /* created (0700) if missing */
	uint64_t max_size; /* bytes the store may hold */
	bool async;	   /* no fsync per sync(); tick() syncs */
};

/* Open (or create) the store in o->dir.  new_id: the store id to record if
 * the store is new (32 hex characters).  A damaged store, or a directory
 * that holds something else, is refused: -EINVAL/-EIO/... with errbuf
 * saying what and where.  *out is freed with ops->close. */
int store_lmdb_open(const struct store_lmdb_opts *o, const char *new_id, struct store **out,
		    char *errbuf, size_t errlen);
/* The store id recorded in the store (valid while it is open). */
const char *store_lmdb_id(const struct store *st);
/* Rebuild the catalog (new, empty) and fill pool slots from the store.  A
 * damaged record refuses the start: errbuf says what and where. */
int store_lmdb_restore(struct store *st, struct catalog *c, struct pool *pool, char *errbuf,
		       size_t errlen);

#endif
