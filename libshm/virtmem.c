/* virtmem.c - files, handles, pages, mappings and the fault path.
 *
 * See virtmem.h for the lock order, the load race and the invariants, and
 * shma.h for the page state machine.
 */
#include "virtmem.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_mutex_t vm_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t vm_cond = PTHREAD_COND_INITIALIZER;

/* Set while this thread holds vm_mutex: a fault then is a library bug or an
 * access from a signal handler that interrupted libshm, and would deadlock. */
static __thread bool vm_held __attribute__((tls_model("initial-exec")));

/* Set in the read-ahead helper thread (see below). */
static __thread bool in_readahead __attribute__((tls_model("initial-exec")));

/* Registry of mappings, sorted by address, for the fault path's lookup. */
static struct shma_mapping **vmas;
static size_t nvmas, capvmas;
static uint64_t vma_serial; /* the last mapping's serial */

void vm_lock(void)
{
	pthread_mutex_lock(&vm_mutex);
	vm_held = true;
}

void vm_unlock(void)
{
	vm_held = false;
	pthread_mutex_unlock(&vm_mutex);
}

static void vm_wait(void)
{
	vm_held = false;
	pthread_cond_wait(&vm_cond, &vm_mutex);
	vm_held = true;
}

_Noreturn void vm_fatal(const char *msg)
{
	static const char pfx[] = "shma: fatal: ";
	ssize_t r;

	r = write(STDERR_FILENO, pfx, sizeof(pfx) - 1);
	r = write(STDERR_FILENO, msg, strlen(msg));
	r = write(STDERR_FILENO, "\n", 1);
	(void)r;
	abort();
}

/* ---- mapping registry -------------------------------------------------- */

