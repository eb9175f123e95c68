/* test_bank.c - the bank test: isolation and atomicity of transactions under
 * concurrency and SIGKILL (libshm against a real shma-broker).
 *
 * One array holds N accounts, a row of four int64 each:
 *   balance, version (transfers that touched the account), partner (the other
 *   account of its last transfer, -1 if none), partner_version (the partner's
 *   version written by that same transfer).
 * K transfer workers (forked processes, each with its own connection) loop:
 * sync, pick two accounts (half the time in the same block), read both rows,
 * move an amount, write both rows (versions + 1, each naming the other), and
 * commit; on SHMA_ECONFLICT abort, sync and retry the same transfer.  C
 * checkers loop: sync, then at their snapshot check that
 *   - the sum of balances is the initial one, and is the same when summed
 *     again a little later (other commits never change memory under a
 *     snapshot);
 *   - every account shows a whole commit: the partner named by its last
 *     transfer has at least the version that transfer gave it, and if exactly
 *     that version, names the account back with its version (a half-applied
 *     commit breaks this);
 *   - no version goes back from one snapshot to the next.
 * The parent SIGKILLs a random transfer worker every 50-300 ms and starts a
 * new one in its place.
 *
 * It also SIGKILLs the broker every 0.5-2 s, leaves it dead for up to 250 ms
 * and starts it again on its durable store (harness_restart).  Children see
 * SHMA_EDISCONNECTED (a commit that gets it is "in doubt": it may or may not
 * be in the store) and connect again with backoff until the broker is back
 * (giving up after DOWN_LIMIT_MS).  Before any worker may commit to the
 * restarted broker (ctl->hold), the parent checks its head from a fresh
 * connection: the sum, the whole-commit rule, one revision per commit, and
 * acknowledged <= commits the data shows <= commits begun and not refused
 * (both counted in shared memory, read once the old broker is dead).  The
 * checkers' rule that no version goes back holds across restarts too: reads
 * see only revisions already in the store.
 *
 * At the end (SIGTERM: children finish their transaction and exit 0) a fresh
 * connection checks the final state: the sum, the whole-commit rule, and the
 * number of commits the data shows (sum of versions / 2) against the
 * revisions made and the commits the workers reported (a killed worker may
 * have one commit it could not report, a commit in doubt may be there or
 * not); the broker's stats must show only the live connections and their
 * pins (nothing left by killed workers); the broker must stop cleanly.  On a
 * failure the broker's log (all its lives) is kept as
 * $TMPDIR/shma-bank-<pid>.log.
 *
 * Children report through one pipe in fixed-size records (< PIPE_BUF, so
 * written atomically; the parent still only takes whole records).  They never
 * use cmocka; the teardown kills any child a failed test left.
 *
 * Environment: SHMA_BANK_SECONDS (default 4; tests/run-tests.sh sets 4, or 60
 * for make check-stress), SHMA_BANK_WORKERS (default 8), SHMA_BANK_CHECKERS
 * (default 2), SHMA_BANK_BROKER_KILLS (default 1; 0: kill workers only).
 */
#include "../integration/itest.h"

#include <execinfo.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <sys/prctl.h>

#include "shma.h"

#define NACC 4096u
#define ROW 4 /* int64 per account */
#define F_BAL 0
#define F_VER 1
#define F_PARTNER 2
#define F_PVER 3
#define BANK_BLOCK 4096u
#define ACC_PER_BLOCK (BANK_BLOCK / (ROW * 8))
#define ARRAY "bank/accounts"
#define MAX_CHILDREN 64
#define REC_MAGIC 0x62616e6bu /* "bank" */
#define MAX_REPORTS 3	      /* violation details printed per child */
#define DOWN_LIMIT_MS 10000   /* how long a child waits for a killed broker */

static struct harness broker;

/* Shared by the parent and every child (mapped before the first fork): the
 * parent's hold, and the commit counts it reads at a broker kill, when
 * reports through the pipe may still be on their way.  started goes up
 * before a commit is sent, refused and acked after its reply: read once the
 * broker is dead (refused first), acked counts only commits it acknowledged
 * and started - refused every commit it may have made. */
struct ctl {
	_Atomic int hold;	   /* 1: commit nothing (the parent checks a restarted broker) */
	_Atomic uint64_t started;  /* shma_commit calls begun */
	_Atomic uint64_t refused;  /* of them, SHMA_ECONFLICT: not committed */
	_Atomic uint64_t acked;	   /* of them, 0: committed */
};

