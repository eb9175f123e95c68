/* bench_store.c - the broker's durable store: group commit, bytes written per
 * commit, and the store's size after small changes to a big array.
 *
 *   bench_store [-t SECONDS] [-n COMMITS] [-c CHANGES]
 *
 * Every part starts a real broker (tests/lib/harness) on a temporary
 * directory under $TMPDIR (default /tmp), with 2 MiB blocks, a 2 GiB pool and
 * its durable store (LMDB) in <dir>/data.  The filesystem of that directory is
 * printed; on a memory filesystem (tmpfs, ramfs) fsync costs nothing, and the
 * output says so loudly.  Clients use libshm, each in a fork()ed process of
 * its own; this process only starts brokers and talks the raw protocol, so
 * every client starts from a clean libshm.
 *
 * (1) Group commit.  An array of 8 blocks of <f8.  Each committer changes one
 *     page of its own block (no conflicts) and calls shma_commit, in a loop,
 *     for SECONDS (default 3): 1 committer, then 8 at once, each run on a
 *     fresh broker.  Counted are the commits acknowledged before the
 *     deadline.  With "durability": "sync" (the figure), "async" and
 *     "data_dir": false (information).  Retention is 16 revisions and 0
 *     seconds here: every commit gives its block a new 2 MiB pool slot, and
 *     the default 60 s would keep thousands of them.  Reported: aggregate
 *     commits/s; the latency of one commit (median, p99); commits per LMDB
 *     write transaction (read from the store after the broker stopped), which
 *     with sync is commits per sync: the group size; the CPU time of the
 *     broker and of the clients, and the machine's idle time, which tell
 *     whether the disk or the CPUs set the pace.  After its loop every
 *     committer reads back what it committed (its mapping then shows the
 *     broker's slot).
 *     Goal (from the issue): with sync, 8 committers >= 4 x 1 committer.
 *     Information beside it: memory only with 8 committers is a ceiling for
 *     sync with 8 (the same commit path without the store), printed against
 *     sync with 1; and the same two sync runs on an array of 64 KiB blocks.
 *     (A 1-page commit writes into a fresh pool slot and copies the rest of
 *     its block there, 2 MiB of memcpy with 2 MiB blocks, unless the block
 *     has a spare slot: then only the pages changed since that slot's
 *     version, see docs/PROTOCOL.md, section 10.6.)
 *
 * (1b) Group commit on a slower disk.  First what one sync costs on the data
 *     directories' filesystem, as LMDB commits: a 4 KiB write and fdatasync,
 *     and that followed by a 4 KiB write through a descriptor opened O_DSYNC
 *     (LMDB's meta page), each a mean over SYNC_ROUNDS.  Then the sync runs
 *     of (1), 1 and 8 committers, again for each delay of -d (default
 *     100,300 us), with bench/sync_delay.so preloaded into the broker: it
 *     sleeps that long before each of the broker's syncs (fsync, fdatasync,
 *     a write to an O_DSYNC descriptor), as a disk whose syncs are slower.
 *     Information: group commit shares syncs, so its gain depends on what a
 *     sync costs against the broker's work per commit (docs/STORE.md).  A 0
 *     in the list runs with the library and no sleep: the library's own
 *     cost, against the sync runs of (1).
 *
 * (2) Bytes per commit.  A fresh sync broker (default retention); one client
 *     makes COMMITS (default 200) 1-page commits, one after the other.  Per
 *     commit: the broker's write_bytes (page-cache pages it dirtied: what it
 *     sends towards the disk, in 4 KiB units) and wchar (every byte it wrote,
 *     socket replies and invalidations included) from /proc/PID/io; the
 *     growth of data.mdb; the sectors written to the data directory's device
 *     (the whole device: the filesystem's journal too, and anything else
 *     running on the machine).  Information, against the 4096 bytes changed.
 *
 * (3) Store size.  A 512 MiB <f8 array (256 blocks), sync, once with the
 *     default retention (16 revisions, 60 s: the whole run's history is kept)
 *     and once with 1 revision and 0 s (compaction drops old page versions):
 *       sparse   created (all holes), then CHANGES (default 500) commits of
 *                one element each, every one in another page, spread over the
 *                blocks;
 *       appends  created and filled (every page non-zero, one commit), then
 *                CHANGES commits that each append 256 elements (2 KiB).
 *     Reported: data.mdb's growth over the CHANGES commits; and, read with
 *     LMDB after the broker stopped, the pages it uses (the file keeps freed
 *     pages for reuse): (last page + 1 - free pages) x page size, and its
 *     block records.  Published for comparison (wendelin.core on ZODB): 500
 *     small appends to a 512 MiB array cost 16 MiB with chunks (ZBlk1) and
 *     513 MiB with whole blocks (ZBlk0).
 *     Goal (from the issue): growth <= 16 MiB, with the default retention.
 *
 * About 50 s with the defaults.  A missed goal is reported, not an error: the
 * exit status is 0 unless something failed (1), or the arguments were bad
 * (2).  Brokers and clients are stopped and reaped, temporary directories
 * removed, on every path.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <lmdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_report.h"
#include "common.h"
#include "harness.h"
#include "shma.h"

#define BENCH "store"
#define BLKSIZE ((size_t)2 << 20)
#define PAGE 4096
#define PER_PAGE (PAGE / 8)		    /* <f8 elements per page */
#define PER_BLOCK (BLKSIZE / 8)		    /* per block */
#define PAGES_PER_BLOCK (BLKSIZE / PAGE)
#define NCOMMITTERS 8
#define MAX_LAT (1u << 18)		    /* latencies kept per committer */
#define SMALL_BLKSIZE ((size_t)64 << 10) /* information: group commit, less to copy */
#define BIG_BYTES ((uint64_t)512 << 20)	    /* the array of part 3 */
#define BIG_ELEMS (BIG_BYTES / 8)
#define BIG_BLOCKS (BIG_BYTES / BLKSIZE)
#define APPEND_ELEMS 256		    /* 2 KiB per append */
#define DEF_SECONDS 3.0
#define DEF_COMMITS 200
#define DEF_CHANGES 500
#define MAX_COUNT 100000
#define CHILD_TIMEOUT_S 300		    /* a client that hangs longer dies */
#define READY_TIMEOUT_MS 60000
#define GOAL_GROUP 4.0
#define MAX_DELAYS 4			    /* -d: at most this many */
#define MAX_DELAY_US 100000
#define DEF_DELAYS "100,300"
#define SYNC_ROUNDS 500			    /* (1b): syncs timed per figure */
#define SYNC_FILE_PAGES 64
#define PRELOAD "sync_delay.so"		    /* next to this program */
#define GOAL_GROWTH_MIB 16.0
#define ZBLK1_MIB 16.0			    /* published: chunks */
#define ZBLK0_MIB 513.0			    /* published: whole blocks */
#define MIB (1024.0 * 1024.0)
#define RATE_ARRAY "rate"
#define POOL "2GiB"
#define RET_DEFAULT "{\"revisions\":16,\"seconds\":60}"
#define RET_ONE "{\"revisions\":1,\"seconds\":0}"
#define RET_RATE "{\"revisions\":16,\"seconds\":0}"

