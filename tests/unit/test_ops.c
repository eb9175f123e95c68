/* test_ops.c - the kernels of shma-worker (worker/ops.c) against
 * straightforward loops: every op, every supported dtype (both byte orders),
 * strided, reversed and transposed views, per-axis reductions, histogram
 * edges, exact integer sums, NaN, empty and 0-d views, and the errors.
 *
 * The reference reads each element through shma_view_ptr() and converts it
 * with a plain switch on the dtype, then loops in the obvious way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "shma.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the reference ---------------------------------------------------------- */

static double half_ref(uint16_t h)
{
	int e = (h >> 10) & 31, m = h & 1023;
	double v = e == 0 ? m / 1024.0 * pow(2, -14)
		 : e == 31 ? (m ? NAN : INFINITY) : (1 + m / 1024.0) * pow(2, e - 15);

	return (h >> 15) ? -v : v;
}

static double elem(const struct shma_view *v, const uint64_t *idx)
{
	const unsigned char *p = shma_view_ptr(v, idx);
	unsigned char b[8];
	unsigned n = v->itemsize;

	assert_non_null(p);
	for (unsigned i = 0; i < n; i++) /* to little-endian */
		b[i] = v->dtype[0] == '>' ? p[n - 1 - i] : p[i];
	switch (v->dtype[1]) {
	case 'b': return b[0] != 0;
	case 'i': {
		int64_t x = 0;
		memcpy(&x, b, n);
		x = (int64_t)((uint64_t)x << (64 - 8 * n)) >> (64 - 8 * n); /* sign-extend */
		return (double)x;
	}
	case 'u': {
		uint64_t x = 0;
		memcpy(&x, b, n);
		return (double)x;
	}
	default:
		if (n == 2) {
			uint16_t h;
			memcpy(&h, b, 2);
			return half_ref(h);
		}
		if (n == 4) {
			float f;
			memcpy(&f, b, 4);
			return f;
		}
		{
			double d;
			memcpy(&d, b, 8);
			return d;
		}
	}
}

/* All elements of v in C order. */
static double *elems(const struct shma_view *v, uint64_t *n)
{
	uint64_t idx[SHMA_MAXDIM] = { 0 }, total = shma_view_size(v), k = 0;
	double *x = malloc((total ? total : 1) * sizeof(double));

	assert_non_null(x);
	*n = total;
	if (!total)
		return x;
	for (;;) {
		int i;

		x[k++] = elem(v, idx);
		for (i = (int)v->ndim - 1; i >= 0; i--) {
			if (++idx[i] < v->shape[i])
				break;
			idx[i] = 0;
		}
		if (i < 0)
			break;
	}
	assert_int_equal(k, total);
	return x;
}

static double ref_reduce(enum ops_op op, const double *x, uint64_t n, unsigned ddof)
{
	double s = 0, m, ss = 0;

	switch (op) {
	case OPS_SUM:
		for (uint64_t i = 0; i < n; i++)
			s += x[i];
		return s;
	case OPS_MEAN:
		for (uint64_t i = 0; i < n; i++)
			s += x[i];
		return n ? s / (double)n : NAN;
	case OPS_MIN:
	case OPS_MAX:
		m = x[0];
		for (uint64_t i = 0; i < n; i++) {
			if (isnan(x[i]))
				return NAN;
			if (op == OPS_MIN ? x[i] < m : x[i] > m)
				m = x[i];
		}
		return m;
	case OPS_STD:
		for (uint64_t i = 0; i < n; i++)
			s += x[i];
		m = s / (double)n;
		for (uint64_t i = 0; i < n; i++)
			ss += (x[i] - m) * (x[i] - m);
		return n > ddof ? sqrt(ss / (double)(n - ddof)) : NAN;
	default:
		fail();
		return 0;
	}
}

static void assert_close(double got, double want, double rel)
{
	if (isnan(want)) {
		if (!isnan(got))
			fail_msg("got %.17g, want NaN", got);
		return;
	}
	if (!(fabs(got - want) <= rel * (fabs(want) + 1e-300) + 1e-12))
		fail_msg("got %.17g, want %.17g", got, want);
}

/* ---- arrays ------------------------------------------------------------------ */

