/* test_worker.c - shma-worker as a process, against a real broker: jobs
 * with ArrayRefs in pull mode and in rep mode, values checked against loops
 * in this process, array results opened through their refs and compared,
 * bad jobs answered with errors while the worker keeps serving, SIGTERM in
 * the middle of a job (the job is answered, then the worker exits 0), and a
 * configuration file with an unknown key refused with file:line:column.
 *
 * Each test starts its broker (tests/lib/harness.h) and its worker
 * (BUILD/shma-worker, next to the broker, or $SHMA_WORKER); the teardown
 * kills whatever a failed test left running. */
#include "itest.h"

#include <limits.h>
#include <math.h>
#include <zmq.h>

#include "jobs.h"
#include "shma.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

/* Under valgrind, this process's accesses to broker-backed mappings loop in
 * the fault handler (tests/integration/test_client fails there the same
 * way): the tests that read arrays here are skipped; ASan covers them. */
#define SKIP_UNDER_VALGRIND()                                                           \
	do {                                                                            \
		if (RUNNING_ON_VALGRIND) {                                              \
			fprintf(stderr, "skipped under valgrind: broker mappings\n");  \
			skip();                                                         \
		}                                                                       \
	} while (0)

static struct harness broker;
static pid_t worker = -1;
static pid_t worker2 = -1; /* a second worker (test_shared_stream) */
static void *zctx;

static int teardown(void **state)
{
	(void)state;
	if (worker > 0) {
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "echo '--- worker log:' >&2; tail -20 '%s/worker.log' >&2",
			 broker.dir);
		if (system(cmd) != 0)
			fprintf(stderr, "(no worker log)\n");
		kill(worker, SIGKILL);
		waitpid(worker, NULL, 0);
		worker = -1;
	}
	if (worker2 > 0) {
		kill(worker2, SIGKILL);
		waitpid(worker2, NULL, 0);
		worker2 = -1;
	}
	if (zctx) {
		zmq_ctx_term(zctx);
		zctx = NULL;
	}
	return it_teardown_harness(&broker);
}

/* ---- the worker process ------------------------------------------------------- */

static void worker_path(char *out, size_t len)
{
	char self[PATH_MAX - 32];
	ssize_t n;

	if (getenv("SHMA_WORKER")) {
		snprintf(out, len, "%s", getenv("SHMA_WORKER"));
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = 0;
	for (int i = 0; i < 3; i++) /* BUILD/tests/integration/x -> BUILD */
		*strrchr(self, '/') = 0;
	snprintf(out, len, "%s/shma-worker", self);
	assert_int_equal(access(out, X_OK), 0);
}

/* Start shma-worker with args (NULL-terminated, after the program name);
 * extra_env: one "NAME=value" or NULL.  Its stderr goes to worker.log. */
static void start_worker(const char *const *args, const char *extra_env)
{
	extern char **environ;
	char prog[PATH_MAX], log[400];
	const char *argv[32];
	char **env;
	size_t n = 0, k = 0;
	int fd;

	worker_path(prog, sizeof(prog));
	argv[k++] = "shma-worker";
	for (size_t i = 0; args[i]; i++)
		argv[k++] = args[i];
	argv[k] = NULL;
	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof(*env));
	assert_non_null(env);
	memcpy(env, environ, n * sizeof(*env));
	env[n] = (char *)extra_env;
	snprintf(log, sizeof(log), "%s/worker.log", broker.dir);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	worker = fork();
	assert_true(worker >= 0);
	if (worker == 0) {
		dup2(fd, STDERR_FILENO);
		execve(prog, (char *const *)argv, env);
		_exit(127);
	}
	close(fd);
	free(env);
}

/* Exit status of the worker within timeout_ms (-1: signal or timeout). */
static int worker_wait(int timeout_ms)
{
	uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(worker, &st, WNOHANG);

		if (r == worker) {
			worker = -1;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		if (it_now_ms() > end)
			return -1;
		it_sleep_ms(10);
	}
}

/* ---- sockets and messages ------------------------------------------------------ */

