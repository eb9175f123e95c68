/* util.c - small helpers shared by libshm modules. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

int util_pagemap_fd(void)
{
	static int fd = -1;
	static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&once);
	if (fd < 0)
		fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	pthread_mutex_unlock(&once);
	return fd;
}
