/* test_pool.c - the broker's sealed page pool: slot allocation, and that
 * nobody holding the pool fd can change its data by any route. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"

#define UNIT 4096u
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NUNITS 64u
#define POOL_SIZE ((uint64_t)NUNITS * UNIT)

/* ---- allocation ----------------------------------------------------------- */

static void test_init_rejects_bad_size(void **state)
{
	struct pool p;

	(void)state;
	assert_int_equal(pool_init(&p, 0), -EINVAL);
	assert_int_equal(pool_init(&p, 4095), -EINVAL);
	assert_int_equal(pool_init(&p, 3 * UNIT + 1), -EINVAL);
	assert_int_equal(pool_init(&p, 3 * UNIT), 0); /* any multiple of 4 KiB */
	assert_int_equal(p.size, 3 * UNIT);
	assert_int_equal(p.nslots, 0);
	assert_int_equal(pool_used(&p), 0);
	pool_fini(&p);
}

static void test_init_state(void **state)
{
	struct pool p;
	struct stat sb;
	int fdflags;

	(void)state;
	assert_int_equal(pool_init(&p, POOL_SIZE), 0);
	assert_true(p.fd >= 0);
	fdflags = fcntl(p.fd, F_GETFD);
	assert_true(fdflags >= 0);
	assert_true(fdflags & FD_CLOEXEC);
	assert_int_equal(fstat(p.fd, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
	assert_int_equal(sb.st_size, POOL_SIZE);
	assert_non_null(p.base);
	/* a fresh pool reads as zeros */
	for (uint64_t i = 0; i < POOL_SIZE; i++)
		if (((unsigned char *)p.base)[i])
			fail_msg("byte %llu of a fresh pool is not zero", (unsigned long long)i);
	pool_fini(&p);
}

struct slot {
	uint64_t off, size;
};

static void assert_disjoint(const struct slot *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (!(s[i].off + s[i].size <= s[j].off || s[j].off + s[j].size <= s[i].off))
				fail_msg("slot %zu [%llu, +%llu) overlaps slot %zu [%llu, +%llu)", i,
					 (unsigned long long)s[i].off, (unsigned long long)s[i].size, j,
					 (unsigned long long)s[j].off, (unsigned long long)s[j].size);
}

static void test_alloc_aligned_disjoint(void **state)
{
	static const uint64_t sizes[] = { 1, 8, 2, 4, 1, 16, 2, 1 }; /* units: 35 */
	struct slot s[ARRAY_SIZE(sizes)];
	uint64_t used = 0;
	struct pool p;

	(void)state;
	assert_int_equal(pool_init(&p, POOL_SIZE), 0);
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		s[i].size = sizes[i] * UNIT;
		assert_true(pool_alloc(&p, s[i].size, &s[i].off));
		assert_int_equal(s[i].off % s[i].size, 0); /* aligned to its size */
		assert_true(s[i].off + s[i].size <= POOL_SIZE);
		used += s[i].size;
		assert_int_equal(pool_used(&p), used);
		assert_int_equal(p.nslots, i + 1);
		/* the broker's mapping writes every byte of the slot */
		memset(pool_addr(&p, s[i].off), (int)(0x10 + i), s[i].size);
	}
	assert_disjoint(s, ARRAY_SIZE(s));
	/* nobody overwrote anybody */
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		const unsigned char *d = pool_addr(&p, s[i].off);

		for (uint64_t b = 0; b < s[i].size; b++)
			if (d[b] != 0x10 + i)
				fail_msg("slot %zu byte %llu changed", i, (unsigned long long)b);
	}
	/* pool_addr is base + offset */
	assert_ptr_equal(pool_addr(&p, s[3].off), p.base + s[3].off);
	pool_fini(&p);
}