/* What one client process reports, in memory shared with this one. */
struct wres {
	int err;	    /* 0, or the code of the first failure */
	char msg[256];	    /* what failed */
	uint64_t commits;   /* acknowledged before the deadline (or all, by count) */
	uint64_t made;	    /* all its commits: the first one and late ones too */
	uint64_t nlat;	    /* latencies kept in lat_ns */
	bool have_io, have_dev;
	struct bench_io io0, io1; /* by count: the broker's, around the loop */
	int64_t mdb0, mdb1;  /* data.mdb's size around it */
	uint64_t dev0, dev1; /* sectors written on the data's device */
	uint64_t lat_ns[MAX_LAT];
};

/* What the client of part 3 reports. */
struct gres {
	int err;
	char msg[256];
	int64_t size0, size1; /* data.mdb before and after the CHANGES commits */
	double fill_s;	      /* appends: the commit of all 512 MiB */
	double changes_s;     /* the CHANGES commits */
	uint64_t pages_sent;  /* by the CHANGES commits */
};

struct shared {
	uint64_t deadline_ns; /* of a timed run, set before "go"; 0: quit */
	struct gres g;
	struct wres w[NCOMMITTERS];
};

/* What a client process does. */
struct job {
	const char *socket;
	const char *mdb;   /* data.mdb, or NULL */
	pid_t broker;	   /* > 0: read its /proc/PID/io around the loop */
	dev_t dev;	   /* the data's device, if have_dev */
	bool have_dev;
	size_t blksize;	   /* of the array */
	uint64_t blk;	   /* the block this client changes */
	uint64_t count;	   /* commits to make; 0: until the deadline */
	unsigned salt;	   /* makes every run's values new */
};

/* What LMDB says of a stopped broker's store. */
struct lmdb_facts {
	bool ok;
	uint64_t used;	     /* bytes of pages in use: (last page + 1 - free) x page size */
	uint64_t free_bytes; /* of free pages kept for reuse */
	uint64_t records;    /* entries of the blocks database */
	uint64_t txns;	     /* write transactions ever committed */
};

/* Part 1: one run. */
struct rate {
	double per_s; /* aggregate, acknowledged commits per second */
	uint64_t commits, made;
	double med_us, p99_us;
	double broker_pct;  /* the broker's CPU time over the run, % of one CPU */
	double clients_pct; /* the clients' (whole life) */
	double idle_pct;    /* the machine's idle (and I/O wait) time, % of all CPUs */
	double per_txn;	    /* commits per store transaction: the group size */
};

/* Part 3: one variant. */
struct growth {
	bool appends, ret_one;
	struct gres g;
	struct lmdb_facts lm;
};

struct bench {
	double seconds;
	size_t commits, changes;
	struct shared *sh;
	struct harness h;
	bool started;
	char mdb[400];	/* data.mdb of the running broker */
	char kept[300]; /* a directory holding a link to a stopped broker's data.mdb */
	char fstype[64], fsdev[128];
	bool memfs, have_dev;
	dev_t dev;
	struct rate rates[4][2]; /* sync, async, memory, sync 64 KiB x 1, 8 committers */
	long delays[MAX_DELAYS]; /* (1b): us added to each sync */
	size_t ndelays;
	long delay_us;		/* the next broker's, or -1: none (no preload) */
	char preload[PATH_MAX]; /* sync_delay.so */
	double clients_cpu_s;	 /* of the clients reaped so far */
	struct growth grow[4];
};

enum { MODE_SYNC, MODE_ASYNC, MODE_MEMORY, MODE_SMALL /* sync, small blocks */ };
static const char *const mode_name[3] = { "sync", "async", "memory" };

/* ---- what the system says ---------------------------------------------------- */

/* Sectors (512 bytes) written to block device dev so far. */
static bool dev_written(dev_t dev, uint64_t *out)
{
	char path[96];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/stat", major(dev), minor(dev));
	f = fopen(path, "re");
	if (!f)
		return false;
	n = fscanf(f, "%*u %*u %*u %*u %*u %*u %" SCNu64, out);
	fclose(f);
	return n == 1;
}

static int64_t file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* A mount point of /proc/self/mountinfo, octal escapes undone in place. */
static void unescape(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = 0;
}

/* The filesystem that holds dir: its type and source from the mount with the
 * longest mount point above dir; whether it is a memory filesystem; its
 * device. */
static void find_fs(struct bench *b, const char *dir)
{
	char real[PATH_MAX], line[4096];
	size_t best = 0;
	struct statfs sf;
	struct stat sb;
	FILE *f;

	snprintf(b->fstype, sizeof(b->fstype), "unknown");
	snprintf(b->fsdev, sizeof(b->fsdev), "?");
	if (!realpath(dir, real))
		snprintf(real, sizeof(real), "%s", dir);
	f = fopen("/proc/self/mountinfo", "re");
	while (f && fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok, *mnt = NULL, *type = NULL, *src = NULL;
		int i = 0;
		size_t len;

		for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
			if (i == 4)
				mnt = tok;
			if (i >= 6 && !type && !strcmp(tok, "-")) {
				type = strtok_r(NULL, " \n", &save);
				src = type ? strtok_r(NULL, " \n", &save) : NULL;
				break;
			}
			i++;
		}
		if (!mnt || !type)
			continue;
		unescape(mnt);
		len = strlen(mnt);
		if (strncmp(real, mnt, len) != 0 ||
		    (len > 1 && real[len] != '/' && real[len] != 0))
			continue;
		if (len >= best) {
			best = len;
			snprintf(b->fstype, sizeof(b->fstype), "%s", type);
			snprintf(b->fsdev, sizeof(b->fsdev), "%s", src ? src : "?");
		}
	}
	if (f)
		fclose(f);
	b->memfs = statfs(dir, &sf) == 0 &&
		   (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC);
	if (b->memfs && !strcmp(b->fstype, "unknown"))
		snprintf(b->fstype, sizeof(b->fstype), "tmpfs");
	b->have_dev = false;
	if (stat(dir, &sb) == 0) {
		uint64_t x;

		b->dev = sb.st_dev;
		b->have_dev = dev_written(sb.st_dev, &x);
	}
}

/* Where the brokers' directories, and this program's, go. */
static const char *tmp_dir(void)
{
	return getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
}

/* ---- brokers ----------------------------------------------------------------- */

/* harness_start, with sync_delay.so preloaded into the broker when
 * b->delay_us >= 0: the broker inherits the environment, set only for its
 * start (the committers are fork()ed, never exec()ed). */
static int preload_start(struct bench *b, const char *cfg)
{
	const char *old = getenv("LD_PRELOAD");
	char *saved, us[24], list[PATH_MAX + 256];
	int err;

	if (b->delay_us < 0)
		return harness_start(&b->h, cfg);
	saved = old ? strdup(old) : NULL;
	if (old && !saved)
		return -ENOMEM;
	snprintf(us, sizeof(us), "%ld", b->delay_us);
	if ((size_t)snprintf(list, sizeof(list), "%s%s%s", b->preload, old ? ":" : "",
			     old ? old : "") >= sizeof(list)) {
		free(saved);
		return -ENAMETOOLONG;
	}
	if (setenv("LD_PRELOAD", list, 1) != 0 || setenv("SHMA_SYNC_DELAY_US", us, 1) != 0)
		err = -errno;
	else
		err = harness_start(&b->h, cfg);
	unsetenv("SHMA_SYNC_DELAY_US");
	if (saved)
		setenv("LD_PRELOAD", saved, 1);
	else
		unsetenv("LD_PRELOAD");
	free(saved);
	return err;
}

