/* test_virtmem.c - unit tests of libshm's virtmem, through shma.h only.
 *
 * Two kinds of test file back the handles:
 *   copy-in     loadblk fills block b with pattern(b, ver[b]), counts calls,
 *               can fail for one block or invalidate a block from inside its
 *               own load; storeblk logs the order and data of stored blocks
 *               and can fail for one block.
 *   direct-map  a memfd holding pattern(b, 0) in block b; mapblk names
 *               (memfd, b * blksize) or a hole for chosen blocks.
 *
 * Whether a page is readable or writable is probed without trapping: a
 * system call on memory the process may not touch gets EFAULT (write(2) of
 * the byte into a pipe for reading, read(2) of the same byte back for
 * writing), so the probe never goes through the library's fault handler.
 *
 * cmocka replaces the SIGSEGV handler before every test, so every test that
 * touches mapped memory reinstalls libshm's handler first (tf_open does).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "shma.h"

#define KIB		((size_t)1024)
#define MIB		(KIB * KIB)
#define NONE		UINT64_MAX
#define TF_NBLK		256	/* blocks the callbacks know about */
#define TF_NSTORE	16	/* stores the log keeps */
#define TF_NMAP		4	/* mappings one test may hold */
#define TF_MEMFD_NBLK	8	/* blocks of the direct-map base */

enum tf_kind { TF_COPYIN, TF_DIRECT };

/* One test's file, RAM, handle and mappings, plus what the callbacks saw. */
struct tf {
	enum tf_kind kind;
	size_t blksize;
	struct shma_file_ops ops;
	shma_ram *ram;
	shma_file *f;
	shma_fileh *fh;
	shma_mapping *m[TF_NMAP];
	uint64_t mfirst[TF_NMAP];

	/* loadblk */
	unsigned nload[TF_NBLK];
	unsigned ver[TF_NBLK];
	uint64_t fail_load_blk;
	int fail_load_err;
	uint64_t inval_load_blk;	/* invalidated from inside its load, once */
	enum shma_page_state inval_before, inval_after;

	/* storeblk */
	uint64_t fail_store_blk;
	int fail_store_err;
	unsigned nstore_calls;
	size_t nstored;
	uint64_t stored_blk[TF_NSTORE];
	uint8_t *stored_data;		/* TF_NSTORE * blksize */
	bool store_to_memfd;

	/* direct-map */
	int memfd;
	bool hole[TF_NBLK];
	unsigned nmapblk[TF_NBLK];
	uint64_t fail_map_blk;

	int pagemap_fd;		/* /proc/self/pagemap, -1 if not open */

	/* a second file on the same RAM (tf_open_peer) */
	struct tf *peer;
	bool ram_borrowed;
};

/* ---- data patterns ------------------------------------------------------ */

static uint64_t pat(uint64_t blk, unsigned ver, size_t i)
{
	return blk * 1000003u + i + ((uint64_t)ver << 40);
}

static void fill_block(void *buf, size_t blksize, uint64_t blk, unsigned ver)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < blksize / 8; i++)
		w[i] = pat(blk, ver, i);
}

/* An access may fault and run the callbacks, which change struct tf behind
 * the compiler's back: the signal fences make it reload what they wrote. */
static uint64_t rd64(const void *p)
{
	uint64_t v;

	atomic_signal_fence(memory_order_seq_cst);
	v = *(const volatile uint64_t *)p;
	atomic_signal_fence(memory_order_seq_cst);
	return v;
}

static void wr64(void *p, uint64_t v)
{
	atomic_signal_fence(memory_order_seq_cst);
	*(volatile uint64_t *)p = v;
	atomic_signal_fence(memory_order_seq_cst);
}

/* Index of the first word of the block at p that is not pattern(blk, ver)
 * (or zero if zero is set), except that word widx (if >= 0) must be wval;
 * -1 if every word is right. */
static long block_diff(const void *p, size_t blksize, uint64_t blk, unsigned ver,
		       bool zero, long widx, uint64_t wval)
{
	for (size_t i = 0; i < blksize / 8; i++) {
		uint64_t want = zero ? 0 : pat(blk, ver, i);

		if ((long)i == widx)
			want = wval;
		if (rd64((const uint8_t *)p + i * 8) != want)
			return (long)i;
	}
	return -1;
}

/* ---- access probes that never trap ------------------------------------- */

static bool probe_readable(const void *p)
{
	int pfd[2];
	ssize_t n;
	int err;

	assert_int_equal(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
	n = write(pfd[1], p, 1);
	err = errno;
	close(pfd[0]);
	close(pfd[1]);
	if (n == 1)
		return true;
	assert_int_equal(err, EFAULT);
	return false;
}

/* Writes the byte already at p back to p, so a writable page is unchanged. */
static bool probe_writable(void *p)
{
	int pfd[2];
	ssize_t n;
	char c;
	int err;

	if (!probe_readable(p))
		return false;
	c = *(volatile char *)p;
	assert_int_equal(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(write(pfd[1], &c, 1), 1);
	n = read(pfd[0], p, 1);
	err = errno;
	close(pfd[0]);
	close(pfd[1]);
	if (n == 1)
		return true;
	assert_int_equal(err, EFAULT);
	return false;
}

/* ---- SIGBUS catching ----------------------------------------------------- */

static sigjmp_buf bus_jmp;
static void *volatile bus_addr;
static volatile int bus_code;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	bus_addr = si->si_addr;
	bus_code = si->si_code;
	siglongjmp(bus_jmp, 1);
}

/* Touch p (a 64-bit read, or a write of v); true if that raised SIGBUS. */
static bool touch_sigbus(void *volatile p, volatile bool write, volatile uint64_t v)
{
	struct sigaction sa, old;
	volatile bool trapped = false;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGBUS, &sa, &old), 0);
	bus_addr = NULL;
	bus_code = 0;
	if (sigsetjmp(bus_jmp, 1) == 0) {
		if (write)
			wr64(p, v);
		else
			(void)rd64(p);
	} else {
		trapped = true;
	}
	assert_int_equal(sigaction(SIGBUS, &old, NULL), 0);
	return trapped;
}

/* The SIGBUS names the faulting address, as the kernel's does. */
#define assert_bus_at(p)                                \
	do {                                            \
		assert_ptr_equal(bus_addr, (p));        \
		assert_int_equal(bus_code, BUS_ADRERR); \
	} while (0)

/* valgrind cannot deliver a SIGBUS that a SIGSEGV handler sends to its own
 * thread (libshm falls back to a plain one there, which valgrind still
 * mishandles): the SIGBUS tests run in the native and sanitizer builds. */
#define skip_under_valgrind()              \
	do {                               \
		if (RUNNING_ON_VALGRIND)   \
			skip();            \
	} while (0)

/* ---- test file callbacks --------------------------------------------------- */

static int tf_loadblk(shma_file *f, uint64_t blk, void *buf)
{
	struct tf *t = shma_file_opaque(f);

	if (blk >= TF_NBLK)
		return -EINVAL;
	t->nload[blk]++;
	if (blk == t->fail_load_blk) {
		errno = EBADMSG;
		return t->fail_load_err;
	}
	fill_block(buf, t->blksize, blk, t->ver[blk]);
	if (blk == t->inval_load_blk) {
		/* The backing store changes while this load runs. */
		t->inval_load_blk = NONE;
		t->ver[blk]++;
		t->inval_before = shma_fileh_block_state(t->fh, blk);
		shma_fileh_invalidate(t->fh, blk);
		t->inval_after = shma_fileh_block_state(t->fh, blk);
	}
	errno = EBADMSG;	/* the fault handler must not let this leak */
	return 0;
}

static int tf_storeblk(shma_file *f, uint64_t blk, const void *buf)
{
	struct tf *t = shma_file_opaque(f);

	t->nstore_calls++;
	if (blk == t->fail_store_blk)
		return t->fail_store_err;
	if (t->nstored >= TF_NSTORE)
		return -ENOSPC;
	t->stored_blk[t->nstored] = blk;
	memcpy(t->stored_data + t->nstored * t->blksize, buf, t->blksize);
	t->nstored++;
	if (t->store_to_memfd &&
	    pwrite(t->memfd, buf, t->blksize, (off_t)(blk * t->blksize)) !=
		    (ssize_t)t->blksize)
		return -EIO;
	return 0;
}

static int tf_mapblk(shma_file *f, uint64_t blk, int *fd, uint64_t *off)
{
	struct tf *t = shma_file_opaque(f);

	if (blk >= TF_NBLK)
		return -EINVAL;
	t->nmapblk[blk]++;
	errno = EBADMSG;	/* the fault handler must not let this leak */
	if (blk == t->fail_map_blk)
		return -EIO;
	if (t->hole[blk]) {
		*fd = -1;
		*off = 0;
		return 0;
	}
	if (blk >= TF_MEMFD_NBLK)
		return -ENXIO;
	*fd = t->memfd;
	*off = blk * t->blksize;
	return 0;
}

/* ---- fixture ---------------------------------------------------------------- */

static struct tf *tf_alloc(void)
{
	struct tf *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	return t;
}

/* Set up t (from tf_alloc, already where the teardown finds it) as a test
 * file of this kind with ops.flags = flags, not yet opened. */
static void tf_init(struct tf *t, enum tf_kind kind, size_t blksize, unsigned flags)
{
	t->kind = kind;
	t->blksize = blksize;
	t->fail_load_blk = NONE;
	t->fail_store_blk = NONE;
	t->fail_map_blk = NONE;
	t->inval_load_blk = NONE;
	t->memfd = -1;
	t->pagemap_fd = -1;
	t->stored_data = malloc(TF_NSTORE * blksize);
	assert_non_null(t->stored_data);
	t->ops.flags = flags;
	t->ops.storeblk = tf_storeblk;
	if (kind == TF_COPYIN) {
		t->ops.loadblk = tf_loadblk;
	} else {
		void *buf = malloc(blksize);

		assert_non_null(buf);
		t->ops.mapblk = tf_mapblk;
		t->memfd = memfd_create("test_virtmem", MFD_CLOEXEC);
		assert_true(t->memfd >= 0);
		assert_int_equal(ftruncate(t->memfd, (off_t)(TF_MEMFD_NBLK * blksize)), 0);
		for (uint64_t b = 0; b < TF_MEMFD_NBLK; b++) {
			fill_block(buf, blksize, b, 0);
			assert_int_equal(pwrite(t->memfd, buf, blksize, (off_t)(b * blksize)),
					 (ssize_t)blksize);
		}
		free(buf);
	}
}

/* Create t's file and open its handle on t->ram. */
static void tf_open_handle(struct tf *t)
{
	assert_int_equal(shma_file_new(&t->ops, t->blksize, t, &t->f), 0);
	assert_non_null(t->f);
	assert_int_equal(shma_fileh_open(t->f, t->ram, &t->fh), 0);
	assert_non_null(t->fh);
}

/* Create file (ops.flags = flags) + RAM (limit bytes) + handle, reinstall
 * the fault handler.  *state keeps it for tf_teardown, which runs even when
 * the test fails. */
static struct tf *tf_open_flags(void **state, enum tf_kind kind, size_t blksize, size_t limit,
				unsigned flags)
{
	struct tf *t = tf_alloc();

	*state = t;
	tf_init(t, kind, blksize, flags);
	/* cmocka installed its own SIGSEGV handler before this test. */
	assert_int_equal(shma_vm_install_handler(), 0);
	assert_int_equal(shma_ram_new(limit, &t->ram), 0);
	assert_non_null(t->ram);
	tf_open_handle(t);
	return t;
}

static struct tf *tf_open(void **state, enum tf_kind kind, size_t blksize, size_t limit)
{
	return tf_open_flags(state, kind, blksize, limit, 0);
}

/* A second test file with its own handle on t's RAM (t->peer; torn down
 * with t, before the RAM goes). */
static struct tf *tf_open_peer(struct tf *t, enum tf_kind kind, size_t blksize, unsigned flags)
{
	struct tf *p;

	assert_null(t->peer);
	p = t->peer = tf_alloc();
	tf_init(p, kind, blksize, flags);
	p->ram = t->ram;
	p->ram_borrowed = true;
	tf_open_handle(p);
	return p;
}

static void tf_free(struct tf *t)
{
	if (t->peer)
		tf_free(t->peer);
	for (int i = 0; i < TF_NMAP; i++)
		shma_unmap(&t->m[i]);	/* may fail (SHMA_ERAMLIMIT): close takes it */
	shma_fileh_close(&t->fh);
	shma_file_destroy(&t->f);
	if (!t->ram_borrowed)
		shma_ram_destroy(&t->ram);
	if (t->memfd >= 0)
		close(t->memfd);
	if (t->pagemap_fd >= 0)
		close(t->pagemap_fd);
	free(t->stored_data);
	free(t);
}

static int tf_teardown(void **state)
{
	struct tf *t = *state;

	if (!t)
		return 0;
	tf_free(t);
	*state = NULL;
	return 0;
}

