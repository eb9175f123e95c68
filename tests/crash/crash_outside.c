/* crash_outside.c - faults outside shma mappings are not swallowed.
 *
 * shma.h: libshm's SIGSEGV handler "handles only access faults (SEGV_ACCERR)
 * inside shma mappings; any other SIGSEGV goes to the handler installed
 * before it, or to the default action (so a real crash still crashes)".
 *
 * Cases (each in a forked child with the shma handler active and a block of
 * a shma mapping already served through it; killed after CHILD_TIMEOUT_S):
 *   accerr        read a PROT_NONE page of the child's own: death by SIGSEGV
 *   accerr_write  write a PROT_READ page of the child's own: SIGSEGV
 *   maperr        read an unmapped address near NULL: SIGSEGV
 *   chain_info    an SA_SIGINFO handler installed before shma's gets the
 *                 PROT_NONE fault with its si_addr and si_code (exit 42)
 *   chain_plain   a plain sa_handler installed before shma's gets it (exit 43)
 *   chain_maperr  the SA_SIGINFO handler gets the near-NULL fault (exit 42)
 *
 * Exit 0 if every case behaved as documented, 1 otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shma.h"

#define BLKSIZE		4096
#define CHILD_TIMEOUT_S	20
#define INFO_EXIT	42	/* the previous SA_SIGINFO handler ran */
#define PLAIN_EXIT	43	/* the previous plain handler ran */

/* ---- child side ---------------------------------------------------------- */

static int g_fd = -1;			/* report pipe, write end */
/* An unmapped address near NULL, volatile so the compiler cannot see it. */
static volatile uintptr_t g_near_null = 64;

/* Sent to the parent: where the child will fault, then (from the previous
 * handler) what that handler saw. */
struct segv_report {
	uintptr_t bad;		/* the address the child is about to touch */
	int seen;		/* 1 once the previous handler ran */
	int signo;
	int code;		/* si_code */
	uintptr_t addr;		/* si_addr */
};

static volatile struct segv_report g_rep;	/* also written by handlers */

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(90);
		p += n;
		len -= (size_t)n;
	}
}

/* Child, outside signal handlers: explain and exit with code. */
static void child_fail(int code, const char *msg)
{
	fprintf(stderr, "child: %s\n", msg);
	_exit(code);
}

static int loadblk(shma_file *f, uint64_t blk, void *buf)
{
	memset(buf, (int)(0xc0 + blk), BLKSIZE);
	return 0;
}

static const struct shma_file_ops ops = { .loadblk = loadblk };

/* Child: a shma mapping with the handler installed, and one block served
 * through it, so the handler is provably active.  Failures exit 80+. */
static void shma_active(void)
{
	shma_ram *ram;
	shma_file *file;
	shma_fileh *fh;
	shma_mapping *map;
	volatile uint8_t *base;

	if (shma_ram_new(16 * BLKSIZE, &ram) != 0)
		_exit(80);
	if (shma_file_new(&ops, BLKSIZE, NULL, &file) != 0)
		_exit(81);
	if (shma_fileh_open(file, ram, &fh) != 0)
		_exit(82);
	if (shma_map(fh, 0, 2, &map) != 0)
		_exit(83);
	if (shma_vm_install_handler() != 0)
		_exit(84);
	base = shma_mapping_addr(map);
	if (base[BLKSIZE + 10] != 0xc1)
		child_fail(85, "the shma mapping read wrong data");
	if (shma_fileh_block_state(fh, 1) != SHMA_PAGE_LOADED)
		child_fail(86, "block 1 not LOADED after a read");
}

static volatile uint8_t *own_page(int prot)
{
	void *p = mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		child_fail(87, "mmap failed");
	return p;
}

/* Tell the parent where the fault will be, just before it. */
static void announce(volatile const uint8_t *bad)
{
	g_rep.bad = (uintptr_t)bad;
	write_all(g_fd, (const void *)&g_rep, sizeof(g_rep));
}

static void prev_info(int sig, siginfo_t *si, void *uc)
{
	g_rep.seen = 1;
	g_rep.signo = sig;
	g_rep.code = si->si_code;
	g_rep.addr = (uintptr_t)si->si_addr;
	write_all(g_fd, (const void *)&g_rep, sizeof(g_rep));
	_exit(INFO_EXIT);
}

static void prev_plain(int sig)
{
	g_rep.seen = 1;
	g_rep.signo = sig;
	write_all(g_fd, (const void *)&g_rep, sizeof(g_rep));
	_exit(PLAIN_EXIT);
}

static void install_prev(bool info)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	if (info) {
		sa.sa_sigaction = prev_info;
		sa.sa_flags = SA_SIGINFO;
	} else {
		sa.sa_handler = prev_plain;
	}
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) != 0)
		_exit(88);
}

static void child_accerr(void)
{
	volatile uint8_t *bad = own_page(PROT_NONE);

	shma_active();
	announce(bad);
	(void)*bad;
	child_fail(70, "the PROT_NONE read returned");
}

static void child_accerr_write(void)
{
	volatile uint8_t *bad = own_page(PROT_READ);

	shma_active();
	announce(bad);
	*bad = 1;
	child_fail(70, "the write to a PROT_READ page returned");
}

static void child_maperr(void)
{
	volatile uint8_t *bad = (volatile uint8_t *)g_near_null;

	shma_active();
	announce(bad);
	(void)*bad;
	child_fail(70, "the near-NULL read returned");
}

static void child_chain_info(void)
{
	volatile uint8_t *bad = own_page(PROT_NONE);

	install_prev(true);
	shma_active();
	announce(bad);
	(void)*bad;
	child_fail(70, "the PROT_NONE read returned");
}

