/* test_broker_hostile.c - shma-broker against clients that send garbage,
 * lie about sizes, pass the wrong fds, hang up mid-request or never read.
 *
 * Each hostile request must get an error reply, or cost the hostile client
 * its connection, and nothing else: a second, well-behaved client keeps
 * being served after every step, and when the test ends the broker holds
 * nothing for the hostile clients (pins, clients, fds, pool slots).
 */
#include "itest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/un.h>

static struct harness broker;

static int teardown(void **state)
{
	(void)state;
	return it_teardown_harness(&broker);
}

/* ---- helpers --------------------------------------------------------------- */

/* The good client is alive and served. */
static void assert_alive(struct tclient *good)
{
	json_t *r = it_ok(good, "{\"op\":\"stats\"}");

	json_decref(r);
	r = it_ok(good, "{\"op\":\"list\"}");
	json_decref(r);
}

/* The next reply on c is an error with code `code`, or (when may_close)
 * the connection ends instead. */
static void expect_error(struct tclient *c, const char *code, bool may_close)
{
	json_t *r = tclient_recv(c, 10000, NULL, NULL);

	if (!r) {
		assert_true(may_close);
		return;
	}
	if (reply_ok(r) || strcmp(reply_code(r), code)) {
		char *t = json_dumps(r, JSON_COMPACT);

		fprintf(stderr, "expected error \"%s\", got %s\n", code, t);
		free(t);
	}
	assert_false(reply_ok(r));
	assert_string_equal(reply_code(r), code);
	json_decref(r);
}

/* Send text as one raw datagram (no envelope, whatever its size). */
static void send_text(struct tclient *c, const char *text, const int *fds, int nfds)
{
	assert_int_equal(tclient_send_raw(c, text, strlen(text), fds, nfds), 0);
}

/* Send a request with fds and expect error `code` (the connection stays). */
static void call_err_fds(struct tclient *c, const int *fds, int nfds, const char *code,
			 const char *text)
{
	send_text(c, text, fds, nfds);
	expect_error(c, code, false);
}

static void call_err(struct tclient *c, const char *code, const char *text)
{
	call_err_fds(c, NULL, 0, code, text);
}

/* Send one datagram with any number of fds (proto_send_raw stops at 5). */
static int send_many_fds(int sock, const char *text, const int *fds, int nfds)
{
	size_t clen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	char *cbuf = calloc(1, clen);
	ssize_t r;

	assert_non_null(cbuf);
	mh.msg_control = cbuf;
	mh.msg_controllen = clen;
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
	r = sendmsg(sock, &mh, MSG_NOSIGNAL);
	free(cbuf);
	return r < 0 ? -errno : 0;
}

struct world {
	struct tclient good;
	int fd_base; /* the broker's fds with only the good client connected */
	long long slots_base, pool_base;
};

/* Start a broker (extra config or NULL) with one good client. */
static void world_start(struct world *w, const char *extra)
{
	it_start(&broker, extra);
	it_open_client(&w->good, &broker);
	assert_int_equal(it_wait_stat(&w->good, "clients", 1, 3000), 1);
	w->fd_base = it_fd_count(broker.pid);
	assert_true(w->fd_base > 0);
	w->slots_base = it_stat(&w->good, "slots");
	w->pool_base = it_stat(&w->good, "pool_used");
}

/* Nothing of the hostile clients is left: one client, one pin, the fds of
 * the start; the pool holds exactly the slots the catalog counts. */
static void world_check_clean(struct world *w, uint64_t block_size)
{
	uint64_t end = it_now_ms() + 5000;
	int fds;

	assert_alive(&w->good);
	it_sync_head(&w->good);
	assert_int_equal(it_wait_stat(&w->good, "clients", 1, 5000), 1);
	assert_int_equal(it_wait_stat(&w->good, "pins", 1, 5000), 1);
	while ((fds = it_fd_count(broker.pid)) != w->fd_base && it_now_ms() < end)
		it_sleep_ms(20);
	if (fds != w->fd_base)
		fprintf(stderr, "broker holds %d fds, %d at the start\n", fds, w->fd_base);
	assert_int_equal(fds, w->fd_base);
	if (block_size)
		assert_int_equal(it_stat(&w->good, "pool_used"),
				 it_stat(&w->good, "slots") * (long long)block_size);
}

static void world_stop(struct world *w)
{
	tclient_close(&w->good);
	it_stop(&broker);
}

/* ---- framing and protocol -------------------------------------------------- */

