/* test_aref.c - ArrayRefs without a broker (libshm/aref.c): the JSON codec
 * (shma_ref_encode / shma_ref_decode) and the ZeroMQ helpers
 * (shma_ref_send / shma_ref_recv) over inproc sockets in one process.
 *
 * Round trips: hand-made refs of every shape the format allows (0 to 32
 * dimensions, negative and zero strides, empty views, the largest offsets,
 * sizes, strides and strings) and a few thousand random ones.  Decoding
 * rejects: one test per rule of docs/PROTOCOL.md §16.1 / shma_ref_decode,
 * each checking SHMA_EBADREF, a reason that names what is wrong, and *out
 * left untouched.  Over ZeroMQ: PAIR, PUSH/PULL and DEALER/ROUTER (routing
 * frames), and malformed messages, after each of which the socket must
 * still deliver the next ref.
 *
 * The tests build JSON with jansson (which libshm links anyway), so a
 * malformed ref is a valid one with exactly one thing changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "shma.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define P60 (INT64_C(1) << 60)
#define TYPE_FRAME "shma.ref/1"

/* ---- helpers ------------------------------------------------------------------ */

/* The ref of docs/PROTOCOL.md §16.1: rows 99 down to 0 of a (100, 5) <f8
 * array, a[::-1]. */
static void doc_ref(struct shma_ref *r)
{
	memset(r, 0, sizeof(*r));
	strcpy(r->store, "0466e9e2c8e44f1b9d3f3d0f6a1b2c3d");
	strcpy(r->socket, "/run/user/1000/shma/broker.sock");
	strcpy(r->array, "sensors/t");
	r->revision = 42;
	strcpy(r->dtype, "<f8");
	r->ndim = 2;
	r->shape[0] = 100;
	r->shape[1] = 5;
	r->strides[0] = -40;
	r->strides[1] = 8;
	r->offset = 3960;
	r->lo = 0;
	r->hi = 4000;
}

static const char doc_json[] =
	"{\"shma_ref\":1,\"store\":\"0466e9e2c8e44f1b9d3f3d0f6a1b2c3d\",\"socket\":\"/run/user/"
	"1000/shma/broker.sock\",\n \"array\":\"sensors/t\",\"revision\":42,\"dtype\":\"<f8\","
	"\"shape\":[100,5],\"strides\":[-40,8],\n \"offset\":3960,\"extent\":[0,4000]}";

static void print_ref(const char *what, const struct shma_ref *r)
{
	char *json = NULL;
	size_t len;

	if (shma_ref_encode(r, &json, &len) == 0)
		fprintf(stderr, "%s: %s\n", what, json);
	free(json);
}

/* Decoded refs are compared whole: decode zeroes what a ref leaves unused,
 * and the refs made here start zeroed. */
static void assert_ref_equal(const struct shma_ref *a, const struct shma_ref *b)
{
	if (memcmp(a, b, sizeof(*a))) {
		print_ref("expected", a);
		print_ref("got     ", b);
	}
	assert_memory_equal(a, b, sizeof(*a));
}

/* Encode r, check the text is a JSON object of exactly the ten fields, and
 * decode it back to r. */
static void roundtrip(const struct shma_ref *r)
{
	struct shma_ref out;
	json_error_t jerr;
	char *json = NULL, why[256] = "";
	size_t len = 0;
	json_t *o;
	int err;

	assert_int_equal(shma_ref_encode(r, &json, &len), 0);
	assert_non_null(json);
	assert_int_equal(len, strlen(json));
	o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	assert_non_null(o);
	assert_true(json_is_object(o));
	assert_int_equal(json_object_size(o), 10);
	assert_int_equal(json_array_size(json_object_get(o, "shape")), r->ndim);
	json_decref(o);

	memset(&out, 0x5a, sizeof(out));
	err = shma_ref_decode(json, len, &out, why, sizeof(why));
	if (err)
		fprintf(stderr, "decode of %s: %s (%s)\n", json, shma_strerror(err), why);
	assert_int_equal(err, 0);
	assert_ref_equal(r, &out);
	free(json);
}

/* Decoding text must fail with SHMA_EBADREF, a reason containing
 * why_part (if not NULL), and *out untouched; with why NULL too. */
static void expect_bad_text(const char *text, size_t len, const char *why_part)
{
	struct shma_ref out, before;
	char why[256];
	int err;

	memset(&out, 0xa5, sizeof(out));
	before = out;
	memset(why, 0, sizeof(why));
	err = shma_ref_decode(text, len, &out, why, sizeof(why));
	if (err != SHMA_EBADREF || !why[0] || (why_part && !strstr(why, why_part)))
		fprintf(stderr, "decode of %.300s%s: %d (%s), reason \"%s\", wanted one with \"%s\"\n",
			text, len > 300 ? "..." : "", err, shma_strerror(err), why,
			why_part ? why_part : "");
	assert_int_equal(err, SHMA_EBADREF);
	assert_true(why[0] != '\0');
	assert_true(strlen(why) < sizeof(why));
	if (why_part)
		assert_non_null(strstr(why, why_part));
	assert_memory_equal(&out, &before, sizeof(out));
	assert_int_equal(shma_ref_decode(text, len, &out, NULL, 0), SHMA_EBADREF);
	assert_memory_equal(&out, &before, sizeof(out));
}

static void expect_bad_str(const char *text, const char *why_part)
{
	expect_bad_text(text, strlen(text), why_part);
}

/* The ref (as an object to change) of doc_ref. */
static json_t *base_obj(void)
{
	json_error_t jerr;
	json_t *o = json_loads(doc_json, JSON_REJECT_DUPLICATES, &jerr);

	assert_non_null(o);
	return o;
}

/* A small 1-D ref to change: 10 <f8 at bytes [0, 80). */
static json_t *line_obj(void)
{
	json_t *o = base_obj();

	json_object_set_new(o, "shape", json_pack("[i]", 10));
	json_object_set_new(o, "strides", json_pack("[i]", 8));
	json_object_set_new(o, "offset", json_integer(0));
	json_object_set_new(o, "extent", json_pack("[i,i]", 0, 80));
	return o;
}

/* o (consumed) must be rejected, for a reason containing why_part. */
static void expect_bad(json_t *o, const char *why_part)
{
	char *text = json_dumps(o, JSON_COMPACT);

	assert_non_null(text);
	expect_bad_text(text, strlen(text), why_part);
	free(text);
	json_decref(o);
}

/* o (consumed) must be accepted; the result in *out (may be NULL). */
static void expect_good(json_t *o, struct shma_ref *out)
{
	char *text = json_dumps(o, JSON_COMPACT), why[256] = "";
	struct shma_ref r;
	int err;

	assert_non_null(text);
	err = shma_ref_decode(text, strlen(text), &r, why, sizeof(why));
	if (err)
		fprintf(stderr, "decode of %s: %s (%s)\n", text, shma_strerror(err), why);
	free(text);
	json_decref(o);
	assert_int_equal(err, 0);
	if (out)
		*out = r;
}

/* o with key set to v (stolen). */
static json_t *with(json_t *o, const char *key, json_t *v)
{
	assert_non_null(v);
	json_object_set_new(o, key, v);
	return o;
}

