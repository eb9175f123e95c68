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
	ram->nunits = limit / PAGE_4K;
	list_init(&ram->lru);
	ram->bitmap = calloc((ram->nunits + 63) / 64, sizeof(uint64_t));
	if (!ram->bitmap) {
		err = -ENOMEM;
		goto err_free_ram;
	}
	ram->fd = memfd_create("shma-ram", MFD_CLOEXEC);
	if (ram->fd < 0) {
		err = -errno;
		goto err_free_bitmap;
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
err_free_bitmap:
	free(ram->bitmap);
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
	free(ram->bitmap);
	free(ram);
	*ramp = NULL;
	return 0;
}

/* Are units [u, u+n) all free?  n is a power of two, u a multiple of n. */
static bool units_free(const struct shma_ram *ram, size_t u, size_t n)
{
	if (n >= 64) {
		for (size_t w = u / 64; w < (u + n) / 64; w++)
			if (ram->bitmap[w])
				return false;
		return true;
	}
	uint64_t mask = ((1ull << n) - 1) << (u % 64);

	return (ram->bitmap[u / 64] & mask) == 0;
}

static void units_set(struct shma_ram *ram, size_t u, size_t n, bool used)
{
	for (size_t i = u; i < u + n;) {
		size_t bit = i % 64, k = 64 - bit < u + n - i ? 64 - bit : u + n - i;
		uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << bit;

		if (used)
			ram->bitmap[i / 64] |= mask;
		else
			ram->bitmap[i / 64] &= ~mask;
		i += k;
	}
}

int ram_alloc(struct shma_ram *ram, size_t size, uint64_t *off)
{
	size_t n = size / PAGE_4K, ncand, start, c;

	if (!util_is_pow2(size) || size < PAGE_4K || n > ram->nunits)
		return n > ram->nunits ? SHMA_ERAMLIMIT : -EINVAL;
	if (ram->used + size > ram->limit)
		return SHMA_ERAMLIMIT;
	/* Next fit over size-aligned candidates, starting at the hint. */
	ncand = ram->nunits / n;
	start = (ram->hint / n) % ncand;
	for (c = 0; c < ncand; c++) {
		size_t u = ((start + c) % ncand) * n;

		if (!units_free(ram, u, n))
			continue;
		if (fallocate(ram->fd, 0, (off_t)u * PAGE_4K, (off_t)size) < 0)
			return -errno;
		units_set(ram, u, n, true);
		ram->hint = u + n;
		ram->used += size;
		ram->npages++;
		*off = (uint64_t)u * PAGE_4K;
		return 0;
	}
	return SHMA_ERAMLIMIT;
}

void ram_free(struct shma_ram *ram, uint64_t off, size_t size)
{
	/* Give the memory back; failure only means it stays allocated. */
	(void)fallocate(ram->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			(off_t)size);
	units_set(ram, off / PAGE_4K, size / PAGE_4K, false);
	ram->used -= size;
	ram->npages--;
}