/* Store value x as dtype dt at p. */
static void put(void *p, const char *dt, double x)
{
	unsigned n = (unsigned)atoi(dt + 2);
	unsigned char b[8];

	switch (dt[1]) {
	case 'b': b[0] = x != 0; break;
	case 'i': {
		int64_t v = (int64_t)x;
		memcpy(b, &v, n);
		break;
	}
	case 'u': {
		uint64_t v = (uint64_t)x;
		memcpy(b, &v, n);
		break;
	}
	default:
		if (n == 4) {
			float f = (float)x;
			memcpy(b, &f, 4);
		} else if (n == 8) {
			memcpy(b, &x, 8);
		} else { /* f2: small integers and halves are exact */
			uint16_t h;
			int e;
			double m = frexp(fabs(x), &e); /* x = m * 2^e, m in [0.5, 1) */

			if (x == 0)
				h = 0;
			else
				h = (uint16_t)(((e + 14) << 10) | ((unsigned)((m * 2 - 1) * 1024) & 1023));
			if (x < 0)
				h |= 0x8000;
			memcpy(b, &h, 2);
		}
	}
	for (unsigned i = 0; i < n; i++)
		((unsigned char *)p)[i] = dt[0] == '>' ? b[n - 1 - i] : b[i];
}

/* A malloc'd C-order array of dtype dt and shape, element k = f(k). */
static void *make(const char *dt, unsigned ndim, const uint64_t *shape, double (*f)(uint64_t),
		  struct shma_view *v)
{
	uint64_t n = 1;
	unsigned isz = (unsigned)atoi(dt + 2);
	char *mem;

	for (unsigned i = 0; i < ndim; i++)
		n *= shape[i];
	mem = calloc(n ? n : 1, isz);
	assert_non_null(mem);
	for (uint64_t k = 0; k < n; k++)
		put(mem + k * isz, dt, f(k));
	assert_int_equal(shma_view_init(v, mem, dt, ndim, shape), 0);
	return mem;
}

static double f_small(uint64_t k)
{
	return (double)((k * 7 + 3) % 23) - 11; /* -11 .. 11 */
}

static double f_pos(uint64_t k)
{
	return (double)((k * 5 + 1) % 17); /* 0 .. 16 */
}

static double f_frac(uint64_t k)
{
	return sin((double)k) * 100.0;
}

static const enum ops_op reductions[] = { OPS_SUM, OPS_MEAN, OPS_MIN, OPS_MAX, OPS_STD };

/* Every whole reduction of v against the reference. */
static void check_reductions(const struct shma_view *v, double rel)
{
	uint64_t n;
	double *x = elems(v, &n);

	for (size_t i = 0; i < ARRAY_SIZE(reductions); i++) {
		struct ops_value r;
		char why[256] = "";
		int err = ops_reduce(reductions[i], v, 0, &r, why, sizeof(why));

		if (n == 0 && (reductions[i] == OPS_MIN || reductions[i] == OPS_MAX)) {
			assert_int_equal(err, -EINVAL);
			assert_non_null(strstr(why, "zero-size"));
			continue;
		}
		if (err)
			fail_msg("%s of %s: %s", ops_name(reductions[i]), v->dtype, why);
		assert_int_equal(r.n, n);
		assert_close(r.value, ref_reduce(reductions[i], x, n, 0), rel);
		if (r.exact)
			assert_true((double)r.ivalue == r.value);
	}
	free(x);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_names(void **state)
{
	enum ops_op op;

	(void)state;
	for (unsigned i = 0; i < OPS_NOPS; i++) {
		assert_int_equal(ops_lookup(ops_name((enum ops_op)i), &op), 0);
		assert_int_equal(op, i);
	}
	assert_int_equal(ops_lookup("median", &op), -EINVAL);
	assert_true(ops_is_reduction(OPS_STD));
	assert_false(ops_is_reduction(OPS_HISTOGRAM));
	assert_int_equal(ops_ninputs(OPS_DOT), 2);
	assert_int_equal(ops_ninputs(OPS_SCALE), 1);
}

static void test_dtypes(void **state)
{
	static const char *const dts[] = { "|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2",
					   "<u4", "<u8", "<f2", "<f4", "<f8", ">i2", ">i4",
					   ">i8", ">u4", ">f4", ">f8", ">f2", ">u8" };
	uint64_t shape[1] = { 1000 };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(dts); i++) {
		struct shma_view v;
		void *m = make(dts[i], 1, shape, dts[i][1] == 'u' || dts[i][1] == 'b' ? f_pos : f_small,
			       &v);

		check_reductions(&v, 1e-12);
		free(m);
	}
}

