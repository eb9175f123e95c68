/* ops.c - the analytics kernels of shma-worker (contract in ops.h).
 *
 * All kernels are built from two pieces:
 *
 *  - a walker, which visits the elements of one to three views of one shape
 *    as "runs" along the innermost axis, after dropping length-1 axes and
 *    merging axes that are contiguous in every operand.  For a one-operand
 *    walk where the order does not matter (whole reductions, histogram) it
 *    also turns negative strides around and puts the smallest stride
 *    innermost, so an F-order array or a reversed view is read in memory
 *    order;
 *  - loaders, which convert a chunk of a run (at most OPS_CHUNK elements)
 *    of any dtype into doubles (or, for exact integer sums, into 64-bit
 *    integers).  A native float64 run of stride 8 is used in place.
 *
 * The reductions then work on chunks of doubles that fit in the L1/L2 cache.
 */
#include "ops.h"
#include "why.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ops.c assumes a little-endian host"
#endif

static const char *const op_names[OPS_NOPS] = {
	[OPS_SUM] = "sum",	     [OPS_MEAN] = "mean",   [OPS_MIN] = "min",
	[OPS_MAX] = "max",	     [OPS_STD] = "std",	    [OPS_HISTOGRAM] = "histogram",
	[OPS_SCALE] = "scale",	     [OPS_ADD] = "add",	    [OPS_DOT] = "dot",
};

const char *ops_name(enum ops_op op)
{
	return (unsigned)op < OPS_NOPS ? op_names[op] : "?";
}

int ops_lookup(const char *name, enum ops_op *op)
{
	for (unsigned i = 0; i < OPS_NOPS; i++)
		if (!strcmp(name, op_names[i])) {
			*op = (enum ops_op)i;
			return 0;
		}
	return -EINVAL;
}

bool ops_is_reduction(enum ops_op op)
{
	return op == OPS_SUM || op == OPS_MEAN || op == OPS_MIN || op == OPS_MAX || op == OPS_STD;
}

unsigned ops_ninputs(enum ops_op op)
{
	return op == OPS_ADD || op == OPS_DOT ? 2 : 1;
}

/* ---- element types ---------------------------------------------------------- */

enum elt_code {
	E_B1, E_I1, E_I2, E_I4, E_I8, E_U1, E_U2, E_U4, E_U8, E_F2, E_F4, E_F8,
};

struct elt {
	enum elt_code code;
	unsigned size;
	bool swap;   /* stored big-endian */
	bool intish; /* bool or integer: exact sum/min/max */
};

static int elt_parse(const char *dtype, struct elt *e, char *why, size_t whylen)
{
	static const struct {
		char kind;
		unsigned size;
		enum elt_code code;
	} known[] = {
		{ 'b', 1, E_B1 }, { 'i', 1, E_I1 }, { 'i', 2, E_I2 }, { 'i', 4, E_I4 },
		{ 'i', 8, E_I8 }, { 'u', 1, E_U1 }, { 'u', 2, E_U2 }, { 'u', 4, E_U4 },
		{ 'u', 8, E_U8 }, { 'f', 2, E_F2 }, { 'f', 4, E_F4 }, { 'f', 8, E_F8 },
	};
	char order, kind;
	unsigned size;

	if (strlen(dtype) < 3 || strlen(dtype) > 4)
		return why_invalid(why, whylen, "dtype \"%s\" is not a NumPy type string", dtype);
	order = dtype[0];
	kind = dtype[1];
	size = (unsigned)atoi(dtype + 2);
	if (kind == 'c')
		return why_invalid(why, whylen, "dtype %s: complex numbers are not supported", dtype);
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i].kind == kind && known[i].size == size) {
			e->code = known[i].code;
			e->size = size;
			e->swap = size > 1 && order == '>';
			e->intish = kind != 'f';
			return 0;
		}
	return why_invalid(why, whylen, "dtype \"%s\" is not supported", dtype);
}

bool ops_dtype_ok(const char *dtype, char *why, size_t whylen)
{
	struct elt e;

	return elt_parse(dtype, &e, why, whylen) == 0;
}

