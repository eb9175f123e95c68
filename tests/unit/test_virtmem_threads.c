/* test_virtmem_threads.c - virtmem under concurrency.
 *
 * A copy-in file (blksize 4096) whose loadblk can be made to block on
 * conditions the test controls, so each test forces one interleaving:
 *
 *   load_once            N threads fault one block: one loadblk, N readers
 *   parallel_loads       two blocks load at the same time (lock released)
 *   invalidate_in_load   invalidate while loading: result thrown away
 *   lock_inversion       loadblk takes a user lock that an invalidating
 *                        thread holds: no deadlock
 *   reclaim_stress       readers, writers and a reclaiming thread at once
 *
 * Worker threads never call cmocka asserts (they longjmp); they record what
 * they saw and the main thread asserts.  Every wait in the test code is
 * bounded; a watchdog thread ends the process if a test still runs after
 * WATCHDOG_S seconds, so a deadlock in the library fails instead of hanging.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shma.h"

#define BLKSIZE		4096
#define NBLK		32
#define WORDS		(BLKSIZE / sizeof(uint64_t))
#define WAIT_MS		10000	/* bound on any wait inside the test code */
#define WATCHDOG_S	120	/* a test running longer is deadlocked */

struct tfile;

/* Called by loadblk for call number n (1-based) of block blk, before it
 * fills the buffer, without any library lock held. */
typedef void (*load_hook)(struct tfile *t, uint64_t blk, unsigned n);

struct tfile {
	shma_ram *ram;
	shma_file *file;
	shma_fileh *fh;
	shma_mapping *map;
	uint8_t *base;

	load_hook hook;
	atomic_uint nload[NBLK];	/* loadblk calls per block */
	atomic_uint nfilled[NBLK];	/* loadblk calls that returned */
	atomic_uint version;		/* backing data version */

	/* test coordination, protected by mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* CLOCK_MONOTONIC */
	unsigned arrived;		/* threads about to fault */
	unsigned nthreads;
	bool started[NBLK];		/* loadblk entered for the block */
	bool release;			/* loadblk may finish */
	bool timed_out;			/* a bounded wait in a hook expired */

	pthread_mutex_t user;		/* the "user lock" of lock_inversion */

	/* watchdog */
	pthread_t wd;
	pthread_mutex_t wd_mu;
	pthread_cond_t wd_cv;
	bool wd_done;
	const char *name;
};

static uint64_t pattern(uint64_t blk, unsigned ver, size_t i)
{
	return ((uint64_t)(ver + 1) << 48) | (blk << 24) | i;
}

static uint64_t wpattern(unsigned w, unsigned iter, size_t i)
{
	return ((uint64_t)0xd1 << 56) | ((uint64_t)w << 40) | ((uint64_t)iter << 16) | i;
}

