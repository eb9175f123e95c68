/* demo.c - shma-demo: the whole system in one command (`make demo`).
 *
 *   shma-demo [--size BYTES] [--workers N] [--slices K] [-h]
 *
 * 1. Makes a temporary directory and starts shma-broker (found next to this
 *    program) on its embedded default configuration, with XDG_RUNTIME_DIR
 *    set to the directory and XDG_STATE_HOME to its subdirectory state/: the
 *    broker's socket and its durable store are both in there, never in the
 *    user's home.
 * 2. Creates a float64 array of --size bytes (default 1 GiB), fills it with
 *    deterministic values and commits it.
 * 3. Starts N shma-worker processes (PULL jobs from our PUSH, PUSH results to
 *    our PULL) and hands them K slices of the array as ArrayRefs: first a sum
 *    of every slice, then min, max, std and a histogram of every slice.
 * 4. Aggregates the answers and checks them against the same computations
 *    done here, in one process, over our own mapping.
 * 5. Prints throughput, and how many bytes crossed process boundaries while
 *    the workers computed (job and result messages: refs and numbers, no
 *    array data), and for contrast the time to ship the same data as bytes
 *    through ZeroMQ ipc to one process that sums it (this program, started
 *    again as --sink).
 * 6. Stops the workers and the broker with SIGTERM (each must exit 0), removes
 *    the directory and checks that nothing is left: no child process, no
 *    socket, no directory.
 *
 * Exit status 0 only if every check passed; on any failure the children are
 * killed, the directory removed, and the status is 1.
 */
#include "jobs.h"
#include "ops.h"
#include "shma.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

extern char **environ;

#define MAX_WORKERS 64
#define HIST_BINS 50
#define VALUE_MAX 1000.0		 /* values are in [0, VALUE_MAX) */
#define FILL_CHUNK ((uint64_t)128 << 20) /* bytes filled per commit */
#define SHIP_CHUNK ((size_t)1 << 20)	 /* bytes per ZeroMQ message, bytes contrast */
#define MAX_SIZE ((uint64_t)3 << 30)	 /* the default pool is 4 GiB */
#define RESULT_TIMEOUT_S 600
#define STOP_TIMEOUT_S 20

/* ---- state, and the way out ------------------------------------------------------ */

static struct {
	char dir[200]; /* the temporary directory; its socket path must fit 107 bytes */
	char socket[PATH_MAX];
	char bindir[PATH_MAX];
	pid_t broker;
	pid_t workers[MAX_WORKERS];
	unsigned nworkers;
	pid_t sink;
} D = { .broker = -1, .sink = -1 };

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_dir(void)
{
	if (D.dir[0]) {
		nftw(D.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		D.dir[0] = 0;
	}
}

static void show_log(const char *name)
{
	char path[PATH_MAX + 64], line[512];
	long lines = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", D.dir, name);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		lines++;
	rewind(f);
	fprintf(stderr, "--- %s (last lines)\n", name);
	for (long i = 0; fgets(line, sizeof(line), f); i++)
		if (i >= lines - 12)
			fputs(line, stderr);
	fclose(f);
}

static void kill_all(int sig)
{
	for (unsigned i = 0; i < D.nworkers; i++)
		if (D.workers[i] > 0)
			kill(D.workers[i], sig);
	if (D.sink > 0)
		kill(D.sink, sig);
	if (D.broker > 0)
		kill(D.broker, sig);
}

static void reap_all(void)
{
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
}

/* Something failed: say what, show the logs, kill and reap every child,
 * remove the directory, exit 1. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shma-demo: FAILED: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (D.dir[0]) {
		char name[32];

		show_log("broker.log");
		for (unsigned i = 0; i < D.nworkers; i++) {
			snprintf(name, sizeof(name), "worker-%u.log", i);
			show_log(name);
		}
	}
	kill_all(SIGKILL);
	reap_all();
	rm_dir();
	exit(1);
}

/* SIGINT/SIGTERM to the demo: kill the children and remove the directory
 * with async-signal-safe calls only (rm runs as a child), then exit. */
static void on_signal(int sig)
{
	static char *const rm_argv[] = { "rm", "-rf", D.dir, NULL };
	pid_t p;

	kill_all(SIGKILL);
	while (waitpid(-1, NULL, 0) > 0)
		;
	if (D.dir[0] && (p = fork()) == 0) {
		execve("/bin/rm", rm_argv, environ);
		_exit(127);
	}
	while (waitpid(-1, NULL, 0) > 0)
		;
	_exit(128 + sig);
}

/* ---- children ---------------------------------------------------------------------- */

/* environ with XDG_RUNTIME_DIR=dir and XDG_STATE_HOME=dir/state (built
 * before fork: setenv is not async-signal-safe). */
static char **child_env(void)
{
	static char xdg[PATH_MAX + 32], state[PATH_MAX + 32];
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 3, sizeof(*env));
	if (!env)
		die("out of memory");
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "XDG_RUNTIME_DIR=", 16) &&
		    strncmp(environ[i], "XDG_STATE_HOME=", 15))
			env[k++] = environ[i];
	snprintf(xdg, sizeof(xdg), "XDG_RUNTIME_DIR=%s", D.dir);
	snprintf(state, sizeof(state), "XDG_STATE_HOME=%s/state", D.dir);
	env[k++] = xdg;
	env[k++] = state;
	env[k] = NULL;
	return env;
}