static void test_alloc_until_full_then_reuse(void **state)
{
	struct slot s[NUNITS];
	struct pool p;
	uint64_t off, off2;
	size_t n;

	(void)state;
	assert_int_equal(pool_init(&p, POOL_SIZE), 0);
	/* a slot larger than the pool never fits */
	assert_false(pool_alloc(&p, 2 * POOL_SIZE, &off));
	assert_int_equal(p.nslots, 0);
	/* the whole pool in one slot */
	assert_true(pool_alloc(&p, POOL_SIZE, &off));
	assert_int_equal(off, 0);
	assert_int_equal(pool_used(&p), POOL_SIZE);
	assert_false(pool_alloc(&p, UNIT, &off2));
	assert_int_equal(p.nslots, 1);
	pool_free(&p, off, POOL_SIZE);
	assert_int_equal(pool_used(&p), 0);
	assert_int_equal(p.nslots, 0);

	/* fill with 4-unit slots */
	for (n = 0; n < NUNITS / 4; n++) {
		s[n].size = 4 * UNIT;
		assert_true(pool_alloc(&p, s[n].size, &s[n].off));
	}
	assert_disjoint(s, n);
	assert_int_equal(pool_used(&p), POOL_SIZE);
	assert_int_equal(p.nslots, NUNITS / 4);
	assert_false(pool_alloc(&p, UNIT, &off));
	assert_false(pool_alloc(&p, 4 * UNIT, &off));
	assert_int_equal(pool_used(&p), POOL_SIZE); /* failures change nothing */
	assert_int_equal(p.nslots, NUNITS / 4);

	/* free one: exactly that room comes back, and only that much */
	pool_free(&p, s[5].off, s[5].size);
	assert_int_equal(pool_used(&p), POOL_SIZE - 4 * UNIT);
	assert_int_equal(p.nslots, NUNITS / 4 - 1);
	assert_false(pool_alloc(&p, 8 * UNIT, &off)); /* not 8 aligned units free */
	assert_true(pool_alloc(&p, 4 * UNIT, &off));
	assert_int_equal(off, s[5].off);
	assert_false(pool_alloc(&p, UNIT, &off2));

	/* a freed 4-unit slot can be split into smaller ones */
	pool_free(&p, off, 4 * UNIT);
	for (int i = 0; i < 4; i++) {
		assert_true(pool_alloc(&p, UNIT, &off2));
		assert_true(off2 >= s[5].off && off2 < s[5].off + 4 * UNIT);
	}
	assert_false(pool_alloc(&p, UNIT, &off2));
	assert_int_equal(p.nslots, NUNITS / 4 - 1 + 4);
	assert_int_equal(pool_used(&p), POOL_SIZE);

	/* free everything: back to empty, and a whole-pool slot fits again */
	for (size_t i = 0; i < n; i++)
		if (i != 5)
			pool_free(&p, s[i].off, s[i].size);
	for (int i = 0; i < 4; i++)
		pool_free(&p, s[5].off + (uint64_t)i * UNIT, UNIT);
	assert_int_equal(pool_used(&p), 0);
	assert_int_equal(p.nslots, 0);
	assert_true(pool_alloc(&p, POOL_SIZE, &off));
	pool_free(&p, off, POOL_SIZE);
	pool_fini(&p);
}

static void test_alloc_rejects_bad_sizes(void **state)
{
	struct pool p;
	uint64_t off;

	(void)state;
	assert_int_equal(pool_init(&p, POOL_SIZE), 0);
	assert_false(pool_alloc(&p, 0, &off));
	assert_false(pool_alloc(&p, 3 * UNIT, &off)); /* not a power of two */
	assert_int_equal(p.nslots, 0);
	assert_int_equal(pool_used(&p), 0);
	pool_fini(&p);
}

/* ---- sealing -------------------------------------------------------------- */

/* The attacks below are run both in this process and in a forked child, so
 * they report with a counter instead of cmocka asserts (which must not run
 * in a child). */
static int nbad;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "[pid %d] %s:%d: CHECK(%s) failed: ", (int)getpid(), \
				__FILE__, __LINE__, #cond);                       \
			fprintf(stderr, __VA_ARGS__);                             \
			fprintf(stderr, "\n");                                    \
			nbad++;                                                   \
		}                                                                 \
	} while (0)

/* A syscall that must fail; with want_errno != 0, with that errno. */
#define MUST_FAIL(call, want_errno, what)                                          \
	do {                                                                       \
		long r_ = (long)(call);                                            \
		int e_ = errno;                                                    \
		CHECK(r_ < 0, "%s succeeded (returned %ld)", what, r_);            \
		if (r_ < 0 && (want_errno))                                        \
			CHECK(e_ == (want_errno), "%s: errno %d (%s), want %d (%s)", what, e_, \
			      strerror(e_), (int)(want_errno), strerror(want_errno)); \
	} while (0)

