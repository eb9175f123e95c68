/* bench_commit.c - shma-broker's commit: throughput against memcpy, and
 * page granularity.
 *
 *   bench_commit [-r ROUNDS] [-s SIZE_MIB]
 *
 * Starts a real broker (tests/lib/harness) with 2 MiB blocks, a pool large
 * enough for three versions of the data, retention of 2 revisions and 0
 * seconds, memory only (data_dir false: these are the pool's figures, and no
 * store outlives the run), and talks to it with the raw protocol client.
 *
 * (1) Throughput.  An array of SIZE_MIB MiB of <f8.  Every round changes
 *     every page of every block: the client writes SIZE_MIB MiB of page data
 *     into a fresh memfd (timed: "client memfd write"), then sends one commit
 *     with one run [0, 512] per block and that memfd, and waits for the
 *     reply (timed: "commit", the round trip: send, the broker reads the data
 *     into fresh slots, reply).  The commit moves the snapshot, so the next
 *     round commits on top of it.  Baseline, in the same run, interleaved
 *     with the commits: memcpy of SIZE_MIB MiB between two populated
 *     buffers.  The pool hands out slots next-fit, so the first rounds write
 *     pool memory that was never touched (the kernel allocates and clears
 *     it, and on a VM the host may too): those warm-up rounds run until the
 *     whole pool is resident in the broker (RssShmem, /proc/PID/status) and
 *     are shown but not counted; the table reports medians of the timed
 *     rounds after them.  Each round's new slots are read back from the
 *     pool fd and compared with what was sent.
 *     Goal (from the issue): commit throughput >= 0.5 x memcpy.
 *
 * (2) Page granularity.  A second array of GRAN_BLOCKS blocks, opened, then
 *     filled by one commit of whole blocks; then one commit that changes 1
 *     byte in each block: one run of 1 page per block, GRAN_BLOCKS pages of
 *     data.  Reported: the pages and bytes the client sent, the bytes the
 *     broker read (read/pread, from /proc/PID/io), the slots the commit
 *     allocated (stats), the pages the broker copied inside the pool (the
 *     unchanged ones, from the old slot).  Every new slot is read back with
 *     pread at the offset the reply gives and compared with the old content
 *     plus the changed byte; the old slots must be untouched.
 *     Goal (from the issue): <= 100 pages moved.
 *
 * A missed goal is reported, not an error: the exit status is 0 unless
 * something failed (1), or the arguments were bad (2).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench_report.h"
#include "common.h"
#include "harness.h"

#define DEF_ROUNDS 5
#define DEF_SIZE_MIB 256
#define MAX_SIZE_MIB (64u << 10) /* 64 GiB */
#define BLKSIZE ((size_t)2 << 20)
#define PAGE 4096
#define PPB (BLKSIZE / PAGE) /* pages per block */
#define GRAN_BLOCKS 100
#define GOAL_RATIO 0.5
#define GOAL_PAGES 100
#define THRU_NAME "bench-throughput"
#define GRAN_NAME "bench-granularity"

struct bench {
	struct harness h;
	bool started;
	struct tclient c;
	bool connected;
	size_t rounds;
	size_t size;	/* bytes of the throughput array */
	size_t nblocks; /* its blocks */
	uint8_t *src;	/* the client's data, size bytes */
	uint8_t *dst;	/* memcpy baseline destination, size bytes */
	uint8_t *blkbuf; /* one block, for reading slots back */
	uint8_t *blkbuf2;
	uint64_t snap; /* the connection's snapshot, after each commit */
	uint64_t pool_size;
};

/* One changed block of a commit: one run of pages, its data at data. */
struct chg {
	uint64_t blk;
	uint32_t first, count;
	uint64_t data;
};

/* Per-round figures of the throughput part, in seconds. */
struct round {
	double memcpy_s, write_s, commit_s, broker_cpu_s;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_commit [-r ROUNDS] [-s SIZE_MIB]\n"
		"  -r ROUNDS    timed commit rounds, after the warm-up rounds that touch\n"
		"               the pool's memory; the median is reported (default %d)\n"
		"  -s SIZE_MIB  data changed by each commit, in MiB: an even number\n"
		"               (2 MiB blocks), at most %u (default %d)\n",
		DEF_ROUNDS, MAX_SIZE_MIB, DEF_SIZE_MIB);
}