static void *sock(int type, const char *ep, bool bind)
{
	void *s;
	int zero = 0, tmo = 20000;

	if (!zctx)
		zctx = zmq_ctx_new();
	s = zmq_socket(zctx, type);
	assert_non_null(s);
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s, ZMQ_SNDTIMEO, &tmo, sizeof(tmo));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	assert_int_equal(bind ? zmq_bind(s, ep) : zmq_connect(s, ep), 0);
	return s;
}

static void endpoint(char *out, size_t len, const char *name)
{
	snprintf(out, len, "ipc://%s/%s.ipc", broker.dir, name);
}

static void send_text(void *s, const char *type, const char *text)
{
	assert_int_equal(job_send(s, type, text, strlen(text), 0), 0);
}

static void send_job(void *s, json_t *job)
{
	char *t = json_dumps(job, JSON_COMPACT);

	assert_non_null(t);
	send_text(s, JOB_TYPE, t);
	free(t);
	json_decref(job);
}

/* The next result (typed unless untyped is set). */
static void recv_result(void *s, struct job_result *r, bool typed)
{
	char type[32], *body = NULL, why[300];
	size_t len;
	int err = job_recv(s, 0, &body, &len, type, sizeof(type));

	if (err)
		fail_msg("no result: %s", zmq_strerror(-err));
	assert_string_equal(type, typed ? JOB_RESULT_TYPE : "");
	if (job_result_parse(body, len, r, why, sizeof(why)))
		fail_msg("bad result %s: %s", body, why);
	free(body);
}

static void expect_ok(struct job_result *r, long long id)
{
	if (!r->ok)
		fail_msg("job %lld failed: %s", id, r->error);
	assert_int_equal(json_integer_value(r->id), id);
	assert_true(r->worker == worker);
}

static void expect_error(struct job_result *r, const char *needle)
{
	if (r->ok || !strstr(r->error, needle))
		fail_msg("expected an error with \"%s\", got ok=%d \"%s\"", needle, r->ok, r->error);
}

/* ---- data ------------------------------------------------------------------------ */

#define ROWS 300
#define COLS 7

struct data {
	shma_conn *c;
	shma_array *a, *ai;
	struct shma_view va, vai; /* f8 (ROWS, COLS); i4 (ROWS * COLS,) */
};

static double val(uint64_t k)
{
	return sin((double)k) * 10 + (double)(k % 13);
}

static void make_data(struct data *d)
{
	uint64_t shape[2] = { ROWS, COLS }, n = ROWS * COLS, rev;

	IT_OK(NULL, shma_connect(broker.socket, NULL, &d->c));
	IT_OK(d->c, shma_create(d->c, "t/a", "<f8", 2, shape, 'C', 0, NULL));
	IT_OK(d->c, shma_create(d->c, "t/i", "<i4", 1, &n, 'C', 0, &rev));
	IT_OK(d->c, shma_sync_to(d->c, rev));
	IT_OK(d->c, shma_open(d->c, "t/a", &d->a));
	IT_OK(d->c, shma_open(d->c, "t/i", &d->ai));
	double *x = shma_array_data(d->a);
	int32_t *y = shma_array_data(d->ai);
	for (uint64_t k = 0; k < n; k++) {
		x[k] = val(k);
		y[k] = (int32_t)(k * 1000003 % 2000001) - 1000000;
	}
	IT_OK(d->c, shma_commit(d->c, NULL));
	IT_OK(d->c, shma_view_of(d->a, &d->va));
	IT_OK(d->c, shma_view_of(d->ai, &d->vai));
}

static void free_data(struct data *d)
{
	shma_close(&d->a);
	shma_close(&d->ai);
	shma_disconnect(&d->c);
}

static struct shma_ref ref_of(const struct shma_view *v)
{
	struct shma_ref r;

	assert_int_equal(shma_ref_make(v, &r), 0);
	return r;
}

static struct shma_view sub(const struct shma_view *v, const char *expr)
{
	struct shma_view s;
	char why[100];

	assert_int_equal(shma_view_subscript(v, expr, &s, why, sizeof(why)), 0);
	return s;
}