static struct ctl *ctl;

/* ---- children and their reports ------------------------------------------- */

enum role { ROLE_WORKER = 1, ROLE_CHECKER = 2 };

/* One report: counts since the child's previous report. */
struct rec {
	uint32_t magic;
	int32_t pid;
	uint32_t role;
	uint32_t last; /* the child's final report */
	uint64_t commits, conflicts, checks, violations, errors;
	uint64_t indoubt;    /* commits that got SHMA_EDISCONNECTED */
	uint64_t reconnects; /* after a broker kill */
};
_Static_assert(sizeof(struct rec) <= PIPE_BUF, "records must be written atomically");

struct child {
	pid_t pid;
	enum role role;
	bool killed; /* by us, with SIGKILL */
	bool done;   /* sent its final report */
};

static struct child children[MAX_CHILDREN];
static int report_fd = -1; /* write end, inherited by children */
static int read_fd = -1;

static pid_t test_pid; /* the test process (children must never tear down) */

/* An exit of the test process other than cmocka's own, said out loud with
 * where it came from (a CI run once saw exit 255 and nothing else). */
static void say_exit(int status, void *arg)
{
	void *frames[32];
	int n;

	(void)arg;
	if (getpid() != test_pid || status == 0)
		return;
	fprintf(stderr, "bank: the test process exits with status %d from:\n", status);
	n = backtrace(frames, 32);
	backtrace_symbols_fd(frames, n, 2);
}

/* Keep the broker's log (every life of it) out of its directory, which the
 * teardown removes: a failed run's evidence. */
static void keep_log(void)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char cmd[1024];

	if (!broker.dir[0])
		return;
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s/shma-bank-%d.log'", broker.log, tmp,
		 (int)getpid());
	if (system(cmd) == 0)
		fprintf(stderr, "bank: the broker's log is kept as %s/shma-bank-%d.log\n", tmp,
			(int)getpid());
}

static int teardown(void **state)
{
	(void)state;
	if (getpid() != test_pid)
		_exit(4); /* a child that got back into cmocka: it owns nothing */
	keep_log(); /* the test did not stop the broker: it failed */
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid > 0) {
			kill(children[i].pid, SIGKILL);
			waitpid(children[i].pid, NULL, 0);
			children[i].pid = 0;
		}
	if (report_fd >= 0)
		close(report_fd);
	if (read_fd >= 0)
		close(read_fd);
	report_fd = read_fd = -1;
	if (ctl) {
		munmap(ctl, sizeof(*ctl));
		ctl = NULL;
	}
	return it_teardown_harness(&broker);
}

static double env_num(const char *name, double dflt)
{
	const char *s = getenv(name);
	char *end;
	double v;

	if (!s || !*s)
		return dflt;
	v = strtod(s, &end);
	return (*end || v <= 0) ? dflt : v;
}

/* An on/off switch: "0" is off, anything else on. */
static bool env_on(const char *name, bool dflt)
{
	const char *s = getenv(name);

	return (!s || !*s) ? dflt : strcmp(s, "0") != 0;
}

/* xorshift64*: each child seeds its own */
static uint64_t rnd_state;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545F4914F6CDD1Dull;
}

static void rnd_seed(uint64_t s)
{
	rnd_state = s ? s : 0x9E3779B97F4A7C15ull;
	for (int i = 0; i < 4; i++)
		rnd();
}

static volatile sig_atomic_t stop_flag;

static void on_term(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* In a child: send counts, then zero them. */
static void child_report(struct rec *r, bool last)
{
	ssize_t n;

	r->magic = REC_MAGIC;
	r->pid = (int32_t)getpid();
	r->last = last;
	do
		n = write(report_fd, r, sizeof(*r));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*r)) {
		fprintf(stderr, "child %d: report: %s\n", (int)getpid(), strerror(errno));
		_exit(3);
	}
	r->commits = r->conflicts = r->checks = r->violations = r->errors = 0;
	r->indoubt = r->reconnects = 0;
}

/* In a child: an unexpected error ends it (exit 2; the parent counts it). */
static void child_fail(shma_conn *c, const char *what, int e)
{
	fprintf(stderr, "child %d: %s: %s (%s)\n", (int)getpid(), what, shma_strerror(e),
		c ? shma_conn_error(c) : shma_last_error());
	_exit(2);
}