static json_t *without(json_t *o, const char *key)
{
	assert_int_equal(json_object_del(o, key), 0);
	return o;
}

/* A string of n copies of c. */
static json_t *str_of(size_t n, char c)
{
	char *s = malloc(n + 1);
	json_t *j;

	assert_non_null(s);
	memset(s, c, n);
	s[n] = 0;
	j = json_string(s);
	free(s);
	return j;
}

/* ---- round trips ----------------------------------------------------------- */

static void test_doc_example(void **state)
{
	struct shma_ref want, got;
	char why[128] = "";

	(void)state;
	doc_ref(&want);
	assert_int_equal(shma_ref_decode(doc_json, strlen(doc_json), &got, why, sizeof(why)), 0);
	assert_ref_equal(&want, &got);
	roundtrip(&want);
	/* the length is what counts, not a terminating NUL: decode a copy
	 * without one (ASan would see a read past it) */
	{
		size_t n = strlen(doc_json);
		char *copy = malloc(n);

		assert_non_null(copy);
		memcpy(copy, doc_json, n);
		assert_int_equal(shma_ref_decode(copy, n, &got, why, sizeof(why)), 0);
		assert_ref_equal(&want, &got);
		free(copy);
	}
	/* field order and white space do not matter */
	{
		const char *t = " { \"extent\" : [ 0 , 4000 ] , \"offset\":3960,\"strides\":[-40,8],"
				"\"shape\":[100,5],\"dtype\":\"<f8\",\"revision\":42,\"array\":"
				"\"sensors/t\",\"socket\":\"/run/user/1000/shma/broker.sock\",\"store\":"
				"\"0466e9e2c8e44f1b9d3f3d0f6a1b2c3d\",\"shma_ref\":1 }\n";

		assert_int_equal(shma_ref_decode(t, strlen(t), &got, NULL, 0), 0);
		assert_ref_equal(&want, &got);
	}
}

static void test_roundtrip_shapes(void **state)
{
	struct shma_ref r;

	(void)state;
	/* 0-d: one element at offset */
	doc_ref(&r);
	r.ndim = 0;
	memset(r.shape, 0, sizeof(r.shape));
	memset(r.strides, 0, sizeof(r.strides));
	r.offset = 80;
	r.lo = 80;
	r.hi = 88;
	roundtrip(&r);

	/* 1-d contiguous, reversed, strided, broadcast (stride 0) */
	doc_ref(&r);
	r.ndim = 1;
	r.shape[0] = 1000;
	r.strides[0] = 8;
	r.shape[1] = 0;
	r.strides[1] = 0;
	r.offset = 0;
	r.lo = 0;
	r.hi = 8000;
	roundtrip(&r);
	r.strides[0] = -8;
	r.offset = 7992;
	roundtrip(&r);
	r.shape[0] = 334;
	r.strides[0] = -24;
	r.offset = 7992;
	r.lo = 0;
	r.hi = 8000;
	roundtrip(&r);
	r.strides[0] = 0;
	r.offset = 16;
	r.lo = 16;
	r.hi = 24;
	roundtrip(&r);

	/* 2-d: C order, F order, transposed, both axes reversed */
	doc_ref(&r);
	r.strides[0] = 40;
	r.offset = 0;
	roundtrip(&r);
	r.strides[0] = 8;
	r.strides[1] = 800;
	roundtrip(&r);
	r.shape[0] = 5;
	r.shape[1] = 100;
	r.strides[0] = 8;
	r.strides[1] = 40;
	roundtrip(&r);
	r.strides[0] = -8;
	r.strides[1] = -40;
	r.offset = 3992;
	roundtrip(&r);

	/* 3-d, mixed signs, a dtype view (|u1 of the rows' bytes) */
	doc_ref(&r);
	strcpy(r.dtype, "|u1");
	r.ndim = 3;
	r.shape[0] = 4;
	r.shape[1] = 6;
	r.shape[2] = 8;
	r.strides[0] = -480;
	r.strides[1] = 80;
	r.strides[2] = 1;
	r.offset = 1440 + 7;
	r.lo = 7;
	r.hi = 1447 + 400 + 8;
	roundtrip(&r);

	/* empty views: a zero anywhere; the extent may be empty */
	doc_ref(&r);
	r.ndim = 1;
	r.shape[0] = 0;
	r.shape[1] = 0;
	r.strides[1] = 0;
	r.strides[0] = 8;
	r.offset = 123;
	r.lo = r.hi = 40;
	roundtrip(&r);
	r.ndim = 3;
	r.shape[0] = 3;
	r.shape[1] = 0;
	r.shape[2] = 2;
	r.strides[0] = -1000;
	r.strides[1] = 8;
	r.strides[2] = 1 << 20;
	r.offset = 0;
	r.lo = r.hi = 0;
	roundtrip(&r);

	/* 32 dimensions of 2, strides 1, -2, 4, -8, ... bytes of |u1 */
	doc_ref(&r);
	strcpy(r.dtype, "|u1");
	r.ndim = SHMA_MAXDIM;
	r.offset = 0;
	for (unsigned i = 0; i < SHMA_MAXDIM; i++) {
		int64_t s = INT64_C(1) << i;

		r.shape[i] = 2;
		r.strides[i] = i % 2 ? -s : s;
		if (i % 2)
			r.offset += (uint64_t)s;
	}
	r.lo = 0;
	r.hi = (UINT64_C(1) << 32);
	roundtrip(&r);
	/* 32 dimensions of 1: any stride below 2^60 */
	for (unsigned i = 0; i < SHMA_MAXDIM; i++) {
		r.shape[i] = 1;
		r.strides[i] = i % 2 ? -(P60 - 1) : P60 - 1;
	}
	r.offset = 5;
	r.lo = 5;
	r.hi = 6;
	roundtrip(&r);
}

static void test_roundtrip_limits(void **state)
{
	struct shma_ref r;

	(void)state;
	/* the largest offset and extent: one <f8 ending at 2^60 - 1 */
	doc_ref(&r);
	r.ndim = 1;
	r.shape[0] = 1;
	r.shape[1] = 0;
	r.strides[0] = 8;
	r.strides[1] = 0;
	r.offset = (uint64_t)P60 - 9;
	r.lo = r.offset;
	r.hi = (uint64_t)P60 - 1;
	roundtrip(&r);

	/* the largest size: 2^60 - 1 bytes of |u1 */
	strcpy(r.dtype, "|u1");
	r.shape[0] = (uint64_t)P60 - 1;
	r.strides[0] = 1;
	r.offset = 0;
	r.lo = 0;
	r.hi = (uint64_t)P60 - 1;
	roundtrip(&r);
	/* ... walked backwards */
	r.strides[0] = -1;
	r.offset = (uint64_t)P60 - 2;
	roundtrip(&r);

	/* a stride of 2^59 */
	r.shape[0] = 2;
	r.strides[0] = INT64_C(1) << 59;
	r.offset = 0;
	r.hi = (UINT64_C(1) << 59) + 1;
	roundtrip(&r);

	/* the largest revision, the longest strings */
	doc_ref(&r);
	r.revision = INT64_MAX;
	memset(r.store, 'z', sizeof(r.store) - 1);
	r.socket[0] = '/';
	memset(r.socket + 1, 's', sizeof(r.socket) - 2);
	memset(r.array, 'a', sizeof(r.array) - 1);
	roundtrip(&r);
	r.revision = 0;
	memset(r.store, 0, sizeof(r.store));
	memset(r.socket, 0, sizeof(r.socket));
	memset(r.array, 0, sizeof(r.array));
	strcpy(r.store, "1");
	strcpy(r.socket, "/");
	strcpy(r.array, "x");
	roundtrip(&r);
	strcpy(r.array, "a-b_c.d/E9/f");
	roundtrip(&r);
}

