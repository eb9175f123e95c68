/* itest.h - helpers shared by the broker integration tests (test_broker*.c).
 *
 * Everything here is static inline so that each test binary keeps only what
 * it uses.  The tests talk to a real shma-broker through tests/lib/harness.h;
 * these helpers add what every test needs on top of it: formatted calls,
 * commits of page data, reading committed data back through the pool fd,
 * the broker's stats, and a look at the broker process (/proc/<pid>).
 *
 * Each test keeps its broker in the file's `broker` harness; the teardown
 * (it_teardown) kills a broker a failed test left running, so one failure
 * does not leave processes or directories behind.
 */
#ifndef SHMA_ITEST_H
#define SHMA_ITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "shma.h"

#define IT_PAGE 4096u
#define IT_BLOCK (64u * 1024) /* the harness's default block size */
#define IT_PPB (IT_BLOCK / IT_PAGE)

/* ---- time ------------------------------------------------------------------ */

static inline uint64_t it_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void it_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the broker ------------------------------------------------------------ */

static inline void it_start(struct harness *h, const char *extra_json)
{
	assert_int_equal(harness_start(h, extra_json), 0);
	assert_true(h->pid > 0);
}

/* Stop the broker: it must exit 0 and remove its socket file. */
static inline void it_stop(struct harness *h)
{
	bool left = true;
	int st = harness_stop(h, &left);

	assert_int_equal(st, 0);
	assert_false(left);
}

/* In the test process: a libshm call on connection c (or NULL) that must
 * return 0; else say which, why, and fail. */
#define IT_OK(c, call)                                                                      \
	do {                                                                                \
		int e_ = (call);                                                            \
		if (e_)                                                                     \
			fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,  \
				shma_strerror(e_), (c) ? shma_conn_error(c) : shma_last_error()); \
		assert_int_equal(e_, 0);                                                    \
	} while (0)

/* In a forked child: check, or say where and exit 1 (never cmocka: its
 * failure would jump back into the parent's copy of the test runner). */
#define IT_CHECK(cond)                                                                      \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "child %d: %s:%d: check failed: %s\n", (int)getpid(), \
				__FILE__, __LINE__, #cond);                                 \
			_exit(1);                                                           \
		}                                                                           \
	} while (0)

/* Kill and reap the children a failed test left (pids[i] > 0). */
static inline void it_kill_children(pid_t *pids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
			pids[i] = 0;
		}
}

/* cmocka teardown: kill what a failed test left running. */
static inline int it_teardown_harness(struct harness *h)
{
	if (h->dir[0]) { /* the test did not stop it: show what the broker said */
		char cmd[1024];

		snprintf(cmd, sizeof(cmd), "echo '--- broker log (tail, sanitizer report):' >&2; "
			 "tail -12 '%s' >&2; grep -E 'ERROR|^ +#[0-9]|SUMMARY' '%s' | head -20 >&2",
			 h->log, h->log);
		if (system(cmd) != 0)
			fprintf(stderr, "(no broker log)\n");
	}
	if (h->pid > 0)
		harness_kill(h);
	if (h->dir[0])
		harness_cleanup(h);
	return 0;
}