static struct timespec deadline_in(clockid_t clk, long ms)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static bool expired(const struct timespec *dl)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > dl->tv_sec ||
	       (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* Wait on t->cv (t->mu held) until *flag or the deadline; false on timeout. */
static bool wait_flag(struct tfile *t, const bool *flag, const struct timespec *dl)
{
	while (!*flag) {
		if (pthread_cond_timedwait(&t->cv, &t->mu, dl) == ETIMEDOUT)
			return *flag;
	}
	return true;
}

static void set_flag(struct tfile *t, bool *flag)
{
	pthread_mutex_lock(&t->mu);
	*flag = true;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

/* The data version is read when loadblk starts, as a read of a backing store
 * would, so a slow load started before a change returns the old data. */
static int loadblk(shma_file *f, uint64_t blk, void *buf)
{
	struct tfile *t = shma_file_opaque(f);
	unsigned ver = atomic_load(&t->version);
	unsigned n = atomic_fetch_add(&t->nload[blk], 1) + 1;
	uint64_t *w = buf;

	if (t->hook)
		t->hook(t, blk, n);
	for (size_t i = 0; i < WORDS; i++)
		w[i] = pattern(blk, ver, i);
	atomic_fetch_add(&t->nfilled[blk], 1);
	return 0;
}

static const struct shma_file_ops ops = {
	.loadblk = loadblk,
};

static uint64_t *blkaddr(struct tfile *t, uint64_t blk)
{
	return (uint64_t *)(t->base + blk * BLKSIZE);
}

/* Read all of block blk through the mapping; true if it holds version ver. */
static bool check_block(struct tfile *t, uint64_t blk, unsigned ver)
{
	volatile uint64_t *p = blkaddr(t, blk);
	bool ok = true;

	for (size_t i = 0; i < WORDS; i++) {
		uint64_t v = p[i];

		if (v != pattern(blk, ver, i)) {
			if (ok)
				fprintf(stderr, "block %llu word %zu: %#llx, want %#llx\n",
					(unsigned long long)blk, i, (unsigned long long)v,
					(unsigned long long)pattern(blk, ver, i));
			ok = false;
		}
	}
	return ok;
}

/* ---- watchdog ---------------------------------------------------------- */

static void *watchdog_main(void *arg)
{
	struct tfile *t = arg;
	struct timespec dl = deadline_in(CLOCK_MONOTONIC, WATCHDOG_S * 1000L);
	bool done;

	pthread_mutex_lock(&t->wd_mu);
	while (!t->wd_done) {
		if (pthread_cond_timedwait(&t->wd_cv, &t->wd_mu, &dl) == ETIMEDOUT)
			break;
	}
	done = t->wd_done;
	pthread_mutex_unlock(&t->wd_mu);
	if (!done) {
		fprintf(stderr, "watchdog: %s still running after %d s: deadlock\n",
			t->name ? t->name : "test", WATCHDOG_S);
		_exit(1);
	}
	return NULL;
}

static void init_cond_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* ---- fixture ----------------------------------------------------------- */

static int setup(void **state)
{
	struct tfile *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	pthread_mutex_init(&t->mu, NULL);
	init_cond_mono(&t->cv);
	pthread_mutex_init(&t->user, NULL);
	pthread_mutex_init(&t->wd_mu, NULL);
	init_cond_mono(&t->wd_cv);
	for (size_t i = 0; i < NBLK; i++) {
		atomic_init(&t->nload[i], 0);
		atomic_init(&t->nfilled[i], 0);
	}
	atomic_init(&t->version, 0);
	if (pthread_create(&t->wd, NULL, watchdog_main, t) != 0)
		goto err_free;

	/* Room for every block twice: the limit is never what reclaims. */
	if (shma_ram_new(2 * NBLK * BLKSIZE, &t->ram) != 0)
		goto err_watchdog;
	if (shma_file_new(&ops, BLKSIZE, t, &t->file) != 0)
		goto err_ram;
	if (shma_fileh_open(t->file, t->ram, &t->fh) != 0)
		goto err_file;
	if (shma_map(t->fh, 0, NBLK, &t->map) != 0)
		goto err_fileh;
	t->base = shma_mapping_addr(t->map);
	*state = t;
	return 0;

err_fileh:
	shma_fileh_close(&t->fh);
err_file:
	shma_file_destroy(&t->file);
err_ram:
	shma_ram_destroy(&t->ram);
err_watchdog:
	pthread_mutex_lock(&t->wd_mu);
	t->wd_done = true;
	pthread_cond_signal(&t->wd_cv);
	pthread_mutex_unlock(&t->wd_mu);
	pthread_join(t->wd, NULL);
err_free:
	free(t);
	return -1;
}

static int teardown(void **state)
{
	struct tfile *t = *state;
	int ret = 0;

	shma_unmap(&t->map);
	shma_fileh_close(&t->fh);
	if (shma_file_destroy(&t->file) != 0)
		ret = -1;
	if (shma_ram_destroy(&t->ram) != 0)
		ret = -1;
	pthread_mutex_lock(&t->wd_mu);
	t->wd_done = true;
	pthread_cond_signal(&t->wd_cv);
	pthread_mutex_unlock(&t->wd_mu);
	pthread_join(t->wd, NULL);
	pthread_cond_destroy(&t->wd_cv);
	pthread_mutex_destroy(&t->wd_mu);
	pthread_mutex_destroy(&t->user);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
	return ret;
}

/* A thread that reads one whole block and records whether it was right. */
struct reader {
	pthread_t th;
	struct tfile *t;
	pthread_barrier_t *barrier;	/* optional: start together */
	uint64_t blk;
	unsigned ver;
	bool ok;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct tfile *t = r->t;

	if (r->barrier)
		pthread_barrier_wait(r->barrier);
	pthread_mutex_lock(&t->mu);
	t->arrived++;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	r->ok = check_block(t, r->blk, r->ver);
	return NULL;
}

static void start_reader(struct reader *r, struct tfile *t, uint64_t blk, unsigned ver)
{
	r->t = t;
	r->blk = blk;
	r->ver = ver;
	r->ok = false;
	assert_int_equal(pthread_create(&r->th, NULL, reader_main, r), 0);
}

/* ---- load_once --------------------------------------------------------- */

#define ONCE_THREADS	8
#define ONCE_BLK	5

/* Hold the load until every thread is about to fault, then a little longer
 * so they are inside the trap and waiting on the LOADING page.  The test is
 * correct for any timing: a late thread finds the block LOADED. */
static void hook_once(struct tfile *t, uint64_t blk, unsigned n)
{
	struct timespec dl = deadline_in(CLOCK_MONOTONIC, WAIT_MS);
	struct timespec pause = { 0, 50 * 1000000L };

	pthread_mutex_lock(&t->mu);
	while (t->arrived < t->nthreads) {
		if (pthread_cond_timedwait(&t->cv, &t->mu, &dl) == ETIMEDOUT) {
			t->timed_out = t->arrived < t->nthreads;
			break;
		}
	}
	pthread_mutex_unlock(&t->mu);
	nanosleep(&pause, NULL);
}

static void test_load_once(void **state)
{
	struct tfile *t = *state;
	struct reader r[ONCE_THREADS];
	pthread_barrier_t barrier;

	t->name = "load_once";
	assert_int_equal(shma_vm_install_handler(), 0);
	t->hook = hook_once;
	t->nthreads = ONCE_THREADS;
	assert_int_equal(shma_fileh_block_state(t->fh, ONCE_BLK), SHMA_PAGE_EMPTY);
	assert_int_equal(pthread_barrier_init(&barrier, NULL, ONCE_THREADS), 0);
	for (int i = 0; i < ONCE_THREADS; i++) {
		r[i].barrier = &barrier;
		start_reader(&r[i], t, ONCE_BLK, 0);
	}
	for (int i = 0; i < ONCE_THREADS; i++)
		assert_int_equal(pthread_join(r[i].th, NULL), 0);
	pthread_barrier_destroy(&barrier);

	assert_false(t->timed_out);
	for (int i = 0; i < ONCE_THREADS; i++)
		assert_true(r[i].ok);
	assert_int_equal(atomic_load(&t->nload[ONCE_BLK]), 1);
	assert_int_equal(shma_fileh_block_state(t->fh, ONCE_BLK), SHMA_PAGE_LOADED);
	assert_true(shma_mapping_block_mapped(t->map, ONCE_BLK));
	/* No other block was touched. */
	for (uint64_t b = 0; b < NBLK; b++)
		if (b != ONCE_BLK)
			assert_int_equal(atomic_load(&t->nload[b]), 0);
}

/* ---- parallel_loads ---------------------------------------------------- */

#define PAR_A	0
#define PAR_B	1

/* Each of the two loads waits until the other has started: both must be
 * inside loadblk at once, which they can only be if the library lock is not
 * held across loadblk. */
static void hook_parallel(struct tfile *t, uint64_t blk, unsigned n)
{
	struct timespec dl = deadline_in(CLOCK_MONOTONIC, WAIT_MS);
	uint64_t other = blk == PAR_A ? PAR_B : PAR_A;

	pthread_mutex_lock(&t->mu);
	t->started[blk] = true;
	pthread_cond_broadcast(&t->cv);
	if (!wait_flag(t, &t->started[other], &dl))
		t->timed_out = true;
	pthread_mutex_unlock(&t->mu);
}

static void test_parallel_loads(void **state)
{
	struct tfile *t = *state;
	struct reader a = { .barrier = NULL }, b = { .barrier = NULL };

	t->name = "parallel_loads";
	assert_int_equal(shma_vm_install_handler(), 0);
	t->hook = hook_parallel;
	start_reader(&a, t, PAR_A, 0);
	start_reader(&b, t, PAR_B, 0);
	assert_int_equal(pthread_join(a.th, NULL), 0);
	assert_int_equal(pthread_join(b.th, NULL), 0);

	if (t->timed_out)
		fail_msg("the two loads never ran at the same time: "
			 "is the lock held across loadblk?");
	assert_true(a.ok);
	assert_true(b.ok);
	assert_int_equal(atomic_load(&t->nload[PAR_A]), 1);
	assert_int_equal(atomic_load(&t->nload[PAR_B]), 1);
	assert_int_equal(shma_fileh_block_state(t->fh, PAR_A), SHMA_PAGE_LOADED);
	assert_int_equal(shma_fileh_block_state(t->fh, PAR_B), SHMA_PAGE_LOADED);
}

/* ---- invalidate_in_load ------------------------------------------------ */

#define INV_BLK	2

/* The first load announces itself and waits for release; later loads run
 * straight through. */
static void hook_hold_first(struct tfile *t, uint64_t blk, unsigned n)
{
	struct timespec dl = deadline_in(CLOCK_MONOTONIC, WAIT_MS);

	if (n != 1)
		return;
	pthread_mutex_lock(&t->mu);
	t->started[blk] = true;
	pthread_cond_broadcast(&t->cv);
	if (!wait_flag(t, &t->release, &dl))
		t->timed_out = true;
	pthread_mutex_unlock(&t->mu);
}

static void wait_started(struct tfile *t, uint64_t blk)
{
	struct timespec dl = deadline_in(CLOCK_MONOTONIC, WAIT_MS);
	bool ok;

	pthread_mutex_lock(&t->mu);
	ok = wait_flag(t, &t->started[blk], &dl);
	pthread_mutex_unlock(&t->mu);
	if (!ok)
		fail_msg("loadblk of block %llu never started", (unsigned long long)blk);
}

/*
 *   T1                                main
 *   read X -> fault
 *   loadblk(X) reads version 0
 *     started, waits for release      invalidate(X)  (returns at once)
 *                                     version = 1; release
 *   load returns: result thrown away
 *   loadblk(X) again, version 1
 *   read sees version 1
 */
static void test_invalidate_in_load(void **state)
{
	struct tfile *t = *state;
	struct reader r = { .barrier = NULL };

	t->name = "invalidate_in_load";
	assert_int_equal(shma_vm_install_handler(), 0);
	t->hook = hook_hold_first;
	start_reader(&r, t, INV_BLK, 1);
	wait_started(t, INV_BLK);
	assert_int_equal(shma_fileh_block_state(t->fh, INV_BLK), SHMA_PAGE_LOADING);

	shma_fileh_invalidate(t->fh, INV_BLK);
	/* It did not wait: the load is still held in loadblk. */
	assert_int_equal(atomic_load(&t->nfilled[INV_BLK]), 0);
	assert_int_equal(shma_fileh_block_state(t->fh, INV_BLK),
			 SHMA_PAGE_LOADING_INVALIDATED);

	atomic_store(&t->version, 1);
	set_flag(t, &t->release);
	assert_int_equal(pthread_join(r.th, NULL), 0);

	assert_false(t->timed_out);
	assert_true(r.ok);
	assert_int_equal(atomic_load(&t->nload[INV_BLK]), 2);
	assert_int_equal(shma_fileh_block_state(t->fh, INV_BLK), SHMA_PAGE_LOADED);
	assert_true(check_block(t, INV_BLK, 1));
	assert_int_equal(atomic_load(&t->nload[INV_BLK]), 2);
}

/* ---- lock_inversion ---------------------------------------------------- */

#define INVERT_BLK	3

/* The first load announces itself, then takes the user lock U. */
static void hook_user_lock(struct tfile *t, uint64_t blk, unsigned n)
{
	if (n != 1)
		return;
	set_flag(t, &t->started[blk]);
	pthread_mutex_lock(&t->user);
	pthread_mutex_unlock(&t->user);
}

/*
 *   T1                               main
 *                                    lock U
 *   read X -> fault
 *   loadblk(X): started; lock U ...  block_state(X), invalidate(X),
 *                                    dirty_blocks, reclaim, stats
 *                                    (each takes the library lock)
 *                                    unlock U
 *   ... gets U, returns; loads again
 *
 * If the library held its lock across loadblk, main would block on it while
 * T1 blocks on U: the watchdog then fails the test.
 */
static void test_lock_inversion(void **state)
{
	struct tfile *t = *state;
	struct reader r = { .barrier = NULL };
	struct shma_ram_stats st;

	t->name = "lock_inversion";
	assert_int_equal(shma_vm_install_handler(), 0);
	t->hook = hook_user_lock;
	pthread_mutex_lock(&t->user);
	start_reader(&r, t, INVERT_BLK, 0);
	wait_started(t, INVERT_BLK);

	assert_int_equal(shma_fileh_block_state(t->fh, INVERT_BLK), SHMA_PAGE_LOADING);
	shma_fileh_invalidate(t->fh, INVERT_BLK);
	assert_int_equal(shma_fileh_block_state(t->fh, INVERT_BLK),
			 SHMA_PAGE_LOADING_INVALIDATED);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, NULL, 0), 0);
	/* The only page is loading: nothing to reclaim. */
	assert_int_equal(shma_ram_reclaim(t->ram, NBLK), 0);
	shma_ram_stats(t->ram, &st);
	assert_int_equal(st.nreclaimed, 0);
	assert_int_equal(atomic_load(&t->nfilled[INVERT_BLK]), 0);
	pthread_mutex_unlock(&t->user);

	assert_int_equal(pthread_join(r.th, NULL), 0);
	assert_true(r.ok);
	assert_int_equal(atomic_load(&t->nload[INVERT_BLK]), 2);
	assert_int_equal(shma_fileh_block_state(t->fh, INVERT_BLK), SHMA_PAGE_LOADED);
}

