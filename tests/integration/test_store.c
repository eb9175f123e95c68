/* test_store.c - the broker's durable store (LMDB in data_dir), seen from
 * outside: what a broker killed with SIGKILL brings back when it starts
 * again on the same directory, what it refuses to start on, and what a
 * commit that cannot be written does.
 *
 *   - round trip: arrays of several dtypes, shapes, orders and block sizes,
 *     a sparse one, page-granular commits, multi-array commits, resizes, a
 *     deleted array and a re-created name; after kill -9 and restart the
 *     catalog, the content (holes included), the head, the store id, the
 *     retained history and the next revision number are what they were;
 *   - the same through libshm: a connection reconnects to the restarted
 *     broker and sees its data, an ArrayRef made before the crash still
 *     opens (same store id, revision retained);
 *   - the store's layout (docs: <data_dir>/data.mdb, named databases "meta",
 *     "arrays", "blocks"; block values checksummed with CRC-32C);
 *   - refusals: data.mdb truncated, a flipped byte in a block value, a newer
 *     format, a data_dir that is not a store: the broker exits non-zero
 *     within seconds, never accepts a connection, and says what and where;
 *   - running out of room: RLIMIT_FSIZE lowered on the broker (prlimit) and
 *     a store_size too small for a commit: the commit fails (no_space or
 *     io), nothing of it is visible or kept, earlier commits stay, later
 *     ones work once there is room, and a restart agrees; with several
 *     clients at once (one shared sync) each is told the truth;
 *   - history: revisions kept by age come back; compaction drops versions
 *     no kept revision needs (and the deleted array's);
 *   - group commit: a client whose commit was acknowledged has that
 *     revision as its snapshot even when its batch made more revisions than
 *     retention.revisions; a client gone before its reply loses nothing a
 *     reader saw;
 *   - "data_dir": false keeps nothing; null is $XDG_STATE_HOME/shma or
 *     $HOME/.local/state/shma; "durability": "async" still survives the
 *     death of the broker process (the page cache does).
 *
 * Every test starts its own broker (tests/lib/harness.h; its configuration
 * puts the store in <dir>/data) and stops it at the end.
 */
#include "itest.h"

#include <inttypes.h>
#include <lmdb.h>
#include <sys/resource.h>

#include "shma.h"

static struct harness broker;
static pid_t refused_pid = -1; /* a broker start_refused() has not reaped */
static char fake_home[256];    /* test_default_data_dir's HOME and XDG_STATE_HOME */
static char *real_home;