static void test_floats_and_large(void **state)
{
	uint64_t shape[1] = { 100003 }; /* several chunks, not a multiple of anything */
	struct shma_view v;
	void *m = make("<f8", 1, shape, f_frac, &v);

	(void)state;
	check_reductions(&v, 1e-9);
	free(m);
	m = make("<f4", 1, shape, f_frac, &v);
	check_reductions(&v, 1e-9);
	free(m);
}

static void test_strided_views(void **state)
{
	uint64_t shape[3] = { 6, 7, 9 };
	struct shma_view v, s;
	void *m = make("<f8", 3, shape, f_frac, &v);
	const char *exprs[] = { "::2", "::-1", "1:5, ::-2, 3:", "..., ::-3", ":, 2, ::-1",
				"::-1, ::-1, ::-1", "0:0", "2, 3, 4" };
	char why[128];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(exprs); i++) {
		assert_int_equal(shma_view_subscript(&v, exprs[i], &s, why, sizeof(why)), 0);
		check_reductions(&s, 1e-9);
	}
	/* transposed: F order, and a transposed reversed view */
	assert_int_equal(shma_view_transpose(&v, NULL, &s), 0);
	check_reductions(&s, 1e-9);
	assert_int_equal(shma_view_subscript(&s, "::-1, 1:, ::2", &s, why, sizeof(why)), 0);
	check_reductions(&s, 1e-9);
	free(m);
	/* integer views, strided */
	m = make(">i4", 3, shape, f_small, &v);
	assert_int_equal(shma_view_subscript(&v, "::-2, 1::3, ::-1", &s, why, sizeof(why)), 0);
	check_reductions(&s, 0);
	free(m);
}

static void test_exact_ints(void **state)
{
	int64_t big[4] = { INT64_C(4611686018427387904), INT64_C(4611686018427387904),
			   INT64_C(4611686018427387904), -INT64_C(3) };
	uint64_t ubig[3] = { UINT64_MAX, UINT64_MAX - 1, 5 };
	uint64_t n4 = 4, n3 = 3;
	struct shma_view v;
	struct ops_value r;

	(void)state;
	/* 3 * 2^62 - 3 does not fit int64: the value as a double, not exact */
	assert_int_equal(shma_view_init(&v, big, "<i8", 1, &n4), 0);
	assert_int_equal(ops_reduce(OPS_SUM, &v, 0, &r, NULL, 0), 0);
	assert_false(r.exact);
	assert_true(r.value == ldexp(3, 62));
	big[1] = big[2] = 1000;
	assert_int_equal(ops_reduce(OPS_SUM, &v, 0, &r, NULL, 0), 0);
	assert_true(r.exact);
	assert_true(r.ivalue == INT64_C(4611686018427387904) + 2000 - 3);
	/* beyond 2^53, where a double sum would round */
	big[0] = (INT64_C(1) << 53) + 1;
	big[1] = 2;
	big[2] = 0;
	big[3] = 0;
	assert_int_equal(ops_reduce(OPS_SUM, &v, 0, &r, NULL, 0), 0);
	assert_true(r.exact && r.ivalue == (INT64_C(1) << 53) + 3);
	assert_int_equal(ops_reduce(OPS_MIN, &v, 0, &r, NULL, 0), 0);
	assert_true(r.exact && r.ivalue == 0);
	/* uint64 beyond int64: min exact, max a double */
	assert_int_equal(shma_view_init(&v, ubig, "<u8", 1, &n3), 0);
	assert_int_equal(ops_reduce(OPS_MIN, &v, 0, &r, NULL, 0), 0);
	assert_true(r.exact && r.ivalue == 5);
	assert_int_equal(ops_reduce(OPS_MAX, &v, 0, &r, NULL, 0), 0);
	assert_false(r.exact);
	assert_true(r.value == 18446744073709551615.0);
}

