/* test_aref.c - ArrayRefs against a real shma-broker (the "views" and
 * "ArrayRef" parts of shma.h): refs of views made by a writer, opened in the
 * same process and in other processes over ZeroMQ ipc (PUSH/PULL and
 * PUB/SUB), element by element equal to the writer's data; what may not be
 * referenced (uncommitted changes), what can no longer be opened (retention,
 * leases, another store, an extent past the array's end), pins released by
 * shma_close, and the cost of opening a ref (one block of a huge array).
 *
 * The writer fills every array with values that encode their logical index
 * (C order over the shape, whatever the memory order), so a view that shows
 * the wrong element, or zeros, is caught.  Every view is compared with the
 * same view taken on the writer's own mapping of the committed data.
 *
 * Every test starts its own broker (tests/lib/harness.h) and stops it; other
 * processes are fork()ed, talk ZeroMQ over ipc:// endpoints inside the
 * broker's temporary directory, and report through their replies and exit
 * status; the teardown kills a child a failed test left behind.  cmocka
 * replaces the SIGSEGV handler before each test, so each test that touches
 * mapped memory installs libshm's first.
 */
#include "itest.h"

#include <inttypes.h>
#include <zmq.h>

#include "shma.h"

static struct harness broker;

/* ---- children ------------------------------------------------------------------ */

#define MAX_CHILDREN 4
static pid_t children[MAX_CHILDREN];

static int teardown(void **state)
{
	(void)state;
	it_kill_children(children, MAX_CHILDREN);
	return it_teardown_harness(&broker);
}

/* Fork; the child runs fn(arg) and exits with its result (at most 60 s). */
static pid_t child_start(int (*fn)(void *arg), void *arg)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(60);
		_exit(fn(arg));
	}
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == 0) {
			children[i] = pid;
			break;
		}
	return pid;
}

