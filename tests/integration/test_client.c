/* test_client.c - libshm's broker client (the "broker connections" part of
 * shma.h) against a real shma-broker, in one process and across processes:
 * snapshot isolation, conflicts (first committer wins), holes, page-granular
 * commits, abort, a writer killed mid-transaction, lost invalidations, a
 * broker killed and restarted, readers in many threads during commits and
 * syncs, fork(), resize, delete and re-create, the mapped-page budget,
 * prefault before system calls, and read-only connections.
 *
 * Every test starts its own broker (tests/lib/harness.h) and stops it at the
 * end (a clean exit with the socket removed).  Other processes are fork()ed
 * children that connect on their own, talk to the parent through pipes and
 * report with their exit status; the teardown kills and reaps any child a
 * failed test left behind.  cmocka replaces the SIGSEGV handler before each
 * test, so each test that touches mapped memory installs libshm's first.
 */
#include "itest.h"

#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "conn_int.h" /* conn_debug_drop_invalidations, c->ram */
#include "shma.h"

#define BS ((size_t)IT_BLOCK) /* the harness's block size */

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* Options for a connection made in a forked child: TSan cannot start
 * threads (ZeroMQ's) after a fork of a multi-threaded process. */
static const struct shma_conn_options child_opts = { .no_invalidations = UNDER_TSAN };

static struct harness broker;

/* ---- children ---------------------------------------------------------------- */

#define MAX_CHILDREN 8
static pid_t children[MAX_CHILDREN];

struct child {
	pid_t pid;
	int to;	  /* parent -> child */
	int from; /* child -> parent */
};

static void child_forget(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

static int teardown(void **state)
{
	(void)state;
	it_kill_children(children, MAX_CHILDREN);
	return it_teardown_harness(&broker);
}

/* In a child: a call that must return 0. */
#define CHECK_OK(c, call)                                                                   \
	do {                                                                                \
		int e_ = (call);                                                            \
		if (e_) {                                                                   \
			fprintf(stderr, "child %d: %s:%d: %s: %s (%s)\n", (int)getpid(),    \
				__FILE__, __LINE__, #call, shma_strerror(e_),               \
				(c) ? shma_conn_error(c) : "");                             \
			_exit(1);                                                           \
		}                                                                           \
	} while (0)

static void msg_send(int fd, uint64_t v)
{
	ssize_t n;

	do
		n = write(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(v)) {
		fprintf(stderr, "pid %d: pipe write failed\n", (int)getpid());
		_exit(3);
	}
}

/* One message within timeout_ms; false on timeout or end of pipe. */
static bool msg_recv(int fd, int timeout_ms, uint64_t *v)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int r;

	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return false;
	do
		n = read(fd, v, sizeof(*v));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*v);
}

/* In a child: the next message, or exit. */
static uint64_t child_recv(int fd)
{
	uint64_t v;

	IT_CHECK(msg_recv(fd, 20000, &v));
	return v;
}

/* Fork a child running fn(in, out, arg); its return value is its exit
 * status.  A child lives at most 30 s (alarm). */
static void child_start(struct child *ch, int (*fn)(int in, int out, void *arg), void *arg)
{
	int p2c[2], c2p[2];

	assert_int_equal(pipe2(p2c, O_CLOEXEC), 0);
	assert_int_equal(pipe2(c2p, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	ch->pid = fork();
	assert_true(ch->pid >= 0);
	if (ch->pid == 0) {
		close(p2c[1]);
		close(c2p[0]);
		alarm(30);
		_exit(fn(p2c[0], c2p[1], arg));
	}
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == 0) {
			children[i] = ch->pid;
			break;
		}
	close(p2c[0]);
	close(c2p[1]);
	ch->to = p2c[1];
	ch->from = c2p[0];
}

/* The parent's side of a message from the child (it must come). */
static uint64_t child_expect(struct child *ch)
{
	uint64_t v = 0;

	assert_true(msg_recv(ch->from, 20000, &v));
	return v;
}

/* Wait for the child (SIGKILL after timeout_ms); its wait status. */
static int child_wait(struct child *ch, int timeout_ms)
{
	uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
	int status = 0;

	for (;;) {
		pid_t r = waitpid(ch->pid, &status, WNOHANG);

		if (r == ch->pid)
			break;
		assert_true(r == 0);
		if (it_now_ms() > end) {
			fprintf(stderr, "child %d did not finish: killed\n", (int)ch->pid);
			kill(ch->pid, SIGKILL);
			waitpid(ch->pid, &status, 0);
			break;
		}
		it_sleep_ms(5);
	}
	child_forget(ch->pid);
	close(ch->to);
	close(ch->from);
	ch->pid = -1;
	return status;
}

/* The child must exit 0. */
static void child_done(struct child *ch)
{
	int st = child_wait(ch, 20000);

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "child status: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- connections and arrays -------------------------------------------------- */

static shma_conn *conn_open(const struct shma_conn_options *o)
{
	shma_conn *c = NULL;
	int err = shma_connect(broker.socket, o, &c);

	if (err)
		fprintf(stderr, "shma_connect: %s\n", shma_strerror(err));
	assert_int_equal(err, 0);
	assert_non_null(c);
	return c;
}

/* Create a 1-d |u1 array of nbytes; c then sees it (sync to its revision). */
static uint64_t array_create(shma_conn *c, const char *name, uint64_t nbytes)
{
	uint64_t rev = 0;

	IT_OK(c, shma_create(c, name, "|u1", 1, &nbytes, 'C', 0, &rev));
	assert_true(rev > 0);
	IT_OK(c, shma_sync_to(c, rev));
	return rev;
}

static shma_array *array_open(shma_conn *c, const char *name)
{
	shma_array *a = NULL;

	IT_OK(c, shma_open(c, name, &a));
	assert_non_null(a);
	return a;
}

/* A block's bytes. */
static unsigned char *blk_ptr(shma_array *a, uint64_t blk)
{
	return (unsigned char *)shma_array_data(a) + blk * BS;
}

/* Fill block blk with byte v (every page: a whole-block write). */
static void blk_fill(shma_array *a, uint64_t blk, unsigned char v)
{
	memset(blk_ptr(a, blk), v, BS);
}

/* Is every byte of block blk equal to v? */
static bool blk_is(shma_array *a, uint64_t blk, unsigned char v)
{
	const volatile unsigned char *p = blk_ptr(a, blk);

	for (size_t i = 0; i < BS; i++)
		if (p[i] != v)
			return false;
	return true;
}

static struct shma_conn_stats stats_of(shma_conn *c)
{
	struct shma_conn_stats st;

	shma_conn_stats(c, &st);
	return st;
}

/* Does msg mention the number n standing alone (not as part of another)? */
static bool mentions_number(const char *msg, uint64_t n)
{
	char want[24];
	size_t wl = (size_t)snprintf(want, sizeof(want), "%" PRIu64, n);

	for (const char *p = msg; (p = strstr(p, want)); p++) {
		bool before = p == msg || (p[-1] < '0' || p[-1] > '9');
		bool after = p[wl] < '0' || p[wl] > '9';

		if (before && after)
			return true;
	}
	return false;
}

/* ---- SIGBUS ------------------------------------------------------------------- */

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_seen;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	bus_seen = 1;
	siglongjmp(bus_jmp, 1);
}

/* Read one byte at p: true if the access got SIGBUS. */
static bool read_gets_sigbus(const volatile unsigned char *p)
{
	struct sigaction sa, old;
	volatile bool bus = false;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGBUS, &sa, &old), 0);
	bus_seen = 0;
	if (sigsetjmp(bus_jmp, 1) == 0)
		(void)*p;
	else
		bus = true;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

/* ---- /proc ---------------------------------------------------------------------- */

static int vma_count(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	int n = 0, ch;

	assert_non_null(f);
	while ((ch = fgetc(f)) != EOF)
		if (ch == '\n')
			n++;
	fclose(f);
	return n;
}

/* Rss in kB of the mappings inside [addr, addr + len), from /proc/self/smaps
 * (a VMA partly inside counts whole). */
static long range_rss_kb(const void *addr, size_t len)
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + len, s = 0, e = 0;
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	long sum = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) == 2) { /* a VMA's header */
			in = s < hi && e > lo;
			continue;
		}
		if (in && !strncmp(line, "Rss:", 4))
			sum += strtol(line + 4, NULL, 10);
	}
	fclose(f);
	return sum;
}

/* Rss of this process in kB, from /proc/self/smaps_rollup (VmRSS if absent). */
static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "re");
	char line[256];
	long v = -1;

	if (!f)
		return it_status_kb(getpid(), "VmRSS");
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Rss:", 4)) {
			v = strtol(line + 4, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* ---- the invalidation stream ------------------------------------------------- */

/* ZeroMQ's slow joiner: a subscriber misses what is published before its
 * subscription reaches the broker.  Commit a byte of `scratch` through
 * writer until listener hears of it (shma_poll); then the stream is live. */
static void await_stream(shma_conn *listener, shma_conn *writer, shma_array *scratch)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		unsigned char *p = shma_array_data(scratch);
		uint64_t rev = 0, newest = 0;

		p[0] = (unsigned char)(p[0] + 1);
		IT_OK(writer, shma_commit(writer, &rev));
		for (int i = 0; i < 20; i++) {
			IT_OK(listener, shma_poll(listener, &newest));
			if (newest >= rev)
				return;
			it_sleep_ms(5);
		}
	}
	fail_msg("the invalidation stream never delivered a commit");
}

/* Connections a (listening) and b (writing), on a running broker: array
 * `name` of nbytes, created by b and opened by a (*xa); b's one-block
 * "scratch" (*sb); a's stream live and a caught up with it. */