/* Start prog with argv, stderr (and stdout) to D.dir/log. */
static pid_t spawn(const char *prog, char *const argv[], const char *log, char **env)
{
	char logpath[PATH_MAX + 64];
	pid_t pid;
	int fd;

	snprintf(logpath, sizeof(logpath), "%s/%s", D.dir, log);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("cannot create %s: %s", logpath, strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		execve(prog, argv, env);
		_exit(127);
	}
	close(fd);
	return pid;
}

/* Wait for pid to exit within timeout_s; its exit status, or -1 if it was
 * killed by a signal or had to be. */
static int wait_exit(pid_t pid, double timeout_s)
{
	double end = now_s() + timeout_s;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_s() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(5000);
	}
}

/* Has any child died?  (Called while waiting for them to work.) */
static void check_children(void)
{
	char who[64];
	int st;
	pid_t r = waitpid(-1, &st, WNOHANG);

	if (r <= 0)
		return;
	snprintf(who, sizeof(who), "child %d", (int)r);
	if (r == D.broker) {
		D.broker = -1;
		snprintf(who, sizeof(who), "the broker (pid %d)", (int)r);
	}
	if (r == D.sink) {
		D.sink = -1;
		snprintf(who, sizeof(who), "the bytes sink (pid %d)", (int)r);
	}
	for (unsigned i = 0; i < D.nworkers; i++)
		if (D.workers[i] == r) {
			D.workers[i] = -1;
			snprintf(who, sizeof(who), "worker %u (pid %d, log worker-%u.log)", i, (int)r, i);
		}
	die("%s exited early (%s %d)", who, WIFEXITED(st) ? "status" : "signal",
	    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* ---- the data ---------------------------------------------------------------------- */

/* Element i: 1000 u^2 for a u in [0, 1) that hashes i. */
static inline double value_of(uint64_t i)
{
	uint64_t h = i * UINT64_C(0x9E3779B97F4A7C15);

	h ^= h >> 29;
	double u = (double)(h >> 11) * 0x1p-53;
	return VALUE_MAX * u * u;
}

static const char *human(double bytes, char *buf, size_t len)
{
	if (bytes >= (double)(1 << 30))
		snprintf(buf, len, "%.2f GiB", bytes / (double)(1 << 30));
	else if (bytes >= (double)(1 << 20))
		snprintf(buf, len, "%.1f MiB", bytes / (double)(1 << 20));
	else
		snprintf(buf, len, "%.0f KiB", bytes / 1024.0);
	return buf;
}

/* ---- jobs -------------------------------------------------------------------------- */

struct slice {
	struct shma_ref ref;
	uint64_t n;
	/* answers */
	double sum, min, max, std, mean;
	uint64_t hist[HIST_BINS];
	unsigned answered;
};

struct traffic {
	uint64_t messages, bytes;
};

static void send_job(void *push, json_t *job, struct traffic *tr)
{
	char *text = json_dumps(job, JSON_COMPACT);
	int err;

	if (!text)
		die("out of memory");
	err = job_send(push, JOB_TYPE, text, strlen(text), 0);
	if (err)
		die("sending a job: %s", zmq_strerror(-err));
	tr->messages++;
	tr->bytes += strlen(JOB_TYPE) + strlen(text);
	free(text);
	json_decref(job);
}

static void send_jobs(void *push, struct slice *sl, unsigned k, const char *op,
		      struct traffic *tr)
{
	for (unsigned i = 0; i < k; i++) {
		json_t *job = job_build(op, json_integer(i), &sl[i].ref, 1);

		if (!job)
			die("cannot build a job");
		if (!strcmp(op, "histogram")) {
			json_object_set_new(job, "bins", json_integer(HIST_BINS));
			json_object_set_new(job, "range", json_pack("[f,f]", 0.0, VALUE_MAX));
		}
		send_job(push, job, tr);
	}
}

/* Receive `count` results into the slices. */
static void collect(void *pull, struct slice *sl, unsigned k, unsigned count, struct traffic *tr,
		    unsigned *per_worker_jobs, pid_t *pids)
{
	double deadline = now_s() + RESULT_TIMEOUT_S;

	for (unsigned got = 0; got < count;) {
		zmq_pollitem_t it = { .socket = pull, .events = ZMQ_POLLIN };
		struct job_result r;
		char type[32], *body, why[300];
		const char *op;
		size_t len;
		int64_t id;
		int err;

		if (now_s() > deadline)
			die("no result within %d s (%u of %u)", RESULT_TIMEOUT_S, got, count);
		if (zmq_poll(&it, 1, 200) <= 0) {
			check_children();
			continue;
		}
		err = job_recv(pull, 0, &body, &len, type, sizeof(type));
		if (err)
			die("receiving a result: %s", err == -EPROTO ? "malformed" : zmq_strerror(-err));
		tr->messages++;
		tr->bytes += strlen(type) + len;
		if (strcmp(type, JOB_RESULT_TYPE))
			die("a result of type \"%s\"", type);
		if (job_result_parse(body, len, &r, why, sizeof(why)))
			die("a malformed result (%s): %s", why, body);
		free(body);
		if (!r.ok)
			die("a job failed: %s", r.error);
		id = json_integer_value(r.id);
		if (!json_is_integer(r.id) || id < 0 || id >= k)
			die("a result with a bad id");
		op = json_string_value(json_object_get(r.root, "op"));
		if (!op)
			die("a result without op");
		struct slice *s = &sl[id];
		if (!strcmp(op, "sum"))
			s->sum = job_number_value(r.value);
		else if (!strcmp(op, "min"))
			s->min = job_number_value(r.value);
		else if (!strcmp(op, "max"))
			s->max = job_number_value(r.value);
		else if (!strcmp(op, "std")) {
			s->std = job_number_value(r.value);
			s->mean = job_number_value(json_object_get(r.root, "mean"));
		} else if (!strcmp(op, "histogram")) {
			if (json_array_size(r.value) != HIST_BINS)
				die("a histogram of %zu bins", json_array_size(r.value));
			for (unsigned b = 0; b < HIST_BINS; b++)
				s->hist[b] = (uint64_t)json_integer_value(json_array_get(r.value, b));
		} else {
			die("a result for op %s", op);
		}
		if (r.elements != s->n)
			die("slice %" PRId64 ": %" PRIu64 " elements, the worker says %" PRIu64, id, s->n,
			    r.elements);
		s->answered++;
		for (unsigned i = 0; i < D.nworkers; i++)
			if (pids[i] == r.worker)
				per_worker_jobs[i]++;
		job_result_clear(&r);
		got++;
	}
}

/* ---- the bytes contrast: the sink ----------------------------------------------------- */

/* shma-demo --sink EP: receive doubles in messages until an empty one, sum
 * them, send the sum back (8 bytes) on the same PAIR socket. */
static int sink_main(const char *ep)
{
	void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_PAIR);
	double sum = 0, c = 0;
	zmq_msg_t m;

	if (!s || zmq_connect(s, ep))
		return 1;
	for (;;) {
		size_t n;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s, 0) < 0)
			return 1;
		n = zmq_msg_size(&m) / sizeof(double);
		if (n == 0) {
			zmq_msg_close(&m);
			break;
		}
		const double *x = zmq_msg_data(&m);
		for (size_t i = 0; i < n; i++) { /* Neumaier */
			double t = sum + x[i];

			c += fabs(sum) >= fabs(x[i]) ? (sum - t) + x[i] : (x[i] - t) + sum;
			sum = t;
		}
		zmq_msg_close(&m);
	}
	sum += c;
	zmq_send(s, &sum, sizeof(sum), 0);
	zmq_close(s);
	zmq_ctx_term(ctx);
	return 0;
}