/* The pool's content as the broker wrote it: a pattern over every byte. */
static unsigned char pattern(uint64_t i)
{
	return (unsigned char)(i * 131 + (i >> 12) * 7 + 1);
}

static void fill_pattern(struct pool *p)
{
	unsigned char *d = (unsigned char *)p->base;

	for (uint64_t i = 0; i < p->size; i++)
		d[i] = pattern(i);
}

/* Is [0, len) of d the pattern?  Reports the first differing byte. */
static bool is_pattern(const unsigned char *d, uint64_t len, const char *via)
{
	for (uint64_t i = 0; i < len; i++)
		if (d[i] != pattern(i)) {
			fprintf(stderr, "[pid %d] pool data changed (read %s): byte %llu is 0x%02x, "
				"want 0x%02x\n", (int)getpid(), via, (unsigned long long)i, d[i],
				pattern(i));
			return false;
		}
	return true;
}

/* Read the whole pool through fd with pread and compare. */
static bool fd_has_pattern(int fd, uint64_t size, const char *via)
{
	unsigned char *buf = malloc(size);
	uint64_t done = 0;
	bool ok;

	if (!buf)
		return false;
	while (done < size) {
		ssize_t r = pread(fd, buf + done, size - done, (off_t)done);

		if (r <= 0) {
			fprintf(stderr, "[pid %d] pread of the pool (%s) at %llu: %s\n", (int)getpid(),
				via, (unsigned long long)done, r < 0 ? strerror(errno) : "EOF");
			free(buf);
			return false;
		}
		done += (uint64_t)r;
	}
	ok = is_pattern(buf, size, via);
	free(buf);
	return ok;
}

static bool fd_size_is(int fd, uint64_t size)
{
	struct stat sb;

	return fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == size;
}

/* Everything a client holding fd (the pool of size bytes) might try in order
 * to change committed data.  Returns the number of routes that were not
 * refused (0: the pool is safe). */