static void rm_rf(const char *dir)
{
	char cmd[400];

	/* mkdtemp names: no shell characters */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static int teardown(void **state)
{
	(void)state;
	if (refused_pid > 0) {
		kill(refused_pid, SIGKILL);
		waitpid(refused_pid, NULL, 0);
		refused_pid = -1;
	}
	it_teardown_harness(&broker);
	if (fake_home[0]) {
		rm_rf(fake_home);
		fake_home[0] = 0;
		unsetenv("XDG_STATE_HOME");
		if (real_home)
			setenv("HOME", real_home, 1);
		free(real_home);
		real_home = NULL;
	}
	return 0;
}

/* ---- the store directory ------------------------------------------------------ */

static void data_dir(const struct harness *h, char *out, size_t len)
{
	snprintf(out, len, "%s/data", h->dir);
}

static void data_file(const struct harness *h, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/data/%s", h->dir, name);
}

static bool file_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static off_t file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/* Stop the broker with SIGTERM (it must exit 0) but keep its directory. */
static void stop_keep(struct harness *h)
{
	uint64_t end = it_now_ms() + 20000;
	int status = 0;

	assert_true(h->pid > 0);
	assert_int_equal(kill(h->pid, SIGTERM), 0);
	for (;;) {
		pid_t r = waitpid(h->pid, &status, WNOHANG);

		if (r == h->pid)
			break;
		assert_int_equal(r, 0);
		if (it_now_ms() > end) {
			harness_kill(h);
			fail_msg("the broker did not stop within 20 s of SIGTERM");
		}
		it_sleep_ms(10);
	}
	h->pid = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the broker did not stop cleanly (%s %d); log %s",
			 WIFEXITED(status) ? "exit" : "signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), h->log);
}

/* Start the broker again on h's directory (after harness_kill or stop_keep). */
static void restart(struct harness *h)
{
	int err = harness_restart(h);

	if (err)
		fail_msg("the broker did not start again on its store (%s); log %s", strerror(-err),
			 h->log);
}

/* Bytes [from, end) of a file, NUL-terminated (malloc'd). */
static char *read_from(const char *path, off_t from)
{
	off_t size = file_size(path);
	char *buf;
	ssize_t n = 0;
	int fd;

	if (size < from)
		from = 0;
	buf = calloc(1, (size_t)(size > from ? size - from : 0) + 1);
	assert_non_null(buf);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = pread(fd, buf, (size_t)(size - from), from);
		close(fd);
	}
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

/* Start a broker on h's directory and configuration that must refuse: exit
 * with a non-zero status within 5 s, never accepting a connection meanwhile.
 * Returns what it wrote to its log (malloc'd). */
static char *start_refused(struct harness *h)
{
	off_t logpos = file_size(h->log);
	uint64_t end = it_now_ms() + 5000;
	int status = 0;
	char *said;

	assert_true(h->pid <= 0);
	refused_pid = harness_spawn(h, h->log);
	assert_true(refused_pid > 0);
	for (;;) {
		struct tclient t;
		pid_t r;

		if (tclient_connect(&t, h->socket) == 0) {
			tclient_close(&t);
			fail_msg("the broker accepted a connection on a store it must refuse; log %s",
				 h->log);
		}
		r = waitpid(refused_pid, &status, WNOHANG);
		if (r == refused_pid)
			break;
		assert_int_equal(r, 0);
		if (it_now_ms() > end)
			fail_msg("the broker neither refused nor came up within 5 s; log %s", h->log);
		it_sleep_ms(10);
	}
	refused_pid = -1;
	said = read_from(h->log, logpos < 0 ? 0 : logpos);
	fprintf(stderr, "    refused (%s %d): %s", WIFEXITED(status) ? "exit" : "signal",
		WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
		said[0] ? said : "(nothing in the log)\n");
	if (!WIFEXITED(status))
		fail_msg("the broker died of signal %d instead of refusing", WTERMSIG(status));
	assert_int_not_equal(WEXITSTATUS(status), 0);
	assert_int_not_equal(WEXITSTATUS(status), 127); /* exec failed */
	return said;
}

/* The refusal names the data directory and says what is wrong: one of the
 * words (|-separated, any case). */
static void assert_says(const struct harness *h, const char *said, const char *words)
{
	char dir[300], buf[128], *w, *save = NULL;
	bool found = false;

	data_dir(h, dir, sizeof(dir));
	if (!strstr(said, dir))
		fail_msg("the refusal does not name the data directory %s", dir);
	snprintf(buf, sizeof(buf), "%s", words);
	for (w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
		found |= strcasestr(said, w) != NULL;
	if (!found)
		fail_msg("the refusal does not say \"%s\"", words);
}

/* ---- LMDB from the test ----------------------------------------------------------- */

static void mdb_check(int rc, const char *what)
{
	if (rc)
		fail_msg("%s: %s", what, mdb_strerror(rc));
}

/* Open the store's environment (the broker must be stopped). */
static MDB_env *store_env(const struct harness *h, unsigned flags)
{
	char dir[300];
	MDB_env *env = NULL;

	data_dir(h, dir, sizeof(dir));
	mdb_check(mdb_env_create(&env), "mdb_env_create");
	mdb_check(mdb_env_set_maxdbs(env, 8), "mdb_env_set_maxdbs");
	mdb_check(mdb_env_open(env, dir, flags, 0600), "mdb_env_open");
	return env;
}

static uint32_t crc32c(const unsigned char *p, size_t n)
{
	uint32_t crc = 0xffffffffu;

	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

static uint64_t be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* ---- raw protocol helpers ------------------------------------------------------- */

/* One block change of a commit: pages [first, first + count) of block blk
 * of array name, page p filled with (tag, p). */
struct put {
	const char *name;
	uint64_t blk;
	uint32_t first, count, tag;
};

/* Commit puts (grouped by array in the order given; blocks of one array
 * ascending); shape_of/shape: an array to resize in the same commit (or
 * NULL).  Returns the reply (owned). */
static int commit_send_base(struct tclient *c, long long base, const struct put *p, size_t n,
			    const char *shape_of, const char *shape);

/* Send the commit of commit_puts without waiting for its reply. */
static int commit_send(struct tclient *c, const struct put *p, size_t n, const char *shape_of,
		       const char *shape)
{
	return commit_send_base(c, -1, p, n, shape_of, shape);
}

static json_t *commit_puts(struct tclient *c, const struct put *p, size_t n, const char *shape_of,
			   const char *shape)
{
	assert_int_equal(commit_send(c, p, n, shape_of, shape), 0);
	return tclient_recv(c, 30000, NULL, NULL);
}

/* The same with "base" (unless base < 0). */
static int commit_send_base(struct tclient *c, long long base, const struct put *p, size_t n,
			    const char *shape_of, const char *shape)
{
	json_t *req = json_pack("{s:s,s:[]}", "op", "commit", "arrays"), *arrays, *ach = NULL;
	size_t pages = 0, off = 0;
	unsigned char *buf;
	char *text;
	int fd, err;

	arrays = json_object_get(req, "arrays");
	if (base >= 0)
		json_object_set_new(req, "base", json_integer(base));
	for (size_t i = 0; i < n; i++)
		pages += p[i].count;
	buf = calloc(pages ? pages : 1, IT_PAGE);
	assert_non_null(buf);
	for (size_t i = 0; i < n; i++) {
		if (!ach || strcmp(json_string_value(json_object_get(ach, "name")), p[i].name)) {
			ach = json_pack("{s:s,s:[]}", "name", p[i].name, "blocks");
			if (shape_of && !strcmp(shape_of, p[i].name))
				json_object_set_new(ach, "shape", json_loads(shape, 0, NULL));
			json_array_append_new(arrays, ach);
		}
		json_array_append_new(json_object_get(ach, "blocks"),
				      json_pack("{s:I,s:[[i,i]],s:I}", "blk", (json_int_t)p[i].blk,
						"runs", (int)p[i].first, (int)p[i].count, "data",
						(json_int_t)off));
		for (uint32_t k = 0; k < p[i].count; k++, off += IT_PAGE)
			it_fill_page(buf + off, p[i].tag, p[i].first + k);
	}
	if (shape_of && n == 0)
		json_array_append_new(arrays, json_pack("{s:s,s:o}", "name", shape_of, "shape",
							json_loads(shape, 0, NULL)));
	fd = test_memfd(buf, off);
	free(buf);
	assert_true(fd >= 0);
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	assert_non_null(text);
	err = proto_send(c->fd, text, strlen(text), c->max_message, &fd, 1);
	free(text);
	close(fd);
	return err < 0 ? err : 0;
}

static long long commit_ok(struct tclient *c, const struct put *p, size_t n, const char *shape_of,
			   const char *shape)
{
	return it_commit_revision(commit_puts(c, p, n, shape_of, shape));
}

static long long create_ok(struct tclient *c, const char *name, const char *dtype,
			   const char *shape, const char *order, long long block_size)
{
	char bs[64] = "";
	json_t *r;
	long long rev;

	if (block_size)
		snprintf(bs, sizeof(bs), ",\"block_size\":%lld", block_size);
	r = it_ok(c, "{\"op\":\"create\",\"name\":\"%s\",\"dtype\":\"%s\",\"shape\":%s,"
		  "\"order\":\"%s\"%s}", name, dtype, shape, order, bs);
	rev = reply_int(r, "revision");
	json_decref(r);
	json_decref(it_ok(c, "{\"op\":\"sync\"}"));
	return rev;
}

static long long delete_ok(struct tclient *c, const char *name)
{
	json_t *r = it_ok(c, "{\"op\":\"delete\",\"name\":\"%s\"}", name);
	long long rev = reply_int(r, "revision");

	json_decref(r);
	json_decref(it_ok(c, "{\"op\":\"sync\"}"));
	return rev;
}

static char *hello_store(struct tclient *c, long long *rev)
{
	json_t *r;
	char *s;
	int fds[4], nfds = 0;

	assert_int_equal(tclient_connect(c, broker.socket), 0);
	r = tclient_call(c, NULL, 0, fds, &nfds, "{\"op\":\"hello\",\"version\":1}");
	assert_true(reply_ok(r));
	assert_int_equal(nfds, 1);
	c->pool_fd = fds[0];
	c->max_message = (size_t)reply_int(r, "max_message");
	s = strdup(json_string_value(json_object_get(r, "store")));
	assert_non_null(s);
	if (rev)
		*rev = reply_int(r, "revision");
	json_decref(r);
	return s;
}

/* What a block must hold: page p (of its block_size / 4096) filled with
 * (tags[p], p), or zeros where tags[p] is 0. */
struct exp_block {
	uint64_t blk;
	uint32_t tags[16];
};

/* Open name (at the snapshot, or at rev with a pin when rev >= 0) and check
 * that exactly the blocks of exp are stored, with exp's content, bytes past
 * the array's end reading as zero.  Returns the open reply's meta (owned). */
static json_t *check_array(struct tclient *c, const char *name, long long rev,
			   const struct exp_block *exp, size_t nexp)
{
	json_t *r, *meta, *blocks, *pr;
	unsigned char *want, *got;
	uint64_t bs, nbytes;
	size_t i;

	if (rev < 0)
		r = it_ok(c, "{\"op\":\"open\",\"name\":\"%s\"}", name);
	else
		r = it_ok(c, "{\"op\":\"open\",\"name\":\"%s\",\"revision\":%lld,\"pin\":true}", name,
			  rev);
	meta = json_incref(json_object_get(r, "meta"));
	blocks = json_object_get(r, "blocks");
	bs = (uint64_t)json_integer_value(json_object_get(meta, "block_size"));
	nbytes = (uint64_t)json_integer_value(json_object_get(meta, "nbytes"));
	assert_true(bs >= IT_PAGE && bs <= 16 * IT_PAGE);
	if (json_array_size(blocks) != nexp) {
		char *t = json_dumps(blocks, JSON_COMPACT);

		fprintf(stderr, "%s at %lld: blocks %s, want %zu stored\n", name, rev, t, nexp);
		free(t);
	}
	assert_int_equal(json_array_size(blocks), nexp);
	json_array_foreach(blocks, i, pr) {
		uint64_t b = (uint64_t)json_integer_value(json_array_get(pr, 0));
		bool listed = false;

		for (size_t k = 0; k < nexp; k++)
			listed |= exp[k].blk == b;
		if (!listed)
			fail_msg("%s at %lld: block %" PRIu64 " is stored but should be a hole", name,
				 rev, b);
	}
	want = malloc(bs);
	got = malloc(bs);
	assert_non_null(want);
	assert_non_null(got);
	for (size_t k = 0; k < nexp; k++) {
		long long off = it_block_off(blocks, exp[k].blk);
		uint64_t base = exp[k].blk * bs;

		if (off < 0)
			fail_msg("%s at %lld: block %" PRIu64 " is missing (a hole)", name, rev,
				 exp[k].blk);
		memset(want, 0, bs);
		for (uint32_t p = 0; p < bs / IT_PAGE; p++)
			if (exp[k].tags[p])
				it_fill_page(want + (size_t)p * IT_PAGE, exp[k].tags[p], p);
		if (base + bs > nbytes)
			memset(want + (nbytes > base ? nbytes - base : 0), 0,
			       bs - (nbytes > base ? nbytes - base : 0));
		assert_int_equal(pread(c->pool_fd, got, bs, (off_t)off), (ssize_t)bs);
		if (memcmp(want, got, bs)) {
			size_t at = 0;

			while (want[at] == got[at])
				at++;
			fail_msg("%s at %lld: block %" PRIu64 " differs from what was committed, first "
				 "at byte %zu (page %zu)", name, rev, exp[k].blk, at, at / IT_PAGE);
		}
	}
	free(want);
	free(got);
	json_decref(r);
	if (rev >= 0)
		json_decref(it_ok(c, "{\"op\":\"unpin\",\"revision\":%lld}", rev));
	return meta;
}

static long long stat_stored(struct tclient *c, const char *name)
{
	json_t *r = it_ok(c, "{\"op\":\"stat\",\"name\":\"%s\"}", name);
	long long n = json_integer_value(json_object_get(json_object_get(r, "meta"), "blocks_stored"));

	json_decref(r);
	return n;
}

static json_t *list_arrays(struct tclient *c)
{
	json_t *r = it_ok(c, "{\"op\":\"list\"}");
	json_t *a = json_incref(json_object_get(r, "arrays"));

	json_decref(r);
	return a;
}

static void assert_json_equal(json_t *a, json_t *b, const char *what)
{
	if (!json_equal(a, b)) {
		char *ta = json_dumps(a, JSON_COMPACT), *tb = json_dumps(b, JSON_COMPACT);

		fprintf(stderr, "%s:\n  before: %s\n  after:  %s\n", what, ta, tb);
		free(ta);
		free(tb);
		fail_msg("%s differ(s) after the restart", what);
	}
}

#define P16(t) { t, t, t, t, t, t, t, t, t, t, t, t, t, t, t, t }
#define NEL(a) (sizeof(a) / sizeof((a)[0]))

/* ---- round trip --------------------------------------------------------------- */

/* The expected content of every array at the head and at two older revisions
 * (the history the test builds is in test_round_trip). */
struct rt {
	long long r_old;  /* after the page-granular f8 update, before the deletes */
	long long r_re1;  /* the first incarnation of "re" holds data */
	long long head;
	long long max_id;
};

static void check_head(struct tclient *c)
{
	const struct exp_block f8[] = {
		{ 0, { 101, 101, 101, 101, 113, 113, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101 } },
		{ 1, { 102, 102, 102, 102, 102, 102, 102, 102, 102, 102, 102, 102, 102, 0, 0, 0 } },
		{ 2, { 112, 112, 112, 112 } },
	};
	const struct exp_block sparse[] = {
		{ 0, { 104, 104 } },
		{ 5000, { 0, 0, 0, 105 } },
		{ 16383, { [15] = 106 } },
	};
	const struct exp_block c16[] = { { 0, { 107 } } };
	const struct exp_block re[] = { { 2, { [7] = 111 } } };
	json_t *m;

	m = check_array(c, "f8", -1, f8, NEL(f8));
	assert_int_equal(json_integer_value(json_object_get(m, "nbytes")), 160000);
	json_decref(m);
	json_decref(check_array(c, "i4F", -1, NULL, 0)); /* shrunk and grown again: holes */
	json_decref(check_array(c, "sparse", -1, sparse, NEL(sparse)));
	json_decref(check_array(c, "c16", -1, c16, NEL(c16)));
	json_decref(check_array(c, "re", -1, re, NEL(re)));
	json_decref(it_err(c, "not_found", "{\"op\":\"open\",\"name\":\"gone\"}"));
	json_decref(it_err(c, "not_found", "{\"op\":\"stat\",\"name\":\"gone\"}"));
	assert_int_equal(stat_stored(c, "f8"), 3);
	assert_int_equal(stat_stored(c, "i4F"), 0);
	assert_int_equal(stat_stored(c, "sparse"), 3);
	assert_int_equal(stat_stored(c, "c16"), 1);
	assert_int_equal(stat_stored(c, "re"), 1);
}

static void check_history(struct tclient *c, const struct rt *rt)
{
	const struct exp_block f8[] = {
		{ 0, { 101, 101, 101, 101, 109, 109, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101 } },
		{ 1, { 102, 102, 102, 102, 102, 102, 102, 102, 102, 102, 102, 102, 102, 0, 0, 0 } },
	};
	const struct exp_block i4f[] = { { 3, { 103, 103, 103, 103 } } };
	const struct exp_block gone[] = { { 2, P16(108) } };
	const struct exp_block re1[] = { { 1, P16(110) } };
	json_t *m, *r, *names;
	size_t i;

	m = check_array(c, "f8", rt->r_old, f8, NEL(f8));
	assert_int_equal(json_integer_value(json_object_get(m, "nbytes")), 120000);
	json_decref(m);
	m = check_array(c, "i4F", rt->r_old, i4f, NEL(i4f));
	assert_int_equal(json_integer_value(json_object_get(m, "nbytes")), 120000);
	json_decref(m);
	json_decref(check_array(c, "gone", rt->r_old, gone, NEL(gone)));
	json_decref(check_array(c, "re", rt->r_old, NULL, 0));
	m = check_array(c, "re", rt->r_re1, re1, NEL(re1));
	assert_int_equal(json_integer_value(json_object_get(m, "nbytes")), 2 * IT_BLOCK);
	json_decref(m);

	/* the snapshot itself can go back there, and the catalog is as it was */
	r = it_ok(c, "{\"op\":\"sync\",\"revision\":%lld}", rt->r_old);
	assert_int_equal(reply_int(r, "revision"), rt->r_old);
	json_decref(r);
	names = list_arrays(c);
	assert_int_equal(json_array_size(names), 6);
	json_array_foreach(names, i, m) {
		const char *want[] = { "c16", "f8", "gone", "i4F", "re", "sparse" };

		assert_string_equal(json_string_value(json_object_get(m, "name")), want[i]);
	}
	json_decref(names);
	json_decref(check_array(c, "gone", -1, gone, NEL(gone)));
	r = it_ok(c, "{\"op\":\"sync\"}");
	assert_int_equal(reply_int(r, "revision"), rt->head);
	json_decref(r);
}

static void test_round_trip(void **state)
{
	struct rt rt = { 0 };
	struct tclient a, b;
	json_t *list0, *list1, *stats0, *r, *e;
	char *store0, *store1, path[400];
	long long head1, rev, id;
	size_t i;

	(void)state;
	it_start(&broker, "{\"retention\":{\"revisions\":1000,\"seconds\":0}}");
	data_file(&broker, "data.mdb", path, sizeof(path));
	assert_true(file_exists(path)); /* data_dir was created, the store made */
	store0 = hello_store(&a, NULL);

	create_ok(&a, "f8", "<f8", "[3,5000]", "C", 0);		    /* 120000 B: 2 blocks */
	create_ok(&a, "i4F", ">i4", "[100,300]", "F", 16384);	    /* 8 blocks of 16 KiB */
	create_ok(&a, "sparse", "|u1", "[1073741824]", "C", 0);	    /* 16384 blocks */
	create_ok(&a, "c16", "<c16", "[]", "C", 0);		    /* 16 bytes */
	create_ok(&a, "gone", "|u1", "[262144]", "C", 0);
	create_ok(&a, "re", "<u2", "[65536]", "C", 0);		    /* 2 blocks */
	{
		const struct put p1[] = { { "f8", 0, 0, 16, 101 } };
		const struct put p2[] = { { "f8", 1, 0, 13, 102 }, { "i4F", 3, 0, 4, 103 } };
		const struct put p3[] = { { "sparse", 0, 0, 2, 104 },
					  { "sparse", 5000, 3, 1, 105 },
					  { "sparse", 16383, 15, 1, 106 } };
		const struct put p4[] = { { "c16", 0, 0, 1, 107 } };
		const struct put p5[] = { { "gone", 2, 0, 16, 108 } };
		const struct put p6[] = { { "f8", 0, 4, 2, 109 } };

		commit_ok(&a, p1, NEL(p1), NULL, NULL);
		commit_ok(&a, p2, NEL(p2), NULL, NULL); /* two arrays, one revision */
		commit_ok(&a, p3, NEL(p3), NULL, NULL);
		commit_ok(&a, p4, NEL(p4), NULL, NULL);
		commit_ok(&a, p5, NEL(p5), NULL, NULL);
		rt.r_old = commit_ok(&a, p6, NEL(p6), NULL, NULL);
	}
	delete_ok(&a, "gone");
	{
		const struct put p7[] = { { "re", 1, 0, 16, 110 } };
		const struct put p8[] = { { "re", 2, 7, 1, 111 } };
		const struct put p9[] = { { "f8", 2, 0, 4, 112 } };
		const struct put p10[] = { { "f8", 0, 4, 2, 113 } };

		rt.r_re1 = commit_ok(&a, p7, NEL(p7), NULL, NULL);
		delete_ok(&a, "re");
		create_ok(&a, "re", "<u2", "[98304]", "C", 0); /* a new incarnation: 3 blocks */
		commit_ok(&a, p8, NEL(p8), NULL, NULL);
		commit_ok(&a, p9, NEL(p9), "f8", "[4,5000]"); /* grow + data */
		commit_ok(&a, p10, NEL(p10), NULL, NULL);
	}
	commit_ok(&a, NULL, 0, "i4F", "[100,100]"); /* shrink: block 3 goes */
	rt.head = commit_ok(&a, NULL, 0, "i4F", "[100,300]"); /* grow: holes, not old data */

	/* before the crash: what the broker says now */
	check_head(&a);
	check_history(&a, &rt);
	list0 = list_arrays(&a);
	json_array_foreach(list0, i, e)
		if (json_integer_value(json_object_get(e, "id")) > rt.max_id)
			rt.max_id = json_integer_value(json_object_get(e, "id"));
	r = it_ok(&a, "{\"op\":\"stats\"}");
	stats0 = json_incref(json_object_get(r, "stats"));
	json_decref(r);
	assert_int_equal(json_integer_value(json_object_get(stats0, "head")), rt.head);
	tclient_close(&a);

	harness_kill(&broker);
	restart(&broker);

	store1 = hello_store(&b, &head1);
	assert_string_equal(store1, store0); /* the same store */
	assert_int_equal(head1, rt.head);
	list1 = list_arrays(&b);
	assert_json_equal(list0, list1, "the arrays (list)");
	r = it_ok(&b, "{\"op\":\"stats\"}");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "stats"), "head")),
			 rt.head);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "stats"),
							    "oldest_kept")),
			 json_integer_value(json_object_get(stats0, "oldest_kept")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "stats"), "arrays")),
			 json_integer_value(json_object_get(stats0, "arrays")));
	json_decref(r);
	check_head(&b);
	check_history(&b, &rt);

	/* the sparse array's holes were not stored: 1 GiB of nbytes, 3 blocks */
	{
		struct stat sb;

		assert_int_equal(stat(path, &sb), 0);
		if ((uint64_t)sb.st_blocks * 512 > (64u << 20))
			fail_msg("data.mdb uses %lld bytes on disk for about 1 MiB of data: holes "
				 "stored?", (long long)sb.st_blocks * 512);
	}

	/* revisions go on from the head; a new incarnation gets a new id */
	{
		const struct put p[] = { { "c16", 0, 0, 1, 120 } };
		const struct exp_block c16[] = { { 0, { 120 } } };

		rev = commit_ok(&b, p, NEL(p), NULL, NULL);
		assert_int_equal(rev, rt.head + 1);
		json_decref(check_array(&b, "c16", -1, c16, NEL(c16)));
	}
	r = it_ok(&b, "{\"op\":\"create\",\"name\":\"gone\",\"dtype\":\"|u1\",\"shape\":[10]}");
	assert_int_equal(reply_int(r, "revision"), rt.head + 2);
	json_decref(r);
	json_decref(it_ok(&b, "{\"op\":\"sync\"}"));
	r = it_ok(&b, "{\"op\":\"stat\",\"name\":\"gone\"}");
	id = json_integer_value(json_object_get(json_object_get(r, "meta"), "id"));
	json_decref(r);
	if (id <= rt.max_id)
		fail_msg("a new array got id %lld, not above the ids before the restart (up to %lld)",
			 id, rt.max_id);
	tclient_close(&b);

	/* a clean stop and a second start keep it all, the new commits too */
	stop_keep(&broker);
	restart(&broker);
	free(store1);
	store1 = hello_store(&b, &head1);
	assert_string_equal(store1, store0);
	assert_int_equal(head1, rt.head + 2);
	{
		const struct exp_block c16[] = { { 0, { 120 } } };

		json_decref(check_array(&b, "c16", -1, c16, NEL(c16)));
		json_decref(check_array(&b, "gone", -1, NULL, 0));
	}
	rt.head += 2;
	check_history(&b, &rt);
	tclient_close(&b);

	json_decref(list0);
	json_decref(list1);
	json_decref(stats0);
	free(store0);
	free(store1);
	it_stop(&broker);
}