/* ---- the broker ------------------------------------------------------------ */

static int start_broker(struct bench *b)
{
	/* peak: the head version, the retained previous one and the commit
	 * being written; the granularity part needs the data plus 2 x 100 blocks */
	uint64_t mib = b->size >> 20, pool = 3 * mib + 256, commit = 2 * mib;
	int err;

	if (pool < 1024)
		pool = 1024;
	if (commit < 512)
		commit = 512;
	b->pool_size = pool << 20;
	if (bench_broker_start(&b->h, pool, commit))
		return -1;
	b->started = true;
	err = tclient_open(&b->c, b->h.socket);
	if (err)
		return bench_err_fail("tclient_open (connect + hello)", err);
	b->connected = true;
	printf("broker pid %d, pool %" PRIu64 " MiB, block 2 MiB, retention 2 revisions\n",
	       (int)b->h.pid, pool);
	return 0;
}

/* Send text (with data_fd if >= 0); the reply if it is ok, else NULL after
 * saying why. */
static json_t *request(struct bench *b, const char *what, const char *text, int data_fd)
{
	json_t *r = tclient_call(&b->c, data_fd >= 0 ? &data_fd : NULL, data_fd >= 0, NULL,
				 NULL, "%s", text);

	if (!r) {
		bench_fail("%s: no reply from the broker (log: %s)", what, b->h.log);
		return NULL;
	}
	if (!reply_ok(r)) {
		const char *msg = json_string_value(
			json_object_get(json_object_get(r, "error"), "message"));

		bench_fail("%s: %s: %s", what, reply_code(r), msg ? msg : "(no message)");
		json_decref(r);
		return NULL;
	}
	return r;
}

static int create_array(struct bench *b, const char *name, uint64_t nbytes)
{
	char text[256];
	json_t *r;

	snprintf(text, sizeof(text),
		 "{\"op\":\"create\",\"name\":\"%s\",\"dtype\":\"<f8\",\"shape\":[%" PRIu64 "]}",
		 name, nbytes / 8);
	r = request(b, "create", text, -1);
	if (!r)
		return -1;
	json_decref(r);
	/* creating does not move this connection's snapshot: sync to see it */
	r = request(b, "sync", "{\"op\":\"sync\"}", -1);
	if (!r)
		return -1;
	b->snap = (uint64_t)reply_int(r, "revision");
	json_decref(r);
	return 0;
}

/* Open name (so that commit replies list its changes). */
static int open_array(struct bench *b, const char *name)
{
	char text[256];
	json_t *r, *meta;

	snprintf(text, sizeof(text), "{\"op\":\"open\",\"name\":\"%s\"}", name);
	r = request(b, "open", text, -1);
	if (!r)
		return -1;
	meta = json_object_get(r, "meta");
	if (reply_int(meta, "block_size") != (long long)BLKSIZE) {
		json_decref(r);
		return bench_fail("open %s: block_size %lld, want %zu", name,
				  reply_int(meta, "block_size"), BLKSIZE);
	}
	json_decref(r);
	return 0;
}

struct stats {
	long long slots, pool_used, commits;
};

static int get_stats(struct bench *b, struct stats *st)
{
	json_t *r = request(b, "stats", "{\"op\":\"stats\"}", -1), *s;

	if (!r)
		return -1;
	s = json_object_get(r, "stats");
	st->slots = reply_int(s, "slots");
	st->pool_used = reply_int(s, "pool_used");
	st->commits = reply_int(s, "commits");
	json_decref(r);
	return 0;
}

/* The commit request for n changes of array name on the current snapshot
 * (malloc'ed), or NULL. */
static char *commit_text(const struct bench *b, const char *name, const struct chg *ch,
			 size_t n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int bad = 0;

	if (!f) {
		bench_sys_fail("open_memstream");
		return NULL;
	}
	bad |= fprintf(f, "{\"op\":\"commit\",\"base\":%" PRIu64 ",\"arrays\":[{\"name\":\"%s\","
		       "\"blocks\":[", b->snap, name) < 0;
	for (size_t i = 0; i < n; i++)
		bad |= fprintf(f, "%s{\"blk\":%" PRIu64 ",\"runs\":[[%" PRIu32 ",%" PRIu32 "]],"
			       "\"data\":%" PRIu64 "}", i ? "," : "", ch[i].blk, ch[i].first,
			       ch[i].count, ch[i].data) < 0;
	bad |= fprintf(f, "]}]}") < 0;
	if (fclose(f) != 0 || bad) {
		bench_sys_fail("building the commit request");
		free(text);
		return NULL;
	}
	return text;
}