static double at2(const struct shma_view *v, uint64_t i, uint64_t j)
{
	uint64_t idx[2] = { i, j };
	double x;

	memcpy(&x, shma_view_ptr(v, idx), sizeof(x));
	return x;
}

static void assert_near(double got, double want)
{
	if (!(fabs(got - want) <= 1e-9 * fabs(want) + 1e-9))
		fail_msg("got %.17g, want %.17g", got, want);
}

/* Open the result's ref and return its view (the array stays open in *a). */
static struct shma_view open_result(const struct job_result *r, shma_array **a)
{
	struct shma_view v;

	assert_true(r->has_ref);
	IT_OK(NULL, shma_ref_open(&r->ref, 0, a, &v));
	return v;
}

/* Every op, through a worker reached by `jobs` (pull: results on `results`,
 * rep: results == jobs). */
static void run_ops(void *jobs, void *results, struct data *d)
{
	struct shma_view rv = sub(&d->va, "::-1, 1::2"); /* reversed rows, strided cols */
	struct shma_ref ra = ref_of(&d->va), rrv = ref_of(&rv), ri = ref_of(&d->vai);
	struct job_result r;
	shma_array *out;
	struct shma_view ov;
	double s = 0, mn = INFINITY, mx = -INFINITY, m, ss = 0;
	long long isum = 0;

	/* sum, min, max, std over the whole strided view */
	for (uint64_t i = 0; i < rv.shape[0]; i++)
		for (uint64_t j = 0; j < rv.shape[1]; j++) {
			double x = at2(&rv, i, j);

			s += x;
			mn = x < mn ? x : mn;
			mx = x > mx ? x : mx;
		}
	m = s / (double)(rv.shape[0] * rv.shape[1]);
	for (uint64_t i = 0; i < rv.shape[0]; i++)
		for (uint64_t j = 0; j < rv.shape[1]; j++)
			ss += (at2(&rv, i, j) - m) * (at2(&rv, i, j) - m);
	const char *ops[] = { "sum", "mean", "min", "max", "std" };
	double want[] = { s, m, mn, mx, sqrt(ss / (double)(rv.shape[0] * rv.shape[1] - 1)) };
	for (int i = 0; i < 5; i++) {
		json_t *job = job_build(ops[i], json_integer(i), &rrv, 1);

		if (i == 4)
			json_object_set_new(job, "ddof", json_integer(1));
		send_job(jobs, job);
		recv_result(results, &r, true);
		expect_ok(&r, i);
		assert_near(job_number_value(r.value), want[i]);
		assert_int_equal(r.elements, rv.shape[0] * rv.shape[1]);
		assert_true(r.seconds >= 0);
		job_result_clear(&r);
	}

	/* an exact integer sum */
	for (uint64_t k = 0; k < ROWS * COLS; k++)
		isum += ((int32_t *)d->vai.data)[k];
	send_job(jobs, job_build("sum", json_integer(10), &ri, 1));
	recv_result(results, &r, true);
	expect_ok(&r, 10);
	assert_true(json_is_integer(r.value));
	assert_int_equal(json_integer_value(r.value), isum);
	job_result_clear(&r);

	/* sum along axis 0 into a named array; the value inline too */
	json_t *job = job_build("sum", json_integer(11), &rrv, 1);
	json_object_set_new(job, "axis", json_integer(0));
	json_object_set_new(job, "out", json_string("t/colsum"));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_ok(&r, 11);
	ov = open_result(&r, &out);
	assert_string_equal(r.ref.array, "t/colsum");
	assert_int_equal(ov.ndim, 1);
	assert_int_equal(ov.shape[0], rv.shape[1]);
	for (uint64_t j = 0; j < rv.shape[1]; j++) {
		double cs = 0;

		for (uint64_t i = 0; i < rv.shape[0]; i++)
			cs += at2(&rv, i, j);
		assert_near(((double *)ov.data)[j], cs);
		assert_near(job_number_value(json_array_get(r.value, j)), cs);
	}
	shma_close(&out);
	job_result_clear(&r);

	/* again into the same array: overwritten (a mean this time) */
	job = job_build("mean", json_integer(17), &rrv, 1);
	json_object_set_new(job, "axis", json_integer(0));
	json_object_set_new(job, "out", json_string("t/colsum"));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_ok(&r, 17);
	ov = open_result(&r, &out);
	for (uint64_t j = 0; j < rv.shape[1]; j++) {
		double cs = 0;

		for (uint64_t i = 0; i < rv.shape[0]; i++)
			cs += at2(&rv, i, j);
		assert_near(((double *)ov.data)[j], cs / (double)rv.shape[0]);
	}
	shma_close(&out);
	job_result_clear(&r);

	/* max along the last axis (-1), no name: the worker picks one */
	job = job_build("max", json_integer(12), &ra, 1);
	json_object_set_new(job, "axis", json_integer(-1));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_ok(&r, 12);
	ov = open_result(&r, &out);
	assert_non_null(strstr(r.ref.array, "results/"));
	assert_int_equal(ov.shape[0], ROWS);
	for (uint64_t i = 0; i < ROWS; i++) {
		double rm = -INFINITY;

		for (uint64_t j = 0; j < COLS; j++)
			rm = at2(&d->va, i, j) > rm ? at2(&d->va, i, j) : rm;
		assert_true(((double *)ov.data)[i] == rm);
	}
	shma_close(&out);
	job_result_clear(&r);

	/* histogram */
	job = job_build("histogram", json_integer(13), &ra, 1);
	json_object_set_new(job, "bins", json_integer(9));
	json_object_set_new(job, "range", json_pack("[f,f]", -5.0, 20.0));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_ok(&r, 13);
	{
		uint64_t want_c[9] = { 0 };

		for (uint64_t k = 0; k < ROWS * COLS; k++) {
			double x = ((double *)d->va.data)[k];
			int b = (int)floor((x + 5.0) / 25.0 * 9);

			if (x >= -5 && x <= 20)
				want_c[b > 8 ? 8 : b]++;
		}
		assert_int_equal(json_array_size(r.value), 9);
		for (int b = 0; b < 9; b++)
			assert_int_equal(json_integer_value(json_array_get(r.value, b)), want_c[b]);
		assert_int_equal(json_array_size(json_object_get(r.root, "edges")), 10);
	}
	job_result_clear(&r);

	/* scale, into a named array */
	job = job_build("scale", json_integer(14), &rrv, 1);
	json_object_set_new(job, "factor", json_real(-0.5));
	json_object_set_new(job, "out", json_string("t/scaled"));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_ok(&r, 14);
	ov = open_result(&r, &out);
	assert_int_equal(ov.ndim, 2);
	for (uint64_t i = 0; i < rv.shape[0]; i++)
		for (uint64_t j = 0; j < rv.shape[1]; j++)
			assert_true(at2(&ov, i, j) == -0.5 * at2(&rv, i, j));
	shma_close(&out);
	job_result_clear(&r);

	/* add: the array and itself reversed */
	struct shma_view rev_all = sub(&d->va, "::-1, ::-1");
	struct shma_ref rr[2] = { ra, ref_of(&rev_all) };
	send_job(jobs, job_build("add", json_integer(15), rr, 2));
	recv_result(results, &r, true);
	expect_ok(&r, 15);
	ov = open_result(&r, &out);
	for (uint64_t i = 0; i < ROWS; i++)
		for (uint64_t j = 0; j < COLS; j++)
			assert_true(at2(&ov, i, j) == at2(&d->va, i, j) + at2(&rev_all, i, j));
	shma_close(&out);
	job_result_clear(&r);

	/* dot of a column and a reversed column */
	struct shma_view c0 = sub(&d->va, ":, 0"), c3 = sub(&d->va, "::-1, 3");
	struct shma_ref rd[2] = { ref_of(&c0), ref_of(&c3) };
	double dot = 0;
	for (uint64_t i = 0; i < ROWS; i++)
		dot += at2(&d->va, i, 0) * at2(&d->va, ROWS - 1 - i, 3);
	send_job(jobs, job_build("dot", json_integer(16), rd, 2));
	recv_result(results, &r, true);
	expect_ok(&r, 16);
	assert_near(job_number_value(r.value), dot);
	job_result_clear(&r);
}

