/* crash_recursive.c - loadblk touching the block it loads is reported.
 *
 * shma.h: callbacks "must not access a mapping of the block they are called
 * for (that is reported, see SHMA_ERECURSIVE)"; a fault that cannot be served
 * raises SIGBUS (BUS_ADRERR, si_addr the faulting address) and
 * shma_vm_fault_error() names the error.  So the nested fault must end in
 * SIGBUS with SHMA_ERECURSIVE, never in a hang (the block is LOADING and the
 * nested access would wait for itself) nor in an endless fault loop.
 *
 * Cases (each in a forked child, killed after CHILD_TIMEOUT_S):
 *   nohandler     touch the block; no SIGBUS handler: death by SIGBUS
 *                 (SIGABRT is also accepted: the library may abort)
 *   handler       the same with a SIGBUS handler: it must see
 *                 SHMA_ERECURSIVE, BUS_ADRERR, an address in the block
 *   prefault      the load started by shma_prefault() instead of a fault
 *   other_mapping loadblk reads the block through a second mapping of the
 *                 same handle: still the block being loaded
 *   nested_other  control: loadblk of block 0 reads block 1 (allowed): the
 *                 nested load is served and the child exits 0
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
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shma.h"

#define BLKSIZE		4096
#define CHILD_TIMEOUT_S	20
#define HANDLER_EXIT	42
#define TOUCH_OFF	(77 * 8)	/* offset of the child's access */
#define NESTED_OFF	(5 * 8)		/* offset of loadblk's access */

/* ---- child side ---------------------------------------------------------- */

static int g_fd = -1;			/* report pipe, write end */
static volatile uint8_t *volatile g_touch;	/* what loadblk reads, or NULL */
static volatile uint64_t g_touch_blk;	/* ... when loading this block */
static volatile sig_atomic_t g_nload;

/* What the SIGBUS handler saw, sent to the parent. */
struct bus_report {
	int err;		/* shma_vm_fault_error() */
	int code;		/* si_code */
	int nload;		/* loadblk calls so far */
	uintptr_t addr;		/* si_addr */
	uintptr_t lo, hi;	/* the block loadblk touched: [lo, hi) */
};

static volatile struct bus_report g_rep;	/* also written by the handler */

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
	if (g_touch && blk == g_touch_blk)
		(void)g_touch[NESTED_OFF];
	memset(buf, (int)(0xb0 + blk), BLKSIZE);
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

/* Child: one handle mapped over 4 blocks; any failure exits 80+. */
static void vm_open(struct vm *vm)
{
	if (shma_ram_new(16 * BLKSIZE, &vm->ram) != 0)
		_exit(80);
	if (shma_file_new(&ops, BLKSIZE, NULL, &vm->file) != 0)
		_exit(81);
	if (shma_fileh_open(vm->file, vm->ram, &vm->fh) != 0)
		_exit(82);
	if (shma_map(vm->fh, 0, 4, &vm->map) != 0)
		_exit(83);
	if (shma_vm_install_handler() != 0)
		_exit(84);
	vm->base = shma_mapping_addr(vm->map);
}

/* loadblk of block blk will read p (a mapping of some block). */
static void arm(volatile uint8_t *p, uint64_t blk)
{
	g_touch_blk = blk;
	g_rep.lo = (uintptr_t)p;
	g_rep.hi = (uintptr_t)p + BLKSIZE;
	g_touch = p;
}

static void bus_report_exit(int sig, siginfo_t *si, void *uc)
{
	g_rep.err = shma_vm_fault_error();
	g_rep.code = si->si_code;
	g_rep.addr = (uintptr_t)si->si_addr;
	g_rep.nload = g_nload;
	write_all(g_fd, (const void *)&g_rep, sizeof(g_rep));
	_exit(HANDLER_EXIT);
}

static void set_sigbus_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = bus_report_exit;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) != 0)
		_exit(85);
}

static void child_nohandler(void)
{
	struct vm vm;

	vm_open(&vm);
	arm(vm.base + BLKSIZE, 1);
	(void)vm.base[BLKSIZE + TOUCH_OFF];
	child_fail(70, "the access to block 1 returned");
}

static void child_handler(void)
{
	struct vm vm;

	vm_open(&vm);
	set_sigbus_handler();
	arm(vm.base + 2 * BLKSIZE, 2);
	(void)vm.base[2 * BLKSIZE + TOUCH_OFF];
	child_fail(70, "the access to block 2 returned");
}

static void child_prefault(void)
{
	struct vm vm;
	int err;

	vm_open(&vm);
	set_sigbus_handler();
	arm(vm.base + 3 * BLKSIZE, 3);
	err = shma_prefault((void *)(vm.base + 3 * BLKSIZE), BLKSIZE, 0);
	fprintf(stderr, "child: shma_prefault returned %d (%s)\n", err, shma_strerror(err));
	child_fail(70, "shma_prefault of block 3 returned");
}

static void child_other_mapping(void)
{
	struct vm vm;
	shma_mapping *m2;

	vm_open(&vm);
	if (shma_map(vm.fh, 0, 4, &m2) != 0)
		_exit(86);
	set_sigbus_handler();
	arm((volatile uint8_t *)shma_mapping_addr(m2) + BLKSIZE, 1);
	(void)vm.base[BLKSIZE + TOUCH_OFF];
	child_fail(70, "the access to block 1 returned");
}