static void child_setup(struct rec *r, enum role role)
{
	struct sigaction sa;

	/* a child dies of its faults: cmocka's handlers would take it back
	 * into the test runner (and its teardown) */
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	signal(SIGILL, SIG_DFL);
	signal(SIGFPE, SIG_DFL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&sa.sa_mask); /* blocked by start_child until now */
	sigaddset(&sa.sa_mask, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &sa.sa_mask, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
	close(read_fd);
	memset(r, 0, sizeof(*r));
	r->role = role;
	rnd_seed(((uint64_t)getpid() << 32) ^ it_now_ms() ^ (uint64_t)(uintptr_t)r);
	if (shma_vm_install_handler())
		_exit(2);
}

/* Waiting for a killed broker to come back: 1 ms, doubling up to 64 ms,
 * for DOWN_LIMIT_MS at most. */
struct backoff {
	uint64_t give_up;
	int delay;
};

static void backoff_start(struct backoff *b)
{
	b->give_up = it_now_ms() + DOWN_LIMIT_MS;
	b->delay = 1;
}

/* In a child: wait before the next try, or give up (exit 2) saying why. */
static void backoff_wait(struct backoff *b, const char *what, const char *why)
{
	if (it_now_ms() > b->give_up) {
		fprintf(stderr, "child %d: %s: the broker is not back after %d s (%s)\n",
			(int)getpid(), what, DOWN_LIMIT_MS / 1000, why);
		_exit(2);
	}
	it_sleep_ms(b->delay);
	if (b->delay < 64)
		b->delay *= 2;
}

/* In a child: a connection with the array open; the broker may be down (a
 * child started just before a broker kill), then it waits. */
static shma_conn *child_connect(shma_array **a)
{
	struct backoff b;

	backoff_start(&b);
	for (;;) {
		shma_conn *c = NULL;
		int e = shma_connect(broker.socket, NULL, &c);

		if (e) {
			if (e != SHMA_EDISCONNECTED)
				child_fail(NULL, "shma_connect", e);
			backoff_wait(&b, "shma_connect", shma_last_error());
			continue;
		}
		e = shma_open(c, ARRAY, a);
		if (e == 0)
			return c;
		if (e != SHMA_EDISCONNECTED)
			child_fail(c, "shma_open", e);
		shma_disconnect(&c);
		backoff_wait(&b, "shma_open", shma_strerror(e));
	}
}

/* In a child, after SHMA_EDISCONNECTED (the broker was killed): connect
 * again until the restarted broker answers.  The array's memory may move:
 * *rows is set anew. */
static void child_reconnect(shma_conn *c, shma_array *a, int64_t **rows, struct rec *r)
{
	struct backoff b;
	int e;

	backoff_start(&b);
	while ((e = shma_reconnect(c)) != 0) {
		if (e != SHMA_EDISCONNECTED)
			child_fail(c, "shma_reconnect", e);
		backoff_wait(&b, "shma_reconnect", shma_conn_error(c));
	}
	*rows = shma_array_data(a);
	r->reconnects++;
}

/* In a worker, before a commit: not while the parent checks a restarted
 * broker.  Race-free because the commit's connection was made before this
 * check, and a connection to a restarted broker after the hold was set. */
static void hold_wait(void)
{
	struct backoff b;

	backoff_start(&b);
	while (atomic_load(&ctl->hold))
		backoff_wait(&b, "hold", "the parent's check of the restarted broker");
}

/* A transfer worker: never returns. */
static void worker_main(void)
{
	struct rec r;
	shma_conn *c;
	shma_array *arr;
	int64_t *rows;
	int e;

	child_setup(&r, ROLE_WORKER);
	c = child_connect(&arr);
	rows = shma_array_data(arr);
	while (!stop_flag) {
		uint32_t a = (uint32_t)(rnd() % NACC), b;
		int64_t amt = (int64_t)(rnd() % 100) + 1;

		if (rnd() & 1) /* same block */
			b = (a / ACC_PER_BLOCK) * ACC_PER_BLOCK + (uint32_t)(rnd() % ACC_PER_BLOCK);
		else
			b = (uint32_t)(rnd() % NACC);
		if (a == b)
			continue;
		for (;;) { /* until it commits */
			int64_t *ra = rows + (size_t)a * ROW, *rb = rows + (size_t)b * ROW;
			int64_t ba, bb, va, vb;
			uint64_t rev, snap;

			e = shma_sync(c, &snap);
			if (e == SHMA_EDISCONNECTED) {
				child_reconnect(c, arr, &rows, &r);
				continue;
			}
			if (e)
				child_fail(c, "shma_sync", e);
			ba = ra[F_BAL];
			bb = rb[F_BAL];
			va = ra[F_VER] + 1;
			vb = rb[F_VER] + 1;
			ra[F_BAL] = ba - amt;
			ra[F_VER] = va;
			ra[F_PARTNER] = b;
			ra[F_PVER] = vb;
			rb[F_BAL] = bb + amt;
			rb[F_VER] = vb;
			rb[F_PARTNER] = a;
			rb[F_PVER] = va;
			hold_wait();
			atomic_fetch_add(&ctl->started, 1);
			e = shma_commit(c, &rev);
			if (e == 0) {
				atomic_fetch_add(&ctl->acked, 1);
				r.commits++;
				/* a new revision, and the snapshot is what we committed */
				if (rev <= snap || shma_revision(c) != rev || ra[F_BAL] != ba - amt ||
				    rb[F_BAL] != bb + amt || ra[F_VER] != va || rb[F_VER] != vb) {
					if (r.violations++ < MAX_REPORTS)
						fprintf(stderr, "worker %d: commit from rev %" PRIu64
							" returned rev %" PRIu64 ", snapshot now rev %"
							PRIu64 ": not a new revision showing the"
							" transfer\n",
							(int)getpid(), snap, rev, shma_revision(c));
				}
				child_report(&r, false);
				break;
			}
			if (e == SHMA_EDISCONNECTED) {
				/* the broker died with the commit in flight: it is
				 * in the store whole or not at all; a new transfer */
				r.indoubt++;
				child_reconnect(c, arr, &rows, &r);
				break;
			}
			if (e != SHMA_ECONFLICT)
				child_fail(c, "shma_commit", e);
			atomic_fetch_add(&ctl->refused, 1);
			r.conflicts++;
			e = shma_abort(c);
			if (e)
				child_fail(c, "shma_abort", e);
			if (stop_flag)
				break;
		}
	}
	shma_disconnect(&c);
	child_report(&r, true);
	_exit(0);
}

/* Check one snapshot's rows (the whole-commit rule); returns the number of
 * bad accounts and prints the first few (who: for the message). */
static unsigned check_rows(const int64_t *rows, const char *who, uint64_t rev, unsigned *printed)
{
	unsigned bad = 0;

	for (uint32_t i = 0; i < NACC; i++) {
		const int64_t *ri = rows + (size_t)i * ROW, *rp;
		int64_t p = ri[F_PARTNER];
		bool ok;

		if (ri[F_VER] == 0) {
			ok = p == -1 && ri[F_PVER] == 0;
		} else if (p < 0 || p >= (int64_t)NACC || p == (int64_t)i || ri[F_VER] < 0) {
			ok = false;
		} else {
			rp = rows + (size_t)p * ROW;
			ok = rp[F_VER] > ri[F_PVER] ||
			     (rp[F_VER] == ri[F_PVER] && rp[F_PARTNER] == (int64_t)i &&
			      rp[F_PVER] == ri[F_VER]);
		}
		if (!ok) {
			bad++;
			if ((*printed)++ < MAX_REPORTS)
				fprintf(stderr,
					"%s %d: rev %" PRIu64 ": account %u [bal %" PRId64 " ver %" PRId64
					" partner %" PRId64 " pver %" PRId64 "] is not a whole commit%s\n",
					who, (int)getpid(), rev, i, ri[F_BAL], ri[F_VER], p, ri[F_PVER],
					p >= 0 && p < (int64_t)NACC ? "" : " (bad partner)");
			if (p >= 0 && p < (int64_t)NACC && *printed <= MAX_REPORTS) {
				rp = rows + (size_t)p * ROW;
				fprintf(stderr, "    partner %" PRId64 " [bal %" PRId64 " ver %" PRId64
					" partner %" PRId64 " pver %" PRId64 "]\n",
					p, rp[F_BAL], rp[F_VER], rp[F_PARTNER], rp[F_PVER]);
			}
		}
	}
	return bad;
}

static int64_t sum_rows(const int64_t *rows)
{
	int64_t s = 0;

	for (uint32_t i = 0; i < NACC; i++)
		s += rows[(size_t)i * ROW + F_BAL];
	return s;
}

static int64_t total; /* the initial sum, set before any fork */

/* A checker: never returns. */
static void checker_main(void)
{
	static int64_t last_ver[NACC];
	uint64_t last_rev = 0;
	unsigned printed = 0;
	struct rec r;
	shma_conn *c;
	shma_array *arr;
	int64_t *rows;
	int e;

	child_setup(&r, ROLE_CHECKER);
	c = child_connect(&arr);
	rows = shma_array_data(arr);
	while (!stop_flag) {
		uint64_t rev;
		int64_t s1, s2;
		unsigned bad = 0;

		e = shma_sync(c, &rev);
		if (e == SHMA_EDISCONNECTED) {
			child_reconnect(c, arr, &rows, &r);
			continue;
		}
		if (e)
			child_fail(c, "shma_sync", e);
		if (rev < last_rev || shma_revision(c) != rev) {
			bad++;
			if (printed++ < MAX_REPORTS)
				fprintf(stderr, "checker %d: sync went from rev %" PRIu64 " to %" PRIu64
					" (snapshot %" PRIu64 ")\n",
					(int)getpid(), last_rev, rev, shma_revision(c));
		}
		s1 = sum_rows(rows);
		bad += check_rows(rows, "checker", rev, &printed);
		for (uint32_t i = 0; i < NACC; i++) {
			int64_t v = rows[(size_t)i * ROW + F_VER];

			if (v < last_ver[i]) {
				bad++;
				if (printed++ < MAX_REPORTS)
					fprintf(stderr, "checker %d: account %u went back from version %"
						PRId64 " (rev %" PRIu64 ") to %" PRId64 " (rev %" PRIu64 ")\n",
						(int)getpid(), i, last_ver[i], last_rev, v, rev);
			}
			last_ver[i] = v;
		}
		it_sleep_ms(1); /* let commits happen under the snapshot */
		s2 = sum_rows(rows);
		if (s1 != total || s2 != s1 || shma_revision(c) != rev) {
			bad++;
			if (printed++ < MAX_REPORTS)
				fprintf(stderr, "checker %d: rev %" PRIu64 ": sum %" PRId64 " then %"
					PRId64 " (want %" PRId64 "), snapshot now %" PRIu64 "\n",
					(int)getpid(), rev, s1, s2, total, shma_revision(c));
		}
		last_rev = rev;
		r.checks++;
		r.violations += bad;
		child_report(&r, false);
	}
	shma_disconnect(&c);
	child_report(&r, true);
	_exit(0);
}

/* ---- the parent ------------------------------------------------------------ */

struct totals {
	uint64_t commits, conflicts, checks, violations, errors, kills, started;
	uint64_t indoubt, reconnects;
	uint64_t bkills, restart_max_ms; /* broker kills, the longest restart */
};

static struct child *child_of(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid == pid)
			return &children[i];
	return NULL;
}

