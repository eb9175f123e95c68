/* test_broker_lifecycle.c - shma-broker over time: many clients coming and
 * going (cleanly, abruptly, killed) leave nothing behind; signals stop it
 * cleanly; a second broker on the same configuration refuses to start; a
 * stale socket from a killed broker does not stop a new one; a stuck client
 * does not hold up the others; a test process that dies takes its broker
 * with it.
 */
#include "itest.h"

#include <sys/prctl.h>
#include <zmq.h>

#include "pub.h"

static struct harness broker;
static pid_t extra_pid = -1; /* a second broker or a child client, if running */

static int teardown(void **state)
{
	(void)state;
	if (extra_pid > 0) {
		kill(extra_pid, SIGKILL);
		waitpid(extra_pid, NULL, 0);
		extra_pid = -1;
	}
	return it_teardown_harness(&broker);
}

/* ---- helpers --------------------------------------------------------------- */

/* Wait for pid to exit within timeout_ms: its exit status, or -1 if it
 * was killed by a signal, or -2 if it is still running. */
static int wait_exit(pid_t pid, int timeout_ms)
{
	uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		assert_true(r == 0);
		if (it_now_ms() > end)
			return -2;
		it_sleep_ms(10);
	}
}

static bool file_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static const char *ipc_path(const struct harness *h)
{
	assert_memory_equal(h->endpoint, "ipc://", 6);
	return h->endpoint + 6;
}

/* A commit by c shows up as an invalidation on the broker's endpoint. */
static void assert_publishing(struct tclient *c, const struct harness *h, const char *array)
{
	void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
	bool seen = false;
	int linger = 0;

	zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof(linger));
	assert_int_equal(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, PUB_TOPIC, strlen(PUB_TOPIC)), 0);
	assert_int_equal(zmq_connect(sub, h->endpoint), 0);
	/* the subscription needs a moment to reach the publisher */
	for (int i = 0; i < 100 && !seen; i++) {
		zmq_pollitem_t it = { .socket = sub, .events = ZMQ_POLLIN };

		json_decref(it_ok(c, "{\"op\":\"sync\"}"));
		it_commit_ok(c, array, 0, 0, 1, (uint32_t)i);
		seen = zmq_poll(&it, 1, 50) > 0;
	}
	assert_true(seen);
	zmq_close(sub);
	zmq_ctx_term(ctx);
}

/* ---- (a) no leaks over many client lifetimes ------------------------------ */

struct snapshot {
	long long pins, slots, versions, clients, pool_used, leases;
	int fds;
	long rss_kb;
};

static void take(struct tclient *m, struct snapshot *s)
{
	json_t *r = it_ok(m, "{\"op\":\"stats\"}"), *st = json_object_get(r, "stats");

	s->pins = json_integer_value(json_object_get(st, "pins"));
	s->slots = json_integer_value(json_object_get(st, "slots"));
	s->versions = json_integer_value(json_object_get(st, "versions"));
	s->clients = json_integer_value(json_object_get(st, "clients"));
	s->pool_used = json_integer_value(json_object_get(st, "pool_used"));
	s->leases = json_integer_value(json_object_get(st, "leases"));
	json_decref(r);
	s->fds = it_fd_count(broker.pid);
	s->rss_kb = it_status_kb(broker.pid, "VmRSS");
}

static bool same(const struct snapshot *a, const struct snapshot *b)
{
	return a->pins == b->pins && a->slots == b->slots && a->versions == b->versions &&
	       a->clients == b->clients && a->pool_used == b->pool_used && a->fds == b->fds &&
	       a->leases == b->leases;
}

/* Bring the monitor's view to a fixed state: two commits of its own (so
 * retention keeps exactly block 0 at head and head - 1), then head. */
static void settle(struct tclient *m, uint32_t tag, struct snapshot *s, const struct snapshot *want)
{
	uint64_t end = it_now_ms() + 4000;

	json_decref(it_ok(m, "{\"op\":\"sync\"}"));
	it_commit_ok(m, "leak", 0, 0, IT_PPB, tag);
	it_commit_ok(m, "leak", 0, 0, IT_PPB, tag + 1);
	it_sync_head(m);
	for (;;) {
		take(m, s);
		if ((want && same(s, want)) || it_now_ms() > end)
			break;
		if (!want) { /* the baseline: wait until it is stable, leases gone */
			struct snapshot again;

			it_sleep_ms(100);
			take(m, &again);
			if (same(s, &again) && s->leases == 0)
				break;
		} else {
			it_sleep_ms(50);
		}
	}
}