/* Bad jobs: each gets an error, and the worker keeps serving. */
static void run_bad_jobs(void *jobs, void *results, struct data *d)
{
	struct shma_ref ra = ref_of(&d->va), bad = ra;
	struct job_result r;
	json_t *job;
	char *t;

	send_text(jobs, JOB_TYPE, "{\"id\": 1, \"op\": ");
	recv_result(results, &r, true);
	expect_error(&r, "not JSON");
	job_result_clear(&r);

	send_text(jobs, JOB_TYPE, "[1, 2]");
	recv_result(results, &r, true);
	expect_error(&r, "JSON object");
	job_result_clear(&r);

	job = job_build("median", json_string("x"), &ra, 1);
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_error(&r, "unknown op \"median\"");
	assert_string_equal(json_string_value(r.id), "x"); /* the id comes back */
	job_result_clear(&r);

	job = job_build("sum", json_integer(3), &ra, 1);
	json_object_set_new(job, "colour", json_string("blue"));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_error(&r, "unknown field \"colour\"");
	job_result_clear(&r);

	/* a ref whose view reaches outside its extent (decode refuses it) */
	job = job_build("sum", json_integer(4), &ra, 1);
	json_object_set_new(json_array_get(json_object_get(job, "refs"), 0), "extent",
			    json_pack("[i,i]", 0, 8));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_error(&r, "refs[0]");
	expect_error(&r, "outside its extent");
	job_result_clear(&r);

	/* a ref to an array that does not exist, and one to another store */
	snprintf(bad.array, sizeof(bad.array), "t/nothing");
	send_job(jobs, job_build("sum", json_integer(5), &bad, 1));
	recv_result(results, &r, true);
	expect_error(&r, "refs[0]: cannot open \"t/nothing\"");
	job_result_clear(&r);
	bad = ra;
	snprintf(bad.store, sizeof(bad.store), "0123456789abcdef");
	send_job(jobs, job_build("sum", json_integer(6), &bad, 1));
	recv_result(results, &r, true);
	expect_error(&r, "another store");
	job_result_clear(&r);

	/* shapes that differ */
	struct shma_view half = sub(&d->va, ":10");
	struct shma_ref two[2] = { ra, ref_of(&half) };
	send_job(jobs, job_build("add", json_integer(7), two, 2));
	recv_result(results, &r, true);
	expect_error(&r, "shapes differ");
	job_result_clear(&r);
	send_job(jobs, job_build("dot", json_integer(8), two, 2));
	recv_result(results, &r, true);
	expect_error(&r, "1-D");
	job_result_clear(&r);

	/* wrong number of refs, axis out of bounds, out without axis, bins */
	send_job(jobs, job_build("add", json_integer(9), &ra, 1));
	recv_result(results, &r, true);
	expect_error(&r, "array of 2 ArrayRefs");
	job_result_clear(&r);
	job = job_build("mean", json_integer(10), &ra, 1);
	json_object_set_new(job, "axis", json_integer(2));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_error(&r, "out of bounds");
	job_result_clear(&r);
	job = job_build("sum", json_integer(11), &ra, 1);
	json_object_set_new(job, "out", json_string("t/x"));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_error(&r, "give \"axis\"");
	job_result_clear(&r);
	job = job_build("histogram", json_integer(12), &ra, 1);
	json_object_set_new(job, "bins", json_integer(0));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_error(&r, "\"bins\"");
	job_result_clear(&r);
	job = job_build("scale", json_integer(13), &ra, 1);
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_error(&r, "factor");
	job_result_clear(&r);

	/* an existing array of another shape as "out" */
	job = job_build("scale", json_integer(14), &ra, 1);
	json_object_set_new(job, "factor", json_real(2));
	json_object_set_new(job, "out", json_string("t/i"));
	send_job(jobs, job);
	recv_result(results, &r, true);
	expect_error(&r, "exists with another dtype");
	job_result_clear(&r);

	/* framing: an unknown type, three frames */
	send_text(jobs, "shma.nope/9", "{}");
	recv_result(results, &r, true);
	expect_error(&r, "unknown message type");
	job_result_clear(&r);
	assert_true(zmq_send(jobs, JOB_TYPE, strlen(JOB_TYPE), ZMQ_SNDMORE) > 0);
	assert_true(zmq_send(jobs, "{}", 2, ZMQ_SNDMORE) > 0);
	assert_true(zmq_send(jobs, "{}", 2, 0) > 0);
	recv_result(results, &r, false);
	expect_error(&r, "one frame of JSON, or two");
	job_result_clear(&r);

	/* an untyped (one-frame) job gets an untyped result; still serving */
	job = job_build("sum", json_integer(99), &ra, 1);
	t = json_dumps(job, JSON_COMPACT);
	json_decref(job);
	send_text(jobs, NULL, t);
	free(t);
	recv_result(results, &r, false);
	expect_ok(&r, 99);
	job_result_clear(&r);
}