/* The child must exit 0 within timeout_ms. */
static void child_done(pid_t pid, int timeout_ms)
{
	uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
	int status = 0;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		assert_true(r == 0);
		if (it_now_ms() > end) {
			fprintf(stderr, "child %d did not finish: killed\n", (int)pid);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		it_sleep_ms(5);
	}
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "child %d: %s %d\n", (int)pid, WIFEXITED(status) ? "exit" : "signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- connections and arrays ------------------------------------------------------- */

static shma_conn *conn_open(void)
{
	shma_conn *c = NULL;
	int err = shma_connect(broker.socket, NULL, &c);

	if (err)
		fprintf(stderr, "shma_connect: %s\n", shma_strerror(err));
	assert_int_equal(err, 0);
	assert_non_null(c);
	return c;
}

struct arr {
	const char *name;
	const char *dtype;
	unsigned ndim;
	uint64_t shape[3];
	char order;
	size_t block_size; /* 0: the broker's (64 KiB) */
};

/* The arrays of the view tests: small blocks, so views cross blocks. */
static const struct arr arrs[] = {
	{ "v1", "<f8", 1, { 5000 }, 'C', 4096 },
	{ "v2", "<f8", 2, { 60, 70 }, 'C', 4096 },
	{ "v3", "<i4", 3, { 17, 19, 23 }, 'F', 4096 },
	{ "v4", "<i4", 1, { 3000 }, 'C', 4096 },
	{ "dir/v5", "|u1", 2, { 100, 123 }, 'C', 0 },
	{ "vf", "<f8", 2, { 40, 30 }, 'F', 8192 },
};
#define NARRS (sizeof(arrs) / sizeof(arrs[0]))

/* The bytes of value number k of an array of dtype (k: the element's C-order
 * index over the array's shape; salt tells commits apart). */
static void put_value(char *p, const char *dtype, uint64_t k, uint64_t salt)
{
	if (!strcmp(dtype, "<f8")) {
		double d = (double)(k + 1 + salt);

		memcpy(p, &d, 8);
	} else if (!strcmp(dtype, "<i4")) {
		int32_t v = (int32_t)(k + 1 + salt);

		memcpy(p, &v, 4);
	} else if (!strcmp(dtype, "<i8")) {
		int64_t v = (int64_t)(k + 1 + salt);

		memcpy(p, &v, 8);
	} else if (!strcmp(dtype, "|u1")) {
		*(uint8_t *)p = (uint8_t)(k * 31 + 7 + salt);
	} else {
		fail_msg("no values for dtype %s", dtype);
	}
}

/* The next index of v in C order; false after the last. */
static bool next_index(const struct shma_view *v, uint64_t *idx)
{
	for (unsigned i = v->ndim; i-- > 0;) {
		if (++idx[i] < v->shape[i])
			return true;
		idx[i] = 0;
	}
	return false;
}

/* Write value k (C order over v) into every element of v. */
static void fill_view(const struct shma_view *v, uint64_t salt)
{
	uint64_t idx[SHMA_MAXDIM] = { 0 }, k = 0;

	if (shma_view_size(v) == 0)
		return;
	do {
		char *p = shma_view_ptr(v, idx);

		assert_non_null(p);
		put_value(p, v->dtype, k++, salt);
	} while (next_index(v, idx));
}

/* Does every element of v hold value k (C order), as fill_view wrote? */
static bool view_holds(const struct shma_view *v, uint64_t salt)
{
	uint64_t idx[SHMA_MAXDIM] = { 0 }, k = 0;
	char want[16];

	if (shma_view_size(v) == 0)
		return true;
	do {
		const char *p = shma_view_ptr(v, idx);

		put_value(want, v->dtype, k, salt);
		if (!p || memcmp(p, want, v->itemsize)) {
			fprintf(stderr, "element %" PRIu64 " of the view differs (salt %" PRIu64 ")\n",
				k, salt);
			return false;
		}
		k++;
	} while (next_index(v, idx));
	return true;
}

/* FNV-1a over the bytes of every element of v, in C order; *n elements. */
static uint64_t view_hash(const struct shma_view *v, uint64_t *n)
{
	uint64_t idx[SHMA_MAXDIM] = { 0 }, h = 0xcbf29ce484222325ull;

	*n = 0;
	if (shma_view_size(v) == 0)
		return h;
	do {
		const unsigned char *p = shma_view_ptr(v, idx);

		for (unsigned i = 0; i < v->itemsize; i++)
			h = (h ^ p[i]) * 0x100000001b3ull;
		(*n)++;
	} while (next_index(v, idx));
	return h;
}

/* Same geometry, and every element equal, byte for byte. */
static void assert_views_equal(const struct shma_view *want, const struct shma_view *got)
{
	uint64_t idx[SHMA_MAXDIM] = { 0 }, k = 0;

	assert_string_equal(got->dtype, want->dtype);
	assert_int_equal(got->itemsize, want->itemsize);
	assert_int_equal(got->ndim, want->ndim);
	for (unsigned i = 0; i < want->ndim; i++) {
		assert_int_equal(got->shape[i], want->shape[i]);
		assert_int_equal(got->strides[i], want->strides[i]);
	}
	assert_int_equal(got->data - got->base, want->data - want->base);
	if (shma_view_size(want) == 0)
		return;
	do {
		const char *a = shma_view_ptr(want, idx), *b = shma_view_ptr(got, idx);

		assert_non_null(a);
		assert_non_null(b);
		if (memcmp(a, b, want->itemsize)) {
			fprintf(stderr, "element %" PRIu64 " (byte %td of the array) differs\n", k,
				a - want->base);
			fail();
		}
		k++;
	} while (next_index(want, idx));
}

/* Apply a chain of view operations, ';'-separated: "s:EXPR" subscript, "T"
 * transpose, "p:2,0,1" permute, "a:DTYPE" astype, "r:3,-1" reshape (-1:
 * inferred).  0 or the first error. */
static int view_chain(const struct shma_view *in, const char *chain, struct shma_view *out)
{
	struct shma_view v = *in;
	char buf[1024], *save = NULL, *op, why[128] = "";
	int err = 0;

	snprintf(buf, sizeof(buf), "%s", chain);
	for (op = strtok_r(buf, ";", &save); op && !err; op = strtok_r(NULL, ";", &save)) {
		unsigned perm[SHMA_MAXDIM], n = 0;
		uint64_t shape[SHMA_MAXDIM];
		char *p;

		switch (op[0]) {
		case 's':
			err = shma_view_subscript(&v, op + 2, &v, why, sizeof(why));
			break;
		case 'T':
			err = shma_view_transpose(&v, NULL, &v);
			break;
		case 'p':
			for (p = op + 2; *p && n < SHMA_MAXDIM; n++) {
				perm[n] = (unsigned)strtoul(p, &p, 10);
				if (*p == ',')
					p++;
			}
			err = n == v.ndim ? shma_view_transpose(&v, perm, &v) : -EINVAL;
			break;
		case 'a':
			err = shma_view_astype(&v, op + 2, &v);
			break;
		case 'r':
			for (p = op + 2; *p && n < SHMA_MAXDIM; n++) {
				long long d = strtoll(p, &p, 10);

				shape[n] = d < 0 ? SHMA_INFER : (uint64_t)d;
				if (*p == ',')
					p++;
			}
			err = shma_view_reshape(&v, n, shape, &v);
			break;
		default:
			err = -EINVAL;
		}
		if (err)
			fprintf(stderr, "view chain \"%s\": \"%s\" failed: %s %s\n", chain, op,
				shma_strerror(err), why);
	}
	if (!err)
		*out = v;
	return err;
}

/* Create, fill with fill_view(salt) and commit array ar on writer w; the
 * handle stays open.  Returns the commit's revision. */
static uint64_t make_array(shma_conn *w, const struct arr *ar, uint64_t salt, shma_array **out)
{
	struct shma_view v;
	uint64_t rev = 0;

	IT_OK(w, shma_create(w, ar->name, ar->dtype, ar->ndim, ar->shape, ar->order, ar->block_size,
			  &rev));
	IT_OK(w, shma_sync_to(w, rev));
	IT_OK(w, shma_open(w, ar->name, out));
	IT_OK(w, shma_view_of(*out, &v));
	fill_view(&v, salt);
	IT_OK(w, shma_commit(w, &rev));
	assert_int_equal(shma_revision(w), rev);
	assert_true(view_holds(&v, salt));
	return rev;
}

/* Rewrite every element of an open array with salt and commit. */
static uint64_t refill(shma_conn *w, shma_array *a, uint64_t salt)
{
	struct shma_view v;
	uint64_t rev = 0;

	IT_OK(w, shma_view_of(a, &v));
	fill_view(&v, salt);
	IT_OK(w, shma_commit(w, &rev));
	return rev;
}

static const struct arr *arr_named(const char *name)
{
	for (size_t i = 0; i < NARRS; i++)
		if (!strcmp(arrs[i].name, name))
			return &arrs[i];
	fail_msg("no array %s", name);
	return NULL;
}

/* ---- refs ------------------------------------------------------------------------- */

/* The fields of a ref made from view v of array name at revision rev. */
static void check_ref(const struct shma_ref *r, const struct shma_view *v, const char *name,
		      uint64_t rev)
{
	uint64_t lo, hi;

	assert_true(r->store[0] != '\0');
	assert_string_equal(r->socket, broker.socket);
	assert_string_equal(r->array, name);
	assert_int_equal(r->revision, rev);
	assert_string_equal(r->dtype, v->dtype);
	assert_int_equal(r->ndim, v->ndim);
	for (unsigned i = 0; i < v->ndim; i++) {
		assert_int_equal(r->shape[i], v->shape[i]);
		assert_int_equal(r->strides[i], v->strides[i]);
	}
	assert_int_equal(r->offset, (uint64_t)(v->data - v->base));
	shma_view_extent(v, &lo, &hi);
	assert_int_equal(r->lo, lo);
	assert_int_equal(r->hi, hi);
}

/* Encode and decode: the same ref. */
static void through_json(const struct shma_ref *r, struct shma_ref *out)
{
	char *json = NULL, why[256] = "";
	size_t len = 0;
	int err;

	assert_int_equal(shma_ref_encode(r, &json, &len), 0);
	assert_true(len < 2048); /* a few hundred bytes, never the data */
	memset(out, 0x3c, sizeof(*out));
	err = shma_ref_decode(json, len, out, why, sizeof(why));
	if (err)
		fprintf(stderr, "decode %s: %s\n", json, why);
	assert_int_equal(err, 0);
	free(json);
	assert_string_equal(out->store, r->store);
	assert_string_equal(out->socket, r->socket);
	assert_string_equal(out->array, r->array);
	assert_int_equal(out->revision, r->revision);
	assert_string_equal(out->dtype, r->dtype);
	assert_int_equal(out->ndim, r->ndim);
	assert_memory_equal(out->shape, r->shape, r->ndim * sizeof(r->shape[0]));
	assert_memory_equal(out->strides, r->strides, r->ndim * sizeof(r->strides[0]));
	assert_int_equal(out->offset, r->offset);
	assert_int_equal(out->lo, r->lo);
	assert_int_equal(out->hi, r->hi);
}

static void assert_refs_equal(const struct shma_ref *a, const struct shma_ref *b)
{
	struct shma_ref x;

	through_json(a, &x); /* normalises nothing, but checks a */
	assert_string_equal(b->store, a->store);
	assert_string_equal(b->socket, a->socket);
	assert_string_equal(b->array, a->array);
	assert_int_equal(b->revision, a->revision);
	assert_string_equal(b->dtype, a->dtype);
	assert_int_equal(b->ndim, a->ndim);
	assert_memory_equal(b->shape, a->shape, a->ndim * sizeof(a->shape[0]));
	assert_memory_equal(b->strides, a->strides, a->ndim * sizeof(a->strides[0]));
	assert_int_equal(b->offset, a->offset);
	assert_int_equal(b->lo, a->lo);
	assert_int_equal(b->hi, a->hi);
}

/* Open r (must work), check the view against want (the writer's), close. */
static void open_and_compare(const struct shma_ref *r, const struct shma_view *want)
{
	struct shma_array_info info;
	struct shma_view v, sub;
	struct shma_ref again;
	shma_array *h = NULL;
	int err;

	memset(&v, 0, sizeof(v));
	err = shma_ref_open(r, 0, &h, &v);
	if (err)
		fprintf(stderr, "shma_ref_open %s [%" PRIu64 ", %" PRIu64 "): %s\n", r->array, r->lo,
			r->hi, shma_strerror(err));
	assert_int_equal(err, 0);
	assert_non_null(h);
	assert_ptr_equal(v.array, h);
	assert_ptr_equal(v.data, v.base + r->offset);
	assert_int_equal(shma_array_revision(h), r->revision);
	shma_array_info(h, &info);
	assert_string_equal(info.name, r->array);
	assert_int_equal(info.revision, r->revision);
	assert_views_equal(want, &v);
	/* a ref of the opened view is the same ref */
	IT_OK((shma_conn *)NULL, shma_ref_make(&v, &again));
	assert_refs_equal(r, &again);
	/* ... and of a part of it, still at the ref's revision */
	if (v.ndim > 0 && v.shape[0] > 2 && shma_view_size(&v) > 0) {
		IT_OK((shma_conn *)NULL, shma_view_slice(&v, 0, 1, -1, 1, &sub));
		IT_OK((shma_conn *)NULL, shma_ref_make(&sub, &again));
		assert_int_equal(again.revision, r->revision);
		assert_true(again.lo >= r->lo && again.hi <= r->hi);
	}
	shma_close(&h);
	assert_null(h);
}

/* ---- the view cases --------------------------------------------------------------- */

struct vcase {
	const char *array;
	const char *chain;
};

#define LONG_CHAIN_1                                                                        \
	"s:::-1;s:::-1;s:1:;s:::-1;s:2:-2;s:::-1;s:3:;s:::-1;s:::-1;s:10:4000;a:|u1;s:8:-8;"  \
	"s:::-1;s:::-1;a:<i4;s:1:-1;s:::-1;s:::-1;s:2:;a:<f8;s:::-1;s:::3;s:::-1;s:2:;s:::-1"
#define LONG_CHAIN_2                                                                        \
	"T;T;s:::-1;T;s:1:,1:;T;s:::-1,::-1;T;s:::2;s:..., ::-1;T;s:1:-1, 2:;T;s:::-1;T;T;" \
	"s:1:, ::-1;T;s:::-1, ::2;T"

static const struct vcase cases[] = {
	{ "v1", "" },
	{ "v1", "s:10:20" },
	{ "v1", "s:::-1" },
	{ "v1", "s:5:5" },
	{ "v1", "s:4990:" },
	{ "v1", "s:::7" },
	{ "v1", "s:-1:0:-3" },
	{ "v1", "s:100:4000:13" },
	{ "v1", "s:3" },
	{ "v1", "s:511:513" },			       /* blocks 0 and 1 */
	{ "v1", "a:|u1" },
	{ "v1", "s:500:520;a:|u1;s:::-1" },
	{ "v1", "a:|u1;s:4092:4108;a:<f8" },	       /* the first <f8 straddles 4096 */
	{ "v1", "a:|u1;s:8189:8197;a:<f8" },	       /* one <f8 across 8192 */
	{ "v1", "a:|u1;s:4093:12293;a:<f8;s:::-1" }, /* 1025 misaligned, backwards */
	{ "v1", "r:50,100;s:::-1,::-1;T" },
	{ "v1", "r:-1,8,5;s:1::3,::-1,2:4;p:2,0,1" },
	{ "v1", LONG_CHAIN_1 },
	{ "v2", "" },
	{ "v2", "s:::-1" },
	{ "v2", "s:::-1, ::-1" },
	{ "v2", "s:3:9, ::-2" },
	{ "v2", "T" },
	{ "v2", "T;s:::-1" },
	{ "v2", "s:..., 5" },
	{ "v2", "s:5" },
	{ "v2", "s:10:10, :" },
	{ "v2", "s::, 0:0" },
	{ "v2", "s:::2, ::-3;T;s:1:-1" },
	{ "v2", "a:|u1" },
	{ "v2", "s:7;a:|u1;s:::-1" },
	{ "v2", "s:59:0:-7, 69:0:-11" },
	{ "v2", "s:-1, -1" },
	{ "v2", LONG_CHAIN_2 },
	{ "v3", "" },
	{ "v3", "T" },
	{ "v3", "p:1,2,0" },
	{ "v3", "s:::-1, 2, ::-2" },
	{ "v3", "s:..., ::-1" },
	{ "v3", "s:1:3, 4:8, 10:12" },
	{ "v3", "T;s:::-1;a:|u1" },
	{ "v4", "a:<i8" },
	{ "v4", "s:2:10;a:<i8" },
	{ "v4", "a:<i8;s:::-1" },
	{ "v4", "a:|u1;s:::-1" },
	{ "v4", "s:1:2999;a:<i8" }, /* <i8 at 4 + 8k: one straddles 4096 */
	{ "dir/v5", "" },
	{ "dir/v5", "s:::-1, 3:100:7" },
	{ "dir/v5", "T" },
	{ "dir/v5", "s:50:51, 1:-1;a:|b1" },
	{ "vf", "" },
	{ "vf", "T" },
	{ "vf", "s:::-1, 5" },
	{ "vf", "s:3:30:4, ::-1;T" },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* The writer, its arrays (filled and committed), and the refs and views of
 * every case. */
struct world {
	shma_conn *w;
	shma_array *a[NARRS];
	uint64_t rev; /* the writer's snapshot after the last commit */
	struct shma_view views[NCASES];
	struct shma_ref refs[NCASES];
};

static void world_make(struct world *wo)
{
	memset(wo, 0, sizeof(*wo));
	wo->w = conn_open();
	for (size_t i = 0; i < NARRS; i++)
		wo->rev = make_array(wo->w, &arrs[i], 100000 * i, &wo->a[i]);
	for (size_t k = 0; k < NCASES; k++) {
		const struct arr *ar = arr_named(cases[k].array);
		struct shma_view whole;

		IT_OK(wo->w, shma_view_of(wo->a[ar - arrs], &whole));
		assert_int_equal(view_chain(&whole, cases[k].chain, &wo->views[k]), 0);
		IT_OK(wo->w, shma_ref_make(&wo->views[k], &wo->refs[k]));
		check_ref(&wo->refs[k], &wo->views[k], ar->name, wo->rev);
	}
}

static void world_free(struct world *wo)
{
	for (size_t i = 0; i < NARRS; i++)
		shma_close(&wo->a[i]);
	shma_disconnect(&wo->w);
}

/* ---- tests: views of arrays --------------------------------------------------------- */

/* shma_view_of: the whole array, C or F strides, element (i, j, k) where
 * the index says. */
static void test_view_of(void **state)
{
	static const struct arr c3 = { "c3", "<f8", 3, { 5, 6, 7 }, 'C', 4096 };
	static const struct arr f3 = { "f3", "<f8", 3, { 5, 6, 7 }, 'F', 4096 };
	struct shma_view vc, vf;
	shma_array *ac, *af;
	shma_conn *w;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	w = conn_open();
	make_array(w, &c3, 0, &ac);
	make_array(w, &f3, 0, &af);
	IT_OK(w, shma_view_of(ac, &vc));
	IT_OK(w, shma_view_of(af, &vf));
	assert_string_equal(vc.dtype, "<f8");
	assert_int_equal(vc.itemsize, 8);
	assert_int_equal(vc.ndim, 3);
	assert_ptr_equal(vc.array, ac);
	assert_ptr_equal(vc.data, shma_array_data(ac));
	assert_ptr_equal(vc.base, vc.data);
	assert_int_equal(vc.strides[0], 6 * 7 * 8);
	assert_int_equal(vc.strides[1], 7 * 8);
	assert_int_equal(vc.strides[2], 8);
	assert_true(shma_view_is_contiguous(&vc));
	assert_ptr_equal(vf.array, af);
	assert_ptr_equal(vf.data, shma_array_data(af));
	assert_int_equal(vf.strides[0], 8);
	assert_int_equal(vf.strides[1], 5 * 8);
	assert_int_equal(vf.strides[2], 5 * 6 * 8);
	assert_false(shma_view_is_contiguous(&vf));
	for (unsigned s = 0; s < 3; s++) {
		assert_int_equal(vc.shape[s], c3.shape[s]);
		assert_int_equal(vf.shape[s], f3.shape[s]);
	}
	/* element (i, j, k) holds its C-order number + 1, in both; in memory
	 * the F array has it at i + 5 j + 30 k */
	for (uint64_t i = 0; i < 5; i++)
		for (uint64_t j = 0; j < 6; j++)
			for (uint64_t k = 0; k < 7; k++) {
				uint64_t idx[3] = { i, j, k };
				double want = (double)(i * 42 + j * 7 + k + 1);

				assert_true(*(double *)shma_view_ptr(&vc, idx) == want);
				assert_true(*(double *)shma_view_ptr(&vf, idx) == want);
				assert_true(((double *)shma_array_data(af))[i + 5 * j + 30 * k] == want);
				assert_true(((double *)shma_array_data(ac))[i * 42 + j * 7 + k] == want);
			}
	{
		uint64_t lo, hi;

		shma_view_extent(&vf, &lo, &hi);
		assert_int_equal(lo, 0);
		assert_int_equal(hi, 5 * 6 * 7 * 8);
	}
	/* whole-array refs of both, opened */
	{
		struct shma_ref rc, rf;

		IT_OK(w, shma_ref_make(&vc, &rc));
		IT_OK(w, shma_ref_make(&vf, &rf));
		check_ref(&rc, &vc, "c3", shma_revision(w));
		check_ref(&rf, &vf, "f3", shma_revision(w));
		open_and_compare(&rc, &vc);
		open_and_compare(&rf, &vf);
	}
	assert_int_equal(shma_view_of(NULL, &vc), -EINVAL);
	shma_close(&ac);
	shma_close(&af);
	shma_disconnect(&w);
	it_stop(&broker);
}

/* Every case: make, encode, decode, open in this process, compare. */
static void test_refs_same_process(void **state)
{
	struct world wo;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	world_make(&wo);
	for (size_t k = 0; k < NCASES; k++) {
		struct shma_ref dec;

		through_json(&wo.refs[k], &dec);
		open_and_compare(&dec, &wo.views[k]);
	}
	/* open them all at once, then close them all */
	{
		shma_array *h[NCASES];
		struct shma_view v[NCASES];

		for (size_t k = 0; k < NCASES; k++)
			assert_int_equal(shma_ref_open(&wo.refs[k], 0, &h[k], &v[k]), 0);
		for (size_t k = 0; k < NCASES; k++)
			assert_views_equal(&wo.views[k], &v[k]);
		for (size_t k = NCASES; k-- > 0;)
			shma_close(&h[k]);
	}
	world_free(&wo);
	it_stop(&broker);
}

/* The same over a ZeroMQ ipc PAIR inside this process. */
static void test_refs_same_process_ipc(void **state)
{
	void *ctx, *tx, *rx;
	char ep[400];
	struct world wo;
	int linger = 0;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	world_make(&wo);
	snprintf(ep, sizeof(ep), "ipc://%s/self.ipc", broker.dir);
	ctx = zmq_ctx_new();
	rx = zmq_socket(ctx, ZMQ_PAIR);
	tx = zmq_socket(ctx, ZMQ_PAIR);
	zmq_setsockopt(rx, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(tx, ZMQ_LINGER, &linger, sizeof(linger));
	assert_int_equal(zmq_bind(rx, ep), 0);
	assert_int_equal(zmq_connect(tx, ep), 0);
	for (size_t k = 0; k < NCASES; k++)
		assert_int_equal(shma_ref_send(tx, &wo.refs[k], 0), 0);
	for (size_t k = 0; k < NCASES; k++) {
		struct shma_ref r;
		char why[256] = "";

		assert_int_equal(shma_ref_recv(rx, &r, 0, why, sizeof(why)), 0);
		assert_refs_equal(&wo.refs[k], &r);
		open_and_compare(&r, &wo.views[k]);
	}
	zmq_close(tx);
	zmq_close(rx);
	zmq_ctx_term(ctx);
	world_free(&wo);
	it_stop(&broker);
}

/* ---- other processes ----------------------------------------------------------------- */

/* A consumer's reply for one ref. */
struct creply {
	uint32_t id;  /* which consumer */
	uint32_t seq; /* which ref, in the order received */
	int32_t err;  /* 0, or the first error */
	uint32_t pad;
	uint64_t count, hash, rev;
};

struct consumer {
	char in_ep[400], back_ep[400];
	int type; /* ZMQ_PULL or ZMQ_SUB */
	uint32_t id;
	size_t n; /* refs to take */
	const struct world *wo; /* the parent's (read only: for the geometry) */
};

static void z_send_str(void *sock, const char *s)
{
	IT_CHECK(zmq_send(sock, s, strlen(s), 0) == (int)strlen(s));
}

/* In a child: receive n refs, open each, hash its elements, reply, close. */
static int consumer_main(void *arg)
{
	const struct consumer *co = arg;
	void *ctx = zmq_ctx_new(), *in, *back;
	int linger = 10000, tmo = 30000;

	IT_CHECK(shma_vm_install_handler() == 0);
	IT_CHECK(ctx);
	in = zmq_socket(ctx, co->type);
	back = zmq_socket(ctx, ZMQ_PUSH);
	IT_CHECK(in && back);
	zmq_setsockopt(back, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(in, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	IT_CHECK(zmq_connect(back, co->back_ep) == 0);
	IT_CHECK(zmq_connect(in, co->in_ep) == 0);
	if (co->type == ZMQ_SUB) {
		/* the slow joiner: say "ready" once probes come through, then
		 * wait for "go" (which follows every probe) */
		bool ready = false;
		char buf[16];

		IT_CHECK(zmq_setsockopt(in, ZMQ_SUBSCRIBE, "", 0) == 0);
		for (;;) {
			int n = zmq_recv(in, buf, sizeof(buf), 0);

			IT_CHECK(n >= 0);
			if (n == 5 && !memcmp(buf, "probe", 5)) {
				if (!ready) {
					char r[16];

					snprintf(r, sizeof(r), "ready%u", co->id);
					z_send_str(back, r);
					ready = true;
				}
				continue;
			}
			IT_CHECK(n == 2 && !memcmp(buf, "go", 2));
			break;
		}
	}
	for (size_t i = 0; i < co->n; i++) {
		struct creply rep = { .id = co->id, .seq = (uint32_t)i };
		struct shma_ref r;
		struct shma_view v;
		shma_array *h = NULL;
		char why[256] = "";

		rep.err = shma_ref_recv(in, &r, 0, why, sizeof(why));
		if (rep.err)
			fprintf(stderr, "consumer %u: shma_ref_recv: %s (%s)\n", co->id,
				shma_strerror(rep.err), why);
		IT_CHECK(rep.err == 0);
		rep.err = shma_ref_open(&r, 0, &h, &v);
		if (!rep.err) {
			/* the geometry is the ref's, the revision pinned */
			IT_CHECK(v.ndim == r.ndim && !strcmp(v.dtype, r.dtype));
			IT_CHECK(v.data == v.base + r.offset);
			rep.rev = shma_array_revision(h);
			rep.hash = view_hash(&v, &rep.count);
			shma_close(&h);
		}
		IT_CHECK(zmq_send(back, &rep, sizeof(rep), 0) == (int)sizeof(rep));
	}
	zmq_close(in);
	zmq_close(back);
	zmq_ctx_term(ctx);
	return 0;
}

/* In the parent: the replies of nchildren consumers to every case. */
static void collect_replies(void *back, const struct world *wo, unsigned nchildren)
{
	uint32_t next[MAX_CHILDREN] = { 0 };

	for (size_t got = 0; got < NCASES * nchildren; got++) {
		struct creply rep;
		uint64_t n, h;
		int len = zmq_recv(back, &rep, sizeof(rep), 0);

		if (len < 0)
			fprintf(stderr, "no reply after %zu: %s\n", got, zmq_strerror(zmq_errno()));
		assert_int_equal(len, sizeof(rep));
		assert_true(rep.id < nchildren);
		assert_int_equal(rep.seq, next[rep.id]);
		next[rep.id]++;
		if (rep.err)
			fprintf(stderr, "consumer %u, ref %u (%s \"%s\"): %s\n", rep.id, rep.seq,
				cases[rep.seq].array, cases[rep.seq].chain, shma_strerror(rep.err));
		assert_int_equal(rep.err, 0);
		h = view_hash(&wo->views[rep.seq], &n);
		assert_int_equal(rep.rev, wo->refs[rep.seq].revision);
		assert_int_equal(rep.count, n);
		if (rep.hash != h)
			fprintf(stderr, "consumer %u: ref %u (%s \"%s\") shows other data\n", rep.id,
				rep.seq, cases[rep.seq].array, cases[rep.seq].chain);
		assert_true(rep.hash == h);
	}
}

static void *bind_sock(void *ctx, int type, const char *ep)
{
	void *s = zmq_socket(ctx, type);
	int linger = 0, tmo = 30000;

	assert_non_null(s);
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	assert_int_equal(zmq_bind(s, ep), 0);
	return s;
}

/* PUSH -> PULL to another process, replies back over PUSH -> PULL. */
static void test_refs_other_process_push_pull(void **state)
{
	struct consumer co = { .type = ZMQ_PULL, .id = 0, .n = NCASES };
	void *ctx, *push, *back;
	struct world wo;
	pid_t pid;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	world_make(&wo);
	co.wo = &wo;
	snprintf(co.in_ep, sizeof(co.in_ep), "ipc://%s/refs.ipc", broker.dir);
	snprintf(co.back_ep, sizeof(co.back_ep), "ipc://%s/back.ipc", broker.dir);
	pid = child_start(consumer_main, &co);
	ctx = zmq_ctx_new();
	push = bind_sock(ctx, ZMQ_PUSH, co.in_ep);
	back = bind_sock(ctx, ZMQ_PULL, co.back_ep);
	for (size_t k = 0; k < NCASES; k++)
		assert_int_equal(shma_ref_send(push, &wo.refs[k], 0), 0);
	collect_replies(back, &wo, 1);
	child_done(pid, 30000);
	zmq_close(push);
	zmq_close(back);
	zmq_ctx_term(ctx);
	world_free(&wo);
	it_stop(&broker);
}

/* PUB -> two SUBs in two processes: each gets and opens every ref. */
static void test_refs_other_process_pub_sub(void **state)
{
	struct consumer co[2];
	void *ctx, *pub, *back;
	unsigned ready = 0;
	struct world wo;
	pid_t pid[2];

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	world_make(&wo);
	for (unsigned i = 0; i < 2; i++) {
		co[i] = (struct consumer){ .type = ZMQ_SUB, .id = i, .n = NCASES, .wo = &wo };
		snprintf(co[i].in_ep, sizeof(co[i].in_ep), "ipc://%s/pub.ipc", broker.dir);
		snprintf(co[i].back_ep, sizeof(co[i].back_ep), "ipc://%s/back.ipc", broker.dir);
		pid[i] = child_start(consumer_main, &co[i]);
	}
	ctx = zmq_ctx_new();
	pub = bind_sock(ctx, ZMQ_PUB, co[0].in_ep);
	back = bind_sock(ctx, ZMQ_PULL, co[0].back_ep);
	/* probe until both subscribers hear */
	for (uint64_t end = it_now_ms() + 20000; ready < 2;) {
		char buf[16];
		int n;

		assert_true(it_now_ms() < end);
		assert_int_equal(zmq_send(pub, "probe", 5, 0), 5);
		n = zmq_recv(back, buf, sizeof(buf), ZMQ_DONTWAIT);
		if (n == 6 && !memcmp(buf, "ready", 5))
			ready++;
		else
			it_sleep_ms(10);
	}
	assert_int_equal(zmq_send(pub, "go", 2, 0), 2);
	for (size_t k = 0; k < NCASES; k++)
		assert_int_equal(shma_ref_send(pub, &wo.refs[k], 0), 0);
	collect_replies(back, &wo, 2);
	child_done(pid[0], 30000);
	child_done(pid[1], 30000);
	zmq_close(pub);
	zmq_close(back);
	zmq_ctx_term(ctx);
	world_free(&wo);
	it_stop(&broker);
}

/* ---- what may be referenced --------------------------------------------------------- */

static void test_ref_uncommitted(void **state)
{
	static const struct arr uc = { "uc", "<f8", 1, { 4096 }, 'C', 4096 }; /* 8 blocks */
	struct shma_view v, s;
	struct shma_ref r;
	shma_array *a;
	shma_conn *w;
	uint64_t rev;
	double *d;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	w = conn_open();
	make_array(w, &uc, 0, &a);
	IT_OK(w, shma_view_of(a, &v));
	d = shma_array_data(a);
	d[2 * 512 + 5] = -1.0; /* block 2 changes */
	assert_int_equal(shma_ref_make(&v, &r), SHMA_EUNCOMMITTED);
	assert_non_null(strstr(shma_conn_error(w), "uncommitted"));
	/* views away from block 2 may be referenced */
	IT_OK(w, shma_view_slice(&v, 0, 0, 512, 1, &s));
	IT_OK(w, shma_ref_make(&s, &r));
	IT_OK(w, shma_view_slice(&v, 0, 1536, SHMA_END, 1, &s));
	IT_OK(w, shma_ref_make(&s, &r));
	IT_OK(w, shma_view_slice(&v, 0, 1030, 1030, 1, &s)); /* empty: touches nothing */
	IT_OK(w, shma_ref_make(&s, &r));
	/* views that meet it may not */
	IT_OK(w, shma_view_slice(&v, 0, 1024, 1536, 1, &s));
	assert_int_equal(shma_ref_make(&s, &r), SHMA_EUNCOMMITTED);
	IT_OK(w, shma_view_slice(&v, 0, 1023, 1025, 1, &s)); /* blocks 1 and 2 */
	assert_int_equal(shma_ref_make(&s, &r), SHMA_EUNCOMMITTED);
	IT_OK(w, shma_view_slice(&v, 0, 1029, 1030, 1, &s));
	assert_int_equal(shma_ref_make(&s, &r), SHMA_EUNCOMMITTED);
	IT_OK(w, shma_view_slice(&v, 0, SHMA_END, SHMA_END, -1, &s));
	assert_int_equal(shma_ref_make(&s, &r), SHMA_EUNCOMMITTED);
	/* after commit: the new revision, the new value */
	IT_OK(w, shma_commit(w, &rev));
	IT_OK(w, shma_ref_make(&v, &r));
	assert_int_equal(r.revision, rev);
	{
		struct shma_view ov;
		shma_array *h;

		IT_OK(w, shma_ref_open(&r, 0, &h, &ov));
		assert_true(((double *)ov.data)[2 * 512 + 5] == -1.0);
		assert_true(((double *)ov.data)[2 * 512 + 6] == 2 * 512 + 7);
		assert_views_equal(&v, &ov);
		shma_close(&h);
	}
	/* a shape change in the transaction: nothing may be referenced */
	{
		uint64_t shape = 5000;

		IT_OK(w, shma_resize(a, 1, &shape));
		IT_OK(w, shma_view_slice(&v, 0, 0, 10, 1, &s));
		assert_int_equal(shma_ref_make(&s, &r), SHMA_EUNCOMMITTED);
		IT_OK(w, shma_abort(w));
		IT_OK(w, shma_ref_make(&s, &r));
	}
	/* abort of a data change: referencable again */
	d[7] = 3.5;
	assert_int_equal(shma_ref_make(&v, &r), SHMA_EUNCOMMITTED);
	IT_OK(w, shma_abort(w));
	IT_OK(w, shma_ref_make(&v, &r));
	assert_int_equal(r.revision, rev);
	/* not a view of an array */
	{
		uint64_t n = 10;
		double mem[10];

		IT_OK(w, shma_view_init(&s, mem, "<f8", 1, &n));
		assert_int_equal(shma_ref_make(&s, &r), -EINVAL);
	}
	/* a view that claims another base, or reaches past the end */
	s = v;
	s.base += 8;
	s.data += 8;
	assert_int_equal(shma_ref_make(&s, &r), -EINVAL);
	s = v;
	s.shape[0] = 4097;
	assert_int_equal(shma_ref_make(&s, &r), -EINVAL);
	shma_close(&a);
	shma_disconnect(&w);
	it_stop(&broker);
}

/* An opened ref is read-only as far as the broker is concerned: writes to
 * its memory stay in this process's handle. */
static void test_ref_writes_stay_local(void **state)
{
	static const struct arr wl = { "wl", "<f8", 1, { 2000 }, 'C', 4096 };
	struct shma_view v, o1, o2;
	shma_array *a, *h1, *h2;
	struct shma_ref r;
	uint64_t shape = 10;
	shma_conn *w;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	w = conn_open();
	make_array(w, &wl, 0, &a);
	IT_OK(w, shma_view_of(a, &v));
	IT_OK(w, shma_ref_make(&v, &r));
	IT_OK(w, shma_ref_open(&r, 0, &h1, &o1));
	((double *)o1.data)[700] = -5.0;
	assert_true(((double *)o1.data)[700] == -5.0);
	IT_OK(w, shma_ref_open(&r, 0, &h2, &o2));
	assert_true(((double *)o2.data)[700] == 701.0);
	assert_true(((double *)shma_array_data(a))[700] == 701.0);
	assert_int_not_equal(shma_resize(h1, 1, &shape), 0);
	shma_close(&h1);
	shma_close(&h2);
	IT_OK(w, shma_sync(w, NULL));
	assert_true(((double *)shma_array_data(a))[700] == 701.0);
	IT_OK(w, shma_ref_open(&r, 0, &h1, &o1));
	assert_true(((double *)o1.data)[700] == 701.0);
	shma_close(&h1);
	shma_close(&a);
	shma_disconnect(&w);
	it_stop(&broker);
}

/* ---- what can no longer be opened --------------------------------------------------- */

#define RETAIN_ONE "{\"retention\":{\"revisions\":1,\"seconds\":0}}"
static const struct arr nk = { "nk", "<f8", 1, { 1000 }, 'C', 4096 };

/* A second writer rewrites the array twice (salts 1e6 and 2e6). */
static uint64_t rewrite_twice(void)
{
	shma_conn *w2 = conn_open();
	shma_array *a2;
	uint64_t rev;

	IT_OK(w2, shma_open(w2, nk.name, &a2));
	refill(w2, a2, 1000000);
	rev = refill(w2, a2, 2000000);
	shma_close(&a2);
	shma_disconnect(&w2);
	return rev;
}

/* Wait until the broker has seen disconnects: `clients` connections. */
static void await_clients(struct tclient *tc, long long clients)
{
	assert_int_equal(it_wait_stat(tc, "clients", clients, 5000), clients);
}

static void test_ref_not_kept_and_head(void **state)
{
	struct shma_view v, s, ov;
	struct shma_ref r;
	struct tclient tc;
	shma_array *a, *h = NULL;
	uint64_t rev, head;
	shma_conn *w;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, RETAIN_ONE);
	it_open_client(&tc, &broker);
	w = conn_open();
	rev = make_array(w, &nk, 0, &a);
	IT_OK(w, shma_view_of(a, &v));
	IT_OK(w, shma_view_subscript(&v, "10:20", &s, NULL, 0));
	IT_OK(w, shma_ref_make(&s, &r));
	assert_int_equal(r.revision, rev);
	head = rewrite_twice();
	assert_true(head == rev + 2);
	shma_close(&a);
	shma_disconnect(&w); /* nothing pins rev any more */
	await_clients(&tc, 1);
	assert_int_equal(shma_ref_open(&r, 0, &h, &ov), SHMA_ENOTKEPT);
	assert_null(h);
	/* with SHMA_REF_HEAD: the newest revision, the newest data */
	IT_OK((shma_conn *)NULL, shma_ref_open(&r, SHMA_REF_HEAD, &h, &ov));
	assert_non_null(h);
	assert_int_equal(shma_array_revision(h), head);
	{
		struct shma_array_info info;

		shma_array_info(h, &info);
		assert_int_equal(info.revision, head);
	}
	assert_int_equal(ov.shape[0], 10);
	for (unsigned i = 0; i < 10; i++)
		assert_true(((double *)ov.data)[i] == (double)(10 + i + 1 + 2000000));
	shma_close(&h);
	/* a not-kept ref stays not kept */
	assert_int_equal(shma_ref_open(&r, 0, &h, &ov), SHMA_ENOTKEPT);
	tclient_close(&tc);
	it_stop(&broker);
}

static void test_ref_lease(void **state)
{
	struct shma_view v, ov;
	struct shma_ref r;
	struct tclient tc;
	shma_array *a, *h = NULL;
	uint64_t rev, head;
	shma_conn *w;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, RETAIN_ONE);
	it_open_client(&tc, &broker);
	w = conn_open();
	rev = make_array(w, &nk, 0, &a);
	IT_OK(w, shma_view_of(a, &v));
	IT_OK(w, shma_view_subscript(&v, "::-1", &v, NULL, 0));
	IT_OK(w, shma_ref_make(&v, &r));
	IT_OK(w, shma_lease(w, rev, 2000));
	assert_int_equal(it_stat(&tc, "leases"), 1);
	head = rewrite_twice();
	shma_close(&a);
	shma_disconnect(&w);
	await_clients(&tc, 1);
	/* the lease keeps it, writer or not: the old data */
	IT_OK((shma_conn *)NULL, shma_ref_open(&r, 0, &h, &ov));
	assert_int_equal(shma_array_revision(h), rev);
	for (unsigned i = 0; i < 1000; i++)
		assert_true(((double *)ov.data)[-(long)i] == (double)(999 - i + 1));
	shma_close(&h);
	/* in another process too */
	{
		shma_conn *w3 = conn_open();

		/* the lease cannot take a revision that is gone, nor odd times */
		assert_int_equal(shma_lease(w3, rev - 1, 1000), SHMA_ENOTKEPT);
		assert_int_not_equal(shma_lease(w3, head, 0), 0);
		assert_int_not_equal(shma_lease(w3, head, 3600001), 0);
		assert_int_not_equal(shma_lease(w3, head + 10, 1000), 0);
		shma_disconnect(&w3);
	}
	/* it runs out (checked once a second): then the ref is not kept */
	assert_int_equal(it_wait_stat(&tc, "leases", 0, 6000), 0);
	assert_int_equal(shma_ref_open(&r, 0, &h, &ov), SHMA_ENOTKEPT);
	tclient_close(&tc);
	it_stop(&broker);
}

/* After shma_close of every handle of a ref, nothing of this process keeps
 * the ref's revision: with retention of one revision it is gone once newer
 * ones exist. */
static void test_ref_closed_revision_released(void **state)
{
	struct shma_view v, ov;
	struct shma_ref r;
	struct tclient tc;
	shma_array *a, *h = NULL;
	shma_conn *w;
	int err;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, RETAIN_ONE);
	it_open_client(&tc, &broker);
	w = conn_open();
	make_array(w, &nk, 0, &a);
	IT_OK(w, shma_view_of(a, &v));
	IT_OK(w, shma_ref_make(&v, &r));
	IT_OK(w, shma_ref_open(&r, 0, &h, &ov)); /* this process's first open */
	shma_close(&h);
	refill(w, a, 1000000);
	refill(w, a, 2000000);
	IT_OK(w, shma_sync(w, NULL)); /* a request: the previous snapshot goes */
	err = shma_ref_open(&r, 0, &h, &ov);
	if (err != SHMA_ENOTKEPT)
		fprintf(stderr, "revision %" PRIu64 " still kept after every handle was closed "
			"(head %lld, pins %lld): %s\n", r.revision, it_stat(&tc, "head"),
			it_stat(&tc, "pins"), shma_strerror(err));
	if (!err)
		shma_close(&h);
	assert_int_equal(err, SHMA_ENOTKEPT);
	shma_close(&a);
	shma_disconnect(&w);
	tclient_close(&tc);
	it_stop(&broker);
}

static void test_ref_other_store(void **state)
{
	struct shma_view v, ov;
	struct shma_ref r, bad;
	shma_array *a, *h = NULL;
	shma_conn *w;
	int err;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	w = conn_open();
	make_array(w, &nk, 0, &a);
	IT_OK(w, shma_view_of(a, &v));
	IT_OK(w, shma_ref_make(&v, &r));
	bad = r;
	snprintf(bad.store, sizeof(bad.store), "%s", "00000000000000000000000000000000");
	assert_int_equal(shma_ref_open(&bad, 0, &h, &ov), SHMA_ESTORE);
	assert_null(h);
	/* the right store still opens, on the same connection */
	IT_OK(w, shma_ref_open(&r, 0, &h, &ov));
	shma_close(&h);
	bad = r;
	bad.store[0] = bad.store[0] == 'x' ? 'y' : 'x';
	assert_int_equal(shma_ref_open(&bad, 0, &h, &ov), SHMA_ESTORE);
	/* no broker at the socket */
	bad = r;
	assert_true(strlen(broker.dir) + 13 < sizeof(bad.socket));
	strcpy(bad.socket, broker.dir);
	strcat(bad.socket, "/nobody.sock");
	err = shma_ref_open(&bad, 0, &h, &ov);
	assert_true(err < 0);
	assert_null(h);
	/* unknown flags */
	assert_int_equal(shma_ref_open(&r, 2, &h, &ov), -EINVAL);
	shma_close(&a);
	shma_disconnect(&w);
	it_stop(&broker);
}

static void test_ref_extent_past_end(void **state)
{
	struct shma_view v, s, ov;
	struct shma_ref r, bad, dec;
	struct tclient tc;
	shma_array *a, *h = NULL;
	uint64_t rev, rev2, shape = 10;
	long long p0;
	shma_conn *w;
	int err;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	it_open_client(&tc, &broker);
	w = conn_open();
	rev = make_array(w, &nk, 0, &a); /* 1000 <f8 */
	IT_OK(w, shma_view_of(a, &v));
	/* a valid ref, but for 2000 elements */
	IT_OK(w, shma_ref_make(&v, &r));
	bad = r;
	bad.shape[0] = 2000;
	bad.hi = 16000;
	through_json(&bad, &dec);
	assert_int_equal(shma_ref_open(&dec, 0, &h, &ov), SHMA_EBADREF);
	assert_null(h);
	/* one byte too far */
	bad = r;
	bad.hi = 8001;
	through_json(&bad, &dec);
	assert_int_equal(shma_ref_open(&dec, 0, &h, &ov), SHMA_EBADREF);
	/* exactly to the end: fine */
	IT_OK(w, shma_view_subscript(&v, "990:", &s, NULL, 0));
	IT_OK(w, shma_ref_make(&s, &r));
	assert_int_equal(r.hi, 8000);
	IT_OK(w, shma_lease(w, rev, 60000));
	/* the array shrinks: the ref fits its revision, not the next one */
	IT_OK(w, shma_resize(a, 1, &shape));
	IT_OK(w, shma_commit(w, &rev2));
	IT_OK(w, shma_ref_open(&r, 0, &h, &ov));
	for (unsigned i = 0; i < 10; i++)
		assert_true(((double *)ov.data)[i] == (double)(990 + i + 1));
	shma_close(&h);
	p0 = it_stat(&tc, "pins");
	bad = r;
	bad.revision = rev2;
	assert_int_equal(shma_ref_open(&bad, 0, &h, &ov), SHMA_EBADREF);
	assert_null(h);
	/* with SHMA_REF_HEAD: still too far for the head */
	assert_int_not_equal(shma_ref_open(&bad, SHMA_REF_HEAD, &h, &ov), 0);
	/* a revision that does not exist yet, an array that does not exist */
	bad = r;
	bad.revision = rev2 + 100;
	err = shma_ref_open(&bad, 0, &h, &ov);
	assert_true(err < 0);
	bad = r;
	snprintf(bad.array, sizeof(bad.array), "%s", "nosuch");
	err = shma_ref_open(&bad, 0, &h, &ov);
	assert_int_equal(err, -ENOENT);
	assert_null(h);
	/* none of the failures left a pin behind */
	assert_int_equal(it_stat(&tc, "pins"), p0);
	shma_close(&a);
	shma_disconnect(&w);
	tclient_close(&tc);
	it_stop(&broker);
}

/* shma_close of an opened ref drops its pin (broker stats), and so does the
 * death of a process that had one open. */
static int open_and_die(void *arg)
{
	const struct shma_ref *r = arg;
	struct shma_view v;
	shma_array *h;

	IT_CHECK(shma_vm_install_handler() == 0);
	IT_CHECK(shma_ref_open(r, 0, &h, &v) == 0);
	IT_CHECK(((double *)v.data)[0] == 1.0);
	_exit(0); /* without shma_close */
}

static void test_ref_close_unpins(void **state)
{
	struct shma_view v, ov, ov2;
	struct shma_ref r;
	struct tclient tc;
	shma_array *a, *h = NULL, *h2 = NULL;
	long long p0;
	shma_conn *w;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	it_open_client(&tc, &broker);
	w = conn_open();
	make_array(w, &nk, 0, &a);
	IT_OK(w, shma_view_of(a, &v));
	IT_OK(w, shma_ref_make(&v, &r));
	/* this process's ref connection pins nothing of its own: before any
	 * open, the pins are the other connections' */
	p0 = it_stat(&tc, "pins");
	IT_OK(w, shma_ref_open(&r, 0, &h, &ov));
	assert_int_equal(it_stat(&tc, "pins"), p0 + 1);
	shma_close(&h);
	/* the unpin is sent at once, its answer read later: wait for it */
	assert_int_equal(it_wait_stat(&tc, "pins", p0, 5000), p0);
	IT_OK(w, shma_ref_open(&r, 0, &h, &ov));
	assert_int_equal(it_stat(&tc, "pins"), p0 + 1);
	IT_OK(w, shma_ref_open(&r, 0, &h2, &ov2));
	assert_int_equal(it_stat(&tc, "pins"), p0 + 2);
	assert_ptr_not_equal(h, h2);
	shma_close(&h);
	assert_null(h);
	assert_int_equal(it_wait_stat(&tc, "pins", p0 + 1, 5000), p0 + 1);
	assert_true(((double *)ov2.data)[999] == 1000.0); /* the other still reads */
	shma_close(&h2);
	assert_int_equal(it_wait_stat(&tc, "pins", p0, 5000), p0);
	shma_close(&h2); /* NULL: a no-op */
	/* a process that dies with a ref open leaves no pin */
	child_done(child_start(open_and_die, &r), 20000);
	assert_int_equal(it_wait_stat(&tc, "pins", p0, 5000), p0);
	shma_close(&a);
	shma_disconnect(&w);
	tclient_close(&tc);
	it_stop(&broker);
}

/* ---- the cost of opening ------------------------------------------------------------ */

/* The mapping of /proc/self/maps that contains addr: its length, 0 if none. */
static uint64_t vma_len(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	unsigned long lo, hi;
	char line[512];
	uint64_t len = 0;
	FILE *f = fopen("/proc/self/maps", "re");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) {
			len = hi - lo;
			break;
		}
	fclose(f);
	return len;
}

/* One element of an 8 GiB array: the ref maps one block, the process's
 * memory does not grow with the array, the broker lists one block. */
static void test_ref_open_cost(void **state)
{
	static const struct arr big = { "big", "<f8", 1, { UINT64_C(1) << 30 }, 'C', 0 };
	const uint64_t per_blk = 65536 / 8, stride = 1024; /* one block in 1024 written */
	const uint64_t k = 64 * stride * per_blk + 7;	   /* in block 65536 */
	struct shma_array_info info;
	struct shma_view v, s, ov;
	struct shma_ref r;
	struct tclient tc;
	shma_array *a, *h;
	long rss0, rss1;
	uint64_t rev;
	double *d;
	shma_conn *w;
	json_t *rep;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	it_start(&broker, NULL);
	it_open_client(&tc, &broker);
	w = conn_open();
	IT_OK(w, shma_create(w, big.name, big.dtype, 1, big.shape, 'C', 0, &rev));
	IT_OK(w, shma_sync_to(w, rev));
	IT_OK(w, shma_open(w, big.name, &a));
	d = shma_array_data(a);
	for (uint64_t b = 0; b < (big.shape[0] / per_blk); b += stride)
		d[b * per_blk + 7] = (double)b + 0.5;
	IT_OK(w, shma_commit(w, &rev));
	IT_OK(w, shma_view_of(a, &v));
	IT_OK(w, shma_view_slice(&v, 0, (int64_t)k, (int64_t)k + 1, 1, &s));
	IT_OK(w, shma_ref_make(&s, &r));
	assert_int_equal(r.lo, k * 8);
	assert_int_equal(r.hi, k * 8 + 8);

	rss0 = it_status_kb(getpid(), "VmRSS");
	IT_OK(w, shma_ref_open(&r, 0, &h, &ov));
	assert_true(*(double *)ov.data == 65536.5);
	rss1 = it_status_kb(getpid(), "VmRSS");
	fprintf(stderr, "open of 1 element of 8 GiB: RSS %ld -> %ld kB, mapping %" PRIu64 " bytes\n",
		rss0, rss1, vma_len(ov.data));
	assert_true(rss0 > 0 && rss1 > 0);
	assert_true(rss1 - rss0 < 2048);
	assert_int_equal(vma_len(ov.data), 65536);
	shma_array_info(h, &info);
	assert_int_equal(info.nbytes, UINT64_C(8) << 30);
	assert_int_equal(info.block_size, 65536);
	assert_int_equal(info.revision, rev);
	shma_close(&h);

	/* the broker's side: the extent lists one block, the whole array 128 */
	json_decref(it_ok(&tc, "{\"op\":\"sync\"}"));
	rep = it_ok(&tc, "{\"op\":\"open\",\"name\":\"big\",\"revision\":%" PRIu64
		    ",\"pin\":true,\"extent\":[%" PRIu64 ",%" PRIu64 "]}",
		    rev, r.lo, r.hi);
	assert_int_equal(json_array_size(json_object_get(rep, "blocks")), 1);
	json_decref(rep);
	rep = it_ok(&tc, "{\"op\":\"open\",\"name\":\"big\"}");
	assert_int_equal(json_array_size(json_object_get(rep, "blocks")),
			 big.shape[0] / per_blk / stride);
	json_decref(rep);
	shma_close(&a);
	shma_disconnect(&w);
	tclient_close(&tc);
	it_stop(&broker);
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_view_of),
		T(test_refs_same_process),
		T(test_refs_same_process_ipc),
		T(test_refs_other_process_push_pull),
		T(test_refs_other_process_pub_sub),
		T(test_ref_uncommitted),
		T(test_ref_writes_stay_local),
		T(test_ref_not_kept_and_head),
		T(test_ref_lease),
		T(test_ref_closed_revision_released),
		T(test_ref_other_store),
		T(test_ref_extent_past_end),
		T(test_ref_close_unpins),
		T(test_ref_open_cost),
	};

	return cmocka_run_group_tests_name("aref", tests, NULL, NULL);
}
