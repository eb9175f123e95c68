/* test_store_crash.c - the durable store under SIGKILL (issue #6): "several
 * workers commit in a loop while the broker is killed with SIGKILL at
 * random moments, 20+ rounds; after each restart every commit that was
 * acknowledged is present with correct content (checksums), and no
 * unacknowledged commit is partly visible."
 *
 * Two arrays of uint64: A (64 KiB blocks) and B (16 KiB blocks).  Worker w
 * (a forked process using libshm) owns blocks 2w and 2w+1 of A and block w
 * of B.  Its transaction number k goes up by one with every attempt; the
 * transaction writes k into every element of its three blocks but the last
 * of each, which holds a checksum of (w, array, block, k), and commits: one
 * commit, two arrays, 36 pages.  Before the commit the worker records k as
 * attempted, after shma_commit returned 0 as acknowledged (with the
 * revision), in a page shared with the parent.  When the broker is gone its
 * calls fail; it reconnects (shma_reconnect) until the broker is back, and
 * then checks its own blocks as the new broker shows them.
 *
 * The parent kills the broker (SIGKILL) 50-400 ms into each round, pauses the
 * workers (they park between transactions), starts the broker again on the
 * same store and checks through a fresh raw connection: same store id; the
 * head at least every acknowledged revision; for every worker, its three
 * blocks hold one and the same k in every element with right checksums
 * (never half a commit, never two commits mixed), and acked <= k <=
 * attempted; the parent's own commit of the previous round is there; the
 * next commit gets head + 1.  Then the workers go on.
 *
 * Besides: a catalog worker (raw protocol) creates cat<n> and deletes
 * cat<n-1> in a loop, and after each restart the arrays cat* are what its
 * acknowledged creates and deletes say (an unanswered one either way); the
 * head is at least what a reader saw (stats) and what the invalidation
 * stream announced just before the kill; and every third round a broker is
 * started and killed 0-40 ms later, in the middle of its recovery, before the
 * real restart.
 *
 * Environment: SHMA_STORE_CRASH_ROUNDS (default 20), SHMA_STORE_CRASH_WORKERS
 * (default 4, at most 16).
 */
#include "itest.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <sys/prctl.h>

#include <zmq.h>

#include "shma.h"

#define MAX_WORKERS 16
#define A_BS (64u * 1024)
#define B_BS (16u * 1024)
#define MAX_REPORTS 5

static struct harness broker;

struct wstate {
	_Atomic uint64_t attempted; /* the last k tried (0: none yet) */
	_Atomic uint64_t acked;	    /* the last k whose commit returned 0 */
	_Atomic uint64_t acked_rev; /* its revision */
	_Atomic uint64_t commits, disconnects, reconnects, errors, violations;
	_Atomic int parked;	    /* 1 while waiting in a pause */
	_Atomic int ready;	    /* connected at least once */
};

/* The catalog worker: creates cat<n>, then deletes cat<n-1>, n = 1, 2, ... */
struct cstate {
	_Atomic uint64_t c_att, c_ack; /* the last create tried / acknowledged */
	_Atomic uint64_t d_att, d_ack; /* the last delete tried / acknowledged */
	_Atomic uint64_t ops, errors;
	_Atomic int parked, ready;
};

struct ctl {
	_Atomic int pause, stop;
	struct wstate w[MAX_WORKERS];
	struct cstate cat;
};

static struct ctl *ctl;
static pid_t workers[MAX_WORKERS + 1]; /* the last one: the catalog worker */
static int nworkers;
static pid_t test_pid;
static pid_t doomed = -1; /* a broker started to be killed in its recovery */
static void *zctx, *zsub;

static int teardown(void **state)
{
	(void)state;
	if (getpid() != test_pid)
		_exit(4); /* a worker that got back into cmocka */
	for (int i = 0; i <= MAX_WORKERS; i++)
		if (workers[i] > 0) {
			kill(workers[i], SIGKILL);
			waitpid(workers[i], NULL, 0);
			workers[i] = 0;
		}
	if (doomed > 0) {
		kill(doomed, SIGKILL);
		waitpid(doomed, NULL, 0);
		doomed = -1;
	}
	if (zsub)
		zmq_close(zsub);
	if (zctx)
		zmq_ctx_term(zctx);
	zsub = zctx = NULL;
	if (ctl) {
		munmap(ctl, sizeof(*ctl));
		ctl = NULL;
	}
	return it_teardown_harness(&broker);
}