static void test_garbage_and_protocol_errors(void **state)
{
	static const unsigned char garbage[] = { 0xff, 0xfe, 0x00, 0x13, '{', '"', 0x80, 0x7f };
	struct world w;
	struct tclient c;
	json_t *r;

	(void)state;
	world_start(&w, NULL);
	assert_int_equal(tclient_connect(&c, broker.socket), 0);

	/* garbage bytes (with a NUL) and text that is not JSON */
	assert_int_equal(tclient_send_raw(&c, garbage, sizeof(garbage), NULL, 0), 0);
	expect_error(&c, "protocol", false);
	assert_alive(&w.good);
	call_err(&c, "protocol", "\xc3\x28 not json at all");
	call_err(&c, "protocol", "{\"op\":\"hello\",");
	call_err(&c, "protocol", "{\"op\":\"hello\",\"version\":1,\"version\":1}"); /* duplicate */
	/* JSON that is not an object */
	call_err(&c, "protocol", "[1,2,3]");
	call_err(&c, "protocol", "\"hello\"");
	call_err(&c, "protocol", "null");
	call_err(&c, "protocol", "12");
	/* no op, an op of the wrong type, an unknown op */
	call_err(&c, "protocol", "{}");
	call_err(&c, "protocol", "{\"version\":1}");
	call_err(&c, "protocol", "{\"op\":7}");
	call_err(&c, "protocol", "{\"op\":null}");
	call_err(&c, "protocol", "{\"op\":[\"hello\"]}");
	call_err(&c, "protocol", "{\"op\":\"HELLO\",\"version\":1}");
	call_err(&c, "protocol", "{\"op\":\"\"}");
	/* the id of a request comes back with its error */
	send_text(&c, "{\"op\":\"nope\",\"id\":42}", NULL, 0);
	r = tclient_recv(&c, 5000, NULL, NULL);
	assert_non_null(r);
	assert_string_equal(reply_code(r), "protocol");
	assert_int_equal(reply_int(r, "id"), 42);
	json_decref(r);
	assert_alive(&w.good);

	/* every request before hello */
	call_err(&c, "protocol", "{\"op\":\"stats\"}");
	call_err(&c, "protocol", "{\"op\":\"list\"}");
	call_err(&c, "protocol", "{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1]}");
	call_err(&c, "protocol", "{\"op\":\"sync\"}");
	call_err(&c, "protocol", "{\"op\":\"commit\",\"arrays\":[]}");
	/* hello with bad version types: an error, the connection stays */
	call_err(&c, "invalid", "{\"op\":\"hello\"}");
	call_err(&c, "invalid", "{\"op\":\"hello\",\"version\":\"1\"}");
	call_err(&c, "invalid", "{\"op\":\"hello\",\"version\":1.0}");
	call_err(&c, "invalid", "{\"op\":\"hello\",\"version\":-1}");
	assert_int_equal(it_stat(&w.good, "arrays"), 0);

	/* now a real hello works on the same connection; a second one does not */
	send_text(&c, "{\"op\":\"hello\",\"version\":1}", NULL, 0);
	{
		int fds[PROTO_MAX_FDS], nfds = 0;

		r = tclient_recv(&c, 5000, fds, &nfds);
		assert_true(reply_ok(r));
		assert_int_equal(nfds, 1);
		c.pool_fd = fds[0];
		json_decref(r);
	}
	call_err(&c, "protocol", "{\"op\":\"hello\",\"version\":1}");
	assert_int_equal(it_stat(&w.good, "pins"), 2);
	tclient_close(&c);

	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* A hello with a version the broker does not speak gets an error and the
 * connection is closed: it must not linger (it would hold a client slot)
 * nor make the broker spin. */
static void test_wrong_version_is_closed(void **state)
{
	struct world w;
	struct tclient c;
	long spin_open, spin_closed, t0;
	bool eof;

	(void)state;
	world_start(&w, NULL);
	assert_int_equal(tclient_connect(&c, broker.socket), 0);
	call_err(&c, "protocol", "{\"op\":\"hello\",\"version\":2}");
	assert_alive(&w.good);
	/* the client sends one more request: the broker must not spin on it */
	(void)tclient_send_raw(&c, "{\"op\":\"stats\"}", 14, NULL, 0);
	t0 = it_cpu_ticks(broker.pid);
	it_sleep_ms(500);
	spin_open = it_cpu_ticks(broker.pid) - t0;
	eof = it_wait_eof(c.fd, 1000);
	/* nor once the client hangs up */
	tclient_close(&c);
	it_sleep_ms(100);
	t0 = it_cpu_ticks(broker.pid);
	it_sleep_ms(500);
	spin_closed = it_cpu_ticks(broker.pid) - t0;
	if (!eof)
		fprintf(stderr, "BUG: the broker did not close a connection whose hello it refused\n");
	if (spin_open > 15 || spin_closed > 15)
		fprintf(stderr, "BUG: idle broker busy: %ld ticks in 0.5 s with the refused client "
			"connected, %ld after it hung up\n", spin_open, spin_closed);
	assert_true(eof);
	assert_true(spin_open <= 15);
	assert_true(spin_closed <= 15);
	assert_int_equal(it_wait_stat(&w.good, "clients", 1, 3000), 1);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* ---- fields of the wrong type, out of range ------------------------------- */

static void test_bad_request_fields(void **state)
{
	static const char *const bad_create[] = {
		"{\"op\":\"create\"}",
		"{\"op\":\"create\",\"name\":5,\"dtype\":\"|u1\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":null,\"dtype\":\"|u1\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":5,\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"<f8<f8<f8<f8<f8<f8<f8<f8\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\"}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":\"10\"}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":10}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":{\"0\":1}}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[-1]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1.5]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1e3]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[\"1\"]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[[1]]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[null]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"block_size\":\"4096\"}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"block_size\":-4096}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"block_size\":4096.0}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"block_size\":0}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"block_size\":4097}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"block_size\":2048}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],"
		"\"block_size\":1099511627776}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],"
		"\"block_size\":4611686018427387904}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"order\":1}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"order\":\"CF\"}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"order\":\"\"}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1],\"order\":null}",
		"{\"op\":\"create\",\"name\":\"a//b\",\"dtype\":\"|u1\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"a/../b\",\"dtype\":\"|u1\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"/abs\",\"dtype\":\"|u1\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"sp ace\",\"dtype\":\"|u1\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"nl\\n\",\"dtype\":\"|u1\",\"shape\":[1]}",
		"{\"op\":\"create\",\"name\":\"u\\u00e9\",\"dtype\":\"|u1\",\"shape\":[1]}",
		/* huge: 1e18 items of 8 bytes, 2^64 items, 33 dimensions */
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"<f8\",\"shape\":[1000000000000000000]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[4294967296,4294967296]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[9223372036854775807]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"<c16\",\"shape\":[1152921504606846976]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,"
		"1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}",
		"{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\",\"shape\":[4,4,4,4,4,4,4,4,4,4,4,"
		"4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4]}",
	};
	static const char *const bad_other[] = {
		"{\"op\":\"open\"}",
		"{\"op\":\"open\",\"name\":5}",
		"{\"op\":\"open\",\"name\":[\"x\"]}",
		"{\"op\":\"stat\",\"name\":null}",
		"{\"op\":\"delete\",\"name\":{}}",
		"{\"op\":\"sync\",\"revision\":\"1\"}",
		"{\"op\":\"sync\",\"revision\":-1}",
		"{\"op\":\"sync\",\"revision\":0.5}",
		"{\"op\":\"sync\",\"revision\":9223372036854775807}",
		"{\"op\":\"commit\",\"base\":\"0\",\"arrays\":[]}",
		"{\"op\":\"commit\",\"base\":-1,\"arrays\":[]}",
		"{\"op\":\"commit\",\"base\":9223372036854775807,\"arrays\":[]}",
	};
	struct world w;
	struct tclient c;

	(void)state;
	world_start(&w, NULL);
	it_open_client(&c, &broker);
	for (size_t i = 0; i < sizeof(bad_create) / sizeof(bad_create[0]); i++) {
		json_t *r = it_call(&c, "%s", bad_create[i]);

		if (!r || reply_ok(r) || strcmp(reply_code(r), "invalid"))
			fprintf(stderr, "request %s: unexpected reply\n", bad_create[i]);
		assert_non_null(r);
		assert_false(reply_ok(r));
		assert_string_equal(reply_code(r), "invalid");
		json_decref(r);
	}
	assert_alive(&w.good);
	assert_int_equal(it_stat(&w.good, "arrays"), 0);
	for (size_t i = 0; i < sizeof(bad_other) / sizeof(bad_other[0]); i++) {
		json_t *r = it_call(&c, "%s", bad_other[i]);

		if (!r || reply_ok(r) || strcmp(reply_code(r), "invalid"))
			fprintf(stderr, "request %s: unexpected reply\n", bad_other[i]);
		assert_non_null(r);
		assert_false(reply_ok(r));
		assert_string_equal(reply_code(r), "invalid");
		json_decref(r);
	}
	/* integers past 64 bits are not JSON jansson reads: a protocol error */
	call_err(&c, "protocol", "{\"op\":\"create\",\"name\":\"x\",\"dtype\":\"|u1\","
				 "\"shape\":[18446744073709551616]}");
	call_err(&c, "protocol", "{\"op\":\"sync\",\"revision\":99999999999999999999999}");
	assert_alive(&w.good);

	tclient_close(&c);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

static void test_bad_commit_fields(void **state)
{
	/* %s: the array name "h"; each comes with two pages of data */
	static const char *const bad[] = {
		"{\"op\":\"commit\"}",
		"{\"op\":\"commit\",\"arrays\":\"h\"}",
		"{\"op\":\"commit\",\"arrays\":{\"name\":\"h\"}}",
		"{\"op\":\"commit\",\"arrays\":[1]}",
		"{\"op\":\"commit\",\"arrays\":[null]}",
		"{\"op\":\"commit\",\"arrays\":[{}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":5}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"shape\":\"10\"}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"shape\":[-10]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"shape\":[10.5]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"shape\":null}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"shape\":[1000000000000000000,10]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":\"x\"}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":{}}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[1]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":{},"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"runs\":[[0,1]],\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1]]}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":\"0\",\"runs\":[[0,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":-1,\"runs\":[[0,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0.0,\"runs\":[[0,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1]],"
		"\"data\":-4096}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1]],"
		"\"data\":\"0\"}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1]],"
		"\"data\":0.5}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[0,1],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[\"0\",1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[-1,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,-1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1.0]],"
		"\"data\":0}]}]}",
		/* semantic: empty run, overlapping, unsorted, past the block's end */
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,0]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1],[0,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[3,1],[1,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[15,2]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[16,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,"
		"\"runs\":[[4294967295,1]],\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,"
		"\"runs\":[[4294967296,1]],\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,"
		"\"runs\":[[1,4294967295]],\"data\":0}]}]}",
		/* blocks out of order, repeated, beyond the end (4 blocks) */
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":1,\"runs\":[[0,1]],"
		"\"data\":0},{\"blk\":0,\"runs\":[[0,1]],\"data\":4096}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":1,\"runs\":[[0,1]],"
		"\"data\":0},{\"blk\":1,\"runs\":[[1,1]],\"data\":4096}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":4,\"runs\":[[0,1]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":9223372036854775807,"
		"\"runs\":[[0,1]],\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":9223372036854775806,"
		"\"runs\":[],\"data\":0}]}]}",
		/* data beyond the memfd (2 pages) */
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1]],"
		"\"data\":8192}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1]],"
		"\"data\":4097}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,3]],"
		"\"data\":0}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,1]],"
		"\"data\":9223372036854775807}]}]}",
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\",\"blocks\":[{\"blk\":0,\"runs\":[[0,2]],"
		"\"data\":9223372036854775000}]}]}",
		/* the same array twice */
		"{\"op\":\"commit\",\"arrays\":[{\"name\":\"h\"},{\"name\":\"h\",\"blocks\":[]}]}",
	};
	struct world w;
	struct tclient c;
	long long head;
	json_t *r;
	int data;

	(void)state;
	world_start(&w, NULL);
	it_open_client(&c, &broker);
	it_create(&c, "h", 4 * IT_BLOCK, 0);
	it_commit_ok(&c, "h", 0, 0, IT_PPB, 1);
	head = it_stat(&c, "head");
	data = it_pages_memfd(2, 0, 2);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = tclient_call(&c, &data, 1, NULL, NULL, "%s", bad[i]);
		if (!r || reply_ok(r) || (strcmp(reply_code(r), "invalid") &&
					  strcmp(reply_code(r), "too_large"))) {
			char *t = r ? json_dumps(r, JSON_COMPACT) : NULL;

			fprintf(stderr, "request %s: unexpected reply %s\n", bad[i], t);
			free(t);
		}
		assert_non_null(r);
		assert_false(reply_ok(r));
		assert_true(!strcmp(reply_code(r), "invalid") || !strcmp(reply_code(r), "too_large"));
		json_decref(r);
		if (i % 8 == 0)
			assert_alive(&w.good);
	}
	/* an array that does not exist */
	r = tclient_call(&c, &data, 1, NULL, NULL,
			 "{\"op\":\"commit\",\"arrays\":[{\"name\":\"nope\",\"blocks\":[{\"blk\":0,"
			 "\"runs\":[[0,1]],\"data\":0}]}]}");
	assert_string_equal(reply_code(r), "not_found");
	json_decref(r);
	/* more array changes than the broker has arrays */
	{
		size_t cap = 5000 * 24 + 64, len;
		char *t = malloc(cap);

		assert_non_null(t);
		len = (size_t)snprintf(t, cap, "{\"op\":\"commit\",\"arrays\":[");
		for (int i = 0; i < 5000; i++)
			len += (size_t)snprintf(t + len, cap - len, "%s{\"name\":\"a%d\"}", i ? "," : "", i);
		snprintf(t + len, cap - len, "]}");
		r = it_call(&c, "%s", t);
		free(t);
		assert_string_equal(reply_code(r), "invalid");
		json_decref(r);
	}
	close(data);
	/* nothing happened, and the client still commits fine */
	assert_int_equal(it_stat(&w.good, "head"), head);
	assert_int_equal(it_stat(&w.good, "conflicts"), 0);
	it_commit_ok(&c, "h", 1, 0, 1, 3);
	assert_true(it_block_page_is(&c, (uint64_t)it_open_block(&c, "h", 0), 4, 1));

	tclient_close(&c);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* ---- huge counts ----------------------------------------------------------- */

