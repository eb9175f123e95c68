/* bench_client.c - libshm's broker client on a large committed array:
 * sequential reads, per-block fault cost and shared memory, against
 * baselines measured in the same run.
 *
 *   bench_client [-r ROUNDS] [-s SIZE_MIB] [-p PROCS]
 *
 * Starts a real broker (tests/lib/harness) with 2 MiB blocks, a pool of
 * three times the array, retention of 2 revisions and 0 seconds, memory only
 * (data_dir false: the figures are the pool's, and no store outlives the
 * run).  A child creates an array of SIZE_MIB MiB of <f8 (default 1 GiB,
 * 134217728 elements), writes every element through the client and commits
 * it, so every block and every 4 KiB page holds data (no holes; checked from
 * the commit's page count and the block table of the committed revision).
 * Every measurement then runs in a fresh process (fork of this small
 * parent, which holds no libshm state), and checks what it read: the sum of
 * all elements, or the first element of each block.
 *
 * (1) Cold sequential read.  A child connects (shma_connect), opens the
 *     array, installs the handler and sums all elements in order; only the
 *     sum loop is timed.  Each block's first access traps and maps its slot
 *     of the pool; each 4 KiB page then takes a minor fault on the pool's
 *     page cache (counted: getrusage ru_minflt).  Baseline, in another
 *     fresh child: malloc SIZE_MIB, fill it (untimed, so its pages are
 *     populated), then the same sum loop.  Figure: shma throughput / malloc
 *     throughput.  Goal (from the issue): >= 0.85.
 * (2) Warm read: the same children sum again.  Goal: >= 0.98.
 * (3) Per-block fault cost.  A fresh child touches one byte per block of
 *     the array (one fault each), timed.  Baseline, in a fresh child: a bare
 *     SA_SIGINFO SIGSEGV handler that mmaps (MAP_SHARED | MAP_FIXED,
 *     PROT_READ) the 2 MiB block of a populated memfd over a PROT_NONE
 *     reservation, one touch per block (as bench_fault's "raw").
 *     Goal: <= 1.3 x the baseline.
 * (4) Shared memory.  PROCS children (default 16) each connect, open the
 *     array and read all of it; when all have, each reports the Pss of its
 *     /proc/self/smaps_rollup, then they are released.  Goal: the summed
 *     Pss of the PROCS children <= 1.1 x the array.  The broker's own Pss
 *     (it maps the pool too, so it holds its share) is reported beside it.
 *
 * Diagnosis, no library: a fresh child per round maps the broker's pool fd
 * (received through the raw protocol client's hello) with the same bare
 * handler, at the slots of the committed revision: one touch per block, with
 * and without MAP_POPULATE on the handler's mmap; a cold then warm sum; a
 * cold sum with MAP_POPULATE; and a cold sum while a second thread maps the
 * blocks in order ahead of the reader, with MAP_POPULATE (a read-ahead).
 * They separate what the library costs from what the kernel's page mapping
 * costs, and show what populating blocks (in the fault, or ahead of it)
 * would change.
 *
 * Rounds (-r, default 3) run (1)-(3) and the diagnosis with fresh processes
 * each, in alternating order; the tables report medians over rounds.  (4)
 * runs once.  A cold read happens once per process by definition; the warm
 * figure is the fastest of WARM_PASSES sums in its child, and a fault figure
 * the fastest of FAULT_PASSES passes over fresh mappings (a fresh open of
 * the array, or a fresh reservation) in its child, on both sides alike: on a
 * shared machine other tenants only ever add time.
 *
 * A missed goal is reported, not an error: the exit status is 0 unless
 * something failed (1), or the arguments were bad (2).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_report.h"
#include "common.h"
#include "harness.h"
#include "shma.h"

#define DEF_ROUNDS 3
#define DEF_SIZE_MIB 1024
#define DEF_PROCS 16
#define MAX_SIZE_MIB (64u << 10) /* 64 GiB */
#define MAX_PROCS 200		 /* the broker allows 256 clients by default */
#define BLKSIZE ((size_t)2 << 20)
#define PAGE 4096
#define ARRAY_NAME "bench-client"
#define GOAL_COLD 0.85
#define GOAL_WARM 0.98
#define GOAL_FAULT 1.3
#define GOAL_PSS 1.1
#define NV 10 /* values a child reports */
#define WARM_PASSES 3  /* warm sums per child: the fastest counts */
#define FAULT_PASSES 3 /* fresh mappings per fault child: the fastest counts */

/* What a child sends back through its pipe: NV values, meaning per kind. */
struct result {
	double v[NV];
};

/* The per-round measurements, each a fresh child. */
enum kind {
	K_SHMA_READ,  /* cold s, warm s, minflt cold, minflt warm */
	K_MALLOC_READ, /* first s, second s, minflt first */
	K_SHMA_FAULT, /* us per block */
	K_RAW_FAULT,  /* us per block (memfd) */
	K_DIAG,	      /* the pool without the library: enum diag */
	K_NR,
};

/* The values of the diagnosis child. */
enum diag {
	D_FAULT,	/* bare handler, one touch per block: us per block */
	D_FAULT_POP,	/* the same, the handler's mmap with MAP_POPULATE */
	D_READ,		/* bare handler, cold sum: s */
	D_READ_WARM,	/* the same mapping summed again: s */
	D_READ_FLT,	/* minor faults of the cold sum */
	D_READ_POP,	/* cold sum, the handler's mmap with MAP_POPULATE: s */
	D_READ_POP_FLT, /* its minor faults */
	D_AHEAD,	/* cold sum, a thread mapping blocks ahead (populated): s */
	D_AHEAD_FLT,	/* its minor faults (the thread's included) */
};