static long env_long(const char *name, long dflt, long lo, long hi)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (!s || !*s)
		return dflt;
	v = strtol(s, &end, 10);
	return (*end || v < lo || v > hi) ? dflt : v;
}

/* The checksum element of worker w's block blk of array arr ('A' or 'B') at
 * transaction k (k = 0: the block was never written, all zeros). */
static uint64_t sum_of(int w, char arr, uint64_t blk, uint64_t k)
{
	uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)w << 48) ^ ((uint64_t)(unsigned char)arr << 40) ^
		     (blk << 20) ^ k;

	if (k == 0)
		return 0;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h | 1; /* never 0 */
}

/* The k one block holds, or UINT64_MAX if it is not one transaction's
 * (elements differ, or the checksum is wrong). */
static uint64_t block_k(const volatile uint64_t *p, size_t n, int w, char arr, uint64_t blk)
{
	uint64_t k = p[0];

	for (size_t i = 1; i + 1 < n; i++)
		if (p[i] != k)
			return UINT64_MAX;
	return p[n - 1] == sum_of(w, arr, blk, k) ? k : UINT64_MAX;
}

/* ---- a worker ---------------------------------------------------------------- */

static void wsay(int w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wsay(int w, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "worker %d (pid %d): ", w, (int)getpid());
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", buf);
}

/* Its blocks as this connection shows them: all one k within bounds. */
static void worker_check(int w, struct wstate *ws, shma_array *a, shma_array *b, unsigned *said)
{
	const volatile uint64_t *pa = shma_array_data(a), *pb = shma_array_data(b);
	uint64_t k0 = block_k(pa + (size_t)(2 * w) * (A_BS / 8), A_BS / 8, w, 'A', 2 * (uint64_t)w);
	uint64_t k1 = block_k(pa + (size_t)(2 * w + 1) * (A_BS / 8), A_BS / 8, w, 'A',
			      2 * (uint64_t)w + 1);
	uint64_t k2 = block_k(pb + (size_t)w * (B_BS / 8), B_BS / 8, w, 'B', (uint64_t)w);
	uint64_t acked = atomic_load(&ws->acked), att = atomic_load(&ws->attempted);

	if (k0 == UINT64_MAX || k0 != k1 || k0 != k2 || k0 < acked || k0 > att) {
		atomic_fetch_add(&ws->violations, 1);
		if ((*said)++ < MAX_REPORTS)
			wsay(w, "after reconnecting (snapshot %" PRIu64 ") my blocks hold k %" PRId64
			     " %" PRId64 " %" PRId64 " (-1: torn or bad checksum); acked %" PRIu64
			     ", attempted %" PRIu64, shma_array_revision(a), (int64_t)k0, (int64_t)k1,
			     (int64_t)k2, acked, att);
	}
}

static void fill(volatile uint64_t *p, size_t n, int w, char arr, uint64_t blk, uint64_t k)
{
	for (size_t i = 0; i + 1 < n; i++)
		p[i] = k;
	p[n - 1] = sum_of(w, arr, blk, k);
}