static uint64_t load_raw(const char *p, unsigned size, bool swap)
{
	uint64_t u = 0;

	switch (size) {
	case 1: {
		uint8_t x;
		memcpy(&x, p, 1);
		u = x;
		break;
	}
	case 2: {
		uint16_t x;
		memcpy(&x, p, 2);
		u = swap ? __builtin_bswap16(x) : x;
		break;
	}
	case 4: {
		uint32_t x;
		memcpy(&x, p, 4);
		u = swap ? __builtin_bswap32(x) : x;
		break;
	}
	default: {
		uint64_t x;
		memcpy(&x, p, 8);
		u = swap ? __builtin_bswap64(x) : x;
		break;
	}
	}
	return u;
}

static double half_to_double(uint16_t h)
{
	unsigned sign = h >> 15, ex = (h >> 10) & 0x1f, man = h & 0x3ff;
	double v;

	if (ex == 0)
		v = ldexp((double)man, -24);
	else if (ex == 31)
		v = man ? NAN : INFINITY;
	else
		v = ldexp((double)(man | 0x400), (int)ex - 25);
	return sign ? -v : v;
}

static double raw_to_double(uint64_t u, enum elt_code code)
{
	switch (code) {
	case E_B1: return u != 0;
	case E_I1: return (int8_t)u;
	case E_I2: return (int16_t)u;
	case E_I4: return (int32_t)u;
	case E_I8: return (double)(int64_t)u;
	case E_U1: case E_U2: case E_U4: return (double)u;
	case E_U8: return (double)u;
	case E_F2: return half_to_double((uint16_t)u);
	case E_F4: {
		uint32_t b = (uint32_t)u;
		float f;
		memcpy(&f, &b, 4);
		return f;
	}
	case E_F8: {
		double d;
		memcpy(&d, &u, 8);
		return d;
	}
	}
	return 0;
}

#define LOAD_LOOP(T)                                             \
	for (size_t i = 0; i < n; i++) {                         \
		T x_;                                            \
		memcpy(&x_, p + (ptrdiff_t)i * s, sizeof(x_));   \
		out[i] = (double)x_;                             \
	}

/* n elements at p, stride s bytes, as doubles: *res points at them (p
 * itself for native contiguous float64, else buf). */
static void load_f64(const struct elt *e, const char *p, int64_t s, size_t n, double *buf,
		     const double **res)
{
	double *out = buf;

	*res = buf;
	if (e->swap) {
		for (size_t i = 0; i < n; i++)
			out[i] = raw_to_double(load_raw(p + (ptrdiff_t)i * s, e->size, true), e->code);
		return;
	}
	switch (e->code) {
	case E_F8:
		if (s == 8 && ((uintptr_t)p & 7) == 0) {
			*res = (const double *)(const void *)p;
			return;
		}
		LOAD_LOOP(double);
		break;
	case E_F4: LOAD_LOOP(float); break;
	case E_I1: LOAD_LOOP(int8_t); break;
	case E_I2: LOAD_LOOP(int16_t); break;
	case E_I4: LOAD_LOOP(int32_t); break;
	case E_I8: LOAD_LOOP(int64_t); break;
	case E_U1: LOAD_LOOP(uint8_t); break;
	case E_U2: LOAD_LOOP(uint16_t); break;
	case E_U4: LOAD_LOOP(uint32_t); break;
	case E_U8: LOAD_LOOP(uint64_t); break;
	default:
		for (size_t i = 0; i < n; i++)
			out[i] = raw_to_double(load_raw(p + (ptrdiff_t)i * s, e->size, false), e->code);
		break;
	}
}

/* One bool/integer element, exactly. */
static __int128 load_int(const struct elt *e, const char *p)
{
	uint64_t u = load_raw(p, e->size, e->swap);

	switch (e->code) {
	case E_B1: return u != 0;
	case E_I1: return (int8_t)u;
	case E_I2: return (int16_t)u;
	case E_I4: return (int32_t)u;
	case E_I8: return (int64_t)u;
	default: return (__int128)u;
	}
}

/* ---- the walker --------------------------------------------------------------- */

#define WALK_MAXOP 3

struct walk {
	unsigned nop, nd;
	uint64_t shape[SHMA_MAXDIM];
	int64_t strides[WALK_MAXOP][SHMA_MAXDIM];
	uint64_t idx[SHMA_MAXDIM];
	char *data[WALK_MAXOP];
	char *run[WALK_MAXOP]; /* start of the current run */
	uint64_t pos;	       /* in the current run */
	bool done;
};

static void walk_set_run(struct walk *w)
{
	for (unsigned k = 0; k < w->nop; k++) {
		char *p = w->data[k];

		for (unsigned i = 0; i + 1 < w->nd; i++)
			p += (int64_t)w->idx[i] * w->strides[k][i];
		w->run[k] = p;
	}
	w->pos = 0;
}