static void stream_pair(const char *name, uint64_t nbytes, shma_conn **a, shma_conn **b,
			shma_array **xa, shma_array **sb)
{
	*a = conn_open(NULL);
	*b = conn_open(NULL);
	array_create(*b, "scratch", BS);
	IT_OK(*a, shma_sync_to(*a, array_create(*b, name, nbytes)));
	*xa = array_open(*a, name);
	*sb = array_open(*b, "scratch");
	await_stream(*a, *b, *sb);
	IT_OK(*a, shma_sync(*a, NULL));
}

/* Undo stream_pair (and close xb, b's handle of the array, if not NULL),
 * then stop the broker. */
static void stream_pair_end(shma_conn **a, shma_conn **b, shma_array **xa, shma_array **sb,
			    shma_array **xb)
{
	shma_close(xa);
	if (xb)
		shma_close(xb);
	shma_close(sb);
	shma_disconnect(a);
	shma_disconnect(b);
	it_stop(&broker);
}

/* Poll until c has heard of revision rev. */
static void await_heard(shma_conn *c, uint64_t rev)
{
	uint64_t newest = 0, end = it_now_ms() + 5000;

	for (;;) {
		IT_OK(c, shma_poll(c, &newest));
		if (newest >= rev || it_now_ms() > end)
			break;
		it_sleep_ms(2);
	}
	assert_int_equal(newest, rev);
}

/* ---- snapshot isolation -------------------------------------------------------- */

static void test_isolation(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *xb;
	uint64_t r1, r2, snap_b;
	unsigned char *pb;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	a = conn_open(NULL);
	b = conn_open(NULL);
	array_create(a, "iso", 4 * BS);
	xa = array_open(a, "iso");
	blk_fill(xa, 0, 1);
	IT_OK(a, shma_commit(a, &r1));

	/* B heard of the create, perhaps not yet of r1: a plain sync could stop
	 * at the create (the newest heard of), so name the revision */
	IT_OK(b, shma_sync_to(b, r1));
	xb = array_open(b, "iso");
	pb = shma_array_data(xb);
	assert_true(blk_is(xb, 0, 1));
	assert_true(blk_is(xb, 1, 0));

	/* A's uncommitted writes are A's alone */
	blk_fill(xa, 0, 2);
	blk_fill(xa, 1, 2);
	assert_true(blk_is(xa, 0, 2));
	assert_true(blk_is(xb, 0, 1));
	assert_true(blk_is(xb, 1, 0));

	/* committed: B, at its old snapshot, still sees the old data */
	IT_OK(a, shma_commit(a, &r2));
	assert_true(r2 > r1);
	snap_b = shma_revision(b);
	assert_true(snap_b < r2);
	assert_true(blk_is(xb, 0, 1));
	assert_true(blk_is(xb, 1, 0));
	it_sleep_ms(50); /* the invalidation arrives: still nothing changes */
	assert_true(blk_is(xb, 0, 1));
	assert_int_equal(shma_revision(b), snap_b);

	/* until it syncs */
	IT_OK(b, shma_sync(b, NULL));
	assert_true(shma_revision(b) >= r2);
	assert_ptr_equal(shma_array_data(xb), pb);
	assert_true(blk_is(xb, 0, 2));
	assert_true(blk_is(xb, 1, 2));
	assert_true(blk_is(xb, 2, 0));

	shma_close(&xa);
	shma_close(&xb);
	assert_null(xa);
	shma_disconnect(&a);
	shma_disconnect(&b);
	assert_null(a);
	it_stop(&broker);
}

/* The reader B in a child process: it reports what block 0 holds at each
 * step the parent (the writer A) asks about. */
static int iso_reader(int in, int out, void *arg)
{
	shma_conn *c = NULL;
	shma_array *x = NULL;
	const volatile unsigned char *p;
	uint64_t snap;

	(void)arg;
	shma_vm_install_handler();
	CHECK_OK(c, shma_connect(broker.socket, &child_opts, &c));
	CHECK_OK(c, shma_open(c, "iso", &x));
	p = shma_array_data(x);
	msg_send(out, p[0]); /* step 1: the committed 1 */
	snap = shma_revision(c);
	child_recv(in); /* A wrote 2, uncommitted */
	msg_send(out, p[0] | (uint64_t)p[BS - 1] << 8);
	child_recv(in); /* A committed */
	it_sleep_ms(50);
	IT_CHECK(shma_revision(c) == snap);
	msg_send(out, p[0] | (uint64_t)p[BS - 1] << 8);
	CHECK_OK(c, shma_sync(c, NULL));
	msg_send(out, p[0] | (uint64_t)p[BS - 1] << 8);
	shma_close(&x);
	shma_disconnect(&c);
	return 0;
}

static void test_isolation_processes(void **state)
{
	struct child ch;
	shma_conn *a;
	shma_array *xa;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	a = conn_open(NULL);
	array_create(a, "iso", 2 * BS);
	xa = array_open(a, "iso");
	blk_fill(xa, 0, 1);
	IT_OK(a, shma_commit(a, NULL));

	child_start(&ch, iso_reader, NULL);
	assert_int_equal(child_expect(&ch), 1);
	blk_fill(xa, 0, 2);
	msg_send(ch.to, 0);
	assert_int_equal(child_expect(&ch), 0x0101); /* not A's uncommitted 2 */
	IT_OK(a, shma_commit(a, NULL));
	msg_send(ch.to, 0);
	assert_int_equal(child_expect(&ch), 0x0101); /* its old snapshot */
	assert_int_equal(child_expect(&ch), 0x0202); /* after its sync */
	child_done(&ch);

	shma_close(&xa);
	shma_disconnect(&a);
	it_stop(&broker);
}

/* shma_create: "this connection sees it after its next shma_sync".  The
 * connection has heard of a newer revision (another's commit) than its
 * snapshot, but not yet of its own create (here: the create's invalidation
 * is dropped, as a lagging stream would not have delivered it yet). */
static void test_create_visible_after_sync(void **state)
{
	shma_conn *a, *b;
	shma_array *sa, *sb, *n = NULL;
	uint64_t rb = 0, rc = 0, shape = BS;
	int err;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	a = conn_open(NULL);
	b = conn_open(NULL);
	array_create(b, "scratch", BS);
	IT_OK(a, shma_sync(a, NULL));
	sa = array_open(a, "scratch");
	sb = array_open(b, "scratch");
	await_stream(a, b, sb);
	IT_OK(a, shma_sync(a, NULL));

	blk_ptr(sb, 0)[1] = 9;
	IT_OK(b, shma_commit(b, &rb));
	await_heard(a, rb); /* heard of rb, snapshot older */
	assert_true(shma_revision(a) < rb);

	conn_debug_drop_invalidations(a, 1);
	IT_OK(a, shma_create(a, "fresh", "|u1", 1, &shape, 'C', 0, &rc));
	assert_true(rc > rb);
	it_sleep_ms(50);
	IT_OK(a, shma_sync(a, NULL));
	err = shma_open(a, "fresh", &n);
	if (err)
		fprintf(stderr, "BUG: created at revision %" PRIu64 ", synced to %" PRIu64
			", shma_open: %s (%s)\n", rc, shma_revision(a), shma_strerror(err),
			shma_conn_error(a));
	assert_int_equal(err, 0);
	assert_true(shma_revision(a) >= rc);
	shma_close(&n);

	shma_close(&sa);
	shma_close(&sb);
	shma_disconnect(&a);
	shma_disconnect(&b);
	it_stop(&broker);
}

/* ---- conflicts ------------------------------------------------------------------ */

static void test_conflict_first_committer_wins(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *xb;
	uint64_t ra = 0, rb = 0, rfail = 12345;
	const char *msg;
	int err;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	a = conn_open(NULL);
	b = conn_open(NULL);
	array_create(a, "contested", 16 * BS);
	IT_OK(b, shma_sync(b, NULL));
	xa = array_open(a, "contested");
	xb = array_open(b, "contested");
	assert_int_equal(shma_revision(a), shma_revision(b));

	blk_fill(xa, 11, 0xA);
	blk_fill(xb, 11, 0xB);
	blk_fill(xb, 5, 0xB);
	IT_OK(a, shma_commit(a, &ra));
	assert_true(ra < 11); /* so a "11" in a message names the block */

	err = shma_commit(b, &rfail);
	assert_int_equal(err, SHMA_ECONFLICT);
	assert_int_equal(rfail, 12345); /* untouched on failure */
	msg = shma_conn_error(b);
	fprintf(stderr, "conflict message: %s\n", msg);
	assert_non_null(strstr(msg, "contested"));
	if (!mentions_number(msg, 11))
		fprintf(stderr, "BUG: the conflict message does not name block 11\n");
	assert_true(mentions_number(msg, 11));
	assert_int_equal(stats_of(b).conflicts, 1);
	/* B's view is unchanged by the failure: still its own writes */
	assert_true(blk_is(xb, 11, 0xB));

	IT_OK(b, shma_abort(b));
	IT_OK(b, shma_sync(b, NULL));
	assert_true(shma_revision(b) >= ra);
	assert_true(blk_is(xb, 11, 0xA)); /* the winner's */
	assert_true(blk_is(xb, 5, 0));
	blk_fill(xb, 11, 0xB);
	IT_OK(b, shma_commit(b, &rb));
	assert_true(rb > ra);

	IT_OK(a, shma_sync(a, NULL));
	assert_true(blk_is(xa, 11, 0xB));

	shma_close(&xa);
	shma_close(&xb);
	shma_disconnect(&a);
	shma_disconnect(&b);
	it_stop(&broker);
}