static int attack(int fd, uint64_t size, const char *name)
{
	const int want_seals = F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	unsigned char junk[UNIT];
	struct iovec iov = { junk, sizeof(junk) };
	void *m;
	int seals, before = nbad, pfd[2];

	memset(junk, 0xee, sizeof(junk));
	fprintf(stderr, "[pid %d] attacking the pool through %s (fd %d)\n", (int)getpid(), name,
		fd);

	/* the seals are all there, and final */
	seals = fcntl(fd, F_GET_SEALS);
	CHECK(seals >= 0, "F_GET_SEALS: %s", strerror(errno));
	CHECK((seals & want_seals) == want_seals, "seals are 0x%x, want at least 0x%x", seals,
	      want_seals);
	MUST_FAIL(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), EPERM, "F_ADD_SEALS(WRITE)");
	MUST_FAIL(fcntl(fd, F_ADD_SEALS, 0), EPERM, "F_ADD_SEALS(0)");
	CHECK(fcntl(fd, F_GET_SEALS) == seals, "the seals changed");

	/* shared writable mappings: refused, directly or via mprotect */
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m == MAP_FAILED, "mmap(PROT_READ|PROT_WRITE, MAP_SHARED) succeeded");
	if (m != MAP_FAILED)
		munmap(m, size);
	else
		CHECK(errno == EPERM, "mmap shared writable: errno %d (%s), want EPERM", errno,
		      strerror(errno));
	m = mmap(NULL, UNIT, PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m == MAP_FAILED, "mmap(PROT_WRITE, MAP_SHARED) of one page succeeded");
	if (m != MAP_FAILED)
		munmap(m, UNIT);
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE, fd, 0);
	CHECK(m == MAP_FAILED, "mmap(PROT_READ|PROT_WRITE, MAP_SHARED_VALIDATE) succeeded");
	if (m != MAP_FAILED)
		munmap(m, size);
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED, "mmap(PROT_READ, MAP_SHARED) failed: %s", strerror(errno));
	if (m != MAP_FAILED) {
		CHECK(is_pattern(m, size, "a shared read-only mapping"),
		      "a read-only shared mapping does not show the pool data");
		MUST_FAIL(mprotect(m, size, PROT_READ | PROT_WRITE), 0,
			  "mprotect(PROT_READ|PROT_WRITE) of a shared read-only mapping");
		MUST_FAIL(mprotect(m, UNIT, PROT_WRITE), 0,
			  "mprotect(PROT_WRITE) of one page of a shared read-only mapping");
		/* punching a hole through a mapping */
		MUST_FAIL(madvise(m, UNIT, MADV_REMOVE), 0, "madvise(MADV_REMOVE)");
		/* dropping the mapping's pages must not drop the pool's */
		CHECK(madvise(m, size, MADV_DONTNEED) == 0, "madvise(MADV_DONTNEED): %s",
		      strerror(errno));
		CHECK(is_pattern(m, size, "a shared mapping after MADV_DONTNEED"),
		      "MADV_DONTNEED lost pool data");
		munmap(m, size);
	}

	/* write(2) and friends */
	MUST_FAIL(pwrite(fd, junk, sizeof(junk), 0), EPERM, "pwrite at 0");
	MUST_FAIL(pwrite(fd, junk, 1, (off_t)size - 1), EPERM, "pwrite of the last byte");
	MUST_FAIL(pwrite(fd, junk, sizeof(junk), (off_t)size), EPERM, "pwrite past the end");
	MUST_FAIL(pwritev(fd, &iov, 1, (off_t)UNIT), EPERM, "pwritev");
	if (lseek(fd, 0, SEEK_SET) == 0)
		MUST_FAIL(write(fd, junk, sizeof(junk)), EPERM, "write at 0");
	else
		CHECK(0, "lseek: %s", strerror(errno));
	MUST_FAIL(writev(fd, &iov, 1), EPERM, "writev");
	/* copy_file_range and sendfile write through the page cache too */
	if (pipe2(pfd, O_CLOEXEC) == 0) {
		loff_t in_off = 0, out_off = 0;
		int src = memfd_create("junk", MFD_CLOEXEC);

		if (src >= 0 && write(src, junk, sizeof(junk)) == (ssize_t)sizeof(junk)) {
			MUST_FAIL(copy_file_range(src, &in_off, fd, &out_off, sizeof(junk), 0), 0,
				  "copy_file_range into the pool");
			in_off = 0;
			CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek: %s", strerror(errno));
			MUST_FAIL(sendfile(fd, src, &in_off, sizeof(junk)), 0,
				  "sendfile into the pool");
			/* splice from a pipe */
			if (write(pfd[1], junk, sizeof(junk)) == (ssize_t)sizeof(junk)) {
				out_off = 0;
				MUST_FAIL(splice(pfd[0], NULL, fd, &out_off, sizeof(junk), 0), 0,
					  "splice into the pool");
			}
		} else {
			CHECK(0, "could not make a source memfd: %s", strerror(errno));
		}
		if (src >= 0)
			close(src);
		close(pfd[0]);
		close(pfd[1]);
	}

	/* size changes */
	MUST_FAIL(ftruncate(fd, (off_t)size / 2), EPERM, "ftruncate shrink");
	MUST_FAIL(ftruncate(fd, 0), EPERM, "ftruncate to 0");
	MUST_FAIL(ftruncate(fd, (off_t)size * 2), EPERM, "ftruncate grow");
	CHECK(fd_size_is(fd, size), "the pool's size changed");

	/* fallocate: no holes, no zeroing, no growth, no shifting */
	MUST_FAIL(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, UNIT), EPERM,
		  "fallocate(PUNCH_HOLE) of the first page");
	MUST_FAIL(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size), EPERM,
		  "fallocate(PUNCH_HOLE) of the whole pool");
	MUST_FAIL(fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, UNIT), 0, "fallocate(ZERO_RANGE)");
	MUST_FAIL(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, UNIT), 0,
		  "fallocate(COLLAPSE_RANGE)");
	MUST_FAIL(fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, UNIT), 0, "fallocate(INSERT_RANGE)");
	MUST_FAIL(fallocate(fd, 0, (off_t)size - UNIT, 2 * UNIT), EPERM,
		  "fallocate past the end (grow)");
	MUST_FAIL(fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)size, UNIT), EPERM,
		  "fallocate(KEEP_SIZE) past the end");
	CHECK(fd_size_is(fd, size), "the pool's size changed");

	/* a private writable mapping is allowed: writes stay private */
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(m != MAP_FAILED, "mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE) failed: %s",
	      strerror(errno));
	if (m != MAP_FAILED) {
		unsigned char *d = m;

		CHECK(is_pattern(d, size, "a private mapping"),
		      "a private mapping does not show the pool data");
		memset(d, 0xab, UNIT);
		memset(d + size - UNIT, 0xcd, UNIT);
		d[size / 2] ^= 0xff;
		CHECK(d[0] == 0xab && d[size - 1] == 0xcd, "the private copy did not take the write");
		CHECK(fd_has_pattern(fd, size, "pread after a write to a private mapping"),
		      "a write to a private mapping reached the pool");
		munmap(m, size);
	}
	/* ... and so is making a private read-only mapping writable */
	m = mmap(NULL, UNIT, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK(m != MAP_FAILED, "mmap(PROT_READ, MAP_PRIVATE) failed: %s", strerror(errno));
	if (m != MAP_FAILED) {
		CHECK(mprotect(m, UNIT, PROT_READ | PROT_WRITE) == 0,
		      "mprotect of a private mapping: %s", strerror(errno));
		((unsigned char *)m)[7] ^= 0x55;
		munmap(m, UNIT);
	}

	CHECK(fd_size_is(fd, size), "the pool's size changed");
	CHECK(fd_has_pattern(fd, size, name), "the pool data changed");
	return nbad - before;
}