static void worker_main(int w)
{
	struct wstate *ws = &ctl->w[w];
	shma_conn *c = NULL;
	shma_array *a = NULL, *b = NULL;
	bool lost = false;
	unsigned said = 0;
	int e;

	/* die of its own faults; never outlive the test */
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	signal(SIGABRT, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (shma_vm_install_handler())
		_exit(2);

	while (!atomic_load(&ctl->stop)) {
		uint64_t k, rev;

		if (atomic_load(&ctl->pause)) {
			atomic_store(&ws->parked, 1);
			while (atomic_load(&ctl->pause) && !atomic_load(&ctl->stop))
				it_sleep_ms(1);
			atomic_store(&ws->parked, 0);
			continue;
		}
		if (!c) {
			e = shma_connect(broker.socket, NULL, &c);
			if (!e)
				e = shma_open(c, "A", &a);
			if (!e)
				e = shma_open(c, "B", &b);
			if (e) {
				wsay(w, "first connection: %s (%s)", shma_strerror(e),
				     c ? shma_conn_error(c) : shma_last_error());
				_exit(2);
			}
			atomic_store(&ws->ready, 1);
		}
		if (lost) {
			e = shma_reconnect(c);
			if (e) {
				it_sleep_ms(5);
				continue;
			}
			lost = false;
			atomic_fetch_add(&ws->reconnects, 1);
			worker_check(w, ws, a, b, &said);
		}

		k = atomic_load(&ws->attempted) + 1;
		{
			volatile uint64_t *pa = shma_array_data(a), *pb = shma_array_data(b);

			fill(pa + (size_t)(2 * w) * (A_BS / 8), A_BS / 8, w, 'A', 2 * (uint64_t)w, k);
			fill(pa + (size_t)(2 * w + 1) * (A_BS / 8), A_BS / 8, w, 'A',
			     2 * (uint64_t)w + 1, k);
			fill(pb + (size_t)w * (B_BS / 8), B_BS / 8, w, 'B', (uint64_t)w, k);
		}
		atomic_store(&ws->attempted, k);
		e = shma_commit(c, &rev);
		if (e == 0) {
			atomic_store(&ws->acked, k);
			atomic_store(&ws->acked_rev, rev);
			atomic_fetch_add(&ws->commits, 1);
			continue;
		}
		if (e == SHMA_EDISCONNECTED) {
			atomic_fetch_add(&ws->disconnects, 1);
		} else {
			atomic_fetch_add(&ws->errors, 1);
			if (said++ < MAX_REPORTS)
				wsay(w, "commit of k %" PRIu64 " (snapshot %" PRIu64 "): %s (%s)", k,
				     shma_revision(c), shma_strerror(e), shma_conn_error(c));
		}
		shma_abort(c);
		lost = true; /* start over on a fresh connection either way */
	}
	shma_close(&a);
	shma_close(&b);
	shma_disconnect(&c);
	_exit(0);
}

/* ---- the catalog worker ------------------------------------------------------------ */

static void catalog_main(void)
{
	struct cstate *cs = &ctl->cat;
	struct tclient c = { .fd = -1, .pool_fd = -1 };
	uint64_t n = 1;
	bool conn = false, creating = true, retry = false;
	unsigned said = 0;

	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	signal(SIGABRT, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (!atomic_load(&ctl->stop)) {
		const char *code;
		json_t *r;
		bool done;

		if (atomic_load(&ctl->pause)) {
			atomic_store(&cs->parked, 1);
			while (atomic_load(&ctl->pause) && !atomic_load(&ctl->stop))
				it_sleep_ms(1);
			atomic_store(&cs->parked, 0);
			continue;
		}
		if (!conn) {
			if (tclient_open(&c, broker.socket)) {
				it_sleep_ms(5);
				continue;
			}
			conn = true;
			atomic_store(&cs->ready, 1);
		}
		if (creating) {
			atomic_store(&cs->c_att, n);
			r = tclient_call(&c, NULL, 0, NULL, NULL,
					 "{\"op\":\"create\",\"name\":\"cat%" PRIu64 "\",\"dtype\":\"|u1\","
					 "\"shape\":[4096]}", n);
		} else {
			atomic_store(&cs->d_att, n - 1);
			r = tclient_call(&c, NULL, 0, NULL, NULL,
					 "{\"op\":\"delete\",\"name\":\"cat%" PRIu64 "\"}", n - 1);
		}
		if (!r) { /* no answer: the broker died; try the same again */
			tclient_close(&c);
			conn = false;
			retry = true;
			continue;
		}
		code = reply_code(r);
		/* a retried change that the dead broker had made: done as well */
		done = reply_ok(r) || (retry && !strcmp(code, creating ? "exists" : "not_found"));
		if (!done) {
			atomic_fetch_add(&cs->errors, 1);
			if (said++ < MAX_REPORTS)
				fprintf(stderr, "catalog worker: %s cat%" PRIu64 ": %s (%s)\n",
					creating ? "create" : "delete", creating ? n : n - 1, code,
					json_string_value(json_object_get(json_object_get(r, "error"),
									  "message")));
			json_decref(r);
			it_sleep_ms(10);
			continue;
		}
		json_decref(r);
		retry = false;
		atomic_fetch_add(&cs->ops, 1);
		if (creating) {
			atomic_store(&cs->c_ack, n);
			if (n == 1)
				n++;
			else
				creating = false;
		} else {
			atomic_store(&cs->d_ack, n - 1);
			n++;
			creating = true;
		}
	}
	if (conn)
		tclient_close(&c);
	_exit(0);
}

/* The cat* arrays at the head agree with what the catalog worker was told. */
static int check_catalog(struct tclient *c, int round)
{
	struct cstate *cs = &ctl->cat;
	uint64_t c_att = atomic_load(&cs->c_att), c_ack = atomic_load(&cs->c_ack);
	uint64_t d_att = atomic_load(&cs->d_att), d_ack = atomic_load(&cs->d_ack);
	unsigned char *seen = calloc(c_att + 2, 1);
	json_t *r = it_ok(c, "{\"op\":\"list\"}"), *e;
	size_t i;
	int bad = 0;

	assert_non_null(seen);
	json_array_foreach(json_object_get(r, "arrays"), i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		uint64_t n;

		if (strncmp(name, "cat", 3))
			continue;
		n = strtoull(name + 3, NULL, 10);
		if (n == 0 || n > c_att) {
			fprintf(stderr, "round %d: %s exists, but only cat1..cat%" PRIu64
				" were ever created\n", round, name, c_att);
			bad++;
			continue;
		}
		seen[n] = 1;
	}
	json_decref(r);
	for (uint64_t n = 1; n <= c_att; n++) {
		/* an unanswered create or delete may have been made or not */
		bool unsure = (n == c_att && c_att > c_ack) || (n == d_att && d_att > d_ack);
		bool want = n > d_ack && n <= c_ack;

		if (seen[n] != want && !unsure) {
			fprintf(stderr, "round %d: cat%" PRIu64 " is %s (creates: acknowledged up to %"
				PRIu64 ", tried %" PRIu64 "; deletes: acknowledged up to %" PRIu64
				", tried %" PRIu64 ")\n", round, n, seen[n] ? "there" : "missing",
				c_ack, c_att, d_ack, d_att);
			bad++;
		}
	}
	free(seen);
	return bad;
}

/* ---- the parent -------------------------------------------------------------- */

/* The newest revision the invalidation stream has announced so far. */
static uint64_t drain_invalidations(const char *store0)
{
	static uint64_t newest;

	for (;;) {
		zmq_msg_t m;
		json_t *j;
		int more = 0;
		size_t ml = sizeof(more);

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, zsub, ZMQ_DONTWAIT) < 0) { /* the topic */
			zmq_msg_close(&m);
			break;
		}
		zmq_getsockopt(zsub, ZMQ_RCVMORE, &more, &ml);
		zmq_msg_close(&m);
		if (!more)
			continue;
		zmq_msg_init(&m);
		assert_true(zmq_msg_recv(&m, zsub, 0) >= 0);
		j = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
		zmq_msg_close(&m);
		assert_non_null(j);
		assert_string_equal(json_string_value(json_object_get(j, "store")), store0);
		if ((uint64_t)json_integer_value(json_object_get(j, "revision")) > newest)
			newest = (uint64_t)json_integer_value(json_object_get(j, "revision"));
		json_decref(j);
	}
	return newest;
}