static void test_pull(void **state)
{
	char jep[400], rep[400];
	struct data d;
	void *jobs, *results;

	(void)state;
	SKIP_UNDER_VALGRIND();
	it_start(&broker, NULL);
	endpoint(jep, sizeof(jep), "jobs");
	endpoint(rep, sizeof(rep), "results");
	jobs = sock(ZMQ_PUSH, jep, true);
	results = sock(ZMQ_PULL, rep, true);
	start_worker((const char *const[]){ "--jobs", jep, "--results", rep, "-S", broker.socket,
					    "--log-level", "debug", NULL },
		     NULL);
	shma_vm_install_handler();
	make_data(&d);
	run_ops(jobs, results, &d);
	run_bad_jobs(jobs, results, &d);
	free_data(&d);
	kill(worker, SIGTERM);
	assert_int_equal(worker_wait(10000), 0);
	zmq_close(jobs);
	zmq_close(results);
	it_stop(&broker);
}

static void test_rep(void **state)
{
	char ep[400], cfg[400];
	struct data d;
	void *req;
	FILE *f;

	(void)state;
	SKIP_UNDER_VALGRIND();
	it_start(&broker, NULL);
	endpoint(ep, sizeof(ep), "rep");
	/* a configuration file, the command line adding to it */
	snprintf(cfg, sizeof(cfg), "%s/worker.json", broker.dir);
	f = fopen(cfg, "w");
	assert_non_null(f);
	fprintf(f, "{\n  \"broker\": \"%s\",\n  \"jobs\": \"%s\",\n  \"mode\": \"rep\",\n"
		   "  \"bind\": true,\n  \"threads\": 1,\n  \"lease_seconds\": 5,\n"
		   "  \"log_level\": \"debug\"\n}\n", broker.socket, ep);
	fclose(f);
	start_worker((const char *const[]){ "-c", cfg, NULL }, NULL);
	req = sock(ZMQ_REQ, ep, false);
	shma_vm_install_handler();
	make_data(&d);
	run_ops(req, req, &d);
	run_bad_jobs(req, req, &d);
	free_data(&d);
	kill(worker, SIGTERM);
	assert_int_equal(worker_wait(10000), 0);
	zmq_close(req);
	it_stop(&broker);
}