/* Walk nop views of one shape (the caller checked it).  any_order (nop 1):
 * the visiting order does not matter, so go in memory order. */
static void walk_init(struct walk *w, unsigned nop, const struct shma_view *const *v,
		      bool any_order)
{
	unsigned ndim = v[0]->ndim, nd = 0;
	uint64_t shape[SHMA_MAXDIM];
	int64_t st[WALK_MAXOP][SHMA_MAXDIM];
	unsigned order[SHMA_MAXDIM];

	memset(w, 0, sizeof(*w));
	w->nop = nop;
	for (unsigned k = 0; k < nop; k++)
		w->data[k] = v[k]->data;
	for (unsigned i = 0; i < ndim; i++) {
		if (v[0]->shape[i] == 0) {
			w->done = true;
			return;
		}
		order[i] = i;
	}
	if (any_order) {
		/* reverse negative strides, then sort by |stride|, largest outside */
		for (unsigned i = 0; i < ndim; i++)
			if (v[0]->strides[i] < 0)
				w->data[0] += (int64_t)(v[0]->shape[i] - 1) * v[0]->strides[i];
		for (unsigned i = 1; i < ndim; i++)
			for (unsigned j = i; j > 0; j--) {
				int64_t a = llabs(v[0]->strides[order[j - 1]]);
				int64_t b = llabs(v[0]->strides[order[j]]);

				if (a >= b)
					break;
				unsigned t = order[j];
				order[j] = order[j - 1];
				order[j - 1] = t;
			}
	}
	/* drop length-1 axes; merge an axis into the next inner one when it is
	 * contiguous with it in every operand */
	for (unsigned i = 0; i < ndim; i++) {
		unsigned ax = order[i];
		uint64_t n = v[0]->shape[ax];

		if (n == 1)
			continue;
		if (nd > 0) {
			bool merge = true;

			for (unsigned k = 0; k < nop; k++) {
				int64_t s = v[k]->strides[ax];

				if (any_order && s < 0)
					s = -s;
				if (st[k][nd - 1] != s * (int64_t)n)
					merge = false;
			}
			if (merge) {
				shape[nd - 1] *= n;
				for (unsigned k = 0; k < nop; k++)
					st[k][nd - 1] = st[k][nd - 1] / (int64_t)n;
				continue;
			}
		}
		shape[nd] = n;
		for (unsigned k = 0; k < nop; k++) {
			int64_t s = v[k]->strides[ax];

			st[k][nd] = any_order && s < 0 ? -s : s;
		}
		nd++;
	}
	w->nd = nd;
	memcpy(w->shape, shape, nd * sizeof(shape[0]));
	for (unsigned k = 0; k < nop; k++)
		memcpy(w->strides[k], st[k], nd * sizeof(st[k][0]));
	walk_set_run(w);
}

static int64_t walk_stride(const struct walk *w, unsigned k)
{
	return w->nd ? w->strides[k][w->nd - 1] : 0;
}

/* The next chunk: up to max elements of the current run, starting at p[k]
 * with stride walk_stride(w, k).  Returns its length, 0 at the end. */
static size_t walk_next(struct walk *w, size_t max, char **p)
{
	uint64_t inner = w->nd ? w->shape[w->nd - 1] : 1;
	size_t n;

	if (w->done)
		return 0;
	n = inner - w->pos < max ? (size_t)(inner - w->pos) : max;
	for (unsigned k = 0; k < w->nop; k++)
		p[k] = w->run[k] + (int64_t)w->pos * walk_stride(w, k);
	w->pos += n;
	if (w->pos == inner) {
		int i;

		for (i = (int)w->nd - 2; i >= 0; i--) {
			if (++w->idx[i] < w->shape[i])
				break;
			w->idx[i] = 0;
		}
		if (i < 0)
			w->done = true;
		else
			walk_set_run(w);
	}
	return n;
}

/* ---- accumulators ---------------------------------------------------------------- */

/* Pairwise sum (NumPy's scheme: 8 partial sums below 128 elements). */
static double pairwise(const double *x, size_t n)
{
	if (n < 8) {
		double s = 0;

		for (size_t i = 0; i < n; i++)
			s += x[i];
		return s;
	}
	if (n <= 128) {
		double r[8], s;
		size_t i;

		for (int j = 0; j < 8; j++)
			r[j] = x[j];
		for (i = 8; i + 8 <= n; i += 8)
			for (int j = 0; j < 8; j++)
				r[j] += x[i + j];
		s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			s += x[i];
		return s;
	}
	size_t half = (n / 2) & ~(size_t)7;

	return pairwise(x, half) + pairwise(x + half, n - half);
}