static void test_huge_counts(void **state)
{
	const unsigned long long n = 1000000000000000000ull; /* 1e18 bytes, < 2^60 */
	const unsigned long long last = (n + IT_BLOCK - 1) / IT_BLOCK - 1;
	struct world w;
	struct tclient c;
	long long slots, pool;
	json_t *r;
	char *t;
	size_t cap, len;
	int data;

	(void)state;
	world_start(&w, "{\"retention\":{\"revisions\":1,\"seconds\":0}}");
	it_open_client(&c, &broker);

	/* an array of 1e18 bytes: sparse, only what is written costs */
	it_create(&c, "huge", n, 0);
	it_commit_ok(&c, "huge", last, IT_PPB - 1, 1, 5);
	assert_true(it_block_page_is(&c, (uint64_t)it_open_block(&c, "huge", last), IT_PPB - 1, 5));
	r = it_commit_pages(&c, "huge", last + 1, 0, 1, 5, NULL);
	assert_string_equal(reply_code(r), "invalid");
	json_decref(r);
	r = it_commit_pages(&c, "huge", (1ull << 63) - 1, 0, 1, 5, NULL);
	assert_string_equal(reply_code(r), "invalid");
	json_decref(r);
	/* a run of 2^32 - 1 pages */
	r = it_commit_pages(&c, "huge", 0, 0, 1, 5, NULL);
	assert_true(reply_ok(r));
	json_decref(r);
	data = it_pages_memfd(1, 0, 1);
	r = tclient_call(&c, &data, 1, NULL, NULL,
			 "{\"op\":\"commit\",\"arrays\":[{\"name\":\"huge\",\"blocks\":[{\"blk\":1,"
			 "\"runs\":[[0,4294967295]],\"data\":0}]}]}");
	assert_true(!strcmp(reply_code(r), "too_large") || !strcmp(reply_code(r), "invalid"));
	json_decref(r);
	assert_alive(&w.good);

	/* a commit of 100000 blocks (sent in a memfd: {"big":N}), each a page
	 * read from the same 1-page data: more slots than the pool has */
	slots = it_stat(&c, "slots");
	pool = it_stat(&c, "pool_used");
	cap = 100000 * 64 + 256;
	t = malloc(cap);
	assert_non_null(t);
	len = (size_t)snprintf(t, cap, "{\"op\":\"commit\",\"arrays\":[{\"name\":\"huge\",\"blocks\":[");
	for (unsigned i = 0; i < 100000; i++)
		len += (size_t)snprintf(t + len, cap - len, "%s{\"blk\":%u,\"runs\":[[0,1]],\"data\":0}",
					i ? "," : "", 10 + i);
	snprintf(t + len, cap - len, "]}]}");
	assert_true(strlen(t) > c.max_message);
	r = tclient_call(&c, &data, 1, NULL, NULL, "%s", t);
	assert_non_null(r);
	assert_string_equal(reply_code(r), "no_space");
	json_decref(r);
	assert_int_equal(it_stat(&c, "slots"), slots);
	assert_int_equal(it_stat(&c, "pool_used"), pool);
	assert_alive(&w.good);

	/* 4000 blocks of 4 KiB fit; the reply, listing them all, is longer
	 * than max_message and comes in a memfd */
	it_create(&c, "huge4k", 1ull << 40, 4096);
	len = (size_t)snprintf(t, cap, "{\"op\":\"commit\",\"arrays\":[{\"name\":\"huge4k\","
			       "\"blocks\":[");
	for (unsigned i = 0; i < 4000; i++)
		len += (size_t)snprintf(t + len, cap - len, "%s{\"blk\":%u,\"runs\":[[0,1]],\"data\":0}",
					i ? "," : "", 10 + i);
	snprintf(t + len, cap - len, "]}]}");
	r = tclient_call(&c, &data, 1, NULL, NULL, "%s", t);
	free(t);
	assert_true(reply_ok(r));
	assert_int_equal(json_array_size(json_object_get(json_object_get(json_object_get(r, "arrays"),
									 "huge4k"), "blocks")), 4000);
	json_decref(r);
	assert_true(it_block_page_is(&c, (uint64_t)it_open_block(&c, "huge4k", 2500), 0, 1));
	close(data);
	assert_alive(&w.good);

	/* delete it all: everything comes back */
	it_ok_drop(&c, "{\"op\":\"delete\",\"name\":\"huge\"}");
	it_ok_drop(&c, "{\"op\":\"delete\",\"name\":\"huge4k\"}");
	tclient_close(&c);
	world_check_clean(&w, 0);
	assert_int_equal(it_wait_stat(&w.good, "slots", 0, 3000), 0);
	assert_int_equal(it_stat(&w.good, "pool_used"), 0);
	world_stop(&w);
}