/* A dirty block changed by another commit during this transaction: the sync
 * succeeds, the local change stays visible, the commit conflicts. */
static void test_conflict_dirty_block_synced(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *xb;
	uint64_t rb = 0;
	const char *msg;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	a = conn_open(NULL);
	b = conn_open(NULL);
	array_create(a, "dirty", 16 * BS);
	IT_OK(b, shma_sync(b, NULL));
	xa = array_open(a, "dirty");
	xb = array_open(b, "dirty");

	blk_ptr(xa, 9)[100] = 0xAA; /* one page of block 9 */
	blk_fill(xa, 1, 0xA1);	    /* a block only A changes */
	blk_fill(xb, 9, 0xBB);
	blk_fill(xb, 12, 0xBB);
	IT_OK(b, shma_commit(b, &rb));

	IT_OK(a, shma_sync(a, NULL));
	assert_true(shma_revision(a) >= rb);
	assert_int_equal(blk_ptr(xa, 9)[100], 0xAA); /* ours, still */
	assert_true(blk_is(xa, 12, 0xBB));	     /* theirs, not dirty here */
	assert_true(blk_is(xa, 1, 0xA1));

	assert_int_equal(shma_commit(a, NULL), SHMA_ECONFLICT);
	msg = shma_conn_error(a);
	fprintf(stderr, "conflict message: %s\n", msg);
	assert_non_null(strstr(msg, "dirty"));
	assert_true(mentions_number(msg, 9));
	assert_int_equal(stats_of(a).conflicts, 1);

	IT_OK(a, shma_abort(a));
	assert_true(blk_is(xa, 1, 0));
	IT_OK(a, shma_sync(a, NULL));
	assert_true(blk_is(xa, 9, 0xBB));
	blk_ptr(xa, 9)[100] = 0xAA;
	IT_OK(a, shma_commit(a, NULL));

	IT_OK(b, shma_sync(b, NULL));
	assert_int_equal(blk_ptr(xb, 9)[100], 0xAA);
	assert_int_equal(blk_ptr(xb, 9)[99], 0xBB);

	shma_close(&xa);
	shma_close(&xb);
	shma_disconnect(&a);
	shma_disconnect(&b);
	it_stop(&broker);
}

/* ---- holes ------------------------------------------------------------------------ */

static void test_holes_read_zero_cost_nothing(void **state)
{
	const uint64_t nbytes = 64ull << 20;
	shma_conn *c;
	shma_array *x;
	struct shma_array_info info;
	const volatile uint64_t *p;
	uint64_t acc = 0;
	long before, after;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	c = conn_open(NULL);
	array_create(c, "holes", nbytes);
	x = array_open(c, "holes");
	shma_array_info(x, &info);
	assert_int_equal(info.nbytes, nbytes);
	assert_int_equal(info.block_size, BS);
	assert_int_equal(info.nblocks, nbytes / BS);

	p = shma_array_data(x);
	before = rss_kb();
	for (uint64_t i = 0; i < nbytes / 8; i++)
		acc |= p[i];
	after = rss_kb();
	assert_int_equal(acc, 0);
	fprintf(stderr, "holes: 64 MiB read, process Rss %ld -> %ld kB, the array's %ld kB\n",
		before, after, range_rss_kb((const void *)p, nbytes));
	/* the zero page is in no Rss: 64 MiB if the zeros were allocated */
	assert_true(range_rss_kb((const void *)p, nbytes) < 1024);
	assert_true(before > 0 && after > 0);
	if (!UNDER_TSAN) /* TSan's shadow of what was read grows with it */
		assert_true(after - before < 4096);
	for (uint64_t b = 0; b < info.nblocks; b += 97)
		assert_int_equal(shma_fileh_block_state(x->fh, b), SHMA_PAGE_LOADED);
	/* a commit of nothing */
	assert_int_equal(shma_fileh_dirty_blocks(x->fh, NULL, 0), 0);

	shma_close(&x);
	shma_disconnect(&c);
	it_stop(&broker);
}

/* ---- page-granular commit, abort ----------------------------------------------- */

static void test_page_granular_commit(void **state)
{
	static const uint64_t blocks[] = { 0, 2, 3, 7, 8, 15 };
	shma_conn *c, *d;
	shma_array *x, *y;
	struct shma_conn_stats s0, s1;
	uint64_t r1 = 0, r2 = 0, r3 = 0;
	unsigned char *p;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	c = conn_open(NULL);
	array_create(c, "pg", 16 * BS);
	x = array_open(c, "pg");
	p = shma_array_data(x);

	/* one byte in each of N blocks: N pages */
	s0 = stats_of(c);
	for (size_t i = 0; i < ARRAY_SIZE(blocks); i++)
		p[blocks[i] * BS + (blocks[i] % 16) * IT_PAGE + 17] = (unsigned char)(blocks[i] + 1);
	IT_OK(c, shma_commit(c, &r1));
	s1 = stats_of(c);
	assert_int_equal(s1.pages_sent - s0.pages_sent, ARRAY_SIZE(blocks));
	assert_int_equal(s1.commits - s0.commits, 1);

	/* two pages of one block: 2; a whole block: 16 */
	p[BS + 5] = 1;
	p[BS + 3 * IT_PAGE + 5] = 1;
	IT_OK(c, shma_commit(c, &r2));
	assert_int_equal(stats_of(c).pages_sent - s1.pages_sent, 2);
	s1 = stats_of(c);
	blk_fill(x, 4, 4);
	IT_OK(c, shma_commit(c, &r3));
	assert_int_equal(stats_of(c).pages_sent - s1.pages_sent, BS / IT_PAGE);
	assert_true(r1 < r2 && r2 < r3);

	/* the value it already had: nothing to send, the same revision */
	s1 = stats_of(c);
	{
		volatile unsigned char *q = p;

		q[3 * BS + 3 * IT_PAGE + 17] = q[3 * BS + 3 * IT_PAGE + 17];
		q[10 * BS] = 0; /* a hole written with zero */
	}
	{
		uint64_t r = 0;

		IT_OK(c, shma_commit(c, &r));
		assert_int_equal(r, r3);
	}
	assert_int_equal(stats_of(c).pages_sent, s1.pages_sent);
	assert_int_equal(shma_revision(c), r3);

	/* another connection sees exactly that */
	d = conn_open(NULL);
	y = array_open(d, "pg");
	for (size_t i = 0; i < ARRAY_SIZE(blocks); i++) {
		const unsigned char *q = blk_ptr(y, blocks[i]);

		for (size_t k = 0; k < BS; k++)
			assert_int_equal(q[k], k == (blocks[i] % 16) * IT_PAGE + 17
						       ? (unsigned char)(blocks[i] + 1) : 0);
	}
	assert_int_equal(blk_ptr(y, 1)[5], 1);
	assert_int_equal(blk_ptr(y, 1)[3 * IT_PAGE + 5], 1);
	assert_true(blk_is(y, 4, 4));
	assert_true(blk_is(y, 10, 0));

	shma_close(&x);
	shma_close(&y);
	shma_disconnect(&c);
	shma_disconnect(&d);
	it_stop(&broker);
}

static void test_abort_discards(void **state)
{
	shma_conn *c, *d;
	shma_array *x, *y;
	struct shma_conn_stats s0;
	uint64_t r1 = 0, r = 0;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	c = conn_open(NULL);
	array_create(c, "ab", 4 * BS);
	x = array_open(c, "ab");
	blk_fill(x, 0, 1);
	IT_OK(c, shma_commit(c, &r1));

	blk_fill(x, 0, 2);
	blk_fill(x, 1, 2);
	blk_ptr(x, 3)[7] = 2;
	assert_int_equal(shma_fileh_dirty_blocks(x->fh, NULL, 0), 3);
	IT_OK(c, shma_abort(c));
	assert_int_equal(shma_fileh_dirty_blocks(x->fh, NULL, 0), 0);
	assert_true(blk_is(x, 0, 1));
	assert_true(blk_is(x, 1, 0));
	assert_true(blk_is(x, 3, 0));

	s0 = stats_of(c);
	IT_OK(c, shma_commit(c, &r));
	assert_int_equal(r, r1);
	assert_int_equal(stats_of(c).pages_sent, s0.pages_sent);
	assert_int_equal(stats_of(c).commits, s0.commits);

	d = conn_open(NULL);
	y = array_open(d, "ab");
	assert_true(blk_is(y, 0, 1));
	assert_true(blk_is(y, 1, 0));

	shma_close(&x);
	shma_close(&y);
	shma_disconnect(&c);
	shma_disconnect(&d);
	it_stop(&broker);
}

/* ---- a writer killed mid-transaction ------------------------------------------------ */

static int killed_writer(int in, int out, void *arg)
{
	shma_conn *c = NULL;
	shma_array *x = NULL;
	unsigned char *p;

	(void)arg;
	shma_vm_install_handler();
	CHECK_OK(c, shma_connect(broker.socket, &child_opts, &c));
	CHECK_OK(c, shma_open(c, "kw", &x));
	p = shma_array_data(x);
	IT_CHECK(p[0] == 1);
	memset(p, 0xEE, 2 * BS);
	IT_CHECK(p[BS] == 0xEE);
	msg_send(out, 1);
	child_recv(in); /* killed while waiting */
	return 2;
}

