/* bench_handoff.c - handing an array to another process by ArrayRef, against
 * a bare ZeroMQ message and against sending the array's bytes.
 *
 *   bench_handoff [-n ITER] [-r ROUNDS]
 *
 * Starts a real broker (tests/lib/harness) with a 3 GiB pool and 2 MiB
 * blocks, memory only (data_dir false: no store outlives the run).  This
 * process is the producer: it creates and commits two <f8 arrays, "h1m"
 * (1 MiB, every element written) and "h1g" (1 GiB: one element per block
 * written, so every block is committed and has a slot), and makes refs of
 * both, whole.  The consumer is a fork()ed process with its own
 * connections.  They talk over ZeroMQ ipc:// endpoints in the broker's
 * temporary directory: producer PUSH -> consumer PULL for requests,
 * consumer PUSH -> producer PULL for replies.  Every figure is a round trip
 * timed by the producer:
 *
 *   bare      a 64-byte message there, 64 bytes back (the baseline).
 *   handoff   shma_ref_send of a whole-array ref; the consumer does
 *             shma_ref_recv, shma_ref_open, reads one element (a different
 *             block each time: a fault and a mapping), shma_close (which
 *             unpins), and replies with the value (64 bytes).  For h1m and
 *             h1g; and, as information, a ref of one element of h1g.
 *   bytes     the 1 GiB array's bytes as one ZeroMQ message on the same
 *             socket (zero-copy on the producer's side, from its mapping of
 *             the array, made resident first); the consumer receives all of
 *             it, reads one element and replies.  ROUNDS times.
 *
 * The round-trip kinds run interleaved in blocks of ITER/10 after a warm-up
 * block of each; medians of ITER round trips are reported, with the
 * consumer's own medians of open / read / close for the handoffs.  Every
 * value the consumer reads is checked against what the producer wrote.
 * Goals (from the issue): handoff(1 GiB) / handoff(1 MiB) <= 1.2; handoff /
 * bare <= 3; bytes(1 GiB) / handoff(1 GiB) >= 100.
 *
 * A missed goal is reported, not an error: the exit status is 0 unless
 * something failed (1), or the arguments were bad (2).  The consumer and the
 * broker are reaped and stopped on every path.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench_report.h"
#include "common.h"
#include "harness.h"
#include "shma.h"

#define DEF_ITER 200
#define DEF_ROUNDS 3
#define MAX_ITER 100000
#define MAX_ROUNDS 100
#define PASSES 10	  /* timed blocks per kind, interleaved */
#define WARMUP 20	  /* untimed round trips per kind first */
#define BLKSIZE (2u << 20)
#define PER_BLOCK (BLKSIZE / 8) /* <f8 elements per block */
#define N1M ((1u << 20) / 8)
#define N1G ((1u << 30) / 8)
#define ONE_ELEM (100 * PER_BLOCK + 3) /* the element of the 1-element ref */
#define TIMEOUT_MS 60000
#define GOAL_SIZE 1.2
#define GOAL_BARE 3.0
#define GOAL_BYTES 100.0

/* A reply: 64 bytes, as the bare message. */
struct hreply {
	int32_t status; /* 0 or an error code */
	uint32_t pad;
	uint64_t index; /* the element read, in the view */
	double value;
	uint64_t revision;
	uint64_t open_ns, read_ns, close_ns;
	uint64_t spare;
};
_Static_assert(sizeof(struct hreply) == 64, "a reply is 64 bytes");

enum kind { K_BARE, K_1M, K_1G, K_ELEM, NKINDS };
static const char *const kind_name[NKINDS] = { "bare", "ref", "ref", "ref" };

struct bench {
	struct harness h;
	bool started;
	pid_t consumer;
	void *ctx, *push, *pull;
	char req_ep[400], rep_ep[400];
	shma_conn *c;
	shma_array *a1m, *a1g;
	struct shma_ref refs[NKINDS]; /* K_1M, K_1G, K_ELEM */
	size_t iter, rounds;
	/* round trips and the consumer's times, ns, per kind */
	uint64_t *rt[NKINDS], *open_ns[NKINDS], *read_ns[NKINDS], *close_ns[NKINDS];
	size_t nrt[NKINDS];
	uint64_t *bytes_ns;
};