/* ---- file descriptors ------------------------------------------------------ */

static void test_bad_fds(void **state)
{
	static const char commit1[] = "{\"op\":\"commit\",\"arrays\":[{\"name\":\"f\",\"blocks\":"
				      "[{\"blk\":0,\"runs\":[[0,1]],\"data\":0}]}]}";
	struct world w;
	struct tclient c;
	int fds[8], pfd[2], sv[2], f, data;
	long long head;

	(void)state;
	world_start(&w, NULL);
	it_open_client(&c, &broker);
	it_create(&c, "f", 2 * IT_BLOCK, 0);
	head = it_stat(&c, "head");
	data = it_pages_memfd(1, 0, 2);

	/* page data but no fd */
	call_err(&c, "invalid", commit1);
	/* fds on requests that take none: refused, and closed by the broker */
	call_err_fds(&c, &data, 1, "protocol", "{\"op\":\"stats\"}");
	fds[0] = fds[1] = fds[2] = data;
	call_err_fds(&c, fds, 3, "protocol", "{\"op\":\"list\"}");
	call_err_fds(&c, &data, 1, "protocol", "{\"op\":\"hello\",\"version\":1}");
	/* two fds on a commit: "invalid" or "protocol" */
	fds[0] = fds[1] = data;
	send_text(&c, commit1, fds, 2);
	{
		json_t *r = tclient_recv(&c, 10000, NULL, NULL);

		assert_non_null(r);
		assert_false(reply_ok(r));
		assert_true(!strcmp(reply_code(r), "invalid") || !strcmp(reply_code(r), "protocol"));
		json_decref(r);
	}
	assert_alive(&w.good);

	/* page data in a pipe, a socket, /dev/null, a directory */
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_true(write(pfd[1], "x", 1) == 1);
	call_err_fds(&c, &pfd[0], 1, "invalid", commit1);
	call_err_fds(&c, &pfd[1], 1, "invalid", commit1);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	call_err_fds(&c, &sv[0], 1, "invalid", commit1);
	f = open("/dev/null", O_RDONLY | O_CLOEXEC);
	call_err_fds(&c, &f, 1, "invalid", commit1);
	close(f);
	f = open(broker.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	call_err_fds(&c, &f, 1, "invalid", commit1);
	close(f);
	/* the broker's own pool fd back at it: it holds no page data here */
	call_err_fds(&c, &c.pool_fd, 1, "invalid",
		     "{\"op\":\"commit\",\"arrays\":[{\"name\":\"f\",\"blocks\":"
		     "[{\"blk\":0,\"runs\":[[0,1]],\"data\":281474976710656}]}]}");
	assert_alive(&w.good);

	/* a memfd shorter than described */
	f = it_pages_memfd(1, 0, 1);
	call_err_fds(&c, &f, 1, "invalid",
		     "{\"op\":\"commit\",\"arrays\":[{\"name\":\"f\",\"blocks\":"
		     "[{\"blk\":0,\"runs\":[[0,2]],\"data\":0}]}]}");
	call_err_fds(&c, &f, 1, "invalid",
		     "{\"op\":\"commit\",\"arrays\":[{\"name\":\"f\",\"blocks\":"
		     "[{\"blk\":0,\"runs\":[[0,1]],\"data\":0},{\"blk\":1,\"runs\":[[0,1]],\"data\":1}]}]}");
	close(f);
	/* an empty memfd */
	f = memfd_create("empty", MFD_CLOEXEC);
	call_err_fds(&c, &f, 1, "invalid", commit1);
	close(f);
	assert_int_equal(it_stat(&w.good, "head"), head);

	/* more than 4 fds in one message: 5 (proto_send_raw's most), then 8 */
	for (int i = 0; i < 8; i++)
		fds[i] = data;
	call_err_fds(&c, fds, 5, "protocol", commit1);
	for (int k = 0; k < 2; k++) {
		struct tclient d;

		it_open_client(&d, &broker);
		assert_int_equal(send_many_fds(d.fd, k ? "{\"op\":\"stats\"}" : commit1, fds, 8), 0);
		expect_error(&d, "protocol", true);
		tclient_close(&d);
		assert_alive(&w.good);
	}

	/* the connection still works after all that, a real commit too */
	json_decref(it_ok(&c, "{\"op\":\"stats\"}"));
	it_commit_ok(&c, "f", 0, 0, 1, 9);
	close(data);
	close(pfd[0]);
	close(pfd[1]);
	close(sv[0]);
	close(sv[1]);
	tclient_close(&c);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* Page data in a regular file the broker cannot read (opened write-only,
 * or an O_PATH fd): the client's mistake, so an "invalid" error that says
 * the fd is not readable, not an "internal" one blaming the data's length. */
static void test_unreadable_data_file(void **state)
{
	static const char commit1[] = "{\"op\":\"commit\",\"arrays\":[{\"name\":\"f\",\"blocks\":"
				      "[{\"blk\":0,\"runs\":[[0,1]],\"data\":0}]}]}";
	const char *got[2];
	char path[400];
	struct world w;
	struct tclient c;
	json_t *r[2];
	int f;

	(void)state;
	world_start(&w, NULL);
	it_open_client(&c, &broker);
	it_create(&c, "f", 2 * IT_BLOCK, 0);
	snprintf(path, sizeof(path), "%s/wronly", broker.dir);
	f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(f >= 0);
	assert_true(ftruncate(f, 8192) == 0);
	send_text(&c, commit1, &f, 1);
	r[0] = tclient_recv(&c, 10000, NULL, NULL);
	close(f);
	f = open(path, O_PATH | O_CLOEXEC);
	assert_true(f >= 0);
	send_text(&c, commit1, &f, 1);
	r[1] = tclient_recv(&c, 10000, NULL, NULL);
	close(f);
	assert_alive(&w.good);
	for (int i = 0; i < 2; i++) {
		bool ok = r[i] && !reply_ok(r[i]) && !strcmp(reply_code(r[i]), "invalid");

		if (!ok)
			fprintf(stderr, "BUG: page data in an unreadable %s file: error \"%s\" (%s)\n",
				i ? "O_PATH" : "write-only", reply_code(r[i]), it_err_message(r[i]));
		got[i] = ok ? "invalid" : "something else";
		json_decref(r[i]);
	}
	assert_string_equal(got[0], "invalid");
	assert_string_equal(got[1], "invalid");
	tclient_close(&c);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* Page data whose memfd the client shrinks and regrows while the broker
 * reads it (large commits are filled by several broker threads): each
 * commit succeeds or fails cleanly; the broker keeps serving. */
struct shrinker {
	int fd;
	off_t size;
	atomic_bool stop;
};

static void *shrink_loop(void *arg)
{
	struct shrinker *sh = arg;

	/* mostly whole, now and then cut short for a moment */
	while (!atomic_load(&sh->stop)) {
		if (ftruncate(sh->fd, sh->size / 3) || ftruncate(sh->fd, 0))
			break;
		it_sleep_ms(1);
		if (ftruncate(sh->fd, sh->size))
			break;
		it_sleep_ms(4);
	}
	return NULL;
}

static void test_shrinking_memfd(void **state)
{
	const unsigned nblk = 512; /* 32 MiB of page data */
	struct shrinker sh;
	struct world w;
	struct tclient c;
	pthread_t th;
	size_t cap = (size_t)nblk * 64 + 128, len;
	char *t = malloc(cap);
	int ok = 0, failed = 0;

	(void)state;
	assert_non_null(t);
	world_start(&w, "{\"retention\":{\"revisions\":1,\"seconds\":0}}");
	it_open_client(&c, &broker);
	it_create(&c, "shr", (uint64_t)nblk * IT_BLOCK, 0);
	len = (size_t)snprintf(t, cap, "{\"op\":\"commit\",\"arrays\":[{\"name\":\"shr\",\"blocks\":[");
	for (unsigned i = 0; i < nblk; i++)
		len += (size_t)snprintf(t + len, cap - len, "%s{\"blk\":%u,\"runs\":[[0,16]],\"data\":%u}",
					i ? "," : "", i, i * IT_BLOCK);
	snprintf(t + len, cap - len, "]}]}");
	sh.size = (off_t)nblk * IT_BLOCK;
	sh.fd = memfd_create("shrinking", MFD_CLOEXEC);
	assert_true(sh.fd >= 0);
	assert_int_equal(ftruncate(sh.fd, sh.size), 0);
	atomic_init(&sh.stop, false);
	assert_int_equal(pthread_create(&th, NULL, shrink_loop, &sh), 0);
	for (int i = 0; i < 30; i++) {
		json_t *r = tclient_call(&c, &sh.fd, 1, NULL, NULL, "%s", t);

		assert_non_null(r);
		if (reply_ok(r)) {
			ok++;
			json_decref(it_ok(&c, "{\"op\":\"sync\"}"));
		} else {
			const char *code = reply_code(r);

			if (strcmp(code, "io") && strcmp(code, "invalid"))
				fprintf(stderr, "commit with a shrinking memfd: %s\n", code);
			assert_true(!strcmp(code, "io") || !strcmp(code, "invalid"));
			failed++;
		}
		json_decref(r);
		assert_alive(&w.good);
	}
	atomic_store(&sh.stop, true);
	pthread_join(th, NULL);
	close(sh.fd);
	free(t);
	fprintf(stderr, "commits with a shrinking memfd: %d ok, %d refused\n", ok, failed);
	/* a failed commit leaves no slot behind */
	tclient_close(&c);
	world_check_clean(&w, IT_BLOCK);
	assert_true(it_stat(&w.good, "slots") <= nblk);
	world_stop(&w);
}

/* ---- big messages ---------------------------------------------------------- */

static void test_big_messages(void **state)
{
	struct world w;
	struct tclient c;
	size_t n;
	char *text, env[64];
	int f, pfd[2];
	json_t *r;

	(void)state;
	world_start(&w, NULL);
	it_open_client(&c, &broker);
	assert_int_equal(c.max_message, 65536);

	/* longer than max_message, inline */
	n = c.max_message + 100;
	text = malloc(n + 1);
	assert_non_null(text);
	memset(text, ' ', n);
	memcpy(text, "{\"op\":\"stats\"", 13);
	text[n - 1] = '}';
	text[n] = 0;
	assert_int_equal(tclient_send_raw(&c, text, n, NULL, 0), 0);
	expect_error(&c, "too_large", false);
	/* the same text as a big message: fine */
	r = it_call(&c, "%s", text);
	assert_true(reply_ok(r));
	json_decref(r);
	/* just max_message long, inline: fine */
	text[c.max_message - 1] = '}';
	assert_int_equal(tclient_send_raw(&c, text, c.max_message, NULL, 0), 0);
	r = tclient_recv(&c, 5000, NULL, NULL);
	assert_true(reply_ok(r));
	json_decref(r);
	assert_alive(&w.good);

	/* {"big":N} without the memfd */
	call_err(&c, "protocol", "{\"big\":100}");
	/* with a memfd shorter than N */
	f = test_memfd("{\"op\":\"stats\"}", 14);
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":100000}");
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":15}");
	/* N = 0, N past what the broker accepts, N of 20 digits */
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":0}");
	call_err_fds(&c, &f, 1, "too_large", "{\"big\":268435457}");
	call_err_fds(&c, &f, 1, "too_large", "{\"big\":9999999999999999999}");
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":99999999999999999999}");
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":-1}");
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":14.0}");
	/* exactly right: it works */
	send_text(&c, "{\"big\":14}", &f, 1);
	r = tclient_recv(&c, 5000, NULL, NULL);
	assert_true(reply_ok(r));
	json_decref(r);
	close(f);
	/* a pipe in place of the memfd */
	assert_int_equal(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
	assert_true(write(pfd[1], "{\"op\":\"stats\"}", 14) == 14);
	call_err_fds(&c, &pfd[0], 1, "protocol", "{\"big\":14}");
	close(pfd[0]);
	close(pfd[1]);
	/* a memfd with garbage, with a NUL, with another envelope */
	f = test_memfd("{\"op\":\0\"stats\"}", 15);
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":15}");
	close(f);
	f = test_memfd("\xff\xfe garbage", 10);
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":10}");
	close(f);
	f = test_memfd("{\"big\":10}", 10);
	call_err_fds(&c, &f, 1, "protocol", "{\"big\":10}");
	close(f);
	/* a big message that is a commit whose data memfd is missing */
	it_create(&c, "q", IT_BLOCK, 0);
	{
		static const char q[] = "{\"op\":\"commit\",\"arrays\":[{\"name\":\"q\",\"blocks\":"
					"[{\"blk\":0,\"runs\":[[0,1]],\"data\":0}]}]}";

		snprintf(env, sizeof(env), "{\"big\":%zu}", strlen(q));
		f = test_memfd(q, strlen(q));
		call_err_fds(&c, &f, 1, "invalid", env);
		close(f);
	}
	assert_alive(&w.good);

	free(text);
	tclient_close(&c);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* ---- hanging up ------------------------------------------------------------ */

