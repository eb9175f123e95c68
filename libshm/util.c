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

/* ThreadSanitizer's mmap interceptor counts the new mapping as a write to
 * all of it, so a block remapped while another thread reads what was mapped
 * there before is reported as a race, though the kernel orders page-table
 * changes against accesses.  Inside an ignore-writes region it forgets the
 * range's history instead (and a report whose stack it has lost cannot be
 * matched by a suppression, so suppressions are no remedy). */
#if defined(__SANITIZE_THREAD__)
#define UTIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UTIL_TSAN 1
#endif
#endif
#ifdef UTIL_TSAN
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
#define MAPPING_CHANGE_BEGIN() AnnotateIgnoreWritesBegin(__FILE__, __LINE__)
#define MAPPING_CHANGE_END() AnnotateIgnoreWritesEnd(__FILE__, __LINE__)
#else
#define MAPPING_CHANGE_BEGIN() ((void)0)
#define MAPPING_CHANGE_END() ((void)0)
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
	MAPPING_CHANGE_BEGIN();
	p = mmap(addr, len, PROT_NONE, flags, -1, 0);
	MAPPING_CHANGE_END();
	if (p == MAP_FAILED)
		return NULL;
	/* Under memcheck: an access here is not an error of the program but a
	 * fault the library serves, so let the access happen and trap. */
	VALGRIND_MAKE_MEM_DEFINED(p, len);
	return p;
}

void *util_map_fixed(void *addr, size_t len, int prot, int flags, int fd, uint64_t off)
{
	void *p;

	MAPPING_CHANGE_BEGIN();
	p = mmap(addr, len, prot, flags | MAP_FIXED, fd, (off_t)off);
	MAPPING_CHANGE_END();
	return p;
}

int util_protect(void *addr, size_t len, int prot)
{
	int r;

	MAPPING_CHANGE_BEGIN();
	r = mprotect(addr, len, prot);
	MAPPING_CHANGE_END();
	return r;
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