static void test_roundtrip_dtypes(void **state)
{
	static const char *const dtypes[] = { "|b1", "|i1", "|u1", "<i2", ">i2", "<u2", ">u2",
					      "<i4", ">i4", "<u4", "<i8", ">u8", "<f2", ">f2",
					      "<f4", ">f4", "<f8", ">f8", "<c8", ">c16" };
	struct shma_ref r, out;
	json_t *o;

	(void)state;
	for (size_t k = 0; k < ARRAY_SIZE(dtypes); k++) {
		unsigned size = (unsigned)atoi(dtypes[k] + 2);

		doc_ref(&r);
		strcpy(r.dtype, dtypes[k]);
		r.ndim = 1;
		r.shape[0] = 7;
		r.shape[1] = 0;
		r.strides[0] = -(int64_t)size;
		r.strides[1] = 0;
		r.offset = 6 * size;
		r.lo = 0;
		r.hi = 7 * size;
		roundtrip(&r);
	}
	/* "=" is the machine's order, and 1-byte types are "|" whatever is
	 * written: decode gives the canonical string */
	o = with(base_obj(), "dtype", json_string("=f8"));
	expect_good(o, &out);
	assert_string_equal(out.dtype, __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? ">f8" : "<f8");
	o = with(line_obj(), "dtype", json_string("<u1"));
	expect_good(o, &out);
	assert_string_equal(out.dtype, "|u1");
	assert_int_equal(out.hi, 80);
}

/* xorshift64*: a fixed sequence, so a failure repeats. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void rnd_string(char *s, size_t cap, const char *alphabet, size_t minlen)
{
	size_t n = minlen + rnd_below(cap - minlen), k = strlen(alphabet);

	for (size_t i = 0; i < n; i++)
		s[i] = alphabet[rnd_below(k)];
	s[n] = 0;
}

static void test_roundtrip_random(void **state)
{
	static const char *const dtypes[] = { "|b1", "|u1", "<i2", ">u4", "<i8", "<f4",
					      ">f8", "<c8", "<c16" };
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

	(void)state;
	for (int n = 0; n < 5000; n++) {
		struct shma_ref r;
		const char *dt = dtypes[rnd_below(ARRAY_SIZE(dtypes))];
		int64_t size = atoi(dt + 2), lo_el, hi_el;
		bool empty = false;

		memset(&r, 0, sizeof(r));
		rnd_string(r.store, sizeof(r.store) - 1, alnum, 1);
		rnd_string(r.socket, sizeof(r.socket) - 1, "abc/._-x", 0);
		r.socket[0] = '/';
		rnd_string(r.array, 40, alnum, 1);
		r.revision = rnd() >> (1 + rnd_below(63));
		strcpy(r.dtype, dt);
		r.ndim = (unsigned)(rnd_below(4) ? rnd_below(5) : rnd_below(SHMA_MAXDIM + 1));
		lo_el = hi_el = 0;
		for (unsigned i = 0; i < r.ndim; i++) {
			int64_t span;

			r.shape[i] = rnd_below(20) == 0 ? 0 : 1 + rnd_below(r.ndim > 6 ? 3 : 50);
			r.strides[i] = (int64_t)rnd_below(1u << 20) * (rnd_below(3) ? size : 1);
			if (rnd_below(2))
				r.strides[i] = -r.strides[i];
			empty |= r.shape[i] == 0;
			span = r.shape[i] ? (int64_t)(r.shape[i] - 1) * r.strides[i] : 0;
			if (span < 0)
				lo_el += span;
			else
				hi_el += span;
		}
		hi_el += size;
		if (empty) {
			r.offset = rnd_below(1ull << 40);
			r.lo = rnd_below(1ull << 40);
			r.hi = r.lo + rnd_below(3) * rnd_below(1000);
		} else {
			uint64_t slack_lo = rnd_below(3) ? 0 : rnd_below(1 << 16);

			r.offset = (uint64_t)(-lo_el) + slack_lo + rnd_below(1ull << 30);
			r.lo = r.offset + (uint64_t)lo_el - slack_lo;
			r.hi = r.offset + (uint64_t)hi_el + (rnd_below(3) ? 0 : rnd_below(1 << 16));
		}
		roundtrip(&r);
	}
}

/* ---- what decode rejects: one test per rule ---------------------------------- */

static void test_bad_not_json(void **state)
{
	char junk[] = "{\"shma_ref\":1,\0\"store\":\"x\"}";

	(void)state;
	expect_bad_str("", "JSON");
	expect_bad_str("nope", "JSON");
	expect_bad_str("{", "JSON");
	expect_bad_str("{\"shma_ref\":1,", "JSON");
	expect_bad_text(doc_json, strlen(doc_json) - 1, "JSON"); /* cut short */
	expect_bad_text(junk, sizeof(junk) - 1, NULL);		/* a NUL inside */
	/* a valid ref followed by more text */
	{
		char *t = NULL;

		assert_true(asprintf(&t, "%s {}", doc_json) > 0);
		expect_bad_str(t, "JSON");
		free(t);
	}
	/* length 0: nothing is read */
	expect_bad_text("{}", 0, NULL);
}

static void test_bad_not_object(void **state)
{
	(void)state;
	expect_bad_str("[]", NULL);
	expect_bad_str("[1,2]", NULL);
	expect_bad_str("1", NULL);
	expect_bad_str("\"shma_ref\"", NULL);
	expect_bad_str("null", NULL);
	expect_bad_str("true", NULL);
	{
		char *t = NULL;

		assert_true(asprintf(&t, "[%s]", doc_json) > 0);
		expect_bad_str(t, "object");
		free(t);
	}
}

static void test_bad_unknown_field(void **state)
{
	(void)state;
	expect_bad(with(base_obj(), "extra", json_integer(1)), "unknown field \"extra\"");
	expect_bad(with(base_obj(), "Revision", json_integer(42)), "Revision");
	expect_bad(with(base_obj(), "", json_null()), "unknown field");
	/* a long unknown name: the reason stays bounded */
	expect_bad(with(base_obj(), "x", str_of(2000, 'q')), "unknown field");
	{
		json_t *o = base_obj();
		char key[1001];

		memset(key, 'k', sizeof(key) - 1);
		key[sizeof(key) - 1] = 0;
		json_object_set_new(o, key, json_integer(0));
		expect_bad(o, "unknown field");
	}
}

