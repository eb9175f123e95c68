/* bench_compare.c - reading the same data through shma, LMDB and Python's
 * multiprocessing.shared_memory + NumPy, against a malloc'd buffer, in one
 * run.
 *
 *   bench_compare [-r ROUNDS] [-s SIZE_MIB] [-P PYTHON] [-S SCRIPT]
 *
 * The data: SIZE_MIB MiB (default 1 GiB) of <f8 in 2 MiB blocks, element i
 * (i ^ (i >> 17)) & 0xffff (small integers: every sum is exact, and checked).
 * Set-up, untimed:
 *   shma    a real broker (tests/lib/harness) with 2 MiB blocks, memory
 *           only (data_dir false); a child creates the array, writes every
 *           element and commits.
 *   LMDB    a child writes an environment in the broker's temporary
 *           directory: one value per block (key: the block number, a size_t,
 *           MDB_INTEGERKEY), MDB_RESERVE'd and filled in place, 32 blocks
 *           per write transaction, synced once at the end.  The file then
 *           sits in the page cache.
 *   Python  SCRIPT (bench/compare_shm.py, found above this binary) under
 *           PYTHON (default /usr/bin/python3, Debian's, which has NumPy),
 *           a long-lived child: it creates a shared_memory segment, fills it
 *           with NumPy and runs each measurement below in a fresh process
 *           ("spawn" start method) when asked.  Without NumPy or the script,
 *           the Python figures are left out (said so), not an error.
 *
 * Every measurement is a fresh process that sums every element.  "cold" is
 * its first sum: every page is touched for the first time by that process.
 * "warm" is the fastest of WARM_PASSES sums after it (other tenants of the
 * machine only ever add time).  Only the sums are timed, not the set-up of
 * the process (connect, open, import, attach).
 *   malloc  baseline: malloc, fill (untimed: the pages are populated), sum
 *           with a C loop of 8 accumulators (the loop of bench_client).
 *   shma    libshm's public API: shma_connect, shma_open, the C loop over
 *           shma_array_data (blocks map in on first touch).
 *   LMDB    mdb_env_open (read-only), one read transaction; per block
 *           mdb_get (a pointer into LMDB's map: zero-copy) and the C loop.
 *   py-shm  SharedMemory(name), an ndarray over its buffer, np.sum.
 *   numpy   the NumPy side's baseline: a private NumPy array, filled
 *           (untimed), np.sum: NumPy's own speed, without shared memory.
 * Rounds (-r, default 3) run each kind once, in alternating order; the
 * tables report medians.  Figures in GB/s (1e9 bytes/s); ratios against the
 * malloc baseline (cold against its first sum, warm against warm), and of
 * shma against LMDB and against Python.  They are information: the issue's
 * goals for shma's reads are bench_client's.
 *
 * The exit status is 0 unless something failed (1), or the arguments were
 * bad (2).  The broker, the Python child and every measuring child are
 * stopped and reaped on every path; the segment is unlinked.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_report.h"
#include "common.h"
#include "harness.h"
#include "shma.h"

#define DEF_ROUNDS 3
#define DEF_SIZE_MIB 1024
#define MAX_SIZE_MIB (64u << 10) /* 64 GiB */
#define DEF_PYTHON "/usr/bin/python3"
#define SCRIPT "bench/compare_shm.py"
#define BLKSIZE ((size_t)2 << 20)
#define PER_BLOCK (BLKSIZE / sizeof(double))
#define ARRAY_NAME "bench-compare"
#define WARM_PASSES 3
#define LMDB_BATCH 32 /* blocks per LMDB write transaction */

/* The measurements of a round, each a fresh process; the Python ones last
 * (without Python, the first K_PYSHM are all there is). */
enum kind { K_MALLOC, K_SHMA, K_LMDB, K_PYSHM, K_NUMPY, K_NR };

static const char *const kname[K_NR] = {
	[K_MALLOC] = "malloc", [K_SHMA] = "shma", [K_LMDB] = "lmdb",
	[K_PYSHM] = "py-shm",  [K_NUMPY] = "numpy",
};

/* What a measurement gives: its cold (first) and fastest warm sum, and the
 * minor faults of the cold sum. */
struct result {
	double cold_s, warm_s, cold_flt;
};