/* ---- the same through libshm, and an ArrayRef across the crash -------------------- */

static void test_libshm_reconnect_and_ref(void **state)
{
	const uint64_t shape[2] = { 1000, 100 }; /* 800000 B of <f8: 13 blocks */
	struct shma_array_info info;
	struct shma_ref ref;
	struct shma_view v, rv;
	shma_conn *c = NULL, *d = NULL;
	shma_array *x = NULL, *rx = NULL, *y = NULL;
	uint64_t rev1, rev2, rev3;
	double *p;
	const double *q;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	IT_OK(c, shma_connect(broker.socket, NULL, &c));
	IT_OK(c, shma_create(c, "m", "<f8", 2, shape, 'F', 0, NULL));
	IT_OK(c, shma_sync(c, NULL));
	IT_OK(c, shma_open(c, "m", &x));
	p = shma_array_data(x);
	for (size_t i = 0; i < 100000; i++)
		p[i] = (double)i * 0.5;
	IT_OK(c, shma_commit(c, &rev1));
	IT_OK(c, shma_view_of(x, &v));
	IT_OK(c, shma_ref_make(&v, &ref)); /* names rev1 */
	assert_int_equal(ref.revision, rev1);
	p = shma_array_data(x);
	p[7] = -1;
	p[99999] = -2;
	IT_OK(c, shma_commit(c, &rev2));

	harness_kill(&broker);
	assert_int_equal(shma_sync(c, NULL), SHMA_EDISCONNECTED);
	restart(&broker);
	IT_OK(c, shma_reconnect(c));
	assert_int_equal(shma_revision(c), rev2);
	shma_array_info(x, &info);
	assert_false(info.deleted);
	assert_string_equal(info.dtype, "<f8");
	assert_int_equal(info.order, 'F');
	assert_int_equal(info.ndim, 2);
	assert_int_equal(info.shape[0], 1000);
	assert_int_equal(info.shape[1], 100);
	q = shma_array_data(x);
	for (size_t i = 0; i < 100000; i++) {
		double want = i == 7 ? -1 : i == 99999 ? -2 : (double)i * 0.5;

		if (q[i] != want)
			fail_msg("item %zu is %g after the restart, committed %g", i, q[i], want);
	}

	/* the ref made before the crash: same store, rev1 still retained */
	IT_OK(NULL, shma_ref_open(&ref, 0, &rx, &rv));
	assert_int_equal(shma_array_revision(rx), rev1);
	q = (const double *)rv.data;
	assert_true(q[7] == 3.5);
	assert_true(q[99999] == 49999.5);
	shma_close(&rx);

	/* the next commit is the next revision, and others see it */
	p = shma_array_data(x);
	p[8] = 42;
	IT_OK(c, shma_commit(c, &rev3));
	assert_int_equal(rev3, rev2 + 1);
	IT_OK(d, shma_connect(broker.socket, NULL, &d));
	IT_OK(d, shma_open(d, "m", &y));
	q = shma_array_data(y);
	assert_true(q[8] == 42 && q[7] == -1 && q[9] == 4.5);
	shma_close(&y);
	shma_disconnect(&d);
	shma_close(&x);
	shma_disconnect(&c);
	it_stop(&broker);
}

