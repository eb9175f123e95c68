/* test_npy.c - the .npy header reader and writer (worker/npy.c): headers as
 * NumPy writes them, the variants its reader accepts, and each malformed
 * case with the fault it must be reported as (and where).
 *
 * The reference headers are the bytes NumPy 1.24's np.save() writes (the
 * dict text is repr() of the header dict; padding differs between NumPy
 * versions and is not compared).  No Python is needed here; the round trips
 * through NumPy itself are in tests/integration/test_cli.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "npy.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A header (preamble + dict text padded) built by hand, for the parser. */
static size_t build(unsigned char *buf, unsigned major, unsigned minor, const char *dict)
{
	size_t n = strlen(dict), pre = major == 1 ? 10 : 12;

	memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
	buf[6] = (unsigned char)major;
	buf[7] = (unsigned char)minor;
	buf[8] = (unsigned char)(n & 0xff);
	buf[9] = (unsigned char)(n >> 8 & 0xff);
	if (pre == 12) {
		buf[10] = (unsigned char)(n >> 16 & 0xff);
		buf[11] = (unsigned char)(n >> 24 & 0xff);
	}
	memcpy(buf + pre, dict, n);
	return pre + n;
}

/* Parse a whole header in memory the way npy_read_header does. */
static int parse(const unsigned char *buf, size_t len, struct npy_header *h, struct npy_error *e)
{
	size_t hlen;
	int err;

	memset(h, 0, sizeof(*h));
	err = npy_parse_preamble(buf, len, h, &hlen, e);
	if (err)
		return err;
	if (h->data_offset > len) {
		e->fault = NPY_TRUNCATED;
		return -EINVAL;
	}
	return npy_parse_dict((const char *)buf + h->data_offset - hlen, hlen,
			      h->data_offset - hlen, h, e);
}

/* ---- writing ---------------------------------------------------------------- */

static void test_format_numpy(void **state)
{
	static const struct {
		const char *descr;
		bool fortran;
		unsigned ndim;
		uint64_t shape[3];
		const char *dict; /* repr() of NumPy's header dict */
	} cases[] = {
		{ "<f8", false, 2, { 3, 4 },
		  "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }" },
		{ ">i4", true, 3, { 2, 3, 4 },
		  "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3, 4), }" },
		{ "|b1", false, 1, { 5 },
		  "{'descr': '|b1', 'fortran_order': False, 'shape': (5,), }" },
		{ "<c16", false, 0, { 0 },
		  "{'descr': '<c16', 'fortran_order': False, 'shape': (), }" },
		{ "<u1", false, 1, { 0 }, /* 1-byte types normalise to '|' */
		  "{'descr': '|u1', 'fortran_order': False, 'shape': (0,), }" },
	};
	char buf[4096];
	size_t len;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t n = strlen(cases[i].dict), hlen;

		assert_int_equal(npy_format_header(cases[i].descr, cases[i].fortran, cases[i].ndim,
						   cases[i].shape, 0, buf, sizeof(buf), &len), 0);
		assert_int_equal(len % NPY_ALIGN, 0);
		assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
		hlen = (size_t)(unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
		assert_int_equal(hlen + 10, len);
		assert_memory_equal(buf + 10, cases[i].dict, n);
		for (size_t k = 10 + n; k < len - 1; k++)
			assert_int_equal(buf[k], ' ');
		assert_int_equal(buf[len - 1], '\n');
	}
}

static void test_format_versions(void **state)
{
	uint64_t shape[2] = { 7, 9 };
	struct npy_header h;
	struct npy_error e;
	char buf[4096];
	size_t len;

	(void)state;
	for (unsigned v = 1; v <= 3; v++) {
		assert_int_equal(npy_format_header(">f4", true, 2, shape, v, buf, sizeof(buf), &len),
				 0);
		assert_int_equal(buf[6], (char)v);
		assert_int_equal(len % NPY_ALIGN, 0);
		assert_int_equal(parse((unsigned char *)buf, len, &h, &e), 0);
		assert_int_equal(h.major, v);
		assert_int_equal(h.data_offset, len);
		assert_string_equal(h.descr, ">f4");
		assert_true(h.fortran_order);
		assert_int_equal(h.ndim, 2);
		assert_int_equal(h.shape[0], 7);
		assert_int_equal(h.shape[1], 9);
		assert_int_equal(h.itemsize, 4);
		assert_int_equal(h.nbytes, 7 * 9 * 4);
	}
	/* bad arguments, a buffer too small */
	assert_int_equal(npy_format_header("<U3", false, 2, shape, 0, buf, sizeof(buf), &len),
			 -EINVAL);
	assert_int_equal(npy_format_header("<f8", false, 33, shape, 0, buf, sizeof(buf), &len),
			 -EINVAL);
	assert_int_equal(npy_format_header("<f8", false, 2, shape, 4, buf, sizeof(buf), &len),
			 -EINVAL);
	assert_int_equal(npy_format_header("<f8", false, 2, shape, 0, buf, 32, &len), -ENOSPC);
}

