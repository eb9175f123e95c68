/* pool.h - the broker's page pool: one sealed memfd of 4 KiB units.
 *
 * Committed block data lives in slots: power-of-two runs of units, aligned
 * to their size (balloc), so a worker maps a block with one mmap of the pool
 * fd at the slot's offset.  The broker maps the whole pool read-write once,
 * then seals the memfd with F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW
 * | F_SEAL_SEAL: from then on nobody holding the fd — a worker, or anyone
 * reopening /proc/<pid>/fd/N — can change its data or size; only the broker's
 * own mapping writes.  Slots are written only while no snapshot can see them
 * (the catalog's rule), so a worker's view never changes under it.
 *
 * Seals also forbid punching holes, so a freed slot's memory is not returned
 * to the system: it is reused by the next allocation.  Memory use is every
 * unit ever allocated (touched; the catalog's spare slots count as in use
 * here, within their budget: catalog.h), never more than the pool size.
 */
#ifndef SHMA_BROKER_POOL_H
#define SHMA_BROKER_POOL_H

#include "balloc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool {
	int fd;		/* the sealed memfd; CLOEXEC */
	char *base;	/* fd mapped read-write, [0, size) */
	uint64_t size;	/* bytes, multiple of 4 KiB */
	struct balloc units;
	uint64_t nslots; /* slots allocated */
	uint64_t *used_once; /* a bit per unit: ever allocated (its memory is
			      * backed, or was) */
	uint64_t touched;    /* bytes of those units */
};

/* Create and seal a pool of size bytes.  0 or -errno. */
int pool_init(struct pool *p, uint64_t size);
void pool_fini(struct pool *p);

/* Allocate a slot of size bytes (power of two >= 4 KiB); *off is its byte
 * offset.  false when the pool has no room. */
bool pool_alloc(struct pool *p, uint64_t size, uint64_t *off);
/* The same, but only in units allocated before (their memory is already
 * backed): false when those have no room, even if untouched memory has. */
bool pool_alloc_reused(struct pool *p, uint64_t size, uint64_t *off);
void pool_free(struct pool *p, uint64_t off, uint64_t size);
/* A slot of size bytes becomes one of new_size (a smaller power of two, so
 * still aligned to its size): the rest is free. */
void pool_shrink(struct pool *p, uint64_t off, uint64_t size, uint64_t new_size);

static inline void *pool_addr(const struct pool *p, uint64_t off)
{
	return p->base + off;
}

static inline uint64_t pool_used(const struct pool *p)
{
	return (uint64_t)p->units.used * 4096;
}

#endif