static void test_abrupt_close(void **state)
{
	struct world w;
	struct tclient c;
	int data;

	(void)state;
	world_start(&w, NULL);
	it_create(&w.good, "ab", 4 * IT_BLOCK, 0);
	it_commit_ok(&w.good, "ab", 0, 0, 1, 1);

	/* half a request, then gone (SEQPACKET: a truncated text) */
	it_open_client(&c, &broker);
	send_text(&c, "{\"op\":\"cre", NULL, 0);
	tclient_close(&c);
	assert_alive(&w.good);
	/* a commit, gone before the reply */
	for (int i = 0; i < 20; i++) {
		it_open_client(&c, &broker);
		json_decref(it_ok(&c, "{\"op\":\"open\",\"name\":\"ab\"}"));
		data = it_pages_memfd(2, 0, IT_PPB);
		send_text(&c, "{\"op\":\"commit\",\"arrays\":[{\"name\":\"ab\",\"blocks\":"
			      "[{\"blk\":1,\"runs\":[[0,16]],\"data\":0}]}]}",
			  &data, 1);
		close(data);
		if (i % 2)
			shutdown(c.fd, SHUT_RDWR);
		tclient_close(&c);
	}
	assert_alive(&w.good);
	/* a big request, gone before the broker reads it */
	{
		char big[70000];

		memset(big, ' ', sizeof(big));
		memcpy(big, "{\"op\":\"list\"", 12);
		big[sizeof(big) - 2] = '}';
		big[sizeof(big) - 1] = 0;
		it_open_client(&c, &broker);
		assert_int_equal(proto_send(c.fd, big, strlen(big), c.max_message, NULL, 0), 0);
		tclient_close(&c);
	}
	/* many requests, none of the replies read */
	it_open_client(&c, &broker);
	for (int i = 0; i < 200; i++)
		send_text(&c, "{\"op\":\"open\",\"name\":\"ab\"}", NULL, 0);
	tclient_close(&c);
	/* connected, never said anything */
	assert_int_equal(tclient_connect(&c, broker.socket), 0);
	tclient_close(&c);
	/* hello, then gone */
	it_open_client(&c, &broker);
	tclient_close(&c);
	/* a zero-length datagram: at worst the end of that connection */
	it_open_client(&c, &broker);
	assert_int_equal(tclient_send_raw(&c, "", 0, NULL, 0), 0);
	expect_error(&c, "protocol", true);
	tclient_close(&c);

	assert_alive(&w.good);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* ---- clients that do not read ----------------------------------------------- */

/* Flood `text` on c without reading until the broker hangs up (true), or
 * limit_ms passes, or the broker holds more than fd_stop fds (if not 0)
 * (false).  *sent: requests sent; *max_fds (if not NULL): the most fds the
 * broker held meanwhile. */
static bool flood_until_cut(struct tclient *c, const char *text, int limit_ms, int fd_stop,
			    long *sent, int *max_fds)
{
	uint64_t end = it_now_ms() + (uint64_t)limit_ms;
	size_t len = strlen(text);
	bool cut = false;
	int most = 0;

	*sent = 0;
	while (it_now_ms() < end && !cut) {
		int r = proto_send_raw(c->fd, text, len, NULL, 0, MSG_DONTWAIT);

		if (r == 0)
			(*sent)++;
		else if (r != -EAGAIN)
			cut = true; /* EPIPE, ECONNRESET: cut off */
		if (r == -EAGAIN || *sent % 64 == 0) {
			int n = max_fds ? it_fd_count(broker.pid) : 0;

			most = n > most ? n : most;
			if (fd_stop && most > fd_stop)
				break;
		}
		if (r == -EAGAIN) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };

			poll(&pfd, 1, 50);
		}
	}
	if (max_fds)
		*max_fds = most;
	return cut;
}