/* Map nblk blocks from first into slot i; returns the mapping's memory. */
static uint8_t *tf_map(struct tf *t, int i, uint64_t first, uint64_t nblk)
{
	assert_null(t->m[i]);
	assert_int_equal(shma_map(t->fh, first, nblk, &t->m[i]), 0);
	assert_non_null(t->m[i]);
	t->mfirst[i] = first;
	assert_non_null(shma_mapping_addr(t->m[i]));
	assert_int_equal(shma_mapping_len(t->m[i]), nblk * t->blksize);
	return shma_mapping_addr(t->m[i]);
}

/* Address of file block blk in mapping slot i. */
static uint8_t *blkp(struct tf *t, int i, uint64_t blk)
{
	return (uint8_t *)shma_mapping_addr(t->m[i]) + (blk - t->mfirst[i]) * t->blksize;
}

static enum shma_page_state state_of(struct tf *t, uint64_t blk)
{
	return shma_fileh_block_state(t->fh, blk);
}

static struct shma_ram_stats ram_stats(struct tf *t)
{
	struct shma_ram_stats st;

	memset(&st, 0xff, sizeof(st));
	shma_ram_stats(t->ram, &st);
	return st;
}

/* Block blk of mapping i holds pattern(blk, ver) except word widx = wval. */
static void assert_block(struct tf *t, int i, uint64_t blk, unsigned ver, long widx,
			 uint64_t wval)
{
	assert_int_equal(block_diff(blkp(t, i, blk), t->blksize, blk, ver, false, widx, wval),
			 -1);
}

/* The memfd's block blk holds pattern(blk, 0) except word widx = wval. */
static void assert_memfd_block(struct tf *t, uint64_t blk, long widx, uint64_t wval)
{
	uint8_t *buf = malloc(t->blksize);

	assert_non_null(buf);
	assert_int_equal(pread(t->memfd, buf, t->blksize, (off_t)(blk * t->blksize)),
			 (ssize_t)t->blksize);
	assert_int_equal(block_diff(buf, t->blksize, blk, 0, false, widx, wval), -1);
	free(buf);
}

/* ---- private copies: byte writes and the kernel's page table ------------ */

static void wr8(void *p, uint8_t v)
{
	atomic_signal_fence(memory_order_seq_cst);
	*(volatile uint8_t *)p = v;
	atomic_signal_fence(memory_order_seq_cst);
}

/* Word w with its byte k (little-endian) replaced by v, as a byte write at
 * w's address + k leaves it. */
static uint64_t with_byte(uint64_t w, unsigned k, uint8_t v)
{
	return (w & ~(0xffull << (8 * k))) | ((uint64_t)v << (8 * k));
}

/* /proc/self/pagemap: one 64-bit entry per 4 KiB page of the address space
 * (bit 63 present, bit 61 file page or shared anonymous; a page the kernel
 * copied for a MAP_PRIVATE write is present without bit 61). */
#define PM_PRESENT	(1ull << 63)
#define PM_FILE		(1ull << 61)

static void tf_open_pagemap(struct tf *t)
{
	t->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (t->pagemap_fd < 0)
		skip();	/* no procfs: nothing to look at */
}

static uint64_t pagemap_entry(struct tf *t, const void *p)
{
	uint64_t e = 0;

	assert_int_equal(pread(t->pagemap_fd, &e, sizeof(e),
			       (off_t)((uintptr_t)p / 4096 * sizeof(e))),
			 (ssize_t)sizeof(e));
	return e;
}

/* Is the 4 KiB page at p a private anonymous copy (present, not a file
 * page)? */
static bool page_is_anon_copy(struct tf *t, const void *p)
{
	uint64_t e = pagemap_entry(t, p);

	return (e & PM_PRESENT) && !(e & PM_FILE);
}

/* ---- copy-in: faults ------------------------------------------------------------ */

static void test_fresh_mapping_is_empty(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	uint8_t *a = tf_map(t, 0, 0, 8);
	struct shma_ram_stats st;

	assert_int_equal((uintptr_t)a % 4096, 0);
	for (uint64_t b = 0; b < 8; b++) {
		assert_false(shma_mapping_block_mapped(t->m[0], b));
		assert_int_equal(state_of(t, b), SHMA_PAGE_EMPTY);
		assert_false(probe_readable(blkp(t, 0, b)));
		assert_int_equal(t->nload[b], 0);
	}
	assert_int_equal(state_of(t, 200), SHMA_PAGE_EMPTY);	/* outside the mapping */
	st = ram_stats(t);
	assert_int_equal(st.limit, 16 * 4096);
	assert_int_equal(st.used, 0);
	assert_int_equal(st.npages, 0);
	assert_int_equal(st.nreclaimed, 0);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);
}

static void test_read_fault_loads_readonly(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	struct shma_ram_stats st;

	tf_map(t, 0, 0, 8);
	assert_int_equal(rd64(blkp(t, 0, 2) + 5 * 8), pat(2, 0, 5));
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
	assert_true(shma_mapping_block_mapped(t->m[0], 2));
	assert_int_equal(t->nload[2], 1);
	assert_block(t, 0, 2, 0, -1, 0);

	/* Mapped read-only: readable, not writable; neighbours untouched. */
	assert_true(probe_readable(blkp(t, 0, 2)));
	assert_true(probe_readable(blkp(t, 0, 2) + 4095));
	assert_false(probe_writable(blkp(t, 0, 2)));
	assert_false(probe_readable(blkp(t, 0, 1)));
	assert_false(probe_readable(blkp(t, 0, 3)));
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);

	/* Repeated reads load nothing more and change no state. */
	for (int k = 0; k < 100; k++)
		assert_int_equal(rd64(blkp(t, 0, 2) + (size_t)(k * 40) % 4096 / 8 * 8),
				 pat(2, 0, (size_t)(k * 40) % 4096 / 8));
	assert_int_equal(t->nload[2], 1);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);

	/* An unaligned read at the very end of another block. */
	assert_int_equal(*(volatile uint8_t *)(blkp(t, 0, 6) + 4095),
			 (uint8_t)(pat(6, 0, 511) >> 56));
	assert_int_equal(t->nload[6], 1);
	assert_int_equal(state_of(t, 6), SHMA_PAGE_LOADED);
	for (uint64_t b = 0; b < 8; b++)
		assert_int_equal(t->nload[b], b == 2 || b == 6 ? 1 : 0);

	st = ram_stats(t);
	assert_int_equal(st.npages, 2);
	assert_int_equal(st.used, 2 * 4096);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);
	assert_int_equal(t->nstore_calls, 0);
}

static void test_write_fault_empty_to_dirty(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	uint64_t d[4];

	tf_map(t, 0, 0, 8);
	wr64(blkp(t, 0, 3) + 10 * 8, 0xdeadbeef);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_DIRTY);
	assert_int_equal(t->nload[3], 1);
	assert_true(shma_mapping_block_mapped(t->m[0], 3));
	assert_true(probe_writable(blkp(t, 0, 3) + 4095));
	assert_block(t, 0, 3, 0, 10, 0xdeadbeef);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, d, 4), 1);
	assert_int_equal(d[0], 3);

	/* Further writes and reads stay in the page. */
	wr64(blkp(t, 0, 3), 7);
	assert_int_equal(rd64(blkp(t, 0, 3)), 7);
	assert_int_equal(t->nload[3], 1);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_DIRTY);
}

static void test_write_fault_loaded_to_dirty(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 8);
	assert_int_equal(rd64(blkp(t, 0, 4)), pat(4, 0, 0));
	assert_int_equal(state_of(t, 4), SHMA_PAGE_LOADED);
	assert_false(probe_writable(blkp(t, 0, 4)));

	wr64(blkp(t, 0, 4) + 8, 0x1234);
	assert_int_equal(state_of(t, 4), SHMA_PAGE_DIRTY);
	assert_int_equal(t->nload[4], 1);
	assert_true(probe_writable(blkp(t, 0, 4)));
	assert_block(t, 0, 4, 0, 1, 0x1234);
	/* copy-in: the clean page itself becomes dirty, no second page. */
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(ram_stats(t).used, 4096);
}

static void test_mappings_share_pages(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);	/* blocks 0..3 */
	tf_map(t, 1, 2, 4);	/* blocks 2..5 */
	assert_int_equal(rd64(blkp(t, 0, 2)), pat(2, 0, 0));
	assert_false(shma_mapping_block_mapped(t->m[1], 2));
	assert_int_equal(rd64(blkp(t, 1, 2) + 8), pat(2, 0, 1));
	assert_int_equal(t->nload[2], 1);	/* the page is the handle's */
	assert_true(shma_mapping_block_mapped(t->m[1], 2));
	assert_int_equal(ram_stats(t).npages, 1);

	/* A write through one mapping is seen through the other. */
	wr64(blkp(t, 1, 2) + 16, 111);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(rd64(blkp(t, 0, 2) + 16), 111);
	wr64(blkp(t, 0, 3) + 24, 222);
	assert_int_equal(rd64(blkp(t, 1, 3) + 24), 222);
	wr64(blkp(t, 0, 3) + 32, 333);
	assert_int_equal(rd64(blkp(t, 1, 3) + 32), 333);
	assert_int_equal(t->nload[3], 1);
	assert_int_equal(ram_stats(t).npages, 2);
	assert_false(shma_mapping_block_mapped(t->m[1], 4));
}

/* ---- copy-in: RAM limit and reclaim --------------------------------------- */

static void test_reclaim_at_limit_keeps_dirty(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 3 * 4096);
	struct shma_ram_stats st;

	tf_map(t, 0, 0, 16);
	wr64(blkp(t, 0, 0), 100);
	wr64(blkp(t, 0, 1), 101);
	assert_int_equal(ram_stats(t).npages, 2);

	/* One page is left for clean data: each read evicts the previous one. */
	for (uint64_t b = 2; b < 10; b++) {
		assert_int_equal(rd64(blkp(t, 0, b) + 8), pat(b, 0, 1));
		assert_int_equal(state_of(t, b), SHMA_PAGE_LOADED);
		assert_block(t, 0, b, 0, -1, 0);
		st = ram_stats(t);
		assert_int_equal(st.npages, 3);
		assert_int_equal(st.nreclaimed, b - 2);
	}
	st = ram_stats(t);
	assert_int_equal(st.used, 3 * 4096);
	assert_int_equal(st.limit, 3 * 4096);
	assert_int_equal(st.nreclaimed, 7);
	for (uint64_t b = 2; b < 9; b++) {
		assert_int_equal(state_of(t, b), SHMA_PAGE_EMPTY);
		assert_false(shma_mapping_block_mapped(t->m[0], b));
		assert_false(probe_readable(blkp(t, 0, b)));
		assert_int_equal(t->nload[b], 1);
	}
	assert_int_equal(state_of(t, 9), SHMA_PAGE_LOADED);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_block(t, 0, 0, 0, 0, 100);
	assert_block(t, 0, 1, 0, 0, 101);
	assert_int_equal(t->nload[0], 1);
	assert_int_equal(t->nload[1], 1);

	/* An evicted block loads again on access. */
	assert_int_equal(rd64(blkp(t, 0, 2)), pat(2, 0, 0));
	assert_int_equal(t->nload[2], 2);
	assert_int_equal(state_of(t, 9), SHMA_PAGE_EMPTY);
	assert_int_equal(ram_stats(t).nreclaimed, 8);

	/* Three dirty pages: nothing is reclaimable, a 4th block cannot come in. */
	wr64(blkp(t, 0, 2), 102);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(shma_prefault(blkp(t, 0, 10), 4096, 0), SHMA_ERAMLIMIT);
	assert_int_equal(state_of(t, 10), SHMA_PAGE_EMPTY);
	assert_int_equal(shma_ram_reclaim(t->ram, 100), 0);
	assert_block(t, 0, 0, 0, 0, 100);
	assert_block(t, 0, 1, 0, 0, 101);
	assert_block(t, 0, 2, 0, 0, 102);
}

static void test_ram_limit_error_sigbus(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 3 * 4096);
	uint8_t *p;
	int nempty = 0;

	skip_under_valgrind();
	tf_map(t, 0, 0, 8);
	for (uint64_t b = 0; b < 3; b++)
		wr64(blkp(t, 0, b), 500 + b);
	assert_int_equal(ram_stats(t).npages, 3);

	assert_int_equal(shma_prefault(blkp(t, 0, 3), 1, 0), SHMA_ERAMLIMIT);
	assert_int_equal(shma_prefault(blkp(t, 0, 3), 1, SHMA_PREFAULT_WRITE), SHMA_ERAMLIMIT);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);

	p = blkp(t, 0, 3) + 77 * 8;
	assert_true(touch_sigbus(p, false, 0));
	assert_bus_at(p);
	assert_int_equal(shma_vm_fault_error(), SHMA_ERAMLIMIT);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);

	p = blkp(t, 0, 4) + 8;
	assert_true(touch_sigbus(p, true, 1));
	assert_bus_at(p);
	assert_int_equal(shma_vm_fault_error(), SHMA_ERAMLIMIT);
	assert_int_equal(state_of(t, 4), SHMA_PAGE_EMPTY);
	assert_int_equal(ram_stats(t).npages, 3);

	/* Once the dirty pages are clean, the access reclaims one and works. */
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_MARKSTORED), 0);
	assert_false(touch_sigbus(blkp(t, 0, 3), false, 0));
	assert_int_equal(state_of(t, 3), SHMA_PAGE_LOADED);
	assert_block(t, 0, 3, 0, -1, 0);
	for (uint64_t b = 0; b < 3; b++)
		nempty += state_of(t, b) == SHMA_PAGE_EMPTY;
	assert_int_equal(nempty, 1);
	assert_int_equal(ram_stats(t).nreclaimed, 1);
}