static const char *const kname[K_NR] = {
	[K_SHMA_READ] = "shma read",
	[K_MALLOC_READ] = "malloc read",
	[K_SHMA_FAULT] = "shma fault",
	[K_RAW_FAULT] = "raw fault",
	[K_DIAG] = "pool diagnosis",
};

struct bench {
	struct harness h;
	bool started;
	size_t rounds;
	size_t procs;
	size_t size;	  /* bytes of the array */
	size_t nelem;	  /* its elements */
	size_t nblocks;	  /* its blocks */
	uint64_t pool_size;
	uint64_t *slot;	  /* pool offset of each block, committed revision */
	double expect;	  /* sum of all elements */
	unsigned timeout; /* seconds a child may take */
};

/* Block states of the raw read-ahead variant. */
enum { RAW_EMPTY, RAW_MAPPING, RAW_MAPPED };

/* State of the raw handler: set before it is installed, read-only after
 * (but for the block states). */
static struct {
	uint8_t *base;
	size_t len;
	size_t blksize;
	int fd;
	const uint64_t *off; /* file offset of each block */
	int flags;	     /* extra mmap flags: 0 or MAP_POPULATE */
	atomic_int *state;   /* per block, with the read-ahead thread; else NULL */
} raw;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_client [-r ROUNDS] [-s SIZE_MIB] [-p PROCS]\n"
		"  -r ROUNDS    rounds of the read and fault measurements, each in\n"
		"               fresh processes; medians are reported (default %d)\n"
		"  -s SIZE_MIB  the array, in MiB: an even number (2 MiB blocks), at\n"
		"               most %u (default %d)\n"
		"  -p PROCS     processes mapping the whole array for the PSS figure,\n"
		"               at most %d (default %d)\n",
		DEF_ROUNDS, MAX_SIZE_MIB, DEF_SIZE_MIB, MAX_PROCS, DEF_PROCS);
}

/* A libshm error, with the broker's words when it answered. */
static int shma_fail(shma_conn *c, const char *what, int err)
{
	return bench_shma_fail(what, err, c ? shma_conn_error(c) : "");
}

/* Read the first element of every block; returns how many are wrong. */
static __attribute__((noinline)) size_t touch_blocks(const double *p, size_t nblocks)
{
	const volatile double *v = p;
	const size_t per = BLKSIZE / sizeof(double);
	size_t bad = 0;

	for (size_t b = 0; b < nblocks; b++)
		if (v[b * per] != bench_value(b * per))
			bad++;
	return bad;
}

static int check_sum(const struct bench *b, const char *what, double got)
{
	if (got != b->expect)
		return bench_fail("%s: sum %.17g, want %.17g: wrong data", what, got, b->expect);
	return 0;
}

/* ---- the broker ------------------------------------------------------------ */

static int start_broker(struct bench *b)
{
	/* the committed array, a retained previous version and a commit in
	 * flight; the commit carries the whole array once */
	uint64_t mib = b->size >> 20, pool = 3 * mib, commit = 2 * mib;

	if (pool < 256)
		pool = 256;
	if (commit < 256)
		commit = 256;
	b->pool_size = pool << 20;
	if (bench_broker_start(&b->h, pool, commit))
		return -1;
	b->started = true;
	return 0;
}

/* Fetch the block table of the newest revision with the raw protocol
 * client: every block must have a slot inside the pool (no holes). */
static int fetch_slots(struct bench *b)
{
	struct tclient c;
	json_t *r, *blocks, *pair;
	size_t i, seen = 0;
	int err, ret = -1;

	err = tclient_open(&c, b->h.socket);
	if (err)
		return bench_err_fail("tclient_open (connect + hello)", err);
	r = tclient_call(&c, NULL, 0, NULL, NULL, "{\"op\":\"open\",\"name\":\"%s\"}", ARRAY_NAME);
	if (!reply_ok(r)) {
		bench_fail("open \"%s\" (raw client): %s", ARRAY_NAME,
			   r ? reply_code(r) : "no reply");
		goto out;
	}
	blocks = json_object_get(r, "blocks");
	for (i = 0; i < b->nblocks; i++)
		b->slot[i] = UINT64_MAX;
	json_array_foreach(blocks, i, pair) {
		json_t *jb = json_array_get(pair, 0), *jo = json_array_get(pair, 1);
		json_int_t blk = json_integer_value(jb), off = json_integer_value(jo);

		if (!json_is_integer(jb) || blk < 0 || (uint64_t)blk >= b->nblocks) {
			bench_fail("open reply: bad block number");
			goto out;
		}
		if (!json_is_integer(jo) || off < 0 || off % PAGE ||
		    (uint64_t)off + BLKSIZE > b->pool_size) {
			bench_fail("open reply: block %lld is a hole or outside the pool",
				   (long long)blk);
			goto out;
		}
		if (b->slot[blk] == UINT64_MAX)
			seen++;
		b->slot[blk] = (uint64_t)off;
	}
	if (seen != b->nblocks) {
		bench_fail("the committed array has %zu blocks with data, want %zu", seen,
			   b->nblocks);
		goto out;
	}
	ret = 0;
out:
	json_decref(r);
	tclient_close(&c);
	return ret;
}

/* ---- children ---------------------------------------------------------------- */

struct child {
	pid_t pid;
	int rfd; /* results, from the child */
	int wfd; /* commands, to the child (-1 if none) */
};

typedef int (*child_fn)(const struct bench *b, struct child *self, struct result *res);