/* Every shape and dtype the writer writes, the reader reads back. */
static void test_format_roundtrip(void **state)
{
	static const char *const dtypes[] = { "|b1", "|i1", "<i2", ">i2", "<i4", ">i8", "|u1",
					      "<u2", ">u4", "<u8", "<f2", ">f4", "<f8", ">c8",
					      "<c16" };
	uint64_t shape[NPY_MAXDIM];
	struct npy_header h;
	struct npy_error e;
	char buf[4096];
	size_t len;

	(void)state;
	for (unsigned nd = 0; nd <= NPY_MAXDIM; nd++) {
		for (unsigned i = 0; i < nd; i++)
			shape[i] = i % 3 ? 1 : 2 + i; /* small: the product stays < 2^60 */
		for (size_t d = 0; d < ARRAY_SIZE(dtypes); d++) {
			assert_int_equal(npy_format_header(dtypes[d], nd & 1, nd, shape, 0, buf,
							   sizeof(buf), &len), 0);
			assert_int_equal(parse((unsigned char *)buf, len, &h, &e), 0);
			assert_string_equal(h.descr, dtypes[d]);
			assert_int_equal(h.ndim, nd);
			assert_int_equal(h.fortran_order, nd & 1);
			assert_memory_equal(h.shape, shape, nd * sizeof(uint64_t));
		}
	}
}

/* ---- reading ---------------------------------------------------------------- */

static void test_parse_variants(void **state)
{
	static const struct {
		const char *dict;
		const char *descr;
		bool fortran;
		unsigned ndim;
		uint64_t shape[3];
	} cases[] = {
		/* as written by NumPy, padding and all */
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }          \n", "<f8",
		  false, 2, { 3, 4 } },
		/* any key order, double quotes, no trailing comma, no spaces */
		{ "{\"shape\":(2,),\"fortran_order\":True,\"descr\":\">i2\"}", ">i2", true, 1, { 2 } },
		/* Python 2's long sizes, tabs and newlines */
		{ "{'descr':\t'|u1',\n 'fortran_order': False, 'shape': (3L, 4L, 5L), }\n", "|u1",
		  false, 3, { 3, 4, 5 } },
		/* a 0-d array; a trailing comma in the tuple */
		{ "{'descr': '<c8', 'fortran_order': False, 'shape': (), }", "<c8", false, 0, { 0 } },
		{ "{'descr': '<c8', 'fortran_order': False, 'shape': (1, 2,), }", "<c8", false, 2,
		  { 1, 2 } },
		/* native and 1-byte orders normalise */
		{ "{'descr': '<b1', 'fortran_order': False, 'shape': (0,), }", "|b1", false, 1,
		  { 0 } },
		{ "{'descr': '>u1', 'fortran_order': False, 'shape': (1,), }", "|u1", false, 1,
		  { 1 } },
	};
	unsigned char buf[1024];
	struct npy_header h;
	struct npy_error e;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t len = build(buf, 1, 0, cases[i].dict);
		int err = parse(buf, len, &h, &e);

		if (err)
			fprintf(stderr, "case %zu: %s (%s)\n", i, e.text, npy_fault_name(e.fault));
		assert_int_equal(err, 0);
		assert_string_equal(h.descr, cases[i].descr);
		assert_int_equal(h.fortran_order, cases[i].fortran);
		assert_int_equal(h.ndim, cases[i].ndim);
		assert_memory_equal(h.shape, cases[i].shape, cases[i].ndim * sizeof(uint64_t));
	}
	/* '=' is the host's order */
	assert_int_equal(parse(buf, build(buf, 1, 0, "{'descr': '=f8', 'fortran_order': False, "
					  "'shape': (1,), }"), &h, &e), 0);
	assert_string_equal(h.descr, __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? ">f8" : "<f8");
}