static void test_reclaim_explicit_count(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 64 * 4096);
	struct shma_ram_stats st;

	tf_map(t, 0, 0, 8);
	tf_map(t, 1, 0, 8);
	for (uint64_t b = 0; b < 5; b++) {
		assert_int_equal(rd64(blkp(t, 0, b)), pat(b, 0, 0));
		assert_int_equal(rd64(blkp(t, 1, b)), pat(b, 0, 0));
	}
	wr64(blkp(t, 0, 5), 55);
	assert_int_equal(ram_stats(t).npages, 6);

	/* The two least recently loaded go first. */
	assert_int_equal(shma_ram_reclaim(t->ram, 2), 2);
	st = ram_stats(t);
	assert_int_equal(st.npages, 4);
	assert_int_equal(st.used, 4 * 4096);
	assert_int_equal(st.nreclaimed, 2);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
	for (int i = 0; i < 2; i++) {	/* unmapped from every mapping */
		assert_false(shma_mapping_block_mapped(t->m[i], 0));
		assert_false(probe_readable(blkp(t, i, 0)));
		assert_true(shma_mapping_block_mapped(t->m[i], 2));
	}

	assert_int_equal(shma_ram_reclaim(t->ram, 100), 3);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(ram_stats(t).nreclaimed, 5);
	assert_int_equal(shma_ram_reclaim(t->ram, 100), 0);

	/* Everything clean comes back; 5 clean + 1 dirty -> 5 evicted. */
	for (uint64_t b = 0; b < 5; b++)
		assert_int_equal(rd64(blkp(t, 1, b) + 8), pat(b, 0, 1));
	assert_int_equal(t->nload[0], 2);
	assert_int_equal(shma_ram_reclaim(t->ram, 100), 5);
	assert_int_equal(ram_stats(t).nreclaimed, 10);
	assert_int_equal(state_of(t, 5), SHMA_PAGE_DIRTY);
	assert_block(t, 1, 5, 0, 0, 55);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(ram_stats(t).used, 4096);
}

/* ---- copy-in: unmap, discard, writeout --------------------------------------------- */

static void test_unmap_keeps_dirty(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);
	wr64(blkp(t, 0, 1) + 8, 4242);
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));
	assert_int_equal(shma_unmap(&t->m[0]), 0);
	assert_null(t->m[0]);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(t).npages, 2);

	tf_map(t, 1, 1, 3);	/* blocks 1..3 */
	assert_false(shma_mapping_block_mapped(t->m[1], 1));
	assert_block(t, 1, 1, 0, 1, 4242);
	assert_int_equal(t->nload[1], 1);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_true(shma_mapping_block_mapped(t->m[1], 1));
	wr64(blkp(t, 1, 1) + 16, 4343);
	assert_int_equal(rd64(blkp(t, 1, 1) + 8), 4242);
	assert_int_equal(rd64(blkp(t, 1, 1) + 16), 4343);
	assert_int_equal(rd64(blkp(t, 1, 1) + 24), pat(1, 0, 3));
}

static void test_discard(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);
	wr64(blkp(t, 0, 0), 1);
	wr64(blkp(t, 0, 2), 2);
	assert_int_equal(rd64(blkp(t, 0, 1)), pat(1, 0, 0));
	assert_int_equal(ram_stats(t).npages, 3);

	shma_fileh_discard(t->fh);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);	/* clean: kept */
	assert_false(shma_mapping_block_mapped(t->m[0], 0));
	assert_false(probe_readable(blkp(t, 0, 0)));
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(t->nstore_calls, 0);

	assert_block(t, 0, 0, 0, -1, 0);
	assert_block(t, 0, 2, 0, -1, 0);
	assert_int_equal(t->nload[0], 2);
	assert_int_equal(t->nload[1], 1);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
}

static void test_writeout_store_order(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	uint64_t d[4];

	tf_map(t, 0, 99, 5);	/* blocks 99..103 */
	assert_int_equal(rd64(blkp(t, 0, 101)), pat(101, 0, 0));
	wr64(blkp(t, 0, 102) + 3 * 8, 0x102);
	wr64(blkp(t, 0, 100) + 4 * 8, 0x100);

	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE), 0);
	assert_int_equal(t->nstore_calls, 2);
	assert_int_equal(t->nstored, 2);
	assert_int_equal(t->stored_blk[0], 100);
	assert_int_equal(t->stored_blk[1], 102);
	assert_int_equal(block_diff(t->stored_data, 4096, 100, 0, false, 4, 0x100), -1);
	assert_int_equal(block_diff(t->stored_data + 4096, 4096, 102, 0, false, 3, 0x102), -1);

	/* STORE alone leaves them dirty and writable. */
	assert_int_equal(state_of(t, 100), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 102), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 101), SHMA_PAGE_LOADED);
	assert_true(probe_writable(blkp(t, 0, 100)));
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, d, 4), 2);
	assert_int_equal(d[0], 100);
	assert_int_equal(d[1], 102);

	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE), 0);
	assert_int_equal(t->nstored, 4);
	assert_int_equal(t->stored_blk[2], 100);
	assert_int_equal(t->stored_blk[3], 102);
}

static void test_writeout_markstored(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);
	wr64(blkp(t, 0, 3), 33);
	wr64(blkp(t, 0, 1), 11);
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_MARKSTORED), 0);
	assert_int_equal(t->nstore_calls, 0);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_LOADED);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);
	assert_true(shma_mapping_block_mapped(t->m[0], 1));
	assert_true(probe_readable(blkp(t, 0, 1)));
	assert_false(probe_writable(blkp(t, 0, 1)));
	assert_false(probe_writable(blkp(t, 0, 3)));
	assert_block(t, 0, 1, 0, 0, 11);	/* the page keeps its data */
	assert_block(t, 0, 3, 0, 0, 33);
	assert_int_equal(t->nload[1], 1);

	/* A later write dirties it again. */
	wr64(blkp(t, 0, 1) + 8, 12);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_LOADED);
	assert_int_equal(rd64(blkp(t, 0, 1)), 11);
	assert_int_equal(rd64(blkp(t, 0, 1) + 8), 12);
	assert_int_equal(rd64(blkp(t, 0, 1) + 16), pat(1, 0, 2));
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 1);

	/* Clean now means reclaimable. */
	assert_int_equal(shma_ram_reclaim(t->ram, 100), 1);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);
}

static void test_writeout_store_markstored(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);
	wr64(blkp(t, 0, 2), 22);
	wr64(blkp(t, 0, 0), 20);
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE |
							     SHMA_WRITEOUT_MARKSTORED), 0);
	assert_int_equal(t->nstored, 2);
	assert_int_equal(t->stored_blk[0], 0);
	assert_int_equal(t->stored_blk[1], 2);
	assert_int_equal(block_diff(t->stored_data, 4096, 0, 0, false, 0, 20), -1);
	assert_int_equal(block_diff(t->stored_data + 4096, 4096, 2, 0, false, 0, 22), -1);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
	assert_false(probe_writable(blkp(t, 0, 0)));
	assert_false(probe_writable(blkp(t, 0, 2)));
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);

	/* Nothing dirty: nothing to store. */
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE), 0);
	assert_int_equal(t->nstore_calls, 2);
}

static void test_writeout_bad_flags(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	unsigned bad[] = { 0, 1u << 5, SHMA_WRITEOUT_STORE | 1u << 5,
			   SHMA_WRITEOUT_MARKSTORED | 1u << 2 };

	tf_map(t, 0, 0, 4);
	wr64(blkp(t, 0, 1), 1);
	assert_int_equal(rd64(blkp(t, 0, 2)), pat(2, 0, 0));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(shma_fileh_writeout(t->fh, bad[i]), -EINVAL);
		assert_int_equal(t->nstore_calls, 0);
		assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
		assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
		assert_true(probe_writable(blkp(t, 0, 1)));
		assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 1);
	}
}

static void test_writeout_store_error(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);
	for (uint64_t b = 1; b < 4; b++)
		wr64(blkp(t, 0, b), 10 + b);
	t->fail_store_blk = 2;
	t->fail_store_err = -EIO;

	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE |
							     SHMA_WRITEOUT_MARKSTORED), -EIO);
	assert_int_equal(t->nstore_calls, 2);	/* 1 stored, 2 failed, stopped */
	assert_int_equal(t->nstored, 1);
	assert_int_equal(t->stored_blk[0], 1);
	for (uint64_t b = 1; b < 4; b++) {
		assert_int_equal(state_of(t, b), SHMA_PAGE_DIRTY);
		assert_true(probe_writable(blkp(t, 0, b)));
		assert_block(t, 0, b, 0, 0, 10 + b);
	}
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 3);

	/* The handle stays usable. */
	wr64(blkp(t, 0, 0), 10);
	t->fail_store_blk = NONE;
	t->nstored = 0;
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE |
							     SHMA_WRITEOUT_MARKSTORED), 0);
	assert_int_equal(t->nstored, 4);
	for (uint64_t b = 0; b < 4; b++) {
		assert_int_equal(t->stored_blk[b], b);
		assert_int_equal(block_diff(t->stored_data + b * 4096, 4096, b, 0, false, 0,
					    10 + b), -1);
		assert_int_equal(state_of(t, b), SHMA_PAGE_LOADED);
	}
}

/* ---- copy-in: invalidate, dirty list, close ------------------------------------ */

static void test_invalidate(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);

	/* No page: nothing happens. */
	shma_fileh_invalidate(t->fh, 0);
	shma_fileh_invalidate(t->fh, 1000);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(t->nload[0], 0);
	assert_int_equal(ram_stats(t).npages, 0);

	/* Clean: dropped, reread loads the new contents. */
	assert_int_equal(rd64(blkp(t, 0, 1)), pat(1, 0, 0));
	t->ver[1] = 1;
	shma_fileh_invalidate(t->fh, 1);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(t->m[0], 1));
	assert_false(probe_readable(blkp(t, 0, 1)));
	assert_int_equal(ram_stats(t).npages, 0);
	assert_block(t, 0, 1, 1, -1, 0);
	assert_int_equal(t->nload[1], 2);

	/* Dirty: dropped with its changes. */
	wr64(blkp(t, 0, 2), 999);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	shma_fileh_invalidate(t->fh, 2);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_block(t, 0, 2, 0, -1, 0);
	assert_int_equal(t->nload[2], 2);
	assert_int_equal(t->nstore_calls, 0);
}

static void test_invalidate_while_loading(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);

	/* Through prefault. */
	t->inval_load_blk = 1;
	assert_int_equal(shma_prefault(blkp(t, 0, 1), 4096, 0), 0);
	assert_int_equal(t->inval_before, SHMA_PAGE_LOADING);
	assert_int_equal(t->inval_after, SHMA_PAGE_LOADING_INVALIDATED);
	assert_int_equal(t->nload[1], 2);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);
	assert_block(t, 0, 1, 1, -1, 0);	/* the new contents, not the stale load */
	assert_int_equal(t->nload[1], 2);

	/* Through a fault (loadblk runs in the fault handler). */
	t->inval_load_blk = 2;
	t->inval_before = t->inval_after = SHMA_PAGE_EMPTY;
	assert_int_equal(rd64(blkp(t, 0, 2) + 8), pat(2, 1, 1));
	assert_int_equal(t->inval_before, SHMA_PAGE_LOADING);
	assert_int_equal(t->inval_after, SHMA_PAGE_LOADING_INVALIDATED);
	assert_int_equal(t->nload[2], 2);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
	assert_block(t, 0, 2, 1, -1, 0);

	/* A write fault too. */
	t->inval_load_blk = 3;
	wr64(blkp(t, 0, 3) + 8, 77);
	assert_int_equal(t->nload[3], 2);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_DIRTY);
	assert_block(t, 0, 3, 1, 1, 77);
	assert_int_equal(ram_stats(t).npages, 3);
}

static void test_dirty_blocks_list(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	uint64_t d[10];

	tf_map(t, 0, 0, 10);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, d, 10), 0);
	wr64(blkp(t, 0, 7), 7);
	wr64(blkp(t, 0, 3), 3);
	assert_int_equal(rd64(blkp(t, 0, 4)), pat(4, 0, 0));
	wr64(blkp(t, 0, 5), 5);
	wr64(blkp(t, 0, 9), 9);

	memset(d, 0xee, sizeof(d));
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, d, 10), 4);
	assert_int_equal(d[0], 3);
	assert_int_equal(d[1], 5);
	assert_int_equal(d[2], 7);
	assert_int_equal(d[3], 9);
	assert_int_equal(d[4], 0xeeeeeeeeeeeeeeeeull);

	memset(d, 0xee, sizeof(d));
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, d, 2), 4);
	assert_int_equal(d[0], 3);
	assert_int_equal(d[1], 5);
	assert_int_equal(d[2], 0xeeeeeeeeeeeeeeeeull);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 4);
}