/* Fork a child that runs fn; fn sends its result(s) itself (send_result)
 * and returns 0, or prints why it failed and returns -1.  With cmd, the
 * child also gets a command pipe.  others[0..nothers) are the parent's ends
 * of earlier children's pipes, closed in the child (so only the parent can
 * end them). */
static int spawn(const struct bench *b, child_fn fn, bool cmd, const struct child *others,
		 size_t nothers, struct child *ch)
{
	int rp[2], cp[2] = { -1, -1 };

	ch->pid = -1;
	ch->rfd = ch->wfd = -1;
	if (pipe2(rp, O_CLOEXEC) != 0)
		return bench_sys_fail("pipe2");
	if (cmd && pipe2(cp, O_CLOEXEC) != 0) {
		bench_sys_fail("pipe2");
		goto err_close;
	}
	fflush(stdout);
	fflush(stderr);
	ch->pid = fork();
	if (ch->pid < 0) {
		bench_sys_fail("fork");
		goto err_close;
	}
	if (ch->pid == 0) {
		struct child self = { .pid = getpid(), .rfd = cp[0], .wfd = rp[1] };
		struct result res;

		close(rp[0]);
		if (cp[1] >= 0)
			close(cp[1]);
		for (size_t i = 0; i < nothers; i++) {
			close(others[i].rfd);
			if (others[i].wfd >= 0)
				close(others[i].wfd);
		}
		alarm(b->timeout); /* a stuck child dies, and the parent sees it */
		memset(&res, 0, sizeof(res));
		_exit(fn(b, &self, &res) ? 1 : 0);
	}
	close(rp[1]);
	if (cp[0] >= 0)
		close(cp[0]);
	ch->rfd = rp[0];
	ch->wfd = cp[1];
	return 0;

err_close:
	close(rp[0]);
	close(rp[1]);
	if (cp[0] >= 0) {
		close(cp[0]);
		close(cp[1]);
	}
	return -1;
}

/* In a child: send one result to the parent. */
static int send_result(struct child *self, const struct result *res)
{
	if (bench_write_full(self->wfd, res, sizeof(*res)) != 0)
		return bench_sys_fail("write result");
	return 0;
}

/* Reap a child; -1 unless it exited with 0. */
static int reap(struct child *ch, const char *what)
{
	int ret;

	if (ch->rfd >= 0)
		close(ch->rfd);
	if (ch->wfd >= 0)
		close(ch->wfd);
	ch->rfd = ch->wfd = -1;
	if (ch->pid <= 0)
		return 0;
	ret = bench_wait_child(ch->pid, what);
	ch->pid = -1;
	return ret;
}

static void kill_reap(struct child *ch, const char *what)
{
	if (ch->pid > 0)
		kill(ch->pid, SIGKILL);
	reap(ch, what);
}

/* Run fn in a fresh child, wait for its one result and for it to end. */
static int run_child(const struct bench *b, child_fn fn, const char *what, struct result *res)
{
	struct child ch;
	int ret = 0;

	if (spawn(b, fn, false, NULL, 0, &ch))
		return -1;
	if (bench_read_full(ch.rfd, res, sizeof(*res)) != 0)
		ret = bench_fail("%s: no result from the child", what);
	if (reap(&ch, what))
		ret = -1;
	return ret;
}

/* In a child: connect, open the array, check its shape, install the
 * handler. */
static int client_open(const struct bench *b, shma_conn **c, shma_array **a)
{
	struct shma_array_info info;
	int err;

	err = shma_connect(b->h.socket, NULL, c);
	if (err)
		return shma_fail(NULL, "shma_connect", err);
	err = shma_open(*c, ARRAY_NAME, a);
	if (err) {
		shma_fail(*c, "shma_open", err);
		goto err_disconnect;
	}
	shma_array_info(*a, &info);
	if (info.nbytes != b->size || info.block_size != BLKSIZE || info.nblocks != b->nblocks) {
		bench_fail("array: %" PRIu64 " bytes in %" PRIu64 " blocks of %zu, "
			   "want %zu in %zu of %zu", info.nbytes, info.nblocks, info.block_size,
			   b->size, b->nblocks, BLKSIZE);
		goto err_disconnect;
	}
	err = shma_vm_install_handler();
	if (err) {
		shma_fail(NULL, "shma_vm_install_handler", err);
		goto err_disconnect;
	}
	return 0;

err_disconnect:
	shma_disconnect(c); /* closes the array too */
	*a = NULL;
	return -1;
}

/* ---- the data ------------------------------------------------------------------ */

/* Child: create the array, write every element, commit.  Reports write s,
 * commit s, pages sent. */
static int child_fill(const struct bench *b, struct child *self, struct result *res)
{
	struct shma_conn_stats st;
	shma_conn *c = NULL;
	uint64_t rev;
	int err, ret = -1;

	err = shma_connect(b->h.socket, NULL, &c);
	if (err)
		return shma_fail(NULL, "shma_connect", err);
	if (bench_create_filled(c, ARRAY_NAME, b->nelem, BLKSIZE, &res->v[0], &res->v[1], &rev))
		goto out;
	shma_conn_stats(c, &st);
	if (st.pages_sent != b->size / PAGE) {
		bench_fail("the commit sent %" PRIu64 " pages, want %zu", st.pages_sent,
			   b->size / PAGE);
		goto out;
	}
	res->v[2] = (double)st.pages_sent;
	res->v[3] = (double)rev;
	ret = send_result(self, res);
out:
	shma_disconnect(&c);
	return ret;
}