/* Start a broker: mode "sync", "async" or "memory" (data_dir false). */
static int broker_up(struct bench *b, const char *mode, const char *retention)
{
	char cfg[512];
	int err;

	if (!strcmp(mode, "memory"))
		snprintf(cfg, sizeof(cfg),
			 "{\"pool_size\":\"" POOL "\",\"block_size\":\"2MiB\","
			 "\"log_level\":\"info\",\"retention\":%s,\"data_dir\":false}",
			 retention);
	else
		snprintf(cfg, sizeof(cfg),
			 "{\"pool_size\":\"" POOL "\",\"block_size\":\"2MiB\","
			 "\"log_level\":\"info\",\"retention\":%s,\"durability\":\"%s\"}",
			 retention, mode);
	err = preload_start(b, cfg);
	if (err) {
		harness_cleanup(&b->h);
		return bench_err_fail("harness_start", err);
	}
	b->started = true;
	snprintf(b->mdb, sizeof(b->mdb), "%s/data/data.mdb", b->h.dir);
	return 0;
}

static int broker_down(struct bench *b)
{
	bool socket_left = false;
	int st;

	if (!b->started)
		return 0;
	b->started = false;
	st = harness_stop(&b->h, &socket_left);
	if (st != 0)
		return bench_fail("the broker did not stop cleanly (status %d)", st);
	if (socket_left)
		return bench_fail("the broker left its socket behind");
	return 0;
}

/* Create a 1-d <f8 array of elems elements in blocks of blksize bytes (raw
 * protocol). */
static int create_array(struct bench *b, const char *name, uint64_t elems, size_t blksize)
{
	struct tclient c = { .fd = -1, .pool_fd = -1 };
	json_t *r;
	int err, ret = 0;

	err = tclient_open(&c, b->h.socket);
	if (err)
		return bench_err_fail("connect to the broker", err);
	r = tclient_call(&c, NULL, 0, NULL, NULL,
			 "{\"op\":\"create\",\"name\":\"%s\",\"dtype\":\"<f8\",\"shape\":[%" PRIu64
			 "],\"block_size\":%zu}", name, elems, blksize);
	if (!reply_ok(r))
		ret = bench_fail("create %s: %s (log: %s)", name, r ? reply_code(r) : "no reply",
				 b->h.log);
	json_decref(r);
	tclient_close(&c);
	return ret;
}

/* Keep the stopping broker's data.mdb: a hard link in a directory of ours,
 * for reading with LMDB once the broker is gone (which removes its own). */
static int keep_store(struct bench *b)
{
	const char *tmp = tmp_dir();
	char path[400];

	snprintf(b->kept, sizeof(b->kept), "%s/bench_store-XXXXXX", tmp);
	if (!mkdtemp(b->kept)) {
		b->kept[0] = 0;
		return bench_sys_fail("mkdtemp");
	}
	snprintf(path, sizeof(path), "%s/data.mdb", b->kept);
	if (link(b->mdb, path) != 0)
		return bench_fail("link %s: %s", b->mdb, strerror(errno));
	return 0;
}

static void drop_kept(struct bench *b)
{
	char path[400];

	if (!b->kept[0])
		return;
	snprintf(path, sizeof(path), "%s/data.mdb", b->kept);
	if (unlink(path) != 0 && errno != ENOENT)
		bench_fail("unlink %s: %s", path, strerror(errno));
	if (rmdir(b->kept) != 0)
		bench_fail("rmdir %s: %s", b->kept, strerror(errno));
	b->kept[0] = 0;
}

/* What LMDB says of a store no one has open (path: its data.mdb). */
static int lmdb_read(const char *path, struct lmdb_facts *lf)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_envinfo ei;
	MDB_stat st, bst;
	MDB_val k, v;
	MDB_dbi dbi;
	uint64_t nfree = 0;
	int rc;

	rc = mdb_env_create(&env);
	if (!rc)
		rc = mdb_env_set_maxdbs(env, 8);
	if (!rc)
		rc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK, 0);
	if (!rc)
		rc = mdb_env_info(env, &ei);
	if (!rc)
		rc = mdb_env_stat(env, &st);
	if (!rc)
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	/* the free list is database 0: each value, a count then page numbers */
	if (!rc)
		rc = mdb_cursor_open(txn, 0, &cur);
	while (!rc && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		size_t n;

		if (v.mv_size < sizeof(n)) {
			rc = MDB_CORRUPTED;
			break;
		}
		memcpy(&n, v.mv_data, sizeof(n));
		nfree += n;
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (cur)
		mdb_cursor_close(cur);
	if (!rc)
		rc = mdb_dbi_open(txn, "blocks", 0, &dbi);
	if (!rc)
		rc = mdb_stat(txn, dbi, &bst);
	if (!rc) {
		lf->ok = true;
		lf->used = ((uint64_t)ei.me_last_pgno + 1 - nfree) * st.ms_psize;
		lf->free_bytes = nfree * st.ms_psize;
		lf->records = bst.ms_entries;
		lf->txns = ei.me_last_txnid;
	}
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	return rc ? bench_fail("LMDB on %s: %s", path, mdb_strerror(rc)) : 0;
}

/* Stop the broker and read its store with LMDB (if LMDB cannot tell, only
 * lf->ok is false: not a failure). */
static int broker_down_read(struct bench *b, struct lmdb_facts *lf)
{
	char path[400];

	memset(lf, 0, sizeof(*lf));
	if (keep_store(b) || broker_down(b))
		return -1;
	snprintf(path, sizeof(path), "%s/data.mdb", b->kept);
	(void)lmdb_read(path, lf);
	drop_kept(b);
	return 0;
}

/* ---- the client processes ---------------------------------------------------- */