static void start_child(enum role role, struct totals *t)
{
	struct child *slot = child_of(0);
	sigset_t term, old;
	pid_t pid;

	assert_non_null(slot);
	fflush(stdout);
	fflush(stderr);
	/* a SIGTERM (stop_children) that comes before the child's handler
	 * waits for it instead of killing the child */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	pid = fork();
	if (pid != 0)
		sigprocmask(SIG_SETMASK, &old, NULL);
	assert_true(pid >= 0);
	if (pid == 0) {
		if (role == ROLE_WORKER)
			worker_main();
		checker_main();
	}
	slot->pid = pid;
	slot->role = role;
	slot->killed = slot->done = false;
	t->started++;
}

/* Take every whole record the pipe holds. */
static void drain(struct totals *t)
{
	static unsigned char buf[64 * sizeof(struct rec)];
	static size_t have;
	ssize_t n;

	for (;;) {
		n = read(read_fd, buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		while (have >= sizeof(struct rec)) {
			struct rec r;
			struct child *ch;

			memcpy(&r, buf, sizeof(r));
			memmove(buf, buf + sizeof(r), have - sizeof(r));
			have -= sizeof(r);
			if (r.magic != REC_MAGIC) {
				fprintf(stderr, "bank: bad report record\n");
				t->errors++;
				continue;
			}
			t->commits += r.commits;
			t->conflicts += r.conflicts;
			t->checks += r.checks;
			t->violations += r.violations;
			t->errors += r.errors;
			t->indoubt += r.indoubt;
			t->reconnects += r.reconnects;
			if (r.last && (ch = child_of(r.pid)))
				ch->done = true;
		}
	}
}

/* A child ended (status from waitpid): it must have been killed by us, or
 * have exited 0 after its final report. */
static void child_ended(struct child *ch, int status, struct totals *t)
{
	bool ok = ch->killed ? (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			     : (WIFEXITED(status) && WEXITSTATUS(status) == 0);

	if (!ok) {
		fprintf(stderr, "bank: %s %d ended badly (%s %d)\n",
			ch->role == ROLE_WORKER ? "worker" : "checker", (int)ch->pid,
			WIFEXITED(status) ? "exit" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		t->errors++;
	}
	ch->pid = 0;
}

/* Reap children that ended on their own (they should not, before the end). */
static void reap(struct totals *t)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		int status;

		if (children[i].pid > 0 && waitpid(children[i].pid, &status, WNOHANG) == children[i].pid)
			child_ended(&children[i], status, t);
	}
}

static int nlive(enum role role)
{
	int n = 0;

	for (int i = 0; i < MAX_CHILDREN; i++)
		n += children[i].pid > 0 && children[i].role == role;
	return n;
}

static void kill_random_worker(struct totals *t)
{
	int n = nlive(ROLE_WORKER), k;
	int status;

	if (n == 0)
		return;
	k = rand() % n;
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &children[i];

		if (ch->pid <= 0 || ch->role != ROLE_WORKER || k--)
			continue;
		ch->killed = true;
		assert_int_equal(kill(ch->pid, SIGKILL), 0);
		assert_int_equal(waitpid(ch->pid, &status, 0), ch->pid);
		child_ended(ch, status, t);
		t->kills++;
		return;
	}
}