/* Neumaier's compensated sum. */
struct ksum {
	double s, c;
};

static void ksum_add(struct ksum *k, double x)
{
	double t = k->s + x;

	if (fabs(k->s) >= fabs(x))
		k->c += (k->s - t) + x;
	else
		k->c += (x - t) + k->s;
	k->s = t;
}

static double ksum_value(const struct ksum *k)
{
	return k->s + k->c;
}

struct acc {
	enum ops_op op;
	uint64_t n;
	struct ksum sum;
	double mean, m2; /* std */
	double min, max;
	bool nan;
	__int128 isum, imin, imax; /* bool/integer sum, min, max */
};

static void acc_init(struct acc *a, enum ops_op op)
{
	memset(a, 0, sizeof(*a));
	a->op = op;
	a->min = INFINITY;
	a->max = -INFINITY;
	a->imin = ((__int128)1) << 120;
	a->imax = -a->imin;
}

static void acc_doubles(struct acc *a, const double *x, size_t n)
{
	switch (a->op) {
	case OPS_SUM:
	case OPS_MEAN:
		ksum_add(&a->sum, pairwise(x, n));
		break;
	case OPS_MIN: {
		double m = a->min;
		bool nan = false;

		for (size_t i = 0; i < n; i++) {
			m = x[i] < m ? x[i] : m;
			nan |= x[i] != x[i];
		}
		a->min = m;
		a->nan |= nan;
		break;
	}
	case OPS_MAX: {
		double m = a->max;
		bool nan = false;

		for (size_t i = 0; i < n; i++) {
			m = x[i] > m ? x[i] : m;
			nan |= x[i] != x[i];
		}
		a->max = m;
		a->nan |= nan;
		break;
	}
	case OPS_STD: {
		/* chunk mean and squared deviations, merged (Chan et al.) */
		double mb = pairwise(x, n) / (double)n, m2b = 0, delta;
		double na = (double)a->n, nb = (double)n, nt = na + nb;

		for (size_t i = 0; i < n; i++)
			m2b += (x[i] - mb) * (x[i] - mb);
		delta = mb - a->mean;
		a->mean += delta * nb / nt;
		a->m2 += m2b + delta * delta * na * nb / nt;
		break;
	}
	default:
		break;
	}
	a->n += n;
}

static void acc_ints(struct acc *a, const struct elt *e, const char *p, int64_t s, size_t n)
{
	__int128 sum = 0, mn = a->imin, mx = a->imax;

	switch (a->op) {
	case OPS_SUM:
		for (size_t i = 0; i < n; i++)
			sum += load_int(e, p + (ptrdiff_t)i * s);
		a->isum += sum;
		break;
	case OPS_MIN:
		for (size_t i = 0; i < n; i++) {
			__int128 x = load_int(e, p + (ptrdiff_t)i * s);
			mn = x < mn ? x : mn;
		}
		a->imin = mn;
		break;
	case OPS_MAX:
		for (size_t i = 0; i < n; i++) {
			__int128 x = load_int(e, p + (ptrdiff_t)i * s);
			mx = x > mx ? x : mx;
		}
		a->imax = mx;
		break;
	default:
		break;
	}
	a->n += n;
}

/* Feed n elements at p (stride s) to a. */
static void acc_feed(struct acc *a, const struct elt *e, const char *p, int64_t s, size_t n,
		     double *buf)
{
	const double *x;

	if (e->intish && (a->op == OPS_SUM || a->op == OPS_MIN || a->op == OPS_MAX)) {
		acc_ints(a, e, p, s, n);
		return;
	}
	load_f64(e, p, s, n, buf, &x);
	acc_doubles(a, x, n);
}

static bool int128_fits_i64(__int128 v)
{
	return v >= INT64_MIN && v <= INT64_MAX;
}

/* The final value of a; -EINVAL for min/max of nothing. */
static int acc_result(const struct acc *a, const struct elt *e, unsigned ddof,
		      struct ops_value *out, char *why, size_t whylen)
{
	bool ints = e->intish;