/* ---- reclaim_stress ---------------------------------------------------- */

#define NWRITERS	4	/* writer w owns block w */
#define NREADERS	3	/* readers read blocks NWRITERS..NBLK-1 */
#define WRITER_ITERS	4000
#define MIN_RECLAIMED	2000

struct stress {
	struct tfile *t;
	atomic_bool stop_readers;
	atomic_bool stop_reclaim;
	atomic_size_t reclaimed;	/* sum of shma_ram_reclaim results */
};

struct worker {
	pthread_t th;
	struct stress *s;
	unsigned id;
	unsigned rounds;
	unsigned nload_dirty;		/* writer: loads of its block once dirty */
	bool ok;
};

/* Each round: check the block holds what this writer left, write a new
 * pattern, check it.  If a dirty page were reclaimed, the next check would
 * see the loaded data instead. */
static void *writer_main(void *arg)
{
	struct worker *w = arg;
	volatile uint64_t *p = blkaddr(w->s->t, w->id);

	w->ok = check_block(w->s->t, w->id, 0);
	for (unsigned it = 0; w->ok && it < WRITER_ITERS; it++) {
		for (size_t i = 0; i < WORDS; i++)
			p[i] = wpattern(w->id, it, i);
		if (it == 0)
			w->nload_dirty = atomic_load(&w->s->t->nload[w->id]);
		for (size_t i = 0; i < WORDS; i++) {
			if (p[i] != wpattern(w->id, it, i)) {
				fprintf(stderr, "writer %u iter %u word %zu: %#llx\n",
					w->id, it, i, (unsigned long long)p[i]);
				w->ok = false;
				break;
			}
		}
		if (it % 16 == 0)
			sched_yield();
		w->rounds++;
	}
	return NULL;
}

