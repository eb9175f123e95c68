/* ram.h - local memory for private pages (internal side of shma_ram).
 *
 * One memfd of `limit` bytes, mapped read-write once in this process (the
 * "view" through which the library fills and copies pages).  Pages are
 * power-of-two sized, aligned to their size, carved from the memfd by
 * balloc.  A new page's memory is reserved at allocation (fallocate: an
 * error now rather than a SIGBUS later).  A freed page goes to a per-size
 * cache, still populated and mapped in the view, up to cache_max bytes: the next
 * allocation of that size (typically: evict one, load one at the limit) costs
 * no system call.  Pages beyond the cache are hole-punched at once; the cache
 * is punched when balloc needs its room, or by shma_ram_trim().
 *
 * Not thread-safe by itself: virtmem's lock protects every field.
 */
#ifndef SHMA_RAM_H
#define SHMA_RAM_H

#include "balloc.h"
#include "shma.h"
#include "util.h"

#include <stdint.h>

struct shma_ram {
	int fd;		  /* the memfd; CLOEXEC */
	char *view;	  /* fd mapped RW, [0, limit) */
	size_t limit;	  /* bytes, multiple of 4 KiB */
	struct balloc units; /* which 4 KiB units of the memfd are in use */
	size_t used;	  /* bytes held by allocated pages */
	size_t cached;	  /* bytes held by freed pages kept for reuse */
	size_t cache_max;
	uint64_t cache[64]; /* per log2(size / 4 KiB): offset of the first cached
			     * page, RAM_NONE if none; each cached page holds
			     * the offset of the next in its first 8 bytes */
	size_t npages;	  /* pages allocated */
	size_t nreclaimed;
	size_t npages_all; /* pages of any kind of the handles on this RAM */
	size_t max_pages;  /* bound on npages_all (mappings cost kernel VMAs) */
	size_t nfileh;	      /* open file handles using this RAM */
	struct list_head lru; /* clean (LOADED) pages, least recently used first
			       * (struct page.lru; managed by virtmem) */
};

/* Allocate size bytes (power of two >= 4 KiB) of RAM: *off is its offset in
 * the memfd, ram->view + *off its address.  SHMA_ERAMLIMIT when no room is
 * left, -errno if the memory cannot be reserved. */
int ram_alloc(struct shma_ram *ram, size_t size, uint64_t *off);
/* Free a page allocated by ram_alloc (into the cache, or back to the
 * system). */
void ram_free(struct shma_ram *ram, uint64_t off, size_t size);

#define RAM_NONE UINT64_MAX

static inline void *ram_addr(const struct shma_ram *ram, uint64_t off)
{
	return ram->view + off;
}

#endif