static void test_bad_missing_field(void **state)
{
	static const char *const keys[] = { "shma_ref", "store",   "socket", "array",  "revision",
					    "dtype",	"shape",   "strides", "offset", "extent" };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		char want[64];

		snprintf(want, sizeof(want), "\"%s\" is missing", keys[i]);
		expect_bad(without(base_obj(), keys[i]), want);
	}
	expect_bad_str("{}", "missing");
}

static void test_bad_version(void **state)
{
	(void)state;
	expect_bad(with(base_obj(), "shma_ref", json_integer(0)), "shma_ref");
	expect_bad(with(base_obj(), "shma_ref", json_integer(2)), "shma_ref");
	expect_bad(with(base_obj(), "shma_ref", json_integer(-1)), "shma_ref");
	expect_bad(with(base_obj(), "shma_ref", json_integer(1 + (INT64_C(1) << 32))), "shma_ref");
	expect_bad(with(base_obj(), "shma_ref", json_string("1")), "shma_ref");
	expect_bad(with(base_obj(), "shma_ref", json_real(1.0)), "shma_ref");
	expect_bad(with(base_obj(), "shma_ref", json_true()), "shma_ref");
	expect_bad(with(base_obj(), "shma_ref", json_null()), "shma_ref");
}

static void test_bad_store(void **state)
{
	(void)state;
	expect_bad(with(base_obj(), "store", json_string("")), "\"store\"");
	expect_bad(with(base_obj(), "store", str_of(40, 'a')), "\"store\"");
	expect_bad(with(base_obj(), "store", str_of(5000, 'a')), "\"store\"");
	expect_bad(with(base_obj(), "store", json_integer(5)), "\"store\"");
	expect_bad(with(base_obj(), "store", json_null()), "\"store\"");
	expect_good(with(base_obj(), "store", str_of(39, 'a')), NULL);
}

static void test_bad_socket(void **state)
{
	(void)state;
	expect_bad(with(base_obj(), "socket", json_string("run/broker.sock")), "\"socket\"");
	expect_bad(with(base_obj(), "socket", json_string("./broker.sock")), "\"socket\"");
	expect_bad(with(base_obj(), "socket", json_string("")), "\"socket\"");
	{
		json_t *long_path = str_of(108, 's');
		char *s = strdup(json_string_value(long_path));

		s[0] = '/';
		json_string_set(long_path, s);
		expect_bad(with(base_obj(), "socket", long_path), "\"socket\"");
		s[107] = 0; /* 107 bytes: fits sun_path with its NUL */
		expect_good(with(base_obj(), "socket", json_string(s)), NULL);
		free(s);
	}
	expect_bad(with(base_obj(), "socket", json_integer(1)), "\"socket\"");
	expect_bad(with(base_obj(), "socket", json_pack("[s]", "/x")), "\"socket\"");
}

static void test_bad_array_name(void **state)
{
	static const char *const bad_names[] = { "", "/abs", ".hidden", "a//b", "a/", "a/.b",
						 "sp ace", "tab\t", "semi;colon", "caf\xc3\xa9",
						 "star*" };
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(bad_names); i++)
		expect_bad(with(base_obj(), "array", json_string(bad_names[i])), "\"array\"");
	expect_bad(with(base_obj(), "array", str_of(201, 'a')), "\"array\"");
	expect_bad(with(base_obj(), "array", json_integer(7)), "\"array\"");
	expect_bad(with(base_obj(), "array", json_null()), "\"array\"");
	/* \u0000 inside the name: never a truncated name */
	expect_bad_str("{\"shma_ref\":1,\"store\":\"s\",\"socket\":\"/s\",\"array\":\"ab\\u0000cd\","
		       "\"revision\":1,\"dtype\":\"<f8\",\"shape\":[],\"strides\":[],\"offset\":0,"
		       "\"extent\":[0,8]}",
		       NULL);
	expect_good(with(base_obj(), "array", str_of(200, 'a')), NULL);
	expect_good(with(base_obj(), "array", json_string("a.b/c-d/_e")), NULL);
}

static void test_bad_revision(void **state)
{
	struct shma_ref r;

	(void)state;
	expect_bad(with(base_obj(), "revision", json_integer(-1)), "\"revision\"");
	expect_bad(with(base_obj(), "revision", json_integer(INT64_MIN)), "\"revision\"");
	expect_bad(with(base_obj(), "revision", json_real(1.5)), "\"revision\"");
	expect_bad(with(base_obj(), "revision", json_real(3.0)), "\"revision\"");
	expect_bad(with(base_obj(), "revision", json_string("3")), "\"revision\"");
	expect_bad(with(base_obj(), "revision", json_null()), "\"revision\"");
	expect_bad(with(base_obj(), "revision", json_false()), "\"revision\"");
	/* beyond int64: jansson refuses it, so does decode */
	expect_bad_str("{\"shma_ref\":1,\"store\":\"s\",\"socket\":\"/s\",\"array\":\"a\","
		       "\"revision\":18446744073709551615,\"dtype\":\"<f8\",\"shape\":[],"
		       "\"strides\":[],\"offset\":0,\"extent\":[0,8]}",
		       NULL);
	expect_good(with(base_obj(), "revision", json_integer(0)), &r);
	assert_int_equal(r.revision, 0);
}

static void test_bad_dtype(void **state)
{
	static const char *const bad[] = { "",	   "f8",  "<f3", "<f16", "|f8", "<x8", "<i3",
					   "<u16", "<b2", "<c4", "<f8 ", "<<f8", "%f8", "f",
					   "<f",   "<i08x", "<V8", "|S4" };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		expect_bad(with(base_obj(), "dtype", json_string(bad[i])), "\"dtype\"");
	expect_bad(with(base_obj(), "dtype", json_integer(8)), "\"dtype\"");
	expect_bad(with(base_obj(), "dtype", json_null()), "\"dtype\"");
	expect_good(with(base_obj(), "dtype", json_string(">f8")), NULL);
}

static void test_bad_shape_strides_mismatch(void **state)
{
	(void)state;
	expect_bad(with(base_obj(), "strides", json_pack("[i]", 8)), "\"shape\" and \"strides\"");
	expect_bad(with(base_obj(), "strides", json_pack("[i,i,i]", -40, 8, 1)), "\"shape\"");
	expect_bad(with(base_obj(), "shape", json_pack("[]")), "\"shape\"");
	expect_bad(with(base_obj(), "shape", json_integer(500)), "\"shape\"");
	expect_bad(with(base_obj(), "strides", json_pack("{s:i}", "0", 8)), "\"shape\"");
	expect_bad(with(base_obj(), "shape", json_null()), "\"shape\"");
	/* elements of the wrong type */
	expect_bad(with(base_obj(), "shape", json_pack("[i,s]", 100, "5")), "shape[1]");
	expect_bad(with(base_obj(), "shape", json_pack("[f,i]", 100.0, 5)), "shape[0]");
	expect_bad(with(base_obj(), "strides", json_pack("[i,s]", -40, "8")), "strides[1]");
	expect_bad(with(base_obj(), "strides", json_pack("[i,n]", -40)), "strides[1]");
	expect_bad(with(base_obj(), "strides", json_pack("[f,i]", -40.0, 8)), "strides[0]");
}