static void *stress_reader_main(void *arg)
{
	struct worker *w = arg;
	uint64_t blk = NWRITERS + w->id;

	w->ok = true;
	while (w->ok && !atomic_load(&w->s->stop_readers)) {
		w->ok = check_block(w->s->t, blk, 0);
		w->rounds++;
		if (++blk == NBLK)
			blk = NWRITERS;
	}
	return NULL;
}

static void *reclaim_main(void *arg)
{
	struct stress *s = arg;

	while (!atomic_load(&s->stop_reclaim)) {
		atomic_fetch_add(&s->reclaimed, shma_ram_reclaim(s->t->ram, 4));
		sched_yield();
	}
	return NULL;
}

static void test_reclaim_stress(void **state)
{
	struct tfile *t = *state;
	struct stress s = { .t = t };
	struct worker wr[NWRITERS], rd[NREADERS];
	pthread_t reclaimer;
	struct timespec dl = deadline_in(CLOCK_MONOTONIC, WAIT_MS);
	struct timespec tick = { 0, 1000000L };
	struct shma_ram_stats st;
	uint64_t dirty[NBLK];
	size_t last;

	t->name = "reclaim_stress";
	assert_int_equal(shma_vm_install_handler(), 0);
	atomic_init(&s.stop_readers, false);
	atomic_init(&s.stop_reclaim, false);
	atomic_init(&s.reclaimed, 0);

	assert_int_equal(pthread_create(&reclaimer, NULL, reclaim_main, &s), 0);
	for (unsigned i = 0; i < NREADERS; i++) {
		rd[i] = (struct worker){ .s = &s, .id = i };
		assert_int_equal(pthread_create(&rd[i].th, NULL, stress_reader_main, &rd[i]), 0);
	}
	for (unsigned i = 0; i < NWRITERS; i++) {
		wr[i] = (struct worker){ .s = &s, .id = i };
		assert_int_equal(pthread_create(&wr[i].th, NULL, writer_main, &wr[i]), 0);
	}
	for (unsigned i = 0; i < NWRITERS; i++)
		assert_int_equal(pthread_join(wr[i].th, NULL), 0);
	/* Let readers and reclaim overlap for a while (bounded): this waits for
	 * progress, the result does not depend on how long it takes. */
	while (atomic_load(&s.reclaimed) < MIN_RECLAIMED && !expired(&dl))
		nanosleep(&tick, NULL);
	atomic_store(&s.stop_readers, true);
	for (unsigned i = 0; i < NREADERS; i++)
		assert_int_equal(pthread_join(rd[i].th, NULL), 0);
	atomic_store(&s.stop_reclaim, true);
	assert_int_equal(pthread_join(reclaimer, NULL), 0);

	for (unsigned i = 0; i < NWRITERS; i++) {
		assert_true(wr[i].ok);
		assert_int_equal(wr[i].rounds, WRITER_ITERS);
	}
	for (unsigned i = 0; i < NREADERS; i++) {
		assert_true(rd[i].ok);
		assert_true(rd[i].rounds > 0);
	}
	assert_true(atomic_load(&s.reclaimed) >= MIN_RECLAIMED);

	/* Evict everything evictable: the writers' blocks stay, dirty. */
	atomic_fetch_add(&s.reclaimed, shma_ram_reclaim(t->ram, (size_t)-1));
	shma_ram_stats(t->ram, &st);
	/* The RAM limit was never reached, so every eviction was ours. */
	assert_int_equal(st.nreclaimed, atomic_load(&s.reclaimed));
	assert_int_equal(st.npages, NWRITERS);
	assert_int_equal(st.used, NWRITERS * BLKSIZE);
	assert_int_equal(shma_fileh_dirty_blocks(t->fh, dirty, NBLK), NWRITERS);
	last = WRITER_ITERS - 1;
	for (unsigned w = 0; w < NWRITERS; w++) {
		volatile uint64_t *p = blkaddr(t, w);

		assert_int_equal(dirty[w], w);
		assert_int_equal(shma_fileh_block_state(t->fh, w), SHMA_PAGE_DIRTY);
		for (size_t i = 0; i < WORDS; i++)
			assert_int_equal(p[i], wpattern(w, last, i));
	}
	for (uint64_t b = NWRITERS; b < NBLK; b++) {
		assert_int_equal(shma_fileh_block_state(t->fh, b), SHMA_PAGE_EMPTY);
		assert_false(shma_mapping_block_mapped(t->map, b));
	}
	/* Once dirty, a writer's block was never loaded again. */
	for (unsigned w = 0; w < NWRITERS; w++)
		assert_int_equal(atomic_load(&t->nload[w]), wr[w].nload_dirty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_load_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_in_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_inversion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_stress, setup, teardown),
	};

	return cmocka_run_group_tests_name("virtmem_threads", tests, NULL, NULL);
}