static void wfail(int *errp, char *msg, size_t len, int err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void wfail(int *errp, char *msg, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	if (*errp)
		return;
	*errp = err ? err : -EIO;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
}

#define WFAIL(res, code, ...) wfail(&(res)->err, (res)->msg, sizeof((res)->msg), code, __VA_ARGS__)

/* Commit i of a client on block blk (of blksize bytes): one element of one
 * page, a value no earlier commit of the run wrote there.  Positions repeat
 * after repeat_after(blksize) commits. */
static uint64_t change_pos(size_t blksize, uint64_t blk, uint64_t i)
{
	uint64_t pages = blksize / PAGE;

	return blk * (blksize / 8) + (i % pages) * PER_PAGE + (i / pages) % PER_PAGE;
}

static uint64_t repeat_after(size_t blksize)
{
	return blksize / PAGE * PER_PAGE;
}

static double change_val(unsigned salt, uint64_t i)
{
	return (double)salt * 1e7 + (double)i + 0.5;
}

/* A client of parts 1 and 2: connect, open, one untimed commit, say ready,
 * wait for go, then commit 1-page changes until the deadline (or count of
 * them), and check they are what the broker now holds. */
static void commit_loop(const struct job *j, struct shared *sh, struct wres *w, int ready_fd,
			int go_fd)
{
	shma_conn *c = NULL;
	shma_array *a = NULL;
	uint64_t i, top = 0; /* the last commit made */
	double *d;
	char go;
	int err;

	err = shma_connect(j->socket, NULL, &c);
	if (err) {
		WFAIL(w, err, "shma_connect: %s (%s)", shma_strerror(err), shma_last_error());
		goto out;
	}
	err = shma_open(c, RATE_ARRAY, &a);
	if (err) {
		WFAIL(w, err, "shma_open: %s (%s)", shma_strerror(err), shma_conn_error(c));
		goto out;
	}
	d = shma_array_data(a);
	/* the first commit maps the block and makes the commit's data file */
	d[change_pos(j->blksize, j->blk, 0)] = change_val(j->salt, 0);
	err = shma_commit(c, NULL);
	if (err) {
		WFAIL(w, err, "first commit: %s (%s)", shma_strerror(err), shma_conn_error(c));
		goto out;
	}
	w->made++;
	if (write(ready_fd, "r", 1) != 1) {
		WFAIL(w, -errno, "write ready: %s", strerror(errno));
		goto out;
	}
	if (read(go_fd, &go, 1) != 0 || !sh->deadline_ns)
		goto out; /* called off */
	if (j->broker > 0)
		w->have_io = bench_proc_io(j->broker, &w->io0);
	if (j->mdb)
		w->mdb0 = file_size(j->mdb);
	if (j->have_dev)
		w->have_dev = dev_written(j->dev, &w->dev0);
	for (i = 1; !j->count || w->commits < j->count; i++) {
		uint64_t t0 = bench_now_ns(), t1;

		if (!j->count && t0 >= sh->deadline_ns)
			break;
		d[change_pos(j->blksize, j->blk, i)] = change_val(j->salt, i);
		err = shma_commit(c, NULL);
		t1 = bench_now_ns();
		w->made += !err;
		if (err == SHMA_ECONFLICT) {
			WFAIL(w, err, "commit %" PRIu64 ": a conflict, though no other client "
			      "changes block %" PRIu64 " (%s)", i, j->blk, shma_conn_error(c));
			goto out;
		}
		if (err) {
			WFAIL(w, err, "commit %" PRIu64 ": %s (%s)", i, shma_strerror(err),
			      shma_conn_error(c));
			goto out;
		}
		top = i;
		if (!j->count && t1 > sh->deadline_ns)
			break; /* made, but after the deadline: not counted */
		if (w->nlat < MAX_LAT)
			w->lat_ns[w->nlat++] = t1 - t0;
		w->commits++;
	}
	if (j->broker > 0)
		w->have_io = w->have_io && bench_proc_io(j->broker, &w->io1);
	if (j->mdb)
		w->mdb1 = file_size(j->mdb);
	if (j->have_dev)
		w->have_dev = w->have_dev && dev_written(j->dev, &w->dev1);
	/* every change committed is in the block the broker holds now (the
	 * newest ones: older ones' elements were written again; the one made
	 * after the deadline counts here) */
	for (i = top > repeat_after(j->blksize) ? top - repeat_after(j->blksize) + 1 : 1;
	     i <= top; i++) {
		double got = d[change_pos(j->blksize, j->blk, i)];

		if (got != change_val(j->salt, i)) {
			WFAIL(w, -EIO, "block %" PRIu64 ": commit %" PRIu64 " of %" PRIu64
			      " is not in the committed data (%g, want %g)", j->blk, i, top, got,
			      change_val(j->salt, i));
			break;
		}
	}
out:
	shma_close(&a);
	shma_disconnect(&c);
}

/* Element k's position in the sparse variant: another page for every k
 * (up to 512 of them), over all blocks. */
static uint64_t sparse_pos(uint64_t k)
{
	return (k * 97 % BIG_BLOCKS) * PER_BLOCK + ((k * 131 + 7) % PAGES_PER_BLOCK) * PER_PAGE +
	       k % PER_PAGE;
}

/* The client of part 3. */
static void grow_main(const struct bench *b, bool appends, struct gres *g)
{
	struct shma_conn_options opts = { .ram_limit = (size_t)1 << 30 };
	const char *name = appends ? "appends" : "sparse";
	struct shma_conn_stats st0, st1;
	struct shma_array_info info;
	uint64_t n = BIG_ELEMS, rev, t0, first;
	shma_conn *c = NULL;
	shma_array *a = NULL;
	double *d;
	int err;

	err = shma_connect(b->h.socket, &opts, &c);
	if (err) {
		WFAIL(g, err, "shma_connect: %s (%s)", shma_strerror(err), shma_last_error());
		goto out;
	}
	err = shma_create(c, name, "<f8", 1, &n, 'C', BLKSIZE, &rev);
	if (!err)
		err = shma_sync_to(c, rev);
	if (!err)
		err = shma_open(c, name, &a);
	if (err) {
		WFAIL(g, err, "create %s: %s (%s)", name, shma_strerror(err), shma_conn_error(c));
		goto out;
	}
	d = shma_array_data(a);
	if (appends) {
		t0 = bench_now_ns();
		for (uint64_t i = 0; i < BIG_ELEMS; i++)
			d[i] = (double)i + 1;
		err = shma_commit(c, NULL);
		g->fill_s = (double)(bench_now_ns() - t0) / 1e9;
		if (err) {
			WFAIL(g, err, "commit of 512 MiB: %s (%s)", shma_strerror(err),
			      shma_conn_error(c));
			goto out;
		}
	}
	g->size0 = file_size(b->mdb);
	shma_conn_stats(c, &st0);
	t0 = bench_now_ns();
	for (uint64_t k = 0; k < b->changes; k++) {
		if (appends) {
			void *rows;

			err = shma_append(a, APPEND_ELEMS, &rows);
			if (err) {
				WFAIL(g, err, "append %" PRIu64 ": %s (%s)", k, shma_strerror(err),
				      shma_conn_error(c));
				goto out;
			}
			for (uint64_t j = 0; j < APPEND_ELEMS; j++)
				((double *)rows)[j] =
					(double)(BIG_ELEMS + k * APPEND_ELEMS + j) + 1;
		} else {
			d[sparse_pos(k)] = (double)k + 1;
		}
		err = shma_commit(c, NULL);
		if (err) {
			WFAIL(g, err, "commit %" PRIu64 ": %s (%s)", k, shma_strerror(err),
			      shma_conn_error(c));
			goto out;
		}
	}
	g->changes_s = (double)(bench_now_ns() - t0) / 1e9;
	g->size1 = file_size(b->mdb);
	shma_conn_stats(c, &st1);
	g->pages_sent = st1.pages_sent - st0.pages_sent;

	/* what was committed is what the broker holds */
	d = shma_array_data(a);
	shma_array_info(a, &info);
	if (appends) {
		uint64_t want = BIG_ELEMS + b->changes * APPEND_ELEMS;

		if (info.shape[0] != want) {
			WFAIL(g, -EIO, "%s has %" PRIu64 " elements, want %" PRIu64, name,
			      info.shape[0], want);
			goto out;
		}
		/* a sample of the fill, then every element appended */
		for (uint64_t i = 0; i < want; i++) {
			if (i < BIG_ELEMS && i % 4099)
				continue;
			if (d[i] != (double)i + 1) {
				WFAIL(g, -EIO, "%s[%" PRIu64 "] = %g, want %g", name, i, d[i],
				      (double)i + 1);
				goto out;
			}
		}
	} else {
		first = b->changes > PAGES_PER_BLOCK ? b->changes - PAGES_PER_BLOCK : 0;
		for (uint64_t k = first; k < b->changes; k++) {
			if (d[sparse_pos(k)] != (double)k + 1) {
				WFAIL(g, -EIO, "%s: change %" PRIu64 " is not in the committed "
				      "data", name, k);
				goto out;
			}
		}
	}
out:
	shma_close(&a);
	shma_disconnect(&c);
}

/* ---- running clients --------------------------------------------------------- */

/* Reap pid (its CPU time is added to the clients'); its exit status, or
 * -1 if it did not exit normally. */
static int reap(struct bench *b, pid_t pid)
{
	struct rusage ru;
	int st;

	while (wait4(pid, &st, 0, &ru) < 0) {
		if (errno != EINTR)
			return -1;
	}
	b->clients_cpu_s += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	if (WIFSIGNALED(st)) {
		bench_fail("client %d died of signal %d%s", (int)pid, WTERMSIG(st),
			   WTERMSIG(st) == SIGALRM ? " (it hung)" : "");
		return -1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run n clients of job at once, on blocks 0 .. n-1, for seconds (job->count
 * 0) or count commits each; their results in sh->w[0 .. n). */
static int run_clients(struct bench *b, const struct job *job, unsigned n, double seconds)
{
	pid_t pids[NCOMMITTERS];
	int ready[2] = { -1, -1 }, go[2] = { -1, -1 }, ret = -1;
	unsigned started = 0, nready = 0;

	for (unsigned k = 0; k < n; k++)
		memset(&b->sh->w[k], 0, offsetof(struct wres, lat_ns));
	b->sh->deadline_ns = 0;
	if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
		bench_sys_fail("pipe2");
		goto out;
	}
	fflush(stdout);
	fflush(stderr);
	for (; started < n; started++) {
		pid_t pid = fork();

		if (pid < 0) {
			bench_sys_fail("fork");
			goto out;
		}
		if (pid == 0) {
			struct job mine = *job;

			close(ready[0]);
			close(go[1]);
			alarm(CHILD_TIMEOUT_S);
			mine.blk = started;
			commit_loop(&mine, b->sh, &b->sh->w[started], ready[1], go[0]);
			_exit(b->sh->w[started].err ? 1 : 0);
		}
		pids[started] = pid;
	}
	close(ready[1]);
	ready[1] = -1;
	while (nready < n) {
		struct pollfd pfd = { .fd = ready[0], .events = POLLIN };
		char buf[NCOMMITTERS];
		ssize_t r;

		if (poll(&pfd, 1, READY_TIMEOUT_MS) <= 0) {
			bench_fail("the clients did not get ready");
			goto out;
		}
		r = read(ready[0], buf, sizeof(buf));
		if (r <= 0) {
			bench_fail("a client ended before it was ready");
			goto out;
		}
		nready += (unsigned)r;
	}
	b->sh->deadline_ns = bench_now_ns() + (uint64_t)(seconds * 1e9);
	ret = 0;
out:
	/* go (or, deadline 0, quit) */
	if (go[1] >= 0)
		close(go[1]);
	if (go[0] >= 0)
		close(go[0]);
	if (ready[0] >= 0)
		close(ready[0]);
	if (ready[1] >= 0)
		close(ready[1]);
	for (unsigned k = 0; k < started; k++) {
		int st = reap(b, pids[k]);

		if (st != 0 && ret == 0) {
			if (b->sh->w[k].err)
				bench_fail("client %u: %s", k, b->sh->w[k].msg);
			else
				bench_fail("client %u failed (exit status %d)", k, st);
			ret = -1;
		}
	}
	return ret;
}

/* The p quantile of sorted v[0 .. n), in microseconds. */
static double quantile_us(const uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)n);

	if (!n)
		return 0;
	return (double)v[i < n ? i : n - 1] / 1e3;
}