static void test_killed_writer_leaves_nothing(void **state)
{
	struct tclient t;
	struct child ch;
	shma_conn *c, *d;
	shma_array *x, *y;
	long long pins0, clients0;
	uint64_t r1 = 0;
	int st;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	it_open_client(&t, &broker);
	c = conn_open(NULL);
	array_create(c, "kw", 4 * BS);
	x = array_open(c, "kw");
	blk_fill(x, 0, 1);
	IT_OK(c, shma_commit(c, &r1));
	pins0 = it_stat(&t, "pins");
	clients0 = it_stat(&t, "clients");

	child_start(&ch, killed_writer, NULL);
	assert_int_equal(child_expect(&ch), 1);
	assert_int_equal(it_stat(&t, "pins"), pins0 + 1);
	assert_int_equal(it_stat(&t, "clients"), clients0 + 1);
	kill(ch.pid, SIGKILL);
	st = child_wait(&ch, 5000);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_int_equal(it_wait_stat(&t, "clients", clients0, 5000), clients0);
	assert_int_equal(it_wait_stat(&t, "pins", pins0, 5000), pins0);
	assert_int_equal(it_stat(&t, "head"), (long long)r1);

	IT_OK(c, shma_sync(c, NULL));
	assert_int_equal(shma_revision(c), r1);
	assert_true(blk_is(x, 0, 1));
	assert_true(blk_is(x, 1, 0));
	d = conn_open(NULL);
	y = array_open(d, "kw");
	assert_true(blk_is(y, 0, 1));
	assert_true(blk_is(y, 1, 0));

	shma_close(&x);
	shma_close(&y);
	shma_disconnect(&c);
	shma_disconnect(&d);
	tclient_close(&t);
	it_stop(&broker);
}

/* ---- lost invalidations -------------------------------------------------------------- */

static void test_lost_invalidations_resync(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *xb, *sb;
	struct shma_conn_stats s0, s1;
	uint64_t r1 = 0, r2 = 0, r3 = 0, r4 = 0, r5 = 0, rev = 0;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	stream_pair("li", 8 * BS, &a, &b, &xa, &sb);
	xb = array_open(b, "li");

	/* a gap: of r1, r2 only r2 arrives */
	s0 = stats_of(a);
	conn_debug_drop_invalidations(a, 1);
	blk_fill(xb, 1, 0x11);
	IT_OK(b, shma_commit(b, &r1));
	blk_fill(xb, 2, 0x22);
	IT_OK(b, shma_commit(b, &r2));
	await_heard(a, r2);
	assert_true(blk_is(xa, 1, 0)); /* still the snapshot */
	IT_OK(a, shma_sync(a, &rev));
	assert_int_equal(rev, r2);
	assert_true(blk_is(xa, 1, 0x11));
	assert_true(blk_is(xa, 2, 0x22));
	s1 = stats_of(a);
	assert_int_equal(s1.resyncs - s0.resyncs, 1);
	assert_int_equal(s1.invalidations, s0.invalidations);

	/* all lost: nothing heard, the sync asks the broker */
	conn_debug_drop_invalidations(a, 1);
	blk_fill(xb, 3, 0x33);
	IT_OK(b, shma_commit(b, &r3));
	for (int i = 0; i < 100; i++) { /* until the message was dropped */
		IT_OK(a, shma_poll(a, &rev));
		if (a->drop_next == 0)
			break;
		it_sleep_ms(5);
	}
	assert_int_equal(a->drop_next, 0);
	assert_int_equal(rev, r2);
	IT_OK(a, shma_sync(a, &rev));
	assert_int_equal(rev, r3);
	assert_true(blk_is(xa, 3, 0x33));
	s0 = stats_of(a);
	assert_int_equal(s0.resyncs - s1.resyncs, 1);
	assert_int_equal(s0.invalidations, s1.invalidations);

	/* nothing lost, the stream caught up: the sync uses it */
	blk_fill(xb, 4, 0x44);
	IT_OK(b, shma_commit(b, &r4));
	blk_ptr(xb, 1)[0] = 0x55;
	IT_OK(b, shma_commit(b, &r5));
	await_heard(a, r5);
	IT_OK(a, shma_sync(a, &rev));
	assert_int_equal(rev, r5);
	assert_true(blk_is(xa, 4, 0x44));
	assert_int_equal(blk_ptr(xa, 1)[0], 0x55);
	assert_int_equal(blk_ptr(xa, 1)[1], 0x11);
	s1 = stats_of(a);
	assert_int_equal(s1.invalidations - s0.invalidations, 2);
	assert_int_equal(s1.resyncs, s0.resyncs);
	(void)r4;

	stream_pair_end(&a, &b, &xa, &sb, &xb);
}

/* A connection that neither syncs nor polls while thousands of batches are
 * published keeps only a bounded backlog of them (libshm's receive queue;
 * past it the broker drops its messages).  It cannot trust what it heard of
 * then: its poll asks the broker for the newest revision, and its sync lands
 * there with the right data; after that the stream serves it again. */
static void test_idle_subscriber_backlog(void **state)
{
	enum { NCOMMITS = 3000, NBLK = 8 };
	shma_conn *a, *b;
	shma_array *xa, *xb, *sb;
	struct shma_conn_stats s0, s1;
	uint64_t last[NBLK] = { 0 }, r = 0, rev = 0;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	stream_pair("ib", NBLK * BS, &a, &b, &xa, &sb);
	xb = array_open(b, "ib");

	s0 = stats_of(a);
	for (uint64_t i = 1; i <= NCOMMITS; i++) { /* one batch each: b waits for its reply */
		memcpy(blk_ptr(xb, i % NBLK), &i, sizeof(i));
		IT_OK(b, shma_commit(b, &r));
		last[i % NBLK] = i;
	}
	IT_OK(a, shma_poll(a, &rev)); /* it asks the broker: the stream missed some */
	assert_int_equal(rev, r);
	IT_OK(a, shma_sync(a, &rev));
	assert_int_equal(rev, r);
	for (uint64_t k = 0; k < NBLK; k++) {
		uint64_t v;

		memcpy(&v, blk_ptr(xa, k), sizeof(v));
		assert_int_equal(v, last[k]);
	}
	s1 = stats_of(a);
	assert_int_equal(s1.resyncs - s0.resyncs, 1);
	assert_true(s1.invalidations - s0.invalidations < NCOMMITS);

	/* the stream again: one more commit is applied from it */
	blk_ptr(xb, 0)[0] = 0x5a;
	IT_OK(b, shma_commit(b, &r));
	await_heard(a, r);
	IT_OK(a, shma_sync(a, &rev));
	assert_int_equal(rev, r);
	assert_int_equal(blk_ptr(xa, 0)[0], 0x5a);
	s0 = stats_of(a);
	assert_int_equal(s0.resyncs, s1.resyncs);
	assert_int_equal(s0.invalidations - s1.invalidations, 1);

	stream_pair_end(&a, &b, &xa, &sb, &xb);
}

/* A commit of a's block 0, byte 0 = v, on a thread of its own. */
struct bi_commit {
	shma_conn *a;
	shma_array *xa;
	unsigned char v;
	int err;
	uint64_t rev;
};

static void *bi_commit_run(void *arg)
{
	struct bi_commit *bc = arg;

	blk_ptr(bc->xa, 0)[0] = bc->v;
	bc->err = shma_commit(bc->a, &bc->rev);
	return NULL;
}

/* The broker publishes the commits of one batch as one message covering
 * their revisions (prev, revision].  One that starts at the snapshot is
 * applied from the stream, whatever number of revisions it covers; one
 * that starts before it (this connection's own commit was in the batch)
 * is not: the sync asks the broker, and an uncommitted change to a block
 * the connection itself committed in that batch does not conflict.  Two
 * raw clients commit at once, with or without this connection in between,
 * until both kinds of message were seen. */
static void test_batched_invalidations(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *sb;
	struct tclient r[2];
	bool seen_joined = false, seen_straddle = false;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	stream_pair("bi", 4 * BS, &a, &b, &xa, &sb);
	for (int i = 0; i < 2; i++) {
		it_open_client(&r[i], &broker);
		it_sync_head(&r[i]);
	}

	for (uint32_t round = 1; round <= 50 && !(seen_joined && seen_straddle); round++) {
		bool with_a = round % 2 == 0;
		uint64_t ra = 0, rev[2], newest, snap;
		struct shma_conn_stats s0, s1;
		struct bi_commit ac = { a, xa, (unsigned char)round, 0, 0 };
		pthread_t th;
		json_t *m;

		/* the broker is held while the commits are sent, so that one
		 * batch takes them all: r[0]'s, this connection's, r[1]'s */
		assert_int_equal(kill(broker.pid, SIGSTOP), 0);
		for (int i = 0; i < 2; i++) {
			char text[256];
			int fd = it_pages_memfd(round * 2 + (uint32_t)i, 0, 1);
			int n = snprintf(text, sizeof(text),
					 "{\"op\":\"commit\",\"arrays\":[{\"name\":\"bi\",\"blocks\":"
					 "[{\"blk\":%d,\"runs\":[[0,1]],\"data\":0}]}]}", i + 1);

			assert_int_equal(tclient_send_raw(&r[i], text, (size_t)n, &fd, 1), 0);
			close(fd);
			if (i == 0 && with_a) {
				assert_int_equal(pthread_create(&th, NULL, bi_commit_run, &ac), 0);
				it_sleep_ms(100); /* its request is sent, its reply awaited */
			}
		}
		assert_int_equal(kill(broker.pid, SIGCONT), 0);
		if (with_a) {
			assert_int_equal(pthread_join(th, NULL), 0);
			IT_OK(a, ac.err);
			ra = ac.rev;
		}
		for (int i = 0; i < 2; i++)
			rev[i] = (uint64_t)it_commit_revision(tclient_recv(&r[i], 10000, NULL, NULL));
		newest = rev[0] > rev[1] ? rev[0] : rev[1];
		newest = ra > newest ? ra : newest;
		await_heard(a, newest);
		snap = a->snap;
		/* the first message past the snapshot (none if this connection's
		 * commit was the newest) */
		m = json_array_get(a->pending, 0);
		bool straddles = m && (uint64_t)json_integer_value(json_object_get(m, "prev")) < snap;
		bool joined = m && !straddles &&
			      json_integer_value(json_object_get(m, "revision")) -
			      json_integer_value(json_object_get(m, "prev")) > 1;

		if (with_a)
			blk_ptr(xa, 0)[1] = (unsigned char)round; /* uncommitted */
		s0 = stats_of(a);
		IT_OK(a, shma_sync(a, &newest));
		s1 = stats_of(a);
		assert_true(newest >= rev[0] && newest >= rev[1]);
		for (int i = 0; i < 2; i++)
			assert_true(it_page_is(blk_ptr(xa, (uint64_t)i + 1), round * 2 + (uint32_t)i, 0));
		if (straddles) {
			assert_int_equal(s1.resyncs - s0.resyncs, 1);
			assert_int_equal(s1.invalidations, s0.invalidations);
			seen_straddle = true;
		} else if (joined) {
			assert_int_equal(s1.resyncs, s0.resyncs);
			assert_true(s1.invalidations > s0.invalidations);
			seen_joined = true;
		}
		if (with_a) { /* the change to block 0 commits: no conflict */
			IT_OK(a, shma_commit(a, &ra));
			assert_int_equal(blk_ptr(xa, 0)[0], (unsigned char)round);
			assert_int_equal(blk_ptr(xa, 0)[1], (unsigned char)round);
		}
	}
	assert_true(seen_joined);
	assert_true(seen_straddle);

	for (int i = 0; i < 2; i++)
		tclient_close(&r[i]);
	stream_pair_end(&a, &b, &xa, &sb, NULL);
}