/* Number of open fds of process pid (-1 if it cannot be read). */
static inline int it_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* A field of /proc/<pid>/status in kB (VmRSS, VmHWM...), or -1. */
static inline long it_status_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, flen) && line[flen] == ':') {
			v = strtol(line + flen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* CPU time (user + system) of process pid, in clock ticks, or -1. */
static inline long it_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

/* ---- calls ----------------------------------------------------------------- */

static inline json_t *it_vcall(struct tclient *c, const int *fds, int nfds, int *fds_out,
			       int *nfds_out, const char *fmt, va_list ap)
{
	char *text;
	json_t *r;

	if (vasprintf(&text, fmt, ap) < 0)
		return NULL;
	r = tclient_call(c, fds, nfds, fds_out, nfds_out, "%s", text);
	free(text);
	return r;
}

/* A request without fds; the reply (owned) or NULL. */
static inline json_t *it_call(struct tclient *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline json_t *it_call(struct tclient *c, const char *fmt, ...)
{
	va_list ap;
	json_t *r;

	va_start(ap, fmt);
	r = it_vcall(c, NULL, 0, NULL, NULL, fmt, ap);
	va_end(ap);
	return r;
}

/* A request that must succeed; returns the reply (owned). */
static inline json_t *it_ok(struct tclient *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline json_t *it_ok(struct tclient *c, const char *fmt, ...)
{
	va_list ap;
	json_t *r;

	va_start(ap, fmt);
	r = it_vcall(c, NULL, 0, NULL, NULL, fmt, ap);
	va_end(ap);
	if (!reply_ok(r)) {
		char *t = r ? json_dumps(r, JSON_COMPACT) : NULL;

		fprintf(stderr, "unexpected reply: %s\n", t ? t : "(connection ended)");
		free(t);
	}
	assert_true(reply_ok(r));
	return r;
}

/* A request that must fail with error code `code`; returns the reply. */
static inline json_t *it_err(struct tclient *c, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline json_t *it_err(struct tclient *c, const char *code, const char *fmt, ...)
{
	va_list ap;
	json_t *r;

	va_start(ap, fmt);
	r = it_vcall(c, NULL, 0, NULL, NULL, fmt, ap);
	va_end(ap);
	if (!r || reply_ok(r) || strcmp(reply_code(r), code)) {
		char *t = r ? json_dumps(r, JSON_COMPACT) : NULL;

		fprintf(stderr, "expected error \"%s\", got: %s\n", code,
			t ? t : "(connection ended)");
		free(t);
	}
	assert_non_null(r);
	assert_false(reply_ok(r));
	assert_string_equal(reply_code(r), code);
	return r;
}

static inline void it_ok_drop(struct tclient *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void it_ok_drop(struct tclient *c, const char *fmt, ...)
{
	va_list ap;
	json_t *r;

	va_start(ap, fmt);
	r = it_vcall(c, NULL, 0, NULL, NULL, fmt, ap);
	va_end(ap);
	if (!reply_ok(r)) {
		char *t = r ? json_dumps(r, JSON_COMPACT) : NULL;

		fprintf(stderr, "unexpected reply: %s\n", t ? t : "(connection ended)");
		free(t);
	}
	assert_true(reply_ok(r));
	json_decref(r);
}

static inline const char *it_err_message(const json_t *r)
{
	const char *s = json_string_value(json_object_get(json_object_get(r, "error"), "message"));

	return s ? s : "";
}

static inline void it_open_client(struct tclient *c, const struct harness *h)
{
	assert_int_equal(tclient_open(c, h->socket), 0);
	assert_true(c->pool_fd >= 0);
}

/* The broker's stats (a stats request), one field. */
static inline long long it_stat(struct tclient *c, const char *key)
{
	json_t *r = it_ok(c, "{\"op\":\"stats\"}");
	json_t *v = json_object_get(json_object_get(r, "stats"), key);
	long long n;

	assert_true(json_is_integer(v));
	n = json_integer_value(v);
	json_decref(r);
	return n;
}

/* Poll stats until key == want (GC runs after requests and once a second);
 * returns the last value seen. */
static inline long long it_wait_stat(struct tclient *c, const char *key, long long want,
				     int timeout_ms)
{
	uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
	long long v;

	for (;;) {
		v = it_stat(c, key);
		if (v == want || it_now_ms() > end)
			return v;
		it_sleep_ms(20);
	}
}

/* Move c's snapshot to head and drop the pin of the old one (the broker
 * keeps it until the next request). */
static inline long long it_sync_head(struct tclient *c)
{
	json_t *r = it_ok(c, "{\"op\":\"sync\"}");
	long long rev = reply_int(r, "revision");

	json_decref(r);
	json_decref(it_ok(c, "{\"op\":\"stats\"}"));
	return rev;
}

/* ---- page data ------------------------------------------------------------- */

/* Fill one page with a pattern that names (tag, page). */
static inline void it_fill_page(unsigned char *p, uint32_t tag, uint32_t page)
{
	for (size_t i = 0; i < IT_PAGE; i += 8) {
		uint32_t w[2] = { tag, page ^ (uint32_t)i };

		memcpy(p + i, w, 8);
	}
}

static inline bool it_page_is(const unsigned char *p, uint32_t tag, uint32_t page)
{
	unsigned char want[IT_PAGE];

	it_fill_page(want, tag, page);
	return !memcmp(p, want, IT_PAGE);
}

static inline bool it_page_zero(const unsigned char *p)
{
	for (size_t i = 0; i < IT_PAGE; i++)
		if (p[i])
			return false;
	return true;
}

/* A memfd holding npages pages, page k filled with (tag, first + k). */
static inline int it_pages_memfd(uint32_t tag, uint32_t first, uint32_t npages)
{
	size_t len = (size_t)npages * IT_PAGE;
	unsigned char *buf = malloc(len ? len : 1);
	int fd;

	assert_non_null(buf);
	for (uint32_t k = 0; k < npages; k++)
		it_fill_page(buf + (size_t)k * IT_PAGE, tag, first + k);
	fd = test_memfd(buf, len);
	free(buf);
	assert_true(fd >= 0);
	return fd;
}

/* Commit pages [first, first + count) of block blk of array name, filled
 * with (tag, page); shape_json: NULL or a JSON array for a resize.  Returns
 * the reply (owned), ok or not. */
static inline json_t *it_commit_pages(struct tclient *c, const char *name, uint64_t blk,
				      uint32_t first, uint32_t count, uint32_t tag,
				      const char *shape_json)
{
	int fd = it_pages_memfd(tag, first, count);
	char shape[256] = "";
	json_t *r;

	if (shape_json)
		snprintf(shape, sizeof(shape), "\"shape\":%s,", shape_json);
	r = tclient_call(c, &fd, 1, NULL, NULL,
			 "{\"op\":\"commit\",\"arrays\":[{\"name\":\"%s\",%s\"blocks\":[{\"blk\":%llu,"
			 "\"runs\":[[%u,%u]],\"data\":0}]}]}",
			 name, shape, (unsigned long long)blk, first, count);
	close(fd);
	return r;
}

/* A commit's reply (consumed) must be ok: its revision (else the reply is
 * printed and the test fails). */
static inline long long it_commit_revision(json_t *r)
{
	long long rev;

	if (!reply_ok(r)) {
		char *t = r ? json_dumps(r, JSON_COMPACT) : NULL;

		fprintf(stderr, "commit failed: %s\n", t ? t : "(connection ended)");
		free(t);
	}
	assert_true(reply_ok(r));
	rev = reply_int(r, "revision");
	json_decref(r);
	return rev;
}

static inline long long it_commit_ok(struct tclient *c, const char *name, uint64_t blk,
				     uint32_t first, uint32_t count, uint32_t tag)
{
	long long rev = it_commit_revision(it_commit_pages(c, name, blk, first, count, tag, NULL));

	assert_true(rev > 0);
	return rev;
}

/* In a [[blk, offset|null], ...] list: the offset of blk, -1 if blk is
 * absent, -2 if it is null (a hole). */
static inline long long it_block_off(const json_t *blocks, uint64_t blk)
{
	size_t i;
	json_t *p;

	json_array_foreach(blocks, i, p) {
		if (json_is_array(p) && json_array_size(p) == 2 &&
		    (uint64_t)json_integer_value(json_array_get(p, 0)) == blk) {
			json_t *o = json_array_get(p, 1);

			return json_is_null(o) ? -2 : json_integer_value(o);
		}
	}
	return -1;
}

/* Open name at c's snapshot; the offset of blk (see it_block_off). */
static inline long long it_open_block(struct tclient *c, const char *name, uint64_t blk)
{
	json_t *r = it_ok(c, "{\"op\":\"open\",\"name\":\"%s\"}", name);
	long long off = it_block_off(json_object_get(r, "blocks"), blk);

	json_decref(r);
	return off;
}

/* Read one page of committed data through the pool fd, with pread and
 * through a read-only shared mapping; both must agree. */
static inline void it_read_page(struct tclient *c, uint64_t off, unsigned char *out)
{
	unsigned char *m;
	ssize_t n;

	n = pread(c->pool_fd, out, IT_PAGE, (off_t)off);
	assert_int_equal(n, IT_PAGE);
	m = mmap(NULL, IT_PAGE, PROT_READ, MAP_SHARED, c->pool_fd, (off_t)off);
	assert_true(m != MAP_FAILED);
	assert_memory_equal(m, out, IT_PAGE);
	munmap(m, IT_PAGE);
}

/* Does page `page` of the block at pool offset off hold (tag, page)? */
static inline bool it_block_page_is(struct tclient *c, uint64_t off, uint32_t page, uint32_t tag)
{
	unsigned char buf[IT_PAGE];

	it_read_page(c, off + (uint64_t)page * IT_PAGE, buf);
	return it_page_is(buf, tag, page);
}

static inline bool it_block_page_zero(struct tclient *c, uint64_t off, uint32_t page)
{
	unsigned char buf[IT_PAGE];

	it_read_page(c, off + (uint64_t)page * IT_PAGE, buf);
	return it_page_zero(buf);
}

/* Create a 1-d array of n uint8 items (block size: the config's unless
 * block_size > 0); then sync c so it sees it. */
static inline void it_create(struct tclient *c, const char *name, uint64_t n, uint64_t block_size)
{
	if (block_size)
		it_ok_drop(c, "{\"op\":\"create\",\"name\":\"%s\",\"dtype\":\"|u1\",\"shape\":[%llu],"
			   "\"block_size\":%llu}",
			   name, (unsigned long long)n, (unsigned long long)block_size);
	else
		it_ok_drop(c, "{\"op\":\"create\",\"name\":\"%s\",\"dtype\":\"|u1\",\"shape\":[%llu]}",
			   name, (unsigned long long)n);
	json_decref(it_ok(c, "{\"op\":\"sync\"}"));
}

/* Does the connection end (EOF or reset) within timeout_ms?  Replies that
 * arrive first are skipped. */
static inline bool it_wait_eof(int fd, int timeout_ms)
{
	uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
	char buf[70000];

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int left = (int)(end - it_now_ms());
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, left) <= 0)
			return false;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return true;
		if (it_now_ms() >= end)
			return false;
	}
}

#endif