/* n axes of size 1, stride 8: one element at offset 0. */
static json_t *ones_obj(unsigned n)
{
	json_t *o = line_obj(), *sh = json_array(), *st = json_array();

	for (unsigned i = 0; i < n; i++) {
		json_array_append_new(sh, json_integer(1));
		json_array_append_new(st, json_integer(8));
	}
	json_object_set_new(o, "shape", sh);
	json_object_set_new(o, "strides", st);
	json_object_set_new(o, "extent", json_pack("[i,i]", 0, 8));
	return o;
}

static void test_bad_too_many_dims(void **state)
{
	struct shma_ref r;

	(void)state;
	expect_good(ones_obj(SHMA_MAXDIM), &r);
	assert_int_equal(r.ndim, SHMA_MAXDIM);
	expect_bad(ones_obj(SHMA_MAXDIM + 1), "at most 32");
	expect_bad(ones_obj(1000), "at most 32");
}

static void test_bad_negative_shape(void **state)
{
	(void)state;
	expect_bad(with(base_obj(), "shape", json_pack("[i,i]", -1, 5)), "shape[0]");
	expect_bad(with(base_obj(), "shape", json_pack("[i,I]", 100, (json_int_t)INT64_MIN)),
		   "shape[1]");
	expect_bad(with(line_obj(), "shape", json_pack("[I]", (json_int_t)P60)), "shape[0]");
	expect_bad(with(line_obj(), "shape", json_pack("[I]", (json_int_t)INT64_MAX)), "shape[0]");
}

static void test_bad_stride_magnitude(void **state)
{
	json_t *o;

	(void)state;
	/* shape 1, so the extent does not care about the stride */
	o = with(line_obj(), "shape", json_pack("[i]", 1));
	expect_bad(with(o, "strides", json_pack("[I]", (json_int_t)P60)), "strides[0]");
	o = with(line_obj(), "shape", json_pack("[i]", 1));
	expect_bad(with(o, "strides", json_pack("[I]", (json_int_t)-P60)), "strides[0]");
	o = with(line_obj(), "shape", json_pack("[i]", 1));
	expect_bad(with(o, "strides", json_pack("[I]", (json_int_t)INT64_MIN)), "strides[0]");
	o = with(line_obj(), "shape", json_pack("[i]", 1));
	expect_bad(with(o, "strides", json_pack("[I]", (json_int_t)INT64_MAX)), "strides[0]");
	o = with(line_obj(), "shape", json_pack("[i]", 1));
	expect_good(with(o, "strides", json_pack("[I]", (json_int_t)(P60 - 1))), NULL);
	o = with(line_obj(), "shape", json_pack("[i]", 1));
	expect_good(with(o, "strides", json_pack("[I]", (json_int_t)(1 - P60))), NULL);
}

static void test_bad_size_overflow(void **state)
{
	json_t *o;

	(void)state;
	/* 2^30 x 2^30 x 8 bytes = 2^63 */
	o = with(line_obj(), "shape", json_pack("[I,I]", (json_int_t)1 << 30, (json_int_t)1 << 30));
	expect_bad(with(o, "strides", json_pack("[i,i]", 0, 0)), "overflow");
	/* exactly 2^60 bytes: one too many */
	o = with(line_obj(), "dtype", json_string("|u1"));
	o = with(o, "shape", json_pack("[I,i]", (json_int_t)1 << 59, 2));
	expect_bad(with(o, "strides", json_pack("[i,i]", 0, 0)), "overflow");
	/* 2^57 <f8 = 2^60 bytes */
	o = with(line_obj(), "shape", json_pack("[I]", (json_int_t)1 << 57));
	expect_bad(with(o, "strides", json_pack("[i]", 0)), "overflow");
	/* a product that wraps 64 bits */
	o = with(line_obj(), "shape", json_pack("[I,I,I]", (json_int_t)1 << 59,
						(json_int_t)1 << 59, (json_int_t)1 << 59));
	expect_bad(with(o, "strides", json_pack("[i,i,i]", 0, 0, 0)), "overflow");
	/* 2^60 - 8 bytes of <f8: fits */
	o = with(line_obj(), "shape", json_pack("[I]", ((json_int_t)1 << 57) - 1));
	o = with(o, "strides", json_pack("[i]", 0));
	expect_good(o, NULL);
}

/* docs/PROTOCOL.md §16.1: "itemsize x product below 2^60".  A zero in the
 * shape makes the product 0, wherever the zero is: the result may not
 * depend on the order of the axes. */
static void test_size_zero_anywhere(void **state)
{
	json_t *o;

	(void)state;
	o = with(line_obj(), "shape", json_pack("[i,I,I]", 0, (json_int_t)1 << 59,
						(json_int_t)1 << 59));
	o = with(o, "strides", json_pack("[i,i,i]", 8, 8, 8));
	expect_good(o, NULL);
	o = with(line_obj(), "shape", json_pack("[I,I,i]", (json_int_t)1 << 59,
						(json_int_t)1 << 59, 0));
	o = with(o, "strides", json_pack("[i,i,i]", 8, 8, 8));
	expect_good(o, NULL);
}

static void test_bad_offset_extent_types(void **state)
{
	(void)state;
	expect_bad(with(line_obj(), "offset", json_integer(-1)), "\"offset\"");
	expect_bad(with(line_obj(), "offset", json_string("0")), "\"offset\"");
	expect_bad(with(line_obj(), "offset", json_real(0.0)), "\"offset\"");
	expect_bad(with(line_obj(), "offset", json_null()), "\"offset\"");
	expect_bad(with(line_obj(), "offset", json_integer(P60)), "\"offset\"");
	expect_bad(with(line_obj(), "extent", json_integer(80)), "\"extent\"");
	expect_bad(with(line_obj(), "extent", json_pack("[i]", 0)), "\"extent\"");
	expect_bad(with(line_obj(), "extent", json_pack("[i,i,i]", 0, 80, 90)), "\"extent\"");
	expect_bad(with(line_obj(), "extent", json_pack("[s,i]", "0", 80)), "\"extent\"");
	expect_bad(with(line_obj(), "extent", json_pack("[i,f]", 0, 80.0)), "\"extent\"");
	expect_bad(with(line_obj(), "extent", json_pack("[i,i]", -1, 80)), "\"extent\"");
	expect_bad(with(line_obj(), "extent", json_pack("[i,I]", 0, (json_int_t)P60)), "\"extent\"");
	expect_bad(with(line_obj(), "extent", json_pack("{s:i,s:i}", "lo", 0, "hi", 80)),
		   "\"extent\"");
	expect_bad(with(line_obj(), "extent", json_null()), "\"extent\"");
}

static void test_bad_lo_gt_hi(void **state)
{
	json_t *o;

	(void)state;
	expect_bad(with(line_obj(), "extent", json_pack("[i,i]", 80, 0)), "lo > hi");
	expect_bad(with(line_obj(), "extent", json_pack("[i,i]", 81, 80)), "lo > hi");
	/* even for an empty view, which reaches nothing */
	o = with(line_obj(), "shape", json_pack("[i]", 0));
	expect_bad(with(o, "extent", json_pack("[i,i]", 9, 8)), "lo > hi");
	o = with(line_obj(), "shape", json_pack("[i]", 0));
	expect_good(with(o, "extent", json_pack("[i,i]", 8, 8)), NULL);
}