/* Each malformed header: its fault, a word of its message, and where. */
static void test_parse_malformed(void **state)
{
	static const struct {
		const char *dict;
		enum npy_fault fault;
		const char *words;
		long offset; /* in the file; -1: not checked */
	} cases[] = {
		{ "", NPY_BAD_HEADER, "empty", 8 },
		{ "[]", NPY_BAD_HEADER, "expected '{'", 10 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': 1}", NPY_BAD_KEYS,
		  "unexpected key 'extra'", 66 },
		{ "{'descr': '<f8', 'fortran_order': False}", NPY_BAD_KEYS, "no 'shape'", 10 },
		{ "{'descr': '<f8', 'shape': (3,)}", NPY_BAD_KEYS, "no 'fortran_order'", -1 },
		{ "{'fortran_order': False, 'shape': (3,)}", NPY_BAD_KEYS, "no 'descr'", -1 },
		{ "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (3,)}",
		  NPY_BAD_KEYS, "twice", 27 },
		{ "{'descr': [('a', '<f8'), ('b', '<i4')], 'fortran_order': False, 'shape': (3,)}",
		  NPY_BAD_DTYPE, "structured", 20 },
		{ "{'descr': '<U10', 'fortran_order': False, 'shape': (3,)}", NPY_BAD_DTYPE,
		  "'<U10' (Unicode strings)", 20 },
		{ "{'descr': '|O', 'fortran_order': False, 'shape': (3,)}", NPY_BAD_DTYPE,
		  "Python objects", -1 },
		{ "{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (3,)}", NPY_BAD_DTYPE,
		  "datetimes", -1 },
		{ "{'descr': '<f16', 'fortran_order': False, 'shape': (3,)}", NPY_BAD_DTYPE,
		  "long double", -1 },
		{ "{'descr': '|S5', 'fortran_order': False, 'shape': (3,)}", NPY_BAD_DTYPE,
		  "byte strings", -1 },
		{ "{'descr': '|V8', 'fortran_order': False, 'shape': (3,)}", NPY_BAD_DTYPE,
		  "void", -1 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (3, -4)}", NPY_BAD_SHAPE,
		  "negative size -4", 64 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}",
		  NPY_BAD_SHAPE, "too large", -1 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (1073741824, 1073741824)}",
		  NPY_BAD_SHAPE, "2^60", -1 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (3)}", NPY_BAD_SHAPE,
		  "not a tuple", -1 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': [3, 4]}", NPY_BAD_SHAPE,
		  "tuple", -1 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (3.0,)}", NPY_BAD_HEADER,
		  "expected ',' or ')'", -1 },
		{ "{'descr': '<f8', 'fortran_order': false, 'shape': (3,)}", NPY_BAD_HEADER,
		  "True or False", -1 },
		{ "{'descr': '<f8', 'fortran_order': Falsey, 'shape': (3,)}", NPY_BAD_HEADER,
		  "True or False", -1 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (3,)} junk", NPY_BAD_HEADER,
		  "after the header's dictionary", 66 },
		{ "{'descr' '<f8', 'fortran_order': False, 'shape': (3,)}", NPY_BAD_HEADER,
		  "expected ':'", -1 },
		{ "{'descr': '<f8', 'fortran_order': False 'shape': (3,)}", NPY_BAD_HEADER,
		  "expected ',' or '}'", -1 },
		/* a quote missing: the string ends at the next quote */
		{ "{'descr': '<f8, 'fortran_order': False, 'shape': (3,)}", NPY_BAD_DTYPE, "'<f8, '",
		  20 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (3,)", NPY_BAD_HEADER,
		  "the end of the header", -1 },
		{ "{'descr': '\\x3cf8', 'fortran_order': False, 'shape': (3,)}", NPY_BAD_HEADER,
		  "escape", -1 },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
		  "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)}",
		  NPY_BAD_SHAPE, "more than 32 dimensions", -1 },
	};
	unsigned char buf[1024];
	struct npy_header h;
	struct npy_error e;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t len = build(buf, 1, 0, cases[i].dict);
		int err = parse(buf, len, &h, &e);

		if (err != -EINVAL || e.fault != cases[i].fault || !strstr(e.text, cases[i].words) ||
		    (cases[i].offset >= 0 && e.offset != (uint64_t)cases[i].offset))
			fprintf(stderr, "case %zu: %s: got %s at %llu: %s\n", i, cases[i].dict,
				npy_fault_name(e.fault), (unsigned long long)e.offset, e.text);
		assert_int_equal(err, -EINVAL);
		assert_int_equal(e.fault, cases[i].fault);
		assert_non_null(strstr(e.text, cases[i].words));
		if (cases[i].offset >= 0)
			assert_int_equal(e.offset, cases[i].offset);
	}
}