/* ---- the broker ------------------------------------------------------------ */

/* ---- the consumer (a child process) ------------------------------------------- */

/* Which element of a 1-d view the n-th handoff reads: a written one, in a
 * different block each time when the view spans blocks. */
static uint64_t pick(uint64_t n, uint64_t len)
{
	if (len >= PER_BLOCK)
		return ((n * 7919) % (len / PER_BLOCK)) * PER_BLOCK + 3;
	return (n * 7919) % len;
}

/* What the producer wrote at element i of an array of n elements. */
static double expected(uint64_t i, uint64_t n)
{
	if (n == N1M)
		return (double)(i + 1);
	return i % PER_BLOCK == 3 ? (double)(i / PER_BLOCK + 1) : 0.0;
}

static int zsend(void *s, const void *buf, size_t len)
{
	return zmq_send(s, buf, len, 0) == (int)len ? 0 : -zmq_errno();
}

/* One handoff: receive a ref, open it, read an element, close, reply. */
static int consume_ref(void *pull, void *push, uint64_t n)
{
	struct hreply rep = { 0 };
	struct shma_view v;
	struct shma_ref r;
	shma_array *a = NULL;
	char why[256] = "";
	uint64_t t0, t1, t2, t3;
	volatile double x;

	rep.status = shma_ref_recv(pull, &r, 0, why, sizeof(why));
	if (rep.status) {
		fprintf(stderr, "consumer: shma_ref_recv: %s (%s)\n", shma_strerror(rep.status), why);
		return rep.status;
	}
	t0 = bench_now_ns();
	rep.status = shma_ref_open(&r, 0, &a, &v);
	t1 = bench_now_ns();
	if (!rep.status && (v.ndim != 1 || v.itemsize != 8))
		rep.status = -EINVAL;
	if (!rep.status) {
		rep.index = pick(n, v.shape[0]);
		x = *(const double *)(v.data + (int64_t)rep.index * v.strides[0]);
		t2 = bench_now_ns();
		rep.value = x;
		rep.revision = shma_array_revision(a);
		shma_close(&a);
		t3 = bench_now_ns();
		rep.open_ns = t1 - t0;
		rep.read_ns = t2 - t1;
		rep.close_ns = t3 - t2;
	}
	return zsend(push, &rep, sizeof(rep));
}

/* Receive one big message, read an element, reply. */
static int consume_bytes(void *pull, void *push, uint64_t n)
{
	struct hreply rep = { 0 };
	zmq_msg_t m;

	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, pull, 0) < 0) {
		rep.status = -zmq_errno();
		zmq_msg_close(&m);
		return rep.status;
	}
	if (zmq_msg_size(&m) != (size_t)N1G * 8) {
		rep.status = -EMSGSIZE;
	} else {
		rep.index = pick(n, N1G);
		memcpy(&rep.value, (const char *)zmq_msg_data(&m) + rep.index * 8, 8);
	}
	zmq_msg_close(&m);
	return zsend(push, &rep, sizeof(rep));
}

