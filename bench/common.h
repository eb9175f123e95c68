/* common.h - what the benchmarks of bench/ share.
 *
 * Each benchmark (bench/bench_*.c) is one program; the Makefile links this
 * module into every one of them.  Here: messages on failure, the clock, the
 * median, the parsing of counts, what /proc says of a process, whole reads
 * and writes of pipes, waiting for a child, a broker of tests/lib/harness
 * started and stopped the way the memory-only benchmarks do, the data of the
 * read benchmarks (bench_client, bench_compare), and the human-readable
 * figure table.  The machine-readable line of a figure is bench_report.h's.
 *
 * Nothing here keeps state but the program's name for messages
 * (bench_set_name); a forked child inherits it.
 */
#ifndef SHMA_BENCH_COMMON_H
#define SHMA_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"
#include "shma.h"

/* ---- failures ------------------------------------------------------------ */

/* The name failure messages start with ("bench_fault"); call first in main.
 * name is borrowed: a string literal. */
void bench_set_name(const char *name);
/* "<name>: <message>\n" on stderr; returns -1. */
int bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "<name>: what: strerror(errno)"; returns -1. */
int bench_sys_fail(const char *what);
/* "<name>: what: strerror(-err)" for an -errno code; returns -1. */
int bench_err_fail(const char *what, int err);
/* "<name>: what: shma_strerror(err)", then ": detail" unless detail is NULL
 * or "" (the broker's words: shma_conn_error, shma_last_error); returns -1. */
int bench_shma_fail(const char *what, int err, const char *detail);
/* In a signal handler: write msg (with its newline) to stderr and _exit(1);
 * async-signal-safe. */
void bench_async_die(const char *msg) __attribute__((noreturn));

/* ---- the clock (CLOCK_MONOTONIC) ----------------------------------------- */

/* It cannot fail; if it did, the process would say so and _exit(1), which is
 * safe in a forked child too. */
double bench_now_s(void);
double bench_now_us(void);
uint64_t bench_now_ns(void);
/* Minor page faults of this process so far (getrusage; _exit(1) on failure,
 * as the clock). */
long bench_minflt(void);

/* ---- figures ------------------------------------------------------------- */

/* The median of v[0 .. n), n > 0; sorts v. */
double bench_median(double *v, size_t n);
/* The median of a double field of n records: the one at byte offset off of
 * each record of size bytes from recs (an array of structs, one per round).
 * Exits if out of memory. */
double bench_median_field(const void *recs, size_t n, size_t size, size_t off);
/* Sort v[0 .. n) in ascending order. */
void bench_sort_u64(uint64_t *v, size_t n);

/* A count from the command line: digits only (no sign, no blanks) in base
 * (10; 0: C prefixes), 1 .. max.  false if it is not one. */
bool bench_parse_count(const char *s, int base, size_t max, size_t *out);

/* ---- what /proc says of a process ---------------------------------------- */

/* The counters of /proc/PID/io. */
struct bench_io {
	uint64_t rchar;	      /* bytes read with read/pread and the like */
	uint64_t wchar;	      /* bytes written, sockets too */
	uint64_t syscw;	      /* write system calls */
	uint64_t write_bytes; /* bytes it sent towards the storage layer */
};

/* false if the file cannot be read or lacks one of the counters. */
bool bench_proc_io(pid_t pid, struct bench_io *io);
/* Its time on a CPU so far, in seconds (/proc/PID/schedstat); negative if
 * it cannot be read. */
double bench_proc_cpu_s(pid_t pid);
/* The "key: N kB" line of /proc/PID/status (key "RssShmem"), N into *kb;
 * false if there is none. */
bool bench_proc_status_kb(pid_t pid, const char *key, uint64_t *kb);

/* ---- pipes and children -------------------------------------------------- */

/* All len bytes, retrying after EINTR; -1 at the end of the stream or on an
 * error. */
int bench_read_full(int fd, void *buf, size_t len);
int bench_write_full(int fd, const void *buf, size_t len);
/* Wait for child pid; 0 if it exited with 0, else -1 after saying so (what:
 * the child's job; SIGALRM is named a timeout). */
int bench_wait_child(pid_t pid, const char *what);

/* ---- the broker ---------------------------------------------------------- */

/* Start a broker of tests/lib/harness with 2 MiB blocks, a pool of pool_mib
 * MiB, commits of at most commit_mib MiB, retention of 2 revisions and 0
 * seconds, memory only (data_dir false).  0, or -1 after saying why. */
int bench_broker_start(struct harness *h, uint64_t pool_mib, uint64_t commit_mib);
/* Stop it; 0 if it stopped cleanly and took its socket with it, else -1
 * after saying what went wrong. */
int bench_broker_stop(struct harness *h);

/* ---- the data of the read benchmarks ------------------------------------- */

/* Element i: small integers (sums stay exact in a double), different at the
 * start of each block, no 4 KiB page all zero.  bench/compare_shm.py computes
 * the same.  Inline: bench_client checks it inside a timed loop. */
static inline double bench_value(size_t i)
{
	return (double)((i ^ (i >> 17)) & 0xffff);
}

/* Elements [first, first + n) into d. */
void bench_fill(double *d, size_t first, size_t n);
/* The sum of elements [0, n), exact. */
double bench_expected_sum(size_t n);
/* The timed read: a sequential sum of p[0 .. n) with 8 independent
 * accumulators, so it is bound by memory, not by the latency of one chain of
 * adds.  Never inlined: every variant runs the same code. */
double bench_sum_f8(const double *p, size_t n);
/* On c: create a 1-d <f8 array of nelem elements in blocks of blksize bytes,
 * open it, install the fault handler, write every element (bench_fill) and
 * commit.  The seconds of the writing and of the commit; the revision.  The
 * array stays open on c.  0, or -1 after saying why. */
int bench_create_filled(shma_conn *c, const char *name, size_t nelem, size_t blksize,
			double *write_s, double *commit_s, uint64_t *rev);

/* ---- the figure table ---------------------------------------------------- */

/* A person's table of figures, one row each:
 *   figure  value  baseline  ratio  goal  result
 * the figure's name in name_w columns (left-aligned), value and baseline in
 * 10 columns with prec decimals, the ratio in 7 with 2, the goal in 7. */
struct bench_table {
	int name_w;
	int prec;
};

/* The heading; value_label names the value's column ("us/fault", "MB/s"). */
void bench_table_head(const struct bench_table *t, const char *value_label);
/* A figure without a baseline: "-" for baseline, ratio and goal. */
void bench_table_value(const struct bench_table *t, const char *name, double value,
		       const char *result);
/* A figure against base: the ratio value / base, goal (text) and result. */
void bench_table_ratio(const struct bench_table *t, const char *name, double value, double base,
		       const char *goal, const char *result);

#endif