/* A child that connects, says hello, opens, sends a commit (stage 2) or
 * not (1, 0: before hello), tells the parent on `ready` and waits to be
 * killed. */
static void child_client(const char *sock, int stage, int ready, uint32_t tag)
{
	struct tclient c;
	int data;

	if (stage == 0) {
		if (tclient_connect(&c, sock))
			_exit(1);
	} else {
		if (tclient_open(&c, sock))
			_exit(1);
		json_decref(it_call(&c, "{\"op\":\"open\",\"name\":\"leak\"}"));
	}
	if (stage == 2) {
		data = it_pages_memfd(tag, 3, 1);
		(void)tclient_send_raw(&c, "{\"op\":\"commit\",\"arrays\":[{\"name\":\"leak\",\"blocks\":"
				       "[{\"blk\":0,\"runs\":[[3,1]],\"data\":0}]}]}",
				       strlen("{\"op\":\"commit\",\"arrays\":[{\"name\":\"leak\",\"blocks\":"
					      "[{\"blk\":0,\"runs\":[[3,1]],\"data\":0}]}]}"),
				       &data, 1);
	}
	if (write(ready, "x", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static void one_cycle(unsigned i, long *conflicts)
{
	unsigned kind = i % 20;
	struct tclient c;
	json_t *r;
	int data;

	if (kind >= 17) { /* a child killed with SIGKILL mid-session */
		int p[2];
		char x;

		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		extra_pid = fork();
		assert_true(extra_pid >= 0);
		if (extra_pid == 0) {
			close(p[0]);
			child_client(broker.socket, (int)(kind - 17), p[1], i);
		}
		close(p[1]);
		assert_int_equal(read(p[0], &x, 1), 1);
		close(p[0]);
		kill(extra_pid, SIGKILL);
		waitpid(extra_pid, NULL, 0);
		extra_pid = -1;
		return;
	}
	it_open_client(&c, &broker);
	r = it_ok(&c, "{\"op\":\"open\",\"name\":\"leak\"}");
	if (kind == 1 || kind == 13) /* pins, never unpinned */
		json_decref(it_ok(&c, "{\"op\":\"open\",\"name\":\"leak\",\"pin\":true}"));
	if (kind == 4) { /* a pin, unpinned */
		json_t *p = it_ok(&c, "{\"op\":\"open\",\"name\":\"leak\",\"pin\":true}");

		json_decref(it_ok(&c, "{\"op\":\"unpin\",\"revision\":%lld}",
				  reply_int(p, "revision")));
		json_decref(p);
	}
	if (kind == 2) /* a short lease: it runs out after the client is gone */
		json_decref(it_ok(&c, "{\"op\":\"lease\",\"revision\":%lld,\"ms\":50}",
				  reply_int(r, "revision")));
	json_decref(r);
	data = it_pages_memfd(i, i % IT_PPB, 1);
	if (kind < 12) { /* clean: commit, read the reply, close */
		char text[200];

		snprintf(text, sizeof(text), "{\"op\":\"commit\",\"arrays\":[{\"name\":\"leak\","
			 "\"blocks\":[{\"blk\":0,\"runs\":[[%u,1]],\"data\":0}]}]}", i % IT_PPB);
		r = tclient_call(&c, &data, 1, NULL, NULL, "%s", text);
		assert_non_null(r);
		if (!reply_ok(r)) {
			assert_string_equal(reply_code(r), "conflict");
			(*conflicts)++;
		}
		json_decref(r);
		if (kind % 3 == 0)
			json_decref(it_ok(&c, "{\"op\":\"sync\"}"));
	} else if (kind < 15) { /* abrupt: the commit sent, gone before the reply */
		(void)tclient_send_raw(&c, "{\"op\":\"commit\",\"arrays\":[{\"name\":\"leak\",\"blocks\":"
				       "[{\"blk\":1,\"runs\":[[0,1]],\"data\":0}]}]}",
				       strlen("{\"op\":\"commit\",\"arrays\":[{\"name\":\"leak\",\"blocks\":"
					      "[{\"blk\":1,\"runs\":[[0,1]],\"data\":0}]}]}"),
				       &data, 1);
		if (kind == 13)
			shutdown(c.fd, SHUT_RDWR);
	} else { /* abrupt: requests in flight, a big one among them */
		char big[70000];

		memset(big, ' ', sizeof(big));
		memcpy(big, "{\"op\":\"stats\"", 13);
		big[sizeof(big) - 2] = '}';
		big[sizeof(big) - 1] = 0;
		(void)tclient_send_raw(&c, "{\"op\":\"sync\"}", 13, NULL, 0);
		(void)proto_send(c.fd, big, strlen(big), c.max_message, NULL, 0);
	}
	close(data);
	tclient_close(&c);
}

static void test_no_leaks_over_1000_clients(void **state)
{
	struct snapshot base, after;
	struct tclient m;
	long conflicts = 0;
	uint64_t t0;
	unsigned char page[IT_PAGE];
	long long off;

	(void)state;
	it_start(&broker, "{\"retention\":{\"revisions\":2,\"seconds\":0}}");
	it_open_client(&m, &broker);
	it_create(&m, "leak", 4 * IT_BLOCK, 0);
	for (unsigned i = 0; i < 20; i++) /* warm up: allocator, zmq, lists */
		one_cycle(i, &conflicts);
	settle(&m, 1000000, &base, NULL);
	assert_int_equal(base.clients, 1);
	assert_int_equal(base.pins, 1);
	assert_int_equal(base.slots, 3); /* block 0 at head and head - 1, block 1 */

	t0 = it_now_ms();
	for (unsigned i = 0; i < 1000; i++)
		one_cycle(i, &conflicts);
	fprintf(stderr, "1000 client lifetimes in %llu ms (%ld conflicts)\n",
		(unsigned long long)(it_now_ms() - t0), conflicts);
	/* every acknowledged commit was applied (those of clients gone before
	 * the reply may or may not be) */
	assert_true(it_stat(&m, "commits") + conflicts >= 614);
	assert_true(it_stat(&m, "commits") + conflicts <= 818);

	settle(&m, 2000000, &after, &base);
	if (!same(&after, &base))
		fprintf(stderr, "before/after: pins %lld/%lld slots %lld/%lld versions %lld/%lld "
			"clients %lld/%lld pool_used %lld/%lld fds %d/%d leases %lld/%lld\n",
			base.pins, after.pins, base.slots, after.slots, base.versions, after.versions,
			base.clients, after.clients, base.pool_used, after.pool_used, base.fds, after.fds,
			base.leases, after.leases);
	assert_int_equal(after.pins, base.pins);
	assert_int_equal(after.clients, base.clients);
	assert_int_equal(after.slots, base.slots);
	assert_int_equal(after.versions, base.versions);
	assert_int_equal(after.pool_used, base.pool_used);
	assert_int_equal(after.fds, base.fds);
	assert_int_equal(after.leases, 0);
	/* memory: a loose bound, far below what 1000 leaked clients would cost */
	fprintf(stderr, "broker VmRSS %ld kB -> %ld kB\n", base.rss_kb, after.rss_kb);
#ifdef __SANITIZE_ADDRESS__
	/* ASan's quarantine keeps freed memory: only a very loose bound */
	assert_true(after.rss_kb < base.rss_kb + 512 * 1024);
#else
	/* a broker under TSan (run-tests.sh runs these tests against one) keeps
	 * shadow memory and history: a loose bound there too */
	assert_true(after.rss_kb < base.rss_kb +
				   (getenv("SHMA_BROKER_SANITIZED") ? 512 : 32) * 1024);
#endif
	/* and the data is what the monitor committed last */
	off = it_open_block(&m, "leak", 0);
	for (uint32_t p = 0; p < IT_PPB; p++) {
		it_read_page(&m, (uint64_t)off + p * IT_PAGE, page);
		assert_true(it_page_is(page, 2000001, p));
	}

	tclient_close(&m);
	it_stop(&broker);
}

/* ---- (b) signals ----------------------------------------------------------- */

static void stop_with(int sig)
{
	struct tclient a, b;

	it_start(&broker, NULL);
	it_open_client(&a, &broker);
	it_create(&a, "sig", IT_BLOCK, 0);
	it_commit_ok(&a, "sig", 0, 0, 1, 1);
	assert_int_equal(tclient_connect(&b, broker.socket), 0); /* no hello yet */
	assert_true(file_exists(broker.socket));
	assert_true(file_exists(ipc_path(&broker)));

	assert_int_equal(kill(broker.pid, sig), 0);
	assert_int_equal(wait_exit(broker.pid, 10000), 0);
	broker.pid = -1;
	assert_false(file_exists(broker.socket));
	assert_false(file_exists(ipc_path(&broker)));
	/* its clients see the end */
	assert_true(it_wait_eof(a.fd, 2000));
	assert_true(it_wait_eof(b.fd, 2000));
	tclient_close(&a);
	tclient_close(&b);
	harness_cleanup(&broker);
}

static void test_sigterm(void **state)
{
	(void)state;
	stop_with(SIGTERM);
}

static void test_sigint(void **state)
{
	(void)state;
	stop_with(SIGINT);
}

/* ---- (c) one broker per configuration -------------------------------------- */

static void test_second_broker_refused(void **state)
{
	char log[400];
	struct tclient a;
	int st;

	(void)state;
	it_start(&broker, NULL);
	it_open_client(&a, &broker);
	it_create(&a, "one", IT_BLOCK, 0);
	it_commit_ok(&a, "one", 0, 0, 1, 1);

	snprintf(log, sizeof(log), "%s/second.log", broker.dir);
	extra_pid = harness_spawn(&broker, log); /* a second broker */
	assert_true(extra_pid > 0);
	st = wait_exit(extra_pid, 10000);
	if (st != 1) {
		char cmd[500];

		snprintf(cmd, sizeof(cmd), "cat '%s' >&2", log);
		if (system(cmd) != 0)
			fprintf(stderr, "no log\n");
	}
	if (st != -2)
		extra_pid = -1;
	assert_int_equal(st, 1);

	/* the first one goes on: same socket, same data, same endpoint */
	assert_true(file_exists(broker.socket));
	assert_true(file_exists(ipc_path(&broker)));
	json_decref(it_ok(&a, "{\"op\":\"stats\"}"));
	assert_true(it_block_page_is(&a, (uint64_t)it_open_block(&a, "one", 0), 0, 1));
	{
		struct tclient b;

		it_open_client(&b, &broker);
		assert_true(it_block_page_is(&b, (uint64_t)it_open_block(&b, "one", 0), 0, 1));
		tclient_close(&b);
	}
	assert_publishing(&a, &broker, "one");
	tclient_close(&a);
	it_stop(&broker);
}

/* ---- (d) a stale socket ----------------------------------------------------- */

static void test_stale_socket(void **state)
{
	struct tclient a;

	(void)state;
	it_start(&broker, NULL);
	harness_kill(&broker); /* SIGKILL: nothing is cleaned up */
	assert_true(file_exists(broker.socket));
	assert_true(file_exists(ipc_path(&broker)));

	assert_int_equal(harness_restart(&broker), 0); /* on the stale socket's path */
	it_open_client(&a, &broker);
	it_create(&a, "st", IT_BLOCK, 0);
	it_commit_ok(&a, "st", 0, 0, 1, 1);
	assert_true(it_block_page_is(&a, (uint64_t)it_open_block(&a, "st", 0), 0, 1));
	assert_publishing(&a, &broker, "st");
	tclient_close(&a);
	it_stop(&broker);
}

/* ---- (e) a stuck client ------------------------------------------------------ */

/* A child: hello, then requests without ever reading a reply, until the
 * broker cuts it off (then it waits to be killed). */
static void stuck_client(const char *sock, int ready)
{
	static const char req[] = "{\"op\":\"list\"}";
	struct tclient c;

	if (tclient_open(&c, sock))
		_exit(1);
	if (write(ready, "x", 1) != 1)
		_exit(1);
	while (tclient_send_raw(&c, req, sizeof(req) - 1, NULL, 0) == 0)
		;
	for (;;)
		pause();
}

static void test_stuck_client(void **state)
{
	struct tclient good;
	uint64_t worst = 0, t_start;
	long long clients = 0;
	char name[200];
	unsigned n = 0;
	int p[2];
	char x;

	(void)state;
	it_start(&broker, NULL);
	it_open_client(&good, &broker);
	assert_int_equal(it_wait_stat(&good, "clients", 1, 3000), 1);
	it_create(&good, "ok", IT_BLOCK, 0);
	/* list replies of ~30 KB */
	memset(name, 'x', 150);
	for (int i = 0; i < 100; i++) {
		snprintf(name + 150, sizeof(name) - 150, "%03d", i);
		it_ok_drop(&good, "{\"op\":\"create\",\"name\":\"%s\",\"dtype\":\"|u1\",\"shape\":[1]}",
			   name);
	}
	/* connected, hello done, never reads, nothing else */
	{
		struct tclient idle;

		it_open_client(&idle, &broker);
		for (int i = 0; i < 5; i++)
			it_commit_ok(&good, "ok", 0, 0, 1, (uint32_t)i);
		tclient_close(&idle);
	}
	/* flooding requests without reading */
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	extra_pid = fork();
	assert_true(extra_pid >= 0);
	if (extra_pid == 0) {
		close(p[0]);
		stuck_client(broker.socket, p[1]);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &x, 1), 1);
	close(p[0]);

	/* the good client is served all along, until the broker cuts the
	 * stuck one off (its queue bound) */
	t_start = it_now_ms();
	do {
		uint64_t t0 = it_now_ms(), dt;
		json_t *r;

		if (n % 2) {
			it_commit_ok(&good, "ok", 0, n % IT_PPB, 1, n);
		} else {
			r = it_ok(&good, "{\"op\":\"stats\"}");
			clients = json_integer_value(json_object_get(json_object_get(r, "stats"),
								     "clients"));
			json_decref(r);
		}
		dt = it_now_ms() - t0;
		worst = dt > worst ? dt : worst;
		assert_true(dt < 5000);
		n++;
	} while ((clients != 1 || n < 40) && it_now_ms() < t_start + 30000);
	fprintf(stderr, "good client: %u round trips beside a stuck client, slowest %llu ms; "
		"stuck client cut off after %llu ms\n", n, (unsigned long long)worst,
		(unsigned long long)(it_now_ms() - t_start));
	assert_int_equal(clients, 1);
	/* a new client gets in, too */
	{
		struct tclient late;

		it_open_client(&late, &broker);
		json_decref(it_ok(&late, "{\"op\":\"list\"}"));
		tclient_close(&late);
	}
	kill(extra_pid, SIGKILL);
	waitpid(extra_pid, NULL, 0);
	extra_pid = -1;
	assert_int_equal(it_wait_stat(&good, "clients", 1, 5000), 1);
	assert_int_equal(it_wait_stat(&good, "pins", 1, 5000), 1);
	tclient_close(&good);
	it_stop(&broker);
}

/* ---- (f) a test that dies ----------------------------------------------------- */

/* A test process killed before it stops its broker leaves no broker
 * running: the harness ties every broker to the process that started it. */
static void test_broker_dies_with_test(void **state)
{
	struct harness orphan = { .pid = -1 };
	uint64_t end;
	pid_t child, r = 0;
	int fds[2], status = 0;
	bool reaped;
	ssize_t got;

	(void)state;
	/* the orphaned broker is re-parented to us: we reap it and see how
	 * it ended */
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	assert_int_equal(pipe(fds), 0);
	fflush(stderr);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct harness h;

		close(fds[0]);
		IT_CHECK(harness_start(&h, NULL) == 0);
		IT_CHECK(write(fds[1], &h, sizeof(h)) == (ssize_t)sizeof(h));
		raise(SIGKILL); /* a crash: no stop, no cleanup */
		_exit(1);
	}
	close(fds[1]);
	got = read(fds[0], &orphan, sizeof(orphan));
	close(fds[0]);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_int_equal(got, (ssize_t)sizeof(orphan));
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(orphan.pid > 0);
	extra_pid = orphan.pid; /* the teardown kills it if it lives on */

	/* (ECHILD: not re-parented to us yet) */
	for (end = it_now_ms() + 5000; it_now_ms() < end;) {
		r = waitpid(orphan.pid, &status, WNOHANG);
		if (r == orphan.pid || (r < 0 && errno != ECHILD && errno != EINTR))
			break;
		it_sleep_ms(10);
	}
	reaped = r == orphan.pid;
	if (reaped || (kill(orphan.pid, 0) < 0 && errno == ESRCH))
		extra_pid = -1; /* gone, whoever reaped it */
	orphan.pid = -1;
	harness_cleanup(&orphan);
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
	if (extra_pid > 0)
		fail_msg("the broker (pid %d) outlived the test process that started it",
			 (int)extra_pid);
	if (reaped) /* it came to us: killed, not ended on its own */
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_no_leaks_over_1000_clients),
		T(test_sigterm),
		T(test_sigint),
		T(test_second_broker_refused),
		T(test_stale_socket),
		T(test_stuck_client),
		T(test_broker_dies_with_test),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("broker_lifecycle", tests, NULL, NULL);
}