/* Index of the first mapping whose end is above addr. */
static size_t vma_search(const char *addr)
{
	size_t lo = 0, hi = nvmas;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (vmas[mid]->addr + vmas[mid]->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct shma_mapping *vma_lookup(const void *addr)
{
	size_t i = vma_search(addr);

	if (i < nvmas && (const char *)addr >= vmas[i]->addr)
		return vmas[i];
	return NULL;
}

static int vma_register(struct shma_mapping *m)
{
	size_t i;

	if (nvmas == capvmas) {
		size_t ncap = capvmas ? capvmas * 2 : 16;
		struct shma_mapping **n = realloc(vmas, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		vmas = n;
		capvmas = ncap;
	}
	i = vma_search(m->addr);
	memmove(&vmas[i + 1], &vmas[i], (nvmas - i) * sizeof(*vmas));
	vmas[i] = m;
	nvmas++;
	return 0;
}

static void vma_unregister(struct shma_mapping *m)
{
	size_t i = vma_search(m->addr);

	assert(i < nvmas && vmas[i] == m);
	memmove(&vmas[i], &vmas[i + 1], (nvmas - i - 1) * sizeof(*vmas));
	nvmas--;
	if (nvmas == 0) {
		free(vmas);
		vmas = NULL;
		capvmas = 0;
	}
}

static bool vma_covers(const struct shma_mapping *m, uint64_t blk)
{
	return blk >= m->first && blk - m->first < m->nblk;
}

static bool vma_test(const struct shma_mapping *m, uint64_t blk)
{
	uint64_t i = blk - m->first;

	return m->mapped[i / 64] & (1ull << (i % 64));
}

static void vma_set(struct shma_mapping *m, uint64_t blk, bool on)
{
	uint64_t i = blk - m->first;

	if (on)
		m->mapped[i / 64] |= 1ull << (i % 64);
	else
		m->mapped[i / 64] &= ~(1ull << (i % 64));
}

static char *vma_blk_addr(const struct shma_mapping *m, uint64_t blk)
{
	return m->addr + ((blk - m->first) << m->fh->file->blkshift);
}

/* ---- state checks ------------------------------------------------------ */

#ifdef NDEBUG
#define page_check(p) ((void)(p))
#else
static void page_check(const struct page *p)
{
	const struct shma_file *f = p->fh->file;

	assert(pagemap_get(&p->fh->pages, p->blk) == p);
	switch (p->state) {
	case SHMA_PAGE_LOADING:
	case SHMA_PAGE_LOADING_INVALIDATED:
		assert(p->nmapped == 0);
		assert(f->direct || p->has_ram);
		assert(list_empty(&p->lru));
		break;
	case SHMA_PAGE_LOADED:
		assert(f->direct ? !p->has_ram : p->has_ram);
		assert(!list_empty(&p->lru));
		assert(!p->priv);
		break;
	case SHMA_PAGE_DIRTY:
		assert(p->has_ram != (p->priv != NULL));
		assert(!p->priv || (p->nmapped == 1 && vma_test(p->priv, p->blk)));
		assert(!list_empty(&p->lru));
		break;
	default:
		assert(!"page in an impossible state");
	}
}
#endif

/* ---- pages ------------------------------------------------------------- */

/* Map page p into mapping m at its block, with the protection its state
 * calls for (read-write iff DIRTY). */
static int page_map_into(struct page *p, struct shma_mapping *m)
{
	struct shma_file *f = p->fh->file;
	int prot = p->state == SHMA_PAGE_DIRTY ? PROT_READ | PROT_WRITE : PROT_READ;
	void *addr = vma_blk_addr(m, p->blk), *r;

	if (p->has_ram)
		r = util_map_fixed(addr, f->blksize, prot, MAP_SHARED, p->fh->ram->fd, p->ram_off);
	else if (p->priv) /* a private copy exists only where it was made */
		return p->priv == m ? 0 : -EINVAL;
	else if (p->base_fd >= 0)
		r = util_map_fixed(addr, f->blksize, prot, MAP_SHARED, p->base_fd, p->base_off);
	else /* hole: zero pages that cost no memory */
		r = util_map_fixed(addr, f->blksize, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED)
		return -errno;
	if (!vma_test(m, p->blk)) {
		vma_set(m, p->blk, true);
		p->nmapped++;
	}
	return 0;
}

/* Apply fn to every mapping of p's handle that has p mapped. */
#define for_each_vma_mapping(m, p)                                              \
	for (struct list_head *it_ = (p)->fh->mappings.next;                     \
	     it_ != &(p)->fh->mappings &&                                        \
	     ((m) = container_of(it_, struct shma_mapping, in_fileh), 1);        \
	     it_ = it_->next)                                                    \
		if (vma_covers((m), (p)->blk) && vma_test((m), (p)->blk))

/* Take p out of every mapping (its blocks become inaccessible again). */
static void page_unmap_all(struct page *p)
{
	struct shma_mapping *m;

	if (p->nmapped == 0)
		return;
	for_each_vma_mapping(m, p) {
		/* Failing here would leave stale data readable: never continue. */
		if (!util_reserve(vma_blk_addr(m, p->blk), p->fh->file->blksize))
			vm_fatal("cannot unmap a dropped block (vm.max_map_count reached?)");
		vma_set(m, p->blk, false);
		p->nmapped--;
	}
	assert(p->nmapped == 0);
}

/* Set the protection of p in every mapping that has it, per its state. */
static void page_reprotect_all(struct page *p)
{
	int prot = p->state == SHMA_PAGE_DIRTY ? PROT_READ | PROT_WRITE : PROT_READ;
	struct shma_mapping *m;

	for_each_vma_mapping(m, p)
		if (util_protect(vma_blk_addr(m, p->blk), p->fh->file->blksize, prot) < 0)
			vm_fatal("cannot change the protection of a mapped block");
}

/* Drop page p (any state but LOADING*): unmap, free its RAM, forget it.  The
 * block becomes EMPTY. */
static void page_drop(struct page *p)
{
	struct shma_fileh *fh = p->fh;

	page_unmap_all(p);
	if (p->state == SHMA_PAGE_DIRTY)
		fh->ndirty--;
	list_del_init(&p->lru);
	list_del_init(&p->in_fileh);
	if (p->has_ram)
		ram_free(fh->ram, p->ram_off, fh->file->blksize);
	pagemap_del(&fh->pages, p->blk);
	fh->ram->npages_all--;
	free(p);
}

/* Evict up to max least-recently-used clean pages of ram (with ram_only,
 * only those holding RAM). */
static size_t ram_reclaim_locked(struct shma_ram *ram, size_t max, bool ram_only)
{
	struct list_head *it = ram->lru.next;
	size_t n = 0;

	while (n < max && it != &ram->lru) {
		struct page *p = container_of(it, struct page, lru);

		it = it->next;
		assert(p->state == SHMA_PAGE_LOADED);
		if (ram_only && !p->has_ram)
			continue;
		page_drop(p);
		n++;
	}
	ram->nreclaimed += n;
	return n;
}

/* Allocate a RAM page for fh, reclaiming clean pages at the limit. */
static int page_alloc_ram(struct shma_fileh *fh, uint64_t *off)
{
	for (;;) {
		int err = ram_alloc(fh->ram, fh->file->blksize, off);

		if (err != SHMA_ERAMLIMIT)
			return err;
		if (ram_reclaim_locked(fh->ram, 1, true) == 0)
			return SHMA_ERAMLIMIT;
	}
}

const void *vm_page_data(const struct page *p)
{
	if (p->has_ram)
		return ram_addr(p->fh->ram, p->ram_off);
	if (p->priv)
		return vma_blk_addr(p->priv, p->blk);
	return NULL;
}

/* A private copy (DIRTY, priv) moves into a RAM page shared by every
 * mapping; the data the program sees does not change. */
int vm_page_to_ram(struct page *p)
{
	struct shma_fileh *fh = p->fh;
	struct shma_mapping *m;
	uint64_t off;
	int err;

	if (!p->priv)
		return 0;
	err = page_alloc_ram(fh, &off);
	if (err)
		return err;
	memcpy(ram_addr(fh->ram, off), vma_blk_addr(p->priv, p->blk), fh->file->blksize);
	p->has_ram = true;
	p->ram_off = off;
	p->priv = NULL;
	for_each_vma_mapping(m, p)
		if (page_map_into(p, m) < 0)
			vm_fatal("cannot map a private copy moved into RAM");
	return 0;
}

/* May a write to p through m be served by a MAP_PRIVATE copy in m?  Only if
 * no other mapping of the handle covers the block. */
static bool can_cow_private(const struct page *p, const struct shma_mapping *m)
{
	const struct list_head *it;

	if (!(p->fh->file->flags & SHMA_FILE_COW_PRIVATE))
		return false;
	for (it = p->fh->mappings.next; it != &p->fh->mappings; it = it->next) {
		const struct shma_mapping *o = container_of(it, struct shma_mapping, in_fileh);

		if (o != m && vma_covers(o, p->blk))
			return false;
	}
	return true;
}

/* Copy the clean data of a direct-map block into RAM at off. */
static int page_copy_base(struct page *p, uint64_t off)
{
	size_t bs = p->fh->file->blksize;
	char *dst = ram_addr(p->fh->ram, off);

	if (p->base_fd < 0) {
		memset(dst, 0, bs); /* a recycled RAM page holds old data */
		return 0;
	}
	/* a base shorter than the block is refused (-EIO) */
	return util_pread_full(p->base_fd, dst, bs, p->base_off);
}

/* LOADED -> DIRTY, for a write through mapping wm. */
static int page_make_dirty(struct page *p, struct shma_mapping *wm)
{
	struct shma_fileh *fh = p->fh;
	struct shma_mapping *m;

	if (fh->file->direct && can_cow_private(p, wm)) {
		void *addr = vma_blk_addr(wm, p->blk), *r;

		if (p->base_fd >= 0)
			r = util_map_fixed(addr, fh->file->blksize, PROT_READ | PROT_WRITE,
					   MAP_PRIVATE, p->base_fd, p->base_off);
		else
			r = util_map_fixed(addr, fh->file->blksize, PROT_READ | PROT_WRITE,
					   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (r == MAP_FAILED)
			return -errno;
		if (!vma_test(wm, p->blk)) {
			vma_set(wm, p->blk, true);
			p->nmapped++;
		}
		p->priv = wm;
		list_del_init(&p->lru);
		p->state = SHMA_PAGE_DIRTY;
	} else if (fh->file->direct) {
		uint64_t off;
		int err = page_alloc_ram(fh, &off);

		if (err)
			return err;
		err = page_copy_base(p, off);
		if (err) {
			ram_free(fh->ram, off, fh->file->blksize);
			return err;
		}
		p->has_ram = true;
		p->ram_off = off;
		list_del_init(&p->lru);
		p->state = SHMA_PAGE_DIRTY;
		/* every mapping switches from the base to the private copy */
		for_each_vma_mapping(m, p)
			if (page_map_into(p, m) < 0)
				vm_fatal("cannot map a private copy over its base");
	} else {
		list_del_init(&p->lru); /* off the LRU: dirty pages are never reclaimed */
		p->state = SHMA_PAGE_DIRTY;
		page_reprotect_all(p);
	}
	list_add_tail(&p->lru, &fh->dirty);
	fh->ndirty++;
	return 0;
}

/* DIRTY -> LOADED (copy-in) or EMPTY (direct-map). */
static void page_mark_stored(struct page *p)
{
	struct shma_fileh *fh = p->fh;

	if (fh->file->direct) {
		page_drop(p);
		return;
	}
	list_del_init(&p->lru);
	fh->ndirty--;
	p->state = SHMA_PAGE_LOADED;
	list_add_tail(&p->lru, &fh->ram->lru);
	page_reprotect_all(p);
}

/* Make block blk of fh available: returns it LOADED or DIRTY, loading it if
 * needed.  Called and returns with the lock held; releases it around the
 * callback and while waiting for another thread's load.
 *
 * The read-ahead thread never waits for another thread's load: it would come
 * back to fh after the wait, and nothing keeps fh alive meanwhile (the owner
 * may close it as soon as its own load is done: shma_fileh_close waits for
 * loads running, not for waiters).  Its own load is safe: close waits for it. */
static int page_get(struct shma_fileh *fh, uint64_t blk, struct page **out)
{
	struct shma_file *f = fh->file;
	struct page *p;
	int err;

retry:
	p = pagemap_get(&fh->pages, blk);
	if (p && (p->state == SHMA_PAGE_LOADING || p->state == SHMA_PAGE_LOADING_INVALIDATED)) {
		if (pthread_equal(p->loader, pthread_self()))
			return SHMA_ERECURSIVE;
		if (in_readahead)
			return -EAGAIN; /* the loader maps it; nothing to read ahead */
		vm_wait();
		goto retry;
	}
	if (p) {
		page_check(p);
		*out = p;
		return 0;
	}

	/* the bound on pages (each costs mappings): evict clean ones, as many
	 * as it takes (the bound may have been lowered) */
	while (fh->ram->npages_all >= fh->ram->max_pages)
		if (ram_reclaim_locked(fh->ram, 1, false) == 0)
			return SHMA_ERAMLIMIT;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fh = fh;
	p->blk = blk;
	p->base_fd = -1;
	p->state = SHMA_PAGE_LOADING;
	p->loader = pthread_self();
	list_init(&p->lru);
	if (!f->direct) {
		err = page_alloc_ram(fh, &p->ram_off);
		if (err)
			goto err_free_page;
		p->has_ram = true;
	}
	err = pagemap_set(&fh->pages, blk, p);
	if (err)
		goto err_free_ram;
	list_add_tail(&p->in_fileh, &fh->pagelist);
	fh->ram->npages_all++;

	vm_unlock();
	if (f->direct) {
		int fd = -1;
		uint64_t off = 0;

		err = f->ops->mapblk(f, blk, &fd, &off);
		if (!err && fd >= 0 && off % PAGE_4K)
			err = -EINVAL;
		p->base_fd = fd < 0 ? -1 : fd;
		p->base_off = off;
	} else {
		err = f->ops->loadblk(f, blk, ram_addr(fh->ram, p->ram_off));
	}
	vm_lock();

	if (p->state == SHMA_PAGE_LOADING_INVALIDATED || err) {
		/* invalidated meanwhile: throw the result away and load again;
		 * failed: the block stays EMPTY */
		bool again = p->state == SHMA_PAGE_LOADING_INVALIDATED;

		p->state = SHMA_PAGE_LOADED; /* any droppable state */
		page_drop(p);
		pthread_cond_broadcast(&vm_cond);
		if (again)
			goto retry;
		return err;
	}
	p->state = SHMA_PAGE_LOADED;
	list_add_tail(&p->lru, &fh->ram->lru);
	pthread_cond_broadcast(&vm_cond);
	page_check(p);
	*out = p;
	return 0;

err_free_ram:
	if (p->has_ram)
		ram_free(fh->ram, p->ram_off, f->blksize);
err_free_page:
	free(p);
	return err;
}

/* Serve an access to block blk of m.  write: 1, 0, or -1 (unknown).
 * Called with the lock held. */
static int vm_access(struct shma_mapping *m, uint64_t blk, int write)
{
	struct shma_fileh *fh = m->fh;
	char *baddr = vma_blk_addr(m, blk);
	uint64_t serial = m->serial;
	struct shma_mapping *now;
	struct page *p;
	int err;

	err = page_get(fh, blk, &p);
	if (err)
		return err;
	/* The mapping may have been unmapped while the lock was released (the
	 * caller's race, or read-ahead's): then there is nothing to map, and a
	 * retried access meets whatever is there now. */
	now = vma_lookup(baddr);
	if (!now || now != m || now->serial != serial)
		return 0;
	/* unknown direction and already mapped read-only here: it was a write */
	if (write < 0 && vma_test(m, blk) && p->state == SHMA_PAGE_LOADED)
		write = 1;
	if (write > 0 && p->state == SHMA_PAGE_LOADED) {
		/* remaps or reprotects it wherever it is mapped already */
		err = page_make_dirty(p, m);
		if (err)
			return err;
	}
	/* another mapping needs a private copy: it moves into shared RAM */
	if (p->priv && p->priv != m) {
		err = vm_page_to_ram(p);
		if (err)
			return err;
	}
	if (p->state == SHMA_PAGE_LOADED) {
		/* most recently used goes to the tail */
		list_del_init(&p->lru);
		list_add_tail(&p->lru, &fh->ram->lru);
	}
	if (!vma_test(m, blk))
		return page_map_into(p, m);
	return 0; /* another thread mapped it meanwhile */
}

/* ---- read-ahead ---------------------------------------------------------
 *
 * For files with SHMA_FILE_READAHEAD (direct-map): a mapping read block
 * after block gets the next RA_WINDOW blocks mapped and their page-table
 * entries filled (MADV_POPULATE_READ) by a helper thread, while the reader
 * is busy with the data it has.  The reader then meets no fault until the
 * window's end, where the next window starts.  Setting up 4 KiB page-table
 * entries is most of the cost of a first read of mapped memory; this moves
 * it onto another core when one is idle.  The thread only ever does what an
 * access would (shma_prefault), so it can never show other data than the
 * reader would have got.
 */
#define RA_WINDOW 8
#define RA_QUEUE 64

struct ra_req {
	char *addr;
	size_t len, blksize;
};

#define RA_DENSE_RECHECK 64 /* sparse runs: look again after this many faults */

/* Did the reader use block blk of m densely, i.e. are most of its pages'
 * page-table entries there?  Read-ahead fills whole blocks: for a reader
 * that touches a byte per block it would be work for nothing. */
static bool ra_dense(const struct shma_mapping *m, uint64_t blk)
{
	size_t npages = m->fh->file->blksize / PAGE_4K, present = 0;
	uint64_t ents[512];
	int fd = util_pagemap_fd();

	if (fd < 0)
		return true; /* no way to tell: assume a reader */
	if (npages > ARRAY_SIZE(ents))
		npages = ARRAY_SIZE(ents); /* the first 2 MiB tell enough */
	if (pread(fd, ents, npages * 8, (off_t)((uintptr_t)vma_blk_addr(m, blk) / PAGE_4K * 8)) !=
	    (ssize_t)(npages * 8))
		return true;
	for (size_t i = 0; i < npages; i++)
		present += (ents[i] & PM_PRESENT) != 0;
	return present * 2 >= npages;
}

static struct ra_req ra_queue[RA_QUEUE]; /* under vm_mutex */
static unsigned ra_head, ra_len;
static bool ra_started, ra_broken;
static pthread_cond_t ra_cond = PTHREAD_COND_INITIALIZER;

static void *ra_thread(void *arg)
{
	(void)arg;
	in_readahead = true;
	vm_lock();
	for (;;) {
		struct ra_req r;

		while (ra_len == 0) {
			vm_held = false;
			pthread_cond_wait(&ra_cond, &vm_mutex);
			vm_held = true;
		}
		r = ra_queue[ra_head];
		ra_head = (ra_head + 1) % RA_QUEUE;
		ra_len--;
		vm_unlock();
		/* map as an access would, then fill the page tables, a block at
		 * a time (populating holds the mm's lock, which the reader's
		 * next mmap needs); if the mapping went meanwhile, either fails
		 * harmlessly */
		for (size_t off = 0; off < r.len; off += r.blksize)
			if (shma_prefault(r.addr + off, r.blksize, 0) == 0)
				(void)madvise(r.addr + off, r.blksize, MADV_POPULATE_READ);
		vm_lock();
	}
	return NULL;
}

/* fork() while the helper thread holds the lock would leave the child a
 * lock nobody releases: fork waits for it instead.  The child has no helper
 * thread, and gets no read-ahead (a child of a threaded process should not
 * start threads of its own behind its back). */
static void ra_before_fork(void)
{
	vm_lock();
}

static void ra_parent_after_fork(void)
{
	vm_unlock();
}

static void ra_child_after_fork(void)
{
	ra_len = 0;
	ra_broken = true;
	vm_unlock();
}

/* Block blk of m was just mapped by a read fault: extend a sequential run
 * with a window of read-ahead.  Under vm_mutex. */
static void ra_note(struct shma_mapping *m, uint64_t blk)
{
	uint64_t end = m->first + m->nblk, n;
	pthread_attr_t at;
	pthread_t th;

	if (!(m->fh->file->flags & SHMA_FILE_READAHEAD) || in_readahead || ra_broken)
		return;
	if (blk != m->ra_next) {
		m->ra_next = blk + 1; /* not (yet) sequential */
		return;
	}
	if (m->ra_skip) { /* a sparse run: no read-ahead for a while */
		m->ra_skip--;
		m->ra_next = blk + 1;
		return;
	}
	if (blk > m->first && !ra_dense(m, blk - 1)) {
		m->ra_skip = RA_DENSE_RECHECK;
		m->ra_next = blk + 1;
		return;
	}
	n = end - (blk + 1) < RA_WINDOW ? end - (blk + 1) : RA_WINDOW;
	m->ra_next = blk + 1 + n;
	if (n == 0 || ra_len == RA_QUEUE)
		return;
	if (!ra_started) {
		if (pthread_atfork(ra_before_fork, ra_parent_after_fork, ra_child_after_fork) ||
		    pthread_attr_init(&at) || pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) ||
		    pthread_create(&th, &at, ra_thread, NULL)) {
			ra_broken = true; /* no thread, no read-ahead: still correct */
			return;
		}
		pthread_attr_destroy(&at);
		ra_started = true;
	}
	ra_queue[(ra_head + ra_len) % RA_QUEUE] =
		(struct ra_req){ vma_blk_addr(m, blk + 1), (size_t)n << m->fh->file->blkshift,
				 m->fh->file->blksize };
	ra_len++;
	pthread_cond_signal(&ra_cond);
}

int vm_fault(void *addr, int write)
{
	struct shma_mapping *m;
	uint64_t blk, serial;
	int err;

	if (vm_held)
		vm_fatal("fault inside a shma mapping while libshm holds its lock "
			 "(a signal handler touched mapped memory?)");
	vm_lock();
	m = vma_lookup(addr);
	if (!m) {
		vm_unlock();
		return 1;
	}
	blk = m->first + (uint64_t)(((char *)addr - m->addr) >> m->fh->file->blkshift);
	serial = m->serial;
	err = vm_access(m, blk, write);
	/* (m is looked up again: it may have gone while a load ran) */
	if (!err && write <= 0) {
		struct shma_mapping *now = vma_lookup(addr);

		if (now && now == m && now->serial == serial)
			ra_note(m, blk);
	}
	vm_unlock();
	return err;
}

/* ---- public API -------------------------------------------------------- */

int shma_file_new(const struct shma_file_ops *ops, size_t blksize, void *opaque,
		  shma_file **out)
{
	struct shma_file *f;

	if (!ops || !util_is_pow2(blksize) || blksize < PAGE_4K)
		return -EINVAL;
	if (!ops->loadblk == !ops->mapblk) /* exactly one kind */
		return -EINVAL;
	if ((ops->flags & ~(unsigned)(SHMA_FILE_COW_PRIVATE | SHMA_FILE_READAHEAD)) ||
	    ((ops->flags & (SHMA_FILE_COW_PRIVATE | SHMA_FILE_READAHEAD)) && !ops->mapblk))
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->ops = ops;
	f->blksize = blksize;
	f->blkshift = (unsigned)__builtin_ctzll(blksize);
	f->direct = ops->mapblk != NULL;
	f->flags = ops->flags;
	f->opaque = opaque;
	*out = f;
	return 0;
}

int shma_file_destroy(shma_file **fp)
{
	struct shma_file *f = *fp;
	size_t nfileh;

	if (!f)
		return 0;
	vm_lock();
	nfileh = f->nfileh;
	vm_unlock();
	if (nfileh)
		return SHMA_EBUSY;
	free(f);
	*fp = NULL;
	return 0;
}

void *shma_file_opaque(const shma_file *f)
{
	return f->opaque;
}

size_t shma_file_blksize(const shma_file *f)
{
	return f->blksize;
}

int shma_fileh_open(shma_file *f, shma_ram *ram, shma_fileh **out)
{
	struct shma_fileh *fh;

	if (f->blksize > ram->limit)
		return -EINVAL; /* not even one page would fit */
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	fh->file = f;
	fh->ram = ram;
	pagemap_init(&fh->pages);
	list_init(&fh->pagelist);
	list_init(&fh->dirty);
	list_init(&fh->mappings);
	vm_lock();
	f->nfileh++;
	ram->nfileh++;
	vm_unlock();
	*out = fh;
	return 0;
}

/* Move the private copies that live only in m into RAM (m is going). */
static int mapping_release_private(struct shma_mapping *m)
{
	for (uint64_t b = m->first; b < m->first + m->nblk; b++) {
		struct page *p;
		int err;

		if (!vma_test(m, b))
			continue;
		p = pagemap_get(&m->fh->pages, b);
		if (p->priv != m)
			continue;
		err = vm_page_to_ram(p);
		if (err)
			return err;
	}
	return 0;
}

static void mapping_free_locked(struct shma_mapping *m)
{
	for (uint64_t b = m->first; b < m->first + m->nblk; b++)
		if (vma_test(m, b)) {
			struct page *p = pagemap_get(&m->fh->pages, b);

			p->nmapped--;
			assert(p->priv != m); /* released, or the handle is closing */
		}
	vma_unregister(m);
	list_del_init(&m->in_fileh);
	munmap(m->addr, m->len);
	free(m->mapped);
	free(m);
}

void shma_fileh_close(shma_fileh **fhp)
{
	struct shma_fileh *fh = *fhp;

	if (!fh)
		return;
	vm_lock();
	/* every page goes: private copies die with their mapping */
	for (struct list_head *it = fh->pagelist.next; it != &fh->pagelist; it = it->next)
		container_of(it, struct page, in_fileh)->priv = NULL;
	while (!list_empty(&fh->mappings))
		mapping_free_locked(container_of(fh->mappings.next, struct shma_mapping, in_fileh));
	/* a load still running (read-ahead's, say) finishes first: it finds
	 * its mapping gone and leaves the page for us to drop */
	for (;;) {
		bool loading = false;

		for (struct list_head *it = fh->pagelist.next; it != &fh->pagelist; it = it->next) {
			enum shma_page_state st = container_of(it, struct page, in_fileh)->state;

			if (st == SHMA_PAGE_LOADING || st == SHMA_PAGE_LOADING_INVALIDATED)
				loading = true;
		}
		if (!loading)
			break;
		vm_wait();
	}
	/* pages are no longer mapped anywhere: dropping them only frees */
	while (!list_empty(&fh->pagelist)) {
		page_drop(container_of(fh->pagelist.next, struct page, in_fileh));
	}
	pagemap_clear(&fh->pages);
	fh->file->nfileh--;
	fh->ram->nfileh--;
	vm_unlock();
	free(fh);
	*fhp = NULL;
}

enum shma_page_state shma_fileh_block_state(shma_fileh *fh, uint64_t blk)
{
	enum shma_page_state st;
	struct page *p;

	vm_lock();
	p = pagemap_get(&fh->pages, blk);
	st = p ? p->state : SHMA_PAGE_EMPTY;
	vm_unlock();
	return st;
}

static int cmp_page_blk(const void *a, const void *b)
{
	uint64_t x = (*(struct page *const *)a)->blk, y = (*(struct page *const *)b)->blk;

	return x < y ? -1 : x > y;
}

/* The dirty pages of fh in ascending block order (malloc'd; NULL with *n = 0
 * when there are none or on allocation failure, which sets *err). */
static struct page **dirty_sorted(struct shma_fileh *fh, size_t *n, int *err)
{
	struct page **v;
	struct list_head *it;
	size_t i = 0;

	*n = 0;
	*err = 0;
	if (fh->ndirty == 0)
		return NULL;
	v = malloc(fh->ndirty * sizeof(*v));
	if (!v) {
		*err = -ENOMEM;
		return NULL;
	}
	for (it = fh->dirty.next; it != &fh->dirty; it = it->next)
		v[i++] = container_of(it, struct page, lru);
	qsort(v, i, sizeof(*v), cmp_page_blk);
	*n = i;
	return v;
}

int shma_fileh_writeout(shma_fileh *fh, unsigned flags)
{
	const unsigned all = SHMA_WRITEOUT_STORE | SHMA_WRITEOUT_MARKSTORED;
	struct shma_file *f = fh->file;
	struct page **v;
	size_t n, i;
	int err;

	if (!flags || (flags & ~all))
		return -EINVAL;
	if ((flags & SHMA_WRITEOUT_STORE) && !f->ops->storeblk)
		return -ENOTSUP;
	vm_lock();
	v = dirty_sorted(fh, &n, &err);
	if (err)
		goto out_unlock;
	if (flags & SHMA_WRITEOUT_STORE) {
		/* storeblk runs unlocked; the caller serialises writeout with
		 * discard/invalidate/close of this handle (shma.h), so the
		 * pages stay put. */
		for (i = 0; i < n; i++) {
			uint64_t blk = v[i]->blk;
			const void *data = vm_page_data(v[i]);

			vm_unlock();
			err = f->ops->storeblk(f, blk, data);
			vm_lock();
			if (err)
				goto out_free;
		}
	}
	if (flags & SHMA_WRITEOUT_MARKSTORED)
		for (i = 0; i < n; i++)
			page_mark_stored(v[i]);
out_free:
	free(v);
out_unlock:
	vm_unlock();
	return err;
}

void shma_fileh_discard(shma_fileh *fh)
{
	vm_lock();
	while (!list_empty(&fh->dirty))
		page_drop(container_of(fh->dirty.next, struct page, lru));
	vm_unlock();
}

void shma_fileh_invalidate(shma_fileh *fh, uint64_t blk)
{
	struct page *p;

	vm_lock();
	p = pagemap_get(&fh->pages, blk);
	if (p) {
		if (p->state == SHMA_PAGE_LOADING)
			p->state = SHMA_PAGE_LOADING_INVALIDATED;
		else if (p->state != SHMA_PAGE_LOADING_INVALIDATED)
			page_drop(p);
	}
	vm_unlock();
}

int vm_detach_block(struct shma_fileh *fh, uint64_t blk)
{
	struct page *p;
	int err = 0;

	vm_lock();
	p = pagemap_get(&fh->pages, blk);
	if (p && p->priv)
		err = vm_page_to_ram(p);
	vm_unlock();
	return err;
}

void vm_fileh_drop_all(struct shma_fileh *fh)
{
	struct list_head *it, *next;

	vm_lock();
	for (it = fh->pagelist.next; it != &fh->pagelist; it = next) {
		struct page *p = container_of(it, struct page, in_fileh);

		next = it->next;
		if (p->state == SHMA_PAGE_LOADING)
			p->state = SHMA_PAGE_LOADING_INVALIDATED;
		else if (p->state != SHMA_PAGE_LOADING_INVALIDATED)
			page_drop(p);
	}
	vm_unlock();
}

size_t shma_fileh_dirty_blocks(shma_fileh *fh, uint64_t *out, size_t cap)
{
	struct page **v;
	size_t n, i;
	int err;

	vm_lock();
	if (cap == 0 || fh->ndirty == 0) {
		n = fh->ndirty;
		vm_unlock();
		return n;
	}
	v = dirty_sorted(fh, &n, &err);
	if (!v) {
		/* out of memory for sorting: still report the count */
		n = fh->ndirty;
		vm_unlock();
		return n;
	}
	for (i = 0; i < n && i < cap; i++)
		out[i] = v[i]->blk;
	vm_unlock();
	free(v);
	return n;
}

int shma_map(shma_fileh *fh, uint64_t first, uint64_t nblk, shma_mapping **out)
{
	struct shma_file *f = fh->file;
	struct shma_mapping *m;
	uint64_t len;
	int err;

	if (nblk == 0 || first + nblk < first || !util_mul_ok(nblk, f->blksize, &len) ||
	    len > SIZE_MAX / 2)
		return -EINVAL;
	err = shma_vm_install_handler();
	if (err)
		return err;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->mapped = calloc((size_t)((nblk + 63) / 64), sizeof(uint64_t));
	if (!m->mapped) {
		err = -ENOMEM;
		goto err_free_m;
	}
	m->fh = fh;
	m->first = first;
	m->nblk = nblk;
	m->ra_next = UINT64_MAX; /* two faults in a row make a run */
	m->len = (size_t)len;
	m->addr = util_reserve(NULL, m->len);
	if (!m->addr) {
		err = -errno;
		goto err_free_bitmap;
	}
	vm_lock();
	m->serial = ++vma_serial;
	err = vma_register(m);
	if (!err)
		list_add_tail(&m->in_fileh, &fh->mappings);
	vm_unlock();
	if (err)
		goto err_unmap;
	*out = m;
	return 0;

err_unmap:
	munmap(m->addr, m->len);
err_free_bitmap:
	free(m->mapped);
err_free_m:
	free(m);
	return err;
}

int shma_unmap(shma_mapping **mp)
{
	struct shma_mapping *m = *mp;
	int err;

	if (!m)
		return 0;
	vm_lock();
	err = mapping_release_private(m);
	if (!err)
		mapping_free_locked(m);
	vm_unlock();
	if (!err)
		*mp = NULL;
	return err;
}

void *shma_mapping_addr(const shma_mapping *m)
{
	return m->addr;
}

size_t shma_mapping_len(const shma_mapping *m)
{
	return m->len;
}

bool shma_mapping_block_mapped(const shma_mapping *m, uint64_t blk)
{
	bool r;

	vm_lock();
	r = vma_covers(m, blk) && vma_test(m, blk);
	vm_unlock();
	return r;
}

int shma_prefault(void *addr, size_t len, unsigned flags)
{
	char *a = addr, *end, *next;
	int err = 0;

	if (flags & ~(unsigned)SHMA_PREFAULT_WRITE)
		return -EINVAL;
	if (len == 0)
		return 0;
	if ((uintptr_t)a + len < (uintptr_t)a)
		return -EINVAL;
	end = a + len;
	vm_lock();
	while (a < end) {
		struct shma_mapping *m = vma_lookup(a);
		uint64_t blk;

		if (!m) {
			err = SHMA_ENOTMAPPED;
			break;
		}
		blk = m->first + (uint64_t)((a - m->addr) >> m->fh->file->blkshift);
		/* the next block's start, taken now: m may be gone once vm_access
		 * released the lock for a load */
		next = vma_blk_addr(m, blk) + m->fh->file->blksize;
		err = vm_access(m, blk, (flags & SHMA_PREFAULT_WRITE) ? 1 : 0);
		if (err)
			break;
		a = next;
	}
	vm_unlock();
	return err;
}

size_t shma_ram_reclaim(shma_ram *ram, size_t max)
{
	size_t n;

	vm_lock();
	n = ram_reclaim_locked(ram, max, false);
	vm_unlock();
	return n;
}

void shma_ram_stats(shma_ram *ram, struct shma_ram_stats *st)
{
	vm_lock();
	st->limit = ram->limit;
	st->used = ram->used;
	st->cached = ram->cached;
	st->npages = ram->npages;
	st->nreclaimed = ram->nreclaimed;
	vm_unlock();
}