/* shma_sync without a revision goes to the newest revision heard of; when
 * the stream lags and retention has already dropped that one, the sync must
 * still succeed (the broker's newest), not fail with SHMA_ENOTKEPT: the
 * caller asked for no revision in particular.  The lag is made with the
 * test hook (the later invalidations are dropped, as if not yet arrived). */
static void test_sync_heard_revision_dropped(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *xb, *sb;
	uint64_t r1 = 0, r = 0, rev = 0;
	int err;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, "{\"retention\":{\"revisions\":2,\"seconds\":0}}");
	stream_pair("kept", 8 * BS, &a, &b, &xa, &sb);
	xb = array_open(b, "kept");

	blk_fill(xb, 0, 1);
	IT_OK(b, shma_commit(b, &r1));
	await_heard(a, r1);
	conn_debug_drop_invalidations(a, 4);
	for (int k = 1; k <= 4; k++) {
		blk_fill(xb, (uint64_t)k, (unsigned char)(k + 1));
		IT_OK(b, shma_commit(b, &r));
	}
	for (int i = 0; i < 200 && a->drop_next; i++) {
		IT_OK(a, shma_poll(a, &rev));
		it_sleep_ms(5);
	}
	assert_int_equal(a->drop_next, 0);
	assert_int_equal(rev, r1); /* heard of r1 only; r1 is no longer kept */

	err = shma_sync(a, &rev);
	if (err)
		fprintf(stderr, "BUG: shma_sync: %s (%s)\n", shma_strerror(err), shma_conn_error(a));
	assert_int_equal(err, 0);
	assert_true(rev >= r1);
	assert_true(blk_is(xa, 0, 1));
	IT_OK(a, shma_sync(a, &rev));
	assert_int_equal(rev, r);
	assert_true(blk_is(xa, 4, 5));

	stream_pair_end(&a, &b, &xa, &sb, &xb);
}

/* ---- the broker killed and restarted -------------------------------------------------- */

static void test_broker_killed_reconnect(void **state)
{
	shma_conn *c;
	shma_array *x, *x2;
	struct shma_array_info info;
	uint64_t rev = 0, n = 2 * BS, shape = 4 * BS;
	unsigned char *p;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, "{\"data_dir\":false}"); /* a restart forgets everything */
	c = conn_open(NULL);
	array_create(c, "gone", 4 * BS);
	x = array_open(c, "gone");
	blk_fill(x, 0, 7);
	blk_fill(x, 1, 8);
	IT_OK(c, shma_commit(c, NULL));
	assert_true(blk_is(x, 0, 7)); /* mapped from the pool */
	assert_true(blk_is(x, 1, 8));

	harness_kill(&broker);
	p = shma_array_data(x);
	p[2 * BS] = 1; /* a change that can never be committed */
	assert_int_equal(shma_sync(c, NULL), SHMA_EDISCONNECTED);
	assert_true(strlen(shma_conn_error(c)) > 0);
	assert_int_equal(shma_commit(c, NULL), SHMA_EDISCONNECTED);
	assert_int_equal(shma_sync_to(c, 1), SHMA_EDISCONNECTED);
	assert_int_equal(shma_poll(c, &rev), SHMA_EDISCONNECTED);
	assert_int_equal(shma_create(c, "other", "|u1", 1, &n, 'C', 0, NULL), SHMA_EDISCONNECTED);
	assert_int_equal(shma_delete(c, "gone", NULL), SHMA_EDISCONNECTED);
	{
		shma_array *z = NULL;

		assert_int_equal(shma_open(c, "other", &z), SHMA_EDISCONNECTED);
		assert_null(z);
	}
	IT_OK(c, shma_abort(c)); /* local only */
	p[2 * BS] = 1;	      /* again: reconnect drops it */
	assert_int_equal(shma_reconnect(c), SHMA_EDISCONNECTED); /* no broker yet */
	/* committed data already mapped stays readable */
	assert_true(blk_is(x, 0, 7));
	assert_true(blk_is(x, 1, 8));

	/* a fresh in-memory broker on the same socket: the array is gone */
	assert_int_equal(harness_restart(&broker), 0); /* same socket path */
	IT_OK(c, shma_reconnect(c));
	shma_array_info(x, &info);
	assert_true(info.deleted);
	assert_true(read_gets_sigbus(blk_ptr(x, 0)));
	assert_int_equal(shma_fileh_dirty_blocks(x->fh, NULL, 0), 0);

	/* and the connection works: create it again, open, commit */
	IT_OK(c, shma_create(c, "gone", "|u1", 1, &shape, 'C', 0, &rev));
	IT_OK(c, shma_sync_to(c, rev));
	x2 = array_open(c, "gone");
	shma_array_info(x2, &info);
	assert_false(info.deleted);
	assert_int_equal(info.nbytes, 4 * BS);
	assert_true(blk_is(x2, 0, 0));
	blk_fill(x2, 3, 3);
	IT_OK(c, shma_commit(c, &rev));
	assert_true(blk_is(x2, 3, 3));
	{
		shma_conn *d = conn_open(NULL);
		shma_array *y = array_open(d, "gone");

		assert_true(blk_is(y, 3, 3));
		assert_true(blk_is(y, 0, 0));
		shma_close(&y);
		shma_disconnect(&d);
	}

	shma_close(&x2);
	shma_close(&x);
	shma_disconnect(&c);
	it_stop(&broker);
}

/* ---- threads: readers never see a block change outside a boundary ---------------- */

#define TH_BLOCKS 8
#define TH_READERS 3

struct threads {
	const volatile uint64_t *data; /* R's mapping */
	atomic_uint gen;	       /* odd while R syncs */
	atomic_bool stop;
	atomic_ulong scans, windows, torn, backwards, changes, maxval;
	shma_conn *r, *w;
	shma_array *xw;
	atomic_ulong commits, syncs, notkept;
	atomic_int err;
};

/* Not instrumented by TSan: it counts the fault handler's mmap of a block as
 * a write racing with these reads (see tests/tsan.supp), and cannot always
 * restore that stack to match the suppression.  What readers see is checked
 * here. */
#if UNDER_TSAN
__attribute__((no_sanitize("thread")))
#endif
/* A durable broker killed and restarted: the committed array is back with
 * its data, the uncommitted change is dropped, revisions go on. */
static void test_broker_killed_durable(void **state)
{
	shma_conn *c;
	shma_array *x;
	struct shma_array_info info;
	uint64_t rev = 0, rev2 = 0;
	unsigned char *p;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	c = conn_open(NULL);
	array_create(c, "kept", 4 * BS);
	x = array_open(c, "kept");
	blk_fill(x, 0, 7);
	blk_fill(x, 1, 8);
	IT_OK(c, shma_commit(c, &rev));

	harness_kill(&broker);
	p = shma_array_data(x);
	p[2 * BS] = 1; /* never committed */
	assert_int_equal(shma_commit(c, NULL), SHMA_EDISCONNECTED);
	assert_int_equal(harness_restart(&broker), 0); /* same socket path */
	IT_OK(c, shma_reconnect(c));
	shma_array_info(x, &info);
	assert_false(info.deleted);
	assert_int_equal(info.nbytes, 4 * BS);
	assert_int_equal(shma_fileh_dirty_blocks(x->fh, NULL, 0), 0);
	assert_true(blk_is(x, 0, 7));
	assert_true(blk_is(x, 1, 8));
	assert_true(blk_is(x, 2, 0));
	blk_fill(x, 3, 3);
	IT_OK(c, shma_commit(c, &rev2));
	assert_int_equal(rev2, rev + 1);
	shma_disconnect(&c);
	it_stop(&broker);
}

