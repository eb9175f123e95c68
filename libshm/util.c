/* util.c - small helpers shared by libshm modules. */
#include "util.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(addr, len) ((void)(addr), (void)(len))
#endif

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
	if (p == MAP_FAILED)
		return NULL;
	/* Under memcheck: an access here is not an error of the program but a
	 * fault the library serves, so let the access happen and trap. */
	VALGRIND_MAKE_MEM_DEFINED(p, len);
	return p;
}
