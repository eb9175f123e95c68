/* ram.c - memfd-backed local memory with a byte limit (see ram.h). */
#include "ram.h"
#include "virtmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Freed pages kept for reuse: at most a quarter of the limit, and this. */
#define RAM_CACHE_MAX ((size_t)256 << 20)

int shma_ram_new(size_t limit, shma_ram **out)
{
	struct shma_ram *ram;
	int err;

	limit &= ~(size_t)(PAGE_4K - 1);
	if (limit < PAGE_4K)
		return -EINVAL;
	ram = calloc(1, sizeof(*ram));
	if (!ram)
		return -ENOMEM;
	ram->limit = limit;
	list_init(&ram->lru);
	for (size_t i = 0; i < ARRAY_SIZE(ram->cache); i++)
		ram->cache[i] = RAM_NONE;
	ram->cache_max = limit / 4 < RAM_CACHE_MAX ? limit / 4 : RAM_CACHE_MAX;
	ram->max_pages = SHMA_RAM_DEFAULT_MAX_PAGES;
	err = balloc_init(&ram->units, limit / PAGE_4K);
	if (err)
		goto err_free_ram;
	ram->fd = memfd_create("shma-ram", MFD_CLOEXEC);
	if (ram->fd < 0) {
		err = -errno;
		goto err_fini_units;
	}
	if (ftruncate(ram->fd, (off_t)limit) < 0) {
		err = -errno;
		goto err_close_fd;
	}
	ram->view = mmap(NULL, limit, PROT_READ | PROT_WRITE, MAP_SHARED, ram->fd, 0);
	if (ram->view == MAP_FAILED) {
		err = -errno;
		goto err_close_fd;
	}
	*out = ram;
	return 0;

err_close_fd:
	util_close(ram->fd);
err_fini_units:
	balloc_fini(&ram->units);
err_free_ram:
	free(ram);
	return err;
}

int shma_ram_destroy(shma_ram **ramp)
{
	struct shma_ram *ram = *ramp;

	size_t nfileh;

	if (!ram)
		return 0;
	vm_lock();
	nfileh = ram->nfileh;
	vm_unlock();
	if (nfileh)
		return SHMA_EBUSY;
	munmap(ram->view, ram->limit);
	util_close(ram->fd);
	balloc_fini(&ram->units);
	free(ram);
	*ramp = NULL;
	return 0;
}

static unsigned order_of(size_t size)
{
	return (unsigned)__builtin_ctzll(size / PAGE_4K);
}

/* Give every cached page back to the system and to balloc. */
static size_t ram_trim_locked(struct shma_ram *ram)
{
	size_t freed = ram->cached;

	for (unsigned o = 0; o < ARRAY_SIZE(ram->cache); o++) {
		size_t size = (size_t)PAGE_4K << o;

		while (ram->cache[o] != RAM_NONE) {
			uint64_t off = ram->cache[o];

			ram->cache[o] = *(uint64_t *)ram_addr(ram, off);
			(void)fallocate(ram->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)off, (off_t)size);
			balloc_mark(&ram->units, off / PAGE_4K, size / PAGE_4K, false);
		}
	}
	ram->cached = 0;
	return freed;
}

/* Back [off, off+size) with memory now.  (fallocate, not
 * MADV_POPULATE_WRITE: setting up the view's page-table entries too costs
 * more than a loadblk that writes only part of the page saves.) */
static int ram_populate(struct shma_ram *ram, uint64_t off, size_t size)
{
	if (fallocate(ram->fd, 0, (off_t)off, (off_t)size) < 0)
		return -errno;
	return 0;
}

int ram_alloc(struct shma_ram *ram, size_t size, uint64_t *off)
{
	size_t unit;
	unsigned o;
	int err;

	if (!util_is_pow2(size) || size < PAGE_4K)
		return -EINVAL;
	o = order_of(size);
	if (o < ARRAY_SIZE(ram->cache) && ram->cache[o] != RAM_NONE) {
		*off = ram->cache[o];
		ram->cache[o] = *(uint64_t *)ram_addr(ram, *off);
		ram->cached -= size;
		goto out;
	}
	if (!balloc_alloc(&ram->units, size / PAGE_4K, &unit)) {
		if (!ram->cached || (ram_trim_locked(ram),
				     !balloc_alloc(&ram->units, size / PAGE_4K, &unit)))
			return SHMA_ERAMLIMIT;
	}
	*off = (uint64_t)unit * PAGE_4K;
	err = ram_populate(ram, *off, size);
	if (err) {
		(void)fallocate(ram->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)*off,
				(off_t)size);
		balloc_mark(&ram->units, unit, size / PAGE_4K, false);
		return err;
	}
out:
	ram->used += size;
	ram->npages++;
	return 0;
}

void ram_free(struct shma_ram *ram, uint64_t off, size_t size)
{
	unsigned o = order_of(size);

	ram->used -= size;
	ram->npages--;
	if (ram->cached + size <= ram->cache_max) {
		*(uint64_t *)ram_addr(ram, off) = ram->cache[o];
		ram->cache[o] = off;
		ram->cached += size;
		return;
	}
	/* Give the memory back; failure only means it stays allocated. */
	(void)fallocate(ram->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			(off_t)size);
	balloc_mark(&ram->units, off / PAGE_4K, size / PAGE_4K, false);
}

int shma_ram_set_max_pages(shma_ram *ram, size_t max_pages)
{
	if (max_pages == 0)
		return -EINVAL;
	vm_lock();
	ram->max_pages = max_pages;
	vm_unlock();
	return 0;
}

size_t shma_ram_trim(shma_ram *ram)
{
	size_t n;

	vm_lock();
	n = ram_trim_locked(ram);
	vm_unlock();
	return n;
}