static void test_close_with_pages(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	shma_ram *none = NULL;
	shma_file *nofile = NULL;

	tf_map(t, 0, 0, 8);
	tf_map(t, 1, 2, 4);
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));
	assert_int_equal(rd64(blkp(t, 1, 3)), pat(3, 0, 0));
	wr64(blkp(t, 0, 2), 2);
	wr64(blkp(t, 1, 5), 5);
	assert_int_equal(ram_stats(t).npages, 4);

	assert_int_equal(shma_ram_destroy(&t->ram), SHMA_EBUSY);
	assert_non_null(t->ram);
	assert_int_equal(shma_file_destroy(&t->f), SHMA_EBUSY);
	assert_non_null(t->f);
	assert_int_equal(ram_stats(t).npages, 4);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(rd64(blkp(t, 1, 2)), 2);

	shma_fileh_close(&t->fh);	/* unmaps both mappings */
	assert_null(t->fh);
	t->m[0] = t->m[1] = NULL;
	assert_int_equal(ram_stats(t).used, 0);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(t->nstore_calls, 0);

	assert_int_equal(shma_file_destroy(&t->f), 0);
	assert_null(t->f);
	assert_int_equal(shma_ram_destroy(&t->ram), 0);
	assert_null(t->ram);
	shma_ram_destroy(&none);	/* no-ops */
	shma_file_destroy(&nofile);
	shma_fileh_close(&t->fh);
	assert_null(none);
}

static void test_errno_preserved(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	int e;

	tf_map(t, 0, 0, 4);
	errno = EXDEV;
	(void)rd64(blkp(t, 0, 0));	/* read fault, loadblk clobbers errno */
	e = errno;
	assert_int_equal(e, EXDEV);
	assert_int_equal(t->nload[0], 1);

	errno = 12345;
	wr64(blkp(t, 0, 0), 1);		/* LOADED -> DIRTY */
	e = errno;
	assert_int_equal(e, 12345);

	errno = ENOTTY;
	wr64(blkp(t, 0, 1), 1);		/* EMPTY -> DIRTY */
	e = errno;
	assert_int_equal(e, ENOTTY);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
}

static void *fault_error_thread(void *arg)
{
	*(int *)arg = shma_vm_fault_error();
	return NULL;
}

static void test_loadblk_error_sigbus(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	uint8_t *p;
	pthread_t th;
	int other = 1;

	skip_under_valgrind();
	tf_map(t, 0, 0, 4);
	t->fail_load_blk = 2;
	t->fail_load_err = -EIO;

	p = blkp(t, 0, 2) + 123 * 8;
	assert_true(touch_sigbus(p, false, 0));
	assert_bus_at(p);
	assert_int_equal(shma_vm_fault_error(), -EIO);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(t->m[0], 2));
	assert_int_equal(t->nload[2], 1);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(ram_stats(t).used, 0);

	/* The error is per thread. */
	assert_int_equal(pthread_create(&th, NULL, fault_error_thread, &other), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(other, 0);

	p = blkp(t, 0, 2) + 4088;
	assert_true(touch_sigbus(p, true, 5));
	assert_bus_at(p);
	assert_int_equal(shma_vm_fault_error(), -EIO);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_int_equal(t->nload[2], 2);

	assert_int_equal(shma_prefault(blkp(t, 0, 2), 4096, 0), -EIO);
	assert_int_equal(shma_prefault(blkp(t, 0, 2) + 8, 8, SHMA_PREFAULT_WRITE), -EIO);
	assert_int_equal(shma_prefault(blkp(t, 0, 0), 4 * 4096, 0), -EIO);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_int_equal(t->nload[2], 5);

	/* Once the store works again, so does the access. */
	t->fail_load_blk = NONE;
	assert_false(touch_sigbus(blkp(t, 0, 2) + 8, false, 0));
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
	assert_block(t, 0, 2, 0, -1, 0);
	assert_false(touch_sigbus(blkp(t, 0, 2) + 8, true, 6));
	assert_block(t, 0, 2, 0, 1, 6);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
}

/* ---- prefault ---------------------------------------------------------------- */

static void test_prefault(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	uint8_t *buf = malloc(2 * 4096), *want = malloc(2 * 4096);
	int pfd[2];

	assert_non_null(buf);
	assert_non_null(want);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	tf_map(t, 0, 0, 8);

	/* Without prefault a system call gets EFAULT, nothing is loaded. */
	errno = 0;
	assert_int_equal(write(pfd[1], blkp(t, 0, 5), 8), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(state_of(t, 5), SHMA_PAGE_EMPTY);
	assert_int_equal(t->nload[5], 0);

	/* Read prefault: loaded, read-only, usable by write(2). */
	assert_int_equal(shma_prefault(blkp(t, 0, 0), 2 * 4096, 0), 0);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_true(shma_mapping_block_mapped(t->m[0], 1));
	assert_int_equal(t->nload[0], 1);
	assert_int_equal(t->nload[1], 1);
	assert_false(probe_writable(blkp(t, 0, 0)));
	assert_int_equal(write(pfd[1], blkp(t, 0, 0), 2 * 4096), 2 * 4096);
	assert_int_equal(read(pfd[0], buf, 2 * 4096), 2 * 4096);
	assert_int_equal(block_diff(buf, 4096, 0, 0, false, -1, 0), -1);
	assert_int_equal(block_diff(buf + 4096, 4096, 1, 0, false, -1, 0), -1);
	assert_int_equal(shma_prefault(blkp(t, 0, 0), 2 * 4096, 0), 0);	/* again: no-op */
	assert_int_equal(t->nload[0], 1);

	/* Write prefault of a loaded block inside a small range. */
	assert_int_equal(shma_prefault(blkp(t, 0, 1) + 100, 10, SHMA_PREFAULT_WRITE), 0);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_int_equal(t->nload[1], 1);

	/* Write prefault across two empty blocks, then read(2) into it. */
	assert_int_equal(shma_prefault(blkp(t, 0, 2) + 4000, 200, SHMA_PREFAULT_WRITE), 0);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 4), SHMA_PAGE_EMPTY);
	assert_int_equal(t->nload[2], 1);
	assert_int_equal(t->nload[3], 1);
	memset(buf, 0xab, 200);
	assert_int_equal(write(pfd[1], buf, 200), 200);
	assert_int_equal(read(pfd[0], blkp(t, 0, 2) + 4000, 200), 200);
	fill_block(want, 4096, 2, 0);
	fill_block(want + 4096, 4096, 3, 0);
	memset(want + 4000, 0xab, 200);
	assert_memory_equal(blkp(t, 0, 2), want, 2 * 4096);

	close(pfd[0]);
	close(pfd[1]);
	free(buf);
	free(want);
}

static void test_prefault_not_mapped(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 16 * 4096);
	uint64_t local[4] = { 0 };

	tf_map(t, 0, 0, 8);
	assert_int_equal(shma_prefault(local, sizeof(local), 0), SHMA_ENOTMAPPED);
	assert_int_equal(shma_prefault(local, sizeof(local), SHMA_PREFAULT_WRITE),
			 SHMA_ENOTMAPPED);
	assert_int_equal(shma_prefault((void *)(uintptr_t)4096, 4096, 0), SHMA_ENOTMAPPED);
	assert_int_equal(ram_stats(t).npages, 0);

	/* Runs off the end: the blocks before the gap are resident. */
	assert_int_equal(shma_prefault(blkp(t, 0, 6), 4 * 4096, 0), SHMA_ENOTMAPPED);
	assert_int_equal(state_of(t, 6), SHMA_PAGE_LOADED);
	assert_int_equal(state_of(t, 7), SHMA_PAGE_LOADED);
	assert_int_equal(state_of(t, 8), SHMA_PAGE_EMPTY);
	assert_int_equal(t->nload[8], 0);
}

/* ---- big blocks ------------------------------------------------------------------- */

static void test_copyin_big_blocks(void **state)
{
	const size_t bs = 64 * KIB;
	struct tf *t = tf_open(state, TF_COPYIN, bs, 4 * bs);
	struct shma_ram_stats st;

	tf_map(t, 0, 0, 6);
	assert_int_equal(rd64(blkp(t, 0, 1) + 40000), pat(1, 0, 5000));
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);
	assert_int_equal(t->nload[1], 1);
	/* The whole block came in, read-only, and nothing around it. */
	assert_true(probe_readable(blkp(t, 0, 1)));
	assert_true(probe_readable(blkp(t, 0, 1) + bs - 1));
	assert_false(probe_writable(blkp(t, 0, 1) + bs - 1));
	assert_false(probe_readable(blkp(t, 0, 0) + bs - 1));
	assert_false(probe_readable(blkp(t, 0, 2)));
	assert_block(t, 0, 1, 0, -1, 0);
	assert_int_equal(t->nload[1], 1);
	st = ram_stats(t);
	assert_int_equal(st.npages, 1);
	assert_int_equal(st.used, bs);
	assert_int_equal(st.limit, 4 * bs);

	wr64(blkp(t, 0, 1) + bs - 8, 0xb16);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_true(probe_writable(blkp(t, 0, 1)));
	assert_int_equal(t->nload[1], 1);
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE), 0);
	assert_int_equal(t->nstored, 1);
	assert_int_equal(block_diff(t->stored_data, bs, 1, 0, false, (long)(bs / 8 - 1), 0xb16),
			 -1);

	/* 1 dirty + 3 clean fill the limit; the 4th clean block evicts one. */
	for (uint64_t b = 2; b < 5; b++)
		assert_int_equal(rd64(blkp(t, 0, b) + bs / 2), pat(b, 0, bs / 16));
	assert_int_equal(ram_stats(t).nreclaimed, 0);
	assert_int_equal(rd64(blkp(t, 0, 5)), pat(5, 0, 0));
	assert_int_equal(ram_stats(t).nreclaimed, 1);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_int_equal(ram_stats(t).used, 4 * bs);
	assert_block(t, 0, 1, 0, (long)(bs / 8 - 1), 0xb16);
}

/* ---- direct-map --------------------------------------------------------------------- */

static void test_direct_read_allocates_nothing(void **state)
{
	struct tf *t = tf_open(state, TF_DIRECT, 4096, 16 * 4096);
	int pfd[2];
	uint8_t *buf = malloc(4096);

	assert_non_null(buf);
	t->hole[3] = true;
	tf_map(t, 0, 0, 8);
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));
	assert_block(t, 0, 0, 0, -1, 0);
	assert_block(t, 0, 1, 0, -1, 0);
	assert_int_equal(block_diff(blkp(t, 0, 3), 4096, 3, 0, true, -1, 0), -1);	/* hole */
	for (uint64_t b = 0; b < 4; b++) {
		if (b == 2)
			continue;
		assert_int_equal(state_of(t, b), SHMA_PAGE_LOADED);
		assert_true(shma_mapping_block_mapped(t->m[0], b));
		assert_false(probe_writable(blkp(t, 0, b)));
		assert_int_equal(t->nmapblk[b], 1);
		assert_int_equal(t->nload[b], 0);
	}
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_int_equal(ram_stats(t).used, 0);
	assert_int_equal(ram_stats(t).npages, 0);

	/* Prefault maps the base too; write(2) can read it. */
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(shma_prefault(blkp(t, 0, 4), 4096, 0), 0);
	assert_int_equal(state_of(t, 4), SHMA_PAGE_LOADED);
	assert_int_equal(write(pfd[1], blkp(t, 0, 4), 4096), 4096);
	assert_int_equal(read(pfd[0], buf, 4096), 4096);
	assert_int_equal(block_diff(buf, 4096, 4, 0, false, -1, 0), -1);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(t->nmapblk[0], 1);
	close(pfd[0]);
	close(pfd[1]);
	free(buf);

	/* Clean direct pages hold no RAM but cost mappings: reclaim unmaps them
	 * too, and the next access maps the base again. */
	assert_int_equal(shma_ram_reclaim(t->ram, 100), 4); /* blocks 0, 1, 3, 4 */
	assert_int_equal(state_of(t, 4), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(t->m[0], 4));
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(rd64(blkp(t, 0, 4)), pat(4, 0, 0));
	assert_int_equal(t->nmapblk[4], 2);
}