/* A 1-d ref of n elements of <f8: stride, offset, extent. */
static json_t *geom(unsigned n, int64_t stride, uint64_t offset, uint64_t lo, uint64_t hi)
{
	json_t *o = line_obj();

	json_object_set_new(o, "shape", json_pack("[i]", (int)n));
	json_object_set_new(o, "strides", json_pack("[I]", (json_int_t)stride));
	json_object_set_new(o, "offset", json_integer((json_int_t)offset));
	json_object_set_new(o, "extent", json_pack("[I,I]", (json_int_t)lo, (json_int_t)hi));
	return o;
}

static void test_bad_element_before_lo(void **state)
{
	(void)state;
	/* forward: the first element is at offset */
	expect_good(geom(10, 8, 0, 0, 80), NULL);
	expect_bad(geom(10, 8, 0, 1, 80), "outside its extent");
	expect_good(geom(10, 8, 16, 16, 96), NULL);
	expect_bad(geom(10, 8, 16, 17, 96), "outside its extent");
	/* backward: the lowest element is the last one */
	expect_good(geom(10, -8, 72, 0, 80), NULL);
	expect_bad(geom(10, -8, 72, 1, 80), "outside its extent");
	/* ... and below byte 0 of the array */
	expect_bad(geom(10, -8, 71, 0, 80), "outside its extent");
	expect_bad(geom(2, -16, 8, 0, 80), "outside its extent");
	/* 2-d: a[::-1] of the doc example starts at row 99 */
	expect_good(with(base_obj(), "extent", json_pack("[i,i]", 0, 4000)), NULL);
	expect_bad(with(base_obj(), "extent", json_pack("[i,i]", 1, 4000)), "outside its extent");
	expect_bad(with(base_obj(), "offset", json_integer(3959)), "outside its extent");
	/* 0-d: the one element */
	{
		json_t *o = line_obj();

		json_object_set_new(o, "shape", json_array());
		json_object_set_new(o, "strides", json_array());
		json_object_set_new(o, "offset", json_integer(40));
		json_object_set_new(o, "extent", json_pack("[i,i]", 41, 48));
		expect_bad(o, "outside its extent");
	}
}

static void test_bad_element_at_or_past_hi(void **state)
{
	(void)state;
	/* the last element ends at 80: hi 80 fits, 79 does not */
	expect_good(geom(10, 8, 0, 0, 80), NULL);
	expect_good(geom(10, 8, 0, 0, 81), NULL);
	expect_bad(geom(10, 8, 0, 0, 79), "outside its extent");
	expect_bad(geom(10, 8, 0, 0, 72), "outside its extent");
	/* an element that starts at hi */
	expect_bad(geom(11, 8, 0, 0, 80), "outside its extent");
	/* backward: the highest element is at offset */
	expect_good(geom(10, -8, 72, 0, 80), NULL);
	expect_bad(geom(10, -8, 72, 0, 79), "outside its extent");
	expect_bad(geom(10, -8, 73, 0, 80), "outside its extent");
	/* 2-d */
	expect_bad(with(base_obj(), "extent", json_pack("[i,i]", 0, 3999)), "outside its extent");
	expect_bad(with(base_obj(), "offset", json_integer(3961)), "outside its extent");
	/* spans near 2^60 do not wrap: 32 axes of 2 with stride 2^59 - 8 */
	{
		json_t *o = line_obj(), *sh = json_array(), *st = json_array();

		for (int i = 0; i < SHMA_MAXDIM; i++) {
			json_array_append_new(sh, json_integer(2));
			json_array_append_new(st, json_integer((INT64_C(1) << 59) - 8));
		}
		json_object_set_new(o, "shape", sh);
		json_object_set_new(o, "strides", st);
		json_object_set_new(o, "extent", json_pack("[i,I]", 0, (json_int_t)P60 - 1));
		expect_bad(o, "outside its extent");
	}
	/* the same with alternating signs stays far inside in one direction
	 * only: offset 0 puts the negative axes below 0 */
	{
		json_t *o = line_obj(), *sh = json_array(), *st = json_array();

		for (int i = 0; i < SHMA_MAXDIM; i++) {
			json_array_append_new(sh, json_integer(2));
			json_array_append_new(st, json_integer(i % 2 ? -(INT64_C(1) << 40) :
								      INT64_C(1) << 40));
		}
		json_object_set_new(o, "shape", sh);
		json_object_set_new(o, "strides", st);
		json_object_set_new(o, "extent", json_pack("[i,I]", 0, (json_int_t)P60 - 1));
		expect_bad(o, "outside its extent");
	}
}

static void test_bad_duplicate_keys(void **state)
{
	(void)state;
	expect_bad_str("{\"shma_ref\":1,\"store\":\"s\",\"socket\":\"/s\",\"array\":\"a\","
		       "\"revision\":1,\"revision\":2,\"dtype\":\"<f8\",\"shape\":[],\"strides\":[],"
		       "\"offset\":0,\"extent\":[0,8]}",
		       "duplicate");
	expect_bad_str("{\"shma_ref\":1,\"store\":\"s\",\"socket\":\"/s\",\"array\":\"a\","
		       "\"revision\":1,\"dtype\":\"<f8\",\"shape\":[],\"strides\":[],"
		       "\"offset\":0,\"extent\":[0,8],\"shma_ref\":1}",
		       "duplicate");
}

static void test_bad_huge_json(void **state)
{
	size_t n = 1 << 20;
	char *t = malloc(n + 1);
	int len;

	(void)state;
	assert_non_null(t);
	/* a valid ref padded with white space to 1 MiB */
	len = snprintf(t, n + 1, "%s", doc_json);
	memset(t + len, ' ', n - (size_t)len);
	t[n] = 0;
	expect_bad_text(t, n, NULL);
	/* 64 KiB of one string */
	memset(t, 'a', n);
	memcpy(t, "{\"store\":\"", 10);
	memcpy(t + 65536, "\"}", 3);
	expect_bad_text(t, 65538, NULL);
	/* deep nesting */
	memset(t, '[', 100000);
	expect_bad_text(t, 100000, NULL);
	free(t);

	/* a few KiB of white space around a ref is still a ref */
	{
		char *p = NULL;

		assert_true(asprintf(&p, "%4000s%s%4000s", "", doc_json, "") > 0);
		assert_int_equal(shma_ref_decode(p, strlen(p), &(struct shma_ref){ 0 }, NULL, 0),
				 0);
		free(p);
	}
}

static void test_why_buffer(void **state)
{
	struct shma_ref out;
	char why[8];

	(void)state;
	/* a short buffer: truncated, terminated, nothing written past it */
	memset(why, 'X', sizeof(why));
	assert_int_equal(shma_ref_decode("{}", 2, &out, why, 4), SHMA_EBADREF);
	assert_int_equal(strlen(why), 3);
	assert_int_equal(why[4], 'X');
	/* length 0: untouched */
	memset(why, 'X', sizeof(why));
	assert_int_equal(shma_ref_decode("{}", 2, &out, why, 0), SHMA_EBADREF);
	assert_int_equal(why[0], 'X');
}