/* ---- (1) group commit -------------------------------------------------------- */

/* The machine's CPU time so far, in clock ticks: all of it and the idle part
 * (idle and I/O wait). */
static bool machine_cpu(uint64_t *total, uint64_t *idle)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "re");
	int n;

	if (!f)
		return false;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 5)
		return false;
	*total = 0;
	for (int i = 0; i < 8; i++)
		*total += v[i];
	*idle = v[3] + v[4];
	return true;
}

/* One run on a fresh broker: n committers for b->seconds, on an array of
 * blocks of blksize bytes. */
static int rate_run(struct bench *b, int mode, unsigned n, size_t blksize, struct rate *out)
{
	struct job job = { .salt = n, .blksize = blksize };
	struct lmdb_facts lf = { 0 };
	uint64_t tot0 = 0, idle0 = 0, tot1 = 0, idle1 = 0, *lat;
	double cpu0, cpu1, clients0;
	bool have_idle;
	size_t nlat = 0;
	char label[32];

	memset(out, 0, sizeof(*out));
	if (broker_up(b, mode_name[mode], RET_RATE) ||
	    create_array(b, RATE_ARRAY, NCOMMITTERS * blksize / 8, blksize))
		return -1;
	job.socket = b->h.socket;
	clients0 = b->clients_cpu_s;
	cpu0 = bench_proc_cpu_s(b->h.pid);
	have_idle = machine_cpu(&tot0, &idle0);
	if (run_clients(b, &job, n, b->seconds))
		return -1;
	have_idle = have_idle && machine_cpu(&tot1, &idle1) && tot1 > tot0;
	cpu1 = bench_proc_cpu_s(b->h.pid);
	if (mode == MODE_MEMORY ? broker_down(b) : broker_down_read(b, &lf))
		return -1;
	for (unsigned k = 0; k < n; k++) {
		out->commits += b->sh->w[k].commits;
		out->made += b->sh->w[k].made;
		nlat += b->sh->w[k].nlat;
	}
	out->per_s = (double)out->commits / b->seconds;
	out->broker_pct = cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) / b->seconds * 100 : -1;
	out->clients_pct = (b->clients_cpu_s - clients0) / b->seconds * 100;
	out->idle_pct = have_idle ? (double)(idle1 - idle0) / (double)(tot1 - tot0) * 100 : -1;
	/* the store's transactions: one opened it, one created the array, then
	 * one per batch of commits (a compaction alone makes one too) */
	out->per_txn = lf.ok && lf.txns > 2 ? (double)out->made / (double)(lf.txns - 2) : -1;
	lat = malloc((nlat ? nlat : 1) * sizeof(*lat));
	if (!lat)
		return bench_sys_fail("malloc");
	nlat = 0;
	for (unsigned k = 0; k < n; k++) {
		memcpy(lat + nlat, b->sh->w[k].lat_ns, b->sh->w[k].nlat * sizeof(*lat));
		nlat += b->sh->w[k].nlat;
	}
	bench_sort_u64(lat, nlat);
	out->med_us = quantile_us(lat, nlat, 0.5);
	out->p99_us = quantile_us(lat, nlat, 0.99);
	free(lat);
	if (b->delay_us >= 0) /* part 1b: "sync+100" */
		snprintf(label, sizeof(label), "%s+%ld", mode_name[mode], b->delay_us);
	else
		snprintf(label, sizeof(label), "%s", mode_name[mode]);
	printf("%-8s %5zu %4u %8" PRIu64 " %9.0f %9.0f %9.0f", label, blksize >> 10, n,
	       out->commits, out->per_s, out->med_us, out->p99_us);
	if (out->per_txn > 0)
		printf(" %8.2f", out->per_txn);
	else
		printf(" %8s", "-");
	printf(" %7.0f%% %7.0f%% %7.0f%%\n", out->broker_pct, out->clients_pct, out->idle_pct);
	fflush(stdout);
	return 0;
}

