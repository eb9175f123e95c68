/* pagemap.h - sparse map from block number (uint64) to a pointer (internal).
 *
 * Open addressing with linear probing and backward-shift deletion: O(1)
 * expected get/set/del, memory proportional to the entries, not to the
 * largest block number.  Not thread-safe: the owner's lock protects it.
 */
#ifndef SHMA_PAGEMAP_H
#define SHMA_PAGEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pagemap_slot {
	uint64_t key;
	void *val; /* NULL = free slot */
};

struct pagemap {
	struct pagemap_slot *slots;
	size_t cap; /* power of two, or 0 */
	size_t len;
};

void pagemap_init(struct pagemap *pm);
/* Free the table (not the values). */
void pagemap_clear(struct pagemap *pm);
/* The value for key, or NULL. */
void *pagemap_get(const struct pagemap *pm, uint64_t key);
/* Set key to val (val != NULL), replacing any value.  0 or -ENOMEM (map
 * unchanged). */
int pagemap_set(struct pagemap *pm, uint64_t key, void *val);
/* Remove key; returns its value or NULL if absent. */
void *pagemap_del(struct pagemap *pm, uint64_t key);
static inline size_t pagemap_len(const struct pagemap *pm)
{
	return pm->len;
}

/* Iterate: for (size_t i = 0; pagemap_next(pm, &i, &key, &val);) visits each
 * entry once, in no particular order.  The map must not change meanwhile. */
bool pagemap_next(const struct pagemap *pm, size_t *pos, uint64_t *key, void **val);

#endif