static int consumer_main(const char *req_ep, const char *rep_ep)
{
	void *ctx = zmq_ctx_new(), *pull, *push;
	int tmo = TIMEOUT_MS, linger = 2000, err = 0;
	uint64_t nref = 0, nbytes = 0;

	if (!ctx)
		return 1;
	pull = zmq_socket(ctx, ZMQ_PULL);
	push = zmq_socket(ctx, ZMQ_PUSH);
	if (!pull || !push)
		return 1;
	zmq_setsockopt(pull, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	zmq_setsockopt(push, ZMQ_SNDTIMEO, &tmo, sizeof(tmo));
	zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof(linger));
	if (zmq_connect(pull, req_ep) || zmq_connect(push, rep_ep))
		return 1;
	while (!err) {
		char ctl[64], buf[64];
		unsigned long n;
		int len = zmq_recv(pull, ctl, sizeof(ctl) - 1, 0);

		if (len < 0) {
			fprintf(stderr, "consumer: no request: %s\n", zmq_strerror(zmq_errno()));
			err = 1;
			break;
		}
		ctl[len] = 0;
		if (!strcmp(ctl, "quit"))
			break;
		if (sscanf(ctl, "%*s %lu", &n) != 1 || zsend(push, "ok", 2)) {
			err = 1;
			break;
		}
		for (unsigned long i = 0; i < n && !err; i++) {
			if (!strncmp(ctl, "bare", 4)) {
				len = zmq_recv(pull, buf, sizeof(buf), 0);
				err = len != (int)sizeof(buf) || zsend(push, buf, sizeof(buf));
			} else if (!strncmp(ctl, "ref", 3)) {
				err = consume_ref(pull, push, nref++) != 0;
			} else if (!strncmp(ctl, "bytes", 5)) {
				err = consume_bytes(pull, push, nbytes++) != 0;
			} else {
				err = 1;
			}
		}
	}
	zmq_close(pull);
	zmq_close(push);
	zmq_ctx_term(ctx);
	return err;
}

/* ---- the producer ----------------------------------------------------------------- */