	memset(out, 0, sizeof(*out));
	out->n = a->n;
	out->mean = NAN;
	if ((a->op == OPS_MIN || a->op == OPS_MAX) && a->n == 0)
		return why_invalid(why, whylen, "zero-size array to reduction operation %s, which has no "
			    "identity", ops_name(a->op));
	switch (a->op) {
	case OPS_SUM:
		if (ints) {
			out->value = (double)a->isum;
			out->exact = int128_fits_i64(a->isum);
			out->ivalue = out->exact ? (int64_t)a->isum : 0;
		} else {
			out->value = ksum_value(&a->sum);
		}
		break;
	case OPS_MEAN:
		out->value = a->n ? ksum_value(&a->sum) / (double)a->n : NAN;
		break;
	case OPS_MIN:
	case OPS_MAX:
		if (ints) {
			__int128 v = a->op == OPS_MIN ? a->imin : a->imax;

			out->value = (double)v;
			out->exact = int128_fits_i64(v);
			out->ivalue = out->exact ? (int64_t)v : 0;
		} else {
			out->value = a->nan ? NAN : a->op == OPS_MIN ? a->min : a->max;
		}
		break;
	case OPS_STD:
		out->mean = a->n ? a->mean : NAN;
		out->value = a->n > ddof ? sqrt(a->m2 / (double)(a->n - ddof)) : NAN;
		break;
	default:
		return why_invalid(why, whylen, "%s is not a reduction", ops_name(a->op));
	}
	return 0;
}

/* ---- whole reductions ------------------------------------------------------------- */

static int check_view(const struct shma_view *v, struct elt *e, const char *what, char *why,
		      size_t whylen)
{
	char r[160];

	if (v->ndim > SHMA_MAXDIM)
		return why_invalid(why, whylen, "%s: more than %d axes", what, SHMA_MAXDIM);
	if (elt_parse(v->dtype, e, r, sizeof(r)))
		return why_invalid(why, whylen, "%s: %s", what, r);
	return 0;
}

static void reduce_walk(struct acc *a, const struct elt *e, const struct shma_view *v,
			double *buf)
{
	const struct shma_view *vs[1] = { v };
	struct walk w;
	char *p[1];
	size_t n;

	walk_init(&w, 1, vs, true);
	while ((n = walk_next(&w, OPS_CHUNK, p)) > 0)
		acc_feed(a, e, p[0], walk_stride(&w, 0), n, buf);
}

int ops_reduce(enum ops_op op, const struct shma_view *v, unsigned ddof, struct ops_value *out,
	       char *why, size_t whylen)
{
	double buf[OPS_CHUNK];
	struct acc a;
	struct elt e;
	int err;

	if (!ops_is_reduction(op))
		return why_invalid(why, whylen, "%s is not a reduction", ops_name(op));
	err = check_view(v, &e, "input", why, whylen);
	if (err)
		return err;
	acc_init(&a, op);
	reduce_walk(&a, &e, v, buf);
	return acc_result(&a, &e, ddof, out, why, whylen);
}

/* ---- per-axis reductions ------------------------------------------------------------ */

uint64_t ops_size_without_axis(const struct shma_view *v, unsigned axis)
{
	uint64_t n = 1;

	for (unsigned i = 0; i < v->ndim; i++)
		if (i != axis)
			n *= v->shape[i];
	return n;
}

/* Odometer over shape[0..nd): false after the last index. */
static bool next_index(uint64_t *idx, const uint64_t *shape, unsigned nd)
{
	for (int i = (int)nd - 1; i >= 0; i--) {
		if (++idx[i] < shape[i])
			return true;
		idx[i] = 0;
	}
	return false;
}

/* The view of the axes [from, to) of v, at data. */
static void subview(const struct shma_view *v, char *data, unsigned from, unsigned to,
		    struct shma_view *out)
{
	*out = *v;
	out->data = data;
	out->ndim = to - from;
	for (unsigned i = from; i < to; i++) {
		out->shape[i - from] = v->shape[i];
		out->strides[i - from] = v->strides[i];
	}
}

/* Along an axis with inner elements after it: the rows (inner blocks) are
 * added into per-element accumulators in memory order.  out[k] is the sum
 * (or min, max, mean); comp[k] the Neumaier compensation, or std's M2. */