/* From a commit reply: the new revision into b->snap, and the new slot of
 * each of the n changed blocks of name into slots[i] (reply order is not
 * assumed).  0 or -1. */
static int reply_slots(struct bench *b, json_t *r, const char *name, const struct chg *ch,
		       size_t n, uint64_t *slots)
{
	json_t *blocks = json_object_get(json_object_get(json_object_get(r, "arrays"), name),
					 "blocks");
	json_t *pair;
	size_t i, found = 0;

	b->snap = (uint64_t)reply_int(r, "revision");
	if (!json_is_array(blocks))
		return bench_fail("commit reply lists no changes for \"%s\"", name);
	for (i = 0; i < n; i++)
		slots[i] = UINT64_MAX;
	json_array_foreach(blocks, i, pair) {
		json_t *jb = json_array_get(pair, 0), *js = json_array_get(pair, 1);
		uint64_t blk = (uint64_t)json_integer_value(jb);

		if (!json_is_integer(jb) || !json_is_integer(js))
			return bench_fail("commit reply: block %zu of \"%s\" has no slot", i, name);
		/* changes are listed by block; ch is sorted by block too */
		for (size_t k = 0; k < n; k++) {
			if (ch[k].blk != blk)
				continue;
			if (slots[k] == UINT64_MAX)
				found++;
			slots[k] = (uint64_t)json_integer_value(js);
			break;
		}
	}
	if (found != n || json_array_size(blocks) != n)
		return bench_fail("commit reply lists %zu blocks of \"%s\" (%zu of ours), want %zu",
				  json_array_size(blocks), name, found, n);
	return 0;
}