struct bench {
	struct harness h;
	bool started;
	size_t rounds;
	size_t size;	/* bytes of the data */
	size_t nelem;	/* its elements */
	size_t nblocks; /* its blocks */
	double expect;	/* sum of all elements */
	unsigned timeout; /* seconds a child (or an answer of Python's) may take */
	char lmdb_dir[300];
	/* the Python side */
	const char *python;
	char script[PATH_MAX];
	bool have_py;	   /* running, with NumPy */
	char py_why[300];  /* if not: why */
	pid_t py_pid;
	int py_in, py_out; /* its stdin (we write), its stdout (we read) */
	char shm_name[64];
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_compare [-r ROUNDS] [-s SIZE_MIB] [-P PYTHON] [-S SCRIPT]\n"
		"  -r ROUNDS    rounds, each kind of read in a fresh process; medians\n"
		"               are reported (default %d)\n"
		"  -s SIZE_MIB  the data, in MiB: an even number (2 MiB blocks), at most\n"
		"               %u (default %d)\n"
		"  -P PYTHON    the interpreter with NumPy (default %s)\n"
		"  -S SCRIPT    the Python side (default: %s above this binary)\n",
		DEF_ROUNDS, MAX_SIZE_MIB, DEF_SIZE_MIB, DEF_PYTHON, SCRIPT);
}

/* A libshm error, with the broker's words (of c's last call, else of the
 * last shma_connect). */
static int shma_fail(shma_conn *c, const char *what, int err)
{
	return bench_shma_fail(what, err, c ? shma_conn_error(c) : shma_last_error());
}

static int mdb_fail(const char *what, int rc)
{
	return bench_fail("%s: %s", what, mdb_strerror(rc));
}

/* ---- the timed passes ------------------------------------------------------ */

/* A pass over the data: returns its sum. */
typedef double (*pass_fn)(const struct bench *b, void *arg);

/* The cold pass, then WARM_PASSES more; checks every sum. */
static int timed_passes(const struct bench *b, const char *what, pass_fn pass, void *arg,
			struct result *res)
{
	double t0, t, sum;
	long f0;

	f0 = bench_minflt();
	t0 = bench_now_s();
	sum = pass(b, arg);
	res->cold_s = bench_now_s() - t0;
	res->cold_flt = (double)(bench_minflt() - f0);
	if (sum != b->expect)
		return bench_fail("%s: cold sum %.17g, want %.17g: wrong data", what, sum,
				  b->expect);
	res->warm_s = INFINITY;
	for (int i = 0; i < WARM_PASSES; i++) {
		t0 = bench_now_s();
		sum = pass(b, arg);
		t = bench_now_s() - t0;
		if (sum != b->expect)
			return bench_fail("%s: warm sum %.17g, want %.17g: wrong data", what, sum,
					  b->expect);
		if (t < res->warm_s)
			res->warm_s = t;
	}
	return 0;
}

static double pass_whole(const struct bench *b, void *arg)
{
	return bench_sum_f8(arg, b->nelem);
}

/* ---- children ------------------------------------------------------------------ */

typedef int (*child_fn)(const struct bench *b, struct result *res);

/* Run fn in a fresh child (it dies of SIGALRM after b->timeout seconds);
 * wait for its result and for it to end. */