static void test_nan_and_special(void **state)
{
	double x[5] = { 1, 2, NAN, -4, 5 };
	uint64_t n = 5, zero = 0;
	struct shma_view v;
	struct ops_value r;
	char why[128];

	(void)state;
	assert_int_equal(shma_view_init(&v, x, "<f8", 1, &n), 0);
	assert_int_equal(ops_reduce(OPS_MIN, &v, 0, &r, NULL, 0), 0);
	assert_true(isnan(r.value));
	assert_int_equal(ops_reduce(OPS_MAX, &v, 0, &r, NULL, 0), 0);
	assert_true(isnan(r.value));
	assert_int_equal(ops_reduce(OPS_SUM, &v, 0, &r, NULL, 0), 0);
	assert_true(isnan(r.value));
	/* empty: sum 0, mean NaN, min an error */
	assert_int_equal(shma_view_init(&v, x, "<f8", 1, &zero), 0);
	assert_int_equal(ops_reduce(OPS_SUM, &v, 0, &r, NULL, 0), 0);
	assert_true(r.value == 0 && r.n == 0);
	assert_int_equal(ops_reduce(OPS_MEAN, &v, 0, &r, NULL, 0), 0);
	assert_true(isnan(r.value));
	assert_int_equal(ops_reduce(OPS_MAX, &v, 0, &r, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "zero-size"));
	/* 0-d: one element */
	assert_int_equal(shma_view_init(&v, &x[4], "<f8", 0, NULL), 0);
	assert_int_equal(ops_reduce(OPS_SUM, &v, 0, &r, NULL, 0), 0);
	assert_true(r.value == 5 && r.n == 1);
	assert_int_equal(ops_reduce(OPS_STD, &v, 0, &r, NULL, 0), 0);
	assert_true(r.value == 0 && r.mean == 5);
	/* std with ddof */
	assert_int_equal(shma_view_init(&v, x, "<f8", 1, &n), 0);
	x[2] = 3;
	assert_int_equal(ops_reduce(OPS_STD, &v, 1, &r, NULL, 0), 0);
	assert_close(r.value, ref_reduce(OPS_STD, x, 5, 0) * sqrt(5.0 / 4), 1e-14);
}

static void test_std_ddof(void **state)
{
	double x[4] = { 2, 4, 4, 6 };
	uint64_t n = 4;
	struct shma_view v;
	struct ops_value r;

	(void)state;
	assert_int_equal(shma_view_init(&v, x, "<f8", 1, &n), 0);
	assert_int_equal(ops_reduce(OPS_STD, &v, 0, &r, NULL, 0), 0);
	assert_close(r.value, sqrt(2.0), 1e-15);
	assert_close(r.mean, 4, 0);
	assert_int_equal(ops_reduce(OPS_STD, &v, 1, &r, NULL, 0), 0);
	assert_close(r.value, sqrt(8.0 / 3), 1e-15);
	assert_int_equal(ops_reduce(OPS_STD, &v, 4, &r, NULL, 0), 0);
	assert_true(isnan(r.value));
}

/* Per-axis reductions of v against loops over the index space. */
static void check_axes(const struct shma_view *v, double rel)
{
	for (unsigned ax = 0; ax < v->ndim; ax++)
		for (size_t o = 0; o < ARRAY_SIZE(reductions); o++) {
			enum ops_op op = reductions[o];
			uint64_t nout = ops_size_without_axis(v, ax), oshape[SHMA_MAXDIM];
			uint64_t oidx[SHMA_MAXDIM] = { 0 }, idx[SHMA_MAXDIM], len = v->shape[ax];
			double *out = malloc((nout ? nout : 1) * sizeof(double));
			double *line = malloc((len ? len : 1) * sizeof(double));
			unsigned ond = 0;
			char why[256];
			int err;

			for (unsigned i = 0; i < v->ndim; i++)
				if (i != ax)
					oshape[ond++] = v->shape[i];
			err = ops_reduce_axis(op, v, ax, 0, out, why, sizeof(why));
			if (err)
				fail_msg("%s axis %u: %s", ops_name(op), ax, why);
			for (uint64_t k = 0; k < nout; k++) {
				unsigned j = 0;

				for (unsigned i = 0; i < v->ndim; i++)
					idx[i] = i == ax ? 0 : oidx[j++];
				for (uint64_t t = 0; t < len; t++) {
					idx[ax] = t;
					line[t] = elem(v, idx);
				}
				assert_close(out[k], ref_reduce(op, line, len, 0), rel);
				for (int i = (int)ond - 1; i >= 0; i--) {
					if (++oidx[i] < oshape[i])
						break;
					oidx[i] = 0;
				}
			}
			free(out);
			free(line);
		}
}

