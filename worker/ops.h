/* ops.h - the analytics kernels of shma-worker, over views of any dtype.
 *
 * Every kernel reads struct shma_view (libshm/shma.h): any supported dtype
 * (bool, signed and unsigned integers of 1 to 8 bytes, float16/32/64, either
 * byte order; complex is refused), any strides (negative ones too), any
 * number of axes, 0-d and empty views.  The views are borrowed; the kernels
 * allocate nothing that outlives the call, touch no broker and no lock, and
 * may run in several threads at once.
 *
 * Numerics (docs/WORKER.md):
 *  - elements are converted to double, except that sum, min and max of
 *    bool/integer dtypes are exact (128-bit accumulators);
 *  - float sums are pairwise within chunks of OPS_CHUNK elements and
 *    compensated (Neumaier) across chunks, so the error does not grow with
 *    the array's size;
 *  - std is one pass: per chunk the mean and the sum of squared deviations,
 *    merged with Chan et al.'s formula; ddof as NumPy's;
 *  - min and max propagate NaN (as numpy.min/max);
 *  - a per-axis reduction sums with a Neumaier compensation per output
 *    element (memory-order traversal), or pairwise when the axis is the
 *    innermost;
 *  - histogram has NumPy's semantics: bins equal-width bins over [lo, hi],
 *    the last bin closed, values outside (and NaN) not counted.
 *
 * Errors: -EINVAL (or -ENOMEM) with a reason a person can act on in
 * why[whylen] (why may be NULL); *out is unspecified on error.
 */
#ifndef SHMA_WORKER_OPS_H
#define SHMA_WORKER_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shma.h"

#define OPS_CHUNK 4096 /* elements converted and summed pairwise at a time */
#define OPS_MAX_BINS 1000000

enum ops_op {
	OPS_SUM,
	OPS_MEAN,
	OPS_MIN,
	OPS_MAX,
	OPS_STD,
	OPS_HISTOGRAM,
	OPS_SCALE,
	OPS_ADD,
	OPS_DOT,
	OPS_NOPS,
};

/* The op's name ("sum", ...); "?" for an unknown value. */
const char *ops_name(enum ops_op op);
/* The op named name: 0 or -EINVAL. */
int ops_lookup(const char *name, enum ops_op *op);
/* sum, mean, min, max, std: the ops that take an axis. */
bool ops_is_reduction(enum ops_op op);
/* How many input views the op takes (1, or 2 for add and dot). */
unsigned ops_ninputs(enum ops_op op);

/* Can the kernels read this dtype?  false with the reason in why. */
bool ops_dtype_ok(const char *dtype, char *why, size_t whylen);

/* The result of a whole-view reduction. */
struct ops_value {
	double value; /* the result (NaN for the mean/std of nothing) */
	bool exact;   /* sum/min/max of a bool/integer view that fits int64: ivalue */
	int64_t ivalue;
	uint64_t n;  /* elements reduced */
	double mean; /* std: the mean as well, so partial results can be merged */
};

/* sum, mean, min, max or std of every element of v.  ddof: std's delta
 * degrees of freedom (divisor n - ddof; NaN if that is <= 0).  min and max
 * of an empty view are an error (NumPy: "zero-size array"). */
int ops_reduce(enum ops_op op, const struct shma_view *v, unsigned ddof, struct ops_value *out,
	       char *why, size_t whylen);

/* The same along one axis: out receives the result of shape v's shape
 * without that axis, in C order (ops_size_without_axis doubles).  axis <
 * v->ndim.  min/max along an empty axis is an error. */
int ops_reduce_axis(enum ops_op op, const struct shma_view *v, unsigned axis, unsigned ddof,
		    double *out, char *why, size_t whylen);
uint64_t ops_size_without_axis(const struct shma_view *v, unsigned axis);

/* Histogram of v: bins (1 .. OPS_MAX_BINS) counts over [lo, hi].  range:
 * {lo, hi} (finite, lo <= hi; lo == hi widens to lo - 0.5, hi + 0.5 as
 * NumPy does), or NULL for the data's min and max (NaN ignored).  The range
 * used is returned in *lo_out, *hi_out; counts must hold bins entries. */
int ops_histogram(const struct shma_view *v, size_t bins, const double *range,
		  uint64_t *counts, double *lo_out, double *hi_out, char *why, size_t whylen);

/* out = factor * in, element by element; out must be a float64 (native
 * byte order) view of in's shape (any strides). */
int ops_scale(const struct shma_view *in, double factor, const struct shma_view *out,
	      char *why, size_t whylen);
/* out = a + b; a, b and out of equal shapes (no broadcasting). */
int ops_add(const struct shma_view *a, const struct shma_view *b, const struct shma_view *out,
	    char *why, size_t whylen);
/* 0 if a and b have equal shapes; else -EINVAL with "shapes differ: an
 * (2, 3), bn (3,) (no broadcasting)" in why. */
int ops_check_shapes(const struct shma_view *a, const char *an, const struct shma_view *b,
		     const char *bn, char *why, size_t whylen);
/* The dot product of two 1-D views of equal length (compensated sum). */
int ops_dot(const struct shma_view *a, const struct shma_view *b, double *out, char *why,
	    size_t whylen);

#endif