static int run_child(const struct bench *b, child_fn fn, const char *what, struct result *res)
{
	int p[2], ret = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		return bench_sys_fail("pipe2");
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		bench_sys_fail("fork");
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		struct result r = { 0 };

		close(p[0]);
		if (b->have_py) { /* only the parent talks to Python */
			close(b->py_in);
			close(b->py_out);
		}
		alarm(b->timeout);
		if (fn(b, &r) || bench_write_full(p[1], &r, sizeof(r)) != 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	if (bench_read_full(p[0], res, sizeof(*res)) != 0)
		ret = bench_fail("%s: no result from the child", what);
	close(p[0]);
	if (bench_wait_child(pid, what))
		ret = -1;
	return ret;
}

/* ---- the malloc baseline --------------------------------------------------------- */

static int child_malloc(const struct bench *b, struct result *res)
{
	double *d = malloc(b->size);
	int ret;

	if (!d)
		return bench_sys_fail("malloc");
	bench_fill(d, 0, b->nelem);
	ret = timed_passes(b, "malloc", pass_whole, d, res);
	free(d);
	return ret;
}

/* ---- shma ------------------------------------------------------------------------ */

/* Child: create the array, write every element, commit. */
static int child_shma_fill(const struct bench *b, struct result *res)
{
	shma_conn *c = NULL;
	uint64_t rev;
	int err, ret;

	err = shma_connect(b->h.socket, NULL, &c);
	if (err)
		return shma_fail(NULL, "shma_connect", err);
	/* here: cold_s the writing, warm_s the commit */
	ret = bench_create_filled(c, ARRAY_NAME, b->nelem, BLKSIZE, &res->cold_s, &res->warm_s,
				  &rev);
	shma_disconnect(&c);
	return ret;
}

/* Child: connect, open the array (untimed), sum it. */
static int child_shma(const struct bench *b, struct result *res)
{
	struct shma_array_info info;
	shma_conn *c = NULL;
	shma_array *a;
	int err, ret = -1;

	err = shma_connect(b->h.socket, NULL, &c);
	if (err)
		return shma_fail(NULL, "shma_connect", err);
	err = shma_open(c, ARRAY_NAME, &a);
	if (err) {
		shma_fail(c, "shma_open", err);
		goto out;
	}
	shma_array_info(a, &info);
	if (info.nbytes != b->size || info.block_size != BLKSIZE) {
		bench_fail("array: %" PRIu64 " bytes in blocks of %zu, want %zu in blocks of %zu",
			   info.nbytes, info.block_size, b->size, BLKSIZE);
		goto out;
	}
	err = shma_vm_install_handler();
	if (err) {
		shma_fail(NULL, "shma_vm_install_handler", err);
		goto out;
	}
	ret = timed_passes(b, "shma", pass_whole, shma_array_data(a), res);
out:
	shma_disconnect(&c); /* closes the array too */
	return ret;
}

/* ---- LMDB ------------------------------------------------------------------------ */

static size_t lmdb_mapsize(const struct bench *b)
{
	/* the values (513 pages of overflow each), the tree, the free list */
	return b->size + b->size / 8 + ((size_t)64 << 20);
}

/* Child: one value per block, filled in place (MDB_RESERVE). */
static int child_lmdb_write(const struct bench *b, struct result *res)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi = 0;
	double t0, t1, t2;
	int rc, ret = -1;

	rc = mdb_env_create(&env);
	if (rc)
		return mdb_fail("mdb_env_create", rc);
	rc = mdb_env_set_mapsize(env, lmdb_mapsize(b));
	if (rc) {
		mdb_fail("mdb_env_set_mapsize", rc);
		goto out;
	}
	rc = mdb_env_open(env, b->lmdb_dir, MDB_NOSYNC, 0600);
	if (rc) {
		mdb_fail("mdb_env_open (write)", rc);
		goto out;
	}
	t0 = bench_now_s();
	for (size_t k = 0; k < b->nblocks; k++) {
		size_t key = k;
		MDB_val kv = { .mv_size = sizeof(key), .mv_data = &key };
		MDB_val dv = { .mv_size = BLKSIZE, .mv_data = NULL };

		if (!txn) {
			rc = mdb_txn_begin(env, NULL, 0, &txn);
			if (rc) {
				mdb_fail("mdb_txn_begin", rc);
				goto out;
			}
			rc = mdb_dbi_open(txn, NULL, MDB_INTEGERKEY, &dbi);
			if (rc) {
				mdb_fail("mdb_dbi_open", rc);
				goto out;
			}
		}
		rc = mdb_put(txn, dbi, &kv, &dv, MDB_APPEND | MDB_RESERVE);
		if (rc) {
			mdb_fail("mdb_put", rc);
			goto out;
		}
		bench_fill(dv.mv_data, k * PER_BLOCK, PER_BLOCK);
		if ((k + 1) % LMDB_BATCH == 0 || k + 1 == b->nblocks) {
			rc = mdb_txn_commit(txn);
			txn = NULL;
			if (rc) {
				mdb_fail("mdb_txn_commit", rc);
				goto out;
			}
		}
	}
	t1 = bench_now_s();
	rc = mdb_env_sync(env, 1);
	t2 = bench_now_s();
	if (rc) {
		mdb_fail("mdb_env_sync", rc);
		goto out;
	}
	res->cold_s = t1 - t0; /* here: writing */
	res->warm_s = t2 - t1; /* here: the sync */
	ret = 0;
out:
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	return ret;
}

struct lmdb_read {
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc; /* first error of a pass */
};