static void test_direct_first_write_copies(void **state)
{
	struct tf *t = tf_open(state, TF_DIRECT, 4096, 16 * 4096);
	int e;

	t->hole[3] = true;
	tf_map(t, 0, 0, 8);
	assert_int_equal(rd64(blkp(t, 0, 1)), pat(1, 0, 0));
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));

	errno = EXDEV;
	wr64(blkp(t, 0, 1) + 7 * 8, 0x77);	/* LOADED -> DIRTY */
	e = errno;
	assert_int_equal(e, EXDEV);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(ram_stats(t).used, 4096);
	assert_block(t, 0, 1, 0, 7, 0x77);
	assert_memfd_block(t, 1, -1, 0);	/* the base is not written */
	assert_true(probe_writable(blkp(t, 0, 1)));
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_false(probe_writable(blkp(t, 0, 0)));

	wr64(blkp(t, 0, 2) + 8, 0x22);		/* EMPTY -> DIRTY */
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_block(t, 0, 2, 0, 1, 0x22);
	assert_int_equal(t->nmapblk[2], 1);
	assert_memfd_block(t, 2, -1, 0);

	wr64(blkp(t, 0, 3) + 16, 0x33);		/* hole: zeros + the write */
	assert_int_equal(state_of(t, 3), SHMA_PAGE_DIRTY);
	assert_int_equal(block_diff(blkp(t, 0, 3), 4096, 3, 0, true, 2, 0x33), -1);
	assert_memfd_block(t, 3, -1, 0);
	assert_int_equal(ram_stats(t).npages, 3);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 3);
}

static void test_direct_two_mappings_share_dirty(void **state)
{
	struct tf *t = tf_open(state, TF_DIRECT, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);
	tf_map(t, 1, 0, 4);
	tf_map(t, 2, 1, 2);	/* blocks 1..2 */

	/* Both map the base read-only, then one writes: the other must see it. */
	assert_int_equal(rd64(blkp(t, 0, 1)), pat(1, 0, 0));
	assert_int_equal(rd64(blkp(t, 1, 1)), pat(1, 0, 0));
	assert_int_equal(rd64(blkp(t, 2, 1)), pat(1, 0, 0));
	wr64(blkp(t, 0, 1) + 8, 0xa1);
	assert_int_equal(rd64(blkp(t, 1, 1) + 8), 0xa1);
	assert_int_equal(rd64(blkp(t, 2, 1) + 8), 0xa1);
	wr64(blkp(t, 1, 1) + 16, 0xb1);
	assert_int_equal(rd64(blkp(t, 0, 1) + 16), 0xb1);
	assert_int_equal(rd64(blkp(t, 2, 1) + 16), 0xb1);
	assert_int_equal(rd64(blkp(t, 0, 1) + 8), 0xa1);

	/* A first write through mapping 2 on an empty block. */
	wr64(blkp(t, 2, 2) + 24, 0xc2);
	assert_int_equal(rd64(blkp(t, 0, 2) + 24), 0xc2);
	assert_int_equal(rd64(blkp(t, 1, 2) + 24), 0xc2);
	wr64(blkp(t, 1, 2) + 32, 0xd2);
	assert_int_equal(rd64(blkp(t, 2, 2) + 32), 0xd2);

	assert_int_equal(ram_stats(t).npages, 2);
	assert_int_equal(t->nmapblk[2], 1);
	assert_memfd_block(t, 1, -1, 0);
	assert_memfd_block(t, 2, -1, 0);
	for (int i = 0; i < 3; i++)
		assert_true(probe_writable(blkp(t, i, 1)));
}

static void test_direct_discard_remaps_base(void **state)
{
	struct tf *t = tf_open(state, TF_DIRECT, 4096, 16 * 4096);

	tf_map(t, 0, 0, 4);
	tf_map(t, 1, 0, 4);
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));
	wr64(blkp(t, 0, 0), 1);
	wr64(blkp(t, 1, 1), 2);
	assert_int_equal(rd64(blkp(t, 0, 2)), pat(2, 0, 0));
	assert_int_equal(ram_stats(t).npages, 2);

	shma_fileh_discard(t->fh);
	assert_int_equal(ram_stats(t).used, 0);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);

	assert_block(t, 1, 0, 0, -1, 0);
	assert_block(t, 0, 0, 0, -1, 0);
	assert_block(t, 0, 1, 0, -1, 0);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_false(probe_writable(blkp(t, 1, 0)));
	assert_int_equal(t->nstore_calls, 0);
}

static void test_direct_markstored(void **state)
{
	struct tf *t = tf_open(state, TF_DIRECT, 4096, 16 * 4096);

	t->store_to_memfd = true;
	tf_map(t, 0, 0, 4);
	wr64(blkp(t, 0, 2) + 9 * 8, 0x29);
	wr64(blkp(t, 0, 0) + 3 * 8, 0x03);
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE |
							     SHMA_WRITEOUT_MARKSTORED), 0);
	assert_int_equal(t->nstored, 2);
	assert_int_equal(t->stored_blk[0], 0);
	assert_int_equal(t->stored_blk[1], 2);
	assert_int_equal(ram_stats(t).used, 0);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_memfd_block(t, 0, 3, 0x03);
	assert_memfd_block(t, 2, 9, 0x29);

	/* The next access maps the base, which now holds the stored data. */
	assert_block(t, 0, 0, 0, 3, 0x03);
	assert_block(t, 0, 2, 0, 9, 0x29);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_false(probe_writable(blkp(t, 0, 0)));

	/* MARKSTORED alone: the change is dropped, the base shows again. */
	wr64(blkp(t, 0, 1), 0x11);
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_MARKSTORED), 0);
	assert_int_equal(t->nstored, 2);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_block(t, 0, 1, 0, -1, 0);
}

static void test_direct_mapblk_error_sigbus(void **state)
{
	struct tf *t = tf_open(state, TF_DIRECT, 4096, 16 * 4096);
	uint8_t *p;

	skip_under_valgrind();
	tf_map(t, 0, 0, 4);
	t->fail_map_blk = 1;
	p = blkp(t, 0, 1) + 40;
	assert_true(touch_sigbus(p, false, 0));
	assert_bus_at(p);
	assert_int_equal(shma_vm_fault_error(), -EIO);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_int_equal(shma_prefault(p, 8, 0), -EIO);

	t->fail_map_blk = NONE;
	assert_false(touch_sigbus(p, false, 0));
	assert_block(t, 0, 1, 0, -1, 0);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);
}

static void test_direct_big_blocks(void **state)
{
	const size_t bs = 2 * MIB;
	struct tf *t = tf_open(state, TF_DIRECT, bs, 4 * bs);

	t->hole[2] = true;
	tf_map(t, 0, 0, 4);
	assert_int_equal(rd64(blkp(t, 0, 0) + MIB + 8), pat(0, 0, MIB / 8 + 1));
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_true(probe_readable(blkp(t, 0, 0)));
	assert_true(probe_readable(blkp(t, 0, 0) + bs - 1));
	assert_false(probe_readable(blkp(t, 0, 1)));
	assert_block(t, 0, 0, 0, -1, 0);
	assert_int_equal(block_diff(blkp(t, 0, 2), bs, 2, 0, true, -1, 0), -1);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(ram_stats(t).used, 0);

	wr64(blkp(t, 0, 1) + bs - 8, 0xfeed);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(ram_stats(t).used, bs);
	assert_block(t, 0, 1, 0, (long)(bs / 8 - 1), 0xfeed);
	assert_memfd_block(t, 1, -1, 0);
	assert_true(probe_writable(blkp(t, 0, 1)));

	shma_fileh_discard(t->fh);
	assert_int_equal(ram_stats(t).used, 0);
	assert_block(t, 0, 1, 0, -1, 0);
	assert_int_equal(t->nmapblk[1], 2);
}

/* ---- direct-map, SHMA_FILE_COW_PRIVATE ------------------------------------------------ */

#define COW SHMA_FILE_COW_PRIVATE

static void test_cow_private_write_uses_no_ram(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096, COW);
	uint64_t d[4];
	int e;

	tf_map(t, 0, 0, 4);
	assert_int_equal(rd64(blkp(t, 0, 1)), pat(1, 0, 0));
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);

	/* One byte into a clean block: DIRTY, and no RAM page for it. */
	errno = EXDEV;
	wr8(blkp(t, 0, 1) + 100 * 8 + 3, 0x5a);
	e = errno;
	assert_int_equal(e, EXDEV);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(ram_stats(t).used, 0);
	assert_int_equal(t->nmapblk[1], 1);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, d, 4), 1);
	assert_int_equal(d[0], 1);
	assert_true(shma_mapping_block_mapped(t->m[0], 1));
	assert_true(probe_writable(blkp(t, 0, 1)));
	assert_true(probe_writable(blkp(t, 0, 1) + 4095));
	assert_block(t, 0, 1, 0, 100, with_byte(pat(1, 0, 100), 3, 0x5a));
	assert_memfd_block(t, 1, -1, 0);	/* the base is not written */
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_false(probe_writable(blkp(t, 0, 0)));

	/* Further writes stay in the copy; EMPTY -> DIRTY goes the same way. */
	wr64(blkp(t, 0, 1), 0x11);
	wr64(blkp(t, 0, 2) + 8, 0x22);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(t->nmapblk[2], 1);
	assert_block(t, 0, 2, 0, 1, 0x22);
	assert_int_equal(rd64(blkp(t, 0, 1)), 0x11);
	assert_int_equal(rd64(blkp(t, 0, 1) + 100 * 8), with_byte(pat(1, 0, 100), 3, 0x5a));
	assert_int_equal(rd64(blkp(t, 0, 1) + 8), pat(1, 0, 1));
	assert_memfd_block(t, 1, -1, 0);
	assert_memfd_block(t, 2, -1, 0);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 2);

	/* Reclaim takes the clean block only: private copies are dirty. */
	assert_int_equal(shma_ram_reclaim(t->ram, 100), 1);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(rd64(blkp(t, 0, 1)), 0x11);
	assert_block(t, 0, 2, 0, 1, 0x22);
}

/* The kernel copies only the 4 KiB pages written: in the page table the
 * written page is anonymous, the others are the base's (or not there). */
static void test_cow_private_copies_written_page_only(void **state)
{
	const size_t bs = 64 * KIB, np = bs / 4096;
	struct tf *t = tf_open_flags(state, TF_DIRECT, bs, 4 * bs, COW);
	const long w3 = (3 * 4096 + 8) / 8, w7 = (7 * 4096 + 4000) / 8;
	uint8_t *b;

	tf_open_pagemap(t);
	tf_map(t, 0, 0, 4);

	/* EMPTY -> DIRTY by one byte in page 3. */
	b = blkp(t, 0, 1);
	wr8(b + 3 * 4096 + 9, 0xc3);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(ram_stats(t).npages, 0);
	for (size_t i = 0; i < np; i++)
		assert_int_equal(page_is_anon_copy(t, b + i * 4096), i == 3);
	/* Reading the block maps the base's pages, it copies none. */
	assert_block(t, 0, 1, 0, w3, with_byte(pat(1, 0, (size_t)w3), 1, 0xc3));
	for (size_t i = 0; i < np; i++)
		assert_int_equal(page_is_anon_copy(t, b + i * 4096), i == 3);

	/* LOADED (read in whole through the shared base) -> DIRTY by one byte
	 * in page 7. */
	b = blkp(t, 0, 2);
	assert_block(t, 0, 2, 0, -1, 0);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
	for (size_t i = 0; i < np; i++)
		assert_false(page_is_anon_copy(t, b + i * 4096));
	wr8(b + 7 * 4096 + 4000, 0x77);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_block(t, 0, 2, 0, w7, with_byte(pat(2, 0, (size_t)w7), 0, 0x77));
	for (size_t i = 0; i < np; i++)
		assert_int_equal(page_is_anon_copy(t, b + i * 4096), i == 7);

	/* A second page written: two copies; still no RAM. */
	wr64(blkp(t, 0, 1) + bs - 8, 0xe);
	for (size_t i = 0; i < np; i++)
		assert_int_equal(page_is_anon_copy(t, blkp(t, 0, 1) + i * 4096),
				 i == 3 || i == np - 1);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(ram_stats(t).used, 0);
	assert_memfd_block(t, 1, -1, 0);
	assert_memfd_block(t, 2, -1, 0);
}

static void test_cow_private_hole(void **state)
{
	const size_t bs = 16 * KIB;
	struct tf *t = tf_open_flags(state, TF_DIRECT, bs, 4 * bs, COW);
	const long w1 = (2 * 4096 + 8) / 8, w2 = (long)(bs / 8 - 1);

	t->hole[1] = t->hole[2] = true;
	tf_map(t, 0, 0, 4);

	/* EMPTY -> DIRTY: zeros and the write. */
	wr64(blkp(t, 0, 1) + 2 * 4096 + 8, 0x77);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(block_diff(blkp(t, 0, 1), bs, 1, 0, true, w1, 0x77), -1);

	/* LOADED (zero pages) -> DIRTY by one byte. */
	assert_int_equal(rd64(blkp(t, 0, 2) + 8), 0);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);
	wr8(blkp(t, 0, 2) + bs - 1, 0x99);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(block_diff(blkp(t, 0, 2), bs, 2, 0, true, w2, with_byte(0, 7, 0x99)),
			 -1);
	assert_true(probe_writable(blkp(t, 0, 2)));
	assert_int_equal(t->nmapblk[1], 1);
	assert_int_equal(t->nmapblk[2], 1);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(ram_stats(t).used, 0);

	/* What is stored is the zeros and the writes. */
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE), 0);
	assert_int_equal(t->nstored, 2);
	assert_int_equal(t->stored_blk[0], 1);
	assert_int_equal(t->stored_blk[1], 2);
	assert_int_equal(block_diff(t->stored_data, bs, 1, 0, true, w1, 0x77), -1);
	assert_int_equal(block_diff(t->stored_data + bs, bs, 2, 0, true, w2,
				    with_byte(0, 7, 0x99)), -1);
}