static void child_chain_plain(void)
{
	volatile uint8_t *bad = own_page(PROT_NONE);

	install_prev(false);
	shma_active();
	announce(bad);
	(void)*bad;
	child_fail(70, "the PROT_NONE read returned");
}

static void child_chain_maperr(void)
{
	volatile uint8_t *bad = (volatile uint8_t *)g_near_null;

	install_prev(true);
	shma_active();
	announce(bad);
	(void)*bad;
	child_fail(70, "the near-NULL read returned");
}

/* ---- parent side --------------------------------------------------------- */

struct outcome {
	int status;
	bool hung;
	struct segv_report ann;	/* the child's announcement */
	struct segv_report rep;	/* the previous handler's report */
	size_t nann, nrep;	/* bytes received of each */
};

static size_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* Run body in a child with a report pipe; wait at most CHILD_TIMEOUT_S. */
static int run_child(void (*body)(void), struct outcome *o)
{
	int p[2];
	pid_t pid;
	struct timespec tick = { 0, 10 * 1000000L };
	long waited_ms = 0;

	memset(o, 0, sizeof(*o));
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct rlimit rl = { 0, 0 };

		setrlimit(RLIMIT_CORE, &rl);	/* deliberate crashes: no cores */
		close(p[0]);
		g_fd = p[1];
		body();
		_exit(71);
	}
	close(p[1]);
	for (;;) {
		pid_t r = waitpid(pid, &o->status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (waited_ms >= CHILD_TIMEOUT_S * 1000L) {
			o->hung = true;
			kill(pid, SIGKILL);
			waitpid(pid, &o->status, 0);
			break;
		}
		nanosleep(&tick, NULL);
		waited_ms += 10;
	}
	o->nann = read_full(p[0], &o->ann, sizeof(o->ann));
	o->nrep = read_full(p[0], &o->rep, sizeof(o->rep));
	close(p[0]);
	return 0;
}

static void describe(const struct outcome *o, char *buf, size_t len)
{
	if (o->hung)
		snprintf(buf, len, "hung (killed after %d s)", CHILD_TIMEOUT_S);
	else if (WIFSIGNALED(o->status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(o->status),
			 strsignal(WTERMSIG(o->status)));
	else
		snprintf(buf, len, "exited %d", WEXITSTATUS(o->status));
}

static int failures;

static void fail(const char *name, const char *msg, const struct outcome *o)
{
	char what[128];

	describe(o, what, sizeof(what));
	fprintf(stderr, "crash_outside: %s: FAIL: %s; child %s\n", name, msg, what);
	failures++;
}

static bool run(const char *name, void (*body)(void), struct outcome *o)
{
	char what[128];
	int err = run_child(body, o);

	if (err) {
		fprintf(stderr, "crash_outside: %s: FAIL: fork/pipe: %s\n", name,
			strerror(-err));
		failures++;
		return false;
	}
	describe(o, what, sizeof(what));
	printf("crash_outside: %s: child %s\n", name, what);
	if (o->nann != sizeof(o->ann)) {
		fail(name, "the child never reached the bad access", o);
		return false;
	}
	return true;
}

/* No handler before shma's: the default action, death by SIGSEGV. */
static void expect_segv(const char *name, void (*body)(void))
{
	struct outcome o;

	if (!run(name, body, &o))
		return;
	if (o.hung || !WIFSIGNALED(o.status) || WTERMSIG(o.status) != SIGSEGV)
		fail(name, "expected death by SIGSEGV", &o);
	else if (o.nrep != 0)
		fail(name, "unexpected report after the announcement", &o);
}

/* A handler installed before shma's receives the fault at the announced
 * address (and, with SA_SIGINFO, the kernel's si_code). */
static void expect_chain(const char *name, void (*body)(void), int exit_code,
			 int si_code)
{
	struct outcome o;

	if (!run(name, body, &o))
		return;
	if (o.hung || !WIFEXITED(o.status) || WEXITSTATUS(o.status) != exit_code) {
		fail(name, exit_code == INFO_EXIT ?
		     "expected the previous SA_SIGINFO handler to run (exit 42)" :
		     "expected the previous plain handler to run (exit 43)", &o);
		return;
	}
	if (o.nrep != sizeof(o.rep) || !o.rep.seen || o.rep.signo != SIGSEGV) {
		fail(name, "no SIGSEGV report from the previous handler", &o);
		return;
	}
	if (exit_code != INFO_EXIT)
		return;
	if (o.rep.addr != o.ann.bad) {
		fprintf(stderr, "crash_outside: %s: si_addr %#lx, touched %#lx\n", name,
			(unsigned long)o.rep.addr, (unsigned long)o.ann.bad);
		fail(name, "the previous handler got the wrong si_addr", &o);
	}
	if (o.rep.code != si_code) {
		fprintf(stderr, "crash_outside: %s: si_code %d, want %d\n", name,
			o.rep.code, si_code);
		fail(name, "the previous handler got the wrong si_code", &o);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);

	expect_segv("accerr", child_accerr);
	expect_segv("accerr_write", child_accerr_write);
	expect_segv("maperr", child_maperr);
	expect_chain("chain_info", child_chain_info, INFO_EXIT, SEGV_ACCERR);
	expect_chain("chain_plain", child_chain_plain, PLAIN_EXIT, 0);
	expect_chain("chain_maperr", child_chain_maperr, INFO_EXIT, SEGV_MAPERR);

	if (failures) {
		fprintf(stderr, "crash_outside: %d case(s) failed\n", failures);
		return 1;
	}
	printf("crash_outside: all cases behaved as documented\n");
	return 0;
}
