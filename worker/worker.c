/* worker.c - shma-worker: runs analytics jobs on ArrayRefs (docs/WORKER.md).
 *
 *   shma-worker [-c FILE] [--jobs EP] [--results EP] [--mode pull|rep] [--bind]
 *               [--threads N] [-S SOCKET] [--log-level L] [-h]
 *
 * A job (worker/jobs.h) names an operation and ArrayRefs; the worker maps
 * the refs (no data is copied: the pages are the broker's), computes
 * (worker/ops.h), commits array results to arrays of its own broker
 * connection and answers with values and ArrayRefs.  In pull mode jobs come
 * from a PULL socket and results go out on a PUSH socket; in rep mode each
 * job is a request on a REP socket and the result is its reply.  Many
 * workers (and many threads of one worker) share one job stream: ZeroMQ
 * hands each job to one of them.
 *
 * Threads: each job thread owns its sockets and its broker connection for
 * results.  The main thread only waits for SIGTERM/SIGINT (blocked in every
 * thread, taken with sigtimedwait) and then makes the stop eventfd readable:
 * each job thread finishes the job it is running, sends its result and
 * exits; the process exits 0.  A job that fails (bad JSON, bad ref, an
 * unknown op, shapes that differ, data that cannot be mapped) is answered
 * with an error and the worker goes on.
 *
 * Exit status: 0 clean stop, 1 failure (e.g. cannot bind), 2 bad arguments
 * or configuration.
 */
#include "jobs.h"
#include "ops.h"
#include "shma.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_THREADS 64
#define EP_MAX 512
#define INLINE_MAX 1024	     /* array results up to this many elements also go inline */
#define RESULT_LINGER_MS 5000 /* results still queued at exit: this long to leave */
#define JOBS_RCVHWM 16	      /* jobs queued in one thread's socket */
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

/* ---- log ------------------------------------------------------------------------ */

enum { L_ERROR, L_WARN, L_INFO, L_DEBUG };
static const char *const level_names[] = { "error", "warn", "info", "debug" };
static int log_level = L_INFO;

static void logm(int lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logm(int lvl, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	int n;

	if (lvl > log_level)
		return;
	n = snprintf(line, sizeof(line), "shma-worker[%d]: %s: ", (int)getpid(), level_names[lvl]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line); /* one call: lines of threads do not mix */
}

/* ---- configuration ------------------------------------------------------------- */

enum wmode { MODE_PULL, MODE_REP };

struct wconf {
	char broker[108]; /* "" : libshm's default socket */
	char jobs[EP_MAX];
	char results[EP_MAX]; /* "" in rep mode */
	enum wmode mode;
	bool bind;
	unsigned threads;
	double lease_seconds;
	int log_level;
};

/* Line and column (1-based, in characters) of a top-level key of text, or
 * 0 when it cannot be found (the text is valid JSON: jansson accepted it). */
static void locate_key(const char *text, size_t len, const char *key, int *line, int *col)
{
	int depth = 0, ln = 1, cl = 1, kl = 0, kc = 0;
	char prev = 0; /* last significant character outside strings */
	size_t klen = strlen(key);

	*line = *col = 0;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (c == '"') {
			size_t j = i + 1;
			bool is_key = depth == 1 && (prev == '{' || prev == ',');

			kl = ln;
			kc = cl;
			while (j < len && text[j] != '"') {
				if (text[j] == '\\')
					j++;
				j++;
			}
			if (is_key && j - i - 1 == klen && !memcmp(text + i + 1, key, klen)) {
				*line = kl;
				*col = kc;
				return;
			}
			for (size_t k = i; k <= j && k < len; k++)
				if ((text[k] & 0xc0) != 0x80)
					cl++;
			i = j;
			prev = '"';
			continue;
		}
		if (c == '\n') {
			ln++;
			cl = 1;
			continue;
		}
		if ((c & 0xc0) != 0x80)
			cl++;
		if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
			depth--;
		if (c != ' ' && c != '\t' && c != '\r')
			prev = c;
	}
}

struct cfload {
	const char *file, *text;
	size_t len;
	char *err;
	size_t errlen;
};

static int cf_fail(struct cfload *ld, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cf_fail(struct cfload *ld, const char *key, const char *fmt, ...)
{
	char msg[600];
	int line = 0, col = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (key)
		locate_key(ld->text, ld->len, key, &line, &col);
	if (line)
		snprintf(ld->err, ld->errlen, "%s:%d:%d: %s: %s", ld->file, line, col, key, msg);
	else if (key)
		snprintf(ld->err, ld->errlen, "%s: %s: %s", ld->file, key, msg);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", ld->file, msg);
	return -EINVAL;
}

static bool endpoint_ok(const char *s)
{
	return (!strncmp(s, "ipc://", 6) && strlen(s) > 6 && strlen(s) - 6 <= 107) ||
	       (!strncmp(s, "tcp://", 6) && strlen(s) > 6) ||
	       (!strncmp(s, "inproc://", 9) && strlen(s) > 9);
}

static int cf_endpoint(struct cfload *ld, json_t *o, const char *key, char *out, size_t cap)
{
	json_t *v = json_object_get(o, key);
	const char *s;

	if (!v || json_is_null(v))
		return 0;
	s = json_string_value(v);
	if (!s || strlen(s) >= cap || !endpoint_ok(s))
		return cf_fail(ld, key, "must be null or a ZeroMQ endpoint \"ipc://PATH\" (PATH at "
			       "most 107 bytes), \"tcp://HOST:PORT\" or \"inproc://NAME\"");
	strcpy(out, s);
	return 0;
}

static int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, level_names[i]))
			return i;
	return -1;
}