/* The head of rate_run's rows. */
static void rate_head(void)
{
	printf("%-8s %5s %4s %8s %9s %9s %9s %8s %8s %8s %8s\n", "mode", "block", "n", "commits",
	       "commits/s", "median", "p99", "commits/", "broker", "clients", "machine");
	printf("%-8s %5s %4s %8s %9s %9s %9s %8s %8s %8s %8s\n", "", "KiB", "", "", "", "us",
	       "us", "txn", "cpu", "cpu", "idle");
}

static void rate_row(const char *what, double v, double base, bool goal)
{
	printf("%-50s %9.0f %9.0f %7.2f %6s  %s\n", what, v, base, v / base, goal ? ">= 4" : "-",
	       !goal ? "(info)" : v / base >= GOAL_GROUP ? "ok" : "MISSED");
}

static int group_commit(struct bench *b)
{
	struct rate (*r)[2] = b->rates;

	printf("\n(1) group commit: each committer changes 1 page of its own block and commits, "
	       "%.1f s per run, a fresh broker for each\n", b->seconds);
	rate_head();
	for (int m = 0; m < 4; m++) {
		size_t bs = m == MODE_SMALL ? SMALL_BLKSIZE : BLKSIZE;
		int mode = m == MODE_SMALL ? MODE_SYNC : m;

		if (rate_run(b, mode, 1, bs, &r[m][0]) ||
		    rate_run(b, mode, NCOMMITTERS, bs, &r[m][1]))
			return -1;
	}
	printf("cpu: %% of one CPU over the run (the clients: their whole lives); idle: %% of the "
	       "machine's %ld CPUs, I/O wait included;\ncommits/txn: commits per LMDB write "
	       "transaction, with sync the commits that shared one sync\n",
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("\n%-50s %9s %9s %7s %6s  %s\n", "figure (commits/s)", "value", "baseline", "ratio",
	       "goal", "result");
	rate_row(b->memfs ? "sync: 8 committers vs 1 (tmpfs!)" : "sync: 8 committers vs 1",
		 r[0][1].per_s, r[0][0].per_s, true);
	rate_row("async: 8 committers vs 1", r[1][1].per_s, r[1][0].per_s, false);
	rate_row("memory only: 8 committers vs 1", r[2][1].per_s, r[2][0].per_s, false);
	rate_row("sync, 64 KiB blocks: 8 committers vs 1", r[3][1].per_s, r[3][0].per_s, false);
	rate_row("memory only, 8 committers vs sync, 1 (a ceiling)", r[2][1].per_s, r[0][0].per_s,
		 false);
	rate_row("sync vs memory only, 8 committers", r[0][1].per_s, r[2][1].per_s, false);
	bench_report(BENCH, b->memfs ? "durable (sync) commits/s, 8 committers vs 1 (tmpfs: fsync "
		     "is free)" : "durable (sync) commits/s, 8 committers vs 1", "commits/s",
		     r[0][1].per_s, r[0][0].per_s, '>', GOAL_GROUP);
	bench_report(BENCH, "async commits/s, 8 committers vs 1", "commits/s", r[1][1].per_s,
		     r[1][0].per_s, 0, 0);
	bench_report(BENCH, "memory-only commits/s, 8 committers vs 1", "commits/s",
		     r[2][1].per_s, r[2][0].per_s, 0, 0);
	bench_report(BENCH, "durable (sync) commits/s with 64 KiB blocks, 8 committers vs 1",
		     "commits/s", r[3][1].per_s, r[3][0].per_s, 0, 0);
	bench_report(BENCH, "memory-only commits/s with 8 committers vs durable with 1 (a ceiling)",
		     "commits/s", r[2][1].per_s, r[0][0].per_s, 0, 0);
	bench_report(BENCH, "durable (sync) commits/s vs memory only, 8 committers", "commits/s",
		     r[0][1].per_s, r[2][1].per_s, 0, 0);
	bench_report(BENCH, "durable (sync) commit latency, 1 committer, median", "us",
		     r[0][0].med_us, NAN, 0, 0);
	bench_report(BENCH, "durable (sync) commit latency, 1 committer, p99", "us",
		     r[0][0].p99_us, NAN, 0, 0);
	if (r[0][1].per_txn > 0)
		bench_report(BENCH, "durable (sync) commits per sync, 8 committers", "commits",
			     r[0][1].per_txn, NAN, 0, 0);
	if (r[3][1].per_txn > 0)
		bench_report(BENCH, "durable (sync) commits per sync, 8 committers, 64 KiB blocks",
			     "commits", r[3][1].per_txn, NAN, 0, 0);
	return 0;
}

/* ---- (1b) group commit on a slower disk ----------------------------------------- */

/* Mean microseconds of rounds of: a 4 KiB write to fd and fdatasync; and,
 * if dfd >= 0, a 4 KiB write through dfd after it. */
static int time_syncs(int fd, int dfd, const char *page, double *us)
{
	double t0 = bench_now_us();

	for (int i = 0; i < SYNC_ROUNDS; i++) {
		off_t off = (off_t)(i % SYNC_FILE_PAGES) * PAGE;

		if (pwrite(fd, page, PAGE, off) != PAGE || fdatasync(fd) != 0)
			return bench_sys_fail("write and fdatasync");
		if (dfd >= 0 && pwrite(dfd, page, PAGE, 0) != PAGE)
			return bench_sys_fail("write (O_DSYNC)");
	}
	*us = (bench_now_us() - t0) / SYNC_ROUNDS;
	return 0;
}

/* What a sync costs on the data directories' filesystem, in a file of our
 * own there: alone, and as LMDB's commit does it (then its meta page). */
static int disk_sync_cost(double *sync_us, double *pair_us)
{
	const char *tmp = tmp_dir();
	char dir[300], path[320], page[PAGE];
	int fd = -1, dfd = -1, ret = -1;

	memset(page, 0x5a, sizeof(page));
	snprintf(dir, sizeof(dir), "%s/bench_store-XXXXXX", tmp);
	if (!mkdtemp(dir))
		return bench_sys_fail("mkdtemp");
	snprintf(path, sizeof(path), "%s/syncs", dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		bench_fail("open %s: %s", path, strerror(errno));
		goto out;
	}
	/* every page written and durable once: later rounds rewrite data only */
	for (int i = 0; i < SYNC_FILE_PAGES; i++)
		if (pwrite(fd, page, PAGE, (off_t)i * PAGE) != PAGE) {
			bench_sys_fail("write");
			goto out;
		}
	if (fsync(fd) != 0) {
		bench_sys_fail("fsync");
		goto out;
	}
	dfd = open(path, O_WRONLY | O_DSYNC | O_CLOEXEC);
	if (dfd < 0) {
		bench_fail("open %s (O_DSYNC): %s", path, strerror(errno));
		goto out;
	}
	if (time_syncs(fd, -1, page, sync_us) || time_syncs(fd, dfd, page, pair_us))
		goto out;
	ret = 0;
out:
	if (dfd >= 0)
		close(dfd);
	if (fd >= 0)
		close(fd);
	if (unlink(path) != 0 && errno != ENOENT)
		ret = bench_fail("unlink %s: %s", path, strerror(errno));
	if (rmdir(dir) != 0)
		ret = bench_fail("rmdir %s: %s", dir, strerror(errno));
	return ret;
}

static int slow_disk(struct bench *b)
{
	struct rate r[MAX_DELAYS][2];
	double sync_us, pair_us;
	char what[160];

	if (!b->ndelays)
		return 0;
	printf("\n(1b) group commit on a slower disk: the sync runs of (1) again, with %s "
	       "preloaded into the broker,\n     sleeping before each of its syncs\n", PRELOAD);
	if (disk_sync_cost(&sync_us, &pair_us))
		return -1;
	printf("this disk: a 4 KiB write and fdatasync %.0f us; with a 4 KiB O_DSYNC write after "
	       "it (LMDB's commit) %.0f us\n", sync_us, pair_us);
	rate_head();
	bench_report(BENCH, "this disk: 4 KiB write and fdatasync", "us", sync_us, NAN, 0, 0);
	bench_report(BENCH, "this disk: 4 KiB write, fdatasync, 4 KiB O_DSYNC write (as LMDB "
		     "commits)", "us", pair_us, NAN, 0, 0);
	for (size_t i = 0; i < b->ndelays; i++) {
		b->delay_us = b->delays[i];
		if (rate_run(b, MODE_SYNC, 1, BLKSIZE, &r[i][0]) ||
		    rate_run(b, MODE_SYNC, NCOMMITTERS, BLKSIZE, &r[i][1])) {
			b->delay_us = -1;
			return -1;
		}
	}
	b->delay_us = -1;
	printf("\n%-50s %9s %9s %7s %6s  %s\n", "figure (commits/s)", "value", "baseline", "ratio",
	       "goal", "result");
	for (size_t i = 0; i < b->ndelays; i++) {
		snprintf(what, sizeof(what), "sync, each sync +%ld us: 8 committers vs 1",
			 b->delays[i]);
		rate_row(what, r[i][1].per_s, r[i][0].per_s, false);
	}
	for (size_t i = 0; i < b->ndelays; i++) {
		snprintf(what, sizeof(what), "durable (sync) commits/s, 8 committers vs 1, each sync "
			 "%ld us longer (a slower disk, simulated)", b->delays[i]);
		bench_report(BENCH, what, "commits/s", r[i][1].per_s, r[i][0].per_s, 0, 0);
	}
	return 0;
}

/* -d: "off", or up to MAX_DELAYS comma-separated microseconds. */
static bool parse_delays(const char *arg, struct bench *b)
{
	const char *p = arg;

	b->ndelays = 0;
	if (!strcmp(arg, "off"))
		return true;
	for (;;) {
		char *end;
		long v;

		if (b->ndelays == MAX_DELAYS || *p < '0' || *p > '9')
			return false;
		errno = 0;
		v = strtol(p, &end, 10);
		if (errno || v > MAX_DELAY_US || (*end && *end != ','))
			return false;
		b->delays[b->ndelays++] = v;
		if (!*end)
			return true;
		p = end + 1;
	}
}

/* sync_delay.so, next to this program. */
static int find_preload(struct bench *b)
{
	char dir[PATH_MAX];
	int err = harness_exe_dir(dir, sizeof(dir));

	if (err)
		return bench_err_fail("the directory of bench_store", err);
	if ((size_t)snprintf(b->preload, sizeof(b->preload), "%s/" PRELOAD, dir) >=
	    sizeof(b->preload))
		return bench_fail("the path of %s is too long", PRELOAD);
	if (access(b->preload, R_OK) != 0)
		return bench_fail("%s: %s (make benches builds it; -d off runs without part 1b)",
				  b->preload, strerror(errno));
	return 0;
}

/* ---- (2) bytes per commit ---------------------------------------------------- */

/* One row of part 2: total bytes over the commits, per commit, per page
 * changed; and its report line (what: "... per durable 1-page commit"). */
static void bytes_row(const char *name, const char *what, double total, double n)
{
	char figure[160];

	printf("%-46s %12.0f %12.0f %8.2f\n", name, total, total / n, total / n / PAGE);
	snprintf(figure, sizeof(figure), "%s per durable 1-page commit vs 4096", what);
	bench_report(BENCH, figure, "bytes", total / n, PAGE, 0, 0);
}

static int bytes_per_commit(struct bench *b)
{
	struct job job = { .mdb = b->mdb, .count = b->commits, .salt = 9, .dev = b->dev,
			   .have_dev = b->have_dev, .blksize = BLKSIZE };
	struct wres *w = &b->sh->w[0];
	double n = (double)b->commits;

	if (broker_up(b, "sync", RET_DEFAULT) ||
	    create_array(b, RATE_ARRAY, NCOMMITTERS * PER_BLOCK, BLKSIZE))
		return -1;
	job.socket = b->h.socket;
	job.broker = b->h.pid;
	if (run_clients(b, &job, 1, 0) || broker_down(b))
		return -1;
	bench_sort_u64(w->lat_ns, w->nlat);

	printf("\n(2) bytes written per 1-page commit: %zu sync commits one after the other "
	       "(median %.0f us each)\n", b->commits, quantile_us(w->lat_ns, w->nlat, 0.5));
	printf("%-46s %12s %12s %8s\n", "figure", "total", "per commit", "/ 4096");
	if (w->have_io) {
		double sc = (double)(w->io1.syscw - w->io0.syscw);

		bytes_row("broker write_bytes (to the storage layer)", "bytes the broker writes "
			  "(write_bytes)", (double)(w->io1.write_bytes - w->io0.write_bytes), n);
		bytes_row("broker wchar (every write, sockets too)", "bytes the broker writes "
			  "(wchar)", (double)(w->io1.wchar - w->io0.wchar), n);
		printf("%-46s %12.0f %12.1f %8s\n", "broker write system calls (syscw)", sc, sc / n,
		       "-");
	} else {
		printf("%-46s %12s\n", "broker /proc/PID/io", "unreadable");
	}
	if (w->mdb0 > 0 && w->mdb1 > 0)
		bytes_row("data.mdb growth", "data.mdb growth", (double)(w->mdb1 - w->mdb0), n);
	if (w->have_dev)
		bytes_row("device writes (the whole device)", "device bytes written (whole device)",
			  (double)(w->dev1 - w->dev0) * 512, n);
	return 0;
}

/* ---- (3) store size ---------------------------------------------------------- */

static int grow_run(struct bench *b, struct growth *gr)
{
	struct gres *g = &b->sh->g;
	pid_t pid;
	int st;

	if (broker_up(b, "sync", gr->ret_one ? RET_ONE : RET_DEFAULT))
		return -1;
	memset(g, 0, sizeof(*g));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return bench_sys_fail("fork");
	if (pid == 0) {
		alarm(CHILD_TIMEOUT_S);
		grow_main(b, gr->appends, g);
		_exit(g->err ? 1 : 0);
	}
	st = reap(b, pid);
	if (st != 0)
		return g->err ? bench_fail("%s", g->msg) :
				bench_fail("client failed (exit status %d)", st);
	gr->g = *g;
	return broker_down_read(b, &gr->lm);
}

static int store_size(struct bench *b)
{
	static const char *const ret_name[2] = { "16 rev / 60 s", "1 rev / 0 s" };

	printf("\n(3) store size: a 512 MiB <f8 array (2 MiB blocks), %zu sync commits of small "
	       "changes\n", b->changes);
	printf("  sparse:  created as holes, then one element changed per commit, each in another "
	       "page\n");
	printf("  appends: filled (every page non-zero) by one commit, then %d elements (%d KiB) "
	       "appended per commit\n", APPEND_ELEMS, APPEND_ELEMS * 8 / 1024);
	for (int i = 0; i < 4; i++) {
		b->grow[i].appends = i >= 2;
		b->grow[i].ret_one = i % 2;
		if (grow_run(b, &b->grow[i]))
			return -1;
	}
	printf("%-8s %-14s %8s %8s %8s %8s %8s %8s %8s %7s %6s %s\n", "variant", "retention",
	       "before", "after", "growth", "growth/", "used", "free", "records", "commit", "goal",
	       "result");
	printf("%-8s %-14s %8s %8s %8s %8s %8s %8s %8s %7s\n", "", "", "MiB", "MiB", "MiB",
	       "chg KiB", "MiB", "MiB", "", "ms");
	for (int i = 0; i < 4; i++) {
		const struct growth *gr = &b->grow[i];
		double growth = (double)(gr->g.size1 - gr->g.size0) / MIB;
		bool goal = !gr->ret_one;
		char what[200];

		printf("%-8s %-14s %8.1f %8.1f %8.2f %8.2f ", gr->appends ? "appends" : "sparse",
		       ret_name[gr->ret_one], (double)gr->g.size0 / MIB, (double)gr->g.size1 / MIB,
		       growth, growth * 1024 / (double)b->changes);
		if (gr->lm.ok)
			printf("%8.1f %8.2f %8" PRIu64, (double)gr->lm.used / MIB,
			       (double)gr->lm.free_bytes / MIB, gr->lm.records);
		else
			printf("%8s %8s %8s", "?", "?", "?");
		printf(" %7.2f %6s %s\n", gr->g.changes_s * 1e3 / (double)b->changes,
		       goal ? "<= 16" : "-",
		       !goal ? "(info)" : growth <= GOAL_GROWTH_MIB ? "ok" : "MISSED");
		snprintf(what, sizeof(what), "store growth, %zu %s to 512 MiB, retention %s",
			 b->changes, gr->appends ? "small appends" : "1-element changes",
			 ret_name[gr->ret_one]);
		bench_report(BENCH, what, "MiB", growth, NAN, goal ? '<' : 0, GOAL_GROWTH_MIB);
		if (gr->lm.ok) {
			snprintf(what, sizeof(what), "store in use at the end, %s, retention %s",
				 gr->appends ? "appends" : "sparse", ret_name[gr->ret_one]);
			bench_report(BENCH, what, "MiB", (double)gr->lm.used / MIB, NAN, 0, 0);
		}
	}
	for (int i = 2; i < 4; i++) {
		const struct growth *gr = &b->grow[i];

		printf("appends, retention %s: the 512 MiB fill commit took %.2f s (%.0f MB/s) and "
		       "made the store %.1f MiB\n", ret_name[gr->ret_one], gr->g.fill_s,
		       (double)BIG_BYTES / gr->g.fill_s / 1e6, (double)gr->g.size0 / MIB);
	}
	printf("pages sent by the %zu commits: sparse %" PRIu64 ", appends %" PRIu64 "\n",
	       b->changes, b->grow[0].g.pages_sent, b->grow[2].g.pages_sent);
	printf("published (wendelin.core, 500 small appends to 512 MiB): %.0f MiB with chunks "
	       "(ZBlk1), %.0f MiB with whole blocks (ZBlk0); whole 2 MiB blocks per commit here "
	       "would be %.0f MiB\n", ZBLK1_MIB, ZBLK0_MIB, (double)b->changes * 2);
	printf("used = (last page + 1 - free pages) x page size, read with LMDB after the broker "
	       "stopped; records: entries of the blocks database\n");
	bench_report(BENCH, "durable commit of a 512 MiB array (one commit, 256 blocks)", "s",
		     b->grow[2].g.fill_s, NAN, 0, 0);
	bench_report(BENCH, "store size after a 512 MiB commit vs 512 MiB", "MiB",
		     (double)b->grow[2].g.size0 / MIB, 512, 0, 0);
	return 0;
}

/* ---- main -------------------------------------------------------------------- */

/* Where the brokers' data directories go, and what it is. */
static int describe_fs(struct bench *b)
{
	const char *tmp = tmp_dir();

	find_fs(b, tmp);
	printf("data directories under %s: %s on %s\n", tmp, b->fstype, b->fsdev);
	if (b->memfs) {
		const char *warn =
			"!!! WARNING: the data directory is on a memory filesystem (%s): fsync "
			"costs nothing there,\n!!! so the durable figures say nothing about a "
			"disk. Set TMPDIR to a directory on a disk.\n";

		printf(warn, b->fstype);
		fprintf(stderr, warn, b->fstype);
	}
	return 0;
}

static int teardown(struct bench *b)
{
	int ret = broker_down(b);

	drop_kept(b);
	if (b->sh && munmap(b->sh, sizeof(*b->sh)) != 0)
		ret = bench_sys_fail("munmap");
	return ret;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_store [-t SECONDS] [-n COMMITS] [-c CHANGES] [-d DELAYS]\n"
		"  -t SECONDS  length of each commit-rate run, 0.2 to 60 (default %.0f)\n"
		"  -n COMMITS  1-page commits for the bytes-per-commit figures (default %d)\n"
		"  -c CHANGES  small changes / appends to the 512 MiB array (default %d)\n"
		"  -d DELAYS   part 1b: microseconds added to each sync, up to %d, comma-separated,\n"
		"              0 to %d (default %s); off: no part 1b\n",
		DEF_SECONDS, DEF_COMMITS, DEF_CHANGES, MAX_DELAYS, MAX_DELAY_US, DEF_DELAYS);
}