/* ---- (1), (2): sequential reads ---------------------------------------------- */

/* Sum d, timed, and check the sum. */
static int timed_sum(const struct bench *b, const double *d, const char *what, double *secs)
{
	double t0, t1, sum;

	t0 = bench_now_s();
	sum = bench_sum_f8(d, b->nelem);
	t1 = bench_now_s();
	*secs = t1 - t0;
	return check_sum(b, what, sum);
}

/* The warm figure: the fastest of WARM_PASSES sums (other tenants of the
 * machine only ever add time). */
static int warm_sums(const struct bench *b, const double *d, const char *what, double *best)
{
	double t;

	*best = INFINITY;
	for (int i = 0; i < WARM_PASSES; i++) {
		if (timed_sum(b, d, what, &t))
			return -1;
		if (t < *best)
			*best = t;
	}
	return 0;
}

/* Child: cold then warm sums of the array through the client. */
static int child_shma_read(const struct bench *b, struct child *self, struct result *res)
{
	shma_conn *c;
	shma_array *a;
	const double *d;
	long f0, f1, f2;
	int ret = -1;

	if (client_open(b, &c, &a))
		return -1;
	d = shma_array_data(a);
	f0 = bench_minflt();
	if (timed_sum(b, d, "shma cold read", &res->v[0]))
		goto out;
	f1 = bench_minflt();
	if (warm_sums(b, d, "shma warm read", &res->v[1]))
		goto out;
	f2 = bench_minflt();
	res->v[2] = (double)(f1 - f0);
	res->v[3] = (double)(f2 - f1);
	ret = send_result(self, res);
out:
	shma_disconnect(&c);
	return ret;
}

/* Child: the same sums over a malloc'd buffer, filled (untimed) first. */
static int child_malloc_read(const struct bench *b, struct child *self, struct result *res)
{
	double *d = malloc(b->size);
	long f0, f1;
	int ret = -1;

	if (!d)
		return bench_sys_fail("malloc");
	bench_fill(d, 0, b->nelem);
	f0 = bench_minflt();
	if (timed_sum(b, d, "malloc read", &res->v[0]))
		goto out;
	f1 = bench_minflt();
	if (warm_sums(b, d, "malloc warm read", &res->v[1]))
		goto out;
	res->v[2] = (double)(f1 - f0);
	ret = send_result(self, res);
out:
	free(d);
	return ret;
}

/* ---- (3): per-block faults ---------------------------------------------------- */

/* Child: one touch per block through the client, FAULT_PASSES times, each
 * on a fresh open of the array (a fresh mapping); the fastest pass. */
static int child_shma_fault(const struct bench *b, struct child *self, struct result *res)
{
	shma_conn *c;
	shma_array *a;
	double t0, t1, best = INFINITY;
	size_t bad;
	int err, ret = -1;

	if (client_open(b, &c, &a))
		return -1;
	for (int i = 0; i < FAULT_PASSES; i++) {
		if (i > 0) {
			shma_close(&a);
			err = shma_open(c, ARRAY_NAME, &a);
			if (err) {
				shma_fail(c, "shma_open", err);
				goto out;
			}
		}
		t0 = bench_now_s();
		bad = touch_blocks(shma_array_data(a), b->nblocks);
		t1 = bench_now_s();
		if (bad) {
			bench_fail("shma fault: %zu blocks read wrong data", bad);
			goto out;
		}
		if (t1 - t0 < best)
			best = t1 - t0;
	}
	res->v[0] = best * 1e6 / (double)b->nblocks;
	ret = send_result(self, res);
out:
	shma_disconnect(&c);
	return ret;
}

/* Map block blk of the reservation from raw.fd, read-only. */
static bool raw_map(size_t blk, int flags)
{
	return mmap(raw.base + blk * raw.blksize, raw.blksize, PROT_READ,
		    MAP_SHARED | MAP_FIXED | flags, raw.fd, (off_t)raw.off[blk]) != MAP_FAILED;
}

/* Claim block blk for mapping (RAW_EMPTY -> RAW_MAPPING); false if the
 * other thread has it. */
static bool raw_claim(size_t blk)
{
	int empty = RAW_EMPTY;

	return atomic_compare_exchange_strong(&raw.state[blk], &empty, RAW_MAPPING);
}

/* The bare baseline handler: map the block holding si_addr from raw.fd at
 * raw.off[block], read-only, over the reservation.  With the read-ahead
 * thread (raw.state set), a block that thread is mapping is waited for. */
static void raw_segv(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr, base = (uintptr_t)raw.base;
	int saved = errno;
	size_t blk;

	(void)sig;
	(void)uc;
	if (a < base || a - base >= raw.len) {
		/* Not ours: die of it with the default action. */
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		sigaction(SIGSEGV, &dfl, NULL);
		return;
	}
	blk = (a - base) / raw.blksize;
	if (raw.state && !raw_claim(blk)) {
		while (atomic_load(&raw.state[blk]) != RAW_MAPPED)
			;
	} else {
		if (!raw_map(blk, raw.flags))
			bench_async_die("bench_client: raw handler: mmap failed\n");
		if (raw.state)
			atomic_store(&raw.state[blk], RAW_MAPPED);
	}
	errno = saved;
}

/* The read-ahead thread: map every block in order, with MAP_POPULATE, ahead
 * of the reader (a block the reader's fault took first is skipped). */
static void *raw_ahead(void *arg)
{
	(void)arg;
	for (size_t blk = 0; blk < raw.len / raw.blksize; blk++) {
		if (!raw_claim(blk))
			continue;
		if (!raw_map(blk, MAP_POPULATE))
			bench_async_die("bench_client: read-ahead: mmap failed\n");
		atomic_store(&raw.state[blk], RAW_MAPPED);
	}
	return NULL;
}