/* ---- the layout the other tests rely on ------------------------------------------------ */

static void test_layout(void **state)
{
	struct tclient a;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, arrays, blocks;
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_stat ms;
	json_t *r;
	long long id, rev1, rev2, rev3;
	bool seen1 = false, seen6 = false, seen6b = false;
	int rc, nrec = 0;

	(void)state;
	it_start(&broker, NULL);
	it_open_client(&a, &broker);
	it_create(&a, "lay", 8 * IT_BLOCK, 0);
	rev1 = it_commit_ok(&a, "lay", 1, 0, IT_PPB, 1);
	rev2 = it_commit_ok(&a, "lay", 6, 3, 1, 2);
	rev3 = it_commit_ok(&a, "lay", 6, 4, 1, 3); /* a second version of block 6 */
	r = it_ok(&a, "{\"op\":\"stat\",\"name\":\"lay\"}");
	id = json_integer_value(json_object_get(json_object_get(r, "meta"), "id"));
	json_decref(r);
	tclient_close(&a);
	stop_keep(&broker);

	env = store_env(&broker, MDB_RDONLY);
	mdb_check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
	mdb_check(mdb_dbi_open(txn, "meta", 0, &meta), "mdb_dbi_open(meta)");
	mdb_check(mdb_dbi_open(txn, "arrays", 0, &arrays), "mdb_dbi_open(arrays)");
	mdb_check(mdb_dbi_open(txn, "blocks", 0, &blocks), "mdb_dbi_open(blocks)");
	k.mv_data = "format";
	k.mv_size = 6;
	mdb_check(mdb_get(txn, meta, &k, &v), "meta \"format\"");
	assert_int_equal(v.mv_size, 12);
	assert_memory_equal(v.mv_data, "shma-store 1", 12);
	for (const char *const *key = (const char *const[]){ "id", "head", "oldest", "next_id", NULL };
	     *key; key++) {
		k.mv_data = (void *)*key;
		k.mv_size = strlen(*key);
		rc = mdb_get(txn, meta, &k, &v);
		if (rc)
			fail_msg("meta \"%s\": %s", *key, mdb_strerror(rc));
	}
	mdb_check(mdb_stat(txn, arrays, &ms), "mdb_stat(arrays)");
	assert_true(ms.ms_entries >= 1);

	/* every block value checks; keys are (array id, block, revision) */
	mdb_check(mdb_cursor_open(txn, blocks, &cur), "mdb_cursor_open");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const unsigned char *kp = k.mv_data, *vp = v.mv_data;
		uint32_t want;
		uint64_t aid, blk, rev;

		nrec++;
		assert_int_equal(k.mv_size, 24);
		aid = be64(kp);
		blk = be64(kp + 8);
		rev = be64(kp + 16);
		assert_true(v.mv_size > 4);
		want = (uint32_t)vp[0] | (uint32_t)vp[1] << 8 | (uint32_t)vp[2] << 16 |
		       (uint32_t)vp[3] << 24;
		if (crc32c(vp + 4, v.mv_size - 4) != want)
			fail_msg("blocks record (%" PRIu64 ", %" PRIu64 ", %" PRIu64 "): CRC-32C %08x, "
				 "the value's own %08x", aid, blk, rev, crc32c(vp + 4, v.mv_size - 4),
				 want);
		if (aid != (uint64_t)id)
			fail_msg("blocks record for array id %" PRIu64 ": the only array is %lld", aid,
				 id);
		if (blk == 1 && rev == (uint64_t)rev1)
			seen1 = true;
		else if (blk == 6 && rev == (uint64_t)rev2)
			seen6 = true;
		else if (blk == 6 && rev == (uint64_t)rev3)
			seen6b = true;
		else
			fail_msg("a blocks record for block %" PRIu64 " at revision %" PRIu64
				 " that no commit wrote", blk, rev);
	}
	assert_int_equal(rc, MDB_NOTFOUND);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	/* the default retention (16 revisions) keeps both versions of block 6:
	 * the store must hold them to bring that history back */
	assert_true(seen1 && seen6 && seen6b);
	assert_int_equal(nrec, 3);
	harness_cleanup(&broker);
}

/* ---- refusals ------------------------------------------------------------------------ */