/* Commit one page into each of blocks [0, n) of name (4 KiB blocks). */
static void fill_blocks(struct tclient *c, const char *name, unsigned n)
{
	size_t cap = (size_t)n * 48 + 128, len;
	char *t = malloc(cap);
	json_t *r;
	int data = it_pages_memfd(7, 0, 1);

	assert_non_null(t);
	len = (size_t)snprintf(t, cap, "{\"op\":\"commit\",\"arrays\":[{\"name\":\"%s\",\"blocks\":[",
			       name);
	for (unsigned i = 0; i < n; i++)
		len += (size_t)snprintf(t + len, cap - len, "%s{\"blk\":%u,\"runs\":[[0,1]],\"data\":0}",
					i ? "," : "", i);
	snprintf(t + len, cap - len, "]}]}");
	r = tclient_call(c, &data, 1, NULL, NULL, "%s", t);
	free(t);
	close(data);
	assert_true(reply_ok(r));
	json_decref(r);
}

static void test_never_reads(void **state)
{
	struct world w;
	struct tclient c;
	long sent;
	bool cut;
	json_t *r;
	size_t rlen;
	char *t;

	(void)state;
	world_start(&w, NULL);
	/* 2000 blocks of 4 KiB: an open reply of ~40 KB, inline */
	it_create(&w.good, "nr", 2000 * 4096, 4096);
	fill_blocks(&w.good, "nr", 2000);
	r = it_ok(&w.good, "{\"op\":\"open\",\"name\":\"nr\"}");
	t = json_dumps(r, JSON_COMPACT);
	rlen = strlen(t);
	free(t);
	json_decref(r);
	assert_true(rlen > 20000 && rlen < 65536);

	it_open_client(&c, &broker);
	cut = flood_until_cut(&c, "{\"op\":\"open\",\"name\":\"nr\"}", 30000, 0, &sent, NULL);
	fprintf(stderr, "never-reading client: cut off after %ld requests of ~%zu-byte replies\n",
		sent, rlen);
	assert_true(cut);
	/* the broker queued at most its bound (64 MiB) plus socket buffers */
	assert_true((size_t)sent * rlen < ((size_t)256 << 20));
	assert_alive(&w.good);
	tclient_close(&c);
	assert_int_equal(it_wait_stat(&w.good, "clients", 1, 3000), 1);
	world_check_clean(&w, 4096);
	world_stop(&w);
}