/* ---- ZeroMQ --------------------------------------------------------------------- */

struct zpair {
	void *ctx, *tx, *rx;
};

static void zpair_open(struct zpair *z, int txtype, int rxtype, const char *endpoint)
{
	int linger = 0;

	z->ctx = zmq_ctx_new();
	assert_non_null(z->ctx);
	z->rx = zmq_socket(z->ctx, rxtype);
	z->tx = zmq_socket(z->ctx, txtype);
	assert_non_null(z->rx);
	assert_non_null(z->tx);
	zmq_setsockopt(z->rx, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(z->tx, ZMQ_LINGER, &linger, sizeof(linger));
	assert_int_equal(zmq_bind(z->rx, endpoint), 0);
	assert_int_equal(zmq_connect(z->tx, endpoint), 0);
}

static void zpair_close(struct zpair *z)
{
	zmq_close(z->tx);
	zmq_close(z->rx);
	zmq_ctx_term(z->ctx);
}

/* A distinct valid ref per n. */
static void nth_ref(struct shma_ref *r, unsigned n)
{
	doc_ref(r);
	r->revision = 1000 + n;
	memset(r->array, 0, sizeof(r->array));
	snprintf(r->array, sizeof(r->array), "arr/%u", n);
	r->shape[0] = 1 + n % 100;
	r->offset = 40 * (r->shape[0] - 1);
}

/* Receive one ref (waiting) and check it is nth_ref(n). */
static void recv_nth(void *sock, unsigned n)
{
	struct shma_ref want, got;
	char why[256] = "";
	int err;

	nth_ref(&want, n);
	err = shma_ref_recv(sock, &got, 0, why, sizeof(why));
	if (err)
		fprintf(stderr, "shma_ref_recv: %s (%s)\n", shma_strerror(err), why);
	assert_int_equal(err, 0);
	assert_ref_equal(&want, &got);
}

static void send_nth(void *sock, unsigned n, int flags)
{
	struct shma_ref r;

	nth_ref(&r, n);
	assert_int_equal(shma_ref_send(sock, &r, flags), 0);
}

static void exchange(int txtype, int rxtype, const char *endpoint)
{
	struct zpair z;
	struct shma_ref r;

	zpair_open(&z, txtype, rxtype, endpoint);
	/* nothing there yet */
	assert_int_equal(shma_ref_recv(z.rx, &r, ZMQ_DONTWAIT, NULL, 0), -EAGAIN);
	for (unsigned n = 0; n < 200; n++)
		send_nth(z.tx, n, n % 2 ? ZMQ_DONTWAIT : 0);
	for (unsigned n = 0; n < 200; n++)
		recv_nth(z.rx, n);
	/* exactly two frames on the wire: the type, then the JSON */
	send_nth(z.tx, 7, 0);
	{
		char buf[4096];
		int more = 0, len;
		size_t ml = sizeof(more);
		struct shma_ref want, got;

		len = zmq_recv(z.rx, buf, sizeof(buf), 0);
		assert_int_equal(len, strlen(TYPE_FRAME));
		assert_memory_equal(buf, TYPE_FRAME, strlen(TYPE_FRAME));
		assert_int_equal(zmq_getsockopt(z.rx, ZMQ_RCVMORE, &more, &ml), 0);
		assert_true(more);
		len = zmq_recv(z.rx, buf, sizeof(buf), 0);
		assert_true(len > 0 && len < (int)sizeof(buf));
		assert_int_equal(zmq_getsockopt(z.rx, ZMQ_RCVMORE, &more, &ml), 0);
		assert_false(more);
		nth_ref(&want, 7);
		assert_int_equal(shma_ref_decode(buf, (size_t)len, &got, NULL, 0), 0);
		assert_ref_equal(&want, &got);
	}
	assert_int_equal(shma_ref_recv(z.rx, &r, ZMQ_DONTWAIT, NULL, 0), -EAGAIN);
	zpair_close(&z);
}

static void test_zmq_pair(void **state)
{
	(void)state;
	exchange(ZMQ_PAIR, ZMQ_PAIR, "inproc://aref-pair");
}

static void test_zmq_push_pull(void **state)
{
	(void)state;
	exchange(ZMQ_PUSH, ZMQ_PULL, "inproc://aref-pushpull");
}

/* DEALER -> ROUTER and back: the routing frames are the caller's. */
static void test_zmq_router_dealer(void **state)
{
	struct zpair z;
	zmq_msg_t id;
	char why[256] = "";
	struct shma_ref got;

	(void)state;
	zpair_open(&z, ZMQ_DEALER, ZMQ_ROUTER, "inproc://aref-router");
	send_nth(z.tx, 3, 0);
	zmq_msg_init(&id);
	assert_true(zmq_msg_recv(&id, z.rx, 0) > 0); /* the dealer's identity */
	assert_true(zmq_msg_more(&id));
	recv_nth(z.rx, 3);
	/* reply: identity, then the ref */
	assert_true(zmq_msg_send(&id, z.rx, ZMQ_SNDMORE) >= 0);
	send_nth(z.rx, 4, 0);
	assert_int_equal(shma_ref_recv(z.tx, &got, 0, why, sizeof(why)), 0);
	{
		struct shma_ref want;

		nth_ref(&want, 4);
		assert_ref_equal(&want, &got);
	}
	zpair_close(&z);
}

/* No peer: ZMQ_DONTWAIT gives -EAGAIN and leaves no half message. */
static void test_zmq_send_would_block(void **state)
{
	void *ctx = zmq_ctx_new(), *push, *pull;
	struct shma_ref r;
	int linger = 0;

	(void)state;
	push = zmq_socket(ctx, ZMQ_PUSH);
	zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof(linger));
	assert_int_equal(zmq_bind(push, "inproc://aref-noone"), 0);
	nth_ref(&r, 1);
	assert_int_equal(shma_ref_send(push, &r, ZMQ_DONTWAIT), -EAGAIN);
	pull = zmq_socket(ctx, ZMQ_PULL);
	zmq_setsockopt(pull, ZMQ_LINGER, &linger, sizeof(linger));
	assert_int_equal(zmq_connect(pull, "inproc://aref-noone"), 0);
	send_nth(push, 2, 0);
	recv_nth(pull, 2);
	zmq_close(push);
	zmq_close(pull);
	zmq_ctx_term(ctx);
}

/* Send a raw multipart message: nframes frames (data, length). */
static void send_frames(void *sock, int nframes, const void *const *data, const size_t *len)
{
	for (int i = 0; i < nframes; i++)
		assert_int_equal(zmq_send(sock, data[i], len[i], i + 1 < nframes ? ZMQ_SNDMORE : 0),
				 (int)len[i]);
}

/* The message must be refused (SHMA_EBADREF, a reason, *r untouched); the
 * next ref on the socket must come through whole. */