static void *th_reader(void *arg)
{
	struct threads *t = arg;
	const size_t nwords = TH_BLOCKS * BS / 8;
	uint64_t last = 0;

	while (!atomic_load(&t->stop)) {
		unsigned g0 = atomic_load(&t->gen), g1;
		uint64_t v0 = t->data[0];
		bool uniform = true;

		for (size_t i = 0; i < nwords; i++)
			if (t->data[i] != v0)
				uniform = false;
		atomic_thread_fence(memory_order_acquire);
		g1 = atomic_load(&t->gen);
		atomic_fetch_add(&t->scans, 1);
		if (g0 != g1 || (g0 & 1))
			continue; /* a sync overlapped: a block may change between reads */
		atomic_fetch_add(&t->windows, 1);
		if (!uniform)
			atomic_fetch_add(&t->torn, 1);
		if (v0 < last)
			atomic_fetch_add(&t->backwards, 1);
		if (v0 != last)
			atomic_fetch_add(&t->changes, 1);
		last = v0;
	}
	return NULL;
}

/* Another connection of this process commits revision after revision, each
 * filling every block with one value k. */
static void *th_committer(void *arg)
{
	struct threads *t = arg;
	uint64_t *p = shma_array_data(t->xw);

	for (uint64_t k = 2; !atomic_load(&t->stop); k++) {
		for (size_t i = 0; i < TH_BLOCKS * BS / 8; i++)
			p[i] = k;
		int err = shma_commit(t->w, NULL);

		if (err) {
			atomic_store(&t->err, err);
			break;
		}
		atomic_fetch_add(&t->commits, 1);
		atomic_store(&t->maxval, k);
	}
	return NULL;
}

/* R's transaction boundaries, while its readers read. */
static void *th_syncer(void *arg)
{
	struct threads *t = arg;

	while (!atomic_load(&t->stop)) {
		int err;

		it_sleep_ms(3);
		atomic_fetch_add(&t->gen, 1);
		err = shma_sync(t->r, NULL);
		atomic_fetch_add(&t->gen, 1);
		if (err == SHMA_ENOTKEPT) {
			/* the stream lagged behind retention: a known bug, tested by
			 * test_sync_heard_revision_dropped; the next sync goes on */
			atomic_fetch_add(&t->notkept, 1);
			continue;
		}
		if (err) {
			atomic_store(&t->err, err);
			break;
		}
		atomic_fetch_add(&t->syncs, 1);
	}
	return NULL;
}

static void test_threads_read_during_commits(void **state)
{
	static struct threads t;
	pthread_t readers[TH_READERS], committer, syncer;
	shma_array *xr;
	uint64_t rev = 0, last;

	(void)state;
	shma_vm_install_handler();
	/* many commits of 512 KiB: keep few revisions, or the pool fills */
	it_start(&broker, "{\"retention\":{\"revisions\":32,\"seconds\":0}}");
	memset(&t, 0, sizeof(t));
	t.w = conn_open(NULL);
	t.r = conn_open(NULL);
	array_create(t.w, "th", TH_BLOCKS * BS);
	t.xw = array_open(t.w, "th");
	for (size_t i = 0; i < TH_BLOCKS * BS / 8; i++)
		((uint64_t *)shma_array_data(t.xw))[i] = 1;
	IT_OK(t.w, shma_commit(t.w, &rev));
	IT_OK(t.r, shma_sync_to(t.r, rev));
	xr = array_open(t.r, "th");
	t.data = shma_array_data(xr);
	assert_int_equal(t.data[0], 1);

	for (int i = 0; i < TH_READERS; i++)
		assert_int_equal(pthread_create(&readers[i], NULL, th_reader, &t), 0);
	/* first, commits only: R's memory must not change at all */
	assert_int_equal(pthread_create(&committer, NULL, th_committer, &t), 0);
	it_sleep_ms(300);
	assert_int_equal(atomic_load(&t.changes), TH_READERS); /* 0 -> 1 once each */
	assert_int_equal(t.data[TH_BLOCKS * BS / 8 - 1], 1);
	/* then R syncs too */
	assert_int_equal(pthread_create(&syncer, NULL, th_syncer, &t), 0);
	it_sleep_ms(1200);
	atomic_store(&t.stop, true);
	pthread_join(committer, NULL);
	pthread_join(syncer, NULL);
	for (int i = 0; i < TH_READERS; i++)
		pthread_join(readers[i], NULL);

	fprintf(stderr, "threads: %lu commits, %lu syncs (%lu SHMA_ENOTKEPT), %lu scans (%lu in "
		"stable windows), %lu changes seen, %lu torn, %lu backwards\n",
		atomic_load(&t.commits), atomic_load(&t.syncs), atomic_load(&t.notkept),
		atomic_load(&t.scans),
		atomic_load(&t.windows), atomic_load(&t.changes), atomic_load(&t.torn),
		atomic_load(&t.backwards));
	assert_int_equal(atomic_load(&t.err), 0);
	assert_int_equal(atomic_load(&t.torn), 0);
	assert_int_equal(atomic_load(&t.backwards), 0);
	assert_true(atomic_load(&t.commits) >= 3);
	assert_true(atomic_load(&t.syncs) >= 3);
	assert_true(atomic_load(&t.changes) > TH_READERS); /* syncs were seen */

	IT_OK(t.r, shma_sync(t.r, &rev));
	last = atomic_load(&t.maxval);
	IT_OK(t.r, shma_sync_to(t.r, shma_revision(t.w)));
	for (size_t i = 0; i < TH_BLOCKS * BS / 8; i++)
		if (t.data[i] != last)
			fail_msg("word %zu: %" PRIu64 ", want %" PRIu64, i, t.data[i], last);

	shma_close(&xr);
	shma_close(&t.xw);
	shma_disconnect(&t.r);
	shma_disconnect(&t.w);
	it_stop(&broker);
}

/* ---- fork ------------------------------------------------------------------------------ */

struct fork_arg {
	shma_conn *c;
	shma_array *x;
};

/* The child of a process with a connection: memory yes, calls no. */
static int fork_child(int in, int out, void *argp)
{
	struct fork_arg *arg = argp;
	shma_conn *c = arg->c;
	shma_array *x = arg->x, *z = NULL;
	struct shma_array_info info;
	uint64_t rev = 0, n = BS, shape = 8 * BS;
	unsigned char *p = shma_array_data(x);

	(void)in;
	IT_CHECK(p[0] == 5);	  /* mapped in the parent */
	IT_CHECK(p[BS] == 6);	  /* committed, never touched by the parent */
	IT_CHECK(p[2 * BS] == 0);	  /* a hole */
	IT_CHECK(p[3 * BS + 9] == 9); /* the parent's uncommitted change */
	p[5] = 55;		  /* the child's own copy */
	IT_CHECK(p[5] == 55);
	IT_CHECK(shma_commit(c, &rev) == SHMA_EFORKED);
	IT_CHECK(shma_sync(c, &rev) == SHMA_EFORKED);
	IT_CHECK(shma_sync_to(c, 1) == SHMA_EFORKED);
	IT_CHECK(shma_abort(c) == SHMA_EFORKED);
	IT_CHECK(shma_open(c, "f", &z) == SHMA_EFORKED && z == NULL);
	IT_CHECK(shma_poll(c, &rev) == SHMA_EFORKED);
	IT_CHECK(shma_create(c, "g", "|u1", 1, &n, 'C', 0, NULL) == SHMA_EFORKED);
	IT_CHECK(shma_delete(c, "f", NULL) == SHMA_EFORKED);
	IT_CHECK(shma_resize(x, 1, &shape) == SHMA_EFORKED);
	IT_CHECK(shma_reconnect(c) == SHMA_EFORKED);
	shma_array_info(x, &info);
	IT_CHECK(info.nbytes == 4 * BS);
	shma_close(&x);
	IT_CHECK(x == NULL);
	shma_disconnect(&c);
	IT_CHECK(c == NULL);
	msg_send(out, 1);
	return 0;
}

static void test_fork(void **state)
{
	struct fork_arg arg;
	struct child ch;
	shma_conn *c, *d;
	shma_array *x, *y, *g;
	uint64_t rev = 0, before, newest = 0;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	c = conn_open(NULL);
	d = conn_open(NULL);
	array_create(c, "f", 4 * BS);
	x = array_open(c, "f");
	blk_fill(x, 0, 5);
	blk_fill(x, 1, 6);
	IT_OK(c, shma_commit(c, NULL));
	assert_int_equal(blk_ptr(x, 0)[0], 5);
	blk_ptr(x, 3)[9] = 9; /* uncommitted */
	before = shma_revision(c);

	arg.c = c;
	arg.x = x;
	child_start(&ch, fork_child, &arg);
	assert_int_equal(child_expect(&ch), 1);
	child_done(&ch);

	/* the parent is undisturbed */
	assert_int_equal(shma_revision(c), before);
	assert_int_equal(blk_ptr(x, 0)[5], 5);
	assert_int_equal(blk_ptr(x, 3)[9], 9);
	IT_OK(c, shma_poll(c, &newest));
	IT_OK(c, shma_sync(c, NULL));
	blk_ptr(x, 2)[0] = 2;
	IT_OK(c, shma_commit(c, &rev));
	assert_true(rev > before);
	rev = array_create(c, "f2", BS);
	g = array_open(c, "f2");
	shma_close(&g);

	IT_OK(d, shma_sync_to(d, rev));
	y = array_open(d, "f");
	assert_int_equal(blk_ptr(y, 3)[9], 9);
	assert_int_equal(blk_ptr(y, 2)[0], 2);
	assert_int_equal(blk_ptr(y, 0)[5], 5);

	shma_close(&x);
	shma_close(&y);
	shma_disconnect(&c);
	shma_disconnect(&d);
	it_stop(&broker);
}

