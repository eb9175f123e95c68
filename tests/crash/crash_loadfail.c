/* crash_loadfail.c - a fault that cannot be served raises SIGBUS.
 *
 * shma.h: when loadblk fails (or the RAM limit is reached) the faulting
 * thread gets SIGBUS, si_code BUS_ADRERR, si_addr the faulting address;
 * shma_vm_fault_error() names the error; the block stays EMPTY, so an access
 * after the SIGBUS handler returns tries again; without a SIGBUS handler the
 * process dies.
 *
 * Each case runs in a forked child; the parent checks how it ended (a child
 * still running after CHILD_TIMEOUT_S is killed and the case fails).
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
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shma.h"

#define BLKSIZE		4096
#define CHILD_TIMEOUT_S	20
#define HANDLER_EXIT	42
#define TOUCH_OFF	(123 * 8)	/* offset of the access in the block */

/* ---- child side ---------------------------------------------------------- */

static int g_fd = -1;			/* report pipe, write end */
static volatile sig_atomic_t g_fail_loads;	/* loadblk fails this many more times */
static volatile sig_atomic_t g_nload;

/* What a SIGBUS handler saw, sent to the parent. */
struct bus_report {
	int err;		/* shma_vm_fault_error() */
	int code;		/* si_code */
	uintptr_t addr;		/* si_addr */
	uintptr_t expect_addr;	/* the address the child touched */
};

static volatile struct bus_report g_rep;	/* also written by handlers */

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
	g_nload = g_nload + 1;
	if (g_fail_loads > 0) {
		g_fail_loads = g_fail_loads - 1;
		return -EIO;
	}
	memset(buf, (int)(0xa0 + blk), BLKSIZE);
	return 0;
}

static const struct shma_file_ops ops = { .loadblk = loadblk };

struct vm {
	shma_ram *ram;
	shma_file *file;
	shma_fileh *fh;
	shma_mapping *map;
	volatile uint8_t *base;
};

/* Child: one handle mapped over nblk blocks; any failure exits 80+. */
static void vm_open(struct vm *vm, size_t ramlimit, uint64_t nblk)
{
	if (shma_ram_new(ramlimit, &vm->ram) != 0)
		_exit(80);
	if (shma_file_new(&ops, BLKSIZE, NULL, &vm->file) != 0)
		_exit(81);
	if (shma_fileh_open(vm->file, vm->ram, &vm->fh) != 0)
		_exit(82);
	if (shma_map(vm->fh, 0, nblk, &vm->map) != 0)
		_exit(83);
	if (shma_vm_install_handler() != 0)
		_exit(84);
	vm->base = shma_mapping_addr(vm->map);
}

/* Report what the library told us and die with HANDLER_EXIT. */
static void bus_report_exit(int sig, siginfo_t *si, void *uc)
{
	g_rep.err = shma_vm_fault_error();
	g_rep.code = si->si_code;
	g_rep.addr = (uintptr_t)si->si_addr;
	write_all(g_fd, (const void *)&g_rep, sizeof(g_rep));
	_exit(HANDLER_EXIT);
}

/* Record what the library told us and return: the access is retried. */
static volatile sig_atomic_t g_nbus;
static void bus_record(int sig, siginfo_t *si, void *uc)
{
	g_nbus = g_nbus + 1;
	g_rep.err = shma_vm_fault_error();
	g_rep.code = si->si_code;
	g_rep.addr = (uintptr_t)si->si_addr;
}

static void set_sigbus(void (*fn)(int, siginfo_t *, void *))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) != 0)
		_exit(85);
}

/* loadblk fails, no SIGBUS handler: the process dies by SIGBUS. */
static void child_nohandler(void)
{
	struct vm vm;

	g_fail_loads = 1000;
	vm_open(&vm, 16 * BLKSIZE, 4);
	(void)vm.base[BLKSIZE + TOUCH_OFF];
	_exit(70);	/* the access "succeeded" */
}

/* loadblk fails, SIGBUS handler: it sees -EIO, BUS_ADRERR and the address. */
static void child_handler(void)
{
	struct vm vm;

	g_fail_loads = 1000;
	vm_open(&vm, 16 * BLKSIZE, 4);
	set_sigbus(bus_report_exit);
	g_rep.expect_addr = (uintptr_t)&vm.base[2 * BLKSIZE + TOUCH_OFF];
	(void)vm.base[2 * BLKSIZE + TOUCH_OFF];
	_exit(70);
}

/* loadblk fails once; the SIGBUS handler returns; the access is retried,
 * loads again and succeeds.  The child checks everything and exits 0. */
static void child_retry(void)
{
	struct vm vm;
	uint8_t v;

	g_fail_loads = 1;
	vm_open(&vm, 16 * BLKSIZE, 4);
	set_sigbus(bus_record);
	if (shma_fileh_block_state(vm.fh, 1) != SHMA_PAGE_EMPTY)
		child_fail(60, "block 1 not EMPTY before the access");
	g_rep.expect_addr = (uintptr_t)&vm.base[BLKSIZE + TOUCH_OFF];
	v = vm.base[BLKSIZE + TOUCH_OFF];
	write_all(g_fd, (const void *)&g_rep, sizeof(g_rep));
	if (g_nbus != 1)
		child_fail(61, "SIGBUS handler not called exactly once");
	if (g_nload != 2)
		child_fail(62, "loadblk not called exactly twice");
	if (v != 0xa1)
		child_fail(63, "retried access read wrong data");
	if (shma_fileh_block_state(vm.fh, 1) != SHMA_PAGE_LOADED)
		child_fail(64, "block 1 not LOADED after the retried access");
	if (shma_vm_fault_error() != -EIO)	/* the last failure in this thread */
		child_fail(65, "shma_vm_fault_error() is not -EIO after the retry");
	_exit(0);
}

