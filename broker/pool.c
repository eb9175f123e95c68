/* pool.c - the sealed memfd page pool (see pool.h). */
#include "pool.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int pool_init(struct pool *p, uint64_t size)
{
	const int seals = F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	int err;

	if (size == 0 || size % PAGE_4K)
		return -EINVAL;
	p->size = size;
	p->nslots = 0;
	p->touched = 0;
	p->used_once = calloc((size / PAGE_4K + 63) / 64 + 1, sizeof(*p->used_once));
	if (!p->used_once)
		return -ENOMEM;
	err = balloc_init(&p->units, size / PAGE_4K);
	if (err) {
		free(p->used_once);
		return err;
	}
	p->fd = memfd_create("shma-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (p->fd < 0) {
		err = -errno;
		goto err_fini_units;
	}
	if (ftruncate(p->fd, (off_t)size) < 0) {
		err = -errno;
		goto err_close_fd;
	}
	/* MAP_NORESERVE: memory is used only where slots are written */
	p->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, p->fd, 0);
	if (p->base == MAP_FAILED) {
		err = -errno;
		goto err_close_fd;
	}
	/* After this, only the mapping above can write. */
	if (fcntl(p->fd, F_ADD_SEALS, seals) < 0) {
		err = -errno;
		goto err_unmap;
	}
	return 0;

err_unmap:
	munmap(p->base, size);
err_close_fd:
	util_close(p->fd);
err_fini_units:
	balloc_fini(&p->units);
	free(p->used_once);
	return err;
}

void pool_fini(struct pool *p)
{
	munmap(p->base, p->size);
	util_close(p->fd);
	balloc_fini(&p->units);
	free(p->used_once);
	p->used_once = NULL;
}

/* Has unit u ever been allocated (its memory backed)? */
static bool unit_used_once(const struct pool *p, size_t u)
{
	return p->used_once[u / 64] >> (u % 64) & 1;
}

bool pool_alloc(struct pool *p, uint64_t size, uint64_t *off)
{
	size_t unit;

	if (!balloc_alloc(&p->units, size / PAGE_4K, &unit))
		return false;
	*off = (uint64_t)unit * PAGE_4K;
	p->nslots++;
	for (size_t u = unit; u < unit + size / PAGE_4K; u++)
		if (!unit_used_once(p, u)) {
			p->used_once[u / 64] |= UINT64_C(1) << (u % 64);
			p->touched += PAGE_4K;
		}
	return true;
}

bool pool_alloc_reused(struct pool *p, uint64_t size, uint64_t *off)
{
	size_t unit;

	if (!balloc_alloc(&p->units, size / PAGE_4K, &unit))
		return false;
	for (size_t u = unit; u < unit + size / PAGE_4K; u++)
		if (!unit_used_once(p, u)) {
			balloc_mark(&p->units, unit, size / PAGE_4K, false);
			return false;
		}
	*off = (uint64_t)unit * PAGE_4K;
	p->nslots++;
	return true;
}

void pool_shrink(struct pool *p, uint64_t off, uint64_t size, uint64_t new_size)
{
	balloc_mark(&p->units, (off + new_size) / PAGE_4K, (size - new_size) / PAGE_4K, false);
}

void pool_free(struct pool *p, uint64_t off, uint64_t size)
{
	balloc_mark(&p->units, off / PAGE_4K, size / PAGE_4K, false);
	p->nslots--;
}
