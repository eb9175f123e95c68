/* balloc.h - allocator of power-of-two runs of 4 KiB units (internal).
 *
 * Manages offsets in an arena of nunits units (the RAM memfd, the broker's
 * page pool): an allocation of n units (n a power of two) is aligned to n
 * units, so it can be mapped at a block boundary.  A bitmap says which units
 * are in use; the search is first-fit from the lowest unit that may be free,
 * so freed memory (already backed by pages) is reused before untouched
 * memory, and what is in use stays packed at the start.
 * Not thread-safe: the owner's lock protects it.
 */
#ifndef SHMA_BALLOC_H
#define SHMA_BALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct balloc {
	size_t nunits;
	size_t used; /* units in use */
	size_t hint; /* every unit below it is in use */
	uint64_t *bitmap;
};

/* 0 or -ENOMEM. */
int balloc_init(struct balloc *ba, size_t nunits);
void balloc_fini(struct balloc *ba);
/* Find and mark n free units aligned to n (n a power of two); *unit is the
 * first.  false when no such run is free. */
bool balloc_alloc(struct balloc *ba, size_t n, size_t *unit);
/* Mark [unit, unit+n) in use or free (used by recovery and by undo). */
void balloc_mark(struct balloc *ba, size_t unit, size_t n, bool used);
bool balloc_is_free(const struct balloc *ba, size_t unit, size_t n);

#endif