/* SIGTERM every child; each finishes its transaction, reports, exits 0. */
static void stop_children(struct totals *t)
{
	uint64_t end = it_now_ms() + 20000;

	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i].pid > 0)
			kill(children[i].pid, SIGTERM);
	while (nlive(ROLE_WORKER) + nlive(ROLE_CHECKER) > 0) {
		drain(t);
		reap(t);
		if (it_now_ms() > end) {
			fprintf(stderr, "bank: children did not stop within 20 s: killed\n");
			for (int i = 0; i < MAX_CHILDREN; i++)
				if (children[i].pid > 0) {
					kill(children[i].pid, SIGKILL);
					waitpid(children[i].pid, NULL, 0);
					children[i].pid = 0;
					t->errors++;
				}
			break;
		}
		it_sleep_ms(5);
	}
	drain(t);
}

/* The state at the head, seen by a fresh connection c (who: for messages):
 * returns the commits the data shows, *head the revision; adds violations
 * to t. */
static uint64_t check_head(shma_conn *c, const char *who, struct totals *t, uint64_t *head)
{
	shma_array *a = NULL;
	const int64_t *rows;
	unsigned printed = 0;
	uint64_t versions = 0;
	int64_t s;
	int e;

	if ((e = shma_sync(c, head)) != 0 || (e = shma_open(c, ARRAY, &a)) != 0)
		fail_msg("bank: %s: cannot open %s at the head: %s (%s)", who, ARRAY,
			 shma_strerror(e), shma_conn_error(c));
	rows = shma_array_data(a);
	s = sum_rows(rows);
	if (s != total) {
		fprintf(stderr, "bank: %s: sum %" PRId64 " at rev %" PRIu64 ", want %" PRId64 "\n",
			who, s, *head, total);
		t->violations++;
	}
	t->violations += check_rows(rows, who, *head, &printed);
	for (uint32_t i = 0; i < NACC; i++)
		versions += (uint64_t)rows[(size_t)i * ROW + F_VER];
	if (versions % 2) {
		fprintf(stderr, "bank: %s: odd sum of versions %" PRIu64 " at rev %" PRIu64 "\n",
			who, versions, *head);
		t->violations++;
	}
	shma_close(&a);
	return versions / 2;
}

