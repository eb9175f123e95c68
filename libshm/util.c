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
	static pid_t owner;
	static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
	int r;

	pthread_mutex_lock(&once);
	/* /proc/self is resolved at open: after fork() the inherited fd still
	 * describes the parent, so a child opens its own */
	if (fd >= 0 && owner != getpid()) {
		util_close(fd);
		fd = -1;
	}
	if (fd < 0) {
		fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		owner = getpid();
	}
	r = fd;
	pthread_mutex_unlock(&once);
	return r;
}

int util_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}

int util_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}