static void test_parse_preamble(void **state)
{
	const char *dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n";
	unsigned char buf[256];
	struct npy_header h;
	struct npy_error e;
	size_t len, hlen;

	(void)state;
	/* not a .npy file at all, or a prefix of one */
	assert_int_equal(npy_parse_preamble((const unsigned char *)"PK\x03\x04zip", 7, &h, &hlen,
					    &e), -EINVAL);
	assert_int_equal(e.fault, NPY_BAD_MAGIC);
	assert_int_equal(e.offset, 0);
	assert_int_equal(npy_parse_preamble((const unsigned char *)"\x93NUM", 4, &h, &hlen, &e),
			 -EINVAL);
	assert_int_equal(e.fault, NPY_TRUNCATED);
	/* versions */
	len = build(buf, 4, 0, dict);
	assert_int_equal(parse(buf, len, &h, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_BAD_VERSION);
	assert_non_null(strstr(e.text, "4.0"));
	assert_int_equal(e.offset, 6);
	len = build(buf, 1, 1, dict);
	assert_int_equal(parse(buf, len, &h, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_BAD_VERSION);
	len = build(buf, 0, 0, dict);
	assert_int_equal(parse(buf, len, &h, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_BAD_VERSION);
	/* 2.0 needs 12 bytes of preamble */
	len = build(buf, 2, 0, dict);
	assert_int_equal(npy_parse_preamble(buf, 10, &h, &hlen, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_TRUNCATED);
	assert_int_equal(parse(buf, len, &h, &e), 0);
	assert_int_equal(h.data_offset, len);
	/* 3.0 likewise */
	len = build(buf, 3, 0, dict);
	assert_int_equal(parse(buf, len, &h, &e), 0);
	assert_int_equal(h.major, 3);
	/* a header too long to be believed */
	memcpy(buf, "\x93NUMPY\x02\x00\x00\x00\x00\x80", 12);
	assert_int_equal(npy_parse_preamble(buf, 12, &h, &hlen, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_HEADER_TOO_LONG);
	assert_non_null(strstr(e.text, "2147483648 bytes"));
	memcpy(buf, "\x93NUMPY\x03\x00\x01\x00\x10\x00", 12); /* 1 MiB + 1 */
	assert_int_equal(npy_parse_preamble(buf, 12, &h, &hlen, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_HEADER_TOO_LONG);
}

/* A memfd holding len bytes, positioned at 0. */
static int memfd_with(const void *data, size_t len)
{
	int fd = memfd_create("test-npy", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

static void test_read_header(void **state)
{
	uint64_t shape[2] = { 10, 3 };
	struct npy_header h;
	struct npy_error e;
	char buf[4096];
	size_t len;
	int fd, p[2];

	(void)state;
	assert_int_equal(npy_format_header("<i4", false, 2, shape, 2, buf, sizeof(buf), &len), 0);
	/* a whole header: the fd is left at the data */
	fd = memfd_with(buf, len);
	assert_int_equal(npy_read_header(fd, &h, &e), 0);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)len);
	assert_int_equal(h.nbytes, 120);
	/* the data must be all there */
	assert_int_equal(npy_check_size(&h, len + 120, &e), 0);
	assert_int_equal(npy_check_size(&h, len + 119, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_TRUNCATED);
	assert_non_null(strstr(e.text, "promises 120 bytes"));
	assert_non_null(strstr(e.text, "holds 119"));
	assert_int_equal(npy_check_size(&h, 5, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_TRUNCATED);
	close(fd);

	/* cut inside the header, inside the preamble, and empty */
	fd = memfd_with(buf, len - 20);
	assert_int_equal(npy_read_header(fd, &h, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_TRUNCATED);
	assert_non_null(strstr(e.text, "inside its header"));
	close(fd);
	fd = memfd_with(buf, 9);
	assert_int_equal(npy_read_header(fd, &h, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_TRUNCATED);
	close(fd);
	fd = memfd_with(buf, 0);
	assert_int_equal(npy_read_header(fd, &h, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_TRUNCATED);
	close(fd);
	fd = memfd_with("hello world, this is text", 25);
	assert_int_equal(npy_read_header(fd, &h, &e), -EINVAL);
	assert_int_equal(e.fault, NPY_BAD_MAGIC);
	close(fd);

	/* through a pipe (no seeking), one byte at a time is not needed: the
	 * writer closes, the reader reads what there is */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], buf, len), (ssize_t)len);
	close(p[1]);
	assert_int_equal(npy_read_header(p[0], &h, &e), 0);
	assert_int_equal(h.major, 2);
	close(p[0]);

	/* a read error is NPY_IO with the errno */
	assert_int_equal(npy_read_header(-1, &h, &e), -EBADF);
	assert_int_equal(e.fault, NPY_IO);
}

static void test_fault_names(void **state)
{
	(void)state;
	for (int f = NPY_OK; f <= NPY_TRUNCATED; f++)
		assert_string_not_equal(npy_fault_name((enum npy_fault)f), "unknown");
	assert_string_equal(npy_fault_name(NPY_TRUNCATED), "truncated");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_numpy),	 cmocka_unit_test(test_format_versions),
		cmocka_unit_test(test_format_roundtrip), cmocka_unit_test(test_parse_variants),
		cmocka_unit_test(test_parse_malformed),	 cmocka_unit_test(test_parse_preamble),
		cmocka_unit_test(test_read_header),	 cmocka_unit_test(test_fault_names),
	};

	return cmocka_run_group_tests_name("npy", tests, NULL, NULL);
}