static void test_cow_private_second_mapping_before_write(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096, COW);
	const uint64_t v = with_byte(pat(1, 0, 2), 1, 0xab);

	tf_map(t, 0, 0, 4);
	tf_map(t, 1, 1, 2);	/* blocks 1..2 */

	/* Block 1 is covered twice: the write makes one RAM copy, shared. */
	assert_int_equal(rd64(blkp(t, 1, 1)), pat(1, 0, 0));
	wr8(blkp(t, 0, 1) + 17, 0xab);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(ram_stats(t).used, 4096);
	assert_block(t, 0, 1, 0, 2, v);
	assert_block(t, 1, 1, 0, 2, v);
	wr64(blkp(t, 1, 1) + 8 * 8, 0x88);
	assert_int_equal(rd64(blkp(t, 0, 1) + 8 * 8), 0x88);
	wr64(blkp(t, 0, 1) + 9 * 8, 0x99);
	assert_int_equal(rd64(blkp(t, 1, 1) + 9 * 8), 0x99);
	assert_true(probe_writable(blkp(t, 0, 1)));
	assert_true(probe_writable(blkp(t, 1, 1)));

	/* Covered twice though mapped nowhere yet: the same. */
	wr64(blkp(t, 1, 2), 0x22);
	assert_int_equal(ram_stats(t).npages, 2);
	assert_int_equal(rd64(blkp(t, 0, 2)), 0x22);
	assert_block(t, 0, 2, 0, 0, 0x22);

	/* Block 0 is covered once: a private copy, no more RAM. */
	wr64(blkp(t, 0, 0), 0x10);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_DIRTY);
	assert_int_equal(ram_stats(t).npages, 2);
	assert_block(t, 0, 0, 0, 0, 0x10);
	for (uint64_t b = 0; b < 3; b++)
		assert_memfd_block(t, b, -1, 0);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 3);
}

static void test_cow_private_second_mapping_after_write(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096, COW);
	const uint64_t v = with_byte(pat(1, 0, 2), 1, 0xab);

	tf_map(t, 0, 0, 4);
	wr8(blkp(t, 0, 1) + 17, 0xab);
	wr64(blkp(t, 0, 2) + 8, 0x22);
	assert_int_equal(ram_stats(t).npages, 0);

	/* The copies stay private until the new mapping needs them. */
	tf_map(t, 1, 1, 2);	/* blocks 1..2 */
	assert_int_equal(ram_stats(t).npages, 0);
	assert_false(shma_mapping_block_mapped(t->m[1], 1));

	/* A read through it moves block 1's copy into RAM; both show it. */
	assert_block(t, 1, 1, 0, 2, v);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(ram_stats(t).used, 4096);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_true(shma_mapping_block_mapped(t->m[0], 1));
	assert_true(shma_mapping_block_mapped(t->m[1], 1));
	assert_block(t, 0, 1, 0, 2, v);
	wr64(blkp(t, 1, 1) + 8 * 8, 0x88);
	assert_int_equal(rd64(blkp(t, 0, 1) + 8 * 8), 0x88);
	wr64(blkp(t, 0, 1) + 9 * 8, 0x99);
	assert_int_equal(rd64(blkp(t, 1, 1) + 9 * 8), 0x99);
	assert_int_equal(rd64(blkp(t, 1, 1) + 2 * 8), v);
	assert_true(probe_writable(blkp(t, 0, 1)));
	assert_true(probe_writable(blkp(t, 1, 1)));

	/* A write through it as its first touch of block 2: the same. */
	wr64(blkp(t, 1, 2) + 16, 0x33);
	assert_int_equal(ram_stats(t).npages, 2);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(rd64(blkp(t, 0, 2) + 8), 0x22);
	assert_int_equal(rd64(blkp(t, 0, 2) + 16), 0x33);
	assert_int_equal(rd64(blkp(t, 1, 2) + 8), 0x22);
	wr64(blkp(t, 0, 2) + 24, 0x44);
	assert_int_equal(rd64(blkp(t, 1, 2) + 24), 0x44);
	assert_int_equal(rd64(blkp(t, 1, 2)), pat(2, 0, 0));

	assert_int_equal(t->nmapblk[1], 1);
	assert_int_equal(t->nmapblk[2], 1);
	assert_memfd_block(t, 1, -1, 0);
	assert_memfd_block(t, 2, -1, 0);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 2);
}

static void test_cow_private_unmap_moves_to_ram(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096, COW);
	const uint64_t v = with_byte(pat(1, 0, 2), 1, 0xab);

	tf_map(t, 0, 0, 4);
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));
	wr8(blkp(t, 0, 1) + 17, 0xab);
	assert_int_equal(ram_stats(t).npages, 0);

	assert_int_equal(shma_unmap(&t->m[0]), 0);
	assert_null(t->m[0]);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(ram_stats(t).used, 4096);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 1);

	/* The changes are kept: a new mapping shows them and writes on. */
	tf_map(t, 1, 0, 2);
	assert_block(t, 1, 1, 0, 2, v);
	assert_true(probe_writable(blkp(t, 1, 1)));
	wr64(blkp(t, 1, 1), 0x1);
	assert_int_equal(rd64(blkp(t, 1, 1) + 16), v);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(t->nmapblk[1], 1);
	assert_memfd_block(t, 1, -1, 0);

	/* In RAM now: unmapping again needs nothing more. */
	assert_int_equal(shma_unmap(&t->m[1]), 0);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
}

static void test_cow_private_unmap_at_ram_limit(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 2 * 4096, COW);
	const uint64_t v = with_byte(pat(0, 0, 2), 1, 0xab);
	shma_mapping *m0;

	tf_map(t, 0, 0, 4);
	tf_map(t, 1, 2, 2);	/* blocks 2..3 */
	wr64(blkp(t, 1, 2), 0x2);	/* covered twice: RAM, which is then full */
	wr64(blkp(t, 1, 3), 0x3);
	assert_int_equal(ram_stats(t).npages, 2);
	wr8(blkp(t, 0, 0) + 17, 0xab);	/* covered once: private */
	assert_int_equal(state_of(t, 0), SHMA_PAGE_DIRTY);
	assert_int_equal(ram_stats(t).npages, 2);

	/* RAM cannot take the copy: nothing is unmapped. */
	m0 = t->m[0];
	assert_int_equal(shma_unmap(&t->m[0]), SHMA_ERAMLIMIT);
	assert_ptr_equal(t->m[0], m0);
	assert_true(shma_mapping_block_mapped(t->m[0], 0));
	assert_int_equal(state_of(t, 0), SHMA_PAGE_DIRTY);
	assert_block(t, 0, 0, 0, 2, v);
	assert_int_equal(rd64(blkp(t, 0, 2)), 0x2);
	wr64(blkp(t, 0, 0) + 8, 0x1);	/* still usable */
	assert_int_equal(rd64(blkp(t, 0, 0) + 8), 0x1);
	assert_int_equal(ram_stats(t).npages, 2);
	assert_memfd_block(t, 0, -1, 0);

	/* Room again: the copy moves and the mapping goes. */
	shma_fileh_invalidate(t->fh, 3);
	assert_int_equal(ram_stats(t).npages, 1);
	assert_int_equal(shma_unmap(&t->m[0]), 0);
	assert_null(t->m[0]);
	assert_int_equal(ram_stats(t).npages, 2);
	assert_int_equal(state_of(t, 0), SHMA_PAGE_DIRTY);
	tf_map(t, 2, 0, 1);
	assert_int_equal(rd64(blkp(t, 2, 0) + 8), 0x1);
	assert_int_equal(rd64(blkp(t, 2, 0) + 16), v);
	assert_int_equal(rd64(blkp(t, 2, 0) + 24), pat(0, 0, 3));
	assert_int_equal(rd64(blkp(t, 1, 2)), 0x2);
}

static void test_cow_private_writeout(void **state)
{
	const size_t bs = 16 * KIB;
	struct tf *t = tf_open_flags(state, TF_DIRECT, bs, 4 * bs, COW);
	const long w = (2 * 4096 + 40) / 8;
	const uint64_t v = with_byte(pat(1, 0, (size_t)w), 5, 0xee);

	tf_map(t, 0, 0, 4);
	wr8(blkp(t, 0, 1) + 2 * 4096 + 45, 0xee);

	/* storeblk gets the whole block: the change and the base around it. */
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE), 0);
	assert_int_equal(t->nstored, 1);
	assert_int_equal(t->stored_blk[0], 1);
	assert_int_equal(block_diff(t->stored_data, bs, 1, 0, false, w, v), -1);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_true(probe_writable(blkp(t, 0, 1)));
	assert_int_equal(ram_stats(t).npages, 0);
	assert_memfd_block(t, 1, -1, 0);

	/* Stored into the base and marked stored: dropped; the next read
	 * maps the base, which now holds the change. */
	t->store_to_memfd = true;
	assert_int_equal(shma_fileh_writeout(t->fh, SHMA_WRITEOUT_STORE |
							     SHMA_WRITEOUT_MARKSTORED), 0);
	assert_int_equal(t->nstored, 2);
	assert_int_equal(block_diff(t->stored_data + bs, bs, 1, 0, false, w, v), -1);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(t->m[0], 1));
	assert_false(probe_readable(blkp(t, 0, 1)));
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_memfd_block(t, 1, w, v);
	assert_block(t, 0, 1, 0, w, v);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);
	assert_false(probe_writable(blkp(t, 0, 1)));
	assert_int_equal(t->nmapblk[1], 2);

	/* And a write makes a private copy of that again. */
	wr64(blkp(t, 0, 1), 0x7);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_DIRTY);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(rd64(blkp(t, 0, 1)), 0x7);
	assert_int_equal(rd64(blkp(t, 0, 1) + 8), pat(1, 0, 1));
	assert_int_equal(rd64(blkp(t, 0, 1) + w * 8), v);
	assert_memfd_block(t, 1, w, v);
}

static void test_cow_private_discard(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096, COW);

	tf_map(t, 0, 0, 4);
	tf_map(t, 1, 3, 1);	/* block 3 */
	wr8(blkp(t, 0, 0) + 5, 0x55);	/* private */
	wr64(blkp(t, 0, 1) + 8, 0x11);	/* private */
	assert_int_equal(rd64(blkp(t, 0, 2)), pat(2, 0, 0));
	wr64(blkp(t, 0, 3), 0x33);	/* covered twice: RAM */
	assert_int_equal(ram_stats(t).npages, 1);

	shma_fileh_discard(t->fh);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(ram_stats(t).used, 0);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);
	for (uint64_t b = 0; b < 4; b++)
		assert_int_equal(state_of(t, b), b == 2 ? SHMA_PAGE_LOADED : SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(t->m[0], 0));
	assert_false(probe_readable(blkp(t, 0, 0)));
	assert_false(probe_readable(blkp(t, 0, 1)));

	/* The base again, read-only, no RAM. */
	for (uint64_t b = 0; b < 4; b++)
		assert_block(t, 0, b, 0, -1, 0);
	assert_block(t, 1, 3, 0, -1, 0);
	assert_false(probe_writable(blkp(t, 0, 0)));
	assert_int_equal(state_of(t, 0), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(t->nmapblk[0], 2);
	assert_int_equal(t->nstore_calls, 0);
	for (uint64_t b = 0; b < 4; b++)
		assert_memfd_block(t, b, -1, 0);
}

static void test_cow_private_invalidate(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096, COW);

	tf_map(t, 0, 0, 4);
	wr8(blkp(t, 0, 1) + 5, 0x55);
	wr64(blkp(t, 0, 2), 0x22);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 2);

	shma_fileh_invalidate(t->fh, 1);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(t->m[0], 1));
	assert_false(probe_readable(blkp(t, 0, 1)));
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 1);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_block(t, 0, 2, 0, 0, 0x22);

	assert_block(t, 0, 1, 0, -1, 0);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);
	assert_int_equal(t->nmapblk[1], 2);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(t->nstore_calls, 0);
}

/* Close never needs RAM: here RAM is full and could take no private copy. */
static void test_cow_private_close(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 4096, COW);

	tf_map(t, 0, 0, 4);
	tf_map(t, 1, 3, 1);	/* block 3 */
	wr8(blkp(t, 0, 0) + 5, 0x55);	/* private */
	wr64(blkp(t, 0, 1), 0x11);	/* private */
	assert_int_equal(rd64(blkp(t, 0, 2)), pat(2, 0, 0));
	wr64(blkp(t, 1, 3), 0x33);	/* covered twice: RAM */
	assert_int_equal(ram_stats(t).npages, 1);

	shma_fileh_close(&t->fh);	/* unmaps both mappings */
	assert_null(t->fh);
	t->m[0] = t->m[1] = NULL;
	assert_int_equal(ram_stats(t).used, 0);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(t->nstore_calls, 0);
	for (uint64_t b = 0; b < 4; b++)
		assert_memfd_block(t, b, -1, 0);
	assert_int_equal(shma_file_destroy(&t->f), 0);
	assert_int_equal(shma_ram_destroy(&t->ram), 0);
}