/* Ship n doubles to a sink process; returns the seconds from the first
 * byte sent to the sum received, and the sum. */
static double ship_bytes(void *ctx, const double *x, uint64_t n, double *sum_out)
{
	char ep[PATH_MAX + 16], self[PATH_MAX + 32];
	char *argv[] = { "shma-demo", "--sink", ep, NULL };
	void *s = zmq_socket(ctx, ZMQ_PAIR);
	int hwm = 16, zero = 0;
	double t0, t1;

	snprintf(ep, sizeof(ep), "ipc://%s/ship.ipc", D.dir);
	if (!s || zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm)) ||
	    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero)) || zmq_bind(s, ep))
		die("the bytes socket: %s", zmq_strerror(zmq_errno()));
	{ /* this very program, started again as the sink */
		ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (l < 0)
			die("readlink /proc/self/exe: %s", strerror(errno));
		self[l] = 0;
	}
	D.sink = spawn(self, argv, "sink.log", environ);
	/* the sink is ready when its first message can go: PAIR blocks until
	 * the peer is connected, so time from the first send */
	t0 = 0;
	for (uint64_t off = 0; off < n; off += SHIP_CHUNK / sizeof(double)) {
		uint64_t k = n - off < SHIP_CHUNK / sizeof(double) ? n - off : SHIP_CHUNK / sizeof(double);

		if (zmq_send(s, x + off, k * sizeof(double), 0) < 0)
			die("shipping bytes: %s", zmq_strerror(zmq_errno()));
		if (off == 0)
			t0 = now_s();
	}
	if (zmq_send(s, "", 0, 0) < 0)
		die("shipping bytes: %s", zmq_strerror(zmq_errno()));
	{
		zmq_pollitem_t it = { .socket = s, .events = ZMQ_POLLIN };
		double deadline = now_s() + RESULT_TIMEOUT_S;

		while (zmq_poll(&it, 1, 200) <= 0) {
			check_children();
			if (now_s() > deadline)
				die("the sink did not answer");
		}
	}
	if (zmq_recv(s, sum_out, sizeof(*sum_out), 0) != sizeof(*sum_out))
		die("the sink's answer");
	t1 = now_s();
	zmq_close(s);
	if (wait_exit(D.sink, STOP_TIMEOUT_S) != 0)
		die("the sink did not exit cleanly");
	D.sink = -1;
	return t1 - t0;
}