/* A store with something in it, and the broker stopped. */
static void make_store(struct harness *h)
{
	struct tclient a;

	it_start(h, NULL);
	it_open_client(&a, h);
	it_create(&a, "d", 4 * IT_BLOCK, 0);
	it_commit_ok(&a, "d", 0, 0, IT_PPB, 1);
	it_commit_ok(&a, "d", 2, 0, 4, 2);
	tclient_close(&a);
	stop_keep(h);
}

/* The size of data.mdb that LMDB uses (up to its last page). */
static off_t store_used(struct harness *h)
{
	MDB_env *env = store_env(h, MDB_RDONLY);
	MDB_envinfo info;
	MDB_stat st;

	mdb_check(mdb_env_info(env, &info), "mdb_env_info");
	mdb_check(mdb_env_stat(env, &st), "mdb_env_stat");
	mdb_env_close(env);
	return (off_t)(info.me_last_pgno + 1) * st.ms_psize;
}

static void truncate_case(off_t (*to)(off_t used, off_t size))
{
	char path[400], *said;
	off_t used, size, len;

	make_store(&broker);
	data_file(&broker, "data.mdb", path, sizeof(path));
	used = store_used(&broker);
	size = file_size(path);
	len = to(used, size);
	fprintf(stderr, "    data.mdb: %lld bytes, %lld used by LMDB; truncated to %lld\n",
		(long long)size, (long long)used, (long long)len);
	assert_true(len < used);
	assert_int_equal(truncate(path, len), 0);
	said = start_refused(&broker);
	assert_says(&broker, said, "truncated|format");
	free(said);
	harness_cleanup(&broker);
}

static off_t half_used(off_t used, off_t size)
{
	off_t half = (used < size ? used : size) / 2;

	return half - half % 4096;
}

static off_t one_page(off_t used, off_t size)
{
	(void)used;
	(void)size;
	return 4096;
}

static void test_refuse_truncated_half(void **state)
{
	(void)state;
	truncate_case(half_used);
}

static void test_refuse_truncated_to_one_page(void **state)
{
	(void)state;
	truncate_case(one_page);
}

/* Flip the last byte of one value of "blocks" (the first record, or the
 * last). */
static void flip_block_byte(struct harness *h, bool last)
{
	MDB_env *env = store_env(h, 0);
	MDB_txn *txn;
	MDB_dbi blocks;
	MDB_cursor *cur;
	MDB_val k, v, nv;
	unsigned char key[24], *val;

	mdb_check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
	mdb_check(mdb_dbi_open(txn, "blocks", 0, &blocks), "mdb_dbi_open(blocks)");
	mdb_check(mdb_cursor_open(txn, blocks, &cur), "mdb_cursor_open");
	mdb_check(mdb_cursor_get(cur, &k, &v, last ? MDB_LAST : MDB_FIRST), "first block record");
	assert_int_equal(k.mv_size, sizeof(key));
	memcpy(key, k.mv_data, sizeof(key));
	val = malloc(v.mv_size);
	assert_non_null(val);
	memcpy(val, v.mv_data, v.mv_size); /* the map is read-only: change a copy */
	val[v.mv_size - 1] ^= 0x01;
	mdb_cursor_close(cur);
	k.mv_data = key;
	nv.mv_data = val;
	nv.mv_size = v.mv_size;
	mdb_check(mdb_put(txn, blocks, &k, &nv, 0), "mdb_put");
	mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
	mdb_env_close(env);
	free(val);
}

static void test_refuse_checksum(void **state)
{
	char *said;

	(void)state;
	make_store(&broker);
	flip_block_byte(&broker, false);
	said = start_refused(&broker);
	assert_says(&broker, said, "checksum");
	free(said);
	harness_cleanup(&broker);

	make_store(&broker); /* and the newest record */
	flip_block_byte(&broker, true);
	said = start_refused(&broker);
	assert_says(&broker, said, "checksum");
	free(said);
	harness_cleanup(&broker);
}

static void set_format(struct harness *h, const char *fmt)
{
	MDB_env *env = store_env(h, 0);
	MDB_txn *txn;
	MDB_dbi meta;
	MDB_val k = { 6, (void *)"format" }, v = { strlen(fmt), (void *)fmt };

	mdb_check(mdb_txn_begin(env, NULL, 0, &txn), "mdb_txn_begin");
	mdb_check(mdb_dbi_open(txn, "meta", 0, &meta), "mdb_dbi_open(meta)");
	mdb_check(mdb_put(txn, meta, &k, &v, 0), "mdb_put");
	mdb_check(mdb_txn_commit(txn), "mdb_txn_commit");
	mdb_env_close(env);
}

static void test_refuse_newer_format(void **state)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
	MDB_val k = { 6, (void *)"format" }, v;
	char *said;

	(void)state;
	make_store(&broker);
	set_format(&broker, "shma-store 999");
	said = start_refused(&broker);
	assert_says(&broker, said, "format");
	free(said);
	/* and it left the store alone */
	env = store_env(&broker, MDB_RDONLY);
	mdb_check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
	mdb_check(mdb_dbi_open(txn, "meta", 0, &meta), "mdb_dbi_open(meta)");
	mdb_check(mdb_get(txn, meta, &k, &v), "meta \"format\"");
	assert_int_equal(v.mv_size, 14);
	assert_memory_equal(v.mv_data, "shma-store 999", 14);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	harness_cleanup(&broker);
}