/* One block of the pool, at offset slot, into buf. */
static int read_slot(const struct bench *b, uint64_t slot, uint8_t *buf)
{
	size_t done = 0;

	while (done < BLKSIZE) {
		ssize_t r = pread(b->c.pool_fd, buf + done, BLKSIZE - done, (off_t)(slot + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return bench_sys_fail("pread pool");
		if (r == 0)
			return bench_fail("pread pool: slot %" PRIu64 " is beyond the pool's end",
					  slot);
		done += (size_t)r;
	}
	return 0;
}

/* Is the whole pool resident in the broker (so a commit no longer writes
 * memory for the first time)?  Its pool mapping is its shared memory
 * (RssShmem). */
static bool pool_resident(const struct bench *b)
{
	uint64_t kb;

	return bench_proc_status_kb(b->h.pid, "RssShmem", &kb) && (kb << 10) >= b->pool_size;
}

/* ---- (1) throughput ---------------------------------------------------------- */

/* The client's data: a distinct 8-byte word everywhere; the first word of
 * each page also carries the round, so every round commits new content. */
static void fill_src(struct bench *b)
{
	uint64_t *w = (uint64_t *)b->src;

	for (size_t i = 0; i < b->size / 8; i++)
		w[i] = (uint64_t)i * 0x9e3779b97f4a7c15ull;
}

static void stamp_round(struct bench *b, size_t round)
{
	for (size_t p = 0; p < b->size / PAGE; p++) {
		uint64_t v = ((uint64_t)round << 48) | p;

		memcpy(b->src + p * PAGE, &v, sizeof(v));
	}
}

static int thru_round(struct bench *b, size_t round, const struct chg *ch, uint64_t *slots,
		      struct round *res)
{
	char *text = commit_text(b, THRU_NAME, ch, b->nblocks);
	double t0, t1, t2, cpu0, cpu1;
	int fd = -1, ret = -1;
	json_t *r = NULL;

	if (!text)
		return -1;
	stamp_round(b, round);
	/* odd rounds copy after the commit, so neither always runs first */
	if (round % 2 == 0) {
		t0 = bench_now_s();
		memcpy(b->dst, b->src, b->size);
		res->memcpy_s = bench_now_s() - t0;
	}
	t0 = bench_now_s();
	fd = test_memfd(b->src, b->size);
	t1 = bench_now_s();
	if (fd < 0) {
		bench_err_fail("writing the data memfd", fd);
		goto out;
	}
	cpu0 = bench_proc_cpu_s(b->h.pid);
	r = request(b, "commit", text, fd);
	t2 = bench_now_s();
	cpu1 = bench_proc_cpu_s(b->h.pid);
	if (!r)
		goto out;
	res->write_s = t1 - t0;
	res->commit_s = t2 - t1;
	res->broker_cpu_s = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
	if (round % 2 == 1) {
		t0 = bench_now_s();
		memcpy(b->dst, b->src, b->size);
		res->memcpy_s = bench_now_s() - t0;
	}
	if (b->dst[b->size - 1] != b->src[b->size - 1] || b->dst[0] != b->src[0]) {
		bench_fail("memcpy baseline: destination differs");
		goto out;
	}
	if (reply_slots(b, r, THRU_NAME, ch, b->nblocks, slots))
		goto out;
	/* what the broker wrote is what we sent */
	for (size_t k = 0; k < b->nblocks; k++) {
		if (read_slot(b, slots[k], b->blkbuf))
			goto out;
		if (memcmp(b->blkbuf, b->src + k * BLKSIZE, BLKSIZE)) {
			bench_fail("round %zu: block %zu at slot %" PRIu64
				   " differs from the data sent", round, k, slots[k]);
			goto out;
		}
	}
	ret = 0;
out:
	json_decref(r);
	if (fd >= 0 && close(fd) != 0)
		ret = bench_sys_fail("close data memfd");
	free(text);
	return ret;
}

static double mbps(const struct bench *b, double s)
{
	return (double)b->size / s / 1e6;
}

static const struct bench_table table = { .name_w = 40, .prec = 0 };

static void print_base(const char *name, double v)
{
	bench_table_value(&table, name, v, "-");
}

static void print_ratio(const char *name, double v, double base, double goal)
{
	double ratio = v / base;
	char g[16] = "-";

	if (goal > 0)
		snprintf(g, sizeof(g), ">= %.1f", goal);
	bench_table_ratio(&table, name, v, base, g,
			  goal <= 0 ? "(info)" : ratio >= goal ? "ok" : "MISSED");
}

static int throughput(struct bench *b)
{
	/* next-fit over the pool: every slot has been written after this many
	 * rounds (one more for a pool that is not a multiple of the size) */
	size_t max_warm = (size_t)((b->pool_size + b->size - 1) / b->size) + 1;
	size_t total = max_warm + b->rounds, nwarm = 0, ntimed = 0;
	struct chg *ch = calloc(b->nblocks, sizeof(*ch));
	uint64_t *slots = calloc(b->nblocks, sizeof(*slots));
	double *v[5] = { NULL }, *cold = calloc(max_warm, sizeof(double));
	double med[5];
	int ret = -1;

	for (int i = 0; i < 5; i++)
		v[i] = calloc(b->rounds, sizeof(double));
	if (!ch || !slots || !cold || !v[0] || !v[1] || !v[2] || !v[3] || !v[4]) {
		bench_sys_fail("calloc");
		goto out;
	}
	if (create_array(b, THRU_NAME, b->size) || open_array(b, THRU_NAME))
		goto out;
	for (size_t k = 0; k < b->nblocks; k++)
		ch[k] = (struct chg){ .blk = k, .first = 0, .count = PPB, .data = k * BLKSIZE };

	printf("\n(1) throughput: %zu MiB (%zu blocks, every page) per commit; warm-up "
	       "rounds until the pool is resident, then %zu timed rounds\n", b->size >> 20,
	       b->nblocks, b->rounds);
	printf("%-8s %10s %12s %10s %14s %12s\n", "round", "memcpy ms", "memfd wr ms",
	       "commit ms", "broker cpu ms", "commit MB/s");
	fflush(stdout);
	for (size_t r = 0; r < total && ntimed < b->rounds; r++) {
		bool warm = nwarm == r && r < max_warm && (r == 0 || !pool_resident(b));
		struct round x = { 0 };

		if (thru_round(b, r, ch, slots, &x))
			goto out;
		printf("%-8s %10.1f %12.1f %10.1f %14.1f %12.0f\n", warm ? "warm-up" : "timed",
		       x.memcpy_s * 1e3, x.write_s * 1e3, x.commit_s * 1e3,
		       x.broker_cpu_s * 1e3, mbps(b, x.commit_s));
		fflush(stdout);
		if (warm) {
			cold[nwarm++] = mbps(b, x.commit_s);
			continue;
		}
		v[0][ntimed] = mbps(b, x.memcpy_s);
		v[1][ntimed] = mbps(b, x.commit_s);
		v[2][ntimed] = mbps(b, x.write_s + x.commit_s);
		v[3][ntimed] = mbps(b, x.write_s);
		v[4][ntimed] = x.broker_cpu_s;
		ntimed++;
	}
	if (!pool_resident(b))
		printf("(the pool's residency could not be confirmed from /proc: the first timed "
		       "rounds may include first-touch costs)\n");
	for (int i = 0; i < 5; i++)
		med[i] = bench_median(v[i], b->rounds);

	printf("\nmedian of %zu timed rounds (MB/s = 1e6 bytes/s; every commit's slots were "
	       "read back and match):\n", b->rounds);
	bench_table_head(&table, "MB/s");
	print_base("memcpy (baseline)", med[0]);
	print_ratio("commit round trip, data fd ready", med[1], med[0], GOAL_RATIO);
	print_ratio("client memfd write + commit", med[2], med[0], 0);
	print_ratio("client memfd write alone", med[3], med[0], 0);
	print_ratio("commit, warm-up (pool memory untouched)", bench_median(cold, nwarm), med[0],
		    0);
	bench_report("commit", "commit round trip, data fd ready, vs memcpy", "MB/s", med[1],
		     med[0], '>', GOAL_RATIO);
	bench_report("commit", "client memfd write + commit vs memcpy", "MB/s", med[2], med[0],
		     0, 0);
	bench_report("commit", "client memfd write alone vs memcpy", "MB/s", med[3], med[0], 0, 0);
	bench_report("commit", "commit in warm-up (pool memory untouched) vs memcpy", "MB/s",
		     bench_median(cold, nwarm), med[0], 0, 0);
	if (med[4] >= 0)
		printf("broker on-CPU time per commit (median): %.1f ms = %.0f MB/s\n",
		       med[4] * 1e3, (double)b->size / med[4] / 1e6);
	ret = 0;
out:
	for (int i = 0; i < 5; i++)
		free(v[i]);
	free(cold);
	free(slots);
	free(ch);
	return ret;
}

/* ---- (2) page granularity ------------------------------------------------------ */

/* The page and byte that the 1-byte commit changes in block k. */
static uint32_t gran_page(size_t k)
{
	return (uint32_t)((k * 37 + 5) % PPB);
}

static size_t gran_byte(size_t k)
{
	return (k * 131 + 7) % PAGE;
}

static int granularity(struct bench *b)
{
	size_t full_len = GRAN_BLOCKS * BLKSIZE;
	struct chg ch[GRAN_BLOCKS];
	uint64_t old_slots[GRAN_BLOCKS], new_slots[GRAN_BLOCKS];
	uint8_t *full = NULL, *pages = NULL;
	struct bench_io io0, io1;
	uint64_t sent_pages = 0, sent_bytes;
	bool have_rchar;
	struct stats st0, st1;
	char *text = NULL;
	json_t *r = NULL;
	int fd = -1, ret = -1;
	double t0, t1;

	full = malloc(full_len);
	pages = malloc(GRAN_BLOCKS * PAGE);
	if (!full || !pages) {
		bench_sys_fail("malloc");
		goto out;
	}
	for (size_t i = 0; i < full_len / 8; i++) {
		uint64_t w = ~(uint64_t)i * 0xc2b2ae3d27d4eb4full;

		memcpy(full + i * 8, &w, 8);
	}
	if (create_array(b, GRAN_NAME, full_len) || open_array(b, GRAN_NAME))
		goto out;

	/* whole blocks first */
	for (size_t k = 0; k < GRAN_BLOCKS; k++)
		ch[k] = (struct chg){ .blk = k, .first = 0, .count = PPB, .data = k * BLKSIZE };
	text = commit_text(b, GRAN_NAME, ch, GRAN_BLOCKS);
	if (!text)
		goto out;
	fd = test_memfd(full, full_len);
	if (fd < 0) {
		bench_err_fail("writing the data memfd", fd);
		goto out;
	}
	r = request(b, "commit (whole blocks)", text, fd);
	if (!r || reply_slots(b, r, GRAN_NAME, ch, GRAN_BLOCKS, old_slots))
		goto out;
	json_decref(r);
	r = NULL;
	free(text);
	text = NULL;
	if (close(fd) != 0) {
		fd = -1;
		bench_sys_fail("close data memfd");
		goto out;
	}

	/* then 1 byte in each block: one page per block */
	for (size_t k = 0; k < GRAN_BLOCKS; k++) {
		uint8_t *pg = pages + k * PAGE;

		ch[k] = (struct chg){ .blk = k, .first = gran_page(k), .count = 1,
				      .data = k * PAGE };
		memcpy(pg, full + k * BLKSIZE + (size_t)gran_page(k) * PAGE, PAGE);
		pg[gran_byte(k)] ^= 0xff;
		sent_pages += ch[k].count;
	}
	sent_bytes = sent_pages * PAGE;
	text = commit_text(b, GRAN_NAME, ch, GRAN_BLOCKS);
	if (!text)
		goto out;
	fd = test_memfd(pages, GRAN_BLOCKS * PAGE);
	if (fd < 0) {
		bench_err_fail("writing the data memfd", fd);
		goto out;
	}
	if (get_stats(b, &st0))
		goto out;
	have_rchar = bench_proc_io(b->h.pid, &io0);
	t0 = bench_now_s();
	r = request(b, "commit (1 byte per block)", text, fd);
	t1 = bench_now_s();
	have_rchar = have_rchar && bench_proc_io(b->h.pid, &io1);
	if (!r || reply_slots(b, r, GRAN_NAME, ch, GRAN_BLOCKS, new_slots))
		goto out;
	if (get_stats(b, &st1))
		goto out;

	/* every block has a new slot; it holds the old content and the changed
	 * byte, and the old slot (still retained) is untouched */
	for (size_t k = 0; k < GRAN_BLOCKS; k++) {
		const uint8_t *want = full + k * BLKSIZE;
		size_t at = (size_t)gran_page(k) * PAGE + gran_byte(k);

		if (new_slots[k] == old_slots[k]) {
			bench_fail("block %zu: the commit reused slot %" PRIu64, k, old_slots[k]);
			goto out;
		}
		if (read_slot(b, new_slots[k], b->blkbuf) || read_slot(b, old_slots[k], b->blkbuf2))
			goto out;
		if (memcmp(b->blkbuf2, want, BLKSIZE)) {
			bench_fail("block %zu: the old slot %" PRIu64 " changed", k, old_slots[k]);
			goto out;
		}
		if ((uint8_t)(b->blkbuf[at] ^ want[at]) != 0xff) {
			bench_fail("block %zu: the changed byte is not in the new slot", k);
			goto out;
		}
		b->blkbuf[at] ^= 0xff;
		if (memcmp(b->blkbuf, want, BLKSIZE)) {
			bench_fail("block %zu: the new slot %" PRIu64 " lost unchanged content", k,
				   new_slots[k]);
			goto out;
		}
	}
	if (st1.slots - st0.slots != GRAN_BLOCKS ||
	    st1.pool_used - st0.pool_used != (long long)(GRAN_BLOCKS * BLKSIZE) ||
	    st1.commits - st0.commits != 1) {
		bench_fail("stats: %lld new slots, %lld bytes more in use, %lld commits; "
			   "want %d, %zu, 1", st1.slots - st0.slots, st1.pool_used - st0.pool_used,
			   st1.commits - st0.commits, GRAN_BLOCKS, GRAN_BLOCKS * BLKSIZE);
		goto out;
	}

	printf("\n(2) page granularity: 1 byte changed in each of %d blocks (after a commit "
	       "of whole blocks)\n", GRAN_BLOCKS);
	printf("%-48s %12s %8s  %s\n", "figure", "value", "goal", "result");
	printf("%-48s %12" PRIu64 " %8s  %s\n", "pages moved client -> broker (sent)",
	       sent_pages, "<= 100", sent_pages <= GOAL_PAGES ? "ok" : "MISSED");
	printf("%-48s %12" PRIu64 " %8s  %s\n", "bytes moved client -> broker (sent)",
	       sent_bytes, "-", "-");
	if (have_rchar) {
		/* read/pread only (the request datagram is recvmsg'ed, not
		 * counted); a timer tick may add 8 bytes */
		uint64_t got = io1.rchar - io0.rchar, got_pages = got / PAGE;

		printf("%-48s %12" PRIu64 " %8s  %s\n", "bytes the broker read (/proc/PID/io rchar)",
		       got, "-", "-");
		printf("%-48s %12" PRIu64 " %8s  %s\n", "  = whole pages", got_pages, "<= 100",
		       got_pages <= GOAL_PAGES ? "ok" : "MISSED");
	} else {
		printf("%-48s %12s %8s  %s\n", "bytes the broker read (/proc/PID/io)", "n/a", "-",
		       "-");
	}
	printf("%-48s %12lld %8s  %s\n", "new slots (stats: slots after - before)",
	       st1.slots - st0.slots, "-", "-");
	printf("%-48s %12llu %8s  %s\n", "unchanged pages copied in the pool (no spare yet)",
	       (unsigned long long)(GRAN_BLOCKS * (PPB - 1)), "-", "(info)");
	printf("%-48s %12.2f %8s  %s\n", "commit round trip, ms", (t1 - t0) * 1e3, "-",
	       "(info)");
	printf("content: every new slot = old block + the changed byte; old slots intact\n");
	{
		char what[96];

		snprintf(what, sizeof(what), "1 byte changed in each of %d blocks: pages sent",
			 GRAN_BLOCKS);
		bench_report("commit", what, "pages", (double)sent_pages, NAN, '<', GOAL_PAGES);
		if (have_rchar) {
			snprintf(what, sizeof(what),
				 "1 byte changed in each of %d blocks: pages the broker read",
				 GRAN_BLOCKS);
			bench_report("commit", what, "pages",
				     (double)((io1.rchar - io0.rchar) / PAGE), NAN, '<', GOAL_PAGES);
		}
		snprintf(what, sizeof(what), "1 byte changed in each of %d blocks: commit round trip",
			 GRAN_BLOCKS);
		bench_report("commit", what, "ms", (t1 - t0) * 1e3, NAN, 0, 0);
	}
	ret = 0;
out:
	json_decref(r);
	if (fd >= 0 && close(fd) != 0)
		ret = bench_sys_fail("close data memfd");
	free(text);
	free(pages);
	free(full);
	return ret;
}

/* ---- main -------------------------------------------------------------------- */

static int setup_buffers(struct bench *b)
{
	void *p;

	p = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return bench_sys_fail("mmap source buffer");
	b->src = p;
	p = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return bench_sys_fail("mmap destination buffer");
	b->dst = p;
	b->blkbuf = malloc(BLKSIZE);
	b->blkbuf2 = malloc(BLKSIZE);
	if (!b->blkbuf || !b->blkbuf2)
		return bench_sys_fail("malloc");
	fill_src(b);
	memset(b->dst, 0x5a, b->size);
	return 0;
}

/* Release everything, stop the broker; -1 if something failed. */
static int teardown(struct bench *b)
{
	int ret = 0;

	if (b->connected)
		tclient_close(&b->c);
	if (b->started && bench_broker_stop(&b->h))
		ret = -1;
	if (b->dst && munmap(b->dst, b->size) != 0)
		ret = bench_sys_fail("munmap destination buffer");
	if (b->src && munmap(b->src, b->size) != 0)
		ret = bench_sys_fail("munmap source buffer");
	free(b->blkbuf);
	free(b->blkbuf2);
	return ret;
}

int main(int argc, char **argv)
{
	struct bench b = { .rounds = DEF_ROUNDS, .c = { .fd = -1, .pool_fd = -1 } };
	size_t mib = DEF_SIZE_MIB;
	int opt, ret = 1;

	bench_set_name("bench_commit");
	while ((opt = getopt(argc, argv, "r:s:h")) != -1) {
		switch (opt) {
		case 'r':
			if (!bench_parse_count(optarg, 10, 1000, &b.rounds))
				goto bad_args;
			break;
		case 's':
			if (!bench_parse_count(optarg, 10, MAX_SIZE_MIB, &mib) || mib % 2)
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
	b.nblocks = b.size / BLKSIZE;

	printf("bench_commit: %zu MiB per commit, %zu timed rounds\n", mib, b.rounds);
	fflush(stdout);
	if (setup_buffers(&b) || start_broker(&b))
		goto out;
	if (throughput(&b) || granularity(&b))
		goto out;
	ret = 0;
out:
	if (teardown(&b))
		ret = 1;
	return ret;

bad_args:
	usage(stderr);
	return 2;
}