/* Take reports and reap for ms milliseconds. */
static void idle_ms(struct totals *t, int ms)
{
	uint64_t end = it_now_ms() + (uint64_t)ms;

	for (uint64_t now; (now = it_now_ms()) < end;) {
		struct pollfd pfd = { .fd = read_fd, .events = POLLIN };

		poll(&pfd, 1, (int)(end - now));
		drain(t);
		reap(t);
	}
}

/* SIGKILL the broker, leave it dead a little (children try to connect in
 * vain), start it again on its store and check the head it recovered before
 * any worker commits to it: every commit acknowledged before the kill is
 * there, nothing but whole commits that were begun, one revision each. */
static void crash_broker(struct totals *t, uint64_t rev0)
{
	uint64_t acked, refused, begun, t0, ms, head, data;
	shma_conn *c;
	char who[48];

	harness_kill(&broker);
	atomic_store(&ctl->hold, 1);
	t->bkills++;
	/* the broker is dead: what is acknowledged now is all it acknowledged;
	 * refused before begun, so that every refusal counted was begun */
	acked = atomic_load(&ctl->acked);
	refused = atomic_load(&ctl->refused);
	begun = atomic_load(&ctl->started);
	idle_ms(t, rand() % 251);

	t0 = it_now_ms();
	if (harness_restart(&broker) != 0)
		fail_msg("bank: the broker does not start again after kill %" PRIu64, t->bkills);
	ms = it_now_ms() - t0;
	if (ms > t->restart_max_ms)
		t->restart_max_ms = ms;

	snprintf(who, sizeof(who), "restart %" PRIu64, t->bkills);
	if (shma_connect(broker.socket, NULL, &c) != 0)
		fail_msg("bank: %s: cannot connect: %s", who, shma_last_error());
	data = check_head(c, who, t, &head);
	shma_disconnect(&c);
	if (head - rev0 != data) {
		fprintf(stderr, "bank: %s: %" PRIu64 " revisions for %" PRIu64 " commits\n", who,
			head - rev0, data);
		t->violations++;
	}
	if (data < acked || data > begun - refused) {
		fprintf(stderr, "bank: %s: the data shows %" PRIu64 " commits (head %" PRIu64
			"); %" PRIu64 " were acknowledged before the kill, at most %" PRIu64
			" were begun and not refused\n", who, data, head, acked, begun - refused);
		t->violations++;
	}
	atomic_store(&ctl->hold, 0);
}