/* Replies past max_message travel in a memfd ({"big":N}): queued for a
 * client that does not read, each holds a memfd of its full size.  The
 * queue bound must count them, or such a client makes the broker hold
 * thousands of fds and their memory until it runs out of fds. */
static void test_never_reads_big_replies(void **state)
{
	char name[256];
	struct world w;
	struct tclient c;
	long sent;
	int max_fds = 0;
	bool cut;
	json_t *r;
	size_t rlen;
	char *t;

	(void)state;
	world_start(&w, NULL);
	/* 400 arrays with long names: a list reply of ~130 KB */
	memset(name, 'n', 180);
	for (int i = 0; i < 400; i++) {
		snprintf(name + 180, sizeof(name) - 180, "%04d", i);
		it_ok_drop(&w.good, "{\"op\":\"create\",\"name\":\"%s\",\"dtype\":\"|u1\",\"shape\":[1]}",
			   name);
	}
	it_sync_head(&w.good);
	r = it_ok(&w.good, "{\"op\":\"list\"}");
	t = json_dumps(r, JSON_COMPACT);
	rlen = strlen(t);
	free(t);
	json_decref(r);
	assert_true(rlen > 65536);

	it_open_client(&c, &broker);
	cut = flood_until_cut(&c, "{\"op\":\"list\"}", 20000, w.fd_base + 1000, &sent,
			      &max_fds);
	fprintf(stderr, "never-reading client, big replies: %s after %ld requests of ~%zu-byte "
		"replies; the broker held up to %d fds (%d at the start)\n",
		cut ? "cut off" : "NOT cut off", sent, rlen, max_fds, w.fd_base);
	if (max_fds > w.fd_base + 1000)
		fprintf(stderr, "BUG: queued big replies are not counted by the queue bound: "
			"~%zu MiB of memfds held for one client\n",
			(size_t)(max_fds - w.fd_base) * rlen >> 20);
	/* 64 MiB of queued replies is the documented bound */
	assert_true(max_fds <= w.fd_base + 1000);
	assert_true(cut);
	assert_alive(&w.good);
	tclient_close(&c);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* ---- pins, leases, extents ------------------------------------------------- */

/* Send count copies of text, pipelined in batches; count the replies that
 * are ok and those with error code `code` (others fail the test). */
static void pipeline(struct tclient *c, const char *text, int count, int *ok, int *code_n,
		     const char *code)
{
	*ok = *code_n = 0;
	for (int done = 0; done < count;) {
		int batch = count - done < 500 ? count - done : 500;

		for (int i = 0; i < batch; i++)
			send_text(c, text, NULL, 0);
		for (int i = 0; i < batch; i++) {
			/* a plain recv: tclient_recv's 1 MiB buffer per reply is slow
			 * under ASan, and these replies are small */
			static char buf[4096];
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
			ssize_t n = poll(&pfd, 1, 10000) == 1 ? recv(c->fd, buf, sizeof(buf), 0) : -1;
			json_t *r = n > 0 ? json_loadb(buf, (size_t)n, 0, NULL) : NULL;

			assert_non_null(r);
			if (reply_ok(r))
				(*ok)++;
			else if (!strcmp(reply_code(r), code))
				(*code_n)++;
			else
				fail_msg("unexpected error %s", reply_code(r));
			json_decref(r);
		}
		done += batch;
	}
}

static void test_pins_and_leases(void **state)
{
	char text[200];
	struct world w;
	struct tclient c;
	long long head;
	uint64_t t0;
	int ok, lim;

	(void)state;
	world_start(&w, NULL);
	it_open_client(&c, &broker);
	it_create(&c, "p", 4 * IT_BLOCK, 0);
	it_commit_ok(&c, "p", 0, 0, 1, 1);
	head = it_stat(&c, "head");

	/* bad fields */
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"pin\":\"yes\"}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"pin\":1}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"revision\":-1}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"revision\":1}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"revision\":99,\"pin\":true}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"extent\":[5,2]}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"extent\":[0]}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"extent\":\"0-5\"}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"extent\":[0,262145]}");
	call_err(&c, "invalid", "{\"op\":\"open\",\"name\":\"p\",\"extent\":[-1,5]}");
	call_err(&c, "invalid", "{\"op\":\"unpin\"}");
	call_err(&c, "invalid", "{\"op\":\"unpin\",\"revision\":\"1\"}");
	call_err(&c, "invalid", "{\"op\":\"unpin\",\"revision\":1}");
	call_err(&c, "invalid", "{\"op\":\"lease\",\"revision\":1}");
	call_err(&c, "invalid", "{\"op\":\"lease\",\"revision\":1,\"ms\":0}");
	call_err(&c, "invalid", "{\"op\":\"lease\",\"revision\":1,\"ms\":3600001}");
	call_err(&c, "invalid", "{\"op\":\"lease\",\"revision\":1,\"ms\":\"5\"}");
	call_err(&c, "invalid", "{\"op\":\"lease\",\"revision\":1,\"ms\":5.5}");
	call_err(&c, "invalid", "{\"op\":\"lease\",\"revision\":999,\"ms\":5}");
	call_err(&c, "invalid", "{\"op\":\"lease\",\"ms\":5}");
	assert_alive(&w.good);
	assert_int_equal(it_stat(&w.good, "pins"), 2);
	assert_int_equal(it_stat(&w.good, "leases"), 0);

	/* 4096 pins on one connection, not one more */
	snprintf(text, sizeof(text), "{\"op\":\"open\",\"name\":\"p\",\"pin\":true}");
	pipeline(&c, text, 4100, &ok, &lim, "limit");
	assert_int_equal(ok, 4096);
	assert_int_equal(lim, 4);
	assert_int_equal(it_stat(&w.good, "pins"), 2 + 4096);
	json_decref(it_ok(&c, "{\"op\":\"unpin\",\"revision\":%lld}", head));
	assert_int_equal(it_stat(&w.good, "pins"), 2 + 4095);
	assert_alive(&w.good);
	/* gone with them: all are released */
	tclient_close(&c);
	assert_int_equal(it_wait_stat(&w.good, "pins", 1, 3000), 1);

	/* leases: 65536 broker-wide, then they run out on their own */
	it_open_client(&c, &broker);
	snprintf(text, sizeof(text), "{\"op\":\"lease\",\"revision\":%lld,\"ms\":5000}", head);
	t0 = it_now_ms();
	pipeline(&c, text, 65540, &ok, &lim, "limit");
	fprintf(stderr, "65540 lease requests in %llu ms\n", (unsigned long long)(it_now_ms() - t0));
	assert_true(it_now_ms() - t0 < 4500); /* else some ran out already */
	assert_int_equal(ok, 65536);
	assert_int_equal(lim, 4);
	assert_int_equal(it_stat(&w.good, "leases"), 65536);
	tclient_close(&c); /* leases outlive their connection */
	assert_int_equal(it_wait_stat(&w.good, "clients", 1, 3000), 1);
	assert_int_equal(it_stat(&w.good, "leases"), 65536);
	assert_alive(&w.good);
	assert_int_equal(it_wait_stat(&w.good, "leases", 0, 8000), 0);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

/* A call that must be answered within timeout_ms; NULL if it is not. */
static json_t *call_within(struct tclient *c, int timeout_ms, const char *text)
{
	if (proto_send(c->fd, text, strlen(text), c->max_message, NULL, 0))
		return NULL;
	return tclient_recv(c, timeout_ms, NULL, NULL);
}

/* open's "extent" costs in proportion to the extent: a client naming a huge
 * extent of a huge, sparse array must not stall the broker (one thread
 * serves everyone). */
static void test_open_huge_extent(void **state)
{
	struct world w;
	struct tclient c;
	json_t *r;
	char text[300];
	uint64_t t0;
	bool stalled;

	(void)state;
	world_start(&w, NULL);
	it_open_client(&c, &broker);
	/* 2^60 bytes in 4 KiB blocks: 2^48 blocks, one of them written */
	it_create(&c, "vast", 1ull << 60, 4096);
	it_commit_ok(&c, "vast", 12345, 0, 1, 1);
	/* a small extent works and finds the block */
	r = it_ok(&c, "{\"op\":\"open\",\"name\":\"vast\",\"extent\":[%llu,%llu]}",
		  12345ull * 4096, 12346ull * 4096);
	assert_int_equal(json_array_size(json_object_get(r, "blocks")), 1);
	json_decref(r);

	snprintf(text, sizeof(text), "{\"op\":\"open\",\"name\":\"vast\",\"extent\":[0,%llu]}",
		 1ull << 60);
	send_text(&c, text, NULL, 0);
	t0 = it_now_ms();
	r = call_within(&w.good, 5000, "{\"op\":\"stats\"}");
	stalled = !r;
	json_decref(r);
	if (stalled) {
		fprintf(stderr, "BUG: one open with extent [0, 2^60) stalled the broker for more "
			"than %llu ms\n", (unsigned long long)(it_now_ms() - t0));
		tclient_close(&c);
		tclient_close(&w.good);
		harness_kill(&broker);
		harness_cleanup(&broker);
	}
	assert_false(stalled);
	r = tclient_recv(&c, 10000, NULL, NULL);
	assert_true(reply_ok(r));
	assert_int_equal(json_array_size(json_object_get(r, "blocks")), 1);
	json_decref(r);
	tclient_close(&c);
	world_check_clean(&w, 4096);
	world_stop(&w);
}

/* ---- too many clients ------------------------------------------------------ */

static void test_client_limit(void **state)
{
	struct world w;
	struct tclient c2, c3, c4, c5;
	json_t *r;

	(void)state;
	world_start(&w, "{\"limits\":{\"clients\":3}}");
	it_open_client(&c2, &broker);
	it_open_client(&c3, &broker);
	assert_int_equal(it_stat(&w.good, "clients"), 3);

	/* the 4th gets an error "limit", then the end of the connection */
	assert_int_equal(tclient_connect(&c4, broker.socket), 0);
	r = tclient_recv(&c4, 5000, NULL, NULL);
	assert_non_null(r);
	assert_false(reply_ok(r));
	assert_string_equal(reply_code(r), "limit");
	json_decref(r);
	assert_true(it_wait_eof(c4.fd, 5000));
	tclient_close(&c4);
	/* and tclient_open fails the same way */
	assert_true(tclient_open(&c4, broker.socket) < 0);
	assert_alive(&w.good);
	assert_alive(&c2);
	assert_int_equal(it_stat(&w.good, "clients"), 3);

	/* one leaves: a new one gets in */
	tclient_close(&c3);
	assert_int_equal(it_wait_stat(&w.good, "clients", 2, 3000), 2);
	it_open_client(&c5, &broker);
	assert_alive(&c5);
	assert_int_equal(it_stat(&w.good, "clients"), 3);
	tclient_close(&c2);
	tclient_close(&c5);
	world_check_clean(&w, IT_BLOCK);
	world_stop(&w);
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_garbage_and_protocol_errors),
		T(test_wrong_version_is_closed),
		T(test_bad_request_fields),
		T(test_bad_commit_fields),
		T(test_huge_counts),
		T(test_bad_fds),
		T(test_unreadable_data_file),
		T(test_shrinking_memfd),
		T(test_big_messages),
		T(test_abrupt_close),
		T(test_never_reads),
		T(test_never_reads_big_replies),
		T(test_pins_and_leases),
		T(test_open_huge_extent),
		T(test_client_limit),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("broker_hostile", tests, NULL, NULL);
}