static void axis_rows(enum ops_op op, const struct elt *e, const struct shma_view *v,
		      unsigned axis, char *origin, uint64_t inner, double *out, double *comp,
		      bool *nan, double *buf)
{
	uint64_t len = v->shape[axis];

	for (uint64_t k = 0; k < inner; k++) {
		out[k] = op == OPS_MIN ? INFINITY : op == OPS_MAX ? -INFINITY : 0;
		comp[k] = 0;
		nan[k] = false;
	}
	for (uint64_t j = 0; j < len; j++) {
		struct shma_view row;
		const struct shma_view *vs[1] = { &row };
		struct walk w;
		char *p[1];
		size_t n;
		uint64_t k = 0;

		subview(v, origin + (int64_t)j * v->strides[axis], axis + 1, v->ndim, &row);
		walk_init(&w, 1, vs, false); /* C order: k follows the output */
		while ((n = walk_next(&w, OPS_CHUNK, p)) > 0) {
			const double *x;

			load_f64(e, p[0], walk_stride(&w, 0), n, buf, &x);
			switch (op) {
			case OPS_SUM:
			case OPS_MEAN:
				for (size_t i = 0; i < n; i++) {
					struct ksum ks = { out[k + i], comp[k + i] };

					ksum_add(&ks, x[i]);
					out[k + i] = ks.s;
					comp[k + i] = ks.c;
				}
				break;
			case OPS_MIN:
				for (size_t i = 0; i < n; i++) {
					out[k + i] = x[i] < out[k + i] ? x[i] : out[k + i];
					nan[k + i] |= x[i] != x[i];
				}
				break;
			case OPS_MAX:
				for (size_t i = 0; i < n; i++) {
					out[k + i] = x[i] > out[k + i] ? x[i] : out[k + i];
					nan[k + i] |= x[i] != x[i];
				}
				break;
			case OPS_STD: /* Welford: out = mean, comp = M2 */
				for (size_t i = 0; i < n; i++) {
					double d = x[i] - out[k + i];

					out[k + i] += d / (double)(j + 1);
					comp[k + i] += d * (x[i] - out[k + i]);
				}
				break;
			default:
				break;
			}
			k += n;
		}
	}
}

int ops_reduce_axis(enum ops_op op, const struct shma_view *v, unsigned axis, unsigned ddof,
		    double *out, char *why, size_t whylen)
{
	uint64_t outer_idx[SHMA_MAXDIM] = { 0 }, inner = 1, len;
	double buf[OPS_CHUNK];
	double *comp = NULL;
	bool *nan = NULL;
	struct elt e;
	int err;

	if (!ops_is_reduction(op))
		return why_invalid(why, whylen, "%s is not a reduction", ops_name(op));
	err = check_view(v, &e, "input", why, whylen);
	if (err)
		return err;
	if (axis >= v->ndim)
		return why_invalid(why, whylen, "axis %u is out of bounds for a view of %u dimension%s",
			    axis, v->ndim, v->ndim == 1 ? "" : "s");
	len = v->shape[axis];
	if (len == 0 && (op == OPS_MIN || op == OPS_MAX) &&
	    ops_size_without_axis(v, axis) > 0)
		return why_invalid(why, whylen, "zero-size array to reduction operation %s, which has no "
			    "identity", ops_name(op));
	for (unsigned i = axis + 1; i < v->ndim; i++)
		inner *= v->shape[i];
	for (unsigned i = 0; i < v->ndim; i++)
		if (v->shape[i] == 0 && i != axis)
			return 0; /* nothing to compute */
	if (inner > 1) {
		comp = malloc(inner * sizeof(*comp));
		nan = malloc(inner * sizeof(*nan));
		if (!comp || !nan) {
			free(comp);
			free(nan);
			return -ENOMEM;
		}
	}
	/* every index of the axes before axis, in C order */
	for (double *o = out;; o += inner) {
		char *origin = v->data;

		for (unsigned i = 0; i < axis; i++)
			origin += (int64_t)outer_idx[i] * v->strides[i];
		if (inner == 1) {
			struct shma_view line;
			struct ops_value r;
			struct acc a;

			subview(v, origin, axis, axis + 1, &line);
			acc_init(&a, op);
			reduce_walk(&a, &e, &line, buf);
			err = acc_result(&a, &e, ddof, &r, why, whylen);
			if (err)
				break;
			*o = r.value;
		} else {
			axis_rows(op, &e, v, axis, origin, inner, o, comp, nan, buf);
			for (uint64_t k = 0; k < inner; k++) {
				switch (op) {
				case OPS_SUM: o[k] += comp[k]; break;
				case OPS_MEAN: o[k] = len ? (o[k] + comp[k]) / (double)len : NAN; break;
				case OPS_MIN:
				case OPS_MAX: o[k] = nan[k] ? NAN : o[k]; break;
				case OPS_STD:
					o[k] = len > ddof ? sqrt(comp[k] / (double)(len - ddof)) : NAN;
					break;
				default: break;
				}
			}
		}
		if (!next_index(outer_idx, v->shape, axis))
			break;
	}
	free(comp);
	free(nan);
	return err;
}