static int start(struct bench *b)
{
	int err, tmo = TIMEOUT_MS, linger = 0;

	err = harness_start(&b->h, "{\"pool_size\":\"3GiB\",\"block_size\":\"2MiB\","
				    "\"log_level\":\"info\",\"data_dir\":false}");
	if (err)
		return bench_err_fail("harness_start", err);
	b->started = true;
	snprintf(b->req_ep, sizeof(b->req_ep), "ipc://%s/handoff-req.ipc", b->h.dir);
	snprintf(b->rep_ep, sizeof(b->rep_ep), "ipc://%s/handoff-rep.ipc", b->h.dir);
	/* the consumer first, before this process has threads or connections */
	fflush(stdout);
	fflush(stderr);
	b->consumer = fork();
	if (b->consumer < 0)
		return bench_sys_fail("fork");
	if (b->consumer == 0)
		_exit(consumer_main(b->req_ep, b->rep_ep));

	b->ctx = zmq_ctx_new();
	if (!b->ctx)
		return bench_fail("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
	b->push = zmq_socket(b->ctx, ZMQ_PUSH);
	b->pull = zmq_socket(b->ctx, ZMQ_PULL);
	if (!b->push || !b->pull)
		return bench_fail("zmq_socket: %s", zmq_strerror(zmq_errno()));
	zmq_setsockopt(b->push, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(b->pull, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(b->push, ZMQ_SNDTIMEO, &tmo, sizeof(tmo));
	zmq_setsockopt(b->pull, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	if (zmq_bind(b->push, b->req_ep) || zmq_bind(b->pull, b->rep_ep))
		return bench_fail("zmq_bind: %s", zmq_strerror(zmq_errno()));
	printf("broker pid %d, consumer pid %d, pool 3 GiB, block 2 MiB\n", (int)b->h.pid,
	       (int)b->consumer);
	return 0;
}

static int conn_fail(struct bench *b, const char *what, int err)
{
	return bench_fail("%s: %s (%s)", what, shma_strerror(err),
			  b->c ? shma_conn_error(b->c) : "");
}

/* Create and open a 1-d <f8 array of n elements. */
static int create(struct bench *b, const char *name, uint64_t n, shma_array **out)
{
	uint64_t rev;
	int err;

	err = shma_create(b->c, name, "<f8", 1, &n, 'C', BLKSIZE, &rev);
	if (!err)
		err = shma_sync_to(b->c, rev);
	if (!err)
		err = shma_open(b->c, name, out);
	return err ? conn_fail(b, name, err) : 0;
}

static int make_ref(struct bench *b, shma_array *a, int64_t start, int64_t stop,
		    struct shma_ref *r)
{
	struct shma_view v;
	int err = shma_view_of(a, &v);

	if (!err && (start || stop != SHMA_END))
		err = shma_view_slice(&v, 0, start, stop, 1, &v);
	if (!err)
		err = shma_ref_make(&v, r);
	return err ? conn_fail(b, "shma_ref_make", err) : 0;
}

static int setup_arrays(struct bench *b)
{
	uint64_t rev, t0 = bench_now_ns();
	double *d;
	int err;

	err = shma_connect(b->h.socket, NULL, &b->c);
	if (err)
		return bench_fail("shma_connect: %s", shma_strerror(err));
	if (create(b, "h1m", N1M, &b->a1m) || create(b, "h1g", N1G, &b->a1g))
		return -1;
	d = shma_array_data(b->a1m);
	for (uint64_t i = 0; i < N1M; i++)
		d[i] = expected(i, N1M);
	d = shma_array_data(b->a1g);
	for (uint64_t i = 3; i < N1G; i += PER_BLOCK)
		d[i] = expected(i, N1G);
	err = shma_commit(b->c, &rev);
	if (err)
		return conn_fail(b, "commit", err);
	if (make_ref(b, b->a1m, 0, SHMA_END, &b->refs[K_1M]) ||
	    make_ref(b, b->a1g, 0, SHMA_END, &b->refs[K_1G]) ||
	    make_ref(b, b->a1g, ONE_ELEM, ONE_ELEM + 1, &b->refs[K_ELEM]))
		return -1;
	/* the bytes go out of this mapping by send(2): make it resident */
	err = shma_prefault(shma_array_data(b->a1g), (size_t)N1G * 8, 0);
	if (err)
		return bench_fail("shma_prefault of 1 GiB: %s", shma_strerror(err));
	printf("arrays committed at revision %" PRIu64 " (1 MiB all written, 1 GiB one element "
	       "per block) in %.0f ms\n",
	       rev, (double)(bench_now_ns() - t0) / 1e6);
	return 0;
}

static int get_reply(struct bench *b, struct hreply *rep)
{
	int len = zmq_recv(b->pull, rep, sizeof(*rep), 0);

	if (len < 0)
		return bench_fail("no reply from the consumer: %s", zmq_strerror(zmq_errno()));
	if (len != (int)sizeof(*rep))
		return bench_fail("a reply of %d bytes", len);
	return 0;
}

/* Tell the consumer what the next n messages are; wait for its "ok". */
static int control(struct bench *b, const char *what, size_t n)
{
	char ctl[64], ok[8];
	int len = snprintf(ctl, sizeof(ctl), "%s %zu", what, n);

	if (zsend(b->push, ctl, (size_t)len))
		return bench_fail("send control: %s", zmq_strerror(zmq_errno()));
	len = zmq_recv(b->pull, ok, sizeof(ok), 0);
	if (len != 2 || memcmp(ok, "ok", 2))
		return bench_fail("the consumer did not take \"%s\"", ctl);
	return 0;
}

/* The length of a ref's view, and its element i's index in the array. */
static uint64_t ref_len(const struct shma_ref *r)
{
	return r->shape[0];
}

static uint64_t ref_elem(const struct shma_ref *r, uint64_t i)
{
	return (r->offset + i * (uint64_t)r->strides[0]) / 8;
}

/* n round trips of kind k; recorded if timed.  *seq counts the handoffs
 * (the consumer's pick() counter). */
static int run_block(struct bench *b, enum kind k, size_t n, bool timed, uint64_t *seq)
{
	const struct shma_ref *r = &b->refs[k];
	uint64_t arr_n = k == K_1M ? N1M : N1G;
	char msg[64];

	memset(msg, 0x42, sizeof(msg));
	if (control(b, kind_name[k], n))
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct hreply rep;
		uint64_t t0, t1;
		int err;

		t0 = bench_now_ns();
		if (k == K_BARE)
			err = zsend(b->push, msg, sizeof(msg));
		else
			err = shma_ref_send(b->push, r, 0);
		if (err)
			return bench_fail("send: %s", zmq_strerror(-err));
		if (get_reply(b, &rep))
			return -1;
		t1 = bench_now_ns();
		if (k == K_BARE) {
			if (memcmp(&rep, msg, sizeof(msg)))
				return bench_fail("the bare message came back changed");
		} else {
			uint64_t want_i = pick((*seq)++, ref_len(r));
			double want = expected(ref_elem(r, want_i), arr_n);

			if (rep.status)
				return bench_fail("consumer, %s ref: %s",
						  k == K_1M ? "1 MiB" : "1 GiB",
						  shma_strerror(rep.status));
			if (rep.index != want_i || rep.value != want || rep.revision != r->revision)
				return bench_fail("consumer read element %" PRIu64 " = %g at "
						  "revision %" PRIu64 ", expected element %" PRIu64
						  " = %g at %" PRIu64,
						  rep.index, rep.value, rep.revision, want_i, want,
						  r->revision);
		}
		if (timed) {
			size_t j = b->nrt[k]++;

			b->rt[k][j] = t1 - t0;
			b->open_ns[k][j] = rep.open_ns;
			b->read_ns[k][j] = rep.read_ns;
			b->close_ns[k][j] = rep.close_ns;
		}
	}
	return 0;
}

static int run_round_trips(struct bench *b)
{
	size_t per = b->iter / PASSES, extra = b->iter % PASSES;
	uint64_t seq = 0;

	for (int k = 0; k < NKINDS; k++)
		if (run_block(b, (enum kind)k, WARMUP, false, &seq))
			return -1;
	for (size_t p = 0; p < PASSES; p++) {
		size_t n = per + (p < extra);

		/* odd passes in reverse order: no kind always follows another */
		for (int q = 0; q < NKINDS; q++) {
			int k = p % 2 ? NKINDS - 1 - q : q;

			if (n && run_block(b, (enum kind)k, n, true, &seq))
				return -1;
		}
	}
	return 0;
}

/* The 1 GiB of bytes, ROUNDS times (zero-copy from the array's mapping). */
static void no_free(void *data, void *hint)
{
	(void)data;
	(void)hint;
}

static int run_bytes(struct bench *b)
{
	void *data = shma_array_data(b->a1g);

	if (control(b, "bytes", b->rounds))
		return -1;
	for (size_t i = 0; i < b->rounds; i++) {
		struct hreply rep;
		uint64_t t0, t1, want_i = pick(i, N1G);
		zmq_msg_t m;

		t0 = bench_now_ns();
		if (zmq_msg_init_data(&m, data, (size_t)N1G * 8, no_free, NULL))
			return bench_fail("zmq_msg_init_data: %s", zmq_strerror(zmq_errno()));
		if (zmq_msg_send(&m, b->push, 0) < 0) {
			zmq_msg_close(&m);
			return bench_fail("send of 1 GiB: %s", zmq_strerror(zmq_errno()));
		}
		if (get_reply(b, &rep))
			return -1;
		t1 = bench_now_ns();
		if (rep.status || rep.index != want_i || rep.value != expected(want_i, N1G))
			return bench_fail("the consumer got other bytes (status %d)", rep.status);
		b->bytes_ns[i] = t1 - t0;
		printf("  1 GiB through ipc, round %zu: %.1f ms (%.2f GB/s)\n", i + 1,
		       (double)(t1 - t0) / 1e6, (double)((uint64_t)N1G * 8) / (double)(t1 - t0));
	}
	return 0;
}

/* ---- report ----------------------------------------------------------------------- */

/* Median in microseconds (sorts v). */
static double median_us(uint64_t *v, size_t n)
{
	if (!n)
		return 0;
	bench_sort_u64(v, n);
	return (n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2) / 1e3;
}

static double pct_us(const uint64_t *sorted, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);

	return n ? (double)sorted[i] / 1e3 : 0;
}

static void row(const char *name, double v, double base, double ratio, const char *goal,
		const char *result)
{
	char bs[32] = "-", rs[32] = "-";

	if (base > 0)
		snprintf(bs, sizeof(bs), "%.1f", base);
	if (ratio > 0)
		snprintf(rs, sizeof(rs), "%.2f", ratio);
	printf("%-42s %12.1f %12s %9s %8s  %s\n", name, v, bs, rs, goal, result);
}

static void report(struct bench *b)
{
	double bare, h1m, h1g, elem, bytes_us;
	char ratio_goal[16];

	bare = median_us(b->rt[K_BARE], b->nrt[K_BARE]);
	h1m = median_us(b->rt[K_1M], b->nrt[K_1M]);
	h1g = median_us(b->rt[K_1G], b->nrt[K_1G]);
	elem = median_us(b->rt[K_ELEM], b->nrt[K_ELEM]);
	bytes_us = median_us(b->bytes_ns, b->rounds);

	printf("\nround trips, us (median of %zu; p10 / p90):\n", b->iter);
	for (int k = 0; k < NKINDS; k++) {
		static const char *const names[NKINDS] = { "bare 64 B", "handoff 1 MiB",
							   "handoff 1 GiB", "handoff 1 elem of 1 GiB" };

		printf("  %-26s %9.1f  (%.1f / %.1f)", names[k], median_us(b->rt[k], b->nrt[k]),
		       pct_us(b->rt[k], b->nrt[k], 0.1), pct_us(b->rt[k], b->nrt[k], 0.9));
		if (k != K_BARE)
			printf("   consumer: open %.1f, read %.1f, close %.1f",
			       median_us(b->open_ns[k], b->nrt[k]), median_us(b->read_ns[k], b->nrt[k]),
			       median_us(b->close_ns[k], b->nrt[k]));
		printf("\n");
	}
	printf("\n%-42s %12s %12s %9s %8s  %s\n", "figure", "value us", "baseline us", "ratio",
	       "goal", "result");
	row("bare 64 B ipc round trip (baseline)", bare, 0, 0, "-", "-");
	snprintf(ratio_goal, sizeof(ratio_goal), "<= %.0f", GOAL_BARE);
	row("handoff 1 MiB round trip / bare", h1m, bare, h1m / bare, ratio_goal,
	    h1m / bare <= GOAL_BARE ? "ok" : "MISSED");
	row("handoff 1 GiB round trip / bare", h1g, bare, h1g / bare, ratio_goal,
	    h1g / bare <= GOAL_BARE ? "ok" : "MISSED");
	snprintf(ratio_goal, sizeof(ratio_goal), "<= %.1f", GOAL_SIZE);
	row("handoff 1 GiB / handoff 1 MiB", h1g, h1m, h1g / h1m, ratio_goal,
	    h1g / h1m <= GOAL_SIZE ? "ok" : "MISSED");
	snprintf(ratio_goal, sizeof(ratio_goal), ">= %.0f", GOAL_BYTES);
	row("1 GiB of bytes through ipc / handoff 1 GiB", bytes_us, h1g, bytes_us / h1g,
	    ratio_goal, bytes_us / h1g >= GOAL_BYTES ? "ok" : "MISSED");
	row("handoff 1 element of 1 GiB / bare", elem, bare, elem / bare, "(info)", "-");

	/* the same figures, for the report (bench/run.sh) */
	bench_report("handoff", "handoff 1 MiB round trip vs bare 64 B ipc round trip", "us", h1m,
		     bare, '<', GOAL_BARE);
	bench_report("handoff", "handoff 1 GiB round trip vs bare 64 B ipc round trip", "us", h1g,
		     bare, '<', GOAL_BARE);
	bench_report("handoff", "handoff 1 GiB vs handoff 1 MiB", "us", h1g, h1m, '<', GOAL_SIZE);
	bench_report("handoff", "1 GiB of bytes through ipc vs handoff 1 GiB", "us", bytes_us, h1g,
		     '>', GOAL_BYTES);
	bench_report("handoff", "handoff 1 element of 1 GiB vs bare", "us", elem, bare, 0, 0);
}

/* ---- main ------------------------------------------------------------------------- */

static int alloc(struct bench *b)
{
	for (int k = 0; k < NKINDS; k++) {
		b->rt[k] = calloc(b->iter, sizeof(uint64_t));
		b->open_ns[k] = calloc(b->iter, sizeof(uint64_t));
		b->read_ns[k] = calloc(b->iter, sizeof(uint64_t));
		b->close_ns[k] = calloc(b->iter, sizeof(uint64_t));
		if (!b->rt[k] || !b->open_ns[k] || !b->read_ns[k] || !b->close_ns[k])
			return bench_fail("out of memory");
	}
	b->bytes_ns = calloc(b->rounds, sizeof(uint64_t));
	return b->bytes_ns ? 0 : bench_fail("out of memory");
}

/* Stop everything that was started; -1 if something did not stop cleanly. */
static int teardown(struct bench *b, bool ok)
{
	int ret = 0, status = 0;

	if (b->consumer > 0) {
		/* a clean run asked it to quit; give it a moment, then kill */
		if (ok && b->push)
			zsend(b->push, "quit", 4);
		for (int i = 0; i < 500; i++) {
			if (waitpid(b->consumer, &status, WNOHANG) == b->consumer)
				break;
			if (i == 499 || !ok) {
				kill(b->consumer, SIGKILL);
				waitpid(b->consumer, &status, 0);
				break;
			}
			usleep(10000);
		}
		if (ok && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
			ret = bench_fail("the consumer failed (status %d)", status);
		b->consumer = 0;
	}
	if (b->push)
		zmq_close(b->push);
	if (b->pull)
		zmq_close(b->pull);
	if (b->ctx)
		zmq_ctx_term(b->ctx);
	shma_close(&b->a1m);
	shma_close(&b->a1g);
	shma_disconnect(&b->c);
	if (b->started && bench_broker_stop(&b->h))
		ret = -1;
	for (int k = 0; k < NKINDS; k++) {
		free(b->rt[k]);
		free(b->open_ns[k]);
		free(b->read_ns[k]);
		free(b->close_ns[k]);
	}
	free(b->bytes_ns);
	return ret;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_handoff [-n ITER] [-r ROUNDS]\n"
		"  -n ITER    timed round trips of each kind, after a warm-up of %d;\n"
		"             the median is reported (default %d)\n"
		"  -r ROUNDS  times the 1 GiB of bytes is sent (default %d)\n",
		WARMUP, DEF_ITER, DEF_ROUNDS);
}

int main(int argc, char **argv)
{
	struct bench b = { .iter = DEF_ITER, .rounds = DEF_ROUNDS };
	bool ok = false;
	int opt, ret = 1;

	bench_set_name("bench_handoff");
	while ((opt = getopt(argc, argv, "n:r:h")) != -1) {
		switch (opt) {
		case 'n':
			if (!bench_parse_count(optarg, 10, MAX_ITER, &b.iter))
				goto bad_args;
			break;
		case 'r':
			if (!bench_parse_count(optarg, 10, MAX_ROUNDS, &b.rounds))
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

	printf("bench_handoff: %zu round trips per kind, %zu x 1 GiB of bytes\n", b.iter,
	       b.rounds);
	fflush(stdout);
	if (alloc(&b) || start(&b) || setup_arrays(&b) || run_round_trips(&b) ||
	    run_bytes(&b))
		goto out;
	ok = true;
	report(&b);
	ret = 0;
out:
	if (teardown(&b, ok))
		ret = 1;
	return ret;

bad_args:
	usage(stderr);
	return 2;
}
