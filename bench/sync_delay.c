/* sync_delay.c - a slower disk for a benchmark's broker: preloaded into it
 * (LD_PRELOAD), it sleeps SHMA_SYNC_DELAY_US microseconds before every
 * fsync and fdatasync, and before every write to a descriptor opened with
 * O_DSYNC or O_SYNC (LMDB writes its meta page through one, so that write
 * is a sync of its own).  Nothing else changes: the sync itself still
 * happens, after the sleep.
 *
 * bench_store uses it to show how group commit scales when a sync costs
 * more than on the disk at hand (docs/STORE.md).  Only for benchmarks: the
 * broker never loads it by itself.  Not for sanitizer builds (their runtime
 * must come first in the list of preloaded libraries).
 *
 * The sleeps are precise to a few microseconds: the library sets the
 * timer slack of the thread that loads it (the broker's main thread, whose
 * threads inherit it) to 1 ns; the default 50 us would lengthen each sleep
 * by up to that much.  0 or unset: no sleep at all, so that the library
 * itself can be measured against no library.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 4096 /* descriptors above it are never delayed */

/* open64 and pwrite64 are open and pwrite with a 64-bit off_t */
_Static_assert(sizeof(off_t) == 8, "sync_delay.c needs a 64-bit off_t");

static long delay_us;
static bool dsync[MAX_FD]; /* opened with O_DSYNC or O_SYNC */

__attribute__((constructor)) static void init(void)
{
	const char *e = getenv("SHMA_SYNC_DELAY_US");

	delay_us = e ? strtol(e, NULL, 10) : 0;
	if (delay_us < 0 || delay_us > 10000000)
		delay_us = 0;
	(void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}

static void nap(void)
{
	struct timespec t = { delay_us / 1000000, (delay_us % 1000000) * 1000 };
	int saved = errno;

	if (delay_us > 0)
		while (nanosleep(&t, &t) < 0 && errno == EINTR)
			;
	errno = saved;
}

static void *next(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (!f)
		abort(); /* a C library without it: nothing sensible to do */
	return f;
}

static bool delayed_fd(int fd)
{
	return fd >= 0 && fd < MAX_FD && dsync[fd];
}

static int noted(int fd, int flags)
{
	if (fd >= 0 && fd < MAX_FD)
		dsync[fd] = (flags & (O_DSYNC | O_SYNC)) != 0;
	return fd;
}

/* open() and open64() take a mode only with O_CREAT or O_TMPFILE */
static mode_t mode_arg(int flags, va_list ap)
{
	return flags & (O_CREAT | O_TMPFILE) ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
	static int (*f)(const char *, int, ...);
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	if (!f)
		f = next("open");
	return noted(f(path, flags, mode), flags);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return open(path, flags, mode);
}

int close(int fd)
{
	static int (*f)(int);

	if (!f)
		f = next("close");
	if (fd >= 0 && fd < MAX_FD)
		dsync[fd] = false;
	return f(fd);
}

int fsync(int fd)
{
	static int (*f)(int);

	if (!f)
		f = next("fsync");
	nap();
	return f(fd);
}

int fdatasync(int fd)
{
	static int (*f)(int);

	if (!f)
		f = next("fdatasync");
	nap();
	return f(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	static ssize_t (*f)(int, const void *, size_t);

	if (!f)
		f = next("write");
	if (delayed_fd(fd))
		nap();
	return f(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	static ssize_t (*f)(int, const void *, size_t, off_t);

	if (!f)
		f = next("pwrite");
	if (delayed_fd(fd))
		nap();
	return f(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}