/* Start a broker on the store and SIGKILL it after ms milliseconds, up or
 * not (in the middle of its recovery, most likely). */
static void start_and_kill(int ms)
{
	doomed = harness_spawn(&broker, broker.log);
	assert_true(doomed > 0);
	it_sleep_ms(ms);
	kill(doomed, SIGKILL);
	waitpid(doomed, NULL, 0);
	doomed = -1;
}

static void set_pause(bool on)
{
	uint64_t end = it_now_ms() + 15000;

	atomic_store(&ctl->pause, on ? 1 : 0);
	if (!on)
		return;
	for (int w = 0; w <= nworkers; w++)
		while (!atomic_load(w < nworkers ? &ctl->w[w].parked : &ctl->cat.parked)) {
			int status;

			if (waitpid(workers[w], &status, WNOHANG) == workers[w]) {
				workers[w] = 0;
				fail_msg("worker %d ended (%s %d)", w,
					 WIFEXITED(status) ? "exit" : "signal",
					 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
			}
			if (it_now_ms() > end)
				fail_msg("worker %d did not pause within 15 s", w);
			it_sleep_ms(1);
		}
}

struct totals {
	uint64_t rounds, unacked_present, in_flight;
};

/* Read a block of array `name` from the table in `blocks` (a hole: zeros). */
static void read_block(struct tclient *c, const json_t *blocks, uint64_t blk, size_t bs,
		       uint64_t *out)
{
	long long off = it_block_off(blocks, blk);

	if (off == -1) {
		memset(out, 0, bs);
		return;
	}
	assert_true(off >= 0);
	assert_int_equal(pread(c->pool_fd, out, bs, (off_t)off), (ssize_t)bs);
}

/* The state the restarted broker shows, workers paused. */
static void verify(const char *store0, long long *parent_rev, uint32_t parent_tag,
		   uint64_t seen_head, struct totals *t, int round)
{
	static uint64_t bufa[A_BS / 8], bufb[B_BS / 8];
	struct tclient c;
	json_t *r, *ta, *tb;
	long long head;
	uint64_t max_acked_rev = (uint64_t)*parent_rev;
	int fds[4], nfds = 0, bad = 0;

	assert_int_equal(tclient_connect(&c, broker.socket), 0);
	r = tclient_call(&c, NULL, 0, fds, &nfds, "{\"op\":\"hello\",\"version\":1}");
	assert_true(reply_ok(r));
	assert_int_equal(nfds, 1);
	c.pool_fd = fds[0];
	c.max_message = (size_t)reply_int(r, "max_message");
	assert_string_equal(json_string_value(json_object_get(r, "store")), store0);
	head = reply_int(r, "revision");
	json_decref(r);

	for (int w = 0; w < nworkers; w++)
		if (atomic_load(&ctl->w[w].acked_rev) > max_acked_rev)
			max_acked_rev = atomic_load(&ctl->w[w].acked_rev);
	if ((uint64_t)head < max_acked_rev)
		fail_msg("round %d: head %lld after the restart, but revision %" PRIu64
			 " was acknowledged", round, head, max_acked_rev);
	if ((uint64_t)head < seen_head)
		fail_msg("round %d: head %lld after the restart, but revision %" PRIu64
			 " was seen (stats, invalidations) before the kill", round, head, seen_head);
	bad += check_catalog(&c, round);

	r = it_ok(&c, "{\"op\":\"open\",\"name\":\"A\"}");
	ta = json_incref(json_object_get(r, "blocks"));
	json_decref(r);
	r = it_ok(&c, "{\"op\":\"open\",\"name\":\"B\"}");
	tb = json_incref(json_object_get(r, "blocks"));
	json_decref(r);
	for (int w = 0; w < nworkers; w++) {
		struct wstate *ws = &ctl->w[w];
		uint64_t acked = atomic_load(&ws->acked), att = atomic_load(&ws->attempted), k[3];

		read_block(&c, ta, 2 * (uint64_t)w, A_BS, bufa);
		k[0] = block_k(bufa, A_BS / 8, w, 'A', 2 * (uint64_t)w);
		read_block(&c, ta, 2 * (uint64_t)w + 1, A_BS, bufa);
		k[1] = block_k(bufa, A_BS / 8, w, 'A', 2 * (uint64_t)w + 1);
		read_block(&c, tb, (uint64_t)w, B_BS, bufb);
		k[2] = block_k(bufb, B_BS / 8, w, 'B', (uint64_t)w);
		if (k[0] == UINT64_MAX || k[0] != k[1] || k[0] != k[2] || k[0] < acked ||
		    k[0] > att) {
			fprintf(stderr, "round %d: worker %d's blocks hold k %" PRId64 " %" PRId64
				" %" PRId64 " (-1: torn or bad checksum); acknowledged %" PRIu64
				", attempted %" PRIu64 "\n", round, w, (int64_t)k[0], (int64_t)k[1],
				(int64_t)k[2], acked, att);
			bad++;
			continue;
		}
		t->unacked_present += k[0] > acked;
		t->in_flight += att > acked;
	}
	json_decref(ta);
	json_decref(tb);

	/* the parent's commit of the last round, and a new one: head + 1 */
	if (*parent_rev > 0) {
		long long off = it_open_block(&c, "P", 0);

		if (off < 0 || !it_block_page_is(&c, (uint64_t)off, 0, parent_tag))
			fail_msg("round %d: the parent's acknowledged commit (revision %lld) is lost",
				 round, *parent_rev);
	}
	{
		int fd = it_pages_memfd(parent_tag + 1, 0, 1);

		r = tclient_call(&c, &fd, 1, NULL, NULL,
				 "{\"op\":\"commit\",\"arrays\":[{\"name\":\"P\",\"blocks\":[{\"blk\":0,"
				 "\"runs\":[[0,1]],\"data\":0}]}]}");
		close(fd);
		if (!reply_ok(r))
			fail_msg("round %d: a commit after the restart failed", round);
		if (reply_int(r, "revision") != head + 1)
			fail_msg("round %d: head %lld after the restart, the next commit got %lld",
				 round, head, reply_int(r, "revision"));
		*parent_rev = reply_int(r, "revision");
		json_decref(r);
	}
	tclient_close(&c);
	if (bad)
		fail_msg("round %d: %d violation(s) of what was acknowledged (above)", round, bad);
}

static void test_crash_loop(void **state)
{
	long rounds = env_long("SHMA_STORE_CRASH_ROUNDS", 20, 1, 100000);
	uint64_t t0 = it_now_ms(), commits = 0, disc = 0, reconn = 0, errors = 0, viol = 0;
	struct totals t = { 0 };
	struct tclient c;
	long long parent_rev = 0;
	char *store0;
	json_t *r;
	int fds[4], nfds = 0;

	(void)state;
	test_pid = getpid();
	nworkers = (int)env_long("SHMA_STORE_CRASH_WORKERS", 4, 1, MAX_WORKERS);
	srand((unsigned)(getpid() ^ t0));
	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(ctl != MAP_FAILED);
	memset(ctl, 0, sizeof(*ctl));

	/* retention well above the 5 clients' one batch: see test_store.c,
	 * test_group_commit_snapshots */
	it_start(&broker, "{\"retention\":{\"revisions\":32,\"seconds\":0}}");
	assert_int_equal(tclient_connect(&c, broker.socket), 0);
	r = tclient_call(&c, NULL, 0, fds, &nfds, "{\"op\":\"hello\",\"version\":1}");
	assert_true(reply_ok(r));
	c.pool_fd = nfds ? fds[0] : -1;
	store0 = strdup(json_string_value(json_object_get(r, "store")));
	json_decref(r);
	it_ok_drop(&c, "{\"op\":\"create\",\"name\":\"A\",\"dtype\":\"<u8\",\"shape\":[%u],"
		   "\"block_size\":%u}", (unsigned)(2 * nworkers * (A_BS / 8)), A_BS);
	it_ok_drop(&c, "{\"op\":\"create\",\"name\":\"B\",\"dtype\":\"<u8\",\"shape\":[%u],"
		   "\"block_size\":%u}", (unsigned)(nworkers * (B_BS / 8)), B_BS);
	it_ok_drop(&c, "{\"op\":\"create\",\"name\":\"P\",\"dtype\":\"|u1\",\"shape\":[4096]}");
	tclient_close(&c);

	fflush(stdout);
	fflush(stderr);
	for (int w = 0; w < nworkers; w++) {
		workers[w] = fork();
		assert_true(workers[w] >= 0);
		if (workers[w] == 0)
			worker_main(w);
	}
	workers[nworkers] = fork();
	assert_true(workers[nworkers] >= 0);
	if (workers[nworkers] == 0)
		catalog_main();
	for (int w = 0; w <= nworkers; w++) { /* all connected before the first kill */
		uint64_t end = it_now_ms() + 15000;

		while (!atomic_load(w < nworkers ? &ctl->w[w].ready : &ctl->cat.ready)) {
			if (it_now_ms() > end)
				fail_msg("worker %d did not connect", w);
			it_sleep_ms(2);
		}
	}
	/* the parent listens to the stream (after the forks: no ZeroMQ threads
	 * in the children's copy) and keeps a reader connection */
	zctx = zmq_ctx_new();
	assert_non_null(zctx);
	zsub = zmq_socket(zctx, ZMQ_SUB);
	assert_non_null(zsub);
	assert_int_equal(zmq_setsockopt(zsub, ZMQ_SUBSCRIBE, "shma.inv", 8), 0);
	assert_int_equal(zmq_connect(zsub, broker.endpoint), 0);
	it_open_client(&c, &broker);

	for (int round = 1; round <= rounds; round++) {
		uint64_t seen;

		it_sleep_ms(50 + rand() % 351);
		seen = drain_invalidations(store0);
		/* every other round a read just before the kill: it sees durable
		 * revisions only (and, as it flushes the batch, narrows the window
		 * between a sync and its replies, so not every round) */
		if (round % 2 && (uint64_t)it_stat(&c, "head") > seen)
			seen = (uint64_t)it_stat(&c, "head");
		harness_kill(&broker);
		tclient_close(&c);
		set_pause(true);
		if (round % 3 == 0)
			start_and_kill(rand() % 41);
		if (harness_restart(&broker))
			fail_msg("round %d: the broker did not start again on its store; log %s", round,
				 broker.log);
		verify(store0, &parent_rev, (uint32_t)round, seen, &t, round);
		it_open_client(&c, &broker);
		t.rounds++;
		set_pause(false);
	}
	tclient_close(&c);

	/* the end: workers stop, one last look, a clean stop */
	atomic_store(&ctl->stop, 1);
	for (int w = 0; w <= nworkers; w++) {
		uint64_t end = it_now_ms() + 15000;
		int status = 0;
		pid_t p;

		while ((p = waitpid(workers[w], &status, WNOHANG)) == 0 && it_now_ms() < end)
			it_sleep_ms(2);
		if (p != workers[w])
			fail_msg("worker %d did not stop", w);
		workers[w] = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("worker %d ended with %s %d", w, WIFEXITED(status) ? "exit" : "signal",
				 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	}
	for (int w = 0; w < nworkers; w++) {
		commits += atomic_load(&ctl->w[w].commits);
		disc += atomic_load(&ctl->w[w].disconnects);
		reconn += atomic_load(&ctl->w[w].reconnects);
		errors += atomic_load(&ctl->w[w].errors);
		viol += atomic_load(&ctl->w[w].violations);
	}
	harness_kill(&broker); /* one more crash with nobody committing */
	if (harness_restart(&broker))
		fail_msg("the broker did not start again; log %s", broker.log);
	verify(store0, &parent_rev, (uint32_t)rounds + 1, 0, &t, (int)rounds + 1);
	printf("store crash: %" PRIu64 " rounds, %d workers, %.1f s: %" PRIu64
	       " acknowledged commits, %" PRIu64 " lost connections, %" PRIu64
	       " reconnects; at the kills %" PRIu64 " commits were in flight, %" PRIu64
	       " of them made it; errors %" PRIu64 ", violations seen by workers %" PRIu64
	       "; catalog: %" PRIu64 " creates/deletes, %" PRIu64 " errors\n",
	       t.rounds, nworkers, (double)(it_now_ms() - t0) / 1000, commits, disc, reconn,
	       t.in_flight, t.unacked_present, errors, viol, atomic_load(&ctl->cat.ops),
	       atomic_load(&ctl->cat.errors));
	errors += atomic_load(&ctl->cat.errors);
	free(store0);
	it_stop(&broker);
	assert_int_equal(errors, 0);
	assert_int_equal(viol, 0);
	assert_true(commits > 0);
	assert_true(reconn > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_crash_loop, teardown),
	};

	setvbuf(stdout, NULL, _IONBF, 0);
	return cmocka_run_group_tests_name("store_crash", tests, NULL, NULL);
}