/* ---- the reference --------------------------------------------------------------------- */

struct stats {
	double sum, min, max, std;
	uint64_t hist[HIST_BINS];
};

static void reference(const double *x, uint64_t n, struct stats *st)
{
	double s = 0, c = 0, mn = INFINITY, mx = -INFINITY, mean, ss = 0, cs = 0;

	for (uint64_t i = 0; i < n; i++) { /* Neumaier */
		double t = s + x[i];

		c += fabs(s) >= fabs(x[i]) ? (s - t) + x[i] : (x[i] - t) + s;
		s = t;
	}
	st->sum = s + c;
	for (uint64_t i = 0; i < n; i++)
		mn = x[i] < mn ? x[i] : mn;
	for (uint64_t i = 0; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	st->min = mn;
	st->max = mx;
	mean = st->sum / (double)n;
	for (uint64_t i = 0; i < n; i++) {
		double d = (x[i] - mean) * (x[i] - mean), t = ss + d;

		cs += ss >= d ? (ss - t) + d : (d - t) + ss;
		ss = t;
	}
	st->std = sqrt((ss + cs) / (double)n);
	memset(st->hist, 0, sizeof(st->hist));
	for (uint64_t i = 0; i < n; i++) {
		if (!(x[i] >= 0 && x[i] <= VALUE_MAX))
			continue;
		uint64_t b = (uint64_t)(x[i] / VALUE_MAX * HIST_BINS);

		st->hist[b < HIST_BINS ? b : HIST_BINS - 1]++;
	}
}

static bool close_rel(double a, double b, double rel)
{
	return fabs(a - b) <= rel * fabs(b);
}

/* ---- main ------------------------------------------------------------------------------ */

static uint64_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	uint64_t mul = 1;

	if (end == s || v <= 0)
		return 0;
	while (*end == ' ')
		end++;
	if (!strcmp(end, "") || !strcmp(end, "B"))
		mul = 1;
	else if (!strcmp(end, "K") || !strcmp(end, "KiB"))
		mul = 1 << 10;
	else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
		mul = 1 << 20;
	else if (!strcmp(end, "G") || !strcmp(end, "GiB"))
		mul = 1 << 30;
	else
		return 0;
	return (uint64_t)(v * (double)mul);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: shma-demo [--size BYTES] [--workers N] [--slices K] [-h]\n"
		   "\n"
		   "Starts a broker on the embedded default configuration in a temporary\n"
		   "directory, fills a float64 array, has N shma-worker processes compute on\n"
		   "K slices of it passed as ArrayRefs, checks their answers against one\n"
		   "process, compares with shipping the bytes through ZeroMQ, and stops\n"
		   "everything.\n"
		   "\n"
		   "  --size BYTES   array size, e.g. 1GiB, 32MiB (default 1GiB, at most 3GiB)\n"
		   "  --workers N    worker processes (default 4)\n"
		   "  --slices K     slices (default 4 per worker)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "workers", required_argument, NULL, 'w' },
		{ "slices", required_argument, NULL, 'k' },
		{ "sink", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t size = (uint64_t)1 << 30, n, shape[1];
	unsigned nworkers = 4, k = 0, per_worker[MAX_WORKERS] = { 0 };
	char hb[32], hb2[32], tmpl[PATH_MAX], path[PATH_MAX + 64];
	struct shma_conn_options copts = { .no_invalidations = true };
	struct traffic tr = { 0, 0 };
	struct slice *sl;
	struct stats ref, agg;
	struct shma_view whole;
	shma_conn *c = NULL;
	shma_array *a = NULL;
	void *ctx, *push, *pull, *mon;
	double t0, t_fill, t_sum, t_stats, t_ref, t_ship, ship_sum;
	bool ok = true;
	struct stat sb;
	char **env;
	int opt, err;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			size = parse_size(optarg);
			if (!size) {
				fprintf(stderr, "shma-demo: bad --size \"%s\" (e.g. 1GiB, 64MiB)\n", optarg);
				return 2;
			}
			break;
		case 'w':
			nworkers = (unsigned)atoi(optarg);
			if (nworkers < 1 || nworkers > MAX_WORKERS) {
				fprintf(stderr, "shma-demo: --workers takes 1 to %d\n", MAX_WORKERS);
				return 2;
			}
			break;
		case 'k':
			k = (unsigned)atoi(optarg);
			if (k < 1 || k > 100000) {
				fprintf(stderr, "shma-demo: --slices takes 1 to 100000\n");
				return 2;
			}
			break;
		case 'S':
			return sink_main(optarg);
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (!k)
		k = 4 * nworkers;
	n = size / sizeof(double);
	if (size > MAX_SIZE || n < k) {
		fprintf(stderr, "shma-demo: --size must hold at least one float64 per slice and be "
			"at most 3GiB (the default broker pool is 4 GiB)\n");
		return 2;
	}
	size = n * sizeof(double);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* ---- 1. the broker ---- */
	{
		ssize_t l = readlink("/proc/self/exe", D.bindir, sizeof(D.bindir) - 1);
		char *slash;

		if (l < 0)
			die("readlink /proc/self/exe: %s", strerror(errno));
		D.bindir[l] = 0;
		slash = strrchr(D.bindir, '/');
		*slash = 0;
	}
	snprintf(tmpl, sizeof(tmpl), "%s/shma-demo-XXXXXX",
		 getenv("TMPDIR") && getenv("TMPDIR")[0] == '/' ? getenv("TMPDIR") : "/tmp");
	if (strlen(tmpl) + strlen("/shma/broker.sock") > 107) {
		fprintf(stderr, "shma-demo: %s: too long for a socket path in it (set TMPDIR)\n",
			tmpl);
		return 1;
	}
	if (!mkdtemp(tmpl)) {
		fprintf(stderr, "shma-demo: mkdtemp %s: %s\n", tmpl, strerror(errno));
		return 1;
	}
	strcpy(D.dir, tmpl);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	printf("shma demo: a %s float64 array (%" PRIu64 " values), %u workers, %u slices\n",
	       human((double)size, hb, sizeof(hb)), n, nworkers, k);
	printf("  temporary directory %s (XDG_RUNTIME_DIR of the broker and workers; "
	       "the broker's store in state/)\n", D.dir);
	env = child_env();
	{
		char prog[PATH_MAX + 32];
		char *bargv[] = { "shma-broker", NULL };

		snprintf(prog, sizeof(prog), "%s/shma-broker", D.bindir);
		if (getenv("SHMA_BROKER"))
			snprintf(prog, sizeof(prog), "%s", getenv("SHMA_BROKER"));
		if (access(prog, X_OK))
			die("%s: %s (build it: make)", prog, strerror(errno));
		D.broker = spawn(prog, bargv, "broker.log", env);
	}
	snprintf(D.socket, sizeof(D.socket), "%s/shma/broker.sock", D.dir);
	t0 = now_s();
	for (;;) {
		err = shma_connect(D.socket, &copts, &c);
		if (!err)
			break;
		check_children();
		if (now_s() - t0 > 20)
			die("the broker did not come up: %s", shma_strerror(err));
		usleep(10000);
	}
	printf("broker: pid %d on the embedded default configuration, socket %s\n", (int)D.broker,
	       D.socket);

	/* ---- 2. the array ---- */
	shape[0] = n;
	{
		uint64_t rev;

		err = shma_create(c, "demo/x", "<f8", 1, shape, 'C', 0, &rev);
		if (!err)
			err = shma_sync_to(c, rev);
		if (!err)
			err = shma_open(c, "demo/x", &a);
		if (err)
			die("creating the array: %s (%s)", shma_strerror(err), shma_conn_error(c));
	}
	t0 = now_s();
	{
		double *x = shma_array_data(a);

		for (uint64_t off = 0; off < n; off += FILL_CHUNK / sizeof(double)) {
			uint64_t end = off + FILL_CHUNK / sizeof(double);

			if (end > n)
				end = n;
			for (uint64_t i = off; i < end; i++)
				x[i] = value_of(i);
			err = shma_commit(c, NULL);
			if (err)
				die("commit: %s (%s)", shma_strerror(err), shma_conn_error(c));
		}
	}
	t_fill = now_s() - t0;
	printf("fill: %s written and committed in %.2f s (%.2f GB/s; commits of %s)\n",
	       human((double)size, hb, sizeof(hb)), t_fill, (double)size / t_fill / 1e9,
	       human((double)FILL_CHUNK, hb2, sizeof(hb2)));
	if (shma_view_of(a, &whole))
		die("a view of the array");

	/* ---- 3. the workers ---- */
	ctx = zmq_ctx_new();
	push = zmq_socket(ctx, ZMQ_PUSH);
	pull = zmq_socket(ctx, ZMQ_PULL);
	mon = zmq_socket(ctx, ZMQ_PAIR);
	if (!ctx || !push || !pull || !mon)
		die("ZeroMQ: %s", zmq_strerror(zmq_errno()));
	{
		char jobs_ep[PATH_MAX + 16], res_ep[PATH_MAX + 16], prog[PATH_MAX + 32];
		int zero = 0;

		snprintf(jobs_ep, sizeof(jobs_ep), "ipc://%s/jobs.ipc", D.dir);
		snprintf(res_ep, sizeof(res_ep), "ipc://%s/results.ipc", D.dir);
		zmq_setsockopt(push, ZMQ_LINGER, &zero, sizeof(zero));
		zmq_setsockopt(pull, ZMQ_LINGER, &zero, sizeof(zero));
		zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof(zero));
		if (zmq_socket_monitor(push, "inproc://demo-monitor", ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ||
		    zmq_connect(mon, "inproc://demo-monitor") || zmq_bind(push, jobs_ep) ||
		    zmq_bind(pull, res_ep))
			die("ZeroMQ: %s", zmq_strerror(zmq_errno()));
		snprintf(prog, sizeof(prog), "%s/shma-worker", D.bindir);
		if (getenv("SHMA_WORKER"))
			snprintf(prog, sizeof(prog), "%s", getenv("SHMA_WORKER"));
		if (access(prog, X_OK))
			die("%s: %s (build it: make)", prog, strerror(errno));
		for (unsigned i = 0; i < nworkers; i++) {
			char log[32];
			char *wargv[] = { "shma-worker", "--jobs",  jobs_ep,  "--results", res_ep,
					  "-S",		 D.socket, "--log-level", "warn", NULL };

			snprintf(log, sizeof(log), "worker-%u.log", i);
			D.workers[i] = spawn(prog, wargv, log, env);
			D.nworkers = i + 1;
		}
	}
	/* every worker connected (handshake done) before the first job, so that
	 * PUSH spreads the jobs over all of them */
	t0 = now_s();
	for (unsigned connected = 0; connected < nworkers;) {
		zmq_pollitem_t it = { .socket = mon, .events = ZMQ_POLLIN };
		zmq_msg_t m;

		if (now_s() - t0 > 20)
			die("only %u of %u workers connected", connected, nworkers);
		if (zmq_poll(&it, 1, 100) <= 0) {
			check_children();
			continue;
		}
		zmq_msg_init(&m);
		zmq_msg_recv(&m, mon, 0); /* event and value */
		zmq_msg_close(&m);
		zmq_msg_init(&m);
		zmq_msg_recv(&m, mon, 0); /* endpoint */
		zmq_msg_close(&m);
		connected++;
	}
	usleep(20000);
	printf("workers: %u started and connected (pids", nworkers);
	for (unsigned i = 0; i < nworkers; i++)
		printf(" %d", (int)D.workers[i]);
	printf(")\n");

	/* ---- the slices, as refs ---- */
	sl = calloc(k, sizeof(*sl));
	if (!sl)
		die("out of memory");
	for (unsigned i = 0; i < k; i++) {
		struct shma_view v;
		uint64_t lo = n * i / k, hi = n * (i + 1) / k;

		if (shma_view_slice(&whole, 0, (int64_t)lo, (int64_t)hi, 1, &v))
			die("slicing");
		err = shma_ref_make(&v, &sl[i].ref);
		if (err)
			die("a ref: %s (%s)", shma_strerror(err), shma_conn_error(c));
		sl[i].n = hi - lo;
	}
	{
		char *t;
		size_t len;

		if (shma_ref_encode(&sl[0].ref, &t, &len) == 0) {
			printf("  slice 0 as an ArrayRef (%zu bytes): %s\n", len, t);
			free(t);
		}
	}

	/* ---- sum, then the other statistics ---- */
	t0 = now_s();
	send_jobs(push, sl, k, "sum", &tr);
	collect(pull, sl, k, k, &tr, per_worker, D.workers);
	t_sum = now_s() - t0;
	printf("sum over ArrayRefs: %u jobs in %.3f s: %.2f GB/s\n", k, t_sum,
	       (double)size / t_sum / 1e9);
	t0 = now_s();
	send_jobs(push, sl, k, "min", &tr);
	send_jobs(push, sl, k, "max", &tr);
	send_jobs(push, sl, k, "std", &tr);
	send_jobs(push, sl, k, "histogram", &tr);
	collect(pull, sl, k, 4 * k, &tr, per_worker, D.workers);
	t_stats = now_s() - t0;
	printf("min, max, std, histogram over ArrayRefs: %u jobs in %.3f s: %.2f GB/s\n", 4 * k,
	       t_stats, 4.0 * (double)size / t_stats / 1e9);
	printf("  jobs per worker:");
	for (unsigned i = 0; i < nworkers; i++)
		printf(" %u", per_worker[i]);
	printf("\n");
	printf("workers in all: %.2f GiB read in %.3f s: %.2f GB/s\n",
	       5.0 * (double)size / (double)(1 << 30), t_sum + t_stats,
	       5.0 * (double)size / (t_sum + t_stats) / 1e9);

	/* ---- 4. aggregate and check ---- */
	{
		struct ksum {
			double s, c;
		} ks = { 0, 0 };
		double mean = 0, m2 = 0, cnt = 0;

		memset(&agg, 0, sizeof(agg));
		agg.min = INFINITY;
		agg.max = -INFINITY;
		for (unsigned i = 0; i < k; i++) {
			double t = ks.s + sl[i].sum, nb = (double)sl[i].n, d;

			if (sl[i].answered != 5)
				die("slice %u: %u answers", i, sl[i].answered);
			ks.c += fabs(ks.s) >= fabs(sl[i].sum) ? (ks.s - t) + sl[i].sum
							       : (sl[i].sum - t) + ks.s;
			ks.s = t;
			agg.min = sl[i].min < agg.min ? sl[i].min : agg.min;
			agg.max = sl[i].max > agg.max ? sl[i].max : agg.max;
			/* Chan et al.: merge (n, mean, M2) */
			d = sl[i].mean - mean;
			mean += d * nb / (cnt + nb);
			m2 += sl[i].std * sl[i].std * nb + d * d * cnt * nb / (cnt + nb);
			cnt += nb;
			for (unsigned b = 0; b < HIST_BINS; b++)
				agg.hist[b] += sl[i].hist[b];
		}
		agg.sum = ks.s + ks.c;
		agg.std = sqrt(m2 / cnt);
	}
	t0 = now_s();
	reference(shma_array_data(a), n, &ref);
	t_ref = now_s() - t0;
	printf("single-process reference (the same statistics, one process, own mapping): "
	       "%.3f s: %.2f GB/s\n", t_ref, 5.0 * (double)size / t_ref / 1e9);
	{
		bool s_ok = close_rel(agg.sum, ref.sum, 1e-9), mn_ok = agg.min == ref.min,
		     mx_ok = agg.max == ref.max, sd_ok = close_rel(agg.std, ref.std, 1e-9),
		     h_ok = !memcmp(agg.hist, ref.hist, sizeof(ref.hist));
		uint64_t hn = 0;

		for (unsigned b = 0; b < HIST_BINS; b++)
			hn += agg.hist[b];
		printf("check: sum %.10g vs %.10g (rel. diff %.1e) %s\n", agg.sum, ref.sum,
		       fabs(agg.sum - ref.sum) / fabs(ref.sum), s_ok ? "ok" : "WRONG");
		printf("check: min %.17g, max %.17g %s\n", agg.min, agg.max,
		       mn_ok && mx_ok ? "ok (exact)" : "WRONG");
		printf("check: std %.10g vs %.10g (rel. diff %.1e) %s\n", agg.std, ref.std,
		       fabs(agg.std - ref.std) / ref.std, sd_ok ? "ok" : "WRONG");
		printf("check: histogram of %d bins, %" PRIu64 " values counted %s\n", HIST_BINS, hn,
		       h_ok && hn == n ? "ok (exact)" : "WRONG");
		ok = s_ok && mn_ok && mx_ok && sd_ok && h_ok && hn == n;
	}

	/* ---- 5. what crossed process boundaries; the contrast ---- */
	printf("bytes that crossed process boundaries while the workers computed: %" PRIu64
	       " in %" PRIu64 " job and result messages (ArrayRefs and numbers), for %.2f GiB "
	       "read: %.1e of it; array data copied between processes: 0 bytes\n",
	       tr.bytes, tr.messages, 5.0 * (double)size / (double)(1 << 30),
	       (double)tr.bytes / (5.0 * (double)size));
	t_ship = ship_bytes(ctx, shma_array_data(a), n, &ship_sum);
	printf("for contrast, the same %s shipped as bytes through ZeroMQ ipc to one process "
	       "that sums it: %.3f s (%.2f GB/s), %.1fx the time of the sum over ArrayRefs; "
	       "its sum %s\n", human((double)size, hb, sizeof(hb)), t_ship,
	       (double)size / t_ship / 1e9, t_ship / t_sum,
	       close_rel(ship_sum, ref.sum, 1e-9) ? "agrees" : "DIFFERS");
	ok = ok && close_rel(ship_sum, ref.sum, 1e-9);

	/* ---- 6. stop everything ---- */
	zmq_socket_monitor(push, NULL, 0);
	zmq_close(mon);
	for (unsigned i = 0; i < nworkers; i++)
		kill(D.workers[i], SIGTERM);
	for (unsigned i = 0; i < nworkers; i++) {
		int st = wait_exit(D.workers[i], STOP_TIMEOUT_S);

		D.workers[i] = -1;
		if (st != 0) {
			printf("stop: worker %u exited with %d\n", i, st);
			ok = false;
		}
	}
	zmq_close(push);
	zmq_close(pull);
	zmq_ctx_term(ctx);
	free(sl);
	shma_close(&a);
	shma_disconnect(&c);
	kill(D.broker, SIGTERM);
	{
		int st = wait_exit(D.broker, STOP_TIMEOUT_S);

		D.broker = -1;
		if (st != 0) {
			printf("stop: the broker exited with %d\n", st);
			ok = false;
		}
	}
	if (stat(D.socket, &sb) == 0) {
		printf("stop: the broker's socket is still there\n");
		ok = false;
	}
	snprintf(path, sizeof(path), "%s", D.dir);
	rm_dir();
	if (stat(path, &sb) == 0) {
		printf("stop: %s is still there\n", path);
		ok = false;
	}
	if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
		printf("stop: a child process is left\n");
		ok = false;
	}
	free(env);
	if (ok)
		printf("stop: %u workers and the broker exited 0 on SIGTERM; socket and %s "
		       "removed; no process left\n", nworkers, path);
	printf("%s\n", ok ? "all checks passed" : "CHECKS FAILED");
	return ok ? 0 : 1;
}