static void test_bank(void **state)
{
	double seconds = env_num("SHMA_BANK_SECONDS", 4);
	int nworkers = (int)env_num("SHMA_BANK_WORKERS", 8);
	int ncheckers = (int)env_num("SHMA_BANK_CHECKERS", 2);
	bool broker_kills = env_on("SHMA_BANK_BROKER_KILLS", true);
	const uint64_t shape[2] = { NACC, ROW };
	struct totals t = { 0 };
	struct tclient tc;
	shma_conn *c;
	shma_array *a;
	int64_t *rows;
	uint64_t rev0, head, data_commits, end, next_kill, next_bkill;
	int fds[2];

	(void)state;
	test_pid = getpid();
	on_exit(say_exit, NULL);
	/* whatever happens, what was said gets out (stdout may be a pipe) */
	setvbuf(stdout, NULL, _IONBF, 0);
	assert_true(nworkers + ncheckers < MAX_CHILDREN / 2);
	srand((unsigned)(getpid() ^ it_now_ms()));
	assert_int_equal(shma_vm_install_handler(), 0);
	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(ctl != MAP_FAILED);
	memset(ctl, 0, sizeof(*ctl));
	it_start(&broker, "{\"retention\":{\"revisions\":16,\"seconds\":0}}");

	/* the accounts: balance 1000 + i % 1000, no transfer yet */
	assert_int_equal(shma_connect(broker.socket, NULL, &c), 0);
	assert_int_equal(shma_create(c, ARRAY, "<i8", 2, shape, 'C', BANK_BLOCK, NULL), 0);
	assert_int_equal(shma_sync(c, NULL), 0);
	assert_int_equal(shma_open(c, ARRAY, &a), 0);
	rows = shma_array_data(a);
	total = 0;
	for (uint32_t i = 0; i < NACC; i++) {
		int64_t *r = rows + (size_t)i * ROW;

		r[F_BAL] = 1000 + i % 1000;
		r[F_VER] = 0;
		r[F_PARTNER] = -1;
		r[F_PVER] = 0;
		total += r[F_BAL];
	}
	assert_int_equal(shma_commit(c, &rev0), 0);
	shma_close(&a);
	shma_disconnect(&c); /* children start with nothing of the parent's */

	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	read_fd = fds[0];
	report_fd = fds[1];
	assert_int_equal(fcntl(read_fd, F_SETFL, O_NONBLOCK), 0);
	for (int i = 0; i < ncheckers; i++)
		start_child(ROLE_CHECKER, &t);
	for (int i = 0; i < nworkers; i++)
		start_child(ROLE_WORKER, &t);

	end = it_now_ms() + (uint64_t)(seconds * 1000);
	next_kill = it_now_ms() + 50 + (uint64_t)(rand() % 251);
	next_bkill = broker_kills ? it_now_ms() + 500 + (uint64_t)(rand() % 1501) : UINT64_MAX;
	for (uint64_t now; (now = it_now_ms()) < end;) {
		struct pollfd pfd = { .fd = read_fd, .events = POLLIN };
		uint64_t until = next_kill < next_bkill ? next_kill : next_bkill;

		if (until > end)
			until = end;
		if (now < until)
			poll(&pfd, 1, (int)(until - now));
		drain(&t);
		reap(&t);
		if (it_now_ms() >= next_kill) {
			kill_random_worker(&t);
			next_kill = it_now_ms() + 50 + (uint64_t)(rand() % 251);
		}
		if (it_now_ms() >= next_bkill) {
			crash_broker(&t, rev0);
			next_bkill = it_now_ms() + 500 + (uint64_t)(rand() % 1501);
		}
		while (nlive(ROLE_WORKER) < nworkers) /* in place of the killed */
			start_child(ROLE_WORKER, &t);
	}
	stop_children(&t);
	close(report_fd);
	close(read_fd);
	report_fd = read_fd = -1;

	/* nothing is left of the children: one raw client, one pin */
	it_open_client(&tc, &broker);
	assert_int_equal(it_wait_stat(&tc, "clients", 1, 5000), 1);
	assert_int_equal(it_wait_stat(&tc, "pins", 1, 5000), 1);

	/* the final state, from a fresh connection */
	assert_int_equal(shma_connect(broker.socket, NULL, &c), 0);
	data_commits = check_head(c, "final", &t, &head);
	assert_int_equal(it_wait_stat(&tc, "clients", 2, 5000), 2);
	shma_disconnect(&c);
	assert_int_equal(it_wait_stat(&tc, "clients", 1, 5000), 1);
	assert_int_equal(it_wait_stat(&tc, "pins", 1, 5000), 1);
	assert_int_equal((uint64_t)it_stat(&tc, "head"), head);
	tclient_close(&tc);

	printf("bank: %.1f s, %d workers, %d checkers: commits %" PRIu64 " (data shows %" PRIu64
	       ", revisions %" PRIu64 "), conflicts %" PRIu64 ", in doubt %" PRIu64
	       ", kills %" PRIu64 ", broker kills %" PRIu64 " (restart max %" PRIu64
	       " ms, reconnects %" PRIu64 "), checks %" PRIu64 ", violations %" PRIu64
	       ", errors %" PRIu64 "\n",
	       seconds, nworkers, ncheckers, t.commits, data_commits, head - rev0, t.conflicts,
	       t.indoubt, t.kills, t.bkills, t.restart_max_ms, t.reconnects, t.checks,
	       t.violations, t.errors);
	fflush(stdout);

	if (data_commits < t.commits)
		fprintf(stderr, "bank: %" PRIu64 " acknowledged commits are missing from the data\n",
			t.commits - data_commits);
	if (data_commits > t.commits + t.kills + t.indoubt)
		fprintf(stderr, "bank: the data shows %" PRIu64 " commits nobody acknowledged\n",
			data_commits - t.commits - t.kills - t.indoubt);
	if (head - rev0 != data_commits)
		fprintf(stderr, "bank: %" PRIu64 " revisions for %" PRIu64 " commits\n", head - rev0,
			data_commits);
	/* a failure leaves the broker running: the teardown keeps its log */
	assert_int_equal(t.violations, 0);
	assert_int_equal(t.errors, 0);
	/* every acknowledged commit is in the data; a killed worker may have
	 * committed once more without telling, a commit in doubt may be there;
	 * each commit is one revision */
	assert_true(data_commits >= t.commits);
	assert_true(data_commits <= t.commits + t.kills + t.indoubt);
	assert_int_equal(head - rev0, data_commits);
	assert_true(t.commits > 0);
	assert_true(t.kills > 0);
	assert_true(t.checks > 0);
	/* the first broker kill comes within 2 s */
	assert_true(!broker_kills || seconds < 2.5 || t.bkills > 0);
	it_stop(&broker);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bank, teardown),
	};

	return cmocka_run_group_tests_name("bank", tests, NULL, NULL);
}