/* ---- histogram ----------------------------------------------------------------------- */

int ops_histogram(const struct shma_view *v, size_t bins, const double *range,
		  uint64_t *counts, double *lo_out, double *hi_out, char *why, size_t whylen)
{
	const struct shma_view *vs[1] = { v };
	double buf[OPS_CHUNK], lo, hi, step, norm;
	struct walk w;
	struct elt e;
	char *p[1];
	size_t n;
	int err;

	err = check_view(v, &e, "input", why, whylen);
	if (err)
		return err;
	if (bins < 1 || bins > OPS_MAX_BINS)
		return why_invalid(why, whylen, "bins must be 1 to %d", OPS_MAX_BINS);
	if (range) {
		lo = range[0];
		hi = range[1];
		if (!isfinite(lo) || !isfinite(hi))
			return why_invalid(why, whylen, "the range [%g, %g] is not finite", lo, hi);
		if (lo > hi)
			return why_invalid(why, whylen, "the range's max (%g) must not be below its min (%g)",
				    hi, lo);
	} else {
		/* the data's min and max, NaN ignored (NumPy refuses NaN here;
		 * we count what is countable) */
		lo = INFINITY;
		hi = -INFINITY;
		walk_init(&w, 1, vs, true);
		while ((n = walk_next(&w, OPS_CHUNK, p)) > 0) {
			const double *x;

			load_f64(&e, p[0], walk_stride(&w, 0), n, buf, &x);
			for (size_t i = 0; i < n; i++) {
				lo = x[i] < lo ? x[i] : lo;
				hi = x[i] > hi ? x[i] : hi;
			}
		}
		if (lo > hi) /* empty, or all NaN */
			lo = 0, hi = 1;
		if (!isfinite(lo) || !isfinite(hi))
			return why_invalid(why, whylen, "the data reach infinity: give a range");
	}
	if (lo == hi) {
		lo -= 0.5;
		hi += 0.5;
	}
	memset(counts, 0, bins * sizeof(*counts));
	*lo_out = lo;
	*hi_out = hi;
	/* NumPy's equal-bins path: the index from the value, then corrected
	 * against the edges (np.linspace: lo + i * step, the last one hi) so that
	 * rounding cannot put a value in a neighbouring bin */
	step = (hi - lo) / (double)bins;
	norm = (double)bins / (hi - lo);
	walk_init(&w, 1, vs, true);
	while ((n = walk_next(&w, OPS_CHUNK, p)) > 0) {
		const double *x;

		load_f64(&e, p[0], walk_stride(&w, 0), n, buf, &x);
		for (size_t i = 0; i < n; i++) {
			double xi = x[i];
			size_t b;

			if (!(xi >= lo && xi <= hi))
				continue; /* outside, or NaN */
			b = (size_t)((xi - lo) * norm);
			if (b >= bins)
				b = bins - 1;
			if (b > 0 && xi < lo + (double)b * step)
				b--;
			else if (b + 1 < bins && xi >= lo + (double)(b + 1) * step)
				b++;
			counts[b]++;
		}
	}
	return 0;
}

/* ---- elementwise ---------------------------------------------------------------------- */