enum raw_mode {
	RAW_TOUCH, /* one touch per block: us per block */
	RAW_SUM,   /* sum everything: cold, then warm (warm_sums) */
	RAW_AHEAD, /* sum once, a read-ahead thread mapping blocks ahead */
};

struct raw_time {
	double t;      /* us per block (RAW_TOUCH), else s of the (first) sum */
	double warm;   /* s of the fastest warm sum (RAW_SUM) */
	double faults; /* minor faults during the first sum */
};

/* In a child: reserve the array's length PROT_NONE, map blocks of fd (at
 * off[]) on first access with the raw handler (mmap flags | extra), and
 * measure as mode says. */
static int raw_run(const struct bench *b, int fd, const uint64_t *off, int extra,
		   enum raw_mode mode, struct raw_time *out)
{
	struct sigaction sa = { .sa_sigaction = raw_segv, .sa_flags = SA_SIGINFO };
	struct sigaction old;
	atomic_int *state = NULL;
	double t0, t1 = 0, s = 0;
	pthread_t ahead;
	size_t bad = 0;
	long f0, f1 = 0;
	void *base;
	int err, ret = -1;

	if (mode == RAW_AHEAD) {
		state = calloc(b->nblocks, sizeof(*state));
		if (!state)
			return bench_sys_fail("calloc");
		for (size_t i = 0; i < b->nblocks; i++)
			atomic_init(&state[i], RAW_EMPTY);
	}
	base = mmap(NULL, b->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		bench_sys_fail("raw: mmap reserve");
		goto err_free;
	}
	raw.base = base;
	raw.len = b->size;
	raw.blksize = BLKSIZE;
	raw.fd = fd;
	raw.off = off;
	raw.flags = extra;
	raw.state = state;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old) != 0) {
		bench_sys_fail("raw: sigaction");
		goto err_unmap;
	}
	f0 = bench_minflt();
	t0 = bench_now_s();
	if (mode == RAW_AHEAD) {
		err = pthread_create(&ahead, NULL, raw_ahead, NULL);
		if (err) {
			errno = err;
			bench_sys_fail("pthread_create");
			goto err_restore;
		}
	}
	if (mode == RAW_TOUCH)
		bad = touch_blocks(base, b->nblocks);
	else
		s = bench_sum_f8(base, b->nelem);
	t1 = bench_now_s();
	f1 = bench_minflt();
	if (mode == RAW_AHEAD) {
		err = pthread_join(ahead, NULL);
		if (err) {
			errno = err;
			bench_sys_fail("pthread_join");
			goto err_restore;
		}
	}
	ret = 0;
	if (mode == RAW_SUM && warm_sums(b, base, "raw warm read", &out->warm))
		ret = -1;
err_restore:
	if (sigaction(SIGSEGV, &old, NULL) != 0)
		ret = bench_sys_fail("raw: sigaction restore");
	if (ret)
		goto err_unmap;
	ret = -1;
	if (bad) {
		bench_fail("raw: %zu blocks read wrong data", bad);
		goto err_unmap;
	}
	if (mode != RAW_TOUCH && check_sum(b, "raw read", s))
		goto err_unmap;
	out->t = mode == RAW_TOUCH ? (t1 - t0) * 1e6 / (double)b->nblocks : t1 - t0;
	out->faults = (double)(f1 - f0);
	ret = 0;
err_unmap:
	if (munmap(base, b->size) != 0)
		ret = bench_sys_fail("raw: munmap");
	raw.state = NULL;
err_free:
	free(state);
	return ret;
}

/* RAW_TOUCH on FAULT_PASSES fresh reservations: the fastest, us per block. */
static int raw_touch_best(const struct bench *b, int fd, const uint64_t *off, int extra,
			  double *us)
{
	struct raw_time t;

	*us = INFINITY;
	for (int i = 0; i < FAULT_PASSES; i++) {
		if (raw_run(b, fd, off, extra, RAW_TOUCH, &t))
			return -1;
		if (t.t < *us)
			*us = t.t;
	}
	return 0;
}

/* Child: the raw baseline over a populated memfd of the array's length. */
static int child_raw_fault(const struct bench *b, struct child *self, struct result *res)
{
	uint64_t *off = calloc(b->nblocks, sizeof(*off));
	void *p;
	int fd, ret = -1;

	if (!off)
		return bench_sys_fail("calloc");
	for (size_t i = 0; i < b->nblocks; i++)
		off[i] = i * BLKSIZE;
	fd = memfd_create("bench_client", MFD_CLOEXEC);
	if (fd < 0) {
		bench_sys_fail("memfd_create");
		goto err_free;
	}
	if (ftruncate(fd, (off_t)b->size) != 0) {
		bench_sys_fail("ftruncate");
		goto err_close;
	}
	p = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		bench_sys_fail("mmap memfd");
		goto err_close;
	}
	bench_fill(p, 0, b->nelem);
	if (munmap(p, b->size) != 0) {
		bench_sys_fail("munmap memfd");
		goto err_close;
	}
	if (raw_touch_best(b, fd, off, 0, &res->v[0]))
		goto err_close;
	ret = send_result(self, res);
err_close:
	close(fd);
err_free:
	free(off);
	return ret;
}

/* Child: the pool itself, no library (see the top).  Reports the values
 * named by enum diag. */