/* Every way of getting another fd of the pool: dup, and reopens through
 * /proc (read-write, write-only, with O_TRUNC). */
static int attack_all_routes(int fd, uint64_t size, pid_t owner)
{
	char path[64];
	int before = nbad, fd2;

	attack(fd, size, "the pool fd");

	fd2 = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	CHECK(fd2 >= 0, "dup: %s", strerror(errno));
	if (fd2 >= 0) {
		attack(fd2, size, "a dup of the pool fd");
		close(fd2);
	}

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fd2 = open(path, O_RDWR | O_CLOEXEC);
	if (fd2 >= 0) { /* allowed (root, or the memfd's 0777 mode): only writes fail */
		attack(fd2, size, "open(/proc/self/fd/N, O_RDWR)");
		close(fd2);
	} else {
		fprintf(stderr, "[pid %d] open(%s, O_RDWR) refused: %s\n", (int)getpid(), path,
			strerror(errno));
	}
	fd2 = open(path, O_WRONLY | O_CLOEXEC);
	if (fd2 >= 0) {
		MUST_FAIL(write(fd2, "x", 1), EPERM, "write to open(/proc/self/fd/N, O_WRONLY)");
		MUST_FAIL(ftruncate(fd2, 0), EPERM, "ftruncate of open(/proc/self/fd/N, O_WRONLY)");
		close(fd2);
	}
	fd2 = open(path, O_RDWR | O_TRUNC | O_CLOEXEC);
	CHECK(fd2 < 0, "open(/proc/self/fd/N, O_RDWR|O_TRUNC) succeeded");
	if (fd2 >= 0)
		close(fd2);
	fd2 = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd2 >= 0) {
		MUST_FAIL(write(fd2, "x", 1), EPERM, "write to open(/proc/self/fd/N, O_APPEND)");
		close(fd2);
	}

	/* the owner's fd, reopened by another process through /proc/<pid>/fd */
	if (owner != getpid()) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)owner, fd);
		fd2 = open(path, O_RDWR | O_CLOEXEC);
		if (fd2 >= 0) {
			attack(fd2, size, "open(/proc/<broker>/fd/N, O_RDWR)");
			close(fd2);
		} else {
			fprintf(stderr, "[pid %d] open(%s, O_RDWR) refused: %s\n", (int)getpid(),
				path, strerror(errno));
		}
	}
	CHECK(fd_size_is(fd, size), "the pool's size changed");
	CHECK(fd_has_pattern(fd, size, "the pool fd, after every route"),
	      "the pool data changed");
	return nbad - before;
}