static void expect_bad_message(struct zpair *z, int nframes, const void *const *data,
			       const size_t *len, unsigned next)
{
	struct shma_ref r, before;
	char why[256] = "";
	int err;

	send_frames(z->tx, nframes, data, len);
	send_nth(z->tx, next, 0);
	memset(&r, 0x77, sizeof(r));
	before = r;
	err = shma_ref_recv(z->rx, &r, 0, why, sizeof(why));
	if (err != SHMA_EBADREF)
		fprintf(stderr, "message of %d frame(s), first \"%.*s\": got %d (%s), wanted "
			"SHMA_EBADREF\n", nframes, (int)(len[0] < 40 ? len[0] : 40),
			(const char *)data[0], err, shma_strerror(err));
	assert_int_equal(err, SHMA_EBADREF);
	assert_true(why[0] != '\0');
	assert_memory_equal(&r, &before, sizeof(r));
	recv_nth(z->rx, next);
	assert_int_equal(shma_ref_recv(z->rx, &r, ZMQ_DONTWAIT, NULL, 0), -EAGAIN);
}

static void malformed_messages(int txtype, int rxtype, const char *endpoint)
{
	struct zpair z;
	char *json;
	size_t jlen;
	struct shma_ref r;
	char *big = malloc(100000);

	assert_non_null(big);
	memset(big, ' ', 100000);
	big[0] = '{';
	big[99999] = '}';
	nth_ref(&r, 0);
	assert_int_equal(shma_ref_encode(&r, &json, &jlen), 0);
	zpair_open(&z, txtype, rxtype, endpoint);
	{
		/* the wrong type frame, then the ref's JSON */
		const void *d[] = { "shma.ref/2", json };
		const size_t l[] = { 10, jlen };

		expect_bad_message(&z, 2, d, l, 1);
	}
	{
		const void *d[] = { "shma.ref/", json };
		const size_t l[] = { 9, jlen };

		expect_bad_message(&z, 2, d, l, 2);
	}
	{
		const void *d[] = { "shma.ref/1x", json };
		const size_t l[] = { 11, jlen };

		expect_bad_message(&z, 2, d, l, 3);
	}
	{
		const void *d[] = { "", json };
		const size_t l[] = { 0, jlen };

		expect_bad_message(&z, 2, d, l, 4);
	}
	{
		/* a single frame: the type alone, the JSON alone */
		const void *d[] = { TYPE_FRAME };
		const size_t l[] = { 10 };

		expect_bad_message(&z, 1, d, l, 5);
	}
	{
		const void *d[] = { json };
		const size_t l[] = { jlen };

		expect_bad_message(&z, 1, d, l, 6);
	}
	{
		/* the right type, a body that is not a ref */
		const void *d[] = { TYPE_FRAME, "{\"shma_ref\":1}" };
		const size_t l[] = { 10, 14 };

		expect_bad_message(&z, 2, d, l, 7);
	}
	{
		const void *d[] = { TYPE_FRAME, "" };
		const size_t l[] = { 10, 0 };

		expect_bad_message(&z, 2, d, l, 8);
	}
	{
		const void *d[] = { TYPE_FRAME, big };
		const size_t l[] = { 10, 100000 };

		expect_bad_message(&z, 2, d, l, 9);
	}
	{
		/* a bad type frame followed by many frames: all consumed */
		const void *d[] = { "junk", "a", "b", "c", json, "d" };
		const size_t l[] = { 4, 1, 1, 1, jlen, 1 };

		expect_bad_message(&z, 6, d, l, 10);
	}
	zpair_close(&z);
	free(json);
	free(big);
}

/* Extra frames after a valid ref: not the two-frame format
 * (docs/PROTOCOL.md §16.3; shma.h: "one ZeroMQ message of two frames"). */
static void extra_frames(int txtype, int rxtype, const char *endpoint)
{
	char text[1024], *json;
	struct shma_ref r;
	struct zpair z;
	size_t jlen;

	nth_ref(&r, 0);
	assert_int_equal(shma_ref_encode(&r, &json, &jlen), 0);
	assert_true(jlen < sizeof(text));
	memcpy(text, json, jlen);
	free(json);
	zpair_open(&z, txtype, rxtype, endpoint);
	{
		const void *d[] = { TYPE_FRAME, text, "extra" };
		const size_t l[] = { 10, jlen, 5 };

		expect_bad_message(&z, 3, d, l, 1);
	}
	{
		const void *d[] = { TYPE_FRAME, text, text, text };
		const size_t l[] = { 10, jlen, jlen, jlen };

		expect_bad_message(&z, 4, d, l, 2);
	}
	zpair_close(&z);
}

static void test_zmq_malformed_pair(void **state)
{
	(void)state;
	malformed_messages(ZMQ_PAIR, ZMQ_PAIR, "inproc://aref-bad-pair");
}

static void test_zmq_malformed_push_pull(void **state)
{
	(void)state;
	malformed_messages(ZMQ_PUSH, ZMQ_PULL, "inproc://aref-bad-pushpull");
}

static void test_zmq_extra_frames_pair(void **state)
{
	(void)state;
	extra_frames(ZMQ_PAIR, ZMQ_PAIR, "inproc://aref-extra-pair");
}

static void test_zmq_extra_frames_push_pull(void **state)
{
	(void)state;
	extra_frames(ZMQ_PUSH, ZMQ_PULL, "inproc://aref-extra-pushpull");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doc_example),
		cmocka_unit_test(test_roundtrip_shapes),
		cmocka_unit_test(test_roundtrip_limits),
		cmocka_unit_test(test_roundtrip_dtypes),
		cmocka_unit_test(test_roundtrip_random),
		cmocka_unit_test(test_bad_not_json),
		cmocka_unit_test(test_bad_not_object),
		cmocka_unit_test(test_bad_unknown_field),
		cmocka_unit_test(test_bad_missing_field),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_bad_store),
		cmocka_unit_test(test_bad_socket),
		cmocka_unit_test(test_bad_array_name),
		cmocka_unit_test(test_bad_revision),
		cmocka_unit_test(test_bad_dtype),
		cmocka_unit_test(test_bad_shape_strides_mismatch),
		cmocka_unit_test(test_bad_too_many_dims),
		cmocka_unit_test(test_bad_negative_shape),
		cmocka_unit_test(test_bad_stride_magnitude),
		cmocka_unit_test(test_bad_size_overflow),
		cmocka_unit_test(test_size_zero_anywhere),
		cmocka_unit_test(test_bad_offset_extent_types),
		cmocka_unit_test(test_bad_lo_gt_hi),
		cmocka_unit_test(test_bad_element_before_lo),
		cmocka_unit_test(test_bad_element_at_or_past_hi),
		cmocka_unit_test(test_bad_duplicate_keys),
		cmocka_unit_test(test_bad_huge_json),
		cmocka_unit_test(test_why_buffer),
		cmocka_unit_test(test_zmq_pair),
		cmocka_unit_test(test_zmq_push_pull),
		cmocka_unit_test(test_zmq_router_dealer),
		cmocka_unit_test(test_zmq_send_would_block),
		cmocka_unit_test(test_zmq_malformed_pair),
		cmocka_unit_test(test_zmq_malformed_push_pull),
		cmocka_unit_test(test_zmq_extra_frames_pair),
		cmocka_unit_test(test_zmq_extra_frames_push_pull),
	};

	return cmocka_run_group_tests_name("aref", tests, NULL, NULL);
}
