/* common.c - what the benchmarks of bench/ share (see common.h). */
#include "common.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- failures ------------------------------------------------------------ */

static const char *prog = "bench";

void bench_set_name(const char *name)
{
	prog = name;
}

int bench_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

int bench_sys_fail(const char *what)
{
	return bench_fail("%s: %s", what, strerror(errno));
}

int bench_err_fail(const char *what, int err)
{
	return bench_fail("%s: %s", what, strerror(-err));
}

int bench_shma_fail(const char *what, int err, const char *detail)
{
	bool more = detail && *detail;

	return bench_fail("%s: %s%s%s", what, shma_strerror(err), more ? ": " : "",
			  more ? detail : "");
}

void bench_async_die(const char *msg)
{
	ssize_t r = write(STDERR_FILENO, msg, strlen(msg));

	(void)r;
	_exit(1);
}

/* ---- the clock ----------------------------------------------------------- */

static void now(struct timespec *ts)
{
	if (clock_gettime(CLOCK_MONOTONIC, ts) != 0) {
		bench_sys_fail("clock_gettime");
		_exit(1);
	}
}

double bench_now_s(void)
{
	struct timespec ts;

	now(&ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_now_us(void)
{
	struct timespec ts;

	now(&ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	now(&ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long bench_minflt(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0) {
		bench_sys_fail("getrusage");
		_exit(1);
	}
	return ru.ru_minflt;
}

/* ---- figures ------------------------------------------------------------- */

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, c = *(const double *)y;

	return (a > c) - (a < c);
}

double bench_median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_median_field(const void *recs, size_t n, size_t size, size_t off)
{
	double *x = malloc(n * sizeof(*x)), m;

	if (!x) {
		bench_sys_fail("malloc");
		exit(1);
	}
	for (size_t r = 0; r < n; r++)
		memcpy(&x[r], (const char *)recs + r * size + off, sizeof(double));
	m = bench_median(x, n);
	free(x);
	return m;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;

	return a < c ? -1 : a > c;
}

void bench_sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
}

bool bench_parse_count(const char *s, int base, size_t max, size_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || *end || v == 0 || v > max)
		return false;
	*out = (size_t)v;
	return true;
}

/* ---- what /proc says of a process ---------------------------------------- */

bool bench_proc_io(pid_t pid, struct bench_io *io)
{
	char path[64], line[128];
	int got = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		got += sscanf(line, "rchar: %" SCNu64, &io->rchar) == 1;
		got += sscanf(line, "wchar: %" SCNu64, &io->wchar) == 1;
		got += sscanf(line, "syscw: %" SCNu64, &io->syscw) == 1;
		got += sscanf(line, "write_bytes: %" SCNu64, &io->write_bytes) == 1;
	}
	fclose(f);
	return got == 4;
}

double bench_proc_cpu_s(pid_t pid)
{
	unsigned long long ns;
	char path[64];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fscanf(f, "%llu", &ns);
	fclose(f);
	return n == 1 ? (double)ns / 1e9 : -1;
}

bool bench_proc_status_kb(pid_t pid, const char *key, uint64_t *kb)
{
	char path[64], line[128];
	size_t klen = strlen(key);
	unsigned long long v;
	bool ok = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':' &&
		    sscanf(line + klen + 1, "%llu kB", &v) == 1) {
			*kb = v;
			ok = true;
		}
	fclose(f);
	return ok;
}

/* ---- pipes and children -------------------------------------------------- */

int bench_read_full(int fd, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, (char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

int bench_write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

int bench_wait_child(pid_t pid, const char *what)
{
	int status;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return bench_sys_fail("waitpid");
	}
	if (WIFSIGNALED(status))
		return bench_fail("%s: child killed by signal %d%s", what, WTERMSIG(status),
				  WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
	if (WEXITSTATUS(status) != 0)
		return bench_fail("%s: child failed (exit %d)", what, WEXITSTATUS(status));
	return 0;
}

/* ---- the broker ---------------------------------------------------------- */

int bench_broker_start(struct harness *h, uint64_t pool_mib, uint64_t commit_mib)
{
	char cfg[512];
	int err;

	snprintf(cfg, sizeof(cfg),
		 "{\"pool_size\":\"%" PRIu64 "MiB\",\"block_size\":\"2MiB\","
		 "\"retention\":{\"revisions\":2,\"seconds\":0},"
		 "\"limits\":{\"commit_bytes\":\"%" PRIu64 "MiB\"},\"log_level\":\"info\","
		 "\"data_dir\":false}",
		 pool_mib, commit_mib);
	err = harness_start(h, cfg);
	if (err)
		return bench_err_fail("harness_start", err);
	return 0;
}

int bench_broker_stop(struct harness *h)
{
	bool socket_left = false;
	int st, ret = 0;

	st = harness_stop(h, &socket_left);
	if (st != 0)
		ret = bench_fail("the broker did not stop cleanly (status %d)", st);
	if (socket_left)
		ret = bench_fail("the broker left its socket behind");
	return ret;
}

/* ---- the data of the read benchmarks ------------------------------------- */

void bench_fill(double *d, size_t first, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = bench_value(first + i);
}

double bench_expected_sum(size_t n)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += (uint64_t)bench_value(i);
	return (double)s; /* < 2^53: exact */
}

__attribute__((noinline)) double bench_sum_f8(const double *p, size_t n)
{
	double s[8] = { 0 };
	size_t i;

	for (i = 0; i + 8 <= n; i += 8)
		for (int k = 0; k < 8; k++)
			s[k] += p[i + k];
	for (; i < n; i++)
		s[0] += p[i];
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

int bench_create_filled(shma_conn *c, const char *name, size_t nelem, size_t blksize,
			double *write_s, double *commit_s, uint64_t *rev)
{
	uint64_t shape[1] = { nelem };
	shma_array *a = NULL;
	double t0, t1, t2;
	int err;

	err = shma_create(c, name, "<f8", 1, shape, 'C', blksize, rev);
	if (err)
		return bench_shma_fail("shma_create", err, shma_conn_error(c));
	err = shma_sync(c, rev);
	if (err)
		return bench_shma_fail("shma_sync", err, shma_conn_error(c));
	err = shma_open(c, name, &a);
	if (err)
		return bench_shma_fail("shma_open", err, shma_conn_error(c));
	err = shma_vm_install_handler();
	if (err)
		return bench_shma_fail("shma_vm_install_handler", err, NULL);
	t0 = bench_now_s();
	bench_fill(shma_array_data(a), 0, nelem);
	t1 = bench_now_s();
	err = shma_commit(c, rev);
	t2 = bench_now_s();
	if (err)
		return bench_shma_fail("shma_commit", err, shma_conn_error(c));
	*write_s = t1 - t0;
	*commit_s = t2 - t1;
	return 0;
}

/* ---- the figure table ---------------------------------------------------- */

void bench_table_head(const struct bench_table *t, const char *value_label)
{
	printf("%-*s %10s %10s %7s %7s  %s\n", t->name_w, "figure", value_label, "baseline",
	       "ratio", "goal", "result");
}

void bench_table_value(const struct bench_table *t, const char *name, double value,
		       const char *result)
{
	printf("%-*s %10.*f %10s %7s %7s  %s\n", t->name_w, name, t->prec, value, "-", "-", "-",
	       result);
}

void bench_table_ratio(const struct bench_table *t, const char *name, double value, double base,
		       const char *goal, const char *result)
{
	printf("%-*s %10.*f %10.*f %7.2f %7s  %s\n", t->name_w, name, t->prec, value, t->prec,
	       base, value / base, goal, result);
}