static void test_axis(void **state)
{
	uint64_t shape[3] = { 4, 5, 6 }, s2[2] = { 3, 1 };
	struct shma_view v, s;
	char why[128];
	void *m = make("<f8", 3, shape, f_frac, &v);

	(void)state;
	check_axes(&v, 1e-12);
	assert_int_equal(shma_view_subscript(&v, "::-1, 1::2, ::-2", &s, why, sizeof(why)), 0);
	check_axes(&s, 1e-12);
	assert_int_equal(shma_view_transpose(&v, NULL, &s), 0);
	check_axes(&s, 1e-12);
	free(m);
	m = make("<i2", 3, shape, f_small, &v);
	check_axes(&v, 1e-12);
	free(m);
	m = make("<u1", 2, s2, f_pos, &v); /* a length-1 inner axis */
	check_axes(&v, 1e-12);
	free(m);
}

static void test_axis_errors(void **state)
{
	uint64_t shape[2] = { 3, 0 }, shape2[2] = { 0, 3 };
	struct shma_view v;
	double out[8], x[8] = { 0 };
	char why[128];

	(void)state;
	assert_int_equal(shma_view_init(&v, x, "<f8", 2, shape), 0);
	assert_int_equal(ops_reduce_axis(OPS_SUM, &v, 2, 0, out, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "out of bounds"));
	/* reducing an empty axis: sum 0, min an error */
	assert_int_equal(ops_reduce_axis(OPS_SUM, &v, 1, 0, out, why, sizeof(why)), 0);
	assert_true(out[0] == 0 && out[1] == 0 && out[2] == 0);
	assert_int_equal(ops_reduce_axis(OPS_MIN, &v, 1, 0, out, why, sizeof(why)), -EINVAL);
	/* an empty result: nothing to do, no error */
	assert_int_equal(ops_reduce_axis(OPS_MIN, &v, 0, 0, out, why, sizeof(why)), 0);
	assert_int_equal(shma_view_init(&v, x, "<f8", 2, shape2), 0);
	assert_int_equal(ops_reduce_axis(OPS_MEAN, &v, 0, 0, out, why, sizeof(why)), 0);
	assert_true(isnan(out[0]) && isnan(out[2]));
	assert_int_equal(ops_reduce_axis(OPS_HISTOGRAM, &v, 0, 0, out, why, sizeof(why)), -EINVAL);
}

/* NumPy's np.histogram with equal bins, the straightforward way. */
static void ref_hist(const double *x, uint64_t n, size_t bins, double lo, double hi,
		     uint64_t *counts)
{
	memset(counts, 0, bins * sizeof(*counts));
	for (uint64_t i = 0; i < n; i++) {
		if (!(x[i] >= lo && x[i] <= hi))
			continue;
		for (size_t b = 0; b < bins; b++) {
			double l = lo + (double)b * ((hi - lo) / (double)bins);
			double h = b + 1 == bins ? hi : lo + (double)(b + 1) * ((hi - lo) / (double)bins);

			if (x[i] >= l && (x[i] < h || (b + 1 == bins && x[i] <= h))) {
				counts[b]++;
				break;
			}
		}
	}
}

