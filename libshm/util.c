/* util.c - small helpers shared by libshm modules. */
#include "util.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

void util_close(int fd)
{
	int saved = errno;

	if (fd >= 0)
		(void)close(fd);
	errno = saved;
}

void *util_reserve(void *addr, size_t len)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	void *p;

	if (addr)
		flags |= MAP_FIXED;
	p = mmap(addr, len, PROT_NONE, flags, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}