/* ---- resize ------------------------------------------------------------------------------- */

static void test_resize(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *xb;
	struct shma_array_info info;
	uint64_t shape, rev = 0;
	unsigned char *p;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	a = conn_open(NULL);
	b = conn_open(NULL);
	array_create(a, "rs", 4 * BS);
	IT_OK(b, shma_sync(b, NULL));
	xa = array_open(a, "rs");
	xb = array_open(b, "rs");
	blk_fill(xa, 2, 0x77);
	IT_OK(a, shma_commit(a, NULL));

	/* grow, write the new part, commit */
	shape = 8 * BS;
	IT_OK(a, shma_resize(xa, 1, &shape));
	shma_array_info(xa, &info);
	assert_int_equal(info.shape[0], 8 * BS);
	assert_int_equal(info.nblocks, 8);
	for (uint64_t k = 5; k < 8; k++)
		blk_fill(xa, k, (unsigned char)(0x50 + k));
	assert_true(blk_is(xa, 4, 0));
	IT_OK(a, shma_commit(a, &rev));

	shma_array_info(xb, &info);
	assert_int_equal(info.shape[0], 4 * BS); /* B's snapshot */
	IT_OK(b, shma_sync_to(b, rev));
	shma_array_info(xb, &info);
	assert_int_equal(info.ndim, 1);
	assert_int_equal(info.shape[0], 8 * BS);
	assert_int_equal(info.nbytes, 8 * BS);
	assert_int_equal(info.nblocks, 8);
	assert_true(blk_is(xb, 2, 0x77));
	assert_true(blk_is(xb, 4, 0));
	for (uint64_t k = 5; k < 8; k++)
		assert_true(blk_is(xb, k, (unsigned char)(0x50 + k)));

	/* shrink cuts: blocks past the end go, the tail of the last is zeroed */
	shape = 2 * BS + 100;
	IT_OK(a, shma_resize(xa, 1, &shape));
	IT_OK(a, shma_commit(a, NULL));
	IT_OK(b, shma_sync(b, NULL));
	shma_array_info(xb, &info);
	assert_int_equal(info.shape[0], 2 * BS + 100);
	assert_int_equal(info.nblocks, 3);
	p = shma_array_data(xb);
	assert_int_equal(p[2 * BS + 99], 0x77);
	assert_true(read_gets_sigbus(p + 3 * BS));
	assert_true(read_gets_sigbus(p + 7 * BS));
	assert_true(read_gets_sigbus(blk_ptr(xa, 5)));

	/* grow again: what was cut reads as zeros */
	shape = 8 * BS;
	IT_OK(a, shma_resize(xa, 1, &shape));
	IT_OK(a, shma_commit(a, NULL));
	IT_OK(b, shma_sync(b, NULL));
	p = shma_array_data(xb);
	assert_int_equal(p[2 * BS + 99], 0x77);
	for (size_t i = 2 * BS + 100; i < 3 * BS; i++)
		assert_int_equal(p[i], 0);
	for (uint64_t k = 3; k < 8; k++)
		assert_true(blk_is(xb, k, 0));
	assert_true(blk_is(xa, 7, 0));

	/* a 2-d shape */
	{
		uint64_t sh2[2] = { 4, 2 * BS };

		IT_OK(a, shma_resize(xa, 2, sh2));
		IT_OK(a, shma_commit(a, NULL));
		IT_OK(b, shma_sync(b, NULL));
		shma_array_info(xb, &info);
		assert_int_equal(info.ndim, 2);
		assert_int_equal(info.shape[0], 4);
		assert_int_equal(info.shape[1], 2 * BS);
		assert_int_equal(info.nbytes, 8 * BS);
	}

	shma_close(&xa);
	shma_close(&xb);
	shma_disconnect(&a);
	shma_disconnect(&b);
	it_stop(&broker);
}

static void test_resize_conflicts(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *xb;
	struct shma_array_info info;
	uint64_t shape;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	a = conn_open(NULL);
	b = conn_open(NULL);
	array_create(a, "rc", 4 * BS);
	IT_OK(b, shma_sync(b, NULL));
	xa = array_open(a, "rc");
	xb = array_open(b, "rc");

	/* data first, then a resize from the older snapshot */
	blk_fill(xb, 0, 1);
	IT_OK(b, shma_commit(b, NULL));
	shape = 8 * BS;
	IT_OK(a, shma_resize(xa, 1, &shape));
	assert_int_equal(shma_commit(a, NULL), SHMA_ECONFLICT);
	fprintf(stderr, "conflict message: %s\n", shma_conn_error(a));
	assert_non_null(strstr(shma_conn_error(a), "rc"));
	IT_OK(a, shma_abort(a));
	shma_array_info(xa, &info);
	assert_int_equal(info.shape[0], 4 * BS);
	IT_OK(a, shma_sync(a, NULL));
	IT_OK(a, shma_resize(xa, 1, &shape));
	IT_OK(a, shma_commit(a, NULL));

	/* a resize first, then data from the older snapshot */
	blk_fill(xb, 1, 2);
	assert_int_equal(shma_commit(b, NULL), SHMA_ECONFLICT);
	fprintf(stderr, "conflict message: %s\n", shma_conn_error(b));
	IT_OK(b, shma_abort(b));
	IT_OK(b, shma_sync(b, NULL));
	shma_array_info(xb, &info);
	assert_int_equal(info.shape[0], 8 * BS);
	blk_fill(xb, 1, 2);
	IT_OK(b, shma_commit(b, NULL));

	/* the data change seen by a sync during a resize: the commit conflicts */
	IT_OK(a, shma_sync(a, NULL));
	shape = 6 * BS;
	IT_OK(a, shma_resize(xa, 1, &shape));
	shape = 5 * BS;
	IT_OK(b, shma_resize(xb, 1, &shape));
	IT_OK(b, shma_commit(b, NULL));
	IT_OK(a, shma_sync(a, NULL)); /* both changed the shape */
	assert_int_equal(shma_commit(a, NULL), SHMA_ECONFLICT);
	IT_OK(a, shma_abort(a));
	IT_OK(a, shma_sync(a, NULL));
	shma_array_info(xa, &info);
	assert_int_equal(info.shape[0], 5 * BS);

	shma_close(&xa);
	shma_close(&xb);
	shma_disconnect(&a);
	shma_disconnect(&b);
	it_stop(&broker);
}

/* ---- delete and re-create -------------------------------------------------------------- */

static void test_delete_recreate(void **state)
{
	shma_conn *a, *b;
	shma_array *xa, *xa2, *xb;
	struct shma_array_info info;
	uint64_t rev = 0, shape = 2 * BS;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	a = conn_open(NULL);
	b = conn_open(NULL);
	array_create(a, "dr", 4 * BS);
	xa = array_open(a, "dr");
	blk_fill(xa, 0, 1);
	blk_fill(xa, 1, 1);
	IT_OK(a, shma_commit(a, NULL));
	assert_true(blk_is(xa, 0, 1)); /* block 0 mapped, block 1 not yet */

	/* B deletes it; A's snapshot still has it */
	IT_OK(b, shma_delete(b, "dr", &rev));
	assert_true(blk_is(xa, 0, 1));
	shma_array_info(xa, &info);
	assert_false(info.deleted);

	IT_OK(a, shma_sync(a, NULL));
	assert_true(shma_revision(a) >= rev);
	shma_array_info(xa, &info);
	assert_true(info.deleted);
	assert_true(read_gets_sigbus(blk_ptr(xa, 0)));
	assert_true(read_gets_sigbus(blk_ptr(xa, 1)));
	assert_int_equal(shma_open(a, "dr", &xa2), -ENOENT);

	/* re-created (another shape), with data */
	IT_OK(b, shma_create(b, "dr", "|u1", 1, &shape, 'C', 0, &rev));
	IT_OK(b, shma_sync_to(b, rev));
	xb = array_open(b, "dr");
	assert_true(blk_is(xb, 0, 0));
	blk_fill(xb, 1, 9);
	IT_OK(b, shma_commit(b, &rev));

	IT_OK(a, shma_sync_to(a, rev));
	xa2 = array_open(a, "dr");
	shma_array_info(xa2, &info);
	assert_false(info.deleted);
	assert_int_equal(info.nbytes, 2 * BS);
	assert_int_equal(info.nblocks, 2);
	assert_true(blk_is(xa2, 0, 0));
	assert_true(blk_is(xa2, 1, 9));
	blk_ptr(xa2, 0)[0] = 3;
	IT_OK(a, shma_commit(a, NULL));
	IT_OK(b, shma_sync(b, NULL));
	assert_int_equal(blk_ptr(xb, 0)[0], 3);

	shma_close(&xa2);
	shma_close(&xa);
	shma_close(&xb);
	shma_disconnect(&a);
	shma_disconnect(&b);
	it_stop(&broker);
}

/* ---- the budget of mapped blocks ------------------------------------------------------- */