/* RAM for one page, held dirty: a fault on another block finds no clean
 * page to reclaim and gets SIGBUS with SHMA_ERAMLIMIT. */
static void child_ramlimit(void)
{
	struct vm vm;

	g_fail_loads = 0;
	vm_open(&vm, BLKSIZE, 2);
	vm.base[0] = 1;
	if (shma_fileh_block_state(vm.fh, 0) != SHMA_PAGE_DIRTY)
		child_fail(60, "block 0 not DIRTY after a write");
	set_sigbus(bus_report_exit);
	g_rep.expect_addr = (uintptr_t)&vm.base[BLKSIZE + TOUCH_OFF];
	(void)vm.base[BLKSIZE + TOUCH_OFF];
	_exit(70);
}

/* ---- parent side --------------------------------------------------------- */

struct outcome {
	int status;
	bool hung;
	struct bus_report rep;
	size_t nrep;		/* bytes of rep received */
};

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
	while (o->nrep < sizeof(o->rep)) {
		ssize_t n = read(p[0], (char *)&o->rep + o->nrep, sizeof(o->rep) - o->nrep);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		o->nrep += (size_t)n;
	}
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

static void fail(const char *name, const char *fmt, const char *what)
{
	fprintf(stderr, "crash_loadfail: %s: FAIL: ", name);
	fprintf(stderr, fmt, what);
	fputc('\n', stderr);
	failures++;
}

static bool run(const char *name, void (*body)(void), struct outcome *o)
{
	char what[128];
	int err = run_child(body, o);

	if (err) {
		fprintf(stderr, "crash_loadfail: %s: FAIL: fork/pipe: %s\n", name,
			strerror(-err));
		failures++;
		return false;
	}
	describe(o, what, sizeof(what));
	printf("crash_loadfail: %s: child %s\n", name, what);
	return true;
}

/* The child's SIGBUS handler reported err at the touched address. */
static void check_report(const char *name, const struct outcome *o, int err)
{
	char what[128];

	describe(o, what, sizeof(what));
	if (o->hung || !WIFEXITED(o->status) || WEXITSTATUS(o->status) != HANDLER_EXIT) {
		fail(name, "expected the SIGBUS handler to run (exit 42), child %s", what);
		return;
	}
	if (o->nrep != sizeof(o->rep)) {
		fail(name, "%s", "no report from the SIGBUS handler");
		return;
	}
	if (o->rep.err != err) {
		fprintf(stderr, "crash_loadfail: %s: shma_vm_fault_error() = %d (%s), want %d (%s)\n",
			name, o->rep.err, shma_strerror(o->rep.err), err, shma_strerror(err));
		fail(name, "%s", "wrong fault error");
	}
	if (o->rep.code != BUS_ADRERR) {
		fprintf(stderr, "crash_loadfail: %s: si_code %d\n", name, o->rep.code);
		fail(name, "%s", "si_code is not BUS_ADRERR");
	}
	if (o->rep.addr != o->rep.expect_addr) {
		fprintf(stderr, "crash_loadfail: %s: si_addr %#lx, touched %#lx\n", name,
			(unsigned long)o->rep.addr, (unsigned long)o->rep.expect_addr);
		fail(name, "%s", "si_addr is not the faulting address");
	}
}

int main(void)
{
	struct outcome o;
	char what[128];

	setvbuf(stdout, NULL, _IONBF, 0);

	if (run("nohandler", child_nohandler, &o)) {
		describe(&o, what, sizeof(what));
		if (o.hung || !WIFSIGNALED(o.status) || WTERMSIG(o.status) != SIGBUS)
			fail("nohandler", "expected death by SIGBUS, child %s", what);
	}

	if (run("handler", child_handler, &o))
		check_report("handler", &o, -EIO);

	if (run("retry", child_retry, &o)) {
		describe(&o, what, sizeof(what));
		if (o.hung || !WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0)
			fail("retry", "expected exit 0 (access retried and served), child %s",
			     what);
		else if (o.nrep != sizeof(o.rep) || o.rep.err != -EIO ||
			 o.rep.code != BUS_ADRERR || o.rep.addr != o.rep.expect_addr)
			fail("retry", "%s", "SIGBUS handler saw the wrong error/si_code/si_addr");
	}

	if (run("ramlimit", child_ramlimit, &o))
		check_report("ramlimit", &o, SHMA_ERAMLIMIT);

	if (failures) {
		fprintf(stderr, "crash_loadfail: %d case(s) failed\n", failures);
		return 1;
	}
	printf("crash_loadfail: all cases behaved as documented\n");
	return 0;
}