static int child_diag(const struct bench *b, struct child *self, struct result *res)
{
	struct raw_time t[5];
	struct tclient c;
	int err, ret = -1;

	err = tclient_open(&c, b->h.socket);
	if (err)
		return bench_err_fail("tclient_open (connect + hello)", err);
	if (raw_touch_best(b, c.pool_fd, b->slot, 0, &t[0].t) ||
	    raw_touch_best(b, c.pool_fd, b->slot, MAP_POPULATE, &t[1].t) ||
	    raw_run(b, c.pool_fd, b->slot, 0, RAW_SUM, &t[2]) ||
	    raw_run(b, c.pool_fd, b->slot, MAP_POPULATE, RAW_SUM, &t[3]) ||
	    raw_run(b, c.pool_fd, b->slot, 0, RAW_AHEAD, &t[4]))
		goto out;
	res->v[D_FAULT] = t[0].t;
	res->v[D_FAULT_POP] = t[1].t;
	res->v[D_READ] = t[2].t;
	res->v[D_READ_WARM] = t[2].warm;
	res->v[D_READ_FLT] = t[2].faults;
	res->v[D_READ_POP] = t[3].t;
	res->v[D_READ_POP_FLT] = t[3].faults;
	res->v[D_AHEAD] = t[4].t;
	res->v[D_AHEAD_FLT] = t[4].faults;
	ret = send_result(self, res);
out:
	tclient_close(&c);
	return ret;
}

static const child_fn kfn[K_NR] = {
	[K_SHMA_READ] = child_shma_read,
	[K_MALLOC_READ] = child_malloc_read,
	[K_SHMA_FAULT] = child_shma_fault,
	[K_RAW_FAULT] = child_raw_fault,
	[K_DIAG] = child_diag,
};

/* ---- (4): PSS of many readers ------------------------------------------------- */

struct pss {
	double pss_kb, rss_kb, shmem_kb;
};

/* Pss, Rss and Pss_Shmem (kB) of /proc/<who>/smaps_rollup. */
static int read_pss(const char *who, struct pss *out)
{
	char path[64], line[256];
	bool got = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/smaps_rollup", who);
	f = fopen(path, "re");
	if (!f)
		return bench_sys_fail(path);
	memset(out, 0, sizeof(*out));
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kb;

		if (sscanf(line, "Pss: %llu kB", &kb) == 1) {
			out->pss_kb = (double)kb;
			got = true;
		} else if (sscanf(line, "Rss: %llu kB", &kb) == 1) {
			out->rss_kb = (double)kb;
		} else if (sscanf(line, "Pss_Shmem: %llu kB", &kb) == 1) {
			out->shmem_kb = (double)kb;
		}
	}
	if (ferror(f)) {
		fclose(f);
		return bench_sys_fail(path);
	}
	fclose(f);
	return got ? 0 : bench_fail("%s: no Pss line", path);
}

/* Child: read all of the array, say so, then on 'm' report its Pss; stay
 * until the parent releases it (any byte, or the end of the pipe). */
static int child_pss(const struct bench *b, struct child *self, struct result *res)
{
	shma_conn *c;
	shma_array *a;
	struct pss p;
	double t0, t1, s;
	char cmd;
	int ret = -1;

	if (client_open(b, &c, &a))
		return -1;
	t0 = bench_now_s();
	s = bench_sum_f8(shma_array_data(a), b->nelem);
	t1 = bench_now_s();
	if (check_sum(b, "pss reader", s))
		goto out;
	res->v[0] = t1 - t0;
	if (send_result(self, res))
		goto out;
	if (bench_read_full(self->rfd, &cmd, 1) != 0 || cmd != 'm') {
		bench_fail("pss reader: no measure command");
		goto out;
	}
	if (read_pss("self", &p))
		goto out;
	res->v[0] = p.pss_kb;
	res->v[1] = p.rss_kb;
	res->v[2] = p.shmem_kb;
	if (send_result(self, res))
		goto out;
	(void)bench_read_full(self->rfd, &cmd, 1); /* released: a byte or the end */
	ret = 0;
out:
	shma_disconnect(&c);
	return ret;
}

struct pss_report {
	double sum_kb, min_kb, max_kb, rss_kb, shmem_kb;
	double read_s_max; /* slowest reader's full read */
	struct pss broker;
};

static int measure_pss(const struct bench *b, struct pss_report *rep)
{
	struct child *ch = calloc(b->procs, sizeof(*ch));
	struct result res;
	size_t n = 0;
	char brokerpid[32];
	int ret = -1;

	if (!ch)
		return bench_sys_fail("calloc");
	memset(rep, 0, sizeof(*rep));
	for (; n < b->procs; n++)
		if (spawn(b, child_pss, true, ch, n, &ch[n]))
			goto out;
	for (size_t i = 0; i < n; i++) {
		if (bench_read_full(ch[i].rfd, &res, sizeof(res)) != 0) {
			bench_fail("pss reader %zu: did not finish its read", i);
			goto out;
		}
		if (res.v[0] > rep->read_s_max)
			rep->read_s_max = res.v[0];
	}
	/* all have read everything: now each one's share is final */
	for (size_t i = 0; i < n; i++) {
		if (bench_write_full(ch[i].wfd, "m", 1) != 0) {
			bench_sys_fail("write measure command");
			goto out;
		}
		if (bench_read_full(ch[i].rfd, &res, sizeof(res)) != 0) {
			bench_fail("pss reader %zu: no Pss", i);
			goto out;
		}
		rep->sum_kb += res.v[0];
		rep->rss_kb += res.v[1];
		rep->shmem_kb += res.v[2];
		if (i == 0 || res.v[0] < rep->min_kb)
			rep->min_kb = res.v[0];
		if (res.v[0] > rep->max_kb)
			rep->max_kb = res.v[0];
	}
	snprintf(brokerpid, sizeof(brokerpid), "%d", (int)b->h.pid);
	if (read_pss(brokerpid, &rep->broker))
		goto out;
	for (size_t i = 0; i < n; i++)
		if (bench_write_full(ch[i].wfd, "q", 1) != 0) {
			bench_sys_fail("write release command");
			goto out;
		}
	ret = 0;
	for (size_t i = 0; i < n; i++)
		if (reap(&ch[i], "pss reader"))
			ret = -1;
	n = 0;
out:
	for (size_t i = 0; i < n; i++)
		kill_reap(&ch[i], "pss reader");
	free(ch);
	return ret;
}