int main(int argc, char **argv)
{
	struct bench b = { .seconds = DEF_SECONDS, .commits = DEF_COMMITS,
			   .changes = DEF_CHANGES, .delay_us = -1 };
	char *end;
	void *p;
	int opt, ret = 1;

	bench_set_name("bench_store");
	if (!parse_delays(DEF_DELAYS, &b))
		return 2;
	while ((opt = getopt(argc, argv, "t:n:c:d:h")) != -1) {
		switch (opt) {
		case 't':
			errno = 0;
			b.seconds = strtod(optarg, &end);
			if (errno || *end || !(b.seconds >= 0.2 && b.seconds <= 60))
				goto bad_args;
			break;
		case 'n':
			if (!bench_parse_count(optarg, 10, MAX_COUNT, &b.commits))
				goto bad_args;
			break;
		case 'c':
			if (!bench_parse_count(optarg, 10, MAX_COUNT, &b.changes))
				goto bad_args;
			break;
		case 'd':
			if (!parse_delays(optarg, &b))
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

	printf("bench_store: %.1f s per commit-rate run, %zu commits for bytes per commit, %zu "
	       "small changes\n", b.seconds, b.commits, b.changes);
	p = mmap(NULL, sizeof(*b.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		bench_sys_fail("mmap");
		goto out;
	}
	b.sh = p;
	if ((b.ndelays && find_preload(&b)) || describe_fs(&b) || group_commit(&b) ||
	    slow_disk(&b) || bytes_per_commit(&b) || store_size(&b))
		goto out;
	ret = 0;
out:
	fflush(stdout);
	if (teardown(&b))
		ret = 1;
	return ret;

bad_args:
	usage(stderr);
	return 2;
}