static void child_nested_other(void)
{
	struct vm vm;
	uint8_t v;

	vm_open(&vm);
	set_sigbus_handler();
	arm(vm.base + BLKSIZE, 0);	/* loading block 0 reads block 1 */
	v = vm.base[TOUCH_OFF];
	if (v != 0xb0)
		child_fail(60, "block 0 read wrong data");
	if (g_nload != 2)
		child_fail(61, "loadblk not called once for each of blocks 0 and 1");
	if (vm.base[BLKSIZE] != 0xb1)
		child_fail(62, "block 1 read wrong data");
	if (g_nload != 2)
		child_fail(63, "block 1 was loaded twice");
	if (shma_fileh_block_state(vm.fh, 0) != SHMA_PAGE_LOADED ||
	    shma_fileh_block_state(vm.fh, 1) != SHMA_PAGE_LOADED)
		child_fail(64, "blocks 0 and 1 not LOADED");
	if (shma_vm_fault_error() != 0)
		child_fail(65, "shma_vm_fault_error() is not 0");
	_exit(0);
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
	fprintf(stderr, "crash_recursive: %s: FAIL: ", name);
	fprintf(stderr, fmt, what);
	fputc('\n', stderr);
	failures++;
}

static bool run(const char *name, void (*body)(void), struct outcome *o)
{
	char what[128];
	int err = run_child(body, o);

	if (err) {
		fprintf(stderr, "crash_recursive: %s: FAIL: fork/pipe: %s\n", name,
			strerror(-err));
		failures++;
		return false;
	}
	describe(o, what, sizeof(what));
	printf("crash_recursive: %s: child %s\n", name, what);
	return true;
}

/* A recursive access must end in SIGBUS with SHMA_ERECURSIVE (seen by the
 * child's handler: exit HANDLER_EXIT), or in SIGABRT. */
static void check_recursive(const char *name, const struct outcome *o)
{
	char what[128];

	describe(o, what, sizeof(what));
	if (!o->hung && WIFSIGNALED(o->status) && WTERMSIG(o->status) == SIGABRT) {
		printf("crash_recursive: %s: observed SIGABRT (accepted)\n", name);
		return;
	}
	if (o->hung || !WIFEXITED(o->status) || WEXITSTATUS(o->status) != HANDLER_EXIT) {
		fail(name, "expected SIGBUS to reach the handler (exit 42), child %s", what);
		return;
	}
	if (o->nrep != sizeof(o->rep)) {
		fail(name, "%s", "no report from the SIGBUS handler");
		return;
	}
	printf("crash_recursive: %s: observed SIGBUS, fault error %d (%s)\n", name,
	       o->rep.err, shma_strerror(o->rep.err));
	if (o->rep.err != SHMA_ERECURSIVE)
		fail(name, "%s", "shma_vm_fault_error() is not SHMA_ERECURSIVE");
	if (o->rep.code != BUS_ADRERR) {
		fprintf(stderr, "crash_recursive: %s: si_code %d\n", name, o->rep.code);
		fail(name, "%s", "si_code is not BUS_ADRERR");
	}
	if (o->rep.addr < o->rep.lo || o->rep.addr >= o->rep.hi) {
		fprintf(stderr, "crash_recursive: %s: si_addr %#lx, block [%#lx, %#lx)\n",
			name, (unsigned long)o->rep.addr, (unsigned long)o->rep.lo,
			(unsigned long)o->rep.hi);
		fail(name, "%s", "si_addr is not in the block loadblk touched");
	}
	if (o->rep.nload != 1) {
		fprintf(stderr, "crash_recursive: %s: loadblk called %d times\n", name,
			o->rep.nload);
		fail(name, "%s", "loadblk was re-entered for the block it was loading");
	}
}

int main(void)
{
	struct outcome o;
	char what[128];

	setvbuf(stdout, NULL, _IONBF, 0);

	if (run("nohandler", child_nohandler, &o)) {
		describe(&o, what, sizeof(what));
		if (o.hung || !WIFSIGNALED(o.status) ||
		    (WTERMSIG(o.status) != SIGBUS && WTERMSIG(o.status) != SIGABRT))
			fail("nohandler", "expected death by SIGBUS (or SIGABRT), child %s",
			     what);
	}
	if (run("handler", child_handler, &o))
		check_recursive("handler", &o);
	if (run("prefault", child_prefault, &o))
		check_recursive("prefault", &o);
	if (run("other_mapping", child_other_mapping, &o))
		check_recursive("other_mapping", &o);
	if (run("nested_other", child_nested_other, &o)) {
		describe(&o, what, sizeof(what));
		if (o.hung || !WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0)
			fail("nested_other", "expected exit 0 (nested load of another "
			     "block served), child %s", what);
	}

	if (failures) {
		fprintf(stderr, "crash_recursive: %d case(s) failed\n", failures);
		return 1;
	}
	printf("crash_recursive: all cases behaved as documented\n");
	return 0;
}