static void test_refuse_not_a_store(void **state)
{
	char path[400], *said;
	FILE *f;

	(void)state;
	make_store(&broker);
	data_file(&broker, "data.mdb", path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	data_file(&broker, "lock.mdb", path, sizeof(path));
	unlink(path);
	data_file(&broker, "hello.txt", path, sizeof(path));
	f = fopen(path, "we");
	assert_non_null(f);
	fputs("not yours\n", f);
	fclose(f);
	said = start_refused(&broker);
	assert_says(&broker, said, "not a shma store|store");
	free(said);
	/* nothing made there: a refused directory must not become a store */
	data_file(&broker, "data.mdb", path, sizeof(path));
	if (file_exists(path))
		fail_msg("the broker refused %s but created data.mdb in it", path);
	data_file(&broker, "hello.txt", path, sizeof(path));
	assert_int_equal(file_size(path), 10);
	harness_cleanup(&broker);
}

/* ---- out of room -------------------------------------------------------------------- */

static void assert_room_error(json_t *r, const char *what)
{
	char *t = r ? json_dumps(r, JSON_COMPACT) : NULL;

	fprintf(stderr, "    %s: %s\n", what, t ? t : "(connection ended)");
	free(t);
	if (!r)
		fail_msg("%s: the connection ended (the broker died?)", what);
	if (reply_ok(r))
		fail_msg("%s: the commit succeeded", what);
	if (strcmp(reply_code(r), "no_space") && strcmp(reply_code(r), "io"))
		fail_msg("%s: error \"%s\", want \"no_space\" or \"io\"", what, reply_code(r));
}

/* 64 whole blocks of "big" (4 MiB), plus a block of "small" that only this
 * commit touches. */
static json_t *commit_big(struct tclient *c, uint32_t tag, bool with_small)
{
	struct put p[65];
	size_t n = 0;

	for (uint64_t b = 0; b < 64; b++)
		p[n++] = (struct put){ "big", b, 0, IT_PPB, tag };
	if (with_small)
		p[n++] = (struct put){ "small", 1, 0, IT_PPB, tag + 1 };
	return commit_puts(c, p, n, NULL, NULL);
}

static void check_big(struct tclient *c, uint32_t tag)
{
	struct exp_block e[64];

	for (uint64_t b = 0; b < 64; b++) {
		e[b].blk = b;
		for (int p = 0; p < 16; p++)
			e[b].tags[p] = tag;
	}
	json_decref(check_array(c, "big", -1, e, 64));
}

static void test_disk_full(void **state)
{
	const struct exp_block small1[] = { { 0, P16(1) } };
	const struct exp_block small2[] = { { 0, P16(1) }, { 2, P16(61) } };
	struct rlimit old, lim;
	struct tclient a, b;
	char path[400];
	long long head0, slots0, rev;
	off_t size;
	json_t *r;

	(void)state;
	it_start(&broker, NULL);
	it_open_client(&a, &broker);
	it_create(&a, "small", 4 * IT_BLOCK, 0);
	it_create(&a, "big", 64 * IT_BLOCK, 0);
	it_commit_ok(&a, "small", 0, 0, IT_PPB, 1);
	head0 = it_stat(&a, "head");
	slots0 = it_stat(&a, "slots");
	data_file(&broker, "data.mdb", path, sizeof(path));
	size = file_size(path);
	assert_true(size > 0);

	/* the broker may not grow any file past data.mdb's size now */
	assert_int_equal(prlimit(broker.pid, RLIMIT_FSIZE, NULL, &old), 0);
	lim.rlim_cur = (rlim_t)size;
	lim.rlim_max = old.rlim_max;
	assert_int_equal(prlimit(broker.pid, RLIMIT_FSIZE, &lim, NULL), 0);
	fprintf(stderr, "    data.mdb %lld bytes: RLIMIT_FSIZE soft limit set to that\n",
		(long long)size);

	r = commit_big(&a, 50, true);
	assert_room_error(r, "a 4 MiB commit past RLIMIT_FSIZE");
	json_decref(r);

	/* nothing of it is visible, nothing was lost, the broker serves */
	assert_int_equal(it_stat(&a, "head"), head0);
	assert_int_equal(it_wait_stat(&a, "slots", slots0, 3000), slots0);
	json_decref(check_array(&a, "small", -1, small1, NEL(small1)));
	json_decref(check_array(&a, "big", -1, NULL, 0));
	it_open_client(&b, &broker);
	json_decref(check_array(&b, "small", -1, small1, NEL(small1)));
	json_decref(it_ok(&b, "{\"op\":\"list\"}"));
	tclient_close(&b);

	/* room again: commits work, and take the next revision */
	lim.rlim_cur = old.rlim_cur;
	assert_int_equal(prlimit(broker.pid, RLIMIT_FSIZE, &lim, NULL), 0);
	r = commit_big(&a, 60, false);
	if (!reply_ok(r))
		assert_room_error(r, "the same commit once the limit is lifted");
	rev = reply_int(r, "revision");
	json_decref(r);
	assert_int_equal(rev, head0 + 1);
	{
		const struct put p[] = { { "small", 2, 0, 16, 61 } };

		assert_int_equal(commit_ok(&a, p, 1, NULL, NULL), head0 + 2);
	}
	tclient_close(&a);

	/* and a restart agrees: everything acknowledged, nothing of the failure */
	harness_kill(&broker);
	restart(&broker);
	it_open_client(&a, &broker);
	assert_int_equal(it_stat(&a, "head"), head0 + 2);
	check_big(&a, 60);
	json_decref(check_array(&a, "small", -1, small2, NEL(small2)));
	tclient_close(&a);
	it_stop(&broker);
}

/* store_size: the most the store may hold.  A commit that does not fit
 * fails; the broker goes on; smaller commits fit. */
static void test_store_size_full(void **state)
{
	const struct exp_block small1[] = { { 0, P16(1) }, { 3, P16(2) } };
	struct tclient a;
	long long head0, rev;
	json_t *r;

	(void)state;
	it_start(&broker, "{\"store_size\":\"2MiB\"}");
	it_open_client(&a, &broker);
	it_create(&a, "small", 4 * IT_BLOCK, 0);
	it_create(&a, "big", 64 * IT_BLOCK, 0);
	it_commit_ok(&a, "small", 0, 0, IT_PPB, 1);
	head0 = it_stat(&a, "head");
	r = commit_big(&a, 50, true); /* 4 MiB into a 2 MiB store */
	assert_room_error(r, "a 4 MiB commit into a 2 MiB store");
	assert_string_equal(reply_code(r), "no_space"); /* docs/CONFIG.md, store_size */
	json_decref(r);
	assert_int_equal(it_stat(&a, "head"), head0);
	rev = it_commit_ok(&a, "small", 3, 0, IT_PPB, 2);
	assert_int_equal(rev, head0 + 1);
	tclient_close(&a);
	harness_kill(&broker);
	restart(&broker);
	it_open_client(&a, &broker);
	assert_int_equal(it_stat(&a, "head"), head0 + 1);
	json_decref(check_array(&a, "small", -1, small1, NEL(small1)));
	json_decref(check_array(&a, "big", -1, NULL, 0));
	tclient_close(&a);
	it_stop(&broker);
}

/* Out of room with several clients at once: their changes share one sync,
 * so they may fail together.  Whatever each client is told holds: what was
 * acknowledged is there (in order, no gap in the revisions), what failed is
 * not, each client's connection goes on (its snapshot where it was), and a
 * restart agrees. */
static void test_disk_full_concurrent(void **state)
{
	struct tclient a, b, c;
	struct rlimit old, lim;
	json_t *ra, *rb, *rc;
	long long head0, head, n_ok = 0;
	bool ok_b, ok_c;
	char path[400];
	const struct put pb[] = { { "s1", 1, 0, 16, 51 } };

	(void)state;
	it_start(&broker, NULL);
	it_open_client(&a, &broker);
	it_open_client(&b, &broker);
	it_open_client(&c, &broker);
	it_create(&a, "big", 64 * IT_BLOCK, 0);
	it_create(&a, "s1", 4 * IT_BLOCK, 0);
	it_commit_ok(&a, "s1", 0, 0, IT_PPB, 1);
	json_decref(it_ok(&b, "{\"op\":\"sync\"}"));
	json_decref(it_ok(&c, "{\"op\":\"sync\"}"));
	head0 = it_stat(&c, "head");
	data_file(&broker, "data.mdb", path, sizeof(path));
	assert_int_equal(prlimit(broker.pid, RLIMIT_FSIZE, NULL, &old), 0);
	lim.rlim_cur = (rlim_t)file_size(path);
	lim.rlim_max = old.rlim_max;
	assert_int_equal(prlimit(broker.pid, RLIMIT_FSIZE, &lim, NULL), 0);

	/* three changes sent before any reply is read */
	{
		struct put pa[64];

		for (uint64_t k = 0; k < 64; k++)
			pa[k] = (struct put){ "big", k, 0, IT_PPB, 50 };
		assert_int_equal(commit_send(&a, pa, 64, NULL, NULL), 0);
	}
	assert_int_equal(commit_send(&b, pb, 1, NULL, NULL), 0);
	{
		const char *t = "{\"op\":\"create\",\"name\":\"made\",\"dtype\":\"|u1\",\"shape\":[8]}";

		assert_int_equal(tclient_send_raw(&c, t, strlen(t), NULL, 0), 0);
	}
	ra = tclient_recv(&a, 30000, NULL, NULL);
	rb = tclient_recv(&b, 30000, NULL, NULL);
	rc = tclient_recv(&c, 30000, NULL, NULL);
	assert_room_error(ra, "4 MiB past RLIMIT_FSIZE");
	ok_b = reply_ok(rb);
	ok_c = reply_ok(rc);
	if (!ok_b)
		assert_room_error(rb, "a small commit sent with it");
	if (!ok_c)
		assert_room_error(rc, "a create sent with it");
	fprintf(stderr, "    the small commit %s, the create %s\n", ok_b ? "made it" : "failed too",
		ok_c ? "made it" : "failed too");
	/* the acknowledged ones have the next revisions, no gap */
	n_ok = ok_b + ok_c;
	if (ok_b && ok_c)
		assert_true(reply_int(rb, "revision") != reply_int(rc, "revision"));
	if (ok_b)
		assert_true(reply_int(rb, "revision") > head0 &&
			    reply_int(rb, "revision") <= head0 + n_ok);
	if (ok_c)
		assert_true(reply_int(rc, "revision") > head0 &&
			    reply_int(rc, "revision") <= head0 + n_ok);
	json_decref(ra);
	json_decref(rb);
	json_decref(rc);
	assert_int_equal(it_stat(&a, "head"), head0 + n_ok);

	/* room again: each client retries on its own connection */
	lim.rlim_cur = old.rlim_cur;
	assert_int_equal(prlimit(broker.pid, RLIMIT_FSIZE, &lim, NULL), 0);
	ra = commit_big(&a, 60, false);
	if (!reply_ok(ra))
		assert_room_error(ra, "the big commit once the limit is lifted");
	json_decref(ra);
	if (!ok_b)
		commit_ok(&b, pb, 1, NULL, NULL);
	if (!ok_c)
		json_decref(it_ok(&c, "{\"op\":\"create\",\"name\":\"made\",\"dtype\":\"|u1\","
				  "\"shape\":[8]}"));
	head = it_stat(&c, "head");
	assert_int_equal(head, head0 + 3);
	tclient_close(&a);
	tclient_close(&b);
	tclient_close(&c);

	harness_kill(&broker);
	restart(&broker);
	it_open_client(&a, &broker);
	{
		const struct exp_block s1[] = { { 0, P16(1) }, { 1, P16(51) } };

		assert_int_equal(it_stat(&a, "head"), head);
		check_big(&a, 60);
		json_decref(check_array(&a, "s1", -1, s1, NEL(s1)));
		json_decref(check_array(&a, "made", -1, NULL, 0));
	}
	tclient_close(&a);
	it_stop(&broker);
}

/* Revisions kept by age (retention.seconds) are kept across a restart too. */
static void test_retention_by_time(void **state)
{
	struct tclient a;
	long long rev[6], oldest0;
	json_t *r;

	(void)state;
	it_start(&broker, "{\"retention\":{\"revisions\":1,\"seconds\":3600}}");
	it_open_client(&a, &broker);
	it_create(&a, "t", 2 * IT_BLOCK, 0);
	for (uint32_t k = 1; k <= 5; k++)
		rev[k] = it_commit_ok(&a, "t", 0, 0, IT_PPB, k);
	oldest0 = it_stat(&a, "oldest_kept");
	assert_true(oldest0 <= rev[1]);
	tclient_close(&a);
	harness_kill(&broker);
	restart(&broker);
	it_open_client(&a, &broker);
	assert_int_equal(it_stat(&a, "oldest_kept"), oldest0);
	for (uint32_t k = 1; k <= 5; k++) {
		const struct exp_block e[] = { { 0, P16(k) } };

		json_decref(check_array(&a, "t", rev[k], e, 1));
	}
	r = it_ok(&a, "{\"op\":\"sync\",\"revision\":%lld}", rev[2]);
	json_decref(r);
	tclient_close(&a);
	it_stop(&broker);
}

/* The store drops what no kept revision needs: overwriting one block many
 * times, or deleting an array, does not leave its old versions behind. */
static void test_compaction(void **state)
{
	const struct exp_block e[] = { { 0, P16(60) } };
	struct tclient a;
	long long id_cmp, id_del;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi blocks;
	MDB_cursor *cur;
	MDB_val k, v;
	char path[400];
	unsigned n_cmp = 0, n_del = 0, n_other = 0;
	json_t *r;
	int rc;

	(void)state;
	it_start(&broker, "{\"retention\":{\"revisions\":2,\"seconds\":0}}");
	it_open_client(&a, &broker);
	it_create(&a, "cmp", 2 * IT_BLOCK, 0);
	it_create(&a, "del", IT_BLOCK, 0);
	r = it_ok(&a, "{\"op\":\"stat\",\"name\":\"cmp\"}");
	id_cmp = json_integer_value(json_object_get(json_object_get(r, "meta"), "id"));
	json_decref(r);
	r = it_ok(&a, "{\"op\":\"stat\",\"name\":\"del\"}");
	id_del = json_integer_value(json_object_get(json_object_get(r, "meta"), "id"));
	json_decref(r);
	it_commit_ok(&a, "del", 0, 0, IT_PPB, 99);
	delete_ok(&a, "del");
	for (uint32_t t = 1; t <= 60; t++)
		it_commit_ok(&a, "cmp", 0, 0, IT_PPB, t);
	tclient_close(&a);
	stop_keep(&broker);

	data_file(&broker, "data.mdb", path, sizeof(path));
	fprintf(stderr, "    data.mdb after 60 x 64 KiB on one block, 2 revisions kept: %lld bytes\n",
		(long long)file_size(path));
	env = store_env(&broker, MDB_RDONLY);
	mdb_check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
	mdb_check(mdb_dbi_open(txn, "blocks", 0, &blocks), "mdb_dbi_open(blocks)");
	mdb_check(mdb_cursor_open(txn, blocks, &cur), "mdb_cursor_open");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t aid = be64(k.mv_data);

		n_cmp += aid == (uint64_t)id_cmp;
		n_del += aid == (uint64_t)id_del;
		n_other += aid != (uint64_t)id_cmp && aid != (uint64_t)id_del;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	fprintf(stderr, "    blocks records: %u of the overwritten array, %u of the deleted one\n",
		n_cmp, n_del);
	assert_int_equal(n_other, 0);
	assert_int_equal(n_del, 0);
	assert_true(n_cmp >= 1 && n_cmp <= 3);

	restart(&broker); /* and what is left is enough */
	it_open_client(&a, &broker);
	json_decref(check_array(&a, "cmp", -1, e, 1));
	tclient_close(&a);
	it_stop(&broker);
}

/* A client that sends a commit and goes away before the reply: whatever
 * others saw of it stays after a crash. */
static void test_client_gone_before_reply(void **state)
{
	struct tclient a, b;
	long long head0, head, head1;

	(void)state;
	it_start(&broker, NULL);
	it_open_client(&a, &broker);
	it_create(&a, "g", 2 * IT_BLOCK, 0);
	head0 = it_stat(&a, "head");
	{
		const struct put p[] = { { "g", 1, 0, 16, 7 } };

		assert_int_equal(commit_send(&a, p, 1, NULL, NULL), 0);
	}
	tclient_close(&a); /* without reading the reply */
	it_open_client(&b, &broker);
	head = it_stat(&b, "head");
	tclient_close(&b);
	harness_kill(&broker);
	restart(&broker);
	it_open_client(&b, &broker);
	head1 = it_stat(&b, "head");
	assert_int_equal(head1, head); /* what a reader saw is kept */
	assert_true(head1 == head0 || head1 == head0 + 1);
	if (head1 == head0 + 1) {
		const struct exp_block e[] = { { 1, P16(7) } };

		json_decref(check_array(&b, "g", -1, e, 1));
	} else {
		json_decref(check_array(&b, "g", -1, NULL, 0));
	}
	tclient_close(&b);
	it_stop(&broker);
}

/* Changes that arrive together share one sync (group commit).  Each client
 * whose commit was acknowledged as revision R has R as its snapshot, pinned,
 * even when its batch made more revisions than retention.revisions keeps:
 * its next commit, based on R, must not be refused as "invalid". */
static void test_group_commit_snapshots(void **state)
{
	enum { NC = 4, ROUNDS = 20 };
	struct tclient c[NC];
	long long rev[NC];
	char name[NC][8];
	int refused = 0;

	(void)state;
	it_start(&broker, "{\"retention\":{\"revisions\":1,\"seconds\":0}}");
	for (int i = 0; i < NC; i++) {
		it_open_client(&c[i], &broker);
		snprintf(name[i], sizeof(name[i]), "g%d", i);
		it_create(&c[i], name[i], IT_BLOCK, 0);
	}
	for (int i = 0; i < NC; i++)
		json_decref(it_ok(&c[i], "{\"op\":\"sync\"}"));
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < NC; i++) { /* all sent before any reply is read */
			const struct put p[] = { { name[i], 0, 0, 1, (uint32_t)(round * NC + i + 1) } };

			assert_int_equal(commit_send(&c[i], p, 1, NULL, NULL), 0);
		}
		for (int i = 0; i < NC; i++) {
			json_t *r = tclient_recv(&c[i], 30000, NULL, NULL);

			assert_non_null(r);
			if (!reply_ok(r)) {
				char *t = json_dumps(r, JSON_COMPACT);

				if (refused++ < 6)
					fprintf(stderr, "    round %d: client %d's commit: %s\n", round, i,
						t);
				free(t);
			}
			rev[i] = reply_int(r, "revision");
			json_decref(r);
		}
		for (int i = 0; i < NC; i++) { /* based on the acknowledged revision */
			const struct put p[] = { { name[i], 0, 1, 1, 7 } };
			json_t *r;

			assert_int_equal(commit_send_base(&c[i], rev[i], p, 1, NULL, NULL), 0);
			r = tclient_recv(&c[i], 30000, NULL, NULL);
			assert_non_null(r);
			if (!reply_ok(r)) {
				char *t = json_dumps(r, JSON_COMPACT);

				if (refused++ < 6)
					fprintf(stderr, "    round %d: client %d was told revision %lld, "
						"its next commit: %s\n", round, i, rev[i], t);
				free(t);
			}
			json_decref(r);
		}
	}
	for (int i = 0; i < NC; i++)
		tclient_close(&c[i]);
	if (refused)
		fail_msg("%d of %d commits were refused (each client commits to its own array)",
			 refused, 2 * NC * ROUNDS);
	it_stop(&broker);
}

