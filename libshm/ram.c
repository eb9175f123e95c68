/* ram.c - memfd-backed local memory with a byte limit (see ram.h). */
#include "ram.h"
#include "virtmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

int ram_alloc(struct shma_ram *ram, size_t size, uint64_t *off)
{
	size_t unit;

	if (!util_is_pow2(size) || size < PAGE_4K)
		return -EINVAL;
	if (!balloc_alloc(&ram->units, size / PAGE_4K, &unit))
		return SHMA_ERAMLIMIT;
	if (fallocate(ram->fd, 0, (off_t)unit * PAGE_4K, (off_t)size) < 0) {
		int err = -errno;

		balloc_mark(&ram->units, unit, size / PAGE_4K, false);
		return err;
	}
	ram->used += size;
	ram->npages++;
	*off = (uint64_t)unit * PAGE_4K;
	return 0;
}

void ram_free(struct shma_ram *ram, uint64_t off, size_t size)
{
	/* Give the memory back; failure only means it stays allocated. */
	(void)fallocate(ram->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			(off_t)size);
	balloc_mark(&ram->units, off / PAGE_4K, size / PAGE_4K, false);
	ram->used -= size;
	ram->npages--;
}