/* A pass: mdb_get each block, sum it where it lies in LMDB's map. */
static double pass_lmdb(const struct bench *b, void *arg)
{
	struct lmdb_read *r = arg;
	double sum = 0;

	for (size_t k = 0; k < b->nblocks; k++) {
		size_t key = k;
		MDB_val kv = { .mv_size = sizeof(key), .mv_data = &key }, dv;
		int rc = mdb_get(r->txn, r->dbi, &kv, &dv);

		if (rc || dv.mv_size != BLKSIZE || (uintptr_t)dv.mv_data % sizeof(double)) {
			if (!r->rc)
				r->rc = rc ? rc : EINVAL;
			return NAN;
		}
		sum += bench_sum_f8(dv.mv_data, PER_BLOCK);
	}
	return sum;
}

static int child_lmdb(const struct bench *b, struct result *res)
{
	struct lmdb_read r = { .txn = NULL };
	MDB_env *env = NULL;
	int rc, ret = -1;

	rc = mdb_env_create(&env);
	if (rc)
		return mdb_fail("mdb_env_create", rc);
	rc = mdb_env_open(env, b->lmdb_dir, MDB_RDONLY, 0600);
	if (rc) {
		mdb_fail("mdb_env_open (read-only)", rc);
		goto out;
	}
	rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &r.txn);
	if (rc) {
		mdb_fail("mdb_txn_begin (read-only)", rc);
		goto out;
	}
	rc = mdb_dbi_open(r.txn, NULL, 0, &r.dbi);
	if (rc) {
		mdb_fail("mdb_dbi_open", rc);
		goto out;
	}
	ret = timed_passes(b, "lmdb", pass_lmdb, &r, res);
	if (r.rc) {
		bench_fail("lmdb: mdb_get: %s (or a value of the wrong size or alignment)",
			   mdb_strerror(r.rc));
		ret = -1;
	}
out:
	if (r.txn)
		mdb_txn_abort(r.txn);
	mdb_env_close(env);
	return ret;
}

/* ---- the Python side ----------------------------------------------------------- */

/* Find SCRIPT in the directories above this binary (build/bench/bench_compare:
 * two levels up; build/clang/bench/...: three). */
static bool find_script(struct bench *b)
{
	char dir[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);

	if (n <= 0)
		return false;
	dir[n] = '\0';
	for (int up = 0; up < 5; up++) {
		char *slash = strrchr(dir, '/');

		if (!slash || slash == dir)
			return false;
		*slash = '\0';
		if ((size_t)snprintf(b->script, sizeof(b->script), "%s/%s", dir, SCRIPT) <
			    sizeof(b->script) &&
		    access(b->script, R_OK) == 0)
			return true;
	}
	return false;
}

/* Read one line from Python (without its newline), waiting at most
 * b->timeout seconds for it. */
static int py_line(struct bench *b, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { .fd = b->py_out, .events = POLLIN };
		int r = poll(&p, 1, (int)b->timeout * 1000);
		ssize_t k;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return bench_sys_fail("poll");
		if (r == 0)
			return bench_fail("the Python side did not answer within %u s", b->timeout);
		k = read(b->py_out, buf + n, 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return bench_sys_fail("read from the Python side");
		if (k == 0)
			return bench_fail("the Python side ended without an answer");
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return 0;
		}
		n++;
	}
	return bench_fail("the Python side's answer is too long");
}

/* Stop the Python side: end of input makes it unlink the segment and exit;
 * it is killed if it does not within 30 s.  The segment is unlinked here in
 * any case.  -1 if it did not end well. */
static int py_stop(struct bench *b)
{
	int status = 0, ret = 0;
	pid_t r;

	if (b->py_pid <= 0)
		return 0;
	close(b->py_in);
	close(b->py_out);
	for (int i = 0; (r = waitpid(b->py_pid, &status, WNOHANG)) == 0; i++) {
		if (i == 300) {
			kill(b->py_pid, SIGKILL);
			while ((r = waitpid(b->py_pid, &status, 0)) < 0 && errno == EINTR)
				;
			break;
		}
		usleep(100 * 1000);
	}
	if (r < 0)
		ret = bench_sys_fail("waitpid (Python side)");
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		ret = bench_fail("the Python side did not end well (status 0x%x)", status);
	if (shm_unlink(b->shm_name) != 0 && errno != ENOENT)
		ret = bench_sys_fail("shm_unlink");
	b->py_pid = -1;
	b->have_py = false;
	return ret;
}