/* ---- other configurations ------------------------------------------------------------- */

static void test_memory_only(void **state)
{
	struct tclient a;
	char dir[300], *s0, *s1;
	long long head;
	json_t *l;

	(void)state;
	it_start(&broker, "{\"data_dir\":false}");
	s0 = hello_store(&a, NULL);
	it_create(&a, "mem", IT_BLOCK, 0);
	it_commit_ok(&a, "mem", 0, 0, 1, 1);
	tclient_close(&a);
	data_dir(&broker, dir, sizeof(dir));
	assert_false(file_exists(dir));
	harness_kill(&broker);
	restart(&broker);
	s1 = hello_store(&a, &head);
	assert_int_equal(head, 0); /* nothing kept */
	assert_string_not_equal(s0, s1); /* another store */
	l = list_arrays(&a);
	assert_int_equal(json_array_size(l), 0);
	json_decref(l);
	assert_false(file_exists(dir));
	tclient_close(&a);
	free(s0);
	free(s1);
	it_stop(&broker);
}

/* data_dir null: $XDG_STATE_HOME/shma, else $HOME/.local/state/shma
 * (docs/CONFIG.md, Durability).  Both point into a directory of the test's. */
static void default_dir_case(const char *where)
{
	const struct exp_block e[] = { { 1, { [2] = 9 } } };
	char path[400];
	struct tclient a;
	long long head;

	it_start(&broker, "{\"data_dir\":null}");
	snprintf(path, sizeof(path), "%s/data.mdb", where);
	if (!file_exists(path))
		fail_msg("data_dir null: no store in %s", where);
	it_open_client(&a, &broker);
	it_create(&a, "dflt", 2 * IT_BLOCK, 0);
	head = it_commit_ok(&a, "dflt", 1, 2, 1, 9);
	tclient_close(&a);
	harness_kill(&broker);
	restart(&broker);
	it_open_client(&a, &broker);
	assert_int_equal(it_stat(&a, "head"), head);
	json_decref(check_array(&a, "dflt", -1, e, NEL(e)));
	tclient_close(&a);
	it_stop(&broker);
}