/* ---- report -------------------------------------------------------------------- */

/* Median of value v of kind k over the rounds. */
static double med(const struct bench *b, struct result *res[K_NR], enum kind k, int v)
{
	return bench_median_field(res[k], b->rounds, sizeof(res[k][0]),
				  offsetof(struct result, v) + (size_t)v * sizeof(double));
}

static double gibps(const struct bench *b, double secs)
{
	return (double)b->size / secs / (double)(1u << 30);
}

static const struct bench_table table = { .name_w = 42, .prec = 2 };

static void print_info(const char *name, double value, const char *note)
{
	bench_table_value(&table, name, value, note);
}

static void print_ratio(const char *name, double value, double base, const char *note)
{
	bench_table_ratio(&table, name, value, base, "-", note);
}

/* higher: the goal is ratio >= goal; else ratio <= goal. */
static void print_goal(const char *name, double value, double base, double goal, bool higher)
{
	double ratio = value / base;
	bool ok = higher ? ratio >= goal : ratio <= goal;
	char g[16];

	snprintf(g, sizeof(g), "%s %.2f", higher ? ">=" : "<=", goal);
	bench_table_ratio(&table, name, value, base, g, ok ? "ok" : "MISSED");
}

static void report(const struct bench *b, struct result *res[K_NR], const struct pss_report *p)
{
	double cold, warm, mcold, mwarm, fault, rfault;
	double mib = (double)(b->size >> 20);

	printf("\nper round (reads in ms, faults in us per block; pool-*: no library):\n");
	printf("%-5s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "round", "shma-cold",
	       "malloc", "shma-warm", "malloc-2", "shma-flt", "raw-flt", "pool-flt", "pool+pop",
	       "pool-cold", "pool-warm", "pool+pop", "pool-ahd");
	for (size_t r = 0; r < b->rounds; r++) {
		const struct result *s = &res[K_SHMA_READ][r], *m = &res[K_MALLOC_READ][r],
				    *d = &res[K_DIAG][r];

		printf("%-5zu %9.1f %9.1f %9.1f %9.1f %9.2f %9.2f %9.2f %9.2f %9.1f %9.1f %9.1f "
		       "%9.1f\n",
		       r + 1, s->v[0] * 1e3, m->v[0] * 1e3, s->v[1] * 1e3, m->v[1] * 1e3,
		       res[K_SHMA_FAULT][r].v[0], res[K_RAW_FAULT][r].v[0], d->v[D_FAULT],
		       d->v[D_FAULT_POP], d->v[D_READ] * 1e3, d->v[D_READ_WARM] * 1e3,
		       d->v[D_READ_POP] * 1e3, d->v[D_AHEAD] * 1e3);
	}

	cold = gibps(b, med(b, res, K_SHMA_READ, 0));
	warm = gibps(b, med(b, res, K_SHMA_READ, 1));
	mcold = gibps(b, med(b, res, K_MALLOC_READ, 0));
	mwarm = gibps(b, med(b, res, K_MALLOC_READ, 1));
	fault = med(b, res, K_SHMA_FAULT, 0);
	rfault = med(b, res, K_RAW_FAULT, 0);

	printf("\nmedian of %zu rounds; reads in GiB/s (ratio: shma / malloc), faults in us per "
	       "block, memory in MiB:\n",
	       b->rounds);
	bench_table_head(&table, "value");
	print_goal("(1) cold read, fresh process, GiB/s", cold, mcold, GOAL_COLD, true);
	print_goal("(2) warm read, GiB/s", warm, mwarm, GOAL_WARM, true);
	print_goal("(3) fault per 2 MiB block, us", fault, rfault, GOAL_FAULT, false);
	{
		char name[64];

		snprintf(name, sizeof(name), "(4) summed Pss of %zu readers, MiB", b->procs);
		print_goal(name, p->sum_kb / 1024, mib, GOAL_PSS, false);
	}

	printf("\ndetails:\n");
	print_info("cold read: minor faults (shma)", med(b, res, K_SHMA_READ, 2), "per pass");
	print_info("cold read: minor faults (malloc)", med(b, res, K_MALLOC_READ, 2), "per pass");
	print_info("warm read: minor faults (shma)", med(b, res, K_SHMA_READ, 3), "per pass");
	printf("the pool without the library (bare handler, as the fault baseline):\n");
	print_ratio("  cold read, GiB/s", gibps(b, med(b, res, K_DIAG, D_READ)), mcold,
		    "vs malloc");
	print_info("    minor faults", med(b, res, K_DIAG, D_READ_FLT), "per pass");
	print_ratio("  warm read, GiB/s", gibps(b, med(b, res, K_DIAG, D_READ_WARM)), mwarm,
		    "vs malloc");
	print_ratio("  cold read, MAP_POPULATE, GiB/s", gibps(b, med(b, res, K_DIAG, D_READ_POP)),
		    mcold, "vs malloc");
	print_info("    minor faults", med(b, res, K_DIAG, D_READ_POP_FLT), "per pass");
	print_ratio("  cold read, read-ahead thread, GiB/s", gibps(b, med(b, res, K_DIAG, D_AHEAD)),
		    mcold, "vs malloc");
	print_info("    minor faults", med(b, res, K_DIAG, D_AHEAD_FLT), "both threads");
	print_ratio("  fault, us per block", med(b, res, K_DIAG, D_FAULT), rfault, "vs raw memfd");
	print_ratio("  fault, MAP_POPULATE, us per block", med(b, res, K_DIAG, D_FAULT_POP), rfault,
		    "vs raw memfd");
	printf("%zu readers at once:\n", b->procs);
	print_ratio("Pss per reader, MiB (min)", p->min_kb / 1024, mib / (double)b->procs,
		    "vs array / readers");
	print_ratio("Pss per reader, MiB (max)", p->max_kb / 1024, mib / (double)b->procs,
		    "vs array / readers");
	print_info("Pss_Shmem summed over readers, MiB", p->shmem_kb / 1024, "");
	print_info("Rss summed over readers, MiB", p->rss_kb / 1024, "");
	print_info("broker Pss, MiB", p->broker.pss_kb / 1024, "");
	print_ratio("readers + broker Pss, MiB", (p->sum_kb + p->broker.pss_kb) / 1024, mib,
		    "vs array");
	print_info("slowest reader's full read, s", p->read_s_max, "all at once");

	/* the figures with goals, for the report (bench/run.sh) */
	bench_report("client", "(1) cold read, fresh process, vs malloc'd buffer", "GiB/s", cold,
		     mcold, '>', GOAL_COLD);
	bench_report("client", "(2) warm read vs malloc'd buffer", "GiB/s", warm, mwarm, '>',
		     GOAL_WARM);
	bench_report("client", "(3) fault per 2 MiB block vs bare handler on a memfd", "us",
		     fault, rfault, '<', GOAL_FAULT);
	{
		char name[80];

		snprintf(name, sizeof(name), "(4) summed Pss of %zu readers vs the array", b->procs);
		bench_report("client", name, "MiB", p->sum_kb / 1024, mib, '<', GOAL_PSS);
	}
	bench_report("client", "readers' + broker's Pss vs the array", "MiB",
		     (p->sum_kb + p->broker.pss_kb) / 1024, mib, 0, 0);
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	struct bench b = { .rounds = DEF_ROUNDS, .procs = DEF_PROCS };
	struct result *res[K_NR] = { NULL }, fillres;
	struct pss_report pss;
	size_t mib = DEF_SIZE_MIB;
	int opt, ret = 1;

	bench_set_name("bench_client");
	while ((opt = getopt(argc, argv, "r:s:p:h")) != -1) {
		switch (opt) {
		case 'r':
			if (!bench_parse_count(optarg, 10, 1000, &b.rounds))
				goto bad_args;
			break;
		case 's':
			if (!bench_parse_count(optarg, 10, MAX_SIZE_MIB, &mib) || mib % 2)
				goto bad_args;
			break;
		case 'p':
			if (!bench_parse_count(optarg, 10, MAX_PROCS, &b.procs))
				goto bad_args;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad_args;
		}
	}
	if (optind != argc)
		goto bad_args;
	b.size = mib << 20;
	b.nelem = b.size / sizeof(double);
	b.nblocks = b.size / BLKSIZE;
	b.timeout = 120 + 30 * (unsigned)(mib >> 10);
	b.expect = bench_expected_sum(b.nelem);
	/* a child that died must show up as an error, not kill us */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		bench_sys_fail("signal");
		return 1;
	}

	printf("bench_client: %zu MiB of <f8 (%zu elements) in %zu blocks of %zu KiB, "
	       "%zu rounds, %zu readers for Pss\n",
	       mib, b.nelem, b.nblocks, BLKSIZE >> 10, b.rounds, b.procs);
	b.slot = calloc(b.nblocks, sizeof(*b.slot));
	if (!b.slot) {
		bench_sys_fail("calloc");
		goto out;
	}
	for (int k = 0; k < K_NR; k++) {
		res[k] = calloc(b.rounds, sizeof(*res[k]));
		if (!res[k]) {
			bench_sys_fail("calloc");
			goto out;
		}
	}
	if (start_broker(&b))
		goto out;
	if (run_child(&b, child_fill, "fill", &fillres) || fetch_slots(&b))
		goto out;
	printf("filled: writing %.2f s, commit %.2f s (%.0f pages sent, revision %.0f)\n",
	       fillres.v[0], fillres.v[1], fillres.v[2], fillres.v[3]);

	for (size_t r = 0; r < b.rounds; r++) {
		for (int i = 0; i < K_NR; i++) {
			enum kind k = r % 2 ? K_NR - 1 - i : i;

			if (run_child(&b, kfn[k], kname[k], &res[k][r]))
				goto out;
		}
		printf("round %zu done\n", r + 1);
		fflush(stdout);
	}
	if (measure_pss(&b, &pss))
		goto out;
	report(&b, res, &pss);
	ret = 0;
out:
	if (b.started && bench_broker_stop(&b.h))
		ret = -1;
	for (int k = 0; k < K_NR; k++)
		free(res[k]);
	free(b.slot);
	return ret ? 1 : 0;

bad_args:
	usage(stderr);
	return 2;
}
