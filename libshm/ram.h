/* ram.h - local memory for private pages (internal side of shma_ram).
 *
 * One memfd of `limit` bytes, mapped read-write once in this process (the
 * "view" through which the library fills and copies pages).  Pages are
 * power-of-two sized, aligned to their size, carved from the memfd by
 * balloc.  Memory is reserved with fallocate at allocation and
 * released with a hole punch at free.
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
	size_t used;	  /* bytes allocated */
	size_t npages;	  /* pages allocated */
	size_t nreclaimed;
	size_t nfileh;	      /* open file handles using this RAM */
	struct list_head lru; /* clean pages that hold RAM, least recently used first
			       * (struct page.lru; managed by virtmem) */
};

/* Allocate size bytes (power of two >= 4 KiB) of RAM: *off is its offset in
 * the memfd, ram->view + *off its address.  SHMA_ERAMLIMIT when no room is
 * left, -errno if the memory cannot be reserved. */
int ram_alloc(struct shma_ram *ram, size_t size, uint64_t *off);
/* Free a page allocated by ram_alloc; its memory goes back to the system. */
void ram_free(struct shma_ram *ram, uint64_t off, size_t size);

static inline void *ram_addr(const struct shma_ram *ram, uint64_t off)
{
	return ram->view + off;
}

#endif