/* ---- the bound on pages, and reclaim of both kinds --------------------------------- */

static void test_max_pages_bad(void **state)
{
	struct tf *t = tf_open(state, TF_DIRECT, 4096, 16 * 4096);

	assert_int_equal(shma_ram_set_max_pages(t->ram, 0), -EINVAL);
	assert_int_equal(shma_ram_set_max_pages(t->ram, 1), 0);
	tf_map(t, 0, 0, 4);
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));
	assert_int_equal(rd64(blkp(t, 0, 1)), pat(1, 0, 0));
	assert_int_equal(state_of(t, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(ram_stats(t).nreclaimed, 1);
	/* 0 was refused and changed nothing. */
	assert_int_equal(shma_ram_set_max_pages(t->ram, 0), -EINVAL);
	assert_int_equal(rd64(blkp(t, 0, 2)), pat(2, 0, 0));
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_int_equal(ram_stats(t).nreclaimed, 2);
}

static unsigned nloads(struct tf *t, uint64_t blk)
{
	return t->kind == TF_COPYIN ? t->nload[blk] : t->nmapblk[blk];
}

/* With a bound of 3 pages, a 4th block evicts the least recently used clean
 * page (a fault through another mapping counts as a use); dirty ones stay. */
static void check_max_pages_lru(struct tf *t)
{
	const uint64_t order[] = { 2, 0, 1 };
	size_t npages = 0;

	assert_int_equal(shma_ram_set_max_pages(t->ram, 3), 0);
	tf_map(t, 0, 0, 8);
	tf_map(t, 1, 0, 8);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rd64(blkp(t, 0, order[i])), pat(order[i], 0, 0));
	assert_int_equal(ram_stats(t).nreclaimed, 0);
	assert_int_equal(ram_stats(t).npages, t->kind == TF_COPYIN ? 3 : 0);

	assert_int_equal(rd64(blkp(t, 0, 3)), pat(3, 0, 0));	/* LRU: 0 1 3 */
	assert_int_equal(state_of(t, 2), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(t->m[0], 2));
	assert_false(probe_readable(blkp(t, 0, 2)));
	assert_int_equal(ram_stats(t).nreclaimed, 1);
	for (uint64_t b = 0; b < 4; b++)
		if (b != 2)
			assert_int_equal(state_of(t, b), SHMA_PAGE_LOADED);

	assert_int_equal(rd64(blkp(t, 0, 2)), pat(2, 0, 0));	/* LRU: 1 3 2 */
	assert_int_equal(state_of(t, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(nloads(t, 2), 2);
	assert_int_equal(rd64(blkp(t, 1, 1)), pat(1, 0, 0));	/* LRU: 3 2 1 */
	assert_int_equal(ram_stats(t).nreclaimed, 2);
	assert_int_equal(nloads(t, 1), 1);
	assert_int_equal(rd64(blkp(t, 0, 4)), pat(4, 0, 0));	/* LRU: 2 1 4 */
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 1), SHMA_PAGE_LOADED);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_LOADED);

	/* A dirty page is never evicted: the clean ones go around it. */
	wr64(blkp(t, 0, 2), 0x2);				/* LRU: 1 4 */
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_int_equal(rd64(blkp(t, 0, 5)), pat(5, 0, 0));	/* LRU: 4 5 */
	assert_int_equal(state_of(t, 1), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(t->m[0], 1));
	assert_false(shma_mapping_block_mapped(t->m[1], 1));
	assert_false(probe_readable(blkp(t, 1, 1)));
	assert_int_equal(rd64(blkp(t, 0, 6)), pat(6, 0, 0));	/* LRU: 5 6 */
	assert_int_equal(state_of(t, 4), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 2), SHMA_PAGE_DIRTY);
	assert_block(t, 0, 2, 0, 0, 0x2);
	assert_int_equal(ram_stats(t).nreclaimed, 5);
	for (uint64_t b = 0; b < 8; b++)
		npages += state_of(t, b) != SHMA_PAGE_EMPTY;
	assert_int_equal(npages, 3);
	/* copy-in: 3 RAM pages; direct: only the dirty copy holds RAM */
	assert_int_equal(ram_stats(t).npages, t->kind == TF_COPYIN ? 3 : 1);
}

static void test_max_pages_lru_copyin(void **state)
{
	check_max_pages_lru(tf_open(state, TF_COPYIN, 4096, 64 * 4096));
}

static void test_max_pages_lru_direct(void **state)
{
	check_max_pages_lru(tf_open(state, TF_DIRECT, 4096, 64 * 4096));
}

static void test_max_pages_all_dirty(void **state)
{
	struct tf *t = tf_open(state, TF_COPYIN, 4096, 64 * 4096);

	assert_int_equal(shma_ram_set_max_pages(t->ram, 3), 0);
	tf_map(t, 0, 0, 8);
	for (uint64_t b = 0; b < 3; b++)
		wr64(blkp(t, 0, b), 0x10 + b);

	/* RAM has room, but the bound is reached and nothing is clean. */
	assert_int_equal(shma_prefault(blkp(t, 0, 3), 1, 0), SHMA_ERAMLIMIT);
	assert_int_equal(shma_prefault(blkp(t, 0, 3), 1, SHMA_PREFAULT_WRITE), SHMA_ERAMLIMIT);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);
	assert_int_equal(shma_ram_reclaim(t->ram, 100), 0);
	assert_int_equal(ram_stats(t).npages, 3);
	/* Blocks already in are served still. */
	assert_int_equal(shma_prefault(blkp(t, 0, 0), 3 * 4096, SHMA_PREFAULT_WRITE), 0);
	for (uint64_t b = 0; b < 3; b++)
		assert_block(t, 0, b, 0, 0, 0x10 + b);

	/* A higher bound lets one more in. */
	assert_int_equal(shma_ram_set_max_pages(t->ram, 4), 0);
	assert_int_equal(shma_prefault(blkp(t, 0, 3), 1, 0), 0);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_LOADED);
	/* ... and past it the one clean page makes room. */
	assert_int_equal(shma_prefault(blkp(t, 0, 4), 1, 0), 0);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);
	assert_int_equal(state_of(t, 4), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(t).nreclaimed, 1);
}

/* Private copies hold no RAM but count against the bound. */
static void test_max_pages_all_dirty_sigbus(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096, COW);
	uint8_t *p;

	assert_int_equal(shma_ram_set_max_pages(t->ram, 3), 0);
	tf_map(t, 0, 0, 8);
	for (uint64_t b = 0; b < 3; b++)
		wr64(blkp(t, 0, b), 0x10 + b);
	assert_int_equal(ram_stats(t).npages, 0);
	assert_int_equal(shma_prefault(blkp(t, 0, 3), 1, 0), SHMA_ERAMLIMIT);
	assert_int_equal(shma_prefault(blkp(t, 0, 3), 1, SHMA_PREFAULT_WRITE), SHMA_ERAMLIMIT);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);

	skip_under_valgrind();
	p = blkp(t, 0, 3) + 9 * 8;
	assert_true(touch_sigbus(p, false, 0));
	assert_bus_at(p);
	assert_int_equal(shma_vm_fault_error(), SHMA_ERAMLIMIT);
	assert_int_equal(state_of(t, 3), SHMA_PAGE_EMPTY);
	p = blkp(t, 0, 4) + 8;
	assert_true(touch_sigbus(p, true, 1));
	assert_bus_at(p);
	assert_int_equal(shma_vm_fault_error(), SHMA_ERAMLIMIT);
	assert_int_equal(state_of(t, 4), SHMA_PAGE_EMPTY);
	for (uint64_t b = 0; b < 3; b++)
		assert_block(t, 0, b, 0, 0, 0x10 + b);

	/* Once they are gone, the access works. */
	shma_fileh_discard(t->fh);
	assert_false(touch_sigbus(blkp(t, 0, 3), false, 0));
	assert_int_equal(state_of(t, 3), SHMA_PAGE_LOADED);
	assert_block(t, 0, 3, 0, -1, 0);
}