static void test_histogram(void **state)
{
	double x[] = { 0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.0, -0.1, 1.1, NAN, 0.25, 0.75 };
	uint64_t n = ARRAY_SIZE(x), counts[16], want[16];
	double range[2] = { 0, 1 }, lo, hi;
	struct shma_view v;
	char why[128];

	(void)state;
	assert_int_equal(shma_view_init(&v, x, "<f8", 1, &n), 0);
	/* the last bin is closed: both 1.0 count; -0.1, 1.1 and NaN do not */
	assert_int_equal(ops_histogram(&v, 4, range, counts, &lo, &hi, why, sizeof(why)), 0);
	assert_true(lo == 0 && hi == 1);
	assert_int_equal(counts[0], 3); /* 0 0.1 0.2 */
	assert_int_equal(counts[1], 2); /* 0.3 0.25 (an edge opens its bin) */
	assert_int_equal(counts[2], 2); /* 0.5 0.7 */
	assert_int_equal(counts[3], 4); /* 0.9 1.0 1.0 0.75 */
	ref_hist(x, n, 4, 0, 1, want);
	assert_memory_equal(counts, want, 4 * sizeof(uint64_t));
	/* tricky bins: 0.1 * k is not exact; the result must match the edges */
	for (size_t bins = 1; bins <= 16; bins++) {
		double rr[2] = { 0.1, 0.9 };

		assert_int_equal(ops_histogram(&v, bins, rr, counts, &lo, &hi, why, sizeof(why)), 0);
		ref_hist(x, n, bins, 0.1, 0.9, want);
		assert_memory_equal(counts, want, bins * sizeof(uint64_t));
	}
	/* no range: the data's min and max (NaN ignored) */
	assert_int_equal(ops_histogram(&v, 3, NULL, counts, &lo, &hi, why, sizeof(why)), 0);
	assert_true(lo == -0.1 && hi == 1.1);
	assert_int_equal(counts[0] + counts[1] + counts[2], 13);
	/* lo == hi widens by 0.5 */
	range[0] = range[1] = 1;
	assert_int_equal(ops_histogram(&v, 2, range, counts, &lo, &hi, why, sizeof(why)), 0);
	assert_true(lo == 0.5 && hi == 1.5);
	assert_int_equal(counts[0], 4); /* 0.5 0.7 0.9 0.75 */
	assert_int_equal(counts[1], 3); /* 1.0 1.0 1.1 */
	/* errors */
	range[0] = 2;
	assert_int_equal(ops_histogram(&v, 2, range, counts, &lo, &hi, why, sizeof(why)), -EINVAL);
	range[0] = -INFINITY;
	assert_int_equal(ops_histogram(&v, 2, range, counts, &lo, &hi, why, sizeof(why)), -EINVAL);
	assert_int_equal(ops_histogram(&v, 0, NULL, counts, &lo, &hi, why, sizeof(why)), -EINVAL);
}

static void test_histogram_dtypes(void **state)
{
	uint64_t shape[2] = { 40, 25 }, counts[7], want[7], n;
	double range[2] = { -8, 9 }, lo, hi;
	struct shma_view v, s;
	char why[128];
	void *m = make(">i2", 2, shape, f_small, &v);
	double *x;

	(void)state;
	assert_int_equal(shma_view_subscript(&v, "::-3, 1::2", &s, why, sizeof(why)), 0);
	x = elems(&s, &n);
	assert_int_equal(ops_histogram(&s, 7, range, counts, &lo, &hi, why, sizeof(why)), 0);
	ref_hist(x, n, 7, -8, 9, want);
	assert_memory_equal(counts, want, sizeof(want));
	free(x);
	free(m);
}