static bool same_shape(const struct shma_view *a, const struct shma_view *b)
{
	if (a->ndim != b->ndim)
		return false;
	for (unsigned i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return false;
	return true;
}

static void shape_str(const struct shma_view *v, char *buf, size_t len)
{
	size_t o = 0;

	o += (size_t)snprintf(buf + o, len - o, "(");
	for (unsigned i = 0; i < v->ndim && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%llu", i ? ", " : "",
				      (unsigned long long)v->shape[i]);
	if (o < len)
		snprintf(buf + o, len - o, v->ndim == 1 ? ",)" : ")");
}

int ops_check_shapes(const struct shma_view *a, const char *an, const struct shma_view *b,
		     const char *bn, char *why, size_t whylen)
{
	char sa[128], sb[128];

	if (same_shape(a, b))
		return 0;
	shape_str(a, sa, sizeof(sa));
	shape_str(b, sb, sizeof(sb));
	return why_invalid(why, whylen, "shapes differ: %s %s, %s %s (no broadcasting)", an, sa, bn, sb);
}

static int check_out(const struct shma_view *out, char *why, size_t whylen)
{
	if (strcmp(out->dtype, "<f8"))
		return why_invalid(why, whylen, "the output must be float64 (<f8), not %s", out->dtype);
	return 0;
}

static void store_f64(char *p, int64_t s, size_t n, const double *x)
{
	for (size_t i = 0; i < n; i++)
		memcpy(p + (ptrdiff_t)i * s, &x[i], sizeof(double));
}

int ops_scale(const struct shma_view *in, double factor, const struct shma_view *out,
	      char *why, size_t whylen)
{
	const struct shma_view *vs[2] = { in, out };
	double buf[OPS_CHUNK], res[OPS_CHUNK];
	struct elt e, eo;
	struct walk w;
	char *p[2];
	size_t n;
	int err;

	if ((err = check_view(in, &e, "input", why, whylen)) ||
	    (err = check_view(out, &eo, "output", why, whylen)) ||
	    (err = check_out(out, why, whylen)) ||
	    (err = ops_check_shapes(in, "input", out, "output", why, whylen)))
		return err;
	walk_init(&w, 2, vs, false);
	while ((n = walk_next(&w, OPS_CHUNK, p)) > 0) {
		const double *x;

		load_f64(&e, p[0], walk_stride(&w, 0), n, buf, &x);
		for (size_t i = 0; i < n; i++)
			res[i] = factor * x[i];
		store_f64(p[1], walk_stride(&w, 1), n, res);
	}
	return 0;
}

int ops_add(const struct shma_view *a, const struct shma_view *b, const struct shma_view *out,
	    char *why, size_t whylen)
{
	const struct shma_view *vs[3] = { a, b, out };
	double bufa[OPS_CHUNK], bufb[OPS_CHUNK], res[OPS_CHUNK];
	struct elt ea, eb, eo;
	struct walk w;
	char *p[3];
	size_t n;
	int err;

	if ((err = check_view(a, &ea, "first input", why, whylen)) ||
	    (err = check_view(b, &eb, "second input", why, whylen)) ||
	    (err = check_view(out, &eo, "output", why, whylen)) ||
	    (err = check_out(out, why, whylen)) ||
	    (err = ops_check_shapes(a, "first input", b, "second input", why, whylen)) ||
	    (err = ops_check_shapes(a, "input", out, "output", why, whylen)))
		return err;
	walk_init(&w, 3, vs, false);
	while ((n = walk_next(&w, OPS_CHUNK, p)) > 0) {
		const double *x, *y;

		load_f64(&ea, p[0], walk_stride(&w, 0), n, bufa, &x);
		load_f64(&eb, p[1], walk_stride(&w, 1), n, bufb, &y);
		for (size_t i = 0; i < n; i++)
			res[i] = x[i] + y[i];
		store_f64(p[2], walk_stride(&w, 2), n, res);
	}
	return 0;
}

int ops_dot(const struct shma_view *a, const struct shma_view *b, double *out, char *why,
	    size_t whylen)
{
	const struct shma_view *vs[2] = { a, b };
	double bufa[OPS_CHUNK], bufb[OPS_CHUNK], prod[OPS_CHUNK];
	struct ksum k = { 0, 0 };
	struct elt ea, eb;
	struct walk w;
	char *p[2];
	size_t n;
	int err;

	if ((err = check_view(a, &ea, "first input", why, whylen)) ||
	    (err = check_view(b, &eb, "second input", why, whylen)))
		return err;
	if (a->ndim != 1 || b->ndim != 1)
		return why_invalid(why, whylen, "dot takes two 1-D views (got %u-D and %u-D)", a->ndim,
			    b->ndim);
	if ((err = ops_check_shapes(a, "first input", b, "second input", why, whylen)))
		return err;
	walk_init(&w, 2, vs, false);
	while ((n = walk_next(&w, OPS_CHUNK, p)) > 0) {
		const double *x, *y;

		load_f64(&ea, p[0], walk_stride(&w, 0), n, bufa, &x);
		load_f64(&eb, p[1], walk_stride(&w, 1), n, bufb, &y);
		for (size_t i = 0; i < n; i++)
			prod[i] = x[i] * y[i];
		ksum_add(&k, pairwise(prod, n));
	}
	*out = ksum_value(&k);
	return 0;
}