/* Two threads, and two workers on one stream: every job answered once. */
static void test_shared_stream(void **state)
{
	char jep[400], rep[400];
	pid_t first;
	struct data d;
	void *jobs, *results;
	unsigned from_first = 0;

	(void)state;
	SKIP_UNDER_VALGRIND();
	it_start(&broker, NULL);
	endpoint(jep, sizeof(jep), "jobs");
	endpoint(rep, sizeof(rep), "results");
	jobs = sock(ZMQ_PUSH, jep, true);
	results = sock(ZMQ_PULL, rep, true);
	start_worker((const char *const[]){ "--jobs", jep, "--results", rep, "--threads", "2",
					    NULL }, "SHMA_WORKER_JOB_DELAY_MS=20");
	first = worker2 = worker;
	start_worker((const char *const[]){ "--jobs", jep, "--results", rep, NULL },
		     "SHMA_WORKER_JOB_DELAY_MS=20");
	shma_vm_install_handler();
	make_data(&d);
	it_sleep_ms(300); /* both connected: PUSH deals to both */
	struct shma_ref ra = ref_of(&d.va);
	for (int i = 0; i < 30; i++) {
		send_job(jobs, job_build("sum", json_integer(i), &ra, 1));
	}
	bool seen[30] = { false };
	for (int i = 0; i < 30; i++) {
		struct job_result r;

		recv_result(results, &r, true);
		assert_true(r.ok);
		assert_false(seen[json_integer_value(r.id)]);
		seen[json_integer_value(r.id)] = true;
		from_first += r.worker == first;
		job_result_clear(&r);
	}
	assert_true(from_first > 0 && from_first < 30);
	free_data(&d);
	kill(first, SIGTERM);
	kill(worker, SIGTERM);
	{
		int st;

		assert_int_equal(waitpid(first, &st, 0), first);
		worker2 = -1;
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(worker_wait(10000), 0);
	zmq_close(jobs);
	zmq_close(results);
	it_stop(&broker);
}

/* SIGTERM during a job: the job is answered, then the worker exits 0. */
static void test_sigterm_mid_job(void **state)
{
	char jep[400], rep[400];
	struct job_result r;
	struct data d;
	void *jobs, *results;
	uint64_t t0;

	(void)state;
	SKIP_UNDER_VALGRIND();
	it_start(&broker, NULL);
	endpoint(jep, sizeof(jep), "jobs");
	endpoint(rep, sizeof(rep), "results");
	jobs = sock(ZMQ_PUSH, jep, true);
	results = sock(ZMQ_PULL, rep, true);
	start_worker((const char *const[]){ "--jobs", jep, "--results", rep, NULL },
		     "SHMA_WORKER_JOB_DELAY_MS=800");
	shma_vm_install_handler();
	make_data(&d);
	struct shma_ref ra = ref_of(&d.va);
	send_job(jobs, job_build("max", json_integer(42), &ra, 1));
	it_sleep_ms(300); /* the worker is inside the job */
	t0 = it_now_ms();
	kill(worker, SIGTERM);
	recv_result(results, &r, true);
	expect_ok(&r, 42);
	job_result_clear(&r);
	assert_int_equal(worker_wait(10000), 0);
	assert_true(it_now_ms() - t0 >= 300); /* it did finish the job first */
	free_data(&d);
	zmq_close(jobs);
	zmq_close(results);
	it_stop(&broker);
}

static void test_bad_config(void **state)
{
	char cfg[400], log[400], cmd[900];

	(void)state;
	it_start(&broker, NULL);
	snprintf(cfg, sizeof(cfg), "%s/bad.json", broker.dir);
	snprintf(log, sizeof(log), "%s/worker.log", broker.dir);
	FILE *f = fopen(cfg, "w");
	assert_non_null(f);
	fprintf(f, "{\n  \"mode\": \"pull\",\n  \"treads\": 4\n}\n");
	fclose(f);
	start_worker((const char *const[]){ "-c", cfg, NULL }, NULL);
	assert_int_equal(worker_wait(10000), 2);
	snprintf(cmd, sizeof(cmd), "grep -q 'bad.json:3:3: treads: unknown key' '%s'", log);
	assert_int_equal(system(cmd), 0);
	f = fopen(cfg, "w");
	assert_non_null(f);
	fprintf(f, "{\"threads\": 0}");
	fclose(f);
	start_worker((const char *const[]){ "-c", cfg, NULL }, NULL);
	assert_int_equal(worker_wait(10000), 2);
	snprintf(cmd, sizeof(cmd), "grep -q 'bad.json:1:2: threads: must be an integer from 1' '%s'",
		 log);
	assert_int_equal(system(cmd), 0);
	it_stop(&broker);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_pull, teardown),
		cmocka_unit_test_teardown(test_rep, teardown),
		cmocka_unit_test_teardown(test_shared_stream, teardown),
		cmocka_unit_test_teardown(test_sigterm_mid_job, teardown),
		cmocka_unit_test_teardown(test_bad_config, teardown),
	};

	return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