static void test_budget_max_pages(void **state)
{
	const uint64_t nblk = 64;
	struct shma_conn_options o = { .max_pages = 8 };
	struct shma_ram_stats rs;
	shma_conn *w, *c, *ctl;
	shma_array *xw, *x, *xc;
	int v0, v1, vmax = 0;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	w = conn_open(NULL);
	array_create(w, "budget", nblk * BS);
	xw = array_open(w, "budget");
	/* one block per commit, last first: slots are not adjacent in the pool
	 * in the order of the blocks, so mappings cannot merge into one VMA */
	for (uint64_t k = nblk; k-- > 0;) {
		blk_fill(xw, k, (unsigned char)(k + 1));
		IT_OK(w, shma_commit(w, NULL));
	}

	/* the control: without a budget every block costs a VMA */
	ctl = conn_open(NULL);
	xc = array_open(ctl, "budget");
	v0 = vma_count();
	for (uint64_t k = 0; k < nblk; k++)
		assert_int_equal(blk_ptr(xc, k)[k], (unsigned char)(k + 1));
	v1 = vma_count();
	fprintf(stderr, "budget: no budget: VMAs %d -> %d\n", v0, v1);
	assert_true(v1 - v0 >= (int)nblk / 2);
	shma_close(&xc);
	shma_disconnect(&ctl);

	c = conn_open(&o);
	x = array_open(c, "budget");
	v0 = vma_count();
	for (int pass = 0; pass < 2; pass++)
		for (uint64_t k = 0; k < nblk; k++) {
			assert_true(blk_is(x, k, (unsigned char)(k + 1)));
			if (k % 8 == 7) {
				int v = vma_count();

				vmax = v > vmax ? v : vmax;
			}
		}
	v1 = vma_count();
	shma_ram_stats(c->ram, &rs);
	fprintf(stderr, "budget: max_pages 8: VMAs %d -> %d (max %d), %zu pages, %zu reclaimed\n",
		v0, v1, vmax, rs.npages, rs.nreclaimed);
	assert_true(rs.npages <= 8);
	assert_true(rs.nreclaimed >= 2 * nblk - 8);
	assert_true(vmax - v0 <= 2 * 8 + 4);
	assert_true(v1 - v0 <= 2 * 8 + 4);

	shma_close(&x);
	shma_close(&xw);
	shma_disconnect(&c);
	shma_disconnect(&w);
	it_stop(&broker);
}

/* ---- prefault before system calls -------------------------------------------------------- */

static void test_prefault_syscalls(void **state)
{
	shma_conn *c, *d;
	shma_array *x, *y;
	unsigned char *buf, *p;
	struct shma_conn_stats s0;
	int fd;

	(void)state;
	shma_vm_install_handler();
	it_start(&broker, NULL);
	c = conn_open(NULL);
	array_create(c, "pf", 4 * BS);
	x = array_open(c, "pf");
	p = shma_array_data(x);
	for (size_t i = 0; i < BS; i++)
		p[BS + i] = (unsigned char)(i % 251);
	IT_OK(c, shma_commit(c, NULL));
	IT_OK(c, shma_sync(c, NULL));
	buf = malloc(BS);
	assert_non_null(buf);
	fd = memfd_create("pf", MFD_CLOEXEC);
	assert_true(fd >= 0);

	/* untouched: the kernel does not trap, it fails */
	p = shma_array_data(x);
	assert_false(shma_mapping_block_mapped(x->map, 1));
	errno = 0;
	assert_int_equal(pwrite(fd, p + BS, IT_PAGE, 0), -1);
	assert_int_equal(errno, EFAULT);

	/* prefault (read), then write(2) from the array */
	IT_OK(c, shma_prefault(p + BS, BS, 0));
	assert_true(shma_mapping_block_mapped(x->map, 1));
	assert_int_equal(pwrite(fd, p + BS, BS, 0), (ssize_t)BS);
	assert_int_equal(pread(fd, buf, BS, 0), (ssize_t)BS);
	for (size_t i = 0; i < BS; i++)
		assert_int_equal(buf[i], (unsigned char)(i % 251));

	/* prefault for writing, then read(2) into the array (a hole) */
	for (size_t i = 0; i < 2 * IT_PAGE; i++)
		buf[i] = (unsigned char)(i % 13 + 1);
	assert_int_equal(pwrite(fd, buf, 2 * IT_PAGE, 0), 2 * IT_PAGE);
	IT_OK(c, shma_prefault(p + 2 * BS + IT_PAGE, 2 * IT_PAGE, SHMA_PREFAULT_WRITE));
	assert_int_equal(pread(fd, p + 2 * BS + IT_PAGE, 2 * IT_PAGE, 0), 2 * IT_PAGE);
	/* and a range that is not in any mapping */
	assert_int_equal(shma_prefault(buf, 16, 0), SHMA_ENOTMAPPED);
	s0 = stats_of(c);
	IT_OK(c, shma_commit(c, NULL));
	assert_int_equal(stats_of(c).pages_sent - s0.pages_sent, 2);

	d = conn_open(NULL);
	y = array_open(d, "pf");
	p = blk_ptr(y, 2);
	for (size_t i = 0; i < BS; i++)
		assert_int_equal(p[i], i >= IT_PAGE && i < 3 * IT_PAGE
					       ? (unsigned char)((i - IT_PAGE) % 13 + 1) : 0);

	close(fd);
	free(buf);
	shma_close(&x);
	shma_close(&y);
	shma_disconnect(&c);
	shma_disconnect(&d);
	it_stop(&broker);
}

/* ---- read-only connections ----------------------------------------------------------------- */

static int ro_child(int in, int out, void *arg)
{
	shma_conn *c = NULL;
	shma_array *x = NULL;
	uint64_t n = BS;
	unsigned char *p;

	(void)in;
	(void)out;
	(void)arg;
	shma_vm_install_handler();
	IT_CHECK(setgroups(0, NULL) == 0);
	IT_CHECK(setgid(65534) == 0);
	IT_CHECK(setuid(65534) == 0);
	CHECK_OK(c, shma_connect(broker.socket, &child_opts, &c));
	IT_CHECK(!shma_writable(c));
	CHECK_OK(c, shma_open(c, "ro", &x));
	p = shma_array_data(x);
	IT_CHECK(p[0] == 4 && p[BS - 1] == 4);
	p[1] = 5; /* a private copy; it cannot be committed */
	IT_CHECK(shma_commit(c, NULL) == -EROFS);
	IT_CHECK(strlen(shma_conn_error(c)) > 0);
	IT_CHECK(shma_create(c, "ro2", "|u1", 1, &n, 'C', 0, NULL) == -EROFS);
	IT_CHECK(shma_delete(c, "ro", NULL) == -EROFS);
	CHECK_OK(c, shma_abort(c));
	IT_CHECK(p[1] == 4);
	CHECK_OK(c, shma_sync(c, NULL));
	shma_close(&x);
	shma_disconnect(&c);
	return 0;
}

static int denied_child(int in, int out, void *arg)
{
	shma_conn *c = NULL;
	int err;

	(void)in;
	(void)out;
	(void)arg;
	IT_CHECK(setgroups(0, NULL) == 0);
	IT_CHECK(setgid(65533) == 0);
	IT_CHECK(setuid(65533) == 0);
	/* the broker answers the hello with its refusal and closes: however
	 * the two race, the client must report the refusal */
	for (int i = 0; i < 20; i++) {
		err = shma_connect(broker.socket, &child_opts, &c);
		if (err != -EACCES)
			fprintf(stderr, "denied child: attempt %d: shma_connect: %d %s\n", i, err,
				shma_strerror(err));
		IT_CHECK(err == -EACCES);
		IT_CHECK(c == NULL);
	}
	return 0;
}

/* A broker that admits uid 65534 read-only, with a socket others can reach
 * (the harness's directory is 0700: opened up here). */
static bool start_access_broker(void)
{
	char run[400];

	if (geteuid() != 0)
		return false;
	it_start(&broker, "{\"access\":{\"ro_uids\":[65534]},\"socket\":{\"mode\":\"0666\"}}");
	snprintf(run, sizeof(run), "%s/run", broker.dir);
	assert_int_equal(chmod(broker.dir, 0755), 0);
	assert_int_equal(chmod(run, 0755), 0);
	return true;
}

static void test_readonly_connection(void **state)
{
	struct child ch;
	shma_conn *c;
	shma_array *x;

	(void)state;
	shma_vm_install_handler();
	if (!start_access_broker()) {
		skip(); /* needs root to run a child as another uid */
		return;
	}
	c = conn_open(NULL);
	assert_true(shma_writable(c)); /* the broker's own uid */
	array_create(c, "ro", 2 * BS);
	x = array_open(c, "ro");
	blk_fill(x, 0, 4);
	IT_OK(c, shma_commit(c, NULL));

	child_start(&ch, ro_child, NULL);
	child_done(&ch);

	/* nothing changed */
	IT_OK(c, shma_sync(c, NULL));
	assert_true(blk_is(x, 0, 4));
	assert_true(blk_is(x, 1, 0));
	shma_close(&x);
	shma_disconnect(&c);
	it_stop(&broker);
}

static void test_unlisted_uid_refused(void **state)
{
	struct child ch;

	(void)state;
	if (!start_access_broker()) {
		skip();
		return;
	}
	child_start(&ch, denied_child, NULL);
	child_done(&ch);
	it_stop(&broker);
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_isolation),
		T(test_isolation_processes),
		T(test_create_visible_after_sync),
		T(test_conflict_first_committer_wins),
		T(test_conflict_dirty_block_synced),
		T(test_holes_read_zero_cost_nothing),
		T(test_page_granular_commit),
		T(test_abort_discards),
		T(test_killed_writer_leaves_nothing),
		T(test_lost_invalidations_resync),
		T(test_idle_subscriber_backlog),
		T(test_batched_invalidations),
		T(test_sync_heard_revision_dropped),
		T(test_broker_killed_reconnect),
		T(test_broker_killed_durable),
		T(test_threads_read_during_commits),
		T(test_fork),
		T(test_resize),
		T(test_resize_conflicts),
		T(test_delete_recreate),
		T(test_budget_max_pages),
		T(test_prefault_syscalls),
		T(test_readonly_connection),
		T(test_unlisted_uid_refused),
	};

	return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
