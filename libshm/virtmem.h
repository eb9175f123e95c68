/* virtmem.h - user-space virtual memory: files, handles, pages, mappings
 * (internal side; the public API and the page state machine are in shma.h).
 *
 * Lock order (one process-wide mutex; nothing nests inside it):
 *
 *   user locks (taken by callbacks, or around shma_* calls)
 *     vm_mutex        all state below: files' nfileh, handles, pages, mappings,
 *                     the mapping registry, RAM allocation and LRU, the
 *                     read-ahead queue (ra_cond waits on it)
 *
 * Callbacks (loadblk/storeblk/mapblk) are always called with vm_mutex
 * released, so a user lock taken inside a callback and around a shma_* call
 * cannot deadlock against it.  Waiting for another thread's load is a
 * condition wait on vm_cond (broadcast whenever a load ends).
 *
 * Load race, T1 loads block b while T2 invalidates it:
 *
 *   T1 (fault on b)                       T2
 *   lock; page(b) = LOADING; unlock
 *   loadblk(b) ...                        lock; page(b) = LOADING_INVALIDATED
 *                                         unlock (does not wait)
 *   ... returns; lock
 *   state is LOADING_INVALIDATED: drop the result, load again
 *
 * Invariants (checked by page_check in debug builds):
 *   - a page is in its handle's pagemap and pagelist iff it exists; EMPTY
 *     blocks have no page.
 *   - LOADING*: not mapped anywhere (nmapped == 0); loader is the thread
 *     running the callback; copy-in: holds RAM; on no list.
 *   - LOADED: on ram->lru; copy-in: holds RAM; direct-map: holds no RAM,
 *     base_fd/base_off say what is mapped; mapped read-only where mapped.
 *   - DIRTY: on its handle's dirty list; mapped read-write where mapped;
 *     holds RAM (shared by every mapping), or — direct-map with
 *     SHMA_FILE_COW_PRIVATE — no RAM but a MAP_PRIVATE copy of the base in
 *     exactly one mapping (priv; the kernel copied only the 4 KiB pages
 *     written).  It was the only mapping covering the block when the copy
 *     was made; one made later moves the copy into RAM at its first access.
 *   - ram->npages_all counts the pages of every handle on that RAM.
 *   - a mapping's `mapped` bit for a block is set iff the block's page is
 *     mapped there; page.nmapped counts those bits over all mappings.
 */
#ifndef SHMA_VIRTMEM_H
#define SHMA_VIRTMEM_H

#include "pagemap.h"
#include "ram.h"
#include "shma.h"
#include "util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct shma_file {
	const struct shma_file_ops *ops;
	size_t blksize;
	unsigned blkshift; /* log2(blksize) */
	bool direct;	   /* direct-map (mapblk) rather than copy-in */
	unsigned flags;	   /* SHMA_FILE_* */
	void *opaque;
	size_t nfileh; /* open handles */
};

struct page {
	enum shma_page_state state;
	struct shma_fileh *fh;
	uint64_t blk;
	struct list_head in_fileh; /* fh->pagelist */
	struct list_head lru;	   /* ram->lru (LOADED with RAM) or fh->dirty (DIRTY) */
	bool has_ram;
	uint64_t ram_off; /* when has_ram */
	int base_fd;	  /* direct-map LOADED: what is mapped; -1 = hole */
	uint64_t base_off;
	pthread_t loader; /* LOADING*: the thread running the callback */
	unsigned nmapped; /* mappings this page is mapped into */
	/* DIRTY without RAM (direct-map, SHMA_FILE_COW_PRIVATE): the one mapping
	 * whose MAP_PRIVATE copy of the base holds the changes */
	struct shma_mapping *priv;
};

struct shma_fileh {
	struct shma_file *file;
	struct shma_ram *ram;
	struct pagemap pages;	   /* blk -> struct page */
	struct list_head pagelist; /* every page */
	struct list_head dirty;	   /* DIRTY pages (page.lru) */
	size_t ndirty;
	struct list_head mappings; /* struct shma_mapping.in_fileh */
};

struct shma_mapping {
	struct shma_fileh *fh;
	char *addr;
	size_t len;
	uint64_t first, nblk; /* file blocks [first, first + nblk) */
	uint64_t serial;      /* unique: tells a mapping from a later one at the same
			       * address and struct address */
	uint64_t *mapped;     /* bitmap over nblk: block mapped here */
	uint64_t ra_next;     /* the read fault that would continue a sequential run */
	unsigned ra_skip;     /* sequential faults to let pass before looking again */
	struct list_head in_fileh;
};

void vm_lock(void);
void vm_unlock(void);

/* The fault handler's entry: serve an access to addr.  write: 1 write,
 * 0 read, -1 unknown (then a read is assumed first; a write re-faults).
 * Returns 0 when served, 1 when addr is in no shma mapping, or an error. */
int vm_fault(void *addr, int write);

/* For the broker-backed client (conn.c), under vm_lock: */
/* Where the data of a DIRTY page is (valid until the page is dropped). */
const void *vm_page_data(const struct page *p);
/* Is p a private copy (only the written 4 KiB pages differ from the base)? */
static inline bool vm_page_private(const struct page *p)
{
	return p->priv != NULL;
}
/* Move a private copy into RAM, so it no longer depends on its base. */
int vm_page_to_ram(struct page *p);

/* Locking versions for conn_array.c: */
/* Block blk's private copy (if any) moves into RAM. */
int vm_detach_block(struct shma_fileh *fh, uint64_t blk);
/* Drop every page of fh, dirty ones included (a load in progress has its
 * result thrown away). */
void vm_fileh_drop_all(struct shma_fileh *fh);

/* Print a message and abort: for states the library cannot leave safely
 * (e.g. failing to unmap stale data).  Async-signal-safe. */
_Noreturn void vm_fatal(const char *msg);

#endif