/* Read and check a configuration file over the defaults in cf. */
static int config_load(const char *path, struct wconf *cf, char *err, size_t errlen)
{
	static const char *const known[] = { "broker", "jobs", "mode", "bind", "results",
					     "threads", "lease_seconds", "log_level" };
	struct cfload ld = { .file = path, .err = err, .errlen = errlen };
	json_error_t jerr;
	json_t *o = NULL, *v;
	const char *key, *s;
	char *text = NULL;
	FILE *f;
	long n;
	int ret = -EINVAL;

	f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > (1 << 20) || fseek(f, 0, SEEK_SET) ||
	    !(text = malloc((size_t)n + 1)) || fread(text, 1, (size_t)n, f) != (size_t)n) {
		snprintf(err, errlen, "%s: cannot read (or larger than 1 MiB)", path);
		fclose(f);
		free(text);
		return -EIO;
	}
	fclose(f);
	text[n] = 0;
	ld.text = text;
	ld.len = (size_t)n;
	o = json_loadb(text, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (!o) {
		snprintf(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
		goto out;
	}
	if (!json_is_object(o)) {
		cf_fail(&ld, NULL, "the configuration is a JSON object");
		goto out;
	}
	json_object_foreach(o, key, v) {
		size_t i;

		for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (!strcmp(key, known[i]))
				break;
		if (i == sizeof(known) / sizeof(known[0])) {
			cf_fail(&ld, key, "unknown key (known: broker, jobs, mode, bind, results, "
				"threads, lease_seconds, log_level)");
			goto out;
		}
	}
	if ((v = json_object_get(o, "broker")) && !json_is_null(v)) {
		s = json_string_value(v);
		if (!s || s[0] != '/' || strlen(s) >= sizeof(cf->broker)) {
			cf_fail(&ld, "broker", "must be null (the default socket) or the absolute "
				"path of the broker's socket, shorter than 108 bytes");
			goto out;
		}
		strcpy(cf->broker, s);
	}
	if (cf_endpoint(&ld, o, "jobs", cf->jobs, sizeof(cf->jobs)) ||
	    cf_endpoint(&ld, o, "results", cf->results, sizeof(cf->results)))
		goto out;
	if ((v = json_object_get(o, "mode"))) {
		s = json_string_value(v);
		if (!s || (strcmp(s, "pull") && strcmp(s, "rep"))) {
			cf_fail(&ld, "mode", "must be \"pull\" or \"rep\"");
			goto out;
		}
		cf->mode = !strcmp(s, "pull") ? MODE_PULL : MODE_REP;
	}
	if ((v = json_object_get(o, "bind"))) {
		if (!json_is_boolean(v)) {
			cf_fail(&ld, "bind", "must be true or false");
			goto out;
		}
		cf->bind = json_is_true(v);
	}
	if ((v = json_object_get(o, "threads"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > MAX_THREADS) {
			cf_fail(&ld, "threads", "must be an integer from 1 to %d", MAX_THREADS);
			goto out;
		}
		cf->threads = (unsigned)json_integer_value(v);
	}
	if ((v = json_object_get(o, "lease_seconds"))) {
		if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 3600) {
			cf_fail(&ld, "lease_seconds", "must be a number from 0 to 3600");
			goto out;
		}
		cf->lease_seconds = json_number_value(v);
	}
	if ((v = json_object_get(o, "log_level"))) {
		s = json_string_value(v);
		if (!s || log_level_parse(s) < 0) {
			cf_fail(&ld, "log_level", "must be \"error\", \"warn\", \"info\" or \"debug\"");
			goto out;
		}
		cf->log_level = log_level_parse(s);
	}
	ret = 0;
out:
	json_decref(o);
	free(text);
	return ret;
}

/* The broker's default runtime directory (docs/CONFIG.md). */
static void runtime_dir(char *out, size_t cap)
{
	const char *x = getenv("XDG_RUNTIME_DIR");

	if (x && x[0] == '/')
		snprintf(out, cap, "%s/shma", x);
	else
		snprintf(out, cap, "/tmp/shma-%u", (unsigned)geteuid());
}

/* Defaults for what neither the file nor the command line gave; checks. */
static int config_finish(struct wconf *cf, char *err, size_t errlen)
{
	char rt[300];

	runtime_dir(rt, sizeof(rt));
	if (!cf->jobs[0])
		snprintf(cf->jobs, sizeof(cf->jobs), "ipc://%s/jobs.ipc", rt);
	if (cf->mode == MODE_PULL && !cf->results[0])
		snprintf(cf->results, sizeof(cf->results), "ipc://%s/results.ipc", rt);
	if (cf->mode == MODE_REP)
		cf->results[0] = 0;
	if (!endpoint_ok(cf->jobs) || (cf->results[0] && !endpoint_ok(cf->results))) {
		snprintf(err, errlen, "bad endpoint \"%s\" (ipc://PATH, tcp://HOST:PORT, inproc://NAME)",
			 endpoint_ok(cf->jobs) ? cf->results : cf->jobs);
		return -EINVAL;
	}
	if (cf->bind && cf->threads > 1) {
		snprintf(err, errlen, "bind takes one thread (an endpoint is bound once): run "
			 "several workers that connect, or threads: 1");
		return -EINVAL;
	}
	return 0;
}

/* ---- the worker ------------------------------------------------------------------ */

struct worker {
	struct wconf cf;
	void *zctx;
	int stopfd;	    /* eventfd, readable once a stop is asked */
	atomic_int running; /* job threads not yet finished */
	atomic_bool failed;
	unsigned delay_ms; /* SHMA_WORKER_JOB_DELAY_MS: tests of a stop mid-job */
};

struct wthread {
	struct worker *w;
	unsigned index;
	pthread_t tid;
	void *jobs, *results;
	shma_conn *conn; /* for result arrays; connected on first use */
	uint64_t seq;	 /* for result array names */
	uint64_t njobs, nfailed;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool stop_asked(struct worker *w)
{
	/* the eventfd stays readable: nobody reads it */
	zmq_pollitem_t it = { .socket = NULL, .fd = w->stopfd, .events = ZMQ_POLLIN };

	return zmq_poll(&it, 1, 0) > 0 && (it.revents & ZMQ_POLLIN);
}

/* ---- SIGBUS: data that cannot be mapped fails the job, not the worker ------------ */

static __thread sigjmp_buf *bus_guard;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (bus_guard)
		siglongjmp(*bus_guard, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Run fn(arg) so that a SIGBUS in it (libshm could not serve a fault)
 * returns -EFAULT instead of killing the process.  All state fn changes
 * must live in *arg. */
static int guarded(int (*fn)(void *), void *arg)
{
	sigjmp_buf jb;
	int ret;

	if (sigsetjmp(jb, 1)) {
		bus_guard = NULL;
		return -EFAULT;
	}
	bus_guard = &jb;
	ret = fn(arg);
	bus_guard = NULL;
	return ret;
}

/* ---- result arrays ------------------------------------------------------------------ */

struct outarr {
	shma_array *a;
	struct shma_view v;
	char name[JOB_NAME_MAX + 1];
};

static int thread_conn(struct wthread *t, char *why, size_t whylen)
{
	struct shma_conn_options opts = { .no_invalidations = true };
	int err;

	if (t->conn)
		return 0;
	err = shma_connect(t->w->cf.broker[0] ? t->w->cf.broker : NULL, &opts, &t->conn);
	if (err)
		snprintf(why, whylen, "cannot connect to the broker for the result array: %s",
			 shma_strerror(err));
	return err;
}

static void drop_conn_if_lost(struct wthread *t, int err)
{
	if (err == SHMA_EDISCONNECTED && t->conn) {
		shma_disconnect(&t->conn);
		logm(L_WARN, "lost the broker connection for result arrays; reconnecting at the "
		     "next job");
	}
}

/* Create the result array in this transaction (shma_create_tx: it appears
 * with its data, in one commit), or take the array job->out names if it
 * exists as a C-order float64 array of this shape; map it. */
static int out_begin(struct wthread *t, const struct job *job, unsigned ndim,
		     const uint64_t *shape, struct outarr *o, char *why, size_t whylen)
{
	struct shma_array_info info;
	int err;

	memset(o, 0, sizeof(*o));
	err = thread_conn(t, why, whylen);
	if (err)
		return err;
	err = shma_sync(t->conn, NULL); /* the newest catalog */
	for (int tries = 0; !err; tries++) {
		if (job->out[0]) {
			snprintf(o->name, sizeof(o->name), "%s", job->out);
			err = shma_open(t->conn, o->name, &o->a);
			if (err != -ENOENT)
				break;
		} else {
			snprintf(o->name, sizeof(o->name), "results/w%d.%u.%llu", (int)getpid(),
				 t->index, (unsigned long long)++t->seq);
		}
		err = shma_create_tx(t->conn, o->name, "<f8", ndim, shape, 'C', 0, &o->a);
		if (err != -EEXIST || job->out[0] || tries > 100)
			break;
		err = 0; /* a fresh name was taken: the next one */
	}
	if (err) {
		snprintf(why, whylen, "result array \"%s\": %s (%s)", o->name, shma_strerror(err),
			 shma_conn_error(t->conn));
		drop_conn_if_lost(t, err);
		return err;
	}
	shma_array_info(o->a, &info);
	if (strcmp(info.dtype, "<f8") || info.order != 'C' || info.ndim != ndim ||
	    memcmp(info.shape, shape, ndim * sizeof(*shape))) {
		snprintf(why, whylen, "result array \"%s\" exists with another dtype, order or "
			 "shape (a result is a C-order <f8 array of the result's shape)", o->name);
		shma_close(&o->a);
		return -EEXIST;
	}
	return shma_view_of(o->a, &o->v);
}

/* Commit the result array and put its ref into result. */
static int out_commit(struct wthread *t, struct outarr *o, json_t *result, char *why,
		      size_t whylen)
{
	struct shma_ref ref;
	uint64_t rev;
	json_t *rj;
	int err;

	err = shma_commit(t->conn, &rev);
	if (err) {
		snprintf(why, whylen, "committing result array \"%s\": %s (%s)", o->name,
			 shma_strerror(err), shma_conn_error(t->conn));
		shma_abort(t->conn);
		drop_conn_if_lost(t, err);
		return err;
	}
	err = shma_ref_make(&o->v, &ref);
	if (err) {
		snprintf(why, whylen, "a ref to result array \"%s\": %s (%s)", o->name,
			 shma_strerror(err), shma_conn_error(t->conn));
		return err;
	}
	if (t->w->cf.lease_seconds > 0) {
		int e = shma_lease(t->conn, ref.revision, (unsigned)(t->w->cf.lease_seconds * 1000));

		if (e)
			logm(L_WARN, "lease of revision %llu: %s", (unsigned long long)ref.revision,
			     shma_strerror(e));
	}
	rj = job_ref_json(&ref);
	if (!rj) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	json_object_set_new(result, "ref", rj);
	return 0;
}

static void out_end(struct wthread *t, struct outarr *o)
{
	if (o->a) {
		shma_close(&o->a);
		if (t->conn)
			shma_abort(t->conn);
	}
}

/* ---- running a job ------------------------------------------------------------------ */

struct run {
	struct wthread *t;
	struct job job;
	shma_array *in[JOB_MAX_REFS];
	struct shma_view v[JOB_MAX_REFS];
	struct outarr out;
	json_t *result; /* being built */
	char why[1024];
};

static json_t *doubles_json(const double *x, uint64_t n)
{
	json_t *a = json_array();

	for (uint64_t i = 0; i < n && a; i++)
		json_array_append_new(a, job_number(x[i]));
	return a;
}

static json_t *shape_json(unsigned ndim, const uint64_t *shape)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < ndim && a; i++)
		json_array_append_new(a, json_integer((json_int_t)shape[i]));
	return a;
}

static int run_reduce_axis(struct run *r)
{
	const struct shma_view *v = &r->v[0];
	int64_t ax = r->job.axis;
	uint64_t shape[SHMA_MAXDIM], nout;
	unsigned ndim = 0;
	double scalar;
	int err;

	if (v->ndim == 0 || ax >= (int64_t)v->ndim || ax < -(int64_t)v->ndim) {
		snprintf(r->why, sizeof(r->why), "axis %lld is out of bounds for a view of %u "
			 "dimension%s", (long long)ax, v->ndim, v->ndim == 1 ? "" : "s");
		return -EINVAL;
	}
	if (ax < 0)
		ax += v->ndim;
	for (unsigned i = 0; i < v->ndim; i++)
		if (i != (unsigned)ax)
			shape[ndim++] = v->shape[i];
	nout = ops_size_without_axis(v, (unsigned)ax);
	json_object_set_new(r->result, "shape", shape_json(ndim, shape));
	json_object_set_new(r->result, "elements", json_integer((json_int_t)shma_view_size(v)));
	if (ndim == 0 && !r->job.out[0]) { /* a 1-D view: a number, as NumPy's */
		err = ops_reduce_axis(r->job.op, v, (unsigned)ax, r->job.ddof, &scalar, r->why,
				      sizeof(r->why));
		if (!err)
			json_object_set_new(r->result, "value", job_number(scalar));
		return err;
	}
	err = out_begin(r->t, &r->job, ndim, shape, &r->out, r->why, sizeof(r->why));
	if (err)
		return err;
	err = ops_reduce_axis(r->job.op, v, (unsigned)ax, r->job.ddof, (double *)r->out.v.data,
			      r->why, sizeof(r->why));
	if (err)
		return err;
	if (nout <= INLINE_MAX)
		json_object_set_new(r->result, "value",
				    doubles_json((const double *)r->out.v.data, nout));
	return out_commit(r->t, &r->out, r->result, r->why, sizeof(r->why));
}

static int run_reduce(struct run *r)
{
	struct ops_value val;
	int err;

	if (r->job.has_axis)
		return run_reduce_axis(r);
	err = ops_reduce(r->job.op, &r->v[0], r->job.ddof, &val, r->why, sizeof(r->why));
	if (err)
		return err;
	json_object_set_new(r->result, "value",
			    val.exact ? json_integer(val.ivalue) : job_number(val.value));
	if (r->job.op == OPS_STD)
		json_object_set_new(r->result, "mean", job_number(val.mean));
	json_object_set_new(r->result, "elements", json_integer((json_int_t)val.n));
	return 0;
}

static int run_histogram(struct run *r)
{
	uint64_t *counts = calloc(r->job.bins, sizeof(*counts));
	json_t *c, *e;
	double lo, hi;
	int err;

	if (!counts)
		return -ENOMEM;
	err = ops_histogram(&r->v[0], r->job.bins, r->job.has_range ? r->job.range : NULL, counts,
			    &lo, &hi, r->why, sizeof(r->why));
	if (!err) {
		c = json_array();
		e = json_array();
		for (size_t i = 0; i < r->job.bins; i++) {
			json_array_append_new(c, json_integer((json_int_t)counts[i]));
			json_array_append_new(e, job_number(lo + (double)i * ((hi - lo) /
									      (double)r->job.bins)));
		}
		json_array_append_new(e, job_number(hi));
		json_object_set_new(r->result, "value", c);
		json_object_set_new(r->result, "edges", e);
		json_object_set_new(r->result, "elements",
				    json_integer((json_int_t)shma_view_size(&r->v[0])));
	}
	free(counts);
	return err;
}

static int run_elementwise(struct run *r)
{
	const struct shma_view *a = &r->v[0];
	int err;

	if (r->job.op == OPS_ADD) { /* check before creating anything */
		err = ops_check_shapes(a, "first input", &r->v[1], "second input", r->why,
				       sizeof(r->why));
		if (err)
			return err;
	}
	err = out_begin(r->t, &r->job, a->ndim, a->shape, &r->out, r->why, sizeof(r->why));
	if (err)
		return err;
	if (r->job.op == OPS_SCALE)
		err = ops_scale(a, r->job.factor, &r->out.v, r->why, sizeof(r->why));
	else
		err = ops_add(a, &r->v[1], &r->out.v, r->why, sizeof(r->why));
	if (err)
		return err;
	json_object_set_new(r->result, "shape", shape_json(a->ndim, a->shape));
	json_object_set_new(r->result, "elements", json_integer((json_int_t)shma_view_size(a)));
	return out_commit(r->t, &r->out, r->result, r->why, sizeof(r->why));
}

static int run_dot(struct run *r)
{
	double d;
	int err = ops_dot(&r->v[0], &r->v[1], &d, r->why, sizeof(r->why));

	if (!err) {
		json_object_set_new(r->result, "value", job_number(d));
		json_object_set_new(r->result, "elements",
				    json_integer((json_int_t)shma_view_size(&r->v[0])));
	}
	return err;
}

static int run_compute(void *arg)
{
	struct run *r = arg;

	switch (r->job.op) {
	case OPS_SUM:
	case OPS_MEAN:
	case OPS_MIN:
	case OPS_MAX:
	case OPS_STD:
		return run_reduce(r);
	case OPS_HISTOGRAM:
		return run_histogram(r);
	case OPS_SCALE:
	case OPS_ADD:
		return run_elementwise(r);
	case OPS_DOT:
		return run_dot(r);
	default:
		snprintf(r->why, sizeof(r->why), "op not implemented");
		return -ENOSYS;
	}
}

/* Map a dense input at once: its blocks (shma_prefault) and their page
 * tables (MADV_POPULATE_READ), instead of one SIGSEGV per block and one
 * minor fault per 4 KiB page on first touch.  A sparse view (a large step)
 * is left to fault in what it touches.  Best effort: errors are ignored
 * (the access faults as usual). */
static void populate(const struct shma_view *v)
{
	uint64_t lo, hi, need = shma_view_size(v) * v->itemsize;
	uintptr_t a, b;

	shma_view_extent(v, &lo, &hi);
	if (hi <= lo || need < (hi - lo) / 2)
		return;
	a = ((uintptr_t)v->base + lo) & ~(uintptr_t)4095;
	b = ((uintptr_t)v->base + hi + 4095) & ~(uintptr_t)4095;
	if (shma_prefault((void *)a, b - a, 0) == 0)
		(void)madvise((void *)a, b - a, MADV_POPULATE_READ);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Run one job message; returns the result (owned). */
static json_t *run_job(struct wthread *t, const char *text, size_t len)
{
	double t0 = now_s();
	struct run *r = calloc(1, sizeof(*r));
	json_t *res;
	int err;

	if (!r)
		return job_result_error(NULL, "out of memory");
	r->t = t;
	err = job_parse(text, len, &r->job, r->why, sizeof(r->why));
	if (err) {
		res = job_result_error(r->job.id, "%s", r->why);
		goto out;
	}
	if (t->w->delay_ms)
		sleep_ms(t->w->delay_ms);
	for (unsigned i = 0; i < r->job.nrefs; i++) {
		const struct shma_ref *ref = &r->job.refs[i];

		err = shma_ref_open(ref, 0, &r->in[i], &r->v[i]);
		if (err) {
			res = job_result_error(r->job.id, "refs[%u]: cannot open \"%s\" at revision "
					       "%llu of %s: %s", i, ref->array,
					       (unsigned long long)ref->revision, ref->socket,
					       shma_strerror(err));
			goto out;
		}
		if (!ops_dtype_ok(r->v[i].dtype, r->why, sizeof(r->why))) {
			res = job_result_error(r->job.id, "refs[%u]: %s", i, r->why);
			goto out;
		}
		populate(&r->v[i]);
	}
	r->result = job_result_ok(r->job.id, r->job.op);
	if (!r->result) {
		res = job_result_error(r->job.id, "out of memory");
		goto out;
	}
	err = guarded(run_compute, r);
	if (err == -EFAULT) {
		res = job_result_error(r->job.id, "the data could not be mapped (SIGBUS: %s)",
				       shma_strerror(shma_vm_fault_error()));
	} else if (err) {
		res = job_result_error(r->job.id, "%s: %s", ops_name(r->job.op),
				       r->why[0] ? r->why : shma_strerror(err));
	} else {
		res = r->result;
		r->result = NULL;
		json_object_set_new(res, "seconds", json_real(now_s() - t0));
	}
out:
	out_end(t, &r->out);
	for (unsigned i = 0; i < JOB_MAX_REFS; i++)
		if (r->in[i])
			shma_close(&r->in[i]);
	json_decref(r->result);
	if (json_is_true(json_object_get(res, "ok"))) {
		logm(L_DEBUG, "thread %u: %s done in %.6f s", t->index, ops_name(r->job.op),
		     now_s() - t0);
	} else {
		t->nfailed++;
		logm(L_INFO, "thread %u: job failed: %s", t->index,
		     json_string_value(json_object_get(res, "error")));
	}
	job_clear(&r->job);
	free(r);
	t->njobs++;
	return res;
}

/* ---- the job threads --------------------------------------------------------------- */

static int attach(void *s, const char *ep, bool bind)
{
	return bind ? zmq_bind(s, ep) : zmq_connect(s, ep);
}

/* Send a result; in pull mode wait for the results peer (a PUSH with no
 * peer blocks), but once a stop is asked at most RESULT_LINGER_MS. */
static void send_result(struct wthread *t, bool typed, const char *text, size_t len)
{
	void *s = t->results ? t->results : t->jobs;
	const char *type = typed ? JOB_RESULT_TYPE : NULL;
	double deadline = 0;

	for (;;) {
		int err = job_send(s, type, text, len, ZMQ_DONTWAIT);
		zmq_pollitem_t it[2] = {
			{ .socket = s, .events = ZMQ_POLLOUT },
			{ .socket = NULL, .fd = t->w->stopfd, .events = ZMQ_POLLIN },
		};

		if (err != -EAGAIN) {
			if (err)
				logm(L_ERROR, "thread %u: cannot send a result: %s", t->index,
				     zmq_strerror(-err));
			return;
		}
		if (deadline == 0 && stop_asked(t->w))
			deadline = now_s() + RESULT_LINGER_MS / 1000.0;
		if (deadline && now_s() > deadline) {
			logm(L_WARN, "thread %u: stopping: a result nobody takes is dropped",
			     t->index);
			return;
		}
		zmq_poll(it, deadline ? 1 : 2, 100);
	}
}

static void handle_message(struct wthread *t)
{
	char type[32], *body = NULL, *text;
	size_t len = 0;
	json_t *res;
	int err;

	err = job_recv(t->jobs, ZMQ_DONTWAIT, &body, &len, type, sizeof(type));
	if (err == -EAGAIN || err == -EINTR)
		return;
	if (err == -EPROTO || err == -ENOMEM) {
		res = job_result_error(NULL, err == -ENOMEM ? "out of memory"
					     : "a job is one frame of JSON, or two: \"" JOB_TYPE
					       "\" then the JSON, at most %u bytes", JOB_MAX_BYTES);
	} else if (err) {
		logm(L_ERROR, "thread %u: receiving a job: %s", t->index, zmq_strerror(-err));
		return;
	} else if (type[0] && strcmp(type, JOB_TYPE)) {
		res = job_result_error(NULL, "unknown message type \"%.20s\" (a job's is \"" JOB_TYPE
				       "\")", type);
	} else {
		res = run_job(t, body, len);
	}
	free(body);
	text = res ? json_dumps(res, JSON_COMPACT) : NULL;
	if (!text)
		text = strdup("{\"id\":null,\"ok\":false,\"error\":\"out of memory\"}");
	if (text)
		send_result(t, type[0] != 0, text, strlen(text));
	free(text);
	json_decref(res);
}

static void *thread_main(void *arg)
{
	struct wthread *t = arg;
	struct worker *w = t->w;
	const struct wconf *cf = &w->cf;
	int zero = 0, linger = RESULT_LINGER_MS, hwm = JOBS_RCVHWM;

	t->jobs = zmq_socket(w->zctx, cf->mode == MODE_PULL ? ZMQ_PULL : ZMQ_REP);
	if (!t->jobs)
		goto fail;
	zmq_setsockopt(t->jobs, ZMQ_LINGER, cf->mode == MODE_REP ? &linger : &zero, sizeof(int));
	if (cf->mode == MODE_PULL)
		zmq_setsockopt(t->jobs, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	if (attach(t->jobs, cf->jobs, cf->bind)) {
		logm(L_ERROR, "cannot %s the jobs socket to %s: %s", cf->bind ? "bind" : "connect",
		     cf->jobs, zmq_strerror(zmq_errno()));
		goto fail;
	}
	if (cf->mode == MODE_PULL) {
		t->results = zmq_socket(w->zctx, ZMQ_PUSH);
		if (!t->results)
			goto fail;
		zmq_setsockopt(t->results, ZMQ_LINGER, &linger, sizeof(linger));
		if (attach(t->results, cf->results, cf->bind)) {
			logm(L_ERROR, "cannot %s the results socket to %s: %s",
			     cf->bind ? "bind" : "connect", cf->results, zmq_strerror(zmq_errno()));
			goto fail;
		}
	}
	for (;;) {
		zmq_pollitem_t it[2] = {
			{ .socket = t->jobs, .events = ZMQ_POLLIN },
			{ .socket = NULL, .fd = w->stopfd, .events = ZMQ_POLLIN },
		};
		int n = zmq_poll(it, 2, -1);

		if (n < 0) {
			if (zmq_errno() == EINTR)
				continue;
			logm(L_ERROR, "thread %u: poll: %s", t->index, zmq_strerror(zmq_errno()));
			goto fail;
		}
		if (it[1].revents & ZMQ_POLLIN)
			break; /* stop: between jobs */
		if (it[0].revents & ZMQ_POLLIN)
			handle_message(t);
	}
	goto out;
fail:
	atomic_store(&w->failed, true);
out:
	if (t->jobs)
		zmq_close(t->jobs);
	if (t->results)
		zmq_close(t->results);
	t->jobs = t->results = NULL;
	shma_disconnect(&t->conn);
	logm(L_DEBUG, "thread %u: %llu jobs, %llu failed", t->index, (unsigned long long)t->njobs,
	     (unsigned long long)t->nfailed);
	atomic_fetch_sub(&w->running, 1);
	return NULL;
}

/* ---- main -------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shma-worker [-c FILE] [--jobs EP] [--results EP] [--mode pull|rep] [--bind]\n"
		"                   [--threads N] [-S SOCKET] [--log-level LEVEL] [-h]\n"
		"\n"
		"Runs analytics jobs (sum, mean, min, max, std, histogram, scale, add, dot) on\n"
		"ArrayRefs received over ZeroMQ; see docs/WORKER.md.\n"
		"\n"
		"  -c, --config FILE   configuration (JSON: broker, jobs, mode, bind, results,\n"
		"                      threads, lease_seconds, log_level); options override it\n"
		"      --jobs EP       jobs endpoint (default ipc://RUNTIME/jobs.ipc, RUNTIME\n"
		"                      being $XDG_RUNTIME_DIR/shma or /tmp/shma-$UID)\n"
		"      --results EP    results endpoint, pull mode (default ipc://RUNTIME/results.ipc)\n"
		"      --mode M        pull (PULL jobs, PUSH results) or rep (REP: reply per job)\n"
		"      --bind          bind the endpoints instead of connecting to them\n"
		"      --threads N     jobs run at once (default 1)\n"
		"  -S, --socket PATH   the broker's socket, for result arrays (default: libshm's)\n"
		"      --log-level L   error, warn, info (default) or debug\n"
		"  -h, --help          this help\n"
		"\n"
		"SIGTERM/SIGINT: finish the jobs running, answer them, exit 0.  Exit status 1:\n"
		"failure, 2: bad arguments or configuration.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "results", required_argument, NULL, 'r' },
		{ "mode", required_argument, NULL, 'm' },
		{ "bind", no_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 't' },
		{ "socket", required_argument, NULL, 'S' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct wconf cli = { .threads = 0 }, *cf;
	bool cli_mode = false, cli_bind = false;
	const char *path = NULL;
	struct wthread *th = NULL;
	struct worker w;
	struct sigaction sa;
	sigset_t sigs;
	char err[800];
	int opt, status = 0, cli_log = -1;
	unsigned started = 0;

	memset(&w, 0, sizeof(w));
	cf = &w.cf;
	cf->mode = MODE_PULL;
	cf->threads = 1;
	cf->lease_seconds = 60;
	cf->log_level = L_INFO;
	while ((opt = getopt_long(argc, argv, "c:S:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'j':
		case 'r':
			if (strlen(optarg) >= EP_MAX || !endpoint_ok(optarg)) {
				fprintf(stderr, "shma-worker: bad endpoint \"%s\" (ipc://PATH, "
					"tcp://HOST:PORT, inproc://NAME)\n", optarg);
				return 2;
			}
			strcpy(opt == 'j' ? cli.jobs : cli.results, optarg);
			break;
		case 'm':
			if (strcmp(optarg, "pull") && strcmp(optarg, "rep")) {
				fprintf(stderr, "shma-worker: --mode is pull or rep\n");
				return 2;
			}
			cli.mode = !strcmp(optarg, "pull") ? MODE_PULL : MODE_REP;
			cli_mode = true;
			break;
		case 'b':
			cli_bind = true;
			break;
		case 't': {
			char *end;
			long n = strtol(optarg, &end, 10);

			if (*end || n < 1 || n > MAX_THREADS) {
				fprintf(stderr, "shma-worker: --threads takes 1 to %d\n", MAX_THREADS);
				return 2;
			}
			cli.threads = (unsigned)n;
			break;
		}
		case 'S':
			if (optarg[0] != '/' || strlen(optarg) >= sizeof(cli.broker)) {
				fprintf(stderr, "shma-worker: -S takes the absolute path of the broker's "
					"socket (shorter than 108 bytes)\n");
				return 2;
			}
			strcpy(cli.broker, optarg);
			break;
		case 'l':
			cli_log = log_level_parse(optarg);
			if (cli_log < 0) {
				fprintf(stderr, "shma-worker: --log-level is error, warn, info or debug\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shma-worker: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (path && config_load(path, cf, err, sizeof(err))) {
		fprintf(stderr, "shma-worker: bad configuration: %s\n", err);
		return 2;
	}
	/* the command line wins */
	if (cli.jobs[0])
		strcpy(cf->jobs, cli.jobs);
	if (cli.results[0])
		strcpy(cf->results, cli.results);
	if (cli_mode)
		cf->mode = cli.mode;
	if (cli_bind)
		cf->bind = true;
	if (cli.threads)
		cf->threads = cli.threads;
	if (cli.broker[0])
		strcpy(cf->broker, cli.broker);
	if (cli_log >= 0)
		cf->log_level = cli_log;
	if (config_finish(cf, err, sizeof(err))) {
		fprintf(stderr, "shma-worker: %s\n", err);
		return 2;
	}
	log_level = cf->log_level;
	if (getenv("SHMA_WORKER_JOB_DELAY_MS"))
		w.delay_ms = (unsigned)atoi(getenv("SHMA_WORKER_JOB_DELAY_MS"));

	/* signals: SIGTERM/SIGINT taken by this thread only (the mask is
	 * inherited by ZeroMQ's and the job threads); SIGBUS fails a job */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	shma_vm_install_handler();

	w.stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	w.zctx = zmq_ctx_new();
	th = calloc(cf->threads, sizeof(*th));
	if (w.stopfd < 0 || !w.zctx || !th) {
		logm(L_ERROR, "cannot start: %s", strerror(errno));
		status = 1;
		goto out;
	}
	logm(L_INFO, "%s jobs %s %s (%s mode)%s%s, %u thread%s, broker %s", cf->bind ? "binding"
	     : "connecting", cf->bind ? "at" : "to", cf->jobs, cf->mode == MODE_PULL ? "pull" : "rep",
	     cf->results[0] ? ", results to " : "", cf->results, cf->threads,
	     cf->threads > 1 ? "s" : "", cf->broker[0] ? cf->broker : "(default socket)");
	atomic_store(&w.running, (int)cf->threads);
	for (unsigned i = 0; i < cf->threads; i++) {
		th[i].w = &w;
		th[i].index = i;
		if (pthread_create(&th[i].tid, NULL, thread_main, &th[i])) {
			atomic_fetch_sub(&w.running, (int)(cf->threads - i));
			atomic_store(&w.failed, true);
			break;
		}
		started++;
	}
	/* wait for a signal, or for the threads to give up */
	while (atomic_load(&w.running) == (int)cf->threads && !atomic_load(&w.failed)) {
		struct timespec ts = { 0, 200 * 1000000L };
		siginfo_t si;
		int sig = sigtimedwait(&sigs, &si, &ts);

		if (sig > 0) {
			logm(L_INFO, "%s: finishing the jobs running, then stopping",
			     sig == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		}
	}
	{
		uint64_t one = 1;

		if (write(w.stopfd, &one, sizeof(one)) != sizeof(one))
			logm(L_ERROR, "cannot signal the job threads: %s", strerror(errno));
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i].tid, NULL);
	if (atomic_load(&w.failed))
		status = 1;
	{
		uint64_t n = 0, f = 0;

		for (unsigned i = 0; i < started; i++) {
			n += th[i].njobs;
			f += th[i].nfailed;
		}
		logm(L_INFO, "stopped: %llu jobs, %llu failed", (unsigned long long)n,
		     (unsigned long long)f);
	}
out:
	free(th);
	if (w.zctx)
		zmq_ctx_term(w.zctx);
	if (w.stopfd >= 0)
		close(w.stopfd);
	return status;
}