/* Start the Python side and wait until its segment is filled.  A missing
 * interpreter, script or NumPy leaves have_py false with the reason in
 * py_why (returns 0); anything else that goes wrong is an error. */
static int py_start(struct bench *b, double *fill_s)
{
	char mib[32], expect[64], line[512];
	int in[2], out[2];

	snprintf(b->shm_name, sizeof(b->shm_name), "/shma-bench-compare-%d", (int)getpid());
	if (access(b->python, X_OK) != 0) {
		snprintf(b->py_why, sizeof(b->py_why), "%s: %s", b->python, strerror(errno));
		return 0;
	}
	if (!b->script[0] && !find_script(b)) {
		snprintf(b->py_why, sizeof(b->py_why), "%s not found above this binary (-S)",
			 SCRIPT);
		b->script[0] = '\0';
		return 0;
	}
	snprintf(mib, sizeof(mib), "%zu", b->size >> 20);
	snprintf(expect, sizeof(expect), "%.0f", b->expect);
	if (pipe2(in, O_CLOEXEC) != 0)
		return bench_sys_fail("pipe2");
	if (pipe2(out, O_CLOEXEC) != 0) {
		bench_sys_fail("pipe2");
		close(in[0]);
		close(in[1]);
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	b->py_pid = fork();
	if (b->py_pid < 0) {
		bench_sys_fail("fork");
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return -1;
	}
	if (b->py_pid == 0) {
		if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0)
			_exit(127);
		/* the name without its slash: SharedMemory adds it */
		execl(b->python, b->python, b->script, b->shm_name + 1, mib, expect, (char *)NULL);
		fprintf(stderr, "bench_compare: exec %s: %s\n", b->python, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	b->py_in = in[1];
	b->py_out = out[0];
	b->have_py = true; /* until told otherwise: py_stop needs it */
	if (py_line(b, line, sizeof(line)))
		return -1;
	if (strncmp(line, "unavailable ", 12) == 0) {
		snprintf(b->py_why, sizeof(b->py_why), "%.200s (%.80s)", line + 12, b->python);
		return py_stop(b);
	}
	if (sscanf(line, "ready %lf", fill_s) != 1)
		return bench_fail("the Python side: %s", line);
	return 0;
}

/* Ask the Python side for one measurement (cmd: "shm" or "numpy"). */
static int py_measure(struct bench *b, const char *cmd, struct result *res)
{
	char line[512], word[16];
	size_t len = strlen(cmd);

	if (bench_write_full(b->py_in, cmd, len) != 0 || bench_write_full(b->py_in, "\n", 1) != 0)
		return bench_sys_fail("write to the Python side");
	if (py_line(b, line, sizeof(line)))
		return -1;
	if (sscanf(line, "%15s %lf %lf %lf", word, &res->cold_s, &res->warm_s, &res->cold_flt) != 4 ||
	    strcmp(word, cmd) != 0)
		return bench_fail("the Python side: %s", line);
	return 0;
}

/* ---- set-up ------------------------------------------------------------------- */

static int start_broker(struct bench *b)
{
	/* the array, and room for the commit that fills it */
	uint64_t mib = b->size >> 20, pool = 2 * mib;

	if (pool < 256)
		pool = 256;
	if (bench_broker_start(&b->h, pool, pool))
		return -1;
	b->started = true;
	return 0;
}

static int setup(struct bench *b)
{
	struct result r;
	double py_fill = 0;

	if (start_broker(b))
		return -1;
	if (run_child(b, child_shma_fill, "shma fill", &r))
		return -1;
	printf("shma: %zu MiB written in %.2f s, committed in %.2f s\n", b->size >> 20, r.cold_s,
	       r.warm_s);
	if ((size_t)snprintf(b->lmdb_dir, sizeof(b->lmdb_dir), "%s/lmdb", b->h.dir) >=
	    sizeof(b->lmdb_dir))
		return bench_fail("the LMDB directory's path is too long");
	if (mkdir(b->lmdb_dir, 0700) != 0)
		return bench_sys_fail("mkdir (LMDB directory)");
	if (run_child(b, child_lmdb_write, "lmdb write", &r))
		return -1;
	printf("LMDB: %zu MiB written in %.2f s, synced in %.2f s (%s)\n", b->size >> 20,
	       r.cold_s, r.warm_s, b->lmdb_dir);
	if (py_start(b, &py_fill))
		return -1;
	if (b->have_py)
		printf("Python: %zu MiB of shared_memory filled in %.2f s (%s %s)\n",
		       b->size >> 20, py_fill, b->python, b->script);
	else
		printf("Python: left out: %s\n", b->py_why);
	fflush(stdout);
	return 0;
}

/* ---- report ---------------------------------------------------------------------- */

/* Median over rounds of the value at byte offset off of kind k's results. */
static double med(const struct bench *b, struct result *res[K_NR], enum kind k, size_t off)
{
	return bench_median_field(res[k], b->rounds, sizeof(res[k][0]), off);
}

static double gbps(const struct bench *b, double secs)
{
	return (double)b->size / secs / 1e9;
}

static void report(const struct bench *b, struct result *res[K_NR])
{
	static const char *const label[K_NR] = {
		[K_MALLOC] = "malloc'd buffer, C loop (baseline)",
		[K_SHMA] = "shma: shma_open, C loop",
		[K_LMDB] = "LMDB: mdb_get per block, C loop",
		[K_PYSHM] = "Python: shared_memory + np.sum",
		[K_NUMPY] = "NumPy: private array, np.sum",
	};
	double cold[K_NR], warm[K_NR], flt[K_NR];
	int nk = b->have_py ? K_NR : K_PYSHM;

	printf("\nper round, ms (cold / warm):\n%-6s", "round");
	for (int k = 0; k < nk; k++)
		printf(" %17s", kname[k]);
	printf("\n");
	for (size_t r = 0; r < b->rounds; r++) {
		printf("%-6zu", r + 1);
		for (int k = 0; k < nk; k++)
			printf(" %8.1f /%7.1f", res[k][r].cold_s * 1e3, res[k][r].warm_s * 1e3);
		printf("\n");
	}
	for (int k = 0; k < nk; k++) {
		cold[k] = gbps(b, med(b, res, k, offsetof(struct result, cold_s)));
		warm[k] = gbps(b, med(b, res, k, offsetof(struct result, warm_s)));
		flt[k] = med(b, res, k, offsetof(struct result, cold_flt));
	}

	printf("\nmedian of %zu rounds, %zu MiB of <f8; GB/s = 1e9 bytes/s; cold: a fresh "
	       "process's first sum, warm: the fastest of %d after it; ratios to the malloc "
	       "baseline:\n",
	       b->rounds, b->size >> 20, WARM_PASSES);
	printf("%-36s %10s %8s %10s %8s %12s\n", "reader", "cold GB/s", "ratio", "warm GB/s",
	       "ratio", "cold minflt");
	for (int k = 0; k < nk; k++)
		printf("%-36s %10.2f %8.2f %10.2f %8.2f %12.0f\n", label[k], cold[k],
		       cold[k] / cold[K_MALLOC], warm[k], warm[k] / warm[K_MALLOC], flt[k]);
	printf("shma / LMDB:                                    %8.2f            %8.2f\n",
	       cold[K_SHMA] / cold[K_LMDB], warm[K_SHMA] / warm[K_LMDB]);
	if (b->have_py) {
		printf("shma / Python shared_memory:                    %8.2f            %8.2f\n",
		       cold[K_SHMA] / cold[K_PYSHM], warm[K_SHMA] / warm[K_PYSHM]);
		printf("Python shared_memory / NumPy private:           %8.2f            %8.2f\n",
		       cold[K_PYSHM] / cold[K_NUMPY], warm[K_PYSHM] / warm[K_NUMPY]);
	} else {
		printf("(Python figures left out: %s)\n", b->py_why);
	}

	/* the same figures, for the report (bench/run.sh): information, no goals */
	bench_report("compare", "cold read: shma vs malloc'd buffer", "GB/s", cold[K_SHMA],
		     cold[K_MALLOC], 0, 0);
	bench_report("compare", "warm read: shma vs malloc'd buffer", "GB/s", warm[K_SHMA],
		     warm[K_MALLOC], 0, 0);
	bench_report("compare", "cold read: LMDB mdb_get vs malloc'd buffer", "GB/s",
		     cold[K_LMDB], cold[K_MALLOC], 0, 0);
	bench_report("compare", "warm read: LMDB mdb_get vs malloc'd buffer", "GB/s",
		     warm[K_LMDB], warm[K_MALLOC], 0, 0);
	bench_report("compare", "cold read: shma vs LMDB mdb_get", "GB/s", cold[K_SHMA],
		     cold[K_LMDB], 0, 0);
	bench_report("compare", "warm read: shma vs LMDB mdb_get", "GB/s", warm[K_SHMA],
		     warm[K_LMDB], 0, 0);
	if (!b->have_py)
		return;
	bench_report("compare", "cold read: Python shared_memory + NumPy vs malloc'd buffer",
		     "GB/s", cold[K_PYSHM], cold[K_MALLOC], 0, 0);
	bench_report("compare", "warm read: Python shared_memory + NumPy vs malloc'd buffer",
		     "GB/s", warm[K_PYSHM], warm[K_MALLOC], 0, 0);
	bench_report("compare", "cold read: NumPy private array vs malloc'd buffer", "GB/s",
		     cold[K_NUMPY], cold[K_MALLOC], 0, 0);
	bench_report("compare", "warm read: NumPy private array vs malloc'd buffer", "GB/s",
		     warm[K_NUMPY], warm[K_MALLOC], 0, 0);
	bench_report("compare", "cold read: shma vs Python shared_memory + NumPy", "GB/s",
		     cold[K_SHMA], cold[K_PYSHM], 0, 0);
	bench_report("compare", "warm read: shma vs Python shared_memory + NumPy", "GB/s",
		     warm[K_SHMA], warm[K_PYSHM], 0, 0);
}

/* ---- main ------------------------------------------------------------------------ */

static int measure(struct bench *b, enum kind k, struct result *res)
{
	switch (k) {
	case K_MALLOC:
		return run_child(b, child_malloc, kname[k], res);
	case K_SHMA:
		return run_child(b, child_shma, kname[k], res);
	case K_LMDB:
		return run_child(b, child_lmdb, kname[k], res);
	case K_PYSHM:
		return py_measure(b, "shm", res);
	case K_NUMPY:
		return py_measure(b, "numpy", res);
	case K_NR:
		break;
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct bench b = { .rounds = DEF_ROUNDS, .python = DEF_PYTHON, .py_pid = -1,
			   .py_in = -1, .py_out = -1 };
	struct result *res[K_NR] = { NULL };
	size_t mib = DEF_SIZE_MIB;
	int opt, ret = 1;

	bench_set_name("bench_compare");
	while ((opt = getopt(argc, argv, "r:s:P:S:h")) != -1) {
		switch (opt) {
		case 'r':
			if (!bench_parse_count(optarg, 10, 1000, &b.rounds))
				goto bad_args;
			break;
		case 's':
			if (!bench_parse_count(optarg, 10, MAX_SIZE_MIB, &mib) || mib % 2)
				goto bad_args;
			break;
		case 'P':
			b.python = optarg;
			break;
		case 'S':
			if (strlen(optarg) >= sizeof(b.script))
				goto bad_args;
			strcpy(b.script, optarg);
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

	printf("bench_compare: %zu MiB of <f8 in %zu blocks of %zu KiB, %zu rounds\n", mib,
	       b.nblocks, BLKSIZE >> 10, b.rounds);
	fflush(stdout);
	for (int k = 0; k < K_NR; k++) {
		res[k] = calloc(b.rounds, sizeof(*res[k]));
		if (!res[k]) {
			bench_sys_fail("calloc");
			goto out;
		}
	}
	if (setup(&b))
		goto out;
	for (size_t r = 0; r < b.rounds; r++) {
		for (int i = 0; i < K_NR; i++) {
			enum kind k = r % 2 ? K_NR - 1 - i : i;

			if ((k == K_PYSHM || k == K_NUMPY) && !b.have_py)
				continue;
			if (measure(&b, k, &res[k][r]))
				goto out;
		}
		printf("round %zu done\n", r + 1);
		fflush(stdout);
	}
	report(&b, res);
	ret = 0;
out:
	if (py_stop(&b))
		ret = 1;
	if (b.started && bench_broker_stop(&b.h)) /* removes the LMDB files too */
		ret = -1;
	for (int k = 0; k < K_NR; k++)
		free(res[k]);
	return ret ? 1 : 0;

bad_args:
	usage(stderr);
	return 2;
}