static void test_sealed_in_process(void **state)
{
	struct pool p;
	int seals;

	(void)state;
	assert_int_equal(pool_init(&p, POOL_SIZE), 0);
	seals = fcntl(p.fd, F_GET_SEALS);
	assert_int_equal(seals, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	/* the broker writes through its own mapping, after sealing */
	fill_pattern(&p);
	assert_true(fd_has_pattern(p.fd, p.size, "pread right after the broker wrote"));

	nbad = 0;
	assert_int_equal(attack_all_routes(p.fd, p.size, getpid()), 0);

	/* byte for byte what the broker wrote, through both views */
	assert_true(is_pattern((unsigned char *)p.base, p.size, "pool_addr"));
	assert_true(fd_has_pattern(p.fd, p.size, "pread"));
	assert_int_equal(fcntl(p.fd, F_GET_SEALS), seals);

	/* and the broker's mapping still writes, visibly to fd readers */
	memset(pool_addr(&p, UNIT), 0x42, UNIT);
	{
		unsigned char b;

		assert_int_equal(pread(p.fd, &b, 1, UNIT + 17), 1);
		assert_int_equal(b, 0x42);
	}
	pool_fini(&p);
}

/* Send fd over a UNIX socket (as the broker hands out the pool fd). */
static int send_fd(int sock, int fd)
{
	char byte = 'P';
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			      .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	memset(u.buf, 0, sizeof(u.buf));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			      .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int fd = -1;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/* A client process: gets the pool fd over a socket, without the broker's
 * mapping or its fd, and tries everything (also through the broker's
 * /proc/<pid>/fd entry). */
static void test_sealed_in_child(void **state)
{
	struct pool p;
	int sv[2], status;
	pid_t broker = getpid(), pid;

	(void)state;
	assert_int_equal(pool_init(&p, POOL_SIZE), 0);
	fill_pattern(&p);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd, bad;

		close(sv[0]);
		/* a client has neither the broker's writable mapping nor its fd */
		munmap(p.base, p.size);
		close(p.fd);
		fd = recv_fd(sv[1]);
		if (fd < 0) {
			fprintf(stderr, "child: no fd received\n");
			_exit(2);
		}
		nbad = 0;
		bad = attack_all_routes(fd, POOL_SIZE, broker);
		/* the broker's own fd number through /proc/<broker>/fd/N */
		if (fd != p.fd) {
			char path[64];
			int fd2;

			snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)broker, p.fd);
			fd2 = open(path, O_RDWR | O_CLOEXEC);
			if (fd2 >= 0) {
				bad += attack(fd2, POOL_SIZE, "open(/proc/<broker>/fd/<pool fd>)");
				close(fd2);
			}
		}
		_exit(bad ? 1 : 0);
	}
	close(sv[1]);
	assert_int_equal(send_fd(sv[0], p.fd), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(sv[0]);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the broker's views agree: nothing changed */
	assert_true(is_pattern((unsigned char *)p.base, p.size, "pool_addr, after the child"));
	assert_true(fd_has_pattern(p.fd, p.size, "pread, after the child"));
	pool_fini(&p);
}

/* A child that simply inherited the fd across fork (and keeps the broker's
 * mapping, which it does not use). */
static void test_sealed_in_forked_child(void **state)
{
	struct pool p;
	int status;
	pid_t pid;

	(void)state;
	assert_int_equal(pool_init(&p, POOL_SIZE), 0);
	fill_pattern(&p);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		nbad = 0;
		_exit(attack_all_routes(p.fd, POOL_SIZE, getppid()) ? 1 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(is_pattern((unsigned char *)p.base, p.size, "pool_addr, after the child"));
	assert_true(fd_has_pattern(p.fd, p.size, "pread, after the child"));
	pool_fini(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_rejects_bad_size),
		cmocka_unit_test(test_init_state),
		cmocka_unit_test(test_alloc_aligned_disjoint),
		cmocka_unit_test(test_alloc_until_full_then_reuse),
		cmocka_unit_test(test_alloc_rejects_bad_sizes),
		cmocka_unit_test(test_sealed_in_process),
		cmocka_unit_test(test_sealed_in_child),
		cmocka_unit_test(test_sealed_in_forked_child),
	};

	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
