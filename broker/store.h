/* store.h - where committed changes go before they are acknowledged.
 *
 * The catalog calls the store once per change (create, delete, commit), after
 * the new data is in fresh pool slots and before the new revision becomes
 * visible: if the store fails, the change fails and nothing is visible.  A
 * durable store writes the record (page data read from the pool slots) and
 * returns only once it is safe; the in-memory store does nothing.
 */
#ifndef SHMA_BROKER_STORE_H
#define SHMA_BROKER_STORE_H

#include <stdint.h>

struct cat_array;
struct cat_commit;
struct cat_result;
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
	/* Make rec durable; 0 or -errno (the change is then refused). */
	int (*write)(struct store *st, const struct store_record *rec);
	void (*close)(struct store *st);
};

struct store {
	const struct store_ops *ops;
};

/* The in-memory store: accepts everything, keeps nothing. */
extern struct store store_memory;

#endif