/* One RAM, two files: a copy-in one (a) and a direct-map one (d). */
static void test_reclaim_mixed_kinds(void **state)
{
	struct tf *a = tf_open(state, TF_COPYIN, 4096, 3 * 4096);
	struct tf *d = tf_open_peer(a, TF_DIRECT, 4096, 0);
	struct shma_ram_stats st;

	tf_map(a, 0, 0, 8);
	tf_map(d, 0, 0, 8);
	tf_map(d, 1, 0, 8);
	assert_int_equal(rd64(blkp(d, 0, 1)), pat(1, 0, 0));
	assert_int_equal(rd64(blkp(d, 0, 0)), pat(0, 0, 0));
	assert_int_equal(rd64(blkp(a, 0, 0)), pat(0, 0, 0));
	assert_int_equal(rd64(blkp(a, 0, 1)), pat(1, 0, 0));
	assert_int_equal(rd64(blkp(d, 1, 0)), pat(0, 0, 0));	/* LRU: d1 a0 a1 d0 */
	wr64(blkp(a, 0, 2), 0x2);
	assert_int_equal(ram_stats(a).npages, 3);

	/* At the RAM limit only a page holding RAM is worth evicting: d1,
	 * least recently used, holds none and stays. */
	assert_int_equal(rd64(blkp(a, 0, 3)), pat(3, 0, 0));	/* LRU: d1 a1 d0 a3 */
	assert_int_equal(shma_fileh_block_state(a->fh, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(shma_fileh_block_state(d->fh, 1), SHMA_PAGE_LOADED);
	assert_int_equal(shma_fileh_block_state(d->fh, 0), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(a).nreclaimed, 1);
	assert_int_equal(ram_stats(a).npages, 3);

	/* Reclaim evicts both kinds, least recently used first. */
	assert_int_equal(shma_ram_reclaim(a->ram, 1), 1);
	assert_int_equal(shma_fileh_block_state(d->fh, 1), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(d->m[0], 1));
	assert_false(probe_readable(blkp(d, 0, 1)));
	assert_int_equal(shma_fileh_block_state(a->fh, 1), SHMA_PAGE_LOADED);
	assert_int_equal(shma_ram_reclaim(a->ram, 2), 2);
	assert_int_equal(shma_fileh_block_state(a->fh, 1), SHMA_PAGE_EMPTY);
	assert_int_equal(shma_fileh_block_state(d->fh, 0), SHMA_PAGE_EMPTY);
	assert_false(shma_mapping_block_mapped(d->m[0], 0));
	assert_false(shma_mapping_block_mapped(d->m[1], 0));
	assert_false(probe_readable(blkp(d, 1, 0)));
	assert_int_equal(shma_fileh_block_state(a->fh, 3), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(a).npages, 2);
	assert_int_equal(shma_ram_reclaim(a->ram, 100), 1);
	assert_int_equal(shma_fileh_block_state(a->fh, 3), SHMA_PAGE_EMPTY);
	assert_int_equal(shma_ram_reclaim(a->ram, 100), 0);
	st = ram_stats(a);
	assert_int_equal(st.npages, 1);
	assert_int_equal(st.used, 4096);
	assert_int_equal(st.nreclaimed, 5);
	assert_int_equal(shma_fileh_block_state(a->fh, 2), SHMA_PAGE_DIRTY);
	assert_block(a, 0, 2, 0, 0, 0x2);

	/* Evicted pages come back on access. */
	assert_block(d, 0, 0, 0, -1, 0);
	assert_block(a, 0, 0, 0, -1, 0);			/* LRU: d0 a0 */
	assert_int_equal(d->nmapblk[0], 2);
	assert_int_equal(a->nload[0], 2);

	/* The bound on pages counts the pages of both handles. */
	assert_int_equal(shma_ram_set_max_pages(a->ram, 3), 0);
	assert_int_equal(rd64(blkp(d, 0, 2)), pat(2, 0, 0));	/* LRU: a0 d2 */
	assert_int_equal(shma_fileh_block_state(d->fh, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(rd64(blkp(a, 0, 4)), pat(4, 0, 0));	/* LRU: d2 a4 */
	assert_int_equal(shma_fileh_block_state(a->fh, 0), SHMA_PAGE_EMPTY);
	assert_int_equal(shma_fileh_block_state(d->fh, 2), SHMA_PAGE_LOADED);
	assert_int_equal(ram_stats(a).nreclaimed, 7);
}

/* ---- plain API ---------------------------------------------------------------------- */

static void test_strerror(void **state)
{
	int codes[] = { 0, -EIO, -EINVAL, SHMA_ERAMLIMIT, SHMA_EBUSY, SHMA_ENOTMAPPED,
			SHMA_ERECURSIVE };
	size_t n = sizeof(codes) / sizeof(codes[0]);

	for (size_t i = 0; i < n; i++) {
		const char *s = shma_strerror(codes[i]);

		assert_non_null(s);
		assert_true(strlen(s) > 0);
		assert_string_not_equal(s, "unknown error");
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, shma_strerror(codes[j]));
	}
	assert_string_equal(shma_strerror(SHMA_ELAST), "unknown error");
	assert_string_equal(shma_strerror(SHMA_EBASE - 1000), "unknown error");
	assert_string_equal(shma_strerror(-1000000), "unknown error");
}

static int nop_loadblk(shma_file *f, uint64_t blk, void *buf)
{
	return -EIO;
}

static int nop_mapblk(shma_file *f, uint64_t blk, int *fd, uint64_t *off)
{
	return -EIO;
}

static int nop_storeblk(shma_file *f, uint64_t blk, const void *buf)
{
	return -EIO;
}

static void test_bad_arguments(void **state)
{
	struct shma_file_ops copyin = { .loadblk = nop_loadblk, .storeblk = nop_storeblk };
	struct shma_file_ops both = { .loadblk = nop_loadblk, .mapblk = nop_mapblk };
	struct shma_file_ops neither = { .storeblk = nop_storeblk };
	size_t badsz[] = { 0, 1000, 2048, 3 * 4096, 4096 + 1 };
	shma_file *f = NULL;
	shma_ram *ram = NULL;
	shma_fileh *fh = NULL;
	shma_mapping *m = NULL;
	struct shma_ram_stats st;
	int marker = 0;

	for (size_t i = 0; i < sizeof(badsz) / sizeof(badsz[0]); i++)
		assert_int_equal(shma_file_new(&copyin, badsz[i], NULL, &f), -EINVAL);
	assert_int_equal(shma_file_new(&both, 4096, NULL, &f), -EINVAL);
	assert_int_equal(shma_file_new(&neither, 4096, NULL, &f), -EINVAL);
	f = NULL;

	assert_true(shma_ram_new(100, &ram) < 0);
	ram = NULL;
	assert_int_equal(shma_ram_new(3 * 4096 + 100, &ram), 0);
	shma_ram_stats(ram, &st);
	assert_int_equal(st.limit, 3 * 4096);
	assert_int_equal(st.used, 0);

	assert_int_equal(shma_file_new(&copyin, 8192, &marker, &f), 0);
	assert_ptr_equal(shma_file_opaque(f), &marker);
	assert_int_equal(shma_file_blksize(f), 8192);
	assert_int_equal(shma_fileh_open(f, ram, &fh), 0);
	assert_int_equal(shma_map(fh, 0, 0, &m), -EINVAL);
	m = NULL;
	assert_int_equal(shma_map(fh, 5, 1, &m), 0);
	assert_int_equal(shma_mapping_len(m), 8192);
	assert_int_equal(shma_unmap(&m), 0);
	assert_null(m);

	shma_fileh_close(&fh);
	assert_int_equal(shma_file_destroy(&f), 0);
	assert_int_equal(shma_ram_destroy(&ram), 0);
}

static void test_file_flags(void **state)
{
	struct shma_file_ops copyin = { .flags = SHMA_FILE_COW_PRIVATE, .loadblk = nop_loadblk,
					.storeblk = nop_storeblk };
	struct shma_file_ops direct = { .mapblk = nop_mapblk };
	const unsigned bad[] = { 1u << 2, 1u << 31, SHMA_FILE_COW_PRIVATE | 1u << 7 };
	shma_file *f = NULL;

	/* COW_PRIVATE and READAHEAD are for direct-map files; unknown bits are
	 * refused. */
	assert_int_equal(shma_file_new(&copyin, 4096, NULL, &f), -EINVAL);
	copyin.flags = SHMA_FILE_READAHEAD;
	assert_int_equal(shma_file_new(&copyin, 4096, NULL, &f), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		direct.flags = bad[i];
		assert_int_equal(shma_file_new(&direct, 4096, NULL, &f), -EINVAL);
	}
	f = NULL;

	direct.flags = SHMA_FILE_COW_PRIVATE;
	assert_int_equal(shma_file_new(&direct, 4096, NULL, &f), 0);
	assert_non_null(f);
	assert_int_equal(shma_file_destroy(&f), 0);
	direct.flags = SHMA_FILE_COW_PRIVATE | SHMA_FILE_READAHEAD;
	assert_int_equal(shma_file_new(&direct, 4096, NULL, &f), 0);
	assert_int_equal(shma_file_destroy(&f), 0);
	copyin.flags = 0;
	assert_int_equal(shma_file_new(&copyin, 4096, NULL, &f), 0);
	assert_int_equal(shma_file_destroy(&f), 0);
}

/* ---- read-ahead ---------------------------------------------------------- */

/* Wait until block blk is mapped in mapping i (read-ahead is another
 * thread's work); false after 10 s. */
static bool wait_mapped(struct tf *t, int i, uint64_t blk)
{
	for (int n = 0; n < 10000; n++) {
		if (shma_mapping_block_mapped(t->m[i], blk))
			return true;
		usleep(1000);
	}
	return false;
}

/* Reading block after block gets the next blocks mapped ahead, once each,
 * with the data an access would have shown. */
static void test_readahead_sequential(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096,
				     SHMA_FILE_COW_PRIVATE | SHMA_FILE_READAHEAD);

	for (uint64_t b = TF_MEMFD_NBLK; b < 64; b++)
		t->hole[b] = true;
	tf_map(t, 0, 0, 64);
	assert_int_equal(rd64(blkp(t, 0, 0)), pat(0, 0, 0));
	assert_int_equal(rd64(blkp(t, 0, 1)), pat(1, 0, 0));
	/* blocks 2.. are mapped without being touched */
	for (uint64_t b = 2; b < 2 + 8; b++)
		assert_true(wait_mapped(t, 0, b));
	for (uint64_t b = 2; b < 2 + 8; b++) {
		assert_int_equal(t->nmapblk[b], 1);
		assert_int_equal(state_of(t, b), SHMA_PAGE_LOADED);
	}
	/* and show what an access shows */
	for (uint64_t b = 2; b < TF_MEMFD_NBLK; b++)
		assert_block(t, 0, b, 0, -1, 0);
	assert_int_equal(rd64(blkp(t, 0, 9)), 0); /* a hole */
	/* no fault happened on them, so nothing was loaded twice */
	for (uint64_t b = 2; b < 2 + 8; b++)
		assert_int_equal(t->nmapblk[b], 1);
	/* reading on at the window's end starts the next window */
	assert_int_equal(rd64(blkp(t, 0, 10)), 0);
	assert_true(wait_mapped(t, 0, 11));
	assert_true(wait_mapped(t, 0, 18));
	assert_int_equal(ram_stats(t).npages, 0); /* direct-map: no RAM */
}

/* Random reads start nothing; files without the flag never read ahead. */
static void test_readahead_not_sequential(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096,
				     SHMA_FILE_COW_PRIVATE | SHMA_FILE_READAHEAD);
	struct tf *u;

	for (uint64_t b = 0; b < 64; b++)
		t->hole[b] = true;
	tf_map(t, 0, 0, 64);
	(void)rd64(blkp(t, 0, 20));
	(void)rd64(blkp(t, 0, 40));
	(void)rd64(blkp(t, 0, 30));
	u = tf_open_peer(t, TF_DIRECT, 4096, 0);
	for (uint64_t b = 0; b < 64; b++)
		u->hole[b] = true;
	tf_map(u, 0, 0, 64);
	(void)rd64(blkp(u, 0, 0));
	(void)rd64(blkp(u, 0, 1));
	usleep(200 * 1000); /* room for a (wrong) read-ahead to happen */
	for (uint64_t b = 0; b < 64; b++) {
		bool touched = b == 20 || b == 30 || b == 40;

		assert_int_equal(shma_mapping_block_mapped(t->m[0], b), touched);
		assert_int_equal(shma_mapping_block_mapped(u->m[0], b), b < 2);
	}
}

/* Closing a handle while read-ahead works on it is safe: close waits for
 * the helper's load and drops everything. */
static void test_readahead_close_races(void **state)
{
	struct tf *t = tf_open_flags(state, TF_DIRECT, 4096, 16 * 4096, 0);
	struct shma_file_ops ops = { .mapblk = t->ops.mapblk,
				     .flags = SHMA_FILE_COW_PRIVATE | SHMA_FILE_READAHEAD };
	struct shma_ram_stats st;

	for (uint64_t b = 0; b < 64; b++)
		t->hole[b] = b >= TF_MEMFD_NBLK;
	for (int round = 0; round < 200; round++) {
		shma_file *f;
		shma_fileh *fh;
		shma_mapping *m;
		uint8_t *p;

		assert_int_equal(shma_file_new(&ops, 4096, t, &f), 0);
		assert_int_equal(shma_fileh_open(f, t->ram, &fh), 0);
		assert_int_equal(shma_map(fh, 0, 64, &m), 0);
		p = shma_mapping_addr(m);
		assert_int_equal(rd64(p), pat(0, 0, 0));
		assert_int_equal(rd64(p + 4096), pat(1, 0, 0));
		if (round % 2)
			assert_int_equal(shma_unmap(&m), 0);
		shma_fileh_close(&fh);
		assert_int_equal(shma_file_destroy(&f), 0);
	}
	shma_ram_stats(t->ram, &st);
	assert_int_equal(st.npages, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_fresh_mapping_is_empty, tf_teardown),
		cmocka_unit_test_teardown(test_read_fault_loads_readonly, tf_teardown),
		cmocka_unit_test_teardown(test_write_fault_empty_to_dirty, tf_teardown),
		cmocka_unit_test_teardown(test_write_fault_loaded_to_dirty, tf_teardown),
		cmocka_unit_test_teardown(test_mappings_share_pages, tf_teardown),
		cmocka_unit_test_teardown(test_reclaim_at_limit_keeps_dirty, tf_teardown),
		cmocka_unit_test_teardown(test_ram_limit_error_sigbus, tf_teardown),
		cmocka_unit_test_teardown(test_reclaim_explicit_count, tf_teardown),
		cmocka_unit_test_teardown(test_unmap_keeps_dirty, tf_teardown),
		cmocka_unit_test_teardown(test_discard, tf_teardown),
		cmocka_unit_test_teardown(test_writeout_store_order, tf_teardown),
		cmocka_unit_test_teardown(test_writeout_markstored, tf_teardown),
		cmocka_unit_test_teardown(test_writeout_store_markstored, tf_teardown),
		cmocka_unit_test_teardown(test_writeout_bad_flags, tf_teardown),
		cmocka_unit_test_teardown(test_writeout_store_error, tf_teardown),
		cmocka_unit_test_teardown(test_invalidate, tf_teardown),
		cmocka_unit_test_teardown(test_invalidate_while_loading, tf_teardown),
		cmocka_unit_test_teardown(test_dirty_blocks_list, tf_teardown),
		cmocka_unit_test_teardown(test_close_with_pages, tf_teardown),
		cmocka_unit_test_teardown(test_errno_preserved, tf_teardown),
		cmocka_unit_test_teardown(test_loadblk_error_sigbus, tf_teardown),
		cmocka_unit_test_teardown(test_prefault, tf_teardown),
		cmocka_unit_test_teardown(test_prefault_not_mapped, tf_teardown),
		cmocka_unit_test_teardown(test_copyin_big_blocks, tf_teardown),
		cmocka_unit_test_teardown(test_direct_read_allocates_nothing, tf_teardown),
		cmocka_unit_test_teardown(test_direct_first_write_copies, tf_teardown),
		cmocka_unit_test_teardown(test_direct_two_mappings_share_dirty, tf_teardown),
		cmocka_unit_test_teardown(test_direct_discard_remaps_base, tf_teardown),
		cmocka_unit_test_teardown(test_direct_markstored, tf_teardown),
		cmocka_unit_test_teardown(test_direct_mapblk_error_sigbus, tf_teardown),
		cmocka_unit_test_teardown(test_direct_big_blocks, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_write_uses_no_ram, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_copies_written_page_only, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_hole, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_second_mapping_before_write,
					  tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_second_mapping_after_write,
					  tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_unmap_moves_to_ram, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_unmap_at_ram_limit, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_writeout, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_discard, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_invalidate, tf_teardown),
		cmocka_unit_test_teardown(test_cow_private_close, tf_teardown),
		cmocka_unit_test_teardown(test_max_pages_bad, tf_teardown),
		cmocka_unit_test_teardown(test_readahead_sequential, tf_teardown),
		cmocka_unit_test_teardown(test_readahead_not_sequential, tf_teardown),
		cmocka_unit_test_teardown(test_readahead_close_races, tf_teardown),
		cmocka_unit_test_teardown(test_max_pages_lru_copyin, tf_teardown),
		cmocka_unit_test_teardown(test_max_pages_lru_direct, tf_teardown),
		cmocka_unit_test_teardown(test_max_pages_all_dirty, tf_teardown),
		cmocka_unit_test_teardown(test_max_pages_all_dirty_sigbus, tf_teardown),
		cmocka_unit_test_teardown(test_reclaim_mixed_kinds, tf_teardown),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_file_flags),
	};

	return cmocka_run_group_tests_name("virtmem", tests, NULL, NULL);
}