static void test_scale_add(void **state)
{
	uint64_t shape[2] = { 7, 9 }, bshape[2] = { 8, 11 }, n;
	struct shma_view a, b, sa, sb, out, sout;
	double *outmem = calloc(7 * 9 * 2, sizeof(double));
	void *ma = make("<f4", 2, shape, f_frac, &a);
	void *mb = make(">i8", 2, bshape, f_small, &b);
	double *xa, *xb, *xo;
	char why[200];

	(void)state;
	assert_int_equal(shma_view_subscript(&a, "::-1, ::2", &sa, why, sizeof(why)), 0);
	assert_int_equal(shma_view_subscript(&b, "1:, 1::2", &sb, why, sizeof(why)), 0);
	uint64_t oshape[2] = { sa.shape[0], sa.shape[1] };
	assert_int_equal(shma_view_init(&out, outmem, "<f8", 2, oshape), 0);
	/* scale */
	assert_int_equal(ops_scale(&sa, -2.5, &out, why, sizeof(why)), 0);
	xa = elems(&sa, &n);
	xo = elems(&out, &n);
	for (uint64_t i = 0; i < n; i++)
		assert_true(xo[i] == -2.5 * xa[i]);
	free(xo);
	/* add, into a strided output */
	assert_int_equal(ops_add(&sa, &sb, &out, why, sizeof(why)), 0);
	xb = elems(&sb, &n);
	xo = elems(&out, &n);
	for (uint64_t i = 0; i < n; i++)
		assert_true(xo[i] == xa[i] + xb[i]);
	free(xo);
	uint64_t big[2] = { 14, 9 };
	struct shma_view bigv;
	assert_int_equal(shma_view_init(&bigv, outmem, "<f8", 2, big), 0);
	assert_int_equal(shma_view_subscript(&bigv, "::-2, :5", &sout, why, sizeof(why)), 0);
	assert_int_equal(ops_add(&sa, &sb, &sout, why, sizeof(why)), 0);
	xo = elems(&sout, &n);
	for (uint64_t i = 0; i < n; i++)
		assert_true(xo[i] == xa[i] + xb[i]);
	free(xo);
	/* errors: shapes differ, output not float64 */
	assert_int_equal(ops_add(&a, &sb, &out, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "shapes differ"));
	assert_non_null(strstr(why, "(7, 9)"));
	assert_int_equal(ops_scale(&a, 1, &out, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "shapes differ"));
	assert_int_equal(ops_scale(&sa, 1, &sa, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "float64"));
	free(xa);
	free(xb);
	free(ma);
	free(mb);
	free(outmem);
}

static void test_dot(void **state)
{
	uint64_t n = 1001, m2[2] = { 11, 91 }, cnt;
	struct shma_view a, b, sa, sb, two;
	void *ma = make("<f8", 1, &n, f_frac, &a);
	void *mb = make("<i4", 1, &n, f_small, &b);
	double d, *x, *y, want = 0;
	char why[200];

	(void)state;
	assert_int_equal(shma_view_slice(&a, 0, 0, 1000, 2, &sa), 0);
	assert_int_equal(shma_view_slice(&b, 0, SHMA_END, -501, -1, &sb), 0); /* 500 reversed */
	assert_int_equal(sa.shape[0], sb.shape[0]);
	assert_int_equal(ops_dot(&sa, &sb, &d, why, sizeof(why)), 0);
	x = elems(&sa, &cnt);
	y = elems(&sb, &cnt);
	for (uint64_t i = 0; i < cnt; i++)
		want += x[i] * y[i];
	assert_close(d, want, 1e-12);
	free(x);
	free(y);
	/* errors */
	assert_int_equal(ops_dot(&a, &sb, &d, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "shapes differ"));
	assert_int_equal(shma_view_init(&two, ma, "<f8", 2, m2), 0);
	assert_int_equal(ops_dot(&two, &two, &d, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "1-D"));
	free(ma);
	free(mb);
}

static void test_bad_dtype(void **state)
{
	double x[4] = { 0 };
	uint64_t n = 2;
	struct shma_view v;
	struct ops_value r;
	char why[128];

	(void)state;
	assert_int_equal(shma_view_init(&v, x, "<c16", 1, &n), 0);
	assert_int_equal(ops_reduce(OPS_SUM, &v, 0, &r, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "complex"));
	assert_false(ops_dtype_ok("<c8", why, sizeof(why)));
	assert_true(ops_dtype_ok(">f2", why, sizeof(why)));
	assert_int_equal(ops_reduce(OPS_HISTOGRAM, &v, 0, &r, why, sizeof(why)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_dtypes),
		cmocka_unit_test(test_floats_and_large),
		cmocka_unit_test(test_strided_views),
		cmocka_unit_test(test_exact_ints),
		cmocka_unit_test(test_nan_and_special),
		cmocka_unit_test(test_std_ddof),
		cmocka_unit_test(test_axis),
		cmocka_unit_test(test_axis_errors),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_histogram_dtypes),
		cmocka_unit_test(test_scale_add),
		cmocka_unit_test(test_dot),
		cmocka_unit_test(test_bad_dtype),
	};

	return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