static void test_default_data_dir(void **state)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char xdg[300], home_dir[300];

	(void)state;
	snprintf(fake_home, sizeof(fake_home), "%s/shma-test-home-XXXXXX", tmp);
	assert_non_null(mkdtemp(fake_home));
	real_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	snprintf(xdg, sizeof(xdg), "%s/state", fake_home);
	setenv("HOME", fake_home, 1); /* whatever happens, not in the real home */
	setenv("XDG_STATE_HOME", xdg, 1);
	snprintf(xdg, sizeof(xdg), "%s/state/shma", fake_home);
	default_dir_case(xdg);

	unsetenv("XDG_STATE_HOME");
	snprintf(home_dir, sizeof(home_dir), "%s/.local/state/shma", fake_home);
	default_dir_case(home_dir);
}

/* "async" gives up the fsync, not the write: a broker process that dies
 * (the machine stays up) loses nothing it acknowledged. */
static void test_async_survives_kill(void **state)
{
	const struct exp_block e[] = { { 0, P16(1) }, { 1, { 2, 0, 0, 3 } } };
	struct tclient a;
	long long head;

	(void)state;
	it_start(&broker, "{\"durability\":\"async\"}");
	it_open_client(&a, &broker);
	it_create(&a, "as", 2 * IT_BLOCK, 0);
	it_commit_ok(&a, "as", 0, 0, IT_PPB, 1);
	it_commit_ok(&a, "as", 1, 0, 1, 2);
	head = it_commit_ok(&a, "as", 1, 3, 1, 3);
	tclient_close(&a);
	harness_kill(&broker);
	restart(&broker);
	it_open_client(&a, &broker);
	assert_int_equal(it_stat(&a, "head"), head);
	json_decref(check_array(&a, "as", -1, e, NEL(e)));
	tclient_close(&a);
	it_stop(&broker);
}

/* ---- found in review ------------------------------------------------------------- */

static long long array_id(struct tclient *c, const char *name)
{
	json_t *r = it_ok(c, "{\"op\":\"stat\",\"name\":\"%s\"}", name);
	long long id = json_integer_value(json_object_get(json_object_get(r, "meta"), "id"));

	json_decref(r);
	return id;
}

/* Ids are never reused, even of an incarnation compacted away before a
 * restart: a new array with a deleted one's id had its record deleted by
 * the old one's pending compaction (an acknowledged array lost, and a
 * store that would not start again). */
static void test_ids_not_reused_after_restart(void **state)
{
	struct tclient a;
	long long id_b, id_c;

	(void)state;
	it_start(&broker, "{\"retention\":{\"revisions\":1,\"seconds\":0}}");
	it_open_client(&a, &broker);
	it_create(&a, "a", IT_BLOCK, 0);
	it_create(&a, "b", IT_BLOCK, 0);
	id_b = array_id(&a, "b");
	json_decref(it_ok(&a, "{\"op\":\"delete\",\"name\":\"b\"}"));
	tclient_close(&a);
	harness_kill(&broker); /* before a tick compacts */
	assert_int_equal(harness_restart(&broker), 0);
	it_open_client(&a, &broker);
	it_commit_ok(&a, "a", 0, 0, 1, 1);
	it_commit_ok(&a, "a", 0, 0, 1, 2);
	it_sleep_ms(2500); /* ticks: the store's oldest passes b's deletion */
	json_decref(it_ok(&a, "{\"op\":\"stats\"}"));
	tclient_close(&a);
	harness_kill(&broker);
	assert_int_equal(harness_restart(&broker), 0);
	it_open_client(&a, &broker);
	it_create(&a, "c", IT_BLOCK, 0);
	id_c = array_id(&a, "c");
	assert_true(id_c > id_b);
	it_commit_ok(&a, "c", 0, 0, 1, 7);
	tclient_close(&a);
	harness_kill(&broker);
	assert_int_equal(harness_restart(&broker), 0);
	it_open_client(&a, &broker);
	assert_int_equal(array_id(&a, "c"), id_c);
	assert_true(it_block_page_is(&a, it_open_block(&a, "c", 0), 0, 7));
	tclient_close(&a);
	it_stop(&broker);
}

/* A shrink that also changes the new last block: the broker zeroes that
 * block past the new end, pages the client did not send; after a restart
 * they must still be zeros (a later grow shows them). */
static void test_shrink_tail_after_restart(void **state)
{
	struct tclient a;
	json_t *r;
	long long off;
	int fd;

	(void)state;
	it_start(&broker, NULL);
	it_open_client(&a, &broker);
	it_create(&a, "t", 2 * IT_BLOCK, 0);
	it_commit_ok(&a, "t", 1, 0, IT_PPB, 1); /* block 1: every page tag 1 */
	/* shrink to 1 block + 2 pages, changing page 0 of block 1 */
	r = it_commit_pages(&a, "t", 1, 0, 1, 2, "[73728]");
	assert_true(reply_ok(r));
	json_decref(r);
	tclient_close(&a);
	harness_kill(&broker);
	assert_int_equal(harness_restart(&broker), 0);
	it_open_client(&a, &broker);
	off = it_open_block(&a, "t", 1);
	for (uint32_t p = 2; p < IT_PPB; p++)
		assert_true(it_block_page_zero(&a, off, p));
	fd = it_pages_memfd(0, 0, 0);
	r = tclient_call(&a, &fd, 1, NULL, NULL, "{\"op\":\"commit\",\"arrays\":[{\"name\":"
			 "\"t\",\"shape\":[131072],\"blocks\":[]}]}");
	close(fd);
	assert_true(reply_ok(r));
	json_decref(r);
	off = it_open_block(&a, "t", 1);
	assert_true(it_block_page_zero(&a, off, 5));
	tclient_close(&a);
	it_stop(&broker);
}

/* A damaged LMDB leaf node claiming an overflow value 16 MiB longer than
 * it is: the broker refuses to start (it must not read past the file). */
static void test_refuse_value_past_end(void **state)
{
	struct tclient a;
	unsigned char key[24] = { 0 }, *buf;
	char path[400], *said;
	FILE *f;
	long len;
	int found = 0;

	(void)state;
	it_start(&broker, NULL);
	it_open_client(&a, &broker);
	it_create(&a, "d", IT_BLOCK, 0);
	it_commit_ok(&a, "d", 0, 0, IT_PPB, 3); /* array 1, revision 2 */
	tclient_close(&a);
	harness_kill(&broker);
	data_file(&broker, "data.mdb", path, sizeof(path));
	key[7] = 1;
	key[23] = 2;
	f = fopen(path, "r+b");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	buf = malloc((size_t)len);
	assert_non_null(buf);
	fseek(f, 0, SEEK_SET);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	/* the leaf node of that key: its data size's high half sits 6 bytes
	 * before the key (LMDB's MDB_node: lo, hi, flags, ksize, key) */
	for (long i = 8; i + 24 <= len; i++)
		if (!memcmp(buf + i, key, 24) && buf[i - 2] == 24 && (buf[i - 4] & 1)) {
			uint16_t hi = 0x0100;

			fseek(f, i - 6, SEEK_SET);
			assert_int_equal(fwrite(&hi, 2, 1, f), 1);
			found++;
		}
	fclose(f);
	free(buf);
	assert_true(found > 0);
	said = start_refused(&broker);
	assert_says(&broker, said, "damaged|past the end");
	free(said);
	harness_cleanup(&broker);
}

/* A block is one LMDB value (under 4 GiB): a durable broker refuses block
 * sizes over 2 GiB when the array is created, not at its first commit. */
static void test_block_size_limit(void **state)
{
	struct tclient a;
	json_t *r;

	(void)state;
	it_start(&broker, "{\"pool_size\":\"8GiB\"}");
	it_open_client(&a, &broker);
	r = it_err(&a, "invalid", "{\"op\":\"create\",\"name\":\"huge\",\"dtype\":\"|u1\","
		   "\"shape\":[4294967296],\"block_size\":4294967296}");
	assert_non_null(strstr(it_err_message(r), "durable store"));
	json_decref(r);
	json_decref(it_ok(&a, "{\"op\":\"create\",\"name\":\"big\",\"dtype\":\"|u1\","
			  "\"shape\":[4294967296],\"block_size\":2147483648}"));
	tclient_close(&a);
	it_stop(&broker);
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_round_trip),
		T(test_libshm_reconnect_and_ref),
		T(test_layout),
		T(test_refuse_truncated_half),
		T(test_refuse_truncated_to_one_page),
		T(test_refuse_checksum),
		T(test_refuse_newer_format),
		T(test_refuse_not_a_store),
		T(test_disk_full),
		T(test_store_size_full),
		T(test_disk_full_concurrent),
		T(test_retention_by_time),
		T(test_compaction),
		T(test_client_gone_before_reply),
		T(test_group_commit_snapshots),
		T(test_memory_only),
		T(test_default_data_dir),
		T(test_async_survives_kill),
		T(test_ids_not_reused_after_restart),
		T(test_shrink_tail_after_restart),
		T(test_refuse_value_past_end),
		T(test_block_size_limit),
	};

	/* children of the harness inherit stdout: no half-written lines */
	setvbuf(stdout, NULL, _IONBF, 0);
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
